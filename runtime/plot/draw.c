/* Drawing with cairo (see draw.h). A canvas holds a cairo recording surface: primitives are
 * recorded as vector operations, rendered to a pixel image only when pixels are asked for (the
 * image is cached until the next primitive) and replayed onto an SVG or PDF surface to save.
 * The user space is shifted half a pixel, so integer coordinates are pixel centres. Geometry
 * is cut to SAFE before cairo sees it: cairo's 24.8 fixed point wraps beyond about 8e6, and an
 * arc of huge radius never finishes. */
#include "plot/draw.h"
#include "cnn/error.h"
#include "io/atomic_file.h"

#include <cairo-ft.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <ft2build.h>
#include FT_FREETYPE_H
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SAFE 1e6 /* coordinates are kept within [-SAFE, SAFE] */
#define FAMILY "DejaVu Sans"

struct cnn_draw {
  int w, h;
  cairo_surface_t *rec; /* the drawing */
  cairo_t *cr;          /* on rec; clip state lives here */
  cairo_surface_t *img; /* rec rendered, RGB24; NULL until asked for */
  bool dirty;           /* rec has changed since img was rendered */
};

/* ---- the font: DejaVu Sans regular and bold, found once per process ---- */

static struct {
  FT_Library lib;
  FT_Face ft[2];
  cairo_font_face_t *face[2]; /* [bold] */
  char error[600];            /* why the font is missing, or empty */
} font;
static pthread_once_t font_once = PTHREAD_ONCE_INIT;

/* Loads face[bold] from the file fontconfig matches to DejaVu Sans; a substitute family (what
 * fontconfig offers when DejaVu is not installed) is an error, not a silent change of font. */
static int font_load(FcConfig *cfg, int bold) {
  const char *style = bold ? "Bold" : "Book";
  FcPattern *pat = FcPatternBuild(NULL, FC_FAMILY, FcTypeString, (const FcChar8 *)FAMILY, FC_STYLE, FcTypeString,
                                  (const FcChar8 *)style, (char *)NULL);
  if (!pat) return snprintf(font.error, sizeof font.error, "out of memory"), -1;
  FcConfigSubstitute(cfg, pat, FcMatchPattern);
  FcDefaultSubstitute(pat);
  FcResult res;
  FcPattern *m = FcFontMatch(cfg, pat, &res);
  FcPatternDestroy(pat);
  FcChar8 *family = NULL, *file = NULL, *got_style = NULL;
  int index = 0, rc = -1;
  if (m && FcPatternGetString(m, FC_FAMILY, 0, &family) == FcResultMatch &&
      FcPatternGetString(m, FC_FILE, 0, &file) == FcResultMatch &&
      FcPatternGetString(m, FC_STYLE, 0, &got_style) == FcResultMatch && strcmp((const char *)family, FAMILY) == 0 &&
      strcmp((const char *)got_style, style) == 0) {
    FcPatternGetInteger(m, FC_INDEX, 0, &index);
    if (FT_New_Face(font.lib, (const char *)file, index, &font.ft[bold]) != 0)
      snprintf(font.error, sizeof font.error, "FreeType cannot read the font file %s", (const char *)file);
    else if (!(font.face[bold] = cairo_ft_font_face_create_for_ft_face(font.ft[bold], 0)) ||
             cairo_font_face_status(font.face[bold]) != CAIRO_STATUS_SUCCESS)
      snprintf(font.error, sizeof font.error, "cairo cannot use the font file %s", (const char *)file);
    else rc = 0;
  } else {
    snprintf(font.error, sizeof font.error,
             "the font " FAMILY " %s was not found (fontconfig offers '%s %s'); on Debian: apt-get install "
             "fonts-dejavu-core",
             style, family ? (const char *)family : "nothing", got_style ? (const char *)got_style : "");
  }
  if (m) FcPatternDestroy(m);
  return rc;
}

