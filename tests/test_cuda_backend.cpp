// The CUDA backend against the CPU backend (float64 accumulation) on fresh random inputs,
// with every configuration of every registered variant forced in turn, outputs poisoned
// with NaN before each call and running statistics restored. Also misaligned pointers,
// sizes that are not multiples of 4, large means, repeatability, streams, and pointers
// the device cannot address. Without a device every test reports skipped.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "device_buffer.hpp"
#include "gpu_util.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

class Gpu : public GpuTest {
 protected:
  // Every configuration of the call; a shape the tests use always has one.
  std::vector<std::string> configs(bnorm_op_t op, const bnorm_tensor_t& d, bool aligned) {
    std::vector<std::string> out = list_configs(gpu_, op, d, aligned);
    EXPECT_FALSE(out.empty());
    return out;
  }
};

// GPU fp32 Welford against CPU fp64: a few ulps per step of the reduction tree.
constexpr double kStatTol = 1e-5;
constexpr double kOutTol = 2e-5;
// dx cancels O(1) terms down to O(dy/sqrt(M)): looser.
constexpr double kDxTol = 1e-4;

struct Shape {
  int64_t n, c, h, w;
};

using Param = std::tuple<Shape, bnorm_dtype_t, bnorm_layout_t>;

void PrintTo(const Shape& s, std::ostream* os) { *os << s.n << "x" << s.c << "x" << s.h << "x" << s.w; }

class GpuShapes : public Gpu, public testing::WithParamInterface<Param> {
 protected:
  bnorm_tensor_t desc() const {
    const Shape& s = std::get<0>(GetParam());
    return bnorm_tensor_t{s.n, s.c, s.h, s.w, std::get<2>(GetParam()), std::get<1>(GetParam())};
  }
};

std::string param_name(const testing::TestParamInfo<Param>& i) {
  const Shape& s = std::get<0>(i.param);
  return std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) +
         "_" + dtype_name(std::get<1>(i.param)) + (std::get<2>(i.param) == BNORM_LAYOUT_NCHW ? "_nchw" : "_nhwc");
}

// Outputs stored in a 16-bit dtype differ from the reference by its rounding (the GPU
// rounds an fp32 result, the CPU an fp64 one: up to one unit of the dtype apart).
double out_tol(bnorm_dtype_t t, double f32_tol) { return std::max(f32_tol, 4 * unit_roundoff(t)); }

