/* Tensor methods along one dimension by index: gather, scatter, scatter_add (and their in-place
 * forms), cumsum and sort. Indices cross the boundary 1-based (Lua) and are 0-based in the runtime:
 * each binding converts a copy, so the runtime's range check reports the user's own value. */
#include "cnn/elementwise.h"
#include "cnn/join.h"
#include "cnn/ops.h"
#include "lcnn.h"

#include <string.h>

/* A copy of the int64 tensor at idx minus 1 (new reference; the caller releases it before any raise). */
static cnn_tensor *minus_one(lua_State *L, int idx, const char *fn) {
  cnn_tensor *i = lcnn_check(L, idx, fn);
  if (i->dtype != CNN_INT64) lcnn_error(L, fn, "index must be an int64 tensor, got %s", cnn_dtype_name(i->dtype));
  cnn_tensor *one = cnn_tensor_scalar_i64(1);
  cnn_tensor *r = one ? cnn_ew_binary(CNN_SUB, i, one) : NULL;
  cnn_tensor_release(one);
  if (!r) lcnn_fail(L, fn);
  return r;
}

/* pos + 1, from 0-based positions to the 1-based indices Lua sees (takes pos; NULL passes) */
static cnn_tensor *one_based(cnn_tensor *pos) {
  cnn_tensor *one = pos ? cnn_tensor_scalar_i64(1) : NULL;
  cnn_tensor *r = one ? cnn_ew_binary(CNN_ADD, pos, one) : NULL;
  cnn_tensor_release(one);
  cnn_tensor_release(pos);
  return r;
}

/** t:gather(dim, index) -> Tensor
 * The elements of t picked along dimension dim by the 1-based int64 index, as torch.gather.
 * The result has index's shape: out[i][j][k] = t[index[i][j][k]][j][k] for dim 1, and so on;
 * index has t's number of dimensions and sizes at most t's on the other dimensions. The
 * gradient adds up over repeated indices. */
static int t_gather(lua_State *L) {
  const char *fn = "gather";
  lcnn_max_args(L, 3, fn);
  int d = lcnn_dim(L, 2, fn, lcnn_check(L, 1, fn)->ndim, 0);
  lcnn_check(L, 3, fn);
  cnn_tensor *t = lcnn_check(L, 1, fn), *idx = minus_one(L, 3, fn);
  cnn_tensor *r = cnn_op_gather(t, d, idx);
  cnn_tensor_release(idx);
  lcnn_push(L, r, fn);
  return 1;
}

/* scatter / scatter_add, out of place or in place: (t, dim, index, src | value) */
static int scatter(lua_State *L, const char *fn, bool add, bool inplace) {
  bool scalar = lua_type(L, 4) == LUA_TNUMBER || lua_type(L, 4) == LUA_TBOOLEAN;
  if (add && scalar) lcnn_error(L, fn, "src must be a tensor, got %s", luaL_typename(L, 4));
  lcnn_max_args(L, add ? 4 : 5, fn);
  if (!add) { /* scatter's {reduce="add"} is scatter_add (of a value too, as PyTorch) */
    static const char *const known[] = {"reduce", NULL};
    lcnn_options(L, 5, fn, known);
    const char *reduce = lcnn_opt_string(L, 5, fn, "reduce", NULL);
    if (reduce && strcmp(reduce, "add") != 0)
      lcnn_error(L, fn, "reduce must be \"add\" (\"multiply\" is not supported), got \"%s\"", reduce);
    add = reduce != NULL;
    lua_settop(L, 4);
  }
  int d = lcnn_dim(L, 2, fn, lcnn_check(L, 1, fn)->ndim, 0);
  lcnn_check(L, 3, fn);
  if (scalar) { /* the value as a 0-d tensor of t's dtype, checked as fill_ checks it (exact integers) */
    cnn_dtype dt = lcnn_check(L, 1, fn)->dtype;
    bool exact = lua_isinteger(L, 4) && dt != CNN_FLOAT32;
    lcnn_check_float_value(L, 4, fn, dt);
    lcnn_push(L,
              exact ? cnn_tensor_full_i64(dt, 0, NULL, lua_tointeger(L, 4))
                    : cnn_tensor_scalar(dt, lua_isboolean(L, 4) ? lua_toboolean(L, 4) : lua_tonumber(L, 4)),
              fn);
    lua_replace(L, 4);
  }
  cnn_tensor *src = lcnn_check(L, 4, fn);
  cnn_tensor *t = lcnn_check(L, 1, fn), *idx = minus_one(L, 3, fn);
  /* the value form: expanded to index's shape */
  cnn_tensor *s = scalar ? cnn_tensor_expand(src, idx->ndim, idx->size) : cnn_tensor_retain(src);
  cnn_tensor *r = NULL;
  int rc = -1;
  if (s) {
    if (inplace) rc = cnn_op_scatter_(t, d, idx, s, add);
    else r = cnn_op_scatter(t, d, idx, s, add);
  }
  cnn_tensor_release(s);
  cnn_tensor_release(idx);
  if (inplace) {
    if (rc) return lcnn_fail(L, fn);
    lua_settop(L, 1);
    return 1;
  }
  lcnn_push(L, r, fn);
  return 1;
}

