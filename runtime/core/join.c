/* Joining and gathering (see join.h). Every function checks all shapes, dtypes and indices before
 * it writes anything; data moves as whole contiguous blocks (memcpy) when the inputs are
 * contiguous, through strided copies otherwise. Dims and indices in messages are 1-based (Lua's). */
#include "cnn/join.h"
#include "core/checked.h"
#include "cnn/error.h"
#include "core/alloc.h"
#include "core/iter.h"

#include <stdlib.h>
#include <string.h>

/* t as (outer, size[d], inner) in elements. */
static void split_at(const cnn_tensor *t, int d, int64_t *outer, int64_t *inner) {
  *outer = 1, *inner = 1;
  for (int k = 0; k < d; k++) *outer *= t->size[k];
  for (int k = d + 1; k < t->ndim; k++) *inner *= t->size[k];
}

/* PyTorch's legacy rule: a 1-d tensor of size 0 joins anything and contributes nothing. */
static bool skipped(const cnn_tensor *t) { return t->ndim == 1 && t->size[0] == 0; }

cnn_tensor *cnn_join_cat(int n, const cnn_tensor *const *ts, int dim) {
  if (n < 1) {
    cnn_error_set("expected a non-empty list of tensors");
    return NULL;
  }
  /* dtypes promote as in arithmetic (bool < uint8 < int64 < float32) */
  cnn_dtype dt = ts[0]->dtype;
  for (int i = 1; i < n; i++) dt = cnn_dtype_promote(dt, ts[i]->dtype);
  int r = 0; /* the reference: first tensor that is not skipped */
  while (r < n && skipped(ts[r])) r++;
  if (r == n) return cnn_tensor_empty(dt, 1, (int64_t[]){0});
  const cnn_tensor *ref = ts[r];
  if (ref->ndim == 0) {
    cnn_error_set("tensor %d is 0-d and cannot be concatenated", r + 1);
    return NULL;
  }
  int d = cnn_dim_wrap(dim, ref->ndim);
  if (d < 0) return NULL;
  int64_t total = 0;
  for (int i = r; i < n; i++) {
    const cnn_tensor *t = ts[i];
    if (skipped(t)) continue;
    if (t->ndim != ref->ndim) {
      cnn_error_set("tensor %d has %d dimensions but tensor %d has %d", i + 1, t->ndim, r + 1, ref->ndim);
      return NULL;
    }
    for (int k = 0; k < t->ndim; k++) {
      if (k != d && t->size[k] != ref->size[k]) {
        cnn_error_set("tensor %d has size %lld at dim %d but tensor %d has %lld", i + 1, (long long)t->size[k], k + 1,
                      r + 1, (long long)ref->size[k]);
        return NULL;
      }
    }
    if (!cnn_add_ok(total, t->size[d], &total)) {
      cnn_error_set("the joined size of dimension %d overflows", d + 1);
      return NULL;
    }
  }
  int64_t size[CNN_MAX_DIMS];
  memcpy(size, ref->size, sizeof size);
  size[d] = total;
  cnn_tensor *out = cnn_tensor_empty(dt, ref->ndim, size);
  if (!out || cnn_tensor_numel(out) == 0) return out; /* nothing to copy (and inner may be 0) */

  /* out as (outer, total * inner); tensor i fills columns [at, at + size_i * inner) of each row */
  size_t es = cnn_dtype_size(dt);
  int64_t outer, inner;
  split_at(out, d, &outer, &inner);
  char *po = cnn_tensor_data(out);
  int64_t at = 0;
  for (int i = r; i < n; i++) {
    const cnn_tensor *t = ts[i];
    if (skipped(t) || t->size[d] == 0) continue;
    int64_t block = t->size[d] * inner;
    if (t->dtype == dt && cnn_tensor_is_contiguous(t)) {
      const char *pt = cnn_tensor_data(t);
      for (int64_t o = 0; o < outer; o++)
        memcpy(po + (size_t)(o * total * inner + at) * es, pt + (size_t)(o * block) * es, (size_t)block * es);
    } else { /* strided, or converted to the result's dtype */
      cnn_tensor *slot = cnn_tensor_narrow(out, d, at / inner, t->size[d]);
      int rc = slot ? cnn_tensor_copy_(slot, t) : -1;
      cnn_tensor_release(slot);
      if (rc) {
        cnn_tensor_release(out);
        return NULL;
      }
    }
    at += block;
  }
  return out;
}

