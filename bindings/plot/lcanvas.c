/* Drawing for Lua (core.canvas.*): each function draws one primitive into a (3, H, W) float32
 * tensor in place (bumping its version) through runtime/canvas.c. Colours are {r, g, b} in [0, 1]
 * or "#rrggbb"; coordinates are pixels (x right, y down, pixel centres on integers); every
 * function takes a trailing options table, and `clip = {x, y, w, h}` limits any of them. */
#include <math.h>
#include <string.h>

#include "cnn/canvas.h"
#include "lcnn.h"

/* The canvas over the tensor at idx (raises "fn: ..." when it is not a (3, H, W) float32 one). */
static cnn_tensor *check_canvas(lua_State *L, int idx, const char *fn, cnn_canvas *c) {
  cnn_tensor *t = lcnn_check(L, idx, fn);
  if (cnn_canvas_init(c, t) != 0) lcnn_fail(L, fn);
  return t;
}

static void touched(cnn_tensor *t) { t->storage->version++; }

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

/* A colour: {r, g, b} with components in [0, 1], or "#rrggbb" / "#rgb". */
static cnn_rgb check_color(lua_State *L, int idx, const char *fn, const char *what) {
  cnn_rgb c = {0, 0, 0};
  float v[3];
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
      if (!(x >= 0 && x <= 1)) lcnn_error(L, fn, "%s components must be in [0, 1], got %g", what, x);
      v[k] = (float)x;
    }
  } else {
    lcnn_error(L, fn, "%s must be \"#rrggbb\" or {r, g, b}, got %s", what, luaL_typename(L, idx));
  }
  c.r = v[0];
  c.g = v[1];
  c.b = v[2];
  return c;
}

/* Typed option readers: nil gives the default, a wrong type raises. */
static double opt_num(lua_State *L, int o, const char *fn, const char *key, double def) {
  if (!lua_istable(L, o)) return def;
  lua_getfield(L, o, key);
  double v = def;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      lcnn_error(L, fn, "option '%s' must be a number, got %s", key, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int o, const char *fn, const char *key, int def) {
  if (!lua_istable(L, o)) return def;
  lua_getfield(L, o, key);
  int v = def;
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1)) lcnn_error(L, fn, "option '%s' must be a boolean, got %s", key, luaL_typename(L, -1));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static float opt_alpha(lua_State *L, int o, const char *fn) {
  double a = opt_num(L, o, fn, "alpha", 1);
  if (!(a >= 0 && a <= 1)) lcnn_error(L, fn, "option 'alpha' must be in [0, 1], got %g", a);
  return (float)a;
}

static double opt_width(lua_State *L, int o, const char *fn, double def) {
  double w = opt_num(L, o, fn, "width", def);
  if (!(w > 0 && w <= 1000)) lcnn_error(L, fn, "option 'width' must be in (0, 1000], got %g", w);
  return w;
}

