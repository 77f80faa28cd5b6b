// Every kind of bad call of batch norm's calls and of the toolbox's (frozen, folded,
// synchronized, per-sample norms), for any backend: each must return its status with a
// message naming the culprit, and write nothing. The calls receive the pointers of one
// call's worth of buffers in the backend's memory (host or device); the test around them
// fills every buffer (call_buffer_images), makes the call, and checks that every byte of
// every buffer, inputs included, is what it was. valid_calls() are the calls the bad
// ones are edits of: they must succeed and write exactly their outputs, so that each bad
// call fails for the one thing its edit broke.
#pragma once

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "c_caller.h"
#include "reference.hpp"

namespace bnorm_test {

// Writes any int into an enum field, as a C caller may, without C++ ever holding the
// out-of-range value as the enum (which would be undefined behaviour in the test).
template <class E>
void set_raw(E& field, int value) {
  static_assert(sizeof(E) == sizeof(int), "a C enum is an int");
  std::memcpy(&field, &value, sizeof value);
}

// The buffers of one call: d (float32) describes x, y, dy, dx, z, dz; scratch holds
// 2 * numel floats (for aliases and partial overlaps); every other array holds
// small_floats(d) floats, enough for any per-channel, per-sample or per-value use
// (layer norm's gamma, group norm's saved statistics, two ranks' Welford states, fold's
// C_out = n). The test fills inputs with data and outputs with a sentinel, and expects
// every one of them back unchanged, scratch included.
struct CallBuffers {
  bnorm_tensor_t d;
  float *x, *y, *dy, *dx;
  float *gamma, *beta, *rm, *rv, *sm, *si, *dg, *db;
  float* scratch;
  float *z, *dz;
  float* stats;  // input: two ranks' Welford states (3*c floats each), valid as gathered or global
  float* sums;   // input: all-reduced backward sums (2*c floats)
  float* out;    // output: local_stats, local_sums, global_stats, bias_out
};

constexpr float kSentinel = 12345.678f;

inline int64_t small_floats(const bnorm_tensor_t& d) {
  return std::max({6 * d.c, d.n * d.c, d.c * d.h * d.w, d.n});
}

// A buffer of one call as the test fills it, in CallBuffers' order.
struct BufferImage {
  const char* name;
  std::vector<float> values;
};

inline std::vector<BufferImage> call_buffer_images(const bnorm_tensor_t& d) {
  const int64_t n = numel(d), k = small_floats(d);
  const std::vector<float> out(n, kSentinel), out_k(k, kSentinel);
  std::vector<float> stats(k, 0.0f);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t ch = 0; ch < d.c; ++ch) {
      float* s = &stats[3 * (r * d.c + ch)];
      s[0] = static_cast<float>(10 + 3 * r + ch);  // count
      s[1] = 0.25f * static_cast<float>(ch) - 0.5f * static_cast<float>(r);
      s[2] = 2.0f + static_cast<float>(ch);  // M2 >= 0
    }
  return {{"x", random_tensor(d, 1)},
          {"y", out},
          {"dy", random_tensor(d, 2)},
          {"dx", out},
          {"gamma", random_vector(k, 3, 0.5, 1.5)},
          {"beta", random_vector(k, 4, -1, 1)},
          {"running_mean", out_k},
          {"running_var", out_k},
          {"save_mean", random_vector(k, 5, -1, 1)},
          {"save_invstd", random_vector(k, 6, 0.5, 2)},
          {"dgamma", out_k},
          {"dbeta", out_k},
          {"scratch", random_vector(2 * n, 7, -1, 1)},
          {"z", random_tensor(d, 8)},
          {"dz", out},
          {"stats", stats},
          {"sums", random_vector(k, 9, -1, 1)},
          {"out", out_k}};
}

// p: the buffers of call_buffer_images(d), in its order, in the backend's memory.
inline CallBuffers call_buffers(const bnorm_tensor_t& d, const std::vector<float*>& p) {
  return {d,     p[0],  p[1],  p[2],  p[3],  p[4],  p[5],  p[6],  p[7], p[8],
          p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16], p[17]};
}

struct BadCall {
  std::string what;
  bnorm_status_t expected;
  const char* mentions;  // the message must contain this
  std::function<bnorm_status_t(bnorm_handle_t, const CallBuffers&)> call;
};

inline const float* misaligned(const float* p) {
  return reinterpret_cast<const float*>(reinterpret_cast<const char*>(p) + 2);
}
inline float* misaligned(float* p) { return reinterpret_cast<float*>(reinterpret_cast<char*>(p) + 1); }

// A valid call of each op on b, with one argument replaced by the caller.
struct TrainArgs {
  const bnorm_tensor_t* d;
  const void* x;
  void* y;
  const float *gamma, *beta;
  float momentum, eps;
  float *rm, *rv, *sm, *si;
};
inline TrainArgs train_args(const CallBuffers& b) {
  return {&b.d, b.x, b.y, b.gamma, b.beta, 0.1f, 1e-5f, b.rm, b.rv, b.sm, b.si};
}
inline bnorm_status_t train(bnorm_handle_t h, const TrainArgs& a) {
  return bnorm_forward_training(h, a.d, a.x, a.y, a.gamma, a.beta, a.momentum, a.eps, a.rm, a.rv, a.sm, a.si);
}

struct InferArgs {
  const bnorm_tensor_t* d;
  const void* x;
  void* y;
  const float *gamma, *beta, *rm, *rv;
  float eps;
};
inline InferArgs infer_args(const CallBuffers& b) { return {&b.d, b.x, b.y, b.gamma, b.beta, b.rm, b.rv, 1e-5f}; }
inline bnorm_status_t infer(bnorm_handle_t h, const InferArgs& a) {
  return bnorm_forward_inference(h, a.d, a.x, a.y, a.gamma, a.beta, a.rm, a.rv, a.eps);
}

struct BackArgs {
  const bnorm_tensor_t* d;
  const void *x, *dy;
  const float *gamma, *sm, *si;
  void* dx;
  float *dg, *db;
};
inline BackArgs back_args(const CallBuffers& b) { return {&b.d, b.x, b.dy, b.gamma, b.sm, b.si, b.dx, b.dg, b.db}; }
inline bnorm_status_t back(bnorm_handle_t h, const BackArgs& a) {
  return bnorm_backward(h, a.d, a.x, a.dy, a.gamma, a.sm, a.si, a.dx, a.dg, a.db);
}

// The toolbox's calls, valid on a CallBuffers, with one argument replaced by the caller.
struct FrozenArgs {
  const bnorm_tensor_t* d;
  const void *x, *dy;
  const float *gamma, *rm, *rv;
  float eps;
  void* dx;
  float *dg, *db;
  static FrozenArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) {
    return {d, b.x, b.dy, b.gamma, b.rm, b.rv, 1e-5f, b.dx, b.dg, b.db};
  }
  bnorm_status_t call(bnorm_handle_t h) const {
    return bnorm_backward_frozen(h, d, x, dy, gamma, rm, rv, eps, dx, dg, db);
  }
};

// The weights are a tensor of d's shape: C_out = d.n output channels of K = c*h*w each.
struct FoldArgs {
  const bnorm_tensor_t* d;
  const void* w;
  const float *bias, *gamma, *beta, *rm, *rv;
  float eps;
  void* w_out;
  float* bias_out;
  static FoldArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) {
    return {d, b.x, b.sums, b.gamma, b.beta, b.rm, b.rv, 1e-5f, b.y, b.out};
  }
  bnorm_status_t call(bnorm_handle_t h) const {
    return bnorm_fold_into_weights(h, d, w, bias, gamma, beta, rm, rv, eps, w_out, bias_out);
  }
};

