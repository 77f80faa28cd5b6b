// Reproducible random numbers for initialization and shuffling.
//
// std::mt19937's output sequence is fixed by the C++ standard, but the distributions
// (uniform_real_distribution, shuffle) are not: libstdc++ and libc++ give different
// numbers. Drawing from the raw engine here makes a seed mean the same run everywhere.
#pragma once

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace lenet {

// Uniform in [0, 1) with 24 random bits: exactly the floats a float can hold there.
inline float uniform01(std::mt19937& g) { return static_cast<float>(g() >> 8) * 0x1.0p-24f; }

inline float uniform(std::mt19937& g, float lo, float hi) { return lo + (hi - lo) * uniform01(g); }

// Uniform in [0, n) for 0 < n <= 2^32, without modulo bias (rejection sampling).
inline uint32_t uniform_below(std::mt19937& g, uint64_t n) {
  const uint64_t range = uint64_t{1} << 32;
  const uint64_t limit = range - range % n;  // largest multiple of n within 2^32
  uint64_t r;
  do r = g();
  while (r >= limit);
  return static_cast<uint32_t>(r % n);
}

// Fisher-Yates.
template <class T>
void shuffle(std::vector<T>& v, std::mt19937& g) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[uniform_below(g, i)]);
}

}  // namespace lenet
