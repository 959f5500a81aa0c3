/* File formats and batches: the safetensors header's JSON, valid and invalid; IDX, PNG and safetensors
 * round trips; every prefix of a small valid file (truncation at every byte) and seeded random
 * byte flips must give an error naming the file or a valid tensor, never a crash (run under
 * ASan in CI); epoch orders, gathering and the batch transforms against hand-worked values. */
#include "check.h"
#include "cnn/error.h"
#include "cnn/idx.h"
#include "cnn/png_io.h"
#include "cnn/rng.h"
#include "cnn/safetensors.h"
#include "cnn/tensor.h"
#include "data/batch.h"
#include "io/atomic_file.h"
#include "tmpfiles.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static uint64_t lcg = 0x12345;
static uint32_t rnd(void) {
  lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)(lcg >> 33);
}

/* ---- the safetensors header's JSON (parsed by libjansson, checked before and after) ---- */

/* Writes a safetensors file: the length hl, then hl + data bytes of which the first n come from
 * h and the rest are zeros; then loads it. Returns the load's status; *st is filled on success. */
static int load_bytes(const char *h, size_t n, size_t hl, size_t data, cnn_safetensors *st) {
  unsigned char *f = calloc(8 + hl + data, 1);
  for (int k = 0; k < 8; k++) f[k] = (unsigned char)((uint64_t)hl >> (8 * k));
  memcpy(f + 8, h, n < hl + data ? n : hl + data);
  write_file(tmp_path("json.safetensors"), f, 8 + hl + data);
  free(f);
  cnn_error_clear();
  return cnn_safetensors_load(tmp_path("json.safetensors"), st);
}

/* The same with h a C string, the header length strlen(h) when hl is 0. */
static int load_header(const char *h, size_t hl, size_t data, cnn_safetensors *st) {
  return load_bytes(h, strlen(h), hl ? hl : strlen(h), data, st);
}

static void test_header_json(void) {
  cnn_safetensors st;
  /* escapes decode to UTF-8: \u00e9 is C3 A9, the pair \ud83d\ude00 is U+1F600 (F0 9F 98 80),
   * \/ is '/'; metadata keeps the header's order (not sorted); space padding after the object */
  const char *ok = "{\"__metadata__\":{\"z\\u00e9\\n\":\"\\ud83d\\ude00x\",\"a\":\"p\\/q\\t\\\"\"},"
                   "\"t\\u00e9\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}   ";
  CHECK(load_header(ok, 0, 4, &st) == 0);
  if (st.n == 1 && st.nmeta == 2) {
    CHECK(strcmp(st.names[0], "t\xc3\xa9") == 0);
    CHECK(strcmp(st.meta_keys[0], "z\xc3\xa9\n") == 0 && strcmp(st.meta_values[0], "\xf0\x9f\x98\x80x") == 0);
    CHECK(strcmp(st.meta_keys[1], "a") == 0 && strcmp(st.meta_values[1], "p/q\t\"") == 0);
  } else {
    CHECK(!"the header with escapes loads one tensor and two metadata entries");
  }
  if (st.n) cnn_safetensors_clear(&st);
  /* the largest int64 is an integer (here a size too large to hold); one more is refused */
  CHECK(load_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775807],\"data_offsets\":[0,1]}}", 0, 1, &st));
  CHECK_ERROR_HAS("has too many elements", NULL);
  CHECK(load_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,1]}}", 0, 1, &st));
  CHECK_ERROR_HAS("invalid JSON at byte 46: too big integer", NULL);

  /* strict RFC 8259: each problem refused with the byte (0-based, the last one read) and why */
  static const struct {
    const char *header, *why;
  } bad[] = {
      {"{\"a\":{\"dtype\":\"F32\",}}", "at byte 20: string or '}' expected near '}'"},
      {"{\"a\":[1, 2,]}", "unexpected token near ']'"},
      {"{\"a\":[01]}", "invalid token near '0'"},
      {"{\"a\":[1.]}", "invalid token near '1.'"},
      {"{\"a\":[1e]}", "invalid token near '1e'"},
      {"{\"a\":[-]}", "invalid token near '-'"},
      {"{\"a\":[tru]}", "invalid token near 'tru'"},
      {"{\"a\":[NaN]}", "invalid token"},
      {"{\"a\":\"x\x01\"}", "control character 0x1"},
      {"{\"a\":\"\\x\"}", "invalid escape"},
      {"{\"a\":\"\\u12\"}", "invalid escape"},
      {"{\"a\":\"\\ud800\"}", "invalid Unicode '\\uD800'"}, /* a high surrogate alone */
      {"{\"a\":\"\\udc00\"}", "invalid Unicode '\\uDC00'"}, /* a low surrogate alone */
      {"{\"a\":\"\\u0000\"}", "\\u0000 is not allowed"},    /* names and metadata are C strings */
      {"{\"a\\u0000\":1}", "NUL byte in object key"},
      {"{\"a\":\"\xc3\x28\"}", "unable to decode byte 0xc3"},         /* a lead byte without its continuation */
      {"{\"a\":\"\xed\xa0\x80\"}", "unable to decode byte 0xed"},     /* an encoded surrogate */
      {"{\"a\":\"\xc0\xaf\"}", "unable to decode byte 0xc0"},         /* overlong '/' */
      {"{\"a\":\"\xf4\x90\x80\x80\"}", "unable to decode byte 0xf4"}, /* beyond U+10FFFF */
      {"{\"a\":1, \"a\":2}", "at byte 8: duplicate key \"a\""},
      {"{\"a\\\"b\":1,\"a\\\"b\":2}", "duplicate key \"a\\\"b\""},
      {"{\"a\" 1}", "':' expected near '1'"},
      {"{} x", "at byte 3: end of file expected near 'x'"},
      {"{}}", "end of file expected"},
      {"{\"a\":[1 2]}", "']' expected near '2'"},
      {"{\"abc", "premature end of input"},
      {"{\"a\":", "unexpected token near end of file"},
      {"{\"a\":1e400}", "real number overflow"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (load_header(bad[i].header, 0, 0, &st) == 0) {
      fprintf(stderr, "header %s loaded but should fail (%s)\n", bad[i].header, bad[i].why);
      failures++;
      cnn_safetensors_clear(&st);
    } else if (!strstr(cnn_error_get(), "header: invalid JSON at byte ") || !strstr(cnn_error_get(), bad[i].why)) {
      fprintf(stderr, "header %s: error \"%s\" lacks \"%s\"\n", bad[i].header, cnn_error_get(), bad[i].why);
      failures++;
    }
  }
  /* a NUL byte ends nothing: it is refused where it stands, in a string or after the object */
  CHECK(load_bytes("{\"a\":\"x\0y\"}", 11, 11, 0, &st) == -1);
  CHECK_ERROR_HAS("invalid JSON at byte 7: NUL byte", NULL);
  CHECK(load_bytes("{}\0\0\0\0\0\0", 8, 8, 0, &st) == -1);
  CHECK_ERROR_HAS("invalid JSON at byte 2: NUL byte", NULL);
  /* nesting: the header object and 63 arrays in it parse (then fail as a tensor entry), 64 do
   * not; brackets inside strings do not count */
  char deep[256];
  for (int n = 63; n <= 64; n++) {
    int k = snprintf(deep, sizeof deep, "{\"a\":");
    memset(deep + k, '[', (size_t)n);
    memset(deep + k + n, ']', (size_t)n);
    snprintf(deep + k + 2 * n, sizeof deep - (size_t)(k + 2 * n), "}");
    CHECK(load_header(deep, 0, 0, &st) == -1);
    CHECK_ERROR_HAS(n == 63 ? "header entry 'a' is not an object" : "at byte 68: nesting too deep", NULL);
  }
  memset(deep, 0, sizeof deep);
  snprintf(deep, sizeof deep, "{\"__metadata__\":{\"k\":\"%s\"}}",
           "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[[[");
  CHECK(load_header(deep, 0, 0, &st) == 0 && st.nmeta == 1 && strlen(st.meta_values[0]) == 70);
  cnn_safetensors_clear(&st);
  /* the text is read only up to the header length: the data bytes after it are not JSON */
  CHECK(load_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}]", 0, 0, &st) == -1);
  CHECK_ERROR_HAS("end of file expected near ']'", NULL);
  CHECK(load_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}]", 53, 1, &st) == 0);
  CHECK(st.n == 1 && cnn_tensor_i64(st.tensors[0])[0] == ']');
  cnn_safetensors_clear(&st);
}

