/* Neural-network kernels on contiguous float32 buffers: activations, softmax, classification and
 * regression losses, dropout, batch norm and local response norm, each forward beside its backward.
 * No tensors and no autograd here (ops_nn.h wraps these); what a backward needs that is not an
 * input (log-sum-exp, batch mean and inverse std, LRN scale, dropout mask) is an output of forward.
 * A dim reduced by a kernel is the middle of an (outer, n, inner) view of a row-major buffer. */
#ifndef CNN_KERNELS_NN_H
#define CNN_KERNELS_NN_H

#include <stdbool.h>
#include <stdint.h>

/* ---- activation.c ---- */

/* y = x > 0 ? x : slope * x; gx = gy * (x > 0 ? 1 : slope). n elements. */
void cnn_leaky_relu_forward(const float *x, float *y, int64_t n, float slope);
void cnn_leaky_relu_backward(const float *x, const float *gy, float *gx, int64_t n, float slope);

/* GELU, n elements: y = x Phi(x) (Phi through erf), or the tanh approximation when tanh_form;
 * gx = gy * dy/dx from x. ATen's CPU formulas. */
void cnn_gelu_forward(const float *x, float *y, int64_t n, bool tanh_form);
void cnn_gelu_backward(const float *x, const float *gy, float *gx, int64_t n, bool tanh_form);

/* x, y: (outer, n, inner); softmax (log-softmax when take_log) over n, max-subtracted.
 * Backward from the forward's output y: softmax gx = y * (gy - sum(gy * y)),
 * log-softmax gx = gy - exp(y) * sum(gy). */
void cnn_softmax_forward(const float *x, float *y, int64_t outer, int64_t n, int64_t inner, bool take_log);
void cnn_softmax_backward(const float *y, const float *gy, float *gx, int64_t outer, int64_t n, int64_t inner,
                          bool take_log);

/* ---- loss.c ---- */

/* Targets of a classification loss over scores (outer, C, inner): one label per item
 * (outer * inner of them, row-major (outer, inner)), a class index 0..C-1; an item whose label
 * equals ignore_index (when has_ignore) contributes nothing. weight, when not NULL, holds C class
 * weights. */
typedef struct cnn_class_target {
  const int64_t *labels;
  bool has_ignore;
  int64_t ignore_index;
  const float *weight;
} cnn_class_target;

/* Checks every label is ignore_index or in 0..C-1; the error names the first bad label
 * as given ("label 11 is out of range for 10 classes"). Also returns through *denom the sum of
 * the weights of the items not ignored (their count without weights): the divisor of "mean". */
int cnn_loss_check_labels(const cnn_class_target *t, int64_t items, int64_t C, double *denom);

/* x: (outer, C, inner) logits. Per item, with lse = log sum_c exp(x_c) and s = label_smoothing:
 * loss = (1 - s) * w_t * (lse - x_t) + s / C * sum_c w_c * (lse - x_c); an ignored item gets 0.
 * stats (2 per item) receives what backward needs: the max m and log sum_c exp(x_c - m), whose
 * sum is lse (kept apart so exp(x - lse) stays accurate for huge logits). loss: outer * inner.
 * Labels must have been checked. */
void cnn_loss_cross_entropy_forward(const float *x, const cnn_class_target *t, double label_smoothing, int64_t outer,
                                    int64_t C, int64_t inner, float *loss, float *stats);
/* gx = coef_i * d loss_i / d x for each item i, where coef_i = gitem[i * gstride] * gscale
 * (gstride 0 broadcasts one value: the reduced losses). Unweighted, d loss_i / d x_c is
 * softmax_c - ((1 - s) [c = t] + s / C). */
void cnn_loss_cross_entropy_backward(const float *x, const float *stats, const cnn_class_target *t,
                                     double label_smoothing, int64_t outer, int64_t C, int64_t inner,
                                     const float *gitem, int64_t gstride, float gscale, float *gx);

/* x: (outer, C, inner) log-probabilities; loss_i = -w_t * x_t (0 when ignored). */
void cnn_loss_nll_forward(const float *x, const cnn_class_target *t, int64_t outer, int64_t C, int64_t inner,
                          float *loss);
/* gx = 0 except gx_t = -w_t * coef_i (coef as above). */
void cnn_loss_nll_backward(const cnn_class_target *t, int64_t outer, int64_t C, int64_t inner, const float *gitem,
                           int64_t gstride, float gscale, float *gx);

/* loss_i = (a_i - b_i)^2 over n elements; the sum is returned (in double) when sum is not NULL,
 * and per-element losses written when loss is not NULL. */
void cnn_loss_mse_forward(const float *a, const float *b, int64_t n, float *loss, double *sum);
/* ga = 2 (a - b) coef_i, gb = -ga; either output may be NULL. */
void cnn_loss_mse_backward(const float *a, const float *b, int64_t n, const float *gitem, int64_t gstride, float gscale,
                           float *ga, float *gb);

