/* Image transforms (see transforms.h). Each operation takes a contiguous float32 (C, H, W) image
 * and returns a new one; the arithmetic follows torchvision 0.14's tensor functions (float32, in
 * their order of operations) and the random draws follow its get_params, from the generator the
 * caller passes. Invariant: nothing here touches the runtime's global stream or thread pool except
 * cnn_tf_apply, which runs on the caller's (Lua's) thread. */
#include "data/transforms.h"
#include "cnn/error.h"
#include "kernels/resize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double PI = 3.14159265358979323846;

const char *cnn_tf_name(cnn_tf_kind kind) {
  static const char *const names[] = {[CNN_TF_RESIZE] = "resize",
                                      [CNN_TF_CENTER_CROP] = "center_crop",
                                      [CNN_TF_CROP] = "crop",
                                      [CNN_TF_RESIZED_CROP] = "resized_crop",
                                      [CNN_TF_RANDOM_CROP] = "random_crop",
                                      [CNN_TF_RANDOM_RESIZED_CROP] = "random_resized_crop",
                                      [CNN_TF_HFLIP] = "hflip",
                                      [CNN_TF_VFLIP] = "vflip",
                                      [CNN_TF_RANDOM_HFLIP] = "random_hflip",
                                      [CNN_TF_RANDOM_VFLIP] = "random_vflip",
                                      [CNN_TF_BRIGHTNESS] = "adjust_brightness",
                                      [CNN_TF_CONTRAST] = "adjust_contrast",
                                      [CNN_TF_SATURATION] = "adjust_saturation",
                                      [CNN_TF_HUE] = "adjust_hue",
                                      [CNN_TF_COLOR_JITTER] = "color_jitter",
                                      [CNN_TF_ROTATE] = "rotate",
                                      [CNN_TF_RANDOM_ROTATION] = "random_rotation",
                                      [CNN_TF_GRAYSCALE] = "grayscale",
                                      [CNN_TF_RANDOM_GRAYSCALE] = "random_grayscale",
                                      [CNN_TF_NORMALIZE] = "normalize"};
  return (unsigned)kind < sizeof names / sizeof names[0] && names[kind] ? names[kind] : "transform";
}

/* ---- checks ---- */

static bool ordered(const double r[2], double lo, double hi) { return lo <= r[0] && r[0] <= r[1] && r[1] <= hi; }

