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

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cnn/error.h"
#include "conv_lanes.h"
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

/* ---- each thread's workspace ----
 * Kept by the thread from call to call (the forwards' and backwards' of both layers share it): a
 * step's loops give a thread the same images each time, and their scratch is then already in its
 * core's cache. A block allocated per call came back from the allocator at addresses another
 * thread wrote last (LeNet's conv1 backward on the worker took 1.6x its half on one thread). Not
 * counted as tensor storage; freed when the thread exits. */
typedef struct {
  float *p;
  size_t floats;
} thread_ws;

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static bool ws_key_ok;

static void ws_release(void *v) {
  thread_ws *w = v;
  free(w->p);
  free(w);
}

static void ws_init(void) { ws_key_ok = pthread_key_create(&ws_key, ws_release) == 0; }

/* this thread's workspace of at least n floats (64-byte aligned), or NULL (out of memory) */
static float *ws_get(size_t n) {
  pthread_once(&ws_once, ws_init);
  if (!ws_key_ok) return NULL;
  thread_ws *w = pthread_getspecific(ws_key);
  if (!w) {
    w = calloc(1, sizeof *w);
    if (!w || pthread_setspecific(ws_key, w) != 0) {
      free(w);
      return NULL;
    }
  }
  if (w->floats < n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n * sizeof(float)) != 0) return NULL;
    free(w->p);
    w->p = p, w->floats = n;
  }
  return w->p;
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

/* images n0..n0+g of x (N, C, H, W) -> the inside of xg (C, Hp, Wp, VL), lanes g..VL zero */
static void group_fill(const spool *d, const float *x, int64_t n0, int64_t g, float *xg) {
  const int64_t C = d->C, H = d->H, W = d->W, Wp = d->Wp, plane = H * W;
  const float *s = x + n0 * C * plane;
  for (int64_t c = 0; c < C; c++)
    for (int64_t r = 0; r < H; r++) {
      float *row = xg + ((c * d->Hp + r + d->pt) * Wp + d->pl) * VL;
      const float *sr = s + c * plane + r * W; /* image l's row at sr + l * C * plane */
      lanes_gather(sr, C * plane, W, g, row);
    }
}

/* yb (Op, 2, owr, VL) = the group's output rows 2i and 2i + 1, every kernel row taken (the padding's
 * zeros times an inf weight are NaNs, as conv_direct.c makes them) */
INLINE void rows_compute(const spool *d, const float *xg, const float *pack, float *yb, int64_t i, const int mr,
                         const int nv) {
  const int64_t K = d->C * d->kh * d->kw, cs = d->Hp * d->Wp * VL, rs = d->Wp * VL, os = 2 * d->owr * VL;
  for (int64_t r = 0; r < 2; r++) {
    const int64_t oy = 2 * i + r;
    for (int64_t ox = 0; ox < d->owr; ox += nv)
      for (int64_t o = 0; o < d->Op; o += mr)
        lanes_tile(xg + (oy * d->Wp + ox) * VL, cs, rs, d->C, d->kh, d->kw, 0, d->kh, pack + o * K,
                   yb + o * os + (r * d->owr + ox) * VL, os, mr, nv, 1);
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
#if defined(__AVX512F__)
      /* no NaN among the four (nearly always): the maximum, and the first cell that equals it, is
       * what the scan below gives (a tie of -0 and +0 names another cell only where relu stops the
       * gradient anyway); half the mask operations, which bound this loop */
      const __mmask16 nan = _mm512_cmp_ps_mask((__m512)a, (__m512)e, _CMP_UNORD_Q) |
                            _mm512_cmp_ps_mask((__m512)f, (__m512)h, _CMP_UNORD_Q);
      if (!nan) {
        __m512 m = _mm512_max_ps(_mm512_max_ps((__m512)a, (__m512)e), _mm512_max_ps((__m512)f, (__m512)h));
        __m512i cv = _mm512_set1_epi32(3);
        cv = _mm512_mask_mov_epi32(cv, _mm512_cmp_ps_mask((__m512)f, m, _CMP_EQ_OQ), _mm512_set1_epi32(2));
        cv = _mm512_mask_mov_epi32(cv, _mm512_cmp_ps_mask((__m512)e, m, _CMP_EQ_OQ), _mm512_set1_epi32(1));
        cv = _mm512_mask_mov_epi32(cv, _mm512_cmp_ps_mask((__m512)a, m, _CMP_EQ_OQ), _mm512_setzero_si512());
        const __mmask16 keep = _mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ);
        _mm512_store_ps(po + j * VL, _mm512_maskz_mov_ps(keep, m));
        _mm512_store_si512(co + j * VL, _mm512_mask_mov_epi32(_mm512_set1_epi32(CNN_SPOOL_NONE), keep, cv));
        continue;
      }
#endif
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
      lanes_transpose16(v);
      for (int64_t l = 0; l < g; l++) _mm512_mask_storeu_ps(pooled + at + l * O * plane + x0, m, v[l]);
    }
    for (int64_t k0 = 0; k0 < p4; k0 += 16) {
      const int64_t nk = p4 - k0 < 16 ? p4 - k0 : 16, nb = plane - 4 * k0 < 64 ? plane - 4 * k0 : 64;
      const __mmask64 m = nb == 64 ? ~(__mmask64)0 : (((__mmask64)1 << nb) - 1);
      __m512 v[16];
      for (int j = 0; j < 16; j++)
        v[j] = j < nk ? _mm512_castsi512_ps(_mm512_load_si512(sc + (k0 + j) * VL)) : _mm512_setzero_ps();
      lanes_transpose16(v);
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
  _Atomic bool failed; /* a thread had no workspace */
} spool_job;