/* ---- dropout.c ---- */

/* Fills mask (n) from the runtime's seeded stream, in order: each entry is 1 / (1 - p) with
 * probability 1 - p, else 0 (all 0 when p == 1, without drawing). 0 <= p <= 1. */
void cnn_dropout_mask(float *mask, int64_t n, double p);
/* y = x * mask; also the backward, gx = gy * mask. */
void cnn_dropout_apply(const float *x, const float *mask, float *y, int64_t n);

/* ---- norm.c ---- */

/* x, y: (N, C, S). Training: per channel batch mean and biased variance over N * S values (> 1);
 * mean and invstd = 1 / sqrt(var + eps) are written to save_mean / save_invstd (C), and, when
 * running_mean / running_var are not NULL, they move by momentum toward the batch mean and the
 * unbiased variance (strides rm_stride / rv_stride, in elements). Eval: normalises with the running
 * statistics, which must be given, and still writes save_mean / save_invstd. weight and bias (C)
 * may be NULL (1 and 0). relu: y = max(0, bn(x)) (NaN stays NaN, as ReLU), and backward takes gy
 * through ReLU's gradient first: the mask bn(x) > 0 is recomputed from x, the saved statistics,
 * weight and bias with the forward's float operations, so it is the forward's mask bit for bit
 * (backward then needs the same weight and bias as forward).
 * residual (N, C, S) or NULL: y = bn(x) + residual, then the ReLU when relu (a ResNet block's end,
 * relu(bn(x) + identity), in one pass). Backward then takes the mask from the forward's output y
 * (y > 0 or NaN, ReLU's own rule), writes the gradient reaching the sum, gy masked, to gresidual
 * in its first pass and reads it back in the second. */
typedef struct cnn_batchnorm_args {
  int64_t N, C, S;
  bool training;
  double momentum, eps;
  float *running_mean, *running_var;
  int64_t rm_stride, rv_stride;
  const float *weight, *bias;
  bool relu;
  const float *residual; /* forward: added before the ReLU */
  const float *y;        /* backward with residual and relu: the forward's output, for the mask */
  float *gresidual;      /* backward with residual: the gradient of the sum (N, C, S), written */
} cnn_batchnorm_args;
void cnn_batchnorm_forward(const cnn_batchnorm_args *a, const float *x, float *y, float *save_mean, float *save_invstd);
/* From gy (N, C, S), x and the saved statistics: gx (when not NULL), gweight and gbias (C, when
 * not NULL). Training gx accounts for the batch statistics' dependence on x; eval gx does not.
 * gx may be gy itself when there is no residual, gresidual may be gy itself (in place). */
void cnn_batchnorm_backward(const cnn_batchnorm_args *a, const float *x, const float *gy, const float *save_mean,
                            const float *save_invstd, float *gx, float *gweight, float *gbias);

/* ---- shortcut.c ---- */

/* ResNet's option A shortcut: x (N, Cin, H, W) -> y (N, before + Cin + after, Ho, Wo) with
 * Ho = ceil(H / stride), Wo = ceil(W / stride): y[n, before + c, i, j] = x[n, c, i stride, j stride]
 * and the before and after channels 0. Backward: gx[n, c, i stride, j stride] = gy[n, before + c,
 * i, j], 0 at every other position. stride >= 1. */
typedef struct cnn_shortcut_args {
  int64_t N, Cin, H, W, stride, before, after;
} cnn_shortcut_args;
void cnn_shortcut_forward(const cnn_shortcut_args *a, const float *x, float *y);
void cnn_shortcut_backward(const cnn_shortcut_args *a, const float *gy, float *gx);

/* x, y, scale: (N, C, S). scale_c = k + alpha / size * sum of x_j^2 for j from c - size/2 to
 * c + (size-1)/2 (zero outside 0..C-1); y = x * scale^-beta (PyTorch's local_response_norm). */
typedef struct cnn_lrn_args {
  int64_t N, C, S, size;
  double alpha, beta, k;
} cnn_lrn_args;
void cnn_lrn_forward(const cnn_lrn_args *a, const float *x, float *y, float *scale);
/* int64 x -> float32 y as PyTorch computes it from integers: the window's mean square truncated to
 * an integer, then x / (k + alpha * mean)^beta in float32. No backward (integers take no grad). */
void cnn_lrn_forward_i64(const cnn_lrn_args *a, const int64_t *x, float *y);
/* gx from gy, x and the saved scale; work: N * C * S floats of scratch from the caller. */
void cnn_lrn_backward(const cnn_lrn_args *a, const float *x, const float *scale, const float *gy, float *gx,
                      float *work);

#endif
