/* Tensor creation for Lua (cnn.tensor, zeros, rand, arange, ...), joining (cat, stack) and the
 * global knobs (seed, threads). Shapes come as varargs or one table, options as a trailing table. */
#include "lcnn.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "autograd/conv.h"
#include "core/checked.h"
#include "cnn/autograd.h"
#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "cnn/ops.h"
#include "cnn/random.h"
#include "cnn/rng.h"
#include "core/parallel.h"

static const char *const create_keys[] = {"dtype", "requires_grad", NULL};

/* The options every constructor takes, read before anything is created: the lookups may run Lua
 * code, which must not happen while C holds the new tensor. */
typedef struct {
  bool has_dtype;
  cnn_dtype dtype;
  bool requires_grad;
} create_opts;

static create_opts read_opts(lua_State *L, int idx, const char *fn, cnn_dtype def) {
  create_opts o = {false, def, false};
  lcnn_options(L, idx, fn, create_keys);
  o.has_dtype = lcnn_opt_dtype_at(L, idx, fn, &o.dtype);
  o.requires_grad = lcnn_opt_boolean(L, idx, fn, "requires_grad", false);
  if (o.requires_grad && o.has_dtype && o.dtype != CNN_FLOAT32)
    lcnn_error(L, fn, "only float32 tensors can require gradients");
  return o;
}

/* Applies requires_grad, then pushes (raising the runtime's error when t is NULL). */
static void finish(lua_State *L, cnn_tensor *t, const create_opts *o, const char *fn) {
  if (t && o->requires_grad) {
    if (t->dtype != CNN_FLOAT32) {
      cnn_tensor_release(t);
      lcnn_error(L, fn, "only float32 tensors can require gradients");
    }
    t->requires_grad = true;
  }
  lcnn_push(L, t, fn);
}

/* ---- cnn.tensor(nested table or number, opts) ---- */

/* Walks the first element chain to find the shape, then checks every sub-table against it. */
static int nested_shape(lua_State *L, int idx, const char *fn, int64_t *size) {
  int n = 0;
  lua_pushvalue(L, idx);
  while (lua_istable(L, -1)) {
    if (n == CNN_MAX_DIMS) lcnn_error(L, fn, "nesting deeper than %d levels", CNN_MAX_DIMS);
    size[n++] = (int64_t)lua_rawlen(L, -1);
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
    if (size[n - 1] == 0) break;
  }
  lua_pop(L, 1);
  return n;
}

/* A key of the table at idx that is no index 1..n (its length), no value may be dropped: 1 with *k
 * an integer outside ({[1] = 1, [3] = 3} has a hole, and its length is 1 or 3 as the table happens
 * to be laid out), 2 with `other` naming any other key ({a = 1} made an empty tensor, {1, 2, x = 3}
 * dropped x), 0 when there is none. */
static int stray_key(lua_State *L, int idx, int64_t n, lua_Integer *k, char *other, size_t cap) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && (lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n)) {
      *k = lua_tointeger(L, -1);
      lua_pop(L, 1);
      return 1;
    }
    if (!lua_isinteger(L, -1)) {
      if (lua_type(L, -1) == LUA_TSTRING) snprintf(other, cap, "'%.40s'", lua_tostring(L, -1));
      else snprintf(other, cap, "of type %s", luaL_typename(L, -1));
      lua_pop(L, 1);
      return 2;
    }
  }
  return 0;
}

