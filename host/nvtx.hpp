// NVTX3 ranges around every public call that does work (the operations, handle creation
// and destruction, stream binding, dispatch queries, tuning-cache loading), in the
// "bnorm" domain, named by the function (bnorm_forward_training, ...). The accessors
// (version, status strings, last error, get_stream, get_backend) have none: a range
// would cost more than they do. Costs a few nanoseconds when no tool is attached;
// -DBNORM_ENABLE_NVTX=OFF compiles them away.
#pragma once

#if defined(BNORM_WITH_NVTX)
#include <nvtx3/nvtx3.hpp>

namespace bnorm {
struct nvtx_domain {
  static constexpr char const* name{"bnorm"};
};
}  // namespace bnorm

#define BNORM_FUNC_RANGE() NVTX3_FUNC_RANGE_IN(::bnorm::nvtx_domain)
#else
#define BNORM_FUNC_RANGE()
#endif
