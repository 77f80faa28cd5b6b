// Dispatch without a GPU: spec strings, the registry's spaces, and the heuristic's
// choices for the shapes that matter (a handle is built by hand with an H100's SM count).
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <string>

#include "fake_gpu.hpp"
#include "host/dispatch.hpp"

namespace {

bnorm_handle h100() { return bnorm_test::fake_gpu(); }

bnorm::Problem problem(bnorm_op_t op, int64_t n, int64_t c, int64_t h, int64_t w, bool aligned = true) {
  bnorm::Problem p;
  p.op = op;
  p.desc = bnorm_tensor_t{n, c, h, w, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  p.shape = bnorm::kern::Shape{n, c, h * w};
  p.aligned16 = aligned;
  return p;
}

const bnorm_op_t kOps[] = {BNORM_OP_FORWARD_TRAINING, BNORM_OP_FORWARD_INFERENCE, BNORM_OP_BACKWARD};

TEST(Dispatch, EveryOpHasVariantsAndEverySpecRoundTrips) {
  const bnorm_handle h = h100();
  for (bnorm_op_t op : kOps) {
    const auto pr = problem(op, 32, 64, 56, 56);
    const auto configs = bnorm::supported_configs(h, pr);
    ASSERT_FALSE(configs.empty());
    std::set<std::string> specs;
    for (const auto& c : configs) {
      const std::string s = bnorm::format_spec(*c.variant, c.policy);
      EXPECT_TRUE(specs.insert(s).second) << "duplicate " << s;
      const bnorm::Variant* v = nullptr;
      bnorm::kern::Policy p;
      ASSERT_TRUE(bnorm::parse_spec(s, op, &pr, h.dev, &v, &p).ok()) << s;
      EXPECT_EQ(v, c.variant);
      EXPECT_EQ(p.threads, c.policy.threads);
      EXPECT_EQ(p.vec, c.policy.vec);
      EXPECT_EQ(p.splits, c.policy.splits);
      EXPECT_EQ(v->why_not(pr, p, h.dev), "") << s;
    }
  }
}

TEST(Dispatch, MalformedAndForeignSpecsAreRejected) {
  const auto pr = problem(BNORM_OP_FORWARD_TRAINING, 8, 8, 8, 8);
  const bnorm::Variant* v = nullptr;
  bnorm::kern::Policy p;
  const bnorm_handle h = h100();
  for (const char* bad : {"", ":t256", "two_pass_split:x4", "two_pass_split:t", "two_pass_split:t-1",
                          "two_pass_split:t256:", "no_such_variant", "normalize"}) {
    EXPECT_FALSE(bnorm::parse_spec(bad, BNORM_OP_FORWARD_TRAINING, &pr, h.dev, &v, &p).ok()) << bad;
  }
  EXPECT_TRUE(bnorm::spec_names_op("normalize:t128", BNORM_OP_FORWARD_INFERENCE));
  EXPECT_FALSE(bnorm::spec_names_op("normalize:t128", BNORM_OP_BACKWARD));
}

TEST(Dispatch, PartialSpecTakesHeuristicForTheRest) {
  const bnorm_handle h = h100();
  const auto pr = problem(BNORM_OP_FORWARD_TRAINING, 128, 6, 24, 24);
  const bnorm::Variant* v = nullptr;
  bnorm::kern::Policy p;
  ASSERT_TRUE(bnorm::parse_spec("two_pass_split:t128", pr.op, &pr, h.dev, &v, &p).ok());
  EXPECT_EQ(p.threads, 128);
  EXPECT_EQ(p.vec, 4);
  EXPECT_GE(p.splits, 2);
}

TEST(Dispatch, HeuristicPrefersOnePassAndSplitsFewChannels) {
  const bnorm_handle h = h100();
  bnorm::Choice c;
  // LeNet's first BN: 6 channels of 73728 values fit on chip; unsplit they would use 6
  // of 132 SMs, so the persistent kernel spreads each over many CTAs.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_FORWARD_TRAINING, 128, 6, 24, 24), &c).ok());
  EXPECT_STREQ(c.variant->name, "persistent");
  EXPECT_GE(c.policy.splits * 6, 132);
  EXPECT_EQ(c.why, BNORM_CHOICE_HEURISTIC);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_BACKWARD, 32, 1024, 14, 14), &c).ok());
  EXPECT_STREQ(c.variant->name, "persistent");
  // Large forward tensors stream faster in two passes than in persistent rounds.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_FORWARD_TRAINING, 32, 1024, 14, 14), &c).ok());
  EXPECT_STREQ(c.variant->name, "two_pass_block");
  // A channel of 16.7M values is larger than the chip: two passes, split over CTAs when
  // the channels are few...
  const auto huge_few = problem(BNORM_OP_FORWARD_TRAINING, 4096, 2, 64, 64);
  ASSERT_TRUE(bnorm::choose(h, huge_few, &c).ok());
  EXPECT_STREQ(c.variant->name, "two_pass_split");
  EXPECT_GE(c.policy.splits * 2, 132);
  const bnorm::Variant* p = bnorm::find_variant(BNORM_OP_FORWARD_TRAINING, "persistent");
  EXPECT_NE(p->why_not(huge_few, p->heuristic(huge_few, h.dev), h.dev).find("CTAs per channel"), std::string::npos);
  // ... and one CTA per channel when they fill the GPU.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_BACKWARD, 2048, 1024, 64, 64), &c).ok());
  EXPECT_STREQ(c.variant->name, "two_pass_block");
  // Odd sizes and misalignment fall back to scalar loads.
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_FORWARD_TRAINING, 3, 5, 7, 9), &c).ok());
  EXPECT_EQ(c.policy.vec, 1);
  ASSERT_TRUE(bnorm::choose(h, problem(BNORM_OP_FORWARD_TRAINING, 32, 64, 56, 56, false), &c).ok());
  EXPECT_EQ(c.policy.vec, 1);
}

