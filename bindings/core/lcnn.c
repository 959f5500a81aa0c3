/* The cnn.core Lua module: the tensor metatable, argument checking, the error road and the
 * garbage-collector policy. Lua's collector sees a tensor as a few bytes of userdata; the
 * storage behind it lives in the runtime allocator, so after each new tensor we compare the
 * allocator's live bytes with a threshold and collect past it (young first, see maybe_collect). The threshold allows
 * GC_GROWTH bytes (or a quarter of what survived, if more) of new tensor memory since the last
 * collection: a loop of temporaries stays bounded, and a large resident dataset does not double
 * the allowance the way a proportional rule would. A full collection costs time in proportion to
 * the Lua heap (~1 ms on a ResNet-20 step's graph), so while what grows stays live the full ones
 * wait for more growth than the young ones (see gc_futile). */
#include "lcnn.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "autograd/conv.h"
#include "cnn/autograd.h"
#include "cnn/error.h"
#include "core/alloc.h"

/* 16 MB: LeNet training peaks at 79 MB instead of 112 MB with 48 MB, at the same speed
 * (scripts/tools/bench_suite.lua lenet_train, interleaved) */
#define GC_GROWTH ((size_t)16 << 20)

static size_t gc_threshold = GC_GROWTH;

/* Full collections in a row that freed less than a quarter of what grew since the one before: the
 * growth that set them off stayed live (a training step's activations, which its graph holds until
 * backward). From the second, each doubles the growth before the next full one, up to twice what
 * survived (one alone, as a dataset's loading makes, changes nothing); the young collections still
 * run at every quarter, so young garbage is as bounded as before (the 2012 AlexNet's training,
 * whose growth is mostly live too, peaked at 1.12 GB instead of 0.91 when the young ones waited as
 * well). ResNet-20 at batch 128 grows from ~10 to ~200 MB a step, which full collections at every
 * quarter met 6.5 times a step (1.2 ms each on the step's graph, 5% of the run on the thread that
 * runs Lua while the others wait). A collection that frees garbage puts the quarter back, as does
 * live memory falling below what the last full collection left (the growth is over). */
static unsigned gc_futile;
#define GC_FUTILE_MAX 4
static size_t gc_base;             /* live bytes after the last full collection: below it, the growth is over */
static size_t gc_full_at;          /* live bytes before which a collection stays young (see maybe_collect) */
static lua_Integer gc_collections; /* full collections run here (cnn.memory_stats) */

/* new tensor bytes allowed past what is live before the next collection: young ones at a quarter
 * (shift 0), full ones at the futile count's */
static size_t gc_allowance(size_t live, unsigned shift) {
  size_t a = (live / 4) << shift;
  return a > GC_GROWTH ? a : GC_GROWTH;
}

/* The registry holds the tensor metatable under LCNN_TENSOR (luaL_newmetatable's name, for
 * luaL_checkudata and other modules) and under this variable's address: a light-userdata key is
 * found without interning a string (luaL_testudata's lua_getfield hashes the name and strcmp's it;
 * a training step checks ~75 tensor arguments and boxes ~13 results). */
static const char tensor_mt_key;

cnn_tensor **lcnn_testbox(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (!p || !lua_getmetatable(L, idx)) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tensor_mt_key);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}

void lcnn_box_metatable(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tensor_mt_key);
  lua_setmetatable(L, -2);
}

cnn_tensor *lcnn_test(lua_State *L, int idx) {
  cnn_tensor **box = lcnn_testbox(L, idx);
  return box ? *box : NULL;
}

const char *lcnn_typename(lua_State *L, int idx) {
  cnn_tensor **box = lcnn_testbox(L, idx);
  if (box && !*box) return "a closed tensor";
  return luaL_typename(L, idx);
}

const char *lcnn_number_str(lua_State *L, int idx) {
  lua_Number v = lua_tonumber(L, idx);
  return v != v ? "nan" : lua_tostring(L, idx);
}

cnn_tensor *lcnn_check(lua_State *L, int idx, const char *fn) {
  cnn_tensor **box = lcnn_testbox(L, idx);
  if (!box) lcnn_error(L, fn, "expected a tensor for argument %d, got %s", idx, luaL_typename(L, idx));
  if (!*box) lcnn_error(L, fn, "argument %d is a closed tensor", idx);
  return *box;
}

