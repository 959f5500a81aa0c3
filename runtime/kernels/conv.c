/* 2-d convolution kernels (see kernels/conv.h). im2col runs on a band of output rows at a time
 * into the thread's column buffer, sized to stay in L2, so the GEMM that follows reads it from
 * cache. Work units (see "work units" below) run on the runtime's threads (parallel.h), each
 * calling cnn_gemm, which is serial inside a parallel loop. Each call takes its per-thread scratch from the
 * runtime allocator, whose size-class cache hands the same blocks back to the next step. */
#include "kernels/conv.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/error.h"
#include "conv_direct.h"
#include "conv_small.h"
#include "conv_winograd.h"
#include "core/alloc.h"
#include "core/gemm.h"
#include "core/parallel.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* Target size of one column band (floats): 512 KiB, half a Zen 5 L2. Smaller bands keep the band
 * in cache but narrow the GEMM (16 x 448 x 144 runs at 53 GFLOP/s against 70 for 16 x 1024 x 144);
 * 128K floats measured best from 32K to whole images on ResNet and AlexNet layers. A band is at
 * least one output row. */
#define BAND_FLOATS (128 * 1024)

static cnn_conv2d_algorithm algorithm = CNN_CONV2D_AUTO;
static size_t direct_limit = CNN_DCONV_MAX_SCRATCH; /* floats of a direct kernel's per-thread workspace */

void cnn_conv2d_set_algorithm(cnn_conv2d_algorithm a) { algorithm = a; }
cnn_conv2d_algorithm cnn_conv2d_get_algorithm(void) { return algorithm; }
void cnn_conv2d_set_direct_limit(size_t floats) { direct_limit = floats ? floats : CNN_DCONV_MAX_SCRATCH; }

/* conv_small.c's kernels for the shapes they take: 1 on, 0 off, -1 until the first call reads
 * CNN_CONV_SMALL (0 turns them off, for A/B measurements) */
static int small_on = -1;
void cnn_conv2d_set_small(bool on) { small_on = on; }
static bool small_enabled(void) {
  if (small_on < 0) {
    const char *e = getenv("CNN_CONV_SMALL");
    small_on = !(e && strcmp(e, "0") == 0);
  }
  return small_on;
}

cnn_conv2d_params cnn_conv2d_default_params(void) {
  cnn_conv2d_params p = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
  return p;
}

/* ---- geometry ---- */

typedef struct geom {
  int64_t N, C, H, W, O, kh, kw, oh, ow;
  int64_t G, Cg, Og;
  int64_t K;                      /* Cg * kh * kw: rows of a column matrix */
  int64_t L;                      /* oh * ow: columns */
  int64_t sh, sw, ph, pw, dh, dw; /* ph, pw: leading padding */
  int64_t Hp, Wp;                 /* extent of the zero-padded input the windows read: (oh-1)*s + (k-1)*d + 1 */
  int64_t band;                   /* output rows per column band */
  int direct;                     /* 1x1, stride 1, unpadded: an image is its own column matrix */
  int rows;                       /* input gradient through the transposed column matrix (see col2im_rows) */
} geom;

static void geom_fill(geom *g, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                      const cnn_conv2d_params *p) {
  g->N = N, g->C = C, g->H = H, g->W = W, g->O = O, g->kh = kh, g->kw = kw;
  g->sh = p->stride[0], g->sw = p->stride[1], g->ph = p->pad_lo[0], g->pw = p->pad_lo[1];
  g->dh = p->dilation[0], g->dw = p->dilation[1];
  g->oh = (H + p->pad_lo[0] + p->pad_hi[0] - g->dh * (kh - 1) - 1) / g->sh + 1;
  g->ow = (W + p->pad_lo[1] + p->pad_hi[1] - g->dw * (kw - 1) - 1) / g->sw + 1;
  g->G = p->groups, g->Cg = C / p->groups, g->Og = O / p->groups;
  g->K = g->Cg * kh * kw;
  g->L = g->oh * g->ow;
  g->Hp = (g->oh - 1) * g->sh + (kh - 1) * g->dh + 1;
  g->Wp = (g->ow - 1) * g->sw + (kw - 1) * g->dw + 1;
  g->direct = kh == 1 && kw == 1 && g->sh == 1 && g->sw == 1 && p->pad_lo[0] == 0 && p->pad_lo[1] == 0 &&
              p->pad_hi[0] == 0 && p->pad_hi[1] == 0;
  /* wide strided kernels (AlexNet's 11x11/4): adding kw neighbouring columns per row beats kw
   * scatters at stride sw (gx 1.5x faster there, 5x5/2 1.4x); at 3x3/2 the two measure the same.
   * The transposed im2col for forward and gw measured slower (11x11/4: 47 ms against 41). */
  g->rows = !g->direct && g->sw > 1 && kw >= 4;
  int64_t row = g->K * g->ow;
  g->band = row > 0 && !g->direct ? BAND_FLOATS / row : g->oh;
  if (g->band < 1) g->band = 1;
  if (g->band > g->oh) g->band = g->oh;
}

/* ---- workspace: nslots per-thread buffers of nfloats each, one allocator block per call ---- */

typedef struct workspace {
  float **slot;
  float *block;
  size_t bytes;
} workspace;

/* Fills ws->slot[0..nslots-1] (64-byte aligned). Returns 0, or -1 with the error set. */
static int ws_alloc(workspace *ws, int nslots, size_t nfloats) {
  size_t stride = (nfloats + 15) / 16 * 16; /* floats: keeps each slot on its own cache lines */
  if (nfloats > SIZE_MAX / sizeof(float) / 16 / (size_t)(nslots > 0 ? nslots : 1)) {
    ws->slot = NULL, ws->block = NULL;
    return cnn_error_set("out of memory (convolution workspace of %d x %zu floats)", nslots, nfloats);
  }
  ws->bytes = (size_t)nslots * stride * sizeof(float);
  ws->slot = malloc((size_t)nslots * sizeof *ws->slot);
  ws->block = ws->slot ? cnn_alloc(ws->bytes) : NULL;
  if (!ws->block) {
    if (!ws->slot) cnn_error_set("out of memory (convolution workspace)");
    free(ws->slot);
    return -1;
  }
  for (int i = 0; i < nslots; i++) ws->slot[i] = ws->block + (size_t)i * stride;
  return 0;
}

static void ws_free(workspace *ws) {
  cnn_free(ws->block, ws->bytes);
  free(ws->slot);
}

/* ---- im2col / col2im over a band of output rows [oy0, oy1) ----
 * Both go through a zero-padded copy of the rows involved (xp: (Cg, R, Wp), padded row r is input
 * row r - ph), so the copy loops carry no bounds tests: for 3x3 stride-1 layers this is 3-4x faster
 * than clipping each row segment against the input (16 channels 32x32: 55 us an image to 13). */

/* Padded rows a band reads: [*r0, *r1) in padded coordinates. */
static void band_rows(const geom *g, int64_t oy0, int64_t oy1, int64_t *r0, int64_t *r1) {
  *r0 = oy0 * g->sh;
  *r1 = (oy1 - 1) * g->sh + (g->kh - 1) * g->dh + 1;
}

/* Floats of the padded copy of a band's rows for nc channels. */
static size_t pad_floats(const geom *g, int64_t band, int64_t nc) {
  return (size_t)(nc * ((band - 1) * g->sh + (g->kh - 1) * g->dh + 1) * g->Wp);
}

/* x: (Cg, H, W), padded rows [r0, r1) -> xp: (Cg, r1-r0, Wp) */
static void pad_copy(const geom *g, const float *x, int64_t r0, int64_t r1, float *xp) {
  const int64_t H = g->H, W = g->W, Wp = g->Wp, R = r1 - r0;
  const int64_t zl = g->pw < Wp ? g->pw : Wp;  /* leading zeros */
  int64_t n = W < Wp - g->pw ? W : Wp - g->pw; /* input columns read */
  if (n < 0) n = 0;
  for (int64_t c = 0; c < g->Cg; c++)
    for (int64_t r = r0; r < r1; r++) {
      float *d = xp + (c * R + r - r0) * Wp;
      int64_t iy = r - g->ph;
      if (iy < 0 || iy >= H) {
        memset(d, 0, (size_t)Wp * sizeof(float));
        continue;
      }
      memset(d, 0, (size_t)zl * sizeof(float));
      if (n > 0) memcpy(d + zl, x + (c * H + iy) * W, (size_t)n * sizeof(float));
      memset(d + zl + n, 0, (size_t)(Wp - zl - n) * sizeof(float));
    }
}

/* d[0..n) = s[0], s[stride], .. s[stride (n-1)]. Stride 2 in vectors (two loads, one permute per 16
 * floats; the 7x7 stride-2 stem of ResNet gathers 147 rows an output row: its forward 1.23x, weight
 * gradient 1.12x against the scalar loop), reading nothing past the last float it copies. Stride 1
 * stays a memcpy (a masked vector copy measured 5% slower on 28-float rows). */
