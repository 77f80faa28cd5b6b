// The tuning cache (see tuning_cache.hpp): the JSON file format, the process-wide
// cache, and the lookup dispatch calls. JSON exceptions never leave this file.
#include "tuning_cache.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "nvtx.hpp"

namespace bnorm::tuning {
namespace {

using json = nlohmann::ordered_json;

// ---- names --------------------------------------------------------------------------

template <class E>
struct NameOf {
  E value;
  const char* name;
};
// The ops the file has entries for (named as dispatch names them): group norm has none,
// its key would need the group count (bnorm.h).
constexpr bnorm_op_t kCachedOps[] = {BNORM_OP_FORWARD_TRAINING,  BNORM_OP_FORWARD_INFERENCE,
                                     BNORM_OP_BACKWARD,          BNORM_OP_BACKWARD_FROZEN,
                                     BNORM_OP_LAYER_NORM_FORWARD, BNORM_OP_LAYER_NORM_BACKWARD,
                                     BNORM_OP_FOLD,              BNORM_OP_SYNC_LOCAL_STATS,
                                     BNORM_OP_SYNC_FORWARD,      BNORM_OP_SYNC_BACKWARD_SUMS,
                                     BNORM_OP_SYNC_BACKWARD};
constexpr NameOf<bnorm_dtype_t> kDtypes[] = {
    {BNORM_DTYPE_F32, "f32"}, {BNORM_DTYPE_F16, "f16"}, {BNORM_DTYPE_BF16, "bf16"}};
constexpr NameOf<bnorm_layout_t> kLayouts[] = {{BNORM_LAYOUT_NCHW, "nchw"},
                                               {BNORM_LAYOUT_NHWC, "nhwc"}};

template <class E, size_t K>
const char* name_in(const NameOf<E> (&table)[K], E v) {
  for (const auto& t : table)
    if (t.value == v) return t.name;
  return "?";
}
template <class E, size_t K>
bool parse_in(const NameOf<E> (&table)[K], const std::string& s, E* out) {
  for (const auto& t : table)
    if (s == t.name) {
      *out = t.value;
      return true;
    }
  return false;
}

// ---- reading ------------------------------------------------------------------------

// A malformed file: the message names the first field at fault.
struct FormatError {
  std::string what;
};

const json& field(const json& j, const char* name) {
  if (!j.is_object()) throw FormatError{std::string("expected an object holding '") + name + "'"};
  const auto it = j.find(name);
  if (it == j.end()) throw FormatError{std::string("missing field '") + name + "'"};
  return *it;
}
std::string get_string(const json& j, const char* name) {
  const json& v = field(j, name);
  if (!v.is_string()) throw FormatError{std::string("field '") + name + "' is not a string"};
  return v.get<std::string>();
}
int64_t get_int(const json& j, const char* name, int64_t lo, int64_t hi) {
  const json& v = field(j, name);
  if (!v.is_number_integer()) throw FormatError{std::string("field '") + name + "' is not an integer"};
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    throw FormatError{std::string("field '") + name + "' = " + std::to_string(x) + " is out of range"};
  return x;
}
double get_number(const json& j, const char* name) {
  const json& v = field(j, name);
  if (!v.is_number()) throw FormatError{std::string("field '") + name + "' is not a number"};
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < 0.0)
    throw FormatError{std::string("field '") + name + "' is not a finite number >= 0"};
  return x;
}
bool get_bool(const json& j, const char* name) {
  const json& v = field(j, name);
  if (!v.is_boolean()) throw FormatError{std::string("field '") + name + "' is not a boolean"};
  return v.get<bool>();
}
// "9.0" -> 9, 0
void get_version_pair(const json& j, const char* name, int* major, int* minor) {
  const std::string s = get_string(j, name);
  char tail = 0;
  if (std::sscanf(s.c_str(), "%d.%d%c", major, minor, &tail) != 2 || *major < 0 || *minor < 0)
    throw FormatError{std::string("field '") + name + "' = '" + s + "' is not 'major.minor'"};
}

Timed read_timed(const json& j) {
  Timed t;
  t.spec = get_string(j, "spec");
  if (t.spec.empty()) throw FormatError{"an empty spec"};
  t.time_ms = get_number(j, "time_ms");
  return t;
}

void read_gpu(const json& j, std::string* gpu, int* cc_major, int* cc_minor, int* sm_count) {
  *gpu = get_string(j, "gpu");
  get_version_pair(j, "cc", cc_major, cc_minor);
  *sm_count = static_cast<int>(get_int(j, "sm_count", 1, 1 << 20));
}

Entry read_entry(const json& j) {
  Entry e;
  Key& k = e.key;
  read_gpu(j, &k.gpu, &k.cc_major, &k.cc_minor, &k.sm_count);
  const std::string op = get_string(j, "op"), dtype = get_string(j, "dtype"),
                    layout = get_string(j, "layout");
  if (!parse_op(op, &k.op)) throw FormatError{"unknown op '" + op + "'"};
  if (!parse_in(kDtypes, dtype, &k.dtype)) throw FormatError{"unknown dtype '" + dtype + "'"};
  if (!parse_in(kLayouts, layout, &k.layout)) throw FormatError{"unknown layout '" + layout + "'"};
  constexpr int64_t kMaxDim = int64_t{1} << 40;
  k.n = get_int(j, "n", 1, kMaxDim);
  k.c = get_int(j, "c", 1, kMaxDim);
  k.h = get_int(j, "h", 1, kMaxDim);
  k.w = get_int(j, "w", 1, kMaxDim);
  // As the API rejects such a descriptor, so the cache: no call could ever match, and the
  // nearest-shape search would multiply the sizes past int64 (2^40 each).
  const long double numel = static_cast<long double>(k.n) * k.c * k.h * k.w;
  if (numel > static_cast<long double>(int64_t{1} << 62))
    throw FormatError{"n*c*h*w passes 2^62 elements"};
  k.aligned16 = get_bool(j, "aligned16");
  e.winner = read_timed(field(j, "winner"));
  const json& ru = field(j, "runners_up");
  if (!ru.is_array()) throw FormatError{"field 'runners_up' is not an array"};
  for (const json& r : ru) e.runners_up.push_back(read_timed(r));
  return e;
}

void parse_cache(const json& j, CacheFile* out) {
  const std::string format = get_string(j, "format");
  if (format != kFormatName) throw FormatError{"format is '" + format + "', not '" + kFormatName + "'"};
  const int64_t version = get_int(j, "format_version", 0, INT32_MAX);
  if (version != kFormatVersion)
    throw FormatError{"format version " + std::to_string(version) + "; this bnorm reads version " +
                      std::to_string(kFormatVersion)};
  get_version_pair(j, "library_version", &out->library_major, &out->library_minor);
  if (out->library_major != BNORM_VERSION_MAJOR || out->library_minor != BNORM_VERSION_MINOR)
    throw FormatError{"written for bnorm " + std::to_string(out->library_major) + "." +
                      std::to_string(out->library_minor) + ", this is bnorm " +
                      std::to_string(BNORM_VERSION_MAJOR) + "." + std::to_string(BNORM_VERSION_MINOR) +
                      " (a stale cache: re-run bnorm-tune)"};
  const auto dev = j.find("devices");  // informational, optional
  if (dev != j.end() && dev->is_array()) {
    for (const json& d : *dev) {
      DeviceInfo info;
      read_gpu(d, &info.gpu, &info.cc_major, &info.cc_minor, &info.sm_count);
      if (d.contains("driver_version")) info.driver_version = static_cast<int>(get_int(d, "driver_version", 0, INT32_MAX));
      if (d.contains("runtime_version")) info.runtime_version = static_cast<int>(get_int(d, "runtime_version", 0, INT32_MAX));
      if (d.contains("copy_bandwidth_gb_per_s")) info.copy_bandwidth_gb_per_s = get_number(d, "copy_bandwidth_gb_per_s");
      if (d.contains("tuned_at")) info.tuned_at = get_string(d, "tuned_at");
      if (d.contains("commit")) info.commit = get_string(d, "commit");
      out->devices.push_back(std::move(info));
    }
  }
  const json& entries = field(j, "entries");
  if (!entries.is_array()) throw FormatError{"field 'entries' is not an array"};
  for (size_t i = 0; i < entries.size(); ++i) {
    try {
      out->entries.push_back(read_entry(entries[i]));
    } catch (const FormatError& e) {
      throw FormatError{"entry " + std::to_string(i) + ": " + e.what};
    }
  }
}

json timed_json(const Timed& t) { return json{{"spec", t.spec}, {"time_ms", t.time_ms}}; }

std::string cc_string(int major, int minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

// ---- the process-wide cache ---------------------------------------------------------

void warn(const std::string& msg) { std::fprintf(stderr, "bnorm: warning: %s\n", msg.c_str()); }

// The shape part of a key, hashed for the exact lookup.
struct ShapeKey {
  int op, dtype, layout;
  int64_t n, c, h, w;
  bool aligned16;
  bool operator==(const ShapeKey& o) const {
    return op == o.op && dtype == o.dtype && layout == o.layout && n == o.n && c == o.c &&
           h == o.h && w == o.w && aligned16 == o.aligned16;
  }
};
struct ShapeKeyHash {
  size_t operator()(const ShapeKey& k) const {
    uint64_t hsh = 1469598103934665603ull;
    const int64_t parts[8] = {k.op, k.dtype, k.layout, k.n, k.c, k.h, k.w, k.aligned16};
    for (int64_t p : parts) hsh = (hsh ^ static_cast<uint64_t>(p)) * 1099511628211ull;
    return static_cast<size_t>(hsh);
  }
};
ShapeKey shape_key(const Key& k) {
  return ShapeKey{k.op, k.dtype, k.layout, k.n, k.c, k.h, k.w, k.aligned16};
}

// The entries of one GPU (name, compute capability, SM count).
struct GpuGroup {
  std::string gpu;
  int cc_major, cc_minor, sm_count;
  std::unordered_map<ShapeKey, const Entry*, ShapeKeyHash> exact;
  std::vector<const Entry*> all;
};

// A loaded file, immutable once built except for the set of GPUs already warned about.
struct Index {
  std::string path;
  CacheFile file;
  std::vector<GpuGroup> groups;
  mutable std::mutex warn_mu;
  mutable std::vector<std::string> warned;  // GPUs told that the file has nothing for them

  const GpuGroup* group_of(const bnorm_handle& h) const {
    for (const GpuGroup& g : groups)
      if (g.gpu == h.gpu_name && g.cc_major == h.cc_major && g.cc_minor == h.cc_minor &&
          g.sm_count == h.dev.sm_count)
        return &g;
    return nullptr;
  }
};

std::shared_ptr<const Index> build_index(const std::string& path, Status* st) {
  auto idx = std::make_shared<Index>();
  idx->path = path;
  *st = read_file(path, &idx->file);
  if (!st->ok()) return nullptr;
  for (const Entry& e : idx->file.entries) {
    const Key& k = e.key;
    GpuGroup* g = nullptr;
    for (GpuGroup& cand : idx->groups)
      if (cand.gpu == k.gpu && cand.cc_major == k.cc_major && cand.cc_minor == k.cc_minor &&
          cand.sm_count == k.sm_count)
        g = &cand;
    if (!g) {
      idx->groups.push_back(GpuGroup{k.gpu, k.cc_major, k.cc_minor, k.sm_count, {}, {}});
      g = &idx->groups.back();
    }
    g->exact.emplace(shape_key(k), &e);  // a duplicate key keeps its first entry
    g->all.push_back(&e);
  }
  return idx;
}

struct State {
  std::shared_mutex mu;
  std::shared_ptr<const Index> index;  // null: no cache, the heuristic
  bool env_resolved = false;           // BNORM_TUNING_CACHE read, or load/clear called
};

State& state() {
  static State* s = new State();  // never destroyed: calls may come during static teardown
  return *s;
}

// Builds the index of path; on failure warns once and returns null.
std::shared_ptr<const Index> load_or_warn(const std::string& path, Status* st) {
  std::shared_ptr<const Index> idx = build_index(path, st);
  if (!idx) warn(st->message + "; using the heuristic");
  return idx;
}

std::shared_ptr<const Index> current() {
  State& s = state();
  {
    std::shared_lock<std::shared_mutex> lk(s.mu);
    if (s.env_resolved) return s.index;
  }
  std::unique_lock<std::shared_mutex> lk(s.mu);
  if (!s.env_resolved) {
    s.env_resolved = true;
    const char* env = std::getenv("BNORM_TUNING_CACHE");
    if (env && *env) {
      Status st;
      s.index = load_or_warn(env, &st);
    }
  }
  return s.index;
}

void warn_foreign_once(const Index& idx, const bnorm_handle& h) {
  const std::string id = h.gpu_name + " (cc " + cc_string(h.cc_major, h.cc_minor) + ", " +
                         std::to_string(h.dev.sm_count) + " SMs)";
  {
    std::lock_guard<std::mutex> lk(idx.warn_mu);
    for (const std::string& w : idx.warned)
      if (w == id) return;
    idx.warned.push_back(id);
  }
  warn("tuning cache '" + idx.path + "' has no entry for GPU " + id + "; using the heuristic");
}

// The first of the entry's choices (winner, then runners-up) that supports the call.
bool pick(const Entry& e, const bnorm_handle& h, const Problem& pr, Choice* out) {
  const Timed* order[3] = {&e.winner, nullptr, nullptr};
  for (size_t i = 0; i < e.runners_up.size() && i < 2; ++i) order[i + 1] = &e.runners_up[i];
  for (const Timed* t : order) {
    if (!t) continue;
    Choice c;
    // A spec naming a variant this build no longer has is skipped, not an error.
    if (!parse_spec(t->spec, pr.op, &pr, h.dev, &c.variant, &c.policy).ok()) continue;
    if (!c.variant->why_not(pr, c.policy, h.dev).empty()) continue;
    *out = c;
    return true;
  }
  return false;
}

// Log distance between shapes, or a negative value when N*H*W or C differ by more than 4x.
double shape_distance(const Key& a, const Problem& pr) {
  // In double: the sizes' products stay below 2^62 (read_entry, check_desc), but a
  // distance must not be the place where that is relied on.
  const double dm = std::log(static_cast<double>(a.n) * static_cast<double>(a.h) * static_cast<double>(a.w) /
                             (static_cast<double>(pr.desc.n) * static_cast<double>(pr.desc.h) *
                              static_cast<double>(pr.desc.w)));
  const double dc = std::log(static_cast<double>(a.c) / static_cast<double>(pr.desc.c));
  const double lim = std::log(4.0) + 1e-9;
  if (std::fabs(dm) > lim || std::fabs(dc) > lim) return -1.0;
  return std::sqrt(dm * dm + dc * dc);
}

}  // namespace

const char* op_name(bnorm_op_t op) {
  for (bnorm_op_t o : kCachedOps)
    if (o == op) return bnorm::op_name(op);
  return "?";
}
const char* dtype_name(bnorm_dtype_t t) { return name_in(kDtypes, t); }
const char* layout_name(bnorm_layout_t l) { return name_in(kLayouts, l); }
bool parse_op(const std::string& s, bnorm_op_t* op) {
  for (bnorm_op_t o : kCachedOps)
    if (s == bnorm::op_name(o)) {
      *op = o;
      return true;
    }
  return false;
}

Status read_file(const std::string& path, CacheFile* out) {
  *out = CacheFile{};
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_status(BNORM_STATUS_INVALID_VALUE, "tuning cache '%s' cannot be read: %s",
                       path.c_str(), std::strerror(errno));
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    return make_status(BNORM_STATUS_INVALID_VALUE, "tuning cache '%s' is not valid JSON: %s",
                       path.c_str(), e.what());
  }
  try {
    parse_cache(j, out);
  } catch (const FormatError& e) {
    *out = CacheFile{};
    return make_status(BNORM_STATUS_INVALID_VALUE, "tuning cache '%s' is rejected: %s", path.c_str(),
                       e.what.c_str());
  } catch (const json::exception& e) {
    *out = CacheFile{};
    return make_status(BNORM_STATUS_INVALID_VALUE, "tuning cache '%s' is malformed: %s",
                       path.c_str(), e.what());
  }
  return ok_status();
}

