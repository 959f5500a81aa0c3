/* pool.c: max / average / adaptive average pooling, forward and backward, against naive loops
 * written here (window enumerated element by element, divisors counted, adaptive bounds from
 * floating point floor/ceil), over overlapping windows, padding, dilation, ceil_mode, count_include_pad,
 * divisor_override, 3-d and non-contiguous inputs, 1 and 2 threads; NaN handling; errors. */
#include "autograd/pool.h"
#include "check.h"
#include "cnn/error.h"
#include "cnn/tensor.h"
#include "core/parallel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull; /* check_urand state */

static void close_to(const char *name, const char *what, const cnn_tensor *got, const double *want, int64_t n) {
  CHECK(got != NULL);
  if (!got) return;
  CHECK(cnn_tensor_numel(got) == n);
  for (int64_t i = 0; i < n; i++) {
    double g = cnn_tensor_get_flat(got, i);
    if (!(fabs(g - want[i]) <= 1e-5 * (1 + fabs(want[i])))) {
      fprintf(stderr, "%s: %s[%lld] = %.9g, naive %.9g\n", name, what, (long long)i, g, want[i]);
      failures++;
      return;
    }
  }
}

/* Output length by the definition: floor or ceil of (padded span) / stride + 1, then PyTorch's
 * rule that the last window must start inside the input or the left padding. */
static int64_t naive_out(int64_t in, int64_t k, int64_t p, int64_t s, int64_t d, bool ceil_mode) {
  double span = (double)(in + 2 * p - d * (k - 1) - 1) / (double)s;
  int64_t o = (int64_t)(ceil_mode ? ceil(span) : floor(span)) + 1;
  if (ceil_mode && (o - 1) * s >= in + p) o--;
  return o;
}

typedef struct pcase {
  const char *name;
  int64_t N, C, H, W;
  cnn_pool2d_params p;
} pcase;

static void run_max(const pcase *c) {
  const cnn_pool2d_params *p = &c->p;
  int64_t xs[4] = {c->N, c->C, c->H, c->W};
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *y = NULL, *idx = NULL;
  CHECK(cnn_pool_max2d_forward(x, p, &y, &idx) == 0);
  if (!y) {
    fprintf(stderr, "%s: %s\n", c->name, cnn_error_get());
    cnn_tensor_release(x);
    return;
  }
  int64_t oh = naive_out(c->H, p->kernel[0], p->padding[0], p->stride[0], p->dilation[0], p->ceil_mode);
  int64_t ow = naive_out(c->W, p->kernel[1], p->padding[1], p->stride[1], p->dilation[1], p->ceil_mode);
  CHECK(y->size[2] == oh && y->size[3] == ow);
  int64_t P = c->N * c->C, ny = P * oh * ow, nx = P * c->H * c->W;
  cnn_tensor *gy = check_rand_tensor(&rng, 4, y->size);
  double *wy = calloc((size_t)ny, 8), *wi = calloc((size_t)ny, 8), *wgx = calloc((size_t)nx, 8);
  const float *xp = cnn_tensor_f32(x), *gp = cnn_tensor_f32(gy);
  for (int64_t pl = 0; pl < P; pl++)
    for (int64_t i = 0; i < oh; i++)
      for (int64_t j = 0; j < ow; j++) {
        double best = 0;
        int64_t arg = -1;
        for (int64_t a = 0; a < p->kernel[0]; a++)
          for (int64_t e = 0; e < p->kernel[1]; e++) {
            int64_t h = i * p->stride[0] - p->padding[0] + a * p->dilation[0];
            int64_t w = j * p->stride[1] - p->padding[1] + e * p->dilation[1];
            if (h < 0 || h >= c->H || w < 0 || w >= c->W) continue;
            double v = xp[(pl * c->H + h) * c->W + w];
            if (arg < 0 || v > best) best = v, arg = h * c->W + w;
          }
        int64_t o = (pl * oh + i) * ow + j;
        wy[o] = best, wi[o] = (double)arg;
        wgx[pl * c->H * c->W + arg] += gp[o];
      }
  close_to(c->name, "y", y, wy, ny);
  close_to(c->name, "indices", idx, wi, ny);
  cnn_tensor *gx = cnn_pool_max2d_backward(gy, idx, c->H, c->W);
  close_to(c->name, "gx", gx, wgx, nx);
  free(wy), free(wi), free(wgx);
  cnn_tensor_release(gx), cnn_tensor_release(gy), cnn_tensor_release(y), cnn_tensor_release(idx), cnn_tensor_release(x);
}

