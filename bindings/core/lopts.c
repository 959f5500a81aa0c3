/* The bindings' one helper layer for errors and options (see lcnn.h). Every raise is "fn: message"
 * naming the Lua function, with the caller's position (lcnn_error) or without it (lcnn_error_plain,
 * for C functions whose Lua wrapper re-raises at its own caller's line). Every options table is
 * read the same way: unknown keys rejected (lcnn_options), each field typed or absent. */
#include "lcnn.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cnn/error.h"

static int raise(lua_State *L, bool where, const char *fn, const char *fmt, va_list ap) {
  char msg[1200];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (where) luaL_where(L, 1); /* level 0 is the C function the binding runs in; 1 the Lua line calling it */
  lua_pushfstring(L, "%s: %s", fn, msg);
  if (where) lua_concat(L, 2);
  return lua_error(L);
}

int lcnn_error(lua_State *L, const char *fn, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  return raise(L, true, fn, fmt, ap);
}

int lcnn_error_plain(lua_State *L, const char *fn, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  return raise(L, false, fn, fmt, ap);
}

int lcnn_fail(lua_State *L, const char *fn) {
  const char *m = cnn_error_get();
  return lcnn_error(L, fn, "%s", m[0] ? m : "failed");
}

int lcnn_fail_plain(lua_State *L, const char *fn) {
  const char *m = cnn_error_get();
  return lcnn_error_plain(L, fn, "%s", m[0] ? m : "failed");
}

const char *lcnn_who(lua_State *L, int idx, const char *def) {
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : def;
}

void lcnn_max_args(lua_State *L, int n, const char *fn) {
  int top = lua_gettop(L);
  while (top > n && lua_isnil(L, top)) top--;
  if (top <= n) return;
  if (lua_istable(L, n + 1)) lcnn_error(L, fn, "takes no options table (argument %d)", n + 1);
  lcnn_error(L, fn, "takes %d argument%s, got %d", n, n == 1 ? "" : "s", top);
}

/* ---- options tables ---- */

void lcnn_options(lua_State *L, int idx, const char *fn, const char *const *known) {
  if (lua_isnoneornil(L, idx)) return;
  if (!lua_istable(L, idx))
    lcnn_error(L, fn, "expected an options table for argument %d, got %s", idx, luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) lcnn_error(L, fn, "option keys must be names, got %s", luaL_typename(L, -1));
    const char *k = lua_tostring(L, -1);
    bool ok = false;
    for (int i = 0; known[i] && !ok; i++) ok = strcmp(k, known[i]) == 0;
    if (!ok) lcnn_error(L, fn, "unknown option '%s'", k);
  }
}

int lcnn_opt_field(lua_State *L, int idx, const char *key) {
  if (!lua_istable(L, idx)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, idx, key);
}

lua_Number lcnn_arg_number(lua_State *L, int idx, const char *fn, const char *what, lua_Number def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) != LUA_TNUMBER) lcnn_error(L, fn, "%s must be a number, got %s", what, luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

lua_Integer lcnn_arg_integer(lua_State *L, int idx, const char *fn, const char *what, lua_Integer def) {
  if (lua_isnoneornil(L, idx)) return def;
  int ok;
  lua_Integer v = lua_tointegerx(L, idx, &ok);
  if (!ok)
    lcnn_error(L, fn, "%s must be an integer, got %s", what,
               lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
  return v;
}

bool lcnn_arg_boolean(lua_State *L, int idx, const char *fn, const char *what, bool def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) != LUA_TBOOLEAN) lcnn_error(L, fn, "%s must be a boolean, got %s", what, luaL_typename(L, idx));
  return lua_toboolean(L, idx);
}

const char *lcnn_arg_string(lua_State *L, int idx, const char *fn, const char *what, const char *def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) != LUA_TSTRING) lcnn_error(L, fn, "%s must be a string, got %s", what, luaL_typename(L, idx));
  return lua_tostring(L, idx);
}

cnn_tensor *lcnn_arg_tensor(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_isnoneornil(L, idx)) return NULL;
  cnn_tensor **box = lcnn_testbox(L, idx);
  if (!box) lcnn_error(L, fn, "%s must be a tensor or nil, got %s", what, luaL_typename(L, idx));
  if (!*box) lcnn_error(L, fn, "%s is a closed tensor", what);
  return *box;
}

/* The field key of the table at idx read by the argument reader `get` (the table keeps strings and
 * tensors alive, so what they return stays valid). */
#define FIELD(T, get)               \
  do {                              \
    lcnn_opt_field(L, idx, key);    \
    T v = get(L, -1, fn, key, def); \
    lua_pop(L, 1);                  \
    return v;                       \
  } while (0)

lua_Number lcnn_opt_number(lua_State *L, int idx, const char *fn, const char *key, lua_Number def) {
  FIELD(lua_Number, lcnn_arg_number);
}

lua_Integer lcnn_opt_integer(lua_State *L, int idx, const char *fn, const char *key, lua_Integer def) {
  FIELD(lua_Integer, lcnn_arg_integer);
}

bool lcnn_opt_boolean(lua_State *L, int idx, const char *fn, const char *key, bool def) {
  FIELD(bool, lcnn_arg_boolean);
}

const char *lcnn_opt_string(lua_State *L, int idx, const char *fn, const char *key, const char *def) {
  FIELD(const char *, lcnn_arg_string);
}

cnn_tensor *lcnn_opt_tensor(lua_State *L, int idx, const char *fn, const char *key) {
  lcnn_opt_field(L, idx, key);
  cnn_tensor *t = lcnn_arg_tensor(L, -1, fn, key);
  lua_pop(L, 1);
  return t;
}

bool lcnn_opt_dtype_at(lua_State *L, int idx, const char *fn, cnn_dtype *out) {
  const char *s = lcnn_opt_string(L, idx, fn, "dtype", NULL);
  if (!s) return false;
  if (lcnn_dtype_named(s, out))
    lcnn_error(L, fn, "unknown dtype '%s' (expected \"float32\", \"int64\", \"uint8\" or \"bool\")", s);
  return true;
}

cnn_dtype lcnn_opt_dtype(lua_State *L, int idx, const char *fn, cnn_dtype def) {
  cnn_dtype dt = def;
  lcnn_opt_dtype_at(L, idx, fn, &dt);
  return dt;
}
