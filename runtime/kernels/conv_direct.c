/* Stride-1 convolutions without a column matrix (see conv_direct.h).
 *
 * A slab holds G images of one channel after another, each row followed by max(pl, pr) zeros and
 * each image by max(pt, pb) zero rows, so that one run of zeros is the right padding of a row and
 * the left padding of the next (and likewise for images): row stride S = W + max(pl, pr), image
 * stride T = (H + max(pt, pb)) * S, channel stride cs = pt*S + pl + G*T (leading zeros first).
 * Give output position (g, oy, ox) the flat index q = g*T + oy*S + ox. The window of kernel tap
 * k = (c, ki, kj) at q starts at xs[c*cs + ki*S + kj + q]: every tap reads the same array at a
 * fixed shift, so the column matrix of im2col is the slab seen through K shifted pointers, and
 *   forward      y (O, Q)  = W (O, K) x cols (K, Q)       read in place, no im2col, no packing
 *   weight grad  gW (O, K) = gY (O, Q) x cols (K, Q)^T    gY zero at dropped positions
 *   input grad   the forward of gY padded by (k - 1 - pad), with W flipped and transposed.
 * Positions with ox >= ow or oy >= oh are computed and dropped (their windows wrap into the next
 * row or image); that costs T/(oh*ow) - 1 more work: 6% at 32x32 3x3 pad 1, 27% at 8x8, where
 * im2col + sgemm pay a copy of K x L floats and sgemm's own packing of it.
 *
 * Micro-kernels hold an (mr x nv) tile of accumulators in vector registers (GCC vector types, so
 * the file stays portable C; -march=native picks the width). Units of work are slabs, run on the
 * runtime's threads (parallel.h); the weight gradient cuts the slabs into one part per thread, sums
 * each part into its own partial and adds the partials in part order, so a thread count always
 * gives the same bits, whichever threads ran the parts. */
#include "conv_direct.h"

#include <stdlib.h>
#include <string.h>

#include "conv_lanes.h"
#include "conv_vec.h"
#include "core/parallel.h"

/* columns of a 2-row tile: 2 x 6 accumulators and 6 loaded vectors fit 32 registers, not 16 */
#define COLS_2 (NACC >= 24 ? 6 : 4)

static inline float hsum(vf v) {
  float s = 0;
  for (int l = 0; l < VL; l++) s += v[l];
  return s;
}

/* A slab's floats budget: the padded input and the output grid of a slab together stay in L2. */
#define SLAB_BUDGET (96 * 1024)

bool cnn_dconv_applies(int64_t kh, int64_t kw, const int64_t stride[2], const int64_t pad_lo[2],
                       const int64_t pad_hi[2], const int64_t dilation[2], int64_t groups) {
  return groups == 1 && stride[0] == 1 && stride[1] == 1 && dilation[0] == 1 && dilation[1] == 1 && kh * kw > 1 &&
         pad_lo[0] <= kh - 1 && pad_hi[0] <= kh - 1 && pad_lo[1] <= kw - 1 && pad_hi[1] <= kw - 1;
}

/* Tile rows for O filters: the fewest padded filters, ties to the taller tile. Columns: as many
 * vectors as the accumulators allow, at most 6 (COLS_2 for 2 rows). */
static void pick_tile(cnn_dconv *d) {
  static const int rows[] = {NACC >= 24 ? 8 : 4, 6, NACC >= 24 ? 4 : 2, 2, 1};
  d->mr = rows[0];
  for (int i = 1; i < 5; i++)
    if (round_up(d->O, rows[i]) < round_up(d->O, d->mr)) d->mr = rows[i];
  d->nv = d->mr == 2 ? COLS_2 : NACC / d->mr < 6 ? NACC / d->mr : 6;
  d->Op = round_up(d->O, d->mr);
}

/* Fills the shared fields once C, H, W, O, kh, kw and the padding are set; tw: the tile's width in
 * positions; min_q: positions a slab should hold at least, past the budget, when the batch has the
 * images (0: the budget alone). */
