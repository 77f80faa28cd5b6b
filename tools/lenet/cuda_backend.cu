// The CUDA backend: device memory, cuBLAS for the GEMMs and SGD, and one small kernel
// per remaining operation, all in order on one stream that the bnorm handle shares.
//
// LeNet's tensors are small (the largest activation is 128 x 6 x 24 x 24 = 442k floats),
// so every kernel here is launch-bound: they are simple one-thread-per-output kernels
// with grid-stride loops. None uses atomics: they add no run-to-run variation (cuBLAS
// on one stream adds none either). Every CUDA and cuBLAS status is checked; a launch is
// checked with cudaGetLastError (a fault in a kernel surfaces at the next synchronizing
// call, which is checked too).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cub/block/block_reduce.cuh>
#include <limits>
#include <stdexcept>
#include <string>

#include "backend.hpp"

namespace lenet {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + " failed: " + cublasGetStatusName(s) + ": " +
                             cublasGetStatusString(s));
}

int narrow(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throw std::runtime_error(std::string(what) + " = " + std::to_string(v) +
                             " does not fit cuBLAS's int");
  return static_cast<int>(v);
}

constexpr int kThreads = 256;

// Enough blocks to fill any current GPU several times over; grid-stride loops do the rest.
unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, 65536));
}

#define LENET_GRID_STRIDE(i, n)                                             \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{gridDim.x} * blockDim.x)

// ---- kernels ---------------------------------------------------------------------

// One thread per column element (n, row = (c, ki, kj), pixel = (i, j)).
__global__ void im2col_kernel(ConvShape s, const float* __restrict__ x, float* __restrict__ col) {
  const int64_t oh = s.out_h(), ow = s.out_w(), kk = s.k * s.k;
  const int64_t total = s.n * s.col_rows() * oh * ow;
  LENET_GRID_STRIDE(e, total) {
    const int64_t j = e % ow, i = (e / ow) % oh, row = (e / (ow * oh)) % s.col_rows();
    const int64_t n = e / (ow * oh * s.col_rows());
    const int64_t c = row / kk, ki = (row % kk) / s.k, kj = row % s.k;
    col[e] = x[((n * s.c + c) * s.h + i + ki) * s.w + j + kj];
  }
}

// One thread per input pixel, gathering every column entry that copied it: no atomics,
// a fixed summation order.
__global__ void col2im_kernel(ConvShape s, const float* __restrict__ col, float* __restrict__ dx) {
  const int64_t oh = s.out_h(), ow = s.out_w(), kk = s.k * s.k;
  const int64_t total = s.n * s.c * s.h * s.w;
  LENET_GRID_STRIDE(e, total) {
    const int64_t x = e % s.w, y = (e / s.w) % s.h, c = (e / (s.w * s.h)) % s.c;
    const int64_t n = e / (s.w * s.h * s.c);
    const float* base = col + (n * s.col_rows() + c * kk) * oh * ow;
    float sum = 0.0f;
    for (int64_t ki = 0; ki < s.k; ++ki) {
      const int64_t i = y - ki;
      if (i < 0 || i >= oh) continue;
      for (int64_t kj = 0; kj < s.k; ++kj) {
        const int64_t j = x - kj;
        if (j >= 0 && j < ow) sum += base[((ki * s.k + kj) * oh + i) * ow + j];
      }
    }
    dx[e] = sum;
  }
}

__global__ void avgpool2x2_forward_kernel(int64_t planes, int64_t h, int64_t w,
                                          const float* __restrict__ x, float* __restrict__ y) {
  const int64_t oh = h / 2, ow = w / 2;
  LENET_GRID_STRIDE(e, planes * oh * ow) {
    const int64_t j = e % ow, i = (e / ow) % oh, p = e / (ow * oh);
    const float* q = x + (p * h + 2 * i) * w + 2 * j;
    y[e] = 0.25f * (q[0] + q[1] + q[w] + q[w + 1]);
  }
}

__global__ void avgpool2x2_backward_kernel(int64_t planes, int64_t h, int64_t w,
                                           const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t oh = h / 2, ow = w / 2;
  LENET_GRID_STRIDE(e, planes * h * w) {
    const int64_t j = e % w, i = (e / w) % h, p = e / (w * h);
    dx[e] = 0.25f * dy[(p * oh + i / 2) * ow + j / 2];
  }
}

__global__ void add_channel_bias_kernel(int64_t outer, int64_t channels, int64_t inner,
                                        const float* __restrict__ bias, float* __restrict__ y) {
  LENET_GRID_STRIDE(e, outer * channels * inner) y[e] += bias[(e / inner) % channels];
}

// One block per channel: its threads stride over the channel's outer * inner values,
// then a block reduction. The block count is the channel count (6 to 2400 here).
__global__ void channel_sum_kernel(int64_t outer, int64_t channels, int64_t inner,
                                   const float* __restrict__ x, float* __restrict__ sums) {
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const int64_t c = blockIdx.x;
  float acc = 0.0f;
  for (int64_t e = threadIdx.x; e < outer * inner; e += kThreads)
    acc += x[((e / inner) * channels + c) * inner + e % inner];
  const float total = Reduce(temp).Sum(acc);
  if (threadIdx.x == 0) sums[c] = total;
}

