// See variants.hpp.
#include "variants.hpp"

#include <sstream>

#include "cuda_util.hpp"
#include "handle.hpp"  // the stand-in handle only: everything else goes through the C API

namespace bnorm_bench {

std::vector<std::string> list_specs(bnorm_handle_t h, bnorm_op_t op, const bnorm_tensor_t& desc) {
  int count = 0;
  size_t needed = 0;
  BNB_BNORM(bnorm_list_variants(h, op, &desc, 1, nullptr, 0, &count, &needed));
  std::string buf(needed, '\0');
  BNB_BNORM(bnorm_list_variants(h, op, &desc, 1, buf.data(), buf.size(), &count, &needed));
  std::vector<std::string> out;
  std::istringstream in(buf.c_str());
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  if (static_cast<int>(out.size()) != count)
    throw Error("bnorm_list_variants returned " + std::to_string(out.size()) + " lines for count " +
                std::to_string(count));
  return out;
}

const char* choice_name(bnorm_choice_t c) {
  switch (c) {
    case BNORM_CHOICE_OVERRIDE: return "override";
    case BNORM_CHOICE_CACHE: return "cache";
    case BNORM_CHOICE_NEAREST: return "nearest";
    case BNORM_CHOICE_HEURISTIC: return "heuristic";
    case BNORM_CHOICE_ONLY: return "only";
  }
  return "?";
}

ListingHandle::ListingHandle() : h_(new bnorm_handle()) {
  h_->backend = BNORM_BACKEND_CUDA;
  h_->gpu_name = "NVIDIA H100 80GB HBM3 (stand-in: no device)";
  h_->cc_major = 9;
  h_->cc_minor = 0;
  h_->dev.sm_count = 132;
  h_->dev.max_threads_per_sm = 2048;
}

ListingHandle::~ListingHandle() { delete h_; }

std::string ListingHandle::description() const {
  return "a stand-in sm_90 GPU with " + std::to_string(h_->dev.sm_count) + " SMs";
}

}  // namespace bnorm_bench
