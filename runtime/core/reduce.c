/* Reductions (see reduce.h). Every reduction views its input, made contiguous, as (outer, R, inner)
 * with R the reduced extent and writes an (outer, inner) result. Float accumulation is in double over
 * fixed blocks combined in a fixed order, so a result never depends on the thread count. */
#include "cnn/reduce.h"
#include "cnn/error.h"
#include "core/iter.h"
#include "core/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BLK 4096 /* elements per partial of a long row: fixes the order of summation */
#define CH 256   /* columns accumulated side by side when the reduced dim is not the last */

typedef struct plan {
  int64_t outer, r, inner;
  int ndim; /* result shape, in the order of the tensor read */
  int64_t size[CNN_MAX_DIMS];
  bool permuted;          /* the tensor read is a permuted view of x: the result needs ... */
  int back[CNN_MAX_DIMS]; /* ... this permutation to reach x's dim order */
} plan;

static int make_plan(const cnn_tensor *x, int dim, bool keepdim, plan *p) {
  p->outer = p->inner = 1;
  p->permuted = false;
  if (dim == CNN_ALL_DIMS || x->ndim == 0) {
    /* a 0-d tensor accepts dim 0 / -1 as a dimension of size 1, as PyTorch does */
    if (dim != CNN_ALL_DIMS && cnn_dim_wrap(dim, x->ndim) < 0) return -1;
    p->r = cnn_tensor_numel(x);
    p->ndim = keepdim && dim == CNN_ALL_DIMS ? x->ndim : 0;
    for (int d = 0; d < p->ndim; d++) p->size[d] = 1;
    return 0;
  }
  int d = cnn_dim_wrap(dim, x->ndim);
  if (d < 0) return -1;
  p->r = x->size[d];
  p->ndim = 0;
  for (int k = 0; k < x->ndim; k++) {
    if (k < d) p->outer *= x->size[k];
    if (k > d) p->inner *= x->size[k];
    if (k != d) p->size[p->ndim++] = x->size[k];
    else if (keepdim) p->size[p->ndim++] = 1;
  }
  return 0;
}

/* The contiguous tensor a reduction reads, with its plan; new reference. A transposed or permuted
 * x whose elements still fill one dense block is read in memory order instead of being copied:
 * the plan then follows that order (p->permuted). Full reductions whose result depends on the
 * logical element order (the flat index of max/min) pass logical_order and always get x's order. */
static cnn_tensor *prepare(const cnn_tensor *x, int dim, bool keepdim, bool logical_order, plan *p) {
  if (make_plan(x, dim, keepdim, p)) return NULL;
  if (cnn_tensor_is_contiguous(x)) return cnn_tensor_retain((cnn_tensor *)x);
  bool full = dim == CNN_ALL_DIMS || x->ndim == 0;
  if (full && logical_order) return cnn_tensor_contiguous(x);
  /* dims by decreasing stride (stable), the order the memory holds them in */
  int perm[CNN_MAX_DIMS];
  for (int k = 0; k < x->ndim; k++) {
    int j = k;
    for (; j > 0 && x->stride[perm[j - 1]] < x->stride[k]; j--) perm[j] = perm[j - 1];
    perm[j] = k;
  }
  cnn_tensor *v = cnn_tensor_permute(x, perm);
  if (!v) return NULL;
  if (!cnn_tensor_is_contiguous(v)) { /* expanded, overlapping or with gaps */
    cnn_tensor_release(v);
    return cnn_tensor_contiguous(x);
  }
  if (full) return v; /* every element once: the order of reading does not matter */
  int d = cnn_dim_wrap(dim, x->ndim), q = 0;
  while (perm[q] != d) q++;
  make_plan(v, q, keepdim, p); /* cannot fail: q is a valid dim of v */
  /* result dims in v's order are x's dims perm[k] (k != q unless keepdim); x's order is ascending */
  int xd[CNN_MAX_DIMS], n = 0;
  for (int k = 0; k < x->ndim; k++)
    if (k != q || keepdim) xd[n++] = perm[k];
  int j = 0;
  for (int want = 0; want < x->ndim; want++)
    for (int k = 0; k < n; k++)
      if (xd[k] == want) p->back[j++] = k;
  p->permuted = true;
  return v;
}

