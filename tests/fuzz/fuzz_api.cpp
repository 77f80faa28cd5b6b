// libFuzzer target: the C API's argument validation on the CPU backend, and the
// dispatch queries.
//
// Each input becomes one call of bnorm_forward_training, bnorm_forward_inference or
// bnorm_backward on a CPU handle, or a round of bnorm_set_variant / query_variant /
// list_variants on a CPU handle or on a CUDA handle built in memory (dispatch needs only
// the GPU's identity, so its heuristics run here without a GPU). Fuzzed: the descriptor
// (sizes from negative through 2^62 and past, layouts and dtypes outside their enums),
// eps and momentum (NaN, Inf, denormal, negative, raw bits), every pointer (NULL, a
// valid buffer, misaligned by 1 or 2 bytes, the allowed aliases, partial overlaps) and
// the data (any scale from denormal to 1e4, constants, zeros, NaN and Inf injected).
//
// The header's rules are modelled below independently of host/api.cpp, and the target
// aborts (a crash libFuzzer keeps) when
//   - a call the model accepts fails, or a call it rejects succeeds;
//   - a failed call leaves no message, or changed any byte of any buffer;
//   - a successful call left an output element unwritten (its sentinel survived),
//     wrote past an output's end (a guard element after each buffer), changed an input,
//     or gave a non-finite output in a channel whose inputs are all finite and
//     moderate (|v| <= 1e3, running_var >= 0; under that bound every output of the
//     three formulas fits float32 whatever eps is: |xhat| <= sqrt(M) <= 64 in training,
//     1/sqrt(running_var + eps) <= 2.7e22 in inference, |dx| < 1e26 in backward);
// and ASan/UBSan abort on any memory error or undefined behaviour on the way.
// Buffers are sized from the descriptor only when it has at most kMaxElems elements; a
// larger descriptor gets small buffers, so a call the model accepts with it is not made
// (the library cannot know how large a buffer is), while every call it rejects is.
#include <fuzzer/FuzzedDataProvider.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "c_caller.h"
#include "fuzz_common.hpp"
#include "host/handle.hpp"

namespace {

using bnorm_fuzz::fail;

constexpr int64_t kMaxElems = 4096;  // descriptors up to this size get real buffers
constexpr int64_t kSmallBuffer = 16;
constexpr uint32_t kSentinelBits = 0x7fc0beefu;  // a quiet NaN whose payload no input has
constexpr double kModerate = 1e3;

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}
float float_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
bool is_sentinel(float f) { return bits_of(f) == kSentinelBits; }

// ---- decoding ---------------------------------------------------------------------

int64_t fuzz_dim(FuzzedDataProvider& f) {
  static const int64_t kEdges[] = {INT64_MIN,
                                   -(int64_t{1} << 62),
                                   -1,
                                   INT64_MAX,
                                   int64_t{1} << 62,
                                   (int64_t{1} << 62) + 1,
                                   int64_t{1} << 61,
                                   (int64_t{1} << 31) - 1,
                                   int64_t{1} << 31,
                                   (int64_t{1} << 31) + 1,
                                   int64_t{1} << 32,
                                   int64_t{1} << 40,
                                   65535,
                                   65536,
                                   4097};
  switch (f.ConsumeIntegralInRange<int>(0, 9)) {
    case 0: return f.ConsumeIntegralInRange<int64_t>(-3, 0);
    case 1: return kEdges[f.ConsumeIntegralInRange<size_t>(0, std::size(kEdges) - 1)];
    case 2: return f.ConsumeIntegral<int64_t>();
    default: return f.ConsumeIntegralInRange<int64_t>(1, 8);  // 8^4 = kMaxElems
  }
}

// An enum as the C caller passes it: any int, usually a valid one.
int fuzz_enum(FuzzedDataProvider& f, int count) {
  switch (f.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return f.ConsumeIntegral<int>();
    case 1: return f.ConsumeBool() ? -1 : count;
    default: return f.ConsumeIntegralInRange<int>(0, count - 1);
  }
}

