// The CUDA backend past 32-bit sizes, on closed-form tensors (closed_form.hpp) filled on
// the device, whose statistics are known exactly: every channel's statistics and
// gradient sums are checked, and the outputs at windows around the element offsets and
// per-channel indices where a 32-bit index would wrap (closed_form_checks.hpp).
//
//   ManyChannels  64 x 4096 x 96 x 96 = 2.4e9 elements (> 2^31) in channels of 590K:
//                 element offsets past 2^31 on the reductions' 32-bit index path, the
//                 elementwise 64-bit path with vec 1; the persistent kernels fit here.
//   BigChannel    3000 x 1 x 1000 x 1000: one channel of 3e9 values (> 2^31): the
//                 reductions' and the elementwise 64-bit paths with vec 1, and 32-bit
//                 vector indices with 64-bit offsets with vec 4.
//   HugeVec4      8590 x 1 x 1000 x 1000 = 8.59e9 >= 2^33 elements, one channel, in
//                 place: 2^31 float4 vectors, the 64-bit paths with 4-wide loads.
// Every registered variant runs once per vector width it supports for the shape (one
// configuration each; the whole tuning space would take minutes). Device memory: two
// buffers of 9.7 GB, two of 12 GB, one of 34.4 GB, one test at a time; each test skips
// when the device has less free. Without a device every test reports skipped.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "closed_form_checks.hpp"
#include "gpu_fill.hpp"
#include "gpu_util.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