static void font_init(void) {
  if (FT_Init_FreeType(&font.lib) != 0) {
    snprintf(font.error, sizeof font.error, "FreeType cannot start");
    return;
  }
  FcConfig *cfg = FcInitLoadConfigAndFonts(); /* a config of our own, destroyed below */
  if (!cfg) {
    snprintf(font.error, sizeof font.error, "fontconfig cannot load its configuration");
    return;
  }
  if (font_load(cfg, 0) == 0) font_load(cfg, 1);
  FcConfigDestroy(cfg);
}

/* 0 when the font is loaded, else -1 with the error set. */
static int font_ready(void) {
  pthread_once(&font_once, font_init);
  return font.error[0] ? cnn_error_set("%s", font.error) : 0;
}

/* Grey anti-aliasing, light vertical hinting, and unhinted advances, so that a text measures the
 * same whatever it is drawn on (pixels, SVG, PDF) and however it is turned. */
static cairo_font_options_t *font_options(void) {
  cairo_font_options_t *o = cairo_font_options_create();
  cairo_font_options_set_antialias(o, CAIRO_ANTIALIAS_GRAY);
  cairo_font_options_set_hint_style(o, CAIRO_HINT_STYLE_SLIGHT);
  cairo_font_options_set_hint_metrics(o, CAIRO_HINT_METRICS_OFF);
  return o;
}

/* A new reference to the font scaled to px pixels, or NULL with the error set. */
static cairo_scaled_font_t *scaled_font(double px, bool bold) {
  if (font_ready()) return NULL;
  cairo_matrix_t fm, ctm;
  cairo_matrix_init_scale(&fm, px, px);
  cairo_matrix_init_identity(&ctm);
  cairo_font_options_t *o = font_options();
  cairo_scaled_font_t *sf = cairo_scaled_font_create(font.face[bold], &fm, &ctm, o);
  cairo_font_options_destroy(o);
  if (cairo_scaled_font_status(sf) != CAIRO_STATUS_SUCCESS) {
    cairo_scaled_font_destroy(sf);
    cnn_error_set("cairo cannot scale the font to %g pixels", cnn_error_num(px));
    return NULL;
  }
  return sf;
}

int cnn_draw_font_metrics(double px, bool bold, double *ascent, double *descent) {
  cairo_scaled_font_t *sf = scaled_font(px, bold);
  if (!sf) return -1;
  cairo_font_extents_t fe;
  cairo_scaled_font_extents(sf, &fe);
  cairo_scaled_font_destroy(sf);
  *ascent = fe.ascent;
  *descent = fe.descent;
  return 0;
}

/* A copy of s (malloc'd) in which each byte that does not start a valid UTF-8 sequence (no
 * overlongs, surrogates or values beyond U+10FFFF) is '?': cairo refuses invalid text and would
 * stop drawing altogether. NULL when out of memory. */
static char *utf8_clean(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n + 1);
  if (!out) return NULL;
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    unsigned c = u[i];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xC2 && c <= 0xDF ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    bool ok = len > 0 && i + len <= n;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (size_t k = 1; ok && k < len; k++) {
      ok = (u[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (u[i + k] & 0x3F);
    }
    ok = ok && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
         !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!ok) {
      out[i++] = '?';
      continue;
    }
    memcpy(out + i, s + i, len);
    i += len;
  }
  out[n] = '\0';
  return out;
}

/* The lines of text (cleaned, in one buffer with NULs between them): returns the buffer
 * (malloc'd; NULL when out of memory) and their count in *nlines. */
static char *text_lines(const char *s, int *nlines) {
  char *t = utf8_clean(s);
  if (!t) return NULL;
  *nlines = 1;
  for (char *p = t; (p = strchr(p, '\n')); p++) {
    *p = '\0';
    ++*nlines;
  }
  return t;
}

/* Widest advance of the nlines lines in buf. */
static double widest(cairo_scaled_font_t *sf, const char *buf, int nlines) {
  double w = 0;
  for (int i = 0; i < nlines; i++, buf += strlen(buf) + 1) {
    cairo_text_extents_t te;
    cairo_scaled_font_text_extents(sf, buf, &te);
    if (te.x_advance > w) w = te.x_advance;
  }
  return w;
}

