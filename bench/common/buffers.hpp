// Rotating device buffers for timing: several sets of (x, y, dy, dx) laid out in slabs
// that total at least twice the L2, so consecutive calls never find their inputs in
// L2 and a small tensor is not timed at L2 bandwidth. Big tensors get one or two sets.
// Tensors hold the shape's dtype in its layout; per-channel vectors are fp32.
//
// Every tensor is 256-byte aligned (so 16-byte aligned, as the tuning key assumes) and
// filled with random values, never zeros.
#pragma once

#include <cstdint>

#include "cuda_util.hpp"
#include "suite.hpp"

namespace bnorm_bench {

class RotatingBuffers {
 public:
  // Allocates and fills for shape, unless already prepared for it. With M >= 2 the
  // saved statistics for backward come from one bnorm forward training on set 0 (what
  // dispatch picks); h may be null for M < 2. A fused shape also gets, per set, the
  // fused forward's output y = relu(bn(x) + z) (the ReLU mask its backward reads) and
  // a dz tensor.
  void prepare(const Shape& shape, size_t l2_bytes, bnorm_handle_t h, cudaStream_t stream);
  void release();

  const Shape& shape() const { return shape_; }
  int64_t sets() const { return sets_; }

  // Set k modulo sets(). y and dx share one slab: no op writes both.
  const void* x(int64_t k) const { return at(x_, k); }
  void* y(int64_t k) const { return at(out_, k); }
  const void* dy(int64_t k) const { return at(dy_, k); }
  void* dx(int64_t k) const { return at(out_, k); }
  // Fused shapes: z of the forward (dy's slab: a forward reads no dy), the forward's
  // output read by the backward as its ReLU mask, and dz. Null otherwise.
  const void* z(int64_t k) const { return at(dy_, k); }
  const void* y_fwd(int64_t k) const { return shape_.fused ? at(mask_, k) : nullptr; }
  void* dz(int64_t k) const { return shape_.fused ? at(dz_, k) : nullptr; }

  // Per channel, one copy shared by all sets.
  const float* gamma() const { return chan_.f() + 0 * cstride_; }
  const float* beta() const { return chan_.f() + 1 * cstride_; }
  float* running_mean() const { return chan_.f() + 2 * cstride_; }
  float* running_var() const { return chan_.f() + 3 * cstride_; }
  float* save_mean() const { return chan_.f() + 4 * cstride_; }
  float* save_invstd() const { return chan_.f() + 5 * cstride_; }
  float* dgamma() const { return chan_.f() + 6 * cstride_; }
  float* dbeta() const { return chan_.f() + 7 * cstride_; }

  size_t allocated_bytes() const {
    return x_.bytes() + dy_.bytes() + out_.bytes() + mask_.bytes() + dz_.bytes() + chan_.bytes();
  }

 private:
  void* at(const DeviceBuffer& b, int64_t k) const {
    return static_cast<char*>(b.get()) + (k % sets_) * stride_;
  }

  Shape shape_{};
  bool ready_ = false;
  int64_t sets_ = 1;
  size_t stride_ = 0;   // bytes between sets, 256-byte aligned
  size_t cstride_ = 0;  // floats between per-channel vectors
  DeviceBuffer x_, dy_, out_, mask_, dz_, chan_;
};

// Momentum and eps of every timed call.
constexpr float kMomentum = 0.1f;
constexpr float kEps = 1e-5f;

// One call of op through the public API on set k: the plain call, or for a fused
// shape bnorm_forward_training_fused / bnorm_backward_fused with z, dz and ReLU.
bnorm_status_t run_bnorm(bnorm_handle_t h, bnorm_op_t op, const RotatingBuffers& b, int64_t k);

}  // namespace bnorm_bench
