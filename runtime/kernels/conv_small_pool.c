/* Convolution + bias + ReLU + 2x2/stride-2 max pooling in one pass, with the batch in the vector
 * lanes (see conv_small_pool.h): LeNet's conv1 (1 -> 6 at 5x5 on 28x28 padded by 2) and conv2
 * (6 -> 16 at 5x5 on 14x14).
 *
 * As in conv_small.c, a group of VL images is laid out as (C, Hp, Wp, VL), the zero-padded planes
 * with each position one vector of the group's images, and a tile of mr filters x nv positions of
 * a row sums the taps (c, ki, kj) in that order with one fused multiply-add each, from zero, from
 * filters packed as conv_direct.c packs them; the bias is added after: the same bits as both those
 * kernels (every tap is taken, those over padding too, as conv_direct.c does). Output rows are made
 * two at a time and pooled at once, still as vectors of the group's images: of each window's four
 * cells in scan order, the first maximum or the last NaN (pool.c's take_max, lane by lane), then
 * relu with the index -1 where its gradient stops (pool.c's relu_outputs). Only the pooled plane and
 * its indices go back to (N, O, ph, pw): a quarter of what storing the convolution's output and
 * pooling it from there wrote and read. A group is the unit of work on the runtime's threads; no
 * output depends on another, so nothing depends on the thread count. */
#include "kernels/conv_small_pool.h"

#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cnn/error.h"
#include "conv_vec.h"
#include "core/alloc.h"
#include "core/parallel.h"

typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

/* Per-thread workspace cap (floats): the group's input, two output rows and the pooled planes. */
#define SPOOL_BUDGET (256 * 1024)

typedef struct {
  int64_t N, C, H, W, O, kh, kw, pt, pl;
  int64_t Hp, Wp, oh, ow, ph, pw;
  int64_t Op, owr; /* O and ow rounded up to the tile */
  int mr, nv;      /* tile: mr filters x nv positions of a row */
  size_t xg_floats, yb_floats, pooled_floats, scratch_floats;
} spool;

static const struct {
  int mr, nv;
} TILES[] = {
#if NACC >= 24
    {6, 4}, {8, 3}, {4, 5}, {4, 6}, {8, 2}, {6, 3}, {4, 4}, {2, 6}, {1, 6},
#else
    {4, 3}, {6, 2}, {4, 2}, {2, 6}, {2, 4}, {1, 6},
#endif
};

/* the tile with the least padded work, weighing its loads and broadcasts against its FMAs (as
 * conv_small.c picks) */
static void pick_tile(spool *d) {
  double best = 0;
  for (size_t t = 0; t < sizeof TILES / sizeof TILES[0]; t++) {
    const int mr = TILES[t].mr, nv = TILES[t].nv;
    double cost = (double)(round_up(d->O, mr) * round_up(d->ow, nv)) * (1.0 + (mr + nv) / (2.0 * mr * nv));
    if (best == 0 || cost < best) best = cost, d->mr = mr, d->nv = nv;
  }
  d->Op = round_up(d->O, d->mr);
  d->owr = round_up(d->ow, d->nv);
}

