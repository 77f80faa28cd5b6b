// The GPU backend against the CPU backend: every operation on the same inputs, each
// layer forward and backward from the same weights, and whole training runs whose
// losses must track each other step by step. Skipped (never failed) without a GPU.
//
// Tolerances: both sides compute in float32 but in different orders (cuBLAS vs
// OpenBLAS blocking, bnorm's fp32 Welford vs the CPU backend's float64). A sum of K
// products then differs by about sqrt(K) ulp of its largest terms: for K <= 256 under
// 1e-5 relative to the tensor's largest value; kRel = 1e-4 leaves a factor of ten. The
// training runs feed those differences back through SGD for a few steps, where they
// grow mildly: the losses must agree to 1e-3 relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
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

constexpr double kRel = 1e-4;

std::vector<float> random_vector(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = uniform(rng, lo, hi);
  return v;
}

// max |a - b| <= rel * max |a|.
void expect_agree(const std::vector<float>& cpu, const std::vector<float>& gpu, double rel,
                  const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  double scale = 0.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    scale = std::max(scale, std::abs(static_cast<double>(cpu[i])));
    const double d = std::abs(static_cast<double>(cpu[i]) - gpu[i]);
    if (!(d <= worst)) {  // NaN lands here too
      worst = d;
      at = i;
    }
  }
  EXPECT_LE(worst, rel * std::max(scale, 1e-30))
      << what << ": worst at " << at << ": cpu " << cpu[at] << ", gpu " << gpu[at]
      << " (largest |cpu| " << scale << ")";
}

class Agreement : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why_not;
    gpu_ = make_cuda_backend(&why_not);
    if (!gpu_) GTEST_SKIP() << "no usable GPU: " << why_not;
    cpu_ = make_cpu_backend();
  }

  // Runs op(backend, inputs, output) on both backends with the same host inputs and
  // compares the outputs.
  void compare_op(
      const std::vector<std::vector<float>>& inputs, int64_t out_size,
      const std::function<void(Backend&, std::vector<Array<float>>&, Array<float>&)>& op,
      const std::string& what) {
    std::vector<float> results[2];
    Backend* backends[2] = {cpu_.get(), gpu_.get()};
    for (int b = 0; b < 2; ++b) {
      std::vector<Array<float>> in;
      for (const auto& v : inputs) {
        in.emplace_back(*backends[b], static_cast<int64_t>(v.size()));
        in.back().upload(v);
      }
      Array<float> out(*backends[b], out_size);
      out.upload(std::vector<float>(static_cast<size_t>(out_size), NAN));  // poison
      op(*backends[b], in, out);
      results[b] = out.download();
    }
    expect_agree(results[0], results[1], kRel, what);
  }

  std::unique_ptr<Backend> cpu_, gpu_;
  std::mt19937 rng_{17};
};

TEST_F(Agreement, GemmAllTransposesBatched) {
  const int64_t m = 13, n = 17, k = 11, batch = 3;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    const auto a = random_vector(batch * m * k, rng_), b = random_vector(batch * k * n, rng_);
    const auto c = random_vector(batch * m * n, rng_);
    compare_op(
        {a, b, c}, batch * m * n,
        [&](Backend& be, auto& in, Array<float>& out) {
          be.upload(out.data(), c.data(), out.bytes());  // beta = 0.5 reads C
          Gemm g;
          g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.alpha = 1.5f, g.beta = 0.5f;
          g.a = in[0].data(), g.lda = ta ? m : k, g.stride_a = m * k;
          g.b = in[1].data(), g.ldb = tb ? k : n, g.stride_b = k * n;
          g.c = out.data(), g.ldc = n, g.stride_c = m * n;
          g.batch = batch;
          be.gemm(g);
        },
        "gemm trans " + std::to_string(t));
  }
}

TEST_F(Agreement, ConvolutionHelpers) {
  const ConvShape s{3, 2, 9, 7, 5};
  const int64_t col = s.n * s.col_rows() * s.col_cols(), img = s.n * s.c * s.h * s.w;
  compare_op(
      {random_vector(img, rng_)}, col,
      [&](Backend& be, auto& in, Array<float>& out) { be.im2col(s, in[0].data(), out.data()); },
      "im2col");
  compare_op(
      {random_vector(col, rng_)}, img,
      [&](Backend& be, auto& in, Array<float>& out) { be.col2im(s, in[0].data(), out.data()); },
      "col2im");
}

