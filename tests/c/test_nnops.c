/* kernels/nn.h kernels (activation.c, loss.c, dropout.c, norm.c) on raw buffers: hand-computed values,
 * backward against central finite differences of the forward (in float, tolerances to match),
 * label checking messages, dropout's seeded mask, and bit-identical results on 1 and 2 threads. */
#include "check.h"
#include "cnn/error.h"
#include "cnn/rng.h"
#include "core/parallel.h"
#include "kernels/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_uniform(float *x, int n, double lo, double hi) {
  for (int i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * cnn_rng_uniform01(cnn_rng_global()));
}

/* ---- softmax ---- */

static void test_softmax_values(void) {
  /* softmax{0, log 2, log 3} = {1, 2, 3} / 6 */
  float x[3] = {0, logf(2), logf(3)}, y[3];
  cnn_softmax_forward(x, y, 1, 3, 1, false);
  for (int i = 0; i < 3; i++) CHECK_CLOSE(y[i], (i + 1) / 6.0, 1e-6);
  cnn_softmax_forward(x, y, 1, 3, 1, true);
  for (int i = 0; i < 3; i++) CHECK_CLOSE(y[i], log((i + 1) / 6.0), 1e-6);
  /* huge logits: max subtraction keeps exp finite */
  float big[4] = {1e4f, 1e4f, -1e4f, 3e38f}, yb[4];
  cnn_softmax_forward(big, yb, 2, 2, 1, false);
  CHECK_CLOSE(yb[0], 0.5, 1e-7);
  CHECK_CLOSE(yb[1], 0.5, 1e-7);
  CHECK(yb[2] == 0 && yb[3] == 1);
  cnn_softmax_forward(big, yb, 2, 2, 1, true);
  CHECK_CLOSE(yb[0], -log(2.0), 1e-6);
  CHECK(isfinite(yb[2]) && yb[3] == 0);
}

/* inner > 1 walks the dim with a stride: it must equal the transposed contiguous case */
static void test_softmax_strided_dim(void) {
  enum { O = 2, N = 5, I = 3 };
  float x[O * N * I], xt[O * I * N], y[O * N * I], yt[O * I * N];
  cnn_rng_seed(cnn_rng_global(), 1);
  fill_uniform(x, O * N * I, -3, 3);
  for (int o = 0; o < O; o++)
    for (int n = 0; n < N; n++)
      for (int i = 0; i < I; i++) xt[(o * I + i) * N + n] = x[(o * N + n) * I + i];
  for (int lg = 0; lg < 2; lg++) {
    cnn_softmax_forward(x, y, O, N, I, lg);
    cnn_softmax_forward(xt, yt, O * I, N, 1, lg);
    for (int o = 0; o < O; o++)
      for (int n = 0; n < N; n++)
        for (int i = 0; i < I; i++) CHECK(y[(o * N + n) * I + i] == yt[(o * I + i) * N + n]);
  }
}

/* d/dx_j of sum_i g_i y_i(x), by central differences on the forward */
static void test_softmax_backward(void) {
  enum { O = 2, N = 4, I = 3, T = O * N * I };
  float x[T], y[T], g[T], gx[T], yp[T], ym[T];
  cnn_rng_seed(cnn_rng_global(), 2);
  fill_uniform(x, T, -2, 2);
  fill_uniform(g, T, -1, 1);
  for (int lg = 0; lg < 2; lg++) {
    cnn_softmax_forward(x, y, O, N, I, lg);
    cnn_softmax_backward(y, g, gx, O, N, I, lg);
    for (int j = 0; j < T; j++) {
      float v = x[j], h = 1e-2f;
      x[j] = v + h;
      cnn_softmax_forward(x, yp, O, N, I, lg);
      x[j] = v - h;
      cnn_softmax_forward(x, ym, O, N, I, lg);
      x[j] = v;
      double num = 0;
      for (int i = 0; i < T; i++) num += g[i] * ((double)yp[i] - ym[i]) / (2.0 * h);
      CHECK_CLOSE(gx[j], num, 2e-3);
    }
  }
}

