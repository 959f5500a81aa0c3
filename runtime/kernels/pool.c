/* Pooling kernels (see kernels/pool.h). Every (image, channel) plane is independent: loops run
 * over planes on the runtime's threads (parallel.h), forward and backward alike, so each gradient
 * plane is written by one thread in a fixed order. Window bounds follow PyTorch's CPU kernels exactly. */
#include "kernels/pool.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/parallel.h"

cnn_pool2d_params cnn_pool2d_default_params(int64_t k) {
  cnn_pool2d_params p = {{k, k}, {k, k}, {0, 0}, {1, 1}, false, true, 0};
  return p;
}

/* floor division for a possibly negative numerator (den > 0) */
static int64_t div_floor(int64_t num, int64_t den) {
  int64_t q = num / den;
  return (num % den != 0 && num < 0) ? q - 1 : q;
}

int64_t cnn_pool2d_out_size(int64_t in, int64_t k, int64_t pad, int64_t s, int64_t d, bool ceil_mode) {
  int64_t o = div_floor(in + 2 * pad - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && (o - 1) * s >= in + pad) o--; /* the last window must start inside input or left padding */
  return o;
}

/* One pooling call's operands, for the ranges (of planes, or of output rows) run on the pool. */
typedef struct {
  const cnn_pool2d_params *p;
  const float *x, *g;
  float *y;
  int64_t *idx;
  const int64_t *ix;
  int64_t H, W, oh, ow;
  bool k2s2, blocks, relu;
} pool_job;

