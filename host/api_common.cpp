// See api_common.hpp.
#include "api_common.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <cmath>
#include <iterator>

#include "cuda_backend.hpp"

namespace bnorm::api {

Status check_handle(const bnorm_handle* h) {
  if (!h) return make_status(BNORM_STATUS_INVALID_VALUE, "handle is NULL");
  return ok_status();
}

bool cpu_reference(const bnorm_handle& h, bnorm_op_t op) {
  const std::string& forced = h.forced[op];
  if (!forced.empty()) return forced == "cpu_reference";
  const char* env = std::getenv("BNORM_VARIANT");
  return env && std::strcmp(env, "cpu_reference") == 0;
}

Status require(const void* p, const char* name) {
  if (!p) return make_status(BNORM_STATUS_INVALID_VALUE, "%s is NULL", name);
  if (reinterpret_cast<uintptr_t>(p) % alignof(float) != 0)
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s is not aligned to 4 bytes", name);
  return ok_status();
}

Status optional(const void* p, const char* name) { return p ? require(p, name) : ok_status(); }

size_t elem_bytes(const bnorm_tensor_t& d) { return d.dtype == BNORM_DTYPE_F32 ? 4 : 2; }

int64_t numel(const bnorm_tensor_t& d) { return d.n * d.c * d.h * d.w; }

Status require_tensor(const void* p, const char* name, const bnorm_tensor_t& d) {
  if (!p) {
    // An empty tensor has no storage: frameworks hand out NULL for it.
    if (numel(d) == 0) return ok_status();
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s is NULL", name);
  }
  if (reinterpret_cast<uintptr_t>(p) % elem_bytes(d) != 0)
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s is not aligned to its %zu-byte elements", name,
                       elem_bytes(d));
  return ok_status();
}

