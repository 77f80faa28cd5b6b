// The CPU reference backend: the same operations as the CUDA kernels, accumulating in
// float64 with the shared Welford code, for NCHW and NHWC tensors of float32, float16
// and bfloat16 (parameters and statistics float32). It is the oracle of the GPU tests
// and runs the library where no GPU exists. Arguments arrive validated; tensor pointers
// are of desc.dtype.
#pragma once

#include "bnorm/bnorm.h"

namespace bnorm::cpu {

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

}  // namespace bnorm::cpu
