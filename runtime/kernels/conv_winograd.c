/* Winograd F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
 * each 2x2 block of outputs (a tile) of a 3x3 correlation comes from the 4x4 input patch d around
 * it as
 *     Y = A^T [ sum over channels (G g G^T) .* (B^T d B) ] A
 * so a tile costs 16 multiply-adds a filter and channel where the direct convolution spends 36.
 * Summed over the channels, the 16 element-wise products are 16 GEMMs, (O x C) filters times
 * (C x tiles) transformed inputs, on the runtime's GEMM (called from inside the parallel loop, so
 * serially: the loop is over units of tiles).
 *
 *   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
 *         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |        | 0    0    1   |
 *
 * Shapes (a unit is R tile rows of one image, or P whole images: TB tiles, tile (r, tx) of the unit's
 * image i at column (i * R + r) * tw + tx):
 *   u (16, O, C)     G g G^T of every filter and channel, made once a call
 *   V (C, 16, TB)    B^T d B of every tile and channel (the patch zero-padded past the plane)
 *   M (O, 16, TB)    M[., e, .] = u[e] (O, C) @ V[., e, .] (C, TB), e = 0..15
 *   y                A^T M A of every tile and filter, with the epilogue, rows past H and
 *                    columns past W dropped
 * V and M are the thread's workspace (from 128 channels they outgrow the 1 MiB L2: wider products
 * measured faster than units small enough to stay, see UNIT_TILES).
 *
 * The weight gradient runs the adjoints: gy's 2x2 tiles become dM = A gy A^T (O, 16, TB), each
 * thread part accumulates dU[e] += dM[., e, .] @ V[., e, .]^T (O, C) over its fixed share of the
 * units, and gw = G^T dU G once the parts are summed in order. The input gradient is the forward
 * over gy with the filters turned by 180 degrees and transposed (C and O swap).
 *
 * Rounding: the transforms only add, subtract and halve, so the result differs from the direct
 * sum by a few units in the last place of the sum of |terms| (the tests bound it as they bound
 * im2col's). An inf or a NaN in x does not stay in its outputs, as the direct sum keeps it: the
 * transforms mix the patch, inf - inf is NaN. Nor do huge finite values (from ~1e37) always give
 * the direct sum's finite results: a transform or a product of sums can overflow. So the input
 * transform watches for non-finite values (one add a vector into a running sum), the output
 * transform for non-finite results (conv.c scans the weight gradient's gw), and the run reports them: the
 * caller recomputes the layer on another kernel, whose results it then has (infs it makes
 * included). The filters are checked by the caller (conv.c's all_finite) before the transform.
 *
 * Vectors run along a tile row: 16 tiles at a time, whose patches start at columns 2 tx - 1, so
 * an input row is read as two pairs of overlapping vectors and split into its even and odd
 * columns by one permute each. */
#include "kernels/conv_winograd.h"

#include "core/gemm.h"
#include "core/parallel.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static int enabled = -1; /* 1 on, 0 off, -1 until the first plan reads CNN_CONV_WINOGRAD */

void cnn_wconv_set_enabled(bool on) { enabled = on; }

