/* Elementwise kernels (see elementwise.h). Entry points settle dtype promotion and aliasing before
 * any loop runs: every inner loop sees operands of one compute dtype and an output that is either
 * fresh or exactly the view of an input, so element i is read before it is written. */
#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "core/iter.h"

#include <math.h>
#include <string.h>

static const char float_into_int[] = "cannot write float results into an int64 tensor";

/* ---- helpers shared by the entry points ---- */

static bool same_view(const cnn_tensor *a, const cnn_tensor *b) {
  if (a->storage != b->storage || a->dtype != b->dtype || a->offset != b->offset || a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->size[d] != b->size[d] || (a->size[d] != 1 && a->stride[d] != b->stride[d])) return false;
  return true;
}

/* in, converted to dt and safe to read while out is written: a view sharing out's storage in any
 * other way than exactly out's own view is copied first. New reference. */
static cnn_tensor *prepare_input(const cnn_tensor *in, cnn_dtype dt, const cnn_tensor *out) {
  if (in->dtype != dt) return cnn_tensor_to_dtype(in, dt); /* fresh storage: no aliasing */
  if (out && in->storage == out->storage && !same_view(in, out)) return cnn_tensor_clone(in);
  return cnn_tensor_retain((cnn_tensor *)in);
}

/* p as an int64 when it is an integer that fits; NaN, fractions and huge values do not. */
static bool int_param(double p, int64_t *out) {
  if (!(p >= -9223372036854775808.0 && p < 9223372036854775808.0) || p != floor(p)) return false;
  *out = (int64_t)p;
  return true;
}

static int64_t wrap_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }
static int64_t wrap_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }
static int64_t wrap_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }

/* x^y in int64 by squaring, wrapping as PyTorch's does; a negative y gives 1 / x^-y truncated
 * (1 for x = 1, +-1 for x = -1, else 0), as PyTorch's integer pow. */
static int64_t ipow(int64_t x, int64_t y) {
  if (y < 0) return x == 1 ? 1 : x == -1 ? ((y & 1) ? -1 : 1) : 0;
  uint64_t r = 1, b = (uint64_t)x;
  for (uint64_t e = (uint64_t)y; e; e >>= 1) {
    if (e & 1) r *= b;
    b *= b;
  }
  return (int64_t)r;
}

/* ---- binary loops: operand 0 out, 1 a, 2 b ---- */

/* Each loop comes in four shapes: all contiguous, b a broadcast scalar, a a broadcast scalar (the
 * common (N, C) op (C) or tensor op 0-d cases, which vectorise), and any strides. */
#define LOOP4(T_OUT, T_IN, E)                                                              \
  do {                                                                                     \
    const int64_t so = step[0], sa = step[1], sb = step[2];                                \
    const int64_t eo = (int64_t)sizeof(T_OUT), ei = (int64_t)sizeof(T_IN);                 \
    if (so == eo && sa == ei && sb == ei) {                                                \
      T_OUT *o = (T_OUT *)p[0];                                                            \
      const T_IN *pa = (const T_IN *)p[1], *pb = (const T_IN *)p[2];                       \
      for (int64_t i = 0; i < n; i++) {                                                    \
        const T_IN x = pa[i], y = pb[i];                                                   \
        o[i] = (E);                                                                        \
      }                                                                                    \
    } else if (so == eo && sa == ei && sb == 0) {                                          \
      T_OUT *o = (T_OUT *)p[0];                                                            \
      const T_IN *pa = (const T_IN *)p[1];                                                 \
      const T_IN y = *(const T_IN *)p[2];                                                  \
      for (int64_t i = 0; i < n; i++) {                                                    \
        const T_IN x = pa[i];                                                              \
        o[i] = (E);                                                                        \
      }                                                                                    \
    } else if (so == eo && sa == 0 && sb == ei) {                                          \
      T_OUT *o = (T_OUT *)p[0];                                                            \
      const T_IN *pb = (const T_IN *)p[2];                                                 \
      const T_IN x = *(const T_IN *)p[1];                                                  \
      for (int64_t i = 0; i < n; i++) {                                                    \
        const T_IN y = pb[i];                                                              \
        o[i] = (E);                                                                        \
      }                                                                                    \
    } else {                                                                               \
      for (int64_t i = 0; i < n; i++) {                                                    \
        const T_IN x = *(const T_IN *)(p[1] + i * sa), y = *(const T_IN *)(p[2] + i * sb); \
        *(T_OUT *)(p[0] + i * so) = (E);                                                   \
      }                                                                                    \
    }                                                                                      \
  } while (0)

