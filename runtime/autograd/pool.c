/* The tensor front end of pooling (see pool.h): checks, contiguous operands, result tensors,
 * then the float kernels of kernels/pool.c. */
#include "autograd/pool.h"

#include <stdint.h>

#include "cnn/error.h"

/* Checks a 3-d or 4-d shape with non-empty planes. */
static int check_shape(int ndim, const int64_t *size) {
  if (ndim != 3 && ndim != 4)
    return cnn_error_set("expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got %d-d", ndim);
  for (int d = ndim - 3; d < ndim; d++)
    if (size[d] == 0) return cnn_error_set("input has a zero-size dimension %d (only the batch may be empty)", d + 1);
  return 0;
}

/* Checks a 3-d or 4-d float32 input (or int64, for average pooling) with non-empty planes; gives
 * planes and H, W. */
static int check_input(const cnn_tensor *x, int64_t *planes) {
  if (x->dtype != CNN_FLOAT32 && x->dtype != CNN_INT64)
    return cnn_error_set("expected a float32 input, got %s", cnn_dtype_name(x->dtype));
  if (check_shape(x->ndim, x->size)) return -1;
  *planes = x->ndim == 4 ? x->size[0] * x->size[1] : x->size[0];
  return 0;
}

int cnn_pool2d_check(const cnn_tensor *x, const cnn_pool2d_params *p, int64_t out_hw[2]) {
  int64_t planes;
  if (check_input(x, &planes)) return -1;
  return cnn_pool2d_check_shape(x->ndim, x->size, p, out_hw);
}

int cnn_pool2d_check_shape(int ndim, const int64_t *size, const cnn_pool2d_params *p, int64_t out_hw[2]) {
  if (check_shape(ndim, size)) return -1;
  for (int i = 0; i < 2; i++) {
    if (p->kernel[i] < 1)
      return cnn_error_set("kernel size must be at least 1, got (%lld, %lld)", (long long)p->kernel[0],
                           (long long)p->kernel[1]);
    if (p->stride[i] < 1)
      return cnn_error_set("stride must be at least 1, got (%lld, %lld)", (long long)p->stride[0],
                           (long long)p->stride[1]);
    if (p->dilation[i] < 1)
      return cnn_error_set("dilation must be at least 1, got (%lld, %lld)", (long long)p->dilation[0],
                           (long long)p->dilation[1]);
    if (p->padding[i] < 0)
      return cnn_error_set("padding must be non-negative, got (%lld, %lld)", (long long)p->padding[0],
                           (long long)p->padding[1]);
    if (p->padding[i] > p->kernel[i] / 2)
      return cnn_error_set("padding (%lld, %lld) must be at most half the kernel size (%lld, %lld)",
                           (long long)p->padding[0], (long long)p->padding[1], (long long)p->kernel[0],
                           (long long)p->kernel[1]);
  }
  if (p->divisor < 0) return cnn_error_set("divisor_override must be positive, got %lld", (long long)p->divisor);
  for (int i = 0; i < 2; i++) /* keeps the output size computation far from int64 overflow */
    if (p->kernel[i] > INT32_MAX || p->stride[i] > INT32_MAX || p->dilation[i] > INT32_MAX)
      return cnn_error_set("kernel size, stride and dilation must be below 2^31");
  int64_t H = size[ndim - 2], W = size[ndim - 1];
  int64_t oh = cnn_pool2d_out_size(H, p->kernel[0], p->padding[0], p->stride[0], p->dilation[0], p->ceil_mode);
  int64_t ow = cnn_pool2d_out_size(W, p->kernel[1], p->padding[1], p->stride[1], p->dilation[1], p->ceil_mode);
  if (oh < 1 || ow < 1)
    return cnn_error_set("input (%lld, %lld) is too small for the window: the output would be (%lld, %lld)",
                         (long long)H, (long long)W, (long long)oh, (long long)ow);
  out_hw[0] = oh, out_hw[1] = ow;
  return 0;
}