bool cnn_wconv_enabled(void) {
#ifdef __AVX512F__
  if (enabled < 0) { /* benign race: every thread reads the same environment */
    const char *e = getenv("CNN_CONV_WINOGRAD");
    enabled = !(e && strcmp(e, "0") == 0);
  }
  return enabled && __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

/* Tiles a unit aims at: the 16 GEMMs' width. Measured on one thread (CPU time, ResNet-18's 64-256
 * channels at 56x56-14x14, VGG-16's 256 at 56x56): 224 and more ran 10-25% faster than 56-112,
 * V and M then spilling out of L2 costing less than narrow products. */
#define UNIT_TILES 256

bool cnn_wconv_plan(cnn_wconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, bool weight_grad, int nt) {
  memset(d, 0, sizeof *d);
  /* measured against the direct kernels on one thread: 64 channels and up on 14x14-56x56 planes
   * gain 1.4-1.8x (ResNet-18's and VGG-16's layers at 224); ResNet-20's 16-64 channels on 8x8-32x32
   * and ResNet-18's 512 at 7x7 none (16-wide products, tiles a quarter padding) */
  if (!cnn_wconv_enabled() || N < 1 || C < 64 || O < 64 || H < 12 || W < 12) return false;
  if (C > (1 << 23) || O > (1 << 23)) return false; /* the gathers' offsets (15 x 9 O) stay 32-bit */
  /* and enough tiles to repay the filters' transform (the forward's and input gradient's) or the
   * gradient's (the weight gradient's): batch 1 at 14x14 (49 tiles) ran 0.6x, at 28x28 (196) 1.0x,
   * 392 tiles and up 1.2x and more; the weight gradient gained from 49 tiles (1.2x) */
  if (N * ((H + 1) / 2) * ((W + 1) / 2) < (weight_grad ? 64 : 256)) return false;
  d->N = N, d->C = C, d->H = H, d->W = W, d->O = O;
  d->th = (H + 1) / 2, d->tw = (W + 1) / 2;
  /* a unit of about UNIT_TILES tiles: R tile rows of an image, or P whole images */
  int64_t R = (UNIT_TILES + d->tw - 1) / d->tw, P = 1;
  if (R >= d->th) R = d->th, P = UNIT_TILES / (d->th * d->tw);
  if (P < 1) P = 1;
  /* enough units for every thread to take several */
  while (P > 1 && (N + P - 1) / P < 4 * (int64_t)nt) P--;
  while (P == 1 && R > 1 && N * ((d->th + R - 1) / R) < 4 * (int64_t)nt) R--;
  d->R = R, d->P = P;
  d->bands = (d->th + R - 1) / R;
  d->units = (N + P - 1) / P * d->bands;
  d->scratch_floats = (size_t)16 * (size_t)(C + O) * (size_t)(P * R * d->tw) + 16;
  return true;
}

size_t cnn_wconv_filter_floats(const cnn_wconv *d) { return (size_t)16 * (size_t)d->O * (size_t)d->C; }

#ifdef __AVX512F__
#include <immintrin.h>

static inline __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

/* 16 floats of row (W of them) from column q on, zeros outside [0, W) (q >= -1) */
static inline __m512 row_vec(const float *row, int64_t W, int64_t q) {
  if (q >= W) return _mm512_setzero_ps();
  if (q >= 0) return _mm512_maskz_loadu_ps(lanes(W - q), row + q);
  /* q = -1: column 0 on moves to lane 1, lane 0 is the left padding */
  const __m512 v = _mm512_maskz_loadu_ps(lanes(W), row);
  return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(v), _mm512_setzero_si512(), 15));
}

/* ---- the filters' transform u = G g G^T, 16 channels a vector, filters split over the threads ---- */

typedef struct fjob {
  const cnn_wconv *d;
  const float *w;
  bool flipped;
  float *u;
} fjob;

static void filter_rows(void *arg, int64_t o0, int64_t o1) {
  const fjob *j = arg;
  const int64_t O = j->d->O, C = j->d->C;
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512i step = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  /* the 16 channels' taps are 9 floats apart (w[o][c]), or 9 O apart when the input gradient reads
   * w[c][o] turned by 180 degrees */
  const __m512i at = _mm512_mullo_epi32(step, _mm512_set1_epi32((int)(j->flipped ? 9 * O : 9)));
  for (int64_t o = o0; o < o1; o++)
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const __mmask16 mk = lanes(C - c0);
      const float *base = j->flipped ? j->w + (c0 * O + o) * 9 : j->w + (o * C + c0) * 9;
      __m512 g[9];
      for (int k = 0; k < 9; k++)
        g[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, at, base + (j->flipped ? 8 - k : k), 4);
      __m512 t[4][3]; /* G g */
      for (int c = 0; c < 3; c++) {
        t[0][c] = g[c];
        t[1][c] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[c], g[3 + c]), g[6 + c]));
        t[2][c] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[c], g[3 + c]), g[6 + c]));
        t[3][c] = g[6 + c];
      }
      for (int i = 0; i < 4; i++) { /* (G g) G^T */
        const __m512 r[4] = {t[i][0], _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])),
                             _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])), t[i][2]};
        for (int k = 0; k < 4; k++) _mm512_mask_storeu_ps(j->u + ((int64_t)(i * 4 + k) * O + o) * C + c0, mk, r[k]);
      }
    }
}

