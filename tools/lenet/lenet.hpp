// BN-LeNet on a Backend (LeNet-5 with batch norm after every conv and hidden linear):
//
//   conv 1->6 5x5, BN, sigmoid, avgpool 2x2     28x28 -> 24x24 -> 12x12
//   conv 6->16 5x5, BN, sigmoid, avgpool 2x2    12x12 -> 8x8 -> 4x4, flatten 256
//   linear 256->120, BN, sigmoid
//   linear 120->84, BN, sigmoid
//   linear 84->10, softmax cross-entropy, plain SGD
//
// Without BN (the comparison run) the convs and hidden linears get biases instead; with
// BN they have none, since BN's mean subtraction cancels a bias exactly (BN's beta
// takes its place).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"
#include "layers.hpp"
#include "params.hpp"

namespace lenet {

struct LeNetConfig {
  bool batch_norm = true;
  int64_t max_batch = 128;
  uint32_t seed = 42;  // weight initialization
};

// Sums over the batches since reset_totals().
struct Totals {
  double loss_sum = 0.0;  // of per-example cross-entropies
  double correct = 0.0;
};

// What one BN layer saw and gave for one batch, in host memory.
struct BnSnapshot {
  std::string layer;                 // the layer's name()
  Dims dims;                         // per example
  int64_t n = 0;                     // examples
  std::vector<float> input, output;  // (n, dims) NCHW: before and after batch norm
  std::vector<float> gamma, beta, running_mean, running_var;  // per channel
  float eps = 0.0f;
};

class LeNet {
 public:
  LeNet(Backend& be, const LeNetConfig& cfg);

  // x: (n, 1, 28, 28), labels: (n), in the backend's memory.
  // Forward in training mode, loss and gradients, backward; no parameter update.
  void compute_gradients(const float* x, const int32_t* labels, int64_t n);
  // compute_gradients, then SGD.
  void train_step(const float* x, const int32_t* labels, int64_t n, float lr);
  // Forward in evaluation mode (BN with running statistics) and loss; no gradients.
  void evaluate(const float* x, const int32_t* labels, int64_t n);

  // Folds every batch norm into the convolution or linear layer before it
  // (bnorm_fold_into_weights, with the running statistics of now) and writes the
  // result into `plain`, a LeNet built without batch norm: it has exactly the folded
  // layers (convolutions and hidden linears with biases) and then evaluates as this
  // network does in evaluation mode, with no batch norm left to run.
  void fold_into(LeNet& plain);

  // Precise BN (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): re-estimates
  // every BN layer's running statistics under the current weights, as the plain
  // average of the batch statistics of the batches passed to recalibrate() since
  // begin_recalibration(). Training keeps its EMA (momentum 0.1), which lags weights
  // that move quickly: here it put channel means up to 0.4 sd and variances up to a
  // factor 1.9 off, and cost up to 4 points of test accuracy (RESULTS.md).
  // Goes through bnorm_forward_training with momentum 1/k for the k-th batch; the
  // parameters are not touched.
  void begin_recalibration() { recalibration_batches_ = 0; }
  void recalibrate(const float* x, int64_t n);

  void reset_totals() { totals_.zero(); }
  Totals totals() const;  // waits for the queued work

  // Runs x forward in evaluation mode (BN with its running statistics) and returns the
  // first BN layer's input and output. Throws std::logic_error without BN.
  BnSnapshot first_bn_snapshot(const float* x, int64_t n);

  ParamStore& params() { return params_; }
  // The first batch-norm layer, or nullptr without BN.
  BatchNorm* first_batch_norm() const;

 private:
  const float* forward(const float* x, int64_t n, Mode mode);

  Backend& be_;
  ParamStore params_;
  std::vector<std::unique_ptr<Layer>> layers_;
  Array<float> dlogits_;
  Array<double> totals_;  // {loss_sum, correct}, on the backend: no sync per batch
  int64_t recalibration_batches_ = 0;
};

}  // namespace lenet
