/* Autograd for Lua: requires_grad_, detach, backward, grad mode, and the node behind
 * cnn.autograd.Function, whose backward calls a Lua function. Such a node holds a registry
 * reference to that function; it runs on the Lua thread that called backward. */
#include "lcnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "cnn/error.h"
#include "cnn/ops.h"
#include "core/iter.h"
#include "core/tensor_hooks.h"

static _Thread_local lua_State *backward_L; /* the thread running backward, for Lua nodes */

/** t:requires_grad_(on=true) -> t
 * Makes autograd record the operations on leaf t, so backward() fills t.grad (float32 only).
 * requires_grad_(false) stops it; a tensor made by a recorded operation cannot turn it off (detach it). */
static int a_requires_grad_(lua_State *L) {
  lcnn_max_args(L, 2, "requires_grad_");
  cnn_tensor *t = lcnn_check(L, 1, "requires_grad_");
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TBOOLEAN)
    return lcnn_error(L, "requires_grad_", "expected a boolean, got %s", luaL_typename(L, 2));
  bool on = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
  if (on && t->dtype != CNN_FLOAT32)
    return lcnn_error(L, "requires_grad_", "only float32 tensors can require gradients (this one is %s)",
                      cnn_dtype_name(t->dtype));
  if (!on && t->grad_fn)
    return lcnn_error(L, "requires_grad_", "cannot turn off requires_grad of a non-leaf tensor (use detach())");
  t->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

/* core._saved_copy(t): t detached, as a copy autograd keeps for a backward (cnn.autograd.Function's
 * ctx): it does not count as a view of t's memory, which an in-place op on t refuses */
static int a_saved_copy(lua_State *L) {
  lcnn_push(L, cnn_tensor_saved_alias(lcnn_check(L, 1, "save_for_backward")), "save_for_backward");
  return 1;
}

/* core._is_saved_copy(t): whether t is such a copy (a Function's forward returning ctx.y must not
 * make the copy itself its output, whose views would then go uncounted) */
static int a_is_saved_copy(lua_State *L) {
  lua_pushboolean(L, lcnn_check(L, 1, "Function")->saved_copy);
  return 1;
}

/** t:detach() -> Tensor
 * A tensor sharing t's storage but outside the graph: no gradient flows back through it. */
static int a_detach(lua_State *L) {
  lcnn_max_args(L, 1, "detach");
  lcnn_push(L, cnn_ag_detach(lcnn_check(L, 1, "detach")), "detach");
  return 1;
}

/* The table of cnn.autograd.register_backward_callback's functions (set by autograd.lua), keyed
 * in the registry by this variable's address. They run after every backward that succeeded. */
static const char callbacks_key = 'c';

static int a_set_backward_callbacks(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &callbacks_key);
  return 0;
}

/** t:backward(grad, {retain_graph=false})
 * Adds the gradient of t with respect to each leaf that requires grad into the leaf's .grad.
 * grad is the gradient of some final value with respect to t (t's shape); it may be omitted when t
 * has one element (a loss), and the options may then come second: loss:backward{retain_graph =
 * true}, as PyTorch's loss.backward(retain_graph=True). The graph is freed unless retain_graph is
 * true; gradients accumulate until cleared (opt:zero_grad(), m:zero_grad(), `p.grad = nil`). */
static int a_backward(lua_State *L) {
  static const char *const known[] = {"retain_graph", NULL};
  if (lua_istable(L, 2) && !lcnn_testbox(L, 2) && lua_rawlen(L, 2) == 0 && lua_isnoneornil(L, 3)) { /* backward{...} */
    lua_settop(L, 2);
    lua_pushnil(L);
    lua_insert(L, 2);
  }
  lcnn_options(L, 3, "backward", known);
  bool retain = lcnn_opt_boolean(L, 3, "backward", "retain_graph", false);
  /* the engine holds its own references to t, g and the graph while Lua Functions run */
  cnn_tensor *t = lcnn_check(L, 1, "backward");
  cnn_tensor *g = lua_isnoneornil(L, 2) ? NULL : lcnn_check(L, 2, "backward");
  if (!t->requires_grad) return lcnn_error(L, "backward", "the tensor does not require grad and has no grad_fn");
  lua_State *prev = backward_L;
  backward_L = L;
  int rc = cnn_ag_backward(1, &t, &g, retain);
  backward_L = prev;
  if (rc) return lcnn_fail(L, "backward");
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &callbacks_key) == LUA_TTABLE) {
    int tbl = lua_gettop(L);
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, tbl); i <= n; i++) {
      if (lua_rawgeti(L, tbl, i) == LUA_TFUNCTION) lua_call(L, 0, 0);
      else lua_pop(L, 1);
    }
  }
  return 0;
}

