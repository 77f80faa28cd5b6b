// The tuning cache: tuned (variant, policy) choices per GPU and problem, loaded from a
// JSON file (BNORM_TUNING_CACHE or bnorm_tuning_load) and consulted by dispatch.
#pragma once

#include "dispatch.hpp"

namespace bnorm::tuning {

// The cached choice for this handle's GPU and this problem, if any entry applies and
// its variant still supports the call; fills out->why with CACHE or NEAREST.
bool lookup(const bnorm_handle& h, const Problem& pr, Choice* out);

}  // namespace bnorm::tuning
