/* canvas.c and font5x7.c: primitives checked pixel by pixel against values worked out by hand
 * (Bresenham rows, coverage at known distances, glyph bitmaps copied from the font's design),
 * and clipping: drawing into a view framed by a sentinel border with huge, infinite and NaN
 * coordinates must leave the border untouched (and ASan sees no access outside the storage). */
#include "check.h"
#include "cnn/canvas.h"
#include "cnn/error.h"
#include "cnn/tensor.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const cnn_rgb WHITE = {1, 1, 1}, BLACK = {0, 0, 0}, RED = {1, 0, 0};

/* A white (3, h, w) canvas; *t receives the tensor (release it). */
static cnn_canvas blank(int w, int h, cnn_tensor **t) {
  int64_t size[3] = {3, h, w};
  *t = cnn_tensor_full(CNN_FLOAT32, 3, size, 1.0);
  cnn_canvas c;
  if (cnn_canvas_init(&c, *t) != 0) fprintf(stderr, "init: %s\n", cnn_error_get());
  return c;
}

static float red(const cnn_canvas *c, int x, int y) { return cnn_canvas_get(c, x, y).r; }

static int near(double a, double b) { return fabs(a - b) < 1e-5; }

/* Rows of the canvas as strings: '#' black (r < 0.5), '.' otherwise; compared to `want`. */
static int matches(const cnn_canvas *c, const char *const *want) {
  int ok = 1;
  for (int y = 0; y < c->h; y++)
    for (int x = 0; x < c->w; x++) {
      char got = red(c, x, y) < 0.5f ? '#' : '.';
      if (got != want[y][x]) ok = 0;
    }
  if (!ok) {
    fprintf(stderr, "canvas:\n");
    for (int y = 0; y < c->h; y++) {
      for (int x = 0; x < c->w; x++) fputc(red(c, x, y) < 0.5f ? '#' : '.', stderr);
      fprintf(stderr, "   %s\n", want[y]);
    }
  }
  return ok;
}

static void test_init_errors(void) {
  int64_t s2[2] = {4, 4}, s3[3] = {4, 4, 4}, s3i[3] = {3, 4, 4};
  cnn_tensor *a = cnn_tensor_zeros(CNN_FLOAT32, 2, s2), *b = cnn_tensor_zeros(CNN_FLOAT32, 3, s3);
  cnn_tensor *i = cnn_tensor_zeros(CNN_INT64, 3, s3i);
  cnn_canvas c;
  CHECK(cnn_canvas_init(&c, a) == -1 && strstr(cnn_error_get(), "(3, H, W)"));
  CHECK(cnn_canvas_init(&c, b) == -1 && strstr(cnn_error_get(), "first size other than 3"));
  CHECK(cnn_canvas_init(&c, i) == -1 && strstr(cnn_error_get(), "float32"));
  cnn_tensor_release(a);
  cnn_tensor_release(b);
  cnn_tensor_release(i);
}

static void test_plain_lines(void) {
  cnn_tensor *t;
  cnn_canvas c = blank(20, 10, &t);
  cnn_canvas_line(&c, 2, 5, 12, 5, BLACK, 1, 0, 1);
  int ok = 1;
  for (int y = 0; y < 10; y++)
    for (int x = 0; x < 20; x++) ok &= red(&c, x, y) == ((y == 5 && x >= 2 && x <= 12) ? 0.0f : 1.0f);
  CHECK(ok);
  /* a Bresenham diagonal and a slope-1/2 line, worked out by hand */
  cnn_canvas_fill(&c, WHITE);
  cnn_canvas_line(&c, 0, 0, 3, 3, BLACK, 1, 0, 1);
  cnn_canvas_line(&c, 6, 0, 10, 2, BLACK, 1, 0, 1);
  static const char *const want[10] = {"#.....#.............", ".#.....##...........", "..#......##.........",
                                       "...#................", "....................", "....................",
                                       "....................", "....................", "....................",
                                       "...................."};
  CHECK(matches(&c, want));
  /* colour channels and alpha: red at half strength over white = (1, 0.5, 0.5) */
  cnn_canvas_fill(&c, WHITE);
  cnn_canvas_line(&c, 0, 9, 19, 9, RED, 1, 0, 0.5f);
  cnn_rgb p = cnn_canvas_get(&c, 7, 9);
  CHECK(p.r == 1.0f && near(p.g, 0.5) && near(p.b, 0.5));
  cnn_tensor_release(t);
}

