/* Tensor arithmetic for Lua: operators (numbers on either side), elementwise methods,
 * comparisons, in-place forms, reductions and matrix products. */
#include "lcnn.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "autograd/autograd.h" /* cnn_op_rebases: whether an in-place write is recorded */
#include "cnn/autograd.h"
#include "cnn/error.h"
#include "cnn/join.h"
#include "cnn/ops.h"

/* The dtype a Lua integer operand takes: int64 (exact) beside an int64 tensor, else float32. */
static cnn_dtype int_dtype(lua_State *L, int a, int b) {
  const cnn_tensor *t = lcnn_test(L, a) ? lcnn_test(L, a) : lcnn_test(L, b);
  return t ? t->dtype : CNN_FLOAT32;
}

/* a op b where either side may be a number; the result is pushed. */
static int binary(lua_State *L, cnn_binop op, const char *fn) {
  lcnn_max_args(L, 2, fn);
  if (lua_type(L, 2) != LUA_TNUMBER && lua_type(L, 2) != LUA_TBOOLEAN && !lcnn_testbox(L, 2))
    return lcnn_error(L, fn, "expected a tensor, a number or a boolean for argument 2, got %s", luaL_typename(L, 2));
  cnn_dtype dt = int_dtype(L, 1, 2);
  lcnn_anchor_number(L, 1, fn, dt);
  lcnn_anchor_number(L, 2, fn, dt);
  cnn_tensor *a = lcnn_operand(L, 1, fn, dt), *b = lcnn_operand(L, 2, fn, dt);
  lcnn_push(L, cnn_op_binary(op, a, b), fn);
  return 1;
}

/** t:mul(other) -> Tensor
 * t * other, elementwise (broadcasting; also `t * other`); see t:matmul for matrix products. */
static int m_mul(lua_State *L) { return binary(L, CNN_MUL, "mul"); }
/* Argument 2 replaced by argument 2 * the number at alpha_idx, in the dtype the sum will have (as
 * PyTorch: a uint8 other scaled in uint8 wrapped, 2 * 200 = 144, into a float32 sum), then as t:mul
 * computes it (exact for int64 and an integer alpha). */
static void scale_arg2(lua_State *L, int alpha_idx) {
  const cnn_tensor *a = lcnn_test(L, 1), *b = lcnn_test(L, 2);
  if (a && b) {
    const cnn_tensor *both[2] = {a, b};
    const cnn_dtype rd = cnn_dtype_result(2, both);
    if (rd != b->dtype) {
      lcnn_push(L, cnn_op_to_dtype(b, rd), "add");
      lua_replace(L, 2);
    }
  }
  lua_pushcfunction(L, m_mul);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, alpha_idx);
  lua_call(L, 2, 1);
  lua_replace(L, 2);
}

/* alpha at idx for a sum computed in dtype rd, checked as PyTorch's alpha_check: an integer for an
 * integer (or bool) sum, and within -255..255 for a uint8 one (it wrapped: add(u8, u8, {alpha =
 * 300}); a float alpha turned an int64 sum into float32) */
static void check_alpha(lua_State *L, int idx, const char *fn, cnn_dtype rd) {
  if (rd != CNN_FLOAT32 && !lua_isinteger(L, idx))
    lcnn_error(L, fn,
               "alpha must be an integer when the result is %s (as PyTorch: not a floating point number), got %s",
               cnn_dtype_name(rd), lcnn_number_str(L, idx));
  lcnn_check_u8_value(L, idx, fn, rd);
}

/* t:add(other, {alpha=}) and t:sub: other * alpha first (PyTorch's order: two roundings), then
 * the sum or difference */
static int binary_alpha(lua_State *L, cnn_binop op, const char *fn) {
  static const char *const known[] = {"alpha", NULL};
  lcnn_max_args(L, 3, fn);
  lcnn_options(L, 3, fn, known);
  if (lcnn_opt_field(L, 3, "alpha") != LUA_TNIL) { /* stack: t, other, opts, alpha */
    if (lua_type(L, 4) != LUA_TNUMBER) lcnn_error(L, fn, "alpha must be a number, got %s", luaL_typename(L, 4));
    if (lua_type(L, 2) != LUA_TNUMBER && !lcnn_testbox(L, 2))
      lcnn_error(L, fn, "expected a tensor or a number for argument 2 (with alpha), got %s", luaL_typename(L, 2));
    const cnn_tensor *t = lcnn_test(L, 1), *o = lcnn_test(L, 2);
    if (t) { /* the sum's dtype: a Lua integer keeps t's (a bool t's becomes int64), a float float32's */
      const cnn_tensor *both[2] = {t, o};
      check_alpha(L, 4, fn,
                  o                     ? cnn_dtype_result(2, both)
                  : lua_isinteger(L, 2) ? (t->dtype == CNN_BOOL ? CNN_INT64 : t->dtype)
                                        : CNN_FLOAT32);
    }
    if (lua_type(L, 2) == LUA_TNUMBER) {
      lua_pushvalue(L, 2);
      lua_insert(L, 4);
      lua_arith(L, LUA_OPMUL);
      lua_replace(L, 2);
    } else {
      scale_arg2(L, 4);
    }
  }
  lua_settop(L, 2);
  return binary(L, op, fn);
}

/** t:add(other, {alpha=1}) -> Tensor
 * t + other, elementwise: other is a tensor or a number, and the shapes broadcast.
 * With alpha, t + alpha * other. Also the operator: `t + other`, `2 + t`. A float32 side makes the
 * result float32; int64 with a Lua integer stays int64. As PyTorch checks alpha: an integer unless
 * the sum is float32, and within -255..255 for a uint8 sum (which itself wraps: `u + 300`). */
static int m_add(lua_State *L) { return binary_alpha(L, CNN_ADD, "add"); }
/** t:sub(other, {alpha=1}) -> Tensor
 * t - other, elementwise (broadcasting; also `t - other`); with alpha, t - alpha * other. */
static int m_sub(lua_State *L) { return binary_alpha(L, CNN_SUB, "sub"); }
/* number / t as PyTorch's Python operator computes it: t.reciprocal() * number. The two roundings,
 * and the gradient through 1 / t (NaN where number is 0 and 1 / t^2 overflows), are PyTorch's. */
static int rdiv(lua_State *L) {
  lua_settop(L, 2);
  cnn_dtype dt = int_dtype(L, 1, 2);
  lcnn_anchor_number(L, 1, "div", dt);
  lua_pushinteger(L, 1);
  lcnn_anchor_number(L, 3, "div", dt);
  cnn_tensor *s = lcnn_operand(L, 1, "div", dt), *one = lcnn_operand(L, 3, "div", dt);
  cnn_tensor *b = lcnn_check(L, 2, "div");
  cnn_tensor *rec = cnn_op_binary(CNN_DIV, one, b);
  cnn_tensor *r = rec ? cnn_op_binary(CNN_MUL, rec, s) : NULL;
  cnn_tensor_release(rec);
  lcnn_push(L, r, "div");
  return 1;
}

/* Two integer operands' quotient rounded toward zero, exactly: floor_divide(a, b), one more where
 * the remainder is nonzero and a and b have opposite signs (-7 / 2: floor -4, trunc -3). A zero
 * divisor is floor_divide's error. */
