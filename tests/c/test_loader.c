/* The photo loader's C half against the plain paths it shortcuts: a JPEG decoded window by window
 * (rows skipped, columns cropped, EXIF orientation) equals the whole decode inside the window, for
 * every fixture kind and many windows; an image source's samples (decoded straight into the first
 * transform, cached or not) equal cnn_tf_run on cnn_image_load's float image with the same seed;
 * a loader gives identical batches with 0, 1 and 4 workers, stopped half way or not. Run under
 * ASan/UBSan in CI (tests/fixtures/photos is found from this file's path). */
#include "check.h"
#include "cnn/image_io.h"
#include "cnn/jpeg_io.h"
#include "data/loader.h"
#include "data/transforms.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static char root[4096];

static const char *fixture(const char *name) {
  static char path[4200];
  snprintf(path, sizeof path, "%s/tests/fixtures/photos/%s", root, name);
  return path;
}

static const char *const FILES[] = {"rgb_420.jpg",        "rgb_422.jpg",    "rgb_444.jpg", "rgb_411.jpg", "rgb_440.jpg",
                                    "progressive.jpg",    "arithmetic.jpg", "restart.jpg", "gray.jpg",    "cmyk.jpg",
                                    "rgb_colorspace.jpg", "exif_3.jpg",     "exif_5.jpg",  "exif_6.jpg",  "exif_8.jpg"};
#define NFILES (sizeof FILES / sizeof FILES[0])

static uint64_t lcg = 0x9e3779b97f4a7c15ULL;
static int64_t rnd(int64_t n) {
  lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
  return (int64_t)((lcg >> 33) % (uint64_t)n);
}

static int read_window(const char *path, cnn_image_mode mode, const int64_t *window, cnn_image8 *im, int64_t *h,
                       int64_t *w) {
  cnn_jpeg_reader *r = cnn_jpeg_open(path, true);
  if (!r) return -1;
  cnn_jpeg_size(r, h, w);
  int rc = cnn_jpeg_read8(r, mode, window, im);
  cnn_jpeg_close(r);
  return rc;
}

/* Windows of every fixture (and larger, synthetic images written here: more blocks to skip) match
 * the whole decode byte for byte. */
static void test_windows(void) {
  for (size_t f = 0; f < NFILES; f++) {
    for (int mode = CNN_IMAGE_AUTO; mode <= CNN_IMAGE_RGB; mode++) {
      cnn_image8 full;
      int64_t h, w;
      CHECK(read_window(fixture(FILES[f]), (cnn_image_mode)mode, NULL, &full, &h, &w) == 0);
      if (!full.data) continue;
      CHECK(full.h == h && full.w == w && full.top == 0 && full.left == 0);
      for (int k = 0; k < 40; k++) {
        int64_t win[4];
        win[2] = 1 + rnd(h), win[3] = 1 + rnd(w);
        win[0] = rnd(h - win[2] + 1), win[1] = rnd(w - win[3] + 1);
        cnn_image8 part;
        int64_t ph, pw;
        CHECK(read_window(fixture(FILES[f]), (cnn_image_mode)mode, win, &part, &ph, &pw) == 0);
        if (!part.data) continue;
        CHECK(part.top <= win[0] && part.left <= win[1] && part.top + part.h >= win[0] + win[2] &&
              part.left + part.w >= win[1] + win[3]);
        int bad = 0;
        for (int64_t y = win[0]; y < win[0] + win[2]; y++)
          for (int64_t x = win[1]; x < win[1] + win[3]; x++)
            bad += memcmp(full.data + (y * w + x) * full.c,
                          part.data + ((y - part.top) * part.w + x - part.left) * part.c, (size_t)full.c) != 0;
        if (bad)
          fprintf(stderr, "%s mode %d window %lld,%lld %lldx%lld: %d pixels differ\n", FILES[f], mode,
                  (long long)win[0], (long long)win[1], (long long)win[2], (long long)win[3], bad);
        CHECK(bad == 0);
        cnn_image8_free(&part);
      }
      cnn_image8_free(&full);
    }
  }
}

/* Windows whose far edge is past int64 (top + height overflowed before the clamp: UBSan) read
 * what lies inside the image, as a window ending at its edge does. */
static void test_extreme_windows(void) {
  cnn_image8 full, part;
  int64_t h, w, ph, pw;
  CHECK(read_window(fixture(FILES[0]), CNN_IMAGE_RGB, NULL, &full, &h, &w) == 0);
  int64_t win[4] = {h / 2, w / 2, INT64_MAX, INT64_MAX};
  CHECK(read_window(fixture(FILES[0]), CNN_IMAGE_RGB, win, &part, &ph, &pw) == 0);
  CHECK(part.data && part.top <= h / 2 && part.left <= w / 2 && part.top + part.h == h && part.left + part.w == w);
  for (int64_t y = h / 2; part.data && full.data && y < h; y++)
    CHECK(memcmp(full.data + (y * w + w / 2) * 3, part.data + ((y - part.top) * part.w + w / 2 - part.left) * 3,
                 (size_t)((w - w / 2) * 3)) == 0);
  cnn_image8_free(&part);
  cnn_image8_free(&full);
}