void cnn_wconv_filters(const cnn_wconv *d, const float *w, bool flipped, float *u) {
  fjob j = {d, w, flipped, u};
  cnn_parallel_items(d->O, d->O * d->C * 16, filter_rows, &j);
}

/* 32 consecutive floats (a0, a1) split into their even and odd positions: columns 2 t and 2 t + 1
 * of 16 tiles */
static inline void split_columns(__m512 a0, __m512 a1, __m512 *even, __m512 *odd) {
  const __m512i e = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i o = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  *even = _mm512_permutex2var_ps(a0, e, a1);
  *odd = _mm512_permutex2var_ps(a0, o, a1);
}

/* Four elements of a transform for 16 tiles into their rows of a (., 16, TB) buffer (the lanes past
 * the unit's tiles not stored), added into the running sums that watch for inf and NaN (lanes
 * loaded as zeros add nothing) */
static inline void store_four(float *dst, int64_t TB, __mmask16 mk, __m512 a, __m512 b, __m512 c, __m512 d,
                              __m512 *sum0, __m512 *sum1) {
  _mm512_mask_storeu_ps(dst, mk, a);
  _mm512_mask_storeu_ps(dst + TB, mk, b);
  _mm512_mask_storeu_ps(dst + 2 * TB, mk, c);
  _mm512_mask_storeu_ps(dst + 3 * TB, mk, d);
  *sum0 = _mm512_add_ps(*sum0, _mm512_add_ps(a, b));
  *sum1 = _mm512_add_ps(*sum1, _mm512_add_ps(c, d));
}

typedef struct wjob {
  const cnn_wconv *d;
  const float *x, *u, *b;
  float *y;
  float *const *ws;
  atomic_int bad;
} wjob;

/* V (C, 16, TB) columns col0 on of image n's tile rows [ty0, ty0 + nr); returns a sum of every value written,
 * which is finite when x was (or inf / NaN when it was not, or overflowed) */
