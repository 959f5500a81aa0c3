/** Elementwise math with NumPy/PyTorch broadcasting over float32, int64, uint8 and bool, without
 * autograd. Types promote as PyTorch 1.13's (cnn_dtype_result: bool < uint8 < int64 < float32, 0-d
 * operands only raising the category); integer arithmetic wraps (uint8 modulo 256). DIV and the
 * float-only unary ops (exp, log, sqrt, sigmoid, tanh) give float32; POW of integers stays integral
 * (PyTorch's integer power: wrapping, a negative exponent truncates). Comparisons and the logical
 * ops give bool. On bool, ADD is "or" and MUL "and"; SUB and NEG of bool are errors, as in PyTorch. */
#ifndef CNN_ELEMENTWISE_H
#define CNN_ELEMENTWISE_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cnn_binop {
  CNN_ADD,
  CNN_SUB,
  CNN_MUL,
  CNN_DIV,
  CNN_POW,
  CNN_MAXIMUM,
  CNN_MINIMUM,
  CNN_EQ,
  CNN_NE,
  CNN_LT,
  CNN_LE,
  CNN_GT,
  CNN_GE,
  CNN_LOGICAL_AND, /* bool result: nonzero on both sides (any dtypes) */
  CNN_LOGICAL_OR,
  CNN_LOGICAL_XOR,
  CNN_BIT_AND, /* bool, uint8 and int64 only: bitwise (on bool, logical) */
  CNN_BIT_OR,
  CNN_BIT_XOR,
  CNN_FLOOR_DIVIDE, /* a / b rounded down, PyTorch's algorithm (not floor of the rounded quotient) */
  CNN_REMAINDER,    /* a - floor_divide(a, b) * b, with b's sign (fmod-based for floats, as PyTorch);
                     * integer operands: an error when b holds a 0 */
} cnn_binop;

/** Comparisons and logical ops: results are bool and carry no gradient. */
static inline bool cnn_binop_is_boolean(cnn_binop op) { return op >= CNN_EQ && op <= CNN_LOGICAL_XOR; }

typedef enum cnn_unop {
  CNN_NEG,
  CNN_EXP,
  CNN_LOG,
  CNN_SQRT,
  CNN_ABS,
  CNN_RELU,
  CNN_SIGMOID,
  CNN_TANH,
  CNN_SIGN,
  CNN_CLAMP,       /* p0 = lo, p1 = hi (either may be -inf / +inf) */
  CNN_POW_SCALAR,  /* x ^ p0 (integer x: integral for an integral p0 >= 0) */
  CNN_RPOW_SCALAR, /* p0 ^ x (integer x: integral for an integral p0) */
  CNN_ADD_SCALAR,
  CNN_MUL_SCALAR, /* x + p0, x * p0 (keep int64 when x is int64 and p0 integral) */
  CNN_BIT_NOT,    /* bool (logical not), uint8 and int64 only */
  CNN_FLOOR,
  CNN_CEIL,
  CNN_ROUND, /* half to even, as PyTorch */
  CNN_TRUNC, /* integer dtypes: the identity; bool: refused, as PyTorch */
} cnn_unop;

/** Tests giving bool: NaN, +-inf, finite, +inf, -inf, zero (logical not). */
typedef enum cnn_predicate {
  CNN_ISNAN,
  CNN_ISINF,
  CNN_ISFINITE,
  CNN_ISPOSINF,
  CNN_ISNEGINF,
  CNN_LOGICAL_NOT,
} cnn_predicate;

/** out = a op b, broadcast; new reference. */
cnn_tensor *cnn_ew_binary(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b);
/** out = a op b written into out (any strides); out's shape must be the broadcast shape and out
 * may alias a or b exactly (in-place). Result converted to out's dtype. Returns 0 or -1. */
int cnn_ew_binary_into(cnn_binop op, cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b);
/** The dtype of a op b (bool for comparisons), or -1 with the error set (bool subtraction, float
 * bitwise ops). */
int cnn_ew_binary_dtype(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b, cnn_dtype *out);
/** Whether a value of dtype from may be written into a tensor of dtype to, as PyTorch's can_cast:
 * never float into an integer type, nor a number into bool. */
bool cnn_dtype_can_cast(cnn_dtype from, cnn_dtype to);
/** out = f(x; p0, p1); new reference. */
cnn_tensor *cnn_ew_unary(cnn_unop op, const cnn_tensor *x, double p0, double p1);
/** In place on x (any strides). Returns 0 or -1 (e.g. float-only op on int64). */
int cnn_ew_unary_(cnn_unop op, cnn_tensor *x, double p0, double p1);
/** out = a + alpha * b (broadcast b into a's shape), in place on a: the gradient accumulator. */
int cnn_ew_axpy_(cnn_tensor *a, double alpha, const cnn_tensor *b);
/** A bool tensor of x's shape: pred(x). Integers are never NaN or inf. New reference. */
cnn_tensor *cnn_ew_predicate(cnn_predicate pred, const cnn_tensor *x);
/** out = cond ? a : b, elementwise with broadcasting (out's dtype: cnn_dtype_result of a, b);
 * cond is bool (any dtype is read as nonzero). */
cnn_tensor *cnn_ew_where(const cnn_tensor *cond, const cnn_tensor *a, const cnn_tensor *b);
/** True when every pair satisfies |a - b| <= atol + rtol * |b| (shapes broadcast); NaN != NaN
 * unless equal_nan; two int64 operands compare exactly. Returns 1, 0, or -1 on error. */
int cnn_ew_allclose(const cnn_tensor *a, const cnn_tensor *b, double rtol, double atol, bool equal_nan);

#ifdef __cplusplus
}
#endif
#endif
