/* conv.c: forward, input/weight/bias gradients against a naive direct convolution written here
 * (double accumulation), over strides, asymmetric padding, dilation, groups, rectangular and 1x1
 * kernels, multi-band images, single images split over threads, non-contiguous inputs, 1 and 2
 * threads, both algorithms (im2col, and the direct kernels of conv_direct.c for stride-1 layers,
 * with shapes that hit their tile and slab tails); determinism of the threaded weight gradient;
 * all three gradients in one call giving the bits of separate calls; an inf in x (the weight
 * gradient then by im2col); the workspace staying put once warm; error messages. */
#include "autograd/conv.h"
#include "autograd/pool.h"
#include "check.h"
#include "kernels/conv.h"
#include "kernels/conv_small.h"
#include "cnn/error.h"
#include "cnn/tensor.h"
#include "core/alloc.h"
#include "core/gemm_avx512.h"
#include "core/parallel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull; /* check_urand state */

typedef struct ccase {
  const char *name;
  int64_t N, C, H, W, O, kh, kw;
  cnn_conv2d_params p;
  int bias;
} ccase;

/* Naive reference: y, gx, gw, gb in double, plus sums of |terms| for tolerances. */
typedef struct ref {
  int64_t oh, ow;
  double *y, *ya, *gx, *gxa, *gw, *gwa, *gb, *gba;
} ref;

static void naive(const ccase *c, const float *x, const float *w, const float *b, const float *gy, ref *r) {
  const cnn_conv2d_params *p = &c->p;
  int64_t oh = (c->H + p->pad_lo[0] + p->pad_hi[0] - p->dilation[0] * (c->kh - 1) - 1) / p->stride[0] + 1;
  int64_t ow = (c->W + p->pad_lo[1] + p->pad_hi[1] - p->dilation[1] * (c->kw - 1) - 1) / p->stride[1] + 1;
  int64_t Cg = c->C / p->groups, Og = c->O / p->groups;
  r->oh = oh, r->ow = ow;
  size_t ny = (size_t)(c->N * c->O * oh * ow), nx = (size_t)(c->N * c->C * c->H * c->W),
         nw = (size_t)(c->O * Cg * c->kh * c->kw);
  r->y = calloc(ny, 8), r->ya = calloc(ny, 8), r->gx = calloc(nx, 8), r->gxa = calloc(nx, 8);
  r->gw = calloc(nw, 8), r->gwa = calloc(nw, 8), r->gb = calloc((size_t)c->O, 8), r->gba = calloc((size_t)c->O, 8);
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->O; o++) {
      int64_t grp = o / Og;
      for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++) {
          int64_t yi = ((n * c->O + o) * oh + i) * ow + j;
          double g = gy[yi];
          double acc = b ? b[o] : 0, aacc = b ? fabs(b[o]) : 0;
          for (int64_t cc = 0; cc < Cg; cc++)
            for (int64_t a = 0; a < c->kh; a++)
              for (int64_t e = 0; e < c->kw; e++) {
                int64_t iy = i * p->stride[0] - p->pad_lo[0] + a * p->dilation[0];
                int64_t ix = j * p->stride[1] - p->pad_lo[1] + e * p->dilation[1];
                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                int64_t xi = ((n * c->C + grp * Cg + cc) * c->H + iy) * c->W + ix;
                int64_t wi = ((o * Cg + cc) * c->kh + a) * c->kw + e;
                acc += (double)x[xi] * w[wi], aacc += fabs((double)x[xi] * w[wi]);
                r->gx[xi] += g * w[wi], r->gxa[xi] += fabs(g * w[wi]);
                r->gw[wi] += g * x[xi], r->gwa[wi] += fabs(g * x[xi]);
              }
          r->y[yi] = acc, r->ya[yi] = aacc;
          r->gb[o] += g, r->gba[o] += fabs(g);
        }
    }
}

static void ref_free(ref *r) {
  free(r->y), free(r->ya), free(r->gx), free(r->gxa), free(r->gw), free(r->gwa), free(r->gb), free(r->gba);
}

/* got (contiguous) against want within 2e-6 * sum|terms| + 1e-6 */
static void compare(const char *name, const char *what, const cnn_tensor *got, const double *want, const double *mag,
                    int64_t n) {
  CHECK(got != NULL);
  if (!got) return;
  CHECK(cnn_tensor_numel(got) == n);
  const float *g = cnn_tensor_f32(got);
  for (int64_t i = 0; i < n; i++) {
    if (!(fabs(g[i] - want[i]) <= 2e-6 * mag[i] + 1e-6)) {
      fprintf(stderr, "%s: %s[%lld] = %.9g, naive %.9g\n", name, what, (long long)i, g[i], want[i]);
      failures++;
      return;
    }
  }
}

static cnn_conv2d_params P(int64_t sh, int64_t sw, int64_t ph0, int64_t pw0, int64_t ph1, int64_t pw1, int64_t dh,
                           int64_t dw, int64_t g) {
  cnn_conv2d_params p = {{sh, sw}, {ph0, pw0}, {ph1, pw1}, {dh, dw}, g};
  return p;
}

/* Runs one case; with `strided` the input is a transposed view (non-contiguous). */
static void run_case(const ccase *c, int strided) {
  int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->O, c->C / c->p.groups, c->kh, c->kw};
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
  cnn_tensor *b = c->bias ? check_rand_tensor(&rng, 1, &c->O) : NULL;
  cnn_tensor *xin = x;
  if (strided) { /* same values, W and H swapped in memory */
    int64_t ts[4] = {c->N, c->C, c->W, c->H};
    cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 4, ts);
    xin = cnn_tensor_transpose(t, 2, 3);
    cnn_tensor_copy_(xin, x);
    cnn_tensor_release(t);
    CHECK(!cnn_tensor_is_contiguous(xin));
  }
  cnn_tensor *y = cnn_conv2d_forward(xin, w, b, &c->p);
  CHECK(y != NULL);
  if (!y) {
    fprintf(stderr, "%s: %s\n", c->name, cnn_error_get());
    goto out;
  }
  cnn_tensor *gy = check_rand_tensor(&rng, 4, y->size);
  ref r;
  naive(c, cnn_tensor_f32(x), cnn_tensor_f32(w), b ? cnn_tensor_f32(b) : NULL, cnn_tensor_f32(gy), &r);
  CHECK(y->size[2] == r.oh && y->size[3] == r.ow);
  compare(c->name, "y", y, r.y, r.ya, cnn_tensor_numel(y));
  cnn_tensor *gx = NULL, *gw = NULL, *gb = NULL;
  int rc = cnn_conv2d_backward(gy, xin, w, xs, ws, &c->p, &gx, &gw, c->bias ? &gb : NULL);
  CHECK(rc == 0);
  if (rc) fprintf(stderr, "%s: %s\n", c->name, cnn_error_get());
  compare(c->name, "gx", gx, r.gx, r.gxa, cnn_tensor_numel(x));
  compare(c->name, "gw", gw, r.gw, r.gwa, cnn_tensor_numel(w));
  if (c->bias) compare(c->name, "gb", gb, r.gb, r.gba, c->O);
  /* only the weight gradient (the first layer of a network): no w needed, same numbers */
  cnn_tensor *gw2 = NULL;
  CHECK(cnn_conv2d_backward(gy, xin, NULL, xs, ws, &c->p, NULL, &gw2, NULL) == 0);
  compare(c->name, "gw (alone)", gw2, r.gw, r.gwa, cnn_tensor_numel(w));
  /* only the input gradient: no x needed */
  cnn_tensor *gx2 = NULL;
  CHECK(cnn_conv2d_backward(gy, NULL, w, xs, ws, &c->p, &gx2, NULL, NULL) == 0);
  compare(c->name, "gx (alone)", gx2, r.gx, r.gxa, cnn_tensor_numel(x));
  ref_free(&r);
  cnn_tensor_release(gx), cnn_tensor_release(gw), cnn_tensor_release(gb);
  cnn_tensor_release(gw2), cnn_tensor_release(gx2), cnn_tensor_release(gy), cnn_tensor_release(y);
out:
  if (xin != x) cnn_tensor_release(xin);
  cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(b);
}

