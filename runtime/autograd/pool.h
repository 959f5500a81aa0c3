/* 2-d pooling on float32 tensors: the checks and allocation around the kernels of kernels/pool.h
 * (parameters, window rules). Inputs are (N, C, H, W) or (C, H, W); every leading plane pools on
 * its own. No autograd here (see ops_conv.h). Functions returning cnn_tensor * return a new
 * reference or NULL with the error set; messages never carry the user's function name. */
#ifndef CNN_POOL_H
#define CNN_POOL_H

#include "cnn/tensor.h"
#include "kernels/pool.h"

/* Validates x and p and gives the output size (PyTorch's pooling_output_shape). */
int cnn_pool2d_check(const cnn_tensor *x, const cnn_pool2d_params *p, int64_t out_hw[2]);
/* The same for an input of that shape (any dtype). */
int cnn_pool2d_check_shape(int ndim, const int64_t *size, const cnn_pool2d_params *p, int64_t out_hw[2]);

/* x: (..., H, W) -> y: (..., oh, ow) and indices (int64, same shape): the 0-based flat position
 * (h * W + w) in its plane of each maximum (NaN counts as the maximum; first of ties). */
int cnn_pool_max2d_forward(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y, cnn_tensor **indices);
/* The same of relu(x): y = relu(y), and the index -1 where relu's gradient stops (y <= 0); a window
 * of padding alone stays -inf. */
int cnn_pool_max2d_relu_forward(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y, cnn_tensor **indices);
/* gy, indices: (..., oh, ow) -> gx: (..., H, W), each gy added at its argmax (none at index -1) */
cnn_tensor *cnn_pool_max2d_backward(const cnn_tensor *gy, const cnn_tensor *indices, int64_t H, int64_t W);

/* x: (..., H, W) -> y: (..., oh, ow) */
cnn_tensor *cnn_pool_avg2d_forward(const cnn_tensor *x, const cnn_pool2d_params *p);
/* gy: (..., oh, ow) -> gx: (..., H, W) for the forward on an H x W input with p */
cnn_tensor *cnn_pool_avg2d_backward(const cnn_tensor *gy, const cnn_pool2d_params *p, int64_t H, int64_t W);

/* x: (..., H, W) -> y: (..., oh, ow); output cell i averages rows floor(i*H/oh) .. ceil((i+1)*H/oh)-1
 * (same for columns). oh, ow >= 0. */
cnn_tensor *cnn_pool_adaptive_avg2d_forward(const cnn_tensor *x, int64_t oh, int64_t ow);
cnn_tensor *cnn_pool_adaptive_avg2d_backward(const cnn_tensor *gy, int64_t H, int64_t W);

#endif
