// The C API's contract on the CPU backend: version, statuses, and validation. Every bad
// call returns its specific status with a message naming the argument, and writes
// nothing: outputs and running statistics keep their sentinel values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "bnorm/bnorm.h"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

constexpr float kSentinel = 12345.678f;

struct Handle {
  bnorm_handle_t h = nullptr;
  explicit Handle(bnorm_backend_t b = BNORM_BACKEND_CPU) { EXPECT_EQ(bnorm_create(&h, b, 0), BNORM_STATUS_SUCCESS); }
  ~Handle() { bnorm_destroy(h); }
};

TEST(Api, VersionAndStatusStrings) {
  EXPECT_EQ(bnorm_get_version(), BNORM_VERSION);
  EXPECT_EQ(BNORM_VERSION, BNORM_VERSION_MAJOR * 10000 + BNORM_VERSION_MINOR * 100 + BNORM_VERSION_PATCH);
  EXPECT_STREQ(bnorm_status_string(BNORM_STATUS_SUCCESS), "BNORM_STATUS_SUCCESS");
  EXPECT_STREQ(bnorm_status_string(BNORM_STATUS_NO_DEVICE), "BNORM_STATUS_NO_DEVICE");
  EXPECT_STREQ(bnorm_status_string(static_cast<bnorm_status_t>(99)), "BNORM_STATUS_UNKNOWN");
  // The numbering is ABI.
  EXPECT_EQ(BNORM_STATUS_INVALID_VALUE, 1);
  EXPECT_EQ(BNORM_STATUS_INTERNAL_ERROR, 6);
}

TEST(Api, CreateRejectsBadArguments) {
  EXPECT_EQ(bnorm_create(nullptr, BNORM_BACKEND_CPU, 0), BNORM_STATUS_INVALID_VALUE);
  bnorm_handle_t h = nullptr;
  EXPECT_EQ(bnorm_create(&h, static_cast<bnorm_backend_t>(7), 0), BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("backend"), std::string::npos);
  EXPECT_EQ(h, nullptr);
  EXPECT_EQ(bnorm_destroy(nullptr), BNORM_STATUS_INVALID_VALUE);
}

TEST(Api, CudaHandleWithoutDeviceSaysNoDevice) {
  bnorm_handle_t h = nullptr;
  const bnorm_status_t s = bnorm_create(&h, BNORM_BACKEND_CUDA, 0);
  if (s == BNORM_STATUS_SUCCESS) {
    bnorm_destroy(h);
    GTEST_SKIP() << "a CUDA device is present";
  }
  EXPECT_EQ(s, BNORM_STATUS_NO_DEVICE) << bnorm_last_error();
  EXPECT_EQ(h, nullptr);
  EXPECT_NE(std::string(bnorm_last_error()).find("device"), std::string::npos);
}

