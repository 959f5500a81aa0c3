/* Internal to conv.c: stride-1 convolutions of small planes with the batch in the vector lanes
 * (see conv_small.c). conv.c owns the per-thread workspace and the packed filters and hands them in;
 * the filters are packed as conv_direct.c packs them, so both compute the same bits. */
#ifndef CNN_CONV_SMALL_H
#define CNN_CONV_SMALL_H

#include "core/parallel.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One stride-1 correlation of C planes (H, W), zero-padded by (pt, pl, pb, pr), with O filters of
 * (kh, kw), for a batch of N: as cnn_dconv (conv_direct.h), over groups of `lanes` images. */
typedef struct cnn_sconv {
  int64_t N, C, H, W, O, kh, kw;
  int64_t pt, pl, pb, pr;
  int64_t s;             /* stride (rows and columns): 1, or 2 for the forward and weight gradient */
  int64_t Hp, Wp;        /* the padded plane */
  int64_t oh, ow;        /* the output plane */
  int64_t owr;           /* output row rounded up to the tile width */
  int64_t Op;            /* O rounded up to the tile's rows */
  int64_t lanes;         /* images per group (the vector width) */
  int mr, nv;            /* tile: mr filters x nv positions of a row, each a vector of images */
  int64_t band;          /* output rows computed (then stored, or added into the partial) at a time */
  int64_t xrows;         /* padded input rows xg holds: Hp, or a band's band + kh - 1 (rowband) */
  bool rowband;          /* weight gradient: xg holds one band's input rows, filled per band */
  size_t xg_floats;      /* a group's padded input (C, xrows, Wp, lanes) and its zero tail */
  size_t scratch_floats; /* per-thread workspace: the group's input and output grids */
  bool relu;             /* forward: max(0, .) as the output is stored (the plans set false) */
  const float *scale;    /* forward: (O) factors packed into the filters, or NULL */
  const float *residual; /* forward: (N, O, oh, ow) added as the output is stored, or NULL */
  /* stride-2 input gradient (cnn_sconv_plan_input_grad_strided): C, H, W are gy's, O, oh, ow gx's,
   * pt, pl, pb, pr gy's zero border in xg; gx rows of parity p (2m + p) read gy rows m + a0[p] + t
   * for t < ka[p] with the kernel's row ki = kmax[p] - 2 t (columns: b0, kb, lmax); owr is yg's
   * row, two phases' owr / 2 positions interleaved */
  bool gx2;
  int64_t a0[2], ka[2], kmax[2], b0[2], kb[2], lmax[2];
  /* forward: called with images [n0, n1) once the group holding them is stored, on that thread */
  void (*then)(void *ctx, int64_t n0, int64_t n1);
  void *then_ctx;
} cnn_sconv;

/* Plans x (N, C, H, W), w (O, C, kh, kw), padding (pt, pl, pb, pr) with stride 1 (padding at most
 * kernel - 1, as cnn_dconv_applies). False when these kernels are not the better pick for the shape
 * (planes too big, too few images for the lanes, too many channels): take conv_direct.c then. */
bool cnn_sconv_plan_forward(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh, int64_t kw,
                            int64_t pt, int64_t pl, int64_t pb, int64_t pr);
/* The forward with stride s (1 or 2) in both dims. */
bool cnn_sconv_plan_forward_strided(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                    int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t s);
/* The input gradient as a forward pass over gy padded by kernel - 1 - pad (same arguments as the
 * forward's plan: the convolution's shape). */
bool cnn_sconv_plan_input_grad(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                               int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr);

/* The input gradient of a stride-2 convolution (the forward's arguments, s = 2): gx's four
 * phases (row and column parities) each a stride-1 correlation of gy with the kernel's taps of that
 * parity, flipped, interleaved as they are stored (no column matrix, no product of a zero
 * inserted between gy's positions). False when the shape is not the strided forward's. */
bool cnn_sconv_plan_input_grad_strided(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                       int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t s);

/* Floats of the packed filters (64-byte aligned, allocated by the caller). */
size_t cnn_sconv_packed_floats(const cnn_sconv *d);

/* ws: one buffer of d->scratch_floats per thread (64-byte aligned).
 * forward:    x (N, C, H, W), w (O, C, kh, kw), b (O) or NULL -> y (N, O, oh, ow)
 * input_grad: gy (N, O, oh, ow), w -> gx (N, C, H, W); beside: a loop (or NULL) run in the same job */
void cnn_sconv_forward(const cnn_sconv *d, const float *x, const float *w, const float *b, float *y, float *pack,
                       float *const *ws);
void cnn_sconv_input_grad(const cnn_sconv *d, const float *gy, const float *w, float *gx, float *pack, float *const *ws,
                          const cnn_parallel_loop *beside);
/* the same for a plan of cnn_sconv_plan_input_grad_strided */
void cnn_sconv_input_grad_strided(const cnn_sconv *d, const float *gy, const float *w, float *gx, float *pack,
                                  float *const *ws, const cnn_parallel_loop *beside);

/* The weight gradient: tiles of filters x taps over every output position of a group. */
bool cnn_sconv_plan_weight_grad(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr);

/* The weight gradient with stride s (1 or 2) in both dims. */
bool cnn_sconv_plan_weight_grad_strided(cnn_sconv *d, int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t kh,
                                        int64_t kw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t s);

/* The weight gradient's second pass, the per-thread partials (in ws) summed into gw, as a loop over
 * gw's elements (ctx: the struct itself), for running beside other work (as cnn_dconv_sum). */
typedef struct cnn_sconv_sum {
  const cnn_sconv *d;
  float *const *ws;
  int64_t parts;
  float *gw;
  cnn_parallel_loop loop;
} cnn_sconv_sum;

/* gy (N, O, oh, ow), x (N, C, H, W) -> gw (O, C, kh, kw) summed over the batch (plan:
 * cnn_sconv_plan_weight_grad; ws: nt buffers of scratch_floats). beside: a loop (or NULL) run in
 * the same job as the parts; later: NULL, or where to leave the sum instead of running it (gw is
 * complete once later->loop has run; d and ws must live until then). */
void cnn_sconv_weight_grad(const cnn_sconv *d, const float *gy, const float *x, float *gw, float *const *ws, int nt,
                           const cnn_parallel_loop *beside, cnn_sconv_sum *later);

#endif
