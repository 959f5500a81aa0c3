/* Differentiable views and copies (see ops.h). A view's backward writes the output gradient into
 * the matching view of a zero gradient of the input's shape, or reshapes it; the engine knows each
 * input's shape from its edge, so nodes here save only their indices. */
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "core/iter.h"
#include "cnn/join.h"
#include "cnn/ops.h"
#include "scratch.h"

#include <string.h>

/* One backward per kind of view, each with the state it needs; the input's shape is its edge's. */

/* the gradient of a view of part of the input: zeros of the input's shape, g written into the part */
typedef struct part_state {
  int dim;
  int64_t start, length; /* select: start is the index (0-based) and length 0 */
} part_state;

static int part_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin, bool select) {
  cnn_tensor *g = gout[0];
  if (!g) return 0;
  const cnn_edge *e = &n->edges[0];
  const part_state *st = cnn_ag_state(n);
  scratch s = {0};
  cnn_tensor *r = sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, e->ndim, e->size));
  cnn_tensor *part = !r       ? NULL
                     : select ? sc_keep(&s, cnn_tensor_select(r, st->dim, st->start))
                              : sc_keep(&s, cnn_tensor_narrow(r, st->dim, st->start, st->length));
  if (part && cnn_tensor_copy_(part, g)) s.failed = true;
  gin[0] = sc_result(&s, r);
  return gin[0] ? 0 : -1;
}

static int select_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  return part_backward(n, gout, gin, true);
}

static int narrow_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  return part_backward(n, gout, gin, false);
}

typedef struct transpose_state {
  int d0, d1; /* wrapped */
} transpose_state;

static int transpose_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  const transpose_state *st = cnn_ag_state(n);
  if (gout[0] && !(gin[0] = cnn_tensor_transpose(gout[0], st->d0, st->d1))) return -1;
  return 0;
}

typedef struct permute_state {
  int inverse[CNN_MAX_DIMS]; /* the permutation that undoes the forward's */
} permute_state;

static int permute_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  const permute_state *st = cnn_ag_state(n);
  if (gout[0] && !(gin[0] = cnn_tensor_permute(gout[0], st->inverse))) return -1;
  return 0;
}

/* view, reshape, squeeze, unsqueeze: g reshaped to the input's shape */
static int reshape_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  const cnn_edge *e = &n->edges[0];
  if (gout[0] && !(gin[0] = cnn_tensor_reshape(gout[0], e->ndim, e->size))) return -1;
  return 0;
}

/* expand (the engine sums the broadcast gradient back to the input's shape), clone, contiguous,
 * the conversion to float32: g itself */
static int pass_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  (void)n;
  gin[0] = cnn_tensor_retain(gout[0]);
  return 0;
}

typedef struct index_state {
  int dim; /* wrapped */
} index_state;

/* saved: the indices */
static int index_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *g = gout[0], *idx;
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &idx)) return -1;
  const cnn_edge *e = &n->edges[0];
  cnn_tensor *r = cnn_tensor_zeros(CNN_FLOAT32, e->ndim, e->size);
  if (r && cnn_join_index_add_(r, ((const index_state *)cnn_ag_state(n))->dim, idx, g)) {
    cnn_tensor_release(r);
    r = NULL;
  }
  gin[0] = r;
  return r ? 0 : -1;
}

static const cnn_ag_op select_op = {"SelectBackward", select_backward, sizeof(part_state), NULL};
static const cnn_ag_op narrow_op = {"NarrowBackward", narrow_backward, sizeof(part_state), NULL};
static const cnn_ag_op transpose_op = {"TransposeBackward", transpose_backward, sizeof(transpose_state), NULL};
static const cnn_ag_op permute_op = {"PermuteBackward", permute_backward, sizeof(permute_state), NULL};
static const cnn_ag_op view_op = {"ViewBackward", reshape_backward, 0, NULL};
static const cnn_ag_op expand_op = {"ExpandBackward", pass_backward, 0, NULL};
static const cnn_ag_op clone_op = {"CloneBackward", pass_backward, 0, NULL};
static const cnn_ag_op to_float_op = {"ToCopyBackward", pass_backward, 0, NULL};
static const cnn_ag_op index_op = {"IndexSelectBackward", index_backward, sizeof(index_state), NULL};

