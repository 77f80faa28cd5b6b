// The fast CPU path's inner loops (fast_isa.hpp declares them), compiled once per
// instruction set by fast_isa_*.cpp. They work on blocks of kLanes = 32 floats held as
// two vectors of 16 (GCC's vector extension: one AVX-512 register each, two AVX2, four
// SSE), so the accumulators of a loop live in registers; no loop here depends on the
// thread count.
//
// Why the results do not depend on the instruction set either: every sum is spread over
// lanes fixed by the source (value i of a run goes to lane i % kLanes), vector
// operations are lane by lane, lanes are added in a fixed order, and the files are
// compiled with -ffp-contract=off (no FMA contraction). So SSE2, AVX2 and AVX-512 builds
// compute the same bits.
//
// Numerics, per chunk of at most kChunk values (a part of one long run): the statistics
// are a two-pass mean and M2 in float32, shifted by the chunk's first value so that
// |mean|/std = 1e4 costs no precision, then merged into a float64 Welford state with
// Chan's formula (kernels/welford.cuh), chunk after chunk. Short runs of several samples
// (planes under kChunk values) keep a lane per value of a run instead, its chunks over
// the samples (short_stats). Gradient sums are float32 per chunk and float64 across
// chunks. Never E[x^2] - E[x]^2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <immintrin.h>

#include "fast_isa.hpp"
#include "kernels/welford.cuh"

// Every helper is forced inline, and each kernel inlines all it calls (flatten), so
// blocks never pass through memory between them.
#define BNORM_ALWAYS_INLINE inline __attribute__((always_inline))

namespace bnorm::cpu::fast::BNORM_ISA_NS {
namespace {

// ---- vectors and blocks ---------------------------------------------------------------
// V is the widest vector the instruction set has (GCC's vector extension, so the same
// source serves all three); a block Blk is kLanes = 32 floats as kN of them. Helpers
// below are written on blocks, lane by lane.

#if defined(__AVX512F__)
constexpr int kW = 16;
#elif defined(__AVX2__)
constexpr int kW = 8;
#else
constexpr int kW = 4;
#endif
constexpr int kN = kLanes / kW;
typedef float V __attribute__((vector_size(4 * kW)));
typedef int32_t VI __attribute__((vector_size(4 * kW)));
typedef uint32_t VU __attribute__((vector_size(4 * kW)));
typedef uint16_t VH __attribute__((vector_size(2 * kW)));

struct Blk {
  V v[kN];
};
struct Mask {
  VI m[kN];
};

// f in every lane, bit for bit (V{} + f would make -0 into +0).
BNORM_ALWAYS_INLINE V splat(float f) {
  V v;
  for (int j = 0; j < kW; ++j) v[j] = f;
  return v;
}
BNORM_ALWAYS_INLINE Blk bsplat(float f) {
  Blk b;
  for (int k = 0; k < kN; ++k) b.v[k] = splat(f);
  return b;
}
BNORM_ALWAYS_INLINE Blk zero() { return bsplat(0.0f); }

#define BNORM_BLK_OP(op)                                                \
  BNORM_ALWAYS_INLINE Blk operator op(const Blk& x, const Blk& y) {     \
    Blk r;                                                              \
    for (int k = 0; k < kN; ++k) r.v[k] = x.v[k] op y.v[k];             \
    return r;                                                           \
  }                                                                     \
  BNORM_ALWAYS_INLINE Blk operator op(const Blk& x, float y) {          \
    Blk r;                                                              \
    for (int k = 0; k < kN; ++k) r.v[k] = x.v[k] op y;                  \
    return r;                                                           \
  }
BNORM_BLK_OP(+)
BNORM_BLK_OP(-)
BNORM_BLK_OP(*)
#undef BNORM_BLK_OP
BNORM_ALWAYS_INLINE Blk& operator+=(Blk& x, const Blk& y) { return x = x + y; }

BNORM_ALWAYS_INLINE V bits_to_v(VU u) {
  V v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
BNORM_ALWAYS_INLINE VU v_to_bits(V v) {
  VU u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
// m ? x : y lane by lane, m a comparison's result (all ones or all zeros per lane).
BNORM_ALWAYS_INLINE V sel(VI m, V x, V y) { return bits_to_v((v_to_bits(x) & VU(m)) | (v_to_bits(y) & ~VU(m))); }
BNORM_ALWAYS_INLINE Blk sel(const Mask& m, const Blk& x, const Blk& y) {
  Blk r;
  for (int k = 0; k < kN; ++k) r.v[k] = sel(m.m[k], x.v[k], y.v[k]);
  return r;
}
// The lanes [0, n) of a block.
BNORM_ALWAYS_INLINE Mask lanes_below(int n) {
  Mask m;
  for (int k = 0; k < kN; ++k) {
    VI idx;
    for (int j = 0; j < kW; ++j) idx[j] = k * kW + j;
    m.m[k] = idx < n;
  }
  return m;
}

// The epilogue act(v + z) and the ReLU mask, as the reference has them: ReLU keeps NaN
// (v < 0 is false for it), and a NaN or non-positive y masks its gradient.
BNORM_ALWAYS_INLINE Blk relu_of(const Blk& v) {
  Blk r;
  for (int k = 0; k < kN; ++k) r.v[k] = sel(v.v[k] < 0.0f, V{}, v.v[k]);
  return r;
}
BNORM_ALWAYS_INLINE Blk masked(const Blk& g, const Blk& y) {
  Blk r;
  for (int k = 0; k < kN; ++k) r.v[k] = sel(y.v[k] > 0.0f, g.v[k], V{});
  return r;
}

BNORM_ALWAYS_INLINE float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as __float2bfloat16_rn; a NaN stays a (quiet) NaN.
BNORM_ALWAYS_INLINE uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : r);
}

BNORM_ALWAYS_INLINE float load_one(const float* p) { return *p; }
BNORM_ALWAYS_INLINE float load_one(const __nv_bfloat16* p) {
  uint16_t b;
  std::memcpy(&b, static_cast<const void*>(p), 2);
  return from_bits(static_cast<uint32_t>(b) << 16);
}
BNORM_ALWAYS_INLINE float load_one(const __half* p) { return __half2float(*p); }
BNORM_ALWAYS_INLINE void store_one(float* p, float v) { *p = v; }
BNORM_ALWAYS_INLINE void store_one(__nv_bfloat16* p, float v) {
  const uint16_t b = bf16_bits(v);
  std::memcpy(static_cast<void*>(p), &b, 2);
}
BNORM_ALWAYS_INLINE void store_one(__half* p, float v) { *p = __float2half_rn(v); }

// One vector of kW values.
BNORM_ALWAYS_INLINE V load_v(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
BNORM_ALWAYS_INLINE V load_v(const __nv_bfloat16* p) {
  VH h;
  std::memcpy(&h, static_cast<const void*>(p), sizeof h);
  return bits_to_v(__builtin_convertvector(h, VU) << 16);
}
BNORM_ALWAYS_INLINE V load_v(const __half* p) {
#if defined(__AVX512F__)
  return reinterpret_cast<V>(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#elif defined(__AVX2__)
  return reinterpret_cast<V>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#else
  V v;
  for (int j = 0; j < kW; ++j) v[j] = __half2float(p[j]);
  return v;
#endif
}
BNORM_ALWAYS_INLINE void store_v(float* p, V v) { std::memcpy(p, &v, sizeof v); }
BNORM_ALWAYS_INLINE void store_v(__nv_bfloat16* p, V v) {
  const VU u = v_to_bits(v);
  const VU nan = VU(VI(u & 0x7fffffffu) > 0x7f800000);
  const VU r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const VU q = (u >> 16) | 0x40u;
  const VH h = __builtin_convertvector((r & ~nan) | (q & nan), VH);
  std::memcpy(static_cast<void*>(p), &h, sizeof h);
}
BNORM_ALWAYS_INLINE void store_v(__half* p, V v) {
#if defined(__AVX512F__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtps_ph(reinterpret_cast<__m512>(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__AVX2__)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph(reinterpret_cast<__m256>(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  for (int j = 0; j < kW; ++j) p[j] = __float2half_rn(v[j]);
#endif
}

// The lanes of vector k that hold values of a block of n: min(max(n - k * kW, 0), kW).
BNORM_ALWAYS_INLINE int lanes_of(int n, int k) {
  const int m = n - k * kW;
  return m < 0 ? 0 : m > kW ? kW : m;
}

// A block's tail (n < kLanes values) with masked loads and stores where the instruction
// set has them (lanes past n neither read nor written: no fault past an array's end),
// else a value at a time. Lanes past n load as 0.
BNORM_ALWAYS_INLINE V load_part_v(const float* p, int m) {
#if defined(__AVX512F__)
  return reinterpret_cast<V>(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << m) - 1u), p));
#elif defined(__AVX2__)
  const VI mask = lanes_below(m).m[0];
  return reinterpret_cast<V>(_mm256_maskload_ps(p, reinterpret_cast<__m256i>(mask)));
#else
  V v{};
  for (int j = 0; j < m; ++j) v[j] = p[j];
  return v;
#endif
}
BNORM_ALWAYS_INLINE void store_part_v(float* p, V v, int m) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << m) - 1u), reinterpret_cast<__m512>(v));
#elif defined(__AVX2__)
  const VI mask = lanes_below(m).m[0];
  _mm256_maskstore_ps(p, reinterpret_cast<__m256i>(mask), reinterpret_cast<__m256>(v));
