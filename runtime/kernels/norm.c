/* Normalisation kernels (see kernels/nn.h): batch norm (statistics per channel over batch and space,
 * running statistics moved in place when training) and local response norm across channels.
 * Inputs are viewed as (N, C, S): S = 1 for (N, C), H * W for images. Batch norm works per channel
 * on one thread, over the images on more (see bn_forward_images), the same bits either way; LRN per
 * (image, channel) plane. Sums end in double: batch norm's run in float lanes over blocks of ~4K
 * values first. */
#include "core/alloc.h"
#include "core/parallel.h"
#include "kernels/nn.h"

#include <math.h>
#include <stddef.h>

/* One normalisation call's operands, for the ranges run on the pool. */
typedef struct {
  const cnn_batchnorm_args *bn;
  const cnn_lrn_args *lrn;
  const float *x, *gy, *mean, *invstd, *scale;
  float *y, *gx, *gweight, *gbias, *save_mean, *save_invstd, *work;
} norm_job;

/* ---- batch norm ---- */

/* Channel c's values are N rows of S floats, row n at x + (n C + c) S. Sums over them run in
 * blocks of about BLOCK values (16 KB: a block stays in L1 for a second look): R = BLOCK / S
 * whole rows when S <= BLOCK, else pieces of BLOCK values of one row. Within a block the sums run
 * in 16 float lanes held in GCC vectors (one zmm, two ymm or four xmm: the same numbers on every
 * ISA and thread count), two sets per sum so that two add chains are in flight; each block's
 * lanes are added in a fixed tree and flushed to double. Plain float arrays of lanes are not
 * enough: GCC 12 vectorises a loop over them as an in-order scalar reduction, 2.5x slower. */
#define VL 16
#define BLOCK 4096
#if defined(__AVX512F__)
#define VN 16 /* floats per native vector */
#elif defined(__AVX__)
#define VN 8
#else
#define VN 4
#endif
#define NV (VL / VN)
/* A vector of 64 bytes where the ISA has none lives on the stack (GCC's generic lowering), so
 * the 16 lanes are NV native vectors: lane l is v[l / VN][l % VN]. */
typedef float vn __attribute__((vector_size(VN * sizeof(float))));
typedef float vnu __attribute__((vector_size(VN * sizeof(float)), aligned(sizeof(float)), may_alias));
typedef int32_t vni __attribute__((vector_size(VN * sizeof(float)))); /* a comparison's lanes */
typedef struct lanes {
  vn v[NV];
} lanes;
#define LOADV(q) (*(const vnu *)(q))

/* a += the 16 floats at p */
static inline void lanes_add(lanes *a, const float *p) {
  for (int j = 0; j < NV; j++) a->v[j] += LOADV(p + j * VN);
}

/* lanes of a added pairwise in a fixed tree, plus t */
static inline double lanes_sum(const lanes *a, float t) {
  float h[VL];
  for (int l = 0; l < VL; l++) h[l] = a->v[l / VN][l % VN];
  for (int w = VL / 2; w > 0; w /= 2)
    for (int l = 0; l < w; l++) h[l] += h[l + w];
  return (double)h[0] + t;
}

/* A block: r rows of w values, row k at p + k * rs. */
typedef struct block {
  const float *p;
  int64_t rs, r, w;
} block;

/* The blocks of channel c in order: block (n, o) holds rows n.. of values o..; returns the
 * number of blocks and fills the one of index i when b is not NULL. */
static inline int64_t channel_block(const cnn_batchnorm_args *a, const float *x, int64_t c, int64_t i, block *b) {
  const int64_t N = a->N, C = a->C, S = a->S;
  const int64_t R = S >= BLOCK ? 1 : BLOCK / S, W = S >= BLOCK ? BLOCK : S, per_row = (S + W - 1) / W;
  const int64_t count = (N + R - 1) / R * per_row;
  if (b && i < count) {
    const int64_t n = i / per_row * R, o = i % per_row * W;
    b->p = x + (n * C + c) * S + o;
    b->rs = C * S;
    b->r = N - n < R ? N - n : R;
    b->w = S - o < W ? S - o : W;
  }
  return count;
}

/* sum of the block's values */
static inline double block_sum(const block *b) {
  lanes s0 = {0}, s1 = {0};
  float t = 0;
  const float *p = b->p;
  for (int64_t k = 0; k < b->r; k++, p += b->rs) {
    int64_t i = 0;
    for (; i + 2 * VL <= b->w; i += 2 * VL) lanes_add(&s0, p + i), lanes_add(&s1, p + i + VL);
    if (i + VL <= b->w) lanes_add(&s0, p + i), i += VL;
    for (; i < b->w; i++) t += p[i];
  }
  for (int j = 0; j < NV; j++) s0.v[j] += s1.v[j];
  return lanes_sum(&s0, t);
}

/* d += p[0..16) - m, q += (p[0..16) - m)^2 */
static inline void lanes_moments(lanes *d, lanes *q, const float *p, float m) {
  for (int j = 0; j < NV; j++) {
    const vn e = LOADV(p + j * VN) - m;
    d->v[j] += e, q->v[j] += e * e;
  }
}

/* *s1 = sum (p - m), *s2 = sum (p - m)^2 over the block, which is in L1 by now. When next is not
 * NULL (a block of the same shape), its lines are prefetched meanwhile, so the next block_sum does
 * not start on a cold row (the hardware prefetcher stops at each row's page): 1.4x on the whole
 * forward at (128, 16, 32, 32). */
