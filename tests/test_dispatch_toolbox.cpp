// Dispatch of the toolbox's operations without a GPU (a handle built by hand with an
// H100's SM count): every operation has variants whose specs round-trip, each listed
// configuration supports the call, the heuristic picks the one-pass kernels where a row
// fits on chip, and the per-sample norms refuse channels-last tensors with a reason.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "fake_gpu.hpp"
#include "host/dispatch.hpp"

namespace {

bnorm_handle h100() { return bnorm_test::fake_gpu(); }

bnorm::Problem problem(bnorm_op_t op, int64_t n, int64_t c, int64_t h, int64_t w, int64_t groups = 1,
                       bnorm_layout_t layout = BNORM_LAYOUT_NCHW, bool aligned = true) {
  bnorm::Problem p;
  p.op = op;
  p.desc = bnorm_tensor_t{n, c, h, w, layout, BNORM_DTYPE_F32};
  p.shape = bnorm::kern::Shape{n, c, h * w};
  p.groups = groups;
  p.aligned16 = aligned;
  bnorm::set_op_view(&p);
  return p;
}

const bnorm_op_t kToolboxOps[] = {BNORM_OP_BACKWARD_FROZEN,    BNORM_OP_GROUP_NORM_FORWARD, BNORM_OP_GROUP_NORM_BACKWARD,
                                  BNORM_OP_LAYER_NORM_FORWARD, BNORM_OP_LAYER_NORM_BACKWARD, BNORM_OP_FOLD,
                                  BNORM_OP_SYNC_LOCAL_STATS,   BNORM_OP_SYNC_FORWARD,       BNORM_OP_SYNC_BACKWARD_SUMS,
                                  BNORM_OP_SYNC_BACKWARD};

TEST(DispatchToolbox, EveryOpHasVariantsAndEverySpecRoundTrips) {
  const bnorm_handle h = h100();
  for (bnorm_op_t op : kToolboxOps)
    for (const auto& pr : {problem(op, 32, 64, 56, 56, 32), problem(op, 3, 5, 7, 9, 5), problem(op, 256, 768, 1, 1)}) {
      const auto configs = bnorm::supported_configs(h, pr);
      ASSERT_FALSE(configs.empty()) << op;
      bnorm::Choice heuristic;
      ASSERT_TRUE(bnorm::choose(h, pr, &heuristic).ok()) << op;
      EXPECT_EQ(bnorm::format_spec(*heuristic.variant, heuristic.policy),
                bnorm::format_spec(*configs[0].variant, configs[0].policy));
      std::set<std::string> specs;
      for (const auto& c : configs) {
        const std::string s = bnorm::format_spec(*c.variant, c.policy);
        EXPECT_TRUE(specs.insert(s).second) << "duplicate " << s;
        const bnorm::Variant* v = nullptr;
        bnorm::kern::Policy p;
        ASSERT_TRUE(bnorm::parse_spec(s, op, &pr, h.dev, &v, &p).ok()) << s;
        EXPECT_EQ(v, c.variant);
        EXPECT_EQ(v->why_not(pr, p, h.dev), "") << s;
      }
    }
}

TEST(DispatchToolbox, OnePassWhenTheRowFitsOnChip) {
  const bnorm_handle h = h100();
  bnorm::Choice c;
  // A transformer's layer norm: 768 values per row, forward and backward in one pass.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_LAYER_NORM_FORWARD, 4096, 768, 1, 1), &c).ok());
  EXPECT_STREQ(c.variant->name, "sample_fused");
  EXPECT_EQ(c.policy.vec, 4);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_LAYER_NORM_BACKWARD, 4096, 768, 1, 1), &c).ok());
  EXPECT_STREQ(c.variant->name, "ln_fused");
  // Rows past the register tile take two passes, the statistics split over CTAs when the
  // rows are too few to fill the GPU.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_LAYER_NORM_FORWARD, 4, 64, 56, 56), &c).ok());
  EXPECT_STREQ(c.variant->name, "sample_two_pass");
  EXPECT_GT(c.policy.splits, 1);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_LAYER_NORM_BACKWARD, 4, 64, 56, 56), &c).ok());
  EXPECT_STREQ(c.variant->name, "ln_two_pass");
  // ResNet's group norm: 32 groups of 2 channels of 56x56 (6272 values) fit at 256 threads.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_GROUP_NORM_FORWARD, 32, 64, 56, 56, 32), &c).ok());
  EXPECT_STREQ(c.variant->name, "sample_fused");
  EXPECT_EQ(c.policy.threads, 256);
  const bnorm::Variant* fused = bnorm::find_variant(BNORM_OP_GROUP_NORM_FORWARD, "sample_fused");
  const auto big = problem(BNORM_OP_GROUP_NORM_FORWARD, 32, 256, 56, 56, 8);
  EXPECT_NE(fused->why_not(big, bnorm::kern::Policy{512, 4, 1}, h.dev).find("holds"), std::string::npos);
  ASSERT_TRUE(bnorm::choose(h, big, &c).ok());
  EXPECT_STREQ(c.variant->name, "sample_two_pass");
}

