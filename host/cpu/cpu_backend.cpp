// The CPU reference backend (see cpu_backend.hpp).
#include "cpu_backend.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/welford.cuh"

namespace bnorm::cpu {
namespace {

// Storage conversions (round to nearest even on the way back), the same as the kernels'.
inline double load(float v) { return v; }
inline double load(__half v) { return __half2float(v); }
inline double load(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
T store(double v);
template <>
float store<float>(double v) { return static_cast<float>(v); }
template <>
__half store<__half>(double v) { return __float2half_rn(static_cast<float>(v)); }
template <>
__nv_bfloat16 store<__nv_bfloat16>(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }

// Calls f(T{}) for the storage type of d.
template <class F>
void with_dtype(const bnorm_tensor_t& d, F&& f) {
  switch (d.dtype) {
    case BNORM_DTYPE_F32: f(float{}); break;
    case BNORM_DTYPE_F16: f(__half{}); break;
    case BNORM_DTYPE_BF16: f(__nv_bfloat16{}); break;
  }
}

// Visits the offsets of channel c's values in storage order of its rows, which is the
// order the statistics are accumulated in (fixed, so results are repeatable).
template <class F>
void for_each_in_channel(const bnorm_tensor_t& d, int64_t c, F&& f) {
  const int64_t hw = d.h * d.w;
  if (d.layout == BNORM_LAYOUT_NCHW) {
    for (int64_t n = 0; n < d.n; ++n) {
      const int64_t base = (n * d.c + c) * hw;
      for (int64_t i = 0; i < hw; ++i) f(base + i);
    }
  } else {
    const int64_t rows = d.n * hw;
    for (int64_t r = 0; r < rows; ++r) f(r * d.c + c);
  }
}

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

}  // namespace bnorm::cpu