static inline void copy_row(float *restrict d, const float *restrict s, int64_t n, int64_t stride) {
#if defined(__AVX512F__)
  if (stride == 2) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* reads s[2i .. 2i+30] */
      const __m512 lo = _mm512_loadu_ps(s + 2 * i);
      const __m512 hi = i + 16 < n ? _mm512_loadu_ps(s + 2 * i + 16)
                                   : _mm512_maskz_loadu_ps((__mmask16)0x7FFF, s + 2 * i + 16);
      _mm512_storeu_ps(d + i, _mm512_permutex2var_ps(lo, even, hi));
    }
    if (i < n) { /* r = n - i outputs read s[2i .. 2i + 2(r-1)]: 2r - 1 floats */
      const int64_t r = n - i, f = 2 * r - 1;
      const __m512 lo = _mm512_maskz_loadu_ps((__mmask16)(f >= 16 ? 0xFFFF : (1u << f) - 1), s + 2 * i);
      const __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(f > 16 ? (1u << (f - 16)) - 1 : 0), s + 2 * i + 16);
      _mm512_mask_storeu_ps(d + i, (__mmask16)((1u << r) - 1), _mm512_permutex2var_ps(lo, even, hi));
    }
    return;
  }
#endif
  if (stride == 1) memcpy(d, s, (size_t)n * sizeof(float));
  else
    for (int64_t i = 0; i < n; i++) d[i] = s[i * stride];
}

/* x: (Cg, H, W) -> col: (K, (oy1-oy0)*ow) with row stride ld; xp is scratch for the padded rows */
static void im2col(const geom *g, const float *x, int64_t oy0, int64_t oy1, float *col, int64_t ld, float *xp) {
  const int64_t ow = g->ow, Lt = ld, Wp = g->Wp, sw = g->sw;
  int64_t r0, r1;
  band_rows(g, oy0, oy1, &r0, &r1);
  pad_copy(g, x, r0, r1, xp);
  const int64_t R = r1 - r0, step = g->sh * Wp;
  for (int64_t c = 0; c < g->Cg; c++)
    for (int64_t ki = 0; ki < g->kh; ki++)
      for (int64_t kj = 0; kj < g->kw; kj++) {
        float *row = col + ((c * g->kh + ki) * g->kw + kj) * Lt;
        const float *src = xp + (c * R + ki * g->dh) * Wp + kj * g->dw;
        for (int64_t oy = oy0; oy < oy1; oy++, row += ow, src += step) copy_row(row, src, ow, sw);
      }
}

/* col: ((c1-c0)*kh*kw, (oy1-oy0)*ow) with row stride ld, the rows of channels c0..c1, accumulated
 * into gp, the padded input gradient of those channels: (c1-c0, Hp, Wp) */
static void col2im(const geom *g, const float *col, int64_t ld, int64_t oy0, int64_t oy1, int64_t c0, int64_t c1,
                   float *gp) {
  const int64_t ow = g->ow, Lt = ld, Wp = g->Wp, sw = g->sw, step = g->sh * Wp;
  for (int64_t c = 0; c < c1 - c0; c++)
    for (int64_t ki = 0; ki < g->kh; ki++)
      for (int64_t kj = 0; kj < g->kw; kj++) {
        const float *row = col + ((c * g->kh + ki) * g->kw + kj) * Lt;
        float *dst = gp + (c * g->Hp + oy0 * g->sh + ki * g->dh) * Wp + kj * g->dw;
        for (int64_t oy = oy0; oy < oy1; oy++, row += ow, dst += step) {
          if (sw == 1) {
            for (int64_t ox = 0; ox < ow; ox++) dst[ox] += row[ox];
          } else {
            for (int64_t ox = 0; ox < ow; ox++) dst[ox * sw] += row[ox];
          }
        }
      }
}

/* The transposed form for wide strided kernels: colT ((oy1-oy0)*ow, (c1-c0)*kh*kw) holds one row
 * per output position; its kw entries for a (channel, kernel row) land on kw neighbouring columns
 * of gp (dilation 1), a short contiguous add instead of kw scattered ones at stride sw. */
static void col2im_rows(const geom *g, const float *colT, int64_t oy0, int64_t oy1, int64_t c0, int64_t c1, float *gp) {
  const int64_t kh = g->kh, kw = g->kw, dw = g->dw, Wp = g->Wp, K = (c1 - c0) * kh * kw;
  for (int64_t oy = oy0; oy < oy1; oy++)
    for (int64_t ox = 0; ox < g->ow; ox++) {
      const float *r = colT + ((oy - oy0) * g->ow + ox) * K;
      for (int64_t c = 0; c < c1 - c0; c++)
        for (int64_t ki = 0; ki < kh; ki++, r += kw) {
          float *dst = gp + (c * g->Hp + oy * g->sh + ki * g->dh) * Wp + ox * g->sw;
          if (dw == 1) {
            for (int64_t kj = 0; kj < kw; kj++) dst[kj] += r[kj];
          } else {
            for (int64_t kj = 0; kj < kw; kj++) dst[kj * dw] += r[kj];
          }
        }
    }
}

/* gp: (nc, Hp, Wp) padded gradient -> gx: (nc, H, W), dropping the padding; input rows and
 * columns no window reads get 0 */
static void unpad(const geom *g, const float *gp, int64_t nc, float *gx) {
  const int64_t H = g->H, W = g->W, Wp = g->Wp;
  int64_t n = W < Wp - g->pw ? W : Wp - g->pw;
  if (n < 0) n = 0;
  for (int64_t c = 0; c < nc; c++)
    for (int64_t iy = 0; iy < H; iy++) {
      float *d = gx + (c * H + iy) * W;
      int64_t pr = iy + g->ph;
      if (pr >= g->Hp) {
        memset(d, 0, (size_t)W * sizeof(float));
        continue;
      }
      if (n > 0) memcpy(d, gp + (c * g->Hp + pr) * Wp + g->pw, (size_t)n * sizeof(float));
      memset(d + n, 0, (size_t)(W - n) * sizeof(float));
    }
}

/* ---- work units ----
 * Forward and weight gradient split into (image, group, band) units, all independent (the weight
 * gradient through one partial sum per thread's part, reduced in part order); the input gradient
 * into (image, group, channel block) units, since neighbouring bands add into the same input rows.
 * Units run on the runtime's threads, each calling OpenBLAS on one thread. */

typedef struct unit {
  int64_t n, gi, oy0, oy1, Lt;
} unit;

static int64_t n_bands(const geom *g) { return (g->oh + g->band - 1) / g->band; }

/* Scratch for band_columns: the column band and the padded rows behind it. */
static size_t col_floats(const geom *g) {
  return g->direct ? 1 : (size_t)(g->K * g->band * g->ow) + pad_floats(g, g->band, g->Cg);
}

/* With fewer (image, group) items than threads, narrow the bands so every thread gets one. */
static void split_for_threads(geom *g, int nt) {
  int64_t items = g->N * g->G;
  if (items == 0 || items * n_bands(g) >= nt) return;
  int64_t want = (nt + items - 1) / items; /* bands per item */
  int64_t band = (g->oh + want - 1) / want;
  if (band < g->band) g->band = band < 1 ? 1 : band;
}

static unit band_unit(const geom *g, int64_t u) {
  int64_t nb = n_bands(g), b = u % nb;
  unit r = {u / nb / g->G, u / nb % g->G, b * g->band, 0, 0};
  r.oy1 = r.oy0 + g->band < g->oh ? r.oy0 + g->band : g->oh;
  r.Lt = (r.oy1 - r.oy0) * g->ow;
  return r;
}

/* The column matrix of a band: x itself for direct convolutions (ld L), else im2col into col
 * (followed by the padded-rows scratch, see col_floats). Sets *ld. */
static const float *band_columns(const geom *g, const float *xg, const unit *u, float *col, int64_t *ld) {
  if (g->direct) {
    *ld = g->L;
    return xg + u->oy0 * g->ow;
  }
  im2col(g, xg, u->oy0, u->oy1, col, u->Lt, col + (size_t)(g->K * g->band * g->ow));
  *ld = u->Lt;
  return col;
}

/* ---- direct (column-free) kernels for stride-1 layers, see conv_direct.c ---- */

/* Wide layers (Cg*kh*kw >= 1024: 3x3 from 128 input channels) whose products the AVX-512 GEMM
 * (core/gemm_avx512.c) takes: im2col + GEMM measured faster than the direct kernels there for the
 * weight gradient (fwd+bwd 1.1-2x on ResNet-18's 128-512 channels, VGG-16's 256-512, AlexNet's 13x13
 * layers), and for all three passes on 8x8 images and smaller from 256 input channels (ResNet's 512
 * channels at 7x7: fwd+bwd 1.16x more than with the weight gradient alone moved; 192 channels at 7x7
 * and 256 at 14x14 measured 0.9-1.0x there, so they keep the direct forward and input gradient).
 * 64 channels and fewer stay on the direct kernels. */
static bool wide_gemm(const geom *g) { return g->K >= 1024 && cnn_gemm_picks_own(false, true, g->Og, g->K, g->L); }

