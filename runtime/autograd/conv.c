/* The tensor front end of 2-d convolution (see conv.h): checks dtypes and shapes, makes the
 * operands contiguous, allocates the results and runs the float kernels of kernels/conv.c. */
#include "autograd/conv.h"

#include <limits.h>

#include "autograd/pool.h"
#include "kernels/conv_small_pool.h"
#include "core/checked.h"
#include "cnn/error.h"

static int check_param(const char *what, const int64_t v[2], int64_t min) {
  if (v[0] < min || v[1] < min)
    return cnn_error_set("%s must be %s, got (%lld, %lld)", what, min == 1 ? "at least 1" : "non-negative",
                         (long long)v[0], (long long)v[1]);
  return 0;
}

int cnn_conv2d_check(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_conv2d_params *p,
                     int64_t out_hw[2]) {
  /* float32, or int64 throughout (PyTorch's exact integer convolution, forward only) */
  if (x->dtype != CNN_FLOAT32 && x->dtype != CNN_INT64)
    return cnn_error_set("expected a float32 or int64 input, got %s", cnn_dtype_name(x->dtype));
  if (w->dtype != x->dtype)
    return cnn_error_set("weight has dtype %s but the input has %s", cnn_dtype_name(w->dtype),
                         cnn_dtype_name(x->dtype));
  if (b && b->dtype != x->dtype)
    return cnn_error_set("bias has dtype %s but the input has %s", cnn_dtype_name(b->dtype), cnn_dtype_name(x->dtype));
  if (x->ndim != 4) return cnn_error_set("expected a 4-d input (N, C, H, W), got %d-d", x->ndim);
  if (w->ndim != 4) return cnn_error_set("weight must be 4-d (out, in/groups, kH, kW), got %d-d", w->ndim);
  if (check_param("stride", p->stride, 1) || check_param("dilation", p->dilation, 1) ||
      check_param("padding", p->pad_lo, 0) || check_param("padding", p->pad_hi, 0))
    return -1;
  if (p->groups < 1) return cnn_error_set("groups must be at least 1, got %lld", (long long)p->groups);
  for (int i = 0; i < 2; i++) /* keeps every size computation below far from int64 overflow */
    if (p->stride[i] > INT_MAX || p->dilation[i] > INT_MAX || p->pad_lo[i] > INT_MAX || p->pad_hi[i] > INT_MAX ||
        p->groups > INT_MAX)
      return cnn_error_set("stride, padding, dilation and groups must be below 2^31");
  int64_t O = w->size[0], Cg = w->size[1], kh = w->size[2], kw = w->size[3], g = p->groups, C;
  if (O % g)
    return cnn_error_set("weight has %lld output channels, not divisible by groups=%lld", (long long)O, (long long)g);
  if (!cnn_mul_ok(Cg, g, &C))
    return cnn_error_set("weight's %lld input channels times groups=%lld overflows", (long long)Cg, (long long)g);
  if (x->size[1] != C)
    return cnn_error_set("input has %lld channels but weight expects %lld (groups=%lld)", (long long)x->size[1],
                         (long long)C, (long long)g);
  if (kh < 1 || kw < 1)
    return cnn_error_set("kernel size must be at least 1, got (%lld, %lld)", (long long)kh, (long long)kw);
  if (b && (b->ndim != 1 || b->size[0] != O))
    return cnn_error_set("bias must be 1-d with %lld elements (one per output channel), got %s%lld%s", (long long)O,
                         b->ndim == 1 ? "shape (" : "a ", b->ndim == 1 ? (long long)b->size[0] : (long long)b->ndim,
                         b->ndim == 1 ? ")" : "-d tensor");
  /* sizes are below 2^60 (tensor.c) and the parameters below 2^31, so only the dilated extent
   * d * (k - 1) + 1 and the products below can overflow (an expanded weight may be huge) */
  int64_t H = x->size[2] + p->pad_lo[0] + p->pad_hi[0], W = x->size[3] + p->pad_lo[1] + p->pad_hi[1];
  int64_t eh, ew;
  if (!cnn_mul_ok(p->dilation[0], kh - 1, &eh) || !cnn_mul_ok(p->dilation[1], kw - 1, &ew))
    return cnn_error_set("kernel (%lld, %lld) with dilation (%lld, %lld) spans more than 2^63 elements", (long long)kh,
                         (long long)kw, (long long)p->dilation[0], (long long)p->dilation[1]);
  eh++, ew++;
  if (eh > H || ew > W) {
    if (p->dilation[0] == 1 && p->dilation[1] == 1)
      return cnn_error_set("kernel (%lld, %lld) is larger than the padded input (%lld, %lld)", (long long)kh,
                           (long long)kw, (long long)H, (long long)W);
    return cnn_error_set("kernel (%lld, %lld) with dilation (%lld, %lld) spans (%lld, %lld), larger than the padded "
                         "input (%lld, %lld)",
                         (long long)kh, (long long)kw, (long long)p->dilation[0], (long long)p->dilation[1],
                         (long long)eh, (long long)ew, (long long)H, (long long)W);
  }
  int64_t oh = (H - eh) / p->stride[0] + 1, ow = (W - ew) / p->stride[1] + 1, K, Lc, HW;
  /* BLAS takes int dimensions */
  if (!cnn_mul_ok(Cg, kh, &K) || !cnn_mul_ok(K, kw, &K) || K > INT_MAX || !cnn_mul_ok(oh, ow, &Lc) || Lc > INT_MAX ||
      O > INT_MAX || !cnn_mul_ok(x->size[2], x->size[3], &HW) || HW > INT_MAX)
    return cnn_error_set("convolution too large (a GEMM dimension exceeds %d)", INT_MAX);
  /* im2col copies the zero-padded rows the windows read ((oh - 1) s + eh of them, each (ow - 1) s + ew
   * wide); huge padding with a huge stride gives a small output over an unaddressable padded input */
  int64_t hp = (oh - 1) * p->stride[0] + eh, wp = (ow - 1) * p->stride[1] + ew, padded;
  if (!cnn_mul_ok(Cg, hp, &padded) || !cnn_mul_ok(padded, wp, &padded) || padded > ((int64_t)1 << 48))
    return cnn_error_set("padding (%lld, %lld) makes the zero-padded input (%lld, %lld, %lld) too large (more than "
                         "2^48 elements)",
                         (long long)p->pad_lo[0], (long long)p->pad_lo[1], (long long)Cg, (long long)hp, (long long)wp);
  out_hw[0] = oh, out_hw[1] = ow;
  return 0;
}