/* groups [g0, g1) in this thread's workspace */
static void run_groups(void *arg, int64_t g0, int64_t g1) {
  spool_job *j = arg;
  const spool *d = j->d;
  float *xg = ws_get(d->scratch_floats);
  if (!xg) {
    atomic_store(&j->failed, true);
    return;
  }
  float *yb = xg + d->xg_floats, *pv = yb + d->yb_floats;
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
  const int64_t K = d.C * d.kh * d.kw, mr = d.mr;
  const size_t bytes = ((size_t)(d.Op * K) + 16) * sizeof(float);
  float *pack = cnn_alloc(bytes);
  if (!pack) return cnn_error_set("out of memory (convolution workspace)");
  /* for each tile of mr filters, (K, mr), filters past O zero: conv_direct.c's packing */
  for (int64_t o = 0; o < d.Op; o++)
    for (int64_t k = 0; k < K; k++) pack[(o / mr * K + k) * mr + o % mr] = o < d.O ? w[o * K + k] : 0.0f;
  spool_job j = {.d = &d, .x = x, .pack = pack, .b = b, .pooled = pooled, .code = code};
  cnn_parallel_for((d.N + VL - 1) / VL, 1, run_groups, &j);
  cnn_free(pack, bytes);
  return atomic_load(&j.failed) ? cnn_error_set("out of memory (convolution workspace)") : 0;
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

/* ---- backward: the pooling's and the convolution's in one pass over the lanes ----
 * The gradient of the convolution's output, gy, is made per group straight in the lanes (O, Hq, Wq,
 * VL) from the pooled gradient and the codes, zero-padded by kernel - 1 - padding for the input
 * gradient; never stored as (N, O, oh, ow). From it, in conv_small.c's orders (so its bits): the
 * weight gradient (each filter x tap a vector sum over the group's positions in row order, from
 * zero, added into the part's partial; each partial's lanes summed in order by the thread that made
 * it, then the parts in order), the input gradient (a correlation of gy with the flipped filters,
 * taps (o, ki, kj) in order, + 0 as its store adds a zero bias) and the bias gradient (conv.c's: per
 * image 16 running lanes over the plane, summed in order, then the tail; the images in double in
 * order). */

typedef struct {
  spool f;        /* the forward's plan (x, padding, output and pooled planes) */
  int64_t qt, ql; /* gy's padding in the lanes grid: kernel - 1 - padding (0 without gx) */
  int64_t Hq, Wq; /* the padded gy plane */
  int64_t Cp, Wr; /* gx's tile: C rounded up to mr, W to nv */
  int mr, nv;
  size_t xg_floats, gq_floats, gp_floats, yg_floats, part_floats, sums_floats, scratch_floats;
  bool gx, gw, gb;
} sback;

static bool plan_backward(sback *d, const cnn_conv2d_shape *s, const cnn_conv2d_params *p, bool gx, bool gw, bool gb) {
  memset(d, 0, sizeof *d);
  const cnn_pool2d_params pp = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, false, false, 0};
  const int64_t oh = s->H + p->pad_lo[0] + p->pad_hi[0] - s->kh + 1,
                ow = s->W + p->pad_lo[1] + p->pad_hi[1] - s->kw + 1;
  const int64_t phw[2] = {oh / 2, ow / 2};
  if (!plan(&d->f, s, p, &pp, phw)) return false;
  const spool *f = &d->f;
  d->gx = gx, d->gw = gw, d->gb = gb;
  d->qt = gx ? f->kh - 1 - f->pt : 0, d->ql = gx ? f->kw - 1 - f->pl : 0;
  d->Hq = gx ? f->H + f->kh - 1 : f->oh, d->Wq = gx ? f->W + f->kw - 1 : f->ow;
  if (gx) { /* gx's tile, as the forward picks one for C filters over rows of W */
    spool t = {.O = f->C, .ow = f->W};
    pick_tile(&t);
    d->mr = t.mr, d->nv = t.nv, d->Cp = t.Op, d->Wr = t.owr;
  }
  d->xg_floats = gw ? f->xg_floats : 0;
  d->gq_floats = (size_t)round_up((f->O * d->Hq * d->Wq + (gx ? d->Wr - f->W : 0)) * VL, 16);
  d->gp_floats = (size_t)(2 * f->O * f->ph * f->pw * VL); /* the pooled gradient and its codes in lanes */
  d->yg_floats = gx ? (size_t)(d->Cp * f->H * d->Wr * VL) : 0;
  d->part_floats = gw ? (size_t)(f->O * f->C * f->kh * f->kw * VL) : 0;
  d->sums_floats = gw ? (size_t)round_up(f->O * f->C * f->kh * f->kw, 16) : 0;
  d->scratch_floats = d->xg_floats + d->gq_floats + d->gp_floats + d->yg_floats + d->part_floats;
  return d->scratch_floats <= 4 * SPOOL_BUDGET;
}

