/* Differentiable matrix products (see ops.h). Backward works on 2-d-or-more promoted forms:
 * a 1-d operand is seen as a row (a) or column (b) matrix and the gradient's matching dim is put
 * back, so dA = dC @ B^T and dB = A^T @ dC cover every case; batch broadcasting is summed away
 * by the engine. */
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "cnn/matmul.h"
#include "cnn/ops.h"
#include "core/gemm.h"
#include "scratch.h"

#include <string.h>

static cnn_tensor *t_last2(scratch *s, const cnn_tensor *t) {
  if (s->failed || !t) return s->failed = true, NULL;
  return sc_keep(s, cnn_tensor_transpose(t, -1, -2));
}

static cnn_tensor *mm_or_matmul(scratch *s, bool mm, const cnn_tensor *a, const cnn_tensor *b) {
  if (s->failed || !a || !b) return s->failed = true, NULL;
  return sc_keep(s, mm ? cnn_mm_mm(a, b) : cnn_mm_matmul(a, b));
}

/* saved: a, b */
typedef struct matmul_state {
  bool mm; /* cnn.mm (2-d only) rather than matmul */
} matmul_state;

static int matmul_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *a, *b, *g = gout[0];
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &a) || cnn_ag_saved(n, 1, &b)) return -1;
  const bool mm = ((const matmul_state *)cnn_ag_state(n))->mm;
  scratch s = {0};
  bool a1 = a->ndim == 1, b1 = b->ndim == 1;
  cnn_tensor *a2 = a1 ? sc_keep(&s, cnn_tensor_unsqueeze(a, 0)) : a;
  cnn_tensor *b2 = b1 ? sc_keep(&s, cnn_tensor_unsqueeze(b, 1)) : b;
  cnn_tensor *g2 = g;
  if (b1) g2 = sc_keep(&s, cnn_tensor_unsqueeze(g2, g2->ndim));
  if (a1 && g2) g2 = sc_keep(&s, cnn_tensor_unsqueeze(g2, g2->ndim - 1));
  cnn_tensor *ga = NULL, *gb = NULL;
  if (cnn_node_needs_grad(n, 0)) {
    ga = mm_or_matmul(&s, mm, g2, t_last2(&s, b2));
    if (a1 && ga) ga = sc_keep(&s, cnn_tensor_squeeze(ga, ga->ndim - 2));
  }
  if (cnn_node_needs_grad(n, 1)) {
    gb = mm_or_matmul(&s, mm, t_last2(&s, a2), g2);
    if (b1 && gb) gb = sc_keep(&s, cnn_tensor_squeeze(gb, gb->ndim - 1));
  }
  if (s.failed) return sc_result(&s, NULL), -1;
  gin[0] = cnn_tensor_retain(ga);
  gin[1] = cnn_tensor_retain(gb);
  sc_result(&s, NULL);
  return 0;
}

static const cnn_ag_op matmul_op = {"MatmulBackward", matmul_backward, sizeof(matmul_state), NULL};
static const cnn_ag_op mm_op = {"MmBackward", matmul_backward, sizeof(matmul_state), NULL};

static cnn_tensor *product(cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b, bool mm) {
  const cnn_tensor *in[2] = {a, b};
  matmul_state st = {mm};
  return cnn_ag_record(out, mm ? &mm_op : &matmul_op, &st, 2, in, 2, in) ? NULL : out;
}

cnn_tensor *cnn_op_matmul(const cnn_tensor *a, const cnn_tensor *b) {
  return product(cnn_mm_matmul(a, b), a, b, false);
}

cnn_tensor *cnn_op_mm(const cnn_tensor *a, const cnn_tensor *b) { return product(cnn_mm_mm(a, b), a, b, true); }

/* ---- linear ---- */

/* Rows of x seen as a matrix: the product of every dim but the last. */
static int64_t lead_rows(const cnn_tensor *t) {
  int64_t m = 1;
  for (int d = 0; d < t->ndim - 1; d++) m *= t->size[d];
  return m;
}

/* saved: x (when w needs grad), w (when x needs grad), contiguous; inputs x, w, b */
typedef struct linear_state {
  int64_t out, in; /* w: (out, in) */
} linear_state;