/* The result in x's dim order: out itself, or a contiguous copy of its permuted view. Takes out. */
static cnn_tensor *finish_out(const plan *p, cnn_tensor *out) {
  if (!out || !p->permuted) return out;
  cnn_tensor *v = cnn_tensor_permute(out, p->back);
  cnn_tensor_release(out);
  if (!v) return NULL;
  cnn_tensor *c = cnn_tensor_contiguous(v);
  cnn_tensor_release(v);
  return c;
}

static bool go_parallel(int64_t work) { return work >= CNN_PARALLEL_GRAIN && cnn_parallel_get_threads() > 1; }

/* Everything one reduction's work items read, for the loops run on the pool. */
typedef struct red_job {
  int op, k; /* fop, kind (f32); prod (i64); is_max (argext) */
  const float *xf;
  const int64_t *xi;
  const uint8_t *xb; /* uint8 and bool input of the int64 sum and prod (xi NULL) */
  const struct plan *p;
  int64_t n; /* a long row's length */
  double mean;
  int correction;
  float *outf;
  int64_t *outi;
  double *part;
  int64_t *ipart;
} red_job;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- float32 sum, mean, prod, var ---- */

typedef enum kind { K_SUM, K_SQDEV, K_PROD } kind;

/* One block of a contiguous row in double, in 8 independent lanes (they vectorise without any
 * reassociation), combined in a fixed tree. K_SQDEV sums (x - mean)^2. */
static double block_f32(kind k, const float *x, int64_t n, double mean) {
  double acc[8];
  int64_t i = 0;
  if (k == K_PROD) {
    for (int l = 0; l < 8; l++) acc[l] = 1;
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; l++) acc[l] *= x[i + l];
    for (; i < n; i++) acc[0] *= x[i];
    return ((acc[0] * acc[1]) * (acc[2] * acc[3])) * ((acc[4] * acc[5]) * (acc[6] * acc[7]));
  }
  for (int l = 0; l < 8; l++) acc[l] = 0;
  if (k == K_SUM) {
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; l++) acc[l] += x[i + l];
    for (; i < n; i++) acc[0] += x[i];
  } else {
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; l++) {
        double dv = x[i + l] - mean;
        acc[l] += dv * dv;
      }
    for (; i < n; i++) acc[0] += (x[i] - mean) * (x[i] - mean);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static double combine(kind k, double t, double v) { return k == K_PROD ? t * v : t + v; }

static double row_f32(kind k, const float *x, int64_t n, double mean) {
  double t = k == K_PROD ? 1 : 0;
  for (int64_t b = 0; b < n; b += BLK) t = combine(k, t, block_f32(k, x + b, min64(BLK, n - b), mean));
  return t;
}

static void row_blocks(void *arg, int64_t b0, int64_t b1) {
  const red_job *j = arg;
  for (int64_t b = b0; b < b1; b++)
    j->part[b] = block_f32((kind)j->k, j->xf + b * BLK, min64(BLK, j->n - b * BLK), j->mean);
}

/* row_f32 with the blocks spread over threads: the same blocks combined in the same order, so
 * the same bits. part has room for one double per block. */
static double row_f32_par(kind k, const float *x, int64_t n, double mean, double *part) {
  int64_t nb = (n + BLK - 1) / BLK;
  red_job j = {.k = k, .xf = x, .n = n, .mean = mean, .part = part};
  cnn_parallel_for(nb, 1, row_blocks, &j);
  double t = k == K_PROD ? 1 : 0;
  for (int64_t b = 0; b < nb; b++) t = combine(k, t, part[b]);
  return t;
}

typedef enum fop { F_SUM, F_MEAN, F_PROD, F_VAR, F_STD } fop;

/* var and std share the two passes; std takes the root in double, so a std whose variance
 * overflows float32 is still finite, as PyTorch's */
static bool two_pass(fop op) { return op == F_VAR || op == F_STD; }

