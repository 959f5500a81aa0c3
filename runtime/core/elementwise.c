/* Elementwise kernels (see elementwise.h). Entry points settle dtype promotion and aliasing before
 * any loop runs: every inner loop sees operands of one compute dtype and an output that is either
 * fresh or exactly the view of an input, so element i is read before it is written. bool data is
 * uint8 0/1, and every loop writing bool writes 0 or 1. */
#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "core/checked.h"
#include "core/iter.h"

#include <math.h>
#include <string.h>

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
  if (!cnn_double_in_int64(p) || p != floor(p)) return false;
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

/* "cannot write float32 results into an int64 tensor" (the article for the dtype's name) */
static int cast_error(cnn_dtype from, cnn_dtype to) {
  return cnn_error_set("cannot write %s results into %s %s tensor", cnn_dtype_name(from), to == CNN_INT64 ? "an" : "a",
                       cnn_dtype_name(to));
}

bool cnn_dtype_can_cast(cnn_dtype from, cnn_dtype to) {
  if (from == CNN_FLOAT32 && to != CNN_FLOAT32) return false;
  if (from != CNN_BOOL && to == CNN_BOOL) return false;
  return true;
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

/* Comparisons of one input type, bool (0/1 bytes) out; the logical ops compare with zero. */
#define CMP(T)                                                                     \
  switch (op) {                                                                    \
  case CNN_EQ: LOOP4(uint8_t, T, (uint8_t)(x == y)); break;                        \
  case CNN_NE: LOOP4(uint8_t, T, (uint8_t)(x != y)); break;                        \
  case CNN_LT: LOOP4(uint8_t, T, (uint8_t)(x < y)); break;                         \
  case CNN_LE: LOOP4(uint8_t, T, (uint8_t)(x <= y)); break;                        \
  case CNN_GT: LOOP4(uint8_t, T, (uint8_t)(x > y)); break;                         \
  case CNN_GE: LOOP4(uint8_t, T, (uint8_t)(x >= y)); break;                        \
  case CNN_LOGICAL_AND: LOOP4(uint8_t, T, (uint8_t)(x != 0 && y != 0)); break;     \
  case CNN_LOGICAL_OR: LOOP4(uint8_t, T, (uint8_t)(x != 0 || y != 0)); break;      \
  case CNN_LOGICAL_XOR: LOOP4(uint8_t, T, (uint8_t)((x != 0) != (y != 0))); break; \
  default: break;                                                                  \
  }

static void cmp_f32(void *ctx, int64_t n, char **p, const int64_t *step) {
  const cnn_binop op = *(const cnn_binop *)ctx;
  CMP(float)
}

static void cmp_i64(void *ctx, int64_t n, char **p, const int64_t *step) {
  const cnn_binop op = *(const cnn_binop *)ctx;
  CMP(int64_t)
}

static void cmp_u8(void *ctx, int64_t n, char **p, const int64_t *step) { /* uint8 and bool */
  const cnn_binop op = *(const cnn_binop *)ctx;
  CMP(uint8_t)
}

#undef CMP

/* PyTorch's div_floor for floats: from fmod, so that 1 // 0.1 is 9 (floor(1 / 0.1) rounds to 10);
 * the IEEE quotient for b = 0 */
static inline float floor_div_f32(float a, float b) {
  if (b == 0) return a / b;
  const float mod = fmodf(a, b);
  float div = (a - mod) / b;
  if (mod != 0 && (b < 0) != (mod < 0)) div -= 1;
  if (div == 0) return copysignf(0.0f, a / b);
  float fl = floorf(div);
  return div - fl > 0.5f ? fl + 1.0f : fl;
}

static inline float remainder_f32(float a, float b) {
  const float mod = fmodf(a, b);
  return mod != 0 && (b < 0) != (mod < 0) ? mod + b : mod;
}

/* integer floor division and remainder (b != 0, checked before the loop); INT64_MIN / -1 wraps */
static inline int64_t floor_div_i64(int64_t a, int64_t b) {
  if (b == -1) return wrap_sub(0, a);
  const int64_t q = a / b;
  return a % b != 0 && (a < 0) != (b < 0) ? q - 1 : q;
}

static inline int64_t remainder_i64(int64_t a, int64_t b) {
  if (b == -1) return 0;
  const int64_t r = a % b;
  return r != 0 && (r < 0) != (b < 0) ? r + b : r;
}

/* float32 inputs, float32 output. MAXIMUM/MINIMUM return a NaN operand, as PyTorch. */
static void bin_f32(void *ctx, int64_t n, char **p, const int64_t *step) {
  switch (*(const cnn_binop *)ctx) {
  case CNN_ADD: LOOP4(float, float, x + y); break;
  case CNN_SUB: LOOP4(float, float, x - y); break;
  case CNN_MUL: LOOP4(float, float, x *y); break;
  case CNN_DIV: LOOP4(float, float, x / y); break;
  case CNN_POW: LOOP4(float, float, powf(x, y)); break;
  case CNN_MAXIMUM: LOOP4(float, float, (x > y || x != x) ? x : y); break;
  case CNN_MINIMUM: LOOP4(float, float, (x < y || x != x) ? x : y); break;
  case CNN_FLOOR_DIVIDE: LOOP4(float, float, floor_div_f32(x, y)); break;
  case CNN_REMAINDER: LOOP4(float, float, remainder_f32(x, y)); break;
  default: break; /* comparisons in cmp_f32; bitwise ops are refused for floats */
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
  case CNN_BIT_AND: LOOP4(int64_t, int64_t, x & y); break;
  case CNN_BIT_OR: LOOP4(int64_t, int64_t, x | y); break;
  case CNN_BIT_XOR: LOOP4(int64_t, int64_t, x ^ y); break;
  case CNN_FLOOR_DIVIDE: LOOP4(int64_t, int64_t, floor_div_i64(x, y)); break;
  case CNN_REMAINDER: LOOP4(int64_t, int64_t, remainder_i64(x, y)); break;
  default: break; /* DIV computes in float32; comparisons in cmp_i64 */
  }
}

/* uint8 inputs, uint8 output, modulo 256. */
static void bin_u8(void *ctx, int64_t n, char **p, const int64_t *step) {
  switch (*(const cnn_binop *)ctx) {
  case CNN_ADD: LOOP4(uint8_t, uint8_t, (uint8_t)(x + y)); break;
  case CNN_SUB: LOOP4(uint8_t, uint8_t, (uint8_t)(x - y)); break;
  case CNN_MUL: LOOP4(uint8_t, uint8_t, (uint8_t)(x * y)); break;
  case CNN_POW: LOOP4(uint8_t, uint8_t, (uint8_t)ipow(x, y)); break;
  case CNN_MAXIMUM: LOOP4(uint8_t, uint8_t, x > y ? x : y); break;
  case CNN_MINIMUM: LOOP4(uint8_t, uint8_t, x < y ? x : y); break;
  case CNN_BIT_AND: LOOP4(uint8_t, uint8_t, x & y); break;
  case CNN_BIT_OR: LOOP4(uint8_t, uint8_t, x | y); break;
  case CNN_BIT_XOR: LOOP4(uint8_t, uint8_t, x ^ y); break;
  case CNN_FLOOR_DIVIDE: LOOP4(uint8_t, uint8_t, (uint8_t)(x / y)); break;
  case CNN_REMAINDER: LOOP4(uint8_t, uint8_t, (uint8_t)(x % y)); break;
  default: break;
  }
}

/* bool inputs, bool output: + is or, * is and (PyTorch's bool arithmetic); max/min likewise. */
static void bin_bool(void *ctx, int64_t n, char **p, const int64_t *step) {
  switch (*(const cnn_binop *)ctx) {
  case CNN_ADD:
  case CNN_MAXIMUM:
  case CNN_BIT_OR: LOOP4(uint8_t, uint8_t, x | y); break;
  case CNN_MUL:
  case CNN_MINIMUM:
  case CNN_BIT_AND: LOOP4(uint8_t, uint8_t, x & y); break;
  case CNN_BIT_XOR: LOOP4(uint8_t, uint8_t, x ^ y); break;
  default: break; /* SUB and POW are refused for bool */
  }
}

static bool is_bitwise(cnn_binop op) { return op >= CNN_BIT_AND && op <= CNN_BIT_XOR; }

/* The dtype the loop computes in and the dtype of the result (they differ for comparisons and the
 * logical ops, which give bool, and DIV, which computes in float32). */
static int bin_dtypes(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b, cnn_dtype *compute, cnn_dtype *result) {
  const cnn_tensor *ts[2] = {a, b};
  cnn_dtype rt = cnn_dtype_result(2, ts);
  if (op == CNN_SUB && (a->dtype == CNN_BOOL || b->dtype == CNN_BOOL))
    return cnn_error_set("subtraction with a bool tensor is not supported (use logical_xor, or convert it first)");
  if (op == CNN_POW && rt == CNN_BOOL) return cnn_error_set("pow is not implemented for bool tensors");
  if ((op == CNN_FLOOR_DIVIDE || op == CNN_REMAINDER) && rt == CNN_BOOL)
    return cnn_error_set("%s is not implemented for bool tensors", op == CNN_REMAINDER ? "remainder" : "floor_divide");
  if (is_bitwise(op) && rt == CNN_FLOAT32)
    return cnn_error_set("bitwise operations need bool or integer tensors, not float32");
  if (op == CNN_DIV) rt = CNN_FLOAT32;
  *compute = rt;
  *result = cnn_binop_is_boolean(op) ? CNN_BOOL : rt;
  return 0;
}

int cnn_ew_binary_dtype(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b, cnn_dtype *out) {
  cnn_dtype c = CNN_FLOAT32;
  return bin_dtypes(op, a, b, &c, out);
}

static cnn_iter_fn bin_loop(cnn_binop op, cnn_dtype cdt) {
  switch (cdt) {
  case CNN_FLOAT32: return cnn_binop_is_boolean(op) ? cmp_f32 : bin_f32;
  case CNN_INT64: return cnn_binop_is_boolean(op) ? cmp_i64 : bin_i64;
  case CNN_UINT8: return cnn_binop_is_boolean(op) ? cmp_u8 : bin_u8;
  case CNN_BOOL: return cnn_binop_is_boolean(op) ? cmp_u8 : bin_bool;
  }
  return bin_f32;
}

/* out (result dtype, any strides, exactly the iteration shape) = a op b in compute dtype cdt. */
static int binary_run(cnn_binop op, cnn_dtype cdt, cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b) {
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
  if (rc == 0) cnn_iter_run(&it, bin_loop(op, cdt), &op, true);
  cnn_tensor_release(ca);
  cnn_tensor_release(cb);
  return rc;
}

/* Integer floor division and remainder by 0 are errors (PyTorch's ZeroDivisionError), found before
 * the loop, which cannot fail: 0 when b holds no 0. */
static int no_zero_divisor(const cnn_tensor *b) {
  cnn_tensor *as_int = cnn_tensor_to_dtype(b, CNN_INT64), *c = as_int ? cnn_tensor_contiguous(as_int) : NULL;
  cnn_tensor_release(as_int);
  if (!c) return -1;
  const int64_t *v = cnn_tensor_data(c), n = cnn_tensor_numel(c);
  bool zero = false;
  for (int64_t i = 0; i < n && !zero; i++) zero = v[i] == 0;
  cnn_tensor_release(c);
  return zero ? cnn_error_set("integer division by zero") : 0;
}

cnn_tensor *cnn_ew_binary(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b) {
  int nd;
  int64_t shape[CNN_MAX_DIMS];
  cnn_dtype cdt = CNN_FLOAT32, rdt = CNN_FLOAT32;
  if (bin_dtypes(op, a, b, &cdt, &rdt)) return NULL;
  if ((op == CNN_FLOOR_DIVIDE || op == CNN_REMAINDER) && cdt != CNN_FLOAT32 && no_zero_divisor(b)) return NULL;
  if (cnn_broadcast_shape(a->ndim, a->size, b->ndim, b->size, &nd, shape)) return NULL;
  cnn_tensor *out = cnn_tensor_empty(rdt, nd, shape);
  if (!out) return NULL;
  if (binary_run(op, cdt, out, a, b)) {
    cnn_tensor_release(out);
    return NULL;
  }
  return out;
}

int cnn_ew_binary_into(cnn_binop op, cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b) {
  int nd, nd2;
  int64_t shape[CNN_MAX_DIMS], shape2[CNN_MAX_DIMS];
  cnn_dtype cdt = CNN_FLOAT32, rdt = CNN_FLOAT32;
  if (bin_dtypes(op, a, b, &cdt, &rdt)) return -1;
  if (!cnn_dtype_can_cast(rdt, out->dtype)) return cast_error(rdt, out->dtype);
  /* as cnn_ew_binary: an integer 0 divisor is an error before any loop runs (SIGFPE otherwise:
   * div_(0, {rounding_mode = "floor"}) on int64 reached it) */
  if ((op == CNN_FLOOR_DIVIDE || op == CNN_REMAINDER) && cdt != CNN_FLOAT32 && no_zero_divisor(b)) return -1;
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
  if (out->dtype == rdt) return binary_run(op, cdt, out, a, b);
  /* a different output dtype: compute in the result dtype, then convert */
  cnn_tensor *tmp = cnn_tensor_empty(rdt, out->ndim, out->size);
  if (!tmp) return -1;
  int rc = binary_run(op, cdt, tmp, a, b);
  if (rc == 0) rc = cnn_tensor_copy_(out, tmp);
  cnn_tensor_release(tmp);
  return rc;
}

/* ---- unary loops: operand 0 out, 1 x ---- */

typedef struct unary_ctx {
  cnn_unop op;
  float f0, f1;   /* parameters for float32 loops */
  int64_t i0, i1; /* parameters for integer loops (integral by construction) */
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
    else if (a == 3.0f) LOOP2(float, x *x *x);
    else if (a == 1.0f) LOOP2(float, x);
    else if (a == 0.5f) LOOP2(float, sqrtf(x));
    else if (a == -0.5f) LOOP2(float, 1.0f / sqrtf(x)); /* rsqrt: -inf at -0, where powf gives inf */
    else if (a == -1.0f) LOOP2(float, 1.0f / x);
    else if (a == -2.0f) LOOP2(float, 1.0f / (x * x));
    else LOOP2(float, powf(x, a));
    break;
  case CNN_RPOW_SCALAR: LOOP2(float, powf(a, x)); break;
  case CNN_ADD_SCALAR: LOOP2(float, x + a); break;
  case CNN_MUL_SCALAR: LOOP2(float, x *a); break;
  case CNN_BIT_NOT: break; /* refused for floats */
  case CNN_FLOOR: LOOP2(float, floorf(x)); break;
  case CNN_CEIL: LOOP2(float, ceilf(x)); break;
  case CNN_ROUND: LOOP2(float, nearbyintf(x)); break; /* the default rounding: to nearest, ties to even */
  case CNN_TRUNC: LOOP2(float, truncf(x)); break;
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
  case CNN_BIT_NOT: LOOP2(int64_t, ~x); break;
  case CNN_FLOOR:
  case CNN_CEIL:
  case CNN_ROUND:
  case CNN_TRUNC: LOOP2(int64_t, x); break;
  default: break; /* float-only ops never reach the int64 loop */
  }
}

