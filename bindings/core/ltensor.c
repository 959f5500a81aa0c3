/* Tensor userdata: metamethods (indexing, fields, lifetime, printing) and the inspection and
 * view methods. Lua is 1-based: dims and indices are converted here, at the boundary. */
#include "lcnn.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h" /* cnn_op_rebases, cnn_op_rebase_write: recorded indexed writes */
#include "cnn/autograd.h"
#include "cnn/error.h"
#include "cnn/format.h"
#include "cnn/ops.h"
#include "core/iter.h"

#define SELF(fn) lcnn_check(L, 1, fn)

/* ---- lifetime ---- */

static int t_gc(lua_State *L) {
  cnn_tensor **box = luaL_checkudata(L, 1, LCNN_TENSOR);
  cnn_tensor_release(*box);
  *box = NULL;
  return 0;
}

/* ---- fields and indexing ---- */

/* t[key] and t[key] = v. A key is parsed into an index_spec before any view is made, so one
 * parser serves reading and writing:
 *   t[i]                 row i of dim 1 (a number when t is 1-d); negative counts from the end
 *   t[{i, j}]            Torch7's table index, one entry per leading dim: a number selects (and
 *   t[{{1, 3}, 2}]       drops the dim), {a, b} is the inclusive range a..b, {a} the range a..a
 *   t[{{}, 2}]           and {} the whole dim; dims past the table's entries are taken whole.
 *                        Every entry a number, one per dim: the element, as a number.
 *   t[mask]              mask a bool tensor of the shape of t's leading dims: the selected
 *                        elements or rows, as a new tensor (index_with_tensor)
 * Anything else (a fraction, a boolean, a non-bool tensor, a range of three) raises. */
typedef struct {
  int n;        /* entries, one per leading dim */
  bool element; /* every dim selected by a number: the result is one element */
  struct {
    bool select;   /* a number: drop the dim */
    int64_t start; /* 0-based */
    int64_t len;   /* for a range */
  } e[CNN_MAX_DIMS];
} index_spec;

/* A 1-based position within a dim of size n, negative from the end, as 0-based. */
static int64_t index_position(lua_State *L, const char *fn, lua_Integer i, int d, int64_t n) {
  if (i == 0 || i > n || i < -n)
    lcnn_error(L, fn, "index %lld is out of range for dimension %d of size %lld", (long long)i, d + 1, (long long)n);
  return i > 0 ? i - 1 : i + n;
}

/* The integer at idx (a float with an integral value counts), or a raise naming what it is. */
static lua_Integer index_integer(lua_State *L, int idx, const char *fn, const char *what) {
  int isint;
  lua_Integer i = lua_tointegerx(L, idx, &isint);
  if (!isint || lua_type(L, idx) != LUA_TNUMBER) {
    if (lua_type(L, idx) == LUA_TNUMBER)
      lcnn_error(L, fn, "%s must be an integer, got %s", what, lcnn_number_str(L, idx));
    lcnn_error(L, fn, "%s must be an integer, got %s", what, lcnn_typename(L, idx));
  }
  return i;
}

/* One range entry {a, b} / {a} / {} of a table index (at the top of the stack) for dim d. Raw
 * reads only: no Lua code runs while the caller holds the tensor's pointer. */
static void parse_range(lua_State *L, const char *fn, int d, int64_t n, index_spec *spec) {
  int r = lua_gettop(L);
  size_t len = lua_rawlen(L, r);
  if (len > 2)
    lcnn_error(L, fn, "range for dimension %d must be {}, {a} or {a, b}, got a table of %d", d + 1, (int)len);
  spec->e[d].select = false;
  if (len == 0) {
    spec->e[d].start = 0, spec->e[d].len = n;
    return;
  }
  lua_rawgeti(L, r, 1);
  lua_Integer a = index_integer(L, -1, fn, "range start");
  lua_rawgeti(L, r, 2);
  lua_Integer b = lua_isnil(L, -1) ? a : index_integer(L, -1, fn, "range end");
  lua_pop(L, 2);
  /* Torch7: negative counts from the end (-1 is the last); the range is inclusive */
  int64_t a0 = a < 0 ? a + n : a - 1, b0 = b < 0 ? b + n : b - 1;
  if (a0 < 0 || a0 >= n || b0 < a0 - 1 || b0 >= n)
    lcnn_error(L, fn, "range {%lld, %lld} is out of bounds for dimension %d of size %lld", (long long)a, (long long)b,
               d + 1, (long long)n);
  spec->e[d].start = a0, spec->e[d].len = b0 - a0 + 1;
}