/** cnn.set_grad_enabled(on) -> boolean
 * Turns the recording of operations for autograd on or off; returns the previous setting.
 * cnn.no_grad(fn) and cnn.enable_grad(fn) do this around a function and restore it even on errors. */
static int a_set_grad_enabled(lua_State *L) {
  if (lua_type(L, 1) != LUA_TBOOLEAN)
    return lcnn_error(L, "set_grad_enabled", "expected a boolean, got %s", luaL_typename(L, 1));
  lua_pushboolean(L, cnn_ag_set_enabled(lua_toboolean(L, 1)));
  return 1;
}

/** cnn.is_grad_enabled() -> boolean
 * Whether operations are being recorded for autograd (grad mode). */
static int a_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, cnn_ag_is_enabled());
  return 1;
}

/* ---- Lua-defined functions ---- */

/* A Function node's state: its Lua backward and the shape of every output, for the zeros an unused
 * output's gradient becomes. */
typedef struct lua_fn_state {
  lua_State *main; /* for unref when freed */
  int fn_ref;      /* the Lua backward closure: grads... -> grads per input */
  bool running;    /* inside the closure: a backward it starts must not come back here */
  bool keep_nil;   /* an unused output's gradient reaches the closure as nil, not zeros */
  int out_ndim[CNN_AG_MAX_OUTPUTS];
  int64_t out_size[CNN_AG_MAX_OUTPUTS][CNN_MAX_DIMS];
  char name[96]; /* the node's name, kept here: it outlives the Lua string (truncated if longer) */
} lua_fn_state;

static void lua_fn_free(void *p) {
  lua_fn_state *c = p;
  luaL_unref(c->main, LUA_REGISTRYINDEX, c->fn_ref);
}

static int lua_fn_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin);
static const cnn_ag_op lua_fn_op = {"FunctionBackward", lua_fn_backward, sizeof(lua_fn_state), lua_fn_free};

static int lua_fn_backward(cnn_node *n, cnn_tensor *const *gout, cnn_tensor **gin) {
  lua_fn_state *c = cnn_ag_state(n);
  if (n->released)
    return cnn_error_set("trying to backward through the graph a second time (%s); its saved state was "
                         "freed: pass {retain_graph=true} to the first backward",
                         n->name);
  if (c->running)
    return cnn_error_set("the backward of %s started a backward through itself (a cycle that never ends)", n->name);
  lua_State *L = backward_L ? backward_L : c->main;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, n->n_outputs + 4)) return cnn_error_set("Lua stack overflow");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn_ref);
  for (int k = 0; k < n->n_outputs; k++) {
    if (!gout[k] && c->keep_nil) {
      lua_pushnil(L);
      continue;
    }
    /* an output nobody used gets zeros of its shape, as PyTorch materialises them */
    cnn_tensor *g = gout[k] ? cnn_tensor_retain(gout[k])
                            : cnn_tensor_zeros(CNN_FLOAT32, c->out_ndim[k], c->out_size[k]);
    if (!g) {
      lua_settop(L, top);
      return -1;
    }
    cnn_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = g;
    lcnn_box_metatable(L);
  }
  c->running = true;
  int status = lua_pcall(L, n->n_outputs, LUA_MULTRET, 0);
  c->running = false; /* the node (and c in it) lives on: the engine holds it through its backward */
  if (status != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    cnn_error_set("in the backward of %s (a cnn.autograd.Function): %s", n->name,
                  m ? m : "(error object is not a string)");
    lua_settop(L, top);
    return -1;
  }
  /* one gradient (or nil) per tensor input; fewer means nils. Extra values must be nil (the nils a
   * PyTorch-style backward returns for non-tensor arguments), as PyTorch ignores trailing Nones. */
  int nres = lua_gettop(L) - top;
  for (int i = n->n_inputs; i < nres; i++)
    if (!lua_isnil(L, top + 1 + i)) {
      lua_settop(L, top);
      return cnn_error_set("%s returned an incorrect number of gradients (expected %d, got %d)", n->name, n->n_inputs,
                           nres);
    }
  if (nres < n->n_inputs && !lua_checkstack(L, n->n_inputs - nres)) {
    lua_settop(L, top);
    return cnn_error_set("Lua stack overflow");
  }
  lua_settop(L, top + n->n_inputs);
  int rc = 0;
  for (int i = 0; i < n->n_inputs; i++) {
    int idx = top + 1 + i;
    if (lua_isnil(L, idx) || !cnn_node_needs_grad(n, i)) continue;
    cnn_tensor *g = lcnn_test(L, idx);
    if (!g) {
      rc = cnn_error_set("%s returned %s for input %d (expected a tensor or nil)", n->name, lcnn_typename(L, idx),
                         i + 1);
      break;
    }
    const cnn_edge *e = &n->edges[i];
    bool same = g->ndim == e->ndim && g->dtype == CNN_FLOAT32;
    for (int d = 0; same && d < e->ndim; d++) same = g->size[d] == e->size[d];
    if (!same) {
      char b1[256], b2[256];
      rc = cnn_error_set("%s returned a %s gradient of shape %s for input %d of shape %s", n->name,
                         cnn_dtype_name(g->dtype), cnn_shape_str(g->ndim, g->size, b1, sizeof b1), i + 1,
                         cnn_shape_str(e->ndim, e->size, b2, sizeof b2));
      break;
    }
    gin[i] = cnn_tensor_retain(g);
  }
  lua_settop(L, top);
  return rc;
}

