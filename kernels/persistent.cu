// Single-pass persistent batch norm over NCHW: x (and dy) read from memory once.
//
// Variants (dispatch names):
//   persistent  forward training: 2S bytes moved (x once, y once), the floor; backward:
//               3S (x and dy once, dx once). The two-pass kernels move 3S and 5S.
//
// How: one cooperative launch of G*S co-resident CTAs. In each round, S CTAs share a
// channel: each loads its interleaved slice of the channel into registers, reduces it
// (Welford for forward, the two sums for backward) and writes its partial state; a
// grid-wide barrier; then every CTA of the channel merges the S partials itself (in
// index order, so the result is bitwise repeatable and needs no second barrier) and
// writes its outputs from the registers it still holds. G channels run per round;
// tensors larger than the chip take ceil(C/G) rounds, each channel read once.
//
// Wins when the channel fits on chip (S <= resident CTAs): the saved pass outweighs a
// barrier per round. A channel larger than the whole chip's register budget falls back
// to the two-pass variants (why_not says so).
//
// Register budget: 32 values per thread at 512 threads (64 at 256), shared by the inputs
// held (x; dy and x; dy, x and y for a fused ReLU), two CTAs per SM (launch bounds): a
// 512-thread CTA holds 64 KB of x and the H100's 132 SMs about 17 MB per round.

#include <cooperative_groups.h>

#include <cub/warp/warp_reduce.cuh>

#include "backward_ops.cuh"
#include "forward_ops.cuh"
#include "launch_common.cuh"

namespace cg = cooperative_groups;

