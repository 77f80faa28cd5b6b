// Loads and stores of VEC values of a storage type T (float, __half, __nv_bfloat16),
// converted to and from float: all arithmetic is fp32 whatever the tensor's dtype.
// VEC * sizeof(T) == 16 is one 16-byte access (4 floats or 8 halves); VEC == 1 is
// scalar. Only .cu files include this.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace bnorm::kern {

// Values per 16-byte access.
template <class T>
constexpr int kWide = 16 / static_cast<int>(sizeof(T));

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

namespace detail {

// 16 bytes as VEC floats.
template <class T, int VEC>
__device__ __forceinline__ void unpack(const uint4& raw, float (&v)[VEC]) {
  static_assert(VEC * sizeof(T) == 16, "one 16-byte access");
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < VEC; ++i) v[i] = to_float(e[i]);
}

template <class T, int VEC>
__device__ __forceinline__ uint4 pack(const float (&v)[VEC]) {
  static_assert(VEC * sizeof(T) == 16, "one 16-byte access");
  uint4 raw;
  T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int i = 0; i < VEC; ++i) e[i] = from_float<T>(v[i]);
  return raw;
}

}  // namespace detail

// Default caching: for data the same kernel or the next one reads again.
template <int VEC, class T>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    detail::unpack<T, VEC>(*reinterpret_cast<const uint4*>(p), v);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = to_float(p[i]);
  }
}

// Streaming (evict-first): data read for the last time, so L2 keeps what is reused.
template <int VEC, class T>
__device__ __forceinline__ void load_stream(const T* p, float (&v)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    detail::unpack<T, VEC>(__ldcs(reinterpret_cast<const uint4*>(p)), v);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = to_float(__ldcs(p + i));
  }
}

template <int VEC, class T>
__device__ __forceinline__ void store_stream(T* p, const float (&v)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    __stcs(reinterpret_cast<uint4*>(p), detail::pack<T, VEC>(v));
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) __stcs(p + i, from_float<T>(v[i]));
  }
}

}  // namespace bnorm::kern