static void run_avg(const pcase *c) {
  const cnn_pool2d_params *p = &c->p;
  int64_t xs[4] = {c->N, c->C, c->H, c->W};
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs);
  cnn_tensor *y = cnn_pool_avg2d_forward(x, p);
  CHECK(y != NULL);
  if (!y) {
    fprintf(stderr, "%s: %s\n", c->name, cnn_error_get());
    cnn_tensor_release(x);
    return;
  }
  int64_t oh = naive_out(c->H, p->kernel[0], p->padding[0], p->stride[0], 1, p->ceil_mode);
  int64_t ow = naive_out(c->W, p->kernel[1], p->padding[1], p->stride[1], 1, p->ceil_mode);
  CHECK(y->size[2] == oh && y->size[3] == ow);
  int64_t P = c->N * c->C, ny = P * oh * ow, nx = P * c->H * c->W;
  cnn_tensor *gy = check_rand_tensor(&rng, 4, y->size);
  double *wy = calloc((size_t)ny, 8), *wgx = calloc((size_t)nx, 8);
  const float *xp = cnn_tensor_f32(x), *gp = cnn_tensor_f32(gy);
  for (int64_t pl = 0; pl < P; pl++)
    for (int64_t i = 0; i < oh; i++)
      for (int64_t j = 0; j < ow; j++) {
        /* count the window's cells inside the input and inside the padded input */
        double s = 0;
        int64_t in = 0, padded = 0;
        for (int64_t a = 0; a < p->kernel[0]; a++)
          for (int64_t e = 0; e < p->kernel[1]; e++) {
            int64_t h = i * p->stride[0] - p->padding[0] + a, w = j * p->stride[1] - p->padding[1] + e;
            if (h < c->H + p->padding[0] && w < c->W + p->padding[1]) padded++;
            if (h < 0 || h >= c->H || w < 0 || w >= c->W) continue;
            s += xp[(pl * c->H + h) * c->W + w], in++;
          }
        int64_t o = (pl * oh + i) * ow + j;
        if (in == 0) continue; /* wholly in padding: 0, no gradient */
        double div = (double)(p->divisor ? p->divisor : p->count_include_pad ? padded : in);
        wy[o] = s / div;
        for (int64_t a = 0; a < p->kernel[0]; a++)
          for (int64_t e = 0; e < p->kernel[1]; e++) {
            int64_t h = i * p->stride[0] - p->padding[0] + a, w = j * p->stride[1] - p->padding[1] + e;
            if (h < 0 || h >= c->H || w < 0 || w >= c->W) continue;
            wgx[(pl * c->H + h) * c->W + w] += gp[o] / div;
          }
      }
  close_to(c->name, "y", y, wy, ny);
  cnn_tensor *gx = cnn_pool_avg2d_backward(gy, p, c->H, c->W);
  close_to(c->name, "gx", gx, wgx, nx);
  free(wy), free(wgx);
  cnn_tensor_release(gx), cnn_tensor_release(gy), cnn_tensor_release(y), cnn_tensor_release(x);
}

static void run_adaptive(int64_t N, int64_t C, int64_t H, int64_t W, int64_t oh, int64_t ow) {
  int64_t xs[4] = {N, C, H, W};
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs);
  cnn_tensor *y = cnn_pool_adaptive_avg2d_forward(x, oh, ow);
  CHECK(y && y->size[2] == oh && y->size[3] == ow);
  if (!y) {
    cnn_tensor_release(x);
    return;
  }
  int64_t P = N * C, ny = P * oh * ow, nx = P * H * W;
  cnn_tensor *gy = check_rand_tensor(&rng, 4, y->size);
  double *wy = calloc((size_t)ny + 1, 8), *wgx = calloc((size_t)nx, 8);
  const float *xp = cnn_tensor_f32(x), *gp = cnn_tensor_f32(gy);
  for (int64_t pl = 0; pl < P; pl++)
    for (int64_t i = 0; i < oh; i++)
      for (int64_t j = 0; j < ow; j++) {
        int64_t h0 = (int64_t)floor((double)i * H / oh), h1 = (int64_t)ceil((double)(i + 1) * H / oh);
        int64_t w0 = (int64_t)floor((double)j * W / ow), w1 = (int64_t)ceil((double)(j + 1) * W / ow);
        double s = 0, cnt = (double)((h1 - h0) * (w1 - w0));
        int64_t o = (pl * oh + i) * ow + j;
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) s += xp[(pl * H + h) * W + w], wgx[(pl * H + h) * W + w] += gp[o] / cnt;
        wy[o] = s / cnt;
      }
  char name[64];
  snprintf(name, sizeof name, "adaptive %lldx%lld -> %lldx%lld", (long long)H, (long long)W, (long long)oh,
           (long long)ow);
  close_to(name, "y", y, wy, ny);
  cnn_tensor *gx = cnn_pool_adaptive_avg2d_backward(gy, H, W);
  close_to(name, "gx", gx, wgx, nx);
  free(wy), free(wgx);
  cnn_tensor_release(gx), cnn_tensor_release(gy), cnn_tensor_release(y), cnn_tensor_release(x);
}

