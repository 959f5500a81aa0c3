/* Convolution and pooling for Lua: core.F.conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d
 * (cnn.F.*). Options are checked against their known keys; a number where a pair is expected means
 * both; indices returned to Lua are 1-based. Every C reference is released before a raise. */
#include "lcnn.h"

#include <string.h>

#include "core/checked.h"
#include "cnn/error.h"
#include "cnn/ops_conv.h"

/* An integer at the top of the stack, or a raise naming fn and what. */
static int64_t int_at_top(lua_State *L, const char *fn, const char *what) {
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint)
    lcnn_error(L, fn, "%s must be an integer or a pair of integers, got %s", what,
               lua_type(L, -1) == LUA_TNUMBER ? lcnn_number_str(L, -1) : luaL_typename(L, -1));
  return (int64_t)v;
}

/* The value at idx as a pair: a number means both, a table holds two. */
static void pair_at(lua_State *L, int idx, const char *fn, const char *what, int64_t out[2]) {
  idx = lua_absindex(L, idx);
  if (lua_istable(L, idx)) {
    if (luaL_len(L, idx) != 2)
      lcnn_error(L, fn, "%s must be an integer or a pair of integers, got a table of %d", what, (int)luaL_len(L, idx));
    for (int i = 0; i < 2; i++) {
      lua_rawgeti(L, idx, i + 1);
      out[i] = int_at_top(L, fn, what);
      lua_pop(L, 1);
    }
    return;
  }
  lua_pushvalue(L, idx);
  out[0] = out[1] = int_at_top(L, fn, what);
  lua_pop(L, 1);
}

/* opts[key] as a pair, or def (both) when absent. */
static void pair_opt(lua_State *L, int opts, const char *fn, const char *key, int64_t def, int64_t out[2]) {
  out[0] = out[1] = def;
  if (lcnn_opt_field(L, opts, key) != LUA_TNIL) pair_at(L, -1, fn, key, out);
  lua_pop(L, 1);
}

/* ---- conv2d(x, w, b, {stride=1, padding=0, dilation=1, groups=1}) ---- */

/* opts.relu_max_pool (a table at index t, absolute): max_pool2d's kernel_size, stride, padding,
 * dilation and ceil_mode, as F.max_pool2d takes them */
static void relu_max_pool_params(lua_State *L, int t, const char *fn, cnn_pool2d_params *pp) {
  static const char *const known[] = {"kernel_size", "stride", "padding", "dilation", "ceil_mode", NULL};
  if (!lua_istable(L, t)) lcnn_error(L, fn, "relu_max_pool must be a table of max_pool2d's options");
  lcnn_options(L, t, fn, known);
  *pp = cnn_pool2d_default_params(1);
  if (lcnn_opt_field(L, t, "kernel_size") == LUA_TNIL) lcnn_error(L, fn, "relu_max_pool needs a kernel_size");
  lua_pop(L, 1);
  pair_opt(L, t, fn, "kernel_size", 1, pp->kernel);
  bool has_stride = lcnn_opt_field(L, t, "stride") != LUA_TNIL;
  lua_pop(L, 1);
  if (has_stride) pair_opt(L, t, fn, "stride", 1, pp->stride);
  else pp->stride[0] = pp->kernel[0], pp->stride[1] = pp->kernel[1];
  pair_opt(L, t, fn, "padding", 0, pp->padding);
  pair_opt(L, t, fn, "dilation", 1, pp->dilation);
  pp->ceil_mode = lcnn_opt_boolean(L, t, fn, "ceil_mode", false);
}

