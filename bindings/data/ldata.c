/* The data pipeline's C half for Lua (core.data.*, internal: scripts/cnn/data.lua and image.lua
 * wrap them): transform pipelines built from spec tables and run on tensors, image resizing, and
 * the parameter sampling of random_resized_crop for the specs. Functions take the public name as
 * an argument and raise "name: problem" without a position, so the Lua wrapper re-raises at its
 * caller's line. */
#include "lcnn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/error.h"
#include "cnn/rng.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "kernels/resize.h"

#define LDATA_PIPELINE "cnn.Pipeline"
#define LDATA_SOURCE "cnn.ImageSource"
#define LDATA_EPOCH "cnn.LoaderEpoch"

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
    if (n > max) lcnn_error_plain(L, who, "%s has %d values, at most %d allowed", key, n, max);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TNUMBER) lcnn_error_plain(L, who, "%s[%d] is not a number", key, i);
      out[i - 1] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    lcnn_error_plain(L, who, "%s must be a number or a list of numbers", key);
  }
  lua_pop(L, 1);
  return n;
}

static double number(lua_State *L, int idx, const char *key, double def, const char *who) {
  double v = def;
  numbers(L, idx, key, &v, 1, who);
  return v;
}

/* Integers from a spec field into int64s; 0 when absent. */
static int integers(lua_State *L, int idx, const char *key, int64_t *out, int max, const char *who) {
  double v[4];
  int n = numbers(L, idx, key, v, max, who);
  for (int i = 0; i < n; i++) {
    if (v[i] != floor(v[i])) lcnn_error_plain(L, who, "%s must hold integers", key);
    if (fabs(v[i]) > 9.0e15) lcnn_error_plain(L, who, "%s holds %.17g, out of range", key, v[i]);
    out[i] = (int64_t)v[i];
  }
  return n;
}

static cnn_interp interp_field(lua_State *L, int idx, const char *def, const char *who) {
  lua_getfield(L, idx, "interpolation");
  const char *m = lua_isnil(L, -1) ? def : lua_tostring(L, -1);
  if (!m) lcnn_error_plain(L, who, "interpolation must be a string");
  cnn_interp r;
  if (strcmp(m, "bilinear") == 0) r = CNN_INTERP_BILINEAR;
  else if (strcmp(m, "bicubic") == 0) r = CNN_INTERP_BICUBIC;
  else if (strcmp(m, "nearest") == 0) r = CNN_INTERP_NEAREST;
  else
    return (cnn_interp)lcnn_error_plain(
        L, who, "interpolation must be \"bilinear\", \"bicubic\" or \"nearest\", got \"%s\"", m);
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
  if (!found) lcnn_error_plain(L, who, "unknown transform kind '%s'", kind ? kind : "?");
  lua_pop(L, 1);
  op->nsize = integers(L, idx, "size", op->size, 2, who);
  if (op->nsize == 1 && op->kind != CNN_TF_RESIZE) op->size[1] = op->size[0];
  integers(L, idx, "max_size", &op->max_size, 1, who);
  if (integers(L, idx, "box", op->box, 4, who) != 4 && (op->kind == CNN_TF_CROP || op->kind == CNN_TF_RESIZED_CROP))
    lcnn_error_plain(L, who, "a crop needs top, left, height and width");
  integers(L, idx, "pad", op->pad, 2, who);
  op->fill_value = number(L, idx, "fill_value", 0, who);
  op->interp = interp_field(
      L, idx, op->kind == CNN_TF_ROTATE || op->kind == CNN_TF_RANDOM_ROTATION ? "nearest" : "bilinear", who);
  op->antialias = lcnn_opt_boolean(L, idx, who, "antialias", true);
  op->scale[0] = 0.08, op->scale[1] = 1.0;
  numbers(L, idx, "scale", op->scale, 2, who);
  op->ratio[0] = 3.0 / 4.0, op->ratio[1] = 4.0 / 3.0;
  numbers(L, idx, "ratio", op->ratio, 2, who);
  op->p = number(L, idx, "p", 0.5, who);
  op->factor = number(L, idx, "factor", 1.0, who);
  static const char *const jitter[4] = {"brightness", "contrast", "saturation", "hue"};
  for (int k = 0; k < 4; k++) op->on[k] = numbers(L, idx, jitter[k], op->range[k], 2, who) == 2;
  if (numbers(L, idx, "degrees", op->degrees, 2, who) == 1) op->degrees[1] = op->degrees[0];
  op->expand = lcnn_opt_boolean(L, idx, who, "expand", false);
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
  if (cnn_tf_check(op)) lcnn_fail_plain(L, who);
}