/* kernel, stride, padding, dilation, ceil_mode, count_include_pad, divisor */
#define PP(kh, kw, sh, sw, ph, pw, dh, dw, ceil, cip, div) \
  { {kh, kw}, {sh, sw}, {ph, pw}, {dh, dw}, ceil, cip, div }

static const pcase MAX_CASES[] = {
    {"2x2 stride 2", 2, 3, 8, 6, PP(2, 2, 2, 2, 0, 0, 1, 1, false, true, 0)},
    {"overlapping 3/2", 2, 3, 9, 9, PP(3, 3, 2, 2, 0, 0, 1, 1, false, true, 0)},
    {"overlapping 3/2 ceil", 2, 2, 8, 8, PP(3, 3, 2, 2, 0, 0, 1, 1, true, true, 0)},
    {"padding 1", 1, 2, 7, 6, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)},
    {"padding + ceil (last window dropped)", 2, 2, 5, 5, PP(2, 2, 2, 2, 1, 1, 1, 1, true, true, 0)},
    {"ceil rectangular", 1, 3, 7, 10, PP(2, 3, 2, 3, 1, 1, 1, 1, true, true, 0)},
    {"dilation 2", 2, 2, 9, 8, PP(3, 2, 1, 2, 1, 1, 2, 3, false, true, 0)},
    {"dilation + ceil", 1, 2, 10, 9, PP(3, 3, 2, 2, 1, 1, 2, 2, true, true, 0)},
    {"kernel 1 stride 2", 2, 2, 5, 4, PP(1, 1, 2, 2, 0, 0, 1, 1, true, true, 0)},
    {"many planes (threads)", 4, 16, 12, 12, PP(2, 2, 2, 2, 0, 0, 1, 1, false, true, 0)},
    /* 2 oh = H and 2 ow = W, but the windows reach past the 2x2 blocks: backward falls back to the scatter */
    {"overlapping 3/2 pad 1, even", 2, 3, 8, 8, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)},
    {"overlapping 3/2 pad 1, wide", 2, 3, 6, 32, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)},
};

static const pcase AVG_CASES[] = {
    {"2x2 stride 2", 2, 3, 8, 6, PP(2, 2, 2, 2, 0, 0, 1, 1, false, true, 0)},
    {"overlapping 3/2", 2, 3, 9, 9, PP(3, 3, 2, 2, 0, 0, 1, 1, false, true, 0)},
    {"padding, count_include_pad", 1, 2, 7, 6, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)},
    {"padding, exclude pad", 1, 2, 7, 6, PP(3, 3, 2, 2, 1, 1, 1, 1, false, false, 0)},
    {"ceil, windows clipped", 2, 2, 8, 7, PP(3, 3, 2, 2, 0, 0, 1, 1, true, true, 0)},
    {"ceil + padding", 2, 2, 5, 5, PP(2, 2, 2, 2, 1, 1, 1, 1, true, true, 0)},
    {"ceil + padding, exclude pad", 1, 2, 6, 9, PP(4, 3, 3, 2, 2, 1, 1, 1, true, false, 0)},
    {"divisor_override", 2, 2, 6, 6, PP(3, 3, 2, 2, 1, 1, 1, 1, true, true, 5)},
    {"many planes (threads)", 4, 16, 12, 12, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)},
    /* 1x1 windows take a path of their own: subsampling as ResNet's option A shortcut does */
    {"1x1 stride 2", 2, 3, 8, 7, PP(1, 1, 2, 2, 0, 0, 1, 1, false, true, 0)},
    {"1x1 strides 3, 2, ceil", 2, 2, 7, 9, PP(1, 1, 3, 2, 0, 0, 1, 1, true, true, 0)},
    {"1x1 divisor_override", 1, 2, 6, 6, PP(1, 1, 2, 1, 0, 0, 1, 1, false, true, 3)},
    {"1x1 stride 2, many planes (threads)", 8, 16, 16, 16, PP(1, 1, 2, 2, 0, 0, 1, 1, false, false, 0)},
};

