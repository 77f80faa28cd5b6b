// The contract of the per-sample norms' launchers (group, instance and layer norm):
// their view of a tensor, argument bundles and workspace sizes. Plain C++, like
// launch.hpp; the kernels are in per_sample.cu and layer_norm_backward.cu.
//
// The view: a tensor of n samples of c*hw values (NCHW, or any layout with hw = 1) is
// rows() = n*groups rows of row_len() = (c/groups)*hw contiguous values, row r being
// group r % groups of sample r / groups. Value j of row r has the affine feature
//   f = ((r % groups) * row_len + j) / affine_stride
// i.e. its channel when affine_stride = hw (group and instance norm: gamma per channel)
// and its place in the sample when affine_stride = 1 (layer norm: gamma per value).
#pragma once

#include "launch.hpp"

namespace bnorm::kern {

struct SampleShape {
  int64_t n = 0, c = 0, hw = 0, groups = 1;
  int64_t affine_stride = 1;
  DType dtype = DType::F32;
  int64_t rows() const { return n * groups; }
  int64_t row_len() const { return c / groups * hw; }
  int64_t sample_len() const { return c * hw; }
  int64_t features() const { return c * hw / affine_stride; }
  int64_t numel() const { return n * c * hw; }
};

struct SampleForwardArgs {
  const void* x;
  void* y;
  const float* gamma;  // features() floats, may be null: 1
  const float* beta;   // may be null: 0
  float eps;
  float* save_mean;  // rows() floats, may be null
  float* save_invstd;
};

struct SampleBackwardArgs {
  const void* x;
  const void* dy;
  const float* gamma;  // may be null: 1
  const float* save_mean;
  const float* save_invstd;
  void* dx;
  float* dgamma;  // features() floats, may be null
  float* dbeta;
};

// Values of a row one CTA of the fused kernels holds in registers, per input.
int64_t sample_fused_capacity(const Policy& p, int inputs);

// Forward, two passes: per-row Welford statistics with p.splits CTAs per row (the
// channel_reduce engine), then the elementwise pass. Any row length.
size_t sample_forward_two_pass_workspace_bytes(const SampleShape& s, const Policy& p);
cudaError_t sample_forward_two_pass(const SampleShape& s, const Policy& p, const Device& d,
                                    const SampleForwardArgs& a, const Workspace& ws, cudaStream_t stream);
// Forward, one pass: one CTA per row, the row held in registers (row_len() <=
// sample_fused_capacity(p, 1)).
cudaError_t sample_forward_fused(const SampleShape& s, const Policy& p, const SampleForwardArgs& a,
                                 cudaStream_t stream);

// Group (and instance) norm backward (affine_stride = hw): per (sample, channel) sums
// over hw with p.splits CTAs each, a small kernel combining them per group and per
// channel, then dx.
size_t group_norm_backward_workspace_bytes(const SampleShape& s, const Policy& p);
cudaError_t group_norm_backward(const SampleShape& s, const Policy& p, const Device& d,
                                const SampleBackwardArgs& a, const Workspace& ws, cudaStream_t stream);

// Layer norm backward (groups = 1, affine_stride = 1), where dgamma and dbeta are
// column sums of an (n, features) matrix.
//   fused:    one CTA per row at a time, the row of dy and x in registers (row_len() <=
//             sample_fused_capacity(p, 2)), dx in the same pass; each CTA keeps its
//             rows' dgamma and dbeta partial sums and a second kernel adds the CTAs'.
//   two_pass: the two row sums per row, then dx and the partial column sums with
//             p.splits CTAs down the rows (the rows.cuh layout), then their sum.
constexpr int kLayerNormFusedMaxCtas = 256;
size_t layer_norm_backward_workspace_bytes(const SampleShape& s, const Policy& p, bool fused);
cudaError_t layer_norm_backward_fused(const SampleShape& s, const Policy& p, const SampleBackwardArgs& a,
                                      const Workspace& ws, cudaStream_t stream);
cudaError_t layer_norm_backward_two_pass(const SampleShape& s, const Policy& p, const SampleBackwardArgs& a,
                                         const Workspace& ws, cudaStream_t stream);

}  // namespace bnorm::kern