int cnn_draw_text_size(const char *s, double px, bool bold, double *w, double *h) {
  cairo_scaled_font_t *sf = scaled_font(px, bold);
  if (!sf) return -1;
  int nlines;
  char *buf = text_lines(s, &nlines);
  if (!buf) {
    cairo_scaled_font_destroy(sf);
    return cnn_error_set("out of memory");
  }
  cairo_font_extents_t fe;
  cairo_scaled_font_extents(sf, &fe);
  *w = widest(sf, buf, nlines);
  *h = nlines * (fe.ascent + fe.descent);
  free(buf);
  cairo_scaled_font_destroy(sf);
  return 0;
}

/* ---- the canvas ---- */

cnn_draw *cnn_draw_new(int w, int h) {
  if (w < 1 || h < 1 || w > CNN_DRAW_MAX_SIZE || h > CNN_DRAW_MAX_SIZE) {
    cnn_error_set("canvas size %dx%d out of range (1..%d pixels a side)", w, h, CNN_DRAW_MAX_SIZE);
    return NULL;
  }
  if (font_ready()) return NULL;
  cnn_draw *d = calloc(1, sizeof *d);
  if (!d) {
    cnn_error_set("out of memory");
    return NULL;
  }
  d->w = w;
  d->h = h;
  d->dirty = true;
  cairo_rectangle_t extents = {0, 0, w, h};
  d->rec = cairo_recording_surface_create(CAIRO_CONTENT_COLOR, &extents);
  d->cr = cairo_create(d->rec);
  if (cairo_status(d->cr) != CAIRO_STATUS_SUCCESS) {
    cnn_draw_free(d);
    cnn_error_set("out of memory");
    return NULL;
  }
  cairo_set_source_rgb(d->cr, 1, 1, 1);
  cairo_paint(d->cr);
  cairo_translate(d->cr, 0.5, 0.5);
  cairo_font_options_t *o = font_options();
  cairo_set_font_options(d->cr, o);
  cairo_font_options_destroy(o);
  cairo_save(d->cr); /* the unclipped state that unclip returns to */
  return d;
}

void cnn_draw_free(cnn_draw *d) {
  if (!d) return;
  if (d->cr) cairo_destroy(d->cr);
  if (d->rec) {
    cairo_surface_finish(d->rec);
    cairo_surface_destroy(d->rec);
  }
  if (d->img) cairo_surface_destroy(d->img);
  free(d);
}