// Runs forward training on both backends for every configuration; misalign = 1 shifts
// every tensor pointer by one element so no 16-byte path may be taken.
void check_forward_training(Gpu* t, bnorm_handle_t gpu, bnorm_handle_t cpu, const bnorm_tensor_t& d,
                            const std::vector<std::string>& specs, int misalign, double mean_scale = 1.0) {
  const int64_t ne = numel(d);
  const auto x = random_input(d, 1000 + ne, mean_scale);
  const auto gamma = random_vector(d.c, 2, 0.5, 1.5), beta = random_vector(d.c, 3, -1, 1);
  const auto rm0 = random_vector(d.c, 4, -1, 1), rv0 = random_vector(d.c, 5, 0.5, 2);

  HostTensor hx(x, d.dtype), hy(poisoned(ne), d.dtype);
  auto sm_ref = poisoned(d.c), si_ref = poisoned(d.c);
  auto rm_ref = rm0, rv_ref = rv0;
  ASSERT_EQ(bnorm_forward_training(cpu, &d, hx.data(), hy.data(), gamma.data(), beta.data(), 0.1f, 1e-5f,
                                   rm_ref.data(), rv_ref.data(), sm_ref.data(), si_ref.data()),
            BNORM_STATUS_SUCCESS);
  const auto y_ref = hy.values();
  const std::vector<double> yr(y_ref.begin(), y_ref.end()), smr(sm_ref.begin(), sm_ref.end()),
      sir(si_ref.begin(), si_ref.end()), rmr(rm_ref.begin(), rm_ref.end()), rvr(rv_ref.begin(), rv_ref.end());

  DeviceBuffer dx_(ne, d.dtype, misalign), dy_(ne, d.dtype, misalign), dg(d.c), db(d.c), drm(d.c), drv(d.c),
      dsm(d.c), dsi(d.c);
  dx_.upload(x);
  dg.upload(gamma);
  db.upload(beta);
  for (const std::string& spec : specs) {
    SCOPED_TRACE(spec);
    ASSERT_EQ(bnorm_set_variant(gpu, BNORM_OP_FORWARD_TRAINING, spec.c_str()), BNORM_STATUS_SUCCESS);
    dy_.upload(poisoned(ne));
    dsm.upload(poisoned(d.c));
    dsi.upload(poisoned(d.c));
    drm.upload(rm0);
    drv.upload(rv0);
    ASSERT_EQ(bnorm_forward_training(gpu, &d, dx_.get(), dy_.get(), dg.get(), db.get(), 0.1f, 1e-5f, drm.get(),
                                     drv.get(), dsm.get(), dsi.get()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const double tol = out_tol(d.dtype, kOutTol * std::max(1.0, mean_scale / 100));
    EXPECT_LT(max_channel_rel_error(d, dy_.download(), yr), tol);
    EXPECT_LT(rel_error(dsm.download(), smr), kStatTol);
    EXPECT_LT(rel_error(dsi.download(), sir), kStatTol * std::max(1.0, mean_scale / 100));
    EXPECT_LT(rel_error(drm.download(), rmr), kStatTol);
    EXPECT_LT(rel_error(drv.download(), rvr), kStatTol * std::max(1.0, mean_scale / 100));
  }
  ASSERT_EQ(bnorm_set_variant(gpu, BNORM_OP_FORWARD_TRAINING, nullptr), BNORM_STATUS_SUCCESS);
  (void)t;
}

TEST_P(GpuShapes, ForwardTrainingEveryConfig) {
  const bnorm_tensor_t d = desc();
  check_forward_training(this, gpu_, cpu_, d, configs(BNORM_OP_FORWARD_TRAINING, d, true), 0);
}

TEST_P(GpuShapes, ForwardTrainingMisaligned) {
  const bnorm_tensor_t d = desc();
  check_forward_training(this, gpu_, cpu_, d, configs(BNORM_OP_FORWARD_TRAINING, d, false), 1);
}

TEST_P(GpuShapes, InferenceEveryConfig) {
  const bnorm_tensor_t d = desc();
  const int64_t ne = numel(d);
  for (int misalign : {0, 1}) {
    SCOPED_TRACE(misalign ? "misaligned" : "aligned");
    const auto x = random_input(d, 7 + misalign);
    const auto gamma = random_vector(d.c, 8, 0.5, 1.5), beta = random_vector(d.c, 9, -1, 1);
    const auto rm = random_vector(d.c, 10, -1, 1), rv = random_vector(d.c, 11, 0.5, 2);
    HostTensor hx(x, d.dtype), hy(poisoned(ne), d.dtype);
    ASSERT_EQ(bnorm_forward_inference(cpu_, &d, hx.data(), hy.data(), gamma.data(), beta.data(), rm.data(),
                                      rv.data(), 1e-5f),
              BNORM_STATUS_SUCCESS);
    const auto y_ref = hy.values();
    const std::vector<double> yr(y_ref.begin(), y_ref.end());
    DeviceBuffer dx_(ne, d.dtype, misalign), dy_(ne, d.dtype, misalign), dg(d.c), db(d.c), drm(d.c), drv(d.c);
    dx_.upload(x);
    dg.upload(gamma);
    db.upload(beta);
    drm.upload(rm);
    drv.upload(rv);
    for (const std::string& spec : configs(BNORM_OP_FORWARD_INFERENCE, d, misalign == 0)) {
      SCOPED_TRACE(spec);
      ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_FORWARD_INFERENCE, spec.c_str()), BNORM_STATUS_SUCCESS);
      dy_.upload(poisoned(ne));
      ASSERT_EQ(bnorm_forward_inference(gpu_, &d, dx_.get(), dy_.get(), dg.get(), db.get(), drm.get(), drv.get(),
                                        1e-5f),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_LT(max_channel_rel_error(d, dy_.download(), yr), out_tol(d.dtype, kOutTol));
    }
  }
}

TEST_P(GpuShapes, BackwardEveryConfig) {
  const bnorm_tensor_t d = desc();
  const int64_t ne = numel(d);
  for (int misalign : {0, 1}) {
    SCOPED_TRACE(misalign ? "misaligned" : "aligned");
    const auto x = random_input(d, 20 + misalign), dy = random_input(d, 22 + misalign);
    const auto gamma = random_vector(d.c, 24, 0.5, 1.5);
    HostTensor hx(x, d.dtype), hdy(dy, d.dtype), hy(poisoned(ne), d.dtype), hdx(poisoned(ne), d.dtype);
    std::vector<float> sm(d.c), si(d.c);
    ASSERT_EQ(bnorm_forward_training(cpu_, &d, hx.data(), hy.data(), gamma.data(), nullptr, 0.1f, 1e-5f, nullptr,
                                     nullptr, sm.data(), si.data()),
              BNORM_STATUS_SUCCESS);
    auto dg_ref = poisoned(d.c), db_ref = poisoned(d.c);
    ASSERT_EQ(bnorm_backward(cpu_, &d, hx.data(), hdy.data(), gamma.data(), sm.data(), si.data(), hdx.data(),
                             dg_ref.data(), db_ref.data()),
              BNORM_STATUS_SUCCESS);
    const auto dx_ref = hdx.values();
    const std::vector<double> dxr(dx_ref.begin(), dx_ref.end()), dgr(dg_ref.begin(), dg_ref.end()),
        dbr(db_ref.begin(), db_ref.end());
    const std::vector<double> terms = dx_term_scale(d, dy, gamma.data(), si);
    DeviceBuffer d_x(ne, d.dtype, misalign), d_dy(ne, d.dtype, misalign), d_dx(ne, d.dtype, misalign), d_g(d.c),
        d_sm(d.c), d_si(d.c), d_dg(d.c), d_db(d.c);
    d_x.upload(x);
    d_dy.upload(dy);
    d_g.upload(gamma);
    d_sm.upload(sm);
    d_si.upload(si);
    for (const std::string& spec : configs(BNORM_OP_BACKWARD, d, misalign == 0)) {
      SCOPED_TRACE(spec);
      ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_BACKWARD, spec.c_str()), BNORM_STATUS_SUCCESS);
      d_dx.upload(poisoned(ne));
      d_dg.upload(poisoned(d.c));
      d_db.upload(poisoned(d.c));
      ASSERT_EQ(bnorm_backward(gpu_, &d, d_x.get(), d_dy.get(), d_g.get(), d_sm.get(), d_si.get(), d_dx.get(),
                               d_dg.get(), d_db.get()),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_LT(max_channel_rel_error(d, d_dx.download(), dxr, &terms), out_tol(d.dtype, kDxTol));
      EXPECT_LT(rel_error(d_dg.download(), dgr), kDxTol);
      EXPECT_LT(rel_error(d_db.download(), dbr), kStatTol);
    }
  }
}

