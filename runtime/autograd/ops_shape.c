/* Differentiable views and copies (see ops.h). A view's backward writes the output gradient into
 * the matching view of a zero gradient of the input's shape, or reshapes it; the engine knows each
 * input's shape from its edge, so nodes here save only their indices. */
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "cnn/join.h"
#include "cnn/ops.h"
#include "scratch.h"

#include <string.h>

enum { V_SELECT, V_NARROW, V_TRANSPOSE, V_PERMUTE, V_RESHAPE, V_EXPAND, V_IDENTITY, V_INDEX, V_TO_FLOAT };

static const char *view_name[] = {"SelectBackward",  "NarrowBackward",      "TransposeBackward",
                                  "PermuteBackward", "ViewBackward",        "ExpandBackward",
                                  "CloneBackward",   "IndexSelectBackward", "ToCopyBackward"};

/* iargs: 0 kind, 1.. op parameters */
static int view_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *g = gout[0];
  if (!g) return 0;
  const cnn_edge *e = &n->edges[0];
  scratch s = {0};
  cnn_tensor *r = NULL;
  switch ((int)n->iargs[0]) {
  case V_SELECT:
  case V_NARROW:
  case V_INDEX: {
    r = sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, e->ndim, e->size));
    if (!r) break;
    if (n->iargs[0] == V_INDEX) {
      cnn_tensor *idx;
      if (cnn_ag_saved(n, 0, &idx) || cnn_join_index_add_(r, (int)n->iargs[1], idx, g)) s.failed = true;
      break;
    }
    cnn_tensor *part = sc_keep(&s, n->iargs[0] == V_SELECT
                                       ? cnn_tensor_select(r, (int)n->iargs[1], n->iargs[2])
                                       : cnn_tensor_narrow(r, (int)n->iargs[1], n->iargs[2], n->iargs[3]));
    if (part && cnn_tensor_copy_(part, g)) s.failed = true;
    break;
  }
  case V_TRANSPOSE: r = sc_keep(&s, cnn_tensor_transpose(g, (int)n->iargs[1], (int)n->iargs[2])); break;
  case V_PERMUTE: {
    int inv[CNN_MAX_DIMS];
    for (int k = 0; k < e->ndim; k++) inv[n->iargs[1 + k / 4] >> (16 * (k % 4)) & 0xffff] = k;
    r = sc_keep(&s, cnn_tensor_permute(g, inv));
    break;
  }
  case V_RESHAPE: r = sc_keep(&s, cnn_tensor_reshape(g, e->ndim, e->size)); break;
  case V_EXPAND: /* the engine sums the broadcast gradient back to the input's shape */
  case V_IDENTITY:
  case V_TO_FLOAT: r = sc_keep(&s, cnn_tensor_retain(g)); break;
  }
  gin[0] = sc_result(&s, r);
  return gin[0] ? 0 : -1;
}

static cnn_tensor *record(cnn_tensor *out, const cnn_tensor *x, int kind, int64_t p1, int64_t p2, int64_t p3) {
  const cnn_tensor *in[1] = {x};
  if (!out || !cnn_ag_any_requires(1, in)) return out;
  cnn_node *n = cnn_ag_record(out, view_name[kind], view_backward, 1, in, 0, NULL);
  if (!n) {
    cnn_tensor_release(out);
    return NULL;
  }
  n->iargs[0] = kind;
  n->iargs[1] = p1;
  n->iargs[2] = p2;
  n->iargs[3] = p3;
  return out;
}

cnn_tensor *cnn_op_select(const cnn_tensor *t, int dim, int64_t index) {
  cnn_tensor *out = cnn_tensor_select(t, dim, index);
  if (!out) return NULL;
  int d = cnn_dim_wrap(dim, t->ndim);
  return record(out, t, V_SELECT, d, index < 0 ? index + t->size[d] : index, 0);
}

cnn_tensor *cnn_op_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length) {
  cnn_tensor *out = cnn_tensor_narrow(t, dim, start, length);
  if (!out) return NULL;
  int d = cnn_dim_wrap(dim, t->ndim);
  return record(out, t, V_NARROW, d, start < 0 ? start + t->size[d] : start, length);
}

cnn_tensor *cnn_op_transpose(const cnn_tensor *t, int d0, int d1) {
  cnn_tensor *out = cnn_tensor_transpose(t, d0, d1);
  if (!out) return NULL;
  return record(out, t, V_TRANSPOSE, cnn_dim_wrap(d0, t->ndim), cnn_dim_wrap(d1, t->ndim), 0);
}

