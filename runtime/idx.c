/* IDX reader (see idx.h). One path for raw and gzip files: zlib's gzread reads raw files
 * transparently, so the file is opened once and gzdirect() tells which it is. Raw files are
 * checked against their size before anything is allocated; gzip files against deflate's
 * largest possible expansion (1032:1) before, and against the stream's real end while reading. */
#include "cnn/idx.h"
#include "cnn/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define CHUNK 65536
#define DEFLATE_MAX_RATIO 1032

const char *cnn_idx_type_name(int code) {
  switch (code) {
  case CNN_IDX_UBYTE: return "ubyte";
  case CNN_IDX_SBYTE: return "sbyte";
  case CNN_IDX_SHORT: return "short";
  case CNN_IDX_INT: return "int";
  case CNN_IDX_FLOAT: return "float";
  case CNN_IDX_DOUBLE: return "double";
  default: return NULL;
  }
}

static int elem_size(int code) {
  switch (code) {
  case CNN_IDX_UBYTE:
  case CNN_IDX_SBYTE: return 1;
  case CNN_IDX_SHORT: return 2;
  case CNN_IDX_INT:
  case CNN_IDX_FLOAT: return 4;
  case CNN_IDX_DOUBLE: return 8;
  default: return 0;
  }
}

/* Reads exactly n bytes; returns the count read (short at the end of the stream), or -1 with
 * the error set on a corrupt stream. */
static long long read_full(gzFile gz, const char *path, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    unsigned want = n - got > (1u << 30) ? 1u << 30 : (unsigned)(n - got);
    int r = gzread(gz, (char *)buf + got, want);
    if (r < 0) {
      int code;
      const char *m = gzerror(gz, &code);
      cnn_error_set("%s: corrupt gzip stream (%s)", path, code == Z_ERRNO ? strerror(errno) : m);
      return -1;
    }
    if (r == 0) {
      /* zlib reports a gzip stream cut short (even in its 8-byte trailer) as an end of data
       * with Z_BUF_ERROR set; a clean end leaves Z_OK */
      int code;
      const char *m = gzerror(gz, &code);
      if (code == Z_BUF_ERROR) {
        cnn_error_set("%s: truncated gzip stream (%s)", path, m);
        return -1;
      }
      if (code != Z_OK) {
        cnn_error_set("%s: corrupt gzip stream (%s)", path, m);
        return -1;
      }
      break;
    }
    got += (size_t)r;
  }
  return (long long)got;
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *size) {
  size_t k = 0;
  out[0] = '\0';
  if (ndim == 0) snprintf(out, cap, "a scalar");
  for (int d = 0; d < ndim && k < cap; d++)
    k += (size_t)snprintf(out + k, cap - k, d ? "x%lld" : "%lld", (long long)size[d]);
}