static const ccase CASES[] = {
    {"basic 3x3", 2, 3, 7, 6, 4, 3, 3, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"pad 1", 3, 2, 5, 5, 3, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"stride 2 pad 2 rect", 2, 3, 9, 8, 5, 3, 5, {{2, 3}, {2, 1}, {2, 1}, {1, 1}, 1}, 0},
    {"asymmetric pad (same, even kernel)", 2, 2, 6, 7, 3, 2, 4, {{1, 1}, {0, 1}, {1, 2}, {1, 1}, 1}, 1},
    {"dilation 2", 2, 3, 9, 10, 2, 3, 3, {{1, 1}, {1, 2}, {1, 2}, {2, 3}, 1}, 1},
    {"groups 2", 3, 4, 6, 6, 6, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 2}, 1},
    {"depthwise stride 2", 2, 4, 8, 7, 8, 3, 3, {{2, 2}, {1, 1}, {1, 1}, {1, 1}, 4}, 1},
    {"1x1 direct", 3, 5, 4, 6, 7, 1, 1, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"1x1 grouped direct", 2, 6, 3, 5, 4, 1, 1, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 2}, 0},
    {"1x1 direct, one image (split over threads)", 1, 6, 5, 7, 4, 1, 1, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"one image, two groups of 3", 1, 6, 6, 5, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 2}, 1},
    {"1x1 stride 2", 2, 3, 7, 7, 4, 1, 1, {{2, 2}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"1x1 padded", 1, 3, 3, 4, 2, 1, 1, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"11x11 stride 4", 1, 3, 35, 35, 6, 11, 11, {{4, 4}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"many bands (16ch 5x5 on 40x40)", 2, 16, 40, 40, 3, 5, 5, {{1, 1}, {2, 2}, {2, 2}, {1, 1}, 1}, 1},
    {"one row per band (64ch on 3x120)", 2, 64, 3, 120, 2, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"strided dilated wide kernel (transposed gx)", 2, 2, 9, 14, 3, 2, 4, {{1, 2}, {1, 3}, {0, 2}, {2, 2}, 1}, 1},
    {"strided wide kernel, many bands", 1, 32, 40, 48, 2, 5, 5, {{2, 2}, {2, 2}, {2, 2}, {1, 1}, 1}, 1},
    /* a weight gradient on im2col whose (O, K) partial passes 2 MiB: one band an image (conv.c) */
    {"wide weight gradient, one band an image", 2, 120, 6, 7, 486, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    /* im2col's vector stride-2 rows (conv.c copy_row): 35 outputs a row (two full vectors and a
     * tail of 3), then 32 (a last full vector that must not read past its row) */
    {"7x7 stride 2 pad 3 (a stem), 35 wide", 2, 3, 12, 70, 5, 7, 7, {{2, 2}, {3, 3}, {3, 3}, {1, 1}, 1}, 1},
    {"7x7 stride 2 unpadded, 32 wide", 2, 3, 9, 69, 4, 7, 7, {{2, 2}, {0, 0}, {0, 0}, {1, 1}, 1}, 0},
    {"window only in padding", 2, 2, 2, 1, 2, 1, 1, {{10, 10}, {3, 3}, {3, 3}, {1, 1}, 1}, 1},
    {"padding wider than the kernel", 2, 2, 3, 4, 2, 2, 2, {{3, 2}, {3, 4}, {2, 4}, {1, 1}, 1}, 1},
    {"kernel = input", 3, 2, 4, 5, 3, 4, 5, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"stride larger than kernel", 2, 2, 9, 9, 2, 2, 2, {{3, 4}, {0, 1}, {0, 1}, {1, 1}, 1}, 1},
    {"batch 5 with 2 threads (odd split)", 5, 2, 5, 5, 2, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    /* direct kernels: filter counts on every tile height and its tails, input-gradient tiles for
     * 1..9 channels, slabs of one image (big planes) and of many (tiny ones), padding up to k - 1 */
    {"LeNet conv1 shape", 3, 1, 28, 28, 6, 5, 5, {{1, 1}, {2, 2}, {2, 2}, {1, 1}, 1}, 1},
    {"LeNet conv2 shape", 3, 6, 14, 14, 16, 5, 5, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"one filter, two channels", 2, 2, 6, 5, 1, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"3 filters, 9 channels", 3, 9, 5, 7, 3, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"5 filters, 7 channels, full padding", 2, 7, 4, 6, 5, 3, 3, {{1, 1}, {2, 2}, {2, 2}, {1, 1}, 1}, 1},
    {"7 filters, rect kernel, asymmetric pad", 2, 3, 7, 9, 7, 2, 5, {{1, 1}, {1, 0}, {0, 4}, {1, 1}, 1}, 1},
    {"17 filters, 10 channels", 3, 10, 6, 6, 17, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"big plane: one image a slab", 2, 40, 41, 43, 9, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"tiny planes: many images a slab", 37, 4, 3, 2, 12, 2, 2, {{1, 1}, {1, 0}, {0, 1}, {1, 1}, 1}, 1},
    {"single image, 33 filters (gx 2 channels)", 1, 2, 9, 8, 33, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 0},
    {"kernel = padded input", 2, 3, 2, 3, 4, 3, 4, {{1, 1}, {1, 1}, {0, 0}, {1, 1}, 1}, 1},
    {"wide layer: weight-grad partials as floats", 1, 256, 3, 3, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 0},
    /* the 3x3 instances of the forward and input-gradient tiles: 8, 6, 4, 2 and 1 rows */
    {"3x3, 12 filters, 16 channels, odd plane", 3, 16, 7, 9, 12, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"3x3, 6 filters, 24 channels, asymmetric pad", 2, 24, 5, 11, 6, 3, 3, {{1, 1}, {1, 0}, {0, 1}, {1, 1}, 1}, 1},
    {"3x3, ResNet-20's 8x8 stage, batch 5", 5, 32, 8, 8, 32, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"3x3, 4 filters, 2 channels, full padding", 3, 2, 6, 5, 4, 3, 3, {{1, 1}, {2, 2}, {2, 2}, {1, 1}, 1}, 1},
    /* weight-gradient slabs past the budget on small planes (24 images, not 20) */
    {"3x3, 48 channels at 6x6, batch 24", 24, 48, 6, 6, 48, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    /* conv_small.c (the batch in the vector lanes): 12 images and more, 64 to 512 taps an output,
     * planes up to 400, 16 filters at most (the weight gradient: any plane, up to 512 taps); a
     * part-filled last group, every tile tail */
    {"lanes: LeNet conv2 at batch 16", 16, 6, 14, 14, 16, 5, 5, {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"lanes: batch 29, rect kernel, asymmetric pad", 29, 4, 9, 11, 5, 4, 5, {{1, 1}, {1, 2}, {2, 0}, {1, 1}, 1}, 1},
    {"lanes: 13 filters, odd rows, full padding", 13, 8, 7, 13, 13, 3, 3, {{1, 1}, {2, 2}, {2, 2}, {1, 1}, 1}, 1},
    {"lanes: input gradient only (3 -> 16)", 24, 3, 10, 10, 16, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 0},
    {"lanes: LeNet conv1 at batch 12 (weight gradient)",
     12,
     1,
     28,
     28,
     6,
     5,
     5,
     {{1, 1}, {2, 2}, {2, 2}, {1, 1}, 1},
     1},
    {"lanes: one filter, one output column", 40, 16, 5, 4, 1, 2, 4, {{1, 1}, {0, 0}, {1, 0}, {1, 1}, 1}, 1},
    /* the forward and input gradient up to 64 filters and 576 taps on planes up to 256 (ResNet-20's
     * 8x8 and 16x16 stages): filter blocks past 16, every tile tail, output rows in bands (a short
     * last one at 16x16); the weight gradient at 8x8 too */
    {"lanes: ResNet-20's 8x8 stage at batch 16", 16, 64, 8, 8, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"lanes: ResNet-20's 16x16 stage at batch 16", 16, 32, 16, 16, 32, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"lanes: 37 filters, 43 channels, 7x6, batch 29", 29, 43, 7, 6, 37, 3, 3, {{1, 1}, {1, 0}, {0, 1}, {1, 1}, 1}, 1},
    /* the weight gradient on planes up to 1024 whose group grids pass L2: input rows filled per band
     * of output rows (test_small_rowband checks these take it), a short last band, a part-filled
     * group */
    {"lanes, rows in bands: ResNet-20's 32x32 stage", 16, 16, 32, 32, 16, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    /* stride 2 (forward and weight gradient; test_small_strided checks they take it): ResNet-20's
     * 16 -> 32 (weight gradient in row bands, a short last band), odd planes, asymmetric padding, an
     * even kernel */
    {"lanes, stride 2: 16 -> 32 on 32x32", 16, 16, 32, 32, 32, 3, 3, {{2, 2}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
    {"lanes, stride 2: batch 29, 15x13, asymmetric pad",
     29,
     24,
     15,
     13,
     19,
     3,
     3,
     {{2, 2}, {1, 0}, {0, 1}, {1, 1}, 1},
     1},
    {"lanes, stride 2: 4x4 kernel on 29x29", 29, 8, 29, 29, 12, 4, 4, {{2, 2}, {1, 1}, {2, 2}, {1, 1}, 1}, 1},
    /* the batched wide-layer path (conv.c: 3x3 from 114 channels on planes up to 64, forward and
     * weight gradient; test_batched runs them in several chunks): tile edges in every dimension */
    {"batched: 128 channels on 5x6, batch 5, 37 filters",
     5,
     128,
     5,
     6,
     37,
     3,
     3,
     {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},
     1},
    {"batched, stride 2: 130 channels on 9x7, asymmetric pad",
     3,
     130,
     9,
     7,
     19,
     3,
     3,
     {{2, 2}, {1, 0}, {0, 1}, {1, 1}, 1},
     0},
    /* the strided input gradient's phases: unpadded (two row taps on even rows), padded by k - 1,
     * a 2x2 kernel (one tap a phase), a 5x5 with asymmetric padding on an odd plane */
    {"lanes, stride 2: 3x3 unpadded, 17x15", 13, 16, 17, 15, 8, 3, 3, {{2, 2}, {0, 0}, {0, 0}, {1, 1}, 1}, 1},
    {"lanes, stride 2: 3x3 padded by 2, 9x10", 16, 8, 9, 10, 24, 3, 3, {{2, 2}, {2, 2}, {2, 2}, {1, 1}, 1}, 0},
    {"lanes, stride 2: 2x2 kernel, 12x11", 13, 20, 12, 11, 10, 2, 2, {{2, 2}, {1, 0}, {0, 1}, {1, 1}, 1}, 1},
    {"lanes, stride 2: 5x5 kernel, 21x19, asymmetric pad",
     29,
     4,
     21,
     19,
     7,
     5,
     5,
     {{2, 2}, {2, 1}, {1, 2}, {1, 1}, 1},
     1},
    {"lanes, rows in bands: batch 29, 19 filters, 27x35, 3x4, asymmetric pad",
     29,
     24,
     27,
     35,
     19,
     3,
     4,
     {{1, 1}, {1, 2}, {2, 1}, {1, 1}, 1},
     1},
};

static void test_cases(void) {
  int nc = (int)(sizeof CASES / sizeof CASES[0]);
  const cnn_conv2d_algorithm algs[] = {CNN_CONV2D_AUTO, CNN_CONV2D_IM2COL};
  for (int a = 0; a < 2; a++) {
    cnn_conv2d_set_algorithm(algs[a]);
    for (int t = 1; t <= 2; t++) {
      cnn_parallel_set_threads(t);
      for (int i = 0; i < nc; i++) run_case(&CASES[i], 0);
    }
    cnn_parallel_set_threads(2);
    run_case(&CASES[1], 1);
    run_case(&CASES[4], 1);
  }
  cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
  /* past the direct kernels' workspace cap, the same layers go to im2col */
  cnn_conv2d_set_direct_limit(64);
  for (int i = 0; i < nc; i++) run_case(&CASES[i], 0);
  cnn_conv2d_set_direct_limit(0);
}

/* With 2 threads the weight gradient comes from per-thread partial sums reduced in a fixed order:
 * two runs give the same bits (this shape takes the direct kernels; case 1 above covers im2col's). */
static void test_deterministic(void) {
  cnn_parallel_set_threads(2);
  int64_t xs[4] = {6, 4, 9, 9}, ws[4] = {5, 4, 3, 3};
  cnn_conv2d_params p = P(1, 1, 1, 1, 1, 1, 1, 1, 1);
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs);
  int64_t gs[4] = {6, 5, 9, 9};
  cnn_tensor *g = check_rand_tensor(&rng, 4, gs);
  cnn_tensor *a = NULL, *b = NULL;
  CHECK(cnn_conv2d_backward(g, x, NULL, xs, ws, &p, NULL, &a, NULL) == 0);
  CHECK(cnn_conv2d_backward(g, x, NULL, xs, ws, &p, NULL, &b, NULL) == 0);
  if (a && b) CHECK(memcmp(cnn_tensor_f32(a), cnn_tensor_f32(b), (size_t)cnn_tensor_numel(a) * 4) == 0);
  cnn_tensor_release(a), cnn_tensor_release(b), cnn_tensor_release(g);
  cnn_tensor_release(x);
}

static bool same_bits(const cnn_tensor *a, const cnn_tensor *b) {
  return a && b && cnn_tensor_numel(a) == cnn_tensor_numel(b) &&
         memcmp(cnn_tensor_f32(a), cnn_tensor_f32(b), (size_t)cnn_tensor_numel(a) * 4) == 0;
}

/* All three gradients at once (the weight gradient's sum beside the input gradient, one job fewer)
 * give the bits of the input gradient alone and the weight and bias gradients alone, on the pool
 * and on one thread as beside a busy program. */
static void backward_together(int64_t n) {
  cnn_parallel_set_threads(2);
  int64_t xs[4] = {n, 6, 14, 14}, ws[4] = {16, 6, 5, 5}, gs[4] = {n, 16, 10, 10};
  cnn_conv2d_params p = P(1, 1, 0, 0, 0, 0, 1, 1, 1);
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
  cnn_tensor *g = check_rand_tensor(&rng, 4, gs);
  for (int alone = 0; alone < 2; alone++) {
    cnn_parallel_force_alone(alone);
    cnn_tensor *gx = NULL, *gw = NULL, *gb = NULL, *gx1 = NULL, *gw1 = NULL, *gb1 = NULL;
    CHECK(cnn_conv2d_backward(g, x, w, xs, ws, &p, &gx, &gw, &gb) == 0);
    CHECK(cnn_conv2d_backward(g, x, w, xs, ws, &p, &gx1, NULL, NULL) == 0);
    CHECK(cnn_conv2d_backward(g, x, w, xs, ws, &p, NULL, &gw1, &gb1) == 0);
    CHECK(same_bits(gx, gx1));
    CHECK(same_bits(gw, gw1));
    CHECK(same_bits(gb, gb1));
    cnn_tensor_release(gx), cnn_tensor_release(gw), cnn_tensor_release(gb);
    cnn_tensor_release(gx1), cnn_tensor_release(gw1), cnn_tensor_release(gb1);
  }
  cnn_parallel_force_alone(false);
  cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(g);
}

/* An inf in x: the direct weight gradient would pair it with the zeros of dropped positions (0 *
 * inf = NaN); it sees the inf as it copies x into its slabs and gw comes from im2col instead. The
 * inf sits at the centre of the last image's channel 1, which every 3x3 tap of a 9x9 padded plane
 * meets: those gw entries are +-inf (one inf term each, gy never 0), the other channels finite; the
 * bits are im2col's, alone or with gx and gb, on 1 and 2 threads (the inf in the second part). */
static void test_weight_grad_inf(void) {
  int64_t xs[4] = {6, 3, 9, 9}, ws[4] = {5, 3, 3, 3}, gs[4] = {6, 5, 9, 9};
  cnn_conv2d_params p = P(1, 1, 1, 1, 1, 1, 1, 1, 1);
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
  cnn_tensor *g = check_rand_tensor(&rng, 4, gs);
  for (int64_t i = 0; i < cnn_tensor_numel(g); i++)
    if (cnn_tensor_f32(g)[i] == 0) cnn_tensor_f32(g)[i] = 0.5f;
  cnn_tensor_f32(x)[((5 * 3 + 1) * 9 + 4) * 9 + 4] = INFINITY;
  for (int t = 1; t <= 2; t++) {
    cnn_parallel_set_threads(t);
    cnn_tensor *gw[3] = {NULL, NULL, NULL}, *gb[2] = {NULL, NULL}, *gx[2] = {NULL, NULL};
    cnn_conv2d_set_algorithm(CNN_CONV2D_IM2COL);
    CHECK(cnn_conv2d_backward(g, x, w, xs, ws, &p, &gx[0], &gw[0], &gb[0]) == 0);
    cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
    CHECK(cnn_conv2d_backward(g, x, w, xs, ws, &p, &gx[1], &gw[1], &gb[1]) == 0);
    CHECK(cnn_conv2d_backward(g, x, NULL, xs, ws, &p, NULL, &gw[2], NULL) == 0);
    CHECK(same_bits(gw[0], gw[1]) && same_bits(gw[0], gw[2]) && same_bits(gb[0], gb[1]));
    for (int64_t i = 0; gw[1] && i < cnn_tensor_numel(gw[1]); i++) {
      float v = cnn_tensor_f32(gw[1])[i];
      CHECK(i / 9 % 3 == 1 ? isinf(v) : isfinite(v));
    }
    /* gx does not read x: finite, and close to im2col's */
    for (int64_t i = 0; gx[0] && gx[1] && i < cnn_tensor_numel(gx[1]); i++)
      CHECK(isfinite(cnn_tensor_f32(gx[1])[i]) &&
            check_close_rel(cnn_tensor_f32(gx[1])[i], cnn_tensor_f32(gx[0])[i], 1e-5));
    for (int k = 0; k < 3; k++) cnn_tensor_release(gw[k]);
    for (int k = 0; k < 2; k++) cnn_tensor_release(gb[k]), cnn_tensor_release(gx[k]);
  }
  cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(g);
}

static void test_backward_together(void) {
  for (int64_t n = 8; n <= 16; n += 8) /* conv_direct.c's kernels, then conv_small.c's */
    backward_together(n);
}

/* The kernels' scratch comes from the runtime allocator: a step leaves none of it live, and once
 * a layer ran, running it again takes no new memory (the allocator's cache hands it back). */
static void test_workspace(void) {
  /* one thread: the GEMM's packing blocks, kept for a thread's life, are taken by the first GEMM task
   * a thread runs, and on two threads whether the worker ran one before this test depends on how
   * the tasks were claimed (seen failing once in 7 under ASan on a busy machine) */
  cnn_parallel_set_threads(1);
  int64_t xs[4] = {4, 8, 12, 12}, ws[4] = {8, 8, 3, 3};
  cnn_conv2d_params p = P(1, 1, 1, 1, 1, 1, 1, 1, 1);
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
  size_t live = cnn_alloc_live_bytes();
  size_t held = 0;
  for (int step = 0; step < 3; step++) {
    for (int a = 0; a < 2; a++) { /* both paths: direct kernels and im2col */
      cnn_conv2d_set_algorithm(a ? CNN_CONV2D_IM2COL : CNN_CONV2D_AUTO);
      cnn_tensor *y = cnn_conv2d_forward(x, w, NULL, &p), *gx, *gw;
      CHECK(cnn_conv2d_backward(y, x, w, xs, ws, &p, &gx, &gw, NULL) == 0);
      cnn_tensor_release(gx), cnn_tensor_release(gw), cnn_tensor_release(y);
    }
    CHECK(cnn_alloc_live_bytes() == live);
    if (step == 1) held = cnn_alloc_cached_bytes();
    if (step == 2) CHECK(cnn_alloc_cached_bytes() == held);
  }
  cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
  cnn_tensor_release(x), cnn_tensor_release(w);
}

/* An empty batch gives an empty output and zero-size gradients. */
static void test_empty_batch(void) {
  int64_t xs[4] = {0, 2, 5, 5}, ws[4] = {3, 2, 3, 3}, three = 3;
  cnn_conv2d_params p = cnn_conv2d_default_params();
  cnn_tensor *x = cnn_tensor_zeros(CNN_FLOAT32, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
  cnn_tensor *b = check_rand_tensor(&rng, 1, &three);
  cnn_tensor *y = cnn_conv2d_forward(x, w, b, &p), *gx = NULL, *gw = NULL, *gb = NULL;
  CHECK(y && y->size[0] == 0 && y->size[1] == 3 && y->size[2] == 3 && y->size[3] == 3);
  if (y) {
    CHECK(cnn_conv2d_backward(y, x, w, xs, ws, &p, &gx, &gw, &gb) == 0);
    CHECK(gw && cnn_tensor_get_flat(gw, 0) == 0 && gb && cnn_tensor_get_flat(gb, 2) == 0);
    CHECK(gx && cnn_tensor_numel(gx) == 0);
  }
  cnn_tensor_release(gx), cnn_tensor_release(gw), cnn_tensor_release(gb), cnn_tensor_release(y);
  cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(b);
}

static void expect_error(const int64_t *xs, const int64_t *ws, int64_t nb, cnn_conv2d_params p, const char *msg) {
  cnn_tensor *x = cnn_tensor_zeros(CNN_FLOAT32, 4, xs), *w = cnn_tensor_zeros(CNN_FLOAT32, 4, ws);
  cnn_tensor *b = nb ? cnn_tensor_zeros(CNN_FLOAT32, 1, &nb) : NULL;
  cnn_error_clear();
  cnn_tensor *y = cnn_conv2d_forward(x, w, b, &p);
  if (y || strcmp(cnn_error_get(), msg) != 0) {
    fprintf(stderr, "expected error \"%s\", got %s\"%s\"\n", msg, y ? "a result and " : "", cnn_error_get());
    failures++;
  }
  cnn_tensor_release(y), cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(b);
}

static void test_errors(void) {
  cnn_conv2d_params d = cnn_conv2d_default_params();
  expect_error((int64_t[]){1, 3, 5, 5}, (int64_t[]){2, 1, 3, 3}, 0, d,
               "input has 3 channels but weight expects 1 (groups=1)");
  expect_error((int64_t[]){1, 4, 5, 5}, (int64_t[]){2, 1, 3, 3}, 0, P(1, 1, 0, 0, 0, 0, 1, 1, 2),
               "input has 4 channels but weight expects 2 (groups=2)");
  expect_error((int64_t[]){1, 3, 5, 5}, (int64_t[]){4, 1, 3, 3}, 0, P(1, 1, 0, 0, 0, 0, 1, 1, 3),
               "weight has 4 output channels, not divisible by groups=3");
  expect_error((int64_t[]){1, 1, 3, 3}, (int64_t[]){2, 1, 5, 5}, 0, d,
               "kernel (5, 5) is larger than the padded input (3, 3)");
  expect_error((int64_t[]){1, 1, 5, 5}, (int64_t[]){2, 1, 3, 3}, 0, P(1, 1, 0, 0, 0, 0, 3, 3, 1),
               "kernel (3, 3) with dilation (3, 3) spans (7, 7), larger than the padded input (5, 5)");
  expect_error((int64_t[]){1, 1, 5, 5}, (int64_t[]){2, 1, 3, 3}, 0, P(0, 1, 0, 0, 0, 0, 1, 1, 1),
               "stride must be at least 1, got (0, 1)");
  expect_error((int64_t[]){1, 1, 5, 5}, (int64_t[]){2, 1, 3, 3}, 0, P(1, 1, 0, 0, 0, 0, 1, 0, 1),
               "dilation must be at least 1, got (1, 0)");
  expect_error((int64_t[]){1, 1, 5, 5}, (int64_t[]){2, 1, 3, 3}, 0, P(1, 1, -1, 0, -1, 0, 1, 1, 1),
               "padding must be non-negative, got (-1, 0)");
  expect_error((int64_t[]){1, 1, 5, 5}, (int64_t[]){2, 1, 3, 3}, 0, P(1, 1, 0, 0, 0, 0, 1, 1, 0),
               "groups must be at least 1, got 0");
  expect_error((int64_t[]){1, 1, 5, 5}, (int64_t[]){2, 1, 3, 3}, 3, d,
               "bias must be 1-d with 2 elements (one per output channel), got shape (3)");
  /* dtype and rank */
  int64_t xs[4] = {1, 1, 5, 5}, ws[4] = {2, 1, 3, 3};
  cnn_tensor *xi = cnn_tensor_zeros(CNN_INT64, 4, xs), *w = cnn_tensor_zeros(CNN_FLOAT32, 4, ws);
  cnn_tensor *w3 = cnn_tensor_zeros(CNN_FLOAT32, 3, ws);
  cnn_tensor *x = cnn_tensor_zeros(CNN_FLOAT32, 4, xs);
  cnn_error_clear();
  CHECK(cnn_conv2d_forward(xi, w, NULL, &d) == NULL &&
        strcmp(cnn_error_get(), "weight has dtype float32 but the input has int64") == 0);
  CHECK(cnn_conv2d_forward(x, w3, NULL, &d) == NULL &&
        strcmp(cnn_error_get(), "weight must be 4-d (out, in/groups, kH, kW), got 3-d") == 0);
  cnn_tensor_release(xi), cnn_tensor_release(w), cnn_tensor_release(w3), cnn_tensor_release(x);
}

static bool bits_equal(const cnn_tensor *a, const cnn_tensor *b) {
  return a && b && cnn_tensor_numel(a) == cnn_tensor_numel(b) &&
         memcmp(cnn_tensor_f32(a), cnn_tensor_f32(b), (size_t)cnn_tensor_numel(a) * 4) == 0;
}

/* conv_small.c's forward (plain, ReLU, scale + residual + ReLU, then max-pool + ReLU per image) and
 * input gradient give conv_direct.c's bits (the same taps in the same order; zero rows skipped),
 * on 1 and 2 threads and on one thread as beside a busy program; its weight gradient (summed in its
 * own order: checked against the naive reference in CASES) gives the same bits on 2 threads whether
 * the pool or one thread ran its parts. Inputs with zeros so that the ReLU and the pooling see ties
 * and signed zeros. */
static void test_small_same_bits(void) {
  static const struct {
    int64_t N, C, H, W, O, k, pad;
  } S[] = {{64, 6, 14, 14, 16, 5, 0},  {25, 5, 6, 9, 7, 4, 3},     {36, 16, 10, 10, 6, 5, 4}, {32, 64, 8, 8, 64, 3, 1},
           {16, 32, 16, 16, 32, 3, 1}, {16, 16, 32, 32, 16, 3, 1}, {29, 24, 27, 31, 19, 3, 2}};
  for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
    int64_t xs[4] = {S[i].N, S[i].C, S[i].H, S[i].W}, ws[4] = {S[i].O, S[i].C, S[i].k, S[i].k}, O = S[i].O;
    const int64_t pd = S[i].pad;
    cnn_conv2d_params p = P(1, 1, pd, pd, pd > 0 ? pd - 1 : 0, pd, 1, 1, 1);
    cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
    cnn_tensor *b = check_rand_tensor(&rng, 1, &O), *sc = check_rand_tensor(&rng, 1, &O);
    for (int64_t k = 0; k < cnn_tensor_numel(x); k += 7) cnn_tensor_f32(x)[k] = 0; /* zeros, ties */
    cnn_tensor *y0 = cnn_conv2d_forward(x, w, b, &p);
    CHECK(y0 != NULL);
    if (!y0) continue;
    cnn_tensor *gy = check_rand_tensor(&rng, 4, y0->size), *res = check_rand_tensor(&rng, 4, y0->size);
    cnn_pool2d_params pp = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, false, 0};
    cnn_tensor *want[6] = {NULL}, *got[6] = {NULL}, *gw2 = NULL;
    for (int run = 0; run < 4; run++) { /* direct on 2 threads; small on 1, 2, and 2 forced alone */
      cnn_conv2d_set_small(run > 0);
      cnn_parallel_set_threads(run == 1 ? 1 : 2);
      cnn_parallel_force_alone(run == 3);
      cnn_tensor **out = run == 0 ? want : got;
      out[0] = cnn_conv2d_forward(x, w, b, &p);
      out[1] = cnn_conv2d_forward_relu(x, w, b, &p);
      out[2] = cnn_conv2d_forward_fused(x, w, b, sc, res, true, &p);
      cnn_tensor *yy = NULL, *idx = NULL;
      CHECK(cnn_conv2d_forward_relu_max_pool(x, w, b, &p, &pp, &yy, &out[3], &idx) == 0);
      cnn_tensor_release(yy), cnn_tensor_release(idx);
      CHECK(cnn_conv2d_backward(gy, x, w, xs, ws, &p, &out[4], &out[5], NULL) == 0);
      if (run == 3 && !bits_equal(gw2, got[5])) {
        fprintf(stderr, "small kernels: shape %zu: the weight gradient depends on who ran the parts\n", i);
        failures++;
      }
      if (run == 2) gw2 = got[5], got[5] = NULL;
      if (run > 0) {
        for (int k = 0; k < 6; k++) {
          if (k < 5 && !bits_equal(want[k], got[k])) {
            fprintf(stderr, "small kernels: shape %zu, output %d, run %d: bits differ from the direct kernels\n", i, k,
                    run);
            failures++;
          }
          cnn_tensor_release(got[k]);
          got[k] = NULL;
        }
      }
    }
    cnn_parallel_force_alone(false);
    cnn_conv2d_set_small(true);
    for (int k = 0; k < 6; k++) cnn_tensor_release(want[k]);
    cnn_tensor_release(gw2);
    cnn_tensor_release(y0), cnn_tensor_release(gy), cnn_tensor_release(res);
    cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(b), cnn_tensor_release(sc);
  }
}

/* equal bits, or both NaN (a NaN's payload depends on which operand an instruction propagates) */
static bool same_or_nan(float a, float b) { return memcmp(&a, &b, sizeof a) == 0 || (a != a && b != b); }

/* conv_small_pool.c (conv + bias + ReLU + 2x2 max-pool straight from the lanes, y never stored)
 * against the convolution stored and then pooled: the pooled values (bits; NaN for NaN), each
 * window code against the index the pooling gives (ties: the first cell; NaN: the last NaN; relu's
 * stopped outputs: -1), and the codes' backward against the indices' (bits), on 1 and 2 threads.
 * Inputs and weights of a few integer values, so windows tie exactly, with zeros, a NaN, infinities
 * and -0 in some cases; batches of full and partial lane groups; an odd output row and column left
 * out of every window; shapes it must refuse (ceil_mode's extra window, stride 2, few images). */
static void test_small_pool(void) {
  static const struct {
    int64_t N, C, H, W, O, k, pt, pl, pb, pr;
    int special;                                  /* 1: NaN, inf and -0 in x */
  } S[] = {{64, 1, 28, 28, 6, 5, 2, 2, 2, 2, 0},  /* LeNet's conv1 */
           {64, 6, 14, 14, 16, 5, 0, 0, 0, 0, 0}, /* LeNet's conv2 */
           {29, 6, 14, 14, 16, 5, 0, 0, 0, 0, 1}, /* a partial second group */
           {16, 2, 11, 9, 5, 3, 1, 1, 1, 1, 1},   /* output 11x9: the last row and column pool nowhere */
           {13, 3, 8, 10, 7, 3, 2, 0, 1, 2, 0}};  /* uneven padding, 13 of 16 lanes */
  for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
    int64_t xs[4] = {S[i].N, S[i].C, S[i].H, S[i].W}, ws[4] = {S[i].O, S[i].C, S[i].k, S[i].k}, O = S[i].O;
    cnn_conv2d_params p = P(1, 1, S[i].pt, S[i].pl, S[i].pb, S[i].pr, 1, 1, 1);
    cnn_pool2d_params pp = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, false, 0};
    cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
    cnn_tensor *b = check_rand_tensor(&rng, 1, &O);
    float *xp = cnn_tensor_f32(x), *wp = cnn_tensor_f32(w);
    for (int64_t k = 0; k < cnn_tensor_numel(x); k++) xp[k] = (float)(int)(xp[k] * 2.5f); /* -2..2: ties */
    for (int64_t k = 0; k < cnn_tensor_numel(w); k++) wp[k] = (float)(int)(wp[k] * 2.5f);
    cnn_tensor_f32(b)[0] = 0.0f;
    if (S[i].special) {
      xp[5] = NAN, xp[40] = NAN, xp[41] = NAN, xp[77] = INFINITY, xp[150] = -INFINITY, xp[151] = -0.0f;
      xp[cnn_tensor_numel(x) - 3] = NAN;
    }
    for (int threads = 1; threads <= 2; threads++) {
      cnn_parallel_set_threads(threads);
      cnn_tensor *y = NULL, *want = NULL, *idx = NULL, *got = NULL, *code = NULL;
      CHECK(cnn_conv2d_forward_relu_max_pool(x, w, b, &p, &pp, &y, &want, &idx) == 0);
      CHECK(cnn_conv2d_forward_relu_max_pool(x, w, b, &p, &pp, NULL, &got, &code) == 0);
      if (!want || !got || !code || code->dtype != CNN_UINT8) {
        fprintf(stderr, "small pool: shape %zu: the lanes kernel did not run\n", i);
        failures++;
      } else {
        const int64_t n = cnn_tensor_numel(want), ph = want->size[2], pw = want->size[3], ow = y->size[3];
        int bad = 0;
        for (int64_t k = 0; k < n && bad < 3; k++) {
          const int64_t c = cnn_tensor_u8(code)[k], ii = k / pw % ph, jj = k % pw;
          const int64_t at = c == 4 ? -1 : c > 4 ? -2 : (2 * ii + c / 2) * ow + 2 * jj + c % 2;
          if (!same_or_nan(cnn_tensor_f32(want)[k], cnn_tensor_f32(got)[k]) || at != cnn_tensor_i64(idx)[k]) {
            fprintf(stderr,
                    "small pool: shape %zu, %d threads, output %lld: %g (code %lld) where pooling gave %g (%lld)\n", i,
                    threads, (long long)k, cnn_tensor_f32(got)[k], (long long)c, cnn_tensor_f32(want)[k],
                    (long long)cnn_tensor_i64(idx)[k]);
            failures++, bad++;
          }
        }
        /* the backward from the codes: the pooling's from the indices, bit for bit (-0s included) */
        cnn_tensor *g = check_rand_tensor(&rng, 4, want->size);
        for (int64_t k = 0; k < n; k += 5) cnn_tensor_f32(g)[k] = -0.0f;
        cnn_tensor *gy0 = cnn_pool_max2d_backward(g, idx, y->size[2], y->size[3]);
        cnn_tensor *gy1 = cnn_conv2d_unpool_codes(g, code, y->size[2], y->size[3]);
        if (!bits_equal(gy0, gy1)) {
          fprintf(stderr, "small pool: shape %zu, %d threads: the codes' backward differs from the pooling's\n", i,
                  threads);
          failures++;
        }
        /* the whole backward in the lanes (gy never stored): the separate backward's bits, with and
         * without the input gradient (LeNet's conv1 has none), and not at all with an inf weight */
        cnn_tensor *ref[3] = {NULL}, *out[3] = {NULL};
        CHECK(cnn_conv2d_backward(gy1, x, w, xs, ws, &p, &ref[0], &ref[1], &ref[2]) == 0);
        for (int with_gx = 0; with_gx < 2; with_gx++) {
          int rc = cnn_conv2d_relu_max_pool_backward_codes(g, code, x, w, xs, ws, &p, with_gx ? &out[0] : NULL, &out[1],
                                                           &out[2]);
          /* with gx: where the separate input gradient is conv_small.c's (LeNet's conv2; not conv1's
           * 28x28 planes nor fewer than 64 taps, which conv_direct.c takes) */
          const cnn_conv2d_shape cs = {S[i].N, S[i].C, S[i].H, S[i].W, S[i].O, S[i].k, S[i].k};
          CHECK(rc == (with_gx && !cnn_conv2d_small_grad(&cs, &p, true)));
          CHECK(!(i == 1 || i == 2) || rc == 0);
          for (int k = with_gx ? 0 : 1; rc == 0 && k < 3; k++)
            if (!bits_equal(ref[k], out[k])) {
              fprintf(stderr, "small pool: shape %zu, %d threads: fused backward output %d differs (gx %d)\n", i,
                      threads, k, with_gx);
              failures++;
            }
          for (int k = 0; k < 3; k++) cnn_tensor_release(out[k]), out[k] = NULL;
        }
        const float w0 = cnn_tensor_f32(w)[3];
        cnn_tensor_f32(w)[3] = INFINITY; /* the separate input gradient takes im2col: so must this */
        CHECK(cnn_conv2d_relu_max_pool_backward_codes(g, code, x, w, xs, ws, &p, &out[0], &out[1], NULL) == 1);
        CHECK(out[0] == NULL && out[1] == NULL);
        cnn_tensor_f32(w)[3] = w0;
        for (int k = 0; k < 3; k++) cnn_tensor_release(ref[k]);
        cnn_tensor_release(g), cnn_tensor_release(gy0), cnn_tensor_release(gy1);
      }
      cnn_tensor_release(y), cnn_tensor_release(want), cnn_tensor_release(idx);
      cnn_tensor_release(got), cnn_tensor_release(code);
    }
    /* what it must refuse falls back to the stored convolution (int64 indices), the same values */
    cnn_pool2d_params ceil_pp = pp;
    ceil_pp.ceil_mode = true;
    cnn_conv2d_params s2 = p;
    s2.stride[0] = 2;
    const struct {
      const cnn_conv2d_params *cp;
      const cnn_pool2d_params *pq;
    } R[] = {{&p, &ceil_pp}, {&s2, &pp}};
    for (size_t r = 0; r < 2; r++) {
      cnn_tensor *y = NULL, *want = NULL, *idx = NULL, *got = NULL, *code = NULL;
      CHECK(cnn_conv2d_forward_relu_max_pool(x, w, b, R[r].cp, R[r].pq, &y, &want, &idx) == 0);
      CHECK(cnn_conv2d_forward_relu_max_pool(x, w, b, R[r].cp, R[r].pq, NULL, &got, &code) == 0);
      bool ceil_same = r == 0 && 2 * (want ? want->size[2] : 0) <= (y ? y->size[2] : 0) &&
                       2 * (want ? want->size[3] : 0) <= (y ? y->size[3] : 0); /* even sizes: no extra window */
      CHECK(code != NULL && (code->dtype == CNN_INT64 || ceil_same));
      if (code && code->dtype == CNN_INT64)
        CHECK(bits_equal(want, got) &&
              memcmp(cnn_tensor_i64(idx), cnn_tensor_i64(code), (size_t)cnn_tensor_numel(idx) * 8) == 0);
      cnn_tensor_release(y), cnn_tensor_release(want), cnn_tensor_release(idx);
      cnn_tensor_release(got), cnn_tensor_release(code);
    }
    cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(b);
  }
  cnn_parallel_set_threads(2);
}

/* The weight gradients' per-thread partials: a part's first group or slab sets its partial (no
 * zeroing pass), its lanes are summed in place, and parts past the last group or slab (more threads
 * than those) add zeros. On 1, 3 and 5 threads, twice each (the second run finds the workspaces
 * the first left), gw must match im2col's up to the summation order: conv_small.c's kernels, the
 * fused pooling backward (29 images: two groups), and conv_direct.c's with partials of vectors
 * and, past 8 MB of those, of floats (3 images: 5 threads leave parts empty). */
static void test_weight_grad_partials(void) {
  static const struct {
    int64_t N, C, H, O, k, pad;
    bool pool;
  } S[] = {{29, 16, 16, 16, 3, 1, false},
           {29, 6, 14, 16, 5, 0, true},
           {3, 16, 40, 16, 3, 1, false},
           {3, 64, 6, 256, 3, 1, false}};
  for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
    int64_t xs[4] = {S[i].N, S[i].C, S[i].H, S[i].H}, ws[4] = {S[i].O, S[i].C, S[i].k, S[i].k};
    const int64_t pd = S[i].pad, oh = S[i].H + 2 * pd - S[i].k + 1;
    cnn_conv2d_params p = P(1, 1, pd, pd, pd, pd, 1, 1, 1);
    cnn_pool2d_params pp = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, false, 0};
    cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
    cnn_tensor *pooled = NULL, *code = NULL, *g = NULL, *gy = NULL, *want = NULL;
    if (S[i].pool) {
      CHECK(cnn_conv2d_forward_relu_max_pool(x, w, NULL, &p, &pp, NULL, &pooled, &code) == 0);
      g = pooled ? check_rand_tensor(&rng, 4, pooled->size) : NULL;
      gy = g && code ? cnn_conv2d_unpool_codes(g, code, oh, oh) : NULL;
    } else {
      const int64_t ys[4] = {S[i].N, S[i].O, oh, oh};
      gy = check_rand_tensor(&rng, 4, ys);
    }
    cnn_parallel_set_threads(1);
    cnn_conv2d_set_algorithm(CNN_CONV2D_IM2COL);
    CHECK(gy && cnn_conv2d_backward(gy, x, w, xs, ws, &p, NULL, &want, NULL) == 0);
    cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
    const int threads[] = {1, 3, 5};
    for (int r = 0; want && r < 3; r++) {
      cnn_parallel_set_threads(threads[r]);
      for (int rep = 0; rep < 2; rep++) {
        cnn_tensor *gw = NULL;
        const int rc = S[i].pool ? cnn_conv2d_relu_max_pool_backward_codes(g, code, x, w, xs, ws, &p, NULL, &gw, NULL)
                                 : cnn_conv2d_backward(gy, x, w, xs, ws, &p, NULL, &gw, NULL);
        CHECK(rc == 0 && gw != NULL);
        const int64_t n = cnn_tensor_numel(want);
        int bad = 0;
        for (int64_t k = 0; gw && k < n && bad < 3; k++) {
          const float a = cnn_tensor_f32(want)[k], b = cnn_tensor_f32(gw)[k];
          if (!(fabsf(a - b) <= 1e-4f * (1.0f + fabsf(a)))) {
            fprintf(stderr, "weight-gradient partials: shape %zu, %d threads, weight %lld: %g where im2col gave %g\n",
                    i, threads[r], (long long)k, b, a);
            failures++, bad++;
          }
        }
        cnn_tensor_release(gw);
      }
    }
    cnn_parallel_set_threads(2);
    cnn_tensor_release(want), cnn_tensor_release(gy), cnn_tensor_release(g);
    cnn_tensor_release(pooled), cnn_tensor_release(code);
    cnn_tensor_release(x), cnn_tensor_release(w);
  }
}

/* The shapes of CASES' rows-in-bands entries take conv_small.c's weight gradient in row bands (so
 * those cases test it); their forward and input gradient stay on conv_direct.c. An inf and a NaN
 * in x at band edges (x's row 7 is the last of the first band and read by the second; the NaN in the
 * last row of the last band) reach exactly the outputs and weight-gradient taps whose windows meet
 * them, on 1 and 2 threads; gx (not reading x) stays finite and close to im2col's. */
static void test_small_rowband(void) {
  static const struct {
    int64_t N, C, H, W, O, kh, kw, pt, pl, pb, pr;
  } S[] = {{16, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1}, {29, 24, 27, 35, 19, 3, 4, 1, 2, 2, 1}};
  for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
    cnn_sconv d;
    CHECK(!cnn_sconv_plan_forward(&d, S[i].N, S[i].C, S[i].H, S[i].W, S[i].O, S[i].kh, S[i].kw, S[i].pt, S[i].pl,
                                  S[i].pb, S[i].pr));
    CHECK(cnn_sconv_plan_weight_grad(&d, S[i].N, S[i].C, S[i].H, S[i].W, S[i].O, S[i].kh, S[i].kw, S[i].pt, S[i].pl,
                                     S[i].pb, S[i].pr) &&
          d.rowband && d.band < d.oh);
  }
}

/* An inf and a NaN in x of ResNet-20's 32x32 stage, stride S (1: conv_small.c's weight gradient in
 * row bands, conv_direct.c's forward; 2: conv_small.c's strided forward and weight gradient in row
 * bands, 16 -> 32 filters) reach exactly the outputs and weight-gradient taps whose windows meet
 * them, on 1 and 2 threads; gx (not reading x) stays finite and close to im2col's. */
static void small_inf_case(int64_t S) {
  const int64_t N = 16, C = 16, H = 32, W = 32, O = 16 * S, k = 3, oh = H / S, ow = W / S;
  int64_t xs[4] = {N, C, H, W}, ws[4] = {O, C, k, k};
  cnn_conv2d_params p = P(S, S, 1, 1, 1, 1, 1, 1, 1);
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
  float *xf = cnn_tensor_f32(x);
  const int64_t bad[2][4] = {{3, 5, 7, 0}, {15, 0, 31, 31}}; /* (n, c, row, col) */
  xf[((bad[0][0] * C + bad[0][1]) * H + bad[0][2]) * W + bad[0][3]] = INFINITY;
  xf[((bad[1][0] * C + bad[1][1]) * H + bad[1][2]) * W + bad[1][3]] = NAN;
  for (int t = 1; t <= 2; t++) {
    cnn_parallel_set_threads(t);
    cnn_tensor *y = cnn_conv2d_forward(x, w, NULL, &p);
    CHECK(y != NULL);
    if (!y) break;
    cnn_tensor *gy = check_rand_tensor(&rng, 4, y->size), *gx = NULL, *gw = NULL, *gx0 = NULL;
    for (int64_t j = 0; j < cnn_tensor_numel(gy); j++)
      if (cnn_tensor_f32(gy)[j] == 0) cnn_tensor_f32(gy)[j] = 0.5f;
    CHECK(cnn_conv2d_backward(gy, x, w, xs, ws, &p, &gx, &gw, NULL) == 0);
    cnn_conv2d_set_algorithm(CNN_CONV2D_IM2COL);
    CHECK(cnn_conv2d_backward(gy, x, w, xs, ws, &p, &gx0, NULL, NULL) == 0);
    cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
    if (!gx || !gw || !gx0) break;
    /* which outputs and taps meet a bad value: S (oy, ox) = (row + 1 - ki, col + 1 - kj) */
    static bool ybad[16 * 16 * 32 * 32], wbad[32 * 16 * 9];
    memset(ybad, 0, sizeof ybad), memset(wbad, 0, sizeof wbad);
    for (int b = 0; b < 2; b++)
      for (int64_t ki = 0; ki < k; ki++)
        for (int64_t kj = 0; kj < k; kj++) {
          const int64_t ty = bad[b][2] + 1 - ki, tx = bad[b][3] + 1 - kj, oy = ty / S, ox = tx / S;
          if (ty < 0 || tx < 0 || ty % S || tx % S || oy >= oh || ox >= ow) continue;
          for (int64_t o = 0; o < O; o++) {
            ybad[((bad[b][0] * O + o) * oh + oy) * ow + ox] = true;
            wbad[(o * C + bad[b][1]) * k * k + ki * k + kj] = true;
          }
        }
    int wrong = 0;
    for (int64_t j = 0; j < N * O * oh * ow; j++) wrong += ybad[j] == (bool)isfinite(cnn_tensor_f32(y)[j]);
    for (int64_t j = 0; j < O * C * k * k; j++) wrong += wbad[j] == (bool)isfinite(cnn_tensor_f32(gw)[j]);
    for (int64_t j = 0; j < N * C * H * W; j++)
      wrong += !isfinite(cnn_tensor_f32(gx)[j]) ||
               !check_close_rel(cnn_tensor_f32(gx)[j], cnn_tensor_f32(gx0)[j], 1e-5);
    CHECK(wrong == 0);
    if (wrong) fprintf(stderr, "small kernels, stride %d, inf/NaN in x, %d threads: %d wrong\n", (int)S, t, wrong);
    cnn_tensor_release(y), cnn_tensor_release(gy), cnn_tensor_release(gx), cnn_tensor_release(gw);
    cnn_tensor_release(gx0);
  }
  cnn_tensor_release(x), cnn_tensor_release(w);
}

/* ResNet-20's downsampling layers (stride 2: 16 -> 32 on 32x32, 32 -> 64 on 16x16) and CASES'
 * stride-2 lanes entries plan on conv_small.c's strided forward, weight gradient (the first in row
 * bands) and input gradient, so those cases test them; then the inf/NaN cases at strides 1 and 2. */
static void test_small_strided(void) {
  static const struct {
    int64_t N, C, H, W, O, kh, kw, pt, pl, pb, pr;
    bool rowband;
  } S[] = {{16, 16, 32, 32, 32, 3, 3, 1, 1, 1, 1, true},  {128, 32, 16, 16, 64, 3, 3, 1, 1, 1, 1, false},
           {29, 24, 15, 13, 19, 3, 3, 1, 0, 0, 1, false}, {29, 8, 29, 29, 12, 4, 4, 1, 1, 2, 2, false},
           {13, 16, 17, 15, 8, 3, 3, 0, 0, 0, 0, false},  {16, 8, 9, 10, 24, 3, 3, 2, 2, 2, 2, false},
           {13, 20, 12, 11, 10, 2, 2, 1, 0, 0, 1, false}, {29, 4, 21, 19, 7, 5, 5, 2, 1, 1, 2, false}};
  for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
    cnn_sconv d;
    CHECK(cnn_sconv_plan_forward_strided(&d, S[i].N, S[i].C, S[i].H, S[i].W, S[i].O, S[i].kh, S[i].kw, S[i].pt, S[i].pl,
                                         S[i].pb, S[i].pr, 2));
    CHECK(cnn_sconv_plan_weight_grad_strided(&d, S[i].N, S[i].C, S[i].H, S[i].W, S[i].O, S[i].kh, S[i].kw, S[i].pt,
                                             S[i].pl, S[i].pb, S[i].pr, 2) &&
          d.rowband == S[i].rowband && (!d.rowband || d.band < d.oh));
    CHECK(cnn_sconv_plan_input_grad_strided(&d, S[i].N, S[i].C, S[i].H, S[i].W, S[i].O, S[i].kh, S[i].kw, S[i].pt,
                                            S[i].pl, S[i].pb, S[i].pr, 2));
  }
  small_inf_case(1);
  small_inf_case(2);
}

