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
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kThreads = decltype(T)::value;
    constexpr int kVec = decltype(V)::value;
    const E* in[3] = {static_cast<const E*>(a.dy), static_cast<const E*>(a.x), static_cast<const E*>(a.y)};
    return with_relu(a.relu, [&](auto R) {
      constexpr bool kRelu = decltype(R)::value;
      BackwardReducer<E, kRelu> red{{in[0], in[1], in[2]}, s.m(), a};
      cudaError_t err = launch_reduce<kThreads, kVec>(red, s, p.splits, ws, stream);
      if (err != cudaSuccess) return err;
      DxOp<E, kRelu> op{{in[0], in[1], in[2]}, {static_cast<E*>(a.dx), static_cast<E*>(a.dz)}, ws.coef};
      return launch_map<kThreads, kVec>(op, s, d, stream);
    });
  });
}

}  // namespace bnorm::kern
