/* Tensors and storages (see tensor.h). A storage is freed when its last view goes; a view's
 * (size, stride, offset) always addresses elements inside its storage: every view function
 * checks its arguments before building the new view, so no kernel needs to re-check bounds. */
#include "cnn/tensor.h"
#include "cnn/error.h"
#include "core/alloc.h"
#include "core/checked.h"
#include "core/iter.h"
#include "core/tensor_hooks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t cnn_dtype_size(cnn_dtype dt) {
  switch (dt) {
  case CNN_FLOAT32: return 4;
  case CNN_INT64: return 8;
  case CNN_BOOL:
  case CNN_UINT8: return 1;
  }
  return 4;
}

const char *cnn_dtype_name(cnn_dtype dt) {
  switch (dt) {
  case CNN_FLOAT32: return "float32";
  case CNN_INT64: return "int64";
  case CNN_BOOL: return "bool";
  case CNN_UINT8: return "uint8";
  }
  return "?";
}

/* ---- promotion ---- */

static int dtype_rank(cnn_dtype dt) {
  switch (dt) {
  case CNN_BOOL: return 0;
  case CNN_UINT8: return 1;
  case CNN_INT64: return 2;
  case CNN_FLOAT32: return 3;
  }
  return 3;
}

static int dtype_category(cnn_dtype dt) { return dt == CNN_BOOL ? 0 : dt == CNN_FLOAT32 ? 2 : 1; }

cnn_dtype cnn_dtype_promote(cnn_dtype a, cnn_dtype b) { return dtype_rank(a) >= dtype_rank(b) ? a : b; }

/* PyTorch's combine_categories: the higher-priority group's dtype, promoted by the lower one's
 * only when that is of a higher category. -1 stands for an empty group. */
static int combine(int higher, int lower) {
  if (higher < 0) return lower;
  if (lower < 0 || dtype_category((cnn_dtype)lower) <= dtype_category((cnn_dtype)higher)) return higher;
  return (int)cnn_dtype_promote((cnn_dtype)higher, (cnn_dtype)lower);
}

cnn_dtype cnn_dtype_result(int n, const cnn_tensor *const *ts) {
  int group[3] = {-1, -1, -1}; /* promotions so far of: dimensioned, 0-d, wrapped numbers */
  for (int i = 0; i < n; i++) {
    int *r = &group[ts[i]->ndim > 0 ? 0 : ts[i]->wrapped_number ? 2 : 1];
    *r = *r < 0 ? (int)ts[i]->dtype : (int)cnn_dtype_promote((cnn_dtype)*r, ts[i]->dtype);
  }
  int r = combine(combine(group[0], group[1]), group[2]);
  return r < 0 ? CNN_FLOAT32 : (cnn_dtype)r;
}

int cnn_tensor_need_float(const cnn_tensor *t, const char *what) {
  if (t->dtype != CNN_FLOAT32) return cnn_error_set("expected a float32 %s, got %s", what, cnn_dtype_name(t->dtype));
  return 0;
}

/* ---- lifetime ---- */

static void storage_release(cnn_storage *s) {
  if (!s || --s->refcount > 0) return;
  cnn_free(s->data, s->nbytes);
  cnn_small_free(s);
}

void cnn_tensor_rebind(cnn_tensor *t, const cnn_tensor *src) {
  src->storage->refcount++;
  /* a saved copy written in place (user code holding ctx's tensor) is autograd's copy no more: its
   * views must count as views */
  if (t->saved_copy) t->storage->saved--, t->saved_copy = false;
  storage_release(t->storage);
  t->storage = src->storage;
  t->offset = src->offset;
  memcpy(t->stride, src->stride, sizeof t->stride);
}

static cnn_storage *storage_new(size_t nbytes) {
  cnn_storage *s = cnn_small_alloc(sizeof *s);
  if (!s) {
    cnn_error_set("out of memory");
    return NULL;
  }
  s->data = cnn_alloc(nbytes);
  if (!s->data) {
    cnn_small_free(s);
    return NULL;
  }
  s->refcount = 1;
  s->version = 0;
  s->nbytes = nbytes;
  s->saved = 0;
  return s;
}

cnn_tensor *cnn_tensor_retain(cnn_tensor *t) {
  if (t) t->refcount++;
  return t;
}

/* Set once by the autograd layer, before any tensor has a grad_fn (see tensor.h). */
static cnn_grad_fn_hooks grad_fn_hooks;

void cnn_tensor_set_grad_fn_hooks(const cnn_grad_fn_hooks *hooks) { grad_fn_hooks = *hooks; }

const char *cnn_tensor_grad_fn_name(const cnn_tensor *t) { return t->grad_fn ? grad_fn_hooks.name(t->grad_fn) : NULL; }