TEST(DispatchToolbox, VectorsFollowTheAffineFeatures) {
  const bnorm_handle h = h100();
  bnorm::Choice c;
  // Group norm: a vector must stay within one channel, so h*w decides.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_GROUP_NORM_FORWARD, 8, 32, 7, 7, 8), &c).ok());
  EXPECT_EQ(c.policy.vec, 1);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_GROUP_NORM_BACKWARD, 8, 32, 8, 8, 8), &c).ok());
  EXPECT_EQ(c.policy.vec, 4);
  // On an (N, C) matrix the forward's rows (a group's channels) take vectors, but the
  // backward's per-(sample, channel) rows hold one value each.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_GROUP_NORM_FORWARD, 8, 64, 1, 1, 8), &c).ok());
  EXPECT_EQ(c.policy.vec, 4);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_GROUP_NORM_BACKWARD, 8, 64, 1, 1, 8), &c).ok());
  EXPECT_EQ(c.policy.vec, 1);
  EXPECT_NE(bnorm::find_variant(BNORM_OP_GROUP_NORM_BACKWARD, "group_two_pass")
                ->why_not(problem(BNORM_OP_GROUP_NORM_BACKWARD, 8, 64, 1, 1, 8), bnorm::kern::Policy{256, 4, 1}, h.dev),
            "");
  // Layer norm: every value is its own feature; the row length decides.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_LAYER_NORM_FORWARD, 8, 4, 7, 7), &c).ok());
  EXPECT_EQ(c.policy.vec, 4);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_LAYER_NORM_FORWARD, 8, 33, 1, 1), &c).ok());
  EXPECT_EQ(c.policy.vec, 1);
  // Folding: k weights per output channel.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_FOLD, 64, 32, 3, 3), &c).ok());
  EXPECT_EQ(c.policy.vec, 4);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_FOLD, 64, 3, 3, 3), &c).ok());
  EXPECT_EQ(c.policy.vec, 1);
}

TEST(DispatchToolbox, ChannelsLastTakesTheRowKernelsOrIsRefused) {
  const bnorm_handle h = h100();
  bnorm::Choice c;
  for (bnorm_op_t op : {BNORM_OP_BACKWARD_FROZEN, BNORM_OP_SYNC_LOCAL_STATS, BNORM_OP_SYNC_FORWARD,
                        BNORM_OP_SYNC_BACKWARD_SUMS, BNORM_OP_SYNC_BACKWARD}) {
    ASSERT_TRUE(bnorm::choose(h, problem(op, 32, 64, 28, 28, 1, BNORM_LAYOUT_NHWC), &c).ok()) << op;
    EXPECT_EQ(std::string(c.variant->name).rfind("nhwc_", 0), 0u) << c.variant->name;
  }
  // Folding does not care: an output channel's weights are contiguous in both layouts.
  EXPECT_TRUE(bnorm::choose(h, problem(BNORM_OP_FOLD, 64, 32, 3, 3, 1, BNORM_LAYOUT_NHWC), &c).ok());
  for (bnorm_op_t op : {BNORM_OP_GROUP_NORM_FORWARD, BNORM_OP_GROUP_NORM_BACKWARD, BNORM_OP_LAYER_NORM_FORWARD,
                        BNORM_OP_LAYER_NORM_BACKWARD}) {
    const bnorm::Status s = bnorm::choose(h, problem(op, 32, 64, 28, 28, 8, BNORM_LAYOUT_NHWC), &c);
    EXPECT_EQ(s.code, BNORM_STATUS_NOT_SUPPORTED) << op;
    EXPECT_NE(s.message.find("NCHW"), std::string::npos) << s.message;
    EXPECT_TRUE(bnorm::supported_configs(h, problem(op, 32, 64, 28, 28, 8, BNORM_LAYOUT_NHWC)).empty());
    // An (N, C) matrix is both layouts.
    EXPECT_TRUE(bnorm::choose(h, problem(op, 32, 64, 1, 1, 8, BNORM_LAYOUT_NHWC), &c).ok()) << op;
  }
}

TEST(DispatchToolbox, ViewsCountTheRowsOfEachOp) {
  EXPECT_EQ(problem(BNORM_OP_GROUP_NORM_FORWARD, 4, 64, 7, 7, 32).shape.c, 4 * 32);
  EXPECT_EQ(problem(BNORM_OP_GROUP_NORM_FORWARD, 4, 64, 7, 7, 32).shape.hw, 2 * 49);
  EXPECT_EQ(problem(BNORM_OP_GROUP_NORM_BACKWARD, 4, 64, 7, 7, 32).shape.c, 4 * 64);
  EXPECT_EQ(problem(BNORM_OP_LAYER_NORM_FORWARD, 4, 64, 7, 7).shape.hw, 64 * 49);
  EXPECT_EQ(problem(BNORM_OP_FOLD, 128, 64, 3, 3).shape.c, 128);
  EXPECT_EQ(problem(BNORM_OP_FOLD, 128, 64, 3, 3).shape.hw, 64 * 9);
  EXPECT_EQ(problem(BNORM_OP_SYNC_FORWARD, 4, 64, 7, 7).shape.c, 64);
  const auto s = bnorm::sample_shape(problem(BNORM_OP_GROUP_NORM_FORWARD, 4, 64, 7, 7, 32));
  EXPECT_EQ(s.rows(), 128);
  EXPECT_EQ(s.row_len(), 98);
  EXPECT_EQ(s.affine_stride, 49);
  EXPECT_EQ(s.features(), 64);
  const auto l = bnorm::sample_shape(problem(BNORM_OP_LAYER_NORM_BACKWARD, 4, 64, 7, 7, 32));
  EXPECT_EQ(l.groups, 1);
  EXPECT_EQ(l.features(), 64 * 49);
}

}  // namespace