static cnn_tensor *int_div_trunc(const cnn_tensor *a, const cnn_tensor *b) {
  cnn_tensor *q = cnn_op_binary(CNN_FLOOR_DIVIDE, a, b);
  cnn_tensor *r = q ? cnn_op_binary(CNN_REMAINDER, a, b) : NULL;
  cnn_tensor *zero = r ? cnn_tensor_scalar_i64(0) : NULL;
  cnn_tensor *inexact = zero ? cnn_op_binary(CNN_NE, r, zero) : NULL;
  cnn_tensor *na = inexact ? cnn_op_binary(CNN_LT, a, zero) : NULL;
  cnn_tensor *nb = na ? cnn_op_binary(CNN_LT, b, zero) : NULL;
  cnn_tensor *opposite = nb ? cnn_op_binary(CNN_LOGICAL_XOR, na, nb) : NULL;
  cnn_tensor *up = opposite ? cnn_op_binary(CNN_LOGICAL_AND, inexact, opposite) : NULL;
  cnn_tensor *step = up ? cnn_tensor_to_dtype(up, q->dtype) : NULL;
  cnn_tensor *t = step ? cnn_op_binary(CNN_ADD, q, step) : NULL;
  cnn_tensor *tmp[] = {q, r, zero, inexact, na, nb, opposite, up, step};
  for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) cnn_tensor_release(tmp[i]);
  return t;
}

/* trunc(a / b), as PyTorch's rounding_mode "trunc": a float32 quotient rounded toward zero, or
 * for two integer operands the exact integer quotient (their dtype, as PyTorch's) */
static int div_trunc(lua_State *L, const char *fn) {
  lua_settop(L, 2);
  bool any_float = false;
  for (int i = 1; i <= 2; i++) {
    const cnn_tensor *t = lcnn_test(L, i);
    any_float |= t ? t->dtype == CNN_FLOAT32 : lua_type(L, i) == LUA_TNUMBER && !lua_isinteger(L, i);
  }
  if (!any_float) {
    cnn_dtype dt = int_dtype(L, 1, 2);
    lcnn_anchor_number(L, 1, fn, dt);
    lcnn_anchor_number(L, 2, fn, dt);
    cnn_tensor *a = lcnn_operand(L, 1, fn, dt), *b = lcnn_operand(L, 2, fn, dt);
    lcnn_push(L, int_div_trunc(a, b), fn);
    return 1;
  }
  binary(L, CNN_DIV, fn);
  lcnn_push(L, cnn_op_unary(CNN_TRUNC, lcnn_check(L, 3, fn), 0, 0), fn);
  return 1;
}

/** t:div(other, {rounding_mode=nil}) -> Tensor
 * t / other, elementwise (broadcasting; also `t / other`); float32 without rounding_mode.
 * rounding_mode "floor" is t:floor_divide(other); "trunc" rounds the quotient toward zero (exact
 * for two integer operands, in their dtype) (both with a zero gradient, as PyTorch). `number / t` is (1 / t) * number, as PyTorch computes
 * it (its roundings and gradient). */
static int m_div(lua_State *L) {
  static const char *const known[] = {"rounding_mode", NULL};
  lcnn_max_args(L, 3, "div");
  lcnn_options(L, 3, "div", known);
  const char *mode = lcnn_opt_string(L, 3, "div", "rounding_mode", NULL);
  if (mode && strcmp(mode, "floor") == 0) {
    lua_settop(L, 2);
    return binary(L, CNN_FLOOR_DIVIDE, "div");
  }
  if (mode && strcmp(mode, "trunc") == 0) return div_trunc(L, "div");
  if (mode) return lcnn_error(L, "div", "rounding_mode must be \"floor\" or \"trunc\", got \"%s\"", mode);
  lua_settop(L, 2);
  if (lua_type(L, 1) == LUA_TNUMBER && lcnn_test(L, 2)) return rdiv(L);
  return binary(L, CNN_DIV, "div");
}
/** t:floor_divide(other) -> Tensor
 * t / other rounded down, elementwise (broadcasting; also `t // other`), as Python's and PyTorch's.
 * Integers stay integers (division by a zero integer is an error); floats follow PyTorch's
 * algorithm (1 // 0.1 is 9). The gradient is zero. */
static int m_floor_divide(lua_State *L) { return binary(L, CNN_FLOOR_DIVIDE, "floor_divide"); }
/** t:remainder(other) -> Tensor
 * t - t:floor_divide(other) * other, elementwise (also `t % other`), as PyTorch's (and Lua's).
 * The result has the sign of other; floats are computed from fmod, integers exactly (a zero
 * divisor is an error). Differentiable: g for t, -g * t:floor_divide(other) for other. */
static int m_remainder(lua_State *L) { return binary(L, CNN_REMAINDER, "remainder"); }
/** t:eq(other) -> Tensor
 * A bool tensor, true where t == other (broadcasting; other a tensor, a number or a boolean). */
static int m_eq(lua_State *L) { return binary(L, CNN_EQ, "eq"); }
/** t:ne(other) -> Tensor
 * A bool tensor, true where t ~= other (broadcasting; other a tensor, a number or a boolean). */
static int m_ne(lua_State *L) { return binary(L, CNN_NE, "ne"); }
/** t:lt(other) -> Tensor
 * A bool tensor, true where t < other (broadcasting; other a tensor, a number or a boolean). */
static int m_lt(lua_State *L) { return binary(L, CNN_LT, "lt"); }
/** t:le(other) -> Tensor
 * A bool tensor, true where t <= other (broadcasting; other a tensor, a number or a boolean). */
static int m_le(lua_State *L) { return binary(L, CNN_LE, "le"); }
/** t:gt(other) -> Tensor
 * A bool tensor, true where t > other (broadcasting; other a tensor, a number or a boolean). */
static int m_gt(lua_State *L) { return binary(L, CNN_GT, "gt"); }
/** t:ge(other) -> Tensor
 * A bool tensor, true where t >= other (broadcasting; other a tensor, a number or a boolean). */
static int m_ge(lua_State *L) { return binary(L, CNN_GE, "ge"); }
/** t:maximum(other) -> Tensor
 * cnn.maximum(a, b) -> Tensor
 * The elementwise maximum of two tensors (broadcasting); a NaN on either side gives NaN. */
static int m_maximum(lua_State *L) { return binary(L, CNN_MAXIMUM, "maximum"); }
/** t:minimum(other) -> Tensor
 * cnn.minimum(a, b) -> Tensor
 * The elementwise minimum of two tensors (broadcasting); a NaN on either side gives NaN. */
static int m_minimum(lua_State *L) { return binary(L, CNN_MINIMUM, "minimum"); }

/* A Lua float (not an integer) at idx: like a Python float, it makes an int64 operand float32. */
static bool is_float_number(lua_State *L, int idx) { return lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx); }

/* x converted to float32 when it is an integer or bool tensor and the Lua number at idx is a float
 * (new reference). */
static cnn_tensor *promote_for(lua_State *L, cnn_tensor *x, int idx, const char *fn) {
  cnn_tensor *r = x->dtype != CNN_FLOAT32 && is_float_number(L, idx) ? cnn_tensor_to_dtype(x, CNN_FLOAT32)
                                                                     : cnn_tensor_retain(x);
  if (!r) lcnn_fail(L, fn);
  return r;
}

/** t:pow(p) -> Tensor
 * t ^ p, elementwise; p is a number or a tensor (also the operator `t ^ p`, and `2 ^ t`).
 * A number exponent is exact for integer powers of negative values. An int64 tensor with an
 * integer exponent (or base) stays int64, as PyTorch's integer power; a float one gives float32.
 * A uint8 tensor's integer exponent (or base) must lie in -255..255, as PyTorch checks it. */
