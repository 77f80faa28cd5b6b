// The compute backend of the harness: memory, GEMM, and the few non-GEMM operations
// LeNet needs. The layers (layers.cpp) are written once against this interface; the
// CPU (cpu_backend.cpp: OpenBLAS and loops) and CUDA (cuda_backend.cu: cuBLAS and small
// kernels) backends differ only in how they carry out each call. Batch norm is not
// here: the layers call bnorm's C API with the handle a backend owns.
//
// Conventions: every pointer is in the backend's memory (device memory for CUDA);
// tensors are dense, row-major, NCHW; sizes are int64_t (the largest product here is
// the 60000 x 784 training set, and sizes should never be the thing that overflows).
// Calls are asynchronous on the CUDA backend (one stream, in order); upload() and
// download() wait. Errors throw std::runtime_error with the failing call named.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnorm/bnorm.h"

// ConvShape's helpers run in the CUDA kernels too.
#ifdef __CUDACC__
#define LENET_HOST_DEVICE __host__ __device__
#else
#define LENET_HOST_DEVICE
#endif

namespace lenet {

enum class Device { cpu, cuda };

const char* device_name(Device d);

// Throws std::runtime_error naming `what` and bnorm's last-error message unless s is
// BNORM_STATUS_SUCCESS.
void check_bnorm(bnorm_status_t s, const char* what);

// Row-major C_i = alpha * op(A_i) * op(B_i) + beta * C_i for i in [0, batch), where
// X_i = X + i * stride_x; a stride of 0 uses the same matrix for every i. op(A) is
// m x k, op(B) is k x n, C is m x n; lda, ldb, ldc are row pitches in elements.
struct Gemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const float* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const float* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  float* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  int64_t batch = 1;
};

// Shapes of a valid (unpadded), stride-1 convolution's im2col: per image, the column
// matrix has rows (channel, kernel row, kernel col), the weight layout of (K, C, k, k),
// and one column per output pixel. Its transpose col2im sums the columns back.
struct ConvShape {
  int64_t n, c, h, w, k;
  LENET_HOST_DEVICE int64_t out_h() const { return h - k + 1; }
  LENET_HOST_DEVICE int64_t out_w() const { return w - k + 1; }
  LENET_HOST_DEVICE int64_t col_rows() const { return c * k * k; }
  LENET_HOST_DEVICE int64_t col_cols() const { return out_h() * out_w(); }
};

class Backend {
 public:
  virtual ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual Device device() const = 0;
  // One line for the log: the device and its math library.
  virtual std::string description() const = 0;
  // The bnorm handle of this backend, on the same stream as everything else.
  bnorm_handle_t bnorm() const { return bnorm_; }