/** cnn.F.conv2d(x, weight, bias, {stride=1, padding=0, dilation=1, groups=1, relu=false,
 *   relu_max_pool=nil}) -> Tensor
 * 2-d convolution (cross-correlation, as PyTorch's): x (N, C, H, W) -> (N, O, oh, ow).
 * weight is (O, C/groups, kh, kw), bias (O) or nil (or leave it out: `F.conv2d(x, w, {stride=2})`).
 * stride, padding and dilation are a number or a pair {h, w}; padding may also be "valid" (0) or
 * "same" (stride 1 only; an odd total padding puts the extra row and column after).
 * oh = floor((H + 2 * padding - dilation * (kh - 1) - 1) / stride) + 1, and likewise ow.
 * float32, or int64 throughout (an exact integer convolution, as PyTorch's; no gradients).
 * relu=true returns F.relu(y) made in the same pass (NaN stays NaN); scale (a float32 (O)
 * vector) multiplies output channel o by scale[o] before the bias is added, and residual (a float32
 * tensor of the output's shape) is added before the ReLU:
 * y = relu(scale * conv(x, weight) + bias + residual),
 * a convolution followed by an eval-mode BatchNorm and a residual connection in one pass, with no
 * folded copy of the weights. These three are for inference only: an error when an input
 * requires a gradient and grad mode is on. relu_max_pool={kernel_size=k, stride=k, padding=0,
 * dilation=1, ceil_mode=false} (without those three) returns F.max_pool2d(F.relu(y), k, {...})
 * in one parallel pass and one graph node (ConvReluMaxPool2DBackward), with the same values and
 * gradients (nn.Sequential runs a Conv2d, ReLU, MaxPool2d so): LeNet's layers (stride 1, small
 * planes, a 2x2/stride-2 pool, 12 images or more) are pooled as they are computed and y is never
 * stored; others pool each image as soon as its convolution is stored. */
static int f_conv2d(lua_State *L) {
  static const char *const known[] = {"stride", "padding",  "dilation",      "groups", "relu",
                                      "scale",  "residual", "relu_max_pool", NULL};
  const char *fn = "conv2d";
  bool has_bias = lcnn_testbox(L, 3) != NULL;
  int opts = 4;
  if (!has_bias) {
    if (lua_istable(L, 3) && lua_isnoneornil(L, 4)) opts = 3; /* F.conv2d(x, w, {stride=2}): no bias */
    else if (!lua_isnoneornil(L, 3))
      return lcnn_error(L, fn, "expected a tensor or nil for the bias (argument 3), got %s", luaL_typename(L, 3));
  }
  /* options first: their lookups may run Lua code, which must not run once we hold pointers */
  lcnn_options(L, opts, fn, known);
  cnn_conv2d_params p = cnn_conv2d_default_params();
  pair_opt(L, opts, fn, "stride", 1, p.stride);
  pair_opt(L, opts, fn, "dilation", 1, p.dilation);
  bool relu = lcnn_opt_boolean(L, opts, fn, "relu", false);
  cnn_pool2d_params pp;
  bool pool = lua_istable(L, opts) && lcnn_opt_field(L, opts, "relu_max_pool") != LUA_TNIL;
  if (pool) {
    if (relu) return lcnn_error(L, fn, "relu=true and relu_max_pool cannot be combined");
    relu_max_pool_params(L, lua_gettop(L), fn, &pp);
  }
  if (lua_istable(L, opts)) lua_pop(L, 1); /* the relu_max_pool field */
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "groups");
    if (!lua_isnil(L, -1)) {
      int isint;
      lua_Integer g = lua_tointegerx(L, -1, &isint);
      if (!isint) return lcnn_error(L, fn, "groups must be an integer, got %s", luaL_typename(L, -1));
      p.groups = (int64_t)g;
    }
    lua_pop(L, 1);
  }
  bool same = false;
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "padding");
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *s = lua_tostring(L, -1);
      if (strcmp(s, "same") == 0) same = true;
      else if (strcmp(s, "valid") != 0)
        return lcnn_error(L, fn, "padding must be an integer, a pair, \"same\" or \"valid\", got \"%s\"", s);
    } else if (!lua_isnil(L, -1)) {
      pair_at(L, -1, fn, "padding", p.pad_lo);
      p.pad_hi[0] = p.pad_lo[0], p.pad_hi[1] = p.pad_lo[1];
    }
    lua_pop(L, 1);
  }
  cnn_tensor *scale = lcnn_opt_tensor(L, opts, fn, "scale"), *residual = lcnn_opt_tensor(L, opts, fn, "residual");
  if (pool && (scale || residual)) return lcnn_error(L, fn, "relu_max_pool cannot be combined with scale or residual");
  cnn_tensor *x = lcnn_check(L, 1, fn), *w = lcnn_check(L, 2, fn), *b = has_bias ? lcnn_check(L, 3, fn) : NULL;
  if (same) {
    if (p.stride[0] != 1 || p.stride[1] != 1)
      return lcnn_error(L, fn, "padding=\"same\" is not supported for strided convolutions");
    if (w->ndim == 4 && p.dilation[0] >= 1 && p.dilation[1] >= 1) {
      /* PyTorch's rule: total d*(k-1), the odd one out goes after */
      for (int i = 0; i < 2; i++) {
        int64_t total;
        if (!cnn_mul_ok(p.dilation[i], w->size[2 + i] - 1, &total))
          return lcnn_error(L, fn, "padding=\"same\" with dilation %lld and kernel size %lld overflows",
                            (long long)p.dilation[i], (long long)w->size[2 + i]);
        p.pad_lo[i] = total / 2, p.pad_hi[i] = total - total / 2;
      }
    }
  }
  lcnn_push(L,
            pool                        ? cnn_op_conv2d_relu_max_pool2d(x, w, b, &p, &pp)
            : relu || scale || residual ? cnn_op_conv2d_fused(x, w, b, scale, residual, relu, &p)
                                        : cnn_op_conv2d(x, w, b, &p),
            fn);
  return 1;
}

