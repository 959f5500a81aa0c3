/* File formats and the data pipeline's C half for Lua (core.io.*, internal: scripts/cnn/data.lua,
 * image.lua and serialize.lua wrap them): IDX, PNG, safetensors, directory listing, datasets kept
 * as uint8 tensors, batch gathering, epoch orders and batch transforms. The file
 * functions take the public function's name as a last argument and raise "name: path: problem"
 * WITHOUT a position, so the Lua wrapper can re-raise it at its caller's line; every C reference
 * is released before a raise. */
#include "lcnn.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnn/error.h"
#include "io/atomic_file.h"
#include "io/file.h"
#include "cnn/idx.h"
#include "cnn/image_io.h"
#include "cnn/png_io.h"
#include "cnn/safetensors.h"
#include "data/batch.h"

/* A path argument: a string without NUL bytes. */
static const char *check_path(lua_State *L, int idx, const char *who) {
  size_t n;
  if (lua_type(L, idx) != LUA_TSTRING)
    lcnn_error_plain(L, who, "expected a path (string), got %s", luaL_typename(L, idx));
  const char *p = lua_tolstring(L, idx, &n);
  if (strlen(p) != n) lcnn_error_plain(L, who, "path contains a NUL byte");
  if (n == 0) lcnn_error_plain(L, who, "empty path");
  return p;
}

static cnn_tensor *check_tensor(lua_State *L, int idx, const char *who) {
  cnn_tensor *t = lcnn_test(L, idx);
  if (!t) lcnn_error_plain(L, who, "expected a tensor for argument %d, got %s", idx, lcnn_typename(L, idx));
  return t;
}

static void push_new(lua_State *L, cnn_tensor *t, const char *who) {
  if (!t) lcnn_fail_plain(L, who);
  lcnn_push(L, t, who);
}

/* ---- IDX ---- */

/* idx_load(path, divisor = 1, who) -> tensor, element type name */
static int io_idx_load(lua_State *L) {
  const char *who = lcnn_who(L, 3, "idx_load");
  const char *path = check_path(L, 1, who);
  double divisor = luaL_optnumber(L, 2, 1.0);
  int code = 0;
  push_new(L, cnn_idx_load(path, divisor, &code), who);
  lua_pushstring(L, cnn_idx_type_name(code));
  return 2;
}

/* idx_load_u8(path, who) -> the file's uint8 tensor, bytes as stored (ubyte files only) */
static int io_idx_load_u8(lua_State *L) {
  const char *who = lcnn_who(L, 2, "idx_load_u8");
  const char *path = check_path(L, 1, who);
  push_new(L, cnn_idx_load_u8(path), who);
  return 1;
}

/* records(s, record, skip, len, who) -> uint8 (n, len): bytes skip .. skip + len - 1 of each of the
 * n = #s / record records of string s (a file read whole: CIFAR-10's label byte and pixels) */
static int io_records(lua_State *L) {
  const char *who = lcnn_who(L, 5, "records");
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_Integer rec = luaL_checkinteger(L, 2), skip = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (rec < 1 || skip < 0 || len < 0 || skip > rec || len > rec - skip)
    return lcnn_error_plain(L, who, "bad record layout (record %lld, skip %lld, len %lld)", (long long)rec,
                            (long long)skip, (long long)len);
  if (n % (size_t)rec != 0)
    return lcnn_error_plain(L, who, "%zu bytes are not a whole number of %lld-byte records", n, (long long)rec);
  int64_t size[2] = {(int64_t)(n / (size_t)rec), len};
  cnn_tensor *t = cnn_tensor_empty(CNN_UINT8, 2, size);
  if (!t) return lcnn_fail_plain(L, who);
  uint8_t *o = cnn_tensor_u8(t);
  for (int64_t r = 0; r < size[0]; r++) memcpy(o + r * len, s + r * rec + skip, (size_t)len);
  push_new(L, t, who);
  return 1;
}

/* ---- images (PNG, JPEG) ---- */

static cnn_image_mode check_mode(lua_State *L, int idx, const char *who) {
  const char *m = luaL_optstring(L, idx, "auto");
  if (strcmp(m, "auto") == 0) return CNN_IMAGE_AUTO;
  if (strcmp(m, "gray") == 0 || strcmp(m, "grey") == 0 || strcmp(m, "L") == 0) return CNN_IMAGE_GRAY;
  if (strcmp(m, "rgb") == 0 || strcmp(m, "RGB") == 0) return CNN_IMAGE_RGB;
  if (strcmp(m, "rgba") == 0 || strcmp(m, "RGBA") == 0) return CNN_IMAGE_RGBA;
  lcnn_error_plain(L, who, "unknown mode '%s' (expected \"auto\", \"gray\", \"rgb\" or \"rgba\")", m);
  return CNN_IMAGE_AUTO;
}

