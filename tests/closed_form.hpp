// A tensor whose every value and every statistic is known in closed form, for the 64-bit
// tests (test_cuda_large.cpp): billions of values are filled on the device, and the
// outputs are checked against exact references without a float64 pass over them.
//
//   x(n, c, i)  = a(c) + U(n) + R(i)     a(c) = 1 + c,    U(n) = n/4 + 16 (n mod 5),
//                                        R(i) = 32 ((i mod 7) - 3)
//   dy(n, c, i) = P(n) + Q(i)            P(n) = 1 + n/1024 + (n mod 5)/8,
//                                        Q(i) = ((i mod 3) - 1)/8
//
// Every value is exact in float32 for n < 2^17 and c < 2^15 (multiples of 1/4 below
// 2^16, of 1/1024 below 2^8). A value read from a neighbouring row, column or channel
// differs by at least 1% of the channel's standard deviation for every shape the tests
// use (9000 rows at most), so that even an off-by-one index shows
// in y and dx beyond the tolerances; no index error maps a value onto itself except by
// whole multiples of 5 rows and 21 columns at once. The row ramp makes a channel's mean
// depend on which rows were read (a wrap past 2^31 re-reads early rows and moves the mean
// by a large fraction of a standard deviation), dy rising with x keeps sum(dy * (x -
// mean)) far from zero (dgamma well conditioned), and dy's periodic terms are not
// proportional to x's, so dx = a (dy - mean(dy) - xhat * cov) keeps a row and column
// dependence for the checks to see.
//
// Both terms of x vary over a full grid (every row has every column), so per channel
//   mean = a + mean(U) + mean(R),   var = var(U) + var(R)
// and the sums backward needs separate likewise; closed_form_sums() computes them from
// N + hw terms in float64.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define BNORM_TEST_HD __host__ __device__
#else
#define BNORM_TEST_HD
#endif

namespace bnorm_test {

struct ClosedForm {
  int64_t n = 0, c = 0, hw = 0;

  BNORM_TEST_HD static double a(int64_t ch) { return 1.0 + static_cast<double>(ch); }
  BNORM_TEST_HD static double u(int64_t row) {
    return 0.25 * static_cast<double>(row) + 16.0 * static_cast<double>(row % 5);
  }
  BNORM_TEST_HD static double r(int64_t i) { return 32.0 * static_cast<double>(i % 7 - 3); }
  BNORM_TEST_HD static double p(int64_t row) {
    return 1.0 + static_cast<double>(row) / 1024.0 + 0.125 * static_cast<double>(row % 5);
  }
  BNORM_TEST_HD static double q(int64_t i) { return 0.125 * static_cast<double>(i % 3 - 1); }
  BNORM_TEST_HD float x(int64_t row, int64_t ch, int64_t i) const { return static_cast<float>(a(ch) + u(row) + r(i)); }
  BNORM_TEST_HD float dy(int64_t row, int64_t i) const { return static_cast<float>(p(row) + q(i)); }

  // NCHW element offset of (row, channel, column).
  BNORM_TEST_HD int64_t offset(int64_t row, int64_t ch, int64_t i) const { return (row * c + ch) * hw + i; }
  BNORM_TEST_HD int64_t numel() const { return n * c * hw; }
  BNORM_TEST_HD int64_t m() const { return n * hw; }