#else
  for (int j = 0; j < m; ++j) p[j] = v[j];
#endif
}
#if defined(__AVX512F__)
// 16-bit values: masked word loads and stores (AVX-512BW), converted as full vectors.
template <class T>
BNORM_ALWAYS_INLINE V load_part_v(const T* p, int m) {
  alignas(64) T t[kW];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(t),
                      _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << m) - 1u), static_cast<const void*>(p)));
  return load_v(t);
}
template <class T>
BNORM_ALWAYS_INLINE void store_part_v(T* p, V v, int m) {
  alignas(64) T t[kW];
  store_v(t, v);
  _mm256_mask_storeu_epi16(static_cast<void*>(p), static_cast<__mmask16>((1u << m) - 1u),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t)));
}
#else
template <class T>
BNORM_ALWAYS_INLINE V load_part_v(const T* p, int m) {
  float t[kW] = {};
  for (int j = 0; j < m; ++j) t[j] = load_one(p + j);
  return load_v(t);
}
template <class T>
BNORM_ALWAYS_INLINE void store_part_v(T* p, V v, int m) {
  float t[kW];
  store_v(t, v);
  for (int j = 0; j < m; ++j) store_one(p + j, t[j]);
}
#endif

// A block of n <= kLanes values; lanes past n load as 0.
template <class T>
BNORM_ALWAYS_INLINE Blk load(const T* p, int n) {
  Blk b;
  if (n == kLanes) {
    for (int k = 0; k < kN; ++k) b.v[k] = load_v(p + k * kW);
    return b;
  }
  for (int k = 0; k < kN; ++k) {
    const int m = lanes_of(n, k);
    b.v[k] = m == kW ? load_v(p + k * kW) : m == 0 ? V{} : load_part_v(p + k * kW, m);
  }
  return b;
}
template <class T>
BNORM_ALWAYS_INLINE void store(T* p, const Blk& v, int n) {
  if (n == kLanes) {
    for (int k = 0; k < kN; ++k) store_v(p + k * kW, v.v[k]);
    return;
  }
  for (int k = 0; k < kN; ++k) {
    const int m = lanes_of(n, k);
    if (m == kW) {
      store_v(p + k * kW, v.v[k]);
    } else if (m > 0) {
      store_part_v(p + k * kW, v.v[k], m);
    }
  }
}
// A full block of float32 to a 64-byte aligned address, past the caches (a non-temporal
// store): for outputs too large to stay cached, it saves the read of each line that a
// normal store first makes, a third of forward's traffic. Callers fence when done.
BNORM_ALWAYS_INLINE void store_stream(float* p, const Blk& v) {
  for (int k = 0; k < kN; ++k) {
#if defined(__AVX512F__)
    _mm512_stream_ps(p + k * kW, reinterpret_cast<__m512>(v.v[k]));
#elif defined(__AVX2__)
    _mm256_stream_ps(p + k * kW, reinterpret_cast<__m256>(v.v[k]));
#else
    _mm_stream_ps(p + k * kW, reinterpret_cast<__m128>(v.v[k]));
#endif
  }
}
BNORM_ALWAYS_INLINE void stream_fence() { _mm_sfence(); }

// Lane arrays (float, padded to whole blocks).
BNORM_ALWAYS_INLINE Blk at(const float* p) { return load(p, kLanes); }
BNORM_ALWAYS_INLINE void put(float* p, const Blk& v) { store(p, v, kLanes); }