/* A bigger JPEG (written by cnn_jpeg_save from a smooth random image) with windows far from the
 * edges: skipped rows and cropped columns in the middle of 4:2:0 data. */
static void test_big_windows(void) {
  int64_t size[3] = {3, 301, 413};
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 3, size);
  float *p = cnn_tensor_f32(t);
  for (int64_t k = 0; k < 3; k++)
    for (int64_t y = 0; y < size[1]; y++)
      for (int64_t x = 0; x < size[2]; x++)
        p[(k * size[1] + y) * size[2] + x] = 0.5f + 0.4f * sinf(0.05f * (float)(x + 2 * y + 40 * k)) *
                                                        cosf(0.03f * (float)(y - x));
  char path[64];
  snprintf(path, sizeof path, "/tmp/cnn_test_loader_%d.jpg", (int)getpid());
  CHECK(cnn_jpeg_save(path, t, 80) == 0);
  cnn_tensor_release(t);
  cnn_image8 full;
  int64_t h, w;
  CHECK(read_window(path, CNN_IMAGE_RGB, NULL, &full, &h, &w) == 0);
  for (int k = 0; k < 60 && full.data; k++) {
    int64_t win[4] = {0, 0, 1 + rnd(h / 2), 1 + rnd(w / 2)};
    win[0] = rnd(h - win[2] + 1), win[1] = rnd(w - win[3] + 1);
    cnn_image8 part;
    int64_t ph, pw;
    CHECK(read_window(path, CNN_IMAGE_RGB, win, &part, &ph, &pw) == 0);
    int bad = 0;
    for (int64_t y = win[0]; part.data && y < win[0] + win[2]; y++)
      bad += memcmp(full.data + (y * w + win[1]) * 3, part.data + ((y - part.top) * part.w + win[1] - part.left) * 3,
                    (size_t)(win[3] * 3)) != 0;
    CHECK(bad == 0);
    CHECK(part.h < h || win[2] > h - 40); /* rows were skipped or cut unless the window is nearly all */
    cnn_image8_free(&part);
  }
  cnn_image8_free(&full);
  remove(path);
}

static cnn_tf rrc(int64_t size) {
  cnn_tf op;
  memset(&op, 0, sizeof op);
  op.kind = CNN_TF_RANDOM_RESIZED_CROP;
  op.size[0] = op.size[1] = size;
  op.scale[0] = 0.08, op.scale[1] = 1.0;
  op.ratio[0] = 3.0 / 4.0, op.ratio[1] = 4.0 / 3.0;
  op.interp = CNN_INTERP_BILINEAR;
  op.antialias = true;
  return op;
}

static bool same(const cnn_tensor *a, const cnn_tensor *b) {
  return a && b && cnn_tensor_same_shape(a, b) &&
         memcmp(cnn_tensor_f32(a), cnn_tensor_f32(b), sizeof(float) * (size_t)cnn_tensor_numel(a)) == 0;
}

