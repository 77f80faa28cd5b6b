// Float64 references for the toolbox's operations, written from their definitions
// (PyTorch's for the per-sample norms: torch.nn.GroupNorm, InstanceNorm2d, LayerNorm;
// the biased variance, eps inside the square root) with plain two-pass sums —
// deliberately not the library's Welford code or its CPU backend's loops.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "reference.hpp"

namespace bnorm_test {

// Offset of (sample n, channel c, place i) in either layout.
inline int64_t at(const bnorm_tensor_t& d, int64_t n, int64_t c, int64_t i) {
  const int64_t hw = d.h * d.w;
  return d.layout == BNORM_LAYOUT_NCHW ? (n * d.c + c) * hw + i : (n * hw + i) * d.c + c;
}

struct NormRef {
  std::vector<double> y, mean, invstd;  // statistics per (sample, group)
  std::vector<double> dx, dgamma, dbeta;
};

// The per-sample norms as one definition: sample n's c*h*w values in `groups` groups of
// consecutive channels; per_value puts one affine parameter on each value (layer norm,
// index (c*h + h_i)*w + w_i = c*hw + i), else one per channel.
inline int64_t feature(const bnorm_tensor_t& d, bool per_value, int64_t c, int64_t i) {
  return per_value ? c * d.h * d.w + i : c;
}

inline NormRef per_sample_forward_ref(const bnorm_tensor_t& d, int64_t groups, bool per_value,
                                      const std::vector<float>& x, const float* gamma, const float* beta,
                                      double eps) {
  NormRef r;
  const int64_t hw = d.h * d.w, cpg = d.c / groups;
  const double len = static_cast<double>(cpg * hw);
  r.y.assign(numel(d), 0.0);
  r.mean.assign(d.n * groups, 0.0);
  r.invstd.assign(d.n * groups, 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      double s = 0.0;
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c)
        for (int64_t i = 0; i < hw; ++i) s += x[at(d, n, c, i)];
      const double mean = s / len;
      double ss = 0.0;
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c)
        for (int64_t i = 0; i < hw; ++i) ss += (x[at(d, n, c, i)] - mean) * (x[at(d, n, c, i)] - mean);
      const double invstd = 1.0 / std::sqrt(ss / len + eps);  // biased variance, eps inside
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c)
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t f = feature(d, per_value, c, i), o = at(d, n, c, i);
          r.y[o] = (x[o] - mean) * invstd * (gamma ? gamma[f] : 1.0) + (beta ? beta[f] : 0.0);
        }
      r.mean[n * groups + g] = mean;
      r.invstd[n * groups + g] = invstd;
    }
  return r;
}

// The backward from given statistics: autograd's result for the forward above.
inline NormRef per_sample_backward_ref(const bnorm_tensor_t& d, int64_t groups, bool per_value,
                                       const std::vector<float>& x, const std::vector<float>& dy, const float* gamma,
                                       const std::vector<float>& mean, const std::vector<float>& invstd) {
  NormRef r;
  const int64_t hw = d.h * d.w, cpg = d.c / groups;
  const double len = static_cast<double>(cpg * hw);
  const int64_t features = per_value ? d.c * hw : d.c;
  r.dx.assign(numel(d), 0.0);
  r.dgamma.assign(features, 0.0);
  r.dbeta.assign(features, 0.0);
  for (int64_t n = 0; n < d.n; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      const double m = mean[n * groups + g], is = invstd[n * groups + g];
      double a = 0.0, b = 0.0;  // sum(gamma*dy), sum(gamma*dy*xhat)
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c)
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t f = feature(d, per_value, c, i), o = at(d, n, c, i);
          const double xhat = (x[o] - m) * is, gd = (gamma ? gamma[f] : 1.0) * dy[o];
          a += gd;
          b += gd * xhat;
          r.dgamma[f] += dy[o] * xhat;
          r.dbeta[f] += dy[o];
        }
      for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c)
        for (int64_t i = 0; i < hw; ++i) {
          const int64_t f = feature(d, per_value, c, i), o = at(d, n, c, i);
          const double xhat = (x[o] - m) * is, gd = (gamma ? gamma[f] : 1.0) * dy[o];
          r.dx[o] = is * (gd - a / len - xhat * b / len);
        }
    }
  return r;
}

// Frozen batch norm's backward: the statistics are constants.
inline NormRef frozen_backward_ref(const bnorm_tensor_t& d, const std::vector<float>& x, const std::vector<float>& dy,
                                   const float* gamma, const std::vector<float>& rm, const std::vector<float>& rv,
                                   double eps) {
  NormRef r;
  r.dx.assign(numel(d), 0.0);
  r.dgamma.assign(d.c, 0.0);
  r.dbeta.assign(d.c, 0.0);
  for (int64_t c = 0; c < d.c; ++c) {
    const double is = 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps);
    for (int64_t j = 0; j < per_channel(d); ++j) {
      const int64_t o = offset(d, c, j);
      r.dx[o] = dy[o] * (gamma ? gamma[c] : 1.0) * is;
      r.dgamma[c] += dy[o] * (x[o] - rm[c]) * is;
      r.dbeta[c] += dy[o];
    }
  }
  return r;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace bnorm_test
