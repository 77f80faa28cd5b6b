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
#include "forward_ops.cuh"
#include "welford.cuh"

namespace bnorm::kern {

size_t two_pass_workspace_bytes(const Shape& s, const Policy& p) {
  // The backward's state (two sums) is smaller than Welford's: one layout serves both.
  return ReduceWorkspace::scratch_bytes(s.c, p.splits, sizeof(Welford<float>));
}

bool policy_compiled(const Policy& p, DType t) {
  return with_policy(p, t, [](auto, auto, auto) { return cudaSuccess; }) == cudaSuccess;
}

cudaError_t forward_training_two_pass(const Shape& s, const Policy& p, const Device& d,
                                      const ForwardTrainingArgs& a, const Workspace& w,
                                      cudaStream_t stream) {
  const ReduceWorkspace ws = ReduceWorkspace::carve(w, s.c, p.splits, sizeof(Welford<float>));
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kThreads = decltype(T)::value;
    constexpr int kVec = decltype(V)::value;
    const E* x = static_cast<const E*>(a.x);
    WelfordReducer<E> red{{x}, s.hw, a};
    cudaError_t err = launch_reduce<kThreads, kVec>(red, s, p.splits, ws, stream);
    if (err != cudaSuccess) return err;
    return with_fusion(a.relu, a.z != nullptr, [&](auto R, auto A) {
      NormalizeOp<E, decltype(R)::value, decltype(A)::value> op{
          {x, static_cast<const E*>(a.z)}, {static_cast<E*>(a.y)}, ws.coef};
      return launch_map<kThreads, kVec>(op, s, d, stream);
    });
  });
}

cudaError_t forward_inference(const Shape& s, const Policy& p, const Device& d,
                              const ForwardInferenceArgs& a, cudaStream_t stream) {
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    return with_fusion(a.relu, a.z != nullptr, [&](auto R, auto A) {
      InferenceOp<E, decltype(R)::value, decltype(A)::value> op{
          {static_cast<const E*>(a.x), static_cast<const E*>(a.z)}, {static_cast<E*>(a.y)}, a.gamma, a.beta,
          a.running_mean, a.running_var, a.eps};
      return launch_map<decltype(T)::value, decltype(V)::value>(op, s, d, stream);
    });
  });
}

}  // namespace bnorm::kern
