/* A residual block y = relu(bn(conv(x)) + x), as an engine would run it through bnorm:
 * the convolution is the engine's (a direct 3x3 loop here), batch norm is bnorm's, on
 * the CPU backend. The block is trained for a few SGD steps towards a fixed target (the
 * loss must fall), then run in inference mode twice: with batch norm's running
 * statistics, and with batch norm folded into the convolution (bnorm_fold_into_weights);
 * both must agree.
 *
 * The add and the ReLU are written out around bnorm_forward_training and bnorm_backward.
 * bnorm_forward_training_fused(..., z = x, ..., BNORM_ACTIVATION_RELU) does all three in
 * one pass, and bnorm_backward_fused gives the ReLU-masked gradient of the shortcut too:
 * see the comments marked "fused". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bnorm/bnorm.h>

enum { N = 8, C = 4, H = 8, W = 8, K = 3, NUMEL = N * C * H * W, NW = C * C * K * K };

#define CHECK(call)                                                                                 \
  do {                                                                                              \
    bnorm_status_t s_ = (call);                                                                     \
    if (s_ != BNORM_STATUS_SUCCESS) {                                                               \
      fprintf(stderr, "%s failed: %s: %s\n", #call, bnorm_status_string(s_), bnorm_last_error());   \
      exit(1);                                                                                      \
    }                                                                                               \
  } while (0)

static float uniform(unsigned* state) { /* xorshift, in [-1, 1) */
  *state ^= *state << 13;
  *state ^= *state >> 17;
  *state ^= *state << 5;
  return (float)(*state % 20000u) / 10000.0f - 1.0f;
}

/* out = conv3x3(in; w, bias), zero padding 1, C channels in and out. */
static void conv(const float* in, const float* w, const float* bias, float* out) {
  int n, o, i, p, q, u, v;
  for (n = 0; n < N; ++n)
    for (o = 0; o < C; ++o)
      for (p = 0; p < H; ++p)
        for (q = 0; q < W; ++q) {
          float s = bias ? bias[o] : 0.0f;
          for (i = 0; i < C; ++i)
            for (u = 0; u < K; ++u)
              for (v = 0; v < K; ++v) {
                const int pp = p + u - 1, qq = q + v - 1;
                if (pp >= 0 && pp < H && qq >= 0 && qq < W)
                  s += w[((o * C + i) * K + u) * K + v] * in[((n * C + i) * H + pp) * W + qq];
              }
          out[((n * C + o) * H + p) * W + q] = s;
        }
}

/* dw = the convolution's weight gradient for output gradient dout. */
static void conv_backward_weights(const float* in, const float* dout, float* dw) {
  int n, o, i, p, q, u, v;
  memset(dw, 0, sizeof(float) * NW);
  for (n = 0; n < N; ++n)
    for (o = 0; o < C; ++o)
      for (p = 0; p < H; ++p)
        for (q = 0; q < W; ++q)
          for (i = 0; i < C; ++i)
            for (u = 0; u < K; ++u)
              for (v = 0; v < K; ++v) {
                const int pp = p + u - 1, qq = q + v - 1;
                if (pp >= 0 && pp < H && qq >= 0 && qq < W)
                  dw[((o * C + i) * K + u) * K + v] +=
                      dout[((n * C + o) * H + p) * W + q] * in[((n * C + i) * H + pp) * W + qq];
              }
}

static float x[NUMEL], target[NUMEL], z[NUMEL], s[NUMEL], y[NUMEL], dy[NUMEL], ds[NUMEL], dz[NUMEL];
static float w[NW], dw[NW], wf[NW];

