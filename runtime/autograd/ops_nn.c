/* Differentiable wrappers over the kernels/nn.h kernels (see ops_nn.h): argument checks, contiguous
 * copies of strided inputs, output allocation and the autograd node. Each backward reads only the
 * tensors its forward saved, and gradients leave in the forward's shapes. */
#include "cnn/ops_nn.h"
#include "autograd/autograd.h"
#include "cnn/error.h"
#include "cnn/ops.h"
#include "core/checked.h"
#include "core/iter.h"
#include "kernels/nn.h"

#include <math.h>
#include <string.h>

static int64_t prod(const int64_t *size, int from, int to) {
  int64_t p = 1;
  for (int d = from; d < to; d++) p *= size[d];
  return p;
}

/* ---- leaky ReLU ---- */

/* saved: x (contiguous) */
typedef struct leaky_relu_state {
  float slope;
} leaky_relu_state;

static int leaky_relu_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &x)) return -1;
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]), *gx = g ? cnn_tensor_empty_like(x) : NULL;
  if (gx)
    cnn_leaky_relu_backward(cnn_tensor_f32(x), cnn_tensor_f32(g), cnn_tensor_f32(gx), cnn_tensor_numel(x),
                            ((const leaky_relu_state *)cnn_ag_state(n))->slope);
  cnn_tensor_release(g);
  gin[0] = gx;
  return gx ? 0 : -1;
}

cnn_tensor *cnn_op_leaky_relu(const cnn_tensor *x, double slope) {
  if (cnn_tensor_need_float(x, "input")) return NULL;
  if (!isfinite(slope)) {
    cnn_error_set("negative_slope must be a finite number, got %g", cnn_error_num(slope));
    return NULL;
  }
  cnn_tensor *xc = cnn_tensor_contiguous(x), *y = xc ? cnn_tensor_empty_like(xc) : NULL;
  if (!y) return cnn_tensor_release(xc), NULL;
  cnn_leaky_relu_forward(cnn_tensor_f32(xc), cnn_tensor_f32(y), cnn_tensor_numel(xc), (float)slope);
  static const cnn_ag_op leaky_relu_op = {"LeakyReluBackward", leaky_relu_backward, sizeof(leaky_relu_state), NULL};
  const cnn_tensor *in[1] = {x}, *saves[1] = {xc};
  leaky_relu_state st = {(float)slope};
  int rc = cnn_ag_record(y, &leaky_relu_op, &st, 1, in, 1, saves);
  cnn_tensor_release(xc);
  return rc ? NULL : y;
}

/* ---- GELU ---- */

/* saved: x (contiguous) */
typedef struct gelu_state {
  bool tanh_form;
} gelu_state;

static int gelu_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &x)) return -1;
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]), *gx = g ? cnn_tensor_empty_like(x) : NULL;
  if (gx)
    cnn_gelu_backward(cnn_tensor_f32(x), cnn_tensor_f32(g), cnn_tensor_f32(gx), cnn_tensor_numel(x),
                      ((const gelu_state *)cnn_ag_state(n))->tanh_form);
  cnn_tensor_release(g);
  gin[0] = gx;
  return gx ? 0 : -1;
}

cnn_tensor *cnn_op_gelu(const cnn_tensor *x, bool tanh_form) {
  if (cnn_tensor_need_float(x, "input")) return NULL;
  cnn_tensor *xc = cnn_tensor_contiguous(x), *y = xc ? cnn_tensor_empty_like(xc) : NULL;
  if (!y) return cnn_tensor_release(xc), NULL;
  cnn_gelu_forward(cnn_tensor_f32(xc), cnn_tensor_f32(y), cnn_tensor_numel(xc), tanh_form);
  static const cnn_ag_op gelu_op = {"GeluBackward", gelu_backward, sizeof(gelu_state), NULL};
  const cnn_tensor *in[1] = {x}, *saves[1] = {xc};
  gelu_state st = {tanh_form};
  int rc = cnn_ag_record(y, &gelu_op, &st, 1, in, 1, saves);
  cnn_tensor_release(xc);
  return rc ? NULL : y;
}

/* ---- softmax, log-softmax ---- */

static void split_at(const cnn_tensor *t, int d, int64_t *outer, int64_t *n, int64_t *inner) {
  if (t->ndim == 0) {
    *outer = *n = *inner = 1;
    return;
  }
  *outer = prod(t->size, 0, d);
  *n = t->size[d];
  *inner = prod(t->size, d + 1, t->ndim);
}

/* saved: y (the output) */
typedef struct softmax_state {
  int dim; /* wrapped */
  bool take_log;
} softmax_state;

static int softmax_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *y;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &y)) return -1;
  const softmax_state *st = cnn_ag_state(n);
  int64_t outer, len, inner;
  split_at(y, st->dim, &outer, &len, &inner);
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]), *gx = g ? cnn_tensor_empty_like(y) : NULL;
  if (gx)
    cnn_softmax_backward(cnn_tensor_f32(y), cnn_tensor_f32(g), cnn_tensor_f32(gx), outer, len, inner, st->take_log);
  cnn_tensor_release(g);
  gin[0] = gx;
  return gx ? 0 : -1;
}

