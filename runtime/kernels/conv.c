/* 2-d convolution kernels (see conv.h). im2col runs on a band of output rows at a time into the
 * thread's column buffer, sized to stay in L2, so the GEMM that follows reads it from cache. Work
 * units (see "work units" below) run on the OpenMP threads, each calling a single-threaded sgemm.
 * Column buffers persist between calls (growing to the largest layer), guarded by one mutex. */
#include "cnn/conv.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/alloc.h"
#include "cnn/error.h"
#include "cnn/parallel.h"
#include "conv_direct.h"

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

static int check_param(const char *what, const int64_t v[2], int64_t min) {
  if (v[0] < min || v[1] < min)
    return cnn_error_set("%s must be %s, got (%lld, %lld)", what, min == 1 ? "at least 1" : "non-negative",
                         (long long)v[0], (long long)v[1]);
  return 0;
}

int cnn_conv2d_check(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_conv2d_params *p,
                     int64_t out_hw[2]) {
  if (x->dtype != CNN_FLOAT32) return cnn_error_set("expected a float32 input, got %s", cnn_dtype_name(x->dtype));
  if (w->dtype != CNN_FLOAT32) return cnn_error_set("expected a float32 weight, got %s", cnn_dtype_name(w->dtype));
  if (b && b->dtype != CNN_FLOAT32) return cnn_error_set("expected a float32 bias, got %s", cnn_dtype_name(b->dtype));
  if (x->ndim != 4) return cnn_error_set("expected a 4-d input (N, C, H, W), got %d-d", x->ndim);
  if (w->ndim != 4) return cnn_error_set("weight must be 4-d (out, in/groups, kH, kW), got %d-d", w->ndim);
  if (check_param("stride", p->stride, 1) || check_param("dilation", p->dilation, 1) ||
      check_param("padding", p->pad_lo, 0) || check_param("padding", p->pad_hi, 0))
    return -1;
  if (p->groups < 1) return cnn_error_set("groups must be at least 1, got %lld", (long long)p->groups);
  for (int i = 0; i < 2; i++) /* keeps every size computation below far from int64 overflow */
    if (p->stride[i] > INT_MAX || p->dilation[i] > INT_MAX || p->pad_lo[i] > INT_MAX || p->pad_hi[i] > INT_MAX ||
        p->groups > INT_MAX)
      return cnn_error_set("stride, padding, dilation and groups must be below 2^31");
  int64_t O = w->size[0], Cg = w->size[1], kh = w->size[2], kw = w->size[3], g = p->groups;
  if (O % g)
    return cnn_error_set("weight has %lld output channels, not divisible by groups=%lld", (long long)O, (long long)g);
  if (x->size[1] != Cg * g)
    return cnn_error_set("input has %lld channels but weight expects %lld (groups=%lld)", (long long)x->size[1],
                         (long long)(Cg * g), (long long)g);
  if (kh < 1 || kw < 1)
    return cnn_error_set("kernel size must be at least 1, got (%lld, %lld)", (long long)kh, (long long)kw);
  if (b && (b->ndim != 1 || b->size[0] != O))
    return cnn_error_set("bias must be 1-d with %lld elements (one per output channel), got shape %s%lld%s",
                         (long long)O, b->ndim == 1 ? "(" : "",
                         b->ndim == 1 ? (long long)b->size[0] : (long long)b->ndim, b->ndim == 1 ? ")" : "-d");
  int64_t H = x->size[2] + p->pad_lo[0] + p->pad_hi[0], W = x->size[3] + p->pad_lo[1] + p->pad_hi[1];
  int64_t eh = p->dilation[0] * (kh - 1) + 1, ew = p->dilation[1] * (kw - 1) + 1;
  if (eh > H || ew > W) {
    if (p->dilation[0] == 1 && p->dilation[1] == 1)
      return cnn_error_set("kernel (%lld, %lld) is larger than the padded input (%lld, %lld)", (long long)kh,
                           (long long)kw, (long long)H, (long long)W);
    return cnn_error_set("kernel (%lld, %lld) with dilation (%lld, %lld) spans (%lld, %lld), larger than the padded "
                         "input (%lld, %lld)",
                         (long long)kh, (long long)kw, (long long)p->dilation[0], (long long)p->dilation[1],
                         (long long)eh, (long long)ew, (long long)H, (long long)W);
  }
  int64_t oh = (H - eh) / p->stride[0] + 1, ow = (W - ew) / p->stride[1] + 1;
  /* BLAS takes int dimensions */
  if (Cg * kh * kw > INT_MAX || oh * ow > INT_MAX || O > INT_MAX || x->size[2] * x->size[3] > INT_MAX)
    return cnn_error_set("convolution too large (a GEMM dimension exceeds %d)", INT_MAX);
  out_hw[0] = oh, out_hw[1] = ow;
  return 0;
}