static void test_leaky_relu(void) {
  float x[4] = {-2, -0.5f, 0.5f, 3}, y[4], g[4] = {1, 2, 3, 4}, gx[4];
  cnn_leaky_relu_forward(x, y, 4, 0.1f);
  CHECK_CLOSE(y[0], -0.2, 1e-7);
  CHECK_CLOSE(y[1], -0.05, 1e-7);
  CHECK(y[2] == 0.5f && y[3] == 3);
  cnn_leaky_relu_backward(x, g, gx, 4, 0.1f);
  CHECK_CLOSE(gx[0], 0.1, 1e-7);
  CHECK_CLOSE(gx[1], 0.2, 1e-7);
  CHECK(gx[2] == 3 && gx[3] == 4);
}

/* ---- losses ---- */

static void test_label_check(void) {
  int64_t labels[4] = {0, 2, -100, 10};
  float w[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  cnn_class_target t = {labels, true, -100, NULL};
  double denom = -1;
  CHECK(cnn_loss_check_labels(&t, 4, 10, &denom) == -1);
  CHECK(strcmp(cnn_error_get(), "label 10 is out of range for 10 classes (expected 0..9)") == 0);
  labels[3] = 9;
  CHECK(cnn_loss_check_labels(&t, 4, 10, &denom) == 0 && denom == 3); /* the ignored one is not counted */
  t.weight = w;
  CHECK(cnn_loss_check_labels(&t, 4, 10, &denom) == 0 && denom == 1 + 3 + 10);
  t.has_ignore = false;
  CHECK(cnn_loss_check_labels(&t, 4, 10, &denom) == -1);
  CHECK(strcmp(cnn_error_get(), "label -100 is out of range for 10 classes (expected 0..9)") == 0);
  labels[2] = INT64_MIN; /* no overflow in the range test */
  CHECK(cnn_loss_check_labels(&t, 4, 10, &denom) == -1);
  labels[2] = 0;
  CHECK(cnn_loss_check_labels(&t, 4, 10, &denom) == 0);
}

static void test_cross_entropy_values(void) {
  /* equal logits: loss log C; softmax {1,2,3}/6 with target 3 (0-based 2): -log(1/2) */
  float x[2 * 3] = {0, 0, 0, 0, logf(2), logf(3)}, loss[2], stats[4];
  int64_t labels[2] = {0, 2};
  cnn_class_target t = {labels, false, 0, NULL};
  cnn_loss_cross_entropy_forward(x, &t, 0, 2, 3, 1, loss, stats);
  CHECK_CLOSE(loss[0], log(3.0), 1e-6);
  CHECK_CLOSE(loss[1], log(2.0), 1e-6);
  CHECK_CLOSE(stats[0] + stats[1], log(3.0), 1e-6); /* lse of zeros */
  /* smoothing s: (1-s) nll + s/C sum_c -logp_c; row 0: every -logp_c = log 3 */
  cnn_loss_cross_entropy_forward(x, &t, 0.3, 2, 3, 1, loss, stats);
  CHECK_CLOSE(loss[0], log(3.0), 1e-6);
  CHECK_CLOSE(loss[1], 0.7 * log(2.0) + 0.1 * (log(6.0) + log(3.0) + log(2.0)), 1e-6);
  /* a logit of 1e4 next to 0s: loss 0 for it, 1e4 for the others, no inf/nan */
  float big[3] = {1e4f, 0, 0};
  int64_t l0[1] = {0}, l1[1] = {1};
  cnn_class_target tb = {l0, false, 0, NULL};
  cnn_loss_cross_entropy_forward(big, &tb, 0, 1, 3, 1, loss, stats);
  CHECK(loss[0] == 0);
  tb.labels = l1;
  cnn_loss_cross_entropy_forward(big, &tb, 0, 1, 3, 1, loss, stats);
  CHECK_CLOSE(loss[0], 1e4, 1e-6);
}

/* The backward against finite differences of sum_i coef_i loss_i, spatial (inner 2), weighted,
 * smoothed, with an ignored item. */
static void test_cross_entropy_backward(void) {
  enum { O = 2, C = 4, I = 2, T = O * C * I, K = O * I };
  float x[T], gx[T], loss[K], stats[2 * K], gitem[K] = {0.5f, -1.0f, 2.0f, 0.25f};
  float w[C] = {0.5f, 1.5f, 1.0f, 2.0f};
  int64_t labels[K] = {3, 0, -1, 2};
  cnn_rng_seed(cnn_rng_global(), 3);
  fill_uniform(x, T, -2, 2);
  for (int weighted = 0; weighted < 2; weighted++) {
    cnn_class_target t = {labels, true, -1, weighted ? w : NULL};
    double s = 0.2;
    cnn_loss_cross_entropy_forward(x, &t, s, O, C, I, loss, stats);
    CHECK(loss[2] == 0);
    cnn_loss_cross_entropy_backward(x, stats, &t, s, O, C, I, gitem, 1, 0.5f, gx);
    for (int j = 0; j < T; j++) {
      float v = x[j], h = 1e-2f;
      double fp = 0, fm = 0;
      x[j] = v + h;
      cnn_loss_cross_entropy_forward(x, &t, s, O, C, I, loss, stats);
      for (int k = 0; k < K; k++) fp += 0.5 * gitem[k] * loss[k];
      x[j] = v - h;
      cnn_loss_cross_entropy_forward(x, &t, s, O, C, I, loss, stats);
      for (int k = 0; k < K; k++) fm += 0.5 * gitem[k] * loss[k];
      x[j] = v;
      CHECK_CLOSE(gx[j], (fp - fm) / (2.0 * h), 2e-3);
    }
    cnn_loss_cross_entropy_forward(x, &t, s, O, C, I, loss, stats);
  }
}

static void test_nll_and_mse(void) {
  float x[2 * 3] = {-1, -2, -3, -4, -5, -6}, loss[2], gx[6], w[3] = {1, 2, 3}, g = 2;
  int64_t labels[2] = {1, 2};
  cnn_class_target t = {labels, false, 0, w};
  cnn_loss_nll_forward(x, &t, 2, 3, 1, loss);
  CHECK(loss[0] == 2 * 2 && loss[1] == 3 * 6);
  cnn_loss_nll_backward(&t, 2, 3, 1, &g, 0, 0.5f, gx);
  float want[6] = {0, -2, 0, 0, 0, -3};
  CHECK(memcmp(gx, want, sizeof want) == 0);

  float a[3] = {1, 2, 4}, b[3] = {0, 0, 1}, l[3], ga[3], gb[3], gi[3] = {1, 1, 1};
  double sum;
  cnn_loss_mse_forward(a, b, 3, l, &sum);
  CHECK(l[0] == 1 && l[1] == 4 && l[2] == 9 && sum == 14);
  cnn_loss_mse_backward(a, b, 3, gi, 1, 1.0f / 3, ga, gb);
  CHECK_CLOSE(ga[2], 2.0, 1e-7);
  CHECK_CLOSE(gb[1], -4.0 / 3, 1e-7);
}

/* ---- dropout ---- */

static void test_dropout(void) {
  enum { N = 10000 };
  float *m1 = malloc(N * sizeof(float)), *m2 = malloc(N * sizeof(float));
  cnn_rng_seed(cnn_rng_global(), 5);
  cnn_dropout_mask(m1, N, 0.25);
  cnn_rng_seed(cnn_rng_global(), 5);
  cnn_dropout_mask(m2, N, 0.25);
  CHECK(memcmp(m1, m2, N * sizeof(float)) == 0);
  int kept = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    kept += m1[i] != 0;
    bad += m1[i] != 0 && m1[i] != (float)(1 / 0.75);
  }
  CHECK(bad == 0);
  /* Binomial(1e4, 0.75): sd ~ 43; 6 sd */
  CHECK(abs(kept - 7500) < 260);
  /* p = 1: zeros, and the stream is not consumed */
  cnn_rng_seed(cnn_rng_global(), 6);
  uint64_t first = cnn_rng_next(cnn_rng_global());
  cnn_rng_seed(cnn_rng_global(), 6);
  cnn_dropout_mask(m1, N, 1.0);
  CHECK(cnn_rng_next(cnn_rng_global()) == first);
  for (int i = 0; i < N; i++) bad += m1[i] != 0;
  CHECK(bad == 0);
  float x[3] = {1, 2, 3}, mk[3] = {2, 0, 2}, y[3];
  cnn_dropout_apply(x, mk, y, 3);
  CHECK(y[0] == 2 && y[1] == 0 && y[2] == 6);
  free(m1);
  free(m2);
}

