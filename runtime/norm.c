/* Normalisation kernels (see nnops.h): batch norm (statistics per channel over batch and space,
 * running statistics moved in place when training) and local response norm across channels.
 * Inputs are viewed as (N, C, S): S = 1 for (N, C), H * W for images. Batch norm works per channel
 * (threads split channels); LRN per (image, channel) plane. Sums are taken in double. */
#include "cnn/nnops.h"
#include "cnn/parallel.h"

#include <math.h>

static bool go_parallel(int64_t work) { return work >= CNN_PARALLEL_GRAIN && cnn_parallel_get_threads() > 1; }

/* ---- batch norm ---- */

/* Per-row sums in LANES float accumulators added in double per row: a fixed order (the same
 * numbers whatever the threads) that the compiler vectorises, where one double accumulator is a
 * serial chain of dependent adds (4x slower on ResNet's batch norms). */
#define LANES 16

/* sum of p[0..n) */
static inline double row_sum(const float *p, int64_t n) {
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += p[i + l];
  double s = 0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; i < n; i++) s += p[i];
  return s;
}

/* sum of (p - m)^2 over p[0..n) */
static inline double row_sq(const float *p, int64_t n, float m) {
  float acc[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += (p[i + l] - m) * (p[i + l] - m);
  double s = 0;
  for (int l = 0; l < LANES; l++) s += acc[l];
  for (; i < n; i++) s += (double)(p[i] - m) * (p[i] - m);
  return s;
}

/* *sg += sum g, *sgx += sum g (p - m) over [0, n) */
static inline void row_dots(const float *p, const float *g, int64_t n, float m, double *sg, double *sgx) {
  float a1[LANES] = {0}, a2[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int l = 0; l < LANES; l++) {
      a1[l] += g[i + l];
      a2[l] += g[i + l] * (p[i + l] - m);
    }
  double s1 = 0, s2 = 0;
  for (int l = 0; l < LANES; l++) s1 += a1[l], s2 += a2[l];
  for (; i < n; i++) s1 += g[i], s2 += (double)g[i] * (p[i] - m);
  *sg += s1, *sgx += s2;
}

/* x: (N, C, S) -> y, save_mean (C), save_invstd (C) */
static inline void bn_forward_channel(const cnn_batchnorm_args *a, const float *x, float *y, float *save_mean,
                                      float *save_invstd, int64_t c) {
  const int64_t N = a->N, C = a->C, S = a->S, M = N * S;
  double mean, var;
  if (a->training) { /* two passes: the centred sum of squares does not cancel */
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < N; n++) sum += row_sum(x + (n * C + c) * S, S);
    mean = sum / (double)M;
    for (int64_t n = 0; n < N; n++) sq += row_sq(x + (n * C + c) * S, S, (float)mean);
    var = sq / (double)M;
    if (a->running_mean && M > 0) {
      float *rm = a->running_mean + c * a->rm_stride;
      *rm = (float)((1 - a->momentum) * *rm + a->momentum * mean);
    }
    if (a->running_var && M > 0) {
      float *rv = a->running_var + c * a->rv_stride;
      double unbiased = M > 1 ? sq / (double)(M - 1) : var;
      *rv = (float)((1 - a->momentum) * *rv + a->momentum * unbiased);
    }
  } else {
    mean = a->running_mean[c * a->rm_stride];
    var = a->running_var[c * a->rv_stride];
  }
  const float m = (float)mean, invstd = (float)(1.0 / sqrt(var + a->eps));
  save_mean[c] = m;
  save_invstd[c] = invstd;
  const float sc = (a->weight ? a->weight[c] : 1.0f) * invstd, b = a->bias ? a->bias[c] : 0.0f;
  for (int64_t n = 0; n < N; n++) {
    const float *p = x + (n * C + c) * S;
    float *q = y + (n * C + c) * S;
    for (int64_t s = 0; s < S; s++) q[s] = (p[s] - m) * sc + b;
  }
}

