// The DLPack entry points on the CPU backend: contiguous NCHW, channels-last NHWC, NULL
// strides and (N, C) tensors give what the plain calls give; every kind of tensor bnorm
// does not take is refused with its status, a message naming the tensor, and nothing
// written.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "bnorm/bnorm_dlpack.h"
#include "host_helpers.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

constexpr float kSentinel = 12345.678f;

// A DLTensor over a vector's storage, owning its shape and strides.
struct Tensor : DLTensor {
  std::vector<int64_t> shape_store, stride_store;
  Tensor(void* d, std::vector<int64_t> shp, std::vector<int64_t> str, DLDataType type = {kDLFloat, 32, 1})
      : DLTensor{}, shape_store(std::move(shp)), stride_store(std::move(str)) {
    data = d;
    device = {kDLCPU, 0};
    ndim = static_cast<int>(shape_store.size());
    dtype = type;
    shape = shape_store.data();
    strides = stride_store.empty() ? nullptr : stride_store.data();
    byte_offset = 0;
  }
  Tensor(const Tensor&) = delete;
};

std::vector<int64_t> nchw_strides(int64_t, int64_t c, int64_t h, int64_t w) { return {c * h * w, h * w, w, 1}; }
std::vector<int64_t> nhwc_strides(int64_t, int64_t c, int64_t h, int64_t w) { return {h * w * c, 1, w * c, c}; }

constexpr int64_t N = 3, C = 4, H = 5, W = 6;

struct Data {
  std::vector<float> x = random_tensor(nchw(N, C, H, W), 1), dy = random_tensor(nchw(N, C, H, W), 2);
  std::vector<float> y = std::vector<float>(N * C * H * W, kSentinel), dx = y;
  std::vector<float> gamma = random_vector(C, 3, 0.5, 1.5), beta = random_vector(C, 4, -1, 1);
  std::vector<float> rm = std::vector<float>(C, 0.0f), rv = std::vector<float>(C, 1.0f), sm = std::vector<float>(C),
                     si = std::vector<float>(C), dg = std::vector<float>(C), db = std::vector<float>(C);
};

TEST(DlPack, ContiguousLayoutsMatchThePlainCalls) {
  Handle h;
  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC})
    for (bool null_strides : {false, true}) {
      if (null_strides && layout == BNORM_LAYOUT_NHWC) continue;  // NULL strides are row-major
      SCOPED_TRACE(layout == BNORM_LAYOUT_NCHW ? (null_strides ? "nchw, NULL strides" : "nchw") : "nhwc");
      Data a, b;
      const auto str = null_strides ? std::vector<int64_t>{}
                       : layout == BNORM_LAYOUT_NCHW ? nchw_strides(N, C, H, W) : nhwc_strides(N, C, H, W);
      Tensor x(a.x.data(), {N, C, H, W}, str), y(a.y.data(), {N, C, H, W}, str), dy(a.dy.data(), {N, C, H, W}, str),
          dx(a.dx.data(), {N, C, H, W}, str);
      Tensor g(a.gamma.data(), {C}, {}), be(a.beta.data(), {C}, {1}), rm(a.rm.data(), {C}, {}), rv(a.rv.data(), {C}, {}),
          sm(a.sm.data(), {C}, {}), si(a.si.data(), {C}, {}), dg(a.dg.data(), {C}, {}), db(a.db.data(), {C}, {});
      ASSERT_EQ(bnorm_dlpack_forward_training(h.h, &x, &y, &g, &be, 0.1f, 1e-5f, &rm, &rv, &sm, &si),
                BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      ASSERT_EQ(bnorm_dlpack_backward(h.h, &x, &dy, &g, &sm, &si, &dx, &dg, &db), BNORM_STATUS_SUCCESS)
          << bnorm_last_error();
      const bnorm_tensor_t d{N, C, H, W, layout, BNORM_DTYPE_F32};
      ASSERT_EQ(bnorm_forward_training(h.h, &d, b.x.data(), b.y.data(), b.gamma.data(), b.beta.data(), 0.1f, 1e-5f,
                                       b.rm.data(), b.rv.data(), b.sm.data(), b.si.data()),
                BNORM_STATUS_SUCCESS);
      ASSERT_EQ(bnorm_backward(h.h, &d, b.x.data(), b.dy.data(), b.gamma.data(), b.sm.data(), b.si.data(), b.dx.data(),
                               b.dg.data(), b.db.data()),
                BNORM_STATUS_SUCCESS);
      EXPECT_EQ(a.y, b.y);
      EXPECT_EQ(a.rm, b.rm);
      EXPECT_EQ(a.dx, b.dx);
      EXPECT_EQ(a.dg, b.dg);
      std::vector<float> yi(a.y.size()), yi2(a.y.size());
      Tensor ti(yi.data(), {N, C, H, W}, str);
      ASSERT_EQ(bnorm_dlpack_forward_inference(h.h, &x, &ti, &g, &be, &rm, &rv, 1e-5f), BNORM_STATUS_SUCCESS);
      ASSERT_EQ(bnorm_forward_inference(h.h, &d, b.x.data(), yi2.data(), b.gamma.data(), b.beta.data(), b.rm.data(),
                                        b.rv.data(), 1e-5f),
                BNORM_STATUS_SUCCESS);
      EXPECT_EQ(yi, yi2);
    }
}

