// The tuning cache on the CPU: no GPU is needed, since dispatch and the cache only read
// the handle's GPU identity. A CUDA handle is built by hand with a made-up GPU, and the
// choice is read through bnorm::choose() and through the public bnorm_query_variant.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bnorm/bnorm.h"
#include "fake_gpu.hpp"
#include "dispatch.hpp"
#include "handle.hpp"
#include "tuning_cache.hpp"

namespace {

using bnorm::tuning::CacheFile;
using bnorm::tuning::Entry;
using bnorm::tuning::Key;

constexpr const char* kGpu = "Test GPU 132";

bnorm_handle fake_gpu(const char* name = kGpu, int sm_count = 132) { return bnorm_test::fake_gpu(name, sm_count); }

bnorm_tensor_t nchw(int64_t n, int64_t c, int64_t h, int64_t w) {
  return bnorm_tensor_t{n, c, h, w, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
}

bnorm::Problem problem(bnorm_op_t op, const bnorm_tensor_t& d, bool aligned16 = true) {
  bnorm::Problem pr;
  pr.op = op;
  pr.desc = d;
  pr.shape = bnorm::kern::Shape{d.n, d.c, d.h * d.w};
  pr.aligned16 = aligned16;
  return pr;
}

Entry entry(const bnorm_handle& h, bnorm_op_t op, const bnorm_tensor_t& d, const std::string& winner,
            std::vector<std::string> runners_up = {}, bool aligned16 = true) {
  Entry e;
  e.key = bnorm::tuning::key_of(h, problem(op, d, aligned16));
  e.winner = {winner, 0.5};
  double t = 0.6;
  for (const std::string& s : runners_up) e.runners_up.push_back({s, t += 0.1});
  return e;
}

// The spec and reason dispatch gives, through the internal choose().
struct Picked {
  std::string spec;
  bnorm_choice_t why;
};
Picked choose(const bnorm_handle& h, const bnorm::Problem& pr) {
  bnorm::Choice c;
  const bnorm::Status s = bnorm::choose(h, pr, &c);
  EXPECT_TRUE(s.ok()) << s.message;
  if (!s.ok()) return {"", BNORM_CHOICE_HEURISTIC};
  return {bnorm::format_spec(*c.variant, c.policy), c.why};
}

// The heuristic's spec, with no cache at all.
std::string heuristic_spec(const bnorm_handle& h, const bnorm::Problem& pr) {
  bnorm_tuning_clear();
  const Picked p = choose(h, pr);
  EXPECT_EQ(p.why, BNORM_CHOICE_HEURISTIC);
  return p.spec;
}

class TuningCache : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("BNORM_TUNING_CACHE");
    bnorm::tuning::reset_for_testing();
    char tmpl[] = "/tmp/bnorm_tuning_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    unsetenv("BNORM_TUNING_CACHE");
    bnorm::tuning::reset_for_testing();
    for (const std::string& f : files_) std::remove(f.c_str());
    rmdir(dir_.c_str());
  }
  std::string path(const std::string& name) {
    files_.push_back(dir_ + "/" + name);
    return files_.back();
  }
  std::string save(const std::string& name, const CacheFile& f) {
    const std::string p = path(name);
    const bnorm::Status s = bnorm::tuning::write_file(p, f);
    EXPECT_TRUE(s.ok()) << s.message;
    return p;
  }
  std::string write_text(const std::string& name, const std::string& text) {
    const std::string p = path(name);
    std::ofstream(p) << text;
    return p;
  }
  // Runs f with stderr captured; returns what it printed.
  template <class F>
  static std::string stderr_of(F&& f) {
    ::testing::internal::CaptureStderr();
    f();
    return ::testing::internal::GetCapturedStderr();
  }
  static int warnings_in(const std::string& err) {
    int n = 0;
    for (size_t at = err.find("bnorm: warning:"); at != std::string::npos;
         at = err.find("bnorm: warning:", at + 1))
      ++n;
    return n;
  }

  std::string dir_;
  std::vector<std::string> files_;
};

const bnorm_tensor_t kShape = nchw(32, 64, 56, 56);
// A legal configuration the heuristic does not pick for kShape.
constexpr const char* kTuned = "two_pass_split:t128:v4:s4";

