-- Elementwise math (API.md "Tensors": Math): operators with tensors or numbers on either side,
-- broadcasting, the unary functions, comparisons, in-place ops and int64/float32 promotion.
-- Expected values are worked out by hand or with Lua's own math library.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local RT = 1e-6 -- float32 rounding of a single operation

describe("binary operators", function()
  local a = cnn.tensor({ { 1, 2 }, { 3, 4 } })
  local b = cnn.tensor({ { 2, 4 }, { -1, 0.5 } })

  it("+ - * / work elementwise on tensors of one shape", function()
    H.assert_tensor(a + b, { { 3, 6 }, { 2, 4.5 } })
    H.assert_tensor(a - b, { { -1, -2 }, { 4, 3.5 } })
    H.assert_tensor(a * b, { { 2, 8 }, { -3, 2 } })
    H.assert_tensor(a / b, { { 0.5, 0.5 }, { -3, 8 } })
  end)

  it("^ raises elementwise to a tensor exponent", function()
    H.assert_tensor(a ^ cnn.tensor({ { 2, 0.5 }, { 0, -1 } }), { { 1, math.sqrt(2) }, { 1, 0.25 } }, { rtol = RT })
  end)

  it("unary minus negates", function()
    H.assert_tensor(-a, { { -1, -2 }, { -3, -4 } })
  end)

  it("accepts a number on the right", function()
    H.assert_tensor(a + 1, { { 2, 3 }, { 4, 5 } })
    H.assert_tensor(a - 1, { { 0, 1 }, { 2, 3 } })
    H.assert_tensor(a * 3, { { 3, 6 }, { 9, 12 } })
    H.assert_tensor(a / 4, { { 0.25, 0.5 }, { 0.75, 1 } })
    H.assert_tensor(a ^ 2, { { 1, 4 }, { 9, 16 } })
  end)

  it("accepts a number on the left", function()
    H.assert_tensor(1 + a, { { 2, 3 }, { 4, 5 } })
    H.assert_tensor(10 - a, { { 9, 8 }, { 7, 6 } })
    H.assert_tensor(3 * a, { { 3, 6 }, { 9, 12 } })
    H.assert_tensor(12 / a, { { 12, 6 }, { 4, 3 } })
    H.assert_tensor(2 ^ a, { { 2, 4 }, { 8, 16 } })
  end)

  it("methods add sub mul div pow match the operators", function()
    H.assert_tensor(a:add(b), { { 3, 6 }, { 2, 4.5 } })
    H.assert_tensor(a:sub(b), { { -1, -2 }, { 4, 3.5 } })
    H.assert_tensor(a:mul(b), { { 2, 8 }, { -3, 2 } })
    H.assert_tensor(a:div(b), { { 0.5, 0.5 }, { -3, 8 } })
    H.assert_tensor(a:pow(2), { { 1, 4 }, { 9, 16 } })
    H.assert_tensor(a:add(1), { { 2, 3 }, { 4, 5 } })
    H.assert_tensor(a:mul(-1), { { -1, -2 }, { -3, -4 } })
  end)

  it("leaves its operands unchanged", function()
    local _ = a + b
    H.assert_tensor(a, { { 1, 2 }, { 3, 4 } })
    H.assert_tensor(b, { { 2, 4 }, { -1, 0.5 } })
  end)
end)

describe("broadcasting", function()
  it("a column plus a row gives the outer sum", function()
    local col = cnn.tensor({ { 10 }, { 20 } }) -- {2, 1}
    local row = cnn.tensor({ 1, 2, 3 })       -- {3}
    H.assert_tensor(col + row, { { 11, 12, 13 }, { 21, 22, 23 } })
    H.assert_tensor(row - col, { { -9, -8, -7 }, { -19, -18, -17 } })
  end)

  it("aligns trailing dims and stretches size-1 dims", function()
    local x = cnn.ones(3, 1, 2)
    local y = cnn.tensor({ { 1 }, { 2 }, { 3 }, { 4 } }) -- {4, 1}
    local z = x * y
    assert.are.same({ 3, 4, 2 }, z:shape())
    -- z[i][j][k] = y[j][1]
    H.assert_tensor(z[2], { { 1, 1 }, { 2, 2 }, { 3, 3 }, { 4, 4 } })
    H.assert_tensor(z:sum(), 3 * 2 * (1 + 2 + 3 + 4))
  end)

  it("a 0-d tensor broadcasts against any shape", function()
    H.assert_tensor(cnn.tensor({ 1, 2, 3 }) * cnn.tensor(2), { 2, 4, 6 })
    H.assert_tensor(cnn.tensor(5) - cnn.tensor({ { 1, 2 } }), { { 4, 3 } })
  end)

  it("works with non-contiguous operands", function()
    local m = cnn.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    -- m:t() is {{1, 4}, {2, 5}, {3, 6}}
    H.assert_tensor(m:t() + cnn.tensor({ 10, 100 }), { { 11, 104 }, { 12, 105 }, { 13, 106 } })
  end)
end)