static double finish(fop op, double v, int64_t r, int correction) {
  switch (op) {
  /* PyTorch's mean: the float32 sum divided in float32 (inf when the sum passes float32's range) */
  case F_MEAN: return r > 0 ? (double)((float)v / (float)r) : NAN;
  case F_VAR: return r - correction > 0 ? v / (double)(r - correction) : NAN;
  case F_STD: return r - correction > 0 ? sqrt(v / (double)(r - correction)) : NAN;
  default: return v;
  }
}

/* Output o of a reduction over contiguous rows (inner == 1). */
static inline void f32_row_item(fop op, kind k, const float *x, int64_t r, int correction, float *out, int64_t o) {
  const float *row = x + o * r;
  double v = row_f32(k, row, r, 0);
  if (two_pass(op)) v = r > 0 ? row_f32(K_SQDEV, row, r, v / (double)r) : 0;
  out[o] = (float)finish(op, v, r, correction);
}

/* Work item w of a reduction over a dim that is not last: columns j0.. of outer slice o. */
static void f32_col_item(fop op, kind k, const float *x, const plan *p, int correction, float *out, int64_t w) {
  const int64_t r = p->r, inner = p->inner, nch = (inner + CH - 1) / CH;
  const int64_t o = w / nch, j0 = (w % nch) * CH, m = min64(CH, inner - j0);
  const float *base = x + o * r * inner + j0;
  double acc[CH], mean[CH];
  for (int64_t j = 0; j < m; j++) acc[j] = k == K_PROD ? 1 : 0;
  for (int64_t i = 0; i < r; i++) {
    const float *row = base + i * inner;
    if (k == K_PROD) {
      for (int64_t j = 0; j < m; j++) acc[j] *= row[j];
    } else {
      for (int64_t j = 0; j < m; j++) acc[j] += row[j];
    }
  }
  if (two_pass(op) && r > 0) {
    for (int64_t j = 0; j < m; j++) {
      mean[j] = acc[j] / (double)r;
      acc[j] = 0;
    }
    for (int64_t i = 0; i < r; i++) {
      const float *row = base + i * inner;
      for (int64_t j = 0; j < m; j++) {
        double dv = row[j] - mean[j];
        acc[j] += dv * dv;
      }
    }
  }
  float *dst = out + o * inner + j0;
  for (int64_t j = 0; j < m; j++) dst[j] = (float)finish(op, acc[j], r, correction);
}

static void f32_rows(void *arg, int64_t o0, int64_t o1) {
  const red_job *j = arg;
  for (int64_t o = o0; o < o1; o++) f32_row_item((fop)j->op, (kind)j->k, j->xf, j->p->r, j->correction, j->outf, o);
}

static void f32_cols(void *arg, int64_t w0, int64_t w1) {
  const red_job *j = arg;
  for (int64_t w = w0; w < w1; w++) f32_col_item((fop)j->op, (kind)j->k, j->xf, j->p, j->correction, j->outf, w);
}

/* x: (outer, r, inner) contiguous -> out: (outer, inner). */
static int reduce_f32(fop op, const float *x, const plan *p, int correction, float *out) {
  const int64_t outer = p->outer, r = p->r, inner = p->inner;
  kind k = op == F_PROD ? K_PROD : K_SUM;
  if (outer * inner == 0) return 0;
  if (inner == 1 && outer == 1 && r >= 2 * BLK && go_parallel(r)) {
    double *part = malloc(sizeof(double) * (size_t)((r + BLK - 1) / BLK));
    if (!part) return cnn_error_set("out of memory");
    double v = row_f32_par(k, x, r, 0, part);
    if (two_pass(op)) v = row_f32_par(K_SQDEV, x, r, v / (double)r, part);
    out[0] = (float)finish(op, v, r, correction);
    free(part);
    return 0;
  }
  red_job j = {.op = op, .k = k, .xf = x, .p = p, .correction = correction, .outf = out};
  if (inner == 1) {
    cnn_parallel_items(outer, outer * r, f32_rows, &j);
    return 0;
  }
  /* reduced dim not last: each work item sweeps the r rows of up to CH adjacent columns, so the
   * inner loop reads contiguous memory and the accumulators stay in registers or L1 */
  const int64_t nch = (inner + CH - 1) / CH, items = outer * nch;
  cnn_parallel_items(items, outer * r * inner, f32_cols, &j);
  return 0;
}

