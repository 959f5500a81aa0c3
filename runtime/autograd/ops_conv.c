/* Differentiable convolution and pooling (see ops_conv.h). Conv keeps its parameters and both
 * input shapes in its node's state and saves x only when w needs a gradient, w only when x does
 * (the first layer of a network saves no weight and never computes an input gradient). Max pooling
 * saves its argmax indices; the average pools save nothing but the input's H, W (and params). */
#include "cnn/ops_conv.h"

#include <string.h>

#include "autograd/autograd.h"
#include "autograd/conv.h"
#include "autograd/pool.h"
#include "cnn/error.h"
#include "cnn/ops.h"

/* ---- conv2d ---- */

typedef struct conv_state {
  cnn_conv2d_params p;
  int64_t x_size[4], w_size[4];
} conv_state;

/* saved: x (when w needs grad), w (when x needs grad); inputs x, w, b */
static int conv_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  const conv_state *c = cnn_ag_state(n);
  bool nx = cnn_node_needs_grad(n, 0), nw = cnn_node_needs_grad(n, 1), nb = cnn_node_needs_grad(n, 2);
  cnn_tensor *x = NULL, *w = NULL;
  if ((nw && cnn_ag_saved(n, 0, &x)) || (nx && cnn_ag_saved(n, 1, &w))) return -1;
  return cnn_conv2d_backward(gout[0], x, w, c->x_size, c->w_size, &c->p, nx ? &gin[0] : NULL, nw ? &gin[1] : NULL,
                             nb ? &gin[2] : NULL);
}

/* y = conv2d(x, w, b) (or NULL) becomes the output of a ConvolutionBackward node (see cnn_ag_record) */
static cnn_tensor *record_conv(cnn_tensor *y, const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p) {
  static const cnn_ag_op conv_op = {"ConvolutionBackward", conv_backward, sizeof(conv_state), NULL};
  const cnn_tensor *in[3] = {x, w, b};
  const cnn_tensor *saves[2] = {cnn_ag_requires(w) ? x : NULL, cnn_ag_requires(x) ? w : NULL};
  conv_state c = {.p = *p};
  memcpy(c.x_size, x->size, sizeof c.x_size);
  memcpy(c.w_size, w->size, sizeof c.w_size);
  return cnn_ag_record(y, &conv_op, &c, 3, in, 2, saves) ? NULL : y;
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
  return record_conv(cnn_conv2d_forward(x, w, b, p), x, w, b, p);
}

cnn_tensor *cnn_op_conv2d_fused(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_tensor *scale,
                                const cnn_tensor *residual, bool relu, const cnn_conv2d_params *p) {
  const cnn_tensor *in[5] = {x, w, b, scale, residual};
  if (cnn_ag_any_requires(5, in)) {
    cnn_error_set("relu=true, scale and residual are for inference: no input may require a gradient (run it under "
                  "no_grad)");
    return NULL;
  }
  if (x->ndim != 4)
    return cnn_error_set("relu=true, scale and residual expect a 4-d (N, C, H, W) input, got %d-d", x->ndim), NULL;
  return cnn_conv2d_forward_fused(x, w, b, scale, residual, relu, p);
}

cnn_tensor *cnn_op_conv2d_relu(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p) {
  return cnn_op_conv2d_fused(x, w, b, NULL, NULL, true, p);
}

/* ---- pooling ---- */

typedef struct pool_state {
  int64_t H, W;        /* the input's plane */
  cnn_pool2d_params p; /* avg_pool2d's window */
} pool_state;

/* (x has at least 2 dims once its pooling succeeded; unused otherwise) */
static pool_state pool_state_of(const cnn_tensor *x, const cnn_pool2d_params *p) {
  pool_state st = {0};
  if (x->ndim >= 2) st.H = x->size[x->ndim - 2], st.W = x->size[x->ndim - 1];
  if (p) st.p = *p;
  return st;
}

/* saved: indices */
static int max_pool_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  cnn_tensor *idx;
  if (!gout[0]) return 0;
  if (cnn_ag_saved(n, 0, &idx)) return -1;
  const pool_state *st = cnn_ag_state(n);
  gin[0] = cnn_pool_max2d_backward(gout[0], idx, st->H, st->W);
  return gin[0] ? 0 : -1;
}

cnn_tensor *cnn_op_max_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **indices) {
  cnn_tensor *y, *idx;
  if (indices) *indices = NULL;
  if (cnn_pool_max2d_forward(x, p, &y, &idx)) return NULL;
  static const cnn_ag_op max_pool_op = {"MaxPool2DWithIndicesBackward", max_pool_backward, sizeof(pool_state), NULL};
  const cnn_tensor *in[1] = {x}, *saves[1] = {idx};
  pool_state st = pool_state_of(x, NULL);
  if (cnn_ag_record(y, &max_pool_op, &st, 1, in, 1, saves)) y = NULL; /* released */
  if (y && indices) *indices = cnn_tensor_retain(idx);
  cnn_tensor_release(idx);
  return y;
}

/* the indices of relu's stopped outputs are -1: the max pool's backward gives them nothing */
cnn_tensor *cnn_op_max_pool2d_relu(const cnn_tensor *x, const cnn_pool2d_params *p) {
  cnn_tensor *y, *idx;
  if (cnn_pool_max2d_relu_forward(x, p, &y, &idx)) return NULL;
  static const cnn_ag_op max_pool_relu_op = {"MaxPool2DReluBackward", max_pool_backward, sizeof(pool_state), NULL};
  const cnn_tensor *in[1] = {x}, *saves[1] = {idx};
  pool_state st = pool_state_of(x, NULL);
  if (cnn_ag_record(y, &max_pool_relu_op, &st, 1, in, 1, saves)) y = NULL; /* released */
  cnn_tensor_release(idx);
  return y;
}

