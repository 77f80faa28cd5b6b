// Backward, two passes over (x, dy): per-channel sums, then dx.
//
// Variants (dispatch names):
//   two_pass_block  sums with one CTA per channel, then dx.
//   two_pass_split  sums with S CTAs per channel merged by the last CTA, then dx.
// Two launches and 5S bytes moved (x and dy twice, dx once); the floor is 3S.
//
// With xc = x - mean and xhat = xc * invstd, per channel over M values:
//   dbeta = sum(dy), dgamma = invstd * sum(dy * xc)
//   dx = a*dy + b*xc + c0,  a = gamma*invstd, b = -a*invstd*dgamma/M, c0 = -a*dbeta/M
// which is DESIGN.md's dx = gamma*invstd/M * (M*dy - dbeta - xhat*dgamma), arranged so
// the elementwise pass is two FMAs and keeps x - mean explicit (no cancellation of
// large means).

#include "launch_common.cuh"

namespace bnorm::kern {
namespace {

struct GradSums {
  float dy;
  float dy_xc;
};

struct BackwardReducer {
  using State = GradSums;
  static constexpr int kInputs = 2;
  const float* in0;  // dy
  const float* in1;  // x
  int64_t m;
  BackwardArgs args;
  float mean;

  __device__ __forceinline__ void begin(int64_t c) { mean = args.save_mean[c]; }
  __device__ __forceinline__ State empty() const { return GradSums{0.0f, 0.0f}; }
  template <int K>
  __device__ __forceinline__ void add(State& s, const float (&dy)[K], const float (&x)[K]) const {
    // Summing the chunk first, then adding it, makes the per-thread sum pairwise-like.
    float a = 0.0f, b = 0.0f;
#pragma unroll
    for (int i = 0; i < K; ++i) {
      a += dy[i];
      b = fmaf(dy[i], x[i] - mean, b);
    }
    s.dy += a;
    s.dy_xc += b;
  }
  __device__ __forceinline__ State merge(const State& a, const State& b) const {
    return GradSums{a.dy + b.dy, a.dy_xc + b.dy_xc};
  }
  __device__ void finish(int64_t c, const State& s, float4* coef) const {
    const float invstd = args.save_invstd[c];
    const float dbeta = s.dy;
    const float dgamma = s.dy_xc * invstd;
    if (args.dbeta) args.dbeta[c] = dbeta;
    if (args.dgamma) args.dgamma[c] = dgamma;
    const float g = args.gamma ? args.gamma[c] : 1.0f;
    const float a = g * invstd;
    const float inv_m = 1.0f / static_cast<float>(m);
    coef[c] = make_float4(mean, a, -a * invstd * dgamma * inv_m, -a * dbeta * inv_m);
  }
};

// dx from {mean, a, b, c0}: in0 = dy, in1 = x.
struct DxOp {
  static constexpr int kInputs = 2;
  const float* in0;
  const float* in1;
  float* out;
  const float4* coefs;
  __device__ __forceinline__ float4 coef(int64_t c) const { return coefs[c]; }
  __device__ __forceinline__ float apply(float dy, float x, const float4& k) const {
    return fmaf(k.y, dy, fmaf(k.z, x - k.x, k.w));
  }
};

}  // namespace

cudaError_t backward_two_pass(const Shape& s, const Policy& p, const Device& d,
                              const BackwardArgs& a, const Workspace& w, cudaStream_t stream) {
  const ReduceWorkspace ws = ReduceWorkspace::carve(w.ptr, s.c, p.splits, sizeof(Welford<float>));
  return with_policy(p, [&](auto T, auto V) {
    constexpr int kThreads = decltype(T)::value;
    constexpr int kVec = decltype(V)::value;
    BackwardReducer red{a.dy, a.x, s.m(), a, 0.0f};
    cudaError_t e = launch_reduce<kThreads, kVec>(red, s, p.splits, ws, stream);
    if (e != cudaSuccess) return e;
    DxOp op{a.dy, a.x, a.dx, ws.coef};
    return launch_map<kThreads, kVec>(op, s, d, stream);
  });
}

}  // namespace bnorm::kern