cnn_tensor *cnn_join_stack(int n, const cnn_tensor *const *ts, int dim) {
  if (n < 1) {
    cnn_error_set("expected a non-empty list of tensors");
    return NULL;
  }
  char s0[256], si[256];
  for (int i = 1; i < n; i++) {
    if (!cnn_tensor_same_shape(ts[i], ts[0])) {
      cnn_error_set("tensor %d has shape %s but tensor 1 has %s", i + 1,
                    cnn_shape_str(ts[i]->ndim, ts[i]->size, si, sizeof si),
                    cnn_shape_str(ts[0]->ndim, ts[0]->size, s0, sizeof s0));
      return NULL;
    }
  }
  if (ts[0]->ndim >= CNN_MAX_DIMS) {
    cnn_error_set("stacking would exceed %d dimensions", CNN_MAX_DIMS);
    return NULL;
  }
  int d = cnn_dim_wrap(dim, ts[0]->ndim + 1);
  if (d < 0) return NULL;
  /* (shape) x n -> cat of n unsqueezed (.., 1, ..) views */
  cnn_tensor **us = calloc((size_t)n, sizeof *us);
  cnn_tensor *out = NULL;
  if (!us) {
    cnn_error_set("out of memory");
    return NULL;
  }
  for (int i = 0; i < n; i++)
    if (!(us[i] = cnn_tensor_unsqueeze(ts[i], d))) goto done;
  out = cnn_join_cat(n, (const cnn_tensor *const *)us, d);
done:
  for (int i = 0; i < n; i++) cnn_tensor_release(us[i]);
  free(us);
  return out;
}

/* Checks idx (int64, 0-d or 1-d, every entry in [0, size)) for dimension d. */
static int check_index(const cnn_tensor *idx, int d, int64_t size) {
  if (idx->dtype != CNN_INT64)
    return cnn_error_set("expected an int64 index tensor but got %s", cnn_dtype_name(idx->dtype));
  if (idx->ndim > 1) return cnn_error_set("expected a 1-d index tensor but got %d-d", idx->ndim);
  int64_t n = cnn_tensor_numel(idx), step = idx->ndim ? idx->stride[0] : 0;
  const int64_t *p = cnn_tensor_i64(idx);
  for (int64_t j = 0; j < n; j++) {
    int64_t v = p[j * step];
    if (v < 0 || v >= size)
      return cnn_error_set("index %lld is out of range for dimension %d of size %lld", (long long)((uint64_t)v + 1),
                           d + 1, /* the user's 1-based value, also when 0-basing wrapped it */
                           (long long)size);
  }
  return 0;
}

cnn_tensor *cnn_join_index_select(const cnn_tensor *t, int dim, const cnn_tensor *idx) {
  int d = cnn_dim_wrap(dim, t->ndim);
  if (d < 0) return NULL;
  /* a 0-d t acts as size 1 and comes back whole, as in PyTorch */
  if (check_index(idx, d, t->ndim ? t->size[d] : 1)) return NULL;
  if (t->ndim == 0) return cnn_tensor_clone(t);
  int64_t nidx = cnn_tensor_numel(idx), istep = idx->ndim ? idx->stride[0] : 0;
  const int64_t *pi = cnn_tensor_i64(idx);
  int64_t size[CNN_MAX_DIMS];
  memcpy(size, t->size, sizeof size);
  size[d] = nidx;
  cnn_tensor *out = cnn_tensor_empty(t->dtype, t->ndim, size);
  cnn_tensor *src = out ? cnn_tensor_contiguous(t) : NULL;
  if (!src) {
    cnn_tensor_release(out);
    return NULL;
  }
  /* src (outer, S, inner) -> out (outer, nidx, inner), one inner block per index */
  int64_t outer, inner, S = t->size[d];
  split_at(t, d, &outer, &inner);
  size_t es = cnn_dtype_size(t->dtype), bytes = (size_t)inner * es;
  const char *ps = cnn_tensor_data(src);
  char *po = cnn_tensor_data(out);
  if (bytes > 0) {
    for (int64_t o = 0; o < outer; o++)
      for (int64_t j = 0; j < nidx; j++)
        memcpy(po + (size_t)(o * nidx + j) * bytes, ps + (size_t)(o * S + pi[j * istep]) * bytes, bytes);
  }
  cnn_tensor_release(src);
  return out;
}

