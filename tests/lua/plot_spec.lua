-- cnn.plot: nice ticks and compact labels against values worked out by hand; line and scatter
-- plots checked pixel by pixel (the frame where the layout says, a data point's pixel where the
-- axis mapping puts it, the legend's swatches, NaN gaps); PNG, SVG and PDF files; the errors; and
-- core.canvas (cairo): crisp and anti-aliased pixels, text measured against DejaVu Sans' advance
-- widths, and its checks.
local cnn = require "cnn"
local core = require "cnn.core"
local plot = require "cnn.plot"
local H = dofile("tests/lua/helpers.lua")

local C = core.canvas

-- Asserts fn fails with a message containing each of the plain strings.
local function err(fn, ...)
  local ok, msg = pcall(fn)
  assert.is_false(ok, "expected an error")
  msg = tostring(msg)
  for _, s in ipairs{...} do
    assert(msg:find(s, 1, true), string.format("error %q does not contain %q", msg, s))
  end
  return msg
end

local function rgb(hex)
  return tonumber(hex:sub(2, 3), 16) / 255, tonumber(hex:sub(4, 5), 16) / 255, tonumber(hex:sub(6, 7), 16) / 255
end

-- The pixels of image tensor t (3, H, W) in the box of pixels round(x)..round(x)+round(w)-1 by
-- round(y)..round(y)+round(h)-1 (0-based), cut to the image; nil when nothing is left.
local function region(t, x, y, w, h)
  local r = function(v) return math.floor(v + 0.5) end
  local x0, y0 = math.max(0, r(x)), math.max(0, r(y))
  local x1, y1 = math.min(t:size(3), r(x) + r(w)), math.min(t:size(2), r(y) + r(h))
  if x1 <= x0 or y1 <= y0 then return nil end
  return t:narrow(2, y0 + 1, y1 - y0):narrow(3, x0 + 1, x1 - x0), (x1 - x0) * (y1 - y0)
end

-- Pixels of that box of image t whose largest channel difference from opts.bg (default white)
-- exceeds opts.tol (default 0.1): the ink in it.
local function count_ink(t, x, y, w, h, opts)
  opts = opts or {}
  local r = region(t, x, y, w, h)
  if not r then return 0 end
  local bg = cnn.tensor({rgb(opts.bg or "#ffffff")}):view(3, 1, 1)
  local diff = (r - bg):abs():max(1)
  return math.floor(diff:gt(opts.tol or 0.1):sum():item() + 0.5)
end

-- Pixel (x, y) (0-based, rounded) of image t: r, g, b.
local function pixel(t, x, y)
  x, y = math.floor(x + 0.5) + 1, math.floor(y + 0.5) + 1
  return t[1][y][x], t[2][y][x], t[3][y][x]
end

-- Pixels of the w x h box at (x, y) whose colour is within tol of hex.
local function count_color(t, hex, x, y, w, h, tol)
  local _, n = region(t, x, y, w, h)
  return (n or 0) - count_ink(t, x, y, w, h, {bg = hex, tol = tol or 0.02})
end

-- Where the axes put data value v: the area inset by info.pad pixels (6 at font scale 1), lo..hi
-- spread linearly (or over log10 for log axes), y growing upwards.
local function px(info, x)
  local a, ax = info.area, info.x
  local f = ax.log and (math.log(x, 10) - math.log(ax.lo, 10)) / (math.log(ax.hi, 10) - math.log(ax.lo, 10))
    or (x - ax.lo) / (ax.hi - ax.lo)
  return a.x + info.pad + f * (a.w - 1 - 2 * info.pad)
end
local function py(info, y)
  local a, ay = info.area, info.y
  local f = ay.log and (math.log(y, 10) - math.log(ay.lo, 10)) / (math.log(ay.hi, 10) - math.log(ay.lo, 10))
    or (y - ay.lo) / (ay.hi - ay.lo)
  return a.y + info.pad + (1 - f) * (a.h - 1 - 2 * info.pad)
end

describe("plot.ticks", function()
  it("picks 1-2-5 steps and widens the range to whole steps", function()
    -- 0..1 in at most 6 ticks: 0.1 needs 11, 0.2 needs 6
    assert.are.same({lo = 0, hi = 1, step = 0.2, values = {0, 0.2, 0.4, 0.6, 0.8, 1}}, plot.ticks(0, 1, 6))
    -- a loss curve 0.05..2.3: steps 0.2 (13 ticks) too many, 0.5 gives 0..2.5
    assert.are.same({0, 0.5, 1, 1.5, 2, 2.5}, plot.ticks(0.05, 2.3, 6).values)
    -- epochs 1..20 in at most 8: 2 needs 11, 5 gives 0..20
    assert.are.same({0, 5, 10, 15, 20}, plot.ticks(1, 20, 8).values)
    -- -3.7..12.1 in at most 6: 2 needs -4..14 (10 ticks), 5 gives -5..15
    assert.are.same({-5, 0, 5, 10, 15}, plot.ticks(-3.7, 12.1, 6).values)
    -- 0..45000 in at most 6: 5000 needs 10, 10000 gives 0..50000
    assert.are.same({0, 10000, 20000, 30000, 40000, 50000}, plot.ticks(0, 45000, 6).values)
    -- 1.2e-4..4.7e-4 in at most 5: 5e-5 needs 9, 1e-4 gives 1e-4..5e-4
    local t = plot.ticks(1.2e-4, 4.7e-4, 5)
    assert.are.equal(5, #t.values)
    for i, v in ipairs{1e-4, 2e-4, 3e-4, 4e-4, 5e-4} do assert.is_true(math.abs(t.values[i] - v) < 1e-18) end
  end)

  it("keeps steps of at least min_step (integer data gets no 1.5)", function()
    -- 1..4 in at most 9: 0.5 would give 7 ticks, min_step 1 forces 1, 2, 3, 4
    assert.are.same({1, 1.5, 2, 2.5, 3, 3.5, 4}, plot.ticks(1, 4, 9).values)
    assert.are.same({1, 2, 3, 4}, plot.ticks(1, 4, 9, 1).values)
  end)

  it("gives decimal tick values exactly (3 * 0.1 is 0.3)", function()
    local t = plot.ticks(0, 0.3, 4)
    assert.are.equal(0.3, t.values[4])
    assert.are.equal(0.1, t.step)
    assert.are.same({0, 0.1, 0.2, 0.3}, t.values)
  end)

  it("pads an empty range", function()
    -- all values 5: +-10% -> 4.5..5.5, step 0.5
    assert.are.same({4.5, 5, 5.5}, plot.ticks(5, 5, 6).values)
    -- all zero: -1..1
    assert.are.same({-1, -0.5, 0, 0.5, 1}, plot.ticks(0, 0, 6).values)
  end)

  it("ends on the doubles' extremes and refuses counts and steps it could never meet", function()
    -- a span of subnormals is an empty range (its steps would underflow to 0 and never fit)
    assert.are.same({-1, -0.5, 0, 0.5, 1}, plot.ticks(0, 4.9e-324, 6).values)
    assert.are.same({-1, -0.5, 0, 0.5, 1}, plot.ticks(0, 1e-300, 6).values)
    assert.are.same({-1e308, 1e308}, {plot.ticks(-1e308, 1e308, 6).lo, plot.ticks(-1e308, 1e308, 6).hi})
    for _, case in ipairs {{4.9e-324, 1}, {4.9e-324, 4.9e-324}, {1e-310, 1.7e308}, {1.7e308, 1.7e308}} do
      local t = plot.log_ticks(case[1], case[2], 6)
      for _, v in ipairs(t.values) do assert.is_true(v >= 1e-307 and v <= 1e308, tostring(v)) end
    end
    err(function() return plot.ticks(0, 1, 6, 0 / 0) end, "plot.ticks: min_step must be a finite number")
    err(function() return plot.ticks(0, 1, math.huge) end, "plot.ticks: max_ticks must be a finite number up to 1000")
    err(function() return plot.ticks(0, 1, 1e9) end, "plot.ticks: max_ticks")
    -- a plot whose data spans only subnormals draws
    assert.are.same({3, 500, 800}, plot.lines{series = {{y = {0, 4.9e-324}}}}:shape())
    assert.are.same({3, 500, 800}, plot.lines{logy = true, series = {{y = {4.9e-324, 1e-300, 1}}}}:shape())
    assert.are.equal("4.94e-324", plot.format_number(4.9e-324))
    assert.are.equal("-9.223e18", plot.format_number(math.mininteger))
  end)

  it("log ticks: decades, 1-2-5 within two decades, every few decades when many", function()
    local t = plot.log_ticks(0.004, 3.2, 6)
    assert.are.same({1e-3, 1e-2, 1e-1, 1, 10}, t.values)
    assert.are.equal(32, #t.minor) -- 2..9 in each of 4 decades
    assert.are.same({"1e-3", "0.01", "0.1", "1", "10"}, plot.format_ticks(t.values))
    assert.are.same({0.1, 0.2, 0.5, 1}, plot.log_ticks(0.2, 0.8, 6).values)
    -- 1e-8..1e4 is 12 decades: steps of ceil(12 / 5) = 3 decades, aligned to multiples of 3
    assert.are.same({1e-9, 1e-6, 1e-3, 1, 1e3, 1e6}, plot.log_ticks(1e-8, 1e4, 6).values)
    -- the axis covers the data where the aligned steps would leave the normal doubles: 1e-300..1e300
    -- (steps of 120 decades) was an axis of 1e-240..1e240, the data's ends off it
    local wide = plot.log_ticks(1e-300, 1e300, 6)
    assert.are.same({1e-300, 1e300}, {wide.lo, wide.hi})
    assert.are.same({1e-240, 1e-120, 1, 1e120, 1e240}, wide.values)
  end)
end)

describe("plot.format_ticks", function()
  it("labels compactly, one notation per axis", function()
    assert.are.same({"0", "0.5", "1", "1.5"}, plot.format_ticks({0, 0.5, 1, 1.5}, 0.5))
    assert.are.same({"-1", "-0.5", "0"}, plot.format_ticks({-1, -0.5, 0}, 0.5))
    assert.are.same({"0", "1e-3", "2e-3"}, plot.format_ticks({0, 1e-3, 2e-3}, 1e-3))
    assert.are.same({"1.2e-4", "1.4e-4"}, plot.format_ticks({1.2e-4, 1.4e-4}, 2e-5))
    assert.are.same({"10k", "12k", "14k"}, plot.format_ticks({10000, 12000, 14000}, 2000))
    assert.are.same({"0", "500k", "1M", "1.5M"}, plot.format_ticks({0, 5e5, 1e6, 1.5e6}, 5e5))
    assert.are.same({"0", "2000", "4000"}, plot.format_ticks({0, 2000, 4000}, 2000))
    assert.are.same({"0.02", "0.04"}, plot.format_ticks({0.02, 0.04}, 0.02))
  end)
end)

describe("plot.lines", function()
  local P1, P2 = plot.palette[1], plot.palette[2]

  it("draws the frame where the layout says and each point where the axes map it", function()
    local t, info = plot.lines{width = 400, height = 300, xlabel = "x", ylabel = "y",
      series = {{name = "up", x = {0, 10}, y = {0, 10}}, {name = "down", x = {0, 10}, y = {10, 0}}}}
    assert.are.same({3, 300, 400}, t:shape())
    -- ranges: both 0..10 whatever the step (1, 2, 5 or 10 all divide 10)
    assert.are.same({0, 10, 0, 10}, {info.x.lo, info.x.hi, info.y.lo, info.y.hi})
    -- the frame: #404040 on the area's edges
    local a = info.area
    local fr = rgb("#404040")
    assert.are.equal(a.h, count_color(t, "#404040", a.x, a.y, 1, a.h))
    assert.are.equal(a.w, count_color(t, "#404040", a.x, a.y + a.h - 1, a.w, 1))
    assert.is_true(math.abs(select(1, pixel(t, a.x + a.w - 1, a.y + 5)) - fr) < 1e-6)
    -- data (2.5, 2.5) lies on "up": a 2-pixel line leaves a fully covered pixel next to it
    local x, y = px(info, 2.5), py(info, 2.5)
    assert.is_true(count_color(t, P1, math.floor(x) - 1, math.floor(y) - 1, 3, 3) > 0)
    assert.are.equal(0, count_color(t, P2, math.floor(x) - 1, math.floor(y) - 1, 3, 3))
    -- (2.5, 7.5) lies on "down"
    x, y = px(info, 2.5), py(info, 7.5)
    assert.is_true(count_color(t, P2, math.floor(x) - 1, math.floor(y) - 1, 3, 3) > 0)
    -- (7.5, 5) is on neither line
    x, y = px(info, 7.5), py(info, 5)
    assert.are.equal(0, count_color(t, P1, math.floor(x) - 2, math.floor(y) - 2, 5, 5, 0.3))
    assert.are.equal(0, count_color(t, P2, math.floor(x) - 2, math.floor(y) - 2, 5, 5, 0.3))
    -- legend: a swatch of each colour inside its box
    local l = info.legend
    assert.is_true(count_color(t, P1, l.x, l.y, l.w, l.h) >= 15)
    assert.is_true(count_color(t, P2, l.x, l.y, l.w, l.h) >= 15)
  end)

  it("puts the legend where the data is not", function()
    local xs, up, down = {}, {}, {}
    for i = 1, 20 do xs[i], up[i], down[i] = i, i, 21 - i end
    -- a rising curve fills the top-right corner: the legend goes top-left
    local _, info = plot.lines{width = 400, height = 300, series = {{name = "acc", x = xs, y = up}}}
    local a, l = info.area, info.legend
    assert.is_true(l.x < a.x + a.w / 2 and l.y < a.y + a.h / 2)
    -- a falling one leaves top-right free (the first choice)
    _, info = plot.lines{width = 400, height = 300, series = {{name = "loss", x = xs, y = down}}}
    a, l = info.area, info.legend
    assert.is_true(l.x > a.x + a.w / 2 and l.y < a.y + a.h / 2)
    -- one unnamed series: no legend
    _, info = plot.lines{width = 400, height = 300, series = {{y = down}}}
    assert.is_nil(info.legend)
  end)

  it("skips NaN and infinite values, breaking the line, and marks a lone point", function()
    local nan = 0 / 0
    local t, info = plot.lines{width = 400, height = 300,
      series = {{name = "s", x = {1, 2, 3, 4, 5, 6, 7}, y = {1, 2, nan, 4, 5, math.huge, 7}},
                {name = "lone", x = {6}, y = {2}}}}
    assert.are.same({0, 8}, {info.y.lo, info.y.hi}) -- 1..7 in at most 6 ticks: step 2
    local function near(color, x, y)
      return count_color(t, color, math.floor(px(info, x)) - 1, math.floor(py(info, y)) - 1, 3, 3, 0.05)
    end
    assert.is_true(near(P1, 1.5, 1.5) > 0)   -- segment 1-2 drawn
    assert.are.equal(0, near(P1, 3, 3))       -- 2-4 broken by the NaN
    assert.is_true(near(P1, 4.5, 4.5) > 0)    -- 4-5 drawn
    assert.are.equal(0, near(P1, 6, 6))       -- 5-7 broken by the inf
    -- the one-point series is a marker centred on its point, in its colour
    local r, g, b = pixel(t, math.floor(px(info, 6) + 0.5), math.floor(py(info, 2) + 0.5))
    local r2, g2, b2 = rgb(P2)
    assert.is_true(math.abs(r - r2) < 0.02 and math.abs(g - g2) < 0.02 and math.abs(b - b2) < 0.02)
  end)

  it("copes with nothing drawable, equal values, tensors, log axes and different lengths", function()
    local nan = 0 / 0
    local _, info = plot.lines{series = {{name = "empty", y = {nan, nan}}}}
    assert.are.same({0, 1}, {info.y.lo, info.y.hi})
    _, info = plot.lines{series = {{y = {3, 3, 3}}}}
    assert.is_true(info.y.lo < 3 and info.y.hi > 3)
    _, info = plot.lines{series = {{name = "t", x = cnn.arange(5), y = cnn.tensor{1, 2, 4, 8, 16}}, {y = {1, 2}}}}
    assert.is_true(info.y.lo <= 1 and info.y.hi >= 16 and info.x.lo <= 0 and info.x.hi >= 4)
    -- log y: values <= 0 are skipped, decades cover 1..100
    _, info = plot.lines{logy = true, series = {{y = {1, 0, 10, -5, 100}}}}
    assert.are.same({1, 100}, {info.y.lo, info.y.hi})
    assert.is_true(info.y.log)
  end)

  it("draws the title and the turned y label", function()
    local t, info = plot.lines{width = 400, height = 300, title = "Loss", ylabel = "loss",
      series = {{y = {1, 2}}}}
    local a = info.area
    assert.is_true(count_ink(t, 0, 0, 400, a.y - 2) > 20)       -- title above the area
    -- anti-aliased: the title's edges are grey, neither paper nor ink
    assert.is_true(count_ink(t, 0, 0, 400, a.y - 2, {tol = 0.1}) - count_ink(t, 0, 0, 400, a.y - 2, {tol = 0.9}) > 20)
    assert.is_true(count_ink(t, 0, a.y, 20, a.h) > 20)          -- y label at the left edge
    local t2, info2 = plot.lines{width = 400, height = 300, series = {{y = {1, 2}}}}
    assert.are.equal(0, count_ink(t2, 0, 0, 400, info2.area.y - 2))
  end)

  it("wraps a title too wide for the image and keeps a long legend inside the plot", function()
    -- the real-use helper's finds: a long title was drawn on one line, cut off at both edges; 30
    -- named series made a legend taller than the image
    local long = string.rep("very long title ", 20)
    local t, info = plot.lines{width = 400, height = 300, title = long, series = {{y = {1, 2}}}}
    local a = info.area
    assert.are.equal(0, count_ink(t, 0, 0, 3, a.y - 2))         -- nothing at the left edge,
    assert.are.equal(0, count_ink(t, 397, 0, 3, a.y - 2))       -- nor at the right one
    assert.is_true(count_ink(t, 0, 0, 400, a.y - 2) > 200)      -- but the title is there, on two lines
    local _, short = plot.lines{width = 400, height = 300, title = "Loss", series = {{y = {1, 2}}}}
    assert.is_true(a.y > short.area.y + 8)
    local series = {}
    for i = 1, 120 do series[i] = {name = "series number " .. i, y = {i, i + 1}} end
    _, info = plot.lines{width = 400, height = 300, series = series}
    local l = info.legend
    a = info.area
    assert.is_true(l.x >= a.x and l.y >= a.y and l.x + l.w <= a.x + a.w and l.y + l.h <= a.y + a.h,
      string.format("legend %d,%d %dx%d outside the area %d,%d %dx%d", l.x, l.y, l.w, l.h, a.x, a.y, a.w, a.h))
    -- the axis labels too (the fifth fuzzing round): elided, nothing in the outer two pixels
    t = plot.lines{width = 400, height = 300, series = {{y = {1, 2}}}, xlabel = string.rep("X", 400),
      ylabel = string.rep("Y", 400)}
    for _, edge in ipairs {{0, 0, 400, 2}, {0, 298, 400, 2}, {0, 0, 2, 300}, {398, 0, 2, 300}} do
      assert.are.equal(0, count_ink(t, table.unpack(edge)), table.concat(edge, ","))
    end
    -- a title of fifty lines is two, and a 20,000-character name is elided in a few measurements
    -- (one character at a time it took seconds)
    local _, many = plot.lines{width = 400, height = 300, series = {{y = {1, 2}}}, title = string.rep("line\n", 50)}
    assert.is_true(many.area.h > 150)
    _, info = plot.lines{width = 400, height = 300, series = {{name = string.rep("x", 20000), y = {1, 2}}}}
    assert.is_true(info.legend.w < 200)
  end)

  it("names itself and the problem in errors, and keeps working", function()
    local ok = {{y = {1, 2}}}
    local msg = err(function()
      plot.lines{series = {{x = {1, 2}, y = {1, 2}}, {x = {1, 2, 3, 4, 5}, y = {1, 2, 3, 4}}}}
    end,
      "plot.lines: series 2 has 5 x values but 4 y values")
    assert.truthy(msg:find("plot_spec.lua", 1, true)) -- raised at the caller's line
    err(function() plot.lines{series = ok, colour = "red"} end, "plot.lines: unknown option 'colour'")
    err(function() plot.lines{title = "x"} end, "plot.lines: needs series")
    err(function() plot.lines{series = {}} end, "plot.lines: series is empty")
    err(function() plot.lines{series = {{y = {1, "a"}}}} end, "plot.lines: series 1 y[2] must be a number, got string")
    err(function() plot.lines{series = {{y = {1}, size = 2}}} end, "plot.lines: unknown option 'size' in series 1")
    err(function() plot.lines{series = {{y = cnn.zeros(2, 2)}}} end, "plot.lines: series 1 y must be a 1-d tensor")
    err(function() plot.lines{series = {{y = {1}, color = "red"}}} end,
      "plot.lines: series 1 color must be \"#rrggbb\"")
    err(function() plot.lines{series = {{y = {1}, marker = "hex"}}} end, "plot.lines: series 1 marker must be one of")
    err(function() plot.lines{series = ok, width = 50} end, "plot.lines: image size 50x500 out of range")
    err(function() plot.lines{series = ok, path = 3} end, "plot.lines: path must be a string")
    err(function() plot.lines(5) end, "plot.lines: expected an options table, got number")
    err(function() plot.lines{series = ok, logy = "yes"} end, "plot.lines: logy must be a boolean")
    err(function() plot.scatter{points = {{x = 1, y = 2}, {x = 2}}} end,
      "plot.scatter: point 2 y must be a number, got nil")
    err(function() plot.scatter{points = {{x = 1, y = 2}}, best = 7} end,
      "plot.scatter: best = 7 is not a point index (1..1)")
    err(function() plot.panels{panels = {{points = {{x = 1, y = 1}}}, {xlabel = "lr"}}} end,
      "plot.panels: panel 2: needs either series (lines) or points (scatter)")
    err(function() plot.panels{panels = {{points = {{x = 1, y = 1}}, typo = 1}}} end,
      "plot.panels: panel 1: unknown option 'typo'")
    local t = plot.lines{series = ok}
    assert.are.same({3, 500, 800}, t:shape())
    H.assert_usable()
  end)
end)

describe("plot.scatter and plot.panels", function()
  it("maps points (log x) and stars the best one in the second colour", function()
    local pts = {{x = 1e-4, y = 0.5}, {x = 1e-3, y = 0.9, label = "lr=1e-3"}, {x = 3e-2, y = 0.7}}
    local t, info = plot.scatter{width = 400, height = 300, logx = true, points = pts, best = 2}
    assert.are.same({1e-4, 0.1}, {info.x.lo, info.x.hi})
    local function centre(p)
      return pixel(t, math.floor(px(info, p.x) + 0.5), math.floor(py(info, p.y) + 0.5))
    end
    local function is(hex, r, g, b)
      local r2, g2, b2 = rgb(hex)
      return math.abs(r - r2) < 0.02 and math.abs(g - g2) < 0.02 and math.abs(b - b2) < 0.02
    end
    assert.is_true(is(plot.palette[1], centre(pts[1])))
    assert.is_true(is(plot.palette[1], centre(pts[3])))
    assert.is_true(is(plot.palette[2], centre(pts[2])))
    -- its label is written to the right of the star
    local x, y = px(info, 1e-3), py(info, 0.9)
    assert.is_true(count_ink(t, x + 12, y - 5, 40, 10, {tol = 0.5}) > 20)
  end)

  it("puts string x values on a categorical axis, in order of first appearance", function()
    local pts = {{x = "sgd", y = 0.7}, {x = "adam", y = 0.9}, {x = "sgd", y = 0.8}}
    local t, info = plot.scatter{width = 400, height = 300, points = pts, best = 2}
    assert.are.same({"sgd", "adam"}, info.x.labels)
    assert.are.same({0.5, 2.5, 1, 2}, {info.x.lo, info.x.hi, info.x.values[1], info.x.values[2]})
    local r, g, b = pixel(t, math.floor(px(info, 2) + 0.5), math.floor(py(info, 0.9) + 0.5))
    local r2, g2, b2 = rgb(plot.palette[2])
    assert.is_true(math.abs(r - r2) < 0.02 and math.abs(g - g2) < 0.02 and math.abs(b - b2) < 0.02)
    err(function() plot.scatter{logx = true, points = pts} end, "plot.scatter: logx needs numeric x values")
  end)

  it("lists every given category, draws each point's own marker and colour, spreads identical points", function()
    -- pixels of the w x h box at (x, y) (0-based) within 0.1 of hex in every channel, from the image
    local function near(t, hex, x, y, w, h)
      local r, g, b = rgb(hex)
      local box = t:narrow(2, y + 1, h):narrow(3, x + 1, w)
      local d = (box[1] - r):abs():max(((box[2] - g):abs()):max((box[3] - b):abs()))
      return d:lt(0.1):sum():item()
    end
    local orange, red = "#E69F00", "#D55E00"
    local pts = {{x = "b", y = 0.5}, {x = "b", y = 0.5, marker = "circle", color = orange},
                 {x = "a", failed = true, marker = "cross", color = red}, {x = "b", y = 1}}
    local t, info = plot.scatter{width = 400, height = 300, points = pts, categories = {"a", "b", "c"}, spread = true}
    assert.are.same({"a", "b", "c"}, info.x.labels) -- "c" has no point and still gets its tick
    assert.are.same({0.5, 1}, {info.y.lo, info.y.hi}) -- the failed point has no y
    local x, y = math.floor(px(info, 2) + 0.5), math.floor(py(info, 0.5) + 0.5)
    assert.is_true(near(t, plot.palette[1], x - 2, y - 2, 5, 5) >= 9) -- the first where it belongs
    assert.are.equal(0, near(t, orange, x - 2, y - 2, 5, 5)) -- the second moved off it ...
    assert.is_true(near(t, orange, x + 3, y - 5, 9, 11) >= 8) -- ... one marker (7 px) to the right
    -- the failed point: a red cross over the bottom edge of the frame under "a"
    local a = info.area
    local fx = math.floor(px(info, 1) + 0.5)
    assert.is_true(near(t, red, fx - 4, a.y + a.h - 5, 9, 9) >= 8)
    err(function() plot.scatter{points = {{x = "z", y = 1}}, categories = {"a"}} end,
      "plot.scatter: point 1 x (z) is not one of the categories")
    err(function() plot.scatter{points = {{x = 1, y = 1, marker = "blob"}}} end, "point 1 marker must be one of")
    err(function() plot.scatter{points = {{x = 1, y = 1, color = "red"}}} end, 'point 1 color must be "#rrggbb"')
  end)

  it("lays panels out in a grid, each with its own axes", function()
    local pts = {{x = 1, y = 1}, {x = 2, y = 3}}
    local t, info = plot.panels{title = "search", cols = 2, panels = {
      {xlabel = "a", points = pts, best = 2}, {xlabel = "b", points = pts}, {series = {{y = {1, 2, 3}}}}}}
    assert.are.same({3, 2 * 300 + 36, 2 * 400}, t:shape())
    assert.are.equal(3, #info.panels)
    local p1, p2, p3 = info.panels[1].area, info.panels[2].area, info.panels[3].area
    assert.is_true(p1.x + p1.w < p2.x and p1.y == p2.y) -- side by side
    assert.is_true(p3.y > p1.y + p1.h and p3.x < p2.x) -- next row, first column
  end)
end)

-- The bytes of the file at path.
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local b = f:read("a")
  f:close()
  return b
end

describe("image files", function()
  local spec = {width = 200, height = 160, title = "Loss", series = {{name = "loss", y = {1, 3, 2}}}}

  it("writes the PNG it returns", function()
    local image = require "cnn.image"
    local base = os.tmpname()
    local path = base .. ".png"
    spec.path = path
    local t = plot.lines(spec)
    local back = image.load(path)
    os.remove(path)
    os.remove(base)
    assert.are.same({3, 160, 200}, back:shape())
    assert.are.equal(0, (back - t):abs():max():item()) -- both 8 bits a channel
  end)

  it("writes SVG and PDF by the extension, any case, with the image's size and its text", function()
    local base = os.tmpname()
    spec.path = base .. ".svg"
    plot.lines(spec)
    local svg = slurp(spec.path)
    os.remove(spec.path)
    assert.truthy(svg:find('^<%?xml version="1.0" encoding="UTF%-8"%?>%s*<svg '))
    assert.truthy(svg:find('width="200px" height="160px" viewBox="0 0 200 160"', 1, true))
    assert.truthy(svg:find("</svg>%s*$"))
    -- every element that opens closes: the document is well-formed as far as tags go
    local depth = 0
    for close, body, selfclose in svg:gmatch("<(/?)([^?!][^>]-)(/?)>") do
      if close == "/" then depth = depth - 1 elseif selfclose == "" then depth = depth + 1 end
      assert.is_true(depth >= 0, body)
    end
    assert.are.equal(0, depth)
    spec.path = base .. ".PDF"
    plot.lines(spec)
    local pdf = slurp(spec.path)
    os.remove(spec.path)
    os.remove(base)
    assert.are.equal("%PDF-", pdf:sub(1, 5))
    assert.truthy(pdf:find("%%EOF%s*$"))
    assert.truthy(pdf:find("/MediaBox %[ 0 0 200 160 %]"))
    assert.truthy(pdf:find("DejaVuSans", 1, true)) -- the font is embedded (as a subset)
  end)

  it("refuses other extensions and unwritable places, naming plot.lines", function()
    local base = os.tmpname()
    spec.path = base .. ".jpg"
    err(function() plot.lines(spec) end, "plot.lines: path must end in .png, .svg or .pdf, got ", ".jpg")
    os.remove(base)
    spec.path = "/nonexistent-dir/x.svg"
    err(function() plot.lines(spec) end, "plot.lines: /nonexistent-dir/x.svg: cannot create")
    H.assert_usable()
  end)

  it("fails with a clear error when DejaVu Sans is not installed", function()
    local conf = os.tmpname()
    local f = assert(io.open(conf, "w"))
    f:write('<?xml version="1.0"?>\n<fontconfig></fontconfig>\n') -- a fontconfig that knows no fonts
    f:close()
    local cnnlua = os.getenv("CNNLUA") or "build/cnnlua"
    local p = io.popen("FONTCONFIG_FILE='" .. conf .. "' '" .. cnnlua ..
      "' -e 'print(pcall(cnn.plot.lines, {series = {{y = {1, 2}}}}))' 2>/dev/null")
    local out = p:read("a")
    p:close()
    os.remove(conf)
    assert.truthy(out:find("false\tplot.lines: the font DejaVu Sans Book was not found", 1, true), out)
    assert.truthy(out:find("apt-get install fonts-dejavu-core", 1, true), out)
  end)
end)

-- DejaVu Sans' advance widths and line height, in font units (2048 an em), from its hmtx and
-- hhea tables (fontTools: TTFont("DejaVuSans.ttf")["hmtx"], the same for DejaVuSans-Bold.ttf).
local ADV = {a = 1255, b = 1300, c = 1126, W = 2025, i = 569, ["?"] = 1087}
local ADV_BOLD = {a = 1382, b = 1466, c = 1214}
local LINE = 1901 + 483 -- ascent + descent

describe("core.canvas", function()
  local function near(a, b) return math.abs(a - b) < 1e-6 end

  it("measures text with the font's own advances and line height (12 pixels an em at scale 1)", function()
    local w, h = C.text_size("abc", 1)
    assert.is_true(near(w, 12 * (ADV.a + ADV.b + ADV.c) / 2048), w) -- 21.568359375
    assert.is_true(near(h, 12 * LINE / 2048), h)                     -- 13.96875
    w, h = C.text_size("abc", 2.5, true)
    assert.is_true(near(w, 30 * (ADV_BOLD.a + ADV_BOLD.b + ADV_BOLD.c) / 2048), w)
    assert.is_true(near(h, 30 * LINE / 2048), h)
    -- proportional: three W are wider than three i by 3 * (2025 - 569) units
    local ww, wi = C.text_size("WWW", 1), C.text_size("iii", 1)
    assert.is_true(near(ww - wi, 12 * 3 * (ADV.W - ADV.i) / 2048))
    -- lines: the widest one, and one line height each; a byte that is not UTF-8 counts as '?'
    w, h = C.text_size("ab\nW", 1)
    assert.is_true(near(w, 12 * math.max(ADV.a + ADV.b, ADV.W) / 2048) and near(h, 2 * 12 * LINE / 2048))
    assert.is_true(near((C.text_size("a\xffb", 1)), 12 * (ADV.a + ADV["?"] + ADV.b) / 2048))
  end)

  it("draws text anti-aliased inside the box it reports, placed by align and valign", function()
    local c = C.new(120, 60)
    local x, y, w, h = C.text(c, 60, 30, "Wave", "#000000", {align = "center", valign = "middle"})
    local ww, hh = C.text_size("Wave", 1)
    assert.are.same({60 - ww / 2, 30 - hh / 2, ww, hh}, {x, y, w, h})
    local t = c:tensor()
    local ink = count_ink(t, 0, 0, 120, 60)
    assert.is_true(ink > 30)
    assert.are.equal(ink, count_ink(t, math.floor(x), math.floor(y), math.ceil(w) + 2, math.ceil(h) + 2))
    -- grey edges: pixels neither white nor black
    local grey = count_ink(t, 0, 0, 120, 60, {tol = 0.1}) - count_ink(t, 0, 0, 120, 60, {tol = 0.9})
    assert.is_true(grey > 10, grey)
    -- turned a quarter: the box is h wide and w tall, anchored by its top-left corner
    x, y, w, h = C.text(c, 5, 2, "Wave", "#000000", {rotate = 90})
    assert.are.same({5, 2, hh, ww}, {x, y, w, h})
    -- the first baseline at y: the ascent (1901 units) above it
    x, y = C.text(c, 0, 50, "Wave", "#000000", {valign = "baseline", align = "right"})
    assert.is_true(near(x, -ww) and near(y, 50 - 12 * 1901 / 2048))
  end)

  it("draws crisp whole pixels without anti-aliasing and gives the drawing as a tensor", function()
    local c = C.new(6, 4)
    assert.are.equal("canvas 6x4", tostring(c))
    assert.are.same({6, 4}, {c:size()})
    assert.are.same({1, 1, 1}, {C.pixel(c, 3, 1)}) -- white to start
    C.line(c, 0, 1, 4, 1, "#ff0000", {aa = false})
    assert.are.same({1, 0, 0}, {C.pixel(c, 0, 1)}) -- both end pixels, nothing around them
    assert.are.same({1, 0, 0}, {C.pixel(c, 4, 1)})
    assert.are.same({1, 1, 1}, {C.pixel(c, 5, 1)})
    assert.are.same({1, 1, 1}, {C.pixel(c, 3, 0)})
    assert.are.same({1, 1, 1}, {C.pixel(c, 3, 2)})
    assert.are.same({0, 0, 0}, {C.pixel(c, 6, 1)}) -- outside: black
    C.rect(c, 1, 2, 2, 2, {0, 0, 1})
    assert.are.same({0, 0, 1}, {C.pixel(c, 2, 3)})
    assert.are.equal(4 + 5, c:count_ink(0, 0, 6, 4))
    local t = c:tensor()
    assert.are.same({3, 4, 6}, t:shape())
    -- blue: 0 under the red line (row 1, pixels 0..4), 1 on white and in the blue square
    assert.are.same({{1, 1, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 1}, {1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1}}, t[3]:totable())
    assert.are.same({1, 0, 0, 1, 1, 1}, t[2][3]:totable()) -- green of row 2: the square at pixels 1, 2
    -- a 2-pixel anti-aliased line between pixel rows covers two rows fully
    c = C.new(10, 6)
    c:line(2, 2.5, 7, 2.5, "#000000", {width = 2})
    assert.are.same({0, 0, 0}, {C.pixel(c, 4, 2)})
    assert.are.same({0, 0, 0}, {C.pixel(c, 4, 3)})
    assert.are.same({1, 1, 1}, {C.pixel(c, 4, 1)})
    -- clip: only the pixels inside get paint
    c:fill("#00ff00", {clip = {8, 0, 2, 6}})
    assert.are.equal(12, c:count_ink(8, 0, 2, 6, {bg = "#00ff00", tol = 0.01}) == 0 and 12 or -1)
    assert.are.same({1, 1, 1}, {C.pixel(c, 7, 0)})
  end)

  it("breaks polylines at NaN, dots lone points, and survives any coordinates", function()
    local c = C.new(40, 20)
    local nan = 0 / 0
    c:polyline({2, 10, nan, 20, 30, nan, 36}, {10, 10, 10, 10, 10, nan, 10}, "#000000", {width = 2})
    assert.are.same({0, 0, 0}, {C.pixel(c, 6, 10)})  -- 2-10 drawn
    assert.are.same({1, 1, 1}, {C.pixel(c, 15, 10)}) -- 10-20 broken
    assert.are.same({0, 0, 0}, {C.pixel(c, 25, 10)}) -- 20-30 drawn
    assert.is_true(c:count_ink(35, 9, 3, 3) > 0)     -- 36 alone: a dot
    -- far-away and non-finite geometry draws what is visible, nothing else, and returns
    local big, inf = 1e300, math.huge
    c = C.new(40, 20)
    c:line(-big, 5, big, 5, "#000000", {aa = false})
    assert.are.equal(40, c:count_ink(0, 5, 40, 1))
    c:line(0, 0, inf, 0, "#000000")
    c:polyline({-big, 20, big}, {15, 15, 15}, "#000000", {aa = false})
    assert.are.equal(40, c:count_ink(0, 15, 40, 1))
    c:rect(-big, -big, inf, 3e300, "#000000", {alpha = 0.5})
    c:circle(20, 10, 1e5, "#000000", {fill = false})
    c:marker(nan, 5, "star", 10, "#000000")
    c:text(1e300, 5, "far", "#000000")
    assert.is_true(c:count_ink(0, 0, 40, 20) > 0)
  end)

  it("rejects bad canvases, colours and options by name", function()
    local c = C.new(4, 4)
    err(function() C.line(cnn.ones(3, 4, 4), 0, 0, 1, 1, "#000000") end,
      "canvas.line: expected a canvas (from canvas.new), got a tensor")
    err(function() C.fill(nil, "#000000") end, "canvas.fill: expected a canvas (from canvas.new), got nil")
    err(function() C.new(0, 5) end, "canvas.new: size 0x5 must be whole pixels in 1..16384")
    err(function() C.line(c, 0, 0, 1, 1, "red") end, "canvas.line: color must be \"#rrggbb\" or {r, g, b}")
    err(function() C.line(c, 0, 0, 1, 1, {1, 0, 2}) end, "canvas.line: color components must be in [0, 1], got 2")
    err(function() C.line(c, 0, 0, 1, 1, "#000000", {widht = 2}) end, "canvas.line: unknown option 'widht'")
    err(function() C.line(c, 0, 0, "a", 1, "#000000") end, "canvas.line: x1 must be a number, got string")
    err(function() C.marker(c, 1, 1, "hexagon", 5, "#000") end, "canvas.marker: unknown marker 'hexagon'")
    err(function() C.text(c, 0, 0, "x", "#000", {scale = 0}) end,
      "canvas.text: option 'scale' must be in (0, 16], got 0")
    err(function() C.text(c, 0, 0, "x", "#000", {valign = "up"}) end, "canvas.text: option 'valign' must be")
    err(function() C.text_size("x", 1, "yes") end, "canvas.text_size: bold must be a boolean, got string")
    err(function() C.polyline(c, {1, 2}, {1}, "#000") end, "canvas.polyline: xs has 2 points but ys has 1")
    err(function() C.circle(c, 1, 1, 1e6, "#000") end, "canvas.circle: r must be in [0, 100000] pixels")
    err(function() c:save("x.gif") end,
      "canvas.save: x.gif: unknown image type (the name must end in .png, .svg or .pdf)")
    err(function() c:save("/nonexistent-dir/x.png") end, "canvas.save: /nonexistent-dir/x.png: cannot create")
    H.assert_usable()
  end)
end)