static void fill_nested(lua_State *L, int idx, const char *fn, cnn_tensor *t, int d, int64_t *pos) {
  if (d == t->ndim) {
    int isnum;
    bool boolean = lua_type(L, idx) == LUA_TBOOLEAN;
    lua_Number v = boolean ? (lua_Number)lua_toboolean(L, idx) : lua_tonumberx(L, idx, &isnum);
    if (!boolean && (!isnum || lua_type(L, idx) != LUA_TNUMBER)) { /* "1" converts, but is a string */
      cnn_tensor_release(t);
      lcnn_error(L, fn, "expected numbers or booleans in the nested table, got %s", luaL_typename(L, idx));
    }
    switch (t->dtype) {
    case CNN_INT64:
      if (lua_isinteger(L, idx)) cnn_tensor_i64(t)[*pos] = (int64_t)lua_tointeger(L, idx);
      /* an integral float in [-2^63, 2^63): -2^63 too (Lua reads -9223372036854775808 as a float) */
      else if (v == floor(v) && cnn_double_in_int64(v)) cnn_tensor_i64(t)[*pos] = (int64_t)v;
      else {
        cnn_tensor_release(t);
        lcnn_error(L, fn,
                   v == floor(v) ? "value %.17g is outside int64 (dtype int64)"
                                 : "value %.17g is not an integer (dtype int64)",
                   cnn_error_num(v));
      }
      break;
    case CNN_UINT8: /* as PyTorch: integers -255..255 (negative ones wrap), floats 0..255 (truncated) */
      if (!(lua_isinteger(L, idx) ? v > -256 && v < 256 : v >= 0 && v <= 255)) {
        cnn_tensor_release(t);
        lcnn_error(L, fn, "value %g cannot be converted to type uint8 without overflow", cnn_error_num(v));
      }
      cnn_tensor_u8(t)[*pos] = (uint8_t)(int64_t)v;
      break;
    case CNN_BOOL: cnn_tensor_u8(t)[*pos] = (uint8_t)(v != 0); break;
    case CNN_FLOAT32: cnn_tensor_f32(t)[*pos] = (float)v; break;
    }
    (*pos)++;
    return;
  }
  int64_t want = t->size[d];
  if (!lua_istable(L, idx) || (int64_t)lua_rawlen(L, idx) != want) {
    int64_t got = lua_istable(L, idx) ? (int64_t)lua_rawlen(L, idx) : -1;
    cnn_tensor_release(t);
    if (got < 0)
      lcnn_error(L, fn, "ragged nested table: expected a table at depth %d, got %s", d + 1, luaL_typename(L, idx));
    lcnn_error(L, fn, "ragged nested table: expected %lld elements at depth %d, got %lld", (long long)want, d + 1,
               (long long)got);
  }
  lua_Integer hole;
  char other[64];
  int stray = stray_key(L, idx, want, &hole, other, sizeof other);
  if (stray) {
    cnn_tensor_release(t);
    if (stray == 2)
      lcnn_error(L, fn, "nested table with key %s at depth %d: expected a list of numbers or lists", other, d + 1);
    lcnn_error(L, fn, "nested table with a hole: element %lld at depth %d is set but the list runs 1..%lld",
               (long long)hole, d + 1, (long long)want);
  }
  for (int64_t i = 1; i <= t->size[d]; i++) {
    lua_rawgeti(L, idx, i); /* raw: no metamethod may raise while t is held */
    fill_nested(L, lua_gettop(L), fn, t, d + 1, pos);
    lua_pop(L, 1);
  }
}

/* Whether every leaf of the nested table at idx (its shape already checked by nested_shape's walk
 * or about to be by fill_nested) is a boolean: such a table makes a bool tensor, as in PyTorch;
 * numbers among booleans make float32 (booleans as 0 and 1). Raw reads, depth <= CNN_MAX_DIMS. */
