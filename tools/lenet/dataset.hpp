// Fashion-MNIST splits in host memory: loaded from the IDX gzip files, validated,
// and normalized as the seed does it: pixels scaled to [0, 1], then (p - 0.5) / 0.5.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "idx.hpp"

namespace lenet {

constexpr int64_t kImageSide = 28;
constexpr int64_t kPixels = kImageSide * kImageSide;
constexpr int64_t kClasses = 10;

struct Split {
  int64_t count = 0;
  std::vector<float> images;    // count x 28 x 28, normalized
  std::vector<int32_t> labels;  // count, each in [0, kClasses)
};

// Pairs an image and a label array: images must be (N, 28, 28), labels (N) with the
// same N and values below kClasses (a label out of range would index past the logits).
// Keeps the first `limit` examples when 0 < limit < N. Returns "" or a message.
std::string make_split(const IdxArray& images, const IdxArray& labels, int64_t limit, Split* out);

// Loads <dir>/<prefix>-images-idx3-ubyte.gz and <dir>/<prefix>-labels-idx1-ubyte.gz
// (prefix "train" or "t10k"). Returns "" or a message naming the file at fault.
std::string load_split(const std::string& dir, const std::string& prefix, int64_t limit,
                       Split* out);

}  // namespace lenet