/* ---- pooling ---- */

/* The kernel argument (number or pair) and the options shared by both pools. */
static void pool_params(lua_State *L, const char *fn, bool is_max, cnn_pool2d_params *p) {
  static const char *const known_max[] = {"stride", "padding", "dilation", "ceil_mode", "return_indices", "relu", NULL};
  static const char *const known_avg[] = {"stride",           "padding", "ceil_mode", "count_include_pad",
                                          "divisor_override", NULL};
  if (lua_isnoneornil(L, 2)) lcnn_error(L, fn, "expected a kernel size (an integer or a pair) for argument 2");
  *p = cnn_pool2d_default_params(1);
  pair_at(L, 2, fn, "kernel size", p->kernel);
  lcnn_options(L, 3, fn, is_max ? known_max : known_avg);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "stride");
    bool has_stride = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has_stride) pair_opt(L, 3, fn, "stride", 1, p->stride);
    else p->stride[0] = p->kernel[0], p->stride[1] = p->kernel[1];
  } else {
    p->stride[0] = p->kernel[0], p->stride[1] = p->kernel[1];
  }
  pair_opt(L, 3, fn, "padding", 0, p->padding);
  if (is_max) pair_opt(L, 3, fn, "dilation", 1, p->dilation);
  p->ceil_mode = lcnn_opt_boolean(L, 3, fn, "ceil_mode", false);
  if (!is_max) {
    p->count_include_pad = lcnn_opt_boolean(L, 3, fn, "count_include_pad", true);
    if (lua_istable(L, 3)) {
      lua_getfield(L, 3, "divisor_override");
      if (!lua_isnil(L, -1)) {
        int isint;
        lua_Integer d = lua_tointegerx(L, -1, &isint);
        if (!isint || d < 1) lcnn_error(L, fn, "divisor_override must be a positive integer");
        p->divisor = (int64_t)d;
      }
      lua_pop(L, 1);
    }
  }
}

/** cnn.F.max_pool2d(x, kernel_size, {stride=kernel_size, padding=0, dilation=1, ceil_mode=false,
 *   return_indices=false, relu=false}) -> Tensor
 * The maximum of each kernel_size window of x (N, C, H, W) or (C, H, W).
 * Sizes are a number or a pair {h, w}; padding counts as -infinity. ceil_mode rounds the output size
 * up. With return_indices=true also returns, for each output, the 1-based position of its maximum in
 * its input plane (row-major over H x W), as an int64 tensor; a window whose dilated taps all fall
 * in the padding (x smaller than the dilation) gives -inf and index 0, where PyTorch gives a
 * position outside the plane. {relu=true} returns F.max_pool2d(F.relu(x)) in one pass each way (one
 * MaxPool2DReluBackward node, same values and gradients; no indices): F.relu of the result, but a
 * window of padding alone stays -inf. */