/* Parses the key at idx against t into spec, or raises. */
static void parse_index(lua_State *L, int idx, const char *fn, const cnn_tensor *t, index_spec *spec) {
  spec->n = 0;
  spec->element = false;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (t->ndim == 0) lcnn_error(L, fn, "cannot index a 0-d tensor (use item())");
    spec->n = 1;
    spec->e[0].select = true;
    spec->e[0].start = index_position(L, fn, index_integer(L, idx, fn, "index"), 0, t->size[0]);
    spec->element = t->ndim == 1;
    return;
  }
  if (lua_type(L, idx) != LUA_TTABLE)
    lcnn_error(L, fn, "cannot index a tensor with %s (expected an integer or a table such as {i, j} or {{1, 3}, 2})",
               lcnn_typename(L, idx));
  size_t n = lua_rawlen(L, idx);
  if (n > (size_t)t->ndim)
    lcnn_error(L, fn, "too many indices: %d for a tensor of %d dimension%s", (int)n, t->ndim, t->ndim == 1 ? "" : "s");
  bool all_numbers = true;
  for (int d = 0; d < (int)n; d++) {
    lua_rawgeti(L, idx, d + 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      spec->e[d].select = true;
      spec->e[d].start = index_position(L, fn, index_integer(L, -1, fn, "index"), d, t->size[d]);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      parse_range(L, fn, d, t->size[d], spec);
      all_numbers = false;
    } else {
      lcnn_error(L, fn, "index entry %d must be a number or a range {a, b}, got %s", d + 1, lcnn_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  spec->n = (int)n;
  spec->element = all_numbers && (int)n == t->ndim && n > 0;
}

/* The view spec describes: through the autograd ops when reading (t[i] of a tensor that
 * requires grad has a gradient), plain views when writing. New reference or NULL. */
static cnn_tensor *index_view(const cnn_tensor *t, const index_spec *spec, bool record) {
  cnn_tensor *v = cnn_tensor_retain((cnn_tensor *)t);
  int dim = 0; /* the dim of v that entry d addresses: selections drop theirs */
  for (int d = 0; d < spec->n && v; d++) {
    cnn_tensor *nv;
    if (spec->e[d].select)
      nv = record ? cnn_op_select(v, dim, spec->e[d].start) : cnn_tensor_select(v, dim, spec->e[d].start);
    else
      nv = record ? cnn_op_narrow(v, dim++, spec->e[d].start, spec->e[d].len)
                  : cnn_tensor_narrow(v, dim++, spec->e[d].start, spec->e[d].len);
    cnn_tensor_release(v);
    v = nv;
  }
  return v;
}

/* t[key] = v on a t with history is recorded (assign_recorded, cnn_op_mask_put_), but never with
 * a v that requires grad: its gradient would be lost silently, so such a write is refused (copy_,
 * scatter_, masked_fill_ and the arithmetic in-place ops record that one too). */
#define VALUE_NEEDS_GRAD                                                                              \
  "the value requires grad, and an indexed write records no gradient: build the tensor out of place " \
  "(cnn.where, cnn.cat, t:scatter), or assign under cnn.no_grad"
static bool value_needs_grad(const cnn_tensor *v) { return v && cnn_ag_is_enabled() && cnn_ag_requires(v); }

/* t[mask] and t[mask] = v (the value at 3): a bool (or uint8, as PyTorch) tensor key selects the
 * rows of t at its true elements (see cnn_op_mask_select); any other tensor key is refused.
 * Pointers are taken after every allocation that can raise. */
static int index_with_tensor(lua_State *L, const char *fn, bool write) {
  cnn_tensor *key = lcnn_check(L, 2, fn);
  if (key->dtype != CNN_BOOL && key->dtype != CNN_UINT8)
    return lcnn_error(L, fn,
                      "cannot index a tensor with a %s tensor (a bool mask selects elements; use "
                      "index_select(dim, indices) to gather by int64 indices)",
                      cnn_dtype_name(key->dtype));
  if (!write) {
    cnn_tensor *t = SELF(fn);
    lcnn_push(L, cnn_op_mask_select(t, lcnn_check(L, 2, fn)), fn);
    return 1;
  }
  int vt = lua_type(L, 3);
  if (vt != LUA_TNUMBER && vt != LUA_TBOOLEAN && !lcnn_test(L, 3))
    return lcnn_error(L, fn, "expected a number, a boolean or a tensor to assign, got %s", lcnn_typename(L, 3));
  if (vt == LUA_TNUMBER || vt == LUA_TBOOLEAN) { /* converted (and checked) as fill_ does, anchored */
    lua_settop(L, 3);
    cnn_dtype dt = SELF(fn)->dtype;
    lcnn_check_float_value(L, 3, fn, dt);
    lcnn_push(L,
              vt == LUA_TNUMBER && lua_isinteger(L, 3) && dt != CNN_FLOAT32
                  ? cnn_tensor_full_i64(dt, 0, NULL, lua_tointeger(L, 3))
                  : cnn_tensor_scalar(dt, vt == LUA_TBOOLEAN ? lua_toboolean(L, 3) : lua_tonumber(L, 3)),
              fn);
    lua_replace(L, 3);
  }
  cnn_tensor *t = SELF(fn), *mask = lcnn_check(L, 2, fn), *v = lcnn_check(L, 3, fn);
  if (value_needs_grad(v)) return lcnn_error(L, fn, VALUE_NEEDS_GRAD);
  if (cnn_op_mask_put_(t, mask, v)) return lcnn_fail(L, fn);
  return 0;
}

/** field t.requires_grad
 * Whether autograd records the operations on t; set it with t:requires_grad_() or by assignment. */
/** field t.grad_fn
 * The name of the operation that made t ("AddBackward", ...), nil for a leaf. */
/** field t.grad
 * The gradient a backward() accumulated into leaf t: nil until one reaches it.
 * Assignable: `t.grad = nil` clears it, a tensor g of t's shape and dtype replaces it (t.grad
 * then shares g's storage). */
/** field t.is_leaf
 * True when no recorded operation made t (tensors you create; parameters). */
static int t_index(lua_State *L) {
  int kt = lua_type(L, 2);
  if (kt == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "requires_grad") == 0) {
      lua_pushboolean(L, SELF("requires_grad")->requires_grad);
      return 1;
    }
    if (strcmp(k, "grad") == 0) {
      lcnn_push_or_nil(L, SELF("grad")->grad);
      return 1;
    }
    if (strcmp(k, "grad_fn") == 0) {
      cnn_tensor *t = SELF("grad_fn");
      const char *name = cnn_tensor_grad_fn_name(t);
      if (name) lua_pushstring(L, name);
      else lua_pushnil(L);
      return 1;
    }
    if (strcmp(k, "is_leaf") == 0) {
      lua_pushboolean(L, SELF("is_leaf")->grad_fn == NULL);
      return 1;
    }
    /* methods, also of a closed tensor: the method itself then says it is closed */
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
  }
  if (lcnn_testbox(L, 2)) return index_with_tensor(L, "index", false);
  cnn_tensor *t = SELF("index");
  index_spec spec;
  parse_index(L, 2, "index", t, &spec);
  if (spec.element) {
    int64_t at[CNN_MAX_DIMS];
    for (int d = 0; d < spec.n; d++) at[d] = spec.e[d].start;
    lcnn_push_element(L, t, at);
    return 1;
  }
  lcnn_push(L, index_view(t, &spec, true), "index");
  return 1;
}