void lcnn_anchor_number(lua_State *L, int idx, const char *fn, cnn_dtype int_dtype) {
  int type = lua_type(L, idx);
  if (type != LUA_TNUMBER && type != LUA_TBOOLEAN) return;
  idx = lua_absindex(L, idx);
  /* the box exists before the tensor, so no reference is ever held outside it */
  cnn_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  lcnn_box_metatable(L);
  if (type == LUA_TBOOLEAN) *box = cnn_tensor_scalar(CNN_BOOL, lua_toboolean(L, idx));
  else if (lua_isinteger(L, idx) && int_dtype != CNN_FLOAT32) *box = cnn_tensor_scalar_i64(lua_tointeger(L, idx));
  else *box = cnn_tensor_scalar(CNN_FLOAT32, lua_tonumber(L, idx));
  if (!*box) lcnn_fail(L, fn);
  (*box)->wrapped_number = true;
  lua_replace(L, idx);
}

void lcnn_check_float_value(lua_State *L, int idx, const char *fn, cnn_dtype dt) {
  if (dt != CNN_FLOAT32 || lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx)) return;
  double v = lua_tonumber(L, idx);
  if (isfinite(v) && fabs(v) > FLT_MAX)
    lcnn_error(L, fn, "value %g cannot be converted to type float without overflow", cnn_error_num(v));
}

void lcnn_check_u8_value(lua_State *L, int idx, const char *fn, cnn_dtype dt) {
  if (dt != CNN_UINT8 || !lua_isinteger(L, idx)) return;
  lua_Integer v = lua_tointeger(L, idx);
  if (v <= -256 || v >= 256)
    lcnn_error(L, fn, "value %lld cannot be converted to type uint8 without overflow", (long long)v);
}

cnn_tensor *lcnn_operand(lua_State *L, int idx, const char *fn, cnn_dtype int_dtype) {
  lcnn_anchor_number(L, idx, fn, int_dtype);
  cnn_tensor **box = lcnn_testbox(L, idx);
  if (!box)
    lcnn_error(L, fn, "expected a tensor, a number or a boolean for argument %d, got %s", idx, luaL_typename(L, idx));
  if (!*box) lcnn_error(L, fn, "argument %d is a closed tensor", idx);
  return *box;
}

/* Every tensor also holds about a kilobyte of C structs (view, storage, graph node) that neither
 * Lua nor the allocator's byte count sees: without telling Lua, a loop of tiny tensors piles up
 * garbage (170 MB for 160,000 scalar additions) and every malloc walks cold memory. Each batch
 * of GC_BATCH new tensors is reported to the incremental collector as that many kilobytes
 * (a full collection each time cost a quarter of a tiny op). */
#define GC_BATCH 64
static unsigned gc_tensors;

static void maybe_collect(lua_State *L) {
  if (++gc_tensors == GC_BATCH) {
    gc_tensors = 0;
    lua_gc(L, LUA_GCSTEP, GC_BATCH);
  }
  size_t live = cnn_alloc_live_bytes();
  if (live < gc_base) gc_futile = 0; /* the growth is over (a step's backward released it) */
  /* the allowance follows live memory down: after a large tensor is freed, temporaries may grow
   * by the allowance from what is left, not from what was there before */
  size_t cap = live + gc_allowance(live, 0);
  if (cap < gc_threshold) gc_threshold = cap;
  if (live < gc_threshold) return;
  /* First a step: in generational mode (cnnlua's) a young collection, which frees a training
   * step's graph and activations (reachable from the step's young tensors only) for a fraction of
   * a full collection's time. LeNet-5's steps filled GC_GROWTH in ~17 steps, then a full collection
   * took ~2 ms (150 us a step; a young one ~0.5 ms). The full one only when that freed too little. */
  lua_gc(L, LUA_GCSTEP, 0);
  gc_tensors = 0;
  const size_t before = cnn_alloc_live_bytes();
  if (before < gc_threshold - GC_GROWTH / 2) { /* the young one freed it: garbage, not growth */
    gc_futile = 0;
    return;
  }
  if (gc_futile > 1 && before < gc_full_at) { /* growth: the next young one a quarter further on */
    gc_threshold = before + gc_allowance(before, 0);
    return;
  }
  lua_gc(L, LUA_GCCOLLECT);
  gc_collections++;
  live = cnn_alloc_live_bytes();
  /* futile: it freed less than a quarter of what grew since the last full collection */
  const size_t grown = before > gc_base ? before - gc_base : 0, freed = before > live ? before - live : 0;
  if (freed < grown / 4) gc_futile += gc_futile < GC_FUTILE_MAX;
  else gc_futile = 0;
  gc_base = live;
  gc_threshold = live + gc_allowance(live, 0);
  gc_full_at = live + gc_allowance(live, gc_futile > 1 ? gc_futile - 1 : 0);
}