static bool use_direct(const geom *g, const cnn_conv2d_params *p) {
  if (algorithm == CNN_CONV2D_IM2COL) return false;
  if (g->L <= 64 && g->K >= 2304 && wide_gemm(g)) return false;
  return cnn_dconv_applies(g->kh, g->kw, p->stride, p->pad_lo, p->pad_hi, p->dilation, p->groups);
}

static bool weight_grad_direct(const geom *g, const cnn_conv2d_params *p) { return use_direct(g, p) && !wide_gemm(g); }

typedef enum { DIRECT_FORWARD, DIRECT_INPUT_GRAD, DIRECT_WEIGHT_GRAD } direct_kind;

/* The direct gradients multiply zeros by input values that im2col never pairs (the weight
 * gradient's dropped positions, the input gradient's padded output gradient): harmless unless a
 * value is inf or NaN, where 0 * inf would make NaNs PyTorch does not have. Those inputs take
 * im2col: the filters are scanned here (small), x by the weight gradient as it copies x into its
 * slabs (a separate pass over x read 8 MB more from memory per ResNet-20 layer, 6% of the pass). */
static bool all_finite(const float *p, int64_t n) {
  /* x - x is 0 for finite x, NaN for inf and NaN; an AND of comparisons vectorises, where a sum of
   * the differences was one chain of float adds (37 us of a LeNet step's serial part) */
  int ok = 1;
  for (int64_t i = 0; i < n; i++) ok &= p[i] - p[i] == 0;
  return ok;
}

/* conv_small.c's forward (or input gradient: stride 1, or stride 2 in its four phases, whose
 * padded gy meets w with zeros im2col never multiplies: the caller checks w is finite) when it plans
 * this shape: 0, -1 with the error set, or 1 when it does not (nothing was written). */
static int run_small(bool input_grad, const geom *g, const cnn_conv2d_params *p, const cnn_conv2d_epilogue *e,
                     const float *a, const float *b, const float *bias, float *out, int nt,
                     const cnn_parallel_loop *beside, const cnn_conv2d_then *then) {
  cnn_sconv d;
  const bool strided = p->stride[0] != 1;
  const bool planned = !input_grad ? cnn_sconv_plan_forward_strided(&d, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw,
                                                                    p->pad_lo[0], p->pad_lo[1], p->pad_hi[0],
                                                                    p->pad_hi[1], p->stride[0])
                       : strided   ? cnn_sconv_plan_input_grad_strided(&d, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw,
                                                                       p->pad_lo[0], p->pad_lo[1], p->pad_hi[0],
                                                                       p->pad_hi[1], p->stride[0])
                                   : cnn_sconv_plan_input_grad(&d, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw,
                                                               p->pad_lo[0], p->pad_lo[1], p->pad_hi[0], p->pad_hi[1]);
  if (!planned) return 1;
  if (d.scratch_floats > direct_limit) return 1;
  if (!input_grad) d.relu = e->relu, d.scale = e->scale, d.residual = e->residual;
  if (!input_grad && then) d.then = then->fn, d.then_ctx = then->ctx;
  const size_t packf = cnn_sconv_packed_floats(&d);
  float *pack = cnn_alloc(packf * sizeof(float));
  if (!pack) return -1;
  workspace ws;
  if (ws_alloc(&ws, nt, d.scratch_floats)) {
    cnn_free(pack, packf * sizeof(float));
    return -1;
  }
  if (input_grad && strided) cnn_sconv_input_grad_strided(&d, a, b, out, pack, ws.slot, beside);
  else if (input_grad) cnn_sconv_input_grad(&d, a, b, out, pack, ws.slot, beside);
  else cnn_sconv_forward(&d, a, b, bias, out, pack, ws.slot);
  ws_free(&ws);
  cnn_free(pack, packf * sizeof(float));
  return 0;
}

/* Stride 2 in both dims, no dilation or groups, padding at most kernel - 1: conv_small.c's forward,
 * weight gradient and input gradient (its four phases) take it when they plan the shape (ResNet's
 * downsampling 3x3 layers). */
static bool small_strided(const geom *g, const cnn_conv2d_params *p) {
  return algorithm != CNN_CONV2D_IM2COL && small_enabled() && p->groups == 1 && p->stride[0] == 2 &&
         p->stride[1] == 2 && p->dilation[0] == 1 && p->dilation[1] == 1 && p->pad_lo[0] <= g->kh - 1 &&
         p->pad_hi[0] <= g->kh - 1 && p->pad_lo[1] <= g->kw - 1 && p->pad_hi[1] <= g->kw - 1;
}

/* conv_small.c's strided weight gradient (beside: the bias loop or NULL): 0, -1 with the error
 * set, or 1 when it does not plan the shape (nothing was run) */
static int run_small_weight_grad(const geom *g, const cnn_conv2d_params *p, const float *gy, const float *x, float *gw,
                                 int nt, const cnn_parallel_loop *beside) {
  cnn_sconv sw;
  if (!cnn_sconv_plan_weight_grad_strided(&sw, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0], p->pad_lo[1],
                                          p->pad_hi[0], p->pad_hi[1], p->stride[0]) ||
      sw.scratch_floats > direct_limit)
    return 1;
  workspace ws;
  if (ws_alloc(&ws, nt, sw.scratch_floats)) return -1;
  cnn_sconv_weight_grad(&sw, gy, x, gw, ws.slot, nt, beside, NULL);
  ws_free(&ws);
  return 0;
}

/* Runs one direct kernel with its workspace and packed filters; 0, -1 with the error set, 1
 * when the kernel's workspace would pass direct_limit (the caller takes im2col), or 2 when the
 * weight gradient met an inf or a NaN in x (`beside` has run; the caller computes gw by im2col). */
static int run_direct(direct_kind kind, const geom *g, const cnn_conv2d_params *p, const cnn_conv2d_epilogue *e,
                      const float *a, const float *b, const float *bias, float *out, int nt,
                      const cnn_parallel_loop *beside, const cnn_conv2d_then *then) {
  if (kind != DIRECT_WEIGHT_GRAD && small_enabled()) {
    int rc = run_small(kind == DIRECT_INPUT_GRAD, g, p, e, a, b, bias, out, nt, beside, then);
    if (rc <= 0) return rc;
  }
  cnn_sconv sw;
  if (kind == DIRECT_WEIGHT_GRAD && small_enabled() &&
      cnn_sconv_plan_weight_grad(&sw, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0], p->pad_lo[1],
                                 p->pad_hi[0], p->pad_hi[1]) &&
      sw.scratch_floats <= direct_limit) {
    workspace ws;
    if (ws_alloc(&ws, nt, sw.scratch_floats)) return -1;
    cnn_sconv_weight_grad(&sw, a, b, out, ws.slot, nt, beside, NULL);
    ws_free(&ws);
    return 0;
  }
  cnn_dconv d;
  void (*plan)(cnn_dconv *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
               int64_t, int) = kind == DIRECT_FORWARD      ? cnn_dconv_plan_forward
                               : kind == DIRECT_INPUT_GRAD ? cnn_dconv_plan_input_grad
                                                           : cnn_dconv_plan_weight_grad;
  plan(&d, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0], p->pad_lo[1], p->pad_hi[0], p->pad_hi[1], nt);
  if (kind == DIRECT_FORWARD) d.relu = e->relu, d.scale = e->scale, d.residual = e->residual;
  if (kind == DIRECT_FORWARD && then) d.then = then->fn, d.then_ctx = then->ctx;
  if (d.scratch_floats > direct_limit) return 1;
  size_t packf = kind == DIRECT_WEIGHT_GRAD ? 0 : cnn_dconv_packed_floats(&d);
  float *pack = packf ? cnn_alloc(packf * sizeof(float)) : NULL;
  if (packf && !pack) return -1;
  workspace ws;
  if (ws_alloc(&ws, nt, d.scratch_floats)) {
    cnn_free(pack, packf * sizeof(float));
    return -1;
  }
  int rc = 0;
  if (kind == DIRECT_FORWARD) cnn_dconv_forward(&d, a, b, bias, out, pack, ws.slot, nt);
  else if (kind == DIRECT_INPUT_GRAD) cnn_dconv_input_grad(&d, a, b, out, pack, ws.slot, nt, beside);
  else rc = cnn_dconv_weight_grad(&d, a, b, out, ws.slot, nt, beside, NULL) ? 0 : 2;
  ws_free(&ws);
  cnn_free(pack, packf * sizeof(float));
  return rc;
}

/* ---- Winograd F(2x2, 3x3) for 3x3 stride-1 layers padded by 1 (see conv_winograd.c) ---- */

typedef enum { WINOGRAD_FORWARD, WINOGRAD_INPUT_GRAD, WINOGRAD_WEIGHT_GRAD } winograd_pass;

/* Whether the Winograd kernel takes this pass of this convolution (3x3, stride 1, padding 1, no
 * dilation or groups, the shape it plans, its workspace within the direct kernels' cap); fills d.
 * The input gradient is the forward over gy: C and O swap. */