/* Pooling loops go parallel from a quarter of the elementwise grain: each element is a window. */
static void pool_items(int64_t items, int64_t work, cnn_parallel_fn fn, pool_job *j) {
  cnn_parallel_items(items, work * 4, fn, j);
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
 * (oh, ow) with idx the flat position in the plane, scanned in the general loop's order. The scalar
 * form, for planes the vector one below does not take (rows of over POOL_SCRATCH / 2 outputs, 2^31
 * cells or more). */
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

/* The same 2x2/stride-2 max in two vector passes through a small scratch (GCC vector extensions,
 * lowered to whatever the target has). take_max's scan keeps, of the window's four cells, the last
 * NaN, else the first maximum: that is the greatest under the key (NaN above all numbers; among NaNs
 * the larger flat index; among equal numbers the smaller index), and a greatest element can be
 * found in any order. So pass 1 reduces each column pair (rows 2i, 2i+1) and pass 2 each pair of
 * those, both comparing by that key, and the result (value bits and index) is exactly the scan's.
 * Pass 1 is one short loop per output row (2 ow columns); pass 2 runs flat over many output rows,
 * so short rows (LeNet's 14 and 5) still fill whole vectors. Indices are int32 inside: the caller
 * keeps planes below 2^31 cells. */
#define V8 8
typedef float v8f __attribute__((vector_size(V8 * sizeof(float))));
typedef int32_t v8i __attribute__((vector_size(V8 * sizeof(int32_t))));
typedef int64_t v8l __attribute__((vector_size(V8 * sizeof(int64_t))));
#ifdef __clang__
#define EVENS(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define ODDS(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#define INTERLEAVE_LO(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11)
#define INTERLEAVE_HI(a, b) __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15)
#else
#define EVENS(a, b) __builtin_shuffle(a, b, (v8i){0, 2, 4, 6, 8, 10, 12, 14})
#define ODDS(a, b) __builtin_shuffle(a, b, (v8i){1, 3, 5, 7, 9, 11, 13, 15})
#define INTERLEAVE_LO(a, b) __builtin_shuffle(a, b, (v8i){0, 8, 1, 9, 2, 10, 3, 11})
#define INTERLEAVE_HI(a, b) __builtin_shuffle(a, b, (v8i){4, 12, 5, 13, 6, 14, 7, 15})
#endif
#define POOL_SCRATCH 1024 /* pass-1 results held at once: 8 KB of stack */

/* Macros, not functions: a function taking or returning a 32-byte vector has a different ABI with
 * and without AVX, which GCC warns about (-Wpsabi) on plain x86-64 builds. */
#define LOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define STORE(p, v) memcpy((p), &(v), sizeof(v))
/* lanes of b where m is all ones, of a where it is 0 (bitwise, so NaN payloads survive) */
#define BLEND(m, a, b) (((a) & ~(m)) | ((b) & (m)))

/* pass 1, one cell: of a at ia and the cell below it (c at ia + W, later in the scan), the greater
 * by the key */
static inline void vert1(float a, float c, int32_t ia, int32_t W, float *sv, int32_t *si) {
  const bool tc = c > a || c != c;
  *sv = tc ? c : a;
  *si = tc ? ia + W : ia;
}

/* pass 1 over columns [0, n) of rows r0 and r0 + W: sv, si (n) = the greater cell of each column;
 * ia0 is r0's flat index in its plane. n >= V8 runs as vectors, the last one overlapping. */
static void max2x2_vert(const float *r0, int64_t W, int32_t ia0, int64_t n, float *sv, int32_t *si) {
  const float *r1 = r0 + W;
  if (n < V8) {
    for (int64_t c = 0; c < n; c++) vert1(r0[c], r1[c], ia0 + (int32_t)c, (int32_t)W, sv + c, si + c);
    return;
  }
  const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
  for (int64_t c = 0;; c += V8) {
    if (c > n - V8) c = n - V8;
    v8f a, b;
    LOAD(a, r0 + c), LOAD(b, r1 + c);
    const v8i tc = (b > a) | (b != b);
    const v8f v = (v8f)BLEND(tc, (v8i)a, (v8i)b);
    const v8i at = (ia0 + (int32_t)c) + lane + (tc & (int32_t)W);
    STORE(sv + c, v), STORE(si + c, at);
    if (c == n - V8) break;
  }
}

/* pass 2, one output: column pair (v0 at i0, v1 at i1) -> the greater by the key */
static inline void horiz1(float v0, float v1, int32_t i0, int32_t i1, float *y, int64_t *idx) {
  const bool n0 = v0 != v0, n1 = v1 != v1;
  const bool t1 = (n1 && (!n0 || i1 > i0)) || v1 > v0 || (v1 == v0 && i1 < i0);
  *y = t1 ? v1 : v0;
  *idx = t1 ? i1 : i0;
}

/* pass 2: n outputs from the 2n pass-1 cells sv, si. n >= V8 runs as vectors, the last overlapping. */
static void max2x2_horiz(const float *sv, const int32_t *si, int64_t n, float *y, int64_t *idx) {
  if (n < V8) {
    for (int64_t t = 0; t < n; t++) horiz1(sv[2 * t], sv[2 * t + 1], si[2 * t], si[2 * t + 1], y + t, idx + t);
    return;
  }
  for (int64_t t = 0;; t += V8) {
    if (t > n - V8) t = n - V8;
    v8f lo, hi;
    v8i ilo, ihi;
    LOAD(lo, sv + 2 * t), LOAD(hi, sv + 2 * t + V8);
    LOAD(ilo, si + 2 * t), LOAD(ihi, si + 2 * t + V8);
    const v8f v0 = EVENS(lo, hi), v1 = ODDS(lo, hi);
    const v8i i0 = EVENS(ilo, ihi), i1 = ODDS(ilo, ihi);
    const v8i n0 = v0 != v0, n1 = v1 != v1;
    const v8i t1 = (n1 & (~n0 | (i1 > i0))) | (v1 > v0) | ((v1 == v0) & (i1 < i0));
    const v8f best = (v8f)BLEND(t1, (v8i)v0, (v8i)v1);
    const v8l at = __builtin_convertvector(BLEND(t1, i0, i1), v8l);
    STORE(y + t, best), STORE(idx + t, at);
    if (t == n - V8) break;
  }
}

/* Output rows [r0, r1) of all planes, counted across planes (row r is row r % oh of plane r / oh),
 * for x (P, H, W) -> y, idx (P, oh, ow); 2 ow <= POOL_SCRATCH. */
static void max2x2_rows(const float *x, float *y, int64_t *idx, int64_t H, int64_t W, int64_t oh, int64_t ow,
                        int64_t r0, int64_t r1) {
  float sv[POOL_SCRATCH];
  int32_t si[POOL_SCRATCH];
  const int64_t g = POOL_SCRATCH / (2 * ow); /* output rows per round */
  int64_t pl = r0 / oh, i = r0 % oh;
  for (int64_t r = r0; r < r1; r += g) {
    const int64_t rows = r1 - r < g ? r1 - r : g;
    for (int64_t k = 0; k < rows; k++) {
      max2x2_vert(x + pl * H * W + 2 * i * W, W, (int32_t)(2 * i * W), 2 * ow, sv + k * 2 * ow, si + k * 2 * ow);
      if (++i == oh) i = 0, pl++;
    }
    max2x2_horiz(sv, si, rows * ow, y + r * ow, idx + r * ow);
  }
}

/* Any other window (ResNet's 3x3/stride 2/pad 1, AlexNet's 3x3/stride 2, any padding, dilation,
 * ceil_mode), separably, one output row at a time: pass 1 takes, for every input column, the
 * greatest cell of the window's rows (vectors along the row), into a row of slots with the column
 * at slot pw + w; pass 2 takes, for every output, the greatest of its kw slots (vectors along the
 * output row). Slots outside the input (padding, ceil_mode's overhang) hold a sentinel: -inf at
 * index INT32_MAX, which every cell beats under take_max's key (a real -inf by its smaller index),
 * so it only survives in a window without cells, whose index becomes -1 as in the scan. Both passes
 * compare by the key (see max2x2_horiz): pass 1 meets a column's cells in scan order, so the later
 * wins when greater or NaN; pass 2 meets column winners in any index order, so it compares the
 * indices too. The result is the scan's, bits and index. */
#define POOL_ROW 2048 /* slots of one output row: 16 KB of stack */
#define SENTINEL_AT INT32_MAX

/* the greater of (v1, i1) over (*v0, *i0) by the key, in place */
static inline void key_take(float v1, int32_t i1, float *v0, int32_t *i0) {
  const bool n0 = *v0 != *v0, n1 = v1 != v1;
  if ((n1 && (!n0 || i1 > *i0)) || v1 > *v0 || (v1 == *v0 && i1 < *i0)) *v0 = v1, *i0 = i1;
}

/* pass 1: sv, si (W) = of each column the greatest cell of rows rows[0] < ... < rows[n - 1] of
 * the plane x (H, W); the sentinel when n is 0. W >= V8 runs as vectors, the last one overlapping. */
static void maxsep_vert(const float *x, int64_t W, const int64_t *rows, int n, float *sv, int32_t *si) {
  if (n == 0) {
    for (int64_t c = 0; c < W; c++) sv[c] = -INFINITY, si[c] = SENTINEL_AT;
    return;
  }
  if (W < V8) {
    for (int64_t c = 0; c < W; c++) {
      float best = x[rows[0] * W + c];
      int32_t at = (int32_t)(rows[0] * W + c);
      for (int r = 1; r < n; r++) {
        const float v = x[rows[r] * W + c];
        if (v > best || v != v) best = v, at = (int32_t)(rows[r] * W + c);
      }
      sv[c] = best, si[c] = at;
    }
    return;
  }
  const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
  for (int64_t c = 0;; c += V8) {
    if (c > W - V8) c = W - V8;
    v8f best, v;
    LOAD(best, x + rows[0] * W + c);
    v8i at = (int32_t)(rows[0] * W + c) + lane;
    for (int r = 1; r < n; r++) {
      LOAD(v, x + rows[r] * W + c);
      const v8i t = (v > best) | (v != v);
      best = (v8f)BLEND(t, (v8i)best, (v8i)v);
      at = BLEND(t, at, (int32_t)(rows[r] * W + c) + lane);
    }
    STORE(sv + c, best), STORE(si + c, at);
    if (c == W - V8) break;
  }
}

/* pass 2: output j (of n) = the greatest by the key of slots j sw + taps[t], t < nt (taps
 * increasing), its index -1 for the sentinel. Vectors for strides 1 and 2 when n >= V8 (stride 2
 * reads the even lanes of 16 slots, so one slot past the last tap), the last one overlapping. */
static void maxsep_horiz(const float *sv, const int32_t *si, int64_t n, int64_t sw, const int64_t *taps, int nt,
                         float *y, int64_t *idx) {
  if (n < V8 || sw > 2) {
    for (int64_t j = 0; j < n; j++) {
      float best = sv[j * sw + taps[0]];
      int32_t at = si[j * sw + taps[0]];
      for (int t = 1; t < nt; t++) key_take(sv[j * sw + taps[t]], si[j * sw + taps[t]], &best, &at);
      y[j] = best, idx[j] = at == SENTINEL_AT ? -1 : at;
    }
    return;
  }
  for (int64_t j = 0;; j += V8) {
    if (j > n - V8) j = n - V8;
    v8f best = {0}, v;
    v8i at = {0}, ia;
    for (int t = 0; t < nt; t++) {
      const float *vp = sv + j * sw + taps[t];
      const int32_t *ip = si + j * sw + taps[t];
      if (sw == 1) {
        LOAD(v, vp), LOAD(ia, ip);
      } else {
        v8f lo, hi;
        v8i ilo, ihi;
        LOAD(lo, vp), LOAD(hi, vp + V8), LOAD(ilo, ip), LOAD(ihi, ip + V8);
        v = EVENS(lo, hi), ia = EVENS(ilo, ihi);
      }
      if (t == 0) {
        best = v, at = ia;
        continue;
      }
      const v8i n0 = best != best, n1 = v != v;
      const v8i tk = (n1 & (~n0 | (ia > at))) | (v > best) | ((v == best) & (ia < at));
      best = (v8f)BLEND(tk, (v8i)best, (v8i)v);
      at = BLEND(tk, at, ia);
    }
    v8l at64 = __builtin_convertvector(at, v8l);
    at64 |= __builtin_convertvector(at == SENTINEL_AT, v8l); /* the sentinel's index becomes -1 */
    STORE(y + j, best), STORE(idx + j, at64);
    if (j == n - V8) break;
  }
}

/* the slots a plane needs (input columns at pw .. pw + W - 1, then the reach of the last window
 * and stride 2's extra slot), or 0 when the plane does not fit the separable path */
static int64_t maxsep_slots(const cnn_pool2d_params *p, int64_t H, int64_t W, int64_t ow) {
  const int64_t sw = p->stride[1], reach = (ow - 1) * sw + (p->kernel[1] - 1) * p->dilation[1] + 2;
  const int64_t n = p->padding[1] + W > reach ? p->padding[1] + W : reach;
  return n <= POOL_ROW && H * W < SENTINEL_AT && p->kernel[0] <= 64 && p->kernel[1] <= 64 ? n : 0;
}

/* one plane by the two passes; slots from maxsep_slots */
static void maxsep_plane(const cnn_pool2d_params *p, const float *xpl, float *ypl, int64_t *ipl, int64_t H, int64_t W,
                         int64_t oh, int64_t ow, int64_t slots) {
  const int64_t kh = p->kernel[0], kw = p->kernel[1], sh = p->stride[0], sw = p->stride[1];
  const int64_t ph = p->padding[0], pw = p->padding[1], dh = p->dilation[0], dw = p->dilation[1];
  float sv[POOL_ROW];
  int32_t si[POOL_ROW];
  int64_t rows[64], taps[64];
  for (int64_t t = 0; t < kw; t++) taps[t] = t * dw; /* output j's column j sw - pw + t dw at slot j sw + t dw */
  for (int64_t c = 0; c < pw; c++) sv[c] = -INFINITY, si[c] = SENTINEL_AT;
  for (int64_t c = pw + W; c < slots; c++) sv[c] = -INFINITY, si[c] = SENTINEL_AT;
  for (int64_t i = 0; i < oh; i++) {
    int n = 0;
    for (int64_t a = 0; a < kh; a++) {
      const int64_t h = i * sh - ph + a * dh;
      if (h >= 0 && h < H) rows[n++] = h;
    }
    maxsep_vert(xpl, W, rows, n, sv + pw, si + pw);
    maxsep_horiz(sv, si, ow, sw, taps, (int)kw, ypl + i * ow, ipl + i * ow);
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

/* The pool of relu(x) from the pool of x, in place over n outputs: relu(y) as F.relu computes it (NaN
 * stays NaN, -0 becomes +0), and the index of each output that relu's gradient stops (a result <= 0)
 * becomes -1: the backward gives its window no gradient, as relu's backward followed by the pool's
 * would. A window of padding alone (index -1 already: dilated taps that all miss the plane) keeps
 * its -inf: the max over no values, which relu(max) would make 0. */
static void relu_outputs(float *y, int64_t *idx, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = y[i];
    const bool keep = v > 0 || v != v || idx[i] < 0;
    y[i] = keep ? v : 0.0f;
    idx[i] = keep ? idx[i] : -1;
  }
}

static void max2x2_row_range(void *arg, int64_t r0, int64_t r1) {
  const pool_job *j = arg;
  max2x2_rows(j->x, j->y, j->idx, j->H, j->W, j->oh, j->ow, r0, r1);
  if (j->relu) relu_outputs(j->y + r0 * j->ow, j->idx + r0 * j->ow, (r1 - r0) * j->ow);
}

static void max_planes(void *arg, int64_t p0, int64_t p1) {
  const pool_job *j = arg;
  const int64_t H = j->H, W = j->W, oh = j->oh, ow = j->ow;
  const int64_t slots = j->k2s2 ? 0 : maxsep_slots(j->p, H, W, ow);
  for (int64_t pl = p0; pl < p1; pl++) {
    if (slots) maxsep_plane(j->p, j->x + pl * H * W, j->y + pl * oh * ow, j->idx + pl * oh * ow, H, W, oh, ow, slots);
    else max_plane(j->p, j->x + pl * H * W, j->y + pl * oh * ow, j->idx + pl * oh * ow, H, W, oh, ow, j->k2s2);
    if (j->relu) relu_outputs(j->y + pl * oh * ow, j->idx + pl * oh * ow, oh * ow);
  }
}

/* 2x2 windows at stride 2 wholly inside the plane */
static bool max_k2s2(const cnn_pool2d_params *p, const cnn_pool2d_shape *s) {
  return p->kernel[0] == 2 && p->kernel[1] == 2 && p->stride[0] == 2 && p->stride[1] == 2 && p->padding[0] == 0 &&
         p->padding[1] == 0 && p->dilation[0] == 1 && p->dilation[1] == 1 && 2 * s->oh <= s->H && 2 * s->ow <= s->W;
}

static void max_forward(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *xp, float *yp, int64_t *ip,
                        bool relu) {
  const int64_t P = s->P, H = s->H, W = s->W, oh = s->oh, ow = s->ow;
  const int64_t kh = p->kernel[0], kw = p->kernel[1];
  const bool k2s2 = max_k2s2(p, s);
  pool_job j = {.p = p, .x = xp, .y = yp, .idx = ip, .H = H, .W = W, .oh = oh, .ow = ow, .k2s2 = k2s2, .relu = relu};
  if (k2s2 && 2 * ow <= POOL_SCRATCH && H * W <= INT32_MAX) {
    /* ranges of output rows counted over all planes: LeNet's 5x5 planes are too small to share
     * out one by one */
    pool_items(P * oh, P * oh * ow * 4, max2x2_row_range, &j);
  } else {
    pool_items(P, P * oh * ow * kh * kw, max_planes, &j);
  }
}

void cnn_pool_max2d_forward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *x, float *y,
                                int64_t *idx) {
  max_forward(p, s, x, y, idx, false);
}

void cnn_pool_max2d_relu_forward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *x, float *y,
                                     int64_t *idx) {
  max_forward(p, s, x, y, idx, true);
}

