// The tuning cache: tuned (variant, policy) choices per GPU and problem, read from a
// JSON file (BNORM_TUNING_CACHE or bnorm_tuning_load) and consulted by dispatch after an
// override and before the heuristic. bnorm-tune writes the file with write_file().
//
// Lookup order (DESIGN.md, "Autotuning"): the entry for the exact key, its winner or
// else a runner-up whose variant supports the real call; then the entry of the nearest
// shape of the same GPU, op, dtype and layout (log distance on N*H*W and C, both within
// 4x); then nothing, and dispatch uses the heuristic.
//
// The process-wide cache is immutable once loaded and swapped whole under a lock, so
// lookups on other threads see the old cache or the new, never a torn one. Every
// failure to use a file (missing, corrupt, other format or library version, no entry
// for the GPU in use) prints exactly one warning on stderr and never throws.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dispatch.hpp"

namespace bnorm::tuning {

// Bumped when the file's layout changes; a file of another format version is rejected.
constexpr int kFormatVersion = 1;
constexpr const char* kFormatName = "bnorm-tuning-cache";

// What identifies a tuned problem. The GPU is named, not numbered: a cache moves with
// its file to any machine with the same GPU model and configuration.
struct Key {
  std::string gpu;  // cudaDeviceProp::name
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  bnorm_op_t op = BNORM_OP_FORWARD_TRAINING;
  bnorm_dtype_t dtype = BNORM_DTYPE_F32;
  bnorm_layout_t layout = BNORM_LAYOUT_NCHW;
  int64_t n = 0, c = 0, h = 0, w = 0;
  bool aligned16 = true;  // every tensor pointer 16-byte aligned
};

struct Timed {
  std::string spec;  // a full spec, "name:tT:vV:sS"
  double time_ms = 0.0;
};

struct Entry {
  Key key;
  Timed winner;
  std::vector<Timed> runners_up;  // at most two, fastest first
};

// For information only: where and with what the entries were measured.
struct DeviceInfo {
  std::string gpu;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int driver_version = 0, runtime_version = 0;  // cudaDriverGetVersion / cudaRuntimeGetVersion
  double copy_bandwidth_gb_per_s = 0.0;         // device-to-device, bytes read + written
  std::string tuned_at;                         // UTC, ISO 8601
  std::string commit;
};

struct CacheFile {
  int library_major = BNORM_VERSION_MAJOR;
  int library_minor = BNORM_VERSION_MINOR;
  std::vector<DeviceInfo> devices;
  std::vector<Entry> entries;
};

// Names used in the file and in the tools.
const char* op_name(bnorm_op_t op);
const char* dtype_name(bnorm_dtype_t t);
const char* layout_name(bnorm_layout_t l);
bool parse_op(const std::string& s, bnorm_op_t* op);

// Reads and validates a cache file without touching the process-wide cache: the format
// name and version, the library's major.minor, and every entry's fields.
Status read_file(const std::string& path, CacheFile* out);

// Writes the file atomically: a temporary file beside it, then a rename over it.
Status write_file(const std::string& path, const CacheFile& f);

// Replaces the process-wide cache with the file (bnorm_tuning_load). On failure the
// cache is left empty and one warning is printed.
Status load(const std::string& path);

// Empties the process-wide cache (bnorm_tuning_clear). Both load and clear stop
// BNORM_TUNING_CACHE from being read later.
void clear();

// The key of this handle's GPU and this problem.
Key key_of(const bnorm_handle& h, const Problem& pr);

// The cached choice for this handle's GPU and this problem, if any entry applies and
// its variant supports the call; fills out->why with CACHE or NEAREST. Loads
// BNORM_TUNING_CACHE on the first call unless load() or clear() came first.
bool lookup(const bnorm_handle& h, const Problem& pr, Choice* out);

// Tests only: forgets the cache, the warnings given and whether the environment was
// read, as in a fresh process.
void reset_for_testing();

}  // namespace bnorm::tuning
