// Group, instance and layer norm: the forward of all three and the backward of group and
// instance norm (launch_per_sample.hpp). Layer norm's backward, whose parameter
// gradients are column sums, is in layer_norm_backward.cu.
//
// Variants (dispatch names, registered in dispatch_toolbox.cpp):
//   sample_two_pass  forward: per-row Welford statistics on the channel_reduce engine
//                    (a row is a contiguous run of the tensor, like an NCHW channel of one
//                    sample), S CTAs per row when rows are few and long; then the
//                    elementwise pass (sample_map.cuh). 3S bytes moved. Any row length.
//   sample_fused     forward: one CTA per row, the row held in registers: statistics, then
//                    y from the registers. 2S bytes, one launch; rows up to
//                    sample_fused_capacity (16K values at 512 threads), which covers the
//                    transformer's layer norms and most groups of small feature maps.
//   group_two_pass   group and instance norm backward: the two sums of backward per
//                    (sample, channel) over h*w on the channel_reduce engine around the
//                    group's mean, S CTAs each; one small kernel combines them per group
//                    (dx's coefficients) and per channel over the batch (dgamma, dbeta);
//                    then dx. 5S bytes, three launches.

#include <cub/block/block_reduce.cuh>

#include "launch_common.cuh"
#include "per_sample_ops.cuh"
#include "sample_map.cuh"

namespace bnorm::kern {
namespace {

// Register tile of the fused kernels: values per thread and input. Scalar loads keep
// fewer, each needing its own address arithmetic.
template <int VEC>
constexpr int fused_items(int inputs) {
  return (VEC == 1 ? 16 : 32) / VEC / inputs;
}

template <int THREADS, int VEC, class Op>
cudaError_t launch_sample_map(const Op& op, const SampleShape& s, const Device& d, cudaStream_t stream) {
  const SampleGeometry g = sample_geometry(s, VEC);
  const int64_t wanted = (g.vec_count + THREADS - 1) / THREADS;
  const int64_t wave = static_cast<int64_t>(d.sm_count) * (d.max_threads_per_sm / THREADS);
  const unsigned grid = static_cast<unsigned>(std::max<int64_t>(1, std::min(wanted, wave)));
  constexpr int U = unroll_for<VEC>();
  if (fits_index32(g.vec_count))
    sample_map_kernel<THREADS, VEC, U, Op, SampleIndex32><<<grid, THREADS, 0, stream>>>(op, g);
  else
    sample_map_kernel<THREADS, VEC, U, Op, SampleIndex64><<<grid, THREADS, 0, stream>>>(op, g);
  return cudaGetLastError();
}

struct FusedForwardOut {
  float eps;
  float* save_mean;
  float* save_invstd;
};

// One CTA per row; thread t holds the row's vectors t, t + THREADS, ... in registers.
template <int THREADS, int VEC, int ITEMS, class T>
__global__ void __launch_bounds__(THREADS)
    sample_fused_forward_kernel(SampleNormalizeOp<T> op, FusedForwardOut out, SampleGeometry g) {
  using BlockReduce = cub::BlockReduce<Welford<float>, THREADS>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ float4 row_coef;
  const int64_t r = blockIdx.x;
  const T* x = op.in[0] + r * g.row_len;
  const float pivot = to_float(x[0]);

  float tile[ITEMS][3][VEC];
  float sum = 0.0f;
  int count = 0;
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int64_t v = threadIdx.x + static_cast<int64_t>(i) * THREADS;
    if (v < g.row_vecs) {
      load_stream<VEC>(x + v * VEC, tile[i][0]);  // read once
#pragma unroll
      for (int l = 0; l < VEC; ++l) sum += tile[i][0][l] - pivot;
      count += VEC;
    }
  }
  // The thread's own values in two passes over its registers (as welford_of_chunk), then
  // the CTA's Chan merge.
  Welford<float> st = welford_empty<float>();
  if (count > 0) {
    const float mean = sum / static_cast<float>(count);
    float m2 = 0.0f;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int64_t v = threadIdx.x + static_cast<int64_t>(i) * THREADS;
      if (v < g.row_vecs)
#pragma unroll
        for (int l = 0; l < VEC; ++l) {
          const float dv = (tile[i][0][l] - pivot) - mean;
          m2 = fmaf(dv, dv, m2);
        }
    }
    st = Welford<float>{static_cast<float>(count), mean, m2};
  }
  const Welford<float> total =
      BlockReduce(tmp).Reduce(st, [](const Welford<float>& a, const Welford<float>& b) { return welford_merge(a, b); });
  if (threadIdx.x == 0) {
    Welford<float> s = total;
    const float shifted_mean = s.mean;
    s.mean += pivot;
    const ChannelStats cs = finalize_stats<float>(s, out.eps);
    if (out.save_mean) out.save_mean[r] = cs.mean;
    if (out.save_invstd) out.save_invstd[r] = cs.invstd;
    row_coef = make_float4(pivot, shifted_mean, cs.invstd, 0.0f);
  }
  __syncthreads();
  const float4 k = row_coef;
  const uint32_t group = static_cast<uint32_t>(r % g.groups);
  T* y = op.out[0] + r * g.row_len;
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int64_t v = threadIdx.x + static_cast<int64_t>(i) * THREADS;
    if (v < g.row_vecs) {
      float o[2][VEC];
      op.template apply<VEC>(tile[i], k, sample_feature(g, group, v * VEC), o);
      store_stream<VEC>(y + v * VEC, o[0]);
    }
  }
}

