// LeNet's layers (see layers.hpp). The GEMM shapes are spelled out per call: they are
// the whole of the convolution and linear math.
#include "layers.hpp"

#include <stdexcept>

namespace lenet {

void Layer::check_batch(int64_t n) const {
  if (n < 1 || n > max_batch_)
    throw std::logic_error(name() + ": batch " + std::to_string(n) + " outside [1, " +
                           std::to_string(max_batch_) + "]");
}

// ---- Conv2d ------------------------------------------------------------------------

namespace {
Dims conv_out(Dims in, int64_t out_channels, int64_t k) {
  if (k < 1 || k > in.h || k > in.w) throw std::logic_error("Conv2d: kernel larger than input");
  return {out_channels, in.h - k + 1, in.w - k + 1};
}
}  // namespace

Conv2d::Conv2d(Backend& be, ParamStore& ps, int64_t max_batch, Dims in, int64_t out_channels,
               int64_t kernel, bool bias)
    : Layer(be, max_batch, in, conv_out(in, out_channels, kernel)), ps_(ps), k_(kernel) {
  const ConvShape s = shape(max_batch);
  // A conv weight (K, C, k, k) has fan-in C*k*k.
  w_ = ps.declare(out_.c * s.col_rows(), Init::fan_in_uniform, s.col_rows());
  if (bias) b_ = ps.declare(out_.c, Init::fan_in_uniform, s.col_rows());
  const int64_t col = max_batch * s.col_rows() * s.col_cols();
  col_ = Array<float>(be, col);
  dcol_ = Array<float>(be, col);
  y_ = Array<float>(be, max_batch * out_.size());
  dx_ = Array<float>(be, max_batch * in_.size());
  dw_partial_ = Array<float>(be, max_batch * out_.c * s.col_rows());
}

std::string Conv2d::name() const {
  return "conv" + std::to_string(k_) + "x" + std::to_string(k_) + " " + std::to_string(in_.c) +
         "->" + std::to_string(out_.c);
}

const float* Conv2d::forward(const float* x, int64_t n, Mode) {
  check_batch(n);
  const ConvShape s = shape(n);
  const int64_t crs = s.col_rows(), p = s.col_cols(), kc = out_.c;
  be_.im2col(s, x, col_.data());
  Gemm g;  // Y_n (K x P) = W (K x CRS) * col_n (CRS x P)
  g.m = kc, g.n = p, g.k = crs;
  g.a = ps_.value(w_), g.lda = crs, g.stride_a = 0;
  g.b = col_.data(), g.ldb = p, g.stride_b = crs * p;
  g.c = y_.data(), g.ldc = p, g.stride_c = kc * p;
  g.batch = n;
  be_.gemm(g);
  if (b_ >= 0) be_.add_channel_bias(n, kc, p, ps_.value(b_), y_.data());
  return y_.data();
}

const float* Conv2d::backward(const float* dy, int64_t n) {
  check_batch(n);
  const ConvShape s = shape(n);
  const int64_t crs = s.col_rows(), p = s.col_cols(), kc = out_.c;
  // dW = sum_n dY_n (K x P) * col_n^T (P x CRS). No single GEMM contracts over both n
  // and p of an NCHW dY, so: one batched GEMM into per-image partials, then a sum.
  Gemm gw;
  gw.trans_b = true;
  gw.m = kc, gw.n = crs, gw.k = p;
  gw.a = dy, gw.lda = p, gw.stride_a = kc * p;
  gw.b = col_.data(), gw.ldb = p, gw.stride_b = crs * p;
  gw.c = dw_partial_.data(), gw.ldc = crs, gw.stride_c = kc * crs;
  gw.batch = n;
  be_.gemm(gw);
  be_.channel_sum(n, kc * crs, 1, dw_partial_.data(), ps_.grad(w_));
  if (b_ >= 0) be_.channel_sum(n, kc, p, dy, ps_.grad(b_));
  if (!input_grad_) return nullptr;

  Gemm gx;  // dcol_n (CRS x P) = W^T (CRS x K) * dY_n (K x P)
  gx.trans_a = true;
  gx.m = crs, gx.n = p, gx.k = kc;
  gx.a = ps_.value(w_), gx.lda = crs, gx.stride_a = 0;
  gx.b = dy, gx.ldb = p, gx.stride_b = kc * p;
  gx.c = dcol_.data(), gx.ldc = p, gx.stride_c = crs * p;
  gx.batch = n;
  be_.gemm(gx);
  be_.col2im(s, dcol_.data(), dx_.data());
  return dx_.data();
}

// ---- Linear ------------------------------------------------------------------------

Linear::Linear(Backend& be, ParamStore& ps, int64_t max_batch, Dims in, int64_t out_features,
               bool bias)
    : Layer(be, max_batch, in, Dims{out_features, 1, 1}), ps_(ps) {
  w_ = ps.declare(out_features * in.size(), Init::fan_in_uniform, in.size());
  if (bias) b_ = ps.declare(out_features, Init::fan_in_uniform, in.size());
  y_ = Array<float>(be, max_batch * out_features);
  dx_ = Array<float>(be, max_batch * in.size());
}

std::string Linear::name() const {
  return "linear " + std::to_string(in_.size()) + "->" + std::to_string(out_.c);
}

const float* Linear::forward(const float* x, int64_t n, Mode) {
  check_batch(n);
  x_ = x;
  const int64_t in = in_.size(), out = out_.c;
  Gemm g;  // Y (N x out) = X (N x in) * W^T (in x out)
  g.trans_b = true;
  g.m = n, g.n = out, g.k = in;
  g.a = x, g.lda = in;
  g.b = ps_.value(w_), g.ldb = in;
  g.c = y_.data(), g.ldc = out;
  be_.gemm(g);
  if (b_ >= 0) be_.add_channel_bias(n, out, 1, ps_.value(b_), y_.data());
  return y_.data();
}

const float* Linear::backward(const float* dy, int64_t n) {
  check_batch(n);
  const int64_t in = in_.size(), out = out_.c;
  Gemm gw;  // dW (out x in) = dY^T (out x N) * X (N x in)
  gw.trans_a = true;
  gw.m = out, gw.n = in, gw.k = n;
  gw.a = dy, gw.lda = out;
  gw.b = x_, gw.ldb = in;
  gw.c = ps_.grad(w_), gw.ldc = in;
  be_.gemm(gw);
  if (b_ >= 0) be_.channel_sum(n, out, 1, dy, ps_.grad(b_));
  if (!input_grad_) return nullptr;

  Gemm gx;  // dX (N x in) = dY (N x out) * W (out x in)
  gx.m = n, gx.n = in, gx.k = out;
  gx.a = dy, gx.lda = out;
  gx.b = ps_.value(w_), gx.ldb = in;
  gx.c = dx_.data(), gx.ldc = in;
  be_.gemm(gx);
  return dx_.data();
}

// ---- BatchNorm -----------------------------------------------------------------------

BatchNorm::BatchNorm(Backend& be, ParamStore& ps, int64_t max_batch, Dims in)
    : Layer(be, max_batch, in, in), ps_(ps) {
  gamma_ = ps.declare(in.c, Init::ones);
  beta_ = ps.declare(in.c, Init::zeros);
  running_mean_ = Array<float>(be, in.c);
  running_var_ = Array<float>(be, in.c);
  save_mean_ = Array<float>(be, in.c);
  save_invstd_ = Array<float>(be, in.c);
  running_mean_.zero();
  running_var_.upload(std::vector<float>(static_cast<size_t>(in.c), 1.0f));
  y_ = Array<float>(be, max_batch * in.size());
  dx_ = Array<float>(be, max_batch * in.size());
}

std::string BatchNorm::name() const { return "batchnorm " + std::to_string(in_.c); }

bnorm_tensor_t BatchNorm::desc(int64_t n) const {
  return bnorm_tensor_t{n, in_.c, in_.h, in_.w, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
}

const float* BatchNorm::forward(const float* x, int64_t n, Mode mode) {
  check_batch(n);
  const bnorm_tensor_t d = desc(n);
  x_ = x;
  last_forward_trained_ = mode == Mode::train;
  if (mode == Mode::train)
    check_bnorm(bnorm_forward_training(be_.bnorm(), &d, x, y_.data(), ps_.value(gamma_),
                                       ps_.value(beta_), momentum_, kEps, running_mean_.data(),
                                       running_var_.data(), save_mean_.data(), save_invstd_.data()),
                "bnorm_forward_training");
  else
    check_bnorm(
        bnorm_forward_inference(be_.bnorm(), &d, x, y_.data(), ps_.value(gamma_), ps_.value(beta_),
                                running_mean_.data(), running_var_.data(), kEps),
        "bnorm_forward_inference");
  return y_.data();
}

const float* BatchNorm::backward(const float* dy, int64_t n) {
  check_batch(n);
  if (!last_forward_trained_)
    throw std::logic_error("BatchNorm::backward needs a training-mode forward first");
  const bnorm_tensor_t d = desc(n);
  // bnorm has no switch for dx; a first-layer BN would compute it and drop it.
  check_bnorm(bnorm_backward(be_.bnorm(), &d, x_, dy, ps_.value(gamma_), save_mean_.data(),
                             save_invstd_.data(), dx_.data(), ps_.grad(gamma_), ps_.grad(beta_)),
              "bnorm_backward");
  return input_grad_ ? dx_.data() : nullptr;
}

// ---- Sigmoid -------------------------------------------------------------------------

Sigmoid::Sigmoid(Backend& be, int64_t max_batch, Dims in)
    : Layer(be, max_batch, in, in), y_(be, max_batch * in.size()), dx_(be, max_batch * in.size()) {}

const float* Sigmoid::forward(const float* x, int64_t n, Mode) {
  check_batch(n);
  be_.sigmoid_forward(n * in_.size(), x, y_.data());
  return y_.data();
}

const float* Sigmoid::backward(const float* dy, int64_t n) {
  check_batch(n);
  if (!input_grad_) return nullptr;
  be_.sigmoid_backward(n * in_.size(), y_.data(), dy, dx_.data());
  return dx_.data();
}

// ---- AvgPool2x2 ----------------------------------------------------------------------

namespace {
Dims pool_out(Dims in) {
  if (in.h % 2 || in.w % 2) throw std::logic_error("AvgPool2x2: odd input height or width");
  return {in.c, in.h / 2, in.w / 2};
}
}  // namespace

AvgPool2x2::AvgPool2x2(Backend& be, int64_t max_batch, Dims in)
    : Layer(be, max_batch, in, pool_out(in)),
      y_(be, max_batch * out_.size()),
      dx_(be, max_batch * in.size()) {}

const float* AvgPool2x2::forward(const float* x, int64_t n, Mode) {
  check_batch(n);
  be_.avgpool2x2_forward(n * in_.c, in_.h, in_.w, x, y_.data());
  return y_.data();
}

const float* AvgPool2x2::backward(const float* dy, int64_t n) {
  check_batch(n);
  if (!input_grad_) return nullptr;
  be_.avgpool2x2_backward(n * in_.c, in_.h, in_.w, dy, dx_.data());
  return dx_.data();
}

}  // namespace lenet
