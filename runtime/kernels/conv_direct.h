/* Internal to conv.c: stride-1 convolutions computed straight from zero-padded planes, without a
 * column matrix (see conv_direct.c). conv.c owns the per-thread workspace and hands it in. */
#ifndef CNN_CONV_DIRECT_H
#define CNN_CONV_DIRECT_H

#include "core/parallel.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One stride-1 correlation of C planes (H, W), zero-padded by (pt, pl, pb, pr), with O filters of
 * (kh, kw): the forward pass, or the input gradient seen as a forward pass over the padded output
 * gradient with flipped, transposed filters. Filled by cnn_dconv_plan_*; read-only afterwards. */
typedef struct cnn_dconv {
  int64_t N, C, H, W, O, kh, kw;
  int64_t pt, pl, pb, pr;
  int64_t S, T, cs; /* slab strides of a row, an image and a channel (see conv_direct.c) */
  int64_t oh, ow;
  int64_t G;             /* images per slab (a unit of work) */
  int64_t Q, Qr;         /* positions per slab: G * T, rounded up to the tile width */
  int64_t span;          /* 0: a slab's positions run as one stretch; else each image's first span */
  int64_t Op;            /* O rounded up to the tile's rows */
  int mr, nv;            /* tile: mr filters x nv vectors of positions (forward), mr x nv taps (weight grad) */
  int lanes;             /* weight grad: partial sums kept as vectors of this many lanes (or 1) */
  size_t slab_floats;    /* the slab and its zero tail */
  size_t scratch_floats; /* per-thread workspace a call needs */
  bool relu;             /* forward: max(0, .) as the output is stored (the plans set false) */
  bool prefetch;         /* forward: fetch the next slab's input and this slab's output while computing */
  const float *scale;    /* forward: (O) per-filter factors packed into the filters, or NULL (plans set) */
  const float *residual; /* forward: (N, O, oh, ow) added as the output is stored, or NULL (plans set) */
  /* forward: called with images [n0, n1) once the slab holding them is stored, on the thread that
   * stored them (the plans set NULL) */
  void (*then)(void *ctx, int64_t n0, int64_t n1);
  void *then_ctx;
} cnn_dconv;

/* True when (groups 1, stride 1, dilation 1, padding at most kernel - 1 on every side, kernel
 * bigger than 1x1) the direct kernels compute this convolution and its gradients. */
bool cnn_dconv_applies(int64_t kh, int64_t kw, const int64_t stride[2], const int64_t pad_lo[2],
                       const int64_t pad_hi[2], const int64_t dilation[2], int64_t groups);

/* Plans for x (N, C, H, W), w (O, C, kh, kw), padding (pt, pl, pb, pr) on nt threads. */
void cnn_dconv_plan_forward(cnn_dconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                            int64_t pt, int64_t pl, int64_t pb, int64_t pr, int nt);
void cnn_dconv_plan_input_grad(cnn_dconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                               int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int nt);
void cnn_dconv_plan_weight_grad(cnn_dconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int nt);

/* A plan's workspace per thread is bounded by nothing but the image: whole-image slabs of a
 * 64-channel 1000x1000 input would take 512 MB a thread. conv.c takes the im2col path (whose
 * column bands are bounded) when scratch_floats passes this. */
#define CNN_DCONV_MAX_SCRATCH ((size_t)16 << 20) /* floats: 64 MB */

/* Floats of the packed filters a plan's call needs (the caller allocates them, 64-byte aligned). */
size_t cnn_dconv_packed_floats(const cnn_dconv *d);

/* All arrays contiguous float32; ws: nt per-thread buffers of d->scratch_floats, 64-byte aligned;
 * pack: cnn_dconv_packed_floats(d) floats.
 * forward:     x (N, C, H, W), w (O, C, kh, kw), b (O) or NULL -> y (N, O, oh, ow)
 * input_grad:  gy (N, O, oh, ow), w -> gx (N, C, H, W)            (plan: cnn_dconv_plan_input_grad)
 * weight_grad: gy, x -> gw (O, C, kh, kw), summed over the batch    (plan: cnn_dconv_plan_weight_grad) */
void cnn_dconv_forward(const cnn_dconv *d, const float *x, const float *w, const float *b, float *y, float *pack,
                       float *const *ws, int nt);
/* beside: a loop (or NULL) run in the same parallel job as the input gradient's slabs */
void cnn_dconv_input_grad(const cnn_dconv *d, const float *gy, const float *w, float *gx, float *pack, float *const *ws,
                          int nt, const cnn_parallel_loop *beside);

/* The weight gradient's second pass, its per-thread partials (in ws) summed into gw, as a loop
 * over gw's elements (ctx: the struct itself), for running beside other work. */
typedef struct cnn_dconv_sum {
  const cnn_dconv *d;
  float *const *ws;
  int64_t parts;
  float *gw;
  cnn_parallel_loop loop;
} cnn_dconv_sum;

/* beside: a loop (or NULL) run in the same parallel job as the weight gradient's parts. later:
 * NULL, or where to leave the sum instead of running it: gw is then complete once later->loop
 * has run (d and ws must live until then). Returns 1, or 0 when x holds an inf or a NaN: the
 * direct weight gradient pairs x with zeros im2col never multiplies (0 * inf is NaN where PyTorch
 * has none), so gw is then left for the caller to compute another way (the check rides on the
 * slabs' copies of x instead of a pass over x of its own). */
int cnn_dconv_weight_grad(const cnn_dconv *d, const float *gy, const float *x, float *gw, float *const *ws, int nt,
                          const cnn_parallel_loop *beside, cnn_dconv_sum *later);

#endif
