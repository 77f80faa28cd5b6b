// Channels-last (NHWC) batch norm, and the (N, C) matrices of fully connected layers
// (NCHW with h*w = 1 is the same layout): the tensor is R = n*h*w rows of C contiguous
// channels, and a channel's values are a column.
//
// Variants (dispatch names):
//   nhwc_two_pass  forward training and backward: column reduction, then the
//                  elementwise pass; 3S and 5S bytes moved.
//   nhwc_normalize inference: one elementwise pass.
//
// The kernels are the row engine of rows.cuh with batch norm's reducers and ops.

#include "backward_ops.cuh"
#include "forward_ops.cuh"
#include "launch_common.cuh"
#include "rows.cuh"

namespace bnorm::kern {

int nhwc_lanes(const Shape& s, const Policy& p) {
  // Enough lanes to cover the row's vectors, at most a warp: a warp then reads up to
  // 32 * 16 bytes of one row.
  const int64_t vectors = (s.c + p.vec - 1) / p.vec;
  int lanes = 1;
  while (lanes < 32 && lanes < vectors && lanes < p.threads) lanes *= 2;
  return lanes;
}

cudaError_t nhwc_forward_training(const Shape& s, const Policy& p, const Device& d, const ForwardTrainingArgs& a,
                                  const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = ReduceWorkspace::carve(w, s.c, p.splits, sizeof(Welford<float>));
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const E* x = static_cast<const E*>(a.x);
    // Row 0 holds every channel's first value: the pivot of channel c is x[c].
    WelfordReducer<E> red{{x}, 1, a};
    cudaError_t err = launch_rows_reduce<kT, kV>(red, s, p, ws, stream);
    if (err != cudaSuccess) return err;
    return with_fusion(a.relu, a.z != nullptr, [&](auto R, auto A) {
      NormalizeOp<E, decltype(R)::value, decltype(A)::value> op{
          {x, static_cast<const E*>(a.z)}, {static_cast<E*>(a.y)}, ws.coef};
      return launch_rows_map<kT, kV>(op, s, p, d, stream);
    });
  });
}

cudaError_t nhwc_forward_inference(const Shape& s, const Policy& p, const Device& d, const ForwardInferenceArgs& a,
                                   cudaStream_t stream) {
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    return with_fusion(a.relu, a.z != nullptr, [&](auto R, auto A) {
      InferenceOp<E, decltype(R)::value, decltype(A)::value> op{
          {static_cast<const E*>(a.x), static_cast<const E*>(a.z)}, {static_cast<E*>(a.y)}, a.gamma, a.beta,
          a.running_mean, a.running_var, a.eps};
      return launch_rows_map<decltype(T)::value, decltype(V)::value>(op, s, p, d, stream);
    });
  });
}

cudaError_t nhwc_backward(const Shape& s, const Policy& p, const Device& d, const BackwardArgs& a,
                          const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = ReduceWorkspace::carve(w, s.c, p.splits, sizeof(Welford<float>));
  return with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const E* in[3] = {static_cast<const E*>(a.dy), static_cast<const E*>(a.x), static_cast<const E*>(a.y)};
    return with_relu(a.relu, [&](auto R) {
      constexpr bool kRelu = decltype(R)::value;
      BackwardReducer<E, kRelu> red{{in[0], in[1], in[2]}, s.m(), a};
      cudaError_t err = launch_rows_reduce<kT, kV>(red, s, p, ws, stream);
      if (err != cudaSuccess) return err;
      DxOp<E, kRelu> op{{in[0], in[1], in[2]}, {static_cast<E*>(a.dx), static_cast<E*>(a.dz)}, ws.coef};
      return launch_rows_map<kT, kV>(op, s, p, d, stream);
    });
  });
}

}  // namespace bnorm::kern
