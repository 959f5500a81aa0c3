/* Drawing for Lua (core.canvas.*) over runtime/plot/draw.c (cairo): canvas.new(w, h) makes a white
 * canvas, the primitives draw on it, and canvas:tensor() and canvas:save(path) (PNG, SVG or PDF
 * by the extension) give the result. Colours are {r, g, b} in [0, 1] or "#rrggbb" / "#rgb";
 * coordinates are pixels (x right, y down, pixel centres on integers); every primitive takes a
 * trailing options table, and `clip = {x, y, w, h}` limits any of them. Text sizes are scales of
 * the base size (12 pixels), measured from the font by text_size. */
#include <math.h>
#include <string.h>

#include "cnn/error.h"
#include "lcnn.h"
#include "plot/draw.h"

#define LCNN_CANVAS "cnn.Canvas"

/* The canvas at idx, or a raise naming fn. */
static cnn_draw *check_canvas(lua_State *L, int idx, const char *fn) {
  cnn_draw **box = luaL_testudata(L, idx, LCNN_CANVAS);
  if (!box || !*box)
    lcnn_error(L, fn, "expected a canvas (from canvas.new), got %s",
               lcnn_test(L, idx) ? "a tensor" : luaL_typename(L, idx));
  return *box;
}

static double check_num(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER) lcnn_error(L, fn, "%s must be a number, got %s", what, luaL_typename(L, idx));
  return lua_tonumber(L, idx);
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* A colour: {r, g, b} with components in [0, 1], or "#rrggbb" / "#rgb"; into v[0..2]. */
static void check_color(lua_State *L, int idx, const char *fn, const char *what, float v[3]) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    int ok = s[0] == '#' && (n == 7 || n == 4);
    for (size_t i = 1; ok && i < n; i++) ok = hexval(s[i]) >= 0;
    if (!ok) lcnn_error(L, fn, "%s must be \"#rrggbb\" or {r, g, b}, got \"%s\"", what, s);
    for (int k = 0; k < 3; k++)
      v[k] = n == 7 ? (float)(hexval(s[1 + 2 * k]) * 16 + hexval(s[2 + 2 * k])) / 255.0f
                    : (float)(hexval(s[1 + k]) * 17) / 255.0f;
  } else if (lua_istable(L, idx)) {
    if (luaL_len(L, idx) != 3) lcnn_error(L, fn, "%s must have 3 components {r, g, b}", what);
    for (int k = 0; k < 3; k++) {
      lua_geti(L, idx, k + 1);
      if (lua_type(L, -1) != LUA_TNUMBER) lcnn_error(L, fn, "%s components must be numbers", what);
      double x = lua_tonumber(L, -1);
      lua_pop(L, 1);
      if (!(x >= 0 && x <= 1)) lcnn_error(L, fn, "%s components must be in [0, 1], got %g", what, cnn_error_num(x));
      v[k] = (float)x;
    }
  } else {
    lcnn_error(L, fn, "%s must be \"#rrggbb\" or {r, g, b}, got %s", what, luaL_typename(L, idx));
  }
}