static void plan_common(cnn_dconv *d, int nt, int64_t tw, int64_t min_q) {
  d->S = d->W + (d->pl > d->pr ? d->pl : d->pr);
  d->T = (d->H + (d->pt > d->pb ? d->pt : d->pb)) * d->S;
  d->oh = d->H + d->pt + d->pb - d->kh + 1, d->ow = d->W + d->pl + d->pr - d->kw + 1;
  int64_t per = (d->C + d->Op) * d->T;
  d->G = per > 0 ? SLAB_BUDGET / per : 1;
  if (d->G * d->T < min_q) {
    int64_t share = (d->N + nt - 1) / nt; /* every thread keeps a slab */
    d->G = (min_q + d->T - 1) / d->T;
    if (d->G > share) d->G = share;
  }
  if (d->G < 1) d->G = 1;
  /* slabs a multiple of the threads (LeNet's conv2 at batch 64 made 3 slabs: 2 against 1), then
   * images spread evenly over them */
  int64_t slabs = (d->N + d->G - 1) / d->G;
  slabs = round_up(slabs > 0 ? slabs : 1, nt);
  d->G = (d->N + slabs - 1) / slabs;
  if (d->G < 1) d->G = 1;
  d->Q = d->G * d->T;
  d->Qr = round_up(d->Q, tw);
  /* An image's output rows are its first oh*S positions; the rest of T is rows of windows that
   * hang over the bottom. Without padding (LeNet's conv2: 10 of 14 rows) computing only the first
   * oh*S positions of each image saves a quarter of the work; with padding the tiles' rounding
   * eats the gain, so images run as one stretch. */
  int64_t span = round_up(d->oh * d->S, tw);
  d->span = 0;
  if (d->G * span * 10 <= d->Qr * 9) {
    d->span = span;
    /* Qr stays whole tiles, so gq's rows and the partials behind them stay vector-aligned */
    int64_t last = round_up((d->G - 1) * d->T + span, tw);
    if (last > d->Qr) d->Qr = last;
  }
  d->cs = d->pt * d->S + d->pl + d->Q;
  /* tail: tile overrun past Q plus the farthest tap; zeros, so dropped positions read finite values */
  d->slab_floats = (size_t)round_up(d->C * d->cs + (d->Qr - d->Q) + (d->kh - 1) * d->S + d->kw + VL, 16);
}

static void plan_set(cnn_dconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                     int64_t pt, int64_t pl, int64_t pb, int64_t pr) {
  memset(d, 0, sizeof *d);
  d->N = N, d->C = C, d->H = H, d->W = W, d->O = O, d->kh = kh, d->kw = kw;
  d->pt = pt, d->pl = pl, d->pb = pb, d->pr = pr;
}

/* the forward's prefetches (prefetch_plan): on unless CNN_CONV_PREFETCH=0 (for A/B measurements);
 * read once, by the first plan, on the calling thread */
static int prefetch_on = -1;

void cnn_dconv_plan_forward(cnn_dconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                            int64_t pt, int64_t pl, int64_t pb, int64_t pr, int nt) {
  plan_set(d, N, C, H, W, O, kh, kw, pt, pl, pb, pr);
  if (prefetch_on < 0) {
    const char *e = getenv("CNN_CONV_PREFETCH");
    prefetch_on = !(e && strcmp(e, "0") == 0);
  }
  d->prefetch = prefetch_on;
  pick_tile(d);
  plan_common(d, nt, (int64_t)d->nv * VL, 0);
  d->scratch_floats = d->slab_floats + (size_t)(d->Op * d->Qr);
}

/* gx is the forward of gy (N, O, oh, ow) padded by k - 1 - pad with O -> C filters. */
void cnn_dconv_plan_input_grad(cnn_dconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                               int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int nt) {
  int64_t oh = H + pt + pb - kh + 1, ow = W + pl + pr - kw + 1;
  cnn_dconv_plan_forward(d, N, O, oh, ow, C, kh, kw, kh - 1 - pt, kw - 1 - pl, kh - 1 - pb, kw - 1 - pr, nt);
}

