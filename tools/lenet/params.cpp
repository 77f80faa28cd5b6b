// The parameter arena (see params.hpp).
#include "params.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "rng.hpp"

namespace lenet {

namespace {
// Each tensor starts on a 16-byte boundary, where vector loads (and bnorm's vectorized
// variants) want their pointers; the padding stays zero, its gradient too.
constexpr int64_t kAlignFloats = 4;
}  // namespace

int64_t ParamStore::declare(int64_t count, Init init, int64_t fan_in) {
  if (materialized_) throw std::logic_error("ParamStore::declare after materialize");
  if (count <= 0) throw std::logic_error("ParamStore::declare: count must be positive");
  if (init == Init::fan_in_uniform && fan_in <= 0)
    throw std::logic_error("ParamStore::declare: fan_in_uniform needs fan_in > 0");
  const int64_t offset = size_;
  specs_.push_back({offset, count, init, fan_in});
  size_ = (offset + count + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  return offset;
}

void ParamStore::materialize(Backend& be, uint32_t seed) {
  if (materialized_) throw std::logic_error("ParamStore::materialize twice");
  std::mt19937 rng(seed);
  std::vector<float> host(static_cast<size_t>(size_), 0.0f);
  for (const Spec& s : specs_) {
    float* v = host.data() + s.offset;
    switch (s.init) {
      case Init::zeros:
        break;
      case Init::ones:
        std::fill(v, v + s.count, 1.0f);
        break;
      case Init::fan_in_uniform: {
        const float b = 1.0f / std::sqrt(static_cast<float>(s.fan_in));
        for (int64_t i = 0; i < s.count; ++i) v[i] = uniform(rng, -b, b);
        break;
      }
    }
  }
  values_ = Array<float>(be, size_);
  grads_ = Array<float>(be, size_);
  values_.upload(host);
  grads_.zero();
  materialized_ = true;
}

int64_t ParamStore::checked(int64_t offset) const {
  if (!materialized_) throw std::logic_error("ParamStore: parameters used before materialize");
  if (offset < 0 || offset >= size_) throw std::logic_error("ParamStore: offset out of range");
  return offset;
}

}  // namespace lenet
