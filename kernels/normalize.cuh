// The elementwise ops of the forward pass, for channel_map_kernel.
//   NormalizeOp  training: y = ((x - pivot) - shifted_mean) * scale + beta, with
//                scale = gamma * invstd, from the statistics kernel's coefficients.
//   InferenceOp  y = (x - running_mean) * gamma / sqrt(running_var + eps) + beta,
//                coefficients derived in the kernel: inference is a single launch.
// Both take differences before scaling rather than folding the mean into one shift
// (y = x*scale + (beta - mean*scale)): at |mean|/std = 1e4 the folded form cancels two
// numbers 1e4 times larger than y and loses four digits of it. Training goes further:
// the mean rounded to fp32 is off by up to half an ulp of |mean|, which is a large error
// in y when std << |mean|; x - pivot is exact for x near the pivot (a value of the
// channel) and the shifted mean is accurate relative to the spread.
//
// Coefficients per channel: {pivot, shifted_mean, scale, beta}.
#pragma once

#include <cuda_runtime.h>

namespace bnorm::kern {

struct NormalizeOp {
  static constexpr int kInputs = 1;
  const float* in0;
  const float* in1;  // unused
  float* out;
  const float4* coefs;
  __device__ __forceinline__ float4 coef(int64_t c) const { return coefs[c]; }
  __device__ __forceinline__ float apply(float x, float, const float4& k) const {
    return fmaf((x - k.x) - k.y, k.z, k.w);
  }
};

struct InferenceOp {
  static constexpr int kInputs = 1;
  const float* in0;
  const float* in1;  // unused
  float* out;
  const float* gamma;
  const float* beta;
  const float* mean;
  const float* var;
  float eps;
  __device__ __forceinline__ float4 coef(int64_t c) const {
    const float g = gamma ? gamma[c] : 1.0f;
    const float b = beta ? beta[c] : 0.0f;
    return make_float4(mean[c], 0.0f, g / sqrtf(var[c] + eps), b);
  }
  __device__ __forceinline__ float apply(float x, float, const float4& k) const {
    return fmaf((x - k.x) - k.y, k.z, k.w);
  }
};

}  // namespace bnorm::kern