int cnn_join_index_add_(cnn_tensor *out, int dim, const cnn_tensor *idx, const cnn_tensor *src) {
  char so[256], ss[256];
  if (src->dtype != out->dtype)
    return cnn_error_set("expected a source of dtype %s but got %s", cnn_dtype_name(out->dtype),
                         cnn_dtype_name(src->dtype));
  int d = cnn_dim_wrap(dim, out->ndim);
  if (d < 0) return -1;
  if (check_index(idx, d, out->ndim ? out->size[d] : 1)) return -1;
  int64_t nidx = cnn_tensor_numel(idx), istep = idx->ndim ? idx->stride[0] : 0;
  const int64_t *pi = cnn_tensor_i64(idx), zero = 0;
  /* src must be out's shape with size nidx at d. A 0-d out takes a 0-d source added once, whatever
   * the indices: index_select of a 0-d tensor returns it once, so that is its backward. */
  int64_t want[CNN_MAX_DIMS];
  memcpy(want, out->size, sizeof want);
  if (out->ndim) want[d] = nidx;
  bool ok = src->ndim == out->ndim;
  for (int k = 0; ok && k < out->ndim; k++) ok = src->size[k] == want[k];
  if (!ok)
    return cnn_error_set("expected a source of shape %s but got %s", cnn_shape_str(out->ndim, want, so, sizeof so),
                         cnn_shape_str(src->ndim, src->size, ss, sizeof ss));

  cnn_tensor *dst = cnn_tensor_contiguous(out);
  cnn_tensor *cs = dst ? cnn_tensor_contiguous(src) : NULL;
  if (!cs) {
    cnn_tensor_release(dst);
    return -1;
  }
  /* dst (outer, S, inner) += src (outer, nidx, inner) scattered by idx; repeats accumulate */
  int64_t outer = 1, inner = 1, S = 1;
  if (out->ndim) {
    split_at(out, d, &outer, &inner);
    S = out->size[d];
  } else {
    outer = nidx = 1; /* the one element, once */
    pi = &zero;
  }
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t j = 0; j < nidx; j++) {
      int64_t to = (o * S + pi[j * istep]) * inner, from = (o * nidx + j) * inner;
      if (out->dtype == CNN_FLOAT32) {
        float *a = cnn_tensor_f32(dst) + to;
        const float *b = cnn_tensor_f32(cs) + from;
        for (int64_t i = 0; i < inner; i++) a[i] += b[i];
      } else if (out->dtype == CNN_UINT8) {
        uint8_t *a = cnn_tensor_u8(dst) + to;
        const uint8_t *b = cnn_tensor_u8(cs) + from;
        for (int64_t i = 0; i < inner; i++) a[i] = (uint8_t)(a[i] + b[i]);
      } else if (out->dtype == CNN_BOOL) {
        uint8_t *a = cnn_tensor_u8(dst) + to;
        const uint8_t *b = cnn_tensor_u8(cs) + from;
        for (int64_t i = 0; i < inner; i++) a[i] |= b[i];
      } else {
        int64_t *a = cnn_tensor_i64(dst) + to;
        const int64_t *b = cnn_tensor_i64(cs) + from;
        for (int64_t i = 0; i < inner; i++) a[i] = (int64_t)((uint64_t)a[i] + (uint64_t)b[i]);
      }
    }
  }
  int rc = dst == out ? 0 : cnn_tensor_copy_(out, dst);
  cnn_tensor_release(dst);
  cnn_tensor_release(cs);
  return rc;
}

int cnn_join_index_copy_(cnn_tensor *out, int dim, const cnn_tensor *idx, const cnn_tensor *src) {
  char so[256], ss[256];
  int d = cnn_dim_wrap(dim, out->ndim);
  if (d < 0) return -1;
  if (out->ndim == 0) return cnn_error_set("cannot copy rows into a 0-d tensor");
  if (check_index(idx, d, out->size[d])) return -1;
  int64_t nidx = cnn_tensor_numel(idx), istep = idx->ndim ? idx->stride[0] : 0;
  int64_t want[CNN_MAX_DIMS];
  memcpy(want, out->size, sizeof want);
  want[d] = nidx;
  bool ok = src->ndim == out->ndim;
  for (int k = 0; ok && k < out->ndim; k++) ok = src->size[k] == want[k];
  if (!ok)
    return cnn_error_set("expected a source of shape %s but got %s", cnn_shape_str(out->ndim, want, so, sizeof so),
                         cnn_shape_str(src->ndim, src->size, ss, sizeof ss));
  for (int k = 0; k < out->ndim; k++)
    if (out->size[k] > 1 && out->stride[k] == 0)
      return cnn_error_set("cannot write into an expanded tensor (several of its elements share one memory location)");
  /* dst (outer, S, inner) rows idx <- src (outer, nidx, inner), both contiguous and of out's dtype */
  cnn_tensor *dst = cnn_tensor_is_contiguous(out) ? cnn_tensor_retain(out) : cnn_tensor_clone(out);
  cnn_tensor *cs = NULL;
  if (dst) cs = src->dtype == out->dtype ? cnn_tensor_contiguous(src) : cnn_tensor_to_dtype(src, out->dtype);
  if (!cs) {
    cnn_tensor_release(dst);
    return -1;
  }
  int64_t outer, inner, S = out->size[d];
  split_at(out, d, &outer, &inner);
  size_t bytes = (size_t)inner * cnn_dtype_size(out->dtype);
  const int64_t *pi = cnn_tensor_i64(idx);
  char *pd = cnn_tensor_data(dst);
  const char *ps = cnn_tensor_data(cs);
  if (bytes > 0)
    for (int64_t o = 0; o < outer; o++)
      for (int64_t j = 0; j < nidx; j++)
        memcpy(pd + (size_t)(o * S + pi[j * istep]) * bytes, ps + (size_t)(o * nidx + j) * bytes, bytes);
  int rc = dst == out ? 0 : cnn_tensor_copy_(out, dst);
  cnn_tensor_release(dst);
  cnn_tensor_release(cs);
  return rc;
}