TEST_F(Agreement, ElementwiseAndReductions) {
  const int64_t planes = 5, h = 6, w = 10, size = planes * h * w;
  const auto x = random_vector(size, rng_, -5.0f, 5.0f), dy = random_vector(size, rng_);
  compare_op(
      {x}, size / 4,
      [&](Backend& be, auto& in, Array<float>& out) {
        be.avgpool2x2_forward(planes, h, w, in[0].data(), out.data());
      },
      "avgpool forward");
  compare_op(
      {random_vector(size / 4, rng_)}, size,
      [&](Backend& be, auto& in, Array<float>& out) {
        be.avgpool2x2_backward(planes, h, w, in[0].data(), out.data());
      },
      "avgpool backward");
  compare_op(
      {x}, size,
      [&](Backend& be, auto& in, Array<float>& out) {
        be.sigmoid_forward(size, in[0].data(), out.data());
      },
      "sigmoid forward");
  compare_op(
      {x, dy}, size,
      [&](Backend& be, auto& in, Array<float>& out) {
        be.sigmoid_backward(size, in[0].data(), in[1].data(), out.data());
      },
      "sigmoid backward");
  compare_op(
      {x, random_vector(h, rng_)}, size,
      [&](Backend& be, auto& in, Array<float>& out) {
        be.upload(out.data(), x.data(), out.bytes());
        be.add_channel_bias(planes, h, w, in[1].data(), out.data());
      },
      "add_channel_bias");
  compare_op(
      {x}, h,
      [&](Backend& be, auto& in, Array<float>& out) {
        be.channel_sum(planes, h, w, in[0].data(), out.data());
      },
      "channel_sum");
}

TEST_F(Agreement, GatherAndLoss) {
  const int64_t rows = 37, row_len = 9, n = 29, classes = 10;
  std::vector<int32_t> index(static_cast<size_t>(n)), labels(static_cast<size_t>(rows));
  for (auto& i : index) i = static_cast<int32_t>(uniform_below(rng_, rows));
  for (auto& l : labels) l = static_cast<int32_t>(uniform_below(rng_, classes));
  const auto src = random_vector(rows * row_len, rng_),
             logits = random_vector(n * classes, rng_, -4, 4);

  std::vector<float> gathered[2], dlogits[2];
  std::vector<int32_t> gathered_labels[2];
  std::vector<double> totals[2];
  Backend* backends[2] = {cpu_.get(), gpu_.get()};
  for (int b = 0; b < 2; ++b) {
    Backend& be = *backends[b];
    Array<float> src_d(be, rows * row_len), dst_d(be, n * row_len), z_d(be, n * classes),
        dz_d(be, n * classes);
    Array<int32_t> index_d(be, n), labels_d(be, rows), dst_labels_d(be, n);
    Array<double> totals_d(be, 2);
    src_d.upload(src), index_d.upload(index), labels_d.upload(labels), z_d.upload(logits);
    totals_d.zero();
    be.gather_rows(n, row_len, index_d.data(), src_d.data(), labels_d.data(), dst_d.data(),
                   dst_labels_d.data());
    // The loss reads the gathered labels, as in training.
    be.softmax_cross_entropy(n, classes, z_d.data(), dst_labels_d.data(), dz_d.data(),
                             totals_d.data());
    gathered[b] = dst_d.download(), gathered_labels[b] = dst_labels_d.download();
    dlogits[b] = dz_d.download(), totals[b] = totals_d.download();
  }
  EXPECT_EQ(gathered[0], gathered[1]);
  EXPECT_EQ(gathered_labels[0], gathered_labels[1]);
  expect_agree(dlogits[0], dlogits[1], kRel, "dlogits");
  EXPECT_NEAR(totals[0][0], totals[1][0], 1e-5 * totals[0][0]);
  EXPECT_EQ(totals[0][1], totals[1][1]);
}