/* core._function_record(name, outputs, inputs, backward_fn, keep_nil): makes each output tensor
 * (already computed without recording) an output of one node whose inputs are the given tensors.
 * keep_nil: backward_fn gets nil for an output no gradient reached (zeros of its shape otherwise). */
static int a_function_record(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  const bool keep_nil = lua_toboolean(L, 5);
  int n_out = (int)luaL_len(L, 2), n_in = (int)luaL_len(L, 3);
  if (n_out < 1 || n_out > CNN_AG_MAX_OUTPUTS)
    return lcnn_error(L, "Function", "forward must return 1 to %d tensors, got %d", CNN_AG_MAX_OUTPUTS, n_out);
  if (n_in > 64) return lcnn_error(L, "Function", "at most 64 tensor inputs");
  lua_settop(L, 4);
  luaL_checkstack(L, n_in + n_out + 2, "Function");
  for (int i = 0; i < n_in; i++) lua_geti(L, 3, i + 1);
  for (int k = 0; k < n_out; k++) lua_geti(L, 2, k + 1);
  const cnn_tensor *ins[64];
  cnn_tensor *outs[CNN_AG_MAX_OUTPUTS];
  for (int i = 0; i < n_in; i++) ins[i] = lua_isnil(L, 5 + i) ? NULL : lcnn_check(L, 5 + i, "Function");
  for (int k = 0; k < n_out; k++) {
    outs[k] = lcnn_check(L, 5 + n_in + k, "Function");
    if (outs[k]->dtype != CNN_FLOAT32)
      return lcnn_error(L, "Function", "forward output %d is %s; differentiable outputs must be float32", k + 1,
                        cnn_dtype_name(outs[k]->dtype));
  }
  if (!cnn_ag_any_requires(n_in, ins)) return 0;
  /* the registry reference allocates (a finalizer may run): take the pointers again after it */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, 4);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  bool live = true;
  for (int i = 0; i < n_in; i++) live = live && (lua_isnil(L, 5 + i) || (ins[i] = lcnn_test(L, 5 + i)));
  for (int k = 0; k < n_out; k++) live = live && (outs[k] = lcnn_test(L, 5 + n_in + k));
  cnn_node *node = live ? cnn_ag_node_new(&lua_fn_op, n_in, ins, n_out) : NULL;
  if (!node) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return lcnn_error(L, "Function", "%s", live ? "out of memory" : "a tensor was closed while recording");
  }
  lua_fn_state *c = cnn_ag_state(node); /* zeroed: running is false */
  c->keep_nil = keep_nil;
  snprintf(c->name, sizeof c->name, "%s", name);
  node->name = c->name;
  c->main = main;
  c->fn_ref = ref;
  for (int k = 0; k < n_out; k++) {
    c->out_ndim[k] = outs[k]->ndim;
    memcpy(c->out_size[k], outs[k]->size, sizeof c->out_size[k]);
  }
  for (int k = 0; k < n_out; k++) cnn_ag_set_output(outs[k], node, k);
  cnn_ag_node_release(node);
  return 0;
}

/* ---- the graph as data (cnn.autograd.graph draws it) ---- */

static void push_shape(lua_State *L, int ndim, const int64_t *size) {
  lua_createtable(L, ndim, 0);
  for (int d = 0; d < ndim; d++) {
    lua_pushinteger(L, (lua_Integer)size[d]);
    lua_rawseti(L, -2, d + 1);
  }
}

/* The id of node n in the table at ids (lightuserdata -> integer), given the next free id when
 * new; *fresh tells which. */