/* Weight-gradient tiles: mr filters x nv taps, each accumulator a vector of positions. */
void cnn_dconv_plan_weight_grad(cnn_dconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int nt) {
  plan_set(d, N, C, H, W, O, kh, kw, pt, pl, pb, pr);
  d->mr = O % 4 == 0 || O > 6 ? 4 : 6;
  d->nv = NACC / d->mr;
  d->Op = round_up(O, d->mr);
  /* A tile streams a slab's positions, then adds its 24 accumulators to the partial: on small
   * planes the budget's slab is short (ResNet-20's 64 channels at 8x8: 9 images, 46 vector steps)
   * and the adds to a partial of 2.4 MB, out of L2, weigh; 18 images measured 1.04-1.08x faster
   * there, and more images slower on the planes that reach this already (scripts/tools/conv_bench). */
  plan_common(d, nt, VL, 1400);
  /* slab, gY grid (Op, Qr), the thread's partial gW (O, K) as vectors of lane sums: a tile adds its
   * accumulators there, and lanes are summed once per call instead of once per tile and slab (at
   * 8x8 a tile's slab is 41 vector steps, and 24 horizontal sums cost half of them). Wide layers
   * (VGG's 512x4608) would need 150 MB a thread for that: past 8 MB, partials are plain floats. */
  int64_t wsz = O * C * kh * kw;
  d->lanes = wsz * VL * (int64_t)sizeof(float) <= ((int64_t)8 << 20) ? VL : 1;
  d->scratch_floats = d->slab_floats + (size_t)(d->Op * d->Qr) + (size_t)round_up(wsz * d->lanes, 16);
}

size_t cnn_dconv_packed_floats(const cnn_dconv *d) { return (size_t)(d->Op * d->C * d->kh * d->kw); }

/* ---- slabs ---- */

/* Short rows (8 to 32 floats here) copied inline: a memcpy call per row cost more than the copy.
 * With check, *bad gathers x - x over the vectors copied (0 for finite x, NaN for inf and NaN) and
 * *ok the same test of the floats past them, as integers: a float sum there is one chain of adds,
 * which cost 10% of the 8x8 weight gradient. */
INLINE void copy_floats(float *dst, const float *src, int64_t n, const bool check, vf *bad, int *ok) {
  int64_t j = 0;
  for (; j + VL <= n; j += VL) {
    vf v = vec_load(src + j);
    vec_store(dst + j, v);
    if (check) *bad += v - v;
  }
  for (; j < n; j++) {
    dst[j] = src[j];
    if (check) *ok &= src[j] - src[j] == 0;
  }
}

static inline void zero_floats(float *dst, int64_t n) {
  int64_t j = 0;
  for (; j + VL <= n; j += VL) vec_store(dst + j, (vf){0});
  for (; j < n; j++) dst[j] = 0;
}

/* src: g images of n planes (h, w) at src + (i * n + c) * h * w, c < n -> rows of w floats at
 * stride S, images at stride T, channels at stride cs from `first` (the first image's first row);
 * every other float of [dst, dst + n * cs), and of the images g..G, becomes zero. Returns, when
 * check, whether every value copied was finite (else 1). */
INLINE int planes_fill(const cnn_dconv *d, const float *src, int64_t n, int64_t g, int64_t h, int64_t w, int64_t first,
                       float *dst, const bool check) {
  const int64_t S = d->S, T = d->T;
  vf bad = {0};
  int ok = 1;
  for (int64_t c = 0; c < n; c++) {
    float *p = dst + c * d->cs;
    zero_floats(p, first);
    p += first;
    for (int64_t i = 0; i < g; i++) {
      const float *s = src + (i * n + c) * h * w;
      float *img = p + i * T;
      for (int64_t r = 0; r < h; r++) {
        copy_floats(img + r * S, s + r * w, w, check, &bad, &ok);
        zero_floats(img + r * S + w, S - w);
      }
      zero_floats(img + h * S, T - h * S);
    }
    zero_floats(p + g * T, d->cs - first - g * T);
  }
  if (check)
    for (int l = 0; l < VL; l++) ok &= bad[l] == 0;
  return ok;
}

/* src (N, C, H, W): images n0..n0+g -> the slab xs (layout above), zeros elsewhere up to
 * slab_floats; with check, returns whether the images are all finite (else 1) */