void cnn_pool_max2d_relu_planes_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *x, float *y,
                                    int64_t *idx, int64_t pl0, int64_t pl1) {
  const int64_t H = s->H, W = s->W, oh = s->oh, ow = s->ow;
  const bool k2s2 = max_k2s2(p, s);
  pool_job j = {.p = p, .x = x, .y = y, .idx = idx, .H = H, .W = W, .oh = oh, .ow = ow, .k2s2 = k2s2, .relu = true};
  if (pl0 >= pl1) return;
  if (k2s2 && 2 * ow <= POOL_SCRATCH && H * W <= INT32_MAX) max2x2_row_range(&j, pl0 * oh, pl1 * oh);
  else max_planes(&j, pl0, pl1);
}

/* plane pl of max_pool2d backward, g, ix (oh, ow) -> out (H, W): the gradients added at their
 * argmax in output order onto zeros. Each output row first zeroes the plane's rows up to the row
 * of its largest index (which bounds its reach, whatever the indices), so the zeros are written
 * just before the scatter meets them, in L1, not by a memset of the whole plane (ResNet's 112x112
 * planes fill L1) followed by a second pass; the bits are the same. */
static inline void max_backward_plane(const float *g, const int64_t *ix, float *out, int64_t oh, int64_t ow, int64_t H,
                                      int64_t W, int64_t pl) {
  const int64_t HW = H * W;
  float *opl = out + pl * HW;
  const float *gp = g + pl * oh * ow;
  const int64_t *ip = ix + pl * oh * ow;
  int64_t zeroed = 0; /* cells [0, zeroed) hold zeros or gradients */
  for (int64_t i = 0; i < oh; i++) {
    const int64_t *ir = ip + i * ow;
    const float *gr = gp + i * ow;
    int64_t top = -1;
    for (int64_t j = 0; j < ow; j++) top = ir[j] > top ? ir[j] : top;
    if (top >= zeroed) {
      const int64_t end = top < HW ? (top / W + 1) * W : HW;
      memset(opl + zeroed, 0, (size_t)(end - zeroed) * sizeof(float));
      zeroed = end;
    }
    for (int64_t j = 0; j < ow; j++) {
      const int64_t at = ir[j];
      if (at >= 0 && at < HW) opl[at] += gr[j];
    }
  }
  memset(opl + zeroed, 0, (size_t)(HW - zeroed) * sizeof(float));
}

