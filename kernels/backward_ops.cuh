// The ops of the backward pass, with xc = x - mean, xhat = xc * invstd, per channel
// over M values:
//   dbeta = sum(dy), dgamma = invstd * sum(dy * xc)
//   dx = a*dy + b*xc + c0,  a = gamma*invstd, b = -a*invstd*dgamma/M, c0 = -a*dbeta/M
// which is DESIGN.md's dx = gamma*invstd/M * (M*dy - dbeta - xhat*dgamma), arranged so
// the elementwise pass is two FMAs and keeps x - mean explicit (no cancellation of
// large means).
//   BackwardReducer  the two per-channel sums (channel_reduce_kernel, persistent kernel)
//   DxOp             dx from {mean, a, b, c0} (channel_map_kernel, persistent kernel)
#pragma once

#include <cuda_runtime.h>

#include "launch.hpp"
#include "vec_io.cuh"

namespace bnorm::kern {

struct GradSums {
  float dy;
  float dy_xc;
};

template <class T>
struct BackwardReducer {
  using State = GradSums;
  static constexpr int kInputs = 2;
  const T* in0;  // dy
  const T* in1;  // x
  int64_t m;
  BackwardArgs args;

  // The per-channel constant is the saved mean.
  __device__ __forceinline__ float channel_constant(int64_t c) const { return args.save_mean[c]; }
  __device__ __forceinline__ State empty() const { return GradSums{0.0f, 0.0f}; }
  template <int K>
  __device__ __forceinline__ void add(State& s, float mean, const float (&dy)[K], const float (&x)[K]) const {
    // Summing the chunk first, then adding it, makes the per-thread sum pairwise-like.
    float a = 0.0f, b = 0.0f;
#pragma unroll
    for (int i = 0; i < K; ++i) {
      a += dy[i];
      b = fmaf(dy[i], x[i] - mean, b);
    }
    s.dy += a;
    s.dy_xc += b;
  }
  __device__ __forceinline__ State merge(const State& a, const State& b) const {
    return GradSums{a.dy + b.dy, a.dy_xc + b.dy_xc};
  }
  // The channel's coefficients for DxOp; dgamma and dbeta are written only by the one
  // caller per channel that passes write_outputs.
  __device__ float4 finish(int64_t c, const State& s, float mean, bool write_outputs) const {
    const float invstd = args.save_invstd[c];
    const float dbeta = s.dy;
    const float dgamma = s.dy_xc * invstd;
    if (write_outputs && args.dbeta) args.dbeta[c] = dbeta;
    if (write_outputs && args.dgamma) args.dgamma[c] = dgamma;
    const float g = args.gamma ? args.gamma[c] : 1.0f;
    const float a = g * invstd;
    const float inv_m = 1.0f / static_cast<float>(m);
    return make_float4(mean, a, -a * invstd * dgamma * inv_m, -a * dbeta * inv_m);
  }
};

// dx from {mean, a, b, c0}: in0 = dy, in1 = x.
template <class T>
struct DxOp {
  static constexpr int kInputs = 2;
  const T* in0;
  const T* in1;
  T* out;
  const float4* coefs;
  __device__ __forceinline__ float4 coef(int64_t c) const { return coefs[c]; }
  __device__ __forceinline__ float apply(float dy, float x, const float4& k) const {
    return fmaf(k.y, dy, fmaf(k.z, x - k.x, k.w));
  }
};

}  // namespace bnorm::kern