void cnn_draw_size(const cnn_draw *d, int *w, int *h) {
  *w = d->w;
  *h = d->h;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Pixels round(x)..round(x)+round(w)-1 (etc.) as a cairo rectangle in user space, cut to the
 * safe range; false when empty or not finite. */
static bool pixel_rect(double x, double y, double w, double h, double r[4]) {
  if (!isfinite(x) || !isfinite(y) || !isfinite(w) || !isfinite(h)) return false;
  double x0 = clampd(round(x), -SAFE, SAFE), y0 = clampd(round(y), -SAFE, SAFE);
  double x1 = clampd(round(x) + round(w), -SAFE, SAFE), y1 = clampd(round(y) + round(h), -SAFE, SAFE);
  if (x1 <= x0 || y1 <= y0) return false;
  r[0] = x0 - 0.5, r[1] = y0 - 0.5, r[2] = x1 - x0, r[3] = y1 - y0;
  return true;
}

void cnn_draw_clip(cnn_draw *d, double x, double y, double w, double h) {
  double r[4];
  if (!pixel_rect(x, y, w, h, r)) r[0] = r[1] = -2, r[2] = r[3] = 0; /* empty: nothing passes */
  cairo_rectangle(d->cr, r[0], r[1], r[2], r[3]);
  cairo_clip(d->cr);
}

void cnn_draw_unclip(cnn_draw *d) {
  cairo_restore(d->cr);
  cairo_save(d->cr);
}

/* Sets the pen's colour and stroke on the context. */
static void use_pen(cnn_draw *d, const cnn_pen *p) {
  cairo_new_path(d->cr);
  cairo_set_source_rgba(d->cr, p->r, p->g, p->b, p->alpha);
  cairo_set_line_width(d->cr, p->width);
  cairo_set_antialias(d->cr, p->aa ? CAIRO_ANTIALIAS_DEFAULT : CAIRO_ANTIALIAS_NONE);
  cairo_set_line_cap(d->cr, CAIRO_LINE_CAP_ROUND);
  cairo_set_line_join(d->cr, CAIRO_LINE_JOIN_ROUND);
  if (p->dash_off > 0) {
    double dash[2] = {p->dash_on, p->dash_off};
    cairo_set_dash(d->cr, dash, 2, 0);
  } else {
    cairo_set_dash(d->cr, NULL, 0, 0);
  }
  d->dirty = true;
}

void cnn_draw_fill(cnn_draw *d, const cnn_pen *p) {
  use_pen(d, p);
  cairo_paint(d->cr);
}

void cnn_draw_rect(cnn_draw *d, double x, double y, double w, double h, bool fill, const cnn_pen *p) {
  double r[4];
  if (!pixel_rect(x, y, w, h, r)) return;
  use_pen(d, p);
  if (fill) {
    cairo_rectangle(d->cr, r[0], r[1], r[2], r[3]);
    cairo_fill(d->cr);
    return;
  }
  /* the border as the ring between the rectangle and the one inset by the width (even-odd) */
  double lw = fmin(p->width, fmin(r[2], r[3]) / 2);
  cairo_set_fill_rule(d->cr, CAIRO_FILL_RULE_EVEN_ODD);
  cairo_rectangle(d->cr, r[0], r[1], r[2], r[3]);
  cairo_rectangle(d->cr, r[0] + lw, r[1] + lw, r[2] - 2 * lw, r[3] - 2 * lw);
  cairo_fill(d->cr);
  cairo_set_fill_rule(d->cr, CAIRO_FILL_RULE_WINDING);
}

/* Moves end (x0, y0) of a segment along it to coordinate c on axis a (0: x, 1: y) when it lies
 * beyond c (side -1: below it, +1: above it); that axis stays exact however far the ends are. */
static void cut_end(double *x0, double *y0, double x1, double y1, int axis, double c, int side) {
  double *u0 = axis ? y0 : x0, *v0 = axis ? x0 : y0, u1 = axis ? y1 : x1, v1 = axis ? x1 : y1;
  if ((side < 0 && *u0 < c) || (side > 0 && *u0 > c)) {
    *v0 += (v1 - *v0) * ((c - *u0) / (u1 - *u0));
    *u0 = c;
  }
}

/* Cuts the segment (x0, y0)-(x1, y1) to the box [-SAFE, SAFE]^2: false when none of it is
 * inside. The cut ends stay on the segment, so nothing visible changes (up to the precision of
 * the ends themselves). */
static bool cut(double *x0, double *y0, double *x1, double *y1) {
  for (int axis = 0; axis < 2; axis++) {
    double u0 = axis ? *y0 : *x0, u1 = axis ? *y1 : *x1;
    if ((u0 < -SAFE && u1 < -SAFE) || (u0 > SAFE && u1 > SAFE)) return false;
    for (int side = -1; side <= 1; side += 2) {
      cut_end(x0, y0, *x1, *y1, axis, side * SAFE, side);
      cut_end(x1, y1, *x0, *y0, axis, side * SAFE, side);
    }
  }
  return fabs(*x0) <= SAFE && fabs(*y0) <= SAFE && fabs(*x1) <= SAFE && fabs(*y1) <= SAFE;
}

static bool safe(double x, double y) { return fabs(x) <= SAFE && fabs(y) <= SAFE; }

void cnn_draw_line(cnn_draw *d, double x0, double y0, double x1, double y1, const cnn_pen *p) {
  if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1) || !cut(&x0, &y0, &x1, &y1)) return;
  use_pen(d, p);
  if (!p->aa) {
    /* square ends as part of the segment, so that dashes keep their lengths from the first pixel */
    double len = hypot(x1 - x0, y1 - y0), ux = len > 0 ? (x1 - x0) / len : 1, uy = len > 0 ? (y1 - y0) / len : 0;
    double e = p->width / 2;
    x0 -= ux * e, y0 -= uy * e, x1 += ux * e, y1 += uy * e;
    cairo_set_line_cap(d->cr, CAIRO_LINE_CAP_BUTT);
    cairo_set_line_join(d->cr, CAIRO_LINE_JOIN_MITER); /* with round joins cairo 1.16 fills 1-pixel gaps */
  }
  cairo_move_to(d->cr, x0, y0);
  cairo_line_to(d->cr, x1, y1);
  cairo_stroke(d->cr);
}