/* ---- int64 sum and prod: wrapping arithmetic is exact in any order. uint8 and bool are read as
 * they are (one byte an element) and accumulate into int64, as PyTorch's ---- */

/* The sum or product of the n elements at x + off (int64, or bytes when j->xb). */
static int64_t i64_run(const red_job *j, int64_t off, int64_t n) {
  uint64_t t = j->op ? 1 : 0;
  if (j->xb) {
    const uint8_t *x = j->xb + off;
    if (j->op) {
      for (int64_t i = 0; i < n; i++) t *= x[i];
    } else {
      for (int64_t i = 0; i < n; i++) t += x[i];
    }
  } else {
    const int64_t *x = j->xi + off;
    if (j->op) {
      for (int64_t i = 0; i < n; i++) t *= (uint64_t)x[i];
    } else {
      for (int64_t i = 0; i < n; i++) t += (uint64_t)x[i];
    }
  }
  return (int64_t)t;
}

static void i64_blocks(void *arg, int64_t b0, int64_t b1) {
  const red_job *j = arg;
  for (int64_t b = b0; b < b1; b++) j->ipart[b] = i64_run(j, b * BLK, min64(BLK, j->n - b * BLK));
}

static void i64_rows(void *arg, int64_t o0, int64_t o1) {
  const red_job *j = arg;
  const int64_t r = j->p->r;
  for (int64_t o = o0; o < o1; o++) j->outi[o] = i64_run(j, o * r, r);
}

static void i64_cols(void *arg, int64_t w0, int64_t w1) {
  const red_job *j = arg;
  const bool prod = j->op;
  const int64_t r = j->p->r, inner = j->p->inner, nch = (inner + CH - 1) / CH;
  for (int64_t w = w0; w < w1; w++) {
    const int64_t o = w / nch, j0 = (w % nch) * CH, m = min64(CH, inner - j0);
    uint64_t acc[CH];
    for (int64_t c = 0; c < m; c++) acc[c] = prod ? 1 : 0;
    if (j->xb) {
      const uint8_t *base = j->xb + o * r * inner + j0;
      for (int64_t i = 0; i < r; i++) {
        const uint8_t *row = base + i * inner;
        if (prod) {
          for (int64_t c = 0; c < m; c++) acc[c] *= row[c];
        } else {
          for (int64_t c = 0; c < m; c++) acc[c] += row[c];
        }
      }
    } else {
      const int64_t *base = j->xi + o * r * inner + j0;
      for (int64_t i = 0; i < r; i++) {
        const int64_t *row = base + i * inner;
        if (prod) {
          for (int64_t c = 0; c < m; c++) acc[c] *= (uint64_t)row[c];
        } else {
          for (int64_t c = 0; c < m; c++) acc[c] += (uint64_t)row[c];
        }
      }
    }
    for (int64_t c = 0; c < m; c++) j->outi[o * inner + j0 + c] = (int64_t)acc[c];
  }
}

/* x: int64, or uint8 / bool (one byte an element) -> out: int64 */
static int reduce_i64(bool prod, const cnn_tensor *x, const plan *p, int64_t *out) {
  const int64_t outer = p->outer, r = p->r, inner = p->inner;
  if (outer * inner == 0) return 0;
  red_job j = {.op = prod, .p = p, .n = r, .outi = out};
  if (x->dtype == CNN_INT64) j.xi = cnn_tensor_i64(x);
  else j.xb = cnn_tensor_u8(x);
  if (inner == 1 && outer == 1 && r >= 2 * BLK && go_parallel(r)) {
    /* one long row: per-block partials (wrapping arithmetic, so any grouping gives the same) */
    const int64_t nb = (r + BLK - 1) / BLK;
    if (!(j.ipart = malloc(sizeof(int64_t) * (size_t)nb))) return cnn_error_set("out of memory");
    cnn_parallel_for(nb, 1, i64_blocks, &j);
    uint64_t total = prod ? 1 : 0;
    for (int64_t b = 0; b < nb; b++) total = prod ? total * (uint64_t)j.ipart[b] : total + (uint64_t)j.ipart[b];
    free(j.ipart);
    out[0] = (int64_t)total;
    return 0;
  }
  if (inner == 1) {
    cnn_parallel_items(outer, outer * r, i64_rows, &j);
    return 0;
  }
  const int64_t nch = (inner + CH - 1) / CH;
  cnn_parallel_items(outer * nch, outer * r * inner, i64_cols, &j);
  return 0;
}