cnn_tensor *cnn_join_nonzero(const cnn_tensor *t) {
  int64_t numel = cnn_tensor_numel(t), count = 0;
  cnn_tensor *b = cnn_tensor_to_dtype(t, CNN_BOOL); /* nonzero (NaN included) -> 1 */
  cnn_tensor *c = b ? cnn_tensor_contiguous(b) : NULL;
  cnn_tensor_release(b);
  if (!c) return NULL;
  const uint8_t *p = cnn_tensor_u8(c);
  for (int64_t i = 0; i < numel; i++) count += p[i];
  int64_t size[2] = {count, t->ndim};
  cnn_tensor *out = cnn_tensor_empty(CNN_INT64, 2, size);
  if (out) {
    int64_t *o = cnn_tensor_i64(out), at[CNN_MAX_DIMS] = {0};
    for (int64_t i = 0; i < numel; i++) {
      if (p[i]) {
        memcpy(o, at, sizeof(int64_t) * (size_t)t->ndim);
        o += t->ndim;
      }
      for (int k = t->ndim - 1; k >= 0; k--) { /* the next row-major multi-index */
        if (++at[k] < t->size[k]) break;
        at[k] = 0;
      }
    }
  }
  cnn_tensor_release(c);
  return out;
}

/* ---- gather, scatter, cumsum and sort along one dimension ----
 * A 0-d tensor acts as a 1-d tensor of size 1 (PyTorch's rule for these ops). Positions are walked
 * in row-major order of the index tensor: a counter over all dims but the last, the last in an
 * inner loop, the offset into each operand kept from its own strides (any view works). */

typedef struct dimview {
  int nd;
  int64_t size[CNN_MAX_DIMS], stride[CNN_MAX_DIMS];
} dimview;

static dimview dims_of(const cnn_tensor *t) {
  dimview v = {t->ndim ? t->ndim : 1, {1}, {1}};
  for (int d = 0; d < t->ndim; d++) v.size[d] = t->size[d], v.stride[d] = t->stride[d];
  return v;
}

static int64_t count_of(const dimview *v) {
  int64_t n = 1;
  for (int d = 0; d < v->nd; d++) n *= v->size[d];
  return n;
}

/* Checks idx against the tensor of view tv for dimension d: int64, the same number of dims, sizes
 * at most tv's on the other dims (and at most sv's on every dim when sv is given), every entry in
 * [0, tv.size[d]). */