float fuzz_scalar(FuzzedDataProvider& f, float typical) {
  static const float kSpecial[] = {0.0f,
                                   -0.0f,
                                   std::numeric_limits<float>::quiet_NaN(),
                                   -std::numeric_limits<float>::quiet_NaN(),
                                   std::numeric_limits<float>::infinity(),
                                   -std::numeric_limits<float>::infinity(),
                                   std::numeric_limits<float>::denorm_min(),
                                   -std::numeric_limits<float>::denorm_min(),
                                   FLT_MIN,
                                   FLT_MAX,
                                   -FLT_MAX,
                                   1.0f,
                                   1.0000001f,
                                   0.99999994f,
                                   -1e-5f,
                                   1e-5f,
                                   0.5f,
                                   2.0f,
                                   -0.1f};
  switch (f.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: return float_of(f.ConsumeIntegral<uint32_t>());
    case 1:
    case 2: return kSpecial[f.ConsumeIntegralInRange<size_t>(0, std::size(kSpecial) - 1)];
    default: return typical;
  }
}

// How a pointer argument is made.
enum Kind {
  kValid,       // its own buffer
  kNull,        //
  kMisaligned,  // its buffer + 1 or 2 bytes
  kAlias,       // the same pointer as the input it may alias (y = x, dx = dy)
  kPartial,     // that input + 1 float: a partial overlap
  kAliasX,      // backward: dx = x (never allowed)
  kPartialX,    // backward: dx = x + 1 float
};

Kind fuzz_kind(FuzzedDataProvider& f, int last) {
  // Mostly valid, so that the later checks are reached.
  const int k = f.ConsumeIntegralInRange<int>(0, 2 * last + 2);
  return k > last ? kValid : static_cast<Kind>(k);
}

// ---- buffers ----------------------------------------------------------------------

struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53 * 2.0 - 1.0; }  // [-1, 1)
};

// count floats plus one guard element the library must never touch.
struct Buf {
  std::vector<float> v;
  int64_t count = 0;
  std::vector<float> before;

  // Outputs keep the sentinel until written; inputs get data from fill().
  void make(int64_t n, bool /*is_output*/) {
    count = n;
    v.assign(static_cast<size_t>(n + 1), float_of(kSentinelBits));
  }
  float* at(Kind k, int misalign) {
    if (k == kNull) return nullptr;
    float* p = v.data();
    if (k == kMisaligned) return reinterpret_cast<float*>(reinterpret_cast<char*>(p) + misalign);
    return p;
  }
  void snapshot() { before = v; }
  bool unchanged() const {
    return v.empty() || std::memcmp(v.data(), before.data(), v.size() * sizeof(float)) == 0;
  }
  // The same without the guard, which an adjacent output (x + 1 with one element) may own.
  bool data_unchanged() const {
    return v.empty() || std::memcmp(v.data(), before.data(), static_cast<size_t>(count) * sizeof(float)) == 0;
  }
};

// Input data: a scale from denormal (1e-46) to 1e4, a pattern, and a few injected
// specials. abs makes the values >= 0 (variances, inverse deviations).
void fill(FuzzedDataProvider& f, Buf& b, bool abs) {
  Rng rng{f.ConsumeIntegral<uint64_t>() | 1};
  const double scale = std::pow(10.0, f.ConsumeIntegralInRange<int>(-46, 4));
  const int pattern = f.ConsumeIntegralInRange<int>(0, 7);
  const double constant = rng.uniform() * scale;
  for (int64_t i = 0; i < b.count; ++i) {
    double v;
    switch (pattern) {
      case 0: v = constant; break;                              // constant: variance 0
      case 1: v = 0.0; break;                                   //
      case 2: v = std::round(rng.uniform() * 4.0) * scale; break;  // few distinct values
      default: v = rng.uniform() * scale;
    }
    b.v[static_cast<size_t>(i)] = static_cast<float>(abs ? std::fabs(v) : v);
  }
  const int specials = f.ConsumeIntegralInRange<int>(0, 3) == 0 ? f.ConsumeIntegralInRange<int>(1, 3) : 0;
  for (int s = 0; s < specials && b.count > 0; ++s) {
    const int64_t i = f.ConsumeIntegralInRange<int64_t>(0, b.count - 1);
    static const float kInject[] = {std::numeric_limits<float>::quiet_NaN(),
                                    std::numeric_limits<float>::infinity(),
                                    -std::numeric_limits<float>::infinity(), FLT_MAX, -FLT_MAX,
                                    std::numeric_limits<float>::denorm_min(), 1e30f, -0.0f};
    b.v[static_cast<size_t>(i)] = kInject[f.ConsumeIntegralInRange<size_t>(0, std::size(kInject) - 1)];
  }
}

