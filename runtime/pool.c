/* Pooling kernels (see pool.h). Every (image, channel) plane is independent: loops run over planes
 * on the OpenMP threads, forward and backward alike, so each gradient plane is written by one
 * thread in a fixed order. Window bounds follow PyTorch's CPU kernels exactly. */
#include "cnn/pool.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cnn/error.h"
#include "cnn/parallel.h"

cnn_pool2d_params cnn_pool2d_default_params(int64_t k) {
  cnn_pool2d_params p = {{k, k}, {k, k}, {0, 0}, {1, 1}, false, true, 0};
  return p;
}

/* floor division for a possibly negative numerator (den > 0) */
static int64_t div_floor(int64_t num, int64_t den) {
  int64_t q = num / den;
  return (num % den != 0 && num < 0) ? q - 1 : q;
}

/* PyTorch's pooling_output_shape */
static int64_t out_size(int64_t in, int64_t k, int64_t pad, int64_t s, int64_t d, bool ceil_mode) {
  int64_t o = div_floor(in + 2 * pad - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && (o - 1) * s >= in + pad) o--; /* the last window must start inside input or left padding */
  return o;
}

/* Checks a 3-d or 4-d float32 input with non-empty planes; gives planes and H, W. */
static int check_input(const cnn_tensor *x, int64_t *planes) {
  if (x->dtype != CNN_FLOAT32) return cnn_error_set("expected a float32 input, got %s", cnn_dtype_name(x->dtype));
  if (x->ndim != 3 && x->ndim != 4)
    return cnn_error_set("expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got %d-d", x->ndim);
  for (int d = x->ndim - 3; d < x->ndim; d++)
    if (x->size[d] == 0)
      return cnn_error_set("input has a zero-size dimension %d (only the batch may be empty)", d + 1);
  *planes = x->ndim == 4 ? x->size[0] * x->size[1] : x->size[0];
  return 0;
}

int cnn_pool2d_check(const cnn_tensor *x, const cnn_pool2d_params *p, int64_t out_hw[2]) {
  int64_t planes;
  if (check_input(x, &planes)) return -1;
  for (int i = 0; i < 2; i++) {
    if (p->kernel[i] < 1)
      return cnn_error_set("kernel size must be at least 1, got (%lld, %lld)", (long long)p->kernel[0],
                           (long long)p->kernel[1]);
    if (p->stride[i] < 1)
      return cnn_error_set("stride must be at least 1, got (%lld, %lld)", (long long)p->stride[0],
                           (long long)p->stride[1]);
    if (p->dilation[i] < 1)
      return cnn_error_set("dilation must be at least 1, got (%lld, %lld)", (long long)p->dilation[0],
                           (long long)p->dilation[1]);
    if (p->padding[i] < 0)
      return cnn_error_set("padding must be non-negative, got (%lld, %lld)", (long long)p->padding[0],
                           (long long)p->padding[1]);
    if (p->padding[i] > p->kernel[i] / 2)
      return cnn_error_set("padding (%lld, %lld) must be at most half the kernel size (%lld, %lld)",
                           (long long)p->padding[0], (long long)p->padding[1], (long long)p->kernel[0],
                           (long long)p->kernel[1]);
  }
  if (p->divisor < 0) return cnn_error_set("divisor_override must be positive, got %lld", (long long)p->divisor);
  for (int i = 0; i < 2; i++) /* keeps the output size computation far from int64 overflow */
    if (p->kernel[i] > INT32_MAX || p->stride[i] > INT32_MAX || p->dilation[i] > INT32_MAX)
      return cnn_error_set("kernel size, stride and dilation must be below 2^31");
  int64_t H = x->size[x->ndim - 2], W = x->size[x->ndim - 1];
  int64_t oh = out_size(H, p->kernel[0], p->padding[0], p->stride[0], p->dilation[0], p->ceil_mode);
  int64_t ow = out_size(W, p->kernel[1], p->padding[1], p->stride[1], p->dilation[1], p->ceil_mode);
  if (oh < 1 || ow < 1)
    return cnn_error_set("input (%lld, %lld) is too small for the window: the output would be (%lld, %lld)",
                         (long long)H, (long long)W, (long long)oh, (long long)ow);
  out_hw[0] = oh, out_hw[1] = ow;
  return 0;
}

/* Number of planes: the product of all dims but the last two. */
static int64_t lead_planes(const cnn_tensor *t) {
  int64_t P = 1;
  for (int d = 0; d < t->ndim - 2; d++) P *= t->size[d];
  return P;
}

