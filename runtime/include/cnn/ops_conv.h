/** Differentiable convolution and pooling. Each runs its kernel and, when grad mode is on and an
 * input requires grad, records a node whose backward computes only the gradients some input
 * needs (the ones cnn.F.conv2d and the pools call). Inputs are
 * (N, C, H, W) or unbatched (C, H, W). Functions return a new reference, or NULL with the error set. */
#ifndef CNN_OPS_CONV_H
#define CNN_OPS_CONV_H

#include <stdbool.h>

#include "layer_params.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** 2-d convolution (cross-correlation, as PyTorch's conv2d) of float32 tensors, laid out by p:
 * x: (N, C, H, W) or (C, H, W), w: (O, C/g, kh, kw), b: (O) or NULL -> (N, O, oh, ow) or (O, oh, ow). */
cnn_tensor *cnn_op_conv2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_conv2d_params *p);
/** max(0, conv2d(x, w, b)) in one pass, for inference: an error when grad mode is on and an input
 * requires a gradient (no node is recorded). x: 4-d (N, C, H, W). */
cnn_tensor *cnn_op_conv2d_relu(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p);
/** act(scale * conv2d(x, w) + b + residual) in one pass, for inference (no node is recorded; an
 * error when grad mode is on and an input requires a gradient): per output channel o, the
 * convolution times scale[o] plus b[o], plus residual (the output's shape), then max(0, .) when
 * relu. scale (O), b and residual may be NULL. A BatchNorm in eval mode after the convolution is
 * scale = gamma / sqrt(var + eps), b = (conv bias - mean) * scale + beta. x: 4-d (N, C, H, W). */
cnn_tensor *cnn_op_conv2d_fused(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_tensor *scale,
                                const cnn_tensor *residual, bool relu, const cnn_conv2d_params *p);
/** Pooling over the last two dims of float32 tensors, x: (..., H, W) -> (..., oh, ow): max and
 * average over the windows of p, adaptive average to an (oh, ow) output. When indices is non-NULL
 * it receives the 0-based argmax positions of the max pool (int64, flat in each H x W plane). */
cnn_tensor *cnn_op_max_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **indices);
cnn_tensor *cnn_op_avg_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p);
cnn_tensor *cnn_op_adaptive_avg_pool2d(const cnn_tensor *x, int64_t oh, int64_t ow);
/** relu(max_pool2d(x)) as one operation: one pass each way, one graph node (MaxPool2DReluBackward),
 * the same values and gradients as the two ops (nn.Sequential runs a ReLU next to a MaxPool2d so). */
cnn_tensor *cnn_op_max_pool2d_relu(const cnn_tensor *x, const cnn_pool2d_params *p);
/** cnn_op_max_pool2d_relu(cnn_op_conv2d(x, w, b, p), pp) as one graph node
 * (ConvReluMaxPool2DBackward over x, w, b; a 3-d or int64 x takes the two ops): the same values
 * and gradients. Stride-1 convolutions of small planes with a 2x2/stride-2 pool (LeNet's) are
 * pooled straight from the kernel's registers, their output never stored; others store it and
 * pool each image as soon as it is (in the same parallel loop, the output still in cache). */
cnn_tensor *cnn_op_conv2d_relu_max_pool2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                          const cnn_conv2d_params *p, const cnn_pool2d_params *pp);

#ifdef __cplusplus
}
#endif
#endif
