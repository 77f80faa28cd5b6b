// The fast CPU path's inner loops (fast_isa.hpp declares them), compiled once per
// instruction set by fast_isa_*.cpp. Everything here is plain C++ over arrays of kLanes
// floats that the compiler vectorizes; no loop here depends on the thread count.
//
// Why the results do not depend on the instruction set either: every sum is spread over
// lanes fixed by the source (value i of a run goes to lane i % kLanes), lanes are added
// in a fixed order, and the files are compiled with -ffp-contract=off (no FMA
// contraction). The compiler may vectorize such loops but may not reorder their
// floating-point operations, so SSE2, AVX2 and AVX-512 builds compute the same bits.
//
// Numerics, per chunk of at most kChunk values (a part of one run, or several short
// runs): the statistics are a two-pass mean and M2 in float32, shifted by the chunk's
// first value so that |mean|/std = 1e4 costs no precision, then merged into a float64
// Welford state with Chan's formula (kernels/welford.cuh), chunk after chunk. Gradient
// sums are float32 per chunk and float64 across chunks. Never E[x^2] - E[x]^2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "fast_isa.hpp"
#include "kernels/welford.cuh"

namespace bnorm::cpu::fast::BNORM_ISA_NS {
namespace {

// ---- storage <-> float32, a block at a time -----------------------------------------

inline void load_block(const float* p, float* out, int n) { std::memcpy(out, p, sizeof(float) * n); }

inline void load_block(const __nv_bfloat16* p, float* out, int n) {
  uint16_t b[kLanes];
  std::memcpy(b, p, 2 * n);
  for (int j = 0; j < n; ++j) {
    const uint32_t u = static_cast<uint32_t>(b[j]) << 16;
    std::memcpy(&out[j], &u, 4);
  }
}

inline void load_block(const __half* p, float* out, int n) {
#if defined(__F16C__)
  if (n == kLanes) {
    for (int j = 0; j < kLanes; j += 8)
      _mm256_storeu_ps(out + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j))));
    return;
  }
#endif
  for (int j = 0; j < n; ++j) out[j] = __half2float(p[j]);
}

inline void store_block(float* p, const float* v, int n) { std::memcpy(p, v, sizeof(float) * n); }

// Round to nearest even, as __float2bfloat16_rn; a NaN stays a (quiet) NaN.
inline void store_block(__nv_bfloat16* p, const float* v, int n) {
  uint16_t b[kLanes];
  for (int j = 0; j < n; ++j) {
    uint32_t u;
    std::memcpy(&u, &v[j], 4);
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    b[j] = static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : r);
  }
  std::memcpy(p, b, 2 * n);
}

inline void store_block(__half* p, const float* v, int n) {
#if defined(__F16C__)
  if (n == kLanes) {
    for (int j = 0; j < kLanes; j += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p + j),
                       _mm256_cvtps_ph(_mm256_loadu_ps(v + j), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return;
  }
#endif
  for (int j = 0; j < n; ++j) p[j] = __float2half_rn(v[j]);
}

template <class T>
inline float load_one(const T* p) {
  float v;
  load_block(p, &v, 1);
  return v;
}

// The epilogue act(v + z) and the ReLU mask, as the reference has them: ReLU keeps NaN,
// and a NaN (or non-positive) y masks its gradient.
inline float relu_of(float v) { return v < 0.0f ? 0.0f : v; }
inline float masked(float g, float y) { return y > 0.0f ? g : 0.0f; }

inline double lane_total(const float* acc, int n) {
  double s = 0.0;
  for (int j = 0; j < n; ++j) s += acc[j];
  return s;
}

// Calls f(first value, run length, stride between runs, runs) per chunk of s, in order:
// a long run is cut into near-equal parts of at most kChunk values, short runs are
// taken kChunk / len at a time.
template <class F>
inline void for_each_chunk(const Segs& s, F&& f) {
  if (s.len >= kChunk) {
    const int64_t q = (s.len + kChunk - 1) / kChunk;
    for (int64_t k = 0; k < s.count; ++k)
      for (int64_t p = 0; p < q; ++p) {
        const int64_t a = p * s.len / q, b = (p + 1) * s.len / q;
        f(s.off + k * s.stride + a, b - a, int64_t{0}, int64_t{1});
      }
  } else {
    const int64_t g = kChunk / s.len;
    for (int64_t k = 0; k < s.count; k += g)
      f(s.off + k * s.stride, s.len, s.stride, k + g <= s.count ? g : s.count - k);
  }
}

// ---- runs: one coefficient set over runs of one channel -----------------------------

template <class T>
Welford<double> chunk_stats(const T* p, int64_t len, int64_t stride, int64_t runs) {
  const float k0 = load_one(p);
  float acc[kLanes] = {}, v[kLanes];
  for (int64_t r = 0; r < runs; ++r) {
    const T* q = p + r * stride;
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
      load_block(q + i, v, kLanes);
      for (int j = 0; j < kLanes; ++j) acc[j] += v[j] - k0;
    }
    const int rem = static_cast<int>(len - i);
    load_block(q + i, v, rem);
    for (int j = 0; j < rem; ++j) acc[j] += v[j] - k0;
  }
  const double n = static_cast<double>(len * runs);
  const double shift = lane_total(acc, kLanes) / n;  // mean - k0
  const float mk = static_cast<float>(shift);
  float acc2[kLanes] = {};
  for (int64_t r = 0; r < runs; ++r) {
    const T* q = p + r * stride;
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
      load_block(q + i, v, kLanes);
      for (int j = 0; j < kLanes; ++j) {
        const float d = (v[j] - k0) - mk;
        acc2[j] += d * d;
      }
    }
    const int rem = static_cast<int>(len - i);
    load_block(q + i, v, rem);
    for (int j = 0; j < rem; ++j) {
      const float d = (v[j] - k0) - mk;
      acc2[j] += d * d;
    }
  }
  // The deviations were taken from mk, the float32 rounding of the chunk's mean: M2 about
  // the mean itself is smaller by n * (shift - mk)^2.
  const double e = shift - static_cast<double>(mk);
  return Welford<double>{n, static_cast<double>(k0) + shift, lane_total(acc2, kLanes) - n * e * e};
}

