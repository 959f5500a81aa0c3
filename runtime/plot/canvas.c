/* Raster drawing on a (3, H, W) float tensor: every primitive first clips its geometry in double
 * precision (halved coordinates, so even +-DBL_MAX never overflows), then visits only pixels of
 * the clip rectangle; non-finite geometry draws nothing. Coverage-based anti-aliasing: a pixel's
 * coverage is 1 inside a stroke and falls linearly over one pixel at its edge. */
#include "cnn/canvas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnn/error.h"

int cnn_canvas_init(cnn_canvas *c, const cnn_tensor *t) {
  if (!t || t->dtype != CNN_FLOAT32) return cnn_error_set("expected a float32 tensor");
  if (t->ndim != 3 || t->size[0] != 3)
    return cnn_error_set("expected a (3, H, W) RGB tensor, got %d dimensions%s", t->ndim,
                         t->ndim == 3 ? " with a first size other than 3" : "");
  if (t->size[1] > INT32_MAX / 2 || t->size[2] > INT32_MAX / 2) return cnn_error_set("canvas too large");
  c->data = cnn_tensor_f32(t);
  c->cs = t->stride[0];
  c->ys = t->stride[1];
  c->xs = t->stride[2];
  c->h = (int)t->size[1];
  c->w = (int)t->size[2];
  cnn_canvas_unclip(c);
  return 0;
}

void cnn_canvas_unclip(cnn_canvas *c) {
  c->cx0 = 0;
  c->cy0 = 0;
  c->cx1 = c->w;
  c->cy1 = c->h;
}

/* round(v) clamped into [lo, hi]; NaN gives lo. */
static int clamp_round(double v, int lo, int hi) {
  if (!(v >= lo)) return lo;
  if (v >= hi) return hi;
  return (int)floor(v + 0.5);
}

static int clamp_int(double v, int lo, int hi) {
  if (!(v >= lo)) return lo;
  if (v >= hi) return hi;
  return (int)v;
}

void cnn_canvas_clip(cnn_canvas *c, double x, double y, double w, double h) {
  if (!isfinite(x) || !isfinite(y) || !isfinite(w) || !isfinite(h) || w <= 0 || h <= 0) {
    c->cx1 = c->cx0; /* empty */
    c->cy1 = c->cy0;
    return;
  }
  int x0 = clamp_round(x, c->cx0, c->cx1), x1 = clamp_round(x + w, c->cx0, c->cx1);
  int y0 = clamp_round(y, c->cy0, c->cy1), y1 = clamp_round(y + h, c->cy0, c->cy1);
  c->cx0 = x0;
  c->cx1 = x1;
  c->cy0 = y0;
  c->cy1 = y1;
}

static inline int in_clip(const cnn_canvas *c, int x, int y) {
  return x >= c->cx0 && x < c->cx1 && y >= c->cy0 && y < c->cy1;
}

void cnn_canvas_blend(cnn_canvas *c, int x, int y, cnn_rgb col, float a) {
  if (!in_clip(c, x, y) || !(a > 0)) return;
  if (a > 1) a = 1;
  float *p = c->data + (int64_t)y * c->ys + (int64_t)x * c->xs;
  p[0] += (col.r - p[0]) * a;
  p[c->cs] += (col.g - p[c->cs]) * a;
  p[2 * c->cs] += (col.b - p[2 * c->cs]) * a;
}

cnn_rgb cnn_canvas_get(const cnn_canvas *c, int x, int y) {
  cnn_rgb v = {0, 0, 0};
  if (x < 0 || y < 0 || x >= c->w || y >= c->h) return v;
  const float *p = c->data + (int64_t)y * c->ys + (int64_t)x * c->xs;
  v.r = p[0];
  v.g = p[c->cs];
  v.b = p[2 * c->cs];
  return v;
}

/* ---- rectangles ---- */

void cnn_canvas_fill(cnn_canvas *c, cnn_rgb col) {
  for (int y = c->cy0; y < c->cy1; y++)
    for (int x = c->cx0; x < c->cx1; x++) {
      float *p = c->data + (int64_t)y * c->ys + (int64_t)x * c->xs;
      p[0] = col.r;
      p[c->cs] = col.g;
      p[2 * c->cs] = col.b;
    }
}

