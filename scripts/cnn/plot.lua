--- module cnn.plot
--- Line, scatter and grid charts drawn with cairo, saved as PNG, SVG or PDF.
--- Each drawing function takes one options table, writes the picture when `path` is given (its
--- extension, .png, .svg or .pdf, chooses the format) and returns the image, a (3, H, W) float
--- tensor, and a layout table: `area = {x, y, w, h}`, the framed plot area in 0-based pixels; `pad`,
--- the inset of the axis ranges in it; `x` and `y`, each axis' lo, hi, values, labels (and log);
--- `legend`, its box. Data x lands on pixel column
--- area.x + pad + (x - lo) / (hi - lo) * (area.w - 1 - 2 pad) (log10 of each on log axes), y
--- likewise from the bottom. Axes use "nice" ticks (1-2-5 steps, the range widened to whole steps;
--- decades on log axes), labelled compactly (0.5, 1e-3, 12k). Text is DejaVu Sans (Debian's
--- fonts-dejavu-core), 12 pixels at font_scale 1; font_scale (default 1 up to about 1200x750, then
--- 2, ...) scales text, lines and margins. Every option is checked; errors name the function and
--- the problem ("plot.lines: ...").

-- cnn.plot: charts drawn with cairo through core.canvas (anti-aliased lines and text, recorded as
-- vectors, so one drawing gives PNG, SVG and PDF). No plotting library: this module lays out axes,
-- ticks, legend and labels, measuring text with the font's metrics, and maps data to pixels.
local core = require "cnn.core"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")

local C = core.canvas
local plot = {}

local floor, ceil, abs, max, min = math.floor, math.ceil, math.abs, math.max, math.min
local function log10(x) return math.log(x, 10) end -- exact on powers of ten (C log10)
local huge = math.huge

local function finite(v) return type(v) == "number" and v == v and v ~= huge and v ~= -huge end

--- field cnn.plot.palette
--- The series colours in order ("#0072B2", ...): Okabe and Ito's, readable by colour-blind eyes.
-- ordered for contrast on white (yellow left out: unreadable on white)
plot.palette = {"#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#999933"}
local series_markers = {"dot", "square", "diamond", "triangle", "circle", "star", "cross", "plus"}
local marker_names = {}
for _, m in ipairs(series_markers) do marker_names[m] = true end

local INK, FRAME, GRID, TEXT, MUTED = "#000000", "#404040", "#d0d0d0", "#202020", "#606060"
-- Sizes below are in units of the font scale fs (pixels at fs = 1), so a 1600x1000 image at fs = 2
-- looks like an 800x500 one. Data never touches the frame: the axis range maps to the plot area
-- inset by PAD * fs pixels on each side.
local PAD = 6

-- Errors: internal code raises a tagged table; the public function re-raises it as
-- "plot.fn: message" at the caller's level.
local Fail = {}
local function fail(fmt, ...) error(setmetatable({msg = string.format(fmt, ...)}, Fail), 0) end
local function public(name, impl)
  return function(opts)
    local res = table.pack(pcall(impl, opts))
    if not res[1] then
      local e = res[2]
      if getmetatable(e) == Fail then error("plot." .. name .. ": " .. e.msg, 2) end
      error(e, 0)
    end
    return table.unpack(res, 2, res.n)
  end
end

local function check_keys(opts, known, what)
  if type(opts) ~= "table" then fail("expected %s table, got %s", what, type(opts)) end
  for k in pairs(opts) do
    if not known[k] then fail("unknown option '%s'%s", tostring(k), what == "an options" and "" or " in " .. what) end
  end
end

local function set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

---------------------------------------------------------------------------------------------------
-- Ticks and labels

-- i * m * 10^k computed so that decimal steps give the nearest double (3 * 0.1 -> 0.3).
local function step_value(i, m, k)
  if k >= 0 then return i * m * 10 ^ k end
  return i * m / 10 ^ -k
end

-- Spans below this are empty ranges: steps near the smallest doubles would underflow to 0.
local TINY_SPAN = 1e-290

