// The C API: argument validation (once, here), the thread-local last error, and the
// hand-off to a backend. No C++ exception crosses into C: every entry point catches.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "api_common.hpp"
#include "bnorm/bnorm.h"
#include "cpu/reference.hpp"
#include "cuda_backend.hpp"
#include "dispatch.hpp"
#include "handle.hpp"
#include "nvtx.hpp"
#include "status.hpp"

namespace {

using bnorm::make_status;
using bnorm::ok_status;
using bnorm::Status;
using namespace bnorm::api;

thread_local std::string t_last_error;

bnorm_status_t report(const Status& s) {
  if (!s.ok()) t_last_error = s.message;
  return s.code;
}

}  // namespace

extern "C" {

int bnorm_get_version(void) { return BNORM_VERSION; }

const char* bnorm_status_string(bnorm_status_t s) {
  switch (enum_value(s)) {
    case BNORM_STATUS_SUCCESS: return "BNORM_STATUS_SUCCESS";
    case BNORM_STATUS_INVALID_VALUE: return "BNORM_STATUS_INVALID_VALUE";
    case BNORM_STATUS_NOT_SUPPORTED: return "BNORM_STATUS_NOT_SUPPORTED";
    case BNORM_STATUS_ALLOC_FAILED: return "BNORM_STATUS_ALLOC_FAILED";
    case BNORM_STATUS_NO_DEVICE: return "BNORM_STATUS_NO_DEVICE";
    case BNORM_STATUS_CUDA_ERROR: return "BNORM_STATUS_CUDA_ERROR";
    case BNORM_STATUS_INTERNAL_ERROR: return "BNORM_STATUS_INTERNAL_ERROR";
    case BNORM_STATUS_COMMUNICATION_ERROR: return "BNORM_STATUS_COMMUNICATION_ERROR";
  }
  return "BNORM_STATUS_UNKNOWN";
}

const char* bnorm_last_error(void) { return t_last_error.c_str(); }

bnorm_status_t bnorm_report_error(bnorm_status_t status, const char* message) {
  return guarded(__func__, [&]() -> Status {
    if (enum_value(status) == BNORM_STATUS_SUCCESS) return ok_status();
    return Status{status, message ? message : ""};
  });
}

bnorm_status_t bnorm_create(bnorm_handle_t* out, bnorm_backend_t backend, int device) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    if (!out) return make_status(BNORM_STATUS_INVALID_VALUE, "handle output pointer is NULL");
    const int b = enum_value(backend);
    if (b != BNORM_BACKEND_CPU && b != BNORM_BACKEND_CUDA)
      return make_status(BNORM_STATUS_INVALID_VALUE, "backend = %d is not a bnorm_backend_t", b);
    auto h = new bnorm_handle();
    h->backend = backend;
    if (backend == BNORM_BACKEND_CUDA) {
      const Status s = bnorm::cuda_create(h, device);
      if (!s.ok()) {
        bnorm::cuda_destroy(h);
        delete h;
        return s;
      }
    }
    *out = h;
    return ok_status();
  });
}

bnorm_status_t bnorm_destroy(bnorm_handle_t h) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    if (h->backend == BNORM_BACKEND_CUDA) bnorm::cuda_destroy(h);
    delete h;
    return ok_status();
  });
}

bnorm_status_t bnorm_set_stream(bnorm_handle_t h, void* stream) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    if (h->backend != BNORM_BACKEND_CUDA) return ok_status();
    return bnorm::cuda_set_stream(h, static_cast<cudaStream_t>(stream));
  });
}

bnorm_status_t bnorm_get_stream(bnorm_handle_t h, void** stream) {
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    if (!stream) return make_status(BNORM_STATUS_INVALID_VALUE, "stream output pointer is NULL");
    *stream = h->stream;
    return ok_status();
  });
}

