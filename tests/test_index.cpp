// Index arithmetic of the kernels, checked on the CPU: the fast divisor against plain
// division, and the NCHW offsets against their definition, including past 2^31.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>

#include "kernels/index.cuh"

namespace {

using bnorm::FastDivmod;

void expect_divides(uint32_t d, uint32_t n) {
  const FastDivmod f(d);
  uint32_t q, r;
  f.divmod(n, q, r);
  ASSERT_EQ(q, n / d) << "n=" << n << " d=" << d;
  ASSERT_EQ(r, n % d) << "n=" << n << " d=" << d;
}

TEST(FastDivmod, SmallDivisorsAllResidues) {
  for (uint32_t d = 1; d <= 1024; ++d)
    for (uint32_t n = 0; n < 4 * d + 7; ++n) expect_divides(d, n);
}

TEST(FastDivmod, EdgesOfTheDividendRange) {
  const uint32_t top = (1u << 31) - 1;
  for (uint32_t d : {1u, 2u, 3u, 7u, 49u, 196u, 784u, 3136u, 12544u, 65535u, 65536u, 65537u,
                     (1u << 30) - 1, 1u << 30, (1u << 30) + 1, top - 1, top}) {
    for (uint32_t n : {0u, 1u, d - 1, d, d + 1, top - d, top - 1, top}) expect_divides(d, n);
    // Just below and at every multiple near the top, where rounding errors would show.
    for (uint32_t k = top / d; k + 3 > top / d && k > 0; --k) {
      const uint64_t m = static_cast<uint64_t>(k) * d;
      if (m > top) continue;
      expect_divides(d, static_cast<uint32_t>(m));
      expect_divides(d, static_cast<uint32_t>(m - 1));
    }
  }
}

TEST(FastDivmod, RandomDivisorsAndDividends) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<uint32_t> dist(1, (1u << 31) - 1);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t d = i % 2 ? dist(rng) : (dist(rng) % 5000) + 1;
    expect_divides(d, dist(rng));
  }
}

TEST(NchwOffset, VisitsEachElementOnce) {
  // Odd sizes: no dimension a multiple of a vector width.
  const int64_t n = 3, c = 5, hw = 7 * 9;
  std::set<int64_t> seen;
  for (int64_t ch = 0; ch < c; ++ch) {
    const FastDivmod fd(static_cast<uint32_t>(hw));
    for (int64_t m = 0; m < n * hw; ++m) {
      const int64_t o = bnorm::nchw_offset(m, ch, c, hw);
      EXPECT_EQ(o, bnorm::nchw_offset(static_cast<uint32_t>(m), ch, c, fd));
      EXPECT_EQ(bnorm::nchw_channel(o, c, hw), ch);
      EXPECT_TRUE(seen.insert(o).second) << "offset " << o << " visited twice";
    }
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), n * c * hw);
  EXPECT_EQ(*seen.rbegin(), n * c * hw - 1);
}

TEST(NchwOffset, SixtyFourBitPastTwoToThe31) {
  // A channel of 2^32 + 3 values: rows and offsets must not wrap at 32 bits.
  const int64_t hw = 3, c = 4;
  const int64_t m = (int64_t{1} << 32) + 2;  // last value of a channel with n = (2^32+3)/3
  const int64_t row = m / hw, col = m % hw;
  for (int64_t ch = 0; ch < c; ++ch) {
    const int64_t o = bnorm::nchw_offset(m, ch, c, hw);
    EXPECT_EQ(o, (row * c + ch) * hw + col);
    EXPECT_GT(o, int64_t{1} << 34);
    EXPECT_EQ(bnorm::nchw_channel(o, c, hw), ch);
  }
}

}  // namespace