/* The fused node: the convolution's state, and its output plane (the pooling's input). */
typedef struct conv_pool_state {
  conv_state c;
  int64_t oh, ow;
} conv_pool_state;

/* saved: x (when w needs grad), w (when x needs grad), the pooling's indices (int64, or uint8 window
 * codes from conv_small_pool.c); inputs x, w, b. The pooling's backward (the gradient of the
 * convolution's output), then the convolution's: the same bits as the two nodes of the unfused graph. */
static int conv_pool_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  const conv_pool_state *c = cnn_ag_state(n);
  bool nx = cnn_node_needs_grad(n, 0), nw = cnn_node_needs_grad(n, 1), nb = cnn_node_needs_grad(n, 2);
  cnn_tensor *x = NULL, *w = NULL, *idx;
  if ((nw && cnn_ag_saved(n, 0, &x)) || (nx && cnn_ag_saved(n, 1, &w)) || cnn_ag_saved(n, 2, &idx)) return -1;
  if (idx->dtype == CNN_UINT8) { /* in one pass, where conv_small_pool.c takes it */
    int rc = cnn_conv2d_relu_max_pool_backward_codes(gout[0], idx, x, w, c->c.x_size, c->c.w_size, &c->c.p,
                                                     nx ? &gin[0] : NULL, nw ? &gin[1] : NULL, nb ? &gin[2] : NULL);
    if (rc != 1) return rc;
  }
  cnn_tensor *gy = idx->dtype == CNN_UINT8 ? cnn_conv2d_unpool_codes(gout[0], idx, c->oh, c->ow)
                                           : cnn_pool_max2d_backward(gout[0], idx, c->oh, c->ow);
  if (!gy) return -1;
  int rc = cnn_conv2d_backward(gy, x, w, c->c.x_size, c->c.w_size, &c->c.p, nx ? &gin[0] : NULL, nw ? &gin[1] : NULL,
                               nb ? &gin[2] : NULL);
  cnn_tensor_release(gy);
  return rc;
}

cnn_tensor *cnn_op_conv2d_relu_max_pool2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                          const cnn_conv2d_params *p, const cnn_pool2d_params *pp) {
  if (x->ndim != 4 || x->dtype != CNN_FLOAT32) { /* the two ops one after the other */
    cnn_tensor *y = cnn_op_conv2d(x, w, b, p);
    cnn_tensor *out = y ? cnn_op_max_pool2d_relu(y, pp) : NULL;
    cnn_tensor_release(y);
    return out;
  }
  /* one node: the convolution's output is neither kept nor (where conv_small_pool.c takes the
   * shape) ever stored */
  cnn_tensor *pooled, *idx;
  int64_t ohw[2];
  if (cnn_conv2d_check(x, w, b, p, ohw) || cnn_conv2d_forward_relu_max_pool(x, w, b, p, pp, NULL, &pooled, &idx))
    return NULL;
  static const cnn_ag_op conv_pool_op = {"ConvReluMaxPool2DBackward", conv_pool_backward, sizeof(conv_pool_state),
                                         NULL};
  const cnn_tensor *in[3] = {x, w, b};
  const cnn_tensor *saves[3] = {cnn_ag_requires(w) ? x : NULL, cnn_ag_requires(x) ? w : NULL, idx};
  conv_pool_state c = {.c = {.p = *p}, .oh = ohw[0], .ow = ohw[1]};
  memcpy(c.c.x_size, x->size, sizeof c.c.x_size);
  memcpy(c.c.w_size, w->size, sizeof c.c.w_size);
  if (cnn_ag_record(pooled, &conv_pool_op, &c, 3, in, 3, saves)) pooled = NULL; /* released */
  cnn_tensor_release(idx);
  return pooled;
}

static int avg_pool_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  const pool_state *st = cnn_ag_state(n);
  gin[0] = cnn_pool_avg2d_backward(gout[0], &st->p, st->H, st->W);
  return gin[0] ? 0 : -1;
}

cnn_tensor *cnn_op_avg_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p) {
  static const cnn_ag_op avg_pool_op = {"AvgPool2DBackward", avg_pool_backward, sizeof(pool_state), NULL};
  cnn_tensor *y = cnn_pool_avg2d_forward(x, p);
  const cnn_tensor *in[1] = {x};
  pool_state st = pool_state_of(x, p);
  return cnn_ag_record(y, &avg_pool_op, &st, 1, in, 0, NULL) ? NULL : y;
}

static int adaptive_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  if (!gout[0]) return 0;
  const pool_state *st = cnn_ag_state(n);
  gin[0] = cnn_pool_adaptive_avg2d_backward(gout[0], st->H, st->W);
  return gin[0] ? 0 : -1;
}

cnn_tensor *cnn_op_adaptive_avg_pool2d(const cnn_tensor *x, int64_t oh, int64_t ow) {
  static const cnn_ag_op adaptive_op = {"AdaptiveAvgPool2DBackward", adaptive_backward, sizeof(pool_state), NULL};
  cnn_tensor *y = cnn_pool_adaptive_avg2d_forward(x, oh, ow);
  const cnn_tensor *in[1] = {x};
  pool_state st = pool_state_of(x, NULL);
  return cnn_ag_record(y, &adaptive_op, &st, 1, in, 0, NULL) ? NULL : y;
}