/* float32 inputs, float32 output: every binop. MAXIMUM/MINIMUM return a NaN operand, as PyTorch. */
static void bin_f32(void *ctx, int64_t n, char **p, const int64_t *step) {
  switch (*(const cnn_binop *)ctx) {
  case CNN_ADD: LOOP4(float, float, x + y); break;
  case CNN_SUB: LOOP4(float, float, x - y); break;
  case CNN_MUL: LOOP4(float, float, x *y); break;
  case CNN_DIV: LOOP4(float, float, x / y); break;
  case CNN_POW: LOOP4(float, float, powf(x, y)); break;
  case CNN_MAXIMUM: LOOP4(float, float, (x > y || x != x) ? x : y); break;
  case CNN_MINIMUM: LOOP4(float, float, (x < y || x != x) ? x : y); break;
  case CNN_EQ: LOOP4(float, float, (float)(x == y)); break;
  case CNN_NE: LOOP4(float, float, (float)(x != y)); break;
  case CNN_LT: LOOP4(float, float, (float)(x < y)); break;
  case CNN_LE: LOOP4(float, float, (float)(x <= y)); break;
  case CNN_GT: LOOP4(float, float, (float)(x > y)); break;
  case CNN_GE: LOOP4(float, float, (float)(x >= y)); break;
  }
}

/* int64 inputs, int64 output: the ops that stay integral. Overflow wraps (two's complement), as
 * PyTorch's does, instead of being undefined. */
static void bin_i64(void *ctx, int64_t n, char **p, const int64_t *step) {
  switch (*(const cnn_binop *)ctx) {
  case CNN_ADD: LOOP4(int64_t, int64_t, wrap_add(x, y)); break;
  case CNN_SUB: LOOP4(int64_t, int64_t, wrap_sub(x, y)); break;
  case CNN_MUL: LOOP4(int64_t, int64_t, wrap_mul(x, y)); break;
  case CNN_POW: LOOP4(int64_t, int64_t, ipow(x, y)); break;
  case CNN_MAXIMUM: LOOP4(int64_t, int64_t, x > y ? x : y); break;
  case CNN_MINIMUM: LOOP4(int64_t, int64_t, x < y ? x : y); break;
  default: break; /* DIV computes in float32; comparisons in cmp_i64 */
  }
}

/* int64 inputs compared exactly, float32 0/1 output. */
static void cmp_i64(void *ctx, int64_t n, char **p, const int64_t *step) {
  switch (*(const cnn_binop *)ctx) {
  case CNN_EQ: LOOP4(float, int64_t, (float)(x == y)); break;
  case CNN_NE: LOOP4(float, int64_t, (float)(x != y)); break;
  case CNN_LT: LOOP4(float, int64_t, (float)(x < y)); break;
  case CNN_LE: LOOP4(float, int64_t, (float)(x <= y)); break;
  case CNN_GT: LOOP4(float, int64_t, (float)(x > y)); break;
  case CNN_GE: LOOP4(float, int64_t, (float)(x >= y)); break;
  default: break;
  }
}

static bool is_compare(cnn_binop op) { return op >= CNN_EQ && op <= CNN_GE; }

/* The dtype the loop computes in and the dtype of the result (they differ for comparisons). */
static cnn_dtype bin_compute_dtype(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b) {
  if (op == CNN_DIV) return CNN_FLOAT32;
  return a->dtype == CNN_FLOAT32 || b->dtype == CNN_FLOAT32 ? CNN_FLOAT32 : CNN_INT64;
}

static cnn_dtype bin_result_dtype(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b) {
  return is_compare(op) ? CNN_FLOAT32 : bin_compute_dtype(op, a, b);
}

/* out (result dtype, any strides, exactly the iteration shape) = a op b. */
static int binary_run(cnn_binop op, cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b) {
  cnn_dtype cdt = bin_compute_dtype(op, a, b);
  cnn_tensor *ca = prepare_input(a, cdt, out);
  if (!ca) return -1;
  cnn_tensor *cb = prepare_input(b, cdt, out);
  if (!cb) {
    cnn_tensor_release(ca);
    return -1;
  }
  cnn_iter it;
  const cnn_tensor *ops[3] = {out, ca, cb};
  int rc = cnn_iter_init(&it, 3, ops, out->ndim, out->size);
  if (rc == 0) {
    cnn_iter_fn fn = cdt == CNN_FLOAT32 ? bin_f32 : is_compare(op) ? cmp_i64 : bin_i64;
    cnn_iter_run(&it, fn, &op, true);
  }
  cnn_tensor_release(ca);
  cnn_tensor_release(cb);
  return rc;
}

