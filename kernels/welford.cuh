// Welford running statistics and Chan's merge: one piece of code for the GPU kernels
// (fp32 state, merged across threads, warps, blocks and CTAs) and the CPU backend
// (fp64 state). Plain C++ when not compiled by nvcc.
//
// Why not E[x^2] - E[x]^2: at |mean|/std = 1e4 the two terms agree in all 24 bits of
// an fp32 mantissa and their difference is noise. Welford keeps the centred second
// moment M2 = sum((x - mean)^2) directly, so its error stays relative to var itself.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define BNORM_HD __host__ __device__ __forceinline__
#else
#define BNORM_HD inline
#endif
#if defined(__CUDA_ARCH__)
#define BNORM_UNROLL _Pragma("unroll")
#else
#define BNORM_UNROLL
#endif

namespace bnorm {

// count is kept in T: it only enters as the ratios nb/n of Chan's merge, where a
// relative rounding of 2^-24 is harmless, and it keeps the state three registers.
template <class T>
struct Welford {
  T count;
  T mean;
  T m2;  // sum of squared deviations from mean
};

template <class T>
BNORM_HD Welford<T> welford_empty() {
  return Welford<T>{T(0), T(0), T(0)};
}

// Adds one value (Welford 1962).
template <class T>
BNORM_HD void welford_push(Welford<T>& s, T x) {
  s.count += T(1);
  const T d = x - s.mean;
  s.mean += d / s.count;
  s.m2 += d * (x - s.mean);
}

// Chan, Golub, LeVeque (1979): combines two disjoint partial states. Exact in real
// arithmetic for any split, so the result does not depend on how work was divided
// (only on the fixed order of merges, which keeps results bitwise repeatable).
template <class T>
BNORM_HD Welford<T> welford_merge(const Welford<T>& a, const Welford<T>& b) {
  const T n = a.count + b.count;
  if (b.count == T(0)) return a;
  if (a.count == T(0)) return b;
  const T delta = b.mean - a.mean;
  const T wb = b.count / n;
  Welford<T> r;
  r.count = n;
  r.mean = a.mean + delta * wb;
  r.m2 = a.m2 + b.m2 + delta * delta * a.count * wb;
  return r;
}

// Statistics of K values held in registers: a two-pass mean and M2 over the chunk,
// then one merge. One division per chunk instead of one per value (Welford's push
// divides every time), with the same stability: the chunk's M2 is centred on its own
// mean.
template <class T, int K>
BNORM_HD Welford<T> welford_of_chunk(const T (&v)[K]) {
  T sum = T(0);
BNORM_UNROLL
  for (int i = 0; i < K; ++i) sum += v[i];
  const T mean = sum * (T(1) / T(K));
  T m2 = T(0);
BNORM_UNROLL
  for (int i = 0; i < K; ++i) {
    const T d = v[i] - mean;
    m2 += d * d;
  }
  return Welford<T>{T(K), mean, m2};
}

// Functor form for cub::BlockReduce and friends.
struct WelfordMergeOp {
  template <class T>
  BNORM_HD Welford<T> operator()(const Welford<T>& a, const Welford<T>& b) const {
    return welford_merge(a, b);
  }
};

// The per-channel results of a finished reduction over M values: what forward
// training saves, and the running-statistics blend (PyTorch's momentum convention,
// unbiased variance).
struct ChannelStats {
  float mean;
  float invstd;
  float var_biased;
  float var_unbiased;
};

template <class T>
BNORM_HD ChannelStats finalize_stats(const Welford<T>& s, T eps) {
  ChannelStats r;
  const T var = s.count > T(0) ? s.m2 / s.count : T(0);
  const T var_u = s.count > T(1) ? s.m2 / (s.count - T(1)) : T(0);
  // m2 is a sum of squares and cannot be negative in exact arithmetic; a merge can
  // leave -0 or a tiny negative from rounding, which must not reach sqrt. Only negatives
  // are clamped: a NaN (a NaN or Inf among the values) must reach invstd and the
  // running variance, as it does on the CPU backend, not turn into a variance of 0.
  const T var_c = var < T(0) ? T(0) : var;
  r.mean = static_cast<float>(s.mean);
  r.var_biased = static_cast<float>(var_c);
  r.var_unbiased = static_cast<float>(var_u < T(0) ? T(0) : var_u);
  r.invstd = static_cast<float>(T(1) / std::sqrt(var_c + eps));
  return r;
}

BNORM_HD float blend_running(float running, float batch, float momentum) {
  return (1.0f - momentum) * running + momentum * batch;
}

}  // namespace bnorm