/* uint8, modulo 256: the int64 parameters wrap to their low byte. */
static void un_u8(void *vctx, int64_t n, char **p, const int64_t *step) {
  const unary_ctx *c = vctx;
  const int64_t a = c->i0, b = c->i1;
  const uint8_t a8 = (uint8_t)a, b8 = (uint8_t)b;
  switch (c->op) {
  case CNN_NEG: LOOP2(uint8_t, (uint8_t)(0u - x)); break;
  case CNN_ABS:
  case CNN_RELU: LOOP2(uint8_t, x); break;
  case CNN_SIGN: LOOP2(uint8_t, (uint8_t)(x > 0)); break;
  case CNN_CLAMP: LOOP2(uint8_t, x < a8 ? (a8 > b8 ? b8 : a8) : (x > b8 ? b8 : x)); break;
  case CNN_ADD_SCALAR: LOOP2(uint8_t, (uint8_t)wrap_add(x, a)); break;
  case CNN_MUL_SCALAR: LOOP2(uint8_t, (uint8_t)wrap_mul(x, a)); break;
  case CNN_POW_SCALAR: LOOP2(uint8_t, (uint8_t)ipow(x, a)); break;
  case CNN_RPOW_SCALAR: LOOP2(uint8_t, (uint8_t)ipow(a, x)); break;
  case CNN_BIT_NOT: LOOP2(uint8_t, (uint8_t)~x); break;
  case CNN_FLOOR:
  case CNN_CEIL:
  case CNN_ROUND:
  case CNN_TRUNC: LOOP2(uint8_t, x); break;
  default: break;
  }
}