/* Fills pixel columns [x0, x1) and rows [y0, y1), clipped. */
static void fill_box(cnn_canvas *c, int x0, int y0, int x1, int y1, cnn_rgb col, float alpha) {
  if (x0 < c->cx0) x0 = c->cx0;
  if (y0 < c->cy0) y0 = c->cy0;
  if (x1 > c->cx1) x1 = c->cx1;
  if (y1 > c->cy1) y1 = c->cy1;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) cnn_canvas_blend(c, x, y, col, alpha);
}

/* A rectangle's pixel bounds, rounded and clamped a little beyond the canvas; 0 when empty. */
static int rect_bounds(const cnn_canvas *c, double x, double y, double w, double h, int *x0, int *y0, int *x1,
                       int *y1) {
  if (isnan(x) || isnan(y) || isnan(w) || isnan(h) || !(w > 0) || !(h > 0)) return 0;
  double xa = floor(x + 0.5), ya = floor(y + 0.5);
  double xb = xa + floor(w + 0.5), yb = ya + floor(h + 0.5); /* inf stays inf, never NaN here */
  if (isnan(xb) || isnan(yb)) return 0;
  *x0 = clamp_int(xa, -1, c->w + 1);
  *x1 = clamp_int(xb, -1, c->w + 1);
  *y0 = clamp_int(ya, -1, c->h + 1);
  *y1 = clamp_int(yb, -1, c->h + 1);
  return *x1 > *x0 && *y1 > *y0;
}

void cnn_canvas_fill_rect(cnn_canvas *c, double x, double y, double w, double h, cnn_rgb col, float alpha) {
  int x0, y0, x1, y1;
  if (rect_bounds(c, x, y, w, h, &x0, &y0, &x1, &y1)) fill_box(c, x0, y0, x1, y1, col, alpha);
}

void cnn_canvas_rect(cnn_canvas *c, double x, double y, double w, double h, double lw, cnn_rgb col, float alpha) {
  int x0, y0, x1, y1;
  if (!rect_bounds(c, x, y, w, h, &x0, &y0, &x1, &y1)) return;
  int t = clamp_round(lw, 1, 1 << 20);
  if (x1 - x0 <= 2 * t || y1 - y0 <= 2 * t) {
    fill_box(c, x0, y0, x1, y1, col, alpha);
    return;
  }
  fill_box(c, x0, y0, x1, y0 + t, col, alpha);
  fill_box(c, x0, y1 - t, x1, y1, col, alpha);
  fill_box(c, x0, y0 + t, x0 + t, y1 - t, col, alpha);
  fill_box(c, x1 - t, y0 + t, x1, y1 - t, col, alpha);
}

/* ---- coverage sinks: straight to the canvas, or max-combined in a buffer over the clip ---- */

typedef struct sink {
  cnn_canvas *c;
  cnn_rgb col;
  float alpha;
  float *buf; /* NULL: blend directly; else (cy1-cy0) x (cx1-cx0) coverage */
  int bw;
  int dx0, dy0, dx1, dy1; /* dirty box of buf, inclusive-exclusive */
} sink;

static inline void put(sink *s, int x, int y, float cov) {
  cnn_canvas *c = s->c;
  if (!in_clip(c, x, y) || !(cov > 0)) return;
  if (!s->buf) {
    cnn_canvas_blend(c, x, y, s->col, cov * s->alpha);
    return;
  }
  float *b = s->buf + (int64_t)(y - c->cy0) * s->bw + (x - c->cx0);
  if (cov > *b) *b = cov;
  if (x < s->dx0) s->dx0 = x;
  if (x >= s->dx1) s->dx1 = x + 1;
  if (y < s->dy0) s->dy0 = y;
  if (y >= s->dy1) s->dy1 = y + 1;
}

/* The point of the line through (x0, y0) with direction (dx, dy) (halved units) at t, or, when
 * the clip happened on edge `e` (0/1: x = bx, 2/3: y = by), the point on that edge computed from
 * the slope, exact for horizontal and vertical lines whatever their length. */
static void clip_point(double x0, double y0, double hdx, double hdy, double t, int e, double edge, double *x,
                       double *y) {
  double px = 2 * (x0 * 0.5 + t * hdx), py = 2 * (y0 * 0.5 + t * hdy);
  if (e == 0 || e == 1) {
    double v = y0 + (edge - x0) * (hdy / hdx);
    px = edge;
    if (isfinite(v)) py = v;
  } else if (e == 2 || e == 3) {
    double v = x0 + (edge - y0) * (hdx / hdy);
    py = edge;
    if (isfinite(v)) px = v;
  }
  *x = px;
  *y = py;
}

