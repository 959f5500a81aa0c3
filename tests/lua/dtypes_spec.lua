-- The bool and uint8 dtypes: every rule of tests/fixtures/dtype_rules.lua (PyTorch 1.13's answer to
-- the same expression, by scripts/tools/gen_dtype_fixtures.py: promotion, conversions, arithmetic
-- modulo 256, bool arithmetic, comparisons, predicates, reductions, masks, where, masked_fill and
-- printing), then what a fixture cannot show: gradients through masks and where, assignment
-- through masks into views, files, and errors that leave the runtime usable.
local cnn = require "cnn"
local H = require "tests.lua.helpers"

local FIX = dofile("tests/fixtures/dtype_rules.lua")

local function decode(v)
  if v == "nan" then return 0 / 0 end
  if v == "inf" then return math.huge end
  if v == "-inf" then return -math.huge end
  return v
end

-- Runs a fixture expression over the fixture's inputs: ok, result (or the error message).
local function run(expr)
  local chunk = assert(load(FIX.inputs .. "return " .. expr, "=case", "t", {cnn = cnn}))
  return pcall(chunk)
end

local function same(got, want)
  if type(want) == "number" and want ~= want then return got ~= got end
  if math.type(want) == "float" and math.type(got) == "float" then
    return got == want or math.abs(got - want) <= 1e-6 * math.max(1, math.abs(want))
  end
  return got == want
end