static bool all_booleans(lua_State *L, int idx, int depth) {
  if (lua_type(L, idx) == LUA_TBOOLEAN) return true;
  if (!lua_istable(L, idx) || depth > CNN_MAX_DIMS) return false;
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  bool all = n > 0;
  for (lua_Integer i = 1; i <= n && all; i++) {
    lua_rawgeti(L, idx, i);
    all = all_booleans(L, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  return all;
}

/** cnn.tensor(values, {dtype="float32", requires_grad=false}) -> Tensor
 * A new tensor holding the given values.
 * values is a nested table of numbers or booleans (the nesting gives the shape and must be regular:
 * `cnn.tensor{{1, 2}, {3, 4}}` is 2 x 2), a number or a boolean (a 0-d tensor) or a tensor (copied,
 * keeping its dtype unless one is given). dtype is "float32", "int64", "uint8" or "bool". Integers
 * give float32 too (Torch7's habit; torch.tensor would infer int64): `{dtype = "int64"}` makes
 * labels and indices. Booleans alone give a bool tensor (`cnn.tensor{true, false}`). */
static int f_tensor(lua_State *L) {
  const char *fn = "tensor";
  create_opts o = read_opts(L, 2, fn, CNN_FLOAT32);
  cnn_tensor *src = lcnn_test(L, 1);
  if (src) {
    cnn_tensor *c = cnn_tensor_empty(o.has_dtype ? o.dtype : src->dtype, src->ndim, src->size);
    if (c && cnn_tensor_copy_(c, src)) {
      cnn_tensor_release(c);
      c = NULL;
    }
    finish(L, c, &o, fn);
    return 1;
  }
  if (lua_type(L, 1) == LUA_TNUMBER || lua_type(L, 1) == LUA_TBOOLEAN) {
    bool boolean = lua_type(L, 1) == LUA_TBOOLEAN;
    cnn_dtype dt = o.has_dtype ? o.dtype : boolean ? CNN_BOOL : CNN_FLOAT32;
    bool exact = !boolean && dt != CNN_FLOAT32 && lua_isinteger(L, 1);
    finish(L,
           exact ? cnn_tensor_full_i64(dt, 0, NULL, lua_tointeger(L, 1))
                 : cnn_tensor_scalar(dt, boolean ? lua_toboolean(L, 1) : lua_tonumber(L, 1)),
           &o, fn);
    return 1;
  }
  if (!lua_istable(L, 1))
    return lcnn_error(L, fn, "expected a nested table of numbers or a number, got %s", lcnn_typename(L, 1));
  int64_t size[CNN_MAX_DIMS];
  int ndim = nested_shape(L, 1, fn, size);
  cnn_dtype dt = o.has_dtype ? o.dtype : all_booleans(L, 1, 0) ? CNN_BOOL : CNN_FLOAT32;
  cnn_tensor *t = cnn_tensor_empty(dt, ndim, size);
  if (!t) return lcnn_fail(L, fn);
  int64_t pos = 0;
  fill_nested(L, 1, fn, t, 0, &pos); /* also when empty: {{}, {1}} is ragged */
  finish(L, t, &o, fn);
  return 1;
}

/* ---- shape-taking constructors ---- */

typedef enum { C_EMPTY, C_ZEROS, C_ONES, C_RAND, C_RANDN } ctor_kind;

static int construct(lua_State *L, ctor_kind kind, const char *fn) {
  int64_t size[CNN_MAX_DIMS];
  int next;
  int n = lcnn_shape(L, 1, fn, size, &next, 0);
  if (!lua_isnoneornil(L, next + 1)) return lcnn_error(L, fn, "unexpected argument %d", next + 1);
  create_opts o = read_opts(L, next, fn, CNN_FLOAT32);
  if ((kind == C_RAND || kind == C_RANDN) && o.dtype != CNN_FLOAT32)
    return lcnn_error(L, fn, "random floats need dtype float32 (use randint for integers)");
  cnn_tensor *t = kind == C_EMPTY  ? cnn_tensor_empty(o.dtype, n, size)
                  : kind == C_ONES ? cnn_tensor_full(o.dtype, n, size, 1)
                                   : cnn_tensor_zeros(o.dtype, n, size);
  int rc = 0;
  if (t && kind == C_RAND) rc = cnn_random_uniform_(t, 0, 1);
  if (t && kind == C_RANDN) rc = cnn_random_normal_(t, 0, 1);
  if (rc) {
    cnn_tensor_release(t);
    return lcnn_fail(L, fn);
  }
  finish(L, t, &o, fn);
  return 1;
}

/** cnn.empty(size...|{size}, {dtype="float32", requires_grad=false}) -> Tensor
 * A tensor of the given shape whose values are unspecified: fill it before reading. */
static int f_empty(lua_State *L) { return construct(L, C_EMPTY, "empty"); }
/** cnn.zeros(size...|{size}, {dtype="float32", requires_grad=false}) -> Tensor
 * A tensor of the given shape filled with 0.
 * The shape is given as sizes or as one table: `cnn.zeros(2, 3)` is `cnn.zeros{2, 3}`; `cnn.zeros{}`
 * is 0-d. */
static int f_zeros(lua_State *L) { return construct(L, C_ZEROS, "zeros"); }
/** cnn.ones(size...|{size}, {dtype="float32", requires_grad=false}) -> Tensor
 * A tensor of the given shape filled with 1. */
static int f_ones(lua_State *L) { return construct(L, C_ONES, "ones"); }
/** cnn.rand(size...|{size}, {requires_grad=false}) -> Tensor
 * Uniform random float32 values in [0, 1) from cnn's generator (see cnn.manual_seed). */
static int f_rand(lua_State *L) { return construct(L, C_RAND, "rand"); }
/** cnn.randn(size...|{size}, {requires_grad=false}) -> Tensor
 * Standard normal random float32 values (mean 0, std 1) from cnn's generator. */
static int f_randn(lua_State *L) { return construct(L, C_RANDN, "randn"); }

/** cnn.full(size|{size}, value, {dtype=, requires_grad=false}) -> Tensor
 * A tensor of the given shape filled with value.
 * The shape is one size or a table of sizes: `cnn.full({2, 3}, 7.5)`. Without a dtype, an integer
 * value gives int64 and a float value float32, as PyTorch's torch.full: `cnn.full({2}, 1)` is int64,
 * `cnn.full({2}, 1.0)` float32, `cnn.full({2}, true)` bool. An integer fills an int64 tensor
 * exactly; NaN or a value outside int64 into an int64 tensor is an error, as in PyTorch. */
static int f_full(lua_State *L) {
  const char *fn = "full";
  int64_t size[CNN_MAX_DIMS];
  int next;
  if (!lua_istable(L, 1) && lua_type(L, 1) != LUA_TNUMBER)
    return lcnn_error(L, fn, "expected a shape table, got %s", lcnn_typename(L, 1));
  int n = lua_istable(L, 1) ? lcnn_shape(L, 1, fn, size, &next, 0)
                            : (size[0] = (int64_t)luaL_checkinteger(L, 1), next = 2, 1);
  if (n == 1 && !lua_istable(L, 1) && size[0] < 0) return lcnn_error(L, fn, "negative size %lld", (long long)size[0]);
  bool boolean = lua_type(L, next) == LUA_TBOOLEAN;
  if (lua_type(L, next) != LUA_TNUMBER && !boolean)
    return lcnn_error(L, fn, "expected a fill value (number or boolean), got %s", lcnn_typename(L, next));
  create_opts o = read_opts(L, next + 1, fn, boolean ? CNN_BOOL : lua_isinteger(L, next) ? CNN_INT64 : CNN_FLOAT32);
  lcnn_check_float_value(L, next, fn, o.dtype);
  cnn_tensor *t = !boolean && o.dtype != CNN_FLOAT32 && lua_isinteger(L, next)
                      ? cnn_tensor_full_i64(o.dtype, n, size, lua_tointeger(L, next))
                      : cnn_tensor_full(o.dtype, n, size, boolean ? lua_toboolean(L, next) : lua_tonumber(L, next));
  finish(L, t, &o, fn);
  return 1;
}

static int like(lua_State *L, double v, const char *fn) {
  lcnn_check(L, 1, fn);
  create_opts o = read_opts(L, 2, fn, CNN_FLOAT32);
  cnn_tensor *t = lcnn_check(L, 1, fn);
  finish(L, cnn_tensor_full(o.has_dtype ? o.dtype : t->dtype, t->ndim, t->size, v), &o, fn);
  return 1;
}

/** cnn.zeros_like(t, {dtype=, requires_grad=false}) -> Tensor
 * Zeros in t's shape, of t's dtype unless another is given. */
static int f_zeros_like(lua_State *L) { return like(L, 0, "zeros_like"); }
/** cnn.ones_like(t, {dtype=, requires_grad=false}) -> Tensor
 * Ones in t's shape, of t's dtype unless another is given. */
static int f_ones_like(lua_State *L) { return like(L, 1, "ones_like"); }

/** cnn.arange(n, {dtype=}) -> Tensor
 * cnn.arange(a, b, step=1, {dtype=}) -> Tensor
 * The values a, a + step, ... up to b excluded (0 .. n-1 for one argument), as a 1-d tensor.
 * int64 when every argument is an integer (as in PyTorch; exact over the whole int64 range),
 * float32 otherwise. With an integer dtype, float arguments are truncated toward zero first (a
 * step of 0.5 is an error), as PyTorch counts. */
static int f_arange(lua_State *L) {
  const char *fn = "arange";
  int nargs = 0;
  bool all_int = true;
  while (nargs < 3 && lua_type(L, nargs + 1) == LUA_TNUMBER) {
    all_int = all_int && lua_isinteger(L, nargs + 1);
    nargs++;
  }
  if (nargs == 0) return lcnn_error(L, fn, "expected arange(n), arange(a, b) or arange(a, b, step)");
  create_opts o = read_opts(L, nargs + 1, fn, all_int ? CNN_INT64 : CNN_FLOAT32);
  cnn_tensor *t;
  if (all_int && o.dtype == CNN_INT64) {
    lua_Integer v[3];
    for (int i = 0; i < nargs; i++) v[i] = lua_tointeger(L, i + 1);
    t = cnn_tensor_arange_i64(nargs == 1 ? 0 : v[0], nargs == 1 ? v[0] : v[1], nargs == 3 ? v[2] : 1);
  } else {
    double v[3];
    for (int i = 0; i < nargs; i++) v[i] = lua_tonumber(L, i + 1);
    t = cnn_tensor_arange(nargs == 1 ? 0 : v[0], nargs == 1 ? v[0] : v[1], nargs == 3 ? v[2] : 1, o.dtype);
  }
  finish(L, t, &o, fn);
  return 1;
}

/* t (taken) as o's dtype when one was given: eye and linspace make float32 first */
static cnn_tensor *as_asked(cnn_tensor *t, const create_opts *o) {
  if (!t || !o->has_dtype || o->dtype == t->dtype) return t;
  cnn_tensor *r = cnn_tensor_to_dtype(t, o->dtype);
  cnn_tensor_release(t);
  return r;
}

/** cnn.linspace(a, b, n, {dtype="float32", requires_grad=false}) -> Tensor
 * n evenly spaced values from a to b, both included.
 * Computed in float32; with an integer dtype in double from the ends truncated toward zero, each
 * value then truncated (as PyTorch). */
static int f_linspace(lua_State *L) {
  const char *fn = "linspace";
  double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  lcnn_check_float_value(L, 1, fn, CNN_FLOAT32);
  lcnn_check_float_value(L, 2, fn, CNN_FLOAT32);
  create_opts o = read_opts(L, 4, fn, CNN_FLOAT32);
  lcnn_max_args(L, 4, fn);
  /* an integer dtype takes the ends only where they fit it (PyTorch's conversion check): a NaN or
   * out-of-range end would saturate or wrap */
  if (o.dtype == CNN_BOOL) return lcnn_error(L, fn, "dtype bool is not supported (a range of booleans)");
  for (int k = 0; k < 2 && o.dtype != CNN_FLOAT32; k++) {
    const double v = k ? b : a;
    if (!(o.dtype == CNN_UINT8 ? v >= 0.0 && v <= 255.0 : cnn_double_in_int64(v)))
      return lcnn_error(L, fn, "%s %s cannot be converted to %s without overflow", k ? "end" : "start",
                        lcnn_number_str(L, k + 1), cnn_dtype_name(o.dtype));
  }
  /* an integer dtype takes the ends as that dtype first, as PyTorch: linspace(0.5, 9.5, 5) is 0, 2, 4, 6, 9 */
  finish(L, o.dtype == CNN_FLOAT32 ? cnn_tensor_linspace(a, b, n) : cnn_tensor_linspace_int(a, b, n, o.dtype), &o, fn);
  return 1;
}

/** cnn.eye(n, m=n, {dtype="float32", requires_grad=false}) -> Tensor
 * An n x m matrix with ones on the diagonal and zeros elsewhere. */
static int f_eye(lua_State *L) {
  const char *fn = "eye";
  lua_Integer n = luaL_checkinteger(L, 1);
  int opts = 2;
  lua_Integer m = n;
  if (lua_type(L, 2) == LUA_TNUMBER) m = luaL_checkinteger(L, 2), opts = 3;
  if (n < 0 || m < 0)
    return lcnn_error(L, fn, "sizes must be non-negative, got %lld x %lld", (long long)n, (long long)m);
  lcnn_max_args(L, opts, fn);
  create_opts o = read_opts(L, opts, fn, CNN_FLOAT32);
  finish(L, as_asked(cnn_tensor_eye(n, m), &o), &o, fn);
  return 1;
}

/** cnn.randint(lo, hi, size...|{size}, {dtype="int64"}) -> Tensor
 * Random integers in lo..hi, both included (as math.random, unlike PyTorch's exclusive high).
 * dtype may also be "uint8" (bounds within 0..255), "bool" or "float32". */
static int f_randint(lua_State *L) {
  const char *fn = "randint";
  if (!lua_isinteger(L, 1) || !lua_isinteger(L, 2)) return lcnn_error(L, fn, "expected integer bounds lo and hi");
  lua_Integer lo = lua_tointeger(L, 1), hi = lua_tointeger(L, 2);
  if (lo > hi) return lcnn_error(L, fn, "lo (%lld) must not exceed hi (%lld)", (long long)lo, (long long)hi);
  int64_t size[CNN_MAX_DIMS];
  int next;
  int n = lcnn_shape(L, 3, fn, size, &next, 0);
  create_opts o = read_opts(L, next, fn, CNN_INT64);
  if (o.dtype == CNN_UINT8 && (lo < 0 || hi > 255))
    return lcnn_error(L, fn, "bounds %lld..%lld do not fit dtype uint8", (long long)lo, (long long)hi);
  if (o.dtype == CNN_BOOL && (lo < 0 || hi > 1))
    return lcnn_error(L, fn, "bounds %lld..%lld do not fit dtype bool", (long long)lo, (long long)hi);
  cnn_tensor *r = cnn_random_randint(lo, hi, n, size), *c = r ? cnn_tensor_to_dtype(r, o.dtype) : NULL;
  cnn_tensor_release(r);
  finish(L, c, &o, fn);
  return 1;
}

/** cnn.randperm(n) -> Tensor
 * A random permutation of 1..n, as an int64 tensor (1-based, like every index in cnn). */
static int f_randperm(lua_State *L) {
  lcnn_max_args(L, 1, "randperm");
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 0) return lcnn_error(L, "randperm", "n must be non-negative, got %lld", (long long)n);
  cnn_tensor *p = cnn_random_randperm(n);
  cnn_tensor *one = cnn_tensor_scalar(CNN_INT64, 1);
  cnn_tensor *r = p && one ? cnn_ew_binary(CNN_ADD, p, one) : NULL; /* 1-based, like every index here */
  cnn_tensor_release(p);
  cnn_tensor_release(one);
  lcnn_push(L, r, "randperm");
  return 1;
}

/* ---- joining ---- */

static int join(lua_State *L, bool stack) {
  const char *fn = stack ? "stack" : "cat";
  lcnn_max_args(L, 2, fn);
  if (!lua_istable(L, 1)) return lcnn_error(L, fn, "expected a list of tensors, got %s", lcnn_typename(L, 1));
  lua_Integer n = luaL_len(L, 1);
  if (n <= 0) return lcnn_error(L, fn, "expected a non-empty list of tensors");
  if (n > INT_MAX / (lua_Integer)sizeof(cnn_tensor *))
    return lcnn_error(L, fn, "too many tensors (%lld)", (long long)n);
  /* every element into an anchor table first (a proxy's __index may return fresh tensors, which
   * only it keeps alive, and may run any Lua code); pointers are taken after the last lookup, into
   * a userdata the collector frees however this ends (the stack held them: at most 4096 tensors) */
  lua_settop(L, 2);
  lua_createtable(L, (int)n, 0); /* 3 */
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    lua_rawseti(L, 3, i);
  }
  const cnn_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)n, 0); /* 4 */
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 3, i + 1);
    ts[i] = lcnn_test(L, -1);
    if (!ts[i])
      return lcnn_error(L, fn, "element %d of the list is %s, not a tensor", (int)(i + 1), lcnn_typename(L, -1));
    lua_pop(L, 1);
  }
  int nd = stack ? ts[0]->ndim + 1 : ts[0]->ndim;
  int d = lua_isnoneornil(L, 2) ? 0 : lcnn_dim(L, 2, fn, stack ? ts[0]->ndim : nd, stack);
  if (!stack && ts[0]->ndim == 0) return lcnn_error(L, fn, "zero-dimensional tensor 1 cannot be concatenated");
  lcnn_push(L, stack ? cnn_op_stack((int)n, ts, d) : cnn_op_cat((int)n, ts, d), fn);
  return 1;
}

