/* Stride-1 convolutions of small planes with the batch in the vector lanes (see conv_small.h).
 *
 * conv_direct.c computes a slab's positions in place, through shifted pointers into rows that run
 * on into the next row: at LeNet's 10x10 outputs of 14x14 planes, 31% of what it computes is
 * dropped (45% for the input gradient's 14x14 of 18x18), and its vectors run along a row. Here a
 * group of `lanes` images (the vector width) is laid out as (C, Hp, Wp, lanes): the zero-padded
 * planes, each position one vector of the group's images. Output position (oy, ox) of filter o is
 * then one vector, the sum over taps (c, ki, kj) of w[o, c, ki, kj] times the vector at
 * (c, oy + ki, ox + kj): every load is an aligned vector, no position is computed but the output's
 * (rows rounded up to the tile width), and the padding costs nothing but its zeros.
 *
 * A tile holds mr filters x nv positions of a row in vector accumulators; the taps run in the order
 * (c, ki, kj) with one fused multiply-add each, from zero, and the store adds the bias (then a
 * residual, then max(0, .)), as conv_direct.c's tiles and store do with the same packed filters:
 * the two give the same bits. The group is the unit of work on the runtime's threads; a position
 * depends on no other, so the result does not depend on the thread count. */
#include "conv_small.h"

#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "conv_lanes.h"
#include "conv_vec.h"
#include "core/parallel.h"

/* Per-thread workspace cap (floats): a group's input and output grids stay in L2. */
#define SMALL_BUDGET (256 * 1024)
/* Floats of a forward's output band: the group's output rows are computed and stored a band at a
 * time, so its grids stay within the budget on 16x16 planes (neutral at 8x8: 177-181 GFLOP/s per
 * core for bands of 16K, 32K floats and the whole plane). */
#define BAND_FLOATS (32 * 1024)
/* The weight gradient's group grids (input and output gradient): ResNet-20's 16x16 stage needs 297K
 * floats, past L2 by a sixth, and still measured 1.2x conv_direct.c there */
#define GW_BUDGET (320 * 1024)
/* Floats of a weight gradient's input rows and output-gradient band when the whole grids would pass
 * GW_BUDGET (ResNet-20's 32x32 stage: 2.2 MB a group): the input rows a band of output rows reads are
 * filled (transposed) per band, kh - 1 rows again for each band after the first */
#define ROWBAND_FLOATS (160 * 1024)
/* A stride-2 forward's group: ResNet-20's 16 -> 32 reads 16 planes of 34x34 (296K floats) */
#define STRIDED_BUDGET (384 * 1024)

/* The tiles there are instances of: mr filters x nv positions (mr * nv accumulators). */
static const struct {
  int mr, nv;
} TILES[] = {
#if NACC >= 24
    {8, 3}, {6, 4}, {4, 6}, {4, 5}, {6, 3}, {8, 2}, {4, 4}, {2, 6}, {1, 6},
#else
    {4, 3}, {6, 2}, {4, 2}, {2, 6}, {2, 4}, {1, 6},
#endif
};

/* The tile with the least padded work for O filters over rows of ow, weighing each tile's loads and
 * broadcasts (mr + nv a tap) against its fused multiply-adds (mr * nv). */
static void pick_tile(cnn_sconv *d) {
  double best = 0;
  for (size_t t = 0; t < sizeof TILES / sizeof TILES[0]; t++) {
    const int mr = TILES[t].mr, nv = TILES[t].nv;
    /* 4 x 4 (16 accumulators) ran at 99 GFLOP/s per core on ResNet-20's 32 -> 32 at 16x16, where
     * 6 x 4 ran 178 and 8 x 3 177: the model picked it there, so the forward never does */
    if (mr == 4 && nv == 4) continue;
    double cost = (double)(round_up(d->O, mr) * round_up(d->ow, nv)) * (1.0 + (mr + nv) / (2.0 * mr * nv));
    if (best == 0 || cost < best) best = cost, d->mr = mr, d->nv = nv;
  }
  d->Op = round_up(d->O, d->mr);
  d->owr = round_up(d->ow, d->nv);
}

