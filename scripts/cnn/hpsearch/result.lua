-- cnn.hpsearch.result: what hp.search returns: every trial (in index order), the best one, and
-- views of them: a ranked text table, a CSV file and a PNG of one scatter panel per parameter.
-- Ranking: "ok" trials by metric, then "pruned" ones (longest run first), then "nan", "failed"
-- and "pending" (not run: an emitted or interrupted search) by trial index.
local space = require "cnn.hpsearch.space"

--- class cnn.hpsearch.Result
--- What cnn.hpsearch.search returns: every trial, the best one, and views of them.
--- Fields: trials, best, total_steps, interrupted, seconds (see cnn.hpsearch.search).
local Result = {}
Result.__index = Result
Result.__name = "hpsearch.Result"

local status_order = {ok = 1, pruned = 2, nan = 3, failed = 4, pending = 5}

local better = space.better

--- cnn.hpsearch.Result.new{trials=, names=, metric=, mode=, ...} -> result
--- Makes a result from trial records and finds the best "ok" trial (hp.search does this).
function Result.new(r)
  local function bad(fmt, ...) error("hpsearch.Result.new: " .. string.format(fmt, ...), 3) end
  if type(r) ~= "table" then bad("expected a table of fields, got %s", type(r)) end
  if type(r.trials) ~= "table" then bad("trials must be a list of trial tables, got %s", type(r.trials)) end
  if r.mode ~= nil and r.mode ~= "min" and r.mode ~= "max" then
    bad('mode must be "min" or "max", got %s', tostring(r.mode))
  end
  for i, t in ipairs(r.trials) do
    if type(t) ~= "table" then bad("trials[%d] must be a table, got %s", i, type(t)) end
    if t.status == "ok" and type(t.metric) ~= "number" then
      bad("trials[%d] is ok but its metric is %s", i, type(t.metric))
    end
  end
  setmetatable(r, Result)
  local best
  for _, t in ipairs(r.trials) do
    if t.status == "ok" and (not best or better(t.metric, best.metric, r.mode)) then best = t end
  end
  r.best = best and {params = best.params, metric = best.metric, seed = best.seed, index = best.index} or nil
  local steps, any = 0, false
  for _, t in ipairs(r.trials) do
    if t.steps then steps, any = steps + t.steps, true end
  end
  r.total_steps = any and steps or nil
  return r
end

--- cnn.hpsearch.Result:ranked() -> {trials}
--- The trials, best first: "ok" ones by metric, then pruned, NaN, failed and pending ones.
function Result:ranked()
  local list = {}
  for i, t in ipairs(self.trials) do list[i] = t end
  local mode = self.mode
  table.sort(list, function(a, b)
    local sa, sb = status_order[a.status] or 6, status_order[b.status] or 6
    if sa ~= sb then return sa < sb end
    if a.status == "ok" and a.metric ~= b.metric then return better(a.metric, b.metric, mode) end
    if a.status == "pruned" then
      if (a.steps or 0) ~= (b.steps or 0) then return (a.steps or 0) > (b.steps or 0) end
      if a.metric ~= b.metric and a.metric == a.metric and b.metric == b.metric then
        return better(a.metric, b.metric, mode)
      end
    end
    return a.index < b.index
  end)
  return list
end

--- cnn.hpsearch.Result.format(v) -> string
--- A value as result:table() shows it ("%.4g" for floats, "-" for nil).
local function fmt(v)
  if v == nil then return "-" end
  if type(v) == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then return space.num(v) end
    return string.format("%.4g", v)
  end
  return tostring(v)
end

Result.format = fmt -- a value as the table shows it (%.4g for floats)

-- The first line of s, cut to width bytes ("..." at the end when cut)
local function first_line(s, width)
  if not s then return "" end
  s = tostring(s):match("^[^\n]*")
  if #s > width then s = s:sub(1, width - 3) .. "..." end
  return s
end
Result._first_line = first_line -- for the progress lines (hpsearch.lua)

