-- The oracle: randomized cases run through PyTorch by scripts/tools/gen_oracle_fixtures.py
-- (tests/fixtures/oracle_cases.lua) replayed against cnnlua. Every case rebuilds its inputs (base
-- values + the same view recipe: transposed, permuted, narrowed, selected, expanded), makes the
-- same call in Lua, and compares with what PyTorch gave: whether it raised, the number of results,
-- dtypes, shapes, values (NaN and +-inf at the same places), requires_grad, inputs written in
-- place, and the gradient of every float input after a backward seeded with the fixed pattern
-- w[k] = ((5k + 3) % 8) / 4 - 0.875. A mismatch is reported with a Lua snippet that reproduces
-- it. Every public op (cnn.F, tensor methods and operators, cnn's tensor functions) must have
-- cases, or an exemption with its reason in the generator.
--
-- The only conventions translated are the documented 1-based ones (dims, indices, labels: the
-- generator writes the Lua call with them, and stores index results + 1).
--
-- Tolerance of a float value: |got - want| <= atol + rtol * |want|, where
--   rtol = RTOL = 4e-6 (about 34 float32 ulps: cnnlua and PyTorch compute in float32 with
--          different but equally valid orders of operations and libm/SLEEF functions; a wrong
--          formula, index or branch is off by far more), or, stored with the result, 4 x PyTorch's
--          own worst relative error on it when that is more (a derivative that cancels, as tanh's
--          1 - out^2 near saturation, amplifies the last-bit differences of out; at most 1e-3);
--   atol is stored per result by the generator: 4 x PyTorch's own float32 error on that case
--          beyond rtol (measured against the same case run in float64), so cancellation that
--          PyTorch itself suffers is allowed for, plus 32 ulps of the size of the terms summed
--          into the result: a gradient's largest term (over expanded or broadcast copies, or
--          inside the op), an accumulating op's largest input or result. A sum that cancels to ~0
--          keeps the rounding of its terms, in whatever order each library adds them.
-- int64 and bool results, indices, NaN/inf positions, shapes and dtypes compare exactly.
local cnn = require "cnn"
local F = cnn.F