TEST_F(TuningCache, RoundTripGivesTheStoredSpecAsCache) {
  const bnorm_handle h = fake_gpu();
  const bnorm::Problem pr = problem(BNORM_OP_FORWARD_TRAINING, kShape);
  ASSERT_NE(heuristic_spec(h, pr), kTuned) << "pick a tuned spec the heuristic would not choose";

  CacheFile f;
  f.devices.push_back({kGpu, 9, 0, 132, 13000, 13000, 3000.0, "2026-01-01T00:00:00Z", "abc"});
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, kTuned,
                            {"two_pass_block:t256:v4:s1", "two_pass_block:t512:v4:s1"}));
  f.entries.push_back(entry(h, BNORM_OP_BACKWARD, kShape, "two_pass_block:t128:v1:s1"));
  const std::string p = save("cache.json", f);

  // What was written reads back the same.
  CacheFile back;
  ASSERT_TRUE(bnorm::tuning::read_file(p, &back).ok());
  ASSERT_EQ(back.entries.size(), 2u);
  EXPECT_EQ(back.entries[0].winner.spec, kTuned);
  ASSERT_EQ(back.entries[0].runners_up.size(), 2u);
  EXPECT_EQ(back.entries[0].runners_up[1].spec, "two_pass_block:t512:v4:s1");
  EXPECT_EQ(back.entries[0].key.gpu, kGpu);
  EXPECT_EQ(back.entries[0].key.n, 32);
  EXPECT_EQ(back.entries[1].key.op, BNORM_OP_BACKWARD);
  ASSERT_EQ(back.devices.size(), 1u);
  EXPECT_DOUBLE_EQ(back.devices[0].copy_bandwidth_gb_per_s, 3000.0);

  std::string err = stderr_of([&] { EXPECT_EQ(bnorm_tuning_load(p.c_str()), BNORM_STATUS_SUCCESS); });
  EXPECT_EQ(warnings_in(err), 0) << err;
  const Picked got = choose(h, pr);
  EXPECT_EQ(got.spec, kTuned);
  EXPECT_EQ(got.why, BNORM_CHOICE_CACHE);
  const Picked bwd = choose(h, problem(BNORM_OP_BACKWARD, kShape));
  EXPECT_EQ(bwd.spec, "two_pass_block:t128:v1:s1");
  EXPECT_EQ(bwd.why, BNORM_CHOICE_CACHE);

  // The public query says the same.
  char spec[128];
  bnorm_choice_t why = BNORM_CHOICE_HEURISTIC;
  bnorm_handle hq = fake_gpu();
  ASSERT_EQ(bnorm_query_variant(&hq, BNORM_OP_FORWARD_TRAINING, &kShape, 1, spec, sizeof spec, &why),
            BNORM_STATUS_SUCCESS);
  EXPECT_STREQ(spec, kTuned);
  EXPECT_EQ(why, BNORM_CHOICE_CACHE);

  // An override still wins over the cache.
  hq.forced[BNORM_OP_FORWARD_TRAINING] = "two_pass_block:t512:v1:s1";
  ASSERT_EQ(bnorm_query_variant(&hq, BNORM_OP_FORWARD_TRAINING, &kShape, 1, spec, sizeof spec, &why),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(why, BNORM_CHOICE_OVERRIDE);

  // Clearing returns to the heuristic.
  EXPECT_EQ(bnorm_tuning_clear(), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(choose(h, pr).why, BNORM_CHOICE_HEURISTIC);
}

TEST_F(TuningCache, RunnerUpWhenTheWinnerDoesNotSupportTheCall) {
  const bnorm_handle h = fake_gpu();
  // Tuned with aligned pointers, the winner is a vec-4 kernel; a call with unaligned
  // pointers of the same shape reaches the entry only as the nearest one, and then takes
  // the first runner-up that runs without alignment.
  CacheFile f;
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, "two_pass_split:t256:v4:s8",
                            {"two_pass_block:t256:v4:s1", "two_pass_split:t512:v1:s2"}));
  ASSERT_EQ(bnorm_tuning_load(save("c.json", f).c_str()), BNORM_STATUS_SUCCESS);
  const Picked unaligned = choose(h, problem(BNORM_OP_FORWARD_TRAINING, kShape, false));
  EXPECT_EQ(unaligned.spec, "two_pass_split:t512:v1:s2");
  EXPECT_EQ(unaligned.why, BNORM_CHOICE_NEAREST);

  // The exact key, with a winner naming a variant this build does not have.
  CacheFile g;
  g.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, "no_such_variant:t256:v4:s1",
                            {"two_pass_block:t128:v4:s1"}));
  ASSERT_EQ(bnorm_tuning_load(save("g.json", g).c_str()), BNORM_STATUS_SUCCESS);
  const Picked exact = choose(h, problem(BNORM_OP_FORWARD_TRAINING, kShape));
  EXPECT_EQ(exact.spec, "two_pass_block:t128:v4:s1");
  EXPECT_EQ(exact.why, BNORM_CHOICE_CACHE);
}

