/* A raster canvas over an RGB float tensor (3, H, W) with values in [0, 1]: fills, lines (plain
 * Bresenham or anti-aliased by distance coverage, any width, dashed), rectangles, circles, markers,
 * polygons and text in the built-in 5x7 bitmap font (font5x7.c). Pixel (x, y) is column x, row y,
 * its centre at integer coordinates. Every primitive clips to the canvas' clip rectangle: any
 * coordinates (huge, infinite, NaN) are safe and never write outside it. */
#ifndef CNN_CANVAS_H
#define CNN_CANVAS_H

#include <stdint.h>

#include "cnn/tensor.h"

typedef struct cnn_rgb {
  float r, g, b;
} cnn_rgb;

/* A borrowed view of a (3, H, W) float32 tensor of any strides: the tensor must outlive it. */
typedef struct cnn_canvas {
  float *data; /* element (c, y, x) at data[c*cs + y*ys + x*xs] */
  int64_t cs, ys, xs;
  int w, h;
  int cx0, cy0, cx1, cy1; /* clip rectangle, pixels cx0 <= x < cx1, cy0 <= y < cy1 */
} cnn_canvas;

/* Checks t is a float32 (3, H, W) tensor and fills c (clip = the whole canvas); 0 or -1. */
int cnn_canvas_init(cnn_canvas *c, const cnn_tensor *t);
/* Intersects the clip rectangle with pixels x..x+w-1, y..y+h-1; unclip restores the whole canvas. */
void cnn_canvas_clip(cnn_canvas *c, double x, double y, double w, double h);
void cnn_canvas_unclip(cnn_canvas *c);

/* Blends colour col with coverage a in [0, 1] into pixel (x, y) (ignored outside the clip). */
void cnn_canvas_blend(cnn_canvas *c, int x, int y, cnn_rgb col, float a);
/* Reads pixel (x, y); black outside the canvas. */
cnn_rgb cnn_canvas_get(const cnn_canvas *c, int x, int y);

/* The whole clip rectangle in one colour. */
void cnn_canvas_fill(cnn_canvas *c, cnn_rgb col);
/* Pixels round(x)..round(x)+round(w)-1 by round(y)..round(y)+round(h)-1, blended with alpha. */
void cnn_canvas_fill_rect(cnn_canvas *c, double x, double y, double w, double h, cnn_rgb col, float alpha);
/* The border of the same rectangle, `lw` pixels thick, inside it. */
void cnn_canvas_rect(cnn_canvas *c, double x, double y, double w, double h, double lw, cnn_rgb col, float alpha);

/* A segment: width <= 1 and !aa is a plain Bresenham line; otherwise an anti-aliased stroke of
 * the given width with round caps. */
void cnn_canvas_line(cnn_canvas *c, double x0, double y0, double x1, double y1, cnn_rgb col, double width, int aa,
                     float alpha);
/* The same segment drawn in dashes: `on` pixels drawn, `off` skipped, starting at (x0, y0). */
void cnn_canvas_dashed_line(cnn_canvas *c, double x0, double y0, double x1, double y1, cnn_rgb col, double width,
                            int aa, float alpha, double on, double off);
/* A connected line through n points; a non-finite coordinate breaks it. Anti-aliased strokes are
 * combined by maximum coverage, so joints are not blended twice. Points with no finite
 * neighbour are drawn as dots of the stroke's width. Returns 0, or -1 (error set) when the
 * coverage buffer cannot be allocated. */
int cnn_canvas_polyline(cnn_canvas *c, const double *xs, const double *ys, int64_t n, cnn_rgb col, double width, int aa,
                        float alpha);
/* A disc (fill) or a ring of width lw, anti-aliased. */
void cnn_canvas_circle(cnn_canvas *c, double x, double y, double r, cnn_rgb col, int fill, double lw, float alpha);
/* A polygon (even-odd rule), anti-aliased by 4x4 supersampling over its bounding box. */
void cnn_canvas_polygon(cnn_canvas *c, const double *xs, const double *ys, int n, cnn_rgb col, float alpha);

typedef enum cnn_marker {
  CNN_MARKER_DOT,      /* filled disc */
  CNN_MARKER_CIRCLE,   /* ring */
  CNN_MARKER_SQUARE,   /* filled square */
  CNN_MARKER_DIAMOND,  /* filled diamond */
  CNN_MARKER_TRIANGLE, /* filled, point up */
  CNN_MARKER_STAR,     /* filled five-pointed star */
  CNN_MARKER_CROSS,    /* x */
  CNN_MARKER_PLUS,     /* + */
  CNN_MARKER_COUNT
} cnn_marker;

/* Marker name ("dot", "circle", ...) to kind, -1 when unknown; and back. */
int cnn_marker_from_name(const char *name);
const char *cnn_marker_name(int kind);
/* A marker centred on (x, y) spanning about `size` pixels; filled shapes get a one-pixel edge in
 * `edge` when edge_alpha > 0. */
void cnn_canvas_marker(cnn_canvas *c, double x, double y, int kind, double size, cnn_rgb col, cnn_rgb edge,
                       float edge_alpha);

/* Pixels within the rectangle (clipped to the canvas) whose largest channel difference from
 * `bg` exceeds tol: the ink that a box placed there would cover. */
int64_t cnn_canvas_count_ink(const cnn_canvas *c, double x, double y, double w, double h, cnn_rgb bg, float tol);

/* The bitmap font (font5x7.c): 5x7 capitals in a 5x9 glyph box (rows 7-8 hold descenders),
 * advanced by 6 pixels, lines 11 pixels apart, at integer scale 1..8. */
#define CNN_FONT_W 5
#define CNN_FONT_H 9
#define CNN_FONT_ASCENT 7
#define CNN_FONT_ADVANCE 6
#define CNN_FONT_LINE 11
#define CNN_FONT_MAX_SCALE 8

/* 1 when glyph pixel (gx, gy) of character ch is set; codes outside 32..126 draw as '?'. */
int cnn_font_pixel(int ch, int gx, int gy);
/* Size in pixels of the box of a text (lines split at '\n') at the given scale (clamped to
 * 1..CNN_FONT_MAX_SCALE), unrotated. A line's box is CNN_FONT_H * scale tall. */
void cnn_font_text_size(const char *s, int scale, int *w, int *h);
/* Draws text with the top-left corner of its box at (x, y). rotate = 90 turns it a quarter turn
 * counter-clockwise (it reads bottom to top; (x, y) is then the top-left of the turned box,
 * h wide and w tall). bold draws each glyph twice, one pixel apart. */
void cnn_canvas_text(cnn_canvas *c, int x, int y, const char *s, int scale, cnn_rgb col, int rotate, int bold);

#endif
