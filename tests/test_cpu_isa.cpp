// The fast CPU path's loops compiled for SSE2, AVX2 and AVX-512 compute the same bits
// (host/cpu/fast_kernels.hpp says why): each function of the tables, on the same random
// inputs, against the SSE2 build, for every instruction set this processor runs. Run
// lengths cover whole blocks, tails, and several chunks.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/fast_isa.hpp"
#include "reference.hpp"

namespace {

using bnorm::Welford;
using namespace bnorm::cpu::fast;

struct Data {
  bnorm_dtype_t t;
  std::vector<unsigned char> x, y, dy, out1, out2;
  std::vector<float> coef;
  Data(bnorm_dtype_t type, int64_t n) : t(type) {
    std::mt19937_64 g(n * 7 + static_cast<int>(type));
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<float> a(n), b(n), c(n);
    for (int64_t i = 0; i < n; ++i) {
      a[i] = static_cast<float>(50.0 + 3.0 * nd(g));
      b[i] = static_cast<float>(nd(g));
      c[i] = static_cast<float>(nd(g));
    }
    x = bnorm_test::to_storage(a, t);
    y = bnorm_test::to_storage(b, t);
    dy = bnorm_test::to_storage(c, t);
    out1.assign(x.size(), 0);
    out2.assign(x.size(), 0);
    coef.resize(4 * 4096);
    for (auto& v : coef) v = static_cast<float>(0.5 + nd(g) * 0.1);
  }
};

bool same(const Welford<double>& a, const Welford<double>& b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same(const Sums& a, const Sums& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

class CpuIsa : public testing::TestWithParam<bnorm_dtype_t> {};

TEST_P(CpuIsa, EveryLoopGivesTheSameBits) {
  const bnorm_dtype_t t = GetParam();
  const Kernels& base = kernels(t, Isa::sse2);
  int compared = 0;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (!isa_supported(isa)) continue;
    SCOPED_TRACE(isa_name(isa));
    ++compared;
    const Kernels& k = kernels(t, isa);
    for (int64_t len : {1, 31, 32, 33, 1024, 1031, 5000}) {
      SCOPED_TRACE("len " + std::to_string(len));
      Data d(t, 3 * len + 7);
      const Segs s{2, len, len + 1, 3};
      EXPECT_TRUE(same(base.stats(d.x.data(), s), k.stats(d.x.data(), s)));
      EXPECT_TRUE(same(base.grad_sums(d.x.data(), d.y.data(), d.dy.data(), s, 50.1f),
                       k.grad_sums(d.x.data(), d.y.data(), d.dy.data(), s, 50.1f)));
      const Affine a{50.0f, 1e-6f, 0.33f, -0.25f};
      // Streamed stores (float32 only) write what normal stores write.
      base.affine(d.x.data(), d.dy.data(), d.out1.data(), s, a, true, false);
      base.affine(d.x.data(), d.dy.data(), d.out2.data(), s, a, true, true);
      EXPECT_EQ(d.out1, d.out2) << "sse2 streamed";
      for (bool stream : {false, true}) {
        base.affine(d.x.data(), d.dy.data(), d.out1.data(), s, a, true, false);
        k.affine(d.x.data(), d.dy.data(), d.out2.data(), s, a, true, stream);
        EXPECT_EQ(d.out1, d.out2) << "stream " << stream;
      }
      const DxCoef c{50.0f, 0.7f, -0.01f, 0.02f};
      std::vector<unsigned char> dz1(d.x.size()), dz2(d.x.size());
      for (bool stream : {false, true}) {
        base.dx_map(d.x.data(), d.y.data(), d.dy.data(), d.out1.data(), dz1.data(), s, c, true, false);
        k.dx_map(d.x.data(), d.y.data(), d.dy.data(), d.out2.data(), dz2.data(), s, c, true, stream);
        EXPECT_EQ(d.out1, d.out2) << "stream " << stream;
        EXPECT_EQ(dz1, dz2);
      }
      if (len < 1024) {  // short runs a lane per value (Segs::lanes): groups, chunks and passes of lanes
        const int64_t runs = 37, nch = 3;
        Data e(t, runs * nch * len + nch * len + 7);
        const Segs sl{2, len, nch * len, runs, true};
        EXPECT_TRUE(same(base.stats(e.x.data(), sl), k.stats(e.x.data(), sl)));
        EXPECT_TRUE(same(base.grad_sums(e.x.data(), e.y.data(), e.dy.data(), sl, 50.1f),
                         k.grad_sums(e.x.data(), e.y.data(), e.dy.data(), sl, 50.1f)));
        std::vector<Welford<double>> w1(nch), w2(nch);
        base.stats_across(e.x.data(), sl, nch, w1.data(), 1);
        k.stats_across(e.x.data(), sl, nch, w2.data(), 1);
        std::vector<Sums> s1(nch), s2(nch);
        const float means[3] = {50.1f, 49.9f, 50.0f};
        base.grad_sums_across(e.x.data(), nullptr, e.dy.data(), sl, nch, means, s1.data(), 1);
        k.grad_sums_across(e.x.data(), nullptr, e.dy.data(), sl, nch, means, s2.data(), 1);
        for (int64_t i = 0; i < nch; ++i) {
          EXPECT_TRUE(same(w1[i], w2[i])) << "channel " << i;
          EXPECT_TRUE(same(s1[i], s2[i])) << "channel " << i;
        }
      }
      for (int w : {3, 33, 64, 100}) {
        SCOPED_TRACE("w " + std::to_string(w));
        const int64_t nv = std::min<int64_t>(3 * len + 7, 32 * w + 5);
        const int pw = (w + kLanes - 1) / kLanes * kLanes;  // lane arrays are padded (fast_isa.hpp)
        std::vector<float> scr(3 * pw);
        std::vector<double> m1(pw), q1(pw), m2(pw), q2(pw);
        base.lane_stats(d.x.data(), nv, w, scr.data(), m1.data(), q1.data());
        k.lane_stats(d.x.data(), nv, w, scr.data(), m2.data(), q2.data());
        const int lanes = static_cast<int>(std::min<int64_t>(nv, w));
        EXPECT_EQ(0, std::memcmp(m1.data(), m2.data(), lanes * sizeof(double)));
        EXPECT_EQ(0, std::memcmp(q1.data(), q2.data(), lanes * sizeof(double)));
        std::vector<double> g1(pw, 0.0), gx1(pw, 0.0), g2(pw, 0.0), gx2(pw, 0.0);
        base.lane_grad_sums(d.x.data(), d.y.data(), d.dy.data(), nv, w, d.coef.data(), scr.data(), g1.data(), gx1.data());
        k.lane_grad_sums(d.x.data(), d.y.data(), d.dy.data(), nv, w, d.coef.data(), scr.data(), g2.data(), gx2.data());
        EXPECT_EQ(g1, g2);
        EXPECT_EQ(gx1, gx2);
        const float* cf = d.coef.data();
        const LaneAffine la{cf, cf + pw, cf + 2 * pw, cf + 3 * pw};
        base.lane_affine(d.x.data(), d.dy.data(), d.out1.data(), nv, w, la, true);
        k.lane_affine(d.x.data(), d.dy.data(), d.out2.data(), nv, w, la, true);
        EXPECT_EQ(d.out1, d.out2);
        const LaneDx ld{cf, cf + pw, cf + 2 * pw, cf + 3 * pw};
        base.lane_dx(d.x.data(), d.y.data(), d.dy.data(), d.out1.data(), dz1.data(), nv, w, ld, true);
        k.lane_dx(d.x.data(), d.y.data(), d.dy.data(), d.out2.data(), dz2.data(), nv, w, ld, true);
        EXPECT_EQ(d.out1, d.out2);
        EXPECT_EQ(dz1, dz2);
      }
      base.affine_per_value(d.x.data(), d.out1.data(), len, 50.0f, 1e-6f, 0.3f, d.coef.data(), d.coef.data() + 8);
      k.affine_per_value(d.x.data(), d.out2.data(), len, 50.0f, 1e-6f, 0.3f, d.coef.data(), d.coef.data() + 8);
      EXPECT_EQ(d.out1, d.out2);
      const int64_t lv = std::min<int64_t>(len, 4096);
      EXPECT_TRUE(same(base.weighted_grad_sums(d.x.data(), d.dy.data(), lv, 50.0f, d.coef.data()),
                       k.weighted_grad_sums(d.x.data(), d.dy.data(), lv, 50.0f, d.coef.data())));
      base.dx_per_value(d.x.data(), d.dy.data(), d.out1.data(), lv, 50.0f, 0.3f, d.coef.data(), -0.01f, 0.02f);
      k.dx_per_value(d.x.data(), d.dy.data(), d.out2.data(), lv, 50.0f, 0.3f, d.coef.data(), -0.01f, 0.02f);
      EXPECT_EQ(d.out1, d.out2);
      const float mean[3] = {50.0f, 49.5f, 50.5f}, invstd[3] = {0.3f, 0.31f, 0.29f};
      std::vector<double> cg1(2 * len, 0.0), cg2(2 * len, 0.0);
      base.column_grads(d.x.data(), d.dy.data(), 3, len, 0, len, mean, invstd, cg1.data(), cg1.data() + len);
      k.column_grads(d.x.data(), d.dy.data(), 3, len, 0, len, mean, invstd, cg2.data(), cg2.data() + len);
      EXPECT_EQ(cg1, cg2);
      base.scale_run(d.x.data(), d.out1.data(), len, 0.77f);
      k.scale_run(d.x.data(), d.out2.data(), len, 0.77f);
      EXPECT_EQ(d.out1, d.out2);
    }
  }
  if (compared == 0) GTEST_SKIP() << "this processor runs only the SSE2 build";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CpuIsa, testing::Values(BNORM_DTYPE_F32, BNORM_DTYPE_F16, BNORM_DTYPE_BF16),
                         [](const testing::TestParamInfo<bnorm_dtype_t>& i) {
                           return std::string(bnorm_test::dtype_name(i.param));
                         });

// The loops' bfloat16 and half conversions round as the toolkit's host conversions (the
// reference's): every value of the type, scaled by factors that put float32 results
// between two values of the type and on ties (1 + 2^-8 is half a bfloat16 ulp above 1,
// 1 + 2^-11 half a half's), through scale_run, against the toolkit's rounding of the
// same float32 products. NaN need only stay NaN.
TEST(CpuIsaConversions, RoundingMatchesTheToolkit) {
  for (bnorm_dtype_t t : {BNORM_DTYPE_F16, BNORM_DTYPE_BF16}) {
    SCOPED_TRACE(bnorm_test::dtype_name(t));
    std::vector<unsigned char> all(2 * 0x10000);
    for (uint32_t bits = 0; bits < 0x10000; ++bits) {
      const uint16_t h = static_cast<uint16_t>(bits);
      std::memcpy(&all[2 * bits], &h, 2);
    }
    const std::vector<float> v = bnorm_test::from_storage(all, t);
    for (float scale : {1.0f, 1.0f + 0x1p-8f, 1.0f + 0x1p-11f, 1.0f + 0x1p-12f, 3.0f, 1e-3f, 7.7e3f}) {
      std::vector<float> prod(v.size());
      for (size_t i = 0; i < v.size(); ++i) prod[i] = v[i] * scale;
      const std::vector<unsigned char> want = bnorm_test::to_storage(prod, t);
      for (Isa isa : {Isa::sse2, Isa::avx2, Isa::avx512}) {
        if (!isa_supported(isa)) continue;
        SCOPED_TRACE(std::string(isa_name(isa)) + ", scale " + std::to_string(scale));
        std::vector<unsigned char> out(all.size());
        kernels(t, isa).scale_run(all.data(), out.data(), 0x10000, scale);
        int bad = 0;
        for (size_t i = 0; i < v.size() && bad < 5; ++i) {
          if (std::isnan(prod[i])) {
            EXPECT_TRUE(std::isnan(bnorm_test::from_storage(out.data() + 2 * i, 1, t)[0])) << i;
          } else if (std::memcmp(&want[2 * i], &out[2 * i], 2) != 0) {
            ADD_FAILURE() << "bits " << i << " * " << scale;
            ++bad;
          }
        }
      }
    }
  }
}

}  // namespace