/* bool: sign is the identity, bitwise not the logical one. */
static void un_bool(void *vctx, int64_t n, char **p, const int64_t *step) {
  const unary_ctx *c = vctx;
  switch (c->op) {
  case CNN_SIGN: LOOP2(uint8_t, x); break;
  case CNN_BIT_NOT: LOOP2(uint8_t, (uint8_t)!x); break;
  default: break;
  }
}

/* A scalar parameter written into uint8, as PyTorch checks it: -255..255 (negative ones wrap). */
static int u8_param(double p, int64_t *out) {
  if (!(p > -256 && p < 256))
    return cnn_error_set("value %g cannot be converted to type uint8 without overflow", cnn_error_num(p));
  *out = (int64_t)p;
  return 0;
}

/* Decides the dtype a unary op computes in (and gives) for x, and fills the loop parameters.
 * Returns 0, or -1 with the error set for ops that bool (or float) does not have. */
static int unary_dtype(cnn_unop op, cnn_dtype xdt, double p0, double p1, unary_ctx *c, cnn_dtype *dt) {
  c->op = op;
  c->f0 = (float)p0;
  c->f1 = (float)p1;
  c->i0 = c->i1 = 0;
  *dt = CNN_FLOAT32;
  switch (op) {
  case CNN_EXP:
  case CNN_LOG:
  case CNN_SQRT:
  case CNN_SIGMOID:
  case CNN_TANH: return 0; /* float32 for every input */
  case CNN_BIT_NOT:
    if (xdt == CNN_FLOAT32) return cnn_error_set("bitwise operations need bool or integer tensors, not float32");
    *dt = xdt;
    return 0;
  default: break;
  }
  if (xdt == CNN_FLOAT32) return 0;
  if (xdt == CNN_BOOL) {
    switch (op) {
    case CNN_NEG: return cnn_error_set("negation of a bool tensor is not supported (use logical_not to invert a mask)");
    case CNN_ABS:
    case CNN_RELU:
    case CNN_FLOOR:
    case CNN_CEIL:
    case CNN_ROUND:
    case CNN_TRUNC: return cnn_error_set("not implemented for bool tensors");
    case CNN_SIGN: *dt = CNN_BOOL; return 0;
    default: xdt = CNN_INT64; break; /* a number parameter promotes bool: as int64, below */
    }
  }
  cnn_dtype idt = xdt; /* the integer dtype: int64 or uint8 */
  switch (op) {
  case CNN_NEG:
  case CNN_ABS:
  case CNN_RELU:
  case CNN_SIGN:
  case CNN_FLOOR:
  case CNN_CEIL:
  case CNN_ROUND:
  case CNN_TRUNC: *dt = idt; return 0;
  case CNN_CLAMP: {
    bool lo_ok = p0 == -INFINITY || int_param(p0, &c->i0);
    bool hi_ok = p1 == INFINITY || int_param(p1, &c->i1);
    if (!lo_ok || !hi_ok) return 0; /* float bounds: float32 */
    if (idt == CNN_UINT8) {
      c->i0 = 0, c->i1 = 255;
      if ((p0 != -INFINITY && u8_param(p0, &c->i0)) || (p1 != INFINITY && u8_param(p1, &c->i1))) return -1;
    } else {
      if (p0 == -INFINITY) c->i0 = INT64_MIN;
      if (p1 == INFINITY) c->i1 = INT64_MAX;
    }
    *dt = idt;
    return 0;
  }
  case CNN_ADD_SCALAR: /* u8 + 300 wraps, in PyTorch too */
  case CNN_MUL_SCALAR:
    if (int_param(p0, &c->i0)) *dt = idt;
    return 0;
  case CNN_RPOW_SCALAR: /* pow's scalar, base or exponent, must fit uint8 (PyTorch: u8 ^ 300 raises) */
    if (int_param(p0, &c->i0)) {
      if (idt == CNN_UINT8 && u8_param(p0, &c->i0)) return -1;
      *dt = idt;
    }
    return 0;
  case CNN_POW_SCALAR: /* integral exponents >= 0 stay integral (negative ones: see the bindings) */
    if (int_param(p0, &c->i0) && c->i0 >= 0) {
      if (idt == CNN_UINT8 && u8_param(p0, &c->i0)) return -1;
      *dt = idt;
    }
    return 0;
  default: return 0;
  }
}