/* image_load(path, mode = "auto", who, exif = true) -> (C, H, W) float32; PNG or JPEG by content */
static int io_image_load(lua_State *L) {
  const char *who = lcnn_who(L, 3, "image.load");
  const char *path = check_path(L, 1, who);
  cnn_image_mode mode = check_mode(L, 2, who);
  bool exif = lua_isnoneornil(L, 4) ? true : lua_toboolean(L, 4);
  push_new(L, cnn_image_load(path, mode, exif), who);
  return 1;
}

/* png_load(path, mode = "auto", who) -> (C, H, W) float32, PNG files only */
static int io_png_load(lua_State *L) {
  const char *who = lcnn_who(L, 3, "image.load");
  const char *path = check_path(L, 1, who);
  push_new(L, cnn_png_load(path, (cnn_png_mode)check_mode(L, 2, who)), who);
  return 1;
}

/* image_save(path, t, who, quality = 75): JPEG for .jpg/.jpeg paths, PNG otherwise */
static int io_image_save(lua_State *L) {
  const char *who = lcnn_who(L, 3, "image.save");
  const char *path = check_path(L, 1, who);
  cnn_tensor *t = check_tensor(L, 2, who);
  lua_Integer q = luaL_optinteger(L, 4, 75);
  if (q < 1 || q > 100)
    return lcnn_error_plain(L, who, "quality must be an integer between 1 and 100, got %lld", (long long)q);
  if (cnn_image_save(path, t, (int)q)) return lcnn_fail_plain(L, who);
  return 0;
}

/* png_save(path, t, who) */
static int io_png_save(lua_State *L) {
  const char *who = lcnn_who(L, 3, "image.save");
  const char *path = check_path(L, 1, who);
  cnn_tensor *t = check_tensor(L, 2, who);
  if (cnn_png_save(path, t)) return lcnn_fail_plain(L, who);
  return 0;
}

/* image_max_pixels([n]) -> the limit before the change */
static int io_image_max_pixels(lua_State *L) {
  lua_Integer old = cnn_image_max_pixels();
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1)
      return lcnn_error_plain(L, "image.max_pixels", "the limit must be a positive integer, got %lld", (long long)n);
    cnn_image_set_max_pixels(n);
  }
  lua_pushinteger(L, old);
  return 1;
}

/* ---- safetensors ---- */

/* safetensors_load(path, who) -> {name = tensor}, {key = value} */
static int io_st_load(lua_State *L) {
  const char *who = lcnn_who(L, 2, "load");
  const char *path = check_path(L, 1, who);
  cnn_safetensors st;
  if (cnn_safetensors_load(path, &st)) return lcnn_fail_plain(L, who);
  lua_createtable(L, 0, (int)st.n);
  for (size_t i = 0; i < st.n; i++) {
    lcnn_push(L, st.tensors[i], who); /* takes the reference */
    st.tensors[i] = NULL;
    lua_setfield(L, -2, st.names[i]);
  }
  lua_createtable(L, 0, (int)st.nmeta);
  for (size_t i = 0; i < st.nmeta; i++) {
    lua_pushstring(L, st.meta_values[i]);
    lua_setfield(L, -2, st.meta_keys[i]);
  }
  cnn_safetensors_clear(&st);
  return 2;
}

/* A string key or value for the header: no NUL bytes (the format's names are C strings here). */
static const char *header_string(lua_State *L, int idx, const char *who, const char *what) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  if (strlen(s) != n) lcnn_error_plain(L, who, "%s '%s' contains a NUL byte", what, s);
  return s;
}

/* A metadata number as text that reads back as the same number (Lua's tostring keeps 14 digits:
 * 0.1 + 0.2 became "0.3", 2^53 + 1.0 "9.007199254741e+15"): integers as they are, floats in the
 * fewest digits that round-trip, with ".0" when they look like integers (as tostring), nan and
 * inf by name (not the C library's "-nan"). */