int cnn_tf_check(const cnn_tf *op) {
  switch (op->kind) {
  case CNN_TF_RESIZE:
    if (op->nsize != 1 && op->nsize != 2) return cnn_error_set("size must be one number or a pair {h, w}");
    if (op->size[0] < 1 || (op->nsize == 2 && op->size[1] < 1)) return cnn_error_set("size must be positive");
    if (op->max_size && (op->nsize != 1 || op->max_size <= op->size[0]))
      return cnn_error_set("max_size needs one size (the shorter side) smaller than it, got max_size %lld",
                           (long long)op->max_size);
    return 0;
  case CNN_TF_CENTER_CROP:
  case CNN_TF_RANDOM_RESIZED_CROP:
  case CNN_TF_RANDOM_CROP:
    if (op->size[0] < 1 || op->size[1] < 1) return cnn_error_set("size must be positive");
    if (op->kind == CNN_TF_RANDOM_CROP && (op->pad[0] < 0 || op->pad[1] < 0))
      return cnn_error_set("padding must be >= 0");
    if (op->kind == CNN_TF_RANDOM_RESIZED_CROP) {
      if (!(op->scale[0] > 0 && op->scale[0] <= op->scale[1]) || !isfinite(op->scale[1]))
        return cnn_error_set("scale must be a range {lo, hi} with 0 < lo <= hi, got {%g, %g}",
                             cnn_error_num(op->scale[0]), cnn_error_num(op->scale[1]));
      if (!(op->ratio[0] > 0 && op->ratio[0] <= op->ratio[1]) || !isfinite(op->ratio[1]))
        return cnn_error_set("ratio must be a range {lo, hi} with 0 < lo <= hi, got {%g, %g}",
                             cnn_error_num(op->ratio[0]), cnn_error_num(op->ratio[1]));
    }
    return 0;
  case CNN_TF_CROP:
    if (op->box[2] < 1 || op->box[3] < 1) return cnn_error_set("height and width must be positive");
    return 0;
  case CNN_TF_RESIZED_CROP:
    if (op->box[2] < 1 || op->box[3] < 1 || op->size[0] < 1 || op->size[1] < 1)
      return cnn_error_set("the box and the size must be positive");
    return 0;
  case CNN_TF_RANDOM_HFLIP:
  case CNN_TF_RANDOM_VFLIP:
  case CNN_TF_RANDOM_GRAYSCALE:
    if (!(op->p >= 0 && op->p <= 1))
      return cnn_error_set("p must be a probability in [0, 1], got %g", cnn_error_num(op->p));
    return 0;
  case CNN_TF_BRIGHTNESS:
  case CNN_TF_CONTRAST:
  case CNN_TF_SATURATION:
    if (!(op->factor >= 0) || !isfinite(op->factor))
      return cnn_error_set("factor must be >= 0, got %g", cnn_error_num(op->factor));
    return 0;
  case CNN_TF_HUE:
    if (!(op->factor >= -0.5 && op->factor <= 0.5))
      return cnn_error_set("hue factor must be in [-0.5, 0.5], got %g", cnn_error_num(op->factor));
    return 0;
  case CNN_TF_COLOR_JITTER:
    for (int k = 0; k < 4; k++)
      if (op->on[k] &&
          !(k < 3 ? ordered(op->range[k], 0, INFINITY) && isfinite(op->range[k][1]) : ordered(op->range[k], -0.5, 0.5)))
        return cnn_error_set("%s range must be {lo, hi} with %s, got {%g, %g}",
                             (const char *[]){"brightness", "contrast", "saturation", "hue"}[k],
                             k < 3 ? "0 <= lo <= hi" : "-0.5 <= lo <= hi <= 0.5", cnn_error_num(op->range[k][0]),
                             cnn_error_num(op->range[k][1]));
    return 0;
  case CNN_TF_ROTATE:
  case CNN_TF_RANDOM_ROTATION:
    if (!isfinite(op->degrees[0]) || !isfinite(op->degrees[1]) || op->degrees[0] > op->degrees[1])
      return cnn_error_set("degrees must be finite with lo <= hi");
    if (op->interp == CNN_INTERP_BICUBIC) return cnn_error_set("rotation interpolates \"nearest\" or \"bilinear\"");
    if (op->nfill < 0 || op->nfill > CNN_TF_MAX_CHANNELS) return cnn_error_set("too many fill values");
    return 0;
  case CNN_TF_GRAYSCALE:
    if (op->channels != 1 && op->channels != 3)
      return cnn_error_set("num_output_channels must be 1 or 3, got %d", op->channels);
    return 0;
  case CNN_TF_NORMALIZE:
    if (op->nmean < 1 || op->nstd < 1 || op->nmean > CNN_TF_MAX_CHANNELS || op->nstd > CNN_TF_MAX_CHANNELS)
      return cnn_error_set("mean and std need 1 to %d values", CNN_TF_MAX_CHANNELS);
    for (int i = 0; i < op->nstd; i++)
      if (op->std[i] == 0 || !isfinite(op->std[i]))
        return cnn_error_set("std must be finite and nonzero (std[%d] = %g)", i + 1, cnn_error_num(op->std[i]));
    for (int i = 0; i < op->nmean; i++)
      if (!isfinite(op->mean[i]))
        return cnn_error_set("mean must be finite (mean[%d] = %g)", i + 1, cnn_error_num(op->mean[i]));
    return 0;
  case CNN_TF_HFLIP:
  case CNN_TF_VFLIP: return 0;
  }
  return cnn_error_set("unknown transform %d", (int)op->kind);
}

/* ---- helpers ---- */

static cnn_tensor *new_image(int64_t c, int64_t h, int64_t w) {
  int64_t size[3] = {c, h, w};
  return cnn_tensor_empty(CNN_FLOAT32, 3, size);
}

static int need_channels(int64_t c, const char *what) {
  if (c == 1 || c == 3) return 0;
  return cnn_error_set("%s needs 1 or 3 channels, got %lld", what, (long long)c);
}

/* Python's int(round(v)): half to even (nearbyint under the default rounding mode). */
static int64_t round_even(double v) { return (int64_t)nearbyint(v); }

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

/* ---- geometry ---- */

void cnn_tf_resize_size(int64_t h, int64_t w, const cnn_tf *op, int64_t *oh, int64_t *ow) {
  if (op->nsize == 2) {
    *oh = op->size[0];
    *ow = op->size[1];
    return;
  }
  int64_t shorter = w <= h ? w : h, longer = w <= h ? h : w;
  int64_t new_short = op->size[0], new_long = (int64_t)((double)new_short * (double)longer / (double)shorter);
  if (op->max_size && new_long > op->max_size) {
    new_short = (int64_t)((double)op->max_size * (double)new_short / (double)new_long);
    new_long = op->max_size;
  }
  if (new_long < 1) new_long = 1;
  if (new_short < 1) new_short = 1;
  *ow = w <= h ? new_short : new_long;
  *oh = w <= h ? new_long : new_short;
}

/* x's window box = (top, left, h, w) resized to (oh, ow); a box reaching outside x is cut out with
 * zero padding first (torchvision's crop), one inside is resized in place. */