static void test_cases(void) {
  for (int t = 1; t <= 2; t++) {
    cnn_parallel_set_threads(t);
    for (size_t i = 0; i < sizeof MAX_CASES / sizeof MAX_CASES[0]; i++) run_max(&MAX_CASES[i]);
    for (size_t i = 0; i < sizeof AVG_CASES / sizeof AVG_CASES[0]; i++) run_avg(&AVG_CASES[i]);
    run_adaptive(2, 3, 7, 5, 3, 2);
    run_adaptive(1, 2, 10, 10, 4, 4);
    run_adaptive(2, 2, 6, 6, 6, 6);
    run_adaptive(1, 1, 3, 4, 5, 7); /* output larger than input: windows repeat */
    run_adaptive(4, 16, 9, 9, 1, 1);
  }
}

/* Hand values: a 4x4 plane 0..15, 2x2 windows, stride 2. */
static void test_hand_values(void) {
  int64_t xs[3] = {1, 4, 4};
  cnn_tensor *x = cnn_tensor_arange(0, 16, 1, CNN_FLOAT32), *x3 = cnn_tensor_view(x, 3, xs), *y, *idx;
  cnn_pool2d_params p = cnn_pool2d_default_params(2);
  CHECK(cnn_pool_max2d_forward(x3, &p, &y, &idx) == 0);
  /* maxima are the bottom-right cells: 5, 7, 13, 15 */
  CHECK(y->ndim == 3 && y->size[0] == 1 && y->size[1] == 2 && y->size[2] == 2);
  CHECK(cnn_tensor_get_flat(y, 0) == 5 && cnn_tensor_get_flat(y, 3) == 15);
  CHECK(cnn_tensor_get_flat(idx, 1) == 7 && cnn_tensor_get_flat(idx, 2) == 13);
  cnn_tensor *a = cnn_pool_avg2d_forward(x3, &p); /* (0+1+4+5)/4 = 2.5, (10+11+14+15)/4 = 12.5 */
  CHECK(a && cnn_tensor_get_flat(a, 0) == 2.5 && cnn_tensor_get_flat(a, 3) == 12.5);
  cnn_tensor *ad = cnn_pool_adaptive_avg2d_forward(x3, 1, 1); /* mean of 0..15 */
  CHECK(ad && cnn_tensor_get_flat(ad, 0) == 7.5);
  cnn_tensor_release(a), cnn_tensor_release(ad), cnn_tensor_release(y), cnn_tensor_release(idx);
  cnn_tensor_release(x3), cnn_tensor_release(x);
}

/* NaN is the maximum, as in PyTorch (max_pool propagates it); a non-contiguous input pools by its
 * logical layout. */
static void test_nan_and_strides(void) {
  int64_t xs[4] = {1, 1, 2, 2};
  cnn_tensor *x = cnn_tensor_zeros(CNN_FLOAT32, 4, xs), *y, *idx;
  cnn_tensor_f32(x)[2] = NAN;
  cnn_pool2d_params p = cnn_pool2d_default_params(2);
  CHECK(cnn_pool_max2d_forward(x, &p, &y, &idx) == 0);
  CHECK(isnan(cnn_tensor_get_flat(y, 0)) && cnn_tensor_get_flat(idx, 0) == 2);
  cnn_tensor_release(y), cnn_tensor_release(idx), cnn_tensor_release(x);

  int64_t ts[4] = {1, 1, 4, 4};
  cnn_tensor *base = cnn_tensor_arange(0, 16, 1, CNN_FLOAT32), *b4 = cnn_tensor_view(base, 4, ts);
  cnn_tensor *t = cnn_tensor_transpose(b4, 2, 3); /* t[h][w] = 4w + h */
  CHECK(cnn_pool_max2d_forward(t, &p, &y, &idx) == 0);
  /* window (0,0) holds 0, 4, 1, 5: max 5 at t position (1, 1) -> index 5; window (0,1): 12, 13 at (1,3) */
  CHECK(cnn_tensor_get_flat(y, 0) == 5 && cnn_tensor_get_flat(idx, 0) == 5);
  CHECK(cnn_tensor_get_flat(y, 1) == 13 && cnn_tensor_get_flat(idx, 1) == 7);
  cnn_tensor_release(y), cnn_tensor_release(idx), cnn_tensor_release(t), cnn_tensor_release(b4),
      cnn_tensor_release(base);
}

