/* A stride-1 convolution + bias + ReLU + 2x2/stride-2 max pooling of small planes in one pass, with
 * the batch in the vector lanes (see conv_small_pool.c): LeNet's two convolution stages. Only the
 * pooled output and its argmax indices are written; the convolution's output never is. */
#ifndef CNN_CONV_SMALL_POOL_H
#define CNN_CONV_SMALL_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/conv.h"

/* The window codes: 0..3 the cell of the 2x2 window that took the maximum, in scan order ((0, 0),
 * (0, 1), (1, 0), (1, 1)); CNN_SPOOL_NONE where relu's gradient stops. */
#define CNN_SPOOL_NONE 4

/* x (N, C, H, W), w (O, C, kh, kw), b (O) or NULL, stride 1, no dilation, one group, and the max
 * pooling pp -> pooled, code (N, O, oh / 2, ow / 2): relu(max_pool2d(conv2d(x, w, b))), the same
 * bits as the convolution of conv.c followed by cnn_pool_max2d_relu_forward_f32, and the code of
 * each output's window cell where that gives the index (a flat position in the convolution's
 * (oh, ow) plane), CNN_SPOOL_NONE where it gives -1. Returns 0, -1 with the error set (out of
 * memory), or 1 when the shape is not one these kernels take (nothing written): the pooling must
 * be 2x2 at stride 2 without padding or dilation, its output (oh / 2, ow / 2), the planes small,
 * the batch mostly filling the lanes. CNN_CONV_POOL=0 in the environment (read once) turns it
 * off, for A/B measurements. */
int cnn_conv2d_relu_max_pool_small_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p,
                                       const cnn_pool2d_params *pp, const int64_t pooled_hw[2], const float *x,
                                       const float *w, const float *b, float *pooled, uint8_t *code);

/* The pooling's backward from the codes: g, code (P, ph, pw) -> gy (P, oh, ow), every cell written:
 * the bits of cnn_pool_max2d_backward_f32 given the indices the codes stand for. */
void cnn_spool_unpool_f32(const float *g, const uint8_t *code, int64_t P, int64_t oh, int64_t ow, int64_t ph,
                          int64_t pw, float *gy);

/* The backward of cnn_conv2d_relu_max_pool_small_f32 from its pooled gradient g and codes (N, O,
 * ph, pw): gx (N, C, H, W, reads w), gw (O, C, kh, kw, reads x), gb (O), each NULL when not wanted
 * (gx or gw wanted), with the bits cnn_conv2d_backward_f32 gives on cnn_spool_unpool_f32's output
 * (conv_small.c's orders); the convolution's gradient is made in the lanes and never stored.
 * Returns 0, -1 with the error set (out of memory), or 1 when this does not apply (nothing
 * written): where the separate backward would not take conv_small.c's kernels, with weights not
 * finite for gx, or CNN_CONV_POOL=0. */
int cnn_conv2d_relu_max_pool_small_backward_f32(const cnn_conv2d_shape *s, const cnn_conv2d_params *p, const float *g,
                                                const uint8_t *code, const float *x, const float *w, float *gx,
                                                float *gw, float *gb);

/* Tests: turn the kernels on or off (whatever CNN_CONV_POOL says). */
void cnn_conv2d_set_small_pool(bool on);

#endif