TEST(Api, HandleAccessors) {
  Handle h;
  bnorm_backend_t b = BNORM_BACKEND_CUDA;
  ASSERT_EQ(bnorm_get_backend(h.h, &b), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(b, BNORM_BACKEND_CPU);
  void* s = reinterpret_cast<void*>(1);
  EXPECT_EQ(bnorm_set_stream(h.h, nullptr), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_get_stream(h.h, &s), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(bnorm_get_stream(h.h, nullptr), BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_get_backend(nullptr, &b), BNORM_STATUS_INVALID_VALUE);
  char spec[64];
  bnorm_choice_t why;
  const bnorm_tensor_t d = nchw(2, 3, 4, 5);
  ASSERT_EQ(bnorm_query_variant(h.h, BNORM_OP_BACKWARD, &d, 1, spec, sizeof spec, &why), BNORM_STATUS_SUCCESS);
  EXPECT_STREQ(spec, "cpu_reference");
  EXPECT_EQ(why, BNORM_CHOICE_ONLY);
  int count = 0;
  size_t needed = 0;
  ASSERT_EQ(bnorm_list_variants(h.h, BNORM_OP_BACKWARD, &d, 1, nullptr, 0, &count, &needed), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(count, 1);
  EXPECT_EQ(needed, std::strlen("cpu_reference\n") + 1);
  EXPECT_EQ(bnorm_set_variant(h.h, BNORM_OP_BACKWARD, "two_pass_block"), BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_set_variant(h.h, BNORM_OP_BACKWARD, "cpu_reference"), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_set_variant(h.h, static_cast<bnorm_op_t>(BNORM_OP_SYNC_BACKWARD + 1), nullptr),
            BNORM_STATUS_INVALID_VALUE);
}

// All buffers of one call, filled with sentinels (outputs) or valid data (inputs).
struct Buffers {
  bnorm_tensor_t d = nchw(4, 3, 5, 5);
  std::vector<float> x, y, dy, dx, gamma, beta, rm, rv, sm, si, dg, db;
  Buffers() {
    const int64_t n = numel(d);
    x = random_tensor(d, 1);
    dy = random_tensor(d, 2);
    y.assign(n, kSentinel);
    dx.assign(n, kSentinel);
    gamma = random_vector(d.c, 3, 0.5, 1.5);
    beta = random_vector(d.c, 4, -1, 1);
    rm.assign(d.c, kSentinel);
    rv.assign(d.c, kSentinel);
    sm = random_vector(d.c, 5, -1, 1);
    si = random_vector(d.c, 6, 0.5, 2);
    dg.assign(d.c, kSentinel);
    db.assign(d.c, kSentinel);
  }
  bool outputs_untouched() const {
    for (const auto* v : {&y, &dx, &rm, &rv, &dg, &db})
      for (float e : *v)
        if (e != kSentinel) return false;
    return true;
  }
};

struct BadCall {
  const char* what;
  bnorm_status_t expected;
  const char* mentions;  // the message must name the culprit
  std::function<bnorm_status_t(bnorm_handle_t, Buffers&)> call;
};

bnorm_status_t train(bnorm_handle_t h, Buffers& b, const bnorm_tensor_t* d, float eps = 1e-5f,
                     float momentum = 0.1f) {
  return bnorm_forward_training(h, d, b.x.data(), b.y.data(), b.gamma.data(), b.beta.data(), momentum,
                                eps, b.rm.data(), b.rv.data(), nullptr, nullptr);
}

std::vector<BadCall> bad_calls() {
  auto with = [](auto edit) {
    return [edit](bnorm_handle_t h, Buffers& b) {
      bnorm_tensor_t d = b.d;
      edit(d);
      return train(h, b, &d);
    };
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {"null handle", BNORM_STATUS_INVALID_VALUE, "handle",
       [](bnorm_handle_t, Buffers& b) { return train(nullptr, b, &b.d); }},
      {"null desc", BNORM_STATUS_INVALID_VALUE, "desc",
       [](bnorm_handle_t h, Buffers& b) { return train(h, b, nullptr); }},
      {"n < 0", BNORM_STATUS_INVALID_VALUE, "n", with([](bnorm_tensor_t& d) { d.n = -1; })},
      {"c < 0", BNORM_STATUS_INVALID_VALUE, "c", with([](bnorm_tensor_t& d) { d.c = -3; })},
      {"h = 0", BNORM_STATUS_INVALID_VALUE, "h", with([](bnorm_tensor_t& d) { d.h = 0; })},
      {"w < 0", BNORM_STATUS_INVALID_VALUE, "w", with([](bnorm_tensor_t& d) { d.w = -1; })},
      {"overflowing size", BNORM_STATUS_INVALID_VALUE, "overflow",
       with([](bnorm_tensor_t& d) { d.n = d.c = d.h = d.w = int64_t{1} << 20; })},
      {"bad layout", BNORM_STATUS_INVALID_VALUE, "layout",
       with([](bnorm_tensor_t& d) { d.layout = static_cast<bnorm_layout_t>(9); })},
      {"bad dtype", BNORM_STATUS_INVALID_VALUE, "dtype",
       with([](bnorm_tensor_t& d) { d.dtype = static_cast<bnorm_dtype_t>(9); })},
      {"one value per channel", BNORM_STATUS_INVALID_VALUE, "n*h*w",
       with([](bnorm_tensor_t& d) { d.n = d.h = d.w = 1; })},
      {"null x", BNORM_STATUS_INVALID_VALUE, "x",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_forward_training(h, &b.d, nullptr, b.y.data(), nullptr, nullptr, 0.1f, 1e-5f,
                                       b.rm.data(), b.rv.data(), nullptr, nullptr);
       }},
      {"null y", BNORM_STATUS_INVALID_VALUE, "y",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_forward_training(h, &b.d, b.x.data(), nullptr, nullptr, nullptr, 0.1f, 1e-5f,
                                       b.rm.data(), b.rv.data(), nullptr, nullptr);
       }},
      {"misaligned x", BNORM_STATUS_INVALID_VALUE, "aligned",
       [](bnorm_handle_t h, Buffers& b) {
         const void* x = reinterpret_cast<const char*>(b.x.data()) + 1;
         return bnorm_forward_training(h, &b.d, x, b.y.data(), nullptr, nullptr, 0.1f, 1e-5f,
                                       b.rm.data(), b.rv.data(), nullptr, nullptr);
       }},
      {"eps = 0", BNORM_STATUS_INVALID_VALUE, "eps",
       [](bnorm_handle_t h, Buffers& b) { return train(h, b, &b.d, 0.0f); }},
      {"eps < 0", BNORM_STATUS_INVALID_VALUE, "eps",
       [](bnorm_handle_t h, Buffers& b) { return train(h, b, &b.d, -1e-5f); }},
      {"eps NaN", BNORM_STATUS_INVALID_VALUE, "eps",
       [nan](bnorm_handle_t h, Buffers& b) { return train(h, b, &b.d, nan); }},
      {"eps Inf", BNORM_STATUS_INVALID_VALUE, "eps",
       [inf](bnorm_handle_t h, Buffers& b) { return train(h, b, &b.d, inf); }},
      {"momentum > 1", BNORM_STATUS_INVALID_VALUE, "momentum",
       [](bnorm_handle_t h, Buffers& b) { return train(h, b, &b.d, 1e-5f, 1.5f); }},
      {"momentum < 0", BNORM_STATUS_INVALID_VALUE, "momentum",
       [](bnorm_handle_t h, Buffers& b) { return train(h, b, &b.d, 1e-5f, -0.1f); }},
      {"momentum NaN", BNORM_STATUS_INVALID_VALUE, "momentum",
       [nan](bnorm_handle_t h, Buffers& b) { return train(h, b, &b.d, 1e-5f, nan); }},
      {"running_mean without running_var", BNORM_STATUS_INVALID_VALUE, "running_var",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_forward_training(h, &b.d, b.x.data(), b.y.data(), nullptr, nullptr, 0.1f, 1e-5f,
                                       b.rm.data(), nullptr, nullptr, nullptr);
       }},
      {"y partly overlaps x", BNORM_STATUS_INVALID_VALUE, "overlap",
       [](bnorm_handle_t h, Buffers& b) {
         std::vector<float> both(2 * numel(b.d), 1.0f);
         for (size_t i = 0; i < both.size(); ++i) both[i] = static_cast<float>(i % 7);
         return bnorm_forward_training(h, &b.d, both.data(), both.data() + 1, nullptr, nullptr, 0.1f,
                                       1e-5f, b.rm.data(), b.rv.data(), nullptr, nullptr);
       }},
      {"inference without running_var", BNORM_STATUS_INVALID_VALUE, "running_var",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_forward_inference(h, &b.d, b.x.data(), b.y.data(), nullptr, nullptr, b.sm.data(),
                                        nullptr, 1e-5f);
       }},
      {"inference eps = 0", BNORM_STATUS_INVALID_VALUE, "eps",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_forward_inference(h, &b.d, b.x.data(), b.y.data(), nullptr, nullptr, b.sm.data(),
                                        b.si.data(), 0.0f);
       }},
      {"inference bad n", BNORM_STATUS_INVALID_VALUE, "n",
       [](bnorm_handle_t h, Buffers& b) {
         bnorm_tensor_t d = b.d;
         d.n = -2;
         return bnorm_forward_inference(h, &d, b.x.data(), b.y.data(), nullptr, nullptr, b.sm.data(),
                                        b.si.data(), 1e-5f);
       }},
      {"backward null dy", BNORM_STATUS_INVALID_VALUE, "dy",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_backward(h, &b.d, b.x.data(), nullptr, nullptr, b.sm.data(), b.si.data(),
                               b.dx.data(), b.dg.data(), b.db.data());
       }},
      {"backward null save_invstd", BNORM_STATUS_INVALID_VALUE, "save_invstd",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_backward(h, &b.d, b.x.data(), b.dy.data(), nullptr, b.sm.data(), nullptr,
                               b.dx.data(), b.dg.data(), b.db.data());
       }},
      {"backward null dx", BNORM_STATUS_INVALID_VALUE, "dx",
       [](bnorm_handle_t h, Buffers& b) {
         return bnorm_backward(h, &b.d, b.x.data(), b.dy.data(), nullptr, b.sm.data(), b.si.data(),
                               nullptr, b.dg.data(), b.db.data());
       }},
      {"backward dx aliases x", BNORM_STATUS_INVALID_VALUE, "alias",
       [](bnorm_handle_t h, Buffers& b) {
         std::vector<float> x2 = b.x;
         const bnorm_status_t s = bnorm_backward(h, &b.d, x2.data(), b.dy.data(), nullptr, b.sm.data(),
                                                 b.si.data(), x2.data(), b.dg.data(), b.db.data());
         return x2 == b.x ? s : BNORM_STATUS_INTERNAL_ERROR;  // x must be untouched too
       }},
      {"f16 tensor not aligned to 2 bytes", BNORM_STATUS_INVALID_VALUE, "aligned",
       [](bnorm_handle_t h, Buffers& b) {
         bnorm_tensor_t d = b.d;
         d.dtype = BNORM_DTYPE_F16;
         const void* x = reinterpret_cast<const char*>(b.x.data()) + 1;
         return bnorm_backward(h, &d, x, b.dy.data(), nullptr, b.sm.data(), b.si.data(), b.dx.data(),
                               b.dg.data(), b.db.data());
       }},
  };
}

