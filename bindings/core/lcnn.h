/* Internal to the bindings: tensor userdata, argument checking and the error road into Lua.
 * A tensor userdata is a box holding one reference to a cnn_tensor (NULL once closed). Every
 * raise goes through lcnn_error / lcnn_fail, which prefix the user-facing function's name; C
 * references held by a binding must be released before it raises (a raise does not return). */
#ifndef LCNN_H
#define LCNN_H

#include <lauxlib.h>
#include <lua.h>

#include "cnn/tensor.h"

#define LCNN_TENSOR "cnn.Tensor"

/* Raise "<where>fn: <formatted message>". */
int lcnn_error(lua_State *L, const char *fn, const char *fmt, ...);
/* Raise "fn: <the runtime's last error message>". */
int lcnn_fail(lua_State *L, const char *fn);

/* The tensor at idx, or a raise naming fn and the argument. Borrowed. */
cnn_tensor *lcnn_check(lua_State *L, int idx, const char *fn);
cnn_tensor *lcnn_test(lua_State *L, int idx); /* NULL when not a (live) tensor */
/* A tensor or a number at idx, as a new reference; numbers become 0-d tensors (int64 when the
 * number is a Lua integer and `like` is int64, else float32). */
cnn_tensor *lcnn_operand(lua_State *L, int idx, const char *fn, const cnn_tensor *like);
/* Pushes t (taking its reference) or, when t is NULL, raises the runtime's error. Nudges the
 * garbage collector when tensor memory has grown a lot since the last collection. */
void lcnn_push(lua_State *L, cnn_tensor *t, const char *fn);
void lcnn_push_or_nil(lua_State *L, cnn_tensor *t); /* t borrowed; retained when pushed */

/* A 1-based dim argument (negative counts from the end) as 0-based/negative C form. */
int lcnn_dim(lua_State *L, int idx, const char *fn, int ndim, int insertion);
/* A shape from varargs starting at idx (integers) or one table; returns ndim, *next = index of
 * the first argument after the shape. allow_infer admits one -1. */
int lcnn_shape(lua_State *L, int idx, const char *fn, int64_t *size, int *next, int allow_infer);
/* Raises "fn: unknown option 'k'" for a key of the options table at idx not in known (NULL-ended).
 * Does nothing when idx is none or nil; raises when it is not a table. */
void lcnn_options(lua_State *L, int idx, const char *fn, const char *const *known);
/* Option helpers: the field of the options table at idx, or the default. */
int lcnn_opt_bool(lua_State *L, int idx, const char *key, int def);
cnn_dtype lcnn_opt_dtype(lua_State *L, int idx, const char *fn, cnn_dtype def);

/* Registration of the parts (ltensor.c, lautograd.c, lfactory.c). Each adds to the module
 * table at the top of the stack; tensor methods go into the methods table at `methods`. */
void lcnn_open_tensor(lua_State *L, int methods);
void lcnn_open_math(lua_State *L, int methods);
void lcnn_open_autograd(lua_State *L, int methods);
void lcnn_open_factory(lua_State *L);
/* Later parts register into sub-tables of the module: core.F (functional ops, lconv.c and
 * lfunctional.c), core.optim_kernels (loptim.c), core.io (lio.c: IDX, PNG, safetensors). The
 * table is at index `tbl`. */
void lcnn_open_conv(lua_State *L, int tbl);
void lcnn_open_functional(lua_State *L, int tbl);
void lcnn_open_optim(lua_State *L, int tbl);
void lcnn_open_io(lua_State *L, int tbl);
void lcnn_open_canvas(lua_State *L, int tbl);  /* core.canvas: drawing primitives (lcanvas.c) */
void lcnn_open_dist(lua_State *L, int tbl);    /* core.dist: collectives (ldist.c) */
void lcnn_open_process(lua_State *L, int tbl); /* core.process: fork, spawn, wait (lprocess.c) */
void lcnn_open_data(lua_State *L, int tbl);    /* core.data: transform pipelines, resizing, loaders (ldata.c) */

int luaopen_cnn_core(lua_State *L);

#endif