static int m_pow(lua_State *L) {
  lcnn_max_args(L, 2, "pow");
  cnn_tensor *x = lcnn_test(L, 1);
  if (x && lua_type(L, 2) == LUA_TNUMBER) {
    if (x->dtype != CNN_FLOAT32 && lua_isinteger(L, 2) && lua_tointeger(L, 2) < 0)
      return lcnn_error(L, "pow", "integers to negative integer powers are not allowed");
    cnn_tensor *xp = promote_for(L, x, 2, "pow");
    cnn_tensor *r = cnn_op_unary(CNN_POW_SCALAR, xp, lua_tonumber(L, 2), 0);
    cnn_tensor_release(xp);
    lcnn_push(L, r, "pow");
    return 1;
  }
  cnn_tensor *y = lcnn_test(L, 2);
  if (y && lua_type(L, 1) == LUA_TNUMBER) {
    double base = lua_tonumber(L, 1);
    if (base <= 0) { /* a tensor operand, checked here as the runtime checks the scalar below: (-300) ^ u8 */
      lcnn_check_u8_value(L, 1, "pow", y->dtype);
      return binary(L, CNN_POW, "pow");
    }
    cnn_tensor *yp = promote_for(L, y, 1, "pow");
    cnn_tensor *r = cnn_op_unary(CNN_RPOW_SCALAR, yp, base, 0);
    cnn_tensor_release(yp);
    lcnn_push(L, r, "pow");
    return 1;
  }
  return binary(L, CNN_POW, "pow");
}

static int unary(lua_State *L, cnn_unop op, const char *fn, double p0, double p1) {
  lcnn_max_args(L, 1, fn);
  cnn_tensor *x = lcnn_check(L, 1, fn);
  lcnn_push(L, cnn_op_unary(op, x, p0, p1), fn);
  return 1;
}

/** t:neg() -> Tensor
 * -t, elementwise (also the operator `-t`). */
static int m_neg(lua_State *L) { return unary(L, CNN_NEG, "neg", 0, 0); }
/** t:exp() -> Tensor
 * e ^ t, elementwise. */
static int m_exp(lua_State *L) { return unary(L, CNN_EXP, "exp", 0, 0); }
/** t:log() -> Tensor
 * The natural logarithm, elementwise. */
static int m_log(lua_State *L) { return unary(L, CNN_LOG, "log", 0, 0); }
/** t:sqrt() -> Tensor
 * The square root, elementwise. */
static int m_sqrt(lua_State *L) { return unary(L, CNN_SQRT, "sqrt", 0, 0); }
/** t:abs() -> Tensor
 * The absolute value, elementwise. */
static int m_abs(lua_State *L) { return unary(L, CNN_ABS, "abs", 0, 0); }
/** t:relu() -> Tensor
 * max(t, 0), elementwise. */
static int m_relu(lua_State *L) { return unary(L, CNN_RELU, "relu", 0, 0); }
/** t:sigmoid() -> Tensor
 * 1 / (1 + e^-t), elementwise. */
static int m_sigmoid(lua_State *L) { return unary(L, CNN_SIGMOID, "sigmoid", 0, 0); }
/** t:tanh() -> Tensor
 * The hyperbolic tangent, elementwise. */
static int m_tanh(lua_State *L) { return unary(L, CNN_TANH, "tanh", 0, 0); }
/** t:sign() -> Tensor
 * -1, 0 or 1 by the sign of each element. */
static int m_sign(lua_State *L) { return unary(L, CNN_SIGN, "sign", 0, 0); }
/** t:floor() -> Tensor
 * The largest integer not above each element (as a float; integer tensors are unchanged). */
static int m_floor(lua_State *L) { return unary(L, CNN_FLOOR, "floor", 0, 0); }
/** t:ceil() -> Tensor
 * The smallest integer not below each element (as a float; integer tensors are unchanged). */
static int m_ceil(lua_State *L) { return unary(L, CNN_CEIL, "ceil", 0, 0); }
/** t:round() -> Tensor
 * Each element rounded to the nearest integer, halves to the even one (2.5 -> 2), as PyTorch. */
static int m_round(lua_State *L) { return unary(L, CNN_ROUND, "round", 0, 0); }
/** t:trunc() -> Tensor
 * Each element rounded toward zero (as a float; integer tensors are unchanged). */
static int m_trunc(lua_State *L) { return unary(L, CNN_TRUNC, "trunc", 0, 0); }

/* A NaN bound is a number (the kernel gives NaN everywhere), not a missing or wrong-typed one. */
static void clamp_bounds(lua_State *L, const char *fn, double *lo, double *hi) {
  for (int i = 2; i <= 3; i++)
    if (!lua_isnoneornil(L, i) && lua_type(L, i) != LUA_TNUMBER)
      lcnn_error(L, fn, "bounds must be numbers or nil, got %s", luaL_typename(L, i));
  *lo = lua_isnoneornil(L, 2) ? -INFINITY : lua_tonumber(L, 2);
  *hi = lua_isnoneornil(L, 3) ? INFINITY : lua_tonumber(L, 3);
  if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3)) lcnn_error(L, fn, "at least one of lo and hi must be given");
  lcnn_check_float_value(L, 2, fn, CNN_FLOAT32);
  lcnn_check_float_value(L, 3, fn, CNN_FLOAT32);
}

/* An int64 t between integer bounds: max(t, lo), then min(.., hi), each against an exact int64
 * scalar (the general clamp takes its bounds as doubles: 2^53 + 1 came back 2^53, and
 * math.maxinteger, beyond int64 as a double, made it float32). In place into t, or a new tensor. */
static cnn_tensor *clamp_int64(lua_State *L, cnn_tensor *t, bool inplace, const char *fn) {
  cnn_tensor *r = inplace ? t : cnn_tensor_retain(t);
  for (int i = 2; i <= 3 && r; i++) {
    if (lua_isnoneornil(L, i)) continue;
    cnn_tensor *s = cnn_tensor_full_i64(CNN_INT64, 0, NULL, lua_tointeger(L, i));
    const cnn_binop op = i == 2 ? CNN_MAXIMUM : CNN_MINIMUM;
    if (inplace) {
      if (!s || cnn_op_binary_(op, t, s)) r = NULL;
    } else {
      cnn_tensor *n = s ? cnn_op_binary(op, r, s) : NULL;
      cnn_tensor_release(r);
      r = n;
    }
    cnn_tensor_release(s);
  }
  if (!r) lcnn_fail(L, fn);
  return r;
}

static bool int_bounds(lua_State *L) {
  return (lua_isnoneornil(L, 2) || lua_isinteger(L, 2)) && (lua_isnoneornil(L, 3) || lua_isinteger(L, 3));
}

/** t:clamp(lo, hi) -> Tensor
 * Each element limited to [lo, hi]; either bound may be nil (but not both).
 * A NaN bound gives NaN everywhere and a zero gradient, as PyTorch's clamp with both bounds,
 * clamp_min and clamp_max (its clamp with one NaN bound alone returns t unchanged; not copied).
 * An int64 tensor stays int64 with integer bounds; a float bound (2.5, or 2.0) makes it float32. */
static int m_clamp(lua_State *L) {
  lcnn_max_args(L, 3, "clamp");
  double lo, hi;
  cnn_tensor *x = lcnn_check(L, 1, "clamp");
  clamp_bounds(L, "clamp", &lo, &hi);
  if (x->dtype == CNN_INT64 && int_bounds(L)) {
    lcnn_push(L, clamp_int64(L, x, false, "clamp"), "clamp");
    return 1;
  }
  cnn_tensor *xp = promote_for(L, x, is_float_number(L, 2) ? 2 : 3, "clamp");
  cnn_tensor *r = cnn_op_unary(CNN_CLAMP, xp, lo, hi);
  cnn_tensor_release(xp);
  lcnn_push(L, r, "clamp");
  return 1;
}

/* ---- in place: return self ---- */

static int inplace_binary(lua_State *L, cnn_binop op, const char *fn) {
  lcnn_anchor_number(L, 2, fn, lcnn_check(L, 1, fn)->dtype);
  cnn_tensor *o = lcnn_operand(L, 2, fn, CNN_FLOAT32), *t = lcnn_check(L, 1, fn);
  if (cnn_op_binary_(op, t, o)) return lcnn_fail(L, fn);
  lua_settop(L, 1);
  return 1;
}

/* t:add_(other, alpha) and t:sub_ (alpha negated): alpha a number or {alpha=}, as add takes it.
 * Floats without history go through one axpy pass; an integer alpha with an int64 t (exact: a
 * double rounded 2^53 + 1), or a write autograd records, is other * alpha, then add_. */
