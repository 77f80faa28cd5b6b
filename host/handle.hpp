// The handle behind bnorm_handle_t: backend, device, stream, workspace and the
// per-handle variant overrides. One thread uses a handle at a time (bnorm.h).
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <string>

#include "bnorm/bnorm.h"
#include "cpu/fast.hpp"
#include "kernels/launch.hpp"
#include "status.hpp"

namespace bnorm {
// Number of bnorm_op_t values.
constexpr int kOpCount = BNORM_OP_SYNC_BACKWARD + 1;
}  // namespace bnorm

struct bnorm_handle {
  bnorm_backend_t backend = BNORM_BACKEND_CPU;
  int device = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t stream_switch = nullptr;  // orders a new stream after the old one

  // CUDA only: what dispatch and the tuning-cache key need of the device.
  bnorm::kern::Device dev;
  std::string gpu_name;
  int cc_major = 0, cc_minor = 0;

  // CUDA only: scratch for the reductions; tickets inside it stay zero between calls.
  bnorm::kern::Workspace workspace;

  std::array<std::string, bnorm::kOpCount> forced;  // per bnorm_op_t, "" when not forced

  // CPU only: the fast path's threads (0: the default) and scratch.
  int cpu_threads = 0;
  bnorm::cpu::fast::Workspace cpu_workspace;
};

namespace bnorm {

// Makes the handle's device current for the scope of a call and restores the caller's
// device afterwards: a library must not move its caller between devices.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) {
      if (cudaSetDevice(device) == cudaSuccess) switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

Status cuda_create(bnorm_handle* h, int device);
void cuda_destroy(bnorm_handle* h);
Status cuda_set_stream(bnorm_handle* h, cudaStream_t stream);
// Grows the workspace to at least `tickets` counters and `scratch` bytes (a
// synchronising reallocation: rare, and only when a call needs more than any before).
Status cuda_reserve_workspace(bnorm_handle* h, int64_t tickets, size_t scratch);
Status cuda_status(cudaError_t e, const char* what);

}  // namespace bnorm
