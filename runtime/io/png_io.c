/* PNG reading and writing (see png_io.h). libpng reports errors by longjmp to the setjmp in the
 * function that called it; no Lua frame is ever between the two (the runtime never calls Lua),
 * and every resource those functions hold is reachable from volatile locals or the context
 * struct, so the error path releases the FILE, libpng's structs, buffers and the tensor. */
#include "cnn/png_io.h"
#include "io/file.h"
#include "cnn/error.h"
#include "cnn/image_io.h"
#include "io/atomic_file.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFLATE_MAX_RATIO 1032
#define MAX_SIDE (1u << 24)

typedef struct {
  FILE *f;
  uint64_t pos, end; /* reading: the file offset reached, and where libpng must stop (0: the end) */
  char msg[256];
} io_ctx;

static void on_error(png_structp png, png_const_charp msg) {
  io_ctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* ancillary-chunk trouble (bad CRC on tEXt, unknown sRGB profile) is not fatal */
}

static void on_read(png_structp png, png_bytep data, size_t n) {
  io_ctx *c = png_get_io_ptr(png);
  if (c->end && c->pos + n > c->end) png_error(png, "file is truncated");
  if (fread(data, 1, n, c->f) != n) png_error(png, ferror(c->f) ? "read error" : "file is truncated");
  c->pos += n;
}

static void on_write(png_structp png, png_bytep data, size_t n) {
  io_ctx *c = png_get_io_ptr(png);
  if (fwrite(data, 1, n, c->f) != n) png_error(png, "write error (disk full?)");
}

static void on_flush(png_structp png) { (void)png; }

/* Sample s of a decoded row, as [0, 1] (depth 8 or 16; 16-bit samples are big-endian). */
static inline float sample(const png_byte *row, size_t s, int depth16) {
  if (depth16) return (float)((row[2 * s] << 8) | row[2 * s + 1]) / 65535.0f;
  return (float)row[s] / 255.0f;
}

/* libpng allocates an ancillary chunk (tEXt, iCCP, ...) at the length the file claims before it
 * reads the data, so a 45-byte file claiming an 892 MB chunk costs 892 MB. Every chunk must fit in
 * what is left of the file: walk the chunk headers first and refuse one that cannot; but one after
 * the image data (a copy cut in a text chunk) only ends the file there, *end its offset, as the
 * image before it is whole (PIL reads such files). The stream is left just after the signature. */
static int check_chunk_lengths(FILE *f, uint64_t file_size, const char *path, uint64_t *end) {
  uint64_t pos = 8;
  unsigned char head[8];
  bool after_data = false; /* an IDAT chunk was passed */
  *end = 0;
  while (pos + 8 <= file_size) {
    if (fseek(f, (long)pos, SEEK_SET) != 0 || fread(head, 1, 8, f) != 8) break;
    uint64_t len = (uint64_t)head[0] << 24 | (uint64_t)head[1] << 16 | (uint64_t)head[2] << 8 | head[3];
    const bool idat = memcmp(head + 4, "IDAT", 4) == 0;
    if (len > file_size - pos - 8) {
      if (after_data && !idat) {
        *end = pos;
        break;
      }
      return cnn_error_set("%s: invalid PNG (chunk '%.4s' claims %llu bytes but only %llu remain)", path,
                           (const char *)head + 4, (unsigned long long)len, (unsigned long long)(file_size - pos - 8));
    }
    if (memcmp(head + 4, "IEND", 4) == 0) break;
    if (idat) after_data = true;
    pos += 12 + len;
  }
  if (fseek(f, 8, SEEK_SET) != 0) return cnn_error_set("%s: cannot seek (%s)", path, strerror(errno));
  return 0;
}

/* png_read_end, its error caught here and the caller's own error handling (its setjmp) restored
 * after. */
static void read_end(png_structp png, png_infop info) {
  jmp_buf outer;
  memcpy(outer, png_jmpbuf(png), sizeof outer);
  if (setjmp(png_jmpbuf(png)) == 0) png_read_end(png, info);
  memcpy(png_jmpbuf(png), outer, sizeof outer);
}

cnn_tensor *cnn_png_load(const char *path, cnn_png_mode mode) { return cnn_png_load_oriented(path, mode, NULL); }

