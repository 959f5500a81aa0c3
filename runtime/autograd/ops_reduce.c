/* Differentiable reductions (see ops.h). Backward broadcasts the output gradient back over the
 * reduced dim: with keepdim off the dim is first re-inserted, so every formula works on the
 * keepdim shape and broadcasts against the saved input. */
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "cnn/ops.h"
#include "scratch.h"

#include <math.h>

/* g with the reduced dim put back as size 1 (or all dims as size 1 for a full reduction). */
static cnn_tensor *keepdim_view(scratch *s, cnn_tensor *g, const cnn_tensor *x, int dim, bool keepdim) {
  if (dim == CNN_ALL_DIMS) {
    int64_t ones[CNN_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) ones[d] = 1;
    return sc_keep(s, cnn_tensor_view(g, x->ndim, ones));
  }
  if (keepdim) return sc_keep(s, cnn_tensor_retain(g));
  return sc_keep(s, cnn_tensor_unsqueeze(g, dim));
}

static double reduced_count(const cnn_tensor *x, int dim) {
  return dim == CNN_ALL_DIMS ? (double)cnn_tensor_numel(x) : (double)x->size[dim];
}

enum { K_SUM, K_MEAN, K_VAR, K_STD, K_MAX, K_MIN };

/* saved: x, out (and max/min's indices along dim) */
typedef struct reduce_state {
  int kind; /* K_SUM ... K_MIN */
  int dim;  /* wrapped, or CNN_ALL_DIMS */
  bool keepdim, unbiased;
} reduce_state;

static int reduce_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x, *out, *g = gout[0];
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &x) || cnn_ag_saved(n, 1, &out)) return -1;
  const reduce_state *st = cnn_ag_state(n);
  const int kind = st->kind;
  int dim = st->dim;
  const bool keepdim = st->keepdim, unbiased = st->unbiased;
  /* the one dim a 0-d tensor accepts (1 or -1) is the whole tensor */
  bool zero_d_dim = x->ndim == 0 && dim != CNN_ALL_DIMS;
  if (x->ndim == 0) dim = CNN_ALL_DIMS;
  scratch s = {0};
  cnn_tensor *gk = keepdim_view(&s, g, x, dim, keepdim), *r = NULL;
  double count = reduced_count(x, dim);
  switch (kind) {
  case K_SUM: /* broadcast g over the reduced dims */
    r = gk ? sc_keep(&s, cnn_tensor_expand(gk, x->ndim, x->size)) : NULL;
    break;
  case K_MEAN: {
    cnn_tensor *scaled = sc_un(&s, CNN_MUL_SCALAR, gk, 1.0 / count, 0); /* NULL after a failed allocation */
    r = scaled ? sc_keep(&s, cnn_tensor_expand(scaled, x->ndim, x->size)) : NULL;
    break;
  }
  case K_VAR:
  case K_STD: { /* PyTorch's: dvar/dx = (2 / (N - c)) g (x - mean); dstd: g / (2 std), 0 where std is 0 */
    cnn_tensor *mean = sc_keep(&s, dim == CNN_ALL_DIMS ? cnn_red_reduce(CNN_RED_MEAN, x, dim, false)
                                                       : cnn_red_reduce(CNN_RED_MEAN, x, dim, true));
    cnn_tensor *centred = sc_bin(&s, CNN_SUB, x, mean);
    double dof = count - (unbiased ? 1 : 0);
    cnn_tensor *gv = gk;
    if (kind == K_STD) {
      cnn_tensor *outk = keepdim_view(&s, out, x, dim, keepdim), *zero = sc_scalar(&s, 0);
      cnn_tensor *q = sc_bin(&s, CNN_DIV, gk, sc_un(&s, CNN_MUL_SCALAR, outk, 2, 0));
      gv = sc_where(&s, sc_bin(&s, CNN_EQ, outk, zero), zero, q);
    }
    if (dim == CNN_ALL_DIMS && dof <= 0) { /* PyTorch gives g * inf over all elements (NaN input too) */
      cnn_tensor *ginf = sc_un(&s, CNN_MUL_SCALAR, gv, INFINITY, 0);
      r = sc_keep(&s, ginf ? cnn_tensor_expand(ginf, x->ndim, x->size) : NULL);
    } else {
      r = sc_bin(&s, CNN_MUL, sc_un(&s, CNN_MUL_SCALAR, gv, 2.0 / dof, 0), centred);
    }
    break;
  }
  case K_MAX:
  case K_MIN: {
    if (zero_d_dim) { /* the index is always the element itself */
      r = sc_keep(&s, cnn_tensor_retain(gk));
    } else if (dim == CNN_ALL_DIMS) {
      /* ties share the gradient evenly, as PyTorch's max(); a NaN result shares it among the NaNs */
      cnn_tensor *hit = sc_bin(&s, CNN_EQ, x, out);
      cnn_tensor *nans = sc_bin(&s, CNN_MUL, sc_bin(&s, CNN_NE, x, x), sc_bin(&s, CNN_NE, out, out));
      cnn_tensor *mask = sc_bin(&s, CNN_ADD, hit, nans);
      cnn_tensor *cnt = sc_keep(&s, s.failed ? NULL : cnn_red_reduce(CNN_RED_SUM, mask, CNN_ALL_DIMS, false));
      r = sc_where(&s, mask, sc_bin(&s, CNN_DIV, g, cnt), sc_scalar(&s, 0));
    } else { /* one-hot of the saved index along dim: arange(size) shaped to broadcast at dim */
      cnn_tensor *idx;
      if (cnn_ag_saved(n, 2, &idx)) return sc_result(&s, NULL), -1;
      cnn_tensor *idxk = keepdim ? sc_keep(&s, cnn_tensor_retain(idx)) : sc_keep(&s, cnn_tensor_unsqueeze(idx, dim));
      int64_t shape[CNN_MAX_DIMS];
      for (int d = 0; d < x->ndim; d++) shape[d] = d == dim ? x->size[d] : 1;
      cnn_tensor *ar = sc_keep(&s, cnn_tensor_arange(0, (double)x->size[dim], 1, CNN_INT64));
      cnn_tensor *arv = s.failed ? NULL : sc_keep(&s, cnn_tensor_view(ar, x->ndim, shape));
      r = sc_bin(&s, CNN_MUL, sc_bin(&s, CNN_EQ, arv, idxk), gk);
    }
    break;
  }
  }
  gin[0] = sc_result(&s, r);
  return gin[0] ? 0 : -1;
}