/* Liang-Barsky clip of a segment to [bx0, bx1] x [by0, by1], done on halved coordinates so that
 * differences of huge values cannot overflow. Returns 0 when nothing remains or on non-finite
 * input. Coordinates of order 1e15 and beyond lose precision (doubles hold no more), never safety. */
static int clip_segment(double *x0, double *y0, double *x1, double *y1, double bx0, double by0, double bx1,
                        double by1) {
  if (!isfinite(*x0) || !isfinite(*y0) || !isfinite(*x1) || !isfinite(*y1)) return 0;
  double hx = *x0 * 0.5, hy = *y0 * 0.5, dx = *x1 * 0.5 - hx, dy = *y1 * 0.5 - hy;
  double p[4] = {-dx, dx, -dy, dy};
  double q[4] = {hx - bx0 * 0.5, bx1 * 0.5 - hx, hy - by0 * 0.5, by1 * 0.5 - hy};
  double edges[4] = {bx0, bx1, by0, by1};
  double t0 = 0, t1 = 1;
  int e0 = -1, e1 = -1;
  for (int i = 0; i < 4; i++) {
    if (p[i] == 0) {
      if (q[i] < 0) return 0;
    } else {
      double t = q[i] / p[i];
      if (p[i] < 0) {
        if (t > t0) {
          t0 = t;
          e0 = i;
        }
      } else if (t < t1) {
        t1 = t;
        e1 = i;
      }
    }
  }
  /* a long segment's t has too few bits to resolve the box: let rounding err inwards */
  if (t0 > t1 + 1e-12) return 0;
  double ox = *x0, oy = *y0, nx0 = ox, ny0 = oy, nx1 = *x1, ny1 = *y1;
  if (e0 >= 0) clip_point(ox, oy, dx, dy, t0, e0, edges[e0], &nx0, &ny0);
  if (e1 >= 0) clip_point(ox, oy, dx, dy, t1, e1, edges[e1], &nx1, &ny1);
  /* rounding may step a hair outside: clamp, the box already has a margin */
  *x0 = fmin(fmax(nx0, bx0), bx1);
  *y0 = fmin(fmax(ny0, by0), by1);
  *x1 = fmin(fmax(nx1, bx0), bx1);
  *y1 = fmin(fmax(ny1, by0), by1);
  return 1;
}

/* One-pixel Bresenham line, coverage 1. */
static void stroke_plain(sink *s, double x0, double y0, double x1, double y1) {
  cnn_canvas *c = s->c;
  if (!clip_segment(&x0, &y0, &x1, &y1, c->cx0 - 1, c->cy0 - 1, c->cx1, c->cy1)) return;
  int ax = (int)floor(x0 + 0.5), ay = (int)floor(y0 + 0.5);
  int bx = (int)floor(x1 + 0.5), by = (int)floor(y1 + 0.5);
  int dx = abs(bx - ax), dy = -abs(by - ay);
  int sx = ax < bx ? 1 : -1, sy = ay < by ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    put(s, ax, ay, 1);
    if (ax == bx && ay == by) break;
    int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      ax += sx;
    }
    if (e2 <= dx) {
      err += dx;
      ay += sy;
    }
  }
}

/* Anti-aliased stroke of the given width with round caps: coverage falls from 1 to 0 between
 * distance hw - 0.5 and hw + 0.5 from the segment. Visits, row by row, only the x-span where the
 * segment's infinite line passes within reach. */