static void push_number_text(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) {
    lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
    return;
  }
  const double v = lua_tonumber(L, idx);
  char buf[48];
  if (v != v) snprintf(buf, sizeof buf, "nan");
  else if (isinf(v)) snprintf(buf, sizeof buf, "%s", v > 0 ? "inf" : "-inf");
  else {
    for (int digits = 15; digits <= 17; digits++) {
      snprintf(buf, sizeof buf, "%.*g", digits, v);
      if (strtod(buf, NULL) == v) break;
    }
    if (strspn(buf, "-0123456789") == strlen(buf)) strcat(buf, ".0");
  }
  lua_pushstring(L, buf);
}

/* safetensors_save(path, tensors, metadata or nil, who) */
static int io_st_save(lua_State *L) {
  const char *who = lcnn_who(L, 4, "save");
  const char *path = check_path(L, 1, who);
  if (!lua_istable(L, 2))
    return lcnn_error_plain(L, who, "expected a table of named tensors, got %s", luaL_typename(L, 2));
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    return lcnn_error_plain(L, who, "metadata must be a table of strings, got %s", luaL_typename(L, 3));
  lua_settop(L, 4);
  /* pass 1: count and check */
  size_t n = 0, nmeta = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      /* the type before luaL_tolstring pushes the key's text (argument order is unspecified in C) */
      const char *type = luaL_typename(L, -2);
      return lcnn_error_plain(L, who, "tensor names must be strings, got a %s key (%s)", type,
                              luaL_tolstring(L, -2, NULL));
    }
    if (!lcnn_test(L, -1))
      return lcnn_error_plain(L, who, "value of '%s' is not a tensor (got %s)", lua_tostring(L, -2),
                              luaL_testudata(L, -1, LCNN_TENSOR) ? "a closed tensor" : luaL_typename(L, -1));
    n++;
    lua_pop(L, 1);
  }
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      int vt = lua_type(L, -1);
      if (lua_type(L, -2) != LUA_TSTRING)
        return lcnn_error_plain(L, who, "metadata keys must be strings, got %s", luaL_typename(L, -2));
      if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
        return lcnn_error_plain(L, who, "metadata value of '%s' must be a string or a number, got %s",
                                lua_tostring(L, -2), luaL_typename(L, -1));
      nmeta++;
      lua_pop(L, 1);
    }
  }
  /* pass 2: collect; strings stay alive in the argument tables or in `hold` */
  const char **names = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 0);
  const cnn_tensor **ts = lua_newuserdatauv(L, sizeof(cnn_tensor *) * (n + 1), 0);
  const char **mk = lua_newuserdatauv(L, sizeof(char *) * (nmeta + 1), 0);
  const char **mv = lua_newuserdatauv(L, sizeof(char *) * (nmeta + 1), 0);
  lua_newtable(L);
  int hold = lua_gettop(L);
  size_t j = 0; /* metadata first: it allocates, and no allocation may follow the tensor pointers */
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3) && j < nmeta) {
      mk[j] = header_string(L, -2, who, "metadata key");
      if (lua_type(L, -1) == LUA_TNUMBER) push_number_text(L, -1); /* kept alive in hold */
      else lua_pushvalue(L, -1);
      lua_rawseti(L, hold, (lua_Integer)j + 1);
      lua_rawgeti(L, hold, (lua_Integer)j + 1);
      mv[j] = header_string(L, -1, who, "metadata value");
      lua_pop(L, 2);
      j++;
    }
  }
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2) && i < n) {
    names[i] = header_string(L, -2, who, "tensor name");
    ts[i] = lcnn_test(L, -1);
    if (!ts[i]) return lcnn_error_plain(L, who, "value of '%s' is a closed tensor", names[i]);
    i++;
    lua_pop(L, 1);
  }
  if (cnn_safetensors_save(path, i, names, ts, j, mk, mv)) return lcnn_fail_plain(L, who);
  return 0;
}

