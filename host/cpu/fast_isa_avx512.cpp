// The fast CPU path's loops for avx512 (flags in CMakeLists.txt; see fast_isa.hpp).
#define BNORM_ISA_NS avx512
#include "fast_kernels.hpp"