static inline void block_moments(const block *b, const float *next, float m, double *s1, double *s2) {
  lanes d0 = {0}, d1 = {0}, q0 = {0}, q1 = {0};
  float t = 0, tt = 0;
  const float *p = b->p;
  for (int64_t k = 0; k < b->r; k++, p += b->rs) {
    const float *pn = next ? next + k * b->rs : NULL;
    int64_t i = 0;
    for (; i + 2 * VL <= b->w; i += 2 * VL) {
      if (pn) {
        __builtin_prefetch(pn + i);
        __builtin_prefetch(pn + i + VL);
      }
      lanes_moments(&d0, &q0, p + i, m);
      lanes_moments(&d1, &q1, p + i + VL, m);
    }
    if (i + VL <= b->w) lanes_moments(&d0, &q0, p + i, m), i += VL;
    for (; i < b->w; i++) t += p[i] - m, tt += (p[i] - m) * (p[i] - m);
  }
  for (int j = 0; j < NV; j++) d0.v[j] += d1.v[j], q0.v[j] += q1.v[j];
  *s1 = lanes_sum(&d0, t), *s2 = lanes_sum(&q0, tt);
}

/* With relu, the gradient reaching batch norm's output y = d sc + b (d = x - m) is g where y > 0 or
 * is NaN, else 0 (PyTorch's threshold_backward on ReLU's output, which is y itself there). The
 * float operations are the forward's, in the same order, so the mask is the forward's. */
static inline float relu_grad(float g, float d, float sc, float b) { return d * sc + b <= 0 ? 0.0f : g; }

/* a += g[0..16), h += g[0..16) (p[0..16) - m); with relu, g masked as relu_grad */
static inline __attribute__((always_inline)) void lanes_dots(lanes *a, lanes *h, const float *p, const float *g,
                                                             float m, bool relu, float sc, float b) {
  for (int j = 0; j < NV; j++) {
    const vn d = LOADV(p + j * VN) - m;
    vn e = LOADV(g + j * VN);
    if (relu) e = (vn)((vni)e & ~(d * sc + b <= 0));
    a->v[j] += e, h->v[j] += e * d;
  }
}

/* *sg += sum g, *sgx += sum g (p - m) over the block (g at the same offsets from gy as p from x);
 * with relu, g masked as relu_grad. Always inlined, so each caller's constant relu removes the
 * masking where it is off. */
static inline __attribute__((always_inline)) void block_dots(const block *b, const float *next, const float *x,
                                                             const float *gy, float m, bool relu, float sc, float bias,
                                                             double *sg, double *sgx) {
  lanes a0 = {0}, a1 = {0}, h0 = {0}, h1 = {0};
  float t = 0, tt = 0;
  const float *p = b->p, *g = gy + (b->p - x);
  for (int64_t k = 0; k < b->r; k++, p += b->rs, g += b->rs) {
    /* the row after this one (in this block or the next), prefetched meanwhile: the hardware
     * prefetcher stops at each row's page */
    const ptrdiff_t ahead = k + 1 < b->r ? b->rs : next ? next - p : 0;
    int64_t i = 0;
    for (; i + 2 * VL <= b->w; i += 2 * VL) {
      if (ahead) {
        __builtin_prefetch(p + ahead + i);
        __builtin_prefetch(p + ahead + i + VL);
        __builtin_prefetch(g + ahead + i);
        __builtin_prefetch(g + ahead + i + VL);
      }
      lanes_dots(&a0, &h0, p + i, g + i, m, relu, sc, bias);
      lanes_dots(&a1, &h1, p + i + VL, g + i + VL, m, relu, sc, bias);
    }
    if (i + VL <= b->w) lanes_dots(&a0, &h0, p + i, g + i, m, relu, sc, bias), i += VL;
    for (; i < b->w; i++) {
      const float d = p[i] - m, e = relu ? relu_grad(g[i], d, sc, bias) : g[i];
      t += e, tt += e * d;
    }
  }
  for (int j = 0; j < NV; j++) a0.v[j] += a1.v[j], h0.v[j] += h1.v[j];
  *sg += lanes_sum(&a0, t), *sgx += lanes_sum(&h0, tt);
}

/* a += e, h += e (p[0..16) - m) with e = g[0..16), or with relu g masked where the forward's output
 * y[0..16) <= 0; e stored to ge[0..16) (the gradient of bn(x) + residual) */
static inline __attribute__((always_inline)) void lanes_dots_store(lanes *a, lanes *h, const float *p, const float *g,
                                                                   const float *y, float *ge, float m, bool relu) {
  for (int j = 0; j < NV; j++) {
    const vn d = LOADV(p + j * VN) - m;
    vn e = LOADV(g + j * VN);
    if (relu) e = (vn)((vni)e & ~(LOADV(y + j * VN) <= 0));
    *(vnu *)(ge + j * VN) = e;
    a->v[j] += e, h->v[j] += e * d;
  }
}

/* block_dots with a residual: g masked by the output y when relu, stored to ge (all four at the
 * same offsets from their bases as p from x) */