// relu(bn(x) + z) forward (training and inference) and its backward with dz, every
// configuration, against the CPU backend's fused calls.
TEST_P(GpuShapes, FusedReluAddEveryConfig) {
  const bnorm_tensor_t d = desc();
  const int64_t ne = numel(d);
  const auto x = random_input(d, 31), z = random_input(d, 32), dy = random_input(d, 33);
  const auto gamma = random_vector(d.c, 34, 0.5, 1.5), beta = random_vector(d.c, 35, -1, 1);
  const auto rm = random_vector(d.c, 36, -1, 1), rv = random_vector(d.c, 37, 0.5, 2);
  HostTensor hx(x, d.dtype), hz(z, d.dtype), hy(poisoned(ne), d.dtype), hdy(dy, d.dtype), hdx(poisoned(ne), d.dtype),
      hdz(poisoned(ne), d.dtype), hyi(poisoned(ne), d.dtype);
  std::vector<float> sm(d.c), si(d.c), dg(d.c), db(d.c);
  ASSERT_EQ(bnorm_forward_training_fused(cpu_, &d, hx.data(), hz.data(), hy.data(), gamma.data(), beta.data(), 0.1f,
                                         1e-5f, nullptr, nullptr, sm.data(), si.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_backward_fused(cpu_, &d, hx.data(), hy.data(), hdy.data(), gamma.data(), sm.data(), si.data(),
                                 hdx.data(), hdz.data(), dg.data(), db.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_forward_inference_fused(cpu_, &d, hx.data(), hz.data(), hyi.data(), gamma.data(), beta.data(),
                                          rm.data(), rv.data(), 1e-5f, BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  const auto to_d = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  const auto y_ref = hy.values();
  const auto yr = to_d(y_ref), yir = to_d(hyi.values()), dxr = to_d(hdx.values()), dzr = to_d(hdz.values());
  const auto dgr = to_d(dg), dbr = to_d(db);
  std::vector<float> g(ne);
  for (int64_t i = 0; i < ne; ++i) g[i] = y_ref[i] > 0.0f ? dy[i] : 0.0f;
  const std::vector<double> terms = dx_term_scale(d, g, gamma.data(), si);

  DeviceBuffer d_x(ne, d.dtype), d_z(ne, d.dtype), d_y(ne, d.dtype), d_dy(ne, d.dtype), d_dx(ne, d.dtype),
      d_dz(ne, d.dtype), d_g(d.c), d_b(d.c), d_sm(d.c), d_si(d.c), d_dg(d.c), d_db(d.c), d_rm(d.c), d_rv(d.c);
  d_x.upload(x);
  d_z.upload(z);
  d_dy.upload(dy);
  d_g.upload(gamma);
  d_b.upload(beta);
  d_rm.upload(rm);
  d_rv.upload(rv);
  for (const std::string& spec : configs(BNORM_OP_FORWARD_TRAINING, d, true)) {
    SCOPED_TRACE(spec);
    ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_FORWARD_TRAINING, spec.c_str()), BNORM_STATUS_SUCCESS);
    d_y.upload(poisoned(ne));
    ASSERT_EQ(bnorm_forward_training_fused(gpu_, &d, d_x.raw(), d_z.raw(), d_y.raw(), d_g.get(), d_b.get(), 0.1f,
                                           1e-5f, nullptr, nullptr, d_sm.get(), d_si.get(), BNORM_ACTIVATION_RELU),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_LT(rel_error(d_y.download(), yr), out_tol(d.dtype, kOutTol));
  }
  // Backward from the CPU's y, so both backends see the same ReLU mask.
  d_y.upload(y_ref);
  d_sm.upload(sm);
  d_si.upload(si);
  for (const std::string& spec : configs(BNORM_OP_BACKWARD, d, true)) {
    SCOPED_TRACE(spec);
    ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_BACKWARD, spec.c_str()), BNORM_STATUS_SUCCESS);
    d_dx.upload(poisoned(ne));
    d_dz.upload(poisoned(ne));
    d_dg.upload(poisoned(d.c));
    ASSERT_EQ(bnorm_backward_fused(gpu_, &d, d_x.raw(), d_y.raw(), d_dy.raw(), d_g.get(), d_sm.get(), d_si.get(),
                                   d_dx.raw(), d_dz.raw(), d_dg.get(), d_db.get(), BNORM_ACTIVATION_RELU),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_LT(max_channel_rel_error(d, d_dx.download(), dxr, &terms), out_tol(d.dtype, kDxTol));
    EXPECT_EQ(d_dz.download(), hdz.values());  // the masked gradient, exactly
    EXPECT_LT(rel_error(d_dg.download(), dgr), kDxTol);
    EXPECT_LT(rel_error(d_db.download(), dbr), kDxTol);
  }
  for (const std::string& spec : configs(BNORM_OP_FORWARD_INFERENCE, d, true)) {
    SCOPED_TRACE(spec);
    ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_FORWARD_INFERENCE, spec.c_str()), BNORM_STATUS_SUCCESS);
    d_y.upload(poisoned(ne));
    ASSERT_EQ(bnorm_forward_inference_fused(gpu_, &d, d_x.raw(), d_z.raw(), d_y.raw(), d_g.get(), d_b.get(),
                                            d_rm.get(), d_rv.get(), 1e-5f, BNORM_ACTIVATION_RELU),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_LT(rel_error(d_y.download(), yir), out_tol(d.dtype, kOutTol));
  }
}

// Every configuration twice on the same inputs: bitwise identical outputs (the split
// reduction merges in CTA order, never in arrival order).
TEST_P(GpuShapes, RepeatableBitwise) {
  const bnorm_tensor_t d = desc();
  const int64_t ne = numel(d);
  const auto x = random_input(d, 77), dy = random_input(d, 78);
  DeviceBuffer d_x(ne, d.dtype), d_y(ne, d.dtype), d_dy(ne, d.dtype), d_dx(ne, d.dtype), d_sm(d.c), d_si(d.c),
      d_dg(d.c), d_db(d.c);
  d_x.upload(x);
  d_dy.upload(dy);
  // Forward configurations paired with backward ones in turn (the lists differ: backward's
  // persistent tiles hold x and dy, so fewer channels fit).
  const std::vector<std::string> fwd = configs(BNORM_OP_FORWARD_TRAINING, d, true);
  const std::vector<std::string> bwd = configs(BNORM_OP_BACKWARD, d, true);
  for (size_t i = 0; i < std::max(fwd.size(), bwd.size()); ++i) {
    const std::string& f = fwd[i % fwd.size()];
    const std::string& b = bwd[i % bwd.size()];
    SCOPED_TRACE(f + " / " + b);
    ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_FORWARD_TRAINING, f.c_str()), BNORM_STATUS_SUCCESS);
    ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_BACKWARD, b.c_str()), BNORM_STATUS_SUCCESS);
    std::vector<float> first[4];
    for (int run = 0; run < 2; ++run) {
      ASSERT_EQ(bnorm_forward_training(gpu_, &d, d_x.get(), d_y.get(), nullptr, nullptr, 0.1f, 1e-5f, nullptr,
                                       nullptr, d_sm.get(), d_si.get()),
                BNORM_STATUS_SUCCESS);
      ASSERT_EQ(bnorm_backward(gpu_, &d, d_x.get(), d_dy.get(), nullptr, d_sm.get(), d_si.get(), d_dx.get(),
                               d_dg.get(), d_db.get()),
                BNORM_STATUS_SUCCESS);
      const std::vector<float> now[4] = {d_y.download(), d_si.download(), d_dx.download(), d_dg.download()};
      if (run == 0) {
        for (int i = 0; i < 4; ++i) first[i] = now[i];
      } else {
        for (int i = 0; i < 4; ++i)
          EXPECT_EQ(std::memcmp(first[i].data(), now[i].data(), first[i].size() * sizeof(float)), 0) << i;
      }
    }
  }
  bnorm_set_variant(gpu_, BNORM_OP_FORWARD_TRAINING, nullptr);
  bnorm_set_variant(gpu_, BNORM_OP_BACKWARD, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Suite, GpuShapes,
                         testing::Combine(testing::Values(Shape{1, 1, 1, 2}, Shape{2, 1, 1, 1}, Shape{3, 5, 7, 9},
                                                          Shape{65536, 3, 1, 1}, Shape{2, 4096, 1, 1},
                                                          Shape{128, 6, 24, 24}, Shape{128, 16, 8, 8},
                                                          Shape{128, 120, 1, 1}, Shape{8, 64, 28, 28},
                                                          Shape{4, 3, 131, 131}, Shape{2, 2048, 7, 7}),
                                          testing::Values(BNORM_DTYPE_F32, BNORM_DTYPE_F16, BNORM_DTYPE_BF16),
                                          testing::Values(BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC)),
                         param_name);