void lcnn_push(lua_State *L, cnn_tensor *t, const char *fn) {
  if (!t) lcnn_fail(L, fn);
  cnn_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = t;
  lcnn_box_metatable(L);
  maybe_collect(L);
}

void lcnn_push_or_nil(lua_State *L, cnn_tensor *t) {
  if (!t) {
    lua_pushnil(L);
    return;
  }
  cnn_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = cnn_tensor_retain(t);
  lcnn_box_metatable(L);
}

int lcnn_dim(lua_State *L, int idx, const char *fn, int ndim, int insertion) {
  if (!lua_isinteger(L, idx)) {
    if (lua_type(L, idx) == LUA_TNUMBER)
      lcnn_error(L, fn, "dimension must be an integer, got %s", lcnn_number_str(L, idx));
    lcnn_error(L, fn, "expected a dimension (integer) for argument %d, got %s", idx, luaL_typename(L, idx));
  }
  lua_Integer d = lua_tointeger(L, idx);
  int n = ndim + (insertion ? 1 : 0);
  if (n == 0) n = 1; /* a 0-d tensor accepts dim 1 / -1 like PyTorch's 0 / -1 */
  if (d == 0 || d > n || d < -n)
    lcnn_error(L, fn, "dimension %lld out of range (expected 1..%d or -%d..-1)", (long long)d, n, n);
  return d > 0 ? (int)d - 1 : (int)d;
}

static int64_t shape_entry(lua_State *L, int idx, const char *fn, int allow_infer) {
  if (!lua_isinteger(L, idx)) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
      lua_Number v = lua_tonumber(L, idx);
      if (v != v || v >= 9.2e18 || v <= -9.2e18)
        lcnn_error(L, fn, "size %s is not a valid size", lcnn_number_str(L, idx));
      if ((lua_Number)(int64_t)v == v) return (int64_t)v;
      lcnn_error(L, fn, "sizes must be integers, got %s", lcnn_number_str(L, idx));
    }
    lcnn_error(L, fn, "sizes must be integers, got %s", luaL_typename(L, idx));
  }
  lua_Integer v = lua_tointeger(L, idx);
  if (v < 0 && !(allow_infer && v == -1)) lcnn_error(L, fn, "negative size %lld", (long long)v);
  return (int64_t)v;
}

int lcnn_shape(lua_State *L, int idx, const char *fn, int64_t *size, int *next, int allow_infer) {
  int n = 0;
  if (lua_istable(L, idx)) {
    lua_Integer len = luaL_len(L, idx);
    if (len > CNN_MAX_DIMS) lcnn_error(L, fn, "a tensor has at most %d dimensions, got %d", CNN_MAX_DIMS, (int)len);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      size[n++] = shape_entry(L, -1, fn, allow_infer);
      lua_pop(L, 1);
    }
    *next = idx + 1;
    return n;
  }
  while (lua_type(L, idx) == LUA_TNUMBER) {
    if (n == CNN_MAX_DIMS) lcnn_error(L, fn, "a tensor has at most %d dimensions", CNN_MAX_DIMS);
    size[n++] = shape_entry(L, idx, fn, allow_infer);
    idx++;
  }
  /* a nil given among or after the sizes (cnn.zeros(n, m) with m nil by mistake) does not end
   * them: the tensor would have a dimension less (none: a 0-d one) and broadcast silently wherever
   * it went next, as PyTorch's zeros(3, None) does not */
  if (lua_isnil(L, idx) && idx <= lua_gettop(L))
    lcnn_error(L, fn, "expected sizes (integers or a table of them) for argument %d, got nil", idx);
  *next = idx;
  return n;
}

int lcnn_dtype_named(const char *s, cnn_dtype *out) {
  static const struct {
    const char *name;
    cnn_dtype dt;
  } names[] = {{"float32", CNN_FLOAT32}, {"float", CNN_FLOAT32}, {"int64", CNN_INT64}, {"long", CNN_INT64},
               {"uint8", CNN_UINT8},     {"byte", CNN_UINT8},    {"bool", CNN_BOOL}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, names[i].name) == 0) {
      *out = names[i].dt;
      return 0;
    }
  return -1;
}

void lcnn_push_element(lua_State *L, const cnn_tensor *t, const int64_t *at) {
  switch (t->dtype) {
  case CNN_FLOAT32: lua_pushnumber(L, cnn_tensor_get(t, at)); break;
  case CNN_BOOL: lua_pushboolean(L, cnn_tensor_get_i64(t, at) != 0); break;
  case CNN_INT64:
  case CNN_UINT8: lua_pushinteger(L, cnn_tensor_get_i64(t, at)); break;
  }
}

