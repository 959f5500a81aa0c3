/* Image files whatever their format (see image_io.h): sniffing, the shared pixel limit, the EXIF
 * orientation tag and the transposes it asks for. The readers themselves are png_io.c and
 * jpeg_io.c; this file only dispatches between them. */
#include "cnn/image_io.h"
#include "cnn/error.h"
#include "io/file.h"
#include "cnn/jpeg_io.h"
#include "cnn/png_io.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

_Static_assert((int)CNN_IMAGE_AUTO == (int)CNN_PNG_AUTO && (int)CNN_IMAGE_GRAY == (int)CNN_PNG_GRAY &&
                   (int)CNN_IMAGE_RGB == (int)CNN_PNG_RGB && (int)CNN_IMAGE_RGBA == (int)CNN_PNG_RGBA,
               "cnn_image_mode and cnn_png_mode must agree");

static _Atomic int64_t max_pixels = 2 * 89478485; /* PIL's Image.MAX_IMAGE_PIXELS, doubled */

int64_t cnn_image_max_pixels(void) { return atomic_load_explicit(&max_pixels, memory_order_relaxed); }

void cnn_image_set_max_pixels(int64_t n) { atomic_store_explicit(&max_pixels, n < 1 ? 1 : n, memory_order_relaxed); }

cnn_image_format cnn_image_sniff(const uint8_t *head, size_t n) {
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && memcmp(head, png, 8) == 0) return CNN_IMAGE_PNG;
  if (cnn_jpeg_sniff(head, n)) return CNN_IMAGE_JPEG;
  return CNN_IMAGE_UNKNOWN;
}

cnn_image_format cnn_image_sniff_file(const char *path) {
  FILE *f = cnn_file_open(path); /* a named pipe would block fopen */
  if (!f) return CNN_IMAGE_UNKNOWN;
  uint8_t head[8];
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  return cnn_image_sniff(head, n);
}

/* ---- EXIF ---- */

static uint32_t rd16(const uint8_t *p, bool le) { return le ? p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1]; }

static uint32_t rd32(const uint8_t *p, bool le) {
  return le ? rd16(p, true) | rd16(p + 2, true) << 16 : rd16(p, false) << 16 | rd16(p + 2, false);
}

int cnn_exif_orientation(const uint8_t *p, size_t n) {
  if (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
    p += 6;
    n -= 6;
  }
  if (n < 8) return 1;
  bool le;
  if (p[0] == 'I' && p[1] == 'I') le = true;
  else if (p[0] == 'M' && p[1] == 'M') le = false;
  else return 1;
  if (rd16(p + 2, le) != 42) return 1;
  uint32_t ifd = rd32(p + 4, le); /* IFD0: a count, then 12-byte entries */
  if (ifd > n || n - ifd < 2) return 1;
  uint32_t count = rd16(p + ifd, le);
  for (uint32_t i = 0; i < count; i++) {
    size_t e = (size_t)ifd + 2 + (size_t)12 * i;
    if (e + 12 > n) break;
    if (rd16(p + e, le) != 0x0112) continue;
    uint32_t type = rd16(p + e + 2, le), cnt = rd32(p + e + 4, le), v;
    if (cnt < 1) return 1;
    if (type == 3) v = rd16(p + e + 8, le);      /* SHORT, as the standard says */
    else if (type == 4) v = rd32(p + e + 8, le); /* LONG, which PIL reads too */
    else return 1;
    return v >= 1 && v <= 8 ? (int)v : 1;
  }
  return 1;
}

cnn_tensor *cnn_image_orient(cnn_tensor *t, int orientation) {
  if (orientation < 2 || orientation > 8 || t->ndim != 3) return cnn_tensor_retain(t);
  int64_t c = t->size[0], h = t->size[1], w = t->size[2];
  bool swap = orientation >= 5; /* 5..8 exchange width and height */
  /* output (y, x) reads input element base + y * dy + x * dx of each plane */
  int64_t base, dy, dx;
  switch (orientation) {
  case 2: base = w - 1, dy = w, dx = -1; break;                /* mirror left-right */
  case 3: base = (h - 1) * w + w - 1, dy = -w, dx = -1; break; /* rotate 180 */
  case 4: base = (h - 1) * w, dy = -w, dx = 1; break;          /* flip top-bottom */
  case 5: base = 0, dy = 1, dx = w; break;                     /* transpose */
  case 6: base = (h - 1) * w, dy = 1, dx = -w; break;          /* rotate 90 clockwise */
  case 7: base = (h - 1) * w + w - 1, dy = -1, dx = -w; break; /* transverse */
  default: base = w - 1, dy = -1, dx = w; break;               /* 8: rotate 90 counter-clockwise */
  }
  int64_t size[3] = {c, swap ? w : h, swap ? h : w};
  cnn_tensor *src = cnn_tensor_contiguous(t);
  if (!src) return NULL;
  cnn_tensor *o = cnn_tensor_empty(CNN_FLOAT32, 3, size);
  if (o) {
    const float *a = cnn_tensor_f32(src);
    float *b = cnn_tensor_f32(o);
    for (int64_t k = 0; k < c; k++) {
      const float *pa = a + k * h * w + base;
      for (int64_t y = 0; y < size[1]; y++)
        for (int64_t x = 0; x < size[2]; x++) *b++ = pa[y * dy + x * dx];
    }
  }
  cnn_tensor_release(src);
  return o;
}

/* ---- files ---- */

cnn_tensor *cnn_image_load(const char *path, cnn_image_mode mode, bool exif) {
  FILE *f = cnn_file_open(path); /* refuses a named pipe, which fopen would wait on forever */
  if (!f) return NULL;
  uint8_t head[8];
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  switch (cnn_image_sniff(head, n)) {
  case CNN_IMAGE_PNG: {
    int orientation = 1;
    cnn_tensor *t = cnn_png_load_oriented(path, (cnn_png_mode)mode, exif ? &orientation : NULL);
    if (!t || orientation == 1) return t;
    cnn_tensor *o = cnn_image_orient(t, orientation);
    cnn_tensor_release(t);
    return o;
  }
  case CNN_IMAGE_JPEG: return cnn_jpeg_load(path, mode, exif);
  default:
    cnn_error_set("%s: not a PNG or JPEG file (%s)", path, n < 3 ? "too short" : "unknown signature");
    return NULL;
  }
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

int cnn_image_save(const char *path, const cnn_tensor *t, int quality) {
  if (ends_with(path, ".jpg") || ends_with(path, ".jpeg")) return cnn_jpeg_save(path, t, quality);
  return cnn_png_save(path, t);
}
