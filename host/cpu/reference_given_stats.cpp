// The CPU backend's batch norm with given statistics (reference.hpp): frozen batch
// norm's backward, folding into weights, and synchronized batch norm's passes, in
// float64 like the rest of the backend.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "reference.hpp"
#include "cpu_common.hpp"
#include "kernels/welford.cuh"

namespace bnorm::cpu::ref {

void backward_frozen(const bnorm_tensor_t& d, const void* xv, const void* dyv, const float* gamma,
                     const float* running_mean, const float* running_var, float eps, void* dxv, float* dgamma,
                     float* dbeta) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    const bool sums = dgamma || dbeta;
    for (int64_t c = 0; c < d.c; ++c) {
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
      const double mean = running_mean[c];
      const double k = (gamma ? gamma[c] : 1.0) * invstd;
      double sum_dy = 0.0, sum_dy_xc = 0.0;
      for_each_in_channel(d, c, [&](int64_t o) {
        const double g = load(dy[o]);
        if (sums) {  // x may be null without them
          sum_dy += g;
          sum_dy_xc += g * (load(x[o]) - mean);
        }
        dx[o] = store<T>(k * g);  // after the reads: dx may alias dy
      });
      if (dgamma) dgamma[c] = static_cast<float>(sum_dy_xc * invstd);
      if (dbeta) dbeta[c] = static_cast<float>(sum_dy);
    }
  });
}

void fold_into_weights(const bnorm_tensor_t& d, const void* wv, const float* bias, const float* gamma,
                       const float* beta, const float* running_mean, const float* running_var, float eps,
                       void* wov, float* bias_out) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* w = static_cast<const T*>(wv);
    T* wo = static_cast<T*>(wov);
    const int64_t k = d.c * d.h * d.w;  // an output channel's weights, contiguous in either layout
    for (int64_t o = 0; o < d.n; ++o) {
      const double s =
          (gamma ? gamma[o] : 1.0) / std::sqrt(static_cast<double>(running_var[o]) + static_cast<double>(eps));
      for (int64_t i = o * k; i < (o + 1) * k; ++i) wo[i] = store<T>(load(w[i]) * s);
      const double b = bias ? bias[o] : 0.0;
      bias_out[o] = static_cast<float>((b - running_mean[o]) * s + (beta ? beta[o] : 0.0));
    }
  });
}

void sync_local_stats(const bnorm_tensor_t& d, const void* xv, float* local_stats) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    for (int64_t c = 0; c < d.c; ++c) {
      Welford<double> s = welford_empty<double>();
      for_each_in_channel(d, c, [&](int64_t o) { welford_push<double>(s, load(x[o])); });
      local_stats[3 * c] = static_cast<float>(s.count);
      local_stats[3 * c + 1] = static_cast<float>(s.mean);
      local_stats[3 * c + 2] = static_cast<float>(s.m2);
    }
  });
}

void sync_merge_stats(int64_t c, int64_t ranks, const float* gathered, float* global_stats) {
  for (int64_t i = 0; i < c; ++i) {
    Welford<double> m = welford_empty<double>();
    for (int64_t r = 0; r < ranks; ++r) {
      const float* p = gathered + (r * c + i) * 3;
      m = welford_merge(m, Welford<double>{p[0], p[1], p[2]});
    }
    global_stats[3 * i] = static_cast<float>(m.count);
    global_stats[3 * i + 1] = static_cast<float>(m.mean);
    global_stats[3 * i + 2] = static_cast<float>(m.m2);
  }
}

void sync_forward(const bnorm_tensor_t& d, const void* xv, void* yv, const float* gamma, const float* beta,
                  const float* global_stats, float momentum, float eps, float* running_mean, float* running_var,
                  float* save_mean, float* save_invstd) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    for (int64_t c = 0; c < d.c; ++c) {
      const double count = global_stats[3 * c], mean = global_stats[3 * c + 1], m2 = global_stats[3 * c + 2];
      const double var = count > 0.0 ? std::max(m2 / count, 0.0) : 0.0;
      const double invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
      const double k = (gamma ? gamma[c] : 1.0) * invstd, b = beta ? beta[c] : 0.0;
      for_each_in_channel(d, c, [&](int64_t o) { y[o] = store<T>((load(x[o]) - mean) * k + b); });
      if (save_mean) save_mean[c] = static_cast<float>(mean);
      if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
      // A batch of fewer than two values over all ranks has no unbiased variance.
      if (running_mean && count >= 2.0) {
        const double mo = momentum;
        running_mean[c] = static_cast<float>((1.0 - mo) * running_mean[c] + mo * mean);
        running_var[c] = static_cast<float>((1.0 - mo) * running_var[c] + mo * std::max(m2 / (count - 1.0), 0.0));
      }
    }
  });
}

void sync_backward_sums(const bnorm_tensor_t& d, const void* xv, const void* dyv, const float* save_mean,
                        float* local_sums) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    const T* dy = static_cast<const T*>(dyv);
    for (int64_t c = 0; c < d.c; ++c) {
      const double mean = save_mean[c];
      double sum_dy = 0.0, sum_dy_xc = 0.0;
      for_each_in_channel(d, c, [&](int64_t o) {
        sum_dy += load(dy[o]);
        sum_dy_xc += load(dy[o]) * (load(x[o]) - mean);
      });
      local_sums[2 * c] = static_cast<float>(sum_dy);
      local_sums[2 * c + 1] = static_cast<float>(sum_dy_xc);
    }
  });
}

void sync_backward(const bnorm_tensor_t& d, const void* xv, const void* dyv, const float* gamma,
                   const float* save_mean, const float* save_invstd, const float* global_stats,
                   const float* global_sums, void* dxv, float* dgamma, float* dbeta) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    for (int64_t c = 0; c < d.c; ++c) {
      const double m = std::max(1.0, static_cast<double>(global_stats[3 * c]));
      const double mean = save_mean[c], invstd = save_invstd[c];
      const double db = global_sums[2 * c], dg = global_sums[2 * c + 1] * invstd;
      const double k = (gamma ? gamma[c] : 1.0) * invstd / m;
      for_each_in_channel(d, c, [&](int64_t o) {
        const double xhat = (load(x[o]) - mean) * invstd;
        dx[o] = store<T>(k * (m * load(dy[o]) - db - xhat * dg));
      });
      if (dgamma) dgamma[c] = static_cast<float>(dg);
      if (dbeta) dbeta[c] = static_cast<float>(db);
    }
  });
}

}  // namespace bnorm::cpu::ref