describe("unary functions", function()
  local xs = { -2, -0.5, 0.25, 1, 3 }
  local x = cnn.tensor(xs)

  local function map(f, list)
    local out = {}
    for i, v in ipairs(list) do out[i] = f(v) end
    return out
  end

  it("exp, abs, neg, relu, sigmoid, tanh match Lua's math", function()
    H.assert_tensor(x:exp(), map(math.exp, xs), { rtol = RT })
    H.assert_tensor(x:abs(), { 2, 0.5, 0.25, 1, 3 })
    H.assert_tensor(x:neg(), { 2, 0.5, -0.25, -1, -3 })
    H.assert_tensor(x:relu(), { 0, 0, 0.25, 1, 3 })
    H.assert_tensor(x:sigmoid(), map(function(v) return 1 / (1 + math.exp(-v)) end, xs), { rtol = RT })
    H.assert_tensor(x:tanh(), map(function(v)
      return (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v))
    end, xs), { rtol = RT })
  end)

  it("log and sqrt match Lua's math on positive inputs", function()
    local p = { 0.25, 1, 2, 9 }
    H.assert_tensor(cnn.tensor(p):log(), map(math.log, p), { rtol = RT, atol = 1e-7 })
    H.assert_tensor(cnn.tensor(p):sqrt(), { 0.5, 1, math.sqrt(2), 3 }, { rtol = RT })
  end)

  it("log of 0 is -inf and sqrt of a negative is nan, as in PyTorch", function()
    local l = cnn.tensor({ 0 }):log()[1]
    assert.are.equal(-math.huge, l)
    local s = cnn.tensor({ -1 }):sqrt()[1]
    assert.is_true(s ~= s)
  end)

  it("clamp(lo, hi) limits to the interval", function()
    H.assert_tensor(x:clamp(-1, 1), { -1, -0.5, 0.25, 1, 1 })
  end)

  it("sigmoid and tanh stay finite for large inputs", function()
    H.assert_tensor(cnn.tensor({ -100, 100 }):sigmoid(), { 0, 1 }, { atol = 1e-30 })
    H.assert_tensor(cnn.tensor({ -100, 100 }):tanh(), { -1, 1 })
  end)
end)

describe("nan_to_num", function()
  it("takes a replacement past float32's range as its infinity, as PyTorch (it raised)", function()
    local x = cnn.tensor({1, 0 / 0, math.huge, -math.huge})
    H.assert_tensor(x:nan_to_num(1e300, 1e39, -1e300), {1, math.huge, math.huge, -math.huge})
    H.assert_tensor(cnn.tensor({1, 2}, {dtype = "int64"}):nan_to_num(1e300), {1, 2}, {dtype = "int64"})
  end)
end)

describe("comparisons", function()
  local a = cnn.tensor({ 1, 2, 3 })
  local b = cnn.tensor({ 3, 2, 1 })

  local T, F = true, false

  it("eq ne lt le gt ge give bool tensors, as PyTorch", function()
    H.assert_tensor(a:eq(b), { F, T, F }, { dtype = "bool" })
    H.assert_tensor(a:ne(b), { T, F, T }, { dtype = "bool" })
    H.assert_tensor(a:lt(b), { T, F, F }, { dtype = "bool" })
    H.assert_tensor(a:le(b), { T, T, F }, { dtype = "bool" })
    H.assert_tensor(a:gt(b), { F, F, T }, { dtype = "bool" })
    H.assert_tensor(a:ge(b), { F, T, T }, { dtype = "bool" })
  end)

  it("compare against a number and broadcast", function()
    H.assert_tensor(a:gt(1.5), { F, T, T })
    H.assert_tensor(a:eq(cnn.tensor({ { 1 }, { 3 } })), { { T, F, F }, { F, F, T } })
  end)

  it("count matches when summed", function()
    -- 3 of the 5 values exceed 0
    assert.are.equal(3, cnn.tensor({ -1, 2, 0, 5, 7 }):gt(0):sum():item())
  end)
end)

