// The toolbox's CUDA operations against the CPU backend (float64 accumulation): every
// configuration of every registered variant forced in turn, outputs poisoned with NaN
// before each call. Frozen batch norm's backward, synchronized batch norm's passes (the
// protocol run in one process over uneven ranks), folding, and group, instance and
// layer norm in every dtype, with the layouts each supports and NOT_SUPPORTED for the
// others; the empty batch; bitwise repeatability. Without a device every test reports
// skipped.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "bnorm/bnorm.h"
#include "device_buffer.hpp"
#include "gpu_util.hpp"
#include "reference_norms.hpp"

namespace {

using namespace bnorm_test;

class GpuToolbox : public GpuTest {
 protected:
  // Every configuration supporting the call (groups only matters for group norm).
  std::vector<std::string> configs(bnorm_op_t op, const bnorm_tensor_t& d, int64_t groups = 1, bool aligned = true) {
    return list_configs(gpu_, op, d, aligned, groups);
  }
};

// GPU fp32 statistics against the CPU's fp64: as test_cuda_backend.cpp.
constexpr double kOutTol = 2e-5;
constexpr double kStatTol = 1e-5;
constexpr double kDxTol = 1e-4;
double out_tol(bnorm_dtype_t t, double f32) { return std::max(f32, 4 * unit_roundoff(t)); }

struct Shape {
  int64_t n, c, h, w;
};

const bnorm_dtype_t kDtypes[] = {BNORM_DTYPE_F32, BNORM_DTYPE_F16, BNORM_DTYPE_BF16};
const bnorm_layout_t kLayouts[] = {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC};

std::string label(const bnorm_tensor_t& d) {
  std::ostringstream s;
  s << d.n << "x" << d.c << "x" << d.h << "x" << d.w << " " << dtype_name(d.dtype)
    << (d.layout == BNORM_LAYOUT_NCHW ? " nchw" : " nhwc");
  return s.str();
}

// ---- frozen batch norm -------------------------------------------------------------

TEST_F(GpuToolbox, FrozenBackwardEveryConfig) {
  for (const Shape& sh : {Shape{3, 5, 7, 9}, Shape{8, 64, 28, 28}, Shape{128, 120, 1, 1}, Shape{2, 4096, 1, 1}})
    for (bnorm_dtype_t t : kDtypes)
      for (bnorm_layout_t l : kLayouts) {
        const bnorm_tensor_t d{sh.n, sh.c, sh.h, sh.w, l, t};
        SCOPED_TRACE(label(d));
        const int64_t ne = numel(d);
        const auto x = random_input(d, 1), dy = random_input(d, 2);
        const auto gamma = random_vector(d.c, 3, 0.5, 1.5), rm = random_vector(d.c, 4, -1, 1);
        const auto rv = random_vector(d.c, 5, 0.2, 3);
        HostTensor hx(x, t), hdy(dy, t), hdx(poisoned(ne), t);
        std::vector<float> dg(d.c), db(d.c);
        ASSERT_EQ(bnorm_backward_frozen(cpu_, &d, hx.data(), hdy.data(), gamma.data(), rm.data(), rv.data(), 1e-5f,
                                        hdx.data(), dg.data(), db.data()),
                  BNORM_STATUS_SUCCESS);
        const auto dxr = to_double(hdx.values());
        DeviceBuffer d_x(ne, t), d_dy(ne, t), d_dx(ne, t), d_g(d.c), d_rm(d.c), d_rv(d.c), d_dg(d.c), d_db(d.c);
        d_x.upload(x);
        d_dy.upload(dy);
        d_g.upload(gamma);
        d_rm.upload(rm);
        d_rv.upload(rv);
        for (const std::string& spec : configs(BNORM_OP_BACKWARD_FROZEN, d)) {
          SCOPED_TRACE(spec);
          force(BNORM_OP_BACKWARD_FROZEN, spec);
          for (bool sums : {true, false}) {
            d_dx.poison();
            d_dg.poison();
            d_db.poison();
            ASSERT_EQ(bnorm_backward_frozen(gpu_, &d, sums ? d_x.raw() : nullptr, d_dy.raw(), d_g.get(), d_rm.get(),
                                            d_rv.get(), 1e-5f, d_dx.raw(), sums ? d_dg.get() : nullptr,
                                            sums ? d_db.get() : nullptr),
                      BNORM_STATUS_SUCCESS)
                << bnorm_last_error();
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            EXPECT_LT(rel_error(d_dx.download(), dxr), out_tol(t, kOutTol));
            if (sums) {
              EXPECT_LT(rel_error(d_dg.download(), to_double(dg)), kDxTol);
              EXPECT_LT(rel_error(d_db.download(), to_double(db)), kStatTol);
            }
          }
        }
        bnorm_set_variant(gpu_, BNORM_OP_BACKWARD_FROZEN, nullptr);
      }
}

// ---- synchronized batch norm -------------------------------------------------------

// The protocol over ranks holding `sizes` samples, on one handle: the GPU's results
// against the CPU backend's run of the same protocol, each configuration forced.
TEST_F(GpuToolbox, SyncProtocolEveryConfig) {
  const std::vector<int64_t> sizes = {3, 0, 5, 1};
  const int64_t total = 9, ranks = 4;
  for (const Shape& sh : {Shape{0, 6, 7, 9}, Shape{0, 64, 8, 8}, Shape{0, 120, 1, 1}})
    for (bnorm_dtype_t t : kDtypes)
      for (bnorm_layout_t l : kLayouts) {
        const bnorm_tensor_t whole{total, sh.c, sh.h, sh.w, l, t};
        SCOPED_TRACE(label(whole));
        const int64_t c = sh.c, per_sample = sh.c * sh.h * sh.w, ne = numel(whole);
        const auto x = random_input(whole, 11, 2.0), dy = random_input(whole, 12);
        const auto gamma = random_vector(c, 13, 0.5, 1.5), beta = random_vector(c, 14, -1, 1);
        const auto rm0 = random_vector(c, 15, -1, 1), rv0 = random_vector(c, 16, 0.5, 2);
        std::vector<int64_t> first(ranks, 0);
        for (int64_t r = 1; r < ranks; ++r) first[r] = first[r - 1] + sizes[r - 1];
        auto desc = [&](int64_t r) { return bnorm_tensor_t{sizes[r], sh.c, sh.h, sh.w, l, t}; };
        const size_t es = elem_size(t);

        // The CPU's protocol.
        HostTensor hx(x, t), hdy(dy, t), hy(poisoned(ne), t), hdx(poisoned(ne), t);
        std::vector<float> gathered(ranks * 3 * c), global(3 * c), sums(ranks * 2 * c), all(2 * c, 0.0f);
        std::vector<float> rm = rm0, rv = rv0, sm(c), si(c), dg(c), db(c);
        for (int64_t r = 0; r < ranks; ++r) {
          const bnorm_tensor_t d = desc(r);
          ASSERT_EQ(bnorm_sync_local_stats(cpu_, &d, hx.bytes.data() + first[r] * per_sample * es,
                                           gathered.data() + r * 3 * c),
                    BNORM_STATUS_SUCCESS);
        }
        ASSERT_EQ(bnorm_sync_merge_stats(cpu_, c, ranks, gathered.data(), global.data()), BNORM_STATUS_SUCCESS);
        ASSERT_EQ(bnorm_sync_forward(cpu_, &whole, hx.data(), hy.data(), gamma.data(), beta.data(), global.data(), 0.1f,
                                     1e-5f, rm.data(), rv.data(), sm.data(), si.data()),
                  BNORM_STATUS_SUCCESS);
        for (int64_t r = 0; r < ranks; ++r) {
          const bnorm_tensor_t d = desc(r);
          ASSERT_EQ(bnorm_sync_backward_sums(cpu_, &d, hx.bytes.data() + first[r] * per_sample * es,
                                             hdy.bytes.data() + first[r] * per_sample * es, sm.data(),
                                             sums.data() + r * 2 * c),
                    BNORM_STATUS_SUCCESS);
          for (int64_t i = 0; i < 2 * c; ++i) all[i] += sums[r * 2 * c + i];
        }
        ASSERT_EQ(bnorm_sync_backward(cpu_, &whole, hx.data(), hdy.data(), gamma.data(), sm.data(), si.data(),
                                      global.data(), all.data(), hdx.data(), dg.data(), db.data()),
                  BNORM_STATUS_SUCCESS);

        // The GPU's, every configuration of each op.
        DeviceBuffer d_x(ne, t), d_dy(ne, t), d_y(ne, t), d_dx(ne, t), d_g(c), d_b(c), d_gath(ranks * 3 * c),
            d_glob(3 * c), d_rm(c), d_rv(c), d_sm(c), d_si(c), d_sums(2 * c), d_all(2 * c), d_dg(c), d_db(c);
        d_x.upload(x);
        d_dy.upload(dy);
        d_g.upload(gamma);
        d_b.upload(beta);
        auto at_rank = [&](const DeviceBuffer& b, int64_t r) {
          return static_cast<char*>(b.raw()) + first[r] * per_sample * es;
        };
        for (const std::string& spec : configs(BNORM_OP_SYNC_LOCAL_STATS, whole)) {
          SCOPED_TRACE(spec);
          force(BNORM_OP_SYNC_LOCAL_STATS, spec);
          d_gath.poison();
          for (int64_t r = 0; r < ranks; ++r) {
            const bnorm_tensor_t d = desc(r);
            ASSERT_EQ(bnorm_sync_local_stats(gpu_, &d, at_rank(d_x, r), d_gath.get() + r * 3 * c),
                      BNORM_STATUS_SUCCESS)
                << bnorm_last_error();
          }
          ASSERT_EQ(bnorm_sync_merge_stats(gpu_, c, ranks, d_gath.get(), d_glob.get()), BNORM_STATUS_SUCCESS);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          EXPECT_LT(rel_error(d_gath.download(), to_double(gathered)), kStatTol);
          EXPECT_LT(rel_error(d_glob.download(), to_double(global)), kStatTol);
        }
        d_glob.upload(global);  // the same statistics for every forward configuration
        for (const std::string& spec : configs(BNORM_OP_SYNC_FORWARD, whole)) {
          SCOPED_TRACE(spec);
          force(BNORM_OP_SYNC_FORWARD, spec);
          d_y.poison();
          d_sm.poison();
          d_si.poison();
          d_rm.upload(rm0);
          d_rv.upload(rv0);
          ASSERT_EQ(bnorm_sync_forward(gpu_, &whole, d_x.raw(), d_y.raw(), d_g.get(), d_b.get(), d_glob.get(), 0.1f,
                                       1e-5f, d_rm.get(), d_rv.get(), d_sm.get(), d_si.get()),
                    BNORM_STATUS_SUCCESS)
              << bnorm_last_error();
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          EXPECT_LT(max_channel_rel_error(whole, d_y.download(), to_double(hy.values())), out_tol(t, kOutTol));
          EXPECT_LT(rel_error(d_rm.download(), to_double(rm)), kStatTol);
          EXPECT_LT(rel_error(d_rv.download(), to_double(rv)), kStatTol);
          EXPECT_LT(rel_error(d_sm.download(), to_double(sm)), kStatTol);
          EXPECT_LT(rel_error(d_si.download(), to_double(si)), kStatTol);
        }
        d_sm.upload(sm);
        d_si.upload(si);
        for (const std::string& spec : configs(BNORM_OP_SYNC_BACKWARD_SUMS, whole)) {
          SCOPED_TRACE(spec);
          force(BNORM_OP_SYNC_BACKWARD_SUMS, spec);
          d_sums.poison();
          ASSERT_EQ(bnorm_sync_backward_sums(gpu_, &whole, d_x.raw(), d_dy.raw(), d_sm.get(), d_sums.get()),
                    BNORM_STATUS_SUCCESS)
              << bnorm_last_error();
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          EXPECT_LT(rel_error(d_sums.download(), to_double(all)), kDxTol);  // one rank holding all
        }
        d_all.upload(all);
        const std::vector<double> terms = dx_term_scale(whole, dy, gamma.data(), si);
        for (const std::string& spec : configs(BNORM_OP_SYNC_BACKWARD, whole)) {
          SCOPED_TRACE(spec);
          force(BNORM_OP_SYNC_BACKWARD, spec);
          d_dx.poison();
          d_dg.poison();
          d_db.poison();
          ASSERT_EQ(bnorm_sync_backward(gpu_, &whole, d_x.raw(), d_dy.raw(), d_g.get(), d_sm.get(), d_si.get(),
                                        d_glob.get(), d_all.get(), d_dx.raw(), d_dg.get(), d_db.get()),
                    BNORM_STATUS_SUCCESS)
              << bnorm_last_error();
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          EXPECT_LT(max_channel_rel_error(whole, d_dx.download(), to_double(hdx.values()), &terms),
                    out_tol(t, kDxTol));
          EXPECT_LT(rel_error(d_dg.download(), to_double(dg)), kStatTol);
          EXPECT_LT(rel_error(d_db.download(), to_double(db)), kStatTol);
        }
        for (bnorm_op_t op : {BNORM_OP_SYNC_LOCAL_STATS, BNORM_OP_SYNC_FORWARD, BNORM_OP_SYNC_BACKWARD_SUMS,
                              BNORM_OP_SYNC_BACKWARD})
          bnorm_set_variant(gpu_, op, nullptr);
      }
}

// ---- folding -------------------------------------------------------------------------

TEST_F(GpuToolbox, FoldEveryConfig) {
  for (const Shape& sh : {Shape{64, 32, 3, 3}, Shape{10, 7, 1, 1}, Shape{6, 3, 5, 5}})
    for (bnorm_dtype_t t : kDtypes)
      for (bnorm_layout_t l : kLayouts) {
        const bnorm_tensor_t wd{sh.n, sh.c, sh.h, sh.w, l, t};
        SCOPED_TRACE(label(wd));
        const int64_t ne = numel(wd), co = sh.n;
        const auto w = random_input(wd, 21);
        const auto bias = random_vector(co, 22, -1, 1), gamma = random_vector(co, 23, 0.5, 1.5);
        const auto beta = random_vector(co, 24, -1, 1), rm = random_vector(co, 25, -1, 1);
        const auto rv = random_vector(co, 26, 0.2, 3);
        HostTensor hw(w, t), hwo(poisoned(ne), t);
        std::vector<float> bo(co);
        ASSERT_EQ(bnorm_fold_into_weights(cpu_, &wd, hw.data(), bias.data(), gamma.data(), beta.data(), rm.data(),
                                          rv.data(), 1e-5f, hwo.data(), bo.data()),
                  BNORM_STATUS_SUCCESS);
        DeviceBuffer d_w(ne, t), d_wo(ne, t), d_bias(co), d_g(co), d_b(co), d_rm(co), d_rv(co), d_bo(co);
        d_w.upload(w);
        d_bias.upload(bias);
        d_g.upload(gamma);
        d_b.upload(beta);
        d_rm.upload(rm);
        d_rv.upload(rv);
        for (const std::string& spec : configs(BNORM_OP_FOLD, wd)) {
          SCOPED_TRACE(spec);
          force(BNORM_OP_FOLD, spec);
          d_wo.poison();
          d_bo.poison();
          ASSERT_EQ(bnorm_fold_into_weights(gpu_, &wd, d_w.raw(), d_bias.get(), d_g.get(), d_b.get(), d_rm.get(),
                                            d_rv.get(), 1e-5f, d_wo.raw(), d_bo.get()),
                    BNORM_STATUS_SUCCESS)
              << bnorm_last_error();
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          EXPECT_LT(rel_error(d_wo.download(), to_double(hwo.values())), out_tol(t, 1e-6));
          EXPECT_LT(rel_error(d_bo.download(), to_double(bo)), 1e-6);
        }
        bnorm_set_variant(gpu_, BNORM_OP_FOLD, nullptr);
      }
}

// ---- the per-sample norms ------------------------------------------------------------

enum class Kind { kGroup, kInstance, kLayer };

struct NormCase {
  Shape s;
  int64_t groups;  // group norm's; instance norm uses c, layer norm 1
  Kind kind;
};

// Forward and backward of one norm on both backends, every configuration of both ops.
void check_norm(GpuToolbox* t, bnorm_handle_t gpu, bnorm_handle_t cpu, const NormCase& k, bnorm_dtype_t dt,
                bnorm_layout_t l, const std::vector<std::string>& fwd_specs, const std::vector<std::string>& bwd_specs,
                bnorm_op_t fwd_op, bnorm_op_t bwd_op) {
  const bnorm_tensor_t d{k.s.n, k.s.c, k.s.h, k.s.w, l, dt};
  const bool layer = k.kind == Kind::kLayer;
  const int64_t groups = layer ? 1 : k.kind == Kind::kInstance ? d.c : k.groups;
  const int64_t ne = numel(d), rows = d.n * groups, feats = layer ? d.c * d.h * d.w : d.c;
  auto forward = [&](bnorm_handle_t h, const void* x, void* y, const float* g, const float* b, float* sm, float* si) {
    switch (k.kind) {
      case Kind::kGroup: return bnorm_group_norm_forward(h, &d, groups, x, y, g, b, 1e-5f, sm, si);
      case Kind::kInstance: return bnorm_instance_norm_forward(h, &d, x, y, g, b, 1e-5f, sm, si);
      case Kind::kLayer: return bnorm_layer_norm_forward(h, &d, x, y, g, b, 1e-5f, sm, si);
    }
    return BNORM_STATUS_INTERNAL_ERROR;
  };
  auto backward = [&](bnorm_handle_t h, const void* x, const void* dy, const float* g, const float* sm, const float* si,
                      void* dx, float* dg, float* db) {
    switch (k.kind) {
      case Kind::kGroup: return bnorm_group_norm_backward(h, &d, groups, x, dy, g, sm, si, dx, dg, db);
      case Kind::kInstance: return bnorm_instance_norm_backward(h, &d, x, dy, g, sm, si, dx, dg, db);
      case Kind::kLayer: return bnorm_layer_norm_backward(h, &d, x, dy, g, sm, si, dx, dg, db);
    }
    return BNORM_STATUS_INTERNAL_ERROR;
  };
  const auto x = random_input(d, 31, 3.0), dy = random_input(d, 32);
  const auto gamma = random_vector(feats, 33, 0.5, 1.5), beta = random_vector(feats, 34, -1, 1);
  HostTensor hx(x, dt), hy(poisoned(ne), dt), hdy(dy, dt), hdx(poisoned(ne), dt);
  std::vector<float> sm(rows), si(rows), dg(feats), db(feats);
  ASSERT_EQ(forward(cpu, hx.data(), hy.data(), gamma.data(), beta.data(), sm.data(), si.data()), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(backward(cpu, hx.data(), hdy.data(), gamma.data(), sm.data(), si.data(), hdx.data(), dg.data(), db.data()),
            BNORM_STATUS_SUCCESS);
  const auto yr = to_double(hy.values()), dxr = to_double(hdx.values());
  DeviceBuffer d_x(ne, dt), d_y(ne, dt), d_dy(ne, dt), d_dx(ne, dt), d_g(feats), d_b(feats), d_sm(rows), d_si(rows),
      d_dg(feats), d_db(feats);
  d_x.upload(x);
  d_dy.upload(dy);
  d_g.upload(gamma);
  d_b.upload(beta);
  for (const std::string& spec : fwd_specs) {
    SCOPED_TRACE(spec);
    ASSERT_EQ(bnorm_set_variant(gpu, fwd_op, spec.c_str()), BNORM_STATUS_SUCCESS);
    d_y.poison();
    d_sm.poison();
    d_si.poison();
    ASSERT_EQ(forward(gpu, d_x.raw(), d_y.raw(), d_g.get(), d_b.get(), d_sm.get(), d_si.get()), BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_LT(rel_error(d_y.download(), yr), out_tol(dt, kOutTol));
    EXPECT_LT(rel_error(d_sm.download(), to_double(sm)), kStatTol);
    EXPECT_LT(rel_error(d_si.download(), to_double(si)), kStatTol * 3);
  }
  d_sm.upload(sm);
  d_si.upload(si);
  for (const std::string& spec : bwd_specs) {
    SCOPED_TRACE(spec);
    ASSERT_EQ(bnorm_set_variant(gpu, bwd_op, spec.c_str()), BNORM_STATUS_SUCCESS);
    d_dx.poison();
    d_dg.poison();
    d_db.poison();
    ASSERT_EQ(backward(gpu, d_x.raw(), d_dy.raw(), d_g.get(), d_sm.get(), d_si.get(), d_dx.raw(), d_dg.get(),
                       d_db.get()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_LT(rel_error(d_dx.download(), dxr), out_tol(dt, kDxTol));
    EXPECT_LT(rel_error(d_dg.download(), to_double(dg)), kDxTol);
    EXPECT_LT(rel_error(d_db.download(), to_double(db)), kDxTol);
  }
  bnorm_set_variant(gpu, fwd_op, nullptr);
  bnorm_set_variant(gpu, bwd_op, nullptr);
  (void)t;
}

TEST_F(GpuToolbox, PerSampleNormsEveryConfig) {
  const NormCase cases[] = {
      {{2, 32, 7, 7}, 8, Kind::kGroup},      {{4, 6, 5, 7}, 3, Kind::kGroup},   {{2, 64, 28, 28}, 32, Kind::kGroup},
      {{3, 12, 4, 4}, 1, Kind::kGroup},      {{8, 10, 1, 1}, 5, Kind::kGroup},  {{16, 64, 1, 1}, 8, Kind::kGroup},  {{3, 5, 16, 16}, 0, Kind::kInstance},
      {{2, 3, 9, 11}, 0, Kind::kInstance},   {{64, 768, 1, 1}, 0, Kind::kLayer}, {{7, 33, 1, 1}, 0, Kind::kLayer},
      {{3, 20000, 1, 1}, 0, Kind::kLayer},   {{2, 8, 9, 9}, 0, Kind::kLayer},   {{300, 256, 1, 1}, 0, Kind::kLayer},
  };
  for (const NormCase& k : cases)
    for (bnorm_dtype_t dt : kDtypes) {
      const bool layer = k.kind == Kind::kLayer;
      const bnorm_op_t fwd = layer ? BNORM_OP_LAYER_NORM_FORWARD : BNORM_OP_GROUP_NORM_FORWARD;
      const bnorm_op_t bwd = layer ? BNORM_OP_LAYER_NORM_BACKWARD : BNORM_OP_GROUP_NORM_BACKWARD;
      const bnorm_tensor_t d{k.s.n, k.s.c, k.s.h, k.s.w, BNORM_LAYOUT_NCHW, dt};
      const int64_t groups = layer ? 1 : k.kind == Kind::kInstance ? d.c : k.groups;
      SCOPED_TRACE(label(d) + " groups " + std::to_string(groups));
      const auto f = configs(fwd, d, groups), b = configs(bwd, d, groups);
      EXPECT_FALSE(f.empty());
      EXPECT_FALSE(b.empty());
      check_norm(this, gpu_, cpu_, k, dt, BNORM_LAYOUT_NCHW, f, b, fwd, bwd);
      // (N, C) inputs are both layouts; larger channels-last tensors are not supported.
      bnorm_tensor_t nhwc = d;
      nhwc.layout = BNORM_LAYOUT_NHWC;
      if (d.h * d.w == 1) {
        check_norm(this, gpu_, cpu_, k, dt, BNORM_LAYOUT_NHWC, configs(fwd, nhwc, groups), configs(bwd, nhwc, groups),
                   fwd, bwd);
      } else {
        int count = -1;
        ASSERT_EQ(bnorm_list_variants_grouped(gpu_, fwd, &nhwc, groups, 1, nullptr, 0, &count, nullptr),
                  BNORM_STATUS_SUCCESS);
        EXPECT_EQ(count, 0);
        DeviceBuffer d_x(numel(d), dt), d_y(numel(d), dt);
        const bnorm_status_t s =
            layer ? bnorm_layer_norm_forward(gpu_, &nhwc, d_x.raw(), d_y.raw(), nullptr, nullptr, 1e-5f, nullptr,
                                             nullptr)
                  : bnorm_group_norm_forward(gpu_, &nhwc, groups, d_x.raw(), d_y.raw(), nullptr, nullptr, 1e-5f,
                                             nullptr, nullptr);
        EXPECT_EQ(s, BNORM_STATUS_NOT_SUPPORTED);
        EXPECT_NE(std::string(bnorm_last_error()).find("NCHW"), std::string::npos) << bnorm_last_error();
      }
    }
}

TEST_F(GpuToolbox, PerSampleNormsRepeatBitwise) {
  const bnorm_tensor_t d = nchw(16, 32, 14, 14);
  const int64_t ne = numel(d);
  const auto x = random_input(d, 41), dy = random_input(d, 42);
  DeviceBuffer d_x(ne), d_y(ne), d_dy(ne), d_dx(ne), d_sm(16 * 8), d_si(16 * 8), d_dg(32), d_db(32);
  d_x.upload(x);
  d_dy.upload(dy);
  std::vector<float> first[3];
  for (int run = 0; run < 2; ++run) {
    ASSERT_EQ(bnorm_group_norm_forward(gpu_, &d, 8, d_x.raw(), d_y.raw(), nullptr, nullptr, 1e-5f, d_sm.get(),
                                       d_si.get()),
              BNORM_STATUS_SUCCESS);
    ASSERT_EQ(bnorm_group_norm_backward(gpu_, &d, 8, d_x.raw(), d_dy.raw(), nullptr, d_sm.get(), d_si.get(),
                                        d_dx.raw(), d_dg.get(), d_db.get()),
              BNORM_STATUS_SUCCESS);
    const std::vector<float> now[3] = {d_y.download(), d_dx.download(), d_dg.download()};
    for (int i = 0; i < 3; ++i) {
      if (run == 0) first[i] = now[i];
      else EXPECT_EQ(std::memcmp(first[i].data(), now[i].data(), now[i].size() * sizeof(float)), 0) << i;
    }
  }
}

TEST_F(GpuToolbox, EmptyBatchLaunchesNothingAndZeroesTheSums) {
  const bnorm_tensor_t d{0, 8, 4, 4, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  DeviceBuffer d_g(8), d_rm(8), d_rv(8), d_dg(8), d_db(8), d_stats(24);
  const std::vector<float> seven(8, 7.0f);
  d_rm.upload(seven);
  d_rv.upload(seven);
  d_dg.poison();
  d_db.poison();
  d_stats.poison();
  ASSERT_EQ(bnorm_forward_training(gpu_, &d, nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f, d_rm.get(), d_rv.get(),
                                   nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_backward(gpu_, &d, nullptr, nullptr, nullptr, d_rm.get(), d_rv.get(), nullptr, d_dg.get(),
                           d_db.get()),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_sync_local_stats(gpu_, &d, nullptr, d_stats.get()), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(d_rm.download(), seven);
  EXPECT_EQ(d_rv.download(), seven);
  EXPECT_EQ(d_dg.download(), std::vector<float>(8, 0.0f));
  EXPECT_EQ(d_db.download(), std::vector<float>(8, 0.0f));
  EXPECT_EQ(d_stats.download(), std::vector<float>(24, 0.0f));
}

}  // namespace