/* The forward's plan; for_gw: the weight gradient's shape test instead (it scatters nothing) */
static bool plan(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                 int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t s, bool for_gw) {
  memset(d, 0, sizeof *d);
  d->N = N, d->C = C, d->H = H, d->W = W, d->O = O, d->kh = kh, d->kw = kw;
  d->pt = pt, d->pl = pl, d->pb = pb, d->pr = pr, d->s = s;
  d->Hp = H + pt + pb, d->Wp = W + pl + pr;
  d->lanes = VL;
  if (N < 1 || C < 1 || O < 1 || (s != 1 && s != 2) || d->Hp < kh || d->Wp < kw) return false;
  d->oh = (d->Hp - kh) / s + 1, d->ow = (d->Wp - kw) / s + 1;
  /* the lanes mostly full (LeNet's batch of 64: 4 groups of 16) */
  if (round_up(N, VL) * 3 > N * 4) return false;
  /* Small planes, few filters, and enough taps an output to pay for the lanes' transposes: LeNet's
   * conv2 (6 -> 16 at 5x5 on 14x14, 150 taps) and its input gradient (16 -> 6 on 10x10 padded by 4,
   * 400 taps) at batch 64 measured 312-412 us against 382-486 for conv_direct.c, and 298-364 against
   * 432-483; its conv1 (1 -> 6, 25 taps an output on 28x28) 303-377 against 262-322, as scattering
   * each vector's images to their planes costs more there than conv_direct.c's dropped positions.
   * ResNet-20's 8x8 stage (64 -> 64 at 3x3, 576 taps, batch 128) as a forward and as an input
   * gradient measured 189-199 GFLOP/s per core against 129-153 for conv_direct.c (1 and 2 threads);
   * its 16x16 stage (32 -> 32) 168-177 against 158-170; its 32x32 stage (16 -> 16) 139-149 against
   * 164-167, so planes past 256 stay on conv_direct.c, as do wider layers (ResNet-18's). The weight
   * gradient (its tile's input vector pinned to a register, see gw_tile) of the 8x8 stage: 143-156
   * against 106-118 before the pin, 120-123 for conv_direct.c; of the 16x16 stage 150-160 against
   * 121-136 for conv_direct.c; of the 32x32 stage (16 -> 16, grids of 2.2 MB, so rows in bands: see
   * ROWBAND_FLOATS) 134-145 against 124-128 (the forward and input gradient there, rows in bands
   * too, 113-134 against 136-143: the transposes in and out cost 30% of the pass, so they stay). Its
   * stem (3 -> 16, 27 taps on 32x32: 62-68 against 80-87) pays more for the lanes' transposes than it
   * gains: the first rule stops at LeNet's 28x28, the second needs 64 taps. */
  const int64_t K = C * kh * kw;
  /* stride 2 (ResNet-20's 16 -> 32 on 32x32 and 32 -> 64 on 16x16, im2col + GEMM otherwise) */
  if (s == 2) {
    if (K < 64 || K > 576 || O > 64 || H * W > 1024) return false;
    if (for_gw) return true;
  } else if (for_gw) return (K <= 512 && O <= 16 && H * W <= 784) || (K >= 64 && K <= 576 && O <= 64 && H * W <= 1024);
  else if (K < 64 || !((K <= 512 && O <= 16 && H * W <= 400) || (K <= 576 && O <= 64 && H * W <= 256))) return false;
  pick_tile(d);
  /* tail: the last row's tiles read up to s (owr - 1) + kw - Wp positions past the plane */
  const int64_t tail = s * (d->owr - 1) + kw - d->Wp;
  d->xrows = d->Hp;
  d->xg_floats = (size_t)round_up((C * d->Hp * d->Wp + (tail > 0 ? tail : 0)) * VL, 16);
  const int64_t row = d->Op * d->owr * VL;
  d->band = BAND_FLOATS / row < 1 ? 1 : BAND_FLOATS / row < d->oh ? BAND_FLOATS / row : d->oh;
  d->scratch_floats = d->xg_floats + (size_t)(row * d->band);
  return d->scratch_floats <= (s == 2 ? STRIDED_BUDGET : SMALL_BUDGET);
}

bool cnn_sconv_plan_forward(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                            int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  return plan(d, N, C, H, W, O, kh, kw, pt, pl, pb, pr, 1, false);
}

bool cnn_sconv_plan_forward_strided(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                    int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t s) {
  return plan(d, N, C, H, W, O, kh, kw, pt, pl, pb, pr, s, false);
}

bool cnn_sconv_plan_input_grad(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                               int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  int64_t oh = H + pt + pb - kh + 1, ow = W + pl + pr - kw + 1;
  return cnn_sconv_plan_forward(d, N, O, oh, ow, C, kh, kw, kh - 1 - pt, kw - 1 - pl, kh - 1 - pb, kw - 1 - pr);
}

size_t cnn_sconv_packed_floats(const cnn_sconv *d) { return (size_t)(d->Op * d->C * d->kh * d->kw); }

/* ---- a group ---- */

/* The padding of xg (C, Hp, Wp, VL) and its tail: zeros, which group_fill never overwrites. */
static void pad_zero(const cnn_sconv *d, float *xg) {
  const int64_t Hp = d->Hp, Wp = d->Wp, W = d->W;
  for (int64_t c = 0; c < d->C; c++) {
    float *p = xg + c * Hp * Wp * VL;
    memset(p, 0, (size_t)(d->pt * Wp * VL) * sizeof(float));
    for (int64_t r = d->pt; r < d->pt + d->H; r++) {
      memset(p + r * Wp * VL, 0, (size_t)(d->pl * VL) * sizeof(float));
      memset(p + (r * Wp + d->pl + W) * VL, 0, (size_t)(d->pr * VL) * sizeof(float));
    }
    memset(p + (d->pt + d->H) * Wp * VL, 0, (size_t)(d->pb * Wp * VL) * sizeof(float));
  }
  const size_t body = (size_t)(d->C * Hp * Wp * VL);
  memset(xg + body, 0, (d->xg_floats - body) * sizeof(float));
}

/* rows [0, h) of w floats at src (contiguous; image l's at src + l * istride) -> row r's vectors at
 * dst + r * drs, lanes g..VL zero: lanes_gather over the rows as one run, so that rows shorter than
 * the vector (ResNet-20's 8x8) share a transpose (the same values moved) */