/* ---- batch norm ---- */

static void test_batchnorm_values(void) {
  /* x = {1, 2, 3, 4} as (4, 1): mean 2.5, biased var 1.25, unbiased 5/3 */
  float x[4] = {1, 2, 3, 4}, y[4], mean, invstd, rm = 0, rv = 1, w = 2, b = 0.5f;
  cnn_batchnorm_args a = {4, 1, 1, true, 0.1, 0, &rm, &rv, 1, 1, &w, &b, false, NULL, NULL, NULL};
  cnn_batchnorm_forward(&a, x, y, &mean, &invstd);
  CHECK_CLOSE(mean, 2.5, 1e-7);
  CHECK_CLOSE(invstd, 1 / sqrt(1.25), 1e-6);
  for (int i = 0; i < 4; i++) CHECK_CLOSE(y[i], 2 * (x[i] - 2.5) / sqrt(1.25) + 0.5, 1e-6);
  CHECK_CLOSE(rm, 0.25, 1e-7);
  CHECK_CLOSE(rv, 0.9 + 0.1 * 5 / 3.0, 1e-6);
  /* eval: the running statistics, unchanged */
  a.training = false;
  cnn_batchnorm_forward(&a, x, y, &mean, &invstd);
  CHECK_CLOSE(y[0], 2 * (1 - 0.25) / sqrt(0.9 + 0.5 / 3) + 0.5, 1e-6);
  CHECK_CLOSE(rm, 0.25, 1e-7);
}