static bool plan(spool *d, const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const cnn_pool2d_params *pp,
                 const int64_t pooled_hw[2]) {
  memset(d, 0, sizeof *d);
  if (p->stride[0] != 1 || p->stride[1] != 1 || p->dilation[0] != 1 || p->dilation[1] != 1 || p->groups != 1)
    return false;
  if (pp->kernel[0] != 2 || pp->kernel[1] != 2 || pp->stride[0] != 2 || pp->stride[1] != 2 || pp->padding[0] != 0 ||
      pp->padding[1] != 0 || pp->dilation[0] != 1 || pp->dilation[1] != 1)
    return false;
  d->N = s->N, d->C = s->C, d->H = s->H, d->W = s->W, d->O = s->O, d->kh = s->kh, d->kw = s->kw;
  d->pt = p->pad_lo[0], d->pl = p->pad_lo[1];
  if (d->pt >= d->kh || d->pl >= d->kw || p->pad_hi[0] >= d->kh || p->pad_hi[1] >= d->kw) return false;
  d->Hp = d->H + d->pt + p->pad_hi[0], d->Wp = d->W + d->pl + p->pad_hi[1];
  d->oh = d->Hp - d->kh + 1, d->ow = d->Wp - d->kw + 1;
  d->ph = d->oh / 2, d->pw = d->ow / 2;
  if (d->N < 1 || d->C < 1 || d->O < 1 || d->ph < 1 || d->pw < 1) return false;
  if (pooled_hw[0] != d->ph || pooled_hw[1] != d->pw) return false; /* ceil_mode's extra window */
  /* the lanes mostly full (LeNet's batch of 64: 4 groups of 16), small planes, few filters */
  if (round_up(d->N, VL) * 3 > d->N * 4) return false;
  if (d->C * d->kh * d->kw > 512 || d->O > 32 || d->H * d->W > 1024) return false;
  pick_tile(d);
  /* tail: the last row's tiles read up to owr - ow positions past the plane */
  d->xg_floats = (size_t)round_up((d->C * d->Hp * d->Wp + (d->owr - d->ow)) * VL, 16);
  d->yb_floats = (size_t)(d->Op * 2 * d->owr * VL);
  d->pooled_floats = (size_t)(d->O * d->ph * d->pw * VL);
  d->scratch_floats = d->xg_floats + d->yb_floats + 2 * d->pooled_floats; /* values, then int32 codes */
  return d->scratch_floats <= SPOOL_BUDGET;
}

/* ---- a group ---- */

/* The padding of xg (C, Hp, Wp, VL) and its tail: zeros, which group_fill never overwrites. */
static void pad_zero(const spool *d, float *xg) {
  const int64_t Hp = d->Hp, Wp = d->Wp, W = d->W, pr = Wp - d->pl - W;
  for (int64_t c = 0; c < d->C; c++) {
    float *p = xg + c * Hp * Wp * VL;
    memset(p, 0, (size_t)(d->pt * Wp * VL) * sizeof(float));
    for (int64_t r = d->pt; r < d->pt + d->H; r++) {
      memset(p + r * Wp * VL, 0, (size_t)(d->pl * VL) * sizeof(float));
      memset(p + (r * Wp + d->pl + W) * VL, 0, (size_t)(pr * VL) * sizeof(float));
    }
    memset(p + (d->pt + d->H) * Wp * VL, 0, (size_t)((Hp - d->pt - d->H) * Wp * VL) * sizeof(float));
  }
  const size_t body = (size_t)(d->C * Hp * Wp * VL);
  memset(xg + body, 0, (d->xg_floats - body) * sizeof(float));
}

#if defined(__AVX512F__)
/* r[0..16) rows of 16 -> r[j] = column j (16 x 16 transpose: unpacks, then 128-bit lane shuffles) */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; j++) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
  }
  for (int j = 0; j < 4; j++) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
  }
}
#endif

/* images n0..n0+g of x (N, C, H, W) -> the inside of xg (C, Hp, Wp, VL), lanes g..VL zero */
static void group_fill(const spool *d, const float *x, int64_t n0, int64_t g, float *xg) {
  const int64_t C = d->C, H = d->H, W = d->W, Wp = d->Wp, plane = H * W;
  const float *s = x + n0 * C * plane;
  for (int64_t c = 0; c < C; c++)
    for (int64_t r = 0; r < H; r++) {
      float *row = xg + ((c * d->Hp + r + d->pt) * Wp + d->pl) * VL;
      const float *sr = s + c * plane + r * W; /* image l's row at sr + l * C * plane */
#if defined(__AVX512F__)
      for (int64_t x0 = 0; x0 < W; x0 += 16) {
        const int n = W - x0 < 16 ? (int)(W - x0) : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512 v[16];
        for (int64_t l = 0; l < 16; l++)
          v[l] = l < g ? _mm512_maskz_loadu_ps(m, sr + l * C * plane + x0) : _mm512_setzero_ps();
        transpose16(v);
        for (int j = 0; j < n; j++) _mm512_store_ps(row + (x0 + j) * VL, v[j]);
      }
#else
      for (int64_t xx = 0; xx < W; xx++)
        for (int64_t l = 0; l < VL; l++) row[xx * VL + l] = l < g ? sr[l * C * plane + xx] : 0.0f;
#endif
    }
}

