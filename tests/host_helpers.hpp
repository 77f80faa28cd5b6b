// What the CPU-side tests share: a CPU handle that closes itself, and a host tensor
// stored in its dtype (values travel as floats, as in reference.hpp).
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "bnorm/bnorm.h"
#include "reference.hpp"

namespace bnorm_test {

// Forces a CPU variant ("cpu_fast" or "cpu_reference") for every operation of h.
inline void use_cpu_variant(bnorm_handle_t h, const char* variant) {
  for (int op = BNORM_OP_FORWARD_TRAINING; op <= BNORM_OP_SYNC_BACKWARD; ++op)
    EXPECT_EQ(bnorm_set_variant(h, static_cast<bnorm_op_t>(op), variant), BNORM_STATUS_SUCCESS) << variant;
}

struct Handle {
  bnorm_handle_t h = nullptr;
  explicit Handle(bnorm_backend_t b = BNORM_BACKEND_CPU) { EXPECT_EQ(bnorm_create(&h, b, 0), BNORM_STATUS_SUCCESS); }
  // A CPU handle running variant for every operation.
  explicit Handle(const char* cpu_variant) : Handle() { use_cpu_variant(h, cpu_variant); }
  ~Handle() { bnorm_destroy(h); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
};

struct HostTensor {
  bnorm_dtype_t dtype;
  std::vector<unsigned char> bytes;
  HostTensor(const std::vector<float>& v, bnorm_dtype_t t) : dtype(t), bytes(to_storage(v, t)) {}
  void* data() { return bytes.data(); }
  std::vector<float> values() const { return from_storage(bytes, dtype); }
};

}  // namespace bnorm_test
