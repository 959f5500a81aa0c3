--- module cnn.repl
--- What cnnlua's REPL adds to Lua: tab completion, time and timeit.

-- cnn.repl: what cnnlua's REPL adds to Lua: tab-completion candidates (complete) and timing
-- (time, timeit: globals in cnnlua, and the %time / %timeit prompt commands).
-- Completion only reads: raw table fields, metatable __index chains made of tables, an nn
-- module's registries (nn/module.lua keeps them in the instance's one raw field, __nn) and a
-- tensor's documented fields. It never calls an __index function or a method, so pressing TAB
-- cannot run user code or change anything.
local core = require "cnn.core"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")

local repl = {}

local getmetatable = debug.getmetatable -- the real metatable, even behind a __metatable field
local is_tensor = require("cnn.util").is_tensor
local TENSOR_FIELDS = {requires_grad = true, grad = true, grad_fn = true, is_leaf = true}
local KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
                  "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"}
local MAX_DEPTH = 50 -- bounds every walk up a chain, so a cyclic __index cannot hang TAB

local function is_ident(s) return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil end

-- The registries of an nn module instance, or nil.
local function module_state(v)
  local mt = getmetatable(v)
  if type(v) ~= "table" or type(mt) ~= "table" or rawget(mt, "__cnn_module") ~= true then return nil end
  local s = rawget(v, "__nn")
  return type(s) == "table" and s or nil
end

-- Calls add(k, v) for the fields of t and of each table up its chain of metatable __index tables.
local function each_in_chain(t, add, seen)
  local depth = 0
  while type(t) == "table" and not seen[t] and depth < MAX_DEPTH do
    seen[t] = true
    for k, v in next, t do add(k, v) end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index") or nil
    depth = depth + 1
  end
end

-- t[k] as the chain of __index tables gives it (no function is called).
local function chain_get(t, k)
  local depth = 0
  while type(t) == "table" and depth < MAX_DEPTH do
    local v = rawget(t, k)
    if v ~= nil then return v end
    local mt = getmetatable(t)
    t = type(mt) == "table" and rawget(mt, "__index") or nil
    depth = depth + 1
  end
  return nil
end

-- The fields an nn module exposes (its plain fields, parameters, buffers and children) and its
-- class's methods (the class chain: each class's metatable __index is its parent).
local function each_module_member(s, add, seen)
  if type(s.fields) == "table" then
    for k, v in next, s.fields do add(k, v) end
  end
  for _, reg in ipairs({s.params, s.buffers, s.modules}) do
    if type(reg) == "table" and type(reg.map) == "table" then
      for k, v in next, reg.map do add(k, v) end
    end
  end
  each_in_chain(s.class, add, seen)
end

-- v[k] without running code: the step of a dotted path.
local function safe_index(v, k)
  if is_tensor(v) then
    if TENSOR_FIELDS[k] then
      -- the tensor's __index is the runtime's C function: for these names it only reads
      local ok, r = pcall(function() return v[k] end)
      return ok and r or nil
    end
    return rawget(core.Tensor, k)
  end
  if type(v) == "string" then return rawget(string, k) end
  local s = module_state(v)
  if s then
    for _, reg in ipairs({s.fields, s.params and s.params.map, s.buffers and s.buffers.map,
                          s.modules and s.modules.map}) do
      if type(reg) == "table" and rawget(reg, k) ~= nil then return rawget(reg, k) end
    end
    return chain_get(s.class, k)
  end
  if type(v) == "table" then
    local r = chain_get(v, k)
    if r ~= nil then return r end
    -- classes that are their instances' metatable (optim, data): methods sit in the metatable
    local mt = getmetatable(v)
    if type(mt) == "table" and type(rawget(mt, "__index")) == "function" then return chain_get(mt, k) end
    return nil
  end
  local mt = getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then return chain_get(rawget(mt, "__index"), k) end
  return nil
end

