/* Differentiable convolution and pooling (see ops_conv.h). Conv keeps its parameters and both
 * input shapes in the node's ctx and saves x only when w needs a gradient, w only when x does
 * (the first layer of a network saves no weight and never computes an input gradient). Max pooling
 * saves its argmax indices; the average pools save nothing but the input's H, W (iargs 0, 1). */
#include "cnn/ops_conv.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/conv.h"
#include "autograd/pool.h"
#include "cnn/error.h"
#include "cnn/ops.h"

/* Records y's node with a ctx copied from ctx (size bytes); releases y and returns NULL on failure. */
static cnn_tensor *record(cnn_tensor *y, const char *name, cnn_backward_fn fn, int n_in, const cnn_tensor *const *in,
                          int n_saves, const cnn_tensor *const *saves, const void *ctx, size_t size, int64_t H,
                          int64_t W) {
  void *c = NULL;
  if (size) {
    c = malloc(size);
    if (!c) {
      cnn_tensor_release(y);
      return cnn_error_set("out of memory"), NULL;
    }
    memcpy(c, ctx, size);
  }
  cnn_node *n = cnn_ag_record(y, name, fn, n_in, in, n_saves, saves);
  if (!n) {
    free(c);
    cnn_tensor_release(y);
    return NULL;
  }
  n->ctx = c;
  n->ctx_free = c ? free : NULL;
  n->iargs[0] = H, n->iargs[1] = W;
  return y;
}

/* ---- conv2d ---- */

typedef struct conv_ctx {
  cnn_conv2d_params p;
  int64_t x_size[4], w_size[4];
} conv_ctx;

/* saved: x (when w needs grad), w (when x needs grad); inputs x, w, b */
static int conv_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  const conv_ctx *c = n->ctx;
  bool nx = cnn_node_needs_grad(n, 0), nw = cnn_node_needs_grad(n, 1), nb = cnn_node_needs_grad(n, 2);
  cnn_tensor *x = NULL, *w = NULL;
  if ((nw && cnn_ag_saved(n, 0, &x)) || (nx && cnn_ag_saved(n, 1, &w))) return -1;
  return cnn_conv2d_backward(gout[0], x, w, c->x_size, c->w_size, &c->p, nx ? &gin[0] : NULL, nw ? &gin[1] : NULL,
                             nb ? &gin[2] : NULL);
}

cnn_tensor *cnn_op_conv2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_conv2d_params *p) {
  if (x->ndim == 3) { /* (C, H, W): a batch of one, through differentiable views both ways */
    cnn_tensor *x4 = cnn_op_unsqueeze(x, 0);
    cnn_tensor *y4 = x4 ? cnn_op_conv2d(x4, w, b, p) : NULL;
    cnn_tensor *y = y4 ? cnn_op_squeeze(y4, 0) : NULL;
    cnn_tensor_release(x4);
    cnn_tensor_release(y4);
    return y;
  }
  if (x->ndim != 4) return cnn_error_set("expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got %d-d", x->ndim), NULL;
  cnn_tensor *y = cnn_conv2d_forward(x, w, b, p);
  const cnn_tensor *in[3] = {x, w, b};
  if (!y || !cnn_ag_any_requires(3, in)) return y;
  const cnn_tensor *saves[2] = {cnn_ag_requires(w) ? x : NULL, cnn_ag_requires(x) ? w : NULL};
  conv_ctx c = {.p = *p};
  memcpy(c.x_size, x->size, sizeof c.x_size);
  memcpy(c.w_size, w->size, sizeof c.w_size);
  return record(y, "ConvolutionBackward", conv_backward, 3, in, 2, saves, &c, sizeof c, x->size[2], x->size[3]);
}

/* ---- pooling ---- */

/* saved: indices */
static int max_pool_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *idx;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &idx)) return -1;
  gin[0] = cnn_pool_max2d_backward(gout[0], idx, n->iargs[0], n->iargs[1]);
  return gin[0] ? 0 : -1;
}

cnn_tensor *cnn_op_max_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **indices) {
  cnn_tensor *y, *idx;
  if (indices) *indices = NULL;
  if (cnn_pool_max2d_forward(x, p, &y, &idx)) return NULL;
  const cnn_tensor *in[1] = {x}, *saves[1] = {idx};
  if (cnn_ag_any_requires(1, in))
    y = record(y, "MaxPool2DWithIndicesBackward", max_pool_backward, 1, in, 1, saves, NULL, 0, x->size[x->ndim - 2],
               x->size[x->ndim - 1]);
  if (y && indices) *indices = cnn_tensor_retain(idx);
  cnn_tensor_release(idx);
  return y;
}

/* ctx: the params */
static int avg_pool_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  gin[0] = cnn_pool_avg2d_backward(gout[0], n->ctx, n->iargs[0], n->iargs[1]);
  return gin[0] ? 0 : -1;
}

cnn_tensor *cnn_op_avg_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p) {
  cnn_tensor *y = cnn_pool_avg2d_forward(x, p);
  const cnn_tensor *in[1] = {x};
  if (!y || !cnn_ag_any_requires(1, in)) return y;
  return record(y, "AvgPool2DBackward", avg_pool_backward, 1, in, 0, NULL, p, sizeof *p, x->size[x->ndim - 2],
                x->size[x->ndim - 1]);
}

static int adaptive_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  gin[0] = cnn_pool_adaptive_avg2d_backward(gout[0], n->iargs[0], n->iargs[1]);
  return gin[0] ? 0 : -1;
}

cnn_tensor *cnn_op_adaptive_avg_pool2d(const cnn_tensor *x, int64_t oh, int64_t ow) {
  cnn_tensor *y = cnn_pool_adaptive_avg2d_forward(x, oh, ow);
  const cnn_tensor *in[1] = {x};
  if (!y || !cnn_ag_any_requires(1, in)) return y;
  return record(y, "AdaptiveAvgPool2DBackward", adaptive_backward, 1, in, 0, NULL, NULL, 0, x->size[x->ndim - 2],
                x->size[x->ndim - 1]);
}
