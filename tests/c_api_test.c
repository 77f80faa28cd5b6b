/* The header is C: this file is compiled as C11 with -Wall -Wextra -Wpedantic -Werror
 * and exercises a handle and one forward/backward on the CPU backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bnorm/bnorm.h"

#define CHECK(cond)                                                \
  do {                                                             \
    if (!(cond)) {                                                 \
      fprintf(stderr, "%s:%d: failed: %s (%s)\n", __FILE__, __LINE__, #cond, bnorm_last_error()); \
      return 1;                                                    \
    }                                                              \
  } while (0)

int main(void) {
  enum { N = 4, C = 3, H = 2, W = 5, M = N * H * W, NUMEL = N * C * H * W };
  bnorm_handle_t h = NULL;
  const bnorm_tensor_t d = {N, C, H, W, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  float x[NUMEL], y[NUMEL], dy[NUMEL], dx[NUMEL];
  float mean[C], invstd[C], rm[C] = {0, 0, 0}, rv[C] = {1, 1, 1}, dg[C], db[C];
  int i, c;

  CHECK(bnorm_get_version() == BNORM_VERSION);
  CHECK(bnorm_create(&h, BNORM_BACKEND_CPU, 0) == BNORM_STATUS_SUCCESS);
  for (i = 0; i < NUMEL; ++i) {
    x[i] = (float)((i * 37) % 11) - 3.0f + 0.25f * (float)(i % 4);
    dy[i] = (float)((i * 13) % 7) - 3.0f;
  }
  CHECK(bnorm_forward_training(h, &d, x, y, NULL, NULL, 0.1f, 1e-5f, rm, rv, mean, invstd) ==
        BNORM_STATUS_SUCCESS);
  /* Each channel of y has mean 0 and variance var/(var+eps) ~ 1. */
  for (c = 0; c < C; ++c) {
    double s = 0, ss = 0;
    int n, j;
    for (n = 0; n < N; ++n)
      for (j = 0; j < H * W; ++j) {
        const double v = y[(n * C + c) * H * W + j];
        s += v;
        ss += v * v;
      }
    CHECK(fabs(s / M) < 1e-5);
    CHECK(fabs(ss / M - 1.0) < 1e-3);
    CHECK(fabs(rm[c] - 0.1f * mean[c]) < 1e-6);
  }
  CHECK(bnorm_backward(h, &d, x, dy, NULL, mean, invstd, dx, dg, db) == BNORM_STATUS_SUCCESS);
  /* sum(dx) over a channel is 0 for batch norm's backward. */
  for (c = 0; c < C; ++c) {
    double s = 0;
    int n, j;
    for (n = 0; n < N; ++n)
      for (j = 0; j < H * W; ++j) s += dx[(n * C + c) * H * W + j];
    CHECK(fabs(s) < 1e-4);
  }
  CHECK(bnorm_forward_training(h, &d, x, y, NULL, NULL, 0.1f, 0.0f, NULL, NULL, NULL, NULL) ==
        BNORM_STATUS_INVALID_VALUE);
  CHECK(bnorm_last_error()[0] != '\0');
  CHECK(bnorm_destroy(h) == BNORM_STATUS_SUCCESS);
  printf("c_api_test: ok (bnorm %d)\n", bnorm_get_version());
  return 0;
}
