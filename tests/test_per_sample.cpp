// Group, instance and layer norm on the CPU backend against the float64 references of
// reference_norms.hpp (PyTorch's definitions), in both layouts and all dtypes; the
// reference backward against finite differences of the reference forward; the
// identities between the three (instance norm is group norm with groups = c; group norm
// with one group on an (N, C) input is layer norm); a hand-computed case.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "bnorm/bnorm.h"
#include "host_helpers.hpp"
#include "reference_norms.hpp"

namespace {

using namespace bnorm_test;

enum class Kind { kGroup, kInstance, kLayer };

struct Case {
  int64_t n, c, h, w, groups;
  Kind kind;
};

using Param = std::tuple<Case, bnorm_layout_t, bnorm_dtype_t>;

std::string name(const testing::TestParamInfo<Param>& i) {
  const Case& k = std::get<0>(i.param);
  const char* kind = k.kind == Kind::kGroup ? "group" : k.kind == Kind::kInstance ? "instance" : "layer";
  return std::string(kind) + "_" + std::to_string(k.n) + "x" + std::to_string(k.c) + "x" + std::to_string(k.h) + "x" +
         std::to_string(k.w) + "_g" + std::to_string(k.groups) +
         (std::get<1>(i.param) == BNORM_LAYOUT_NCHW ? "_nchw_" : "_nhwc_") + dtype_name(std::get<2>(i.param));
}

class PerSample : public testing::TestWithParam<Param> {
 protected:
  bnorm_tensor_t desc() const {
    const Case& k = std::get<0>(GetParam());
    return bnorm_tensor_t{k.n, k.c, k.h, k.w, std::get<1>(GetParam()), std::get<2>(GetParam())};
  }
  const Case& kase() const { return std::get<0>(GetParam()); }
  int64_t groups() const {
    return kase().kind == Kind::kLayer ? 1 : kase().kind == Kind::kInstance ? kase().c : kase().groups;
  }
  bool per_value() const { return kase().kind == Kind::kLayer; }
  int64_t features() const { return per_value() ? kase().c * kase().h * kase().w : kase().c; }

