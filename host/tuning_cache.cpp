// The tuning cache (see tuning_cache.hpp).
#include "tuning_cache.hpp"

namespace bnorm::tuning {

bool lookup(const bnorm_handle&, const Problem&, Choice*) { return false; }

}  // namespace bnorm::tuning
