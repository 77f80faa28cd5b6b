// The reducers and ops of batch norm with given statistics (launch_given_stats.hpp),
// each batch norm's own reducer or op with another constant or another ending:
//   FrozenReducer    backward's two sums around the running mean; finishes with dgamma,
//                    dbeta and dx's coefficient gamma*invstd from the running variance.
//   DyScaleOp        dx = dy * k.y: the frozen backward's whole elementwise pass (x unread).
//   StatsOutReducer  forward's Welford reduction, its state written out per channel.
//   SumsOutReducer   backward's two sums, written out per channel.
//   FoldOp           weight * gamma / sqrt(running_var + eps), one output channel a row.
#pragma once

#include "backward_ops.cuh"
#include "forward_ops.cuh"

namespace bnorm::kern {

template <class T>
struct FrozenReducer : BackwardReducer<T, false> {
  const float* running_mean;
  const float* running_var;
  float eps;
  const float* gamma;
  float* dgamma;
  float* dbeta;

  __device__ __forceinline__ float channel_constant(int64_t c) const { return running_mean[c]; }
  // {mean, a, b, c0} for DxOp's form with b = c0 = 0: the statistics are constants.
  __device__ float4 finish(int64_t c, const GradSums& s, float mean, bool write_outputs) const {
    const float invstd = 1.0f / sqrtf(running_var[c] + eps);
    if (write_outputs && dgamma) dgamma[c] = s.dy_xc * invstd;
    if (write_outputs && dbeta) dbeta[c] = s.dy;
    const float g = gamma ? gamma[c] : 1.0f;
    return make_float4(mean, g * invstd, 0.0f, 0.0f);
  }
};

template <class T>
struct DyScaleOp {
  static constexpr int kInputs = 1;
  static constexpr int kOutputs = 1;
  const T* in[3];  // dy
  T* out[2];       // dx
  const float4* coefs;
  __device__ __forceinline__ float4 coef(int64_t c) const { return coefs[c]; }
  __device__ __forceinline__ void apply(const float (&v)[3], const float4& k, float (&o)[2]) const {
    o[0] = v[0] * k.y;
  }
};

template <class T>
struct StatsOutReducer : WelfordReducer<T> {
  float* out;  // 3 floats per channel: count, mean, M2
  __device__ float4 finish(int64_t c, Welford<float> s, float pivot, bool write_outputs) const {
    s.mean += pivot;
    if (write_outputs) {
      out[3 * c] = s.count;
      out[3 * c + 1] = s.mean;
      out[3 * c + 2] = s.m2;
    }
    return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
};

template <class T>
struct SumsOutReducer : BackwardReducer<T, false> {
  float* out;  // 2 floats per channel: sum(dy), sum(dy * (x - mean))
  __device__ float4 finish(int64_t c, const GradSums& s, float, bool write_outputs) const {
    if (write_outputs) {
      out[2 * c] = s.dy;
      out[2 * c + 1] = s.dy_xc;
    }
    return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
};

template <class T>
struct FoldOp {
  static constexpr int kInputs = 1;
  static constexpr int kOutputs = 1;
  const T* in[3];  // weight
  T* out[2];       // weight_out
  const float* gamma;
  const float* running_var;
  float eps;
  __device__ __forceinline__ float4 coef(int64_t o) const {
    const float g = gamma ? gamma[o] : 1.0f;
    return make_float4(0.0f, 0.0f, g / sqrtf(running_var[o] + eps), 0.0f);
  }
  __device__ __forceinline__ void apply(const float (&v)[3], const float4& k, float (&o)[2]) const {
    o[0] = v[0] * k.z;
  }
};

}  // namespace bnorm::kern