void cnn_tensor_release(cnn_tensor *t) {
  if (!t || --t->refcount > 0) return;
  if (t->saved_copy) t->storage->saved--;
  cnn_tensor_release(t->grad);
  if (t->grad_fn) grad_fn_hooks.release(t->grad_fn);
  storage_release(t->storage);
  cnn_small_free(t);
}

/* A header with no storage yet: the caller fills the view. */
static cnn_tensor *header_new(cnn_dtype dt) {
  cnn_tensor *t = cnn_small_alloc(sizeof *t);
  if (!t) {
    cnn_error_set("out of memory");
    return NULL;
  }
  t->refcount = 1;
  t->dtype = dt;
  return t;
}

static void set_contiguous_strides(cnn_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    t->stride[d] = s;
    s *= t->size[d] > 0 ? t->size[d] : 1;
  }
}

int cnn_shape_check(int ndim, const int64_t *size, int64_t *numel_out) {
  if (ndim < 0 || ndim > CNN_MAX_DIMS)
    return cnn_error_set("a tensor has at most %d dimensions, got %d", CNN_MAX_DIMS, ndim);
  /* strides multiply the non-zero sizes, so those must not overflow even when a 0 makes numel 0 */
  int64_t n = 1, strided = 1;
  for (int d = 0; d < ndim; d++) {
    if (size[d] < 0) return cnn_error_set("negative size %lld at dimension %d", (long long)size[d], d + 1);
    if (size[d] > 0 && strided > INT64_MAX / 8 / size[d]) return cnn_error_set("the number of elements overflows");
    if (size[d] > 0) strided *= size[d];
    n *= size[d];
  }
  if (numel_out) *numel_out = n;
  return 0;
}

cnn_tensor *cnn_tensor_empty(cnn_dtype dt, int ndim, const int64_t *size) {
  int64_t n = 0;
  if (cnn_shape_check(ndim, size, &n)) return NULL;
  cnn_tensor *t = header_new(dt);
  if (!t) return NULL;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->size[d] = size[d];
  set_contiguous_strides(t);
  t->storage = storage_new((size_t)n * cnn_dtype_size(dt));
  if (!t->storage) {
    cnn_small_free(t);
    return NULL;
  }
  return t;
}

cnn_tensor *cnn_tensor_zeros(cnn_dtype dt, int ndim, const int64_t *size) {
  cnn_tensor *t = cnn_tensor_empty(dt, ndim, size);
  if (t) memset(t->storage->data, 0, t->storage->nbytes);
  return t;
}

cnn_tensor *cnn_tensor_full(cnn_dtype dt, int ndim, const int64_t *size, double value) {
  cnn_tensor *t = cnn_tensor_empty(dt, ndim, size);
  if (t && cnn_tensor_fill_(t, value)) { /* a value the dtype cannot hold: never uninitialised data */
    cnn_tensor_release(t);
    return NULL;
  }
  return t;
}

cnn_tensor *cnn_tensor_full_i64(cnn_dtype dt, int ndim, const int64_t *size, int64_t value) {
  cnn_tensor *t = cnn_tensor_empty(dt, ndim, size);
  if (t && cnn_tensor_fill_i64_(t, value)) {
    cnn_tensor_release(t);
    return NULL;
  }
  return t;
}

cnn_tensor *cnn_tensor_scalar(cnn_dtype dt, double value) { return cnn_tensor_full(dt, 0, NULL, value); }

cnn_tensor *cnn_tensor_scalar_i64(int64_t value) { return cnn_tensor_full_i64(CNN_INT64, 0, NULL, value); }

cnn_tensor *cnn_tensor_empty_like(const cnn_tensor *t) { return cnn_tensor_empty(t->dtype, t->ndim, t->size); }

