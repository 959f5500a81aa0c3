/* Resampling kernels (see resize.h). A resize is separable: each axis gets a table of taps (source
 * indices and weights per output index), computed once per call in float32 with ATen's formulas,
 * then a horizontal pass over every input row into one intermediate plane and a vertical pass
 * from it. Invariant: every tap index lies inside its axis, so the passes never check bounds. */
#include "kernels/resize.h"
#include "cnn/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int64_t n;    /* output size */
  int k;        /* taps per output (the table's row length) */
  int32_t *idx; /* n * k source indices */
  int32_t *cnt; /* taps used by each output (<= k) */
  float *w;     /* n * k weights */
} axis_taps;

/* Frees a table and empties it: a second free (taps_alloc's failure, then resize's cleanup) is none. */
static void taps_free(axis_taps *a) {
  free(a->idx);
  free(a->cnt);
  free(a->w);
  a->idx = NULL, a->cnt = NULL, a->w = NULL;
}

static int taps_alloc(axis_taps *a, int64_t n, int k) {
  a->n = n;
  a->k = k;
  a->idx = calloc((size_t)(n * k), sizeof *a->idx);
  a->cnt = calloc((size_t)n, sizeof *a->cnt);
  a->w = calloc((size_t)(n * k), sizeof *a->w);
  if (a->idx && a->cnt && a->w) return 0;
  taps_free(a);
  return cnn_error_set("out of memory for resize weights");
}

/* Pillow's filters as ATen's aa_filter evaluates them (double arithmetic, a float result). */
static float filter_triangle(float x) {
  if (x < 0.0f) x = -x;
  return x < 1.0f ? (float)(1.0 - x) : 0.0f;
}

static float filter_cubic(float x) {
  const double a = -0.5;
  double d = x < 0.0f ? -x : x;
  if (d < 1.0) return (float)(((a + 2.0) * d - (a + 3.0)) * d * d + 1);
  if (d < 2.0) return (float)((((d - 5) * d + 8) * d - 4) * a);
  return 0.0f;
}

/* The antialiased taps of ATen's _compute_indices_weights_aa: support interp/2 (widened by the scale
 * when downsampling), taps normalised to sum 1. */
static int taps_antialias(axis_taps *a, int64_t in, int64_t out, bool cubic) {
  float scale = (float)in / (float)out;
  double half = cubic ? 2.0 : 1.0;
  float support = scale >= 1.0f ? (float)(half * scale) : (float)half;
  float invscale = scale >= 1.0f ? (float)(1.0 / scale) : 1.0f;
  int k = (int)ceil(support) * 2 + 1;
  if (taps_alloc(a, out, k)) return -1;
  for (int64_t i = 0; i < out; i++) {
    float center = (float)(scale * (i + 0.5));
    int64_t xmin = (int64_t)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = (int64_t)(center + support + 0.5);
    if (xmax > in) xmax = in;
    int64_t xsize = xmax - xmin;
    if (xsize > k) xsize = k; /* cannot happen: support + 1 on either side of the centre */
    if (xsize < 1) {          /* cannot happen either (the centre lies inside the axis); stay in bounds */
      xmin = xmin < in ? xmin : in - 1;
      xsize = 1;
    }
    float *w = a->w + i * k;
    int32_t *idx = a->idx + i * k;
    float total = 0.0f;
    for (int64_t j = 0; j < xsize; j++) {
      float x = (float)(((float)(j + xmin) - center + 0.5) * invscale);
      w[j] = cubic ? filter_cubic(x) : filter_triangle(x);
      total += w[j];
      idx[j] = (int32_t)(xmin + j);
    }
    if (total != 0.0f)
      for (int64_t j = 0; j < xsize; j++) w[j] /= total;
    a->cnt[i] = (int32_t)xsize;
  }
  return 0;
}

/* ATen's cubic convolution coefficients (a = -0.75) for the fraction t. */
static void cubic_coeffs(float t, float c[4]) {
  const float A = -0.75f;
  float x1 = t, x2 = 1.0f - t;
  float y = x1 + 1.0f, z = x2 + 1.0f;
  c[0] = ((A * y - 5 * A) * y + 8 * A) * y - 4 * A;
  c[1] = ((A + 2) * x1 - (A + 3)) * x1 * x1 + 1;
  c[2] = ((A + 2) * x2 - (A + 3)) * x2 * x2 + 1;
  c[3] = ((A * z - 5 * A) * z + 8 * A) * z - 4 * A;
}