static void gather_rows(const float *src, int64_t istride, int64_t h, int64_t w, int64_t g, float *dst, int64_t drs) {
#if defined(__AVX512F__)
  const int64_t len = h * w;
  int64_t r = 0, x = 0; /* the row and column of position x0 */
  for (int64_t x0 = 0; x0 < len; x0 += 16) {
    __m512 v[16];
    const int n = lanes_load16(src, istride, len, x0, g, v);
    for (int j = 0; j < n; j++) {
      _mm512_store_ps(dst + r * drs + x * VL, v[j]);
      if (++x == w) x = 0, r++;
    }
  }
#else
  for (int64_t r = 0; r < h; r++) lanes_gather(src + r * w, istride, w, g, dst + r * drs);
#endif
}

/* images n0..n0+g of src (N, C, H, W) -> the inside of xg (C, Hp, Wp, VL), lanes g..VL zero (the
 * padding is pad_zero's) */
static void group_fill(const cnn_sconv *d, const float *src, int64_t n0, int64_t g, float *xg) {
  const int64_t C = d->C, H = d->H, W = d->W, Wp = d->Wp, plane = H * W;
  const float *s = src + n0 * C * plane;
  for (int64_t c = 0; c < C; c++)
    gather_rows(s + c * plane, C * plane, H, W, g, xg + ((c * d->Hp + d->pt) * Wp + d->pl) * VL, Wp * VL);
}

/* rowband: padded rows [r0, r1) of images n0..n0+g -> rows [0, r1 - r0) of xg (C, xrows, Wp, VL),
 * padding included */
static void band_fill(const cnn_sconv *d, const float *src, int64_t n0, int64_t g, int64_t r0, int64_t r1, float *xg) {
  const int64_t C = d->C, H = d->H, W = d->W, Wp = d->Wp, plane = H * W;
  const float *s = src + n0 * C * plane;
  for (int64_t c = 0; c < C; c++)
    for (int64_t r = r0; r < r1; r++) {
      float *row = xg + (c * d->xrows + r - r0) * Wp * VL;
      if (r < d->pt || r >= d->pt + H) {
        memset(row, 0, (size_t)(Wp * VL) * sizeof(float));
        continue;
      }
      memset(row, 0, (size_t)(d->pl * VL) * sizeof(float));
      memset(row + (d->pl + W) * VL, 0, (size_t)(d->pr * VL) * sizeof(float));
      lanes_gather(s + c * plane + (r - d->pt) * W, C * plane, W, g, row + d->pl * VL);
    }
}

/* rowband: xg's tail past its rows, zeros (band_fill writes the rest) */
static void tail_zero(const cnn_sconv *d, float *xg) {
  const size_t body = (size_t)(d->C * d->xrows * d->Wp * VL);
  memset(xg + body, 0, (d->xg_floats - body) * sizeof(float));
}

/* the forward's tiles are lanes_tile; kernel rows [ki0, ki1) only (the others read rows of
 * padding: their products are zeros, which leave a sum that starts at +0 unchanged, bit for bit) */

/* yg (Op, band, owr, VL) = the group's correlation at output rows [oy0, oy1) */
INLINE void group_compute(const cnn_sconv *d, const float *xg, const float *pack, float *yg, int64_t oy0, int64_t oy1,
                          const int mr, const int nv, const int64_t S, const int64_t kh, const int64_t kw) {
  const int64_t K = d->C * kh * kw, cs = d->Hp * d->Wp * VL, rs = d->Wp * VL, os = d->band * d->owr * VL;
  for (int64_t oy = oy0; oy < oy1; oy++) {
    /* kernel rows over input rows: padded rows S oy + ki in [pt, pt + H) */
    const int64_t top = S * oy, ki0 = d->pt - top > 0 ? d->pt - top : 0,
                  ki1 = d->pt + d->H - top < kh ? d->pt + d->H - top : kh;
    for (int64_t ox = 0; ox < d->owr; ox += nv)
      for (int64_t o = 0; o < d->Op; o += mr)
        lanes_tile(xg + (top * d->Wp + S * ox) * VL, cs, rs, d->C, kh, kw, ki0, ki1, pack + o * K,
                   yg + o * os + ((oy - oy0) * d->owr + ox) * VL, os, mr, nv, S);
  }
}

#define TILE_CASE(MR, NV) \
  case (MR)*8 + (NV): group_compute(d, xg, pack, yg, oy0, oy1, MR, NV, S, kh, kw); break;

INLINE void group_compute_s(const cnn_sconv *d, const float *xg, const float *pack, float *yg, int64_t oy0, int64_t oy1,
                            const int64_t S, const int64_t kh, const int64_t kw) {
  switch (d->mr * 8 + d->nv) {
#if NACC >= 24
    TILE_CASE(8, 3)
    TILE_CASE(6, 4)
    TILE_CASE(4, 6)
    TILE_CASE(4, 5)
    TILE_CASE(6, 3)
    TILE_CASE(8, 2)
    TILE_CASE(4, 4)
#else
    TILE_CASE(4, 3)
    TILE_CASE(6, 2)
    TILE_CASE(4, 2)
    TILE_CASE(2, 4)
#endif
    TILE_CASE(2, 6)
  default: group_compute(d, xg, pack, yg, oy0, oy1, 1, 6, S, kh, kw); break;
  }
}

/* 3x3 kernels as constants: a channel's nine taps one straight run of loads and multiply-adds, the
 * same taps in the same order (ResNet-20's 32 -> 32 at 16x16, forward: 178-182 -> 190-195 GFLOP/s
 * a core, build/conv_bench --threads 1) */
