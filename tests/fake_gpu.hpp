// A CUDA handle built by hand, with an H100's shape (compute capability 9.0, 132 SMs,
// 2048 threads per SM), for the tests of dispatch and the tuning cache without a GPU.
#pragma once

#include "host/handle.hpp"

namespace bnorm_test {

inline bnorm_handle fake_gpu(const char* name = "NVIDIA H100 80GB HBM3", int sm_count = 132) {
  bnorm_handle h;
  h.backend = BNORM_BACKEND_CUDA;
  h.gpu_name = name;
  h.cc_major = 9;
  h.cc_minor = 0;
  h.dev.sm_count = sm_count;
  h.dev.max_threads_per_sm = 2048;
  return h;
}

}  // namespace bnorm_test