/* ---- IDX ---- */

static size_t idx_image_file(unsigned char *b) {
  /* ubyte, 3 dims: 2 x 3 x 4, values 0, 10, 20, ... (mod 256) */
  unsigned char head[] = {0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
  memcpy(b, head, sizeof head);
  for (int i = 0; i < 24; i++) b[16 + i] = (unsigned char)(i * 10);
  return 16 + 24;
}

static void test_idx(void) {
  unsigned char b[64];
  size_t n = idx_image_file(b);
  const char *raw = tmp_path("img.idx"), *gzp = tmp_path("img.idx.gz");
  write_file(raw, b, n);
  write_gz(gzp, b, n);
  for (int g = 0; g < 2; g++) {
    int code = 0;
    cnn_tensor *t = cnn_idx_load(g ? gzp : raw, 1, &code);
    CHECK(t && code == 0x08 && t->dtype == CNN_FLOAT32 && t->ndim == 3 && t->size[0] == 2 && t->size[2] == 4);
    if (t) CHECK(cnn_tensor_f32(t)[5] == 50.0f && cnn_tensor_f32(t)[23] == 230.0f);
    cnn_tensor_release(t);
  }
  /* divisor 255 gives x / 255.f exactly */
  cnn_tensor *t = cnn_idx_load(raw, 255, NULL);
  CHECK(t && cnn_tensor_f32(t)[23] == 230.0f / 255.0f);
  cnn_tensor_release(t);

  /* 1-d int: int64 labels, big-endian, negative values */
  unsigned char lab[] = {0, 0, 0x0C, 1, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFE, 0x00, 0x01, 0x00, 0x00};
  write_file(tmp_path("lab.idx"), lab, sizeof lab);
  t = cnn_idx_load(tmp_path("lab.idx"), 1, NULL);
  CHECK(t && t->dtype == CNN_INT64 && cnn_tensor_i64(t)[0] == -2 && cnn_tensor_i64(t)[1] == 65536);
  cnn_tensor_release(t);

  /* every truncation of the raw and the gzip file is an error naming the file */
  size_t gzn;
  unsigned char *gzb = read_file(gzp, &gzn);
  for (int g = 0; g < 2; g++) {
    const unsigned char *src = g ? gzb : b;
    size_t len = g ? gzn : n;
    for (size_t cut = 0; cut < len; cut++) {
      const char *p = tmp_path(g ? "cut.idx.gz" : "cut.idx");
      write_file(p, src, cut);
      cnn_error_clear();
      t = cnn_idx_load(p, 1, NULL);
      if (t) {
        fprintf(stderr, "idx: %s truncated to %zu of %zu bytes loaded\n", g ? "gzip" : "raw", cut, len);
        failures++;
      } else {
        CHECK_ERROR_HAS(p, NULL);
      }
      cnn_tensor_release(t);
    }
  }
  free(gzb);
  /* the message for a short file names both sizes and the shape */
  write_file(tmp_path("short.idx"), b, 30);
  CHECK(!cnn_idx_load(tmp_path("short.idx"), 1, NULL));
  CHECK_ERROR_HAS("file has 30 bytes but the header announces 2x3x4 ubyte", NULL);
  /* a longer file is wrong too */
  unsigned char longer[80];
  memcpy(longer, b, n);
  longer[n] = 7;
  write_file(tmp_path("long.idx"), longer, n + 1);
  CHECK(!cnn_idx_load(tmp_path("long.idx"), 1, NULL));
  CHECK_ERROR_HAS("file has 41 bytes", NULL);
  write_gz(tmp_path("long.idx.gz"), longer, n + 1);
  CHECK(!cnn_idx_load(tmp_path("long.idx.gz"), 1, NULL));
  CHECK_ERROR_HAS("longer than the 40 bytes", NULL);
  /* hostile sizes: 2^32-1 cubed overflows; 60000x28x28 in a tiny gzip cannot fit */
  unsigned char huge[] = {0, 0, 0x08, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  write_file(tmp_path("huge.idx"), huge, sizeof huge);
  CHECK(!cnn_idx_load(tmp_path("huge.idx"), 1, NULL));
  CHECK_ERROR_HAS("too many to address", NULL);
  unsigned char mnist_head[] = {0, 0, 0x08, 3, 0, 0, 0xEA, 0x60, 0, 0, 0, 28, 0, 0, 0, 28};
  write_gz(tmp_path("fake.idx.gz"), mnist_head, sizeof mnist_head);
  CHECK(!cnn_idx_load(tmp_path("fake.idx.gz"), 1, NULL));
  CHECK_ERROR_HAS("cannot hold the 60000x28x28 ubyte", NULL);
  write_file(tmp_path("fake.idx"), mnist_head, sizeof mnist_head);
  CHECK(!cnn_idx_load(tmp_path("fake.idx"), 1, NULL));
  CHECK_ERROR_HAS("file has 16 bytes but the header announces 60000x28x28 ubyte", NULL);
  /* bad magic, bad type, too many dims, a missing file */
  unsigned char bad1[] = {1, 0, 8, 1, 0, 0, 0, 0};
  write_file(tmp_path("bad1.idx"), bad1, sizeof bad1);
  CHECK(!cnn_idx_load(tmp_path("bad1.idx"), 1, NULL));
  CHECK_ERROR_HAS("not an IDX file", NULL);
  unsigned char bad2[] = {0, 0, 0x0A, 1, 0, 0, 0, 0};
  write_file(tmp_path("bad2.idx"), bad2, sizeof bad2);
  CHECK(!cnn_idx_load(tmp_path("bad2.idx"), 1, NULL));
  CHECK_ERROR_HAS("unknown IDX element type 0x0a", NULL);
  unsigned char bad3[] = {0, 0, 0x08, 17};
  write_file(tmp_path("bad3.idx"), bad3, sizeof bad3);
  CHECK(!cnn_idx_load(tmp_path("bad3.idx"), 1, NULL));
  CHECK_ERROR_HAS("17 dimensions", NULL);
  CHECK(!cnn_idx_load(tmp_path("missing.idx"), 1, NULL));
  CHECK_ERROR_HAS("missing.idx: cannot open", NULL);
  CHECK(!cnn_idx_load(dir, 1, NULL));
  CHECK_ERROR_HAS("not a regular file", NULL);
  /* random flips in the header: a tensor or an error, never a crash */
  for (int it = 0; it < 300; it++) {
    unsigned char c[64];
    memcpy(c, b, n);
    c[rnd() % 16] ^= (unsigned char)(1u << (rnd() % 8));
    write_file(tmp_path("flip.idx"), c, n);
    cnn_tensor_release(cnn_idx_load(tmp_path("flip.idx"), 1, NULL));
  }
}

/* ---- PNG ---- */

static void test_png(void) {
  int64_t size[3] = {3, 5, 7};
  cnn_tensor *x = cnn_tensor_empty(CNN_FLOAT32, 3, size);
  float *p = cnn_tensor_f32(x);
  for (int i = 0; i < 105; i++) p[i] = (float)((i * 37) % 256) / 255.0f;
  p[0] = -0.5f; /* clamped to 0 */
  p[1] = 7.0f;  /* clamped to 1 */
  p[2] = NAN;   /* stored as 0 */
  const char *path = tmp_path("rt.png");
  CHECK(cnn_png_save(path, x) == 0);
  cnn_tensor *y = cnn_png_load(path, CNN_PNG_AUTO);
  CHECK(y && y->ndim == 3 && y->size[0] == 3 && y->size[1] == 5 && y->size[2] == 7);
  if (y) {
    const float *q = cnn_tensor_f32(y);
    CHECK(q[0] == 0.0f && q[1] == 1.0f && q[2] == 0.0f);
    int bad = 0;
    for (int i = 3; i < 105; i++) bad += q[i] != p[i];
    CHECK(bad == 0);
  }
  cnn_tensor_release(y);
  /* modes: gray of a colour image uses PIL's weights; rgba adds an opaque alpha */
  y = cnn_png_load(path, CNN_PNG_RGBA);
  CHECK(y && y->size[0] == 4 && cnn_tensor_f32(y)[3 * 35] == 1.0f);
  cnn_tensor_release(y);
  y = cnn_png_load(path, CNN_PNG_GRAY);
  if (y) {
    /* pixel 3: R = 111, G = (3+35)*37 % 256 = 126, B = (3+70)*37 % 256 = 141 */
    unsigned r = (3 * 37) % 256, g = (38 * 37) % 256, b = (73 * 37) % 256;
    unsigned l = (19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16;
    CHECK(y->size[0] == 1 && cnn_tensor_f32(y)[3] == (float)l / 255.0f);
  }
  CHECK(y != NULL);
  cnn_tensor_release(y);
  /* a grey (H, W) image round trips through one channel */
  int64_t s2[2] = {2, 3};
  cnn_tensor *g = cnn_tensor_full(CNN_FLOAT32, 2, s2, 0.5);
  CHECK(cnn_png_save(tmp_path("g.png"), g) == 0);
  y = cnn_png_load(tmp_path("g.png"), CNN_PNG_AUTO);
  CHECK(y && y->size[0] == 1 && y->size[1] == 2 && cnn_tensor_f32(y)[5] == 128.0f / 255.0f);
  cnn_tensor_release(y);
  y = cnn_png_load(tmp_path("g.png"), CNN_PNG_RGB);
  CHECK(y && y->size[0] == 3 && cnn_tensor_f32(y)[17] == 128.0f / 255.0f);
  cnn_tensor_release(y);
  cnn_tensor_release(g);
  /* bad shapes and dtypes for save */
  int64_t s5[3] = {5, 2, 2};
  g = cnn_tensor_zeros(CNN_FLOAT32, 3, s5);
  CHECK(cnn_png_save(tmp_path("bad.png"), g) == -1);
  CHECK_ERROR_HAS("1, 2, 3 or 4 channels, got 5", NULL);
  cnn_tensor_release(g);
  g = cnn_tensor_zeros(CNN_INT64, 2, s2);
  CHECK(cnn_png_save(tmp_path("bad.png"), g) == -1);
  CHECK_ERROR_HAS("float32", NULL);
  cnn_tensor_release(g);
  CHECK(cnn_png_save("/nonexistent-dir/x.png", x) == -1);
  CHECK_ERROR_HAS("/nonexistent-dir/x.png: cannot create", NULL);
  CHECK(access(tmp_path("bad.png"), F_OK) != 0); /* nothing left behind */

  /* a header announcing 1000000 x 1000000 pixels in an 80-byte file is refused before any
   * image-sized allocation */
  unsigned char huge[128];
  size_t k = 0;
  memcpy(huge, "\x89PNG\r\n\x1a\n", 8);
  k = 8;
  unsigned char ihdr[17] = {'I', 'H', 'D', 'R', 0, 0x0F, 0x42, 0x40, 0, 0x0F, 0x42, 0x40, 8, 0, 0, 0, 0};
  huge[k++] = 0, huge[k++] = 0, huge[k++] = 0, huge[k++] = 13;
  memcpy(huge + k, ihdr, 17);
  k += 17;
  uLong crc = crc32(0L, ihdr, 17);
  for (int i = 3; i >= 0; i--) huge[k++] = (unsigned char)(crc >> (8 * i));
  unsigned char idat[4 + 32] = {'I', 'D', 'A', 'T'}, zeros[16] = {0};
  uLongf zn = 32;
  compress(idat + 4, &zn, zeros, sizeof zeros);
  for (int i = 3; i >= 0; i--) huge[k++] = (unsigned char)(zn >> (8 * i));
  memcpy(huge + k, idat, 4 + zn);
  k += 4 + zn;
  crc = crc32(0L, idat, (uInt)(4 + zn));
  for (int i = 3; i >= 0; i--) huge[k++] = (unsigned char)(crc >> (8 * i));
  unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  memcpy(huge + k, iend, 12);
  k += 12;
  write_file(tmp_path("huge.png"), huge, k);
  CHECK(!cnn_png_load(tmp_path("huge.png"), CNN_PNG_AUTO));
  CHECK_ERROR_HAS("far too small for its image size", NULL);

  /* truncation at every byte, then random flips anywhere */
  size_t n;
  unsigned char *b = read_file(path, &n);
  for (size_t cut = 0; cut < n; cut++) {
    write_file(tmp_path("cut.png"), b, cut);
    cnn_error_clear();
    y = cnn_png_load(tmp_path("cut.png"), CNN_PNG_AUTO);
    if (y) {
      fprintf(stderr, "png: truncated to %zu of %zu bytes loaded\n", cut, n);
      failures++;
    } else {
      CHECK_ERROR_HAS(tmp_path("cut.png"), NULL);
    }
    cnn_tensor_release(y);
  }
  write_file(tmp_path("cut.png"), b, 10);
  CHECK(!cnn_png_load(tmp_path("cut.png"), CNN_PNG_AUTO));
  CHECK_ERROR_HAS("truncated", NULL);
  for (int it = 0; it < 400; it++) {
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    int flips = 1 + (int)(rnd() % 3);
    for (int k = 0; k < flips; k++) c[8 + rnd() % (n - 8)] ^= (unsigned char)(1u << (rnd() % 8));
    write_file(tmp_path("flip.png"), c, n);
    cnn_tensor_release(cnn_png_load(tmp_path("flip.png"), (cnn_png_mode)(it % 4)));
    free(c);
  }
  free(b);
  cnn_tensor_release(x);
}

/* ---- safetensors ---- */

static void test_safetensors(void) {
  int64_t s23[2] = {2, 3}, s0[2] = {0, 4};
  cnn_tensor *a = cnn_tensor_arange(0, 6, 1, CNN_FLOAT32);
  cnn_tensor *a2 = cnn_tensor_view(a, 2, s23);
  cnn_tensor *at = cnn_tensor_transpose(a2, 0, 1); /* (3, 2), strided: saved contiguous */
  cnn_tensor *l = cnn_tensor_arange(-2, 3, 1, CNN_INT64);
  cnn_tensor *e = cnn_tensor_zeros(CNN_FLOAT32, 2, s0);
  cnn_tensor *s = cnn_tensor_scalar(CNN_FLOAT32, 4.25);
  const char *names[] = {"w.t", "labels", "empty", "scalar"};
  const cnn_tensor *ts[] = {at, l, e, s};
  const char *mk[] = {"epoch", "note"}, *mv[] = {"3", "line\n\"quoted\" \xc3\xa9"};
  const char *path = tmp_path("rt.safetensors");
  CHECK(cnn_safetensors_save(path, 4, names, ts, 2, mk, mv) == 0);
  size_t n;
  unsigned char *b = read_file(path, &n);
  /* the exact layout: header sorted by name after __metadata__, space-padded to 8 bytes */
  const char *want = "{\"__metadata__\":{\"epoch\":\"3\",\"note\":\"line\\n\\\"quoted\\\" \xc3\xa9\"},"
                     "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                     "\"labels\":{\"dtype\":\"I64\",\"shape\":[5],\"data_offsets\":[0,40]},"
                     "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[40,44]},"
                     "\"w.t\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[44,68]}}";
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
  size_t wl = strlen(want), padded = (wl + 7) / 8 * 8;
  CHECK(hlen == padded && n == 8 + padded + 68);
  CHECK(memcmp(b + 8, want, wl) == 0);
  for (size_t i = wl; i < padded; i++) CHECK(b[8 + i] == ' ');
  float f;
  memcpy(&f, b + 8 + padded + 44 + 4, 4); /* w.t[0][1] = a[1][0] = 3 */
  CHECK(f == 3.0f);

  cnn_safetensors st;
  CHECK(cnn_safetensors_load(path, &st) == 0);
  CHECK(st.n == 4 && st.nmeta == 2);
  for (size_t i = 0; i < st.n; i++) {
    cnn_tensor *t = st.tensors[i];
    if (strcmp(st.names[i], "w.t") == 0) {
      CHECK(t->ndim == 2 && t->size[0] == 3 && cnn_tensor_f32(t)[1] == 3.0f && cnn_tensor_f32(t)[5] == 5.0f);
    } else if (strcmp(st.names[i], "labels") == 0) {
      CHECK(t->dtype == CNN_INT64 && cnn_tensor_i64(t)[0] == -2 && cnn_tensor_i64(t)[4] == 2);
    } else if (strcmp(st.names[i], "empty") == 0) {
      CHECK(t->ndim == 2 && t->size[0] == 0 && t->size[1] == 4);
    } else {
      CHECK(strcmp(st.names[i], "scalar") == 0 && t->ndim == 0 && cnn_tensor_f32(t)[0] == 4.25f);
    }
  }
  CHECK(strcmp(st.meta_keys[1], "note") == 0 && strcmp(st.meta_values[1], mv[1]) == 0);
  cnn_safetensors_clear(&st);

  /* writer errors: duplicate names, the reserved name */
  const char *dup[] = {"x", "x"};
  const cnn_tensor *two[] = {s, s};
  CHECK(cnn_safetensors_save(tmp_path("d.safetensors"), 2, dup, two, 0, NULL, NULL) == -1);
  CHECK_ERROR_HAS("two tensors are named 'x'", NULL);
  const char *res[] = {"__metadata__"};
  CHECK(cnn_safetensors_save(tmp_path("d.safetensors"), 1, res, two, 0, NULL, NULL) == -1);
  CHECK_ERROR_HAS("cannot name a tensor", NULL);
  const char *badutf[] = {"\xff"};
  CHECK(cnn_safetensors_save(tmp_path("d.safetensors"), 1, badutf, two, 0, NULL, NULL) == -1);
  CHECK_ERROR_HAS("not valid UTF-8", NULL);
  CHECK(access(tmp_path("d.safetensors"), F_OK) != 0);

  /* truncation at every byte */
  for (size_t cut = 0; cut < n; cut++) {
    write_file(tmp_path("cut.safetensors"), b, cut);
    cnn_error_clear();
    if (cnn_safetensors_load(tmp_path("cut.safetensors"), &st) == 0) {
      fprintf(stderr, "safetensors: truncated to %zu of %zu bytes loaded\n", cut, n);
      failures++;
      cnn_safetensors_clear(&st);
    } else {
      CHECK_ERROR_HAS(tmp_path("cut.safetensors"), NULL);
    }
  }
  write_file(tmp_path("cut.safetensors"), b, n - 1);
  CHECK(cnn_safetensors_load(tmp_path("cut.safetensors"), &st) == -1);
  CHECK_ERROR_HAS("tensor 'w.t': data_offsets [44, 68] run past the end of the data (67 bytes", NULL);
  /* random flips in the header and its length */
  for (int it = 0; it < 2000; it++) {
    unsigned char *c = malloc(n);
    memcpy(c, b, n);
    int flips = 1 + (int)(rnd() % 3);
    for (int k = 0; k < flips; k++) c[rnd() % (8 + padded)] ^= (unsigned char)(1u << (rnd() % 8));
    write_file(tmp_path("flip.safetensors"), c, n);
    if (cnn_safetensors_load(tmp_path("flip.safetensors"), &st) == 0) cnn_safetensors_clear(&st);
    free(c);
  }
  free(b);

  /* hand-made headers: each problem has its message */
  static const struct {
    const char *header, *why;
    size_t data;
  } cases[] = {
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       "overlap", 8},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "data bytes [0, 4) belong to no tensor", 8},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "the last 4 data bytes belong to no tensor",
       8},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
       "needs 12 bytes but data_offsets [0, 8] hold 8", 8},
      {"{\"a\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", "unsupported dtype 'C64'", 8},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       "invalid JSON at byte 54: duplicate key \"a\"", 8},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
       "shape entry 1 is not a non-negative integer", 4},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "end before they begin", 4},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "lacks data_offsets", 4},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}",
       "too many elements", 4},
      {"{\"a\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[0,8]}}", "does not fit in int64", 8},
      {"{\"__metadata__\":{\"k\":1}}", "__metadata__ value of 'k' is not a string", 0},
      {"{\"a\":[1]}", "not an object", 0},
      {"[1]", "does not start with '{'", 0},
      {"{\"a\":1,}", "invalid JSON at byte 7: string or '}' expected", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t hl = strlen(cases[i].header);
    unsigned char *f2 = calloc(8 + hl + cases[i].data, 1);
    for (int k = 0; k < 8; k++) f2[k] = (unsigned char)((uint64_t)hl >> (8 * k));
    memcpy(f2 + 8, cases[i].header, hl);
    memset(f2 + 8 + hl, 0xFF, cases[i].data); /* U64 all ones: beyond int64 */
    write_file(tmp_path("case.safetensors"), f2, 8 + hl + cases[i].data);
    free(f2);
    cnn_error_clear();
    if (cnn_safetensors_load(tmp_path("case.safetensors"), &st) == 0) {
      fprintf(stderr, "safetensors case %zu loaded but should fail (%s)\n", i, cases[i].why);
      failures++;
      cnn_safetensors_clear(&st);
    } else if (!strstr(cnn_error_get(), cases[i].why)) {
      fprintf(stderr, "safetensors case %zu: error \"%s\" lacks \"%s\"\n", i, cnn_error_get(), cases[i].why);
      failures++;
    }
  }
  /* an oversized header length */
  unsigned char big[16] = {0x00, 0xE2, 0xF5, 0x05, 0, 0, 0, 0, '{', '}'}; /* 100000256 */
  write_file(tmp_path("big.safetensors"), big, 16);
  CHECK(cnn_safetensors_load(tmp_path("big.safetensors"), &st) == -1);
  CHECK_ERROR_HAS("header length 100000256 exceeds the 100000000-byte limit", NULL);
  unsigned char past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  write_file(tmp_path("past.safetensors"), past, 16);
  CHECK(cnn_safetensors_load(tmp_path("past.safetensors"), &st) == -1);
  CHECK_ERROR_HAS("header length 100 runs past the end of the file (8 bytes", NULL);

  cnn_tensor_release(a);
  cnn_tensor_release(a2);
  cnn_tensor_release(at);
  cnn_tensor_release(l);
  cnn_tensor_release(e);
  cnn_tensor_release(s);
}