static int linear_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x, *w, *g = gout[0];
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &x) || cnn_ag_saved(n, 1, &w)) return -1;
  bool nx = cnn_node_needs_grad(n, 0), nw = cnn_node_needs_grad(n, 1), nb = cnn_node_needs_grad(n, 2);
  const linear_state *st = cnn_ag_state(n);
  const int64_t out = st->out, in = st->in, m = lead_rows(g);
  cnn_tensor *gc = cnn_tensor_contiguous(g);
  if (!gc) return -1;
  const float *gp = cnn_tensor_f32(gc);
  cnn_tensor *gx = NULL, *gw = NULL, *gb = NULL;
  cnn_gemm_args prod[2]; /* the two products run as one parallel job */
  int np = 0;
  if (nx) { /* dX (m, in) = dY (m, out) @ W (out, in); w was saved contiguous */
    int64_t size[CNN_MAX_DIMS];
    memcpy(size, g->size, sizeof(int64_t) * (size_t)g->ndim);
    size[g->ndim - 1] = in;
    gx = out > 0 ? cnn_tensor_empty(CNN_FLOAT32, g->ndim, size) : cnn_tensor_zeros(CNN_FLOAT32, g->ndim, size);
    if (!gx) goto fail;
    if (out > 0)
      prod[np++] = (cnn_gemm_args){false, false, m, in, out, 1, gp, out, cnn_tensor_f32(w), in, 0, cnn_tensor_f32(gx),
                                   in};
  }
  if (nw) { /* dW (out, in) = dY^T (out, m) @ X (m, in); x was saved contiguous */
    int64_t size[2] = {out, in};
    gw = m > 0 ? cnn_tensor_empty(CNN_FLOAT32, 2, size) : cnn_tensor_zeros(CNN_FLOAT32, 2, size);
    if (!gw) goto fail;
    if (m > 0)
      prod[np++] = (cnn_gemm_args){true, false, out, in, m, 1, gp, out, cnn_tensor_f32(x), in, 0, cnn_tensor_f32(gw),
                                   in};
  }
  cnn_gemm_many(np, prod);
  if (nb) { /* db (out) = column sums of dY, rows added in order */
    gb = cnn_tensor_zeros(CNN_FLOAT32, 1, &(int64_t){out});
    if (!gb) goto fail;
    float *bp = cnn_tensor_f32(gb);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < out; j++) bp[j] += gp[i * out + j];
  }
  cnn_tensor_release(gc);
  gin[0] = gx, gin[1] = gw, gin[2] = gb;
  return 0;
fail:
  cnn_tensor_release(gc);
  cnn_tensor_release(gx);
  cnn_tensor_release(gw);
  return -1;
}

cnn_tensor *cnn_op_linear(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b) {
  if (w->ndim != 2) return cnn_error_set("weight must be 2-d (out, in), got %d-d", w->ndim), NULL;
  if (x->ndim == 0 || x->size[x->ndim - 1] != w->size[1]) {
    if (x->ndim == 0)
      return cnn_error_set("input has no features but weight expects %lld", (long long)w->size[1]), NULL;
    return cnn_error_set("input has %lld features but weight expects %lld", (long long)x->size[x->ndim - 1],
                         (long long)w->size[1]),
           NULL;
  }
  const int64_t out = w->size[0], in = w->size[1];
  if (b && (b->ndim != 1 || b->size[0] != out))
    return cnn_error_set("bias must be 1-d with %lld elements (one per output feature), got %s%lld%s", (long long)out,
                         b->ndim == 1 ? "shape (" : "a ", b->ndim == 1 ? (long long)b->size[0] : (long long)b->ndim,
                         b->ndim == 1 ? ")" : "-d tensor"),
           NULL;
  if (x->dtype != w->dtype || (b && b->dtype != x->dtype))
    return cnn_error_set("expected input, weight and bias of one dtype, got %s, %s and %s", cnn_dtype_name(x->dtype),
                         cnn_dtype_name(w->dtype), b ? cnn_dtype_name(b->dtype) : "none"),
           NULL;
  if (x->dtype == CNN_INT64) { /* integers, as PyTorch: x w^T + b exactly (integers never require grad) */
    cnn_tensor *wt = cnn_tensor_transpose(w, 0, 1);
    cnn_tensor *xw = wt ? cnn_mm_matmul(x, wt) : NULL;
    cnn_tensor *y = xw && b ? cnn_ew_binary(CNN_ADD, xw, b) : cnn_tensor_retain(xw);
    cnn_tensor_release(xw);
    cnn_tensor_release(wt);
    return y;
  }
  int64_t size[CNN_MAX_DIMS];
  memcpy(size, x->size, sizeof(int64_t) * (size_t)x->ndim);
  size[x->ndim - 1] = out;
  const int64_t m = lead_rows(x);
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *wc = xc ? cnn_tensor_contiguous(w) : NULL;
  cnn_tensor *y = wc ? cnn_tensor_empty(CNN_FLOAT32, x->ndim, size) : NULL;
  cnn_tensor *bc = y && b ? cnn_tensor_contiguous(b) : NULL;
  if (!y || (b && !bc)) goto fail;
  float *yp = cnn_tensor_f32(y);
  if (bc) { /* y starts as the bias, and the GEMM adds x w^T (beta 1): one pass over y */
    const float *bp = cnn_tensor_f32(bc);
    for (int64_t i = 0; i < m; i++) memcpy(yp + i * out, bp, (size_t)out * sizeof(float));
  } else if (in == 0 && m * out > 0) {
    memset(yp, 0, (size_t)(m * out) * sizeof(float));
  }
  if (in > 0) cnn_gemm(false, true, m, out, in, 1, cnn_tensor_f32(xc), in, cnn_tensor_f32(wc), in, bc ? 1 : 0, yp, out);
  /* save the contiguous copies: backward reads them as plain matrices */
  const cnn_tensor *inputs[3] = {x, w, b}, *saves[2] = {cnn_ag_requires(w) ? xc : NULL, cnn_ag_requires(x) ? wc : NULL};
  static const cnn_ag_op linear_op = {"LinearBackward", linear_backward, sizeof(linear_state), NULL};
  linear_state st = {out, in};
  if (cnn_ag_record(y, &linear_op, &st, 3, inputs, 2, saves)) y = NULL; /* released */
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(bc);
  return y;
fail:
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(bc);
  cnn_tensor_release(y);
  return NULL;
}