-- ORACLE_FIXTURE replays another file the generator wrote (a longer hunt: see the generator's main)
local FIX = dofile(os.getenv("ORACLE_FIXTURE") or "tests/fixtures/oracle_cases.lua")
local RTOL = 4e-6 -- must match scripts/tools/gen_oracle_fixtures.py

-- ---- decoding the fixture ----

local B64 = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, #alphabet do B64[alphabet:byte(i)] = i - 1 end
end

local function unbase64(s)
  local out, n = {}, 0
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local v = (B64[a] << 18) | (B64[b] << 12) | ((B64[c] or 0) << 6) | (B64[d] or 0)
    n = n + 1
    out[n] = string.char((v >> 16) & 255)
    if c ~= 61 then
      n = n + 1
      out[n] = string.char((v >> 8) & 255)
    end
    if d ~= 61 then
      n = n + 1
      out[n] = string.char(v & 255)
    end
  end
  return table.concat(out)
end

local FORMAT = { float32 = "<f", int64 = "<i8", uint8 = "B", bool = "B" }

-- The values of an encoded tensor {dt=, shape=, data=} as a flat Lua list (cached on it).
local function decode(e)
  if e.values then return e.values end
  local raw, fmt, vals, pos = unbase64(e.data), FORMAT[e.dt], {}, 1
  while pos <= #raw do
    local v
    v, pos = string.unpack(fmt, raw, pos)
    if e.dt == "bool" then v = v ~= 0 end -- as cnnlua gives a bool element: a Lua boolean
    vals[#vals + 1] = v
  end
  e.values = vals
  return vals
end

-- ---- rendering a reproduction ----

local function num(v)
  if type(v) == "boolean" then return tostring(v) end
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v ~= v then return "0/0" end
  if v == math.huge then return "1/0" end
  if v == -math.huge then return "-1/0" end
  local s = string.format("%.9g", v)
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

local function render(v, names)
  if type(v) == "table" then
    if v.T then return names[v.T] end
    if v.N then return "nil" end
    local parts, keys = {}, {}
    for i = 1, #v do parts[#parts + 1] = render(v[i], names) end
    for k in pairs(v) do
      if type(k) == "string" then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. " = " .. render(v[k], names) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" then return num(v) end
  return tostring(v)
end

local function shape_str(s) return "{" .. table.concat(s, ", ") .. "}" end

local function step_src(step)
  if step[1] == "expand" then return ":expand" .. shape_str(step[2]) end
  local args = {}
  for i = 2, #step do args[#args + 1] = tostring(step[i]) end
  return ":" .. step[1] .. "(" .. table.concat(args, ", ") .. ")"
end

local OP_SRC = {
  __add = "%s + %s", __sub = "%s - %s", __mul = "%s * %s", __div = "%s / %s", __pow = "%s ^ %s",
  __idiv = "%s // %s", __mod = "%s %% %s",
  __unm = "-%s", __index = "%s[%s]", __newindex = "%s[%s] = %s",
  __band = "%s & %s", __bor = "%s | %s", __bxor = "%s ~ %s", __bnot = "~%s",
}

local function call_src(case, names)
  local args = {}
  for i = 1, case.nargs do args[i] = render(case.args[i], names) end
  local kind, name = case.call[1], case.call[2]
  if kind == "m" then return args[1] .. ":" .. name .. "(" .. table.concat(args, ", ", 2) .. ")" end
  if kind == "F" then return "cnn.F." .. name .. "(" .. table.concat(args, ", ") .. ")" end
  if kind == "cnn" then return "cnn." .. name .. "(" .. table.concat(args, ", ") .. ")" end
  return string.format(OP_SRC[name], table.unpack(args))
end

-- A Lua snippet that rebuilds the inputs and makes the call.
local function repro(case)
  local lines, names = {}, {}
  for k, inp in ipairs(case.inputs) do
    local vals = {}
    for i, v in ipairs(decode(inp)) do vals[i] = num(v) end
    lines[#lines + 1] = string.format("local x%d = cnn.tensor({%s}, {dtype = %q}):reshape%s%s", k,
      table.concat(vals, ", "), inp.dt, shape_str(inp.shape), inp.rg and ":requires_grad_()" or "")
    names[k] = "x" .. k
    if inp.view then
      local src = {}
      for _, step in ipairs(inp.view) do src[#src + 1] = step_src(step) end
      lines[#lines + 1] = string.format("local v%d = x%d%s", k, k, table.concat(src))
      names[k] = "v" .. k
    end
  end
  local call = call_src(case, names)
  lines[#lines + 1] = (case.call[2] == "__newindex" and "" or "local r = ") .. call
  if case.out then
    for k, o in ipairs(case.out) do
      if o.seed then
        lines[#lines + 1] = string.format("-- backward from result %d, seeded with ((5k + 3) %% 8) / 4 - 0.875", k)
      end
    end
  end
  return "    " .. table.concat(lines, "\n    ")
end

-- ---- running a case ----

local function build_inputs(case)
  local bases, views = {}, {}
  for k, inp in ipairs(case.inputs) do
    local x = cnn.tensor(decode(inp), { dtype = inp.dt }):reshape(inp.shape)
    if inp.rg then x:requires_grad_() end
    local v = x
    for _, step in ipairs(inp.view or {}) do
      if step[1] == "expand" then
        v = v:expand(step[2])
      else
        v = v[step[1]](v, table.unpack(step, 2))
      end
    end
    bases[k], views[k] = x, v
  end
  return bases, views
end

local function resolve(v, views)
  if type(v) ~= "table" then return v end
  if v.T then return views[v.T] end
  if v.N then return nil end
  local out = {}
  for k, x in pairs(v) do out[k] = resolve(x, views) end
  return out
end

local OPS = {
  __add = function(a, b) return a + b end,
  __sub = function(a, b) return a - b end,
  __mul = function(a, b) return a * b end,
  __div = function(a, b) return a / b end,
  __pow = function(a, b) return a ^ b end,
  __idiv = function(a, b) return a // b end,
  __mod = function(a, b) return a % b end,
  __unm = function(a) return -a end,
  __band = function(a, b) return a & b end,
  __bor = function(a, b) return a | b end,
  __bxor = function(a, b) return a ~ b end,
  __bnot = function(a) return ~a end,
  __index = function(a, i) return a[i] end,
  __newindex = function(a, i, v)
    a[i] = v
    return a
  end,
}

local function invoke(case, args)
  local kind, name = case.call[1], case.call[2]
  local n = case.nargs
  if kind == "m" then return args[1][name](table.unpack(args, 1, n)) end
  if kind == "F" then return F[name](table.unpack(args, 1, n)) end
  if kind == "cnn" then return cnn[name](table.unpack(args, 1, n)) end
  return OPS[name](table.unpack(args, 1, n))
end

local function pattern(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local w = {}
  for k = 0, n - 1 do w[k + 1] = ((5 * k + 3) % 8) * 0.25 - 0.875 end
  return cnn.tensor(w):reshape(shape)
end

local function is_nan(v) return v ~= v end

-- Compares flat value lists; returns nil or a description of the first few differences.
local function compare_values(got, want, dt, atol, rtol)
  rtol = rtol or RTOL
  if #got ~= #want then return string.format("%d values but PyTorch gives %d", #got, #want) end
  local bad = {}
  local nbad = 0
  for i = 1, #want do
    local g, w = got[i], want[i]
    local ok
    if dt == "float32" then
      if is_nan(w) then
        ok = is_nan(g)
      elseif w == math.huge or w == -math.huge then
        ok = g == w
      else
        ok = not is_nan(g) and math.abs(g - w) <= atol + rtol * math.abs(w)
      end
    else
      ok = g == w
    end
    if not ok then
      nbad = nbad + 1
      if #bad < 4 then
        bad[#bad + 1] = string.format("[%d] %s, PyTorch %s", i, num(g), num(w))
      end
    end
  end
  if nbad == 0 then return nil end
  return string.format("%d of %d values differ (atol %g, rtol %g): %s", nbad, #want, atol, rtol,
    table.concat(bad, "; "))
end

local function tensor_values(t)
  local n = t:numel()
  if n == 0 then return {} end
  local flat = t:detach():reshape(n)
  local out = {}
  for i = 1, n do out[i] = flat[i] end
  return out
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- Compares tensor got with encoded e; returns nil or a message.
local function compare_tensor(got, e)
  if not cnn.is_tensor(got) then return "a " .. type(got) .. " instead of a tensor" end
  if got:dtype() ~= e.dt then return "dtype " .. got:dtype() .. ", PyTorch " .. e.dt end
  if not same_shape(got:shape(), e.shape) then
    return "shape " .. shape_str(got:shape()) .. ", PyTorch " .. shape_str(e.shape)
  end
  return compare_values(tensor_values(got), decode(e), e.dt, e.atol or 0, e.rtol)
end

local function flatten_table(v, shape, d, out)
  if d > #shape then
    out[#out + 1] = v
    return true
  end
  if type(v) ~= "table" or #v ~= shape[d] then return false end
  for i = 1, shape[d] do
    if not flatten_table(v[i], shape, d + 1, out) then return false end
  end
  return true
end

local function compare_result(got, e)
  if e.kind == "boolean" then
    if got ~= e.value then return string.format("%s, PyTorch %s", tostring(got), tostring(e.value)) end
    return nil
  end
  if e.kind == "number" then
    if e.dt == "bool" then
      if type(got) ~= "boolean" then return "a " .. type(got) .. " instead of a boolean" end
      return compare_values({ got }, decode(e), e.dt, 0)
    end
    if type(got) ~= "number" then return "a " .. type(got) .. " instead of a number" end
    local want_type = (e.dt == "int64" or e.dt == "uint8") and "integer" or "float"
    if math.type(got) ~= want_type then return "a Lua " .. math.type(got) .. ", PyTorch's is " .. e.dt end
    return compare_values({ got }, decode(e), e.dt, e.atol or 0, e.rtol)
  end
  if e.kind == "table" then
    if type(got) ~= "table" and #e.shape > 0 then return "a " .. type(got) .. " instead of a table" end
    local flat = {}
    if not flatten_table(got, e.shape, 1, flat) then return "nested tables not of shape " .. shape_str(e.shape) end
    return compare_values(flat, decode(e), e.dt, e.atol or 0, e.rtol)
  end
  local msg = compare_tensor(got, e)
  if msg then return msg end
  if e.rg ~= nil and got.requires_grad ~= e.rg then
    return string.format("requires_grad %s, PyTorch %s", tostring(got.requires_grad), tostring(e.rg))
  end
  return nil
end

local function all_zero(t)
  for _, v in ipairs(tensor_values(t)) do
    if v ~= 0 then return false end
  end
  return true
end

-- Runs one case; returns a list of problems (empty when it matches PyTorch).
local function check_case(case)
  local problems = {}
  local function fail(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end
  local ok_build, bases, views = pcall(build_inputs, case)
  if not ok_build then
    fail("building the inputs raised: %s", tostring(bases))
    return problems
  end
  local res = table.pack(pcall(invoke, case, resolve(case.args, views)))
  if case.err then
    if res[1] then fail("returned normally, but PyTorch raises: %s", case.err) end
    return problems
  end
  if not res[1] then
    fail("raised %s", tostring(res[2]))
    return problems
  end
  if res.n - 1 ~= #case.out then fail("%d results, PyTorch %d", res.n - 1, #case.out) end
  for k, e in ipairs(case.out) do
    local msg = compare_result(res[k + 1], e)
    if msg then fail("result %d: %s", k, msg) end
  end
  for _, e in ipairs(case.after or {}) do
    local msg = compare_tensor(views[e.input], e)
    if msg then fail("input %d after the call: %s", e.input, msg) end
  end
  if #problems > 0 or case.torch_backward_failed then return problems end
  -- backward: the seeded results, each with the pattern of its shape
  local total
  for k, e in ipairs(case.out) do
    if e.seed then
      local r = res[k + 1]
      if not (cnn.is_tensor(r) and r.requires_grad) then
        fail("result %d does not require grad, PyTorch's does", k)
        return problems
      end
      local term = (r * pattern(e.shape)):sum()
      total = total and total + term or term
    end
  end
  if total then
    local seeds = 0
    for _, e in ipairs(case.out) do seeds = seeds + (e.seed and 1 or 0) end
    local ok, err
    if seeds == 1 then -- backward from the result itself, as PyTorch's was run
      for k, e in ipairs(case.out) do
        if e.seed then ok, err = pcall(res[k + 1].backward, res[k + 1], pattern(e.shape)) end
      end
    else
      ok, err = pcall(total.backward, total)
    end
    if not ok then
      fail("backward raised %s", tostring(err))
      return problems
    end
  end
  for k, e in pairs(case.grads or {}) do
    local gr = bases[k].grad
    if e == "none" then
      if gr and not all_zero(gr) then fail("input %d has a nonzero gradient, PyTorch none", k) end
    elseif not gr then
      fail("input %d has no gradient, PyTorch has one", k)
    else
      local msg = compare_tensor(gr, e)
      if msg then fail("gradient of input %d: %s", k, msg) end
    end
  end
  return problems
end

-- ---- the specs ----

local by_op, order = {}, {}
for i, case in ipairs(FIX.cases) do
  case.index = i
  if not by_op[case.op] then
    by_op[case.op] = {}
    order[#order + 1] = case.op
  end
  table.insert(by_op[case.op], case)
end

-- F.conv2d runs under every algorithm
local ALGOS = { ["F.conv2d"] = { "auto", "im2col" } }

describe("the oracle (PyTorch " .. FIX.torch .. ")", function()
  it("has cases for every public op, tensor method and operator, or a reason not to", function()
    local names = {}
    for k, v in pairs(cnn.Tensor) do
      if type(v) == "function" then names["Tensor." .. k] = true end
    end
    for k in pairs(getmetatable(cnn.zeros(1))) do names["Tensor." .. k] = true end
    for k, v in pairs(F) do
      if type(v) == "function" then names["F." .. k] = true end
    end
    for k, v in pairs(cnn) do
      if type(v) == "function" then names["cnn." .. k] = true end
    end
    local missing, stale, unknown = {}, {}, {}
    for name in pairs(names) do
      if not by_op[name] and not FIX.exempt[name] then missing[#missing + 1] = name end
    end
    for name in pairs(FIX.exempt) do
      if not names[name] then stale[#stale + 1] = name end
    end
    for name in pairs(by_op) do
      if not names[name] then unknown[#unknown + 1] = name end
    end
    table.sort(missing)
    table.sort(stale)
    table.sort(unknown)
    local msg = {}
    if #missing > 0 then
      msg[#msg + 1] = "no oracle cases for " .. table.concat(missing, ", ") ..
          ": add a drawer in scripts/tools/gen_oracle_fixtures.py (or an EXEMPT entry with its reason)"
    end
    if #stale > 0 then msg[#msg + 1] = "exempt but not defined: " .. table.concat(stale, ", ") end
    if #unknown > 0 then msg[#msg + 1] = "cases for names that do not exist: " .. table.concat(unknown, ", ") end
    assert(#msg == 0, table.concat(msg, "\n"))
  end)

  for _, op in ipairs(order) do
    local cases = by_op[op]
    it(op .. " matches PyTorch on " .. #cases .. " random cases", function()
      local report = {}
      local saved_algo = cnn.get_conv_algorithm()
      for _, case in ipairs(cases) do
        for _, algo in ipairs(ALGOS[op] or { false }) do
          if algo then cnn.set_conv_algorithm(algo) end
          local problems = check_case(case)
          if #problems > 0 then
            report[#report + 1] = string.format("case %d%s: %s\n%s", case.index,
              algo and (" (conv algorithm " .. algo .. ")") or "", table.concat(problems, "; "), repro(case))
          end
        end
      end
      cnn.set_conv_algorithm(saved_algo)
      assert(#report == 0, #report .. " mismatches with PyTorch:\n" .. table.concat(report, "\n"))
    end)
  end
end)