/** t:scatter(dim, index, src, {reduce=nil}) -> Tensor
 * A copy of t with src written at the 1-based int64 index along dim, as torch.scatter.
 * {reduce="add"} adds instead (t:scatter_add, of a value too); "multiply" is not supported.
 * For dim 1, out[index[i][j]][j] = src[i][j]. index has t's number of
 * dimensions, sizes at most src's, and at most t's on the other dimensions; src has t's dtype, or
 * is a number (`t:scatter(dim, index, value)` writes value at every indexed position). Where an
 * index repeats, the last write wins. Differentiable in t (zero gradient where written) and src. */
static int t_scatter(lua_State *L) { return scatter(L, "scatter", false, false); }

/** t:scatter_(dim, index, src, {reduce=nil}) -> t
 * In place: t:scatter(dim, index, src) written into t itself.
 * Nothing is written when an index is out of range. */
static int t_scatter_i(lua_State *L) { return scatter(L, "scatter_", false, true); }

/** t:scatter_add(dim, index, src) -> Tensor
 * A copy of t with src added at the 1-based int64 index along dim, as torch.scatter_add.
 * For dim 1, out[index[i][j]][j] += src[i][j] (repeated indices add up).
 * index has t's number of dimensions, sizes at most src's, and at most t's on the other dimensions;
 * src has t's dtype. Differentiable in t and src (src's gradient is the output's gathered at index). */
static int t_scatter_add(lua_State *L) { return scatter(L, "scatter_add", true, false); }

/** t:scatter_add_(dim, index, src) -> t
 * In place: t:scatter_add(dim, index, src) added into t itself.
 * Nothing is written when an index is out of range. */
static int t_scatter_add_i(lua_State *L) { return scatter(L, "scatter_add_", true, true); }

/** t:cumsum(dim) -> Tensor
 * The running sums along dimension dim (1-based), in order: element i is t[1] + ... + t[i].
 * bool, uint8 and int64 sum as int64, float32 accumulates in double, as PyTorch. Differentiable
 * (the gradient is the running sum of the output's gradient from the end). */
static int t_cumsum(lua_State *L) {
  const char *fn = "cumsum";
  lcnn_max_args(L, 2, fn);
  int d = lcnn_dim(L, 2, fn, lcnn_check(L, 1, fn)->ndim, 0);
  lcnn_push(L, cnn_op_cumsum(lcnn_check(L, 1, fn), d), fn);
  return 1;
}

/** t:sort(dim=-1, descending=false) -> Tensor, Tensor
 * The values of t sorted along dim, and their 1-based int64 indices in t (t:gather(dim, indices)).
 * Stable (equal values keep their order); NaN sorts above everything, as in PyTorch. The values
 * are differentiable. */
static int t_sort(lua_State *L) {
  const char *fn = "sort";
  lcnn_max_args(L, 3, fn);
  int d = lua_isnoneornil(L, 2) ? -1 : lcnn_dim(L, 2, fn, lcnn_check(L, 1, fn)->ndim, 0);
  bool desc = lcnn_arg_boolean(L, 3, fn, "descending", false);
  cnn_tensor *values, *indices;
  if (cnn_op_sort(lcnn_check(L, 1, fn), d, desc, &values, &indices)) return lcnn_fail(L, fn);
  cnn_tensor *based = one_based(indices);
  if (!based) {
    cnn_tensor_release(values);
    return lcnn_fail(L, fn);
  }
  lcnn_push(L, values, fn);
  lcnn_push(L, based, fn);
  return 2;
}

/* t:_topk(k, dim, largest): the 1-based int64 positions of t:topk's values (t:gather(dim, them)
 * gives the values, with their gradient); F.lua's t:topk checks the arguments first. */
static int t_topk_positions(lua_State *L) {
  const char *fn = "topk";
  const cnn_tensor *t = lcnn_check(L, 1, fn);
  lua_Integer k = luaL_checkinteger(L, 2);
  int d = lcnn_dim(L, 3, fn, t->ndim, 0);
  lcnn_push(L, one_based(cnn_join_topk(t, d, (int64_t)k, lua_toboolean(L, 4))), fn);
  return 1;
}

void lcnn_open_index(lua_State *L, int methods) {
  static const luaL_Reg m[] = {{"gather", t_gather},
                               {"scatter", t_scatter},
                               {"scatter_", t_scatter_i},
                               {"scatter_add", t_scatter_add},
                               {"scatter_add_", t_scatter_add_i},
                               {"cumsum", t_cumsum},
                               {"sort", t_sort},
                               {"_topk", t_topk_positions},
                               {NULL, NULL}};
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, m, 0);
  lua_pop(L, 1);
}