// The lanes' sum in float64, as a fixed tree (short dependency chains).
BNORM_ALWAYS_INLINE double lane_total(const Blk& acc) {
  float f[kLanes];
  put(f, acc);
  double t[kLanes];
  for (int j = 0; j < kLanes; ++j) t[j] = f[j];
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) t[j] += t[j + w];
  return t[0];
}

// Calls f(offset, n) for each block of the run [0, len): full blocks, then the tail.
template <class F>
BNORM_ALWAYS_INLINE void for_blocks(int64_t len, F&& f) {
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) f(i, kLanes);
  if (i < len) f(i, static_cast<int>(len - i));
}

// Calls f(first value, run length, stride between runs, runs) per chunk of s, in order:
// a long run is cut into near-equal parts of at most kChunk values, short runs are
// taken kChunk / len at a time.
template <class F>
BNORM_ALWAYS_INLINE void for_each_chunk(const Segs& s, F&& f) {
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
__attribute__((flatten)) Welford<double> chunk_stats(const T* p, int64_t len, int64_t stride, int64_t runs) {
  const float k0 = load_one(p);
  Blk acc = zero();
  for (int64_t r = 0; r < runs; ++r) {
    const T* q = p + r * stride;
    for_blocks(len, [&](int64_t i, int n) {
      const Blk d = load(q + i, n) - k0;
      acc += n == kLanes ? d : sel(lanes_below(n), d, zero());
    });
  }
  const double cnt = static_cast<double>(len * runs);
  const double shift = lane_total(acc) / cnt;  // mean - k0
  const float mk = static_cast<float>(shift);
  Blk acc2 = zero();
  for (int64_t r = 0; r < runs; ++r) {
    const T* q = p + r * stride;
    for_blocks(len, [&](int64_t i, int n) {
      Blk d = (load(q + i, n) - k0) - mk;
      if (n < kLanes) d = sel(lanes_below(n), d, zero());
      acc2 += d * d;
    });
  }
  // The deviations were taken from mk, the float32 rounding of the chunk's mean: M2 about
  // the mean itself is smaller by cnt * (shift - mk)^2.
  const double e = shift - static_cast<double>(mk);
  return Welford<double>{cnt, static_cast<double>(k0) + shift, lane_total(acc2) - cnt * e * e};
}

// ---- short runs: a lane per value of a run, over the runs ----------------------------------
// Short runs (planes shorter than kChunk values, several per block) of the tensors a
// caller marks (Segs::lanes: those past the caches, fast.cpp) are read in memory order:
// nch channels' runs side by side (channel i's at s's moved by i * s.len, an NCHW
// tensor's planes (n, c0 + i)) as one span per sample, kGroup spans at once, each value
// of a span its own lane (position p). Chunks per lane: kRunChunk runs, in groups of
// kGroup read once into registers for a two-pass mean and M2 in float32 about the
// chunk's shift (the block's first run at p, so |mean|/std = 1e4 costs nothing), merged
// with Chan's formula in float32 within the chunk and in float64 across chunks; then a
// channel's lanes, all of one count, fold in float64 by a two-pass over their means.
// Runs a channel's stride apart were read at half the memory's speed (bench/NOTES.md),
// and a chunk of one channel's runs paid two lane totals and a merge per 1024 values.
// The lanes are fixed by the run length and the block, never by nch or a thread.
constexpr int64_t kSpanLanes = 2048;  // lanes per pass: their arrays (28 bytes a lane) in the L2
constexpr int kGroup = 8;             // runs read at once (statistics)
constexpr int kSumGroup = 4;          // and for the sums, of two or three tensors each
constexpr int64_t kRunChunk = 32;     // runs per float32 chunk: 32 values a lane, as kChunk's

BNORM_ALWAYS_INLINE bool short_runs(const Segs& s) { return s.lanes && s.len < kChunk && s.count > 1; }
// The sums only for planes under kSumLanesRun values: 28x28 layers' backward ran 0.85 to
// 1.03 times as fast in lanes, 7x7's 1.36 to 1.43 (bench/NOTES.md).
constexpr int64_t kSumLanesRun = 256;
BNORM_ALWAYS_INLINE bool short_sum_runs(const Segs& s) { return short_runs(s) && s.len < kSumLanesRun; }

// Whole channels per pass (short runs: at least two).
BNORM_ALWAYS_INLINE int64_t channels_per_pass(const Segs& s) { return kSpanLanes / s.len; }
static_assert(kSpanLanes >= 2 * kChunk);

template <class T>
__attribute__((flatten)) void short_stats(const T* x, const Segs& s, int64_t nch, Welford<double>* out,
                                          int64_t os) {
  alignas(64) float k0[kSpanLanes + kLanes], m[kSpanLanes + kLanes], q[kSpanLanes + kLanes];
  alignas(64) double md[kSpanLanes], qd[kSpanLanes];
  const int64_t per = channels_per_pass(s);
  for (int64_t c0 = 0; c0 < nch; c0 += per) {
    const int64_t cn = std::min(per, nch - c0), len = cn * s.len;
    const T* base = x + s.off + c0 * s.len;
    for_blocks(len, [&](int64_t l, int n) { put(k0 + l, load(base + l, n)); });  // past len: 0
    double cnt = 0.0;
    for (int64_t r0 = 0; r0 < s.count; r0 += kRunChunk) {
      const int64_t runs = std::min(kRunChunk, s.count - r0);
      for (int64_t r = 0; r < runs; r += kGroup) {
        const int gs = static_cast<int>(std::min<int64_t>(kGroup, runs - r));
        const T* p = base + (r0 + r) * s.stride;
        const float a = static_cast<float>(r), b = static_cast<float>(gs);
        const float wb = b / (a + b), wab = a * wb, inv = 1.0f / b;
        // Lanes past len are 0 - 0: they add nothing and are never read.
        for_blocks(len, [&](int64_t l, int n) {
          const Blk kk = at(k0 + l);
          Blk sum = zero();
          for (int i = 0; i < gs; ++i) sum += load(p + i * s.stride + l, n) - kk;
          const Blk mg = sum * inv;
          Blk qg = zero();
          for (int i = 0; i < gs; ++i) {
            const Blk d = (load(p + i * s.stride + l, n) - kk) - mg;
            qg += d * d;
          }
          if (r == 0) {
            put(m + l, mg);
            put(q + l, qg);
            return;
          }
          const Blk ma = at(m + l), delta = mg - ma;
          put(m + l, ma + delta * wb);
          put(q + l, (at(q + l) + qg) + delta * delta * wab);
        });
      }
      const double nb = static_cast<double>(runs), nt = cnt + nb, w = nb / nt, wc = cnt * w;
      if (r0 == 0) {
        for (int64_t l = 0; l < len; ++l) {
          md[l] = static_cast<double>(k0[l]) + static_cast<double>(m[l]);
          qd[l] = q[l];
        }
      } else {
        for (int64_t l = 0; l < len; ++l) {
          const double delta = (static_cast<double>(k0[l]) + static_cast<double>(m[l])) - md[l];
          md[l] += delta * w;
          qd[l] += static_cast<double>(q[l]) + delta * delta * wc;
        }
      }
      cnt = nt;
    }
    for (int64_t i = 0; i < cn; ++i) {
      const double* pm = md + i * s.len;
      const double* pq = qd + i * s.len;
      double sm = 0.0;
      for (int64_t j = 0; j < s.len; ++j) sm += pm[j];
      const double mean = sm / static_cast<double>(s.len);
      double sq = 0.0, dev = 0.0;
      for (int64_t j = 0; j < s.len; ++j) {
        const double e = pm[j] - mean;
        sq += pq[j];
        dev += e * e;
      }
      out[(c0 + i) * os] = Welford<double>{cnt * static_cast<double>(s.len), mean, sq + cnt * dev};
    }
  }
}

// sum(g) and sum(g * (x - mean[i])) per channel, as short_stats reads: float32 per lane
// and chunk, float64 across chunks, a channel's lanes added in order.
template <class T>
__attribute__((flatten)) void short_grad_sums(const T* x, const T* y, const T* dy, const Segs& s, int64_t nch,
                                              const float* mean, Sums* out, int64_t os) {
  alignas(64) float mv[kSpanLanes + kLanes], ag[kSpanLanes + kLanes], agx[kSpanLanes + kLanes];
  alignas(64) double sg[kSpanLanes], sgx[kSpanLanes];
  const int64_t per = channels_per_pass(s);
  for (int64_t c0 = 0; c0 < nch; c0 += per) {
    const int64_t cn = std::min(per, nch - c0), len = cn * s.len, pl = (len + kLanes - 1) / kLanes * kLanes;
    const int64_t base = s.off + c0 * s.len;
    for (int64_t i = 0; i < cn; ++i) std::fill_n(mv + i * s.len, s.len, mean[c0 + i]);
    std::fill(mv + len, mv + pl, 0.0f);
    std::fill_n(sg, len, 0.0);
    std::fill_n(sgx, len, 0.0);
    for (int64_t r0 = 0; r0 < s.count; r0 += kRunChunk) {
      const int64_t runs = std::min(kRunChunk, s.count - r0);
      std::fill_n(ag, pl, 0.0f);
      std::fill_n(agx, pl, 0.0f);
      for (int64_t r = 0; r < runs; r += kSumGroup) {
        const int gs = static_cast<int>(std::min<int64_t>(kSumGroup, runs - r));
        const int64_t o = base + (r0 + r) * s.stride;
        // Lanes past len load 0 and add 0.
        for_blocks(len, [&](int64_t l, int n) {
          const Blk mk = at(mv + l);
          Blk a = zero(), b = zero();
          for (int i = 0; i < gs; ++i) {
            const int64_t q = o + i * s.stride + l;
            Blk g = load(dy + q, n);
            if (y) g = masked(g, load(y + q, n));
            a += g;
            b += g * (load(x + q, n) - mk);
          }
          put(ag + l, at(ag + l) + a);
          put(agx + l, at(agx + l) + b);
        });
      }
      for (int64_t l = 0; l < len; ++l) {
        sg[l] += ag[l];
        sgx[l] += agx[l];
      }
    }
    for (int64_t i = 0; i < cn; ++i) {
      Sums t{0.0, 0.0};
      for (int64_t j = 0; j < s.len; ++j) {
        t.g += sg[i * s.len + j];
        t.gx += sgx[i * s.len + j];
      }
      out[(c0 + i) * os] = t;
    }
  }
}

template <class T>
__attribute__((flatten)) Welford<double> stats(const void* xv, const Segs& s) {
  const T* x = static_cast<const T*>(xv);
  if (short_runs(s)) {
    Welford<double> st;
    short_stats(x, s, 1, &st, 0);
    return st;
  }
  Welford<double> st = welford_empty<double>();
  for_each_chunk(s, [&](int64_t off, int64_t len, int64_t stride, int64_t runs) {
    st = welford_merge(st, chunk_stats(x + off, len, stride, runs));
  });
  return st;
}

// Adds a chunk's sums (float32 within, float64 into out).
template <class T>
BNORM_ALWAYS_INLINE void chunk_grad_sums(const T* x, const T* y, const T* dy, int64_t off, int64_t len,
                                         int64_t stride, int64_t runs, float mean, Sums& out) {
  Blk ag = zero(), agx = zero();
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t q = off + r * stride;
    for_blocks(len, [&](int64_t i, int n) {
      Blk g = load(dy + q + i, n);
      if (y) g = masked(g, load(y + q + i, n));
      ag += g;
      agx += g * (load(x + q + i, n) - mean);
    });
  }
  out.g += lane_total(ag);
  out.gx += lane_total(agx);
}