Status write_file(const std::string& path, const CacheFile& f) {
  json j;
  j["format"] = kFormatName;
  j["format_version"] = kFormatVersion;
  j["library_version"] = cc_string(f.library_major, f.library_minor);
  json devices = json::array();
  for (const DeviceInfo& d : f.devices)
    devices.push_back(json{{"gpu", d.gpu},
                           {"cc", cc_string(d.cc_major, d.cc_minor)},
                           {"sm_count", d.sm_count},
                           {"driver_version", d.driver_version},
                           {"runtime_version", d.runtime_version},
                           {"copy_bandwidth_gb_per_s", d.copy_bandwidth_gb_per_s},
                           {"tuned_at", d.tuned_at},
                           {"commit", d.commit}});
  j["devices"] = devices;
  json entries = json::array();
  for (const Entry& e : f.entries) {
    const Key& k = e.key;
    json ru = json::array();
    for (const Timed& t : e.runners_up) ru.push_back(timed_json(t));
    entries.push_back(json{{"gpu", k.gpu},
                           {"cc", cc_string(k.cc_major, k.cc_minor)},
                           {"sm_count", k.sm_count},
                           {"op", op_name(k.op)},
                           {"dtype", dtype_name(k.dtype)},
                           {"layout", layout_name(k.layout)},
                           {"n", k.n},
                           {"c", k.c},
                           {"h", k.h},
                           {"w", k.w},
                           {"aligned16", k.aligned16},
                           {"winner", timed_json(e.winner)},
                           {"runners_up", ru}});
  }
  j["entries"] = entries;
  std::string text;
  try {
    text = j.dump(2) + "\n";
  } catch (const json::exception& e) {  // invalid UTF-8 in a GPU name or spec
    return make_status(BNORM_STATUS_INVALID_VALUE, "cannot encode the tuning cache: %s", e.what());
  }

  // Same directory, so the rename stays on one file system and is atomic.
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(getpid()));
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (!out)
    return make_status(BNORM_STATUS_INVALID_VALUE, "cannot write '%s': %s", tmp.c_str(),
                       std::strerror(errno));
  const bool written = std::fwrite(text.data(), 1, text.size(), out) == text.size() &&
                       std::fflush(out) == 0 && fsync(fileno(out)) == 0;
  const int saved_errno = errno;
  if (std::fclose(out) != 0 || !written) {
    std::remove(tmp.c_str());
    return make_status(BNORM_STATUS_INVALID_VALUE, "cannot write '%s': %s", tmp.c_str(),
                       std::strerror(written ? errno : saved_errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    return make_status(BNORM_STATUS_INVALID_VALUE, "cannot rename '%s' to '%s': %s", tmp.c_str(),
                       path.c_str(), std::strerror(e));
  }
  return ok_status();
}

Status load(const std::string& path) {
  Status st;
  std::shared_ptr<const Index> idx = load_or_warn(path, &st);  // file I/O outside the lock
  State& s = state();
  std::unique_lock<std::shared_mutex> lk(s.mu);
  s.index = std::move(idx);
  s.env_resolved = true;
  return st;
}

void clear() {
  State& s = state();
  std::unique_lock<std::shared_mutex> lk(s.mu);
  s.index.reset();
  s.env_resolved = true;
}

void reset_for_testing() {
  State& s = state();
  std::unique_lock<std::shared_mutex> lk(s.mu);
  s.index.reset();
  s.env_resolved = false;
}

Key key_of(const bnorm_handle& h, const Problem& pr) {
  Key k;
  k.gpu = h.gpu_name;
  k.cc_major = h.cc_major;
  k.cc_minor = h.cc_minor;
  k.sm_count = h.dev.sm_count;
  k.op = pr.op;
  k.dtype = pr.desc.dtype;
  k.layout = pr.desc.layout;
  k.n = pr.desc.n;
  k.c = pr.desc.c;
  k.h = pr.desc.h;
  k.w = pr.desc.w;
  k.aligned16 = pr.aligned16;
  return k;
}

bool lookup(const bnorm_handle& h, const Problem& pr, Choice* out) {
  const std::shared_ptr<const Index> idx = current();
  if (!idx) return false;
  const GpuGroup* g = idx->group_of(h);
  if (!g) {
    warn_foreign_once(*idx, h);
    return false;
  }
  const ShapeKey want{pr.op, pr.desc.dtype, pr.desc.layout, pr.desc.n, pr.desc.c,
                      pr.desc.h, pr.desc.w, pr.aligned16};
  const auto it = g->exact.find(want);
  if (it != g->exact.end() && pick(*it->second, h, pr, out)) {
    out->why = BNORM_CHOICE_CACHE;
    return true;
  }
  // Nearest shape first; among equals, the same alignment, then the file's order.
  struct Cand {
    double dist;
    bool other_alignment;
    const Entry* e;
  };
  std::vector<Cand> cands;
  for (const Entry* e : g->all) {
    const Key& k = e->key;
    if (k.op != pr.op || k.dtype != pr.desc.dtype || k.layout != pr.desc.layout) continue;
    if (it != g->exact.end() && e == it->second) continue;  // tried above
    const double d = shape_distance(k, pr);
    if (d >= 0.0) cands.push_back(Cand{d, k.aligned16 != pr.aligned16, e});
  }
  std::stable_sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
    if (a.dist != b.dist) return a.dist < b.dist;
    return a.other_alignment < b.other_alignment;
  });
  for (const Cand& c : cands)
    if (pick(*c.e, h, pr, out)) {
      out->why = BNORM_CHOICE_NEAREST;
      return true;
    }
  return false;
}

}  // namespace bnorm::tuning

