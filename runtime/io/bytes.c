/* Byte arrays (see bytes.h): a shape over one cnn_alloc block, and the gathers that turn rows of
 * bytes into float32 tensors. Invariant: numel is the product of size[] and data holds numel
 * bytes; gathers check every index and the divisor before they allocate or write anything. */
#include "cnn/bytes.h"
#include "cnn/error.h"
#include "core/alloc.h"
#include "core/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* cnn_shape_check, and also the product of the nonzero sizes: rows are addressed as size[1] * ...
 * even when size[0] is 0, so that product must fit too. 0 or -1 with the error set. */
static int shape_numel(int ndim, const int64_t *size, int64_t *numel) {
  if (cnn_shape_check(ndim, size, numel)) return -1;
  int64_t span = 1;
  for (int d = 0; d < ndim; d++) {
    if (size[d] == 0) continue;
    if (span > INT64_MAX / 8 / size[d]) return cnn_error_set("the number of elements overflows");
    span *= size[d];
  }
  return 0;
}

cnn_bytes *cnn_bytes_new(int ndim, const int64_t *size, bool zero) {
  int64_t numel;
  if (shape_numel(ndim, size, &numel)) return NULL;
  cnn_bytes *b = calloc(1, sizeof *b);
  if (!b) {
    cnn_error_set("out of memory");
    return NULL;
  }
  b->data = cnn_alloc((size_t)numel);
  if (!b->data) {
    free(b);
    return NULL;
  }
  if (zero) memset(b->data, 0, (size_t)numel);
  b->ndim = ndim;
  for (int d = 0; d < ndim; d++) b->size[d] = size[d];
  b->numel = numel;
  return b;
}

void cnn_bytes_free(cnn_bytes *b) {
  if (!b) return;
  cnn_free(b->data, (size_t)b->numel);
  free(b);
}

int cnn_bytes_reshape(cnn_bytes *b, int ndim, const int64_t *size) {
  int64_t numel;
  if (shape_numel(ndim, size, &numel)) return -1;
  if (numel != b->numel)
    return cnn_error_set("cannot reshape %lld bytes into a shape of %lld elements", (long long)b->numel,
                         (long long)numel);
  b->ndim = ndim;
  for (int d = 0; d < ndim; d++) b->size[d] = size[d];
  return 0;
}

void cnn_bytes_convert(float *dst, const uint8_t *src, int64_t n, float divisor) {
  for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i] / divisor; /* a division, not * (1/d): exact */
}

/* The divisor as the float every conversion uses; -1 with the error set unless it is a positive
 * number whose float is finite and nonzero. */
static int check_divisor(double divisor, float *out) {
  float f = (float)divisor;
  if (!(divisor > 0) || !isfinite(f) || f == 0)
    return cnn_error_set("divisor must be a positive finite number, got %g", divisor);
  *out = f;
  return 0;
}

/* Bytes per row along dim 0 (b->ndim >= 1). */
static int64_t row_bytes(const cnn_bytes *b) {
  int64_t r = 1;
  for (int d = 1; d < b->ndim; d++) r *= b->size[d];
  return r;
}

/* out (n rows of `row` floats) = rows ip[0], ip[is], ... of b (ip NULL: rows 0..n-1). */
typedef struct {
  float *out;
  const cnn_bytes *b;
  const int64_t *ip;
  int64_t is, row;
  float fdiv;
} rows_job;

static void convert_range(void *arg, int64_t i0, int64_t i1) {
  const rows_job *j = arg;
  for (int64_t i = i0; i < i1; i++) {
    int64_t r = j->ip ? j->ip[i * j->is] : i;
    cnn_bytes_convert(j->out + i * j->row, j->b->data + r * j->row, j->row, j->fdiv);
  }
}

static void convert_rows(float *out, const cnn_bytes *b, const int64_t *ip, int64_t is, int64_t n, float fdiv) {
  rows_job j = {out, b, ip, is, row_bytes(b), fdiv};
  cnn_parallel_items(n, n * j.row, convert_range, &j);
}

/* The float32 result of shape (n, b.size[1:]), or NULL with the error set. */
static cnn_tensor *rows_tensor(const cnn_bytes *b, int64_t n) {
  int64_t size[CNN_MAX_DIMS];
  size[0] = n;
  for (int d = 1; d < b->ndim; d++) size[d] = b->size[d];
  return cnn_tensor_empty(CNN_FLOAT32, b->ndim, size);
}

cnn_tensor *cnn_bytes_gather(const cnn_bytes *b, const cnn_tensor *idx, double divisor) {
  float fdiv = 1;
  if (check_divisor(divisor, &fdiv)) return NULL;
  if (b->ndim < 1) {
    cnn_error_set("cannot gather rows of a 0-d byte array");
    return NULL;
  }
  if (idx->dtype != CNN_INT64 || idx->ndim != 1) {
    cnn_error_set("indices must be a 1-d int64 tensor, got a %d-d %s one", idx->ndim, cnn_dtype_name(idx->dtype));
    return NULL;
  }
  int64_t n = idx->size[0], rows = b->size[0], is = idx->stride[0];
  const int64_t *ip = cnn_tensor_i64(idx);
  for (int64_t i = 0; i < n; i++) {
    int64_t r = ip[i * is];
    if (r < 0 || r >= rows) {
      cnn_error_set("index %lld is out of range for %lld rows", (long long)r, (long long)rows);
      return NULL;
    }
  }
  cnn_tensor *out = rows_tensor(b, n);
  if (out) convert_rows(cnn_tensor_f32(out), b, ip, is, n, fdiv);
  return out;
}

cnn_tensor *cnn_bytes_row(const cnn_bytes *b, int64_t i, double divisor) {
  float fdiv = 1;
  if (check_divisor(divisor, &fdiv)) return NULL;
  if (b->ndim < 1) {
    cnn_error_set("cannot take a row of a 0-d byte array");
    return NULL;
  }
  if (i < 0 || i >= b->size[0]) {
    cnn_error_set("row %lld is out of range for %lld rows", (long long)i, (long long)b->size[0]);
    return NULL;
  }
  cnn_tensor *out = cnn_tensor_empty(CNN_FLOAT32, b->ndim - 1, b->size + 1);
  if (out) {
    int64_t row = row_bytes(b);
    cnn_bytes_convert(cnn_tensor_f32(out), b->data + i * row, row, fdiv);
  }
  return out;
}

cnn_tensor *cnn_bytes_to_float(const cnn_bytes *b, double divisor) {
  float fdiv = 1;
  if (check_divisor(divisor, &fdiv)) return NULL;
  cnn_tensor *out = cnn_tensor_empty(CNN_FLOAT32, b->ndim, b->size);
  if (!out) return NULL;
  if (b->ndim == 0) cnn_bytes_convert(cnn_tensor_f32(out), b->data, 1, fdiv);
  else convert_rows(cnn_tensor_f32(out), b, NULL, 0, b->size[0], fdiv);
  return out;
}