static int unary_run(const unary_ctx *c, cnn_tensor *out, const cnn_tensor *x) {
  cnn_iter it;
  const cnn_tensor *ops[2] = {out, x};
  if (cnn_iter_init(&it, 2, ops, out->ndim, out->size)) return -1;
  cnn_iter_fn fn = out->dtype == CNN_FLOAT32 ? un_f32
                   : out->dtype == CNN_INT64 ? un_i64
                   : out->dtype == CNN_UINT8 ? un_u8
                                             : un_bool;
  cnn_iter_run(&it, fn, (void *)c, true);
  return 0;
}

cnn_tensor *cnn_ew_unary(cnn_unop op, const cnn_tensor *x, double p0, double p1) {
  unary_ctx c;
  cnn_dtype dt = CNN_FLOAT32;
  if (unary_dtype(op, x->dtype, p0, p1, &c, &dt)) return NULL;
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
  cnn_dtype dt = CNN_FLOAT32;
  if (unary_dtype(op, x->dtype, p0, p1, &c, &dt)) return -1;
  if (dt != x->dtype) return cast_error(dt, x->dtype);
  if (cnn_tensor_check_writable(x)) return -1;
  return unary_run(&c, x, x);
}

/* ---- predicates: bool out ---- */

static void pred_f32(void *vctx, int64_t n, char **p, const int64_t *step) {
  const cnn_predicate pr = *(const cnn_predicate *)vctx;
  for (int64_t i = 0; i < n; i++) {
    const float x = *(const float *)(p[1] + i * step[1]);
    bool r = false;
    switch (pr) {
    case CNN_ISNAN: r = x != x; break;
    case CNN_ISINF: r = isinf(x); break;
    case CNN_ISFINITE: r = isfinite(x); break;
    case CNN_ISPOSINF: r = x == INFINITY; break;
    case CNN_ISNEGINF: r = x == -INFINITY; break;
    case CNN_LOGICAL_NOT: r = x == 0; break;
    }
    *(uint8_t *)(p[0] + i * step[0]) = (uint8_t)r;
  }
}