static void test_aa_lines(void) {
  cnn_tensor *t;
  cnn_canvas c = blank(20, 12, &t);
  /* width 1 on pixel centres: coverage 1 on the row, 0 one pixel away (distance 1) */
  cnn_canvas_line(&c, 3, 5, 15, 5, BLACK, 1, 1, 1);
  CHECK(red(&c, 9, 5) == 0.0f && red(&c, 9, 4) == 1.0f && red(&c, 9, 6) == 1.0f);
  /* round cap: pixel (16, 5) is at distance 1 from the end -> untouched; (2, 5) likewise */
  CHECK(red(&c, 16, 5) == 1.0f && red(&c, 2, 5) == 1.0f);
  /* width 2 between rows 8 and 9 (y = 8.5): both rows covered, rows 7 and 10 at distance 1.5 -> 0 */
  cnn_canvas_line(&c, 3, 8.5, 15, 8.5, BLACK, 2, 1, 1);
  CHECK(red(&c, 9, 8) == 0.0f && red(&c, 9, 9) == 0.0f && red(&c, 9, 7) == 1.0f && red(&c, 9, 10) == 1.0f);
  /* width 1 at y = 2.5: rows 2 and 3 at distance 0.5 -> coverage 0.5 each */
  cnn_canvas_line(&c, 3, 2.5, 15, 2.5, BLACK, 1, 1, 1);
  CHECK(near(red(&c, 9, 2), 0.5) && near(red(&c, 9, 3), 0.5));
  cnn_tensor_release(t);
}

static void test_thick_plain_line(void) {
  cnn_tensor *t;
  cnn_canvas c = blank(12, 8, &t);
  /* plain width 3 at y = 3: pixels with coverage >= 0.5 (distance <= 1.5) fully set, rows 2..4 */
  cnn_canvas_line(&c, 2, 3, 9, 3, BLACK, 3, 0, 1);
  int ok = 1;
  for (int x = 2; x <= 9; x++) ok &= red(&c, x, 2) == 0 && red(&c, x, 3) == 0 && red(&c, x, 4) == 0;
  CHECK(ok);
  CHECK(red(&c, 5, 1) == 1.0f && red(&c, 5, 5) == 1.0f);
  cnn_tensor_release(t);
}

static void test_dashed(void) {
  cnn_tensor *t;
  cnn_canvas c = blank(20, 3, &t);
  cnn_canvas_dashed_line(&c, 0, 1, 19, 1, BLACK, 1, 0, 1, 3, 2);
  static const char *const want[3] = {"....................", "###..###..###..###..", "...................."};
  CHECK(matches(&c, want));
  /* the phase counts from the given start even when it lies far off the canvas:
   * start at x = -1e6 (a multiple of the period 5), so the pattern is unchanged */
  cnn_canvas_fill(&c, WHITE);
  cnn_canvas_dashed_line(&c, -1e6, 1, 19, 1, BLACK, 1, 0, 1, 3, 2);
  CHECK(matches(&c, want));
  /* and a dashed line across +-1e300 finishes (no per-dash walk from the far end) */
  cnn_canvas_dashed_line(&c, -1e300, 0, 1e300, 0, BLACK, 1, 0, 1, 3, 2);
  cnn_tensor_release(t);
}

static void test_polyline(void) {
  cnn_tensor *t;
  cnn_canvas c = blank(12, 10, &t);
  double xs[6] = {2, 10, NAN, 2, 10, 6}, ys[6] = {2, 2, 0, 8, 8, INFINITY};
  CHECK(cnn_canvas_polyline(&c, xs, ys, 6, BLACK, 1, 0, 1) == 0);
  static const char *const want[10] = {"............", "............", "..#########.", "............", "............",
                                       "............", "............", "............", "..#########.", "............"};
  CHECK(matches(&c, want));
  /* coverage is max-combined: a path doubling back over itself at alpha 0.5 is 0.5, not 0.25 */
  cnn_canvas_fill(&c, WHITE);
  double bx[3] = {1, 10, 1}, by[3] = {5, 5, 5};
  cnn_canvas_polyline(&c, bx, by, 3, BLACK, 1, 1, 0.5f);
  CHECK(near(red(&c, 5, 5), 0.5));
  /* a lone point (no finite neighbour) becomes a dot */
  cnn_canvas_fill(&c, WHITE);
  double lx[3] = {NAN, 6, NAN}, ly[3] = {1, 4, 1};
  cnn_canvas_polyline(&c, lx, ly, 3, BLACK, 2, 1, 1);
  CHECK(red(&c, 6, 4) == 0.0f && red(&c, 6, 8) == 1.0f);
  cnn_tensor_release(t);
}