/* images n0..n0+g of g, code (N, O, ph, pw) -> gq's cells (o, qt + r, ql + c) of every window, each
 * window's gradient (+ 0, as the scatter onto zeros) at its code's cell and 0 at the other three;
 * gp: scratch for the pooled gradient and codes in lanes */
static void unpool_lanes(const sback *d, const float *g, const uint8_t *code, int64_t n0, int64_t gn, float *gq,
                         float *gp) {
  const spool *f = &d->f;
  const int64_t O = f->O, pw = f->pw, plane = f->ph * pw, Wq = d->Wq;
  int32_t *gc = (int32_t *)(gp + O * plane * VL);
  for (int64_t o = 0; o < O; o++) {
    const float *so = g + (n0 * O + o) * plane; /* image l's plane at so + l * O * plane */
    const uint8_t *co = code + (n0 * O + o) * plane;
    float *dv = gp + o * plane * VL;
    int32_t *dc = gc + o * plane * VL;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    for (int64_t x0 = 0; x0 < plane; x0 += 16) {
      const int n = plane - x0 < 16 ? (int)(plane - x0) : 16;
      const __mmask16 m = (__mmask16)((1u << n) - 1);
      __m512 v[16];
      for (int64_t l = 0; l < 16; l++)
        v[l] = l < gn ? _mm512_maskz_loadu_ps(m, so + l * O * plane + x0) : _mm512_setzero_ps();
      lanes_transpose16(v);
      for (int j = 0; j < n; j++) _mm512_store_ps(dv + (x0 + j) * VL, v[j]);
      for (int64_t l = 0; l < 16; l++)
        v[l] = l < gn ? _mm512_castsi512_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, co + l * O * plane + x0)))
                      : _mm512_castsi512_ps(_mm512_set1_epi32(CNN_SPOOL_NONE));
      lanes_transpose16(v);
      for (int j = 0; j < n; j++) _mm512_store_si512(dc + (x0 + j) * VL, _mm512_castps_si512(v[j]));
    }
#else
    for (int64_t xx = 0; xx < plane; xx++)
      for (int64_t l = 0; l < VL; l++) {
        dv[xx * VL + l] = l < gn ? so[l * O * plane + xx] : 0.0f;
        dc[xx * VL + l] = l < gn ? co[l * O * plane + xx] : CNN_SPOOL_NONE;
      }