TensorReader device_reader() {
  return [](const float* base, int64_t offset, int64_t count) {
    std::vector<float> v(count);
    EXPECT_EQ(cudaMemcpy(v.data(), base + offset, count * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  };
}

class GpuLarge : public GpuTest {
 protected:
  // Whether bytes are free, with 1 GiB to spare for the workspace and the runtime.
  bool have_memory(size_t bytes) {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return false;
    return free >= bytes + (size_t{1} << 30);
  }

  void fill(float* p, const ClosedForm& f, bool dy) {
    BNORM_CUDA_OK(fill_closed_form_device(p, f, dy));
    BNORM_CUDA_OK(cudaDeviceSynchronize());
  }

  std::vector<std::string> specs(bnorm_op_t op, const bnorm_tensor_t& d) {
    return one_config_per_variant(configs(op, d, /*aligned16=*/true));  // cudaMalloc'd buffers
  }

  // Forward training of x into y (y == x: in place, x refilled for every configuration).
  void training(const ClosedForm& f, const bnorm_tensor_t& d, float* x, float* y) {
    std::vector<float> gamma(f.c), beta(f.c);
    for (int64_t ch = 0; ch < f.c; ++ch) {
      gamma[ch] = ClosedForm::gamma(ch);
      beta[ch] = ClosedForm::beta(ch);
    }
    const auto rm0 = random_vector(f.c, 91, -1, 1), rv0 = random_vector(f.c, 92, 0.5, 2);
    DeviceFloats dg(gamma), db(beta), drm(f.c), drv(f.c), dsm(f.c), dsi(f.c);
    const auto list = specs(BNORM_OP_FORWARD_TRAINING, d);
    ASSERT_FALSE(list.empty());
    for (const std::string& spec : list) {
      SCOPED_TRACE(spec);
      force(BNORM_OP_FORWARD_TRAINING, spec);
      if (x == y) {
        fill(x, f, false);
      } else {
        BNORM_CUDA_OK(cudaMemset(y, 0xff, static_cast<size_t>(f.numel()) * sizeof(float)));  // NaN
      }
      drm.upload(rm0);
      drv.upload(rv0);
      dsm.upload(poisoned(f.c));
      dsi.upload(poisoned(f.c));
      ASSERT_EQ(bnorm_forward_training(gpu_, &d, x, y, dg.get(), db.get(), kClosedFormMomentum, kClosedFormEps,
                                       drm.get(), drv.get(), dsm.get(), dsi.get()),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      BNORM_CUDA_OK(cudaDeviceSynchronize());
      check_closed_form_training(f, device_reader(), y, dsm.download(), dsi.download(), drm.download(), drv.download(),
                                 rm0, rv0);
    }
    bnorm_set_variant(gpu_, BNORM_OP_FORWARD_TRAINING, nullptr);
  }

  // Inference with the exact statistics as running statistics.
  void inference(const ClosedForm& f, const bnorm_tensor_t& d, float* x, float* y) {
    std::vector<float> gamma(f.c), beta(f.c), rm(f.c), rv(f.c);
    const ClosedFormSums s = closed_form_sums(f);
    for (int64_t ch = 0; ch < f.c; ++ch) {
      gamma[ch] = ClosedForm::gamma(ch);
      beta[ch] = ClosedForm::beta(ch);
      const ClosedFormChannel cf = closed_form_channel(f, s, ch);
      rm[ch] = static_cast<float>(cf.mean);
      rv[ch] = static_cast<float>(cf.var);
    }
    DeviceFloats dg(gamma), db(beta), drm(rm), drv(rv);
    const auto list = specs(BNORM_OP_FORWARD_INFERENCE, d);
    ASSERT_FALSE(list.empty());
    for (const std::string& spec : list) {
      SCOPED_TRACE(spec);
      force(BNORM_OP_FORWARD_INFERENCE, spec);
      if (x == y) {
        fill(x, f, false);
      } else {
        BNORM_CUDA_OK(cudaMemset(y, 0xff, static_cast<size_t>(f.numel()) * sizeof(float)));
      }
      ASSERT_EQ(bnorm_forward_inference(gpu_, &d, x, y, dg.get(), db.get(), drm.get(), drv.get(), kClosedFormEps),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      BNORM_CUDA_OK(cudaDeviceSynchronize());
      check_closed_form_inference(f, device_reader(), y, rm, rv);
    }
    bnorm_set_variant(gpu_, BNORM_OP_FORWARD_INFERENCE, nullptr);
  }

  // Training, inference and backward on two buffers of the tensor's size (skipped when
  // the device lacks the memory).
  void every_op_out_of_place(const ClosedForm& f, const bnorm_tensor_t& d) {
    const size_t bytes = static_cast<size_t>(f.numel()) * sizeof(float);
    if (!have_memory(2 * bytes)) GTEST_SKIP() << "needs " << 2 * bytes / 1e9 << " GB of free device memory";
    DeviceFloats a(static_cast<size_t>(f.numel())), b(static_cast<size_t>(f.numel()));
    ASSERT_TRUE(a.ok() && b.ok());
    fill(a.get(), f, false);
    training(f, d, a.get(), b.get());
    inference(f, d, a.get(), b.get());
    backward(f, d, a.get(), b.get());
  }

  // Backward with dx in place of dy (refilled for every configuration).
  void backward(const ClosedForm& f, const bnorm_tensor_t& d, float* x, float* dy) {
    std::vector<float> gamma(f.c), sm, si;
    for (int64_t ch = 0; ch < f.c; ++ch) gamma[ch] = ClosedForm::gamma(ch);
    closed_form_saved(f, &sm, &si);
    DeviceFloats dg(gamma), dsm(sm), dsi(si), ddg(f.c), ddb(f.c);
    const auto list = specs(BNORM_OP_BACKWARD, d);
    ASSERT_FALSE(list.empty());
    for (const std::string& spec : list) {
      SCOPED_TRACE(spec);
      force(BNORM_OP_BACKWARD, spec);
      fill(dy, f, true);
      ddg.upload(poisoned(f.c));
      ddb.upload(poisoned(f.c));
      ASSERT_EQ(bnorm_backward(gpu_, &d, x, dy, dg.get(), dsm.get(), dsi.get(), dy, ddg.get(), ddb.get()),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      BNORM_CUDA_OK(cudaDeviceSynchronize());
      check_closed_form_backward(f, device_reader(), dy, ddg.download(), ddb.download(), sm, si);
    }
    bnorm_set_variant(gpu_, BNORM_OP_BACKWARD, nullptr);
  }
};

TEST_F(GpuLarge, ManyChannelsPastTwoToThe31Elements) {
  const ClosedForm f{64, 4096, 96 * 96};
  const bnorm_tensor_t d = nchw(64, 4096, 96, 96);
  ASSERT_GT(f.numel(), int64_t{1} << 31);
  every_op_out_of_place(f, d);
}

TEST_F(GpuLarge, ChannelPastTwoToThe31Values) {
  const ClosedForm f{3000, 1, 1000 * 1000};
  const bnorm_tensor_t d = nchw(3000, 1, 1000, 1000);
  ASSERT_GT(f.m(), int64_t{1} << 31);
  every_op_out_of_place(f, d);
}

TEST_F(GpuLarge, FourWideVectorsPastTwoToThe31InPlace) {
  const ClosedForm f{8590, 1, 1000 * 1000};
  const bnorm_tensor_t d = nchw(8590, 1, 1000, 1000);
  ASSERT_GE(f.numel() / 4, int64_t{1} << 31);
  const size_t bytes = static_cast<size_t>(f.numel()) * sizeof(float);
  if (!have_memory(bytes)) GTEST_SKIP() << "needs " << bytes / 1e9 << " GB of free device memory";
  DeviceFloats a(static_cast<size_t>(f.numel()));
  ASSERT_TRUE(a.ok());
  training(f, d, a.get(), a.get());
  inference(f, d, a.get(), a.get());
}

}  // namespace