/* The eXIf chunk's orientation tag, when libpng has read one (before or after the image data). */
static void read_orientation(png_structp png, png_infop info, int *orientation) {
  png_uint_32 n = 0;
  png_bytep exif = NULL;
  if (orientation && png_get_eXIf_1(png, info, &n, &exif) && exif) *orientation = cnn_exif_orientation(exif, n);
}

cnn_tensor *cnn_png_load_oriented(const char *path, cnn_png_mode mode, int *orientation) {
  if (orientation) *orientation = 1;
  io_ctx ctx = {0};
  ctx.f = cnn_file_open(path);
  if (!ctx.f) return NULL;
  struct stat st;
  if (fstat(fileno(ctx.f), &st) != 0) {
    fclose(ctx.f);
    cnn_error_set("%s: cannot read its status (%s)", path, strerror(errno));
    return NULL;
  }
  png_byte sig[8];
  size_t nsig = fread(sig, 1, 8, ctx.f);
  if (nsig < 8 || png_sig_cmp(sig, 0, 8) != 0) {
    fclose(ctx.f);
    cnn_error_set("%s: not a PNG file (%s)", path, nsig < 8 ? "shorter than the 8-byte signature" : "bad signature");
    return NULL;
  }
  ctx.pos = 8;
  if (check_chunk_lengths(ctx.f, (uint64_t)st.st_size, path, &ctx.end)) {
    fclose(ctx.f);
    return NULL;
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    fclose(ctx.f);
    cnn_error_set("out of memory");
    return NULL;
  }
  png_bytep *volatile rows = NULL;
  png_bytep volatile image = NULL;
  cnn_tensor *volatile t = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(image);
    cnn_tensor_release(t);
    fclose(ctx.f);
    cnn_error_set("%s: invalid PNG (%s)", path, ctx.msg);
    return NULL;
  }
  png_set_read_fn(png, &ctx, on_read);
  png_set_sig_bytes(png, 8);
  png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
  /* decompressed ancillary chunks (zTXt, iCCP) are capped here; raw chunk lengths were checked
   * against the file by check_chunk_lengths, since libpng allocates those before this cap applies */
  png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20);
  png_set_chunk_cache_max(png, 128);
  png_read_info(png, info);

  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  int channels = png_get_channels(png, info); /* as stored: 1 for palette */
  /* deflate expands at most 1032:1, so a file cannot hold more raw bytes than that: checked
   * before any image-sized allocation, so a tiny hostile header cannot claim gigabytes */
  double raw_bytes = (double)h * (1.0 + ceil((double)w * channels * depth / 8.0));
  if (raw_bytes / DEFLATE_MAX_RATIO > (double)st.st_size + 64)
    png_error(png, "the file is far too small for its image size");
  if ((double)w * h > (double)cnn_image_max_pixels())
    png_error(png, "more pixels than the image size limit (a decompression bomb?)");

  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  bool colour_src = color & PNG_COLOR_MASK_COLOR;
  if (mode == CNN_PNG_RGB || mode == CNN_PNG_RGBA) {
    if (!colour_src) png_set_gray_to_rgb(png);
  }
  if (mode == CNN_PNG_RGBA) {
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    else if (!(color & PNG_COLOR_MASK_ALPHA)) png_set_add_alpha(png, 0xffff, PNG_FILLER_AFTER);
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  int cin = png_get_channels(png, info), depth16 = png_get_bit_depth(png, info) == 16;
  size_t rowbytes = png_get_rowbytes(png, info);
  if (rowbytes != (size_t)w * (size_t)cin * (depth16 ? 2 : 1)) png_error(png, "unexpected row layout after transforms");
  int cout = mode == CNN_PNG_RGBA ? 4 : mode == CNN_PNG_RGB ? 3 : mode == CNN_PNG_GRAY ? 1 : (cin >= 3 ? 3 : 1);
  if ((mode == CNN_PNG_RGBA && cin != 4) || (mode == CNN_PNG_RGB && cin < 3))
    png_error(png, "unexpected channel count");

  if (h > 0 && rowbytes > SIZE_MAX / h) png_error(png, "image too large");
  int64_t size[3] = {cout, h, w};
  t = cnn_tensor_empty(CNN_FLOAT32, 3, size);
  if (!t) { /* keep the allocator's message: this is not the file's fault */
    png_destroy_read_struct(&png, &info, NULL);
    fclose(ctx.f);
    return NULL;
  }
  image = malloc(rowbytes * h + 1);
  rows = malloc(sizeof(png_bytep) * h + 1);
  if (!image || !rows) png_error(png, "out of memory for the image");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = image + (size_t)y * rowbytes;
  png_read_image(png, rows); /* every row decoded, or an error: a cut in the image data shows here */
  /* the chunks after the image, up to IEND: an eXIf chunk may come there too (PIL reads it). Their
   * trouble (no IEND: a writer that never closed the file, a copy cut in the end chunk; a bad CRC
   * there; an unknown critical chunk) leaves the complete image and what the chunks before it
   * said, as PIL reads such files. */
  read_end(png, orientation ? info : NULL);
  read_orientation(png, info, orientation);

  float *out = cnn_tensor_f32(t);
  size_t plane = (size_t)w * h;
  bool to_gray = cout == 1 && cin >= 3;
  for (png_uint_32 y = 0; y < h; y++) {
    const png_byte *row = rows[y];
    float *o = out + (size_t)y * w;
    for (png_uint_32 x = 0; x < w; x++) {
      size_t s = (size_t)x * cin;
      if (to_gray && !depth16) { /* PIL's L = R * 299/1000 + G * 587/1000 + B * 114/1000, fixed point */
        uint32_t l = (19595u * row[s] + 38470u * row[s + 1] + 7471u * row[s + 2] + 0x8000u) >> 16;
        o[x] = (float)l / 255.0f;
      } else if (to_gray) {
        o[x] = 0.299f * sample(row, s, 1) + 0.587f * sample(row, s + 1, 1) + 0.114f * sample(row, s + 2, 1);
      } else {
        for (int c = 0; c < cout; c++) o[x + (size_t)c * plane] = sample(row, s + (size_t)c, depth16);
      }
    }
  }
  cnn_tensor *result = t;
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  free(image);
  fclose(ctx.f);
  return result;
}