static cnn_tensor *softmax_common(const cnn_tensor *x, int dim, bool take_log) {
  if (cnn_tensor_need_float(x, "input")) return NULL;
  int d = cnn_dim_wrap(dim, x->ndim);
  if (d < 0) return NULL;
  int64_t outer, len, inner;
  split_at(x, d, &outer, &len, &inner);
  cnn_tensor *xc = cnn_tensor_contiguous(x), *y = xc ? cnn_tensor_empty_like(xc) : NULL;
  if (y) cnn_softmax_forward(cnn_tensor_f32(xc), cnn_tensor_f32(y), outer, len, inner, take_log);
  cnn_tensor_release(xc);
  if (!y) return NULL;
  static const cnn_ag_op softmax_op = {"SoftmaxBackward", softmax_backward, sizeof(softmax_state), NULL};
  static const cnn_ag_op log_softmax_op = {"LogSoftmaxBackward", softmax_backward, sizeof(softmax_state), NULL};
  const cnn_tensor *in[1] = {x}, *saves[1] = {y};
  softmax_state st = {d, take_log};
  return cnn_ag_record(y, take_log ? &log_softmax_op : &softmax_op, &st, 1, in, 1, saves) ? NULL : y;
}

cnn_tensor *cnn_op_softmax(const cnn_tensor *x, int dim) { return softmax_common(x, dim, false); }
cnn_tensor *cnn_op_log_softmax(const cnn_tensor *x, int dim) { return softmax_common(x, dim, true); }

/* ---- classification losses: cross-entropy and nll ---- */

/* Scores viewed as (outer, C, inner), one label per (outer, inner) item. */
typedef struct class_plan {
  int64_t outer, C, inner, items;
} class_plan;

static int class_plan_init(class_plan *p, const cnn_tensor *x, const cnn_tensor *labels, const cnn_class_loss_opts *o,
                           const char *what) {
  char b1[256], b2[256], b3[256];
  if (cnn_tensor_need_float(x, what)) return -1;
  if (labels->dtype != CNN_INT64)
    return cnn_error_set("labels must be int64 class indices, got %s (probability targets are not supported)",
                         cnn_dtype_name(labels->dtype));
  if (x->ndim == 0) return cnn_error_set("%s must have a class dimension, got a 0-d tensor", what);
  /* (C) with a 0-d label, else (N, C, d...) with labels (N, d...) */
  int64_t want[CNN_MAX_DIMS];
  int wnd = x->ndim - 1;
  if (x->ndim == 1) {
    p->outer = p->inner = 1;
    p->C = x->size[0];
  } else {
    p->outer = x->size[0];
    p->C = x->size[1];
    p->inner = prod(x->size, 2, x->ndim);
    want[0] = x->size[0];
    for (int d = 2; d < x->ndim; d++) want[d - 1] = x->size[d];
  }
  p->items = p->outer * p->inner;
  if (labels->ndim != wnd || memcmp(labels->size, want, sizeof(int64_t) * (size_t)wnd) != 0)
    return cnn_error_set("labels of shape %s do not fit %s of shape %s (expected labels of shape %s)",
                         cnn_shape_str(labels->ndim, labels->size, b1, sizeof b1), what,
                         cnn_shape_str(x->ndim, x->size, b2, sizeof b2), cnn_shape_str(wnd, want, b3, sizeof b3));
  if (o->weight) {
    if (cnn_tensor_need_float(o->weight, "weight")) return -1;
    if (o->weight->ndim != 1 || o->weight->size[0] != p->C)
      return cnn_error_set("weight should have %lld entries (one per class), got shape %s", (long long)p->C,
                           cnn_shape_str(o->weight->ndim, o->weight->size, b1, sizeof b1));
  }
  if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
    return cnn_error_set("label_smoothing must be between 0 and 1, got %g", cnn_error_num(o->label_smoothing));
  if (o->reduction != CNN_REDUCTION_NONE && o->reduction != CNN_REDUCTION_MEAN && o->reduction != CNN_REDUCTION_SUM)
    return cnn_error_set("unknown reduction %d", (int)o->reduction);
  return 0;
}

/* Contiguous labels and weight, with the kernel's view of them. */
typedef struct class_inputs {
  cnn_tensor *labels, *weight;
  cnn_class_target t;
} class_inputs;

static int class_inputs_init(class_inputs *ci, const cnn_tensor *labels, const cnn_class_loss_opts *o) {
  memset(ci, 0, sizeof *ci);
  ci->labels = cnn_tensor_contiguous(labels);
  ci->weight = o->weight ? cnn_tensor_contiguous(o->weight) : NULL;
  if (!ci->labels || (o->weight && !ci->weight)) {
    cnn_tensor_release(ci->labels);
    cnn_tensor_release(ci->weight);
    return -1;
  }
  ci->t.labels = cnn_tensor_i64(ci->labels);
  ci->t.has_ignore = o->has_ignore;
  ci->t.ignore_index = o->ignore_index;
  ci->t.weight = ci->weight ? cnn_tensor_f32(ci->weight) : NULL;
  return 0;
}

static void class_inputs_free(class_inputs *ci) {
  cnn_tensor_release(ci->labels);
  cnn_tensor_release(ci->weight);
}

/* A loss's mean as PyTorch takes it: the float32 sum divided in float32 by the count (or the total
 * weight), so a sum past float32's range gives inf even when the mean would fit. */
static double float32_mean(double sum, double denom) { return (double)((float)sum / (float)denom); }

