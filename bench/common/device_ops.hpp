// Small device helpers of the benchmark and the tuner: random fills (so nothing is
// timed or checked on zeros) and the comparisons the tuner makes on the device (a
// 200-million-value output is not copied to the host for every candidate).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace bnorm_bench {

// x[i] = mean_c + std_c * z, z ~ N(0, 1), for an NCHW tensor of c channels of hw values;
// mean_c ~ N(0, 1) and std_c ~ U(0.5, 2) per channel. A counter-based generator: the
// same seed gives the same tensor.
void fill_channels(float* x, int64_t numel, int64_t c, int64_t hw, uint64_t seed, cudaStream_t s);

// The same for sets tensors laid out stride floats apart (the padding gets values too),
// in one launch whatever the number of sets: set k is drawn with seed + k.
void fill_channels_sets(float* x, int64_t sets, int64_t stride, int64_t numel, int64_t c, int64_t hw,
                        uint64_t seed, cudaStream_t s);

// x[i] ~ U(lo, hi).
void fill_uniform(float* x, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t s);

struct ErrorSums {
  double diff2 = 0.0;  // sum((a - ref)^2) over finite a
  double ref2 = 0.0;   // sum(ref^2)
  unsigned long long nonfinite = 0;  // NaN or Inf in a: unwritten (poisoned) or wrong
  // ||a - ref|| / ||ref||; +inf when any value of a is not finite.
  double rel() const;
};

// Device-side comparisons; owns a little device scratch. Each call synchronises s.
class Comparer {
 public:
  Comparer();
  ~Comparer();
  Comparer(const Comparer&) = delete;
  Comparer& operator=(const Comparer&) = delete;

  ErrorSums compare(const float* a, const float* ref, int64_t n, cudaStream_t s);
  // The number of 32-bit words that differ between a and b.
  unsigned long long bitwise_differences(const float* a, const float* b, int64_t n, cudaStream_t s);

 private:
  void* scratch_ = nullptr;
};

}  // namespace bnorm_bench