static int check_gather_index(const cnn_tensor *t, const cnn_tensor *idx, const cnn_tensor *src, int d) {
  if (idx->dtype != CNN_INT64)
    return cnn_error_set("index must be an int64 tensor, got %s", cnn_dtype_name(idx->dtype));
  if (idx->ndim != t->ndim) return cnn_error_set("index has %d dimensions but the input has %d", idx->ndim, t->ndim);
  if (src && src->ndim != t->ndim)
    return cnn_error_set("src has %d dimensions but the input has %d", src->ndim, t->ndim);
  if (src && src->dtype != t->dtype)
    return cnn_error_set("src has dtype %s but the input has %s (they must match)", cnn_dtype_name(src->dtype),
                         cnn_dtype_name(t->dtype));
  dimview tv = dims_of(t), iv = dims_of(idx);
  for (int k = 0; k < tv.nd; k++) {
    if (k != d && iv.size[k] > tv.size[k])
      return cnn_error_set("index has size %lld at dimension %d but the input only %lld", (long long)iv.size[k], k + 1,
                           (long long)tv.size[k]);
    if (src && t->ndim && iv.size[k] > src->size[k])
      return cnn_error_set("index has size %lld at dimension %d but src only %lld", (long long)iv.size[k], k + 1,
                           (long long)src->size[k]);
  }
  /* the entries: one walk over idx */
  int64_t n = count_of(&iv), last = iv.size[iv.nd - 1], c[CNN_MAX_DIMS] = {0}, S = tv.size[d];
  if (n == 0) return 0;
  const int64_t *pi = cnn_tensor_i64(idx);
  for (int64_t done = 0; done < n; done += last) {
    int64_t off = 0;
    for (int k = 0; k < iv.nd - 1; k++) off += c[k] * iv.stride[k];
    for (int64_t j = 0; j < last; j++) {
      int64_t v = pi[off + j * iv.stride[iv.nd - 1]];
      if (v < 0 || v >= S)
        return cnn_error_set("index %lld is out of range for dimension %d of size %lld", (long long)((uint64_t)v + 1),
                             d + 1, (long long)S);
    }
    for (int k = iv.nd - 2; k >= 0 && ++c[k] == iv.size[k]; k--) c[k] = 0;
  }
  return 0;
}

/* out[p] = in[p with its dim-d coordinate replaced by idx[p]] (gather; out has idx's shape,
 * contiguous), or out[p with its dim-d coordinate replaced by idx[p]] (+)= in[p] (scatter; out
 * any strides, in src). Indices already checked. */
static void walk_index(char *po, const dimview *ov, const char *pin, const dimview *inv, const int64_t *pi,
                       const dimview *iv, int d, bool scatter, bool add, cnn_dtype dt) {
  size_t es = cnn_dtype_size(dt);
  int nd = iv->nd, L = nd - 1;
  int64_t n = count_of(iv), last = iv->size[L], c[CNN_MAX_DIMS] = {0};
  /* the side that is indexed (t for gather, out for scatter) and the side walked in step with idx */
  const dimview *xv = scatter ? ov : inv, *wv = scatter ? inv : ov;
  for (int64_t done = 0; done < n; done += last) {
    int64_t xo = 0, wo = 0, io = 0;
    for (int k = 0; k < L; k++) {
      io += c[k] * iv->stride[k];
      wo += c[k] * wv->stride[k];
      if (k != d) xo += c[k] * xv->stride[k];
    }
    int64_t xstep = L == d ? 0 : xv->stride[L], xdim = xv->stride[d], wstep = wv->stride[L], istep = iv->stride[L];
    const int64_t *ip = pi + io;
    /* one loop per element type: x the indexed side's offset, w the walked side's */
#define WALK(T, BODY)                                                        \
  do {                                                                       \
    T *o_ = (T *)po;                                                         \
    const T *i_ = (const T *)pin;                                            \
    for (int64_t j = 0; j < last; j++) {                                     \
      int64_t x = xo + j * xstep + ip[j * istep] * xdim, w = wo + j * wstep; \
      BODY;                                                                  \
    }                                                                        \
  } while (0)
    if (!scatter) {
      if (es == 4) WALK(uint32_t, o_[w] = i_[x]);
      else if (es == 8) WALK(uint64_t, o_[w] = i_[x]);
      else WALK(uint8_t, o_[w] = i_[x]);
    } else if (!add) {
      if (es == 4) WALK(uint32_t, o_[x] = i_[w]);
      else if (es == 8) WALK(uint64_t, o_[x] = i_[w]);
      else WALK(uint8_t, o_[x] = i_[w]);
    } else if (dt == CNN_FLOAT32) {
      WALK(float, o_[x] += i_[w]);
    } else if (dt == CNN_INT64) {
      WALK(uint64_t, o_[x] += i_[w]); /* unsigned: wraps as PyTorch's int64 does, without UB */
    } else if (dt == CNN_BOOL) {
      WALK(uint8_t, o_[x] |= i_[w]);
    } else {
      WALK(uint8_t, o_[x] = (uint8_t)(o_[x] + i_[w]));
    }
#undef WALK
    for (int k = L - 1; k >= 0 && ++c[k] == iv->size[k]; k--) c[k] = 0;
  }
}