static void test_rects(void) {
  cnn_tensor *t;
  cnn_canvas c = blank(10, 8, &t);
  cnn_canvas_fill_rect(&c, 2, 3, 4, 2, BLACK, 1);
  cnn_canvas_rect(&c, 7, 1, 3, 6, 1, BLACK, 1);
  static const char *const want[8] = {"..........", ".......###", ".......#.#", "..####.#.#",
                                      "..####.#.#", ".......#.#", ".......###", ".........."};
  CHECK(matches(&c, want));
  CHECK(cnn_canvas_count_ink(&c, 0, 0, 10, 8, WHITE, 0.5f) == 8 + 14);
  CHECK(cnn_canvas_count_ink(&c, 2, 3, 2, 1, WHITE, 0.5f) == 2);
  /* clip rectangle: a fill limited to columns 1..3, rows 0..1 */
  cnn_canvas_fill(&c, WHITE);
  cnn_canvas_clip(&c, 1, 0, 3, 2);
  cnn_canvas_fill(&c, BLACK);
  cnn_canvas_unclip(&c);
  CHECK(cnn_canvas_count_ink(&c, 0, 0, 10, 8, WHITE, 0.5f) == 6 && red(&c, 1, 0) == 0 && red(&c, 4, 0) == 1);
  cnn_tensor_release(t);
}

static void test_circles_polygons_markers(void) {
  cnn_tensor *t;
  cnn_canvas c = blank(24, 24, &t);
  cnn_canvas_circle(&c, 10, 10, 3, BLACK, 1, 0, 1);
  /* coverage r + 0.5 - d: centre 1, (13, 10) at d = 3 -> 0.5, (15, 10) at d = 5 -> 0 */
  CHECK(red(&c, 10, 10) == 0.0f && near(red(&c, 13, 10), 0.5) && red(&c, 15, 10) == 1.0f);
  cnn_canvas_fill(&c, WHITE);
  /* a square with edges on x = 2, 8: 4x4 samples at +-0.125, +-0.375 -> centres 3..7 fully in,
   * pixel 2 and 8 half in, pixel 1 out */
  double px[4] = {2, 8, 8, 2}, py[4] = {2, 2, 8, 8};
  cnn_canvas_polygon(&c, px, py, 4, BLACK, 1);
  CHECK(red(&c, 5, 5) == 0.0f && near(red(&c, 2, 5), 0.5) && red(&c, 1, 5) == 1.0f && near(red(&c, 2, 2), 0.75));
  /* every marker kind leaves ink near its centre; the circle's centre stays empty */
  for (int k = 0; k < CNN_MARKER_COUNT; k++) {
    cnn_canvas_fill(&c, WHITE);
    cnn_canvas_marker(&c, 12, 12, k, 11, BLACK, RED, 1);
    int64_t ink = cnn_canvas_count_ink(&c, 2, 2, 21, 21, WHITE, 0.2f);
    CHECK(ink > 10);
    CHECK(cnn_canvas_count_ink(&c, 0, 0, 24, 24, WHITE, 0.2f) == ink); /* nothing strays */
    if (k == CNN_MARKER_CIRCLE) CHECK(red(&c, 12, 12) == 1.0f);
    else CHECK(red(&c, 12, 12) < 0.5f);
    CHECK(cnn_marker_from_name(cnn_marker_name(k)) == k);
  }
  CHECK(cnn_marker_from_name("hexagon") == -1);
  cnn_tensor_release(t);
}