/* A tensor shaped like x but with the last two dims (h, w). New reference. */
static cnn_tensor *new_plane_tensor(const cnn_tensor *like, int ndim, cnn_dtype dt, int64_t h, int64_t w, bool zero) {
  int64_t size[4];
  for (int d = 0; d < ndim - 2; d++) size[d] = like->size[d];
  size[ndim - 2] = h, size[ndim - 1] = w;
  return zero ? cnn_tensor_zeros(dt, ndim, size) : cnn_tensor_empty(dt, ndim, size);
}

static bool go_parallel(int64_t planes, int64_t work) {
  return planes > 1 && work >= CNN_PARALLEL_GRAIN / 4 && cnn_parallel_get_threads() > 1;
}

/* ---- max ---- */

/* One step of a window's max: as PyTorch, the first maximum wins and NaN beats everything (the
 * last NaN of the window). Blended through bit masks, not branches: pooled ReLU outputs
 * mispredict, and the short rows of small planes (LeNet's 14 and 5) never reach a vector loop. */
static inline void take_max(float v, int64_t at, float *best, int64_t *arg) {
  const int64_t t = -(int64_t)((v > *best) | (v != v)); /* all ones: take v */
  uint32_t vb, bb;
  memcpy(&vb, &v, sizeof vb);
  memcpy(&bb, best, sizeof bb);
  bb = (bb & ~(uint32_t)t) | (vb & (uint32_t)t);
  memcpy(best, &bb, sizeof bb);
  *arg = (*arg & ~t) | (at & t);
}

/* 2x2 windows with stride 2 lying wholly inside the plane (LeNet's pooling): x (H, W) -> y, idx
 * (oh, ow) with idx the flat position in the plane, scanned in the general loop's order. */
static void max2x2_plane(const float *x, float *y, int64_t *idx, int64_t W, int64_t oh, int64_t ow) {
  for (int64_t i = 0; i < oh; i++) {
    const float *r0 = x + 2 * i * W, *r1 = r0 + W;
    const int64_t base = 2 * i * W;
    for (int64_t j = 0; j < ow; j++) {
      const int64_t c = 2 * j;
      float best = r0[c];
      int64_t arg = base + c;
      take_max(r0[c + 1], base + c + 1, &best, &arg);
      take_max(r1[c], base + W + c, &best, &arg);
      take_max(r1[c + 1], base + W + c + 1, &best, &arg);
      y[i * ow + j] = best;
      idx[i * ow + j] = arg;
    }
  }
}

/* one (H, W) plane -> (oh, ow) maxima and their flat indices */
static inline void max_plane(const cnn_pool2d_params *p, const float *xpl, float *ypl, int64_t *ipl, int64_t H,
                             int64_t W, int64_t oh, int64_t ow, bool k2s2) {
  if (k2s2) {
    max2x2_plane(xpl, ypl, ipl, W, oh, ow);
    return;
  }
  const int64_t kh = p->kernel[0], kw = p->kernel[1], sh = p->stride[0], sw = p->stride[1];
  const int64_t ph = p->padding[0], pw = p->padding[1], dh = p->dilation[0], dw = p->dilation[1];
  for (int64_t i = 0; i < oh; i++) {
    int64_t h0 = i * sh - ph, h1 = h0 + (kh - 1) * dh + 1;
    if (h1 > H) h1 = H;
    while (h0 < 0) h0 += dh;
    for (int64_t j = 0; j < ow; j++) {
      int64_t w0 = j * sw - pw, w1 = w0 + (kw - 1) * dw + 1;
      if (w1 > W) w1 = W;
      while (w0 < 0) w0 += dw;
      float best = -INFINITY;
      int64_t arg = h0 < h1 && w0 < w1 ? h0 * W + w0 : -1; /* an empty window cannot occur for valid params */
      for (int64_t h = h0; h < h1; h += dh)
        for (int64_t w = w0; w < w1; w += dw) take_max(xpl[h * W + w], h * W + w, &best, &arg);
      ypl[i * ow + j] = best;
      ipl[i * ow + j] = arg;
    }
  }
}

