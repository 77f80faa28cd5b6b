// Every layer's backward against central finite differences on the CPU backend, on a
// tiny batch, for every input and every parameter; then the whole network's
// gradients on sampled parameters.
//
// The probe: for a layer y = L(x; theta) and a fixed random r, f = sum(y * r), summed
// in double. backward(dy = r) must give df/dx and df/dtheta; the numeric derivative is
// (f(v + h) - f(v - h)) / ((v + h) - (v - h)), the denominator taken from the float32
// values actually stored, so the rounding of v +- h costs nothing.
//
// Tolerances, |numeric - analytic| <= kAtol + kRtol * |analytic|, with h = 1e-2 and
// inputs, weights and r of order 1 (so gradients of order 0.1 to 1):
//  - truncation: h^2/6 * |f'''|. Zero for the linear maps (conv, linear, pool, up to
//    rounding); at most 1e-4/6 * 1/8 for the sigmoid; for BN, f''' ~ 1/sigma^3, O(1)
//    with unit-scale inputs and enough values per channel (M = 6 drew a channel with
//    small variance and a 6e-4 error: hence M >= 16 below).
//  - rounding: only the outputs a perturbation touches change (the others are
//    recomputed bitwise equal and cancel in the difference), each with float32 rounding
//    of a few ulp of its size: ~1e-7 of noise in f over 2h = 2e-2 gives ~1e-5.
// Measured worst errors are 2.3e-5 (conv 5x5) and below: kAtol = 2e-4 keeps a factor
// of ten, and is still a thousandth of the gradients checked. A wrong gradient (a
// missed term, a transposed index) is off by O(0.1).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "backend.hpp"
#include "dataset.hpp"
#include "layers.hpp"
#include "lenet.hpp"
#include "params.hpp"
#include "rng.hpp"

namespace lenet {
namespace {

constexpr float kStep = 1e-2f;
constexpr double kAtol = 2e-4, kRtol = 1e-3;

std::vector<float> random_vector(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = uniform(rng, lo, hi);
  return v;
}

// Numeric derivative of f along element i of host vector v, uploaded to dst for each
// evaluation (and restored).
template <class F>
double central_difference(std::vector<float>& v, size_t i, Array<float>& dst, F&& f) {
  const float saved = v[i];
  v[i] = saved + kStep;
  const double up = static_cast<double>(v[i]);
  dst.upload(v);
  const double f_up = f();
  v[i] = saved - kStep;
  const double down = static_cast<double>(v[i]);
  dst.upload(v);
  const double f_down = f();
  v[i] = saved;
  dst.upload(v);
  return (f_up - f_down) / (up - down);
}

void expect_close(double numeric, double analytic, const std::string& what) {
  EXPECT_LE(std::abs(numeric - analytic), kAtol + kRtol * std::abs(analytic))
      << what << ": numeric " << numeric << ", analytic " << analytic;
}

class GradCheck : public ::testing::Test {
 protected:
  void SetUp() override { be_ = make_cpu_backend(); }

  // Checks every input and parameter gradient of `layer` on a batch of n.
  void check(Layer& layer, int64_t n, float x_lo = -1.0f, float x_hi = 1.0f) {
    ps_.materialize(*be_, 11);
    std::mt19937 rng(5);
    // Parameters drawn afresh rather than from the initializer: BN's gamma = 1 and
    // beta = 0 would hide a backward that ignores them.
    ps_.values().upload(random_vector(ps_.size(), rng));
    std::vector<float> x = random_vector(n * layer.in_dims().size(), rng, x_lo, x_hi);
    std::vector<float> r = random_vector(n * layer.out_dims().size(), rng);
    Array<float> x_d(*be_, static_cast<int64_t>(x.size())),
        r_d(*be_, static_cast<int64_t>(r.size()));
    x_d.upload(x);
    r_d.upload(r);

    auto objective = [&] {
      const float* y = layer.forward(x_d.data(), n, Mode::train);
      std::vector<float> yh(r.size());
      be_->download(yh.data(), y, yh.size() * sizeof(float));
      double f = 0.0;
      for (size_t i = 0; i < r.size(); ++i) f += static_cast<double>(yh[i]) * r[i];
      return f;
    };

    objective();
    const float* dx_d = layer.backward(r_d.data(), n);
    ASSERT_NE(dx_d, nullptr);
    std::vector<float> dx(x.size());
    be_->download(dx.data(), dx_d, dx.size() * sizeof(float));
    const std::vector<float> grads = ps_.grads().download();

    for (size_t i = 0; i < x.size(); ++i)
      expect_close(central_difference(x, i, x_d, objective), dx[i],
                   layer.name() + " dx[" + std::to_string(i) + "]");
    std::vector<float> theta = ps_.values().download();
    for (size_t j = 0; j < theta.size(); ++j)
      expect_close(central_difference(theta, j, ps_.values(), objective), grads[j],
                   layer.name() + " dparam[" + std::to_string(j) + "]");
  }