/* The points of a run that stay in one pixel column (x in [c, c + 1)) are stroked through the
 * first, the lowest, the highest and the last of them, in their order: the same pixels to within
 * the column's width, and at most four points a column, where a noisy series of 100,000 points
 * (a loss per step) took cairo's stroker 25 s (its time grows with the crossings of one path).
 * Non-finite points are kept: they break the line. Writes the kept points to kx, ky; returns
 * their count. */
static int64_t thin_columns(const double *xs, const double *ys, int64_t n, double *kx, double *ky) {
  int64_t m = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i, lo = i, hi = i;
    if (isfinite(xs[i]) && isfinite(ys[i])) {
      const double col = floor(xs[i]);
      while (j + 1 < n && isfinite(xs[j + 1]) && isfinite(ys[j + 1]) && floor(xs[j + 1]) == col) {
        j++;
        if (ys[j] < ys[lo]) lo = j;
        if (ys[j] > ys[hi]) hi = j;
      }
    }
    const int64_t keep[4] = {i, lo < hi ? lo : hi, lo < hi ? hi : lo, j}; /* in order */
    for (int k = 0; k < 4; k++) {
      if (k > 0 && keep[k] == keep[k - 1]) continue;
      kx[m] = xs[keep[k]], ky[m] = ys[keep[k]], m++;
    }
    i = j + 1;
  }
  return m;
}

void cnn_draw_polyline(cnn_draw *d, const double *xs, const double *ys, int64_t n, const cnn_pen *p) {
  double *kx = n > 64 ? malloc(sizeof(double) * (size_t)n) : NULL, *ky = kx ? malloc(sizeof(double) * (size_t)n) : NULL;
  if (ky) { /* without the memory, the points as they are */
    n = thin_columns(xs, ys, n, kx, ky);
    xs = kx, ys = ky;
  }
  use_pen(d, p);
  bool open = false; /* a subpath is open and ends at point i - 1 */
  for (int64_t i = 0; i < n; i++) {
    bool ok = isfinite(xs[i]) && isfinite(ys[i]);
    bool prev = i > 0 && isfinite(xs[i - 1]) && isfinite(ys[i - 1]);
    bool next = i + 1 < n && isfinite(xs[i + 1]) && isfinite(ys[i + 1]);
    if (!ok) {
      open = false;
      continue;
    }
    if (!prev && !next) { /* a lone point: a zero-length subpath, drawn as a dot by the round cap */
      if (safe(xs[i], ys[i])) {
        cairo_move_to(d->cr, xs[i], ys[i]);
        cairo_close_path(d->cr);
      }
      continue;
    }
    if (!prev) continue; /* the first point of a run: drawn with the segment to the next */
    double x0 = xs[i - 1], y0 = ys[i - 1], x1 = xs[i], y1 = ys[i];
    bool whole = safe(x0, y0) && safe(x1, y1);
    if (!whole && !cut(&x0, &y0, &x1, &y1)) {
      open = false;
      continue;
    }
    if (!open || !safe(xs[i - 1], ys[i - 1])) cairo_move_to(d->cr, x0, y0);
    cairo_line_to(d->cr, x1, y1);
    open = safe(xs[i], ys[i]);
  }
  cairo_stroke(d->cr);
  free(kx);
  free(ky);
}

/* False when a shape within `reach` pixels of (x, y) cannot touch the canvas. */
static bool near_canvas(const cnn_draw *d, double x, double y, double reach) {
  return isfinite(x) && isfinite(y) && x + reach >= -1 && x - reach <= d->w && y + reach >= -1 && y - reach <= d->h;
}