cnn_tensor *cnn_join_gather(const cnn_tensor *t, int dim, const cnn_tensor *idx) {
  int d = cnn_dim_wrap(dim, t->ndim ? t->ndim : 1);
  if (d < 0 || check_gather_index(t, idx, NULL, d)) return NULL;
  cnn_tensor *out = cnn_tensor_empty(t->dtype, idx->ndim, idx->size);
  if (!out || cnn_tensor_numel(out) == 0) return out;
  dimview tv = dims_of(t), iv = dims_of(idx), ov = dims_of(out);
  walk_index(cnn_tensor_data(out), &ov, cnn_tensor_data(t), &tv, cnn_tensor_i64(idx), &iv, d, false, false, t->dtype);
  return out;
}

cnn_tensor *cnn_join_scatter(const cnn_tensor *t, int dim, const cnn_tensor *idx, const cnn_tensor *src, bool add) {
  int d = cnn_dim_wrap(dim, t->ndim ? t->ndim : 1);
  if (d < 0 || check_gather_index(t, idx, src, d)) return NULL;
  cnn_tensor *out = cnn_tensor_clone(t);
  if (!out || cnn_tensor_numel(idx) == 0) return out;
  dimview ov = dims_of(out), sv = dims_of(src), iv = dims_of(idx);
  walk_index(cnn_tensor_data(out), &ov, cnn_tensor_data(src), &sv, cnn_tensor_i64(idx), &iv, d, true, add, t->dtype);
  return out;
}

cnn_tensor *cnn_join_cumsum(const cnn_tensor *t, int dim, bool reverse) {
  int d = cnn_dim_wrap(dim, t->ndim ? t->ndim : 1);
  if (d < 0) return NULL;
  cnn_dtype dt = t->dtype == CNN_FLOAT32 ? CNN_FLOAT32 : CNN_INT64; /* bool and uint8 sum as int64 */
  cnn_tensor *x = cnn_tensor_to_dtype(t, dt);
  cnn_tensor *src = x ? cnn_tensor_contiguous(x) : NULL; /* read from src, written into out */
  cnn_tensor_release(x);
  cnn_tensor *out = src ? cnn_tensor_empty(dt, t->ndim, t->size) : NULL;
  if (!out || cnn_tensor_numel(out) == 0) {
    cnn_tensor_release(src);
    return out;
  }
  /* (outer, n, inner), summed along n; float32 accumulates in double, as PyTorch */
  int64_t outer = 1, inner = 1, n = 1;
  if (t->ndim) split_at(out, d, &outer, &inner), n = out->size[d];
  double *acc = NULL;
  if (dt == CNN_FLOAT32 && inner > 1 && !(acc = cnn_alloc((size_t)inner * sizeof *acc))) {
    cnn_tensor_release(src);
    cnn_tensor_release(out);
    return NULL;
  }
  int64_t step = reverse ? -inner : inner, first = reverse ? (n - 1) * inner : 0;
  for (int64_t o = 0; o < outer; o++) {
    if (dt == CNN_FLOAT32) {
      const float *p = cnn_tensor_f32(src) + o * n * inner + first;
      float *q = cnn_tensor_f32(out) + o * n * inner + first;
      if (inner == 1) {
        double a = 0;
        for (int64_t s = 0; s < n; s++) q[s * step] = (float)(a += p[s * step]);
        continue;
      }
      for (int64_t k = 0; k < inner; k++) acc[k] = 0;
      for (int64_t s = 0; s < n; s++, p += step, q += step)
        for (int64_t k = 0; k < inner; k++) q[k] = (float)(acc[k] += p[k]);
    } else {
      const uint64_t *p = (const uint64_t *)cnn_tensor_i64(src) + o * n * inner + first;
      uint64_t *q = (uint64_t *)cnn_tensor_i64(out) + o * n * inner + first; /* unsigned: wraps */
      for (int64_t k = 0; k < inner; k++) q[k] = p[k];
      for (int64_t s = 1; s < n; s++)
        for (int64_t k = 0; k < inner; k++) q[s * step + k] = q[(s - 1) * step + k] + p[s * step + k];
    }
  }
  if (acc) cnn_free(acc, (size_t)inner * sizeof *acc);
  cnn_tensor_release(src);
  return out;
}

/* A sort key: the element mapped to an unsigned integer of the same order, in as many bytes as
 * the dtype has (float32: sign flipped, negatives' bits inverted, -0 as +0, every NaN above +inf;
 * int64: offset by 2^63), inverted for descending (NaN then first, as PyTorch); and its position
 * in the row. */
typedef struct sort_item {
  uint64_t key;
  int64_t pos;
} sort_item;