/* yb[0..mr) filters (stride os), positions [0, nv) of a row = the taps of wt (K, mr) over the
 * vectors of xg from its row (c = 0, oy, ox), all kernel rows */
INLINE void tile(const float *xg, int64_t cs, int64_t rs, int64_t C, int64_t kh, int64_t kw, const float *wt, float *yb,
                 int64_t os, const int mr, const int nv) {
  vf acc[8][6];
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int v = 0; v < nv; v++) acc[i][v] = (vf){0};
  for (int64_t c = 0; c < C; c++, xg += cs)
    for (int64_t ki = 0; ki < kh; ki++) {
      const float *row = xg + ki * rs, *wk = wt + (c * kh + ki) * kw * mr;
      for (int64_t kj = 0; kj < kw; kj++, wk += mr) {
        vf b[6];
#pragma GCC unroll 6
        for (int v = 0; v < nv; v++) b[v] = *(const vf *)(row + (kj + v) * VL);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
          float s = wk[i];
#pragma GCC unroll 6
          for (int v = 0; v < nv; v++) acc[i][v] += b[v] * s;
        }
      }
    }
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int v = 0; v < nv; v++) *(vf *)(yb + i * os + v * VL) = acc[i][v];
}

/* yb (Op, 2, owr, VL) = the group's output rows 2i and 2i + 1 */
INLINE void rows_compute(const spool *d, const float *xg, const float *pack, float *yb, int64_t i, const int mr,
                         const int nv) {
  const int64_t K = d->C * d->kh * d->kw, cs = d->Hp * d->Wp * VL, rs = d->Wp * VL, os = 2 * d->owr * VL;
  for (int64_t r = 0; r < 2; r++) {
    const int64_t oy = 2 * i + r;
    for (int64_t ox = 0; ox < d->owr; ox += nv)
      for (int64_t o = 0; o < d->Op; o += mr)
        tile(xg + (oy * d->Wp + ox) * VL, cs, rs, d->C, d->kh, d->kw, pack + o * K,
             yb + o * os + (r * d->owr + ox) * VL, os, mr, nv);
  }
}

#define TILE_CASE(MR, NV) \
  case (MR)*8 + (NV): rows_compute(d, xg, pack, yb, i, MR, NV); break;

static void rows_compute_any(const spool *d, const float *xg, const float *pack, float *yb, int64_t i) {
  switch (d->mr * 8 + d->nv) {
#if NACC >= 24
    TILE_CASE(6, 4)
    TILE_CASE(8, 3)
    TILE_CASE(4, 5)
    TILE_CASE(4, 6)
    TILE_CASE(8, 2)
    TILE_CASE(6, 3)
    TILE_CASE(4, 4)
#else
    TILE_CASE(4, 3)
    TILE_CASE(6, 2)
    TILE_CASE(4, 2)
    TILE_CASE(2, 4)
#endif
    TILE_CASE(2, 6)
  default: rows_compute(d, xg, pack, yb, i, 1, 6); break;
  }
}

/* One step of a window's scan, lane by lane (pool.c's take_max): v, the window's cell `cell`,
 * replaces the best when greater or NaN; bitwise blends, so NaN payloads survive. */
