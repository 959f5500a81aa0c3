/* cnn.distributed's collectives for Lua (core.dist): thin checks over runtime/dist/dist.c. The
 * collectives write tensor data in place and record no autograd history, as in PyTorch; the
 * version bump still lets a saved tensor notice it was overwritten. */
#include "lcnn.h"

#include <string.h>

#include "cnn/error.h"
#include "dist/dist.h"

/** cnn.distributed.init()
 * Joins the job the launcher (mpirun, srun) started; a world of one when none did. Idempotent. */
static int d_init(lua_State *L) {
  if (cnn_dist_init()) return lcnn_fail(L, "dist.init");
  return 0;
}

/** cnn.distributed.is_initialized() -> boolean
 * Whether cnn.distributed.init() has run. */
static int d_is_initialized(lua_State *L) {
  lua_pushboolean(L, cnn_dist_is_initialized());
  return 1;
}

static void need_init(lua_State *L, const char *fn) {
  if (!cnn_dist_is_initialized()) lcnn_error(L, fn, "the process group is not initialized: call dist.init() first");
}

/** cnn.distributed.rank() -> integer
 * This process's rank, from 0 (after init). */
static int d_rank(lua_State *L) {
  need_init(L, "dist.rank");
  lua_pushinteger(L, cnn_dist_rank());
  return 1;
}

/** cnn.distributed.world_size() -> integer
 * The number of ranks (after init). */
static int d_world_size(lua_State *L) {
  need_init(L, "dist.world_size");
  lua_pushinteger(L, cnn_dist_world_size());
  return 1;
}

/** cnn.distributed.backend() -> "mpi"|"none", boolean
 * How this process talks to the others, and whether the build has MPI at all.
 * "mpi" when this process is one rank of an MPI job, "none" for a world of one. */
static int d_backend(lua_State *L) {
  need_init(L, "dist.backend");
  lua_pushstring(L, cnn_dist_backend());
  lua_pushboolean(L, cnn_dist_has_mpi());
  return 2;
}

/** cnn.distributed.barrier()
 * Waits until every rank has reached it. */
static int d_barrier(lua_State *L) {
  if (cnn_dist_barrier()) return lcnn_fail(L, "dist.barrier");
  return 0;
}

/** cnn.distributed.all_reduce(t, {op="sum"}) -> t
 * Combines t across ranks in place, so that every rank holds the result.
 * op is "sum", "mean", "max" or "min". float32 and int64 tensors of any shape and strides. Ranks that
 * pass different shapes, dtypes or ops, or call different collectives, all get the same error
 * instead of a hang. */
static int d_all_reduce(lua_State *L) {
  static const char *const known[] = {"op", NULL};
  static const char *const ops[] = {"sum", "mean", "max", "min", NULL};
  static const cnn_dist_op codes[] = {CNN_DIST_SUM, CNN_DIST_MEAN, CNN_DIST_MAX, CNN_DIST_MIN};
  lcnn_check(L, 1, "dist.all_reduce");
  lcnn_options(L, 2, "dist.all_reduce", known);
  int op = 0;
  if (lua_istable(L, 2) && lua_getfield(L, 2, "op") != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    for (op = 0; s && ops[op] && strcmp(ops[op], s) != 0; op++) {}
    if (!s || !ops[op])
      return lcnn_error(L, "dist.all_reduce", "op must be \"sum\", \"mean\", \"max\" or \"min\", got %s",
                        s ? s : luaL_typename(L, -1));
  }
  need_init(L, "dist.all_reduce");
  cnn_tensor *t = lcnn_check(L, 1, "dist.all_reduce"); /* after the option lookups (see lcnn.h) */
  if (cnn_dist_all_reduce(t, codes[op])) return lcnn_fail(L, "dist.all_reduce");
  lua_settop(L, 1);
  return 1;
}

/** cnn.distributed.broadcast(t, {root=0}) -> t
 * Overwrites t in place on every rank with rank root's values. */
static int d_broadcast(lua_State *L) {
  static const char *const known[] = {"root", NULL};
  lcnn_check(L, 1, "dist.broadcast");
  lcnn_options(L, 2, "dist.broadcast", known);
  lua_Integer root = 0;
  if (lua_istable(L, 2) && lua_getfield(L, 2, "root") != LUA_TNIL) {
    int ok = 0;
    root = lua_tointegerx(L, -1, &ok);
    if (!ok || root < 0 || root > 1 << 30)
      return lcnn_error(L, "dist.broadcast", "root must be a rank (an integer from 0), got %s",
                        luaL_tolstring(L, -1, NULL));
  }
  need_init(L, "dist.broadcast");
  cnn_tensor *t = lcnn_check(L, 1, "dist.broadcast");
  if (cnn_dist_broadcast(t, (int)root)) return lcnn_fail(L, "dist.broadcast");
  lua_settop(L, 1);
  return 1;
}

/** cnn.distributed.all_gather(t) -> {tensors}
 * Every rank's t, in rank order (views into one (world_size, ...) tensor). */
static int d_all_gather(lua_State *L) {
  cnn_tensor *t = lcnn_check(L, 1, "dist.all_gather");
  need_init(L, "dist.all_gather");
  cnn_tensor *all = cnn_dist_all_gather(t);
  if (!all) return lcnn_fail(L, "dist.all_gather");
  int world = (int)all->size[0];
  lua_createtable(L, world, 0);
  for (int r = 0; r < world; r++) {
    cnn_tensor *row = cnn_tensor_select(all, 0, r);
    if (!row) {
      cnn_tensor_release(all);
      return lcnn_fail(L, "dist.all_gather");
    }
    lcnn_push(L, row, "dist.all_gather");
    lua_rawseti(L, -2, r + 1);
  }
  cnn_tensor_release(all);
  return 1;
}

/* _grad_mask(has): DataParallel's "which parameters have a gradient on some rank" */
static int d_grad_mask(lua_State *L) {
  cnn_tensor *t = lcnn_check(L, 1, "DataParallel");
  need_init(L, "DataParallel");
  if (cnn_dist_grad_mask(t)) return lcnn_fail(L, "DataParallel");
  return 0;
}

/* _all_reduce_many({t...}, scale): the bucket call behind DataParallel */
static int d_all_reduce_many(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 1);
  float scale = (float)luaL_checknumber(L, 2);
  cnn_tensor **ts = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ts, 0); /* freed by the GC */
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    ts[i] = lcnn_check(L, -1, "DataParallel");
    lua_pop(L, 1); /* the table keeps the tensor alive */
  }
  need_init(L, "DataParallel");
  if (cnn_dist_all_reduce_many(ts, n, scale)) return lcnn_fail(L, "DataParallel");
  return 0;
}

void lcnn_open_dist(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {
      {"init", d_init},
      {"is_initialized", d_is_initialized},
      {"rank", d_rank},
      {"world_size", d_world_size},
      {"backend", d_backend},
      {"barrier", d_barrier},
      {"all_reduce", d_all_reduce},
      {"broadcast", d_broadcast},
      {"all_gather", d_all_gather},
      {"_grad_mask", d_grad_mask},
      {"_all_reduce_many", d_all_reduce_many},
      {NULL, NULL},
  };
  lua_pushvalue(L, tbl);
  luaL_setfuncs(L, fns, 0);
  lua_pushboolean(L, cnn_dist_has_mpi());
  lua_setfield(L, -2, "has_mpi");
  lua_pop(L, 1);
}