cnn_tensor *cnn_tensor_arange(double start, double end, double step, cnn_dtype dt) {
  if (dt == CNN_BOOL) {
    cnn_error_set("dtype bool is not supported (a range of booleans)");
    return NULL;
  }
  if (step == 0 || !isfinite(step)) {
    cnn_error_set("step must be finite and nonzero");
    return NULL;
  }
  if (!isfinite(start) || !isfinite(end)) {
    cnn_error_set("start and end must be finite");
    return NULL;
  }

  /* integer dtypes count in int64, as PyTorch: the ends and the step truncated toward zero (0.5 is
   * a step of 0), int64 counting with them, uint8 taking its count from the given values and its
   * elements start + i * step wrapped to 8 bits */
  int64_t istart = 0, iend = 0, istep = 0;
  if (dt != CNN_FLOAT32) {
    const double v[3] = {start, end, step};
    static const char *const what[3] = {"start", "end", "step"};
    for (int k = 0; k < 3; k++)
      if (!cnn_double_in_int64(v[k])) {
        cnn_error_set("%s %g cannot be converted to int64 without overflow", what[k], cnn_error_num(v[k]));
        return NULL;
      }
    istart = (int64_t)start, iend = (int64_t)end, istep = (int64_t)step;
    if (istep == 0) {
      cnn_error_set("step %g is 0 as an integer (the dtype is %s)", cnn_error_num(step), cnn_dtype_name(dt));
      return NULL;
    }
    if (dt == CNN_INT64) return cnn_tensor_arange_i64(istart, iend, istep); /* checks the truncated values */
  }
  /* PyTorch's check, on the values it counts in (uint8: the truncated ones); the count from the
   * given ones, as PyTorch's for every dtype but int64 */
  const double cs = dt == CNN_FLOAT32 ? start : (double)istart, ce = dt == CNN_FLOAT32 ? end : (double)iend;
  const double cstep = dt == CNN_FLOAT32 ? step : (double)istep;
  if (!((cstep > 0 && ce >= cs) || (cstep < 0 && ce <= cs))) {
    cnn_error_set("step %g goes away from end (start %g, end %g)", cnn_error_num(step), cnn_error_num(start),
                  cnn_error_num(end));
    return NULL;
  }
  double count = fmax(0.0, ceil((end - start) / step));
  if (count > 1e15) {
    cnn_error_set("too many elements (%g)", cnn_error_num(count));
    return NULL;
  }
  int64_t n = (int64_t)count;
  cnn_tensor *t = cnn_tensor_empty(dt, 1, &n);
  if (!t) return NULL;
  for (int64_t i = 0; i < n; i++) {
    if (dt == CNN_UINT8) cnn_tensor_u8(t)[i] = (uint8_t)((uint64_t)istart + (uint64_t)i * (uint64_t)istep);
    else cnn_tensor_f32(t)[i] = (float)(start + (double)i * step);
  }
  return t;
}

cnn_tensor *cnn_tensor_arange_i64(int64_t start, int64_t end, int64_t step) {
  if (step == 0) {
    cnn_error_set("step must be nonzero");
    return NULL;
  }
  if ((step > 0 && end < start) || (step < 0 && end > start)) {
    cnn_error_set("step %lld goes away from end (start %lld, end %lld)", (long long)step, (long long)start,
                  (long long)end);
    return NULL;
  }
  /* |end - start| and the elements in unsigned arithmetic: exact over the whole int64 range */
  uint64_t span = step > 0 ? (uint64_t)end - (uint64_t)start : (uint64_t)start - (uint64_t)end;
  uint64_t ustep = step > 0 ? (uint64_t)step : 0 - (uint64_t)step;
  uint64_t count = span / ustep + (span % ustep != 0);
  if (count > ((uint64_t)1 << 60)) {
    cnn_error_set("too many elements (%llu)", (unsigned long long)count);
    return NULL;
  }
  int64_t n = (int64_t)count;
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, 1, &n);
  if (!t) return NULL;
  int64_t *p = cnn_tensor_i64(t);
  for (int64_t i = 0; i < n; i++) p[i] = (int64_t)((uint64_t)start + (uint64_t)i * (uint64_t)step);
  return t;
}

cnn_tensor *cnn_tensor_linspace(double start, double end, int64_t n) {
  if (n < 0) {
    cnn_error_set("number of steps must be non-negative, got %lld", (long long)n);
    return NULL;
  }
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 1, &n);
  if (!t) return NULL;
  float *p = cnn_tensor_f32(t);
  /* PyTorch's arithmetic, in float32: the step from the rounded ends, then start + step * i (end -
   * step * (n - 1 - i) in the upper half, so that the last value is exactly `end`), each one fused
   * multiply-add as PyTorch's build compiles them; a single value is `start` */
  const float a = (float)start, b = (float)end, step = n > 1 ? (b - a) / (float)(n - 1) : 0;
  for (int64_t i = 0; i < n; i++)
    p[i] = i < n / 2 || n == 1 ? fmaf(step, (float)i, a) : fmaf(-step, (float)(n - 1 - i), b);
  return t;
}