static int inplace_alpha(lua_State *L, bool negate, const char *fn) {
  static const char *const known[] = {"alpha", NULL};
  lcnn_max_args(L, 3, fn);
  if (lua_istable(L, 3)) {
    lcnn_options(L, 3, fn, known);
    if (lcnn_opt_field(L, 3, "alpha") == LUA_TNIL) lua_pop(L, 1), lua_pushinteger(L, 1);
    lua_replace(L, 3);
  }
  if (lua_type(L, 3) != LUA_TNUMBER) return lcnn_error(L, fn, "alpha must be a number, got %s", luaL_typename(L, 3));
  lcnn_check_float_value(L, 3, fn, lcnn_check(L, 1, fn)->dtype);
  lcnn_anchor_number(L, 2, fn, lcnn_check(L, 1, fn)->dtype);
  cnn_tensor *o = lcnn_operand(L, 2, fn, CNN_FLOAT32), *t = lcnn_check(L, 1, fn);
  { /* alpha as given, checked in the dtype the sum is computed in (u8 += i64 * 300: int64) */
    const cnn_tensor *both[2] = {t, o};
    check_alpha(L, 3, fn, cnn_dtype_result(2, both));
  }
  if (negate) { /* -alpha: exact for floats and for integers (the most negative wraps, as int64 does) */
    lua_pushinteger(L, 0);
    lua_insert(L, 3);
    lua_arith(L, LUA_OPSUB);
  }
  if ((t->dtype == CNN_INT64 && lua_isinteger(L, 3)) || cnn_op_rebases(t, o)) {
    scale_arg2(L, 3);
    lua_settop(L, 2);
    return inplace_binary(L, CNN_ADD, fn);
  }
  int rc = cnn_op_check_inplace(t);
  if (!rc) rc = cnn_ew_axpy_(t, lua_tonumber(L, 3), o);
  if (!rc) t->storage->version++;
  if (rc) return lcnn_fail(L, fn);
  lua_settop(L, 1);
  return 1;
}

/** t:add_(other, alpha=1) -> t
 * In place: t = t + alpha * other (other broadcast to t's shape; alpha a number or {alpha=}).
 * On a leaf that requires grad it is refused while grad mode is on (wrap updates in cnn.no_grad).
 * add_, sub_, mul_, div_, clamp_, relu_, copy_, scatter_, scatter_add_ and masked_fill_ on a
 * tensor with history (or with an operand that requires grad) are recorded as their out-of-place
 * op, whose result t becomes (new memory: see docs/PYTORCH.md), refused when a view shares t's
 * memory; fill_, uniform_, normal_, t[i] = v and t[mask] = v are recorded as writes of constants
 * (no gradient reaches the old values they replace). */
static int m_add_(lua_State *L) {
  if (lua_gettop(L) >= 3) return inplace_alpha(L, false, "add_");
  return inplace_binary(L, CNN_ADD, "add_");
}
/** t:sub_(other, alpha=1) -> t
 * In place: t = t - alpha * other (alpha a number or {alpha=}). */
static int m_sub_(lua_State *L) {
  if (lua_gettop(L) >= 3) return inplace_alpha(L, true, "sub_");
  return inplace_binary(L, CNN_SUB, "sub_");
}
/** t:mul_(other) -> t
 * In place: t = t * other. */
static int m_mul_(lua_State *L) {
  lcnn_max_args(L, 2, "mul_");
  return inplace_binary(L, CNN_MUL, "mul_");
}
/** t:div_(other, {rounding_mode=nil}) -> t
 * In place: t = t / other, or rounded as t:div's rounding_mode says ("floor", "trunc"). */
static int m_div_(lua_State *L) {
  static const char *const known[] = {"rounding_mode", NULL};
  lcnn_max_args(L, 3, "div_");
  lcnn_options(L, 3, "div_", known);
  const char *mode = lcnn_opt_string(L, 3, "div_", "rounding_mode", NULL);
  if (mode && strcmp(mode, "floor") != 0 && strcmp(mode, "trunc") != 0)
    return lcnn_error(L, "div_", "rounding_mode must be \"floor\" or \"trunc\", got \"%s\"", mode);
  if (mode && strcmp(mode, "floor") == 0) {
    lua_settop(L, 2);
    return inplace_binary(L, CNN_FLOOR_DIVIDE, "div_");
  }
  if (mode) { /* trunc: the quotient out of place (exact for integers), copied in */
    cnn_tensor *t = lcnn_check(L, 1, "div_");
    div_trunc(L, "div_"); /* the quotient on top */
    if (cnn_op_copy_(t, lcnn_check(L, lua_gettop(L), "div_"))) return lcnn_fail(L, "div_");
    lua_settop(L, 1);
    return 1;
  }
  lua_settop(L, 2);
  return inplace_binary(L, CNN_DIV, "div_");
}

/** t:clamp_(lo, hi) -> t
 * In place: each element limited to [lo, hi] (either bound may be nil). */
static int m_clamp_(lua_State *L) {
  lcnn_max_args(L, 3, "clamp_");
  double lo, hi;
  cnn_tensor *t = lcnn_check(L, 1, "clamp_");
  clamp_bounds(L, "clamp_", &lo, &hi);
  if (t->dtype != CNN_FLOAT32 && (is_float_number(L, 2) || is_float_number(L, 3)))
    return lcnn_error(L, "clamp_", "a float bound gives float32 values, which cannot be written into %s %s tensor",
                      t->dtype == CNN_INT64 ? "an" : "a", cnn_dtype_name(t->dtype));
  if (t->dtype == CNN_INT64) {
    if (cnn_op_check_inplace(t)) return lcnn_fail(L, "clamp_");
    clamp_int64(L, t, true, "clamp_");
    lua_settop(L, 1);
    return 1;
  }
  if (cnn_op_unary_(CNN_CLAMP, t, lo, hi)) return lcnn_fail(L, "clamp_");
  lua_settop(L, 1);
  return 1;
}

/** t:relu_() -> t
 * In place: max(t, 0), elementwise.
 * Refused, as every in-place op but fill_, on an expanded tensor (its elements overlap) and on a
 * leaf that requires grad while grad mode is on; on a tensor with history it is recorded as add_
 * says. */
static int m_relu_(lua_State *L) {
  lcnn_max_args(L, 1, "relu_");
  cnn_tensor *t = lcnn_check(L, 1, "relu_");
  if (cnn_op_unary_(CNN_RELU, t, 0, 0)) return lcnn_fail(L, "relu_");
  lua_settop(L, 1);
  return 1;
}

/** t:fill_(v) -> t
 * In place: every element set to v, converted to t's dtype.
 * v is a number, a boolean or a 0-d tensor (differentiable in it: its gradient is the sum of t's,
 * as PyTorch's).
 * A number that a uint8 tensor cannot hold (past -255..255) is an error, as in PyTorch. An
 * expanded tensor is filled too (its memory, once), as PyTorch's fill_ allows, the one in-place op
 * that does; not one with autograd history. */
