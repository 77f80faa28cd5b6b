// The CPU backend's two variants against the independent float64 reference in
// reference.hpp (two-pass sums, not the library's Welford code), over odd shapes and both
// layouts; plus a finite-difference check of the backward and large-mean stability.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "bnorm/bnorm.h"
#include "host_helpers.hpp"
#include "reference.hpp"

namespace {

using namespace bnorm_test;

// cpu_reference accumulates in float64 and rounds once to float32: results agree with
// the reference to a few float32 ulps.
constexpr double kTol = 2e-6;

// What each variant is held to. cpu_fast computes in float32, as the CUDA kernels do, and
// meets their tolerances (test_cuda_backend.cpp); its dx is measured against the size of
// its terms, which cancel (to exactly 0 when a channel has two values).
struct Tolerance {
  double stat, out, dx;
  bool dx_to_terms;
};
Tolerance tolerance_of(const std::string& variant) {
  return variant == "cpu_reference" ? Tolerance{kTol, kTol, 1e-5, false} : Tolerance{1e-5, 2e-5, 1e-4, true};
}

struct Case {
  int64_t n, c, h, w;
  bnorm_layout_t layout;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.n << "x" << c.c << "x" << c.h << "x" << c.w << (c.layout == BNORM_LAYOUT_NCHW ? " NCHW" : " NHWC");
}

std::string name_of(const testing::TestParamInfo<std::tuple<Case, const char*>>& i) {
  const Case& c = std::get<0>(i.param);
  return std::string(std::get<1>(i.param)) + "_" + std::to_string(c.n) + "x" + std::to_string(c.c) + "x" +
         std::to_string(c.h) + "x" + std::to_string(c.w) + (c.layout == BNORM_LAYOUT_NCHW ? "_nchw" : "_nhwc");
}

class CpuBackend : public testing::TestWithParam<std::tuple<Case, const char*>> {
 protected:
  bnorm_tensor_t desc() const {
    const Case& c = std::get<0>(GetParam());
    return bnorm_tensor_t{c.n, c.c, c.h, c.w, c.layout, BNORM_DTYPE_F32};
  }
  Tolerance tol() const { return tolerance_of(std::get<1>(GetParam())); }
  Handle h_{std::get<1>(GetParam())};
};

TEST_P(CpuBackend, ForwardTrainingMatchesReference) {
  const bnorm_tensor_t d = desc();
  const auto x = random_tensor(d, 11);
  const auto gamma = random_vector(d.c, 12, 0.5, 1.5), beta = random_vector(d.c, 13, -1, 1);
  auto rm = random_vector(d.c, 14, -1, 1), rv = random_vector(d.c, 15, 0.5, 2);
  const Reference ref = reference_forward(d, x, gamma.data(), beta.data(), 1e-5, rm.data(), rv.data(), 0.1);
  auto y = poisoned(numel(d)), sm = poisoned(d.c), si = poisoned(d.c);
  ASSERT_EQ(bnorm_forward_training(h_.h, &d, x.data(), y.data(), gamma.data(), beta.data(), 0.1f, 1e-5f,
                                   rm.data(), rv.data(), sm.data(), si.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  EXPECT_LT(max_channel_rel_error(d, y, ref.y), tol().out);
  EXPECT_LT(rel_error(sm, ref.mean), tol().stat);
  EXPECT_LT(rel_error(si, ref.invstd), tol().stat);
  EXPECT_LT(rel_error(rm, ref.running_mean), tol().stat);
  EXPECT_LT(rel_error(rv, ref.running_var), tol().stat);
}

TEST_P(CpuBackend, InferenceMatchesReference) {
  const bnorm_tensor_t d = desc();
  const auto x = random_tensor(d, 21);
  const auto gamma = random_vector(d.c, 22, 0.5, 1.5), beta = random_vector(d.c, 23, -1, 1);
  const auto rm = random_vector(d.c, 24, -1, 1), rv = random_vector(d.c, 25, 0.5, 2);
  auto y = poisoned(numel(d));
  ASSERT_EQ(bnorm_forward_inference(h_.h, &d, x.data(), y.data(), gamma.data(), beta.data(), rm.data(),
                                    rv.data(), 1e-3f),
            BNORM_STATUS_SUCCESS);
  std::vector<double> ref(numel(d));
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j) {
      const int64_t o = offset(d, c, j);
      ref[o] = (x[o] - static_cast<double>(rm[c])) / std::sqrt(static_cast<double>(rv[c]) + 1e-3) *
                   gamma[c] + beta[c];
    }
  EXPECT_LT(max_channel_rel_error(d, y, ref), tol().out);
}

TEST_P(CpuBackend, BackwardMatchesReference) {
  const bnorm_tensor_t d = desc();
  const auto x = random_tensor(d, 31), dy = random_tensor(d, 32);
  const auto gamma = random_vector(d.c, 33, 0.5, 1.5);
  auto y = poisoned(numel(d)), sm = poisoned(d.c), si = poisoned(d.c);
  ASSERT_EQ(bnorm_forward_training(h_.h, &d, x.data(), y.data(), gamma.data(), nullptr, 0.1f, 1e-5f,
                                   nullptr, nullptr, sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  auto dx = poisoned(numel(d)), dg = poisoned(d.c), db = poisoned(d.c);
  ASSERT_EQ(bnorm_backward(h_.h, &d, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                           dg.data(), db.data()),
            BNORM_STATUS_SUCCESS);
  const Reference ref = reference_backward(d, x, dy, gamma.data(), sm, si);
  // dx is a difference of O(1) terms that cancel to O(1/sqrt(M)) of dy when the channel is
  // long; the float32 rounding of dy and x then weighs more: 1e-5.
  const std::vector<double> terms = dx_term_scale(d, dy, gamma.data(), si);
  EXPECT_LT(max_channel_rel_error(d, dx, ref.dx, tol().dx_to_terms ? &terms : nullptr), tol().dx);
  EXPECT_LT(rel_error(dg, ref.dgamma), tol().stat);
  EXPECT_LT(rel_error(db, ref.dbeta), tol().stat);
}

TEST_P(CpuBackend, InPlaceEqualsOutOfPlace) {
  const bnorm_tensor_t d = desc();
  const auto x = random_tensor(d, 41), dy = random_tensor(d, 42);
  auto y = poisoned(numel(d)), sm = poisoned(d.c), si = poisoned(d.c);
  ASSERT_EQ(bnorm_forward_training(h_.h, &d, x.data(), y.data(), nullptr, nullptr, 0.1f, 1e-5f, nullptr,
                                   nullptr, sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  auto inplace = x;
  ASSERT_EQ(bnorm_forward_training(h_.h, &d, inplace.data(), inplace.data(), nullptr, nullptr, 0.1f, 1e-5f,
                                   nullptr, nullptr, nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(inplace, y);
  auto dx = poisoned(numel(d));
  ASSERT_EQ(bnorm_backward(h_.h, &d, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx.data(),
                           nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  auto dy_inplace = dy;
  ASSERT_EQ(bnorm_backward(h_.h, &d, x.data(), dy_inplace.data(), nullptr, sm.data(), si.data(),
                           dy_inplace.data(), nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(dy_inplace, dx);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CpuBackend,
    testing::Combine(testing::Values(Case{1, 1, 1, 2, BNORM_LAYOUT_NCHW}, Case{3, 5, 7, 9, BNORM_LAYOUT_NCHW},
                    Case{3, 5, 7, 9, BNORM_LAYOUT_NHWC}, Case{65536, 3, 1, 1, BNORM_LAYOUT_NCHW},
                    Case{2, 4096, 1, 1, BNORM_LAYOUT_NCHW}, Case{16, 6, 12, 12, BNORM_LAYOUT_NCHW},
                    Case{7, 13, 4, 4, BNORM_LAYOUT_NHWC}, Case{2, 1, 1, 1, BNORM_LAYOUT_NCHW},
                    Case{4, 70, 33, 1, BNORM_LAYOUT_NHWC}, Case{3, 2, 1000, 3, BNORM_LAYOUT_NCHW}),
                    testing::Values("cpu_fast", "cpu_reference")),
    name_of);

TEST(CpuBackendSteps, RunningStatisticsOverSeveralSteps) {
  Handle h;
  const bnorm_tensor_t d = nchw(8, 4, 3, 5);
  std::vector<float> rm(d.c, 0.0f), rv(d.c, 1.0f);
  std::vector<double> erm(d.c, 0.0), erv(d.c, 1.0);
  const double momentum = 0.25;
  for (int step = 0; step < 6; ++step) {
    const auto x = random_tensor(d, 100 + step, 3.0, 2.0);
    std::vector<float> y(numel(d));
    ASSERT_EQ(bnorm_forward_training(h.h, &d, x.data(), y.data(), nullptr, nullptr,
                                     static_cast<float>(momentum), 1e-5f, rm.data(), rv.data(), nullptr,
                                     nullptr),
              BNORM_STATUS_SUCCESS);
    const Reference ref = reference_forward(d, x, nullptr, nullptr, 1e-5);
    for (int64_t c = 0; c < d.c; ++c) {
      erm[c] = (1 - momentum) * erm[c] + momentum * ref.mean[c];
      erv[c] = (1 - momentum) * erv[c] + momentum * ref.var_unbiased[c];  // unbiased, as PyTorch
    }
  }
  EXPECT_LT(rel_error(rm, erm), 1e-5);
  EXPECT_LT(rel_error(rv, erv), 1e-5);
}

// Central differences of L = sum(y * r) in float64 (the reference forward), against the
// backward's gradients. Perturbations are read back as the float difference actually
// applied, so float32 rounding of x does not enter; the O(h^2) truncation at h = 1e-2 on
// O(1) data is ~1e-4 of the gradient, hence the 2e-3 bound.
TEST(CpuBackendSteps, BackwardMatchesFiniteDifferences) {
  Handle h;
  const bnorm_tensor_t d = nchw(3, 2, 2, 3);
  auto x = random_tensor(d, 51);
  const auto r = random_tensor(d, 52);
  auto gamma = random_vector(d.c, 53, 0.5, 1.5), beta = random_vector(d.c, 54, -1, 1);
  auto loss = [&](const std::vector<float>& xx, const std::vector<float>& g, const std::vector<float>& b) {
    const Reference ref = reference_forward(d, xx, g.data(), b.data(), 1e-5);
    double l = 0;
    for (int64_t i = 0; i < numel(d); ++i) l += ref.y[i] * r[i];
    return l;
  };
  std::vector<float> y(numel(d)), sm(d.c), si(d.c);
  ASSERT_EQ(bnorm_forward_training(h.h, &d, x.data(), y.data(), gamma.data(), beta.data(), 0.1f, 1e-5f,
                                   nullptr, nullptr, sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  std::vector<float> dx(numel(d)), dg(d.c), db(d.c);
  ASSERT_EQ(bnorm_backward(h.h, &d, x.data(), r.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                           dg.data(), db.data()),
            BNORM_STATUS_SUCCESS);
  auto central = [&](std::vector<float>& v, size_t i) {
    const float orig = v[i];
    v[i] = orig + 1e-2f;
    const float up = v[i];
    const double lp = loss(x, gamma, beta);
    v[i] = orig - 1e-2f;
    const float down = v[i];
    const double lm = loss(x, gamma, beta);
    v[i] = orig;
    return (lp - lm) / (static_cast<double>(up) - down);
  };
  std::vector<double> fx(numel(d)), fg(d.c), fb(d.c);
  for (size_t i = 0; i < fx.size(); ++i) fx[i] = central(x, i);
  for (int64_t c = 0; c < d.c; ++c) {
    fg[c] = central(gamma, c);
    fb[c] = central(beta, c);
  }
  EXPECT_LT(rel_error(dx, fx), 2e-3);
  EXPECT_LT(rel_error(dg, fg), 2e-3);
  EXPECT_LT(rel_error(db, fb), 2e-3);
}

// Half and bfloat16 tensors: statistics from the stored values in float64, outputs
// rounded once to the dtype. Against the float64 reference of the same stored inputs the
// error is the final rounding: within a unit roundoff of the dtype (norm-relative).
class CpuDtypes : public testing::TestWithParam<bnorm_dtype_t> {};

TEST_P(CpuDtypes, ForwardBackwardInferenceMatchReference) {
  Handle h;
  const bnorm_dtype_t t = GetParam();
  const bnorm_tensor_t d = nchw(6, 5, 3, 7, t);
  const int64_t ne = numel(d);
  const auto x = random_input(d, 71), dy = random_input(d, 72);
  const auto gamma = random_vector(d.c, 73, 0.5, 1.5), beta = random_vector(d.c, 74, -1, 1);
  auto xs = to_storage(x, t), dys = to_storage(dy, t), ys = to_storage(poisoned(ne), t);
  std::vector<float> sm(d.c), si(d.c);
  ASSERT_EQ(bnorm_forward_training(h.h, &d, xs.data(), ys.data(), gamma.data(), beta.data(), 0.1f, 1e-5f, nullptr,
                                   nullptr, sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  const Reference ref = reference_forward(d, x, gamma.data(), beta.data(), 1e-5);
  const double u = unit_roundoff(t);
  EXPECT_LT(max_channel_rel_error(d, from_storage(ys, t), ref.y), u);
  EXPECT_GT(max_channel_rel_error(d, from_storage(ys, t), ref.y), 0.0) << "16-bit outputs round";
  EXPECT_LT(rel_error(sm, ref.mean), kTol);
  EXPECT_LT(rel_error(si, ref.invstd), kTol);

  auto dxs = to_storage(poisoned(ne), t);
  std::vector<float> dg(d.c), db(d.c);
  ASSERT_EQ(bnorm_backward(h.h, &d, xs.data(), dys.data(), gamma.data(), sm.data(), si.data(), dxs.data(), dg.data(),
                           db.data()),
            BNORM_STATUS_SUCCESS);
  const Reference bref = reference_backward(d, x, dy, gamma.data(), sm, si);
  EXPECT_LT(max_channel_rel_error(d, from_storage(dxs, t), bref.dx), 2 * u);
  EXPECT_LT(rel_error(dg, bref.dgamma), kTol);
  EXPECT_LT(rel_error(db, bref.dbeta), kTol);

  const auto rm = random_vector(d.c, 75, -1, 1), rv = random_vector(d.c, 76, 0.5, 2);
  ASSERT_EQ(bnorm_forward_inference(h.h, &d, xs.data(), ys.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                                    1e-5f),
            BNORM_STATUS_SUCCESS);
  std::vector<double> iref(ne);
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j) {
      const int64_t o = offset(d, c, j);
      iref[o] = (x[o] - static_cast<double>(rm[c])) / std::sqrt(static_cast<double>(rv[c]) + 1e-5) * gamma[c] + beta[c];
    }
  EXPECT_LT(max_channel_rel_error(d, from_storage(ys, t), iref), u);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CpuDtypes, testing::Values(BNORM_DTYPE_F16, BNORM_DTYPE_BF16),
                         [](const testing::TestParamInfo<bnorm_dtype_t>& i) { return dtype_name(i.param); });

// Fused relu(bn(x) + z) and its backward: the forward against the float64 reference plus
// the epilogue; the backward against the plain backward of the masked gradient, with dz
// equal to that gradient.
TEST(CpuFused, ReluAddForwardAndBackward) {
  Handle h;
  const bnorm_tensor_t d = nchw(5, 4, 3, 6);
  const int64_t ne = numel(d);
  const auto x = random_tensor(d, 81), z = random_tensor(d, 82), dy = random_tensor(d, 83);
  const auto gamma = random_vector(d.c, 84, 0.5, 1.5), beta = random_vector(d.c, 85, -1, 1);
  auto y = poisoned(ne), sm = poisoned(d.c), si = poisoned(d.c);
  ASSERT_EQ(bnorm_forward_training_fused(h.h, &d, x.data(), z.data(), y.data(), gamma.data(), beta.data(), 0.1f,
                                         1e-5f, nullptr, nullptr, sm.data(), si.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  Reference ref = reference_forward(d, x, gamma.data(), beta.data(), 1e-5);
  int zeros = 0;
  for (int64_t i = 0; i < ne; ++i) {
    ref.y[i] = std::max(0.0, ref.y[i] + z[i]);
    zeros += y[i] == 0.0f;
  }
  EXPECT_LT(rel_error(y, ref.y), kTol);
  EXPECT_GT(zeros, ne / 5) << "the ReLU should clip a fair share";

  // Backward: the same as the plain backward of dy masked by y > 0.
  auto dx = poisoned(ne), dz = poisoned(ne), dg = poisoned(d.c), db = poisoned(d.c);
  ASSERT_EQ(bnorm_backward_fused(h.h, &d, x.data(), y.data(), dy.data(), gamma.data(), sm.data(), si.data(),
                                 dx.data(), dz.data(), dg.data(), db.data(), BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  std::vector<float> g(ne);
  for (int64_t i = 0; i < ne; ++i) g[i] = y[i] > 0.0f ? dy[i] : 0.0f;
  const Reference bref = reference_backward(d, x, g, gamma.data(), sm, si);
  EXPECT_LT(max_channel_rel_error(d, dx, bref.dx), 1e-5);
  EXPECT_LT(rel_error(dg, bref.dgamma), kTol);
  EXPECT_LT(rel_error(db, bref.dbeta), kTol);
  EXPECT_EQ(dz, g);

  // Inference with the same epilogue.
  const auto rm = random_vector(d.c, 86, -1, 1), rv = random_vector(d.c, 87, 0.5, 2);
  ASSERT_EQ(bnorm_forward_inference_fused(h.h, &d, x.data(), z.data(), y.data(), gamma.data(), beta.data(),
                                          rm.data(), rv.data(), 1e-5f, BNORM_ACTIVATION_RELU),
            BNORM_STATUS_SUCCESS);
  std::vector<double> iref(ne);
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j) {
      const int64_t o = offset(d, c, j);
      const double v = (x[o] - static_cast<double>(rm[c])) / std::sqrt(static_cast<double>(rv[c]) + 1e-5) * gamma[c] +
                       beta[c] + z[o];
      iref[o] = std::max(0.0, v);
    }
  EXPECT_LT(rel_error(y, iref), kTol);
}

TEST(CpuFused, IdentityWithoutZIsThePlainCall) {
  Handle h;
  const bnorm_tensor_t d = nchw(3, 2, 5, 5);
  const int64_t ne = numel(d);
  const auto x = random_tensor(d, 91), dy = random_tensor(d, 92);
  std::vector<float> y1(ne), y2(ne), sm(d.c), si(d.c), dx1(ne), dx2(ne);
  ASSERT_EQ(bnorm_forward_training(h.h, &d, x.data(), y1.data(), nullptr, nullptr, 0.1f, 1e-5f, nullptr, nullptr,
                                   sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_forward_training_fused(h.h, &d, x.data(), nullptr, y2.data(), nullptr, nullptr, 0.1f, 1e-5f,
                                         nullptr, nullptr, nullptr, nullptr, BNORM_ACTIVATION_IDENTITY),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(y1, y2);
  ASSERT_EQ(bnorm_backward(h.h, &d, x.data(), dy.data(), nullptr, sm.data(), si.data(), dx1.data(), nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_backward_fused(h.h, &d, x.data(), nullptr, dy.data(), nullptr, sm.data(), si.data(), dx2.data(),
                                 nullptr, nullptr, nullptr, BNORM_ACTIVATION_IDENTITY),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(dx1, dx2);
}

TEST(CpuFused, BadFusedCallsAreRejected) {
  Handle h;
  const bnorm_tensor_t d = nchw(3, 2, 5, 5);
  const int64_t ne = numel(d);
  const auto x = random_tensor(d, 93), dy = random_tensor(d, 94);
  std::vector<float> sm(d.c, 0.0f), si(d.c, 1.0f), dx(ne, 7.0f), dz(ne, 7.0f);
  EXPECT_EQ(bnorm_backward_fused(h.h, &d, x.data(), nullptr, dy.data(), nullptr, sm.data(), si.data(), dx.data(),
                                 dz.data(), nullptr, nullptr, BNORM_ACTIVATION_RELU),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_NE(std::string(bnorm_last_error()).find("mask"), std::string::npos) << bnorm_last_error();
  EXPECT_EQ(bnorm_backward_fused(h.h, &d, x.data(), x.data(), dy.data(), nullptr, sm.data(), si.data(), dx.data(),
                                 dx.data(), nullptr, nullptr, BNORM_ACTIVATION_RELU),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(bnorm_forward_training_fused(h.h, &d, x.data(), nullptr, dx.data(), nullptr, nullptr, 0.1f, 1e-5f,
                                         nullptr, nullptr, nullptr, nullptr, static_cast<bnorm_activation_t>(5)),
            BNORM_STATUS_INVALID_VALUE);
  EXPECT_EQ(dx, std::vector<float>(ne, 7.0f));
  EXPECT_EQ(dz, std::vector<float>(ne, 7.0f));
}

// |mean|/std = 1e4: float64 accumulation keeps the CPU backend at float32 rounding.
TEST(CpuBackendSteps, StableAtLargeMean) {
  Handle h;
  const bnorm_tensor_t d = nchw(16, 3, 8, 8);
  auto x = random_tensor(d, 61, 0.0, 1.0);
  for (int64_t c = 0; c < d.c; ++c)
    for (int64_t j = 0; j < per_channel(d); ++j) x[offset(d, c, j)] += (c % 2 ? -1e4f : 1e4f);
  const Reference ref = reference_forward(d, x, nullptr, nullptr, 1e-5);
  std::vector<float> y(numel(d)), sm(d.c), si(d.c);
  ASSERT_EQ(bnorm_forward_training(h.h, &d, x.data(), y.data(), nullptr, nullptr, 0.1f, 1e-5f, nullptr,
                                   nullptr, sm.data(), si.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_LT(max_channel_rel_error(d, y, ref.y), kTol);
  EXPECT_LT(rel_error(si, ref.invstd), kTol);
}

}  // namespace
