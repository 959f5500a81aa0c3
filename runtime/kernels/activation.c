/* Activation kernels (see kernels/nn.h): leaky ReLU and the fused, max-subtracted softmax and
 * log-softmax with their backward from the saved output. Buffers are contiguous; a reduced dim
 * with inner > 1 is walked with stride inner, one item per (outer, inner) position. */
#include "core/parallel.h"
#include "kernels/nn.h"

#include <math.h>

/* One activation call's operands, for the ranges run on the pool. */
typedef struct {
  const float *x, *gy;
  float *y;
  float slope;
  int64_t n, inner;
  bool take_log, tanh_form;
} act_job;

static void leaky_fwd(void *arg, int64_t b, int64_t e) {
  const act_job *j = arg;
  const float *x = j->x, s = j->slope;
  float *y = j->y;
  for (int64_t i = b; i < e; i++) y[i] = x[i] > 0 ? x[i] : x[i] * s;
}

static void leaky_bwd(void *arg, int64_t b, int64_t e) {
  const act_job *j = arg;
  const float *x = j->x, *gy = j->gy, s = j->slope;
  float *gx = j->y;
  for (int64_t i = b; i < e; i++) gx[i] = x[i] > 0 ? gy[i] : gy[i] * s;
}

void cnn_leaky_relu_forward(const float *x, float *y, int64_t n, float slope) {
  act_job j = {.x = x, .y = y, .slope = slope};
  cnn_parallel_items(n, n, leaky_fwd, &j);
}

void cnn_leaky_relu_backward(const float *x, const float *gy, float *gx, int64_t n, float slope) {
  act_job j = {.x = x, .gy = gy, .y = gx, .slope = slope};
  cnn_parallel_items(n, n, leaky_bwd, &j);
}

/* GELU, with ATen's scalar CPU formulas step for step in float32 (what PyTorch gives on small
 * tensors, and within an ulp of its vectorised path): exact x/2 (1 + erf(x / sqrt 2)), whose
 * 1 + erf rounds to 0 below x ~ -5.9 (PyTorch's 0, not a denormal), and the tanh form
 * x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Backward: dy (Phi(x) + x phi(x)), and for the
 * tanh form the product rule written as ATen writes it, its 1 - tanh^2 one fused multiply-add (as
 * PyTorch's build contracts it: exact where tanh is near -1 or 1). */
static const float GELU_ALPHA = (float)M_SQRT1_2, GELU_PDF = (float)(M_2_SQRTPI * M_SQRT1_2 * 0.5),
                   GELU_BETA = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), GELU_KAPPA = 0.044715f;

static void gelu_fwd(void *arg, int64_t b, int64_t e) {
  const act_job *j = arg;
  const float *x = j->x;
  float *y = j->y;
  if (j->tanh_form)
    for (int64_t i = b; i < e; i++) {
      float v = x[i], inner = GELU_BETA * (v + GELU_KAPPA * (v * v * v));
      y[i] = 0.5f * v * (1.0f + tanhf(inner));
    }
  else
    for (int64_t i = b; i < e; i++) y[i] = x[i] * 0.5f * (1.0f + erff(x[i] * GELU_ALPHA));
}

static void gelu_bwd(void *arg, int64_t b, int64_t e) {
  const act_job *j = arg;
  const float *x = j->x, *gy = j->gy;
  float *gx = j->y;
  if (j->tanh_form)
    for (int64_t i = b; i < e; i++) {
      float v = x[i], sq = v * v, inner = GELU_BETA * (v + GELU_KAPPA * (sq * v)), t = tanhf(inner);
      float left = 0.5f * v, right = 1.0f + t, dleft = 0.5f * right;
      float dinner = GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * sq), dright = left * fmaf(-t, t, 1.0f) * dinner;
      gx[i] = gy[i] * (dleft + dright);
    }
  else
    for (int64_t i = b; i < e; i++) {
      float v = x[i], cdf = 0.5f * (1.0f + erff(v * GELU_ALPHA)), pdf = GELU_PDF * expf(v * v * -0.5f);
      gx[i] = gy[i] * (cdf + v * pdf);
    }
}

void cnn_gelu_forward(const float *x, float *y, int64_t n, bool tanh_form) {
  act_job j = {.x = x, .y = y, .tanh_form = tanh_form};
  cnn_parallel_items(n, 8 * n, gelu_fwd, &j);
}

void cnn_gelu_backward(const float *x, const float *gy, float *gx, int64_t n, bool tanh_form) {
  act_job j = {.x = x, .gy = gy, .y = gx, .tanh_form = tanh_form};
  cnn_parallel_items(n, 8 * n, gelu_bwd, &j);
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

/* item w of outer * inner: the row of n values inner apart starting at (w / inner, 0, w % inner) */
static void softmax_items(void *arg, int64_t w0, int64_t w1) {
  const act_job *j = arg;
  const int64_t n = j->n, inner = j->inner;
  for (int64_t w = w0; w < w1; w++) {
    int64_t off = (w / inner) * n * inner + w % inner;
    if (inner == 1) softmax_row(j->x + off, j->y + off, n, 1, j->take_log); /* st 1: the contiguous loop */
    else softmax_row(j->x + off, j->y + off, n, inner, j->take_log);
  }
}

static void softmax_items_backward(void *arg, int64_t w0, int64_t w1) {
  const act_job *j = arg;
  const int64_t n = j->n, inner = j->inner;
  for (int64_t w = w0; w < w1; w++) {
    int64_t off = (w / inner) * n * inner + w % inner;
    if (inner == 1) softmax_row_backward(j->x + off, j->gy + off, j->y + off, n, 1, j->take_log);
    else softmax_row_backward(j->x + off, j->gy + off, j->y + off, n, inner, j->take_log);
  }
}

/* adjacent strided items share cache lines: the pool's ranges keep runs of them on one thread */
void cnn_softmax_forward(const float *x, float *y, int64_t outer, int64_t n, int64_t inner, bool take_log) {
  act_job j = {.x = x, .y = y, .n = n, .inner = inner, .take_log = take_log};
  cnn_parallel_items(outer * inner, outer * inner * n, softmax_items, &j);
}

void cnn_softmax_backward(const float *y, const float *gy, float *gx, int64_t outer, int64_t n, int64_t inner,
                          bool take_log) {
  act_job j = {.x = y, .gy = gy, .y = gx, .n = n, .inner = inner, .take_log = take_log};
  cnn_parallel_items(outer * inner, outer * inner * n, softmax_items_backward, &j);
}