static bool winograd_plans(cnn_wconv *d, const geom *g, const cnn_conv2d_params *p, winograd_pass pass, int nt) {
  const bool shape = algorithm != CNN_CONV2D_IM2COL && g->G == 1 && g->kh == 3 && g->kw == 3 && g->sh == 1 &&
                     g->sw == 1 && g->dh == 1 && g->dw == 1 && p->pad_lo[0] == 1 && p->pad_lo[1] == 1 &&
                     p->pad_hi[0] == 1 && p->pad_hi[1] == 1;
  const bool in = pass == WINOGRAD_INPUT_GRAD;
  return shape &&
         cnn_wconv_plan(d, g->N, in ? g->O : g->C, g->H, g->W, in ? g->C : g->O, pass == WINOGRAD_WEIGHT_GRAD, nt) &&
         d->scratch_floats <= direct_limit;
}

/* The forward (a = x, out = y, with e) or the input gradient (a = gy, out = gx, e NULL) on the
 * Winograd kernel when it plans the shape: 0, or 1 when it does not apply, its memory cannot be
 * had, w holds an inf or a NaN, or a holds one or a result overflowed (out is then partly
 * written): the caller computes out on another kernel. */
static int run_winograd(bool input_grad, const geom *g, const cnn_conv2d_params *p, const cnn_conv2d_epilogue *e,
                        const float *a, const float *w, const float *bias, float *out, int nt) {
  cnn_wconv d;
  if (!winograd_plans(&d, g, p, input_grad ? WINOGRAD_INPUT_GRAD : WINOGRAD_FORWARD, nt) ||
      !all_finite(w, g->O * g->C * 9))
    return 1;
  if (e) d.scale = e->scale, d.residual = e->residual, d.relu = e->relu;
  /* without memory for its transforms the layer takes a kernel that needs less */
  const size_t uf = cnn_wconv_filter_floats(&d);
  float *u = cnn_alloc(uf * sizeof(float));
  workspace ws;
  if (!u || ws_alloc(&ws, nt, d.scratch_floats)) {
    if (u) cnn_free(u, uf * sizeof(float));
    cnn_error_clear();
    return 1;
  }
  cnn_wconv_filters(&d, w, input_grad, u);
  const bool finite = cnn_wconv_run(&d, a, u, bias, out, ws.slot);
  ws_free(&ws);
  cnn_free(u, uf * sizeof(float));
  return finite ? 0 : 1;
}

/* The weight gradient on the Winograd kernel when it plans the shape: 0, or 1 when it does not
 * apply, its memory cannot be had, x or gy holds an inf or a NaN, or gw overflowed (gw then
 * written): the caller computes gw on another kernel. */
static int run_winograd_weight_grad(const geom *g, const cnn_conv2d_params *p, const float *gy, const float *x,
                                    float *gw, int nt) {
  cnn_wconv d;
  if (!winograd_plans(&d, g, p, WINOGRAD_WEIGHT_GRAD, nt)) return 1;
  const size_t uf = cnn_wconv_filter_floats(&d);
  workspace ws, parts;
  if (ws_alloc(&ws, nt, d.scratch_floats)) {
    cnn_error_clear();
    return 1; /* a kernel that needs less memory takes the layer */
  }
  if (ws_alloc(&parts, nt, uf)) {
    ws_free(&ws);
    cnn_error_clear();
    return 1;
  }
  /* finite inputs can still overflow the products (1e38 times a tile's sum of gy) where the direct
   * sum stays finite: gw is scanned too */
  const bool finite = cnn_wconv_weight_grad(&d, gy, x, gw, ws.slot, parts.slot, nt) && all_finite(gw, g->O * g->C * 9);
  ws_free(&parts);
  ws_free(&ws);
  return finite ? 0 : 1;
}

/* One row of n outputs of the forward's epilogue, from the product's row s (r may be s): with a
 * scale or a residual (post) r = s * scale + bias (+ residual), else r = s (the bias started the
 * product); then relu as F.relu computes it (v <= 0 gives +0, NaN stays NaN). */
static void epilogue_row(float *r, const float *s, int64_t n, bool post, float sv, float bv, const float *res,
                         bool relu) {
  if (post && res)
    for (int64_t q = 0; q < n; q++) {
      float v = s[q] * sv + bv + res[q];
      r[q] = relu && v <= 0 ? 0.0f : v;
    }
  else if (post && relu)
    for (int64_t q = 0; q < n; q++) {
      float v = s[q] * sv + bv;
      r[q] = v <= 0 ? 0.0f : v;
    }
  else if (post)
    for (int64_t q = 0; q < n; q++) r[q] = s[q] * sv + bv;
  else if (relu)
    for (int64_t q = 0; q < n; q++) r[q] = s[q] <= 0 ? 0.0f : s[q];
  else if (r != s) memcpy(r, s, (size_t)n * sizeof(float));
}

/* ---- batched: a chunk of images' columns side by side, one product over the threads ----
 * Wide layers on small planes (ResNet's 512 channels at 7x7) give one image's band only 21-49
 * columns: each band's product streams the whole filter (forward) or the whole (O, K) partial
 * (weight gradient) through the cache for a few FMAs per float, ~40-50% of peak. Here the columns
 * of nb images sit side by side in one (K, nb*L) matrix, so a pass is one product of nb*L columns
 * (depth nb*L for the weight gradient), split over the threads by cnn_gemm. Measured on ResNet-18's
 * 512 channels at 7x7 (batch 16, 2 threads): forward 1.1-1.3x, weight gradient 1.15-1.4x, input
 * gradient (stride 1, col2im in registers: col2im_plane) 1.15x; planes of 196 stay on bands (256
 * channels at 14x14: 0.8-0.95x, the chunk's columns leave the cache), as does the stride-2 input
 * gradient (its scalar col2im measured slower). Every element of y and gx gets the bits of the band
 * path (the same depth, summed in the same order); gw sums all images in one depth order (no
 * per-thread partials), so it does not depend on the thread count either. */

/* Column floats of one chunk (all threads share it): 16 MiB, all 16 images of ResNet-18's 512
 * channels at 7x7 (1M and 2M measured no better). */
#define BATCH_FLOATS (4 * 1024 * 1024)

static int batch_on = -1; /* 1 on, 0 off, -1 until the first call reads CNN_CONV_BATCH */
static size_t batch_floats = BATCH_FLOATS;
void cnn_conv2d_set_batched(bool on) { batch_on = on; }
void cnn_conv2d_set_batch_floats(size_t floats) { batch_floats = floats ? floats : BATCH_FLOATS; }
/* The smallest filter (O * K floats) that takes the path: 4 MiB. alexnet_cifar's 128-192 channels
 * at 7x7 (1.3 MB filters) ran 5-8% slower a training step batched than on the direct forward and
 * the band gradient. */
#define BATCH_MIN_FILTER_FLOATS ((size_t)1 << 20)
static size_t batch_min_filter = BATCH_MIN_FILTER_FLOATS;
void cnn_conv2d_set_batch_min_filter(size_t floats) { batch_min_filter = floats ? floats : BATCH_MIN_FILTER_FLOATS; }
static bool batch_enabled(void) {
  if (batch_on < 0) {
    const char *e = getenv("CNN_CONV_BATCH");
    batch_on = !(e && strcmp(e, "0") == 0);
  }
  return batch_on;
}

/* Images per chunk when this layer takes the batched path, else 0: one group, wide filters on the
 * AVX-512 GEMM, planes of at most 64 outputs, two images a chunk at least, a filter of at least
 * batch_min_filter floats. */
static int64_t batch_images(const geom *g) {
  if (!batch_enabled() || g->G != 1 || g->direct || g->N < 2 || g->L > 64 || !wide_gemm(g)) return 0;
  if ((size_t)(g->O * g->K) < batch_min_filter) return 0;
  int64_t nb = (int64_t)batch_floats / (g->K * g->L);
  if (nb < 2) return 0;
  return nb < g->N ? nb : g->N;
}

bool cnn_conv2d_takes_batched(const cnn_conv2d_shape *s, const cnn_conv2d_params *p) {
  geom g;
  geom_fill(&g, s->N, s->C, s->H, s->W, s->O, s->kh, s->kw, p);
  return batch_images(&g) > 0;
}

typedef struct {
  const geom *g;
  const float *x, *gy, *b;
  const cnn_conv2d_epilogue *e;
  float *col, *gyb, *y;
  float *const *ws; /* per-thread scratch: im2col's padded rows */
  int64_t n0, ld;   /* first image of the chunk; ld = nb * L */
} batch_job;

/* images [i0, i1) of the chunk: im2col into columns i*L.. of col */
static void batch_im2col(void *arg, int64_t i0, int64_t i1) {
  const batch_job *j = arg;
  const geom *g = j->g;
  float *xp = j->ws[cnn_parallel_slot()];
  for (int64_t i = i0; i < i1; i++)
    im2col(g, j->x + (j->n0 + i) * g->C * g->H * g->W, 0, g->oh, j->col + i * g->L, j->ld, xp);
}

