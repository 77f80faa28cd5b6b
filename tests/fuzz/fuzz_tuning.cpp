// libFuzzer target: the tuning-cache loader on arbitrary bytes, and dispatch through
// whatever it loaded.
//
// The input is the cache file. It is written to a scratch file and loaded twice: by
// bnorm_tuning_load (what users call) and by the internal read_file (to learn the
// entries). Then, for each of the first entries, a CUDA handle with that entry's GPU
// identity (dispatch needs no device) asks bnorm_query_variant for the entry's exact
// shape and for a shape 2x away in N (the nearest-shape rule), for each op.
//
// Properties, beyond ASan/UBSan finding nothing:
//   - a load succeeds, or fails with BNORM_STATUS_INVALID_VALUE and a message, and the
//     two readers agree on which;
//   - after a failed load dispatch uses the heuristic (never CACHE or NEAREST);
//   - every query succeeds or fails with a message; a spec that came from the cache is
//     a configuration the library accepts as an override and that supports the call
//     (forcing it gives the same spec back): a cache can never make dispatch run a
//     kernel on a call it does not support.
#include <cstdint>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "fuzz_common.hpp"
#include "handle.hpp"
#include "tuning_cache.hpp"

namespace {

bnorm_handle handle_for(const std::string& gpu, int cc_major, int cc_minor, int sm_count) {
  bnorm_handle h;
  h.backend = BNORM_BACKEND_CUDA;
  h.gpu_name = gpu;
  h.cc_major = cc_major;
  h.cc_minor = cc_minor;
  h.dev.sm_count = sm_count;
  h.dev.max_threads_per_sm = 2048;
  return h;
}

void query(bnorm_handle& h, bnorm_op_t op, const bnorm_tensor_t& d, bool aligned, bool loaded) {
  char spec[128];
  bnorm_choice_t why;
  const bnorm_status_t s = bnorm_query_variant(&h, op, &d, aligned, spec, sizeof spec, &why);
  if (s != BNORM_STATUS_SUCCESS) {
    FUZZ_CHECK(bnorm_last_error()[0] != '\0', "query_variant failed with no message");
    return;
  }
  if (why != BNORM_CHOICE_CACHE && why != BNORM_CHOICE_NEAREST) return;
  FUZZ_CHECK(loaded, "dispatch used a cache whose load failed");
  FUZZ_CHECK(bnorm_set_variant(&h, op, spec) == BNORM_STATUS_SUCCESS, "cached spec '%s' is not a valid override: %s",
             spec, bnorm_last_error());
  char forced[128];
  bnorm_choice_t why2;
  FUZZ_CHECK(bnorm_query_variant(&h, op, &d, aligned, forced, sizeof forced, &why2) == BNORM_STATUS_SUCCESS,
             "cached spec '%s' does not support the call: %s", spec, bnorm_last_error());
  FUZZ_CHECK(std::string(spec) == forced, "cached '%s', forced '%s'", spec, forced);
  bnorm_set_variant(&h, op, nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bnorm_fuzz::ScratchFile file;
  const std::string& path = file.write(data, size);

  const bnorm_status_t s = bnorm_tuning_load(path.c_str());
  FUZZ_CHECK(s == BNORM_STATUS_SUCCESS || s == BNORM_STATUS_INVALID_VALUE, "bnorm_tuning_load gave %s",
             bnorm_status_string(s));
  if (s != BNORM_STATUS_SUCCESS) FUZZ_CHECK(bnorm_last_error()[0] != '\0', "a failed load left no message");
  bnorm::tuning::CacheFile cache;
  const bool read_ok = bnorm::tuning::read_file(path, &cache).ok();
  FUZZ_CHECK(read_ok == (s == BNORM_STATUS_SUCCESS), "bnorm_tuning_load and read_file disagree");

  // The entries' GPUs and shapes, and a GPU no entry has.
  std::vector<bnorm::tuning::Key> keys;
  for (size_t i = 0; i < cache.entries.size() && i < 6; ++i) keys.push_back(cache.entries[i].key);
  bnorm::tuning::Key other;
  other.gpu = "NVIDIA H100 80GB HBM3";
  other.cc_major = 9;
  other.sm_count = 132;
  other.n = 128;
  other.c = 6;
  other.h = other.w = 24;
  keys.push_back(other);
  for (const bnorm::tuning::Key& k : keys) {
    bnorm_handle h = handle_for(k.gpu, k.cc_major, k.cc_minor, k.sm_count);
    const bnorm_tensor_t exact{k.n, k.c, k.h, k.w, k.layout, k.dtype};
    bnorm_tensor_t near = exact;
    near.n = k.n > 1 ? k.n / 2 : 2;
    for (int op = 0; op < 3; ++op) {
      query(h, static_cast<bnorm_op_t>(op), exact, k.aligned16, read_ok);
      query(h, static_cast<bnorm_op_t>(op), near, k.aligned16, read_ok);
    }
  }
  bnorm_tuning_clear();
  return 0;
}