/* ---- entry points for sum, mean, prod, var ---- */

cnn_tensor *cnn_red_reduce(cnn_redop op, const cnn_tensor *x, int dim, bool keepdim) {
  if (op == CNN_RED_MEAN && x->dtype != CNN_FLOAT32 && x->dtype != CNN_INT64) {
    cnn_error_set("mean needs a float32 tensor, got %s", cnn_dtype_name(x->dtype));
    return NULL;
  }
  plan p;
  cnn_tensor *xc = prepare(x, dim, keepdim, false, &p);
  if (!xc) return NULL;
  /* uint8 and bool sum and multiply into int64, as PyTorch's */
  cnn_dtype odt = op == CNN_RED_MEAN ? CNN_FLOAT32 : x->dtype == CNN_FLOAT32 ? CNN_FLOAT32 : CNN_INT64;
  cnn_tensor *out = cnn_tensor_empty(odt, p.ndim, p.size);
  if (!out) goto fail;
  if (x->dtype == CNN_FLOAT32) {
    fop f = op == CNN_RED_SUM ? F_SUM : op == CNN_RED_MEAN ? F_MEAN : F_PROD;
    if (reduce_f32(f, cnn_tensor_f32(xc), &p, 0, cnn_tensor_f32(out))) goto fail;
  } else if (op != CNN_RED_MEAN) {
    if (reduce_i64(op == CNN_RED_PROD, xc, &p, cnn_tensor_i64(out))) goto fail;
  } else {
    /* mean of int64: the exact integer sum, then one division in double */
    cnn_tensor *sum = cnn_tensor_empty(CNN_INT64, p.ndim, p.size);
    if (!sum) goto fail;
    if (reduce_i64(false, xc, &p, cnn_tensor_i64(sum))) {
      cnn_tensor_release(sum);
      goto fail;
    }
    const int64_t *s = cnn_tensor_i64(sum);
    float *o = cnn_tensor_f32(out);
    for (int64_t i = 0; i < p.outer * p.inner; i++) o[i] = (float)finish(F_MEAN, (double)s[i], p.r, 0);
    cnn_tensor_release(sum);
  }
  cnn_tensor_release(xc);
  return finish_out(&p, out);
fail:
  cnn_tensor_release(out);
  cnn_tensor_release(xc);
  return NULL;
}

static cnn_tensor *var_like(fop op, const cnn_tensor *x, int dim, bool unbiased, bool keepdim) {
  plan p;
  /* int64 input: variance is a float quantity */
  cnn_tensor *xf = cnn_tensor_to_dtype(x, CNN_FLOAT32);
  cnn_tensor *xc = xf ? prepare(xf, dim, keepdim, false, &p) : NULL;
  cnn_tensor *out = xc ? cnn_tensor_empty(CNN_FLOAT32, p.ndim, p.size) : NULL;
  if (out && reduce_f32(op, cnn_tensor_f32(xc), &p, unbiased ? 1 : 0, cnn_tensor_f32(out))) {
    cnn_tensor_release(out);
    out = NULL;
  }
  cnn_tensor_release(xc);
  cnn_tensor_release(xf);
  return xc ? finish_out(&p, out) : NULL;
}

cnn_tensor *cnn_red_var(const cnn_tensor *x, int dim, bool unbiased, bool keepdim) {
  return var_like(F_VAR, x, dim, unbiased, keepdim);
}

cnn_tensor *cnn_red_std(const cnn_tensor *x, int dim, bool unbiased, bool keepdim) {
  return var_like(F_STD, x, dim, unbiased, keepdim);
}

