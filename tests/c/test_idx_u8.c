/* Datasets as uint8 tensors: cnn_idx_load_u8 (raw and gzip IDX files as stored, the same error for
 * every broken file as cnn_idx_load gives: one shared parser) and cnn_batch_gather_float (batches
 * of rows as float32 / divisor) against hand values and bit for bit against cnn_idx_load's float32
 * images and t:float() / 255, with strided, empty and out-of-range indices and on 1 and 2 threads. */
#include "check.h"
#include "cnn/elementwise.h"
#include "cnn/error.h"
#include "cnn/idx.h"
#include "cnn/tensor.h"
#include "core/alloc.h"
#include "core/parallel.h"
#include "data/batch.h"
#include "tmpfiles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* An MNIST-layout ubyte image file of n 28x28 images; pixel (i, r, c) = (37 i + 5 r + 3 c) mod 256,
 * as the Lua fixtures, so every byte value 0..255 occurs. Returns its length. */
static size_t mnist_file(unsigned char *b, int n) {
  unsigned char head[] = {0, 0, 0x08, 3, 0, 0, (unsigned char)(n >> 8), (unsigned char)n, 0, 0, 0, 28, 0, 0, 0, 28};
  memcpy(b, head, sizeof head);
  for (int i = 0; i < n; i++)
    for (int r = 0; r < 28; r++)
      for (int c = 0; c < 28; c++)
        b[16 + (size_t)i * 784 + r * 28 + c] = (unsigned char)((37 * i + 5 * r + 3 * c) % 256);
  return 16 + (size_t)n * 784;
}

static cnn_tensor *indices(int n, const int64_t *v) {
  int64_t size = n;
  cnn_tensor *t = cnn_tensor_empty(CNN_INT64, 1, &size);
  for (int i = 0; i < n; i++) cnn_tensor_i64(t)[i] = v[i];
  return t;
}

/* ---- one byte an element ---- */

static void test_memory(void) {
  size_t live = cnn_alloc_live_bytes();
  int64_t size[3] = {5, 2, 3};
  cnn_tensor *t = cnn_tensor_zeros(CNN_UINT8, 3, size);
  CHECK(t && cnn_dtype_size(t->dtype) == 1 && cnn_tensor_numel(t) == 30);
  CHECK(cnn_alloc_live_bytes() - live == 30); /* counted by the allocator like any storage */
  for (int i = 0; i < 30; i++) CHECK(cnn_tensor_u8(t)[i] == 0);
  cnn_tensor_release(t);
  CHECK(cnn_alloc_live_bytes() == live);
}

/* ---- loading ---- */

