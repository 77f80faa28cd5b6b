// The DLPack entry points (bnorm_dlpack.h): each DLTensor checked and turned into a
// bnorm_tensor_t and a pointer, then the plain C entry point does the rest (its own
// checks included). Built when DLPack's header is found.
#include <cstdint>
#include <string>

#include "api_common.hpp"
#include "bnorm/bnorm.h"
#include "bnorm/bnorm_dlpack.h"
#include "nvtx.hpp"

namespace {

using bnorm::make_status;
using bnorm::ok_status;
using bnorm::Status;
using namespace bnorm::api;

Status check_device(const bnorm_handle& h, const DLTensor& t, const char* name) {
  const int type = enum_value(t.device.device_type);  // any int from a C caller
  if (h.backend == BNORM_BACKEND_CPU) {
    if (type == kDLCPU || type == kDLCUDAHost) return ok_status();
    return make_status(BNORM_STATUS_NOT_SUPPORTED,
                       "%s lives on DLPack device type %d; a CPU handle takes kDLCPU and kDLCUDAHost memory", name,
                       type);
  }
  if (type == kDLCUDAHost || type == kDLCUDAManaged) return ok_status();
  if (type != kDLCUDA)
    return make_status(BNORM_STATUS_NOT_SUPPORTED,
                       "%s lives on DLPack device type %d; a CUDA handle takes kDLCUDA, kDLCUDAHost and "
                       "kDLCUDAManaged memory",
                       name, type);
  if (t.device.device_id != h.device)
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s is on CUDA device %d, the handle on device %d", name,
                       t.device.device_id, h.device);
  return ok_status();
}

Status dtype_of(const DLTensor& t, const char* name, bnorm_dtype_t* out) {
  const DLDataType d = t.dtype;
  if (d.lanes == 1 && d.code == kDLFloat && d.bits == 32) *out = BNORM_DTYPE_F32;
  else if (d.lanes == 1 && d.code == kDLFloat && d.bits == 16) *out = BNORM_DTYPE_F16;
  else if (d.lanes == 1 && d.code == kDLBfloat && d.bits == 16) *out = BNORM_DTYPE_BF16;
  else
    return make_status(BNORM_STATUS_NOT_SUPPORTED,
                       "%s has DLPack dtype (code %d, %d bits, %d lanes); bnorm takes float32, float16 and bfloat16",
                       name, d.code, d.bits, d.lanes);
  return ok_status();
}

// Whether strides match the compact strides `want` of shape, dimensions of size 1 aside.
bool strides_match(const DLTensor& t, const int64_t* want) {
  if (!t.strides) return false;
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] != 1 && t.strides[i] != want[i]) return false;
  return true;
}

std::string strides_text(const DLTensor& t) {
  std::string s = "(";
  for (int i = 0; i < t.ndim; ++i) s += (i ? ", " : "") + std::to_string(t.strides[i]);
  return s + ")";
}

Status describe(const bnorm_handle& h, const DLTensor* t, const char* name, bnorm_tensor_t* desc, void** data) {
  if (!t) return make_status(BNORM_STATUS_INVALID_VALUE, "%s is NULL", name);
  BNORM_TRY(check_device(h, *t, name));
  bnorm_dtype_t dtype = BNORM_DTYPE_F32;
  BNORM_TRY(dtype_of(*t, name, &dtype));
  if (t->ndim != 4 && t->ndim != 2)
    return make_status(BNORM_STATUS_NOT_SUPPORTED, "%s has %d dimensions; bnorm takes (N, C, H, W) and (N, C)", name,
                       t->ndim);
  if (!t->shape) return make_status(BNORM_STATUS_INVALID_VALUE, "%s has no shape", name);
  for (int i = 0; i < t->ndim; ++i)
    if (t->shape[i] < 0)
      return make_status(BNORM_STATUS_INVALID_VALUE, "%s has size %lld in dimension %d", name,
                         static_cast<long long>(t->shape[i]), i);
  const int64_t n = t->shape[0], c = t->shape[1], hh = t->ndim == 4 ? t->shape[2] : 1,
                w = t->ndim == 4 ? t->shape[3] : 1;
  // Compact strides of both layouts, in the logical (N, C, H, W) order.
  const int64_t nchw[4] = {c * hh * w, hh * w, w, 1}, nhwc[4] = {hh * w * c, 1, w * c, c};
  const int64_t nchw2[2] = {c, 1};
  bnorm_layout_t layout = BNORM_LAYOUT_NCHW;
  if (t->strides && !strides_match(*t, t->ndim == 4 ? nchw : nchw2)) {
    if (t->ndim == 4 && strides_match(*t, nhwc))
      layout = BNORM_LAYOUT_NHWC;
    else
      return make_status(BNORM_STATUS_NOT_SUPPORTED,
                         "%s has strides %s: neither contiguous NCHW nor contiguous NHWC (channels last)", name,
                         strides_text(*t).c_str());
  }
  *desc = bnorm_tensor_t{n, c, hh, w, layout, dtype};
  char* p = static_cast<char*>(t->data);
  *data = p ? p + t->byte_offset : nullptr;
  if (*data && reinterpret_cast<uintptr_t>(*data) % elem_bytes(*desc) != 0)
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s (data + byte_offset) is not aligned to its %zu-byte elements",
                       name, elem_bytes(*desc));
  return ok_status();
}