template <class T>
Welford<double> stats(const void* xv, const Segs& s) {
  const T* x = static_cast<const T*>(xv);
  Welford<double> st = welford_empty<double>();
  for_each_chunk(s, [&](int64_t off, int64_t len, int64_t stride, int64_t runs) {
    st = welford_merge(st, chunk_stats(x + off, len, stride, runs));
  });
  return st;
}

// sum(g) and sum(g * (x - mean)), g = dy masked by y > 0 when mask is given.
template <class T>
Sums grad_sums(const void* xv, const void* maskv, const void* dyv, const Segs& s, float mean) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  Sums out{0.0, 0.0};
  for_each_chunk(s, [&](int64_t off, int64_t len, int64_t stride, int64_t runs) {
    float ag[kLanes] = {}, agx[kLanes] = {}, vx[kLanes], vg[kLanes], vy[kLanes];
    auto block = [&](int64_t o, int n) {
      load_block(x + o, vx, n);
      load_block(dy + o, vg, n);
      if (y) {
        load_block(y + o, vy, n);
        for (int j = 0; j < n; ++j) vg[j] = masked(vg[j], vy[j]);
      }
      for (int j = 0; j < n; ++j) {
        ag[j] += vg[j];
        agx[j] += vg[j] * (vx[j] - mean);
      }
    };
    for (int64_t r = 0; r < runs; ++r) {
      const int64_t q = off + r * stride;
      int64_t i = 0;
      for (; i + kLanes <= len; i += kLanes) block(q + i, kLanes);
      if (i < len) block(q + i, static_cast<int>(len - i));
    }
    out.g += lane_total(ag, kLanes);
    out.gx += lane_total(agx, kLanes);
  });
  return out;
}

// Elementwise over the runs of s; the blocks go through local arrays, so y may alias x
// (and dx dy) exactly.
template <class F>
inline void for_each_block(const Segs& s, F&& f) {
  for (int64_t r = 0; r < s.count; ++r) {
    const int64_t q = s.off + r * s.stride;
    int64_t i = 0;
    for (; i + kLanes <= s.len; i += kLanes) f(q + i, kLanes);
    if (i < s.len) f(q + i, static_cast<int>(s.len - i));
  }
}

template <class T>
void affine(const void* xv, const void* zv, void* yv, const Segs& s, const Affine& a, bool relu) {
  const T* x = static_cast<const T*>(xv);
  const T* z = static_cast<const T*>(zv);
  T* y = static_cast<T*>(yv);
  for_each_block(s, [&](int64_t o, int n) {
    float v[kLanes], vz[kLanes];
    load_block(x + o, v, n);
    for (int j = 0; j < n; ++j) v[j] = ((v[j] - a.mean_hi) - a.mean_lo) * a.scale + a.shift;
    if (z) {
      load_block(z + o, vz, n);
      for (int j = 0; j < n; ++j) v[j] += vz[j];
    }
    if (relu)
      for (int j = 0; j < n; ++j) v[j] = relu_of(v[j]);
    store_block(y + o, v, n);
  });
}

