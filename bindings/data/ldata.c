/* The data pipeline's C half for Lua (core.data.*, internal: scripts/cnn/data.lua and image.lua
 * wrap them): transform pipelines built from spec tables and run on tensors, image resizing, and
 * the parameter sampling of random_resized_crop for the specs. Functions take the public name as
 * an argument and raise "name: problem" without a position, so the Lua wrapper re-raises at its
 * caller's line. */
#include "lcnn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/error.h"
#include "cnn/rng.h"
#include "cnn/kernels/resize.h"
#include "cnn/transforms.h"

#define LDATA_PIPELINE "cnn.Pipeline"

static int data_error(lua_State *L, const char *who, const char *fmt, ...) {
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lua_pushfstring(L, "%s: %s", who, msg);
  return lua_error(L);
}

static int data_fail(lua_State *L, const char *who) {
  const char *m = cnn_error_get();
  return data_error(L, who, "%s", m[0] ? m : "failed");
}

static const char *who_at(lua_State *L, int idx, const char *def) {
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : def;
}

/* ---- spec tables -> cnn_tf ---- */

/* Up to max numbers of field `key` of the table at idx (a number counts as a list of one); returns
 * how many, 0 when the field is nil. */
static int numbers(lua_State *L, int idx, const char *key, double *out, int max, const char *who) {
  lua_getfield(L, idx, key);
  int n = 0;
  if (lua_type(L, -1) == LUA_TNUMBER) {
    out[0] = lua_tonumber(L, -1);
    n = 1;
  } else if (lua_istable(L, -1)) {
    n = (int)lua_rawlen(L, -1);
    if (n > max) data_error(L, who, "%s has %d values, at most %d allowed", key, n, max);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TNUMBER) data_error(L, who, "%s[%d] is not a number", key, i);
      out[i - 1] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    data_error(L, who, "%s must be a number or a list of numbers", key);
  }
  lua_pop(L, 1);
  return n;
}

static double number(lua_State *L, int idx, const char *key, double def, const char *who) {
  double v = def;
  numbers(L, idx, key, &v, 1, who);
  return v;
}