/* gradient of sum(g * y) w.r.t. x, weight and bias by central differences, (N, C, S) = (3, 2, 2) */
static void test_batchnorm_backward(void) {
  enum { N = 3, C = 2, S = 2, T = N * C * S };
  float x[T], g[T], y[T], gx[T], mean[C], invstd[C], w[C] = {0.7f, 1.3f}, b[C] = {0.1f, -0.2f};
  float gw[C], gb[C];
  cnn_rng_seed(cnn_rng_global(), 7);
  fill_uniform(x, T, -2, 2);
  fill_uniform(g, T, -1, 1);
  for (int training = 0; training < 2; training++) {
    float rm[C] = {0.1f, -0.1f}, rv[C] = {0.8f, 1.2f};
    cnn_batchnorm_args a = {N, C, S, training, 0.0, 1e-5, rm, rv, 1, 1, w, b, false, NULL, NULL, NULL};
    cnn_batchnorm_forward(&a, x, y, mean, invstd);
    cnn_batchnorm_backward(&a, x, g, mean, invstd, gx, gw, gb);
    float *params[3] = {x, w, b}, *grads[3] = {gx, gw, gb};
    int sizes[3] = {T, C, C};
    for (int p = 0; p < 3; p++) {
      for (int j = 0; j < sizes[p]; j++) {
        float v = params[p][j], h = 1e-2f;
        double fp = 0, fm = 0;
        params[p][j] = v + h;
        cnn_batchnorm_forward(&a, x, y, mean, invstd);
        for (int i = 0; i < T; i++) fp += (double)g[i] * y[i];
        params[p][j] = v - h;
        cnn_batchnorm_forward(&a, x, y, mean, invstd);
        for (int i = 0; i < T; i++) fm += (double)g[i] * y[i];
        params[p][j] = v;
        CHECK_CLOSE(grads[p][j], (fp - fm) / (2.0 * h), 3e-3);
      }
    }
  }
}

/* Batch norm's blocked sums (norm.c: float lanes per block of rows or of a row's pieces, merged
 * in double) against a two-pass reference in double, on shapes that reach every path: rows shorter
 * than a vector (S = 3), tails (S = 49), blocks of many rows with a short last block (S = 64,
 * N = 100), rows cut in pieces (S = 5000), and data far from zero (mean 1000, spread 0.01, where a
 * one-pass sum of squares in float would lose all digits) or with a different mean per image. */
