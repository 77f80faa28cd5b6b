// The empty batch (n = 0), on the CPU backend: every operation succeeds with NULL tensor
// pointers, writes no statistics and leaves running statistics untouched (PyTorch's
// behaviour), writes the sums over no values as 0, and synchronized batch norm's empty
// rank still takes the whole batch's statistics. Negative sizes stay errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "host_helpers.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

constexpr float kSentinel = 12345.678f;

struct Channels {
  std::vector<float> gamma, beta, rm, rv, sm, si, dg, db;
  explicit Channels(int64_t c)
      : gamma(c, 1.5f), beta(c, 0.5f), rm(c, kSentinel), rv(c, kSentinel), sm(c, kSentinel), si(c, kSentinel),
        dg(c, kSentinel), db(c, kSentinel) {}
};

bool all(const std::vector<float>& v, float e) {
  for (float x : v)
    if (x != e) return false;
  return true;
}

class EmptyBatch : public testing::TestWithParam<bnorm_layout_t> {
 protected:
  bnorm_tensor_t d{0, 3, 4, 5, GetParam(), BNORM_DTYPE_F32};
};

TEST_P(EmptyBatch, BatchNormIsANoOpAndLeavesRunningStatisticsAlone) {
  Handle h;
  Channels ch(3);
  ASSERT_EQ(bnorm_forward_training(h.h, &d, nullptr, nullptr, ch.gamma.data(), ch.beta.data(), 0.1f, 1e-5f,
                                   ch.rm.data(), ch.rv.data(), ch.sm.data(), ch.si.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  EXPECT_TRUE(all(ch.rm, kSentinel) && all(ch.rv, kSentinel) && all(ch.sm, kSentinel) && all(ch.si, kSentinel));
  ASSERT_EQ(bnorm_forward_inference(h.h, &d, nullptr, nullptr, nullptr, nullptr, ch.gamma.data(), ch.beta.data(),
                                    1e-5f),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_forward_training_fused(h.h, &d, nullptr, nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f,
                                         ch.rm.data(), ch.rv.data(), nullptr, nullptr, BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(ch.rm, kSentinel) && all(ch.rv, kSentinel));
  // Gradients of gamma and beta are sums over no values: 0.
  ASSERT_EQ(bnorm_backward(h.h, &d, nullptr, nullptr, nullptr, ch.gamma.data(), ch.beta.data(), nullptr,
                           ch.dg.data(), ch.db.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  EXPECT_TRUE(all(ch.dg, 0.0f) && all(ch.db, 0.0f));
  Channels ch2(3);
  ASSERT_EQ(bnorm_backward_fused(h.h, &d, nullptr, nullptr, nullptr, nullptr, ch.gamma.data(), ch.beta.data(),
                                 nullptr, nullptr, ch2.dg.data(), ch2.db.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(ch2.dg, 0.0f) && all(ch2.db, 0.0f));
  Channels ch3(3);
  ASSERT_EQ(bnorm_backward_frozen(h.h, &d, nullptr, nullptr, nullptr, ch.gamma.data(), ch.beta.data(), 1e-5f, nullptr,
                                  ch3.dg.data(), ch3.db.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(ch3.dg, 0.0f) && all(ch3.db, 0.0f));
}

TEST_P(EmptyBatch, PerSampleNormsAreNoOps) {
  Handle h;
  Channels ch(3);
  const int64_t k = 3 * 4 * 5;
  std::vector<float> lg(k, 1.0f), ldg(k, kSentinel), ldb(k, kSentinel);
  ASSERT_EQ(bnorm_group_norm_forward(h.h, &d, 3, nullptr, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_instance_norm_forward(h.h, &d, nullptr, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_layer_norm_forward(h.h, &d, nullptr, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_group_norm_backward(h.h, &d, 3, nullptr, nullptr, ch.gamma.data(), nullptr, nullptr, nullptr,
                                      ch.dg.data(), ch.db.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  EXPECT_TRUE(all(ch.dg, 0.0f) && all(ch.db, 0.0f));
  ASSERT_EQ(bnorm_layer_norm_backward(h.h, &d, nullptr, nullptr, lg.data(), nullptr, nullptr, nullptr, ldg.data(),
                                      ldb.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(ldg, 0.0f) && all(ldb, 0.0f));
}

TEST_P(EmptyBatch, AnEmptyRankOfSynchronizedBatchNormStillTakesTheGlobalStatistics) {
  Handle h;
  Channels ch(3);
  std::vector<float> local(9, kSentinel), sums(6, kSentinel);
  ASSERT_EQ(bnorm_sync_local_stats(h.h, &d, nullptr, local.data()), BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(local, 0.0f));
  // The other ranks' batch: 4 values per channel of mean 2 and M2 6 (biased variance 1.5).
  const std::vector<float> global = {4, 2, 6, 4, 2, 6, 4, 2, 6};
  std::vector<float> rm(3, 0.0f), rv(3, 1.0f);
  ASSERT_EQ(bnorm_sync_forward(h.h, &d, nullptr, nullptr, nullptr, nullptr, global.data(), 0.5f, 1e-5f, rm.data(),
                               rv.data(), ch.sm.data(), ch.si.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(rm, 1.0f));  // 0.5 * 0 + 0.5 * 2
  EXPECT_TRUE(all(rv, 1.5f));  // 0.5 * 1 + 0.5 * 6 / 3
  EXPECT_TRUE(all(ch.sm, 2.0f));
  ASSERT_EQ(bnorm_sync_backward_sums(h.h, &d, nullptr, nullptr, ch.sm.data(), sums.data()), BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(sums, 0.0f));
  const std::vector<float> global_sums = {1, 2, 1, 2, 1, 2};
  ASSERT_EQ(bnorm_sync_backward(h.h, &d, nullptr, nullptr, nullptr, ch.sm.data(), ch.si.data(), global.data(),
                                global_sums.data(), nullptr, ch.dg.data(), ch.db.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_TRUE(all(ch.db, 1.0f));
  EXPECT_FLOAT_EQ(ch.dg[0], 2.0f * ch.si[0]);
}

INSTANTIATE_TEST_SUITE_P(Layouts, EmptyBatch, testing::Values(BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC));

TEST(EmptyBatchValidation, NegativeSizesAndEmptyChannelsStayErrors) {
  Handle h;
  float rm[3], rv[3];
  for (bnorm_tensor_t d : {bnorm_tensor_t{-1, 3, 4, 5, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32},
                           bnorm_tensor_t{0, 0, 4, 5, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32},
                           bnorm_tensor_t{0, 3, 0, 5, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32}}) {
    EXPECT_EQ(bnorm_forward_training(h.h, &d, nullptr, nullptr, nullptr, nullptr, 0.1f, 1e-5f, rm, rv, nullptr,
                                     nullptr),
              BNORM_STATUS_INVALID_VALUE);
  }
  // Arguments are still checked for an empty batch.
  const bnorm_tensor_t d{0, 3, 4, 5, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  EXPECT_EQ(bnorm_forward_training(h.h, &d, nullptr, nullptr, nullptr, nullptr, 0.1f, -1.0f, rm, rv, nullptr, nullptr),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_forward_inference(h.h, &d, nullptr, nullptr, nullptr, nullptr, nullptr, rv, 1e-5f),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("running_mean"), std::string::npos);
  // The variant queries run no kernel for an empty batch and say so.
  int count = 0;
  EXPECT_EQ(bnorm_list_variants(h.h, BNORM_OP_FORWARD_TRAINING, &d, 1, nullptr, 0, &count, nullptr),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("empty batch"), std::string::npos);
}

}  // namespace