describe("a number divided by a tensor", function()
  it("is (1 / t) * number, as PyTorch's operator: its roundings and its gradient", function()
    local f32 = function(v) return string.unpack("<f", string.pack("<f", v)) end
    local x = cnn.tensor({ 3, 6 })
    local y = 0.3 / x
    -- 1/3 rounded to float32, times 0.3 rounded to float32, rounded again (0.3 / 3 gives 0.1 rounded once)
    assert.are.equal(f32(f32(1 / 3) * f32(0.3)), y[1])
    assert.are.equal(f32(f32(1 / 6) * f32(0.3)), y[2])
    assert.are_not.equal(f32(f32(0.3) / 3), y[1])
    assert.are.equal("float32", (2 / cnn.tensor({ 4 }, { dtype = "int64" })):dtype())
    H.assert_tensor(2 / cnn.tensor({ 4 }, { dtype = "int64" }), { 0.5 })
    -- 0 / x: the gradient runs through 1 / x, whose own gradient -1 / x^2 overflows for a tiny x:
    -- 0 * inf is NaN, as in PyTorch (x = 2 gives -0)
    local t = cnn.tensor({ -6.8e-36, 2 }):requires_grad_()
    local z = 0 / t
    z:sum():backward()
    assert.is_true(t.grad[1] ~= t.grad[1])
    assert.are.equal(0, t.grad[2])
    H.assert_tensor(cnn.F.relu(z), { 0, 0 })
  end)
end)