static lua_Integer node_id(lua_State *L, int ids, const cnn_node *n, lua_Integer *next, bool *fresh) {
  lua_rawgetp(L, ids, n);
  lua_Integer id = lua_tointeger(L, -1);
  lua_pop(L, 1);
  *fresh = id == 0;
  if (*fresh) {
    id = (*next)++;
    lua_pushinteger(L, id);
    lua_rawsetp(L, ids, n);
  }
  return id;
}

/* core._graph(t) -> {output = k, nodes = {{name=, outputs=, inputs = {...}}, ...}}, or nil for a
 * tensor without a grad_fn. Node 1 is t's grad_fn (t is its output k); the others are numbered as
 * a depth-first walk first reaches them. Each input that carries a gradient is
 * {index = i, shape = {...}} plus node = id, output = k for an op's output, or leaf = a light
 * userdata naming the leaf tensor (core._tensor_key gives the same for a tensor) and tensor = it.
 * Inputs that need no gradient are left out, as the engine never visits them. */
static int a_graph(lua_State *L) {
  cnn_tensor *t = lcnn_check(L, 1, "graph");
  if (!t->grad_fn) return 0;
  lua_settop(L, 1);
  lua_newtable(L); /* 2: result */
  lua_newtable(L); /* 3: nodes by id */
  lua_newtable(L); /* 4: ids by node */
  lua_newtable(L); /* 5: the walk's stack of nodes */
  lua_Integer next = 1, top = 0;
  bool fresh;
  node_id(L, 4, t->grad_fn, &next, &fresh);
  lua_pushlightuserdata(L, t->grad_fn);
  lua_rawseti(L, 5, ++top);
  while (top > 0) {
    lua_rawgeti(L, 5, top);
    const cnn_node *n = lua_touserdata(L, -1);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, 5, top--);
    lua_Integer id = node_id(L, 4, n, &next, &fresh);
    lua_createtable(L, 0, 3); /* the node's entry */
    lua_pushstring(L, n->name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, n->n_outputs);
    lua_setfield(L, -2, "outputs");
    lua_createtable(L, n->n_inputs, 0);
    lua_Integer k = 0;
    for (int i = 0; i < n->n_inputs; i++) {
      const cnn_edge *e = &n->edges[i];
      if (!e->node && !e->leaf) continue;
      luaL_checkstack(L, 6, "graph");
      lua_createtable(L, 0, 4);
      lua_pushinteger(L, i + 1);
      lua_setfield(L, -2, "index");
      push_shape(L, e->ndim, e->size);
      lua_setfield(L, -2, "shape");
      if (e->node) {
        lua_Integer child = node_id(L, 4, e->node, &next, &fresh);
        if (fresh) {
          lua_pushlightuserdata(L, e->node);
          lua_rawseti(L, 5, ++top);
        }
        lua_pushinteger(L, child);
        lua_setfield(L, -2, "node");
        lua_pushinteger(L, e->output_nr + 1);
        lua_setfield(L, -2, "output");
      } else {
        lua_pushlightuserdata(L, e->leaf);
        lua_setfield(L, -2, "leaf");
        lcnn_push_or_nil(L, e->leaf); /* a new reference in a box of its own */
        lua_setfield(L, -2, "tensor");
      }
      lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, "inputs");
    lua_rawseti(L, 3, id);
  }
  lua_pushvalue(L, 3);
  lua_setfield(L, 2, "nodes");
  lua_pushinteger(L, t->output_nr + 1);
  lua_setfield(L, 2, "output");
  lua_settop(L, 2);
  return 1;
}

/* core._tensor_key(t) -> light userdata: the same value for every Lua handle of one tensor (the
 * key core._graph gives its leaves). */
static int a_tensor_key(lua_State *L) {
  lua_pushlightuserdata(L, lcnn_check(L, 1, "graph"));
  return 1;
}

void lcnn_open_autograd(lua_State *L, int methods) {
  static const luaL_Reg m[] = {
      {"requires_grad_", a_requires_grad_}, {"detach", a_detach}, {"backward", a_backward}, {NULL, NULL}};
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, m, 0);
  lua_pop(L, 1);
  static const luaL_Reg mod[] = {{"set_grad_enabled", a_set_grad_enabled},
                                 {"is_grad_enabled", a_is_grad_enabled},
                                 {"_function_record", a_function_record},
                                 {"_set_backward_callbacks", a_set_backward_callbacks},
                                 {"_graph", a_graph},
                                 {"_tensor_key", a_tensor_key},
                                 {"_saved_copy", a_saved_copy},
                                 {"_is_saved_copy", a_is_saved_copy},
                                 {NULL, NULL}};
  luaL_setfuncs(L, mod, 0);
}