/* The value at 3 of t[key] = v written into dst, which has no history: a number or a boolean
 * (checked for dst's dtype; filled, exact for integers) or a tensor (copied, broadcast). 0 or -1
 * with the error set. */
static int write_value(lua_State *L, cnn_tensor *dst) {
  cnn_tensor *v = lcnn_test(L, 3);
  int vt = lua_type(L, 3);
  return v                                                  ? cnn_op_copy_(dst, v)
         : vt == LUA_TBOOLEAN                               ? cnn_op_fill_(dst, lua_toboolean(L, 3))
         : dst->dtype != CNN_FLOAT32 && lua_isinteger(L, 3) ? cnn_op_fill_i64_(dst, lua_tointeger(L, 3))
                                                            : cnn_op_fill_(dst, lua_tonumber(L, 3));
}

/* t[spec] = v recorded, t having history (PyTorch's CopySlices): the written elements as a mask
 * and the values beside it, both of t's shape, then t takes where(mask, values, t). */
static int assign_recorded(lua_State *L, cnn_tensor *t, const index_spec *spec) {
  cnn_tensor *mask = cnn_tensor_zeros(CNN_BOOL, t->ndim, t->size);
  cnn_tensor *vals = mask ? cnn_tensor_zeros(t->dtype, t->ndim, t->size) : NULL;
  cnn_tensor *mv = vals ? index_view(mask, spec, false) : NULL, *vv = mv ? index_view(vals, spec, false) : NULL;
  int rc = vv && cnn_tensor_fill_(mv, 1) == 0 && write_value(L, vv) == 0 ? cnn_op_rebase_write(t, mask, vals) : -1;
  cnn_tensor_release(vv);
  cnn_tensor_release(mv);
  cnn_tensor_release(vals);
  cnn_tensor_release(mask);
  return rc;
}