// Combines the per-(sample, channel) sums {sum dy, sum dy*(x - mean)} (sums[n*c + c_i]):
// threads [0, n*groups) one per group into dx's row coefficients, threads
// [n*groups, n*groups + c) one per channel over the batch into dgamma and dbeta. Fixed
// loops: the result does not depend on the launch.
constexpr int kCombineThreads = 256;

__global__ void __launch_bounds__(kCombineThreads)
    group_combine_kernel(const float4* sums, SampleBackwardArgs a, int64_t n, int64_t c, int64_t groups, int64_t hw,
                         float4* row_coefs) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kCombineThreads + threadIdx.x;
  const int64_t cpg = c / groups;
  if (i < n * groups) {
    const int64_t sample = i / groups, g0 = (i % groups) * cpg;
    float sum_g = 0.0f, sum_g_xc = 0.0f;  // sum(gamma*dy), sum(gamma*dy*(x - mean))
    for (int64_t k = 0; k < cpg; ++k) {
      const float gm = a.gamma ? a.gamma[g0 + k] : 1.0f;
      const float4 s = sums[sample * c + g0 + k];
      sum_g = fmaf(gm, s.x, sum_g);
      sum_g_xc = fmaf(gm, s.y, sum_g_xc);
    }
    const float invstd = a.save_invstd[i];
    const float inv_l = 1.0f / static_cast<float>(cpg * hw);
    row_coefs[i] = make_float4(a.save_mean[i], invstd, sum_g * inv_l, invstd * invstd * sum_g_xc * inv_l);
  } else if (i < n * groups + c) {
    const int64_t ch = i - n * groups;
    float dgamma = 0.0f, dbeta = 0.0f;
    for (int64_t sample = 0; sample < n; ++sample) {
      const float4 s = sums[sample * c + ch];
      dgamma = fmaf(s.y, a.save_invstd[sample * groups + ch / cpg], dgamma);
      dbeta += s.x;
    }
    if (a.dgamma) a.dgamma[ch] = dgamma;
    if (a.dbeta) a.dbeta[ch] = dbeta;
  }
}

Shape rows_view(int64_t rows, int64_t len, DType t) { return Shape{1, rows, len, t}; }

}  // namespace

int64_t sample_fused_capacity(const Policy& p, int inputs) {
  const int items = p.vec == 1 ? fused_items<1>(inputs) : p.vec == 4 ? fused_items<4>(inputs) : fused_items<8>(inputs);
  return static_cast<int64_t>(p.threads) * items * p.vec;
}

