// The channels-last engine: a tensor seen as R rows of C contiguous channels (NHWC,
// and the (N, C) matrices of fully connected layers), a channel's values a column.
//   rows_reduce_kernel  per-channel reduction over the rows (a Reducer, as in
//                       channel_reduce.cuh), S CTAs per channel block merged by the
//                       last CTA's ticket;
//   rows_map_kernel     elementwise pass with per-channel coefficients (an Op, as in
//                       channel_map.cuh).
// Layout of a CTA: `lanes` threads across channels (VEC channels each, so a warp's
// access is one coalesced run of the row) times THREADS/lanes threads down the rows.
// Each thread keeps one state per channel it owns; the CTA merges its rows in shared
// memory in a fixed order. The elementwise pass keeps each thread on the same channels,
// so their coefficients are loaded once, not per value. Only .cu files include this.
#pragma once

#include "launch_common.cuh"

namespace bnorm::kern {

struct RowsGeometry {
  int64_t rows;  // n*h*w
  int64_t c;     // channels per row
  int lanes;     // threads across channels (a power of two, <= 32)
};

// Rows in flight per thread before arithmetic.
constexpr int kRowUnroll = 4;

template <int THREADS, int VEC, class Reducer>
__global__ void __launch_bounds__(THREADS)
    rows_reduce_kernel(Reducer red, RowsGeometry g, ReduceWorkspace ws) {
  using State = typename Reducer::State;
  constexpr int U = kRowUnroll;
  __shared__ State partial[THREADS / 2][VEC];
  __shared__ bool is_last;

  const int tx = threadIdx.x % g.lanes, ty = threadIdx.x / g.lanes, ty_count = THREADS / g.lanes;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * g.lanes + tx) * VEC;
  const bool owner = c0 < g.c;  // C % VEC == 0, so all VEC channels exist
  const int split = blockIdx.y, splits = gridDim.y;

  float k[VEC];
  State st[VEC];
#pragma unroll
  for (int i = 0; i < VEC; ++i) {
    k[i] = owner ? red.channel_constant(c0 + i) : 0.0f;
    st[i] = red.empty();
  }
  if (owner) {
    const int64_t stride = static_cast<int64_t>(splits) * ty_count;
    int64_t r = static_cast<int64_t>(split) * ty_count + ty;
    for (; r + (U - 1) * stride < g.rows; r += U * stride) {
      float in[3][U][VEC] = {};
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int j = 0; j < Reducer::kInputs; ++j) load_vec<VEC>(red.in[j] + (r + u * stride) * g.c + c0, in[j][u]);
      // Each channel's U values form a chunk of its column.
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        float col[3][U];
#pragma unroll
        for (int j = 0; j < 3; ++j)
#pragma unroll
          for (int u = 0; u < U; ++u) col[j][u] = in[j][u][i];
        red.template add<U>(st[i], k[i], col);
      }
    }
    for (; r < g.rows; r += stride) {
      float in[3][VEC] = {};
#pragma unroll
      for (int j = 0; j < Reducer::kInputs; ++j) load_vec<VEC>(red.in[j] + r * g.c + c0, in[j]);
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        const float col[3][1] = {{in[0][i]}, {in[1][i]}, {in[2][i]}};
        red.template add<1>(st[i], k[i], col);
      }
    }
  }
  // A fixed tree over the CTA's rows (deterministic, like everything here): the upper
  // half hands its states to the lower half until row 0 holds the CTA's total. Half the
  // states at a time keeps shared memory within 24 KB.
  for (int h = ty_count / 2; h >= 1; h /= 2) {
    if (ty >= h && ty < 2 * h)
#pragma unroll
      for (int i = 0; i < VEC; ++i) partial[(ty - h) * g.lanes + tx][i] = st[i];
    __syncthreads();
    if (ty < h)
#pragma unroll
      for (int i = 0; i < VEC; ++i) st[i] = red.merge(st[i], partial[ty * g.lanes + tx][i]);
    __syncthreads();
  }
  const State (&total)[VEC] = st;
  if (splits == 1) {
    if (ty == 0 && owner)
#pragma unroll
      for (int i = 0; i < VEC; ++i) ws.coef[c0 + i] = red.finish(c0 + i, total[i], k[i], true);
    return;
  }

  State* partials = static_cast<State*>(ws.partials);
  if (ty == 0 && owner) {
#pragma unroll
    for (int i = 0; i < VEC; ++i) partials[(c0 + i) * splits + split] = total[i];
    __threadfence();  // publish before the ticket (threadFenceReduction pattern)
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned int ticket = atomicAdd(&ws.tickets[blockIdx.x], 1u);
    is_last = ticket == static_cast<unsigned int>(splits - 1);
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  if (ty == 0 && owner) {
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const State* p = partials + (c0 + i) * splits;
      State m = load_partial(p);
      for (int s = 1; s < splits; ++s) m = red.merge(m, load_partial(p + s));
      ws.coef[c0 + i] = red.finish(c0 + i, m, k[i], true);
    }
  }
  if (threadIdx.x == 0) ws.tickets[blockIdx.x] = 0u;
}

