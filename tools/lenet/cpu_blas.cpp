// GEMM and AXPY for the CPU backend (see cpu_blas.hpp).
#include "cpu_blas.hpp"

#include <limits>
#include <stdexcept>

#ifdef BNORM_LENET_OPENBLAS
#include <cblas.h>
#endif

namespace lenet::cpu {

#ifdef BNORM_LENET_OPENBLAS

namespace {
// CBLAS takes int dimensions (Debian's OpenBLAS is built with 32-bit integers).
blasint narrow(int64_t v, const char* name) {
  if (v < 0 || v > std::numeric_limits<blasint>::max())
    throw std::runtime_error(std::string("cblas_sgemm: ") + name + " = " + std::to_string(v) +
                             " does not fit the BLAS integer");
  return static_cast<blasint>(v);
}
}  // namespace

void gemm(const Gemm& g) {
  const blasint m = narrow(g.m, "m"), n = narrow(g.n, "n"), k = narrow(g.k, "k");
  const blasint lda = narrow(g.lda, "lda"), ldb = narrow(g.ldb, "ldb"), ldc = narrow(g.ldc, "ldc");
  const CBLAS_TRANSPOSE ta = g.trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = g.trans_b ? CblasTrans : CblasNoTrans;
  // OpenBLAS 0.3.21 has no batched SGEMM; the batches here are images of one
  // mini-batch, each product large enough for a call of its own.
  for (int64_t i = 0; i < g.batch; ++i)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, g.alpha, g.a + i * g.stride_a, lda,
                g.b + i * g.stride_b, ldb, g.beta, g.c + i * g.stride_c, ldc);
}

void axpy(int64_t n, float alpha, const float* x, float* y) {
  cblas_saxpy(narrow(n, "n"), alpha, x, 1, y, 1);
}

std::string blas_description() {
  // The config string starts with "OpenBLAS <version>".
  return std::string(openblas_get_config()) + ", " + std::to_string(openblas_get_num_threads()) +
         " threads";
}

#else  // portable loops

void gemm(const Gemm& g) {
  // Element (r, c) of op(X) sits at X[r * row_step + c * col_step].
  const int64_t a_row = g.trans_a ? 1 : g.lda, a_col = g.trans_a ? g.lda : 1;
  const int64_t b_row = g.trans_b ? 1 : g.ldb, b_col = g.trans_b ? g.ldb : 1;
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const float* a = g.a + bi * g.stride_a;
    const float* b = g.b + bi * g.stride_b;
    float* c = g.c + bi * g.stride_c;
    for (int64_t i = 0; i < g.m; ++i) {
      float* ci = c + i * g.ldc;
      // beta = 0 must overwrite whatever C holds, NaN included, as BLAS does.
      for (int64_t j = 0; j < g.n; ++j) ci[j] = g.beta == 0.0f ? 0.0f : g.beta * ci[j];
      // i-p-j order: the inner loop walks a row of B and of C.
      for (int64_t p = 0; p < g.k; ++p) {
        const float aip = g.alpha * a[i * a_row + p * a_col];
        const float* bp = b + p * b_row;
        for (int64_t j = 0; j < g.n; ++j) ci[j] += aip * bp[j * b_col];
      }
    }
  }
}

void axpy(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

std::string blas_description() { return "portable loops (built without OpenBLAS)"; }

#endif

}  // namespace lenet::cpu