static uint64_t sort_key(const char *e, cnn_dtype dt) {
  if (dt == CNN_FLOAT32) {
    float f = *(const float *)e;
    if (f != f) return UINT32_MAX;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if (u == 0x80000000u) u = 0; /* -0 == +0: one key, so they keep their order */
    return (u & 0x80000000u) ? (uint32_t)~u : u | 0x80000000u;
  }
  if (dt == CNN_INT64) return (uint64_t) * (const int64_t *)e ^ (UINT64_C(1) << 63);
  return *(const uint8_t *)e;
}

/* Stable LSD radix sort of a[0..n) by the low `bytes` bytes of key (at most: only those the keys'
 * range needs), one counting pass per byte (skipped when every key has the same byte there), tmp
 * as scratch (n); an insertion sort for short rows. Keys are clobbered. Returns where the sorted
 * items are: a or tmp. */
static sort_item *radix_sort(sort_item *a, sort_item *tmp, int64_t n, int bytes) {
  if (n <= 32) { /* short rows: a stable insertion sort costs less than the 256-entry counts */
    for (int64_t i = 1; i < n; i++) {
      sort_item v = a[i];
      int64_t j = i;
      for (; j > 0 && a[j - 1].key > v.key; j--) a[j] = a[j - 1];
      a[j] = v;
    }
    return a;
  }
  uint64_t lo = a[0].key, hi = a[0].key; /* keys as offsets from the smallest: fewer bytes to sort */
  for (int64_t i = 1; i < n; i++) lo = a[i].key < lo ? a[i].key : lo, hi = a[i].key > hi ? a[i].key : hi;
  for (int64_t i = 0; i < n; i++) a[i].key -= lo;
  while (bytes > 0 && ((hi - lo) >> (8 * (bytes - 1))) == 0) bytes--;
  for (int b = 0; b < bytes; b++) {
    int64_t count[257] = {0};
    const int shift = 8 * b;
    for (int64_t i = 0; i < n; i++) count[((a[i].key >> shift) & 255) + 1]++;
    if (count[((a[0].key >> shift) & 255) + 1] == n) continue;
    for (int k = 1; k < 257; k++) count[k] += count[k - 1]; /* count[byte]: where its run starts */
    for (int64_t i = 0; i < n; i++) tmp[count[(a[i].key >> shift) & 255]++] = a[i];
    sort_item *t = a;
    a = tmp, tmp = t;
  }
  return a;
}

static void free_sort_scratch(sort_item *items, int64_t n) {
  if (items) cnn_free(items, 2 * (size_t)n * sizeof *items);
}

/* (key, pos) pairs in sort order: the sort is stable, so ties go by position */
static inline bool item_before(sort_item a, sort_item b) { return a.key < b.key || (a.key == b.key && a.pos < b.pos); }

/* h[0..m) a max-heap by item_before (its root the last in sort order): restores it below i */
static void heap_down(sort_item *h, int64_t m, int64_t i) {
  for (;;) {
    int64_t l = 2 * i + 1, r = l + 1, top = i;
    if (l < m && item_before(h[top], h[l])) top = l;
    if (r < m && item_before(h[top], h[r])) top = r;
    if (top == i) return;
    sort_item s = h[i];
    h[i] = h[top], h[top] = s;
    i = top;
  }
}

/* The k first items in sort order of the row's n keys, in order, into h (k): a heap of the best k
 * so far, whose root (the worst of them) a later item replaces only with a smaller key (its
 * position is larger: a tie keeps the earlier), then the heap taken apart from the back. */
static void heap_select(sort_item *h, const char *row, int64_t stride, int64_t es, cnn_dtype dt, uint64_t flip,
                        int64_t n, int64_t k) {
  for (int64_t j = 0; j < k; j++) h[j] = (sort_item){sort_key(row + j * stride * es, dt) ^ flip, j};
  for (int64_t i = k / 2 - 1; i >= 0; i--) heap_down(h, k, i);
  for (int64_t j = k; j < n; j++) {
    uint64_t key = sort_key(row + j * stride * es, dt) ^ flip;
    if (key < h[0].key) {
      h[0] = (sort_item){key, j};
      heap_down(h, k, 0);
    }
  }
  for (int64_t m = k - 1; m > 0; m--) {
    sort_item s = h[0];
    h[0] = h[m], h[m] = s;
    heap_down(h, m, 0);
  }
}