/* ---- max / min with first-occurrence indices ---- */

/* v replaces best when strictly better, or when v is the first NaN: NaN beats everything (PyTorch
 * propagates it) and ties keep the earlier index. */
#define BETTER(is_max, v, best) (((is_max) ? (v) > (best) : (v) < (best)) || ((v) != (v) && (best) == (best)))

static int64_t argext_row_f32(bool is_max, const float *x, int64_t n) {
  if (n >= 64) {
    /* a long row: its extreme value first, in loops that vectorise (no index carried through a
     * compare per element: a full max() of 1e6 values took 4-8x PyTorch's time), then the first
     * position holding it (== takes -0 for +0, as the compares below do), or the first NaN; the
     * caller reads the value at that position, so the bits are the loop's below */
    float m = x[0];
    int nan = 0;
    if (is_max) {
#pragma omp simd reduction(max : m) reduction(| : nan)
      for (int64_t i = 0; i < n; i++) {
        nan |= x[i] != x[i];
        m = x[i] > m ? x[i] : m;
      }
    } else {
#pragma omp simd reduction(min : m) reduction(| : nan)
      for (int64_t i = 0; i < n; i++) {
        nan |= x[i] != x[i];
        m = x[i] < m ? x[i] : m;
      }
    }
    int64_t i = 0;
    if (nan)
      while (x[i] == x[i]) i++;
    else
      while (i < n && x[i] != m) i++;
    if (i < n) return i; /* else m was the reduction's start (a row of -inf): the loop below */
  }
  float best = x[0];
  int64_t bi = 0;
  for (int64_t i = 1; i < n && best == best; i++)
    if (BETTER(is_max, x[i], best)) best = x[i], bi = i;
  return bi;
}

static int64_t argext_row_i64(bool is_max, const int64_t *x, int64_t n) {
  int64_t best = x[0], bi = 0;
  if (is_max) {
    for (int64_t i = 1; i < n; i++)
      if (x[i] > best) best = x[i], bi = i;
  } else {
    for (int64_t i = 1; i < n; i++)
      if (x[i] < best) best = x[i], bi = i;
  }
  return bi;
}

static int64_t argext_row_u8(bool is_max, const uint8_t *x, int64_t n) {
  uint8_t best = x[0];
  int64_t bi = 0;
  if (is_max) {
    for (int64_t i = 1; i < n && best != 255; i++)
      if (x[i] > best) best = x[i], bi = i;
  } else {
    for (int64_t i = 1; i < n && best != 0; i++)
      if (x[i] < best) best = x[i], bi = i;
  }
  return bi;
}

/* The argext loops' operands (the red_job of the sums has no room for both outputs). One of xf, xi
 * and xb (uint8 and bool, compared as bytes) is set, with the values' output of the same type. */
typedef struct {
  bool is_max;
  const float *xf;
  const int64_t *xi;
  const uint8_t *xb;
  float *vf;
  int64_t *vi, *oi, *part;
  uint8_t *vb;
  int64_t outer, r, inner;
} ext_job;

/* the index of the first extremum of the n elements from off */
static int64_t ext_run(const ext_job *j, int64_t off, int64_t n) {
  if (j->xf) return argext_row_f32(j->is_max, j->xf + off, n);
  if (j->xi) return argext_row_i64(j->is_max, j->xi + off, n);
  return argext_row_u8(j->is_max, j->xb + off, n);
}

/* writes element at of the input to the values' output at o */
static void ext_store(const ext_job *j, int64_t o, int64_t at) {
  if (j->xf) j->vf[o] = j->xf[at];
  else if (j->xi) j->vi[o] = j->xi[at];
  else j->vb[o] = j->xb[at];
}

static void ext_blocks(void *arg, int64_t b0, int64_t b1) {
  const ext_job *j = arg;
  for (int64_t b = b0; b < b1; b++) j->part[b] = b * BLK + ext_run(j, b * BLK, min64(BLK, j->r - b * BLK));
}