/* Samples through the shortcuts equal the transforms run on the float image. */
static void test_source(void) {
  const char *paths[NFILES];
  int64_t labels[NFILES];
  for (size_t f = 0; f < NFILES; f++) {
    paths[f] = strdup(fixture(FILES[f]));
    labels[f] = (int64_t)f + 1;
  }
  cnn_tf ops[3];
  ops[0] = rrc(9);
  memset(&ops[1], 0, sizeof ops[1]);
  ops[1].kind = CNN_TF_RANDOM_HFLIP;
  ops[1].p = 0.5;
  memset(&ops[2], 0, sizeof ops[2]);
  ops[2].kind = CNN_TF_CENTER_CROP;
  ops[2].size[0] = 7, ops[2].size[1] = 8;
  for (int variant = 0; variant < 3; variant++) { /* rrc first; center_crop first (padding); resize first */
    const cnn_tf *use = variant == 0 ? ops : &ops[2];
    int nops = variant == 0 ? 3 : 1;
    cnn_tf resize;
    if (variant == 2) {
      memset(&resize, 0, sizeof resize);
      resize.kind = CNN_TF_RESIZE;
      resize.nsize = 1, resize.size[0] = 12, resize.interp = CNN_INTERP_BICUBIC, resize.antialias = true;
      use = &resize;
    }
    if (variant == 1) ops[2].size[0] = 40; /* taller than every fixture: zero padding */
    cnn_image_source *plain = cnn_image_source_new(NFILES, paths, labels, CNN_IMAGE_RGB, true, use, nops, false);
    cnn_image_source *cached = cnn_image_source_new(NFILES, paths, labels, CNN_IMAGE_RGB, true, use, nops, true);
    for (size_t f = 0; f < NFILES; f++)
      for (uint64_t seed = 1; seed <= 6; seed++) {
        cnn_tensor *img = cnn_image_load(paths[f], CNN_IMAGE_RGB, true);
        cnn_rng g;
        cnn_rng_seed(&g, seed);
        cnn_tensor *want = cnn_tf_run(use, nops, img, &g);
        cnn_tensor *a = cnn_image_source_get(plain, (int64_t)f, seed);
        cnn_tensor *b = cnn_image_source_get(cached, (int64_t)f, seed); /* decodes, then caches */
        cnn_tensor *c = cnn_image_source_get(cached, (int64_t)f, seed); /* from the cache */
        if (!same(a, want) || !same(b, want) || !same(c, want))
          fprintf(stderr, "variant %d %s seed %llu: a sample differs from the float path\n", variant, FILES[f],
                  (unsigned long long)seed);
        CHECK(same(a, want) && same(b, want) && same(c, want));
        cnn_tensor_release(img);
        cnn_tensor_release(want);
        cnn_tensor_release(a);
        cnn_tensor_release(b);
        cnn_tensor_release(c);
      }
    CHECK(cnn_image_source_cached(cached) == (int64_t)NFILES);
    cnn_image_source_free(plain);
    cnn_image_source_free(cached);
  }
  for (size_t f = 0; f < NFILES; f++) free((void *)paths[f]);
}

/* Batches with 0, 1 and 4 workers are the same; a loader freed half way stops cleanly. */
static void test_loader(void) {
  enum { N = 45 };
  const char *paths[N];
  int64_t labels[N], order[N];
  for (int i = 0; i < N; i++) {
    paths[i] = strdup(fixture(FILES[(size_t)i % NFILES]));
    labels[i] = i % 5 + 1;
    order[i] = (i * 17) % N;
  }
  cnn_tf op = rrc(6);
  cnn_image_source *src = cnn_image_source_new(N, paths, labels, CNN_IMAGE_RGB, true, &op, 1, false);
  cnn_tensor *ref[N / 4 + 1] = {0};
  for (int workers = 0; workers <= 4; workers += workers ? 3 : 1) {
    cnn_loader *l = cnn_loader_start(src, order, N, 4, 42, 3, workers, 2, true);
    CHECK(l && cnn_loader_batches(l) == 12);
    cnn_loader_batch b;
    int k = 0, rc;
    while ((rc = cnn_loader_next(l, &b)) == 1) {
      CHECK(b.n == (k < 11 ? 4 : 1) && b.x && b.x->size[0] == b.n && b.labels);
      for (int64_t j = 0; j < b.n; j++) CHECK(cnn_tensor_i64(b.labels)[j] == labels[order[k * 4 + j]]);
      if (!workers) ref[k] = cnn_tensor_retain(b.x);
      else CHECK(same(ref[k], b.x));
      cnn_loader_batch_clear(&b);
      k++;
    }
    CHECK(rc == 0 && k == 12);
    cnn_loader_free(l);
    /* stopped after one batch, with work in flight */
    l = cnn_loader_start(src, order, N, 4, 42, 3, workers, 3, true);
    CHECK(cnn_loader_next(l, &b) == 1);
    cnn_loader_batch_clear(&b);
    cnn_loader_free(l);
  }
  for (int k = 0; k < N / 4 + 1; k++) cnn_tensor_release(ref[k]);
  /* a batch whose images differ in size cannot stack: the error names both files */
  cnn_image_source *raw = cnn_image_source_new(N, paths, labels, CNN_IMAGE_RGB, true, NULL, 0, false);
  cnn_loader *l = cnn_loader_start(raw, order, N, 4, 1, 1, 2, 2, true);
  cnn_loader_batch b;
  cnn_error_clear();
  int rc = cnn_loader_next(l, &b);
  CHECK(rc == -1 && strstr(cnn_error_get(), "a batch needs one size"));
  cnn_loader_free(l);
  cnn_image_source_free(raw);
  cnn_image_source_free(src);
  for (int i = 0; i < N; i++) free((void *)paths[i]);
}

int main(int argc, char **argv) {
  if (argc > 1) snprintf(root, sizeof root, "%s", argv[1]);
  else { /* __FILE__ is .../tests/c/test_loader.c */ snprintf(root, sizeof root, "%s", __FILE__);
    char *at = strstr(root, "tests/c/test_loader.c");
    if (at == root) snprintf(root, sizeof root, ".");
    else if (at) at[-1] = '\0';
  }
  test_windows();
  test_extreme_windows();
  test_big_windows();
  test_source();
  test_loader();
  return check_summary("test_loader");
}
