/* Loss kernels (see kernels/nn.h): cross-entropy fused with log-softmax (one pass over each item's
 * scores forward, one backward), negative log-likelihood and mean squared error. Scores are
 * (outer, C, inner); item w = o * inner + i reads its C scores with stride inner. Labels are
 * checked once, serially, before any kernel runs, so kernels index with them freely. */
#include "cnn/error.h"
#include "core/parallel.h"
#include "kernels/nn.h"

#include <math.h>
#include <string.h>

/* One loss call's operands, for the ranges run on the pool. */
typedef struct {
  const float *x, *stats, *gitem, *a, *b;
  const cnn_class_target *t;
  float *loss, *out, *gb;
  double *part;
  int64_t C, inner, gstride, n, chunk;
  double smoothing;
  float gscale, s, wsum;
} loss_job;

/* The class of item w, or -1 when it is ignored. */
static inline int64_t class_of(const cnn_class_target *t, int64_t w) {
  int64_t l = t->labels[w];
  return t->has_ignore && l == t->ignore_index ? -1 : l;
}

int cnn_loss_check_labels(const cnn_class_target *t, int64_t items, int64_t C, double *denom) {
  double d = 0;
  for (int64_t w = 0; w < items; w++) {
    int64_t l = t->labels[w];
    if (t->has_ignore && l == t->ignore_index) continue;
    if (l < 0 || l >= C)
      return C == 0 ? cnn_error_set("label %lld is out of range: there are no classes (the input's class dim is 0)",
                                    (long long)l)
                    : cnn_error_set("label %lld is out of range for %lld classes (expected 0..%lld)", (long long)l,
                                    (long long)C, (long long)(C - 1));
    d += t->weight ? t->weight[l] : 1.0;
  }
  *denom = d;
  return 0;
}

/* ---- cross-entropy ---- */

/* One item: C scores st apart. Writes the loss and the (max, log-sum) pair. */
static inline void ce_item(const float *x, int64_t C, int64_t st, int64_t cls, const float *wt, double s, float *loss,
                           float *stats) {
  float m = -INFINITY;
  for (int64_t c = 0; c < C; c++) m = x[c * st] > m ? x[c * st] : m;
  double sum = 0;
  for (int64_t c = 0; c < C; c++) sum += expf(x[c * st] - m);
  double ls = log(sum);
  stats[0] = m;
  stats[1] = (float)ls;
  if (cls < 0) {
    *loss = 0;
    return;
  }
  /* lse - x_c = (m - x_c) + ls: the large parts cancel first */
  double r = (1 - s) * (wt ? wt[cls] : 1.0) * (((double)m - x[cls * st]) + ls);
  if (s > 0) {
    double sm = 0;
    for (int64_t c = 0; c < C; c++) sm += (wt ? wt[c] : 1.0) * (((double)m - x[c * st]) + ls);
    r += s / (double)C * sm;
  }
  *loss = (float)r;
}

static void ce_items(void *arg, int64_t w0, int64_t w1) {
  const loss_job *j = arg;
  const int64_t C = j->C, inner = j->inner;
  for (int64_t w = w0; w < w1; w++) {
    int64_t off = (w / inner) * C * inner + w % inner;
    ce_item(j->x + off, C, inner, class_of(j->t, w), j->t->weight, j->smoothing, j->loss + w, j->out + 2 * w);
  }
}

void cnn_loss_cross_entropy_forward(const float *x, const cnn_class_target *t, double label_smoothing, int64_t outer,
                                    int64_t C, int64_t inner, float *loss, float *stats) {
  loss_job j = {.x = x, .t = t, .smoothing = label_smoothing, .C = C, .inner = inner, .loss = loss, .out = stats};
  cnn_parallel_items(outer * inner, outer * inner * C, ce_items, &j);
}

/* d loss / d x_c = p_c * ((1 - s) w_t + s / C * sum_c' w_c') - (1 - s) w_t [c = t] - s / C * w_c,
 * p = softmax(x) = exp((x - m) - ls); with w = 1 this is p_c - (1 - s) [c = t] - s / C. */
static inline void ce_item_backward(const float *x, const float *stats, int64_t C, int64_t st, int64_t cls,
                                    const float *wt, float s, float wsum, float coef, float *gx) {
  const float m = stats[0], ls = stats[1];
  if (cls < 0) { /* an ignored item: 0 * p, so NaN where its softmax is NaN, as PyTorch's log_softmax backward */
    for (int64_t c = 0; c < C; c++) gx[c * st] = 0.0f * expf((x[c * st] - m) - ls);
    return;
  }
  const float w_t = wt ? wt[cls] : 1.0f, sc = s / (float)C;
  const float pk = coef * ((1 - s) * w_t + sc * wsum);
  if (wt) {
    for (int64_t c = 0; c < C; c++) gx[c * st] = pk * expf((x[c * st] - m) - ls) - coef * sc * wt[c];
  } else {
    for (int64_t c = 0; c < C; c++) gx[c * st] = pk * expf((x[c * st] - m) - ls) - coef * sc;
  }
  gx[cls * st] -= coef * (1 - s) * w_t;
}

static inline void ce_backward_at(const float *x, const float *stats, const cnn_class_target *t, int64_t C,
                                  int64_t inner, const float *gitem, int64_t gstride, float gscale, float s, float wsum,
                                  int64_t w, float *gx) {
  int64_t off = (w / inner) * C * inner + w % inner;
  float coef = gitem[w * gstride] * gscale;
  if (inner == 1) /* contiguous rows: the stride-1 instance vectorises */
    ce_item_backward(x + off, stats + 2 * w, C, 1, class_of(t, w), t->weight, s, wsum, coef, gx + off);
  else ce_item_backward(x + off, stats + 2 * w, C, inner, class_of(t, w), t->weight, s, wsum, coef, gx + off);
}

