-- cnn.hpsearch.space: search-space descriptors (choice, uniform, loguniform, randint, fixed
-- values), their canonical text, seeded sampling and grid enumeration. A trial's params and seed
-- depend only on (search seed, trial index, parameter name): its own splitmix64 stream, apart from
-- cnn's and math.random's generators, so any process recomputes trial i alone.
local space = {}

local show = require("cnn.util").show -- values in messages ("nan", never "-nan")

local Dist = {__name = "hpsearch.space"}
Dist.__index = Dist
space.Dist = Dist

local floor, log, exp = math.floor, math.log, math.exp

-- Errors: a tagged table that hpsearch.search re-raises with its own name.
local Fail = {}
space.Fail = Fail
local function fail(fmt, ...) error(setmetatable({msg = string.format(fmt, ...)}, Fail), 0) end
space.fail = fail

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end
space.finite = finite

-- space.better(a, b, mode): whether metric a is better than b ("max": larger). NaN and the
-- infinities (a diverged run: a loss of -inf is no best) are worse than any finite value.
function space.better(a, b, mode)
  if not finite(a) then return false end
  if not finite(b) then return true end
  if mode == "max" then return a > b end
  return a < b
end
local function is_int(v) return math.type(v) == "integer" or (finite(v) and v == floor(v) and math.abs(v) < 2 ^ 53) end