TEST(DlPack, MatricesSixteenBitTypesAndByteOffsetsAreDescribed) {
  Handle h;
  std::vector<uint16_t> storage(2 + 8 * 5);
  Tensor m(storage.data(), {8, 5}, {5, 1}, DLDataType{kDLBfloat, 16, 1});
  m.byte_offset = 4;  // two elements in
  bnorm_tensor_t d{};
  void* data = nullptr;
  ASSERT_EQ(bnorm_dlpack_describe(h.h, &m, &d, &data), BNORM_STATUS_SUCCESS) << bnorm_last_error();
  EXPECT_EQ(d.n, 8);
  EXPECT_EQ(d.c, 5);
  EXPECT_EQ(d.h * d.w, 1);
  EXPECT_EQ(d.dtype, BNORM_DTYPE_BF16);
  EXPECT_EQ(data, static_cast<void*>(storage.data() + 2));
  // A size-1 dimension may carry any stride (PyTorch's contiguity rule).
  Tensor one(storage.data(), {2, 5, 1, 4}, {20, 4, 999, 1}, DLDataType{kDLFloat, 16, 1});
  ASSERT_EQ(bnorm_dlpack_describe(h.h, &one, &d, &data), BNORM_STATUS_SUCCESS) << bnorm_last_error();
  EXPECT_EQ(d.layout, BNORM_LAYOUT_NCHW);
  EXPECT_EQ(d.dtype, BNORM_DTYPE_F16);
  Tensor last(storage.data(), {2, 5, 1, 4}, {20, 1, 999, 5});
  ASSERT_EQ(bnorm_dlpack_describe(h.h, &last, &d, &data), BNORM_STATUS_SUCCESS) << bnorm_last_error();
  EXPECT_EQ(d.layout, BNORM_LAYOUT_NHWC);
}

struct Rejection {
  const char* what;
  bnorm_status_t expected;
  const char* mentions;
};

