// The CPU backend's fast path, variant cpu_fast (the default): every operation of
// reference.hpp with float32 arithmetic in vectorized loops (fast_kernels.hpp), float64
// where partial results meet, on the threads of thread_pool.hpp.
//
// Work is cut by the shape alone: a channel into blocks of samples (or of rows, channels
// last) and those into chunks, merged in a fixed order. Threads only decide who computes
// which block, so results are bitwise the same for any thread count, run after run, and
// on any of the instruction sets (fast_isa.hpp). Arguments arrive validated; tensor
// pointers are of desc.dtype.
#pragma once

#include <cstdint>
#include <vector>

#include "bnorm/bnorm.h"
#include "fast_isa.hpp"
#include "kernels/welford.cuh"

namespace bnorm::cpu::fast {

// Scratch owned by a handle: grown when a call needs more than any call before, never
// shrunk, so a steady loop of calls allocates nothing.
struct Workspace {
  std::vector<Welford<double>> states;  // per block
  std::vector<Sums> sums;               // per block
  std::vector<double> channel_states;  // count, mean and M2 arrays
  std::vector<Sums> channel_sums;
  std::vector<DxCoef> dx;
  std::vector<float> lanes;    // coefficient arrays, per channel or per lane
  std::vector<float> scratch;  // per-thread lane accumulators
  std::vector<double> wide;    // per-thread float64 lane results, per-value gradients
  std::vector<double> wide_states;  // channels-last blocks' states and sums, as arrays
  std::vector<float> values;   // per-sample statistics, permuted per-value parameters
  std::vector<float> spans;    // a window's coefficients per value of a sample's planes
};

struct Context {
  int threads = 0;  // 0: default_threads() (BNORM_CPU_THREADS, else every core we may use)
  Workspace* ws = nullptr;
};

// The threads a call may use.
int max_threads(const Context& ctx);

void forward_training(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* z, void* y,
                      const float* gamma, const float* beta, float momentum, float eps, float* running_mean,
                      float* running_var, float* save_mean, float* save_invstd, bool relu);

void forward_inference(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* z, void* y,
                       const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                       float eps, bool relu);

void backward(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* y, const void* dy,
              const float* gamma, const float* save_mean, const float* save_invstd, void* dx, void* dz,
              float* dgamma, float* dbeta, bool relu);

void backward_frozen(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* dy, const float* gamma,
                     const float* running_mean, const float* running_var, float eps, void* dx, float* dgamma,
                     float* dbeta);

void fold_into_weights(Context& ctx, const bnorm_tensor_t& d, const void* weight, const float* bias,
                       const float* gamma, const float* beta, const float* running_mean, const float* running_var,
                       float eps, void* weight_out, float* bias_out);

void sync_local_stats(Context& ctx, const bnorm_tensor_t& d, const void* x, float* local_stats);
void sync_forward(Context& ctx, const bnorm_tensor_t& d, const void* x, void* y, const float* gamma,
                  const float* beta, const float* global_stats, float momentum, float eps, float* running_mean,
                  float* running_var, float* save_mean, float* save_invstd);
void sync_backward_sums(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* dy,
                        const float* save_mean, float* local_sums);
void sync_backward(Context& ctx, const bnorm_tensor_t& d, const void* x, const void* dy, const float* gamma,
                   const float* save_mean, const float* save_invstd, const float* global_stats,
                   const float* global_sums, void* dx, float* dgamma, float* dbeta);

void per_sample_forward(Context& ctx, const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* x,
                        void* y, const float* gamma, const float* beta, float eps, float* save_mean,
                        float* save_invstd);
void per_sample_backward(Context& ctx, const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* x,
                         const void* dy, const float* gamma, const float* save_mean, const float* save_invstd,
                         void* dx, float* dgamma, float* dbeta);

}  // namespace bnorm::cpu::fast