/* Each kernel below decides serial or parallel before it starts: an OpenMP region whose if
 * clause is false still builds a one-thread team (~1.4 us in libgomp). */
void cnn_batchnorm_forward(const cnn_batchnorm_args *a, const float *x, float *y, float *save_mean,
                           float *save_invstd) {
  const int64_t C = a->C;
  if (C > 1 && go_parallel(a->N * C * a->S)) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) bn_forward_channel(a, x, y, save_mean, save_invstd, c);
  } else {
    for (int64_t c = 0; c < C; c++) bn_forward_channel(a, x, y, save_mean, save_invstd, c);
  }
}

/* With xhat = (x - mean) invstd and M = N * S values per channel:
 *   gbias = sum g, gweight = sum g xhat,
 *   training gx = w invstd (g - sum g / M - xhat sum(g xhat) / M), eval gx = w invstd g. */
static inline void bn_backward_channel(const cnn_batchnorm_args *a, const float *x, const float *gy,
                                       const float *save_mean, const float *save_invstd, float *gx, float *gweight,
                                       float *gbias, int64_t c) {
  const int64_t N = a->N, C = a->C, S = a->S, M = N * S;
  const float m = save_mean[c], invstd = save_invstd[c];
  double sg = 0, sgx = 0; /* sum g, sum g (x - mean) */
  for (int64_t n = 0; n < N; n++) row_dots(x + (n * C + c) * S, gy + (n * C + c) * S, S, m, &sg, &sgx);
  if (gbias) gbias[c] = (float)sg;
  if (gweight) gweight[c] = (float)(sgx * invstd);
  if (!gx) return;
  const float k = (a->weight ? a->weight[c] : 1.0f) * invstd;
  if (a->training) {
    const float mg = (float)(sg / (double)M), proj = (float)(sgx / (double)M) * invstd * invstd;
    for (int64_t n = 0; n < N; n++) {
      const float *p = x + (n * C + c) * S, *g = gy + (n * C + c) * S;
      float *q = gx + (n * C + c) * S;
      for (int64_t s = 0; s < S; s++) q[s] = k * (g[s] - mg - (p[s] - m) * proj);
    }
  } else {
    for (int64_t n = 0; n < N; n++) {
      const float *g = gy + (n * C + c) * S;
      float *q = gx + (n * C + c) * S;
      for (int64_t s = 0; s < S; s++) q[s] = k * g[s];
    }
  }
}

void cnn_batchnorm_backward(const cnn_batchnorm_args *a, const float *x, const float *gy, const float *save_mean,
                            const float *save_invstd, float *gx, float *gweight, float *gbias) {
  const int64_t C = a->C;
  if (C > 1 && go_parallel(a->N * C * a->S)) {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) bn_backward_channel(a, x, gy, save_mean, save_invstd, gx, gweight, gbias, c);
  } else {
    for (int64_t c = 0; c < C; c++) bn_backward_channel(a, x, gy, save_mean, save_invstd, gx, gweight, gbias, c);
  }
}

/* ---- local response norm ---- */

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* x: (N, C, S) -> y, scale (N, C, S); one work item per (n, c) plane of S values. The loop stays
 * an OpenMP region with an if clause: LRN inputs are never tiny, and the outlined loop compiles ~4%
 * tighter (callgrind) than a plain copy of it. */
