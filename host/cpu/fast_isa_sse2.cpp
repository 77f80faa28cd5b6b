// The fast CPU path's loops for sse2 (flags in CMakeLists.txt; see fast_isa.hpp).
#define BNORM_ISA_NS sse2
#include "fast_kernels.hpp"