/** cnn.cat({t1, t2, ...}, dim=1) -> Tensor
 * The tensors joined along existing dimension dim; the other sizes must agree. */
static int f_cat(lua_State *L) { return join(L, false); }
/** cnn.stack({t1, t2, ...}, dim=1) -> Tensor
 * Same-shaped tensors joined along a new dimension inserted at dim. */
static int f_stack(lua_State *L) { return join(L, true); }

/** cnn.is_tensor(x) -> boolean
 * cnn.util.is_tensor(x) -> boolean
 * Whether x is a tensor (a closed one too): a check of its metatable, which allocates nothing. */
static int f_is_tensor(lua_State *L) {
  lua_pushboolean(L, lcnn_testbox(L, 1) != NULL);
  return 1;
}

/** cnn.allclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=false) -> boolean
 * Whether |a - b| <= atol + rtol * |b| for every element (the shapes broadcast).
 * NaN is close to NaN only with equal_nan; two int64 tensors compare exactly (not as doubles). */
static int f_allclose(lua_State *L) {
  lcnn_max_args(L, 5, "allclose");
  cnn_tensor *a = lcnn_check(L, 1, "allclose"), *b = lcnn_check(L, 2, "allclose");
  double rtol = lcnn_arg_number(L, 3, "allclose", "rtol", 1e-5), atol = lcnn_arg_number(L, 4, "allclose", "atol", 1e-8);
  bool equal_nan = lcnn_arg_boolean(L, 5, "allclose", "equal_nan", false);
  /* as PyTorch's isclose: a negative (or NaN) tolerance is an error, not a comparison that passes */
  if (!(rtol >= 0))
    return lcnn_error(L, "allclose", "rtol must be greater than or equal to zero, got %g", cnn_error_num(rtol));
  if (!(atol >= 0))
    return lcnn_error(L, "allclose", "atol must be greater than or equal to zero, got %g", cnn_error_num(atol));
  int r = cnn_ew_allclose(a, b, rtol, atol, equal_nan);
  if (r < 0) return lcnn_fail(L, "allclose");
  lua_pushboolean(L, r);
  return 1;
}

