// The CPU backend's group, instance and layer norm (reference.hpp): per sample and
// group, Welford in float64 over the group's values in (channel, place) order, in either
// layout; the backward's sums in float64.
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference.hpp"
#include "cpu_common.hpp"
#include "kernels/welford.cuh"

namespace bnorm::cpu::ref {
namespace {

// Visits group g of sample n: f(offset, feature) over its channels and their places,
// feature being the affine parameter's index.
template <class F>
void for_each_in_group(const bnorm_tensor_t& d, int64_t groups, bool per_value, int64_t n, int64_t g, F&& f) {
  const int64_t hw = d.h * d.w, cpg = d.c / groups;
  for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c)
    for (int64_t i = 0; i < hw; ++i) f(offset_of(d, n, c, i), per_value ? c * hw + i : c);
}

}  // namespace

void per_sample_forward(const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* xv, void* yv,
                        const float* gamma, const float* beta, float eps, float* save_mean, float* save_invstd) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t g = 0; g < groups; ++g) {
        Welford<double> s = welford_empty<double>();
        for_each_in_group(d, groups, per_value, n, g, [&](int64_t o, int64_t) { welford_push<double>(s, load(x[o])); });
        const double invstd = 1.0 / std::sqrt(s.m2 / s.count + static_cast<double>(eps));
        const double mean = s.mean;
        for_each_in_group(d, groups, per_value, n, g, [&](int64_t o, int64_t f) {
          y[o] = store<T>((load(x[o]) - mean) * invstd * (gamma ? gamma[f] : 1.0) + (beta ? beta[f] : 0.0));
        });
        if (save_mean) save_mean[n * groups + g] = static_cast<float>(mean);
        if (save_invstd) save_invstd[n * groups + g] = static_cast<float>(invstd);
      }
  });
}

void per_sample_backward(const bnorm_tensor_t& d, int64_t groups, bool per_value, const void* xv, const void* dyv,
                         const float* gamma, const float* save_mean, const float* save_invstd, void* dxv,
                         float* dgamma, float* dbeta) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    const int64_t features = per_value ? d.c * d.h * d.w : d.c;
    std::vector<double> dg(features, 0.0), db(features, 0.0);
    const double len = static_cast<double>(d.c / groups * d.h * d.w);
    for (int64_t n = 0; n < d.n; ++n)
      for (int64_t g = 0; g < groups; ++g) {
        const double mean = save_mean[n * groups + g], invstd = save_invstd[n * groups + g];
        double sum_g = 0.0, sum_g_xhat = 0.0;  // of gamma_f * dy
        for_each_in_group(d, groups, per_value, n, g, [&](int64_t o, int64_t f) {
          const double xhat = (load(x[o]) - mean) * invstd, gd = (gamma ? gamma[f] : 1.0) * load(dy[o]);
          sum_g += gd;
          sum_g_xhat += gd * xhat;
          dg[f] += load(dy[o]) * xhat;
          db[f] += load(dy[o]);
        });
        for_each_in_group(d, groups, per_value, n, g, [&](int64_t o, int64_t f) {
          const double xhat = (load(x[o]) - mean) * invstd, gd = (gamma ? gamma[f] : 1.0) * load(dy[o]);
          dx[o] = store<T>(invstd * (gd - sum_g / len - xhat * sum_g_xhat / len));
        });
      }
    for (int64_t f = 0; f < features; ++f) {
      if (dgamma) dgamma[f] = static_cast<float>(dg[f]);
      if (dbeta) dbeta[f] = static_cast<float>(db[f]);
    }
  });
}

}  // namespace bnorm::cpu::ref
