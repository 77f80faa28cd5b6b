// The fast CPU path's inner loops as a table of functions per storage type, one table per
// instruction set (fast_kernels.hpp, compiled by fast_isa_avx512.cpp, fast_isa_avx2.cpp
// and fast_isa_sse2.cpp); kernels() picks the best the processor runs, once. All three
// compute the same bits (fast_kernels.hpp says why), so the choice changes speed only.
#pragma once

#include <cstdint>

#include "bnorm/bnorm.h"
#include "kernels/welford.cuh"

namespace bnorm::cpu::fast {

// Values per block of the inner loops: two AVX-512 registers, four AVX2, eight SSE.
constexpr int kLanes = 32;
// Values per chunk of the statistics and sums: float32 within, float64 across. 32 per
// lane keeps a lane's float32 sum within ~2e-6 relative error in the worst case.
constexpr int64_t kChunk = 1024;

// count runs of len values, stride apart, the first at off (elements).
struct Segs {
  int64_t off, len, stride, count;
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