#endif
    float *qo = gq + ((o * d->Hq + d->qt) * Wq + d->ql) * VL;
    for (int64_t i = 0; i < f->ph; i++)
      for (int64_t j = 0; j < pw; j++) {
        const vf v = *(const vf *)(dv + (i * pw + j) * VL) + 0.0f;
        const vi c = *(const vi *)(dc + (i * pw + j) * VL);
        float *r0 = qo + (2 * i * Wq + 2 * j) * VL, *r1 = r0 + Wq * VL;
        *(vf *)r0 = (vf)((vi)v & (c == 0));
        *(vf *)(r0 + VL) = (vf)((vi)v & (c == 1));
        *(vf *)r1 = (vf)((vi)v & (c == 2));
        *(vf *)(r1 + VL) = (vf)((vi)v & (c == 3));
      }
  }
}

/* the bias gradient's per-image sums of the group: sb[n0 + l, o] for its lanes l < gn */
static void bias_lanes(const sback *d, const float *gq, int64_t n0, int64_t gn, float *sb) {
  const spool *f = &d->f;
  const int64_t ow = f->ow, L = f->oh * ow, L16 = L - L % 16;
  for (int64_t o = 0; o < f->O; o++) {
    const float *qo = gq + ((o * d->Hq + d->qt) * d->Wq + d->ql) * VL;
    vf lane[16];
    for (int q = 0; q < 16; q++) lane[q] = (vf){0};
    int64_t pos = 0, oy = 0, ox = 0; /* pos = oy * ow + ox, walked without divisions */
    for (; pos < L16; pos += 16)
#pragma GCC unroll 16
      for (int q = 0; q < 16; q++) {
        lane[q] += *(const vf *)(qo + (oy * d->Wq + ox) * VL);
        if (++ox == ow) ox = 0, oy++;
      }
    vf s = (vf){0};
    for (int q = 0; q < 16; q++) s += lane[q];
    for (; pos < L; pos++) {
      s += *(const vf *)(qo + (oy * d->Wq + ox) * VL);
      if (++ox == ow) ox = 0, oy++;
    }
    for (int64_t l = 0; l < gn; l++) sb[(n0 + l) * f->O + o] = s[l];
  }
}

/* part[(o0 + i) K + k0 + j] (vectors) += (= when first) sum over the group's positions of gy[o0 + i]
 * x tap j's input, i < mrv, j < nvv (conv_small.c's gw_tile, gy read from the padded grid) */
INLINE void gw_tile(const sback *d, const float *gg, const float *const *xk, vf *part, int64_t K, int mrv, int nvv,
                    bool first, const int mr, const int nv) {
  const spool *f = &d->f;
  const int64_t cs = d->Hq * d->Wq * VL, rq = d->Wq * VL, rs = f->Wp * VL;
  vf acc[8][6];
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int j = 0; j < nv; j++) acc[i][j] = (vf){0};
  const float *x[6];
#pragma GCC unroll 6
  for (int j = 0; j < nv; j++) x[j] = xk[j];
  for (int64_t oy = 0; oy < f->oh; oy++, gg += rq) {
    for (int64_t ox = 0; ox < f->ow; ox++) {
      vf a[8];
#pragma GCC unroll 8
      for (int i = 0; i < mr; i++) {
        a[i] = *(const vf *)(gg + i * cs + ox * VL);
        IN_REGISTER(a[i]); /* one load each, not one per FMA */
      }
#pragma GCC unroll 6
      for (int j = 0; j < nv; j++) {
        vf b = *(const vf *)(x[j] + ox * VL);
        IN_REGISTER(b);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) acc[i][j] += a[i] * b;
      }
    }
#pragma GCC unroll 6
    for (int j = 0; j < nv; j++) x[j] += rs;
  }
  (void)mrv; /* mr: the tiles here cover whole filter runs */
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int j = 0; j < nv; j++)
      if (j < nvv) part[i * K + j] = first ? acc[i][j] : part[i * K + j] + acc[i][j];
}

#define GW_TILES(MR, NV) \
  for (; o + (MR) <= f->O; o += (MR)) gw_tile(d, gg0 + o * cs, xk, part + o * K + k0, K, (MR), nvv, first, (MR), (NV))

/* the group's weight gradient into part: tiles of 6 filters x 4 taps (the last run of taps as
 * wide as it is), or 4 (then 2, 1) x 6 (any tile gives the same sums) */