/* ---- batches ---- */

static void test_batch(void) {
  /* orders: identity without shuffle; a seeded shuffle is a permutation, repeatable, and
   * differs between epochs; the global stream is untouched by a seeded shuffle */
  cnn_tensor *o = cnn_batch_order(5, false, false, 0, 1, 0, 1, CNN_SHARD_DROP);
  for (int i = 0; i < 5; i++) CHECK(cnn_tensor_i64(o)[i] == i);
  cnn_tensor_release(o);
  cnn_rng_seed(cnn_rng_global(), 99);
  uint64_t r1 = cnn_rng_next(cnn_rng_global());
  cnn_rng_seed(cnn_rng_global(), 99);
  cnn_tensor *p1 = cnn_batch_order(100, true, true, 42, 1, 0, 1, CNN_SHARD_DROP);
  cnn_tensor *p2 = cnn_batch_order(100, true, true, 42, 1, 0, 1, CNN_SHARD_DROP);
  cnn_tensor *p3 = cnn_batch_order(100, true, true, 42, 2, 0, 1, CNN_SHARD_DROP);
  CHECK(cnn_rng_next(cnn_rng_global()) == r1);
  int seen[100] = {0}, same12 = 1, same13 = 1;
  for (int i = 0; i < 100; i++) {
    int64_t v = cnn_tensor_i64(p1)[i];
    CHECK(v >= 0 && v < 100);
    if (v >= 0 && v < 100) seen[v]++;
    same12 &= v == cnn_tensor_i64(p2)[i];
    same13 &= v == cnn_tensor_i64(p3)[i];
  }
  for (int i = 0; i < 100; i++) CHECK(seen[i] == 1);
  CHECK(same12 && !same13);
  /* shards: 3 ranks of 10 samples take perm[r], perm[r+3], perm[r+6]: disjoint, 3 each */
  cnn_tensor *full = cnn_batch_order(10, true, true, 5, 3, 0, 1, CNN_SHARD_DROP);
  int owner[10];
  for (int i = 0; i < 10; i++) owner[i] = -1;
  for (int r = 0; r < 3; r++) {
    cnn_tensor *sh = cnn_batch_order(10, true, true, 5, 3, r, 3, CNN_SHARD_DROP);
    CHECK(sh->size[0] == 3);
    for (int k = 0; k < 3; k++) {
      int64_t v = cnn_tensor_i64(sh)[k];
      CHECK(v == cnn_tensor_i64(full)[r + 3 * k]);
      CHECK(owner[v] == -1);
      owner[v] = r;
    }
    cnn_tensor_release(sh);
  }
  /* 10 samples on 4 ranks: PAD gives 3 each, positions 10 and 11 wrapping to perm[0] and perm[1];
   * EXACT gives 3, 3, 2, 2 covering each sample once */
  int seen_pad[10] = {0}, seen_exact[10] = {0};
  for (int r = 0; r < 4; r++) {
    cnn_tensor *pad = cnn_batch_order(10, true, true, 5, 3, r, 4, CNN_SHARD_PAD);
    cnn_tensor *ex = cnn_batch_order(10, true, true, 5, 3, r, 4, CNN_SHARD_EXACT);
    CHECK(pad->size[0] == 3);
    CHECK(ex->size[0] == (r < 2 ? 3 : 2));
    for (int k = 0; k < 3; k++) {
      int64_t v = cnn_tensor_i64(pad)[k];
      CHECK(v == cnn_tensor_i64(full)[(r + 4 * k) % 10]);
      seen_pad[v]++;
    }
    for (int k = 0; k < ex->size[0]; k++) seen_exact[cnn_tensor_i64(ex)[k]]++;
    cnn_tensor_release(pad);
    cnn_tensor_release(ex);
  }
  for (int i = 0; i < 10; i++) {
    CHECK(seen_exact[i] == 1);
    int64_t v = cnn_tensor_i64(full)[i];
    CHECK(seen_pad[v] == (i < 2 ? 2 : 1));
  }
  /* fewer samples than ranks: padding repeats; an empty epoch stays empty */
  cnn_tensor *tiny = cnn_batch_order(1, false, false, 0, 1, 2, 3, CNN_SHARD_PAD);
  CHECK(tiny->size[0] == 1 && cnn_tensor_i64(tiny)[0] == 0);
  cnn_tensor_release(tiny);
  cnn_tensor *none = cnn_batch_order(0, true, true, 1, 1, 1, 2, CNN_SHARD_PAD);
  CHECK(none->size[0] == 0);
  cnn_tensor_release(none);
  CHECK(!cnn_batch_order(10, false, false, 0, 1, 3, 3, CNN_SHARD_DROP));
  CHECK_ERROR_HAS("shard rank 3 is outside 0..2", NULL);
  cnn_tensor_release(full);
  cnn_tensor_release(p1);
  cnn_tensor_release(p2);
  cnn_tensor_release(p3);

  /* gather rows 2, 0, 2 of a (3, 2) tensor */
  int64_t s32[2] = {3, 2}, s3 = 3;
  cnn_tensor *src = cnn_tensor_arange(0, 6, 1, CNN_FLOAT32), *src2 = cnn_tensor_view(src, 2, s32);
  cnn_tensor *idx = cnn_tensor_empty(CNN_INT64, 1, &s3);
  cnn_tensor_i64(idx)[0] = 2, cnn_tensor_i64(idx)[1] = 0, cnn_tensor_i64(idx)[2] = 2;
  cnn_tensor *g = cnn_batch_gather(src2, idx);
  static const float want[6] = {4, 5, 0, 1, 4, 5};
  CHECK(g && g->size[0] == 3 && g->size[1] == 2 && memcmp(cnn_tensor_f32(g), want, sizeof want) == 0);
  cnn_tensor_release(g);
  cnn_tensor_i64(idx)[1] = 3;
  CHECK(!cnn_batch_gather(src2, idx));
  CHECK_ERROR_HAS("index 3 is out of range for 3 rows", NULL);
  cnn_tensor_release(idx);
  cnn_tensor_release(src);
  cnn_tensor_release(src2);

  /* normalize: (N=1, C=2, 1, 2) with mean {1, 2}, std {2, 4} */
  int64_t s4[4] = {1, 2, 1, 2};
  cnn_tensor *x = cnn_tensor_arange(0, 4, 1, CNN_FLOAT32), *x4 = cnn_tensor_view(x, 4, s4);
  double mean[2] = {1, 2}, std[2] = {2, 4};
  cnn_tensor *y = cnn_batch_normalize(x4, 2, mean, 2, std);
  static const float wn[4] = {-0.5f, 0.0f, 0.0f, 0.25f}; /* (0-1)/2, (1-1)/2, (2-2)/4, (3-2)/4 */
  CHECK(y && memcmp(cnn_tensor_f32(y), wn, sizeof wn) == 0);
  cnn_tensor_release(y);
  CHECK(!cnn_batch_normalize(x4, 3, (double[]){0, 0, 0}, 1, std));
  CHECK_ERROR_HAS("the image has 2 channels, so mean and std need 1 value or one per channel", NULL);
  std[1] = 0;
  CHECK(!cnn_batch_normalize(x4, 2, mean, 2, std));
  CHECK_ERROR_HAS("nonzero", NULL);
  cnn_tensor_release(x);
  cnn_tensor_release(x4);

  /* random crop with padding: every output is the zero-padded input at some offset */
  int64_t s8[4] = {8, 1, 3, 4};
  x = cnn_tensor_arange(1, 97, 1, CNN_FLOAT32);
  x4 = cnn_tensor_view(x, 4, s8);
  cnn_rng_seed(cnn_rng_global(), 3);
  y = cnn_batch_random_crop(x4, 3, 4, 1, 2, 0);
  int offsets_seen = 0;
  for (int i = 0; i < 8 && y; i++) {
    const float *a = cnn_tensor_f32(x4) + i * 12, *c = cnn_tensor_f32(y) + i * 12;
    int found = 0;
    for (int top = -1; top <= 1 && !found; top++)
      for (int left = -2; left <= 2 && !found; left++) {
        int okk = 1;
        for (int r = 0; r < 3; r++)
          for (int cc = 0; cc < 4; cc++) {
            int sr = top + r, sc = left + cc;
            float v = sr >= 0 && sr < 3 && sc >= 0 && sc < 4 ? a[sr * 4 + sc] : 0.0f;
            okk &= c[r * 4 + cc] == v;
          }
        if (okk) found = 1, offsets_seen |= 1 << ((top + 1) * 5 + (left + 2));
      }
    CHECK(found);
  }
  CHECK(__builtin_popcount((unsigned)offsets_seen) >= 3); /* the windows do move */
  cnn_tensor_release(y);
  /* the same seed gives the same crops */
  cnn_rng_seed(cnn_rng_global(), 3);
  cnn_tensor *y2 = cnn_batch_random_crop(x4, 3, 4, 1, 2, 0);
  cnn_rng_seed(cnn_rng_global(), 3);
  cnn_tensor *y3 = cnn_batch_random_crop(x4, 3, 4, 1, 2, 0);
  CHECK(memcmp(cnn_tensor_f32(y2), cnn_tensor_f32(y3), 96 * sizeof(float)) == 0);
  cnn_tensor_release(y2);
  cnn_tensor_release(y3);
  /* padding wider than the window: all fill */
  y = cnn_batch_random_crop(x4, 1, 1, 0, 9, -1);
  CHECK(y != NULL);
  cnn_tensor_release(y);
  CHECK(!cnn_batch_random_crop(x4, 6, 4, 1, 0, 0));
  CHECK_ERROR_HAS("crop size 6x4 is larger than the padded image 5x4", NULL);

  /* hflip: p = 1 mirrors every row, p = 0 copies */
  y = cnn_batch_random_hflip(x4, 1.0);
  CHECK(y && cnn_tensor_f32(y)[0] == 4 && cnn_tensor_f32(y)[3] == 1 && cnn_tensor_f32(y)[95] == 93);
  cnn_tensor_release(y);
  y = cnn_batch_random_hflip(x4, 0.0);
  CHECK(y && memcmp(cnn_tensor_f32(y), cnn_tensor_f32(x4), 96 * sizeof(float)) == 0);
  cnn_tensor_release(y);
  CHECK(!cnn_batch_random_hflip(x4, 1.5));
  cnn_tensor_release(x);
  cnn_tensor_release(x4);
  /* int64 and wrong ranks are refused */
  cnn_tensor *li = cnn_tensor_zeros(CNN_INT64, 4, s8);
  CHECK(!cnn_batch_random_hflip(li, 0.5));
  CHECK_ERROR_HAS("float32", NULL);
  cnn_tensor_release(li);
}

