// Every kind of bad call of the three operations, for any backend: each must return its
// status with a message naming the culprit, and write nothing. The calls receive the
// pointers of one call's worth of buffers in the backend's memory (host or device); the
// test around them fills every buffer, makes the call, and checks that every byte of
// every buffer, inputs included, is what it was.
#pragma once

#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "c_caller.h"

namespace bnorm_test {

// Writes any int into an enum field, as a C caller may, without C++ ever holding the
// out-of-range value as the enum (which would be undefined behaviour in the test).
template <class E>
void set_raw(E& field, int value) {
  static_assert(sizeof(E) == sizeof(int), "a C enum is an int");
  std::memcpy(&field, &value, sizeof value);
}

// The buffers of one call: d (float32) describes x, y, dy, dx, z, dz; the per-channel
// arrays hold d.c floats; scratch holds 2 * numel floats (for aliases and partial
// overlaps). The test fills inputs with data and outputs with a sentinel, and expects
// every one of them back unchanged, scratch included.
struct CallBuffers {
  bnorm_tensor_t d;
  float *x, *y, *dy, *dx;
  float *gamma, *beta, *rm, *rv, *sm, *si, *dg, *db;
  float* scratch;
  float *z, *dz;
};

struct BadCall {
  const char* what;
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
  return out;
}

}  // namespace bnorm_test