describe("in-place ops", function()
  it("add_ and mul_ modify the tensor and return it for chaining", function()
    local t = cnn.tensor({ 1, 2, 3 })
    local r = t:add_(1):mul_(2)
    H.assert_tensor(t, { 4, 6, 8 })
    H.assert_tensor(r, { 4, 6, 8 })
    r[1] = 0 -- the result is the same tensor
    assert.are.equal(0, t[1])
  end)

  it("div_ takes rounding_mode, sub_ and add_ take alpha as add does; extra arguments are errors", function()
    -- PyTorch 1.13: [5, 7, -3] div_(2, rounding_mode="floor") -> [2, 3, -2], "trunc" -> [2, 3, -1]
    H.assert_tensor(cnn.tensor({ 5, 7, -3 }):div_(2, { rounding_mode = "floor" }), { 2, 3, -2 })
    H.assert_tensor(cnn.tensor({ 5, 7, -3 }):div_(2, { rounding_mode = "trunc" }), { 2, 3, -1 })
    local i = cnn.tensor({ 7, -7 }, { dtype = "int64" })
    H.assert_tensor(i:clone():div_(2, { rounding_mode = "floor" }), { 3, -4 })
    H.assert_tensor(i:clone():div_(2, { rounding_mode = "trunc" }), { 3, -3 })
    assert.are.equal("int64", i:clone():div_(2, { rounding_mode = "trunc" }):dtype())
    -- sub_(1, alpha=2): t - 2
    H.assert_tensor(cnn.tensor({ 5, 7, -3 }):sub_(1, 2), { 3, 5, -5 })
    H.assert_tensor(cnn.tensor({ 5, 7, -3 }):sub_(1, { alpha = 2 }), { 3, 5, -5 })
    H.assert_tensor(cnn.tensor({ 5, 7, -3 }):add_(1, { alpha = 2 }), { 7, 9, -1 })
    -- an integer alpha into int64 is exact (through a double, 2^53 + 1 came back 2^53)
    local big = cnn.tensor({ 0 }, { dtype = "int64" }):add_(cnn.tensor({ 1 }, { dtype = "int64" }), 9007199254740993)
    assert.are.equal(9007199254740993, big[1])
    -- an integer zero divisor is an error, as out of place (it was SIGFPE in the in-place loop)
    H.assert_error(function() i:clone():div_(0, { rounding_mode = "floor" }) end, "div_: integer division by zero")
    local zeros_too = cnn.tensor({ 1, 0 }, { dtype = "int64" })
    H.assert_error(function() i:clone():div_(zeros_too, { rounding_mode = "floor" }) end,
      "div_: integer division by zero")
    H.assert_error(function() cnn.ones(2):mul_(2, 3) end, "mul_: takes 2 arguments, got 3")
    -- alpha scales other in the sum's dtype (PyTorch 1.13: [0.5, 0.5] + 2 * uint8 [200, 1] is
    -- [400.5, 2.5]; scaled in uint8 it wrapped to 144), in and out of place, with history or not
    local u = cnn.tensor({ 200, 1 }, { dtype = "uint8" })
    H.assert_tensor(cnn.tensor({ 0.5, 0.5 }):add(u, { alpha = 2 }), { 400.5, 2.5 })
    H.assert_tensor(cnn.tensor({ 0.5, 0.5 }):sub(u, { alpha = 3 }), { -599.5, -2.5 })
    local x = cnn.tensor({ 0.5, 0.5 }, { requires_grad = true })
    H.assert_tensor((x * 1):add_(u, 2), { 400.5, 2.5 })
    H.assert_tensor((x * 1):sub_(u, 2), { -399.5, -1.5 })
    H.assert_tensor(cnn.tensor({ 1, 2 }, { dtype = "uint8" }):add(u, { alpha = 2 }), { 145, 4 }) -- uint8 wraps
    H.assert_error(function() cnn.ones(2):div_(2, { rounding_mode = "up" }) end, "div_: rounding_mode must be")
    H.assert_error(function() cnn.ones(2):add_(2, "x") end, "add_: alpha must be a number, got string")
    H.assert_error(function() cnn.ones(2):sub_(2, { beta = 1 }) end, "sub_: unknown option 'beta'")
  end)

  it("add_ broadcasts its argument into the tensor's shape", function()
    local t = cnn.zeros(2, 3)
    t:add_(cnn.tensor({ 1, 2, 3 }))
    H.assert_tensor(t, { { 1, 2, 3 }, { 1, 2, 3 } })
    t:mul_(cnn.tensor({ { 2 }, { -1 } }))
    H.assert_tensor(t, { { 2, 4, 6 }, { -1, -2, -3 } })
  end)

  it("add_ with alpha rounds once: alpha * other is fused into the sum, as PyTorch's", function()
    -- a and 1.5 * b nearly cancel: the product rounded on its own would leave its error behind
    local a = cnn.tensor({ 0.1, 1 / 3, 0.7 })
    local b = cnn.tensor({ 0.1 / 1.5, (1 / 3) / 1.5, 0.7 / 1.5 })
    local strided = cnn.zeros(3, 2):select(2, 1) -- the same values through a strided view
    strided:copy_(a)
    local contiguous = a:clone():add_(b, -1.5)
    strided:add_(b, -1.5)
    for i = 1, 3 do
      -- a + -1.5 * b is exact in double (24 + 2 significant bits), then rounded once to float32
      local want = string.unpack("<f", string.pack("<f", a[i] - 1.5 * b[i]))
      assert.are.equal(want, contiguous[i])
      assert.are.equal(want, strided[i])
    end
    assert.are_not.equal(0, contiguous[2]) -- the unfused float32 product gives exactly 0 here
  end)

  it("fill_ and zero_ overwrite every element", function()
    local t = cnn.empty(2, 2)
    t:fill_(3.5)
    H.assert_tensor(t, { { 3.5, 3.5 }, { 3.5, 3.5 } })
    t:zero_()
    H.assert_tensor(t, { { 0, 0 }, { 0, 0 } })
  end)

  it("copy_ broadcasts the source and converts its dtype", function()
    local t = cnn.zeros(2, 3)
    t:copy_(cnn.tensor({ 7, 8, 9 }, { dtype = "int64" }))
    H.assert_tensor(t, { { 7, 8, 9 }, { 7, 8, 9 } }, { dtype = "float32" })
  end)

  it("clamp_ limits in place", function()
    local t = cnn.tensor({ -3, 0.5, 3 })
    t:clamp_(-1, 1)
    H.assert_tensor(t, { -1, 0.5, 1 })
  end)

  it("in-place ops through a view change the base", function()
    local t = cnn.ones(2, 3)
    t:select(2, 2):mul_(5)
    t[2]:add_(1)
    H.assert_tensor(t, { { 1, 5, 1 }, { 2, 6, 2 } })
  end)

  it("uniform_(a, b) fills with values in [a, b)", function()
    cnn.manual_seed(3)
    local t = cnn.empty(1000):uniform_(-2, 5)
    assert.is_true(t:min():item() >= -2)
    assert.is_true(t:max():item() < 5)
    -- mean of U(-2, 5) is 1.5; standard error 2.02 / sqrt(1000) ~ 0.064
    assert.is_true(math.abs(t:mean():item() - 1.5) < 0.3)
  end)

  it("normal_(m, s) fills with mean m and standard deviation s", function()
    cnn.manual_seed(3)
    local t = cnn.empty(10000):normal_(3, 0.5)
    assert.is_true(math.abs(t:mean():item() - 3) < 0.03)
    assert.is_true(math.abs(t:std():item() - 0.5) < 0.03)
  end)
