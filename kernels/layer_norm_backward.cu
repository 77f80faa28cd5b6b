// Layer norm's backward (launch_per_sample.hpp): a row is one sample's K values, every
// value its own affine feature, so dgamma and dbeta are column sums of an (n, K) matrix
// while dx needs two sums along each row.
//
// Variants (dispatch names, registered in dispatch_toolbox.cpp):
//   ln_fused     one CTA per row at a time (a CTA strides over rows), the row of dy and
//                x in registers: the two row sums, dx from the registers, and the
//                CTA's running dgamma/dbeta partials in registers too (a thread owns the
//                same features in every row). Then one kernel adds the CTAs' partials
//                in CTA order. 3S bytes, two launches; rows up to
//                sample_fused_capacity(p, 2) (8K values at 512 threads).
//   ln_two_pass  any row length: the row sums with one CTA per row; then dx with the
//                columns owned by threads, as in rows.cuh (lanes across the row, the
//                CTA's other threads and S CTAs down the rows), accumulating the
//                partial column sums on the way; then their sum. 5S bytes, three
//                launches.
// Every sum runs in a fixed order, so results are bitwise repeatable.

#include <cub/block/block_reduce.cuh>

#include "launch_common.cuh"
#include "launch_per_sample.hpp"
#include "rows.cuh"

namespace bnorm::kern {
namespace {

template <class T>
struct LnBackward {
  const T* dy;
  const T* x;
  T* dx;
  const float* gamma;  // may be null: 1
  const float* save_mean;
  const float* save_invstd;
};

struct Sum2 {
  __device__ __forceinline__ float2 operator()(const float2& a, const float2& b) const {
    return make_float2(a.x + b.x, a.y + b.y);
  }
};

template <int VEC>
constexpr int fused_items() {
  return (VEC == 1 ? 16 : 32) / VEC / 2;  // sample_fused_capacity(p, 2)
}

template <int THREADS, int VEC, int ITEMS, class T>
__global__ void __launch_bounds__(THREADS)
    ln_backward_fused_kernel(LnBackward<T> a, int64_t rows, int64_t row_len, float* partial_dgamma,
                             float* partial_dbeta) {
  using BlockReduce = cub::BlockReduce<float2, THREADS>;
  __shared__ typename BlockReduce::TempStorage tmp;
  __shared__ float2 row_sums;
  const int64_t row_vecs = row_len / VEC;
  const float inv_len = 1.0f / static_cast<float>(row_len);
  float pg[ITEMS][VEC] = {}, pb[ITEMS][VEC] = {};  // this thread's dgamma, dbeta partials

  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float mean = a.save_mean[r], invstd = a.save_invstd[r];
    float g[ITEMS][VEC], xhat[ITEMS][VEC];  // gamma*dy and xhat of the thread's values
    float2 mine = make_float2(0.0f, 0.0f);  // sum(g), sum(g*xhat)
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int64_t v = threadIdx.x + static_cast<int64_t>(i) * THREADS;
      if (v < row_vecs) {
        float dy[VEC], x[VEC];
        load_stream<VEC>(a.dy + r * row_len + v * VEC, dy);  // read once
        load_stream<VEC>(a.x + r * row_len + v * VEC, x);
#pragma unroll
        for (int l = 0; l < VEC; ++l) {
          const float gm = a.gamma ? a.gamma[v * VEC + l] : 1.0f;
          xhat[i][l] = (x[l] - mean) * invstd;
          g[i][l] = gm * dy[l];
          mine.x += g[i][l];
          mine.y = fmaf(g[i][l], xhat[i][l], mine.y);
          pg[i][l] = fmaf(dy[l], xhat[i][l], pg[i][l]);
          pb[i][l] += dy[l];
        }
      }
    }
    const float2 total = BlockReduce(tmp).Reduce(mine, Sum2{});
    if (threadIdx.x == 0) row_sums = total;
    __syncthreads();
    const float mean_g = row_sums.x * inv_len, mean_gx = row_sums.y * inv_len;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      const int64_t v = threadIdx.x + static_cast<int64_t>(i) * THREADS;
      if (v < row_vecs) {
        float dx[VEC];
#pragma unroll
        for (int l = 0; l < VEC; ++l) dx[l] = invstd * (g[i][l] - mean_g - xhat[i][l] * mean_gx);
        store_stream<VEC>(a.dx + r * row_len + v * VEC, dx);
      }
    }
    __syncthreads();  // tmp and row_sums are the next row's
  }
  if (!partial_dgamma) return;
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int64_t v = threadIdx.x + static_cast<int64_t>(i) * THREADS;
    if (v < row_vecs)
#pragma unroll
      for (int l = 0; l < VEC; ++l) {
        partial_dgamma[blockIdx.x * row_len + v * VEC + l] = pg[i][l];
        partial_dbeta[blockIdx.x * row_len + v * VEC + l] = pb[i][l];
      }
  }
}

