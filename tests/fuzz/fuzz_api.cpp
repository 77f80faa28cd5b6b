// libFuzzer target: the C API's argument validation on the CPU backend, and the
// dispatch queries.
//
// Each input becomes one call of bnorm_forward_training, bnorm_forward_inference or
// bnorm_backward (plain or fused) on a CPU handle, one call of the toolbox (frozen
// backward, fold, the five synchronized calls, group, instance and layer norm forward
// and backward) on a CPU handle, or a round of bnorm_set_variant / query_variant /
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
// and ASan/UBSan abort on any memory error or undefined behaviour on the way. The
// toolbox's calls are held to the same rules except for values (their unit tests compare
// them with references): a successful one must have written every element of its
// outputs (f32 tensors, every array), nothing past them, and changed no input. The last
// byte of an input selects the call.
// Buffers are sized from the descriptor only when it has at most kMaxElems elements; a
// larger descriptor gets small buffers, so a call the model accepts with it is not made
// (the library cannot know how large a buffer is), while every call it rejects is.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
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

// How a pointer argument is made: its own buffer (valid, or 1 or 2 bytes off), NULL,
// another tensor argument's pointer (an alias), or 4 bytes into that argument's buffer
// (a partial overlap, or adjacent memory when the tensor is that small; each buffer has
// a spare float at its end, so the pointer's whole range stays inside the allocation).
enum Kind { kValid, kNull, kMisaligned, kAlias, kPartial };

struct Choice {
  Kind kind = kValid;
  int target = -1;  // the tensor argument aliased or overlapped
};

