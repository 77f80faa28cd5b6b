// What the CPU backend's files share: storage conversions (round to nearest even, as
// the kernels), the dispatch on a tensor's dtype, and the order in which a channel's
// values are visited. Only host/cpu/*.cpp include this.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "bnorm/bnorm.h"

namespace bnorm::cpu {

// Storage conversions (round to nearest even on the way back), the same as the kernels'.
inline double load(float v) { return v; }
inline double load(__half v) { return __half2float(v); }
inline double load(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
T store(double v);
template <>
inline float store<float>(double v) { return static_cast<float>(v); }
template <>
inline __half store<__half>(double v) { return __float2half_rn(static_cast<float>(v)); }
template <>
inline __nv_bfloat16 store<__nv_bfloat16>(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }

// Calls f(T{}) for the storage type of d.
template <class F>
void with_dtype(const bnorm_tensor_t& d, F&& f) {
  switch (d.dtype) {
    case BNORM_DTYPE_F32: f(float{}); break;
    case BNORM_DTYPE_F16: f(__half{}); break;
    case BNORM_DTYPE_BF16: f(__nv_bfloat16{}); break;
  }
}

// Visits the offsets of channel c's values in storage order of its rows, which is the
// order the statistics are accumulated in (fixed, so results are repeatable).
template <class F>
void for_each_in_channel(const bnorm_tensor_t& d, int64_t c, F&& f) {
  const int64_t hw = d.h * d.w;
  if (d.layout == BNORM_LAYOUT_NCHW) {
    for (int64_t n = 0; n < d.n; ++n) {
      const int64_t base = (n * d.c + c) * hw;
      for (int64_t i = 0; i < hw; ++i) f(base + i);
    }
  } else {
    const int64_t rows = d.n * hw;
    for (int64_t r = 0; r < rows; ++r) f(r * d.c + c);
  }
}

// Offset of value (sample n, channel c, place i of h*w) in either layout.
inline int64_t offset_of(const bnorm_tensor_t& d, int64_t n, int64_t c, int64_t i) {
  const int64_t hw = d.h * d.w;
  return d.layout == BNORM_LAYOUT_NCHW ? (n * d.c + c) * hw + i : (n * hw + i) * d.c + c;
}

}  // namespace bnorm::cpu