static cnn_conv2d_shape shape_of(const int64_t x_size[4], const int64_t w_size[4]) {
  cnn_conv2d_shape s = {x_size[0], x_size[1], x_size[2], x_size[3], w_size[0], w_size[2], w_size[3]};
  return s;
}

/* scale (O) and residual (the output's shape) as the epilogue wants them: float32, contiguous */
static int check_epilogue(const cnn_tensor *x, const cnn_tensor *scale, const cnn_tensor *residual,
                          const int64_t ysize[4]) {
  if ((scale || residual) && x->dtype != CNN_FLOAT32) return cnn_error_set("scale and residual need float32 tensors");
  if (scale && (scale->dtype != CNN_FLOAT32 || scale->ndim != 1 || scale->size[0] != ysize[1]))
    return cnn_error_set("scale must be a float32 vector of the %lld output channels", (long long)ysize[1]);
  if (residual) {
    bool same = residual->dtype == CNN_FLOAT32 && residual->ndim == 4;
    for (int i = 0; same && i < 4; i++) same = residual->size[i] == ysize[i];
    if (!same)
      return cnn_error_set("residual must be a float32 tensor of the output's shape (%lld, %lld, %lld, %lld)",
                           (long long)ysize[0], (long long)ysize[1], (long long)ysize[2], (long long)ysize[3]);
  }
  return 0;
}