/* images [i0, i1): gy[n0 + i] (O, L) into columns i*L.. of gyb (O, ld) */
static void batch_gather(void *arg, int64_t i0, int64_t i1) {
  const batch_job *j = arg;
  const geom *g = j->g;
  for (int64_t i = i0; i < i1; i++)
    for (int64_t o = 0; o < g->O; o++)
      memcpy(j->gyb + o * j->ld + i * g->L, j->gy + ((j->n0 + i) * g->O + o) * g->L, (size_t)g->L * sizeof(float));
}

/* images [i0, i1): y[n0 + i] = epilogue(columns i*L.. of the product in gyb), as forward_unit */
static void batch_scatter(void *arg, int64_t i0, int64_t i1) {
  const batch_job *j = arg;
  const geom *g = j->g;
  const cnn_conv2d_epilogue *e = j->e;
  const int64_t L = g->L;
  const bool post = e->scale || e->residual; /* else the bias is in the product, as forward_unit's */
  for (int64_t i = i0; i < i1; i++)
    for (int64_t o = 0; o < g->O; o++) {
      const int64_t at = ((j->n0 + i) * g->O + o) * L;
      epilogue_row(j->y + at, j->gyb + o * j->ld + i * L, L, post, e->scale ? e->scale[o] : 1.0f, j->b ? j->b[o] : 0.0f,
                   e->residual ? e->residual + at : NULL, e->relu);
    }
}

/* Scratch of a batched pass: the chunk's columns, its gathered gy (or its product), per-thread rows. */
typedef struct {
  workspace ws;
  float *col, *gyb;
  size_t colf, gybf;
} batch_mem;

static int batch_alloc(batch_mem *m, const geom *g, int64_t nb, int nt) {
  m->colf = (size_t)(g->K * nb * g->L), m->gybf = (size_t)(g->O * nb * g->L);
  if (ws_alloc(&m->ws, nt, pad_floats(g, g->oh, g->C))) return -1;
  size_t bytes = (m->colf + m->gybf) * sizeof(float);
  m->col = cnn_alloc(bytes);
  if (!m->col) {
    ws_free(&m->ws);
    return cnn_error_set("out of memory (convolution columns of %zu floats)", m->colf + m->gybf);
  }
  m->gyb = m->col + m->colf;
  return 0;
}

static void batch_free(batch_mem *m) {
  cnn_free(m->col, (m->colf + m->gybf) * sizeof(float));
  ws_free(&m->ws);
}

/* a loop over n images of per_image floats of work each */
static cnn_parallel_loop batch_loop(int64_t n, cnn_parallel_fn fn, batch_job *j, int64_t per_image) {
  return (cnn_parallel_loop){n, cnn_parallel_grain(n, n * per_image), fn, j};
}

static int forward_batched(const geom *g, int64_t nb, const cnn_conv2d_epilogue *e, const float *x, const float *w,
                           const float *b, float *y, int nt) {
  batch_mem m;
  if (batch_alloc(&m, g, nb, nt)) return -1;
  for (int64_t n0 = 0; n0 < g->N; n0 += nb) {
    const int64_t c = g->N - n0 < nb ? g->N - n0 : nb;
    batch_job j = {
        .g = g, .x = x, .b = b, .e = e, .col = m.col, .gyb = m.gyb, .y = y, .ws = m.ws.slot, .n0 = n0, .ld = c * g->L};
    const cnn_parallel_loop cols = batch_loop(c, batch_im2col, &j, g->K * g->L);
    cnn_parallel_loops(1, &cols);
    const bool pre = b && !e->scale && !e->residual; /* the product starts from the bias */
    if (pre)
      for (int64_t o = 0; o < g->O; o++)
        for (int64_t q = 0; q < j.ld; q++) m.gyb[o * j.ld + q] = b[o];
    cnn_gemm(false, false, g->O, j.ld, g->K, 1, w, g->K, m.col, j.ld, pre ? 1 : 0, m.gyb, j.ld);
    const cnn_parallel_loop out = batch_loop(c, batch_scatter, &j, g->O * g->L);
    cnn_parallel_loops(1, &out);
  }
  batch_free(&m);
  return 0;
}

static int weight_grad_batched(const geom *g, int64_t nb, const float *gy, const float *x, float *gw, int nt,
                               const cnn_parallel_loop *beside) {
  batch_mem m;
  if (batch_alloc(&m, g, nb, nt)) return -1;
  for (int64_t n0 = 0; n0 < g->N; n0 += nb) {
    const int64_t c = g->N - n0 < nb ? g->N - n0 : nb;
    batch_job j = {.g = g, .x = x, .gy = gy, .col = m.col, .gyb = m.gyb, .ws = m.ws.slot, .n0 = n0, .ld = c * g->L};
    const cnn_parallel_loop loops[3] = {batch_loop(c, batch_im2col, &j, g->K * g->L),
                                        batch_loop(c, batch_gather, &j, g->O * g->L),
                                        n0 == 0 && beside ? *beside : (cnn_parallel_loop){0}};
    cnn_parallel_loops(n0 == 0 && beside ? 3 : 2, loops);
    cnn_gemm(false, true, g->O, g->K, j.ld, 1, m.gyb, j.ld, m.col, j.ld, n0 == 0 ? 0 : 1, gw, g->K);
  }
  batch_free(&m);
  return 0;
}

/* Whether col2im_plane takes this shape: stride 1, dilation 1, rows of at most 16 floats. */
static bool plane_col2im(const geom *g) {
#if defined(__AVX512F__)
  return g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 && g->W <= 16 && g->ow <= 16;
#else
  (void)g;
  return false;
#endif
}

/* col: (C*kh*kw, L) with row stride ld, an image's whole plane -> gx (C, H, W), without the padded
 * scratch: each input row is summed in a register from the (ki, kj) rows that reach it, in col2im's
 * order (ki, then kj; from +0, so adding +0 in the lanes a row misses leaves every bit as col2im +
 * unpad would). False (nothing written) where plane_col2im does not hold. The scalar col2im's
 * 7-float row adds were 18% of a 512-channel 7x7 input gradient. */
static bool col2im_plane(const geom *g, const float *col, int64_t ld, float *gx) {
#if defined(__AVX512F__)
  if (!plane_col2im(g)) return false;
  const int64_t H = g->H, W = g->W, kh = g->kh, kw = g->kw, oh = g->oh, ow = g->ow, pw = g->pw;
  const __mmask16 wm = (__mmask16)((1u << W) - 1);
  for (int64_t c = 0; c < g->C; c++)
    for (int64_t iy = 0; iy < H; iy++) {
      __m512 v = _mm512_setzero_ps();
      for (int64_t ki = 0; ki < kh; ki++) {
        const int64_t oy = iy + g->ph - ki;
        if (oy < 0 || oy >= oh) continue;
        const float *rk = col + (c * kh + ki) * kw * ld + oy * ow;
        for (int64_t kj = 0; kj < kw; kj++) {
          /* output lane x takes rk[kj row][x + pw - kj] where 0 <= x + pw - kj < ow */
          const int64_t lo = kj - pw > 0 ? kj - pw : 0, hi = ow + kj - pw < W ? ow + kj - pw : W;
          if (lo >= hi) continue;
          const __mmask16 m = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
          v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, rk + kj * ld + pw - kj));
        }
      }
      _mm512_mask_storeu_ps(gx + (c * H + iy) * W, wm, v);
    }
  return true;
#else
  (void)g, (void)col, (void)ld, (void)gx;
  return false;
#endif
}

/* images [i0, i1) of the chunk: gx[n0 + i] = col2im(columns i*L.. of col), in registers
 * (col2im_plane) or through the thread's padded scratch */
static void batch_col2im(void *arg, int64_t i0, int64_t i1) {
  const batch_job *j = arg;
  const geom *g = j->g;
  float *gp = j->ws[cnn_parallel_slot()];
  for (int64_t i = i0; i < i1; i++) {
    if (col2im_plane(g, j->col + i * g->L, j->ld, j->y + (j->n0 + i) * g->C * g->H * g->W)) continue;
    memset(gp, 0, (size_t)(g->C * g->Hp * g->Wp) * sizeof(float));
    col2im(g, j->col + i * g->L, j->ld, 0, g->oh, 0, g->C, gp);
    unpad(g, gp, g->C, j->y + (j->n0 + i) * g->C * g->H * g->W);
  }
}

/* gx by chunks: the chunk's gy side by side (O, nb*L), one product col = w^T @ gy over the threads
 * (full tiles where one image's 49 columns filled a tile and a half), then col2im per image. Each
 * element of col gets the bits of the per-image bands (the same depth, cut and summed in the same
 * order), and col2im adds in the same order: gx has the bands' bits. */