// Op concept as in channel_map.cuh; coef(c) is read once per channel per thread.
template <int THREADS, int VEC, class Op>
__global__ void __launch_bounds__(THREADS) rows_map_kernel(Op op, RowsGeometry g) {
  constexpr int U = kRowUnroll;
  const int tx = threadIdx.x % g.lanes, ty = threadIdx.x / g.lanes, ty_count = THREADS / g.lanes;
  const int64_t c0 = (static_cast<int64_t>(blockIdx.x) * g.lanes + tx) * VEC;
  if (c0 >= g.c) return;
  float4 k[VEC];
#pragma unroll
  for (int i = 0; i < VEC; ++i) k[i] = op.coef(c0 + i);

  const int64_t stride = static_cast<int64_t>(gridDim.y) * ty_count;
  int64_t r = static_cast<int64_t>(blockIdx.y) * ty_count + ty;
  // Each element has its own channel here, so apply_vec's one-coefficient form does not
  // fit: the loop applies k[i] to element i.
  auto apply_row = [&](const float (&in)[3][VEC], float (&out)[2][VEC]) {
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float v[3] = {in[0][i], in[1][i], in[2][i]};
      float o[2] = {0.0f, 0.0f};
      op.apply(v, k[i], o);
      out[0][i] = o[0];
      out[1][i] = o[1];
    }
  };
  for (; r + (U - 1) * stride < g.rows; r += U * stride) {
    float in[U][3][VEC] = {};
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int j = 0; j < Op::kInputs; ++j) load_stream<VEC>(op.in[j] + (r + u * stride) * g.c + c0, in[u][j]);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float out[2][VEC];
      apply_row(in[u], out);
      store_outputs<Op, VEC>(op, (r + u * stride) * g.c + c0, out);
    }
  }
  for (; r < g.rows; r += stride) {
    float in[3][VEC] = {}, out[2][VEC];
#pragma unroll
    for (int j = 0; j < Op::kInputs; ++j) load_stream<VEC>(op.in[j] + r * g.c + c0, in[j]);
    apply_row(in, out);
    store_outputs<Op, VEC>(op, r * g.c + c0, out);
  }
}

inline RowsGeometry rows_geometry(const Shape& s, const Policy& p) {
  RowsGeometry g;
  g.rows = s.m();
  g.c = s.c;
  g.lanes = nhwc_lanes(s, p);
  return g;
}

inline int64_t channel_blocks(const RowsGeometry& g, int vec) {
  const int64_t per_block = int64_t{g.lanes} * vec;
  return (g.c + per_block - 1) / per_block;
}

template <int THREADS, int VEC, class Op>
cudaError_t launch_rows_map(const Op& op, const Shape& s, const Policy& p, const Device& d, cudaStream_t stream) {
  const RowsGeometry g = rows_geometry(s, p);
  const int64_t cblocks = channel_blocks(g, VEC);
  const int64_t ty_count = THREADS / g.lanes;
  const int64_t wave = static_cast<int64_t>(d.sm_count) * (d.max_threads_per_sm / THREADS);
  const int64_t wanted = (g.rows + ty_count * kRowUnroll - 1) / (ty_count * kRowUnroll);
  const int64_t ry = std::clamp<int64_t>(std::min(wanted, (wave + cblocks - 1) / cblocks), 1, 65535);
  rows_map_kernel<THREADS, VEC, Op><<<dim3(static_cast<unsigned>(cblocks), static_cast<unsigned>(ry)), THREADS, 0,
                                      stream>>>(op, g);
  return cudaGetLastError();
}

template <int THREADS, int VEC, class Reducer>
cudaError_t launch_rows_reduce(const Reducer& red, const Shape& s, const Policy& p, const ReduceWorkspace& ws,
                               cudaStream_t stream) {
  const RowsGeometry g = rows_geometry(s, p);
  const int64_t cblocks = channel_blocks(g, VEC);
  rows_reduce_kernel<THREADS, VEC, Reducer>
      <<<dim3(static_cast<unsigned>(cblocks), static_cast<unsigned>(p.splits)), THREADS, 0, stream>>>(red, g, ws);
  return cudaGetLastError();
}

}  // namespace bnorm::kern
