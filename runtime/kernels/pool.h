/* 2-d pooling kernels on float32 arrays, no tensors (the tensor front end is pool.h), with
 * PyTorch's window and divisor rules: max (argmax indices kept for the backward), average and
 * adaptive average. Arrays are contiguous: P planes of (H, W) in, P planes of (oh, ow) out. */
#ifndef CNN_KERNELS_POOL_H
#define CNN_KERNELS_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "cnn/layer_params.h"

/* PyTorch's pooling_output_shape: the output size of one dim. */
int64_t cnn_pool2d_out_size(int64_t in, int64_t k, int64_t pad, int64_t s, int64_t d, bool ceil_mode);

/* P planes of (H, W) in, P planes of (oh, ow) out. */
typedef struct cnn_pool2d_shape {
  int64_t P, H, W, oh, ow;
} cnn_pool2d_shape;

/* x -> y and idx: the 0-based flat position (h * W + w) in its plane of each maximum (NaN counts as
 * the maximum; first of ties) */
void cnn_pool_max2d_forward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *x, float *y,
                                int64_t *idx);
/* max pooling of relu(x) in one pass: y = relu(max), idx -1 where relu's gradient stops (y <= 0), and
 * -inf (idx -1) for a window of padding alone, as the pool of relu(x) gives */
void cnn_pool_max2d_relu_forward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *x, float *y,
                                     int64_t *idx);
/* the same for planes [pl0, pl1) only, on the calling thread (a convolution's epilogue) */
void cnn_pool_max2d_relu_planes_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *x, float *y,
                                    int64_t *idx, int64_t pl0, int64_t pl1);
/* gy, idx -> gx, each gy added at its argmax (none for an index of -1; every cell of gx written) */
void cnn_pool_max2d_backward_f32(const cnn_pool2d_shape *s, const float *gy, const int64_t *idx, float *gx);
/* x -> y */
void cnn_pool_avg2d_forward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *x, float *y);
/* int64 (PyTorch's integer average: the window sum divided by the divisor, truncated); no backward */
void cnn_pool_avg2d_forward_i64(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const int64_t *x, int64_t *y);
/* gy -> gx, added: gx must hold zeros on entry */
void cnn_pool_avg2d_backward_f32(const cnn_pool2d_params *p, const cnn_pool2d_shape *s, const float *gy, float *gx);
/* output cell i averages rows floor(i*H/oh) .. ceil((i+1)*H/oh)-1 (same for columns) */
void cnn_pool_adaptive_avg2d_forward_f32(const cnn_pool2d_shape *s, const float *x, float *y);
/* gy -> gx, added: gx must hold zeros on entry */
void cnn_pool_adaptive_avg2d_backward_f32(const cnn_pool2d_shape *s, const float *gy, float *gx);

#endif
