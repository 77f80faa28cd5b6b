// The C entry points of the per-sample norms: group, instance and layer norm (bnorm.h).
// Instance norm is group norm with groups = c; layer norm is one group per sample with
// one affine parameter per value. Validation once, here, then the CPU backend or
// dispatch.
#include "api_common.hpp"
#include "bnorm/bnorm.h"
#include "cpu/reference.hpp"
#include "cuda_backend.hpp"
#include "nvtx.hpp"

namespace {

using bnorm::make_status;
using bnorm::ok_status;
using bnorm::Status;
using namespace bnorm::api;

// Which per-sample norm: its group count and where its affine parameters sit.
struct Norm {
  bool layer;      // layer norm: one group, per-value parameters
  int64_t groups;  // group norm's count (c for instance norm)
  int64_t features(const bnorm_tensor_t& d) const { return layer ? d.c * d.h * d.w : d.c; }
  bnorm_op_t op(bool forward) const {
    if (layer) return forward ? BNORM_OP_LAYER_NORM_FORWARD : BNORM_OP_LAYER_NORM_BACKWARD;
    return forward ? BNORM_OP_GROUP_NORM_FORWARD : BNORM_OP_GROUP_NORM_BACKWARD;
  }
};

Status check_norm(const Norm& nm, const bnorm_tensor_t& d) {
  if (!nm.layer && (nm.groups < 1 || d.c % nm.groups != 0))
    return make_status(BNORM_STATUS_INVALID_VALUE, "groups = %lld; it must be >= 1 and divide c = %lld",
                       static_cast<long long>(nm.groups), static_cast<long long>(d.c));
  return ok_status();
}

Status forward(bnorm_handle* h, const Norm& nm, const bnorm_tensor_t* d, const void* x, void* y, const float* gamma,
               const float* beta, float eps, float* save_mean, float* save_invstd) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(check_norm(nm, *d));
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(y, "y", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(optional(beta, "beta"));
  BNORM_TRY(check_eps(eps));
  BNORM_TRY(optional(save_mean, "save_mean"));
  BNORM_TRY(optional(save_invstd, "save_invstd"));
  BNORM_TRY(check_overlap(x, "x", y, "y", *d));
  const int64_t rows = d->n * (nm.layer ? 1 : nm.groups), k = nm.features(*d);
  BNORM_TRY(check_writes_disjoint(
      {float_span(save_mean, "save_mean", rows), float_span(save_invstd, "save_invstd", rows)},
      {tensor_span(x, "x", *d), tensor_span(y, "y", *d)}, {tensor_span(y, "y", *d)},
      {float_span(gamma, "gamma", k), float_span(beta, "beta", k)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {y, "y"}, {gamma, "gamma"}, {beta, "beta"},
                                       {save_mean, "save_mean"}, {save_invstd, "save_invstd"}}));
  if (d->n == 0) return ok_status();  // no samples, no statistics
  if (h->backend == BNORM_BACKEND_CPU) {
    const int64_t groups = nm.layer ? 1 : nm.groups;
    return run_cpu(
        h, nm.op(true),
        [&] { bnorm::cpu::ref::per_sample_forward(*d, groups, nm.layer, x, y, gamma, beta, eps, save_mean, save_invstd); },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::per_sample_forward(c, *d, groups, nm.layer, x, y, gamma, beta, eps, save_mean,
                                               save_invstd);
        });
  }
  bnorm::OpArgs a;
  a.sample_fwd = {x, y, gamma, beta, eps, save_mean, save_invstd};
  return bnorm::cuda_run(h, make_problem(nm.op(true), *d, {x, y}, nm.layer ? 1 : nm.groups), a);
}