/* Per-item losses (labels' shape) reduced as asked: consumes loss, returns a new reference. */
static cnn_tensor *reduce_items(cnn_tensor *loss, cnn_reduction r, double denom) {
  if (r == CNN_REDUCTION_NONE) return loss;
  const float *l = cnn_tensor_f32(loss);
  double s = 0;
  for (int64_t i = 0, n = cnn_tensor_numel(loss); i < n; i++) s += l[i];
  cnn_tensor_release(loss);
  return cnn_tensor_scalar(CNN_FLOAT32, r == CNN_REDUCTION_MEAN ? float32_mean(s, denom) : s);
}

/* The gradient of each item's loss from the output gradient: one per item ("none") or one
 * broadcast value scaled by 1 / denom ("mean"). */
static void item_coef(cnn_reduction r, double denom, const cnn_tensor *g, const float **gitem, int64_t *gstride,
                      float *gscale) {
  *gitem = cnn_tensor_f32(g);
  *gstride = r == CNN_REDUCTION_NONE ? 1 : 0;
  *gscale = r == CNN_REDUCTION_MEAN ? (float)(1.0 / denom) : 1.0f;
}

/* what the backward of cross_entropy and nll_loss needs besides the saved tensors */
typedef struct class_loss_state {
  cnn_reduction reduction;
  double denom; /* the divisor of "mean" (the weights of the items not ignored) */
  double label_smoothing;
  bool has_ignore;
  int64_t ignore_index;
  int64_t outer, C, inner; /* the scores viewed as (outer, C, inner) */
} class_loss_state;

static class_loss_state class_loss_state_of(const class_plan *p, const cnn_class_loss_opts *o, double denom) {
  class_loss_state st = {o->reduction, denom,   o->label_smoothing, o->has_ignore, o->ignore_index, p->outer,
                         p->C,         p->inner};
  return st;
}

/* What both backwards hand their kernel: the saved targets and each item's output gradient. */
typedef struct class_grad {
  cnn_class_target t;
  const float *gitem;
  int64_t gstride;
  float gscale;
} class_grad;

static class_grad class_grad_of(const class_loss_state *st, const cnn_tensor *labels, const cnn_tensor *weight,
                                const cnn_tensor *g) {
  class_grad c;
  c.t = (cnn_class_target){cnn_tensor_i64(labels), st->has_ignore, st->ignore_index,
                           weight ? cnn_tensor_f32(weight) : NULL};
  item_coef(st->reduction, st->denom, g, &c.gitem, &c.gstride, &c.gscale);
  return c;
}

/* saved: logits (contiguous), stats (items, 2), labels, weight or NULL */
static int cross_entropy_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x, *stats, *labels, *weight;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &x) || cnn_ag_saved(n, 1, &stats) || cnn_ag_saved(n, 2, &labels) ||
      cnn_ag_saved(n, 3, &weight))
    return -1;
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]), *gx = g ? cnn_tensor_empty_like(x) : NULL;
  if (gx) {
    const class_loss_state *st = cnn_ag_state(n);
    class_grad c = class_grad_of(st, labels, weight, g);
    cnn_loss_cross_entropy_backward(cnn_tensor_f32(x), cnn_tensor_f32(stats), &c.t, st->label_smoothing, st->outer,
                                    st->C, st->inner, c.gitem, c.gstride, c.gscale, cnn_tensor_f32(gx));
  }
  cnn_tensor_release(g);
  gin[0] = gx;
  return gx ? 0 : -1;
}

cnn_tensor *cnn_op_cross_entropy(const cnn_tensor *logits, const cnn_tensor *labels, const cnn_class_loss_opts *o) {
  class_plan p;
  class_inputs ci;
  double denom;
  if (class_plan_init(&p, logits, labels, o, "logits") || class_inputs_init(&ci, labels, o)) return NULL;
  cnn_tensor *x = NULL, *stats = NULL, *loss = NULL;
  if (cnn_loss_check_labels(&ci.t, p.items, p.C, &denom)) goto fail;
  int64_t ssize[2] = {p.items, 2};
  x = cnn_tensor_contiguous(logits);
  stats = cnn_tensor_empty(CNN_FLOAT32, 2, ssize);
  loss = cnn_tensor_empty(CNN_FLOAT32, labels->ndim, labels->size);
  if (!x || !stats || !loss) goto fail;
  cnn_loss_cross_entropy_forward(cnn_tensor_f32(x), &ci.t, o->label_smoothing, p.outer, p.C, p.inner,
                                 cnn_tensor_f32(loss), cnn_tensor_f32(stats));
  cnn_tensor *out = reduce_items(loss, o->reduction, denom);
  loss = NULL;
  if (!out) goto fail;
  static const cnn_ag_op cross_entropy_op = {"CrossEntropyBackward", cross_entropy_backward, sizeof(class_loss_state),
                                             NULL};
  const cnn_tensor *in[1] = {logits}, *saves[4] = {x, stats, ci.labels, ci.weight};
  class_loss_state st = class_loss_state_of(&p, o, denom);
  if (cnn_ag_record(out, &cross_entropy_op, &st, 1, in, 4, saves)) goto fail;
  cnn_tensor_release(x);
  cnn_tensor_release(stats);
  class_inputs_free(&ci);
  return out;
fail:
  cnn_tensor_release(x);
  cnn_tensor_release(stats);
  cnn_tensor_release(loss);
  class_inputs_free(&ci);
  return NULL;
}

