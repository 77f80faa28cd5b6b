// Batch norm with given statistics (launch_given_stats.hpp): frozen batch norm's backward
// and the four passes of synchronized batch norm, on the NCHW engine
// (channel_reduce.cuh, channel_map.cuh) or the channels-last one (rows.cuh).
//
// Variants (dispatch names, registered per operation in dispatch_toolbox.cpp):
//   two_pass_block, two_pass_split, nhwc_two_pass   frozen backward: the two sums (one or
//                  S CTAs per channel, or down the rows), then dx. With neither dgamma nor
//                  dbeta wanted, a per-channel kernel replaces the reduction and x is
//                  never read: dx alone moves 2S.
//   reduce_block, reduce_split, nhwc_reduce   synchronized batch norm's local reductions
//                  (the Welford states, the backward's sums): one pass over the input.
//   normalize, nhwc_normalize   synchronized batch norm's forward and backward: a
//                  per-channel kernel turns the global statistics into coefficients,
//                  then one elementwise pass.
// Every reducer and op is batch norm's own with another constant or ending
// (given_stats_ops.cuh), so the numerics are those of the plain calls.

#include "given_stats_ops.cuh"
#include "launch_common.cuh"
#include "launch_given_stats.hpp"
#include "rows.cuh"

namespace bnorm::kern {
namespace {

constexpr int kChannelThreads = 256;

unsigned channel_grid(int64_t c) { return static_cast<unsigned>((c + kChannelThreads - 1) / kChannelThreads); }

template <class Reducer>
__global__ void __launch_bounds__(kChannelThreads)
    finish_without_data_kernel(Reducer red, int64_t c, float4* coef) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kChannelThreads + threadIdx.x;
  if (i < c) coef[i] = red.finish(i, GradSums{0.0f, 0.0f}, red.channel_constant(i), false);
}

// The forward's coefficients {0, mean, gamma*invstd, beta} from the global states, through
// WelfordReducer's own ending (pivot 0). Running statistics only where the whole batch
// has two values or more.
__global__ void __launch_bounds__(kChannelThreads)
    sync_forward_coef_kernel(SyncForwardArgs a, int64_t c, float4* coef) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kChannelThreads + threadIdx.x;
  if (i >= c) return;
  const Welford<float> s{a.global_stats[3 * i], a.global_stats[3 * i + 1], a.global_stats[3 * i + 2]};
  const bool blend = s.count >= 2.0f;
  const ForwardTrainingArgs fa{nullptr,     nullptr,     a.gamma, a.beta, a.momentum, a.eps,
                               blend ? a.running_mean : nullptr,
                               blend ? a.running_var : nullptr,
                               a.save_mean, a.save_invstd, nullptr, false};
  const WelfordReducer<float> red{{nullptr}, 0, fa};
  coef[i] = red.finish(i, s, 0.0f, true);
}

// dgamma, dbeta and {mean, a, b, c0} from the global sums, through BackwardReducer's own
// ending with M the global count.
__global__ void __launch_bounds__(kChannelThreads)
    sync_backward_coef_kernel(SyncBackwardArgs a, int64_t c, float4* coef) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kChannelThreads + threadIdx.x;
  if (i >= c) return;
  BackwardArgs ba{};
  ba.gamma = a.gamma;
  ba.save_mean = a.save_mean;
  ba.save_invstd = a.save_invstd;
  ba.dgamma = a.dgamma;
  ba.dbeta = a.dbeta;
  // A global batch of no values has no dx to scale; 1 keeps the unused coefficients finite.
  const int64_t m = a.global_stats[3 * i] >= 1.0f ? static_cast<int64_t>(a.global_stats[3 * i]) : 1;
  const BackwardReducer<float, false> red{{nullptr, nullptr, nullptr}, m, ba};
  coef[i] = red.finish(i, GradSums{a.global_sums[2 * i], a.global_sums[2 * i + 1]}, a.save_mean[i], true);
}

__global__ void __launch_bounds__(kChannelThreads)
    sync_merge_kernel(int64_t c, int64_t ranks, const float* gathered, float* global) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kChannelThreads + threadIdx.x;
  if (i >= c) return;
  Welford<float> m = welford_empty<float>();
  for (int64_t r = 0; r < ranks; ++r) {
    const float* p = gathered + (r * c + i) * 3;
    m = welford_merge(m, Welford<float>{p[0], p[1], p[2]});
  }
  global[3 * i] = m.count;
  global[3 * i + 1] = m.mean;
  global[3 * i + 2] = m.m2;
}

