// Folding inference batch norm into the weights and bias of the layer before it
// (launch_given_stats.hpp, bnorm_fold_into_weights).
//
// Variants (dispatch name):
//   fold_map  the weights as c_out rows of k values through channel_map.cuh (16-byte
//             accesses when k and the pointers allow), one coefficient per row; then one
//             thread per output channel for the bias. A one-off conversion: the
//             elementwise engine is already the fastest way to stream the weights once.

#include "given_stats_ops.cuh"
#include "launch_common.cuh"
#include "launch_given_stats.hpp"

namespace bnorm::kern {
namespace {

constexpr int kBiasThreads = 256;

// bias' = (bias - running_mean) * s + beta, s = gamma / sqrt(running_var + eps).
__global__ void __launch_bounds__(kBiasThreads) fold_bias_kernel(FoldArgs a, int64_t c_out) {
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kBiasThreads + threadIdx.x;
  if (o >= c_out) return;
  const float g = a.gamma ? a.gamma[o] : 1.0f;
  const float s = g / sqrtf(a.running_var[o] + a.eps);
  const float b = a.bias ? a.bias[o] : 0.0f;
  a.bias_out[o] = fmaf(b - a.running_mean[o], s, a.beta ? a.beta[o] : 0.0f);
}

}  // namespace

cudaError_t fold_into_weights(const Shape& s, const Policy& p, const Device& d, const FoldArgs& a,
                              cudaStream_t stream) {
  // Each thread reads a weight and writes its own place, so weight_out may be weight;
  // the bias kernel likewise.
  const cudaError_t err = with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    const FoldOp<E> op{{static_cast<const E*>(a.weight)}, {static_cast<E*>(a.weight_out)}, a.gamma,
                       a.running_var, a.eps};
    return launch_map<decltype(T)::value, decltype(V)::value>(op, s, d, stream);
  });
  if (err != cudaSuccess) return err;
  const unsigned grid = static_cast<unsigned>((s.c + kBiasThreads - 1) / kBiasThreads);
  fold_bias_kernel<<<grid, kBiasThreads, 0, stream>>>(a, s.c);
  return cudaGetLastError();
}

}  // namespace bnorm::kern