/* saved: labels, weight or NULL; the input's shape comes from the node's edge */
static int nll_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *labels, *weight;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &labels) || cnn_ag_saved(n, 1, &weight)) return -1;
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]);
  cnn_tensor *gx = g ? cnn_tensor_empty(CNN_FLOAT32, n->edges[0].ndim, n->edges[0].size) : NULL;
  if (gx) {
    const class_loss_state *st = cnn_ag_state(n);
    class_grad c = class_grad_of(st, labels, weight, g);
    cnn_loss_nll_backward(&c.t, st->outer, st->C, st->inner, c.gitem, c.gstride, c.gscale, cnn_tensor_f32(gx));
  }
  cnn_tensor_release(g);
  gin[0] = gx;
  return gx ? 0 : -1;
}

cnn_tensor *cnn_op_nll_loss(const cnn_tensor *logp, const cnn_tensor *labels, const cnn_class_loss_opts *o) {
  class_plan p;
  class_inputs ci;
  double denom;
  if (o->label_smoothing != 0) {
    cnn_error_set("label_smoothing must be 0 for a negative log-likelihood loss");
    return NULL;
  }
  if (class_plan_init(&p, logp, labels, o, "input") || class_inputs_init(&ci, labels, o)) return NULL;
  cnn_tensor *x = NULL, *loss = NULL;
  if (cnn_loss_check_labels(&ci.t, p.items, p.C, &denom)) goto fail;
  x = cnn_tensor_contiguous(logp);
  loss = cnn_tensor_empty(CNN_FLOAT32, labels->ndim, labels->size);
  if (!x || !loss) goto fail;
  cnn_loss_nll_forward(cnn_tensor_f32(x), &ci.t, p.outer, p.C, p.inner, cnn_tensor_f32(loss));
  cnn_tensor *out = reduce_items(loss, o->reduction, denom);
  loss = NULL;
  if (!out) goto fail;
  static const cnn_ag_op nll_op = {"NllLossBackward", nll_backward, sizeof(class_loss_state), NULL};
  const cnn_tensor *in[1] = {logp}, *saves[2] = {ci.labels, ci.weight};
  class_loss_state st = class_loss_state_of(&p, o, denom);
  if (cnn_ag_record(out, &nll_op, &st, 1, in, 2, saves)) goto fail;
  cnn_tensor_release(x);
  class_inputs_free(&ci);
  return out;
fail:
  cnn_tensor_release(x);
  cnn_tensor_release(loss);
  class_inputs_free(&ci);
  return NULL;
}

/* ---- mean squared error ---- */

/* saved: a, b (contiguous, in the broadcast shape) */
typedef struct mse_state {
  cnn_reduction reduction;
  double count; /* elements in the broadcast shape: the divisor of "mean" */
} mse_state;

static int mse_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *a, *b;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &a) || cnn_ag_saved(n, 1, &b)) return -1;
  bool na = cnn_node_needs_grad(n, 0), nb = cnn_node_needs_grad(n, 1);
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]);
  cnn_tensor *ga = g && na ? cnn_tensor_empty_like(a) : NULL, *gb = g && nb ? cnn_tensor_empty_like(a) : NULL;
  if (!g || (na && !ga) || (nb && !gb)) {
    cnn_tensor_release(g);
    cnn_tensor_release(ga);
    cnn_tensor_release(gb);
    return -1;
  }
  const float *gitem;
  int64_t gstride;
  float gscale;
  const mse_state *st = cnn_ag_state(n);
  item_coef(st->reduction, st->count, g, &gitem, &gstride, &gscale);
  cnn_loss_mse_backward(cnn_tensor_f32(a), cnn_tensor_f32(b), cnn_tensor_numel(a), gitem, gstride, gscale,
                        ga ? cnn_tensor_f32(ga) : NULL, gb ? cnn_tensor_f32(gb) : NULL);
  cnn_tensor_release(g);
  gin[0] = ga;
  gin[1] = gb;
  return 0;
}

/* t expanded to (nd, size) and made contiguous (t itself, retained, when it already is). */
static cnn_tensor *broadcast_contiguous(const cnn_tensor *t, int nd, const int64_t *size) {
  if (t->ndim == nd && memcmp(t->size, size, sizeof(int64_t) * (size_t)nd) == 0) return cnn_tensor_contiguous(t);
  cnn_tensor *e = cnn_tensor_expand(t, nd, size), *c = e ? cnn_tensor_contiguous(e) : NULL;
  cnn_tensor_release(e);
  return c;
}

