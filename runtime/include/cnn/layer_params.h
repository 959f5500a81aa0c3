/** The parameters of the convolution and pooling layers, as PyTorch names them: one struct each,
 * shared by the differentiable ops (ops_conv.h) and the raw kernels beneath them. Start from the
 * defaults and set what differs. No tensors here. */
#ifndef CNN_LAYER_PARAMS_H
#define CNN_LAYER_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** How a 2-d convolution slides its filters over the input. */
typedef struct cnn_conv2d_params {
  int64_t stride[2];   /* (h, w), >= 1 */
  int64_t pad_lo[2];   /* zeros before row 0 / column 0, >= 0 */
  int64_t pad_hi[2];   /* zeros after the last row / column, >= 0 */
  int64_t dilation[2]; /* >= 1 */
  int64_t groups;      /* >= 1, divides C and O */
} cnn_conv2d_params;

/** Every parameter 1 / 0 and groups 1: stride 1, no padding, no dilation. */
cnn_conv2d_params cnn_conv2d_default_params(void);

/** The window of a 2-d pooling (max, average). */
typedef struct cnn_pool2d_params {
  int64_t kernel[2];      /* (h, w), >= 1 */
  int64_t stride[2];      /* >= 1 */
  int64_t padding[2];     /* >= 0 and at most half the kernel: -inf (max) or 0 (avg) on both sides */
  int64_t dilation[2];    /* max only, >= 1 */
  bool ceil_mode;         /* round the output size up; the last window must start in the input or left padding */
  bool count_include_pad; /* avg only: divide by the window clipped to the padded input, else to the input */
  int64_t divisor;        /* avg only: > 0 overrides the divisor */
} cnn_pool2d_params;

/** Kernel k (square), stride k, padding 0, dilation 1, count_include_pad, no ceil_mode. */
cnn_pool2d_params cnn_pool2d_default_params(int64_t k);

#ifdef __cplusplus
}
#endif
#endif
