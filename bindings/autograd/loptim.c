/* Optimiser update kernels for Lua (core.optim_kernels.*, internal to cnn.optim): one call per
 * parameter tensor, hyperparameters read from the Lua parameter group table, state tensors
 * created by the Lua side. Errors name the optimiser and the parameter's 1-based position. Tensor
 * pointers are taken after the group table's lookups, which may run Lua code (see lcnn.h). */
#include "lcnn.h"

#include <limits.h>

#include "autograd/optim.h"
#include "cnn/error.h"

static double group_number(lua_State *L, int group, const char *key, const char *fn) {
  lua_getfield(L, group, key);
  if (lua_type(L, -1) != LUA_TNUMBER)
    lcnn_error(L, fn, "parameter group option '%s' must be a number, got %s", key, luaL_typename(L, -1));
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static bool group_bool(lua_State *L, int group, const char *key, const char *fn) {
  lua_getfield(L, group, key);
  if (lua_type(L, -1) != LUA_TBOOLEAN)
    lcnn_error(L, fn, "parameter group option '%s' must be a boolean, got %s", key, luaL_typename(L, -1));
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static cnn_tensor *opt_tensor(lua_State *L, int idx, const char *fn) {
  return lua_isnoneornil(L, idx) ? NULL : lcnn_check(L, idx, fn);
}

/* Runs the update with a contiguous gradient (a copy when the assigned .grad is strided). */
typedef int (*update_fn)(cnn_tensor *param, const cnn_tensor *grad, void *ctx);

static int run(lua_State *L, const char *fn, lua_Integer pos, cnn_tensor *param, cnn_tensor *grad, update_fn f,
               void *ctx) {
  cnn_tensor *g = cnn_tensor_contiguous(grad);
  if (!g) return lcnn_error(L, fn, "parameter %d: %s", (int)pos, cnn_error_get());
  int rc = f(param, g, ctx);
  cnn_tensor_release(g);
  if (rc) return lcnn_error(L, fn, "parameter %d: %s", (int)pos, cnn_error_get());
  return 0;
}

typedef struct {
  cnn_tensor *buf;
  bool init;
  cnn_sgd_config c;
} sgd_ctx;

static int sgd_update(cnn_tensor *param, const cnn_tensor *grad, void *p) {
  sgd_ctx *s = p;
  return cnn_optim_sgd(param, grad, s->buf, s->init, &s->c);
}

/* sgd(fn, pos, param, grad, group, momentum_buffer|nil, buffer_is_new) */
static int k_sgd(lua_State *L) {
  const char *fn = luaL_checkstring(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  luaL_checktype(L, 5, LUA_TTABLE);
  sgd_ctx s;
  s.c.lr = group_number(L, 5, "lr", fn);
  s.c.momentum = group_number(L, 5, "momentum", fn);
  s.c.dampening = group_number(L, 5, "dampening", fn);
  s.c.weight_decay = group_number(L, 5, "weight_decay", fn);
  s.c.nesterov = group_bool(L, 5, "nesterov", fn);
  s.c.maximize = group_bool(L, 5, "maximize", fn);
  s.buf = opt_tensor(L, 6, fn);
  s.init = lua_toboolean(L, 7);
  cnn_tensor *param = lcnn_check(L, 3, fn), *grad = lcnn_check(L, 4, fn); /* after the group's lookups */
  return run(L, fn, pos, param, grad, sgd_update, &s);
}

/* The number (or boolean) at group[key], false when it is neither: sgd_group leaves such a group
 * to sgd(), which raises the error. */
static bool group_get(lua_State *L, int group, const char *key, int type, double *v) {
  bool ok = lua_getfield(L, group, key) == type;
  if (ok) *v = type == LUA_TNUMBER ? lua_tonumber(L, -1) : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return ok;
}

/* sgd_group(fn, pos, group, state) -> pos + #group.params, or nothing (and nothing done) when the
 * group needs sgd() one parameter at a time: a parameter with a grad but no state or momentum
 * buffer yet (made in Lua), a bad option or tensor (sgd() raises the error), or tensors that
 * cannot run together (see cnn_optim_sgd_many). Otherwise the updates of SGD:step's loop, same
 * bits, as one parallel loop, and no Lua object per parameter. */
static int k_sgd_group(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  if (lua_getfield(L, 3, "params") != LUA_TTABLE) return 0;
  const int params = 5;
  lua_Integer n = 0;
  while (lua_geti(L, params, n + 1) != LUA_TNIL) {
    lua_pop(L, 1);
    n++;
  }
  lua_pop(L, 1);
  if (n > INT_MAX / 4) return 0;
  cnn_sgd_config c;
  double v[6];
  bool have_config = false, use_buf = false;
  /* tensors of the parameters with a grad: params, grads, buffers (Lua owns the array) */
  cnn_tensor **t = lua_newuserdatauv(L, sizeof *t * (size_t)(3 * n + 1), 0);
  int count = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, params, i);
    cnn_tensor *p = lcnn_test(L, -1);
    if (!p) return 0;
    if (!p->grad) {
      lua_pop(L, 1);
      continue;
    }
    if (!have_config) { /* read as sgd() does: at the first parameter with a grad */
      if (!group_get(L, 3, "lr", LUA_TNUMBER, &v[0]) || !group_get(L, 3, "momentum", LUA_TNUMBER, &v[1]) ||
          !group_get(L, 3, "dampening", LUA_TNUMBER, &v[2]) || !group_get(L, 3, "weight_decay", LUA_TNUMBER, &v[3]) ||
          !group_get(L, 3, "nesterov", LUA_TBOOLEAN, &v[4]) || !group_get(L, 3, "maximize", LUA_TBOOLEAN, &v[5]))
        return 0;
      c = (cnn_sgd_config){.lr = v[0],
                           .momentum = v[1],
                           .dampening = v[2],
                           .weight_decay = v[3],
                           .nesterov = v[4] != 0,
                           .maximize = v[5] != 0};
      use_buf = c.momentum != 0;
      have_config = true;
    }
    cnn_tensor *b = NULL;
    if (use_buf) {
      if (lua_gettable(L, 4) != LUA_TTABLE) return 0; /* state[p] (pops p) */
      lua_getfield(L, -1, "momentum_buffer");
      b = lcnn_test(L, -1);
      if (!b) return 0;
      lua_pop(L, 2);
    } else {
      if (lua_gettable(L, 4) != LUA_TTABLE) return 0; /* state[p] exists once sgd() ran on it */
      lua_pop(L, 1);
    }
    if (!p->grad) return 0; /* (a metamethod of state changed it) */
    t[count] = p, t[n + count] = p->grad, t[2 * n + count] = b;
    count++;
  }
  if (count > 0 && cnn_optim_sgd_many(count, t, t + n, t + 2 * n, &c)) return 0;
  lua_pushinteger(L, pos + n);
  return 1;
}

/* drop_grads(params) -> true: sets every parameter's .grad to nil, as zero_grad's loop of
 * `p.grad = nil` does, without a Lua call per parameter; false (with the ones before dropped, as
 * that loop would have) at anything but an open tensor, for the loop to raise its error. */
static int k_drop_grads(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  for (lua_Integer i = 1; lua_geti(L, 1, i) != LUA_TNIL; i++) {
    cnn_tensor *t = lcnn_test(L, -1);
    if (!t) {
      lua_pushboolean(L, 0);
      return 1;
    }
    cnn_tensor *g = t->grad;
    t->grad = NULL;
    cnn_tensor_release(g);
    lua_pop(L, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct {
  cnn_tensor *exp_avg, *exp_avg_sq, *max_exp_avg_sq, *step;
  cnn_adam_config c;
} adam_ctx;

static int adam_update(cnn_tensor *param, const cnn_tensor *grad, void *p) {
  adam_ctx *a = p;
  return cnn_optim_adam(param, grad, a->exp_avg, a->exp_avg_sq, a->max_exp_avg_sq, a->step, &a->c);
}

/* adam(fn, pos, param, grad, group, exp_avg, exp_avg_sq, max_exp_avg_sq|nil, step, decoupled) */
static int k_adam(lua_State *L) {
  const char *fn = luaL_checkstring(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  luaL_checktype(L, 5, LUA_TTABLE);
  adam_ctx a;
  a.c.lr = group_number(L, 5, "lr", fn);
  a.c.eps = group_number(L, 5, "eps", fn);
  a.c.weight_decay = group_number(L, 5, "weight_decay", fn);
  a.c.amsgrad = group_bool(L, 5, "amsgrad", fn);
  a.c.maximize = group_bool(L, 5, "maximize", fn);
  lua_getfield(L, 5, "betas");
  if (!lua_istable(L, -1)) return lcnn_error(L, fn, "parameter group option 'betas' must be a table of two numbers");
  int betas = lua_gettop(L);
  for (int i = 0; i < 2; i++) {
    lua_geti(L, betas, i + 1);
    if (lua_type(L, -1) != LUA_TNUMBER)
      return lcnn_error(L, fn, "parameter group option 'betas' must be a table of two numbers");
    if (i == 0) a.c.beta1 = lua_tonumber(L, -1);
    else a.c.beta2 = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  a.exp_avg = lcnn_check(L, 6, fn);
  a.exp_avg_sq = lcnn_check(L, 7, fn);
  a.max_exp_avg_sq = opt_tensor(L, 8, fn);
  a.step = lcnn_check(L, 9, fn);
  a.c.decoupled = lua_toboolean(L, 10);
  cnn_tensor *param = lcnn_check(L, 3, fn), *grad = lcnn_check(L, 4, fn); /* after the group's lookups */
  return run(L, fn, pos, param, grad, adam_update, &a);
}

typedef struct {
  cnn_tensor *square_avg, *grad_avg, *momentum_buffer, *step;
  cnn_rmsprop_config c;
} rmsprop_ctx;

static int rmsprop_update(cnn_tensor *param, const cnn_tensor *grad, void *p) {
  rmsprop_ctx *r = p;
  return cnn_optim_rmsprop(param, grad, r->square_avg, r->grad_avg, r->momentum_buffer, r->step, &r->c);
}

/* rmsprop(fn, pos, param, grad, group, square_avg, grad_avg|nil, momentum_buffer|nil, step) */
static int k_rmsprop(lua_State *L) {
  const char *fn = luaL_checkstring(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  luaL_checktype(L, 5, LUA_TTABLE);
  rmsprop_ctx r;
  r.c.lr = group_number(L, 5, "lr", fn);
  r.c.alpha = group_number(L, 5, "alpha", fn);
  r.c.eps = group_number(L, 5, "eps", fn);
  r.c.weight_decay = group_number(L, 5, "weight_decay", fn);
  r.c.momentum = group_number(L, 5, "momentum", fn);
  r.c.centered = group_bool(L, 5, "centered", fn);
  r.c.maximize = group_bool(L, 5, "maximize", fn);
  r.square_avg = lcnn_check(L, 6, fn);
  r.grad_avg = opt_tensor(L, 7, fn);
  r.momentum_buffer = opt_tensor(L, 8, fn);
  r.step = lcnn_check(L, 9, fn);
  cnn_tensor *param = lcnn_check(L, 3, fn), *grad = lcnn_check(L, 4, fn); /* after the group's lookups */
  return run(L, fn, pos, param, grad, rmsprop_update, &r);
}

typedef struct {
  cnn_tensor *sum, *step;
  cnn_adagrad_config c;
} adagrad_ctx;

static int adagrad_update(cnn_tensor *param, const cnn_tensor *grad, void *p) {
  adagrad_ctx *a = p;
  return cnn_optim_adagrad(param, grad, a->sum, a->step, &a->c);
}

/* adagrad(fn, pos, param, grad, group, sum, step) */
static int k_adagrad(lua_State *L) {
  const char *fn = luaL_checkstring(L, 1);
  lua_Integer pos = luaL_checkinteger(L, 2);
  luaL_checktype(L, 5, LUA_TTABLE);
  adagrad_ctx a;
  a.c.lr = group_number(L, 5, "lr", fn);
  a.c.lr_decay = group_number(L, 5, "lr_decay", fn);
  a.c.weight_decay = group_number(L, 5, "weight_decay", fn);
  a.c.eps = group_number(L, 5, "eps", fn);
  a.c.maximize = group_bool(L, 5, "maximize", fn);
  a.sum = lcnn_check(L, 6, fn);
  a.step = lcnn_check(L, 7, fn);
  cnn_tensor *param = lcnn_check(L, 3, fn), *grad = lcnn_check(L, 4, fn); /* after the group's lookups */
  return run(L, fn, pos, param, grad, adagrad_update, &a);
}

void lcnn_open_optim(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {{"sgd", k_sgd},   {"sgd_group", k_sgd_group}, {"drop_grads", k_drop_grads},
                                 {"adam", k_adam}, {"rmsprop", k_rmsprop},     {"adagrad", k_adagrad},
                                 {NULL, NULL}};
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, tbl, r->name);
  }
}