// sum(g) and sum(g * (x - mean)), g = dy masked by y > 0 when mask is given. Lanes past
// a tail load as 0 and add 0.
template <class T>
__attribute__((flatten)) Sums grad_sums(const void* xv, const void* maskv, const void* dyv, const Segs& s,
                                        float mean) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  Sums out{0.0, 0.0};
  if (short_sum_runs(s)) {
    short_grad_sums(x, y, dy, s, 1, &mean, &out, 0);
    return out;
  }
  for_each_chunk(s, [&](int64_t off, int64_t len, int64_t stride, int64_t runs) {
    chunk_grad_sums(x, y, dy, off, len, stride, runs, mean, out);
  });
  return out;
}

// ---- planes: adjacent channels at once -----------------------------------------------
// nch channels whose runs lie side by side, channel i's being s's moved by i * s.len (an
// NCHW tensor's planes (n, c0 + i)): per channel what stats() and grad_sums() compute,
// the same chunks merged in the same order, so the same bits. The channels are taken in
// turn within each row of chunks, so memory is read as runs of nch planes, not a plane
// per sample apart. (Marked short runs go to short_stats and short_grad_sums, which
// read so themselves.) f(channel, first value, run length, stride, runs).
template <class F>
BNORM_ALWAYS_INLINE void for_each_chunk_across(const Segs& s, int64_t nch, F&& f) {
  if (s.len >= kChunk) {
    const int64_t q = (s.len + kChunk - 1) / kChunk;
    for (int64_t k = 0; k < s.count; ++k)
      for (int64_t i = 0; i < nch; ++i)
        for (int64_t p = 0; p < q; ++p) {
          const int64_t a = p * s.len / q, b = (p + 1) * s.len / q;
          f(i, s.off + i * s.len + k * s.stride + a, b - a, int64_t{0}, int64_t{1});
        }
    return;
  }
  const int64_t g = kChunk / s.len;
  for (int64_t k = 0; k < s.count; k += g) {
    const int64_t runs = k + g <= s.count ? g : s.count - k;
    for (int64_t i = 0; i < nch; ++i) f(i, s.off + i * s.len + k * s.stride, s.len, s.stride, runs);
  }
}