// ---- the model of the header's rules ------------------------------------------------

// n*c*h*w when every size is >= 1 and the product is at most 2^62, else -1.
int64_t model_numel(const int64_t (&dims)[4]) {
  __int128 p = 1;
  for (int64_t v : dims) {
    if (v <= 0) return -1;
    p *= v;
    if (p > (__int128{1} << 62)) return -1;
  }
  return static_cast<int64_t>(p);
}

bool aligned_or_null(const void* p) { return reinterpret_cast<uintptr_t>(p) % alignof(float) == 0; }

// ---- one call -----------------------------------------------------------------------

enum Op { kTrain, kInference, kBackward, kQueriesCpu, kQueriesCuda, kOpCount };

struct Tensor {
  int64_t n, c, h, w;
  int layout, dtype;
  int64_t numel;  // -1 when the sizes are invalid
  bool small;     // buffers sized from the descriptor
};

// Offset of value j (row order) of channel c; for the per-channel checks.
int64_t offset(const Tensor& t, int64_t c, int64_t j) {
  const int64_t hw = t.h * t.w;
  if (t.layout == BNORM_LAYOUT_NCHW) return ((j / hw) * t.c + c) * hw + j % hw;
  return j * t.c + c;
}

bool moderate(float v) { return std::isfinite(v) && std::fabs(v) <= kModerate; }

struct Call {
  Tensor t;
  bnorm_tensor_t desc;
  bool null_handle, null_desc;
  float eps, momentum;
  int misalign;
  // tensors
  Buf x, y, dy, dx;
  Kind kx, ky, kdy, kdx;
  // per channel
  Buf gamma, beta, rm, rv, sm, si, dg, db;
  Kind kgamma, kbeta, krm, krv, ksm, ksi, kdg, kdb;
  // the pointers passed
  float *px, *py, *pdy, *pdx, *pgamma, *pbeta, *prm, *prv, *psm, *psi, *pdg, *pdb;
};

// The pointer of a tensor argument that may alias `base` (x for y; dy or x for dx).
float* tensor_ptr(Call& c, Buf& own, Kind k, float* alias_base, float* x_base) {
  switch (k) {
    case kAlias: return alias_base;
    case kPartial: return alias_base ? alias_base + 1 : nullptr;
    case kAliasX: return x_base;
    case kPartialX: return x_base ? x_base + 1 : nullptr;
    default: return own.at(k, c.misalign);
  }
}

// Whether the header's rules accept the call (a NOT_SUPPORTED dtype counts as a
// rejection: the call fails and writes nothing either way).
bool model_accepts(const Call& c, Op op) {
  const Tensor& t = c.t;
  if (c.null_handle || c.null_desc) return false;
  if (t.numel < 0) return false;
  if (t.layout != BNORM_LAYOUT_NCHW && t.layout != BNORM_LAYOUT_NHWC) return false;
  if (t.dtype != BNORM_DTYPE_F32) return false;  // F16, BF16: not supported; others invalid
  const auto ok_required = [](const void* p) { return p && aligned_or_null(p); };
  const auto ok_optional = [](const void* p) { return aligned_or_null(p); };
  const auto overlaps = [&](const float* a, const float* b) {  // partly: distinct and closer than numel
    if (!a || !b || a == b) return false;
    const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
    const uintptr_t dist = pa > pb ? pa - pb : pb - pa;
    return dist / sizeof(float) < static_cast<uintptr_t>(t.numel);
  };
  const bool eps_ok = c.eps > 0.0f && std::isfinite(c.eps);
  switch (op) {
    case kTrain:
      return t.n * t.h * t.w >= 2 && ok_required(c.px) && ok_required(c.py) && ok_optional(c.pgamma) &&
             ok_optional(c.pbeta) && ok_optional(c.prm) && ok_optional(c.prv) && ok_optional(c.psm) &&
             ok_optional(c.psi) && eps_ok && c.momentum >= 0.0f && c.momentum <= 1.0f &&
             (c.prm == nullptr) == (c.prv == nullptr) && !overlaps(c.px, c.py);
    case kInference:
      return ok_required(c.px) && ok_required(c.py) && ok_optional(c.pgamma) && ok_optional(c.pbeta) &&
             ok_required(c.prm) && ok_required(c.prv) && eps_ok && !overlaps(c.px, c.py);
    case kBackward:
      return ok_required(c.px) && ok_required(c.pdy) && ok_optional(c.pgamma) && ok_required(c.psm) &&
             ok_required(c.psi) && ok_required(c.pdx) && ok_optional(c.pdg) && ok_optional(c.pdb) &&
             !overlaps(c.pdx, c.pdy) && c.pdx != c.px && !overlaps(c.pdx, c.px);
    default: return false;
  }
}