/* ---- directories ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* listdir(path, who) -> sorted list of entry names (no "." or ".."), {name = "dir"|"file"|"other"} */
static int io_listdir(lua_State *L) {
  const char *who = lcnn_who(L, 2, "listdir");
  const char *path = check_path(L, 1, who);
  DIR *d = opendir(path);
  if (!d) return lcnn_error_plain(L, who, "%s: cannot open folder (%s)", path, strerror(errno));
  lua_newtable(L);
  lua_newtable(L);
  int names = lua_gettop(L) - 1, kinds = names + 1;
  lua_Integer k = 0;
  struct dirent *e;
  luaL_Buffer b;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, names, ++k);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, path);
    luaL_addchar(&b, '/');
    luaL_addstring(&b, e->d_name);
    luaL_pushresult(&b);
    struct stat st;
    const char *kind = stat(lua_tostring(L, -1), &st) != 0 ? "other"
                       : S_ISDIR(st.st_mode)               ? "dir"
                       : S_ISREG(st.st_mode)               ? "file"
                                                           : "other";
    lua_pop(L, 1);
    lua_pushstring(L, kind);
    lua_setfield(L, kinds, e->d_name);
  }
  closedir(d);
  /* byte order (strcmp), as Python's sorted() gives torchvision; Lua's < would use strcoll */
  const char **v = lua_newuserdatauv(L, sizeof(char *) * (size_t)(k + 1), 0);
  lua_newtable(L); /* keeps the strings alive while the list is rebuilt */
  for (lua_Integer i = 1; i <= k; i++) {
    lua_rawgeti(L, names, i);
    v[i - 1] = lua_tostring(L, -1);
    lua_rawseti(L, -2, i);
  }
  qsort(v, (size_t)k, sizeof *v, cmp_str);
  for (lua_Integer i = 1; i <= k; i++) {
    lua_pushstring(L, v[i - 1]);
    lua_rawseti(L, names, i);
  }
  lua_settop(L, kinds);
  return 2;
}

/* check_file(path, who) -> true, or raises "who: path: not a regular file (a named pipe)": for
 * the readers written in Lua, which io.open would leave blocked on a named pipe */
static int io_check_file(lua_State *L) {
  const char *who = lcnn_who(L, 2, "open");
  const char *path = check_path(L, 1, who);
  if (cnn_file_check(path)) return lcnn_fail_plain(L, who);
  lua_pushboolean(L, 1);
  return 1;
}

/* true for rc 0, else nil and the runtime's message (the io.open-style answer of the writers below) */
static int push_status(lua_State *L, int rc) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, cnn_error_get());
  return 2;
}

/* write_atomic(path, data) -> true | nil, message: the C writers' atomic write (cnn.util.write_file):
 * a device or a pipe written as it is, a symlink kept, a folder refused, a failed write leaving the
 * old file. Renaming a temporary file over path in Lua replaced /dev/null, as root, by a file. */
static int io_write_atomic(lua_State *L) {
  const char *path = check_path(L, 1, "write_file");
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  cnn_atomic_file af;
  int rc = cnn_atomic_open(&af, path);
  if (rc == 0 && n > 0 && fwrite(data, 1, n, af.f) != n) {
    cnn_error_set("%s: write failed (%s)", path, strerror(errno));
    cnn_atomic_abort(&af);
    rc = -1;
  } else if (rc == 0) {
    rc = cnn_atomic_commit(&af);
  }
  return push_status(L, rc);
}

/* probe_write(path) -> true | nil, message: whether the atomic writer could write path, without
 * writing it (its temporary file made and dropped: unnamed where the file system allows, else an
 * exclusive new name, so nothing at a guessable name is followed or truncated) */
static int io_probe_write(lua_State *L) {
  const char *path = check_path(L, 1, "probe_write");
  struct stat st;
  /* a device or a pipe is written as it is, and a FIFO's open would wait for a reader */
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return push_status(L, 0);
  cnn_atomic_file af;
  int rc = cnn_atomic_open(&af, path);
  if (rc == 0) cnn_atomic_abort(&af);
  return push_status(L, rc);
}

/* file_kind(path) -> "file", "dir", "other" (a pipe, a device, ...) or nil when nothing is there */
static int io_file_kind(lua_State *L) {
  const char *path = check_path(L, 1, "file_kind");
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
  return 1;
}

/* ---- batches ---- */

/* gather(src, idx, who) -> rows of src by 0-based int64 indices */
static int io_gather(lua_State *L) {
  const char *who = lcnn_who(L, 3, "gather");
  cnn_tensor *src = check_tensor(L, 1, who), *idx = check_tensor(L, 2, who);
  push_new(L, cnn_batch_gather(src, idx), who);
  return 1;
}

/* gather_float(src, idx, divisor, who) -> the rows as float32 / divisor (uint8 images in one pass) */
static int io_gather_float(lua_State *L) {
  const char *who = lcnn_who(L, 4, "gather");
  double divisor = luaL_checknumber(L, 3);
  cnn_tensor *src = check_tensor(L, 1, who), *idx = check_tensor(L, 2, who);
  push_new(L, cnn_batch_gather_float(src, idx, divisor), who);
  return 1;
}