INLINE void gw_group_nv(const sback *d, const float *xg, const float *gq, vf *part, bool first, const int nv) {
  const spool *f = &d->f;
  const int64_t K = f->C * f->kh * f->kw, khw = f->kh * f->kw, cs = d->Hq * d->Wq * VL;
  const float *gg0 = gq + (d->qt * d->Wq + d->ql) * VL;
  for (int64_t k0 = 0; k0 < K; k0 += nv) {
    const float *xk[6];
    const int nvv = K - k0 < nv ? (int)(K - k0) : nv;
    for (int j = 0; j < nv; j++) { /* taps past K read tap 0 and are dropped */
      const int64_t k = k0 + j < K ? k0 + j : 0, c = k / khw, ki = k % khw / f->kw, kj = k % f->kw;
      xk[j] = xg + ((c * f->Hp + ki) * f->Wp + kj) * VL;
    }
    int64_t o = 0;
    if (nv == 4) { /* a last run of fewer taps (LeNet's conv1: 25 = 6 x 4 + 1) in a narrower tile */
      if (nvv == 4) GW_TILES(6, 4);
      else if (nvv == 3) GW_TILES(6, 3);
      else if (nvv == 2) GW_TILES(6, 2);
      else GW_TILES(6, 1);
    } else {
      GW_TILES(4, 6);
      GW_TILES(2, 6);
      GW_TILES(1, 6);
    }
  }
}

/* 24 accumulators, the mr filters' vectors and one input vector in the 32 registers */
static void gw_group(const sback *d, const float *xg, const float *gq, vf *part, bool first) {
  if (d->f.O % 6 == 0) gw_group_nv(d, xg, gq, part, first, 4);
  else gw_group_nv(d, xg, gq, part, first, 6);
}

/* gx rows of the group: yg (Cp, H, Wr, VL) = the correlation of gq with the flipped filters */
INLINE void gx_compute(const sback *d, const float *gq, const float *pack, float *yg, const int mr, const int nv) {
  const spool *f = &d->f;
  const int64_t K = f->O * f->kh * f->kw, cs = d->Hq * d->Wq * VL, rs = d->Wq * VL, os = f->H * d->Wr * VL;
  for (int64_t oy = 0; oy < f->H; oy++) {
    /* kernel rows over gy's rows (grid rows qt .. qt + oh) and columns over its columns (ql .. ql +
     * ow) for some position of the tile: the others read zeros, and with finite weights add nothing,
     * bit for bit (a sum from +0 of nonzero terms and zeros never holds a -0; conv_small.c skips the
     * rows too) */
    const int64_t ki0 = d->qt - oy > 0 ? d->qt - oy : 0;
    const int64_t ki1 = d->qt + f->oh - oy < f->kh ? d->qt + f->oh - oy : f->kh;
    for (int64_t ox = 0; ox < d->Wr; ox += nv) {
      const int64_t kj0 = d->ql - ox - nv + 1 > 0 ? d->ql - ox - nv + 1 : 0;
      const int64_t kj1 = d->ql + f->ow - ox < f->kw ? d->ql + f->ow - ox : f->kw;
      for (int64_t c = 0; c < d->Cp; c += mr)
        lanes_tile_cols(gq + (oy * d->Wq + ox) * VL, cs, rs, f->O, f->kh, f->kw, ki0, ki1, kj0, kj1, pack + c * K,
                        yg + c * os + (oy * d->Wr + ox) * VL, os, mr, nv, 1);
    }
  }
}

#define GX_CASE(MR, NV) \
  case (MR)*8 + (NV): gx_compute(d, gq, pack, yg, MR, NV); break;

static void gx_compute_any(const sback *d, const float *gq, const float *pack, float *yg) {
  switch (d->mr * 8 + d->nv) {
#if NACC >= 24
    GX_CASE(6, 4)
    GX_CASE(8, 3)
    GX_CASE(4, 5)
    GX_CASE(4, 6)
    GX_CASE(8, 2)
    GX_CASE(6, 3)
    GX_CASE(4, 4)
#else
    GX_CASE(4, 3)
    GX_CASE(6, 2)
    GX_CASE(4, 2)
    GX_CASE(2, 4)
#endif
    GX_CASE(2, 6)
  default: gx_compute(d, gq, pack, yg, 1, 6); break;
  }
}