bnorm_status_t bnorm_get_backend(bnorm_handle_t h, bnorm_backend_t* backend) {
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    if (!backend) return make_status(BNORM_STATUS_INVALID_VALUE, "backend output pointer is NULL");
    *backend = h->backend;
    return ok_status();
  });
}

bnorm_status_t bnorm_set_cpu_threads(bnorm_handle_t h, int threads) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    if (h->backend != BNORM_BACKEND_CPU)
      return make_status(BNORM_STATUS_NOT_SUPPORTED, "bnorm_set_cpu_threads: a CUDA handle has no CPU threads");
    if (threads < 0) return make_status(BNORM_STATUS_INVALID_VALUE, "threads = %d; it must be >= 0", threads);
    h->cpu_threads = threads;
    return ok_status();
  });
}

bnorm_status_t bnorm_get_cpu_threads(bnorm_handle_t h, int* threads) {
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    if (!threads) return make_status(BNORM_STATUS_INVALID_VALUE, "threads output pointer is NULL");
    if (h->backend != BNORM_BACKEND_CPU)
      return make_status(BNORM_STATUS_NOT_SUPPORTED, "bnorm_get_cpu_threads: a CUDA handle has no CPU threads");
    *threads = bnorm::cpu::fast::max_threads(bnorm::cpu::fast::Context{h->cpu_threads, nullptr});
    return ok_status();
  });
}

}  // extern "C"

namespace {

// The fused entry points call it first, through a reference: act is passed on by value
// (a read as the enum) only once it is known to be one.
Status check_act(const bnorm_activation_t& act) {
  const int a = enum_value(act);
  if (a != BNORM_ACTIVATION_IDENTITY && a != BNORM_ACTIVATION_RELU)
    return make_status(BNORM_STATUS_INVALID_VALUE, "act = %d is not a bnorm_activation_t", a);
  return ok_status();
}

// The one implementation of each op; the plain and fused entry points differ only in
// their NVTX range and in passing no z and no activation.
Status forward_training(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, const void* z, void* y,
                        const float* gamma, const float* beta, float momentum, float eps, float* running_mean,
                        float* running_var, float* save_mean, float* save_invstd, bnorm_activation_t act) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  if (d->n > 0 && d->n * d->h * d->w < 2)
    return make_status(BNORM_STATUS_INVALID_VALUE,
                       "training needs at least 2 values per channel (n*h*w = 1): a single "
                       "value has no variance");
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(y, "y", *d));
  if (z) BNORM_TRY(require_tensor(z, "z", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(optional(beta, "beta"));
  BNORM_TRY(optional(running_mean, "running_mean"));
  BNORM_TRY(optional(running_var, "running_var"));
  BNORM_TRY(optional(save_mean, "save_mean"));
  BNORM_TRY(optional(save_invstd, "save_invstd"));
  BNORM_TRY(check_eps(eps));
  BNORM_TRY(check_act(act));
  BNORM_TRY(check_momentum(momentum));
  if ((running_mean == nullptr) != (running_var == nullptr))
    return make_status(BNORM_STATUS_INVALID_VALUE,
                       "running_mean and running_var must both be NULL or both be given");
  BNORM_TRY(check_overlap(x, "x", y, "y", *d));
  if (z) BNORM_TRY(check_overlap(z, "z", y, "y", *d));
  BNORM_TRY(check_writes_disjoint(
      {float_span(running_mean, "running_mean", d->c), float_span(running_var, "running_var", d->c),
       float_span(save_mean, "save_mean", d->c), float_span(save_invstd, "save_invstd", d->c)},
      {tensor_span(x, "x", *d), tensor_span(z, "z", *d), tensor_span(y, "y", *d)}, {tensor_span(y, "y", *d)},
      {float_span(gamma, "gamma", d->c), float_span(beta, "beta", d->c)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {z, "z"}, {y, "y"}, {gamma, "gamma"}, {beta, "beta"},
                                       {running_mean, "running_mean"}, {running_var, "running_var"},
                                       {save_mean, "save_mean"}, {save_invstd, "save_invstd"}}));
  // An empty batch has no statistics: nothing is written, running statistics included.
  if (d->n == 0) return ok_status();
  const bool relu = act == BNORM_ACTIVATION_RELU;
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_FORWARD_TRAINING,
        [&] {
          bnorm::cpu::ref::forward_training(*d, x, z, y, gamma, beta, momentum, eps, running_mean, running_var,
                                            save_mean, save_invstd, relu);
        },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::forward_training(c, *d, x, z, y, gamma, beta, momentum, eps, running_mean,
                                             running_var, save_mean, save_invstd, relu);
        });
  }
  bnorm::OpArgs a;
  a.fwd = {x, y, gamma, beta, momentum, eps, running_mean, running_var, save_mean, save_invstd, z, relu};
  bnorm::Problem pr = make_problem(BNORM_OP_FORWARD_TRAINING, *d, {x, y, z ? z : x});
  pr.relu = relu;
  pr.add = z != nullptr;
  return bnorm::cuda_run(h, pr, a);
}