#define TAKE(v, cell)                             \
  do {                                            \
    const vi t_ = ((v) > best) | ((v) != (v));    \
    best = (vf)(((vi)best & ~t_) | ((vi)(v)&t_)); \
    code = (code & ~t_) | ((cell)&t_);            \
  } while (0)

/* pooled row i of the group: pv, pc (O, ph, pw, VL) from yb's two rows plus the bias */
static void rows_pool(const spool *d, const float *yb, const float *b, int64_t i, float *pv, int32_t *pc) {
  const int64_t os = 2 * d->owr * VL, pw = d->pw, plane = d->ph * pw;
  for (int64_t o = 0; o < d->O; o++) {
    const float bv = b ? b[o] : 0.0f;
    const float *r0 = yb + o * os, *r1 = r0 + d->owr * VL;
    float *po = pv + (o * plane + i * pw) * VL;
    int32_t *co = pc + (o * plane + i * pw) * VL;
    for (int64_t j = 0; j < pw; j++) {
      const int64_t c = 2 * j;
      const vf a = *(const vf *)(r0 + c * VL) + bv, e = *(const vf *)(r0 + (c + 1) * VL) + bv;
      const vf f = *(const vf *)(r1 + c * VL) + bv, h = *(const vf *)(r1 + (c + 1) * VL) + bv;
      vf best = a;
      vi code = (vi){0};
      TAKE(e, 1);
      TAKE(f, 2);
      TAKE(h, 3);
      /* relu (as F.relu: NaN stays, -0 becomes +0), CNN_SPOOL_NONE where its gradient stops */
      const vi keep = (best > 0) | (best != best);
      best = (vf)((vi)best & keep);
      code = (code & keep) | (CNN_SPOOL_NONE & ~keep);
      *(vf *)(po + j * VL) = best;
      *(vi *)(co + j * VL) = code;
    }
  }
}

/* pv, pc (O, ph, pw, VL) -> images n0..n0+g of pooled, code (N, O, ph, pw). The codes go four
 * positions to an int32 (one byte each), so one 16 x 16 transpose moves 64 positions of 16 images;
 * the packed words reuse pc's space (each is written after the four it packs were read). */
static void group_store(const spool *d, const float *pv, int32_t *pc, int64_t n0, int64_t g, float *pooled,
                        uint8_t *code) {
  const int64_t O = d->O, plane = d->ph * d->pw, p4 = (plane + 3) / 4;
  for (int64_t o = 0; o < O; o++) {
    const float *sv = pv + o * plane * VL;
    int32_t *sc = pc + o * plane * VL;
    const int64_t at = (n0 * O + o) * plane; /* image l's plane at at + l * O * plane */
    for (int64_t k = 0; k < p4; k++) {
      vi w = (vi){0};
      for (int64_t t = 0; t < 4 && 4 * k + t < plane; t++) w |= *(const vi *)(sc + (4 * k + t) * VL) << (int)(8 * t);
      *(vi *)(sc + k * VL) = w;
    }
#if defined(__AVX512F__) && defined(__AVX512BW__)
    for (int64_t x0 = 0; x0 < plane; x0 += 16) {
      const int n = plane - x0 < 16 ? (int)(plane - x0) : 16;
      const __mmask16 m = (__mmask16)((1u << n) - 1);
      __m512 v[16];
      for (int j = 0; j < 16; j++) v[j] = j < n ? _mm512_load_ps(sv + (x0 + j) * VL) : _mm512_setzero_ps();
      transpose16(v);
      for (int64_t l = 0; l < g; l++) _mm512_mask_storeu_ps(pooled + at + l * O * plane + x0, m, v[l]);
    }
    for (int64_t k0 = 0; k0 < p4; k0 += 16) {
      const int64_t nk = p4 - k0 < 16 ? p4 - k0 : 16, nb = plane - 4 * k0 < 64 ? plane - 4 * k0 : 64;
      const __mmask64 m = nb == 64 ? ~(__mmask64)0 : (((__mmask64)1 << nb) - 1);
      __m512 v[16];
      for (int j = 0; j < 16; j++)
        v[j] = j < nk ? _mm512_castsi512_ps(_mm512_load_si512(sc + (k0 + j) * VL)) : _mm512_setzero_ps();
      transpose16(v);
      for (int64_t l = 0; l < g; l++)
        _mm512_mask_storeu_epi8(code + at + l * O * plane + 4 * k0, m, _mm512_castps_si512(v[l]));
    }
#else
    for (int64_t l = 0; l < g; l++)
      for (int64_t xx = 0; xx < plane; xx++) {
        pooled[at + l * O * plane + xx] = sv[xx * VL + l];
        code[at + l * O * plane + xx] = (uint8_t)(sc[xx / 4 * VL + l] >> (8 * (xx % 4)));
      }
#endif
  }
}