/* Names in folder d, "." and ".." aside. */
static int entries(const char *d) {
  DIR *dh = opendir(d);
  int n = 0;
  for (struct dirent *e; dh && (e = readdir(dh));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  if (dh) closedir(dh);
  return n;
}

/* The writers' temporary files: commit leaves the destination alone in the folder, abort leaves
 * nothing, and a writer killed mid-write leaves nothing where the file system has unnamed files
 * (O_TMPFILE: ext4, xfs, btrfs, tmpfs; it left a whole PATH.tmp-<pid>-<n> before). */
static void test_atomic_file(void) {
  char sub[256];
  snprintf(sub, sizeof sub, "%s", tmp_path("atomic"));
  CHECK(mkdir(sub, 0700) == 0);
  char path[300];
  snprintf(path, sizeof path, "%s/out.bin", sub);
  cnn_atomic_file af;
  CHECK(cnn_atomic_open(&af, path) == 0);
  const bool unnamed = af.unnamed;
  fputs("abc", af.f);
  CHECK(entries(sub) == (unnamed ? 0 : 1));
  CHECK(cnn_atomic_commit(&af) == 0);
  CHECK(entries(sub) == 1);
  FILE *f = fopen(path, "rb");
  char got[8] = {0};
  CHECK(f && fread(got, 1, sizeof got, f) == 3 && strcmp(got, "abc") == 0);
  if (f) fclose(f);
  CHECK(cnn_atomic_open(&af, path) == 0);
  fputs("never", af.f);
  cnn_atomic_abort(&af);
  CHECK(entries(sub) == 1);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) { /* half a megabyte written, then killed before the commit */
    cnn_atomic_file k;
    if (cnn_atomic_open(&k, path) != 0) _exit(3);
    static char block[1 << 19];
    fwrite(block, 1, sizeof block, k.f);
    fflush(k.f);
    raise(SIGKILL);
    _exit(4);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  if (unnamed) CHECK(entries(sub) == 1);
  else fprintf(stderr, "test_io: no unnamed files in %s: a killed writer's temporary file stays\n", sub);
  f = fopen(path, "rb");
  CHECK(f && fread(got, 1, sizeof got, f) == 3); /* the old file intact */
  if (f) fclose(f);
  /* the file replaced keeps its permissions; a symlink keeps pointing at the new file; a device
   * (/dev/null, which a save over it replaced by a regular file) is written as it is */
  CHECK(chmod(path, 0604) == 0);
  char link[300];
  snprintf(link, sizeof link, "%s/link.bin", sub);
  CHECK(symlink("out.bin", link) == 0);
  CHECK(cnn_atomic_open(&af, link) == 0);
  fputs("xyz", af.f);
  CHECK(cnn_atomic_commit(&af) == 0);
  struct stat st;
  CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0604);
  memset(got, 0, sizeof got);
  f = fopen(path, "rb");
  CHECK(f && fread(got, 1, sizeof got, f) == 3 && strcmp(got, "xyz") == 0);
  if (f) fclose(f);
  CHECK(entries(sub) == 2);
  /* a dangling symlink: the file it names is made, the link stays (it was replaced by a file) */
  char dangling[300], named[300];
  snprintf(dangling, sizeof dangling, "%s/dangling.bin", sub);
  snprintf(named, sizeof named, "%s/named.bin", sub);
  CHECK(symlink("named.bin", dangling) == 0);
  CHECK(cnn_atomic_open(&af, dangling) == 0);
  fputs("abc", af.f);
  CHECK(cnn_atomic_commit(&af) == 0);
  CHECK(lstat(dangling, &st) == 0 && S_ISLNK(st.st_mode));
  CHECK(lstat(named, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 3);
  CHECK(entries(sub) == 4);
  /* a folder, or a path ending in a slash, is refused at open, before anything is written (the
   * rename at the commit failed, "write failed (Not a directory)", after the whole file) */
  char slashed[300];
  snprintf(slashed, sizeof slashed, "%s/", sub);
  CHECK(cnn_atomic_open(&af, sub) == -1 && strstr(cnn_error_get(), "is a directory"));
  CHECK(cnn_atomic_open(&af, slashed) == -1 && strstr(cnn_error_get(), "is a directory"));
  snprintf(slashed, sizeof slashed, "%s/new/", sub);
  CHECK(cnn_atomic_open(&af, slashed) == -1 && strstr(cnn_error_get(), "ends with /"));
  CHECK(entries(sub) == 4);
  CHECK(cnn_atomic_open(&af, "/dev/null") == 0);
  fputs("gone", af.f);
  CHECK(cnn_atomic_commit(&af) == 0);
  CHECK(stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
}

int main(void) {
  if (tmpfiles_init("cnn_test_io") != 0) return 2;
  test_atomic_file();
  test_header_json();
  test_idx();
  test_png();
  test_safetensors();
  test_batch();
  tmpfiles_cleanup();
  return check_summary("test_io");
}