/* The batched path (wide layers on small planes, see conv.c) in chunks of 2 images (the last of
 * 1): against the naive reference, the forward (plain, ReLU, bias, scale + residual + ReLU) with the
 * bits of the per-image bands, the weight gradient with the same bits on 1 and 2 threads and on one
 * thread as beside a busy program, the input gradient with the bands' bits (the stride-1 case through
 * col2im_plane, the stride-2 one through col2im). */
static void test_batched(void) {
  static const ccase B[] = {
      {"batched in chunks of 2", 5, 128, 7, 7, 33, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
      {"batched in chunks of 2, stride 2", 5, 120, 8, 9, 13, 3, 3, {{2, 2}, {1, 1}, {0, 1}, {1, 1}, 1}, 0},
  };
  for (size_t i = 0; i < sizeof B / sizeof B[0]; i++) {
    const ccase *c = &B[i];
    const int64_t oh = (c->H + c->p.pad_lo[0] + c->p.pad_hi[0] - c->kh) / c->p.stride[0] + 1;
    const int64_t ow = (c->W + c->p.pad_lo[1] + c->p.pad_hi[1] - c->kw) / c->p.stride[1] + 1;
    cnn_conv2d_set_batch_floats((size_t)(2 * c->C * c->kh * c->kw * oh * ow + 1));
    const cnn_conv2d_shape shp0 = {c->N, c->C, c->H, c->W, c->O, c->kh, c->kw};
    CHECK(!cnn_conv2d_takes_batched(&shp0, &c->p)); /* small filters keep the bands */
    cnn_conv2d_set_batch_min_filter((size_t)(c->O * c->C * c->kh * c->kw));
    const cnn_conv2d_shape shp = {c->N, c->C, c->H, c->W, c->O, c->kh, c->kw};
    if (cnn_gemm_avx512_available()) CHECK(cnn_conv2d_takes_batched(&shp, &c->p));
    for (int t = 1; t <= 2; t++) {
      cnn_parallel_set_threads(t);
      run_case(c, 0);
    }
    int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->O, c->C, c->kh, c->kw}, O = c->O;
    cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
    cnn_tensor *b = check_rand_tensor(&rng, 1, &O), *sc = check_rand_tensor(&rng, 1, &O);
    for (int64_t k = 0; k < cnn_tensor_numel(x); k += 5) cnn_tensor_f32(x)[k] = 0;
    int64_t ys[4] = {c->N, c->O, oh, ow};
    cnn_tensor *res = check_rand_tensor(&rng, 4, ys), *gy = check_rand_tensor(&rng, 4, ys);
    cnn_tensor *out[2][4] = {{NULL}}, *gw[3] = {NULL};
    for (int run = 0; run < 2; run++) { /* batched, then per-image bands */
      cnn_conv2d_set_batched(run == 0);
      cnn_conv2d_set_algorithm(run == 0 ? CNN_CONV2D_AUTO : CNN_CONV2D_IM2COL);
      cnn_parallel_set_threads(2);
      out[run][0] = cnn_conv2d_forward(x, w, NULL, &c->p);
      out[run][1] = cnn_conv2d_forward_relu(x, w, b, &c->p);
      out[run][2] = cnn_conv2d_forward_fused(x, w, b, sc, res, true, &c->p);
      out[run][3] = cnn_conv2d_forward_fused(x, w, NULL, sc, NULL, false, &c->p);
    }
    cnn_conv2d_set_batched(true);
    cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
    for (int k = 0; k < 4; k++) {
      if (!bits_equal(out[0][k], out[1][k])) {
        fprintf(stderr, "%s: forward %d: bits differ from the per-image bands\n", c->name, k);
        failures++;
      }
      cnn_tensor_release(out[0][k]), cnn_tensor_release(out[1][k]);
    }
    for (int run = 0; run < 3; run++) { /* 1 thread, 2, 2 forced alone */
      cnn_parallel_set_threads(run == 0 ? 1 : 2);
      cnn_parallel_force_alone(run == 2);
      CHECK(cnn_conv2d_backward(gy, x, NULL, xs, ws, &c->p, NULL, &gw[run], NULL) == 0);
    }
    cnn_parallel_force_alone(false);
    if (!bits_equal(gw[0], gw[1]) || !bits_equal(gw[0], gw[2])) {
      fprintf(stderr, "%s: the weight gradient depends on the threads\n", c->name);
      failures++;
    }
    for (int k = 0; k < 3; k++) cnn_tensor_release(gw[k]);
    /* the input gradient: batched on 1 and 2 threads, then per-image bands, all the same bits */
    cnn_tensor *gx[3] = {NULL};
    for (int run = 0; run < 3; run++) {
      cnn_conv2d_set_batched(run < 2);
      cnn_conv2d_set_algorithm(run < 2 ? CNN_CONV2D_AUTO : CNN_CONV2D_IM2COL);
      cnn_parallel_set_threads(run == 0 ? 1 : 2);
      CHECK(cnn_conv2d_backward(gy, NULL, w, xs, ws, &c->p, &gx[run], NULL, NULL) == 0);
    }
    cnn_conv2d_set_batched(true);
    cnn_conv2d_set_algorithm(CNN_CONV2D_AUTO);
    if (!bits_equal(gx[0], gx[1]) || !bits_equal(gx[0], gx[2])) {
      fprintf(stderr, "%s: input gradient: bits differ between batched and per-image bands\n", c->name);
      failures++;
    }
    for (int k = 0; k < 3; k++) cnn_tensor_release(gx[k]);
    cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(b), cnn_tensor_release(sc);
    cnn_tensor_release(res), cnn_tensor_release(gy);
  }
  cnn_conv2d_set_batch_floats(0);
  cnn_conv2d_set_batch_min_filter(0);
}