cnn_tensor *cnn_ew_binary(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b) {
  int nd;
  int64_t shape[CNN_MAX_DIMS];
  if (cnn_broadcast_shape(a->ndim, a->size, b->ndim, b->size, &nd, shape)) return NULL;
  cnn_tensor *out = cnn_tensor_empty(bin_result_dtype(op, a, b), nd, shape);
  if (!out) return NULL;
  if (binary_run(op, out, a, b)) {
    cnn_tensor_release(out);
    return NULL;
  }
  return out;
}

int cnn_ew_binary_into(cnn_binop op, cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b) {
  int nd, nd2;
  int64_t shape[CNN_MAX_DIMS], shape2[CNN_MAX_DIMS];
  if (cnn_broadcast_shape(a->ndim, a->size, b->ndim, b->size, &nd, shape)) return -1;
  /* the broadcast shape must fit into out without growing it */
  if (cnn_broadcast_shape(nd, shape, out->ndim, out->size, &nd2, shape2) || nd2 != out->ndim ||
      memcmp(shape2, out->size, sizeof(int64_t) * (size_t)nd2) != 0) {
    char b1[256], b2[256];
    return cnn_error_set("output with shape %s doesn't match the broadcast shape %s",
                         cnn_shape_str(out->ndim, out->size, b1, sizeof b1), cnn_shape_str(nd, shape, b2, sizeof b2));
  }
  if (cnn_tensor_check_writable(out)) return -1;
  if (cnn_tensor_numel(out) == 0) return 0;
  if (out->dtype == bin_result_dtype(op, a, b)) return binary_run(op, out, a, b);
  /* a different output dtype: compute in the result dtype, then convert */
  cnn_tensor *tmp = cnn_tensor_empty(bin_result_dtype(op, a, b), out->ndim, out->size);
  if (!tmp) return -1;
  int rc = binary_run(op, tmp, a, b);
  if (rc == 0) rc = cnn_tensor_copy_(out, tmp);
  cnn_tensor_release(tmp);
  return rc;
}

/* ---- unary loops: operand 0 out, 1 x ---- */

typedef struct unary_ctx {
  cnn_unop op;
  float f0, f1;   /* parameters for float32 loops */
  int64_t i0, i1; /* parameters for int64 loops (integral by construction) */
} unary_ctx;

#define LOOP2(T, E)                                                    \
  do {                                                                 \
    const int64_t so = step[0], sx = step[1], es = (int64_t)sizeof(T); \
    if (so == es && sx == es) {                                        \
      T *o = (T *)p[0];                                                \
      const T *px = (const T *)p[1];                                   \
      for (int64_t i = 0; i < n; i++) {                                \
        const T x = px[i];                                             \
        o[i] = (E);                                                    \
      }                                                                \
    } else {                                                           \
      for (int64_t i = 0; i < n; i++) {                                \
        const T x = *(const T *)(p[1] + i * sx);                       \
        *(T *)(p[0] + i * so) = (E);                                   \
      }                                                                \
    }                                                                  \
  } while (0)

/* e^x within 1.4 ulp of the exact value over the whole float range (denormal results included),
 * written without calls or branches so loops over it vectorise; libm's expf does not, and was 4x
 * slower here. Cephes' reduction: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7 polynomial, then
 * 2^n applied in two halves so that neither scale factor leaves the normal range. */
static inline float exp_f32(float x) {
  float xc = x == x ? x : 0.0f; /* NaN restored at the end */
  xc = xc > 89.0f ? 89.0f : xc; /* beyond these the result is inf or 0 anyway */
  xc = xc < -104.0f ? -104.0f : xc;
  const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer held in the low bits */
  float t = xc * 1.44269504088896341f + round_magic;
  int32_t tbits;
  memcpy(&tbits, &t, sizeof tbits);
  int32_t n = tbits - 0x4B400000; /* the bits of round_magic */
  float nf = t - round_magic;
  float r = xc - nf * 0.693359375f - nf * -2.12194440e-4f; /* ln2 split in two for an exact product */
  float p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
             1.6666665459e-1f) *
                r +
            5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  int32_t n1 = n / 2, n2 = n - n1;
  int32_t b1 = (n1 + 127) * (1 << 23), b2 = (n2 + 127) * (1 << 23);
  float s1, s2;
  memcpy(&s1, &b1, sizeof s1);
  memcpy(&s2, &b2, sizeof s2);
  float res = p * s1 * s2;
  return x == x ? res : x;
}