static inline png_byte to_u8(float v) {
  if (!(v > 0.0f)) return 0; /* also NaN */
  if (v >= 1.0f) return 255;
  return (png_byte)floorf(v * 255.0f + 0.5f);
}

int cnn_png_save(const char *path, const cnn_tensor *t) {
  if (t->dtype != CNN_FLOAT32)
    return cnn_error_set("%s: expected a float32 image tensor, got %s", path, cnn_dtype_name(t->dtype));
  if (t->ndim != 2 && t->ndim != 3)
    return cnn_error_set("%s: expected an image of shape (H, W) or (C, H, W), got %d dimensions", path, t->ndim);
  int64_t c = t->ndim == 3 ? t->size[0] : 1, h = t->size[t->ndim - 2], w = t->size[t->ndim - 1];
  if (c < 1 || c > 4) return cnn_error_set("%s: expected 1, 2, 3 or 4 channels, got %lld", path, (long long)c);
  if (h < 1 || w < 1 || h > (int64_t)MAX_SIDE || w > (int64_t)MAX_SIDE)
    return cnn_error_set("%s: a PNG must be between 1x1 and %ux%u pixels, got %lldx%lld", path, MAX_SIDE, MAX_SIDE,
                         (long long)h, (long long)w);
  cnn_tensor *src = cnn_tensor_contiguous(t);
  if (!src) return -1;
  cnn_atomic_file af;
  if (cnn_atomic_open(&af, path)) {
    cnn_tensor_release(src);
    return -1;
  }
  io_ctx ctx = {0};
  ctx.f = af.f;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_write_struct(png ? &png : NULL, NULL);
    cnn_atomic_abort(&af);
    cnn_tensor_release(src);
    return cnn_error_set("out of memory");
  }
  png_bytep volatile row = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    free(row);
    cnn_atomic_abort(&af);
    cnn_tensor_release(src);
    return cnn_error_set("%s: cannot write PNG (%s)", path, ctx.msg);
  }
  png_set_write_fn(png, &ctx, on_write, on_flush);
  static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                               PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, types[c], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  row = malloc((size_t)w * (size_t)c);
  if (!row) png_error(png, "out of memory");
  const float *data = cnn_tensor_f32(src);
  size_t plane = (size_t)w * (size_t)h;
  for (int64_t y = 0; y < h; y++) {
    for (int64_t x = 0; x < w; x++)
      for (int64_t k = 0; k < c; k++) row[x * c + k] = to_u8(data[(size_t)k * plane + (size_t)(y * w + x)]);
    png_write_row(png, row);
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(row);
  cnn_tensor_release(src);
  return cnn_atomic_commit(&af);
}
