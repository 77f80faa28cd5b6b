// The parameter arena: every trainable tensor of a network in one backend array, and
// their gradients in a second array of the same layout.
//
// One array makes SGD a single AXPY (one launch on the GPU, not one per tensor), and
// lets a test copy a whole network's weights between backends in one upload.
// Layers declare their tensors while the network is built, then materialize()
// allocates and initializes all of them at once; layers keep offsets, not pointers.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "backend.hpp"

namespace lenet {

enum class Init {
  zeros,
  ones,
  // U(-b, b), b = 1 / sqrt(fan_in): PyTorch's default for Linear and Conv2d weights and
  // biases (kaiming_uniform with a = sqrt(5)), so the PyTorch peer needs no init code.
  // (Glorot's uniform init trained no better here: 0.877 vs 0.873 after ten epochs.)
  fan_in_uniform,
};

class ParamStore {
 public:
  // Reserves `count` parameters; returns their offset. Before materialize() only.
  int64_t declare(int64_t count, Init init, int64_t fan_in = 0);

  // Allocates the arena on `be` and initializes it in declaration order from one
  // std::mt19937 seeded with `seed`: the same seed gives the same weights on every
  // backend and platform.
  void materialize(Backend& be, uint32_t seed);

  // Parameters (and gradients) at a declared offset. After materialize() only.
  float* value(int64_t offset) { return values_.data() + checked(offset); }
  float* grad(int64_t offset) { return grads_.data() + checked(offset); }

  Array<float>& values() { return values_; }
  Array<float>& grads() { return grads_; }
  int64_t size() const { return size_; }

  // values -= lr * grads.
  void sgd_step(Backend& be, float lr) { be.axpy(size_, -lr, grads_.data(), values_.data()); }

 private:
  struct Spec {
    int64_t offset, count;
    Init init;
    int64_t fan_in;
  };
  int64_t checked(int64_t offset) const;

  std::vector<Spec> specs_;
  int64_t size_ = 0;
  bool materialized_ = false;
  Array<float> values_, grads_;
};

}  // namespace lenet
