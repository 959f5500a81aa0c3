/* Image resampling kernels on raw float planes (no tensors): resizing as PyTorch's
 * F.interpolate(align_corners=False) computes it for torchvision's resize, and the affine sampling
 * behind torchvision's rotate (grid_sample, align_corners=False, zero padding). Planes are
 * row-major; an input plane may be a window of a larger one (row_stride >= width), which is how a
 * crop and a resize become one pass. Serial: callers split planes or images over threads. */
#ifndef CNN_KERNELS_RESIZE_H
#define CNN_KERNELS_RESIZE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum cnn_interp { CNN_INTERP_NEAREST, CNN_INTERP_BILINEAR, CNN_INTERP_BICUBIC } cnn_interp;

/* in: `planes` planes of (ih, iw) floats, plane p's row y at in + p * plane_stride + y * row_stride;
 * out: planes of (oh, ow), contiguous. All sizes >= 1.
 *   NEAREST: PyTorch's legacy "nearest": source floor(o * (float)in / out), clamped.
 *   BILINEAR, BICUBIC with antialias: PyTorch's separable antialiased kernel (Pillow's filters:
 *     the triangle, and the cubic with a = -0.5, widened by the scale when downsampling and
 *     normalised over the taps inside the image); width first, then height.
 *   BILINEAR, BICUBIC without: the classic kernels (source (o + 0.5) * scale - 0.5; bilinear clamps
 *     it at 0, bicubic uses a = -0.75 and clamps the four taps' indices).
 * A dimension whose size does not change is copied. Weights are computed in float32 as ATen's are,
 * so results agree with torchvision to float rounding. Returns 0, or -1 with the error set (out of
 * memory for the weight tables and the one intermediate plane). */
int cnn_resize(const float *in, int64_t planes, int64_t plane_stride, int64_t row_stride, int64_t ih, int64_t iw,
               float *out, int64_t oh, int64_t ow, cnn_interp interp, bool antialias);

/* The same from bytes: in holds `channels` interleaved channels (row y at in + y * row_stride
 * bytes), each read as byte / 255 (the decoders' conversion, so the result equals cnn_resize of
 * the decoded float image); out gets one (oh, ow) plane per channel. */
int cnn_resize_u8(const uint8_t *in, int channels, int64_t row_stride, int64_t ih, int64_t iw, float *out, int64_t oh,
                  int64_t ow, cnn_interp interp, bool antialias);

/* out (planes, oh, ow) sampled from in (planes, ih, iw, contiguous) at the affine map theta: output
 * pixel (i, j), at (x, y) = (j + 0.5 - ow / 2, i + 0.5 - oh / 2) from the output's centre, reads
 * the input at (theta[0] x + theta[1] y + theta[2], theta[3] x + theta[4] y + theta[5]) from the
 * input's centre, as torchvision's _gen_affine_grid and grid_sample(align_corners=False, zero
 * padding) compute it, nearest (round half to even) or bilinear. With fill (one value per plane),
 * torchvision's fill step follows: nearest takes fill where the sample fell outside the input;
 * bilinear blends out * m + (1 - m) * fill with m the sampled coverage of the input. */
void cnn_affine_sample(const float *in, int64_t planes, int64_t ih, int64_t iw, float *out, int64_t oh, int64_t ow,
                       const float theta[6], bool bilinear, const float *fill);

#endif