/** cnn.manual_seed(n)
 * Seeds cnn's random generator with integer n.
 * The same seed and the same thread count give the same numbers (rand, randn, dropout, shuffles). */
static int f_manual_seed(lua_State *L) {
  lcnn_max_args(L, 1, "manual_seed");
  if (!lua_isinteger(L, 1))
    return lcnn_error(L, "manual_seed", "expected an integer seed, got %s", luaL_typename(L, 1));
  cnn_rng_seed(cnn_rng_global(), (uint64_t)lua_tointeger(L, 1));
  return 0;
}

/** cnn.get_rng_state() -> Tensor
 * The random generator's state as a 4-element int64 tensor (bit patterns), for checkpoints. */
static int f_get_rng_state(lua_State *L) {
  uint64_t st[4];
  cnn_rng_get_state(cnn_rng_global(), st);
  int64_t n = 4;
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, 1, &n);
  if (t) memcpy(cnn_tensor_i64(t), st, sizeof st);
  lcnn_push(L, t, "get_rng_state");
  return 1;
}

/** cnn.set_rng_state(state)
 * Restores the generator state that cnn.get_rng_state returned. */
static int f_set_rng_state(lua_State *L) {
  cnn_tensor *t = lcnn_check(L, 1, "set_rng_state");
  if (t->dtype != CNN_INT64 || cnn_tensor_numel(t) != 4)
    return lcnn_error(L, "set_rng_state", "expected the 4-element int64 tensor from get_rng_state");
  uint64_t st[4];
  for (int i = 0; i < 4; i++) {
    int64_t v = cnn_tensor_get_flat_i64(t, i); /* exact: bit patterns exceed a double's 53 bits */
    memcpy(&st[i], &v, sizeof v);
  }
  if (cnn_rng_set_state(cnn_rng_global(), st)) return lcnn_fail(L, "set_rng_state");
  return 0;
}