static void group_compute_any(const cnn_sconv *d, const float *xg, const float *pack, float *yg, int64_t oy0,
                              int64_t oy1) {
  if (d->s == 2) group_compute_s(d, xg, pack, yg, oy0, oy1, 2, d->kh, d->kw);
  else if (d->kh == 3 && d->kw == 3) group_compute_s(d, xg, pack, yg, oy0, oy1, 1, 3, 3);
  else group_compute_s(d, xg, pack, yg, oy0, oy1, 1, d->kh, d->kw);
}

/* rows [oy0, oy1) of y[n0..n0+g) (N, O, oh, ow) = yg's lanes plus the bias and d->residual, then
 * max(0, .) with d->relu (as conv_direct.c's slab_store) */
static void group_store(const cnn_sconv *d, const float *yg, const float *b, int64_t n0, int64_t g, int64_t oy0,
                        int64_t oy1, float *y) {
  const int64_t O = d->O, ow = d->ow, plane = d->oh * ow, os = d->band * d->owr * VL;
  for (int64_t o = 0; o < O; o++) {
    const float bv = b ? b[o] : 0.0f;
    const float *so = yg + o * os;
    const int64_t at = (n0 * O + o) * plane + oy0 * ow; /* image l's rows at y + at + l * O * plane */
#if defined(__AVX512F__)
    /* the band's rows as one run of positions, so that rows shorter than the vector (8x8) share a
     * transpose */
    const int64_t len = (oy1 - oy0) * ow;
    const __m512 vb = _mm512_set1_ps(bv), zero = _mm512_setzero_ps();
    int64_t r = 0, x = 0; /* the row and column of position x0 */
    for (int64_t x0 = 0; x0 < len; x0 += 16) {
      const int n = len - x0 < 16 ? (int)(len - x0) : 16;
      const __mmask16 m = (__mmask16)((1u << n) - 1);
      __m512 v[16];
      for (int j = 0; j < 16; j++) {
        v[j] = j < n ? _mm512_load_ps(so + (r * d->owr + x) * VL) : zero;
        if (j < n && ++x == ow) x = 0, r++;
      }
      lanes_transpose16(v);
      for (int64_t l = 0; l < g; l++) {
        __m512 t = _mm512_add_ps(v[l], vb);
        if (d->residual) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, d->residual + at + l * O * plane + x0));
        if (d->relu) /* F.relu: v <= 0 (-0 too) gives +0, NaN stays (not-less-or-equal is true for NaN) */
          t = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(t, zero, _CMP_NLE_UQ), t);
        _mm512_mask_storeu_ps(y + at + l * O * plane + x0, m, t);
      }
    }
#else
    for (int64_t oy = oy0; oy < oy1; oy++) {
      const float *s = so + (oy - oy0) * d->owr * VL;
      for (int64_t l = 0; l < g; l++) {
        float *dst = y + at + (oy - oy0) * ow + l * O * plane;
        const float *r = d->residual ? d->residual + at + (oy - oy0) * ow + l * O * plane : NULL;
        for (int64_t x = 0; x < ow; x++) {
          float v = s[x * VL + l] + bv;
          if (r) v += r[x];
          dst[x] = d->relu && v <= 0 ? 0.0f : v;
        }
      }
    }
#endif
  }
}

static void gx2_compute_any(const cnn_sconv *d, const float *xg, const float *pack, float *yg, int64_t r0, int64_t r1);

typedef struct {
  const cnn_sconv *d;
  const float *x, *pack, *b;
  float *y;
  float *const *ws;
} sconv_job;

/* groups [g0, g1) in this thread's workspace */
static void run_groups(void *arg, int64_t g0, int64_t g1) {
  const sconv_job *j = arg;
  const cnn_sconv *d = j->d;
  float *xg = j->ws[cnn_parallel_slot()], *yg = xg + d->xg_floats;
  pad_zero(d, xg);
  for (int64_t gi = g0; gi < g1; gi++) {
    const int64_t n0 = gi * VL, g = d->N - n0 < VL ? d->N - n0 : VL;
    group_fill(d, j->x, n0, g, xg);
    for (int64_t oy0 = 0; oy0 < d->oh; oy0 += d->band) {
      const int64_t oy1 = oy0 + d->band < d->oh ? oy0 + d->band : d->oh;
      if (d->gx2) gx2_compute_any(d, xg, j->pack, yg, oy0, oy1);
      else group_compute_any(d, xg, j->pack, yg, oy0, oy1);
      group_store(d, yg, j->b, n0, g, oy0, oy1, j->y);
    }
    if (d->then) d->then(d->then_ctx, n0, n0 + g);
  }
}

static void run(const cnn_sconv *d, const float *x, const float *pack, const float *b, float *y, float *const *ws,
                const cnn_parallel_loop *beside) {
  sconv_job j = {.d = d, .x = x, .pack = pack, .b = b, .y = y, .ws = ws};
  const cnn_parallel_loop loops[2] = {{(d->N + VL - 1) / VL, 1, run_groups, &j},
                                      beside ? *beside : (cnn_parallel_loop){0}};
  cnn_parallel_loops(beside ? 2 : 1, loops);
}