/* One output of max2x2_backward_plane: its gradient (plus 0, as the scatter's 0 + g, which makes -0
 * a +0) to the block cell its index names, 0 to the other three, through bit masks (the argmax cell
 * is random: branches would mispredict); an index of -1 (relu_outputs) sends 0 to all four. False
 * when the index lies outside the block. */
static inline bool block_backward1(float g, int64_t at, int64_t base, int64_t W, float *r0, float *r1) {
  const int64_t off = at - base;
  const float v = g + 0.0f;
  uint32_t b, c[4];
  memcpy(&b, &v, sizeof b);
  c[0] = b & -(uint32_t)(off == 0), c[1] = b & -(uint32_t)(off == 1);
  c[2] = b & -(uint32_t)(off == W), c[3] = b & -(uint32_t)(off == W + 1);
  memcpy(r0, c, 2 * sizeof(float));
  memcpy(r1, c + 2, 2 * sizeof(float));
  return (off == 0) | (off == 1) | (off == W) | (off == W + 1) | (at == -1);
}

/* Backward of one plane, g, ix (oh, ow) -> gx (H, W), when every index lies in its output's own 2x2
 * block at (2i, 2j), as the 2x2/stride-2 forward guarantees: the blocks are disjoint, so each cell
 * takes at most one gradient and gx is written once, with no zeroing pass and no read-modify-write
 * (the scatter's loads wait on the memset's stores). Cells outside every block, and the blocks of
 * index -1, get 0. Returns false,
 * the plane part written, at the first row with an index outside its block: the caller scatters. */
