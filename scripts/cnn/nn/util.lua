-- Helpers shared by the cnn.nn files: type tests, option checking, grad-mode switching and the
-- Python-style number formatting the module reprs need. Requires only cnn.core (cnn.nn is loaded
-- while the `cnn` table itself is still being built).
local core = require "cnn.core"
local util = require "cnn.util"

local U = {}

U.is_tensor = util.is_tensor

--- Raises "fn: message" (no position prefix: the errors of the C half carry none either).
function U.fail(fn, fmt, ...)
  error(fn .. ": " .. string.format(fmt, ...), 0)
end

-- 17179869184 -> "16 GiB"
local function human_bytes(n)
  local units = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"}
  local u = 1
  while n >= 1024 and u < #units do n, u = n / 1024, u + 1 end
  return string.format(u == 1 and "%d %s" or "%.3g %s", n, units[u])
end

-- The messages of core.empty (and of Lua itself) that mean the tensor cannot be allocated.
local ALLOCATION_FAILURES = {"the number of elements overflows", "cannot allocate", "out of memory",
  "not enough memory"}

local function allocation_failure(err)
  if type(err) ~= "string" then return false end
  for _, m in ipairs(ALLOCATION_FAILURES) do
    if err:find(m, 1, true) then return true end
  end
  return false
end

--- U.new_param(who, what, sizes...): an uninitialised float32 tensor that requires grad, for
--- layer `who`'s parameter `what`. A size the machine cannot hold raises in the layer's terms
--- ("Linear: a weight of shape {2147483648, 2147483648} has 4.61e+18 elements (16 EiB of float32):
--- too large to allocate") instead of the allocator's; any other error (Ctrl-C's "interrupted!")
--- is raised as it came.
function U.new_param(who, what, ...)
  local sizes, n = {...}, 1.0
  for _, v in ipairs(sizes) do n = n * v end
  local ok, t = pcall(core.empty, sizes)
  if not ok then
    if not allocation_failure(t) then error(t, 0) end
    -- a size no machine holds, or memory that ran out now (a 40-byte bias is not too large)
    local now = t:find("out of memory", 1, true) or t:find("not enough memory", 1, true)
    U.fail(who, "a %s of shape {%s} has %.3g elements (%s of float32): %s", what, table.concat(sizes, ", "), n,
      human_bytes(n * 4), now and "out of memory" or "too large to allocate")
  end
  return t:requires_grad_()
end

--- Checks an options table against `known` (a set of names); nil gives {}. No position (as U.fail).
function U.options(fn, opts, known)
  return (util.check_options(fn, opts, known, 0)) -- not a tail call, which would shift the levels
end

--- Runs fn(...) with gradient recording off (cnn.no_grad, which lives in the `cnn` table).
function U.no_grad(fn, ...) return require("cnn.autograd")._with_grad_mode(false, fn, ...) end

local function is_int(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end
U.is_int = is_int

--- v for an error message: a number as itself, anything else with its type (`string "3"`, `a table`),
--- so that nn.Linear("3", 2) never reads "must be an integer, got 3".
function U.describe(v)
  if type(v) == "number" or v == nil then return util.show(v) end
  if type(v) == "string" then return string.format("string %q", v) end
  if type(v) == "boolean" then return "boolean " .. tostring(v) end
  if util.is_tensor(v) then return "a tensor" end
  return "a " .. type(v)
end

--- An integer >= min (checked), as a Lua integer.
function U.int(fn, name, v, min)
  if not is_int(v) or v < min then
    U.fail(fn, "%s must be an integer >= %d, got %s", name, min, U.describe(v))
  end
  return math.tointeger(v)
end

--- A number or a pair of integers >= min, as a pair {a, b}. A number means both.
function U.pair(fn, name, v, min)
  if type(v) == "number" then
    local n = U.int(fn, name, v, min)
    return {n, n}
  end
  if type(v) ~= "table" or #v ~= 2 then
    U.fail(fn, "%s must be an integer or a pair of integers, got %s", name, type(v) == "table" and
      ("a table of " .. #v .. " elements") or U.describe(v))
  end
  return {U.int(fn, name, v[1], min), U.int(fn, name, v[2], min)}
end

--- A float as Python's str() writes it: integers keep ".0" when the Lua value is a float,
--- Lua integers print as integers (LocalResponseNorm(k=2) shows k=2, k=2.0 shows k=2.0).
function U.pyfloat(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v == math.floor(v) and math.abs(v) < 1e16 then return string.format("%.1f", v) end
  local s = string.format("%.15g", v)
  if tonumber(s) ~= v then s = string.format("%.17g", v) end
  return s
end

--- Python's repr of an int or a tuple of ints: 2 -> "2", {2, 3} -> "(2, 3)".
function U.pytuple(v)
  if type(v) == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = tostring(v[i]) end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  return tostring(v)
end

function U.pybool(b)
  return b and "True" or "False"
end

--- "{6, 1, 5, 5}": shapes as the runtime prints them.
function U.shape_str(t)
  return "{" .. table.concat(t:shape(), ", ") .. "}"
end

return U