/* ---- workspace: one buffer per thread slot, kept between calls ---- */

static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static float **ws_buf;
static size_t *ws_cap; /* floats */
static int ws_n;

static void ws_free_all(void) {
  for (int i = 0; i < ws_n; i++) free(ws_buf[i]);
  free(ws_buf);
  free(ws_cap);
  ws_buf = NULL, ws_cap = NULL, ws_n = 0;
}

static void ws_register_exit(void) { atexit(cnn_conv2d_release_workspace); }

void cnn_conv2d_release_workspace(void) {
  pthread_mutex_lock(&ws_lock);
  ws_free_all();
  pthread_mutex_unlock(&ws_lock);
}

size_t cnn_conv2d_workspace_bytes(void) {
  pthread_mutex_lock(&ws_lock);
  size_t total = 0;
  for (int i = 0; i < ws_n; i++) total += ws_cap[i] * sizeof(float);
  pthread_mutex_unlock(&ws_lock);
  return total;
}

/* Locks the workspace and makes slots 0..nslots-1 hold at least nfloats each. Returns the slot
 * array (valid until ws_release) or NULL with the error set and the lock released. */
static float **ws_acquire(int nslots, size_t nfloats) {
  pthread_once(&ws_once, ws_register_exit);
  pthread_mutex_lock(&ws_lock);
  if (nslots > ws_n) {
    float **nb = realloc(ws_buf, (size_t)nslots * sizeof *nb);
    if (nb) ws_buf = nb;
    size_t *nc = nb ? realloc(ws_cap, (size_t)nslots * sizeof *nc) : NULL;
    if (!nb || !nc) {
      pthread_mutex_unlock(&ws_lock);
      cnn_error_set("out of memory (convolution workspace)");
      return NULL;
    }
    ws_cap = nc;
    for (int i = ws_n; i < nslots; i++) ws_buf[i] = NULL, ws_cap[i] = 0;
    ws_n = nslots;
  }
  for (int i = 0; i < nslots; i++) {
    if (ws_cap[i] >= nfloats) continue;
    free(ws_buf[i]);
    size_t bytes = (nfloats * sizeof(float) + 63) / 64 * 64;
    ws_buf[i] = aligned_alloc(64, bytes);
    ws_cap[i] = ws_buf[i] ? nfloats : 0;
    if (!ws_buf[i]) {
      pthread_mutex_unlock(&ws_lock);
      cnn_error_set("cannot allocate %zu bytes for the convolution workspace", bytes);
      return NULL;
    }
  }
  return ws_buf;
}

static void ws_release(void) { pthread_mutex_unlock(&ws_lock); }

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

/* x: (Cg, H, W) -> col: (K, (oy1-oy0)*ow); xp is scratch for the padded rows */
static void im2col(const geom *g, const float *x, int64_t oy0, int64_t oy1, float *col, float *xp) {
  const int64_t ow = g->ow, Lt = (oy1 - oy0) * ow, Wp = g->Wp, sw = g->sw;
  int64_t r0, r1;
  band_rows(g, oy0, oy1, &r0, &r1);
  pad_copy(g, x, r0, r1, xp);
  const int64_t R = r1 - r0, step = g->sh * Wp;
  for (int64_t c = 0; c < g->Cg; c++)
    for (int64_t ki = 0; ki < g->kh; ki++)
      for (int64_t kj = 0; kj < g->kw; kj++) {
        float *row = col + ((c * g->kh + ki) * g->kw + kj) * Lt;
        const float *src = xp + (c * R + ki * g->dh) * Wp + kj * g->dw;
        for (int64_t oy = oy0; oy < oy1; oy++, row += ow, src += step) {
          if (sw == 1) {
            memcpy(row, src, (size_t)ow * sizeof(float));
          } else {
            for (int64_t ox = 0; ox < ow; ox++) row[ox] = src[ox * sw];
          }
        }
      }
}

