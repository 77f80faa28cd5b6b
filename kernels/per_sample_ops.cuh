// The reducers and ops of the per-sample norms (launch_per_sample.hpp), batch norm's own
// with other constants and endings where the math is the same:
//   SampleStatsReducer  forward's shifted Welford reduction (WelfordReducer) over a row;
//                       finishes with the saved statistics and {pivot, shifted_mean,
//                       invstd, -} for the elementwise pass.
//   GroupGradReducer    backward's two sums (BackwardReducer) over one channel of one
//                       sample, around its group's mean; the group and the channel are
//                       combined afterwards (per_sample.cu).
//   SampleNormalizeOp   y = ((x - pivot) - shifted_mean) * invstd * gamma_f + beta_f.
//   SampleDxOp          dx = invstd * (gamma_f*dy - sum(g)/L - (x - mean)*invstd^2*sum(g*(x - mean))/L)
//                       with g = gamma_f*dy, from {mean, invstd, sum(g)/L,
//                       invstd^2*sum(g*(x - mean))/L} per row.
// As in batch norm, differences are taken before scaling (forward_ops.cuh says why).
#pragma once

#include "backward_ops.cuh"
#include "forward_ops.cuh"

namespace bnorm::kern {

template <class T>
struct SampleStatsReducer : WelfordReducer<T> {
  float eps;
  float* save_mean;  // per row, may be null
  float* save_invstd;
  __device__ float4 finish(int64_t r, Welford<float> s, float pivot, bool write_outputs) const {
    const float shifted_mean = s.mean;
    s.mean += pivot;
    const ChannelStats st = finalize_stats<float>(s, eps);
    if (write_outputs) {
      if (save_mean) save_mean[r] = st.mean;
      if (save_invstd) save_invstd[r] = st.invstd;
    }
    return make_float4(pivot, shifted_mean, st.invstd, 0.0f);
  }
};

// Rows are (sample, channel) pairs n*c + c_i; (n*c + c_i) / channels_per_group is the
// group's row n*groups + c_i/channels_per_group.
template <class T>
struct GroupGradReducer : BackwardReducer<T, false> {
  int64_t channels_per_group;
  __device__ __forceinline__ float channel_constant(int64_t row) const {
    return this->args.save_mean[row / channels_per_group];
  }
  // {sum(dy), sum(dy * (x - mean))} for the combining kernel.
  __device__ float4 finish(int64_t, const GradSums& s, float, bool) const {
    return make_float4(s.dy, s.dy_xc, 0.0f, 0.0f);
  }
};

// The affine feature of value i of a vector whose first value has feature f.
__device__ __forceinline__ int64_t value_feature(int64_t f, int i, bool per_value) { return per_value ? f + i : f; }

template <class T>
struct SampleNormalizeOp {
  static constexpr int kInputs = 1;
  static constexpr int kOutputs = 1;
  const T* in[3];
  T* out[2];
  const float4* row_coefs;  // {pivot, shifted_mean, invstd, -}
  const float* gamma;       // may be null: 1
  const float* beta;        // may be null: 0
  bool per_value;           // affine_stride == 1
  __device__ __forceinline__ float4 coef(int64_t r) const { return row_coefs[r]; }
  template <int VEC>
  __device__ __forceinline__ void apply(const float (&v)[3][VEC], const float4& k, int64_t f,
                                        float (&o)[2][VEC]) const {
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const int64_t fi = value_feature(f, i, per_value);
      const float g = gamma ? gamma[fi] : 1.0f;
      const float b = beta ? beta[fi] : 0.0f;
      o[0][i] = fmaf(((v[0][i] - k.x) - k.y) * k.z, g, b);
    }
  }
};

template <class T>
struct SampleDxOp {
  static constexpr int kInputs = 2;
  static constexpr int kOutputs = 1;
  const T* in[3];  // dy, x
  T* out[2];       // dx
  const float4* row_coefs;  // {mean, invstd, sum(g)/L, invstd^2 * sum(g*(x - mean))/L}
  const float* gamma;
  bool per_value;
  __device__ __forceinline__ float4 coef(int64_t r) const { return row_coefs[r]; }
  template <int VEC>
  __device__ __forceinline__ void apply(const float (&v)[3][VEC], const float4& k, int64_t f,
                                        float (&o)[2][VEC]) const {
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float g = gamma ? gamma[value_feature(f, i, per_value)] : 1.0f;
      o[0][i] = k.y * (fmaf(g, v[0][i], -k.z) - (v[1][i] - k.x) * k.w);
    }
  }
};

}  // namespace bnorm::kern