static void test_batchnorm_blocks(void) {
  static const struct {
    int64_t N, C, S;
    double offset, per_image, spread;
  } cases[] = {
      {7, 3, 3, 0, 0, 1},         {5, 3, 49, 0.5, 0, 2}, {100, 2, 64, 0, 0, 1},   {3, 2, 5000, -1, 0, 1},
      {6, 2, 256, 1000, 0, 0.01}, {9, 2, 300, 0, 50, 1}, {40, 3, 64, 0, 20, 0.1},
  };
  cnn_rng_seed(cnn_rng_global(), 11);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int64_t N = cases[k].N, C = cases[k].C, S = cases[k].S, M = N * S, T = N * C * S;
    float *x = malloc(T * sizeof(float)), *y = malloc(T * sizeof(float)), *g = malloc(T * sizeof(float));
    float *gx = malloc(T * sizeof(float)), mean[3], invstd[3], gw[3], gb[3];
    float w[3] = {0.5f, 1.5f, -2}, b[3] = {0.25f, 0, -1}, rm[3] = {0.1f, 0.2f, 0.3f}, rv[3] = {1, 2, 3};
    fill_uniform(g, (int)T, -1, 1);
    for (int64_t n = 0; n < N; n++)
      for (int64_t i = 0; i < C * S; i++)
        x[n * C * S + i] = (float)(cases[k].offset + cases[k].per_image * n +
                                   cases[k].spread * (2 * cnn_rng_uniform01(cnn_rng_global()) - 1));
    cnn_batchnorm_args a = {N, C, S, true, 0.1, 0, rm, rv, 1, 1, w, b, false, NULL, NULL, NULL};
    cnn_batchnorm_forward(&a, x, y, mean, invstd);
    cnn_batchnorm_backward(&a, x, g, mean, invstd, gx, gw, gb);
    for (int64_t c = 0; c < C; c++) {
      double sum = 0, sq = 0, sg = 0, sgx = 0;
      for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
      const double mu = sum / (double)M;
      for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++) sq += (x[(n * C + c) * S + s] - mu) * (x[(n * C + c) * S + s] - mu);
      const double var = sq / (double)M, is = 1 / sqrt(var);
      CHECK_CLOSE(mean[c], mu, 1e-6);
      CHECK_CLOSE(invstd[c], is, 1e-5);
      CHECK_CLOSE(rm[c], 0.9 * (0.1 * (c + 1)) + 0.1 * mu, 1e-6);
      CHECK_CLOSE(rv[c], 0.9 * (c + 1) + 0.1 * sq / (double)(M - 1), 1e-5);
      /* y and the gradients from the saved statistics (as backward uses them), in double */
      for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++) {
          const int64_t i = (n * C + c) * S + s;
          CHECK_CLOSE(y[i], (x[i] - (double)mean[c]) * invstd[c] * w[c] + b[c], 1e-5);
          sg += g[i], sgx += g[i] * (x[i] - (double)mean[c]);
        }
      CHECK_CLOSE(gb[c], sg, 1e-5);
      CHECK_CLOSE(gw[c], sgx * invstd[c], 1e-5);
      const double is2 = (double)invstd[c] * invstd[c];
      for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++) {
          const int64_t i = (n * C + c) * S + s;
          CHECK_CLOSE(gx[i], w[c] * invstd[c] * (g[i] - sg / (double)M - (x[i] - mean[c]) * is2 * sgx / (double)M),
                      1e-4);
        }
    }
    free(x);
    free(y);
    free(g);
    free(gx);
  }
}

/* relu = true against ReLU applied by hand around the plain kernels: the forward's values and
 * running statistics, and (ReLU's gradient, out <= 0 -> 0, taken before the plain backward) the
 * gradients, all bit for bit: the fused kernel runs the same float operations in the same order.
 * Shapes reach every path of norm.c (S < 16, row tails, many-row blocks, rows in pieces); channel
 * 0 has weight 0 and bias 0 (every output exactly 0: no gradient at all, as ReLU's), channel 1
 * holds -1, 0 and 1 with running mean 0 and bias 0 (in eval mode, outputs exactly 0 at x = 0),
 * channel 2 a negative weight. */
