// Backward, two passes over (x, dy): per-channel sums, then dx.
//
// Variants (dispatch names):
//   two_pass_block  sums with one CTA per channel, then dx.
//   two_pass_split  sums with S CTAs per channel merged by the last CTA, then dx.
// Two launches and 5S bytes moved (x and dy twice, dx once); the floor is 3S.
// The math is in backward_ops.cuh.

#include "backward_ops.cuh"
#include "launch_common.cuh"

namespace bnorm::kern {

cudaError_t backward_two_pass(const Shape& s, const Policy& p, const Device& d,
                              const BackwardArgs& a, const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = ReduceWorkspace::carve(w, s.c, p.splits, sizeof(Welford<float>));
  return with_policy(p, [&](auto T, auto V) {
    constexpr int kThreads = decltype(T)::value;
    constexpr int kVec = decltype(V)::value;
    BackwardReducer red{a.dy, a.x, s.m(), a, 0.0f};
    cudaError_t e = launch_reduce<kThreads, kVec>(red, s, p.splits, ws, stream);
    if (e != cudaSuccess) return e;
    DxOp op{a.dy, a.x, a.dx, ws.coef};
    return launch_map<kThreads, kVec>(op, s, d, stream);
  });
}

}  // namespace bnorm::kern
