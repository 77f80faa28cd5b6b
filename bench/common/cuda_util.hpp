// Error handling, device memory and device facts for the benchmark and the tuner.
// Every CUDA and bnorm call is checked: a failure throws bnorm_bench::Error, which a
// benchmark row turns into a skipped row with the message, and main into exit 1.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bnorm/bnorm.h"

namespace bnorm_bench {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check_cuda(cudaError_t e, const char* what, const char* file, int line);
void check_bnorm(bnorm_status_t s, const char* what, const char* file, int line);

#define BNB_CUDA(expr) ::bnorm_bench::check_cuda((expr), #expr, __FILE__, __LINE__)
#define BNB_BNORM(expr) ::bnorm_bench::check_bnorm((expr), #expr, __FILE__, __LINE__)

// After a failed row: a sticky error (a kernel fault) poisons the context, and every
// later number would be wrong; this checks and exits the process if so.
void exit_if_device_broken();

// Device memory, freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { reset(bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }

  void reset(size_t bytes);  // frees, then allocates bytes (contents undefined)
  void release();
  float* f() const { return static_cast<float*>(p_); }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Whether a usable CUDA device exists; without a driver the runtime reports an error
// rather than zero devices, and either means no.
bool device_available(std::string* why);

struct DeviceFacts {
  int device = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int sm_clock_mhz = 0;  // peak (boost) clock the device reports
  size_t l2_bytes = 0;
  size_t global_bytes = 0;
  int driver_version = 0, runtime_version = 0;
};
DeviceFacts query_device(int device);

// The commit the binary was built from (BNORM_COMMIT in the environment wins).
std::string commit_hash();

// Current UTC time, ISO 8601.
std::string utc_now();

}  // namespace bnorm_bench
