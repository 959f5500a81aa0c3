/* JPEG reading and writing through libjpeg (see jpeg_io.h). libjpeg reports fatal errors through
 * error_exit, which must not return: ours formats the message and longjmps to the setjmp of the
 * function that called libjpeg (no Lua frame is ever between the two). Everything those functions
 * hold is freed on that path: the decompressor (its pools hold the row buffers), the FILE, the
 * source buffer and the tensor, all reachable from the context struct. Warnings never print. */
#include "cnn/jpeg_io.h"
#include "cnn/atomic_file.h"
#include "cnn/error.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

#define SOURCE_CHUNK 65536
#define MAX_SCANS 1000 /* a progressive file needs about 10; thousands are a denial of service */

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX + 64];
} err_mgr;

typedef struct {
  struct jpeg_source_mgr pub;
  FILE *f;
  bool eof; /* the file ran out and libjpeg was handed a made-up EOI marker */
  JOCTET buf[SOURCE_CHUNK];
} src_mgr;

/* Everything one decode holds, on the heap so the error path reaches it after a longjmp. */
typedef struct {
  struct jpeg_decompress_struct d;
  err_mgr err;
  struct jpeg_progress_mgr progress;
  src_mgr src;
  cnn_tensor *t;
} decode_ctx;

static void on_error_exit(j_common_ptr c) {
  err_mgr *e = (err_mgr *)c->err;
  c->err->format_message(c, e->msg);
  longjmp(e->jump, 1);
}

/* Raises our own message through the same road as libjpeg's. */
static void fail(j_common_ptr c, const char *msg) {
  err_mgr *e = (err_mgr *)c->err;
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  longjmp(e->jump, 1);
}

static void on_emit_message(j_common_ptr c, int level) {
  if (level < 0) c->err->num_warnings++; /* recoverable corruption: counted, never printed */
}

static void on_output_message(j_common_ptr c) { (void)c; }

static void on_progress(j_common_ptr c) {
  j_decompress_ptr d = (j_decompress_ptr)c;
  if (d->input_scan_number > MAX_SCANS) fail(c, "more than 1000 scans");
}

static void src_init(j_decompress_ptr d) { (void)d; }

static boolean src_fill(j_decompress_ptr d) {
  src_mgr *s = (src_mgr *)d->src;
  size_t n = s->eof ? 0 : fread(s->buf, 1, SOURCE_CHUNK, s->f);
  if (n == 0) {
    if (!s->eof && ferror(s->f)) fail((j_common_ptr)d, "read error");
    s->eof = true; /* as libjpeg's own sources do: an EOI lets the decoder finish the rows */
    s->buf[0] = 0xFF;
    s->buf[1] = JPEG_EOI;
    n = 2;
  }
  s->pub.next_input_byte = s->buf;
  s->pub.bytes_in_buffer = n;
  return TRUE;
}

static void src_skip(j_decompress_ptr d, long n) {
  src_mgr *s = (src_mgr *)d->src;
  while (n > 0 && (size_t)n > s->pub.bytes_in_buffer) {
    n -= (long)s->pub.bytes_in_buffer;
    s->pub.bytes_in_buffer = 0;
    if (s->eof) return;
    src_fill(d);
  }
  if (n > 0) {
    s->pub.next_input_byte += n;
    s->pub.bytes_in_buffer -= (size_t)n;
  }
}

static void src_term(j_decompress_ptr d) { (void)d; }

bool cnn_jpeg_sniff(const uint8_t *head, size_t n) {
  return n >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF;
}

/* PIL's fixed-point ((a * b + 128) * 257) >> 16 = a * b / 255 rounded, for bytes a and b. */
static inline int muldiv255(int a, int b) {
  int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/* One decoded row (w pixels of comps bytes) into the planes of out, at row y. */
static void store_row(float *out, const JSAMPLE *row, int comps, int cout, size_t plane, size_t y, size_t w,
                      const float *lut) {
  float *o = out + y * w;
  if (comps == 1) {
    for (size_t x = 0; x < w; x++) o[x] = lut[row[x]];
    for (int c = 1; c < cout && c < 3; c++) memcpy(o + (size_t)c * plane, o, w * sizeof(float));
  } else {
    for (size_t x = 0; x < w; x++) {
      int r, g, b;
      const JSAMPLE *p = row + x * (size_t)comps;
      if (comps == 4) { /* PIL reads CMYK as Adobe stores it (inverted), then convert("RGB") */
        int k = p[3];   /* = 255 - inverted K */
        r = k - muldiv255(255 - p[0], k);
        g = k - muldiv255(255 - p[1], k);
        b = k - muldiv255(255 - p[2], k);
      } else {
        r = p[0], g = p[1], b = p[2];
      }
      if (cout == 1) { /* PIL's convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000 */
        o[x] = lut[(19595u * (unsigned)r + 38470u * (unsigned)g + 7471u * (unsigned)b + 0x8000u) >> 16];
      } else {
        o[x] = lut[r];
        o[x + plane] = lut[g];
        o[x + 2 * plane] = lut[b];
      }
    }
  }
  if (cout == 4)
    for (size_t x = 0; x < w; x++) o[x + 3 * plane] = 1.0f;
}

/* The EXIF orientation from the markers libjpeg saved: the first APP1 that starts "Exif\0"
 * (the one PIL's getexif reads). */
static int saved_orientation(j_decompress_ptr d) {
  for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next)
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 5 && memcmp(m->data, "Exif", 5) == 0)
      return cnn_exif_orientation(m->data, m->data_length);
  return 1;
}