static int assign_index(lua_State *L) {
  const char *fn = "newindex";
  int vt = lua_type(L, 3);
  if (vt != LUA_TNUMBER && vt != LUA_TBOOLEAN && !lcnn_testbox(L, 3))
    return lcnn_error(L, fn, "expected a number, a boolean or a tensor to assign, got %s", luaL_typename(L, 3));
  if (lcnn_testbox(L, 2)) return index_with_tensor(L, fn, true);
  cnn_tensor *v = vt == LUA_TNUMBER || vt == LUA_TBOOLEAN ? NULL : lcnn_check(L, 3, fn);
  if (value_needs_grad(v)) return lcnn_error(L, fn, VALUE_NEEDS_GRAD);
  cnn_tensor *t = SELF(fn);
  index_spec spec;
  parse_index(L, 2, fn, t, &spec);
  lcnn_check_float_value(L, 3, fn, t->dtype);
  if (cnn_op_rebases(t, NULL)) return assign_recorded(L, t, &spec) ? lcnn_fail(L, fn) : 0;
  /* the whole of t is the written-to tensor: an expanded t refuses even a single element */
  if (cnn_op_check_inplace(t)) return lcnn_fail(L, fn);
  cnn_tensor *view = index_view(t, &spec, false);
  int rc = view ? write_value(L, view) : -1;
  cnn_tensor_release(view);
  if (rc) return lcnn_fail(L, fn);
  return 0;
}

static int t_newindex(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING) return assign_index(L);
  const char *k = lua_tostring(L, 2);
  if (strcmp(k, "requires_grad") == 0) {
    SELF("requires_grad");
    if (lua_type(L, 3) != LUA_TBOOLEAN)
      return lcnn_error(L, "requires_grad", "must be a boolean, got %s", luaL_typename(L, 3));
    lua_settop(L, 3);
    lua_getfield(L, 1, "requires_grad_");
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 3);
    lua_call(L, 2, 0);
    return 0;
  }
  if (strcmp(k, "grad") == 0) {
    /* argument 3 is __newindex's: the message names what t.grad = v was given */
    if (!lua_isnil(L, 3) && !lcnn_test(L, 3))
      return lcnn_error(L, "grad", "t.grad must be a tensor or nil, got %s", luaL_typename(L, 3));
    cnn_tensor *g = lua_isnil(L, 3) ? NULL : lcnn_check(L, 3, "grad");
    cnn_tensor *t = SELF("grad");
    if (g && !cnn_tensor_same_shape(g, t)) {
      char gs[256], ts[256];
      return lcnn_error(L, "grad", "assigned gradient has shape %s, the tensor %s",
                        cnn_shape_str(g->ndim, g->size, gs, sizeof gs), cnn_shape_str(t->ndim, t->size, ts, sizeof ts));
    }
    if (g && g->dtype != t->dtype)
      return lcnn_error(L, "grad", "assigned gradient is %s, the tensor %s", cnn_dtype_name(g->dtype),
                        cnn_dtype_name(t->dtype));
    /* as PyTorch's "can't assign Variable as its own grad", and views of it too: backward would
     * accumulate into the tensor's own values */
    if (g && g->storage == t->storage)
      return lcnn_error(L, "grad",
                        "a tensor cannot be its own gradient (the assigned one shares its memory); "
                        "assign a clone()");
    /* an alias without history: a cycle of grads (a.grad = b, b.grad = a) makes no reference cycle */
    cnn_tensor *a = g ? cnn_tensor_alias(g) : NULL;
    if (g && !a) return lcnn_fail(L, "grad");
    cnn_tensor_release(t->grad);
    t->grad = a;
    return 0;
  }
  return lcnn_error(L, "newindex", "cannot set field '%s' of a tensor", k);
}

static int t_len(lua_State *L) {
  cnn_tensor *t = SELF("len");
  if (t->ndim == 0) return lcnn_error(L, "len", "a 0-d tensor has no length");
  lua_pushinteger(L, t->size[0]);
  return 1;
}

static int t_tostring(lua_State *L) {
  cnn_tensor **box = luaL_checkudata(L, 1, LCNN_TENSOR);
  if (!*box) {
    lua_pushstring(L, "tensor(<closed>)");
    return 1;
  }
  char *s = cnn_format_tensor(*box);
  if (!s) return lcnn_fail(L, "tostring");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

/* ---- inspection ---- */

/* tostring of a shape or stride table: "{2, 3}" ("{}" for a 0-d tensor's), as the error messages
 * write shapes; the table stays a plain list of integers (only its metatable adds __tostring) */
static int size_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '{');
  lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addstring(&b, ", ");
    lua_geti(L, 1, i);
    luaL_tolstring(L, -1, NULL); /* whatever a user may have stored there */
    lua_remove(L, -2);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
  return 1;
}

