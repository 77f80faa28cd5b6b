// Elementwise passes over NCHW with per-channel coefficients: the normalize of forward
// training and inference, and the dx of backward. One template, parameterised by an Op
// (how a vector of outputs is made from a vector of inputs and its channel) and by the
// launch policy.
//
// Variants (the policy's `vec`):
//   vec = 4  16-byte loads and stores; needs hw % 4 == 0 and 16-byte aligned pointers.
//   vec = 1  scalar; any shape and alignment.
// The grid is a fixed wave of CTAs striding over the tensor, each thread keeping
// UNROLL independent loads in flight. Inputs are read for the last time here and
// outputs are not read back by this op, so both go through the streaming cache hints
// (__ldcs/__stcs: evict-first, keep L2 for data that will be reused).
#pragma once

#include <cstdint>

#include "index.cuh"
#include "vec_io.cuh"

namespace bnorm::kern {

struct MapGeometry {
  int64_t c_total;    // C
  int64_t hw_vec;     // H*W / VEC
  int64_t vec_count;  // numel / VEC
  FastDivmod hw_div;  // divides by hw_vec (32-bit path)
  FastDivmod c_div;   // divides by C (32-bit path)
};

struct MapIndex32 {
  __device__ __forceinline__ static int64_t channel(const MapGeometry& g, int64_t v) {
    const uint32_t row = g.hw_div.div(static_cast<uint32_t>(v));
    uint32_t q, c;
    g.c_div.divmod(row, q, c);
    return c;
  }
};

struct MapIndex64 {
  __device__ __forceinline__ static int64_t channel(const MapGeometry& g, int64_t v) {
    return (v / g.hw_vec) % g.c_total;
  }
};

// Op concept:
//   static constexpr int kInputs;           1 or 2 (in0, in1)
//   const T* in0; const T* in1; T* out;      T the storage type (vec_io.cuh)
//   __device__ float4 coef(int64_t c) const;                  per-channel constants
//   __device__ float apply(float a, float b, const float4& k) const;
template <int THREADS, int VEC, int UNROLL, class Op, class Index>
__global__ void __launch_bounds__(THREADS) channel_map_kernel(Op op, MapGeometry g) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * THREADS;
  int64_t v = static_cast<int64_t>(blockIdx.x) * THREADS + threadIdx.x;

  for (; v + (UNROLL - 1) * stride < g.vec_count; v += UNROLL * stride) {
    float a[UNROLL][VEC], b[UNROLL][VEC];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      load_stream<VEC>(op.in0 + (v + u * stride) * VEC, a[u]);
      if constexpr (Op::kInputs == 2) load_stream<VEC>(op.in1 + (v + u * stride) * VEC, b[u]);
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const float4 k = op.coef(Index::channel(g, v + u * stride));
      float out[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) out[i] = op.apply(a[u][i], Op::kInputs == 2 ? b[u][i] : 0.0f, k);
      store_stream<VEC>(op.out + (v + u * stride) * VEC, out);
    }
  }
  for (; v < g.vec_count; v += stride) {
    float a[VEC], b[VEC];
    load_stream<VEC>(op.in0 + v * VEC, a);
    if constexpr (Op::kInputs == 2) load_stream<VEC>(op.in1 + v * VEC, b);
    const float4 k = op.coef(Index::channel(g, v));
    float out[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) out[i] = op.apply(a[i], Op::kInputs == 2 ? b[i] : 0.0f, k);
    store_stream<VEC>(op.out + v * VEC, out);
  }
}

}  // namespace bnorm::kern
