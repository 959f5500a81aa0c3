/* safetensors reader and writer (see safetensors.h). The reader trusts nothing: the header's
 * nesting depth and bytes are checked before libjansson parses it (strict RFC 8259, duplicate
 * keys rejected, the text bounded by its length), every number is checked for overflow, and the
 * tensors' byte ranges must tile [0, data size) exactly before a single tensor is allocated, so
 * memory use is bounded by the file's size. Data is then read in one sequential pass. The writer
 * builds the header with libjansson too, so names and metadata are escaped as the reader expects. */
#include "cnn/safetensors.h"
#include "io/file.h"
#include "cnn/error.h"
#include "io/atomic_file.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* libjansson does not survive every failed allocation: its lexer drops the character it could not
 * append (a name read as 'classifier.0.bas') or fails an assert (an abort), json_dumps drops the
 * key it could not write (a corrupt header committed as a good file). So its allocations go
 * through json_alloc: a dump during which one failed is out of memory, whatever libjansson
 * returned; a parse takes its memory from an arena of its own (parse_header), and a chunk the
 * arena cannot get ends the parse by a longjmp before libjansson sees a NULL. */
typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t size, used;
  alignas(16) unsigned char data[];
} arena_chunk;

typedef struct {
  arena_chunk *chunks; /* the newest first */
  size_t next_size;
  bool can_jump; /* parse_header's jmp_buf is live */
  jmp_buf out_of_memory;
} json_arena;

static _Thread_local bool json_alloc_failed;
static _Thread_local json_arena *json_arena_now; /* this thread's parse, while its tree lives */
static pthread_once_t json_hooks_once = PTHREAD_ONCE_INIT;

static void *arena_alloc(json_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  arena_chunk *c = a->chunks;
  if (!c || c->size - c->used < n) {
    size_t size = a->next_size > n ? a->next_size : n;
    c = malloc(sizeof *c + size);
    if (!c) {
      json_alloc_failed = true;
      if (a->can_jump) longjmp(a->out_of_memory, 1);
      return NULL;
    }
    *c = (arena_chunk){a->chunks, size, 0};
    a->chunks = c;
    a->next_size = size * 2;
  }
  void *p = c->data + c->used;
  c->used += n;
  return p;
}

static bool in_arena(const json_arena *a, const void *p) {
  for (const arena_chunk *c = a->chunks; c; c = c->next)
    if ((const unsigned char *)p >= c->data && (const unsigned char *)p < c->data + c->size) return true;
  return false;
}

static void arena_release(json_arena *a) {
  for (arena_chunk *c = a->chunks, *next; c; c = next) next = c->next, free(c);
  a->chunks = NULL;
}

static void *json_alloc(size_t n) {
  if (json_arena_now) return arena_alloc(json_arena_now, n);
  void *p = malloc(n);
  if (!p) json_alloc_failed = true;
  return p;
}

static void json_free(void *p) {
  if (json_arena_now && in_arena(json_arena_now, p)) return; /* freed with the arena */
  free(p);
}

static void json_hooks(void) { json_set_alloc_funcs(json_alloc, json_free); }

/* The header parsed into a (set, empty) arena that holds the tree until arena_release; NULL with
 * *oom when memory ran out, NULL with *err filled when the text is not valid JSON. */
static json_t *parse_header(const char *text, size_t len, json_arena *a, json_error_t *err, bool *oom) {
  pthread_once(&json_hooks_once, json_hooks);
  *a = (json_arena){.next_size = 4096 + len}; /* doubling from there: a header's tree is a few times its text */
  json_arena_now = a;
  json_alloc_failed = false;
  if (setjmp(a->out_of_memory)) { /* a chunk could not be had, inside libjansson */
    a->can_jump = false;
    arena_release(a);
    json_arena_now = NULL;
    *oom = true;
    return NULL;
  }
  a->can_jump = true;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, err);
  a->can_jump = false;
  *oom = json_alloc_failed;
  return root;
}

