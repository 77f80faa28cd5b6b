// The CPU backend: host memory, GEMMs through cpu_blas, everything else as plain loops.
// It is also the reference the GPU backend is tested against, so the loops favour
// being obviously right; GEMMs dominate the time anyway.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend.hpp"
#include "cpu_blas.hpp"

namespace lenet {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(bnorm_handle_t h) : Backend(h) {}

  Device device() const override { return Device::cpu; }
  std::string description() const override { return "cpu, " + cpu::blas_description(); }

  void* allocate(size_t bytes) override {
    // 64-byte alignment: whole cache lines, and what OpenBLAS's kernels like best.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void zero(void* p, size_t bytes) override { std::memset(p, 0, bytes); }

  void gemm(const Gemm& g) override { cpu::gemm(g); }
  void axpy(int64_t n, float alpha, const float* x, float* y) override {
    cpu::axpy(n, alpha, x, y);
  }

  void im2col(const ConvShape& s, const float* x, float* col) override {
    const int64_t oh = s.out_h(), ow = s.out_w();
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t ki = 0; ki < s.k; ++ki)
          for (int64_t kj = 0; kj < s.k; ++kj)
            for (int64_t i = 0; i < oh; ++i) {
              const float* src = x + ((n * s.c + c) * s.h + i + ki) * s.w + kj;
              std::copy(src, src + ow, col);
              col += ow;
            }
  }

  void col2im(const ConvShape& s, const float* col, float* dx) override {
    const int64_t oh = s.out_h(), ow = s.out_w();
    std::fill(dx, dx + s.n * s.c * s.h * s.w, 0.0f);
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t ki = 0; ki < s.k; ++ki)
          for (int64_t kj = 0; kj < s.k; ++kj)
            for (int64_t i = 0; i < oh; ++i) {
              float* dst = dx + ((n * s.c + c) * s.h + i + ki) * s.w + kj;
              for (int64_t j = 0; j < ow; ++j) dst[j] += col[j];
              col += ow;
            }
  }

  void avgpool2x2_forward(int64_t planes, int64_t h, int64_t w, const float* x, float* y) override {
    for (int64_t p = 0; p < planes; ++p, x += h * w)
      for (int64_t i = 0; i < h / 2; ++i)
        for (int64_t j = 0; j < w / 2; ++j) {
          const float* q = x + 2 * i * w + 2 * j;
          *y++ = 0.25f * (q[0] + q[1] + q[w] + q[w + 1]);
        }
  }

  void avgpool2x2_backward(int64_t planes, int64_t h, int64_t w, const float* dy,
                           float* dx) override {
    for (int64_t p = 0; p < planes; ++p, dx += h * w, dy += (h / 2) * (w / 2))
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) dx[i * w + j] = 0.25f * dy[(i / 2) * (w / 2) + j / 2];
  }

  void add_channel_bias(int64_t outer, int64_t channels, int64_t inner, const float* bias,
                        float* y) override {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < inner; ++i) *y++ += bias[c];
  }

  void channel_sum(int64_t outer, int64_t channels, int64_t inner, const float* x,
                   float* sums) override {
    // A double accumulator: the CPU side is the reference.
    for (int64_t c = 0; c < channels; ++c) {
      double acc = 0.0;
      for (int64_t o = 0; o < outer; ++o) {
        const float* row = x + (o * channels + c) * inner;
        for (int64_t i = 0; i < inner; ++i) acc += row[i];
      }
      sums[c] = static_cast<float>(acc);
    }
  }

  void sigmoid_forward(int64_t n, const float* x, float* y) override {
    for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
  }

  void sigmoid_backward(int64_t n, const float* y, const float* dy, float* dx) override {
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
  }

  void gather_rows(int64_t count, int64_t row_len, const int32_t* index, const float* src,
                   const int32_t* src_labels, float* dst, int32_t* dst_labels) override {
    for (int64_t i = 0; i < count; ++i) {
      std::memcpy(dst + i * row_len, src + index[i] * row_len, row_len * sizeof(float));
      dst_labels[i] = src_labels[index[i]];
    }
  }

  void softmax_cross_entropy(int64_t n, int64_t classes, const float* logits, const int32_t* labels,
                             float* dlogits, double* totals) override {
    double loss = 0.0;
    int64_t correct = 0;
    for (int64_t r = 0; r < n; ++r) {
      const float* z = logits + r * classes;
      const int64_t best = std::max_element(z, z + classes) - z;  // first of equal maxima
      // log-sum-exp shifted by the maximum: no overflow, and the largest term is exp(0).
      double sum = 0.0;
      for (int64_t j = 0; j < classes; ++j) sum += std::exp(static_cast<double>(z[j] - z[best]));
      loss += std::log(sum) - (z[labels[r]] - z[best]);
      correct += best == labels[r];
      if (dlogits)
        for (int64_t j = 0; j < classes; ++j) {
          const double p = std::exp(static_cast<double>(z[j] - z[best])) / sum;
          dlogits[r * classes + j] = static_cast<float>((p - (j == labels[r])) / n);
        }
    }
    totals[0] += loss;
    totals[1] += static_cast<double>(correct);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() {
  bnorm_handle_t h = nullptr;
  check_bnorm(bnorm_create(&h, BNORM_BACKEND_CPU, 0), "bnorm_create(CPU)");
  return std::make_unique<CpuBackend>(h);
}

}  // namespace lenet