static int f_max_pool2d(lua_State *L) {
  const char *fn = "max_pool2d";
  cnn_pool2d_params p;
  pool_params(L, fn, true, &p);
  bool want_idx = lcnn_opt_boolean(L, 3, fn, "return_indices", false);
  bool relu = lcnn_opt_boolean(L, 3, fn, "relu", false);
  if (relu && want_idx) return lcnn_error(L, fn, "relu=true returns no indices (return_indices must be false)");
  cnn_tensor *x = lcnn_check(L, 1, fn); /* after the options, whose lookups may run Lua code */
  if (relu) {
    lcnn_push(L, cnn_op_max_pool2d_relu(x, &p), fn);
    return 1;
  }
  cnn_tensor *idx = NULL;
  cnn_tensor *y = cnn_op_max_pool2d(x, &p, want_idx ? &idx : NULL);
  if (!want_idx || !y) {
    lcnn_push(L, y, fn);
    return 1;
  }
  /* a 1-based copy: the 0-based tensor is saved by the graph and must stay as it is */
  cnn_tensor *one = cnn_tensor_clone(idx);
  cnn_tensor_release(idx);
  if (!one) {
    cnn_tensor_release(y);
    return lcnn_fail(L, fn);
  }
  int64_t n = cnn_tensor_numel(one), *ip = cnn_tensor_i64(one);
  for (int64_t i = 0; i < n; i++) ip[i] += 1;
  lcnn_push(L, y, fn);
  lcnn_push(L, one, fn);
  return 2;
}

/** cnn.F.avg_pool2d(x, kernel_size, {stride=kernel_size, padding=0, ceil_mode=false, count_include_pad=true,
 *   divisor_override=}) -> Tensor
 * The mean of each kernel_size window of x (N, C, H, W) or (C, H, W).
 * count_include_pad=false leaves the zero padding out of each window's count; divisor_override (an
 * integer) replaces the count altogether. An int64 x gives int64: the sum divided, truncating toward
 * zero, as PyTorch. */
static int f_avg_pool2d(lua_State *L) {
  const char *fn = "avg_pool2d";
  cnn_pool2d_params p;
  pool_params(L, fn, false, &p);
  cnn_tensor *x = lcnn_check(L, 1, fn);
  lcnn_push(L, cnn_op_avg_pool2d(x, &p), fn);
  return 1;
}

/** cnn.F.adaptive_avg_pool2d(x, output_size) -> Tensor
 * Average pooling of x (N, C, H, W) to an output of output_size, a number or {oh, ow}.
 * Window i along a dimension of size n spans floor(i * n / out) .. ceil((i + 1) * n / out), as in
 * PyTorch: `F.adaptive_avg_pool2d(x, 1)` is a global average pool. */
static int f_adaptive_avg_pool2d(lua_State *L) {
  const char *fn = "adaptive_avg_pool2d";
  if (lua_isnoneornil(L, 2)) return lcnn_error(L, fn, "expected an output size (an integer or a pair) for argument 2");
  int64_t size[2];
  pair_at(L, 2, fn, "output size", size);
  if (size[0] < 0 || size[1] < 0)
    return lcnn_error(L, fn, "output size must be non-negative, got (%lld, %lld)", (long long)size[0],
                      (long long)size[1]);
  cnn_tensor *x = lcnn_check(L, 1, fn);
  lcnn_push(L, cnn_op_adaptive_avg_pool2d(x, size[0], size[1]), fn);
  return 1;
}

void lcnn_open_conv(lua_State *L, int tbl) {
  static const luaL_Reg f[] = {{"conv2d", f_conv2d},
                               {"max_pool2d", f_max_pool2d},
                               {"avg_pool2d", f_avg_pool2d},
                               {"adaptive_avg_pool2d", f_adaptive_avg_pool2d},
                               {NULL, NULL}};
  lua_pushvalue(L, tbl);
  luaL_setfuncs(L, f, 0);
  lua_pop(L, 1);
}