/* pushes a new table of t's n values (sizes or strides) with the shape metatable */
static void push_sizes(lua_State *L, const int64_t *v, int n) {
  lua_createtable(L, n, 0);
  for (int d = 0; d < n; d++) {
    lua_pushinteger(L, v[d]);
    lua_rawseti(L, -2, d + 1);
  }
  if (luaL_newmetatable(L, "cnn.shape")) {
    lua_pushcfunction(L, size_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
}

/** t:shape() -> {sizes}
 * The sizes as a table of integers ({} for a 0-d tensor).
 * A plain list (`#`, ipairs, table.concat work); tostring and print show it as `{2, 3}`. */
static int t_shape(lua_State *L) {
  lcnn_max_args(L, 1, "shape");
  cnn_tensor *t = SELF("shape");
  push_sizes(L, t->size, t->ndim);
  return 1;
}

/** t:size(dim) -> integer
 * t:size() -> {sizes}
 * The size of dimension dim (negative counts from the end); with no dim, every size as t:shape(). */
static int t_size(lua_State *L) {
  lcnn_max_args(L, 2, "size");
  cnn_tensor *t = SELF("size");
  if (lua_isnoneornil(L, 2)) {
    push_sizes(L, t->size, t->ndim);
    return 1;
  }
  int d = lcnn_dim(L, 2, "size", t->ndim, 0);
  if (t->ndim == 0) return lcnn_error(L, "size", "a 0-d tensor has no dimensions");
  lua_pushinteger(L, t->size[d < 0 ? d + t->ndim : d]);
  return 1;
}

/** t:stride(dim) -> integer
 * t:stride() -> {strides}
 * The stride of dimension dim in elements (negative counts from the end); with no dim, all of them. */
static int t_stride(lua_State *L) {
  lcnn_max_args(L, 2, "stride");
  cnn_tensor *t = SELF("stride");
  if (!lua_isnoneornil(L, 2)) { /* it was ignored: t:stride(2) gave the whole table */
    int d = lcnn_dim(L, 2, "stride", t->ndim, 0);
    if (t->ndim == 0) return lcnn_error(L, "stride", "a 0-d tensor has no dimensions");
    lua_pushinteger(L, t->stride[d < 0 ? d + t->ndim : d]);
    return 1;
  }
  push_sizes(L, t->stride, t->ndim);
  return 1;
}

/** t:dim() -> integer
 * The number of dimensions (0 for a scalar tensor). */
static int t_dim(lua_State *L) {
  lcnn_max_args(L, 1, "dim");
  lua_pushinteger(L, SELF("dim")->ndim);
  return 1;
}

/** t:numel() -> integer
 * The number of elements. */
static int t_numel(lua_State *L) {
  lcnn_max_args(L, 1, "numel");
  lua_pushinteger(L, cnn_tensor_numel(SELF("numel")));
  return 1;
}

/** t:dtype() -> "float32"|"int64"|"uint8"|"bool"
 * The element type. */
static int t_dtype(lua_State *L) {
  lcnn_max_args(L, 1, "dtype");
  lua_pushstring(L, cnn_dtype_name(SELF("dtype")->dtype));
  return 1;
}

/** t:is_contiguous() -> boolean
 * Whether the elements lie densely in row-major order.
 * Views made by narrow, transpose, permute or expand may not. */
static int t_is_contiguous(lua_State *L) {
  lcnn_max_args(L, 1, "is_contiguous");
  lua_pushboolean(L, cnn_tensor_is_contiguous(SELF("is_contiguous")));
  return 1;
}

static int t_version(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)SELF("_version")->storage->version);
  return 1;
}

/** t:item() -> number|boolean
 * The value of a one-element tensor as a Lua value.
 * A float for float32, an integer for int64 and uint8, a boolean for bool. */
static int t_item(lua_State *L) {
  lcnn_max_args(L, 1, "item");
  cnn_tensor *t = SELF("item");
  if (cnn_tensor_numel(t) != 1)
    return lcnn_error(L, "item", "only a one-element tensor converts to a number (this one has %lld)",
                      (long long)cnn_tensor_numel(t));
  int64_t zero[CNN_MAX_DIMS] = {0};
  lcnn_push_element(L, t, zero);
  return 1;
}

/* Nested tables, built dim by dim without recursion limits mattering (ndim <= CNN_MAX_DIMS). */
static void push_table(lua_State *L, const cnn_tensor *t, int d, int64_t *idx) {
  if (d == t->ndim) {
    lcnn_push_element(L, t, idx);
    return;
  }
  lua_createtable(L, (int)(t->size[d] < 1 << 30 ? t->size[d] : 0), 0);
  for (int64_t i = 0; i < t->size[d]; i++) {
    idx[d] = i;
    push_table(L, t, d + 1, idx);
    lua_rawseti(L, -2, i + 1);
  }
}

/** t:totable() -> table
 * The values as nested Lua tables, one level per dimension (a number for a 0-d tensor). */
static int t_totable(lua_State *L) {
  lcnn_max_args(L, 1, "totable");
  cnn_tensor *t = SELF("totable");
  int64_t idx[CNN_MAX_DIMS] = {0};
  luaL_checkstack(L, CNN_MAX_DIMS + 4, "totable");
  /* the tables allocated below can run finalizers that close t: hold a reference of our own */
  lcnn_push_or_nil(L, t);
  push_table(L, t, 0, idx);
  return 1;
}