/* out, a view or copy of t, recorded as op with state */
static cnn_tensor *viewed(cnn_tensor *out, const cnn_tensor *t, const cnn_ag_op *op, const void *state) {
  const cnn_tensor *in[1] = {t};
  return cnn_ag_record(out, op, state, 1, in, 0, NULL) ? NULL : out;
}

cnn_tensor *cnn_op_select(const cnn_tensor *t, int dim, int64_t index) {
  cnn_tensor *out = cnn_tensor_select(t, dim, index);
  if (!out) return NULL;
  int d = cnn_dim_wrap(dim, t->ndim);
  part_state st = {d, index < 0 ? index + t->size[d] : index, 0};
  return viewed(out, t, &select_op, &st);
}

cnn_tensor *cnn_op_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length) {
  cnn_tensor *out = cnn_tensor_narrow(t, dim, start, length);
  if (!out) return NULL;
  int d = cnn_dim_wrap(dim, t->ndim);
  part_state st = {d, start < 0 ? start + t->size[d] : start, length};
  return viewed(out, t, &narrow_op, &st);
}

cnn_tensor *cnn_op_transpose(const cnn_tensor *t, int d0, int d1) {
  cnn_tensor *out = cnn_tensor_transpose(t, d0, d1);
  if (!out) return NULL;
  transpose_state st = {cnn_dim_wrap(d0, t->ndim), cnn_dim_wrap(d1, t->ndim)};
  return viewed(out, t, &transpose_op, &st);
}

cnn_tensor *cnn_op_permute(const cnn_tensor *t, const int *dims) {
  cnn_tensor *out = cnn_tensor_permute(t, dims);
  if (!out) return NULL;
  permute_state st;
  for (int k = 0; k < t->ndim; k++) st.inverse[cnn_dim_wrap(dims[k], t->ndim)] = k;
  return viewed(out, t, &permute_op, &st);
}

cnn_tensor *cnn_op_unsqueeze(const cnn_tensor *t, int dim) {
  return viewed(cnn_tensor_unsqueeze(t, dim), t, &view_op, NULL);
}

cnn_tensor *cnn_op_squeeze(const cnn_tensor *t, int dim) {
  return viewed(cnn_tensor_squeeze(t, dim), t, &view_op, NULL);
}

cnn_tensor *cnn_op_expand(const cnn_tensor *t, int ndim, const int64_t *size) {
  return viewed(cnn_tensor_expand(t, ndim, size), t, &expand_op, NULL);
}

cnn_tensor *cnn_op_view(const cnn_tensor *t, int ndim, const int64_t *size) {
  return viewed(cnn_tensor_view(t, ndim, size), t, &view_op, NULL);
}

cnn_tensor *cnn_op_reshape(const cnn_tensor *t, int ndim, const int64_t *size) {
  return viewed(cnn_tensor_reshape(t, ndim, size), t, &view_op, NULL);
}

cnn_tensor *cnn_op_flatten(const cnn_tensor *t, int start_dim, int end_dim) {
  if (t->ndim == 0) return cnn_op_reshape(t, 1, (int64_t[]){1});
  int s = cnn_dim_wrap(start_dim, t->ndim);
  if (s < 0) return NULL;
  int e = cnn_dim_wrap(end_dim, t->ndim);
  if (e < 0) return NULL;
  if (s > e) {
    cnn_error_set("start dimension %d comes after end dimension %d", s + 1, e + 1);
    return NULL;
  }
  int64_t size[CNN_MAX_DIMS];
  int n = 0;
  for (int d = 0; d < s; d++) size[n++] = t->size[d];
  int64_t m = 1;
  for (int d = s; d <= e; d++) m *= t->size[d];
  size[n++] = m;
  for (int d = e + 1; d < t->ndim; d++) size[n++] = t->size[d];
  return cnn_op_reshape(t, n, size);
}

cnn_tensor *cnn_op_contiguous(const cnn_tensor *t) {
  cnn_tensor *out = cnn_tensor_contiguous(t);
  if (out == t) return out; /* same tensor, same history */
  return viewed(out, t, &clone_op, NULL);
}

cnn_tensor *cnn_op_clone(const cnn_tensor *t) { return viewed(cnn_tensor_clone(t), t, &clone_op, NULL); }