/* conv_winograd.c: F(2x2, 3x3) for 3x3 stride-1 layers padded by 1 from 64 channels on planes of
 * 12x12 and more. Against the naive reference (as every case) on odd and even planes, units of tile
 * rows (two bands, the last short) and of several whole images (the last with fewer), 1 and 2
 * threads; the epilogues against the direct kernels'; the weight gradient's bits the same on 2
 * threads whoever ran its parts; and an inf or a NaN in x, gy or w, or finite values big enough to
 * overflow a transform or a product, giving the direct kernels' bits (the transforms would smear an
 * inf over its tile's neighbours). */
static bool close_to(const cnn_tensor *a, const cnn_tensor *b, double rel) {
  if (!a || !b || cnn_tensor_numel(a) != cnn_tensor_numel(b)) return false;
  const float *p = cnn_tensor_f32(a), *q = cnn_tensor_f32(b);
  double m = 0;
  for (int64_t i = 0; i < cnn_tensor_numel(a); i++) m = fmax(m, fabs(q[i]));
  for (int64_t i = 0; i < cnn_tensor_numel(a); i++)
    if (!(fabs(p[i] - q[i]) <= rel * m)) return false;
  return true;
}

static bool check_all_finite(const cnn_tensor *t) {
  if (!t) return false;
  const float *p = cnn_tensor_f32(t);
  for (int64_t i = 0; i < cnn_tensor_numel(t); i++)
    if (!isfinite(p[i])) return false;
  return true;
}

