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
// The tile: 24 values per thread in registers and 48 in shared memory, shared by the
// inputs held (x; dy and x; dy, x and y for a fused ReLU), 512 threads, two CTAs per SM:
// a CTA holds 144 KB of x and the H100's 132 SMs about 38 MB per round.

#include <cooperative_groups.h>

#include <atomic>

#include <cub/warp/warp_reduce.cuh>

#include "backward_ops.cuh"
#include "forward_ops.cuh"
#include "launch_common.cuh"

namespace cg = cooperative_groups;

namespace bnorm::kern {
namespace {

constexpr int kCtasPerSm = 2;

// One thread count: 512 threads, two CTAs per SM (64 registers each). 256 threads
// measured no better on the H100 (bench/NOTES.md) and doubled the compile.
constexpr int kThreads = 512;

// Values per thread per input: the register tile, 24 of the 64 registers, which leaves
// room for the shared-memory half's loads in flight without spills (ptxas -v). Scalar
// loads keep half as many: each needs its own index arithmetic.
constexpr int elems_for(int threads, int inputs, int vec) {
  return (threads == kThreads ? 24 : 0) / inputs / vec * vec / (vec == 1 ? 2 : 1);
}

// Values per thread per input in shared memory, the second part of the tile: 96 KB per
// CTA, so two CTAs fill the SM's 228 KB with the static temporaries beside them. More on
// chip is fewer rounds, and each round costs a barrier and a pipeline drain.
constexpr int smem_elems_for(int threads, int inputs, int vec) {
  return (threads == kThreads ? 48 : 0) / inputs / vec * vec;
}

template <int THREADS, int VEC, class Reducer>
constexpr int kRegItems = elems_for(THREADS, Reducer::kInputs, VEC) / VEC;
template <int THREADS, int VEC, class Reducer>
constexpr int kSmemItems = smem_elems_for(THREADS, Reducer::kInputs, VEC) / VEC;
template <int THREADS, int VEC, class Reducer>
constexpr size_t kSmemBytes = sizeof(float) * static_cast<size_t>(kSmemItems<THREADS, VEC, Reducer>) *
                              Reducer::kInputs * THREADS * VEC;

// Vector k of the thread's tile: items [0, RITEMS) live in registers, the rest in shared
// memory at [k - RITEMS][input][thread] (a warp's 16-byte stores are contiguous: no bank
// conflicts).
template <int THREADS, int VEC, int RITEMS, int SITEMS, class Reducer, class MapOp>
__global__ void __launch_bounds__(THREADS, kCtasPerSm)
    persistent_kernel(Reducer red, MapOp op, ChannelGeometry g, PersistentPlan plan,
                      typename Reducer::State* partials) {
  using State = typename Reducer::State;
  using BlockReduce = cub::BlockReduce<State, THREADS>;
  using WarpReduce = cub::WarpReduce<State>;
  // The tile holds the reducer's inputs; the elementwise op's further inputs (a fused
  // add's z) are read when the outputs are written.
  constexpr int kHeld = Reducer::kInputs;
  constexpr int kItems = RITEMS + SITEMS;
  static_assert(MapOp::kInputs >= kHeld, "the op reads what the reducer read, and more");
  __shared__ typename BlockReduce::TempStorage block_tmp;
  __shared__ typename WarpReduce::TempStorage warp_tmp;
  __shared__ float4 coef;
  extern __shared__ float4 smem_tile_raw[];
  float* smem_tile = reinterpret_cast<float*>(smem_tile_raw);
  auto smem_at = [&](int k, int j) {
    return smem_tile + ((static_cast<size_t>(k - RITEMS) * kHeld + j) * THREADS + threadIdx.x) * VEC;
  };
  auto merge = [&](const State& x, const State& y) { return red.merge(x, y); };

  cg::grid_group grid = cg::this_grid();
  const int S = plan.splits;
  const int s = blockIdx.x % S;
  const int64_t stride = static_cast<int64_t>(S) * THREADS;
  const int64_t first = static_cast<int64_t>(s) * THREADS + threadIdx.x;

  for (int64_t round = 0; round < plan.rounds; ++round) {
    const int64_t c = round * plan.channels_per_round + blockIdx.x / S;
    const bool active = c < g.c_total;  // the last round may have fewer channels

    float tile[RITEMS > 0 ? RITEMS : 1][kHeld][VEC];
    State st = red.empty();
    const float kc = active ? red.channel_constant(c) : 0.0f;
    if (active) {
      // Registers first: RITEMS independent loads per input in flight. Read once:
      // streaming loads keep L2 for the partials and the next round.
#pragma unroll
      for (int k = 0; k < RITEMS; ++k) {
        const int64_t v = first + k * stride;
        if (v < g.vec_count) {
          const int64_t off = Index32::template offset<VEC>(g, c, v);
#pragma unroll
          for (int j = 0; j < kHeld; ++j) load_stream<VEC>(red.in[j] + off, tile[k][j]);
        }
      }
      // Then the shared-memory part, two vectors at a time through registers.
      constexpr int kBatch = 2;
#pragma unroll
      for (int k0 = RITEMS; k0 < kItems; k0 += kBatch) {
        float t[kBatch][kHeld][VEC];
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
          const int64_t v = first + (k0 + b) * stride;
          if (k0 + b < kItems && v < g.vec_count) {
            const int64_t off = Index32::template offset<VEC>(g, c, v);
#pragma unroll
            for (int j = 0; j < kHeld; ++j) load_stream<VEC>(red.in[j] + off, t[b][j]);
          }
        }
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
          if (k0 + b < kItems && first + (k0 + b) * stride < g.vec_count) {
            float v3[3][VEC] = {};
#pragma unroll
            for (int j = 0; j < kHeld; ++j) {
#pragma unroll
              for (int i = 0; i < VEC; ++i) {
                v3[j][i] = t[b][j][i];
                smem_at(k0 + b, j)[i] = t[b][j][i];
              }
            }
            red.template add<VEC>(st, kc, v3);
          }
        }
      }
#pragma unroll
      for (int k = 0; k < RITEMS; ++k) {
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
      for (int k = 0; k < kItems; ++k) {
        const int64_t v = first + k * stride;
        if (v < g.vec_count) {
          const int64_t off = Index32::template offset<VEC>(g, c, v);
          float in[3][VEC] = {};
#pragma unroll
          for (int j = 0; j < 3; ++j) {
            if (j < kHeld) {
              if (k < RITEMS) {
#pragma unroll
                for (int i = 0; i < VEC; ++i) in[j][i] = tile[k < RITEMS ? k : 0][j < kHeld ? j : 0][i];
              } else {
                const float* p = smem_at(k, j < kHeld ? j : 0);
#pragma unroll
                for (int i = 0; i < VEC; ++i) in[j][i] = p[i];
              }
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
constexpr auto kernel_of() {
  return &persistent_kernel<THREADS, VEC, kRegItems<THREADS, VEC, Reducer>, kSmemItems<THREADS, VEC, Reducer>,
                            Reducer, MapOp>;
}

// Raises the kernel's dynamic shared memory limit past the default 48 KB, once per
// instantiation and device.
template <int THREADS, int VEC, class Reducer, class MapOp>
cudaError_t prepare_kernel(int dev) {
  static std::atomic<bool> done[64];  // atomic: handles on several threads (resident_ctas)
  if (dev < 0 || dev >= 64) return cudaErrorInvalidDevice;
  if (done[dev].load(std::memory_order_acquire)) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(kernel_of<THREADS, VEC, Reducer, MapOp>(),
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(kSmemBytes<THREADS, VEC, Reducer>));
  if (e == cudaSuccess) done[dev].store(true, std::memory_order_release);
  return e;
}

template <int THREADS, int VEC, class Reducer, class MapOp>
cudaError_t launch_persistent(const Reducer& red, const MapOp& op, const Shape& s, const Policy& p,
                              const Workspace& w, cudaStream_t stream) {
  const int resident = persistent_resident_ctas(p, s.dtype, Reducer::kInputs);
  PersistentPlan plan;
  if (resident <= 0 || !persistent_plan(s, p, resident, Reducer::kInputs, &plan)) return cudaErrorInvalidConfiguration;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = prepare_kernel<THREADS, VEC, Reducer, MapOp>(dev);
  if (e != cudaSuccess) return e;
  // A channel that fits on chip has far fewer than 2^31 vectors: the 32-bit index holds.
  ChannelGeometry g = channel_geometry(s, VEC);
  auto* partials = static_cast<typename Reducer::State*>(w.scratch);
  void* args[] = {const_cast<Reducer*>(&red), const_cast<MapOp*>(&op), &g, &plan, &partials};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel_of<THREADS, VEC, Reducer, MapOp>()),
                                     dim3(plan.grid), dim3(THREADS), args, kSmemBytes<THREADS, VEC, Reducer>, stream);
}

template <class F>
cudaError_t with_persistent_policy(const Policy& p, DType t, F&& f) {
  return with_dtype(t, [&](auto e) -> cudaError_t {
    constexpr int W = kWide<decltype(e)>;
    if (p.threads != kThreads) return cudaErrorInvalidConfiguration;
    if (p.vec == W) return f(e, Int<kThreads>{}, Int<W>{});
    if (p.vec == 1) return f(e, Int<kThreads>{}, Int<1>{});
    return cudaErrorInvalidConfiguration;
  });
}

// Occupancy of one instantiation on the current device, cached per device: the
// cooperative launch needs the exact co-resident count.
template <int THREADS, int VEC, class Reducer, class MapOp>
int resident_ctas() {
  // Per device ordinal; 0 = not yet known. Atomic: handles on different threads ask at
  // once (bnorm.h lets them), and may both fill an entry, with the same value.
  static std::atomic<int> cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    cudaGetLastError();
    return 0;
  }
  const int known = cache[dev].load(std::memory_order_relaxed);
  if (known > 0) return known;
  int per_sm = 0, sms = 0;
  if (prepare_kernel<THREADS, VEC, Reducer, MapOp>(dev) != cudaSuccess ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel_of<THREADS, VEC, Reducer, MapOp>(), THREADS,
                                                    kSmemBytes<THREADS, VEC, Reducer>) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  cache[dev].store(per_sm * sms, std::memory_order_relaxed);
  return per_sm * sms;
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
  return p.threads * (elems_for(p.threads, inputs, p.vec) / p.vec + smem_elems_for(p.threads, inputs, p.vec) / p.vec);
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
