-- Finite-difference checks of every differentiable tensor op in API.md "Tensors", through
-- cnn.autograd.gradcheck. gradcheck computes in float32, so eps is 1e-2 and tolerances 1e-2;
-- inputs stay at least 0.1 away from kinks (abs, relu, clamp bounds, ties of max/min) so a
-- central difference never straddles one.
--
-- Each op's output is projected onto fixed random weights and summed, so every check is a
-- scalar function of the inputs whose gradient weighs each output element differently (a plain
-- sum would hide gradients that are right only on average).
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")


-- Deterministic inputs of a given shape with values in [lo, hi].
local function input(shape, lo, hi, seed)
  cnn.manual_seed(seed or 1)
  local t = cnn.rand(shape) * ((hi or 1) - (lo or -1)) + (lo or -1)
  return t:requires_grad_(true)
end

-- Distinct values spread over [lo, hi] (a permuted linspace): no ties, no values near a kink.
local function spread(shape, lo, hi, seed)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local vals = cnn.linspace(lo, hi, n):totable()
  -- Fisher-Yates with Lua's own generator, seeded for repeatability
  math.randomseed(seed or 1)
  for i = n, 2, -1 do
    local j = math.random(i)
    vals[i], vals[j] = vals[j], vals[i]
  end
  return cnn.tensor(vals):view(shape):requires_grad_(true)
end

local check = H.gradcheck

describe("gradcheck of arithmetic", function()
  it("add of tensors with broadcasting", function()
    check(function(a, b) return a + b end, { input({ 2, 3 }), input({ 3 }, -1, 1, 2) })
    check(function(a, b) return a:add(b) end, { input({ 2, 1 }), input({ 1, 3 }, -1, 1, 2) })
  end)

  it("add with a number", function()
    check(function(a) return a + 2.5 end, { input({ 4 }) })
    check(function(a) return 2.5 + a end, { input({ 4 }) })
  end)

  it("sub of tensors and numbers on both sides", function()
    check(function(a, b) return a - b end, { input({ 2, 3 }), input({ 2, 1 }, -1, 1, 2) })
    check(function(a, b) return a:sub(b) end, { input({ 3 }), input({ 3 }, -1, 1, 2) })
    check(function(a) return 1 - a end, { input({ 3 }) })
    check(function(a) return a - 1 end, { input({ 3 }) })
  end)

  it("mul of tensors with broadcasting and numbers", function()
    check(function(a, b) return a * b end, { input({ 2, 3 }), input({ 3 }, -1, 1, 2) })
    check(function(a, b) return a:mul(b) end, { input({ 3, 1 }), input({ 1, 2 }, -1, 1, 2) })
    check(function(a) return 3 * a end, { input({ 3 }) })
  end)

  it("div of tensors with denominators away from 0", function()
    check(function(a, b) return a / b end, { input({ 2, 3 }), input({ 3 }, 0.5, 2, 2) })
    check(function(a, b) return a:div(b) end, { input({ 2, 3 }), input({ 2, 1 }, -2, -0.5, 2) })
  end)

  it("div with numbers on both sides", function()
    check(function(a) return a / 4 end, { input({ 3 }) })
    check(function(a) return 2 / a end, { input({ 3 }, 0.5, 2) })
  end)

  it("pow with a tensor exponent (both inputs)", function()
    check(function(a, b) return a ^ b end, { input({ 2, 3 }, 0.5, 2), input({ 2, 3 }, -1, 2, 2) })
    check(function(a, b) return a:pow(b) end, { input({ 2, 3 }, 0.5, 2), input({ 3 }, -1, 2, 2) })
  end)

  it("pow with scalar exponents", function()
    check(function(a) return a ^ 2 end, { input({ 4 }) })
    check(function(a) return a ^ 3 end, { input({ 4 }) })
    check(function(a) return a:pow(0.5) end, { input({ 4 }, 0.5, 2) })
    check(function(a) return a ^ -1.5 end, { input({ 4 }, 0.5, 2) })
  end)

  it("pow with a number base", function()
    check(function(a) return 2 ^ a end, { input({ 4 }) })
  end)

  it("neg and unary minus", function()
    check(function(a) return -a end, { input({ 2, 2 }) })
    check(function(a) return a:neg() end, { input({ 2, 2 }) })
  end)
end)