TEST_F(TuningCache, CorruptFileWarnsOnceAndFallsBackToTheHeuristic) {
  const bnorm_handle h = fake_gpu();
  const bnorm::Problem pr = problem(BNORM_OP_FORWARD_TRAINING, kShape);
  const std::string expected = heuristic_spec(h, pr);
  const std::vector<std::string> bad = {
      "{\"format\": \"bnorm-tuning-cache\", \"format_version\": 1, \"entr",  // truncated
      "",                                                                    // empty
      "[1, 2, 3]",                                                           // not an object
      "{\"format\": \"bnorm-tuning-cache\", \"format_version\": 1, \"library_version\": \"" +
          std::to_string(BNORM_VERSION_MAJOR) + "." + std::to_string(BNORM_VERSION_MINOR) +
          "\", \"entries\": [{\"gpu\": 7}]}",  // a field of the wrong type
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE("corrupt file " + std::to_string(i));
    const std::string p = write_text("bad" + std::to_string(i) + ".json", bad[i]);
    bnorm_status_t st = BNORM_STATUS_SUCCESS;
    std::string err = stderr_of([&] { st = bnorm_tuning_load(p.c_str()); });
    EXPECT_EQ(st, BNORM_STATUS_INVALID_VALUE);
    EXPECT_NE(std::string(bnorm_last_error()).find(p), std::string::npos) << bnorm_last_error();
    EXPECT_EQ(warnings_in(err), 1) << err;
    err = stderr_of([&] {
      for (int k = 0; k < 3; ++k) {
        const Picked got = choose(h, pr);
        EXPECT_EQ(got.spec, expected);
        EXPECT_EQ(got.why, BNORM_CHOICE_HEURISTIC);
      }
    });
    EXPECT_EQ(warnings_in(err), 0) << err;
  }
}

