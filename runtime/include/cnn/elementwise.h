/** Elementwise math with NumPy/PyTorch broadcasting, float32 and int64, without autograd.
 * Type promotion: float32 if any operand is float32, else int64; DIV and the float-only unary ops
 * always give float32 (int64 inputs are converted). POW of int64 by int64 stays int64 (PyTorch's
 * integer power: wrapping, a negative exponent truncates). Comparisons give float32 0/1. */
#ifndef CNN_ELEMENTWISE_H
#define CNN_ELEMENTWISE_H

#include "tensor.h"

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
} cnn_binop;

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
  CNN_POW_SCALAR,  /* x ^ p0 (int64 x: int64 for an integral p0 >= 0) */
  CNN_RPOW_SCALAR, /* p0 ^ x (int64 x: int64 for an integral p0) */
  CNN_ADD_SCALAR,
  CNN_MUL_SCALAR, /* x + p0, x * p0 (keep int64 when x is int64 and p0 integral) */
} cnn_unop;

/** out = a op b, broadcast; new reference. */
cnn_tensor *cnn_ew_binary(cnn_binop op, const cnn_tensor *a, const cnn_tensor *b);
/** out = a op b written into out (any strides); out's shape must be the broadcast shape and out
 * may alias a or b exactly (in-place). Result converted to out's dtype. Returns 0 or -1. */
int cnn_ew_binary_into(cnn_binop op, cnn_tensor *out, const cnn_tensor *a, const cnn_tensor *b);
/** out = f(x; p0, p1); new reference. */
cnn_tensor *cnn_ew_unary(cnn_unop op, const cnn_tensor *x, double p0, double p1);
/** In place on x (any strides). Returns 0 or -1 (e.g. float-only op on int64). */
int cnn_ew_unary_(cnn_unop op, cnn_tensor *x, double p0, double p1);
/** out = a + alpha * b (broadcast b into a's shape), in place on a: the gradient accumulator. */
int cnn_ew_axpy_(cnn_tensor *a, double alpha, const cnn_tensor *b);
/** out = cond ? a : b, elementwise with broadcasting; cond is a 0/1 float or int tensor. */
cnn_tensor *cnn_ew_where(const cnn_tensor *cond, const cnn_tensor *a, const cnn_tensor *b);
/** True when every pair satisfies |a - b| <= atol + rtol * |b| (shapes broadcast); NaN != NaN.
 * Returns 1, 0, or -1 on error. */
int cnn_ew_allclose(const cnn_tensor *a, const cnn_tensor *b, double rtol, double atol);

#endif