/* Never overflows: exp is only taken of -|x|. */
static inline float sigmoid_f32(float x) {
  float e = exp_f32(-fabsf(x)), r = 1.0f / (1.0f + e);
  return x >= 0 ? r : e * r;
}

static void un_f32(void *vctx, int64_t n, char **p, const int64_t *step) {
  const unary_ctx *c = vctx;
  const float a = c->f0, b = c->f1;
  switch (c->op) {
  case CNN_NEG: LOOP2(float, -x); break;
  case CNN_EXP: LOOP2(float, exp_f32(x)); break;
  case CNN_LOG: LOOP2(float, logf(x)); break;
  case CNN_SQRT: LOOP2(float, sqrtf(x)); break;
  case CNN_ABS: LOOP2(float, fabsf(x)); break;
  case CNN_RELU: LOOP2(float, (x > 0 || x != x) ? x : 0.0f); break; /* NaN stays NaN */
  case CNN_SIGMOID: LOOP2(float, sigmoid_f32(x)); break;
  case CNN_TANH: LOOP2(float, tanhf(x)); break;
  case CNN_SIGN: LOOP2(float, (float)((x > 0) - (x < 0))); break; /* NaN -> 0, as PyTorch */
  case CNN_CLAMP:
    /* min(max(x, lo), hi): NaN x passes through, lo > hi gives hi; a NaN bound gives NaN */
    if (a != a || b != b) LOOP2(float, x != x ? x : NAN);
    else LOOP2(float, x < a ? (a > b ? b : a) : (x > b ? b : x));
    break;
  case CNN_POW_SCALAR:
    /* the exponents PyTorch special-cases, so results match it bit for bit */
    if (a == 2.0f) LOOP2(float, x *x);
    else if (a == 1.0f) LOOP2(float, x);
    else if (a == 0.5f) LOOP2(float, sqrtf(x));
    else if (a == -1.0f) LOOP2(float, 1.0f / x);
    else LOOP2(float, powf(x, a));
    break;
  case CNN_RPOW_SCALAR: LOOP2(float, powf(a, x)); break;
  case CNN_ADD_SCALAR: LOOP2(float, x + a); break;
  case CNN_MUL_SCALAR: LOOP2(float, x *a); break;
  }
}

static void un_i64(void *vctx, int64_t n, char **p, const int64_t *step) {
  const unary_ctx *c = vctx;
  const int64_t a = c->i0, b = c->i1;
  switch (c->op) {
  case CNN_NEG: LOOP2(int64_t, wrap_sub(0, x)); break;
  case CNN_ABS: LOOP2(int64_t, x < 0 ? wrap_sub(0, x) : x); break;
  case CNN_RELU: LOOP2(int64_t, x > 0 ? x : 0); break;
  case CNN_SIGN: LOOP2(int64_t, (int64_t)((x > 0) - (x < 0))); break;
  case CNN_CLAMP: LOOP2(int64_t, x < a ? (a > b ? b : a) : (x > b ? b : x)); break;
  case CNN_ADD_SCALAR: LOOP2(int64_t, wrap_add(x, a)); break;
  case CNN_MUL_SCALAR: LOOP2(int64_t, wrap_mul(x, a)); break;
  case CNN_POW_SCALAR: LOOP2(int64_t, ipow(x, a)); break;
  case CNN_RPOW_SCALAR: LOOP2(int64_t, ipow(a, x)); break;
  default: break; /* float-only ops never reach the int64 loop */
  }
}