static inline __attribute__((always_inline)) void block_dots_store(const block *b, const float *next, const float *x,
                                                                   const float *gy, const float *y, float *ge, float m,
                                                                   bool relu, double *sg, double *sgx) {
  lanes a0 = {0}, a1 = {0}, h0 = {0}, h1 = {0};
  float t = 0, tt = 0;
  const ptrdiff_t o = b->p - x;
  const float *p = b->p, *g = gy + o, *yy = relu ? y + o : NULL;
  float *q = ge + o;
  for (int64_t k = 0; k < b->r; k++, p += b->rs, g += b->rs, q += b->rs, yy = relu ? yy + b->rs : NULL) {
    const ptrdiff_t ahead = k + 1 < b->r ? b->rs : next ? next - p : 0; /* as in block_dots */
    int64_t i = 0;
    for (; i + 2 * VL <= b->w; i += 2 * VL) {
      if (ahead) {
        __builtin_prefetch(p + ahead + i);
        __builtin_prefetch(p + ahead + i + VL);
        __builtin_prefetch(g + ahead + i);
        __builtin_prefetch(g + ahead + i + VL);
        if (relu) {
          __builtin_prefetch(yy + ahead + i);
          __builtin_prefetch(yy + ahead + i + VL);
        }
      }
      lanes_dots_store(&a0, &h0, p + i, g + i, relu ? yy + i : NULL, q + i, m, relu);
      lanes_dots_store(&a1, &h1, p + i + VL, g + i + VL, relu ? yy + i + VL : NULL, q + i + VL, m, relu);
    }
    if (i + VL <= b->w) lanes_dots_store(&a0, &h0, p + i, g + i, relu ? yy + i : NULL, q + i, m, relu), i += VL;
    for (; i < b->w; i++) {
      const float d = p[i] - m, e = relu && yy[i] <= 0 ? 0.0f : g[i];
      q[i] = e;
      t += e, tt += e * d;
    }
  }
  for (int j = 0; j < NV; j++) a0.v[j] += a1.v[j], h0.v[j] += h1.v[j];
  *sg += lanes_sum(&a0, t), *sgx += lanes_sum(&h0, tt);
}

/* A block's count, mean (in float: the moments' centre) and moments about it */
typedef struct block_stat {
  double nb, s1, s2;
  float mb;
} block_stat;

static inline void block_stats(const block *b, const float *next, block_stat *st) {
  st->nb = (double)(b->r * b->w);
  st->mb = (float)(block_sum(b) / st->nb);
  block_moments(b, next, st->mb, &st->s1, &st->s2);
}

/* the block's mean mb + s1 / nb and M2 s2 - s1^2 / nb merged into the *cnt values before */
static inline void chan_merge(const block_stat *st, double *mu, double *q, double *cnt) {
  const double nb = st->nb, delta = (double)st->mb + st->s1 / nb - *mu, qb = st->s2 - st->s1 * st->s1 / nb;
  *mu += delta * nb / (*cnt + nb);
  *q += (qb > 0 ? qb : 0) + delta * delta * *cnt * nb / (*cnt + nb);
  *cnt += nb;
}

/* Mean and sum of squared deviations M2 of channel c. Rows of at least VL values take one pass
 * over memory: per block, its sum, then its moments about its own mean (from L1), then Chan's
 * pairwise update of the channel's mean and M2 in double, which never subtracts two large sums
 * (the two-pass formula's accuracy, where a one-pass sum of squares cancels). Shorter rows
 * (BatchNorm1d's S = 1) take two passes over the channel in double. */
static void channel_stats(const cnn_batchnorm_args *a, const float *x, int64_t c, double *mean, double *m2) {
  const int64_t N = a->N, C = a->C, S = a->S;
  if (S >= VL) {
    double mu = 0, q = 0, cnt = 0;
    block b = {0};
    const int64_t count = channel_block(a, x, c, 0, &b);
    for (int64_t i = 0; i < count; i++) {
      block bn = b; /* the next block, when there is one */
      channel_block(a, x, c, i + 1, &bn);
      const bool same = i + 1 < count && bn.r == b.r && bn.w == b.w;
      block_stat st;
      block_stats(&b, same ? bn.p : NULL, &st);
      chan_merge(&st, &mu, &q, &cnt);
      b = bn;
    }
    *mean = mu, *m2 = q;
    return;
  }
  double sum = 0, sq = 0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t s = 0; s < S; s++) sum += x[(n * C + c) * S + s];
  const double mu = sum / (double)(N * S);
  for (int64_t n = 0; n < N; n++)
    for (int64_t s = 0; s < S; s++) {
      const double d = x[(n * C + c) * S + s] - mu;
      sq += d * d;
    }
  *mean = mu, *m2 = sq;
}

/* PF floats (two lines) of a row, prefetched into L1 (for writing when write) */
#define PF 32
#define L2_FLOATS (1 << 18) /* 1 MB */
static inline __attribute__((always_inline)) void prefetch_row(const float *p, bool write) {
  if (write) {
    __builtin_prefetch(p, 1);
    __builtin_prefetch(p + 16, 1);
  } else {
    __builtin_prefetch(p);
    __builtin_prefetch(p + 16);
  }
}

/* How many rows ahead the row loops below prefetch: one row of at least 1024 values, else about
 * that many values ahead (a short row's next one arrives too late), a row's worth of lines per row */
static inline int64_t rows_ahead(int64_t S) { return S >= 1024 ? 1 : (1024 + S - 1) / S; }

/* q[0..k) = (p - m) sc + b, plus r when residual (the two roundings of the unfused sum), then
 * ReLU's max(0, v) with NaN kept (elementwise.c) when relu; relu_grad recomputes v. Always
 * inlined, so a constant k and flags give one unrolled vector loop per case. */
static inline __attribute__((always_inline)) void bn_out(const float *p, const float *r, float *q, int64_t k, float m,
                                                         float sc, float b, bool relu, bool residual) {
  for (int64_t s = 0; s < k; s++) {
    float v = (p[s] - m) * sc + b;
    if (residual) v = v + r[s];
    q[s] = relu && v <= 0 ? 0.0f : v;
  }
}

/* y = bn_out of channel c's N rows of S values; the next row is prefetched meanwhile (the hardware
 * prefetcher stops at each row's page): x's lines (in L2 after the statistics, mostly), the
 * residual's, and the output's for writing */
