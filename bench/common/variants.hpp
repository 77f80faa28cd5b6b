// The configurations to benchmark and tune, read through the public API
// (bnorm_list_variants), so that a newly registered variant is measured by being
// registered; and a stand-in CUDA handle for listing them where no GPU exists.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"

namespace bnorm_bench {

// Every configuration (full spec) that supports op on desc with 16-byte aligned
// pointers, the heuristic's first. Throws Error on failure.
std::vector<std::string> list_specs(bnorm_handle_t h, bnorm_op_t op, const bnorm_tensor_t& desc);

const char* choice_name(bnorm_choice_t c);  // override, cache, nearest, heuristic, only

// A CUDA handle that describes an H100 (sm_90, 132 SMs) without touching a device:
// enough for bnorm_list_variants and bnorm_query_variant, which only read the GPU's
// description, so --benchmark_list_tests lists the whole suite on a machine without a
// GPU. Never pass it to a call that runs.
class ListingHandle {
 public:
  ListingHandle();
  ~ListingHandle();
  bnorm_handle_t get() const { return h_; }
  std::string description() const;

 private:
  bnorm_handle_t h_;
};

}  // namespace bnorm_bench