end)

describe("dtype promotion", function()
  local i = cnn.tensor({ 1, 2, 3 }, { dtype = "int64" })

  it("int64 stays int64 under + - * with integers and int64 tensors", function()
    H.assert_tensor(i + 1, { 2, 3, 4 }, { dtype = "int64" })
    H.assert_tensor(i - i, { 0, 0, 0 }, { dtype = "int64" })
    H.assert_tensor(i * 2, { 2, 4, 6 }, { dtype = "int64" })
    H.assert_tensor(2 * i, { 2, 4, 6 }, { dtype = "int64" })
    H.assert_tensor(i * i, { 1, 4, 9 }, { dtype = "int64" })
  end)

  it("int64 with a fractional number becomes float32", function()
    H.assert_tensor(i + 1.5, { 2.5, 3.5, 4.5 }, { dtype = "float32" })
    H.assert_tensor(i * 0.5, { 0.5, 1, 1.5 }, { dtype = "float32" })
  end)

  it("int64 with a float32 tensor becomes float32", function()
    H.assert_tensor(i + cnn.tensor({ 0.5, 0.5, 0.5 }), { 1.5, 2.5, 3.5 }, { dtype = "float32" })
  end)

  it("division of int64 is true division giving float32", function()
    H.assert_tensor(i / 2, { 0.5, 1, 1.5 }, { dtype = "float32" })
  end)

  it("float() and long() convert, long() truncating toward zero", function()
    H.assert_tensor(i:float(), { 1, 2, 3 }, { dtype = "float32" })
    H.assert_tensor(cnn.tensor({ 1.7, -1.7, 2 }):long(), { 1, -1, 2 }, { dtype = "int64" })
  end)
end)