static void stroke_aa(sink *s, double x0, double y0, double x1, double y1, double width) {
  cnn_canvas *c = s->c;
  double hw = width > 1 ? width * 0.5 : 0.5, gain = width > 1 ? 1 : (width > 0 ? width : 0);
  double reach = hw + 1;
  if (!(gain > 0)) return;
  if (!clip_segment(&x0, &y0, &x1, &y1, c->cx0 - reach - 1, c->cy0 - reach - 1, c->cx1 + reach, c->cy1 + reach)) return;
  double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy, len = sqrt(len2);
  int ya = clamp_int(floor(fmin(y0, y1) - reach), c->cy0, c->cy1);
  int yb = clamp_int(ceil(fmax(y0, y1) + reach) + 1, c->cy0, c->cy1);
  double bxa = floor(fmin(x0, x1) - reach), bxb = ceil(fmax(x0, x1) + reach) + 1;
  for (int y = ya; y < yb; y++) {
    double xa = bxa, xb = bxb;
    if (fabs(dy) > 1e-9 * len) { /* span of the line's band on this row */
      double xl = x0 + (y - y0) * dx / dy, ext = reach * len / fabs(dy) + 1;
      xa = fmax(xa, floor(xl - ext));
      xb = fmin(xb, ceil(xl + ext) + 1);
    }
    int ia = clamp_int(xa, c->cx0, c->cx1), ib = clamp_int(xb, c->cx0, c->cx1);
    for (int x = ia; x < ib; x++) {
      double px = x - x0, py = y - y0, t = len2 > 0 ? (px * dx + py * dy) / len2 : 0;
      if (t < 0) t = 0;
      if (t > 1) t = 1;
      double ex = px - t * dx, ey = py - t * dy, d = sqrt(ex * ex + ey * ey);
      double cov = hw + 0.5 - d;
      if (cov <= 0) continue;
      put(s, x, y, (float)(fmin(cov, 1) * gain));
    }
  }
}

/* Plain one-pixel lines by Bresenham; everything else by coverage (a plain thick stroke is
 * thresholded at half coverage when its buffer is flushed). */
static void stroke(sink *s, double x0, double y0, double x1, double y1, double width, int aa) {
  if (!aa && width <= 1) stroke_plain(s, x0, y0, x1, y1);
  else stroke_aa(s, x0, y0, x1, y1, width);
}

/* Disc of radius r (coverage falls over the last pixel), or a ring of width lw around radius r. */
static void disc(sink *s, double cx, double cy, double r, int fill, double lw) {
  cnn_canvas *c = s->c;
  if (!isfinite(cx) || !isfinite(cy) || !(r >= 0)) return;
  double reach = (fill ? r : r + lw * 0.5) + 1;
  if (!isfinite(reach)) reach = 1e300;
  int xa = clamp_int(floor(cx - reach), c->cx0, c->cx1), xb = clamp_int(ceil(cx + reach) + 1, c->cx0, c->cx1);
  int ya = clamp_int(floor(cy - reach), c->cy0, c->cy1), yb = clamp_int(ceil(cy + reach) + 1, c->cy0, c->cy1);
  for (int y = ya; y < yb; y++)
    for (int x = xa; x < xb; x++) {
      double d = hypot(x - cx, y - cy);
      double cov = fill ? r + 0.5 - d : lw * 0.5 + 0.5 - fabs(d - r);
      if (cov > 0) put(s, x, y, (float)fmin(cov, 1));
    }
}

/* Blends the buffer's dirty box into the canvas; a plain (not anti-aliased) stroke keeps the
 * pixels with at least half coverage, fully. */
static void flush(sink *s, int plain) {
  cnn_canvas *c = s->c;
  for (int y = s->dy0; y < s->dy1; y++)
    for (int x = s->dx0; x < s->dx1; x++) {
      float cov = s->buf[(int64_t)(y - c->cy0) * s->bw + (x - c->cx0)];
      if (plain) cov = cov >= 0.5f ? 1.0f : 0.0f;
      cnn_canvas_blend(c, x, y, s->col, cov * s->alpha);
    }
}

static int sink_buffered(sink *s, cnn_canvas *c, cnn_rgb col, float alpha) {
  s->c = c;
  s->col = col;
  s->alpha = alpha;
  s->bw = c->cx1 - c->cx0;
  s->dx0 = c->cx1;
  s->dy0 = c->cy1;
  s->dx1 = c->cx0;
  s->dy1 = c->cy0;
  s->buf = NULL;
  size_t n = (size_t)(c->cx1 - c->cx0) * (size_t)(c->cy1 - c->cy0);
  if (n == 0) return 0;
  s->buf = calloc(n, sizeof(float));
  if (!s->buf) return cnn_error_set("out of memory for a %d x %d coverage buffer", s->bw, c->cy1 - c->cy0);
  return 0;
}

static void sink_direct(sink *s, cnn_canvas *c, cnn_rgb col, float alpha) {
  memset(s, 0, sizeof *s);
  s->c = c;
  s->col = col;
  s->alpha = alpha;
}

void cnn_canvas_line(cnn_canvas *c, double x0, double y0, double x1, double y1, cnn_rgb col, double width, int aa,
                     float alpha) {
  if (!aa && width > 1) { /* thresholded coverage needs the buffer to avoid double blending */
    double xs[2] = {x0, x1}, ys[2] = {y0, y1};
    cnn_canvas_polyline(c, xs, ys, 2, col, width, aa, alpha);
    return;
  }
  sink s;
  sink_direct(&s, c, col, alpha);
  stroke(&s, x0, y0, x1, y1, width, aa);
}