static bool max2x2_backward_plane(const float *g, const int64_t *ix, float *gx, int64_t H, int64_t W, int64_t oh,
                                  int64_t ow) {
  for (int64_t i = 0; i < oh; i++) {
    float *r0 = gx + 2 * i * W, *r1 = r0 + W;
    const float *gr = g + i * ow;
    const int64_t *xr = ix + i * ow, base = 2 * i * W;
    bool ok = true;
    if (ow < V8) {
      for (int64_t j = 0; j < ow; j++) ok &= block_backward1(gr[j], xr[j], base + 2 * j, W, r0 + 2 * j, r1 + 2 * j);
    } else {
      const v8l lane2 = {0, 2, 4, 6, 8, 10, 12, 14};
      v8l valid = ~(v8l){0};          /* lanes stay all ones while every index lies in its block */
      for (int64_t j = 0;; j += V8) { /* the last vector overlaps: its writes repeat the same values */
        if (j > ow - V8) j = ow - V8;
        v8f gv;
        v8l at;
        LOAD(gv, gr + j), LOAD(at, xr + j);
        gv += 0.0f;
        const v8l off = at - (base + 2 * j) - lane2;
        const v8l m0 = off == 0, m1 = off == 1, m2 = off == W, m3 = off == W + 1;
        valid &= m0 | m1 | m2 | m3 | (at == -1);
        const v8i gi = (v8i)gv;
        const v8i c0 = __builtin_convertvector(m0, v8i) & gi, c1 = __builtin_convertvector(m1, v8i) & gi;
        const v8i c2 = __builtin_convertvector(m2, v8i) & gi, c3 = __builtin_convertvector(m3, v8i) & gi;
        const v8i q0 = INTERLEAVE_LO(c0, c1), q1 = INTERLEAVE_HI(c0, c1);
        const v8i q2 = INTERLEAVE_LO(c2, c3), q3 = INTERLEAVE_HI(c2, c3);
        STORE(r0 + 2 * j, q0), STORE(r0 + 2 * j + V8, q1), STORE(r1 + 2 * j, q2), STORE(r1 + 2 * j + V8, q3);
        if (j == ow - V8) break;
      }
      for (int k = 0; k < V8; k++) ok &= valid[k] != 0;
    }
    if (!ok) return false;
    for (int64_t c = 2 * ow; c < W; c++) r0[c] = r1[c] = 0.0f;
  }
  memset(gx + 2 * oh * W, 0, (size_t)((H - 2 * oh) * W) * sizeof(float));
  return true;
}