// dx = a.g * g + (a.xc * (x - mean) + a.c0); dz = g. x is not read when a.xc is 0.
template <class T>
void dx_map(const void* xv, const void* maskv, const void* dyv, void* dxv, void* dzv, const Segs& s,
            const DxCoef& a, bool relu) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  T* dz = static_cast<T*>(dzv);
  const bool with_x = x != nullptr;
  for_each_block(s, [&](int64_t o, int n) {
    float vg[kLanes], vx[kLanes], vy[kLanes], out[kLanes];
    load_block(dy + o, vg, n);
    if (relu) {
      load_block(y + o, vy, n);
      for (int j = 0; j < n; ++j) vg[j] = masked(vg[j], vy[j]);
    }
    if (with_x) {
      load_block(x + o, vx, n);
      for (int j = 0; j < n; ++j) out[j] = a.g * vg[j] + (a.xc * (vx[j] - a.mean) + a.c0);
    } else {
      for (int j = 0; j < n; ++j) out[j] = a.g * vg[j] + a.c0;
    }
    // dz may alias dy: everything of the block was read above.
    if (dz) store_block(dz + o, vg, n);
    store_block(dx + o, out, n);
  });
}

// ---- lanes: a flat run whose value i belongs to lane i % w (rows of channels-last
// tensors, several rows per lane set when channels are few); per-lane coefficients ----

template <class T>
void lane_stats(const void* xv, int64_t nvals, int w, float* scratch, double* mean, double* m2) {
  const T* x = static_cast<const T*>(xv);
  float* k0 = scratch;
  float* acc = scratch + w;
  float* mk = scratch + 2 * w;
  const int first = static_cast<int>(nvals < w ? nvals : w);
  float v[kLanes];
  for (int l = 0; l < first; l += kLanes) {
    const int n = first - l < kLanes ? first - l : kLanes;
    load_block(x + l, k0 + l, n);
  }
  for (int l = 0; l < w; ++l) acc[l] = 0.0f;
  // One row of w values at a time, kLanes of them per step.
  auto rows = [&](auto&& f) {
    int64_t i = 0;
    for (; i + w <= nvals; i += w)
      for (int l = 0; l < w; l += kLanes) {
        const int n = w - l < kLanes ? w - l : kLanes;
        load_block(x + i + l, v, n);
        f(l, n);
      }
    for (int l = 0; i + l < nvals; l += kLanes) {
      const int n = nvals - i - l < kLanes ? static_cast<int>(nvals - i - l) : kLanes;
      load_block(x + i + l, v, n);
      f(l, n);
    }
  };
  rows([&](int l, int n) {
    for (int j = 0; j < n; ++j) acc[l + j] += v[j] - k0[l + j];
  });
  const int64_t full = nvals / w, part = nvals % w;
  for (int l = 0; l < first; ++l) {
    const double cnt = static_cast<double>(full + (l < part ? 1 : 0));
    mean[l] = acc[l] / cnt;  // the shift, for now
    mk[l] = static_cast<float>(mean[l]);
    acc[l] = 0.0f;
  }
  rows([&](int l, int n) {
    for (int j = 0; j < n; ++j) {
      const float d = (v[j] - k0[l + j]) - mk[l + j];
      acc[l + j] += d * d;
    }
  });
  for (int l = 0; l < first; ++l) {
    const double cnt = static_cast<double>(full + (l < part ? 1 : 0));
    const double e = mean[l] - static_cast<double>(mk[l]);
    m2[l] = static_cast<double>(acc[l]) - cnt * e * e;
    mean[l] += static_cast<double>(k0[l]);
  }
}