cnn_tensor *cnn_op_mse_loss(const cnn_tensor *a, const cnn_tensor *b, cnn_reduction r) {
  if ((a->dtype == CNN_FLOAT32) != (b->dtype == CNN_FLOAT32)) { /* int64 with float32 promotes, as PyTorch */
    const cnn_tensor *i = a->dtype == CNN_FLOAT32 ? b : a;
    cnn_tensor *f = cnn_tensor_to_dtype(i, CNN_FLOAT32);
    cnn_tensor *out = !f ? NULL : i == a ? cnn_op_mse_loss(f, b, r) : cnn_op_mse_loss(a, f, r);
    cnn_tensor_release(f);
    return out;
  }
  if (cnn_tensor_need_float(a, "input") || cnn_tensor_need_float(b, "target")) return NULL;
  if (r != CNN_REDUCTION_NONE && r != CNN_REDUCTION_MEAN && r != CNN_REDUCTION_SUM) {
    cnn_error_set("unknown reduction %d", (int)r);
    return NULL;
  }
  int nd;
  int64_t size[CNN_MAX_DIMS];
  if (cnn_broadcast_shape(a->ndim, a->size, b->ndim, b->size, &nd, size)) return NULL;
  cnn_tensor *ac = broadcast_contiguous(a, nd, size), *bc = ac ? broadcast_contiguous(b, nd, size) : NULL;
  cnn_tensor *out = NULL;
  if (!bc) goto done;
  int64_t count = cnn_tensor_numel(ac);
  if (r == CNN_REDUCTION_NONE) {
    out = cnn_tensor_empty(CNN_FLOAT32, nd, size);
    if (out) cnn_loss_mse_forward(cnn_tensor_f32(ac), cnn_tensor_f32(bc), count, cnn_tensor_f32(out), NULL);
  } else {
    double s;
    cnn_loss_mse_forward(cnn_tensor_f32(ac), cnn_tensor_f32(bc), count, NULL, &s);
    out = cnn_tensor_scalar(CNN_FLOAT32, r == CNN_REDUCTION_MEAN ? float32_mean(s, (double)count) : s);
  }
  if (!out) goto done;
  static const cnn_ag_op mse_op = {"MseLossBackward", mse_backward, sizeof(mse_state), NULL};
  const cnn_tensor *in[2] = {a, b}, *saves[2] = {ac, bc};
  mse_state st = {r, (double)count};
  if (cnn_ag_record(out, &mse_op, &st, 2, in, 2, saves)) out = NULL; /* released */
done:
  cnn_tensor_release(ac);
  cnn_tensor_release(bc);
  return out;
}

/* ---- dropout ---- */

/* saved: mask (0 or 1 / (1 - p), contiguous, x's shape) */
static int dropout_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *mask;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &mask)) return -1;
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]), *gx = g ? cnn_tensor_empty_like(mask) : NULL;
  if (gx) cnn_dropout_apply(cnn_tensor_f32(g), cnn_tensor_f32(mask), cnn_tensor_f32(gx), cnn_tensor_numel(mask));
  cnn_tensor_release(g);
  gin[0] = gx;
  return gx ? 0 : -1;
}

cnn_tensor *cnn_op_dropout(const cnn_tensor *x, double p, bool training) {
  if (!(p >= 0 && p <= 1)) {
    cnn_error_set("dropout probability has to be between 0 and 1, got %g", cnn_error_num(p));
    return NULL;
  }
  if (!training || p == 0) return cnn_tensor_retain((cnn_tensor *)x);
  if (x->dtype == CNN_INT64) { /* as PyTorch: p = 1 zeroes integers; anything between gives floats */
    if (p == 1) return cnn_tensor_zeros(CNN_INT64, x->ndim, x->size);
    cnn_error_set("dropout with 0 < p < 1 gives float32 values, which an int64 input cannot take");
    return NULL;
  }
  if (cnn_tensor_need_float(x, "input")) return NULL;
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *mask = xc ? cnn_tensor_empty_like(xc) : NULL, *y = mask ? cnn_tensor_empty_like(xc) : NULL;
  if (!y) {
    cnn_tensor_release(xc);
    cnn_tensor_release(mask);
    return NULL;
  }
  int64_t numel = cnn_tensor_numel(xc);
  cnn_dropout_mask(cnn_tensor_f32(mask), numel, p);
  cnn_dropout_apply(cnn_tensor_f32(xc), cnn_tensor_f32(mask), cnn_tensor_f32(y), numel);
  cnn_tensor_release(xc);
  static const cnn_ag_op dropout_op = {"DropoutBackward", dropout_backward, 0, NULL};
  const cnn_tensor *in[1] = {x}, *saves[1] = {mask};
  int rc = cnn_ag_record(y, &dropout_op, NULL, 1, in, 1, saves);
  cnn_tensor_release(mask);
  return rc ? NULL : y;
}

/* ---- batch norm ---- */

/* A per-channel parameter: NULL, or float32 with shape (C). The running statistics are written
 * in place, so they may not be expanded views; weight and bias may (they are read once). */
static int check_channel_param(const cnn_tensor *t, const char *what, int64_t C, bool written) {
  char b[256];
  if (!t) return 0;
  if (cnn_tensor_need_float(t, what)) return -1;
  if (t->ndim != 1 || t->size[0] != C)
    return cnn_error_set("%s should have shape (%lld), one value per channel, got %s", what, (long long)C,
                         cnn_shape_str(t->ndim, t->size, b, sizeof b));
  if (written && C > 1 && t->stride[0] == 0) return cnn_error_set("%s must not be an expanded view", what);
  return 0;
}

static void batchnorm_args(cnn_batchnorm_args *a, const cnn_tensor *x, bool training) {
  memset(a, 0, sizeof *a);
  a->N = x->size[0];
  a->C = x->size[1];
  a->S = prod(x->size, 2, x->ndim);
  a->training = training;
}

/* saved: x (contiguous), weight (contiguous) or NULL, save_mean, save_invstd, and with relu bias
 * (contiguous) or NULL, for the mask; with a residual and relu, the output too (the mask) */
typedef struct batch_norm_state {
  bool training; /* batch statistics (else the running ones, constants) */
  bool relu;     /* a ReLU fused after the norm */
  bool residual; /* a tensor added before the ReLU: input 3 */
} batch_norm_state;