/* pack: for each tile of mr filters, (K, mr), filters past O zero: conv_direct.c's packing */
void cnn_sconv_forward(const cnn_sconv *d, const float *x, const float *w, const float *b, float *y, float *pack,
                       float *const *ws) {
  const int64_t K = d->C * d->kh * d->kw, mr = d->mr;
  for (int64_t o = 0; o < d->Op; o++)
    for (int64_t k = 0; k < K; k++)
      pack[(o / mr * K + k) * mr + o % mr] = o < d->O ? (d->scale ? w[o * K + k] * d->scale[o] : w[o * K + k]) : 0.0f;
  run(d, x, pack, b, y, ws, NULL);
}

/* filters: gx's channels c reading gy's channels o with the taps flipped,
 * w'[c][o][ki][kj] = w[o][c][kh-1-ki][kw-1-kj], w (O = d->C, C = d->O, kh, kw) */
void cnn_sconv_input_grad(const cnn_sconv *d, const float *gy, const float *w, float *gx, float *pack, float *const *ws,
                          const cnn_parallel_loop *beside) {
  const int64_t kh = d->kh, kw = d->kw, K = d->C * kh * kw, mr = d->mr, Cw = d->O;
  for (int64_t c = 0; c < d->Op; c++)
    for (int64_t o = 0; o < d->C; o++)
      for (int64_t ki = 0; ki < kh; ki++)
        for (int64_t kj = 0; kj < kw; kj++) {
          int64_t k = (o * kh + ki) * kw + kj;
          float v = c < d->O ? w[((o * Cw + c) * kh + kh - 1 - ki) * kw + kw - 1 - kj] : 0.0f;
          pack[(c / mr * K + k) * mr + c % mr] = v;
        }
  run(d, gy, pack, NULL, gx, ws, beside);
}

/* ---- stride-2 input gradient ----
 * gx[c, iy, ix] = sum over o, ki, kj of w[o, c, ki, kj] gy[o, oy, ox] where iy = 2 oy + ki - pt
 * (ix likewise). Rows iy = 2m + p take the taps ki of parity (p + pt) mod 2, reading gy row
 * m + (p + pt - ki) / 2: for each of the four phases (p, q) a stride-1 correlation of gy (in the
 * lanes, zero-bordered) with the taps of those parities, flipped. The phases' tiles write their
 * vectors two positions apart into one output grid, whose rows group_store stores as the forward's.
 * Every product is one im2col + GEMM makes (no zeros between gy's positions), in the order
 * (o, ki descending, kj descending) from zero: not the GEMM's order, so within rounding of it. */

/* the taps of parity (p + pad) mod 2 of a kernel of k: the largest *kmax, its gy offset *a0, *n of
 * them (kmax, kmax - 2, ...) */
static void phase_taps(int64_t k, int64_t pad, int64_t p, int64_t *a0, int64_t *n, int64_t *kmax) {
  *kmax = (k - 1) - ((k - 1 - p - pad) % 2 + 2) % 2;
  *n = *kmax < 0 ? 0 : *kmax / 2 + 1;
  *a0 = (p + pad - *kmax) / 2;
}

bool cnn_sconv_plan_input_grad_strided(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                       int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t s) {
  /* the strided forward's shapes (ResNet-20's 16 -> 32 and 32 -> 64), kernels of 2 and more */
  cnn_sconv f;
  if (s != 2 || kh < 2 || kw < 2 || !plan(&f, N, C, H, W, O, kh, kw, pt, pl, pb, pr, s, false)) return false;
  memset(d, 0, sizeof *d);
  d->gx2 = true, d->s = 2, d->lanes = VL;
  d->N = N, d->C = O, d->H = f.oh, d->W = f.ow, d->O = C, d->oh = H, d->ow = W, d->kh = kh, d->kw = kw;
  int64_t amin = 0, bmin = 0, rows = 0, cols = 0, mw = 0;
  for (int p = 0; p < 2; p++) {
    phase_taps(kh, pt, p, &d->a0[p], &d->ka[p], &d->kmax[p]);
    phase_taps(kw, pl, p, &d->b0[p], &d->kb[p], &d->lmax[p]);
    if (d->ka[p] < 1 || d->kb[p] < 1) return false;
    if (d->a0[p] < amin) amin = d->a0[p];
    if (d->b0[p] < bmin) bmin = d->b0[p];
    const int64_t m = (W - p + 1) / 2;
    if (m > mw) mw = m;
  }
  /* tiles over a phase's row of mw positions */
  d->ow = mw;
  pick_tile(d);
  const int64_t owr = d->owr;
  d->ow = W, d->owr = 2 * owr;
  /* gy's border: rows m + a for m < (H - p + 1) / 2, columns n + b for n < owr */
  d->pt = -amin, d->pl = -bmin;
  for (int p = 0; p < 2; p++) {
    const int64_t r = (H - p + 1) / 2 - 1 + d->a0[p] + d->ka[p], c = owr - 1 + d->b0[p] + d->kb[p];
    if (r > rows) rows = r;
    if (c > cols) cols = c;
  }
  d->Hp = d->pt + (rows > d->H ? rows : d->H), d->Wp = d->pl + (cols > d->W ? cols : d->W);
  d->pb = d->Hp - d->pt - d->H, d->pr = d->Wp - d->pl - d->W;
  d->xrows = d->Hp;
  d->xg_floats = (size_t)round_up(d->C * d->Hp * d->Wp * VL, 16);
  /* output rows in bands of an even count */
  const int64_t row = d->Op * d->owr * VL;
  int64_t band = 2 * BAND_FLOATS / row / 2 * 2;
  if (band < 2) band = 2;
  d->band = band < H ? band : H;
  d->scratch_floats = d->xg_floats + (size_t)(row * d->band);
  return d->scratch_floats <= STRIDED_BUDGET;
}