template <class T>
void lane_grad_sums(const void* xv, const void* maskv, const void* dyv, int64_t nvals, int w, const float* mean,
                    float* scratch, double* sg, double* sgx) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  float* ag = scratch;
  float* agx = scratch + w;
  for (int l = 0; l < w; ++l) ag[l] = agx[l] = 0.0f;
  float vx[kLanes], vg[kLanes], vy[kLanes];
  auto step = [&](int64_t o, int l, int n) {
    load_block(dy + o, vg, n);
    if (y) {
      load_block(y + o, vy, n);
      for (int j = 0; j < n; ++j) vg[j] = masked(vg[j], vy[j]);
    }
    if (x) {
      load_block(x + o, vx, n);
      for (int j = 0; j < n; ++j) agx[l + j] += vg[j] * (vx[j] - mean[l + j]);
    }
    for (int j = 0; j < n; ++j) ag[l + j] += vg[j];
  };
  int64_t i = 0;
  for (; i + w <= nvals; i += w)
    for (int l = 0; l < w; l += kLanes) step(i + l, l, w - l < kLanes ? w - l : kLanes);
  for (int l = 0; i + l < nvals; l += kLanes)
    step(i + l, l, nvals - i - l < kLanes ? static_cast<int>(nvals - i - l) : kLanes);
  for (int l = 0; l < w; ++l) {
    sg[l] += ag[l];
    sgx[l] += agx[l];
  }
}

template <class F>
inline void for_each_lane_block(int64_t nvals, int w, F&& f) {
  int64_t i = 0;
  for (; i + w <= nvals; i += w)
    for (int l = 0; l < w; l += kLanes) f(i + l, l, w - l < kLanes ? w - l : kLanes);
  for (int l = 0; i + l < nvals; l += kLanes)
    f(i + l, l, nvals - i - l < kLanes ? static_cast<int>(nvals - i - l) : kLanes);
}

template <class T>
void lane_affine(const void* xv, const void* zv, void* yv, int64_t nvals, int w, const LaneAffine& a, bool relu) {
  const T* x = static_cast<const T*>(xv);
  const T* z = static_cast<const T*>(zv);
  T* y = static_cast<T*>(yv);
  for_each_lane_block(nvals, w, [&](int64_t o, int l, int n) {
    float v[kLanes], vz[kLanes];
    load_block(x + o, v, n);
    for (int j = 0; j < n; ++j)
      v[j] = ((v[j] - a.mean_hi[l + j]) - a.mean_lo[l + j]) * a.scale[l + j] + a.shift[l + j];
    if (z) {
      load_block(z + o, vz, n);
      for (int j = 0; j < n; ++j) v[j] += vz[j];
    }
    if (relu)
      for (int j = 0; j < n; ++j) v[j] = relu_of(v[j]);
    store_block(y + o, v, n);
  });
}

template <class T>
void lane_dx(const void* xv, const void* maskv, const void* dyv, void* dxv, void* dzv, int64_t nvals, int w,
             const LaneDx& a, bool relu) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  T* dz = static_cast<T*>(dzv);
  for_each_lane_block(nvals, w, [&](int64_t o, int l, int n) {
    float vg[kLanes], vx[kLanes], vy[kLanes], out[kLanes];
    load_block(dy + o, vg, n);
    if (relu) {
      load_block(y + o, vy, n);
      for (int j = 0; j < n; ++j) vg[j] = masked(vg[j], vy[j]);
    }
    if (x) {
      load_block(x + o, vx, n);
      for (int j = 0; j < n; ++j)
        out[j] = a.g[l + j] * vg[j] + (a.xc[l + j] * (vx[j] - a.mean[l + j]) + a.c0[l + j]);
    } else {
      for (int j = 0; j < n; ++j) out[j] = a.g[l + j] * vg[j] + a.c0[l + j];
    }
    if (dz) store_block(dz + o, vg, n);
    store_block(dx + o, out, n);
  });
}

// ---- elementwise helpers of the toolbox -------------------------------------------------

// y = ((x - mean_hi) - mean_lo) * (invstd * gamma[i]) + beta[i] over one run (layer
// norm's per-value affine; gamma or beta may be null: 1 and 0). The scale is rounded
// as the per-channel path rounds it, so a layer norm over (N, D) and a group norm of
// one group over it agree bit for bit.
template <class T>
void affine_per_value(const void* xv, void* yv, int64_t len, float mean_hi, float mean_lo, float invstd,
                      const float* gamma, const float* beta) {
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  for (int64_t i = 0; i < len; i += kLanes) {
    const int n = len - i < kLanes ? static_cast<int>(len - i) : kLanes;
    float v[kLanes];
    load_block(x + i, v, n);
    float s[kLanes];
    for (int j = 0; j < n; ++j) s[j] = gamma ? invstd * gamma[i + j] : invstd;
    for (int j = 0; j < n; ++j) v[j] = ((v[j] - mean_hi) - mean_lo) * s[j] + (beta ? beta[i + j] : 0.0f);
    store_block(y + i, v, n);
  }
}