static cnn_tensor *resized_box(const cnn_tensor *x, const int64_t box[4], int64_t oh, int64_t ow, cnn_interp interp,
                               bool antialias) {
  int64_t c = x->size[0], h = x->size[1], w = x->size[2];
  int64_t top = box[0], left = box[1], bh = box[2], bw = box[3];
  cnn_tensor *o = new_image(c, oh, ow);
  if (!o) return NULL;
  const float *src = cnn_tensor_f32(x);
  if (top >= 0 && left >= 0 && top + bh <= h && left + bw <= w) {
    if (cnn_resize(src + top * w + left, c, h * w, w, bh, bw, cnn_tensor_f32(o), oh, ow, interp, antialias)) {
      cnn_tensor_release(o);
      return NULL;
    }
    return o;
  }
  float *tmp = malloc(sizeof(float) * (size_t)(c * bh * bw));
  if (!tmp) {
    cnn_tensor_release(o);
    cnn_error_set("out of memory");
    return NULL;
  }
  for (int64_t k = 0; k < c; k++)
    for (int64_t y = 0; y < bh; y++)
      for (int64_t xx = 0; xx < bw; xx++) {
        int64_t sy = top + y, sx = left + xx;
        tmp[(k * bh + y) * bw + xx] = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[(k * h + sy) * w + sx] : 0.0f;
      }
  int rc = cnn_resize(tmp, c, bh * bw, bw, bh, bw, cnn_tensor_f32(o), oh, ow, interp, antialias);
  free(tmp);
  if (rc) {
    cnn_tensor_release(o);
    return NULL;
  }
  return o;
}

/* A (h, w) window at (top, left) of x, zero (or fill) outside it. */
static cnn_tensor *crop(const cnn_tensor *x, int64_t top, int64_t left, int64_t bh, int64_t bw, float fill) {
  int64_t c = x->size[0], h = x->size[1], w = x->size[2];
  cnn_tensor *o = new_image(c, bh, bw);
  if (!o) return NULL;
  const float *src = cnn_tensor_f32(x);
  float *dst = cnn_tensor_f32(o);
  int64_t x0 = left < 0 ? -left : 0, x1 = w - left < bw ? w - left : bw; /* columns inside x */
  if (x0 > bw) x0 = bw;
  if (x1 < x0) x1 = x0;
  for (int64_t k = 0; k < c; k++)
    for (int64_t y = 0; y < bh; y++) {
      float *row = dst + (k * bh + y) * bw;
      int64_t sy = top + y;
      if (sy < 0 || sy >= h) {
        for (int64_t i = 0; i < bw; i++) row[i] = fill;
        continue;
      }
      for (int64_t i = 0; i < x0; i++) row[i] = fill;
      if (x1 > x0) memcpy(row + x0, src + (k * h + sy) * w + left + x0, sizeof(float) * (size_t)(x1 - x0));
      for (int64_t i = x1; i < bw; i++) row[i] = fill;
    }
  return o;
}

/* torchvision's center_crop: pad (zeros, the extra pixel right and below) when smaller, then the
 * window at int(round((H - h) / 2)), int(round((W - w) / 2)). */
static cnn_tensor *center_crop(const cnn_tensor *x, int64_t ch, int64_t cw) {
  int64_t h = x->size[1], w = x->size[2];
  int64_t pad_top = ch > h ? (ch - h) / 2 : 0, pad_left = cw > w ? (cw - w) / 2 : 0;
  int64_t ph = ch > h ? ch : h, pw = cw > w ? cw : w; /* the padded size */
  int64_t top = round_even((double)(ph - ch) / 2.0), left = round_even((double)(pw - cw) / 2.0);
  return crop(x, top - pad_top, left - pad_left, ch, cw, 0.0f);
}

void cnn_tf_random_resized_crop_box(int64_t h, int64_t w, const double scale[2], const double ratio[2], cnn_rng *g,
                                    int64_t box[4]) {
  double area = (double)h * (double)w;
  double log_lo = log(ratio[0]), log_hi = log(ratio[1]);
  for (int attempt = 0; attempt < 10; attempt++) {
    double target = area * (scale[0] + (scale[1] - scale[0]) * cnn_rng_uniform01(g));
    double aspect = exp(log_lo + (log_hi - log_lo) * cnn_rng_uniform01(g));
    int64_t cw = round_even(sqrt(target * aspect)), ch = round_even(sqrt(target / aspect));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      box[0] = (int64_t)cnn_rng_below(g, (uint64_t)(h - ch + 1));
      box[1] = (int64_t)cnn_rng_below(g, (uint64_t)(w - cw + 1));
      box[2] = ch;
      box[3] = cw;
      return;
    }
  }
  double in_ratio = (double)w / (double)h;
  int64_t cw = w, ch = h;
  if (in_ratio < ratio[0]) ch = round_even((double)w / ratio[0]);
  else if (in_ratio > ratio[1]) cw = round_even((double)h * ratio[1]);
  if (ch < 1) ch = 1;
  if (cw < 1) cw = 1;
  box[0] = (h - ch) / 2;
  box[1] = (w - cw) / 2;
  box[2] = ch;
  box[3] = cw;
}