describe("bool and uint8 as PyTorch 1.13", function()
  for _, c in ipairs(FIX.cases) do
    it(c.what .. ": " .. c.lua, function()
      local ok, r = run(c.lua)
      if c.error then
        assert(not ok, "PyTorch raises (" .. c.error .. ") but cnnlua gives " .. tostring(r))
        assert.is_truthy(tostring(r):find("^[^:]+:%d+: [%a_.]+: "), "an error naming the function: " .. tostring(r))
        return
      end
      assert(ok, tostring(r))
      assert.are.equal(c.dtype, r:dtype())
      assert.are.same(c.shape, r:shape())
      local got = H.values(r)
      assert.are.equal(#c.values, #got)
      for k, w in ipairs(c.values) do
        local want = decode(w)
        if not same(got[k], want) then
          error(string.format("element %d is %s, PyTorch %s", k, tostring(got[k]), tostring(want)))
        end
      end
      -- integer and bool elements come to Lua as integers and booleans
      if c.dtype == "int64" or c.dtype == "uint8" then
        for _, v in ipairs(got) do assert.are.equal("integer", math.type(v)) end
      elseif c.dtype == "bool" then
        for _, v in ipairs(got) do assert.are.equal("boolean", type(v)) end
      end
    end)
  end

  for _, p in ipairs(FIX.prints) do
    it("prints " .. p.what .. " as PyTorch does", function()
      local ok, t = run(p.lua)
      assert(ok, tostring(t))
      local text = tostring(t)
      local values = text:match("^(.-)\n%[")
      assert.are.equal(p.text, values)
      assert.is_truthy(text:find("%[" .. t:dtype() .. " tensor of shape"), text)
    end)
  end

  it("a float value into uint8 must lie in 0..255, an integer in -255..255 (wrapping), as PyTorch", function()
    local U = {dtype = "uint8"}
    H.assert_error(function() return cnn.full({2}, -1.5, U) end, "full", "-1.5", "overflow")
    H.assert_error(function() return cnn.full({2}, 255.5, U) end, "full", "overflow")
    H.assert_error(function() return cnn.zeros(2, U):fill_(-1.0) end, "fill_", "overflow")
    H.assert_error(function() return cnn.tensor({-0.5}, U) end, "tensor", "overflow")
    H.assert_error(function() return cnn.zeros(2, U):masked_fill(cnn.tensor {true, false}, -1.5) end, "masked_fill")
    assert.same({255, 255}, cnn.full({2}, -1, U):totable())
    assert.same({255, 2}, cnn.tensor({-1, 2.75}, U):totable())
    assert.same({255, 255}, cnn.full({2}, 255.0, U):totable())
    assert.same({0, 0}, cnn.full({2}, -0.0, U):totable())
    H.assert_usable()
  end)

  it("argmax and argmin of bool answer where PyTorch needs no kernel: a dim of size 1, an empty result", function()
    assert.same({1, 1}, cnn.tensor({{true}, {false}}):argmax(2):totable())
    assert.same({1, 0}, cnn.zeros(2, 0, {dtype = "bool"}):argmin(1, true):size())
    H.assert_error(function() return cnn.tensor({true, false}):argmax(1) end, "argmax", "bool")
    H.assert_error(function() return cnn.zeros(0, {dtype = "bool"}):argmax(1) end, "argmax")
    H.assert_usable()
  end)

  it("add_ with alpha into a bool tensor ors other in where alpha is nonzero, as PyTorch", function()
    local function t() return cnn.tensor {true, false, false} end
    local o = cnn.tensor {true, true, false}
    assert.same({true, true, false}, t():add_(o, 2):totable()) -- true or (true and 2 ~= 0), ...
    assert.same({true, true, false}, t():add_(o, -1):totable())
    assert.same({true, false, false}, t():add_(o, 0):totable()) -- alpha 0: unchanged
    assert.same({true, true, true}, t():add_(true, 3):totable())
    -- PyTorch 1.13 refuses the float alpha itself ("For integral input tensors, argument alpha
    -- must not be a floating point number"); a float32 other cannot be written into bool
    H.assert_error(function() return t():add_(o, 0.5) end, "add_: alpha must be an integer when the result is bool")
    H.assert_error(function() return t():add_(cnn.tensor {1.5, 1, 1}, 1) end, "add_", "float32")
    H.assert_error(function() return t():add_(cnn.tensor({1, 1, 1}, {dtype = "int64"}), 1) end, "add_", "int64")
    H.assert_error(function() return t():add_(cnn.tensor {true, true}, 0) end, "add_")
    H.assert_usable()
  end)
end)

describe("masks and where", function()
  local B = function(t) return cnn.tensor(t) end

  it("t[mask] passes the gradient back to the selected elements only", function()
    local x = cnn.arange(6.0):view(2, 3):requires_grad_()
    local y = x[x:gt(2)] -- {3, 4, 5}
    H.assert_tensor(y, {3, 4, 5})
    ;(y * cnn.tensor({1, 2, 3})):sum():backward()
    H.assert_tensor(x.grad, {{0, 0, 0}, {1, 2, 3}})
    local ok, err = cnn.autograd.gradcheck(function(a) return a[B{{true, false}, {false, true}}] * 2 end,
      {cnn.randn(2, 2, 3):requires_grad_()})
    assert(ok, err)
  end)

  it("masked_fill's gradient is zero where it filled, and flows to a 0-d value", function()
    local x = cnn.arange(6.0):view(2, 3):requires_grad_()
    local v = cnn.tensor(7.0):requires_grad_()
    local w = cnn.arange(6.0):view(2, 3) + 1
    ;(x:masked_fill(x:gt(2), v) * w):sum():backward()
    -- d/dx: w where x <= 2, 0 elsewhere; d/dv: the sum of w where x > 2 (4 + 5 + 6)
    H.assert_tensor(x.grad, {{1, 2, 3}, {0, 0, 0}})
    assert.are.equal(15, v.grad:item())
    local ok, err = cnn.autograd.gradcheck(function(a) return a:masked_fill(B{true, false, true}, 0.5) end,
      {cnn.randn(2, 3):requires_grad_()})
    assert(ok, err)
  end)

  it("where sends each element's gradient to the side it came from, summed over broadcasting", function()
    local a = cnn.tensor({1, 2}):requires_grad_()
    local b = cnn.tensor(3.0):requires_grad_()
    cnn.where(B{{true, false}, {false, false}}, a, b):sum():backward()
    H.assert_tensor(a.grad, {1, 0})
    assert.are.equal(3, b.grad:item())
    local ok, err = cnn.autograd.gradcheck(function(p, q) return cnn.where(B{{true, false}, {false, true}}, p, q) end,
      {cnn.randn(2, 2):requires_grad_(), cnn.randn(2):requires_grad_()})
    assert(ok, err)
    assert.are.equal("WhereBackward", cnn.where(B{true}, a:narrow(1, 1, 1), 0).grad_fn)
  end)

  it("t[mask] = v writes through views, also where the rows cannot be viewed flat", function()
    local base = cnn.arange(6.0):view(2, 3)
    local tv = base:t() -- (3, 2), strides (1, 3): a full mask cannot view it flat
    tv[tv:gt(3)] = -1
    H.assert_tensor(base, {{0, 1, 2}, {3, -1, -1}})
    tv[B{true, false, false}] = cnn.tensor({8, 9})
    H.assert_tensor(base, {{8, 1, 2}, {9, -1, -1}})
    -- a bool tensor takes booleans
    local m = B{true, true, false}
    m[B{false, true, false}] = false
    H.assert_tensor(m, {true, false, false})
    -- a uint8 value past 255 is refused before anything is written
    local u = cnn.tensor({1, 2}, {dtype = "uint8"})
    H.assert_error(function() u[B{true, true}] = 300 end, "newindex:", "uint8 without overflow")
    H.assert_tensor(u, {1, 2})
  end)

  it("refuses writes through a mask into a tensor that requires grad, or an expanded one", function()
    local x = cnn.ones(3):requires_grad_()
    H.assert_error(function() x[x:gt(0)] = 0 end, "newindex:", "leaf tensor that requires grad")
    local e = cnn.ones(1):expand(3)
    H.assert_error(function() e[B{true, false, true}] = 0 end, "newindex:", "expanded")
    H.assert_error(function() return cnn.ones(3)[cnn.tensor({1.0, 0, 1})] end, "index:", "float32 tensor")
    H.assert_usable()
  end)
end)

describe("uint8 and bool in files", function()
  it("cnn.save and cnn.load keep uint8 and bool tensors (U8, BOOL)", function()
    local d = os.tmpname()
    os.remove(d)
    local u = cnn.tensor({{0, 200}, {255, 7}}, {dtype = "uint8"})
    local m = cnn.tensor({true, false, true})
    cnn.save(d, {u = u:t(), m = m})
    local back = cnn.load(d)
    assert.are.equal("uint8", back.u:dtype())
    H.assert_tensor(back.u, {{0, 255}, {200, 7}})
    assert.are.equal("bool", back.m:dtype())
    H.assert_tensor(back.m, {true, false, true})
    local f = assert(io.open(d, "rb"))
    local bytes = f:read("a")
    f:close()
    os.remove(d)
    assert.is_truthy(bytes:find('"dtype":"U8"', 1, true))
    assert.is_truthy(bytes:find('"dtype":"BOOL"', 1, true))
  end)
end)