static inline __attribute__((always_inline)) void bn_rows(const float *x, const float *r, float *y, int64_t N,
                                                          int64_t C, int64_t S, int64_t c, float m, float sc, float b,
                                                          bool relu, bool residual) {
  const int64_t ra = rows_ahead(S);
  const bool cold = N * S > L2_FLOATS / 2; /* x not left in L2 by the statistics */
  for (int64_t n = 0; n < N; n++) {
    const int64_t o = (n * C + c) * S;
    const ptrdiff_t ahead = n + ra < N ? ra * C * S : 0;
    int64_t s = 0;
    for (; s + PF <= S; s += PF) {
      if (ahead) {
        if (cold) prefetch_row(x + o + ahead + s, false);
        prefetch_row(y + o + ahead + s, true);
        if (residual) prefetch_row(r + o + ahead + s, false);
      }
      bn_out(x + o + s, residual ? r + o + s : NULL, y + o + s, PF, m, sc, b, relu, residual);
    }
    bn_out(x + o + s, residual ? r + o + s : NULL, y + o + s, S - s, m, sc, b, relu, residual);
  }
}

/* Channel c's normalisation from its statistics (training: mean and M2 over the M values; eval:
 * the running ones): the running statistics moved, the saved mean and inverse deviation, and the
 * output's scale *sc and shift *b ((x - m) sc + b, m = save_mean[c]) */
static void bn_channel_params(const cnn_batchnorm_args *a, int64_t c, double mean, double sq, float *save_mean,
                              float *save_invstd, float *sc, float *b) {
  const int64_t M = a->N * a->S;
  double var;
  if (a->training) {
    var = sq / (double)M;
    if (a->running_mean && M > 0) {
      float *rm = a->running_mean + c * a->rm_stride;
      *rm = (float)((1 - a->momentum) * *rm + a->momentum * mean);
    }
    if (a->running_var && M > 0) {
      float *rv = a->running_var + c * a->rv_stride;
      double unbiased = M > 1 ? sq / (double)(M - 1) : var;
      *rv = (float)((1 - a->momentum) * *rv + a->momentum * unbiased);
    }
  } else {
    mean = a->running_mean[c * a->rm_stride];
    var = a->running_var[c * a->rv_stride];
  }
  const float m = (float)mean, invstd = (float)(1.0 / sqrt(var + a->eps));
  save_mean[c] = m;
  save_invstd[c] = invstd;
  *sc = (a->weight ? a->weight[c] : 1.0f) * invstd, *b = a->bias ? a->bias[c] : 0.0f;
}

/* x: (N, C, S) -> y, save_mean (C), save_invstd (C) */
static inline void bn_forward_channel(const cnn_batchnorm_args *a, const float *x, float *y, float *save_mean,
                                      float *save_invstd, int64_t c) {
  const int64_t N = a->N, C = a->C, S = a->S;
  double mean = 0, sq = 0;
  if (a->training) channel_stats(a, x, c, &mean, &sq);
  float sc, b;
  bn_channel_params(a, c, mean, sq, save_mean, save_invstd, &sc, &b);
  const float m = save_mean[c];
  const float *r = a->residual;
  if (r && a->relu) bn_rows(x, r, y, N, C, S, c, m, sc, b, true, true);
  else if (r) bn_rows(x, r, y, N, C, S, c, m, sc, b, false, true);
  else if (a->relu) bn_rows(x, NULL, y, N, C, S, c, m, sc, b, true, false);
  else bn_rows(x, NULL, y, N, C, S, c, m, sc, b, false, false);
}

static void bn_forward_channels(void *arg, int64_t c0, int64_t c1) {
  const norm_job *j = arg;
  for (int64_t c = c0; c < c1; c++) bn_forward_channel(j->bn, j->x, j->y, j->save_mean, j->save_invstd, c);
}

/* ---- batch norm over the images (two threads or more) ----
 * The convolutions around a batch norm split a batch's images over the threads, each thread the
 * same images in every loop (core/parallel.c), so a thread's activations stay in its own caches
 * from layer to layer. Split by channels, batch norm read half of each activation from the other
 * core and left half of its output there (on this VM's two cores a core reads lines the other
 * wrote at half the speed of its own L3's). With more than one thread, each pass runs over images
 * instead: the statistics per (channel, block) into a table, merged per channel in block order
 * (channel_stats' merge: the same bits), then the normalisation over the images. One thread keeps
 * the channel order, where a channel's second look finds it in L2. */

/* The image path's table: for each channel its blocks' statistics (or, backward, dot products),
 * then the channels' scale, shift and mean (and backward two more). */
typedef struct bn_table {
  const cnn_batchnorm_args *a;
  const float *x, *gy;
  float *y, *gx;
  int64_t nblocks; /* blocks a channel (channel_block), the same for every channel */
  block_stat *st;  /* forward: [c nblocks + i] */
  double *dots;    /* backward: sum g and sum g (x - m) of block i of channel c at [2 (c nblocks + i)] */
  float *m, *sc, *b, *mg, *proj;
  bool relu; /* backward: the mask recomputed (no residual) */
} bn_table;

static bool bn_by_images(const cnn_batchnorm_args *a) {
  return a->S >= VL && a->N > 1 && cnn_parallel_get_threads() > 1;
}

/* the same block of channel c + 1 (the next one the image path reads) when it is as wide as b, for
 * the prefetches: NULL otherwise */
static const float *next_channel_block(const cnn_batchnorm_args *a, const float *x, int64_t c, int64_t i,
                                       const block *b) {
  block bn = {0};
  if (c + 1 >= a->C) return NULL;
  channel_block(a, x, c + 1, i, &bn);
  return bn.r == b->r && bn.w == b->w ? bn.p : NULL;
}

