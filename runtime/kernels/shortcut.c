/* ResNet's option A shortcut (see kernels/nn.h): subsampling and zero channel padding in one pass
 * each way, where avg_pool2d, zeros and cat took five. One work item per output plane forward and
 * per input plane backward, so every value is written once and any thread count gives the same bits. */
#include "core/parallel.h"
#include "kernels/nn.h"

#include <string.h>

typedef struct {
  const cnn_shortcut_args *a;
  const float *src;
  float *dst;
} shortcut_job;

static int64_t out_size(int64_t n, int64_t s) { return n / s + (n % s != 0); }

/* planes [p0, p1) of y (N, Cout, Ho, Wo) */
static void forward_planes(void *arg, int64_t p0, int64_t p1) {
  const shortcut_job *j = arg;
  const cnn_shortcut_args *a = j->a;
  const int64_t s = a->stride, H = a->H, W = a->W, Ho = out_size(H, s), Wo = out_size(W, s);
  const int64_t Cout = a->before + a->Cin + a->after;
  for (int64_t p = p0; p < p1; p++) {
    const int64_t n = p / Cout, c = p % Cout - a->before;
    float *q = j->dst + p * Ho * Wo;
    if (c < 0 || c >= a->Cin) {
      memset(q, 0, sizeof(float) * (size_t)(Ho * Wo));
      continue;
    }
    const float *x = j->src + (n * a->Cin + c) * H * W;
    if (s == 1) {
      memcpy(q, x, sizeof(float) * (size_t)(H * W));
      continue;
    }
    for (int64_t i = 0; i < Ho; i++, q += Wo) {
      const float *r = x + i * s * W;
      if (s == 2) /* the constant stride vectorises (even lanes of pairs of vectors) */
        for (int64_t k = 0; k < W / 2; k++) q[k] = r[2 * k];
      for (int64_t k = s == 2 ? W / 2 : 0; k < Wo; k++) q[k] = r[k * s];
    }
  }
}

/* planes [p0, p1) of gx (N, Cin, H, W) */
static void backward_planes(void *arg, int64_t p0, int64_t p1) {
  const shortcut_job *j = arg;
  const cnn_shortcut_args *a = j->a;
  const int64_t s = a->stride, H = a->H, W = a->W, Ho = out_size(H, s), Wo = out_size(W, s);
  const int64_t Cout = a->before + a->Cin + a->after;
  for (int64_t p = p0; p < p1; p++) {
    const int64_t n = p / a->Cin, c = p % a->Cin;
    const float *g = j->src + (n * Cout + a->before + c) * Ho * Wo;
    float *q = j->dst + p * H * W;
    if (s == 1) {
      memcpy(q, g, sizeof(float) * (size_t)(H * W));
      continue;
    }
    for (int64_t h = 0; h < H; h++, q += W) {
      const float *r = g + h / s * Wo;
      if (h % s) {
        memset(q, 0, sizeof(float) * (size_t)W);
      } else if (s == 2) { /* g interleaved with zeros: vectorises as the forward */
        for (int64_t k = 0; k < W / 2; k++) q[2 * k] = r[k], q[2 * k + 1] = 0;
        if (W % 2) q[W - 1] = r[W / 2];
      } else {
        memset(q, 0, sizeof(float) * (size_t)W);
        for (int64_t k = 0; k < Wo; k++) q[k * s] = r[k];
      }
    }
  }
}

void cnn_shortcut_forward(const cnn_shortcut_args *a, const float *x, float *y) {
  const int64_t Cout = a->before + a->Cin + a->after;
  const int64_t numel = a->N * Cout * out_size(a->H, a->stride) * out_size(a->W, a->stride);
  shortcut_job j = {a, x, y};
  cnn_parallel_items(a->N * Cout, numel, forward_planes, &j);
}

void cnn_shortcut_backward(const cnn_shortcut_args *a, const float *gy, float *gx) {
  shortcut_job j = {a, gy, gx};
  cnn_parallel_items(a->N * a->Cin, a->N * a->Cin * a->H * a->W, backward_planes, &j);
}