static int m_fill_(lua_State *L) {
  lcnn_max_args(L, 2, "fill_");
  const cnn_tensor *v = lcnn_test(L, 2);
  if (v && v->ndim != 0) return lcnn_error(L, "fill_", "the value must be a 0-d tensor, got a %d-d tensor", v->ndim);
  if (v && !(cnn_ag_is_enabled() && cnn_ag_requires(v))) { /* its number, checked as one (300 into uint8) */
    int64_t at[CNN_MAX_DIMS] = {0};
    lcnn_push_element(L, v, at);
    lua_replace(L, 2);
    v = NULL;
  }
  if (v) { /* a 0-d tensor that requires grad: masked_fill_ under an all-true mask, which records it */
    lcnn_push(L, cnn_tensor_scalar(CNN_BOOL, 1), "fill_"); /* anchored: a raise below leaks nothing */
    if (cnn_op_masked_fill_(lcnn_check(L, 1, "fill_"), lcnn_check(L, 3, "fill_"), lcnn_check(L, 2, "fill_")))
      return lcnn_fail(L, "fill_");
    lua_settop(L, 1);
    return 1;
  }
  if (lua_type(L, 2) != LUA_TBOOLEAN && lua_type(L, 2) != LUA_TNUMBER)
    return lcnn_error(L, "fill_", "expected a number, a boolean or a 0-d tensor for the value, got %s",
                      lcnn_typename(L, 2));
  lcnn_check_float_value(L, 2, "fill_", lcnn_check(L, 1, "fill_")->dtype);
  cnn_tensor *t = lcnn_check(L, 1, "fill_");
  int rc = lua_type(L, 2) == LUA_TBOOLEAN                   ? cnn_op_fill_(t, lua_toboolean(L, 2))
           : t->dtype != CNN_FLOAT32 && lua_isinteger(L, 2) ? cnn_op_fill_i64_(t, lua_tointeger(L, 2))
                                                            : cnn_op_fill_(t, luaL_checknumber(L, 2));
  if (rc) return lcnn_fail(L, "fill_");
  lua_settop(L, 1);
  return 1;
}

/** t:zero_() -> t
 * In place: every element set to 0 (an expanded tensor too, as fill_). */
static int m_zero_(lua_State *L) {
  lcnn_max_args(L, 1, "zero_");
  cnn_tensor *t = lcnn_check(L, 1, "zero_");
  if (cnn_op_fill_(t, 0)) return lcnn_fail(L, "zero_");
  lua_settop(L, 1);
  return 1;
}

/** t:copy_(src) -> t
 * In place: the values of tensor src, broadcast to t's shape and converted to t's dtype. */
static int m_copy_(lua_State *L) {
  lcnn_max_args(L, 2, "copy_");
  cnn_tensor *t = lcnn_check(L, 1, "copy_");
  cnn_tensor *s = lcnn_check(L, 2, "copy_");
  if (cnn_op_copy_(t, s)) return lcnn_fail(L, "copy_");
  lua_settop(L, 1);
  return 1;
}

/** t:uniform_(a=0, b=1) -> t
 * In place: uniform random values in [a, b) from cnn's generator. */
static int m_uniform_(lua_State *L) {
  lcnn_max_args(L, 3, "uniform_");
  cnn_tensor *t = lcnn_check(L, 1, "uniform_");
  double a = luaL_optnumber(L, 2, 0), b = luaL_optnumber(L, 3, 1);
  if (!(a <= b)) return lcnn_error(L, "uniform_", "expects a <= b, got a=%g, b=%g", cnn_error_num(a), cnn_error_num(b));
  if (cnn_op_uniform_(t, a, b)) return lcnn_fail(L, "uniform_");
  lua_settop(L, 1);
  return 1;
}

/** t:normal_(mean=0, std=1) -> t
 * In place: normal random values from cnn's generator. */
static int m_normal_(lua_State *L) {
  lcnn_max_args(L, 3, "normal_");
  cnn_tensor *t = lcnn_check(L, 1, "normal_");
  double m = luaL_optnumber(L, 2, 0), s = luaL_optnumber(L, 3, 1);
  if (!(s >= 0)) return lcnn_error(L, "normal_", "std must be non-negative, got %g", cnn_error_num(s));
  if (cnn_op_normal_(t, m, s)) return lcnn_fail(L, "normal_");
  lua_settop(L, 1);
  return 1;
}

/* ---- reductions: t:sum(), t:sum(d), t:sum(d, keepdim) ---- */

static int reduce_dim(lua_State *L, int idx, const char *fn, const cnn_tensor *t) {
  return lua_isnoneornil(L, idx) ? CNN_ALL_DIMS : lcnn_dim(L, idx, fn, t->ndim, 0);
}

/* keepdim at idx: nil or a boolean. Anything else was a mistake read as true: t:std(1, {...})
 * (options belong after keepdim) kept the dimension and dropped the options unread. */
static bool keepdim_arg(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return false;
  if (!lua_isboolean(L, idx))
    lcnn_error(L, fn, "keepdim (argument %d) must be a boolean, got %s", idx, luaL_typename(L, idx));
  return lua_toboolean(L, idx);
}

/** t:sum(dim, keepdim=false) -> Tensor
 * The sum over dimension dim, or over all elements (a 0-d tensor) when dim is nil.
 * keepdim=true keeps dim with size 1. int64 sums stay int64. */
static int m_sum(lua_State *L) {
  lcnn_max_args(L, 3, "sum");
  cnn_tensor *t = lcnn_check(L, 1, "sum");
  int d = reduce_dim(L, 2, "sum", t);
  lcnn_push(L, cnn_op_sum(t, d, keepdim_arg(L, 3, "sum")), "sum");
  return 1;
}

/** t:mean(dim, keepdim=false) -> Tensor
 * The mean over dimension dim, or over all elements when dim is nil (float32 tensors). */
static int m_mean(lua_State *L) {
  lcnn_max_args(L, 3, "mean");
  cnn_tensor *t = lcnn_check(L, 1, "mean");
  int d = reduce_dim(L, 2, "mean", t);
  lcnn_push(L, cnn_op_mean(t, d, keepdim_arg(L, 3, "mean")), "mean");
  return 1;
}

/* t:var(d, keepdim, {unbiased=true}) */
static int var_like(lua_State *L, const char *fn, bool sd) {
  static const char *const known[] = {"unbiased", NULL};
  int opts = lua_istable(L, 2) ? 2 : lua_istable(L, 3) ? 3 : 4; /* t:std(1, {unbiased=false}) too */
  lcnn_options(L, opts, fn, known);
  bool unbiased = lcnn_opt_boolean(L, opts, fn, "unbiased", true); /* options first: a lookup may run Lua code */
  cnn_tensor *t = lcnn_check(L, 1, fn);
  int d = opts == 2 ? CNN_ALL_DIMS : reduce_dim(L, 2, fn, t);
  bool keep = opts == 4 && keepdim_arg(L, 3, fn);
  if (opts == 3 && !lua_isnone(L, 4)) return lcnn_error(L, fn, "unexpected argument 4 after the options table");
  lcnn_push(L, sd ? cnn_op_std(t, d, unbiased, keep) : cnn_op_var(t, d, unbiased, keep), fn);
  return 1;
}

/** t:var(dim, keepdim=false, {unbiased=true}) -> Tensor
 * The variance over dimension dim, or over all elements when dim is nil (`t:var{unbiased=false}`).
 * The options may follow dim directly (`t:var(1, {unbiased=false})`).
 * unbiased divides by n - 1 (Bessel's correction), as PyTorch does by default. float32 tensors. */
static int m_var(lua_State *L) { return var_like(L, "var", false); }
/** t:std(dim, keepdim=false, {unbiased=true}) -> Tensor
 * The standard deviation over dimension dim, or over all elements when dim is nil. */
static int m_std(lua_State *L) { return var_like(L, "std", true); }