Status forward_inference(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, const void* z, void* y,
                         const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                         float eps, bnorm_activation_t act) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(y, "y", *d));
  if (z) BNORM_TRY(require_tensor(z, "z", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(optional(beta, "beta"));
  BNORM_TRY(require(running_mean, "running_mean"));
  BNORM_TRY(require(running_var, "running_var"));
  BNORM_TRY(check_eps(eps));
  BNORM_TRY(check_act(act));
  BNORM_TRY(check_overlap(x, "x", y, "y", *d));
  if (z) BNORM_TRY(check_overlap(z, "z", y, "y", *d));
  BNORM_TRY(check_writes_disjoint({}, {}, {tensor_span(y, "y", *d)},
                                  {float_span(gamma, "gamma", d->c), float_span(beta, "beta", d->c),
                                   float_span(running_mean, "running_mean", d->c),
                                   float_span(running_var, "running_var", d->c)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {z, "z"}, {y, "y"}, {gamma, "gamma"}, {beta, "beta"},
                                       {running_mean, "running_mean"}, {running_var, "running_var"}}));
  if (d->n == 0) return ok_status();
  const bool relu = act == BNORM_ACTIVATION_RELU;
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_FORWARD_INFERENCE,
        [&] { bnorm::cpu::ref::forward_inference(*d, x, z, y, gamma, beta, running_mean, running_var, eps, relu); },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::forward_inference(c, *d, x, z, y, gamma, beta, running_mean, running_var, eps, relu);
        });
  }
  bnorm::OpArgs a;
  a.inf = {x, y, gamma, beta, running_mean, running_var, eps, z, relu};
  bnorm::Problem pr = make_problem(BNORM_OP_FORWARD_INFERENCE, *d, {x, y, z ? z : x});
  pr.relu = relu;
  pr.add = z != nullptr;
  return bnorm::cuda_run(h, pr, a);
}

