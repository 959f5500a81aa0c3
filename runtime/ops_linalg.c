/* Differentiable matrix products (see ops.h). Backward works on 2-d-or-more promoted forms:
 * a 1-d operand is seen as a row (a) or column (b) matrix and the gradient's matching dim is put
 * back, so dA = dC @ B^T and dB = A^T @ dC cover every case; batch broadcasting is summed away
 * by the engine. */
#include "cnn/autograd.h"
#include "cnn/error.h"
#include "cnn/matmul.h"
#include "cnn/ops.h"
#include "scratch.h"

static cnn_tensor *t_last2(scratch *s, const cnn_tensor *t) {
  if (s->failed || !t) return s->failed = true, NULL;
  return sc_keep(s, cnn_tensor_transpose(t, -1, -2));
}

static cnn_tensor *mm_or_matmul(scratch *s, bool mm, const cnn_tensor *a, const cnn_tensor *b) {
  if (s->failed || !a || !b) return s->failed = true, NULL;
  return sc_keep(s, mm ? cnn_mm_mm(a, b) : cnn_mm_matmul(a, b));
}

/* saved: a, b; iargs[0] = 1 for mm */
static int matmul_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *a, *b, *g = gout[0];
  if (!g) return 0;
  if (cnn_ag_saved(n, 0, &a) || cnn_ag_saved(n, 1, &b)) return -1;
  bool mm = n->iargs[0];
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

static cnn_tensor *record(cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b, bool mm) {
  const cnn_tensor *in[2] = {a, b};
  if (!out || !cnn_ag_any_requires(2, in)) return out;
  cnn_node *n = cnn_ag_record(out, mm ? "MmBackward" : "MatmulBackward", matmul_backward, 2, in, 2, in);
  if (!n) {
    cnn_tensor_release(out);
    return NULL;
  }
  n->iargs[0] = mm;
  return out;
}

cnn_tensor *cnn_op_matmul(const cnn_tensor *a, const cnn_tensor *b) { return record(cnn_mm_matmul(a, b), a, b, false); }

cnn_tensor *cnn_op_mm(const cnn_tensor *a, const cnn_tensor *b) { return record(cnn_mm_mm(a, b), a, b, true); }