/* col: ((c1-c0)*kh*kw, (oy1-oy0)*ow), the rows of channels c0..c1, accumulated into gp, the padded
 * input gradient of those channels: (c1-c0, Hp, Wp) */
static void col2im(const geom *g, const float *col, int64_t oy0, int64_t oy1, int64_t c0, int64_t c1, float *gp) {
  const int64_t ow = g->ow, Lt = (oy1 - oy0) * ow, Wp = g->Wp, sw = g->sw, step = g->sh * Wp;
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

/* Row-major C (m, n) = op(A) op(B) + beta C; empty products leave beta C. */
static void gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                 int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0)
      for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
              1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* ---- work units ----
 * Forward and weight gradient split into (image, group, band) units, all independent (the weight
 * gradient through per-thread partial sums reduced in thread order); the input gradient into
 * (image, group, channel block) units, since neighbouring bands add into the same input rows.
 * Units run on the OpenMP threads with OpenBLAS serial. OpenBLAS's own threads are never woken
 * here: they and OpenMP's spinning workers would fight over the cores. */

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
  im2col(g, xg, u->oy0, u->oy1, col, col + (size_t)(g->K * g->band * g->ow));
  *ld = u->Lt;
  return col;
}

/* ---- direct (column-free) kernels for stride-1 layers, see conv_direct.c ---- */

static bool use_direct(const geom *g, const cnn_conv2d_params *p) {
  if (algorithm == CNN_CONV2D_IM2COL) return false;
  return cnn_dconv_applies(g->kh, g->kw, p->stride, p->pad_lo, p->pad_hi, p->dilation, p->groups);
}

typedef enum { DIRECT_FORWARD, DIRECT_INPUT_GRAD, DIRECT_WEIGHT_GRAD } direct_kind;

/* Runs one direct kernel with its workspace and packed filters; 0, -1 with the error set, or 1
 * when the kernel's workspace would pass direct_limit (the caller takes im2col). */
static int run_direct(direct_kind kind, const geom *g, const cnn_conv2d_params *p, const float *a, const float *b,
                      const float *bias, float *out, int nt) {
  cnn_dconv d;
  void (*plan)(cnn_dconv *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
               int64_t, int) = kind == DIRECT_FORWARD      ? cnn_dconv_plan_forward
                               : kind == DIRECT_INPUT_GRAD ? cnn_dconv_plan_input_grad
                                                           : cnn_dconv_plan_weight_grad;
  plan(&d, g->N, g->C, g->H, g->W, g->O, g->kh, g->kw, p->pad_lo[0], p->pad_lo[1], p->pad_hi[0], p->pad_hi[1], nt);
  if (d.scratch_floats > direct_limit) return 1;
  size_t packf = kind == DIRECT_WEIGHT_GRAD ? 0 : cnn_dconv_packed_floats(&d);
  float *pack = packf ? cnn_alloc(packf * sizeof(float)) : NULL;
  if (packf && !pack) return -1;
  float **ws = ws_acquire(nt, d.scratch_floats);
  if (!ws) {
    cnn_free(pack, packf * sizeof(float));
    return -1;
  }
  if (kind == DIRECT_FORWARD) cnn_dconv_forward(&d, a, b, bias, out, pack, ws, nt);
  else if (kind == DIRECT_INPUT_GRAD) cnn_dconv_input_grad(&d, a, b, out, pack, ws, nt);
  else cnn_dconv_weight_grad(&d, a, b, out, ws, nt);
  ws_release();
  cnn_free(pack, packf * sizeof(float));
  return 0;
}

/* ---- forward ---- */

/* y[n, gi, band] = w[gi] @ columns + b. With a bias the band is filled with it first and the GEMM
 * adds (beta 1): one pass over y instead of zeroing then adding. */
