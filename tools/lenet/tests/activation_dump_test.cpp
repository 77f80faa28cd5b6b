// --dump-activations: LeNet::first_bn_snapshot and write_bn_snapshot on the CPU backend.
//
// The snapshot must hold n*c*h*w finite values on each side, and its output must be
// batch norm's evaluation-mode map of its input with the statistics and parameters it
// reports: that ties the two tensors and the per-channel numbers to one layer and one
// forward. Both are float32 with a shared formula, so 1e-5 relative (a few ulp of the
// inputs' scale, which is O(1) here) is the bound; a wrong channel or a training-mode
// forward is off by O(0.1).
#include "activation_dump.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend.hpp"
#include "dataset.hpp"
#include "lenet.hpp"
#include "options.hpp"
#include "rng.hpp"

namespace lenet {
namespace {

constexpr int64_t kBatch = 7;  // odd: a size that only works for even batches fails

// A network after a few training steps, so that the running statistics and gamma, beta
// are no longer the identity's 0, 1, 1, 0.
struct TrainedNet {
  TrainedNet()
      : be(make_cpu_backend()),
        net(*be, LeNetConfig{true, kBatch, 5}),
        x(*be, kBatch * kPixels),
        labels(*be, kBatch) {
    std::mt19937 rng(9);
    std::vector<float> xs(static_cast<size_t>(kBatch * kPixels));
    for (float& v : xs) v = uniform(rng, -1.0f, 1.0f);
    x.upload(xs);
    labels.upload({0, 1, 2, 3, 4, 5, 6});
    for (int step = 0; step < 3; ++step) net.train_step(x.data(), labels.data(), kBatch, 0.5f);
  }
  std::unique_ptr<Backend> be;
  LeNet net;
  Array<float> x;
  Array<int32_t> labels;
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST(FirstBnSnapshot, IsTheEvaluationMapOfItsInput) {
  TrainedNet t;
  const BnSnapshot s = t.net.first_bn_snapshot(t.x.data(), kBatch);
  EXPECT_EQ(s.layer, "batchnorm 6");
  EXPECT_EQ(s.n, kBatch);
  EXPECT_EQ(s.dims.c, 6);
  EXPECT_EQ(s.dims.h, 24);
  EXPECT_EQ(s.dims.w, 24);
  const size_t plane = 24 * 24, values = static_cast<size_t>(kBatch) * 6 * plane;
  ASSERT_EQ(s.input.size(), values);
  ASSERT_EQ(s.output.size(), values);
  for (const auto* v : {&s.gamma, &s.beta, &s.running_mean, &s.running_var})
    ASSERT_EQ(v->size(), 6u);
  EXPECT_NE(s.running_mean[0], 0.0f) << "three training steps moved nothing";

  for (size_t i = 0; i < values; ++i) {
    ASSERT_TRUE(std::isfinite(s.input[i]) && std::isfinite(s.output[i])) << "value " << i;
    const size_t c = i / plane % 6;
    const double want =
        (s.input[i] - s.running_mean[c]) / std::sqrt(s.running_var[c] + s.eps) * s.gamma[c] +
        s.beta[c];
    ASSERT_NEAR(s.output[i], want, 1e-5 * (1.0 + std::abs(want))) << "value " << i;
  }
}

TEST(FirstBnSnapshot, NeedsBatchNorm) {
  auto be = make_cpu_backend();
  LeNet net(*be, LeNetConfig{false, 2, 5});
  Array<float> x(*be, 2 * kPixels);
  x.zero();
  EXPECT_THROW(net.first_bn_snapshot(x.data(), 2), std::logic_error);
}

TEST(WriteBnSnapshot, RawFloatsAndJson) {
  TrainedNet t;
  const BnSnapshot s = t.net.first_bn_snapshot(t.x.data(), kBatch);
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("bnorm_dump_test_" + std::to_string(::getpid())) / "sub";
  write_bn_snapshot(dir.string(), "bn1", s);

  for (const auto& [name, want] :
       {std::pair{"bn1_input.f32", &s.input}, std::pair{"bn1_output.f32", &s.output}}) {
    const std::string bytes = read_file(dir / name);
    ASSERT_EQ(bytes.size(), want->size() * sizeof(float)) << name;
    std::vector<float> got(want->size());
    std::memcpy(got.data(), bytes.data(), bytes.size());
    EXPECT_EQ(got, *want) << name;
  }
  const std::string json = read_file(dir / "bn1.json");
  EXPECT_NE(json.find("\"n\": 7, \"c\": 6, \"h\": 24, \"w\": 24"), std::string::npos) << json;
  EXPECT_NE(json.find("\"input\": \"bn1_input.f32\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"running_var\": ["), std::string::npos) << json;
  std::filesystem::remove_all(dir.parent_path());
}

TEST(WriteBnSnapshot, UnwritableDirectoryThrows) {
  BnSnapshot s;
  EXPECT_THROW(write_bn_snapshot("/dev/null/sub", "bn1", s), std::runtime_error);
}

TEST(Options, DumpActivations) {
  Options o;
  const char* ok[] = {"bnorm-lenet", "--dump-activations", "out/acts"};
  EXPECT_EQ(parse_options(3, ok, &o), "");
  EXPECT_EQ(o.dump_activations, "out/acts");
  Options p;
  const char* no_bn[] = {"bnorm-lenet", "--dump-activations", "d", "--no-bn"};
  EXPECT_NE(parse_options(4, no_bn, &p).find("needs batch norm"), std::string::npos);
}

}  // namespace
}  // namespace lenet