/* values and 1-based indices (over a dim) or the value alone (over all). */
static int extreme(lua_State *L, bool is_max, bool arg) {
  const char *fn = arg ? (is_max ? "argmax" : "argmin") : (is_max ? "max" : "min");
  lcnn_max_args(L, 3, fn);
  cnn_tensor *t = lcnn_check(L, 1, fn);
  int d = reduce_dim(L, 2, fn, t);
  bool keep = keepdim_arg(L, 3, fn);
  /* PyTorch has no bool argmax/argmin kernel; over a dim of size 1, or when the result is empty
   * (another dim is 0), it answers without one */
  if (arg && t->dtype == CNN_BOOL) {
    int64_t n = d != CNN_ALL_DIMS && t->ndim > 0 ? t->size[d < 0 ? d + t->ndim : d] : -1;
    if (!(n == 1 || (n > 1 && cnn_tensor_numel(t) == 0)))
      return lcnn_error(L, fn, "not implemented for bool tensors (as in PyTorch)");
  }
  cnn_tensor *v = NULL, *i = NULL;
  if (arg && d == CNN_ALL_DIMS) { /* index into the flattened tensor, as PyTorch */
    cnn_tensor *flat = cnn_tensor_reshape(t, 1, (int64_t[]){-1});
    if (!flat) return lcnn_fail(L, fn);
    int rc = is_max ? cnn_op_max(flat, 0, false, &v, &i) : cnn_op_min(flat, 0, false, &v, &i);
    cnn_tensor_release(flat);
    if (rc) return lcnn_fail(L, fn);
  } else if (is_max ? cnn_op_max(t, d, keep, &v, arg || d != CNN_ALL_DIMS ? &i : NULL)
                    : cnn_op_min(t, d, keep, &v, arg || d != CNN_ALL_DIMS ? &i : NULL)) {
    return lcnn_fail(L, fn);
  }
  if (i) { /* to Lua's 1-based indices; a copy, since the autograd node saved the 0-based ones */
    cnn_tensor *i1 = cnn_ew_unary(CNN_ADD_SCALAR, i, 1, 0);
    cnn_tensor_release(i);
    i = i1;
    if (!i) {
      cnn_tensor_release(v);
      return lcnn_fail(L, fn);
    }
  }
  if (arg && d == CNN_ALL_DIMS && keep && t->ndim > 0) { /* over all dims with keepdim: t's rank of 1s (PyTorch) */
    int64_t ones[CNN_MAX_DIMS];
    for (int k = 0; k < t->ndim; k++) ones[k] = 1;
    cnn_tensor *shaped = cnn_tensor_reshape(i, t->ndim, ones);
    cnn_tensor_release(i);
    if (!(i = shaped)) {
      cnn_tensor_release(v);
      return lcnn_fail(L, fn);
    }
  }
  if (arg) {
    cnn_tensor_release(v);
    lcnn_push(L, i, fn);
    return 1;
  }
  lcnn_push(L, v, fn);
  if (!i) return 1;
  lcnn_push(L, i, fn);
  return 2;
}

/** t:max(dim, keepdim=false) -> values, indices
 * t:max() -> Tensor
 * t:max(other) -> Tensor
 * The maximum over dimension dim and its 1-based int64 indices; over all elements, the value alone.
 * With a tensor argument, the elementwise maximum (as t:maximum). */
static int m_max(lua_State *L) {
  if (lcnn_test(L, 2)) return binary(L, CNN_MAXIMUM, "max");
  return extreme(L, true, false);
}
/** t:min(dim, keepdim=false) -> values, indices
 * t:min() -> Tensor
 * t:min(other) -> Tensor
 * The minimum over dimension dim and its 1-based int64 indices; over all elements, the value alone.
 * With a tensor argument, the elementwise minimum (as t:minimum). */
static int m_min(lua_State *L) {
  if (lcnn_test(L, 2)) return binary(L, CNN_MINIMUM, "min");
  return extreme(L, false, false);
}
/** t:argmax(dim, keepdim=false) -> Tensor
 * The 1-based int64 index of the maximum over dim; with no dim, of the flattened tensor. */
static int m_argmax(lua_State *L) { return extreme(L, true, true); }
/** t:argmin(dim, keepdim=false) -> Tensor
 * The 1-based int64 index of the minimum over dim; with no dim, of the flattened tensor. */
static int m_argmin(lua_State *L) { return extreme(L, false, true); }

/* ---- bool results: logical ops, tests, any / all ---- */

/** t:logical_and(other) -> Tensor
 * A bool tensor, true where both t and other are nonzero (broadcasting; any dtypes). */
static int m_logical_and(lua_State *L) { return binary(L, CNN_LOGICAL_AND, "logical_and"); }
/** t:logical_or(other) -> Tensor
 * A bool tensor, true where t or other is nonzero (broadcasting; any dtypes). */
static int m_logical_or(lua_State *L) { return binary(L, CNN_LOGICAL_OR, "logical_or"); }
/** t:logical_xor(other) -> Tensor
 * A bool tensor, true where exactly one of t and other is nonzero (broadcasting; any dtypes). */
static int m_logical_xor(lua_State *L) { return binary(L, CNN_LOGICAL_XOR, "logical_xor"); }
/** t:bitwise_and(other) -> Tensor
 * t & other, bit by bit, for bool, uint8 and int64 tensors (also the operator `t & other`).
 * On bool tensors it is the logical and. */
static int m_bitwise_and(lua_State *L) { return binary(L, CNN_BIT_AND, "bitwise_and"); }
/** t:bitwise_or(other) -> Tensor
 * t | other, bit by bit, for bool, uint8 and int64 tensors (also the operator `t | other`). */
static int m_bitwise_or(lua_State *L) { return binary(L, CNN_BIT_OR, "bitwise_or"); }
/** t:bitwise_xor(other) -> Tensor
 * t ~ other (Lua's exclusive or), bit by bit, for bool, uint8 and int64 tensors (also `t ~ other`). */
static int m_bitwise_xor(lua_State *L) { return binary(L, CNN_BIT_XOR, "bitwise_xor"); }

static int predicate(lua_State *L, cnn_predicate p, const char *fn) {
  lcnn_max_args(L, 1, fn);
  cnn_tensor *t = lcnn_check(L, 1, fn);
  lcnn_push(L, cnn_ew_predicate(p, t), fn);
  return 1;
}

/** t:logical_not() -> Tensor
 * A bool tensor, true where t is zero (any dtype): inverts a mask. */
static int m_logical_not(lua_State *L) { return predicate(L, CNN_LOGICAL_NOT, "logical_not"); }
/** t:isnan() -> Tensor
 * A bool tensor, true where t is NaN (never for integer dtypes). */
static int m_isnan(lua_State *L) { return predicate(L, CNN_ISNAN, "isnan"); }
/** t:isinf() -> Tensor
 * A bool tensor, true where t is +inf or -inf. */
static int m_isinf(lua_State *L) { return predicate(L, CNN_ISINF, "isinf"); }
/** t:isposinf() -> Tensor
 * A bool tensor, true where t is +inf. */
static int m_isposinf(lua_State *L) { return predicate(L, CNN_ISPOSINF, "isposinf"); }
/** t:isneginf() -> Tensor
 * A bool tensor, true where t is -inf. */
static int m_isneginf(lua_State *L) { return predicate(L, CNN_ISNEGINF, "isneginf"); }
/** t:isfinite() -> Tensor
 * A bool tensor, true where t is neither NaN nor infinite (always for integer dtypes). */
static int m_isfinite(lua_State *L) { return predicate(L, CNN_ISFINITE, "isfinite"); }

/* nan_to_num's replacements for NaN, +inf and -inf: numbers at 2, 3, 4 or one table {nan=, posinf=,
 * neginf=}; nil takes PyTorch's defaults (0, float32's largest finite value, its lowest). A value
 * past float32's range is its infinity, as PyTorch's float conversion makes it (set here: a C
 * conversion of an out-of-range double is undefined). */
static void nan_to_num_values(lua_State *L, const char *fn, double v[3]) {
  static const char *const keys[] = {"nan", "posinf", "neginf", NULL};
  const double def[3] = {0, FLT_MAX, -FLT_MAX};
  const bool table = lua_istable(L, 2);
  lcnn_max_args(L, table ? 2 : 4, fn);
  if (table) lcnn_options(L, 2, fn, keys);
  for (int i = 0; i < 3; i++) {
    v[i] = table ? lcnn_opt_number(L, 2, fn, keys[i], def[i]) : lcnn_arg_number(L, 2 + i, fn, keys[i], def[i]);
    if (isfinite(v[i]) && fabs(v[i]) > FLT_MAX) v[i] = v[i] > 0 ? INFINITY : -INFINITY;
  }
}