void cnn_canvas_dashed_line(cnn_canvas *c, double x0, double y0, double x1, double y1, cnn_rgb col, double width,
                            int aa, float alpha, double on, double off) {
  if (!(on > 0) || !(off >= 0) || !isfinite(on) || !isfinite(off)) {
    cnn_canvas_line(c, x0, y0, x1, y1, col, width, aa, alpha);
    return;
  }
  if (on + off < 1) on = 1 - off; /* at most one dash per pixel */
  /* clip first (keeping the dash phase from the original start) so a huge line costs no more
   * dashes than the canvas can show */
  double m = width + 2, cx0 = x0, cy0 = y0, cx1 = x1, cy1 = y1;
  if (!clip_segment(&cx0, &cy0, &cx1, &cy1, c->cx0 - m, c->cy0 - m, c->cx1 + m, c->cy1 + m)) return;
  double len = hypot(x1 - x0, y1 - y0);
  if (!isfinite(len)) len = hypot(x1 * 0.5 - x0 * 0.5, y1 * 0.5 - y0 * 0.5) * 2;
  if (!isfinite(len) || len == 0) {
    cnn_canvas_line(c, cx0, cy0, cx1, cy1, col, width, aa, alpha);
    return;
  }
  double ux = (x1 * 0.5 - x0 * 0.5) * 2 / len, uy = (y1 * 0.5 - y0 * 0.5) * 2 / len;
  if (!isfinite(ux) || !isfinite(uy)) return;
  /* distances of the clipped ends from the original start; dashes are laid from the nearer
   * clipped end (p) so that huge coordinates cost no precision, keeping the original phase */
  double sa = (cx0 - x0) * ux + (cy0 - y0) * uy, sb = (cx1 - x0) * ux + (cy1 - y0) * uy;
  double px = cx0, py = cy0;
  if (sa > sb) {
    double t = sa;
    sa = sb;
    sb = t;
    px = cx1;
    py = cy1;
  }
  double vis = fmin(sb - sa, hypot(cx1 - cx0, cy1 - cy0));
  if (!isfinite(vis) || !isfinite(sa)) return;
  /* a plain dash lights both end pixels: end it one pixel early so `on` pixels are lit */
  double period = on + off, shrink = !aa && width <= 1 && on >= 1 ? 1 : 0;
  double phase = fmod(sa, period);
  if (phase < 0) phase += period;
  for (double d = -phase; d < vis; d += period) {
    double a = fmax(d, 0), b = fmin(d + on - shrink, vis);
    if (b < a) continue;
    cnn_canvas_line(c, px + a * ux, py + a * uy, px + b * ux, py + b * uy, col, width, aa, alpha);
  }
}

int cnn_canvas_polyline(cnn_canvas *c, const double *xs, const double *ys, int64_t n, cnn_rgb col, double width, int aa,
                        float alpha) {
  sink s;
  if (sink_buffered(&s, c, col, alpha) != 0) return -1;
  if (!s.buf) return 0;
  for (int64_t i = 0; i < n; i++) {
    int ok = isfinite(xs[i]) && isfinite(ys[i]);
    if (!ok) continue;
    int prev = i > 0 && isfinite(xs[i - 1]) && isfinite(ys[i - 1]);
    int next = i + 1 < n && isfinite(xs[i + 1]) && isfinite(ys[i + 1]);
    if (next) stroke(&s, xs[i], ys[i], xs[i + 1], ys[i + 1], width, aa);
    else if (!prev) disc(&s, xs[i], ys[i], fmax(width * 0.5 + 0.25, 1.25), 1, 0);
  }
  flush(&s, !aa && width > 1);
  free(s.buf);
  return 0;
}

void cnn_canvas_circle(cnn_canvas *c, double x, double y, double r, cnn_rgb col, int fill, double lw, float alpha) {
  sink s;
  sink_direct(&s, c, col, alpha);
  disc(&s, x, y, r, fill, lw > 0 ? lw : 1);
}