/* Before a libjansson call whose allocations must all succeed. */
static void json_watch(void) {
  pthread_once(&json_hooks_once, json_hooks);
  json_alloc_failed = false;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

#define CHUNK 65536

typedef enum {
  D_F32,
  D_I64,
  D_F16,
  D_BF16,
  D_F64,
  D_F8E4M3,
  D_F8E5M2,
  D_I8,
  D_U8,
  D_I16,
  D_U16,
  D_I32,
  D_U32,
  D_U64,
  D_BOOL
} st_dtype;

static const struct {
  const char *name;
  int size;
} dtypes[] = {
    [D_F32] = {"F32", 4}, [D_I64] = {"I64", 8},        [D_F16] = {"F16", 2},        [D_BF16] = {"BF16", 2},
    [D_F64] = {"F64", 8}, [D_F8E4M3] = {"F8_E4M3", 1}, [D_F8E5M2] = {"F8_E5M2", 1}, [D_I8] = {"I8", 1},
    [D_U8] = {"U8", 1},   [D_I16] = {"I16", 2},        [D_U16] = {"U16", 2},        [D_I32] = {"I32", 4},
    [D_U32] = {"U32", 4}, [D_U64] = {"U64", 8},        [D_BOOL] = {"BOOL", 1},
};
#define NDTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

/* Deeper nesting than a header needs (3 levels) is refused before parsing: libjansson's own
 * limit (2048) keeps the C stack safe but not the allocation count small. */
#define MAX_DEPTH 64

typedef struct {
  const char *name; /* borrowed from the JSON tree */
  st_dtype dt;
  int ndim;
  int64_t size[CNN_MAX_DIMS];
  uint64_t begin, end;
} entry;

/* A name shortened for messages. */
static const char *shown(const char *name, char *buf, size_t cap) {
  size_t n = strlen(name);
  if (n + 1 <= cap) return name;
  snprintf(buf, cap, "%.*s...", (int)(cap - 4), name);
  return buf;
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *size) {
  size_t k = (size_t)snprintf(out, cap, "[");
  for (int d = 0; d < ndim && k < cap; d++)
    k += (size_t)snprintf(out + k, cap - k, d ? ", %lld" : "%lld", (long long)size[d]);
  if (k < cap) snprintf(out + k, cap - k, "]");
}

void cnn_safetensors_clear(cnn_safetensors *st) {
  for (size_t i = 0; i < st->n; i++) {
    if (st->names) free(st->names[i]);
    if (st->tensors) cnn_tensor_release(st->tensors[i]);
  }
  for (size_t i = 0; i < st->nmeta; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->names);
  free(st->tensors);
  free(st->meta_keys);
  free(st->meta_values);
  memset(st, 0, sizeof *st);
}

/* ---- element conversion (little-endian source bytes) ---- */

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0x1F) bits = sign | 0x7F800000u | (mant << 13); /* inf, nan */
  else if (exp) bits = sign | ((exp + 112) << 23) | (mant << 13);
  else { /* zero or subnormal: mant * 2^-24 */ float f = (float)mant * 0x1p-24f;
    return sign ? -f : f;
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static float e4m3_to_float(uint8_t b) { /* the "fn" variant: bias 7, no infinities, S.1111.111 is NaN */
  int sign = b >> 7, exp = (b >> 3) & 0xF, mant = b & 7;
  float f;
  if (exp == 0xF && mant == 7) return NAN;
  if (exp == 0) f = (float)mant * 0x1p-9f;
  else f = ldexpf(1.0f + (float)mant / 8.0f, exp - 7);
  return sign ? -f : f;
}

static uint64_t le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Converts count elements of src (file bytes of type dt) into dst at element offset at.
 * Returns 0, or -1 for a U64 value beyond int64. */
static int convert(st_dtype dt, const unsigned char *src, int64_t count, cnn_tensor *dst, int64_t at) {
  float *f = dst->dtype == CNN_FLOAT32 ? cnn_tensor_f32(dst) + at : NULL;
  int64_t *l = dst->dtype == CNN_INT64 ? cnn_tensor_i64(dst) + at : NULL;
  uint8_t *b = dst->dtype == CNN_BOOL ? cnn_tensor_u8(dst) + at : NULL;
  int sz = dtypes[dt].size;
  for (int64_t i = 0; i < count; i++) {
    const unsigned char *p = src + i * sz;
    switch (dt) {
    case D_F16: f[i] = half_to_float((uint16_t)le(p, 2)); break;
    case D_BF16: {
      uint32_t bits = (uint32_t)le(p, 2) << 16;
      memcpy(&f[i], &bits, 4);
      break;
    }
    case D_F64: {
      uint64_t bits = le(p, 8);
      double d;
      memcpy(&d, &bits, 8);
      f[i] = (float)d;
      break;
    }
    case D_F8E4M3: f[i] = e4m3_to_float(p[0]); break;
    case D_F8E5M2: f[i] = half_to_float((uint16_t)(p[0] << 8)); break;
    case D_I8: l[i] = (int8_t)p[0]; break;
    case D_BOOL: b[i] = p[0] != 0; break; /* a bool tensor holds only 0 and 1 */
    case D_I16: l[i] = (int16_t)(uint16_t)le(p, 2); break;
    case D_U16: l[i] = (int64_t)le(p, 2); break;
    case D_I32: l[i] = (int32_t)(uint32_t)le(p, 4); break;
    case D_U32: l[i] = (int64_t)le(p, 4); break;
    case D_U64: {
      uint64_t v = le(p, 8);
      if (v > (uint64_t)INT64_MAX) return -1;
      l[i] = (int64_t)v;
      break;
    }
    default: break; /* F32, I64 and U8 are read in place */
    }
  }
  return 0;
}

/* The safetensors dtype a tensor of dt is saved as. */
static const char *st_name(cnn_dtype dt) {
  switch (dt) {
  case CNN_INT64: return "I64";
  case CNN_UINT8: return "U8";
  case CNN_BOOL: return "BOOL";
  case CNN_FLOAT32: break;
  }
  return "F32";
}

static int cmp_entry(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* A JSON integer >= 0 (written without fraction or exponent: libjansson makes those reals). */
static bool is_count(const json_t *v) { return json_is_integer(v) && json_integer_value(v) >= 0; }

/* Checks one tensor's description; fills e. */
static int parse_entry(const char *path, const char *name, const json_t *v, entry *e) {
  char nb[80];
  const char *sn = shown(name, nb, sizeof nb);
  if (!json_is_object(v))
    return cnn_error_set("%s: header entry '%s' is not an object with dtype, shape and data_offsets", path, sn);
  const json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
               *off = json_object_get(v, "data_offsets");
  if (!dt || !shape || !off)
    return cnn_error_set("%s: tensor '%s' lacks %s", path, sn, !dt ? "a dtype" : !shape ? "a shape" : "data_offsets");
  if (!json_is_string(dt)) return cnn_error_set("%s: tensor '%s': dtype must be a string", path, sn);
  const char *dts = json_string_value(dt);
  int k = 0;
  while (k < NDTYPES && strcmp(dts, dtypes[k].name) != 0) k++;
  if (k == NDTYPES) {
    char db[40];
    return cnn_error_set("%s: tensor '%s': unsupported dtype '%s'", path, sn, shown(dts, db, sizeof db));
  }
  e->dt = (st_dtype)k;
  if (!json_is_array(shape)) return cnn_error_set("%s: tensor '%s': shape must be an array of sizes", path, sn);
  if (json_array_size(shape) > CNN_MAX_DIMS)
    return cnn_error_set("%s: tensor '%s' has %zu dimensions, more than the %d a tensor can have", path, sn,
                         json_array_size(shape), CNN_MAX_DIMS);
  e->ndim = (int)json_array_size(shape);
  /* nonzero: the product of the non-zero sizes, which strides reach even when numel is 0 */
  uint64_t numel = 1, nonzero = 1;
  bool overflow = false;
  for (int d = 0; d < e->ndim; d++) {
    const json_t *s = json_array_get(shape, (size_t)d);
    if (!is_count(s))
      return cnn_error_set("%s: tensor '%s': shape entry %d is not a non-negative integer", path, sn, d + 1);
    uint64_t n = (uint64_t)json_integer_value(s);
    e->size[d] = (int64_t)n;
    if (n && nonzero > ((uint64_t)INT64_MAX / 16) / n) overflow = true;
    else if (n) nonzero *= n;
    numel *= n;
  }
  char ss[CNN_MAX_DIMS * 22 + 4];
  shape_str(ss, sizeof ss, e->ndim, e->size);
  if (overflow || numel > (uint64_t)INT64_MAX / 16)
    return cnn_error_set("%s: tensor '%s': shape %s has too many elements", path, sn, ss);
  if (!json_is_array(off) || json_array_size(off) != 2 || !is_count(json_array_get(off, 0)) ||
      !is_count(json_array_get(off, 1)))
    return cnn_error_set("%s: tensor '%s': data_offsets must be two non-negative integers [begin, end]", path, sn);
  e->begin = (uint64_t)json_integer_value(json_array_get(off, 0));
  e->end = (uint64_t)json_integer_value(json_array_get(off, 1));
  if (e->end < e->begin)
    return cnn_error_set("%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, sn,
                         (unsigned long long)e->begin, (unsigned long long)e->end);
  uint64_t nbytes = numel * (uint64_t)dtypes[k].size;
  if (e->end - e->begin != nbytes)
    return cnn_error_set("%s: tensor '%s': shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu",
                         path, sn, ss, dtypes[k].name, (unsigned long long)nbytes, (unsigned long long)e->begin,
                         (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
  e->name = name;
  return 0;
}

/* What libjansson is not asked to judge: a NUL byte anywhere (it would read one as the end of
 * the text) and nesting deeper than MAX_DEPTH. Brackets inside strings do not count; a string
 * left open ends the scan (the parser then reports it). Returns 0, or -1 with the error set. */
static int prescan(const char *path, const char *h, size_t n) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; i++) {
    char c = h[i];
    if (c == '\0') return cnn_error_set("%s: header: invalid JSON at byte %zu: NUL byte", path, i);
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > MAX_DEPTH)
        return cnn_error_set("%s: header: invalid JSON at byte %zu: nesting too deep (more than %d levels)", path, i,
                             MAX_DEPTH);
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return 0;
}

/* The header's parse error as "invalid JSON at byte N: problem", N the 0-based offset of the
 * last byte libjansson read. A duplicate key is named as it is written in the file. */
static int json_failed(const char *path, const char *h, size_t n, const json_error_t *err) {
  size_t at = err->position > 0 ? (size_t)err->position - 1 : 0;
  if (json_error_code(err) == json_error_duplicate_key && at < n && h[at] == '"') {
    size_t open = at; /* the opening quote: the first one back that no backslash escapes */
    while (open > 0) {
      open--;
      size_t bs = 0;
      while (open > bs && h[open - 1 - bs] == '\\') bs++;
      if (h[open] == '"' && bs % 2 == 0) break;
    }
    size_t len = at + 1 - open;
    return cnn_error_set("%s: header: invalid JSON at byte %zu: duplicate key %.*s%s", path, open,
                         (int)(len > 64 ? 64 : len), h + open, len > 64 ? "...\"" : "");
  }
  /* err->text ends in " near 'token'", which shows the offending bytes */
  return cnn_error_set("%s: header: invalid JSON at byte %zu: %s", path, at, err->text);
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

int cnn_safetensors_load(const char *path, cnn_safetensors *out) {
  memset(out, 0, sizeof *out);
  FILE *f = cnn_file_open(path);
  if (!f) return -1;
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    fclose(f);
    return cnn_error_set("%s: cannot read its status (%s)", path, strerror(errno));
  }
  uint64_t fsize = (uint64_t)st.st_size;
  char *header = NULL;
  json_arena arena = {0}; /* root's memory */
  json_t *root = NULL;
  entry *entries = NULL;
  unsigned char *buf = NULL;
  unsigned char lenbuf[8];
  char nb[80], nb2[80];
  if (fsize < 8) {
    cnn_error_set("%s: file has %llu bytes, too short for the 8-byte header length", path, (unsigned long long)fsize);
    goto fail;
  }
  if (fread(lenbuf, 1, 8, f) != 8) { /* the file was cut (rewritten in place) since its size was read */
    cnn_error_set("%s: read error in the header length (%s)", path, ferror(f) ? strerror(errno) : "file shrank");
    goto fail;
  }
  uint64_t hlen = le(lenbuf, 8);
  if (hlen > CNN_SAFETENSORS_MAX_HEADER) {
    cnn_error_set("%s: header length %llu exceeds the %u-byte limit (not a safetensors file?)", path,
                  (unsigned long long)hlen, CNN_SAFETENSORS_MAX_HEADER);
    goto fail;
  }
  if (hlen > fsize - 8) {
    cnn_error_set("%s: header length %llu runs past the end of the file (%llu bytes after the length field)", path,
                  (unsigned long long)hlen, (unsigned long long)(fsize - 8));
    goto fail;
  }
  if (hlen < 2) {
    cnn_error_set("%s: header length %llu is too short for a JSON object", path, (unsigned long long)hlen);
    goto fail;
  }
  header = malloc(hlen);
  if (!header) {
    cnn_error_set("out of memory");
    goto fail;
  }
  if (fread(header, 1, hlen, f) != hlen) {
    cnn_error_set("%s: read error in the header (%s)", path, ferror(f) ? strerror(errno) : "file shrank");
    goto fail;
  }
  if (header[0] != '{') {
    cnn_error_set("%s: header does not start with '{' (not a safetensors file?)", path);
    goto fail;
  }
  if (prescan(path, header, hlen)) goto fail;
  json_error_t jerr;
  bool oom = false;
  root = parse_header(header, hlen, &arena, &jerr, &oom);
  if (oom) {
    cnn_error_set("out of memory (reading the header of %s)", path);
    goto fail;
  }
  if (!root) {
    json_failed(path, header, hlen, &jerr);
    goto fail;
  }
  uint64_t data_size = fsize - 8 - hlen;
  size_t ntensors = json_object_size(root) - (json_object_get(root, "__metadata__") ? 1 : 0);
  entries = calloc(ntensors ? ntensors : 1, sizeof *entries);
  if (!entries) {
    cnn_error_set("out of memory");
    goto fail;
  }
  const json_t *meta = json_object_get(root, "__metadata__");
  size_t k = 0;
  const char *key;
  json_t *value;
  json_object_foreach(root, key, value) { /* in file order */
    if (value == meta) continue;
    if (parse_entry(path, key, value, &entries[k])) goto fail;
    k++;
  }
  if (meta) {
    if (!json_is_object(meta)) {
      cnn_error_set("%s: __metadata__ must be an object mapping strings to strings", path);
      goto fail;
    }
    json_object_foreach((json_t *)meta, key, value) {
      if (!json_is_string(value)) { /* strings hold no NUL: libjansson refuses \u0000 without JSON_ALLOW_NUL */
        cnn_error_set("%s: __metadata__ value of '%s' is not a string", path, shown(key, nb, sizeof nb));
        goto fail;
      }
    }
  }
  /* the byte ranges, sorted, must tile [0, data_size) */
  qsort(entries, ntensors, sizeof *entries, cmp_entry);
  uint64_t at = 0;
  for (size_t i = 0; i < ntensors; i++) {
    const entry *e = &entries[i];
    if (e->end > data_size) {
      cnn_error_set(
          "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%llu bytes; truncated file?)", path,
          shown(e->name, nb, sizeof nb), (unsigned long long)e->begin, (unsigned long long)e->end,
          (unsigned long long)data_size);
      goto fail;
    }
    if (e->begin < at) {
      cnn_error_set("%s: tensors '%s' and '%s' overlap (data_offsets [%llu, %llu] and [%llu, %llu])", path,
                    shown(entries[i - 1].name, nb, sizeof nb), shown(e->name, nb2, sizeof nb2),
                    (unsigned long long)entries[i - 1].begin, (unsigned long long)entries[i - 1].end,
                    (unsigned long long)e->begin, (unsigned long long)e->end);
      goto fail;
    }
    if (e->begin > at) {
      cnn_error_set("%s: data bytes [%llu, %llu) belong to no tensor (gap before tensor '%s')", path,
                    (unsigned long long)at, (unsigned long long)e->begin, shown(e->name, nb, sizeof nb));
      goto fail;
    }
    at = e->end;
  }
  if (at != data_size) {
    cnn_error_set("%s: the last %llu data bytes belong to no tensor (data is %llu bytes, tensors end at %llu)", path,
                  (unsigned long long)(data_size - at), (unsigned long long)data_size, (unsigned long long)at);
    goto fail;
  }

  /* everything checks out: allocate and read in file order */
  out->names = calloc(ntensors ? ntensors : 1, sizeof *out->names);
  out->tensors = calloc(ntensors ? ntensors : 1, sizeof *out->tensors);
  buf = malloc(CHUNK);
  if (!out->names || !out->tensors || !buf) {
    cnn_error_set("out of memory");
    goto fail;
  }
  for (size_t i = 0; i < ntensors; i++) {
    const entry *e = &entries[i];
    cnn_dtype want = (e->dt == D_F32 || e->dt == D_F16 || e->dt == D_BF16 || e->dt == D_F64 || e->dt == D_F8E4M3 ||
                      e->dt == D_F8E5M2)
                         ? CNN_FLOAT32
                     : e->dt == D_U8   ? CNN_UINT8
                     : e->dt == D_BOOL ? CNN_BOOL
                                       : CNN_INT64;
    cnn_tensor *t = cnn_tensor_empty(want, e->ndim, e->size);
    if (!t) goto fail;
    out->tensors[i] = t;
    out->names[i] = dupstr(e->name);
    out->n = i + 1;
    if (!out->names[i]) {
      cnn_error_set("out of memory");
      goto fail;
    }
    uint64_t nbytes = e->end - e->begin;
    if (e->dt == D_F32 || e->dt == D_I64 || e->dt == D_U8) {
      if (nbytes && fread(cnn_tensor_data(t), 1, nbytes, f) != nbytes) {
        cnn_error_set("%s: read error in tensor '%s' (%s)", path, shown(e->name, nb, sizeof nb),
                      ferror(f) ? strerror(errno) : "file shrank");
        goto fail;
      }
      continue;
    }
    int sz = dtypes[e->dt].size;
    int64_t count = (int64_t)(nbytes / (uint64_t)sz), done = 0, per = CHUNK / sz;
    while (done < count) {
      int64_t n = count - done < per ? count - done : per;
      if (fread(buf, 1, (size_t)(n * sz), f) != (size_t)(n * sz)) {
        cnn_error_set("%s: read error in tensor '%s' (%s)", path, shown(e->name, nb, sizeof nb),
                      ferror(f) ? strerror(errno) : "file shrank");
        goto fail;
      }
      if (convert(e->dt, buf, n, t, done)) {
        cnn_error_set("%s: tensor '%s': a U64 value does not fit in int64", path, shown(e->name, nb, sizeof nb));
        goto fail;
      }
      done += n;
    }
  }
  size_t nmeta = meta ? json_object_size(meta) : 0;
  if (nmeta) {
    out->meta_keys = calloc(nmeta, sizeof *out->meta_keys);
    out->meta_values = calloc(nmeta, sizeof *out->meta_values);
    if (!out->meta_keys || !out->meta_values) {
      cnn_error_set("out of memory");
      goto fail;
    }
    size_t i = 0;
    json_object_foreach((json_t *)meta, key, value) {
      out->meta_keys[i] = dupstr(key);
      out->meta_values[i] = dupstr(json_string_value(value));
      out->nmeta = ++i;
      if (!out->meta_keys[i - 1] || !out->meta_values[i - 1]) {
        cnn_error_set("out of memory");
        goto fail;
      }
    }
  }
  free(buf);
  free(entries);
  json_decref(root);
  json_arena_now = NULL;
  arena_release(&arena);
  free(header);
  fclose(f);
  return 0;

fail:
  cnn_safetensors_clear(out);
  free(buf);
  free(entries);
  json_decref(root);
  json_arena_now = NULL;
  arena_release(&arena);
  free(header);
  fclose(f);
  return -1;
}

/* ---- writing ---- */

typedef struct {
  const char *name;
  size_t index;
} named;

static int cmp_named(const void *a, const void *b) {
  return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* The indices of names[0..n) in byte order of the names; NULL when out of memory. Sets *dup to
 * a repeated name, if any. */
static named *sorted(const char *const *names, size_t n, const char **dup) {
  named *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return NULL;
  for (size_t i = 0; i < n; i++) v[i] = (named){names[i], i};
  qsort(v, n, sizeof *v, cmp_named);
  *dup = NULL;
  for (size_t i = 1; i < n && !*dup; i++)
    if (strcmp(v[i - 1].name, v[i].name) == 0) *dup = v[i].name;
  return v;
}

/* Sets obj[key] = value (a new reference, stolen; NULL when out of memory). */
static bool put(json_t *obj, const char *key, json_t *value) {
  return value && json_object_set_new(obj, key, value) == 0;
}

/* The header object: "__metadata__" first, then one entry per tensor in name order (libjansson
 * keeps insertion order). NULL when out of memory. */
static json_t *header_json(size_t n, const named *order, const cnn_tensor *const *tensors, size_t nmeta,
                           const named *morder, const char *const *meta_values) {
  json_t *h = json_object();
  bool ok = h != NULL;
  if (ok && nmeta) {
    json_t *m = json_object();
    ok = put(h, "__metadata__", m);
    for (size_t j = 0; ok && j < nmeta; j++) ok = put(m, morder[j].name, json_string(meta_values[morder[j].index]));
  }
  uint64_t at = 0;
  for (size_t j = 0; ok && j < n; j++) {
    const cnn_tensor *t = tensors[order[j].index];
    json_t *e = json_object(), *shape = json_array();
    ok = put(h, order[j].name, e) && put(e, "dtype", json_string(st_name(t->dtype)));
    if (ok) ok = put(e, "shape", shape); /* shape is e's now, or freed by libjansson when that failed */
    else json_decref(shape);
    for (int d = 0; ok && d < t->ndim; d++) ok = json_array_append_new(shape, json_integer(t->size[d])) == 0;
    uint64_t nbytes = (uint64_t)cnn_tensor_numel(t) * cnn_dtype_size(t->dtype);
    ok = ok && put(e, "data_offsets", json_pack("[II]", (json_int_t)at, (json_int_t)(at + nbytes)));
    at += nbytes; /* tensors exist in memory: the sum fits in int64 */
  }
  if (!ok) json_decref(h);
  return ok ? h : NULL;
}

/* True when s is valid UTF-8 (libjansson checks it when making a string). */
static bool utf8_valid(const char *s) {
  json_t *v = json_string(s);
  json_decref(v);
  return v != NULL;
}

int cnn_safetensors_save(const char *path, size_t n, const char *const *names, const cnn_tensor *const *tensors,
                         size_t nmeta, const char *const *meta_keys, const char *const *meta_values) {
  char nb[80];
  json_watch(); /* utf8_valid's NULL is out of memory when an allocation failed */
  for (size_t i = 0; i < n; i++) {
    if (!utf8_valid(names[i]))
      return json_alloc_failed
                 ? cnn_error_set("out of memory")
                 : cnn_error_set("%s: tensor name '%s' is not valid UTF-8", path, shown(names[i], nb, sizeof nb));
    if (strcmp(names[i], "__metadata__") == 0) return cnn_error_set("%s: '__metadata__' cannot name a tensor", path);
  }
  for (size_t i = 0; i < nmeta; i++)
    if (!utf8_valid(meta_keys[i]) || !utf8_valid(meta_values[i]))
      return json_alloc_failed ? cnn_error_set("out of memory")
                               : cnn_error_set("%s: metadata entry '%s' is not valid UTF-8", path,
                                               shown(meta_keys[i], nb, sizeof nb));
  const char *dup, *mdup;
  named *order = sorted(names, n, &dup), *morder = sorted(meta_keys, nmeta, &mdup);
  if (!order || !morder) {
    free(order);
    free(morder);
    return cnn_error_set("out of memory");
  }
  if (dup || mdup) {
    cnn_error_set("%s: two %s are named '%s'", path, dup ? "tensors" : "metadata entries",
                  shown(dup ? dup : mdup, nb, sizeof nb));
    free(order);
    free(morder);
    return -1;
  }

  /* compact: {"k":v,...}, strings as UTF-8 with only '"', '\\' and control characters escaped */
  json_watch();
  json_t *hj = header_json(n, order, tensors, nmeta, morder, meta_values);
  char *text = hj ? json_dumps(hj, JSON_COMPACT) : NULL;
  json_decref(hj);
  if (json_alloc_failed) { /* text may lack a key: never write it */
    free(text);
    text = NULL;
  }
  size_t tlen = text ? strlen(text) : 0, hlen = (tlen + 7) / 8 * 8;
  char *hs = text ? realloc(text, hlen) : NULL;
  if (!hs) {
    free(text);
    free(order);
    free(morder);
    return cnn_error_set("out of memory");
  }
  memset(hs + tlen, ' ', hlen - tlen);
  if (hlen > CNN_SAFETENSORS_MAX_HEADER) {
    free(hs);
    free(order);
    free(morder);
    return cnn_error_set("%s: the header would be %zu bytes, over the format's %u-byte limit", path, hlen,
                         CNN_SAFETENSORS_MAX_HEADER);
  }

  cnn_atomic_file af;
  if (cnn_atomic_open(&af, path)) {
    free(hs);
    free(order);
    free(morder);
    return -1;
  }
  unsigned char lenbuf[8];
  for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  bool ok = fwrite(lenbuf, 1, 8, af.f) == 8 && fwrite(hs, 1, hlen, af.f) == hlen;
  free(hs);
  for (size_t j = 0; ok && j < n; j++) {
    cnn_tensor *c = cnn_tensor_contiguous(tensors[order[j].index]);
    if (!c) {
      free(order);
      free(morder);
      cnn_atomic_abort(&af);
      return -1;
    }
    size_t nbytes = (size_t)cnn_tensor_numel(c) * cnn_dtype_size(c->dtype);
    ok = nbytes == 0 || fwrite(cnn_tensor_data(c), 1, nbytes, af.f) == nbytes;
    cnn_tensor_release(c);
  }
  free(order);
  free(morder);
  if (!ok) {
    int e = errno;
    cnn_atomic_abort(&af);
    return cnn_error_set("%s: write failed (%s)", path, strerror(e));
  }
  return cnn_atomic_commit(&af);
}