  // ---- memory --------------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  // Both wait for the copy: the host buffer is free (upload) or filled (download).
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* p, size_t bytes) = 0;

  // ---- BLAS ----------------------------------------------------------------------
  virtual void gemm(const Gemm& g) = 0;
  // y += alpha * x (SGD: the whole parameter arena in one call).
  virtual void axpy(int64_t n, float alpha, const float* x, float* y) = 0;

  // ---- convolution and pooling -----------------------------------------------------
  // x: (n, c, h, w) -> col: (n, col_rows, col_cols).
  virtual void im2col(const ConvShape& s, const float* x, float* col) = 0;
  // col: (n, col_rows, col_cols) -> dx: (n, c, h, w), overwritten with the sums.
  virtual void col2im(const ConvShape& s, const float* col, float* dx) = 0;
  // 2x2 average pooling, stride 2, over `planes` = n*c planes of h x w (h, w even).
  virtual void avgpool2x2_forward(int64_t planes, int64_t h, int64_t w, const float* x,
                                  float* y) = 0;
  virtual void avgpool2x2_backward(int64_t planes, int64_t h, int64_t w, const float* dy,
                                   float* dx) = 0;

  // ---- per-channel and elementwise -------------------------------------------------
  // y viewed as (outer, channels, inner): y[o][c][i] += bias[c].
  virtual void add_channel_bias(int64_t outer, int64_t channels, int64_t inner, const float* bias,
                                float* y) = 0;
  // sums[c] = sum over o, i of x[o][c][i] (bias gradients; reducing per-image partials).
  virtual void channel_sum(int64_t outer, int64_t channels, int64_t inner, const float* x,
                           float* sums) = 0;
  virtual void sigmoid_forward(int64_t n, const float* x, float* y) = 0;
  // dx = dy * y * (1 - y), from the forward's output y.
  virtual void sigmoid_backward(int64_t n, const float* y, const float* dy, float* dx) = 0;

  // ---- data and loss ---------------------------------------------------------------
  // dst[i] = src[index[i]] for rows of row_len floats, and the same for the labels.
  virtual void gather_rows(int64_t count, int64_t row_len, const int32_t* index, const float* src,
                           const int32_t* src_labels, float* dst, int32_t* dst_labels) = 0;
  // Softmax cross-entropy of n rows of `classes` logits, mean over the rows.
  // dlogits (may be null: evaluation) = (softmax - onehot) / n.
  // totals[0] += sum of the per-row losses, totals[1] += rows whose argmax is the label.
  // totals are double: a 60000-image epoch sum must not lose the last rows' digits.
  virtual void softmax_cross_entropy(int64_t n, int64_t classes, const float* logits,
                                     const int32_t* labels, float* dlogits, double* totals) = 0;

 protected:
  // Takes ownership of the handle.
  explicit Backend(bnorm_handle_t handle) : bnorm_(handle) {}
  // Destroys the handle (idempotent). A derived backend calls it before destroying the
  // stream the handle works on; ~Backend calls it for the rest.
  void destroy_bnorm() noexcept;

 private:
  bnorm_handle_t bnorm_ = nullptr;
};

std::unique_ptr<Backend> make_cpu_backend();

// The CUDA backend on device 0, or nullptr with *why_not set when no usable GPU exists
// (no driver, no device: what bnorm_create reports as BNORM_STATUS_NO_DEVICE, or any
// other failure to set the device up). Built in every configuration: CI compiles it.
std::unique_ptr<Backend> make_cuda_backend(std::string* why_not);

// A typed, owning array in a backend's memory. Move-only.
template <class T>
class Array {
 public:
  Array() = default;
  Array(Backend& be, int64_t count) : be_(&be), size_(count) {
    if (count > 0) ptr_ = static_cast<T*>(be.allocate(bytes()));
  }
  Array(Array&& o) noexcept { swap(o); }
  Array& operator=(Array&& o) noexcept {
    Array(std::move(o)).swap(*this);
    return *this;
  }
  ~Array() {
    if (ptr_) be_->release(ptr_);
  }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  int64_t size() const { return size_; }
  size_t bytes() const { return static_cast<size_t>(size_) * sizeof(T); }

  void upload(const std::vector<T>& host) {
    check_size(host.size());
    if (size_) be_->upload(ptr_, host.data(), bytes());
  }
  std::vector<T> download() const {
    std::vector<T> host(static_cast<size_t>(size_));
    if (size_) be_->download(host.data(), ptr_, bytes());
    return host;
  }
  void zero() {
    if (size_) be_->zero(ptr_, bytes());
  }

 private:
  void swap(Array& o) noexcept {
    std::swap(be_, o.be_);
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
  }
  void check_size(size_t n) const;

  Backend* be_ = nullptr;
  T* ptr_ = nullptr;
  int64_t size_ = 0;
};

void throw_size_mismatch(size_t got, int64_t want);

template <class T>
void Array<T>::check_size(size_t n) const {
  if (n != static_cast<size_t>(size_)) throw_size_mismatch(n, size_);
}

}  // namespace lenet