void cnn_draw_circle(cnn_draw *d, double x, double y, double r, bool fill, const cnn_pen *p) {
  if (!(r >= 0 && r <= 1e5) || !near_canvas(d, x, y, r + p->width)) return;
  use_pen(d, p);
  cairo_new_sub_path(d->cr);
  cairo_arc(d->cr, x, y, r, 0, 2 * M_PI);
  if (fill) cairo_fill(d->cr);
  else cairo_stroke(d->cr);
}

static const char *const marker_names[CNN_MARKER_COUNT] = {"dot",      "circle", "square", "diamond",
                                                           "triangle", "star",   "cross",  "plus"};

int cnn_marker_from_name(const char *name) {
  for (int i = 0; i < CNN_MARKER_COUNT; i++)
    if (strcmp(name, marker_names[i]) == 0) return i;
  return -1;
}

void cnn_draw_marker(cnn_draw *d, double x, double y, int kind, double size, const cnn_pen *p, const cnn_pen *edge) {
  if (!(size > 0) || kind < 0 || kind >= CNN_MARKER_COUNT) return;
  size = fmin(size, 4096);
  double h = size * 0.5;
  if (!near_canvas(d, x, y, 1.2 * h + 2)) return;
  cnn_pen pen = *p;
  pen.aa = true;
  pen.dash_off = 0;
  use_pen(d, &pen);
  cairo_t *cr = d->cr;
  switch (kind) {
  case CNN_MARKER_DOT: cairo_arc(cr, x, y, h, 0, 2 * M_PI); break;
  case CNN_MARKER_CIRCLE:
    cairo_arc(cr, x, y, fmax(0.25, h - 0.75), 0, 2 * M_PI);
    cairo_set_line_width(cr, 1.5);
    cairo_stroke(cr);
    return;
  case CNN_MARKER_CROSS:
  case CNN_MARKER_PLUS: {
    double k = kind == CNN_MARKER_CROSS ? h * 0.8 : h;
    cairo_set_line_width(cr, fmax(1.5, size / 6));
    if (kind == CNN_MARKER_CROSS) {
      cairo_move_to(cr, x - k, y - k), cairo_line_to(cr, x + k, y + k);
      cairo_move_to(cr, x - k, y + k), cairo_line_to(cr, x + k, y - k);
    } else {
      cairo_move_to(cr, x - k, y), cairo_line_to(cr, x + k, y);
      cairo_move_to(cr, x, y - k), cairo_line_to(cr, x, y + k);
    }
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    cairo_stroke(cr);
    return;
  }
  case CNN_MARKER_SQUARE: cairo_rectangle(cr, x - h * 0.85, y - h * 0.85, h * 1.7, h * 1.7); break;
  case CNN_MARKER_DIAMOND: {
    double k = h * 1.1;
    cairo_move_to(cr, x, y - k), cairo_line_to(cr, x + k * 0.8, y), cairo_line_to(cr, x, y + k);
    cairo_line_to(cr, x - k * 0.8, y), cairo_close_path(cr);
    break;
  }
  case CNN_MARKER_TRIANGLE: {
    double k = h * 1.15;
    cairo_move_to(cr, x, y - k), cairo_line_to(cr, x + k * 0.866, y + k * 0.5);
    cairo_line_to(cr, x - k * 0.866, y + k * 0.5), cairo_close_path(cr);
    break;
  }
  case CNN_MARKER_STAR: {
    double ro = h * 1.2, ri = ro * 0.45;
    for (int i = 0; i < 10; i++) {
      double a = -M_PI / 2 + i * M_PI / 5, r = i % 2 ? ri : ro;
      cairo_line_to(cr, x + r * cos(a), y + r * sin(a));
    }
    cairo_close_path(cr);
    break;
  }
  }
  if (!edge) {
    cairo_fill(cr);
    return;
  }
  cairo_fill_preserve(cr);
  cairo_set_source_rgba(cr, edge->r, edge->g, edge->b, edge->alpha);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
}

