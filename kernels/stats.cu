// Forward training, two passes over x: per-channel Welford statistics, then normalize.
//
// Variants (dispatch names):
//   two_pass_block  statistics with one CTA per channel (splits = 1), then normalize.
//   two_pass_split  statistics with S CTAs per channel merged by the last CTA, then
//                   normalize; for few channels.
// Either way two launches and 3S bytes moved (x twice, y once); the single-pass
// persistent kernels are what reach the 2S floor.
//
// The statistics kernel also finishes the channel in its last CTA: saved mean/invstd,
// the running-statistics blend, and the {mean, scale, beta} coefficients the
// normalize pass reads, so no third launch exists.

#include "launch_common.cuh"
#include "normalize.cuh"
#include "welford.cuh"

namespace bnorm::kern {
namespace {

// Accumulates Welford states of (x - pivot), pivot being the channel's first value.
// Shifting is exact in the variance (M2 does not move) and keeps the accumulated
// means near zero, so fp32 rounding stays relative to the spread of the data rather
// than to its mean: the error at |mean|/std = 1e4 falls by about that factor.
struct WelfordReducer {
  using State = Welford<float>;
  static constexpr int kInputs = 1;
  const float* in0;
  const float* in1;  // unused
  int64_t hw;
  ForwardTrainingArgs args;
  float pivot;

  __device__ __forceinline__ void begin(int64_t c) { pivot = in0[c * hw]; }
  __device__ __forceinline__ State empty() const { return welford_empty<float>(); }
  template <int K>
  __device__ __forceinline__ void add(State& s, const float (&a)[K], const float (&)[K]) const {
    float v[K];
#pragma unroll
    for (int i = 0; i < K; ++i) v[i] = a[i] - pivot;
    s = welford_merge(s, welford_of_chunk<float, K>(v));
  }
  __device__ __forceinline__ State merge(const State& a, const State& b) const {
    return welford_merge(a, b);
  }
  __device__ void finish(int64_t c, State s, float4* coef) const {
    const float shifted_mean = s.mean;
    s.mean += pivot;
    const ChannelStats st = finalize_stats<float>(s, args.eps);
    if (args.save_mean) args.save_mean[c] = st.mean;
    if (args.save_invstd) args.save_invstd[c] = st.invstd;
    if (args.running_mean) {
      args.running_mean[c] = blend_running(args.running_mean[c], st.mean, args.momentum);
      args.running_var[c] = blend_running(args.running_var[c], st.var_unbiased, args.momentum);
    }
    const float g = args.gamma ? args.gamma[c] : 1.0f;
    const float b = args.beta ? args.beta[c] : 0.0f;
    coef[c] = make_float4(pivot, shifted_mean, g * st.invstd, b);
  }
};

}  // namespace

size_t two_pass_workspace_bytes(const Shape& s, const Policy& p) {
  // The backward's state (two sums) is smaller than Welford's: one layout serves both.
  return ReduceWorkspace::bytes(s.c, p.splits, sizeof(Welford<float>));
}

bool policy_compiled(const Policy& p) {
  return with_policy(p, [](auto, auto) { return cudaSuccess; }) == cudaSuccess;
}

cudaError_t forward_training_two_pass(const Shape& s, const Policy& p, const Device& d,
                                      const ForwardTrainingArgs& a, const Workspace& w,
                                      cudaStream_t stream) {
  const ReduceWorkspace ws = ReduceWorkspace::carve(w.ptr, s.c, p.splits, sizeof(Welford<float>));
  return with_policy(p, [&](auto T, auto V) {
    constexpr int kThreads = decltype(T)::value;
    constexpr int kVec = decltype(V)::value;
    WelfordReducer red{a.x, nullptr, s.hw, a, 0.0f};
    cudaError_t e = launch_reduce<kThreads, kVec>(red, s, p.splits, ws, stream);
    if (e != cudaSuccess) return e;
    NormalizeOp op{a.x, nullptr, a.y, ws.coef};
    return launch_map<kThreads, kVec>(op, s, d, stream);
  });
}

cudaError_t forward_inference(const Shape& s, const Policy& p, const Device& d,
                              const ForwardInferenceArgs& a, cudaStream_t stream) {
  return with_policy(p, [&](auto T, auto V) {
    InferenceOp op{a.x, nullptr, a.y, a.gamma, a.beta, a.running_mean, a.running_var, a.eps};
    return launch_map<decltype(T)::value, decltype(V)::value>(op, s, d, stream);
  });
}

}  // namespace bnorm::kern