static void ext_rows(void *arg, int64_t o0, int64_t o1) {
  const ext_job *j = arg;
  const int64_t r = j->r;
  for (int64_t o = o0; o < o1; o++) {
    int64_t bi = ext_run(j, o * r, r);
    j->oi[o] = bi;
    ext_store(j, o, o * r + bi);
  }
}

static void ext_cols(void *arg, int64_t w0, int64_t w1) {
  const ext_job *e = arg;
  const bool is_max = e->is_max;
  const int64_t r = e->r, inner = e->inner, nch = (inner + CH - 1) / CH;
  for (int64_t w = w0; w < w1; w++) {
    const int64_t o = w / nch, j0 = (w % nch) * CH, m = min64(CH, inner - j0);
    int64_t bi[CH];
    for (int64_t j = 0; j < m; j++) bi[j] = 0;
    if (e->xf) {
      const float *base = e->xf + o * r * inner + j0;
      float best[CH];
      for (int64_t j = 0; j < m; j++) best[j] = base[j];
      for (int64_t i = 1; i < r; i++) {
        const float *row = base + i * inner;
        for (int64_t j = 0; j < m; j++)
          if (BETTER(is_max, row[j], best[j])) best[j] = row[j], bi[j] = i;
      }
      for (int64_t j = 0; j < m; j++) e->vf[o * inner + j0 + j] = best[j];
    } else if (e->xb) {
      const uint8_t *base = e->xb + o * r * inner + j0;
      uint8_t best[CH];
      for (int64_t j = 0; j < m; j++) best[j] = base[j];
      for (int64_t i = 1; i < r; i++) {
        const uint8_t *row = base + i * inner;
        if (is_max) {
          for (int64_t j = 0; j < m; j++)
            if (row[j] > best[j]) best[j] = row[j], bi[j] = i;
        } else {
          for (int64_t j = 0; j < m; j++)
            if (row[j] < best[j]) best[j] = row[j], bi[j] = i;
        }
      }
      for (int64_t j = 0; j < m; j++) e->vb[o * inner + j0 + j] = best[j];
    } else {
      const int64_t *base = e->xi + o * r * inner + j0;
      int64_t best[CH];
      for (int64_t j = 0; j < m; j++) best[j] = base[j];
      for (int64_t i = 1; i < r; i++) {
        const int64_t *row = base + i * inner;
        if (is_max) {
          for (int64_t j = 0; j < m; j++)
            if (row[j] > best[j]) best[j] = row[j], bi[j] = i;
        } else {
          for (int64_t j = 0; j < m; j++)
            if (row[j] < best[j]) best[j] = row[j], bi[j] = i;
        }
      }
      for (int64_t j = 0; j < m; j++) e->vi[o * inner + j0 + j] = best[j];
    }
    for (int64_t j = 0; j < m; j++) e->oi[o * inner + j0 + j] = bi[j];
  }
}

/* x: (outer, r, inner) contiguous with r >= 1 -> vals (x's dtype), idx: (outer, inner). */
static int argext(bool is_max, const cnn_tensor *xc, const plan *p, cnn_tensor *vals, cnn_tensor *idx) {
  const int64_t outer = p->outer, r = p->r, inner = p->inner;
  const bool f32 = xc->dtype == CNN_FLOAT32, i64 = xc->dtype == CNN_INT64;
  ext_job j = {.is_max = is_max, .oi = cnn_tensor_i64(idx), .outer = outer, .r = r, .inner = inner};
  if (f32) j.xf = cnn_tensor_f32(xc), j.vf = cnn_tensor_f32(vals);
  else if (i64) j.xi = cnn_tensor_i64(xc), j.vi = cnn_tensor_i64(vals);
  else j.xb = cnn_tensor_u8(xc), j.vb = cnn_tensor_u8(vals);
  if (outer * inner == 0) return 0;
  if (inner == 1 && outer == 1 && r >= 2 * BLK && go_parallel(r)) {
    /* one long row: the first extremum of each block, then the first among those in block order */
    const int64_t nb = (r + BLK - 1) / BLK;
    if (!(j.part = malloc(sizeof(int64_t) * (size_t)nb))) return cnn_error_set("out of memory");
    cnn_parallel_for(nb, 1, ext_blocks, &j);
    const float *xf = j.xf;
    const int64_t *xi = j.xi;
    const uint8_t *xb = j.xb;
    int64_t bi = j.part[0];
    for (int64_t b = 1; b < nb; b++) {
      int64_t c = j.part[b];
      bool better = f32   ? xf[bi] == xf[bi] && BETTER(is_max, xf[c], xf[bi])
                    : i64 ? (is_max ? xi[c] > xi[bi] : xi[c] < xi[bi])
                          : (is_max ? xb[c] > xb[bi] : xb[c] < xb[bi]);
      if (better) bi = c;
    }
    free(j.part);
    j.oi[0] = bi;
    ext_store(&j, 0, bi);
    return 0;
  }
  if (inner == 1) cnn_parallel_items(outer, outer * r, ext_rows, &j);
  else cnn_parallel_items(outer * ((inner + CH - 1) / CH), outer * r * inner, ext_cols, &j);
  return 0;
}