cnn_tensor *cnn_tensor_linspace_int(double start, double end, int64_t n, cnn_dtype dt) {
  if (dt != CNN_INT64 && dt != CNN_UINT8) {
    cnn_error_set("an integer dtype (int64 or uint8) was expected, got %s", cnn_dtype_name(dt));
    return NULL;
  }
  const double a = trunc(start), b = trunc(end);
  if (!(dt == CNN_UINT8 ? a >= 0 && a <= 255 && b >= 0 && b <= 255
                        : cnn_double_in_int64(a) && cnn_double_in_int64(b))) {
    cnn_error_set("the ends %g and %g do not fit %s", cnn_error_num(start), cnn_error_num(end), cnn_dtype_name(dt));
    return NULL;
  }
  if (n < 0) {
    cnn_error_set("number of steps must be non-negative, got %lld", (long long)n);
    return NULL;
  }
  cnn_tensor *t = cnn_tensor_empty(dt, 1, &n);
  if (!t) return NULL;
  /* PyTorch's integral linspace: a double step (the range can exceed the dtype's), start + step * i
   * in the lower half and end - step * (n - 1 - i) in the upper one (the last value is end); every
   * value lies between the ends, so its truncation fits dt. float32 arithmetic here lost the ends
   * past 2^24 (linspace(1, 16777217, 2) ended at 16777216). */
  const double step = n > 1 ? (b - a) / (double)(n - 1) : 0;
  for (int64_t i = 0; i < n; i++) {
    const double v = i < n / 2 || n == 1 ? fma(step, (double)i, a) : fma(-step, (double)(n - 1 - i), b);
    if (dt == CNN_INT64) cnn_tensor_i64(t)[i] = (int64_t)v;
    else cnn_tensor_u8(t)[i] = (uint8_t)(int)v;
  }
  return t;
}

cnn_tensor *cnn_tensor_eye(int64_t n, int64_t m) {
  int64_t size[2] = {n, m};
  cnn_tensor *t = cnn_tensor_zeros(CNN_FLOAT32, 2, size);
  if (!t) return NULL;
  for (int64_t i = 0; i < n && i < m; i++) cnn_tensor_f32(t)[i * m + i] = 1.0f;
  return t;
}

/* ---- inspection ---- */

int64_t cnn_tensor_numel(const cnn_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->size[d];
  return n;
}

bool cnn_tensor_is_contiguous(const cnn_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->size[d] == 0) return true;
    if (t->size[d] != 1 && t->stride[d] != s) return false;
    s *= t->size[d];
  }
  return true;
}

bool cnn_tensor_same_shape(const cnn_tensor *a, const cnn_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->size[d] != b->size[d]) return false;
  return true;
}

void *cnn_tensor_data(const cnn_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)cnn_dtype_size(t->dtype);
}

static int64_t element_offset(const cnn_tensor *t, const int64_t *idx) {
  int64_t off = 0;
  for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
  return off;
}

double cnn_tensor_get(const cnn_tensor *t, const int64_t *idx) {
  int64_t off = element_offset(t, idx);
  switch (t->dtype) {
  case CNN_INT64: return (double)cnn_tensor_i64(t)[off];
  case CNN_BOOL:
  case CNN_UINT8: return (double)cnn_tensor_u8(t)[off];
  case CNN_FLOAT32: break;
  }
  return (double)cnn_tensor_f32(t)[off];
}

int64_t cnn_tensor_get_i64(const cnn_tensor *t, const int64_t *idx) {
  int64_t off = element_offset(t, idx);
  switch (t->dtype) {
  case CNN_INT64: return cnn_tensor_i64(t)[off];
  case CNN_BOOL:
  case CNN_UINT8: return (int64_t)cnn_tensor_u8(t)[off];
  case CNN_FLOAT32: break;
  }
  float v = cnn_tensor_f32(t)[off];
  return v != v ? 0 : v >= 9.2233720e18f ? INT64_MAX : v <= -9.2233720e18f ? INT64_MIN : (int64_t)v;
}

static void unflatten(const cnn_tensor *t, int64_t i, int64_t *idx) {
  for (int d = t->ndim - 1; d >= 0; d--) {
    idx[d] = t->size[d] ? i % t->size[d] : 0;
    i = t->size[d] ? i / t->size[d] : 0;
  }
}

double cnn_tensor_get_flat(const cnn_tensor *t, int64_t i) {
  int64_t idx[CNN_MAX_DIMS];
  unflatten(t, i, idx);
  return cnn_tensor_get(t, idx);
}

int64_t cnn_tensor_get_flat_i64(const cnn_tensor *t, int64_t i) {
  int64_t idx[CNN_MAX_DIMS];
  unflatten(t, i, idx);
  return cnn_tensor_get_i64(t, idx);
}

int cnn_dim_wrap(int dim, int ndim) {
  int lo = ndim > 0 ? -ndim : -1, hi = ndim > 0 ? ndim - 1 : 0;
  if (dim < lo || dim > hi) {
    /* report in Lua's 1-based terms: the bindings pass dims through unchanged otherwise */
    return cnn_error_set("dimension %d out of range (the tensor has %d dimension%s)", dim >= 0 ? dim + 1 : dim, ndim,
                         ndim == 1 ? "" : "s");
  }
  return dim < 0 ? dim + (ndim > 0 ? ndim : 1) : dim;
}

/* ---- views ---- */

cnn_tensor *cnn_tensor_alias(const cnn_tensor *t) {
  cnn_tensor *v = header_new(t->dtype);
  if (!v) return NULL;
  v->ndim = t->ndim;
  memcpy(v->size, t->size, sizeof v->size);
  memcpy(v->stride, t->stride, sizeof v->stride);
  v->offset = t->offset;
  v->storage = t->storage;
  v->storage->refcount++;
  return v;
}

