// See device_ops.hpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cuda_util.hpp"
#include "device_ops.hpp"

namespace bnorm_bench {
namespace {

constexpr int kThreads = 256;

__host__ __device__ inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// (0, 1]: never 0, so log() below is finite.
__device__ inline float unit(uint64_t bits) {
  return (static_cast<float>(bits >> 40) + 1.0f) * (1.0f / 16777216.0f);
}

__device__ inline float normal(uint64_t seed, uint64_t i) {
  const uint64_t r = splitmix64(seed ^ splitmix64(i));
  const float u1 = unit(r), u2 = unit(splitmix64(r));
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

// Stores and loads of the tensor dtypes, through float.
template <class T>
__device__ inline T from_float(float v);
template <>
__device__ inline float from_float<float>(float v) { return v; }
template <>
__device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
__device__ inline double to_double(float v) { return v; }
__device__ inline double to_double(__half v) { return __half2float(v); }
__device__ inline double to_double(__nv_bfloat16 v) { return __bfloat162float(v); }

// Slab of sets tensors, stride elements apart; a lone tensor is one set with stride numel.
template <class T>
__global__ void fill_channels_kernel(T* x, int64_t total, int64_t stride, int64_t numel, int64_t c,
                                     int64_t hw, bool nhwc, uint64_t seed) {
  for (int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; j < total;
       j += int64_t{gridDim.x} * blockDim.x) {
    const int64_t set = j / stride, i = j % stride;
    const uint64_t sd_seed = seed + static_cast<uint64_t>(set);
    const int64_t ch = i < numel ? (nhwc ? i % c : (i / hw) % c) : 0;
    const float mean = normal(sd_seed ^ 0xC0FFEEull, static_cast<uint64_t>(ch));
    const float sd = 0.5f + 1.5f * unit(splitmix64(sd_seed ^ 0xBEEFull ^ splitmix64(ch)));
    x[j] = from_float<T>(mean + sd * normal(sd_seed, static_cast<uint64_t>(i)));
  }
}

__global__ void fill_uniform_kernel(float* x, int64_t n, uint64_t seed, float lo, float hi) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    x[i] = lo + (hi - lo) * unit(splitmix64(seed ^ splitmix64(i)));
}

struct Scratch {
  double diff2, ref2;
  unsigned long long nonfinite, differences;
};

template <class T>
__global__ void compare_kernel(const T* a, const T* ref, int64_t n, Scratch* out) {
  double d2 = 0.0, r2 = 0.0;
  unsigned long long bad = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const double v = to_double(a[i]), r = to_double(ref[i]);
    if (!isfinite(v)) {
      ++bad;
      continue;
    }
    d2 += (v - r) * (v - r);
    r2 += r * r;
  }
  using Reduce = cub::BlockReduce<double, kThreads>;
  using ReduceU = cub::BlockReduce<unsigned long long, kThreads>;
  __shared__ union {
    typename Reduce::TempStorage d;
    typename ReduceU::TempStorage u;
  } tmp;
  const double bd2 = Reduce(tmp.d).Sum(d2);
  __syncthreads();
  const double br2 = Reduce(tmp.d).Sum(r2);
  __syncthreads();
  const unsigned long long bbad = ReduceU(tmp.u).Sum(bad);
  if (threadIdx.x == 0) {
    atomicAdd(&out->diff2, bd2);
    atomicAdd(&out->ref2, br2);
    atomicAdd(&out->nonfinite, bbad);
  }
}

template <class U>  // an unsigned integer as wide as the dtype
__global__ void bitwise_kernel(const U* a, const U* b, int64_t n, Scratch* out) {
  unsigned long long diff = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    diff += a[i] != b[i];
  using ReduceU = cub::BlockReduce<unsigned long long, kThreads>;
  __shared__ typename ReduceU::TempStorage tmp;
  const unsigned long long total = ReduceU(tmp).Sum(diff);
  if (threadIdx.x == 0) atomicAdd(&out->differences, total);
}

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 4096));
}

}  // namespace

void fill_channels(void* x, bnorm_dtype_t t, bnorm_layout_t l, int64_t numel, int64_t c, int64_t hw,
                   uint64_t seed, cudaStream_t s) {
  fill_channels_sets(x, t, l, 1, numel, numel, c, hw, seed, s);
}

