/* Random tensors from the runtime's stream (rng.h). Tensors are filled in row-major order of the
 * view; the stream's draws are made in order on the calling thread, so the numbers never depend
 * on the thread count. Large normal fills turn a block of draws into values on the pool (the conversion,
 * sin, cos and log for normals, is most of the time), with the same arithmetic as the serial path:
 * the same values for a seed, whichever path or thread count. */
#include "cnn/random.h"
#include "cnn/error.h"
#include "cnn/rng.h"
#include "core/alloc.h"
#include "core/parallel.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>

/* ---- filling a float32 view in row-major order ---- */

/* Fills n values of one row, step floats apart, drawing from g, a local copy of the runtime's
 * stream. A row at a time (not a call per value through a pointer with the state in memory):
 * 30-45 ns a value before. */
typedef void (*row_fn)(void *ctx, cnn_rng *g, float *row, int64_t n, int64_t step);

static void fill_view(cnn_tensor *t, row_fn fill, void *ctx) {
  int64_t numel = cnn_tensor_numel(t);
  if (numel == 0) return;
  cnn_rng g = *cnn_rng_global();
  float *base = cnn_tensor_f32(t);
  int nd = t->ndim;
  if (nd == 0) {
    fill(ctx, &g, base, 1, 1);
  } else {
    /* the last dim is the inner loop; idx walks the outer dims as an odometer */
    int64_t idx[CNN_MAX_DIMS] = {0};
    int64_t inner = t->size[nd - 1], step = t->stride[nd - 1];
    float *row = base;
    for (int64_t done = 0; done < numel; done += inner) {
      fill(ctx, &g, row, inner, step);
      for (int d = nd - 2; d >= 0; d--) {
        row += t->stride[d];
        if (++idx[d] < t->size[d]) break;
        row -= idx[d] * t->stride[d];
        idx[d] = 0;
      }
    }
  }
  *cnn_rng_global() = g;
}

/* ---- the values: one function of the draws each, shared by the serial and the pooled path ---- */

static double draw01(uint64_t d) { return (double)(d >> 11) * 0x1.0p-53; } /* cnn_rng_uniform01's */

typedef struct {
  double lo, hi;
  float flo, fhi;
} uniform_ctx;

static inline float uniform_value(const uniform_ctx *c, uint64_t d) {
  /* rounding to float32 can land on hi itself: step back to the largest float below it */
  float f = (float)(c->lo + (c->hi - c->lo) * draw01(d));
  return f >= c->fhi ? (c->flo < c->fhi ? nextafterf(c->fhi, -INFINITY) : c->flo) : f;
}

static void fill_uniform(void *vctx, cnn_rng *g, float *row, int64_t n, int64_t step) {
  const uniform_ctx *c = vctx;
  for (int64_t i = 0; i < n; i++) row[i * step] = uniform_value(c, cnn_rng_next(g));
}

typedef struct {
  double mean, std;
  double spare; /* Box-Muller makes two values per pair of draws; the second is used next */
  bool has_spare;
} normal_ctx;

/* Box-Muller: the pair of values two draws make */
static inline void normal_pair(const normal_ctx *c, uint64_t d1, uint64_t d2, float *z0, float *z1) {
  double u1 = 1.0 - draw01(d1); /* (0, 1]: log stays finite */
  double u2 = draw01(d2);
  double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
  *z0 = (float)(c->mean + c->std * (r * cos(th)));
  *z1 = (float)(c->mean + c->std * (r * sin(th)));
}

static void fill_normal(void *vctx, cnn_rng *g, float *row, int64_t n, int64_t step) {
  normal_ctx *c = vctx;
  for (int64_t i = 0; i < n; i++) {
    if (c->has_spare) {
      row[i * step] = (float)c->spare;
      c->has_spare = false;
    } else {
      uint64_t d1 = cnn_rng_next(g), d2 = cnn_rng_next(g);
      float z0, z1;
      normal_pair(c, d1, d2, &z0, &z1);
      row[i * step] = z0;
      c->spare = z1;
      c->has_spare = true;
    }
  }
}

/* ---- large fills: a block's draws made in order, its values made on the pool ----
 * Value k of the fill (row-major) is made from draw k (uniform) or from the pair of draws
 * 2 floor(k / 2), 2 floor(k / 2) + 1 (normal), exactly as the serial loops above consume them.
 * Normals take this path (~15 ns a value serially, most of it sin, cos and log: VGG-16's
 * initialisation was 2 s of them); uniforms (~2 ns) measured no faster on it. */

