// The C entry points of batch norm with given statistics: frozen batch norm's backward,
// folding into weights, and synchronized batch norm (bnorm.h). Validation once, here,
// then the CPU backend or dispatch.
#include "api_common.hpp"
#include "bnorm/bnorm.h"
#include "cpu/reference.hpp"
#include "cuda_backend.hpp"
#include "kernels/launch_given_stats.hpp"
#include "nvtx.hpp"

namespace {

using bnorm::make_status;
using bnorm::ok_status;
using bnorm::Status;
using namespace bnorm::api;

Status backward_frozen(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, const void* dy, const float* gamma,
                       const float* running_mean, const float* running_var, float eps, void* dx, float* dgamma,
                       float* dbeta) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  // Without dgamma and dbeta, x is not read and may be NULL.
  if (dgamma || dbeta || x) BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(dy, "dy", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(require(running_mean, "running_mean"));
  BNORM_TRY(require(running_var, "running_var"));
  BNORM_TRY(check_eps(eps));
  BNORM_TRY(require_tensor(dx, "dx", *d));
  BNORM_TRY(optional(dgamma, "dgamma"));
  BNORM_TRY(optional(dbeta, "dbeta"));
  BNORM_TRY(check_dx_aliasing(dx, x, dy, *d));
  BNORM_TRY(check_writes_disjoint(
      {float_span(dgamma, "dgamma", d->c), float_span(dbeta, "dbeta", d->c)},
      {tensor_span(x, "x", *d), tensor_span(dy, "dy", *d), tensor_span(dx, "dx", *d)}, {tensor_span(dx, "dx", *d)},
      {float_span(gamma, "gamma", d->c), float_span(running_mean, "running_mean", d->c),
       float_span(running_var, "running_var", d->c)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {dy, "dy"}, {gamma, "gamma"}, {running_mean, "running_mean"},
                                       {running_var, "running_var"}, {dx, "dx"}, {dgamma, "dgamma"},
                                       {dbeta, "dbeta"}}));
  if (d->n == 0) return zero_floats(h, {{dgamma, d->c}, {dbeta, d->c}});
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_BACKWARD_FROZEN,
        [&] { bnorm::cpu::ref::backward_frozen(*d, x, dy, gamma, running_mean, running_var, eps, dx, dgamma, dbeta); },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::backward_frozen(c, *d, x, dy, gamma, running_mean, running_var, eps, dx, dgamma, dbeta);
        });
  }
  bnorm::OpArgs a;
  a.frozen = {x, dy, gamma, running_mean, running_var, eps, dx, dgamma, dbeta};
  return bnorm::cuda_run(h, make_problem(BNORM_OP_BACKWARD_FROZEN, *d, {x, dy, dx}), a);
}

Status fold_into_weights(bnorm_handle* h, const bnorm_tensor_t* wd, const void* weight, const float* bias,
                         const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                         float eps, void* weight_out, float* bias_out) {
  BNORM_TRY(check_handle(h));
  if (!wd) return make_status(BNORM_STATUS_INVALID_VALUE, "weight_desc is NULL");
  BNORM_TRY(check_desc(wd));
  BNORM_TRY(require_tensor(weight, "weight", *wd));
  BNORM_TRY(optional(bias, "bias"));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(optional(beta, "beta"));
  BNORM_TRY(require(running_mean, "running_mean"));
  BNORM_TRY(require(running_var, "running_var"));
  BNORM_TRY(check_eps(eps));
  BNORM_TRY(require_tensor(weight_out, "weight_out", *wd));
  if (wd->n > 0) BNORM_TRY(require(bias_out, "bias_out"));
  BNORM_TRY(check_overlap(weight, "weight", weight_out, "weight_out", *wd));
  BNORM_TRY(check_overlap_floats(bias, "bias", bias_out, "bias_out", wd->n));
  // bias_out may be bias (in place): that pair is the check above's.
  BNORM_TRY(check_writes_disjoint(
      {float_span(bias_out, "bias_out", wd->n)}, {tensor_span(weight, "weight", *wd), tensor_span(weight_out, "weight_out", *wd)},
      {tensor_span(weight_out, "weight_out", *wd)},
      {float_span(bias == bias_out ? nullptr : bias, "bias", wd->n), float_span(gamma, "gamma", wd->n),
       float_span(beta, "beta", wd->n), float_span(running_mean, "running_mean", wd->n),
       float_span(running_var, "running_var", wd->n)}));
  BNORM_TRY(check_device_pointers(*h, {{weight, "weight"}, {bias, "bias"}, {gamma, "gamma"}, {beta, "beta"},
                                       {running_mean, "running_mean"}, {running_var, "running_var"},
                                       {weight_out, "weight_out"}, {bias_out, "bias_out"}}));
  if (wd->n == 0) return ok_status();  // a layer without output channels
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_FOLD,
        [&] {
          bnorm::cpu::ref::fold_into_weights(*wd, weight, bias, gamma, beta, running_mean, running_var, eps,
                                             weight_out, bias_out);
        },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::fold_into_weights(c, *wd, weight, bias, gamma, beta, running_mean, running_var, eps,
                                              weight_out, bias_out);
        });
  }
  bnorm::OpArgs a;
  a.fold = {weight, bias, gamma, beta, running_mean, running_var, eps, weight_out, bias_out};
  return bnorm::cuda_run(h, make_problem(BNORM_OP_FOLD, *wd, {weight, weight_out}), a);
}