static int max_min(bool is_max, const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices) {
  plan p;
  cnn_tensor *xc = prepare(x, dim, keepdim, true, &p);
  if (!xc) return -1;
  if (p.r == 0) {
    cnn_tensor_release(xc);
    return cnn_error_set("cannot reduce an empty dimension");
  }
  cnn_tensor *vals = cnn_tensor_empty(x->dtype, p.ndim, p.size);
  cnn_tensor *idx = vals ? cnn_tensor_empty(CNN_INT64, p.ndim, p.size) : NULL;
  int rc = idx ? argext(is_max, xc, &p, vals, idx) : -1;
  cnn_tensor_release(xc);
  if (rc == 0) {
    vals = finish_out(&p, vals);
    idx = finish_out(&p, idx);
    if (!vals || !idx) rc = -1;
  }
  if (rc == 0 && values) *values = cnn_tensor_retain(vals);
  if (rc == 0 && indices) *indices = cnn_tensor_retain(idx);
  cnn_tensor_release(vals);
  cnn_tensor_release(idx);
  return rc;
}

int cnn_red_max(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices) {
  return max_min(true, x, dim, keepdim, values, indices);
}

int cnn_red_min(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices) {
  return max_min(false, x, dim, keepdim, values, indices);
}

/* ---- sum_to: the reverse of broadcasting ---- */

cnn_tensor *cnn_red_sum_to(const cnn_tensor *t, int ndim, const int64_t *size) {
  int lead = t->ndim - ndim;
  bool ok = lead >= 0;
  for (int i = 0; ok && i < ndim; i++) ok = size[i] == t->size[lead + i] || size[i] == 1;
  if (!ok) {
    char b1[256], b2[256];
    cnn_error_set("shape %s cannot be summed to %s", cnn_shape_str(t->ndim, t->size, b1, sizeof b1),
                  cnn_shape_str(ndim, size, b2, sizeof b2));
    return NULL;
  }
  cnn_tensor *cur = cnn_tensor_retain((cnn_tensor *)t);
  if (lead > 0) {
    /* (lead dims..., rest...) -> (L, rest...), summed over the first dim in one pass */
    int64_t shape[CNN_MAX_DIMS];
    shape[0] = 1;
    for (int i = 0; i < lead; i++) shape[0] *= t->size[i];
    for (int i = 0; i < ndim; i++) shape[1 + i] = t->size[lead + i];
    cnn_tensor *v = cnn_tensor_reshape(cur, ndim + 1, shape);
    cnn_tensor_release(cur);
    if (!v) return NULL;
    cur = cnn_red_reduce(CNN_RED_SUM, v, 0, false);
    cnn_tensor_release(v);
    if (!cur) return NULL;
  }
  for (int i = 0; i < ndim; i++) {
    if (size[i] != 1 || cur->size[i] == 1) continue;
    cnn_tensor *s = cnn_red_reduce(CNN_RED_SUM, cur, i, true);
    cnn_tensor_release(cur);
    if (!s) return NULL;
    cur = s;
  }
  return cur;
}
