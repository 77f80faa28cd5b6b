// What every C entry point shares: the catch-all that keeps C++ exceptions out of C,
// argument validation (each check names the argument at fault), the problem handed to
// dispatch, and the empty-batch fill of per-channel sums. The entry points live in
// api.cpp (batch norm), api_given_stats.cpp (frozen, folded and synchronized batch norm),
// api_per_sample.cpp (group, instance and layer norm) and dlpack.cpp.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <new>
#include <type_traits>

#include "bnorm/bnorm.h"
#include "dispatch.hpp"
#include "handle.hpp"
#include "status.hpp"

namespace bnorm::api {

// Runs body, turning escaping exceptions into statuses, and records a failure as the
// thread's last error.
template <class F>
bnorm_status_t guarded(const char* fn, F&& body) {
  try {
    return report_status(body());
  } catch (const std::bad_alloc&) {
    return report_status(make_status(BNORM_STATUS_ALLOC_FAILED, "%s: out of host memory", fn));
  } catch (const std::exception& e) {
    return report_status(make_status(BNORM_STATUS_INTERNAL_ERROR, "%s: %s", fn, e.what()));
  } catch (...) {
    return report_status(make_status(BNORM_STATUS_INTERNAL_ERROR, "%s: unknown exception", fn));
  }
}

// A C caller may pass any int where the header says enum; it is checked as an int.
template <class E>
int enum_value(const E& e) {
  static_assert(std::is_enum_v<E> && sizeof(E) == sizeof(int), "a C enum is an int");
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

Status check_handle(const bnorm_handle* h);

// The CPU backend's implementation of op on h: the float64 oracle (ref, reference.hpp)
// when bnorm_set_variant or BNORM_VARIANT names cpu_reference for it, else the fast path
// (fast, fast.hpp) with the handle's threads and workspace.
bool cpu_reference(const bnorm_handle& h, bnorm_op_t op);
template <class Ref, class Fast>
Status run_cpu(bnorm_handle* h, bnorm_op_t op, Ref&& ref, Fast&& fast) {
  if (cpu_reference(*h, op)) {
    ref();
  } else {
    bnorm::cpu::fast::Context ctx{h->cpu_threads, &h->cpu_workspace};
    fast(ctx);
  }
  return ok_status();
}
// A per-channel float array: present and 4-byte aligned.
Status require(const void* p, const char* name);
// The same, or NULL.
Status optional(const void* p, const char* name);

size_t elem_bytes(const bnorm_tensor_t& d);
int64_t numel(const bnorm_tensor_t& d);
// A tensor pointer: present (unless the tensor is empty: n = 0) and aligned to its
// element.
Status require_tensor(const void* p, const char* name, const bnorm_tensor_t& d);

// Sizes (n >= 0, or >= 1 without allow_empty; c, h, w >= 1), no overflow, and a valid
// layout and dtype.
Status check_desc(const bnorm_tensor_t* d, bool allow_empty = true);
Status check_eps(float eps);
Status check_momentum(float momentum);
// Through a reference: op is read as the enum only once it is known to be one.
Status check_op(const bnorm_op_t& op);
// Two tensors of d's size may be the same buffer or disjoint, never partly overlap.
Status check_overlap(const void* a, const char* an, const void* b, const char* bn, const bnorm_tensor_t& d);
// A backward's dx: may be dy's buffer (in place), never x's, and overlaps neither partly.
Status check_dx_aliasing(const void* dx, const void* x, const void* dy, const bnorm_tensor_t& d);
// Two float arrays of `count` elements each: the same or disjoint.
Status check_overlap_floats(const void* a, const char* an, const void* b, const char* bn, int64_t count);

// Two buffers of the given sizes share no byte.
Status check_disjoint(const void* a, const char* an, int64_t a_bytes, const void* b, const char* bn, int64_t b_bytes);

// A buffer of a call: its pointer (NULL: absent), name and size in bytes.
struct Span {
  const void* p;
  const char* name;
  int64_t bytes;
};
// What a call writes shares no byte with anything else it reads or writes, but for the
// tensors' in-place aliases (check_overlap, check_dx_aliasing): each of small_outs (the
// per-channel, per-sample or per-value arrays written) is disjoint from the others, from
// every tensor and from small_ins; each of tensor_outs from small_ins. A write into
// another argument would otherwise corrupt it silently, or on the GPU race with its reads.
// Spans of a tensor of d (0 bytes when empty) and of count floats; sizes saturate at
// INT64_MAX rather than wrap.
Span tensor_span(const void* p, const char* name, const bnorm_tensor_t& d);
Span float_span(const void* p, const char* name, int64_t count);
Status check_writes_disjoint(std::initializer_list<Span> small_outs, std::initializer_list<Span> tensors,
                             std::initializer_list<Span> tensor_outs, std::initializer_list<Span> small_ins);

struct Ptr {
  const void* p;
  const char* name;
};
// On a CUDA handle, every non-null pointer must be memory its device can address.
Status check_device_pointers(const bnorm_handle& h, std::initializer_list<Ptr> ptrs);

// The problem as dispatch sees it, with the op's view of the tensor (set_op_view);
// aligned16 from the given pointers (nulls ignored). groups: the group norms' count.
Problem make_problem(bnorm_op_t op, const bnorm_tensor_t& d, std::initializer_list<const void*> tensors,
                     int64_t groups = 1);

// Writes `count` zeros to each array (a sum over no values), on the handle's backend:
// the empty batch's per-channel sums. Null arrays are skipped.
Status zero_floats(bnorm_handle* h, std::initializer_list<std::pair<float*, int64_t>> arrays);

}  // namespace bnorm::api