  bnorm_status_t forward(bnorm_handle_t h, const bnorm_tensor_t& d, const void* x, void* y, const float* g,
                         const float* b, float* sm, float* si) const {
    switch (kase().kind) {
      case Kind::kGroup: return bnorm_group_norm_forward(h, &d, kase().groups, x, y, g, b, 1e-5f, sm, si);
      case Kind::kInstance: return bnorm_instance_norm_forward(h, &d, x, y, g, b, 1e-5f, sm, si);
      case Kind::kLayer: return bnorm_layer_norm_forward(h, &d, x, y, g, b, 1e-5f, sm, si);
    }
    return BNORM_STATUS_INTERNAL_ERROR;
  }
  bnorm_status_t backward(bnorm_handle_t h, const bnorm_tensor_t& d, const void* x, const void* dy, const float* g,
                          const float* sm, const float* si, void* dx, float* dg, float* db) const {
    switch (kase().kind) {
      case Kind::kGroup: return bnorm_group_norm_backward(h, &d, kase().groups, x, dy, g, sm, si, dx, dg, db);
      case Kind::kInstance: return bnorm_instance_norm_backward(h, &d, x, dy, g, sm, si, dx, dg, db);
      case Kind::kLayer: return bnorm_layer_norm_backward(h, &d, x, dy, g, sm, si, dx, dg, db);
    }
    return BNORM_STATUS_INTERNAL_ERROR;
  }
};

// The CPU backend's float64 variant accumulates in float64 and rounds once: within a few
// units of the storage dtype of the reference.
double tol(bnorm_dtype_t t) { return t == BNORM_DTYPE_F32 ? 1e-6 : 4 * unit_roundoff(t); }

TEST_P(PerSample, ForwardAndBackwardMatchTheFloat64Reference) {
  Handle h("cpu_reference");  // the oracle itself; test_cpu_fast.cpp holds the fast path to it
  const bnorm_tensor_t d = desc();
  const int64_t ne = numel(d), rows = d.n * groups();
  const auto x = random_input(d, 11), dy = random_input(d, 12);
  const auto gamma = random_vector(features(), 13, 0.5, 1.5), beta = random_vector(features(), 14, -1, 1);
  HostTensor hx(x, d.dtype), hy(poisoned(ne), d.dtype), hdy(dy, d.dtype), hdx(poisoned(ne), d.dtype);
  auto sm = poisoned(rows), si = poisoned(rows), dg = poisoned(features()), db = poisoned(features());
  ASSERT_EQ(forward(h.h, d, hx.data(), hy.data(), gamma.data(), beta.data(), sm.data(), si.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  const NormRef f = per_sample_forward_ref(d, groups(), per_value(), x, gamma.data(), beta.data(), 1e-5);
  EXPECT_LT(rel_error(hy.values(), f.y), tol(d.dtype));
  EXPECT_LT(rel_error(sm, f.mean), 1e-6);
  EXPECT_LT(rel_error(si, f.invstd), 1e-6);

  ASSERT_EQ(backward(h.h, d, hx.data(), hdy.data(), gamma.data(), sm.data(), si.data(), hdx.data(), dg.data(),
                     db.data()),
            BNORM_STATUS_SUCCESS)
      << bnorm_last_error();
  const NormRef b = per_sample_backward_ref(d, groups(), per_value(), x, dy, gamma.data(), sm, si);
  EXPECT_LT(rel_error(hdx.values(), b.dx), tol(d.dtype) * 10);
  EXPECT_LT(rel_error(dg, b.dgamma), 1e-6);
  EXPECT_LT(rel_error(db, b.dbeta), 1e-6);
}

TEST_P(PerSample, NullAffineIsOneAndZeroAndInPlaceWorks) {
  Handle h;
  const bnorm_tensor_t d = desc();
  const auto x = random_input(d, 21);
  HostTensor hx(x, d.dtype), hy(poisoned(numel(d)), d.dtype);
  ASSERT_EQ(forward(h.h, d, hx.data(), hy.data(), nullptr, nullptr, nullptr, nullptr), BNORM_STATUS_SUCCESS);
  const NormRef f = per_sample_forward_ref(d, groups(), per_value(), x, nullptr, nullptr, 1e-5);
  EXPECT_LT(rel_error(hy.values(), f.y), tol(d.dtype));
  // y = x: the same result, written over the input.
  ASSERT_EQ(forward(h.h, d, hx.data(), hx.data(), nullptr, nullptr, nullptr, nullptr), BNORM_STATUS_SUCCESS);
  EXPECT_EQ(hx.bytes, hy.bytes);
}

const Case kCases[] = {
    {2, 6, 5, 7, 3, Kind::kGroup},      {3, 8, 4, 4, 2, Kind::kGroup},    {2, 32, 3, 3, 32, Kind::kGroup},
    {4, 6, 1, 1, 2, Kind::kGroup},      {2, 5, 6, 6, 1, Kind::kGroup},    {3, 4, 5, 3, 0, Kind::kInstance},
    {2, 3, 1, 1, 0, Kind::kInstance},   {4, 7, 1, 1, 0, Kind::kLayer},    {3, 64, 1, 1, 0, Kind::kLayer},
    {2, 3, 4, 5, 0, Kind::kLayer},
};

INSTANTIATE_TEST_SUITE_P(Cpu, PerSample,
                         testing::Combine(testing::ValuesIn(kCases),
                                          testing::Values(BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC),
                                          testing::Values(BNORM_DTYPE_F32, BNORM_DTYPE_F16, BNORM_DTYPE_BF16)),
                         name);

// The reference's backward is the gradient of its forward: central differences of
// L(x, gamma, beta) = sum(y * w) in float64 along random directions.
TEST(PerSampleReference, BackwardIsTheGradientOfTheForward) {
  for (bool per_value : {false, true}) {
    const bnorm_tensor_t d = nchw(2, 6, 2, 3);
    const int64_t groups = per_value ? 1 : 3, features = per_value ? 6 * 6 : 6;
    const auto x = random_tensor(d, 31), w = random_tensor(d, 32), v = random_tensor(d, 33);
    const auto gamma = random_vector(features, 34, 0.5, 1.5), beta = random_vector(features, 35, -1, 1);
    const auto gv = random_vector(features, 36, -1, 1);
    const double eps = 1e-3;
    auto loss = [&](double hx, double hg) {
      std::vector<float> xs(x.size());
      std::vector<float> gs(gamma.size());
      // Perturbations in float64 would round on the way into float inputs: keep them
      // representable by scaling the step, and evaluate the loss in float64.
      for (size_t i = 0; i < x.size(); ++i) xs[i] = static_cast<float>(x[i] + hx * v[i]);
      for (size_t i = 0; i < gamma.size(); ++i) gs[i] = static_cast<float>(gamma[i] + hg * gv[i]);
      const NormRef f = per_sample_forward_ref(d, groups, per_value, xs, gs.data(), beta.data(), eps);
      double l = 0.0;
      for (size_t i = 0; i < f.y.size(); ++i) l += f.y[i] * w[i];
      return l;
    };
    const NormRef f = per_sample_forward_ref(d, groups, per_value, x, gamma.data(), beta.data(), eps);
    std::vector<float> mean(f.mean.begin(), f.mean.end()), invstd(f.invstd.begin(), f.invstd.end());
    const NormRef b = per_sample_backward_ref(d, groups, per_value, x, w, gamma.data(), mean, invstd);
    double dir_x = 0.0, dir_g = 0.0;
    for (size_t i = 0; i < x.size(); ++i) dir_x += b.dx[i] * v[i];
    for (size_t i = 0; i < gamma.size(); ++i) dir_g += b.dgamma[i] * gv[i];
    const double h = 1e-2;  // float inputs: a step the float rounding cannot swamp
    const double fd_x = (loss(h, 0) - loss(-h, 0)) / (2 * h), fd_g = (loss(0, h) - loss(0, -h)) / (2 * h);
    EXPECT_NEAR(fd_x, dir_x, 2e-3 * std::max(1.0, std::abs(dir_x))) << (per_value ? "layer" : "group");
    EXPECT_NEAR(fd_g, dir_g, 2e-3 * std::max(1.0, std::abs(dir_g))) << (per_value ? "layer" : "group");
  }
}

TEST(PerSampleIdentities, InstanceNormIsGroupNormWithOneChannelPerGroup) {
  Handle h;
  const bnorm_tensor_t d = nchw(3, 5, 4, 6);
  const auto x = random_tensor(d, 41), dy = random_tensor(d, 42);
  const auto gamma = random_vector(d.c, 43, 0.5, 1.5), beta = random_vector(d.c, 44, -1, 1);
  std::vector<float> y1(numel(d)), y2(numel(d)), dx1(numel(d)), dx2(numel(d)), sm(15), si(15), dg1(5), dg2(5), db1(5),
      db2(5);
  ASSERT_EQ(bnorm_instance_norm_forward(h.h, &d, x.data(), y1.data(), gamma.data(), beta.data(), 1e-5f, sm.data(),
                                        si.data()),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_group_norm_forward(h.h, &d, d.c, x.data(), y2.data(), gamma.data(), beta.data(), 1e-5f, nullptr,
                                     nullptr),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(y1, y2);
  ASSERT_EQ(bnorm_instance_norm_backward(h.h, &d, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx1.data(),
                                         dg1.data(), db1.data()),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_group_norm_backward(h.h, &d, d.c, x.data(), dy.data(), gamma.data(), sm.data(), si.data(),
                                      dx2.data(), dg2.data(), db2.data()),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(dx1, dx2);
  EXPECT_EQ(dg1, dg2);
  EXPECT_EQ(db1, db2);
}

TEST(PerSampleIdentities, OneGroupOverFeaturesIsLayerNorm) {
  Handle h;
  const bnorm_tensor_t d = nchw(4, 10, 1, 1);  // (N, D)
  const auto x = random_tensor(d, 51);
  const auto gamma = random_vector(10, 52, 0.5, 1.5), beta = random_vector(10, 53, -1, 1);
  std::vector<float> y1(numel(d)), y2(numel(d));
  ASSERT_EQ(bnorm_layer_norm_forward(h.h, &d, x.data(), y1.data(), gamma.data(), beta.data(), 1e-5f, nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  ASSERT_EQ(bnorm_group_norm_forward(h.h, &d, 1, x.data(), y2.data(), gamma.data(), beta.data(), 1e-5f, nullptr,
                                     nullptr),
            BNORM_STATUS_SUCCESS);
  EXPECT_EQ(y1, y2);
}

// torch.nn.LayerNorm((2, 1, 2), eps=1e-5) on [[1, 2], [3, 4]]: mean 2.5, biased variance
// 1.25; with weight [1, 2, 3, 4] (c, h, w order) and bias 0.5.
TEST(PerSampleIdentities, HandComputedLayerNorm) {
  Handle h;
  for (bnorm_layout_t layout : {BNORM_LAYOUT_NCHW, BNORM_LAYOUT_NHWC}) {
    const bnorm_tensor_t d{1, 2, 1, 2, layout, BNORM_DTYPE_F32};
    // Logical x[c][w] = {{1, 2}, {3, 4}}, stored in the layout's order.
    const float logical[2][2] = {{1, 2}, {3, 4}};
    std::vector<float> x(4), y(4);
    for (int c = 0; c < 2; ++c)
      for (int w = 0; w < 2; ++w) x[at(d, 0, c, w)] = logical[c][w];
    const std::vector<float> gamma = {1, 2, 3, 4}, beta = {0.5f, 0.5f, 0.5f, 0.5f};
    float mean = 0, invstd = 0;
    ASSERT_EQ(bnorm_layer_norm_forward(h.h, &d, x.data(), y.data(), gamma.data(), beta.data(), 1e-5f, &mean, &invstd),
              BNORM_STATUS_SUCCESS);
    const double is = 1.0 / std::sqrt(1.25 + 1e-5);
    EXPECT_FLOAT_EQ(mean, 2.5f);
    EXPECT_FLOAT_EQ(invstd, static_cast<float>(is));
    for (int c = 0; c < 2; ++c)
      for (int w = 0; w < 2; ++w)
        EXPECT_NEAR(y[at(d, 0, c, w)], (logical[c][w] - 2.5) * is * gamma[c * 2 + w] + 0.5, 1e-6) << c << w;
  }
}

TEST(PerSampleIdentities, GroupOfOneValueNormalisesToBeta) {
  Handle h;
  const bnorm_tensor_t d = nchw(3, 4, 1, 1);
  const auto x = random_tensor(d, 61), dy = random_tensor(d, 62);
  const std::vector<float> gamma = {1, 2, 3, 4}, beta = {-1, 0.5f, 2, 3};
  std::vector<float> y(12), dx(12), sm(12), si(12);
  ASSERT_EQ(bnorm_instance_norm_forward(h.h, &d, x.data(), y.data(), gamma.data(), beta.data(), 1e-5f, sm.data(),
                                        si.data()),
            BNORM_STATUS_SUCCESS);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(y[i], beta[i % 4]);
  ASSERT_EQ(bnorm_instance_norm_backward(h.h, &d, x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                                         nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  for (float v : dx) EXPECT_EQ(v, 0.0f);
}

TEST(PerSampleIdentities, LargeMeansKeepTheirDigits) {
  Handle h;
  const bnorm_tensor_t d = nchw(2, 8, 16, 16);
  const auto x = random_tensor(d, 71, 1e4);  // |mean|/std ~ 1e4
  std::vector<float> y(numel(d));
  ASSERT_EQ(bnorm_group_norm_forward(h.h, &d, 8, x.data(), y.data(), nullptr, nullptr, 1e-5f, nullptr, nullptr),
            BNORM_STATUS_SUCCESS);
  const NormRef f = per_sample_forward_ref(d, 8, false, x, nullptr, nullptr, 1e-5);
  EXPECT_LT(rel_error(y, f.y), 1e-6);
}

// Bad calls (groups not dividing c, missing statistics, aliases, ...) are in
// bad_calls.hpp, run by test_api.cpp and test_cuda_edges.cpp.

}  // namespace