static void test_batchnorm_relu(void) {
  static const int64_t cases[][3] = {{7, 3, 3}, {5, 3, 49}, {40, 3, 64}, {3, 3, 5000}};
  cnn_rng_seed(cnn_rng_global(), 12);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int64_t N = cases[k][0], C = cases[k][1], S = cases[k][2], T = N * C * S;
    float *x = malloc(T * sizeof(float)), *g = malloc(T * sizeof(float)), *gm = malloc(T * sizeof(float));
    float *y0 = malloc(T * sizeof(float)), *y1 = malloc(T * sizeof(float));
    float *gx0 = malloc(T * sizeof(float)), *gx1 = malloc(T * sizeof(float));
    fill_uniform(x, (int)T, -2, 2);
    fill_uniform(g, (int)T, -1, 1);
    for (int64_t n = 0; n < N; n++)
      for (int64_t s = 0; s < S; s++) x[(n * C + 1) * S + s] = (float)((n + s) % 3) - 1;
    float w[3] = {0, 1.5f, -2}, b[3] = {0, 0, 0.5f};
    for (int training = 0; training < 2; training++) {
      float rm0[3] = {0.1f, 0, 0.3f}, rv0[3] = {1, 2, 3}, rm1[3], rv1[3];
      float m0[3], m1[3], is0[3], is1[3], gw0[3], gw1[3], gb0[3], gb1[3];
      memcpy(rm1, rm0, sizeof rm0), memcpy(rv1, rv0, sizeof rv0);
      cnn_batchnorm_args a0 = {N, C, S, training, 0.1, 1e-5, rm0, rv0, 1, 1, w, b, false, NULL, NULL, NULL};
      cnn_batchnorm_args a1 = a0;
      a1.running_mean = rm1, a1.running_var = rv1, a1.relu = true;
      cnn_batchnorm_forward(&a0, x, y0, m0, is0);
      cnn_batchnorm_forward(&a1, x, y1, m1, is1);
      int zeros = 0;
      for (int64_t i = 0; i < T; i++) {
        zeros += y0[i] == 0;
        gm[i] = y0[i] <= 0 ? 0.0f : g[i];
        y0[i] = y0[i] > 0 ? y0[i] : 0.0f;
      }
      CHECK(zeros >= N * S && (training || zeros > N * S)); /* channel 0; eval: x = 0 in channel 1 */
      CHECK(memcmp(y0, y1, T * sizeof(float)) == 0);
      CHECK(memcmp(m0, m1, sizeof m0) == 0 && memcmp(is0, is1, sizeof is0) == 0);
      CHECK(memcmp(rm0, rm1, sizeof rm0) == 0 && memcmp(rv0, rv1, sizeof rv0) == 0);
      cnn_batchnorm_backward(&a0, x, gm, m0, is0, gx0, gw0, gb0);
      cnn_batchnorm_backward(&a1, x, g, m1, is1, gx1, gw1, gb1);
      CHECK(memcmp(gx0, gx1, T * sizeof(float)) == 0);
      CHECK(memcmp(gw0, gw1, sizeof gw0) == 0 && memcmp(gb0, gb1, sizeof gb0) == 0);
      CHECK(gw1[0] == 0 && gb1[0] == 0);
      /* gx alone (weight and bias frozen) is the same */
      cnn_batchnorm_backward(&a1, x, g, m1, is1, gx0, NULL, NULL);
      CHECK(memcmp(gx0, gx1, T * sizeof(float)) == 0);
    }
    free(x);
    free(g);
    free(gm);
    free(y0);
    free(y1);
    free(gx0);
    free(gx1);
  }
}

/* On two threads or more batch norm runs over the images (a table of per-block statistics merged
 * per channel in block order), on one over the channels: the same bits, for every path of norm.c
 * (S < 16 stays on channels; row tails; many-row blocks; rows in pieces past 4096 values) and every
 * option: training or eval, relu, a residual (forward), the residual's gradient stored (in place
 * over gy) with the mask read from y, gx over gy itself. */