/* 2x2/stride-2 max pooling against take_max's scan, bit for bit, and its backward against a scatter: of cells (2i, 2j), (2i, 2j+1),
 * (2i+1, 2j), (2i+1, 2j+1) in that order a later cell wins when greater or NaN, so the result is the
 * last NaN, else the first maximum. Values come from a small set so that windows are full of ties,
 * +-0, infinities and NaNs with distinct payloads; widths cover the scalar rows (ow < 4), the vector
 * passes with their overlapping last vector, rows wider than the scratch, odd H and W, and the row
 * split between two threads in the middle of a plane. */
static float tricky_value(uint64_t r) {
  static const float pick[] = {0.0f, -0.0f, 1.0f, 1.0f, 2.0f, -1.0f, INFINITY, -INFINITY, 0.5f, 2.0f};
  uint64_t k = r % 12;
  if (k < 10) return pick[k];
  uint32_t bits = 0x7FC00000u | (uint32_t)((r >> 8) & 0xFFFF) | (k == 11 ? 0x80000000u : 0); /* NaN, payload */
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static void run_max2x2_exact(int64_t N, int64_t C, int64_t H, int64_t W) {
  int64_t xs[4] = {N, C, H, W};
  cnn_tensor *x = cnn_tensor_empty(CNN_FLOAT32, 4, xs), *y = NULL, *idx = NULL;
  float *xp = cnn_tensor_f32(x);
  for (int64_t k = 0; k < N * C * H * W; k++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    xp[k] = tricky_value(rng >> 20);
  }
  cnn_pool2d_params p = cnn_pool2d_default_params(2);
  CHECK(cnn_pool_max2d_forward(x, &p, &y, &idx) == 0);
  if (!y) {
    cnn_tensor_release(x);
    return;
  }
  const int64_t oh = H / 2, ow = W / 2;
  CHECK(y->size[2] == oh && y->size[3] == ow);
  const float *yp = cnn_tensor_f32(y);
  const int64_t *ip = cnn_tensor_i64(idx);
  int bad = 0;
  for (int64_t pl = 0; pl < N * C && !bad; pl++)
    for (int64_t i = 0; i < oh && !bad; i++)
      for (int64_t j = 0; j < ow && !bad; j++) {
        const int64_t cells[4] = {2 * i * W + 2 * j, 2 * i * W + 2 * j + 1, (2 * i + 1) * W + 2 * j,
                                  (2 * i + 1) * W + 2 * j + 1};
        int64_t arg = cells[0];
        for (int c = 1; c < 4; c++) {
          float v = xp[pl * H * W + cells[c]], best = xp[pl * H * W + arg];
          if (v > best || isnan(v)) arg = cells[c];
        }
        const int64_t o = (pl * oh + i) * ow + j;
        if (ip[o] != arg || memcmp(&yp[o], &xp[pl * H * W + arg], sizeof(float)) != 0) {
          fprintf(stderr, "max2x2 (%lld, %lld, %lld, %lld) plane %lld (%lld, %lld): index %lld, scan %lld\n",
                  (long long)N, (long long)C, (long long)H, (long long)W, (long long)pl, (long long)i, (long long)j,
                  (long long)ip[o], (long long)arg);
          failures++, bad = 1;
        }
      }
  /* backward: each cell holds 0 + the gradient of the output whose argmax it is (0 + -0 is +0) */
  cnn_tensor *gy = cnn_tensor_empty(CNN_FLOAT32, 4, y->size);
  float *gp = cnn_tensor_f32(gy);
  const int64_t ny = N * C * oh * ow;
  for (int64_t k = 0; k < ny; k++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    gp[k] = tricky_value(rng >> 20);
  }
  float *want = calloc((size_t)(N * C * H * W), sizeof(float));
  for (int64_t k = 0; k < ny; k++) want[(k / (oh * ow)) * H * W + ip[k]] += gp[k];
  cnn_tensor *gx = cnn_pool_max2d_backward(gy, idx, H, W);
  CHECK(gx != NULL);
  if (gx && memcmp(cnn_tensor_f32(gx), want, (size_t)(N * C * H * W) * sizeof(float)) != 0) {
    fprintf(stderr, "max2x2 backward (%lld, %lld, %lld, %lld) differs from the scatter\n", (long long)N, (long long)C,
            (long long)H, (long long)W);
    failures++;
  }
  free(want);
  cnn_tensor_release(gx), cnn_tensor_release(gy);
  cnn_tensor_release(y), cnn_tensor_release(idx), cnn_tensor_release(x);
}

static void test_max2x2_exact(void) {
  static const int64_t shapes[][4] = {
      {2, 3, 4, 4},     {1, 2, 6, 6},   {2, 2, 7, 9},    {3, 5, 8, 16},   {2, 3, 10, 10},
      {4, 6, 28, 28},   {3, 7, 11, 17}, {2, 2, 3, 40},   {1, 3, 9, 1030}, {1, 2, 4, 2050},
      {64, 16, 10, 10}, {5, 1, 2, 30},  {3, 1, 22, 256}, /* 33 output rows: the second thread starts in the middle of plane 1 */
      {1, 1, 4, 6},     {1, 2, 5, 4},   {1, 1, 3, 3}, /* fewer than 8 outputs: no vector at all */
  };
  for (int t = 1; t <= 2; t++) {
    cnn_parallel_set_threads(t);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      run_max2x2_exact(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3]);
  }
  cnn_parallel_set_threads(1);
}

