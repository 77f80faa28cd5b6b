// The ops of the forward pass: the statistics reducer (for channel_reduce_kernel, the
// persistent and the channels-last kernels) and the elementwise ops.
//   WelfordReducer  per-channel Welford statistics of x, shifted by a pivot.
//   NormalizeOp  training: y = act(((x - pivot) - shifted_mean) * scale + beta [+ z]),
//                scale = gamma * invstd, from the statistics kernel's coefficients.
//   InferenceOp  y = act((x - running_mean) * gamma / sqrt(running_var + eps) + beta [+ z]),
//                coefficients derived in the kernel: inference is a single launch.
// The fusions are template flags: RELU applies max(v, 0) (NaN stays NaN, as in
// PyTorch), ADD adds a second tensor z (a residual block's shortcut) before it.
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
// per-channel constant k). Shifting is exact in the variance (M2 does not move) and keeps
// the accumulated means near zero, so fp32 rounding stays relative to the spread of the
// data rather than to its mean: the error at |mean|/std = 1e4 falls by about that factor.
template <class T>
struct WelfordReducer {
  using State = Welford<float>;
  static constexpr int kInputs = 1;
  const T* in[3];          // x
  int64_t channel_stride;  // offset of channel c's first value is c * channel_stride
  ForwardTrainingArgs args;

  __device__ __forceinline__ float channel_constant(int64_t c) const { return to_float(in[0][c * channel_stride]); }
  __device__ __forceinline__ State empty() const { return welford_empty<float>(); }
  template <int K>
  __device__ __forceinline__ void add(State& s, float pivot, const float (&v)[3][K]) const {
    float d[K];
#pragma unroll
    for (int i = 0; i < K; ++i) d[i] = v[0][i] - pivot;
    s = welford_merge(s, welford_of_chunk<float, K>(d));
  }
  __device__ __forceinline__ State merge(const State& a, const State& b) const { return welford_merge(a, b); }
  // The channel's coefficients for NormalizeOp; the saved and running statistics are
  // written only by the one caller per channel that passes write_outputs.
  __device__ float4 finish(int64_t c, State s, float pivot, bool write_outputs) const {
    const float shifted_mean = s.mean;
    s.mean += pivot;
    const ChannelStats st = finalize_stats<float>(s, args.eps);
    const float g = args.gamma ? args.gamma[c] : 1.0f;
    const float b = args.beta ? args.beta[c] : 0.0f;
    if (write_outputs) {
      if (args.save_mean) args.save_mean[c] = st.mean;
      if (args.save_invstd) args.save_invstd[c] = st.invstd;
      if (args.running_mean) {
        args.running_mean[c] = blend_running(args.running_mean[c], st.mean, args.momentum);
        args.running_var[c] = blend_running(args.running_var[c], st.var_unbiased, args.momentum);
      }
    }
    return make_float4(pivot, shifted_mean, g * st.invstd, b);
  }
};

// The activation epilogue shared by the forward ops. ReLU keeps NaN (v < 0 is false).
template <bool RELU, bool ADD>
__device__ __forceinline__ float epilogue(float v, float z) {
  if constexpr (ADD) v += z;
  if constexpr (RELU) v = v < 0.0f ? 0.0f : v;
  return v;
}

// y = epilogue(((x - k.x) - k.y) * k.z + k.w): in[0] = x, in[1] = z when ADD.
template <class T, bool RELU = false, bool ADD = false>
struct NormalizeOp {
  static constexpr int kInputs = ADD ? 2 : 1;
  static constexpr int kOutputs = 1;
  const T* in[3];
  T* out[2];
  const float4* coefs;  // {pivot, shifted_mean, scale, beta}
  __device__ __forceinline__ float4 coef(int64_t c) const { return coefs[c]; }
  __device__ __forceinline__ void apply(const float (&v)[3], const float4& k, float (&o)[2]) const {
    o[0] = epilogue<RELU, ADD>(fmaf((v[0] - k.x) - k.y, k.z, k.w), v[1]);
  }
};

template <class T, bool RELU = false, bool ADD = false>
struct InferenceOp {
  static constexpr int kInputs = ADD ? 2 : 1;
  static constexpr int kOutputs = 1;
  const T* in[3];
  T* out[2];
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
  __device__ __forceinline__ void apply(const float (&v)[3], const float4& k, float (&o)[2]) const {
    o[0] = epilogue<RELU, ADD>(fmaf((v[0] - k.x) - k.y, k.z, k.w), v[1]);
  }
};

}  // namespace bnorm::kern
