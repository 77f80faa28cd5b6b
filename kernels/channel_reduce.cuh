// Per-channel reductions over NCHW: the engine under forward statistics and the
// backward sums. One template, parameterised by a Reducer (what is accumulated and
// what happens with a channel's total) and by the launch policy.
//
// Variants (the policy's `splits`):
//   splits = 1  one CTA per channel: the CTA's block reduction is the channel's total.
//               Wins when C fills the GPU (C >= a wave of CTAs) and M is moderate.
//   splits = S  S CTAs per channel, each reducing an interleaved 1/S of the channel;
//               each writes its partial state to the workspace and the last CTA to
//               finish (an atomic ticket per channel) merges the S partials in index
//               order and finalises. Wins when C is small (LeNet: 6 or 16 channels),
//               where one CTA per channel leaves most SMs idle. Still one launch: no
//               separate merge kernel and no memset (the last CTA resets the ticket).
// The merge order is fixed by the CTA index, never by arrival, so results are bitwise
// repeatable from run to run.
#pragma once

#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "index.cuh"
#include "launch.hpp"
#include "vec_io.cuh"
#include "welford.cuh"

namespace bnorm::kern {

// A channel's values as VEC-wide vectors: vector v of channel c covers values
// [v*VEC, v*VEC + VEC) of the channel's flat range, which lie in one row because
// hw % VEC == 0 (the launcher checks).
struct ChannelGeometry {
  int64_t c_total;    // C
  int64_t hw;         // H*W
  int64_t vec_count;  // M / VEC vectors per channel
  FastDivmod hw_vec;  // hw / VEC, for the 32-bit index path
};

// 32-bit path: vector indices below 2^31, divisions by multiply-high (index.cuh).
struct Index32 {
  template <int VEC>
  __device__ __forceinline__ static int64_t offset(const ChannelGeometry& g, int64_t c,
                                                   int64_t v) {
    return channel_vector_offset(static_cast<uint32_t>(v), c, g.c_total, g.hw, VEC, g.hw_vec);
  }
};

// 64-bit path: any size, plain division (only for channels past 2^31 vectors).
struct Index64 {
  template <int VEC>
  __device__ __forceinline__ static int64_t offset(const ChannelGeometry& g, int64_t c,
                                                   int64_t v) {
    return channel_vector_offset(v, c, g.c_total, g.hw, VEC);
  }
};

// Reads a state another CTA wrote, past this SM's L1 (not coherent across SMs).
template <class State>
__device__ __forceinline__ State load_partial(const State* p) {
  static_assert(sizeof(State) % sizeof(float) == 0, "State must be a bundle of floats");
  constexpr int kWords = sizeof(State) / sizeof(float);
  State s;
  const float* src = reinterpret_cast<const float*>(p);
  float* dst = reinterpret_cast<float*>(&s);
#pragma unroll
  for (int i = 0; i < kWords; ++i) dst[i] = __ldcg(src + i);
  return s;
}

// How the two-pass launchers use the handle's workspace, in one place.
struct ReduceWorkspace {
  unsigned int* tickets;  // C counters, zero between launches
  void* partials;         // C * S states, in scratch
  float4* coef;           // C per-channel coefficients for the elementwise pass, in scratch

