/* Differentiable ops along one dimension by index (see ops.h): gather, scatter, scatter_add, cumsum
 * and sort. The kernels are join.c's; each backward is the forward's adjoint kernel: gather <->
 * scatter_add, cumsum <-> cumsum from the end. Nodes save the index tensor and the dim only. */
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "cnn/join.h"
#include "cnn/ops.h"
#include "scratch.h"

#include <string.h>

typedef struct index_dim_state {
  int dim;  /* as given (the kernels wrap it) */
  bool add; /* scatter: scatter_add */
} index_dim_state;

/* saved: idx. g (idx's shape) added into zeros of the input's shape at idx */
static int gather_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *g = gout[0], *idx;
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &idx)) return -1;
  const cnn_edge *e = &n->edges[0];
  scratch s = {0};
  cnn_tensor *z = sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, e->ndim, e->size));
  cnn_tensor *r = z ? sc_keep(&s, cnn_join_scatter(z, ((const index_dim_state *)cnn_ag_state(n))->dim, idx, g, true))
                    : NULL;
  gin[0] = sc_result(&s, r);
  return gin[0] ? 0 : -1;
}

/* saved: idx. self: g, with zeros where scatter wrote (not for scatter_add); src: g gathered at
 * idx, in the leading corner of zeros of src's shape when src is larger than idx */
static int scatter_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *g = gout[0], *idx;
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &idx)) return -1;
  const index_dim_state *st = cnn_ag_state(n);
  scratch s = {0};
  if (cnn_node_needs_grad(n, 0)) {
    cnn_tensor *r = g;
    if (!st->add) {
      cnn_tensor *z = sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, idx->ndim, idx->size));
      r = z ? sc_keep(&s, cnn_join_scatter(g, st->dim, idx, z, false)) : NULL;
    }
    gin[0] = sc_result(&s, r);
    if (!gin[0]) return -1;
  }
  if (cnn_node_needs_grad(n, 1)) {
    const cnn_edge *e = &n->edges[1];
    cnn_tensor *r = sc_keep(&s, cnn_join_gather(g, st->dim, idx));
    bool same = r && e->ndim == r->ndim && !memcmp(e->size, r->size, sizeof(int64_t) * (size_t)e->ndim);
    if (r && !same) {
      cnn_tensor *z = sc_keep(&s, cnn_tensor_zeros(CNN_FLOAT32, e->ndim, e->size)), *corner = z;
      for (int d = 0; corner && d < r->ndim; d++) corner = sc_keep(&s, cnn_tensor_narrow(corner, d, 0, r->size[d]));
      if (corner && cnn_tensor_copy_(corner, r)) s.failed = true;
      r = z;
    }
    gin[1] = sc_result(&s, r);
    if (!gin[1]) return -1;
  }
  return 0;
}

/* the gradient of a running sum: the running sum of g from the end */
static int cumsum_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  gin[0] = cnn_join_cumsum(gout[0], ((const index_dim_state *)cnn_ag_state(n))->dim, true);
  return gin[0] ? 0 : -1;
}

static const cnn_ag_op gather_op = {"GatherBackward", gather_backward, sizeof(index_dim_state), NULL};
static const cnn_ag_op scatter_op = {"ScatterBackward", scatter_backward, sizeof(index_dim_state), NULL};
static const cnn_ag_op scatter_add_op = {"ScatterAddBackward", scatter_backward, sizeof(index_dim_state), NULL};
static const cnn_ag_op cumsum_op = {"CumsumBackward", cumsum_backward, sizeof(index_dim_state), NULL};

cnn_tensor *cnn_op_gather(const cnn_tensor *t, int dim, const cnn_tensor *idx) {
  cnn_tensor *out = cnn_join_gather(t, dim, idx);
  const cnn_tensor *in[1] = {t};
  index_dim_state st = {dim, false};
  return cnn_ag_record(out, &gather_op, &st, 1, in, 1, &idx) ? NULL : out;
}

cnn_tensor *cnn_op_scatter(const cnn_tensor *t, int dim, const cnn_tensor *idx, const cnn_tensor *src, bool add) {
  cnn_tensor *out = cnn_join_scatter(t, dim, idx, src, add);
  const cnn_tensor *in[2] = {t, src};
  index_dim_state st = {dim, add};
  return cnn_ag_record(out, add ? &scatter_add_op : &scatter_op, &st, 2, in, 1, &idx) ? NULL : out;
}

int cnn_op_scatter_(cnn_tensor *t, int dim, const cnn_tensor *idx, const cnn_tensor *src, bool add) {
  if (cnn_op_rebases(t, src)) /* recorded as scatter (ops_arith.c, cnn_op_rebase) */
    return cnn_op_rebase_check(t) ? -1 : cnn_op_rebase(t, cnn_op_scatter(t, dim, idx, src, add));
  if (cnn_op_check_inplace(t)) return -1;
  /* computed aside, then copied in: nothing is written unless every index is valid, and src or
   * idx may share t's memory */
  cnn_tensor *r = cnn_join_scatter(t, dim, idx, src, add);
  int rc = r ? cnn_op_copy_(t, r) : -1;
  cnn_tensor_release(r);
  return rc;
}

cnn_tensor *cnn_op_cumsum(const cnn_tensor *t, int dim) {
  cnn_tensor *out = cnn_join_cumsum(t, dim, false);
  const cnn_tensor *in[1] = {t};
  index_dim_state st = {dim, false};
  return cnn_ag_record(out, &cumsum_op, &st, 1, in, 0, NULL) ? NULL : out;
}

int cnn_op_sort(const cnn_tensor *t, int dim, bool descending, cnn_tensor **values, cnn_tensor **indices) {
  cnn_tensor *idx = cnn_join_sort(t, dim, descending);
  cnn_tensor *v = idx ? cnn_op_gather(t, dim, idx) : NULL;
  if (!v) {
    cnn_tensor_release(idx);
    return -1;
  }
  *values = v;
  *indices = idx;
  return 0;
}