INLINE int slab_fill_checked(const cnn_dconv *d, const float *src, int64_t n0, int64_t g, float *xs, const bool check) {
  int ok = planes_fill(d, src + n0 * d->C * d->H * d->W, d->C, g, d->H, d->W, d->pt * d->S + d->pl, xs, check);
  zero_floats(xs + d->C * d->cs, (int64_t)d->slab_floats - d->C * d->cs);
  return ok;
}

static void slab_fill(const cnn_dconv *d, const float *src, int64_t n0, int64_t g, float *xs) {
  slab_fill_checked(d, src, n0, g, xs, false);
}

/* ---- forward micro-kernel ---- */

/* yq[0..mr) rows, positions [0, nv*VL) (ld ldq) = sum over taps of wt (K, mr) x shifted xs.
 * xs points at the tile's first position; cs: floats between channels of the slab. */
INLINE void fwd_tile(const float *xs, int64_t cs, int64_t S, int64_t C, int64_t kh, int64_t kw, const float *wt,
                     float *yq, int64_t ldq, const int mr, const int nv) {
  vf acc[8][6];
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int v = 0; v < nv; v++) acc[i][v] = (vf){0};
  for (int64_t c = 0; c < C; c++, xs += cs)
    for (int64_t ki = 0; ki < kh; ki++) {
      const float *row = xs + ki * S;
      for (int64_t kj = 0; kj < kw; kj++, wt += mr) {
        vf b[6];
#pragma GCC unroll 6
        for (int v = 0; v < nv; v++) b[v] = vec_load(row + kj + v * VL);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
          float s = wt[i];
#pragma GCC unroll 6
          for (int v = 0; v < nv; v++) acc[i][v] += b[v] * s;
        }
      }
    }
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int v = 0; v < nv; v++) vec_store(yq + i * ldq + v * VL, acc[i][v]);
}

/* Memory a slab's pass will touch next, fetched into cache a few lines per tile while the tiles
 * run: the next slab's input (read by its fill) and this slab's output (written by its store). The
 * fill and store otherwise wait on memory with the FMA units idle (a quarter of ResNet-20's 32x32
 * forward). Ranges are whole contiguous runs of images; empty when there is nothing to fetch. */
#define PREFETCH_L2 (896 * 1024) /* bytes: of the 1 MB L2 */
typedef struct {
  const char *in; /* read: in[0, in_bytes) */
  char *out;      /* written: out[0, out_bytes) */
  int64_t in_bytes, out_bytes;
  int64_t at;  /* bytes of each fetched so far */
  int64_t per; /* lines of each a tile fetches */
} prefetch_plan;

INLINE void prefetch_some(prefetch_plan *pf) {
  if (!pf) return;
  for (int64_t i = 0; i < pf->per; i++, pf->at += 64) {
    if (pf->at < pf->in_bytes) __builtin_prefetch(pf->in + pf->at, 0, 3);
    if (pf->at < pf->out_bytes) __builtin_prefetch(pf->out + pf->at, 1, 3);
  }
}

/* yq (Op, Qr) = the slab's correlation, every filter tile over every position tile. kh, kw: the
 * plan's, passed as constants by the 3x3 instances. */
INLINE void fwd_slab(const cnn_dconv *d, const float *xs, const float *pack, float *yq, prefetch_plan *pf, const int mr,
                     const int nv, const int64_t kh, const int64_t kw) {
  const int64_t K = d->C * kh * kw, tw = (int64_t)nv * VL;
  const int64_t stretches = d->span ? d->G : 1, len = d->span ? d->span : d->Qr;
  if (pf) { /* spread the lines over the tiles */
    const int64_t tiles = stretches * ((len + tw - 1) / tw) * (d->Op / mr);
    const int64_t lines = ((pf->in_bytes > pf->out_bytes ? pf->in_bytes : pf->out_bytes) + 63) / 64;
    pf->per = tiles > 0 ? (lines + tiles - 1) / tiles : 0;
  }
  for (int64_t g = 0; g < stretches; g++)
    for (int64_t q = g * d->T; q < g * d->T + len; q += tw)
      for (int64_t o = 0; o < d->Op; o += mr) {
        fwd_tile(xs + q, d->cs, d->S, d->C, kh, kw, pack + o * K, yq + o * d->Qr + q, d->Qr, mr, nv);
        prefetch_some(pf);
      }
}

