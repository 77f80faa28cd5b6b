// Inputs at the numerical edges, shared by the CPU tests (test_edges.cpp) and the GPU
// tests (test_cuda_edges.cpp): a non-finite value in one channel, constant channels,
// large means, denormal-sized values; and the per-channel comparisons they need.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "bnorm/bnorm.h"
#include "reference.hpp"

namespace bnorm_test {

inline bnorm_tensor_t nhwc(int64_t n, int64_t c, int64_t h, int64_t w) {
  return bnorm_tensor_t{n, c, h, w, BNORM_LAYOUT_NHWC, BNORM_DTYPE_F32};
}

// Values of channel c of a tensor (per-channel arrays: c itself).
inline std::vector<int64_t> channel_offsets(const bnorm_tensor_t& d, int64_t c) {
  std::vector<int64_t> o(per_channel(d));
  for (int64_t j = 0; j < per_channel(d); ++j) o[j] = offset(d, c, j);
  return o;
}

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Whether channel c of a and b agree bit for bit.
inline bool channel_bitwise_equal(const bnorm_tensor_t& d, const std::vector<float>& a, const std::vector<float>& b,
                                  int64_t c) {
  for (int64_t o : channel_offsets(d, c))
    if (!same_bits(a[o], b[o])) return false;
  return true;
}

// Whether every value of channel c is NaN or infinite.
inline bool channel_all_nonfinite(const bnorm_tensor_t& d, const std::vector<float>& a, int64_t c) {
  for (int64_t o : channel_offsets(d, c))
    if (std::isfinite(a[o])) return false;
  return true;
}

// The specials a value of x (or dy) can be.
inline std::vector<float> nonfinite_values() {
  return {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
          -std::numeric_limits<float>::infinity()};
}

// Where the special goes: a middle value of the channel, not its first (the two-pass
// and persistent kernels pivot on the first value; pivot_too puts it there instead).
inline int64_t special_offset(const bnorm_tensor_t& d, int64_t c, bool pivot_too) {
  return offset(d, c, pivot_too ? 0 : per_channel(d) / 2);
}

// Channel c constant at values[c % size]; others random.
inline std::vector<float> constant_channels(const bnorm_tensor_t& d, const std::vector<float>& values,
                                            uint64_t seed) {
  std::vector<float> x = random_tensor(d, seed);
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t o : channel_offsets(d, c)) x[o] = values[c % values.size()];
  return x;
}

// |mean|/std = ratio in every channel: mean +-ratio * (1 + c/8) (std 1 times that
// factor), so channels differ. x is rounded to float32 here: the reference sees the same
// quantised values (ulp(1e6) = 1/16 of a standard deviation), so the comparison measures
// the algorithm, not the storage.
inline std::vector<float> large_mean_tensor(const bnorm_tensor_t& d, double ratio, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<float> x(numel(d));
  for (int64_t c = 0; c < d.c; ++c) {
    const double scale = 1.0 + static_cast<double>(c) / 8.0;
    const double mean = (c % 2 ? -ratio : ratio) * scale;
    for (int64_t o : channel_offsets(d, c)) x[o] = static_cast<float>(mean + scale * nd(rng));
  }
  return x;
}

// Denormal-sized values: channel c in (c+1) * [0.1, 1.9] * 1e-39, all below the
// smallest normal float (1.18e-38) for c < 6.
inline std::vector<float> denormal_tensor(const bnorm_tensor_t& d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ud(-0.9, 0.9);
  std::vector<float> x(numel(d));
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t o : channel_offsets(d, c)) x[o] = static_cast<float>((c % 6 + 1) * 1e-39 * (1.0 + ud(rng)));
  return x;
}

inline bool is_denormal(float v) { return v != 0.0f && std::fabs(v) < std::numeric_limits<float>::min(); }

// Per-channel relative error of a per-channel vector (the statistics).
inline double max_rel_error(const std::vector<float>& a, const std::vector<double>& ref) {
  double worst = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    const double den = std::fabs(ref[i]) > 0 ? std::fabs(ref[i]) : 1.0;
    worst = std::max(worst, std::fabs(a[i] - ref[i]) / den);
  }
  return worst;
}

// One call of each op on host buffers (a CPU handle), outputs poisoned before the call.
struct Train {
  std::vector<float> y, sm, si, rm, rv;
};

inline Train train(bnorm_handle_t h, const bnorm_tensor_t& d, const std::vector<float>& x, const float* gamma,
            const float* beta, const std::vector<float>& rm0, const std::vector<float>& rv0) {
  Train t{poisoned(numel(d)), poisoned(d.c), poisoned(d.c), rm0, rv0};
  EXPECT_EQ(bnorm_forward_training(h, &d, x.data(), t.y.data(), gamma, beta, 0.1f, 1e-5f, t.rm.data(), t.rv.data(),
                                   t.sm.data(), t.si.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  return t;
}

inline std::vector<float> infer(bnorm_handle_t h, const bnorm_tensor_t& d, const std::vector<float>& x, const float* gamma,
                         const float* beta, const std::vector<float>& rm, const std::vector<float>& rv) {
  std::vector<float> y = poisoned(numel(d));
  EXPECT_EQ(bnorm_forward_inference(h, &d, x.data(), y.data(), gamma, beta, rm.data(), rv.data(), 1e-5f),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  return y;
}

struct Back {
  std::vector<float> dx, dg, db;
};

inline Back back(bnorm_handle_t h, const bnorm_tensor_t& d, const std::vector<float>& x, const std::vector<float>& dy,
          const float* gamma, const std::vector<float>& sm, const std::vector<float>& si) {
  Back b{poisoned(numel(d)), poisoned(d.c), poisoned(d.c)};
  EXPECT_EQ(bnorm_backward(h, &d, x.data(), dy.data(), gamma, sm.data(), si.data(), b.dx.data(), b.dg.data(),
                           b.db.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  return b;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace bnorm_test