/* blocks [i0, i1) of every channel (the images of those blocks) */
static void bn_stats_blocks(void *arg, int64_t i0, int64_t i1) {
  const bn_table *t = arg;
  const cnn_batchnorm_args *a = t->a;
  for (int64_t i = i0; i < i1; i++)
    for (int64_t c = 0; c < a->C; c++) {
      block b = {0};
      channel_block(a, t->x, c, i, &b);
      block_stats(&b, next_channel_block(a, t->x, c, i, &b), &t->st[c * t->nblocks + i]);
    }
}

/* images [n0, n1): y = (x - m) sc + b (+ residual, then ReLU), a channel's row after another */
static void bn_out_images(void *arg, int64_t n0, int64_t n1) {
  const bn_table *t = arg;
  const cnn_batchnorm_args *a = t->a;
  const int64_t C = a->C, S = a->S;
  const float *r = a->residual;
  for (int64_t n = n0; n < n1; n++)
    for (int64_t c = 0; c < C; c++) {
      const int64_t o = (n * C + c) * S;
      const float m = t->m[c], sc = t->sc[c], b = t->b[c];
      if (r && a->relu) bn_out(t->x + o, r + o, t->y + o, S, m, sc, b, true, true);
      else if (r) bn_out(t->x + o, r + o, t->y + o, S, m, sc, b, false, true);
      else if (a->relu) bn_out(t->x + o, NULL, t->y + o, S, m, sc, b, true, false);
      else bn_out(t->x + o, NULL, t->y + o, S, m, sc, b, false, false);
    }
}

/* false when the table cannot be had (the channel path runs instead) */
static bool bn_forward_images(const cnn_batchnorm_args *a, const float *x, float *y, float *save_mean,
                              float *save_invstd) {
  const int64_t C = a->C, nblocks = channel_block(a, x, 0, 0, NULL);
  const size_t stn = a->training ? (size_t)(C * nblocks) : 0;
  const size_t bytes = stn * sizeof(block_stat) + (size_t)(3 * C) * sizeof(float);
  void *mem = cnn_alloc(bytes);
  if (!mem) return false;
  bn_table t = {.a = a, .x = x, .y = y, .nblocks = nblocks, .st = mem};
  t.m = (float *)(t.st + stn), t.sc = t.m + C, t.b = t.sc + C;
  const int64_t work = a->N * C * a->S;
  if (a->training) cnn_parallel_items(nblocks, work, bn_stats_blocks, &t);
  for (int64_t c = 0; c < C; c++) {
    double mu = 0, q = 0, cnt = 0;
    for (int64_t i = 0; i < nblocks && a->training; i++) chan_merge(&t.st[c * nblocks + i], &mu, &q, &cnt);
    bn_channel_params(a, c, mu, q, save_mean, save_invstd, &t.sc[c], &t.b[c]);
    t.m[c] = save_mean[c];
  }
  cnn_parallel_items(a->N, work, bn_out_images, &t);
  cnn_free(mem, bytes);
  return true;
}

void cnn_batchnorm_forward(const cnn_batchnorm_args *a, const float *x, float *y, float *save_mean,
                           float *save_invstd) {
  if (a->N * a->S == 0) { /* no values (the block and prefetch arithmetic divides by S): nothing to
                           * normalise; training keeps the running statistics and saves zeros */
    for (int64_t c = 0; c < a->C; c++) {
      float sc, b;
      if (a->training) save_mean[c] = save_invstd[c] = 0;
      else bn_channel_params(a, c, 0, 0, save_mean, save_invstd, &sc, &b);
    }
    return;
  }
  if (bn_by_images(a) && bn_forward_images(a, x, y, save_mean, save_invstd)) return;
  norm_job j = {.bn = a, .x = x, .y = y, .save_mean = save_mean, .save_invstd = save_invstd};
  cnn_parallel_items(a->C, a->N * a->C * a->S, bn_forward_channels, &j);
}

/* q[0..k) = gx of batch norm's backward (see bn_backward_channel) from p (x) and g (gy) */
static inline __attribute__((always_inline)) void bn_grad(const float *p, const float *g, float *q, int64_t k, float m,
                                                          float sc, float bias, float mg, float proj, bool relu,
                                                          bool training) {
  if (relu && training)
    for (int64_t s = 0; s < k; s++) {
      const float d = p[s] - m;
      q[s] = sc * (relu_grad(g[s], d, sc, bias) - mg - d * proj);
    }
  else if (relu)
    for (int64_t s = 0; s < k; s++) q[s] = sc * relu_grad(g[s], p[s] - m, sc, bias);
  else if (training)
    for (int64_t s = 0; s < k; s++) q[s] = sc * (g[s] - mg - (p[s] - m) * proj);
  else
    for (int64_t s = 0; s < k; s++) q[s] = sc * g[s];
}

/* gx = bn_grad of channel c's N rows of S values. Rows in reverse: the first pass's last rows are
 * the ones still in L2 (a channel of x and g at 128x16x32x32 is 1 MB, L2's size); the row before
 * is prefetched meanwhile, as in bn_rows. */