size_t sample_forward_two_pass_workspace_bytes(const SampleShape& s, const Policy& p) {
  return ReduceWorkspace::scratch_bytes(s.rows(), p.splits, sizeof(Welford<float>));
}

cudaError_t sample_forward_two_pass(const SampleShape& s, const Policy& p, const Device& d,
                                    const SampleForwardArgs& a, const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = ReduceWorkspace::carve(w, s.rows(), p.splits, sizeof(Welford<float>));
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const E* x = static_cast<const E*>(a.x);
    // A row's pivot is its first value: x[r * row_len].
    const SampleStatsReducer<E> red{{{x}, s.row_len(), ForwardTrainingArgs{}}, a.eps, a.save_mean, a.save_invstd};
    cudaError_t err = launch_reduce<kT, kV>(red, rows_view(s.rows(), s.row_len(), s.dtype), p.splits, ws, stream);
    if (err != cudaSuccess) return err;
    const SampleNormalizeOp<E> op{{x}, {static_cast<E*>(a.y)}, ws.coef, a.gamma, a.beta, s.affine_stride == 1};
    return launch_sample_map<kT, kV>(op, s, d, stream);
  });
}

cudaError_t sample_forward_fused(const SampleShape& s, const Policy& p, const SampleForwardArgs& a,
                                 cudaStream_t stream) {
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const SampleNormalizeOp<E> op{{static_cast<const E*>(a.x)}, {static_cast<E*>(a.y)}, nullptr, a.gamma, a.beta,
                                  s.affine_stride == 1};
    sample_fused_forward_kernel<kT, kV, fused_items<kV>(1), E>
        <<<static_cast<unsigned>(s.rows()), kT, 0, stream>>>(op, FusedForwardOut{a.eps, a.save_mean, a.save_invstd},
                                                            sample_geometry(s, kV));
    return cudaGetLastError();
  });
}

size_t group_norm_backward_workspace_bytes(const SampleShape& s, const Policy& p) {
  return ReduceWorkspace::scratch_bytes(s.n * s.c, p.splits, sizeof(Welford<float>)) +
         ReduceWorkspace::align(sizeof(float4) * s.rows());
}

cudaError_t group_norm_backward(const SampleShape& s, const Policy& p, const Device& d,
                                const SampleBackwardArgs& a, const Workspace& w, cudaStream_t stream) {
  const int64_t pairs = s.n * s.c;  // (sample, channel) rows of hw values
  const ReduceWorkspace ws = ReduceWorkspace::carve(w, pairs, p.splits, sizeof(Welford<float>));
  float4* row_coefs = reinterpret_cast<float4*>(
      static_cast<char*>(w.scratch) + ReduceWorkspace::scratch_bytes(pairs, p.splits, sizeof(Welford<float>)));
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const E* dy = static_cast<const E*>(a.dy);
    const E* x = static_cast<const E*>(a.x);
    BackwardArgs ba{};
    ba.save_mean = a.save_mean;
    const GroupGradReducer<E> red{{{dy, x, nullptr}, s.hw, ba}, s.c / s.groups};
    cudaError_t err = launch_reduce<kT, kV>(red, rows_view(pairs, s.hw, s.dtype), p.splits, ws, stream);
    if (err != cudaSuccess) return err;
    const int64_t threads = s.rows() + s.c;
    group_combine_kernel<<<static_cast<unsigned>((threads + kCombineThreads - 1) / kCombineThreads),
                           kCombineThreads, 0, stream>>>(ws.coef, a, s.n, s.c, s.groups, s.hw, row_coefs);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    // h*w = 1: every value its own channel, consecutive within a vector.
    const SampleDxOp<E> op{{dy, x}, {static_cast<E*>(a.dx)}, row_coefs, a.gamma, s.affine_stride == 1};
    return launch_sample_map<kT, kV>(op, s, d, stream);
  });
}

}  // namespace bnorm::kern