/* Even-odd point-in-polygon. */
static int inside(const double *xs, const double *ys, int n, double px, double py) {
  int in = 0;
  for (int i = 0, j = n - 1; i < n; j = i++) {
    if ((ys[i] > py) != (ys[j] > py)) {
      double xc = xs[j] + (py - ys[j]) * (xs[i] - xs[j]) / (ys[i] - ys[j]);
      if (px < xc) in = !in;
    }
  }
  return in;
}

void cnn_canvas_polygon(cnn_canvas *c, const double *xs, const double *ys, int n, cnn_rgb col, float alpha) {
  if (n < 3) return;
  double xa = INFINITY, xb = -INFINITY, ya = INFINITY, yb = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (!isfinite(xs[i]) || !isfinite(ys[i])) return;
    xa = fmin(xa, xs[i]);
    xb = fmax(xb, xs[i]);
    ya = fmin(ya, ys[i]);
    yb = fmax(yb, ys[i]);
  }
  int ia = clamp_int(floor(xa), c->cx0, c->cx1), ib = clamp_int(ceil(xb) + 1, c->cx0, c->cx1);
  int ja = clamp_int(floor(ya), c->cy0, c->cy1), jb = clamp_int(ceil(yb) + 1, c->cy0, c->cy1);
  for (int y = ja; y < jb; y++)
    for (int x = ia; x < ib; x++) {
      int hits = 0;
      for (int sy = 0; sy < 4; sy++)
        for (int sx = 0; sx < 4; sx++) hits += inside(xs, ys, n, x - 0.375 + 0.25 * sx, y - 0.375 + 0.25 * sy);
      if (hits) cnn_canvas_blend(c, x, y, col, alpha * (float)hits / 16.0f);
    }
}

/* ---- markers ---- */

static const char *const marker_names[CNN_MARKER_COUNT] = {"dot",      "circle", "square", "diamond",
                                                           "triangle", "star",   "cross",  "plus"};

int cnn_marker_from_name(const char *name) {
  for (int i = 0; i < CNN_MARKER_COUNT; i++)
    if (strcmp(name, marker_names[i]) == 0) return i;
  return -1;
}

const char *cnn_marker_name(int kind) { return kind >= 0 && kind < CNN_MARKER_COUNT ? marker_names[kind] : "?"; }

static void outline(cnn_canvas *c, const double *xs, const double *ys, int n, cnn_rgb col, float alpha) {
  double px[16], py[16];
  for (int i = 0; i < n; i++) {
    px[i] = xs[i];
    py[i] = ys[i];
  }
  px[n] = xs[0];
  py[n] = ys[0];
  cnn_canvas_polyline(c, px, py, n + 1, col, 1, 1, alpha);
}

void cnn_canvas_marker(cnn_canvas *c, double x, double y, int kind, double size, cnn_rgb col, cnn_rgb edge,
                       float edge_alpha) {
  if (!isfinite(x) || !isfinite(y) || !(size > 0)) return;
  if (size > 4096) size = 4096;
  double h = size * 0.5, xs[10], ys[10];
  int n = 0;
  switch (kind) {
  case CNN_MARKER_DOT:
    cnn_canvas_circle(c, x, y, h, col, 1, 0, 1);
    if (edge_alpha > 0) cnn_canvas_circle(c, x, y, h - 0.5, edge, 0, 1, edge_alpha);
    return;
  case CNN_MARKER_CIRCLE: cnn_canvas_circle(c, x, y, h - 0.75, col, 0, 1.5, 1); return;
  case CNN_MARKER_CROSS: {
    double k = h * 0.8, w = fmax(1.5, size / 6);
    cnn_canvas_line(c, x - k, y - k, x + k, y + k, col, w, 1, 1);
    cnn_canvas_line(c, x - k, y + k, x + k, y - k, col, w, 1, 1);
    return;
  }
  case CNN_MARKER_PLUS: {
    double w = fmax(1.5, size / 6);
    cnn_canvas_line(c, x - h, y, x + h, y, col, w, 1, 1);
    cnn_canvas_line(c, x, y - h, x, y + h, col, w, 1, 1);
    return;
  }
  case CNN_MARKER_SQUARE: {
    double k = h * 0.85;
    double sx[4] = {x - k, x + k, x + k, x - k}, sy[4] = {y - k, y - k, y + k, y + k};
    memcpy(xs, sx, sizeof sx);
    memcpy(ys, sy, sizeof sy);
    n = 4;
    break;
  }
  case CNN_MARKER_DIAMOND: {
    double k = h * 1.1;
    double sx[4] = {x, x + k * 0.8, x, x - k * 0.8}, sy[4] = {y - k, y, y + k, y};
    memcpy(xs, sx, sizeof sx);
    memcpy(ys, sy, sizeof sy);
    n = 4;
    break;
  }
  case CNN_MARKER_TRIANGLE: {
    double k = h * 1.15;
    double sx[3] = {x, x + k * 0.866, x - k * 0.866}, sy[3] = {y - k, y + k * 0.5, y + k * 0.5};
    memcpy(xs, sx, sizeof sx);
    memcpy(ys, sy, sizeof sy);
    n = 3;
    break;
  }
  case CNN_MARKER_STAR: {
    double ro = h * 1.2, ri = ro * 0.45;
    for (int i = 0; i < 10; i++) {
      double a = -M_PI / 2 + i * M_PI / 5, r = i % 2 ? ri : ro;
      xs[i] = x + r * cos(a);
      ys[i] = y + r * sin(a);
    }
    n = 10;
    break;
  }
  default: return;
  }
  cnn_canvas_polygon(c, xs, ys, n, col, 1);
  if (edge_alpha > 0) outline(c, xs, ys, n, edge, edge_alpha);
}