--- cnn.plot.ticks(lo, hi, max_ticks=6, min_step) -> {lo=, hi=, step=, values=}
--- Nice linear ticks covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
--- The step is at least min_step (1 for integer data such as epochs), the range is widened to whole
--- steps, with at most max_ticks values (2 at least, 1000 at most); an empty range (lo == hi, or a span below
--- 1e-290) is padded first.
function plot.ticks(lo, hi, n, min_step)
  assert(finite(lo) and finite(hi), "plot.ticks: lo and hi must be finite numbers")
  assert(n == nil or (finite(n) and n <= 1000), "plot.ticks: max_ticks must be a finite number up to 1000")
  assert(min_step == nil or (finite(min_step) and min_step >= 0), "plot.ticks: min_step must be a finite number >= 0")
  n = max(2, floor(n or 6))
  if lo > hi then lo, hi = hi, lo end
  local mid = abs(lo / 2 + hi / 2)
  if hi / 2 - lo / 2 <= max(mid * 1e-9, TINY_SPAN) then -- equal (to rounding): pad 10% of the value, or +-1
    local d = mid > TINY_SPAN and mid * 0.1 or 1
    lo, hi = lo - d, hi + d
  end
  -- span in two halves so that -1e308..1e308 does not overflow
  local lspan = log10(hi / 2 - lo / 2) + log10(2)
  local k = floor(lspan - log10(n)) - 1
  -- k starts a decade below a step of span / n: a few decades up always fit n ticks, and a
  -- min_step (finite) is reached within the doubles' 617 decades
  for _ = 1, 700 do
    for _, m in ipairs{1, 2, 5} do
      local step = m * 10 ^ k
      local a = floor(lo / step + 1e-9)
      local b = ceil(hi / step - 1e-9)
      if b - a + 1 <= n and (not min_step or step >= min_step * (1 - 1e-9)) then
        local values = {}
        for i = a, b do values[#values + 1] = step_value(i, m, k) end
        return {lo = values[1], hi = values[#values], step = step_value(1, m, k), values = values}
      end
    end
    k = k + 1
  end
  error(string.format("plot.ticks: no step of at least %s fits %d ticks over [%g, %g]", tostring(min_step), n, lo, hi))
end

local function pow10(e) return tonumber("1e" .. e) end

--- cnn.plot.log_ticks(lo, hi, max_ticks=6) -> {lo=, hi=, values=, minor=, log=true}
--- Ticks for a log axis (lo, hi > 0): decades widened to cover [lo, hi] (within 1e-307..1e308).
--- Every few decades when there are many; with at most two decades the 2x and 5x values are labelled
--- too. minor are values for grid lines only.
function plot.log_ticks(lo, hi, n)
  n = max(2, floor(n or 6))
  assert(finite(lo) and finite(hi) and lo > 0 and hi > 0, "plot.log_ticks: lo and hi must be positive")
  if lo > hi then lo, hi = hi, lo end
  local a = floor(log10(lo) + 1e-9)
  local b = ceil(log10(hi) - 1e-9)
  if b <= a then a, b = a - (lo == hi and 1 or 0), a + 1 end
  -- decades of normal doubles only: 10^-308 and below are subnormal or 0, 10^309 is inf
  a, b = min(max(a, -307), 307), max(min(b, 308), -306)
  if b <= a then b = a + 1 end
  local k = max(1, ceil((b - a) / (n - 1)))
  -- the axis: [a, b] widened to whole steps of k decades, where those stay normal doubles (past
  -- them it ends at the data's own decade: 1e-300..1e300 in steps of 120 decades is 1e-300..1e300,
  -- not the 1e-240..1e240 that the steps inside would give); the labels: the multiples of k on it
  if floor(a / k) * k >= -307 then a = floor(a / k) * k end
  if ceil(b / k) * k <= 308 then b = ceil(b / k) * k end
  local values, minor = {}, {}
  for e = ceil(a / k) * k, b, k do values[#values + 1] = pow10(e) end
  if k == 1 and b - a <= 2 then
    values = {}
    for e = a, b do
      for _, m in ipairs{1, 2, 5} do
        local v = m * pow10(e)
        if e < b or m == 1 then values[#values + 1] = v end
      end
      if e < b then
        for _, m in ipairs{3, 4, 6, 7, 8, 9} do minor[#minor + 1] = m * pow10(e) end
      end
    end
  elseif k == 1 and b - a <= 6 then
    for e = a, b - 1 do
      for m = 2, 9 do minor[#minor + 1] = m * pow10(e) end
    end
  end
  return {lo = pow10(a), hi = pow10(b), values = values, minor = minor, log = true}
end

local function strip(s)
  if s:find("%.") then s = s:gsub("0+$", ""):gsub("%.$", "") end
  if s == "-0" then s = "0" end
  return s
end

local function fixed(v, dec) return strip(string.format("%." .. max(0, min(dec, 12)) .. "f", v)) end

local suffixes = {{12, "T"}, {9, "G"}, {6, "M"}, {3, "k"}}

-- One label: v with the precision that steps of `step` need, in `mode` ("fixed", "suffix", "sci").
local function format_value(v, step, mode)
  if v == 0 then return "0" end
  if not finite(v) then return tostring(v) end
  local a = abs(v)
  local ks = floor(log10(step) + 1e-9)
  if mode == "suffix" and a >= 1000 then
    for _, s in ipairs(suffixes) do
      if a >= pow10(s[1]) * (1 - 1e-12) then return fixed(v / pow10(s[1]), s[1] - ks) .. s[2] end
    end
  elseif mode == "sci" then
    local e = floor(log10(a) + 1e-9)
    local m = fixed(v / pow10(e), e - ks)
    if m == "10" or m == "-10" then
      e = e + 1
      m = fixed(v / pow10(e), e - ks)
    end
    return m .. "e" .. e
  end
  return fixed(v, -ks)
end

local function mode_for(maxabs)
  if maxabs >= 1e15 or (maxabs > 0 and maxabs < 1e-2) then return "sci" end
  if maxabs >= 1e4 then return "suffix" end
  return "fixed"
end

--- cnn.plot.format_ticks(values, step) -> {labels}
--- Compact labels for tick values spaced by step (1e-3, 0.25, 40, 12k, 1.5M, 2e-5).
--- One notation per axis, chosen by the largest |value|. With no step (log axes) each value is
--- labelled on its own.
function plot.format_ticks(values, step)
  local labels = {}
  if not step then
    for i, v in ipairs(values) do labels[i] = format_value(v, abs(v) > 0 and abs(v) or 1, mode_for(abs(v))) end
    return labels
  end
  local maxabs = 0
  for _, v in ipairs(values) do maxabs = max(maxabs, abs(v)) end
  local mode = mode_for(maxabs)
  for i, v in ipairs(values) do labels[i] = format_value(v, step, mode) end
  return labels
end

--- cnn.plot.format_number(v) -> string
--- A compact label for one number, four significant digits (legends, the best point).
local function format_number(v)
  if v ~= v then return "nan" end -- tostring gives "-nan" for some NaNs
  if not finite(v) then return tostring(v) end
  v = v + 0.0 -- an integer's abs may wrap (math.mininteger)
  if v == 0 then return "0" end
  if abs(v) < TINY_SPAN then return string.format("%.3g", v) end -- its tenth powers underflow
  local e = floor(log10(abs(v)) + 1e-9)
  return format_value(v, pow10(e - 3), mode_for(abs(v)))
end
plot.format_number = format_number

---------------------------------------------------------------------------------------------------
-- Data checks

local function to_list(v, what)
  if type(v) == "userdata" and v.totable then
    if v:dim() ~= 1 then fail("%s must be a 1-d tensor, got %d dimensions", what, v:dim()) end
    return v:float():totable()
  end
  if type(v) ~= "table" then fail("%s must be a table of numbers or a 1-d tensor, got %s", what, type(v)) end
  local n = #v
  for i = 1, n do
    if type(v[i]) ~= "number" then fail("%s[%d] must be a number, got %s", what, i, type(v[i])) end
  end
  return v
end

local series_keys = set{"name", "x", "y", "color", "marker", "width"}

local function check_series(list)
  if type(list) ~= "table" then fail("series must be a list of tables, got %s", type(list)) end
  if #list == 0 then fail("series is empty") end
  local out = {}
  for i, s in ipairs(list) do
    if type(s) ~= "table" then fail("series %d must be a table, got %s", i, type(s)) end
    check_keys(s, series_keys, "series " .. i)
    if s.y == nil then fail("series %d has no y values", i) end
    local y = to_list(s.y, "series " .. i .. " y")
    local x
    if s.x ~= nil then
      x = to_list(s.x, "series " .. i .. " x")
      if #x ~= #y then fail("series %d has %d x values but %d y values", i, #x, #y) end
    else
      x = {}
      for j = 1, #y do x[j] = j end
    end
    if s.name ~= nil and type(s.name) ~= "string" and type(s.name) ~= "number" then
      fail("series %d name must be a string, got %s", i, type(s.name))
    end
    if s.color ~= nil and not (type(s.color) == "string" and s.color:match("^#%x%x%x%x%x%x$")) then
      fail("series %d color must be \"#rrggbb\", got %s", i, show(s.color))
    end
    if s.marker ~= nil and not marker_names[s.marker] then
      fail("series %d marker must be one of %s, got %s", i, table.concat(series_markers, ", "), show(s.marker))
    end
    if s.width ~= nil and (type(s.width) ~= "number" or not (s.width > 0 and s.width <= 20)) then
      fail("series %d width must be a number in (0, 20]", i)
    end
    out[i] = {name = s.name and tostring(s.name) or ("series " .. i), x = x, y = y,
              color = s.color or plot.palette[(i - 1) % #plot.palette + 1],
              marker = s.marker or series_markers[(i - 1) % #series_markers + 1], width = s.width}
  end
  return out
end

local point_keys = set{"x", "y", "label", "marker", "color", "failed"}

local function check_points(list, best)
  if type(list) ~= "table" then fail("points must be a list of {x=, y=} tables, got %s", type(list)) end
  for i, p in ipairs(list) do
    if type(p) ~= "table" then fail("point %d must be a table {x=, y=}, got %s", i, type(p)) end
    check_keys(p, point_keys, "point " .. i)
    local tx = type(p.x)
    if tx ~= "number" and tx ~= "string" and tx ~= "boolean" then
      fail("point %d x must be a number (or a category name), got %s", i, tx)
    end
    if p.failed ~= nil and type(p.failed) ~= "boolean" then
      fail("point %d failed must be a boolean, got %s", i, type(p.failed))
    end
    if not p.failed and type(p.y) ~= "number" then fail("point %d y must be a number, got %s", i, type(p.y)) end
    if p.marker ~= nil and not marker_names[p.marker] then
      fail("point %d marker must be one of dot, square, diamond, triangle, circle, star, cross, plus, got %s", i,
        show(p.marker))
    end
    if p.color ~= nil and (type(p.color) ~= "string" or not p.color:match("^#%x%x%x%x%x%x$")) then
      fail("point %d color must be \"#rrggbb\", got %s", i, show(p.color))
    end
    if p.label ~= nil and type(p.label) ~= "string" and type(p.label) ~= "number" then
      fail("point %d label must be a string, got %s", i, type(p.label))
    end
  end
  if best ~= nil then
    if math.type(best) ~= "integer" and not (type(best) == "number" and best == floor(best)) then
      fail("best must be a point index, got %s", show(best))
    end
    if best < 1 or best > #list then fail("best = %d is not a point index (1..%d)", best, #list) end
  end
  return list
end

---------------------------------------------------------------------------------------------------
-- Axes

-- Data extent over drawable values: finite, and positive on a log axis. Returns lo, hi or nil.
local function extent(lists, log)
  local lo, hi = huge, -huge
  for _, l in ipairs(lists) do
    for i = 1, #l do
      local v = l[i]
      if finite(v) and (not log or v > 0) then
        if v < lo then lo = v end
        if v > hi then hi = v end
      end
    end
  end
  if lo > hi then return nil end
  return lo, hi
end

-- The ticks of one axis spanning about `len` pixels: as many as fit, fewer while
-- label_room(ticks, n) says their labels would crowd each other.
local function axis_ticks(lo, hi, log, len, label_room, integral)
  if not lo then lo, hi = log and 1 or 0, log and 10 or 1 end
  local n = max(2, min(log and 8 or 9, floor(len / 50) + 1))
  while true do
    local tk = log and plot.log_ticks(lo, hi, n) or plot.ticks(lo, hi, n, integral and 1 or nil)
    tk.labels = plot.format_ticks(tk.values, not log and tk.step or nil)
    if n <= 2 or label_room(tk, n) then return tk end
    n = n - 1
  end
end

-- Text extents from the font's metrics, in whole pixels (the layout keeps frames on pixels).
local function text_w(s, fs, bold) return ceil((C.text_size(s, fs, bold))) end
local function text_h(s, fs, bold) return ceil(select(2, C.text_size(s, fs, bold))) end

-- name, or its start and "~", whichever fits in room pixels (at least one character). The start's
-- length is found by bisection (widths grow with it): one character at a time measured the whole
-- text each time, 13 s for a 40,000-character name.
local function fit(name, room, fs, bold)
  if text_w(name, fs, bold) <= room then return name end
  local utf = utf8.len(name) ~= nil
  local function start(n) return (utf and name:sub(1, utf8.offset(name, n + 1) - 1) or name:sub(1, n)) .. "~" end
  local lo, hi = 1, (utf8.len(name) or #name) - 1 -- start(lo) is the fallback; find the longest that fits
  while lo < hi do
    local mid = (lo + hi + 1) // 2
    if text_w(start(mid), fs, bold) <= room then lo = mid else hi = mid - 1 end
  end
  return start(lo)
end

-- text broken at spaces into lines ('\n') that fit in room pixels, at most max_lines of them (the
-- last elided with fit when more is left, as is a word wider than room): a long chart title was
-- drawn on one line and cut off at both edges of the image.
local function wrap(text, room, fs, bold, max_lines)
  local _, breaks = text:gsub("\n", "")
  if breaks < max_lines and text_w(text, fs, bold) <= room then return text end
  local lines, cur = {}, nil
  for word in text:gmatch("%S+") do
    local try = cur and (cur .. " " .. word) or word
    if cur and text_w(try, fs, bold) > room then
      lines[#lines + 1] = cur
      cur = word
    else
      cur = try
    end
  end
  lines[#lines + 1] = cur
  if #lines > max_lines then
    lines[max_lines] = table.concat(lines, " ", max_lines)
    for i = #lines, max_lines + 1, -1 do lines[i] = nil end
  end
  for i, l in ipairs(lines) do lines[i] = fit(l, room, fs, bold) end
  return table.concat(lines, "\n")
end

-- True when every finite value is an integer (and there are some): epochs, steps, sizes.
local function integral(lists)
  local any = false
  for _, l in ipairs(lists) do
    for i = 1, #l do
      local v = l[i]
      if finite(v) then
        if v ~= floor(v) then return false end
        any = true
      end
    end
  end
  return any
end

-- Lays out and draws the axes of one panel in region {x, y, w, h} of image t: frame, grid,
-- ticks, labels, title. Returns the axes: area, map(x, y) -> pixel x, y (NaN when not drawable).
local function draw_axes(t, region, spec)
  local fs = spec.fs
  local gh = text_h("0", fs) -- height of a line of text
  local tick, m, pad = 4 * fs, 8 * fs, PAD * fs
  local top = region.y + m
  local title = spec.title and wrap(spec.title, region.w - 2 * m, spec.title_scale, true, 2)
  if title then top = top + text_h(title, spec.title_scale, true) + m end
  local bottom = region.y + region.h - m - gh - tick - 4 * fs - (spec.xlabel and (gh + 6 * fs) or 0)
  local ph = bottom - top
  -- y ticks first (their labels set the left margin), then x ticks in the width left
  local ylo, yhi = extent(spec.ys, spec.logy)
  local yt = axis_ticks(ylo, yhi, spec.logy, ph, function(tk, n)
    return n * (gh + m) <= ph or #tk.values <= 3
  end)
  local ylab_w = 0
  for _, s in ipairs(yt.labels) do ylab_w = max(ylab_w, text_w(s, fs)) end
  local left = region.x + m + (spec.ylabel and (gh + m) or 0) + ylab_w + tick + 4 * fs
  local xlo, xhi = extent(spec.xs, spec.logx)
  local right = region.x + region.w - 12 * fs
  local xt
  if spec.xcats then -- categories at 1..K, names shortened to the room each one has
    local k = #spec.xcats
    local room = (right - left) / max(1, k) - 6 * fs
    xt = {lo = 0.5, hi = k + 0.5, step = 1, values = {}, labels = {}}
    for i, name in ipairs(spec.xcats) do
      xt.values[i] = i
      xt.labels[i] = fit(name, room, fs)
    end
    if k == 0 then xt.values, xt.labels = {1}, {""} end
  else
    xt = axis_ticks(xlo, xhi, spec.logx, right - left, function(tk)
      local widest = 0
      for _, s in ipairs(tk.labels) do widest = max(widest, text_w(s, fs)) end
      return (right - left) / max(1, #tk.values - 1) >= widest + 12 * fs
    end, integral(spec.xs))
  end
  -- the last x label is centred on the right edge: keep it inside the region
  local last_w = text_w(xt.labels[#xt.labels], fs)
  right = min(right, region.x + region.w - 4 * fs - ceil(last_w / 2))
  local pw = right - left
  if pw < 20 or ph < 20 then fail("the image is too small for its axes and labels") end
  local area = {x = left, y = top, w = pw, h = ph}

  local function axis_map(v, tk, a0, len, log, flip)
    local f
    if log then
      if not (finite(v) and v > 0) then return 0 / 0 end
      f = (log10(v) - log10(tk.lo)) / (log10(tk.hi) - log10(tk.lo))
    else
      if not finite(v) then return 0 / 0 end
      f = (v - tk.lo) / (tk.hi - tk.lo)
    end
    if flip then f = 1 - f end
    return a0 + pad + f * (len - 1 - 2 * pad)
  end
  local ax = {area = area, x = xt, y = yt, fs = fs, pad = pad, region = {region.x, region.y, region.w, region.h}}
  function ax.map(x, y)
    return axis_map(x, xt, left, pw, spec.logx, false), axis_map(y, yt, top, ph, spec.logy, true)
  end

  -- grid (minor first, lighter), then the frame and ticks come after the data (see finish)
  local clip = {left + 1, top + 1, pw - 2, ph - 2}
  for _, v in ipairs(xt.minor or {}) do
    local px = floor(ax.map(v, yt.lo) + 0.5)
    C.line(t, px, top, px, top + ph - 1, "#ececec", {aa = false, clip = clip})
  end
  for _, v in ipairs(yt.minor or {}) do
    local _, py = ax.map(xt.lo, v)
    py = floor(py + 0.5)
    C.line(t, left, py, left + pw - 1, py, "#ececec", {aa = false, clip = clip})
  end
  for _, v in ipairs(xt.values) do
    local px = floor(ax.map(v, yt.lo) + 0.5)
    C.line(t, px, top, px, top + ph - 1, GRID, {aa = false, dash = {3, 3}, clip = clip})
  end
  for _, v in ipairs(yt.values) do
    local _, py = ax.map(xt.lo, v)
    py = floor(py + 0.5)
    C.line(t, left, py, left + pw - 1, py, GRID, {aa = false, dash = {3, 3}, clip = clip})
  end

  function ax.finish()
    C.rect(t, left, top, pw, ph, FRAME, {fill = false})
    for i, v in ipairs(xt.values) do
      local px = floor(ax.map(v, yt.lo) + 0.5)
      C.line(t, px, top + ph, px, top + ph + tick - 1, FRAME, {aa = false})
      C.text(t, px, top + ph + tick + 3 * fs, xt.labels[i], TEXT, {scale = fs, align = "center"})
    end
    for i, v in ipairs(yt.values) do
      local _, py = ax.map(xt.lo, v)
      py = floor(py + 0.5)
      C.line(t, left - tick, py, left - 1, py, FRAME, {aa = false})
      C.text(t, left - tick - 4 * fs, py, yt.labels[i], TEXT, {scale = fs, align = "right", valign = "middle"})
    end
    -- the labels have one line each: elided to the panel's width and the plot's height, else they
    -- ran off the image's edges
    if spec.xlabel then
      local xl = fit(spec.xlabel:gsub("%s+", " "), region.w - 2 * m, fs)
      local cx = text_w(xl, fs) <= pw and left + pw / 2 or region.x + region.w / 2
      C.text(t, cx, region.y + region.h - m, xl, INK, {scale = fs, align = "center", valign = "bottom"})
    end
    if spec.ylabel then
      local yl = fit(spec.ylabel:gsub("%s+", " "), ph, fs)
      C.text(t, region.x + m, top + ph / 2, yl, INK, {scale = fs, rotate = 90, valign = "middle"})
    end
    if title then -- centred on the plot when it fits there, else on the panel
      local cx = text_w(title, spec.title_scale, true) <= pw and left + pw / 2 or region.x + region.w / 2
      C.text(t, cx, region.y + m, title, INK, {scale = spec.title_scale, align = "center", bold = true})
    end
  end
  return ax
end

-- The legend: a box of rows (swatch + name), placed at the candidate spot covering the fewest
-- drawn pixels of the plot area (ties go to the earlier spot, top-right first). Rows that do not
-- fit the plot's height go into more columns; entries that do not fit its width either end in a
-- "+N more" row (30 series ran past the top of the image in one column), and a name wider than half
-- the plot is shortened with "~".
local function draw_legend(t, ax, series, with_markers)
  local fs = ax.fs
  local row_h = text_h("0", fs) + 3 * fs
  local sw, m = 22 * fs, 8 * fs
  local a = ax.area
  local names, name_w = {}, 0
  for i, s in ipairs(series) do
    names[i] = fit(s.name, max(floor(a.w / 2) - sw - 3 * m, 8 * fs), fs)
    name_w = max(name_w, text_w(names[i], fs))
  end
  local col_w = sw + 6 * fs + name_w
  local per_col = max(1, floor((a.h - 2 * m - 9 * fs) / row_h))
  local max_cols = max(1, floor((a.w - 3 * m + m) / (col_w + m)))
  local cols = min(ceil(#series / per_col), max_cols)
  local shown = #series
  if shown > cols * per_col then shown = cols * per_col - 1 end -- the last row says how many more
  local entries = shown + (shown < #series and 1 or 0)
  local rows = min(per_col, ceil(entries / cols))
  local w = m + cols * col_w + (cols - 1) * m + m
  local h = 6 * fs + rows * row_h + 3 * fs
  local inset = m
  local xl, xr = a.x + inset, a.x + a.w - inset - w
  local yt, yb = a.y + inset, a.y + a.h - inset - h
  local xm, ym = a.x + floor((a.w - w) / 2), a.y + floor((a.h - h) / 2)
  local spots = {{xr, yt}, {xl, yt}, {xr, yb}, {xl, yb}, {xm, yt}, {xm, yb}, {xr, ym}, {xl, ym}}
  local best, best_ink = spots[1], huge
  for _, s in ipairs(spots) do
    local ink = C.count_ink(t, s[1], s[2], w, h, {tol = 0.3})
    if ink < best_ink then best, best_ink = s, ink end
  end
  local x, y = best[1], best[2]
  C.rect(t, x, y, w, h, "#ffffff", {alpha = 0.9})
  C.rect(t, x, y, w, h, "#a0a0a0", {fill = false})
  for i = 1, entries do
    local col, row = (i - 1) // rows, (i - 1) % rows
    local cx = x + m + col * (col_w + m)
    local cy = y + 6 * fs + row * row_h + floor(row_h / 2) - 1
    if i > shown then
      C.text(t, cx, cy, string.format("+%d more", #series - shown), TEXT, {scale = fs, valign = "middle"})
    else
      local s = series[i]
      local lw = s.width or 2 * fs
      local oy = lw % 2 == 0 and 0.5 or 0 -- an even width is crisp between pixel rows
      C.line(t, cx, cy + oy, cx + sw, cy + oy, s.color, {width = lw})
      if with_markers then C.marker(t, cx + sw / 2, cy + oy, s.marker, 7 * fs, s.color) end
      C.text(t, cx + sw + 6 * fs, cy + oy, names[i], TEXT, {scale = fs, valign = "middle"})
    end
  end
  return {x = x, y = y, w = w, h = h}
end

-- Series of a line panel: polylines (NaN breaks them) and markers.
local function draw_lines(t, ax, spec)
  local clip = {ax.area.x + 1, ax.area.y + 1, ax.area.w - 2, ax.area.h - 2}
  for _, s in ipairs(spec.series) do
    local px, py, n = {}, {}, #s.y
    for i = 1, n do px[i], py[i] = ax.map(s.x[i], s.y[i]) end
    C.polyline(t, px, py, s.color, {width = s.width or 2 * ax.fs, clip = clip})
    for i = 1, n do
      local ok = px[i] == px[i] and py[i] == py[i]
      local lone = ok and not (i > 1 and px[i - 1] == px[i - 1] and py[i - 1] == py[i - 1])
        and not (i < n and px[i + 1] == px[i + 1] and py[i + 1] == py[i + 1])
      if ok and (spec.marker or lone) then C.marker(t, px[i], py[i], s.marker, (lone and 9 or 7) * ax.fs, s.color) end
    end
  end
end

-- Pixel positions of the points; a failed point sits on the bottom edge of the frame, below every
-- value (data never touches the frame). With spread,
-- a point that would cover one placed before it moves sideways (+d, -d, +2d, ...) to the first
-- free spot, so identical results all show.
local function point_pixels(ax, spec)
  local xs, ys = {}, {}
  local d = 7 * ax.fs
  local a = ax.area
  for i, p in ipairs(spec.points) do
    local x, y = ax.map(p.x, p.failed and ax.y.lo or p.y)
    if p.failed then y = a.y + a.h - 1 end
    if spec.spread and x == x and y == y then
      local bx = x
      for k = 0, 16 do
        local off = k == 0 and 0 or ((k + 1) // 2) * d * (k % 2 == 1 and 1 or -1)
        local cx = bx + off
        local free = cx > a.x + 1 and cx < a.x + a.w - 2
        for j = 1, i - 1 do
          if free and xs[j] == xs[j] and math.abs(xs[j] - cx) < d and math.abs(ys[j] - y) < d then free = false end
        end
        if free then
          x = cx
          break
        end
      end
    end
    xs[i], ys[i] = x, y
  end
  return xs, ys
end

local function draw_points(t, ax, spec)
  local clip = {ax.area.x + 1, ax.area.y + 1, ax.area.w - 2, ax.area.h - 2}
  local pts, col = spec.points, plot.palette[1]
  local labelled = #pts <= 20
  local pxs, pys = point_pixels(ax, spec)
  spec.pixels = {pxs, pys}
  for i, p in ipairs(pts) do
    if i ~= spec.best then
      local x, y = pxs[i], pys[i]
      C.marker(t, x, y, p.marker or "dot", 7 * ax.fs, p.color or col, {edge = "#ffffff"})
      if labelled and p.label then
        C.text(t, x + 6 * ax.fs, y, tostring(p.label), MUTED, {valign = "middle", scale = ax.fs, clip = clip})
      end
    end
  end
end

-- The best point: a star drawn over the frame, with its label.
local function draw_best(t, ax, spec)
  local clip = {ax.area.x + 1, ax.area.y + 1, ax.area.w - 2, ax.area.h - 2}
  local b = spec.points[spec.best or 0]
  if b then
    local x, y = ax.map(b.x, b.y)
    if x == x and y == y then
      local fs = ax.fs
      C.marker(t, x, y, "star", 15 * fs, plot.palette[2], {edge = "#000000", clip = ax.region})
      local label = b.label and tostring(b.label) or ("best: " .. format_number(b.y))
      local lw = text_w(label, fs, true) + 1
      local a = ax.area
      local right_side = x + 12 * fs + lw <= a.x + a.w - 4 * fs
      local ty = min(max(y, a.y + 10 * fs), a.y + a.h - 10 * fs)
      local tx = right_side and x + 12 * fs or x - 12 * fs
      local th = text_h(label, fs, true)
      -- a light backing so the label stays readable over points and grid
      C.rect(t, (right_side and tx or tx - lw) - 3 * fs, floor(ty - th / 2 + 0.5) - 2 * fs, lw + 6 * fs,
        th + 4 * fs, "#ffffff", {alpha = 0.8, clip = clip})
      C.text(t, tx, ty, label, INK, {scale = ax.fs, valign = "middle", align = right_side and "left" or "right",
        bold = true, clip = clip})
    end
  end
end

local lines_keys = {"title", "xlabel", "ylabel", "logx", "logy", "marker", "series"}
local scatter_keys = {"title", "xlabel", "ylabel", "logx", "logy", "points", "best", "categories", "spread"}

local function opt_string(opts, key)
  local v = opts[key]
  if v ~= nil and type(v) ~= "string" and type(v) ~= "number" then fail("%s must be a string, got %s", key, type(v)) end
  return v ~= nil and tostring(v) or nil
end

local function opt_bool(opts, key)
  local v = opts[key]
  if v ~= nil and type(v) ~= "boolean" then fail("%s must be a boolean, got %s", key, type(v)) end
  return v == true
end

-- A panel spec (validated) from user options; kind "lines" or "scatter".
local function panel_spec(opts, kind)
  local spec = {kind = kind, title = opt_string(opts, "title"), xlabel = opt_string(opts, "xlabel"),
                ylabel = opt_string(opts, "ylabel"), logx = opt_bool(opts, "logx"), logy = opt_bool(opts, "logy")}
  if kind == "lines" then
    spec.marker = opt_bool(opts, "marker")
    if opts.series == nil then fail("needs series = { {name=, x=, y=}, ... }") end
    spec.series = check_series(opts.series)
    spec.xs, spec.ys = {}, {}
    for i, s in ipairs(spec.series) do spec.xs[i], spec.ys[i] = s.x, s.y end
  else
    if opts.points == nil then fail("needs points = { {x=, y=}, ... }") end
    spec.points = check_points(opts.points, opts.best)
    spec.best = opts.best and floor(opts.best)
    spec.spread = opt_bool(opts, "spread")
    local categorical = opts.categories ~= nil
    for _, p in ipairs(spec.points) do categorical = categorical or type(p.x) ~= "number" end
    if categorical then -- x names categories: number them as listed, or in order of first appearance
      if spec.logx then fail("logx needs numeric x values") end
      local index, cats, pts = {}, {}, {}
      if opts.categories ~= nil then
        if type(opts.categories) ~= "table" then fail("categories must be a list, got %s", type(opts.categories)) end
        for i, c in ipairs(opts.categories) do
          local tc = type(c)
          if tc ~= "string" and tc ~= "number" and tc ~= "boolean" then
            fail("categories[%d] must be a string, a number or a boolean, got %s", i, tc)
          end
          local name = tostring(c)
          if not index[name] then
            cats[#cats + 1] = name
            index[name] = #cats
          end
        end
      end
      for i, p in ipairs(spec.points) do
        local name = tostring(p.x)
        if not index[name] then
          if opts.categories ~= nil then fail("point %d x (%s) is not one of the categories", i, name) end
          cats[#cats + 1] = name
          index[name] = #cats
        end
        pts[i] = {x = index[name], y = p.y, label = p.label, marker = p.marker, color = p.color, failed = p.failed}
      end
      spec.points, spec.xcats = pts, cats
    end
    local xs, ys = {}, {}
    for i, p in ipairs(spec.points) do xs[i], ys[i] = p.x, not p.failed and p.y or 0 / 0 end
    spec.xs, spec.ys = {xs}, {ys}
  end
  return spec
end

local function draw_panel(t, region, spec, fs, title_scale)
  spec.fs, spec.title_scale = fs, title_scale
  local ax = draw_axes(t, region, spec)
  local info = {area = ax.area, x = ax.x, y = ax.y, pad = ax.pad}
  if spec.kind == "lines" then
    draw_lines(t, ax, spec)
    ax.finish()
    local named = #spec.series > 1
    for _, s in ipairs(spec.series) do named = named or not s.name:match("^series %d+$") end
    if named then info.legend = draw_legend(t, ax, spec.series, spec.marker) end
  else
    draw_points(t, ax, spec)
    ax.finish()
    draw_best(t, ax, spec)
  end
  return info
end

local function image_size(opts, dw, dh)
  local w, h = opts.width or dw, opts.height or dh
  for _, p in ipairs{{"width", w}, {"height", h}} do
    if math.type(p[2]) ~= "integer" and not (type(p[2]) == "number" and p[2] == floor(p[2])) then
      fail("%s must be an integer number of pixels, got %s", p[1], show(p[2]))
    end
  end
  w, h = floor(w), floor(h)
  if w < 160 or w > 8192 or h < 120 or h > 8192 then
    fail("image size %dx%d out of range (width 160..8192, height 120..8192)", w, h)
  end
  return w, h
end

local function font_scale(opts, w, h)
  local fs = opts.font_scale
  if fs == nil then return max(1, min(4, floor(min(w / 800, h / 500) + 0.25))) end
  if math.type(fs) ~= "integer" or fs < 1 or fs > 4 then
    fail("font_scale must be an integer in 1..4, got %s", show(fs))
  end
  return fs
end

-- A white canvas; its failures (no DejaVu Sans font) are the plot function's.
local function new_canvas(w, h)
  local ok, t = pcall(C.new, w, h)
  if not ok then fail("%s", (tostring(t):gsub("^canvas%.new: ", ""))) end
  return t
end

-- Writes the canvas as PNG, SVG or PDF, by the extension of path.
local function save(path, t)
  if path == nil then return end
  if type(path) ~= "string" then fail("path must be a string, got %s", type(path)) end
  local ext = path:match("%.(%w+)$")
  ext = ext and ext:lower()
  if ext ~= "png" and ext ~= "svg" and ext ~= "pdf" then
    fail("path must end in .png, .svg or .pdf, got %s", path)
  end
  local ok, err = pcall(C.save, t, path)
  if not ok then fail("%s", (tostring(err):gsub("^canvas%.save: ", ""))) end
end

local function single(kind, keys)
  local known = set(keys)
  for _, k in ipairs{"path", "width", "height", "font_scale"} do known[k] = true end
  return function(opts)
    check_keys(opts, known, "an options")
    local w, h = image_size(opts, 800, 500)
    local fs = font_scale(opts, w, h)
    local spec = panel_spec(opts, kind)
    if opts.path ~= nil and type(opts.path) ~= "string" then fail("path must be a string, got %s", type(opts.path)) end
    local t = new_canvas(w, h)
    local info = draw_panel(t, {x = 0, y = 0, w = w, h = h}, spec, fs, 1.5 * fs)
    save(opts.path, t)
    return t:tensor(), info
  end
end

--- cnn.plot.lines{path=, series={{name=, x=, y=}, ...}, title=, xlabel=, ylabel=, width=800, height=500,
---   logx=false, logy=false, marker=false, font_scale=} -> image, layout
--- A line chart: one line per series.
--- x defaults to 1..#y; x and y are tables of numbers or 1-d tensors; series may have different
--- lengths. NaN, infinities (and values <= 0 on a log axis) are skipped and break the line; a point
--- with no drawable neighbour is drawn as a marker. marker=true marks every point (each series with
--- its own shape). Colours come from cnn.plot.palette; the legend goes where it covers the fewest
--- drawn pixels (top-right first) and is drawn when there are several series or one has a name. A
--- series may set color="#rrggbb", marker= (dot, square, diamond, triangle, circle, star, cross,
--- plus) and width= (pixels, default 2). `path` ends in .png, .svg or .pdf, which sets the format.
plot.lines = public("lines", single("lines", lines_keys))
--- cnn.plot.scatter{path=, points={{x=, y=, label=}, ...}, best=, title=, xlabel=, ylabel=, logx=false,
---   logy=false, categories=, spread=false, width=, height=} -> image, layout
--- A scatter chart: points as dots, points[best] as a star with its label (or "best: <y>").
--- When some x is a string or a boolean the x axis is categorical: one tick per distinct value, in
--- order of first appearance (hp.choice parameters such as an optimiser's name); categories={...}
--- gives every tick in its order, values that no point has included. A point may set marker= and
--- color="#rrggbb", and failed=true: it has no y and sits on the bottom edge of the frame. spread=true
--- moves a point that would cover an earlier one sideways, so identical points all show.
plot.scatter = public("scatter", single("scatter", scatter_keys))

local panels_keys = set{"path", "title", "panels", "cols", "width", "height", "font_scale"}
local panel_keys = set{"title", "xlabel", "ylabel", "logx", "logy", "marker", "series", "points", "best",
                       "categories", "spread"}

--- cnn.plot.panels{path=, panels={p1, p2, ...}, title=, cols=3, width=, height=, font_scale=} -> image, {panels=}
--- A grid of small charts in one image, cols to a row.
--- A panel with `points` is a scatter (keys as cnn.plot.scatter), one with `series` a line chart
--- (keys as cnn.plot.lines); a panel may have a title. Made for hyperparameter searches: one panel
--- per parameter, the metric against its values. Returns the image and each panel's layout.
plot.panels = public("panels", function(opts)
  check_keys(opts, panels_keys, "an options")
  if type(opts.panels) ~= "table" or #opts.panels == 0 then fail("needs panels = { {...}, ... } (at least one)") end
  local n = #opts.panels
  local cols = opts.cols or min(n, 3)
  if math.type(cols) ~= "integer" or cols < 1 then fail("cols must be a positive integer, got %s", show(cols)) end
  cols = min(cols, n)
  local rows = ceil(n / cols)
  local title = opt_string(opts, "title")
  if opts.path ~= nil and type(opts.path) ~= "string" then fail("path must be a string, got %s", type(opts.path)) end
  local specs = {}
  for i, p in ipairs(opts.panels) do
    if type(p) ~= "table" then fail("panel %d must be a table, got %s", i, type(p)) end
    local ok, err = pcall(function()
      check_keys(p, panel_keys, "an options")
      if (p.series == nil) == (p.points == nil) then fail("needs either series (lines) or points (scatter)") end
      specs[i] = panel_spec(p, p.series and "lines" or "scatter")
    end)
    if not ok then
      if getmetatable(err) == Fail then fail("panel %d: %s", i, err.msg) end
      error(err, 0)
    end
  end
  local pw0, ph0 = 400, 300
  local w, h = image_size(opts, cols * pw0, rows * ph0 + (title and 36 or 0))
  local fs = font_scale(opts, w / cols * 2, (h / rows) * 5 / 3)
  local t = new_canvas(w, h)
  local top = 0
  if title then
    local ts = text_w(title, 1.5 * fs, true) <= w - 16 * fs and 1.5 * fs or fs -- a long title, smaller
    title = wrap(title, w - 16 * fs, ts, true, 2) -- and still too long: two lines, the rest elided
    local th = math.max(text_h(title, ts, true), text_h("0", 1.5 * fs, true))
    top = th + 16 * fs
    C.text(t, w / 2, 8 * fs + (th - text_h(title, ts, true)) / 2, title, INK, {scale = ts, align = "center",
      bold = true})
  end
  local cw, chh = floor(w / cols), floor((h - top) / rows)
  local infos = {}
  for i, spec in ipairs(specs) do
    local r, c = (i - 1) // cols, (i - 1) % cols
    infos[i] = draw_panel(t, {x = c * cw, y = top + r * chh, w = cw, h = chh}, spec, fs, fs)
  end
  save(opts.path, t)
  return t:tensor(), {panels = infos}
end)

return plot
