// Every public call that does work opens an NVTX range in the "bnorm" domain named by the
// function, and closes it, on success and on failure alike. The ranges are observed as a
// profiler would see them: through NVTX's injection interface, with nvtx_recorder.so
// (NVTX_INJECTION64_PATH, set by ctest). Each public function of the headers is either
// called here or named as an accessor without a range, so a new entry point without
// either fails the test.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#if defined(BNORM_TEST_DLPACK)
#include "bnorm/bnorm_dlpack.h"
#endif

namespace {

using TakeFn = char* (*)();

// The recorder's log since the last take (the library NVTX loaded: the same path gives
// the same module).
std::string take_log() {
  static TakeFn take = [] {
    const char* path = std::getenv("NVTX_INJECTION64_PATH");
    void* lib = path ? dlopen(path, RTLD_NOW) : nullptr;
    return lib ? reinterpret_cast<TakeFn>(dlsym(lib, "nvtx_recorder_take")) : nullptr;
  }();
  if (!take) return "";
  char* s = take();
  std::string out = s ? s : "";
  std::free(s);
  return out;
}

class Nvtx : public testing::Test {
 protected:
  void SetUp() override {
    if (!std::getenv("NVTX_INJECTION64_PATH"))
      GTEST_SKIP() << "run through ctest: NVTX_INJECTION64_PATH names the recorder";
    take_log();
  }
};

// The functions without a range: they only read or format state, and a range would cost
// more than they do.
const std::set<std::string> kAccessors = {"bnorm_get_version", "bnorm_status_string", "bnorm_last_error",
                                          "bnorm_get_stream",  "bnorm_get_backend",   "bnorm_report_error",
                                          "bnorm_get_cpu_threads"};

struct Call {
  const char* name;
  std::function<bnorm_status_t()> run;
};

// Each entry point with a NULL handle (or NULL arguments): the call fails validation,
// and its range must open and close all the same.
std::vector<Call> calls_with_bad_arguments() {
  bnorm_handle_t h = nullptr;
  const bnorm_tensor_t* d = nullptr;
  const bnorm_activation_t relu = BNORM_ACTIVATION_RELU;
  const bnorm_op_t fwd = BNORM_OP_FORWARD_TRAINING;
  return {
      {"bnorm_create", [=] { return bnorm_create(nullptr, BNORM_BACKEND_CPU, 0); }},
      {"bnorm_destroy", [=] { return bnorm_destroy(h); }},
      {"bnorm_set_stream", [=] { return bnorm_set_stream(h, nullptr); }},
      {"bnorm_forward_training",
       [=] { return bnorm_forward_training(h, d, nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f, nullptr, nullptr,
                                           nullptr, nullptr); }},
      {"bnorm_forward_inference",
       [=] { return bnorm_forward_inference(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1e-5f); }},
      {"bnorm_backward",
       [=] { return bnorm_backward(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr); }},
      {"bnorm_forward_training_fused",
       [=] { return bnorm_forward_training_fused(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f,
                                                 nullptr, nullptr, nullptr, nullptr, relu); }},
      {"bnorm_forward_inference_fused",
       [=] { return bnorm_forward_inference_fused(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                  1e-5f, relu); }},
      {"bnorm_backward_fused",
       [=] { return bnorm_backward_fused(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                         nullptr, nullptr, relu); }},
      {"bnorm_backward_frozen",
       [=] { return bnorm_backward_frozen(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr,
                                          nullptr); }},
      {"bnorm_fold_into_weights",
       [=] { return bnorm_fold_into_weights(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1e-5f,
                                            nullptr, nullptr); }},
      {"bnorm_group_norm_forward",
       [=] { return bnorm_group_norm_forward(h, d, 1, nullptr, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr); }},
      {"bnorm_group_norm_backward",
       [=] { return bnorm_group_norm_backward(h, d, 1, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr); }},
      {"bnorm_instance_norm_forward",
       [=] { return bnorm_instance_norm_forward(h, d, nullptr, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr); }},
      {"bnorm_instance_norm_backward",
       [=] { return bnorm_instance_norm_backward(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                 nullptr); }},
      {"bnorm_layer_norm_forward",
       [=] { return bnorm_layer_norm_forward(h, d, nullptr, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr); }},
      {"bnorm_layer_norm_backward",
       [=] { return bnorm_layer_norm_backward(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr); }},
      {"bnorm_sync_local_stats", [=] { return bnorm_sync_local_stats(h, d, nullptr, nullptr); }},
      {"bnorm_sync_merge_stats", [=] { return bnorm_sync_merge_stats(h, 1, 1, nullptr, nullptr); }},
      {"bnorm_sync_forward",
       [=] { return bnorm_sync_forward(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f, nullptr,
                                       nullptr, nullptr, nullptr); }},
      {"bnorm_sync_backward_sums", [=] { return bnorm_sync_backward_sums(h, d, nullptr, nullptr, nullptr, nullptr); }},
      {"bnorm_sync_backward",
       [=] { return bnorm_sync_backward(h, d, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                        nullptr, nullptr); }},
      {"bnorm_set_variant", [=] { return bnorm_set_variant(h, fwd, nullptr); }},
      {"bnorm_set_cpu_threads", [=] { return bnorm_set_cpu_threads(h, 0); }},
      {"bnorm_query_variant", [=] { return bnorm_query_variant(h, fwd, d, 1, nullptr, 0, nullptr); }},
      {"bnorm_list_variants", [=] { return bnorm_list_variants(h, fwd, d, 1, nullptr, 0, nullptr, nullptr); }},
      {"bnorm_query_variant_grouped",
       [=] { return bnorm_query_variant_grouped(h, fwd, d, 1, 1, nullptr, 0, nullptr); }},
      {"bnorm_list_variants_grouped",
       [=] { return bnorm_list_variants_grouped(h, fwd, d, 1, 1, nullptr, 0, nullptr, nullptr); }},
      {"bnorm_tuning_load", [=] { return bnorm_tuning_load(nullptr); }},
#if defined(BNORM_TEST_DLPACK)
      {"bnorm_dlpack_describe", [=] { return bnorm_dlpack_describe(h, nullptr, nullptr, nullptr); }},
      {"bnorm_dlpack_forward_training",
       [=] { return bnorm_dlpack_forward_training(h, nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f, nullptr, nullptr,
                                                  nullptr, nullptr); }},
      {"bnorm_dlpack_forward_inference",
       [=] { return bnorm_dlpack_forward_inference(h, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1e-5f); }},
      {"bnorm_dlpack_backward",
       [=] { return bnorm_dlpack_backward(h, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                          nullptr); }},
#endif
  };
}

TEST_F(Nvtx, EveryCallOpensAndClosesItsRangeEvenWhenItFails) {
  for (const Call& c : calls_with_bad_arguments()) {
    SCOPED_TRACE(c.name);
    EXPECT_NE(c.run(), BNORM_STATUS_SUCCESS);
    EXPECT_EQ(take_log(), std::string("push bnorm/") + c.name + "\npop bnorm\n");
  }
  EXPECT_EQ(bnorm_tuning_clear(), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(take_log(), "push bnorm/bnorm_tuning_clear\npop bnorm\n");
}

TEST_F(Nvtx, ASuccessfulCallHasOneRangeAndAccessorsHaveNone) {
  bnorm_handle_t h = nullptr;
  ASSERT_EQ(bnorm_create(&h, BNORM_BACKEND_CPU, 0), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(take_log(), "push bnorm/bnorm_create\npop bnorm\n");
  const bnorm_tensor_t d{2, 3, 2, 2, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  std::vector<float> x(24), y(24), mean(3), invstd(3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i % 7) - 1.0f;
  ASSERT_EQ(bnorm_forward_training(h, &d, x.data(), y.data(), nullptr, nullptr, 0.1f, 1e-5f, nullptr, nullptr,
                                   mean.data(), invstd.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  EXPECT_EQ(take_log(), "push bnorm/bnorm_forward_training\npop bnorm\n");

  bnorm_backend_t b;
  void* stream = nullptr;
  EXPECT_EQ(bnorm_get_backend(h, &b), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(bnorm_get_stream(h, &stream), BNORM_STATUS_SUCCESS);
  int threads = 0;
  EXPECT_EQ(bnorm_get_cpu_threads(h, &threads), BNORM_STATUS_SUCCESS);
  (void)bnorm_get_version();
  (void)bnorm_status_string(BNORM_STATUS_SUCCESS);
  (void)bnorm_last_error();
  EXPECT_EQ(take_log(), "");
  EXPECT_EQ(bnorm_destroy(h), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(take_log(), "push bnorm/bnorm_destroy\npop bnorm\n");
}

// The headers' entry points, each called above or listed as an accessor.
TEST(NvtxCoverage, EveryPublicFunctionIsCalledOrAnAccessor) {
  std::set<std::string> known(kAccessors);
  for (const Call& c : calls_with_bad_arguments()) known.insert(c.name);
  known.insert("bnorm_tuning_clear");
  std::vector<std::string> headers = {"bnorm.h"};
#if defined(BNORM_TEST_DLPACK)
  headers.push_back("bnorm_dlpack.h");
#endif
  const std::regex decl(R"(BNORM_API[^;(]*\b(bnorm_[a-z0-9_]+)\s*\()");
  int found = 0;
  for (const std::string& name : headers) {
    std::ifstream in(std::string(BNORM_HEADER_DIR) + "/" + name);
    ASSERT_TRUE(in) << name;
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    for (std::sregex_iterator it(s.begin(), s.end(), decl), end; it != end; ++it) {
      ++found;
      EXPECT_TRUE(known.count((*it)[1].str())) << (*it)[1].str() << " is neither tested for its range nor an accessor";
    }
  }
  EXPECT_GT(found, 30);
}

}  // namespace