/* Any window against the scan, bit for bit: the window's cells in h-major order, a later cell
 * winning when greater or NaN, starting from -inf at the first cell (so a window of -infs gives its
 * first cell, and a window without cells index -1); the backward against a scatter in output order.
 * The cases cover ResNet's 3x3/2/pad 1 and AlexNet's 3x3/2 on odd and even sizes, ceil_mode, strides
 * 1 and 3, dilation, rectangular windows, rows narrower than a vector and rows wider than the
 * separable path's slots (the per-window fallback). */
static void run_max_exact(int64_t N, int64_t C, int64_t H, int64_t W, cnn_pool2d_params p) {
  int64_t xs[4] = {N, C, H, W};
  cnn_tensor *x = cnn_tensor_empty(CNN_FLOAT32, 4, xs), *y = NULL, *idx = NULL;
  float *xp = cnn_tensor_f32(x);
  for (int64_t k = 0; k < N * C * H * W; k++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    xp[k] = tricky_value(rng >> 20);
  }
  CHECK(cnn_pool_max2d_forward(x, &p, &y, &idx) == 0);
  if (!y) {
    fprintf(stderr, "max exact: %s\n", cnn_error_get());
    cnn_tensor_release(x);
    return;
  }
  const int64_t oh = naive_out(H, p.kernel[0], p.padding[0], p.stride[0], p.dilation[0], p.ceil_mode);
  const int64_t ow = naive_out(W, p.kernel[1], p.padding[1], p.stride[1], p.dilation[1], p.ceil_mode);
  CHECK(y->size[2] == oh && y->size[3] == ow);
  const float *yp = cnn_tensor_f32(y);
  const int64_t *ip = cnn_tensor_i64(idx);
  int bad = 0;
  for (int64_t pl = 0; pl < N * C && !bad; pl++)
    for (int64_t i = 0; i < oh && !bad; i++)
      for (int64_t j = 0; j < ow && !bad; j++) {
        float best = -INFINITY;
        int64_t arg = -1;
        for (int64_t a = 0; a < p.kernel[0]; a++)
          for (int64_t e = 0; e < p.kernel[1]; e++) {
            const int64_t h = i * p.stride[0] - p.padding[0] + a * p.dilation[0];
            const int64_t w = j * p.stride[1] - p.padding[1] + e * p.dilation[1];
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const float v = xp[pl * H * W + h * W + w];
            if (arg < 0) arg = h * W + w;
            if (v > best || isnan(v)) best = v, arg = h * W + w;
          }
        const int64_t o = (pl * oh + i) * ow + j;
        if (ip[o] != arg || memcmp(&yp[o], &best, sizeof(float)) != 0) {
          fprintf(stderr,
                  "max exact (%lld, %lld, %lld, %lld) k %lldx%lld s %lldx%lld p %lldx%lld d %lldx%lld%s plane %lld "
                  "(%lld, %lld): %g at %lld, scan %g at %lld\n",
                  (long long)N, (long long)C, (long long)H, (long long)W, (long long)p.kernel[0],
                  (long long)p.kernel[1], (long long)p.stride[0], (long long)p.stride[1], (long long)p.padding[0],
                  (long long)p.padding[1], (long long)p.dilation[0], (long long)p.dilation[1],
                  p.ceil_mode ? " ceil" : "", (long long)pl, (long long)i, (long long)j, yp[o], (long long)ip[o], best,
                  (long long)arg);
          failures++, bad = 1;
        }
      }
  cnn_tensor *gy = cnn_tensor_empty(CNN_FLOAT32, 4, y->size);
  float *gp = cnn_tensor_f32(gy);
  const int64_t ny = N * C * oh * ow;
  for (int64_t k = 0; k < ny; k++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    gp[k] = tricky_value(rng >> 20);
  }
  float *want = calloc((size_t)(N * C * H * W), sizeof(float));
  for (int64_t k = 0; k < ny; k++)
    if (ip[k] >= 0) want[(k / (oh * ow)) * H * W + ip[k]] += gp[k];
  cnn_tensor *gx = cnn_pool_max2d_backward(gy, idx, H, W);
  CHECK(gx != NULL);
  if (gx && memcmp(cnn_tensor_f32(gx), want, (size_t)(N * C * H * W) * sizeof(float)) != 0) {
    fprintf(stderr, "max exact backward (%lld, %lld, %lld, %lld) k %lldx%lld s %lldx%lld differs from the scatter\n",
            (long long)N, (long long)C, (long long)H, (long long)W, (long long)p.kernel[0], (long long)p.kernel[1],
            (long long)p.stride[0], (long long)p.stride[1]);
    failures++;
  }
  free(want);
  cnn_tensor_release(gx), cnn_tensor_release(gy);
  cnn_tensor_release(y), cnn_tensor_release(idx), cnn_tensor_release(x);
}