static bool boolean(lua_State *L, int idx, const char *key, bool def) {
  lua_getfield(L, idx, key);
  bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Integers from a spec field into int64s; 0 when absent. */
static int integers(lua_State *L, int idx, const char *key, int64_t *out, int max, const char *who) {
  double v[4];
  int n = numbers(L, idx, key, v, max, who);
  for (int i = 0; i < n; i++) {
    if (v[i] != floor(v[i]) || fabs(v[i]) > 9.0e15) data_error(L, who, "%s must hold integers", key);
    out[i] = (int64_t)v[i];
  }
  return n;
}

static cnn_interp interp_field(lua_State *L, int idx, const char *def, const char *who) {
  lua_getfield(L, idx, "interpolation");
  const char *m = lua_isnil(L, -1) ? def : lua_tostring(L, -1);
  if (!m) data_error(L, who, "interpolation must be a string");
  cnn_interp r;
  if (strcmp(m, "bilinear") == 0) r = CNN_INTERP_BILINEAR;
  else if (strcmp(m, "bicubic") == 0) r = CNN_INTERP_BICUBIC;
  else if (strcmp(m, "nearest") == 0) r = CNN_INTERP_NEAREST;
  else
    return (cnn_interp)data_error(L, who, "interpolation must be \"bilinear\", \"bicubic\" or \"nearest\", got \"%s\"",
                                  m);
  lua_pop(L, 1);
  return r;
}

static const struct {
  const char *name;
  cnn_tf_kind kind;
} KINDS[] = {
    {"resize", CNN_TF_RESIZE},
    {"center_crop", CNN_TF_CENTER_CROP},
    {"crop", CNN_TF_CROP},
    {"resized_crop", CNN_TF_RESIZED_CROP},
    {"random_crop", CNN_TF_RANDOM_CROP},
    {"random_resized_crop", CNN_TF_RANDOM_RESIZED_CROP},
    {"hflip", CNN_TF_HFLIP},
    {"vflip", CNN_TF_VFLIP},
    {"random_hflip", CNN_TF_RANDOM_HFLIP},
    {"random_vflip", CNN_TF_RANDOM_VFLIP},
    {"adjust_brightness", CNN_TF_BRIGHTNESS},
    {"adjust_contrast", CNN_TF_CONTRAST},
    {"adjust_saturation", CNN_TF_SATURATION},
    {"adjust_hue", CNN_TF_HUE},
    {"color_jitter", CNN_TF_COLOR_JITTER},
    {"rotate", CNN_TF_ROTATE},
    {"random_rotation", CNN_TF_RANDOM_ROTATION},
    {"grayscale", CNN_TF_GRAYSCALE},
    {"random_grayscale", CNN_TF_RANDOM_GRAYSCALE},
    {"normalize", CNN_TF_NORMALIZE},
};

/* The spec table at idx as an operation (checked with cnn_tf_check). */
static void parse_spec(lua_State *L, int idx, cnn_tf *op, const char *who) {
  memset(op, 0, sizeof *op);
  lua_getfield(L, idx, "kind");
  const char *kind = lua_tostring(L, -1);
  bool found = false;
  for (size_t i = 0; kind && i < sizeof KINDS / sizeof KINDS[0]; i++)
    if (strcmp(kind, KINDS[i].name) == 0) {
      op->kind = KINDS[i].kind;
      found = true;
    }
  if (!found) data_error(L, who, "unknown transform kind '%s'", kind ? kind : "?");
  lua_pop(L, 1);
  op->nsize = integers(L, idx, "size", op->size, 2, who);
  if (op->nsize == 1 && op->kind != CNN_TF_RESIZE) op->size[1] = op->size[0];
  integers(L, idx, "max_size", &op->max_size, 1, who);
  if (integers(L, idx, "box", op->box, 4, who) != 4 && (op->kind == CNN_TF_CROP || op->kind == CNN_TF_RESIZED_CROP))
    data_error(L, who, "a crop needs top, left, height and width");
  integers(L, idx, "pad", op->pad, 2, who);
  op->fill_value = number(L, idx, "fill_value", 0, who);
  op->interp = interp_field(
      L, idx, op->kind == CNN_TF_ROTATE || op->kind == CNN_TF_RANDOM_ROTATION ? "nearest" : "bilinear", who);
  op->antialias = boolean(L, idx, "antialias", true);
  op->scale[0] = 0.08, op->scale[1] = 1.0;
  numbers(L, idx, "scale", op->scale, 2, who);
  op->ratio[0] = 3.0 / 4.0, op->ratio[1] = 4.0 / 3.0;
  numbers(L, idx, "ratio", op->ratio, 2, who);
  op->p = number(L, idx, "p", 0.5, who);
  op->factor = number(L, idx, "factor", 1.0, who);
  static const char *const jitter[4] = {"brightness", "contrast", "saturation", "hue"};
  for (int k = 0; k < 4; k++) op->on[k] = numbers(L, idx, jitter[k], op->range[k], 2, who) == 2;
  if (numbers(L, idx, "degrees", op->degrees, 2, who) == 1) op->degrees[1] = op->degrees[0];
  op->expand = boolean(L, idx, "expand", false);
  op->has_center = numbers(L, idx, "center", op->center, 2, who) == 2;
  double fill[CNN_TF_MAX_CHANNELS];
  op->nfill = numbers(L, idx, "fill", fill, CNN_TF_MAX_CHANNELS, who);
  for (int i = 0; i < op->nfill; i++) op->fill[i] = (float)fill[i];
  op->channels = (int)number(L, idx, "channels", 1, who);
  double mean[CNN_TF_MAX_CHANNELS], std[CNN_TF_MAX_CHANNELS];
  op->nmean = numbers(L, idx, "mean", mean, CNN_TF_MAX_CHANNELS, who);
  op->nstd = numbers(L, idx, "std", std, CNN_TF_MAX_CHANNELS, who);
  for (int i = 0; i < op->nmean; i++) op->mean[i] = (float)mean[i];
  for (int i = 0; i < op->nstd; i++) op->std[i] = (float)std[i];
  if (cnn_tf_check(op)) data_fail(L, who);
}

/* ---- pipelines ---- */

typedef struct {
  int n;
  cnn_tf ops[];
} pipeline;

/* pipeline({spec, ...}, who) -> a pipeline userdata */
static int d_pipeline(lua_State *L) {
  const char *who = who_at(L, 2, "transform");
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 1);
  pipeline *p = lua_newuserdatauv(L, sizeof(pipeline) + sizeof(cnn_tf) * (size_t)n, 0);
  p->n = 0;
  luaL_setmetatable(L, LDATA_PIPELINE);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!lua_istable(L, -1)) return data_error(L, who, "spec %d is not a table", i);
    parse_spec(L, lua_gettop(L), &p->ops[i - 1], who);
    lua_pop(L, 1);
    p->n = i;
  }
  return 1;
}

