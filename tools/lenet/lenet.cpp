// BN-LeNet (see lenet.hpp).
#include "lenet.hpp"

#include <stdexcept>
#include <utility>

#include "dataset.hpp"

namespace lenet {

LeNet::LeNet(Backend& be, const LeNetConfig& cfg)
    : be_(be), dlogits_(be, cfg.max_batch * kClasses), totals_(be, 2) {
  const int64_t nb = cfg.max_batch;
  const bool bn = cfg.batch_norm;
  // Each layer's input dimensions are the previous layer's output.
  auto in = [&] {
    return layers_.empty() ? Dims{1, kImageSide, kImageSide} : layers_.back()->out_dims();
  };
  auto push = [&](std::unique_ptr<Layer> layer) { layers_.push_back(std::move(layer)); };

  for (int64_t channels : {6, 16}) {
    push(std::make_unique<Conv2d>(be, params_, nb, in(), channels, 5, /*bias=*/!bn));
    if (bn) push(std::make_unique<BatchNorm>(be, params_, nb, in()));
    push(std::make_unique<Sigmoid>(be, nb, in()));
    push(std::make_unique<AvgPool2x2>(be, nb, in()));
  }
  for (int64_t features : {120, 84}) {  // the first takes the flattened 16 x 4 x 4
    push(std::make_unique<Linear>(be, params_, nb, in(), features, /*bias=*/!bn));
    if (bn) push(std::make_unique<BatchNorm>(be, params_, nb, in()));
    push(std::make_unique<Sigmoid>(be, nb, in()));
  }
  push(std::make_unique<Linear>(be, params_, nb, in(), kClasses, /*bias=*/true));

  layers_.front()->set_input_grad(false);
  params_.materialize(be, cfg.seed);
  totals_.zero();
}

const float* LeNet::forward(const float* x, int64_t n, Mode mode) {
  for (auto& layer : layers_) x = layer->forward(x, n, mode);
  return x;
}

void LeNet::compute_gradients(const float* x, const int32_t* labels, int64_t n) {
  const float* logits = forward(x, n, Mode::train);
  be_.softmax_cross_entropy(n, kClasses, logits, labels, dlogits_.data(), totals_.data());
  const float* dy = dlogits_.data();
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) dy = (*it)->backward(dy, n);
}

void LeNet::train_step(const float* x, const int32_t* labels, int64_t n, float lr) {
  compute_gradients(x, labels, n);
  params_.sgd_step(be_, lr);
}

void LeNet::evaluate(const float* x, const int32_t* labels, int64_t n) {
  const float* logits = forward(x, n, Mode::eval);
  be_.softmax_cross_entropy(n, kClasses, logits, labels, nullptr, totals_.data());
}

namespace {

// The weight and bias offsets and the weights' descriptor of a conv or linear layer.
struct Affine {
  int64_t w, b;
  bnorm_tensor_t desc;
};

bool affine_of(const Layer& layer, Affine* out) {
  if (auto* c = dynamic_cast<const Conv2d*>(&layer)) {
    *out = {c->weight_offset(), c->bias_offset(), c->weight_desc()};
    return true;
  }
  if (auto* l = dynamic_cast<const Linear*>(&layer)) {
    *out = {l->weight_offset(), l->bias_offset(), l->weight_desc()};
    return true;
  }
  return false;
}

}  // namespace

void LeNet::fold_into(LeNet& plain) {
  // Walk both networks: every layer of `plain` is a layer of this one, BN aside.
  size_t j = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Affine from, to;
    if (!affine_of(*layers_[i], &from)) {
      if (!dynamic_cast<BatchNorm*>(layers_[i].get())) ++j;  // sigmoid, pooling
      continue;
    }
    if (j >= plain.layers_.size() || !affine_of(*plain.layers_[j], &to) || to.b < 0)
      throw std::logic_error("fold_into: the plain network does not match");
    ++j;
    const int64_t weights = from.desc.n * from.desc.c * from.desc.h * from.desc.w;
    auto* bn = i + 1 < layers_.size() ? dynamic_cast<BatchNorm*>(layers_[i + 1].get()) : nullptr;
    if (bn) {
      check_bnorm(bnorm_fold_into_weights(be_.bnorm(), &from.desc, params_.value(from.w),
                                          from.b >= 0 ? params_.value(from.b) : nullptr,
                                          params_.value(bn->gamma_offset()), params_.value(bn->beta_offset()),
                                          bn->running_mean().data(), bn->running_var().data(), BatchNorm::kEps,
                                          plain.params_.value(to.w), plain.params_.value(to.b)),
                  "bnorm_fold_into_weights");
    } else {  // the classifier: copied (0 + 1 * w is exact)
      be_.zero(plain.params_.value(to.w), weights * sizeof(float));
      be_.axpy(weights, 1.0f, params_.value(from.w), plain.params_.value(to.w));
      be_.zero(plain.params_.value(to.b), from.desc.n * sizeof(float));
      if (from.b >= 0) be_.axpy(from.desc.n, 1.0f, params_.value(from.b), plain.params_.value(to.b));
    }
  }
}

void LeNet::recalibrate(const float* x, int64_t n) {
  ++recalibration_batches_;
  // The k-th batch's statistics enter with weight 1/k: the first replaces the EMA,
  // and after k batches the running statistics are their average.
  for (auto& layer : layers_)
    if (auto* bn = dynamic_cast<BatchNorm*>(layer.get()))
      bn->set_momentum(1.0f / static_cast<float>(recalibration_batches_));
  forward(x, n, Mode::train);
  for (auto& layer : layers_)
    if (auto* bn = dynamic_cast<BatchNorm*>(layer.get())) bn->set_momentum(BatchNorm::kMomentum);
}

Totals LeNet::totals() const {
  const std::vector<double> t = totals_.download();
  return {t[0], t[1]};
}

BnSnapshot LeNet::first_bn_snapshot(const float* x, int64_t n) {
  BatchNorm* bn = first_batch_norm();
  if (!bn) throw std::logic_error("first_bn_snapshot: the network has no batch norm");
  forward(x, n, Mode::eval);
  const Dims d = bn->in_dims();
  std::vector<float> input(static_cast<size_t>(n * d.size())), output(input.size());
  be_.download(input.data(), bn->last_input(), input.size() * sizeof(float));
  be_.download(output.data(), bn->last_output(), output.size() * sizeof(float));
  const std::vector<float> params = params_.values().download();
  auto channels = [&](int64_t offset) {
    return std::vector<float>(params.begin() + offset, params.begin() + offset + d.c);
  };
  return {bn->name(),
          d,
          n,
          std::move(input),
          std::move(output),
          channels(bn->gamma_offset()),
          channels(bn->beta_offset()),
          bn->running_mean().download(),
          bn->running_var().download(),
          BatchNorm::kEps};
}

BatchNorm* LeNet::first_batch_norm() const {
  for (const auto& layer : layers_)
    if (auto* bn = dynamic_cast<BatchNorm*>(layer.get())) return bn;
  return nullptr;
}

}  // namespace lenet
