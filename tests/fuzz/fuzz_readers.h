/* The checks shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c) and their regression test
 * (tests/c/test_fuzz_regressions.c): each takes the bytes of one input, hands them to a reader's
 * public entry point as a file, and checks the reader's contract on the way out. Returns 0 when
 * the reader succeeded or failed cleanly, -1 (with a line on stderr) when it broke its contract;
 * memory errors are left to ASan/UBSan. Needs _GNU_SOURCE defined before any include. */
#ifndef CNN_FUZZ_READERS_H
#define CNN_FUZZ_READERS_H

#include "cnn/error.h"
#include "cnn/idx.h"
#include "cnn/image_io.h"
#include "cnn/jpeg_io.h"
#include "cnn/png_io.h"
#include "cnn/safetensors.h"
#include "cnn/tensor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

/* The readers take paths only: the bytes go to an in-memory file (made once), reached through
 * /proc/self/fd so the reader opens, stats and reads it like any regular file. NULL on failure. */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("cnn_fuzz", 0);
    if (fd < 0) return NULL;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0) return NULL;
  size_t done = 0;
  while (done < size) {
    ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
    if (w <= 0) return NULL;
    done += (size_t)w;
  }
  return path;
}

/* A failing reader must leave a message that starts with the path (or says it ran out of memory). */
static inline int fuzz_error_ok(const char *path, const char *what) {
  const char *m = cnn_error_get();
  if (strncmp(m, path, strlen(path)) == 0 || strstr(m, "out of memory")) return 0;
  fprintf(stderr, "%s failed with a message that does not start with the path: \"%s\"\n", what, m);
  return -1;
}

/* A loaded tensor is contiguous with strides that fit in int64 (every reader makes its tensors
 * with cnn_tensor_empty). */
static inline int fuzz_tensor_ok(const cnn_tensor *t, const char *what) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->stride[d] != s) {
      fprintf(stderr, "%s: dimension %d has stride %lld, expected %lld\n", what, d + 1, (long long)t->stride[d],
              (long long)s);
      return -1;
    }
    if (d > 0 && __builtin_mul_overflow(s, t->size[d] > 0 ? t->size[d] : 1, &s)) {
      fprintf(stderr, "%s: the stride of dimension %d overflows int64 (size %lld times stride %lld)\n", what, d,
              (long long)t->size[d], (long long)t->stride[d]);
      return -1;
    }
  }
  return 0;
}

/* IDX: both loaders; a ubyte image file must give the same values through either. */
static inline int fuzz_check_idx(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  if (!path) return 0;
  int rc = 0, code = -1;
  cnn_error_clear();
  cnn_tensor *t = cnn_idx_load(path, 255.0, &code);
  if (t ? fuzz_tensor_ok(t, "cnn_idx_load") : fuzz_error_ok(path, "cnn_idx_load")) rc = -1;
  cnn_error_clear();
  cnn_tensor *b = cnn_idx_load_u8(path);
  if (b ? fuzz_tensor_ok(b, "cnn_idx_load_u8") : fuzz_error_ok(path, "cnn_idx_load_u8")) rc = -1;
  if (t && code == CNN_IDX_UBYTE && !b && !strstr(cnn_error_get(), "out of memory")) {
    fprintf(stderr, "cnn_idx_load read a ubyte file that cnn_idx_load_u8 rejected: %s\n", cnn_error_get());
    rc = -1;
  } else if (b && (!t || code != CNN_IDX_UBYTE || cnn_tensor_numel(b) != cnn_tensor_numel(t))) {
    fprintf(stderr, "cnn_idx_load_u8 accepted a file that cnn_idx_load read differently\n");
    rc = -1;
  } else if (b) { /* the same bytes: as float32 x / 255 (images) or int64 x (labels) */
    const uint8_t *bp = cnn_tensor_u8(b);
    for (int64_t i = 0; i < cnn_tensor_numel(b) && !rc; i++) {
      double v = t->dtype == CNN_FLOAT32 ? cnn_tensor_f32(t)[i] : (double)cnn_tensor_i64(t)[i];
      double want = t->dtype == CNN_FLOAT32 ? (float)bp[i] / 255.0f : bp[i];
      if (v != want) {
        fprintf(stderr, "ubyte element %lld: %g from cnn_idx_load, byte %u\n", (long long)i, v, bp[i]);
        rc = -1;
      }
    }
  }
  cnn_tensor_release(b);
  cnn_tensor_release(t);
  return rc;
}