namespace bnorm::kern {
namespace {

constexpr int kCtasPerSm = 2;

// Values per thread per input: the register tile. Scalar loads keep half as many: each
// needs its own index arithmetic, and 32 of them spill at 64 registers (ptxas -v).
constexpr int elems_for(int threads, int inputs, int vec) {
  return (threads == 512 ? 32 : 64) / inputs / (vec == 1 ? 2 : 1);
}

template <int THREADS, int VEC, int ITEMS, class Reducer, class MapOp>
__global__ void __launch_bounds__(THREADS, kCtasPerSm)
    persistent_kernel(Reducer red, MapOp op, ChannelGeometry g, PersistentPlan plan,
                      typename Reducer::State* partials) {
  using State = typename Reducer::State;
  using BlockReduce = cub::BlockReduce<State, THREADS>;
  using WarpReduce = cub::WarpReduce<State>;
  // The tile holds the reducer's inputs; the elementwise op's further inputs (a fused
  // add's z) are read when the outputs are written.
  constexpr int kHeld = Reducer::kInputs;
  static_assert(MapOp::kInputs >= kHeld, "the op reads what the reducer read, and more");
  __shared__ typename BlockReduce::TempStorage block_tmp;
  __shared__ typename WarpReduce::TempStorage warp_tmp;
  __shared__ float4 coef;
  auto merge = [&](const State& x, const State& y) { return red.merge(x, y); };

  cg::grid_group grid = cg::this_grid();
  const int S = plan.splits;
  const int s = blockIdx.x % S;
  const int64_t stride = static_cast<int64_t>(S) * THREADS;
  const int64_t first = static_cast<int64_t>(s) * THREADS + threadIdx.x;

  for (int64_t round = 0; round < plan.rounds; ++round) {
    const int64_t c = round * plan.channels_per_round + blockIdx.x / S;
    const bool active = c < g.c_total;  // the last round may have fewer channels

    float tile[ITEMS][kHeld][VEC];
    State st = red.empty();
    const float kc = active ? red.channel_constant(c) : 0.0f;
    if (active) {
#pragma unroll
      for (int k = 0; k < ITEMS; ++k) {
        const int64_t v = first + k * stride;
        if (v < g.vec_count) {
          const int64_t off = Index32::template offset<VEC>(g, c, v);
          // Read once: streaming loads keep L2 for the partials and the next round.
#pragma unroll
          for (int j = 0; j < kHeld; ++j) load_stream<VEC>(red.in[j] + off, tile[k][j]);
        }
      }
#pragma unroll
      for (int k = 0; k < ITEMS; ++k) {
        if (first + k * stride < g.vec_count) {
          float v3[3][VEC] = {};
#pragma unroll
          for (int j = 0; j < kHeld; ++j)
#pragma unroll
            for (int i = 0; i < VEC; ++i) v3[j][i] = tile[k][j][i];
          red.template add<VEC>(st, kc, v3);
        }
      }
    }
    const State total = BlockReduce(block_tmp).Reduce(st, merge);
    if (active && threadIdx.x == 0) partials[c * S + s] = total;

    grid.sync();  // every partial of this round is written (and visible: the sync fences)

    if (active) {
      if (threadIdx.x < 32) {
        State acc = red.empty();
        for (int i = threadIdx.x; i < S; i += 32) acc = red.merge(acc, load_partial(partials + c * S + i));
        acc = WarpReduce(warp_tmp).Reduce(acc, merge);
        if (threadIdx.x == 0) coef = red.finish(c, acc, kc, /*write_outputs=*/s == 0);
      }
      __syncthreads();
      const float4 k4 = coef;
#pragma unroll
      for (int k = 0; k < ITEMS; ++k) {
        const int64_t v = first + k * stride;
        if (v < g.vec_count) {
          const int64_t off = Index32::template offset<VEC>(g, c, v);
          float in[3][VEC] = {};
#pragma unroll
          for (int j = 0; j < 3; ++j) {
            if (j < kHeld) {
#pragma unroll
              for (int i = 0; i < VEC; ++i) in[j][i] = tile[k][j < kHeld ? j : 0][i];
            } else if (j < MapOp::kInputs) {
              load_stream<VEC>(op.in[j] + off, in[j]);
            }
          }
          float out[2][VEC];
          apply_vec<MapOp, VEC>(op, in, k4, out);
          store_outputs<MapOp, VEC>(op, off, out);
        }
      }
    }
    __syncthreads();  // shared temporaries are reused next round
  }
}

template <int THREADS, int VEC, class Reducer, class MapOp>
cudaError_t launch_persistent(const Reducer& red, const MapOp& op, const Shape& s, const Policy& p,
                              const Workspace& w, cudaStream_t stream) {
  constexpr int kItems = elems_for(THREADS, Reducer::kInputs, VEC) / VEC;
  const int resident = persistent_resident_ctas(p, s.dtype, Reducer::kInputs);
  PersistentPlan plan;
  if (resident <= 0 || !persistent_plan(s, p, resident, Reducer::kInputs, &plan)) return cudaErrorInvalidConfiguration;
  // A channel that fits on chip has far fewer than 2^31 vectors: the 32-bit index holds.
  ChannelGeometry g = channel_geometry(s, VEC);
  auto* partials = static_cast<typename Reducer::State*>(w.scratch);
  void* args[] = {const_cast<Reducer*>(&red), const_cast<MapOp*>(&op), &g, &plan, &partials};
  const void* fn = reinterpret_cast<const void*>(&persistent_kernel<THREADS, VEC, kItems, Reducer, MapOp>);
  return cudaLaunchCooperativeKernel(fn, dim3(plan.grid), dim3(THREADS), args, 0, stream);
}

// The persistent kernels' compiled (dtype, threads, vec) triples.
template <class F>
cudaError_t with_persistent_policy(const Policy& p, DType t, F&& f) {
  return with_dtype(t, [&](auto e) -> cudaError_t {
    constexpr int W = kWide<decltype(e)>;
    if (p.vec == W && p.threads == 256) return f(e, Int<256>{}, Int<W>{});
    if (p.vec == W && p.threads == 512) return f(e, Int<512>{}, Int<W>{});
    if (p.vec == 1 && p.threads == 256) return f(e, Int<256>{}, Int<1>{});
    if (p.vec == 1 && p.threads == 512) return f(e, Int<512>{}, Int<1>{});
    return cudaErrorInvalidConfiguration;
  });
}

// Occupancy of one instantiation on the current device, cached per device: the
// cooperative launch needs the exact co-resident count.
template <int THREADS, int VEC, class Reducer, class MapOp>
int resident_ctas() {
  constexpr int kItems = elems_for(THREADS, Reducer::kInputs, VEC) / VEC;
  static int cache[64] = {};  // per device ordinal; 0 = not yet known
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    return 0;
  }
  if (cache[dev] > 0) return cache[dev];
  int per_sm = 0, sms = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_kernel<THREADS, VEC, kItems, Reducer, MapOp>,
                                                    THREADS, 0) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  cache[dev] = per_sm * sms;
  return cache[dev];
}

}  // namespace