TEST_F(TuningCache, MissingFileWarnsOnce) {
  const bnorm_handle h = fake_gpu();
  const std::string p = dir_ + "/does_not_exist.json";
  bnorm_status_t st = BNORM_STATUS_SUCCESS;
  const std::string err = stderr_of([&] { st = bnorm_tuning_load(p.c_str()); });
  EXPECT_EQ(st, BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(warnings_in(err), 1) << err;
  EXPECT_EQ(choose(h, problem(BNORM_OP_BACKWARD, kShape)).why, BNORM_CHOICE_HEURISTIC);
  EXPECT_EQ(bnorm_tuning_load(nullptr), BNORM_STATUS_INVALID_VALUE);
}

TEST_F(TuningCache, EnvironmentIsReadLazilyAndOnce) {
  const bnorm_handle h = fake_gpu();
  CacheFile f;
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  setenv("BNORM_TUNING_CACHE", save("env.json", f).c_str(), 1);
  bnorm::tuning::reset_for_testing();
  EXPECT_EQ(choose(h, problem(BNORM_OP_FORWARD_TRAINING, kShape)).why, BNORM_CHOICE_CACHE);

  // A missing file named by the environment: one warning over many calls.
  setenv("BNORM_TUNING_CACHE", (dir_ + "/missing.json").c_str(), 1);
  bnorm::tuning::reset_for_testing();
  const std::string err = stderr_of([&] {
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(choose(h, problem(BNORM_OP_FORWARD_TRAINING, kShape)).why, BNORM_CHOICE_HEURISTIC);
  });
  EXPECT_EQ(warnings_in(err), 1) << err;

  // An explicit clear wins over the environment.
  setenv("BNORM_TUNING_CACHE", files_.front().c_str(), 1);
  bnorm::tuning::reset_for_testing();
  bnorm_tuning_clear();
  EXPECT_EQ(choose(h, problem(BNORM_OP_FORWARD_TRAINING, kShape)).why, BNORM_CHOICE_HEURISTIC);
}

TEST_F(TuningCache, OtherGpuIsIgnoredWithOneWarning) {
  const bnorm_handle mine = fake_gpu();
  const bnorm::Problem pr = problem(BNORM_OP_FORWARD_TRAINING, kShape);
  const std::string expected = heuristic_spec(mine, pr);
  CacheFile f;
  // Another model; and the same name with fewer SMs (a MIG slice, say), which is not the same GPU.
  f.entries.push_back(entry(fake_gpu("Other GPU"), BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  f.entries.push_back(entry(fake_gpu(kGpu, 66), BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  ASSERT_EQ(bnorm_tuning_load(save("other.json", f).c_str()), BNORM_STATUS_SUCCESS);
  const std::string err = stderr_of([&] {
    for (int k = 0; k < 3; ++k) {
      const Picked got = choose(mine, pr);
      EXPECT_EQ(got.spec, expected);
      EXPECT_EQ(got.why, BNORM_CHOICE_HEURISTIC);
    }
  });
  EXPECT_EQ(warnings_in(err), 1) << err;
  EXPECT_NE(err.find(kGpu), std::string::npos) << err;
  // The GPU the file was made for does use it.
  EXPECT_EQ(choose(fake_gpu("Other GPU"), pr).why, BNORM_CHOICE_CACHE);
}

TEST_F(TuningCache, StaleVersionIsRejected) {
  const bnorm_handle h = fake_gpu();
  const bnorm::Problem pr = problem(BNORM_OP_FORWARD_TRAINING, kShape);
  CacheFile f;
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  f.library_minor = BNORM_VERSION_MINOR + 1;
  const std::string newer = save("newer.json", f);
  f.library_minor = BNORM_VERSION_MINOR;
  f.library_major = BNORM_VERSION_MAJOR + 1;
  const std::string other_major = save("major.json", f);
  for (const std::string& p : {newer, other_major}) {
    SCOPED_TRACE(p);
    bnorm_status_t st = BNORM_STATUS_SUCCESS;
    const std::string err = stderr_of([&] { st = bnorm_tuning_load(p.c_str()); });
    EXPECT_EQ(st, BNORM_STATUS_INVALID_VALUE);
    EXPECT_EQ(warnings_in(err), 1) << err;
    EXPECT_NE(err.find("stale"), std::string::npos) << err;
    EXPECT_EQ(choose(h, pr).why, BNORM_CHOICE_HEURISTIC);
  }
  // Another format version of the file.
  f.library_major = BNORM_VERSION_MAJOR;
  std::string text;
  {
    const std::string p = save("fmt.json", f);
    std::ifstream in(p);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string from = "\"format_version\": " + std::to_string(bnorm::tuning::kFormatVersion);
  ASSERT_NE(text.find(from), std::string::npos);
  text.replace(text.find(from), from.size(), "\"format_version\": 999");
  const std::string p = write_text("fmt999.json", text);
  bnorm_status_t st = BNORM_STATUS_SUCCESS;
  const std::string err = stderr_of([&] { st = bnorm_tuning_load(p.c_str()); });
  EXPECT_EQ(st, BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(warnings_in(err), 1) << err;
  EXPECT_EQ(choose(h, pr).why, BNORM_CHOICE_HEURISTIC);
}

// An entry whose n*c*h*w passes 2^62 (each size within the reader's 2^40) is rejected
// with the file, as the API rejects such a descriptor. It used to load, and the
// nearest-shape search then multiplied n*h*w = 2^120 in int64 (found by fuzz_tuning's
// input tests/fuzz/corpus/fuzz_tuning/regress_nearest_shape_overflow.json under UBSan).
TEST_F(TuningCache, EntryPastTwoToThe62ElementsIsRejected) {
  const bnorm_handle h = fake_gpu();
  CacheFile f;
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  f.entries.back().key.n = f.entries.back().key.h = f.entries.back().key.w = int64_t{1} << 40;
  const std::string p = save("huge.json", f);
  bnorm_status_t st = BNORM_STATUS_SUCCESS;
  const std::string err = stderr_of([&] { st = bnorm_tuning_load(p.c_str()); });
  EXPECT_EQ(st, BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("2^62"), std::string::npos) << bnorm_last_error();
  EXPECT_EQ(warnings_in(err), 1);
  // Dispatch falls back to the heuristic, and a nearby shape's query is safe.
  EXPECT_EQ(choose(h, problem(BNORM_OP_FORWARD_TRAINING, nchw(64, 64, 56, 56))).why, BNORM_CHOICE_HEURISTIC);
}

TEST_F(TuningCache, NearestShapeWithinFourTimes) {
  const bnorm_handle h = fake_gpu();
  constexpr const char* kBig = "two_pass_block:t512:v1:s1";
  constexpr const char* kBwdSmall = "two_pass_split:t512:v4:s2";
  constexpr const char* kBwdLarge = "two_pass_block:t256:v1:s1";
  CacheFile f;
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, kTuned));  // 32x64x56x56
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, nchw(256, 2048, 7, 7), kBig));
  f.entries.push_back(entry(h, BNORM_OP_BACKWARD, nchw(32, 64, 28, 28), kBwdSmall));
  f.entries.push_back(entry(h, BNORM_OP_BACKWARD, nchw(32, 64, 56, 56), kBwdLarge));
  ASSERT_EQ(bnorm_tuning_load(save("near.json", f).c_str()), BNORM_STATUS_SUCCESS);

  struct Case {
    bnorm_op_t op;
    bnorm_tensor_t d;
    const char* spec;  // nullptr: no entry applies
  };
  const bnorm_op_t fwd = BNORM_OP_FORWARD_TRAINING, bwd = BNORM_OP_BACKWARD;
  const Case cases[] = {
      {fwd, nchw(32, 64, 28, 28), kTuned},     // N*H*W / 4: at the limit
      {fwd, nchw(64, 64, 56, 56), kTuned},     // N*H*W * 2
      {fwd, nchw(32, 256, 56, 56), kTuned},    // C * 4
      {fwd, nchw(32, 16, 56, 56), kTuned},     // C / 4
      {fwd, nchw(32, 64, 14, 14), nullptr},    // N*H*W / 16
      {fwd, nchw(32, 512, 56, 56), nullptr},   // C * 8 (and N*H*W * 8 from the other entry)
      {fwd, nchw(32, 15, 56, 56), nullptr},    // C / 4.27
      {fwd, nchw(256, 1024, 7, 7), kBig},      // C / 2 from the other entry
      {bwd, nchw(32, 64, 36, 36), kBwdSmall},  // within 4x of both: the nearer
      {bwd, nchw(32, 64, 48, 48), kBwdLarge},
      // h*w = 841 rules out the nearest entry's vec-4 kernel: the next nearest serves.
      {bwd, nchw(32, 64, 29, 29), kBwdLarge},
      {BNORM_OP_FORWARD_INFERENCE, kShape, nullptr},  // no entry of this op
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(bnorm::tuning::op_name(c.op)) + " " + std::to_string(c.d.n) + "x" +
                 std::to_string(c.d.c) + "x" + std::to_string(c.d.h) + "x" + std::to_string(c.d.w));
    const Picked got = choose(h, problem(c.op, c.d));
    if (c.spec) {
      EXPECT_EQ(got.why, BNORM_CHOICE_NEAREST);
      EXPECT_EQ(got.spec, c.spec);
    } else {
      EXPECT_EQ(got.why, BNORM_CHOICE_HEURISTIC);
    }
  }
}

TEST_F(TuningCache, LoadAndClearRaceWithLookups) {
  const bnorm_handle h = fake_gpu();
  const bnorm::Problem pr = problem(BNORM_OP_FORWARD_TRAINING, kShape);
  const std::string expected_heuristic = heuristic_spec(h, pr);
  CacheFile f;
  f.entries.push_back(entry(h, BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  const std::string p = save("race.json", f);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t)
    readers.emplace_back([&] {
      while (!stop.load()) {
        bnorm::Choice c;
        if (!bnorm::choose(h, pr, &c).ok()) {
          ++bad;
          continue;
        }
        const std::string s = bnorm::format_spec(*c.variant, c.policy);
        const bool ok = (c.why == BNORM_CHOICE_CACHE && s == kTuned) ||
                        (c.why == BNORM_CHOICE_HEURISTIC && s == expected_heuristic);
        if (!ok) ++bad;
      }
    });
  for (int k = 0; k < 200; ++k) {
    ASSERT_EQ(bnorm_tuning_load(p.c_str()), BNORM_STATUS_SUCCESS);
    bnorm_tuning_clear();
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(TuningCache, WriteIsAtomicAndLeavesNoTemporaryFile) {
  CacheFile f;
  f.entries.push_back(entry(fake_gpu(), BNORM_OP_FORWARD_TRAINING, kShape, kTuned));
  const std::string p = save("atomic.json", f);
  f.entries.push_back(entry(fake_gpu(), BNORM_OP_BACKWARD, kShape, kTuned));
  ASSERT_TRUE(bnorm::tuning::write_file(p, f).ok());  // over an existing file
  CacheFile back;
  ASSERT_TRUE(bnorm::tuning::read_file(p, &back).ok());
  EXPECT_EQ(back.entries.size(), 2u);
  const std::string tmp = p + ".tmp." + std::to_string(static_cast<long>(getpid()));
  EXPECT_NE(access(tmp.c_str(), F_OK), 0);
  // A directory that does not exist: an error, not a crash.
  EXPECT_FALSE(bnorm::tuning::write_file(dir_ + "/no/such/dir/c.json", f).ok());
}

}  // namespace