static inline __attribute__((always_inline)) void bn_grad_rows(const float *x, const float *gy, float *gx, int64_t N,
                                                               int64_t C, int64_t S, int64_t c, float m, float sc,
                                                               float bias, float mg, float proj, bool relu,
                                                               bool training) {
  const int64_t ra = rows_ahead(S);
  const bool cold = 2 * N * S > L2_FLOATS / 2; /* x and g not left in L2 by the first pass */
  for (int64_t n = N - 1; n >= 0; n--) {
    const int64_t o = (n * C + c) * S;
    const ptrdiff_t ahead = n - ra >= 0 ? -ra * C * S : 0;
    int64_t s = 0;
    for (; s + PF <= S; s += PF) {
      if (ahead) {
        if (cold && (training || relu)) prefetch_row(x + o + ahead + s, false);
        if (cold) prefetch_row(gy + o + ahead + s, false);
        prefetch_row(gx + o + ahead + s, true);
      }
      bn_grad(x + o + s, gy + o + s, gx + o + s, PF, m, sc, bias, mg, proj, relu, training);
    }
    bn_grad(x + o + s, gy + o + s, gx + o + s, S - s, m, sc, bias, mg, proj, relu, training);
  }
}

/* *sg += sum g, *sgx += sum g (x - m) over block b, g masked by relu (recomputed with the forward's
 * scale k and shift bias, or read from y with a residual, whose gradient is stored to gresidual) */
static inline __attribute__((always_inline)) void block_dots_any(const cnn_batchnorm_args *a, const block *b,
                                                                 const float *next, const float *x, const float *gy,
                                                                 float m, float k, float bias, double *sg,
                                                                 double *sgx) {
  float *ge = a->gresidual;
  if (ge && a->relu) block_dots_store(b, next, x, gy, a->y, ge, m, true, sg, sgx);
  else if (ge) block_dots_store(b, next, x, gy, NULL, ge, m, false, sg, sgx);
  else if (a->relu) block_dots(b, next, x, gy, m, true, k, bias, sg, sgx);
  else block_dots(b, next, x, gy, m, false, 0, 0, sg, sgx);
}

/* From channel c's sums: gbias, gweight (when not NULL), and gx's mean term *mg and projection
 * *proj (0 in eval mode) */
static void bn_grad_params(const cnn_batchnorm_args *a, int64_t c, double sg, double sgx, float invstd, float *gweight,
                           float *gbias, float *mg, float *proj) {
  const int64_t M = a->N * a->S;
  if (gbias) gbias[c] = (float)sg;
  if (gweight) gweight[c] = M > 0 ? (float)(sgx * invstd) : 0.0f; /* an empty batch: no term, not 0 * NaN */
  *mg = a->training ? (float)(sg / (double)M) : 0;
  *proj = a->training ? (float)(sgx / (double)M) * invstd * invstd : 0;
}

/* With xhat = (x - mean) invstd and M = N * S values per channel:
 *   gbias = sum g, gweight = sum g xhat,
 *   training gx = w invstd (g - sum g / M - xhat sum(g xhat) / M), eval gx = w invstd g,
 * where g is gy, or with relu gy masked as relu_grad (recomputed in both passes, never stored). */
static inline void bn_backward_channel(const cnn_batchnorm_args *a, const float *x, const float *gy,
                                       const float *save_mean, const float *save_invstd, float *gx, float *gweight,
                                       float *gbias, int64_t c) {
  const int64_t N = a->N, C = a->C, S = a->S;
  const float m = save_mean[c], invstd = save_invstd[c];
  /* the forward's scale and shift, and so (with relu) its mask */
  const float k = (a->weight ? a->weight[c] : 1.0f) * invstd, bias = a->relu && a->bias ? a->bias[c] : 0.0f;
  double sg = 0, sgx = 0;   /* sum g, sum g (x - mean) */
  float *ge = a->gresidual; /* with a residual: g (masked) stored here, then read back as gy */
  if (S >= VL) {
    block b = {0};
    const int64_t count = channel_block(a, x, c, 0, NULL);
    for (int64_t i = 0; i < count; i++) {
      channel_block(a, x, c, i, &b);
      block bn = b; /* the next block: its first row is prefetched when it is as wide as this one's */
      channel_block(a, x, c, i + 1, &bn);
      const float *next = i + 1 < count && bn.w == b.w ? bn.p : NULL;
      block_dots_any(a, &b, next, x, gy, m, k, bias, &sg, &sgx);
    }
  } else {
    for (int64_t n = 0; n < N; n++)
      for (int64_t s = 0; s < S; s++) {
        const int64_t i = (n * C + c) * S + s;
        const float d = x[i] - m;
        float e = gy[i];
        if (ge) {
          if (a->relu && a->y[i] <= 0) e = 0;
          ge[i] = e;
        } else if (a->relu) {
          e = relu_grad(gy[i], d, k, bias);
        }
        sg += e, sgx += (double)e * d;
      }
  }
  if (ge) gy = ge; /* masked already: the passes below read it as the plain case */
  const bool relu = a->relu && !ge;
  float mg, proj;
  bn_grad_params(a, c, sg, sgx, invstd, gweight, gbias, &mg, &proj);
  if (!gx) return;
  if (relu && a->training) bn_grad_rows(x, gy, gx, N, C, S, c, m, k, bias, mg, proj, true, true);
  else if (relu) bn_grad_rows(x, gy, gx, N, C, S, c, m, k, bias, mg, proj, true, false);
  else if (a->training) bn_grad_rows(x, gy, gx, N, C, S, c, m, k, bias, mg, proj, false, true);
  else bn_grad_rows(x, gy, gx, N, C, S, c, m, k, bias, mg, proj, false, false);
}

static void bn_backward_channels(void *arg, int64_t c0, int64_t c1) {
  const norm_job *j = arg;
  for (int64_t c = c0; c < c1; c++)
    bn_backward_channel(j->bn, j->x, j->gy, j->mean, j->invstd, j->gx, j->gweight, j->gbias, c);
}