Status backward(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, const void* y, const void* dy,
                const float* gamma, const float* save_mean, const float* save_invstd, void* dx, void* dz,
                float* dgamma, float* dbeta, bnorm_activation_t act) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(check_act(act));
  const bool relu = act == BNORM_ACTIVATION_RELU;
  BNORM_TRY(require_tensor(x, "x", *d));
  if (relu) BNORM_TRY(require_tensor(y, "y (the forward's output, the ReLU mask)", *d));
  BNORM_TRY(require_tensor(dy, "dy", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(require(save_mean, "save_mean"));
  BNORM_TRY(require(save_invstd, "save_invstd"));
  BNORM_TRY(require_tensor(dx, "dx", *d));
  if (dz) BNORM_TRY(require_tensor(dz, "dz", *d));
  BNORM_TRY(optional(dgamma, "dgamma"));
  BNORM_TRY(optional(dbeta, "dbeta"));
  BNORM_TRY(check_dx_aliasing(dx, x, dy, *d));
  if (dz) {
    if (dz == dx && dx) return make_status(BNORM_STATUS_INVALID_VALUE, "dz must not alias dx");
    if (dz == x || (relu && dz == y))
      return make_status(BNORM_STATUS_INVALID_VALUE, "dz must not alias x or y (it may alias dy)");
    BNORM_TRY(check_overlap(dz, "dz", dy, "dy", *d));
    BNORM_TRY(check_overlap(dz, "dz", dx, "dx", *d));
    BNORM_TRY(check_overlap(dz, "dz", x, "x", *d));
  }
  if (relu) {
    if (dx && dx == y) return make_status(BNORM_STATUS_INVALID_VALUE, "dx must not alias y");
    BNORM_TRY(check_overlap(dx, "dx", y, "y", *d));
    if (dz) BNORM_TRY(check_overlap(dz, "dz", y, "y", *d));  // y is read while dz is written
  }
  const void* mask = relu ? y : nullptr;
  BNORM_TRY(check_writes_disjoint(
      {float_span(dgamma, "dgamma", d->c), float_span(dbeta, "dbeta", d->c)},
      {tensor_span(x, "x", *d), tensor_span(mask, "y", *d), tensor_span(dy, "dy", *d), tensor_span(dx, "dx", *d),
       tensor_span(dz, "dz", *d)},
      {tensor_span(dx, "dx", *d), tensor_span(dz, "dz", *d)},
      {float_span(gamma, "gamma", d->c), float_span(save_mean, "save_mean", d->c),
       float_span(save_invstd, "save_invstd", d->c)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {mask, "y"}, {dy, "dy"}, {gamma, "gamma"},
                                       {save_mean, "save_mean"}, {save_invstd, "save_invstd"},
                                       {dx, "dx"}, {dz, "dz"}, {dgamma, "dgamma"}, {dbeta, "dbeta"}}));
  // An empty batch: the parameter gradients are sums over no values.
  if (d->n == 0) return zero_floats(h, {{dgamma, d->c}, {dbeta, d->c}});
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_BACKWARD,
        [&] { bnorm::cpu::ref::backward(*d, x, mask, dy, gamma, save_mean, save_invstd, dx, dz, dgamma, dbeta, relu); },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::backward(c, *d, x, mask, dy, gamma, save_mean, save_invstd, dx, dz, dgamma, dbeta,
                                     relu);
        });
  }
  bnorm::OpArgs a;
  a.bwd = {x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta, mask, dz, relu};
  bnorm::Problem pr = make_problem(BNORM_OP_BACKWARD, *d, {x, dy, dx, mask ? mask : x, dz ? dz : dx});
  pr.relu = relu;
  pr.add = dz != nullptr;
  return bnorm::cuda_run(h, pr, a);
}

}  // namespace

extern "C" {

bnorm_status_t bnorm_forward_training(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, void* y,
                                      const float* gamma, const float* beta, float momentum, float eps,
                                      float* running_mean, float* running_var, float* save_mean,
                                      float* save_invstd) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return forward_training(h, d, x, nullptr, y, gamma, beta, momentum, eps, running_mean, running_var, save_mean,
                            save_invstd, BNORM_ACTIVATION_IDENTITY);
  });
}

bnorm_status_t bnorm_forward_training_fused(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* z,
                                            void* y, const float* gamma, const float* beta, float momentum,
                                            float eps, float* running_mean, float* running_var, float* save_mean,
                                            float* save_invstd, bnorm_activation_t act) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_act(act));
    return forward_training(h, d, x, z, y, gamma, beta, momentum, eps, running_mean, running_var, save_mean,
                            save_invstd, act);
  });
}