/* PNG chunk CRCs are recomputed before the reader sees the bytes, so mutations reach the
 * header and transform logic instead of stopping at libpng's CRC check. */
static inline void fuzz_png_fix_crcs(uint8_t *p, size_t size) {
  for (size_t at = 8; at + 12 <= size;) {
    uint32_t len = ((uint32_t)p[at] << 24) | ((uint32_t)p[at + 1] << 16) | ((uint32_t)p[at + 2] << 8) | p[at + 3];
    if (len > size - at - 12) break;
    uint32_t crc = (uint32_t)crc32(0L, p + at + 4, len + 4);
    uint8_t *c = p + at + 8 + len;
    c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
    at += 12 + (size_t)len;
  }
}

/* PNG: every mode; a result is (C, H, W) float32 with C fixed by the mode and values in [0, 1]. */
static inline int fuzz_check_png(const uint8_t *data, size_t size) {
  uint8_t *copy = malloc(size ? size : 1);
  if (!copy) return 0;
  memcpy(copy, data, size);
  fuzz_png_fix_crcs(copy, size);
  const char *path = fuzz_file(copy, size);
  free(copy);
  if (!path) return 0;
  int rc = 0;
  for (int mode = CNN_PNG_AUTO; mode <= CNN_PNG_RGBA && !rc; mode++) {
    cnn_error_clear();
    cnn_tensor *t = cnn_png_load(path, (cnn_png_mode)mode);
    if (!t) {
      rc = fuzz_error_ok(path, "cnn_png_load");
      continue;
    }
    static const int64_t channels[] = {[CNN_PNG_GRAY] = 1, [CNN_PNG_RGB] = 3, [CNN_PNG_RGBA] = 4};
    int64_t c = t->ndim == 3 ? t->size[0] : -1;
    bool c_ok = mode == CNN_PNG_AUTO ? c == 1 || c == 3 : c == channels[mode];
    if (t->dtype != CNN_FLOAT32 || !c_ok) {
      fprintf(stderr, "cnn_png_load mode %d: got %d dims, %lld channels\n", mode, t->ndim, (long long)c);
      rc = -1;
    } else rc = fuzz_tensor_ok(t, "cnn_png_load");
    const float *f = cnn_tensor_f32(t);
    for (int64_t i = 0, n = cnn_tensor_numel(t); i < n && !rc; i++)
      if (!(f[i] >= 0.0f && f[i] <= 1.0f)) {
        fprintf(stderr, "cnn_png_load mode %d: element %lld is %g, outside [0, 1]\n", mode, (long long)i, f[i]);
        rc = -1;
      }
    cnn_tensor_release(t);
  }
  return rc;
}

/* JPEG (and whatever else cnn_image_load sniffs): three modes, with and without EXIF; a result is
 * (C, H, W) float32 with C fixed by the mode and values in [0, 1]. Images are capped at 256K
 * pixels here: a JPEG header can claim 65535x65535 in a few bytes, and the default limit of 179M
 * pixels would be a 2 GB tensor per input (past the fuzzer's memory limit) while 2M pixels of
 * grey already take seconds under the sanitizers. The cap is the reader's own pixel limit, so
 * what is checked is that it holds before anything big is allocated. */