static int input_grad_batched(const geom *g, int64_t nb, const float *gy, const float *w, float *gx, int nt) {
  batch_mem m;
  if (batch_alloc(&m, g, nb, nt)) return -1;
  for (int64_t n0 = 0; n0 < g->N; n0 += nb) {
    const int64_t c = g->N - n0 < nb ? g->N - n0 : nb;
    batch_job j = {.g = g, .gy = gy, .col = m.col, .gyb = m.gyb, .y = gx, .ws = m.ws.slot, .n0 = n0, .ld = c * g->L};
    const cnn_parallel_loop in = batch_loop(c, batch_gather, &j, g->O * g->L);
    cnn_parallel_loops(1, &in);
    cnn_gemm(true, false, g->K, j.ld, g->O, 1, w, g->K, m.gyb, j.ld, 0, m.col, j.ld);
    const cnn_parallel_loop out = batch_loop(c, batch_col2im, &j, g->K * g->L);
    cnn_parallel_loops(1, &out);
  }
  batch_free(&m);
  return 0;
}

/* ---- forward ---- */

/* y[n, gi, band] = w[gi] @ columns + b (then max(0, .) with relu, while the band is in cache). With
 * a bias the band is filled with it first and the GEMM adds (beta 1): one pass over y instead of
 * zeroing then adding. A scale or a residual (e) is applied in one pass after the GEMM instead. */
static void forward_unit(const geom *g, const float *x, const float *w, const float *b, const cnn_conv2d_epilogue *e,
                         float *y, int64_t u_, float *col) {
  unit u = band_unit(g, u_);
  const float *xg = x + (u.n * g->C + u.gi * g->Cg) * g->H * g->W;
  const float *wg = w + u.gi * g->Og * g->K;
  const int64_t at = (u.n * g->O + u.gi * g->Og) * g->L + u.oy0 * g->ow;
  float *yt = y + at; /* (Og, Lt) with ld L */
  const bool post = e->scale || e->residual;
  if (b && !post)
    for (int64_t o = 0; o < g->Og; o++) {
      float *r = yt + o * g->L, bv = b[u.gi * g->Og + o];
      for (int64_t i = 0; i < u.Lt; i++) r[i] = bv;
    }
  int64_t ld;
  const float *cols = band_columns(g, xg, &u, col, &ld);
  cnn_gemm(false, false, g->Og, u.Lt, g->K, 1, wg, g->K, cols, ld, b && !post ? 1 : 0, yt, g->L);
  if (post || e->relu)
    for (int64_t o = 0; o < g->Og; o++) {
      const int64_t oc = u.gi * g->Og + o;
      float *r = yt + o * g->L;
      epilogue_row(r, r, u.Lt, post, e->scale ? e->scale[oc] : 1.0f, b ? b[oc] : 0.0f,
                   e->residual ? e->residual + at + o * g->L : NULL, e->relu);
    }
}

static void geom_of(geom *g, const cnn_conv2d_shape *s, const cnn_conv2d_params *p) {
  geom_fill(g, s->N, s->C, s->H, s->W, s->O, s->kh, s->kw, p);
}

void cnn_conv2d_set_winograd(bool on) { cnn_wconv_set_enabled(on); }

bool cnn_conv2d_takes_winograd(const cnn_conv2d_shape *s, const cnn_conv2d_params *p) {
  geom g;
  geom_of(&g, s, p);
  cnn_wconv d;
  return winograd_plans(&d, &g, p, WINOGRAD_FORWARD, cnn_parallel_get_threads());
}

/* One convolution pass's operands, for the units run on the pool. Scratch: ws[slot] for a
 * thread's units, or ws[part] (column scratch, then the partial) for weight-gradient parts. */
typedef struct {
  const geom *g;
  const float *x, *w, *b, *gy;
  float *y, *gw;
  float *const *ws;
  int64_t units, blocks, parts;
  size_t colf;
  const cnn_conv2d_epilogue *e; /* forward */
} conv_job;

static void forward_units(void *arg, int64_t u0, int64_t u1) {
  const conv_job *j = arg;
  float *col = j->ws[cnn_parallel_slot()];
  for (int64_t u = u0; u < u1; u++) forward_unit(j->g, j->x, j->w, j->b, j->e, j->y, u, col);
}

static void then_range(void *arg, int64_t n0, int64_t n1) {
  const cnn_conv2d_then *t = arg;
  t->fn(t->ctx, n0, n1);
}

static int forward_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const cnn_conv2d_epilogue *e,
                       const float *x, const float *w, const float *b, float *y, const cnn_conv2d_then *then) {
  geom g;
  geom_of(&g, s, p);
  if (g.N * g.O * g.L == 0) {
    if (then && g.N > 0) then->fn(then->ctx, 0, g.N);
    return 0;
  }
  int nt = cnn_parallel_get_threads();
  if (small_strided(&g, p)) {
    int rc = run_small(false, &g, p, e, x, w, b, y, nt, NULL, then);
    if (rc <= 0) return rc;
  }
  const int64_t nb = batch_images(&g);
  if (nb) {
    if (forward_batched(&g, nb, e, x, w, b, y, nt)) return -1;
    if (then) cnn_parallel_items(g.N, g.N * g.O * g.L, then_range, (void *)then);
    return 0;
  }
  if (run_winograd(false, &g, p, e, x, w, b, y, nt) == 0) {
    if (then) cnn_parallel_items(g.N, g.N * g.O * g.L, then_range, (void *)then);
    return 0;
  }
  if (use_direct(&g, p)) {
    int rc = run_direct(DIRECT_FORWARD, &g, p, e, x, w, b, y, nt, NULL, then);
    if (rc <= 0) return rc; /* 1: past the direct kernels' workspace cap, im2col below */
  }
  split_for_threads(&g, nt);
  const int64_t units = g.N * g.G * n_bands(&g);
  workspace ws;
  if (ws_alloc(&ws, nt, col_floats(&g))) return -1;
  conv_job j = {.g = &g, .x = x, .w = w, .b = b, .y = y, .ws = ws.slot, .e = e};
  cnn_parallel_for(units, 1, forward_units, &j);
  ws_free(&ws);
  /* im2col's units are bands of an image's rows: the images are complete only now */
  if (then) cnn_parallel_items(g.N, g.N * g.O * g.L, then_range, (void *)then);
  return 0;
}

static const cnn_conv2d_epilogue plain = {NULL, NULL, false}, relu_only = {NULL, NULL, true};

int cnn_conv2d_forward_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                           const float *b, float *y) {
  return forward_f32(s, p, &plain, x, w, b, y, NULL);
}

int cnn_conv2d_forward_relu_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                                const float *b, float *y) {
  return forward_f32(s, p, &relu_only, x, w, b, y, NULL);
}

int cnn_conv2d_forward_fused_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                                 const float *b, const cnn_conv2d_epilogue *e, float *y) {
  return forward_f32(s, p, e ? e : &plain, x, w, b, y, NULL);
}

int cnn_conv2d_forward_then_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                                const float *b, float *y, const cnn_conv2d_then *then) {
  return forward_f32(s, p, &plain, x, w, b, y, then);
}

/* ---- backward ---- */

/* part (O, K) += gy[n, gi, band] @ columns^T on group gi's rows */
static void weight_grad_unit(const geom *g, const float *gy, const float *x, float *part, int64_t u_, float *col) {
  unit u = band_unit(g, u_);
  const float *xg = x + (u.n * g->C + u.gi * g->Cg) * g->H * g->W;
  const float *gyt = gy + (u.n * g->O + u.gi * g->Og) * g->L + u.oy0 * g->ow; /* (Og, Lt) with ld L */
  int64_t ld;
  const float *cols = band_columns(g, xg, &u, col, &ld);
  cnn_gemm(false, true, g->Og, g->K, u.Lt, 1, gyt, g->L, cols, ld, 1, part + u.gi * g->Og * g->K, g->K);
}

/* gx[n, gi, channels c0..c1) = col2im(w[gi][:, those channels]^T @ gy[n, gi]), band by band, into
 * the padded scratch gp (the bands overlap there), then cropped into gx. The unit owns its slice. */
static void input_grad_unit(const geom *g, const float *gy, const float *w, float *gx, int64_t n, int64_t gi,
                            int64_t c0, int64_t c1, float *gcol, float *gp) {
  const int64_t HW = g->H * g->W, kk = g->kh * g->kw, Kb = (c1 - c0) * kk;
  const float *gyg = gy + (n * g->O + gi * g->Og) * g->L;
  const float *wb = w + gi * g->Og * g->K + c0 * kk; /* columns c0*kk.. of the group's (Og, K) block */
  float *gxb = gx + (n * g->C + gi * g->Cg + c0) * HW;
  if (g->direct) { /* gx (cb, L) = w^T (cb, Og) @ gy (Og, L) */
    cnn_gemm(true, false, Kb, g->L, g->Og, 1, wb, g->K, gyg, g->L, 0, gxb, g->L);
    return;
  }
  memset(gp, 0, (size_t)((c1 - c0) * g->Hp * g->Wp) * sizeof(float));
  for (int64_t oy0 = 0; oy0 < g->oh; oy0 += g->band) {
    int64_t oy1 = oy0 + g->band < g->oh ? oy0 + g->band : g->oh, Lt = (oy1 - oy0) * g->ow;
    const float *gyt = gyg + oy0 * g->ow; /* (Og, Lt) with ld L */
    if (g->rows) {                        /* gcolT (Lt, Kb) = gy^T (Lt, Og) @ w (Og, Kb) */
      cnn_gemm(true, false, Lt, Kb, g->Og, 1, gyt, g->L, wb, g->K, 0, gcol, Kb);
      col2im_rows(g, gcol, oy0, oy1, c0, c1, gp);
    } else { /* gcol (Kb, Lt) = w^T (Kb, Og) @ gy (Og, Lt) */
      cnn_gemm(true, false, Kb, Lt, g->Og, 1, wb, g->K, gyt, g->L, 0, gcol, Lt);
      col2im(g, gcol, Lt, oy0, oy1, c0, c1, gp);
    }
  }
  unpad(g, gp, c1 - c0, gxb);
}