// A tensor the same as x in shape, dtype and layout.
Status like_x(const bnorm_handle& h, const DLTensor* t, const char* name, const bnorm_tensor_t& x, void** data) {
  bnorm_tensor_t d;
  BNORM_TRY(describe(h, t, name, &d, data));
  if (d.n != x.n || d.c != x.c || d.h != x.h || d.w != x.w)
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s's shape differs from x's", name);
  if (d.dtype != x.dtype) return make_status(BNORM_STATUS_INVALID_VALUE, "%s's dtype differs from x's", name);
  // Sizes of 1 can make a tensor both layouts; only a real difference counts.
  if (d.layout != x.layout && d.c > 1 && d.h * d.w > 1)
    return make_status(BNORM_STATUS_NOT_SUPPORTED, "%s's memory layout differs from x's (one is channels last)",
                       name);
  return ok_status();
}

// A per-channel vector: 1-D float32 of c elements, contiguous; NULL stays NULL.
Status channel_vector(const bnorm_handle& h, const DLTensor* t, const char* name, int64_t c, float** out) {
  *out = nullptr;
  if (!t) return ok_status();
  BNORM_TRY(check_device(h, *t, name));
  if (t->ndim != 1 || !t->shape)
    return make_status(BNORM_STATUS_NOT_SUPPORTED, "%s has %d dimensions; per-channel vectors are 1-D", name, t->ndim);
  if (t->shape[0] != c)
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s has %lld elements, x has %lld channels", name,
                       static_cast<long long>(t->shape[0]), static_cast<long long>(c));
  if (t->dtype.code != kDLFloat || t->dtype.bits != 32 || t->dtype.lanes != 1)
    return make_status(BNORM_STATUS_NOT_SUPPORTED, "%s must be float32 (per-channel parameters and statistics are)",
                       name);
  if (t->strides && c > 1 && t->strides[0] != 1)
    return make_status(BNORM_STATUS_NOT_SUPPORTED, "%s has stride %lld: per-channel vectors must be contiguous", name,
                       static_cast<long long>(t->strides[0]));
  if (!t->data) return make_status(BNORM_STATUS_INVALID_VALUE, "%s has no data", name);
  *out = reinterpret_cast<float*>(static_cast<char*>(t->data) + t->byte_offset);
  return ok_status();
}

}  // namespace

extern "C" {

bnorm_status_t bnorm_dlpack_describe(bnorm_handle_t h, const DLTensor* t, bnorm_tensor_t* desc, void** data) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    if (!desc || !data) return make_status(BNORM_STATUS_INVALID_VALUE, "desc or data output pointer is NULL");
    bnorm_tensor_t d;
    void* p = nullptr;
    BNORM_TRY(describe(*h, t, "tensor", &d, &p));
    *desc = d;
    *data = p;
    return ok_status();
  });
}

