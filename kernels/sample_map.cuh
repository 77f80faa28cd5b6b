// The elementwise pass of the per-sample norms, the sibling of channel_map.cuh: there a
// value's coefficients belong to its channel; here to its row (one group of one sample,
// launch_per_sample.hpp) and to its affine feature (its channel for group and instance
// norm, its place in the sample for layer norm). Same grid (a wave of CTAs striding over
// the tensor), same UNROLL loads in flight, same streaming hints. Only .cu files include
// this.
//
// Vectors: VEC values of one row (row_len % VEC == 0) and either of one feature
// (affine_stride % VEC == 0) or of VEC consecutive features (affine_stride == 1).
#pragma once

#include <algorithm>
#include <cstdint>

#include "channel_map.cuh"
#include "index.cuh"
#include "launch_per_sample.hpp"
#include "vec_io.cuh"

namespace bnorm::kern {

struct SampleGeometry {
  int64_t row_len;        // L
  int64_t row_vecs;       // L / VEC
  int64_t vec_count;      // rows * L / VEC
  int64_t groups;         // G
  int64_t affine_stride;  // q
  FastDivmod row_div;     // by row_vecs (32-bit path)
  FastDivmod group_div;   // by G
  FastDivmod stride_div;  // by q; exact below 2^31, where every place in a sample is
                          // (dispatch requires c*h*w < 2^31)
};

inline SampleGeometry sample_geometry(const SampleShape& s, int vec) {
  SampleGeometry g;
  g.row_len = s.row_len();
  g.row_vecs = g.row_len / vec;
  g.vec_count = s.numel() / vec;
  g.groups = s.groups;
  g.affine_stride = s.affine_stride;
  g.row_div = FastDivmod(static_cast<uint32_t>(std::min<int64_t>(g.row_vecs, INT32_MAX)));
  g.group_div = FastDivmod(static_cast<uint32_t>(std::min<int64_t>(s.groups, INT32_MAX)));
  g.stride_div = FastDivmod(static_cast<uint32_t>(std::min<int64_t>(s.affine_stride, INT32_MAX)));
  return g;
}

// The feature of value j of row r: its place in the sample, divided by the stride.
__device__ __forceinline__ int64_t sample_feature(const SampleGeometry& g, uint32_t group, int64_t j) {
  return g.stride_div.div(static_cast<uint32_t>(group * g.row_len + j));
}

struct SamplePos {
  int64_t row;
  int64_t feature;  // of the vector's first value
};

// 32-bit path: vector indices below 2^31, divisions by multiply-high.
struct SampleIndex32 {
  template <int VEC>
  __device__ __forceinline__ static SamplePos pos(const SampleGeometry& g, int64_t v) {
    uint32_t r, jv, q, group;
    g.row_div.divmod(static_cast<uint32_t>(v), r, jv);
    g.group_div.divmod(r, q, group);
    return SamplePos{r, sample_feature(g, group, static_cast<int64_t>(jv) * VEC)};
  }
};

// 64-bit path: any size, plain division.
struct SampleIndex64 {
  template <int VEC>
  __device__ __forceinline__ static SamplePos pos(const SampleGeometry& g, int64_t v) {
    const int64_t r = v / g.row_vecs;
    const int64_t j = (v - r * g.row_vecs) * VEC;
    return SamplePos{r, sample_feature(g, static_cast<uint32_t>(r % g.groups), j)};
  }
};

// Op concept:
//   static constexpr int kInputs, kOutputs;   as in channel_map.cuh
//   const T* in[3]; T* out[2];
//   __device__ float4 coef(int64_t row) const;
//   template <int VEC> __device__ void apply(const float (&in)[3][VEC], const float4& k,
//                                            int64_t feature, float (&out)[2][VEC]) const;
template <int THREADS, int VEC, int UNROLL, class Op, class Index>
__global__ void __launch_bounds__(THREADS) sample_map_kernel(Op op, SampleGeometry g) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * THREADS;
  int64_t v = static_cast<int64_t>(blockIdx.x) * THREADS + threadIdx.x;

  for (; v + (UNROLL - 1) * stride < g.vec_count; v += UNROLL * stride) {
    float in[UNROLL][3][VEC] = {};
#pragma unroll
    for (int u = 0; u < UNROLL; ++u)
#pragma unroll
      for (int j = 0; j < Op::kInputs; ++j) load_stream<VEC>(op.in[j] + (v + u * stride) * VEC, in[u][j]);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const SamplePos p = Index::template pos<VEC>(g, v + u * stride);
      float out[2][VEC];
      op.template apply<VEC>(in[u], op.coef(p.row), p.feature, out);
      store_outputs<Op, VEC>(op, (v + u * stride) * VEC, out);
    }
  }
  for (; v < g.vec_count; v += stride) {
    float in[3][VEC] = {};
#pragma unroll
    for (int j = 0; j < Op::kInputs; ++j) load_stream<VEC>(op.in[j] + v * VEC, in[j]);
    const SamplePos p = Index::template pos<VEC>(g, v);
    float out[2][VEC];
    op.template apply<VEC>(in, op.coef(p.row), p.feature, out);
    store_outputs<Op, VEC>(op, v * VEC, out);
  }
}

}  // namespace bnorm::kern
