// The ops of the forward pass: the statistics reducer (for channel_reduce_kernel and
// the persistent kernel) and the elementwise ops (for channel_map_kernel).
//   WelfordReducer  per-channel Welford statistics of x, shifted by a pivot.
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

#include "launch.hpp"
#include "vec_io.cuh"
#include "welford.cuh"

namespace bnorm::kern {

// Accumulates Welford states of (x - pivot), pivot being the channel's first value (its
// per-channel constant k).
// Shifting is exact in the variance (M2 does not move) and keeps the accumulated
// means near zero, so fp32 rounding stays relative to the spread of the data rather
// than to its mean: the error at |mean|/std = 1e4 falls by about that factor.
template <class T>
struct WelfordReducer {
  using State = Welford<float>;
  static constexpr int kInputs = 1;
  const T* in0;
  const T* in1;  // unused
  int64_t channel_stride;  // offset of channel c's first value is c * channel_stride
  ForwardTrainingArgs args;

  __device__ __forceinline__ float channel_constant(int64_t c) const { return to_float(in0[c * channel_stride]); }
  __device__ __forceinline__ State empty() const { return welford_empty<float>(); }
  template <int K>
  __device__ __forceinline__ void add(State& s, float pivot, const float (&a)[K], const float (&)[K]) const {
    float v[K];
#pragma unroll
    for (int i = 0; i < K; ++i) v[i] = a[i] - pivot;
    s = welford_merge(s, welford_of_chunk<float, K>(v));
  }
  __device__ __forceinline__ State merge(const State& a, const State& b) const {
    return welford_merge(a, b);
  }
  // The channel's coefficients for NormalizeOp; the saved and running statistics are
  // written only by the one caller per channel that passes write_outputs.
  __device__ float4 finish(int64_t c, State s, float pivot, bool write_outputs) const {
    const float shifted_mean = s.mean;
    s.mean += pivot;
    const ChannelStats st = finalize_stats<float>(s, args.eps);
    const float g = args.gamma ? args.gamma[c] : 1.0f;
    const float b = args.beta ? args.beta[c] : 0.0f;
    if (!write_outputs) return make_float4(pivot, shifted_mean, g * st.invstd, b);
    if (args.save_mean) args.save_mean[c] = st.mean;
    if (args.save_invstd) args.save_invstd[c] = st.invstd;
    if (args.running_mean) {
      args.running_mean[c] = blend_running(args.running_mean[c], st.mean, args.momentum);
      args.running_var[c] = blend_running(args.running_var[c], st.var_unbiased, args.momentum);
    }
    return make_float4(pivot, shifted_mean, g * st.invstd, b);
  }
};

template <class T>
struct NormalizeOp {
  static constexpr int kInputs = 1;
  const T* in0;
  const T* in1;  // unused
  T* out;
  const float4* coefs;
  __device__ __forceinline__ float4 coef(int64_t c) const { return coefs[c]; }
  __device__ __forceinline__ float apply(float x, float, const float4& k) const {
    return fmaf((x - k.x) - k.y, k.z, k.w);
  }
};

template <class T>
struct InferenceOp {
  static constexpr int kInputs = 1;
  const T* in0;
  const T* in1;  // unused
  T* out;
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