int cnn_draw_text(cnn_draw *d, double x, double y, const char *s, double px, bool bold, bool rotate, double fx,
                  cnn_valign valign, const cnn_pen *p, double box[4]) {
  cairo_scaled_font_t *sf = scaled_font(px, bold);
  if (!sf) return -1;
  int nlines;
  char *buf = text_lines(s, &nlines);
  if (!buf) {
    cairo_scaled_font_destroy(sf);
    return cnn_error_set("out of memory");
  }
  cairo_font_extents_t fe;
  cairo_scaled_font_extents(sf, &fe);
  double line = fe.ascent + fe.descent, w = widest(sf, buf, nlines), h = nlines * line;
  cairo_scaled_font_destroy(sf);
  /* the anchor's offset from the top-left of the box on the canvas (bw x bh) */
  double bw = rotate ? h : w, bh = rotate ? w : h;
  double fy = valign == CNN_VALIGN_TOP ? 0 : valign == CNN_VALIGN_MIDDLE ? 0.5 : 1;
  double ox = fx * bw, oy = fy * bh;
  if (valign == CNN_VALIGN_BASELINE) { /* turned, the first baseline is a vertical line */
    if (rotate) ox = fe.ascent, oy = fx * bh;
    else oy = fe.ascent;
  }
  double left = x - ox, top = y - oy;
  if (box) box[0] = left, box[1] = top, box[2] = bw, box[3] = bh;
  if (!near_canvas(d, left + bw / 2, top + bh / 2, (bw + bh) / 2 + 2) || !safe(left, top)) {
    free(buf);
    return 0;
  }
  cnn_pen pen = *p;
  pen.aa = true;
  use_pen(d, &pen);
  cairo_t *cr = d->cr;
  cairo_save(cr);
  cairo_set_font_face(cr, font.face[bold]);
  cairo_set_font_size(cr, px);
  /* baselines on pixel edges (user .5), where hinting keeps horizontal strokes sharp */
  if (!rotate) {
    cairo_translate(cr, left, floor(top + fe.ascent) + 0.5);
  } else {
    cairo_translate(cr, floor(left + fe.ascent) + 0.5, top + w);
    cairo_rotate(cr, -M_PI / 2);
  }
  const char *l = buf;
  for (int i = 0; i < nlines; i++, l += strlen(l) + 1) {
    cairo_move_to(cr, 0, i * line);
    cairo_show_text(cr, l);
  }
  cairo_restore(cr);
  free(buf);
  return 0;
}

/* ---- output ---- */

/* Renders the drawing into d->img when it has changed. 0, or -1 with the error set. */
static int render(cnn_draw *d) {
  if (!d->dirty && d->img) return 0;
  if (cairo_status(d->cr) != CAIRO_STATUS_SUCCESS)
    return cnn_error_set("drawing failed (%s)", cairo_status_to_string(cairo_status(d->cr)));
  if (!d->img) {
    d->img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, d->w, d->h);
    if (cairo_surface_status(d->img) != CAIRO_STATUS_SUCCESS) {
      cairo_surface_destroy(d->img);
      d->img = NULL;
      return cnn_error_set("out of memory for a %dx%d image", d->w, d->h);
    }
  }
  cairo_t *cr = cairo_create(d->img);
  cairo_set_source_surface(cr, d->rec, 0, 0);
  cairo_set_operator(cr, CAIRO_OPERATOR_SOURCE);
  cairo_paint(cr);
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_flush(d->img);
  if (st != CAIRO_STATUS_SUCCESS) return cnn_error_set("rendering failed (%s)", cairo_status_to_string(st));
  d->dirty = false;
  return 0;
}

/* Pixel (x, y) of the rendered image, 0x00RRGGBB. */
static uint32_t at(const cnn_draw *d, int x, int y) {
  const unsigned char *data = cairo_image_surface_get_data(d->img);
  int stride = cairo_image_surface_get_stride(d->img);
  return ((const uint32_t *)(data + (size_t)y * (size_t)stride))[x];
}

