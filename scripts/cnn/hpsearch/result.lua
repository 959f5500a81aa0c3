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

local function better(a, b, mode)
  if mode == "max" then return a > b end
  return a < b
end

--- cnn.hpsearch.Result.new{trials=, names=, metric=, mode=, ...} -> result
--- Makes a result from trial records and finds the best "ok" trial (hp.search does this).
function Result.new(r)
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

local function first_line(s, width)
  if not s then return "" end
  s = tostring(s):match("^[^\n]*")
  if #s > width then s = s:sub(1, width - 3) .. "..." end
  return s
end

--- cnn.hpsearch.Result:table() -> string
--- The ranked trials as an aligned text table (a header, a rule, one row per trial), then the best.
function Result:table()
  local cols = {"rank", "trial"}
  for _, n in ipairs(self.names) do cols[#cols + 1] = n end
  local has_steps = self.total_steps ~= nil
  local tail = {self.metric, "status"}
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
--- Columns: trial, seed, status, each parameter, the metric, steps, seconds, pid, message.
function Result:csv(path)
  local header = {"trial", "seed", "status"}
  for _, n in ipairs(self.names) do header[#header + 1] = n end
  for _, c in ipairs{self.metric, "steps", "seconds", "pid", "message"} do header[#header + 1] = c end
  local lines = {}
  for i, h in ipairs(header) do header[i] = csv_cell(h) end
  lines[1] = table.concat(header, ",")
  for _, t in ipairs(self.trials) do
    local row = {t.index, t.seed, t.status}
    for _, n in ipairs(self.names) do row[#row + 1] = t.params[n] end
    row[#row + 1] = t.metric
    row[#row + 1] = t.steps
    row[#row + 1] = t.seconds
    row[#row + 1] = t.pid
    row[#row + 1] = t.message and t.message:match("^[^\n]*") or nil
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

--- cnn.hpsearch.Result:plot(path, {width=, height=, cols=}) -> image
--- A chart of one scatter panel per searched parameter: each "ok" trial's metric against its value.
--- The best trial is starred; log x axis for loguniform parameters, categories for choices. Writes the
--- picture (cnn.plot.panels: PNG, SVG or PDF by the extension of path) and returns the image.
function Result:plot(path, opts)
  if type(path) ~= "string" then error("result:plot: path must be a string, got " .. type(path), 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("result:plot: expected an options table, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if k ~= "width" and k ~= "height" and k ~= "cols" then
      error("result:plot: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local ok_trials = {}
  for _, t in ipairs(self.trials) do
    if t.status == "ok" then ok_trials[#ok_trials + 1] = t end
  end
  if #ok_trials == 0 then error("result:plot: no successful trial to plot", 2) end
  local best
  for i, t in ipairs(ok_trials) do
    if self.best and t.index == self.best.index then best = i end
  end
  local panels = {}
  for _, n in ipairs(self.names) do
    local d = self.dists[n]
    if d.kind == "choice" then
      -- categories, one tick per value in the choice's order (a plot's categories come in order of
      -- first appearance, so the points go in that order)
      local pos = {}
      for i, v in ipairs(d.values) do pos[space.value_text(v)] = pos[space.value_text(v)] or i end
      local order = {}
      for i = 1, #ok_trials do order[i] = i end
      table.sort(order, function(a, b)
        local pa, pb = pos[space.value_text(ok_trials[a].params[n])], pos[space.value_text(ok_trials[b].params[n])]
        if pa ~= pb then return pa < pb end
        return a < b
      end)
      local pts, pbest = {}, nil
      for i, k in ipairs(order) do
        local t = ok_trials[k]
        pts[i] = {x = fmt(t.params[n]), y = t.metric}
        if k == best then pbest = i end
      end
      panels[#panels + 1] = {title = n, xlabel = n, ylabel = self.metric, points = pts, best = pbest}
    elseif d.kind ~= "const" then
      local pts = {}
      for i, t in ipairs(ok_trials) do pts[i] = {x = t.params[n], y = t.metric} end
      panels[#panels + 1] = {title = n, xlabel = n, ylabel = self.metric, points = pts, best = best,
                             logx = d.kind == "loguniform"}
    end
  end
  if #panels == 0 then -- nothing varies: the metric against the trial index
    local pts = {}
    for i, t in ipairs(ok_trials) do pts[i] = {x = t.index, y = t.metric} end
    panels[1] = {title = "trials", xlabel = "trial", ylabel = self.metric, points = pts, best = best}
  end
  local plot = require "cnn.plot"
  local title = string.format("%s search: %s (%s) of %d trials", self.strategy, self.metric,
    self.mode == "max" and "higher is better" or "lower is better", #ok_trials)
  local img = plot.panels{path = path, title = title, panels = panels, cols = opts.cols, width = opts.width,
                          height = opts.height}
  return img
end

function Result:__tostring() return self:table() end

return Result