TEST(Dispatch, PersistentSpaceFitsTheDevice) {
  const bnorm_handle h = h100();
  // The largest suite channel (3.2M values) fits forward's register tiles; backward holds
  // x and dy, so its largest fitting suite channel is 800K values.
  for (bnorm_op_t op : {BNORM_OP_FORWARD_TRAINING, BNORM_OP_BACKWARD}) {
    const auto pr = op == BNORM_OP_BACKWARD ? problem(op, 256, 256, 56, 56) : problem(op, 256, 64, 112, 112);
    int persistent = 0;
    for (const auto& c : bnorm::supported_configs(h, pr)) {
      if (std::string(c.variant->name) != "persistent") continue;
      ++persistent;
      bnorm::kern::PersistentPlan plan;
      const int held = op == BNORM_OP_BACKWARD ? 2 : 1;
      ASSERT_TRUE(bnorm::kern::persistent_plan(pr.shape, c.policy, 2 * 132, held, &plan));
      EXPECT_LE(plan.grid, 2 * 132);
      EXPECT_GE(plan.rounds * plan.channels_per_round, pr.shape.c);
      // Every vector of a channel has a slot: splits * threads * items >= vectors.
      EXPECT_GE(int64_t{c.policy.splits} * bnorm::kern::persistent_vectors_per_cta(c.policy, held),
                pr.shape.m() / c.policy.vec);
    }
    EXPECT_GT(persistent, 0);
  }
}

TEST(Dispatch, HandleOverrideWinsAndUnsupportedOverrideFails) {
  bnorm_handle h = h100();
  const auto pr = problem(BNORM_OP_FORWARD_TRAINING, 32, 64, 56, 56);
  h.forced[BNORM_OP_FORWARD_TRAINING] = "two_pass_block:t128:v1";
  bnorm::Choice c;
  ASSERT_TRUE(bnorm::choose(h, pr, &c).ok());
  EXPECT_EQ(c.why, BNORM_CHOICE_OVERRIDE);
  EXPECT_EQ(bnorm::format_spec(*c.variant, c.policy), "two_pass_block:t128:v1:s1");
  h.forced[BNORM_OP_FORWARD_TRAINING] = "two_pass_block:v4";
  EXPECT_EQ(bnorm::choose(h, problem(BNORM_OP_FORWARD_TRAINING, 3, 5, 7, 9), &c).code,
            BNORM_STATUS_NOT_SUPPORTED);
  h.forced[BNORM_OP_FORWARD_TRAINING] = "two_pass_block:t96";
  EXPECT_EQ(bnorm::choose(h, pr, &c).code, BNORM_STATUS_NOT_SUPPORTED);
}

// BNORM_VARIANT forces the ops whose variants it names and leaves the others to the
// heuristic; a handle's own override wins over it.
TEST(Dispatch, EnvironmentOverrideAppliesToTheOpsItNames) {
  struct EnvGuard {
    ~EnvGuard() { unsetenv("BNORM_VARIANT"); }
  } guard;
  bnorm_handle h = h100();
  const auto fwd = problem(BNORM_OP_FORWARD_TRAINING, 32, 64, 56, 56);
  const auto inf = problem(BNORM_OP_FORWARD_INFERENCE, 32, 64, 56, 56);
  bnorm::Choice c;
  ASSERT_TRUE(bnorm::choose(h, fwd, &c).ok());
  const std::string heuristic = bnorm::format_spec(*c.variant, c.policy);
  ASSERT_EQ(c.why, BNORM_CHOICE_HEURISTIC);

  const std::string forced = heuristic.rfind("two_pass_block", 0) == 0 ? "two_pass_split:t128:v1:s4"
                                                                        : "two_pass_block:t128:v1:s1";
  ASSERT_EQ(setenv("BNORM_VARIANT", forced.c_str(), 1), 0);
  ASSERT_TRUE(bnorm::choose(h, fwd, &c).ok());
  EXPECT_EQ(c.why, BNORM_CHOICE_OVERRIDE);
  EXPECT_EQ(bnorm::format_spec(*c.variant, c.policy), forced);
  // Inference has no two-pass variants: the variable does not name it.
  ASSERT_TRUE(bnorm::choose(h, inf, &c).ok());
  EXPECT_EQ(c.why, BNORM_CHOICE_HEURISTIC);

  h.forced[BNORM_OP_FORWARD_TRAINING] = heuristic;
  ASSERT_TRUE(bnorm::choose(h, fwd, &c).ok());
  EXPECT_EQ(bnorm::format_spec(*c.variant, c.policy), heuristic);
}

