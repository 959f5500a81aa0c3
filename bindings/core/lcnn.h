/* Internal to the bindings: tensor userdata, argument checking and the error road into Lua.
 * A tensor userdata is a box holding one reference to a cnn_tensor (NULL once closed). Every
 * raise goes through lcnn_error / lcnn_fail, which prefix the user-facing function's name.
 *
 * Two rules keep every binding safe against what Lua code can do in the middle of a call:
 * - No C reference is held across a raise (a raise does not return): numbers become 0-d tensors
 *   anchored on the Lua stack (lcnn_operand), never C-owned temporaries.
 * - Tensor pointers are taken LAST, after everything that can run Lua code: option and list
 *   lookups (lua_getfield / lua_geti / luaL_len call metamethods) and allocations of Lua objects
 *   (which can run finalizers). Such code may close a tensor or drop the last reference to one a
 *   metamethod returned. Every tensor a binding uses is anchored on the stack (an argument, or a
 *   value left on the stack by the lookup that produced it), and between taking its pointer and
 *   the runtime call that uses it a binding runs no Lua code. */
#ifndef LCNN_H
#define LCNN_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>

#include "cnn/tensor.h"

#define LCNN_TENSOR "cnn.Tensor"

/* ---- errors (lopts.c) ----
 * Raise "<where>fn: <formatted message>", <where> being the calling Lua line; the _plain forms
 * leave the position out (for C functions whose Lua wrapper re-raises at its caller's line). fail
 * raises the runtime's last error message. None returns. */
int lcnn_error(lua_State *L, const char *fn, const char *fmt, ...);
int lcnn_error_plain(lua_State *L, const char *fn, const char *fmt, ...);
int lcnn_fail(lua_State *L, const char *fn);
int lcnn_fail_plain(lua_State *L, const char *fn);
/* The public name to report for internal functions that take it as an argument: the string at
 * idx, else def. */
const char *lcnn_who(lua_State *L, int idx, const char *def);

/* The tensor at idx, or a raise naming fn and the argument ("argument 2 is a closed tensor" for
 * a closed one). Borrowed, valid while the value stays at idx and no Lua code runs. */
cnn_tensor *lcnn_check(lua_State *L, int idx, const char *fn);
/* The box of the tensor at idx (a closed one too: *box is then NULL), or NULL when the value is not
 * a tensor: luaL_testudata(L, idx, LCNN_TENSOR) without its lookup of the metatable by name (the
 * metatable also sits in the registry under a C address, see lcnn_box_metatable). */
cnn_tensor **lcnn_testbox(lua_State *L, int idx);
/* Sets the tensor metatable on the userdata at the top of the stack (luaL_setmetatable's work). */
void lcnn_box_metatable(lua_State *L);
cnn_tensor *lcnn_test(lua_State *L, int idx); /* NULL when not a (live) tensor */
/* What the value at idx is, for messages: its type name, or "a closed tensor". */
const char *lcnn_typename(lua_State *L, int idx);
/* The number at idx as a message shows it: Lua's own text (2.5, 2.0), but "nan" for any NaN, never
 * "-nan" (see cnn_error_num). */
const char *lcnn_number_str(lua_State *L, int idx);
/* Replaces a number or a boolean at idx by a wrapped 0-d tensor (one that promotes as PyTorch's
 * Python scalars, see cnn_dtype_result): a boolean bool, an integer int64 (exact) unless int_dtype
 * is CNN_FLOAT32 (then float32), a float float32. Anything else is left alone. Allocates: call it
 * before taking tensor pointers. */
void lcnn_anchor_number(lua_State *L, int idx, const char *fn, cnn_dtype int_dtype);
/* A non-integer number at idx that is to become a float32 value (dt float32): a finite one past
 * float's range raises "fn: value V cannot be converted to type float without overflow", as PyTorch's
 * fill, full, clamp and uniform_ do (inf and NaN pass; arithmetic operands are not checked). */
void lcnn_check_float_value(lua_State *L, int idx, const char *fn, cnn_dtype dt);
/* An integer at idx that is to become a uint8 value (dt uint8) where PyTorch checks it (a where
 * operand, an alpha): past -255..255 raises "fn: value V cannot be converted to type uint8 without
 * overflow" (-255..-1 wrap, as PyTorch's do). Plain arithmetic operands wrap in both (u + 300). */
void lcnn_check_u8_value(lua_State *L, int idx, const char *fn, cnn_dtype dt);
/* lcnn_anchor_number, then the tensor at idx (borrowed). Raises "expected a tensor, a number or a
 * boolean". */