int64_t cnn_canvas_count_ink(const cnn_canvas *c, double x, double y, double w, double h, cnn_rgb bg, float tol) {
  int x0, y0, x1, y1;
  if (!rect_bounds(c, x, y, w, h, &x0, &y0, &x1, &y1)) return 0;
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > c->w) x1 = c->w;
  if (y1 > c->h) y1 = c->h;
  int64_t n = 0;
  for (int yy = y0; yy < y1; yy++)
    for (int xx = x0; xx < x1; xx++) {
      cnn_rgb p = cnn_canvas_get(c, xx, yy);
      float d = fmaxf(fabsf(p.r - bg.r), fmaxf(fabsf(p.g - bg.g), fabsf(p.b - bg.b)));
      n += d > tol;
    }
  return n;
}

/* ---- text ---- */

void cnn_font_text_size(const char *s, int scale, int *w, int *h) {
  if (scale < 1) scale = 1;
  if (scale > CNN_FONT_MAX_SCALE) scale = CNN_FONT_MAX_SCALE;
  int lines = 1, cur = 0, best = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '\n') {
      lines++;
      cur = 0;
    } else if (++cur > best) {
      best = cur;
    }
  }
  *w = best > 0 ? (best * CNN_FONT_ADVANCE - 1) * scale : 0;
  *h = ((lines - 1) * CNN_FONT_LINE + CNN_FONT_H) * scale;
}

void cnn_canvas_text(cnn_canvas *c, int x, int y, const char *s, int scale, cnn_rgb col, int rotate, int bold) {
  if (scale < 1) scale = 1;
  if (scale > CNN_FONT_MAX_SCALE) scale = CNN_FONT_MAX_SCALE;
  int tw, th;
  cnn_font_text_size(s, scale, &tw, &th);
  if (bold) tw += 1;
  int line = 0, col_i = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '\n') {
      line++;
      col_i = 0;
      continue;
    }
    /* glyph box origin in text coordinates: u along the line, v down across lines */
    int64_t u0 = (int64_t)col_i * CNN_FONT_ADVANCE * scale, v0 = (int64_t)line * CNN_FONT_LINE * scale;
    col_i++;
    for (int gy = 0; gy < CNN_FONT_H; gy++)
      for (int gx = 0; gx < CNN_FONT_W; gx++) {
        if (!cnn_font_pixel((unsigned char)*p, gx, gy)) continue;
        for (int b = 0; b <= (bold ? 1 : 0); b++) {
          int64_t u = u0 + (int64_t)gx * scale + b, v = v0 + (int64_t)gy * scale;
          /* a scale x scale block at text coordinates (u, v); skip blocks far off the canvas */
          int64_t px, py;
          if (rotate == 90) { /* (u, v) -> (x + v, y + tw - 1 - u): the block's top-left */
            px = x + v;
            py = (int64_t)y + tw - u - scale;
          } else {
            px = x + u;
            py = y + v;
          }
          if (px + scale <= c->cx0 || py + scale <= c->cy0 || px >= c->cx1 || py >= c->cy1) continue;
          for (int j = 0; j < scale; j++)
            for (int i = 0; i < scale; i++) cnn_canvas_blend(c, (int)(px + i), (int)(py + j), col, 1);
        }
      }
  }
}