static void max_backward_planes(void *arg, int64_t p0, int64_t p1) {
  const pool_job *j = arg;
  const int64_t H = j->H, W = j->W, oh = j->oh, ow = j->ow, n = oh * ow, HW = H * W;
  for (int64_t pl = p0; pl < p1; pl++)
    if (!j->blocks || !max2x2_backward_plane(j->g + pl * n, j->ix + pl * n, j->y + pl * HW, H, W, oh, ow))
      max_backward_plane(j->g, j->ix, j->y, oh, ow, H, W, pl);
}

void cnn_pool_max2d_backward_f32(const cnn_pool2d_shape *s, const float *g, const int64_t *ix, float *out) {
  const int64_t H = s->H, W = s->W, oh = s->oh, ow = s->ow;
  /* each plane is written in one pass while it is in cache: the disjoint 2x2 blocks of a 2x2/stride-2
   * forward directly, any other plane zeroed just before its scatter (not a whole-tensor memset
   * followed by a second pass); either gives the same bits. Each output may own the 2x2 block at
   * (2i, 2j) when blocks. */
  pool_job j = {.g = g, .ix = ix, .y = out, .H = H, .W = W, .oh = oh, .ow = ow, .blocks = 2 * oh <= H && 2 * ow <= W};
  pool_items(s->P, s->P * oh * ow, max_backward_planes, &j);
}