// One layer built on each backend from the same seed (so the same weights), the same
// input, forward in training mode, backward from the same dy.
template <class MakeLayer>
void compare_layer(Backend& cpu, Backend& gpu, int64_t n, Dims in, MakeLayer make) {
  std::mt19937 rng(23);
  std::vector<float> x = random_vector(n * in.size(), rng, -2.0f, 2.0f);
  std::vector<float> y[2], dx[2], grads[2];
  std::string name;
  Backend* backends[2] = {&cpu, &gpu};
  std::vector<float> dy;
  for (int b = 0; b < 2; ++b) {
    ParamStore ps;
    std::unique_ptr<Layer> layer = make(*backends[b], ps);
    ps.materialize(*backends[b], 29);
    name = layer->name();
    if (dy.empty()) dy = random_vector(n * layer->out_dims().size(), rng);
    Array<float> x_d(*backends[b], static_cast<int64_t>(x.size())),
        dy_d(*backends[b], static_cast<int64_t>(dy.size()));
    x_d.upload(x), dy_d.upload(dy);
    const float* y_d = layer->forward(x_d.data(), n, Mode::train);
    y[b].resize(dy.size());
    backends[b]->download(y[b].data(), y_d, y[b].size() * sizeof(float));
    const float* dx_d = layer->backward(dy_d.data(), n);
    dx[b].resize(x.size());
    backends[b]->download(dx[b].data(), dx_d, dx[b].size() * sizeof(float));
    grads[b] = ps.grads().download();
  }
  expect_agree(y[0], y[1], kRel, name + " forward");
  expect_agree(dx[0], dx[1], kRel, name + " dx");
  if (!grads[0].empty()) expect_agree(grads[0], grads[1], kRel, name + " parameter gradients");
}

TEST_F(Agreement, Layers) {
  const int64_t n = 16;
  const Dims img{6, 12, 12};
  compare_layer(*cpu_, *gpu_, n, img, [&](Backend& be, ParamStore& ps) {
    return std::make_unique<Conv2d>(be, ps, n, img, 16, 5, true);
  });
  compare_layer(*cpu_, *gpu_, n, img, [&](Backend& be, ParamStore& ps) {
    return std::make_unique<BatchNorm>(be, ps, n, img);
  });
  compare_layer(*cpu_, *gpu_, n, Dims{120, 1, 1}, [&](Backend& be, ParamStore& ps) {
    return std::make_unique<BatchNorm>(be, ps, n, Dims{120, 1, 1});
  });
  compare_layer(*cpu_, *gpu_, n, Dims{16, 4, 4}, [&](Backend& be, ParamStore& ps) {
    return std::make_unique<Linear>(be, ps, n, Dims{16, 4, 4}, 120, true);
  });
}

// The harness's own promise: from the same initial weights, the CPU and the GPU train
// the same network. Real LeNet shapes, a full 128 batch, with and without BN.
class TrainingAgreement : public Agreement, public ::testing::WithParamInterface<bool> {};

TEST_P(TrainingAgreement, LossesTrackForFiveSteps) {
  const int64_t n = 128;
  const int steps = 5;
  std::mt19937 rng(31);
  std::vector<std::vector<float>> batches;
  std::vector<std::vector<int32_t>> batch_labels;
  for (int s = 0; s < steps; ++s) {
    batches.push_back(random_vector(n * kPixels, rng));
    std::vector<int32_t> l(static_cast<size_t>(n));
    for (auto& v : l) v = static_cast<int32_t>(uniform_below(rng, kClasses));
    batch_labels.push_back(l);
  }

  std::vector<double> losses[2];
  std::vector<float> final_params[2];
  Backend* backends[2] = {cpu_.get(), gpu_.get()};
  for (int b = 0; b < 2; ++b) {
    Backend& be = *backends[b];
    LeNet net(be, LeNetConfig{GetParam(), n, 42});
    Array<float> x(be, n * kPixels);
    Array<int32_t> labels(be, n);
    for (int s = 0; s < steps; ++s) {
      x.upload(batches[s]);
      labels.upload(batch_labels[s]);
      net.reset_totals();
      net.train_step(x.data(), labels.data(), n, 0.5f);
      losses[b].push_back(net.totals().loss_sum / n);
    }
    final_params[b] = net.params().values().download();
  }
  for (int s = 0; s < steps; ++s)
    EXPECT_NEAR(losses[0][s], losses[1][s], 1e-3 * losses[0][s]) << "step " << s;
  expect_agree(final_params[0], final_params[1], 1e-3, "parameters after training");
}

INSTANTIATE_TEST_SUITE_P(BnOnOff, TrainingAgreement, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "WithBN" : "WithoutBN"; });

}  // namespace
}  // namespace lenet