/* ---- views ---- */

/** t:select(dim, i) -> Tensor
 * The view at index i of dimension dim, that dimension removed (t[i] is t:select(1, i)). */
static int t_select(lua_State *L) {
  lcnn_max_args(L, 3, "select");
  cnn_tensor *t = SELF("select");
  if (t->ndim == 0) return lcnn_error(L, "select", "cannot select from a 0-d tensor");
  int d = lcnn_dim(L, 2, "select", t->ndim, 0);
  int dd = d < 0 ? d + t->ndim : d;
  lua_Integer i = luaL_checkinteger(L, 3);
  if (i == 0 || i > t->size[dd] || i < -t->size[dd])
    return lcnn_error(L, "select", "index %lld is out of range for dimension %d of size %lld", (long long)i, dd + 1,
                      (long long)t->size[dd]);
  lcnn_push(L, cnn_op_select(t, dd, i > 0 ? i - 1 : i + t->size[dd]), "select");
  return 1;
}

/** t:narrow(dim, start, length) -> Tensor
 * The view of indices start .. start + length - 1 of dimension dim. */
static int t_narrow(lua_State *L) {
  lcnn_max_args(L, 4, "narrow");
  cnn_tensor *t = SELF("narrow");
  if (t->ndim == 0) return lcnn_error(L, "narrow", "cannot narrow a 0-d tensor");
  int d = lcnn_dim(L, 2, "narrow", t->ndim, 0);
  int dd = d < 0 ? d + t->ndim : d;
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (start == 0 || start > t->size[dd] + 1 || start < -t->size[dd])
    return lcnn_error(L, "narrow", "start %lld is out of range for dimension %d of size %lld", (long long)start, dd + 1,
                      (long long)t->size[dd]);
  int64_t s0 = start > 0 ? start - 1 : start + t->size[dd];
  lcnn_push(L, cnn_op_narrow(t, dd, s0, len), "narrow");
  return 1;
}

/** t:transpose(dim1, dim2) -> Tensor
 * The view with dimensions dim1 and dim2 swapped. */
static int t_transpose(lua_State *L) {
  lcnn_max_args(L, 3, "transpose");
  cnn_tensor *t = SELF("transpose");
  int a = lcnn_dim(L, 2, "transpose", t->ndim, 0), b = lcnn_dim(L, 3, "transpose", t->ndim, 0);
  lcnn_push(L, cnn_op_transpose(t, a, b), "transpose");
  return 1;
}

/** t:t() -> Tensor
 * The transpose of a 2-d tensor (a view); 0-d and 1-d tensors come back as they are. */
static int t_t(lua_State *L) {
  lcnn_max_args(L, 1, "t");
  cnn_tensor *t = SELF("t");
  if (t->ndim > 2) return lcnn_error(L, "t", "expects a tensor with at most 2 dimensions, got %d", t->ndim);
  if (t->ndim < 2) lcnn_push(L, cnn_tensor_retain(t), "t");
  else lcnn_push(L, cnn_op_transpose(t, 0, 1), "t");
  return 1;
}

/** t:permute(dim...) -> Tensor
 * The view with the dimensions in the given order: `t:permute(1, 3, 4, 2)` takes NCHW to NHWC. */
static int t_permute(lua_State *L) {
  int dims[CNN_MAX_DIMS], n = 0;
  if (lua_istable(L, 2)) { /* the entries onto the stack first: lua_geti may run metamethods */
    lua_Integer len = luaL_len(L, 2);
    if (len < 0 || len > CNN_MAX_DIMS)
      return lcnn_error(L, "permute", "expected at most %d dimensions, got %lld", CNN_MAX_DIMS, (long long)len);
    lua_settop(L, 2);
    luaL_checkstack(L, (int)len, "permute");
    for (int i = 1; i <= len; i++) lua_geti(L, 2, i);
    lua_remove(L, 2);
  }
  cnn_tensor *t = SELF("permute");
  int top = lua_gettop(L);
  if (top - 1 != t->ndim) return lcnn_error(L, "permute", "expected %d dimensions, got %d", t->ndim, top - 1);
  for (int i = 2; i <= top; i++) dims[n++] = lcnn_dim(L, i, "permute", t->ndim, 0);
  lcnn_push(L, cnn_op_permute(t, dims), "permute");
  return 1;
}

/** t:unsqueeze(dim) -> Tensor
 * The view with a dimension of size 1 inserted at dim (negative counts from the end). */
static int t_unsqueeze(lua_State *L) {
  lcnn_max_args(L, 2, "unsqueeze");
  cnn_tensor *t = SELF("unsqueeze");
  lcnn_push(L, cnn_op_unsqueeze(t, lcnn_dim(L, 2, "unsqueeze", t->ndim, 1)), "unsqueeze");
  return 1;
}

