/* One LSTM step with batch norm on the gate pre-activations (recurrent batch norm,
 * Cooijmans et al. 2016), as an engine would run it through bnorm: the matrix products
 * and the gates are the engine's, batch norm is bnorm's, on the CPU backend.
 *
 *   a = bn_x(x Wx) + bn_h(h Wh) + b            (N, 4H): batch norm over the batch, per column
 *   i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g)
 *   c' = f c + i g,  h' = o tanh(c')
 *
 * An (N, 4H) matrix is a tensor {N, 4H, 1, 1}. The input and the recurrent projections
 * get separate batch norms (and separate statistics), gamma starting at 0.1 as the paper
 * recommends. The step is trained for some SGD steps to map fixed (x, h, c) to a target
 * h' (the loss must fall), then run in inference mode with the running statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bnorm/bnorm.h>

enum { N = 16, D = 8, HID = 6, G = 4 * HID };

#define CHECK(call)                                                                               \
  do {                                                                                            \
    bnorm_status_t s_ = (call);                                                                   \
    if (s_ != BNORM_STATUS_SUCCESS) {                                                             \
      fprintf(stderr, "%s failed: %s: %s\n", #call, bnorm_status_string(s_), bnorm_last_error()); \
      exit(1);                                                                                    \
    }                                                                                             \
  } while (0)

static float uniform(unsigned* state) { /* xorshift, in [-1, 1) */
  *state ^= *state << 13;
  *state ^= *state >> 17;
  *state ^= *state << 5;
  return (float)(*state % 20000u) / 10000.0f - 1.0f;
}

static float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

/* out[N][cols] = in[N][k] * w[k][cols]; with transpose_in, out[k][cols] = in^T * w. */
static void matmul(const float* in, const float* w, float* out, int rows, int k, int cols) {
  int r, j, c;
  for (r = 0; r < rows; ++r)
    for (c = 0; c < cols; ++c) {
      float s = 0.0f;
      for (j = 0; j < k; ++j) s += in[r * k + j] * w[j * cols + c];
      out[r * cols + c] = s;
    }
}
static void matmul_tn(const float* in, const float* grad, float* out, int rows, int k, int cols) {
  int r, j, c;
  memset(out, 0, sizeof(float) * (size_t)(k * cols));
  for (r = 0; r < rows; ++r)
    for (j = 0; j < k; ++j)
      for (c = 0; c < cols; ++c) out[j * cols + c] += in[r * k + j] * grad[r * cols + c];
}

/* One batch norm over the columns of an (N, G) matrix, with its parameters and state. */
typedef struct {
  float gamma[G], beta[G], rm[G], rv[G], sm[G], si[G], dgamma[G], dbeta[G];
} Norm;

static void norm_init(Norm* bn) {
  int j;
  for (j = 0; j < G; ++j) {
    bn->gamma[j] = 0.1f;
    bn->beta[j] = 0.0f;
    bn->rm[j] = 0.0f;
    bn->rv[j] = 1.0f;
  }
}

static float x[N * D], h0[N * HID], c0[N * HID], target[N * HID], wx[D * G], wh[HID * G], b[G];
static float gx[N * G], gh[N * G], ax[N * G], ah[N * G], a[N * G], da[N * G], dgx[N * G], dgh[N * G];
static float dwx[D * G], dwh[HID * G], c1[N * HID], h1[N * HID];