/** cnn.set_num_threads(n)
 * Sets the number of threads the kernels use (1..1024), starting them now.
 * The default is the number of cores, or OMP_NUM_THREADS when set (a value that is no count is
 * reported on stderr and ignored). Raises when the threads cannot be started (resource limits),
 * and the count stays as it was. Beside other busy programs
 * the kernels run on fewer threads for a while, by themselves; a forked child (hp.search trials)
 * starts threads of its own. */
static int f_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > CNN_PARALLEL_MAX_THREADS)
    return lcnn_error(L, "set_num_threads", "expected 1..%d threads, got %lld", CNN_PARALLEL_MAX_THREADS, (long long)n);
  if (cnn_parallel_set_threads((int)n)) return lcnn_fail(L, "set_num_threads");
  return 0;
}

/** cnn.get_num_threads() -> integer
 * The number of threads the kernels use. */
static int f_get_num_threads(lua_State *L) {
  lua_pushinteger(L, cnn_parallel_get_threads());
  return 1;
}

/** cnn.set_conv_algorithm("auto"|"im2col")
 * Chooses how convolutions run: "auto" (the default) or "im2col".
 * With "auto", stride-1 convolutions (groups 1, dilation 1, padding at most kernel - 1) run the direct
 * kernels, which read the zero-padded input in place, and 3x3 ones padded by 1 from 64 channels on
 * planes of 12x12 and more (in batches of 256 2x2 tiles and more) run Winograd F(2x2, 3x3) (2.25x
 * fewer multiply-adds) where the CPU has AVX-512; other layers and "im2col" build a column matrix for the GEMM. They agree to float
 * rounding; the switch is for comparisons and benchmarks. */