cnn_tensor *cnn_tensor_saved_alias(const cnn_tensor *t) {
  cnn_tensor *v = cnn_tensor_alias(t);
  if (v) v->saved_copy = true, v->storage->saved++;
  return v;
}

cnn_tensor *cnn_tensor_select(const cnn_tensor *t, int dim, int64_t index) {
  if (t->ndim == 0) {
    cnn_error_set("cannot index a 0-d tensor");
    return NULL;
  }
  int d = cnn_dim_wrap(dim, t->ndim);
  if (d < 0) return NULL;
  int64_t n = t->size[d];
  if (index < -n || index >= n) {
    cnn_error_set("index %lld is out of range for dimension %d of size %lld",
                  (long long)(index >= 0 ? index + 1 : index), d + 1, (long long)n);
    return NULL;
  }
  if (index < 0) index += n;
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v) return NULL;
  v->offset += index * t->stride[d];
  for (int k = d; k < t->ndim - 1; k++) {
    v->size[k] = t->size[k + 1];
    v->stride[k] = t->stride[k + 1];
  }
  v->ndim--;
  return v;
}

cnn_tensor *cnn_tensor_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length) {
  if (t->ndim == 0) {
    cnn_error_set("cannot narrow a 0-d tensor");
    return NULL;
  }
  int d = cnn_dim_wrap(dim, t->ndim);
  if (d < 0) return NULL;
  int64_t n = t->size[d];
  if (start < 0) start += n;
  if (start < 0 || start > n || length < 0 || length > n - start) {
    /* 1-based as the bindings show it; INT64_MAX as itself (start + 1 would overflow) */
    cnn_error_set("range start %lld, length %lld is out of bounds for dimension %d of size %lld",
                  (long long)(start < INT64_MAX ? start + 1 : start), (long long)length, d + 1, (long long)n);
    return NULL;
  }
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v) return NULL;
  v->offset += start * t->stride[d];
  v->size[d] = length;
  return v;
}

cnn_tensor *cnn_tensor_transpose(const cnn_tensor *t, int d0, int d1) {
  int a = cnn_dim_wrap(d0, t->ndim);
  if (a < 0) return NULL;
  int b = cnn_dim_wrap(d1, t->ndim);
  if (b < 0) return NULL;
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v || t->ndim == 0) return v;
  v->size[a] = t->size[b], v->size[b] = t->size[a];
  v->stride[a] = t->stride[b], v->stride[b] = t->stride[a];
  return v;
}

cnn_tensor *cnn_tensor_permute(const cnn_tensor *t, const int *dims) {
  bool seen[CNN_MAX_DIMS] = {false};
  int w[CNN_MAX_DIMS];
  for (int k = 0; k < t->ndim; k++) {
    w[k] = cnn_dim_wrap(dims[k], t->ndim);
    if (w[k] < 0) return NULL;
    if (seen[w[k]]) {
      cnn_error_set("dimension %d repeats in the permutation", w[k] + 1);
      return NULL;
    }
    seen[w[k]] = true;
  }
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v) return NULL;
  for (int k = 0; k < t->ndim; k++) {
    v->size[k] = t->size[w[k]];
    v->stride[k] = t->stride[w[k]];
  }
  return v;
}

cnn_tensor *cnn_tensor_unsqueeze(const cnn_tensor *t, int dim) {
  if (t->ndim >= CNN_MAX_DIMS) {
    cnn_error_set("a tensor has at most %d dimensions", CNN_MAX_DIMS);
    return NULL;
  }
  int d = cnn_dim_wrap(dim, t->ndim + 1);
  if (d < 0) return NULL;
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v) return NULL;
  for (int k = t->ndim; k > d; k--) {
    v->size[k] = t->size[k - 1];
    v->stride[k] = t->stride[k - 1];
  }
  v->size[d] = 1;
  v->stride[d] = d < t->ndim ? t->size[d] * t->stride[d] : 1;
  v->ndim++;
  return v;
}

cnn_tensor *cnn_tensor_squeeze(const cnn_tensor *t, int dim) {
  int only = -1;
  if (dim != CNN_ALL_DIMS) {
    only = cnn_dim_wrap(dim, t->ndim);
    if (only < 0) return NULL;
  }
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v) return NULL;
  int n = 0;
  for (int k = 0; k < t->ndim; k++) {
    bool drop = t->size[k] == 1 && (only < 0 || only == k);
    if (drop) continue;
    v->size[n] = t->size[k];
    v->stride[n] = t->stride[k];
    n++;
  }
  v->ndim = n;
  return v;
}

