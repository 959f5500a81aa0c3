/** The differentiable neural-network ops: activations, softmax, losses, dropout and normalisation.
 * Each checks its arguments, runs its kernel on contiguous data (copying strided inputs)
 * and, when grad mode is on and an input requires grad, records a node whose backward sits beside
 * it in ops_nn.c. Dims are 0-based (negative wrap). Functions returning cnn_tensor * return a new
 * reference, or NULL with the error set (messages never name the Lua function; the bindings do). */
#ifndef CNN_OPS_NN_H
#define CNN_OPS_NN_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How a loss combines its per-element values: kept as they are, averaged or summed. */
typedef enum cnn_reduction { CNN_REDUCTION_NONE, CNN_REDUCTION_MEAN, CNN_REDUCTION_SUM } cnn_reduction;

/** Options of the classification losses. Labels are int64 class indices 0..C-1 (the bindings
 * translate Lua's 1..C); a label equal to ignore_index (when has_ignore) contributes nothing and
 * is left out of the mean. weight: NULL or (C) float32 class weights, not differentiated (as
 * PyTorch). label_smoothing in [0, 1], cross-entropy only. */
typedef struct cnn_class_loss_opts {
  cnn_reduction reduction;
  double label_smoothing;
  const cnn_tensor *weight;
  bool has_ignore;
  int64_t ignore_index;
} cnn_class_loss_opts;

/** Leaky ReLU: x > 0 ? x : slope * x. (ReLU itself is cnn_op_unary(CNN_RELU, x, 0, 0).) */
cnn_tensor *cnn_op_leaky_relu(const cnn_tensor *x, double slope);
/** GELU, x Phi(x) with Phi the standard normal CDF (through erf), or its tanh approximation
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) when tanh_form; PyTorch's formulas. */
cnn_tensor *cnn_op_gelu(const cnn_tensor *x, bool tanh_form);
/** Softmax and log-softmax over dim (fused, max-subtracted). */
cnn_tensor *cnn_op_softmax(const cnn_tensor *x, int dim);
cnn_tensor *cnn_op_log_softmax(const cnn_tensor *x, int dim);

/** logits (C) with a 0-d label, (N, C) with labels (N), or (N, C, d1, ...) with labels
 * (N, d1, ...). "none" gives one loss per label (labels' shape), "mean" and "sum" a 0-d tensor. */
cnn_tensor *cnn_op_cross_entropy(const cnn_tensor *logits, const cnn_tensor *labels, const cnn_class_loss_opts *o);
/** The same shapes, with log-probabilities for logits; label_smoothing must be 0. */
cnn_tensor *cnn_op_nll_loss(const cnn_tensor *logp, const cnn_tensor *labels, const cnn_class_loss_opts *o);
/** (a - b)^2, a and b broadcast together (as PyTorch). */
cnn_tensor *cnn_op_mse_loss(const cnn_tensor *a, const cnn_tensor *b, cnn_reduction r);

/** Inverted dropout: zeroes each element with probability p (mask from the seeded stream) and
 * scales the rest by 1 / (1 - p). p outside [0, 1] is an error; when !training or p == 0 the
 * result is x itself (a new reference to it). */
cnn_tensor *cnn_op_dropout(const cnn_tensor *x, double p, bool training);

/** x (N, C, ...). running_mean / running_var (C) or NULL; when training and given, they are updated
 * in place (no autograd; their version is bumped): r = (1 - momentum) r + momentum * batch stat,
 * with the unbiased variance. Eval mode normalises with them and needs them. weight / bias (C) or
 * NULL. Differentiable in x, weight and bias. relu: returns relu(batch_norm(x)) as one operation
 * (one pass each way, one graph node, BatchNormReluBackward), the same values and gradients. */
cnn_tensor *cnn_op_batch_norm(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                              const cnn_tensor *weight, const cnn_tensor *bias, bool training, double momentum,
                              double eps, bool relu);
/** cnn_op_batch_norm with residual (x's shape, float32) or NULL added to its result before the
 * ReLU: relu(batch_norm(x) + residual) (a ResNet block's end) as one operation, one graph node
 * (BatchNormAddReluBackward, or BatchNormAddBackward without relu), the same values and
 * gradients as the three operations in sequence; residual's gradient is gy through the ReLU. */
cnn_tensor *cnn_op_batch_norm_add(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                                  const cnn_tensor *weight, const cnn_tensor *bias, bool training, double momentum,
                                  double eps, const cnn_tensor *residual, bool relu);

/** x (N, C, H, W) float32 -> (N, before + C + after, ceil(H / stride), ceil(W / stride)): every
 * stride-th row and column of x (x[:, :, ::stride, ::stride]) with `before` zero channels in front
 * and `after` behind, ResNet's option A shortcut, in one pass each way. Differentiable in x.
 * before, after >= 0, stride >= 1. */
cnn_tensor *cnn_op_pad_channels(const cnn_tensor *x, int64_t before, int64_t after, int64_t stride);

/** x (N, C, ...): PyTorch's local_response_norm across channels, x / (k + alpha / size * the sum of
 * x^2 over size neighbouring channels)^beta. size >= 1. */
cnn_tensor *cnn_op_local_response_norm(const cnn_tensor *x, int64_t size, double alpha, double beta, double k);

#ifdef __cplusplus
}
#endif
#endif