/* The pen from the colour at idx and options width (default 1), aa (true), alpha (1) and dash. */
static cnn_pen check_pen(lua_State *L, int idx, int o, const char *fn) {
  cnn_pen p = {0};
  float c[3];
  check_color(L, idx, fn, "color", c);
  p.r = c[0], p.g = c[1], p.b = c[2];
  double a = lcnn_opt_number(L, o, fn, "alpha", 1);
  if (!(a >= 0 && a <= 1)) lcnn_error(L, fn, "option 'alpha' must be in [0, 1], got %g", cnn_error_num(a));
  p.alpha = (float)a;
  p.width = lcnn_opt_number(L, o, fn, "width", 1);
  if (!(p.width > 0 && p.width <= 1000))
    lcnn_error(L, fn, "option 'width' must be in (0, 1000], got %g", cnn_error_num(p.width));
  p.aa = lcnn_opt_boolean(L, o, fn, "aa", 1);
  if (lua_istable(L, o)) {
    lua_getfield(L, o, "dash");
    if (!lua_isnil(L, -1)) {
      int di = lua_gettop(L);
      if (!lua_istable(L, di) || luaL_len(L, di) != 2) lcnn_error(L, fn, "option 'dash' must be {on, off}");
      lua_geti(L, di, 1);
      p.dash_on = check_num(L, -1, fn, "dash lengths");
      lua_geti(L, di, 2);
      p.dash_off = check_num(L, -1, fn, "dash lengths");
      if (!(p.dash_on > 0 && p.dash_off >= 0 && p.dash_on <= 1e6 && p.dash_off <= 1e6))
        lcnn_error(L, fn, "dash lengths must be on > 0 and off >= 0 pixels, got {%g, %g}", cnn_error_num(p.dash_on),
                   cnn_error_num(p.dash_off));
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  return p;
}

/* Option clip = {x, y, w, h} into r; false when absent. */
static bool opt_clip(lua_State *L, int o, const char *fn, double r[4]) {
  if (!lua_istable(L, o)) return false;
  lua_getfield(L, o, "clip");
  bool has = !lua_isnil(L, -1);
  if (has) {
    int ci = lua_gettop(L);
    if (!lua_istable(L, ci) || luaL_len(L, ci) != 4) lcnn_error(L, fn, "option 'clip' must be {x, y, w, h}");
    for (int k = 0; k < 4; k++) {
      lua_geti(L, ci, k + 1);
      r[k] = check_num(L, -1, fn, "clip entries");
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return has;
}

/* The canvas at argument 1, clipped to the option clip (when given) for the primitive that
 * follows (unclip afterwards). Called after every other option is read: the option lookups may
 * run Lua code, which must not run between taking the canvas pointer and drawing (lcnn.h). */
static cnn_draw *clip_begin(lua_State *L, int o, const char *fn, bool *clipped) {
  double r[4];
  *clipped = opt_clip(L, o, fn, r);
  cnn_draw *d = check_canvas(L, 1, fn);
  if (*clipped) cnn_draw_clip(d, r[0], r[1], r[2], r[3]);
  return d;
}

static void clip_end(cnn_draw *d, bool clipped) {
  if (clipped) cnn_draw_unclip(d);
}

/* A list of numbers (a Lua table) as a double array owned by a userdata left on the stack. */
static double *check_coords(lua_State *L, int idx, const char *fn, const char *what, lua_Integer *n) {
  if (!lua_istable(L, idx)) lcnn_error(L, fn, "%s must be a table of numbers, got %s", what, luaL_typename(L, idx));
  lua_Integer len = luaL_len(L, idx);
  if (len > ((lua_Integer)1 << 26)) lcnn_error(L, fn, "%s has too many points (%lld)", what, (long long)len);
  double *v = lua_newuserdatauv(L, (size_t)(len > 0 ? len : 1) * sizeof(double), 0);
  for (lua_Integer i = 1; i <= len; i++) {
    lua_geti(L, idx, i);
    if (lua_type(L, -1) != LUA_TNUMBER)
      lcnn_error(L, fn, "%s[%lld] must be a number, got %s", what, (long long)i, luaL_typename(L, -1));
    v[i - 1] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  *n = len;
  return v;
}

/* A text scale (times the 12-pixel base size) from the number at idx. */
static double check_scale(lua_State *L, double sc, const char *fn, const char *what) {
  if (!(sc > 0 && sc <= 16)) lcnn_error(L, fn, "%s must be in (0, 16], got %g", what, cnn_error_num(sc));
  return sc * CNN_DRAW_TEXT_PX;
}

static const char *check_text(lua_State *L, int idx, const char *fn) {
  if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TNUMBER)
    lcnn_error(L, fn, "text must be a string, got %s", luaL_typename(L, idx));
  return lua_tostring(L, idx);
}

/* new(w, h) -> a white canvas of w x h pixels */
static int l_new(lua_State *L) {
  const char *fn = "canvas.new";
  double w = check_num(L, 1, fn, "width"), h = check_num(L, 2, fn, "height");
  if (w != floor(w) || h != floor(h) || !(w >= 1 && w <= CNN_DRAW_MAX_SIZE) || !(h >= 1 && h <= CNN_DRAW_MAX_SIZE))
    lcnn_error(L, fn, "size %gx%g must be whole pixels in 1..%d", cnn_error_num(w), cnn_error_num(h),
               CNN_DRAW_MAX_SIZE);
  cnn_draw **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, LCNN_CANVAS);
  *box = cnn_draw_new((int)w, (int)h);
  if (!*box) lcnn_fail(L, fn);
  return 1;
}

static int l_gc(lua_State *L) {
  cnn_draw **box = luaL_checkudata(L, 1, LCNN_CANVAS);
  cnn_draw_free(*box);
  *box = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  cnn_draw **box = luaL_checkudata(L, 1, LCNN_CANVAS);
  int w = 0, h = 0;
  if (*box) cnn_draw_size(*box, &w, &h);
  lua_pushfstring(L, "canvas %dx%d", w, h);
  return 1;
}

/* size(c) -> w, h */
static int l_size(lua_State *L) {
  int w, h;
  cnn_draw_size(check_canvas(L, 1, "canvas.size"), &w, &h);
  lua_pushinteger(L, w);
  lua_pushinteger(L, h);
  return 2;
}

/* fill(c, color, {clip=}) */
static int l_fill(lua_State *L) {
  static const char *const known[] = {"clip", NULL};
  const char *fn = "canvas.fill";
  check_canvas(L, 1, fn); /* early, for the error order; taken again last */
  lcnn_options(L, 3, fn, known);
  cnn_pen p = check_pen(L, 2, 3, fn);
  bool clipped;
  cnn_draw *d = clip_begin(L, 3, fn, &clipped);
  cnn_draw_fill(d, &p);
  clip_end(d, clipped);
  return 0;
}

/* rect(c, x, y, w, h, color, {fill=true, width=1, alpha=1}) */
static int l_rect(lua_State *L) {
  static const char *const known[] = {"fill", "width", "alpha", "clip", NULL};
  const char *fn = "canvas.rect";
  check_canvas(L, 1, fn); /* early, for the error order; taken again last */
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  double w = check_num(L, 4, fn, "w"), h = check_num(L, 5, fn, "h");
  lcnn_options(L, 7, fn, known);
  cnn_pen p = check_pen(L, 6, 7, fn);
  int fill = lcnn_opt_boolean(L, 7, fn, "fill", true);
  bool clipped;
  cnn_draw *d = clip_begin(L, 7, fn, &clipped);
  cnn_draw_rect(d, x, y, w, h, fill, &p);
  clip_end(d, clipped);
  return 0;
}

/* line(c, x0, y0, x1, y1, color, {width=1, aa=true, alpha=1, dash={on, off}}) */
static int l_line(lua_State *L) {
  static const char *const known[] = {"width", "aa", "alpha", "dash", "clip", NULL};
  const char *fn = "canvas.line";
  check_canvas(L, 1, fn); /* early, for the error order; taken again last */
  double x0 = check_num(L, 2, fn, "x0"), y0 = check_num(L, 3, fn, "y0");
  double x1 = check_num(L, 4, fn, "x1"), y1 = check_num(L, 5, fn, "y1");
  lcnn_options(L, 7, fn, known);
  cnn_pen p = check_pen(L, 6, 7, fn);
  bool clipped;
  cnn_draw *d = clip_begin(L, 7, fn, &clipped);
  cnn_draw_line(d, x0, y0, x1, y1, &p);
  clip_end(d, clipped);
  return 0;
}

/* polyline(c, xs, ys, color, {width=1, aa=true, alpha=1}): NaN/inf coordinates break the line. */
static int l_polyline(lua_State *L) {
  static const char *const known[] = {"width", "aa", "alpha", "clip", NULL};
  const char *fn = "canvas.polyline";
  check_canvas(L, 1, fn); /* early, for the error order; taken again last */
  lcnn_options(L, 5, fn, known);
  cnn_pen p = check_pen(L, 4, 5, fn);
  lua_Integer nx, ny;
  double *xs = check_coords(L, 2, fn, "xs", &nx);
  double *ys = check_coords(L, 3, fn, "ys", &ny);
  if (nx != ny) lcnn_error(L, fn, "xs has %lld points but ys has %lld", (long long)nx, (long long)ny);
  bool clipped;
  cnn_draw *d = clip_begin(L, 5, fn, &clipped);
  cnn_draw_polyline(d, xs, ys, nx, &p);
  clip_end(d, clipped);
  return 0;
}

/* circle(c, x, y, r, color, {fill=true, width=1, alpha=1}): r in [0, 1e5] pixels */
static int l_circle(lua_State *L) {
  static const char *const known[] = {"fill", "width", "alpha", "clip", NULL};
  const char *fn = "canvas.circle";
  check_canvas(L, 1, fn); /* early, for the error order; taken again last */
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y"), r = check_num(L, 4, fn, "r");
  if (!(r >= 0 && r <= 1e5)) lcnn_error(L, fn, "r must be in [0, 100000] pixels, got %g", cnn_error_num(r));
  lcnn_options(L, 6, fn, known);
  cnn_pen p = check_pen(L, 5, 6, fn);
  int fill = lcnn_opt_boolean(L, 6, fn, "fill", true);
  bool clipped;
  cnn_draw *d = clip_begin(L, 6, fn, &clipped);
  cnn_draw_circle(d, x, y, r, fill, &p);
  clip_end(d, clipped);
  return 0;
}

/* marker(c, x, y, kind, size, color, {edge=color}): kind "dot", "circle", "square", "diamond",
 * "triangle", "star", "cross" or "plus"; size is the marker's span in pixels. */
static int l_marker(lua_State *L) {
  static const char *const known[] = {"edge", "clip", NULL};
  const char *fn = "canvas.marker";
  check_canvas(L, 1, fn); /* early, for the error order; taken again last */
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  const char *name = lua_tostring(L, 4);
  int kind = lua_type(L, 4) == LUA_TSTRING ? cnn_marker_from_name(name) : -1;
  if (kind < 0)
    lcnn_error(L, fn, "unknown marker %s%s%s (expected dot, circle, square, diamond, triangle, star, cross or plus)",
               name ? "'" : "", name ? name : luaL_typename(L, 4), name ? "'" : "");
  double size = check_num(L, 5, fn, "size");
  if (!(size > 0 && size <= 4096)) lcnn_error(L, fn, "size must be in (0, 4096] pixels, got %g", cnn_error_num(size));
  lcnn_options(L, 7, fn, known);
  cnn_pen p = check_pen(L, 6, 7, fn), edge = p;
  bool has_edge = false;
  if (lua_istable(L, 7)) {
    lua_getfield(L, 7, "edge");
    if (!lua_isnil(L, -1)) {
      float c[3];
      check_color(L, lua_gettop(L), fn, "option 'edge'", c);
      edge.r = c[0], edge.g = c[1], edge.b = c[2];
      has_edge = true;
    }
    lua_pop(L, 1);
  }
  bool clipped;
  cnn_draw *d = clip_begin(L, 7, fn, &clipped);
  cnn_draw_marker(d, x, y, kind, size, &p, has_edge ? &edge : NULL);
  clip_end(d, clipped);
  return 0;
}

/* text(c, x, y, str, color, {scale=1, rotate=0|90, align="left"|"center"|"right",
 * valign="top"|"middle"|"bottom"|"baseline", bold=false}): (x, y) is the anchor point; the text's
 * box (turned, for rotate=90) is placed so that its align/valign point lies there. Returns the
 * box: x, y, w, h. */
static int l_text(lua_State *L) {
  static const char *const known[] = {"scale", "rotate", "align", "valign", "bold", "alpha", "clip", NULL};
  static const char *const aligns[] = {"left", "center", "right", NULL};
  static const char *const valigns[] = {"top", "middle", "bottom", "baseline", NULL};
  const char *fn = "canvas.text";
  check_canvas(L, 1, fn); /* early, for the error order; taken again last */
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  const char *s = check_text(L, 4, fn);
  lcnn_options(L, 6, fn, known);
  cnn_pen p = check_pen(L, 5, 6, fn);
  double px = check_scale(L, lcnn_opt_number(L, 6, fn, "scale", 1), fn, "option 'scale'");
  double rot = lcnn_opt_number(L, 6, fn, "rotate", 0);
  if (rot != 0 && rot != 90) lcnn_error(L, fn, "option 'rotate' must be 0 or 90, got %g", cnn_error_num(rot));
  int bold = lcnn_opt_boolean(L, 6, fn, "bold", 0);
  int align = 0, valign = 0;
  if (lua_istable(L, 6)) {
    lua_getfield(L, 6, "align");
    lua_getfield(L, 6, "valign");
    const char *a = lua_tostring(L, -2), *v = lua_tostring(L, -1);
    while (a && aligns[align] && strcmp(a, aligns[align]) != 0) align++;
    while (v && valigns[valign] && strcmp(v, valigns[valign]) != 0) valign++;
    if ((!lua_isnil(L, -2) && (!a || !aligns[align])))
      lcnn_error(L, fn, "option 'align' must be \"left\", \"center\" or \"right\"");
    if ((!lua_isnil(L, -1) && (!v || !valigns[valign])))
      lcnn_error(L, fn, "option 'valign' must be \"top\", \"middle\", \"bottom\" or \"baseline\"");
    lua_pop(L, 2);
  }
  bool clipped;
  cnn_draw *d = clip_begin(L, 6, fn, &clipped);
  double box[4];
  int rc = cnn_draw_text(d, x, y, s, px, bold, rot == 90, align * 0.5, (cnn_valign)valign, &p, box);
  clip_end(d, clipped);
  if (rc) return lcnn_fail(L, fn);
  for (int k = 0; k < 4; k++) lua_pushnumber(L, box[k]);
  return 4;
}

/* text_size(str, scale=1, bold=false) -> w, h of the unturned box: the advance of the widest
 * line and the line height (ascent + descent of the font) times the lines */
static int l_text_size(lua_State *L) {
  const char *fn = "canvas.text_size";
  const char *s = check_text(L, 1, fn);
  double px = check_scale(L, lua_isnoneornil(L, 2) ? 1 : check_num(L, 2, fn, "scale"), fn, "scale");
  if (!lua_isnoneornil(L, 3) && !lua_isboolean(L, 3))
    lcnn_error(L, fn, "bold must be a boolean, got %s", luaL_typename(L, 3));
  double w, h;
  if (cnn_draw_text_size(s, px, lua_toboolean(L, 3), &w, &h)) return lcnn_fail(L, fn);
  lua_pushnumber(L, w);
  lua_pushnumber(L, h);
  return 2;
}

/* count_ink(c, x, y, w, h, {bg="#ffffff", tol=0.1}) -> pixels of the rectangle differing from bg */
static int l_count_ink(lua_State *L) {
  static const char *const known[] = {"bg", "tol", NULL};
  const char *fn = "canvas.count_ink";
  check_canvas(L, 1, fn);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  double w = check_num(L, 4, fn, "w"), h = check_num(L, 5, fn, "h");
  lcnn_options(L, 6, fn, known);
  float bg[3] = {1, 1, 1};
  if (lua_istable(L, 6)) {
    lua_getfield(L, 6, "bg");
    if (!lua_isnil(L, -1)) check_color(L, lua_gettop(L), fn, "option 'bg'", bg);
    lua_pop(L, 1);
  }
  double tol = lcnn_opt_number(L, 6, fn, "tol", 0.1);
  cnn_draw *d = check_canvas(L, 1, fn); /* after the option lookups (see clip_begin) */
  int64_t n = cnn_draw_count_ink(d, x, y, w, h, bg, (float)tol);
  if (n < 0) return lcnn_fail(L, fn);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int to_pixel(double v) {
  if (!(v > -1e9)) return -1000000000;
  if (v > 1e9) return 1000000000;
  return (int)floor(v + 0.5);
}

/* pixel(c, x, y) -> r, g, b (0-based pixel; black outside) */
static int l_pixel(lua_State *L) {
  const char *fn = "canvas.pixel";
  cnn_draw *d = check_canvas(L, 1, fn);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  float rgb[3];
  if (cnn_draw_pixel(d, to_pixel(x), to_pixel(y), rgb)) return lcnn_fail(L, fn);
  for (int k = 0; k < 3; k++) lua_pushnumber(L, rgb[k]);
  return 3;
}

/* tensor(c) -> the drawing as a (3, H, W) float32 tensor in [0, 1] */
static int l_tensor(lua_State *L) {
  const char *fn = "canvas.tensor";
  lcnn_push(L, cnn_draw_tensor(check_canvas(L, 1, fn)), fn);
  return 1;
}

/* save(c, path): PNG, SVG or PDF by the path's extension */
static int l_save(lua_State *L) {
  const char *fn = "canvas.save";
  cnn_draw *d = check_canvas(L, 1, fn);
  size_t n;
  const char *path = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
  if (!path) lcnn_error(L, fn, "path must be a string, got %s", luaL_typename(L, 2));
  if (strlen(path) != n) lcnn_error(L, fn, "path contains a NUL byte");
  if (cnn_draw_save(d, path)) return lcnn_fail(L, fn);
  return 0;
}

void lcnn_open_canvas(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {{"new", l_new},
                                 {"size", l_size},
                                 {"fill", l_fill},
                                 {"rect", l_rect},
                                 {"line", l_line},
                                 {"polyline", l_polyline},
                                 {"circle", l_circle},
                                 {"marker", l_marker},
                                 {"text", l_text},
                                 {"text_size", l_text_size},
                                 {"count_ink", l_count_ink},
                                 {"pixel", l_pixel},
                                 {"tensor", l_tensor},
                                 {"save", l_save},
                                 {NULL, NULL}};
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, tbl, r->name);
  }
  /* canvas methods are the same functions: c:line(...), c:save(path) */
  if (luaL_newmetatable(L, LCNN_CANVAS)) {
    lua_pushvalue(L, tbl);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}