static void forward_unit(const geom *g, const float *x, const float *w, const float *b, float *y, int64_t u_,
                         float *col) {
  unit u = band_unit(g, u_);
  const float *xg = x + (u.n * g->C + u.gi * g->Cg) * g->H * g->W;
  const float *wg = w + u.gi * g->Og * g->K;
  float *yt = y + (u.n * g->O + u.gi * g->Og) * g->L + u.oy0 * g->ow; /* (Og, Lt) with ld L */
  if (b)
    for (int64_t o = 0; o < g->Og; o++) {
      float *r = yt + o * g->L, bv = b[u.gi * g->Og + o];
      for (int64_t i = 0; i < u.Lt; i++) r[i] = bv;
    }
  int64_t ld;
  const float *cols = band_columns(g, xg, &u, col, &ld);
  gemm(0, 0, g->Og, u.Lt, g->K, wg, g->K, cols, ld, b ? 1 : 0, yt, g->L);
}

cnn_tensor *cnn_conv2d_forward(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p) {
  int64_t ohw[2];
  if (cnn_conv2d_check(x, w, b, p, ohw)) return NULL;
  geom g;
  geom_fill(&g, x->size[0], x->size[1], x->size[2], x->size[3], w->size[0], w->size[2], w->size[3], p);
  int64_t ysize[4] = {g.N, g.O, g.oh, g.ow};
  cnn_tensor *y = cnn_tensor_empty(CNN_FLOAT32, 4, ysize);
  cnn_tensor *xc = y ? cnn_tensor_contiguous(x) : NULL;
  cnn_tensor *wc = xc ? cnn_tensor_contiguous(w) : NULL;
  cnn_tensor *bc = wc && b ? cnn_tensor_contiguous(b) : NULL;
  if (!y || !xc || !wc || (b && !bc)) goto fail;
  int rc = 1; /* 1: not done by the direct kernels */
  if (cnn_tensor_numel(y) > 0 && use_direct(&g, p)) {
    rc = run_direct(DIRECT_FORWARD, &g, p, cnn_tensor_f32(xc), cnn_tensor_f32(wc), bc ? cnn_tensor_f32(bc) : NULL,
                    cnn_tensor_f32(y), cnn_parallel_get_threads());
    if (rc < 0) goto fail;
  }
  if (rc == 1 && cnn_tensor_numel(y) > 0) {
    int nt = cnn_parallel_get_threads();
    split_for_threads(&g, nt);
    const int64_t units = g.N * g.G * n_bands(&g);
    float **ws = ws_acquire(nt, col_floats(&g));
    if (!ws) goto fail;
    const float *xp = cnn_tensor_f32(xc), *wp = cnn_tensor_f32(wc), *bp = bc ? cnn_tensor_f32(bc) : NULL;
    float *yp = cnn_tensor_f32(y);
    if (nt > 1 && units > 1) { /* serial runs open no OpenMP region: even a one-thread team costs ~1.4 us */
#pragma omp parallel for schedule(static) num_threads(nt)
      for (int64_t u = 0; u < units; u++) forward_unit(&g, xp, wp, bp, yp, u, ws[omp_get_thread_num()]);
    } else {
      for (int64_t u = 0; u < units; u++) forward_unit(&g, xp, wp, bp, yp, u, ws[0]);
    }
    ws_release();
  }
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(bc);
  return y;
fail:
  cnn_tensor_release(y);
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(bc);
  return NULL;
}

/* ---- backward ---- */