/* The classic taps: bilinear (2, the source clamped at 0) and bicubic (4, indices clamped). */
static int taps_classic(axis_taps *a, int64_t in, int64_t out, bool cubic) {
  float scale = (float)in / (float)out;
  int k = cubic ? 4 : 2;
  if (taps_alloc(a, out, k)) return -1;
  for (int64_t i = 0; i < out; i++) {
    float src = (float)(scale * (i + 0.5) - 0.5);
    int32_t *idx = a->idx + i * k;
    float *w = a->w + i * k;
    a->cnt[i] = k;
    if (!cubic) {
      if (src < 0.0f) src = 0.0f;
      int64_t i0 = (int64_t)src;
      int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
      float l1 = src - (float)i0;
      l1 = l1 < 0.0f ? 0.0f : l1 > 1.0f ? 1.0f : l1;
      idx[0] = (int32_t)i0;
      idx[1] = (int32_t)i1;
      w[0] = 1.0f - l1;
      w[1] = l1;
    } else {
      int64_t i0 = (int64_t)floorf(src);
      cubic_coeffs(src - (float)i0, w);
      for (int j = 0; j < 4; j++) {
        int64_t s = i0 - 1 + j;
        idx[j] = (int32_t)(s < 0 ? 0 : s > in - 1 ? in - 1 : s);
      }
    }
  }
  return 0;
}

/* PyTorch's legacy nearest: floor(o * (float)in / out), with its exact cases for 1x and 2x. */
static int taps_nearest(axis_taps *a, int64_t in, int64_t out) {
  if (taps_alloc(a, out, 1)) return -1;
  float scale = (float)in / (float)out;
  for (int64_t i = 0; i < out; i++) {
    int64_t s = out == in ? i : out == 2 * in ? i >> 1 : (int64_t)floorf((float)i * scale);
    a->idx[i] = (int32_t)(s < in - 1 ? s : in - 1);
    a->w[i] = 1.0f;
    a->cnt[i] = 1;
  }
  return 0;
}

static int make_taps(axis_taps *a, int64_t in, int64_t out, cnn_interp interp, bool antialias) {
  if (interp == CNN_INTERP_NEAREST) return taps_nearest(a, in, out);
  if (antialias) return taps_antialias(a, in, out, interp == CNN_INTERP_BICUBIC);
  return taps_classic(a, in, out, interp == CNN_INTERP_BICUBIC);
}

/* dst[o] = sum_j w[o][j] * src[idx[o][j]] for each output o of the axis (one row). */
static void pass_row(const float *src, float *dst, const axis_taps *a) {
  const int k = a->k;
  for (int64_t o = 0; o < a->n; o++) {
    const int32_t *ix = a->idx + o * k;
    const float *w = a->w + o * k;
    float acc = src[ix[0]] * w[0];
    for (int32_t j = 1; j < a->cnt[o]; j++) acc += src[ix[j]] * w[j];
    dst[o] = acc;
  }
}

/* out rows (oh, ow) from rows of `rows` (row r at rows + r * stride): out[o] = sum_j w * row idx[j]. */
static void pass_columns(const float *rows, int64_t stride, int64_t ow, float *out, const axis_taps *a) {
  const int k = a->k;
  for (int64_t o = 0; o < a->n; o++) {
    const int32_t *iy = a->idx + o * k;
    const float *w = a->w + o * k;
    float *d = out + o * ow;
    const float *r = rows + (int64_t)iy[0] * stride;
    const float w0 = w[0];
    for (int64_t x = 0; x < ow; x++) d[x] = r[x] * w0;
    for (int32_t j = 1; j < a->cnt[o]; j++) {
      const float *rj = rows + (int64_t)iy[j] * stride;
      const float wj = w[j];
      for (int64_t x = 0; x < ow; x++) d[x] += rj[x] * wj;
    }
  }
}

/* The resize of cnn_resize and cnn_resize_u8: float planes (fin), or bytes (bin: `planes`
 * channels interleaved, each row converted to floats by the table before the passes). */
static int resize(const float *fin, const uint8_t *bin, int64_t planes, int64_t plane_stride, int64_t row_stride,
                  int64_t ih, int64_t iw, float *out, int64_t oh, int64_t ow, cnn_interp interp, bool antialias) {
  if (ih < 1 || iw < 1 || oh < 1 || ow < 1)
    return cnn_error_set("resize needs sizes >= 1, got %lldx%lld -> %lldx%lld", (long long)ih, (long long)iw,
                         (long long)oh, (long long)ow);
  if (ih > INT32_MAX || iw > INT32_MAX || oh > INT32_MAX || ow > INT32_MAX)
    return cnn_error_set("resize supports sides up to %d pixels", INT32_MAX);
  bool do_w = iw != ow, do_h = ih != oh;
  axis_taps ax = {0}, ay = {0};
  if ((do_w && make_taps(&ax, iw, ow, interp, antialias)) || (do_h && make_taps(&ay, ih, oh, interp, antialias))) {
    taps_free(&ax);
    return -1;
  }
  /* tmp: the width pass's rows (ih x ow), when the height changes too; row: one byte row as floats */
  float *tmp = do_h ? malloc(sizeof(float) * (size_t)(ih * ow)) : NULL;
  float *row = bin ? malloc(sizeof(float) * (size_t)iw) : NULL;
  if ((do_h && !tmp) || (bin && !row)) {
    free(tmp);
    free(row);
    taps_free(&ax);
    taps_free(&ay);
    return cnn_error_set("out of memory for a %lldx%lld resize buffer", (long long)ih, (long long)ow);
  }
  float lut[256];
  for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f; /* the decoders' byte / 255 */
  for (int64_t p = 0; p < planes; p++) {
    float *dst = out + p * oh * ow;
    float *hw = do_h ? tmp : dst; /* width first, as ATen does: into tmp, or straight out */
    for (int64_t y = 0; y < ih; y++) {
      const float *src;
      if (bin) {
        const uint8_t *b = bin + y * row_stride + p;
        for (int64_t x = 0; x < iw; x++) row[x] = lut[b[x * planes]];
        src = row;
      } else {
        src = fin + p * plane_stride + y * row_stride;
      }
      if (do_w) pass_row(src, hw + y * ow, &ax);
      else memcpy(hw + y * ow, src, sizeof(float) * (size_t)ow);
    }
    if (do_h) pass_columns(tmp, ow, ow, dst, &ay);
  }
  free(tmp);
  free(row);
  taps_free(&ax);
  taps_free(&ay);
  return 0;
}

