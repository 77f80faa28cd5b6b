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

#include "bad_calls.hpp"
#include "bnorm/bnorm.h"
#include "c_caller.h"
#include "host_helpers.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

constexpr float kSentinel = 12345.678f;

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

// All buffers of one call in host memory: outputs hold a sentinel, inputs data.
struct Buffers {
  bnorm_tensor_t d = nchw(4, 3, 5, 5);
  std::vector<float> x, y, dy, dx, gamma, beta, rm, rv, sm, si, dg, db, scratch, z, dz;
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
    scratch = random_vector(2 * n, 7, -1, 1);
    z = random_tensor(d, 8);
    dz.assign(n, kSentinel);
  }
  CallBuffers ptrs() {
    return {d, x.data(), y.data(), dy.data(), dx.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
            sm.data(), si.data(), dg.data(), db.data(), scratch.data(), z.data(), dz.data()};
  }
  std::vector<std::vector<float>> all() const {
    return {x, y, dy, dx, gamma, beta, rm, rv, sm, si, dg, db, scratch, z, dz};
  }
};

bool bitwise_equal(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)
      return false;
  return true;
}

bnorm_status_t train(bnorm_handle_t h, Buffers& b, const bnorm_tensor_t* d, float eps = 1e-5f,
                     float momentum = 0.1f) {
  return bnorm_forward_training(h, d, b.x.data(), b.y.data(), b.gamma.data(), b.beta.data(), momentum,
                                eps, b.rm.data(), b.rv.data(), nullptr, nullptr);
}

// Every kind of bad call in bad_calls.hpp: its status, a message naming the culprit, and
// every byte of every buffer (outputs, running statistics, inputs) as it was. Checked by
// breaking the library on purpose: with the overflow-safe overlap check reverted, the
// 2^62-element overlap call is accepted and reads past x (a crash under ASan); with any
// require()/check_eps() line removed from host/api.cpp, its case fails here.
TEST(Api, EveryBadCallFailsWithItsStatusAndWritesNothing) {
  Handle h;
  for (const BadCall& bc : bad_calls()) {
    SCOPED_TRACE(bc.what);
    Buffers b;
    const auto before = b.all();
    const bnorm_status_t s = bc.call(h.h, b.ptrs());
    EXPECT_EQ(s, bc.expected) << bnorm_status_string(s) << ": " << bnorm_last_error();
    EXPECT_NE(std::string(bnorm_last_error()).find(bc.mentions), std::string::npos)
        << "message '" << bnorm_last_error() << "' should mention '" << bc.mentions << "'";
    EXPECT_TRUE(bitwise_equal(b.all(), before));
  }
}

// Enums a C caller fills with any int (passed from C: c_caller.c), validated without UB.
// The asan preset runs this under -fsanitize=enum, which reported the old direct
// comparisons in host/api.cpp.
TEST(Api, OutOfRangeEnumsAreRejected) {
  Handle h;
  for (int v : {-1, 2, 3, 7, BNORM_OP_SYNC_BACKWARD + 1, std::numeric_limits<int>::max(),
                std::numeric_limits<int>::min()}) {
    SCOPED_TRACE(v);
    bnorm_handle_t made = nullptr;
    EXPECT_EQ(c_caller_create(&made, v, 0), BNORM_STATUS_INVALID_VALUE);
    EXPECT_EQ(made, nullptr);
    EXPECT_NE(std::string(bnorm_last_error()).find("backend"), std::string::npos);
    // A status just past the last one, or v itself where that is out of range anyway.
    EXPECT_STREQ(c_caller_status_string(v >= 0 && v <= BNORM_STATUS_COMMUNICATION_ERROR ? v + 8 : v),
                 "BNORM_STATUS_UNKNOWN");
    if (v >= BNORM_OP_FORWARD_TRAINING && v <= BNORM_OP_SYNC_BACKWARD) continue;  // a valid op
    EXPECT_EQ(c_caller_set_variant(h.h, v, nullptr), BNORM_STATUS_INVALID_VALUE);
    const bnorm_tensor_t d = nchw(2, 3, 4, 5);
    char spec[32];
    int count = 0;
    EXPECT_EQ(c_caller_query_variant(h.h, v, &d, 1, spec, sizeof spec, nullptr), BNORM_STATUS_INVALID_VALUE);
    EXPECT_EQ(c_caller_list_variants(h.h, v, &d, 1, nullptr, 0, &count, nullptr), BNORM_STATUS_INVALID_VALUE);
    EXPECT_NE(std::string(bnorm_last_error()).find("op = "), std::string::npos);
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
