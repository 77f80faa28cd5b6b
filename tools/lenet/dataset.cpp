// Loading and validating Fashion-MNIST splits (see dataset.hpp).
#include "dataset.hpp"

namespace lenet {

std::string make_split(const IdxArray& images, const IdxArray& labels, int64_t limit, Split* out) {
  if (images.dims.size() != 3 || images.dims[1] != kImageSide || images.dims[2] != kImageSide) {
    std::string got;
    for (size_t i = 0; i < images.dims.size(); ++i)
      got += (i ? " x " : "") + std::to_string(images.dims[i]);
    return "images have dimensions " + got + "; expected N x 28 x 28";
  }
  if (labels.dims.size() != 1)
    return "labels have " + std::to_string(labels.dims.size()) + " dimensions; expected 1";
  const int64_t n = images.dims[0];
  // parse_idx guarantees these; arrays built by hand (tests, a fuzz target) may not.
  if (images.values.size() != static_cast<size_t>(n * kPixels) ||
      labels.values.size() != static_cast<size_t>(labels.dims[0]))
    return "array sizes disagree with their dimensions";
  if (labels.dims[0] != n)
    return "count mismatch: " + std::to_string(n) + " images but " +
           std::to_string(labels.dims[0]) + " labels";
  if (n == 0) return "the split is empty";
  for (int64_t i = 0; i < n; ++i)
    if (labels.values[i] >= kClasses)
      return "label " + std::to_string(labels.values[i]) + " at index " + std::to_string(i) +
             " is out of range [0, " + std::to_string(kClasses) + ")";

  const int64_t keep = (limit > 0 && limit < n) ? limit : n;
  out->count = keep;
  out->images.resize(static_cast<size_t>(keep * kPixels));
  out->labels.resize(static_cast<size_t>(keep));
  for (int64_t i = 0; i < keep * kPixels; ++i)
    out->images[i] = (images.values[i] / 255.0f - 0.5f) / 0.5f;
  for (int64_t i = 0; i < keep; ++i) out->labels[i] = labels.values[i];
  return "";
}

std::string load_split(const std::string& dir, const std::string& prefix, int64_t limit,
                       Split* out) {
  const std::string image_path = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string label_path = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  IdxArray images, labels;
  for (auto [path, array] : {std::pair{&image_path, &images}, std::pair{&label_path, &labels}}) {
    std::vector<uint8_t> bytes;
    std::string err = read_gzip_file(*path, &bytes);
    if (err.empty()) {
      err = parse_idx(bytes.data(), bytes.size(), array);
      if (!err.empty()) err = *path + ": " + err;
    }
    if (!err.empty()) return err;
  }
  const std::string err = make_split(images, labels, limit, out);
  return err.empty() ? err : image_path + " and " + label_path + ": " + err;
}

}  // namespace lenet
