/* Drawing for charts, with cairo: a canvas of W x H pixels on a white background whose drawing is
 * recorded as vector operations, so that one drawing is written as PNG (rendered anti-aliased),
 * SVG or PDF, and read back as pixels. Coordinates are pixels, x right and y down, pixel (x, y)
 * centred on the integer point (x, y): a 1-pixel line at y = 5 fills row 5 and no other. Text is
 * DejaVu Sans (Debian's fonts-dejavu-core), found through fontconfig and loaded with FreeType;
 * every text measurement comes from its metrics. Non-finite coordinates draw nothing, and any
 * finite ones are safe: geometry far outside the canvas is cut before cairo sees it. */
#ifndef CNN_DRAW_H
#define CNN_DRAW_H

#include <stdbool.h>
#include <stdint.h>

#include "cnn/tensor.h"

typedef struct cnn_draw cnn_draw;

/* How a primitive is painted. */
typedef struct cnn_pen {
  float r, g, b;            /* colour, components in [0, 1] */
  float alpha;              /* opacity in [0, 1] */
  double width;             /* stroke width in pixels */
  double dash_on, dash_off; /* dash and gap lengths in pixels; dash_off = 0 is a solid stroke */
  bool aa;                  /* anti-aliased edges; false paints whole pixels (axis and grid lines) */
} cnn_pen;

#define CNN_DRAW_MAX_SIZE 16384 /* pixels on a side */
#define CNN_DRAW_TEXT_PX 12.0   /* the text size (em height, pixels) at scale 1 */

/* A white canvas of w x h pixels. Returns a new canvas (free with cnn_draw_free), or NULL with
 * the error set: a size outside 1..CNN_DRAW_MAX_SIZE, no DejaVu Sans font, out of memory. */
cnn_draw *cnn_draw_new(int w, int h);
void cnn_draw_free(cnn_draw *d);
void cnn_draw_size(const cnn_draw *d, int *w, int *h);

/* Limits the primitives that follow to pixels x..x+w-1, y..y+h-1 (rounded), within any clip
 * already set; unclip lifts every clip. */
void cnn_draw_clip(cnn_draw *d, double x, double y, double w, double h);
void cnn_draw_unclip(cnn_draw *d);

/* The whole clip area in the pen's colour. */
void cnn_draw_fill(cnn_draw *d, const cnn_pen *p);
/* Pixels round(x)..round(x)+round(w)-1 by round(y)..round(y)+round(h)-1: filled, or its border
 * p->width pixels thick inside it. */
void cnn_draw_rect(cnn_draw *d, double x, double y, double w, double h, bool fill, const cnn_pen *p);
/* A segment: round ends when anti-aliased; without anti-aliasing square ends, so that both end
 * pixels are painted (0, 5)-(9, 5) at width 1 is exactly pixels 0..9 of row 5), dashes included. */
void cnn_draw_line(cnn_draw *d, double x0, double y0, double x1, double y1, const cnn_pen *p);
/* A connected line through n points, stroked as one shape (overlaps are painted once); a
 * non-finite coordinate breaks it, and a point with no finite neighbour is a dot as wide as
 * the stroke. Consecutive points inside one pixel column are stroked through their first, lowest,
 * highest and last: a series of millions of points draws in about a second. */
void cnn_draw_polyline(cnn_draw *d, const double *xs, const double *ys, int64_t n, const cnn_pen *p);
/* A disc, or a ring p->width wide centred on radius r (r <= 1e5). */
void cnn_draw_circle(cnn_draw *d, double x, double y, double r, bool fill, const cnn_pen *p);

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

/* Marker name ("dot", "circle", ...) to kind, -1 when unknown. */
int cnn_marker_from_name(const char *name);
/* A marker centred on (x, y) spanning about `size` pixels (<= 4096) in p's colour; filled shapes
 * get a one-pixel outline in edge's colour when edge is not NULL. */
void cnn_draw_marker(cnn_draw *d, double x, double y, int kind, double size, const cnn_pen *p, const cnn_pen *edge);

/* Where a text's box goes relative to its anchor point. */
typedef enum cnn_valign { CNN_VALIGN_TOP, CNN_VALIGN_MIDDLE, CNN_VALIGN_BOTTOM, CNN_VALIGN_BASELINE } cnn_valign;

/* Font metrics of DejaVu Sans (bold or not) at px pixels: ascent and descent (positive, from
 * the baseline), whose sum is the height of a line. 0, or -1 with the error set (no font). */
int cnn_draw_font_metrics(double px, bool bold, double *ascent, double *descent);
/* The box of text s at px pixels, unturned: w the widest line's advance, h the number of lines
 * ('\n' separates them) times the line height. Invalid UTF-8 is measured (and drawn) with each
 * bad byte as '?'. 0, or -1 with the error set (no font, out of memory). */
int cnn_draw_text_size(const char *s, double px, bool bold, double *w, double *h);
/* Draws s at px pixels. Its box as it stands on the canvas (turned a quarter turn
 * counter-clockwise when rotate, the text reading bottom to top) is placed so that the point at
 * fraction fx of its width (0 left, 0.5 centre, 1 right) and at valign of its height lies at
 * (x, y); CNN_VALIGN_BASELINE puts the first baseline there (turned: the vertical baseline at x,
 * and fx of the box's height at y). The box's top-left corner and size go to box[0..3] when box
 * is not NULL. Lines are left-aligned. 0, or -1 with the error set (no font, out of memory). */
int cnn_draw_text(cnn_draw *d, double x, double y, const char *s, double px, bool bold, bool rotate, double fx,
                  cnn_valign valign, const cnn_pen *p, double box[4]);

/* Pixels of the rectangle (as cnn_draw_rect rounds it, cut to the canvas) whose largest channel
 * difference from bg exceeds tol: the ink a box placed there would cover. -1 (error set) when
 * the drawing cannot be rendered. */
int64_t cnn_draw_count_ink(cnn_draw *d, double x, double y, double w, double h, const float bg[3], float tol);
/* Pixel (x, y) as rendered, rgb in [0, 1] (8 bits a channel); black outside the canvas. 0, or
 * -1 with the error set. */
int cnn_draw_pixel(cnn_draw *d, int x, int y, float rgb[3]);
/* The drawing as a new (3, H, W) float32 tensor with values k / 255; NULL with the error set. */
cnn_tensor *cnn_draw_tensor(cnn_draw *d);
/* Writes the drawing to path as PNG, SVG or PDF, chosen by the extension (.png, .svg, .pdf, any
 * case); the file appears complete or not at all. 0, or -1 with the error set. */
int cnn_draw_save(cnn_draw *d, const char *path);

#endif