  static constexpr size_t align(size_t b) { return (b + 255) / 256 * 256; }
  static size_t scratch_bytes(int64_t c, int splits, size_t state_bytes) {
    return align(state_bytes * c * splits) + align(sizeof(float4) * c);
  }
  static ReduceWorkspace carve(const Workspace& w, int64_t c, int splits, size_t state_bytes) {
    char* p = static_cast<char*>(w.scratch);
    ReduceWorkspace r;
    r.tickets = w.tickets;
    r.partials = p;
    r.coef = reinterpret_cast<float4*>(p + align(state_bytes * c * splits));
    return r;
  }
};

// Reducer concept:
//   using State = ...;                               a bundle of floats
//   static constexpr int kInputs;                    1 to 3 tensors, in[0..kInputs)
//   const T* in[3];
//   __device__ float channel_constant(int64_t c) const;   k: a pivot or the saved mean
//   __device__ State empty() const;
//   template <int K> __device__ void add(State&, float k, const float (&v)[3][K]) const;
//   __device__ State merge(const State&, const State&) const;
//   __device__ float4 finish(int64_t c, const State&, float k, bool write_outputs) const;
template <int THREADS, int VEC, int UNROLL, class Reducer, class Index>
__global__ void __launch_bounds__(THREADS)
    channel_reduce_kernel(Reducer red, ChannelGeometry g, ReduceWorkspace ws) {
  using State = typename Reducer::State;
  constexpr int kChunk = VEC * UNROLL;
  const int64_t c = blockIdx.x;
  const int split = blockIdx.y;
  const int splits = gridDim.y;
  const float k = red.channel_constant(c);

  // Two levels per thread: chunks merge into `batch`, and every kBatchChunks chunks the
  // batch merges into `st`. One running state over millions of chunks (a channel past
  // ~1e8 values in one CTA) drifts: every merge rounds the running mean by up to half an
  // ulp, and the late increments are only a few ulps, so the roundings add up. A float32
  // emulation of two_pass_block t128 v1 on a 3e9-value channel (tests/test_cuda_large.cpp's
  // data) was off by 4% of a standard deviation in the mean and 3% in the variance; two
  // levels keep both under 1e-5. A thread with at most kBatchChunks chunks (a CTA's share
  // of a channel up to a million values, whatever the policy) computes bit for bit what a
  // single level did.
  constexpr int kBatchChunks = 1024;
  State st = red.empty(), batch = red.empty();
  int batched = 0;
  const int64_t stride = static_cast<int64_t>(splits) * THREADS;
  int64_t v = static_cast<int64_t>(split) * THREADS + threadIdx.x;

  // Main loop: UNROLL independent loads per input in flight before any arithmetic.
  for (; v + (UNROLL - 1) * stride < g.vec_count; v += UNROLL * stride) {
    float in[3][kChunk] = {};
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int64_t off = Index::template offset<VEC>(g, c, v + u * stride);
#pragma unroll
      for (int j = 0; j < Reducer::kInputs; ++j) {
        float t[VEC];
        load_vec<VEC>(red.in[j] + off, t);
#pragma unroll
        for (int i = 0; i < VEC; ++i) in[j][u * VEC + i] = t[i];
      }
    }
    red.template add<kChunk>(batch, k, in);
    if (++batched == kBatchChunks) {
      st = red.merge(st, batch);
      batch = red.empty();
      batched = 0;
    }
  }
  for (; v < g.vec_count; v += stride) {
    const int64_t off = Index::template offset<VEC>(g, c, v);
    float in[3][VEC] = {};
#pragma unroll
    for (int j = 0; j < Reducer::kInputs; ++j) load_vec<VEC>(red.in[j] + off, in[j]);
    red.template add<VEC>(batch, k, in);
  }
  st = red.merge(st, batch);

  using BlockReduce = cub::BlockReduce<State, THREADS>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ bool is_last;
  const State total =
      BlockReduce(tmp).Reduce(st, [&](const State& x, const State& y) { return red.merge(x, y); });

  if (splits == 1) {
    if (threadIdx.x == 0) ws.coef[c] = red.finish(c, total, k, true);
    return;
  }

  State* partials = static_cast<State*>(ws.partials) + c * splits;
  if (threadIdx.x == 0) {
    partials[split] = total;
    // Publish the partial before taking a ticket (CUDA's threadFenceReduction pattern).
    __threadfence();
    const unsigned int ticket = atomicAdd(&ws.tickets[c], 1u);
    is_last = (ticket == static_cast<unsigned int>(splits - 1));
  }
  __syncthreads();
  if (!is_last) return;
  if (threadIdx.x == 0) {
    __threadfence();
    State merged = load_partial(partials);
    for (int s = 1; s < splits; ++s) merged = red.merge(merged, load_partial(partials + s));
    ws.tickets[c] = 0u;  // ready for the next launch
    ws.coef[c] = red.finish(c, merged, k, true);
  }
}

}  // namespace bnorm::kern