cnn_tensor *cnn_tensor_expand(const cnn_tensor *t, int ndim, const int64_t *size) {
  if (ndim < t->ndim || ndim > CNN_MAX_DIMS) {
    cnn_error_set("cannot expand %d dimensions to %d", t->ndim, ndim);
    return NULL;
  }
  char b1[256], b2[256];
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v) return NULL;
  int lead = ndim - t->ndim;
  for (int k = 0; k < ndim; k++) {
    int64_t want = size[k];
    if (k < lead) {
      if (want < 0) goto bad;
      v->size[k] = want;
      v->stride[k] = 0;
      continue;
    }
    int64_t have = t->size[k - lead];
    if (want == -1 || want == have) {
      v->size[k] = have;
      v->stride[k] = t->stride[k - lead];
    } else if (have == 1 && want >= 0) {
      v->size[k] = want;
      v->stride[k] = 0;
    } else {
      goto bad;
    }
  }
  v->ndim = ndim;
  if (cnn_shape_check(ndim, v->size, NULL)) {
    cnn_tensor_release(v);
    cnn_error_set("cannot expand to %s: the number of elements overflows", cnn_shape_str(ndim, size, b2, sizeof b2));
    return NULL;
  }
  return v;
bad:
  cnn_tensor_release(v);
  cnn_error_set("cannot expand shape %s to %s", cnn_shape_str(t->ndim, t->size, b1, sizeof b1),
                cnn_shape_str(ndim, size, b2, sizeof b2));
  return NULL;
}

/* Resolves one -1 in size against numel; checks the product. */
static int infer_shape(int64_t numel, int ndim, const int64_t *size, int64_t *out) {
  if (ndim < 0 || ndim > CNN_MAX_DIMS) return cnn_error_set("a tensor has at most %d dimensions", CNN_MAX_DIMS);
  int infer = -1;
  int64_t known = 1;
  for (int d = 0; d < ndim; d++) {
    out[d] = size[d];
    if (size[d] == -1) {
      if (infer >= 0) return cnn_error_set("only one dimension can be inferred (-1)");
      infer = d;
    } else if (size[d] < 0) {
      return cnn_error_set("negative size %lld at dimension %d", (long long)size[d], d + 1);
    } else {
      if (size[d] > 0 && known > INT64_MAX / size[d]) return cnn_error_set("the number of elements overflows");
      known *= size[d];
    }
  }
  char b[256];
  if (infer >= 0) {
    if (known == 0 || numel % known != 0)
      return cnn_error_set("shape %s is invalid for input of size %lld", cnn_shape_str(ndim, size, b, sizeof b),
                           (long long)numel);
    out[infer] = numel / known;
  } else if (known != numel) {
    return cnn_error_set("shape %s is invalid for input of size %lld", cnn_shape_str(ndim, size, b, sizeof b),
                         (long long)numel);
  }
  return 0;
}

/* Strides for viewing t as (ndim, size) without copying, following PyTorch's computeStride:
 * each group of new dims must map onto a run of old dims that is contiguous within itself.
 * Returns false when impossible. */
static bool view_strides(const cnn_tensor *t, int ndim, const int64_t *size, int64_t *stride) {
  if (cnn_tensor_numel(t) == 0 || t->ndim == 0) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      stride[d] = s;
      s *= size[d] > 0 ? size[d] : 1;
    }
    return true;
  }
  int view_d = ndim - 1;
  int64_t base = t->stride[t->ndim - 1], old_numel = 1, new_numel = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    old_numel *= t->size[d];
    /* a chunk of old dims ends where the next outer dim is not laid out right after it */
    if (d == 0 || (t->size[d - 1] != 1 && t->stride[d - 1] != old_numel * base)) {
      while (view_d >= 0 && (new_numel < old_numel || size[view_d] == 1)) {
        stride[view_d] = new_numel * base;
        new_numel *= size[view_d];
        view_d--;
      }
      if (new_numel != old_numel) return false;
      if (d > 0) {
        base = t->stride[d - 1];
        old_numel = new_numel = 1;
      }
    }
  }
  return view_d == -1;
}

cnn_tensor *cnn_tensor_view(const cnn_tensor *t, int ndim, const int64_t *size) {
  int64_t shape[CNN_MAX_DIMS], stride[CNN_MAX_DIMS];
  if (infer_shape(cnn_tensor_numel(t), ndim, size, shape)) return NULL;
  if (!view_strides(t, ndim, shape, stride)) {
    cnn_error_set("the view's size is not compatible with the input's strides (use reshape instead)");
    return NULL;
  }
  cnn_tensor *v = cnn_tensor_alias(t);
  if (!v) return NULL;
  v->ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    v->size[d] = shape[d];
    v->stride[d] = stride[d];
  }
  return v;
}