// Every element of an output the call had to write.
void expect_written(const float* p, int64_t count, const char* name) {
  if (!p) return;
  for (int64_t i = 0; i < count; ++i)
    if (is_sentinel(p[i])) fail("%s[%lld] was not written", name, static_cast<long long>(i));
}

void expect_guard(const Buf& b) {
  if (!b.v.empty() && !is_sentinel(b.v.back())) fail("the element past the end of a buffer was written");
}

void run_tensor_op(FuzzedDataProvider& f, bnorm_handle_t cpu, Op op) {
  Call c{};
  c.null_handle = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  c.null_desc = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  Tensor& t = c.t;
  t.n = fuzz_dim(f);
  t.c = fuzz_dim(f);
  t.h = fuzz_dim(f);
  t.w = fuzz_dim(f);
  t.layout = fuzz_enum(f, 2);
  t.dtype = f.ConsumeIntegralInRange<int>(0, 7) == 0 ? fuzz_enum(f, 3) : BNORM_DTYPE_F32;
  const int64_t dims[4] = {t.n, t.c, t.h, t.w};
  t.numel = model_numel(dims);
  t.small = t.numel > 0 && t.numel <= kMaxElems;
  c.desc.n = t.n;
  c.desc.c = t.c;
  c.desc.h = t.h;
  c.desc.w = t.w;
  c_caller_set_enums(&c.desc, t.layout, t.dtype);  // any int, as a C caller may
  c.eps = fuzz_scalar(f, 1e-5f);
  c.momentum = fuzz_scalar(f, 0.1f);
  c.misalign = f.ConsumeBool() ? 1 : 2;

  const int64_t ne = t.small ? t.numel : kSmallBuffer;
  const int64_t nc = t.small ? t.c : kSmallBuffer;
  const bool train = op == kTrain, inf = op == kInference, bwd = op == kBackward;
  c.x.make(ne, false);
  fill(f, c.x, false);
  c.kx = fuzz_kind(f, kMisaligned);
  if (bwd) {
    c.dy.make(ne, false);
    fill(f, c.dy, false);
    c.kdy = fuzz_kind(f, kMisaligned);
    c.dx.make(ne, true);
    c.kdx = fuzz_kind(f, kPartialX);
  } else {
    c.y.make(ne, true);
    c.ky = fuzz_kind(f, kPartial);
  }
  c.gamma.make(nc, false);
  fill(f, c.gamma, false);
  c.kgamma = fuzz_kind(f, kMisaligned);
  if (!bwd) {
    c.beta.make(nc, false);
    fill(f, c.beta, false);
    c.kbeta = fuzz_kind(f, kMisaligned);
    c.rm.make(nc, false);  // training: read and written; inference: read
    fill(f, c.rm, false);
    c.krm = fuzz_kind(f, kMisaligned);
    c.rv.make(nc, false);
    fill(f, c.rv, f.ConsumeBool());
    c.krv = fuzz_kind(f, kMisaligned);
  }
  if (train) {
    c.sm.make(nc, true);
    c.si.make(nc, true);
    c.ksm = fuzz_kind(f, kMisaligned);
    c.ksi = fuzz_kind(f, kMisaligned);
  }
  if (bwd) {
    c.sm.make(nc, false);
    fill(f, c.sm, false);
    c.ksm = fuzz_kind(f, kMisaligned);
    c.si.make(nc, false);
    fill(f, c.si, f.ConsumeBool());
    c.ksi = fuzz_kind(f, kMisaligned);
    c.dg.make(nc, true);
    c.db.make(nc, true);
    c.kdg = fuzz_kind(f, kMisaligned);
    c.kdb = fuzz_kind(f, kMisaligned);
  }

  c.px = c.x.at(c.kx, c.misalign);
  if (bwd) {
    c.pdy = c.dy.at(c.kdy, c.misalign);
    c.pdx = tensor_ptr(c, c.dx, c.kdx, c.pdy, c.px);
  } else {
    c.py = tensor_ptr(c, c.y, c.ky, c.px, c.px);
  }
  c.pgamma = c.gamma.at(c.kgamma, c.misalign);
  if (!bwd) {
    c.pbeta = c.beta.at(c.kbeta, c.misalign);
    c.prm = c.rm.at(c.krm, c.misalign);
    c.prv = c.rv.at(c.krv, c.misalign);
  }
  if (train || bwd) {
    c.psm = c.sm.at(c.ksm, c.misalign);
    c.psi = c.si.at(c.ksi, c.misalign);
  }
  if (bwd) {
    c.pdg = c.dg.at(c.kdg, c.misalign);
    c.pdb = c.db.at(c.kdb, c.misalign);
  }
  // A partial overlap needs room for one more float in the buffer it points into: the
  // guard element provides it, and stays a sentinel only if the call is rejected.

  const bool accepts = model_accepts(c, op);
  if (accepts && !t.small) return;  // the buffers would be too small to back it

  Buf* all[] = {&c.x, &c.y, &c.dy, &c.dx, &c.gamma, &c.beta, &c.rm, &c.rv, &c.sm, &c.si, &c.dg, &c.db};
  for (Buf* b : all) b->snapshot();

  bnorm_handle_t h = c.null_handle ? nullptr : cpu;
  const bnorm_tensor_t* d = c.null_desc ? nullptr : &c.desc;
  bnorm_status_t s;
  switch (op) {
    case kTrain:
      s = bnorm_forward_training(h, d, c.px, c.py, c.pgamma, c.pbeta, c.momentum, c.eps, c.prm, c.prv, c.psm,
                                 c.psi);
      break;
    case kInference:
      s = bnorm_forward_inference(h, d, c.px, c.py, c.pgamma, c.pbeta, c.prm, c.prv, c.eps);
      break;
    default:
      s = bnorm_backward(h, d, c.px, c.pdy, c.pgamma, c.psm, c.psi, c.pdx, c.pdg, c.pdb);
      break;
  }

  if (!accepts) {
    FUZZ_CHECK(s != BNORM_STATUS_SUCCESS, "op %d: a call the header rejects succeeded", op);
    FUZZ_CHECK(s == BNORM_STATUS_INVALID_VALUE || s == BNORM_STATUS_NOT_SUPPORTED,
               "op %d: unexpected status %s (%s)", op, bnorm_status_string(s), bnorm_last_error());
    FUZZ_CHECK(bnorm_last_error()[0] != '\0', "op %d: failed with an empty message", op);
    for (Buf* b : all) FUZZ_CHECK(b->unchanged(), "op %d: a failed call (%s) wrote", op, bnorm_last_error());
    return;
  }
  FUZZ_CHECK(s == BNORM_STATUS_SUCCESS, "op %d: a valid call failed: %s: %s", op, bnorm_status_string(s),
             bnorm_last_error());

  // Inputs untouched (x may be overwritten in place by y; dy by dx).
  if (!(op != kBackward && c.ky == kAlias)) FUZZ_CHECK(c.x.data_unchanged(), "x changed");
  if (bwd && c.kdx != kAlias) FUZZ_CHECK(c.dy.data_unchanged(), "dy changed");
  for (Buf* b : {&c.gamma, &c.beta}) FUZZ_CHECK(b->unchanged(), "gamma or beta changed");
  if (inf) FUZZ_CHECK(c.rm.unchanged() && c.rv.unchanged(), "inference changed the running statistics");
  if (bwd) FUZZ_CHECK(c.sm.unchanged() && c.si.unchanged(), "backward changed the saved statistics");
  if (train && !c.prm) FUZZ_CHECK(c.rm.unchanged() && c.rv.unchanged(), "running statistics written though not passed");
  // Outputs written, and nothing past their ends.
  if (!bwd) expect_written(c.py, t.numel, "y");
  if (train) {
    expect_written(c.psm, t.c, "save_mean");
    expect_written(c.psi, t.c, "save_invstd");
  }
  if (bwd) {
    expect_written(c.pdx, t.numel, "dx");
    expect_written(c.pdg, t.c, "dgamma");
    expect_written(c.pdb, t.c, "dbeta");
  }
  // With one element, x + 1 is adjacent, not overlapping: that output owns x's guard.
  const bool adjacent_into_x = t.numel == 1 && (c.ky == kPartial || c.kdx == kPartialX);
  const bool adjacent_into_dy = t.numel == 1 && c.kdx == kPartial;
  for (Buf* b : all)
    if (!(b == &c.x && adjacent_into_x) && !(b == &c.dy && adjacent_into_dy)) expect_guard(*b);

  // Finite outputs wherever the channel's inputs are finite and moderate.
  const std::vector<float>& xin = c.x.before;
  const int64_t m = t.n * t.h * t.w;
  for (int64_t ch = 0; ch < t.c; ++ch) {
    const size_t cc = static_cast<size_t>(ch);
    bool mod = true;
    for (int64_t j = 0; j < m && mod; ++j) {
      const size_t o = static_cast<size_t>(offset(t, ch, j));
      mod = moderate(xin[o]) && (!bwd || moderate(c.dy.before[o]));
    }
    if (c.pgamma) mod = mod && moderate(c.gamma.before[cc]);
    if (c.pbeta) mod = mod && moderate(c.beta.before[cc]);
    if (train && c.prm) mod = mod && moderate(c.rm.before[cc]) && moderate(c.rv.before[cc]);
    if (inf) mod = mod && moderate(c.rm.before[cc]) && moderate(c.rv.before[cc]) && c.rv.before[cc] >= 0.0f;
    if (bwd) mod = mod && moderate(c.sm.before[cc]) && moderate(c.si.before[cc]);
    if (!mod) continue;
    const float* out = bwd ? c.pdx : c.py;
    for (int64_t j = 0; j < m; ++j) {
      const float v = out[offset(t, ch, j)];
      FUZZ_CHECK(std::isfinite(v), "op %d: non-finite output %g in channel %lld of moderate inputs", op,
                 static_cast<double>(v), static_cast<long long>(ch));
    }
    const auto finite_at = [&](const float* p, const char* name) {
      FUZZ_CHECK(!p || std::isfinite(p[ch]), "op %d: %s[%lld] is not finite", op, name, static_cast<long long>(ch));
    };
    finite_at(c.psm, "save_mean");
    finite_at(c.psi, "save_invstd");
    if (train) finite_at(c.prm, "running_mean");
    if (train) finite_at(c.prv, "running_var");
    finite_at(c.pdg, "dgamma");
    finite_at(c.pdb, "dbeta");
    if (train && c.psi) FUZZ_CHECK(c.psi[ch] > 0.0f, "save_invstd[%lld] <= 0", static_cast<long long>(ch));
  }
}