/* pipeline_apply(pipeline, x, who) -> the transformed image or batch */
static int d_pipeline_apply(lua_State *L) {
  const char *who = who_at(L, 3, "transform");
  pipeline *p = luaL_checkudata(L, 1, LDATA_PIPELINE);
  cnn_tensor *x = lcnn_test(L, 2);
  if (!x) return data_error(L, who, "expected a tensor, got %s", luaL_typename(L, 2));
  cnn_tensor *y = cnn_tf_apply(p->ops, p->n, x);
  if (!y) return data_fail(L, who);
  lcnn_push(L, y, who);
  return 1;
}

/* resize(x, spec, who) -> x resized over its last two dimensions (x itself when the size stays) */
static int d_resize(lua_State *L) {
  const char *who = who_at(L, 3, "resize");
  cnn_tensor *x = lcnn_test(L, 1);
  if (!x) return data_error(L, who, "expected a tensor, got %s", luaL_typename(L, 1));
  luaL_checktype(L, 2, LUA_TTABLE);
  cnn_tf op;
  parse_spec(L, 2, &op, who);
  if (x->dtype != CNN_FLOAT32 || x->ndim < 2)
    return data_error(L, who, "expected a float32 tensor (..., H, W), got a %d-d %s one", x->ndim,
                      cnn_dtype_name(x->dtype));
  int64_t h = x->size[x->ndim - 2], w = x->size[x->ndim - 1], oh, ow;
  if (h < 1 || w < 1) return data_error(L, who, "cannot resize an empty %lldx%lld image", (long long)h, (long long)w);
  cnn_tf_resize_size(h, w, &op, &oh, &ow);
  if (oh == h && ow == w) {
    lua_settop(L, 1);
    return 1;
  }
  cnn_tensor *c = cnn_tensor_contiguous(x);
  if (!c) return data_fail(L, who);
  int64_t size[CNN_MAX_DIMS];
  memcpy(size, x->size, sizeof(int64_t) * (size_t)x->ndim);
  size[x->ndim - 2] = oh;
  size[x->ndim - 1] = ow;
  cnn_tensor *y = cnn_tensor_empty(CNN_FLOAT32, x->ndim, size);
  int64_t planes = cnn_tensor_numel(x) / (h * w); /* h, w >= 1 */
  if (!y || cnn_resize(cnn_tensor_f32(c), planes, h * w, w, h, w, cnn_tensor_f32(y), oh, ow, op.interp, op.antialias)) {
    cnn_tensor_release(c);
    cnn_tensor_release(y);
    return data_fail(L, who);
  }
  cnn_tensor_release(c);
  lcnn_push(L, y, who);
  return 1;
}

/* random_resized_crop_box(h, w, {scale}, {ratio}, seed) -> top, left, height, width (0-based top) */
static int d_rrc_box(lua_State *L) {
  const char *who = "random_resized_crop";
  lua_Integer h = luaL_checkinteger(L, 1), w = luaL_checkinteger(L, 2);
  if (h < 1 || w < 1)
    return data_error(L, who, "image size must be positive, got %lldx%lld", (long long)h, (long long)w);
  lua_newtable(L);
  lua_pushstring(L, "random_resized_crop");
  lua_setfield(L, -2, "kind");
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "size");
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "scale");
  lua_pushvalue(L, 4);
  lua_setfield(L, -2, "ratio");
  cnn_tf op;
  parse_spec(L, lua_gettop(L), &op, who);
  cnn_rng g;
  cnn_rng_seed(&g, (uint64_t)luaL_checkinteger(L, 5));
  int64_t box[4];
  cnn_tf_random_resized_crop_box(h, w, op.scale, op.ratio, &g, box);
  for (int i = 0; i < 4; i++) lua_pushinteger(L, box[i]);
  return 4;
}

void lcnn_open_data(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {
      {"pipeline", d_pipeline},
      {"pipeline_apply", d_pipeline_apply},
      {"resize", d_resize},
      {"random_resized_crop_box", d_rrc_box},
      {NULL, NULL},
  };
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, tbl, r->name);
  }
  luaL_newmetatable(L, LDATA_PIPELINE);
  lua_pop(L, 1);
}
