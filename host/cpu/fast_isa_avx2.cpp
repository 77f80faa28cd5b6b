// The fast CPU path's loops for avx2 (flags in CMakeLists.txt; see fast_isa.hpp).
#define BNORM_ISA_NS avx2
#include "fast_kernels.hpp"