/* one instance per tile pick_tile can choose, for kernels of any size */
static void fwd_slab_any_kernel(const cnn_dconv *d, const float *xs, const float *pack, float *yq, prefetch_plan *pf) {
  const int64_t kh = d->kh, kw = d->kw;
  switch (d->mr) {
#if NACC >= 24
  case 8: fwd_slab(d, xs, pack, yq, pf, 8, 3, kh, kw); break;
  case 6: fwd_slab(d, xs, pack, yq, pf, 6, 4, kh, kw); break;
  case 4: fwd_slab(d, xs, pack, yq, pf, 4, 6, kh, kw); break;
#else
  case 4: fwd_slab(d, xs, pack, yq, pf, 4, 3, kh, kw); break;
  case 6: fwd_slab(d, xs, pack, yq, pf, 6, 2, kh, kw); break;
#endif
  case 2: fwd_slab(d, xs, pack, yq, pf, 2, COLS_2, kh, kw); break;
  default: fwd_slab(d, xs, pack, yq, pf, 1, 6, kh, kw); break;
  }
}

/* and for 3x3 kernels, whose nine taps a channel unroll into one straight run of loads and FMAs:
 * the forward and input gradient 1.06x faster on ResNet-20's layers, 1.2-1.25x on ResNet-18's 64
 * and 128 channels (scripts/tools/conv_bench) */
static void fwd_slab_3x3(const cnn_dconv *d, const float *xs, const float *pack, float *yq, prefetch_plan *pf) {
  switch (d->mr) {
#if NACC >= 24
  case 8: fwd_slab(d, xs, pack, yq, pf, 8, 3, 3, 3); break;
  case 6: fwd_slab(d, xs, pack, yq, pf, 6, 4, 3, 3); break;
  case 4: fwd_slab(d, xs, pack, yq, pf, 4, 6, 3, 3); break;
#else
  case 4: fwd_slab(d, xs, pack, yq, pf, 4, 3, 3, 3); break;
  case 6: fwd_slab(d, xs, pack, yq, pf, 6, 2, 3, 3); break;
#endif
  case 2: fwd_slab(d, xs, pack, yq, pf, 2, COLS_2, 3, 3); break;
  default: fwd_slab(d, xs, pack, yq, pf, 1, 6, 3, 3); break;
  }
}

static void fwd_slab_any(const cnn_dconv *d, const float *xs, const float *pack, float *yq, prefetch_plan *pf) {
  if (d->kh == 3 && d->kw == 3) fwd_slab_3x3(d, xs, pack, yq, pf);
  else fwd_slab_any_kernel(d, xs, pack, yq, pf);
}

/* y[n0..n0+g) (N, O, oh, ow) = the valid positions of yq, plus the bias and d->residual (then
 * max(0, .) with d->relu); d->scale was packed into the filters */
static void slab_store(const cnn_dconv *d, const float *yq, const float *b, int64_t n0, int64_t g, float *y) {
  const int64_t O = d->O, oh = d->oh, ow = d->ow;
  for (int64_t i = 0; i < g; i++)
    for (int64_t o = 0; o < O; o++) {
      const float *s = yq + o * d->Qr + i * d->T;
      float *dst = y + ((n0 + i) * O + o) * oh * ow;
      float bv = b ? b[o] : 0.0f;
      if (d->residual) {
        const float *r = d->residual + ((n0 + i) * O + o) * oh * ow;
        for (int64_t row = 0; row < oh; row++, s += d->S, dst += ow, r += ow)
          for (int64_t j = 0; j < ow; j++) {
            float v = s[j] + bv + r[j];
            dst[j] = d->relu && v <= 0 ? 0.0f : v; /* F.relu: NaN stays */
          }
      } else if (d->relu)
        for (int64_t r = 0; r < oh; r++, s += d->S, dst += ow)
          for (int64_t j = 0; j < ow; j++) dst[j] = s[j] + bv <= 0 ? 0.0f : s[j] + bv;
      else
        for (int64_t r = 0; r < oh; r++, s += d->S, dst += ow)
          for (int64_t j = 0; j < ow; j++) dst[j] = s[j] + bv;
    }
}