namespace {

// Overflow-safe product of non-negative sizes, capped well inside int64.
bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  constexpr int64_t kMax = int64_t{1} << 62;
  if (a != 0 && b > kMax / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

Status check_desc(const bnorm_tensor_t* d, bool allow_empty) {
  if (!d) return make_status(BNORM_STATUS_INVALID_VALUE, "desc is NULL");
  if (d->n < 0 || (d->n == 0 && !allow_empty))
    return make_status(BNORM_STATUS_INVALID_VALUE, "desc->n = %lld; n must be >= %d%s",
                       static_cast<long long>(d->n), allow_empty ? 0 : 1,
                       allow_empty ? " (0 is an empty batch)" : " here (an empty batch runs no kernel)");
  const char* names[3] = {"c", "h", "w"};
  const int64_t dims[3] = {d->c, d->h, d->w};
  for (int i = 0; i < 3; ++i)
    if (dims[i] <= 0)
      return make_status(BNORM_STATUS_INVALID_VALUE, "desc->%s = %lld; sizes must be >= 1", names[i],
                         static_cast<long long>(dims[i]));
  // The product without n must fit too: it sizes per-sample arrays.
  int64_t per_sample = 1, total = 0;
  for (int64_t v : dims)
    if (!checked_mul(per_sample, v, &per_sample))
      return make_status(BNORM_STATUS_INVALID_VALUE, "desc n*c*h*w overflows 2^62 elements");
  if (!checked_mul(per_sample, d->n, &total))
    return make_status(BNORM_STATUS_INVALID_VALUE, "desc n*c*h*w overflows 2^62 elements");
  const int layout = enum_value(d->layout), dtype = enum_value(d->dtype);
  if (layout != BNORM_LAYOUT_NCHW && layout != BNORM_LAYOUT_NHWC)
    return make_status(BNORM_STATUS_INVALID_VALUE, "desc->layout = %d is not a bnorm_layout_t", layout);
  if (dtype != BNORM_DTYPE_F32 && dtype != BNORM_DTYPE_F16 && dtype != BNORM_DTYPE_BF16)
    return make_status(BNORM_STATUS_INVALID_VALUE, "desc->dtype = %d is not a bnorm_dtype_t", dtype);
  return ok_status();
}

Status check_eps(float eps) {
  if (!(eps > 0.0f) || !std::isfinite(eps))
    return make_status(BNORM_STATUS_INVALID_VALUE, "eps = %g; it must be finite and > 0",
                       static_cast<double>(eps));
  return ok_status();
}

Status check_momentum(float momentum) {
  if (!(momentum >= 0.0f && momentum <= 1.0f))
    return make_status(BNORM_STATUS_INVALID_VALUE, "momentum = %g; it must lie in [0, 1]",
                       static_cast<double>(momentum));
  return ok_status();
}

Status check_op(const bnorm_op_t& op) {
  const int o = enum_value(op);
  if (o < 0 || o >= kOpCount)
    return make_status(BNORM_STATUS_INVALID_VALUE, "op = %d is not a bnorm_op_t", o);
  return ok_status();
}

namespace {

// Compared by distance in elements, not by end addresses: count (up to 2^62) times the
// element size can pass 2^64, and an end address can wrap, which would hide an overlap.
Status overlap_elems(const void* a, const char* an, const void* b, const char* bn, size_t elem, int64_t count) {
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  const uintptr_t distance = pa > pb ? pa - pb : pb - pa;
  if (a && b && distance != 0 && distance / elem < static_cast<uintptr_t>(count))
    return make_status(BNORM_STATUS_INVALID_VALUE, "%s and %s partly overlap", an, bn);
  return ok_status();
}

}  // namespace

Status check_overlap(const void* a, const char* an, const void* b, const char* bn, const bnorm_tensor_t& d) {
  return overlap_elems(a, an, b, bn, elem_bytes(d), numel(d));
}

Status check_dx_aliasing(const void* dx, const void* x, const void* dy, const bnorm_tensor_t& d) {
  BNORM_TRY(check_overlap(dx, "dx", dy, "dy", d));
  if (dx && dx == x) return make_status(BNORM_STATUS_INVALID_VALUE, "dx must not alias x (it may alias dy)");
  return check_overlap(dx, "dx", x, "x", d);
}

Status check_overlap_floats(const void* a, const char* an, const void* b, const char* bn, int64_t count) {
  return overlap_elems(a, an, b, bn, sizeof(float), count);
}

Status check_disjoint(const void* a, const char* an, int64_t a_bytes, const void* b, const char* bn,
                      int64_t b_bytes) {
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  const bool overlap = pa <= pb ? pb - pa < static_cast<uintptr_t>(a_bytes) : pa - pb < static_cast<uintptr_t>(b_bytes);
  if (a && b && overlap) return make_status(BNORM_STATUS_INVALID_VALUE, "%s and %s overlap", an, bn);
  return ok_status();
}

namespace {
int64_t bytes_of(int64_t count, size_t elem) {
  const int64_t e = static_cast<int64_t>(elem);
  return count > INT64_MAX / e ? INT64_MAX : count * e;
}
}  // namespace

Span tensor_span(const void* p, const char* name, const bnorm_tensor_t& d) {
  return Span{p, name, bytes_of(numel(d), elem_bytes(d))};
}
Span float_span(const void* p, const char* name, int64_t count) { return Span{p, name, bytes_of(count, sizeof(float))}; }

Status check_writes_disjoint(std::initializer_list<Span> small_outs, std::initializer_list<Span> tensors,
                             std::initializer_list<Span> tensor_outs, std::initializer_list<Span> small_ins) {
  auto apart = [](const Span& a, const Span& b) { return check_disjoint(a.p, a.name, a.bytes, b.p, b.name, b.bytes); };
  for (auto o = small_outs.begin(); o != small_outs.end(); ++o) {
    for (auto o2 = std::next(o); o2 != small_outs.end(); ++o2) BNORM_TRY(apart(*o, *o2));
    for (const Span& t : tensors) BNORM_TRY(apart(*o, t));
    for (const Span& in : small_ins) BNORM_TRY(apart(*o, in));
  }
  for (const Span& t : tensor_outs)
    for (const Span& in : small_ins) BNORM_TRY(apart(t, in));
  return ok_status();
}

Status check_device_pointers(const bnorm_handle& h, std::initializer_list<Ptr> ptrs) {
  if (h.backend != BNORM_BACKEND_CUDA) return ok_status();
  for (const Ptr& p : ptrs)
    if (p.p) BNORM_TRY(cuda_check_pointer(h, p.p, p.name));
  return ok_status();
}

Problem make_problem(bnorm_op_t op, const bnorm_tensor_t& d, std::initializer_list<const void*> tensors,
                     int64_t groups) {
  Problem pr;
  pr.op = op;
  pr.desc = d;
  pr.groups = groups;
  pr.shape = kern::Shape{d.n, d.c, d.h * d.w,
                         d.dtype == BNORM_DTYPE_F32   ? kern::DType::F32
                         : d.dtype == BNORM_DTYPE_F16 ? kern::DType::F16
                                                      : kern::DType::BF16};
  pr.aligned16 = true;
  for (const void* t : tensors)
    if (reinterpret_cast<uintptr_t>(t) % 16 != 0) pr.aligned16 = false;
  set_op_view(&pr);
  return pr;
}

Status zero_floats(bnorm_handle* h, std::initializer_list<std::pair<float*, int64_t>> arrays) {
  if (h->backend == BNORM_BACKEND_CPU) {
    for (const auto& [p, count] : arrays)
      if (p) std::fill(p, p + count, 0.0f);
    return ok_status();
  }
  DeviceGuard guard(h->device);
  for (const auto& [p, count] : arrays)
    if (p)  // all-zero bytes are 0.0f
      BNORM_TRY(cuda_status(cudaMemsetAsync(p, 0, static_cast<size_t>(count) * sizeof(float), h->stream),
                            "cudaMemsetAsync"));
  return ok_status();
}

}  // namespace bnorm::api