void cnn_lrn_forward(const cnn_lrn_args *a, const float *x, float *y, float *scale) {
  const int64_t C = a->C, S = a->S, items = a->N * C;
  const int64_t before = a->size / 2, after = (a->size - 1) / 2;
  const float k = (float)a->k, coef = (float)(a->alpha / (double)a->size), nbeta = (float)-a->beta;
  const bool quarter_powers = a->beta == 0.75; /* AlexNet's and PyTorch's default */
#pragma omp parallel for schedule(static) if (items > 1 && go_parallel(items * S * a->size))
  for (int64_t w = 0; w < items; w++) {
    const int64_t n = w / C, c = w % C;
    float *sc = scale + w * S;
    for (int64_t s = 0; s < S; s++) sc[s] = 0;
    for (int64_t j = max64(0, c - before); j <= min64(C - 1, c + after); j++) {
      const float *p = x + (n * C + j) * S;
      for (int64_t s = 0; s < S; s++) sc[s] += p[s] * p[s];
    }
    const float *p = x + w * S;
    float *q = y + w * S;
    if (quarter_powers) /* scale^-3/4 = 1 / (sqrt(scale) sqrt(sqrt(scale))): vectorises, powf does not */
      for (int64_t s = 0; s < S; s++) {
        sc[s] = k + coef * sc[s];
        const float r = sqrtf(sc[s]);
        q[s] = p[s] / (r * sqrtf(r));
      }
    else
      for (int64_t s = 0; s < S; s++) {
        sc[s] = k + coef * sc[s];
        q[s] = p[s] * powf(sc[s], nbeta);
      }
  }
}

/* element i of LRN backward's pass 1 (see cnn_lrn_backward) */
static inline void lrn_backward_first(const float *x, const float *scale, const float *gy, float *gx, float *work,
                                      float nbeta, bool quarter_powers, int64_t i) {
  float p;
  if (quarter_powers) {
    const float r = sqrtf(scale[i]);
    p = 1.0f / (r * sqrtf(r));
  } else {
    p = powf(scale[i], nbeta);
  }
  gx[i] = gy[i] * p;
  work[i] = gy[i] * x[i] * p / scale[i];
}

/* plane w = (n, c) of LRN backward's pass 2: the transposed window sum of work */
static inline void lrn_backward_window(const float *x, const float *work, float *gx, int64_t C, int64_t S,
                                       int64_t before, int64_t after, float coef, int64_t w) {
  const int64_t n = w / C, c = w % C;
  const float *p = x + w * S;
  float *q = gx + w * S;
  for (int64_t j = max64(0, c - after); j <= min64(C - 1, c + before); j++) {
    const float *t = work + (n * C + j) * S;
    for (int64_t s = 0; s < S; s++) q[s] -= coef * p[s] * t[s];
  }
}

/* y_c = x_c scale_c^-beta with scale_c summing x_j^2 over j in [c - before, c + after], so
 *   gx_j = g_j scale_j^-beta - 2 beta alpha / size * x_j * sum over c in [j - after, j + before]
 *          of g_c x_c scale_c^(-beta - 1).
 * Pass 1 writes the first term into gx and t_c = g_c x_c scale_c^(-beta-1) into work; pass 2
 * subtracts the window sums of t (the transposed window: before and after swap). */
void cnn_lrn_backward(const cnn_lrn_args *a, const float *x, const float *scale, const float *gy, float *gx,
                      float *work) {
  const int64_t C = a->C, S = a->S, items = a->N * C, total = items * S;
  const int64_t before = a->size / 2, after = (a->size - 1) / 2;
  const float nbeta = (float)-a->beta, coef = (float)(2.0 * a->beta * a->alpha / (double)a->size);
  const bool quarter_powers = a->beta == 0.75;
  if (go_parallel(total)) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < total; i++) lrn_backward_first(x, scale, gy, gx, work, nbeta, quarter_powers, i);
  } else {
    for (int64_t i = 0; i < total; i++) lrn_backward_first(x, scale, gy, gx, work, nbeta, quarter_powers, i);
  }
  if (items > 1 && go_parallel(total * a->size)) {
#pragma omp parallel for schedule(static)
    for (int64_t w = 0; w < items; w++) lrn_backward_window(x, work, gx, C, S, before, after, coef, w);
  } else {
    for (int64_t w = 0; w < items; w++) lrn_backward_window(x, work, gx, C, S, before, after, coef, w);
  }
}