/* ---- pipelines ---- */

typedef struct {
  int n;
  cnn_tf ops[];
} pipeline;

/* pipeline({spec, ...}, who) -> a pipeline userdata */
static int d_pipeline(lua_State *L) {
  const char *who = lcnn_who(L, 2, "transform");
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 1);
  pipeline *p = lua_newuserdatauv(L, sizeof(pipeline) + sizeof(cnn_tf) * (size_t)n, 0);
  p->n = 0;
  luaL_setmetatable(L, LDATA_PIPELINE);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!lua_istable(L, -1)) return lcnn_error_plain(L, who, "spec %d is not a table", i);
    parse_spec(L, lua_gettop(L), &p->ops[i - 1], who);
    lua_pop(L, 1);
    p->n = i;
  }
  return 1;
}

/* pipeline_apply(pipeline, x, who) -> the transformed image or batch */
static int d_pipeline_apply(lua_State *L) {
  const char *who = lcnn_who(L, 3, "transform");
  pipeline *p = luaL_checkudata(L, 1, LDATA_PIPELINE);
  cnn_tensor *x = lcnn_test(L, 2);
  if (!x) return lcnn_error_plain(L, who, "expected a tensor, got %s", lcnn_typename(L, 2));
  cnn_tensor *y = cnn_tf_apply(p->ops, p->n, x);
  if (!y) return lcnn_fail_plain(L, who);
  lcnn_push(L, y, who);
  return 1;
}