int cnn_pool_max2d_forward(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y, cnn_tensor **indices) {
  *y = NULL, *indices = NULL;
  int64_t ohw[2], P;
  if (cnn_pool2d_check(x, p, ohw) || check_input(x, &P)) return -1;
  const int64_t H = x->size[x->ndim - 2], W = x->size[x->ndim - 1], oh = ohw[0], ow = ohw[1];
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *ry = xc ? new_plane_tensor(x, x->ndim, CNN_FLOAT32, oh, ow, false) : NULL;
  cnn_tensor *ri = ry ? new_plane_tensor(x, x->ndim, CNN_INT64, oh, ow, false) : NULL;
  if (!ri) {
    cnn_tensor_release(xc);
    cnn_tensor_release(ry);
    return -1;
  }
  const float *xp = cnn_tensor_f32(xc);
  float *yp = cnn_tensor_f32(ry);
  int64_t *ip = cnn_tensor_i64(ri);
  const int64_t kh = p->kernel[0], kw = p->kernel[1], sh = p->stride[0], sw = p->stride[1];
  const int64_t ph = p->padding[0], pw = p->padding[1], dh = p->dilation[0], dw = p->dilation[1];
  const bool k2s2 = kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && dh == 1 && dw == 1 &&
                    2 * oh <= H && 2 * ow <= W;
  if (go_parallel(P, P * oh * ow * kh * kw)) {
#pragma omp parallel for schedule(static)
    for (int64_t pl = 0; pl < P; pl++)
      max_plane(p, xp + pl * H * W, yp + pl * oh * ow, ip + pl * oh * ow, H, W, oh, ow, k2s2);
  } else { /* no OpenMP region: even a one-thread team costs ~1.4 us */
    for (int64_t pl = 0; pl < P; pl++)
      max_plane(p, xp + pl * H * W, yp + pl * oh * ow, ip + pl * oh * ow, H, W, oh, ow, k2s2);
  }
  cnn_tensor_release(xc);
  *y = ry, *indices = ri;
  return 0;
}

/* plane pl of max_pool2d backward: zeroed, then the gradients scattered to their argmax */
static inline void max_backward_plane(const float *g, const int64_t *ix, float *out, int64_t n, int64_t HW,
                                      int64_t pl) {
  float *opl = out + pl * HW;
  memset(opl, 0, (size_t)HW * sizeof(float));
  for (int64_t k = 0; k < n; k++) {
    int64_t at = ix[pl * n + k];
    if (at >= 0 && at < HW) opl[at] += g[pl * n + k];
  }
}

cnn_tensor *cnn_pool_max2d_backward(const cnn_tensor *gy, const cnn_tensor *indices, int64_t H, int64_t W) {
  if (gy->dtype != CNN_FLOAT32 || indices->dtype != CNN_INT64 || !cnn_tensor_same_shape(gy, indices) ||
      (gy->ndim != 3 && gy->ndim != 4))
    return cnn_error_set("internal: max_pool2d backward given mismatched tensors"), NULL;
  cnn_tensor *gc = cnn_tensor_contiguous(gy);
  cnn_tensor *ic = gc ? cnn_tensor_contiguous(indices) : NULL;
  /* each plane is zeroed just before its scatter, while it is in cache: one pass over gx, not a
   * whole-tensor memset followed by a second pass */
  cnn_tensor *gx = ic ? new_plane_tensor(gy, gy->ndim, CNN_FLOAT32, H, W, false) : NULL;
  if (gx) {
    const int64_t n = gy->size[gy->ndim - 2] * gy->size[gy->ndim - 1], HW = H * W;
    const int64_t P = lead_planes(gy);
    const float *g = cnn_tensor_f32(gc);
    const int64_t *ix = cnn_tensor_i64(ic);
    float *out = cnn_tensor_f32(gx);
    if (go_parallel(P, P * n)) {
#pragma omp parallel for schedule(static)
      for (int64_t pl = 0; pl < P; pl++) max_backward_plane(g, ix, out, n, HW, pl);
    } else {
      for (int64_t pl = 0; pl < P; pl++) max_backward_plane(g, ix, out, n, HW, pl);
    }
  }
  cnn_tensor_release(gc);
  cnn_tensor_release(ic);
  return gx;
}

/* ---- average ---- */

/* PyTorch's avg_pool2d window for output (i, j): the clipped bounds and the divisor. Returns
 * false for a window that lies wholly in padding (its output is 0). */
typedef struct avg_win { int64_t h0, h1, w0, w1; float div; } avg_win;