static cnn_tensor *flip(const cnn_tensor *x, bool horizontal) {
  int64_t c = x->size[0], h = x->size[1], w = x->size[2];
  cnn_tensor *o = new_image(c, h, w);
  if (!o) return NULL;
  const float *a = cnn_tensor_f32(x);
  float *b = cnn_tensor_f32(o);
  for (int64_t r = 0; r < c * h; r++) {
    const float *src = horizontal ? a + r * w : a + ((r / h) * h + (h - 1 - r % h)) * w;
    float *dst = b + r * w;
    if (horizontal)
      for (int64_t i = 0; i < w; i++) dst[i] = src[w - 1 - i];
    else memcpy(dst, src, sizeof(float) * (size_t)w);
  }
  return o;
}

void cnn_tf_rotation(double angle, bool has_center, const double center[2], int64_t h, int64_t w, bool expand,
                     float theta[6], int64_t *oh, int64_t *ow) {
  /* _get_inverse_affine_matrix(center_f, -angle, translate 0, scale 1, shear 0) */
  double cx = has_center ? center[0] - (double)w * 0.5 : 0.0, cy = has_center ? center[1] - (double)h * 0.5 : 0.0;
  double rot = -angle * PI / 180.0;
  double a = cos(rot), b = -sin(rot), c = sin(rot), d = cos(rot);
  double m[6] = {d, -b, 0.0, -c, a, 0.0};
  m[2] += m[0] * -cx + m[1] * -cy;
  m[5] += m[3] * -cx + m[4] * -cy;
  m[2] += cx;
  m[5] += cy;
  for (int i = 0; i < 6; i++) theta[i] = (float)m[i];
  *oh = h;
  *ow = w;
  if (!expand) return;
  /* _compute_affine_output_size, in float32 as torchvision computes it */
  float pts[4][2] = {{-0.5f * (float)w, -0.5f * (float)h},
                     {-0.5f * (float)w, 0.5f * (float)h},
                     {0.5f * (float)w, 0.5f * (float)h},
                     {0.5f * (float)w, -0.5f * (float)h}};
  float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
  for (int k = 0; k < 4; k++)
    for (int r = 0; r < 2; r++) {
      float v = pts[k][0] * theta[3 * r] + pts[k][1] * theta[3 * r + 1] + theta[3 * r + 2];
      lo[r] = v < lo[r] ? v : lo[r];
      hi[r] = v > hi[r] ? v : hi[r];
    }
  const float tol = 1e-4f, half[2] = {(float)w * 0.5f, (float)h * 0.5f};
  int64_t size[2];
  for (int r = 0; r < 2; r++) {
    float cmax = ceilf(truncf((hi[r] + half[r]) / tol) * tol), cmin = floorf(truncf((lo[r] + half[r]) / tol) * tol);
    size[r] = (int64_t)(cmax - cmin);
    if (size[r] < 1) size[r] = 1;
  }
  *ow = size[0];
  *oh = size[1];
}

static cnn_tensor *rotate(const cnn_tensor *x, double angle, const cnn_tf *op) {
  int64_t c = x->size[0], h = x->size[1], w = x->size[2], oh, ow;
  if (op->nfill > 1 && op->nfill != c)
    return cnn_error_set("fill has %d values for %lld channels", op->nfill, (long long)c), NULL;
  float theta[6];
  cnn_tf_rotation(angle, op->has_center, op->center, h, w, op->expand, theta, &oh, &ow);
  if (oh > (int64_t)1 << 24 || ow > (int64_t)1 << 24) return cnn_error_set("rotated image too large"), NULL;
  cnn_tensor *o = new_image(c, oh, ow);
  if (!o) return NULL;
  float fill[CNN_TF_MAX_CHANNELS];
  float *fp = NULL;
  if (op->nfill) {
    if (c > CNN_TF_MAX_CHANNELS) {
      cnn_tensor_release(o);
      return cnn_error_set("fill supports up to %d channels", CNN_TF_MAX_CHANNELS), NULL;
    }
    for (int64_t k = 0; k < c; k++) fill[k] = op->fill[op->nfill == 1 ? 0 : k];
    fp = fill;
  }
  cnn_affine_sample(cnn_tensor_f32(x), c, h, w, cnn_tensor_f32(o), oh, ow, theta, op->interp == CNN_INTERP_BILINEAR,
                    fp);
  return o;
}

/* ---- colour (torchvision's functional_tensor, float32) ---- */

