// The contract between the host dispatcher and the CUDA launchers: problem shapes,
// launch policies, argument bundles and the workspace layout. Plain C++ (g++ compiles
// the host side against it); the kernels themselves live in the .cu files.
//
// Launchers hold all grid arithmetic. They never validate user input: the API has
// done that, and dispatch only calls a launcher whose variant supports() the call.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace bnorm::kern {

// Storage type of the tensors x, y, dy, dx; statistics and parameters are always fp32.
enum class DType { F32, F16, BF16 };

inline int elem_bytes(DType t) { return t == DType::F32 ? 4 : 2; }
// Values per 16-byte access.
inline int wide_vec(DType t) { return 16 / elem_bytes(t); }

// An NCHW tensor seen as n rows of c channels of hw contiguous values. A channel's
// statistics run over m() = n*hw values.
struct Shape {
  int64_t n = 0, c = 0, hw = 0;
  DType dtype = DType::F32;
  int64_t m() const { return n * hw; }
  int64_t numel() const { return n * c * hw; }
};

struct Policy {
  int threads = 256;  // threads per CTA: 128, 256 or 512
  int vec = 4;        // values per access: wide_vec(dtype) = 16 bytes, or 1 (scalar)
  int splits = 1;     // CTAs per channel in the reductions; 1 = one CTA per channel
};

struct Device {
  int sm_count = 1;
  int max_threads_per_sm = 2048;
};

// Tensor pointers are of the Shape's dtype.
struct ForwardTrainingArgs {
  const void* x;
  void* y;
  const float* gamma;  // may be null: 1
  const float* beta;   // may be null: 0
  float momentum;
  float eps;
  float* running_mean;  // both null or both set
  float* running_var;
  float* save_mean;  // may be null
  float* save_invstd;
  const void* z;  // fused: y = act(bn(x) + z); null for no add
  bool relu;      // fused ReLU
};

struct ForwardInferenceArgs {
  const void* x;
  void* y;
  const float* gamma;
  const float* beta;
  const float* running_mean;
  const float* running_var;
  float eps;
  const void* z;  // fused add; null for none
  bool relu;      // fused ReLU
};

struct BackwardArgs {
  const void* x;
  const void* dy;
  const float* gamma;
  const float* save_mean;
  const float* save_invstd;
  void* dx;
  float* dgamma;  // may be null
  float* dbeta;   // may be null
  const void* y;  // the fused forward's output (the ReLU mask); needed when relu
  void* dz;       // the fused add's gradient; null when not wanted
  bool relu;
};

// Device memory owned by the handle, in two parts that no call may confuse:
//   tickets  per-channel counters of the split reductions. Zero before every launch and
//            left zero after it (the last CTA of a channel resets its counter), so no
//            call needs a memset, which would be one more launch. Nothing else ever
//            writes here.
//   scratch  partial states and coefficients; any variant may overwrite it.
struct Workspace {
  unsigned int* tickets = nullptr;
  int64_t ticket_count = 0;
  void* scratch = nullptr;
  size_t scratch_bytes = 0;
};

// Bytes of scratch the two-pass launchers need for this shape and policy (and s.c
// tickets).
size_t two_pass_workspace_bytes(const Shape& s, const Policy& p);

// Whether a (threads, vec) pair has compiled two-pass kernels for dtype t.
bool policy_compiled(const Policy& p, DType t);

// Largest number of CTAs per channel the split reduction accepts.
constexpr int kMaxSplits = 128;

// The single-pass persistent kernels' schedule: `splits` CTAs per channel,
// `channels_per_round` channels at a time, all `grid` CTAs co-resident.
struct PersistentPlan {
  int splits = 1;
  int channels_per_round = 1;
  int64_t rounds = 1;
  int grid = 1;
};

// `inputs` is the number of tensors the persistent tile holds: 1 for forward (x), 2 for
// backward (dy, x), 3 for backward through a fused ReLU (dy, x, y).
// CTAs of the persistent kernel for this policy that fit on the current device at once
// (0 without a device or for a policy with no kernel).
int persistent_resident_ctas(const Policy& p, DType t, int inputs);
// Vectors of each input a CTA holds on chip.
int persistent_vectors_per_cta(const Policy& p, int inputs);
// The schedule for policy p (p.splits CTAs per channel), or false when a channel does not
// fit in p.splits CTAs or p.splits CTAs do not fit on the device.
bool persistent_plan(const Shape& s, const Policy& p, int resident, int inputs, PersistentPlan* out);
// Bytes of scratch (no tickets).
size_t persistent_workspace_bytes(const Shape& s, const Policy& p);

cudaError_t forward_training_persistent(const Shape& s, const Policy& p, const ForwardTrainingArgs& a,
                                        const Workspace& ws, cudaStream_t stream);
cudaError_t backward_persistent(const Shape& s, const Policy& p, const BackwardArgs& a,
                                const Workspace& ws, cudaStream_t stream);

// Channels-last kernels (nhwc.cu): rows of C channels, shape.hw folded into the rows.
// Threads across a row's channels for this policy (a power of two up to 32).
int nhwc_lanes(const Shape& s, const Policy& p);
cudaError_t nhwc_forward_training(const Shape& s, const Policy& p, const Device& d, const ForwardTrainingArgs& a,
                                  const Workspace& ws, cudaStream_t stream);
cudaError_t nhwc_forward_inference(const Shape& s, const Policy& p, const Device& d, const ForwardInferenceArgs& a,
                                   cudaStream_t stream);
cudaError_t nhwc_backward(const Shape& s, const Policy& p, const Device& d, const BackwardArgs& a,
                          const Workspace& ws, cudaStream_t stream);

cudaError_t forward_training_two_pass(const Shape& s, const Policy& p, const Device& d,
                                      const ForwardTrainingArgs& a, const Workspace& ws,
                                      cudaStream_t stream);
cudaError_t forward_inference(const Shape& s, const Policy& p, const Device& d,
                              const ForwardInferenceArgs& a, cudaStream_t stream);
cudaError_t backward_two_pass(const Shape& s, const Policy& p, const Device& d,
                              const BackwardArgs& a, const Workspace& ws, cudaStream_t stream);

}  // namespace bnorm::kern
