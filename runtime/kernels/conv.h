/* 2-d convolution kernels on float32 arrays (and a plain int64 forward), no tensors (the tensor front end is conv.h): the
 * cross-correlation of PyTorch's conv2d, by im2col bands + GEMM, or by the direct kernels of
 * conv_direct.c for stride-1 layers. Arrays are contiguous and row-major; shapes and parameters
 * were checked by the caller (cnn_conv2d_check). Scratch comes from the runtime allocator. */
#ifndef CNN_KERNELS_CONV_H
#define CNN_KERNELS_CONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnn/layer_params.h"

/* x: (N, C, H, W), w: (O, C/groups, kh, kw) -> y: (N, O, oh, ow), oh and ow as PyTorch computes them */
typedef struct cnn_conv2d_shape {
  int64_t N, C, H, W, O, kh, kw;
} cnn_conv2d_shape;

/* Each returns 0, or -1 with the error set when its scratch cannot be allocated.
 * forward:     x, w, b (O) or NULL -> y
 * input_grad:  gy (N, O, oh, ow), w -> gx (N, C, H, W)
 * weight_grad: gy, x -> gw (O, C/groups, kh, kw), summed over the batch, and gb as bias_grad
 *              when it is not NULL (in the same parallel loop)
 * bias_grad:   gy -> gb (O), summed over the batch and positions */
int cnn_conv2d_forward_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                           const float *b, float *y);
/* forward, then max(0, .) applied as each part of y is stored (inference: conv + bias + ReLU in one pass) */
int cnn_conv2d_forward_relu_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                                const float *b, float *y);
/* What a forward pass does to its output as it stores it (inference fusions): per output channel o,
 * y[n, o] = act(scale[o] * conv(x, w)[n, o] + b[o] + residual[n, o]), act max(0, .) with relu or
 * the identity. scale (O) and residual (N, O, oh, ow) may each be NULL (1 and 0). With the scale
 * a BatchNorm in eval mode costs nothing and no folded copy of w is made. */
typedef struct cnn_conv2d_epilogue {
  const float *scale, *residual;
  bool relu;
} cnn_conv2d_epilogue;
int cnn_conv2d_forward_fused_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                                 const float *b, const cnn_conv2d_epilogue *e, float *y);
/* forward, then then->fn(ctx, n0, n1) for every range of images as soon as their outputs are stored,
 * inside the same parallel loop on the direct kernels (while they are in the thread's cache), in a
 * loop of its own after im2col's; the ranges cover [0, N) once. fn must not depend on how the
 * images are grouped (it writes its own parts of its outputs). */
typedef struct cnn_conv2d_then {
  void (*fn)(void *ctx, int64_t n0, int64_t n1);
  void *ctx;
} cnn_conv2d_then;
int cnn_conv2d_forward_then_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *x, const float *w,
                                const float *b, float *y, const cnn_conv2d_then *then);
int cnn_conv2d_input_grad_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, const float *w,
                              float *gx);
int cnn_conv2d_weight_grad_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, const float *x,
                               float *gw, float *gb);
void cnn_conv2d_bias_grad_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, float *gb);
/* input_grad, weight_grad (and bias_grad when gb is not NULL) in one call, the same bits as the
 * three: on the direct kernels two parallel jobs instead of three (the weight gradient's partials
 * are summed beside the input gradient) */
int cnn_conv2d_backward_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *gy, const float *x,
                            const float *w, float *gx, float *gw, float *gb);
/* forward on int64 arrays (b may be NULL), exact with wrapping as PyTorch's; no gradients */
void cnn_conv2d_forward_i64(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const int64_t *x, const int64_t *w,
                            const int64_t *b, int64_t *y);

/* How stride-1 layers are computed: AUTO picks the direct kernels (no column matrix) where they
 * apply, IM2COL always builds columns. Process-wide; for tests and benchmarks. */
typedef enum { CNN_CONV2D_AUTO, CNN_CONV2D_IM2COL } cnn_conv2d_algorithm;
void cnn_conv2d_set_algorithm(cnn_conv2d_algorithm a);
cnn_conv2d_algorithm cnn_conv2d_get_algorithm(void);
/* Largest per-thread workspace (floats) a direct kernel may take before the layer goes to im2col,
 * whose column bands stay small; 0 restores the default (16M floats). For tests. */
void cnn_conv2d_set_direct_limit(size_t floats);
/* Whether stride-1 layers of small planes and few channels (LeNet's) take conv_small.c's kernels
 * (batch in the vector lanes) for the forward and input gradient: on unless CNN_CONV_SMALL=0 is in
 * the environment. The same bits either way. For tests and A/B measurements. */
void cnn_conv2d_set_small(bool on);
/* Whether the forward and weight gradient of wide layers on small planes (filters of 4 MiB or more
 * on planes of at most 64 outputs: ResNet's 512 channels at 7x7), and their input gradient at
 * stride 1, run as one product over a chunk of images instead of per-image bands: on unless
 * CNN_CONV_BATCH=0 is in the environment. y and gx get the same bits either way; gw is summed in another order (the same bits for any thread count). For
 * tests and A/B measurements. set_batch_floats: the column floats of a chunk (0: the default, 4M);
 * set_batch_min_filter: the smallest filter (O * C * kh * kw floats) that takes the path (0: the
 * default, 1M); for tests. */
void cnn_conv2d_set_batched(bool on);
void cnn_conv2d_set_batch_floats(size_t floats);
void cnn_conv2d_set_batch_min_filter(size_t floats);
/* Whether this convolution's forward and weight gradient take that path now. For tests. */
bool cnn_conv2d_takes_batched(const cnn_conv2d_shape *s, const cnn_conv2d_params *p);
/* Whether 3x3 stride-1 layers padded by 1 on every side, from 64 channels and filters on planes of
 * 12x12 and more with at least 256 2x2 tiles in the batch (ResNet's and VGG's; 64 tiles for the
 * weight gradient), compute their three passes by Winograd F(2x2, 3x3) (conv_winograd.c): on
 * where the build and CPU have AVX-512, unless CNN_CONV_WINOGRAD=0 is in the environment. Results
 * differ from the direct kernels' in the last bits: the forward and input gradient give the same
 * bits for any thread count, the weight gradient for a thread count. set_winograd: for tests and
 * A/B measurements; takes_winograd: whether this convolution's forward takes it now. */
void cnn_conv2d_set_winograd(bool on);
bool cnn_conv2d_takes_winograd(const cnn_conv2d_shape *s, const cnn_conv2d_params *p);
/* Whether cnn_conv2d_backward_f32 and its parts compute this convolution's weight gradient
 * (input_grad false) or input gradient (true; given finite weights, which the caller checks) on
 * conv_small.c's kernels: a fused kernel that computes their bits in their order may stand in. */
bool cnn_conv2d_small_grad(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, bool input_grad);

#endif
