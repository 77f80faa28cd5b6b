// See buffers.hpp.
#include "buffers.hpp"

#include <algorithm>

#include "device_ops.hpp"

namespace bnorm_bench {
namespace {

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

}  // namespace

void RotatingBuffers::release() {
  x_.release();
  dy_.release();
  out_.release();
  mask_.release();
  dz_.release();
  chan_.release();
  ready_ = false;
}

void RotatingBuffers::prepare(const Shape& s, size_t l2_bytes, bnorm_handle_t h, cudaStream_t st) {
  if (ready_ && s.same(shape_)) return;
  release();
  shape_ = s;
  const size_t bytes = s.bytes();
  stride_ = round_up(bytes, 256);
  // A set of a forward call touches at least two tensors (x, y), in 128-byte lines:
  // enough sets that all of them together span twice the L2. Under four L2s, at least
  // two sets.
  const size_t touched = 2 * round_up(bytes, 128);
  const size_t want = 2 * std::max<size_t>(l2_bytes, 1);
  sets_ = static_cast<int64_t>((want + touched - 1) / touched);
  if (bytes < 4 * l2_bytes) sets_ = std::max<int64_t>(sets_, 2);
  sets_ = std::max<int64_t>(sets_, 1);

  const size_t slab = stride_ * static_cast<size_t>(sets_);
  x_.reset(slab);
  dy_.reset(slab);
  out_.reset(slab);
  if (s.fused) {
    mask_.reset(slab);
    dz_.reset(slab);
  }
  cstride_ = round_up(static_cast<size_t>(s.c), 64);
  chan_.reset(8 * cstride_ * sizeof(float));

  // One launch per slab: a tiny shape has hundreds of thousands of sets.
  const int64_t hw = s.h * s.w, stride_elems = static_cast<int64_t>(stride_ / s.elem_bytes());
  const int64_t slab_floats = static_cast<int64_t>(slab / sizeof(float));
  fill_channels_sets(x_.get(), s.dtype, s.layout, sets_, stride_elems, s.numel(), s.c, hw, 0x5EED0000ull, st);
  fill_channels_sets(dy_.get(), s.dtype, s.layout, sets_, stride_elems, s.numel(), s.c, hw, 0xD0D00000ull, st);
  fill_uniform(out_.f(), slab_floats, 0x0u, -1.0f, 1.0f, st);  // bytes to be overwritten: any values
  if (s.fused) fill_uniform(dz_.f(), slab_floats, 0x1u, -1.0f, 1.0f, st);
  fill_uniform(const_cast<float*>(gamma()), s.c, 11, 0.5f, 1.5f, st);
  fill_uniform(const_cast<float*>(beta()), s.c, 12, -0.5f, 0.5f, st);
  fill_uniform(running_mean(), s.c, 13, -0.5f, 0.5f, st);
  fill_uniform(running_var(), s.c, 14, 0.5f, 2.0f, st);
  fill_uniform(save_mean(), s.c, 15, -0.5f, 0.5f, st);
  fill_uniform(save_invstd(), s.c, 16, 0.5f, 2.0f, st);
  fill_uniform(dgamma(), s.c, 17, -1.0f, 1.0f, st);
  fill_uniform(dbeta(), s.c, 18, -1.0f, 1.0f, st);
  if (h && s.per_channel() >= 2) {
    // The statistics of set 0 serve backward on every set: x differs between sets, so
    // xhat there is not exactly normalised, which changes no timing. A fused shape's
    // backward reads each set's own forward output (its ReLU mask, about half zeros).
    const bnorm_tensor_t d = s.desc();
    void* old = nullptr;
    BNB_BNORM(bnorm_get_stream(h, &old));
    BNB_BNORM(bnorm_set_stream(h, st));
    if (s.fused) {
      for (int64_t k = sets_ - 1; k >= 0; --k)
        BNB_BNORM(bnorm_forward_training_fused(h, &d, x(k), z(k), at(mask_, k), gamma(), beta(), kMomentum, kEps,
                                               nullptr, nullptr, k == 0 ? save_mean() : nullptr,
                                               k == 0 ? save_invstd() : nullptr, BNORM_ACTIVATION_RELU));
    } else {
      BNB_BNORM(bnorm_forward_training(h, &d, x(0), y(0), gamma(), beta(), kMomentum, kEps, nullptr, nullptr,
                                       save_mean(), save_invstd()));
    }
    BNB_BNORM(bnorm_set_stream(h, old));
  }
  BNB_CUDA(cudaStreamSynchronize(st));
  ready_ = true;
}

bnorm_status_t run_bnorm(bnorm_handle_t h, bnorm_op_t op, const RotatingBuffers& b, int64_t k) {
  const bnorm_tensor_t d = b.shape().desc();
  const bool fused = b.shape().fused;
  switch (op) {
    case BNORM_OP_FORWARD_TRAINING:
      if (fused)
        return bnorm_forward_training_fused(h, &d, b.x(k), b.z(k), b.y(k), b.gamma(), b.beta(), kMomentum, kEps,
                                            b.running_mean(), b.running_var(), b.save_mean(), b.save_invstd(),
                                            BNORM_ACTIVATION_RELU);
      return bnorm_forward_training(h, &d, b.x(k), b.y(k), b.gamma(), b.beta(), kMomentum, kEps,
                                    b.running_mean(), b.running_var(), b.save_mean(), b.save_invstd());
    case BNORM_OP_FORWARD_INFERENCE:
      if (fused) return BNORM_STATUS_NOT_SUPPORTED;  // the suite has no fused inference row
      return bnorm_forward_inference(h, &d, b.x(k), b.y(k), b.gamma(), b.beta(), b.running_mean(),
                                     b.running_var(), kEps);
    case BNORM_OP_BACKWARD:
      if (fused)
        return bnorm_backward_fused(h, &d, b.x(k), b.y_fwd(k), b.dy(k), b.gamma(), b.save_mean(),
                                    b.save_invstd(), b.dx(k), b.dz(k), b.dgamma(), b.dbeta(),
                                    BNORM_ACTIVATION_RELU);
      return bnorm_backward(h, &d, b.x(k), b.dy(k), b.gamma(), b.save_mean(), b.save_invstd(), b.dx(k),
                            b.dgamma(), b.dbeta());
    default: break;  // the toolbox's operations run through run_toolbox (toolbox.hpp)
  }
  return BNORM_STATUS_INVALID_VALUE;
}

}  // namespace bnorm_bench