/* One direct pass's operands, for the slabs run on the pool. */
typedef struct {
  const cnn_dconv *d;
  const float *x, *pack, *b, *gy;
  float *y;
  float *const *ws;
  int64_t slabs, parts;
  int *finite; /* weight grad: per part, whether its slabs of x were all finite */
} dconv_job;

/* slabs [s0, s1) of a forward pass, in this thread's workspace */
static void forward_slabs(void *arg, int64_t s0, int64_t s1) {
  const dconv_job *j = arg;
  const cnn_dconv *d = j->d;
  float *xs = j->ws[cnn_parallel_slot()], *yq = xs + d->slab_floats;
  for (int64_t s = s0; s < s1; s++) {
    int64_t n0 = s * d->G, g = d->N - n0 < d->G ? d->N - n0 : d->G;
    slab_fill(d, j->x, n0, g, xs);
    /* the images of the slab after this one (this thread's next, or the other threads' soon) and
     * this slab's outputs, while both fit in L2 beside the slab's workspace (ResNet-18's 56x56
     * slabs do not) */
    const int64_t m0 = n0 + g, mg = d->N - m0 < d->G ? d->N - m0 : d->G, img = d->C * d->H * d->W,
                  oimg = d->O * d->oh * d->ow;
    prefetch_plan pf = {(const char *)(j->x + m0 * img),
                        (char *)(j->y + n0 * oimg),
                        mg * img * (int64_t)sizeof(float),
                        g * oimg * (int64_t)sizeof(float),
                        0,
                        0};
    const bool fits = d->scratch_floats * sizeof(float) + (size_t)(pf.in_bytes + pf.out_bytes) <= PREFETCH_L2;
    fwd_slab_any(d, xs, j->pack, yq, d->prefetch && fits ? &pf : NULL);
    slab_store(d, yq, j->b, n0, g, j->y);
    if (d->then) d->then(d->then_ctx, n0, n0 + g);
  }
}

static void run_forward(const cnn_dconv *d, const float *x, const float *pack, const float *b, float *y,
                        float *const *ws, int nt, const cnn_parallel_loop *beside) {
  dconv_job j = {.d = d, .x = x, .pack = pack, .b = b, .y = y, .ws = ws};
  (void)nt; /* the slabs were sized for nt threads by the plan */
  const cnn_parallel_loop loops[2] = {{(d->N + d->G - 1) / d->G, 1, forward_slabs, &j},
                                      beside ? *beside : (cnn_parallel_loop){0}};
  cnn_parallel_loops(beside ? 2 : 1, loops);
}

/* pack: for each tile of mr filters, (K, mr); filters past O are zero */
void cnn_dconv_forward(const cnn_dconv *d, const float *x, const float *w, const float *b, float *y, float *pack,
                       float *const *ws, int nt) {
  const int64_t K = d->C * d->kh * d->kw, mr = d->mr;
  for (int64_t o = 0; o < d->Op; o++)
    for (int64_t k = 0; k < K; k++)
      pack[(o / mr * K + k) * mr + o % mr] = o < d->O ? (d->scale ? w[o * K + k] * d->scale[o] : w[o * K + k]) : 0.0f;
  run_forward(d, x, pack, b, y, ws, nt, NULL);
}

/* The plan's filters are gx's channels c, reading gy's channels o with taps flipped:
 * w'[c][o][ki][kj] = w[o][c][kh-1-ki][kw-1-kj], where w is (O=d->C, C=d->O, kh, kw). */
