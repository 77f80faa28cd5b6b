/* Links the installed bnorm and normalises one small batch on the CPU backend. */
#include <stdio.h>

#include <bnorm/bnorm.h>

int main(void) {
  const bnorm_tensor_t d = {2, 1, 1, 2, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  float y[4];
  bnorm_handle_t h;
  if (bnorm_create(&h, BNORM_BACKEND_CPU, 0) != BNORM_STATUS_SUCCESS) return 1;
  if (bnorm_forward_training(h, &d, x, y, NULL, NULL, 0.1f, 1e-5f, NULL, NULL, NULL, NULL) !=
      BNORM_STATUS_SUCCESS)
    return 2;
  bnorm_destroy(h);
  /* mean 2.5, var 1.25: y[0] = -1.5/sqrt(1.25) */
  if (y[0] > -1.3416f || y[0] < -1.3417f) return 3;
  printf("consumer: bnorm %d ok\n", bnorm_get_version());
  return 0;
}