#define FUZZ_MAX_PIXELS (1 << 18)
static inline int fuzz_check_jpeg(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  if (!path) return 0;
  cnn_image_set_max_pixels(FUZZ_MAX_PIXELS);
  int rc = 0;
  static const struct {
    cnn_image_mode mode;
    bool exif;
  } runs[] = {{CNN_IMAGE_AUTO, true}, {CNN_IMAGE_GRAY, false}, {CNN_IMAGE_RGBA, true}};
  for (size_t k = 0; k < sizeof runs / sizeof runs[0] && !rc; k++) {
    int mode = (int)runs[k].mode;
    bool exif = runs[k].exif;
    cnn_error_clear();
    cnn_tensor *t = cnn_image_load(path, (cnn_image_mode)mode, exif);
    if (!t) {
      rc = fuzz_error_ok(path, "cnn_image_load");
      continue;
    }
    static const int64_t channels[] = {[CNN_IMAGE_GRAY] = 1, [CNN_IMAGE_RGB] = 3, [CNN_IMAGE_RGBA] = 4};
    int64_t c = t->ndim == 3 ? t->size[0] : -1;
    bool c_ok = mode == CNN_IMAGE_AUTO ? c == 1 || c == 3 : c == channels[mode];
    if (t->dtype != CNN_FLOAT32 || !c_ok || (t->ndim == 3 && t->size[1] * t->size[2] > FUZZ_MAX_PIXELS)) {
      fprintf(stderr, "cnn_image_load mode %d: got %d dims, %lld channels\n", mode, t->ndim, (long long)c);
      rc = -1;
    } else rc = fuzz_tensor_ok(t, "cnn_image_load");
    const float *f = cnn_tensor_f32(t);
    for (int64_t i = 0, n = cnn_tensor_numel(t); i < n && !rc; i++)
      if (!(f[i] >= 0.0f && f[i] <= 1.0f)) {
        fprintf(stderr, "cnn_image_load mode %d: element %lld is %g, outside [0, 1]\n", mode, (long long)i, f[i]);
        rc = -1;
      }
    cnn_tensor_release(t);
  }
  /* the loader's windowed decoding: rows skipped, columns cropped, the end of the file unread */
  cnn_error_clear();
  cnn_jpeg_reader *r = rc ? NULL : cnn_jpeg_open(path, true);
  if (r) {
    int64_t h, w;
    cnn_jpeg_size(r, &h, &w);
    int64_t window[4] = {h / 3, w / 4, h / 2 + 1, w / 2 + 1};
    cnn_image8 im;
    if (cnn_jpeg_read8(r, CNN_IMAGE_RGB, window, &im) == 0) {
      if (im.c != 3 || im.top > window[0] || im.left > window[1] ||
          im.top + im.h < (window[0] + window[2] < h ? window[0] + window[2] : h) ||
          im.left + im.w < (window[1] + window[3] < w ? window[1] + window[3] : w)) {
        fprintf(stderr, "cnn_jpeg_read8: the rectangle does not hold the window\n");
        rc = -1;
      }
      cnn_image8_free(&im);
    } else if (fuzz_error_ok(path, "cnn_jpeg_read8")) {
      rc = -1;
    }
    cnn_jpeg_close(r);
  } else if (!rc && cnn_error_get()[0]) {
    rc = fuzz_error_ok(path, "cnn_jpeg_open");
  }
  return rc;
}

/* safetensors: a result holds named tensors (bool ones of 0 and 1 only) and complete metadata pairs. */
static inline int fuzz_check_safetensors(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  if (!path) return 0;
  cnn_safetensors st;
  cnn_error_clear();
  if (cnn_safetensors_load(path, &st)) {
    int rc = fuzz_error_ok(path, "cnn_safetensors_load");
    if (st.n || st.nmeta || st.names || st.tensors) {
      fprintf(stderr, "cnn_safetensors_load failed but kept results\n");
      rc = -1;
    }
    return rc;
  }
  int rc = 0;
  for (size_t i = 0; i < st.n && !rc; i++)
    if (!st.names[i] || !st.tensors[i]) {
      fprintf(stderr, "cnn_safetensors_load: entry %zu is incomplete\n", i);
      rc = -1;
    } else {
      rc = fuzz_tensor_ok(st.tensors[i], "cnn_safetensors_load");
      const cnn_tensor *t = st.tensors[i];
      for (int64_t k = 0; t->dtype == CNN_BOOL && k < cnn_tensor_numel(t) && !rc; k++)
        if (cnn_tensor_u8(t)[k] > 1) {
          fprintf(stderr, "cnn_safetensors_load: bool entry %zu holds byte %u\n", i, cnn_tensor_u8(t)[k]);
          rc = -1;
        }
    }
  for (size_t i = 0; i < st.nmeta && !rc; i++)
    if (!st.meta_keys[i] || !st.meta_values[i]) {
      fprintf(stderr, "cnn_safetensors_load: metadata entry %zu is incomplete\n", i);
      rc = -1;
    }
  cnn_safetensors_clear(&st);
  return rc;
}

#endif