#define REDUCE_OP(name) \
  { name, reduce_backward, sizeof(reduce_state), NULL }
static const cnn_ag_op reduce_ops[] = {
    [K_SUM] = REDUCE_OP("SumBackward"), [K_MEAN] = REDUCE_OP("MeanBackward"), [K_VAR] = REDUCE_OP("VarBackward"),
    [K_STD] = REDUCE_OP("StdBackward"), [K_MAX] = REDUCE_OP("MaxBackward"),   [K_MIN] = REDUCE_OP("MinBackward")};

/* out = the reduction st of x, recorded; indices are max/min's. sum and mean read only x's shape:
 * they save a stand-in of that shape (one zero, expanded), not x, whose memory an in-place op may
 * then write freely (PyTorch's SumBackward keeps only the sizes; saving x made y:sum() then
 * y:relu_() a refusal, and an in-place write under no_grad a failed backward). out is saved for
 * std, max and min, whose gradients read it. */
static cnn_tensor *reduced(cnn_tensor *out, const cnn_tensor *x, reduce_state st, const cnn_tensor *indices) {
  const bool shape_only = st.kind == K_SUM || st.kind == K_MEAN;
  cnn_tensor *zero = NULL, *stand_in = NULL;
  if (shape_only && out && cnn_ag_any_requires(1, (const cnn_tensor *const[]){x})) {
    zero = cnn_tensor_zeros(x->dtype, 0, NULL);
    stand_in = zero ? cnn_tensor_expand(zero, x->ndim, x->size) : NULL;
    cnn_tensor_release(zero);
    if (!stand_in) return cnn_tensor_release(out), NULL;
  }
  const bool keep_out = st.kind == K_STD || st.kind == K_MAX || st.kind == K_MIN;
  const cnn_tensor *in[1] = {x}, *saves[3] = {shape_only ? stand_in : x, keep_out ? out : NULL, indices};
  const int rc = cnn_ag_record(out, &reduce_ops[st.kind], &st, 1, in, indices ? 3 : 2, saves);
  cnn_tensor_release(stand_in);
  return rc ? NULL : out;
}

static int wrap(int dim, const cnn_tensor *x) { return dim == CNN_ALL_DIMS ? dim : cnn_dim_wrap(dim, x->ndim); }

cnn_tensor *cnn_op_sum(const cnn_tensor *x, int dim, bool keepdim) {
  int d = wrap(dim, x);
  if (d == -1) return NULL;
  return reduced(cnn_red_reduce(CNN_RED_SUM, x, d, keepdim), x, (reduce_state){K_SUM, d, keepdim, false}, NULL);
}

cnn_tensor *cnn_op_mean(const cnn_tensor *x, int dim, bool keepdim) {
  int d = wrap(dim, x);
  if (d == -1 || cnn_tensor_need_float(x, "tensor")) return NULL;
  return reduced(cnn_red_reduce(CNN_RED_MEAN, x, d, keepdim), x, (reduce_state){K_MEAN, d, keepdim, false}, NULL);
}

cnn_tensor *cnn_op_var(const cnn_tensor *x, int dim, bool unbiased, bool keepdim) {
  int d = wrap(dim, x);
  if (d == -1 || cnn_tensor_need_float(x, "tensor")) return NULL;
  return reduced(cnn_red_var(x, d, unbiased, keepdim), x, (reduce_state){K_VAR, d, keepdim, unbiased}, NULL);
}

cnn_tensor *cnn_op_std(const cnn_tensor *x, int dim, bool unbiased, bool keepdim) {
  int d = wrap(dim, x);
  if (d == -1 || cnn_tensor_need_float(x, "tensor")) return NULL;
  return reduced(cnn_red_std(x, d, unbiased, keepdim), x, (reduce_state){K_STD, d, keepdim, unbiased}, NULL);
}

static int extreme(bool is_max, const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices) {
  int d = wrap(dim, x);
  if (d == -1) return -1;
  cnn_tensor *v = NULL, *i = NULL;
  int rc = is_max ? cnn_red_max(x, d, keepdim, &v, d == CNN_ALL_DIMS ? NULL : &i)
                  : cnn_red_min(x, d, keepdim, &v, d == CNN_ALL_DIMS ? NULL : &i);
  if (rc) return -1;
  v = reduced(v, x, (reduce_state){is_max ? K_MAX : K_MIN, d, keepdim, false}, i);
  if (!v) {
    cnn_tensor_release(i);
    return -1;
  }
  *values = v;
  if (indices) *indices = i;
  else cnn_tensor_release(i);
  return 0;
}

int cnn_op_max(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices) {
  return extreme(true, x, dim, keepdim, values, indices);
}

int cnn_op_min(const cnn_tensor *x, int dim, bool keepdim, cnn_tensor **values, cnn_tensor **indices) {
  return extreme(false, x, dim, keepdim, values, indices);
}