static void test_load(void) {
  static unsigned char img[16 + 6 * 784];
  size_t n = mnist_file(img, 6);
  const char *raw = tmp_path("img.idx"), *gzp = tmp_path("img.idx.gz");
  write_file(raw, img, n);
  write_gz(gzp, img, n);
  for (int g = 0; g < 2; g++) {
    size_t live = cnn_alloc_live_bytes();
    cnn_tensor *b = cnn_idx_load_u8(g ? gzp : raw);
    CHECK(b && b->dtype == CNN_UINT8 && b->ndim == 3 && b->size[0] == 6 && b->size[1] == 28 && b->size[2] == 28);
    if (!b) continue;
    CHECK(cnn_alloc_live_bytes() - live == 6 * 784); /* the bytes, and nothing else kept */
    CHECK(memcmp(cnn_tensor_u8(b), img + 16, 6 * 784) == 0);
    cnn_tensor_release(b);
  }
  /* only ubyte files: a short file is named with its type */
  unsigned char shorts[] = {0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 2};
  write_file(tmp_path("short.idx"), shorts, sizeof shorts);
  CHECK(!cnn_idx_load_u8(tmp_path("short.idx")));
  CHECK_ERROR_HAS("short.idx: the file holds 1x2 short elements", "only ubyte");

  /* every truncation of the raw and the gzip file, and hostile headers: the same error as
   * cnn_idx_load, word for word */
  size_t gzn;
  unsigned char *gzb = read_file(gzp, &gzn);
  char expect[1024];
  for (int g = 0; g < 2; g++) {
    const unsigned char *src = g ? gzb : img;
    size_t len = g ? gzn : n;
    size_t step = g ? 1 : 37; /* raw: every 37th cut, and the whole header */
    for (size_t cut = 0; cut < len; cut += cut < 20 ? 1 : step) {
      const char *p = tmp_path(g ? "cut.idx.gz" : "cut.idx");
      write_file(p, src, cut);
      cnn_error_clear();
      cnn_tensor *t = cnn_idx_load(p, 255, NULL);
      snprintf(expect, sizeof expect, "%s", cnn_error_get());
      cnn_error_clear();
      cnn_tensor *b = cnn_idx_load_u8(p);
      if (t || b || strcmp(expect, cnn_error_get()) != 0 || !strstr(expect, p)) {
        fprintf(stderr, "idx uint8: %s cut at %zu: \"%s\" vs \"%s\"\n", g ? "gzip" : "raw", cut, expect,
                cnn_error_get());
        failures++;
      }
      cnn_tensor_release(t);
      cnn_tensor_release(b);
    }
  }
  free(gzb);
  unsigned char longer[16 + 784 + 1];
  mnist_file(longer, 1);
  longer[16 + 784] = 9;
  unsigned char huge[] = {0, 0, 0x08, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  unsigned char empty_huge[] = {0, 0, 0x08, 3, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  unsigned char fake[] = {0, 0, 0x08, 3, 0, 0, 0xEA, 0x60, 0, 0, 0, 28, 0, 0, 0, 28};
  unsigned char magic[] = {1, 0, 8, 1, 0, 0, 0, 0};
  struct {
    const char *name;
    const unsigned char *data;
    size_t n;
    bool gz;
    const char *what;
  } bad[] = {
      {"long.idx", longer, sizeof longer, false, "file has 801 bytes"},
      {"long.idx.gz", longer, sizeof longer, true, "longer than the 800 bytes"},
      {"huge.idx", huge, sizeof huge, false, "too many to address"},
      {"empty_huge.idx", empty_huge, sizeof empty_huge, false, "too many to address"}, /* 0 elements, huge rows */
      {"fake.idx.gz", fake, sizeof fake, true, "cannot hold the 60000x28x28 ubyte"},
      {"magic.idx", magic, sizeof magic, false, "not an IDX file"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    const char *p = tmp_path(bad[k].name);
    if (bad[k].gz) write_gz(p, bad[k].data, bad[k].n);
    else write_file(p, bad[k].data, bad[k].n);
    CHECK(!cnn_idx_load_u8(p));
    CHECK_ERROR_HAS(p, bad[k].what);
    CHECK(!cnn_idx_load(p, 255, NULL));
    CHECK_ERROR_HAS(p, bad[k].what);
  }
  CHECK(!cnn_idx_load_u8(tmp_path("missing.idx")));
  CHECK_ERROR_HAS("missing.idx: cannot open", NULL);
  CHECK(!cnn_idx_load_u8(dir));
  CHECK_ERROR_HAS("not a regular file", NULL);
}

/* ---- gathers ---- */

static void test_gather(void) {
  static unsigned char img[16 + 200 * 784];
  size_t n = mnist_file(img, 200);
  const char *path = tmp_path("g.idx");
  write_file(path, img, n);
  cnn_tensor *b3 = cnn_idx_load_u8(path);
  cnn_tensor *ref = cnn_idx_load(path, 255, NULL); /* the float32 images as data.mnist made them */
  CHECK(b3 && ref);
  if (!b3 || !ref) return;
  int64_t shape4[4] = {200, 1, 28, 28};
  cnn_tensor *b = cnn_tensor_view(b3, 4, shape4);
  cnn_tensor_release(b3);
  CHECK(b != NULL);

  /* hand values: byte 0 -> 0, 255 -> 1, 51 -> 0.2f (51 / 255 = 1/5, rounded once) */
  int64_t v[3] = {0, 7, 2};
  cnn_tensor *idx = indices(3, v);
  cnn_tensor *x = cnn_batch_gather_float(b, idx, 255);
  CHECK(x && x->dtype == CNN_FLOAT32 && x->ndim == 4 && x->size[0] == 3 && x->size[1] == 1 && x->size[3] == 28);
  if (x) {
    const float *p = cnn_tensor_f32(x);
    CHECK(p[0] == 0.0f);                          /* image 0, (0, 0): 0 */
    CHECK(p[17] == 0.2f);                         /* image 0, (0, 17): 51 */
    CHECK(p[784] == 3.0f / 255.0f);               /* image 7, (0, 0): 259 mod 256 = 3 */
    CHECK(p[784 + 3 * 28 + 2] == 24.0f / 255.0f); /* image 7, (3, 2): 259 + 15 + 6 = 280 mod 256 */
    CHECK(p[2 * 784 + 26 * 28 + 17] == 1.0f);     /* image 2, (26, 17): 74 + 130 + 51 = 255 */
  }
  cnn_tensor_release(x);
  cnn_tensor_release(idx);

  /* every row, in a scrambled order, equals the float path bit for bit, on 1 and 2 threads */
  int64_t all[200];
  for (int i = 0; i < 200; i++) all[i] = (i * 73 + 11) % 200;
  idx = indices(200, all);
  int threads = cnn_parallel_get_threads();
  cnn_tensor *outs[2];
  for (int th = 1; th <= 2; th++) {
    cnn_parallel_set_threads(th);
    outs[th - 1] = cnn_batch_gather_float(b, idx, 255);
  }
  cnn_parallel_set_threads(threads);
  CHECK(outs[0] && outs[1]);
  if (outs[0] && outs[1]) {
    CHECK(memcmp(cnn_tensor_f32(outs[0]), cnn_tensor_f32(outs[1]), 200 * 784 * sizeof(float)) == 0);
    int same = 1;
    for (int i = 0; i < 200; i++)
      same &= memcmp(cnn_tensor_f32(outs[0]) + i * 784, cnn_tensor_f32(ref) + all[i] * 784, 784 * sizeof(float)) == 0;
    CHECK(same);
  }
  cnn_tensor_release(outs[0]);
  cnn_tensor_release(outs[1]);
  cnn_tensor_release(idx);

  /* strided indices: column 1 of a (3, 2) int64 tensor is rows 5, 9, 199 */
  int64_t grid[6] = {0, 5, 0, 9, 0, 199}, gsize[2] = {3, 2};
  cnn_tensor *g = cnn_tensor_empty(CNN_INT64, 2, gsize);
  memcpy(cnn_tensor_i64(g), grid, sizeof grid);
  cnn_tensor *col = cnn_tensor_select(g, 1, 1);
  CHECK(col && col->stride[0] == 2);
  x = cnn_batch_gather_float(b, col, 255);
  CHECK(x && x->size[0] == 3);
  if (x) {
    CHECK(memcmp(cnn_tensor_f32(x), cnn_tensor_f32(ref) + 5 * 784, 784 * sizeof(float)) == 0);
    CHECK(memcmp(cnn_tensor_f32(x) + 2 * 784, cnn_tensor_f32(ref) + 199 * 784, 784 * sizeof(float)) == 0);
  }
  cnn_tensor_release(x);
  cnn_tensor_release(col);
  cnn_tensor_release(g);

  /* divisor 1: the stored values */
  int64_t one[1] = {7};
  idx = indices(1, one);
  x = cnn_batch_gather_float(b, idx, 1);
  CHECK(x && cnn_tensor_f32(x)[0] == 3.0f && cnn_tensor_f32(x)[3 * 28 + 2] == 24.0f);
  cnn_tensor_release(x);
  cnn_tensor_release(idx);

  /* empty: a (0, 1, 28, 28) tensor */
  idx = indices(0, NULL);
  x = cnn_batch_gather_float(b, idx, 255);
  CHECK(x && x->ndim == 4 && x->size[0] == 0 && x->size[1] == 1 && x->size[2] == 28);
  cnn_tensor_release(x);
  cnn_tensor_release(idx);

  /* bad indices, dtypes and divisors: errors, nothing allocated */
  size_t live = cnn_alloc_live_bytes();
  int64_t over[3] = {1, 200, 2}, under[1] = {-1};
  idx = indices(3, over);
  cnn_tensor *idx2 = indices(1, under);
  size_t live_idx = cnn_alloc_live_bytes();
  CHECK(!cnn_batch_gather_float(b, idx, 255));
  CHECK_ERROR_HAS("index 200 is out of range for 200 rows", NULL);
  CHECK(!cnn_batch_gather_float(b, idx2, 255));
  CHECK_ERROR_HAS("index -1 is out of range", NULL);
  CHECK(cnn_alloc_live_bytes() == live_idx);
  cnn_tensor_release(idx);
  cnn_tensor_release(idx2);
  idx = indices(1, one);
  cnn_tensor *fidx = cnn_tensor_zeros(CNN_FLOAT32, 1, (int64_t[]){2});
  cnn_tensor *i2 = cnn_tensor_zeros(CNN_INT64, 2, (int64_t[]){1, 1});
  live_idx = cnn_alloc_live_bytes();
  double divisors[] = {0, -255, NAN, INFINITY, 1e-300, 1e300};
  for (size_t k = 0; k < sizeof divisors / sizeof divisors[0]; k++) {
    CHECK(!cnn_batch_gather_float(b, idx, divisors[k]));
    CHECK_ERROR_HAS("divisor must be a positive finite number", NULL);
  }
  CHECK(!cnn_batch_gather_float(b, fidx, 255));
  CHECK_ERROR_HAS("indices must be a 1-d int64 tensor", "float32");
  CHECK(!cnn_batch_gather_float(b, i2, 255));
  CHECK_ERROR_HAS("indices must be a 1-d int64 tensor", "2-d");
  CHECK(cnn_alloc_live_bytes() == live_idx);
  cnn_tensor_release(i2);
  cnn_tensor_release(fidx);
  cnn_tensor_release(idx);
  CHECK(cnn_alloc_live_bytes() == live);

  /* the whole dataset converted by the tensor ops: t:float() / 255, the same bits */
  cnn_tensor *f = cnn_tensor_to_dtype(b, CNN_FLOAT32), *d255 = cnn_tensor_scalar(CNN_FLOAT32, 255);
  x = f && d255 ? cnn_ew_binary(CNN_DIV, f, d255) : NULL;
  CHECK(x && x->ndim == 4 && x->size[0] == 200 && x->size[1] == 1);
  if (x) CHECK(memcmp(cnn_tensor_f32(x), cnn_tensor_f32(ref), 200 * 784 * sizeof(float)) == 0);
  cnn_tensor_release(x);
  cnn_tensor_release(f);
  cnn_tensor_release(d255);
  CHECK(cnn_alloc_live_bytes() == live);

  /* a 0-d tensor has no rows */
  cnn_tensor *s0 = cnn_tensor_zeros(CNN_UINT8, 0, NULL);
  idx = indices(1, (int64_t[]){0});
  CHECK(s0 && !cnn_batch_gather_float(s0, idx, 1));
  CHECK_ERROR_HAS("cannot gather rows of a 0-d tensor", NULL);
  cnn_tensor_release(idx);
  cnn_tensor_release(s0);
  cnn_tensor_release(ref);
  cnn_tensor_release(b);
}

int main(void) {
  if (tmpfiles_init("cnn_test_idx_u8") != 0) return 2;
  test_memory();
  test_load();
  test_gather();
  tmpfiles_cleanup();
  return check_summary("test_idx_u8");
}