/* ---- average ---- */

/* PyTorch's avg_pool2d window for output (i, j): the clipped bounds and the divisor. Returns
 * false for a window that lies wholly in padding (its output is 0). */
typedef struct avg_win {
  int64_t h0, h1, w0, w1;
  int64_t idiv;
  float div;
} avg_win;

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
  a->h0 = h0, a->h1 = h1, a->w0 = w0, a->w1 = w1, a->idiv = div, a->div = (float)div;
  return true;
}

/* A 1x1 window (no padding then) lies inside the input and holds one cell; its divisor is the
 * override or 1. ResNet's option A shortcut subsamples with one, stride 2: the window loops below
 * cost ~40 cycles an output for what is a strided copy. */
static float avg1x1_divisor(const cnn_pool2d_params *p) { return p->divisor > 0 ? (float)p->divisor : 1.0f; }

static inline void avg_forward_plane(const cnn_pool2d_params *p, const float *xp, float *yp, int64_t H, int64_t W,
                                     int64_t oh, int64_t ow, int64_t pl) {
  const float *xpl = xp + pl * H * W;
  if (p->kernel[0] == 1 && p->kernel[1] == 1) { /* the general loop's (0 + x) / div, without the window */
    const int64_t sh = p->stride[0], sw = p->stride[1];
    const float div = avg1x1_divisor(p);
    for (int64_t i = 0; i < oh; i++) {
      const float *r = xpl + i * sh * W;
      float *yr = yp + (pl * oh + i) * ow;
      for (int64_t j = 0; j < ow; j++) yr[j] = (0.0f + r[j * sw]) / div;
    }
    return;
  }
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

static void avg_forward_planes(void *arg, int64_t p0, int64_t p1) {
  const pool_job *j = arg;
  for (int64_t pl = p0; pl < p1; pl++) avg_forward_plane(j->p, j->x, j->y, j->H, j->W, j->oh, j->ow, pl);
}

void cnn_pool_avg2d_forward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *xp, float *yp) {
  pool_job j = {.p = p, .x = xp, .y = yp, .H = s->H, .W = s->W, .oh = s->oh, .ow = s->ow};
  pool_items(s->P, s->P * s->oh * s->ow * p->kernel[0] * p->kernel[1], avg_forward_planes, &j);
}