-- Edges found by the PyTorch oracle (oracle_spec); each expected value is worked out by hand.
describe("pow, clamp and matmul at PyTorch's edges", function()
  it("pow's gradients at 0^0 are 0 for both sides, as PyTorch's limits", function()
    local a = cnn.tensor({ 0, 0, 2 }):requires_grad_()
    local b = cnn.tensor({ 0, 2, 0 }):requires_grad_()
    local y = a ^ b -- 1, 0, 1
    H.assert_tensor(y, { 1, 0, 1 })
    y:sum():backward()
    -- d/da = b a^(b-1): 0 where b == 0 (PyTorch's rule, not 0 * inf); 2 * 0^1 = 0
    H.assert_tensor(a.grad, { 0, 0, 0 })
    -- d/db = a^b log a: 0 where a == 0 and b >= 0; 2^0 * log 2 at the last
    H.assert_tensor(b.grad, { 0, 0, math.log(2) }, { rtol = 1e-6 })
  end)

  it("pow's exponent gradient is NaN for a negative base even when the power underflows to 0", function()
    -- (-0.5)^200 is 6e-61, 0 in float32; d/db = out * log(-0.5) = 0 * NaN: NaN, as PyTorch
    local a = cnn.tensor({ -0.5 })
    local b = cnn.tensor({ 200 }):requires_grad_()
    local y = a ^ b
    assert.are.equal(0, y[1])
    y:sum():backward()
    assert.is_true(b.grad[1] ~= b.grad[1])
  end)

  -- PyTorch computes x^0.5 as sqrt, x^-0.5 as rsqrt, x^3 as x x x, x^-2 as 1 / (x x): at -0, sqrt
  -- is -0 and rsqrt -inf (powf gives +0 and +inf), so the gradient of x^0.5 there, 0.5 x^-0.5, is -inf
  it("pow special-cases the exponents PyTorch does: x^0.5 at -0 has the gradient -inf", function()
    local x = cnn.tensor({ -0.0, 4 }):requires_grad_()
    local y = x:pow(0.5)
    assert.are.equal(-math.huge, 1 / y[1]) -- -0
    y:sum():backward()
    assert.are.same({ -math.huge, 0.25 }, x.grad:totable())
    assert.are.same({ -math.huge, 0.5 }, cnn.tensor({ -0.0, 4 }):pow(-0.5):totable())
    assert.are.same({ -27, 0.25 }, { cnn.tensor({ -3 }):pow(3)[1], cnn.tensor({ 2 }):pow(-2)[1] })
  end)

  -- PyTorch 1.13 has no bool product kernel, but takes no product where the inner dim or the
  -- result is empty: all false (oracle ORACLE_BIG seed 23); a 1-d x 1-d dot is refused even empty
  it("bool matmul is all false where no product is taken and refused elsewhere, as PyTorch's", function()
    local y = cnn.ones(3, 3, 0):bool():matmul(cnn.ones(1, 0, 6):bool())
    assert.are.equal("bool", y:dtype())
    assert.are.same({ 3, 3, 6 }, y:size())
    assert.is_false(y:any():item())
    assert.are.same({ 0, 3 }, cnn.ones(0, 2):bool():matmul(cnn.ones(2, 3):bool()):size())
    H.assert_error(function() return cnn.ones(2, 2):bool():matmul(cnn.ones(2, 2):bool()) end, "matmul", "bool")
    H.assert_error(function() return cnn.ones(0):bool():matmul(cnn.ones(0):bool()) end, "matmul", "bool")
    H.assert_usable()
  end)

  it("int64 to an integer power stays int64, as PyTorch's integer pow", function()
    local i = cnn.tensor({ -3, 2, 5 }, { dtype = "int64" })
    H.assert_tensor(i ^ 2, { 9, 4, 25 }, { dtype = "int64" })
    H.assert_tensor(i:pow(cnn.tensor({ 3, 0, 1 }, { dtype = "int64" })), { -27, 1, 5 }, { dtype = "int64" })
    H.assert_tensor(2 ^ cnn.tensor({ 0, 3 }, { dtype = "int64" }), { 1, 8 }, { dtype = "int64" })
    -- a negative int64 exponent truncates: 2^-1 = 0.5 -> 0, 1^-1 = 1, (-1)^-3 = -1
    H.assert_tensor(cnn.tensor({ 2, 1, -1 }, { dtype = "int64" }):pow(cnn.tensor({ -1, -1, -3 }, { dtype = "int64" })),
      { 0, 1, -1 }, { dtype = "int64" })
    -- a float exponent or base (2.0 too) gives float32; a negative integer exponent is refused
    H.assert_tensor(i ^ 2.0, { 9, 4, 25 }, { dtype = "float32" })
    H.assert_tensor(2.0 ^ cnn.tensor({ 1 }, { dtype = "int64" }), { 2 }, { dtype = "float32" })
    H.assert_error(function() return i ^ -1 end, "pow:", "negative integer powers")
    H.assert_usable()
  end)

  it("clamp of int64 with a float bound gives float32, as PyTorch", function()
    local i = cnn.tensor({ -3, 2, 5 }, { dtype = "int64" })
    H.assert_tensor(i:clamp(0, 4), { 0, 2, 4 }, { dtype = "int64" })
    H.assert_tensor(i:clamp(0.5), { 0.5, 2, 5 }, { dtype = "float32" })
    H.assert_tensor(i:clamp(nil, 2.0), { -3, 2, 2 }, { dtype = "float32" })
    H.assert_error(function() return i:clone():clamp_(0, 2.0) end, "clamp_:", "int64")
    H.assert_usable()
  end)

  it("clamp with a NaN bound gives NaN everywhere and a zero gradient, as PyTorch's clamp_min/clamp_max", function()
    -- torch 1.13: clamp(x, nan, 1), clamp(x, 0, nan), clamp_min(x, nan), clamp_max(x, nan) are all
    -- NaN, their gradient 0 (x >= NaN is false); hardtanh(x, nan, 1) is NaN with gradient 1 below 1
    local nan = 0 / 0
    local function all_nan(t)
      for _, v in ipairs(H.values(t)) do assert.is_true(v ~= v) end
      return true
    end
    local x = cnn.tensor({ -1, 0.5, 2, nan })
    assert.is_true(all_nan(x:clamp(nan, 1)) and all_nan(x:clamp(0, nan)) and all_nan(x:clamp(nan, nan)))
    assert.is_true(all_nan(x:clamp(nan)) and all_nan(x:clamp(nil, nan)) and all_nan(x:clone():clamp_(nan, 1)))
    local i = cnn.tensor({ 1, 2, 3 }, { dtype = "int64" })
    assert.are.equal("float32", i:clamp(nan, 2):dtype())
    assert.is_true(all_nan(i:clamp(nan, 2)))
    local xr = cnn.tensor({ -1, 0.5, 2 }):requires_grad_()
    xr:clamp(nan, 1):sum():backward()
    H.assert_tensor(xr.grad, { 0, 0, 0 })
    xr.grad = nil
    local y = cnn.F.hardtanh(xr, nan, 1)
    y:sum():backward()
    assert.is_true(all_nan(y))
    H.assert_tensor(xr.grad, { 1, 1, 0 })
    H.assert_error(function() return x:clamp("0", 1) end, "clamp: bounds must be numbers or nil, got string")
    H.assert_error(function() return x:clamp(0, {}) end, "clamp: bounds must be numbers or nil, got table")
    H.assert_usable()
  end)

  it("maximum and minimum give the gradient to both sides where a NaN is involved, as PyTorch", function()
    -- PyTorch's rule: g (g / 2 on ties) to each side that did not lose; next to a NaN no side lost
    local nan = 0 / 0
    local a = cnn.tensor({ nan, 1, 2, 3 }):requires_grad_()
    local b = cnn.tensor({ 0, nan, 2, 1 }):requires_grad_()
    a:maximum(b):sum():backward()
    H.assert_tensor(a.grad, { 1, 1, 0.5, 1 })
    H.assert_tensor(b.grad, { 1, 1, 0.5, 0 })
    local c = cnn.tensor({ nan, 3 }):requires_grad_()
    local d = cnn.tensor({ 1, 1 }):requires_grad_()
    c:min(d):sum():backward() -- t:min(other) is minimum
    H.assert_tensor(c.grad, { 1, 0 })
    H.assert_tensor(d.grad, { 1, 1 })
  end)

  it("div's divisor gradient is -g * (out / b), PyTorch's order, finite where g * out overflows", function()
    -- a / b = 3e38 / 2 = 1.5e38; with g = 4: g * out = 6e38 overflows, out / b = 7.5e37 does not
    local a = cnn.tensor({ 3e38 })
    local b = cnn.tensor({ 2 }):requires_grad_()
    local q = a / b
    q:backward(cnn.tensor({ 4 }))
    H.assert_tensor(b.grad, { -3e38 }, { rtol = 1e-6 })
  end)

  it("matmul and mm of int64 tensors are exact int64 products", function()
    -- {{1, 2}, {3, 4}} @ {{5}, {6}} = {{17}, {39}}; 2^40 * 3 stays exact
    local a = cnn.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "int64" })
    local col = cnn.tensor({ { 5 }, { 6 } }, { dtype = "int64" })
    H.assert_tensor(a:matmul(col), { { 17 }, { 39 } }, { dtype = "int64" })
    H.assert_tensor(a:t():mm(a), { { 10, 14 }, { 14, 20 } }, { dtype = "int64" })
    local big = cnn.tensor({ 2 ^ 40, 1 }, { dtype = "int64" })
    assert.are.equal(3 * 2 ^ 40 + 5, big:matmul(cnn.tensor({ 3, 5 }, { dtype = "int64" })):item())
    H.assert_error(function() return a:matmul(cnn.ones(2, 2)) end, "matmul:", "one dtype")
  end)
end)
