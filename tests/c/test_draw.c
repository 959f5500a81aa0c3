/* draw.c (cairo): primitives checked pixel by pixel where their geometry is exact (crisp lines
 * and dashes, rectangles and borders, clips), shapes by their symmetry and coverage, text by
 * DejaVu Sans' advance widths (font units from its hmtx table, 2048 an em), geometry far outside
 * or non-finite drawing only what is visible, and the three file formats by their bytes. */
#include "check.h"
#include "cnn/error.h"
#include "plot/draw.h"
#include "tmpfiles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cnn_pen BLACK = {0, 0, 0, 1, 1, 0, 0, false}, BLACK_AA = {0, 0, 0, 1, 1, 0, 0, true};

/* Rows of the canvas as strings: '#' dark (red < 0.5), '.' otherwise; compared to `want`. */
static int matches(cnn_draw *d, const char *const *want) {
  int w, h, ok = 1;
  cnn_draw_size(d, &w, &h);
  float p[3];
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      cnn_draw_pixel(d, x, y, p);
      if ((p[0] < 0.5f ? '#' : '.') != want[y][x]) ok = 0;
    }
  if (!ok) {
    fprintf(stderr, "canvas:\n");
    for (int y = 0; y < h; y++) {
      for (int x = 0; x < w; x++) {
        cnn_draw_pixel(d, x, y, p);
        fputc(p[0] < 0.5f ? '#' : '.', stderr);
      }
      fprintf(stderr, "   %s\n", want[y]);
    }
  }
  return ok;
}

static float red(cnn_draw *d, int x, int y) {
  float p[3];
  cnn_draw_pixel(d, x, y, p);
  return p[0];
}

static void test_new(void) {
  cnn_error_clear();
  CHECK(!cnn_draw_new(0, 10) && strstr(cnn_error_get(), "canvas size 0x10 out of range"));
  CHECK(!cnn_draw_new(10, CNN_DRAW_MAX_SIZE + 1));
  cnn_draw *d = cnn_draw_new(3, 2);
  int w, h;
  cnn_draw_size(d, &w, &h);
  CHECK(w == 3 && h == 2);
  cnn_tensor *t = cnn_draw_tensor(d);
  CHECK(t && t->ndim == 3 && t->size[0] == 3 && t->size[1] == 2 && t->size[2] == 3);
  int white = 1;
  for (int i = 0; t && i < 18; i++) white &= cnn_tensor_f32(t)[i] == 1.0f;
  CHECK(white);
  cnn_tensor_release(t);
  cnn_draw_free(d);
}

static void test_lines_and_rects(void) {
  cnn_draw *d = cnn_draw_new(12, 7);
  /* crisp segments include both end pixels; a dash of 2 on, 1 off starts at the first pixel */
  cnn_draw_line(d, 1, 0, 10, 0, &BLACK);
  cnn_pen dash = BLACK;
  dash.dash_on = 2, dash.dash_off = 1;
  cnn_draw_line(d, 0, 2, 11, 2, &dash);
  cnn_draw_line(d, 11, 3, 11, 6, &BLACK);
  /* a 2-pixel border inside pixels 1..6 x 3..6, and a filled 2x1 rectangle at x 8.4 (rounds to 8) */
  cnn_pen thick = BLACK;
  thick.width = 2;
  cnn_draw_rect(d, 1, 3, 6, 4, false, &thick);
  cnn_draw_rect(d, 8.4, 4, 2, 1, true, &BLACK);
  static const char *const want[7] = {
      ".##########.", "............", "##.##.##.##.", ".######....#", ".######.##.#", ".######....#", ".######....#",
  };
  CHECK(matches(d, want));
  /* alpha: half black over white, once */
  cnn_pen half = BLACK;
  half.alpha = 0.5f;
  cnn_draw_rect(d, 0, 1, 1, 1, true, &half);
  CHECK(fabsf(red(d, 0, 1) - 128.0f / 255.0f) < 1.5f / 255.0f);
  /* a clip lets paint through only inside it, and unclip lifts it */
  cnn_pen green = {0, 1, 0, 1, 1, 0, 0, false};
  cnn_draw_clip(d, 2, 1, 3, 1);
  cnn_draw_fill(d, &green);
  cnn_draw_unclip(d);
  float bg[3] = {0, 1, 0};
  CHECK(cnn_draw_count_ink(d, 0, 0, 12, 7, bg, 0.01f) == 12 * 7 - 3);
  cnn_draw_line(d, 5, 1, 6, 1, &green);
  CHECK(cnn_draw_count_ink(d, 0, 0, 12, 7, bg, 0.01f) == 12 * 7 - 5); /* pixels 5 and 6 */
  cnn_draw_free(d);
}