cnn_tensor *cnn_jpeg_load(const char *path, cnn_image_mode mode, bool exif) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    cnn_error_set("%s: cannot open (%s)", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    cnn_error_set("%s: not a regular file", path);
    return NULL;
  }
  decode_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    fclose(f);
    cnn_error_set("out of memory");
    return NULL;
  }
  ctx->src.f = f;
  j_decompress_ptr d = &ctx->d;
  d->err = jpeg_std_error(&ctx->err.pub);
  ctx->err.pub.error_exit = on_error_exit;
  ctx->err.pub.emit_message = on_emit_message;
  ctx->err.pub.output_message = on_output_message;
  if (setjmp(ctx->err.jump)) {
    jpeg_destroy_decompress(d);
    cnn_tensor_release(ctx->t);
    fclose(f);
    cnn_error_set("%s: invalid JPEG (%s)", path, ctx->err.msg);
    free(ctx);
    return NULL;
  }
  jpeg_create_decompress(d);
  ctx->src.pub.init_source = src_init;
  ctx->src.pub.fill_input_buffer = src_fill;
  ctx->src.pub.skip_input_data = src_skip;
  ctx->src.pub.resync_to_restart = jpeg_resync_to_restart;
  ctx->src.pub.term_source = src_term;
  d->src = &ctx->src.pub;
  ctx->progress.progress_monitor = on_progress;
  d->progress = &ctx->progress;
  if (exif) jpeg_save_markers(d, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(d, TRUE); /* TRUE: a tables-only file is an error */

  int comps = d->num_components;
  if (comps != 1 && comps != 3 && comps != 4) {
    char m[64];
    snprintf(m, sizeof m, "cannot handle %d-component images", comps);
    fail((j_common_ptr)d, m);
  }
  if ((int64_t)d->image_width * d->image_height > cnn_image_max_pixels()) {
    char m[160];
    snprintf(m, sizeof m, "%ux%u is %lld pixels, more than the limit of %lld (a decompression bomb?)", d->image_width,
             d->image_height, (long long)d->image_width * d->image_height, (long long)cnn_image_max_pixels());
    fail((j_common_ptr)d, m);
  }
  d->out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
  int orientation = exif ? saved_orientation(d) : 1;
  jpeg_start_decompress(d); /* progressive files are read to the end here */
  if (d->output_components != comps) fail((j_common_ptr)d, "unexpected output components");

  int cout = mode == CNN_IMAGE_RGBA ? 4 : mode == CNN_IMAGE_RGB ? 3 : mode == CNN_IMAGE_GRAY ? 1 : comps == 1 ? 1 : 3;
  size_t w = d->output_width, h = d->output_height, plane = w * h;
  int64_t size[3] = {cout, (int64_t)h, (int64_t)w};
  ctx->t = cnn_tensor_empty(CNN_FLOAT32, 3, size);
  if (!ctx->t) { /* keep the allocator's message: this is not the file's fault */
    jpeg_destroy_decompress(d);
    fclose(f);
    free(ctx);
    return NULL;
  }
  float lut[256];
  for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f; /* torchvision's x / 255 in float32 */
  int nrows = d->rec_outbuf_height;
  JSAMPARRAY rows = d->mem->alloc_sarray((j_common_ptr)d, JPOOL_IMAGE, (JDIMENSION)(w * (size_t)comps),
                                         (JDIMENSION)nrows);
  float *out = cnn_tensor_f32(ctx->t);
  while (d->output_scanline < d->output_height) {
    size_t y0 = d->output_scanline;
    JDIMENSION got = jpeg_read_scanlines(d, rows, (JDIMENSION)nrows);
    for (JDIMENSION r = 0; r < got; r++) store_row(out, rows[r], comps, cout, plane, y0 + r, w, lut);
    if (got == 0) fail((j_common_ptr)d, "decoder made no progress");
  }
  /* the rows are complete; the data ran out before them only if libjpeg was fed a fake EOI */
  if (ctx->src.eof) fail((j_common_ptr)d, "file is truncated");
  jpeg_finish_decompress(d);
  jpeg_destroy_decompress(d);
  fclose(f);
  cnn_tensor *t = ctx->t;
  free(ctx);
  if (orientation != 1) {
    cnn_tensor *o = cnn_image_orient(t, orientation);
    cnn_tensor_release(t);
    t = o;
  }
  return t;
}

