// Test helpers: an independent float64 reference (plain two-pass sums, deliberately not
// the library's Welford code), random inputs, NaN poisoning, and relative-error checks.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>

#include "bnorm/bnorm.h"

namespace bnorm_test {

// ---- storage types: values are kept as float on the host and converted to a tensor's
// dtype (round to nearest even) at the API boundary.

inline size_t elem_size(bnorm_dtype_t t) { return t == BNORM_DTYPE_F32 ? 4 : 2; }

inline const char* dtype_name(bnorm_dtype_t t) {
  return t == BNORM_DTYPE_F32 ? "f32" : t == BNORM_DTYPE_F16 ? "f16" : "bf16";
}

inline std::vector<unsigned char> to_storage(const std::vector<float>& v, bnorm_dtype_t t) {
  std::vector<unsigned char> b(v.size() * elem_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == BNORM_DTYPE_F32) {
      std::memcpy(&b[4 * i], &v[i], 4);
    } else if (t == BNORM_DTYPE_F16) {
      const __half h = __float2half_rn(v[i]);
      std::memcpy(&b[2 * i], &h, 2);
    } else {
      const __nv_bfloat16 h = __float2bfloat16_rn(v[i]);
      std::memcpy(&b[2 * i], &h, 2);
    }
  }
  return b;
}

inline std::vector<float> from_storage(const unsigned char* b, size_t n, bnorm_dtype_t t) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == BNORM_DTYPE_F32) {
      std::memcpy(&v[i], b + 4 * i, 4);
    } else if (t == BNORM_DTYPE_F16) {
      __half h;
      std::memcpy(&h, b + 2 * i, 2);
      v[i] = __half2float(h);
    } else {
      __nv_bfloat16 h;
      std::memcpy(&h, b + 2 * i, 2);
      v[i] = __bfloat162float(h);
    }
  }
  return v;
}

inline std::vector<float> from_storage(const std::vector<unsigned char>& b, bnorm_dtype_t t) {
  return from_storage(b.data(), b.size() / elem_size(t), t);
}

// The values a tensor of dtype t can hold nearest to v.
inline std::vector<float> quantized(const std::vector<float>& v, bnorm_dtype_t t) {
  return from_storage(to_storage(v, t), t);
}

// Relative error bound of one rounding to dtype t, for tolerances: the unit roundoff.
inline double unit_roundoff(bnorm_dtype_t t) {
  return t == BNORM_DTYPE_F32 ? 0x1p-24 : t == BNORM_DTYPE_F16 ? 0x1p-11 : 0x1p-8;
}

inline int64_t numel(const bnorm_tensor_t& d) { return d.n * d.c * d.h * d.w; }
inline int64_t per_channel(const bnorm_tensor_t& d) { return d.n * d.h * d.w; }

inline bnorm_tensor_t nchw(int64_t n, int64_t c, int64_t h, int64_t w, bnorm_dtype_t t = BNORM_DTYPE_F32) {
  return bnorm_tensor_t{n, c, h, w, BNORM_LAYOUT_NCHW, t};
}

// Offset of the j-th value (in row order) of channel c.
inline int64_t offset(const bnorm_tensor_t& d, int64_t c, int64_t j) {
  const int64_t hw = d.h * d.w;
  if (d.layout == BNORM_LAYOUT_NCHW) return ((j / hw) * d.c + c) * hw + j % hw;
  return j * d.c + c;
}

struct Reference {
  std::vector<double> y, mean, invstd, var_unbiased, running_mean, running_var;
  std::vector<double> dx, dgamma, dbeta;
};

// Forward training and its statistics in float64 by two-pass sums.
inline Reference reference_forward(const bnorm_tensor_t& d, const std::vector<float>& x,
                                   const float* gamma, const float* beta, double eps,
                                   const float* rm = nullptr, const float* rv = nullptr,
                                   double momentum = 0.0) {
  Reference r;
  const int64_t m = per_channel(d);
  r.y.assign(numel(d), 0.0);
  r.mean.assign(d.c, 0.0);
  r.invstd.assign(d.c, 0.0);
  r.var_unbiased.assign(d.c, 0.0);
  r.running_mean.assign(d.c, 0.0);
  r.running_var.assign(d.c, 0.0);
  for (int64_t c = 0; c < d.c; ++c) {
    double s = 0.0;
    for (int64_t j = 0; j < m; ++j) s += x[offset(d, c, j)];
    const double mean = s / m;
    double ss = 0.0;
    for (int64_t j = 0; j < m; ++j) {
      const double t = x[offset(d, c, j)] - mean;
      ss += t * t;
    }
    const double var = ss / m;
    const double invstd = 1.0 / std::sqrt(var + eps);
    const double g = gamma ? gamma[c] : 1.0, b = beta ? beta[c] : 0.0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t o = offset(d, c, j);
      r.y[o] = (x[o] - mean) * invstd * g + b;
    }
    r.mean[c] = mean;
    r.invstd[c] = invstd;
    r.var_unbiased[c] = m > 1 ? ss / (m - 1) : 0.0;
    if (rm) r.running_mean[c] = (1 - momentum) * rm[c] + momentum * mean;
    if (rv) r.running_var[c] = (1 - momentum) * rv[c] + momentum * r.var_unbiased[c];
  }
  return r;
}