static __m512 input_transform(const cnn_wconv *d, const float *x, int64_t n, int64_t ty0, int64_t nr, float *V,
                              int64_t TB, int64_t col0) {
  const int64_t C = d->C, H = d->H, W = d->W, tw = d->tw;
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  for (int64_t c = 0; c < C; c++) {
    const float *xc = x + (n * C + c) * H * W;
    if (c + 1 < C) { /* the next channel's rows, while this one's are transformed */
      const int64_t r0 = 2 * ty0 - 1 < 0 ? 0 : 2 * ty0 - 1, r1 = 2 * (ty0 + nr) + 1 > H ? H : 2 * (ty0 + nr) + 1;
      const char *p = (const char *)(xc + H * W + r0 * W), *end = (const char *)(xc + H * W + r1 * W);
      for (; p < end; p += 64) _mm_prefetch(p, _MM_HINT_T0);
    }
    for (int64_t r = 0; r < nr; r++) {
      const int64_t ty = ty0 + r;
      for (int64_t tx = 0; tx < tw; tx += 16) {
        const __mmask16 mk = lanes(tw - tx);
        __m512 p[4][4]; /* p[i][j]: patch element (i, j) of 16 tiles */
        for (int i = 0; i < 4; i++) {
          const int64_t iy = 2 * ty - 1 + i;
          if (iy < 0 || iy >= H) {
            p[i][0] = p[i][1] = p[i][2] = p[i][3] = _mm512_setzero_ps();
            continue;
          }
          const float *row = xc + iy * W;
          const int64_t q = 2 * tx - 1; /* the first patch's first column */
          const __m512 a0 = row_vec(row, W, q), a1 = row_vec(row, W, q + 16);
          const __m512 b0 = row_vec(row, W, q + 2), b1 = row_vec(row, W, q + 18);
          split_columns(a0, a1, &p[i][0], &p[i][1]);
          split_columns(b0, b1, &p[i][2], &p[i][3]);
        }
        __m512 t[4][4]; /* B^T p */
        for (int j = 0; j < 4; j++) {
          t[0][j] = _mm512_sub_ps(p[0][j], p[2][j]);
          t[1][j] = _mm512_add_ps(p[1][j], p[2][j]);
          t[2][j] = _mm512_sub_ps(p[2][j], p[1][j]);
          t[3][j] = _mm512_sub_ps(p[1][j], p[3][j]);
        }
        float *v = V + c * 16 * TB + col0 + r * tw + tx;
        for (int i = 0; i < 4; i++) { /* (B^T p) B */
          const __m512 v0 = _mm512_sub_ps(t[i][0], t[i][2]), v1 = _mm512_add_ps(t[i][1], t[i][2]);
          const __m512 v2 = _mm512_sub_ps(t[i][2], t[i][1]), v3 = _mm512_sub_ps(t[i][1], t[i][3]);
          store_four(v + i * 4 * TB, TB, mk, v0, v1, v2, v3, &sum0, &sum1);
        }
      }
    }
  }
  return _mm512_add_ps(sum0, sum1);
}

/* y of image n's tile rows [ty0, ty0 + nr) from M (O, 16, TB) columns col0 on, with the epilogue;
 * returns a sum of v - v over the outputs v before the epilogue: 0, or NaN when one is not finite */
static __m512 output_transform(const cnn_wconv *d, const float *M, const float *b, int64_t n, int64_t ty0, int64_t nr,
                               int64_t TB, int64_t col0, float *y) {
  const int64_t O = d->O, H = d->H, W = d->W, tw = d->tw;
  /* y0 (the tiles' left outputs) and y1 (their right ones) interleaved into one row */
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __m512 zero = _mm512_setzero_ps();
  __m512 check = zero;
  for (int64_t o = 0; o < O; o++) {
    float *yo = y + (n * O + o) * H * W;
    const float *res = d->residual ? d->residual + (n * O + o) * H * W : NULL;
    const __m512 bias = _mm512_set1_ps(b ? b[o] : 0.0f), scale = _mm512_set1_ps(d->scale ? d->scale[o] : 1.0f);
    for (int64_t r = 0; r < nr; r++) {
      const int64_t ty = ty0 + r;
      for (int64_t tx = 0; tx < tw; tx += 16) {
        const __mmask16 mk = lanes(tw - tx);
        const float *m = M + o * 16 * TB + col0 + r * tw + tx;
        __m512 s[2][4]; /* A^T M */
        for (int j = 0; j < 4; j++) {
          const __m512 m0 = _mm512_maskz_loadu_ps(mk, m + (0 + j) * TB),
                       m1 = _mm512_maskz_loadu_ps(mk, m + (4 + j) * TB);
          const __m512 m2 = _mm512_maskz_loadu_ps(mk, m + (8 + j) * TB),
                       m3 = _mm512_maskz_loadu_ps(mk, m + (12 + j) * TB);
          s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
          s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        const int64_t x0 = 2 * tx, ncol = W - x0 < 32 ? W - x0 : 32;
        const __mmask16 k0 = lanes(ncol), k1 = lanes(ncol - 16 > 0 ? ncol - 16 : 0);
        for (int i = 0; i < 2; i++) {
          const int64_t oy = 2 * ty + i;
          if (oy >= H) break;
          /* (A^T M) A: the tiles' two outputs of row i */
          const __m512 y0 = _mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]);
          const __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]);
          check = _mm512_add_ps(check, _mm512_add_ps(_mm512_sub_ps(y0, y0), _mm512_sub_ps(y1, y1)));
          __m512 z0 = _mm512_permutex2var_ps(y0, lo, y1), z1 = _mm512_permutex2var_ps(y0, hi, y1);
          z0 = _mm512_fmadd_ps(z0, scale, bias), z1 = _mm512_fmadd_ps(z1, scale, bias);
          if (res) {
            z0 = _mm512_add_ps(z0, _mm512_maskz_loadu_ps(k0, res + oy * W + x0));
            if (ncol > 16) z1 = _mm512_add_ps(z1, _mm512_maskz_loadu_ps(k1, res + oy * W + x0 + 16));
          }
          if (d->relu) { /* as F.relu: v <= 0 gives +0, NaN stays NaN */
            z0 = _mm512_mask_mov_ps(z0, _mm512_cmp_ps_mask(z0, zero, _CMP_LE_OQ), zero);
            z1 = _mm512_mask_mov_ps(z1, _mm512_cmp_ps_mask(z1, zero, _CMP_LE_OQ), zero);
          }
          _mm512_mask_storeu_ps(yo + oy * W + x0, k0, z0);
          if (ncol > 16) _mm512_mask_storeu_ps(yo + oy * W + x0 + 16, k1, z1);
        }
      }
    }
  }
  return check;
}