// Per row: {mean, invstd, sum(g)/K, invstd^2 * sum(g*(x - mean))/K}, g = gamma*dy (the
// coefficients of SampleDxOp's form).
template <int THREADS, int VEC, class T>
__global__ void __launch_bounds__(THREADS) ln_row_sums_kernel(LnBackward<T> a, int64_t row_len, float4* row_coefs) {
  using BlockReduce = cub::BlockReduce<float2, THREADS>;
  __shared__ typename BlockReduce::TempStorage tmp;
  const int64_t r = blockIdx.x;
  const float mean = a.save_mean[r];
  float2 mine = make_float2(0.0f, 0.0f);
  for (int64_t v = threadIdx.x; v < row_len / VEC; v += THREADS) {
    float dy[VEC], x[VEC];
    load_vec<VEC>(a.dy + r * row_len + v * VEC, dy);
    load_vec<VEC>(a.x + r * row_len + v * VEC, x);
#pragma unroll
    for (int l = 0; l < VEC; ++l) {
      const float g = (a.gamma ? a.gamma[v * VEC + l] : 1.0f) * dy[l];
      mine.x += g;
      mine.y = fmaf(g, x[l] - mean, mine.y);
    }
  }
  const float2 total = BlockReduce(tmp).Reduce(mine, Sum2{});
  if (threadIdx.x == 0) {
    const float invstd = a.save_invstd[r], inv_len = 1.0f / static_cast<float>(row_len);
    row_coefs[r] = make_float4(mean, invstd, total.x * inv_len, invstd * invstd * total.y * inv_len);
  }
}

// dx per value from its row's coefficients, and the partial column sums of dy*xhat and
// dy over this CTA's rows: column blocks across blockIdx.x, row slabs across blockIdx.y.
template <int THREADS, int VEC, class T>
__global__ void __launch_bounds__(THREADS)
    ln_columns_kernel(LnBackward<T> a, RowsGeometry g, const float4* row_coefs, float* partial_dgamma,
                      float* partial_dbeta) {
  __shared__ float2 partial[THREADS / 2][VEC];
  const int tx = threadIdx.x % g.lanes, ty = threadIdx.x / g.lanes, ty_count = THREADS / g.lanes;
  const int64_t k0 = (static_cast<int64_t>(blockIdx.x) * g.lanes + tx) * VEC;
  const bool owner = k0 < g.c;  // row_len % VEC == 0: all VEC features exist
  float pg[VEC] = {}, pb[VEC] = {};
  if (owner) {
    float gm[VEC];
#pragma unroll
    for (int l = 0; l < VEC; ++l) gm[l] = a.gamma ? a.gamma[k0 + l] : 1.0f;
    const int64_t stride = static_cast<int64_t>(gridDim.y) * ty_count;
    for (int64_t r = static_cast<int64_t>(blockIdx.y) * ty_count + ty; r < g.rows; r += stride) {
      float dy[VEC], x[VEC], dx[VEC];
      load_stream<VEC>(a.dy + r * g.c + k0, dy);
      load_stream<VEC>(a.x + r * g.c + k0, x);
      const float4 k = row_coefs[r];
#pragma unroll
      for (int l = 0; l < VEC; ++l) {
        const float xc = x[l] - k.x;
        dx[l] = k.y * (fmaf(gm[l], dy[l], -k.z) - xc * k.w);
        pg[l] = fmaf(dy[l], xc * k.y, pg[l]);
        pb[l] += dy[l];
      }
      store_stream<VEC>(a.dx + r * g.c + k0, dx);
    }
  }
  // A fixed tree over the CTA's rows, as in rows_reduce_kernel.
  for (int h = ty_count / 2; h >= 1; h /= 2) {
    if (ty >= h && ty < 2 * h)
#pragma unroll
      for (int l = 0; l < VEC; ++l) partial[(ty - h) * g.lanes + tx][l] = make_float2(pg[l], pb[l]);
    __syncthreads();
    if (ty < h)
#pragma unroll
      for (int l = 0; l < VEC; ++l) {
        pg[l] += partial[ty * g.lanes + tx][l].x;
        pb[l] += partial[ty * g.lanes + tx][l].y;
      }
    __syncthreads();
  }
  if (ty == 0 && owner && partial_dgamma)
#pragma unroll
    for (int l = 0; l < VEC; ++l) {
      partial_dgamma[blockIdx.y * g.c + k0 + l] = pg[l];
      partial_dbeta[blockIdx.y * g.c + k0 + l] = pb[l];
    }
}

constexpr int kColumnThreads = 256;

// dgamma[k], dbeta[k]: the parts' partial sums added in part order.
__global__ void __launch_bounds__(kColumnThreads)
    column_sums_kernel(const float* partial_dgamma, const float* partial_dbeta, int64_t parts, int64_t k_total,
                       float* dgamma, float* dbeta) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kColumnThreads + threadIdx.x;
  if (k >= k_total) return;
  float sg = 0.0f, sb = 0.0f;
  for (int64_t p = 0; p < parts; ++p) {
    sg += partial_dgamma[p * k_total + k];
    sb += partial_dbeta[p * k_total + k];
  }
  if (dgamma) dgamma[k] = sg;
  if (dbeta) dbeta[k] = sb;
}