static void test_winograd(void) {
  static const ccase W[] = {
      {"winograd 13x15, 65 filters", 5, 64, 13, 15, 65, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
      {"winograd 40x40 in two bands", 2, 64, 40, 40, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 0},
      {"winograd 12x12, units of 4 images", 29, 64, 12, 12, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}, 1},
  };
  const bool avx512 = cnn_gemm_avx512_available();
  for (size_t i = 0; i < sizeof W / sizeof W[0]; i++) {
    const ccase *c = &W[i];
    const cnn_conv2d_shape shp = {c->N, c->C, c->H, c->W, c->O, c->kh, c->kw};
    for (int t = 1; t <= 2; t++) {
      cnn_parallel_set_threads(t);
      if (avx512) CHECK(cnn_conv2d_takes_winograd(&shp, &c->p));
      run_case(c, 0);
    }
  }
  /* 64-255 tiles (3 images of 16x16: 192): the forward and input gradient stay on the direct
   * kernels, the weight gradient takes Winograd, also when both gradients are asked for at once */
  {
    const ccase mid = {"winograd weight gradient only, 192 tiles", 3, 64, 16, 16, 64, 3, 3,
                       {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},        1};
    const cnn_conv2d_shape ms = {mid.N, mid.C, mid.H, mid.W, mid.O, 3, 3};
    CHECK(!cnn_conv2d_takes_winograd(&ms, &mid.p));
    for (int t = 1; t <= 2; t++) {
      cnn_parallel_set_threads(t);
      run_case(&mid, 0);
    }
    int64_t xs[4] = {mid.N, mid.C, mid.H, mid.W}, ws[4] = {mid.O, mid.C, 3, 3}, ys[4] = {mid.N, mid.O, mid.H, mid.W};
    cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
    cnn_tensor *gy = check_rand_tensor(&rng, 4, ys);
    cnn_tensor *gx[2] = {NULL}, *gw[2] = {NULL};
    for (int run = 0; run < 2; run++) {
      cnn_conv2d_set_winograd(run == 0);
      CHECK(cnn_conv2d_backward(gy, x, w, xs, ws, &mid.p, &gx[run], &gw[run], NULL) == 0);
    }
    cnn_conv2d_set_winograd(true);
    CHECK(bits_equal(gx[0], gx[1]));              /* the direct kernels' input gradient both times */
    if (avx512) CHECK(!bits_equal(gw[0], gw[1])); /* Winograd's rounding, not the direct sum's */
    for (int run = 0; run < 2; run++) cnn_tensor_release(gx[run]), cnn_tensor_release(gw[run]);
    cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(gy);
  }
  /* padding other than 1, stride 2, 5x5, fewer than 64 channels, small planes, fewer than 256 tiles
   * in the batch: not taken */
  const cnn_conv2d_shape s64 = {8, 64, 16, 16, 64, 3, 3}, s32 = {8, 32, 16, 16, 64, 3, 3},
                         s8 = {32, 64, 8, 8, 64, 3, 3};
  const cnn_conv2d_shape s5 = {8, 64, 16, 16, 64, 5, 5}, few = {1, 64, 30, 30, 64, 3, 3}; /* 225 tiles */
  CHECK(!cnn_conv2d_takes_winograd(&s64, &(cnn_conv2d_params){{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1}));
  CHECK(!cnn_conv2d_takes_winograd(&s64, &(cnn_conv2d_params){{2, 2}, {1, 1}, {1, 1}, {1, 1}, 1}));
  CHECK(!cnn_conv2d_takes_winograd(&s5, &(cnn_conv2d_params){{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}));
  CHECK(!cnn_conv2d_takes_winograd(&s32, &W[0].p));
  CHECK(!cnn_conv2d_takes_winograd(&s8, &W[0].p));
  CHECK(!cnn_conv2d_takes_winograd(&few, &W[0].p));
  if (avx512) CHECK(cnn_conv2d_takes_winograd(&s64, &W[0].p));
  cnn_conv2d_set_winograd(false);
  CHECK(!cnn_conv2d_takes_winograd(&s64, &W[0].p));
  cnn_conv2d_set_winograd(true);

  const ccase *c = &W[0];
  int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->O, c->C, 3, 3}, O = c->O, ys[4] = {c->N, c->O, c->H, c->W};
  cnn_tensor *x = check_rand_tensor(&rng, 4, xs), *w = check_rand_tensor(&rng, 4, ws);
  cnn_tensor *b = check_rand_tensor(&rng, 1, &O), *sc = check_rand_tensor(&rng, 1, &O);
  cnn_tensor *res = check_rand_tensor(&rng, 4, ys), *gy = check_rand_tensor(&rng, 4, ys);
  /* the epilogues: Winograd (run 0) against the direct kernels (run 1) */
  cnn_tensor *out[2][3] = {{NULL}};
  for (int run = 0; run < 2; run++) {
    cnn_conv2d_set_winograd(run == 0);
    out[run][0] = cnn_conv2d_forward_relu(x, w, b, &c->p);
    out[run][1] = cnn_conv2d_forward_fused(x, w, b, sc, res, true, &c->p);
    out[run][2] = cnn_conv2d_forward_fused(x, w, NULL, sc, res, false, &c->p);
  }
  cnn_conv2d_set_winograd(true);
  for (int k = 0; k < 3; k++) {
    if (!close_to(out[0][k], out[1][k], 1e-5)) {
      fprintf(stderr, "winograd: epilogue %d differs from the direct kernels'\n", k);
      failures++;
    }
    cnn_tensor_release(out[0][k]), cnn_tensor_release(out[1][k]);
  }
  /* the weight gradient on 2 threads, by the pool and by one thread alone: the same bits */
  cnn_tensor *gw[2] = {NULL};
  cnn_parallel_set_threads(2);
  for (int run = 0; run < 2; run++) {
    cnn_parallel_force_alone(run == 1);
    CHECK(cnn_conv2d_backward(gy, x, NULL, xs, ws, &c->p, NULL, &gw[run], NULL) == 0);
  }
  cnn_parallel_force_alone(false);
  CHECK(bits_equal(gw[0], gw[1]));
  cnn_tensor_release(gw[0]), cnn_tensor_release(gw[1]);
  /* an inf in x, a NaN in gy, an inf in w: the direct kernels' bits, inf and NaN where they have them */
  cnn_tensor_f32(x)[3 * c->W + 4] = INFINITY;
  cnn_tensor_f32(gy)[c->H * c->W + 2 * c->W + 7] = NAN;
  for (int k = 0; k < 2; k++) {
    if (k == 1) cnn_tensor_f32(w)[5] = -INFINITY;
    cnn_tensor *y[2] = {NULL}, *gx[2] = {NULL}, *gw2[2] = {NULL};
    for (int run = 0; run < 2; run++) {
      cnn_conv2d_set_winograd(run == 0);
      y[run] = cnn_conv2d_forward(x, w, b, &c->p);
      CHECK(cnn_conv2d_backward(gy, x, w, xs, ws, &c->p, &gx[run], &gw2[run], NULL) == 0);
    }
    cnn_conv2d_set_winograd(true);
    if (!bits_equal(y[0], y[1]) || !bits_equal(gx[0], gx[1]) || !bits_equal(gw2[0], gw2[1])) {
      fprintf(stderr, "winograd: with an inf or a NaN (%d) the bits differ from the direct kernels'\n", k);
      failures++;
    }
    for (int run = 0; run < 2; run++)
      cnn_tensor_release(y[run]), cnn_tensor_release(gx[run]), cnn_tensor_release(gw2[run]);
  }
  /* huge finite values (3e38 twice in w, whose transform's sums overflow; 1e38 in x, which
   * overflows the weight gradient's products with gy's sums): the direct sums stay finite, so must these (from
   * the direct kernels where Winograd overflowed, else its own rounding) */
  cnn_tensor *x2 = check_rand_tensor(&rng, 4, xs), *w2 = check_rand_tensor(&rng, 4, ws);
  cnn_tensor *gy2 = check_rand_tensor(&rng, 4, ys), *gy3 = check_rand_tensor(&rng, 4, ys);
  for (int64_t k = 0; k < cnn_tensor_numel(x2); k++) cnn_tensor_f32(x2)[k] *= 0.01f;
  for (int64_t k = 0; k < cnn_tensor_numel(gy2); k++) cnn_tensor_f32(gy2)[k] *= 0.01f;
  for (int k = 0; k < 2; k++) {
    if (k == 0) cnn_tensor_f32(w2)[0] = 3e38f, cnn_tensor_f32(w2)[3] = 3e38f;
    else cnn_tensor_f32(w2)[0] = 0.5f, cnn_tensor_f32(w2)[3] = 0.5f, cnn_tensor_f32(x2)[2 * c->W + 5] = 1e38f;
    cnn_tensor *got[2][3] = {{NULL}};
    for (int run = 0; run < 2; run++) {
      cnn_conv2d_set_winograd(run == 0);
      got[run][0] = cnn_conv2d_forward(x2, w2, NULL, &c->p);
      CHECK(cnn_conv2d_backward(k == 0 ? gy2 : gy3, x2, w2, xs, ws, &c->p, &got[run][1], &got[run][2], NULL) == 0);
    }
    cnn_conv2d_set_winograd(true);
    for (int t = 0; t < 3; t++) {
      if (!check_all_finite(got[1][t]) || !check_all_finite(got[0][t]) || !close_to(got[0][t], got[1][t], 1e-5)) {
        fprintf(stderr, "winograd: with huge values (%d), result %d is not finite or not the direct kernels'\n", k, t);
        failures++;
      }
      cnn_tensor_release(got[0][t]), cnn_tensor_release(got[1][t]);
    }
  }
  cnn_tensor_release(x2), cnn_tensor_release(w2), cnn_tensor_release(gy2), cnn_tensor_release(gy3);
  cnn_tensor_release(x), cnn_tensor_release(w), cnn_tensor_release(b), cnn_tensor_release(sc);
  cnn_tensor_release(res), cnn_tensor_release(gy);
}

int main(void) {
  test_cases();
  test_batched();
  test_winograd();
  test_small_same_bits();
  test_small_pool();
  test_weight_grad_partials();
  test_small_rowband();
  test_small_strided();
  test_deterministic();
  test_backward_together();
  test_weight_grad_inf();
  test_workspace();
  test_empty_batch();
  test_errors();
  return check_summary("test_conv");
}