// out[i * os]: channel i's state.
template <class T>
__attribute__((flatten)) void stats_across(const void* xv, const Segs& s, int64_t nch, Welford<double>* out,
                                           int64_t os) {
  const T* x = static_cast<const T*>(xv);
  if (short_runs(s)) return short_stats(x, s, nch, out, os);
  for (int64_t i = 0; i < nch; ++i) out[i * os] = welford_empty<double>();
  for_each_chunk_across(s, nch, [&](int64_t i, int64_t off, int64_t len, int64_t stride, int64_t runs) {
    out[i * os] = welford_merge(out[i * os], chunk_stats(x + off, len, stride, runs));
  });
}

// out[i * os]: channel i's sums, about mean[i].
template <class T>
__attribute__((flatten)) void grad_sums_across(const void* xv, const void* maskv, const void* dyv, const Segs& s,
                                               int64_t nch, const float* mean, Sums* out, int64_t os) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  if (short_sum_runs(s)) return short_grad_sums(x, y, dy, s, nch, mean, out, os);
  for (int64_t i = 0; i < nch; ++i) out[i * os] = Sums{0.0, 0.0};
  for_each_chunk_across(s, nch, [&](int64_t i, int64_t off, int64_t len, int64_t stride, int64_t runs) {
    chunk_grad_sums(x, y, dy, off, len, stride, runs, mean[i], out[i * os]);
  });
}

// Elementwise over the runs of s; a block is read before it is written, so y may alias
// x (and dx dy) exactly. f(offset, n, aligned). With out given (a float32 output to
// stream), each run starts with a partial block up to a 64-byte boundary of out, so
// the full blocks after it are aligned (aligned = true); block boundaries do not change
// an elementwise result.
template <class T, class F>
BNORM_ALWAYS_INLINE void for_each_block(const Segs& s, const T* out, F&& f) {
  for (int64_t r = 0; r < s.count; ++r) {
    const int64_t q = s.off + r * s.stride;
    int64_t head = 0;
    if (out) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(out + q);  // element-aligned (the API checks)
      head = static_cast<int64_t>((64 - a % 64) % 64 / sizeof(T));
      if (head > s.len) head = s.len;
      if (head > 0) f(q, static_cast<int>(head), false);
    }
    for_blocks(s.len - head, [&](int64_t i, int n) { f(q + head + i, n, out != nullptr && n == kLanes); });
  }
}

// Stores a block, streaming it where the caller aligned it for that.
template <class T>
BNORM_ALWAYS_INLINE void store_out(T* p, const Blk& v, int n, bool stream) {
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      store_stream(p, v);
      return;
    }
  }
  store(p, v, n);
}

// The coefficients of the elementwise passes: one set for a whole run, one per value
// (arrays read at the value's offset: span_affine, span_dx), or one per run of a walk
// over runs (RunWalk, below). Called block by block in order with the block's offset
// and its n values. The same arithmetic.
struct RunAffine {
  const Affine& a;
  BNORM_ALWAYS_INLINE Blk operator()(int64_t, int, const Blk& x) const {
    return ((x - a.mean_hi) - a.mean_lo) * a.scale + a.shift;
  }
};
struct ValueAffine {
  const LaneAffine& a;
  BNORM_ALWAYS_INLINE Blk operator()(int64_t o, int, const Blk& x) const {
    return ((x - at(a.mean_hi + o)) - at(a.mean_lo + o)) * at(a.scale + o) + at(a.shift + o);
  }
};
// g * g' + (xc * (x - mean) + c0), or g * g' + c0 without x.
struct RunDx {
  const DxCoef& a;
  BNORM_ALWAYS_INLINE Blk operator()(int64_t, int, const Blk& g, const Blk& x) const {
    return g * a.g + ((x - a.mean) * a.xc + a.c0);
  }
  BNORM_ALWAYS_INLINE Blk operator()(int64_t, int, const Blk& g) const { return g * a.g + a.c0; }
};
struct ValueDx {
  const LaneDx& a;
  BNORM_ALWAYS_INLINE Blk operator()(int64_t o, int, const Blk& g, const Blk& x) const {
    return g * at(a.g + o) + ((x - at(a.mean + o)) * at(a.xc + o) + at(a.c0 + o));
  }
  BNORM_ALWAYS_INLINE Blk operator()(int64_t o, int, const Blk& g) const { return g * at(a.g + o) + at(a.c0 + o); }
};

// Runs of hw values back to back, run r of channel (ch0 + r) % c, four coefficient
// arrays per channel: walked block by block in order, a block that reaches into the
// next run gets each lane's own channel's coefficients by a select. Blocks need not
// start at a run, so a streamed pass over short planes stores aligned full blocks but
// at its two ends (a 7x7 plane streamed on its own is mostly a partial head and tail).
// The values are those of a whole-run set.
struct RunWalk {
  const float* p[4];
  int64_t hw, c, ch, nx, end;  // run ch ends at end (from the walk's start), nx: the next run's channel
  BNORM_ALWAYS_INLINE RunWalk(const float* const* q, int64_t hw_, int64_t c_, int64_t ch0)
      : p{q[0], q[1], q[2], q[3]}, hw(hw_), c(c_), ch(ch0), nx(ch0 + 1 == c_ ? 0 : ch0 + 1), end(hw_) {}
  // f(k): the block's result from its coefficients k[0..3]. Runs of kLanes values or
  // more: a block meets at most two channels, so a select per coefficient and no branch
  // but the one that moves to the next run. The coefficients are broadcast from their
  // arrays block by block (eight vectors of two channels' sets held across blocks would
  // take every AVX2 register).
  template <class F>
  BNORM_ALWAYS_INLINE Blk with(int64_t o, int n, F&& f) {
    const int64_t left = end - o;
    const Mask m = lanes_below(static_cast<int>(left < kLanes ? left : kLanes));
    Blk k[4];
    for (int i = 0; i < 4; ++i) {
      const V a = splat(p[i][ch]), b = splat(p[i][nx]);
      for (int v = 0; v < kN; ++v) k[i].v[v] = sel(m.m[v], a, b);
    }
    const Blk r = f(k);
    if (o + n >= end) {
      ch = nx;
      nx = nx + 1 == c ? 0 : nx + 1;
      end += hw;
    }
    return r;
  }
};
struct WalkAffine {  // arrays mean_hi, mean_lo, scale, shift
  RunWalk w;
  BNORM_ALWAYS_INLINE Blk operator()(int64_t o, int n, const Blk& x) {
    return w.with(o, n, [&](const Blk* k) { return ((x - k[0]) - k[1]) * k[2] + k[3]; });
  }
};
struct WalkDx {  // arrays mean, g, xc, c0
  RunWalk w;
  BNORM_ALWAYS_INLINE Blk operator()(int64_t o, int n, const Blk& g, const Blk& x) {
    return w.with(o, n, [&](const Blk* k) { return g * k[1] + ((x - k[0]) * k[2] + k[3]); });
  }
  BNORM_ALWAYS_INLINE Blk operator()(int64_t o, int n, const Blk& g) {
    return w.with(o, n, [&](const Blk* k) { return g * k[1] + k[3]; });
  }
};