int main(void) {
  const bnorm_tensor_t d = {N, C, H, W, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32};
  const bnorm_tensor_t wd = {C, C, K, K, BNORM_LAYOUT_NCHW, BNORM_DTYPE_F32}; /* [C_out][C_in][kh][kw] */
  float gamma[C], beta[C], rm[C], rv[C], sm[C], si[C], dgamma[C], dbeta[C], bf[C];
  float first_loss = 0.0f, loss = 0.0f, worst = 0.0f;
  unsigned seed = 12345u;
  bnorm_handle_t h;
  int i, c, step;

  for (i = 0; i < NUMEL; ++i) x[i] = uniform(&seed);
  for (i = 0; i < NUMEL; ++i) target[i] = fabsf(uniform(&seed)) * 1.5f;
  for (i = 0; i < NW; ++i) w[i] = 0.2f * uniform(&seed);
  for (c = 0; c < C; ++c) {
    gamma[c] = 1.0f;
    beta[c] = 0.0f;
    rm[c] = 0.0f;
    rv[c] = 1.0f;
  }
  CHECK(bnorm_create(&h, BNORM_BACKEND_CPU, 0));

  for (step = 0; step < 40; ++step) {
    /* forward: z = conv(x); s = bn(z) + x; y = relu(s) */
    conv(x, w, NULL, z); /* no conv bias: batch norm's beta is the block's bias */
    CHECK(bnorm_forward_training(h, &d, z, s, gamma, beta, 0.1f, 1e-5f, rm, rv, sm, si));
    /* fused: bnorm_forward_training_fused(h, &d, z, x, y, gamma, beta, 0.1f, 1e-5f, rm, rv,
     *                                     sm, si, BNORM_ACTIVATION_RELU) replaces the call
     *        above and the loop below. */
    loss = 0.0f;
    for (i = 0; i < NUMEL; ++i) {
      s[i] += x[i];
      y[i] = s[i] > 0.0f ? s[i] : 0.0f;
      dy[i] = (y[i] - target[i]) / NUMEL;
      loss += 0.5f * (y[i] - target[i]) * (y[i] - target[i]) / NUMEL;
    }
    if (step == 0) first_loss = loss;
    if (step % 10 == 0) printf("step %2d  loss %.5f\n", step, loss);

    /* backward: ds = dy where s > 0 (the gradient of z's batch norm and of the shortcut),
     * then batch norm's backward, then the convolution's. */
    for (i = 0; i < NUMEL; ++i) ds[i] = s[i] > 0.0f ? dy[i] : 0.0f;
    CHECK(bnorm_backward(h, &d, z, ds, gamma, sm, si, dz, dgamma, dbeta));
    /* fused: bnorm_backward_fused(h, &d, z, y, dy, gamma, sm, si, dz, dshortcut, dgamma,
     *                             dbeta, BNORM_ACTIVATION_RELU) masks dy by y > 0 itself. */
    conv_backward_weights(x, dz, dw);
    for (i = 0; i < NW; ++i) w[i] -= 0.5f * dw[i];
    for (c = 0; c < C; ++c) {
      gamma[c] -= 0.5f * dgamma[c];
      beta[c] -= 0.5f * dbeta[c];
    }
  }
  printf("step %2d  loss %.5f (from %.5f)\n", step, loss, first_loss);

  /* Inference: batch norm with its running statistics, against the folded convolution. */
  conv(x, w, NULL, z);
  CHECK(bnorm_forward_inference(h, &d, z, s, gamma, beta, rm, rv, 1e-5f));
  CHECK(bnorm_fold_into_weights(h, &wd, w, NULL, gamma, beta, rm, rv, 1e-5f, wf, bf));
  conv(x, wf, bf, dz); /* the block without batch norm */
  for (i = 0; i < NUMEL; ++i) {
    const float a = s[i] + x[i], b = dz[i] + x[i];
    const float diff = fabsf((a > 0.0f ? a : 0.0f) - (b > 0.0f ? b : 0.0f));
    if (diff > worst) worst = diff;
  }
  printf("inference: folded and unfolded blocks differ by at most %.2e\n", worst);
  CHECK(bnorm_destroy(h));
  if (!(loss < 0.7f * first_loss)) {
    fprintf(stderr, "residual_block: the loss did not fall\n");
    return 1;
  }
  if (!(worst < 1e-4f)) {
    fprintf(stderr, "residual_block: folding changed the block's output\n");
    return 1;
  }
  printf("residual_block: ok\n");
  return 0;
}