// Layer norm's per-value backward over one sample's run: the float64 sums
// sum(gamma * dy) and sum(gamma * dy * (x - mean)), in kChunk pieces.
template <class T>
Sums weighted_grad_sums(const void* xv, const void* dyv, int64_t len, float mean, const float* gamma) {
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  Sums out{0.0, 0.0};
  for (int64_t c0 = 0; c0 < len; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < len ? c0 + kChunk : len;
    float ag[kLanes] = {}, agx[kLanes] = {}, vx[kLanes], vg[kLanes];
    for (int64_t i = c0; i < c1; i += kLanes) {
      const int n = c1 - i < kLanes ? static_cast<int>(c1 - i) : kLanes;
      load_block(x + i, vx, n);
      load_block(dy + i, vg, n);
      if (gamma)
        for (int j = 0; j < n; ++j) vg[j] *= gamma[i + j];
      for (int j = 0; j < n; ++j) {
        ag[j] += vg[j];
        agx[j] += vg[j] * (vx[j] - mean);
      }
    }
    out.g += lane_total(ag, kLanes);
    out.gx += lane_total(agx, kLanes);
  }
  return out;
}

// dx[i] = invstd * gamma[i] * dy[i] + (xc * (x[i] - mean) + c0) over one run.
template <class T>
void dx_per_value(const void* xv, const void* dyv, void* dxv, int64_t len, float mean, float invstd,
                  const float* gamma, float xc, float c0) {
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  for (int64_t i = 0; i < len; i += kLanes) {
    const int n = len - i < kLanes ? static_cast<int>(len - i) : kLanes;
    float vx[kLanes], vg[kLanes], out[kLanes];
    load_block(x + i, vx, n);
    load_block(dy + i, vg, n);
    for (int j = 0; j < n; ++j) vg[j] *= invstd;
    if (gamma)
      for (int j = 0; j < n; ++j) vg[j] *= gamma[i + j];
    for (int j = 0; j < n; ++j) out[j] = vg[j] + (xc * (vx[j] - mean) + c0);
    store_block(dx + i, out, n);
  }
}

// Layer norm's per-value parameter gradients, features [f0, f1) of rows samples of len
// values: dgamma[f] += sum_n dy * xhat, dbeta[f] += sum_n dy, in float64, n in order.
template <class T>
void column_grads(const void* xv, const void* dyv, int64_t rows, int64_t len, int64_t f0, int64_t f1,
                  const float* mean, const float* invstd, double* dgamma, double* dbeta) {
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  for (int64_t n = 0; n < rows; ++n) {
    const float m = mean[n], s = invstd[n];
    for (int64_t i = f0; i < f1; i += kLanes) {
      const int cnt = f1 - i < kLanes ? static_cast<int>(f1 - i) : kLanes;
      float vx[kLanes], vg[kLanes];
      load_block(x + n * len + i, vx, cnt);
      load_block(dy + n * len + i, vg, cnt);
      for (int j = 0; j < cnt; ++j) {
        dgamma[i + j] += static_cast<double>(vg[j] * ((vx[j] - m) * s));
        dbeta[i + j] += static_cast<double>(vg[j]);
      }
    }
  }
}

// w_out = w * scale over one run (folding).
template <class T>
void scale_run(const void* wv, void* ov, int64_t len, float scale) {
  const T* w = static_cast<const T*>(wv);
  T* o = static_cast<T*>(ov);
  for (int64_t i = 0; i < len; i += kLanes) {
    const int n = len - i < kLanes ? static_cast<int>(len - i) : kLanes;
    float v[kLanes];
    load_block(w + i, v, n);
    for (int j = 0; j < n; ++j) v[j] *= scale;
    store_block(o + i, v, n);
  }
}

template <class T>
constexpr Kernels table_of() {
  return Kernels{&stats<T>,      &grad_sums<T>,       &affine<T>,
                 &dx_map<T>,     &lane_stats<T>,      &lane_grad_sums<T>, &lane_affine<T>,
                 &lane_dx<T>,    &affine_per_value<T>, &weighted_grad_sums<T>, &dx_per_value<T>,
                 &column_grads<T>, &scale_run<T>};
}

}  // namespace

const Kernels* tables() {
  static const Kernels t[3] = {table_of<float>(), table_of<__half>(), table_of<__nv_bfloat16>()};
  return t;
}

}  // namespace bnorm::cpu::fast::BNORM_ISA_NS