/* resize(x, spec, who) -> x resized over its last two dimensions (x itself when the size stays) */
static int d_resize(lua_State *L) {
  const char *who = lcnn_who(L, 3, "resize");
  if (!lcnn_test(L, 1)) return lcnn_error_plain(L, who, "expected a tensor, got %s", lcnn_typename(L, 1));
  luaL_checktype(L, 2, LUA_TTABLE);
  cnn_tf op;
  parse_spec(L, 2, &op, who);
  cnn_tensor *x = lcnn_test(L, 1); /* after the spec's lookups, which may run Lua code (lcnn.h) */
  if (!x) return lcnn_error_plain(L, who, "expected a tensor, got %s", lcnn_typename(L, 1));
  if (x->dtype != CNN_FLOAT32 || x->ndim < 2)
    return lcnn_error_plain(L, who, "expected a float32 tensor (..., H, W), got a %d-d %s one", x->ndim,
                            cnn_dtype_name(x->dtype));
  int64_t h = x->size[x->ndim - 2], w = x->size[x->ndim - 1], oh, ow;
  if (h < 1 || w < 1)
    return lcnn_error_plain(L, who, "cannot resize an empty %lldx%lld image", (long long)h, (long long)w);
  cnn_tf_resize_size(h, w, &op, &oh, &ow);
  if (oh == h && ow == w) {
    lua_settop(L, 1);
    return 1;
  }
  cnn_tensor *c = cnn_tensor_contiguous(x);
  if (!c) return lcnn_fail_plain(L, who);
  int64_t size[CNN_MAX_DIMS];
  memcpy(size, x->size, sizeof(int64_t) * (size_t)x->ndim);
  size[x->ndim - 2] = oh;
  size[x->ndim - 1] = ow;
  cnn_tensor *y = cnn_tensor_empty(CNN_FLOAT32, x->ndim, size);
  int64_t planes = cnn_tensor_numel(x) / (h * w); /* h, w >= 1 */
  if (!y || cnn_resize(cnn_tensor_f32(c), planes, h * w, w, h, w, cnn_tensor_f32(y), oh, ow, op.interp, op.antialias)) {
    cnn_tensor_release(c);
    cnn_tensor_release(y);
    return lcnn_fail_plain(L, who);
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
    return lcnn_error_plain(L, who, "image size must be positive, got %lldx%lld", (long long)h, (long long)w);
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

/* ---- image sources and loaders ---- */

/* A source userdata boxes one cnn_image_source (NULL once freed); an epoch userdata boxes one
 * running cnn_loader and keeps its source alive through its user value. */
typedef struct {
  cnn_image_source *src;
} source_box;

typedef struct {
  cnn_loader *loader;
} epoch_box;

static cnn_image_source *check_source(lua_State *L, int idx, const char *who) {
  source_box *b = luaL_testudata(L, idx, LDATA_SOURCE);
  if (!b || !b->src) lcnn_error_plain(L, who, "expected an image source");
  return b->src;
}

/* source({paths}, {labels}, mode, exif, {specs} or nil, cache, who) -> source */
static int d_source(lua_State *L) {
  const char *who = lcnn_who(L, 7, "ImageFolder");
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if ((lua_Integer)lua_rawlen(L, 2) != n) return lcnn_error_plain(L, who, "paths and labels differ in length");
  static const char *const modes[] = {"auto", "gray", "rgb", "rgba", NULL};
  cnn_image_mode mode = (cnn_image_mode)luaL_checkoption(L, 3, "rgb", modes);
  bool exif = lua_toboolean(L, 4);
  bool cache = lua_toboolean(L, 6);
  int nops = lua_istable(L, 5) ? (int)lua_rawlen(L, 5) : 0;
  /* scratch arrays in userdata, collected with the call */
  const char **paths = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
  int64_t *labels = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(n ? n : 1), 0);
  cnn_tf *ops = lua_newuserdatauv(L, sizeof(cnn_tf) * (size_t)(nops ? nops : 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (lua_type(L, -1) != LUA_TSTRING) return lcnn_error_plain(L, who, "path %d is not a string", (int)i);
    paths[i - 1] = lua_tostring(L, -1); /* kept alive by the paths table */
    lua_pop(L, 1);
    lua_rawgeti(L, 2, i);
    if (!lua_isinteger(L, -1)) return lcnn_error_plain(L, who, "label %d is not an integer", (int)i);
    labels[i - 1] = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  for (int k = 1; k <= nops; k++) {
    lua_rawgeti(L, 5, k);
    if (!lua_istable(L, -1)) return lcnn_error_plain(L, who, "spec %d is not a table", k);
    parse_spec(L, lua_gettop(L), &ops[k - 1], who);
    lua_pop(L, 1);
  }
  source_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->src = NULL;
  luaL_setmetatable(L, LDATA_SOURCE);
  box->src = cnn_image_source_new(n, paths, labels, mode, exif, ops, nops, cache);
  if (!box->src) return lcnn_fail_plain(L, who);
  return 1;
}

static int source_gc(lua_State *L) {
  source_box *b = luaL_checkudata(L, 1, LDATA_SOURCE);
  cnn_image_source_free(b->src);
  b->src = NULL;
  return 0;
}

/* source_get(src, i (1-based), seed or nil, who) -> image i decoded and transformed; without a seed
 * the generator is seeded by one draw of cnn's stream */
static int d_source_get(lua_State *L) {
  const char *who = lcnn_who(L, 4, "ImageFolder");
  cnn_image_source *src = check_source(L, 1, who);
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 1 || i > cnn_image_source_size(src))
    return lcnn_error_plain(L, who, "index %lld is out of range for %lld samples", (long long)i,
                            (long long)cnn_image_source_size(src));
  uint64_t seed = lua_isnoneornil(L, 3) ? cnn_rng_next(cnn_rng_global()) : (uint64_t)luaL_checkinteger(L, 3);
  cnn_tensor *t = cnn_image_source_get(src, i - 1, seed);
  if (!t) return lcnn_fail_plain(L, who);
  lcnn_push(L, t, who);
  return 1;
}

/* source_stats(src) -> cached images, cached bytes */
static int d_source_stats(lua_State *L) {
  cnn_image_source *src = check_source(L, 1, "ImageFolder");
  lua_pushinteger(L, cnn_image_source_cached(src));
  lua_pushinteger(L, (lua_Integer)cnn_image_source_cache_bytes(src));
  return 2;
}

/* stream_seed() -> 64 bits of cnn's stream, as an integer */
static int d_stream_seed(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)cnn_rng_next(cnn_rng_global()));
  return 1;
}

#define COLLECT_THREADS 64