// Backward from the given saved statistics, in float64.
inline Reference reference_backward(const bnorm_tensor_t& d, const std::vector<float>& x,
                                    const std::vector<float>& dy, const float* gamma,
                                    const std::vector<float>& mean, const std::vector<float>& invstd) {
  Reference r;
  const int64_t m = per_channel(d);
  r.dx.assign(numel(d), 0.0);
  r.dgamma.assign(d.c, 0.0);
  r.dbeta.assign(d.c, 0.0);
  for (int64_t c = 0; c < d.c; ++c) {
    double db = 0.0, dg = 0.0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t o = offset(d, c, j);
      db += dy[o];
      dg += dy[o] * (x[o] - static_cast<double>(mean[c])) * invstd[c];
    }
    const double g = gamma ? gamma[c] : 1.0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t o = offset(d, c, j);
      const double xhat = (x[o] - static_cast<double>(mean[c])) * invstd[c];
      r.dx[o] = g * invstd[c] / m * (m * dy[o] - db - xhat * dg);
    }
    r.dgamma[c] = dg;
    r.dbeta[c] = db;
  }
  return r;
}

// ||a - ref|| / ||ref|| over all elements; NaN or Inf anywhere in a gives +inf, so a
// poisoned (never written) output can never pass.
template <class A>
double rel_error(const A& a, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double v = static_cast<double>(a[i]);
    if (!std::isfinite(v)) return std::numeric_limits<double>::infinity();
    num += (v - ref[i]) * (v - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Largest per-channel relative error of a per-channel tensor: a channel-sized bug in a
// tensor of many channels cannot hide in the global norm.
//
// scale, when given, is the per-element size of the terms the result is a difference
// of; the error is then relative to max(||ref||, ||scale||) per channel. That is the
// honest bound for an ill-conditioned result: backward's dx at M = 2 is
// k*(1 - xhat^2)*(dy1 - dy2) with 1 - xhat^2 ~ eps/var, a cancellation to ~1e-5 of
// its terms that no float32 evaluation reproduces to 1e-4 of itself.
inline double max_channel_rel_error(const bnorm_tensor_t& d, const std::vector<float>& a,
                                    const std::vector<double>& ref,
                                    const std::vector<double>* scale = nullptr) {
  double worst = 0.0;
  const int64_t m = per_channel(d);
  for (int64_t c = 0; c < d.c; ++c) {
    double num = 0.0, den = 0.0, sden = 0.0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t o = offset(d, c, j);
      const double v = a[o];
      if (!std::isfinite(v)) return std::numeric_limits<double>::infinity();
      num += (v - ref[o]) * (v - ref[o]);
      den += ref[o] * ref[o];
      if (scale) sden += (*scale)[o] * (*scale)[o];
    }
    den = std::max(den, sden);
    worst = std::max(worst, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
  }
  return worst;
}

// The size of the terms of dx: gamma * invstd * dy per element.
inline std::vector<double> dx_term_scale(const bnorm_tensor_t& d, const std::vector<float>& dy,
                                         const float* gamma, const std::vector<float>& invstd) {
  std::vector<double> s(dy.size());
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j) {
      const int64_t o = offset(d, c, j);
      s[o] = (gamma ? gamma[c] : 1.0) * invstd[c] * dy[o];
    }
  return s;
}

// Values with a per-channel mean and spread, so channels differ (never zeros).
inline std::vector<float> random_tensor(const bnorm_tensor_t& d, uint64_t seed, double mean_scale = 1.0,
                                        double std_scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> ud(0.5, 2.0);
  std::vector<double> cm(d.c), cs(d.c);
  for (int64_t c = 0; c < d.c; ++c) {
    cm[c] = mean_scale * nd(rng);
    cs[c] = std_scale * ud(rng);
  }
  std::vector<float> x(numel(d));
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j)
      x[offset(d, c, j)] = static_cast<float>(cm[c] + cs[c] * nd(rng));
  return x;
}

inline std::vector<float> random_vector(int64_t n, uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ud(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = static_cast<float>(ud(rng));
  return v;
}

inline std::vector<float> poisoned(int64_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// random_tensor rounded to the tensor's dtype: the float values are exactly the stored
// ones, so a float64 reference computed from them is the reference of the stored tensor.
inline std::vector<float> random_input(const bnorm_tensor_t& d, uint64_t seed, double mean_scale = 1.0) {
  return quantized(random_tensor(d, seed, mean_scale), d.dtype);
}

}  // namespace bnorm_test