TEST(Dispatch, SixteenBitTypesLoadEightPerAccess) {
  const bnorm_handle h = h100();
  for (bnorm_dtype_t t : {BNORM_DTYPE_F16, BNORM_DTYPE_BF16}) {
    auto pr = problem(BNORM_OP_FORWARD_TRAINING, 32, 64, 28, 28);
    pr.desc.dtype = t;
    pr.shape.dtype = t == BNORM_DTYPE_F16 ? bnorm::kern::DType::F16 : bnorm::kern::DType::BF16;
    bnorm::Choice c;
    ASSERT_TRUE(bnorm::choose(h, pr, &c).ok());
    EXPECT_EQ(c.policy.vec, 8);
    for (const auto& cfg : bnorm::supported_configs(h, pr)) EXPECT_TRUE(cfg.policy.vec == 8 || cfg.policy.vec == 1);
    // 28*28 is a multiple of 4 but 7*7*4 = 196 elements of a row are not of 8: scalar.
    pr.shape.hw = 7 * 7 * 4 + 2;
    ASSERT_TRUE(bnorm::choose(h, pr, &c).ok());
    EXPECT_EQ(c.policy.vec, 1);
    bnorm::kern::Policy four{256, 4, 1};
    EXPECT_NE(bnorm::find_variant(BNORM_OP_FORWARD_TRAINING, "two_pass_block")->why_not(pr, four, h.dev), "");
  }
}

TEST(Dispatch, ChannelsLastAndMatricesTakeTheRowKernels) {
  const bnorm_handle h = h100();
  for (bnorm_op_t op : kOps) {
    auto pr = problem(op, 32, 64, 56, 56);
    pr.desc.layout = BNORM_LAYOUT_NHWC;
    bnorm::Choice c;
    ASSERT_TRUE(bnorm::choose(h, pr, &c).ok());
    EXPECT_EQ(std::string(c.variant->name).rfind("nhwc_", 0), 0u) << c.variant->name;
    EXPECT_EQ(c.policy.vec, 4);
    for (const auto& cfg : bnorm::supported_configs(h, pr))
      EXPECT_EQ(std::string(cfg.variant->name).rfind("nhwc_", 0), 0u) << bnorm::format_spec(*cfg.variant, cfg.policy);
    // An (N, C) matrix is both layouts at once; the row kernels read it coalesced.
    ASSERT_TRUE(bnorm::choose(h, problem(op, 128, 120, 1, 1), &c).ok());
    EXPECT_EQ(std::string(c.variant->name).rfind("nhwc_", 0), 0u) << c.variant->name;
    // C = 6 is not a multiple of 4: scalar accesses across the row.
    pr = problem(op, 128, 6, 24, 24);
    pr.desc.layout = BNORM_LAYOUT_NHWC;
    ASSERT_TRUE(bnorm::choose(h, pr, &c).ok());
    EXPECT_EQ(c.policy.vec, 1);
  }
  EXPECT_EQ(bnorm::kern::nhwc_lanes(bnorm::kern::Shape{2, 3, 1}, bnorm::kern::Policy{256, 1, 1}), 4);
  EXPECT_EQ(bnorm::kern::nhwc_lanes(bnorm::kern::Shape{2, 2048, 1}, bnorm::kern::Policy{256, 4, 1}), 32);
  EXPECT_EQ(bnorm::kern::nhwc_lanes(bnorm::kern::Shape{2, 64, 1}, bnorm::kern::Policy{256, 4, 1}), 16);
}

TEST(Dispatch, SpacesRespectVectorRules) {
  const bnorm_handle h = h100();
  for (bnorm_op_t op : kOps) {
    for (const auto& c : bnorm::supported_configs(h, problem(op, 2, 3, 5, 5)))
      EXPECT_EQ(c.policy.vec, 1) << bnorm::format_spec(*c.variant, c.policy);
    for (const auto& c : bnorm::supported_configs(h, problem(op, 2, 3, 4, 4, false)))
      EXPECT_EQ(c.policy.vec, 1) << bnorm::format_spec(*c.variant, c.policy);
  }
}

}  // namespace
