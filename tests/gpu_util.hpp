// What the GPU tests share: device buffers, the configurations dispatch lists for a
// call, and a fixture that skips without a device. Tests compare the CUDA backend with
// the CPU backend (float64 accumulation), so the fixture holds one handle of each.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"

namespace bnorm_test {

#define BNORM_CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// count floats of device memory (plus offset_floats before them, to misalign on purpose).
class DeviceFloats {
 public:
  explicit DeviceFloats(size_t count, size_t offset_floats = 0) : count_(count), offset_(offset_floats) {
    if (cudaMalloc(&base_, (count + offset_floats) * sizeof(float) + 16) != cudaSuccess) {
      base_ = nullptr;
      cudaGetLastError();
    }
  }
  explicit DeviceFloats(const std::vector<float>& v) : DeviceFloats(v.size()) { upload(v); }
  ~DeviceFloats() { cudaFree(base_); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;

  bool ok() const { return base_ != nullptr; }
  float* get() const { return base_ ? static_cast<float*>(base_) + offset_ : nullptr; }
  size_t size() const { return count_; }
  void upload(const std::vector<float>& v) const {
    ASSERT_TRUE(ok());
    ASSERT_EQ(v.size(), count_);
    ASSERT_EQ(cudaMemcpy(get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> download() const {
    std::vector<float> v(count_);
    EXPECT_TRUE(ok());
    if (ok()) EXPECT_EQ(cudaMemcpy(v.data(), get(), v.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }

 private:
  void* base_ = nullptr;
  size_t count_, offset_;
};

// Every configuration dispatch lists for the call: the heuristic's first. groups counts
// for group norm only (the _grouped listing is the plain one for every other op).
inline std::vector<std::string> list_configs(bnorm_handle_t gpu, bnorm_op_t op, const bnorm_tensor_t& d,
                                             bool aligned16, int64_t groups = 1) {
  int count = 0;
  size_t needed = 0;
  EXPECT_EQ(bnorm_list_variants_grouped(gpu, op, &d, groups, aligned16, nullptr, 0, &count, &needed),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  std::string buf(needed, '\0');
  EXPECT_EQ(bnorm_list_variants_grouped(gpu, op, &d, groups, aligned16, buf.data(), buf.size(), &count, nullptr),
            BNORM_STATUS_SUCCESS);
  std::vector<std::string> out;
  std::istringstream in(buf.c_str());
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  EXPECT_EQ(static_cast<int>(out.size()), count);
  return out;
}

// The variant name of a spec ("two_pass_split:t256:v4:s8" -> "two_pass_split").
inline std::string variant_of(const std::string& spec) { return spec.substr(0, spec.find(':')); }

// One configuration per (variant, vector width): the first listed. Every variant meets
// the test, and each of its index paths, without the whole tuning space.
inline std::vector<std::string> one_config_per_variant(const std::vector<std::string>& specs) {
  std::vector<std::string> out, seen;
  for (const std::string& s : specs) {
    const std::string key = variant_of(s) + (s.find(":v4") != std::string::npos ? ":v4" : ":v1");
    bool dup = false;
    for (const std::string& k : seen) dup = dup || k == key;
    if (!dup) {
      seen.push_back(key);
      out.push_back(s);
    }
  }
  return out;
}

class GpuTest : public testing::Test {
 protected:
  void SetUp() override {
    const bnorm_status_t s = bnorm_create(&gpu_, BNORM_BACKEND_CUDA, 0);
    if (s == BNORM_STATUS_NO_DEVICE) GTEST_SKIP() << "no CUDA device: " << bnorm_last_error();
    ASSERT_EQ(s, BNORM_STATUS_SUCCESS) << bnorm_last_error();
    // The oracle: the CPU backend's float64 variant for every operation.
    ASSERT_EQ(bnorm_create(&cpu_, BNORM_BACKEND_CPU, 0), BNORM_STATUS_SUCCESS);
    for (int op = BNORM_OP_FORWARD_TRAINING; op <= BNORM_OP_SYNC_BACKWARD; ++op)
      ASSERT_EQ(bnorm_set_variant(cpu_, static_cast<bnorm_op_t>(op), "cpu_reference"), BNORM_STATUS_SUCCESS);
  }
  void TearDown() override {
    if (gpu_) {
      EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      for (int op = 0; op < 3; ++op) bnorm_set_variant(gpu_, static_cast<bnorm_op_t>(op), nullptr);
      bnorm_destroy(gpu_);
    }
    if (cpu_) bnorm_destroy(cpu_);
  }
  std::vector<std::string> configs(bnorm_op_t op, const bnorm_tensor_t& d, bool aligned16 = true) {
    return list_configs(gpu_, op, d, aligned16);
  }
  // Forces spec for op; the test fails if the library rejects a spec it listed.
  void force(bnorm_op_t op, const std::string& spec) {
    ASSERT_EQ(bnorm_set_variant(gpu_, op, spec.c_str()), BNORM_STATUS_SUCCESS) << spec << ": " << bnorm_last_error();
  }

  bnorm_handle_t gpu_ = nullptr;
  bnorm_handle_t cpu_ = nullptr;
};

}  // namespace bnorm_test