/* integers are never NaN or infinite: only logical_not reads them (as uint8 or int64) */
static void pred_int(void *vctx, int64_t n, char **p, const int64_t *step) {
  const cnn_predicate pr = *(const cnn_predicate *)vctx;
  const bool wide = step[2] == 8; /* the element size, passed in the third step slot */
  for (int64_t i = 0; i < n; i++) {
    const char *px = p[1] + i * step[1];
    bool zero = wide ? *(const int64_t *)px == 0 : *(const uint8_t *)px == 0;
    *(uint8_t *)(p[0] + i * step[0]) = (uint8_t)(pr == CNN_LOGICAL_NOT ? zero : pr == CNN_ISFINITE);
  }
}

typedef struct pred_ctx {
  cnn_predicate pred;
  int64_t esize;
} pred_ctx;

static void pred_loop(void *vctx, int64_t n, char **p, const int64_t *step) {
  const pred_ctx *c = vctx;
  if (c->esize == 4) {
    pred_f32((void *)&c->pred, n, p, step);
    return;
  }
  const int64_t st[3] = {step[0], step[1], c->esize};
  pred_int((void *)&c->pred, n, p, st);
}

cnn_tensor *cnn_ew_predicate(cnn_predicate pred, const cnn_tensor *x) {
  cnn_tensor *out = cnn_tensor_empty(CNN_BOOL, x->ndim, x->size);
  if (!out) return NULL;
  cnn_iter it;
  const cnn_tensor *ops[2] = {out, x};
  if (cnn_iter_init(&it, 2, ops, out->ndim, out->size)) {
    cnn_tensor_release(out);
    return NULL;
  }
  pred_ctx c = {pred, (int64_t)cnn_dtype_size(x->dtype)};
  cnn_iter_run(&it, pred_loop, &c, true);
  return out;
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

static void axpy_u8(void *vctx, int64_t n, char **p, const int64_t *step) {
  const int64_t al = ((const axpy_ctx *)vctx)->i;
  for (int64_t i = 0; i < n; i++) {
    uint8_t *o = (uint8_t *)(p[0] + i * step[0]);
    *o = (uint8_t)wrap_add(*o, wrap_mul(al, *(const uint8_t *)(p[1] + i * step[1])));
  }
}

int cnn_ew_axpy_(cnn_tensor *a, double alpha, const cnn_tensor *b) {
  axpy_ctx c = {(float)alpha, 0};
  if (a->dtype == CNN_BOOL) { /* as PyTorch: a | (b && alpha), b bool and alpha an integer */
    if (b->dtype != CNN_BOOL) return cast_error(b->dtype, CNN_BOOL);
    if (!int_param(alpha, &c.i)) return cast_error(CNN_FLOAT32, CNN_BOOL);
    if (cnn_tensor_check_writable(a)) return -1;
    if (c.i) return cnn_ew_binary_into(CNN_BIT_OR, a, a, b);
    cnn_tensor *none = cnn_tensor_scalar(CNN_BOOL, 0); /* alpha 0: a | false, b's shape still checked */
    cnn_tensor *bz = none ? cnn_ew_binary(CNN_BIT_AND, b, none) : NULL;
    int rc = bz ? cnn_ew_binary_into(CNN_BIT_OR, a, a, bz) : -1;
    cnn_tensor_release(none);
    cnn_tensor_release(bz);
    return rc;
  }
  if (a->dtype != CNN_FLOAT32 && (b->dtype == CNN_FLOAT32 || !int_param(alpha, &c.i)))
    return cast_error(CNN_FLOAT32, a->dtype);
  if (cnn_tensor_check_writable(a)) return -1;
  /* into uint8, b's low byte gives the same sum modulo 256 */
  cnn_tensor *cb = prepare_input(b, a->dtype, a);
  if (!cb) return -1;
  cnn_iter it;
  const cnn_tensor *ops[2] = {a, cb};
  int rc = cnn_iter_init(&it, 2, ops, a->ndim, a->size);
  if (rc == 0)
    cnn_iter_run(&it, a->dtype == CNN_FLOAT32 ? axpy_f32 : a->dtype == CNN_INT64 ? axpy_i64 : axpy_u8, &c, true);
  cnn_tensor_release(cb);
  return rc;
}

/* ---- where ---- */

typedef struct where_ctx {
  cnn_dtype cond;
  size_t esize; /* of the values */
} where_ctx;

static void where_loop(void *vctx, int64_t n, char **p, const int64_t *step) {
  const where_ctx *c = vctx;
  const int64_t so = step[0], sc = step[1], sa = step[2], sb = step[3];
  for (int64_t i = 0; i < n; i++) {
    const char *pc = p[1] + i * sc;
    bool take_a = c->cond == CNN_FLOAT32 ? *(const float *)pc != 0
                  : c->cond == CNN_INT64 ? *(const int64_t *)pc != 0
                                         : *(const uint8_t *)pc != 0;
    const char *src = take_a ? p[2] + i * sa : p[3] + i * sb;
    char *dst = p[0] + i * so;
    switch (c->esize) {
    case 8: *(int64_t *)dst = *(const int64_t *)src; break;
    case 4: *(float *)dst = *(const float *)src; break;
    default: *(uint8_t *)dst = *(const uint8_t *)src; break;
    }
  }
}

cnn_tensor *cnn_ew_where(const cnn_tensor *cond, const cnn_tensor *a, const cnn_tensor *b) {
  int n1, n2;
  int64_t s1[CNN_MAX_DIMS], s2[CNN_MAX_DIMS];
  if (cnn_broadcast_shape(a->ndim, a->size, b->ndim, b->size, &n1, s1)) return NULL;
  if (cnn_broadcast_shape(cond->ndim, cond->size, n1, s1, &n2, s2)) return NULL;
  const cnn_tensor *vals[2] = {a, b};
  cnn_dtype dt = cnn_dtype_result(2, vals);
  cnn_tensor *ca = prepare_input(a, dt, NULL), *cb = ca ? prepare_input(b, dt, NULL) : NULL;
  cnn_tensor *out = cb ? cnn_tensor_empty(dt, n2, s2) : NULL;
  if (out) {
    cnn_iter it;
    const cnn_tensor *ops[4] = {out, cond, ca, cb};
    if (cnn_iter_init(&it, 4, ops, n2, s2) == 0) {
      where_ctx c = {cond->dtype, cnn_dtype_size(dt)};
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
  bool equal_nan, ok;
} close_ctx;

static double read_value(cnn_dtype dt, const char *p) {
  switch (dt) {
  case CNN_FLOAT32: return (double)*(const float *)p;
  case CNN_INT64: return (double)*(const int64_t *)p;
  case CNN_BOOL:
  case CNN_UINT8: return (double)*(const uint8_t *)p;
  }
  return 0;
}

static void close_loop(void *vctx, int64_t n, char **p, const int64_t *step) {
  close_ctx *c = vctx;
  for (int64_t i = 0; i < n && c->ok; i++) {
    if (c->a == CNN_INT64 && c->b == CNN_INT64) { /* exact: a double holds 53 bits of them */
      const int64_t xi = *(const int64_t *)(p[0] + i * step[0]), yi = *(const int64_t *)(p[1] + i * step[1]);
      const long double d = (long double)xi - (long double)yi;
      if (xi != yi && !(fabsl(d) <= c->atol + c->rtol * fabsl((long double)yi))) c->ok = false;
      continue;
    }
    double x = read_value(c->a, p[0] + i * step[0]), y = read_value(c->b, p[1] + i * step[1]);
    /* equal values (infinities included) are close; otherwise a NaN or infinity never is */
    if (x == y || (c->equal_nan && isnan(x) && isnan(y))) continue;
    if (!isfinite(x) || !isfinite(y) || !(fabs(x - y) <= c->atol + c->rtol * fabs(y))) c->ok = false;
  }
}

int cnn_ew_allclose(const cnn_tensor *a, const cnn_tensor *b, double rtol, double atol, bool equal_nan) {
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
      close_ctx c = {a->dtype, b->dtype, rtol, atol, equal_nan, true};
      cnn_iter_run(&it, close_loop, &c, false); /* c.ok is shared state */
      rc = c.ok ? 1 : 0;
    }
  }
  cnn_tensor_release(ea);
  cnn_tensor_release(eb);
  return rc;
}