template <class T, class C>
BNORM_ALWAYS_INLINE void affine_with(const void* xv, const void* zv, void* yv, const Segs& s, C&& coef,
                                     bool relu, bool stream) {
  const T* x = static_cast<const T*>(xv);
  const T* z = static_cast<const T*>(zv);
  T* y = static_cast<T*>(yv);
  stream = stream && std::is_same_v<T, float>;
  // One loop per combination of the options: no branch on them per block.
  bool_dispatch(
      [&](auto add, auto act) {
        for_each_block(s, stream ? y : nullptr, [&](int64_t o, int n, bool nt) {
          Blk v = coef(o - s.off, n, load(x + o, n));
          if constexpr (decltype(add)::value) v += load(z + o, n);
          if constexpr (decltype(act)::value) v = relu_of(v);
          store_out(y + o, v, n, nt);
        });
      },
      z != nullptr, relu);
  if (stream) stream_fence();
}

template <class T>
__attribute__((flatten)) void affine(const void* xv, const void* zv, void* yv, const Segs& s, const Affine& a,
                                     bool relu, bool stream) {
  affine_with<T>(xv, zv, yv, s, RunAffine{a}, relu, stream);
}

// Runs [r0, r1) in memory order, run r being the hw values at r * hw of channel r % c
// (an NCHW tensor's (sample, channel) planes): the elementwise passes that need no
// statistics first (inference), so memory is walked straight through, not a channel's
// planes a sample apart. Coefficients per channel in arrays. Streamed short planes as
// one walk (RunWalk): 1.1 to 1.4 times as fast on the large short-plane layers as
// a run per plane with normal stores (bench/NOTES.md); a run per plane otherwise, with
// less arithmetic per block (the walk's selects made planes in the caches up to 3x
// slower), and for long planes, which are mostly full blocks anyway.
// Whether a flat pass walks its runs (streamed short planes), else a run per plane.
BNORM_ALWAYS_INLINE bool walks(int64_t hw, bool stream) { return stream && hw >= kLanes && hw < kChunk; }

template <class T>
__attribute__((flatten)) void affine_flat(const void* xv, const void* zv, void* yv, int64_t r0, int64_t r1,
                                          int64_t hw, int64_t c, const LaneAffine& a, bool relu, bool stream) {
  if (!walks(hw, stream)) {
    int64_t ch = r0 % c;
    for (int64_t r = r0; r < r1; ++r) {
      affine<T>(xv, zv, yv, Segs{r * hw, hw, 0, 1}, Affine{a.mean_hi[ch], a.mean_lo[ch], a.scale[ch], a.shift[ch]},
                relu, stream);
      ch = ch + 1 == c ? 0 : ch + 1;
    }
    return;
  }
  const float* p[4] = {a.mean_hi, a.mean_lo, a.scale, a.shift};
  affine_with<T>(xv, zv, yv, Segs{r0 * hw, (r1 - r0) * hw, 0, 1}, WalkAffine{RunWalk(p, hw, c, r0 % c)}, relu,
                 stream);
}

// dx = coef(g, x), dz = g, g = dy masked by y > 0 when mask is given. x is not read
// when null.
template <class T, class C>
BNORM_ALWAYS_INLINE void dx_with(const void* xv, const void* maskv, const void* dyv, void* dxv, void* dzv,
                                 const Segs& s, C&& coef, bool relu, bool stream) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  T* dz = static_cast<T*>(dzv);
  // dz streams with dx only where the two share their alignment.
  stream = stream && std::is_same_v<T, float>;
  const bool dz_stream = stream && dz && (reinterpret_cast<uintptr_t>(dz) - reinterpret_cast<uintptr_t>(dx)) % 64 == 0;
  bool_dispatch(
      [&](auto act, auto with_x, auto with_dz) {
        for_each_block(s, stream ? dx : nullptr, [&](int64_t o, int n, bool nt) {
          Blk g = load(dy + o, n);
          if constexpr (decltype(act)::value) g = masked(g, load(y + o, n));
          Blk out;
          if constexpr (decltype(with_x)::value) {
            out = coef(o - s.off, n, g, load(x + o, n));
          } else {
            out = coef(o - s.off, n, g);
          }
          // dz may alias dy: everything of the block was read above.
          if constexpr (decltype(with_dz)::value) store_out(dz + o, g, n, nt && dz_stream);
          store_out(dx + o, out, n, nt);
        });
      },
      relu, x != nullptr, dz != nullptr);
  if (stream) stream_fence();
}

// dx = a.g * g + (a.xc * (x - mean) + a.c0); dz = g. x is not read when null (a.xc is
// then 0).
template <class T>
__attribute__((flatten)) void dx_map(const void* xv, const void* maskv, const void* dyv, void* dxv, void* dzv,
                                     const Segs& s, const DxCoef& a, bool relu, bool stream) {
  dx_with<T>(xv, maskv, dyv, dxv, dzv, s, RunDx{a}, relu, stream);
}