/* yg -> images n0..n0+gn of gx (N, C, H, W), each value + 0 (conv_small.c's store of a zero bias) */
static void gx_store(const sback *d, const float *yg, int64_t n0, int64_t gn, float *gx) {
  const spool *f = &d->f;
  const int64_t C = f->C, W = f->W, plane = f->H * W, os = f->H * d->Wr * VL;
  for (int64_t c = 0; c < C; c++)
    for (int64_t oy = 0; oy < f->H; oy++) {
      const float *s = yg + c * os + oy * d->Wr * VL;
      const int64_t at = (n0 * C + c) * plane + oy * W; /* image l's row at gx + at + l * C * plane */
#if defined(__AVX512F__)
      for (int64_t x0 = 0; x0 < W; x0 += 16) {
        const int n = W - x0 < 16 ? (int)(W - x0) : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512 v[16];
        for (int j = 0; j < 16; j++) v[j] = j < n ? _mm512_load_ps(s + (x0 + j) * VL) : _mm512_setzero_ps();
        lanes_transpose16(v);
        for (int64_t l = 0; l < gn; l++)
          _mm512_mask_storeu_ps(gx + at + l * C * plane + x0, m, _mm512_add_ps(v[l], _mm512_setzero_ps()));
      }
#else
      for (int64_t l = 0; l < gn; l++)
        for (int64_t xx = 0; xx < W; xx++) gx[at + l * C * plane + xx] = s[xx * VL + l] + 0.0f;
#endif
    }
}

typedef struct {
  const sback *d;
  const float *x, *g, *pack;
  const uint8_t *code;
  float *gx, *sb, *sums; /* sums: each part's weight-gradient lane sums, sums_floats apart */
  int64_t groups, parts;
  _Atomic bool failed; /* a thread had no workspace */
} sback_job;

/* the zeros of gq that unpool_lanes never writes: its padding, an odd last row and column, the tail */
static void gq_zero(const sback *d, float *gq) {
  const spool *f = &d->f;
  const int64_t Hq = d->Hq, Wq = d->Wq, r0 = d->qt, r1 = d->qt + 2 * f->ph, c0 = d->ql, c1 = d->ql + 2 * f->pw;
  for (int64_t o = 0; o < f->O; o++) {
    float *p = gq + o * Hq * Wq * VL;
    memset(p, 0, (size_t)(r0 * Wq * VL) * sizeof(float));
    for (int64_t r = r0; r < r1; r++) {
      memset(p + r * Wq * VL, 0, (size_t)(c0 * VL) * sizeof(float));
      memset(p + (r * Wq + c1) * VL, 0, (size_t)((Wq - c1) * VL) * sizeof(float));
    }
    memset(p + r1 * Wq * VL, 0, (size_t)((Hq - r1) * Wq * VL) * sizeof(float));
  }
  const size_t body = (size_t)(f->O * Hq * Wq * VL);
  memset(gq + body, 0, (d->gq_floats - body) * sizeof(float));
}

/* parts [p0, p1): part t takes its share of the groups (conv_small.c's split) */
static void back_parts(void *arg, int64_t p0, int64_t p1) {
  sback_job *j = arg;
  const sback *d = j->d;
  const spool *f = &d->f;
  for (int64_t t = p0; t < p1; t++) {
    float *xg = ws_get(d->scratch_floats);
    if (!xg) {
      atomic_store(&j->failed, true);
      return;
    }
    float *gq = xg + d->xg_floats, *gp = gq + d->gq_floats, *yg = gp + d->gp_floats;
    vf *part = (vf *)(yg + d->yg_floats);
    float *sums = j->sums + (size_t)t * d->sums_floats;
    int64_t g0, g1;
    cnn_parallel_part(j->groups, j->parts, t, &g0, &g1);
    if (d->gw && g0 == g1) /* more threads than groups: an empty part adds zeros */
      memset(sums, 0, d->sums_floats * sizeof(float));
    if (d->gw && g0 < g1) pad_zero(f, xg);
    gq_zero(d, gq);
    for (int64_t gi = g0; gi < g1; gi++) {
      const int64_t n0 = gi * VL, gn = f->N - n0 < VL ? f->N - n0 : VL;
      unpool_lanes(d, j->g, j->code, n0, gn, gq, gp);
      if (d->gb) bias_lanes(d, gq, n0, gn, j->sb);
      if (d->gw) {
        group_fill(f, j->x, n0, gn, xg);
        gw_group(d, xg, gq, part, gi == g0); /* the part's first group sets it: no zeroing pass */
      }
      if (d->gx) {
        gx_compute_any(d, gq, j->pack, yg);
        gx_store(d, yg, n0, gn, j->gx);
      }
    }
    /* the part's lanes summed here, where its partial is in this thread's cache: what goes to
     * the other parts' thread is a float a weight, not a vector */
    if (d->gw && g0 < g1) lanes_sums(part, f->O * f->C * f->kh * f->kw, sums);
  }
}

