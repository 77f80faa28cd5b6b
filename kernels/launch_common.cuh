// Launch helpers shared by the launchers: the compiled policy set, geometry set-up and
// grid sizing. Only .cu files include this.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "channel_map.cuh"
#include "channel_reduce.cuh"
#include "launch.hpp"

namespace bnorm::kern {

template <int V>
using Int = std::integral_constant<int, V>;

// Loads in flight per thread: 16 values per chunk either way.
template <int VEC>
constexpr int unroll_for() {
  return VEC == 4 ? 4 : 8;
}

// Calls f(T{}, Int<THREADS>, Int<VEC>) for the storage type of t, or fails. The compiled
// set is the whole tuning space for these knobs: small, so every variant stays testable.
template <class F>
cudaError_t with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F16: return f(__half{});
    case DType::BF16: return f(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

template <bool V>
using Bool = std::integral_constant<bool, V>;

// Calls f(Bool<RELU>, Bool<ADD>) for a fused epilogue.
template <class F>
cudaError_t with_fusion(bool relu, bool add, F&& f) {
  if (relu) return add ? f(Bool<true>{}, Bool<true>{}) : f(Bool<true>{}, Bool<false>{});
  return add ? f(Bool<false>{}, Bool<true>{}) : f(Bool<false>{}, Bool<false>{});
}

template <class F>
cudaError_t with_relu(bool relu, F&& f) {
  return relu ? f(Bool<true>{}) : f(Bool<false>{});
}

template <class F>
cudaError_t with_policy(const Policy& p, DType t, F&& f) {
  return with_dtype(t, [&](auto e) -> cudaError_t {
    using T = decltype(e);
    constexpr int W = kWide<T>;
    if (p.vec == W) {
      switch (p.threads) {
        case 128: return f(e, Int<128>{}, Int<W>{});
        case 256: return f(e, Int<256>{}, Int<W>{});
        case 512: return f(e, Int<512>{}, Int<W>{});
      }
    } else if (p.vec == 1) {
      switch (p.threads) {
        case 128: return f(e, Int<128>{}, Int<1>{});
        case 256: return f(e, Int<256>{}, Int<1>{});
        case 512: return f(e, Int<512>{}, Int<1>{});
      }
    }
    return cudaErrorInvalidConfiguration;
  });
}

inline ChannelGeometry channel_geometry(const Shape& s, int vec) {
  ChannelGeometry g;
  g.c_total = s.c;
  g.hw = s.hw;
  g.vec_count = s.m() / vec;
  g.hw_vec = FastDivmod(static_cast<uint32_t>(std::min<int64_t>(s.hw / vec, INT32_MAX)));
  return g;
}

inline MapGeometry map_geometry(const Shape& s, int vec) {
  MapGeometry g;
  g.c_total = s.c;
  g.hw_vec = s.hw / vec;
  g.vec_count = s.numel() / vec;
  g.hw_div = FastDivmod(static_cast<uint32_t>(std::min<int64_t>(g.hw_vec, INT32_MAX)));
  g.c_div = FastDivmod(static_cast<uint32_t>(std::min<int64_t>(s.c, INT32_MAX)));
  return g;
}

// One wave of resident CTAs, or fewer when the tensor is small.
inline unsigned map_grid(const MapGeometry& g, int threads, const Device& d) {
  const int64_t wanted = (g.vec_count + threads - 1) / threads;
  const int64_t wave = static_cast<int64_t>(d.sm_count) * (d.max_threads_per_sm / threads);
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(wanted, wave)));
}

template <int THREADS, int VEC, class Op>
cudaError_t launch_map(const Op& op, const Shape& s, const Device& d, cudaStream_t stream) {
  const MapGeometry g = map_geometry(s, VEC);
  const unsigned grid = map_grid(g, THREADS, d);
  constexpr int U = unroll_for<VEC>();
  if (fits_index32(g.vec_count))
    channel_map_kernel<THREADS, VEC, U, Op, MapIndex32><<<grid, THREADS, 0, stream>>>(op, g);
  else
    channel_map_kernel<THREADS, VEC, U, Op, MapIndex64><<<grid, THREADS, 0, stream>>>(op, g);
  return cudaGetLastError();
}

template <int THREADS, int VEC, class Reducer>
cudaError_t launch_reduce(const Reducer& red, const Shape& s, int splits,
                          const ReduceWorkspace& ws, cudaStream_t stream) {
  const ChannelGeometry g = channel_geometry(s, VEC);
  const dim3 grid(static_cast<unsigned>(s.c), static_cast<unsigned>(splits));
  constexpr int U = unroll_for<VEC>();
  if (fits_index32(g.vec_count))
    channel_reduce_kernel<THREADS, VEC, U, Reducer, Index32><<<grid, THREADS, 0, stream>>>(red, g, ws);
  else
    channel_reduce_kernel<THREADS, VEC, U, Reducer, Index64><<<grid, THREADS, 0, stream>>>(red, g, ws);
  return cudaGetLastError();
}

}  // namespace bnorm::kern