Status sync_local_stats(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, float* local_stats) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require(local_stats, "local_stats"));
  BNORM_TRY(check_writes_disjoint({float_span(local_stats, "local_stats", 3 * d->c)}, {tensor_span(x, "x", *d)}, {},
                                  {}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {local_stats, "local_stats"}}));
  // An empty rank's state is the empty state: count, mean and M2 all 0.
  if (d->n == 0) return zero_floats(h, {{local_stats, 3 * d->c}});
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_SYNC_LOCAL_STATS, [&] { bnorm::cpu::ref::sync_local_stats(*d, x, local_stats); },
        [&](bnorm::cpu::fast::Context& c) { bnorm::cpu::fast::sync_local_stats(c, *d, x, local_stats); });
  }
  bnorm::OpArgs a;
  a.sync_stats = {x, local_stats};
  return bnorm::cuda_run(h, make_problem(BNORM_OP_SYNC_LOCAL_STATS, *d, {x}), a);
}

Status sync_merge_stats(bnorm_handle* h, int64_t c, int64_t ranks, const float* gathered, float* global_stats) {
  BNORM_TRY(check_handle(h));
  if (c < 1) return make_status(BNORM_STATUS_INVALID_VALUE, "c = %lld; it must be >= 1", static_cast<long long>(c));
  if (ranks < 1)
    return make_status(BNORM_STATUS_INVALID_VALUE, "ranks = %lld; it must be >= 1", static_cast<long long>(ranks));
  if (c > (int64_t{1} << 40) / ranks)
    return make_status(BNORM_STATUS_INVALID_VALUE, "ranks * c overflows the gathered buffer's 2^40 states");
  BNORM_TRY(require(gathered, "gathered"));
  BNORM_TRY(require(global_stats, "global_stats"));
  BNORM_TRY(check_disjoint(gathered, "gathered", 3 * c * ranks * sizeof(float), global_stats, "global_stats",
                            3 * c * sizeof(float)));
  BNORM_TRY(check_device_pointers(*h, {{gathered, "gathered"}, {global_stats, "global_stats"}}));
  if (h->backend == BNORM_BACKEND_CPU) {
    // C * ranks states, no tensor: the float64 merge is the fast path too.
    bnorm::cpu::ref::sync_merge_stats(c, ranks, gathered, global_stats);
    return ok_status();
  }
  // A per-channel loop over the ranks, no tensor to tune for: one kernel, not a variant.
  bnorm::DeviceGuard guard(h->device);
  return bnorm::cuda_status(bnorm::kern::sync_merge_stats(c, ranks, gathered, global_stats, h->stream),
                            "sync merge kernel launch");
}