/** t:squeeze(dim) -> Tensor
 * The view without dimension dim if its size is 1; with no dim, without every size-1 dimension. */
static int t_squeeze(lua_State *L) {
  cnn_tensor *t = SELF("squeeze");
  int d = lua_isnoneornil(L, 2) ? CNN_ALL_DIMS : lcnn_dim(L, 2, "squeeze", t->ndim, 0);
  lcnn_push(L, cnn_op_squeeze(t, d), "squeeze");
  return 1;
}

/** t:flatten(start_dim=1, end_dim=-1) -> Tensor
 * Dimensions start_dim .. end_dim merged into one (a view when the strides allow, else a copy). */
static int t_flatten(lua_State *L) {
  cnn_tensor *t = SELF("flatten");
  int s = lua_isnoneornil(L, 2) ? 0 : lcnn_dim(L, 2, "flatten", t->ndim, 0);
  int e = lua_isnoneornil(L, 3) ? -1 : lcnn_dim(L, 3, "flatten", t->ndim, 0);
  lcnn_push(L, cnn_op_flatten(t, s, e), "flatten");
  return 1;
}

static int reshape_like(lua_State *L, const char *fn, cnn_tensor *(*op)(const cnn_tensor *, int, const int64_t *)) {
  int64_t size[CNN_MAX_DIMS];
  int next;
  int n = lcnn_shape(L, 2, fn, size, &next, 1); /* before SELF: a shape table's lookups may run Lua code */
  if (!lua_isnoneornil(L, next))
    return lcnn_error(L, fn, "expected sizes (integers or one table), got %s", luaL_typename(L, next));
  cnn_tensor *t = SELF(fn);
  lcnn_push(L, op(t, n, size), fn);
  return 1;
}

/** t:view(size...|{size}) -> Tensor
 * A view of the same storage in another shape; one size may be -1 (inferred).
 * The strides must allow it (a contiguous tensor always does); t:reshape copies when they do not. */
static int t_view(lua_State *L) { return reshape_like(L, "view", cnn_op_view); }
/** t:reshape(size...|{size}) -> Tensor
 * The same elements in another shape: a view when the strides allow, else a copy; one size may be -1. */
static int t_reshape(lua_State *L) { return reshape_like(L, "reshape", cnn_op_reshape); }
/** t:expand(size...|{size}) -> Tensor
 * A view that repeats size-1 dimensions to a larger size without copying; -1 keeps a size.
 * New leading dimensions may be added, as in broadcasting. */
static int t_expand(lua_State *L) { return reshape_like(L, "expand", cnn_op_expand); }

/** t:contiguous() -> Tensor
 * t's elements in row-major order: a tensor sharing t's storage when t is contiguous, else a copy. */
static int t_contiguous(lua_State *L) {
  lcnn_max_args(L, 1, "contiguous");
  lcnn_push(L, cnn_op_contiguous(SELF("contiguous")), "contiguous");
  return 1;
}

/** t:clone() -> Tensor
 * A copy with storage of its own; autograd records it (gradients flow back to t). */
static int t_clone(lua_State *L) {
  lcnn_max_args(L, 1, "clone");
  lcnn_push(L, cnn_op_clone(SELF("clone")), "clone");
  return 1;
}

/** t:float() -> Tensor
 * t converted to float32 (sharing t's storage when it already is float32). */
static int t_float(lua_State *L) {
  lcnn_max_args(L, 1, "float");
  lcnn_push(L, cnn_op_to_dtype(SELF("float"), CNN_FLOAT32), "float");
  return 1;
}

/** t:long() -> Tensor
 * t converted to int64, truncating towards zero (sharing t's storage when it already is int64). */
static int t_long(lua_State *L) {
  lcnn_max_args(L, 1, "long");
  lcnn_push(L, cnn_op_to_dtype(SELF("long"), CNN_INT64), "long");
  return 1;
}

/** t:bool() -> Tensor
 * t converted to bool: true where an element is nonzero (NaN included), as PyTorch's t.bool(). */
static int t_bool(lua_State *L) {
  lcnn_max_args(L, 1, "bool");
  lcnn_push(L, cnn_op_to_dtype(SELF("bool"), CNN_BOOL), "bool");
  return 1;
}

/** t:byte() -> Tensor
 * t converted to uint8 (as PyTorch: modulo 256 after truncation toward zero).
 * Integers keep their low byte (300 -> 44, -1 -> 255); bool gives 0 and 1. */
static int t_byte(lua_State *L) {
  lcnn_max_args(L, 1, "byte");
  lcnn_push(L, cnn_op_to_dtype(SELF("byte"), CNN_UINT8), "byte");
  return 1;
}

/** t:to(dtype) -> Tensor
 * t converted to dtype: "float32", "int64", "uint8" or "bool".
 * As t:float(), t:long(), t:byte(), t:bool(); the same tensor when it already has that dtype. */
