// The ops of the backward pass, with xc = x - mean, xhat = xc * invstd, per channel
// over M values:
//   dbeta = sum(dy), dgamma = invstd * sum(dy * xc)
//   dx = a*dy + b*xc + c0,  a = gamma*invstd, b = -a*invstd*dgamma/M, c0 = -a*dbeta/M
// which is DESIGN.md's dx = gamma*invstd/M * (M*dy - dbeta - xhat*dgamma), arranged so
// the elementwise pass is two FMAs and keeps x - mean explicit (no cancellation of
// large means).
//   BackwardReducer  the two per-channel sums (channel_reduce_kernel, persistent kernel)
//   DxOp             dx from {mean, a, b, c0} (channel_map_kernel, persistent kernel)
// Fused forms: with RELU the gradient entering batch norm is g = dy where y > 0, else 0
// (the forward's output y gives the mask, as PyTorch's threshold_backward); inputs are
// then (dy, x, y). A fused add passes g on unchanged as the residual's gradient dz
// (DxOp's second output, written when its pointer is set).
#pragma once

#include <cuda_runtime.h>

#include "launch.hpp"
#include "vec_io.cuh"

namespace bnorm::kern {

struct GradSums {
  float dy;
  float dy_xc;
};

// The gradient reaching batch norm from dy (and y, for a fused ReLU).
template <bool RELU>
__device__ __forceinline__ float masked_grad(float dy, float y) {
  if constexpr (RELU) return y > 0.0f ? dy : 0.0f;
  return dy;
}

template <class T, bool RELU = false>
struct BackwardReducer {
  using State = GradSums;
  static constexpr int kInputs = RELU ? 3 : 2;
  const T* in[3];  // dy, x, y
  int64_t m;
  BackwardArgs args;

  // The per-channel constant is the saved mean.
  __device__ __forceinline__ float channel_constant(int64_t c) const { return args.save_mean[c]; }
  __device__ __forceinline__ State empty() const { return GradSums{0.0f, 0.0f}; }
  template <int K>
  __device__ __forceinline__ void add(State& s, float mean, const float (&v)[3][K]) const {
    // Summing the chunk first, then adding it, makes the per-thread sum pairwise-like.
    float a = 0.0f, b = 0.0f;
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const float g = masked_grad<RELU>(v[0][i], v[2][i]);
      a += g;
      b = fmaf(g, v[1][i] - mean, b);
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

// dx from {mean, a, b, c0}: in = (dy, x[, y]); out = (dx, dz).
template <class T, bool RELU = false>
struct DxOp {
  static constexpr int kInputs = RELU ? 3 : 2;
  static constexpr int kOutputs = 2;
  const T* in[3];
  T* out[2];
  const float4* coefs;
  __device__ __forceinline__ float4 coef(int64_t c) const { return coefs[c]; }
  __device__ __forceinline__ void apply(const float (&v)[3], const float4& k, float (&o)[2]) const {
    const float g = masked_grad<RELU>(v[0], v[2]);
    o[0] = fmaf(k.y, g, fmaf(k.z, v[1] - k.x, k.w));
    o[1] = g;
  }
};

}  // namespace bnorm::kern