/* gb[o] = sum over n, oy, ox of gy[n, o]; one thread per channel, so the order is fixed */
static inline void bias_grad_channel(const geom *g, const float *gy, float *gb, int64_t o) {
  const int64_t O = g->O, L = g->L, N = g->N;
  double acc = 0;
  for (int64_t n = 0; n < N; n++) {
    /* 16 float lanes per row: vectorises, where one running float is a chain of dependent adds */
    const float *r = gy + (n * O + o) * L;
    float lane[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= L; i += 16)
      for (int l = 0; l < 16; l++) lane[l] += r[i + l];
    float s = 0;
    for (int l = 0; l < 16; l++) s += lane[l];
    for (; i < L; i++) s += r[i];
    acc += s;
  }
  gb[o] = (float)acc;
}

static void bias_grad_channels(void *arg, int64_t o0, int64_t o1) {
  const conv_job *j = arg;
  for (int64_t o = o0; o < o1; o++) bias_grad_channel(j->g, j->gy, j->y, o);
}

/* The bias gradient as a loop over channels (j: g, gy, y = gb). */
static cnn_parallel_loop bias_loop(conv_job *j) {
  const geom *g = j->g;
  return (cnn_parallel_loop){g->O, cnn_parallel_grain(g->O, g->N * g->O * g->L), bias_grad_channels, j};
}

void cnn_conv2d_bias_grad_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, float *gb) {
  geom g0;
  geom_of(&g0, s, p);
  conv_job j = {.g = &g0, .gy = gy, .y = gb};
  const cnn_parallel_loop loop = bias_loop(&j);
  cnn_parallel_loops(1, &loop);
}

/* the parts' partials at offset i, added in part order from 0 (as 0 + x turns -0 into +0) */
static inline float sum_parts(float *const *ws, int64_t parts, size_t i) {
  float s = 0;
  for (int64_t t = 0; t < parts; t++) s += ws[t][i];
  return s;
}

/* parts [p0, p1) of the weight gradient: part t sums its share of the units into ws[t] + colf */
static void weight_grad_parts(void *arg, int64_t p0, int64_t p1) {
  const conv_job *j = arg;
  const int64_t wsz = j->g->O * j->g->K;
  for (int64_t t = p0; t < p1; t++) {
    float *part = j->ws[t] + j->colf;
    int64_t u0, u1;
    cnn_parallel_part(j->units, j->parts, t, &u0, &u1);
    memset(part, 0, (size_t)wsz * sizeof(float));
    for (int64_t u = u0; u < u1; u++) weight_grad_unit(j->g, j->gy, j->x, part, u, j->ws[t]);
  }
}

static void sum_weight_parts(void *arg, int64_t i0, int64_t i1) {
  const conv_job *j = arg;
  float *const *ws = j->ws, *restrict gw = j->gw;
  const int64_t parts = j->parts;
  const size_t colf = j->colf;
  for (int64_t i = i0; i < i1; i++) gw[i] = sum_parts(ws, parts, colf + (size_t)i);
}

/* A weight gradient whose (O, K) partial is past half of L2 (2 MiB: 512K floats), on images whose
 * columns take at most 4 MiB, runs one band an image: the product's depth is the whole plane, so
 * the partial is read and written once an image rather than once a band (a band of 128K floats
 * gave ResNet-18's 256 channels at 14x14 a depth of 56 against a 2.4 MB partial): 256>256 14x14
 * 1.08-1.09x. Smaller partials keep the bands (128>128 28x28 measured even, alexnet_cifar's
 * 15x15 layer no better). Summed in another order than the bands (one product an image). */
#define WGRAD_IMAGE_FLOATS ((size_t)1 << 20)
#define WGRAD_PARTIAL_FLOATS ((size_t)1 << 19)

/* gw = the sum over units of gy band @ columns^T: the units are cut into one part per thread,
 * each summed into its own partial (O, K), then the partials are added in part order (the same
 * numbers for the same thread count, whichever threads ran the parts). `beside` runs in the same
 * job as the parts. */
static int weight_grad(const geom *g0, const float *gy, const float *x, float *gw, int nt,
                       const cnn_parallel_loop *beside) {
  const int64_t nb = batch_images(g0);
  if (nb) return weight_grad_batched(g0, nb, gy, x, gw, nt, beside);
  geom g = *g0;
  if (!g.direct && (size_t)(g.K * g.L) <= WGRAD_IMAGE_FLOATS && (size_t)(g.O * g.K) >= WGRAD_PARTIAL_FLOATS)
    g.band = g.oh;
  split_for_threads(&g, nt);
  const int64_t units = g.N * g.G * n_bands(&g), wsz = g.O * g.K;
  const size_t colf = col_floats(&g);
  workspace wsp;
  if (ws_alloc(&wsp, nt, colf + (size_t)wsz)) return -1;
  conv_job j = {.g = &g, .gy = gy, .x = x, .gw = gw, .ws = wsp.slot, .units = units, .parts = nt, .colf = colf};
  const cnn_parallel_loop loops[2] = {{nt, 1, weight_grad_parts, &j}, beside ? *beside : (cnn_parallel_loop){0}};
  cnn_parallel_loops(beside ? 2 : 1, loops);
  cnn_parallel_items(wsz, wsz * nt, sum_weight_parts, &j);
  ws_free(&wsp);
  return 0;
}

/* unit u of input_grad: image and group it / G, channel block k of blocks */
static inline void input_grad_at(const geom *g, const float *gy, const float *w, float *gx, int64_t blocks,
                                 size_t gcolf, int64_t u, float *slot) {
  int64_t it = u / blocks, k = u % blocks;
  int64_t c0 = g->Cg * k / blocks, c1 = g->Cg * (k + 1) / blocks;
  input_grad_unit(g, gy, w, gx, it / g->G, it % g->G, c0, c1, slot, slot + gcolf);
}

static void input_grad_units(void *arg, int64_t u0, int64_t u1) {
  const conv_job *j = arg;
  float *slot = j->ws[cnn_parallel_slot()];
  for (int64_t u = u0; u < u1; u++) input_grad_at(j->g, j->gy, j->w, j->y, j->blocks, j->colf, u, slot);
}

/* gx by (image, group, channel block) units: one block per item when there are enough items for
 * the threads, else the channels are split so every thread has work. */
static int input_grad(const geom *g, const float *gy, const float *w, float *gx, int nt) {
  const int64_t items = g->N * g->G;
  int64_t blocks = items >= nt ? 1 : (nt + items - 1) / items;
  if (blocks > g->Cg) blocks = g->Cg;
  const int64_t units = items * blocks, cb = (g->Cg + blocks - 1) / blocks; /* widest block */
  const size_t gcolf = g->direct ? 1 : (size_t)(cb * g->kh * g->kw * g->band * g->ow);
  const size_t gpf = g->direct ? 0 : (size_t)(cb * g->Hp * g->Wp);
  workspace ws;
  if (ws_alloc(&ws, nt, gcolf + gpf)) return -1;
  conv_job j = {.g = g, .gy = gy, .w = w, .y = gx, .ws = ws.slot, .blocks = blocks, .colf = gcolf};
  cnn_parallel_for(units, 1, input_grad_units, &j);
  ws_free(&ws);
  return 0;
}

int cnn_conv2d_weight_grad_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, const float *x,
                               float *gw, float *gb) {
  geom g;
  geom_of(&g, s, p);
  int nt = cnn_parallel_get_threads();
  /* the bias gradient's channels run beside the weight gradient's parts: one wait, not two */
  conv_job bj = {.g = &g, .gy = gy, .y = gb};
  const cnn_parallel_loop bias = bias_loop(&bj);
  if (small_strided(&g, p) && g.N > 0) {
    int rc = run_small_weight_grad(&g, p, gy, x, gw, nt, gb ? &bias : NULL);
    if (rc <= 0) return rc;
  }
  if (g.N > 0 && run_winograd_weight_grad(&g, p, gy, x, gw, nt) == 0) {
    if (gb) cnn_conv2d_bias_grad_f32(s, p, gy, gb);
    return 0;
  }
  /* rc 1: not done by the direct kernels (not applicable, or past their workspace cap); 2: the
   * bias is done, gw is not (x holds an inf or a NaN) */
  int rc = weight_grad_direct(&g, p) && g.N > 0
               ? run_direct(DIRECT_WEIGHT_GRAD, &g, p, NULL, gy, x, NULL, gw, nt, gb ? &bias : NULL, NULL)
               : 1;
  return rc == 1   ? weight_grad(&g, gy, x, gw, nt, gb ? &bias : NULL)
         : rc == 2 ? weight_grad(&g, gy, x, gw, nt, NULL)
                   : rc;
}