typedef struct {
  const spool *d;
  const float *x, *pack, *b;
  float *pooled;
  uint8_t *code;
  float *const *ws;
} spool_job;

/* groups [g0, g1) in this thread's workspace */
static void run_groups(void *arg, int64_t g0, int64_t g1) {
  const spool_job *j = arg;
  const spool *d = j->d;
  float *xg = j->ws[cnn_parallel_slot()], *yb = xg + d->xg_floats, *pv = yb + d->yb_floats;
  int32_t *pc = (int32_t *)(pv + d->pooled_floats);
  pad_zero(d, xg);
  for (int64_t gi = g0; gi < g1; gi++) {
    const int64_t n0 = gi * VL, g = d->N - n0 < VL ? d->N - n0 : VL;
    group_fill(d, j->x, n0, g, xg);
    for (int64_t i = 0; i < d->ph; i++) {
      rows_compute_any(d, xg, j->pack, yb, i);
      rows_pool(d, yb, j->b, i, pv, pc);
    }
    group_store(d, pv, pc, n0, g, j->pooled, j->code);
  }
}

static int on = -1; /* 1 on, 0 off, -1 until the first call reads CNN_CONV_POOL */
void cnn_conv2d_set_small_pool(bool yes) { on = yes; }

int cnn_conv2d_relu_max_pool_small_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p,
                                       const cnn_pool2d_params *pp, const int64_t pooled_hw[2], const float *x,
                                       const float *w, const float *b, float *pooled, uint8_t *code) {
  if (on < 0) {
    const char *e = getenv("CNN_CONV_POOL");
    on = !(e && strcmp(e, "0") == 0);
  }
  spool d;
  if (!on || !plan(&d, s, p, pp, pooled_hw)) return 1;
  const int nt = cnn_parallel_get_threads();
  const int64_t K = d.C * d.kh * d.kw, mr = d.mr;
  const size_t packf = (size_t)(d.Op * K), stride = (d.scratch_floats + 15) / 16 * 16;
  const size_t bytes = (packf + 16 + (size_t)nt * stride) * sizeof(float);
  float **slot = malloc((size_t)nt * sizeof *slot);
  float *block = slot ? cnn_alloc(bytes) : NULL;
  if (!block) {
    free(slot);
    return cnn_error_set("out of memory (convolution workspace)");
  }
  /* the slots first (64-byte aligned from the allocator's block), the packed filters after */
  for (int t = 0; t < nt; t++) slot[t] = block + (size_t)t * stride;
  float *pack = block + (size_t)nt * stride;
  /* for each tile of mr filters, (K, mr), filters past O zero: conv_direct.c's packing */
  for (int64_t o = 0; o < d.Op; o++)
    for (int64_t k = 0; k < K; k++) pack[(o / mr * K + k) * mr + o % mr] = o < d.O ? w[o * K + k] : 0.0f;
  spool_job j = {.d = &d, .x = x, .pack = pack, .b = b, .pooled = pooled, .code = code, .ws = slot};
  cnn_parallel_for((d.N + VL - 1) / VL, 1, run_groups, &j);
  cnn_free(block, bytes);
  free(slot);
  return 0;
}