cnn_tensor *cnn_op_permute(const cnn_tensor *t, const int *dims) {
  cnn_tensor *out = cnn_tensor_permute(t, dims);
  if (!out) return NULL;
  /* the wrapped permutation, 16 bits a dim, four dims per iarg (CNN_MAX_DIMS = 16 fits in 4) */
  int64_t packed[4] = {0};
  for (int k = 0; k < t->ndim; k++) packed[k / 4] |= (int64_t)cnn_dim_wrap(dims[k], t->ndim) << (16 * (k % 4));
  out = record(out, t, V_PERMUTE, packed[0], packed[1], packed[2]);
  if (out && out->grad_fn && out->grad_fn->backward == view_backward) out->grad_fn->iargs[4] = packed[3];
  return out;
}

cnn_tensor *cnn_op_unsqueeze(const cnn_tensor *t, int dim) {
  return record(cnn_tensor_unsqueeze(t, dim), t, V_RESHAPE, 0, 0, 0);
}

cnn_tensor *cnn_op_squeeze(const cnn_tensor *t, int dim) {
  return record(cnn_tensor_squeeze(t, dim), t, V_RESHAPE, 0, 0, 0);
}

cnn_tensor *cnn_op_expand(const cnn_tensor *t, int ndim, const int64_t *size) {
  return record(cnn_tensor_expand(t, ndim, size), t, V_EXPAND, 0, 0, 0);
}

cnn_tensor *cnn_op_view(const cnn_tensor *t, int ndim, const int64_t *size) {
  return record(cnn_tensor_view(t, ndim, size), t, V_RESHAPE, 0, 0, 0);
}

cnn_tensor *cnn_op_reshape(const cnn_tensor *t, int ndim, const int64_t *size) {
  return record(cnn_tensor_reshape(t, ndim, size), t, V_RESHAPE, 0, 0, 0);
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
  return record(out, t, V_IDENTITY, 0, 0, 0);
}

cnn_tensor *cnn_op_clone(const cnn_tensor *t) { return record(cnn_tensor_clone(t), t, V_IDENTITY, 0, 0, 0); }

cnn_tensor *cnn_op_to_dtype(const cnn_tensor *t, cnn_dtype dt) {
  cnn_tensor *out = cnn_tensor_to_dtype(t, dt);
  if (!out || out == t || dt != CNN_FLOAT32) return out; /* int64 results carry no gradient */
  return record(out, t, V_TO_FLOAT, 0, 0, 0);
}

cnn_tensor *cnn_op_index_select(const cnn_tensor *t, int dim, const cnn_tensor *idx) {
  cnn_tensor *out = cnn_join_index_select(t, dim, idx);
  const cnn_tensor *in[1] = {t};
  if (!out || !cnn_ag_any_requires(1, in)) return out;
  cnn_node *n = cnn_ag_record(out, view_name[V_INDEX], view_backward, 1, in, 1, &idx);
  if (!n) {
    cnn_tensor_release(out);
    return NULL;
  }
  n->iargs[0] = V_INDEX;
  n->iargs[1] = cnn_dim_wrap(dim, t->ndim);
  return out;
}

/* ---- cat / stack: one node over n inputs; each input's extent comes from its edge ---- */

/* iargs: 0 dim, 1 stack? */
static int join_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *g = gout[0];
  if (!g) return 0;
  int dim = (int)n->iargs[0];
  bool stack = n->iargs[1];
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
  cnn_tensor *out = stack ? cnn_join_stack(n, ts, dim) : cnn_join_cat(n, ts, dim);
  if (!out || !cnn_ag_any_requires(n, ts)) return out;
  cnn_node *node = cnn_ag_node_new(stack ? "StackBackward" : "CatBackward", join_backward, n, ts, 1);
  if (!node) {
    cnn_tensor_release(out);
    return NULL;
  }
  node->iargs[0] = cnn_dim_wrap(dim, stack ? ts[0]->ndim + 1 : out->ndim);
  node->iargs[1] = stack;
  cnn_ag_set_output(out, node, 0);
  cnn_ag_node_release(node);
  return out;
}

cnn_tensor *cnn_op_cat(int n, const cnn_tensor *const *ts, int dim) { return join(false, n, ts, dim); }

cnn_tensor *cnn_op_stack(int n, const cnn_tensor *const *ts, int dim) { return join(true, n, ts, dim); }
