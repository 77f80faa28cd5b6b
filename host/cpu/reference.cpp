// The CPU backend's float64 oracle (see reference.hpp): batch norm's three operations.
#include "reference.hpp"

#include <cmath>
#include <cstdint>

#include "cpu_common.hpp"
#include "kernels/welford.cuh"

namespace bnorm::cpu::ref {
namespace {

// The forward epilogue act(v + z), in float64 before the one rounding to T. ReLU keeps
// NaN, as the kernels do.
inline double epilogue(double v, double z, bool relu) {
  v += z;
  return relu && v < 0.0 ? 0.0 : v;
}

}  // namespace

void forward_training(const bnorm_tensor_t& d, const void* xv, const void* zv, void* yv, const float* gamma,
                      const float* beta, float momentum, float eps, float* running_mean,
                      float* running_var, float* save_mean, float* save_invstd, bool relu) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    const T* z = static_cast<const T*>(zv);
    T* y = static_cast<T*>(yv);
    const int64_t m = d.n * d.h * d.w;
    for (int64_t c = 0; c < d.c; ++c) {
      Welford<double> s = welford_empty<double>();
      for_each_in_channel(d, c, [&](int64_t o) { welford_push<double>(s, load(x[o])); });
      const double var = s.m2 / static_cast<double>(m);
      const double invstd = 1.0 / std::sqrt(var + static_cast<double>(eps));
      const double g = gamma ? gamma[c] : 1.0;
      const double b = beta ? beta[c] : 0.0;
      const double mean = s.mean;
      for_each_in_channel(d, c, [&](int64_t o) {
        y[o] = store<T>(epilogue((load(x[o]) - mean) * invstd * g + b, z ? load(z[o]) : 0.0, relu));
      });
      if (save_mean) save_mean[c] = static_cast<float>(mean);
      if (save_invstd) save_invstd[c] = static_cast<float>(invstd);
      if (running_mean) {
        const double mo = momentum;
        const double var_unbiased = s.m2 / static_cast<double>(m - 1);
        running_mean[c] = static_cast<float>((1.0 - mo) * running_mean[c] + mo * mean);
        running_var[c] = static_cast<float>((1.0 - mo) * running_var[c] + mo * var_unbiased);
      }
    }
  });
}

void forward_inference(const bnorm_tensor_t& d, const void* xv, const void* zv, void* yv, const float* gamma,
                       const float* beta, const float* running_mean, const float* running_var,
                       float eps, bool relu) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    const T* z = static_cast<const T*>(zv);
    T* y = static_cast<T*>(yv);
    for (int64_t c = 0; c < d.c; ++c) {
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
      const double g = gamma ? gamma[c] : 1.0;
      const double b = beta ? beta[c] : 0.0;
      const double mean = running_mean[c];
      for_each_in_channel(d, c, [&](int64_t o) {
        y[o] = store<T>(epilogue((load(x[o]) - mean) * invstd * g + b, z ? load(z[o]) : 0.0, relu));
      });
    }
  });
}

void backward(const bnorm_tensor_t& d, const void* xv, const void* yv, const void* dyv, const float* gamma,
              const float* save_mean, const float* save_invstd, void* dxv, void* dzv, float* dgamma,
              float* dbeta, bool relu) {
  with_dtype(d, [&](auto e) {
    using T = decltype(e);
    const T* x = static_cast<const T*>(xv);
    const T* y = static_cast<const T*>(yv);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    T* dz = static_cast<T*>(dzv);
    // The gradient reaching batch norm: dy, masked by y > 0 behind a ReLU.
    auto grad = [&](int64_t o) { return relu && !(load(y[o]) > 0.0) ? 0.0 : load(dy[o]); };
    const double m = static_cast<double>(d.n * d.h * d.w);
    for (int64_t c = 0; c < d.c; ++c) {
      const double mean = save_mean[c];
      const double invstd = save_invstd[c];
      double sum_dy = 0.0, sum_dy_xc = 0.0;
      for_each_in_channel(d, c, [&](int64_t o) {
        const double gr = grad(o);
        sum_dy += gr;
        sum_dy_xc += gr * (load(x[o]) - mean);
      });
      const double db = sum_dy;
      const double dg = sum_dy_xc * invstd;
      const double g = gamma ? gamma[c] : 1.0;
      const double k = g * invstd / m;
      for_each_in_channel(d, c, [&](int64_t o) {
        const double xhat = (load(x[o]) - mean) * invstd;
        const double gr = grad(o);
        // dz may alias dy: read everything of element o before writing it.
        dx[o] = store<T>(k * (m * gr - db - xhat * dg));
        if (dz) dz[o] = store<T>(gr);
      });
      if (dgamma) dgamma[c] = static_cast<float>(dg);
      if (dbeta) dbeta[c] = static_cast<float>(db);
    }
  });
}

}  // namespace bnorm::cpu::ref