-- name as a column's label, prefixed until it is free in taken: a label there (true), or another
-- column's own name still to come (false)
local function free_label(name, prefix, taken)
  local label = name
  while taken[label] or (label ~= name and taken[label] == false) do label = prefix .. label end
  taken[label] = true
  return label
end

-- The labels of the parameter columns and of the metric's beside `fixed` columns: a parameter
-- named as one of them or as the metric is "param.NAME" (a space with `steps` or `seed`), a metric
-- named as a fixed column "metric.NAME", so that no header repeats a name (pandas and
-- csv.DictReader would drop one).
local function labels(self, fixed)
  local taken = {}
  for _, c in ipairs(fixed) do taken[c] = true end
  local metric = taken[self.metric] and "metric." .. self.metric or self.metric
  taken[metric] = true
  local out = {}
  for _, n in ipairs(self.names) do taken[n] = taken[n] or false end -- names as given come first
  for i, n in ipairs(self.names) do out[i] = free_label(n, "param.", taken) end
  return out, metric
end

--- cnn.hpsearch.Result:table() -> string
--- The ranked trials as an aligned text table (a header, a rule, one row per trial), then the best.
function Result:table()
  local cols = {"rank", "trial"}
  local has_steps = self.total_steps ~= nil
  local params, metric = labels(self, {"rank", "trial", "status", "seconds", "note", has_steps and "steps" or nil})
  for _, n in ipairs(params) do cols[#cols + 1] = n end
  local tail = {metric, "status"}
  if has_steps then tail[#tail + 1] = "steps" end
  tail[#tail + 1] = "seconds"
  for _, c in ipairs(tail) do cols[#cols + 1] = c end
  cols[#cols + 1] = "note"
  local rows, numeric = {}, {}
  for r, t in ipairs(self:ranked()) do
    local row = {t.status == "ok" and tostring(r) or "-", tostring(t.index)}
    for _, n in ipairs(self.names) do row[#row + 1] = fmt(t.params[n]) end
    row[#row + 1] = t.status == "pending" and "-" or fmt(t.metric)
    row[#row + 1] = t.status
    if has_steps then row[#row + 1] = fmt(t.steps) end
    row[#row + 1] = t.seconds and string.format("%.1f", t.seconds) or "-"
    row[#row + 1] = first_line(t.message, 60)
    rows[#rows + 1] = row
  end
  for c = 1, #cols do -- numbers right-aligned, text left-aligned
    numeric[c] = true
    for _, row in ipairs(rows) do
      if row[c] ~= "-" and row[c] ~= "" and not tonumber(row[c]) and row[c] ~= "nan" and row[c] ~= "inf"
        and row[c] ~= "-inf" then
        numeric[c] = false
      end
    end
  end
  numeric[#cols] = false
  local widths = {}
  for c, name in ipairs(cols) do
    widths[c] = #name
    for _, row in ipairs(rows) do widths[c] = math.max(widths[c], #row[c]) end
  end
  local function line(cells)
    local out = {}
    for c, s in ipairs(cells) do
      local pad = string.rep(" ", widths[c] - #s)
      out[c] = numeric[c] and pad .. s or (c < #cells and s .. pad or s)
    end
    return (table.concat(out, "  "):gsub("%s+$", ""))
  end
  local lines = {line(cols)}
  local rule = {}
  for c = 1, #cols do rule[c] = string.rep("-", widths[c]) end
  lines[2] = table.concat(rule, "  "):gsub("%s+$", "")
  for _, row in ipairs(rows) do lines[#lines + 1] = line(row) end
  local counts = {}
  for _, t in ipairs(self.trials) do counts[t.status] = (counts[t.status] or 0) + 1 end
  local parts = {}
  for _, s in ipairs{"ok", "pruned", "nan", "failed", "pending"} do
    if counts[s] then parts[#parts + 1] = counts[s] .. " " .. s end
  end
  local summary = string.format("%d trials (%s)", #self.trials, table.concat(parts, ", "))
  if self.best then
    local ps = {}
    for _, n in ipairs(self.names) do ps[#ps + 1] = n .. "=" .. fmt(self.best.params[n]) end
    summary = summary .. string.format("; best: trial %d, %s = %s (%s)", self.best.index, self.metric,
      fmt(self.best.metric), table.concat(ps, ", "))
  end
  lines[#lines + 1] = summary
  return table.concat(lines, "\n")
end

local function csv_cell(v)
  if v == nil then return "" end
  local s = type(v) == "number" and space.num(v) or tostring(v)
  if s:find('[,"\n\r]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

--- cnn.hpsearch.Result:csv(path) -> string
--- Every trial as a CSV row, in index order; writes path when given and returns the text.
--- Columns: trial, seed, status, each parameter, the metric, steps, seconds, pid, message, then
--- the other fields objectives returned in a table, sorted (empty where a trial has none); a
--- parameter named as one of those or as the metric is headed "param.NAME", a metric named as
--- one of those "metric.NAME", a returned field "value.NAME".
function Result:csv(path)
  local header = {"trial", "seed", "status"}
  local params, metric = labels(self, {"trial", "seed", "status", "steps", "seconds", "pid", "message"})
  for _, n in ipairs(params) do header[#header + 1] = n end
  for _, c in ipairs{metric, "steps", "seconds", "pid", "message"} do header[#header + 1] = c end
  -- the other fields objectives returned beside the metric ({metric = m, loss = l}), a column each
  -- (sorted; "value.NAME" where the name is a column already), empty where a trial has none
  local extra, seen, used = {}, {}, {}
  for _, h in ipairs(header) do used[h] = true end
  for _, t in ipairs(self.trials) do
    for k in pairs(t.values or {}) do
      if not seen[k] then seen[k], extra[#extra + 1] = true, k end
    end
  end
  table.sort(extra)
  for _, k in ipairs(extra) do header[#header + 1] = free_label(k, "value.", used) end
  local lines = {}
  for i, h in ipairs(header) do header[i] = csv_cell(h) end
  lines[1] = table.concat(header, ",")
  for _, t in ipairs(self.trials) do
    -- every cell by its column, so a missing value (no steps: the objective never reported) leaves
    -- its column empty instead of shifting the rest left
    local row = {t.index, t.seed, t.status}
    local n = #self.names
    for i, name in ipairs(self.names) do row[3 + i] = t.params[name] end
    row[n + 4], row[n + 5], row[n + 6], row[n + 7] = t.metric, t.steps, t.seconds, t.pid
    row[n + 8] = t.message and t.message:match("^[^\n]*") or nil
    for i, k in ipairs(extra) do row[n + 8 + i] = t.values and t.values[k] end
    local cells = {}
    for c = 1, #header do cells[c] = csv_cell(row[c]) end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  local text = table.concat(lines, "\n") .. "\n"
  if path ~= nil then
    if type(path) ~= "string" then error("result:csv: path must be a string, got " .. type(path), 2) end
    local f, err = io.open(path, "w")
    if not f then error("result:csv: cannot write " .. tostring(err), 2) end
    f:write(text)
    f:close()
  end
  return text
end

local STATUS_LOOK = { -- marker and colour of each status in the plot (cnn.plot.palette's)
  ok = {marker = "dot", color = "#0072B2"},
  pruned = {marker = "circle", color = "#E69F00"},
  nan = {marker = "cross", color = "#D55E00"},
  failed = {marker = "cross", color = "#D55E00"},
}

--- cnn.hpsearch.Result:plot(path, {width=, height=, cols=}) -> image, layout
--- A chart of one scatter panel per searched parameter: every trial's metric against its value.
--- "ok" trials are blue dots, the best a star; pruned trials are orange rings at the last value they
--- reported; failed ones (and NaN) red crosses on the bottom edge of the panel (they have no metric).
--- Trials that land on one spot are spread sideways so each shows. Log x axis for loguniform
--- parameters; a choice gets every one of its values on its axis, sampled or not. The title counts
--- the trials as result:table() does. Writes the picture (cnn.plot.panels: PNG, SVG or PDF by the
--- extension of path) and returns the image and the layout (cnn.plot.panels', with the title).
function Result:plot(path, opts)
  if type(path) ~= "string" then error("result:plot: path must be a string, got " .. type(path), 2) end
  opts = require("cnn.util").check_options("result:plot", opts, {width = true, height = true, cols = true}, 2)
  -- every finished trial: ok first (drawn under the others), then pruned, then failed
  local shown, counts = {}, {}
  for _, st in ipairs{"ok", "pruned", "nan", "failed"} do
    for _, t in ipairs(self.trials) do
      if t.status == st then
        local metric = t.metric
        local failed = st == "nan" or st == "failed" or type(metric) ~= "number" or metric ~= metric or
          metric == math.huge or metric == -math.huge
        shown[#shown + 1] = {t = t, failed = failed}
      end
    end
  end
  for _, t in ipairs(self.trials) do counts[t.status] = (counts[t.status] or 0) + 1 end
  -- a search whose every trial failed is still drawn: its crosses show which values failed
  if #shown == 0 then error("result:plot: no finished trial to plot", 2) end
  local best
  for i, e in ipairs(shown) do
    if self.best and e.t.index == self.best.index then best = i end
  end
  local function point(e, x)
    local look = STATUS_LOOK[e.t.status] or STATUS_LOOK.failed
    return {x = x, y = not e.failed and e.t.metric or nil, failed = e.failed or nil, marker = look.marker,
            color = look.color}
  end
  local panels = {}
  for _, n in ipairs(self.names) do
    local d = self.dists[n]
    if d.kind == "choice" then
      local cats = {}
      for i, v in ipairs(d.values) do cats[i] = fmt(v) end
      local pts = {}
      for i, e in ipairs(shown) do pts[i] = point(e, fmt(e.t.params[n])) end
      panels[#panels + 1] = {title = n, xlabel = n, ylabel = self.metric, points = pts, best = best,
                             categories = cats, spread = true}
    elseif d.kind ~= "const" then
      local pts = {}
      for i, e in ipairs(shown) do pts[i] = point(e, e.t.params[n]) end
      panels[#panels + 1] = {title = n, xlabel = n, ylabel = self.metric, points = pts, best = best,
                             logx = d.kind == "loguniform", spread = true}
    end
  end
  if #panels == 0 then -- nothing varies: the metric against the trial index
    local pts = {}
    for i, e in ipairs(shown) do pts[i] = point(e, e.t.index) end
    panels[1] = {title = "trials", xlabel = "trial", ylabel = self.metric, points = pts, best = best}
  end
  local parts = {}
  for _, st in ipairs{"ok", "pruned", "nan", "failed", "pending"} do
    if counts[st] then
      local what = ({pruned = ": rings", nan = ": crosses", failed = ": crosses", pending = ": not run"})[st] or ""
      parts[#parts + 1] = counts[st] .. " " .. st .. what
    end
  end
  local plot = require "cnn.plot"
  local title = string.format("%s search, %s (%s): %d trials (%s)", self.strategy, self.metric,
    self.mode == "max" and "higher is better" or "lower is better", #self.trials, table.concat(parts, ", "))
  local ok, img, layout = pcall(plot.panels, {path = path, title = title, panels = panels, cols = opts.cols,
                                              width = opts.width, height = opts.height})
  if not ok then -- panels' message (a bad path, a size out of range) under this method, at our caller
    error("result:plot: " .. tostring(img):gsub("^[^\n]-:%d+: ", "", 1):gsub("^plot%.panels: ", "", 1), 2)
  end
  layout.title = title
  return img, layout
end

function Result:__tostring() return self:table() end

return Result