/* loader_start(src, order (int64, 0-based), batch_size, seed, epoch, workers, prefetch, stack, who) -> epoch */
static int d_loader_start(lua_State *L) {
  const char *who = lcnn_who(L, 9, "DataLoader");
  cnn_image_source *src = check_source(L, 1, who);
  cnn_tensor *order = lcnn_test(L, 2);
  if (!order || order->dtype != CNN_INT64 || order->ndim != 1)
    return lcnn_error_plain(L, who, "order must be a 1-d int64 tensor");
  lua_Integer bs = luaL_checkinteger(L, 3), epoch = luaL_checkinteger(L, 5);
  uint64_t seed = (uint64_t)luaL_checkinteger(L, 4);
  lua_Integer workers = luaL_checkinteger(L, 6), prefetch = luaL_checkinteger(L, 7);
  bool stack_batches = lua_toboolean(L, 8);
  if (workers < 0 || workers > 256)
    return lcnn_error_plain(L, who, "workers must be between 0 and 256, got %lld", (long long)workers);
  if (prefetch < 1 || prefetch > 1024)
    return lcnn_error_plain(L, who, "prefetch must be between 1 and 1024, got %lld", (long long)prefetch);
  cnn_tensor *c = cnn_tensor_contiguous(order);
  if (!c) return lcnn_fail_plain(L, who);
  epoch_box *box = lua_newuserdatauv(L, sizeof *box, 1);
  box->loader = NULL;
  luaL_setmetatable(L, LDATA_EPOCH);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the source lives as long as the epoch */
  /* An epoch whose iterator was dropped before its end keeps its workers until the collector
   * finalizes it, and the collector counts no threads: past COLLECT_THREADS running workers, or
   * when one cannot start, a full collection first stops the abandoned ones. */
  if (workers > 0 && cnn_loader_live_threads() + workers > COLLECT_THREADS) lua_gc(L, LUA_GCCOLLECT);
  for (int attempt = 0; attempt < 2 && !box->loader; attempt++) {
    if (attempt) {
      if (workers == 0) break;
      cnn_error_clear();
      lua_gc(L, LUA_GCCOLLECT);
    }
    box->loader = cnn_loader_start(src, cnn_tensor_i64(c), c->size[0], bs, seed, epoch, (int)workers, (int)prefetch,
                                   stack_batches);
  }
  cnn_tensor_release(c);
  if (!box->loader) return lcnn_fail_plain(L, who);
  return 1;
}

/* epoch:next(who) -> x, labels (stacked), or {images}, labels; nothing after the last batch */
static int epoch_next(lua_State *L) {
  epoch_box *b = luaL_checkudata(L, 1, LDATA_EPOCH);
  const char *who = lcnn_who(L, 2, "DataLoader");
  if (!b->loader) return 0;
  cnn_loader_batch batch;
  int rc = cnn_loader_next(b->loader, &batch);
  if (rc < 0) return lcnn_fail_plain(L, who);
  if (rc == 0) return 0;
  /* the batch's references move into userdata one by one, so a raise (out of memory) leaks none */
  if (batch.x) {
    lcnn_push(L, batch.x, who);
    batch.x = NULL;
  } else {
    lua_createtable(L, (int)batch.n, 0);
    for (int64_t k = 0; k < batch.n; k++) {
      lcnn_push(L, batch.images[k], who);
      batch.images[k] = NULL;
      lua_rawseti(L, -2, k + 1);
    }
  }
  lcnn_push(L, batch.labels, who);
  batch.labels = NULL;
  cnn_loader_batch_clear(&batch);
  return 2;
}

/* epoch:close(): stops the workers and frees the epoch (also __close and __gc) */
static int epoch_close(lua_State *L) {
  epoch_box *b = luaL_checkudata(L, 1, LDATA_EPOCH);
  cnn_loader_free(b->loader);
  b->loader = NULL;
  return 0;
}

/* epoch:position() -> batches handed out, batches in all */
static int epoch_position(lua_State *L) {
  epoch_box *b = luaL_checkudata(L, 1, LDATA_EPOCH);
  if (!b->loader) return 0;
  lua_pushinteger(L, cnn_loader_position(b->loader));
  lua_pushinteger(L, cnn_loader_batches(b->loader));
  return 2;
}

void lcnn_open_data(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {
      {"pipeline", d_pipeline},
      {"pipeline_apply", d_pipeline_apply},
      {"resize", d_resize},
      {"random_resized_crop_box", d_rrc_box},
      {"source", d_source},
      {"source_get", d_source_get},
      {"source_stats", d_source_stats},
      {"stream_seed", d_stream_seed},
      {"loader_start", d_loader_start},
      {NULL, NULL},
  };
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, tbl, r->name);
  }
  luaL_newmetatable(L, LDATA_PIPELINE);
  lua_pop(L, 1);
  luaL_newmetatable(L, LDATA_SOURCE);
  lua_pushcfunction(L, source_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg epoch_methods[] = {
      {"next", epoch_next}, {"close", epoch_close}, {"position", epoch_position}, {NULL, NULL}};
  luaL_newmetatable(L, LDATA_EPOCH);
  lua_pushcfunction(L, epoch_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, epoch_close);
  lua_setfield(L, -2, "__close");
  luaL_newlib(L, epoch_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