static void test_shapes(void) {
  cnn_draw *d = cnn_draw_new(41, 41);
  /* a filled marker is symmetric about its centre column; a dot of size 9 covers its centre and
   * pixels 4 away across it, not 5 */
  cnn_draw_marker(d, 20, 20, CNN_MARKER_DOT, 9, &BLACK_AA, NULL);
  CHECK(red(d, 20, 20) == 0 && red(d, 17, 20) == 0 && red(d, 20, 23) == 0);
  CHECK(red(d, 25, 20) == 1 && red(d, 20, 15) == 1);
  float bg[3] = {1, 1, 1};
  int64_t dot = cnn_draw_count_ink(d, 0, 0, 41, 41, bg, 0.5f);
  CHECK(dot > 50 && dot < 81); /* area pi 4.5^2 = 63.6 */
  for (int kind = 0; kind < CNN_MARKER_COUNT; kind++) {
    cnn_draw_fill(d, &(cnn_pen){1, 1, 1, 1, 1, 0, 0, false});
    cnn_draw_marker(d, 20, 20, kind, 15, &BLACK_AA, kind == CNN_MARKER_STAR ? &BLACK_AA : NULL);
    float worst = 0;
    for (int y = 0; y < 41; y++)
      for (int x = 0; x < 20; x++) worst = fmaxf(worst, fabsf(red(d, x, y) - red(d, 40 - x, y)));
    if (worst >= 0.1f) fprintf(stderr, "marker %d: asymmetry %g\n", kind, worst);
    CHECK(worst < 0.1f); /* anti-aliasing is not exactly symmetric; a shape a pixel off would be ~1 */
    CHECK(cnn_draw_count_ink(d, 0, 0, 41, 41, bg, 0.5f) > 10);
  }
  CHECK(cnn_marker_from_name("star") == CNN_MARKER_STAR && cnn_marker_from_name("hexagon") == -1);
  /* a ring leaves its centre white */
  cnn_draw_fill(d, &(cnn_pen){1, 1, 1, 1, 1, 0, 0, false});
  cnn_draw_circle(d, 20, 20, 10, false, &BLACK_AA);
  CHECK(red(d, 20, 20) == 1 && red(d, 30, 20) < 0.5f && red(d, 20, 10) < 0.5f);
  cnn_draw_free(d);
}

