-- cnn.hpsearch.trial: runs one trial in the current process: seeds cnn's generator, calls the
-- objective with a report function, and turns what happened into a trial record (status "ok",
-- "pruned", "nan" or "failed"). ASHA's rung decisions live here: report() appends the trial's
-- value at each rung to the shared rungs file and reads back the rung's values from every trial.
local core = require "cnn.core"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")
local json = require "cnn.hpsearch.json"
local space = require "cnn.hpsearch.space"
local better = space.better

local trial = {}

-- The error value report() raises to stop a pruned trial; the objective must let it through.
local PRUNED = setmetatable({}, {__name = "hpsearch.pruned",
  __tostring = function() return "hpsearch: trial pruned (stopped early by ASHA)" end})
trial.PRUNED = PRUNED

--- trial.is_interrupt(msg): true for cnnlua's Ctrl-C error ("...: interrupted!"): cnn.util's.
trial.is_interrupt = require("cnn.util").is_interrupt

--- trial.pid(): this process' id (Linux /proc; nil elsewhere).
function trial.pid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end

local finite = space.finite

-- A one-element tensor (a loss or an accuracy as computed) as its number, as ReduceLROnPlateau
-- takes it; anything else unchanged.
local function as_number(v)
  if core.is_tensor(v) and v:numel() == 1 then return v:item() end
  return v
end

-- A failed trial's message (and traceback) as the record keeps it: at most MESSAGE_MAX bytes, so
-- an error that embeds a tensor's text or a table dump does not fill the log and the result.
local MESSAGE_MAX = 4096
local function capped(s)
  if type(s) ~= "string" or #s <= MESSAGE_MAX then return s end
  return s:sub(1, MESSAGE_MAX) .. string.format("... (%d more bytes)", #s - MESSAGE_MAX)
end

-- What a value is, for messages: "a tensor of shape {2, 3}" rather than "a userdata".
local function what(v)
  if core.is_tensor(v) then return "a tensor of shape {" .. table.concat(v:shape(), ", ") .. "}" end
  return v == nil and "nothing" or "a " .. type(v)
end

--- trial.rung_table(path, search, rung): {index -> value} of the values recorded at a rung of this
--- search (the latest line of each trial wins: a re-run trial records again).
function trial.rung_table(path, search, rung)
  local values = {}
  for _, r in ipairs(json.read_lines(path)) do
    if r.type == "rung" and r.search == search and r.rung == rung and math.type(r.index) == "integer" then
      values[r.index] = json.number(r.value)
    end
  end
  return values
end

--- trial.keep(values, index, asha, mode): ASHA's rule at one rung: with k values recorded, a
--- trial goes on while it is among the best max(1, floor(k / eta)); a rung holding fewer than
--- `grace` values stops nobody. A value that is not finite (diverged) never goes on, and ranks
--- below every finite one.
function trial.keep(values, index, asha, mode)
  local mine = values[index]
  if not finite(mine) then return false end
  local k, rank = 0, 1
  for _, v in pairs(values) do
    k = k + 1
    if better(v, mine, mode) then rank = rank + 1 end
  end
  if k < asha.grace then return true end
  return rank <= math.max(1, k // asha.eta)
end

--- trial.run(ctx): ctx = {objective, params, seed, index, search, metric, mode, asha = nil or
--- {budgets, eta, grace, rungs = path}}. Returns the record, or nil and the message when the
--- trial was interrupted (Ctrl-C): nothing to record, the trial runs again next time.
function trial.run(ctx)
  local state = {steps = nil, next_rung = 1}
  local asha = ctx.asha
  local function report(step, value)
    if type(step) ~= "number" or not finite(step) or step < 0 then
      error("hpsearch report: step must be a non-negative number, got " .. show(step), 2)
    end
    value = as_number(value)
    if type(value) ~= "number" then
      error("hpsearch report: value must be a number (or a one-element tensor), got " .. what(value), 2)
    end
    if state.pruned then error(PRUNED, 0) end
    state.steps = math.max(state.steps or step, step)
    state.last = value
    if not asha then return end
    while state.next_rung <= #asha.budgets and step >= asha.budgets[state.next_rung] do
      local k = state.next_rung
      state.next_rung = k + 1
      json.append(asha.rungs, {type = "rung", search = ctx.search, index = ctx.index, seed = ctx.seed, rung = k,
                               budget = asha.budgets[k], step = step, value = value})
      local values = trial.rung_table(asha.rungs, ctx.search, k)
      values[ctx.index] = value
      if not trial.keep(values, ctx.index, asha, ctx.mode) then
        state.pruned, state.pruned_value = true, value
        if not finite(value) then
          state.diverged = string.format("reported %s at step %s (ASHA's rung %d stops a diverged trial)",
            space.num(value), show(step), k)
        end
        error(PRUNED, 0)
      end
    end
  end

  local params = {}
  for k, v in pairs(ctx.params) do params[k] = v end
  core.manual_seed(ctx.seed)
  local t0 = core.wall_time()
  local ok, ret = xpcall(ctx.objective, function(e)
    if e == PRUNED or trial.is_interrupt(e) then return e end
    -- an error object that is not a string: its __tostring, or its type ("table: 0x55de..." said nothing)
    local mt = type(e) ~= "string" and getmetatable(e)
    local msg = type(e) == "string" and e or type(e) == "number" and tostring(e)
      or (type(mt) == "table" and mt.__tostring and tostring(e))
      or string.format("(error object is a %s value)", type(e))
    return {message = msg, traceback = debug.traceback(msg, 2)}
  end, params, report)
  local rec = {type = "trial", search = ctx.search, index = ctx.index, seed = ctx.seed, params = ctx.params,
               seconds = core.wall_time() - t0, steps = state.steps, pid = trial.pid()}
  if not ok and trial.is_interrupt(ret) then return nil, ret end
  if state.pruned then -- even if the objective caught the signal and went on
    rec.status, rec.metric, rec.message = state.diverged and "nan" or "pruned", state.pruned_value, state.diverged
    return rec
  end
  if not ok then
    rec.status = "failed"
    if ret == PRUNED then -- not from report(): the note column said nothing
      rec.message = "the objective raised hp.PRUNED itself (report() raises it when ASHA prunes a trial)"
    elseif type(ret) == "table" then
      rec.message, rec.traceback = capped(ret.message), capped(ret.traceback)
    else
      rec.message = capped(tostring(ret))
    end
    return rec
  end
  ret = as_number(ret)
  local metric = ret
  if type(ret) == "table" then
    metric = as_number(ret[ctx.metric])
    local values = {}
    for k, v in pairs(ret) do
      local tv = type(v)
      if type(k) == "string" and k ~= ctx.metric and (tv == "number" or tv == "string" or tv == "boolean") then
        values[k] = v
      end
    end
    if next(values) then rec.values = values end
    if type(metric) ~= "number" then
      rec.status = "failed"
      rec.message = string.format("the objective returned a table without a number at '%s'", ctx.metric)
      return rec
    end
  elseif type(ret) ~= "number" then
    rec.status = "failed"
    rec.message = string.format("the objective returned %s; expected a number (or a one-element tensor) or a " ..
      "table with field '%s'", what(ret), ctx.metric)
    return rec
  end
  rec.metric = metric
  if finite(metric) then
    rec.status = "ok"
  else
    rec.status = "nan"
    rec.message = "the objective returned " .. space.num(metric)
  end
  return rec
end

return trial