/** cnn.memory_stats({reset_peak=false}) -> {live_bytes=, peak_live_bytes=, cached_bytes=, gc_threshold=, gc_collections=, peak_rss_bytes=}
 * Tensor memory in use and held in the allocator's cache, the collector's threshold, and peak RSS.
 * peak_live_bytes is the most tensor memory in use at once since the start or the last call with
 * reset_peak=true (which starts a new peak from the memory in use now).
 * gc_threshold is the live tensor memory past which the bindings run a garbage collection (a young
 * one, then a full one when that freed too little, less often while what grows stays live);
 * gc_collections counts those full collections since the start (not collectgarbage's own).
 * peak_rss_bytes is the whole process's high-water mark. */
static int memory_stats(lua_State *L) {
  static const char *const known[] = {"reset_peak", NULL};
  lcnn_options(L, 1, "memory_stats", known);
  bool reset = lcnn_opt_boolean(L, 1, "memory_stats", "reset_peak", false);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)cnn_alloc_live_bytes());
  lua_setfield(L, -2, "live_bytes");
  lua_pushinteger(L, (lua_Integer)cnn_alloc_peak_live_bytes(reset));
  lua_setfield(L, -2, "peak_live_bytes");
  lua_pushinteger(L, (lua_Integer)cnn_alloc_cached_bytes());
  lua_setfield(L, -2, "cached_bytes");
  lua_pushinteger(L, (lua_Integer)gc_threshold);
  lua_setfield(L, -2, "gc_threshold");
  lua_pushinteger(L, gc_collections);
  lua_setfield(L, -2, "gc_collections");
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) { /* the process's high-water mark, kilobytes on Linux */
    lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
    lua_setfield(L, -2, "peak_rss_bytes");
  }
  return 1;
}

/** cnn.isatty(file) -> boolean
 * Whether a Lua file handle such as io.stdout is a terminal (progress lines or plain logs). */
static int is_a_tty(lua_State *L) {
  luaL_Stream *f = luaL_testudata(L, 1, LUA_FILEHANDLE);
  if (!f || !f->f) return lcnn_error(L, "isatty", "expected an open file handle such as io.stdout");
  lua_pushboolean(L, isatty(fileno(f->f)));
  return 1;
}

/** cnn.wall_time() -> number
 * Seconds on a monotonic clock, for timings, throughput and ETAs.
 * os.clock() is CPU time, which counts every thread. */
static int wall_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/** cnn.empty_cache()
 * Returns the allocator's cached tensor memory (and convolution workspaces) to the system. */
static int empty_cache(lua_State *L) {
  (void)L;
  cnn_alloc_trim();
  return 0;
}

int luaopen_cnn_core(lua_State *L) {
  lua_newtable(L); /* module */
  int module = lua_gettop(L);
  lua_newtable(L); /* tensor methods */
  int methods = lua_gettop(L);
  lua_pushvalue(L, methods);
  lua_setfield(L, module, "Tensor");
  luaL_newmetatable(L, LCNN_TENSOR);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tensor_mt_key);
  lua_pushvalue(L, module);
  lcnn_open_tensor(L, methods);
  lcnn_open_math(L, methods);
  lcnn_open_autograd(L, methods);
  lcnn_open_index(L, methods);
  lcnn_open_factory(L);
  lua_pop(L, 1);
  lua_newtable(L);
  lcnn_open_conv(L, lua_gettop(L));
  lcnn_open_functional(L, lua_gettop(L));
  lua_setfield(L, module, "F");
  static const struct {
    const char *name;
    void (*open)(lua_State *L, int tbl);
  } parts[] = {{"optim_kernels", lcnn_open_optim}, {"io", lcnn_open_io},     {"data", lcnn_open_data},
               {"canvas", lcnn_open_canvas},       {"dist", lcnn_open_dist}, {"process", lcnn_open_process}};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) { /* each a sub-table of the module */
    lua_newtable(L);
    parts[i].open(L, lua_gettop(L));
    lua_setfield(L, module, parts[i].name);
  }
  lua_pushcfunction(L, memory_stats);
  lua_setfield(L, module, "memory_stats");
  lua_pushcfunction(L, wall_time);
  lua_setfield(L, module, "wall_time");
  lua_pushcfunction(L, is_a_tty);
  lua_setfield(L, module, "isatty");
  lua_pushcfunction(L, empty_cache);
  lua_setfield(L, module, "empty_cache");
  lua_settop(L, module);
  return 1;
}