static void test_far_and_nonfinite(void) {
  cnn_draw *d = cnn_draw_new(30, 10);
  float bg[3] = {1, 1, 1};
  double big = 1e300;
  cnn_draw_line(d, -big, 4, big, 4, &BLACK);
  CHECK(cnn_draw_count_ink(d, 0, 0, 30, 10, bg, 0.5f) == 30);
  cnn_draw_line(d, 0, NAN, 5, 5, &BLACK);
  cnn_draw_line(d, 0, 0, INFINITY, 0, &BLACK);
  cnn_draw_rect(d, NAN, 0, 4, 4, true, &BLACK);
  cnn_draw_circle(d, 5, INFINITY, 3, true, &BLACK);
  cnn_draw_circle(d, 5, 5, 1e9, true, &BLACK); /* beyond the radius limit: nothing, at once */
  cnn_draw_marker(d, 1e12, 5, CNN_MARKER_STAR, 10, &BLACK, NULL);
  CHECK(cnn_draw_text(d, -1e12, 5, "far", 12, false, false, 0, CNN_VALIGN_TOP, &BLACK, NULL) == 0);
  CHECK(cnn_draw_count_ink(d, 0, 0, 30, 10, bg, 0.5f) == 30);
  /* a polyline through huge values keeps its visible pieces: from (-big, 8) to (15, 8) is row 8
   * up to pixel 15, then up to (15, -1e300) is column 15 from row 8 up (rows 0..8) */
  double xs[] = {-big, 15, 15}, ys[] = {8, 8, -big};
  cnn_draw_polyline(d, xs, ys, 3, &BLACK);
  CHECK(cnn_draw_count_ink(d, 0, 8, 30, 1, bg, 0.5f) == 16);
  CHECK(cnn_draw_count_ink(d, 15, 0, 1, 10, bg, 0.5f) == 9);
  CHECK(cnn_draw_count_ink(d, 16, 5, 14, 3, bg, 0.5f) == 0);
  /* a rectangle reaching far beyond covers the whole canvas */
  cnn_draw_rect(d, -big, -big, 2 * big, 2 * big, true, &BLACK);
  CHECK(cnn_draw_count_ink(d, 0, 0, 30, 10, bg, 0.5f) == 300);
  cnn_draw_free(d);
}

/* A long noisy series (2,000 points a pixel column, a loss per step) is stroked through the first,
 * lowest, highest and last point of each column: each column inked from its lowest point to its
 * highest, and nowhere past its neighbours' extremes. (Unthinned, cairo took ~25 s for 100,000.) */
static void test_dense_polyline(void) {
  enum { W = 100, H = 60, PER = 2000, N = W * PER };
  double *xs = malloc(sizeof(double) * N), *ys = malloc(sizeof(double) * N);
  CHECK(xs && ys);
  int amp[W];
  unsigned r = 12345;
  for (int c = 0; c < W; c++) {
    amp[c] = 5 + c % 20;
    for (int k = 0; k < PER; k++) {
      r = r * 1103515245u + 12345u;
      double u = (double)(r >> 8) / (1 << 24); /* [0, 1) */
      xs[c * PER + k] = c + (k + 0.5) / PER;
      ys[c * PER + k] = k == PER / 3 ? 30 - amp[c] : k == PER / 2 ? 30 + amp[c] : 30 + amp[c] * (2 * u - 1);
    }
  }
  cnn_draw *d = cnn_draw_new(W, H);
  cnn_draw_polyline(d, xs, ys, N, &BLACK);
  float bg[3] = {1, 1, 1};
  for (int c = 1; c < W - 1; c++) {
    int reach = amp[c];
    if (amp[c - 1] > reach) reach = amp[c - 1];
    if (amp[c + 1] > reach) reach = amp[c + 1];
    CHECK(cnn_draw_count_ink(d, c, 30 - amp[c] + 1, 1, 2 * amp[c] - 1, bg, 0.5f) == 2 * amp[c] - 1);
    CHECK(cnn_draw_count_ink(d, c, 0, 1, 30 - reach - 1, bg, 0.5f) == 0);
    CHECK(cnn_draw_count_ink(d, c, 30 + reach + 2, 1, H - (30 + reach + 2), bg, 0.5f) == 0);
  }
  cnn_draw_free(d);
  free(xs);
  free(ys);
}

