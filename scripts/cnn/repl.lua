--- module cnn.repl
--- What cnnlua's REPL adds to Lua: tab completion, time and timeit.

-- cnn.repl: what cnnlua's REPL adds to Lua: tab-completion candidates (complete) and timing
-- (time, timeit: globals in cnnlua, and the %time / %timeit prompt commands).
-- Completion only reads: raw table fields, metatable __index chains made of tables, an nn
-- module's registries (nn/module.lua keeps them in the instance's one raw field, __nn) and a
-- tensor's documented fields. It never calls an __index function or a method, so pressing TAB
-- cannot run user code or change anything.
local core = require "cnn.core"

local repl = {}

local getmetatable = debug.getmetatable -- the real metatable, even behind a __metatable field
local tensor_mt = getmetatable(core.zeros(0))
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
  if type(v) == "userdata" and getmetatable(v) == tensor_mt then
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
  if type(v) == "userdata" and getmetatable(v) == tensor_mt then
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

--- cnn.repl.timeit(f, n, ...) -> median, min
--- Runs f(...) n times and prints the median and the minimum wall time; returns them in seconds.
--- Without n, about a second's worth (at least 3 runs) after one uncounted warm-up run. f may be a
--- string of code. In cnnlua it is the global `timeit`, and `%timeit [-n N] CODE` at the prompt.
function repl.timeit(f, n, ...)
  f = callable("timeit", f)
  if n ~= nil and (math.type(n) ~= "integer" or n < 1) then
    error("timeit: n must be a positive integer, got " .. tostring(n), 2)
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
  io.stdout:write(string.format("timeit: %d run%s, median %s, min %s\n", n, n == 1 and "" or "s",
    duration(median), duration(times[1])))
  return median, times[1]
end

return repl