int cnn_resize(const float *in, int64_t planes, int64_t plane_stride, int64_t row_stride, int64_t ih, int64_t iw,
               float *out, int64_t oh, int64_t ow, cnn_interp interp, bool antialias) {
  return resize(in, NULL, planes, plane_stride, row_stride, ih, iw, out, oh, ow, interp, antialias);
}

int cnn_resize_u8(const uint8_t *in, int channels, int64_t row_stride, int64_t ih, int64_t iw, float *out, int64_t oh,
                  int64_t ow, cnn_interp interp, bool antialias) {
  return resize(NULL, in, channels, 0, row_stride, ih, iw, out, oh, ow, interp, antialias);
}

/* ---- affine sampling (torchvision's rotate) ---- */

void cnn_affine_sample(const float *in, int64_t planes, int64_t ih, int64_t iw, float *out, int64_t oh, int64_t ow,
                       const float theta[6], bool bilinear, const float *fill) {
  /* _gen_affine_grid: theta^T / (w/2, h/2), applied to (x, y, 1); grid_sample's unnormalize for
   * align_corners=False then maps [-1, 1] to pixel coordinates: (g + 1) * size / 2 - 0.5 */
  const float hw = 0.5f * (float)iw, hh = 0.5f * (float)ih;
  const float ax = theta[0] / hw, bx = theta[1] / hw, cx = theta[2] / hw;
  const float ay = theta[3] / hh, by = theta[4] / hh, cy = theta[5] / hh;
  const int64_t area = ih * iw;
  for (int64_t i = 0; i < oh; i++) {
    float y = (float)i - (float)oh * 0.5f + 0.5f;
    for (int64_t j = 0; j < ow; j++) {
      float x = (float)j - (float)ow * 0.5f + 0.5f;
      float gx = x * ax + y * bx + cx, gy = x * ay + y * by + cy;
      float sx = (gx + 1.0f) * hw - 0.5f, sy = (gy + 1.0f) * hh - 0.5f;
      int64_t at = i * ow + j;
      if (!bilinear) {
        float rx = nearbyintf(sx), ry = nearbyintf(sy);
        bool inside = rx >= 0.0f && rx < (float)iw && ry >= 0.0f && ry < (float)ih;
        int64_t s = inside ? (int64_t)ry * iw + (int64_t)rx : 0;
        for (int64_t p = 0; p < planes; p++) out[p * oh * ow + at] = inside ? in[p * area + s] : fill ? fill[p] : 0.0f;
        continue;
      }
      float fx = floorf(sx), fy = floorf(sy);
      float we = sx - fx, ww = 1.0f - we, ws = sy - fy, wn = 1.0f - ws;
      float wnw = wn * ww, wne = wn * we, wsw = ws * ww, wse = ws * we;
      int64_t x0 = (int64_t)fx, y0 = (int64_t)fy;
      bool in_w = x0 >= 0 && x0 < iw, in_e = x0 + 1 >= 0 && x0 + 1 < iw;
      bool in_n = y0 >= 0 && y0 < ih, in_s = y0 + 1 >= 0 && y0 + 1 < ih;
      /* the coverage m: the same weights on a plane of ones */
      float m = (in_n && in_w ? wnw : 0.0f) + (in_n && in_e ? wne : 0.0f) + (in_s && in_w ? wsw : 0.0f) +
                (in_s && in_e ? wse : 0.0f);
      for (int64_t p = 0; p < planes; p++) {
        const float *a = in + p * area;
        float v = (in_n && in_w ? a[y0 * iw + x0] * wnw : 0.0f) + (in_n && in_e ? a[y0 * iw + x0 + 1] * wne : 0.0f) +
                  (in_s && in_w ? a[(y0 + 1) * iw + x0] * wsw : 0.0f) +
                  (in_s && in_e ? a[(y0 + 1) * iw + x0 + 1] * wse : 0.0f);
        out[p * oh * ow + at] = fill ? v * m + (1.0f - m) * fill[p] : v;
      }
    }
  }
}