int64_t cnn_draw_count_ink(cnn_draw *d, double x, double y, double w, double h, const float bg[3], float tol) {
  double r[4];
  if (!pixel_rect(x, y, w, h, r)) return 0;
  if (render(d)) return -1;
  int x0 = (int)clampd(r[0] + 0.5, 0, d->w), y0 = (int)clampd(r[1] + 0.5, 0, d->h);
  int x1 = (int)clampd(r[0] + 0.5 + r[2], 0, d->w), y1 = (int)clampd(r[1] + 0.5 + r[3], 0, d->h);
  int64_t n = 0;
  for (int yy = y0; yy < y1; yy++)
    for (int xx = x0; xx < x1; xx++) {
      uint32_t v = at(d, xx, yy);
      float c[3] = {(float)((v >> 16) & 255) / 255.0f, (float)((v >> 8) & 255) / 255.0f, (float)(v & 255) / 255.0f};
      float diff = fmaxf(fabsf(c[0] - bg[0]), fmaxf(fabsf(c[1] - bg[1]), fabsf(c[2] - bg[2])));
      n += diff > tol;
    }
  return n;
}

int cnn_draw_pixel(cnn_draw *d, int x, int y, float rgb[3]) {
  rgb[0] = rgb[1] = rgb[2] = 0;
  if (render(d)) return -1;
  if (x < 0 || y < 0 || x >= d->w || y >= d->h) return 0;
  uint32_t v = at(d, x, y);
  for (int c = 0; c < 3; c++) rgb[c] = (float)((v >> (16 - 8 * c)) & 255) / 255.0f;
  return 0;
}

cnn_tensor *cnn_draw_tensor(cnn_draw *d) {
  if (render(d)) return NULL;
  int64_t size[3] = {3, d->h, d->w};
  cnn_tensor *t = cnn_tensor_empty(CNN_FLOAT32, 3, size);
  if (!t) return NULL;
  float *o = cnn_tensor_f32(t);
  int64_t plane = (int64_t)d->w * d->h;
  for (int y = 0; y < d->h; y++)
    for (int x = 0; x < d->w; x++) {
      uint32_t v = at(d, x, y);
      int64_t i = (int64_t)y * d->w + x;
      o[i] = (float)((v >> 16) & 255) / 255.0f;
      o[plane + i] = (float)((v >> 8) & 255) / 255.0f;
      o[2 * plane + i] = (float)(v & 255) / 255.0f;
    }
  return t;
}

static cairo_status_t write_out(void *closure, const unsigned char *data, unsigned int len) {
  return fwrite(data, 1, len, closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static bool ends_with(const char *s, const char *ext) {
  size_t n = strlen(s), k = strlen(ext);
  return n > k && strcasecmp(s + n - k, ext) == 0;
}

int cnn_draw_save(cnn_draw *d, const char *path) {
  enum { PNG, SVG, PDF } kind;
  if (ends_with(path, ".png")) kind = PNG;
  else if (ends_with(path, ".svg")) kind = SVG;
  else if (ends_with(path, ".pdf")) kind = PDF;
  else return cnn_error_set("%s: unknown image type (the name must end in .png, .svg or .pdf)", path);
  if (kind == PNG && render(d)) return -1;
  if (cairo_status(d->cr) != CAIRO_STATUS_SUCCESS)
    return cnn_error_set("%s: drawing failed (%s)", path, cairo_status_to_string(cairo_status(d->cr)));
  cnn_atomic_file af;
  if (cnn_atomic_open(&af, path)) return -1;
  cairo_status_t st;
  if (kind == PNG) {
    st = cairo_surface_write_to_png_stream(d->img, write_out, af.f);
  } else {
    /* the recording replayed onto a vector surface: paths and text stay vectors */
    cairo_surface_t *s = kind == SVG ? cairo_svg_surface_create_for_stream(write_out, af.f, d->w, d->h)
                                     : cairo_pdf_surface_create_for_stream(write_out, af.f, d->w, d->h);
    if (kind == SVG) cairo_svg_surface_set_document_unit(s, CAIRO_SVG_UNIT_PX);
    else cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "cnnlua");
    cairo_t *cr = cairo_create(s);
    cairo_set_source_surface(cr, d->rec, 0, 0);
    cairo_paint(cr);
    st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
    cairo_surface_destroy(s);
  }
  if (st != CAIRO_STATUS_SUCCESS) {
    cnn_atomic_abort(&af);
    return cnn_error_set("%s: cannot write the image (%s)", path, cairo_status_to_string(st));
  }
  return cnn_atomic_commit(&af);
}
