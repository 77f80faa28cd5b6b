// What the backends share: the bnorm handle's lifetime and error reporting.
#include "backend.hpp"

#include <stdexcept>

namespace lenet {

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

void check_bnorm(bnorm_status_t s, const char* what) {
  if (s == BNORM_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string(what) + " failed: " + bnorm_status_string(s) + ": " +
                           bnorm_last_error());
}

Backend::~Backend() { destroy_bnorm(); }

void Backend::destroy_bnorm() noexcept {
  if (bnorm_) bnorm_destroy(bnorm_);
  bnorm_ = nullptr;
}

void throw_size_mismatch(size_t got, int64_t want) {
  throw std::logic_error("array copy of " + std::to_string(got) + " elements into an array of " +
                         std::to_string(want));
}

}  // namespace lenet
