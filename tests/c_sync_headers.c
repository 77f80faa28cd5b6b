/* The optional helper headers compile as strict C11 (-Wall -Wextra -Wpedantic -Werror;
 * MPI's, NCCL's and CUDA's own headers are system headers). Compiled, not run. */
#if defined(BNORM_TEST_MPI)
#include "bnorm/bnorm_sync_mpi.h"
#endif
#if defined(BNORM_TEST_NCCL)
#include "bnorm/bnorm_sync_nccl.h"
#endif

int bnorm_c_sync_headers_compile(void);
int bnorm_c_sync_headers_compile(void) {
  int helpers = 0;
#if defined(BNORM_TEST_MPI)
  helpers += bnorm_mpi_sync_scratch_floats(8, 4) == 5 * 3 * 8;
#endif
#if defined(BNORM_TEST_NCCL)
  helpers += bnorm_nccl_sync_scratch_floats(8, 4) == 5 * 3 * 8;
#endif
  return helpers;
}