/* A unit's images [n0, n0 + np) and tile rows [ty0, ty0 + nr) of each: per tiles an image, TB in all */
typedef struct unit_span {
  int64_t n0, np, ty0, nr, per, TB;
} unit_span;

static unit_span unit_at(const cnn_wconv *d, int64_t unit) {
  unit_span s;
  s.n0 = unit / d->bands * d->P, s.ty0 = unit % d->bands * d->R;
  s.np = d->N - s.n0 < d->P ? d->N - s.n0 : d->P, s.nr = d->th - s.ty0 < d->R ? d->th - s.ty0 : d->R;
  s.per = s.nr * d->tw, s.TB = s.np * s.per;
  return s;
}

/* whether a running sum met an inf or a NaN (x - x is 0 for finite x, NaN otherwise) */
static inline bool not_finite(__m512 sum) {
  return _mm512_cmp_ps_mask(_mm512_sub_ps(sum, sum), _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0;
}

static void run_units(void *arg, int64_t u0, int64_t u1) {
  wjob *j = arg;
  const cnn_wconv *d = j->d;
  float *V = j->ws[cnn_parallel_slot()];
  for (int64_t unit = u0; unit < u1; unit++) {
    const unit_span s = unit_at(d, unit);
    const int64_t n0 = s.n0, np = s.np, ty0 = s.ty0, nr = s.nr, per = s.per, TB = s.TB;
    float *M = V + 16 * d->C * TB;
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < np; i++)
      sum = _mm512_add_ps(sum, input_transform(d, j->x, n0 + i, ty0, nr, V, TB, i * per));
    if (not_finite(sum)) {
      atomic_store_explicit(&j->bad, 1, memory_order_relaxed);
      continue;
    }
    for (int e = 0; e < 16; e++)
      cnn_gemm(false, false, d->O, TB, d->C, 1.0f, j->u + (int64_t)e * d->O * d->C, d->C, V + e * TB, 16 * TB, 0.0f,
               M + e * TB, 16 * TB);
    __m512 check = _mm512_setzero_ps();
    for (int64_t i = 0; i < np; i++)
      check = _mm512_add_ps(check, output_transform(d, M, j->b, n0 + i, ty0, nr, TB, i * per, j->y));
    if (not_finite(check)) atomic_store_explicit(&j->bad, 1, memory_order_relaxed);
  }
}

/* ---- weight gradient: dU[e] = sum over tiles of dM[e] (O, tiles) @ V[e]^T (tiles, C), where dM = A gy A^T
 * (4x4 from each 2x2 tile of gy: the output transform's adjoint), then gw = G^T dU G ---- */