static int batch_norm_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x, *w, *mean, *invstd, *bias = NULL, *out = NULL;
  if (!gout[0]) return 0;
  const batch_norm_state *st = cnn_ag_state(n);
  const bool relu = st->relu, res = st->residual;
  if (cnn_ag_saved(n, 0, &x) || cnn_ag_saved(n, 1, &w) || cnn_ag_saved(n, 2, &mean) || cnn_ag_saved(n, 3, &invstd) ||
      (relu && cnn_ag_saved(n, 4, &bias)) || (res && relu && cnn_ag_saved(n, 5, &out)))
    return -1;
  cnn_batchnorm_args a;
  batchnorm_args(&a, x, st->training);
  a.weight = w ? cnn_tensor_f32(w) : NULL;
  a.bias = bias ? cnn_tensor_f32(bias) : NULL;
  a.relu = relu;
  a.y = out ? cnn_tensor_f32(out) : NULL;
  bool nx = cnn_node_needs_grad(n, 0), nw = cnn_node_needs_grad(n, 1), nb = cnn_node_needs_grad(n, 2);
  bool nr = res && cnn_node_needs_grad(n, 3);
  int64_t C = a.C;
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]);
  /* the engine's gradient sum, when nobody else holds it, takes a result in place (as ReLU's
   * backward does): gx where there is no residual (the second pass reads each g before it writes
   * its gx), else the masked gradient (the first pass's, likewise); no fresh buffer whose lines
   * must be read before they are written */
  const bool own = g && g == gout[0] && g->refcount == 2 && g->storage->refcount == 1 && !g->grad && !g->grad_fn;
  cnn_tensor *gx = g && nx ? (own && !res ? cnn_tensor_retain(g) : cnn_tensor_empty_like(x)) : NULL;
  cnn_tensor *gw = g && nw ? cnn_tensor_empty(CNN_FLOAT32, 1, &C) : NULL;
  cnn_tensor *gb = g && nb ? cnn_tensor_empty(CNN_FLOAT32, 1, &C) : NULL;
  /* with a residual the masked gradient is written whether or not the residual wants it: the
   * second pass reads it back */
  cnn_tensor *gr = g && res ? (own ? cnn_tensor_retain(g) : cnn_tensor_empty_like(x)) : NULL;
  if (!g || (nx && !gx) || (nw && !gw) || (nb && !gb) || (res && !gr)) {
    cnn_tensor_release(g);
    cnn_tensor_release(gx);
    cnn_tensor_release(gw);
    cnn_tensor_release(gb);
    cnn_tensor_release(gr);
    return -1;
  }
  a.gresidual = gr ? cnn_tensor_f32(gr) : NULL;
  cnn_batchnorm_backward(&a, cnn_tensor_f32(x), cnn_tensor_f32(g), cnn_tensor_f32(mean), cnn_tensor_f32(invstd),
                         gx ? cnn_tensor_f32(gx) : NULL, gw ? cnn_tensor_f32(gw) : NULL,
                         gb ? cnn_tensor_f32(gb) : NULL);
  cnn_tensor_release(g);
  gin[0] = gx;
  gin[1] = gw;
  gin[2] = gb;
  if (res) {
    if (nr) gin[3] = gr;
    else cnn_tensor_release(gr);
  }
  return 0;
}

cnn_tensor *cnn_op_batch_norm(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                              const cnn_tensor *weight, const cnn_tensor *bias, bool training, double momentum,
                              double eps, bool relu) {
  return cnn_op_batch_norm_add(x, running_mean, running_var, weight, bias, training, momentum, eps, NULL, relu);
}