// The reduction of either engine.
template <int THREADS, int VEC, class Reducer>
cudaError_t reduce(bool rows, const Reducer& red, const Shape& s, const Policy& p, const ReduceWorkspace& ws,
                   cudaStream_t stream) {
  return rows ? launch_rows_reduce<THREADS, VEC>(red, s, p, ws, stream)
              : launch_reduce<THREADS, VEC>(red, s, p.splits, ws, stream);
}

// The elementwise pass of either engine.
template <int THREADS, int VEC, class Op>
cudaError_t map(bool rows, const Op& op, const Shape& s, const Policy& p, const Device& d, cudaStream_t stream) {
  return rows ? launch_rows_map<THREADS, VEC>(op, s, p, d, stream) : launch_map<THREADS, VEC>(op, s, d, stream);
}

ReduceWorkspace carve(const Workspace& w, const Shape& s, const Policy& p) {
  return ReduceWorkspace::carve(w, s.c, p.splits, sizeof(Welford<float>));
}

}  // namespace

cudaError_t frozen_backward(const Shape& s, bool rows, const Policy& p, const Device& d,
                            const FrozenBackwardArgs& a, const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = carve(w, s, p);
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const E* dy = static_cast<const E*>(a.dy);
    const E* x = static_cast<const E*>(a.x);
    BackwardArgs unused{};
    const FrozenReducer<E> red{{{dy, x, nullptr}, s.m(), unused}, a.running_mean, a.running_var, a.eps,
                               a.gamma, a.dgamma, a.dbeta};
    cudaError_t err;
    if (a.dgamma || a.dbeta) {
      err = reduce<kT, kV>(rows, red, s, p, ws, stream);
    } else {
      finish_without_data_kernel<<<channel_grid(s.c), kChannelThreads, 0, stream>>>(red, s.c, ws.coef);
      err = cudaGetLastError();
    }
    if (err != cudaSuccess) return err;
    const DyScaleOp<E> op{{dy}, {static_cast<E*>(a.dx)}, ws.coef};
    return map<kT, kV>(rows, op, s, p, d, stream);
  });
}

cudaError_t sync_local_stats(const Shape& s, bool rows, const Policy& p, const SyncLocalStatsArgs& a,
                             const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = carve(w, s, p);
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    const E* x = static_cast<const E*>(a.x);
    // The pivot of channel c is its first value: x[c * hw] in NCHW, x[c] in rows.
    const StatsOutReducer<E> red{{{x}, rows ? 1 : s.hw, ForwardTrainingArgs{}}, a.local_stats};
    return reduce<decltype(T)::value, decltype(V)::value>(rows, red, s, p, ws, stream);
  });
}

cudaError_t sync_forward(const Shape& s, bool rows, const Policy& p, const Device& d, const SyncForwardArgs& a,
                         const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = carve(w, s, p);
  sync_forward_coef_kernel<<<channel_grid(s.c), kChannelThreads, 0, stream>>>(a, s.c, ws.coef);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || s.n == 0) return err;
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    const NormalizeOp<E> op{{static_cast<const E*>(a.x)}, {static_cast<E*>(a.y)}, ws.coef};
    return map<decltype(T)::value, decltype(V)::value>(rows, op, s, p, d, stream);
  });
}

cudaError_t sync_backward_sums(const Shape& s, bool rows, const Policy& p, const SyncBackwardSumsArgs& a,
                               const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = carve(w, s, p);
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    BackwardArgs ba{};
    ba.save_mean = a.save_mean;  // the reducer's per-channel constant
    const SumsOutReducer<E> red{
        {{static_cast<const E*>(a.dy), static_cast<const E*>(a.x), nullptr}, s.m(), ba}, a.local_sums};
    return reduce<decltype(T)::value, decltype(V)::value>(rows, red, s, p, ws, stream);
  });
}

cudaError_t sync_backward(const Shape& s, bool rows, const Policy& p, const Device& d, const SyncBackwardArgs& a,
                          const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = carve(w, s, p);
  sync_backward_coef_kernel<<<channel_grid(s.c), kChannelThreads, 0, stream>>>(a, s.c, ws.coef);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || s.n == 0) return err;
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    const DxOp<E, false> op{{static_cast<const E*>(a.dy), static_cast<const E*>(a.x)},
                            {static_cast<E*>(a.dx), nullptr}, ws.coef};
    return map<decltype(T)::value, decltype(V)::value>(rows, op, s, p, d, stream);
  });
}

cudaError_t sync_merge_stats(int64_t c, int64_t ranks, const float* gathered, float* global_stats,
                             cudaStream_t stream) {
  sync_merge_kernel<<<channel_grid(c), kChannelThreads, 0, stream>>>(c, ranks, gathered, global_stats);
  return cudaGetLastError();
}

}  // namespace bnorm::kern
