/* The toolbox's C API as C: compiled as C11 with -Wall -Wextra -Wpedantic -Werror, with
 * the optional headers, and run on the CPU backend: layer norm's rows have mean 0,
 * folding a 1x1 "convolution" reproduces inference batch norm, synchronized batch norm
 * over two halves equals one call, and DLPack describes a tensor. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bnorm/bnorm.h"
#if BNORM_HAS_DLPACK
#include "bnorm/bnorm_dlpack.h"
#endif

#define CHECK(cond)                                                                              \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      fprintf(stderr, "%s:%d: failed: %s (%s)\n", __FILE__, __LINE__, #cond, bnorm_last_error()); \
      return 1;                                                                                  \
    }                                                                                            \
  } while (0)

int main(void) {
  enum { N = 4, C = 3, HW = 5, NUMEL = N * C * HW };
  const bnorm_tensor_t d = {N, C, 1, HW, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  const bnorm_tensor_t half = {N / 2, C, 1, HW, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  float x[NUMEL], y[NUMEL], y2[NUMEL], mean[N * C], invstd[N * C];
  float rm[C] = {0.5f, -1.0f, 2.0f}, rv[C] = {1.0f, 0.25f, 4.0f}, gamma[C] = {1.0f, 2.0f, 0.5f}, beta[C] = {0, 1, -1};
  float w[C] = {1.0f, 1.0f, 1.0f}, wf[C], bf[C];
  float gathered[2 * 3 * C], global[3 * C], sm[C], si[C];
  bnorm_handle_t h = NULL;
  int i, n, c;

  for (i = 0; i < NUMEL; ++i) x[i] = (float)((i * 37) % 11) - 3.0f + 0.25f * (float)(i % 4);
  CHECK(bnorm_create(&h, BNORM_BACKEND_CPU, 0) == BNORM_STATUS_SUCCESS);

  /* Layer norm: every sample of y has mean 0. */
  CHECK(bnorm_layer_norm_forward(h, &d, x, y, NULL, NULL, 1e-5f, mean, invstd) == BNORM_STATUS_SUCCESS);
  for (n = 0; n < N; ++n) {
    double s = 0;
    for (i = 0; i < C * HW; ++i) s += y[n * C * HW + i];
    CHECK(fabs(s) < 1e-4);
  }
  CHECK(bnorm_group_norm_forward(h, &d, C, x, y2, gamma, beta, 1e-5f, mean, invstd) == BNORM_STATUS_SUCCESS);
  CHECK(bnorm_group_norm_forward(h, &d, 2, x, y2, NULL, NULL, 1e-5f, NULL, NULL) == BNORM_STATUS_INVALID_VALUE);

  /* Folding a per-channel identity layer (weights 1, no bias) gives bn_inference itself:
   * w' = s, b' = -mean * s + beta. */
  {
    const bnorm_tensor_t wd = {C, 1, 1, 1, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
    CHECK(bnorm_fold_into_weights(h, &wd, w, NULL, gamma, beta, rm, rv, 1e-5f, wf, bf) == BNORM_STATUS_SUCCESS);
    CHECK(bnorm_forward_inference(h, &d, x, y, gamma, beta, rm, rv, 1e-5f) == BNORM_STATUS_SUCCESS);
    for (n = 0; n < N; ++n)
      for (c = 0; c < C; ++c)
        for (i = 0; i < HW; ++i) {
          const int o = (n * C + c) * HW + i;
          CHECK(fabs(y[o] - (x[o] * wf[c] + bf[c])) < 1e-5 * (1 + fabs(y[o])));
        }
  }

  /* Synchronized batch norm over two halves of the batch equals one forward. */
  CHECK(bnorm_sync_local_stats(h, &half, x, gathered) == BNORM_STATUS_SUCCESS);
  CHECK(bnorm_sync_local_stats(h, &half, x + NUMEL / 2, gathered + 3 * C) == BNORM_STATUS_SUCCESS);
  CHECK(bnorm_sync_merge_stats(h, C, 2, gathered, global) == BNORM_STATUS_SUCCESS);
  CHECK(bnorm_sync_forward(h, &d, x, y, NULL, NULL, global, 0.1f, 1e-5f, NULL, NULL, sm, si) == BNORM_STATUS_SUCCESS);
  CHECK(bnorm_forward_training(h, &d, x, y2, NULL, NULL, 0.1f, 1e-5f, NULL, NULL, NULL, NULL) == BNORM_STATUS_SUCCESS);
  for (i = 0; i < NUMEL; ++i) CHECK(fabs(y[i] - y2[i]) < 1e-5);

#if BNORM_HAS_DLPACK
  {
    int64_t shape[4] = {N, C, 1, HW};
    DLTensor t;
    bnorm_tensor_t got;
    void* data = NULL;
    memset(&t, 0, sizeof t);
    t.data = x;
    t.device.device_type = kDLCPU;
    t.ndim = 4;
    t.dtype.code = kDLFloat;
    t.dtype.bits = 32;
    t.dtype.lanes = 1;
    t.shape = shape;
    CHECK(bnorm_dlpack_describe(h, &t, &got, &data) == BNORM_STATUS_SUCCESS);
    CHECK(got.n == N && got.c == C && got.w == HW && data == (void*)x);
  }
#endif
  CHECK(bnorm_report_error(BNORM_STATUS_COMMUNICATION_ERROR, "test") == BNORM_STATUS_COMMUNICATION_ERROR);
  CHECK(strcmp(bnorm_last_error(), "test") == 0);
  CHECK(bnorm_destroy(h) == BNORM_STATUS_SUCCESS);
  printf("c_toolbox_test: ok\n");
  return 0;
}