static cnn_tensor *forward(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, const cnn_conv2d_params *p,
                           const cnn_tensor *scale, const cnn_tensor *residual, bool relu) {
  int64_t ohw[2];
  if (cnn_conv2d_check(x, w, b, p, ohw)) return NULL;
  cnn_conv2d_shape s = shape_of(x->size, w->size);
  int64_t ysize[4] = {s.N, s.O, ohw[0], ohw[1]};
  if (check_epilogue(x, scale, residual, ysize)) return NULL;
  cnn_tensor *y = cnn_tensor_empty(x->dtype, 4, ysize);
  cnn_tensor *xc = y ? cnn_tensor_contiguous(x) : NULL;
  cnn_tensor *wc = xc ? cnn_tensor_contiguous(w) : NULL;
  cnn_tensor *bc = wc && b ? cnn_tensor_contiguous(b) : NULL;
  cnn_tensor *sc = wc && scale ? cnn_tensor_contiguous(scale) : NULL;
  cnn_tensor *rc = wc && residual ? cnn_tensor_contiguous(residual) : NULL;
  bool ok = y && xc && wc && (!b || bc) && (!scale || sc) && (!residual || rc);
  if (ok && x->dtype == CNN_INT64) {
    int64_t *yi = cnn_tensor_i64(y);
    cnn_conv2d_forward_i64(&s, p, cnn_tensor_i64(xc), cnn_tensor_i64(wc), bc ? cnn_tensor_i64(bc) : NULL, yi);
    if (relu)
      for (int64_t i = 0, n = cnn_tensor_numel(y); i < n; i++) yi[i] = yi[i] < 0 ? 0 : yi[i];
  } else if (ok) {
    cnn_conv2d_epilogue e = {sc ? cnn_tensor_f32(sc) : NULL, rc ? cnn_tensor_f32(rc) : NULL, relu};
    ok = !cnn_conv2d_forward_fused_f32(&s, p, cnn_tensor_f32(xc), cnn_tensor_f32(wc), bc ? cnn_tensor_f32(bc) : NULL,
                                       &e, cnn_tensor_f32(y));
  }
  if (!ok) {
    cnn_tensor_release(y);
    y = NULL;
  }
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(bc);
  cnn_tensor_release(sc);
  cnn_tensor_release(rc);
  return y;
}

cnn_tensor *cnn_conv2d_forward(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p) {
  return forward(x, w, b, p, NULL, NULL, false);
}

cnn_tensor *cnn_conv2d_forward_relu(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                    const cnn_conv2d_params *p) {
  return forward(x, w, b, p, NULL, NULL, true);
}

cnn_tensor *cnn_conv2d_forward_fused(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                     const cnn_tensor *scale, const cnn_tensor *residual, bool relu,
                                     const cnn_conv2d_params *p) {
  return forward(x, w, b, p, scale, residual, relu);
}

/* the pooling of images [n0, n1): their O planes each */
typedef struct {
  const cnn_pool2d_params *pp;
  cnn_pool2d_shape s;
  const float *y;
  float *pooled;
  int64_t *idx, O;
} pool_then;

static void pool_images(void *arg, int64_t n0, int64_t n1) {
  const pool_then *t = arg;
  cnn_pool_max2d_relu_planes_f32(t->pp, &t->s, t->y, t->pooled, t->idx, n0 * t->O, n1 * t->O);
}

int cnn_conv2d_forward_relu_max_pool(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                     const cnn_conv2d_params *p, const cnn_pool2d_params *pp, cnn_tensor **y,
                                     cnn_tensor **pooled, cnn_tensor **indices) {
  if (y) *y = NULL;
  *pooled = *indices = NULL;
  int64_t ohw[2], phw[2];
  if (cnn_conv2d_check(x, w, b, p, ohw)) return -1;
  if (x->dtype != CNN_FLOAT32) return cnn_error_set("expected a float32 input, got %s", cnn_dtype_name(x->dtype));
  cnn_conv2d_shape s = shape_of(x->size, w->size);
  int64_t ysize[4] = {s.N, s.O, ohw[0], ohw[1]};
  if (cnn_pool2d_check_shape(4, ysize, pp, phw)) return -1;
  int64_t psize[4] = {s.N, s.O, phw[0], phw[1]};
  cnn_tensor *rp = cnn_tensor_empty(CNN_FLOAT32, 4, psize), *ry = NULL, *ri = NULL;
  cnn_tensor *xc = rp ? cnn_tensor_contiguous(x) : NULL;
  cnn_tensor *wc = xc ? cnn_tensor_contiguous(w) : NULL;
  cnn_tensor *bc = wc && b ? cnn_tensor_contiguous(b) : NULL;
  int rc = -1;
  if (!y && wc && (!b || bc)) { /* y not wanted: conv_small_pool.c never stores it, where it takes the shape */
    ri = cnn_tensor_empty(CNN_UINT8, 4, psize);
    rc = ri ? cnn_conv2d_relu_max_pool_small_f32(&s, p, pp, phw, cnn_tensor_f32(xc), cnn_tensor_f32(wc),
                                                 bc ? cnn_tensor_f32(bc) : NULL, cnn_tensor_f32(rp), cnn_tensor_u8(ri))
            : -1;
    if (rc == 1) cnn_tensor_release(ri), ri = NULL;
  } else if (wc && (!b || bc)) {
    rc = 1;
  }
  if (rc == 1) { /* the convolution stored, each image pooled as soon as it is */
    ry = cnn_tensor_empty(CNN_FLOAT32, 4, ysize);
    ri = ry ? cnn_tensor_empty(CNN_INT64, 4, psize) : NULL;
    rc = -1;
    if (ri) {
      pool_then t = {.pp = pp,
                     .s = {s.N * s.O, ohw[0], ohw[1], phw[0], phw[1]},
                     .y = cnn_tensor_f32(ry),
                     .pooled = cnn_tensor_f32(rp),
                     .idx = cnn_tensor_i64(ri),
                     .O = s.O};
      const cnn_conv2d_then then = {pool_images, &t};
      rc = cnn_conv2d_forward_then_f32(&s, p, cnn_tensor_f32(xc), cnn_tensor_f32(wc), bc ? cnn_tensor_f32(bc) : NULL,
                                       cnn_tensor_f32(ry), &then);
    }
  }
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(bc);
  if (rc) {
    cnn_tensor_release(ry);
    cnn_tensor_release(rp);
    cnn_tensor_release(ri);
    return -1;
  }
  if (y) *y = ry;
  else cnn_tensor_release(ry);
  *pooled = rp, *indices = ri;
  return 0;
}