static void test_batchnorm_threads_same_bits(void) {
  static const int64_t cases[][3] = {{7, 3, 3}, {5, 3, 49}, {40, 3, 64}, {3, 3, 5000}, {33, 4, 1024}};
  cnn_rng_seed(cnn_rng_global(), 13);
  const int threads = cnn_parallel_get_threads();
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int64_t N = cases[k][0], C = cases[k][1], S = cases[k][2], T = N * C * S;
    float *x = malloc(T * sizeof(float)), *g = malloc(T * sizeof(float)), *r = malloc(T * sizeof(float));
    float *y[3], *gx[3], *ge[3];
    for (int t = 0; t < 3; t++) {
      y[t] = malloc(T * sizeof(float)), gx[t] = malloc(T * sizeof(float)), ge[t] = malloc(T * sizeof(float));
    }
    fill_uniform(x, (int)T, -2, 2);
    fill_uniform(g, (int)T, -1, 1);
    fill_uniform(r, (int)T, -1, 1);
    float w[4] = {0.5f, 1.5f, -2, 1}, b[4] = {0.25f, 0, -1, 0.5f};
    for (int variant = 0; variant < 16; variant++) {
      const bool training = variant & 1, relu = variant & 2, residual = variant & 4, in_place = variant & 8;
      float rm[3][4], rv[3][4], m[3][4], is[3][4], gw[3][4], gb[3][4];
      for (int t = 0; t < 3; t++) {
        for (int c = 0; c < 4; c++) rm[t][c] = 0.1f * (float)c, rv[t][c] = 1 + (float)c;
        cnn_parallel_set_threads(t + 1);
        cnn_batchnorm_args a = {N, C, S, training, 0.1, 1e-5, rm[t], rv[t], 1, 1, w, b, relu, NULL, NULL, NULL};
        a.residual = residual ? r : NULL;
        cnn_batchnorm_forward(&a, x, y[t], m[t], is[t]);
        /* backward: with a residual, its gradient stored (over a copy of g when in place) */
        memcpy(ge[t], g, T * sizeof(float));
        a.residual = NULL, a.y = residual && relu ? y[t] : NULL, a.gresidual = residual ? ge[t] : NULL;
        if (in_place && !residual) memcpy(gx[t], g, T * sizeof(float));
        const float *gy = residual && in_place ? ge[t] : in_place ? gx[t] : g;
        cnn_batchnorm_backward(&a, x, gy, m[t], is[t], gx[t], gw[t], gb[t]);
      }
      for (int t = 1; t < 3; t++) {
        const bool same = memcmp(y[0], y[t], T * sizeof(float)) == 0 && memcmp(gx[0], gx[t], T * sizeof(float)) == 0 &&
                          (!residual || memcmp(ge[0], ge[t], T * sizeof(float)) == 0) &&
                          memcmp(m[0], m[t], (size_t)C * sizeof(float)) == 0 &&
                          memcmp(is[0], is[t], (size_t)C * sizeof(float)) == 0 &&
                          memcmp(rm[0], rm[t], (size_t)C * sizeof(float)) == 0 &&
                          memcmp(rv[0], rv[t], (size_t)C * sizeof(float)) == 0 &&
                          memcmp(gw[0], gw[t], (size_t)C * sizeof(float)) == 0 &&
                          memcmp(gb[0], gb[t], (size_t)C * sizeof(float)) == 0;
        if (!same) {
          fprintf(stderr, "batch norm (%lld, %lld, %lld), variant %d: %d threads differ from 1\n", (long long)N,
                  (long long)C, (long long)S, variant, t + 1);
          failures++;
        }
      }
    }
    for (int t = 0; t < 3; t++) free(y[t]), free(gx[t]), free(ge[t]);
    free(x), free(g), free(r);
  }
  cnn_parallel_set_threads(threads);
}

/* ---- local response norm ---- */

static void test_lrn_values(void) {
  /* size 2 on 3 channels of ones: channel c sums channels c-1 and c (zero padded), so
   * scale = k + alpha/2 * {1, 2, 2} */
  float x[3] = {1, 1, 1}, y[3], sc[3];
  cnn_lrn_args a = {1, 3, 1, 2, 0.5, 0.75, 1.0};
  cnn_lrn_forward(&a, x, y, sc);
  CHECK_CLOSE(sc[0], 1.25, 1e-7);
  CHECK_CLOSE(sc[1], 1.5, 1e-7);
  CHECK_CLOSE(sc[2], 1.5, 1e-7);
  CHECK_CLOSE(y[0], pow(1.25, -0.75), 1e-6);
  /* size 5 on 3 channels: every window covers them all */
  a.size = 5;
  cnn_lrn_forward(&a, x, y, sc);
  for (int c = 0; c < 3; c++) CHECK_CLOSE(sc[c], 1 + 0.5 / 5 * 3, 1e-7);
}

