// Index arithmetic shared by the kernels and the CPU tests: fast division by a
// run-time constant, and the offsets of a channel's values in NCHW.
//
// The kernels walk a channel's M = n*hw values as one flat range m in [0, M) and split
// m into (row n, column i) = divmod(m, hw). A hardware 32-bit division is about twenty
// instructions; the multiply-high form below is three, which keeps the address math of
// a memory-bound loop off the critical path. It is exact for dividends below 2^31, so
// launchers check the range and take the 64-bit path (plain division) beyond it.
#pragma once

#include <cstdint>

#include "welford.cuh"  // BNORM_HD

namespace bnorm {

BNORM_HD uint32_t umulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Granlund & Montgomery (1994), "Division by invariant integers using multiplication",
// in the round-up form CUTLASS uses: for 2 <= d < 2^31 let l = ceil(log2(d)) and
// mul = ceil(2^(31+l) / d), which fits 32 bits because d > 2^(l-1); then for every
// 0 <= n < 2^31, n / d == umulhi(n, mul) >> (l - 1).
struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t mul = 0;
  uint32_t shift = 0;

  FastDivmod() = default;
  explicit FastDivmod(uint32_t d) : divisor(d < 1 ? 1 : d) {
    if (divisor == 1) return;
    uint32_t l = 0;
    while ((uint64_t{1} << l) < divisor) ++l;
    mul = static_cast<uint32_t>(((uint64_t{1} << (31 + l)) + divisor - 1) / divisor);
    shift = l - 1;
  }

  BNORM_HD uint32_t div(uint32_t n) const {
    return divisor == 1 ? n : (umulhi32(n, mul) >> shift);
  }

  BNORM_HD void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

// Offset of value m (0 <= m < n*hw) of channel c in an NCHW tensor with c_total
// channels: row n = m / hw lives at (n*C + c)*hw.
BNORM_HD int64_t nchw_offset(int64_t m, int64_t c, int64_t c_total, int64_t hw) {
  const int64_t n = m / hw;
  const int64_t i = m - n * hw;
  return (n * c_total + c) * hw + i;
}

// The same with a 32-bit fast divisor, valid while m < 2^31.
BNORM_HD int64_t nchw_offset(uint32_t m, int64_t c, int64_t c_total, const FastDivmod& hw) {
  uint32_t n, i;
  hw.divmod(m, n, i);
  return (static_cast<int64_t>(n) * c_total + c) * static_cast<int64_t>(hw.divisor) + i;
}

// The inverse used by the elementwise kernels: the channel of flat element e of an
// NCHW tensor.
BNORM_HD int64_t nchw_channel(int64_t e, int64_t c_total, int64_t hw) {
  return (e / hw) % c_total;
}

// ---- the kernels' vector index paths (channel_reduce.cuh, channel_map.cuh) ----------
// Launchers take the 32-bit path while the count of vectors it indexes fits, and the
// 64-bit one past it. The functions live here, not in the kernel headers, so that the
// CPU tests check them past 2^31 (tests/test_index.cpp).

// Whether a range of `count` vector indices can take the 32-bit (FastDivmod) path.
BNORM_HD bool fits_index32(int64_t count) { return count < (int64_t{1} << 31); }

// Offset of vector v of channel c, each vector `vec` values of one row (hw % vec == 0):
// row v / (hw/vec), column v % (hw/vec).
BNORM_HD int64_t channel_vector_offset(int64_t v, int64_t c, int64_t c_total, int64_t hw, int vec) {
  const int64_t hwv = hw / vec;
  const int64_t row = v / hwv;
  const int64_t col = v - row * hwv;
  return (row * c_total + c) * hw + col * vec;
}

// The same with hw_vec = FastDivmod(hw/vec); exact while v < 2^31.
BNORM_HD int64_t channel_vector_offset(uint32_t v, int64_t c, int64_t c_total, int64_t hw, int vec,
                                       const FastDivmod& hw_vec) {
  uint32_t row, col;
  hw_vec.divmod(v, row, col);
  return (static_cast<int64_t>(row) * c_total + c) * hw + static_cast<int64_t>(col) * vec;
}

// The channel of flat vector v of an NCHW tensor with hw_vec vectors per row.
BNORM_HD int64_t vector_channel(int64_t v, int64_t hw_vec, int64_t c_total) {
  return (v / hw_vec) % c_total;
}

// The same with fast divisors by hw_vec and by C; exact while v < 2^31.
BNORM_HD int64_t vector_channel(uint32_t v, const FastDivmod& hw_vec, const FastDivmod& c_total) {
  const uint32_t row = hw_vec.div(v);
  uint32_t q, c;
  c_total.divmod(row, q, c);
  return c;
}

}  // namespace bnorm