static int t_to(lua_State *L) {
  lcnn_max_args(L, 2, "to");
  luaL_checktype(L, 2, LUA_TSTRING);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "dtype");
  cnn_dtype dt = lcnn_opt_dtype(L, lua_gettop(L), "to", CNN_FLOAT32);
  lcnn_push(L, cnn_op_to_dtype(SELF("to"), dt), "to");
  return 1;
}

/* 1-based int64 indices -> 0-based copy; the check of each index is the runtime's. */
static cnn_tensor *zero_based(lua_State *L, int idx, const char *fn) {
  cnn_tensor *i = lcnn_check(L, idx, fn);
  if (i->dtype != CNN_INT64) lcnn_error(L, fn, "indices must be an int64 tensor, got %s", cnn_dtype_name(i->dtype));
  if (i->ndim > 1) lcnn_error(L, fn, "indices must be 0-d or 1-d, got %d dimensions", i->ndim);
  cnn_tensor *one = cnn_tensor_scalar(CNN_INT64, 1);
  cnn_tensor *r = one ? cnn_ew_binary(CNN_SUB, i, one) : NULL;
  cnn_tensor_release(one);
  if (!r) lcnn_fail(L, fn);
  return r;
}

/** t:index_select(dim, indices) -> Tensor
 * The entries at the given 1-based positions along dimension dim, as a new tensor.
 * indices is a 0-d or 1-d int64 tensor; positions may repeat. */
static int t_index_select(lua_State *L) {
  lcnn_max_args(L, 3, "index_select");
  cnn_tensor *t = SELF("index_select");
  int d = lcnn_dim(L, 2, "index_select", t->ndim, 0);
  cnn_tensor *idx = zero_based(L, 3, "index_select");
  cnn_tensor *r = cnn_op_index_select(t, d, idx);
  cnn_tensor_release(idx);
  lcnn_push(L, r, "index_select");
  return 1;
}

static int t_close(lua_State *L) { return t_gc(L); }

/** class cnn.Tensor
 * An n-d array of float32, int64, uint8 or bool values, with views, broadcasting math and autograd.
 * Made by cnn.tensor, cnn.zeros and the other constructors; dims and indices are 1-based.
 * Operators: `+ - * / ^` (a number on either side), unary `-`, `#t` (the size of dimension 1),
 * `t[i]` (row i, a view; a number for a 1-d tensor; negative counts from the end), Torch7's
 * table indices `t[{i, j}]` (an element, as a number), `t[{{1, 3}, 2}]` and `t[{{}, 2}]` (views:
 * `{a, b}` is the inclusive range a..b, `{a}` the range a..a, `{}` the whole dim, dims past the
 * table whole), the same forms on the left of `t[...] = v` (v a number, a boolean or a tensor,
 * broadcast), `t[mask]` (mask a bool tensor of the shape of t's leading dims: the selected elements
 * or rows, as a new tensor) and `t[mask] = v`, `&`, `|`, `~` (bitwise, on bool and integer
 * tensors) and `tostring(t)` (values, shape and dtype, elided when large). Any other index raises.
 * A tensor supports Lua 5.4's `<close>`, which frees its storage at the end of the scope. */
void lcnn_open_tensor(lua_State *L, int methods) {
  static const luaL_Reg m[] = {{"shape", t_shape},
                               {"size", t_size},
                               {"stride", t_stride},
                               {"dim", t_dim},
                               {"numel", t_numel},
                               {"dtype", t_dtype},
                               {"is_contiguous", t_is_contiguous},
                               {"item", t_item},
                               {"totable", t_totable},
                               {"select", t_select},
                               {"narrow", t_narrow},
                               {"transpose", t_transpose},
                               {"t", t_t},
                               {"permute", t_permute},
                               {"unsqueeze", t_unsqueeze},
                               {"squeeze", t_squeeze},
                               {"flatten", t_flatten},
                               {"view", t_view},
                               {"reshape", t_reshape},
                               {"expand", t_expand},
                               {"contiguous", t_contiguous},
                               {"clone", t_clone},
                               {"float", t_float},
                               {"long", t_long},
                               {"bool", t_bool},
                               {"byte", t_byte},
                               {"to", t_to},
                               {"index_select", t_index_select},
                               {"_version", t_version},
                               {NULL, NULL}};
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, m, 0);
  lua_pop(L, 1);
  luaL_getmetatable(L, LCNN_TENSOR);
  lua_pushvalue(L, methods);
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -2, "__index");
  static const luaL_Reg meta[] = {{"__newindex", t_newindex}, {"__len", t_len},
                                  {"__tostring", t_tostring}, {"__gc", t_gc},
                                  {"__close", t_close},       {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pushstring(L, "cnn.Tensor");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}
