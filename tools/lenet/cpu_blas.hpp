// The two BLAS calls of the CPU backend: through OpenBLAS when the build has it
// (BNORM_LENET_OPENBLAS), else through plain loops. The loops exist for machines that
// lack OpenBLAS (the bare GPU machine, where the CPU side only serves as the reference
// of the CPU/GPU agreement test); they are correct but an order of magnitude slower.
#pragma once

#include <cstdint>
#include <string>

#include "backend.hpp"

namespace lenet::cpu {

void gemm(const Gemm& g);
void axpy(int64_t n, float alpha, const float* x, float* y);
// The library, its build and threads, for the log.
std::string blas_description();

}  // namespace lenet::cpu