struct LocalStatsArgs {
  const bnorm_tensor_t* d;
  const void* x;
  float* local;
  static LocalStatsArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) { return {d, b.x, b.out}; }
  bnorm_status_t call(bnorm_handle_t h) const { return bnorm_sync_local_stats(h, d, x, local); }
};

// Takes c from the descriptor copy the edit may change, and no tensor.
struct MergeArgs {
  const bnorm_tensor_t* d;
  int64_t ranks;
  const float* gathered;
  float* global;
  static MergeArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) { return {d, 2, b.stats, b.out}; }
  bnorm_status_t call(bnorm_handle_t h) const { return bnorm_sync_merge_stats(h, d->c, ranks, gathered, global); }
};

// The saved statistics go to dgamma and dbeta: outputs, filled with the sentinel.
struct SyncForwardArgs {
  const bnorm_tensor_t* d;
  const void* x;
  void* y;
  const float *gamma, *beta, *global;
  float momentum, eps;
  float *rm, *rv, *sm, *si;
  static SyncForwardArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) {
    return {d, b.x, b.y, b.gamma, b.beta, b.stats, 0.1f, 1e-5f, b.rm, b.rv, b.dg, b.db};
  }
  bnorm_status_t call(bnorm_handle_t h) const {
    return bnorm_sync_forward(h, d, x, y, gamma, beta, global, momentum, eps, rm, rv, sm, si);
  }
};

struct SyncSumsArgs {
  const bnorm_tensor_t* d;
  const void *x, *dy;
  const float* sm;
  float* local;
  static SyncSumsArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) { return {d, b.x, b.dy, b.sm, b.out}; }
  bnorm_status_t call(bnorm_handle_t h) const { return bnorm_sync_backward_sums(h, d, x, dy, sm, local); }
};

struct SyncBackwardArgs {
  const bnorm_tensor_t* d;
  const void *x, *dy;
  const float *gamma, *sm, *si, *global, *sums;
  void* dx;
  float *dg, *db;
  static SyncBackwardArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) {
    return {d, b.x, b.dy, b.gamma, b.sm, b.si, b.stats, b.sums, b.dx, b.dg, b.db};
  }
  bnorm_status_t call(bnorm_handle_t h) const {
    return bnorm_sync_backward(h, d, x, dy, gamma, sm, si, global, sums, dx, dg, db);
  }
};

// The per-sample norms, one struct per direction for the three of them.
enum SampleNorm { kGroupNorm, kInstanceNorm, kLayerNorm };
inline const char* sample_norm_name(SampleNorm k) {
  return k == kGroupNorm ? "group norm" : k == kInstanceNorm ? "instance norm" : "layer norm";
}

// The saved statistics go to dgamma and dbeta, as in SyncForwardArgs.
struct SampleForwardArgs {
  SampleNorm kind;
  int64_t groups;  // group norm's: d.c / 2 channels of two
  const bnorm_tensor_t* d;
  const void* x;
  void* y;
  const float *gamma, *beta;
  float eps;
  float *sm, *si;
  static SampleForwardArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) {
    return {kGroupNorm, b.d.c / 2, d, b.x, b.y, b.gamma, b.beta, 1e-5f, b.dg, b.db};
  }
  bnorm_status_t call(bnorm_handle_t h) const {
    switch (kind) {
      case kGroupNorm: return bnorm_group_norm_forward(h, d, groups, x, y, gamma, beta, eps, sm, si);
      case kInstanceNorm: return bnorm_instance_norm_forward(h, d, x, y, gamma, beta, eps, sm, si);
      default: return bnorm_layer_norm_forward(h, d, x, y, gamma, beta, eps, sm, si);
    }
  }
};

struct SampleBackwardArgs {
  SampleNorm kind;
  int64_t groups;
  const bnorm_tensor_t* d;
  const void *x, *dy;
  const float *gamma, *sm, *si;
  void* dx;
  float *dg, *db;
  static SampleBackwardArgs valid(const CallBuffers& b, const bnorm_tensor_t* d) {
    return {kGroupNorm, b.d.c / 2, d, b.x, b.dy, b.gamma, b.sm, b.si, b.dx, b.dg, b.db};
  }
  bnorm_status_t call(bnorm_handle_t h) const {
    switch (kind) {
      case kGroupNorm: return bnorm_group_norm_backward(h, d, groups, x, dy, gamma, sm, si, dx, dg, db);
      case kInstanceNorm: return bnorm_instance_norm_backward(h, d, x, dy, gamma, sm, si, dx, dg, db);
      default: return bnorm_layer_norm_backward(h, d, x, dy, gamma, sm, si, dx, dg, db);
    }
  }
};

template <class A>
using EditOf = std::function<void(A&, bnorm_tensor_t&, const CallBuffers&)>;

// A's valid call with one edit; the descriptor is a copy the edit may change.
template <class A>
void add_bad(std::vector<BadCall>& out, std::string what, const char* mentions, EditOf<A> edit,
             bnorm_status_t expected = BNORM_STATUS_INVALID_VALUE) {
  out.push_back({std::move(what), expected, mentions, [edit](bnorm_handle_t h, const CallBuffers& b) {
                   bnorm_tensor_t d = b.d;
                   A a = A::valid(b, &d);
                   edit(a, d, b);
                   return a.call(h);
                 }});
}

// The descriptor checks every toolbox call with a tensor shares (check_desc).
template <class A>
void add_bad_descs(std::vector<BadCall>& out, const std::string& op, const EditOf<A>& pre = nullptr) {
  using D = bnorm_tensor_t;
  using B = CallBuffers;
  const auto add = [&](const char* what, const char* mentions, EditOf<A> edit) {
    add_bad<A>(out, op + ": " + what, mentions, [pre, edit](A& a, D& d, const B& b) {
      if (pre) pre(a, d, b);
      edit(a, d, b);
    });
  };
  add("null handle", "handle", [](A&, D&, const B&) {});  // made on a null handle below
  out.back().call = [inner = out.back().call](bnorm_handle_t, const B& b) { return inner(nullptr, b); };
  add("null desc", "desc", [](A& a, D&, const B&) { a.d = nullptr; });
  add("n = -1", "desc->n", [](A&, D& d, const B&) { d.n = -1; });
  add("c = 0", "desc->c", [](A&, D& d, const B&) { d.c = 0; });
  add("h < 0", "desc->h", [](A&, D& d, const B&) { d.h = -2; });
  add("w = INT64_MIN", "desc->w", [](A&, D& d, const B&) { d.w = INT64_MIN; });
  add("n*c*h*w = 2^80", "overflow", [](A&, D& d, const B&) { d.n = d.c = d.h = d.w = int64_t{1} << 20; });
  add("c*h*w overflows, n = 0", "overflow", [](A&, D& d, const B&) {
    d.n = 0;
    d.c = d.h = int64_t{1} << 32;
  });
  add("layout 2", "layout", [](A&, D& d, const B&) { set_raw(d.layout, 2); });
  add("layout -1", "layout", [](A&, D& d, const B&) { set_raw(d.layout, -1); });
  add("dtype 3", "dtype", [](A&, D& d, const B&) { set_raw(d.dtype, 3); });
  add("dtype INT_MIN", "dtype", [](A&, D& d, const B&) { set_raw(d.dtype, std::numeric_limits<int>::min()); });
}