static void test_max_exact(void) {
  static const struct {
    int64_t N, C, H, W;
    cnn_pool2d_params p;
  } cases[] = {
      {2, 3, 16, 16, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)}, /* ResNet's stem pool */
      {2, 2, 17, 23, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)},
      {1, 3, 56, 56, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)},
      {1, 2, 55, 55, PP(3, 3, 2, 2, 0, 0, 1, 1, false, true, 0)}, /* AlexNet's */
      {2, 2, 13, 13, PP(3, 3, 2, 2, 0, 0, 1, 1, false, true, 0)},
      {2, 2, 14, 14, PP(3, 3, 2, 2, 0, 0, 1, 1, true, true, 0)},
      {2, 2, 16, 21, PP(3, 3, 2, 2, 1, 1, 1, 1, true, true, 0)},
      {2, 2, 9, 7, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)}, /* 4 outputs a row: scalar pass 2 */
      {2, 2, 5, 5, PP(3, 3, 1, 1, 1, 1, 1, 1, false, true, 0)},
      {2, 2, 12, 30, PP(3, 3, 1, 1, 1, 1, 1, 1, false, true, 0)}, /* stride 1 vectors */
      {2, 2, 12, 30, PP(5, 4, 3, 3, 2, 2, 1, 1, true, true, 0)},  /* stride 3: scalar pass 2 */
      {2, 2, 20, 40, PP(3, 3, 2, 2, 1, 1, 2, 2, false, true, 0)}, /* dilation */
      {1, 2, 19, 37, PP(2, 3, 1, 2, 1, 1, 3, 2, true, true, 0)},
      {1, 2, 9, 33, PP(2, 2, 2, 2, 1, 1, 1, 1, true, true, 0)}, /* 2x2 with padding: not the 2x2 path */
      {2, 2, 6, 33, PP(1, 3, 1, 2, 0, 1, 1, 1, false, true, 0)},
      {1, 1, 5, 3000, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)}, /* past the slots: per window */
      {16, 8, 12, 12, PP(3, 3, 2, 2, 1, 1, 1, 1, false, true, 0)}, /* many planes (threads) */
  };
  for (int t = 1; t <= 2; t++) {
    cnn_parallel_set_threads(t);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
      run_max_exact(cases[c].N, cases[c].C, cases[c].H, cases[c].W, cases[c].p);
  }
  cnn_parallel_set_threads(1);
}

/* max_pool2d backward with indices in no order (any cell of the plane, repeats, -1): each cell
 * gets 0 plus the gradients that name it, added in output order, as a scatter does. */