/* blocks [i0, i1) of every channel: sum g and sum g (x - m), as bn_backward_channel's first pass */
static void bn_dots_blocks(void *arg, int64_t i0, int64_t i1) {
  const bn_table *t = arg;
  const cnn_batchnorm_args *a = t->a;
  for (int64_t i = i0; i < i1; i++)
    for (int64_t c = 0; c < a->C; c++) {
      const float m = t->m[c], k = t->sc[c], bias = t->b[c];
      block b = {0};
      channel_block(a, t->x, c, i, &b);
      const float *next = next_channel_block(a, t->x, c, i, &b);
      double sg = 0, sgx = 0;
      block_dots_any(a, &b, next, t->x, t->gy, m, k, bias, &sg, &sgx);
      t->dots[2 * (c * t->nblocks + i)] = sg, t->dots[2 * (c * t->nblocks + i) + 1] = sgx;
    }
}

/* images [n0, n1): gx as bn_grad_rows */
static void bn_grad_images(void *arg, int64_t n0, int64_t n1) {
  const bn_table *t = arg;
  const cnn_batchnorm_args *a = t->a;
  const int64_t C = a->C, S = a->S;
  const bool relu = t->relu, training = a->training;
  for (int64_t n = n0; n < n1; n++)
    for (int64_t c = 0; c < C; c++) {
      const int64_t o = (n * C + c) * S;
      const float m = t->m[c], k = t->sc[c], bias = t->b[c], mg = t->mg[c], proj = t->proj[c];
      const float *p = t->x + o, *g = t->gy + o;
      float *q = t->gx + o;
      if (relu && training) bn_grad(p, g, q, S, m, k, bias, mg, proj, true, true);
      else if (relu) bn_grad(p, g, q, S, m, k, bias, mg, proj, true, false);
      else if (training) bn_grad(p, g, q, S, m, k, bias, mg, proj, false, true);
      else bn_grad(p, g, q, S, m, k, bias, mg, proj, false, false);
    }
}

/* the image path's backward (see bn_forward_images): false when the table cannot be had */
static bool bn_backward_images(const cnn_batchnorm_args *a, const float *x, const float *gy, const float *save_mean,
                               const float *save_invstd, float *gx, float *gweight, float *gbias) {
  const int64_t C = a->C, nblocks = channel_block(a, x, 0, 0, NULL);
  const size_t dn = (size_t)(2 * C * nblocks), bytes = dn * sizeof(double) + (size_t)(5 * C) * sizeof(float);
  void *mem = cnn_alloc(bytes);
  if (!mem) return false;
  bn_table t = {.a = a, .x = x, .gy = gy, .gx = gx, .nblocks = nblocks, .dots = mem};
  t.m = (float *)(t.dots + dn), t.sc = t.m + C, t.b = t.sc + C, t.mg = t.b + C, t.proj = t.mg + C;
  for (int64_t c = 0; c < C; c++) { /* the forward's scale and shift, and so (with relu) its mask */
    t.m[c] = save_mean[c];
    t.sc[c] = (a->weight ? a->weight[c] : 1.0f) * save_invstd[c];
    t.b[c] = a->relu && a->bias ? a->bias[c] : 0.0f;
  }
  const int64_t work = a->N * C * a->S;
  cnn_parallel_items(nblocks, work, bn_dots_blocks, &t);
  for (int64_t c = 0; c < C; c++) {
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < nblocks; i++) sg += t.dots[2 * (c * nblocks + i)], sgx += t.dots[2 * (c * nblocks + i) + 1];
    bn_grad_params(a, c, sg, sgx, save_invstd[c], gweight, gbias, &t.mg[c], &t.proj[c]);
  }
  if (gx) {
    if (a->gresidual) t.gy = a->gresidual; /* masked already: read as the plain case */
    t.relu = a->relu && !a->gresidual;
    cnn_parallel_items(a->N, work, bn_grad_images, &t);
  }
  cnn_free(mem, bytes);
  return true;
}

void cnn_batchnorm_backward(const cnn_batchnorm_args *a, const float *x, const float *gy, const float *save_mean,
                            const float *save_invstd, float *gx, float *gweight, float *gbias) {
  if (a->N * a->S == 0) { /* no values: the parameters' gradients are empty sums */
    for (int64_t c = 0; c < a->C; c++) {
      if (gweight) gweight[c] = 0;
      if (gbias) gbias[c] = 0;
    }
    return;
  }
  if (bn_by_images(a) && bn_backward_images(a, x, gy, save_mean, save_invstd, gx, gweight, gbias)) return;
  norm_job j = {.bn = a,
                .x = x,
                .gy = gy,
                .mean = save_mean,
                .invstd = save_invstd,
                .gx = gx,
                .gweight = gweight,
                .gbias = gbias};
  cnn_parallel_items(a->C, a->N * a->C * a->S, bn_backward_channels, &j);
}

/* ---- local response norm ---- */

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* planes [w0, w1) of LRN forward */
static void lrn_forward_planes(void *arg, int64_t w0, int64_t w1) {
  const norm_job *job = arg;
  const cnn_lrn_args *a = job->lrn;
  const float *x = job->x;
  float *y = job->y, *scale = job->work;
  const int64_t C = a->C, S = a->S;
  const int64_t before = a->size / 2, after = (a->size - 1) / 2;
  const float k = (float)a->k, coef = (float)(a->alpha / (double)a->size), nbeta = (float)-a->beta;
  const bool quarter_powers = a->beta == 0.75; /* AlexNet's and PyTorch's default */
  for (int64_t w = w0; w < w1; w++) {
    const int64_t n = w / C, c = w % C;
    float *sc = scale + w * S;
    for (int64_t s = 0; s < S; s++) sc[s] = 0;
    for (int64_t j = max64(0, c - before); j <= min64(C - 1, c + after); j++) {
      const float *p = x + (n * C + j) * S;
      for (int64_t s = 0; s < S; s++) sc[s] += p[s] * p[s];
    }
    const float *p = x + w * S;
    float *q = y + w * S;
    if (quarter_powers) /* scale^-3/4 = 1 / (sqrt(scale) sqrt(sqrt(scale))): vectorises, powf does not */
      for (int64_t s = 0; s < S; s++) {
        sc[s] = k + coef * sc[s];
        const float r = sqrtf(sc[s]);
        q[s] = p[s] / (r * sqrtf(r));
      }
    else
      for (int64_t s = 0; s < S; s++) {
        sc[s] = k + coef * sc[s];
        q[s] = p[s] * powf(sc[s], nbeta);
      }
  }
}

