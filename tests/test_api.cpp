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
  EXPECT_STREQ(spec, "cpu_fast");
  EXPECT_EQ(why, BNORM_CHOICE_HEURISTIC);
  int count = 0;
  size_t needed = 0;
  ASSERT_EQ(bnorm_list_variants(h.h, BNORM_OP_BACKWARD, &d, 1, nullptr, 0, &count, &needed), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(count, 2);
  EXPECT_EQ(needed, std::strlen("cpu_fast\ncpu_reference\n") + 1);
  char list[64];
  ASSERT_EQ(bnorm_list_variants(h.h, BNORM_OP_BACKWARD, &d, 1, list, sizeof list, &count, nullptr),
            BNORM_STATUS_SUCCESS);
  EXPECT_STREQ(list, "cpu_fast\ncpu_reference\n");
  EXPECT_EQ(bnorm_set_variant(h.h, BNORM_OP_BACKWARD, "two_pass_block"), BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_set_variant(h.h, BNORM_OP_BACKWARD, "cpu_reference"), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_query_variant(h.h, BNORM_OP_BACKWARD, &d, 1, spec, sizeof spec, &why), BNORM_STATUS_SUCCESS);
  EXPECT_STREQ(spec, "cpu_reference");
  EXPECT_EQ(why, BNORM_CHOICE_OVERRIDE);
  // The other operations keep the default.
  ASSERT_EQ(bnorm_query_variant(h.h, BNORM_OP_FORWARD_TRAINING, &d, 1, spec, sizeof spec, &why), BNORM_STATUS_SUCCESS);
  EXPECT_STREQ(spec, "cpu_fast");
  EXPECT_EQ(bnorm_set_variant(h.h, BNORM_OP_BACKWARD, nullptr), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_query_variant(h.h, BNORM_OP_BACKWARD, &d, 1, spec, sizeof spec, &why), BNORM_STATUS_SUCCESS);
  EXPECT_STREQ(spec, "cpu_fast");
  // Threads: any count >= 0; the getter says what a large call would use.
  int threads = -1;
  ASSERT_EQ(bnorm_get_cpu_threads(h.h, &threads), BNORM_STATUS_SUCCESS);
  EXPECT_GE(threads, 1);
  EXPECT_EQ(bnorm_set_cpu_threads(h.h, 3), BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_get_cpu_threads(h.h, &threads), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(threads, 3);
  EXPECT_EQ(bnorm_set_cpu_threads(h.h, -1), BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_set_cpu_threads(nullptr, 1), BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_get_cpu_threads(h.h, nullptr), BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_set_cpu_threads(h.h, 0), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_set_variant(h.h, static_cast<bnorm_op_t>(BNORM_OP_SYNC_BACKWARD + 1), nullptr),
            BNORM_STATUS_INVALID_VALUE);
}

// All buffers of one call in host memory (call_buffer_images): outputs hold a sentinel,
// inputs data. d's c = 6 has divisors for group norm's groups = 3 and non-divisors.
struct Buffers {
  bnorm_tensor_t d = nchw(4, 6, 5, 5);
  std::vector<BufferImage> bufs = call_buffer_images(d);
  CallBuffers ptrs() {
    std::vector<float*> p;
    for (BufferImage& b : bufs) p.push_back(b.values.data());
    return call_buffers(d, p);
  }
  std::vector<std::vector<float>> all() const {
    std::vector<std::vector<float>> v;
    for (const BufferImage& b : bufs) v.push_back(b.values);
    return v;
  }
  // The names of the buffers that differ from before (a call_buffer_images() of d).
  std::string changed(const std::vector<std::vector<float>>& before) const {
    std::string out;
    for (size_t i = 0; i < bufs.size(); ++i)
      if (std::memcmp(bufs[i].values.data(), before[i].data(), before[i].size() * sizeof(float)) != 0)
        out += std::string(out.empty() ? "" : ", ") + bufs[i].name;
    return out;
  }
};

// Every kind of bad call in bad_calls.hpp: its status, a message naming the culprit, and
// every byte of every buffer (outputs, running statistics, inputs) as it was. Checked by
// breaking the library on purpose: with the overflow-safe overlap check reverted, the
// 2^62-element overlap call is accepted and reads past x (a crash under ASan); with any
// require()/check_eps() line removed from host/api.cpp, its case fails here; likewise
// with the frozen backward's check_dx_aliasing, fold's bias overlap check, merge's
// check_disjoint, the synchronized forward's momentum and overlap checks, the
// synchronized backward's dgamma alignment or the per-sample forward's check_eps
// removed (one try, all at once: each removal failed its own cases and no others).
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
    EXPECT_EQ(b.changed(before), "");
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

// The calls the bad ones are edits of: each succeeds and writes exactly its outputs
// (every one of them, and nothing else), on the same buffers.
TEST(Api, EveryValidCallWritesItsOutputsOnly) {
  Handle h;
  for (const ValidCall& vc : valid_calls()) {
    SCOPED_TRACE(vc.what);
    Buffers b;
    const auto before = b.all();
    ASSERT_EQ(vc.call(h.h, b.ptrs()), BNORM_STATUS_SUCCESS) << bnorm_last_error();
    EXPECT_EQ(b.changed(before), vc.writes);
  }
}

TEST(Api, LastErrorIsPerThread) {
  Handle h;
  Buffers b;
  const CallBuffers p = b.ptrs();
  TrainArgs a = train_args(p);
  a.eps = -1.0f;
  ASSERT_EQ(train(h.h, a), BNORM_STATUS_INVALID_VALUE);
  const std::string mine = bnorm_last_error();
  std::string theirs = "unset";
  std::thread t([&] {
    theirs = bnorm_last_error();  // nothing failed on this thread yet
    Buffers b2;
    const CallBuffers p2 = b2.ptrs();
    bnorm_tensor_t d = b2.d;
    d.c = 0;
    TrainArgs a2 = train_args(p2);
    a2.d = &d;
    train(h.h, a2);
  });
  t.join();
  EXPECT_EQ(theirs, "");
  EXPECT_EQ(mine, bnorm_last_error());
  EXPECT_NE(mine.find("eps"), std::string::npos);
}

}  // namespace