static void test_max_backward_any_indices(void) {
  const int64_t P = 3, H = 9, W = 11, oh = 4, ow = 5;
  int64_t gs[4] = {1, P, oh, ow};
  cnn_tensor *gy = cnn_tensor_empty(CNN_FLOAT32, 4, gs), *idx = cnn_tensor_empty(CNN_INT64, 4, gs);
  float *gp = cnn_tensor_f32(gy);
  int64_t *ip = cnn_tensor_i64(idx);
  float *want = calloc((size_t)(P * H * W), sizeof(float));
  for (int64_t k = 0; k < P * oh * ow; k++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    gp[k] = (float)((rng >> 33) % 17) - 8.0f;
    const uint64_t r = (rng >> 20) % 23;
    ip[k] = r == 0 ? -1 : r < 4 ? (int64_t)r : (int64_t)((rng >> 40) % (uint64_t)(H * W)); /* -1, repeats, anywhere */
    if (ip[k] >= 0) want[(k / (oh * ow)) * H * W + ip[k]] += gp[k];
  }
  for (int t = 1; t <= 2; t++) {
    cnn_parallel_set_threads(t);
    cnn_tensor *gx = cnn_pool_max2d_backward(gy, idx, H, W);
    CHECK(gx != NULL);
    if (gx && memcmp(cnn_tensor_f32(gx), want, (size_t)(P * H * W) * sizeof(float)) != 0) {
      fprintf(stderr, "max backward with indices in no order differs from the scatter\n");
      failures++;
    }
    cnn_tensor_release(gx);
  }
  cnn_parallel_set_threads(1);
  free(want);
  cnn_tensor_release(gy), cnn_tensor_release(idx);
}

static void expect_error(int ndim, const int64_t *xs, cnn_pool2d_params p, const char *msg) {
  cnn_tensor *x = cnn_tensor_zeros(CNN_FLOAT32, ndim, xs), *y = NULL, *idx = NULL;
  cnn_error_clear();
  int rc = cnn_pool_max2d_forward(x, &p, &y, &idx);
  if (rc == 0 || strcmp(cnn_error_get(), msg) != 0) {
    fprintf(stderr, "expected error \"%s\", got \"%s\"\n", msg, cnn_error_get());
    failures++;
  }
  cnn_error_clear();
  cnn_tensor *a = cnn_pool_avg2d_forward(x, &p);
  if (a || strcmp(cnn_error_get(), msg) != 0) {
    fprintf(stderr, "avg: expected error \"%s\", got \"%s\"\n", msg, cnn_error_get());
    failures++;
  }
  cnn_tensor_release(a), cnn_tensor_release(y), cnn_tensor_release(idx), cnn_tensor_release(x);
}

static void test_errors(void) {
  int64_t s4[4] = {1, 1, 2, 2}, s2[2] = {4, 4}, s0[4] = {1, 0, 4, 4};
  expect_error(4, s4, cnn_pool2d_default_params(3),
               "input (2, 2) is too small for the window: the output would be (0, 0)");
  expect_error(2, s2, cnn_pool2d_default_params(2), "expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got 2-d");
  expect_error(4, s0, cnn_pool2d_default_params(2), "input has a zero-size dimension 2 (only the batch may be empty)");
  cnn_pool2d_params p = cnn_pool2d_default_params(3);
  p.padding[0] = p.padding[1] = 2;
  int64_t big[4] = {1, 1, 8, 8};
  expect_error(4, big, p, "padding (2, 2) must be at most half the kernel size (3, 3)");
  p = cnn_pool2d_default_params(2);
  p.stride[1] = 0;
  expect_error(4, big, p, "stride must be at least 1, got (2, 0)");
  p = cnn_pool2d_default_params(0);
  expect_error(4, big, p, "kernel size must be at least 1, got (0, 0)");
  cnn_tensor *xi = cnn_tensor_zeros(CNN_INT64, 4, big);
  cnn_error_clear();
  CHECK(cnn_pool_adaptive_avg2d_forward(xi, 2, 2) == NULL &&
        strcmp(cnn_error_get(), "expected a float32 input, got int64") == 0);
  cnn_tensor_release(xi);
}

int main(void) {
  test_cases();
  test_hand_values();
  test_nan_and_strides();
  test_max2x2_exact();
  test_max_exact();
  test_max_backward_any_indices();
  test_errors();
  return check_summary("test_pool");
}
