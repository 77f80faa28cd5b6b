// Index arithmetic of the kernels, checked on the CPU: the fast divisor against plain
// division, and the NCHW offsets against their definition, including past 2^31.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

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

// ---- the kernels' vector index paths, past 2^31 --------------------------------------
// Index32/Index64 (channel_reduce.cuh) and MapIndex32/MapIndex64 (channel_map.cuh) are
// these functions. Checked by breaking them: truncating v to 32 bits in the 64-bit path
// fails Offset64PastTwoToThe31, truncating the offset to 32 bits fails three tests, and
// a fits_index32 bound of 2^32 fails Fits32Boundary and Index32WrapsPastTheBound.

namespace {

// The definition: vector v of channel c holds values [v*vec, v*vec + vec) of the
// channel's row-major range; value m of the channel is at ((m / hw) * C + c) * hw + m % hw.
int64_t reference_vector_offset(int64_t v, int64_t c, int64_t c_total, int64_t hw, int vec) {
  const __int128 m = static_cast<__int128>(v) * vec;
  const __int128 off = ((m / hw) * c_total + c) * hw + m % hw;
  return static_cast<int64_t>(off);
}

// Vector indices worth checking in [0, count): both ends, every power-of-two boundary,
// around 2^31 and 2^32, and random ones.
std::vector<int64_t> probe_indices(int64_t count, uint64_t seed) {
  std::vector<int64_t> v = {0, 1, count - 1, count - 2, count / 2};
  for (int b = 1; b < 63; ++b) {
    const int64_t p = int64_t{1} << b;
    for (int64_t d : {-1, 0, 1})
      if (p + d >= 0 && p + d < count) v.push_back(p + d);
  }
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> u(0, count - 1);
  for (int i = 0; i < 2000; ++i) v.push_back(u(rng));
  return v;
}

}  // namespace

TEST(VectorIndex, Fits32Boundary) {
  EXPECT_TRUE(bnorm::fits_index32((int64_t{1} << 31) - 1));
  EXPECT_FALSE(bnorm::fits_index32(int64_t{1} << 31));
  EXPECT_FALSE(bnorm::fits_index32(int64_t{1} << 40));
}

TEST(VectorIndex, Offset64PastTwoToThe31) {
  // Channels of 3e9 and 1e10 values (past 2^31 and 2^33 vectors), offsets past 2^35;
  // hw not a power of two, and the odd channel counts of real layers.
  struct Case {
    int64_t n, c, hw;
    int vec;
  };
  for (const Case& k : {Case{3000, 1, 1000000, 1}, Case{3000, 1, 1000000, 4}, Case{10000, 3, 1000000, 4},
                        Case{(int64_t{1} << 31) + 5, 7, 3, 1}, Case{1 << 20, 5, 4100, 4}, Case{5, 2, (int64_t{1} << 32) + 4, 4}}) {
    const int64_t count = k.n * k.hw / k.vec;
    for (int64_t c : {int64_t{0}, k.c - 1}) {
      for (int64_t v : probe_indices(count, static_cast<uint64_t>(k.n + c))) {
        ASSERT_EQ(bnorm::channel_vector_offset(v, c, k.c, k.hw, k.vec), reference_vector_offset(v, c, k.c, k.hw, k.vec))
            << "n=" << k.n << " c=" << c << "/" << k.c << " hw=" << k.hw << " vec=" << k.vec << " v=" << v;
      }
      // The last vector ends at the channel's last value.
      const int64_t last = bnorm::channel_vector_offset(count - 1, c, k.c, k.hw, k.vec) + k.vec - 1;
      EXPECT_EQ(last, ((k.n - 1) * k.c + c) * k.hw + k.hw - 1);
    }
  }
}

TEST(VectorIndex, Index32EqualsIndex64BelowTheBound) {
  // The launcher takes the 32-bit path while vec_count < 2^31: up to there it must agree
  // with the 64-bit path, including the last vectors and hw/vec up to 2^31 - 1.
  struct Case {
    int64_t n, c, hw;
    int vec;
  };
  for (const Case& k : {Case{2147, 3, 1000000, 1}, Case{8589, 3, 1000000, 4}, Case{1, 1, (int64_t{1} << 31) - 1, 1},
                        Case{2, 5, (int64_t{1} << 30) - 1, 1}, Case{(int64_t{1} << 31) / 49 - 1, 64, 49, 1},
                        Case{7, 2, 4 * 12544, 4}}) {
    const int64_t count = k.n * k.hw / k.vec;
    ASSERT_TRUE(bnorm::fits_index32(count)) << count;
    const bnorm::FastDivmod hw_vec(static_cast<uint32_t>(k.hw / k.vec));
    for (int64_t v : probe_indices(count, static_cast<uint64_t>(count)))
      for (int64_t c : {int64_t{0}, k.c - 1})
        ASSERT_EQ(bnorm::channel_vector_offset(static_cast<uint32_t>(v), c, k.c, k.hw, k.vec, hw_vec),
                  bnorm::channel_vector_offset(v, c, k.c, k.hw, k.vec))
            << "hw=" << k.hw << " vec=" << k.vec << " v=" << v;
  }
}

TEST(VectorIndex, Index32WrapsPastTheBound) {
  // Why the launchers switch: at 2^31 vectors and beyond the 32-bit path is wrong (the
  // multiply-high division is exact only below 2^31, and the index itself wraps at 2^32).
  const int64_t hw = 1000000, c_total = 1;
  const bnorm::FastDivmod hw_vec(static_cast<uint32_t>(hw));
  int wrong = 0;
  for (int64_t v : {int64_t{1} << 32, (int64_t{1} << 32) + 12345, (int64_t{3} << 31) + 7})
    if (bnorm::channel_vector_offset(static_cast<uint32_t>(v), 0, c_total, hw, 1, hw_vec) !=
        bnorm::channel_vector_offset(v, 0, c_total, hw, 1))
      ++wrong;
  EXPECT_EQ(wrong, 3);
  EXPECT_FALSE(bnorm::fits_index32(int64_t{1} << 32));
}

TEST(VectorIndex, ChannelOfVectorPastTwoToThe31) {
  struct Case {
    int64_t n, c, hw;
    int vec;
  };
  for (const Case& k : {Case{800, 3, 1000000, 1}, Case{800, 3, 1000000, 4}, Case{64, 4096, 9216, 4},
                        Case{64, 4096, 9216, 1}, Case{3, 1000003, 1001, 1}}) {
    const int64_t hw_vec = k.hw / k.vec;
    const int64_t count = k.n * k.c * hw_vec;
    const bnorm::FastDivmod hw_div(static_cast<uint32_t>(hw_vec)), c_div(static_cast<uint32_t>(k.c));
    for (int64_t v : probe_indices(count, static_cast<uint64_t>(k.c))) {
      const int64_t expected = static_cast<int64_t>((static_cast<__int128>(v) * k.vec / k.hw) % k.c);
      ASSERT_EQ(bnorm::vector_channel(v, hw_vec, k.c), expected) << "v=" << v;
      if (bnorm::fits_index32(v + 1))
        ASSERT_EQ(bnorm::vector_channel(static_cast<uint32_t>(v), hw_div, c_div), expected) << "v=" << v;
    }
  }
}