static bool avg_window(const cnn_pool2d_params *p, int64_t H, int64_t W, int64_t i, int64_t j, avg_win *a) {
  int64_t h0 = i * p->stride[0] - p->padding[0], w0 = j * p->stride[1] - p->padding[1];
  int64_t h1 = h0 + p->kernel[0], w1 = w0 + p->kernel[1];
  if (h1 > H + p->padding[0]) h1 = H + p->padding[0];
  if (w1 > W + p->padding[1]) w1 = W + p->padding[1];
  int64_t pool = (h1 - h0) * (w1 - w0);
  if (h0 < 0) h0 = 0;
  if (w0 < 0) w0 = 0;
  if (h1 > H) h1 = H;
  if (w1 > W) w1 = W;
  if (h0 >= h1 || w0 >= w1) return false;
  int64_t div = p->divisor > 0 ? p->divisor : p->count_include_pad ? pool : (h1 - h0) * (w1 - w0);
  a->h0 = h0, a->h1 = h1, a->w0 = w0, a->w1 = w1, a->div = (float)div;
  return true;
}

static inline void avg_forward_plane(const cnn_pool2d_params *p, const float *xp, float *yp, int64_t H, int64_t W,
                                     int64_t oh, int64_t ow, int64_t pl) {
  const float *xpl = xp + pl * H * W;
  for (int64_t i = 0; i < oh; i++)
    for (int64_t j = 0; j < ow; j++) {
      avg_win a;
      float s = 0;
      if (avg_window(p, H, W, i, j, &a)) {
        for (int64_t h = a.h0; h < a.h1; h++)
          for (int64_t w = a.w0; w < a.w1; w++) s += xpl[h * W + w];
        s /= a.div;
      }
      yp[(pl * oh + i) * ow + j] = s;
    }
}

cnn_tensor *cnn_pool_avg2d_forward(const cnn_tensor *x, const cnn_pool2d_params *p) {
  int64_t ohw[2], P;
  if (cnn_pool2d_check(x, p, ohw) || check_input(x, &P)) return NULL;
  if (p->dilation[0] != 1 || p->dilation[1] != 1) return cnn_error_set("average pooling has no dilation"), NULL;
  const int64_t H = x->size[x->ndim - 2], W = x->size[x->ndim - 1], oh = ohw[0], ow = ohw[1];
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *y = xc ? new_plane_tensor(x, x->ndim, CNN_FLOAT32, oh, ow, false) : NULL;
  if (y) {
    const float *xp = cnn_tensor_f32(xc);
    float *yp = cnn_tensor_f32(y);
    /* above the grain the loop stays in a region even with one thread: GCC compiles the outlined loop
     * ~5% tighter (callgrind) and the region's ~1.4 us is nothing beside that much work */
    if (P > 1 && P * oh * ow * p->kernel[0] * p->kernel[1] >= CNN_PARALLEL_GRAIN / 4) {
#pragma omp parallel for schedule(static) if (cnn_parallel_get_threads() > 1)
      for (int64_t pl = 0; pl < P; pl++) avg_forward_plane(p, xp, yp, H, W, oh, ow, pl);
    } else {
      for (int64_t pl = 0; pl < P; pl++) avg_forward_plane(p, xp, yp, H, W, oh, ow, pl);
    }
  }
  cnn_tensor_release(xc);
  return y;
}

static inline void avg_backward_plane(const cnn_pool2d_params *p, const float *g, float *out, int64_t H, int64_t W,
                                      int64_t oh, int64_t ow, int64_t pl) {
  float *opl = out + pl * H * W;
  for (int64_t i = 0; i < oh; i++)
    for (int64_t j = 0; j < ow; j++) {
      avg_win a;
      if (!avg_window(p, H, W, i, j, &a)) continue;
      float v = g[(pl * oh + i) * ow + j] / a.div;
      for (int64_t h = a.h0; h < a.h1; h++)
        for (int64_t w = a.w0; w < a.w1; w++) opl[h * W + w] += v;
    }
}

cnn_tensor *cnn_pool_avg2d_backward(const cnn_tensor *gy, const cnn_pool2d_params *p, int64_t H, int64_t W) {
  if (gy->dtype != CNN_FLOAT32 || (gy->ndim != 3 && gy->ndim != 4))
    return cnn_error_set("internal: avg_pool2d backward given a bad gradient"), NULL;
  const int64_t oh = gy->size[gy->ndim - 2], ow = gy->size[gy->ndim - 1];
  const int64_t P = lead_planes(gy);
  cnn_tensor *gc = cnn_tensor_contiguous(gy);
  cnn_tensor *gx = gc ? new_plane_tensor(gy, gy->ndim, CNN_FLOAT32, H, W, true) : NULL;
  if (gx) {
    const float *g = cnn_tensor_f32(gc);
    float *out = cnn_tensor_f32(gx);
    if (go_parallel(P, P * oh * ow * p->kernel[0] * p->kernel[1])) {
#pragma omp parallel for schedule(static)
      for (int64_t pl = 0; pl < P; pl++) avg_backward_plane(p, g, out, H, W, oh, ow, pl);
    } else {
      for (int64_t pl = 0; pl < P; pl++) avg_backward_plane(p, g, out, H, W, oh, ow, pl);
    }
  }
  cnn_tensor_release(gc);
  return gx;
}