/* Number of planes: the product of all dims but the last two. */
static int64_t lead_planes(const cnn_tensor *t) {
  int64_t P = 1;
  for (int d = 0; d < t->ndim - 2; d++) P *= t->size[d];
  return P;
}

/* A tensor shaped like x but with the last two dims (h, w). New reference. */
static cnn_tensor *new_plane_tensor(const cnn_tensor *like, int ndim, cnn_dtype dt, int64_t h, int64_t w, bool zero) {
  int64_t size[4];
  for (int d = 0; d < ndim - 2; d++) size[d] = like->size[d];
  size[ndim - 2] = h, size[ndim - 1] = w;
  return zero ? cnn_tensor_zeros(dt, ndim, size) : cnn_tensor_empty(dt, ndim, size);
}

/* The kernels' view of x with output (oh, ow): every leading dim folded into planes. */
static cnn_pool2d_shape shape_of(const cnn_tensor *x, int64_t oh, int64_t ow) {
  cnn_pool2d_shape s = {lead_planes(x), x->size[x->ndim - 2], x->size[x->ndim - 1], oh, ow};
  return s;
}

static int max_forward(const cnn_tensor *x, const cnn_pool2d_params *p, bool relu, cnn_tensor **y,
                       cnn_tensor **indices) {
  *y = NULL, *indices = NULL;
  int64_t ohw[2], P;
  /* Max and adaptive pooling take float32 only, as PyTorch's (integers: "not implemented"). */
  if (cnn_pool2d_check(x, p, ohw) || check_input(x, &P) || cnn_tensor_need_float(x, "input")) return -1;
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *ry = xc ? new_plane_tensor(x, x->ndim, CNN_FLOAT32, ohw[0], ohw[1], false) : NULL;
  cnn_tensor *ri = ry ? new_plane_tensor(x, x->ndim, CNN_INT64, ohw[0], ohw[1], false) : NULL;
  if (!ri) {
    cnn_tensor_release(xc);
    cnn_tensor_release(ry);
    return -1;
  }
  cnn_pool2d_shape s = shape_of(x, ohw[0], ohw[1]);
  (relu ? cnn_pool_max2d_relu_forward_f32 : cnn_pool_max2d_forward_f32)(p, &s, cnn_tensor_f32(xc), cnn_tensor_f32(ry),
                                                                        cnn_tensor_i64(ri));
  cnn_tensor_release(xc);
  *y = ry, *indices = ri;
  return 0;
}

int cnn_pool_max2d_forward(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y, cnn_tensor **indices) {
  return max_forward(x, p, false, y, indices);
}

int cnn_pool_max2d_relu_forward(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y, cnn_tensor **indices) {
  return max_forward(x, p, true, y, indices);
}

cnn_tensor *cnn_pool_max2d_backward(const cnn_tensor *gy, const cnn_tensor *indices, int64_t H, int64_t W) {
  if (gy->dtype != CNN_FLOAT32 || indices->dtype != CNN_INT64 || !cnn_tensor_same_shape(gy, indices) ||
      (gy->ndim != 3 && gy->ndim != 4))
    return cnn_error_set("internal: max_pool2d backward given mismatched tensors"), NULL;
  cnn_tensor *gc = cnn_tensor_contiguous(gy);
  cnn_tensor *ic = gc ? cnn_tensor_contiguous(indices) : NULL;
  cnn_tensor *gx = ic ? new_plane_tensor(gy, gy->ndim, CNN_FLOAT32, H, W, false) : NULL; /* every cell written */
  if (gx) {
    cnn_pool2d_shape s = {lead_planes(gy), H, W, gy->size[gy->ndim - 2], gy->size[gy->ndim - 1]};
    cnn_pool_max2d_backward_f32(&s, cnn_tensor_f32(gc), cnn_tensor_i64(ic), cnn_tensor_f32(gx));
  }
  cnn_tensor_release(gc);
  cnn_tensor_release(ic);
  return gx;
}