static void test_text(void) {
  int w, h;
  cnn_font_text_size("Ab", 1, &w, &h);
  CHECK(w == 11 && h == 9); /* 2 cells of 6, minus the trailing gap; one 9-row line */
  cnn_font_text_size("Ab\nxyz", 2, &w, &h);
  CHECK(w == 34 && h == 40); /* (3 * 6 - 1) * 2; (11 + 9) * 2 */
  cnn_font_text_size("", 1, &w, &h);
  CHECK(w == 0 && h == 9);

  cnn_tensor *t;
  cnn_canvas c = blank(13, 9, &t);
  cnn_canvas_text(&c, 1, 0, "A1", 1, BLACK, 0, 0);
  /* 'A' = .###. #...# #...# ##### #...# #...# #...#, '1' = ..#.. .##.. ..#.. (x4) .###. */
  static const char *const want[9] = {"..###....#...", ".#...#..##...", ".#...#...#...",
                                      ".#####...#...", ".#...#...#...", ".#...#...#...",
                                      ".#...#..###..", ".............", "............."};
  CHECK(matches(&c, want));
  cnn_tensor_release(t);

  /* scale 2: every glyph pixel is a 2x2 block; 'g' descends into rows 7-8 (14-17 at scale 2) */
  c = blank(12, 18, &t);
  cnn_canvas_text(&c, 0, 0, "g", 2, BLACK, 0, 0);
  CHECK(red(&c, 2, 4) == 0 && red(&c, 3, 5) == 0 && red(&c, 0, 4) == 1);    /* ".####" row 2 */
  CHECK(red(&c, 8, 14) == 0 && red(&c, 9, 15) == 0 && red(&c, 0, 14) == 1); /* "....#" row 7 */
  cnn_tensor_release(t);

  /* rotated a quarter turn counter-clockwise: the L's upright becomes the bottom row, its foot
   * the right column pointing up; the turned box is 9 wide and 5 tall */
  c = blank(9, 5, &t);
  cnn_canvas_text(&c, 0, 0, "L", 1, BLACK, 90, 0);
  static const char *const rot[5] = {"......#..", "......#..", "......#..", "......#..", "#######.."};
  CHECK(matches(&c, rot));
  cnn_tensor_release(t);

  /* codes outside 32..126 draw as '?' */
  CHECK(cnn_font_pixel(7, 1, 0) == cnn_font_pixel('?', 1, 0) && cnn_font_pixel(200, 4, 1) == 1);
  CHECK(cnn_font_pixel('A', 5, 0) == 0 && cnn_font_pixel('A', -1, 0) == 0 && cnn_font_pixel('A', 0, 9) == 0);
}

/* A view of the inner 20 x 30 pixels of a 30 x 40 tensor of 0.5: drawing anything into the view
 * must leave the 0.5 border alone. */