/* ---- backward: the pooling's ---- */

typedef struct {
  const float *g;
  const uint8_t *code;
  float *gy;
  int64_t oh, ow, ph, pw;
} unpool_job;

/* planes [p0, p1): each pooled gradient (plus 0, as the scatter onto zeros makes -0 a +0) to the cell
 * its code names, 0 to the window's other cells, to every window of code CNN_SPOOL_NONE and to the
 * cells outside every window (an odd last row or column); every cell of gy written once */
static void unpool_planes(void *arg, int64_t p0, int64_t p1) {
  const unpool_job *j = arg;
  const int64_t oh = j->oh, ow = j->ow, ph = j->ph, pw = j->pw;
  for (int64_t pl = p0; pl < p1; pl++) {
    const float *g = j->g + pl * ph * pw;
    const uint8_t *cd = j->code + pl * ph * pw;
    float *out = j->gy + pl * oh * ow;
    for (int64_t i = 0; i < ph; i++, g += pw, cd += pw) {
      float *r0 = out + 2 * i * ow, *r1 = r0 + ow;
      int64_t q = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
      /* 16 outputs at a time: the four cells' vectors by compare masks, interleaved into the rows */
      const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      for (; q < pw; q += 16) {
        const int n = pw - q < 16 ? (int)(pw - q) : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, g + q), _mm512_setzero_ps());
        const __m512i c = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, cd + q));
        const __m512 c0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, _mm512_set1_epi32(0)), v);
        const __m512 c1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, _mm512_set1_epi32(1)), v);
        const __m512 c2 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, _mm512_set1_epi32(2)), v);
        const __m512 c3 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(c, _mm512_set1_epi32(3)), v);
        const __mmask16 m0 = (__mmask16)(n >= 8 ? 0xFFFF : (1u << 2 * n) - 1);
        const __mmask16 m1 = (__mmask16)(n <= 8 ? 0 : (1u << 2 * (n - 8)) - 1);
        _mm512_mask_storeu_ps(r0 + 2 * q, m0, _mm512_permutex2var_ps(c0, lo, c1));
        _mm512_mask_storeu_ps(r1 + 2 * q, m0, _mm512_permutex2var_ps(c2, lo, c3));
        if (m1) {
          _mm512_mask_storeu_ps(r0 + 2 * q + 16, m1, _mm512_permutex2var_ps(c0, hi, c1));
          _mm512_mask_storeu_ps(r1 + 2 * q + 16, m1, _mm512_permutex2var_ps(c2, hi, c3));
        }
      }
#endif
      for (; q < pw; q++) { /* bit masks: the cell is random, branches would mispredict */
        const float v = g[q] + 0.0f;
        uint32_t b;
        memcpy(&b, &v, sizeof b);
        const uint32_t c = cd[q];
        const uint32_t w0 = b & -(uint32_t)(c == 0), w1 = b & -(uint32_t)(c == 1);
        const uint32_t w2 = b & -(uint32_t)(c == 2), w3 = b & -(uint32_t)(c == 3);
        memcpy(r0 + 2 * q, &w0, 4), memcpy(r0 + 2 * q + 1, &w1, 4);
        memcpy(r1 + 2 * q, &w2, 4), memcpy(r1 + 2 * q + 1, &w3, 4);
      }
      for (int64_t c = 2 * pw; c < ow; c++) r0[c] = r1[c] = 0.0f;
    }
    memset(out + 2 * ph * ow, 0, (size_t)((oh - 2 * ph) * ow) * sizeof(float));
  }
}

void cnn_spool_unpool_f32(const float *g, const uint8_t *code, int64_t P, int64_t oh, int64_t ow, int64_t ph,
                          int64_t pw, float *gy) {
  unpool_job j = {g, code, gy, oh, ow, ph, pw};
  cnn_parallel_items(P, P * oh * ow, unpool_planes, &j);
}