cnn_tensor *cnn_conv2d_unpool_codes(const cnn_tensor *gpooled, const cnn_tensor *codes, int64_t oh, int64_t ow) {
  if (codes->dtype != CNN_UINT8 || codes->ndim != 4 || gpooled->dtype != CNN_FLOAT32 ||
      !cnn_tensor_same_shape(gpooled, codes) || !cnn_tensor_is_contiguous(codes) || 2 * codes->size[2] > oh ||
      2 * codes->size[3] > ow)
    return cnn_error_set("internal: the pooling's gradient does not match its window codes"), NULL;
  int64_t size[4] = {codes->size[0], codes->size[1], oh, ow};
  cnn_tensor *gy = cnn_tensor_empty(CNN_FLOAT32, 4, size);
  cnn_tensor *gc = gy ? cnn_tensor_contiguous(gpooled) : NULL;
  if (!gc) {
    cnn_tensor_release(gy);
    return NULL;
  }
  cnn_spool_unpool_f32(cnn_tensor_f32(gc), cnn_tensor_u8(codes), size[0] * size[1], oh, ow, codes->size[2],
                       codes->size[3], cnn_tensor_f32(gy));
  cnn_tensor_release(gc);
  return gy;
}

int cnn_conv2d_relu_max_pool_backward_codes(const cnn_tensor *gpooled, const cnn_tensor *codes, const cnn_tensor *x,
                                            const cnn_tensor *w, const int64_t x_size[4], const int64_t w_size[4],
                                            const cnn_conv2d_params *p, cnn_tensor **gx, cnn_tensor **gw,
                                            cnn_tensor **gb) {
  if (gx) *gx = NULL;
  if (gw) *gw = NULL;
  if (gb) *gb = NULL;
  if ((gx && !w) || (gw && !x)) return cnn_error_set("internal: conv2d backward is missing a saved tensor");
  if (codes->dtype != CNN_UINT8 || gpooled->dtype != CNN_FLOAT32 || !cnn_tensor_same_shape(gpooled, codes) ||
      !cnn_tensor_is_contiguous(codes) || p->groups != 1 || w_size[1] != x_size[1])
    return 1;
  int64_t O = w_size[0];
  cnn_tensor *gc = cnn_tensor_contiguous(gpooled);
  cnn_tensor *xc = gc && gw ? cnn_tensor_contiguous(x) : NULL;
  cnn_tensor *wc = gc && gx ? cnn_tensor_contiguous(w) : NULL;
  cnn_tensor *rx = gx ? cnn_tensor_empty(CNN_FLOAT32, 4, x_size) : NULL;
  cnn_tensor *rw = gw ? cnn_tensor_empty(CNN_FLOAT32, 4, w_size) : NULL;
  cnn_tensor *rb = gb ? cnn_tensor_empty(CNN_FLOAT32, 1, &O) : NULL;
  int rc = -1;
  if (gc && (!gw || (xc && rw)) && (!gx || (wc && rx)) && (!gb || rb)) {
    cnn_conv2d_shape s = shape_of(x_size, w_size);
    rc = cnn_conv2d_relu_max_pool_small_backward_f32(
        &s, p, cnn_tensor_f32(gc), cnn_tensor_u8(codes), xc ? cnn_tensor_f32(xc) : NULL, wc ? cnn_tensor_f32(wc) : NULL,
        rx ? cnn_tensor_f32(rx) : NULL, rw ? cnn_tensor_f32(rw) : NULL, rb ? cnn_tensor_f32(rb) : NULL);
  }
  cnn_tensor_release(gc);
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  if (rc) {
    cnn_tensor_release(rx);
    cnn_tensor_release(rw);
    cnn_tensor_release(rb);
    return rc;
  }
  if (gx) *gx = rx;
  if (gw) *gw = rw;
  if (gb) *gb = rb;
  return 0;
}