static bool finite(const float *p, int64_t n) {
  int ok = 1;
  for (int64_t i = 0; i < n; i++) ok &= p[i] - p[i] == 0;
  return ok;
}

int cnn_conv2d_relu_max_pool_small_backward_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *g,
                                                const uint8_t *code, const float *x, const float *w, float *gx,
                                                float *gw, float *gb) {
  if (on < 0) {
    const char *e = getenv("CNN_CONV_POOL");
    on = !(e && strcmp(e, "0") == 0);
  }
  sback d;
  /* only where the separate backward takes conv_small.c's kernels, whose bits these are */
  if (!on || (!gx && !gw) || !plan_backward(&d, s, p, gx != NULL, gw != NULL, gb != NULL) ||
      (gw && !cnn_conv2d_small_grad(s, p, false)) ||
      (gx && (!cnn_conv2d_small_grad(s, p, true) || !finite(w, s->O * s->C * s->kh * s->kw))))
    return 1;
  const spool *f = &d.f;
  const int nt = cnn_parallel_get_threads();
  const int64_t groups = (f->N + VL - 1) / VL, parts = nt > 1 && groups > 1 ? nt : 1;
  const int64_t K = f->O * f->kh * f->kw, mr = d.mr, kh = f->kh, kw = f->kw;
  /* the parts' lane sums first (64-byte aligned from the allocator, each a multiple of 16 floats),
   * then gx's packed filters and the bias gradient's per-image sums */
  const size_t sumf = (size_t)parts * d.sums_floats, packf = gx ? (size_t)(d.Cp * K) : 0;
  const size_t sbf = gb ? (size_t)(f->N * f->O) : 0;
  const size_t bytes = (sumf + packf + sbf + 16) * sizeof(float);
  float *block = cnn_alloc(bytes);
  if (!block) return cnn_error_set("out of memory (convolution workspace)");
  float *sums = block, *pack = block + sumf, *sb = pack + packf;
  /* gx's filters: channels c reading gy's channels o with the taps flipped (conv_small.c's input
   * gradient packing), tiles of mr channels, (K, mr) each, channels past C zero */
  for (int64_t c = 0; gx && c < d.Cp; c++)
    for (int64_t o = 0; o < f->O; o++)
      for (int64_t ki = 0; ki < kh; ki++)
        for (int64_t kj = 0; kj < kw; kj++) {
          const int64_t k = (o * kh + ki) * kw + kj;
          pack[(c / mr * K + k) * mr + c % mr] = c < f->C ? w[((o * f->C + c) * kh + kh - 1 - ki) * kw + kw - 1 - kj]
                                                          : 0.0f;
        }
  sback_job j = {.d = &d,
                 .x = x,
                 .g = g,
                 .pack = pack,
                 .code = code,
                 .gx = gx,
                 .sb = sb,
                 .sums = sums,
                 .groups = groups,
                 .parts = parts};
  cnn_parallel_for(parts, 1, back_parts, &j);
  if (atomic_load(&j.failed)) {
    cnn_free(block, bytes);
    return cnn_error_set("out of memory (convolution workspace)");
  }
  if (gw) { /* the parts' lane sums in part order (a float a weight a part: no loop) */
    const float *part[CNN_PARALLEL_MAX_THREADS];
    for (int64_t t = 0; t < parts; t++) part[t] = sums + (size_t)t * d.sums_floats;
    parts_sum(gw, part, parts, 0, f->O * f->C * kh * kw);
  }
  for (int64_t o = 0; gb && o < f->O; o++) { /* conv.c's bias_grad_channel: the images in double, in order */
    double acc = 0;
    for (int64_t n = 0; n < f->N; n++) acc += sb[n * f->O + o];
    gb[o] = (float)acc;
  }
  cnn_free(block, bytes);
  return 0;
}
