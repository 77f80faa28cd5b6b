// The DLPack entry points on the CUDA backend: kDLCUDA tensors in both layouts give
// bitwise what the plain calls give on the same handle, and what only a CUDA handle
// checks (the device type, the device ordinal) is refused with its status and nothing
// written. Without a device every test reports skipped.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "bnorm/bnorm_dlpack.h"
#include "device_buffer.hpp"
#include "gpu_util.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

constexpr int64_t N = 4, C = 3, H = 7, W = 9;  // 63 values per sample and channel: not a multiple of 4
constexpr size_t kNumel = N * C * H * W, kC = C;
constexpr float kSentinel = 12345.678f;

struct Tensor : DLTensor {
  std::vector<int64_t> shape_store, stride_store;
  Tensor(void* d, std::vector<int64_t> shp, std::vector<int64_t> str, DLDevice dev = {kDLCUDA, 0})
      : DLTensor{}, shape_store(std::move(shp)), stride_store(std::move(str)) {
    data = d;
    device = dev;
    ndim = static_cast<int>(shape_store.size());
    dtype = {kDLFloat, 32, 1};
    shape = shape_store.data();
    strides = stride_store.empty() ? nullptr : stride_store.data();
  }
  Tensor(const Tensor&) = delete;
};

// The device buffers of one training step and its backward.
struct Step {
  DeviceBuffer x{kNumel}, dy{kNumel}, y{kNumel}, dx{kNumel};
  DeviceBuffer gamma{kC}, beta{kC}, rm{kC}, rv{kC}, sm{kC}, si{kC}, dg{kC}, db{kC};
  Step() {
    x.upload(random_tensor(nchw(N, C, H, W), 11, 3.0, 2.0));
    dy.upload(random_tensor(nchw(N, C, H, W), 12));
    gamma.upload(random_vector(C, 13, 0.5, 1.5));
    beta.upload(random_vector(C, 14, -1, 1));
    rm.upload(std::vector<float>(C, 0.0f));
    rv.upload(std::vector<float>(C, 1.0f));
    for (const DeviceBuffer* b : {&y, &dx, &sm, &si, &dg, &db}) b->poison();
  }
};

class GpuDlPack : public GpuTest {};

TEST_F(GpuDlPack, CudaTensorsMatchThePlainCallsBitwise) {
  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC}) {
    SCOPED_TRACE(layout == BNORM_LAYOUT_NCHW ? "nchw" : "nhwc");
    const std::vector<int64_t> str = layout == BNORM_LAYOUT_NCHW ? std::vector<int64_t>{C * H * W, H * W, W, 1}
                                                                 : std::vector<int64_t>{H * W * C, 1, W * C, C};
    Step a, b;
    Tensor x(a.x.raw(), {N, C, H, W}, str), y(a.y.raw(), {N, C, H, W}, str), dy(a.dy.raw(), {N, C, H, W}, str),
        dx(a.dx.raw(), {N, C, H, W}, str);
    Tensor g(a.gamma.raw(), {C}, {}), be(a.beta.raw(), {C}, {}), rm(a.rm.raw(), {C}, {}), rv(a.rv.raw(), {C}, {}),
        sm(a.sm.raw(), {C}, {}), si(a.si.raw(), {C}, {}), dg(a.dg.raw(), {C}, {}), db(a.db.raw(), {C}, {});
    ASSERT_EQ(bnorm_dlpack_forward_training(gpu_, &x, &y, &g, &be, 0.1f, 1e-5f, &rm, &rv, &sm, &si),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(bnorm_dlpack_backward(gpu_, &x, &dy, &g, &sm, &si, &dx, &dg, &db), BNORM_STATUS_SUCCESS)
        << bnorm_last_error();

    const bnorm_tensor_t d{N, C, H, W, layout, BNORM_DTYPE_F32};
    ASSERT_EQ(bnorm_forward_training(gpu_, &d, b.x.raw(), b.y.raw(), b.gamma.get(), b.beta.get(), 0.1f, 1e-5f,
                                     b.rm.get(), b.rv.get(), b.sm.get(), b.si.get()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(bnorm_backward(gpu_, &d, b.x.raw(), b.dy.raw(), b.gamma.get(), b.sm.get(), b.si.get(), b.dx.raw(),
                             b.dg.get(), b.db.get()),
              BNORM_STATUS_SUCCESS)
        << bnorm_last_error();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    // The same handle, dispatch and inputs: the same kernels, so the same bits.
    EXPECT_EQ(a.y.download(), b.y.download());
    EXPECT_EQ(a.rm.download(), b.rm.download());
    EXPECT_EQ(a.rv.download(), b.rv.download());
    EXPECT_EQ(a.si.download(), b.si.download());
    EXPECT_EQ(a.dx.download(), b.dx.download());
    EXPECT_EQ(a.dg.download(), b.dg.download());
    EXPECT_EQ(a.db.download(), b.db.download());
    for (float v : a.y.download()) ASSERT_FALSE(std::isnan(v));  // the poison was overwritten
  }
}

TEST_F(GpuDlPack, ForeignDevicesAreRefusedAndNothingIsWritten) {
  int devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  struct Case {
    const char* what;
    DLDevice x_device;
    bnorm_status_t expected;
    const char* mentions;
  };
  const Case cases[] = {
      {"a CPU tensor on a CUDA handle", {kDLCPU, 0}, BNORM_STATUS_NOT_SUPPORTED, "x lives on DLPack device type 1"},
      {"an OpenCL tensor", {kDLOpenCL, 0}, BNORM_STATUS_NOT_SUPPORTED, "x lives on DLPack device type 4"},
      {"another CUDA device", {kDLCUDA, devices}, BNORM_STATUS_INVALID_VALUE, "x is on CUDA device"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    Step a;
    a.y.upload(std::vector<float>(kNumel, kSentinel));
    Tensor x(a.x.raw(), {N, C, H, W}, {}, k.x_device), y(a.y.raw(), {N, C, H, W}, {});
    Tensor rm(a.rm.raw(), {C}, {}), rv(a.rv.raw(), {C}, {});
    const bnorm_status_t s =
        bnorm_dlpack_forward_training(gpu_, &x, &y, nullptr, nullptr, 0.1f, 1e-5f, &rm, &rv, nullptr, nullptr);
    EXPECT_EQ(s, k.expected) << bnorm_status_string(s) << ": " << bnorm_last_error();
    EXPECT_NE(std::string(bnorm_last_error()).find(k.mentions), std::string::npos)
        << "'" << bnorm_last_error() << "' should mention '" << k.mentions << "'";
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    for (float v : a.y.download()) ASSERT_EQ(v, kSentinel);
    for (float v : a.rm.download()) ASSERT_EQ(v, 0.0f);
  }
}

}  // namespace