cnn_tensor *cnn_op_to_dtype(const cnn_tensor *t, cnn_dtype dt) {
  cnn_tensor *out = cnn_tensor_to_dtype(t, dt);
  if (!out || out == t || dt != CNN_FLOAT32) return out; /* int64 results carry no gradient */
  return viewed(out, t, &to_float_op, NULL);
}

cnn_tensor *cnn_op_index_select(const cnn_tensor *t, int dim, const cnn_tensor *idx) {
  cnn_tensor *out = cnn_join_index_select(t, dim, idx);
  const cnn_tensor *in[1] = {t};
  index_state st = {out ? cnn_dim_wrap(dim, t->ndim) : 0};
  return cnn_ag_record(out, &index_op, &st, 1, in, 1, &idx) ? NULL : out;
}

/* ---- cat / stack: one node over n inputs; each input's extent comes from its edge ---- */

typedef struct join_state {
  int dim; /* wrapped against the output */
  bool stack;
} join_state;

static int join_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *g = gout[0];
  if (!g) return 0;
  const join_state *st = cnn_ag_state(n);
  const int dim = st->dim;
  const bool stack = st->stack;
  int64_t start = 0;
  for (int i = 0; i < n->n_inputs; i++) {
    const cnn_edge *e = &n->edges[i];
    if (!stack && e->ndim == 1 && e->size[0] == 0) { /* skipped by cat: an empty gradient */
      if (cnn_node_needs_grad(n, i) && !(gin[i] = cnn_tensor_empty(CNN_FLOAT32, 1, e->size))) return -1;
      continue;
    }
    int64_t len = stack ? 1 : e->size[dim];
    if (cnn_node_needs_grad(n, i)) {
      gin[i] = stack ? cnn_tensor_select(g, dim, start) : cnn_tensor_narrow(g, dim, start, len);
      if (!gin[i]) return -1;
    }
    start += len;
  }
  return 0;
}

static cnn_tensor *join(bool stack, int n, const cnn_tensor *const *ts, int dim) {
  if (n <= 0) {
    cnn_error_set("expected a non-empty list of tensors");
    return NULL;
  }
  static const cnn_ag_op cat_op = {"CatBackward", join_backward, sizeof(join_state), NULL};
  static const cnn_ag_op stack_op = {"StackBackward", join_backward, sizeof(join_state), NULL};
  cnn_tensor *out = stack ? cnn_join_stack(n, ts, dim) : cnn_join_cat(n, ts, dim);
  join_state st = {out ? cnn_dim_wrap(dim, stack ? ts[0]->ndim + 1 : out->ndim) : 0, stack};
  return cnn_ag_record(out, stack ? &stack_op : &cat_op, &st, n, ts, 0, NULL) ? NULL : out;
}

cnn_tensor *cnn_op_cat(int n, const cnn_tensor *const *ts, int dim) { return join(false, n, ts, dim); }

cnn_tensor *cnn_op_stack(int n, const cnn_tensor *const *ts, int dim) { return join(true, n, ts, dim); }

/* ---- boolean masks ---- */

/* Checks a mask for t: bool (or uint8), its shape t's leading dims. */
static int check_mask(const cnn_tensor *t, const cnn_tensor *mask) {
  char b1[256], b2[256];
  if (mask->dtype != CNN_BOOL && mask->dtype != CNN_UINT8)
    return cnn_error_set("a mask must be a bool tensor, got %s", cnn_dtype_name(mask->dtype));
  bool ok = mask->ndim <= t->ndim;
  for (int d = 0; ok && d < mask->ndim; d++) ok = mask->size[d] == t->size[d];
  if (!ok)
    return cnn_error_set("a mask of shape %s does not match the leading dimensions of the tensor's shape %s",
                         cnn_shape_str(mask->ndim, mask->size, b1, sizeof b1),
                         cnn_shape_str(t->ndim, t->size, b2, sizeof b2));
  return 0;
}

/* t as (mask's numel, t's trailing sizes...) through the op (a view when the strides allow), and
 * the 1-d 0-based indices of the mask's true elements. New references, or -1 with the error set. */