#define POOL_MIN ((int64_t)1 << 16) /* values; below, one thread */
#define BLOCK ((int64_t)1 << 18)    /* values per block (their draws: 2 MB) */
#define PIECE ((int64_t)1 << 13)    /* values per work item */

typedef struct {
  const cnn_tensor *t;
  bool normal;
  const void *vctx;
  const uint64_t *draws; /* the block's */
  int64_t k0;            /* the block's first value (even) */
  int64_t n;             /* values in the block */
} block_job;

/* values [k0 + a, k0 + b) of the block, walking the view from linear index k0 + a */
static void block_values(const block_job *j, int64_t a, int64_t b) {
  const cnn_tensor *t = j->t;
  const int nd = t->ndim;
  int64_t idx[CNN_MAX_DIMS], rem = j->k0 + a;
  float *p = cnn_tensor_f32(t);
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = rem % t->size[d];
    rem /= t->size[d];
    p += idx[d] * t->stride[d];
  }
  const int64_t inner = t->size[nd - 1], step = t->stride[nd - 1];
  int64_t k = a;
  while (k < b) {
    int64_t run = inner - idx[nd - 1];
    if (run > b - k) run = b - k;
    if (j->normal) {
      const normal_ctx *c = j->vctx;
      for (int64_t i = 0; i < run;) { /* k0 is even: value k is the first of its pair when k is */
        float z[2];
        normal_pair(c, j->draws[k & ~(int64_t)1], j->draws[(k & ~(int64_t)1) + 1], &z[0], &z[1]);
        p[i * step] = z[k & 1];
        i++, k++;
        if ((k & 1) && i < run) { /* the pair's second value, in the same row */
          p[i * step] = z[1];
          i++, k++;
        }
      }
    } else {
      const uniform_ctx *c = j->vctx;
      for (int64_t i = 0; i < run; i++, k++) p[i * step] = uniform_value(c, j->draws[k]);
    }
    /* to the next row: the odometer over the outer dims */
    p += run * step;
    idx[nd - 1] += run;
    if (idx[nd - 1] < inner) continue;
    p -= inner * step;
    idx[nd - 1] = 0;
    for (int d = nd - 2; d >= 0; d--) {
      p += t->stride[d];
      if (++idx[d] < t->size[d]) break;
      p -= idx[d] * t->stride[d];
      idx[d] = 0;
    }
  }
}

static void block_pieces(void *arg, int64_t i0, int64_t i1) {
  const block_job *j = arg;
  int64_t a = i0 * PIECE, b = i1 * PIECE < j->n ? i1 * PIECE : j->n;
  block_values(j, a, b);
}

/* The draws of values [k0, k0 + n) into out, from *g (the pair of an odd last normal too). */
typedef struct {
  cnn_rng *g;
  bool normal;
  int64_t n;
  uint64_t *out;
} draw_job;

static void draw_block(void *arg, int64_t i0, int64_t i1) {
  (void)i0, (void)i1;
  draw_job *d = arg;
  cnn_rng g = *d->g; /* the state in registers */
  const int64_t nd = d->normal ? (d->n + 1) / 2 * 2 : d->n;
  for (int64_t i = 0; i < nd; i++) d->out[i] = cnn_rng_next(&g);
  *d->g = g;
}

/* Fills t (numel >= POOL_MIN, at least 1-d) block by block, the next block's draws made beside
 * the current block's values (two buffers); 0, or -1 with the error set when the buffers cannot
 * be had (nothing drawn then). */
