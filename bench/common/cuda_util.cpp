// See cuda_util.hpp.
#include "cuda_util.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>

#ifndef BNORM_BENCH_COMMIT
#define BNORM_BENCH_COMMIT "unknown"
#endif

namespace bnorm_bench {

void check_cuda(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s failed: %s (%s) at %s:%d", what, cudaGetErrorName(e),
                cudaGetErrorString(e), file, line);
  throw Error(buf);
}

void check_bnorm(bnorm_status_t s, const char* what, const char* file, int line) {
  if (s == BNORM_STATUS_SUCCESS) return;
  char buf[768];
  std::snprintf(buf, sizeof buf, "%s failed: %s: %s at %s:%d", what, bnorm_status_string(s),
                bnorm_last_error(), file, line);
  throw Error(buf);
}

void exit_if_device_broken() {
  const cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess) {
    cudaGetLastError();  // a non-sticky error of the failed row must not leak into the next
    return;
  }
  std::fprintf(stderr, "fatal: the CUDA context is broken (%s: %s); later numbers would be wrong\n",
               cudaGetErrorName(e), cudaGetErrorString(e));
  std::fflush(stdout);
  std::exit(1);
}

void DeviceBuffer::reset(size_t bytes) {
  release();
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&p_, bytes);
  if (e != cudaSuccess) {
    p_ = nullptr;
    cudaGetLastError();
    char buf[256];
    std::snprintf(buf, sizeof buf, "cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    throw Error(buf);
  }
  bytes_ = bytes;
}

void DeviceBuffer::release() {
  if (p_) cudaFree(p_);
  p_ = nullptr;
  bytes_ = 0;
}

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device";
    return false;
  }
  return true;
}

DeviceFacts query_device(int device) {
  DeviceFacts f;
  f.device = device;
  cudaDeviceProp p{};
  BNB_CUDA(cudaGetDeviceProperties(&p, device));
  f.name = p.name;
  f.cc_major = p.major;
  f.cc_minor = p.minor;
  f.sm_count = p.multiProcessorCount;
  f.l2_bytes = static_cast<size_t>(p.l2CacheSize);
  f.global_bytes = p.totalGlobalMem;
  int khz = 0;
  BNB_CUDA(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device));
  f.sm_clock_mhz = khz / 1000;
  BNB_CUDA(cudaDriverGetVersion(&f.driver_version));
  BNB_CUDA(cudaRuntimeGetVersion(&f.runtime_version));
  return f;
}

std::string commit_hash() {
  const char* env = std::getenv("BNORM_COMMIT");
  return env && *env ? env : BNORM_BENCH_COMMIT;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace bnorm_bench