template <class A>
void add_bad_eps(std::vector<BadCall>& out, const std::string& op, const EditOf<A>& pre = nullptr) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (float e : {0.0f, -0.0f, -1e-5f, nan, inf, -inf})
    add_bad<A>(out, op + ": eps = " + std::to_string(e), "eps",
               [pre, e](A& a, bnorm_tensor_t& d, const CallBuffers& b) {
                 if (pre) pre(a, d, b);
                 a.eps = e;
               });
}

inline void add_toolbox_bad_calls(std::vector<BadCall>& out) {
  using D = bnorm_tensor_t;
  using B = CallBuffers;
  const float nan = std::numeric_limits<float>::quiet_NaN();

  // ---- frozen backward ----
  {
    using A = FrozenArgs;
    const std::string op = "backward frozen";
    const auto add = [&](const char* what, const char* mentions, EditOf<A> edit) {
      add_bad<A>(out, op + ": " + what, mentions, edit);
    };
    add_bad_descs<A>(out, op);
    add_bad_eps<A>(out, op);
    add("null x with dgamma", "x is NULL", [](A& a, D&, const B&) { a.x = nullptr; });
    add("null x with dbeta only", "x is NULL", [](A& a, D&, const B&) {
      a.x = nullptr;
      a.dg = nullptr;
    });
    add("f16 x misaligned", "x is not aligned", [](A& a, D& d, const B& b) {
      d.dtype = BNORM_DTYPE_F16;
      a.x = misaligned(b.x);
    });
    add("null dy", "dy is NULL", [](A& a, D&, const B&) { a.dy = nullptr; });
    add("dy misaligned", "dy is not aligned", [](A& a, D&, const B& b) { a.dy = misaligned(b.dy); });
    add("gamma misaligned", "gamma is not aligned", [](A& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
    add("null running_mean", "running_mean is NULL", [](A& a, D&, const B&) { a.rm = nullptr; });
    add("null running_var", "running_var is NULL", [](A& a, D&, const B&) { a.rv = nullptr; });
    add("running_mean misaligned", "running_mean is not aligned", [](A& a, D&, const B& b) { a.rm = misaligned(b.rm); });
    add("running_var misaligned", "running_var is not aligned", [](A& a, D&, const B& b) { a.rv = misaligned(b.rv); });
    add("null dx", "dx is NULL", [](A& a, D&, const B&) { a.dx = nullptr; });
    add("dx misaligned", "dx is not aligned", [](A& a, D&, const B& b) { a.dx = misaligned(b.dx); });
    add("dgamma misaligned", "dgamma is not aligned", [](A& a, D&, const B& b) { a.dg = misaligned(b.dg); });
    add("dbeta misaligned", "dbeta is not aligned", [](A& a, D&, const B& b) { a.db = misaligned(b.db); });
    add("dx aliases x", "alias", [](A& a, D&, const B& b) { a.x = a.dx = b.scratch; });
    add("dx aliases x, no dgamma or dbeta", "alias", [](A& a, D&, const B& b) {
      a.x = a.dx = b.scratch;
      a.dg = a.db = nullptr;
    });
    add("dx partly overlaps x", "overlap", [](A& a, D&, const B& b) {
      a.x = b.scratch + 1;
      a.dx = b.scratch;
    });
    add("dx partly overlaps dy", "overlap", [](A& a, D&, const B& b) {
      a.dy = b.scratch;
      a.dx = b.scratch + 2;
    });
    // What a call writes overlaps nothing else it reads or writes.
    add("dgamma inside dy", "dgamma and dy overlap", [](A& a, D&, const B& b) { a.dg = b.dy + 3; });
    add("dbeta is dgamma", "dgamma and dbeta overlap", [](A& a, D&, const B&) { a.db = a.dg; });
    add("running_var inside dx", "dx and running_var overlap", [](A& a, D&, const B& b) { a.rv = b.dx + 1; });
  }

  // ---- fold into weights ----
  {
    using A = FoldArgs;
    const std::string op = "fold";
    const auto add = [&](const char* what, const char* mentions, EditOf<A> edit) {
      add_bad<A>(out, op + ": " + what, mentions, edit);
    };
    add_bad_descs<A>(out, op);
    add_bad_eps<A>(out, op);
    add("null weight", "weight is NULL", [](A& a, D&, const B&) { a.w = nullptr; });
    add("bf16 weight misaligned", "weight is not aligned", [](A& a, D& d, const B& b) {
      d.dtype = BNORM_DTYPE_BF16;
      a.w = misaligned(b.x);
    });
    add("bias misaligned", "bias is not aligned", [](A& a, D&, const B& b) { a.bias = misaligned(b.sums); });
    add("gamma misaligned", "gamma is not aligned", [](A& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
    add("beta misaligned", "beta is not aligned", [](A& a, D&, const B& b) { a.beta = misaligned(b.beta); });
    add("null running_mean", "running_mean is NULL", [](A& a, D&, const B&) { a.rm = nullptr; });
    add("null running_var", "running_var is NULL", [](A& a, D&, const B&) { a.rv = nullptr; });
    add("running_var misaligned", "running_var is not aligned", [](A& a, D&, const B& b) { a.rv = misaligned(b.rv); });
    add("null weight_out", "weight_out is NULL", [](A& a, D&, const B&) { a.w_out = nullptr; });
    add("weight_out misaligned", "weight_out is not aligned", [](A& a, D&, const B& b) { a.w_out = misaligned(b.y); });
    add("null bias_out", "bias_out is NULL", [](A& a, D&, const B&) { a.bias_out = nullptr; });
    add("bias_out misaligned", "bias_out is not aligned", [](A& a, D&, const B& b) { a.bias_out = misaligned(b.out); });
    add("weight_out partly overlaps weight", "overlap", [](A& a, D&, const B& b) {
      a.w = b.scratch;
      a.w_out = b.scratch + 1;
    });
    add("bias_out partly overlaps bias", "overlap", [](A& a, D& d, const B& b) {
      a.bias = b.scratch + d.n - 1;
      a.bias_out = b.scratch;
    });
    add("bias_out inside weight_out", "bias_out and weight_out overlap",
        [](A& a, D&, const B& b) { a.bias_out = b.y + 2; });
    add("gamma inside weight_out", "weight_out and gamma overlap", [](A& a, D&, const B& b) { a.gamma = b.y; });
    add("bias_out is running_var", "bias_out and running_var overlap", [](A& a, D&, const B& b) { a.bias_out = b.rv; });
  }

  // ---- synchronized batch norm ----
  {
    using A = LocalStatsArgs;
    const std::string op = "sync local stats";
    add_bad_descs<A>(out, op);
    add_bad<A>(out, op + ": null x", "x is NULL", [](A& a, D&, const B&) { a.x = nullptr; });
    add_bad<A>(out, op + ": x misaligned", "x is not aligned", [](A& a, D&, const B& b) { a.x = misaligned(b.x); });
    add_bad<A>(out, op + ": null local_stats", "local_stats is NULL", [](A& a, D&, const B&) { a.local = nullptr; });
    add_bad<A>(out, op + ": local_stats misaligned", "local_stats is not aligned",
               [](A& a, D&, const B& b) { a.local = misaligned(b.out); });
    add_bad<A>(out, op + ": local_stats inside x", "local_stats and x overlap",
               [](A& a, D&, const B& b) { a.local = b.x + 4; });
  }
  {
    using A = MergeArgs;
    const std::string op = "sync merge stats";
    const auto add = [&](const char* what, const char* mentions, EditOf<A> edit) {
      add_bad<A>(out, op + ": " + what, mentions, edit);
    };
    add("null handle", "handle", [](A&, D&, const B&) {});
    out.back().call = [inner = out.back().call](bnorm_handle_t, const B& b) { return inner(nullptr, b); };
    add("c = 0", "c = 0", [](A&, D& d, const B&) { d.c = 0; });
    add("c = INT64_MIN", "c = ", [](A&, D& d, const B&) { d.c = INT64_MIN; });
    add("ranks = 0", "ranks = 0", [](A& a, D&, const B&) { a.ranks = 0; });
    add("ranks = -1", "ranks = -1", [](A& a, D&, const B&) { a.ranks = -1; });
    add("ranks * c = 2^41", "overflows", [](A& a, D& d, const B&) {
      d.c = int64_t{1} << 40;
      a.ranks = 2;
    });
    add("ranks = INT64_MAX", "overflows", [](A& a, D&, const B&) { a.ranks = INT64_MAX; });
    add("c = INT64_MAX", "overflows", [](A& a, D& d, const B&) {
      d.c = INT64_MAX;
      a.ranks = 1;
    });
    add("null gathered", "gathered is NULL", [](A& a, D&, const B&) { a.gathered = nullptr; });
    add("gathered misaligned", "gathered is not aligned", [](A& a, D&, const B& b) { a.gathered = misaligned(b.stats); });
    add("null global_stats", "global_stats is NULL", [](A& a, D&, const B&) { a.global = nullptr; });
    add("global_stats misaligned", "global_stats is not aligned",
        [](A& a, D&, const B& b) { a.global = misaligned(b.out); });
    add("global_stats overlaps gathered's last float", "overlap", [](A& a, D& d, const B& b) {
      a.gathered = b.scratch;
      a.global = b.scratch + 3 * d.c * a.ranks - 1;
    });
    add("gathered starts in global_stats' last float", "overlap", [](A& a, D& d, const B& b) {
      a.global = b.scratch;
      a.gathered = b.scratch + 3 * d.c - 1;
    });
    add("global_stats is gathered", "overlap", [](A& a, D&, const B& b) { a.gathered = a.global = b.scratch; });
  }
  {
    using A = SyncForwardArgs;
    const std::string op = "sync forward";
    const auto add = [&](const char* what, const char* mentions, EditOf<A> edit) {
      add_bad<A>(out, op + ": " + what, mentions, edit);
    };
    add_bad_descs<A>(out, op);
    add_bad_eps<A>(out, op);
    for (float m : {-0.1f, 1.5f, nan, std::numeric_limits<float>::infinity()})
      add_bad<A>(out, op + ": momentum = " + std::to_string(m), "momentum",
                 [m](A& a, D&, const B&) { a.momentum = m; });
    add("null x", "x is NULL", [](A& a, D&, const B&) { a.x = nullptr; });
    add("x misaligned", "x is not aligned", [](A& a, D&, const B& b) { a.x = misaligned(b.x); });
    add("null y", "y is NULL", [](A& a, D&, const B&) { a.y = nullptr; });
    add("f16 y misaligned", "y is not aligned", [](A& a, D& d, const B& b) {
      d.dtype = BNORM_DTYPE_F16;
      a.y = misaligned(b.y);
    });
    add("gamma misaligned", "gamma is not aligned", [](A& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
    add("beta misaligned", "beta is not aligned", [](A& a, D&, const B& b) { a.beta = misaligned(b.beta); });
    add("null global_stats", "global_stats is NULL", [](A& a, D&, const B&) { a.global = nullptr; });
    add("global_stats misaligned", "global_stats is not aligned",
        [](A& a, D&, const B& b) { a.global = misaligned(b.stats); });
    add("running_mean misaligned", "running_mean is not aligned", [](A& a, D&, const B& b) { a.rm = misaligned(b.rm); });
    add("running_var misaligned", "running_var is not aligned", [](A& a, D&, const B& b) { a.rv = misaligned(b.rv); });
    add("save_mean misaligned", "save_mean is not aligned", [](A& a, D&, const B& b) { a.sm = misaligned(b.dg); });
    add("save_invstd misaligned", "save_invstd is not aligned", [](A& a, D&, const B& b) { a.si = misaligned(b.db); });
    add("running_mean without running_var", "running_var", [](A& a, D&, const B&) { a.rv = nullptr; });
    add("running_var without running_mean", "running_mean", [](A& a, D&, const B&) { a.rm = nullptr; });
    add("y partly overlaps x", "overlap", [](A& a, D&, const B& b) {
      a.x = b.scratch;
      a.y = b.scratch + 1;
    });
    add("y partly overlaps x, n = 1", "overlap", [](A& a, D& d, const B& b) {
      d.n = 1;
      a.x = b.scratch + d.c * d.h * d.w - 1;
      a.y = b.scratch;
    });
    add("save_mean inside y", "save_mean and y overlap", [](A& a, D&, const B& b) { a.sm = b.y + 1; });
    add("save_invstd is running_var", "running_var and save_invstd overlap", [](A& a, D&, const B&) { a.si = a.rv; });
    add("global_stats inside y", "y and global_stats overlap", [](A& a, D&, const B& b) { a.global = b.y + 2; });
  }
  {
    using A = SyncSumsArgs;
    const std::string op = "sync backward sums";
    const auto add = [&](const char* what, const char* mentions, EditOf<A> edit) {
      add_bad<A>(out, op + ": " + what, mentions, edit);
    };
    add_bad_descs<A>(out, op);
    add("null x", "x is NULL", [](A& a, D&, const B&) { a.x = nullptr; });
    add("bf16 x misaligned", "x is not aligned", [](A& a, D& d, const B& b) {
      d.dtype = BNORM_DTYPE_BF16;
      a.x = misaligned(b.x);
    });
    add("null dy", "dy is NULL", [](A& a, D&, const B&) { a.dy = nullptr; });
    add("dy misaligned", "dy is not aligned", [](A& a, D&, const B& b) { a.dy = misaligned(b.dy); });
    add("null save_mean", "save_mean is NULL", [](A& a, D&, const B&) { a.sm = nullptr; });
    add("save_mean misaligned", "save_mean is not aligned", [](A& a, D&, const B& b) { a.sm = misaligned(b.sm); });
    add("null local_sums", "local_sums is NULL", [](A& a, D&, const B&) { a.local = nullptr; });
    add("local_sums misaligned", "local_sums is not aligned", [](A& a, D&, const B& b) { a.local = misaligned(b.out); });
    add("local_sums inside dy", "local_sums and dy overlap", [](A& a, D&, const B& b) { a.local = b.dy + 8; });
    add("save_mean inside local_sums", "local_sums and save_mean overlap",
        [](A& a, D&, const B& b) { a.sm = b.out + 1; });
  }
  {
    using A = SyncBackwardArgs;
    const std::string op = "sync backward";
    const auto add = [&](const char* what, const char* mentions, EditOf<A> edit) {
      add_bad<A>(out, op + ": " + what, mentions, edit);
    };
    add_bad_descs<A>(out, op);
    add("null x", "x is NULL", [](A& a, D&, const B&) { a.x = nullptr; });
    add("null dy", "dy is NULL", [](A& a, D&, const B&) { a.dy = nullptr; });
    add("f16 dy misaligned", "dy is not aligned", [](A& a, D& d, const B& b) {
      d.dtype = BNORM_DTYPE_F16;
      a.dy = misaligned(b.dy);
    });
    add("gamma misaligned", "gamma is not aligned", [](A& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
    add("null save_mean", "save_mean is NULL", [](A& a, D&, const B&) { a.sm = nullptr; });
    add("null save_invstd", "save_invstd is NULL", [](A& a, D&, const B&) { a.si = nullptr; });
    add("save_invstd misaligned", "save_invstd is not aligned", [](A& a, D&, const B& b) { a.si = misaligned(b.si); });
    add("null global_stats", "global_stats is NULL", [](A& a, D&, const B&) { a.global = nullptr; });
    add("null global_sums", "global_sums is NULL", [](A& a, D&, const B&) { a.sums = nullptr; });
    add("global_sums misaligned", "global_sums is not aligned", [](A& a, D&, const B& b) { a.sums = misaligned(b.sums); });
    add("null dx", "dx is NULL", [](A& a, D&, const B&) { a.dx = nullptr; });
    add("dx misaligned", "dx is not aligned", [](A& a, D&, const B& b) { a.dx = misaligned(b.dx); });
    add("dgamma misaligned", "dgamma is not aligned", [](A& a, D&, const B& b) { a.dg = misaligned(b.dg); });
    add("dbeta misaligned", "dbeta is not aligned", [](A& a, D&, const B& b) { a.db = misaligned(b.db); });
    add("dx aliases x", "alias", [](A& a, D&, const B& b) { a.x = a.dx = b.scratch; });
    add("dx partly overlaps x", "overlap", [](A& a, D&, const B& b) {
      a.x = b.scratch;
      a.dx = b.scratch + 1;
    });
    add("dx partly overlaps dy", "overlap", [](A& a, D& d, const B& b) {
      a.dx = b.scratch;
      a.dy = b.scratch + numel(d) - 1;
    });
    add("dgamma inside global_sums", "dgamma and global_sums overlap", [](A& a, D&, const B& b) { a.dg = b.sums + 1; });
    add("global_stats inside dx", "dx and global_stats overlap", [](A& a, D&, const B& b) { a.global = b.dx; });
  }

  // ---- group, instance and layer norm ----
  for (SampleNorm kind : {kGroupNorm, kInstanceNorm, kLayerNorm}) {
    const std::string fop = std::string(sample_norm_name(kind)) + " forward";
    const std::string bop = std::string(sample_norm_name(kind)) + " backward";
    using F = SampleForwardArgs;
    using K = SampleBackwardArgs;
    const EditOf<F> fkind = [kind](F& a, D&, const B&) { a.kind = kind; };
    const EditOf<K> bkind = [kind](K& a, D&, const B&) { a.kind = kind; };
    const auto fwd = [&](const std::string& what, const char* mentions, EditOf<F> edit) {
      add_bad<F>(out, fop + ": " + what, mentions, [kind, edit](F& a, D& d, const B& b) {
        a.kind = kind;
        edit(a, d, b);
      });
    };
    const auto bwd = [&](const std::string& what, const char* mentions, EditOf<K> edit) {
      add_bad<K>(out, bop + ": " + what, mentions, [kind, edit](K& a, D& d, const B& b) {
        a.kind = kind;
        edit(a, d, b);
      });
    };
    add_bad_descs<F>(out, fop, fkind);
    add_bad_eps<F>(out, fop, fkind);
    fwd("null x", "x is NULL", [](F& a, D&, const B&) { a.x = nullptr; });
    fwd("f16 x misaligned", "x is not aligned", [](F& a, D& d, const B& b) {
      d.dtype = BNORM_DTYPE_F16;
      a.x = misaligned(b.x);
    });
    fwd("null y", "y is NULL", [](F& a, D&, const B&) { a.y = nullptr; });
    fwd("y misaligned", "y is not aligned", [](F& a, D&, const B& b) { a.y = misaligned(b.y); });
    fwd("gamma misaligned", "gamma is not aligned", [](F& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
    fwd("beta misaligned", "beta is not aligned", [](F& a, D&, const B& b) { a.beta = misaligned(b.beta); });
    fwd("save_mean misaligned", "save_mean is not aligned", [](F& a, D&, const B& b) { a.sm = misaligned(b.dg); });
    fwd("save_invstd misaligned", "save_invstd is not aligned", [](F& a, D&, const B& b) { a.si = misaligned(b.db); });
    fwd("y partly overlaps x", "overlap", [](F& a, D&, const B& b) {
      a.x = b.scratch + 1;
      a.y = b.scratch;
    });
    fwd("save_mean inside y", "save_mean and y overlap", [](F& a, D&, const B& b) { a.sm = b.y + 2; });
    fwd("save_invstd is save_mean", "save_mean and save_invstd overlap", [](F& a, D&, const B&) { a.si = a.sm; });
    fwd("beta inside y", "y and beta overlap", [](F& a, D&, const B& b) { a.beta = b.y + 1; });
    add_bad_descs<K>(out, bop, bkind);
    bwd("null x", "x is NULL", [](K& a, D&, const B&) { a.x = nullptr; });
    bwd("null dy", "dy is NULL", [](K& a, D&, const B&) { a.dy = nullptr; });
    bwd("bf16 dy misaligned", "dy is not aligned", [](K& a, D& d, const B& b) {
      d.dtype = BNORM_DTYPE_BF16;
      a.dy = misaligned(b.dy);
    });
    bwd("gamma misaligned", "gamma is not aligned", [](K& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
    bwd("null save_mean", "save_mean is NULL", [](K& a, D&, const B&) { a.sm = nullptr; });
    bwd("null save_invstd", "save_invstd is NULL", [](K& a, D&, const B&) { a.si = nullptr; });
    bwd("save_mean misaligned", "save_mean is not aligned", [](K& a, D&, const B& b) { a.sm = misaligned(b.sm); });
    bwd("null dx", "dx is NULL", [](K& a, D&, const B&) { a.dx = nullptr; });
    bwd("dx misaligned", "dx is not aligned", [](K& a, D&, const B& b) { a.dx = misaligned(b.dx); });
    bwd("dgamma misaligned", "dgamma is not aligned", [](K& a, D&, const B& b) { a.dg = misaligned(b.dg); });
    bwd("dbeta misaligned", "dbeta is not aligned", [](K& a, D&, const B& b) { a.db = misaligned(b.db); });
    bwd("dx aliases x", "alias", [](K& a, D&, const B& b) { a.x = a.dx = b.scratch; });
    bwd("dx partly overlaps x", "overlap", [](K& a, D&, const B& b) {
      a.x = b.scratch;
      a.dx = b.scratch + 3;
    });
    bwd("dx partly overlaps dy", "overlap", [](K& a, D&, const B& b) {
      a.dy = b.scratch + 1;
      a.dx = b.scratch;
    });
    bwd("dgamma inside x", "dgamma and x overlap", [](K& a, D&, const B& b) { a.dg = b.x + 1; });
    bwd("save_invstd inside dx", "dx and save_invstd overlap", [](K& a, D&, const B& b) { a.si = b.dx + 2; });
    if (kind != kGroupNorm) continue;
    // groups must be >= 1 and divide c (the base call's c = 6).
    for (int64_t g : {int64_t{0}, int64_t{-1}, int64_t{4}, int64_t{7}, INT64_MIN, INT64_MAX}) {
      fwd("groups = " + std::to_string(g), "groups", [g](F& a, D&, const B&) { a.groups = g; });
      bwd("groups = " + std::to_string(g), "groups", [g](K& a, D&, const B&) { a.groups = g; });
    }
  }
}

inline std::vector<BadCall> bad_calls() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<BadCall> out;
  using Edit = std::function<void(TrainArgs&, bnorm_tensor_t&, const CallBuffers&)>;
  // Each op with one edit; the descriptor is a copy the edit may change.
  const auto add_train = [&](const char* what, bnorm_status_t st, const char* mentions, Edit edit) {
    out.push_back({what, st, mentions, [edit](bnorm_handle_t h, const CallBuffers& b) {
                     bnorm_tensor_t d = b.d;
                     TrainArgs a = train_args(b);
                     a.d = &d;
                     edit(a, d, b);
                     return train(h, a);
                   }});
  };
  using InferEdit = std::function<void(InferArgs&, bnorm_tensor_t&, const CallBuffers&)>;
  const auto add_infer = [&](const char* what, bnorm_status_t st, const char* mentions, InferEdit edit) {
    out.push_back({what, st, mentions, [edit](bnorm_handle_t h, const CallBuffers& b) {
                     bnorm_tensor_t d = b.d;
                     InferArgs a = infer_args(b);
                     a.d = &d;
                     edit(a, d, b);
                     return infer(h, a);
                   }});
  };
  using BackEdit = std::function<void(BackArgs&, bnorm_tensor_t&, const CallBuffers&)>;
  const auto add_back = [&](const char* what, bnorm_status_t st, const char* mentions, BackEdit edit) {
    out.push_back({what, st, mentions, [edit](bnorm_handle_t h, const CallBuffers& b) {
                     bnorm_tensor_t d = b.d;
                     BackArgs a = back_args(b);
                     a.d = &d;
                     edit(a, d, b);
                     return back(h, a);
                   }});
  };
  const bnorm_status_t kInvalid = BNORM_STATUS_INVALID_VALUE;
  using T = TrainArgs;
  using D = bnorm_tensor_t;
  using B = CallBuffers;

  // ---- forward training ----
  out.push_back({"train: null handle", kInvalid, "handle",
                 [](bnorm_handle_t, const B& b) { return train(nullptr, train_args(b)); }});
  add_train("train: null desc", kInvalid, "desc", [](T& a, D&, const B&) { a.d = nullptr; });
  add_train("train: n = -1", kInvalid, "desc->n", [](T&, D& d, const B&) { d.n = -1; });
  add_train("train: c < 0", kInvalid, "desc->c", [](T&, D& d, const B&) { d.c = -3; });
  add_train("train: h = 0", kInvalid, "desc->h", [](T&, D& d, const B&) { d.h = 0; });
  add_train("train: w < 0", kInvalid, "desc->w", [](T&, D& d, const B&) { d.w = -1; });
  add_train("train: n = INT64_MIN", kInvalid, "desc->n", [](T&, D& d, const B&) { d.n = INT64_MIN; });
  add_train("train: n*c*h*w = 2^80", kInvalid, "overflow",
            [](T&, D& d, const B&) { d.n = d.c = d.h = d.w = int64_t{1} << 20; });
  add_train("train: n*c*h*w = 2^62 + 2^31", kInvalid, "overflow", [](T&, D& d, const B&) {
    d.n = (int64_t{1} << 31) + 1;
    d.c = int64_t{1} << 31;
    d.h = d.w = 1;
  });
  add_train("train: c = INT64_MAX", kInvalid, "overflow", [](T&, D& d, const B&) { d.c = INT64_MAX; });
  add_train("train: layout 9", kInvalid, "layout", [](T&, D& d, const B&) { set_raw(d.layout, 9); });
  add_train("train: layout -1", kInvalid, "layout", [](T&, D& d, const B&) { set_raw(d.layout, -1); });
  add_train("train: layout INT_MIN", kInvalid, "layout",
            [](T&, D& d, const B&) { set_raw(d.layout, std::numeric_limits<int>::min()); });
  add_train("train: dtype 9", kInvalid, "dtype", [](T&, D& d, const B&) { set_raw(d.dtype, 9); });
  add_train("train: dtype INT_MAX", kInvalid, "dtype",
            [](T&, D& d, const B&) { set_raw(d.dtype, std::numeric_limits<int>::max()); });
  add_train("train: f16 y misaligned", kInvalid, "y is not aligned", [](T& a, D& d, const B& b) {
    d.dtype = BNORM_DTYPE_F16;  // 2-byte elements: one byte off
    a.y = misaligned(b.y);
  });
  add_train("train: one value per channel", kInvalid, "n*h*w", [](T&, D& d, const B&) { d.n = d.h = d.w = 1; });
  add_train("train: null x", kInvalid, "x is NULL", [](T& a, D&, const B&) { a.x = nullptr; });
  add_train("train: null y", kInvalid, "y is NULL", [](T& a, D&, const B&) { a.y = nullptr; });
  add_train("train: x misaligned", kInvalid, "x is not aligned",
            [](T& a, D&, const B& b) { a.x = misaligned(static_cast<const float*>(b.x)); });
  add_train("train: y misaligned", kInvalid, "y is not aligned", [](T& a, D&, const B& b) { a.y = misaligned(b.y); });
  add_train("train: gamma misaligned", kInvalid, "gamma is not aligned",
            [](T& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
  add_train("train: beta misaligned", kInvalid, "beta is not aligned",
            [](T& a, D&, const B& b) { a.beta = misaligned(b.beta); });
  add_train("train: running_mean misaligned", kInvalid, "running_mean is not aligned",
            [](T& a, D&, const B& b) { a.rm = misaligned(b.rm); });
  add_train("train: running_var misaligned", kInvalid, "running_var is not aligned",
            [](T& a, D&, const B& b) { a.rv = misaligned(b.rv); });
  add_train("train: save_mean misaligned", kInvalid, "save_mean is not aligned",
            [](T& a, D&, const B& b) { a.sm = misaligned(b.sm); });
  add_train("train: save_invstd misaligned", kInvalid, "save_invstd is not aligned",
            [](T& a, D&, const B& b) { a.si = misaligned(b.si); });
  add_train("train: eps = 0", kInvalid, "eps", [](T& a, D&, const B&) { a.eps = 0.0f; });
  add_train("train: eps = -0", kInvalid, "eps", [](T& a, D&, const B&) { a.eps = -0.0f; });
  add_train("train: eps < 0", kInvalid, "eps", [](T& a, D&, const B&) { a.eps = -1e-5f; });
  add_train("train: eps NaN", kInvalid, "eps", [nan](T& a, D&, const B&) { a.eps = nan; });
  add_train("train: eps Inf", kInvalid, "eps", [inf](T& a, D&, const B&) { a.eps = inf; });
  add_train("train: momentum > 1", kInvalid, "momentum", [](T& a, D&, const B&) { a.momentum = 1.5f; });
  add_train("train: momentum < 0", kInvalid, "momentum", [](T& a, D&, const B&) { a.momentum = -0.1f; });
  add_train("train: momentum NaN", kInvalid, "momentum", [nan](T& a, D&, const B&) { a.momentum = nan; });
  add_train("train: momentum Inf", kInvalid, "momentum", [inf](T& a, D&, const B&) { a.momentum = inf; });
  add_train("train: momentum -Inf", kInvalid, "momentum", [inf](T& a, D&, const B&) { a.momentum = -inf; });
  add_train("train: running_mean without running_var", kInvalid, "running_var",
            [](T& a, D&, const B&) { a.rv = nullptr; });
  add_train("train: running_var without running_mean", kInvalid, "running_mean",
            [](T& a, D&, const B&) { a.rm = nullptr; });
  // What a call writes overlaps nothing else it reads or writes.
  add_train("train: save_mean inside y", kInvalid, "save_mean and y overlap", [](T& a, D&, const B& b) { a.sm = b.y + 1; });
  add_train("train: save_invstd inside x", kInvalid, "save_invstd and x overlap",
            [](T& a, D&, const B& b) { a.si = b.x + 5; });
  add_train("train: running_var is running_mean", kInvalid, "running_mean and running_var overlap",
            [](T& a, D&, const B&) { a.rv = a.rm; });
  add_train("train: save_mean is running_mean", kInvalid, "running_mean and save_mean overlap",
            [](T& a, D&, const B&) { a.sm = a.rm; });
  add_train("train: gamma inside y", kInvalid, "y and gamma overlap", [](T& a, D&, const B& b) { a.gamma = b.y + 2; });
  add_train("train: y partly overlaps x", kInvalid, "overlap", [](T& a, D&, const B& b) {
    a.x = b.scratch;
    a.y = b.scratch + 1;
  });
  add_train("train: y partly overlaps x, x after y", kInvalid, "overlap", [](T& a, D& d, const B& b) {
    a.x = b.scratch + (d.n * d.c * d.h * d.w) - 1;
    a.y = b.scratch;
  });
  // 2^62 elements are 2^64 bytes: an end address computed as x + 4 * numel wraps to x
  // itself and would hide the overlap (the library would then read 16 EiB from x).
  add_train("train: y partly overlaps x, 2^62 elements", kInvalid, "overlap", [](T& a, D& d, const B& b) {
    d.n = int64_t{1} << 31;
    d.c = int64_t{1} << 31;
    d.h = d.w = 1;
    a.x = b.scratch;
    a.y = b.scratch + 1;
  });

  // ---- forward inference ----
  out.push_back({"inference: null handle", kInvalid, "handle",
                 [](bnorm_handle_t, const B& b) { return infer(nullptr, infer_args(b)); }});
  using I = InferArgs;
  add_infer("inference: null desc", kInvalid, "desc", [](I& a, D&, const B&) { a.d = nullptr; });
  add_infer("inference: n < 0", kInvalid, "desc->n", [](I&, D& d, const B&) { d.n = -2; });
  add_infer("inference: layout 2", kInvalid, "layout", [](I&, D& d, const B&) { set_raw(d.layout, 2); });
  add_infer("inference: bf16 x misaligned", kInvalid, "x is not aligned", [](I& a, D& d, const B& b) {
    d.dtype = BNORM_DTYPE_BF16;
    a.x = misaligned(b.x);
  });
  add_infer("inference: null x", kInvalid, "x is NULL", [](I& a, D&, const B&) { a.x = nullptr; });
  add_infer("inference: null y", kInvalid, "y is NULL", [](I& a, D&, const B&) { a.y = nullptr; });
  add_infer("inference: null running_mean", kInvalid, "running_mean is NULL", [](I& a, D&, const B&) { a.rm = nullptr; });
  add_infer("inference: null running_var", kInvalid, "running_var is NULL", [](I& a, D&, const B&) { a.rv = nullptr; });
  add_infer("inference: y misaligned", kInvalid, "y is not aligned", [](I& a, D&, const B& b) { a.y = misaligned(b.y); });
  add_infer("inference: gamma misaligned", kInvalid, "gamma is not aligned",
            [](I& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
  add_infer("inference: beta misaligned", kInvalid, "beta is not aligned",
            [](I& a, D&, const B& b) { a.beta = misaligned(b.beta); });
  add_infer("inference: running_mean misaligned", kInvalid, "running_mean is not aligned",
            [](I& a, D&, const B& b) { a.rm = misaligned(b.rm); });
  add_infer("inference: running_var misaligned", kInvalid, "running_var is not aligned",
            [](I& a, D&, const B& b) { a.rv = misaligned(b.rv); });
  add_infer("inference: eps = 0", kInvalid, "eps", [](I& a, D&, const B&) { a.eps = 0.0f; });
  add_infer("inference: eps NaN", kInvalid, "eps", [nan](I& a, D&, const B&) { a.eps = nan; });
  add_infer("inference: eps -Inf", kInvalid, "eps", [inf](I& a, D&, const B&) { a.eps = -inf; });
  add_infer("inference: running_mean inside y", kInvalid, "y and running_mean overlap",
            [](I& a, D&, const B& b) { a.rm = b.y + 1; });
  add_infer("inference: y partly overlaps x", kInvalid, "overlap", [](I& a, D&, const B& b) {
    a.x = b.scratch + 3;
    a.y = b.scratch;
  });

  // ---- backward ----
  out.push_back({"backward: null handle", kInvalid, "handle",
                 [](bnorm_handle_t, const B& b) { return back(nullptr, back_args(b)); }});
  using K = BackArgs;
  add_back("backward: null desc", kInvalid, "desc", [](K& a, D&, const B&) { a.d = nullptr; });
  add_back("backward: c = 0", kInvalid, "desc->c", [](K&, D& d, const B&) { d.c = 0; });
  add_back("backward: dtype -1", kInvalid, "dtype", [](K&, D& d, const B&) { set_raw(d.dtype, -1); });
  add_back("backward: f16 x misaligned", kInvalid, "x is not aligned", [](K& a, D& d, const B& b) {
    d.dtype = BNORM_DTYPE_F16;
    a.x = misaligned(b.x);
  });
  add_back("backward: n*c*h*w overflows", kInvalid, "overflow", [](K&, D& d, const B&) { d.w = INT64_MAX / 2; });
  add_back("backward: null x", kInvalid, "x is NULL", [](K& a, D&, const B&) { a.x = nullptr; });
  add_back("backward: null dy", kInvalid, "dy is NULL", [](K& a, D&, const B&) { a.dy = nullptr; });
  add_back("backward: null save_mean", kInvalid, "save_mean is NULL", [](K& a, D&, const B&) { a.sm = nullptr; });
  add_back("backward: null save_invstd", kInvalid, "save_invstd is NULL", [](K& a, D&, const B&) { a.si = nullptr; });
  add_back("backward: null dx", kInvalid, "dx is NULL", [](K& a, D&, const B&) { a.dx = nullptr; });
  add_back("backward: dy misaligned", kInvalid, "dy is not aligned",
           [](K& a, D&, const B& b) { a.dy = misaligned(static_cast<const float*>(b.dy)); });
  add_back("backward: dx misaligned", kInvalid, "dx is not aligned", [](K& a, D&, const B& b) { a.dx = misaligned(b.dx); });
  add_back("backward: gamma misaligned", kInvalid, "gamma is not aligned",
           [](K& a, D&, const B& b) { a.gamma = misaligned(b.gamma); });
  add_back("backward: save_mean misaligned", kInvalid, "save_mean is not aligned",
           [](K& a, D&, const B& b) { a.sm = misaligned(b.sm); });
  add_back("backward: save_invstd misaligned", kInvalid, "save_invstd is not aligned",
           [](K& a, D&, const B& b) { a.si = misaligned(b.si); });
  add_back("backward: dgamma misaligned", kInvalid, "dgamma is not aligned",
           [](K& a, D&, const B& b) { a.dg = misaligned(b.dg); });
  add_back("backward: dbeta misaligned", kInvalid, "dbeta is not aligned",
           [](K& a, D&, const B& b) { a.db = misaligned(b.db); });
  add_back("backward: dgamma inside dx", kInvalid, "dgamma and dx overlap", [](K& a, D&, const B& b) { a.dg = b.dx + 1; });
  add_back("backward: dbeta is dgamma", kInvalid, "dgamma and dbeta overlap", [](K& a, D&, const B&) { a.db = a.dg; });
  add_back("backward: dbeta inside x", kInvalid, "dbeta and x overlap", [](K& a, D&, const B& b) { a.db = b.x + 7; });
  add_back("backward: save_invstd inside dx", kInvalid, "dx and save_invstd overlap",
           [](K& a, D&, const B& b) { a.si = b.dx + 3; });
  add_back("backward: dx aliases x", kInvalid, "alias", [](K& a, D&, const B& b) {
    a.x = b.scratch;
    a.dx = b.scratch;
  });
  add_back("backward: dx partly overlaps x", kInvalid, "overlap", [](K& a, D&, const B& b) {
    a.x = b.scratch;
    a.dx = b.scratch + 1;
  });
  add_back("backward: dx partly overlaps dy", kInvalid, "overlap", [](K& a, D&, const B& b) {
    a.dy = b.scratch + 1;
    a.dx = b.scratch;
  });

  // ---- the fused calls (made from C: act may be any int) ----
  for (int act : {2, -1, std::numeric_limits<int>::min()}) {
    out.push_back({"train fused: act out of range", kInvalid, "act = ", [act](bnorm_handle_t h, const B& b) {
                     return c_caller_forward_training_fused(h, &b.d, b.x, b.z, b.y, b.gamma, b.beta, 0.1f, 1e-5f,
                                                            b.rm, b.rv, b.sm, b.si, act);
                   }});
    out.push_back({"inference fused: act out of range", kInvalid, "act = ", [act](bnorm_handle_t h, const B& b) {
                     return c_caller_forward_inference_fused(h, &b.d, b.x, b.z, b.y, b.gamma, b.beta, b.sm, b.si,
                                                             1e-5f, act);
                   }});
    out.push_back({"backward fused: act out of range", kInvalid, "act = ", [act](bnorm_handle_t h, const B& b) {
                     return c_caller_backward_fused(h, &b.d, b.x, b.y, b.dy, b.gamma, b.sm, b.si, b.dx, b.dz, b.dg,
                                                    b.db, act);
                   }});
  }
  const int relu = BNORM_ACTIVATION_RELU;
  out.push_back({"train fused: z misaligned", kInvalid, "z is not aligned", [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_forward_training_fused(h, &b.d, b.x, misaligned(b.z), b.y, b.gamma, b.beta, 0.1f,
                                                          1e-5f, b.rm, b.rv, b.sm, b.si, relu);
                 }});
  out.push_back({"train fused: z partly overlaps y", kInvalid, "overlap", [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_forward_training_fused(h, &b.d, b.x, b.scratch + 1, b.scratch, b.gamma, b.beta,
                                                          0.1f, 1e-5f, b.rm, b.rv, b.sm, b.si, relu);
                 }});
  out.push_back({"inference fused: z partly overlaps y", kInvalid, "overlap", [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_forward_inference_fused(h, &b.d, b.x, b.scratch, b.scratch + 2, b.gamma, b.beta,
                                                           b.sm, b.si, 1e-5f, relu);
                 }});
  out.push_back({"backward fused relu: no y", kInvalid, "ReLU mask", [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_backward_fused(h, &b.d, b.x, nullptr, b.dy, b.gamma, b.sm, b.si, b.dx, b.dz, b.dg,
                                                  b.db, relu);
                 }});
  out.push_back({"backward fused: dz aliases dx", kInvalid, "dz must not alias dx",
                 [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_backward_fused(h, &b.d, b.x, b.y, b.dy, b.gamma, b.sm, b.si, b.dx, b.dx, b.dg,
                                                  b.db, relu);
                 }});
  out.push_back({"backward fused: dz aliases x", kInvalid, "dz must not alias x",
                 [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_backward_fused(h, &b.d, b.scratch, b.y, b.dy, b.gamma, b.sm, b.si, b.dx,
                                                  b.scratch, b.dg, b.db, relu);
                 }});
  out.push_back({"backward fused relu: dx aliases y", kInvalid, "dx must not alias y",
                 [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_backward_fused(h, &b.d, b.x, b.scratch, b.dy, b.gamma, b.sm, b.si, b.scratch,
                                                  b.dz, b.dg, b.db, relu);
                 }});
  out.push_back({"backward fused: dz partly overlaps dy", kInvalid, "overlap", [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_backward_fused(h, &b.d, b.x, b.y, b.scratch, b.gamma, b.sm, b.si, b.dx,
                                                  b.scratch + 1, b.dg, b.db, relu);
                 }});
  // The ReLU mask is read while dz is written: they may not partly overlap either.
  out.push_back({"backward fused relu: dz partly overlaps y", kInvalid, "overlap",
                 [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_backward_fused(h, &b.d, b.x, b.scratch, b.dy, b.gamma, b.sm, b.si, b.dx,
                                                  b.scratch + 1, b.dg, b.db, relu);
                 }});
  out.push_back({"backward fused: dz misaligned", kInvalid, "dz is not aligned", [relu](bnorm_handle_t h, const B& b) {
                   return c_caller_backward_fused(h, &b.d, b.x, b.y, b.dy, b.gamma, b.sm, b.si, b.dx,
                                                  misaligned(b.dz), b.dg, b.db, relu);
                 }});
  add_toolbox_bad_calls(out);
  return out;
}

// A valid call of each op, and the buffers it writes (BufferImage names, in
// CallBuffers' order).
struct ValidCall {
  std::string what;
  std::function<bnorm_status_t(bnorm_handle_t, const CallBuffers&)> call;
  std::string writes;
};

template <class A>
ValidCall valid_call(std::string what, std::string writes, const EditOf<A>& edit = nullptr) {
  return {std::move(what),
          [edit](bnorm_handle_t h, const CallBuffers& b) {
            bnorm_tensor_t d = b.d;
            A a = A::valid(b, &d);
            if (edit) edit(a, d, b);
            return a.call(h);
          },
          std::move(writes)};
}

inline std::vector<ValidCall> valid_calls() {
  using D = bnorm_tensor_t;
  using B = CallBuffers;
  std::vector<ValidCall> out = {
      {"train", [](bnorm_handle_t h, const B& b) { return train(h, train_args(b)); },
       "y, running_mean, running_var, save_mean, save_invstd"},
      {"inference", [](bnorm_handle_t h, const B& b) { return infer(h, infer_args(b)); }, "y"},
      {"backward", [](bnorm_handle_t h, const B& b) { return back(h, back_args(b)); }, "dx, dgamma, dbeta"},
      valid_call<FrozenArgs>("backward frozen", "dx, dgamma, dbeta"),
      // Without dgamma and dbeta, x is not read: NULL is allowed (an edit of bad_calls' null x).
      valid_call<FrozenArgs>("backward frozen, dx only, null x", "dx",
                             [](FrozenArgs& a, D&, const B&) { a.x = a.dg = a.db = nullptr; }),
      valid_call<FoldArgs>("fold", "y, out"),
      valid_call<LocalStatsArgs>("sync local stats", "out"),
      valid_call<MergeArgs>("sync merge stats", "out"),
      valid_call<SyncForwardArgs>("sync forward", "y, running_mean, running_var, dgamma, dbeta"),
      valid_call<SyncSumsArgs>("sync backward sums", "out"),
      valid_call<SyncBackwardArgs>("sync backward", "dx, dgamma, dbeta"),
  };
  for (SampleNorm kind : {kGroupNorm, kInstanceNorm, kLayerNorm}) {
    const std::string name = sample_norm_name(kind);
    out.push_back(valid_call<SampleForwardArgs>(name + " forward", "y, dgamma, dbeta",
                                                [kind](SampleForwardArgs& a, D&, const B&) { a.kind = kind; }));
    out.push_back(valid_call<SampleBackwardArgs>(name + " backward", "dx, dgamma, dbeta",
                                                 [kind](SampleBackwardArgs& a, D&, const B&) { a.kind = kind; }));
  }
  return out;
}

}  // namespace bnorm_test