cnn_tensor *cnn_join_topk(const cnn_tensor *t, int dim, int64_t k, bool largest) {
  int d = cnn_dim_wrap(dim, t->ndim ? t->ndim : 1);
  if (d < 0) return NULL;
  const int64_t n = t->ndim ? t->size[d] : 1;
  if (k < 0 || k > n) {
    cnn_error_set("k must be within 0..%lld, got %lld", (long long)n, (long long)k);
    return NULL;
  }
  /* a large share of the row: the radix sort is linear, the heap n log k */
  if (t->ndim == 0 || (k > 64 && k * 16 > n)) {
    cnn_tensor *all = cnn_join_sort(t, dim, largest);
    cnn_tensor *first = all ? cnn_tensor_narrow(all, d, 0, k) : NULL;
    cnn_tensor *out = first ? cnn_tensor_contiguous(first) : NULL;
    cnn_tensor_release(first);
    cnn_tensor_release(all);
    return out;
  }
  int64_t size[CNN_MAX_DIMS];
  memcpy(size, t->size, sizeof(int64_t) * (size_t)t->ndim);
  size[d] = k;
  cnn_tensor *out = cnn_tensor_empty(CNN_INT64, t->ndim, size);
  if (!out || cnn_tensor_numel(out) == 0 || n == 0) return out;
  dimview tv = dims_of(t), ov = dims_of(out);
  int64_t rows = count_of(&tv) / n, c[CNN_MAX_DIMS] = {0};
  sort_item *h = cnn_alloc((size_t)k * sizeof *h);
  if (!h) {
    cnn_tensor_release(out);
    return NULL;
  }
  const int bytes = t->dtype == CNN_FLOAT32 ? 4 : t->dtype == CNN_INT64 ? 8 : 1;
  const uint64_t flip = !largest ? 0 : bytes == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * bytes)) - 1;
  const char *pt = cnn_tensor_data(t);
  int64_t *po = cnn_tensor_i64(out), es = (int64_t)cnn_dtype_size(t->dtype);
  for (int64_t r = 0; r < rows; r++) { /* c: the row's coordinates on the dims other than d */
    int64_t to = 0, oo = 0;
    for (int q = 0; q < tv.nd; q++) to += c[q] * tv.stride[q], oo += c[q] * ov.stride[q];
    heap_select(h, pt + to * es, tv.stride[d], es, t->dtype, flip, n, k);
    for (int64_t j = 0; j < k; j++) po[oo + j * ov.stride[d]] = h[j].pos;
    for (int q = tv.nd - 1; q >= 0; q--) {
      if (q == d) continue;
      if (++c[q] < tv.size[q]) break;
      c[q] = 0;
    }
  }
  cnn_free(h, (size_t)k * sizeof *h);
  return out;
}

cnn_tensor *cnn_join_sort(const cnn_tensor *t, int dim, bool descending) {
  int d = cnn_dim_wrap(dim, t->ndim ? t->ndim : 1);
  if (d < 0) return NULL;
  cnn_tensor *out = cnn_tensor_empty(CNN_INT64, t->ndim, t->size);
  if (!out || cnn_tensor_numel(out) == 0) return out;
  dimview tv = dims_of(t), ov = dims_of(out);
  int64_t n = tv.size[d], rows = count_of(&tv) / n, c[CNN_MAX_DIMS] = {0};
  sort_item *items = cnn_alloc(2 * (size_t)n * sizeof *items); /* the row, then merge scratch */
  if (!items) {
    cnn_tensor_release(out);
    return NULL;
  }
  const int bytes = t->dtype == CNN_FLOAT32 ? 4 : t->dtype == CNN_INT64 ? 8 : 1;
  const char *pt = cnn_tensor_data(t);
  int64_t *po = cnn_tensor_i64(out), es = (int64_t)cnn_dtype_size(t->dtype);
  uint64_t flip = !descending ? 0 : bytes == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * bytes)) - 1;
  for (int64_t r = 0; r < rows; r++) { /* c: the row's coordinates on the dims other than d */
    int64_t to = 0, oo = 0;
    for (int k = 0; k < tv.nd; k++) to += c[k] * tv.stride[k], oo += c[k] * ov.stride[k];
    for (int64_t j = 0; j < n; j++)
      items[j] = (sort_item){sort_key(pt + (to + j * tv.stride[d]) * es, t->dtype) ^ flip, j};
    const sort_item *sorted = radix_sort(items, items + n, n, bytes);
    for (int64_t j = 0; j < n; j++) po[oo + j * ov.stride[d]] = sorted[j].pos;
    for (int k = tv.nd - 1; k >= 0; k--) {
      if (k == d) continue;
      if (++c[k] < tv.size[k]) break;
      c[k] = 0;
    }
  }
  free_sort_scratch(items, n);
  return out;
}