--- space.num(v): a number as the shortest text that reads back to the same value ("%d" for
--- integers; integral floats print like integers, so 64 and 64.0 give the same text).
function space.num(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  for p = 15, 17 do
    local s = string.format("%." .. p .. "g", v)
    if tonumber(s) == v then return s end
  end
  return string.format("%.17g", v)
end
local num = space.num

local function value_text(v)
  if type(v) == "number" then return num(v) end
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end
space.value_text = value_text

-- ---------------------------------------------------------------------------------------------
-- Constructors (errors name the public function directly: they run outside hpsearch.search)

space.MAX_GRID_POINTS = 1000000 -- per parameter

local function opts_n(fn, opts)
  if opts == nil then return nil end
  require("cnn.util").check_options(fn, opts, {n = true}, 3)
  local n = opts.n
  if n ~= nil and (not is_int(n) or n < 1) then
    error(fn .. ": n (grid points) must be a positive integer, got " .. show(n), 3)
  end
  -- a grid lists every parameter's points: 2^40 of them would exhaust memory before the first trial
  if n ~= nil and n > space.MAX_GRID_POINTS then
    error(string.format("%s: n (grid points) must be at most %d, got %s", fn, space.MAX_GRID_POINTS, num(n)), 3)
  end
  return n and math.tointeger(n)
end

local function check_value(fn, v, where)
  local t = type(v)
  if t == "number" then
    if v ~= v then error(fn .. ": " .. where .. " is nan", 3) end
  elseif t ~= "string" and t ~= "boolean" then
    error(fn .. ": " .. where .. " must be a number, a string or a boolean, got " .. t, 3)
  end
end

--- cnn.hpsearch.choice{v1, v2, ...} -> space
--- One of the listed values (numbers, strings or booleans), uniformly; a grid search takes each.
function space.choice(values)
  if type(values) ~= "table" or getmetatable(values) ~= nil then
    error("hpsearch.choice: expected a list of values {v1, v2, ...}, got " .. type(values), 2)
  end
  local n = #values
  if n == 0 then error("hpsearch.choice: the list of values is empty", 2) end
  for k in pairs(values) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      error("hpsearch.choice: expected a list of values, got key " .. show(k), 2)
    end
  end
  local copy = {}
  for i = 1, n do
    check_value("hpsearch.choice", values[i], "value " .. i)
    copy[i] = values[i]
  end
  return setmetatable({kind = "choice", values = copy}, Dist)
end

local function range(fn, a, b, positive)
  if not finite(a) or not finite(b) then
    error(string.format("%s: bounds must be finite numbers, got %s and %s", fn, show(a), show(b)), 3)
  end
  if not (a < b) then error(string.format("%s: expected low < high, got %s and %s", fn, num(a), num(b)), 3) end
  if positive and a <= 0 then error(string.format("%s: bounds must be positive, got %s", fn, num(a)), 3) end
end

--- cnn.hpsearch.uniform(a, b, {n=}) -> space
--- A float uniform in [a, b); a grid search takes n evenly spaced values, ends included.
function space.uniform(a, b, opts)
  range("hpsearch.uniform", a, b)
  return setmetatable({kind = "uniform", lo = a + 0.0, hi = b + 0.0, n = opts_n("hpsearch.uniform", opts)}, Dist)
end

--- cnn.hpsearch.loguniform(a, b, {n=}) -> space
--- A float in [a, b] whose logarithm is uniform (0 < a < b); a grid takes n values evenly in log.
function space.loguniform(a, b, opts)
  range("hpsearch.loguniform", a, b, true)
  return setmetatable({kind = "loguniform", lo = a + 0.0, hi = b + 0.0, n = opts_n("hpsearch.loguniform", opts)}, Dist)
end

--- cnn.hpsearch.randint(a, b, {n=}) -> space
--- An integer in a..b, both included (as math.random); a grid takes every one, or n of them.
function space.randint(a, b, opts)
  -- integral floats too (2^62 is a float in Lua), up to the integers' range
  local ia, ib = type(a) == "number" and math.tointeger(a), type(b) == "number" and math.tointeger(b)
  if not ia or not ib then
    error(string.format("hpsearch.randint: bounds must be integers, got %s and %s", show(a), show(b)), 2)
  end
  a, b = ia, ib
  if a > b then error(string.format("hpsearch.randint: expected low <= high, got %s and %s", num(a), num(b)), 2) end
  return setmetatable({kind = "randint", lo = math.tointeger(a), hi = math.tointeger(b),
                       n = opts_n("hpsearch.randint", opts)}, Dist)
end

function Dist:__tostring()
  if self.kind == "choice" then
    local t = {}
    for i, v in ipairs(self.values) do t[i] = value_text(v) end
    return "choice(" .. table.concat(t, ",") .. ")"
  elseif self.kind == "const" then
    return value_text(self.value)
  end
  return string.format("%s(%s,%s%s)", self.kind, num(self.lo), num(self.hi), self.n and ",n=" .. self.n or "")
end

-- ---------------------------------------------------------------------------------------------
-- Normalised spaces

--- space.normalize(tbl): {names = sorted names, dists = {name -> Dist}}; a plain list is a
--- choice, a number/string/boolean a fixed value. Raises Fail on anything else.
function space.normalize(tbl)
  if type(tbl) ~= "table" then fail("space must be a table {name = hp.uniform(...), ...}, got %s", type(tbl)) end
  local names, dists = {}, {}
  for name, v in pairs(tbl) do
    if type(name) ~= "string" then fail("space keys must be parameter names (strings), got %s", show(name)) end
    names[#names + 1] = name
    if getmetatable(v) == Dist then
      dists[name] = v
    elseif type(v) == "table" and getmetatable(v) == nil and #v > 0 then
      local ok, d = pcall(space.choice, v)
      if not ok then fail("space.%s: %s", name, tostring(d):gsub("^.-hpsearch%.choice: ", "")) end
      dists[name] = d
    elseif type(v) == "number" or type(v) == "string" or type(v) == "boolean" then
      if v ~= v then fail("space.%s is nan", name) end
      dists[name] = setmetatable({kind = "const", value = v}, Dist)
    else
      fail("space.%s must be hp.choice/uniform/loguniform/randint, a list (a choice) or a fixed value, got %s",
        name, type(v) == "table" and "a table" or type(v))
    end
  end
  if #names == 0 then fail("space is empty") end
  table.sort(names)
  return {names = names, dists = dists}
end

--- space.text(sp): canonical one-line text of a normalised space (for the search's identity).
function space.text(sp)
  local parts = {}
  for i, name in ipairs(sp.names) do parts[i] = name .. "=" .. tostring(sp.dists[name]) end
  return table.concat(parts, ";")
end

--- space.key(names, params): canonical text of a params table, to match trials across runs.
function space.key(names, params)
  local parts = {}
  for i, name in ipairs(names) do
    local v = params[name]
    parts[i] = name .. "=" .. (v == nil and "nil" or value_text(v))
  end
  return table.concat(parts, ";")
end

-- ---------------------------------------------------------------------------------------------
-- Seeded streams: splitmix64 (Steele, Lea and Flood 2014) on Lua's wrapping 64-bit integers

local GOLDEN = 0x9E3779B97F4A7C15

local function mix(z)
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

local function str_hash(s) -- FNV-1a, 64-bit
  local h = 0xcbf29ce484222325
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001b3 end
  return h
end
space.str_hash = str_hash

local function draw(seed, index, salt) -- one uniform double in [0, 1)
  local z = mix(mix(mix(seed ~ salt) + index * GOLDEN) + GOLDEN)
  return (z >> 11) * 2.0 ^ -53
end

--- space.trial_seed(seed, index): the seed trial `index` runs with (0 .. 2^31 - 1).
function space.trial_seed(seed, index)
  return mix(mix(seed ~ 0x5EED5EED) + index * GOLDEN) >> 33
end

--- space.sample(sp, seed, index): trial index's params; each parameter draws from its own stream
--- (keyed by its name), so adding a parameter leaves the others' values alone.
function space.sample(sp, seed, index)
  local params = {}
  for _, name in ipairs(sp.names) do
    local d = sp.dists[name]
    local u = d.kind ~= "const" and draw(seed, index, str_hash(name)) or 0
    local v
    if d.kind == "const" then
      v = d.value
    elseif d.kind == "choice" then
      v = d.values[floor(u * #d.values) + 1]
    elseif d.kind == "uniform" then
      v = d.lo + u * (d.hi - d.lo)
    elseif d.kind == "loguniform" then
      v = math.min(d.hi, math.max(d.lo, exp(log(d.lo) + u * (log(d.hi) - log(d.lo)))))
    elseif d.hi - d.lo >= 0 and d.hi - d.lo < 2 ^ 53 then -- randint, exact
      v = d.lo + math.tointeger(floor(u * (d.hi - d.lo + 1)))
    else -- randint over more than 2^53 values (hi - lo may wrap): in floats, clamped into [lo, hi]
      local f = floor(d.lo + u * (d.hi + 0.0 - d.lo))
      v = f >= 2 ^ 63 and d.hi or math.max(d.lo, math.min(d.hi, math.tointeger(f)))
    end
    params[name] = v
  end
  return params
end

-- The values a grid takes for one parameter.
local function grid_values(name, d)
  if d.kind == "const" then return {d.value} end
  if d.kind == "choice" then return d.values end
  local n = d.n
  if d.kind == "randint" then
    if not n then
      if d.hi - d.lo >= 100 or d.hi - d.lo < 0 then -- < 0: the difference wrapped (bounds near math.maxinteger)
        fail("grid search over randint '%s' (%s values) needs n points: hp.randint(%d, %d, {n = 5})",
          name, space.num(d.hi + 1.0 - d.lo), d.lo, d.hi) -- in floats: hi - lo + 1 may wrap
      end
      local out = {}
      for v = d.lo, d.hi do out[#out + 1] = v end
      return out
    end
    local out, seen = {}, {}
    for k = 1, n do
      -- in floats: hi - lo and lo + hi may pass math.maxinteger
      local v = n == 1 and d.lo / 2 + d.hi / 2 or d.lo + (d.hi + 0.0 - d.lo) * (k - 1) / (n - 1)
      v = math.tointeger(math.max(d.lo, math.min(d.hi, floor(v + (n == 1 and 0 or 0.5))))) or d.lo
      if not seen[v] then
        seen[v] = true
        out[#out + 1] = v
      end
    end
    return out
  end
  if not n then
    fail("grid search over %s '%s' needs n points: hp.%s(%s, %s, {n = 5})", d.kind, name, d.kind, num(d.lo), num(d.hi))
  end
  local out = {}
  for k = 1, n do
    local f = n == 1 and 0.5 or (k - 1) / (n - 1)
    if d.kind == "uniform" then
      out[k] = k == n and n > 1 and d.hi or d.lo + f * (d.hi - d.lo)
    else
      out[k] = k == n and n > 1 and d.hi or (k == 1 and n > 1 and d.lo or exp(log(d.lo) + f * (log(d.hi) - log(d.lo))))
    end
  end
  return out
end

--- space.grid(sp, limit): the grid's points in order (the last parameter by name varies
--- fastest), at most `limit` of them; also returns the grid's full size.
function space.grid(sp, limit)
  local lists, total = {}, 1
  for i, name in ipairs(sp.names) do
    lists[i] = grid_values(name, sp.dists[name])
    if total > math.maxinteger // #lists[i] then fail("the grid has more than %d points", math.maxinteger) end
    total = total * #lists[i]
  end
  if not limit and total > 100000 then
    fail("the grid has %d points; give trials = N to run the first N, or use strategy \"random\"", total)
  end
  local count = math.min(total, limit or total)
  local points = {}
  for p = 0, count - 1 do
    local params, rest = {}, p
    for i = #sp.names, 1, -1 do
      local l = lists[i]
      params[sp.names[i]] = l[rest % #l + 1]
      rest = rest // #l
    end
    points[p + 1] = params
  end
  return points, total
end

return space