static int f_set_conv_algorithm(lua_State *L) {
  static const char *const names[] = {"auto", "im2col", NULL};
  const char *s = luaL_checkstring(L, 1);
  for (int i = 0; names[i]; i++)
    if (strcmp(s, names[i]) == 0) {
      cnn_conv2d_set_algorithm(i == 0 ? CNN_CONV2D_AUTO : CNN_CONV2D_IM2COL);
      return 0;
    }
  return lcnn_error(L, "set_conv_algorithm", "expected \"auto\" or \"im2col\", got \"%s\"", s);
}

/** cnn.get_conv_algorithm() -> "auto"|"im2col"
 * The convolution algorithm set by cnn.set_conv_algorithm. */
static int f_get_conv_algorithm(lua_State *L) {
  lua_pushstring(L, cnn_conv2d_get_algorithm() == CNN_CONV2D_AUTO ? "auto" : "im2col");
  return 1;
}

void lcnn_open_factory(lua_State *L) {
  static const luaL_Reg f[] = {{"tensor", f_tensor},
                               {"empty", f_empty},
                               {"zeros", f_zeros},
                               {"ones", f_ones},
                               {"rand", f_rand},
                               {"randn", f_randn},
                               {"full", f_full},
                               {"zeros_like", f_zeros_like},
                               {"ones_like", f_ones_like},
                               {"arange", f_arange},
                               {"linspace", f_linspace},
                               {"eye", f_eye},
                               {"randint", f_randint},
                               {"randperm", f_randperm},
                               {"cat", f_cat},
                               {"stack", f_stack},
                               {"allclose", f_allclose},
                               {"is_tensor", f_is_tensor},
                               {"manual_seed", f_manual_seed},
                               {"set_num_threads", f_set_num_threads},
                               {"get_num_threads", f_get_num_threads},
                               {"get_rng_state", f_get_rng_state},
                               {"set_rng_state", f_set_rng_state},
                               {"set_conv_algorithm", f_set_conv_algorithm},
                               {"get_conv_algorithm", f_get_conv_algorithm},
                               {NULL, NULL}};
  luaL_setfuncs(L, f, 0);
}