describe("gradcheck of unary functions", function()
  it("exp", function() check(function(a) return a:exp() end, { input({ 2, 3 }) }) end)
  it("log on positive inputs", function() check(function(a) return a:log() end, { input({ 2, 3 }, 0.5, 2) }) end)
  it("sqrt on positive inputs", function() check(function(a) return a:sqrt() end, { input({ 2, 3 }, 0.5, 2) }) end)
  it("abs away from 0", function() check(function(a) return a:abs() end, { spread({ 2, 3 }, -1, 1.2) }) end)
  it("relu away from 0", function() check(function(a) return a:relu() end, { spread({ 2, 3 }, -1, 1.2) }) end)
  it("sigmoid", function() check(function(a) return a:sigmoid() end, { input({ 2, 3 }, -3, 3) }) end)
  it("tanh", function() check(function(a) return a:tanh() end, { input({ 2, 3 }, -2, 2) }) end)

  it("clamp inside, below and above the bounds", function()
    -- values -1.5 .. 1.5 in steps of 0.3: none within 0.1 of the bounds -0.45 and 0.45
    check(function(a) return a:clamp(-0.45, 0.45) end, { spread({ 11 }, -1.5, 1.5) })
  end)
end)

describe("gradcheck of reductions", function()
  it("sum over all, a dim, and with keepdim", function()
    check(function(a) return a:sum() end, { input({ 2, 3 }) })
    check(function(a) return a:sum(1) end, { input({ 2, 3 }) })
    check(function(a) return a:sum(-1, true) end, { input({ 2, 3, 2 }) })
  end)

  it("mean over all, a dim, and with keepdim", function()
    check(function(a) return a:mean() end, { input({ 2, 3 }) })
    check(function(a) return a:mean(2) end, { input({ 2, 3 }) })
    check(function(a) return a:mean(1, true) end, { input({ 2, 3, 2 }) })
  end)

  it("var over all and over dims", function()
    check(function(a) return a:var() end, { input({ 2, 3 }) })
    check(function(a) return a:var(1) end, { input({ 3, 4 }) })
    check(function(a) return a:var(-1, true) end, { input({ 2, 3, 4 }) })
  end)

  it("std over all and over dims", function()
    check(function(a) return a:std() end, { input({ 2, 3 }) })
    check(function(a) return a:std(2) end, { input({ 3, 4 }) })
    check(function(a) return a:std(1, true) end, { input({ 3, 2 }) })
  end)

  it("max over a dim and over all (distinct values)", function()
    check(function(a) return (a:max(2)) end, { spread({ 3, 4 }, -2, 2) })
    check(function(a) return (a:max(1, true)) end, { spread({ 3, 4 }, -2, 2, 3) })
    check(function(a) return a:max() end, { spread({ 3, 4 }, -2, 2, 4) })
  end)

  it("min over a dim and over all (distinct values)", function()
    check(function(a) return (a:min(2)) end, { spread({ 3, 4 }, -2, 2) })
    check(function(a) return (a:min(-2)) end, { spread({ 3, 4 }, -2, 2, 5) })
    check(function(a) return a:min() end, { spread({ 3, 4 }, -2, 2, 6) })
  end)
end)

describe("gradcheck of matrix products", function()
  it("matmul 2-d with 2-d", function()
    check(function(a, b) return a:matmul(b) end, { input({ 3, 4 }), input({ 4, 2 }, -1, 1, 2) })
  end)

  it("matmul 1-d with 1-d, 2-d with 1-d, 1-d with 2-d", function()
    check(function(a, b) return cnn.matmul(a, b) end, { input({ 4 }), input({ 4 }, -1, 1, 2) })
    check(function(a, b) return cnn.matmul(a, b) end, { input({ 3, 4 }), input({ 4 }, -1, 1, 2) })
    check(function(a, b) return cnn.matmul(a, b) end, { input({ 4 }), input({ 4, 3 }, -1, 1, 2) })
  end)

  it("matmul batched 3-d", function()
    check(function(a, b) return a:matmul(b) end, { input({ 2, 3, 4 }), input({ 2, 4, 2 }, -1, 1, 2) })
  end)

  it("matmul batched with a broadcast 2-d operand", function()
    check(function(a, b) return a:matmul(b) end, { input({ 2, 3, 4 }), input({ 4, 2 }, -1, 1, 2) })
    check(function(a, b) return a:matmul(b) end, { input({ 3, 4 }), input({ 2, 4, 2 }, -1, 1, 2) })
  end)

  it("matmul with a batch dim of size 1 broadcast", function()
    check(function(a, b) return a:matmul(b) end, { input({ 1, 3, 4 }), input({ 2, 4, 2 }, -1, 1, 2) })
  end)

  it("mm, also with transposed operands", function()
    check(function(a, b) return a:mm(b) end, { input({ 3, 4 }), input({ 4, 2 }, -1, 1, 2) })
    check(function(a, b) return a:t():mm(b:t()) end, { input({ 4, 3 }), input({ 2, 4 }, -1, 1, 2) })
  end)
end)