// One of options, options[0] (the valid choice) half of the time, so that the checks
// after a pointer's are reached too.
Choice fuzz_choice(FuzzedDataProvider& f, std::initializer_list<Choice> options) {
  const size_t k = f.ConsumeIntegralInRange<size_t>(0, 2 * options.size() - 1);
  return options.begin()[k < options.size() ? k : 0];
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

// count floats plus one guard float; filled with the sentinel (outputs) or data.
struct Buf {
  std::vector<float> v;
  int64_t count = 0;
  std::vector<float> before;

  void make(int64_t n) {
    count = n;
    v.assign(static_cast<size_t>(n + 1), float_of(kSentinelBits));
  }
  bool contains(const void* p) const {
    const char* b = reinterpret_cast<const char*>(v.data());
    const char* q = static_cast<const char*>(p);
    return p && !v.empty() && q >= b && q < b + v.size() * sizeof(float);
  }
  void snapshot() { before = v; }
  // Bytes [from, end) as they were.
  bool unchanged_from(size_t from) const {
    const size_t bytes = v.size() * sizeof(float);
    return from >= bytes || std::memcmp(reinterpret_cast<const char*>(v.data()) + from,
                                        reinterpret_cast<const char*>(before.data()) + from, bytes - from) == 0;
  }
  bool unchanged() const { return unchanged_from(0); }
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
      case 0: v = constant; break;                                 // constant: variance 0
      case 1: v = 0.0; break;                                      //
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

// n*c*h*w when n >= 0 (0: an empty batch), c, h, w >= 1, and c*h*w and n*c*h*w are at
// most 2^62; else -1.
int64_t model_numel(const int64_t (&dims)[4]) {
  if (dims[0] < 0) return -1;
  __int128 p = 1;
  for (int i = 1; i < 4; ++i) {
    if (dims[i] <= 0) return -1;
    p *= dims[i];
    if (p > (__int128{1} << 62)) return -1;
  }
  p *= dims[0];
  if (p > (__int128{1} << 62)) return -1;
  return static_cast<int64_t>(p);
}

uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// ---- one call -----------------------------------------------------------------------

// The first eight as before the toolbox ops came (the seeds' last byte selects the op).
enum Op {
  kTrain, kInference, kBackward, kTrainFused, kInferFused, kBackFused, kQueriesCpu, kQueriesCuda,
  kFrozen, kFold, kSyncLocal, kSyncMerge, kSyncForward, kSyncSums, kSyncBackward,
  kGroupFwd, kGroupBwd, kInstanceFwd, kInstanceBwd, kLayerFwd, kLayerBwd, kOpCount
};

// Tensor arguments (x, z: forward inputs; y: forward output, backward's ReLU mask;
// dy: backward input; dx, dz: backward outputs) and per-channel ones.
enum T { tX, tZ, tY, tDY, tDX, tDZ, kTensors };
enum P { pGamma, pBeta, pRM, pRV, pSM, pSI, pDG, pDB, kChannels };

struct Tensor {
  int64_t n, c, h, w;
  int layout, dtype;
  int64_t numel;  // -1 when the sizes are invalid
  bool small;     // buffers sized from the descriptor
  int64_t elem() const { return dtype == BNORM_DTYPE_F32 ? 4 : 2; }
};

// Offset of value j (row order) of channel c; for the per-channel checks.
int64_t offset(const Tensor& t, int64_t c, int64_t j) {
  const int64_t hw = t.h * t.w;
  if (t.layout == BNORM_LAYOUT_NCHW) return ((j / hw) * t.c + c) * hw + j % hw;
  return j * t.c + c;
}

bool moderate(float v) { return std::isfinite(v) && std::fabs(v) <= kModerate; }

struct Call {
  Op op;
  bool fused, train, infer, back;
  int act = BNORM_ACTIVATION_IDENTITY;
  Tensor t;
  bnorm_tensor_t desc;
  bool null_handle, null_desc;
  float eps, momentum;
  int misalign;
  Buf tb[kTensors], cb[kChannels];
  bool used_t[kTensors] = {}, used_c[kChannels] = {};
  void* tp[kTensors] = {};
  float* cp[kChannels] = {};
};

// Whether the header's rules accept the call.
bool model_accepts(const Call& c) {
  const Tensor& t = c.t;
  if (c.null_handle || c.null_desc || t.numel < 0) return false;
  if (t.layout != BNORM_LAYOUT_NCHW && t.layout != BNORM_LAYOUT_NHWC) return false;
  if (t.dtype < BNORM_DTYPE_F32 || t.dtype > BNORM_DTYPE_BF16) return false;
  if (c.act != BNORM_ACTIVATION_IDENTITY && c.act != BNORM_ACTIVATION_RELU) return false;
  const bool relu = c.act == BNORM_ACTIVATION_RELU;
  const uintptr_t elem = static_cast<uintptr_t>(t.elem());
  // An empty tensor (n = 0) may be NULL.
  const auto tensor = [&](int i) { return (c.tp[i] || t.numel == 0) && addr(c.tp[i]) % elem == 0; };
  const auto tensor_opt = [&](int i) { return !c.tp[i] || addr(c.tp[i]) % elem == 0; };
  const auto chan = [&](int i) { return c.cp[i] && addr(c.cp[i]) % 4 == 0; };
  const auto chan_opt = [&](int i) { return !c.cp[i] || addr(c.cp[i]) % 4 == 0; };
  // Distinct and closer than the tensor's size: a partial overlap.
  const auto partial = [&](int a, int b) {
    if (!c.tp[a] || !c.tp[b] || c.tp[a] == c.tp[b]) return false;
    const uintptr_t pa = addr(c.tp[a]), pb = addr(c.tp[b]);
    return (pa > pb ? pa - pb : pb - pa) / elem < static_cast<uintptr_t>(t.numel);
  };
  const bool eps_ok = c.eps > 0.0f && std::isfinite(c.eps);
  if (c.train)
    return (t.n == 0 || t.n * t.h * t.w >= 2) && tensor(tX) && tensor(tY) && tensor_opt(tZ) && chan_opt(pGamma) &&
           chan_opt(pBeta) && chan_opt(pRM) && chan_opt(pRV) && chan_opt(pSM) && chan_opt(pSI) && eps_ok &&
           c.momentum >= 0.0f && c.momentum <= 1.0f && (c.cp[pRM] == nullptr) == (c.cp[pRV] == nullptr) &&
           !partial(tX, tY) && !partial(tZ, tY);
  if (c.infer)
    return tensor(tX) && tensor(tY) && tensor_opt(tZ) && chan_opt(pGamma) && chan_opt(pBeta) && chan(pRM) &&
           chan(pRV) && eps_ok && !partial(tX, tY) && !partial(tZ, tY);
  // backward
  if (!(tensor(tX) && (!relu || tensor(tY)) && tensor(tDY) && chan_opt(pGamma) && chan(pSM) && chan(pSI) &&
        tensor(tDX) && tensor_opt(tDZ) && chan_opt(pDG) && chan_opt(pDB)))
    return false;
  if (partial(tDX, tDY) || (c.tp[tDX] && c.tp[tDX] == c.tp[tX]) || partial(tDX, tX)) return false;
  if (c.tp[tDZ]) {
    if (c.tp[tDZ] == c.tp[tDX] || c.tp[tDZ] == c.tp[tX] || (relu && c.tp[tDZ] == c.tp[tY])) return false;
    if (partial(tDZ, tDY) || partial(tDZ, tDX) || partial(tDZ, tX)) return false;
  }
  if (relu && ((c.tp[tDX] && c.tp[tDX] == c.tp[tY]) || partial(tDX, tY) || partial(tDZ, tY))) return false;
  return true;
}

void expect_written(const float* p, int64_t count, const char* name) {
  if (!p) return;
  for (int64_t i = 0; i < count; ++i)
    if (is_sentinel(p[i])) fail("%s[%lld] was not written", name, static_cast<long long>(i));
}

// The descriptor: its sizes, layout and dtype, and the model's view of them.
void decode_tensor(FuzzedDataProvider& f, Tensor& t, bnorm_tensor_t& desc) {
  t.n = fuzz_dim(f);
  t.c = fuzz_dim(f);
  t.h = fuzz_dim(f);
  t.w = fuzz_dim(f);
  t.layout = fuzz_enum(f, 2);
  t.dtype = f.ConsumeIntegralInRange<int>(0, 3) == 0 ? fuzz_enum(f, 3) : BNORM_DTYPE_F32;
  const int64_t dims[4] = {t.n, t.c, t.h, t.w};
  t.numel = model_numel(dims);
  t.small = t.numel > 0 && t.numel <= kMaxElems;
  desc.n = t.n;
  desc.c = t.c;
  desc.h = t.h;
  desc.w = t.w;
  c_caller_set_enums(&desc, t.layout, t.dtype);  // any int, as a C caller may
}

void run_tensor_op(FuzzedDataProvider& f, bnorm_handle_t cpu, Op op) {
  Call c{};
  c.op = op;
  c.fused = op == kTrainFused || op == kInferFused || op == kBackFused;
  c.train = op == kTrain || op == kTrainFused;
  c.infer = op == kInference || op == kInferFused;
  c.back = op == kBackward || op == kBackFused;
  if (c.fused) c.act = fuzz_enum(f, 2);
  c.null_handle = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  c.null_desc = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  Tensor& t = c.t;
  decode_tensor(f, t, c.desc);
  c.eps = fuzz_scalar(f, 1e-5f);
  c.momentum = fuzz_scalar(f, 0.1f);
  c.misalign = f.ConsumeBool() ? 1 : 2;
  const int64_t ne = t.small ? t.numel : kSmallBuffer;
  const int64_t nc = t.small ? t.c : kSmallBuffer;

  // Buffers and pointers, in an order where every alias target comes first.
  const auto tensor = [&](int i, bool input, Choice ch) {
    c.used_t[i] = true;
    c.tb[i].make(ne);
    if (input) fill(f, c.tb[i], false);
    switch (ch.kind) {
      case kNull: c.tp[i] = nullptr; break;
      case kValid: c.tp[i] = c.tb[i].v.data(); break;
      case kMisaligned: c.tp[i] = reinterpret_cast<char*>(c.tb[i].v.data()) + c.misalign; break;
      case kAlias: c.tp[i] = c.tp[ch.target]; break;
      case kPartial:  // 4 bytes into the target's buffer, which has room for it
        c.tp[i] = c.used_t[ch.target] ? reinterpret_cast<char*>(c.tb[ch.target].v.data()) + 4 : nullptr;
        break;
    }
  };
  const auto channel = [&](int i, bool input, bool positive) {
    c.used_c[i] = true;
    c.cb[i].make(nc);
    if (input) fill(f, c.cb[i], positive);
    const Choice ch = fuzz_choice(f, {{kValid}, {kNull}, {kMisaligned}});
    c.cp[i] = ch.kind == kNull ? nullptr
              : ch.kind == kMisaligned ? reinterpret_cast<float*>(reinterpret_cast<char*>(c.cb[i].v.data()) + c.misalign)
                                       : c.cb[i].v.data();
  };
  const std::initializer_list<Choice> plain = {{kValid}, {kNull}, {kMisaligned}};
  if (c.train || c.infer) {
    tensor(tX, true, fuzz_choice(f, plain));
    if (c.fused) tensor(tZ, true, fuzz_choice(f, plain));
    tensor(tY, false, fuzz_choice(f, {{kValid}, {kNull}, {kMisaligned}, {kAlias, tX}, {kPartial, tX},
                                      {kAlias, tZ}, {kPartial, tZ}}));
    channel(pGamma, true, false);
    channel(pBeta, true, false);
    channel(pRM, true, false);
    channel(pRV, true, f.ConsumeBool());
    if (c.train) {
      channel(pSM, false, false);
      channel(pSI, false, false);
    }
  } else {
    tensor(tX, true, fuzz_choice(f, plain));
    if (c.fused) tensor(tY, true, fuzz_choice(f, plain));  // the ReLU mask
    tensor(tDY, true, fuzz_choice(f, plain));
    tensor(tDX, false, fuzz_choice(f, {{kValid}, {kNull}, {kMisaligned}, {kAlias, tDY}, {kPartial, tDY}, {kAlias, tX},
                                       {kPartial, tX}, {kAlias, tY}, {kPartial, tY}}));
    if (c.fused)
      tensor(tDZ, false, fuzz_choice(f, {{kValid}, {kNull}, {kMisaligned}, {kAlias, tDY}, {kPartial, tDY},
                                         {kAlias, tDX}, {kPartial, tDX}, {kAlias, tX}, {kPartial, tX},
                                         {kAlias, tY}, {kPartial, tY}}));
    channel(pGamma, true, false);
    channel(pSM, true, false);
    channel(pSI, true, f.ConsumeBool());
    channel(pDG, false, false);
    channel(pDB, false, false);
  }

  const bool accepts = model_accepts(c);
  if (accepts && !t.small) return;  // the buffers would be too small to back it
  for (Buf& b : c.tb) b.snapshot();
  for (Buf& b : c.cb) b.snapshot();

  bnorm_handle_t h = c.null_handle ? nullptr : cpu;
  const bnorm_tensor_t* d = c.null_desc ? nullptr : &c.desc;
  void** tp = c.tp;
  float** cp = c.cp;
  bnorm_status_t s;
  switch (op) {
    case kTrain:
      s = bnorm_forward_training(h, d, tp[tX], tp[tY], cp[pGamma], cp[pBeta], c.momentum, c.eps, cp[pRM], cp[pRV],
                                 cp[pSM], cp[pSI]);
      break;
    case kTrainFused:
      s = c_caller_forward_training_fused(h, d, tp[tX], tp[tZ], tp[tY], cp[pGamma], cp[pBeta], c.momentum, c.eps,
                                          cp[pRM], cp[pRV], cp[pSM], cp[pSI], c.act);
      break;
    case kInference:
      s = bnorm_forward_inference(h, d, tp[tX], tp[tY], cp[pGamma], cp[pBeta], cp[pRM], cp[pRV], c.eps);
      break;
    case kInferFused:
      s = c_caller_forward_inference_fused(h, d, tp[tX], tp[tZ], tp[tY], cp[pGamma], cp[pBeta], cp[pRM], cp[pRV],
                                           c.eps, c.act);
      break;
    case kBackward:
      s = bnorm_backward(h, d, tp[tX], tp[tDY], cp[pGamma], cp[pSM], cp[pSI], tp[tDX], cp[pDG], cp[pDB]);
      break;
    default:
      s = c_caller_backward_fused(h, d, tp[tX], tp[tY], tp[tDY], cp[pGamma], cp[pSM], cp[pSI], tp[tDX], tp[tDZ],
                                  cp[pDG], cp[pDB], c.act);
      break;
  }

  if (!accepts) {
    FUZZ_CHECK(s != BNORM_STATUS_SUCCESS, "op %d: a call the header rejects succeeded", op);
    FUZZ_CHECK(s == BNORM_STATUS_INVALID_VALUE || s == BNORM_STATUS_NOT_SUPPORTED,
               "op %d: unexpected status %s (%s)", op, bnorm_status_string(s), bnorm_last_error());
    FUZZ_CHECK(bnorm_last_error()[0] != '\0', "op %d: failed with an empty message", op);
    for (const Buf& b : c.tb) FUZZ_CHECK(b.unchanged(), "op %d: a failed call (%s) wrote", op, bnorm_last_error());
    for (const Buf& b : c.cb) FUZZ_CHECK(b.unchanged(), "op %d: a failed call (%s) wrote", op, bnorm_last_error());
    return;
  }
  FUZZ_CHECK(s == BNORM_STATUS_SUCCESS, "op %d: a valid call failed: %s: %s", op, bnorm_status_string(s),
             bnorm_last_error());

  // Which tensor buffers the outputs point into; all others, and every per-channel
  // input, must be as they were, guard included.
  const int outs[3] = {c.back ? tDX : tY, c.back ? tDZ : -1, -1};
  bool hosts_output[kTensors] = {};
  for (int o : outs)
    if (o >= 0 && tp[o])
      for (int i = 0; i < kTensors; ++i) hosts_output[i] = hosts_output[i] || c.tb[i].contains(tp[o]);
  for (int i = 0; i < kTensors; ++i)
    if (c.used_t[i] && !hosts_output[i]) FUZZ_CHECK(c.tb[i].unchanged(), "op %d: input tensor %d changed", op, i);
  const size_t tensor_bytes = static_cast<size_t>(t.numel * t.elem());
  for (int o : outs) {  // an output alone in its own buffer: nothing written past its end
    if (o < 0 || tp[o] != c.tb[o].v.data()) continue;
    bool shared = false;
    for (int i = 0; i < kTensors; ++i) shared = shared || (i != o && c.tb[o].contains(tp[i]));
    if (!shared) FUZZ_CHECK(c.tb[o].unchanged_from(tensor_bytes), "op %d: written past the end of output %d", op, o);
  }
  const bool stats_out[kChannels] = {false, false, c.train, c.train, c.train, c.train, c.back, c.back};
  for (int i = 0; i < kChannels; ++i) {
    if (!c.used_c[i]) continue;
    if (!stats_out[i]) FUZZ_CHECK(c.cb[i].unchanged(), "op %d: per-channel input %d changed", op, i);
    else FUZZ_CHECK(c.cb[i].unchanged_from(static_cast<size_t>(t.c) * sizeof(float)),
                    "op %d: written past the end of per-channel output %d", op, i);
  }
  for (int i : {pSM, pSI, pDG, pDB})
    if (stats_out[i] && cp[i]) expect_written(cp[i], t.c, "a per-channel output");
  if (t.dtype != BNORM_DTYPE_F32) return;  // 16-bit values: the unit tests check those

  for (int o : outs)
    if (o >= 0) expect_written(static_cast<const float*>(tp[o]), t.numel, "a tensor output");
  // Finite outputs wherever the channel's inputs are finite and moderate.
  const auto in = [&](int i) -> const std::vector<float>& { return c.tb[i].before; };
  const int64_t m = t.n * t.h * t.w;
  for (int64_t ch = 0; ch < t.c; ++ch) {
    const size_t cc = static_cast<size_t>(ch);
    bool mod = true;
    for (int64_t j = 0; j < m && mod; ++j) {
      const size_t o = static_cast<size_t>(offset(t, ch, j));
      // Values read through an alias come from the aliased buffer's snapshot.
      const auto value = [&](int i) {
        for (int k = 0; k < kTensors; ++k)
          if (c.used_t[k] && tp[i] == c.tb[k].v.data()) return in(k)[o];
        return in(i)[o];
      };
      mod = moderate(value(tX)) && (!c.back || moderate(value(tDY))) && (!tp[tZ] || !c.used_t[tZ] || moderate(value(tZ)));
    }
    for (int i : {pGamma, pBeta, pRM, pRV, pSM, pSI})  // the per-channel inputs
      if (c.used_c[i] && cp[i] && !(c.train && (i == pSM || i == pSI))) mod = mod && moderate(c.cb[i].before[cc]);
    if (c.infer) mod = mod && c.cb[pRV].before[cc] >= 0.0f;
    if (!mod) continue;
    for (int o : outs) {
      if (o < 0 || !tp[o]) continue;
      const float* out = static_cast<const float*>(tp[o]);
      for (int64_t j = 0; j < m; ++j)
        FUZZ_CHECK(std::isfinite(out[offset(t, ch, j)]), "op %d: non-finite output in channel %lld of moderate inputs",
                   op, static_cast<long long>(ch));
    }
    for (int i : {pSM, pSI, pRM, pRV, pDG, pDB})
      if (stats_out[i] && cp[i])
        FUZZ_CHECK(std::isfinite(cp[i][ch]), "op %d: per-channel output %d not finite in channel %lld", op, i,
                   static_cast<long long>(ch));
    if (c.train && cp[pSI]) FUZZ_CHECK(cp[pSI][ch] > 0.0f, "save_invstd[%lld] <= 0", static_cast<long long>(ch));
  }
}

// ---- the toolbox's calls ------------------------------------------------------------
//
// Frozen, folded and synchronized batch norm and the per-sample norms. The same
// decoding and the same property as above, except that values are not checked (the unit
// tests compare them with references): a successful call wrote every element of its
// outputs and nothing past them, and changed no input.

// The small arrays: per channel, per value (layer norm), per row (the per-sample norms'
// saved statistics), per output channel (fold), Welford states and backward sums.
enum A { aGamma, aBeta, aRM, aRV, aSM, aSI, aDG, aDB, aBias, aBiasOut, aStats, aGlobal, aSums, kArrays };

struct ToolCall {
  Op op;
  Tensor t;
  bnorm_tensor_t desc;
  bool null_handle, null_desc;
  bool sized;  // buffers sized from the descriptor (n = 0 included)
  float eps, momentum;
  int misalign;
  int64_t groups = 1;  // group norm's
  int64_t ranks = 1;   // merge's
  Buf tb[kTensors], ab[kArrays];
  bool used_t[kTensors] = {}, used_a[kArrays] = {};
  int64_t count_a[kArrays] = {};  // elements the call may read or write
  void* tp[kTensors] = {};
  float* ap[kArrays] = {};
};

bool per_sample_op(Op op) { return op >= kGroupFwd; }
bool layer_op(Op op) { return op == kLayerFwd || op == kLayerBwd; }
bool per_sample_forward_op(Op op) { return op == kGroupFwd || op == kInstanceFwd || op == kLayerFwd; }

int64_t gcd64(int64_t a, int64_t b) { return b == 0 ? a : gcd64(b, a % b); }

bool model_accepts_toolbox(const ToolCall& c) {
  const Tensor& t = c.t;
  if (c.null_handle) return false;
  const auto chan = [&](int i) { return c.ap[i] && addr(c.ap[i]) % 4 == 0; };
  const auto chan_opt = [&](int i) { return !c.ap[i] || addr(c.ap[i]) % 4 == 0; };
  if (c.op == kSyncMerge) {
    if (t.c < 1 || c.ranks < 1 || t.c > (int64_t{1} << 40) / c.ranks) return false;
    if (!chan(aStats) || !chan(aGlobal)) return false;
    const uintptr_t g = addr(c.ap[aStats]), o = addr(c.ap[aGlobal]);
    const uintptr_t g_bytes = static_cast<uintptr_t>(3 * t.c * c.ranks) * 4, o_bytes = static_cast<uintptr_t>(3 * t.c) * 4;
    return g + g_bytes <= o || o + o_bytes <= g;  // disjoint
  }
  if (c.null_desc || t.numel < 0) return false;
  if (t.layout != BNORM_LAYOUT_NCHW && t.layout != BNORM_LAYOUT_NHWC) return false;
  if (t.dtype < BNORM_DTYPE_F32 || t.dtype > BNORM_DTYPE_BF16) return false;
  const uintptr_t elem = static_cast<uintptr_t>(t.elem());
  const auto tensor = [&](int i) { return (c.tp[i] || t.numel == 0) && addr(c.tp[i]) % elem == 0; };
  const auto partial = [&](int a, int b) {
    if (!c.tp[a] || !c.tp[b] || c.tp[a] == c.tp[b]) return false;
    const uintptr_t pa = addr(c.tp[a]), pb = addr(c.tp[b]);
    return (pa > pb ? pa - pb : pb - pa) / elem < static_cast<uintptr_t>(t.numel);
  };
  // A backward's dx: dy's buffer or disjoint from it; never x's, nor partly over it.
  const auto dx_ok = [&] {
    return !partial(tDX, tDY) && !(c.tp[tDX] && c.tp[tDX] == c.tp[tX]) && !partial(tDX, tX);
  };
  const bool eps_ok = c.eps > 0.0f && std::isfinite(c.eps);
  switch (c.op) {
    case kFrozen:
      return (c.tp[tX] || c.ap[aDG] || c.ap[aDB] ? tensor(tX) : true) && tensor(tDY) && chan_opt(aGamma) &&
             chan(aRM) && chan(aRV) && eps_ok && tensor(tDX) && chan_opt(aDG) && chan_opt(aDB) && dx_ok();
    case kFold: {
      if (!(tensor(tX) && chan_opt(aBias) && chan_opt(aGamma) && chan_opt(aBeta) && chan(aRM) && chan(aRV) &&
            eps_ok && tensor(tY) && (t.n == 0 || chan(aBiasOut)) && !partial(tX, tY)))
        return false;
      if (!c.ap[aBias] || !c.ap[aBiasOut] || c.ap[aBias] == c.ap[aBiasOut]) return true;
      const uintptr_t pa = addr(c.ap[aBias]), pb = addr(c.ap[aBiasOut]);
      return (pa > pb ? pa - pb : pb - pa) / 4 >= static_cast<uintptr_t>(t.n);
    }
    case kSyncLocal: return tensor(tX) && chan(aStats);
    case kSyncForward:
      return tensor(tX) && tensor(tY) && chan_opt(aGamma) && chan_opt(aBeta) && chan(aStats) && chan_opt(aRM) &&
             chan_opt(aRV) && chan_opt(aSM) && chan_opt(aSI) && eps_ok && c.momentum >= 0.0f && c.momentum <= 1.0f &&
             (c.ap[aRM] == nullptr) == (c.ap[aRV] == nullptr) && !partial(tX, tY);
    case kSyncSums: return tensor(tX) && tensor(tDY) && chan(aSM) && chan(aSums);
    case kSyncBackward:
      return tensor(tX) && tensor(tDY) && chan_opt(aGamma) && chan(aSM) && chan(aSI) && chan(aStats) && chan(aSums) &&
             tensor(tDX) && chan_opt(aDG) && chan_opt(aDB) && dx_ok();
    default: break;
  }
  // The per-sample norms.
  if (!layer_op(c.op) && (c.groups < 1 || t.c % c.groups != 0)) return false;
  if (per_sample_forward_op(c.op))
    return tensor(tX) && tensor(tY) && chan_opt(aGamma) && chan_opt(aBeta) && eps_ok && chan_opt(aSM) &&
           chan_opt(aSI) && !partial(tX, tY);
  return tensor(tX) && tensor(tDY) && chan_opt(aGamma) && (t.n == 0 || (chan(aSM) && chan(aSI))) && tensor(tDX) &&
         chan_opt(aDG) && chan_opt(aDB) && dx_ok();
}

void run_toolbox_op(FuzzedDataProvider& f, bnorm_handle_t cpu, Op op) {
  ToolCall c{};
  c.op = op;
  c.null_handle = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  c.null_desc = f.ConsumeIntegralInRange<int>(0, 15) == 0;
  Tensor& t = c.t;
  decode_tensor(f, t, c.desc);
  c.eps = fuzz_scalar(f, 1e-5f);
  c.momentum = fuzz_scalar(f, 0.1f);
  c.misalign = f.ConsumeBool() ? 1 : 2;
  if (op == kGroupFwd || op == kGroupBwd) {
    switch (f.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: c.groups = f.ConsumeIntegral<int64_t>(); break;
      case 1: c.groups = f.ConsumeIntegralInRange<int64_t>(-2, 9); break;
      default: c.groups = t.c >= 1 ? gcd64(t.c, f.ConsumeIntegralInRange<int64_t>(1, 8)) : 1;  // divides c
    }
  } else if (op == kInstanceFwd || op == kInstanceBwd) {
    c.groups = t.c;
  }
  if (op == kSyncMerge)
    c.ranks = f.ConsumeIntegralInRange<int>(0, 7) == 0 ? fuzz_dim(f) : f.ConsumeIntegralInRange<int64_t>(1, 4);

  // Sizes: every array from the descriptor when the call could be valid and is small
  // (then no size below overflows); else small buffers, for calls that must fail.
  if (op == kSyncMerge)
    c.sized = t.c >= 1 && c.ranks >= 1 && t.c <= kMaxElems && c.ranks <= kMaxElems / t.c;
  else
    c.sized = t.numel >= 0 && t.c * t.h * t.w <= kMaxElems && t.numel <= kMaxElems;
  const bool groups_ok = layer_op(op) || (c.groups >= 1 && t.c >= 1 && t.c % c.groups == 0);
  const bool sized = c.sized && (!per_sample_op(op) || groups_ok);
  const int64_t features = !sized ? kSmallBuffer : layer_op(op) ? t.c * t.h * t.w : t.c;
  const int64_t rows = !sized ? kSmallBuffer : layer_op(op) ? t.n : t.n * c.groups;
  const int64_t nc = sized ? t.c : kSmallBuffer, n_out = sized ? t.n : kSmallBuffer;
  const int64_t states = sized ? 3 * t.c : kSmallBuffer, sums = sized ? 2 * t.c : kSmallBuffer;
  const int64_t gathered = sized ? 3 * t.c * c.ranks : kSmallBuffer;
  const int64_t ne = sized ? std::max<int64_t>(t.numel, 1) : kSmallBuffer;

  const auto tensor = [&](int i, bool input, Choice ch) {
    c.used_t[i] = true;
    c.tb[i].make(ne);
    if (input) fill(f, c.tb[i], false);
    switch (ch.kind) {
      case kNull: c.tp[i] = nullptr; break;
      case kValid: c.tp[i] = c.tb[i].v.data(); break;
      case kMisaligned: c.tp[i] = reinterpret_cast<char*>(c.tb[i].v.data()) + c.misalign; break;
      case kAlias: c.tp[i] = c.tp[ch.target]; break;
      case kPartial: c.tp[i] = reinterpret_cast<char*>(c.tb[ch.target].v.data()) + 4; break;
    }
  };
  // An array: valid, NULL, misaligned, or (for the two that may not overlap another
  // array) that array's pointer or 4 bytes into its buffer.
  const auto array = [&](int i, int64_t n, bool input, bool positive, int other = -1) {
    c.used_a[i] = true;
    c.count_a[i] = n;
    c.ab[i].make(n);
    if (input) fill(f, c.ab[i], positive);
    const Choice ch = other < 0 ? fuzz_choice(f, {{kValid}, {kNull}, {kMisaligned}})
                                : fuzz_choice(f, {{kValid}, {kNull}, {kMisaligned}, {kAlias, other}, {kPartial, other}});
    switch (ch.kind) {
      case kNull: c.ap[i] = nullptr; break;
      case kValid: c.ap[i] = c.ab[i].v.data(); break;
      case kMisaligned: c.ap[i] = reinterpret_cast<float*>(reinterpret_cast<char*>(c.ab[i].v.data()) + c.misalign); break;
      case kAlias: c.ap[i] = c.ap[other]; break;
      case kPartial: c.ap[i] = reinterpret_cast<float*>(reinterpret_cast<char*>(c.ab[other].v.data()) + 4); break;
    }
  };
  const std::initializer_list<Choice> plain = {{kValid}, {kNull}, {kMisaligned}};
  const std::initializer_list<Choice> dx_choices = {{kValid}, {kNull}, {kMisaligned}, {kAlias, tDY},
                                                     {kPartial, tDY}, {kAlias, tX}, {kPartial, tX}};
  const std::initializer_list<Choice> y_choices = {{kValid}, {kNull}, {kMisaligned}, {kAlias, tX}, {kPartial, tX}};
  switch (op) {
    case kFrozen:
      tensor(tX, true, fuzz_choice(f, plain));
      tensor(tDY, true, fuzz_choice(f, plain));
      tensor(tDX, false, fuzz_choice(f, dx_choices));
      array(aGamma, nc, true, false);
      array(aRM, nc, true, false);
      array(aRV, nc, true, f.ConsumeBool());
      array(aDG, nc, false, false);
      array(aDB, nc, false, false);
      break;
    case kFold:  // weight in x, weight_out in y; C_out = n
      tensor(tX, true, fuzz_choice(f, plain));
      tensor(tY, false, fuzz_choice(f, y_choices));
      array(aBias, n_out, true, false);
      array(aGamma, n_out, true, false);
      array(aBeta, n_out, true, false);
      array(aRM, n_out, true, false);
      array(aRV, n_out, true, f.ConsumeBool());
      array(aBiasOut, n_out, false, false, aBias);
      break;
    case kSyncLocal:
      tensor(tX, true, fuzz_choice(f, plain));
      array(aStats, states, false, false);
      break;
    case kSyncMerge:
      array(aStats, gathered, true, f.ConsumeBool());  // gathered
      array(aGlobal, states, false, false, aStats);
      break;
    case kSyncForward:
      tensor(tX, true, fuzz_choice(f, plain));
      tensor(tY, false, fuzz_choice(f, y_choices));
      array(aGamma, nc, true, false);
      array(aBeta, nc, true, false);
      array(aStats, states, true, f.ConsumeBool());  // global_stats
      array(aRM, nc, true, false);
      array(aRV, nc, true, true);
      array(aSM, nc, false, false);
      array(aSI, nc, false, false);
      break;
    case kSyncSums:
      tensor(tX, true, fuzz_choice(f, plain));
      tensor(tDY, true, fuzz_choice(f, plain));
      array(aSM, nc, true, false);
      array(aSums, sums, false, false);
      break;
    case kSyncBackward:
      tensor(tX, true, fuzz_choice(f, plain));
      tensor(tDY, true, fuzz_choice(f, plain));
      tensor(tDX, false, fuzz_choice(f, dx_choices));
      array(aGamma, nc, true, false);
      array(aSM, nc, true, false);
      array(aSI, nc, true, true);
      array(aStats, states, true, f.ConsumeBool());  // global_stats
      array(aSums, sums, true, false);             // global_sums
      array(aDG, nc, false, false);
      array(aDB, nc, false, false);
      break;
    default:
      if (per_sample_forward_op(op)) {
        tensor(tX, true, fuzz_choice(f, plain));
        tensor(tY, false, fuzz_choice(f, y_choices));
        array(aGamma, features, true, false);
        array(aBeta, features, true, false);
        array(aSM, rows, false, false);
        array(aSI, rows, false, false);
      } else {
        tensor(tX, true, fuzz_choice(f, plain));
        tensor(tDY, true, fuzz_choice(f, plain));
        tensor(tDX, false, fuzz_choice(f, dx_choices));
        array(aGamma, features, true, false);
        array(aSM, rows, true, false);
        array(aSI, rows, true, true);
        array(aDG, features, false, false);
        array(aDB, features, false, false);
      }
  }

  const bool accepts = model_accepts_toolbox(c);
  if (accepts && !c.sized) return;  // the buffers would be too small to back it
  for (Buf& b : c.tb) b.snapshot();
  for (Buf& b : c.ab) b.snapshot();

  bnorm_handle_t h = c.null_handle ? nullptr : cpu;
  const bnorm_tensor_t* d = c.null_desc ? nullptr : &c.desc;
  void** tp = c.tp;
  float** ap = c.ap;
  bnorm_status_t s;
  switch (op) {
    case kFrozen:
      s = bnorm_backward_frozen(h, d, tp[tX], tp[tDY], ap[aGamma], ap[aRM], ap[aRV], c.eps, tp[tDX], ap[aDG], ap[aDB]);
      break;
    case kFold:
      s = bnorm_fold_into_weights(h, d, tp[tX], ap[aBias], ap[aGamma], ap[aBeta], ap[aRM], ap[aRV], c.eps, tp[tY],
                                  ap[aBiasOut]);
      break;
    case kSyncLocal: s = bnorm_sync_local_stats(h, d, tp[tX], ap[aStats]); break;
    case kSyncMerge: s = bnorm_sync_merge_stats(h, t.c, c.ranks, ap[aStats], ap[aGlobal]); break;
    case kSyncForward:
      s = bnorm_sync_forward(h, d, tp[tX], tp[tY], ap[aGamma], ap[aBeta], ap[aStats], c.momentum, c.eps, ap[aRM],
                             ap[aRV], ap[aSM], ap[aSI]);
      break;
    case kSyncSums: s = bnorm_sync_backward_sums(h, d, tp[tX], tp[tDY], ap[aSM], ap[aSums]); break;
    case kSyncBackward:
      s = bnorm_sync_backward(h, d, tp[tX], tp[tDY], ap[aGamma], ap[aSM], ap[aSI], ap[aStats], ap[aSums], tp[tDX],
                              ap[aDG], ap[aDB]);
      break;
    case kGroupFwd:
      s = bnorm_group_norm_forward(h, d, c.groups, tp[tX], tp[tY], ap[aGamma], ap[aBeta], c.eps, ap[aSM], ap[aSI]);
      break;
    case kGroupBwd:
      s = bnorm_group_norm_backward(h, d, c.groups, tp[tX], tp[tDY], ap[aGamma], ap[aSM], ap[aSI], tp[tDX], ap[aDG],
                                    ap[aDB]);
      break;
    case kInstanceFwd:
      s = bnorm_instance_norm_forward(h, d, tp[tX], tp[tY], ap[aGamma], ap[aBeta], c.eps, ap[aSM], ap[aSI]);
      break;
    case kInstanceBwd:
      s = bnorm_instance_norm_backward(h, d, tp[tX], tp[tDY], ap[aGamma], ap[aSM], ap[aSI], tp[tDX], ap[aDG], ap[aDB]);
      break;
    case kLayerFwd:
      s = bnorm_layer_norm_forward(h, d, tp[tX], tp[tY], ap[aGamma], ap[aBeta], c.eps, ap[aSM], ap[aSI]);
      break;
    default:
      s = bnorm_layer_norm_backward(h, d, tp[tX], tp[tDY], ap[aGamma], ap[aSM], ap[aSI], tp[tDX], ap[aDG], ap[aDB]);
      break;
  }

  if (!accepts) {
    FUZZ_CHECK(s == BNORM_STATUS_INVALID_VALUE, "op %d: a call the header rejects gave %s (%s)", op,
               bnorm_status_string(s), bnorm_last_error());
    FUZZ_CHECK(bnorm_last_error()[0] != '\0', "op %d: failed with an empty message", op);
    for (const Buf& b : c.tb) FUZZ_CHECK(b.unchanged(), "op %d: a failed call (%s) wrote", op, bnorm_last_error());
    for (const Buf& b : c.ab) FUZZ_CHECK(b.unchanged(), "op %d: a failed call (%s) wrote", op, bnorm_last_error());
    return;
  }
  FUZZ_CHECK(s == BNORM_STATUS_SUCCESS, "op %d: a valid call failed: %s: %s", op, bnorm_status_string(s),
             bnorm_last_error());

  // The outputs: a tensor (none, or y or dx) and arrays, with the elements each must
  // have written. Tensors are written only for n >= 1; the per-channel sums of an empty
  // batch are zeros, its per-sample statistics nothing.
  const bool forward_like = op == kFold || op == kSyncForward || per_sample_forward_op(op);
  const int tensor_out = op == kSyncLocal || op == kSyncSums || op == kSyncMerge ? -1 : forward_like ? tY : tDX;
  int64_t must_write[kArrays] = {};
  bool is_out[kArrays] = {};
  const auto out = [&](int i, int64_t n) {
    is_out[i] = true;
    must_write[i] = n;
  };
  switch (op) {
    case kFrozen: out(aDG, nc), out(aDB, nc); break;
    case kFold: out(aBiasOut, n_out); break;
    case kSyncLocal: out(aStats, states); break;
    case kSyncMerge: out(aGlobal, states); break;
    case kSyncForward: out(aSM, nc), out(aSI, nc), out(aRM, 0), out(aRV, 0); break;  // running: where count >= 2
    case kSyncSums: out(aSums, sums); break;
    case kSyncBackward: out(aDG, nc), out(aDB, nc); break;
    default:
      if (per_sample_forward_op(op)) out(aSM, rows), out(aSI, rows);
      else out(aDG, features), out(aDB, features);
  }
  bool hosts_output[kTensors] = {};
  if (tensor_out >= 0 && tp[tensor_out])
    for (int i = 0; i < kTensors; ++i) hosts_output[i] = c.tb[i].contains(tp[tensor_out]);
  for (int i = 0; i < kTensors; ++i)
    if (c.used_t[i] && !hosts_output[i]) FUZZ_CHECK(c.tb[i].unchanged(), "op %d: input tensor %d changed", op, i);
  if (tensor_out >= 0 && tp[tensor_out] == c.tb[tensor_out].v.data())  // alone in its buffer
    FUZZ_CHECK(c.tb[tensor_out].unchanged_from(static_cast<size_t>(t.numel * t.elem())),
               "op %d: written past the end of the tensor output", op);
  if (tensor_out >= 0 && t.dtype == BNORM_DTYPE_F32)
    expect_written(static_cast<const float*>(tp[tensor_out]), t.numel, "a tensor output");
  for (int i = 0; i < kArrays; ++i) {
    if (!c.used_a[i]) continue;
    // An output in another array's buffer (bias_out on bias): that buffer is its own.
    bool hosts = false;
    for (int o = 0; o < kArrays; ++o) hosts = hosts || (is_out[o] && o != i && ap[o] && c.ab[i].contains(ap[o]));
    if (hosts) continue;
    if (!is_out[i]) FUZZ_CHECK(c.ab[i].unchanged(), "op %d: input array %d changed", op, i);
    else FUZZ_CHECK(c.ab[i].unchanged_from(static_cast<size_t>(c.count_a[i]) * sizeof(float)),
                    "op %d: written past the end of output array %d", op, i);
  }
  for (int i = 0; i < kArrays; ++i)
    if (is_out[i] && ap[i]) expect_written(ap[i], must_write[i], "an output array");
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
  const int op = fuzz_enum(f, BNORM_OP_SYNC_BACKWARD + 1);
  const bool op_ok = op >= 0 && op <= BNORM_OP_SYNC_BACKWARD;
  // The plain queries refuse the group-norm operations (their choice needs the group
  // count: bnorm_query_variant_grouped).
  const bool query_op_ok = op_ok && op != BNORM_OP_GROUP_NORM_FORWARD && op != BNORM_OP_GROUP_NORM_BACKWARD;
  bnorm_tensor_t d{};
  d.n = fuzz_dim(f);
  d.c = fuzz_dim(f);
  d.h = fuzz_dim(f);
  d.w = fuzz_dim(f);
  const int layout = fuzz_enum(f, 2), dtype = f.ConsumeIntegralInRange<int>(0, 7) == 0 ? fuzz_enum(f, 3) : 0;
  c_caller_set_enums(&d, layout, dtype);
  const int64_t dims[4] = {d.n, d.c, d.h, d.w};
  const bool desc_ok = model_numel(dims) > 0 && (layout == 0 || layout == 1) && dtype >= 0 && dtype <= 2;
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

  // set_variant with a fuzzed spec: a CPU handle accepts only its two variants.
  std::string spec = f.ConsumeRandomLengthString(48);
  const bool null_spec = f.ConsumeIntegralInRange<int>(0, 7) == 0;
  bnorm_status_t s = c_caller_set_variant(h, op, null_spec ? nullptr : spec.c_str());
  if (!op_ok) FUZZ_CHECK(s == BNORM_STATUS_INVALID_VALUE, "set_variant accepted op %d", op);
  if (op_ok && null_spec) FUZZ_CHECK(s == BNORM_STATUS_SUCCESS, "set_variant(NULL) failed: %s", bnorm_last_error());
  if (op_ok && !null_spec && !cuda)
    FUZZ_CHECK((s == BNORM_STATUS_SUCCESS) ==
                   (std::strcmp(spec.c_str(), "cpu_reference") == 0 || std::strcmp(spec.c_str(), "cpu_fast") == 0),
               "CPU set_variant('%s') gave %s", spec.c_str(), bnorm_status_string(s));  // up to a NUL
  if (s != BNORM_STATUS_SUCCESS) FUZZ_CHECK(bnorm_last_error()[0] != '\0', "set_variant failed with no message");

  // query_variant into a buffer of a fuzzed size.
  const size_t len = f.ConsumeIntegralInRange<size_t>(0, 72);
  Bytes buf(len);
  const Bytes untouched = buf;
  int why = 77;  // not a bnorm_choice_t: only the library may store one there
  s = c_caller_query_variant(h, op, &d, aligned, buf.data(), len, reinterpret_cast<bnorm_choice_t*>(&why));
  if (s == BNORM_STATUS_SUCCESS) {
    FUZZ_CHECK(query_op_ok && desc_ok && len > 0, "query_variant succeeded on a bad call");
    FUZZ_CHECK(nul_terminated(buf), "query_variant: no NUL within %zu bytes", len);
    if (!cuda)  // what fits of the name, the oracle only when forced
      FUZZ_CHECK((std::string("cpu_reference").rfind(buf.v.data(), 0) == 0 && why == static_cast<int>(BNORM_CHOICE_OVERRIDE)) ||
                     (std::string("cpu_fast").rfind(buf.v.data(), 0) == 0 &&
                      (why == static_cast<int>(BNORM_CHOICE_HEURISTIC) || why == static_cast<int>(BNORM_CHOICE_OVERRIDE))),
                 "CPU query_variant gave '%s' (%d)", buf.v.data(), why);
  } else {
    FUZZ_CHECK(!(query_op_ok && desc_ok && len > 0) || cuda, "CPU query_variant failed on a good call: %s",
               bnorm_last_error());
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
    if (!cuda) FUZZ_CHECK(!(query_op_ok && desc_ok), "CPU list_variants failed on a good call: %s", bnorm_last_error());
    return;
  }
  FUZZ_CHECK(query_op_ok && desc_ok, "list_variants succeeded on a bad call");
  FUZZ_CHECK(count >= 0 && needed >= 1, "list_variants: count %d, needed %zu", count, needed);
  if (len2 > 0) FUZZ_CHECK(nul_terminated(small), "list_variants: no NUL within %zu bytes", len2);
  if (!cuda)
    FUZZ_CHECK(count == 2 && needed == sizeof("cpu_fast\ncpu_reference\n"), "CPU list_variants: %d, %zu", count, needed);
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
  } else if (op >= kFrozen) {
    run_toolbox_op(f, cpu, op);
  } else {
    run_tensor_op(f, cpu, op);
  }
  return 0;
}