/* x with NaN, +inf and -inf replaced by v[0..2], as three wheres: the gradient reaches x where it is
 * finite, zero elsewhere (PyTorch's). Integer and bool tensors hold neither: a copy. */
static cnn_tensor *nan_to_num(const cnn_tensor *x, const double v[3]) {
  if (x->dtype != CNN_FLOAT32) return cnn_op_clone(x);
  static const cnn_predicate which[3] = {CNN_ISNAN, CNN_ISPOSINF, CNN_ISNEGINF};
  cnn_tensor *r = cnn_tensor_retain((cnn_tensor *)x);
  for (int i = 0; i < 3 && r; i++) {
    cnn_tensor *m = cnn_ew_predicate(which[i], x), *s = m ? cnn_tensor_scalar(CNN_FLOAT32, v[i]) : NULL;
    cnn_tensor *n = s ? cnn_op_where(m, s, r) : NULL;
    cnn_tensor_release(m);
    cnn_tensor_release(s);
    cnn_tensor_release(r);
    r = n;
  }
  return r;
}

/** t:nan_to_num(nan=0, posinf=nil, neginf=nil) -> Tensor
 * t with NaN replaced by nan, +inf by posinf and -inf by neginf.
 * posinf and neginf default to float32's largest finite value and its lowest, as PyTorch's; the
 * three may also come as one table {nan=, posinf=, neginf=}. The gradient passes where t is finite
 * and is zero where a value was replaced. Integer and bool tensors come back as a copy. */
static int m_nan_to_num(lua_State *L) {
  double v[3];
  cnn_tensor *t = lcnn_check(L, 1, "nan_to_num");
  nan_to_num_values(L, "nan_to_num", v);
  lcnn_push(L, nan_to_num(t, v), "nan_to_num");
  return 1;
}
/** t:nan_to_num_(nan=0, posinf=nil, neginf=nil) -> t
 * In place: as t:nan_to_num, written into t. */
static int m_nan_to_num_(lua_State *L) {
  double v[3];
  cnn_tensor *t = lcnn_check(L, 1, "nan_to_num_");
  nan_to_num_values(L, "nan_to_num_", v);
  if (t->dtype != CNN_FLOAT32) {
    lua_settop(L, 1);
    return 1;
  }
  if (cnn_op_check_inplace(t)) return lcnn_fail(L, "nan_to_num_");
  lcnn_push(L, nan_to_num(t, v), "nan_to_num_"); /* anchored: released by the collector on an error */
  if (cnn_op_copy_(t, lcnn_check(L, -1, "nan_to_num_"))) return lcnn_fail(L, "nan_to_num_");
  lua_settop(L, 1);
  return 1;
}

/** t:bitwise_not() -> Tensor
 * ~t, bit by bit, for bool (logical not), uint8 and int64 tensors (also the operator `~t`). */
static int m_bitwise_not(lua_State *L) { return unary(L, CNN_BIT_NOT, "bitwise_not", 0, 0); }

/* t:any(dim, keepdim) / t:all(dim, keepdim): whether some / every element over dim (or all) is
 * nonzero, as the count of nonzero (or zero) elements compared with 0. bool, except uint8 in
 * gives uint8 out (PyTorch's legacy rule). */
static int any_all(lua_State *L, bool all, const char *fn) {
  cnn_tensor *t = lcnn_check(L, 1, fn);
  int d = lua_isnoneornil(L, 2) ? CNN_ALL_DIMS : lcnn_dim(L, 2, fn, t->ndim, 0);
  bool keep = keepdim_arg(L, 3, fn);
  cnn_tensor *b = all ? cnn_ew_predicate(CNN_LOGICAL_NOT, t) : cnn_tensor_to_dtype(t, CNN_BOOL);
  cnn_tensor *n = b ? cnn_red_reduce(CNN_RED_SUM, b, d, keep) : NULL;
  cnn_tensor *zero = n ? cnn_tensor_scalar(CNN_INT64, 0) : NULL;
  cnn_tensor *r = zero ? cnn_ew_binary(all ? CNN_EQ : CNN_NE, n, zero) : NULL;
  cnn_tensor_release(b);
  cnn_tensor_release(n);
  cnn_tensor_release(zero);
  if (r && t->dtype == CNN_UINT8) {
    cnn_tensor *u = cnn_tensor_to_dtype(r, CNN_UINT8);
    cnn_tensor_release(r);
    r = u;
  }
  lcnn_push(L, r, fn);
  return 1;
}

/** t:any(dim, keepdim=false) -> Tensor
 * Whether any element over dimension dim (or over all elements) is nonzero, as a bool tensor.
 * A uint8 t gives uint8, as in PyTorch. */
static int m_any(lua_State *L) { return any_all(L, false, "any"); }
/** t:all(dim, keepdim=false) -> Tensor
 * Whether every element over dimension dim (or over all elements) is nonzero, as a bool tensor.
 * True for an empty tensor; a uint8 t gives uint8, as in PyTorch. */
static int m_all(lua_State *L) { return any_all(L, true, "all"); }

/** t:nonzero() -> Tensor
 * The 1-based positions of t's nonzero elements, one row each, as an (n, t:dim()) int64 tensor.
 * Rows are in row-major order (PyTorch's nonzero, 1-based like every index in cnn). */
static int m_nonzero(lua_State *L) {
  lcnn_max_args(L, 1, "nonzero");
  cnn_tensor *t = lcnn_check(L, 1, "nonzero");
  cnn_tensor *z = cnn_join_nonzero(t);
  cnn_tensor *r = z ? cnn_ew_unary(CNN_ADD_SCALAR, z, 1, 0) : NULL;
  cnn_tensor_release(z);
  lcnn_push(L, r, "nonzero");
  return 1;
}

/* ---- where and masked_fill ---- */

/* The number or boolean at idx replaced on the stack by its wrapped 0-d tensor (integers int64,
 * promoting as Python scalars), so nothing C holds can leak when a later argument raises; a tensor
 * stays. Borrowed. */
static cnn_tensor *anchored_operand(lua_State *L, int idx, const char *fn) {
  return lcnn_operand(L, idx, fn, CNN_INT64);
}

/** cnn.where(cond, a, b) -> Tensor
 * a where cond is true, else b, elementwise (broadcasting); differentiable in a and b.
 * cond is a bool tensor; a and b are tensors, numbers or booleans, promoted as PyTorch's
 * torch.where (`cnn.where(mask, x, 0)` keeps x's dtype). */
static int f_where(lua_State *L) {
  const char *fn = "where";
  lcnn_max_args(L, 3, fn);
  lua_settop(L, 3);
  lcnn_check_float_value(L, 2, fn, CNN_FLOAT32); /* a float number becomes a float32 value here */
  lcnn_check_float_value(L, 3, fn, CNN_FLOAT32);
  /* an integer beside a uint8 tensor stays uint8 (the scalar rule): past -255..255 it would wrap,
   * which PyTorch's where refuses (as masked_fill and fill_ do here) */
  for (int i = 2; i <= 3; i++) {
    const cnn_tensor *other = lcnn_test(L, 5 - i);
    if (other) lcnn_check_u8_value(L, i, fn, other->dtype);
  }
  anchored_operand(L, 2, fn);
  anchored_operand(L, 3, fn);
  cnn_tensor *cond = lcnn_check(L, 1, fn), *a = lcnn_test(L, 2), *b = lcnn_test(L, 3);
  lcnn_push(L, cnn_op_where(cond, a, b), fn);
  return 1;
}

/* The fill value of masked_fill at 3: a number or boolean (converted to t's dtype and checked as
 * fill_ checks it) anchored on the stack as a 0-d tensor, or a 0-d tensor. Borrowed. */