describe("gradcheck of views and shape ops", function()
  it("select and indexing t[i]", function()
    check(function(a) return a:select(1, 2) end, { input({ 3, 4 }) })
    check(function(a) return a:select(-1, 3) end, { input({ 3, 4 }) })
    check(function(a) return a[2] end, { input({ 3, 4 }) })
    check(function(a) return a[1] * a[3] end, { input({ 3, 4 }) })
  end)

  it("narrow", function()
    check(function(a) return a:narrow(2, 2, 2) end, { input({ 3, 4 }) })
    check(function(a) return a:narrow(1, 1, 2) end, { input({ 3, 4 }) })
  end)

  it("view and reshape", function()
    check(function(a) return a:view(4, 3) end, { input({ 3, 4 }) })
    check(function(a) return a:view(-1) end, { input({ 3, 4 }) })
    check(function(a) return a:reshape(2, 6) end, { input({ 3, 4 }) })
    check(function(a) return a:t():reshape(12) end, { input({ 3, 4 }) }) -- a copying reshape
  end)

  it("transpose, t and permute", function()
    check(function(a) return a:transpose(1, 3) end, { input({ 2, 3, 4 }) })
    check(function(a) return a:t() end, { input({ 3, 4 }) })
    check(function(a) return a:permute(3, 1, 2) end, { input({ 2, 3, 4 }) })
  end)

  it("unsqueeze, squeeze and flatten", function()
    check(function(a) return a:unsqueeze(2) end, { input({ 3, 4 }) })
    check(function(a) return a:squeeze(2) end, { input({ 3, 1, 4 }) })
    check(function(a) return a:squeeze() end, { input({ 1, 3, 1 }) })
    check(function(a) return a:flatten() end, { input({ 2, 3, 2 }) })
    check(function(a) return a:flatten(2) end, { input({ 2, 3, 2 }) })
  end)

  it("expand sums gradients over the repeated dims", function()
    check(function(a) return a:expand(3, 4) end, { input({ 1, 4 }) })
    check(function(a) return a:expand(2, 3, 4) end, { input({ 3, 1 }) })
  end)

  it("contiguous and clone", function()
    check(function(a) return a:t():contiguous() end, { input({ 3, 4 }) })
    check(function(a) return a:clone() end, { input({ 3, 4 }) })
  end)

  it("index_select, with repeated indices", function()
    local idx = cnn.tensor({ 3, 1, 3, 2 }, { dtype = "int64" })
    check(function(a) return a:index_select(1, idx) end, { input({ 3, 2 }) })
    check(function(a) return a:index_select(2, idx) end, { input({ 2, 3 }) })
  end)

  it("cat along each dim", function()
    check(function(a, b) return cnn.cat({ a, b }, 1) end, { input({ 2, 3 }), input({ 1, 3 }, -1, 1, 2) })
    check(function(a, b) return cnn.cat({ a, b, a }, -1) end, { input({ 2, 3 }), input({ 2, 2 }, -1, 1, 2) })
  end)

  it("stack along each dim", function()
    check(function(a, b) return cnn.stack({ a, b }, 1) end, { input({ 2, 3 }), input({ 2, 3 }, -1, 1, 2) })
    check(function(a, b) return cnn.stack({ a, b, a }, 3) end, { input({ 2, 3 }), input({ 2, 3 }, -1, 1, 2) })
  end)
end)

describe("gradcheck of compositions", function()
  it("a small MLP-like expression", function()
    check(function(x, w, b) return (x:matmul(w) + b):tanh():mean(1) end,
      { input({ 4, 3 }), input({ 3, 5 }, -1, 1, 2), input({ 5 }, -1, 1, 3) })
  end)

  it("softmax written out of primitives", function()
    check(function(x)
      local e = (x - x:max(2, true)):exp()
      return e / e:sum(2, true)
    end, { spread({ 3, 4 }, -2, 2) })
  end)
end)

describe("gradcheck's arguments", function()
  it("a non-callable fn is an error naming gradcheck", function()
    -- was "attempt to call a number value (upvalue 'fn')" from inside gradcheck
    local x = cnn.tensor({ 1, 2 }, { requires_grad = true })
    H.assert_error(function() return cnn.autograd.gradcheck(1, { x }) end, "gradcheck: fn must be a function", "number")
    assert.is_true(cnn.autograd.gradcheck(function(a) return (a * a):sum() end, { x }, { eps = 1e-2 }))
  end)
end)
