/* Activation kernels (see kernels/nn.h): leaky ReLU and the fused, max-subtracted softmax and
 * log-softmax with their backward from the saved output. Buffers are contiguous; a reduced dim
 * with inner > 1 is walked with stride inner, one item per (outer, inner) position. */
#include "cnn/kernels/nn.h"
#include "cnn/parallel.h"

#include <math.h>

static bool go_parallel(int64_t work) { return work >= CNN_PARALLEL_GRAIN && cnn_parallel_get_threads() > 1; }

/* Every loop decides serial or parallel before it starts: an OpenMP region whose if clause is
 * false still builds a one-thread team (~1.4 us in libgomp), more than a small activation. */
void cnn_leaky_relu_forward(const float *x, float *y, int64_t n, float slope) {
  if (go_parallel(n)) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : x[i] * slope;
  } else {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : x[i] * slope;
  }
}

void cnn_leaky_relu_backward(const float *x, const float *gy, float *gx, int64_t n, float slope) {
  if (go_parallel(n)) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) gx[i] = x[i] > 0 ? gy[i] : gy[i] * slope;
  } else {
    for (int64_t i = 0; i < n; i++) gx[i] = x[i] > 0 ? gy[i] : gy[i] * slope;
  }
}

/* One softmax row of n values st apart. Inlined with st == 1 for the contiguous fast path.
 * exp(x - max) never overflows; log-softmax is (x - max) - log(sum), accurate for huge logits. */
static inline void softmax_row(const float *x, float *y, int64_t n, int64_t st, bool take_log) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = x[i * st] > m ? x[i * st] : m;
  double sum = 0;
  if (take_log) {
    for (int64_t i = 0; i < n; i++) sum += expf(x[i * st] - m);
    float ls = (float)log(sum);
    for (int64_t i = 0; i < n; i++) y[i * st] = (x[i * st] - m) - ls;
  } else {
    for (int64_t i = 0; i < n; i++) {
      float e = expf(x[i * st] - m);
      y[i * st] = e;
      sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) y[i * st] *= inv;
  }
}

static inline void softmax_row_backward(const float *y, const float *gy, float *gx, int64_t n, int64_t st,
                                        bool take_log) {
  double acc = 0;
  if (take_log) { /* gx = gy - softmax * sum(gy) */
    for (int64_t i = 0; i < n; i++) acc += gy[i * st];
    float s = (float)acc;
    for (int64_t i = 0; i < n; i++) gx[i * st] = gy[i * st] - expf(y[i * st]) * s;
  } else { /* gx = y * (gy - <gy, y>) */
    for (int64_t i = 0; i < n; i++) acc += (double)gy[i * st] * y[i * st];
    float d = (float)acc;
    for (int64_t i = 0; i < n; i++) gx[i * st] = y[i * st] * (gy[i * st] - d);
  }
}

/* STRIDED_IN_REGION: above the grain the strided softmax loops stay in an OpenMP region even with
 * one thread: the region's ~1.4 us is nothing beside the work there, and GCC compiles the outlined
 * loop 6-9% tighter (callgrind) than a plain copy of it. Below the grain, a plain loop. */
/* item w of outer * inner: the row of n values inner apart starting at (w / inner, 0, w % inner) */
static inline void softmax_item(const float *x, float *y, int64_t n, int64_t inner, int64_t w, bool take_log) {
  int64_t off = (w / inner) * n * inner + w % inner;
  softmax_row(x + off, y + off, n, inner, take_log);
}

static inline void softmax_item_backward(const float *y, const float *gy, float *gx, int64_t n, int64_t inner,
                                         int64_t w, bool take_log) {
  int64_t off = (w / inner) * n * inner + w % inner;
  softmax_row_backward(y + off, gy + off, gx + off, n, inner, take_log);
}

void cnn_softmax_forward(const float *x, float *y, int64_t outer, int64_t n, int64_t inner, bool take_log) {
  if (inner == 1) {
    if (outer > 1 && go_parallel(outer * n)) {
#pragma omp parallel for schedule(static)
      for (int64_t o = 0; o < outer; o++) softmax_row(x + o * n, y + o * n, n, 1, take_log);
    } else {
      for (int64_t o = 0; o < outer; o++) softmax_row(x + o * n, y + o * n, n, 1, take_log);
    }
    return;
  }
  /* adjacent items share cache lines: a static schedule keeps them on one thread */
  const int64_t items = outer * inner;
  if (items > 1 && items * n >= CNN_PARALLEL_GRAIN) { /* see STRIDED_IN_REGION */
#pragma omp parallel for schedule(static) if (cnn_parallel_get_threads() > 1)
    for (int64_t w = 0; w < items; w++) softmax_item(x, y, n, inner, w, take_log);
  } else {
    for (int64_t w = 0; w < items; w++) softmax_item(x, y, n, inner, w, take_log);
  }
}

void cnn_softmax_backward(const float *y, const float *gy, float *gx, int64_t outer, int64_t n, int64_t inner,
                          bool take_log) {
  if (inner == 1) {
    if (outer > 1 && go_parallel(outer * n)) {
#pragma omp parallel for schedule(static)
      for (int64_t o = 0; o < outer; o++) softmax_row_backward(y + o * n, gy + o * n, gx + o * n, n, 1, take_log);
    } else {
      for (int64_t o = 0; o < outer; o++) softmax_row_backward(y + o * n, gy + o * n, gx + o * n, n, 1, take_log);
    }
    return;
  }
  const int64_t items = outer * inner;
  if (items > 1 && items * n >= CNN_PARALLEL_GRAIN) { /* see STRIDED_IN_REGION */
#pragma omp parallel for schedule(static) if (cnn_parallel_get_threads() > 1)
    for (int64_t w = 0; w < items; w++) softmax_item_backward(y, gy, gx, n, inner, w, take_log);
  } else {
    for (int64_t w = 0; w < items; w++) softmax_item_backward(y, gy, gx, n, inner, w, take_log);
  }
}