/* Forward of the step; training uses batch statistics and updates the running ones. */
static float step_forward(bnorm_handle_t h, Norm* bnx, Norm* bnh, int training) {
  const bnorm_tensor_t d = {N, G, 1, 1, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  float loss = 0.0f;
  int r, j;
  matmul(x, wx, gx, N, D, G);
  matmul(h0, wh, gh, N, HID, G);
  if (training) {
    CHECK(bnorm_forward_training(h, &d, gx, ax, bnx->gamma, bnx->beta, 0.1f, 1e-5f, bnx->rm, bnx->rv, bnx->sm,
                                 bnx->si));
    CHECK(bnorm_forward_training(h, &d, gh, ah, bnh->gamma, bnh->beta, 0.1f, 1e-5f, bnh->rm, bnh->rv, bnh->sm,
                                 bnh->si));
  } else {
    CHECK(bnorm_forward_inference(h, &d, gx, ax, bnx->gamma, bnx->beta, bnx->rm, bnx->rv, 1e-5f));
    CHECK(bnorm_forward_inference(h, &d, gh, ah, bnh->gamma, bnh->beta, bnh->rm, bnh->rv, 1e-5f));
  }
  for (r = 0; r < N; ++r)
    for (j = 0; j < HID; ++j) {
      float* ar = a + r * G;
      int k;
      for (k = 0; k < 4; ++k) ar[k * HID + j] = ax[r * G + k * HID + j] + ah[r * G + k * HID + j] + b[k * HID + j];
      {
        const float i = sigmoid(ar[j]), f = sigmoid(ar[HID + j]), g = tanhf(ar[2 * HID + j]),
                    o = sigmoid(ar[3 * HID + j]);
        const float e = target[r * HID + j];
        c1[r * HID + j] = f * c0[r * HID + j] + i * g;
        h1[r * HID + j] = o * tanhf(c1[r * HID + j]);
        loss += 0.5f * (h1[r * HID + j] - e) * (h1[r * HID + j] - e) / (N * HID);
      }
    }
  return loss;
}

static void step_backward(bnorm_handle_t h, Norm* bnx, Norm* bnh) {
  const bnorm_tensor_t d = {N, G, 1, 1, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  int r, j;
  for (r = 0; r < N; ++r)
    for (j = 0; j < HID; ++j) {
      const float* ar = a + r * G;
      float* dar = da + r * G;
      const float i = sigmoid(ar[j]), f = sigmoid(ar[HID + j]), g = tanhf(ar[2 * HID + j]),
                  o = sigmoid(ar[3 * HID + j]), tc = tanhf(c1[r * HID + j]);
      const float dh = (h1[r * HID + j] - target[r * HID + j]) / (N * HID);
      const float dc = dh * o * (1.0f - tc * tc);
      dar[j] = dc * g * i * (1.0f - i);
      dar[HID + j] = dc * c0[r * HID + j] * f * (1.0f - f);
      dar[2 * HID + j] = dc * i * (1.0f - g * g);
      dar[3 * HID + j] = dh * tc * o * (1.0f - o);
    }
  /* a = ax + ah + b: the same gradient reaches both batch norms. */
  CHECK(bnorm_backward(h, &d, gx, da, bnx->gamma, bnx->sm, bnx->si, dgx, bnx->dgamma, bnx->dbeta));
  CHECK(bnorm_backward(h, &d, gh, da, bnh->gamma, bnh->sm, bnh->si, dgh, bnh->dgamma, bnh->dbeta));
  matmul_tn(x, dgx, dwx, N, D, G);
  matmul_tn(h0, dgh, dwh, N, HID, G);
  for (j = 0; j < D * G; ++j) wx[j] -= 2.0f * dwx[j];
  for (j = 0; j < HID * G; ++j) wh[j] -= 2.0f * dwh[j];
  for (j = 0; j < G; ++j) {
    float db = 0.0f;
    for (r = 0; r < N; ++r) db += da[r * G + j];
    b[j] -= 2.0f * db;
    bnx->gamma[j] -= 2.0f * bnx->dgamma[j];
    bnx->beta[j] -= 2.0f * bnx->dbeta[j];
    bnh->gamma[j] -= 2.0f * bnh->dgamma[j];
    bnh->beta[j] -= 2.0f * bnh->dbeta[j];
  }
}

int main(void) {
  static Norm bnx, bnh;
  unsigned seed = 777u;
  float first = 0.0f, loss = 0.0f, inference;
  bnorm_handle_t h;
  int i, it;
  for (i = 0; i < N * D; ++i) x[i] = uniform(&seed);
  for (i = 0; i < N * HID; ++i) {
    h0[i] = 0.5f * uniform(&seed);
    c0[i] = uniform(&seed);
    target[i] = 0.6f * uniform(&seed);
  }
  for (i = 0; i < D * G; ++i) wx[i] = 0.3f * uniform(&seed);
  for (i = 0; i < HID * G; ++i) wh[i] = 0.3f * uniform(&seed);
  memset(b, 0, sizeof b);
  norm_init(&bnx);
  norm_init(&bnh);
  CHECK(bnorm_create(&h, BNORM_BACKEND_CPU, 0));
  for (it = 0; it < 200; ++it) {
    loss = step_forward(h, &bnx, &bnh, 1);
    if (it == 0) first = loss;
    if (it % 50 == 0) printf("iteration %3d  loss %.5f\n", it, loss);
    step_backward(h, &bnx, &bnh);
  }
  inference = step_forward(h, &bnx, &bnh, 0);
  printf("iteration %3d  loss %.5f (from %.5f); inference with running statistics: %.5f\n", it, loss, first,
         inference);
  CHECK(bnorm_destroy(h));
  if (!(loss < 0.5f * first)) {
    fprintf(stderr, "lstm_step: the loss did not fall\n");
    return 1;
  }
  if (!(isfinite(inference) && inference < first)) {
    fprintf(stderr, "lstm_step: inference with the running statistics is off\n");
    return 1;
  }
  printf("lstm_step: ok\n");
  return 0;
}