/* the phase (p, q) of output rows [r0, r1) into yg (Op, band, owr, VL) */
INLINE void gx2_phase(const cnn_sconv *d, const float *xg, const float *pack, float *yg, int64_t r0, int64_t r1, int p,
                      int q, const int mr, const int nv) {
  const int64_t ka = d->ka[p], kb = d->kb[q], K = d->C * ka * kb, cs = d->Hp * d->Wp * VL, rs = d->Wp * VL,
                os = d->band * d->owr * VL, owr = d->owr / 2;
  for (int64_t iy = r0 + ((r0 + p) & 1); iy < r1; iy += 2) {
    const int64_t m = iy / 2;
    for (int64_t n = 0; n < owr; n += nv)
      for (int64_t c = 0; c < d->Op; c += mr)
        lanes_tile_os(xg + ((m + d->a0[p] + d->pt) * d->Wp + n + d->b0[q] + d->pl) * VL, cs, rs, d->C, ka, kb, 0, ka,
                      pack + c * K, yg + c * os + ((iy - r0) * d->owr + 2 * n + q) * VL, os, mr, nv, 1, 2);
  }
}

/* the packed filters of phase (p, q): after the phases before it in (p, q) order */
static size_t gx2_pack_at(const cnn_sconv *d, int p, int q) {
  size_t at = 0;
  for (int i = 0; i < 2 * p + q; i++) at += (size_t)(d->Op * d->C * d->ka[i / 2] * d->kb[i % 2]);
  return at;
}

INLINE void gx2_compute(const cnn_sconv *d, const float *xg, const float *pack, float *yg, int64_t r0, int64_t r1,
                        const int mr, const int nv) {
  for (int p = 0; p < 2; p++)
    for (int q = 0; q < 2; q++) gx2_phase(d, xg, pack + gx2_pack_at(d, p, q), yg, r0, r1, p, q, mr, nv);
}

#define GX2_CASE(MR, NV) \
  case (MR)*8 + (NV): gx2_compute(d, xg, pack, yg, r0, r1, MR, NV); break;

static void gx2_compute_any(const cnn_sconv *d, const float *xg, const float *pack, float *yg, int64_t r0, int64_t r1) {
  switch (d->mr * 8 + d->nv) {
#if NACC >= 24
    GX2_CASE(8, 3)
    GX2_CASE(6, 4)
    GX2_CASE(4, 6)
    GX2_CASE(4, 5)
    GX2_CASE(6, 3)
    GX2_CASE(8, 2)
#else
    GX2_CASE(4, 3)
    GX2_CASE(6, 2)
    GX2_CASE(4, 2)
    GX2_CASE(2, 4)
#endif
    GX2_CASE(2, 6)
  default: gx2_compute(d, xg, pack, yg, r0, r1, 1, 6); break;
  }
}

/* pack: phase (p, q)'s filters for gx's channels c, taps (o, t, u) reading gy row m + a0[p] + t:
 * w[o, c, kmax[p] - 2 t, lmax[q] - 2 u] */
void cnn_sconv_input_grad_strided(const cnn_sconv *d, const float *gy, const float *w, float *gx, float *pack,
                                  float *const *ws, const cnn_parallel_loop *beside) {
  const int64_t kh = d->kh, kw = d->kw, Cw = d->O, mr = d->mr;
  for (int p = 0; p < 2; p++)
    for (int q = 0; q < 2; q++) {
      float *pk = pack + gx2_pack_at(d, p, q);
      const int64_t ka = d->ka[p], kb = d->kb[q], K = d->C * ka * kb;
      for (int64_t c = 0; c < d->Op; c++)
        for (int64_t o = 0; o < d->C; o++)
          for (int64_t t = 0; t < ka; t++)
            for (int64_t u = 0; u < kb; u++) {
              const int64_t ki = d->kmax[p] - 2 * t, kj = d->lmax[q] - 2 * u, k = (o * ka + t) * kb + u;
              pk[(c / mr * K + k) * mr + c % mr] = c < d->O ? w[((o * Cw + c) * kh + ki) * kw + kj] : 0.0f;
            }
    }
  run(d, gy, pack, NULL, gx, ws, beside);
}

/* ---- weight gradient ----
 * gW (O, K) = sum over the images and output positions of gY x the shifted input: with the images
 * in the lanes, a tile of mr filters x nv taps keeps one vector accumulator each over the group's
 * oh * ow positions (no dropped ones), added into the part's partial of (O, K) vectors; the lanes
 * and then the parts are summed in a fixed order at the end (the same bits for a thread count). */

bool cnn_sconv_plan_weight_grad(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  return cnn_sconv_plan_weight_grad_strided(d, N, C, H, W, O, kh, kw, pt, pl, pb, pr, 1);
}

