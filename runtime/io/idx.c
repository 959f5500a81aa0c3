/* IDX reader (see idx.h). One path for raw and gzip files: zlib's gzread reads raw files
 * transparently, so the file is opened once and gzdirect() tells which it is. Raw files are
 * checked against their size before anything is allocated; gzip files against deflate's
 * largest possible expansion (1032:1) before, and against the stream's real end while reading.
 * Both loaders (float/int64 tensors, and byte arrays) share the reader: one header parser, one
 * set of length checks. */
#include "cnn/idx.h"
#include "io/file.h"
#include "cnn/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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

/* zlib's message without the "<fd:3>: " it puts first for a stream opened by descriptor. */
static const char *gz_message(const char *m) {
  if (strncmp(m, "<fd:", 4) == 0) {
    const char *end = strstr(m, ">: ");
    if (end) return end + 3;
  }
  return m;
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
      cnn_error_set("%s: corrupt gzip stream (%s)", path, code == Z_ERRNO ? strerror(errno) : gz_message(m));
      return -1;
    }
    if (r == 0) {
      /* zlib reports a gzip stream cut short (even in its 8-byte trailer) as an end of data
       * with Z_BUF_ERROR set; a clean end leaves Z_OK */
      int code;
      const char *m = gzerror(gz, &code);
      if (code == Z_BUF_ERROR) {
        cnn_error_set("%s: truncated gzip stream (%s)", path, gz_message(m));
        return -1;
      }
      if (code != Z_OK) {
        cnn_error_set("%s: corrupt gzip stream (%s)", path, gz_message(m));
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
  case CNN_IDX_INT:
    return (float)(int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
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

/* An open IDX file whose header has been read and checked against the file's length. */
typedef struct {
  const char *path;
  gzFile gz;
  bool raw;         /* not gzip: the size was checked exactly */
  const char *kind; /* "file" or "decompressed file", for messages */
  int code, esize, ndim;
  int64_t size[CNN_MAX_DIMS];
  int64_t numel;
  long long header, nbytes; /* header bytes, data bytes */
  char shape[CNN_MAX_DIMS * 12 + 16];
} reader;

/* Opens path and reads its header: magic, element type, sizes, and the file's length against
 * them (exact for raw files; deflate's bound for gzip). 0, or -1 with the error set and nothing
 * left open. */
static int reader_open(reader *r, const char *path) {
  memset(r, 0, sizeof *r);
  r->path = path;
  int fd = cnn_file_open_fd(path);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return cnn_error_set("%s: cannot read its status (%s)", path, strerror(e));
  }
  long long fsize = (long long)st.st_size;
  r->gz = gzdopen(fd, "rb");
  if (!r->gz) {
    close(fd);
    return cnn_error_set("%s: cannot open (out of memory)", path);
  }
  gzbuffer(r->gz, CHUNK);
  unsigned char head[4 + 4 * 255];

  long long got = read_full(r->gz, path, head, 4);
  if (got < 0) goto fail;
  r->raw = gzdirect(r->gz);
  r->kind = r->raw ? "file" : "decompressed file";
  if (got < 4) {
    cnn_error_set("%s: %s has %lld bytes, too short for the 4-byte IDX magic", path, r->kind, got);
    goto fail;
  }
  if (head[0] != 0 || head[1] != 0) {
    cnn_error_set("%s: not an IDX file (magic bytes %02x %02x %02x %02x, expected 00 00 <type> <ndim>)", path, head[0],
                  head[1], head[2], head[3]);
    goto fail;
  }
  r->code = head[2];
  r->ndim = head[3];
  r->esize = elem_size(r->code);
  if (!r->esize) {
    cnn_error_set("%s: unknown IDX element type 0x%02x (expected 08, 09, 0B, 0C, 0D or 0E)", path, r->code);
    goto fail;
  }
  if (r->ndim > CNN_MAX_DIMS) {
    cnn_error_set("%s: the header announces %d dimensions, more than the %d a tensor can have", path, r->ndim,
                  CNN_MAX_DIMS);
    goto fail;
  }
  r->header = 4 + 4LL * r->ndim;
  got = read_full(r->gz, path, head + 4, (size_t)(4 * r->ndim));
  if (got < 0) goto fail;
  if (got < 4LL * r->ndim) {
    cnn_error_set("%s: %s has %lld bytes but its header announces %d dimensions (%lld header bytes)", path, r->kind,
                  4 + got, r->ndim, r->header);
    goto fail;
  }
  /* span: the product of the nonzero sizes, which a tensor's strides (and a byte array's row
   * length) reach even when another size is 0 and the file holds no elements */
  int64_t span = 1;
  bool overflow = false, empty = false;
  for (int d = 0; d < r->ndim; d++) {
    const unsigned char *p = head + 4 + 4 * d;
    r->size[d] = (int64_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
    if (r->size[d] == 0) empty = true;
    else if (span > (INT64_MAX / 16) / r->size[d]) overflow = true;
    else span *= r->size[d];
  }
  int64_t numel = empty ? 0 : span;
  shape_str(r->shape, sizeof r->shape, r->ndim, r->size);
  if (overflow) {
    cnn_error_set("%s: the header announces %s elements, too many to address", path, r->shape);
    goto fail;
  }
  r->numel = numel;
  r->nbytes = (long long)numel * r->esize;
  if (r->raw && fsize != r->header + r->nbytes) {
    cnn_error_set("%s: file has %lld bytes but the header announces %s %s (%lld bytes with the %lld-byte header)", path,
                  fsize, r->shape, cnn_idx_type_name(r->code), r->header + r->nbytes, r->header);
    goto fail;
  }
  if (!r->raw && (r->header + r->nbytes) / DEFLATE_MAX_RATIO > fsize) {
    cnn_error_set("%s: a %lld-byte gzip file cannot hold the %s %s (%lld bytes) its header announces", path, fsize,
                  r->shape, cnn_idx_type_name(r->code), r->header + r->nbytes);
    goto fail;
  }
  return 0;

fail:
  gzclose(r->gz);
  r->gz = NULL;
  return -1;
}

/* Reads the next n data bytes into buf, `done` bytes of data having been read before them;
 * 0, or -1 with the error set when the stream is corrupt or ends early. */
static int reader_data(reader *r, void *buf, long long done, size_t n) {
  long long got = read_full(r->gz, r->path, buf, n);
  if (got < 0) return -1;
  if (got < (long long)n)
    return cnn_error_set("%s: %s has %lld bytes but the header announces %s %s (%lld bytes with the %lld-byte header)",
                         r->path, r->kind, r->header + done + got, r->shape, cnn_idx_type_name(r->code),
                         r->header + r->nbytes, r->header);
  return 0;
}

/* After the data: a gzip stream must end where the header says the data does (a raw file's
 * length was checked up front). Closes the file either way; 0 or -1 with the error set. */
static int reader_close(reader *r, bool check_end) {
  int rc = 0;
  if (check_end && !r->raw) {
    unsigned char extra;
    long long got = read_full(r->gz, r->path, &extra, 1);
    if (got < 0) rc = -1;
    else if (got > 0)
      rc = cnn_error_set("%s: decompressed file is longer than the %lld bytes its header announces (%s %s)", r->path,
                         r->header + r->nbytes, r->shape, cnn_idx_type_name(r->code));
  }
  gzclose(r->gz);
  r->gz = NULL;
  return rc;
}

cnn_tensor *cnn_idx_load(const char *path, double divisor, int *type_out) {
  if (!(divisor > 0) || divisor > 1e300) {
    cnn_error_set("%s: divisor must be positive, got %g", path, cnn_error_num(divisor));
    return NULL;
  }
  reader r;
  if (reader_open(&r, path)) return NULL;
  int code = r.code, esize = r.esize;
  cnn_dtype dt = (code == CNN_IDX_FLOAT || code == CNN_IDX_DOUBLE || r.ndim >= 2) ? CNN_FLOAT32 : CNN_INT64;
  cnn_tensor *t = cnn_tensor_empty(dt, r.ndim, r.size);
  unsigned char *buf = t ? malloc(CHUNK) : NULL;
  if (!buf) {
    if (t) cnn_error_set("out of memory");
    goto fail;
  }
  float scale_div = (float)divisor;
  bool divide = divisor != 1.0;
  int64_t per = CHUNK / esize, done = 0, numel = r.numel;
  while (done < numel) {
    int64_t n = numel - done < per ? numel - done : per;
    if (reader_data(&r, buf, done * esize, (size_t)(n * esize))) goto fail;
    if (dt == CNN_FLOAT32 && code == CNN_IDX_UBYTE) { /* images: as t:float() / divisor of the uint8 */
      float *out = cnn_tensor_f32(t) + done;
      if (divide)
        for (int64_t i = 0; i < n; i++) out[i] = (float)buf[i] / scale_div; /* a division: exact */
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
  free(buf);
  if (reader_close(&r, true)) {
    cnn_tensor_release(t);
    return NULL;
  }
  if (type_out) *type_out = code;
  return t;

fail:
  free(buf);
  cnn_tensor_release(t);
  reader_close(&r, false);
  return NULL;
}

cnn_tensor *cnn_idx_load_u8(const char *path) {
  reader r;
  if (reader_open(&r, path)) return NULL;
  if (r.code != CNN_IDX_UBYTE) {
    cnn_error_set("%s: the file holds %s %s elements; only ubyte files load as uint8", path, r.shape,
                  cnn_idx_type_name(r.code));
    reader_close(&r, false);
    return NULL;
  }
  /* straight into the tensor: zlib reads a raw file's large requests without copying */
  cnn_tensor *t = cnn_tensor_empty(CNN_UINT8, r.ndim, r.size);
  if (!t || reader_data(&r, cnn_tensor_u8(t), 0, (size_t)r.nbytes)) {
    cnn_tensor_release(t);
    reader_close(&r, false);
    return NULL;
  }
  if (reader_close(&r, true)) {
    cnn_tensor_release(t);
    return NULL;
  }
  return t;
}