// ---- dispatch queries ---------------------------------------------------------------

// A CUDA handle as dispatch sees it (no device memory, no stream): an H100's identity.
bnorm_handle* fake_cuda_handle() {
  static bnorm_handle* h = [] {
    auto* p = new bnorm_handle();
    p->backend = BNORM_BACKEND_CUDA;
    p->gpu_name = "NVIDIA H100 80GB HBM3";
    p->cc_major = 9;
    p->dev.sm_count = 132;
    p->dev.max_threads_per_sm = 2048;
    return p;
  }();
  return h;
}

// A buffer of exactly len bytes (ASan sees a write past it), pre-filled with a byte.
struct Bytes {
  std::vector<char> v;
  explicit Bytes(size_t len) : v(len, '\x5a') {}
  char* data() { return v.empty() ? nullptr : v.data(); }
};

bool nul_terminated(const Bytes& b) { return std::memchr(b.v.data(), '\0', b.v.size()) != nullptr; }

void run_queries(FuzzedDataProvider& f, bnorm_handle_t cpu, bool cuda) {
  bnorm_handle_t h = cuda ? fake_cuda_handle() : cpu;
  const int op = fuzz_enum(f, 3);
  const bool op_ok = op >= 0 && op < 3;
  bnorm_tensor_t d{};
  d.n = fuzz_dim(f);
  d.c = fuzz_dim(f);
  d.h = fuzz_dim(f);
  d.w = fuzz_dim(f);
  const int layout = fuzz_enum(f, 2), dtype = f.ConsumeIntegralInRange<int>(0, 7) == 0 ? fuzz_enum(f, 3) : 0;
  c_caller_set_enums(&d, layout, dtype);
  const int64_t dims[4] = {d.n, d.c, d.h, d.w};
  const bool desc_ok = model_numel(dims) > 0 && (layout == 0 || layout == 1) && dtype == BNORM_DTYPE_F32;
  const int aligned = f.ConsumeBool();

  // Handles of any backend value (a CUDA one only where a device could exist), and the
  // string of any status value.
  const int backend = fuzz_enum(f, 2);
  if (backend != BNORM_BACKEND_CUDA) {
    bnorm_handle_t made = nullptr;
    const bnorm_status_t cs = c_caller_create(&made, backend, f.ConsumeIntegral<int>());
    FUZZ_CHECK((cs == BNORM_STATUS_SUCCESS) == (backend == BNORM_BACKEND_CPU) && (made != nullptr) == (cs == 0),
               "bnorm_create(backend %d) gave %s", backend, bnorm_status_string(cs));
    if (made) FUZZ_CHECK(bnorm_destroy(made) == BNORM_STATUS_SUCCESS, "bnorm_destroy failed");
  }
  if (!cuda) {  // the CPU backend accepts and ignores any stream
    void* stream = reinterpret_cast<void*>(f.ConsumeIntegral<uintptr_t>());
    void* got = &stream;
    bnorm_backend_t b;
    FUZZ_CHECK(bnorm_set_stream(h, stream) == BNORM_STATUS_SUCCESS && bnorm_get_stream(h, &got) == BNORM_STATUS_SUCCESS &&
                   bnorm_get_backend(h, &b) == BNORM_STATUS_SUCCESS && b == BNORM_BACKEND_CPU,
               "stream or backend accessors failed: %s", bnorm_last_error());
    FUZZ_CHECK(bnorm_get_stream(nullptr, &got) == BNORM_STATUS_INVALID_VALUE &&
                   bnorm_get_stream(h, nullptr) == BNORM_STATUS_INVALID_VALUE &&
                   bnorm_set_stream(nullptr, stream) == BNORM_STATUS_INVALID_VALUE,
               "accessors accepted a NULL");
  }
  const char* name = c_caller_status_string(f.ConsumeIntegral<int>());
  FUZZ_CHECK(name && std::strncmp(name, "BNORM_STATUS_", 13) == 0, "bnorm_status_string gave '%s'", name ? name : "NULL");

  // set_variant with a fuzzed spec: a CPU handle accepts only its one variant.
  std::string spec = f.ConsumeRandomLengthString(48);
  const bool null_spec = f.ConsumeIntegralInRange<int>(0, 7) == 0;
  bnorm_status_t s = c_caller_set_variant(h, op, null_spec ? nullptr : spec.c_str());
  if (!op_ok) FUZZ_CHECK(s == BNORM_STATUS_INVALID_VALUE, "set_variant accepted op %d", op);
  if (op_ok && null_spec) FUZZ_CHECK(s == BNORM_STATUS_SUCCESS, "set_variant(NULL) failed: %s", bnorm_last_error());
  if (op_ok && !null_spec && !cuda)
    FUZZ_CHECK((s == BNORM_STATUS_SUCCESS) == (std::strcmp(spec.c_str(), "cpu_reference") == 0),
               "CPU set_variant('%s') gave %s", spec.c_str(), bnorm_status_string(s));  // up to a NUL
  if (s != BNORM_STATUS_SUCCESS) FUZZ_CHECK(bnorm_last_error()[0] != '\0', "set_variant failed with no message");

  // query_variant into a buffer of a fuzzed size.
  const size_t len = f.ConsumeIntegralInRange<size_t>(0, 72);
  Bytes buf(len);
  const Bytes untouched = buf;
  int why = 77;  // not a bnorm_choice_t: only the library may store one there
  s = c_caller_query_variant(h, op, &d, aligned, buf.data(), len, reinterpret_cast<bnorm_choice_t*>(&why));
  if (s == BNORM_STATUS_SUCCESS) {
    FUZZ_CHECK(op_ok && desc_ok && len > 0, "query_variant succeeded on a bad call");
    FUZZ_CHECK(nul_terminated(buf), "query_variant: no NUL within %zu bytes", len);
    if (!cuda) FUZZ_CHECK(std::string("cpu_reference").rfind(buf.v.data(), 0) == 0 && why == static_cast<int>(BNORM_CHOICE_ONLY),
                          "CPU query_variant gave '%s'", buf.v.data());
  } else {
    FUZZ_CHECK(!(op_ok && desc_ok && len > 0) || cuda, "CPU query_variant failed on a good call: %s", bnorm_last_error());
    FUZZ_CHECK(buf.v == untouched.v && why == 77, "a failed query_variant wrote");
    FUZZ_CHECK(bnorm_last_error()[0] != '\0', "query_variant failed with no message");
  }

  // list_variants: sized first, then the whole list; every line is an accepted override
  // that query_variant then reports back verbatim.
  int count = -5;
  size_t needed = 0;
  const size_t len2 = f.ConsumeIntegralInRange<size_t>(0, 40);
  Bytes small(len2);
  const Bytes small_before = small;
  s = c_caller_list_variants(h, op, &d, aligned, small.data(), len2, &count, &needed);
  if (s != BNORM_STATUS_SUCCESS) {
    FUZZ_CHECK(count == -5 && needed == 0 && small.v == small_before.v, "a failed list_variants wrote");
    FUZZ_CHECK(bnorm_last_error()[0] != '\0', "list_variants failed with no message");
    if (!cuda) FUZZ_CHECK(!(op_ok && desc_ok), "CPU list_variants failed on a good call: %s", bnorm_last_error());
    return;
  }
  FUZZ_CHECK(op_ok && desc_ok, "list_variants succeeded on a bad call");
  FUZZ_CHECK(count >= 0 && needed >= 1, "list_variants: count %d, needed %zu", count, needed);
  if (len2 > 0) FUZZ_CHECK(nul_terminated(small), "list_variants: no NUL within %zu bytes", len2);
  if (!cuda) FUZZ_CHECK(count == 1 && needed == sizeof("cpu_reference\n"), "CPU list_variants: %d, %zu", count, needed);
  if (!cuda || count == 0 || needed > (1u << 16)) return;
  Bytes all(needed);
  int count2 = 0;
  FUZZ_CHECK(c_caller_list_variants(h, op, &d, aligned, all.data(), needed, &count2, nullptr) == BNORM_STATUS_SUCCESS &&
                 count2 == count && all.v.back() == '\0',
             "list_variants: the sized call disagrees");
  std::string text(all.v.data());
  size_t lines = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = text.find('\n', pos);
    FUZZ_CHECK(end != std::string::npos, "list_variants: unterminated line");
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lines;
    if (lines > 4) continue;  // the first few: each check costs a dispatch
    FUZZ_CHECK(c_caller_set_variant(h, op, line.c_str()) == BNORM_STATUS_SUCCESS, "listed '%s' is not accepted: %s",
               line.c_str(), bnorm_last_error());
    char back[128];
    bnorm_choice_t w;
    FUZZ_CHECK(c_caller_query_variant(h, op, &d, aligned, back, sizeof back, &w) == BNORM_STATUS_SUCCESS,
               "listed '%s' does not support the call it was listed for: %s", line.c_str(), bnorm_last_error());
    FUZZ_CHECK(line == back && w == BNORM_CHOICE_OVERRIDE, "forced '%s', query says '%s'", line.c_str(), back);
  }
  FUZZ_CHECK(lines == static_cast<size_t>(count), "list_variants: %zu lines, count %d", lines, count);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bnorm_handle_t cpu = [] {
    bnorm_handle_t h = nullptr;
    if (bnorm_create(&h, BNORM_BACKEND_CPU, 0) != BNORM_STATUS_SUCCESS) fail("bnorm_create(CPU) failed");
    return h;
  }();
  FuzzedDataProvider f(data, size);
  const Op op = static_cast<Op>(f.ConsumeIntegralInRange<int>(0, kOpCount - 1));
  if (op == kQueriesCpu || op == kQueriesCuda) {
    run_queries(f, cpu, op == kQueriesCuda);
    // Forced specs would otherwise stay on the handles into the next input.
    for (int o = 0; o < 3; ++o) {
      bnorm_set_variant(cpu, static_cast<bnorm_op_t>(o), nullptr);
      bnorm_set_variant(fake_cuda_handle(), static_cast<bnorm_op_t>(o), nullptr);
    }
  } else {
    run_tensor_op(f, cpu, op);
  }
  return 0;
}