/* Decides the dtype a unary op computes in for x, and fills the loop parameters. */
static cnn_dtype unary_dtype(cnn_unop op, cnn_dtype xdt, double p0, double p1, unary_ctx *c) {
  c->op = op;
  c->f0 = (float)p0;
  c->f1 = (float)p1;
  c->i0 = c->i1 = 0;
  if (xdt == CNN_FLOAT32) return CNN_FLOAT32;
  switch (op) {
  case CNN_NEG:
  case CNN_ABS:
  case CNN_RELU:
  case CNN_SIGN: return CNN_INT64;
  case CNN_CLAMP: {
    bool lo_ok = p0 == -INFINITY || int_param(p0, &c->i0);
    bool hi_ok = p1 == INFINITY || int_param(p1, &c->i1);
    if (p0 == -INFINITY) c->i0 = INT64_MIN;
    if (p1 == INFINITY) c->i1 = INT64_MAX;
    return lo_ok && hi_ok ? CNN_INT64 : CNN_FLOAT32;
  }
  case CNN_ADD_SCALAR:
  case CNN_MUL_SCALAR:
  case CNN_RPOW_SCALAR: return int_param(p0, &c->i0) ? CNN_INT64 : CNN_FLOAT32;
  case CNN_POW_SCALAR: /* integral exponents >= 0 stay integral (negative ones: see the bindings) */
    return int_param(p0, &c->i0) && c->i0 >= 0 ? CNN_INT64 : CNN_FLOAT32;
  default: return CNN_FLOAT32; /* exp, log, sqrt, sigmoid, tanh */
  }
}

static int unary_run(const unary_ctx *c, cnn_tensor *out, const cnn_tensor *x) {
  cnn_iter it;
  const cnn_tensor *ops[2] = {out, x};
  if (cnn_iter_init(&it, 2, ops, out->ndim, out->size)) return -1;
  cnn_iter_run(&it, out->dtype == CNN_FLOAT32 ? un_f32 : un_i64, (void *)c, true);
  return 0;
}

cnn_tensor *cnn_ew_unary(cnn_unop op, const cnn_tensor *x, double p0, double p1) {
  unary_ctx c;
  cnn_dtype dt = unary_dtype(op, x->dtype, p0, p1, &c);
  cnn_tensor *cx = prepare_input(x, dt, NULL);
  if (!cx) return NULL;
  cnn_tensor *out = cnn_tensor_empty(dt, x->ndim, x->size);
  if (out && unary_run(&c, out, cx)) {
    cnn_tensor_release(out);
    out = NULL;
  }
  cnn_tensor_release(cx);
  return out;
}

int cnn_ew_unary_(cnn_unop op, cnn_tensor *x, double p0, double p1) {
  unary_ctx c;
  if (unary_dtype(op, x->dtype, p0, p1, &c) != x->dtype) return cnn_error_set("%s", float_into_int);
  if (cnn_tensor_check_writable(x)) return -1;
  return unary_run(&c, x, x);
}

/* ---- a += alpha * b ----
 * One fused multiply-add per value (alpha * b is not rounded on its own), as PyTorch's add_ with
 * alpha computes it: where a and alpha * b nearly cancel, the separately rounded product would
 * keep its rounding error in the result. */

typedef struct axpy_ctx {
  float f;
  int64_t i;
} axpy_ctx;

static void axpy_f32(void *vctx, int64_t n, char **p, const int64_t *step) {
  const float al = ((const axpy_ctx *)vctx)->f;
  if (step[0] == 4 && step[1] == 4) {
    float *o = (float *)p[0];
    const float *b = (const float *)p[1];
    if (al == 1.0f) {
      for (int64_t i = 0; i < n; i++) o[i] += b[i];
    } else {
      for (int64_t i = 0; i < n; i++) o[i] = fmaf(al, b[i], o[i]);
    }
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    float *o = (float *)(p[0] + i * step[0]);
    *o = fmaf(al, *(const float *)(p[1] + i * step[1]), *o);
  }
}

static void axpy_i64(void *vctx, int64_t n, char **p, const int64_t *step) {
  const int64_t al = ((const axpy_ctx *)vctx)->i;
  for (int64_t i = 0; i < n; i++) {
    int64_t *o = (int64_t *)(p[0] + i * step[0]);
    *o = wrap_add(*o, wrap_mul(al, *(const int64_t *)(p[1] + i * step[1])));
  }
}

int cnn_ew_axpy_(cnn_tensor *a, double alpha, const cnn_tensor *b) {
  axpy_ctx c = {(float)alpha, 0};
  if (a->dtype == CNN_INT64 && (b->dtype != CNN_INT64 || !int_param(alpha, &c.i)))
    return cnn_error_set("%s", float_into_int);
  if (cnn_tensor_check_writable(a)) return -1;
  cnn_tensor *cb = prepare_input(b, a->dtype, a);
  if (!cb) return -1;
  cnn_iter it;
  const cnn_tensor *ops[2] = {a, cb};
  int rc = cnn_iter_init(&it, 2, ops, a->ndim, a->size);
  if (rc == 0) cnn_iter_run(&it, a->dtype == CNN_FLOAT32 ? axpy_f32 : axpy_i64, &c, true);
  cnn_tensor_release(cb);
  return rc;
}