Status sync_forward(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, void* y, const float* gamma,
                    const float* beta, const float* global_stats, float momentum, float eps, float* running_mean,
                    float* running_var, float* save_mean, float* save_invstd) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(y, "y", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(optional(beta, "beta"));
  BNORM_TRY(require(global_stats, "global_stats"));
  BNORM_TRY(optional(running_mean, "running_mean"));
  BNORM_TRY(optional(running_var, "running_var"));
  BNORM_TRY(optional(save_mean, "save_mean"));
  BNORM_TRY(optional(save_invstd, "save_invstd"));
  BNORM_TRY(check_eps(eps));
  BNORM_TRY(check_momentum(momentum));
  if ((running_mean == nullptr) != (running_var == nullptr))
    return make_status(BNORM_STATUS_INVALID_VALUE,
                       "running_mean and running_var must both be NULL or both be given");
  BNORM_TRY(check_overlap(x, "x", y, "y", *d));
  BNORM_TRY(check_writes_disjoint(
      {float_span(running_mean, "running_mean", d->c), float_span(running_var, "running_var", d->c),
       float_span(save_mean, "save_mean", d->c), float_span(save_invstd, "save_invstd", d->c)},
      {tensor_span(x, "x", *d), tensor_span(y, "y", *d)}, {tensor_span(y, "y", *d)},
      {float_span(gamma, "gamma", d->c), float_span(beta, "beta", d->c),
       float_span(global_stats, "global_stats", 3 * d->c)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {y, "y"}, {gamma, "gamma"}, {beta, "beta"},
                                       {global_stats, "global_stats"}, {running_mean, "running_mean"},
                                       {running_var, "running_var"}, {save_mean, "save_mean"},
                                       {save_invstd, "save_invstd"}}));
  // n = 0 runs too: the saved and running statistics are the whole batch's.
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_SYNC_FORWARD,
        [&] {
          bnorm::cpu::ref::sync_forward(*d, x, y, gamma, beta, global_stats, momentum, eps, running_mean,
                                        running_var, save_mean, save_invstd);
        },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::sync_forward(c, *d, x, y, gamma, beta, global_stats, momentum, eps, running_mean,
                                         running_var, save_mean, save_invstd);
        });
  }
  bnorm::OpArgs a;
  a.sync_fwd = {x, y, gamma, beta, global_stats, momentum, eps, running_mean, running_var, save_mean, save_invstd};
  return bnorm::cuda_run(h, make_problem(BNORM_OP_SYNC_FORWARD, *d, {x, y}), a);
}

Status sync_backward_sums(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, const void* dy,
                          const float* save_mean, float* local_sums) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(dy, "dy", *d));
  BNORM_TRY(require(save_mean, "save_mean"));
  BNORM_TRY(require(local_sums, "local_sums"));
  BNORM_TRY(check_writes_disjoint({float_span(local_sums, "local_sums", 2 * d->c)},
                                  {tensor_span(x, "x", *d), tensor_span(dy, "dy", *d)}, {},
                                  {float_span(save_mean, "save_mean", d->c)}));
  BNORM_TRY(check_device_pointers(
      *h, {{x, "x"}, {dy, "dy"}, {save_mean, "save_mean"}, {local_sums, "local_sums"}}));
  if (d->n == 0) return zero_floats(h, {{local_sums, 2 * d->c}});
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_SYNC_BACKWARD_SUMS, [&] { bnorm::cpu::ref::sync_backward_sums(*d, x, dy, save_mean, local_sums); },
        [&](bnorm::cpu::fast::Context& c) { bnorm::cpu::fast::sync_backward_sums(c, *d, x, dy, save_mean, local_sums); });
  }
  bnorm::OpArgs a;
  a.sync_sums = {x, dy, save_mean, local_sums};
  return bnorm::cuda_run(h, make_problem(BNORM_OP_SYNC_BACKWARD_SUMS, *d, {x, dy}), a);
}