/* dM (O, 16, TB) columns col0 on of image n's tile rows [ty0, ty0 + nr) of gy; returns the sum of
 * the values written (finite when gy was) */
static __m512 grad_transform(const cnn_wconv *d, const float *gy, int64_t n, int64_t ty0, int64_t nr, float *dM,
                             int64_t TB, int64_t col0) {
  const int64_t O = d->O, H = d->H, W = d->W, tw = d->tw;
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  for (int64_t o = 0; o < O; o++) {
    const float *go = gy + (n * O + o) * H * W;
    for (int64_t r = 0; r < nr; r++) {
      const int64_t ty = ty0 + r;
      for (int64_t tx = 0; tx < tw; tx += 16) {
        const __mmask16 mk = lanes(tw - tx);
        __m512 g[2][2]; /* g[i][j]: output (i, j) of 16 tiles */
        for (int i = 0; i < 2; i++) {
          const int64_t oy = 2 * ty + i;
          if (oy >= H) {
            g[i][0] = g[i][1] = _mm512_setzero_ps();
            continue;
          }
          const float *row = go + oy * W;
          const __m512 a0 = row_vec(row, W, 2 * tx), a1 = row_vec(row, W, 2 * tx + 16);
          split_columns(a0, a1, &g[i][0], &g[i][1]);
        }
        __m512 t[4][2]; /* A g */
        for (int j = 0; j < 2; j++) {
          t[0][j] = g[0][j];
          t[1][j] = _mm512_add_ps(g[0][j], g[1][j]);
          t[2][j] = _mm512_sub_ps(g[0][j], g[1][j]);
          t[3][j] = _mm512_sub_ps(_mm512_setzero_ps(), g[1][j]);
        }
        float *m = dM + o * 16 * TB + col0 + r * tw + tx;
        for (int a = 0; a < 4; a++) { /* (A g) A^T */
          const __m512 m0 = t[a][0], m1 = _mm512_add_ps(t[a][0], t[a][1]);
          const __m512 m2 = _mm512_sub_ps(t[a][0], t[a][1]), m3 = _mm512_sub_ps(_mm512_setzero_ps(), t[a][1]);
          store_four(m + a * 4 * TB, TB, mk, m0, m1, m2, m3, &sum0, &sum1);
        }
      }
    }
  }
  return _mm512_add_ps(sum0, sum1);
}

typedef struct gjob {
  const cnn_wconv *d;
  const float *gy, *x;
  float *gw;
  float *const *ws, *const *partial;
  int64_t parts;
  atomic_int bad;
} gjob;

/* parts [p0, p1): part p sums the units cnn_parallel_part gives it into partial[p] (16, O, C) */
static void grad_parts(void *arg, int64_t p0, int64_t p1) {
  gjob *j = arg;
  const cnn_wconv *d = j->d;
  float *V = j->ws[cnn_parallel_slot()];
  for (int64_t p = p0; p < p1; p++) {
    int64_t lo, hi;
    cnn_parallel_part(d->units, j->parts, p, &lo, &hi);
    float *dU = j->partial[p];
    if (lo == hi) memset(dU, 0, cnn_wconv_filter_floats(d) * sizeof(float));
    for (int64_t unit = lo; unit < hi; unit++) {
      const unit_span s = unit_at(d, unit);
      const int64_t TB = s.TB;
      float *dM = V + 16 * d->C * TB;
      __m512 sum = _mm512_setzero_ps();
      for (int64_t i = 0; i < s.np; i++) {
        sum = _mm512_add_ps(sum, input_transform(d, j->x, s.n0 + i, s.ty0, s.nr, V, TB, i * s.per));
        sum = _mm512_add_ps(sum, grad_transform(d, j->gy, s.n0 + i, s.ty0, s.nr, dM, TB, i * s.per));
      }
      if (not_finite(sum)) {
        atomic_store_explicit(&j->bad, 1, memory_order_relaxed);
        break;
      }
      for (int e = 0; e < 16; e++)
        cnn_gemm(false, true, d->O, d->C, TB, 1.0f, dM + e * TB, 16 * TB, V + e * TB, 16 * TB, unit == lo ? 0.0f : 1.0f,
                 dU + (int64_t)e * d->O * d->C, d->C);
    }
  }
}