/* order(n, shuffle, seed or nil, epoch, rank, world_size, who, "drop"|"pad"|"exact")
 *   -> int64 0-based sample order */
static int io_order(lua_State *L) {
  const char *who = lcnn_who(L, 7, "DataLoader");
  lua_Integer n = luaL_checkinteger(L, 1);
  int shuffle = lua_toboolean(L, 2);
  int seeded = !lua_isnoneornil(L, 3);
  uint64_t seed = seeded ? (uint64_t)luaL_checkinteger(L, 3) : 0;
  lua_Integer epoch = luaL_optinteger(L, 4, 0), rank = luaL_optinteger(L, 5, 0), world = luaL_optinteger(L, 6, 1);
  static const char *const modes[] = {"drop", "pad", "exact", NULL};
  cnn_shard_mode mode = (cnn_shard_mode)luaL_checkoption(L, 8, "drop", modes);
  push_new(L, cnn_batch_order(n, shuffle, seeded, seed, epoch, rank, world, mode), who);
  return 1;
}

/* Numbers from a number or a list at idx into a userdata buffer left on the stack. */
static double *number_list(lua_State *L, int idx, const char *who, const char *what, int *count) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    double *v = lua_newuserdatauv(L, sizeof(double), 0);
    v[0] = lua_tonumber(L, idx);
    *count = 1;
    return v;
  }
  if (!lua_istable(L, idx))
    lcnn_error_plain(L, who, "%s must be a number or a list of numbers, got %s", what, luaL_typename(L, idx));
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if (n < 1 || n > 65536) lcnn_error_plain(L, who, "%s must have between 1 and 65536 values, got %d", what, (int)n);
  double *v = lua_newuserdatauv(L, sizeof(double) * (size_t)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TNUMBER) lcnn_error_plain(L, who, "%s[%d] is not a number", what, (int)i);
    v[i - 1] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  *count = (int)n;
  return v;
}

/* normalize(x, mean, std, who) */
static int io_normalize(lua_State *L) {
  const char *who = lcnn_who(L, 4, "normalize");
  check_tensor(L, 1, who);
  int nm, ns;
  double *mean = number_list(L, 2, who, "mean", &nm);
  double *std = number_list(L, 3, who, "std", &ns);
  cnn_tensor *x = check_tensor(L, 1, who); /* after the lists' allocations (see lcnn.h) */
  push_new(L, cnn_batch_normalize(x, nm, mean, ns, std), who);
  return 1;
}

/* random_crop(x, oh, ow, pad_h, pad_w, fill, who) */
static int io_random_crop(lua_State *L) {
  const char *who = lcnn_who(L, 7, "random_crop");
  cnn_tensor *x = check_tensor(L, 1, who);
  lua_Integer oh = luaL_checkinteger(L, 2), ow = luaL_checkinteger(L, 3);
  lua_Integer ph = luaL_optinteger(L, 4, 0), pw = luaL_optinteger(L, 5, 0);
  double fill = luaL_optnumber(L, 6, 0);
  push_new(L, cnn_batch_random_crop(x, oh, ow, ph, pw, fill), who);
  return 1;
}

/* random_hflip(x, p, who) */
static int io_random_hflip(lua_State *L) {
  const char *who = lcnn_who(L, 3, "random_hflip");
  cnn_tensor *x = check_tensor(L, 1, who);
  push_new(L, cnn_batch_random_hflip(x, luaL_optnumber(L, 2, 0.5)), who);
  return 1;
}

void lcnn_open_io(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {
      {"idx_load", io_idx_load},         {"idx_load_u8", io_idx_load_u8},
      {"records", io_records},           {"image_load", io_image_load},
      {"image_save", io_image_save},     {"image_max_pixels", io_image_max_pixels},
      {"png_load", io_png_load},         {"png_save", io_png_save},
      {"safetensors_load", io_st_load},  {"safetensors_save", io_st_save},
      {"listdir", io_listdir},           {"check_file", io_check_file},
      {"file_kind", io_file_kind},       {"gather", io_gather},
      {"gather_float", io_gather_float}, {"order", io_order},
      {"normalize", io_normalize},       {"random_crop", io_random_crop},
      {"random_hflip", io_random_hflip}, {"write_atomic", io_write_atomic},
      {"probe_write", io_probe_write},   {NULL, NULL},
  };
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, tbl, r->name);
  }
}
