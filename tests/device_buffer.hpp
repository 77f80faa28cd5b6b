// Device memory for the GPU tests: count elements of a dtype, values travelling as
// floats (stored in the dtype, round to nearest even), optionally offset by some
// elements to misalign on purpose. Only tests that skip without a device use it.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <vector>

#include "host_helpers.hpp"
#include "reference.hpp"

namespace bnorm_test {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count, bnorm_dtype_t t = BNORM_DTYPE_F32, size_t offset_elems = 0)
      : count_(count), dtype_(t), offset_(offset_elems * elem_size(t)) {
    if (cudaMalloc(&base_, count * elem_size(t) + offset_ + 16) != cudaSuccess) base_ = nullptr;
  }
  ~DeviceBuffer() { cudaFree(base_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* raw() const { return base_ ? static_cast<char*>(base_) + offset_ : nullptr; }
  float* get() const { return static_cast<float*>(raw()); }
  size_t count() const { return count_; }
  void upload(const std::vector<float>& v) const {
    ASSERT_EQ(v.size(), count_);
    const auto bytes = to_storage(v, dtype_);
    ASSERT_EQ(cudaMemcpy(raw(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  void poison() const { upload(poisoned(static_cast<int64_t>(count_))); }
  std::vector<float> download() const {
    std::vector<unsigned char> bytes(count_ * elem_size(dtype_));
    EXPECT_EQ(cudaMemcpy(bytes.data(), raw(), bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return from_storage(bytes, dtype_);
  }

 private:
  void* base_ = nullptr;
  size_t count_;
  bnorm_dtype_t dtype_;
  size_t offset_;
};

}  // namespace bnorm_test