static cnn_tensor *fill_value(lua_State *L, const char *fn, cnn_dtype dt) {
  int vt = lua_type(L, 3);
  lcnn_check_float_value(L, 3, fn, dt);
  if (vt == LUA_TNUMBER || vt == LUA_TBOOLEAN) {
    lcnn_push(L,
              vt == LUA_TNUMBER && lua_isinteger(L, 3) && dt != CNN_FLOAT32
                  ? cnn_tensor_full_i64(dt, 0, NULL, lua_tointeger(L, 3)) /* exact */
                  : cnn_tensor_scalar(dt, vt == LUA_TBOOLEAN ? lua_toboolean(L, 3) : lua_tonumber(L, 3)),
              fn);
    lua_replace(L, 3);
  }
  cnn_tensor *v = lcnn_test(L, 3);
  if (!v) lcnn_error(L, fn, "expected a number, a boolean or a 0-d tensor for the value, got %s", luaL_typename(L, 3));
  return v;
}

/** t:masked_fill(mask, value) -> Tensor
 * t with value where mask is true (mask a bool tensor; t and mask broadcast together).
 * value is a number, a boolean or a 0-d tensor, converted to t's dtype. Differentiable in t (and in
 * a value tensor). */
static int m_masked_fill(lua_State *L) {
  const char *fn = "masked_fill";
  lcnn_max_args(L, 3, fn);
  lua_settop(L, 3);
  fill_value(L, fn, lcnn_check(L, 1, fn)->dtype);
  cnn_tensor *t = lcnn_check(L, 1, fn), *mask = lcnn_check(L, 2, fn), *v = lcnn_test(L, 3);
  lcnn_push(L, cnn_op_masked_fill(t, mask, v), fn);
  return 1;
}

/** t:masked_fill_(mask, value) -> t
 * In place: value written where mask (a bool tensor broadcasting to t's shape) is true.
 * On a tensor with autograd history (or with a value tensor that requires grad) the write is
 * recorded as masked_fill: no gradient reaches t's old values where mask is true. */
static int m_masked_fill_(lua_State *L) {
  const char *fn = "masked_fill_";
  lcnn_max_args(L, 3, fn);
  lua_settop(L, 3);
  fill_value(L, fn, lcnn_check(L, 1, fn)->dtype);
  cnn_tensor *t = lcnn_check(L, 1, fn), *mask = lcnn_check(L, 2, fn), *v = lcnn_test(L, 3);
  if (cnn_op_masked_fill_(t, mask, v)) return lcnn_fail(L, fn);
  lua_settop(L, 1);
  return 1;
}

/* ---- matrix products ---- */

/** t:matmul(other) -> Tensor
 * cnn.matmul(a, b) -> Tensor
 * The matrix product of 1-d, 2-d and batched 3-d tensors, as torch.matmul.
 * 1-d by 1-d is a dot product (0-d); a 1-d side acts as a row or column vector; (B, n, k) by (B, k, m)
 * or by (k, m) multiplies each batch entry. */
static int m_matmul(lua_State *L) {
  lcnn_max_args(L, 2, "matmul");
  cnn_tensor *a = lcnn_check(L, 1, "matmul"), *b = lcnn_check(L, 2, "matmul");
  lcnn_push(L, cnn_op_matmul(a, b), "matmul");
  return 1;
}

/** t:mm(other) -> Tensor
 * cnn.mm(a, b) -> Tensor
 * The product of two 2-d matrices: (n, k) by (k, m) -> (n, m). */
static int m_mm(lua_State *L) {
  lcnn_max_args(L, 2, "mm");
  cnn_tensor *a = lcnn_check(L, 1, "mm"), *b = lcnn_check(L, 2, "mm");
  lcnn_push(L, cnn_op_mm(a, b), "mm");
  return 1;
}

/* the unary metamethods' second argument is their operand again */
static int m_unm(lua_State *L) {
  lua_settop(L, 1);
  return unary(L, CNN_NEG, "neg", 0, 0);
}
static int m_bnot(lua_State *L) {
  lua_settop(L, 1);
  return unary(L, CNN_BIT_NOT, "bitwise_not", 0, 0);
}

void lcnn_open_math(lua_State *L, int methods) {
  static const luaL_Reg m[] = {{"add", m_add},
                               {"sub", m_sub},
                               {"mul", m_mul},
                               {"div", m_div},
                               {"pow", m_pow},
                               {"neg", m_neg},
                               {"exp", m_exp},
                               {"log", m_log},
                               {"sqrt", m_sqrt},
                               {"abs", m_abs},
                               {"relu", m_relu},
                               {"sigmoid", m_sigmoid},
                               {"tanh", m_tanh},
                               {"sign", m_sign},
                               {"floor_divide", m_floor_divide},
                               {"remainder", m_remainder},
                               {"floor", m_floor},
                               {"ceil", m_ceil},
                               {"round", m_round},
                               {"trunc", m_trunc},
                               {"clamp", m_clamp},
                               {"eq", m_eq},
                               {"ne", m_ne},
                               {"lt", m_lt},
                               {"le", m_le},
                               {"gt", m_gt},
                               {"ge", m_ge},
                               {"maximum", m_maximum},
                               {"minimum", m_minimum},
                               {"add_", m_add_},
                               {"sub_", m_sub_},
                               {"mul_", m_mul_},
                               {"div_", m_div_},
                               {"clamp_", m_clamp_},
                               {"relu_", m_relu_},
                               {"fill_", m_fill_},
                               {"zero_", m_zero_},
                               {"copy_", m_copy_},
                               {"uniform_", m_uniform_},
                               {"normal_", m_normal_},
                               {"sum", m_sum},
                               {"mean", m_mean},
                               {"var", m_var},
                               {"std", m_std},
                               {"max", m_max},
                               {"min", m_min},
                               {"argmax", m_argmax},
                               {"argmin", m_argmin},
                               {"matmul", m_matmul},
                               {"mm", m_mm},
                               {"logical_and", m_logical_and},
                               {"logical_or", m_logical_or},
                               {"logical_xor", m_logical_xor},
                               {"logical_not", m_logical_not},
                               {"bitwise_and", m_bitwise_and},
                               {"bitwise_or", m_bitwise_or},
                               {"bitwise_xor", m_bitwise_xor},
                               {"bitwise_not", m_bitwise_not},
                               {"isnan", m_isnan},
                               {"isinf", m_isinf},
                               {"isposinf", m_isposinf},
                               {"isneginf", m_isneginf},
                               {"isfinite", m_isfinite},
                               {"nan_to_num", m_nan_to_num},
                               {"nan_to_num_", m_nan_to_num_},
                               {"any", m_any},
                               {"all", m_all},
                               {"nonzero", m_nonzero},
                               {"masked_fill", m_masked_fill},
                               {"masked_fill_", m_masked_fill_},
                               {NULL, NULL}};
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, m, 0);
  lua_pop(L, 1);
  luaL_getmetatable(L, LCNN_TENSOR);
  static const luaL_Reg ops[] = {{"__add", m_add},
                                 {"__sub", m_sub},
                                 {"__mul", m_mul},
                                 {"__div", m_div},
                                 {"__idiv", m_floor_divide},
                                 {"__mod", m_remainder},
                                 {"__pow", m_pow},
                                 {"__unm", m_unm},
                                 {"__band", m_bitwise_and},
                                 {"__bor", m_bitwise_or},
                                 {"__bxor", m_bitwise_xor},
                                 {"__bnot", m_bnot},
                                 {NULL, NULL}};
  luaL_setfuncs(L, ops, 0);
  lua_pop(L, 1);
  /* module-level forms: cnn.matmul(a, b) etc. */
  static const luaL_Reg mod[] = {{"matmul", m_matmul},   {"mm", m_mm},       {"maximum", m_maximum},
                                 {"minimum", m_minimum}, {"where", f_where}, {NULL, NULL}};
  luaL_setfuncs(L, mod, 0);
}