/* L = 0.2989 R + 0.587 G + 0.114 B, summed left to right as torchvision does */
static inline float gray_of(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

static cnn_tensor *grayscale(const cnn_tensor *x, int channels) {
  int64_t c = x->size[0], h = x->size[1], w = x->size[2], n = h * w;
  if (need_channels(c, "grayscale")) return NULL;
  cnn_tensor *o = new_image(channels, h, w);
  if (!o) return NULL;
  const float *a = cnn_tensor_f32(x);
  float *b = cnn_tensor_f32(o);
  for (int64_t i = 0; i < n; i++) b[i] = c == 3 ? gray_of(a[i], a[i + n], a[i + 2 * n]) : a[i];
  for (int k = 1; k < channels; k++) memcpy(b + k * n, b, sizeof(float) * (size_t)n);
  return o;
}

/* _blend(x, other, f) = clamp(f * x + (1 - f) * other, 0, 1); other: one value per pixel (per
 * plane's pixel i) or, with other == NULL, the constant k. */
static cnn_tensor *blend(const cnn_tensor *x, double factor, const float *other, float k) {
  int64_t c = x->size[0], n = x->size[1] * x->size[2];
  cnn_tensor *o = new_image(c, x->size[1], x->size[2]);
  if (!o) return NULL;
  const float f = (float)factor, g = (float)(1.0 - factor);
  const float *a = cnn_tensor_f32(x);
  float *b = cnn_tensor_f32(o);
  for (int64_t p = 0; p < c; p++)
    for (int64_t i = 0; i < n; i++) b[p * n + i] = clamp01(f * a[p * n + i] + g * (other ? other[i] : k));
  return o;
}

static cnn_tensor *adjust(const cnn_tensor *x, cnn_tf_kind kind, double factor) {
  int64_t c = x->size[0], n = x->size[1] * x->size[2];
  static const char *const names[] = {[CNN_TF_BRIGHTNESS] = "adjust_brightness",
                                      [CNN_TF_CONTRAST] = "adjust_contrast",
                                      [CNN_TF_SATURATION] = "adjust_saturation",
                                      [CNN_TF_HUE] = "adjust_hue"};
  if (need_channels(c, names[kind])) return NULL;
  const float *a = cnn_tensor_f32(x);
  if (kind == CNN_TF_BRIGHTNESS) return blend(x, factor, NULL, 0.0f);
  if (kind == CNN_TF_CONTRAST) { /* the blend target is the mean of the greyscale image */
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += c == 3 ? gray_of(a[i], a[i + n], a[i + 2 * n]) : a[i];
    return blend(x, factor, NULL, n ? (float)(sum / (double)n) : 0.0f);
  }
  if (c == 1) return cnn_tensor_retain((cnn_tensor *)x); /* saturation and hue leave grey alone */
  if (kind == CNN_TF_SATURATION) {
    float *gray = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!gray) return cnn_error_set("out of memory"), NULL;
    for (int64_t i = 0; i < n; i++) gray[i] = gray_of(a[i], a[i + n], a[i + 2 * n]);
    cnn_tensor *o = blend(x, factor, gray, 0.0f);
    free(gray);
    return o;
  }
  /* hue: _rgb2hsv, h = (h + factor) mod 1, _hsv2rgb */
  cnn_tensor *o = new_image(3, x->size[1], x->size[2]);
  if (!o) return NULL;
  float *out = cnn_tensor_f32(o);
  const float hf = (float)factor;
  for (int64_t i = 0; i < n; i++) {
    float r = a[i], g = a[i + n], b = a[i + 2 * n];
    float maxc = fmaxf(fmaxf(r, g), b), minc = fminf(fminf(r, g), b);
    bool eqc = maxc == minc;
    float cr = maxc - minc;
    float s = cr / (eqc ? 1.0f : maxc);
    float div = eqc ? 1.0f : cr;
    float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    float hr = maxc == r ? bc - gc : 0.0f;
    float hg = maxc == g && maxc != r ? 2.0f + rc - bc : 0.0f;
    float hb = maxc != g && maxc != r ? 4.0f + gc - rc : 0.0f;
    float h = fmodf((hr + hg + hb) / 6.0f + 1.0f, 1.0f);
    h = h + hf;
    h = h - floorf(h); /* Python's % 1.0 */
    float v = maxc;
    float fi = floorf(h * 6.0f), f = h * 6.0f - fi;
    int sector = ((int)fi % 6 + 6) % 6;
    float p = clamp01(v * (1.0f - s)), q = clamp01(v * (1.0f - s * f)), t = clamp01(v * (1.0f - s * (1.0f - f)));
    static const int pick[6][3] = {{0, 3, 1}, {2, 0, 1}, {1, 0, 3}, {1, 2, 0}, {3, 1, 0}, {0, 1, 2}};
    const float vals[4] = {v, p, q, t}; /* indices: 0 v, 1 p, 2 q, 3 t */
    out[i] = vals[pick[sector][0]];
    out[i + n] = vals[pick[sector][1]];
    out[i + 2 * n] = vals[pick[sector][2]];
  }
  return o;
}

static cnn_tensor *normalize(const cnn_tensor *x, const cnn_tf *op) {
  int64_t c = x->size[0], n = x->size[1] * x->size[2];
  if ((op->nmean != 1 && op->nmean != c) || (op->nstd != 1 && op->nstd != c))
    return cnn_error_set("the image has %lld channel%s, so mean and std need 1 value or one per channel, got %d and %d",
                         (long long)c, c == 1 ? "" : "s", op->nmean, op->nstd),
           NULL;
  cnn_tensor *o = new_image(c, x->size[1], x->size[2]);
  if (!o) return NULL;
  const float *a = cnn_tensor_f32(x);
  float *b = cnn_tensor_f32(o);
  for (int64_t p = 0; p < c; p++) {
    const float m = op->mean[op->nmean == 1 ? 0 : p], s = op->std[op->nstd == 1 ? 0 : p];
    for (int64_t i = 0; i < n; i++) b[p * n + i] = (a[p * n + i] - m) / s;
  }
  return o;
}