/* part (O, K) += gy[n, gi, band] @ columns^T on group gi's rows */
static void weight_grad_unit(const geom *g, const float *gy, const float *x, float *part, int64_t u_, float *col) {
  unit u = band_unit(g, u_);
  const float *xg = x + (u.n * g->C + u.gi * g->Cg) * g->H * g->W;
  const float *gyt = gy + (u.n * g->O + u.gi * g->Og) * g->L + u.oy0 * g->ow; /* (Og, Lt) with ld L */
  int64_t ld;
  const float *cols = band_columns(g, xg, &u, col, &ld);
  gemm(0, 1, g->Og, g->K, u.Lt, gyt, g->L, cols, ld, 1, part + u.gi * g->Og * g->K, g->K);
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
    gemm(1, 0, Kb, g->L, g->Og, wb, g->K, gyg, g->L, 0, gxb, g->L);
    return;
  }
  memset(gp, 0, (size_t)((c1 - c0) * g->Hp * g->Wp) * sizeof(float));
  for (int64_t oy0 = 0; oy0 < g->oh; oy0 += g->band) {
    int64_t oy1 = oy0 + g->band < g->oh ? oy0 + g->band : g->oh, Lt = (oy1 - oy0) * g->ow;
    const float *gyt = gyg + oy0 * g->ow; /* (Og, Lt) with ld L */
    if (g->rows) {                        /* gcolT (Lt, Kb) = gy^T (Lt, Og) @ w (Og, Kb) */
      gemm(1, 0, Lt, Kb, g->Og, gyt, g->L, wb, g->K, 0, gcol, Kb);
      col2im_rows(g, gcol, oy0, oy1, c0, c1, gp);
    } else { /* gcol (Kb, Lt) = w^T (Kb, Og) @ gy (Og, Lt) */
      gemm(1, 0, Kb, Lt, g->Og, wb, g->K, gyt, g->L, 0, gcol, Lt);
      col2im(g, gcol, oy0, oy1, c0, c1, gp);
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

static void bias_grad(const geom *g, const float *gy, float *gb) {
  const int64_t O = g->O;
  if (g->N * O * g->L >= CNN_PARALLEL_GRAIN && O > 1 && cnn_parallel_get_threads() > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < O; o++) bias_grad_channel(g, gy, gb, o);
  } else {
    for (int64_t o = 0; o < O; o++) bias_grad_channel(g, gy, gb, o);
  }
}

/* the threads' partials at offset i, added in thread order from 0 (as 0 + x turns -0 into +0) */
static inline float sum_parts(float *const *ws, int team, size_t i) {
  float s = 0;
  for (int t = 0; t < team; t++) s += ws[t][i];
  return s;
}

/* gw = the sum over units of gy band @ columns^T: each thread sums its units into its own
 * partial (O, K), then the partials are added in thread order (same numbers for the same count). */
static int weight_grad(const geom *g0, const float *gy, const float *x, float *gw, int nt) {
  geom g = *g0;
  split_for_threads(&g, nt);
  const int64_t units = g.N * g.G * n_bands(&g), wsz = g.O * g.K;
  const size_t colf = col_floats(&g);
  float **ws = ws_acquire(nt, colf + (size_t)wsz);
  if (!ws) return -1;
  int team = 1;
  if (nt > 1) { /* serial runs open no OpenMP region: even a one-thread team costs ~1.4 us */
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num();
      float *part = ws[t] + colf;
      if (t == 0) team = omp_get_num_threads();
      memset(part, 0, (size_t)wsz * sizeof(float));
#pragma omp for schedule(static)
      for (int64_t u = 0; u < units; u++) weight_grad_unit(&g, gy, x, part, u, ws[t]);
    }
  } else {
    memset(ws[0] + colf, 0, (size_t)wsz * sizeof(float));
    for (int64_t u = 0; u < units; u++) weight_grad_unit(&g, gy, x, ws[0] + colf, u, ws[0]);
  }
  if (nt > 1 && wsz >= CNN_PARALLEL_GRAIN) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < wsz; i++) gw[i] = sum_parts(ws, team, colf + (size_t)i);
  } else {
    for (int64_t i = 0; i < wsz; i++) gw[i] = sum_parts(ws, team, colf + (size_t)i);
  }
  ws_release();
  return 0;
}

/* unit u of input_grad: image and group it / G, channel block k of blocks */
static inline void input_grad_at(const geom *g, const float *gy, const float *w, float *gx, int64_t blocks,
                                 size_t gcolf, int64_t u, float *slot) {
  int64_t it = u / blocks, k = u % blocks;
  int64_t c0 = g->Cg * k / blocks, c1 = g->Cg * (k + 1) / blocks;
  input_grad_unit(g, gy, w, gx, it / g->G, it % g->G, c0, c1, slot, slot + gcolf);
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
  float **ws = ws_acquire(nt, gcolf + gpf);
  if (!ws) return -1;
  if (nt > 1 && units > 1) { /* serial runs open no OpenMP region */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t u = 0; u < units; u++) input_grad_at(g, gy, w, gx, blocks, gcolf, u, ws[omp_get_thread_num()]);
  } else {
    for (int64_t u = 0; u < units; u++) input_grad_at(g, gy, w, gx, blocks, gcolf, u, ws[0]);
  }
  ws_release();
  return 0;
}