bnorm_status_t bnorm_dlpack_forward_training(bnorm_handle_t h, const DLTensor* x, const DLTensor* y,
                                             const DLTensor* gamma, const DLTensor* beta, float momentum, float eps,
                                             const DLTensor* running_mean, const DLTensor* running_var,
                                             const DLTensor* save_mean, const DLTensor* save_invstd) {
  BNORM_FUNC_RANGE();
  bnorm_tensor_t d{};
  void *px = nullptr, *py = nullptr;
  float *g, *b, *rm, *rv, *sm, *si;
  const bnorm_status_t code = guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    BNORM_TRY(describe(*h, x, "x", &d, &px));
    BNORM_TRY(like_x(*h, y, "y", d, &py));
    BNORM_TRY(channel_vector(*h, gamma, "gamma", d.c, &g));
    BNORM_TRY(channel_vector(*h, beta, "beta", d.c, &b));
    BNORM_TRY(channel_vector(*h, running_mean, "running_mean", d.c, &rm));
    BNORM_TRY(channel_vector(*h, running_var, "running_var", d.c, &rv));
    BNORM_TRY(channel_vector(*h, save_mean, "save_mean", d.c, &sm));
    BNORM_TRY(channel_vector(*h, save_invstd, "save_invstd", d.c, &si));
    return ok_status();
  });
  if (code != BNORM_STATUS_SUCCESS) return code;
  return bnorm_forward_training(h, &d, px, py, g, b, momentum, eps, rm, rv, sm, si);
}

bnorm_status_t bnorm_dlpack_forward_inference(bnorm_handle_t h, const DLTensor* x, const DLTensor* y,
                                              const DLTensor* gamma, const DLTensor* beta,
                                              const DLTensor* running_mean, const DLTensor* running_var, float eps) {
  BNORM_FUNC_RANGE();
  bnorm_tensor_t d{};
  void *px = nullptr, *py = nullptr;
  float *g, *b, *rm, *rv;
  const bnorm_status_t code = guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    BNORM_TRY(describe(*h, x, "x", &d, &px));
    BNORM_TRY(like_x(*h, y, "y", d, &py));
    BNORM_TRY(channel_vector(*h, gamma, "gamma", d.c, &g));
    BNORM_TRY(channel_vector(*h, beta, "beta", d.c, &b));
    if (!running_mean || !running_var)
      return make_status(BNORM_STATUS_INVALID_VALUE, "%s is NULL", running_mean ? "running_var" : "running_mean");
    BNORM_TRY(channel_vector(*h, running_mean, "running_mean", d.c, &rm));
    BNORM_TRY(channel_vector(*h, running_var, "running_var", d.c, &rv));
    return ok_status();
  });
  if (code != BNORM_STATUS_SUCCESS) return code;
  return bnorm_forward_inference(h, &d, px, py, g, b, rm, rv, eps);
}

bnorm_status_t bnorm_dlpack_backward(bnorm_handle_t h, const DLTensor* x, const DLTensor* dy, const DLTensor* gamma,
                                     const DLTensor* save_mean, const DLTensor* save_invstd, const DLTensor* dx,
                                     const DLTensor* dgamma, const DLTensor* dbeta) {
  BNORM_FUNC_RANGE();
  bnorm_tensor_t d{};
  void *px = nullptr, *pdy = nullptr, *pdx = nullptr;
  float *g, *sm, *si, *dg, *db;
  const bnorm_status_t code = guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    BNORM_TRY(describe(*h, x, "x", &d, &px));
    BNORM_TRY(like_x(*h, dy, "dy", d, &pdy));
    BNORM_TRY(like_x(*h, dx, "dx", d, &pdx));
    BNORM_TRY(channel_vector(*h, gamma, "gamma", d.c, &g));
    if (!save_mean || !save_invstd)
      return make_status(BNORM_STATUS_INVALID_VALUE, "%s is NULL", save_mean ? "save_invstd" : "save_mean");
    BNORM_TRY(channel_vector(*h, save_mean, "save_mean", d.c, &sm));
    BNORM_TRY(channel_vector(*h, save_invstd, "save_invstd", d.c, &si));
    BNORM_TRY(channel_vector(*h, dgamma, "dgamma", d.c, &dg));
    BNORM_TRY(channel_vector(*h, dbeta, "dbeta", d.c, &db));
    return ok_status();
  });
  if (code != BNORM_STATUS_SUCCESS) return code;
  return bnorm_backward(h, &d, px, pdy, g, sm, si, pdx, dg, db);
}

}  // extern "C"