void cnn_dconv_input_grad(const cnn_dconv *d, const float *gy, const float *w, float *gx, float *pack, float *const *ws,
                          int nt, const cnn_parallel_loop *beside) {
  const int64_t kh = d->kh, kw = d->kw, K = d->C * kh * kw, mr = d->mr, Cw = d->O;
  for (int64_t c = 0; c < d->Op; c++)
    for (int64_t o = 0; o < d->C; o++)
      for (int64_t ki = 0; ki < kh; ki++)
        for (int64_t kj = 0; kj < kw; kj++) {
          int64_t k = (o * kh + ki) * kw + kj;
          float v = c < d->O ? w[((o * Cw + c) * kh + kh - 1 - ki) * kw + kw - 1 - kj] : 0.0f;
          pack[(c / mr * K + k) * mr + c % mr] = v;
        }
  run_forward(d, gy, pack, NULL, gx, ws, nt, beside);
}

/* ---- weight gradient micro-kernel ---- */

/* part[i][j] (vectors, ld K) += lane sums over positions [g*T, g*T + len) for g < stretches of
 * gq[i] * x[j], i < mrv, j < nvv; gq rows at ld ldq, x: the nv taps' shifted slab pointers. first:
 * part is not yet written, and is set to them (the bits of adding them to zeros: a sum from +0
 * never holds a -0) */
INLINE void gw_tile(const float *gq, int64_t ldq, const float *const *xk, int64_t stretches, int64_t T, int64_t len,
                    float *part, int64_t at, int64_t K, int lanes, int mrv, int nvv, bool first, const int mr,
                    const int nv) {
  vf acc[8][6];
  const float *x[6];
#pragma GCC unroll 6
  for (int j = 0; j < nv; j++) x[j] = xk[j];
#pragma GCC unroll 8
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 6
    for (int j = 0; j < nv; j++) acc[i][j] = (vf){0};
  for (int64_t g = 0; g < stretches; g++) {
    for (int64_t q = g * T; q < g * T + len; q += VL) {
      vf a[8];
#pragma GCC unroll 8
      for (int i = 0; i < mr; i++) a[i] = vec_load(gq + i * ldq + q);
#pragma GCC unroll 6
      for (int j = 0; j < nv; j++) {
        vf b = vec_load(x[j] + q);
        IN_REGISTER(b);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) acc[i][j] += a[i] * b;
      }
    }
  }
  if (lanes == 1) {
    for (int i = 0; i < mrv; i++)
      for (int j = 0; j < nvv; j++) part[at + i * K + j] = (first ? 0.0f : part[at + i * K + j]) + hsum(acc[i][j]);
  } else {
    vf *pv = (vf *)part;
    for (int i = 0; i < mrv; i++)
      for (int j = 0; j < nvv; j++) pv[at + i * K + j] = first ? acc[i][j] : pv[at + i * K + j] + acc[i][j];
  }
}

INLINE void gw_slab(const cnn_dconv *d, const float *xs, const float *gq, float *part, bool first, const int mr,
                    const int nv) {
  const int64_t K = d->C * d->kh * d->kw, khw = d->kh * d->kw;
  for (int64_t k0 = 0; k0 < K; k0 += nv) {
    const float *xk[6];
    int nvv = K - k0 < nv ? (int)(K - k0) : nv;
    for (int j = 0; j < nv; j++) { /* taps past K read the slab's start and are dropped */
      int64_t k = k0 + j < K ? k0 + j : 0, c = k / khw, ki = k % khw / d->kw, kj = k % d->kw;
      xk[j] = xs + c * d->cs + ki * d->S + kj;
    }
    for (int64_t o = 0; o < d->Op; o += mr) {
      int mrv = d->O - o < mr ? (int)(d->O - o) : mr;
      gw_tile(gq + o * d->Qr, d->Qr, xk, d->span ? d->G : 1, d->T, d->span ? d->span : d->Qr, part, o * K + k0, K,
              d->lanes, mrv, nvv, first, mr, nv);
    }
  }
}

static void gw_slab_any(const cnn_dconv *d, const float *xs, const float *gq, float *part, bool first) {
#if NACC >= 24
  if (d->mr == 4) gw_slab(d, xs, gq, part, first, 4, 6);
  else gw_slab(d, xs, gq, part, first, 6, 4);
#else
  if (d->mr == 4) gw_slab(d, xs, gq, part, first, 4, 3);
  else gw_slab(d, xs, gq, part, first, 6, 2);
#endif
}