  static float gamma(int64_t ch) { return 1.0f + 0.25f * static_cast<float>(ch % 3); }
  static float beta(int64_t ch) { return 0.125f * static_cast<float>(ch % 5) - 0.25f; }
};

// Sums over rows and over columns, from which every per-channel statistic follows.
struct ClosedFormSums {
  double su = 0, suu = 0;          // sum over rows of U, U^2
  double sr = 0, srr = 0;          // sum over columns of R, R^2
  double sp = 0, spp = 0, spu = 0;  // over rows: P, P^2, P*U
  double sq = 0, sqq = 0, sqr = 0;  // over columns: Q, Q^2, Q*R
};

inline ClosedFormSums closed_form_sums(const ClosedForm& f) {
  ClosedFormSums s;
  for (int64_t row = 0; row < f.n; ++row) {
    const double u = ClosedForm::u(row), p = ClosedForm::p(row);
    s.su += u;
    s.suu += u * u;
    s.sp += p;
    s.spp += p * p;
    s.spu += p * u;
  }
  for (int64_t i = 0; i < f.hw; ++i) {
    const double r = ClosedForm::r(i), q = ClosedForm::q(i);
    s.sr += r;
    s.srr += r * r;
    s.sq += q;
    s.sqq += q * q;
    s.sqr += q * r;
  }
  return s;
}

// Channel ch's exact statistics.
struct ClosedFormChannel {
  double mean, var;  // var biased (over M)
};

inline ClosedFormChannel closed_form_channel(const ClosedForm& f, const ClosedFormSums& s, int64_t ch) {
  const double n = static_cast<double>(f.n), hw = static_cast<double>(f.hw);
  const double mu = s.su / n, mr = s.sr / hw;
  const double var_u = s.suu / n - mu * mu, var_r = s.srr / hw - mr * mr;
  return {ClosedForm::a(ch) + mu + mr, var_u + var_r};
}

// Backward's sums for channel ch with saved mean sm: sum(dy), sum(dy^2), and
// sum(dy * (x - sm)) and sum((x - sm)^2), all over the channel's M values.
struct ClosedFormGrad {
  double sum_dy, sum_dy2, sum_dy_xc, sum_xc2;
};

inline ClosedFormGrad closed_form_grad(const ClosedForm& f, const ClosedFormSums& s, int64_t ch, double sm) {
  const double n = static_cast<double>(f.n), hw = static_cast<double>(f.hw);
  const double k = ClosedForm::a(ch) - sm;  // x - sm = k + U(row) + R(i)
  ClosedFormGrad g;
  g.sum_dy = hw * s.sp + n * s.sq;
  g.sum_dy2 = hw * s.spp + 2.0 * s.sp * s.sq + n * s.sqq;
  // sum over (row, i) of (P + Q)(k + U + R)
  g.sum_dy_xc = hw * k * s.sp + hw * s.spu + s.sp * s.sr + n * k * s.sq + s.sq * s.su + n * s.sqr;
  // sum of (k + U + R)^2
  g.sum_xc2 = n * hw * k * k + hw * s.suu + n * s.srr + 2.0 * k * (hw * s.su + n * s.sr) + 2.0 * s.su * s.sr;
  return g;
}

// Places to read back: runs of values at the start, middle and end of rows of the first,
// a middle and the last channel, at the first, middle and last rows, and around every
// flat element offset and every per-channel value index that is a power of two from 2^31
// on (where a 32-bit index would wrap), plus scattered single values.
struct Window {
  int64_t row, ch, i0, len;
};

inline std::vector<Window> closed_form_windows(const ClosedForm& f, int64_t len = 64) {
  std::vector<Window> w;
  const auto add = [&](int64_t row, int64_t ch, int64_t i0) {
    if (row < 0 || row >= f.n || ch < 0 || ch >= f.c) return;
    i0 = i0 < 0 ? 0 : (i0 >= f.hw ? f.hw - 1 : i0);
    w.push_back({row, ch, i0, i0 + len <= f.hw ? len : f.hw - i0});
  };
  for (int64_t ch : {int64_t{0}, f.c / 2, f.c - 1})
    for (int64_t row : {int64_t{0}, f.n / 2, f.n - 1})
      for (int64_t i0 : {int64_t{0}, f.hw / 2, f.hw - len}) add(row, ch, i0);
  for (int b = 31; b < 40; ++b) {
    const int64_t e = (int64_t{1} << b) - len / 2;  // flat element offset
    if (e < f.numel()) add(e / f.hw / f.c, (e / f.hw) % f.c, e % f.hw);
    const int64_t m = (int64_t{1} << b) - len / 2;  // value index within a channel
    if (m < f.m())
      for (int64_t ch : {int64_t{0}, f.c - 1}) add(m / f.hw, ch, m % f.hw);
    if (4 * m < f.m())  // vector index 2^b of a 4-wide path
      for (int64_t ch : {int64_t{0}, f.c - 1}) add(4 * m / f.hw, ch, (4 * m) % f.hw);
  }
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (int k = 0; k < 200; ++k) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    w.push_back({static_cast<int64_t>(h % static_cast<uint64_t>(f.n)),
                 static_cast<int64_t>((h >> 7) % static_cast<uint64_t>(f.c)),
                 static_cast<int64_t>((h >> 29) % static_cast<uint64_t>(f.hw)), 1});
  }
  return w;
}

}  // namespace bnorm_test
