// The CPU reference backend: the same operations as the CUDA kernels, accumulating in
// float64 with the shared Welford code, for NCHW and NHWC tensors of float32, float16
// and bfloat16 (parameters and statistics float32). It is the oracle of the GPU tests
// and runs the library where no GPU exists. Arguments arrive validated; tensor pointers
// are of desc.dtype.
#pragma once

#include "bnorm/bnorm.h"

namespace bnorm::cpu {

void forward_training(const bnorm_tensor_t& d, const void* x, void* y, const float* gamma,
                      const float* beta, float momentum, float eps, float* running_mean,
                      float* running_var, float* save_mean, float* save_invstd);

void forward_inference(const bnorm_tensor_t& d, const void* x, void* y, const float* gamma,
                       const float* beta, const float* running_mean, const float* running_var,
                       float eps);

void backward(const bnorm_tensor_t& d, const void* x, const void* dy, const float* gamma,
              const float* save_mean, const float* save_invstd, void* dx, float* dgamma,
              float* dbeta);

}  // namespace bnorm::cpu
