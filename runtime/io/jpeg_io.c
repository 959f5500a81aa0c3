/* JPEG reading and writing through libjpeg (see jpeg_io.h). libjpeg reports fatal errors through
 * error_exit, which must not return: ours formats the message and longjmps to the setjmp of the
 * function that called libjpeg (no Lua frame is ever between the two). Everything those functions
 * hold is freed on that path: the decompressor (its pools hold the row buffers), the FILE, the
 * source buffer and the tensor, all reachable from the context struct. Warnings never print. */
#include "cnn/jpeg_io.h"
#include "cnn/error.h"
#include "io/atomic_file.h"
#include "io/file.h"

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

/* An open file with its header read; the error path of every entry point reaches all of it after
 * a longjmp (the decompressor's pools hold the row buffers; `out` is the one malloc'd result). */
struct cnn_jpeg_reader {
  struct jpeg_decompress_struct d;
  err_mgr err;
  struct jpeg_progress_mgr progress;
  src_mgr src;
  FILE *f;
  char *path;
  int orientation; /* EXIF, 1 without */
  int comps;       /* 1, 3 or 4 */
  bool used;       /* cnn_jpeg_read8 ran: the decompressor cannot start again */
  uint8_t *out;
};

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

/* A decoded row of w pixels of comps bytes as cout interleaved bytes: grey repeated for RGB;
 * CMYK read as Adobe stores it (inverted, as PIL reads it), then PIL's convert("RGB") fixed point;
 * colour to grey with PIL's convert("L"); an opaque alpha for RGBA. */
static void convert_row(uint8_t *o, const JSAMPLE *row, int comps, int cout, size_t w) {
  for (size_t x = 0; x < w; x++, o += cout) {
    int r, g, b;
    const JSAMPLE *p = row + x * (size_t)comps;
    if (comps == 1) {
      r = g = b = p[0];
    } else if (comps == 4) {
      int k = p[3]; /* = 255 - inverted K */
      r = k - muldiv255(255 - p[0], k);
      g = k - muldiv255(255 - p[1], k);
      b = k - muldiv255(255 - p[2], k);
    } else {
      r = p[0], g = p[1], b = p[2];
    }
    if (cout == 1) { /* L = R * 299/1000 + G * 587/1000 + B * 114/1000, PIL's fixed point */
      o[0] = comps == 1
                 ? (uint8_t)r
                 : (uint8_t)((19595u * (unsigned)r + 38470u * (unsigned)g + 7471u * (unsigned)b + 0x8000u) >> 16);
      continue;
    }
    o[0] = (uint8_t)r, o[1] = (uint8_t)g, o[2] = (uint8_t)b;
    if (cout == 4) o[3] = 255;
  }
}

/* The EXIF orientation from the markers libjpeg saved: the first APP1 that starts "Exif\0"
 * (the one PIL's getexif reads). */
static int saved_orientation(j_decompress_ptr d) {
  for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next)
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 5 && memcmp(m->data, "Exif", 5) == 0)
      return cnn_exif_orientation(m->data, m->data_length);
  return 1;
}

static void reader_free(cnn_jpeg_reader *r) {
  jpeg_destroy_decompress(&r->d);
  if (r->f) fclose(r->f);
  free(r->out);
  free(r->path);
  free(r);
}