/* ---- running a pipeline ---- */

static double uniform(cnn_rng *g, double lo, double hi) { return lo + (hi - lo) * cnn_rng_uniform01(g); }

static cnn_tensor *run_one(const cnn_tf *op, const cnn_tensor *x, cnn_rng *g) {
  int64_t c = x->size[0], h = x->size[1], w = x->size[2];
  switch (op->kind) {
  case CNN_TF_RESIZE: {
    int64_t oh, ow;
    cnn_tf_resize_size(h, w, op, &oh, &ow);
    if (oh == h && ow == w) return cnn_tensor_retain((cnn_tensor *)x); /* as torchvision: unchanged */
    int64_t box[4] = {0, 0, h, w};
    return resized_box(x, box, oh, ow, op->interp, op->antialias);
  }
  case CNN_TF_CENTER_CROP: return center_crop(x, op->size[0], op->size[1]);
  case CNN_TF_CROP: return crop(x, op->box[0], op->box[1], op->box[2], op->box[3], 0.0f);
  case CNN_TF_RESIZED_CROP: return resized_box(x, op->box, op->size[0], op->size[1], op->interp, op->antialias);
  case CNN_TF_RANDOM_CROP: {
    int64_t ph = h + 2 * op->pad[0], pw = w + 2 * op->pad[1];
    if (op->size[0] > ph || op->size[1] > pw)
      return cnn_error_set("crop size %lldx%lld is larger than the padded image %lldx%lld", (long long)op->size[0],
                           (long long)op->size[1], (long long)ph, (long long)pw),
             NULL;
    int64_t top = (int64_t)cnn_rng_below(g, (uint64_t)(ph - op->size[0] + 1));
    int64_t left = (int64_t)cnn_rng_below(g, (uint64_t)(pw - op->size[1] + 1));
    return crop(x, top - op->pad[0], left - op->pad[1], op->size[0], op->size[1], (float)op->fill_value);
  }
  case CNN_TF_RANDOM_RESIZED_CROP: {
    int64_t box[4];
    cnn_tf_random_resized_crop_box(h, w, op->scale, op->ratio, g, box);
    return resized_box(x, box, op->size[0], op->size[1], op->interp, op->antialias);
  }
  case CNN_TF_HFLIP: return flip(x, true);
  case CNN_TF_VFLIP: return flip(x, false);
  case CNN_TF_RANDOM_HFLIP:
  case CNN_TF_RANDOM_VFLIP:
    if (cnn_rng_uniform01(g) < op->p) return flip(x, op->kind == CNN_TF_RANDOM_HFLIP);
    return cnn_tensor_retain((cnn_tensor *)x);
  case CNN_TF_BRIGHTNESS:
  case CNN_TF_CONTRAST:
  case CNN_TF_SATURATION:
  case CNN_TF_HUE: return adjust(x, op->kind, op->factor);
  case CNN_TF_COLOR_JITTER: {
    if (need_channels(c, "color_jitter")) return NULL;
    int order[4] = {0, 1, 2, 3}; /* torch.randperm(4), then one factor per enabled adjustment */
    for (int i = 3; i > 0; i--) {
      int j = (int)cnn_rng_below(g, (uint64_t)i + 1), t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    double factor[4] = {0};
    for (int k = 0; k < 4; k++)
      if (op->on[k]) factor[k] = uniform(g, op->range[k][0], op->range[k][1]);
    static const cnn_tf_kind kinds[4] = {CNN_TF_BRIGHTNESS, CNN_TF_CONTRAST, CNN_TF_SATURATION, CNN_TF_HUE};
    cnn_tensor *cur = cnn_tensor_retain((cnn_tensor *)x);
    for (int i = 0; i < 4 && cur; i++) {
      int k = order[i];
      if (!op->on[k]) continue;
      cnn_tensor *next = adjust(cur, kinds[k], factor[k]);
      cnn_tensor_release(cur);
      cur = next;
    }
    return cur;
  }
  case CNN_TF_ROTATE: return rotate(x, op->degrees[0], op);
  case CNN_TF_RANDOM_ROTATION: return rotate(x, uniform(g, op->degrees[0], op->degrees[1]), op);
  case CNN_TF_GRAYSCALE: return grayscale(x, op->channels);
  case CNN_TF_RANDOM_GRAYSCALE:
    if (need_channels(c, "random_grayscale")) return NULL;
    if (cnn_rng_uniform01(g) < op->p) return grayscale(x, (int)c);
    return cnn_tensor_retain((cnn_tensor *)x);
  case CNN_TF_NORMALIZE: return normalize(x, op);
  }
  return cnn_error_set("unknown transform %d", (int)op->kind), NULL;
}

static bool is_random(cnn_tf_kind k) {
  return k == CNN_TF_RANDOM_CROP || k == CNN_TF_RANDOM_RESIZED_CROP || k == CNN_TF_RANDOM_HFLIP ||
         k == CNN_TF_RANDOM_VFLIP || k == CNN_TF_COLOR_JITTER || k == CNN_TF_RANDOM_ROTATION ||
         k == CNN_TF_RANDOM_GRAYSCALE;
}

cnn_tensor *cnn_tf_run(const cnn_tf *ops, int n, cnn_tensor *x, cnn_rng *g) {
  if (x->dtype != CNN_FLOAT32 || x->ndim != 3)
    return cnn_error_set("expected a float32 image (C, H, W), got a %d-d %s tensor", x->ndim, cnn_dtype_name(x->dtype)),
           NULL;
  if (x->size[0] < 1 || x->size[1] < 1 || x->size[2] < 1)
    return cnn_error_set("expected a non-empty image, got %lldx%lldx%lld", (long long)x->size[0], (long long)x->size[1],
                         (long long)x->size[2]),
           NULL;
  cnn_rng fixed;
  if (!g) { /* no random operation may run without a generator; a fixed one keeps this safe */
    for (int i = 0; i < n; i++)
      if (is_random(ops[i].kind)) return cnn_error_set("a random transform needs a generator"), NULL;
    cnn_rng_seed(&fixed, 0);
    g = &fixed;
  }
  cnn_tensor *cur = cnn_tensor_contiguous(x);
  for (int i = 0; i < n && cur; i++) {
    cnn_tensor *next = run_one(&ops[i], cur, g);
    cnn_tensor_release(cur);
    cur = next;
    if (!cur && n > 1) { /* say which step of a longer pipeline failed */
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", cnn_error_get());
      cnn_error_set("%s: %s", cnn_tf_name(ops[i].kind), msg);
    }
  }
  return cur;
}

bool cnn_tf_window(const cnn_tf *op, int64_t h, int64_t w, cnn_rng *g, int64_t box[4], int64_t *oh, int64_t *ow,
                   bool *resize) {
  switch (op->kind) {
  case CNN_TF_RESIZE:
    box[0] = box[1] = 0, box[2] = h, box[3] = w;
    cnn_tf_resize_size(h, w, op, oh, ow);
    *resize = *oh != h || *ow != w;
    return true;
  case CNN_TF_CENTER_CROP: { /* as center_crop: the padded window, in the image's coordinates */
    int64_t ch = op->size[0], cw = op->size[1];
    int64_t pad_top = ch > h ? (ch - h) / 2 : 0, pad_left = cw > w ? (cw - w) / 2 : 0;
    int64_t ph = ch > h ? ch : h, pw = cw > w ? cw : w;
    box[0] = round_even((double)(ph - ch) / 2.0) - pad_top, box[1] = round_even((double)(pw - cw) / 2.0) - pad_left;
    box[2] = ch, box[3] = cw, *oh = ch, *ow = cw, *resize = false;
    return true;
  }
  case CNN_TF_CROP:
  case CNN_TF_RESIZED_CROP:
    memcpy(box, op->box, sizeof(int64_t) * 4);
    *resize = op->kind == CNN_TF_RESIZED_CROP;
    *oh = *resize ? op->size[0] : box[2], *ow = *resize ? op->size[1] : box[3];
    return true;
  case CNN_TF_RANDOM_RESIZED_CROP:
    cnn_tf_random_resized_crop_box(h, w, op->scale, op->ratio, g, box);
    *oh = op->size[0], *ow = op->size[1], *resize = true;
    return true;
  default: return false;
  }
}

cnn_tensor *cnn_tf_window8(const cnn_image8 *im, int64_t h, int64_t w, const int64_t box[4], int64_t oh, int64_t ow,
                           bool resize, cnn_interp interp, bool antialias) {
  int c = im->c;
  int64_t by = box[0] - im->top, bx = box[1] - im->left; /* the window's corner in im */
  bool inside = box[0] >= 0 && box[1] >= 0 && box[0] + box[2] <= h && box[1] + box[3] <= w;
  if (inside && (by < 0 || bx < 0 || by + box[2] > im->h || bx + box[3] > im->w))
    return cnn_error_set("the decoded rectangle does not hold the window"), NULL;
  cnn_tensor *o = new_image(c, oh, ow);
  if (!o) return NULL;
  float *dst = cnn_tensor_f32(o);
  if (resize && inside) {
    if (cnn_resize_u8(im->data + (by * im->w + bx) * c, c, im->w * c, box[2], box[3], dst, oh, ow, interp, antialias)) {
      cnn_tensor_release(o);
      return NULL;
    }
    return o;
  }
  /* a crop (zeros outside the image), resized afterwards when asked */
  float *crop_buf = resize ? malloc(sizeof(float) * (size_t)(c * box[2] * box[3])) : dst;
  if (!crop_buf) {
    cnn_tensor_release(o);
    return cnn_error_set("out of memory"), NULL;
  }
  float lut[256];
  for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f;
  int64_t area = box[2] * box[3];
  for (int64_t y = 0; y < box[2]; y++)
    for (int64_t x = 0; x < box[3]; x++) {
      int64_t iy = by + y, ix = bx + x, gy = box[0] + y, gx = box[1] + x;
      bool in = gy >= 0 && gy < h && gx >= 0 && gx < w && iy >= 0 && iy < im->h && ix >= 0 && ix < im->w;
      for (int k = 0; k < c; k++)
        crop_buf[k * area + y * box[3] + x] = in ? lut[im->data[(iy * im->w + ix) * c + k]] : 0.0f;
    }
  if (resize) {
    int rc = cnn_resize(crop_buf, c, area, box[3], box[2], box[3], dst, oh, ow, interp, antialias);
    free(crop_buf);
    if (rc) {
      cnn_tensor_release(o);
      return NULL;
    }
  }
  return o;
}

cnn_tensor *cnn_tf_run8(const cnn_tf *ops, int n, const cnn_image8 *im, cnn_rng *g) {
  int64_t box[4], oh, ow;
  bool resize;
  cnn_tensor *first;
  cnn_rng fixed;
  if (!g) { /* as cnn_tf_run: deterministic operations only */
    for (int i = 0; i < n; i++)
      if (is_random(ops[i].kind)) return cnn_error_set("a random transform needs a generator"), NULL;
    cnn_rng_seed(&fixed, 0);
    g = &fixed;
  }
  if (n > 0 && cnn_tf_window(&ops[0], im->h, im->w, g, box, &oh, &ow, &resize)) {
    first = cnn_tf_window8(im, im->h, im->w, box, oh, ow, resize, ops[0].interp, ops[0].antialias);
    ops++, n--;
  } else {
    first = cnn_image8_to_tensor(im);
  }
  if (!first) return NULL;
  cnn_tensor *out = cnn_tf_run(ops, n, first, g);
  cnn_tensor_release(first);
  return out;
}

cnn_tensor *cnn_tf_apply(const cnn_tf *ops, int n, const cnn_tensor *x) {
  if (x->dtype != CNN_FLOAT32 || (x->ndim != 3 && x->ndim != 4))
    return cnn_error_set("expected a float32 image (C, H, W) or batch (N, C, H, W), got a %d-d %s tensor", x->ndim,
                         cnn_dtype_name(x->dtype)),
           NULL;
  if (x->ndim == 3) {
    cnn_rng g;
    cnn_rng_seed(&g, cnn_rng_next(cnn_rng_global()));
    return cnn_tf_run(ops, n, (cnn_tensor *)x, &g);
  }
  int64_t count = x->size[0];
  uint64_t *seeds = malloc(sizeof(uint64_t) * (size_t)(count ? count : 1));
  cnn_tensor **outs = calloc((size_t)(count ? count : 1), sizeof *outs);
  if (!seeds || !outs) {
    free(seeds);
    free(outs);
    return cnn_error_set("out of memory"), NULL;
  }
  for (int64_t i = 0; i < count; i++) seeds[i] = cnn_rng_next(cnn_rng_global());
  cnn_tensor *result = NULL;
  int64_t i = 0;
  for (; i < count; i++) {
    cnn_tensor *xi = cnn_tensor_select(x, 0, i);
    if (!xi) break;
    cnn_rng g;
    cnn_rng_seed(&g, seeds[i]);
    outs[i] = cnn_tf_run(ops, n, xi, &g);
    cnn_tensor_release(xi);
    if (!outs[i]) break;
    if (i > 0 && !cnn_tensor_same_shape(outs[i], outs[0])) {
      cnn_error_set("image %lld became %lldx%lldx%lld but image 1 became %lldx%lldx%lld: a batch needs one size",
                    (long long)i + 1, (long long)outs[i]->size[0], (long long)outs[i]->size[1],
                    (long long)outs[i]->size[2], (long long)outs[0]->size[0], (long long)outs[0]->size[1],
                    (long long)outs[0]->size[2]);
      i++;
      break;
    }
  }
  if (i == count) {
    int64_t size[4] = {count, 0, 0, 0};
    if (count) memcpy(size + 1, outs[0]->size, sizeof(int64_t) * 3);
    else memcpy(size + 1, x->size + 1, sizeof(int64_t) * 3);
    result = cnn_tensor_empty(CNN_FLOAT32, 4, size);
    if (result) {
      int64_t per = size[1] * size[2] * size[3];
      for (int64_t k = 0; k < count; k++)
        memcpy(cnn_tensor_f32(result) + k * per, cnn_tensor_f32(outs[k]), sizeof(float) * (size_t)per);
    }
  }
  for (int64_t k = 0; k < count; k++) cnn_tensor_release(outs[k]);
  free(outs);
  free(seeds);
  return result;
}