/* x: (N, C, S) -> y, scale (N, C, S); one work item per (n, c) plane of S values. */
void cnn_lrn_forward(const cnn_lrn_args *a, const float *x, float *y, float *scale) {
  norm_job j = {.lrn = a, .x = x, .y = y, .work = scale};
  /* a window never holds more than C channels, however large size is (it may be near 2^63) */
  const int64_t window = a->size < a->C ? a->size : a->C;
  cnn_parallel_items(a->N * a->C, a->N * a->C * a->S * window, lrn_forward_planes, &j);
}

/* PyTorch's pow of a float32 tensor by a scalar, with its exact special cases */
static float pow_scalar(float d, double e) {
  if (e == 0.5) return sqrtf(d);
  if (e == 1) return d;
  if (e == 2) return d * d;
  if (e == 3) return d * d * d;
  return powf(d, (float)e);
}

void cnn_lrn_forward_i64(const cnn_lrn_args *a, const int64_t *x, float *y) {
  const int64_t C = a->C, S = a->S, before = a->size / 2, after = (a->size - 1) / 2;
  const float alpha = (float)a->alpha, k = (float)a->k;
  for (int64_t w = 0; w < a->N * C; w++) {
    const int64_t n = w / C, c = w % C;
    for (int64_t s = 0; s < S; s++) {
      uint64_t sum = 0; /* wrapping, as PyTorch's integer square and average pool */
      for (int64_t j = max64(0, c - before); j <= min64(C - 1, c + after); j++) {
        const uint64_t v = (uint64_t)x[(n * C + j) * S + s];
        sum += v * v;
      }
      const float d = (float)((int64_t)sum / a->size) * alpha + k;
      y[w * S + s] = (float)x[w * S + s] / pow_scalar(d, a->beta);
    }
  }
}

/* element i of LRN backward's pass 1 (see cnn_lrn_backward) */
static inline void lrn_backward_first(const float *x, const float *scale, const float *gy, float *gx, float *work,
                                      float nbeta, bool quarter_powers, int64_t i) {
  float p;
  if (quarter_powers) {
    const float r = sqrtf(scale[i]);
    p = 1.0f / (r * sqrtf(r));
  } else {
    p = powf(scale[i], nbeta);
  }
  gx[i] = gy[i] * p;
  work[i] = gy[i] * x[i] * p / scale[i];
}

/* plane w = (n, c) of LRN backward's pass 2: the transposed window sum of work */
static inline void lrn_backward_window(const float *x, const float *work, float *gx, int64_t C, int64_t S,
                                       int64_t before, int64_t after, float coef, int64_t w) {
  const int64_t n = w / C, c = w % C;
  const float *p = x + w * S;
  float *q = gx + w * S;
  for (int64_t j = max64(0, c - after); j <= min64(C - 1, c + before); j++) {
    const float *t = work + (n * C + j) * S;
    for (int64_t s = 0; s < S; s++) q[s] -= coef * p[s] * t[s];
  }
}

static void lrn_backward_firsts(void *arg, int64_t i0, int64_t i1) {
  const norm_job *j = arg;
  const float nbeta = (float)-j->lrn->beta;
  const bool quarter_powers = j->lrn->beta == 0.75;
  for (int64_t i = i0; i < i1; i++) lrn_backward_first(j->x, j->scale, j->gy, j->gx, j->work, nbeta, quarter_powers, i);
}

static void lrn_backward_windows(void *arg, int64_t w0, int64_t w1) {
  const norm_job *j = arg;
  const cnn_lrn_args *a = j->lrn;
  const int64_t before = a->size / 2, after = (a->size - 1) / 2;
  const float coef = (float)(2.0 * a->beta * a->alpha / (double)a->size);
  for (int64_t w = w0; w < w1; w++) lrn_backward_window(j->x, j->work, j->gx, a->C, a->S, before, after, coef, w);
}

/* y_c = x_c scale_c^-beta with scale_c summing x_j^2 over j in [c - before, c + after], so
 *   gx_j = g_j scale_j^-beta - 2 beta alpha / size * x_j * sum over c in [j - after, j + before]
 *          of g_c x_c scale_c^(-beta - 1).
 * Pass 1 writes the first term into gx and t_c = g_c x_c scale_c^(-beta-1) into work; pass 2
 * subtracts the window sums of t (the transposed window: before and after swap). */
void cnn_lrn_backward(const cnn_lrn_args *a, const float *x, const float *scale, const float *gy, float *gx,
                      float *work) {
  const int64_t items = a->N * a->C, total = items * a->S;
  /* pass 2 reads pass 1's work of neighbouring planes: two loops */
  norm_job j = {.lrn = a, .x = x, .scale = scale, .gy = gy, .gx = gx, .work = work};
  cnn_parallel_items(total, total, lrn_backward_firsts, &j);
  cnn_parallel_items(items, total * (a->size < a->C ? a->size : a->C), lrn_backward_windows, &j);
}
