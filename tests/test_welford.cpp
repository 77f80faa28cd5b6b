// The shared Welford/Chan code (kernels/welford.cuh), on the CPU: the same functions the
// kernels run, in float and double.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/welford.cuh"

namespace {

using bnorm::Welford;

std::vector<double> sample(size_t n, double mean, double std, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(mean, std);
  std::vector<double> v(n);
  for (auto& e : v) e = nd(rng);
  return v;
}

void two_pass(const std::vector<double>& v, double* mean, double* m2) {
  double s = 0;
  for (double e : v) s += e;
  *mean = s / v.size();
  *m2 = 0;
  for (double e : v) *m2 += (e - *mean) * (e - *mean);
}

TEST(Welford, PushMatchesTwoPass) {
  const auto v = sample(10007, 3.0, 2.0, 1);
  Welford<double> s = bnorm::welford_empty<double>();
  for (double e : v) bnorm::welford_push(s, e);
  double mean, m2;
  two_pass(v, &mean, &m2);
  EXPECT_EQ(s.count, 10007.0);
  EXPECT_NEAR(s.mean, mean, 1e-12 * std::abs(mean));
  EXPECT_NEAR(s.m2, m2, 1e-10 * m2);
}

TEST(Welford, MergeOfAnySplitEqualsWhole) {
  const auto v = sample(1000, -7.0, 0.5, 2);
  double mean, m2;
  two_pass(v, &mean, &m2);
  for (size_t cut : {size_t{0}, size_t{1}, size_t{333}, size_t{999}, size_t{1000}}) {
    Welford<double> a = bnorm::welford_empty<double>(), b = bnorm::welford_empty<double>();
    for (size_t i = 0; i < v.size(); ++i) bnorm::welford_push(i < cut ? a : b, v[i]);
    const Welford<double> r = bnorm::welford_merge(a, b);
    EXPECT_EQ(r.count, 1000.0) << cut;
    EXPECT_NEAR(r.mean, mean, 1e-12 * std::abs(mean)) << cut;
    EXPECT_NEAR(r.m2, m2, 1e-10 * m2) << cut;
  }
}

TEST(Welford, ChunkStatisticsAreExactTwoPass) {
  const double v[8] = {1, 2, 3, 4, 5, 6, 7, 9};
  const Welford<double> s = bnorm::welford_of_chunk<double, 8>(v);
  EXPECT_EQ(s.count, 8.0);
  EXPECT_DOUBLE_EQ(s.mean, 37.0 / 8);
  double m2 = 0;
  for (double e : v) m2 += (e - 37.0 / 8) * (e - 37.0 / 8);
  EXPECT_DOUBLE_EQ(s.m2, m2);
}

// The reason Welford exists here: float32 state at |mean|/std = 1e4, accumulated in
// chunks of 16 and merged as the kernels do, keeps the variance to about 1e-3
// relative, where E[x^2] - E[x]^2 in float32 loses it entirely.
TEST(Welford, Float32StableAtLargeMean) {
  const auto v = sample(1 << 16, 1e4, 1.0, 3);
  std::vector<float> f(v.begin(), v.end());
  std::vector<double> fd(f.begin(), f.end());
  double mean, m2;
  two_pass(fd, &mean, &m2);

  // Shifted by the first value, as the statistics kernel does.
  const float pivot = f[0];
  Welford<float> s = bnorm::welford_empty<float>();
  for (size_t i = 0; i < f.size(); i += 16) {
    float chunk[16];
    for (int k = 0; k < 16; ++k) chunk[k] = f[i + k] - pivot;
    s = bnorm::welford_merge(s, bnorm::welford_of_chunk<float, 16>(chunk));
  }
  const double var = m2 / f.size();
  EXPECT_NEAR(s.m2 / s.count, var, 1e-3 * var);
  EXPECT_NEAR(s.mean + pivot, mean, 1e-3);

  float sum = 0, sumsq = 0;
  for (float e : f) {
    sum += e;
    sumsq += e * e;
  }
  const float naive = sumsq / f.size() - (sum / f.size()) * (sum / f.size());
  EXPECT_GT(std::abs(naive - var), 0.5 * var) << "the naive formula should fail here";
}

TEST(Welford, FinalizeStats) {
  Welford<double> s{4.0, 2.0, 8.0};  // var 2, unbiased 8/3
  const bnorm::ChannelStats st = bnorm::finalize_stats<double>(s, 1e-5);
  EXPECT_FLOAT_EQ(st.mean, 2.0f);
  EXPECT_FLOAT_EQ(st.var_biased, 2.0f);
  EXPECT_FLOAT_EQ(st.var_unbiased, 8.0f / 3.0f);
  EXPECT_FLOAT_EQ(st.invstd, static_cast<float>(1.0 / std::sqrt(2.0 + 1e-5)));
  // A rounding-negative M2 must not produce NaN.
  const bnorm::ChannelStats z = bnorm::finalize_stats<float>(Welford<float>{3.0f, 1.0f, -1e-9f}, 1e-5f);
  EXPECT_TRUE(std::isfinite(z.invstd));
  EXPECT_EQ(z.var_biased, 0.0f);
  EXPECT_FLOAT_EQ(bnorm::blend_running(1.0f, 3.0f, 0.25f), 1.5f);
}

// A NaN or Inf among a channel's values leaves m2 NaN (Inf - Inf); the variance clamp
// must keep it NaN, so that invstd and the running variance show the poisoning as the
// CPU backend does. (The clamp was `var > 0 ? var : 0`, which maps NaN to 0: the GPU
// then reported save_invstd = 1/sqrt(eps) and a finite running variance for a channel
// holding a NaN.) Negative rounding residue is still clamped to 0.
TEST(Welford, FinalizeKeepsNaNAndClampsNegatives) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bnorm::ChannelStats poisoned = bnorm::finalize_stats<float>(Welford<float>{4.0f, 1.0f, nan}, 1e-5f);
  EXPECT_TRUE(std::isnan(poisoned.var_biased));
  EXPECT_TRUE(std::isnan(poisoned.var_unbiased));
  EXPECT_TRUE(std::isnan(poisoned.invstd));
  Welford<float> inf{0.0f, 0.0f, 0.0f};
  for (float v : {1.0f, std::numeric_limits<float>::infinity(), 2.0f}) {
    const float chunk[1] = {v};
    inf = bnorm::welford_merge(inf, bnorm::welford_of_chunk<float, 1>(chunk));
  }
  EXPECT_FALSE(std::isfinite(bnorm::finalize_stats<float>(inf, 1e-5f).invstd));
  const bnorm::ChannelStats residue = bnorm::finalize_stats<float>(Welford<float>{4.0f, 1.0f, -1e-12f}, 1e-5f);
  EXPECT_EQ(residue.var_biased, 0.0f);
  EXPECT_EQ(residue.var_unbiased, 0.0f);
  EXPECT_FLOAT_EQ(residue.invstd, 1.0f / std::sqrt(1e-5f));
}

}  // namespace
