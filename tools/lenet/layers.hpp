// LeNet's layers, written once against the Backend interface.
//
// A layer owns its output and input-gradient buffers, sized for the largest batch at
// construction (no allocation while training), keeps what its backward needs from the
// last forward, and writes (not accumulates) the gradients of its parameters into the
// ParamStore. Activations are NCHW; a linear layer's (N, F) is (N, F, 1, 1).
#pragma once

#include <cstdint>
#include <string>

#include "backend.hpp"
#include "params.hpp"

namespace lenet {

// Per-example dimensions of an activation.
struct Dims {
  int64_t c = 0, h = 1, w = 1;
  int64_t size() const { return c * h * w; }
};

enum class Mode { train, eval };

class Layer {
 public:
  Layer(Backend& be, int64_t max_batch, Dims in, Dims out)
      : be_(be), max_batch_(max_batch), in_(in), out_(out) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  virtual std::string name() const = 0;
  Dims in_dims() const { return in_; }
  Dims out_dims() const { return out_; }

  // x: (n, in_dims), n <= max_batch; it must stay unchanged until backward(). Returns
  // the output (n, out_dims), valid until the next forward().
  virtual const float* forward(const float* x, int64_t n, Mode mode) = 0;

  // dy: (n, out_dims) for the last forward(), which must have been Mode::train. Writes
  // the parameter gradients; returns dx (n, in_dims), or nullptr when the input
  // gradient is switched off (the first layer: nothing needs the gradient of images).
  virtual const float* backward(const float* dy, int64_t n) = 0;

  void set_input_grad(bool on) { input_grad_ = on; }

 protected:
  void check_batch(int64_t n) const;

  Backend& be_;
  const int64_t max_batch_;
  const Dims in_, out_;
  bool input_grad_ = true;
};

// Valid (unpadded), stride-1 k x k convolution as im2col + one batched GEMM:
// per image Y_n (K x P) = W (K x CRS) * col_n (CRS x P), P output pixels, CRS = C*k*k.
class Conv2d final : public Layer {
 public:
  Conv2d(Backend& be, ParamStore& ps, int64_t max_batch, Dims in, int64_t out_channels,
         int64_t kernel, bool bias);
  std::string name() const override;
  const float* forward(const float* x, int64_t n, Mode mode) override;
  const float* backward(const float* dy, int64_t n) override;

  // For folding a following batch norm into this layer (LeNet::fold_into).
  int64_t weight_offset() const { return w_; }
  int64_t bias_offset() const { return b_; }  // < 0 without bias
  bnorm_tensor_t weight_desc() const {  // [K][C][k][k]
    return bnorm_tensor_t{out_.c, in_.c, k_, k_, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  }

 private:
  ConvShape shape(int64_t n) const { return {n, in_.c, in_.h, in_.w, k_}; }

  ParamStore& ps_;
  const int64_t k_;
  int64_t w_ = -1, b_ = -1;  // offsets in ps_; b_ < 0 without bias
  Array<float> col_, y_, dcol_, dx_;
  Array<float> dw_partial_;  // per-image weight gradients, summed by channel_sum
};

// Fully connected: Y (N x out) = X (N x in) * W^T, W stored (out x in) as in PyTorch.
class Linear final : public Layer {
 public:
  Linear(Backend& be, ParamStore& ps, int64_t max_batch, Dims in, int64_t out_features, bool bias);
  std::string name() const override;
  const float* forward(const float* x, int64_t n, Mode mode) override;
  const float* backward(const float* dy, int64_t n) override;

  int64_t weight_offset() const { return w_; }
  int64_t bias_offset() const { return b_; }
  bnorm_tensor_t weight_desc() const {  // [out][in]
    return bnorm_tensor_t{out_.c, in_.size(), 1, 1, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  }

 private:
  ParamStore& ps_;
  int64_t w_ = -1, b_ = -1;
  const float* x_ = nullptr;
  Array<float> y_, dx_;
};

// Batch normalization through bnorm's C API: per channel over N*H*W values in training
// (batch statistics, running statistics updated), running statistics in evaluation.
class BatchNorm final : public Layer {
 public:
  static constexpr float kMomentum = 0.1f;  // PyTorch's default and convention (bnorm.h)
  static constexpr float kEps = 1e-5f;

  BatchNorm(Backend& be, ParamStore& ps, int64_t max_batch, Dims in);
  std::string name() const override;
  const float* forward(const float* x, int64_t n, Mode mode) override;
  const float* backward(const float* dy, int64_t n) override;

  // The running-statistics momentum of the following training-mode forwards.
  void set_momentum(float m) { momentum_ = m; }

  int64_t gamma_offset() const { return gamma_; }
  int64_t beta_offset() const { return beta_; }
  const Array<float>& running_mean() const { return running_mean_; }
  const Array<float>& running_var() const { return running_var_; }
  // The last forward's input and output: valid until the previous layer's (input) or
  // this layer's (output) next forward.
  const float* last_input() const { return x_; }
  const float* last_output() const { return y_.data(); }

 private:
  bnorm_tensor_t desc(int64_t n) const;

  ParamStore& ps_;
  int64_t gamma_ = -1, beta_ = -1;
  const float* x_ = nullptr;
  bool last_forward_trained_ = false;
  float momentum_ = kMomentum;
  Array<float> running_mean_, running_var_, save_mean_, save_invstd_;
  Array<float> y_, dx_;
};

class Sigmoid final : public Layer {
 public:
  Sigmoid(Backend& be, int64_t max_batch, Dims in);
  std::string name() const override { return "sigmoid"; }
  const float* forward(const float* x, int64_t n, Mode mode) override;
  const float* backward(const float* dy, int64_t n) override;

 private:
  Array<float> y_, dx_;
};

// 2x2 average pooling, stride 2; H and W must be even.
class AvgPool2x2 final : public Layer {
 public:
  AvgPool2x2(Backend& be, int64_t max_batch, Dims in);
  std::string name() const override { return "avgpool2x2"; }
  const float* forward(const float* x, int64_t n, Mode mode) override;
  const float* backward(const float* dy, int64_t n) override;

 private:
  Array<float> y_, dx_;
};

}  // namespace lenet