Status backward(bnorm_handle* h, const Norm& nm, const bnorm_tensor_t* d, const void* x, const void* dy,
                const float* gamma, const float* save_mean, const float* save_invstd, void* dx, float* dgamma,
                float* dbeta) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(check_norm(nm, *d));
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(dy, "dy", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  // Per-row arrays have n*groups entries: none for an empty batch.
  if (d->n > 0) {
    BNORM_TRY(require(save_mean, "save_mean"));
    BNORM_TRY(require(save_invstd, "save_invstd"));
  }
  BNORM_TRY(require_tensor(dx, "dx", *d));
  BNORM_TRY(optional(dgamma, "dgamma"));
  BNORM_TRY(optional(dbeta, "dbeta"));
  BNORM_TRY(check_dx_aliasing(dx, x, dy, *d));
  const int64_t rows = d->n * (nm.layer ? 1 : nm.groups), k = nm.features(*d);
  BNORM_TRY(check_writes_disjoint(
      {float_span(dgamma, "dgamma", k), float_span(dbeta, "dbeta", k)},
      {tensor_span(x, "x", *d), tensor_span(dy, "dy", *d), tensor_span(dx, "dx", *d)}, {tensor_span(dx, "dx", *d)},
      {float_span(gamma, "gamma", k), float_span(save_mean, "save_mean", rows),
       float_span(save_invstd, "save_invstd", rows)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {dy, "dy"}, {gamma, "gamma"}, {save_mean, "save_mean"},
                                       {save_invstd, "save_invstd"}, {dx, "dx"}, {dgamma, "dgamma"},
                                       {dbeta, "dbeta"}}));
  if (d->n == 0) return zero_floats(h, {{dgamma, nm.features(*d)}, {dbeta, nm.features(*d)}});
  if (h->backend == BNORM_BACKEND_CPU) {
    const int64_t groups = nm.layer ? 1 : nm.groups;
    return run_cpu(
        h, nm.op(false),
        [&] {
          bnorm::cpu::ref::per_sample_backward(*d, groups, nm.layer, x, dy, gamma, save_mean, save_invstd, dx,
                                               dgamma, dbeta);
        },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::per_sample_backward(c, *d, groups, nm.layer, x, dy, gamma, save_mean, save_invstd, dx,
                                                dgamma, dbeta);
        });
  }
  bnorm::OpArgs a;
  a.sample_bwd = {x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta};
  return bnorm::cuda_run(h, make_problem(nm.op(false), *d, {x, dy, dx}, nm.layer ? 1 : nm.groups), a);
}

}  // namespace

extern "C" {

bnorm_status_t bnorm_group_norm_forward(bnorm_handle_t h, const bnorm_tensor_t* d, int64_t groups, const void* x,
                                        void* y, const float* gamma, const float* beta, float eps, float* save_mean,
                                        float* save_invstd) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return forward(h, Norm{false, groups}, d, x, y, gamma, beta, eps, save_mean, save_invstd);
  });
}

bnorm_status_t bnorm_group_norm_backward(bnorm_handle_t h, const bnorm_tensor_t* d, int64_t groups, const void* x,
                                         const void* dy, const float* gamma, const float* save_mean,
                                         const float* save_invstd, void* dx, float* dgamma, float* dbeta) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return backward(h, Norm{false, groups}, d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
  });
}

bnorm_status_t bnorm_instance_norm_forward(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, void* y,
                                           const float* gamma, const float* beta, float eps, float* save_mean,
                                           float* save_invstd) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return forward(h, Norm{false, d ? d->c : 1}, d, x, y, gamma, beta, eps, save_mean, save_invstd);
  });
}

bnorm_status_t bnorm_instance_norm_backward(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x,
                                            const void* dy, const float* gamma, const float* save_mean,
                                            const float* save_invstd, void* dx, float* dgamma, float* dbeta) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return backward(h, Norm{false, d ? d->c : 1}, d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
  });
}

bnorm_status_t bnorm_layer_norm_forward(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, void* y,
                                        const float* gamma, const float* beta, float eps, float* save_mean,
                                        float* save_invstd) {
  BNORM_FUNC_RANGE();
  return guarded(__func__,
                 [&] { return forward(h, Norm{true, 1}, d, x, y, gamma, beta, eps, save_mean, save_invstd); });
}

bnorm_status_t bnorm_layer_norm_backward(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* dy,
                                         const float* gamma, const float* save_mean, const float* save_invstd,
                                         void* dx, float* dgamma, float* dbeta) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return backward(h, Norm{true, 1}, d, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
  });
}

}  // extern "C"