  std::unique_ptr<Backend> be_;
  ParamStore ps_;
};

// Odd sizes throughout: an index that only works when sizes divide evenly fails here.
TEST_F(GradCheck, Conv2dWithBias) {
  Conv2d conv(*be_, ps_, 2, Dims{3, 7, 6}, 4, 3, /*bias=*/true);
  check(conv, 2);
}

TEST_F(GradCheck, Conv2dLeNetKernel) {
  Conv2d conv(*be_, ps_, 3, Dims{2, 9, 8}, 3, 5, /*bias=*/false);
  check(conv, 3);
}

TEST_F(GradCheck, LinearWithBias) {
  Linear fc(*be_, ps_, 5, Dims{3, 2, 2}, 7, /*bias=*/true);  // flattens 3 x 2 x 2
  check(fc, 5);
}

TEST_F(GradCheck, Linear) {
  Linear fc(*be_, ps_, 4, Dims{9, 1, 1}, 5, /*bias=*/false);
  check(fc, 4);
}

TEST_F(GradCheck, BatchNormConv) {
  // Shifted inputs: BN must remove the mean, not rely on it being zero.
  BatchNorm bn(*be_, ps_, 2, Dims{3, 4, 4});
  check(bn, 2, 0.5f, 2.5f);
}

TEST_F(GradCheck, BatchNormLinear) {
  BatchNorm bn(*be_, ps_, 16, Dims{5, 1, 1});  // (N, C): M = N = 16 values per channel
  check(bn, 16);
}

TEST_F(GradCheck, Sigmoid) {
  Sigmoid s(*be_, 3, Dims{2, 3, 5});
  check(s, 3, -4.0f, 4.0f);
}

TEST_F(GradCheck, AvgPool2x2) {
  AvgPool2x2 p(*be_, 2, Dims{3, 6, 4});
  check(p, 2);
}

TEST(GradCheckLoss, SoftmaxCrossEntropy) {
  auto be = make_cpu_backend();
  const int64_t n = 5, classes = 7;
  std::mt19937 rng(9);
  std::vector<float> z = random_vector(n * classes, rng, -3.0f, 3.0f);
  const std::vector<int32_t> labels = {0, 6, 3, 3, 1};
  Array<float> z_d(*be, n * classes), dz_d(*be, n * classes);
  Array<int32_t> labels_d(*be, n);
  Array<double> totals(*be, 2);
  z_d.upload(z);
  labels_d.upload(labels);

  auto mean_loss = [&](float* dlogits) {
    totals.zero();
    be->softmax_cross_entropy(n, classes, z_d.data(), labels_d.data(), dlogits, totals.data());
    return totals.download()[0] / n;
  };
  mean_loss(dz_d.data());
  const std::vector<float> dz = dz_d.download();
  // The loss is computed in double: only float32 logits and h^2 truncation remain.
  for (size_t i = 0; i < z.size(); ++i)
    EXPECT_NEAR(central_difference(z, i, z_d, [&] { return mean_loss(nullptr); }), dz[i], 1e-5)
        << "dlogits[" << i << "]";
}

// The assembled network: wiring (flatten, the order of layers, the input gradients
// threaded between them) on a sample of its 45k parameters. Gradients of single
// weights of the mean loss are small here (1e-4 to 1e-1), so the per-layer absolute
// tolerance would be vacuous: measured errors are at most 5e-5 (at a gradient of 0.2)
// and 2e-6 below gradients of 1e-3; 1e-5 + 1e-2 * |g| leaves a factor of five.
class NetworkGradCheck : public ::testing::TestWithParam<bool> {};

TEST_P(NetworkGradCheck, SampledParameters) {
  auto be = make_cpu_backend();
  const int64_t n = 8;
  LeNet net(*be, LeNetConfig{/*batch_norm=*/GetParam(), n, 3});
  std::mt19937 rng(4);
  Array<float> x(*be, n * kPixels);
  Array<int32_t> labels(*be, n);
  x.upload(random_vector(n * kPixels, rng));
  labels.upload({3, 1, 4, 1, 5, 9, 2, 6});

  auto loss = [&] {
    net.reset_totals();
    net.compute_gradients(x.data(), labels.data(), n);
    return net.totals().loss_sum / n;
  };
  loss();
  const std::vector<float> grads = net.params().grads().download();
  std::vector<float> theta = net.params().values().download();

  // 200 parameters spread over the arena, and [150, 170): the end of the first conv's
  // 150 weights, then the first BN's gamma and beta (or, without BN, the conv's bias).
  std::vector<size_t> picks;
  for (size_t j = 0; j < 200; ++j) picks.push_back(j * (theta.size() - 1) / 199);
  for (size_t j = 150; j < 170; ++j) picks.push_back(j);
  for (size_t j : picks) {
    const double numeric = central_difference(theta, j, net.params().values(), loss);
    EXPECT_LE(std::abs(numeric - grads[j]), 1e-5 + 1e-2 * std::abs(grads[j]))
        << "param " << j << ": numeric " << numeric << ", analytic " << grads[j];
  }
}

INSTANTIATE_TEST_SUITE_P(BnOnOff, NetworkGradCheck, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "WithBN" : "WithoutBN"; });

}  // namespace
}  // namespace lenet