-- Calls add(name, value) for every field and method reachable on v.
local function each_member(v, add)
  local seen = {}
  if is_tensor(v) then
    for k, f in next, core.Tensor do add(k, f) end
    for k in pairs(TENSOR_FIELDS) do add(k, true) end
    return
  end
  if type(v) == "string" then
    each_in_chain(string, add, seen)
    return
  end
  local s = module_state(v)
  if s then
    each_module_member(s, add, seen)
    return
  end
  if type(v) == "table" then each_in_chain(v, add, seen) end
  local mt = getmetatable(v)
  if type(mt) == "table" then
    local idx = rawget(mt, "__index")
    if type(idx) == "table" then
      each_in_chain(idx, add, seen)
    elseif type(idx) == "function" then
      each_in_chain(mt, add, seen) -- a class that is its instances' metatable
    end
  end
end

--- cnn.repl.complete(word, env=_G) -> {candidates}
--- The tab completions of word: a name, a dotted path (`cnn.F.con`) or a method call (`x:res`).
--- Looked up in env (the globals by default), each candidate a whole replacement for word, sorted.
--- Names starting with "_" show only when the typed part does. It never calls an __index function or
--- a method, so completion runs no user code.
function repl.complete(word, env)
  env = env or _G
  if type(word) ~= "string" then return {} end
  local head, sep, partial = word:match("^(.*)([.:])([%w_]*)$")
  local prefix
  local found, out = {}, {}
  local function add(k, v)
    if type(k) == "string" and is_ident(k) and not found[k] and k:sub(1, #partial) == partial and
       k:sub(1, 2) ~= "__" and (k:sub(1, 1) ~= "_" or partial:sub(1, 1) == "_") and
       (sep ~= ":" or type(v) == "function") then
      found[k] = true
      out[#out + 1] = prefix .. k
    end
  end
  if head == nil then
    if word ~= "" and not is_ident(word) then return {} end
    sep, partial, prefix = "", word, ""
    each_in_chain(env, add, {})
    for _, k in ipairs(KEYWORDS) do add(k, true) end
  else
    -- head is a path of names joined by dots ("x", "cnn.nn", "m.features")
    if head == "" or head:find(":", 1, true) or head:find("..", 1, true) or head:sub(-1) == "." then return {} end
    local v
    for part in head:gmatch("[^.]+") do
      if not is_ident(part) then return {} end
      if v == nil then v = chain_get(env, part) else v = safe_index(v, part) end
      if v == nil then return {} end
    end
    prefix = head .. sep
    each_member(v, add)
    -- a table that loads its fields on first use (cnn.models) lists them in cnn.help's entries
    local mt = getmetatable(v)
    local help = package.loaded["cnn.help"]
    if sep == "." and type(v) == "table" and type(mt) == "table" and type(rawget(mt, "__index")) == "function" and
       type(help) == "table" and type(rawget(help, "names")) == "function" then
      local ok, names = pcall(help.names)
      for _, n in ipairs(ok and names or {}) do
        local k = n:sub(#head + 2)
        if n:sub(1, #head + 1) == head .. "." and is_ident(k) then add(k, true) end
      end
    end
  end
  table.sort(out)
  return out
end

-- ---- showing values ----------------------------------------------------------------------------

local SHOW_DEPTH = 4     -- nested tables below this show as {...}
local SHOW_ITEMS = 40    -- entries shown per table; the rest are counted
local SHOW_SCALARS = 100 -- values shown of a sequence of numbers, strings or booleans
local SHOW_WIDTH = 100   -- a table fits on one line up to this width
local NESTED_LINES = 8   -- a multi-line value inside a table (a tensor, a module) keeps its first
                         -- lines and its last one (a tensor's shape and dtype)

-- Keys in show order: 1..n of the sequence first, then numbers, then strings, then the rest (each
-- group sorted), so the same table always prints the same way.
local function sorted_keys(t, n)
  local nums, strs, others = {}, {}, {}
  for k in next, t do
    local in_seq = math.type(k) == "integer" and k >= 1 and k <= n -- shown first, in order
    local group = in_seq and {} or type(k) == "number" and nums or type(k) == "string" and strs or others
    group[#group + 1] = k
  end
  table.sort(nums)
  table.sort(strs)
  table.sort(others, function(a, b) return tostring(a) < tostring(b) end)
  local keys = {}
  for i = 1, n do keys[i] = i end
  for _, group in ipairs{nums, strs, others} do
    for _, k in ipairs(group) do keys[#keys + 1] = k end
  end
  return keys
end

-- The length of t's sequence 1..n (no holes, no metamethods).
local function seq_len(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  return n
end

local function key_text(k)
  if is_ident(k) then
    for _, kw in ipairs(KEYWORDS) do
      if k == kw then return string.format("[%q]", k) end
    end
    return k
  end
  if type(k) == "string" then return string.format("[%q]", k) end
  if math.type(k) == "float" then return "[" .. string.format("%.17g", k) .. "]" end
  return "[" .. tostring(k) .. "]"
end

-- A multi-line text shown inside a table: its first lines and its last, continuation lines
-- indented to `indent`.
local function nested_text(text, indent)
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  if #lines > NESTED_LINES then
    local kept = {}
    for i = 1, NESTED_LINES - 2 do kept[i] = lines[i] end
    kept[#kept + 1] = string.format("... (%d lines)", #lines - NESTED_LINES + 1)
    kept[#kept + 1] = lines[#lines]
    lines = kept
  end
  return table.concat(lines, "\n" .. indent)
end

-- The text of a value that is not a plain table, as it shows inside a table.
local function scalar_text(v)
  if type(v) == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if math.type(v) == "float" then
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    local s = string.format("%.14g", v)
    if not s:find("[.eEn]") then s = s .. ".0" end
    return s
  end
  return tostring(v)
end

-- Whether the REPL shows v by its own tostring (tensors, modules, results: anything with a
-- __tostring or a __name, and every non-table).
local function shows_itself(v)
  if type(v) ~= "table" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and (rawget(mt, "__tostring") ~= nil or rawget(mt, "__name") ~= nil)
end

local function show_value(v, indent, depth, open)
  if type(v) ~= "table" then
    if type(v) == "userdata" then return nested_text(tostring(v), indent) end
    return scalar_text(v)
  end
  if shows_itself(v) then
    local ok, text = pcall(tostring, v)
    return nested_text(ok and text or tostring(rawget(v, "__name") or "table"), indent)
  end
  if open[v] then return "<cycle: " .. string.format("%p", v) .. ">" end
  local n = seq_len(v)
  local keys = sorted_keys(v, n)
  if #keys == 0 then return "{}" end
  if depth >= SHOW_DEPTH then return string.format("{... %d item%s}", #keys, #keys == 1 and "" or "s") end
  open[v] = true
  if #keys == n then -- a sequence of numbers, strings or booleans: inline, wrapped
    local scalars = true
    for i = 1, n do
      local tv = type(rawget(v, i))
      if tv ~= "number" and tv ~= "string" and tv ~= "boolean" then scalars = false break end
    end
    if scalars then
      open[v] = nil
      local lines, line = {}, "{"
      for i = 1, math.min(n, SHOW_SCALARS) do
        local text = scalar_text(rawget(v, i)) .. (i < n and "," or "}")
        if #line > 1 and #indent + #line + 1 + #text > SHOW_WIDTH then
          lines[#lines + 1] = line
          line = " " .. text
        else
          line = line .. (#line > 1 and " " or "") .. text
        end
      end
      if n > SHOW_SCALARS then line = line .. string.format(" ... (%d more)}", n - SHOW_SCALARS) end
      lines[#lines + 1] = line
      return table.concat(lines, "\n" .. indent)
    end
  end
  local inner = indent .. "  "
  local items, multiline, width = {}, false, #indent + 2
  for i, k in ipairs(keys) do
    if i > SHOW_ITEMS then
      items[#items + 1] = string.format("... (%d more)", #keys - SHOW_ITEMS)
      break
    end
    local text = show_value(rawget(v, k), inner, depth + 1, open)
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then text = key_text(k) .. " = " .. text end
    items[#items + 1] = text
    multiline = multiline or text:find("\n", 1, true) ~= nil
    width = width + #text + 2
  end
  open[v] = nil
  if not multiline and width <= SHOW_WIDTH then return "{" .. table.concat(items, ", ") .. "}" end
  return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. "\n" .. indent .. "}"
end

--- cnn.repl.show(v) -> string
--- The text the REPL prints for a value: tables with their contents, sorted and indented.
--- A sequence of numbers or strings stays on one line (`{64, 1, 28, 28}`); a longer table gets
--- one entry a line, nested tables indented, at most 4 levels deep and 40 entries a table (the
--- rest counted), a table inside itself marked `<cycle: 0x...>`. Tensors, modules, results and
--- anything with a `__tostring` show as tostring gives them (inside a table, a long text keeps
--- its first lines and its last). A string at the top shows as it is; inside a table, quoted.
function repl.show(v)
  if type(v) == "string" then return v end
  if shows_itself(v) then return tostring(v) end
  return show_value(v, "", 0, {})
end

-- ---- timing ----------------------------------------------------------------------------------

local wall_time = core.wall_time
local BUDGET = 1.0     -- seconds timeit spends when n is not given
local MAX_RUNS = 100000

-- fn itself, or code compiled as an expression (else as statements) in the global environment.
-- An expression is compiled as an argument of table.pack, not as `return EXPR`: a tail call
-- would hand a C function's error position (its caller's line) to time itself.
local function callable(who, f)
  if type(f) == "string" then
    local expr = load("local pack = ... return pack(" .. f .. "\n)", "=" .. who, "t")
    if expr ~= nil then
      return function()
        local r = expr(table.pack)
        return table.unpack(r, 1, r.n)
      end
    end
    local chunk, err = load(f, "=" .. who, "t")
    if chunk == nil then error(who .. ": " .. err, 3) end
    return chunk
  end
  local mt = getmetatable(f)
  if type(f) == "function" or (type(mt) == "table" and rawget(mt, "__call") ~= nil) then return f end
  error(string.format("%s: expected a function or a string of code, got %s", who, type(f)), 3)
end

-- "12.3 ms": three significant digits in s, ms, µs or ns.
local function duration(s)
  local units = {{1, "s"}, {1e-3, "ms"}, {1e-6, "µs"}}
  for _, u in ipairs(units) do
    if s >= u[1] then
      local v = s / u[1]
      return (v >= 1000 and string.format("%.0f", v) or string.format("%.3g", v)) .. " " .. u[2]
    end
  end
  return string.format("%.3g ns", s * 1e9)
end

--- cnn.repl.time(f, ...) -> ...
--- Runs f(...) once, prints its wall time and returns its results; f may be a string of code.
--- In cnnlua it is the global `time`, and `%time CODE` at the prompt.
function repl.time(f, ...)
  f = callable("time", f)
  local t0 = wall_time()
  local res = table.pack(f(...))
  local dt = wall_time() - t0
  io.stdout:write("wall time: ", duration(dt), "\n")
  return table.unpack(res, 1, res.n)
end

local Timing = {__name = "cnn.repl.Timing"}
Timing.__index = Timing
function Timing:__tostring()
  return string.format("%d run%s: median %s, min %s, max %s", self.runs, self.runs == 1 and "" or "s",
    duration(self.median), duration(self.min), duration(self.max))
end

--- cnn.repl.timeit(f, n, ...) -> timing
--- Runs f(...) n times and returns the wall times (median, min, max) as a timing.
--- timing.median, .min and .max are seconds, .runs the count and .times every run's (sorted). At
--- the prompt it shows as `20 runs: median 1.23 ms, min 1.19 ms, max 1.41 ms` (print(timeit(f))
--- in a script). Without n, about a second's worth (at least 3 runs) after one
--- uncounted warm-up run. f may be a string of code. In cnnlua it is the global `timeit`, and
--- `%timeit [-n N] CODE` at the prompt.
function repl.timeit(f, n, ...)
  f = callable("timeit", f)
  if n ~= nil and (math.type(n) ~= "integer" or n < 1) then
    error("timeit: n must be a positive integer, got " .. show(n), 2)
  end
  if n == nil then
    local t0 = wall_time()
    f(...)
    local first = wall_time() - t0
    n = math.max(3, math.min(MAX_RUNS, math.floor(BUDGET / math.max(first, 1e-9))))
  end
  local times = {}
  for i = 1, n do
    local t0 = wall_time()
    f(...)
    times[i] = wall_time() - t0
  end
  table.sort(times)
  local median = n % 2 == 1 and times[(n + 1) // 2] or (times[n // 2] + times[n // 2 + 1]) / 2
  return setmetatable({runs = n, median = median, min = times[1], max = times[n], times = times}, Timing)
end

return repl