bool cnn_sconv_plan_weight_grad_strided(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                        int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t s) {
  if (!plan(d, N, C, H, W, O, kh, kw, pt, pl, pb, pr, s, true)) return false;
  const int64_t K = C * kh * kw;
  double best = 0;
  for (size_t t = 0; t < sizeof TILES / sizeof TILES[0]; t++) { /* mr filters x nv taps */
    const int mr = TILES[t].mr, nv = TILES[t].nv;
    double cost = (double)(round_up(O, mr) * round_up(K, nv)) * (1.0 + (mr + nv) / (2.0 * mr * nv));
    if (t == 0 || cost < best) best = cost, d->mr = mr, d->nv = nv;
  }
  d->Op = round_up(O, d->mr);
  d->owr = d->ow;
  d->xrows = d->Hp, d->band = d->oh;
  d->xg_floats = (size_t)round_up(C * d->Hp * d->Wp * VL, 16);
  size_t grids = d->xg_floats + (size_t)(d->Op * d->oh * d->ow * VL);
  if (grids > GW_BUDGET) { /* the input rows and output-gradient rows of a band at a time */
    /* band rows read s (band - 1) + kh input rows */
    const int64_t in_row = C * d->Wp * VL,
                  band = (ROWBAND_FLOATS - (kh - s) * in_row) / (s * in_row + d->Op * d->ow * VL);
    if (band < 1) return false;
    d->rowband = true;
    d->band = band < d->oh ? band : d->oh;
    d->xrows = s * (d->band - 1) + kh;
    d->xg_floats = (size_t)round_up(C * d->xrows * d->Wp * VL, 16);
    grids = d->xg_floats + (size_t)(d->Op * d->band * d->ow * VL);
  }
  /* the group's input, its output gradient (Op, band, ow, VL), the part's partial (O, K) vectors */
  d->scratch_floats = grids + (size_t)(O * K * VL);
  return grids <= GW_BUDGET;
}

/* rows [oy0, oy1) of images n0..n0+g of gy (N, O, oh, ow) -> gg (Op, band, ow, VL), zeros in lanes
 * g..VL and filters O..Op */
static void grad_fill(const cnn_sconv *d, const float *gy, int64_t n0, int64_t g, int64_t oy0, int64_t oy1, float *gg) {
  const int64_t O = d->O, plane = d->oh * d->ow, bplane = d->band * d->ow, len = (oy1 - oy0) * d->ow;
  const float *s = gy + n0 * O * plane + oy0 * d->ow;
  memset(gg + O * bplane * VL, 0, (size_t)((d->Op - O) * bplane * VL) * sizeof(float));
  for (int64_t o = 0; o < O; o++) {
    const float *so = s + o * plane; /* image l's rows at so + l * O * plane */
    float *dst = gg + o * bplane * VL;
    lanes_gather(so, O * plane, len, g, dst);
  }
}

/* part[(o0 + i) K + k0 + j] (vectors) += sum over a band's `rows` rows of gg[o0 + i] x the tap j's
 * input, for i < mrv, j < nvv; xk: the nv taps' first vectors (at the band's position (0, 0)).
 * first: part is not yet written, and is set to the sums (the bits of adding them to zeros: a sum
 * from +0 never holds a -0) */
INLINE void gw_tile(const cnn_sconv *d, const float *gg, const float *const *xk, vf *part, int64_t K, int64_t rows,
                    int mrv, int nvv, bool first, const int mr, const int nv, const int64_t S) {
  const int64_t plane = d->band * d->ow * VL, rs = S * d->Wp * VL;
  vf acc[8][6];
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int j = 0; j < nv; j++) acc[i][j] = (vf){0};
  const float *x[6];
#pragma GCC unroll 6
  for (int j = 0; j < nv; j++) x[j] = xk[j];
  for (int64_t oy = 0; oy < rows; oy++) {
    for (int64_t ox = 0; ox < d->ow; ox++, gg += VL) {
      vf a[8];
#pragma GCC unroll 8
      for (int i = 0; i < mr; i++) a[i] = *(const vf *)(gg + i * plane);
#pragma GCC unroll 6
      for (int j = 0; j < nv; j++) {
        vf b = *(const vf *)(x[j] + S * ox * VL);
        IN_REGISTER(b); /* one load, not one per filter (GCC folds it into each FMA otherwise) */
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) acc[i][j] += a[i] * b;
      }
    }
#pragma GCC unroll 6
    for (int j = 0; j < nv; j++) x[j] += rs;
  }
  for (int i = 0; i < mrv; i++)
    for (int j = 0; j < nvv; j++) part[i * K + j] = first ? acc[i][j] : part[i * K + j] + acc[i][j];
}

/* every weight's vector of part: += (or = when first) the band's sums */
INLINE void gw_group(const cnn_sconv *d, const float *xg, const float *gg, vf *part, int64_t rows, bool first,
                     const int mr, const int nv, const int64_t S) {
  const int64_t K = d->C * d->kh * d->kw, khw = d->kh * d->kw, plane = d->band * d->ow * VL;
  for (int64_t k0 = 0; k0 < K; k0 += nv) {
    const float *xk[6];
    const int nvv = K - k0 < nv ? (int)(K - k0) : nv;
    for (int j = 0; j < nv; j++) { /* taps past K read tap 0 and are dropped */
      const int64_t k = k0 + j < K ? k0 + j : 0, c = k / khw, ki = k % khw / d->kw, kj = k % d->kw;
      xk[j] = xg + ((c * d->xrows + ki) * d->Wp + kj) * VL;
    }
    for (int64_t o = 0; o < d->Op; o += mr) {
      const int mrv = d->O - o < mr ? (int)(d->O - o) : mr;
      gw_tile(d, gg + o * plane, xk, part + o * K + k0, K, rows, mrv, nvv, first, mr, nv, S);
    }
  }
}