static float load_f32(const unsigned char *p, int code) {
  switch (code) {
  case CNN_IDX_UBYTE: return (float)p[0];
  case CNN_IDX_SBYTE: return (float)(int8_t)p[0];
  case CNN_IDX_SHORT: return (float)(int16_t)(uint16_t)((p[0] << 8) | p[1]);
  case CNN_IDX_INT: return (float)(int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
  case CNN_IDX_FLOAT: {
    uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  default: { /* double */
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | p[i];
    double d;
    memcpy(&d, &u, 8);
    return (float)d;
  }
  }
}

static int64_t load_i64(const unsigned char *p, int code) {
  switch (code) {
  case CNN_IDX_UBYTE: return p[0];
  case CNN_IDX_SBYTE: return (int8_t)p[0];
  case CNN_IDX_SHORT: return (int16_t)(uint16_t)((p[0] << 8) | p[1]);
  default: return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
  }
}

cnn_tensor *cnn_idx_load(const char *path, double divisor, int *type_out) {
  struct stat st;
  if (stat(path, &st) != 0) {
    cnn_error_set("%s: cannot open (%s)", path, strerror(errno));
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    cnn_error_set("%s: not a regular file", path);
    return NULL;
  }
  if (!(divisor > 0) || divisor > 1e300) {
    cnn_error_set("%s: divisor must be positive, got %g", path, divisor);
    return NULL;
  }
  gzFile gz = gzopen(path, "rb");
  if (!gz) {
    cnn_error_set("%s: cannot open (%s)", path, errno ? strerror(errno) : "out of memory");
    return NULL;
  }
  gzbuffer(gz, CHUNK);
  cnn_tensor *t = NULL;
  unsigned char *buf = NULL;
  unsigned char head[4 + 4 * 255];
  long long fsize = (long long)st.st_size;

  long long got = read_full(gz, path, head, 4);
  if (got < 0) goto fail;
  bool raw = gzdirect(gz);
  const char *kind = raw ? "file" : "decompressed file";
  if (got < 4) {
    cnn_error_set("%s: %s has %lld bytes, too short for the 4-byte IDX magic", path, kind, got);
    goto fail;
  }
  if (head[0] != 0 || head[1] != 0) {
    cnn_error_set("%s: not an IDX file (magic bytes %02x %02x %02x %02x, expected 00 00 <type> <ndim>)", path, head[0],
                  head[1], head[2], head[3]);
    goto fail;
  }
  int code = head[2], ndim = head[3];
  int esize = elem_size(code);
  if (!esize) {
    cnn_error_set("%s: unknown IDX element type 0x%02x (expected 08, 09, 0B, 0C, 0D or 0E)", path, code);
    goto fail;
  }
  if (ndim > CNN_MAX_DIMS) {
    cnn_error_set("%s: the header announces %d dimensions, more than the %d a tensor can have", path, ndim, CNN_MAX_DIMS);
    goto fail;
  }
  long long header = 4 + 4LL * ndim;
  got = read_full(gz, path, head + 4, (size_t)(4 * ndim));
  if (got < 0) goto fail;
  if (got < 4LL * ndim) {
    cnn_error_set("%s: %s has %lld bytes but its header announces %d dimensions (%lld header bytes)", path, kind,
                  4 + got, ndim, header);
    goto fail;
  }
  int64_t size[CNN_MAX_DIMS];
  int64_t numel = 1;
  bool overflow = false;
  for (int d = 0; d < ndim; d++) {
    const unsigned char *p = head + 4 + 4 * d;
    size[d] = (int64_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
    if (size[d] > 0 && numel > (INT64_MAX / 16) / size[d]) overflow = true;
    else numel *= size[d];
  }
  char shape[CNN_MAX_DIMS * 12 + 16];
  shape_str(shape, sizeof shape, ndim, size);
  if (overflow) {
    cnn_error_set("%s: the header announces %s elements, too many to address", path, shape);
    goto fail;
  }
  long long nbytes = (long long)numel * esize;
  if (raw && fsize != header + nbytes) {
    cnn_error_set("%s: file has %lld bytes but the header announces %s %s (%lld bytes with the %lld-byte header)", path,
                  fsize, shape, cnn_idx_type_name(code), header + nbytes, header);
    goto fail;
  }
  if (!raw && (header + nbytes) / DEFLATE_MAX_RATIO > fsize) {
    cnn_error_set("%s: a %lld-byte gzip file cannot hold the %s %s (%lld bytes) its header announces", path, fsize, shape,
                  cnn_idx_type_name(code), header + nbytes);
    goto fail;
  }

  cnn_dtype dt = (code == CNN_IDX_FLOAT || code == CNN_IDX_DOUBLE || ndim >= 2) ? CNN_FLOAT32 : CNN_INT64;
  t = cnn_tensor_empty(dt, ndim, size);
  if (!t) goto fail;
  buf = malloc(CHUNK);
  if (!buf) {
    cnn_error_set("out of memory");
    goto fail;
  }
  float scale_div = (float)divisor;
  bool divide = divisor != 1.0;
  int64_t per = CHUNK / esize, done = 0;
  while (done < numel) {
    int64_t n = numel - done < per ? numel - done : per;
    got = read_full(gz, path, buf, (size_t)(n * esize));
    if (got < 0) goto fail;
    if (got < n * esize) {
      cnn_error_set("%s: %s has %lld bytes but the header announces %s %s (%lld bytes with the %lld-byte header)",
                    path, kind, header + done * esize + got, shape, cnn_idx_type_name(code), header + nbytes, header);
      goto fail;
    }
    if (dt == CNN_FLOAT32 && code == CNN_IDX_UBYTE) { /* images: the common case, kept simple to vectorise */
      float *out = cnn_tensor_f32(t) + done;
      if (divide)
        for (int64_t i = 0; i < n; i++) out[i] = (float)buf[i] / scale_div;
      else
        for (int64_t i = 0; i < n; i++) out[i] = (float)buf[i];
    } else if (dt == CNN_FLOAT32) {
      float *out = cnn_tensor_f32(t) + done;
      for (int64_t i = 0; i < n; i++) out[i] = load_f32(buf + i * esize, code);
      if (divide)
        for (int64_t i = 0; i < n; i++) out[i] /= scale_div;
    } else {
      int64_t *out = cnn_tensor_i64(t) + done;
      for (int64_t i = 0; i < n; i++) out[i] = load_i64(buf + i * esize, code);
    }
    done += n;
  }
  if (!raw) { /* the stream must end where the header says the data does */
    unsigned char extra;
    got = read_full(gz, path, &extra, 1);
    if (got < 0) goto fail;
    if (got > 0) {
      cnn_error_set("%s: decompressed file is longer than the %lld bytes its header announces (%s %s)", path,
                    header + nbytes, shape, cnn_idx_type_name(code));
      goto fail;
    }
  }
  free(buf);
  gzclose(gz);
  if (type_out) *type_out = code;
  return t;

fail:
  free(buf);
  cnn_tensor_release(t);
  gzclose(gz);
  return NULL;
}