TEST(DlPack, EveryRejectionHasItsStatusAndWritesNothing) {
  Handle h;
  auto run = [&](const Rejection& r, auto&& edit) {
    SCOPED_TRACE(r.what);
    Data a;
    Tensor x(a.x.data(), {N, C, H, W}, nchw_strides(N, C, H, W)), y(a.y.data(), {N, C, H, W}, {});
    Tensor g(a.gamma.data(), {C}, {}), rm(a.rm.data(), {C}, {}), rv(a.rv.data(), {C}, {});
    const DLTensor* px = &x;
    const DLTensor* py = &y;
    const DLTensor* pg = &g;
    const DLTensor* prm = &rm;
    edit(x, y, g, px, py, pg, prm);
    const bnorm_status_t s = bnorm_dlpack_forward_training(h.h, px, py, pg, nullptr, 0.1f, 1e-5f, prm, &rv, nullptr,
                                                           nullptr);
    EXPECT_EQ(s, r.expected) << bnorm_status_string(s) << ": " << bnorm_last_error();
    EXPECT_NE(std::string(bnorm_last_error()).find(r.mentions), std::string::npos)
        << "'" << bnorm_last_error() << "' should mention '" << r.mentions << "'";
    for (float v : a.y) ASSERT_EQ(v, kSentinel);
    for (float v : a.rm) ASSERT_EQ(v, 0.0f);
  };
  using T = DLTensor;
  using P = const DLTensor*;
  static int64_t odd_strides[4] = {C * H * W, H * W, 1, H};  // H and W swapped: a transpose
  static int64_t gapped[4] = {2 * C * H * W, H * W, W, 1};   // every other sample
  static int64_t three[3] = {C, H, W};
  static int64_t two_by_c[2] = {1, C};
  static int64_t wrong_c[1] = {C + 1};
  static int64_t gamma_stride[1] = {2};
  run({"NULL x", BNORM_STATUS_INVALID_VALUE, "x is NULL"}, [](T&, T&, T&, P& px, P&, P&, P&) { px = nullptr; });
  run({"NULL y", BNORM_STATUS_INVALID_VALUE, "y is NULL"}, [](T&, T&, T&, P&, P& py, P&, P&) { py = nullptr; });
  run({"CUDA tensor on a CPU handle", BNORM_STATUS_NOT_SUPPORTED, "x lives on DLPack device type 2"},
      [](T& x, T&, T&, P&, P&, P&, P&) { x.device.device_type = kDLCUDA; });
  run({"OpenCL tensor", BNORM_STATUS_NOT_SUPPORTED, "y lives on DLPack device type 4"},
      [](T&, T& y, T&, P&, P&, P&, P&) { y.device.device_type = kDLOpenCL; });
  run({"int32", BNORM_STATUS_NOT_SUPPORTED, "x has DLPack dtype (code 0"},
      [](T& x, T&, T&, P&, P&, P&, P&) { x.dtype = {kDLInt, 32, 1}; });
  run({"float64", BNORM_STATUS_NOT_SUPPORTED, "64 bits"}, [](T& x, T&, T&, P&, P&, P&, P&) { x.dtype.bits = 64; });
  run({"two lanes", BNORM_STATUS_NOT_SUPPORTED, "2 lanes"}, [](T& x, T&, T&, P&, P&, P&, P&) { x.dtype.lanes = 2; });
  run({"3-D", BNORM_STATUS_NOT_SUPPORTED, "3 dimensions"}, [](T& x, T&, T&, P&, P&, P&, P&) {
    x.ndim = 3;
    x.shape = three;
    x.strides = nullptr;
  });
  run({"negative size", BNORM_STATUS_INVALID_VALUE, "size -1"},
      [](T& x, T&, T&, P&, P&, P&, P&) { x.shape[2] = -1; });
  run({"transposed", BNORM_STATUS_NOT_SUPPORTED, "neither contiguous NCHW nor contiguous NHWC"},
      [](T& x, T&, T&, P&, P&, P&, P&) { x.strides = odd_strides; });
  run({"gaps between samples", BNORM_STATUS_NOT_SUPPORTED, "strides"},
      [](T& x, T&, T&, P&, P&, P&, P&) { x.strides = gapped; });
  run({"misaligned", BNORM_STATUS_INVALID_VALUE, "aligned"}, [](T& x, T&, T&, P&, P&, P&, P&) { x.byte_offset = 2; });
  run({"y of another shape", BNORM_STATUS_INVALID_VALUE, "y's shape"},
      [](T&, T& y, T&, P&, P&, P&, P&) { y.shape[3] = W - 1; });
  run({"y of another dtype", BNORM_STATUS_INVALID_VALUE, "y's dtype"},
      [](T&, T& y, T&, P&, P&, P&, P&) { y.dtype = {kDLFloat, 16, 1}; });
  run({"y channels last, x not", BNORM_STATUS_NOT_SUPPORTED, "y's memory layout"}, [](T&, T& y, T&, P&, P&, P&, P&) {
    static int64_t s[4] = {H * W * C, 1, W * C, C};
    y.strides = s;
  });
  run({"2-D gamma", BNORM_STATUS_NOT_SUPPORTED, "gamma has 2 dimensions"}, [](T&, T&, T& g, P&, P&, P&, P&) {
    g.ndim = 2;
    g.shape = two_by_c;
  });
  run({"gamma of C + 1", BNORM_STATUS_INVALID_VALUE, "gamma has 5 elements"},
      [](T&, T&, T& g, P&, P&, P&, P&) { g.shape = wrong_c; });
  run({"float16 gamma", BNORM_STATUS_NOT_SUPPORTED, "gamma must be float32"},
      [](T&, T&, T& g, P&, P&, P&, P&) { g.dtype = {kDLFloat, 16, 1}; });
  run({"strided gamma", BNORM_STATUS_NOT_SUPPORTED, "gamma has stride 2"},
      [](T&, T&, T& g, P&, P&, P&, P&) { g.strides = gamma_stride; });
  run({"CUDA running_mean", BNORM_STATUS_NOT_SUPPORTED, "running_mean lives on"},
      [](T&, T&, T&, P&, P&, P&, P& prm) { const_cast<T*>(prm)->device.device_type = kDLCUDA; });
  run({"running_mean without running_var", BNORM_STATUS_INVALID_VALUE, "running_var"},
      [](T&, T&, T&, P&, P&, P&, P& prm) { prm = nullptr; });
}

TEST(DlPack, InferenceAndBackwardRequireTheirStatistics) {
  Handle h;
  Data a;
  Tensor x(a.x.data(), {N, C, H, W}, {}), y(a.y.data(), {N, C, H, W}, {}), rv(a.rv.data(), {C}, {});
  EXPECT_EQ(bnorm_dlpack_forward_inference(h.h, &x, &y, nullptr, nullptr, nullptr, &rv, 1e-5f),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("running_mean is NULL"), std::string::npos);
  EXPECT_EQ(bnorm_dlpack_backward(h.h, &x, &x, nullptr, nullptr, &rv, &y, nullptr, nullptr),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("save_mean is NULL"), std::string::npos);
  for (float v : a.y) ASSERT_EQ(v, kSentinel);
}

}  // namespace
