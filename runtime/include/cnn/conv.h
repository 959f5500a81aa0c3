/* 2-d convolution (cross-correlation, as PyTorch's conv2d), float32: im2col per image + cblas_sgemm
 * forward, GEMM + col2im backward. No autograd here (see ops_conv.h). Padding may differ on the two
 * sides of a dim (padding="same" with an even kernel). Messages set on error never carry the
 * user-facing function's name. Functions returning cnn_tensor * return a new reference or NULL. */
#ifndef CNN_CONV_H
#define CNN_CONV_H

#include "tensor.h"

typedef struct cnn_conv2d_params {
  int64_t stride[2];   /* (h, w), >= 1 */
  int64_t pad_lo[2];   /* zeros before row 0 / column 0, >= 0 */
  int64_t pad_hi[2];   /* zeros after the last row / column, >= 0 */
  int64_t dilation[2]; /* >= 1 */
  int64_t groups;      /* >= 1, divides C and O */
} cnn_conv2d_params;

/* Every parameter 1 / 0 and groups 1. */
cnn_conv2d_params cnn_conv2d_default_params(void);

/* Validates x: (N, C, H, W), w: (O, C/g, kh, kw), b: (O) or NULL against p and gives the output
 * size (oh, ow). Returns 0, or -1 with a message such as "input has 3 channels but weight expects
 * 1 (groups=1)". */
int cnn_conv2d_check(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_conv2d_params *p,
                     int64_t out_hw[2]);

/* x: (N, C, H, W), w: (O, C/g, kh, kw), b: (O) or NULL -> y: (N, O, oh, ow). Any strides in. */
cnn_tensor *cnn_conv2d_forward(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p);

/* gy: (N, O, oh, ow) for a forward with input shape x_size (N, C, H, W) and weight shape w_size
 * (O, C/g, kh, kw). Computes each gradient whose out pointer is non-NULL, as a new contiguous
 * tensor: gx (x_size) reads w; gw (w_size) reads x; gb (O) reads only gy. x or w may be NULL when
 * no requested gradient reads it. Returns 0 or -1. */
int cnn_conv2d_backward(const cnn_tensor *gy, const cnn_tensor *x, const cnn_tensor *w, const int64_t x_size[4],
                        const int64_t w_size[4], const cnn_conv2d_params *p, cnn_tensor **gx, cnn_tensor **gw,
                        cnn_tensor **gb);

/* How stride-1 layers are computed: AUTO picks the direct kernels (no column matrix) where they
 * apply, IM2COL always builds columns. Process-wide; for tests and benchmarks. */
typedef enum { CNN_CONV2D_AUTO, CNN_CONV2D_IM2COL } cnn_conv2d_algorithm;
void cnn_conv2d_set_algorithm(cnn_conv2d_algorithm a);
cnn_conv2d_algorithm cnn_conv2d_get_algorithm(void);
/* Largest per-thread workspace (floats) a direct kernel may take before the layer goes to im2col,
 * whose column bands stay small; 0 restores the default (16M floats). For tests. */
void cnn_conv2d_set_direct_limit(size_t floats);

/* Frees the per-thread column buffers kept between calls (they grow to the largest layer seen). */
void cnn_conv2d_release_workspace(void);
/* Bytes the column buffers hold now. */
size_t cnn_conv2d_workspace_bytes(void);

#endif