static void test_text(void) {
  double w, h, asc, desc;
  /* "Ab" at 24 pixels: advances 1401 + 1300 units; a line is ascent 1901 + descent 483 */
  CHECK(cnn_draw_text_size("Ab", 24, false, &w, &h) == 0);
  CHECK(fabs(w - 24.0 * (1401 + 1300) / 2048) < 1e-6 && fabs(h - 24.0 * (1901 + 483) / 2048) < 1e-6);
  CHECK(cnn_draw_font_metrics(24, true, &asc, &desc) == 0);
  CHECK(fabs(asc - 24.0 * 1901 / 2048) < 1e-6 && fabs(desc - 24.0 * 483 / 2048) < 1e-6);
  /* bold "Ab": 1585 + 1466 */
  CHECK(cnn_draw_text_size("Ab", 24, true, &w, &h) == 0 && fabs(w - 24.0 * (1585 + 1466) / 2048) < 1e-6);
  /* two lines: the wider one's advance, two line heights; an invalid byte is '?' (1087) */
  CHECK(cnn_draw_text_size("A\nbb", 12, false, &w, &h) == 0 && fabs(w - 12.0 * 2600 / 2048) < 1e-6);
  CHECK(fabs(h - 2 * 12.0 * 2384 / 2048) < 1e-6);
  CHECK(cnn_draw_text_size("\xc3", 12, false, &w, &h) == 0 && fabs(w - 12.0 * 1087 / 2048) < 1e-6);
  /* drawn: all the ink inside the box it reports; anti-aliased edges */
  cnn_draw *d = cnn_draw_new(60, 40);
  double box[4];
  CHECK(cnn_draw_text(d, 30, 20, "Ab", 24, false, false, 0.5, CNN_VALIGN_MIDDLE, &BLACK_AA, box) == 0);
  CHECK(fabs(box[0] - (30 - 24.0 * 2701 / 4096)) < 1e-6 && fabs(box[3] - 24.0 * 2384 / 2048) < 1e-6);
  float bg[3] = {1, 1, 1};
  int64_t ink = cnn_draw_count_ink(d, 0, 0, 60, 40, bg, 0.05f);
  CHECK(ink > 40);
  CHECK(cnn_draw_count_ink(d, floor(box[0]), floor(box[1]), ceil(box[2]) + 2, ceil(box[3]) + 2, bg, 0.05f) == ink);
  CHECK(ink - cnn_draw_count_ink(d, 0, 0, 60, 40, bg, 0.95f) > 10); /* grey pixels */
  cnn_draw_free(d);
}

static int starts(const char *path, const char *magic) {
  FILE *f = fopen(path, "rb");
  char b[16] = {0};
  size_t n = f ? fread(b, 1, sizeof b - 1, f) : 0;
  if (f) fclose(f);
  return n >= strlen(magic) && memcmp(b, magic, strlen(magic)) == 0;
}

static void test_save(void) {
  cnn_draw *d = cnn_draw_new(20, 10);
  cnn_draw_line(d, 0, 5, 19, 5, &BLACK);
  CHECK(cnn_draw_text(d, 1, 1, "x", 12, false, false, 0, CNN_VALIGN_TOP, &BLACK_AA, NULL) == 0);
  CHECK(cnn_draw_save(d, tmp_path("a.png")) == 0 && starts(tmp_path("a.png"), "\x89PNG\r\n\x1a\n"));
  CHECK(cnn_draw_save(d, tmp_path("a.SVG")) == 0 && starts(tmp_path("a.SVG"), "<?xml"));
  CHECK(cnn_draw_save(d, tmp_path("a.pdf")) == 0 && starts(tmp_path("a.pdf"), "%PDF-"));
  cnn_error_clear();
  CHECK(cnn_draw_save(d, tmp_path("a.jpg")) == -1 && strstr(cnn_error_get(), "a.jpg: unknown image type"));
  CHECK(cnn_draw_save(d, ".png") == -1); /* an extension alone names no file */
  CHECK(cnn_draw_save(d, "/nonexistent-dir/x.pdf") == -1 && strstr(cnn_error_get(), "/nonexistent-dir/x.pdf"));
  cnn_draw_free(d);
}

int main(void) {
  if (tmpfiles_init("cnn_test_draw") != 0) return 2;
  test_new();
  test_lines_and_rects();
  test_shapes();
  test_far_and_nonfinite();
  test_dense_polyline();
  test_text();
  test_save();
  tmpfiles_cleanup();
  return check_summary("test_draw");
}