/* ---- adaptive average ---- */

static int64_t start_index(int64_t i, int64_t out, int64_t in) { return (i * in) / out; }
static int64_t end_index(int64_t i, int64_t out, int64_t in) { return ((i + 1) * in + out - 1) / out; }

static inline void adaptive_forward_plane(const float *xp, float *yp, int64_t H, int64_t W, int64_t oh, int64_t ow,
                                          int64_t pl) {
  const float *xpl = xp + pl * H * W;
  for (int64_t i = 0; i < oh; i++) {
    int64_t h0 = start_index(i, oh, H), h1 = end_index(i, oh, H);
    for (int64_t j = 0; j < ow; j++) {
      int64_t w0 = start_index(j, ow, W), w1 = end_index(j, ow, W);
      float s = 0;
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) s += xpl[h * W + w];
      yp[(pl * oh + i) * ow + j] = s / (float)((h1 - h0) * (w1 - w0));
    }
  }
}

cnn_tensor *cnn_pool_adaptive_avg2d_forward(const cnn_tensor *x, int64_t oh, int64_t ow) {
  int64_t P;
  if (check_input(x, &P)) return NULL;
  if (oh < 0 || ow < 0)
    return cnn_error_set("output size must be non-negative, got (%lld, %lld)", (long long)oh, (long long)ow), NULL;
  const int64_t H = x->size[x->ndim - 2], W = x->size[x->ndim - 1];
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *y = xc ? new_plane_tensor(x, x->ndim, CNN_FLOAT32, oh, ow, false) : NULL;
  if (y) {
    const float *xp = cnn_tensor_f32(xc);
    float *yp = cnn_tensor_f32(y);
    /* in a region above the grain even with one thread, as avg_pool2d forward (~10% tighter here) */
    if (P > 1 && P * H * W >= CNN_PARALLEL_GRAIN / 4) {
#pragma omp parallel for schedule(static) if (cnn_parallel_get_threads() > 1)
      for (int64_t pl = 0; pl < P; pl++) adaptive_forward_plane(xp, yp, H, W, oh, ow, pl);
    } else {
      for (int64_t pl = 0; pl < P; pl++) adaptive_forward_plane(xp, yp, H, W, oh, ow, pl);
    }
  }
  cnn_tensor_release(xc);
  return y;
}

static inline void adaptive_backward_plane(const float *g, float *out, int64_t H, int64_t W, int64_t oh, int64_t ow,
                                           int64_t pl) {
  float *opl = out + pl * H * W;
  for (int64_t i = 0; i < oh; i++) {
    int64_t h0 = start_index(i, oh, H), h1 = end_index(i, oh, H);
    for (int64_t j = 0; j < ow; j++) {
      int64_t w0 = start_index(j, ow, W), w1 = end_index(j, ow, W);
      float v = g[(pl * oh + i) * ow + j] / (float)((h1 - h0) * (w1 - w0));
      for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) opl[h * W + w] += v;
    }
  }
}

cnn_tensor *cnn_pool_adaptive_avg2d_backward(const cnn_tensor *gy, int64_t H, int64_t W) {
  if (gy->dtype != CNN_FLOAT32 || (gy->ndim != 3 && gy->ndim != 4))
    return cnn_error_set("internal: adaptive_avg_pool2d backward given a bad gradient"), NULL;
  const int64_t oh = gy->size[gy->ndim - 2], ow = gy->size[gy->ndim - 1];
  const int64_t P = lead_planes(gy);
  cnn_tensor *gc = cnn_tensor_contiguous(gy);
  cnn_tensor *gx = gc ? new_plane_tensor(gy, gy->ndim, CNN_FLOAT32, H, W, true) : NULL;
  if (gx) {
    const float *g = cnn_tensor_f32(gc);
    float *out = cnn_tensor_f32(gx);
    if (go_parallel(P, P * H * W)) {
#pragma omp parallel for schedule(static)
      for (int64_t pl = 0; pl < P; pl++) adaptive_backward_plane(g, out, H, W, oh, ow, pl);
    } else {
      for (int64_t pl = 0; pl < P; pl++) adaptive_backward_plane(g, out, H, W, oh, ow, pl);
    }
  }
  cnn_tensor_release(gc);
  return gx;
}
