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

// The channel of vector v: 32-bit fast divisors below 2^31 vectors, else plain
// division (index.cuh).
struct MapIndex32 {
  __device__ __forceinline__ static int64_t channel(const MapGeometry& g, int64_t v) {
    return vector_channel(static_cast<uint32_t>(v), g.hw_div, g.c_div);
  }
};

struct MapIndex64 {
  __device__ __forceinline__ static int64_t channel(const MapGeometry& g, int64_t v) {
    return vector_channel(v, g.hw_vec, g.c_total);
  }
};

// Op concept:
//   static constexpr int kInputs;            1 to 3 tensors, in[0..kInputs)
//   static constexpr int kOutputs;           1 or 2 tensors, out[0..kOutputs); out[1]
//                                            may be null (not wanted, not written)
//   const T* in[3]; T* out[2];               T the storage type (vec_io.cuh)
//   __device__ float4 coef(int64_t c) const;                          per-channel constants
//   __device__ void apply(const float (&v)[3], const float4& k, float (&o)[2]) const;
template <class Op, int VEC>
__device__ __forceinline__ void apply_vec(const Op& op, const float (&in)[3][VEC], const float4& k,
                                          float (&out)[2][VEC]) {
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    const float v[3] = {in[0][i], in[1][i], in[2][i]};
    float o[2] = {0.0f, 0.0f};
    op.apply(v, k, o);
    out[0][i] = o[0];
    out[1][i] = o[1];
  }
}

template <class Op, int VEC>
__device__ __forceinline__ void store_outputs(const Op& op, int64_t off, const float (&out)[2][VEC]) {
  store_stream<VEC>(op.out[0] + off, out[0]);
  if constexpr (Op::kOutputs == 2) {
    if (op.out[1]) store_stream<VEC>(op.out[1] + off, out[1]);
  }
}

template <int THREADS, int VEC, int UNROLL, class Op, class Index>
__global__ void __launch_bounds__(THREADS) channel_map_kernel(Op op, MapGeometry g) {
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
      float out[2][VEC];
      apply_vec<Op, VEC>(op, in[u], op.coef(Index::channel(g, v + u * stride)), out);
      store_outputs<Op, VEC>(op, (v + u * stride) * VEC, out);
    }
  }
  for (; v < g.vec_count; v += stride) {
    float in[3][VEC] = {};
#pragma unroll
    for (int j = 0; j < Op::kInputs; ++j) load_stream<VEC>(op.in[j] + v * VEC, in[j]);
    float out[2][VEC];
    apply_vec<Op, VEC>(op, in, op.coef(Index::channel(g, v)), out);
    store_outputs<Op, VEC>(op, v * VEC, out);
  }
}

}  // namespace bnorm::kern