cnn_jpeg_reader *cnn_jpeg_open(const char *path, bool exif) {
  FILE *f = cnn_file_open(path); /* refuses a named pipe, which fopen would wait on forever */
  if (!f) return NULL;
  cnn_jpeg_reader *r = calloc(1, sizeof *r);
  char *name = strdup(path);
  if (!r || !name) {
    fclose(f);
    free(r);
    free(name);
    return cnn_error_set("out of memory"), NULL;
  }
  r->f = f;
  r->path = name;
  r->src.f = f;
  j_decompress_ptr d = &r->d;
  d->err = jpeg_std_error(&r->err.pub);
  r->err.pub.error_exit = on_error_exit;
  r->err.pub.emit_message = on_emit_message;
  r->err.pub.output_message = on_output_message;
  if (setjmp(r->err.jump)) {
    cnn_error_set("%s: invalid JPEG (%s)", path, r->err.msg);
    reader_free(r);
    return NULL;
  }
  jpeg_create_decompress(d);
  r->src.pub.init_source = src_init;
  r->src.pub.fill_input_buffer = src_fill;
  r->src.pub.skip_input_data = src_skip;
  r->src.pub.resync_to_restart = jpeg_resync_to_restart;
  r->src.pub.term_source = src_term;
  d->src = &r->src.pub;
  r->progress.progress_monitor = on_progress;
  d->progress = &r->progress;
  if (exif) jpeg_save_markers(d, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(d, TRUE); /* TRUE: a tables-only file is an error */
  r->comps = d->num_components;
  if (r->comps != 1 && r->comps != 3 && r->comps != 4) {
    char m[64];
    snprintf(m, sizeof m, "cannot handle %d-component images", r->comps);
    fail((j_common_ptr)d, m);
  }
  if ((int64_t)d->image_width * d->image_height > cnn_image_max_pixels()) {
    char m[160];
    snprintf(m, sizeof m, "%ux%u is %lld pixels, more than the limit of %lld (a decompression bomb?)", d->image_width,
             d->image_height, (long long)d->image_width * d->image_height, (long long)cnn_image_max_pixels());
    fail((j_common_ptr)d, m);
  }
  r->orientation = exif ? saved_orientation(d) : 1;
  return r;
}

void cnn_jpeg_close(cnn_jpeg_reader *r) {
  if (r) reader_free(r);
}

void cnn_jpeg_size(const cnn_jpeg_reader *r, int64_t *h, int64_t *w) {
  bool swap = r->orientation >= 5;
  *h = swap ? r->d.image_width : r->d.image_height;
  *w = swap ? r->d.image_height : r->d.image_width;
}

/* Stored pixel (sy, sx) of oriented pixel (y, x), for an image stored as H x W (image_io.c's
 * cnn_image_orient maps the same way). */
static void stored_of(int o, int64_t H, int64_t W, int64_t y, int64_t x, int64_t *sy, int64_t *sx) {
  switch (o) {
  case 2: *sy = y, *sx = W - 1 - x; break;
  case 3: *sy = H - 1 - y, *sx = W - 1 - x; break;
  case 4: *sy = H - 1 - y, *sx = x; break;
  case 5: *sy = x, *sx = y; break;
  case 6: *sy = H - 1 - x, *sx = y; break;
  case 7: *sy = H - 1 - x, *sx = W - 1 - y; break;
  case 8: *sy = x, *sx = W - 1 - y; break;
  default: *sy = y, *sx = x; break;
  }
}

/* The rows [y0, y1) x columns [x0, x1) of an interleaved image (w columns, c channels) oriented:
 * out (oriented size) reads in at stored_of, relative to the rectangle. */
static void orient_region(const uint8_t *in, int64_t h, int64_t w, int c, int o, uint8_t *out, int64_t oh, int64_t ow) {
  for (int64_t y = 0; y < oh; y++)
    for (int64_t x = 0; x < ow; x++) {
      int64_t sy, sx;
      stored_of(o, h, w, y, x, &sy, &sx);
      memcpy(out + (y * ow + x) * c, in + (sy * w + sx) * c, (size_t)c);
    }
}

#define MARGIN 16 /* pixels decoded beyond a window on each side: fancy upsampling is exact inside */

int cnn_jpeg_read8(cnn_jpeg_reader *r, cnn_image_mode mode, const int64_t *window, cnn_image8 *out) {
  memset(out, 0, sizeof *out);
  if (r->used) return cnn_error_set("%s: the JPEG reader was used already", r->path);
  r->used = true;
  j_decompress_ptr d = &r->d;
  if (setjmp(r->err.jump)) {
    cnn_error_set("%s: invalid JPEG (%s)", r->path, r->err.msg);
    free(r->out);
    r->out = NULL;
    return -1;
  }
  int comps = r->comps, o = r->orientation;
  int cout = mode == CNN_IMAGE_RGBA ? 4 : mode == CNN_IMAGE_RGB ? 3 : mode == CNN_IMAGE_GRAY ? 1 : comps == 1 ? 1 : 3;
  int64_t H = d->image_height, W = d->image_width, OH, OW;
  cnn_jpeg_size(r, &OH, &OW);
  /* the stored rectangle [y0, y1) x [x0, x1) that holds the window, with a margin */
  int64_t y0 = 0, y1 = H, x0 = 0, x1 = W;
  if (window) {
    int64_t wy0 = window[0] < 0 ? 0 : window[0], wx0 = window[1] < 0 ? 0 : window[1];
    int64_t wy1, wx1; /* the window's far edges, at most the image's (a sum past int64 is past it too) */
    if (__builtin_add_overflow(window[0], window[2], &wy1)) wy1 = window[2] > 0 ? OH : INT64_MIN;
    if (__builtin_add_overflow(window[1], window[3], &wx1)) wx1 = window[3] > 0 ? OW : INT64_MIN;
    wy1 = wy1 > OH ? OH : wy1, wx1 = wx1 > OW ? OW : wx1;
    if (wy1 > wy0 && wx1 > wx0) {
      int64_t ay, ax, by, bx;
      stored_of(o, H, W, wy0, wx0, &ay, &ax);
      stored_of(o, H, W, wy1 - 1, wx1 - 1, &by, &bx);
      y0 = (ay < by ? ay : by) - MARGIN, y1 = (ay > by ? ay : by) + 1 + MARGIN;
      x0 = (ax < bx ? ax : bx) - MARGIN, x1 = (ax > bx ? ax : bx) + 1 + MARGIN;
      y0 = y0 < 0 ? 0 : y0, x0 = x0 < 0 ? 0 : x0, y1 = y1 > H ? H : y1, x1 = x1 > W ? W : x1;
    }
  }
  d->out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_start_decompress(d); /* progressive files are read to the end here */
  if (d->output_components != comps) fail((j_common_ptr)d, "unexpected output components");
  if (x0 > 0 || x1 < W) { /* libjpeg moves the start left to an iMCU boundary */
    JDIMENSION xoff = (JDIMENSION)x0, cw = (JDIMENSION)(x1 - x0);
    jpeg_crop_scanline(d, &xoff, &cw);
    x0 = xoff;
    x1 = x0 + cw;
  }
  if (y0 > 0) jpeg_skip_scanlines(d, (JDIMENSION)y0);
  int64_t rh = y1 - y0, rw = x1 - x0;
  size_t rowbytes = (size_t)rw * (size_t)cout;
  r->out = malloc(rowbytes * (size_t)rh + 1);
  if (!r->out) fail((j_common_ptr)d, "out of memory for the image");
  int nrows = d->rec_outbuf_height;
  JSAMPARRAY rows = d->mem->alloc_sarray((j_common_ptr)d, JPOOL_IMAGE, (JDIMENSION)(d->output_width * (size_t)comps),
                                         (JDIMENSION)nrows);
  while ((int64_t)d->output_scanline < y1) {
    int64_t at = d->output_scanline;
    JDIMENSION got = jpeg_read_scanlines(d, rows, (JDIMENSION)nrows);
    if (got == 0) fail((j_common_ptr)d, "decoder made no progress");
    for (JDIMENSION k = 0; k < got && at + k < y1; k++)
      convert_row(r->out + (size_t)(at + k - y0) * rowbytes, rows[k], comps, cout, (size_t)rw);
  }
  /* the rows are complete; the data ran out before them only if libjpeg was fed a fake EOI */
  if (r->src.eof) fail((j_common_ptr)d, "file is truncated");
  if (d->output_scanline == d->output_height) jpeg_finish_decompress(d);
  else jpeg_abort_decompress(d); /* the rest of the file is not needed */
  out->c = cout;
  if (o == 1) {
    out->data = r->out, out->h = rh, out->w = rw, out->top = y0, out->left = x0;
    r->out = NULL;
    return 0;
  }
  bool swap = o >= 5;
  out->h = swap ? rw : rh, out->w = swap ? rh : rw;
  out->data = malloc(rowbytes * (size_t)rh + 1);
  if (!out->data) {
    free(r->out);
    r->out = NULL;
    return cnn_error_set("out of memory for the image");
  }
  orient_region(r->out, rh, rw, cout, o, out->data, out->h, out->w);
  free(r->out);
  r->out = NULL;
  /* the rectangle's top-left in oriented coordinates: the smaller of its corners' */
  int64_t corners[2][2] = {{y0, x0}, {y1 - 1, x1 - 1}}, top = OH, left = OW;
  for (int k = 0; k < 2; k++) { /* oriented (y, x) of a stored corner: stored_of inverted */
    int64_t sy = corners[k][0], sx = corners[k][1], y, x;
    switch (o) {
    case 2: y = sy, x = W - 1 - sx; break;
    case 3: y = H - 1 - sy, x = W - 1 - sx; break;
    case 4: y = H - 1 - sy, x = sx; break;
    case 5: y = sx, x = sy; break;
    case 6: y = sx, x = H - 1 - sy; break;
    case 7: y = W - 1 - sx, x = H - 1 - sy; break;
    default: y = W - 1 - sx, x = sy; break; /* 8 */
    }
    top = y < top ? y : top;
    left = x < left ? x : left;
  }
  out->top = top, out->left = left;
  return 0;
}

void cnn_image8_free(cnn_image8 *im) {
  free(im->data);
  im->data = NULL;
}

cnn_tensor *cnn_jpeg_load(const char *path, cnn_image_mode mode, bool exif) {
  cnn_jpeg_reader *r = cnn_jpeg_open(path, exif);
  if (!r) return NULL;
  cnn_image8 im;
  int rc = cnn_jpeg_read8(r, mode, NULL, &im);
  cnn_jpeg_close(r);
  if (rc) return NULL;
  cnn_tensor *t = cnn_image8_to_tensor(&im);
  cnn_image8_free(&im);
  return t;
}

cnn_tensor *cnn_image8_to_tensor(const cnn_image8 *im) {
  int64_t size[3] = {im->c, im->h, im->w};
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 3, size);
  if (!t) return NULL;
  float lut[256];
  for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f; /* torchvision's x / 255 in float32 */
  float *o = cnn_tensor_f32(t);
  size_t plane = (size_t)(im->h * im->w);
  const uint8_t *p = im->data;
  if (im->c == 1) {
    for (size_t i = 0; i < plane; i++) o[i] = lut[p[i]];
    return t;
  }
  for (size_t i = 0; i < plane; i++)
    for (int k = 0; k < im->c; k++) o[(size_t)k * plane + i] = lut[p[i * (size_t)im->c + (size_t)k]];
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