static void test_lrn_backward(void) {
  enum { N = 2, C = 5, S = 3, T = N * C * S };
  float x[T], g[T], y[T], sc[T], gx[T], work[T];
  cnn_rng_seed(cnn_rng_global(), 8);
  fill_uniform(x, T, -2, 2);
  fill_uniform(g, T, -1, 1);
  for (int64_t size = 1; size <= 6; size++) {
    cnn_lrn_args a = {N, C, S, size, 0.6, 0.75, 1.5};
    cnn_lrn_forward(&a, x, y, sc);
    cnn_lrn_backward(&a, x, sc, g, gx, work);
    for (int j = 0; j < T; j++) {
      float v = x[j], h = 1e-2f;
      double fp = 0, fm = 0;
      x[j] = v + h;
      cnn_lrn_forward(&a, x, y, sc);
      for (int i = 0; i < T; i++) fp += (double)g[i] * y[i];
      x[j] = v - h;
      cnn_lrn_forward(&a, x, y, sc);
      for (int i = 0; i < T; i++) fm += (double)g[i] * y[i];
      x[j] = v;
      CHECK_CLOSE(gx[j], (fp - fm) / (2.0 * h), 2e-3);
    }
  }
}

/* ---- threads: the same bits on 1 and 2 threads, on sizes past the parallel grain ---- */

static void test_threads_agree(void) {
  enum { O = 64, N = 1000, T = O * N };
  float *x = malloc(T * sizeof(float)), *y1 = malloc(T * sizeof(float)), *y2 = malloc(T * sizeof(float));
  float *s1 = malloc(T * sizeof(float)), *s2 = malloc(T * sizeof(float));
  float m1[2 * O], m2[2 * O], l1[O], l2[O];
  int64_t labels[O];
  for (int i = 0; i < O; i++) labels[i] = i % N;
  cnn_rng_seed(cnn_rng_global(), 9);
  fill_uniform(x, T, -4, 4);
  cnn_class_target t = {labels, false, 0, NULL};
  cnn_lrn_args la = {4, 16, T / 64, 5, 1e-2, 0.75, 2};
  cnn_batchnorm_args ba = {32, 20, T / 640, true, 0.1, 1e-5, NULL, NULL, 0, 0, NULL, NULL, false, NULL, NULL, NULL};
  int threads = cnn_parallel_get_threads();
  for (int pass = 0; pass < 4; pass++) {
    cnn_parallel_set_threads(1);
    float *ya = y1, *yb = y2, *sa = s1, *sb = s2;
    switch (pass) {
    case 0:
      cnn_softmax_forward(x, ya, O, N, 1, false);
      cnn_parallel_set_threads(2);
      cnn_softmax_forward(x, yb, O, N, 1, false);
      break;
    case 1:
      cnn_loss_cross_entropy_forward(x, &t, 0.1, O, N, 1, l1, m1);
      cnn_parallel_set_threads(2);
      cnn_loss_cross_entropy_forward(x, &t, 0.1, O, N, 1, l2, m2);
      CHECK(memcmp(l1, l2, sizeof l1) == 0 && memcmp(m1, m2, sizeof m1) == 0);
      break;
    case 2:
      cnn_lrn_forward(&la, x, ya, sa);
      cnn_parallel_set_threads(2);
      cnn_lrn_forward(&la, x, yb, sb);
      CHECK(memcmp(sa, sb, T * sizeof(float)) == 0);
      break;
    case 3:
      cnn_batchnorm_forward(&ba, x, ya, m1, l1);
      cnn_parallel_set_threads(2);
      cnn_batchnorm_forward(&ba, x, yb, m2, l2);
      break;
    }
    if (pass != 1) CHECK(memcmp(y1, y2, T * sizeof(float)) == 0);
  }
  cnn_parallel_set_threads(threads);
  free(x);
  free(y1);
  free(y2);
  free(s1);
  free(s2);
}

int main(void) {
  test_softmax_values();
  test_softmax_strided_dim();
  test_softmax_backward();
  test_leaky_relu();
  test_label_check();
  test_cross_entropy_values();
  test_cross_entropy_backward();
  test_nll_and_mse();
  test_dropout();
  test_batchnorm_values();
  test_batchnorm_backward();
  test_batchnorm_blocks();
  test_batchnorm_relu();
  test_batchnorm_threads_same_bits();
  test_lrn_values();
  test_lrn_backward();
  test_threads_agree();
  return check_summary("test_nnops");
}