cnn_tensor *cnn_tensor_reshape(const cnn_tensor *t, int ndim, const int64_t *size) {
  int64_t shape[CNN_MAX_DIMS], stride[CNN_MAX_DIMS];
  if (infer_shape(cnn_tensor_numel(t), ndim, size, shape)) return NULL;
  if (view_strides(t, ndim, shape, stride)) return cnn_tensor_view(t, ndim, shape);
  cnn_tensor *c = cnn_tensor_clone(t);
  if (!c) return NULL;
  cnn_tensor *v = cnn_tensor_view(c, ndim, shape);
  cnn_tensor_release(c);
  return v;
}

cnn_tensor *cnn_tensor_contiguous(const cnn_tensor *t) {
  if (cnn_tensor_is_contiguous(t)) return cnn_tensor_retain((cnn_tensor *)t);
  return cnn_tensor_clone(t);
}

cnn_tensor *cnn_tensor_clone(const cnn_tensor *t) {
  cnn_tensor *c = cnn_tensor_empty_like(t);
  if (c && cnn_tensor_copy_(c, t)) {
    cnn_tensor_release(c);
    return NULL;
  }
  return c;
}

cnn_tensor *cnn_tensor_to_dtype(const cnn_tensor *t, cnn_dtype dt) {
  if (t->dtype == dt) return cnn_tensor_retain((cnn_tensor *)t);
  cnn_tensor *c = cnn_tensor_empty(dt, t->ndim, t->size);
  if (c && cnn_tensor_copy_(c, t)) {
    cnn_tensor_release(c);
    return NULL;
  }
  return c;
}

/* ---- writes ---- */

typedef struct {
  cnn_dtype dst, src;
} copy_ctx;

/* float -> int64 as PyTorch on x86 does for values in range; out-of-range and NaN conversions are
 * undefined in C, so they saturate here and NaN gives 0 */
static inline int64_t f32_to_i64(float v) {
  return v != v ? 0 : v >= 9.2233720e18f ? INT64_MAX : v <= -9.2233720e18f ? INT64_MIN : (int64_t)v;
}

/* float -> uint8: the low byte of the truncated value (300.5 -> 44, -1 -> 255); NaN and values
 * beyond int64 give 0, as the x86 conversion PyTorch relies on does */
static inline uint8_t f32_to_u8(float v) {
  return v != v || v >= 9.2233720e18f || v <= -9.2233720e18f ? 0 : (uint8_t)(int64_t)v;
}

#define CONVERT(TD, TS, E)                         \
  do {                                             \
    for (int64_t i = 0; i < n; i++) {              \
      const TS x = *(const TS *)(s + i * step[1]); \
      *(TD *)(d + i * step[0]) = (E);              \
    }                                              \
  } while (0)

static void copy_loop(void *vctx, int64_t n, char **p, const int64_t *step) {
  const copy_ctx *c = vctx;
  char *d = p[0], *s = p[1];
  const int64_t es = (int64_t)cnn_dtype_size(c->dst);
  /* same element layout: bool to bool, uint8 to uint8 and equal types copy bytes */
  if (c->dst == c->src || (c->dst == CNN_UINT8 && c->src == CNN_BOOL)) {
    if (step[0] == es && step[1] == es) {
      memmove(d, s, (size_t)(n * es));
      return;
    }
    switch (es) {
    case 8: CONVERT(int64_t, int64_t, x); return;
    case 4: CONVERT(float, float, x); return;
    default: CONVERT(uint8_t, uint8_t, x); return;
    }
  }
  switch (c->dst) {
  case CNN_FLOAT32:
    if (c->src == CNN_INT64) CONVERT(float, int64_t, (float)x);
    else CONVERT(float, uint8_t, (float)x); /* uint8, bool */
    break;
  case CNN_INT64:
    if (c->src == CNN_FLOAT32) CONVERT(int64_t, float, f32_to_i64(x));
    else CONVERT(int64_t, uint8_t, (int64_t)x);
    break;
  case CNN_UINT8:
    if (c->src == CNN_FLOAT32) CONVERT(uint8_t, float, f32_to_u8(x));
    else CONVERT(uint8_t, int64_t, (uint8_t)x); /* int64: the low byte */
    break;
  case CNN_BOOL:
    if (c->src == CNN_FLOAT32) CONVERT(uint8_t, float, (uint8_t)(x != 0)); /* NaN is true */
    else if (c->src == CNN_INT64) CONVERT(uint8_t, int64_t, (uint8_t)(x != 0));
    else CONVERT(uint8_t, uint8_t, (uint8_t)(x != 0));
    break;
  }
}

#undef CONVERT

static bool overlaps(const cnn_tensor *a, const cnn_tensor *b) { return a->storage == b->storage; }

