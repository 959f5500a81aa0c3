/* Internal to conv.c: Winograd F(2x2, 3x3) for 3x3 stride-1 layers padded by 1 on every side, the
 * forward pass, (over the output gradient, with flipped and transposed filters) the input gradient
 * and the weight gradient, on the AVX-512 kernel. See conv_winograd.c. conv.c owns the workspace
 * and hands it in. */
#ifndef CNN_CONV_WINOGRAD_H
#define CNN_CONV_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One correlation of C planes (H, W) with O filters of 3x3, padding 1, stride 1: x (N, C, H, W) ->
 * y (N, O, H, W). Filled by cnn_wconv_plan; read-only afterwards but for the epilogue fields. */
typedef struct cnn_wconv {
  int64_t N, C, H, W, O;
  int64_t th, tw;        /* tiles (2x2 outputs each) down and across a plane */
  int64_t R, P;          /* a unit of work: R tile rows of an image, or (R = th) P whole images */
  int64_t bands, units;  /* units across an image's rows (ceil(th / R)) and in all */
  size_t scratch_floats; /* per-thread workspace */
  /* the forward's epilogue, as conv.h's cnn_conv2d_epilogue (the plan sets none) */
  const float *scale, *residual;
  bool relu;
} cnn_wconv;

/* Whether this build and CPU run the kernel (AVX-512) and it is switched on: CNN_CONV_WINOGRAD=0 in
 * the environment, or cnn_wconv_set_enabled(false), leaves every layer to the other kernels. */
bool cnn_wconv_enabled(void);
void cnn_wconv_set_enabled(bool on);

/* Plans x (N, C, H, W) with O filters on nt threads, for the forward or input gradient, or for the
 * weight gradient. False when the kernel does not pay for the shape (measured: few channels, small
 * planes, few tiles in the batch) or is not enabled: the caller takes another kernel. */
bool cnn_wconv_plan(cnn_wconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, bool weight_grad, int nt);

/* Floats of the transformed filters (16 * O * C). */
size_t cnn_wconv_filter_floats(const cnn_wconv *d);
/* The transformed filters u of w: for the forward, w is (O, C, 3, 3); for an input gradient
 * (d planned with C the forward's filters and O its channels), flipped is true and w is the
 * forward's (C, O, 3, 3) filters. */
void cnn_wconv_filters(const cnn_wconv *d, const float *w, bool flipped, float *u);

/* y (N, O, H, W) from x (N, C, H, W), the transformed filters and b (O) or NULL, with the plan's
 * epilogue; ws: per-thread buffers of scratch_floats, 64-byte aligned. Returns false, y partly
 * written, when x holds an inf or a NaN, or an output before the epilogue is not finite (values so
 * large that a transform or a product overflows): the transforms mix a tile's inputs, so one inf
 * would make NaNs of its neighbours' outputs, which the direct convolution keeps finite; the
 * caller then runs another kernel. */
bool cnn_wconv_run(const cnn_wconv *d, const float *x, const float *u, const float *b, float *y, float *const *ws);

/* gw (O, C, 3, 3), summed over the batch, from gy (N, O, H, W) and x (N, C, H, W); ws as for run;
 * partial: `parts` buffers of cnn_wconv_filter_floats(d) floats (parts: the thread count: part p sums
 * a fixed share of the tiles, the parts are added in order, so a thread count gives the same bits
 * whoever runs the parts). Returns false, gw untouched, when x or gy holds an inf or a NaN. Finite
 * values so large that the products overflow can still leave one in gw: the caller scans it. */
bool cnn_wconv_weight_grad(const cnn_wconv *d, const float *gy, const float *x, float *gw, float *const *ws,
                           float *const *partial, int parts);

#endif