#define GW_CASE(MR, NV) \
  case (MR)*8 + (NV): gw_group(d, xg, gg, part, rows, first, MR, NV, S); break;

INLINE void gw_group_s(const cnn_sconv *d, const float *xg, const float *gg, vf *part, int64_t rows, bool first,
                       const int64_t S) {
  switch (d->mr * 8 + d->nv) {
#if NACC >= 24
    GW_CASE(8, 3)
    GW_CASE(6, 4)
    GW_CASE(4, 6)
    GW_CASE(4, 5)
    GW_CASE(6, 3)
    GW_CASE(8, 2)
    GW_CASE(4, 4)
#else
    GW_CASE(4, 3)
    GW_CASE(6, 2)
    GW_CASE(4, 2)
    GW_CASE(2, 4)
#endif
    GW_CASE(2, 6)
  default: gw_group(d, xg, gg, part, rows, first, 1, 6, S); break;
  }
}

static void gw_group_any(const cnn_sconv *d, const float *xg, const float *gg, vf *part, int64_t rows, bool first) {
  if (d->s == 2) gw_group_s(d, xg, gg, part, rows, first, 2);
  else gw_group_s(d, xg, gg, part, rows, first, 1);
}

typedef struct {
  const cnn_sconv *d;
  const float *x, *gy;
  float *const *ws;
  int64_t groups, parts;
} gw_job;

/* the partial of part t: after the group's input and output gradient in ws[t] (whole vectors) */
static vf *part_of(const cnn_sconv *d, float *ws) {
  return (vf *)(ws + d->xg_floats + (size_t)(d->Op * d->band * d->ow * VL));
}

/* parts [p0, p1): part t sums its share of the groups into its partial (its first band sets it:
 * no zeroing pass), then each weight's lanes in lane order into the partial's first floats, on the
 * thread whose cache holds it (gw_sum then reads a float a weight a part, not a vector) */
static void gw_parts(void *arg, int64_t p0, int64_t p1) {
  const gw_job *j = arg;
  const cnn_sconv *d = j->d;
  const int64_t wsz = d->O * d->C * d->kh * d->kw;
  for (int64_t t = p0; t < p1; t++) {
    float *xg = j->ws[t], *gg = xg + d->xg_floats;
    vf *part = part_of(d, j->ws[t]);
    int64_t g0, g1;
    cnn_parallel_part(j->groups, j->parts, t, &g0, &g1);
    if (g0 == g1) { /* more threads than groups: an empty part adds zeros */
      memset(part, 0, (size_t)wsz * sizeof(float));
      continue;
    }
    if (d->rowband) tail_zero(d, xg);
    else pad_zero(d, xg);
    for (int64_t gi = g0; gi < g1; gi++) {
      const int64_t n0 = gi * VL, g = d->N - n0 < VL ? d->N - n0 : VL;
      if (!d->rowband) group_fill(d, j->x, n0, g, xg);
      for (int64_t oy0 = 0; oy0 < d->oh; oy0 += d->band) {
        const int64_t oy1 = oy0 + d->band < d->oh ? oy0 + d->band : d->oh;
        if (d->rowband) band_fill(d, j->x, n0, g, d->s * oy0, d->s * (oy1 - 1) + d->kh, xg);
        grad_fill(d, j->gy, n0, g, oy0, oy1, gg);
        gw_group_any(d, xg, gg, part, oy1 - oy0, gi == g0 && oy0 == 0);
      }
    }
    lanes_sums(part, wsz, (float *)part);
  }
}

/* gw[i0..i1) = the parts' lane sums (gw_parts) added in part order */
static void gw_sum(void *arg, int64_t i0, int64_t i1) {
  const cnn_sconv_sum *j = arg;
  const float *part[CNN_PARALLEL_MAX_THREADS];
  for (int64_t t = 0; t < j->parts; t++) part[t] = (const float *)part_of(j->d, j->ws[t]);
  parts_sum(j->gw, part, j->parts, i0, i1);
}

void cnn_sconv_weight_grad(const cnn_sconv *d, const float *gy, const float *x, float *gw, float *const *ws, int nt,
                           const cnn_parallel_loop *beside, cnn_sconv_sum *later) {
  const int64_t groups = (d->N + VL - 1) / VL, wsz = d->O * d->C * d->kh * d->kw;
  /* one part per thread (one in all for a single group), whichever thread runs it */
  const int64_t team = nt > 1 && groups > 1 ? nt : 1;
  gw_job j = {.d = d, .x = x, .gy = gy, .ws = ws, .groups = groups, .parts = team};
  const cnn_parallel_loop loops[2] = {{team, 1, gw_parts, &j}, beside ? *beside : (cnn_parallel_loop){0}};
  cnn_parallel_loops(beside ? 2 : 1, loops);
  cnn_sconv_sum here, *sum = later ? later : &here;
  *sum = (cnn_sconv_sum){.d = d, .ws = ws, .parts = team, .gw = gw};
  sum->loop = (cnn_parallel_loop){wsz, cnn_parallel_grain(wsz, wsz * team), gw_sum, sum};
  if (!later) cnn_parallel_loops(1, &sum->loop);
}