int persistent_resident_ctas(const Policy& p, DType t, int inputs) {
  int r = 0;
  const cudaError_t e = with_persistent_policy(p, t, [&](auto el, auto T, auto V) {
    using E = decltype(el);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    switch (inputs) {
      case 1: r = resident_ctas<kT, kV, WelfordReducer<E>, NormalizeOp<E>>(); break;
      case 2: r = resident_ctas<kT, kV, BackwardReducer<E, false>, DxOp<E, false>>(); break;
      case 3: r = resident_ctas<kT, kV, BackwardReducer<E, true>, DxOp<E, true>>(); break;
    }
    return cudaSuccess;
  });
  return e == cudaSuccess ? r : 0;
}

int persistent_vectors_per_cta(const Policy& p, int inputs) {
  return p.threads * (elems_for(p.threads, inputs, p.vec) / p.vec);
}

bool persistent_plan(const Shape& s, const Policy& p, int resident, int inputs, PersistentPlan* out) {
  const int64_t vectors = s.m() / p.vec;
  const int64_t per_cta = persistent_vectors_per_cta(p, inputs);
  if (per_cta <= 0) return false;
  const int64_t min_splits = (vectors + per_cta - 1) / per_cta;
  if (p.splits < min_splits || p.splits > resident || p.splits < 1) return false;
  PersistentPlan plan;
  plan.splits = p.splits;
  plan.channels_per_round = static_cast<int>(std::min<int64_t>(s.c, resident / p.splits));
  plan.rounds = (s.c + plan.channels_per_round - 1) / plan.channels_per_round;
  plan.grid = plan.channels_per_round * plan.splits;
  *out = plan;
  return true;
}

size_t persistent_workspace_bytes(const Shape& s, const Policy& p) {
  return sizeof(Welford<float>) * static_cast<size_t>(s.c) * static_cast<size_t>(p.splits);
}

cudaError_t forward_training_persistent(const Shape& s, const Policy& p, const ForwardTrainingArgs& a,
                                        const Workspace& w, cudaStream_t stream) {
  return with_persistent_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    const E* x = static_cast<const E*>(a.x);
    WelfordReducer<E> red{{x}, s.hw, a};
    return with_fusion(a.relu, a.z != nullptr, [&](auto R, auto A) {
      NormalizeOp<E, decltype(R)::value, decltype(A)::value> op{{x, static_cast<const E*>(a.z)},
                                                                {static_cast<E*>(a.y)}, nullptr};
      return launch_persistent<decltype(T)::value, decltype(V)::value>(red, op, s, p, w, stream);
    });
  });
}

cudaError_t backward_persistent(const Shape& s, const Policy& p, const BackwardArgs& a, const Workspace& w,
                                cudaStream_t stream) {
  return with_persistent_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    const E* in[3] = {static_cast<const E*>(a.dy), static_cast<const E*>(a.x), static_cast<const E*>(a.y)};
    return with_relu(a.relu, [&](auto R) {
      constexpr bool kRelu = decltype(R)::value;
      BackwardReducer<E, kRelu> red{{in[0], in[1], in[2]}, s.m(), a};
      DxOp<E, kRelu> op{{in[0], in[1], in[2]}, {static_cast<E*>(a.dx), static_cast<E*>(a.dz)}, nullptr};
      return launch_persistent<decltype(T)::value, decltype(V)::value>(red, op, s, p, w, stream);
    });
  });
}

}  // namespace bnorm::kern