template <class T>
__attribute__((flatten)) void dx_flat(const void* xv, const void* maskv, const void* dyv, void* dxv, void* dzv,
                                      int64_t r0, int64_t r1, int64_t hw, int64_t c, const LaneDx& a, bool relu,
                                      bool stream) {
  if (!walks(hw, stream)) {
    int64_t ch = r0 % c;
    for (int64_t r = r0; r < r1; ++r) {
      dx_map<T>(xv, maskv, dyv, dxv, dzv, Segs{r * hw, hw, 0, 1}, DxCoef{a.mean[ch], a.g[ch], a.xc[ch], a.c0[ch]},
                relu, stream);
      ch = ch + 1 == c ? 0 : ch + 1;
    }
    return;
  }
  const float* p[4] = {a.mean, a.g, a.xc, a.c0};
  dx_with<T>(xv, maskv, dyv, dxv, dzv, Segs{r0 * hw, (r1 - r0) * hw, 0, 1}, WalkDx{RunWalk(p, hw, c, r0 % c)}, relu,
             stream);
}

// A run of len values with a coefficient set per value (arrays of len values, readable
// kLanes past the end): a window's planes of one sample as one run, so that outputs
// stream past the caches with aligned full blocks but for the run's two ends.
template <class T>
__attribute__((flatten)) void span_affine(const void* xv, const void* zv, void* yv, int64_t len, const LaneAffine& a,
                                          bool relu, bool stream) {
  affine_with<T>(xv, zv, yv, Segs{0, len, 0, 1}, ValueAffine{a}, relu, stream);
}

template <class T>
__attribute__((flatten)) void span_dx(const void* xv, const void* maskv, const void* dyv, void* dxv, void* dzv,
                                      int64_t len, const LaneDx& a, bool relu, bool stream) {
  dx_with<T>(xv, maskv, dyv, dxv, dzv, Segs{0, len, 0, 1}, ValueDx{a}, relu, stream);
}

// ---- lanes: a flat run whose value i belongs to lane i % w (rows of channels-last
// tensors, several rows per lane set when channels are few); per-lane coefficients and
// accumulators in arrays of w floats ----

// Calls f(offset, lane, n) per block: each row of w values in blocks of kLanes, then
// the last partial row.
template <class F>
BNORM_ALWAYS_INLINE void for_each_lane_block(int64_t nvals, int w, F&& f) {
  int64_t i = 0;
  for (; i + w <= nvals; i += w)
    for (int l = 0; l < w; l += kLanes) f(i + l, l, w - l < kLanes ? w - l : kLanes);
  for (int l = 0; i + l < nvals; l += kLanes)
    f(i + l, l, nvals - i - l < kLanes ? static_cast<int>(nvals - i - l) : kLanes);
}

// w rounded up to whole blocks: the size of a lane array.
BNORM_ALWAYS_INLINE int padded(int w) { return (w + kLanes - 1) / kLanes * kLanes; }

template <class T>
__attribute__((flatten)) void lane_stats(const void* xv, int64_t nvals, int w, float* scratch, double* mean,
                                         double* m2) {
  const T* x = static_cast<const T*>(xv);
  const int pw = padded(w);
  float* k0 = scratch;
  float* acc = scratch + pw;
  float* mk = scratch + 2 * pw;
  const int first = static_cast<int>(nvals < w ? nvals : w);
  {
    const Blk zb = zero();
    for (int l = 0; l < pw; l += kLanes) {
      put(k0 + l, l + kLanes <= first ? load(x + l, kLanes) : load(x + l, first > l ? first - l : 0));
      put(acc + l, zb);
    }
  }
  // Lanes of a partial block (past n) add zero.
  for_each_lane_block(nvals, w, [&](int64_t o, int l, int n) {
    const Blk d = load(x + o, n) - at(k0 + l);
    put(acc + l, at(acc + l) + (n == kLanes ? d : sel(lanes_below(n), d, zero())));
  });
  // Lanes without values (past first) get count 0 from the caller; their shift, mean
  // and m2 are 0 here.
  const int64_t full = nvals / w, part = nvals % w;
  for (int l = 0; l < pw; ++l) {
    const double cnt = static_cast<double>(full + (l < part ? 1 : 0));
    const double sh = l < first ? acc[l] / cnt : 0.0;
    mean[l] = sh;  // the shift, for now
    mk[l] = static_cast<float>(sh);
    acc[l] = 0.0f;
  }
  for_each_lane_block(nvals, w, [&](int64_t o, int l, int n) {
    Blk d = (load(x + o, n) - at(k0 + l)) - at(mk + l);
    if (n < kLanes) d = sel(lanes_below(n), d, zero());
    put(acc + l, at(acc + l) + d * d);
  });
  for (int l = 0; l < pw; ++l) {
    const double cnt = static_cast<double>(full + (l < part ? 1 : 0));
    const double e = mean[l] - static_cast<double>(mk[l]);
    m2[l] = static_cast<double>(acc[l]) - cnt * e * e;
    mean[l] += static_cast<double>(k0[l]);
  }
}

template <class T>
__attribute__((flatten)) void lane_grad_sums(const void* xv, const void* maskv, const void* dyv, int64_t nvals,
                                             int w, const float* mean, float* scratch, double* sg, double* sgx) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  const int pw = padded(w);
  float* ag = scratch;
  float* agx = scratch + pw;
  for (int l = 0; l < pw; ++l) ag[l] = agx[l] = 0.0f;
  for_each_lane_block(nvals, w, [&](int64_t o, int l, int n) {
    Blk g = load(dy + o, n);  // 0 past n: adds 0
    if (y) g = masked(g, load(y + o, n));
    put(ag + l, at(ag + l) + g);
    if (x) put(agx + l, at(agx + l) + g * (load(x + o, n) - at(mean + l)));
  });
  for (int l = 0; l < w; ++l) {
    sg[l] += ag[l];
    sgx[l] += agx[l];
  }
}

template <class T>
__attribute__((flatten)) void lane_affine(const void* xv, const void* zv, void* yv, int64_t nvals, int w,
                                          const LaneAffine& a, bool relu) {
  const T* x = static_cast<const T*>(xv);
  const T* z = static_cast<const T*>(zv);
  T* y = static_cast<T*>(yv);
  for_each_lane_block(nvals, w, [&](int64_t o, int l, int n) {
    Blk v = ((load(x + o, n) - at(a.mean_hi + l)) - at(a.mean_lo + l)) * at(a.scale + l) + at(a.shift + l);
    if (z) v += load(z + o, n);
    if (relu) v = relu_of(v);
    store(y + o, v, n);
  });
}