int cnn_conv2d_backward(const cnn_tensor *gy, const cnn_tensor *x, const cnn_tensor *w, const int64_t x_size[4],
                        const int64_t w_size[4], const cnn_conv2d_params *p, cnn_tensor **gx, cnn_tensor **gw,
                        cnn_tensor **gb) {
  if (gx) *gx = NULL;
  if (gw) *gw = NULL;
  if (gb) *gb = NULL;
  if ((gx && !w) || (gw && !x)) return cnn_error_set("internal: conv2d backward is missing a saved tensor");
  if (check_param("stride", p->stride, 1) || check_param("dilation", p->dilation, 1) ||
      check_param("padding", p->pad_lo, 0) || check_param("padding", p->pad_hi, 0))
    return -1;
  if (p->groups < 1 || w_size[1] * p->groups != x_size[1] || w_size[0] % p->groups)
    return cnn_error_set("internal: conv2d backward given inconsistent shapes");
  int64_t N = x_size[0], C = x_size[1], O = w_size[0], kh = w_size[2], kw = w_size[3];
  int64_t oh = (x_size[2] + p->pad_lo[0] + p->pad_hi[0] - p->dilation[0] * (kh - 1) - 1) / p->stride[0] + 1;
  int64_t ow = (x_size[3] + p->pad_lo[1] + p->pad_hi[1] - p->dilation[1] * (kw - 1) - 1) / p->stride[1] + 1;
  if (gy->dtype != CNN_FLOAT32 || gy->ndim != 4 || gy->size[0] != N || gy->size[1] != O || gy->size[2] != oh ||
      gy->size[3] != ow)
    return cnn_error_set("output gradient has the wrong shape or dtype");
  if ((x && (x->ndim != 4 || x->size[1] != C || x->size[0] != N)) || (w && (w->ndim != 4 || w->size[0] != O)))
    return cnn_error_set("internal: conv2d backward given tensors of the wrong shape");

  cnn_tensor *gyc = cnn_tensor_contiguous(gy);
  cnn_tensor *xc = gyc && gw ? cnn_tensor_contiguous(x) : NULL;
  cnn_tensor *wc = gyc && gx ? cnn_tensor_contiguous(w) : NULL;
  cnn_tensor *rx = gx ? cnn_tensor_empty(CNN_FLOAT32, 4, x_size) : NULL;
  cnn_tensor *rw = gw ? cnn_tensor_empty(CNN_FLOAT32, 4, w_size) : NULL;
  cnn_tensor *rb = gb ? cnn_tensor_empty(CNN_FLOAT32, 1, &O) : NULL;
  if (!gyc || (gw && (!xc || !rw)) || (gx && (!wc || !rx)) || (gb && !rb)) goto fail;

  const float *gyp = cnn_tensor_f32(gyc);
  cnn_conv2d_shape s = shape_of(x_size, w_size);
  if (rb && !rw) cnn_conv2d_bias_grad_f32(&s, p, gyp, cnn_tensor_f32(rb));
  if (rw && rx) {
    if (cnn_conv2d_backward_f32(&s, p, gyp, cnn_tensor_f32(xc), cnn_tensor_f32(wc), cnn_tensor_f32(rx),
                                cnn_tensor_f32(rw), rb ? cnn_tensor_f32(rb) : NULL))
      goto fail;
  } else {
    if (rw &&
        cnn_conv2d_weight_grad_f32(&s, p, gyp, cnn_tensor_f32(xc), cnn_tensor_f32(rw), rb ? cnn_tensor_f32(rb) : NULL))
      goto fail;
    if (rx && cnn_conv2d_input_grad_f32(&s, p, gyp, cnn_tensor_f32(wc), cnn_tensor_f32(rx))) goto fail;
  }
  cnn_tensor_release(gyc);
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  if (gx) *gx = rx;
  if (gw) *gw = rw;
  if (gb) *gb = rb;
  return 0;
fail:
  cnn_tensor_release(gyc);
  cnn_tensor_release(xc);
  cnn_tensor_release(wc);
  cnn_tensor_release(rx);
  cnn_tensor_release(rw);
  cnn_tensor_release(rb);
  return -1;
}
