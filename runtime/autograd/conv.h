/* 2-d convolution (cross-correlation, as PyTorch's conv2d) on float32 tensors: the checks and
 * allocation around the kernels of kernels/conv.h (parameters, algorithm choice). No autograd here
 * (see ops_conv.h). Padding may differ on the two sides of a dim (padding="same" with an even
 * kernel). Messages set on error never carry the user-facing function's name. Functions returning
 * cnn_tensor * return a new reference or NULL. */
#ifndef CNN_CONV_H
#define CNN_CONV_H

#include "cnn/tensor.h"
#include "kernels/conv.h"

/* Validates x: (N, C, H, W), w: (O, C/g, kh, kw), b: (O) or NULL against p and gives the output
 * size (oh, ow). Returns 0, or -1 with a message such as "input has 3 channels but weight expects
 * 1 (groups=1)". */
int cnn_conv2d_check(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_conv2d_params *p,
                     int64_t out_hw[2]);

/* x: (N, C, H, W), w: (O, C/g, kh, kw), b: (O) or NULL -> y: (N, O, oh, ow). Any strides in. */
cnn_tensor *cnn_conv2d_forward(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p);
/* max(0, cnn_conv2d_forward(x, w, b, p)), the ReLU applied as the output is stored */
cnn_tensor *cnn_conv2d_forward_relu(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                    const cnn_conv2d_params *p);
/* act(scale * cnn_conv2d_forward(x, w, NULL, p) + b + residual) per output channel, act the ReLU
 * with relu (see cnn_conv2d_epilogue); scale (O) and residual (the output's shape) may be NULL */
cnn_tensor *cnn_conv2d_forward_fused(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                     const cnn_tensor *scale, const cnn_tensor *residual, bool relu,
                                     const cnn_conv2d_params *p);

/* float32 x: y = cnn_conv2d_forward(x, w, b, p), and pooled, indices as
 * cnn_pool_max2d_relu_forward(y, pp) gives them (relu(max_pool2d(y)), index -1 where relu's
 * gradient stops), each image pooled as soon as its convolution is stored (the same parallel loop
 * on the direct kernels). New references, or -1 with the error set and all three NULL. y may be
 * NULL (not wanted): then, where conv_small_pool.c takes the shape, y is never stored and indices
 * is instead a uint8 tensor of its window codes (cnn_conv2d_unpool_codes is its backward). */
int cnn_conv2d_forward_relu_max_pool(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                     const cnn_conv2d_params *p, const cnn_pool2d_params *pp, cnn_tensor **y,
                                     cnn_tensor **pooled, cnn_tensor **indices);

/* The pooling's backward from uint8 window codes (N, O, ph, pw) as cnn_conv2d_forward_relu_max_pool
 * gives them: gpooled (their shape) -> the gradient (N, O, oh, ow) of the convolution's output. */
cnn_tensor *cnn_conv2d_unpool_codes(const cnn_tensor *gpooled, const cnn_tensor *codes, int64_t oh, int64_t ow);

/* The whole backward from the codes where conv_small_pool.c takes it (the convolution's gradient
 * made in its lanes, never stored): as cnn_conv2d_unpool_codes then cnn_conv2d_backward, the same
 * bits. Returns 0, -1 with the error set, or 1 when it does not apply (nothing made). */
int cnn_conv2d_relu_max_pool_backward_codes(const cnn_tensor *gpooled, const cnn_tensor *codes, const cnn_tensor *x,
                                            const cnn_tensor *w, const int64_t x_size[4], const int64_t w_size[4],
                                            const cnn_conv2d_params *p, cnn_tensor **gx, cnn_tensor **gw,
                                            cnn_tensor **gb);

/* gy: (N, O, oh, ow) for a forward with input shape x_size (N, C, H, W) and weight shape w_size
 * (O, C/g, kh, kw). Computes each gradient whose out pointer is non-NULL, as a new contiguous
 * tensor: gx (x_size) reads w; gw (w_size) reads x; gb (O) reads only gy. x or w may be NULL when
 * no requested gradient reads it. Returns 0 or -1. */
int cnn_conv2d_backward(const cnn_tensor *gy, const cnn_tensor *x, const cnn_tensor *w, const int64_t x_size[4],
                        const int64_t w_size[4], const cnn_conv2d_params *p, cnn_tensor **gx, cnn_tensor **gw,
                        cnn_tensor **gb);

#endif
