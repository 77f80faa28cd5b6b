// The CPU backend's float64 oracle, variant cpu_reference: the same operations as the CUDA
// kernels and the fast path (fast.hpp), accumulating in float64 with the shared Welford
// code, for NCHW and NHWC tensors of float32, float16 and bfloat16 (parameters and
// statistics float32). Plain loops, one thread: the tests compare the fast path and the
// CUDA kernels against it, and bnorm_set_variant(h, op, "cpu_reference") selects it.
// Arguments arrive validated; tensor pointers are of desc.dtype.
#pragma once

#include "bnorm/bnorm.h"

namespace bnorm::cpu::ref {

// The fused forms (bnorm.h): z may be null (no add); relu applies max(v, 0).
void forward_training(const bnorm_tensor_t& d, const void* x, const void* z, void* y, const float* gamma,
                      const float* beta, float momentum, float eps, float* running_mean,
                      float* running_var, float* save_mean, float* save_invstd, bool relu);

void forward_inference(const bnorm_tensor_t& d, const void* x, const void* z, void* y, const float* gamma,
                       const float* beta, const float* running_mean, const float* running_var,
                       float eps, bool relu);

// With relu, y (the forward's output) masks dy; dz (may be null) receives the masked dy.
void backward(const bnorm_tensor_t& d, const void* x, const void* y, const void* dy, const float* gamma,
              const float* save_mean, const float* save_invstd, void* dx, void* dz, float* dgamma,
              float* dbeta, bool relu);

// ---- batch norm with given statistics (cpu_given_stats.cpp) ----

void backward_frozen(const bnorm_tensor_t& d, const void* x, const void* dy, const float* gamma,
                     const float* running_mean, const float* running_var, float eps, void* dx, float* dgamma,
                     float* dbeta);

// d describes the weights: n output channels of c*h*w weights each.
void fold_into_weights(const bnorm_tensor_t& d, const void* weight, const float* bias, const float* gamma,
                       const float* beta, const float* running_mean, const float* running_var, float eps,
                       void* weight_out, float* bias_out);

void sync_local_stats(const bnorm_tensor_t& d, const void* x, float* local_stats);
void sync_merge_stats(int64_t c, int64_t ranks, const float* gathered, float* global_stats);
void sync_forward(const bnorm_tensor_t& d, const void* x, void* y, const float* gamma, const float* beta,
                  const float* global_stats, float momentum, float eps, float* running_mean, float* running_var,
                  float* save_mean, float* save_invstd);
void sync_backward_sums(const bnorm_tensor_t& d, const void* x, const void* dy, const float* save_mean,
                        float* local_sums);
void sync_backward(const bnorm_tensor_t& d, const void* x, const void* dy, const float* gamma,
                   const float* save_mean, const float* save_invstd, const float* global_stats,
                   const float* global_sums, void* dx, float* dgamma, float* dbeta);

// ---- the per-sample norms (cpu_per_sample.cpp) ----
// groups: the group count (c for instance norm, 1 for layer norm); per_value: layer
// norm's affine parameters, one per value of a sample (index (c_i*h + h_i)*w + w_i),
// else one per channel.

void per_sample_forward(const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* x, void* y,
                        const float* gamma, const float* beta, float eps, float* save_mean, float* save_invstd);
void per_sample_backward(const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* x, const void* dy,
                         const float* gamma, const float* save_mean, const float* save_invstd, void* dx,
                         float* dgamma, float* dbeta);

}  // namespace bnorm::cpu::ref