TEST_F(Gpu, LargeMeanEveryConfig) {
  // |mean|/std = 1e4 per channel: the shifted Welford keeps the GPU near the CPU.
  const bnorm_tensor_t d = nchw(64, 4, 16, 16);
  check_forward_training(this, gpu_, cpu_, d, configs(BNORM_OP_FORWARD_TRAINING, d, true), 0, 1e4);
}

TEST_F(Gpu, StreamsOrderCallsAndSwitchSafely) {
  const bnorm_tensor_t d = nchw(32, 8, 32, 32);
  const int64_t ne = numel(d);
  const auto x = random_tensor(d, 90);
  std::vector<float> y_ref(ne), sm(d.c), si(d.c);
  ASSERT_EQ(bnorm_forward_training(cpu_, &d, x.data(), y_ref.data(), nullptr, nullptr, 0.1f, 1e-5f, nullptr,
                                   nullptr, sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  const std::vector<double> yr(y_ref.begin(), y_ref.end());
  cudaStream_t s1, s2;
  CUDA_OK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CUDA_OK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  DeviceBuffer d_x(ne), d_y(ne), d_z(ne);
  d_x.upload(x);
  d_y.upload(poisoned(ne));
  d_z.upload(poisoned(ne));
  ASSERT_EQ(bnorm_set_stream(gpu_, s1), BNORM_STATUS_SUCCESS);
  void* got = nullptr;
  ASSERT_EQ(bnorm_get_stream(gpu_, &got), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(got, static_cast<void*>(s1));
  ASSERT_EQ(bnorm_forward_training(gpu_, &d, d_x.get(), d_y.get(), nullptr, nullptr, 0.1f, 1e-5f, nullptr, nullptr,
                                   nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  // Switch streams with work in flight: the handle orders s2 after s1's use of its
  // workspace.
  ASSERT_EQ(bnorm_set_stream(gpu_, s2), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_forward_training(gpu_, &d, d_x.get(), d_z.get(), nullptr, nullptr, 0.1f, 1e-5f, nullptr, nullptr,
                                   nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  CUDA_OK(cudaStreamSynchronize(s2));
  CUDA_OK(cudaStreamSynchronize(s1));
  EXPECT_LT(max_channel_rel_error(d, d_y.download(), yr), kOutTol);
  EXPECT_LT(max_channel_rel_error(d, d_z.download(), yr), kOutTol);
  ASSERT_EQ(bnorm_set_stream(gpu_, nullptr), BNORM_STATUS_SUCCESS);
  CUDA_OK(cudaStreamDestroy(s1));
  CUDA_OK(cudaStreamDestroy(s2));
}

TEST_F(Gpu, HostPointersAreRejectedAndNothingIsWritten) {
  const bnorm_tensor_t d = nchw(2, 3, 4, 4);
  const int64_t ne = numel(d);
  std::vector<float> host_x = random_tensor(d, 5);
  DeviceBuffer d_y(ne), d_rm(d.c), d_rv(d.c);
  const std::vector<float> sentinel(ne, 7.0f), rs(d.c, 3.0f);
  d_y.upload(sentinel);
  d_rm.upload(rs);
  d_rv.upload(rs);
  EXPECT_EQ(bnorm_forward_training(gpu_, &d, host_x.data(), d_y.get(), nullptr, nullptr, 0.1f, 1e-5f, d_rm.get(),
                                   d_rv.get(), nullptr, nullptr),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("x"), std::string::npos) << bnorm_last_error();
  EXPECT_EQ(d_y.download(), sentinel);
  EXPECT_EQ(d_rm.download(), rs);
  EXPECT_EQ(d_rv.download(), rs);
}

TEST_F(Gpu, QueryReportsHeuristicAndOverride) {
  const bnorm_tensor_t d = nchw(128, 6, 24, 24);
  char spec[128];
  bnorm_choice_t why;
  ASSERT_EQ(bnorm_query_variant(gpu_, BNORM_OP_FORWARD_TRAINING, &d, 1, spec, sizeof spec, &why),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(why, BNORM_CHOICE_HEURISTIC);
  // The heuristic's pick is among the listed configurations, and first in the list.
  EXPECT_EQ(configs(BNORM_OP_FORWARD_TRAINING, d, true).front(), spec);
  ASSERT_EQ(bnorm_set_variant(gpu_, BNORM_OP_FORWARD_TRAINING, "two_pass_block:t128"), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_query_variant(gpu_, BNORM_OP_FORWARD_TRAINING, &d, 1, spec, sizeof spec, &why),
            BNORM_STATUS_SUCCESS);
  EXPECT_STREQ(spec, "two_pass_block:t128:v4:s1");
  EXPECT_EQ(why, BNORM_CHOICE_OVERRIDE);
  EXPECT_EQ(bnorm_set_variant(gpu_, BNORM_OP_FORWARD_TRAINING, "nonsense"), BNORM_STATUS_INVALID_VALUE);
}

}  // namespace