/* ---- writing ---- */

typedef struct {
  struct jpeg_compress_struct c;
  err_mgr err;
  JSAMPLE *row;
} encode_ctx;

static inline JSAMPLE to_u8(float v) {
  if (!(v > 0.0f)) return 0; /* also NaN */
  if (v >= 1.0f) return 255;
  return (JSAMPLE)floorf(v * 255.0f + 0.5f);
}

int cnn_jpeg_save(const char *path, const cnn_tensor *t, int quality) {
  if (t->dtype != CNN_FLOAT32)
    return cnn_error_set("%s: expected a float32 image tensor, got %s", path, cnn_dtype_name(t->dtype));
  if (t->ndim != 2 && t->ndim != 3)
    return cnn_error_set("%s: expected an image of shape (H, W) or (C, H, W), got %d dimensions", path, t->ndim);
  int64_t ch = t->ndim == 3 ? t->size[0] : 1, h = t->size[t->ndim - 2], w = t->size[t->ndim - 1];
  if (ch != 1 && ch != 3)
    return cnn_error_set("%s: a JPEG holds 1 (grey) or 3 (RGB) channels, got %lld%s", path, (long long)ch,
                         ch == 4 ? " (JPEG has no alpha: drop it with t:narrow(1, 1, 3))" : "");
  if (h < 1 || w < 1 || h > JPEG_MAX_DIMENSION || w > JPEG_MAX_DIMENSION)
    return cnn_error_set("%s: a JPEG must be between 1x1 and %ldx%ld pixels, got %lldx%lld", path,
                         (long)JPEG_MAX_DIMENSION, (long)JPEG_MAX_DIMENSION, (long long)h, (long long)w);
  if (quality < 1 || quality > 100)
    return cnn_error_set("%s: quality must be between 1 and 100, got %d", path, quality);
  cnn_tensor *src = cnn_tensor_contiguous(t);
  if (!src) return -1;
  cnn_atomic_file af;
  if (cnn_atomic_open(&af, path)) {
    cnn_tensor_release(src);
    return -1;
  }
  encode_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    cnn_atomic_abort(&af);
    cnn_tensor_release(src);
    return cnn_error_set("out of memory");
  }
  j_compress_ptr c = &ctx->c;
  c->err = jpeg_std_error(&ctx->err.pub);
  ctx->err.pub.error_exit = on_error_exit;
  ctx->err.pub.emit_message = on_emit_message;
  ctx->err.pub.output_message = on_output_message;
  if (setjmp(ctx->err.jump)) {
    jpeg_destroy_compress(c);
    cnn_error_set("%s: cannot write JPEG (%s)", path, ctx->err.msg);
    free(ctx->row);
    free(ctx);
    cnn_atomic_abort(&af);
    cnn_tensor_release(src);
    return -1;
  }
  jpeg_create_compress(c);
  jpeg_stdio_dest(c, af.f); /* a short write is JERR_FILE_WRITE, through error_exit */
  c->image_width = (JDIMENSION)w;
  c->image_height = (JDIMENSION)h;
  c->input_components = (int)ch;
  c->in_color_space = ch == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(c);
  jpeg_set_quality(c, quality, TRUE);
  ctx->row = malloc((size_t)w * (size_t)ch);
  if (!ctx->row) fail((j_common_ptr)c, "out of memory");
  jpeg_start_compress(c, TRUE);
  const float *data = cnn_tensor_f32(src);
  size_t plane = (size_t)w * (size_t)h;
  while (c->next_scanline < c->image_height) {
    size_t y = c->next_scanline;
    for (size_t x = 0; x < (size_t)w; x++)
      for (size_t k = 0; k < (size_t)ch; k++) ctx->row[x * (size_t)ch + k] = to_u8(data[k * plane + y * (size_t)w + x]);
    JSAMPROW r = ctx->row;
    jpeg_write_scanlines(c, &r, 1);
  }
  jpeg_finish_compress(c);
  jpeg_destroy_compress(c);
  free(ctx->row);
  free(ctx);
  cnn_tensor_release(src);
  return cnn_atomic_commit(&af);
}