static void test_clipping(void) {
  int64_t size[3] = {3, 30, 40};
  cnn_tensor *big = cnn_tensor_full(CNN_FLOAT32, 3, size, 0.5);
  cnn_tensor *rows = cnn_tensor_narrow(big, 1, 5, 20);
  cnn_tensor *view = cnn_tensor_narrow(rows, 2, 5, 30);
  cnn_canvas c;
  CHECK(cnn_canvas_init(&c, view) == 0 && c.w == 30 && c.h == 20);
  const double bad[] = {-1e300, 1e300, -DBL_MAX, DBL_MAX, INFINITY, -INFINITY, NAN, -3, 35, 1e9, -1e9, 2.5};
  const int nb = (int)(sizeof bad / sizeof bad[0]);
  for (int i = 0; i < nb; i++)
    for (int j = 0; j < nb; j++) {
      double a = bad[i], b = bad[j];
      cnn_canvas_line(&c, a, b, b, a, BLACK, 1, 0, 1);
      cnn_canvas_line(&c, a, 3, b, 7, BLACK, 2.5, 1, 1);
      cnn_canvas_line(&c, a, b, 10, 10, BLACK, 4, 0, 1);
      cnn_canvas_dashed_line(&c, a, b, -b, a, BLACK, 1, 1, 1, 2, 2);
      cnn_canvas_fill_rect(&c, a, b, a, b, BLACK, 1);
      cnn_canvas_fill_rect(&c, -5, -5, b, a, BLACK, 1);
      cnn_canvas_rect(&c, a, 2, b, 40, 3, BLACK, 1);
      cnn_canvas_circle(&c, a, b, 5, BLACK, 1, 0, 1);
      cnn_canvas_circle(&c, 10, 10, a, BLACK, j % 2, 2, 1);
      cnn_canvas_marker(&c, a, b, i % CNN_MARKER_COUNT, 9, BLACK, RED, 1);
      cnn_canvas_marker(&c, 29, 0, j % CNN_MARKER_COUNT, b > 0 ? b : 30, BLACK, RED, 1);
      double px[4] = {a, b, 0, 29}, py[4] = {0, a, b, 19};
      cnn_canvas_polygon(&c, px, py, 4, BLACK, 1);
      cnn_canvas_polyline(&c, px, py, 4, BLACK, 3, 1, 1);
      cnn_canvas_polyline(&c, px, py, 4, BLACK, 1, 0, 1);
      cnn_canvas_clip(&c, a, b, 10, 10);
      cnn_canvas_fill(&c, RED);
      cnn_canvas_unclip(&c);
      cnn_canvas_text(&c, i * 7 - 30, j * 5 - 20, "Hg|", 1 + i % 4, BLACK, (i + j) % 2 ? 90 : 0, j % 2);
    }
  /* the frame around the view got no ink */
  int border_ok = 1;
  float *d = cnn_tensor_f32(big);
  for (int ch = 0; ch < 3; ch++)
    for (int y = 0; y < 30; y++)
      for (int x = 0; x < 40; x++) {
        int inside = y >= 5 && y < 25 && x >= 5 && x < 35;
        if (!inside) border_ok &= d[(ch * 30 + y) * 40 + x] == 0.5f;
      }
  CHECK(border_ok);
  /* a plain line from x = -1e300 to 1e300 covers exactly its row of the view */
  cnn_canvas_fill(&c, WHITE);
  cnn_canvas_line(&c, -1e300, 7, 1e300, 7, BLACK, 1, 0, 1);
  CHECK(cnn_canvas_count_ink(&c, 0, 0, 30, 20, WHITE, 0.5f) == 30);
  CHECK(cnn_canvas_count_ink(&c, 0, 7, 30, 1, WHITE, 0.5f) == 30);
  /* an anti-aliased diagonal from far outside passes through pixel centres (3, 3) and (15, 15) */
  cnn_canvas_line(&c, -1e6, -1e6, 1e6, 1e6, BLACK, 1, 1, 1);
  CHECK(red(&c, 3, 3) == 0.0f && red(&c, 15, 15) == 0.0f && red(&c, 10, 3) == 1.0f);
  cnn_tensor_release(view);
  cnn_tensor_release(rows);
  cnn_tensor_release(big);
}

/* A canvas over a channels-last (H, W, 3) buffer permuted to (3, H, W): writes follow strides. */
static void test_strided(void) {
  int64_t size[3] = {4, 5, 3};
  cnn_tensor *hwc = cnn_tensor_zeros(CNN_FLOAT32, 3, size);
  int perm[3] = {2, 0, 1};
  cnn_tensor *chw = cnn_tensor_permute(hwc, perm);
  cnn_canvas c;
  CHECK(cnn_canvas_init(&c, chw) == 0 && c.w == 5 && c.h == 4);
  cnn_canvas_blend(&c, 3, 2, (cnn_rgb){1, 0.25f, 0.5f}, 1);
  const float *d = cnn_tensor_f32(hwc);
  CHECK(d[(2 * 5 + 3) * 3 + 0] == 1.0f && d[(2 * 5 + 3) * 3 + 1] == 0.25f && d[(2 * 5 + 3) * 3 + 2] == 0.5f);
  float sum = 0;
  for (int i = 0; i < 60; i++) sum += d[i];
  CHECK(sum == 1.75f);
  cnn_tensor_release(chw);
  cnn_tensor_release(hwc);
}

int main(void) {
  test_init_errors();
  test_plain_lines();
  test_aa_lines();
  test_thick_plain_line();
  test_dashed();
  test_polyline();
  test_rects();
  test_circles_polygons_markers();
  test_text();
  test_clipping();
  test_strided();
  return check_summary("test_canvas");
}
