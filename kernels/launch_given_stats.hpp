// The contract of the batch-norm launchers whose statistics do not come from the tensor
// being normalised: frozen batch norm's backward and the folding of batch norm into
// weights (both from the running statistics), and synchronized batch norm (statistics
// merged across processes). Plain C++, like launch.hpp; the kernels are in
// given_stats.cu and fold.cu.
//
// `rows` selects the engine: false for NCHW (channel_reduce.cuh / channel_map.cuh),
// true for channels-last tensors and (N, C) matrices (rows.cuh). Shapes are the batch
// norm's Shape; n may be 0 only where a launcher says so.
#pragma once

#include "launch.hpp"

namespace bnorm::kern {

struct FrozenBackwardArgs {
  const void* x;
  const void* dy;
  const float* gamma;  // may be null: 1
  const float* running_mean;
  const float* running_var;
  float eps;
  void* dx;
  float* dgamma;  // may be null
  float* dbeta;   // may be null
};

// dx = dy * gamma * invstd from the running statistics, and the reduction for dgamma
// and dbeta unless both are null (then x is not read).
cudaError_t frozen_backward(const Shape& s, bool rows, const Policy& p, const Device& d,
                            const FrozenBackwardArgs& a, const Workspace& ws, cudaStream_t stream);

// Synchronized batch norm (bnorm.h): states are 3 floats per channel (count, mean, M2),
// backward sums 2 (sum dy, sum dy*(x - mean)).
struct SyncLocalStatsArgs {
  const void* x;
  float* local_stats;
};
struct SyncForwardArgs {
  const void* x;
  void* y;
  const float* gamma;
  const float* beta;
  const float* global_stats;
  float momentum;
  float eps;
  float* running_mean;  // both null or both set
  float* running_var;
  float* save_mean;  // may be null
  float* save_invstd;
};
struct SyncBackwardSumsArgs {
  const void* x;
  const void* dy;
  const float* save_mean;
  float* local_sums;
};
struct SyncBackwardArgs {
  const void* x;
  const void* dy;
  const float* gamma;
  const float* save_mean;
  const float* save_invstd;
  const float* global_stats;
  const float* global_sums;
  void* dx;
  float* dgamma;  // may be null
  float* dbeta;   // may be null
};

// The Welford reduction alone, its state written per channel. n >= 1.
cudaError_t sync_local_stats(const Shape& s, bool rows, const Policy& p, const SyncLocalStatsArgs& a,
                             const Workspace& ws, cudaStream_t stream);
// Per-channel coefficients (and saved and running statistics) from the global states,
// then the elementwise pass. n may be 0: the coefficients' kernel alone.
cudaError_t sync_forward(const Shape& s, bool rows, const Policy& p, const Device& d, const SyncForwardArgs& a,
                         const Workspace& ws, cudaStream_t stream);
// The backward's two sums alone, written per channel. n >= 1.
cudaError_t sync_backward_sums(const Shape& s, bool rows, const Policy& p, const SyncBackwardSumsArgs& a,
                               const Workspace& ws, cudaStream_t stream);
// dgamma, dbeta and dx's coefficients from the global sums and count, then dx. n may be 0.
cudaError_t sync_backward(const Shape& s, bool rows, const Policy& p, const Device& d, const SyncBackwardArgs& a,
                          const Workspace& ws, cudaStream_t stream);
// gathered: ranks * 3c floats; global_stats: 3c floats. One thread per channel, ranks
// merged in order.
cudaError_t sync_merge_stats(int64_t c, int64_t ranks, const float* gathered, float* global_stats,
                             cudaStream_t stream);

struct FoldArgs {
  const void* weight;  // c_out rows of k values, of the Shape's dtype
  const float* bias;   // may be null: 0
  const float* gamma;
  const float* beta;
  const float* running_mean;
  const float* running_var;
  float eps;
  void* weight_out;
  float* bias_out;
};

// s = {1, c_out, k}: one row of weights per output channel.
cudaError_t fold_into_weights(const Shape& s, const Policy& p, const Device& d, const FoldArgs& a,
                              cudaStream_t stream);

}  // namespace bnorm::kern