int cnn_tensor_copy_(cnn_tensor *dst, const cnn_tensor *src) {
  if (cnn_tensor_check_writable(dst)) return -1;
  cnn_tensor *tmp = NULL;
  /* a source sharing dst's storage through a different view must be read before it is overwritten */
  if (overlaps(dst, src) && (src->offset != dst->offset || !cnn_tensor_same_shape(src, dst) ||
                             memcmp(src->stride, dst->stride, sizeof(int64_t) * (size_t)dst->ndim))) {
    tmp = cnn_tensor_empty_like(src);
    if (!tmp) return -1;
    cnn_iter it;
    const cnn_tensor *ops2[2] = {tmp, src};
    if (cnn_iter_init(&it, 2, ops2, tmp->ndim, tmp->size)) goto fail;
    copy_ctx c2 = {tmp->dtype, src->dtype};
    cnn_iter_run(&it, copy_loop, &c2, false);
    src = tmp;
  }
  cnn_iter it;
  const cnn_tensor *ops[2] = {dst, src};
  if (cnn_iter_init(&it, 2, ops, dst->ndim, dst->size)) goto fail;
  copy_ctx c = {dst->dtype, src->dtype};
  cnn_iter_run(&it, copy_loop, &c, true);
  cnn_tensor_release(tmp);
  return 0;
fail:
  cnn_tensor_release(tmp);
  return -1;
}

int cnn_tensor_check_writable(const cnn_tensor *t) {
  for (int d = 0; d < t->ndim; d++)
    if (t->size[d] > 1 && t->stride[d] == 0)
      return cnn_error_set("unsupported operation: more than one element of the written-to tensor refers to a "
                           "single memory location (it is expanded); clone() it before writing");
  return 0;
}

typedef struct {
  double v;
  int64_t i;
  cnn_dtype dt;
} fill_ctx;

static void fill_loop(void *vctx, int64_t n, char **p, const int64_t *step) {
  const fill_ctx *c = vctx;
  char *d = p[0];
  switch (c->dt) {
  case CNN_FLOAT32: {
    float f = (float)c->v;
    for (int64_t i = 0; i < n; i++) *(float *)(d + i * step[0]) = f;
    break;
  }
  case CNN_INT64: {
    int64_t x = c->i;
    for (int64_t i = 0; i < n; i++) *(int64_t *)(d + i * step[0]) = x;
    break;
  }
  case CNN_BOOL:
  case CNN_UINT8: {
    uint8_t x = (uint8_t)c->i; /* bool: c->i is 0 or 1; uint8: the low byte (modulo 256) */
    if (step[0] == 1) memset(d, x, (size_t)n);
    else
      for (int64_t i = 0; i < n; i++) *(uint8_t *)(d + i * step[0]) = x;
    break;
  }
  }
}

/* An expanded tensor is filled too, as PyTorch's fill_ allows (every element gets the one value):
 * through a view with each expanded dim at size 1, so each memory location is written once. */
static int fill_run(cnn_tensor *t, const fill_ctx *c) {
  cnn_tensor *once = NULL;
  for (int d = 0; d < t->ndim; d++)
    if (t->size[d] > 1 && t->stride[d] == 0) {
      if (!once && !(once = cnn_tensor_alias(t))) return -1;
      once->size[d] = 1;
    }
  const cnn_tensor *w = once ? once : t;
  cnn_iter it;
  const cnn_tensor *ops[1] = {w};
  int rc = cnn_iter_init(&it, 1, ops, w->ndim, w->size);
  if (rc == 0) cnn_iter_run(&it, fill_loop, (void *)c, true);
  cnn_tensor_release(once);
  return rc ? -1 : 0;
}

int cnn_tensor_fill_(cnn_tensor *t, double value) {
  fill_ctx c = {value, 0, t->dtype};
  if (t->dtype == CNN_INT64) {
    /* as PyTorch: NaN and values outside int64 are errors; fractions truncate toward zero */
    if (!cnn_double_in_int64(value))
      return cnn_error_set("value %s cannot be converted to int64 without overflow", value != value ? "nan"
                                                                                     : value > 0    ? "above 2^63"
                                                                                                    : "below -2^63");
    c.i = (int64_t)value;
  } else if (t->dtype == CNN_UINT8) {
    /* as PyTorch: a float value must lie in 0..255 (an integer may wrap: cnn_tensor_fill_i64_) */
    if (!(value >= 0 && value <= 255))
      return cnn_error_set("value %g cannot be converted to type uint8 without overflow", cnn_error_num(value));
    c.i = (int64_t)value;
  } else if (t->dtype == CNN_BOOL) {
    c.i = value != 0; /* NaN is true */
  }
  return fill_run(t, &c);
}

int cnn_tensor_fill_i64_(cnn_tensor *t, int64_t value) {
  if (t->dtype == CNN_UINT8 && !(value > -256 && value < 256))
    return cnn_error_set("value %lld cannot be converted to type uint8 without overflow", (long long)value);
  fill_ctx c = {(double)value, t->dtype == CNN_BOOL ? value != 0 : value, t->dtype};
  return fill_run(t, &c);
}
