// The CPU backend's fast path (cpu_fast) against its float64 oracle (cpu_reference), for
// every operation, on fresh random inputs with outputs poisoned first: odd shapes, runs
// longer than a chunk, one and many channels, channels-last with few and many channels,
// |mean|/std = 1e4, all three dtypes, pointers one element off their alignment. Then
// determinism: the same bits for any thread count and from run to run.
//
// Tolerances are the CUDA kernels' (test_cuda_backend.cpp): the fast path computes in
// float32 as they do. Outputs are compared per channel relative to the size of their
// terms: y = (x - mean) * scale + shift (+ z) relative to |(x - mean) * scale| + |shift|
// (+ |z|), which a channel whose shift cancels its values makes larger than y itself;
// dx relative to gamma * invstd * dy. x carries the large means; dy, as a gradient, not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>
#include <string>
#include <tuple>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "bnorm/bnorm.h"
#include "host_helpers.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

constexpr double kStatTol = 1e-5;
constexpr double kOutTol = 2e-5;
constexpr double kDxTol = 1e-4;

struct Case {
  int64_t n, c, h, w;
  bnorm_layout_t layout;
  double mean_scale;
  bool misaligned;
};

// Storage of a tensor, optionally one element past an aligned address.
struct Buf {
  bnorm_dtype_t dtype;
  size_t off;
  std::vector<unsigned char> bytes;
  Buf(const std::vector<float>& v, bnorm_dtype_t t, bool misaligned)
      : dtype(t), off(misaligned ? elem_size(t) : 0), bytes(off) {
    const auto s = to_storage(v, t);
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void* data() { return bytes.data() + off; }
  std::vector<float> values() const { return from_storage(bytes.data() + off, (bytes.size() - off) / elem_size(dtype), dtype); }
};

std::vector<double> to_d(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// |(x - mean_c) * scale_c| + |shift_c| (+ |z|) per element.
std::vector<double> affine_terms(const bnorm_tensor_t& d, const std::vector<float>& x, const std::vector<float>& mean,
                                 const std::vector<double>& scale, const float* shift, const std::vector<float>* z) {
  std::vector<double> t(x.size());
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j) {
      const int64_t o = offset(d, c, j);
      t[o] = std::abs((x[o] - static_cast<double>(mean[c])) * scale[c]) + std::abs(shift ? shift[c] : 0.0) +
             (z ? std::abs((*z)[o]) : 0.0);
    }
  return t;
}

// Per channel, the sum of |dy|: the size of the terms of sum(dy).
std::vector<double> abs_sums(const bnorm_tensor_t& d, const std::vector<float>& dy) {
  std::vector<double> s(d.c, 0.0);
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j) s[c] += std::abs(dy[offset(d, c, j)]);
  return s;
}

class CpuFast : public testing::TestWithParam<std::tuple<Case, bnorm_dtype_t>> {
 protected:
  const Case& kase() const { return std::get<0>(GetParam()); }
  bnorm_tensor_t desc() const {
    const Case& k = kase();
    return bnorm_tensor_t{k.n, k.c, k.h, k.w, k.layout, std::get<1>(GetParam())};
  }
  // The tolerance of a tensor output: float32's, the storage's rounding, and the
  // rounding of x - mean at a large mean (as the CUDA tests scale it).
  double out_tol(double f32) const {
    const double t = std::max(f32, 4 * unit_roundoff(desc().dtype));
    return t * std::max(1.0, kase().mean_scale / 100);
  }
  std::vector<float> input(uint64_t seed) const { return random_input(desc(), seed, kase().mean_scale); }
  std::vector<float> gradient(uint64_t seed) const { return random_input(desc(), seed); }
  Buf buf(const std::vector<float>& v) const { return Buf(v, desc().dtype, kase().misaligned); }
  Buf poison() const { return buf(poisoned(numel(desc()))); }
  int64_t groups() const { return kase().c % 2 == 0 && kase().c > 2 ? kase().c / 2 : 1; }