/* gq (Op, Qr): gy's images n0..n0+g at their slab positions, zeros everywhere else */
static void grid_fill(const cnn_dconv *d, const float *gy, int64_t n0, int64_t g, float *gq) {
  cnn_dconv r = *d;
  r.cs = d->Qr; /* rows of gq are its "channels", with no leading zeros */
  planes_fill(&r, gy + n0 * d->O * d->oh * d->ow, d->O, g, d->oh, d->ow, 0, gq, false);
  zero_floats(gq + d->O * d->Qr, (d->Op - d->O) * d->Qr);
}

/* parts [p0, p1) of the weight gradient: part t sums its share of the slabs into its partial,
 * in ws[t] after the slab and gq (vector-aligned: ws slots are 64-byte aligned, and the slab and
 * gq before it are whole vectors, as slab_floats and Qr are). Its first slab sets the partial (no
 * zeroing pass); a partial of vectors then has each weight's lanes summed into its first floats, on
 * the thread whose cache holds it (sum_parts reads a float a weight a part, not a vector). */
static void weight_grad_parts(void *arg, int64_t p0, int64_t p1) {
  const dconv_job *j = arg;
  const cnn_dconv *d = j->d;
  const int64_t wsz = d->O * d->C * d->kh * d->kw;
  for (int64_t t = p0; t < p1; t++) {
    float *xs = j->ws[t], *gq = xs + d->slab_floats, *part = gq + d->Op * d->Qr;
    int64_t s0, s1;
    cnn_parallel_part(j->slabs, j->parts, t, &s0, &s1);
    if (s0 == s1) memset(part, 0, (size_t)wsz * sizeof(float)); /* more threads than slabs: zeros */
    int ok = 1;
    for (int64_t s = s0; s < s1; s++) {
      int64_t n0 = s * d->G, g = d->N - n0 < d->G ? d->N - n0 : d->G;
      ok &= slab_fill_checked(d, j->x, n0, g, xs, true);
      grid_fill(d, j->gy, n0, g, gq);
      gw_slab_any(d, xs, gq, part, s == s0);
    }
    if (s0 < s1 && d->lanes == VL) lanes_sums((const vf *)part, wsz, part);
    j->finite[t] = ok;
  }
}

/* gw[i0..i1) = the parts' sums (weight_grad_parts) added in part order */
static void sum_parts(void *arg, int64_t i0, int64_t i1) {
  const cnn_dconv_sum *j = arg;
  const cnn_dconv *d = j->d;
  const size_t partf = d->slab_floats + (size_t)(d->Op * d->Qr);
  const float *part[CNN_PARALLEL_MAX_THREADS];
  for (int64_t t = 0; t < j->parts; t++) part[t] = j->ws[t] + partf;
  parts_sum(j->gw, part, j->parts, i0, i1);
}

int cnn_dconv_weight_grad(const cnn_dconv *d, const float *gy, const float *x, float *gw, float *const *ws, int nt,
                          const cnn_parallel_loop *beside, cnn_dconv_sum *later) {
  const int64_t slabs = (d->N + d->G - 1) / d->G, wsz = d->O * d->C * d->kh * d->kw;
  /* one part per thread (one in all when there is a single slab), whichever thread runs it */
  const int64_t team = nt > 1 && slabs > 1 ? nt : 1;
  int finite[CNN_PARALLEL_MAX_THREADS];
  dconv_job j = {.d = d, .x = x, .gy = gy, .ws = ws, .slabs = slabs, .parts = team, .finite = finite};
  const cnn_parallel_loop loops[2] = {{team, 1, weight_grad_parts, &j}, beside ? *beside : (cnn_parallel_loop){0}};
  cnn_parallel_loops(beside ? 2 : 1, loops);
  cnn_dconv_sum here, *sum = later ? later : &here;
  *sum = (cnn_dconv_sum){.d = d, .ws = ws, .parts = team, .gw = gw};
  sum->loop = (cnn_parallel_loop){wsz, cnn_parallel_grain(wsz, wsz * team), sum_parts, sum};
  int ok = 1;
  for (int64_t t = 0; t < team; t++) ok &= finite[t];
  if (!later && ok) cnn_parallel_loops(1, &sum->loop);
  return ok;
}