// ---- the C API ------------------------------------------------------------------------

namespace {

template <class F>
bnorm_status_t guarded_tuning(const char* fn, F&& body) {
  using bnorm::make_status;
  try {
    return bnorm::report_status(body());
  } catch (const std::bad_alloc&) {
    return bnorm::report_status(make_status(BNORM_STATUS_ALLOC_FAILED, "%s: out of host memory", fn));
  } catch (const std::exception& e) {
    return bnorm::report_status(make_status(BNORM_STATUS_INTERNAL_ERROR, "%s: %s", fn, e.what()));
  } catch (...) {
    return bnorm::report_status(make_status(BNORM_STATUS_INTERNAL_ERROR, "%s: unknown exception", fn));
  }
}

}  // namespace

extern "C" {

bnorm_status_t bnorm_tuning_load(const char* path) {
  BNORM_FUNC_RANGE();
  return guarded_tuning(__func__, [&]() -> bnorm::Status {
    if (!path || !*path)  // an argument error: the cache stays as it is
      return bnorm::make_status(BNORM_STATUS_INVALID_VALUE, "path is NULL or empty");
    return bnorm::tuning::load(path);
  });
}

bnorm_status_t bnorm_tuning_clear(void) {
  BNORM_FUNC_RANGE();
  return guarded_tuning(__func__, []() -> bnorm::Status {
    bnorm::tuning::clear();
    return bnorm::ok_status();
  });
}

}  // extern "C"