int cnn_conv2d_backward(const cnn_tensor *gy, const cnn_tensor *x, const cnn_tensor *w, const int64_t x_size[4],
                        const int64_t w_size[4], const cnn_conv2d_params *p, cnn_tensor **gx, cnn_tensor **gw,
                        cnn_tensor **gb) {
  if (gx) *gx = NULL;
  if (gw) *gw = NULL;
  if (gb) *gb = NULL;
  if ((gx && !w) || (gw && !x)) return cnn_error_set("internal: conv2d backward is missing a saved tensor");
  if (check_param("stride", p->stride, 1) || check_param("dilation", p->dilation, 1) ||
      check_param("padding", p->pad_lo, 0) || check_param("padding", p->pad_hi, 0))
    return -1;
  if (p->groups < 1 || w_size[1] * p->groups != x_size[1] || w_size[0] % p->groups)
    return cnn_error_set("internal: conv2d backward given inconsistent shapes");
  int64_t N = x_size[0], C = x_size[1], O = w_size[0], kh = w_size[2], kw = w_size[3];
  geom g;
  geom_fill(&g, N, C, x_size[2], x_size[3], O, kh, kw, p);
  if (gy->dtype != CNN_FLOAT32 || gy->ndim != 4 || gy->size[0] != N || gy->size[1] != O || gy->size[2] != g.oh ||
      gy->size[3] != g.ow)
    return cnn_error_set("output gradient has the wrong shape or dtype");
  if ((x && (x->ndim != 4 || x->size[1] != C || x->size[0] != N)) || (w && (w->ndim != 4 || w->size[0] != O)))
    return cnn_error_set("internal: conv2d backward given tensors of the wrong shape");

  cnn_tensor *gyc = cnn_tensor_contiguous(gy);
  cnn_tensor *xc = gyc && gw ? cnn_tensor_contiguous(x) : NULL;
  cnn_tensor *wc = gyc && gx ? cnn_tensor_contiguous(w) : NULL;
  cnn_tensor *rx = gx ? cnn_tensor_empty(CNN_FLOAT32, 4, x_size) : NULL;
  cnn_tensor *rw = gw ? cnn_tensor_empty(CNN_FLOAT32, 4, w_size) : NULL;
  cnn_tensor *rb = gb ? cnn_tensor_empty(CNN_FLOAT32, 1, &O) : NULL;
  if (!gyc || (gw && (!xc || !rw)) || (gx && (!wc || !rx)) || (gb && !rb)) goto fail;

  const float *gyp = cnn_tensor_f32(gyc);
  int nt = cnn_parallel_get_threads();
  if (rb) bias_grad(&g, gyp, cnn_tensor_f32(rb));
  bool direct = use_direct(&g, p);
  if (rw) { /* rc 1: not done by the direct kernels (not applicable, or past their workspace cap) */
    int rc = direct && N > 0
                 ? run_direct(DIRECT_WEIGHT_GRAD, &g, p, gyp, cnn_tensor_f32(xc), NULL, cnn_tensor_f32(rw), nt)
                 : 1;
    if (rc < 0 || (rc == 1 && weight_grad(&g, gyp, cnn_tensor_f32(xc), cnn_tensor_f32(rw), nt))) goto fail;
  }
  if (rx && cnn_tensor_numel(rx) > 0) {
    int rc = direct ? run_direct(DIRECT_INPUT_GRAD, &g, p, gyp, cnn_tensor_f32(wc), NULL, cnn_tensor_f32(rx), nt) : 1;
    if (rc < 0 || (rc == 1 && input_grad(&g, gyp, cnn_tensor_f32(wc), cnn_tensor_f32(rx), nt))) goto fail;
  }
  cnn_tensor_release(gyc);
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  if (gx) *gx = rx;
  if (gw) *gw = rw;
  if (gb) *gb = rb;
  return 0;
fail:
  cnn_tensor_release(gyc);
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(rx);
  cnn_tensor_release(rw);
  cnn_tensor_release(rb);
  return -1;
}