/* Applies option clip = {x, y, w, h} to the canvas. */
static void opt_clip(lua_State *L, int o, const char *fn, cnn_canvas *c) {
  if (!lua_istable(L, o)) return;
  lua_getfield(L, o, "clip");
  if (!lua_isnil(L, -1)) {
    int ci = lua_gettop(L);
    if (!lua_istable(L, ci) || luaL_len(L, ci) != 4) lcnn_error(L, fn, "option 'clip' must be {x, y, w, h}");
    double r[4];
    for (int k = 0; k < 4; k++) {
      lua_geti(L, ci, k + 1);
      r[k] = check_num(L, -1, fn, "clip entries");
      lua_pop(L, 1);
    }
    cnn_canvas_clip(c, r[0], r[1], r[2], r[3]);
  }
  lua_pop(L, 1);
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

/* fill(t, color, opts) */
static int l_fill(lua_State *L) {
  static const char *const known[] = {"clip", NULL};
  const char *fn = "canvas.fill";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  cnn_rgb col = check_color(L, 2, fn, "color");
  lcnn_options(L, 3, fn, known);
  opt_clip(L, 3, fn, &c);
  cnn_canvas_fill(&c, col);
  touched(t);
  return 0;
}

/* rect(t, x, y, w, h, color, {fill=true, width=1, alpha=1}) */
static int l_rect(lua_State *L) {
  static const char *const known[] = {"fill", "width", "alpha", "clip", NULL};
  const char *fn = "canvas.rect";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  double w = check_num(L, 4, fn, "w"), h = check_num(L, 5, fn, "h");
  cnn_rgb col = check_color(L, 6, fn, "color");
  lcnn_options(L, 7, fn, known);
  int fill = opt_bool(L, 7, fn, "fill", 1);
  double lw = opt_width(L, 7, fn, 1);
  float alpha = opt_alpha(L, 7, fn);
  opt_clip(L, 7, fn, &c);
  if (fill) cnn_canvas_fill_rect(&c, x, y, w, h, col, alpha);
  else cnn_canvas_rect(&c, x, y, w, h, lw, col, alpha);
  touched(t);
  return 0;
}

/* line(t, x0, y0, x1, y1, color, {width=1, aa=true, alpha=1, dash={on, off}}) */
static int l_line(lua_State *L) {
  static const char *const known[] = {"width", "aa", "alpha", "dash", "clip", NULL};
  const char *fn = "canvas.line";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  double x0 = check_num(L, 2, fn, "x0"), y0 = check_num(L, 3, fn, "y0");
  double x1 = check_num(L, 4, fn, "x1"), y1 = check_num(L, 5, fn, "y1");
  cnn_rgb col = check_color(L, 6, fn, "color");
  lcnn_options(L, 7, fn, known);
  double w = opt_width(L, 7, fn, 1);
  int aa = opt_bool(L, 7, fn, "aa", 1);
  float alpha = opt_alpha(L, 7, fn);
  opt_clip(L, 7, fn, &c);
  double on = 0, off = 0;
  if (lua_istable(L, 7)) {
    lua_getfield(L, 7, "dash");
    if (!lua_isnil(L, -1)) {
      int di = lua_gettop(L);
      if (!lua_istable(L, di) || luaL_len(L, di) != 2) lcnn_error(L, fn, "option 'dash' must be {on, off}");
      lua_geti(L, di, 1);
      on = check_num(L, -1, fn, "dash lengths");
      lua_geti(L, di, 2);
      off = check_num(L, -1, fn, "dash lengths");
      if (!(on > 0 && off >= 0 && on <= 1e6 && off <= 1e6))
        lcnn_error(L, fn, "dash lengths must be on > 0 and off >= 0 pixels, got {%g, %g}", on, off);
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  if (on > 0 && off > 0) cnn_canvas_dashed_line(&c, x0, y0, x1, y1, col, w, aa, alpha, on, off);
  else cnn_canvas_line(&c, x0, y0, x1, y1, col, w, aa, alpha);
  touched(t);
  return 0;
}

/* polyline(t, xs, ys, color, {width=1, aa=true, alpha=1}): NaN/inf coordinates break the line. */
static int l_polyline(lua_State *L) {
  static const char *const known[] = {"width", "aa", "alpha", "clip", NULL};
  const char *fn = "canvas.polyline";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  cnn_rgb col = check_color(L, 4, fn, "color");
  lcnn_options(L, 5, fn, known);
  double w = opt_width(L, 5, fn, 1);
  int aa = opt_bool(L, 5, fn, "aa", 1);
  float alpha = opt_alpha(L, 5, fn);
  opt_clip(L, 5, fn, &c);
  lua_Integer nx, ny;
  double *xs = check_coords(L, 2, fn, "xs", &nx);
  double *ys = check_coords(L, 3, fn, "ys", &ny);
  if (nx != ny) lcnn_error(L, fn, "xs has %lld points but ys has %lld", (long long)nx, (long long)ny);
  if (cnn_canvas_polyline(&c, xs, ys, nx, col, w, aa, alpha) != 0) lcnn_fail(L, fn);
  touched(t);
  return 0;
}

/* circle(t, x, y, r, color, {fill=true, width=1, alpha=1}) */
static int l_circle(lua_State *L) {
  static const char *const known[] = {"fill", "width", "alpha", "clip", NULL};
  const char *fn = "canvas.circle";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y"), r = check_num(L, 4, fn, "r");
  cnn_rgb col = check_color(L, 5, fn, "color");
  lcnn_options(L, 6, fn, known);
  int fill = opt_bool(L, 6, fn, "fill", 1);
  double lw = opt_width(L, 6, fn, 1);
  float alpha = opt_alpha(L, 6, fn);
  opt_clip(L, 6, fn, &c);
  cnn_canvas_circle(&c, x, y, r, col, fill, lw, alpha);
  touched(t);
  return 0;
}

/* polygon(t, xs, ys, color, {alpha=1}) */
static int l_polygon(lua_State *L) {
  static const char *const known[] = {"alpha", "clip", NULL};
  const char *fn = "canvas.polygon";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  cnn_rgb col = check_color(L, 4, fn, "color");
  lcnn_options(L, 5, fn, known);
  float alpha = opt_alpha(L, 5, fn);
  opt_clip(L, 5, fn, &c);
  lua_Integer nx, ny;
  double *xs = check_coords(L, 2, fn, "xs", &nx);
  double *ys = check_coords(L, 3, fn, "ys", &ny);
  if (nx != ny) lcnn_error(L, fn, "xs has %lld points but ys has %lld", (long long)nx, (long long)ny);
  if (nx > 4096) lcnn_error(L, fn, "at most 4096 vertices, got %lld", (long long)nx);
  cnn_canvas_polygon(&c, xs, ys, (int)nx, col, alpha);
  touched(t);
  return 0;
}

/* marker(t, x, y, kind, size, color, {edge=color}): kind "dot", "circle", "square", "diamond",
 * "triangle", "star", "cross" or "plus"; size is the marker's span in pixels. */
static int l_marker(lua_State *L) {
  static const char *const known[] = {"edge", "clip", NULL};
  const char *fn = "canvas.marker";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  const char *name = lua_tostring(L, 4);
  int kind = lua_type(L, 4) == LUA_TSTRING ? cnn_marker_from_name(name) : -1;
  if (kind < 0)
    lcnn_error(L, fn, "unknown marker %s%s%s (expected dot, circle, square, diamond, triangle, star, cross or plus)",
               name ? "'" : "", name ? name : luaL_typename(L, 4), name ? "'" : "");
  double size = check_num(L, 5, fn, "size");
  if (!(size > 0 && size <= 4096)) lcnn_error(L, fn, "size must be in (0, 4096] pixels, got %g", size);
  cnn_rgb col = check_color(L, 6, fn, "color");
  lcnn_options(L, 7, fn, known);
  cnn_rgb edge = col;
  float edge_alpha = 0;
  if (lua_istable(L, 7)) {
    lua_getfield(L, 7, "edge");
    if (!lua_isnil(L, -1)) {
      edge = check_color(L, lua_gettop(L), fn, "option 'edge'");
      edge_alpha = 1;
    }
    lua_pop(L, 1);
  }
  opt_clip(L, 7, fn, &c);
  cnn_canvas_marker(&c, x, y, kind, size, col, edge, edge_alpha);
  touched(t);
  return 0;
}

static int to_pixel(double v) {
  if (!(v > -1e9)) return -1000000000;
  if (v > 1e9) return 1000000000;
  return (int)floor(v + 0.5);
}

/* text(t, x, y, str, color, {scale=1, rotate=0|90, align="left"|"center"|"right",
 * valign="top"|"middle"|"bottom"|"baseline", bold=false}): (x, y) is the anchor point; the text's
 * box (turned, for rotate=90) is placed so that its align/valign point lies there. Returns the
 * box: x, y, w, h. */
static int l_text(lua_State *L) {
  static const char *const known[] = {"scale", "rotate", "align", "valign", "bold", "clip", NULL};
  const char *fn = "canvas.text";
  cnn_canvas c;
  cnn_tensor *t = check_canvas(L, 1, fn, &c);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  if (lua_type(L, 4) != LUA_TSTRING && lua_type(L, 4) != LUA_TNUMBER)
    lcnn_error(L, fn, "text must be a string, got %s", luaL_typename(L, 4));
  const char *s = lua_tostring(L, 4);
  cnn_rgb col = check_color(L, 5, fn, "color");
  lcnn_options(L, 6, fn, known);
  double sc = opt_num(L, 6, fn, "scale", 1);
  if (sc != floor(sc) || sc < 1 || sc > CNN_FONT_MAX_SCALE)
    lcnn_error(L, fn, "option 'scale' must be an integer in 1..%d, got %g", CNN_FONT_MAX_SCALE, sc);
  double rot = opt_num(L, 6, fn, "rotate", 0);
  if (rot != 0 && rot != 90) lcnn_error(L, fn, "option 'rotate' must be 0 or 90, got %g", rot);
  int bold = opt_bool(L, 6, fn, "bold", 0);
  const char *align = "left", *valign = "top";
  if (lua_istable(L, 6)) {
    lua_getfield(L, 6, "align");
    lua_getfield(L, 6, "valign");
    if (!lua_isnil(L, -2)) align = lua_tostring(L, -2);
    if (!lua_isnil(L, -1)) valign = lua_tostring(L, -1);
    lua_pop(L, 2); /* the strings stay alive in the options table */
  }
  int w, h, scale = (int)sc;
  cnn_font_text_size(s, scale, &w, &h);
  if (bold) w += 1;
  /* the box as it appears on the canvas */
  int bw = rot == 90 ? h : w, bh = rot == 90 ? w : h;
  double fx, fy;
  if (align && strcmp(align, "left") == 0) fx = 0;
  else if (align && strcmp(align, "center") == 0) fx = 0.5;
  else if (align && strcmp(align, "right") == 0) fx = 1;
  else return lcnn_error(L, fn, "option 'align' must be \"left\", \"center\" or \"right\"");
  double ox, oy;
  if (valign && strcmp(valign, "top") == 0) fy = 0;
  else if (valign && strcmp(valign, "middle") == 0) fy = 0.5;
  else if (valign && strcmp(valign, "bottom") == 0) fy = 1;
  else if (valign && strcmp(valign, "baseline") == 0) fy = -1;
  else return lcnn_error(L, fn, "option 'valign' must be \"top\", \"middle\", \"bottom\" or \"baseline\"");
  ox = fx * bw;
  oy = fy >= 0 ? fy * bh : (double)CNN_FONT_ASCENT * scale;
  if (rot == 90 && fy < 0) { /* baseline of turned text: a vertical line at ascent from the left */
    ox = (double)CNN_FONT_ASCENT * scale;
    oy = fx * bh;
  }
  opt_clip(L, 6, fn, &c);
  int px = to_pixel(x - ox), py = to_pixel(y - oy);
  cnn_canvas_text(&c, px, py, s, scale, col, (int)rot, bold);
  touched(t);
  lua_pushinteger(L, px);
  lua_pushinteger(L, py);
  lua_pushinteger(L, bw);
  lua_pushinteger(L, bh);
  return 4;
}

/* text_size(str, scale=1) -> w, h of the unturned box */
static int l_text_size(lua_State *L) {
  const char *fn = "canvas.text_size";
  if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER)
    lcnn_error(L, fn, "text must be a string, got %s", luaL_typename(L, 1));
  double sc = lua_isnoneornil(L, 2) ? 1 : check_num(L, 2, fn, "scale");
  if (sc != floor(sc) || sc < 1 || sc > CNN_FONT_MAX_SCALE)
    lcnn_error(L, fn, "scale must be an integer in 1..%d, got %g", CNN_FONT_MAX_SCALE, sc);
  int w, h;
  cnn_font_text_size(lua_tostring(L, 1), (int)sc, &w, &h);
  lua_pushinteger(L, w);
  lua_pushinteger(L, h);
  return 2;
}

/* count_ink(t, x, y, w, h, {bg="#ffffff", tol=0.1}) -> pixels of the rectangle differing from bg */
static int l_count_ink(lua_State *L) {
  static const char *const known[] = {"bg", "tol", NULL};
  const char *fn = "canvas.count_ink";
  cnn_canvas c;
  check_canvas(L, 1, fn, &c);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  double w = check_num(L, 4, fn, "w"), h = check_num(L, 5, fn, "h");
  lcnn_options(L, 6, fn, known);
  cnn_rgb bg = {1, 1, 1};
  if (lua_istable(L, 6)) {
    lua_getfield(L, 6, "bg");
    if (!lua_isnil(L, -1)) bg = check_color(L, lua_gettop(L), fn, "option 'bg'");
    lua_pop(L, 1);
  }
  double tol = opt_num(L, 6, fn, "tol", 0.1);
  lua_pushinteger(L, (lua_Integer)cnn_canvas_count_ink(&c, x, y, w, h, bg, (float)tol));
  return 1;
}

/* pixel(t, x, y) -> r, g, b (0-based pixel; black outside) */
static int l_pixel(lua_State *L) {
  const char *fn = "canvas.pixel";
  cnn_canvas c;
  check_canvas(L, 1, fn, &c);
  double x = check_num(L, 2, fn, "x"), y = check_num(L, 3, fn, "y");
  cnn_rgb p = cnn_canvas_get(&c, to_pixel(x), to_pixel(y));
  lua_pushnumber(L, p.r);
  lua_pushnumber(L, p.g);
  lua_pushnumber(L, p.b);
  return 3;
}

void lcnn_open_canvas(lua_State *L, int tbl) {
  static const luaL_Reg fns[] = {{"fill", l_fill},           {"rect", l_rect},     {"line", l_line},
                                 {"polyline", l_polyline},   {"circle", l_circle}, {"polygon", l_polygon},
                                 {"marker", l_marker},       {"text", l_text},     {"text_size", l_text_size},
                                 {"count_ink", l_count_ink}, {"pixel", l_pixel},   {NULL, NULL}};
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, tbl, r->name);
  }
}
