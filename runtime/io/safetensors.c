/* safetensors reader and writer (see safetensors.h). The reader trusts nothing: the header is
 * parsed by the strict JSON reader, every number is checked for overflow, and the tensors'
 * byte ranges must tile [0, data size) exactly before a single tensor is allocated, so memory
 * use is bounded by the file's size. Data is then read in one sequential pass. */
#include "cnn/safetensors.h"
#include "atomic_file.h"
#include "cnn/error.h"
#include "cnn/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    case D_U8: l[i] = p[0]; break;
    case D_BOOL: l[i] = p[0] != 0; break;
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
    default: break; /* F32 and I64 are read in place */
    }
  }
  return 0;
}

static int cmp_entry(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Checks one tensor's description; fills e. */
static int parse_entry(const char *path, const char *name, const cnn_json *v, entry *e) {
  char nb[80];
  const char *sn = shown(name, nb, sizeof nb);
  if (v->type != CNN_JSON_OBJECT)
    return cnn_error_set("%s: header entry '%s' is not an object with dtype, shape and data_offsets", path, sn);
  const cnn_json *dt = cnn_json_get(v, "dtype"), *shape = cnn_json_get(v, "shape"),
                 *off = cnn_json_get(v, "data_offsets");
  if (!dt || !shape || !off)
    return cnn_error_set("%s: tensor '%s' lacks %s", path, sn, !dt ? "a dtype" : !shape ? "a shape" : "data_offsets");
  if (dt->type != CNN_JSON_STRING) return cnn_error_set("%s: tensor '%s': dtype must be a string", path, sn);
  int k = 0;
  while (k < NDTYPES && strcmp(dt->str, dtypes[k].name) != 0) k++;
  if (k == NDTYPES || strlen(dt->str) != dt->len) {
    char db[40];
    return cnn_error_set("%s: tensor '%s': unsupported dtype '%s'", path, sn, shown(dt->str, db, sizeof db));
  }
  e->dt = (st_dtype)k;
  if (shape->type != CNN_JSON_ARRAY) return cnn_error_set("%s: tensor '%s': shape must be an array of sizes", path, sn);
  if (shape->len > CNN_MAX_DIMS)
    return cnn_error_set("%s: tensor '%s' has %zu dimensions, more than the %d a tensor can have", path, sn, shape->len,
                         CNN_MAX_DIMS);
  e->ndim = (int)shape->len;
  /* nonzero: the product of the non-zero sizes, which strides reach even when numel is 0 */
  uint64_t numel = 1, nonzero = 1;
  bool overflow = false;
  for (int d = 0; d < e->ndim; d++) {
    const cnn_json *s = &shape->items[d];
    if (s->type != CNN_JSON_NUMBER || !s->is_uint || s->uint > (uint64_t)INT64_MAX)
      return cnn_error_set("%s: tensor '%s': shape entry %d is not a non-negative integer", path, sn, d + 1);
    e->size[d] = (int64_t)s->uint;
    if (s->uint && nonzero > ((uint64_t)INT64_MAX / 16) / s->uint) overflow = true;
    else if (s->uint) nonzero *= s->uint;
    numel *= s->uint;
  }
  char ss[CNN_MAX_DIMS * 22 + 4];
  shape_str(ss, sizeof ss, e->ndim, e->size);
  if (overflow || numel > (uint64_t)INT64_MAX / 16)
    return cnn_error_set("%s: tensor '%s': shape %s has too many elements", path, sn, ss);
  if (off->type != CNN_JSON_ARRAY || off->len != 2 || off->items[0].type != CNN_JSON_NUMBER || !off->items[0].is_uint ||
      off->items[1].type != CNN_JSON_NUMBER || !off->items[1].is_uint)
    return cnn_error_set("%s: tensor '%s': data_offsets must be two non-negative integers [begin, end]", path, sn);
  e->begin = off->items[0].uint;
  e->end = off->items[1].uint;
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

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

int cnn_safetensors_load(const char *path, cnn_safetensors *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return cnn_error_set("%s: cannot open (%s)", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return cnn_error_set("%s: not a regular file", path);
  }
  uint64_t fsize = (uint64_t)st.st_size;
  char *header = NULL;
  cnn_json *root = NULL;
  entry *entries = NULL;
  unsigned char *buf = NULL;
  unsigned char lenbuf[8];
  char nb[80], nb2[80];
  if (fsize < 8 || fread(lenbuf, 1, 8, f) != 8) {
    cnn_error_set("%s: file has %llu bytes, too short for the 8-byte header length", path, (unsigned long long)fsize);
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
  root = cnn_json_parse(header, hlen);
  if (!root) {
    char why[512]; /* the message is rewritten from a copy: source and target are one buffer */
    snprintf(why, sizeof why, "%s", cnn_error_get());
    cnn_error_set("%s: header: %s", path, why);
    goto fail;
  }
  uint64_t data_size = fsize - 8 - hlen;
  size_t ntensors = 0;
  for (size_t i = 0; i < root->len; i++) {
    if (strlen(root->keys[i]) != root->key_lens[i]) {
      cnn_error_set("%s: a tensor name contains a NUL character", path);
      goto fail;
    }
    if (strcmp(root->keys[i], "__metadata__") != 0) ntensors++;
  }
  entries = calloc(ntensors ? ntensors : 1, sizeof *entries);
  if (!entries) {
    cnn_error_set("out of memory");
    goto fail;
  }
  const cnn_json *meta = NULL;
  size_t k = 0;
  for (size_t i = 0; i < root->len; i++) {
    if (strcmp(root->keys[i], "__metadata__") == 0) {
      meta = &root->items[i];
      continue;
    }
    if (parse_entry(path, root->keys[i], &root->items[i], &entries[k])) goto fail;
    k++;
  }
  if (meta) {
    if (meta->type != CNN_JSON_OBJECT) {
      cnn_error_set("%s: __metadata__ must be an object mapping strings to strings", path);
      goto fail;
    }
    for (size_t i = 0; i < meta->len; i++) {
      if (meta->items[i].type != CNN_JSON_STRING) {
        cnn_error_set("%s: __metadata__ value of '%s' is not a string", path, shown(meta->keys[i], nb, sizeof nb));
        goto fail;
      }
      if (strlen(meta->keys[i]) != meta->key_lens[i] || strlen(meta->items[i].str) != meta->items[i].len) {
        cnn_error_set("%s: __metadata__ contains a NUL character", path);
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
    if (e->dt == D_F32 || e->dt == D_I64) {
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
  if (meta && meta->len) {
    out->meta_keys = calloc(meta->len, sizeof *out->meta_keys);
    out->meta_values = calloc(meta->len, sizeof *out->meta_values);
    if (!out->meta_keys || !out->meta_values) {
      cnn_error_set("out of memory");
      goto fail;
    }
    for (size_t i = 0; i < meta->len; i++) {
      out->meta_keys[i] = dupstr(meta->keys[i]);
      out->meta_values[i] = dupstr(meta->items[i].str);
      out->nmeta = i + 1;
      if (!out->meta_keys[i] || !out->meta_values[i]) {
        cnn_error_set("out of memory");
        goto fail;
      }
    }
  }
  free(buf);
  free(entries);
  cnn_json_free(root);
  free(header);
  fclose(f);
  return 0;

fail:
  cnn_safetensors_clear(out);
  free(buf);
  free(entries);
  cnn_json_free(root);
  free(header);
  fclose(f);
  return -1;
}

/* ---- writing ---- */

typedef struct {
  char *s;
  size_t len, cap;
  bool oom;
} sbuf;

static bool reserve(sbuf *b, size_t extra) {
  if (b->oom) return false;
  if (b->len + extra + 1 <= b->cap) return true;
  size_t nc = b->cap ? b->cap : 256;
  while (nc < b->len + extra + 1) nc *= 2;
  char *p = realloc(b->s, nc);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->s = p;
  b->cap = nc;
  return true;
}

static void puts_(sbuf *b, const char *s) {
  size_t n = strlen(s);
  if (!reserve(b, n)) return;
  memcpy(b->s + b->len, s, n + 1);
  b->len += n;
}

static void put_json_string(sbuf *b, const char *s) {
  size_t n = strlen(s), need = cnn_json_escape(NULL, 0, s, n);
  if (!reserve(b, need)) return;
  cnn_json_escape(b->s + b->len, need, s, n);
  b->len += need;
  b->s[b->len] = '\0';
}

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

int cnn_safetensors_save(const char *path, size_t n, const char *const *names, const cnn_tensor *const *tensors,
                         size_t nmeta, const char *const *meta_keys, const char *const *meta_values) {
  char nb[80];
  for (size_t i = 0; i < n; i++) {
    if (!cnn_json_utf8_valid(names[i], strlen(names[i])))
      return cnn_error_set("%s: tensor name '%s' is not valid UTF-8", path, shown(names[i], nb, sizeof nb));
    if (strcmp(names[i], "__metadata__") == 0) return cnn_error_set("%s: '__metadata__' cannot name a tensor", path);
    if (tensors[i]->dtype != CNN_FLOAT32 && tensors[i]->dtype != CNN_INT64)
      return cnn_error_set("%s: tensor '%s' has an unsupported dtype", path, shown(names[i], nb, sizeof nb));
  }
  for (size_t i = 0; i < nmeta; i++)
    if (!cnn_json_utf8_valid(meta_keys[i], strlen(meta_keys[i])) ||
        !cnn_json_utf8_valid(meta_values[i], strlen(meta_values[i])))
      return cnn_error_set("%s: metadata entry '%s' is not valid UTF-8", path, shown(meta_keys[i], nb, sizeof nb));
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

  sbuf h = {0};
  puts_(&h, "{");
  bool first = true;
  if (nmeta) {
    puts_(&h, "\"__metadata__\":{");
    for (size_t j = 0; j < nmeta; j++) {
      if (j) puts_(&h, ",");
      put_json_string(&h, morder[j].name);
      puts_(&h, ":");
      put_json_string(&h, meta_values[morder[j].index]);
    }
    puts_(&h, "}");
    first = false;
  }
  uint64_t at = 0;
  for (size_t j = 0; j < n; j++) {
    const cnn_tensor *t = tensors[order[j].index];
    char num[64];
    if (!first) puts_(&h, ",");
    first = false;
    put_json_string(&h, order[j].name);
    puts_(&h, t->dtype == CNN_FLOAT32 ? ":{\"dtype\":\"F32\",\"shape\":[" : ":{\"dtype\":\"I64\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->size[d]);
      puts_(&h, num);
    }
    uint64_t nbytes = (uint64_t)cnn_tensor_numel(t) * cnn_dtype_size(t->dtype);
    snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
             (unsigned long long)(at + nbytes));
    puts_(&h, num);
    at += nbytes;
  }
  puts_(&h, "}");
  while (!h.oom && h.len % 8) puts_(&h, " ");
  if (h.oom) {
    free(h.s);
    free(order);
    free(morder);
    return cnn_error_set("out of memory");
  }
  if (h.len > CNN_SAFETENSORS_MAX_HEADER) {
    free(h.s);
    free(order);
    free(morder);
    return cnn_error_set("%s: the header would be %zu bytes, over the format's %u-byte limit", path, h.len,
                         CNN_SAFETENSORS_MAX_HEADER);
  }

  cnn_atomic_file af;
  if (cnn_atomic_open(&af, path)) {
    free(h.s);
    free(order);
    free(morder);
    return -1;
  }
  unsigned char lenbuf[8];
  for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  bool ok = fwrite(lenbuf, 1, 8, af.f) == 8 && fwrite(h.s, 1, h.len, af.f) == h.len;
  free(h.s);
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