bnorm_status_t bnorm_forward_inference(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, void* y,
                                       const float* gamma, const float* beta, const float* running_mean,
                                       const float* running_var, float eps) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return forward_inference(h, d, x, nullptr, y, gamma, beta, running_mean, running_var, eps,
                             BNORM_ACTIVATION_IDENTITY);
  });
}

bnorm_status_t bnorm_forward_inference_fused(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* z,
                                             void* y, const float* gamma, const float* beta,
                                             const float* running_mean, const float* running_var, float eps,
                                             bnorm_activation_t act) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_act(act));
    return forward_inference(h, d, x, z, y, gamma, beta, running_mean, running_var, eps, act);
  });
}

bnorm_status_t bnorm_backward(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* dy,
                              const float* gamma, const float* save_mean, const float* save_invstd, void* dx,
                              float* dgamma, float* dbeta) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return backward(h, d, x, nullptr, dy, gamma, save_mean, save_invstd, dx, nullptr, dgamma, dbeta,
                    BNORM_ACTIVATION_IDENTITY);
  });
}

bnorm_status_t bnorm_backward_fused(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* y,
                                    const void* dy, const float* gamma, const float* save_mean,
                                    const float* save_invstd, void* dx, void* dz, float* dgamma, float* dbeta,
                                    bnorm_activation_t act) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_act(act));
    return backward(h, d, x, y, dy, gamma, save_mean, save_invstd, dx, dz, dgamma, dbeta, act);
  });
}

// ---- dispatch control -----------------------------------------------------------

bnorm_status_t bnorm_set_variant(bnorm_handle_t h, bnorm_op_t op, const char* spec) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&]() -> Status {
    BNORM_TRY(check_handle(h));
    BNORM_TRY(check_op(op));
    if (!spec) {
      h->forced[op].clear();
      return ok_status();
    }
    if (h->backend == BNORM_BACKEND_CPU) {
      if (std::strcmp(spec, "cpu_fast") != 0 && std::strcmp(spec, "cpu_reference") != 0)
        return make_status(BNORM_STATUS_INVALID_VALUE,
                           "the CPU backend's variants are cpu_fast and cpu_reference (got '%s')", spec);
      h->forced[op] = spec;
      return ok_status();
    }
    const bnorm::Variant* v = nullptr;
    bnorm::kern::Policy p;
    BNORM_TRY(bnorm::parse_spec(spec, op, nullptr, h->dev, &v, &p));
    h->forced[op] = spec;
    return ok_status();
  });
}

}  // extern "C"

namespace {

bool is_group_norm(bnorm_op_t op) {
  return op == BNORM_OP_GROUP_NORM_FORWARD || op == BNORM_OP_GROUP_NORM_BACKWARD;
}

// grouped: called through a _grouped form, so `groups` is meaningful.
Status query_problem(const bnorm_handle* h, const bnorm_op_t& op, const bnorm_tensor_t* d, int64_t groups,
                     bool grouped, int aligned16, bnorm::Problem* pr) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_op(op));
  BNORM_TRY(check_desc(d, /*allow_empty=*/false));
  if (is_group_norm(op)) {
    if (!grouped)
      return make_status(BNORM_STATUS_INVALID_VALUE,
                         "the group-norm operations depend on the group count: query them with "
                         "bnorm_query_variant_grouped / bnorm_list_variants_grouped");
    if (groups < 1 || d->c % groups != 0)
      return make_status(BNORM_STATUS_INVALID_VALUE, "groups = %lld must be >= 1 and divide c = %lld",
                         static_cast<long long>(groups), static_cast<long long>(d->c));
  }
  *pr = make_problem(op, *d, {}, is_group_norm(op) ? groups : 1);
  pr->aligned16 = aligned16 != 0;
  return ok_status();
}

void copy_out(const std::string& s, char* buf, size_t len) {
  if (!buf || len == 0) return;
  const size_t n = std::min(s.size(), len - 1);
  std::memcpy(buf, s.data(), n);
  buf[n] = '\0';
}