  // Runs f on the fast handle and on the oracle: f(handle) returns outputs.
  template <class F>
  std::pair<std::vector<std::vector<float>>, std::vector<std::vector<float>>> both(F&& f) {
    auto a = f(fast_.h);
    auto b = f(ref_.h);
    return {a, b};
  }

  Handle fast_{"cpu_fast"}, ref_{"cpu_reference"};
};

std::string name_of(const testing::TestParamInfo<std::tuple<Case, bnorm_dtype_t>>& i) {
  const Case& c = std::get<0>(i.param);
  std::string s = std::to_string(c.n) + "x" + std::to_string(c.c) + "x" + std::to_string(c.h) + "x" +
                  std::to_string(c.w) + (c.layout == BNORM_LAYOUT_NCHW ? "_nchw" : "_nhwc") + "_" +
                  dtype_name(std::get<1>(i.param));
  if (c.mean_scale > 1) s += "_mean1e4";
  if (c.misaligned) s += "_misaligned";
  return s;
}

using Outs = std::vector<std::vector<float>>;

TEST_P(CpuFast, ForwardTraining) {
  const bnorm_tensor_t d = desc();
  if (per_channel(d) < 2) GTEST_SKIP() << "training needs two values per channel";
  const auto x = input(1), z = input(2);
  const auto gamma = random_vector(d.c, 3, 0.5, 1.5), beta = random_vector(d.c, 4, -1, 1);
  const auto rm0 = random_vector(d.c, 5, -1, 1), rv0 = random_vector(d.c, 6, 0.5, 2);
  for (int form = 0; form < 3; ++form) {  // plain, + z + ReLU, ReLU alone
    SCOPED_TRACE(form == 0 ? "plain" : form == 1 ? "add relu" : "relu");
    auto [f, r] = both([&](bnorm_handle_t h) {
      Buf bx = buf(x), bz = buf(z), by = poison();
      auto rm = rm0, rv = rv0, sm = poisoned(d.c), si = poisoned(d.c);
      EXPECT_EQ(bnorm_forward_training_fused(h, &d, bx.data(), form == 1 ? bz.data() : nullptr, by.data(),
                                             gamma.data(), beta.data(), 0.1f, 1e-5f, rm.data(), rv.data(), sm.data(),
                                             si.data(), form ? BNORM_ACTIVATION_RELU : BNORM_ACTIVATION_IDENTITY),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      return Outs{by.values(), sm, si, rm, rv};
    });
    std::vector<double> scale(d.c);
    for (int64_t c = 0; c < d.c; ++c) scale[c] = static_cast<double>(r[2][c]) * gamma[c];
    const auto terms = affine_terms(d, x, r[1], scale, beta.data(), form == 1 ? &z : nullptr);
    EXPECT_LT(max_channel_rel_error(d, f[0], to_d(r[0]), &terms), out_tol(kOutTol));
    EXPECT_LT(rel_error(f[1], to_d(r[1])), kStatTol);
    EXPECT_LT(rel_error(f[2], to_d(r[2])), kStatTol * std::max(1.0, kase().mean_scale / 100));
    EXPECT_LT(rel_error(f[3], to_d(r[3])), kStatTol);
    EXPECT_LT(rel_error(f[4], to_d(r[4])), kStatTol * std::max(1.0, kase().mean_scale / 100));
  }
}

TEST_P(CpuFast, Inference) {
  const bnorm_tensor_t d = desc();
  const auto x = input(11), z = input(12);
  const auto gamma = random_vector(d.c, 13, 0.5, 1.5), beta = random_vector(d.c, 14, -1, 1);
  // Running statistics near the data's, as after training.
  std::vector<float> rm(d.c), rv = random_vector(d.c, 16, 0.5, 2);
  const Reference st = reference_forward(d, x, nullptr, nullptr, 1e-5);
  for (int64_t c = 0; c < d.c; ++c) rm[c] = static_cast<float>(st.mean[c]);
  for (bool fused : {false, true}) {
    auto [f, r] = both([&](bnorm_handle_t h) {
      Buf bx = buf(x), bz = buf(z), by = poison();
      EXPECT_EQ(bnorm_forward_inference_fused(h, &d, bx.data(), fused ? bz.data() : nullptr, by.data(), gamma.data(),
                                              beta.data(), rm.data(), rv.data(), 1e-5f,
                                              fused ? BNORM_ACTIVATION_RELU : BNORM_ACTIVATION_IDENTITY),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      return Outs{by.values()};
    });
    std::vector<double> scale(d.c);
    for (int64_t c = 0; c < d.c; ++c) scale[c] = gamma[c] / std::sqrt(static_cast<double>(rv[c]) + 1e-5);
    const auto terms = affine_terms(d, x, rm, scale, beta.data(), fused ? &z : nullptr);
    EXPECT_LT(max_channel_rel_error(d, f[0], to_d(r[0]), &terms), out_tol(kOutTol)) << (fused ? "fused" : "plain");
  }
}

TEST_P(CpuFast, Backward) {
  const bnorm_tensor_t d = desc();
  if (per_channel(d) < 2) GTEST_SKIP() << "training needs two values per channel";
  const auto x = input(21), dy = gradient(22), z = input(23);
  const auto gamma = random_vector(d.c, 24, 0.5, 1.5), beta = random_vector(d.c, 25, -1, 1);
  // The saved statistics and the ReLU mask, from the oracle for both.
  Buf bx = buf(x), bz = buf(z), by = poison();
  std::vector<float> sm(d.c), si(d.c);
  ASSERT_EQ(bnorm_forward_training_fused(ref_.h, &d, bx.data(), bz.data(), by.data(), gamma.data(), beta.data(), 0.1f,
                                         1e-5f, nullptr, nullptr, sm.data(), si.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  const auto y = by.values();
  for (int form = 0; form < 3; ++form) {  // plain, through the ReLU with dz, through it without
    SCOPED_TRACE(form == 0 ? "plain" : form == 1 ? "relu, dz" : "relu");
    auto [f, r] = both([&](bnorm_handle_t h) {
      Buf ix = buf(x), iy = buf(y), idy = buf(dy), dx = poison(), dz = poison();
      auto dg = poisoned(d.c), db = poisoned(d.c);
      EXPECT_EQ(bnorm_backward_fused(h, &d, ix.data(), form ? iy.data() : nullptr, idy.data(), gamma.data(), sm.data(),
                                     si.data(), dx.data(), form == 1 ? dz.data() : nullptr, dg.data(), db.data(),
                                     form ? BNORM_ACTIVATION_RELU : BNORM_ACTIVATION_IDENTITY),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      return Outs{dx.values(), dg, db, form == 1 ? dz.values() : std::vector<float>()};
    });
    const auto terms = dx_term_scale(d, dy, gamma.data(), si);
    EXPECT_LT(max_channel_rel_error(d, f[0], to_d(r[0]), &terms), out_tol(kDxTol));
    EXPECT_LT(rel_error(f[1], to_d(r[1])), kDxTol);
    EXPECT_LT(rel_error(f[2], to_d(r[2])), kStatTol);
    if (form == 1) EXPECT_EQ(f[3], r[3]);  // the masked dy itself: exact
  }
}

TEST_P(CpuFast, BackwardFrozen) {
  const bnorm_tensor_t d = desc();
  const auto x = input(31), dy = gradient(32);
  const auto gamma = random_vector(d.c, 33, 0.5, 1.5);
  std::vector<float> rm(d.c), rv = random_vector(d.c, 35, 0.5, 2);
  const Reference st = reference_forward(d, x, nullptr, nullptr, 1e-5);
  for (int64_t c = 0; c < d.c; ++c) rm[c] = static_cast<float>(st.mean[c]);
  for (bool sums : {true, false}) {
    auto [f, r] = both([&](bnorm_handle_t h) {
      Buf bx = buf(x), bdy = buf(dy), dx = poison();
      auto dg = poisoned(d.c), db = poisoned(d.c);
      EXPECT_EQ(bnorm_backward_frozen(h, &d, sums ? bx.data() : nullptr, bdy.data(), gamma.data(), rm.data(), rv.data(),
                                      1e-5f, dx.data(), sums ? dg.data() : nullptr, sums ? db.data() : nullptr),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      return Outs{dx.values(), dg, db};
    });
    EXPECT_LT(max_channel_rel_error(d, f[0], to_d(r[0])), out_tol(kOutTol));
    if (sums) {
      EXPECT_LT(rel_error(f[1], to_d(r[1])), kDxTol);
      EXPECT_LT(rel_error(f[2], to_d(r[2])), kStatTol);
    } else {
      EXPECT_TRUE(std::all_of(f[1].begin(), f[1].end(), [](float v) { return std::isnan(v); })) << "dgamma written";
    }
  }
}

TEST_P(CpuFast, Fold) {
  const bnorm_tensor_t wd = desc();  // n output channels of c*h*w weights
  const auto w = input(41);
  const auto bias = random_vector(wd.n, 42, -1, 1), gamma = random_vector(wd.n, 43, 0.5, 1.5),
             beta = random_vector(wd.n, 44, -1, 1), rm = random_vector(wd.n, 45, -1, 1),
             rv = random_vector(wd.n, 46, 0.5, 2);
  auto [f, r] = both([&](bnorm_handle_t h) {
    Buf bw = buf(w), wo = poison();
    auto bo = poisoned(wd.n);
    EXPECT_EQ(bnorm_fold_into_weights(h, &wd, bw.data(), bias.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                      1e-5f, wo.data(), bo.data()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    return Outs{wo.values(), bo};
  });
  EXPECT_LT(rel_error(f[0], to_d(r[0])), out_tol(4 * unit_roundoff(BNORM_DTYPE_F32)));
  EXPECT_LT(rel_error(f[1], to_d(r[1])), kStatTol);
}

TEST_P(CpuFast, SynchronizedPasses) {
  const bnorm_tensor_t d = desc();
  if (per_channel(d) < 2) GTEST_SKIP() << "training needs two values per channel";
  const auto x = input(51), dy = gradient(52);
  const auto gamma = random_vector(d.c, 53, 0.5, 1.5), beta = random_vector(d.c, 54, -1, 1);
  // Each handle's forward half, the saved statistics to sm and si.
  const auto forward = [&](bnorm_handle_t h, Buf& bx, Buf& y, std::vector<float>& local, std::vector<float>& global,
                           std::vector<float>& rm, std::vector<float>& rv, std::vector<float>& sm,
                           std::vector<float>& si) {
    EXPECT_EQ(bnorm_sync_local_stats(h, &d, bx.data(), local.data()), BNORM_STATUS_SUCCESS);
    EXPECT_EQ(bnorm_sync_merge_stats(h, d.c, 1, local.data(), global.data()), BNORM_STATUS_SUCCESS);
    EXPECT_EQ(bnorm_sync_forward(h, &d, bx.data(), y.data(), gamma.data(), beta.data(), global.data(), 0.1f, 1e-5f,
                                 rm.data(), rv.data(), sm.data(), si.data()),
              BNORM_STATUS_SUCCESS);
  };
  // The backward half takes the oracle's saved statistics and global state, as the
  // Backward test does: at |mean|/std = 1e4 a float32 mean one ulp apart moves xhat by
  // 1e-3, and two forwards' may be (each within its tolerance).
  auto ol = poisoned(3 * d.c), og = poisoned(3 * d.c), osm = poisoned(d.c), osi = poisoned(d.c);
  {
    Buf bx = buf(x), y = poison();
    auto rm = random_vector(d.c, 55, -1, 1), rv = random_vector(d.c, 56, 0.5, 2);
    forward(ref_.h, bx, y, ol, og, rm, rv, osm, osi);
  }
  auto [f, r] = both([&](bnorm_handle_t h) {
    Buf bx = buf(x), bdy = buf(dy), y = poison(), dx = poison();
    auto local = poisoned(3 * d.c), global = poisoned(3 * d.c), sums = poisoned(2 * d.c);
    auto rm = random_vector(d.c, 55, -1, 1), rv = random_vector(d.c, 56, 0.5, 2);
    auto sm = poisoned(d.c), si = poisoned(d.c), dg = poisoned(d.c), db = poisoned(d.c);
    forward(h, bx, y, local, global, rm, rv, sm, si);
    EXPECT_EQ(bnorm_sync_backward_sums(h, &d, bx.data(), bdy.data(), osm.data(), sums.data()), BNORM_STATUS_SUCCESS);
    EXPECT_EQ(bnorm_sync_backward(h, &d, bx.data(), bdy.data(), gamma.data(), osm.data(), osi.data(), og.data(),
                                  sums.data(), dx.data(), dg.data(), db.data()),
              BNORM_STATUS_SUCCESS);
    return Outs{local, y.values(), rm, rv, sums, dx.values(), dg, db, si};
  });
  const double big = std::max(1.0, kase().mean_scale / 100);
  // local: count exact, mean, M2 (relative to the channel's M2 scale)
  for (int64_t c = 0; c < d.c; ++c) {
    EXPECT_EQ(f[0][3 * c], r[0][3 * c]);
    EXPECT_NEAR(f[0][3 * c + 1], r[0][3 * c + 1], kStatTol * (std::abs(r[0][3 * c + 1]) + 1));
    EXPECT_NEAR(f[0][3 * c + 2], r[0][3 * c + 2], kStatTol * big * std::abs(r[0][3 * c + 2]) + 1e-30);
  }
  std::vector<double> scale(d.c);
  for (int64_t c = 0; c < d.c; ++c) scale[c] = static_cast<double>(r[8][c]) * gamma[c];
  std::vector<float> mean(d.c);
  for (int64_t c = 0; c < d.c; ++c) mean[c] = r[0][3 * c + 1];
  const auto out_terms = affine_terms(d, x, mean, scale, beta.data(), nullptr);
  EXPECT_LT(max_channel_rel_error(d, f[1], to_d(r[1]), &out_terms), out_tol(kOutTol));
  EXPECT_LT(rel_error(f[2], to_d(r[2])), kStatTol);
  EXPECT_LT(rel_error(f[3], to_d(r[3])), kStatTol * big);
  // sum(dy) cancels: relative to sum(|dy|). sum(dy * (x - mean)) enters dgamma below.
  const auto abs_dy = abs_sums(d, dy);
  for (int64_t c = 0; c < d.c; ++c) EXPECT_NEAR(f[4][2 * c], r[4][2 * c], kStatTol * abs_dy[c]);
  const auto terms = dx_term_scale(d, dy, gamma.data(), r[8]);
  EXPECT_LT(max_channel_rel_error(d, f[5], to_d(r[5]), &terms), out_tol(kDxTol));
  EXPECT_LT(rel_error(f[6], to_d(r[6])), kDxTol);
  EXPECT_LT(rel_error(f[7], to_d(r[7])), kStatTol);
}

TEST_P(CpuFast, PerSampleNorms) {
  const bnorm_tensor_t d = desc();
  const auto x = input(61), dy = gradient(62);
  const int64_t k_layer = d.c * d.h * d.w;
  for (int kind = 0; kind < 3; ++kind) {  // group, instance, layer
    const int64_t groups = kind == 0 ? this->groups() : kind == 1 ? d.c : 1;
    const int64_t rows = d.n * groups, features = kind == 2 ? k_layer : d.c;
    SCOPED_TRACE(kind == 0 ? "group norm, " + std::to_string(groups) + " groups" : kind == 1 ? "instance norm" : "layer norm");
    const auto gamma = random_vector(features, 63, 0.5, 1.5), beta = random_vector(features, 64, -1, 1);
    const auto forward = [&](bnorm_handle_t h, Buf& bx, Buf& y, std::vector<float>& sm, std::vector<float>& si) {
      return kind == 2 ? bnorm_layer_norm_forward(h, &d, bx.data(), y.data(), gamma.data(), beta.data(), 1e-5f,
                                                  sm.data(), si.data())
                       : bnorm_group_norm_forward(h, &d, groups, bx.data(), y.data(), gamma.data(), beta.data(), 1e-5f,
                                                  sm.data(), si.data());
    };
    // The backward passes take the oracle's saved statistics, as batch norm's do: at
    // |mean|/std = 1e4 a float32 mean one ulp apart moves xhat by 1e-3, and the two
    // forwards' may be (each within its tolerance).
    Buf ox = buf(x), oy = poison();
    auto osm = poisoned(rows), osi = poisoned(rows);
    ASSERT_EQ(forward(ref_.h, ox, oy, osm, osi), BNORM_STATUS_SUCCESS) << bnorm_last_error();
    auto [f, r] = both([&](bnorm_handle_t h) {
      Buf bx = buf(x), bdy = buf(dy), y = poison(), dx = poison();
      auto sm = poisoned(rows), si = poisoned(rows), dg = poisoned(features), db = poisoned(features);
      const bnorm_status_t s1 = forward(h, bx, y, sm, si);
      const bnorm_status_t s2 =
          kind == 2 ? bnorm_layer_norm_backward(h, &d, bx.data(), bdy.data(), gamma.data(), osm.data(), osi.data(),
                                                dx.data(), dg.data(), db.data())
                    : bnorm_group_norm_backward(h, &d, groups, bx.data(), bdy.data(), gamma.data(), osm.data(),
                                                osi.data(), dx.data(), dg.data(), db.data());
      EXPECT_EQ(s1, BNORM_STATUS_SUCCESS) << bnorm_last_error();
      EXPECT_EQ(s2, BNORM_STATUS_SUCCESS) << bnorm_last_error();
      return Outs{y.values(), sm, si, dx.values(), dg, db};
    });
    // A group of one value has variance 0 and invstd 1/sqrt(eps): its dx terms are large
    // and cancel exactly; per sample, the size of the terms is invstd * |gamma * dy|.
    std::vector<double> terms(numel(d)), out_terms(numel(d));
    const int64_t hw = d.h * d.w;
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t c = 0; c < d.c; ++c)
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t o = d.layout == BNORM_LAYOUT_NCHW ? (n * d.c + c) * hw + i : (n * hw + i) * d.c + c;
          const int64_t f_i = kind == 2 ? c * hw + i : c, j = n * groups + c / (d.c / groups);
          terms[o] = r[2][j] * gamma[f_i] * dy[o];
          out_terms[o] = std::abs((x[o] - static_cast<double>(r[1][j])) * r[2][j] * gamma[f_i]) + std::abs(beta[f_i]);
        }
    const double big = std::max(1.0, kase().mean_scale / 100);
    EXPECT_LT(max_channel_rel_error(d, f[0], to_d(r[0]), &out_terms), out_tol(kOutTol));
    EXPECT_LT(rel_error(f[1], to_d(r[1])), kStatTol);
    EXPECT_LT(rel_error(f[2], to_d(r[2])), kStatTol * big);
    EXPECT_LT(max_channel_rel_error(d, f[3], to_d(r[3]), &terms), out_tol(kDxTol));
    EXPECT_LT(rel_error(f[4], to_d(r[4])), kDxTol);
    EXPECT_LT(rel_error(f[5], to_d(r[5])), kStatTol);
  }
}

const Case kCases[] = {
    {3, 5, 7, 9, BNORM_LAYOUT_NCHW, 1, false},     {3, 5, 7, 9, BNORM_LAYOUT_NHWC, 1, true},
    {2, 1, 1, 1, BNORM_LAYOUT_NCHW, 1, false},     {65536, 3, 1, 1, BNORM_LAYOUT_NCHW, 1, true},
    {2, 4096, 1, 1, BNORM_LAYOUT_NCHW, 1, false},  {128, 6, 24, 24, BNORM_LAYOUT_NCHW, 1, false},
    {128, 16, 8, 8, BNORM_LAYOUT_NCHW, 1, true},   {128, 120, 1, 1, BNORM_LAYOUT_NCHW, 1, false},
    {5, 3, 1031, 1, BNORM_LAYOUT_NCHW, 1, true},   {1, 2, 4099, 1, BNORM_LAYOUT_NCHW, 1, false},
    {33, 70, 3, 3, BNORM_LAYOUT_NHWC, 1, false},   {9, 7, 5, 3, BNORM_LAYOUT_NHWC, 1, true},
    {17, 40, 1, 1, BNORM_LAYOUT_NHWC, 1, false},   {8, 64, 28, 28, BNORM_LAYOUT_NCHW, 1, false},
    {16, 3, 8, 8, BNORM_LAYOUT_NCHW, 1e4, false},  {40, 5, 3, 3, BNORM_LAYOUT_NHWC, 1e4, true},
    {3000, 2, 1, 1, BNORM_LAYOUT_NCHW, 1e4, false}, {4, 6, 33, 35, BNORM_LAYOUT_NCHW, 1e4, true},
    // 16.8 MB of float32: outputs stream past the caches (fast.cpp's kStreamBytes), runs
    // of 65792 values starting at every alignment.
    {16, 4, 256, 257, BNORM_LAYOUT_NCHW, 1, false},
    // Past fast.cpp's kWindowMin in float32: windows of adjacent channels, a sample's
    // planes of a window as one run (a span), here with large means and off their
    // alignment; then 18.7 MB of 11x13 planes (9.4 MB in 16 bits), whose spans stream,
    // and whose inference and frozen backward stream as one walk over the planes
    // (fast_kernels.hpp RunWalk), off alignment.
    {96, 512, 7, 7, BNORM_LAYOUT_NCHW, 1e4, true},
    {32, 1024, 11, 13, BNORM_LAYOUT_NCHW, 1, true},
    // Short planes read a lane per value over the samples (fast_kernels.hpp short_stats):
    // 37 samples are a chunk of 32 and one of 5, in groups of 8 and the rest; a task's
    // 47 channels of 100 values take three passes of lanes. Off alignment, large means.
    {37, 600, 10, 10, BNORM_LAYOUT_NCHW, 1e4, true},
};

INSTANTIATE_TEST_SUITE_P(Shapes, CpuFast,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::Values(BNORM_DTYPE_F32, BNORM_DTYPE_F16, BNORM_DTYPE_BF16)),
                         name_of);

// ---- determinism ----------------------------------------------------------------------------

struct Shape {
  int64_t n, c, h, w;
  bnorm_layout_t layout;
};

// Every output of a forward, backward and per-sample round on h, as bytes.
std::vector<unsigned char> round_trip(bnorm_handle_t h, const Shape& s) {
  const bnorm_tensor_t d{s.n, s.c, s.h, s.w, s.layout, BNORM_DTYPE_F32};
  const auto x = random_tensor(d, 71, 3.0), dy = random_tensor(d, 72), z = random_tensor(d, 73);
  const auto gamma = random_vector(d.c, 74, 0.5, 1.5), beta = random_vector(d.c, 75, -1, 1);
  const int64_t ne = numel(d);
  std::vector<float> y(ne), dx(ne), dz(ne), rm(d.c, 0.f), rv(d.c, 1.f), sm(d.c), si(d.c), dg(d.c), db(d.c);
  std::vector<float> gy(ne), gdx(ne), gsm(d.n), gsi(d.n), gdg(d.c), gdb(d.c);
  std::vector<float> lgamma = random_vector(d.c * d.h * d.w, 76, 0.5, 1.5), ly(ne), ldx(ne), lsm(d.n), lsi(d.n),
                     ldg(d.c * d.h * d.w), ldb(d.c * d.h * d.w);
  EXPECT_EQ(bnorm_forward_training_fused(h, &d, x.data(), z.data(), y.data(), gamma.data(), beta.data(), 0.1f, 1e-5f,
                                         rm.data(), rv.data(), sm.data(), si.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_backward_fused(h, &d, x.data(), y.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                                 dz.data(), dg.data(), db.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_group_norm_forward(h, &d, 1, x.data(), gy.data(), gamma.data(), beta.data(), 1e-5f, gsm.data(),
                                     gsi.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_group_norm_backward(h, &d, 1, x.data(), dy.data(), gamma.data(), gsm.data(), gsi.data(), gdx.data(),
                                      gdg.data(), gdb.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_layer_norm_forward(h, &d, x.data(), ly.data(), lgamma.data(), nullptr, 1e-5f, lsm.data(), lsi.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_layer_norm_backward(h, &d, x.data(), dy.data(), lgamma.data(), lsm.data(), lsi.data(), ldx.data(),
                                      ldg.data(), ldb.data()),
            BNORM_STATUS_SUCCESS);
  std::vector<unsigned char> out;
  for (const auto* v : {&y, &dx, &dz, &rm, &rv, &sm, &si, &dg, &db, &gy, &gdx, &gsm, &gsi, &gdg, &gdb, &ly, &ldx, &lsm,
                        &lsi, &ldg, &ldb}) {
    const auto* p = reinterpret_cast<const unsigned char*>(v->data());
    out.insert(out.end(), p, p + v->size() * sizeof(float));
  }
  return out;
}

// The same bits for 1, 2, 3 and 8 threads (which also switches between a channel per
// task and all blocks per pass, and changes how a window's channels are shared), and on
// a second run.
TEST(CpuFastDeterminism, SameBitsForAnyThreadCount) {
  for (const Shape& s : {Shape{128, 6, 24, 24, BNORM_LAYOUT_NCHW}, Shape{65536, 3, 1, 1, BNORM_LAYOUT_NCHW},
                         Shape{16, 64, 7, 7, BNORM_LAYOUT_NHWC}, Shape{3, 1, 40000, 1, BNORM_LAYOUT_NCHW},
                         Shape{64, 10, 9, 9, BNORM_LAYOUT_NHWC}, Shape{96, 512, 7, 7, BNORM_LAYOUT_NCHW}}) {
    SCOPED_TRACE(std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" +
                 std::to_string(s.w) + (s.layout == BNORM_LAYOUT_NCHW ? " nchw" : " nhwc"));
    Handle h("cpu_fast");
    ASSERT_EQ(bnorm_set_cpu_threads(h.h, 1), BNORM_STATUS_SUCCESS);
    const auto one = round_trip(h.h, s);
    for (int t : {2, 3, 8, 1}) {
      ASSERT_EQ(bnorm_set_cpu_threads(h.h, t), BNORM_STATUS_SUCCESS);
      EXPECT_TRUE(round_trip(h.h, s) == one) << t << " threads";
    }
  }
}

// Handles on several threads at once share the one pool (a job that finds it busy runs
// on its caller alone): every call still gives the single-thread bits; and a child of
// fork(), which has none of the parent's pool threads, runs on a pool of its own.
TEST(CpuFastThreads, ConcurrentCallersAndForkGiveTheSameBits) {
  const Shape s{64, 10, 9, 9, BNORM_LAYOUT_NCHW};
  Handle one("cpu_fast");
  ASSERT_EQ(bnorm_set_cpu_threads(one.h, 1), BNORM_STATUS_SUCCESS);
  const auto want = round_trip(one.h, s);
  std::vector<std::thread> callers;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      bnorm_handle_t h = nullptr;
      if (bnorm_create(&h, BNORM_BACKEND_CPU, 0) != BNORM_STATUS_SUCCESS) return;
      bnorm_set_cpu_threads(h, 2);
      int ok = 1;
      for (int i = 0; i < 20; ++i) ok &= round_trip(h, s) == want;
      same[t] = ok;
      bnorm_destroy(h);
    });
  for (auto& c : callers) c.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(same[t], 1) << "caller " << t;

  Handle two("cpu_fast");
  ASSERT_EQ(bnorm_set_cpu_threads(two.h, 2), BNORM_STATUS_SUCCESS);
  ASSERT_TRUE(round_trip(two.h, s) == want);  // the parent's pool has its workers now
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(round_trip(two.h, s) == want ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child did not finish";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's results differ";
}

}  // namespace