cnn_tensor *cnn_pool_avg2d_forward(const cnn_tensor *x, const cnn_pool2d_params *p) {
  int64_t ohw[2], P;
  if (cnn_pool2d_check(x, p, ohw) || check_input(x, &P)) return NULL;
  if (p->dilation[0] != 1 || p->dilation[1] != 1) return cnn_error_set("average pooling has no dilation"), NULL;
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *y = xc ? new_plane_tensor(x, x->ndim, x->dtype, ohw[0], ohw[1], false) : NULL;
  if (y) {
    cnn_pool2d_shape s = shape_of(x, ohw[0], ohw[1]);
    if (x->dtype == CNN_INT64) cnn_pool_avg2d_forward_i64(p, &s, cnn_tensor_i64(xc), cnn_tensor_i64(y));
    else cnn_pool_avg2d_forward_f32(p, &s, cnn_tensor_f32(xc), cnn_tensor_f32(y));
  }
  cnn_tensor_release(xc);
  return y;
}

cnn_tensor *cnn_pool_avg2d_backward(const cnn_tensor *gy, const cnn_pool2d_params *p, int64_t H, int64_t W) {
  if (gy->dtype != CNN_FLOAT32 || (gy->ndim != 3 && gy->ndim != 4))
    return cnn_error_set("internal: avg_pool2d backward given a bad gradient"), NULL;
  cnn_tensor *gc = cnn_tensor_contiguous(gy);
  cnn_tensor *gx = gc ? new_plane_tensor(gy, gy->ndim, CNN_FLOAT32, H, W, true) : NULL; /* the kernel adds */
  if (gx) {
    cnn_pool2d_shape s = {lead_planes(gy), H, W, gy->size[gy->ndim - 2], gy->size[gy->ndim - 1]};
    cnn_pool_avg2d_backward_f32(p, &s, cnn_tensor_f32(gc), cnn_tensor_f32(gx));
  }
  cnn_tensor_release(gc);
  return gx;
}

cnn_tensor *cnn_pool_adaptive_avg2d_forward(const cnn_tensor *x, int64_t oh, int64_t ow) {
  int64_t P;
  if (check_input(x, &P) || cnn_tensor_need_float(x, "input")) return NULL;
  if (oh < 0 || ow < 0)
    return cnn_error_set("output size must be non-negative, got (%lld, %lld)", (long long)oh, (long long)ow), NULL;
  cnn_tensor *xc = cnn_tensor_contiguous(x);
  cnn_tensor *y = xc ? new_plane_tensor(x, x->ndim, CNN_FLOAT32, oh, ow, false) : NULL;
  if (y) {
    cnn_pool2d_shape s = shape_of(x, oh, ow);
    cnn_pool_adaptive_avg2d_forward_f32(&s, cnn_tensor_f32(xc), cnn_tensor_f32(y));
  }
  cnn_tensor_release(xc);
  return y;
}

cnn_tensor *cnn_pool_adaptive_avg2d_backward(const cnn_tensor *gy, int64_t H, int64_t W) {
  if (gy->dtype != CNN_FLOAT32 || (gy->ndim != 3 && gy->ndim != 4))
    return cnn_error_set("internal: adaptive_avg_pool2d backward given a bad gradient"), NULL;
  cnn_tensor *gc = cnn_tensor_contiguous(gy);
  cnn_tensor *gx = gc ? new_plane_tensor(gy, gy->ndim, CNN_FLOAT32, H, W, true) : NULL; /* the kernel adds */
  if (gx) {
    cnn_pool2d_shape s = {lead_planes(gy), H, W, gy->size[gy->ndim - 2], gy->size[gy->ndim - 1]};
    cnn_pool_adaptive_avg2d_backward_f32(&s, cnn_tensor_f32(gc), cnn_tensor_f32(gx));
  }
  cnn_tensor_release(gc);
  return gx;
}