__global__ void sigmoid_forward_kernel(int64_t n, const float* __restrict__ x,
                                       float* __restrict__ y) {
  // expf, not __expf: the CPU/GPU agreement test compares against std::exp.
  LENET_GRID_STRIDE(i, n) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

__global__ void sigmoid_backward_kernel(int64_t n, const float* __restrict__ y,
                                        const float* __restrict__ dy, float* __restrict__ dx) {
  LENET_GRID_STRIDE(i, n) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

__global__ void gather_rows_kernel(int64_t count, int64_t row_len,
                                   const int32_t* __restrict__ index, const float* __restrict__ src,
                                   const int32_t* __restrict__ src_labels, float* __restrict__ dst,
                                   int32_t* __restrict__ dst_labels) {
  LENET_GRID_STRIDE(e, count * row_len) {
    const int64_t r = e / row_len, j = e % row_len;
    const int64_t from = index[r];
    dst[e] = src[from * row_len + j];
    if (j == 0) dst_labels[r] = src_labels[from];
  }
}

// A single block: a batch has at most a few thousand rows of 10 logits, too little to
// spread, and one block reduces the totals in a fixed order without atomics.
__global__ void softmax_cross_entropy_kernel(int64_t n, int64_t classes,
                                             const float* __restrict__ logits,
                                             const int32_t* __restrict__ labels,
                                             float* __restrict__ dlogits, double* totals) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  double loss = 0.0, correct = 0.0;
  for (int64_t r = threadIdx.x; r < n; r += kThreads) {
    const float* z = logits + r * classes;
    int64_t best = 0;
    for (int64_t j = 1; j < classes; ++j)
      if (z[j] > z[best]) best = j;  // first of equal maxima, like std::max_element
    double sum = 0.0;
    for (int64_t j = 0; j < classes; ++j) sum += exp(static_cast<double>(z[j] - z[best]));
    const int64_t label = labels[r];
    loss += log(sum) - (z[label] - z[best]);
    correct += best == label ? 1.0 : 0.0;
    if (dlogits)
      for (int64_t j = 0; j < classes; ++j) {
        const double p = exp(static_cast<double>(z[j] - z[best])) / sum;
        dlogits[r * classes + j] = static_cast<float>((p - (j == label ? 1.0 : 0.0)) / n);
      }
  }
  const double loss_sum = Reduce(temp).Sum(loss);
  __syncthreads();  // temp is reused by the second reduction
  const double correct_sum = Reduce(temp).Sum(correct);
  if (threadIdx.x == 0) {
    totals[0] += loss_sum;
    totals[1] += correct_sum;
  }
}

// ---- the backend -------------------------------------------------------------------

class CudaBackend final : public Backend {
 public:
  // Takes the bnorm handle; creates the stream and the cuBLAS handle. A constructor
  // that throws runs no destructor of its own, hence the explicit clean-up.
  explicit CudaBackend(bnorm_handle_t h) : Backend(h) {
    try {
      set_up();
    } catch (...) {
      tear_down();
      throw;
    }
  }
  ~CudaBackend() override { tear_down(); }

  Device device() const override { return Device::cuda; }
  std::string description() const override {
    int version = 0;
    cublasGetVersion(cublas_, &version);
    return "cuda, " + name_ + ", cuBLAS " + std::to_string(version);
  }

  void* allocate(size_t bytes) override {
    void* p = nullptr;
    check_cuda(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
  }
  void release(void* p) noexcept override { cudaFree(p); }

  void upload(void* dst, const void* src, size_t bytes) override {
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync(H2D)");
    // The caller may free or reuse its host buffer as soon as we return.
    synchronize();
  }
  void download(void* dst, const void* src, size_t bytes) override {
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync(D2H)");
    synchronize();
  }
  void zero(void* p, size_t bytes) override {
    check_cuda(cudaMemsetAsync(p, 0, bytes, stream_), "cudaMemsetAsync");
  }
  void gemm(const Gemm& g) override {
    // cuBLAS is column-major: a row-major C = op(A) op(B) is the column-major
    // C^T = op(B)^T op(A)^T, so pass B first and swap m and n.
    check_cublas(
        cublasSgemmStridedBatched(
            cublas_, g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
            narrow(g.n, "gemm n"), narrow(g.m, "gemm m"), narrow(g.k, "gemm k"), &g.alpha, g.b,
            narrow(g.ldb, "gemm ldb"), g.stride_b, g.a, narrow(g.lda, "gemm lda"), g.stride_a,
            &g.beta, g.c, narrow(g.ldc, "gemm ldc"), g.stride_c, narrow(g.batch, "gemm batch")),
        "cublasSgemmStridedBatched");
  }

  void axpy(int64_t n, float alpha, const float* x, float* y) override {
    check_cublas(cublasSaxpy(cublas_, narrow(n, "axpy n"), &alpha, x, 1, y, 1), "cublasSaxpy");
  }

  void im2col(const ConvShape& s, const float* x, float* col) override {
    im2col_kernel<<<blocks_for(s.n * s.col_rows() * s.col_cols()), kThreads, 0, stream_>>>(s, x,
                                                                                           col);
    check_launch("im2col_kernel");
  }
  void col2im(const ConvShape& s, const float* col, float* dx) override {
    col2im_kernel<<<blocks_for(s.n * s.c * s.h * s.w), kThreads, 0, stream_>>>(s, col, dx);
    check_launch("col2im_kernel");
  }
  void avgpool2x2_forward(int64_t planes, int64_t h, int64_t w, const float* x, float* y) override {
    avgpool2x2_forward_kernel<<<blocks_for(planes * (h / 2) * (w / 2)), kThreads, 0, stream_>>>(
        planes, h, w, x, y);
    check_launch("avgpool2x2_forward_kernel");
  }
  void avgpool2x2_backward(int64_t planes, int64_t h, int64_t w, const float* dy,
                           float* dx) override {
    avgpool2x2_backward_kernel<<<blocks_for(planes * h * w), kThreads, 0, stream_>>>(planes, h, w,
                                                                                     dy, dx);
    check_launch("avgpool2x2_backward_kernel");
  }
  void add_channel_bias(int64_t outer, int64_t channels, int64_t inner, const float* bias,
                        float* y) override {
    add_channel_bias_kernel<<<blocks_for(outer * channels * inner), kThreads, 0, stream_>>>(
        outer, channels, inner, bias, y);
    check_launch("add_channel_bias_kernel");
  }
  void channel_sum(int64_t outer, int64_t channels, int64_t inner, const float* x,
                   float* sums) override {
    if (channels == 0) return;
    channel_sum_kernel<<<narrow(channels, "channel_sum channels"), kThreads, 0, stream_>>>(
        outer, channels, inner, x, sums);
    check_launch("channel_sum_kernel");
  }
  void sigmoid_forward(int64_t n, const float* x, float* y) override {
    sigmoid_forward_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(n, x, y);
    check_launch("sigmoid_forward_kernel");
  }
  void sigmoid_backward(int64_t n, const float* y, const float* dy, float* dx) override {
    sigmoid_backward_kernel<<<blocks_for(n), kThreads, 0, stream_>>>(n, y, dy, dx);
    check_launch("sigmoid_backward_kernel");
  }
  void gather_rows(int64_t count, int64_t row_len, const int32_t* index, const float* src,
                   const int32_t* src_labels, float* dst, int32_t* dst_labels) override {
    gather_rows_kernel<<<blocks_for(count * row_len), kThreads, 0, stream_>>>(
        count, row_len, index, src, src_labels, dst, dst_labels);
    check_launch("gather_rows_kernel");
  }
  void softmax_cross_entropy(int64_t n, int64_t classes, const float* logits, const int32_t* labels,
                             float* dlogits, double* totals) override {
    softmax_cross_entropy_kernel<<<1, kThreads, 0, stream_>>>(n, classes, logits, labels, dlogits,
                                                              totals);
    check_launch("softmax_cross_entropy_kernel");
  }

 private:
  void synchronize() { check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  void set_up() {
    check_cuda(cudaSetDevice(0), "cudaSetDevice");
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    name_ = prop.name;
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cublas(cublasCreate(&cublas_), "cublasCreate");
    check_cublas(cublasSetStream(cublas_, stream_), "cublasSetStream");
    // Plain FP32 (no TF32 tensor cores): the CPU backend is the reference, and the
    // PyTorch peer is run with TF32 off as well.
    check_cublas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    // The stream comes from this program's CUDA runtime and bnorm links its own; a
    // cudaStream_t is the driver's stream, valid for both in the same context.
    check_bnorm(bnorm_set_stream(bnorm(), stream_), "bnorm_set_stream");
  }

  // Best effort and noexcept: a failure while tearing down has nowhere to go.
  void tear_down() noexcept {
    if (stream_) cudaStreamSynchronize(stream_);
    destroy_bnorm();  // it works on stream_: gone before the stream is
    if (cublas_) cublasDestroy(cublas_);
    if (stream_) cudaStreamDestroy(stream_);
    cublas_ = nullptr;
    stream_ = nullptr;
  }

  static void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

  std::string name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(std::string* why_not) {
  // bnorm decides whether there is a usable GPU: without a driver the runtime reports
  // an error rather than zero devices, and bnorm maps both to BNORM_STATUS_NO_DEVICE.
  bnorm_handle_t h = nullptr;
  const bnorm_status_t s = bnorm_create(&h, BNORM_BACKEND_CUDA, 0);
  if (s != BNORM_STATUS_SUCCESS) {
    if (why_not) *why_not = std::string(bnorm_status_string(s)) + ": " + bnorm_last_error();
    return nullptr;
  }
  try {
    return std::make_unique<CudaBackend>(h);
  } catch (const std::exception& e) {
    // ~Backend has run for the half-built object and destroyed h.
    if (why_not) *why_not = e.what();
    return nullptr;
  }
}

}  // namespace lenet