/* gw[o, c] = G^T dU G, dU the parts' partials summed in part order, for (o, c) pairs [i0, i1) */
static void grad_filters(void *arg, int64_t i0, int64_t i1) {
  const gjob *j = arg;
  const int64_t OC = j->d->O * j->d->C;
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512i at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                        _mm512_set1_epi32(9)); /* 16 filters' taps, 9 floats apart */
  for (int64_t i = i0; i < i1; i += 16) {                      /* 16 (o, c) pairs a vector */
    const __mmask16 mk = lanes(i1 - i);
    __m512 du[16];
    for (int e = 0; e < 16; e++) {
      __m512 acc = _mm512_maskz_loadu_ps(mk, j->partial[0] + e * OC + i);
      for (int64_t p = 1; p < j->parts; p++)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mk, j->partial[p] + e * OC + i));
      du[e] = acc;
    }
    __m512 t[3][4]; /* G^T dU */
    for (int b = 0; b < 4; b++) {
      const __m512 s = _mm512_mul_ps(half, _mm512_add_ps(du[4 + b], du[8 + b]));
      t[0][b] = _mm512_add_ps(du[b], s);
      t[1][b] = _mm512_mul_ps(half, _mm512_sub_ps(du[4 + b], du[8 + b]));
      t[2][b] = _mm512_add_ps(s, du[12 + b]);
    }
    float *g = j->gw + i * 9;
    for (int k = 0; k < 3; k++) { /* (G^T dU) G */
      const __m512 s = _mm512_mul_ps(half, _mm512_add_ps(t[k][1], t[k][2]));
      _mm512_mask_i32scatter_ps(g + k * 3 + 0, mk, at, _mm512_add_ps(t[k][0], s), 4);
      _mm512_mask_i32scatter_ps(g + k * 3 + 1, mk, at, _mm512_mul_ps(half, _mm512_sub_ps(t[k][1], t[k][2])), 4);
      _mm512_mask_i32scatter_ps(g + k * 3 + 2, mk, at, _mm512_add_ps(s, t[k][3]), 4);
    }
  }
}

bool cnn_wconv_weight_grad(const cnn_wconv *d, const float *gy, const float *x, float *gw, float *const *ws,
                           float *const *partial, int parts) {
  gjob j = {.d = d, .gy = gy, .x = x, .gw = gw, .ws = ws, .partial = partial, .parts = parts};
  atomic_init(&j.bad, 0);
  cnn_parallel_for(parts, 1, grad_parts, &j);
  if (atomic_load(&j.bad)) return false;
  cnn_parallel_items(d->O * d->C, d->O * d->C * 16 * parts, grad_filters, &j);
  return true;
}

bool cnn_wconv_run(const cnn_wconv *d, const float *x, const float *u, const float *b, float *y, float *const *ws) {
  wjob j = {.d = d, .x = x, .u = u, .b = b, .y = y, .ws = ws};
  atomic_init(&j.bad, 0);
  cnn_parallel_for(d->units, 1, run_units, &j);
  return atomic_load(&j.bad) == 0;
}

#else

void cnn_wconv_filters(const cnn_wconv *d, const float *w, bool flipped, float *u) {
  (void)d, (void)w, (void)flipped, (void)u;
}

bool cnn_wconv_weight_grad(const cnn_wconv *d, const float *gy, const float *x, float *gw, float *const *ws,
                           float *const *partial, int parts) {
  (void)d, (void)gy, (void)x, (void)gw, (void)ws, (void)partial, (void)parts;
  return false;
}

bool cnn_wconv_run(const cnn_wconv *d, const float *x, const float *u, const float *b, float *y, float *const *ws) {
  (void)d, (void)x, (void)u, (void)b, (void)y, (void)ws;
  return false;
}

#endif