TEST(Api, EveryBadCallFailsWithItsStatusAndWritesNothing) {
  Handle h;
  for (const BadCall& bc : bad_calls()) {
    SCOPED_TRACE(bc.what);
    Buffers b;
    const bnorm_status_t s = bc.call(h.h, b);
    EXPECT_EQ(s, bc.expected) << bnorm_status_string(s) << ": " << bnorm_last_error();
    EXPECT_NE(std::string(bnorm_last_error()).find(bc.mentions), std::string::npos)
        << "message '" << bnorm_last_error() << "' should mention '" << bc.mentions << "'";
    EXPECT_TRUE(b.outputs_untouched());
  }
}

TEST(Api, AGoodCallWritesEverything) {
  // The counterpart of the test above: the same buffers, valid arguments, all written.
  Handle h;
  Buffers b;
  ASSERT_EQ(bnorm_forward_training(h.h, &b.d, b.x.data(), b.y.data(), b.gamma.data(), b.beta.data(),
                                   0.1f, 1e-5f, b.rm.data(), b.rv.data(), b.sm.data(), b.si.data()),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_backward(h.h, &b.d, b.x.data(), b.dy.data(), b.gamma.data(), b.sm.data(), b.si.data(),
                           b.dx.data(), b.dg.data(), b.db.data()),
            BNORM_STATUS_SUCCESS);
  for (const auto* v : {&b.y, &b.dx, &b.rm, &b.rv, &b.dg, &b.db})
    for (float e : *v) EXPECT_NE(e, kSentinel);
}

TEST(Api, LastErrorIsPerThread) {
  Handle h;
  Buffers b;
  ASSERT_EQ(train(h.h, b, &b.d, -1.0f), BNORM_STATUS_INVALID_VALUE);
  const std::string mine = bnorm_last_error();
  std::string theirs = "unset";
  std::thread t([&] {
    theirs = bnorm_last_error();  // nothing failed on this thread yet
    Buffers b2;
    bnorm_tensor_t d = b2.d;
    d.c = 0;
    train(h.h, b2, &d);
  });
  t.join();
  EXPECT_EQ(theirs, "");
  EXPECT_EQ(mine, bnorm_last_error());
  EXPECT_NE(mine.find("eps"), std::string::npos);
}

}  // namespace