/* int64, as PyTorch's: the exact window sum divided by the divisor, truncating toward zero */
void cnn_pool_avg2d_forward_i64(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const int64_t *xp, int64_t *yp) {
  const int64_t H = s->H, W = s->W, oh = s->oh, ow = s->ow;
  for (int64_t pl = 0; pl < s->P; pl++)
    for (int64_t i = 0; i < oh; i++)
      for (int64_t j = 0; j < ow; j++) {
        avg_win a;
        int64_t v = 0;
        if (avg_window(p, H, W, i, j, &a)) {
          uint64_t sum = 0;
          for (int64_t h = a.h0; h < a.h1; h++)
            for (int64_t w = a.w0; w < a.w1; w++) sum += (uint64_t)xp[(pl * H + h) * W + w];
          v = (int64_t)sum / a.idiv;
        }
        yp[(pl * oh + i) * ow + j] = v;
      }
}

static inline void avg_backward_plane(const cnn_pool2d_params *p, const float *g, float *out, int64_t H, int64_t W,
                                      int64_t oh, int64_t ow, int64_t pl) {
  float *opl = out + pl * H * W;
  if (p->kernel[0] == 1 && p->kernel[1] == 1) { /* disjoint one-cell windows: 0 + g / div each */
    const int64_t sh = p->stride[0], sw = p->stride[1];
    const float div = avg1x1_divisor(p);
    for (int64_t i = 0; i < oh; i++) {
      float *r = opl + i * sh * W;
      const float *gr = g + (pl * oh + i) * ow;
      for (int64_t j = 0; j < ow; j++) r[j * sw] += gr[j] / div;
    }
    return;
  }
  for (int64_t i = 0; i < oh; i++)
    for (int64_t j = 0; j < ow; j++) {
      avg_win a;
      if (!avg_window(p, H, W, i, j, &a)) continue;
      float v = g[(pl * oh + i) * ow + j] / a.div;
      for (int64_t h = a.h0; h < a.h1; h++)
        for (int64_t w = a.w0; w < a.w1; w++) opl[h * W + w] += v;
    }
}

static void avg_backward_planes(void *arg, int64_t p0, int64_t p1) {
  const pool_job *j = arg;
  for (int64_t pl = p0; pl < p1; pl++) avg_backward_plane(j->p, j->g, j->y, j->H, j->W, j->oh, j->ow, pl);
}

void cnn_pool_avg2d_backward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *g, float *out) {
  pool_job j = {.p = p, .g = g, .y = out, .H = s->H, .W = s->W, .oh = s->oh, .ow = s->ow};
  pool_items(s->P, s->P * s->oh * s->ow * p->kernel[0] * p->kernel[1], avg_backward_planes, &j);
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

static void adaptive_forward_planes(void *arg, int64_t p0, int64_t p1) {
  const pool_job *j = arg;
  for (int64_t pl = p0; pl < p1; pl++) adaptive_forward_plane(j->x, j->y, j->H, j->W, j->oh, j->ow, pl);
}

void cnn_pool_adaptive_avg2d_forward_f32(const cnn_pool2d_shape *s, const float *xp, float *yp) {
  pool_job j = {.x = xp, .y = yp, .H = s->H, .W = s->W, .oh = s->oh, .ow = s->ow};
  pool_items(s->P, s->P * s->H * s->W, adaptive_forward_planes, &j);
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

static void adaptive_backward_planes(void *arg, int64_t p0, int64_t p1) {
  const pool_job *j = arg;
  for (int64_t pl = p0; pl < p1; pl++) adaptive_backward_plane(j->g, j->y, j->H, j->W, j->oh, j->ow, pl);
}

void cnn_pool_adaptive_avg2d_backward_f32(const cnn_pool2d_shape *s, const float *g, float *out) {
  pool_job j = {.g = g, .y = out, .H = s->H, .W = s->W, .oh = s->oh, .ow = s->ow};
  pool_items(s->P, s->P * s->H * s->W, adaptive_backward_planes, &j);
}