int cnn_conv2d_input_grad_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, const float *w,
                              float *gx) {
  geom g;
  geom_of(&g, s, p);
  if (g.N * g.C * g.H * g.W == 0) return 0;
  int nt = cnn_parallel_get_threads();
  if (small_strided(&g, p) && all_finite(w, g.O * g.Cg * g.kh * g.kw)) {
    int rc = run_small(true, &g, p, NULL, gy, w, NULL, gx, nt, NULL, NULL);
    if (rc <= 0) return rc;
  }
  if (run_winograd(true, &g, p, NULL, gy, w, NULL, gx, nt) == 0) return 0;
  const int64_t nb = plane_col2im(&g) ? batch_images(&g) : 0;
  if (nb) return input_grad_batched(&g, nb, gy, w, gx, nt);
  int rc = use_direct(&g, p) && all_finite(w, g.O * g.Cg * g.kh * g.kw)
               ? run_direct(DIRECT_INPUT_GRAD, &g, p, NULL, gy, w, NULL, gx, nt, NULL, NULL)
               : 1;
  return rc == 1 ? input_grad(&g, gy, w, gx, nt) : rc;
}

/* Both on the direct kernels: the weight gradient's parts (with the bias channels), then the input
 * gradient's slabs with the weight gradient's sum beside them: two waits where the three passes
 * took three. 0, -1 with the error set, or 1 when this does not apply (nothing was written). */
static int backward_direct(const geom *g, const cnn_conv2d_params *p, const float *gy, const float *x, const float *w,
                           float *gx, float *gw, const cnn_parallel_loop *bias, int nt) {
  if (!weight_grad_direct(g, p) || g->N * g->C * g->H * g->W == 0 || !all_finite(w, g->O * g->Cg * g->kh * g->kw))
    return 1;
  cnn_dconv dw, di;
  cnn_dconv_plan_weight_grad(&dw, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0], p->pad_lo[1], p->pad_hi[0],
                             p->pad_hi[1], nt);
  /* conv_small.c's kernels where they plan the shape, each pass on its own */
  cnn_sconv si, sw;
  const bool sgx = small_enabled() &&
                   cnn_sconv_plan_input_grad(&si, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0],
                                             p->pad_lo[1], p->pad_hi[0], p->pad_hi[1]) &&
                   si.scratch_floats <= direct_limit;
  const bool sgw = small_enabled() &&
                   cnn_sconv_plan_weight_grad(&sw, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0],
                                              p->pad_lo[1], p->pad_hi[0], p->pad_hi[1]) &&
                   sw.scratch_floats <= direct_limit;
  const size_t wsw_floats = sgw ? sw.scratch_floats : dw.scratch_floats;
  if (sgx) {
    if (wsw_floats > direct_limit) return 1;
    /* the input gradient on conv_small.c's kernels, the weight gradient's sum beside it */
    workspace wsw;
    if (ws_alloc(&wsw, nt, wsw_floats)) return -1;
    cnn_dconv_sum dsum;
    cnn_sconv_sum ssum;
    /* conv_small.c's weight gradient pairs x only with real positions, as im2col: no inf check */
    int finite = 1;
    if (sgw) cnn_sconv_weight_grad(&sw, gy, x, gw, wsw.slot, nt, bias, &ssum);
    else finite = cnn_dconv_weight_grad(&dw, gy, x, gw, wsw.slot, nt, bias, &dsum);
    int rc = run_small(true, g, p, NULL, gy, w, NULL, gx, nt, !finite ? NULL : sgw ? &ssum.loop : &dsum.loop, NULL);
    ws_free(&wsw);
    return rc ? rc : finite ? 0 : weight_grad(g, gy, x, gw, nt, NULL);
  }
  cnn_dconv_plan_input_grad(&di, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0], p->pad_lo[1], p->pad_hi[0],
                            p->pad_hi[1], nt);
  if (wsw_floats > direct_limit || di.scratch_floats > direct_limit) return 1;
  size_t packf = cnn_dconv_packed_floats(&di);
  float *pack = cnn_alloc(packf * sizeof(float));
  if (!pack) return -1;
  workspace wsw, wsi;
  if (ws_alloc(&wsw, nt, wsw_floats)) {
    cnn_free(pack, packf * sizeof(float));
    return -1;
  }
  if (ws_alloc(&wsi, nt, di.scratch_floats)) {
    ws_free(&wsw);
    cnn_free(pack, packf * sizeof(float));
    return -1;
  }
  cnn_dconv_sum sum;
  cnn_sconv_sum ssum;
  int finite = 1;
  if (sgw) cnn_sconv_weight_grad(&sw, gy, x, gw, wsw.slot, nt, bias, &ssum);
  else finite = cnn_dconv_weight_grad(&dw, gy, x, gw, wsw.slot, nt, bias, &sum);
  /* with an inf or a NaN in x the sum is left out and gw taken by im2col below */
  cnn_dconv_input_grad(&di, gy, w, gx, pack, wsi.slot, nt, !finite ? NULL : sgw ? &ssum.loop : &sum.loop);
  ws_free(&wsi);
  ws_free(&wsw);
  cnn_free(pack, packf * sizeof(float));
  return finite ? 0 : weight_grad(g, gy, x, gw, nt, NULL);
}

bool cnn_conv2d_small_grad(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, bool input_grad) {
  geom g;
  geom_of(&g, s, p);
  cnn_sconv d;
  if (!small_enabled() || g.N * g.C * g.H * g.W == 0 || !(input_grad ? use_direct(&g, p) : weight_grad_direct(&g, p)))
    return false;
  const bool planned = input_grad ? cnn_sconv_plan_input_grad(&d, g.N, g.C, g.H, g.W, g.O, g.kh, g.kw, p->pad_lo[0],
                                                              p->pad_lo[1], p->pad_hi[0], p->pad_hi[1])
                                  : cnn_sconv_plan_weight_grad(&d, g.N, g.C, g.H, g.W, g.O, g.kh, g.kw, p->pad_lo[0],
                                                               p->pad_lo[1], p->pad_hi[0], p->pad_hi[1]);
  return planned && d.scratch_floats <= direct_limit;
}

int cnn_conv2d_backward_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, const float *x,
                            const float *w, float *gx, float *gw, float *gb) {
  geom g;
  geom_of(&g, s, p);
  int nt = cnn_parallel_get_threads();
  conv_job bj = {.g = &g, .gy = gy, .y = gb};
  const cnn_parallel_loop bias = bias_loop(&bj);
  /* either gradient on the Winograd kernel: each on its own (the weight gradient takes it from 64
   * tiles, the input gradient from 256) */
  cnn_wconv wd;
  const bool winograd = winograd_plans(&wd, &g, p, WINOGRAD_INPUT_GRAD, nt) ||
                        winograd_plans(&wd, &g, p, WINOGRAD_WEIGHT_GRAD, nt);
  int rc = winograd ? 1 : backward_direct(&g, p, gy, x, w, gx, gw, gb ? &bias : NULL, nt);
  if (rc != 1) return rc;
  if (cnn_conv2d_weight_grad_f32(s, p, gy, x, gw, gb)) return -1;
  return cnn_conv2d_input_grad_f32(s, p, gy, w, gx);
}

/* ---- int64 ---- */

/* PyTorch convolves integers exactly (wrapping on overflow); nothing trains on them, so a plain
 * loop over every output and tap does. */
void cnn_conv2d_forward_i64(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const int64_t *x, const int64_t *w,
                            const int64_t *b, int64_t *y) {
  geom g;
  geom_of(&g, s, p);
  for (int64_t n = 0; n < g.N; n++)
    for (int64_t o = 0; o < g.O; o++) {
      const int64_t gi = o / g.Og;
      for (int64_t i = 0; i < g.oh; i++)
        for (int64_t j = 0; j < g.ow; j++) {
          uint64_t acc = b ? (uint64_t)b[o] : 0;
          for (int64_t c = 0; c < g.Cg; c++)
            for (int64_t ki = 0; ki < g.kh; ki++) {
              const int64_t h = i * p->stride[0] - p->pad_lo[0] + ki * p->dilation[0];
              if (h < 0 || h >= g.H) continue;
              for (int64_t kj = 0; kj < g.kw; kj++) {
                const int64_t v = j * p->stride[1] - p->pad_lo[1] + kj * p->dilation[1];
                if (v < 0 || v >= g.W) continue;
                acc += (uint64_t)x[((n * g.C + gi * g.Cg + c) * g.H + h) * g.W + v] *
                       (uint64_t)w[((o * g.Cg + c) * g.kh + ki) * g.kw + kj];
              }
            }
          y[((n * g.O + o) * g.oh + i) * g.ow + j] = (int64_t)acc;
        }
    }
}