template <class T>
__attribute__((flatten)) void lane_dx(const void* xv, const void* maskv, const void* dyv, void* dxv, void* dzv,
                                      int64_t nvals, int w, const LaneDx& a, bool relu) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(maskv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  T* dz = static_cast<T*>(dzv);
  for_each_lane_block(nvals, w, [&](int64_t o, int l, int n) {
    Blk g = load(dy + o, n);
    if (relu) g = masked(g, load(y + o, n));
    const Blk kg = at(a.g + l), c0 = at(a.c0 + l);
    const Blk out = x ? g * kg + ((load(x + o, n) - at(a.mean + l)) * at(a.xc + l) + c0) : g * kg + c0;
    if (dz) store(dz + o, g, n);
    store(dx + o, out, n);
  });
}

// ---- elementwise helpers of the toolbox -------------------------------------------------

// y = ((x - mean_hi) - mean_lo) * (invstd * gamma[i]) + beta[i] over one run (layer
// norm's per-value affine; gamma or beta may be null: 1 and 0). The scale is rounded
// as the per-channel path rounds it, so a layer norm over (N, D) and a group norm of
// one group over it agree bit for bit.
template <class T>
__attribute__((flatten)) void affine_per_value(const void* xv, void* yv, int64_t len, float mean_hi, float mean_lo,
                                               float invstd, const float* gamma, const float* beta) {
  const T* x = static_cast<const T*>(xv);
  T* y = static_cast<T*>(yv);
  for_blocks(len, [&](int64_t i, int n) {
    const Blk s = gamma ? load(gamma + i, n) * invstd : bsplat(invstd);
    const Blk b = beta ? load(beta + i, n) : zero();
    store(y + i, ((load(x + i, n) - mean_hi) - mean_lo) * s + b, n);
  });
}

// Layer norm's per-value backward over one sample's run: the float64 sums
// sum(gamma * dy) and sum(gamma * dy * (x - mean)), in kChunk pieces.
template <class T>
__attribute__((flatten)) Sums weighted_grad_sums(const void* xv, const void* dyv, int64_t len, float mean,
                                                 const float* gamma) {
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  Sums out{0.0, 0.0};
  for (int64_t c0 = 0; c0 < len; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < len ? c0 + kChunk : len;
    Blk ag = zero(), agx = zero();
    for_blocks(c1 - c0, [&](int64_t i, int n) {
      Blk g = load(dy + c0 + i, n);
      if (gamma) g = g * load(gamma + c0 + i, n);
      ag += g;
      agx += g * (load(x + c0 + i, n) - mean);
    });
    out.g += lane_total(ag);
    out.gx += lane_total(agx);
  }
  return out;
}

// dx[i] = invstd * gamma[i] * dy[i] + (xc * (x[i] - mean) + c0) over one run.
template <class T>
__attribute__((flatten)) void dx_per_value(const void* xv, const void* dyv, void* dxv, int64_t len, float mean,
                                           float invstd, const float* gamma, float xc, float c0) {
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  T* dx = static_cast<T*>(dxv);
  for_blocks(len, [&](int64_t i, int n) {
    Blk g = load(dy + i, n) * invstd;
    if (gamma) g = g * load(gamma + i, n);
    store(dx + i, g + ((load(x + i, n) - mean) * xc + c0), n);
  });
}

// Layer norm's per-value parameter gradients, features [f0, f1) of rows samples of len
// values: dgamma[f] += sum_n dy * xhat, dbeta[f] += sum_n dy, in float64, n in order.
template <class T>
__attribute__((flatten)) void column_grads(const void* xv, const void* dyv, int64_t rows, int64_t len, int64_t f0,
                                           int64_t f1, const float* mean, const float* invstd, double* dgamma,
                                           double* dbeta) {
  const T* x = static_cast<const T*>(xv);
  const T* dy = static_cast<const T*>(dyv);
  for (int64_t n = 0; n < rows; ++n) {
    const float m = mean[n], s = invstd[n];
    for_blocks(f1 - f0, [&](int64_t i, int cnt) {
      const Blk g = load(dy + n * len + f0 + i, cnt);
      float pg[kLanes], pd[kLanes];
      put(pg, g * ((load(x + n * len + f0 + i, cnt) - m) * s));
      put(pd, g);
      double* dg = dgamma + f0 + i;
      double* db = dbeta + f0 + i;
      for (int j = 0; j < cnt; ++j) {
        dg[j] += static_cast<double>(pg[j]);
        db[j] += static_cast<double>(pd[j]);
      }
    });
  }
}

// w_out = w * scale over one run (folding).
template <class T>
__attribute__((flatten)) void scale_run(const void* wv, void* ov, int64_t len, float scale) {
  const T* w = static_cast<const T*>(wv);
  T* o = static_cast<T*>(ov);
  for_blocks(len, [&](int64_t i, int n) { store(o + i, load(w + i, n) * scale, n); });
}

// The arrays of a finish never overlap (the API checks): ivdep lets the loops vectorize,
// and the local copy of f keeps its pointers in registers across the stores.
void finish_training(const TrainingFinish& f, int64_t c0, int64_t c1) {
  with_training_flags(f, [&](auto sm, auto si, auto rs, auto g, auto b) {
    const TrainingFinish lf = f;
#pragma GCC ivdep
    for (int64_t c = c0; c < c1; ++c)
      finish_training_channel<decltype(sm)::value, decltype(si)::value, decltype(rs)::value, decltype(g)::value,
                              decltype(b)::value>(lf, c);
  });
}
void finish_backward(const BackwardFinish& f, int64_t c0, int64_t c1) {
  const BackwardFinish lf = f;
#pragma GCC ivdep
  for (int64_t c = c0; c < c1; ++c) finish_backward_channel(lf, c);
}

template <class T>
constexpr Kernels table_of() {
  return Kernels{&stats<T>,          &grad_sums<T>,          &affine<T>,         &dx_map<T>,
                 &lane_stats<T>,     &lane_grad_sums<T>,     &lane_affine<T>,    &lane_dx<T>,
                 &affine_per_value<T>, &weighted_grad_sums<T>, &dx_per_value<T>, &column_grads<T>,
                 &scale_run<T>,        &finish_training,        &finish_backward, &affine_flat<T>,
                 &dx_flat<T>,          &stats_across<T>,        &grad_sums_across<T>, &span_affine<T>,
                 &span_dx<T>};
}

}  // namespace

const Kernels* tables() {
  static const Kernels t[3] = {table_of<float>(), table_of<__half>(), table_of<__nv_bfloat16>()};
  return t;
}

}  // namespace bnorm::cpu::fast::BNORM_ISA_NS