Status query_variant(bnorm_handle* h, const bnorm_op_t& op, const bnorm_tensor_t* d, int64_t groups, bool grouped,
                     int aligned16, char* spec, size_t spec_len, bnorm_choice_t* why) {
  bnorm::Problem pr;
  BNORM_TRY(query_problem(h, op, d, groups, grouped, aligned16, &pr));
  if (!spec || spec_len == 0) return make_status(BNORM_STATUS_INVALID_VALUE, "spec buffer is NULL or empty");
  if (h->backend == BNORM_BACKEND_CPU) {
    const bool ref = cpu_reference(*h, op);
    copy_out(ref ? "cpu_reference" : "cpu_fast", spec, spec_len);
    if (why) *why = ref || h->forced[op] == "cpu_fast" ? BNORM_CHOICE_OVERRIDE : BNORM_CHOICE_HEURISTIC;
    return ok_status();
  }
  bnorm::Choice c;
  BNORM_TRY(bnorm::choose(*h, pr, &c));
  copy_out(bnorm::format_spec(*c.variant, c.policy), spec, spec_len);
  if (why) *why = c.why;
  return ok_status();
}

Status list_variants(bnorm_handle* h, const bnorm_op_t& op, const bnorm_tensor_t* d, int64_t groups, bool grouped,
                     int aligned16, char* buf, size_t buf_len, int* count, size_t* needed) {
  bnorm::Problem pr;
  BNORM_TRY(query_problem(h, op, d, groups, grouped, aligned16, &pr));
  if (!count) return make_status(BNORM_STATUS_INVALID_VALUE, "count is NULL");
  std::string all;
  int n = 0;
  if (h->backend == BNORM_BACKEND_CPU) {
    all = "cpu_fast\ncpu_reference\n";
    n = 2;
  } else {
    for (const bnorm::Choice& c : bnorm::supported_configs(*h, pr)) {
      all += bnorm::format_spec(*c.variant, c.policy) + "\n";
      ++n;
    }
  }
  *count = n;
  if (needed) *needed = all.size() + 1;
  copy_out(all, buf, buf_len);
  return ok_status();
}

}  // namespace

extern "C" {

bnorm_status_t bnorm_query_variant(bnorm_handle_t h, bnorm_op_t op, const bnorm_tensor_t* d,
                                   int aligned16, char* spec, size_t spec_len, bnorm_choice_t* why) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] { return query_variant(h, op, d, 1, false, aligned16, spec, spec_len, why); });
}

bnorm_status_t bnorm_list_variants(bnorm_handle_t h, bnorm_op_t op, const bnorm_tensor_t* d,
                                   int aligned16, char* buf, size_t buf_len, int* count,
                                   size_t* needed) {
  BNORM_FUNC_RANGE();
  return guarded(__func__,
                 [&] { return list_variants(h, op, d, 1, false, aligned16, buf, buf_len, count, needed); });
}

bnorm_status_t bnorm_query_variant_grouped(bnorm_handle_t h, bnorm_op_t op, const bnorm_tensor_t* d,
                                           int64_t groups, int aligned16, char* spec, size_t spec_len,
                                           bnorm_choice_t* why) {
  BNORM_FUNC_RANGE();
  return guarded(__func__,
                 [&] { return query_variant(h, op, d, groups, true, aligned16, spec, spec_len, why); });
}

bnorm_status_t bnorm_list_variants_grouped(bnorm_handle_t h, bnorm_op_t op, const bnorm_tensor_t* d,
                                           int64_t groups, int aligned16, char* buf, size_t buf_len,
                                           int* count, size_t* needed) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return list_variants(h, op, d, groups, true, aligned16, buf, buf_len, count, needed);
  });
}

}  // extern "C"

namespace bnorm {

bnorm_status_t report_status(const Status& s) { return report(s); }

}  // namespace bnorm