static void ce_items_backward(void *arg, int64_t w0, int64_t w1) {
  const loss_job *j = arg;
  for (int64_t w = w0; w < w1; w++)
    ce_backward_at(j->x, j->stats, j->t, j->C, j->inner, j->gitem, j->gstride, j->gscale, j->s, j->wsum, w, j->out);
}

void cnn_loss_cross_entropy_backward(const float *x, const float *stats, const cnn_class_target *t,
                                     double label_smoothing, int64_t outer, int64_t C, int64_t inner,
                                     const float *gitem, int64_t gstride, float gscale, float *gx) {
  const int64_t items = outer * inner;
  float wsum = (float)C;
  if (t->weight) {
    double ws = 0;
    for (int64_t c = 0; c < C; c++) ws += t->weight[c];
    wsum = (float)ws;
  }
  loss_job j = {.x = x,
                .stats = stats,
                .t = t,
                .C = C,
                .inner = inner,
                .gitem = gitem,
                .gstride = gstride,
                .gscale = gscale,
                .s = (float)label_smoothing,
                .wsum = wsum,
                .out = gx};
  cnn_parallel_items(items, items * C, ce_items_backward, &j);
}

/* ---- negative log-likelihood ---- */

void cnn_loss_nll_forward(const float *x, const cnn_class_target *t, int64_t outer, int64_t C, int64_t inner,
                          float *loss) {
  const int64_t items = outer * inner;
  for (int64_t w = 0; w < items; w++) {
    int64_t cls = class_of(t, w);
    int64_t off = (w / inner) * C * inner + w % inner;
    loss[w] = cls < 0 ? 0.0f : -(t->weight ? t->weight[cls] : 1.0f) * x[off + cls * inner];
  }
}

static void zero_range(void *arg, int64_t b, int64_t e) {
  const loss_job *j = arg;
  memset(j->out + b, 0, (size_t)(e - b) * sizeof(float));
}

void cnn_loss_nll_backward(const cnn_class_target *t, int64_t outer, int64_t C, int64_t inner, const float *gitem,
                           int64_t gstride, float gscale, float *gx) {
  const int64_t items = outer * inner, n = items * C;
  loss_job j = {.out = gx};
  cnn_parallel_items(n, n, zero_range, &j);
  for (int64_t w = 0; w < items; w++) {
    int64_t cls = class_of(t, w);
    if (cls < 0) continue;
    int64_t off = (w / inner) * C * inner + w % inner;
    gx[off + cls * inner] = -(t->weight ? t->weight[cls] : 1.0f) * gitem[w * gstride] * gscale;
  }
}

/* ---- mean squared error ---- */

/* The sum is taken in a fixed number of chunks whose bounds depend only on n, combined in order:
 * the same bits whatever the thread count. */
#define MSE_PARTS 64

/* parts [p0, p1): loss[i] = (a - b)^2 (when asked) and each part's sum of it in double */
static void mse_parts(void *arg, int64_t p0, int64_t p1) {
  const loss_job *j = arg;
  const float *restrict a = j->a, *restrict b = j->b;
  float *restrict loss = j->loss;
  for (int64_t p = p0; p < p1; p++) {
    int64_t lo = p * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
    if (loss)
      for (int64_t i = lo; i < hi; i++) {
        float d = a[i] - b[i];
        loss[i] = d * d;
      }
    if (!j->part) continue;
    double acc = 0;
    for (int64_t i = lo; i < hi; i++) {
      double d = (double)a[i] - b[i];
      acc += d * d;
    }
    j->part[p] = acc;
  }
}

void cnn_loss_mse_forward(const float *a, const float *b, int64_t n, float *loss, double *sum) {
  double part[MSE_PARTS];
  loss_job j = {
      .a = a, .b = b, .n = n, .chunk = (n + MSE_PARTS - 1) / MSE_PARTS, .loss = loss, .part = sum ? part : NULL};
  if (!loss && !sum) return;
  cnn_parallel_items(MSE_PARTS, n, mse_parts, &j); /* one pass for both */
  if (!sum) return;
  double total = 0;
  for (int p = 0; p < MSE_PARTS; p++) total += part[p];
  *sum = total;
}

static void mse_backward(void *arg, int64_t b, int64_t e) {
  const loss_job *j = arg;
  const float *restrict pa = j->a, *restrict pb = j->b, *restrict gitem = j->gitem;
  float *restrict ga = j->out, *restrict gb = j->gb;
  const int64_t gstride = j->gstride;
  const float norm = 2 * j->gscale;
  for (int64_t i = b; i < e; i++) {
    float g = norm * (pa[i] - pb[i]) * gitem[i * gstride];
    if (ga) ga[i] = g;
    if (gb) gb[i] = -g;
  }
}

/* PyTorch's order, (2 * gscale) * (a - b) * g: the scale first, so a mean's gradient of values
 * near the float32 limit stays finite as PyTorch's does */
void cnn_loss_mse_backward(const float *a, const float *b, int64_t n, const float *gitem, int64_t gstride, float gscale,
                           float *ga, float *gb) {
  loss_job j = {.a = a, .b = b, .gitem = gitem, .gstride = gstride, .gscale = gscale, .out = ga, .gb = gb};
  cnn_parallel_items(n, n, mse_backward, &j);
}