static int fill_pooled(cnn_tensor *t, bool normal, const void *vctx) {
  const int64_t numel = cnn_tensor_numel(t);
  const size_t bytes = (size_t)BLOCK * sizeof(uint64_t);
  uint64_t *buf[2] = {cnn_alloc(bytes), cnn_alloc(bytes)};
  if (!buf[0] || !buf[1]) {
    cnn_free(buf[0], bytes);
    cnn_free(buf[1], bytes);
    return -1;
  }
  cnn_rng g = *cnn_rng_global();
  draw_job first = {&g, normal, numel < BLOCK ? numel : BLOCK, buf[0]};
  draw_block(&first, 0, 1);
  for (int64_t k0 = 0, b = 0; k0 < numel; k0 += BLOCK, b++) { /* BLOCK is even: no pair straddles blocks */
    int64_t n = numel - k0 < BLOCK ? numel - k0 : BLOCK, next = numel - k0 - n;
    block_job j = {t, normal, vctx, buf[b & 1], k0, n};
    draw_job d = {&g, normal, next < BLOCK ? next : BLOCK, buf[(b + 1) & 1]};
    const cnn_parallel_loop loops[2] = {{1, 1, draw_block, &d}, {(n + PIECE - 1) / PIECE, 1, block_pieces, &j}};
    if (next > 0) cnn_parallel_loops(2, loops);
    else cnn_parallel_for(loops[1].n, 1, block_pieces, &j);
  }
  *cnn_rng_global() = g;
  cnn_free(buf[0], bytes);
  cnn_free(buf[1], bytes);
  return 0;
}

static bool pooled(const cnn_tensor *t) {
  return t->ndim > 0 && cnn_tensor_numel(t) >= POOL_MIN && cnn_parallel_get_threads() > 1;
}

int cnn_random_uniform_(cnn_tensor *t, double lo, double hi) {
  if (cnn_tensor_need_float(t, "tensor")) return -1;
  if (!isfinite(lo) || !isfinite(hi) || lo > hi)
    return cnn_error_set("expected finite bounds with lo <= hi but got lo=%g, hi=%g", cnn_error_num(lo),
                         cnn_error_num(hi));
  if (t->dtype == CNN_FLOAT32 && (fabs(lo) > FLT_MAX || fabs(hi) > FLT_MAX || hi - lo > FLT_MAX))
    return cnn_error_set("%s (lo=%g, hi=%g): the bounds and hi - lo must lie within float's range (%g)",
                         fabs(lo) > FLT_MAX   ? "lo is out of bounds for float"
                         : fabs(hi) > FLT_MAX ? "hi is out of bounds for float"
                                              : "hi - lo overflows float",
                         cnn_error_num(lo), cnn_error_num(hi), FLT_MAX);
  uniform_ctx c = {lo, hi, (float)lo, (float)hi};
  fill_view(t, fill_uniform, &c); /* ~2 ns a value: the pool's hand-off measured no faster */
  return 0;
}

int cnn_random_normal_(cnn_tensor *t, double mean, double std) {
  if (cnn_tensor_need_float(t, "tensor")) return -1;
  if (!isfinite(mean) || !isfinite(std) || std < 0)
    return cnn_error_set("expected a finite mean and std >= 0 but got mean=%g, std=%g", cnn_error_num(mean),
                         cnn_error_num(std));
  normal_ctx c = {mean, std, 0.0, false};
  if (pooled(t)) return fill_pooled(t, true, &c);
  fill_view(t, fill_normal, &c);
  return 0;
}

cnn_tensor *cnn_random_randint(int64_t lo, int64_t hi, int ndim, const int64_t *size) {
  if (lo > hi) {
    cnn_error_set("expected lo <= hi but got lo=%lld, hi=%lld", (long long)lo, (long long)hi);
    return NULL;
  }
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, ndim, size);
  if (!t) return NULL;
  int64_t n = cnn_tensor_numel(t), *p = cnn_tensor_i64(t);
  uint64_t span = (uint64_t)hi - (uint64_t)lo + 1; /* 0: the full 64-bit range */
  for (int64_t i = 0; i < n; i++) {
    uint64_t r = span ? cnn_rng_below(cnn_rng_global(), span) : cnn_rng_next(cnn_rng_global());
    p[i] = (int64_t)((uint64_t)lo + r); /* two's complement wrap is the intended sum */
  }
  return t;
}

cnn_tensor *cnn_random_randperm(int64_t n) {
  if (n < 0) {
    cnn_error_set("expected n >= 0 but got %lld", (long long)n);
    return NULL;
  }
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, 1, &n);
  if (!t) return NULL;
  int64_t *p = cnn_tensor_i64(t);
  for (int64_t i = 0; i < n; i++) p[i] = i;
  /* Fisher-Yates: p[i] swaps with a uniform position in [0, i] */
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)cnn_rng_below(cnn_rng_global(), (uint64_t)i + 1);
    int64_t x = p[i];
    p[i] = p[j];
    p[j] = x;
  }
  return t;
}