cnn_tensor *cnn_op_batch_norm_add(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                                  const cnn_tensor *weight, const cnn_tensor *bias, bool training, double momentum,
                                  double eps, const cnn_tensor *residual, bool relu) {
  char b[256], b2[256];
  if (cnn_tensor_need_float(x, "input")) return NULL;
  if (x->ndim < 2) {
    cnn_error_set("expected an input of shape (N, C) or (N, C, ...), got %s",
                  cnn_shape_str(x->ndim, x->size, b, sizeof b));
    return NULL;
  }
  if (residual && cnn_tensor_need_float(residual, "residual")) return NULL;
  if (residual &&
      (residual->ndim != x->ndim || memcmp(residual->size, x->size, sizeof(int64_t) * (size_t)x->ndim) != 0)) {
    cnn_error_set("residual should have the input's shape %s, got %s", cnn_shape_str(x->ndim, x->size, b, sizeof b),
                  cnn_shape_str(residual->ndim, residual->size, b2, sizeof b2));
    return NULL;
  }
  int64_t C = x->size[1];
  if (check_channel_param(running_mean, "running_mean", C, true) ||
      check_channel_param(running_var, "running_var", C, true) || check_channel_param(weight, "weight", C, false) ||
      check_channel_param(bias, "bias", C, false))
    return NULL;
  if (!(eps >= 0) || !isfinite(eps)) {
    cnn_error_set("eps must be a finite number >= 0, got %g", cnn_error_num(eps));
    return NULL;
  }
  if (!isfinite(momentum)) { /* any other value is PyTorch's (1.5 extrapolates past the batch's stats) */
    cnn_error_set("momentum must be a finite number, got %g", cnn_error_num(momentum));
    return NULL;
  }
  cnn_batchnorm_args a;
  batchnorm_args(&a, x, training);
  if (training && a.N * a.S == 1) {
    cnn_error_set("Expected more than 1 value per channel when training, got input size %s",
                  cnn_shape_str(x->ndim, x->size, b, sizeof b));
    return NULL;
  }
  if (!training && (!running_mean || !running_var)) {
    cnn_error_set("%s must be given in evaluation mode", running_mean ? "running_var" : "running_mean");
    return NULL;
  }
  if (training &&
      ((running_mean && cnn_op_check_inplace(running_mean)) || (running_var && cnn_op_check_inplace(running_var))))
    return NULL;
  cnn_tensor *xc = cnn_tensor_contiguous(x), *rc = residual ? cnn_tensor_contiguous(residual) : NULL;
  cnn_tensor *wc = weight ? cnn_tensor_contiguous(weight) : NULL, *bc = bias ? cnn_tensor_contiguous(bias) : NULL;
  cnn_tensor *mean = cnn_tensor_empty(CNN_FLOAT32, 1, &C), *invstd = cnn_tensor_empty(CNN_FLOAT32, 1, &C);
  cnn_tensor *y = xc ? cnn_tensor_empty_like(xc) : NULL;
  if (!xc || (residual && !rc) || (weight && !wc) || (bias && !bc) || !mean || !invstd || !y) {
    cnn_tensor_release(y);
    y = NULL;
    goto done;
  }
  a.momentum = momentum;
  a.eps = eps;
  if (running_mean) {
    a.running_mean = cnn_tensor_f32(running_mean);
    a.rm_stride = running_mean->stride[0];
  }
  if (running_var) {
    a.running_var = cnn_tensor_f32(running_var);
    a.rv_stride = running_var->stride[0];
  }
  a.weight = wc ? cnn_tensor_f32(wc) : NULL;
  a.bias = bc ? cnn_tensor_f32(bc) : NULL;
  a.relu = relu;
  a.residual = rc ? cnn_tensor_f32(rc) : NULL;
  cnn_batchnorm_forward(&a, cnn_tensor_f32(xc), cnn_tensor_f32(y), cnn_tensor_f32(mean), cnn_tensor_f32(invstd));
  if (training) {
    if (running_mean) running_mean->storage->version++;
    if (running_var && running_var->storage != (running_mean ? running_mean->storage : NULL))
      running_var->storage->version++;
  }
  /* with relu one node does both: ReLU's output is never a tensor of its own, and its mask comes
   * back from x (norm.c), so only the bias is saved besides batch norm's own */
  static const cnn_ag_op batch_norm_op = {"BatchNormBackward", batch_norm_backward, sizeof(batch_norm_state), NULL};
  static const cnn_ag_op batch_norm_relu_op = {"BatchNormReluBackward", batch_norm_backward, sizeof(batch_norm_state),
                                               NULL};
  /* with a residual: one node for bn(x) + r (and the ReLU), the ReLU's mask read from the output */
  static const cnn_ag_op batch_norm_add_op = {"BatchNormAddBackward", batch_norm_backward, sizeof(batch_norm_state),
                                              NULL};
  static const cnn_ag_op batch_norm_add_relu_op = {"BatchNormAddReluBackward", batch_norm_backward,
                                                   sizeof(batch_norm_state), NULL};
  const cnn_tensor *in[4] = {x, weight, bias, residual}, *saves[6] = {xc, wc, mean, invstd, bc, y};
  batch_norm_state st = {training, relu, residual != NULL};
  const cnn_ag_op *op = residual ? (relu ? &batch_norm_add_relu_op : &batch_norm_add_op)
                                 : (relu ? &batch_norm_relu_op : &batch_norm_op);
  if (cnn_ag_record(y, op, &st, residual ? 4 : 3, in, residual && relu ? 6 : relu ? 5 : 4, saves))
    y = NULL; /* released */
done:
  cnn_tensor_release(rc);
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(bc);
  cnn_tensor_release(mean);
  cnn_tensor_release(invstd);
  return y;
}

/* ---- option A shortcut ---- */

/* no saves: the input's shape is the edge's */
typedef struct pad_channels_state {
  int64_t before, after, stride;
} pad_channels_state;

static void pad_channels_args(cnn_shortcut_args *a, const int64_t *xsize, const pad_channels_state *st) {
  *a = (cnn_shortcut_args){xsize[0], xsize[1], xsize[2], xsize[3], st->stride, st->before, st->after};
}

static int pad_channels_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  const cnn_edge *e = &n->edges[0];
  cnn_shortcut_args a;
  pad_channels_args(&a, e->size, cnn_ag_state(n));
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]);
  cnn_tensor *gx = g ? cnn_tensor_empty(CNN_FLOAT32, 4, e->size) : NULL;
  if (gx) cnn_shortcut_backward(&a, cnn_tensor_f32(g), cnn_tensor_f32(gx));
  cnn_tensor_release(g);
  gin[0] = gx;
  return gx ? 0 : -1;
}