int64_t fused_ctas(const SampleShape& s) { return std::min<int64_t>(s.rows(), kLayerNormFusedMaxCtas); }

// The workspace: row coefficients (two-pass), then the two partial matrices.
struct LnWorkspace {
  float4* row_coefs;
  float* partial_dgamma;
  float* partial_dbeta;
  static size_t bytes(const SampleShape& s, int64_t parts, bool fused) {
    const size_t coefs = fused ? 0 : ReduceWorkspace::align(sizeof(float4) * s.rows());
    return coefs + 2 * ReduceWorkspace::align(sizeof(float) * parts * s.row_len());
  }
  static LnWorkspace carve(const Workspace& w, const SampleShape& s, int64_t parts, bool fused) {
    char* p = static_cast<char*>(w.scratch);
    LnWorkspace r;
    r.row_coefs = reinterpret_cast<float4*>(p);
    p += fused ? 0 : ReduceWorkspace::align(sizeof(float4) * s.rows());
    r.partial_dgamma = reinterpret_cast<float*>(p);
    r.partial_dbeta = reinterpret_cast<float*>(p + ReduceWorkspace::align(sizeof(float) * parts * s.row_len()));
    return r;
  }
};

cudaError_t launch_column_sums(const LnWorkspace& ws, int64_t parts, const SampleShape& s,
                               const SampleBackwardArgs& a, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>((s.row_len() + kColumnThreads - 1) / kColumnThreads);
  column_sums_kernel<<<grid, kColumnThreads, 0, stream>>>(ws.partial_dgamma, ws.partial_dbeta, parts, s.row_len(),
                                                          a.dgamma, a.dbeta);
  return cudaGetLastError();
}

}  // namespace

size_t layer_norm_backward_workspace_bytes(const SampleShape& s, const Policy& p, bool fused) {
  return LnWorkspace::bytes(s, fused ? fused_ctas(s) : p.splits, fused);
}

cudaError_t layer_norm_backward_fused(const SampleShape& s, const Policy& p, const SampleBackwardArgs& a,
                                      const Workspace& w, cudaStream_t stream) {
  const int64_t ctas = fused_ctas(s);
  const LnWorkspace ws = LnWorkspace::carve(w, s, ctas, true);
  const bool sums = a.dgamma || a.dbeta;
  const cudaError_t err = with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const LnBackward<E> lb{static_cast<const E*>(a.dy), static_cast<const E*>(a.x), static_cast<E*>(a.dx),
                           a.gamma, a.save_mean, a.save_invstd};
    ln_backward_fused_kernel<kT, kV, fused_items<kV>(), E><<<static_cast<unsigned>(ctas), kT, 0, stream>>>(
        lb, s.rows(), s.row_len(), sums ? ws.partial_dgamma : nullptr, sums ? ws.partial_dbeta : nullptr);
    return cudaGetLastError();
  });
  if (err != cudaSuccess || !sums) return err;
  return launch_column_sums(ws, ctas, s, a, stream);
}

cudaError_t layer_norm_backward_two_pass(const SampleShape& s, const Policy& p, const SampleBackwardArgs& a,
                                         const Workspace& w, cudaStream_t stream) {
  const LnWorkspace ws = LnWorkspace::carve(w, s, p.splits, false);
  const bool sums = a.dgamma || a.dbeta;
  const cudaError_t err = with_policy(p, s.dtype, [&](auto e, auto T, auto V) {
    using E = decltype(e);
    constexpr int kT = decltype(T)::value, kV = decltype(V)::value;
    const LnBackward<E> lb{static_cast<const E*>(a.dy), static_cast<const E*>(a.x), static_cast<E*>(a.dx),
                           a.gamma, a.save_mean, a.save_invstd};
    ln_row_sums_kernel<kT, kV, E><<<static_cast<unsigned>(s.rows()), kT, 0, stream>>>(lb, s.row_len(), ws.row_coefs);
    cudaError_t e2 = cudaGetLastError();
    if (e2 != cudaSuccess) return e2;
    // Samples as rows of K features: the rows.cuh layout over an (n, K) matrix.
    const RowsGeometry g = rows_geometry(Shape{s.rows(), s.row_len(), 1, s.dtype}, p);
    const dim3 grid(static_cast<unsigned>(channel_blocks(g, kV)), static_cast<unsigned>(p.splits));
    ln_columns_kernel<kT, kV, E><<<grid, kT, 0, stream>>>(lb, g, ws.row_coefs, sums ? ws.partial_dgamma : nullptr,
                                                          sums ? ws.partial_dbeta : nullptr);
    return cudaGetLastError();
  });
  if (err != cudaSuccess || !sums) return err;
  return launch_column_sums(ws, p.splits, s, a, stream);
}

}  // namespace bnorm::kern