cnn_tensor *lcnn_operand(lua_State *L, int idx, const char *fn, cnn_dtype int_dtype);
/* Pushes t (taking its reference) or, when t is NULL, raises the runtime's error. Nudges the
 * garbage collector when tensor memory has grown a lot since the last collection. */
void lcnn_push(lua_State *L, cnn_tensor *t, const char *fn);
void lcnn_push_or_nil(lua_State *L, cnn_tensor *t); /* t borrowed; retained when pushed */

/* A 1-based dim argument (negative counts from the end) as 0-based/negative C form. */
int lcnn_dim(lua_State *L, int idx, const char *fn, int ndim, int insertion);
/* A shape from varargs starting at idx (integers) or one table; returns ndim, *next = index of
 * the first argument after the shape. allow_infer admits one -1. */
int lcnn_shape(lua_State *L, int idx, const char *fn, int64_t *size, int *next, int allow_infer);
/* Raises "fn: takes no options table (argument k)" or "fn: takes n arguments, got m" when an
 * argument past the first n is given (trailing nils aside): an option or argument a function does
 * not read must not pass silently (t:div(x, {rounding_mode = "floor"}) gave true division). */
void lcnn_max_args(lua_State *L, int n, const char *fn);
/* ---- options (lopts.c): one way to read a trailing options table ----
 * lcnn_options raises "fn: unknown option 'k'" for a key of the table at idx not in known
 * (NULL-ended); it does nothing when idx is none or nil and raises when it is not a table. The
 * lcnn_opt_* readers give field key of the table at idx, or def when the table or the field is
 * absent; a field of another type raises "fn: key must be a number, got string". The lcnn_arg_*
 * readers do the same for the value at idx itself (a positional argument named `what`). Strings
 * and tensors are borrowed from the table or the stack. lcnn_opt_field pushes the field (nil
 * without a table) and returns its type, for fields of a shape of their own. */
void lcnn_options(lua_State *L, int idx, const char *fn, const char *const *known);
int lcnn_opt_field(lua_State *L, int idx, const char *key);
lua_Number lcnn_opt_number(lua_State *L, int idx, const char *fn, const char *key, lua_Number def);
lua_Integer lcnn_opt_integer(lua_State *L, int idx, const char *fn, const char *key, lua_Integer def);
bool lcnn_opt_boolean(lua_State *L, int idx, const char *fn, const char *key, bool def);
const char *lcnn_opt_string(lua_State *L, int idx, const char *fn, const char *key, const char *def);
cnn_tensor *lcnn_opt_tensor(lua_State *L, int idx, const char *fn, const char *key); /* NULL when absent */
cnn_dtype lcnn_opt_dtype(lua_State *L, int idx, const char *fn, cnn_dtype def);      /* field "dtype" */
bool lcnn_opt_dtype_at(lua_State *L, int idx, const char *fn, cnn_dtype *out);       /* true when given */
lua_Number lcnn_arg_number(lua_State *L, int idx, const char *fn, const char *what, lua_Number def);
lua_Integer lcnn_arg_integer(lua_State *L, int idx, const char *fn, const char *what, lua_Integer def);
bool lcnn_arg_boolean(lua_State *L, int idx, const char *fn, const char *what, bool def);
const char *lcnn_arg_string(lua_State *L, int idx, const char *fn, const char *what, const char *def);
cnn_tensor *lcnn_arg_tensor(lua_State *L, int idx, const char *fn, const char *what); /* NULL when none/nil */
/* The dtype a name gives ("float32"/"float", "int64"/"long", "uint8"/"byte", "bool"): 0, or -1. */
int lcnn_dtype_named(const char *s, cnn_dtype *out);
/* Pushes element `at` (0-based multi-index) of t: a number, an integer (int64, uint8) or a boolean. */
void lcnn_push_element(lua_State *L, const cnn_tensor *t, const int64_t *at);

/* Registration of the parts (ltensor.c, lautograd.c, lfactory.c). Each adds to the module
 * table at the top of the stack; tensor methods go into the methods table at `methods`. */
void lcnn_open_tensor(lua_State *L, int methods);
void lcnn_open_math(lua_State *L, int methods);
void lcnn_open_autograd(lua_State *L, int methods);
void lcnn_open_index(lua_State *L, int methods); /* gather, scatter, cumsum, sort (lindex.c) */
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