/* ---- where ---- */

typedef struct where_ctx {
  cnn_dtype cond, val;
} where_ctx;

static void where_loop(void *vctx, int64_t n, char **p, const int64_t *step) {
  const where_ctx *c = vctx;
  const int64_t so = step[0], sc = step[1], sa = step[2], sb = step[3];
  for (int64_t i = 0; i < n; i++) {
    const char *pc = p[1] + i * sc;
    bool take_a = c->cond == CNN_FLOAT32 ? *(const float *)pc != 0 : *(const int64_t *)pc != 0;
    const char *src = take_a ? p[2] + i * sa : p[3] + i * sb;
    if (c->val == CNN_FLOAT32) *(float *)(p[0] + i * so) = *(const float *)src;
    else *(int64_t *)(p[0] + i * so) = *(const int64_t *)src;
  }
}

cnn_tensor *cnn_ew_where(const cnn_tensor *cond, const cnn_tensor *a, const cnn_tensor *b) {
  int n1, n2;
  int64_t s1[CNN_MAX_DIMS], s2[CNN_MAX_DIMS];
  if (cnn_broadcast_shape(a->ndim, a->size, b->ndim, b->size, &n1, s1)) return NULL;
  if (cnn_broadcast_shape(cond->ndim, cond->size, n1, s1, &n2, s2)) return NULL;
  cnn_dtype dt = a->dtype == CNN_FLOAT32 || b->dtype == CNN_FLOAT32 ? CNN_FLOAT32 : CNN_INT64;
  cnn_tensor *ca = prepare_input(a, dt, NULL), *cb = ca ? prepare_input(b, dt, NULL) : NULL;
  cnn_tensor *out = cb ? cnn_tensor_empty(dt, n2, s2) : NULL;
  if (out) {
    cnn_iter it;
    const cnn_tensor *ops[4] = {out, cond, ca, cb};
    if (cnn_iter_init(&it, 4, ops, n2, s2) == 0) {
      where_ctx c = {cond->dtype, dt};
      cnn_iter_run(&it, where_loop, &c, true);
    } else {
      cnn_tensor_release(out);
      out = NULL;
    }
  }
  cnn_tensor_release(ca);
  cnn_tensor_release(cb);
  return out;
}

/* ---- allclose ---- */

typedef struct close_ctx {
  cnn_dtype a, b;
  double rtol, atol;
  bool ok;
} close_ctx;

static void close_loop(void *vctx, int64_t n, char **p, const int64_t *step) {
  close_ctx *c = vctx;
  for (int64_t i = 0; i < n && c->ok; i++) {
    const char *pa = p[0] + i * step[0], *pb = p[1] + i * step[1];
    double x = c->a == CNN_FLOAT32 ? (double)*(const float *)pa : (double)*(const int64_t *)pa;
    double y = c->b == CNN_FLOAT32 ? (double)*(const float *)pb : (double)*(const int64_t *)pb;
    /* equal values (infinities included) are close; otherwise a NaN or infinity never is */
    if (x == y) continue;
    if (!isfinite(x) || !isfinite(y) || !(fabs(x - y) <= c->atol + c->rtol * fabs(y))) c->ok = false;
  }
}

int cnn_ew_allclose(const cnn_tensor *a, const cnn_tensor *b, double rtol, double atol) {
  int nd;
  int64_t shape[CNN_MAX_DIMS];
  if (cnn_broadcast_shape(a->ndim, a->size, b->ndim, b->size, &nd, shape)) return -1;
  /* both as views of the broadcast shape, so neither operand needs to be the larger one */
  cnn_tensor *ea = cnn_tensor_expand(a, nd, shape);
  cnn_tensor *eb = ea ? cnn_tensor_expand(b, nd, shape) : NULL;
  int rc = -1;
  if (eb) {
    cnn_iter it;
    const cnn_tensor *ops[2] = {ea, eb};
    if (cnn_iter_init(&it, 2, ops, nd, shape) == 0) {
      close_ctx c = {a->dtype, b->dtype, rtol, atol, true};
      cnn_iter_run(&it, close_loop, &c, false); /* c.ok is shared state */
      rc = c.ok ? 1 : 0;
    }
  }
  cnn_tensor_release(ea);
  cnn_tensor_release(eb);
  return rc;
}
