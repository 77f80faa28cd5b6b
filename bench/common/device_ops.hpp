// Small device helpers of the benchmark and the tuner: random fills (so nothing is
// timed or checked on zeros) and the comparisons the tuner makes on the device (a
// 200-million-value output is not copied to the host for every candidate).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "bnorm/bnorm.h"

namespace bnorm_bench {

// x[i] = mean_c + std_c * z, z ~ N(0, 1), for a tensor of c channels of hw values in
// layout l (NCHW: channel (i / hw) % c; NHWC: i % c), stored as dtype t (rounded to
// nearest); mean_c ~ N(0, 1) and std_c ~ U(0.5, 2) per channel. A counter-based
// generator: the same seed gives the same values, whatever the dtype.
void fill_channels(void* x, bnorm_dtype_t t, bnorm_layout_t l, int64_t numel, int64_t c, int64_t hw,
                   uint64_t seed, cudaStream_t s);

// The same for sets tensors laid out stride elements apart (the padding gets values
// too), in one launch whatever the number of sets: set k is drawn with seed + k.
void fill_channels_sets(void* x, bnorm_dtype_t t, bnorm_layout_t l, int64_t sets, int64_t stride,
                        int64_t numel, int64_t c, int64_t hw, uint64_t seed, cudaStream_t s);

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

  // a and ref: n values of dtype t, compared in float64.
  ErrorSums compare(const void* a, const void* ref, bnorm_dtype_t t, int64_t n, cudaStream_t s);
  ErrorSums compare(const float* a, const float* ref, int64_t n, cudaStream_t s) {
    return compare(a, ref, BNORM_DTYPE_F32, n, s);
  }
  // The number of the n values of dtype t whose bits differ between a and b.
  unsigned long long bitwise_differences(const void* a, const void* b, bnorm_dtype_t t, int64_t n,
                                         cudaStream_t s);

 private:
  void* scratch_ = nullptr;
};

}  // namespace bnorm_bench
