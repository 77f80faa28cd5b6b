// The fast CPU path's inner loops as a table of functions per storage type, one table per
// instruction set (fast_kernels.hpp, compiled by fast_isa_avx512.cpp, fast_isa_avx2.cpp
// and fast_isa_sse2.cpp); kernels() picks the best the processor runs, once. All three
// compute the same bits (fast_kernels.hpp says why), so the choice changes speed only.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "bnorm/bnorm.h"
#include "kernels/welford.cuh"

namespace bnorm::cpu::fast {

// Values per block of the inner loops: two AVX-512 registers, four AVX2, eight SSE.
constexpr int kLanes = 32;
// Values per chunk of the statistics and sums: float32 within, float64 across. 32 per
// lane keeps a lane's float32 sum within ~2e-6 relative error in the worst case.
constexpr int64_t kChunk = 1024;

// count runs of len values, stride apart, the first at off (elements). lanes: short runs
// of several samples are reduced a lane per value over the runs (fast_kernels.hpp
// short_stats; the caller decides per tensor, so every path of a tensor agrees).
struct Segs {
  int64_t off, len, stride, count;
  bool lanes = false;
};

struct Sums {
  double g;   // sum of the gradient
  double gx;  // sum of gradient * (x - mean)
};

// y = ((x - mean_hi) - mean_lo) * scale + shift: the mean in two floats keeps (x - mean)
// exact to float32 rounding even where |mean| >> std.
struct Affine {
  float mean_hi, mean_lo, scale, shift;
};

// dx = g * grad + (xc * (x - mean) + c0).
struct DxCoef {
  float mean, g, xc, c0;
};

// The same per lane (arrays of the lane width w).
struct LaneAffine {
  const float *mean_hi, *mean_lo, *scale, *shift;
};
struct LaneDx {
  const float *mean, *g, *xc, *c0;
};

// Forward training's per-channel results from a channel's state: the saved statistics,
// the running ones blended (PyTorch's momentum, unbiased variance), and the output's
// coefficients (mean as hi + lo, scale = invstd * gamma, shift = beta). One definition
// for the scalar call of a channel task and the loop over all channels (finish_training,
// vectorized): sqrt and division are correctly rounded and nothing is contracted, so
// both give the same bits.
struct TrainingFinish {
  const double *n, *mean, *m2;  // the channels' states, as arrays
  const float *gamma, *beta;
  double momentum, eps;
  float *running_mean, *running_var, *save_mean, *save_invstd;
  float *hi, *lo, *scale, *shift;
};
// Calls f(std::bool_constant<b>...) for the runtime flags b: a loop over channels gets
// one version per combination of its optional arrays, without branches inside.
template <class F>
inline void bool_dispatch(F&& f) {
  f();
}
template <class F, class... Rest>
inline void bool_dispatch(F&& f, bool b, Rest... rest) {
  if (b)
    bool_dispatch([&](auto... t) { f(std::true_type{}, t...); }, rest...);
  else
    bool_dispatch([&](auto... t) { f(std::false_type{}, t...); }, rest...);
}

template <bool SaveMean, bool SaveInvstd, bool Running, bool Gamma, bool Beta>
inline void finish_training_channel(const TrainingFinish& f, int64_t c) {
  const double n = f.n[c], mean = f.mean[c], m2 = f.m2[c];
  const double v = m2 / n;
  const double invstd = 1.0 / std::sqrt((v < 0.0 ? 0.0 : v) + f.eps);
  const double vu0 = m2 / (n - 1.0);
  const double vu = vu0 < 0.0 ? 0.0 : vu0;
  if constexpr (SaveMean) f.save_mean[c] = static_cast<float>(mean);
  if constexpr (SaveInvstd) f.save_invstd[c] = static_cast<float>(invstd);
  if constexpr (Running) {
    f.running_mean[c] = static_cast<float>((1.0 - f.momentum) * f.running_mean[c] + f.momentum * mean);
    f.running_var[c] = static_cast<float>((1.0 - f.momentum) * f.running_var[c] + f.momentum * vu);
  }
  const float hi = static_cast<float>(mean);
  f.hi[c] = hi;
  f.lo[c] = static_cast<float>(mean - static_cast<double>(hi));
  f.scale[c] = static_cast<float>(invstd * (Gamma ? static_cast<double>(f.gamma[c]) : 1.0));
  f.shift[c] = Beta ? f.beta[c] : 0.0f;
}
template <class F>
inline void with_training_flags(const TrainingFinish& f, F&& body) {
  bool_dispatch(body, f.save_mean != nullptr, f.save_invstd != nullptr, f.running_mean != nullptr, f.gamma != nullptr,
                f.beta != nullptr);
}
inline void finish_training_channel(const TrainingFinish& f, int64_t c) {
  with_training_flags(f, [&](auto sm, auto si, auto rs, auto g, auto b) {
    finish_training_channel<decltype(sm)::value, decltype(si)::value, decltype(rs)::value, decltype(g)::value,
                            decltype(b)::value>(f, c);
  });
}

// Backward's per-channel results from a channel's sums over m values: dgamma, dbeta and
// dx = g * grad + (xc * (x - mean) + c0), with k = gamma * invstd / m:
// g = k * m, xc = -k * dgamma * invstd, c0 = -k * dbeta. As above, one definition for
// both uses.
struct BackwardFinish {
  const Sums* sums;
  const float *save_mean, *save_invstd, *gamma;
  double m;
  float *dgamma, *dbeta;
  float *mean, *g, *xc, *c0;
};
inline void finish_backward_channel(const BackwardFinish& f, int64_t c) {
  const double invstd = f.save_invstd[c];
  const double db = f.sums[c].g, dg = f.sums[c].gx * invstd;
  const double k = (f.gamma ? static_cast<double>(f.gamma[c]) : 1.0) * invstd / f.m;
  if (f.dgamma) f.dgamma[c] = static_cast<float>(dg);
  if (f.dbeta) f.dbeta[c] = static_cast<float>(db);
  f.mean[c] = f.save_mean[c];
  f.g[c] = static_cast<float>(k * f.m);
  f.xc[c] = static_cast<float>(-k * dg * invstd);
  f.c0[c] = static_cast<float>(-k * db);
}

struct Kernels {
  // runs of one channel
  Welford<double> (*stats)(const void* x, const Segs& s);
  Sums (*grad_sums)(const void* x, const void* mask, const void* dy, const Segs& s, float mean);
  // stream: write float32 outputs past the caches (for tensors larger than them)
  void (*affine)(const void* x, const void* z, void* y, const Segs& s, const Affine& a, bool relu, bool stream);
  void (*dx_map)(const void* x, const void* mask, const void* dy, void* dx, void* dz, const Segs& s,
                 const DxCoef& a, bool relu, bool stream);
  // a flat run of nvals values, value i in lane i % w. Lane arrays (coefficients, mean,
  // scratch) hold w rounded up to kLanes floats each, the padding initialized; scratch
  // holds three such arrays. Lane statistics go to mean[l] and m2[l] for the lanes that
  // got values; sums add to sg and sgx (x may be null: no sgx). mean, m2, sg and sgx
  // are lane arrays too (padded; lane_stats writes its padding, with 0).
  void (*lane_stats)(const void* x, int64_t nvals, int w, float* scratch, double* mean, double* m2);
  void (*lane_grad_sums)(const void* x, const void* mask, const void* dy, int64_t nvals, int w,
                         const float* mean, float* scratch, double* sg, double* sgx);
  void (*lane_affine)(const void* x, const void* z, void* y, int64_t nvals, int w, const LaneAffine& a,
                      bool relu);
  void (*lane_dx)(const void* x, const void* mask, const void* dy, void* dx, void* dz, int64_t nvals, int w,
                  const LaneDx& a, bool relu);
  // the toolbox's per-value forms and folding
  void (*affine_per_value)(const void* x, void* y, int64_t len, float mean_hi, float mean_lo, float invstd,
                           const float* gamma, const float* beta);
  Sums (*weighted_grad_sums)(const void* x, const void* dy, int64_t len, float mean, const float* gamma);
  void (*dx_per_value)(const void* x, const void* dy, void* dx, int64_t len, float mean, float invstd,
                       const float* gamma, float xc, float c0);
  void (*column_grads)(const void* x, const void* dy, int64_t rows, int64_t len, int64_t f0, int64_t f1,
                       const float* mean, const float* invstd, double* dgamma, double* dbeta);
  void (*scale_run)(const void* w, void* out, int64_t len, float scale);
  // the per-channel results of channels [c0, c1), in a loop that vectorizes
  void (*finish_training)(const TrainingFinish& f, int64_t c0, int64_t c1);
  void (*finish_backward)(const BackwardFinish& f, int64_t c0, int64_t c1);
  // planes runs [r0, r1) in memory order, run r of channel r % c (coefficient arrays)
  void (*affine_flat)(const void* x, const void* z, void* y, int64_t r0, int64_t r1, int64_t hw, int64_t c,
                      const LaneAffine& a, bool relu, bool stream);
  void (*dx_flat)(const void* x, const void* mask, const void* dy, void* dx, void* dz, int64_t r0, int64_t r1,
                  int64_t hw, int64_t c, const LaneDx& a, bool relu, bool stream);
  // nch adjacent channels at once, channel i's runs s's moved by i * s.len: stats and
  // grad_sums of each (the same bits), channel i's to out[i * os], read in memory order
  void (*stats_across)(const void* x, const Segs& s, int64_t nch, Welford<double>* out, int64_t os);
  void (*grad_sums_across)(const void* x, const void* mask, const void* dy, const Segs& s, int64_t nch,
                           const float* mean, Sums* out, int64_t os);
  // a run of len values, coefficients per value (arrays readable kLanes past len)
  void (*span_affine)(const void* x, const void* z, void* y, int64_t len, const LaneAffine& a, bool relu,
                      bool stream);
  void (*span_dx)(const void* x, const void* mask, const void* dy, void* dx, void* dz, int64_t len,
                  const LaneDx& a, bool relu, bool stream);
};

namespace avx512 {
const Kernels* tables();
}
namespace avx2 {
const Kernels* tables();
}
namespace sse2 {
const Kernels* tables();
}

enum class Isa { sse2 = 0, avx2 = 1, avx512 = 2 };

// The best instruction set this processor runs, or the one the environment variable
// BNORM_CPU_ISA names (avx512, avx2, sse2) if the processor runs it; decided once.
Isa active_isa();
bool isa_supported(Isa i);
const char* isa_name(Isa i);
// The table for a storage type and instruction set (tests compare the sets).
const Kernels& kernels(bnorm_dtype_t t, Isa i);
inline const Kernels& kernels(bnorm_dtype_t t) { return kernels(t, active_isa()); }

}  // namespace bnorm::cpu::fast