Status sync_backward(bnorm_handle* h, const bnorm_tensor_t* d, const void* x, const void* dy, const float* gamma,
                     const float* save_mean, const float* save_invstd, const float* global_stats,
                     const float* global_sums, void* dx, float* dgamma, float* dbeta) {
  BNORM_TRY(check_handle(h));
  BNORM_TRY(check_desc(d));
  BNORM_TRY(require_tensor(x, "x", *d));
  BNORM_TRY(require_tensor(dy, "dy", *d));
  BNORM_TRY(optional(gamma, "gamma"));
  BNORM_TRY(require(save_mean, "save_mean"));
  BNORM_TRY(require(save_invstd, "save_invstd"));
  BNORM_TRY(require(global_stats, "global_stats"));
  BNORM_TRY(require(global_sums, "global_sums"));
  BNORM_TRY(require_tensor(dx, "dx", *d));
  BNORM_TRY(optional(dgamma, "dgamma"));
  BNORM_TRY(optional(dbeta, "dbeta"));
  BNORM_TRY(check_dx_aliasing(dx, x, dy, *d));
  BNORM_TRY(check_writes_disjoint(
      {float_span(dgamma, "dgamma", d->c), float_span(dbeta, "dbeta", d->c)},
      {tensor_span(x, "x", *d), tensor_span(dy, "dy", *d), tensor_span(dx, "dx", *d)}, {tensor_span(dx, "dx", *d)},
      {float_span(gamma, "gamma", d->c), float_span(save_mean, "save_mean", d->c),
       float_span(save_invstd, "save_invstd", d->c), float_span(global_stats, "global_stats", 3 * d->c),
       float_span(global_sums, "global_sums", 2 * d->c)}));
  BNORM_TRY(check_device_pointers(*h, {{x, "x"}, {dy, "dy"}, {gamma, "gamma"}, {save_mean, "save_mean"},
                                       {save_invstd, "save_invstd"}, {global_stats, "global_stats"},
                                       {global_sums, "global_sums"}, {dx, "dx"}, {dgamma, "dgamma"},
                                       {dbeta, "dbeta"}}));
  // n = 0 runs too: dgamma and dbeta are the whole batch's.
  if (h->backend == BNORM_BACKEND_CPU) {
    return run_cpu(
        h, BNORM_OP_SYNC_BACKWARD,
        [&] {
          bnorm::cpu::ref::sync_backward(*d, x, dy, gamma, save_mean, save_invstd, global_stats, global_sums, dx,
                                         dgamma, dbeta);
        },
        [&](bnorm::cpu::fast::Context& c) {
          bnorm::cpu::fast::sync_backward(c, *d, x, dy, gamma, save_mean, save_invstd, global_stats, global_sums,
                                          dx, dgamma, dbeta);
        });
  }
  bnorm::OpArgs a;
  a.sync_bwd = {x, dy, gamma, save_mean, save_invstd, global_stats, global_sums, dx, dgamma, dbeta};
  return bnorm::cuda_run(h, make_problem(BNORM_OP_SYNC_BACKWARD, *d, {x, dy, dx}), a);
}

}  // namespace

extern "C" {

bnorm_status_t bnorm_backward_frozen(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* dy,
                                     const float* gamma, const float* running_mean, const float* running_var,
                                     float eps, void* dx, float* dgamma, float* dbeta) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return backward_frozen(h, d, x, dy, gamma, running_mean, running_var, eps, dx, dgamma, dbeta);
  });
}

bnorm_status_t bnorm_fold_into_weights(bnorm_handle_t h, const bnorm_tensor_t* wd, const void* weight,
                                       const float* bias, const float* gamma, const float* beta,
                                       const float* running_mean, const float* running_var, float eps,
                                       void* weight_out, float* bias_out) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return fold_into_weights(h, wd, weight, bias, gamma, beta, running_mean, running_var, eps, weight_out, bias_out);
  });
}

bnorm_status_t bnorm_sync_local_stats(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x,
                                      float* local_stats) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] { return sync_local_stats(h, d, x, local_stats); });
}

bnorm_status_t bnorm_sync_merge_stats(bnorm_handle_t h, int64_t c, int64_t ranks, const float* gathered,
                                      float* global_stats) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] { return sync_merge_stats(h, c, ranks, gathered, global_stats); });
}

bnorm_status_t bnorm_sync_forward(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, void* y,
                                  const float* gamma, const float* beta, const float* global_stats, float momentum,
                                  float eps, float* running_mean, float* running_var, float* save_mean,
                                  float* save_invstd) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return sync_forward(h, d, x, y, gamma, beta, global_stats, momentum, eps, running_mean, running_var, save_mean,
                        save_invstd);
  });
}

bnorm_status_t bnorm_sync_backward_sums(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* dy,
                                        const float* save_mean, float* local_sums) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] { return sync_backward_sums(h, d, x, dy, save_mean, local_sums); });
}

bnorm_status_t bnorm_sync_backward(bnorm_handle_t h, const bnorm_tensor_t* d, const void* x, const void* dy,
                                   const float* gamma, const float* save_mean, const float* save_invstd,
                                   const float* global_stats, const float* global_sums, void* dx, float* dgamma,
                                   float* dbeta) {
  BNORM_FUNC_RANGE();
  return guarded(__func__, [&] {
    return sync_backward(h, d, x, dy, gamma, save_mean, save_invstd, global_stats, global_sums, dx, dgamma, dbeta);
  });
}

}  // extern "C"