void fill_channels_sets(void* x, bnorm_dtype_t t, bnorm_layout_t l, int64_t sets, int64_t stride,
                        int64_t numel, int64_t c, int64_t hw, uint64_t seed, cudaStream_t s) {
  const int64_t total = sets * stride;
  const bool nhwc = l == BNORM_LAYOUT_NHWC;
  switch (t) {
    case BNORM_DTYPE_F32:
      fill_channels_kernel<<<grid_for(total), kThreads, 0, s>>>(static_cast<float*>(x), total, stride, numel, c,
                                                                hw, nhwc, seed);
      break;
    case BNORM_DTYPE_F16:
      fill_channels_kernel<<<grid_for(total), kThreads, 0, s>>>(static_cast<__half*>(x), total, stride, numel, c,
                                                                hw, nhwc, seed);
      break;
    case BNORM_DTYPE_BF16:
      fill_channels_kernel<<<grid_for(total), kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(x), total, stride,
                                                                numel, c, hw, nhwc, seed);
      break;
  }
  BNB_CUDA(cudaGetLastError());
}

void fill_uniform(float* x, int64_t n, uint64_t seed, float lo, float hi, cudaStream_t s) {
  fill_uniform_kernel<<<grid_for(n), kThreads, 0, s>>>(x, n, seed, lo, hi);
  BNB_CUDA(cudaGetLastError());
}

double ErrorSums::rel() const {
  if (nonfinite) return std::numeric_limits<double>::infinity();
  return ref2 > 0.0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
}

Comparer::Comparer() { BNB_CUDA(cudaMalloc(&scratch_, sizeof(Scratch))); }
Comparer::~Comparer() { cudaFree(scratch_); }

ErrorSums Comparer::compare(const void* a, const void* ref, bnorm_dtype_t t, int64_t n, cudaStream_t s) {
  Scratch* sc = static_cast<Scratch*>(scratch_);
  BNB_CUDA(cudaMemsetAsync(sc, 0, sizeof(Scratch), s));
  switch (t) {
    case BNORM_DTYPE_F32:
      compare_kernel<<<grid_for(n), kThreads, 0, s>>>(static_cast<const float*>(a), static_cast<const float*>(ref),
                                                      n, sc);
      break;
    case BNORM_DTYPE_F16:
      compare_kernel<<<grid_for(n), kThreads, 0, s>>>(static_cast<const __half*>(a),
                                                      static_cast<const __half*>(ref), n, sc);
      break;
    case BNORM_DTYPE_BF16:
      compare_kernel<<<grid_for(n), kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(a),
                                                      static_cast<const __nv_bfloat16*>(ref), n, sc);
      break;
  }
  BNB_CUDA(cudaGetLastError());
  Scratch h{};
  BNB_CUDA(cudaMemcpyAsync(&h, sc, sizeof h, cudaMemcpyDeviceToHost, s));
  BNB_CUDA(cudaStreamSynchronize(s));
  return ErrorSums{h.diff2, h.ref2, h.nonfinite};
}

unsigned long long Comparer::bitwise_differences(const void* a, const void* b, bnorm_dtype_t t, int64_t n,
                                                 cudaStream_t s) {
  Scratch* sc = static_cast<Scratch*>(scratch_);
  BNB_CUDA(cudaMemsetAsync(sc, 0, sizeof(Scratch), s));
  if (t == BNORM_DTYPE_F32)
    bitwise_kernel<<<grid_for(n), kThreads, 0, s>>>(static_cast<const uint32_t*>(a),
                                                    static_cast<const uint32_t*>(b), n, sc);
  else
    bitwise_kernel<<<grid_for(n), kThreads, 0, s>>>(static_cast<const uint16_t*>(a),
                                                    static_cast<const uint16_t*>(b), n, sc);
  BNB_CUDA(cudaGetLastError());
  Scratch h{};
  BNB_CUDA(cudaMemcpyAsync(&h, sc, sizeof h, cudaMemcpyDeviceToHost, s));
  BNB_CUDA(cudaStreamSynchronize(s));
  return h.differences;
}

}  // namespace bnorm_bench