cnn_tensor *cnn_op_pad_channels(const cnn_tensor *x, int64_t before, int64_t after, int64_t stride) {
  char b[256];
  if (cnn_tensor_need_float(x, "input")) return NULL;
  if (x->ndim != 4) {
    cnn_error_set("expected an input of shape (N, C, H, W), got %s", cnn_shape_str(x->ndim, x->size, b, sizeof b));
    return NULL;
  }
  if (before < 0 || after < 0) {
    cnn_error_set("before and after must be >= 0, got %lld and %lld", (long long)before, (long long)after);
    return NULL;
  }
  if (stride < 1) {
    cnn_error_set("stride must be >= 1, got %lld", (long long)stride);
    return NULL;
  }
  int64_t size[4] = {x->size[0], 0, x->size[2] / stride + (x->size[2] % stride != 0),
                     x->size[3] / stride + (x->size[3] % stride != 0)};
  if (!cnn_add_ok(x->size[1], before, &size[1]) || !cnn_add_ok(size[1], after, &size[1])) {
    cnn_error_set("before + channels + after overflows");
    return NULL;
  }
  pad_channels_state st = {before, after, stride};
  cnn_shortcut_args a;
  pad_channels_args(&a, x->size, &st);
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *y = xc ? cnn_tensor_empty(CNN_FLOAT32, 4, size) : NULL;
  if (y) cnn_shortcut_forward(&a, cnn_tensor_f32(xc), cnn_tensor_f32(y));
  cnn_tensor_release(xc);
  static const cnn_ag_op pad_channels_op = {"PadChannelsBackward", pad_channels_backward, sizeof st, NULL};
  const cnn_tensor *in[1] = {x};
  if (cnn_ag_record(y, &pad_channels_op, &st, 1, in, 0, NULL)) return NULL;
  return y;
}

/* ---- local response norm ---- */

static void lrn_args(cnn_lrn_args *a, const cnn_tensor *x, int64_t size, double alpha, double beta, double k) {
  a->N = x->size[0];
  a->C = x->size[1];
  a->S = prod(x->size, 2, x->ndim);
  a->size = size;
  a->alpha = alpha;
  a->beta = beta;
  a->k = k;
}

/* saved: x (contiguous), scale */
typedef struct lrn_state {
  int64_t size;
  double alpha, beta, k;
} lrn_state;

static int lrn_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *x, *scale;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &x) || cnn_ag_saved(n, 1, &scale)) return -1;
  const lrn_state *st = cnn_ag_state(n);
  cnn_lrn_args a;
  lrn_args(&a, x, st->size, st->alpha, st->beta, st->k);
  cnn_tensor *g = cnn_tensor_contiguous(gout[0]), *gx = g ? cnn_tensor_empty_like(x) : NULL;
  cnn_tensor *work = gx ? cnn_tensor_empty_like(x) : NULL;
  if (work)
    cnn_lrn_backward(&a, cnn_tensor_f32(x), cnn_tensor_f32(scale), cnn_tensor_f32(g), cnn_tensor_f32(gx),
                     cnn_tensor_f32(work));
  cnn_tensor_release(g);
  cnn_tensor_release(work);
  if (!work) {
    cnn_tensor_release(gx);
    return -1;
  }
  gin[0] = gx;
  return 0;
}

cnn_tensor *cnn_op_local_response_norm(const cnn_tensor *x, int64_t size, double alpha, double beta, double k) {
  char b[256];
  if (x->dtype != CNN_INT64 && cnn_tensor_need_float(x, "input")) return NULL;
  if (x->ndim < 3) {
    cnn_error_set("expected an input of 3 or more dimensions (N, C, ...), got %s",
                  cnn_shape_str(x->ndim, x->size, b, sizeof b));
    return NULL;
  }
  if (size < 1) {
    cnn_error_set("size must be a positive integer, got %lld", (long long)size);
    return NULL;
  }
  if (!isfinite(alpha) || !isfinite(beta) || !isfinite(k)) {
    cnn_error_set("alpha, beta and k must be finite numbers, got %g, %g, %g", cnn_error_num(alpha), cnn_error_num(beta),
                  cnn_error_num(k));
    return NULL;
  }
  cnn_lrn_args a;
  lrn_args(&a, x, size, alpha, beta, k);
  if (x->dtype == CNN_INT64) { /* float32 results from integers, as PyTorch's (an empty x comes back as it is) */
    if (cnn_tensor_numel(x) == 0) return cnn_tensor_retain((cnn_tensor *)x);
    cnn_tensor *xc = cnn_tensor_contiguous(x), *y = xc ? cnn_tensor_empty(CNN_FLOAT32, x->ndim, x->size) : NULL;
    if (y) cnn_lrn_forward_i64(&a, cnn_tensor_i64(xc), cnn_tensor_f32(y));
    cnn_tensor_release(xc);
    return y;
  }
  cnn_tensor *xc = cnn_tensor_contiguous(x), *y = xc ? cnn_tensor_empty_like(xc) : NULL;
  cnn_tensor *scale = y ? cnn_tensor_empty_like(xc) : NULL;
  if (!scale) {
    cnn_tensor_release(xc);
    cnn_tensor_release(y);
    return NULL;
  }
  cnn_lrn_forward(&a, cnn_tensor_f32(xc), cnn_tensor_f32(y), cnn_tensor_f32(scale));
  static const cnn_ag_op lrn_op = {"LocalResponseNormBackward", lrn_backward, sizeof(lrn_state), NULL};
  const cnn_tensor *in[1] = {x}, *saves[2] = {xc, scale};
  lrn_state st = {size, alpha, beta, k};
  int rc = cnn_ag_record(y, &lrn_op, &st, 1, in, 2, saves);
  cnn_tensor_release(xc);
  cnn_tensor_release(scale);
  return rc ? NULL : y;
}