static int mask_rows(const cnn_tensor *t, const cnn_tensor *mask, bool record, cnn_tensor **rows, cnn_tensor **idx) {
  int64_t size[CNN_MAX_DIMS], n = cnn_tensor_numel(mask);
  int nd = 1 + t->ndim - mask->ndim;
  size[0] = n;
  for (int d = mask->ndim; d < t->ndim; d++) size[1 + d - mask->ndim] = t->size[d];
  cnn_tensor *flat = cnn_tensor_reshape(mask, 1, &n);
  cnn_tensor *nz = flat ? cnn_join_nonzero(flat) : NULL; /* (count, 1) */
  int64_t count = nz ? nz->size[0] : 0;
  *idx = nz ? cnn_tensor_view(nz, 1, &count) : NULL;
  *rows = *idx ? (record ? cnn_op_reshape(t, nd, size) : cnn_tensor_view(t, nd, size)) : NULL;
  cnn_tensor_release(flat);
  cnn_tensor_release(nz);
  if (*rows) return 0;
  cnn_tensor_release(*idx);
  *idx = NULL;
  return -1;
}

cnn_tensor *cnn_op_mask_select(const cnn_tensor *t, const cnn_tensor *mask) {
  if (check_mask(t, mask)) return NULL;
  cnn_tensor *rows, *idx;
  if (mask_rows(t, mask, true, &rows, &idx)) return NULL;
  cnn_tensor *out = cnn_op_index_select(rows, 0, idx);
  cnn_tensor_release(rows);
  cnn_tensor_release(idx);
  return out;
}

int cnn_op_mask_put_(cnn_tensor *t, const cnn_tensor *mask, const cnn_tensor *src) {
  if (cnn_op_rebases(t, NULL) && !cnn_ag_requires(src)) { /* t has history: the write recorded */
    if (check_mask(t, mask) || cnn_op_rebase_check(t)) return -1;
    cnn_tensor *written = cnn_tensor_zeros(CNN_BOOL, t->ndim, t->size);
    cnn_tensor *vals = written ? cnn_tensor_zeros(t->dtype, t->ndim, t->size) : NULL;
    cnn_tensor *yes = vals ? cnn_tensor_scalar(CNN_BOOL, 1) : NULL;
    int rc = yes && cnn_op_mask_put_(written, mask, yes) == 0 && cnn_op_mask_put_(vals, mask, src) == 0
                 ? cnn_op_rebase_write(t, written, vals)
                 : -1;
    cnn_tensor_release(yes);
    cnn_tensor_release(vals);
    cnn_tensor_release(written);
    return rc;
  }
  if (cnn_op_check_inplace(t) || check_mask(t, mask)) return -1;
  /* t's rows: a view of t itself, or (strides that allow none) a copy written back at the end */
  int64_t n = cnn_tensor_numel(mask), size[CNN_MAX_DIMS];
  int nd = 1 + t->ndim - mask->ndim;
  size[0] = n;
  for (int d = mask->ndim; d < t->ndim; d++) size[1 + d - mask->ndim] = t->size[d];
  cnn_tensor *work = cnn_tensor_view(t, nd, size), *copy = NULL;
  if (!work) {
    cnn_error_clear();
    copy = cnn_tensor_clone(t);
    work = copy ? cnn_tensor_view(copy, nd, size) : NULL;
    if (!work) {
      cnn_tensor_release(copy);
      return -1;
    }
  }
  cnn_tensor *rows = NULL, *idx = NULL, *flat = cnn_tensor_reshape(mask, 1, &n); /* work is (n, ...) */
  int rc = flat ? mask_rows(work, flat, false, &rows, &idx) : -1;
  cnn_tensor_release(rows);
  cnn_tensor_release(flat);
  cnn_tensor *vals = NULL;
  if (rc == 0) { /* src broadcast to (count, trailing sizes...), as PyTorch's index_put */
    size[0] = idx->size[0];
    vals = cnn_tensor_expand(src, nd, size);
    if (!vals) {
      char b1[256], b2[256];
      cnn_error_set("a value of shape %s does not broadcast to the selected elements' shape %s",
                    cnn_shape_str(src->ndim, src->size, b1, sizeof b1), cnn_shape_str(nd, size, b2, sizeof b2));
    }
    rc = vals ? cnn_join_index_copy_(work, 0, idx, vals) : -1;
  }
  if (rc == 0 && copy) rc = cnn_tensor_copy_(t, copy);
  if (rc == 0) t->storage->version++;
  cnn_tensor_release(vals);
  cnn_tensor_release(idx);
  cnn_tensor_release(work);
  cnn_tensor_release(copy);
  return rc;
}