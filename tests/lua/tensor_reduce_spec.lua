-- Reductions (API.md "Tensors": Reduce): over all elements (0-d results) and over one 1-based
-- dim, keepdim, and the 1-based int64 indices of max/min/argmax/argmin. Expected values are
-- computed by hand in the comments.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

-- {{1, 5, 3}, {4, 2, 6}}
local function m()
  return cnn.tensor({ { 1, 5, 3 }, { 4, 2, 6 } })
end

describe("sum and mean", function()
  it("over all elements give 0-d tensors", function()
    local s = m():sum()
    assert.are.same({}, s:shape())
    assert.are.equal(21, s:item())
    assert.are.same({}, m():mean():shape())
    assert.are.equal(3.5, m():mean():item()) -- 21 / 6
  end)

  it("over dim 1 reduce the rows", function()
    H.assert_tensor(m():sum(1), { 5, 7, 9 })
    H.assert_tensor(m():mean(1), { 2.5, 3.5, 4.5 })
  end)

  it("over dim 2 and -1 reduce the columns", function()
    H.assert_tensor(m():sum(2), { 9, 12 })
    H.assert_tensor(m():sum(-1), { 9, 12 })
    H.assert_tensor(m():mean(-1), { 3, 4 })
  end)

  it("keepdim keeps the reduced dim with size 1", function()
    H.assert_tensor(m():sum(1, true), { { 5, 7, 9 } })
    H.assert_tensor(m():sum(2, true), { { 9 }, { 12 } })
    H.assert_tensor(m():mean(2, true), { { 3 }, { 4 } })
  end)

  it("work on non-contiguous views", function()
    -- m():t() is {{1, 4}, {5, 2}, {3, 6}}
    H.assert_tensor(m():t():sum(2), { 5, 7, 9 })
    H.assert_tensor(m():narrow(2, 2, 2):sum(1), { 7, 9 })
  end)

  it("sum over a 3-d middle dim", function()
    local x = cnn.arange(0, 24, 1):view(2, 3, 4)
    -- with 0-based i, j, k: x = 12 i + 4 j + k, summed over j = 3 (12 i + k) + 4 (0 + 1 + 2)
    local s = x:sum(2)
    assert.are.same({ 2, 4 }, s:shape())
    H.assert_tensor(s, { { 12, 15, 18, 21 }, { 48, 51, 54, 57 } })
  end)

  it("sum of int64 stays int64", function()
    local s = cnn.tensor({ 1, 2, 3 }, { dtype = "int64" }):sum()
    assert.are.equal("int64", s:dtype())
    assert.are.equal(6, s:item())
  end)

  it("sum of an empty tensor is 0", function()
    assert.are.equal(0, cnn.zeros(0):sum():item())
  end)
end)

describe("var and std", function()
  -- {2, 4, 4, 4, 5, 5, 7, 9}: mean 5, squared deviations sum to 32
  local x = cnn.tensor({ 2, 4, 4, 4, 5, 5, 7, 9 })

  it("are unbiased (n - 1) by default, over all elements", function()
    H.assert_tensor(x:var(), 32 / 7, { rtol = 1e-6 })
    H.assert_tensor(x:std(), math.sqrt(32 / 7), { rtol = 1e-6 })
  end)

  it("over a dim with and without keepdim", function()
    local y = x:view(2, 4) -- rows {2,4,4,4} (mean 3.5, ssd 3) and {5,5,7,9} (mean 6.5, ssd 11)
    H.assert_tensor(y:var(2), { 1, 11 / 3 }, { rtol = 1e-6 })
    H.assert_tensor(y:std(-1, true), { { 1 }, { math.sqrt(11 / 3) } }, { rtol = 1e-6 })
    -- columns: {2,5} {4,5} {4,7} {4,9}: var = (a-b)^2 / 2
    H.assert_tensor(y:var(1), { 4.5, 0.5, 4.5, 12.5 }, { rtol = 1e-6 })
  end)
end)

describe("max and min", function()
  it("over all elements give 0-d values", function()
    local mx = m():max()
    assert.are.same({}, mx:shape())
    assert.are.equal(6, mx:item())
    assert.are.equal(1, m():min():item())
  end)

  it("over a dim return values and 1-based int64 indices", function()
    local v, i = m():max(2) -- rows {1,5,3} and {4,2,6}
    H.assert_tensor(v, { 5, 6 })
    H.assert_tensor(i, { 2, 3 }, { dtype = "int64" })
    v, i = m():min(1) -- columns {1,4} {5,2} {3,6}
    H.assert_tensor(v, { 1, 2, 3 })
    H.assert_tensor(i, { 1, 2, 1 }, { dtype = "int64" })
  end)

  it("keepdim keeps the reduced dim for values and indices", function()
    local v, i = m():max(1, true)
    H.assert_tensor(v, { { 4, 5, 6 } })
    H.assert_tensor(i, { { 2, 1, 2 } }, { dtype = "int64" })
  end)

  it("accept negative dims", function()
    local v, i = m():min(-1)
    H.assert_tensor(v, { 1, 2 })
    H.assert_tensor(i, { 1, 2 }, { dtype = "int64" })
  end)

  it("pick the first of tied values, as PyTorch on CPU", function()
    local _, i = cnn.tensor({ { 3, 7, 7, 1 } }):max(2)
    H.assert_tensor(i, { 2 })
  end)

  -- long rows find the value first, then its first position (a full max() was 4-8x PyTorch's time):
  -- the same positions and bits as the one-pass loop of short rows
  it("on long rows keep the first tie, the first NaN, a first -0, and rows of infinities", function()
    local function at(v, ...)
      local t = cnn.zeros(1000) + 0.5
      for k = 1, select("#", ...), 2 do t[(select(k, ...))] = select(k + 1, ...) end
      if v then t = t:fill_(v) end
      local mv, mi = t:max(1)
      local nv, ni = t:min(1)
      return mi:item(), ni:item(), mv:item(), nv:item()
    end
    assert.are.same({ 300, 1, 9, 0.5 }, { at(nil, 300, 9, 800, 9) })
    assert.are.same({ 1, 400, 0.5, -9 }, { at(nil, 400, -9, 900, -9) })
    local mi, ni, mv = at(nil, 600, 0 / 0, 700, 0 / 0, 5, 9)
    assert.are.same({ 600, 600 }, { mi, ni })
    assert.is_true(mv ~= mv)
    local _, zi, _, zv = at(nil, 10, -0.0, 20, 0.0, 30, -0.0) -- 0.5 elsewhere: the min is a zero
    assert.are.same({ 10, -math.huge }, { zi, 1 / zv }) -- the first zero, and its sign
    assert.are.same({ 1, 1, -math.huge, -math.huge }, { at(-math.huge) })
    assert.are.same({ 1, 1, math.huge, math.huge }, { at(math.huge) })
  end)

  it("work on int64 tensors", function()
    local t = cnn.tensor({ 4, -2, 9 }, { dtype = "int64" })
    assert.are.equal(9, t:max():item())
    local v, i = t:min(1)
    assert.are.equal(-2, v:item())
    assert.are.equal(2, i:item())
  end)
end)

describe("argmax and argmin", function()
  it("over a dim give 1-based int64 indices", function()
    H.assert_tensor(m():argmax(2), { 2, 3 }, { dtype = "int64" })
    H.assert_tensor(m():argmin(2), { 1, 2 }, { dtype = "int64" })
    H.assert_tensor(m():argmax(1), { 2, 1, 2 }, { dtype = "int64" })
  end)

  it("over all elements give the 1-based flat index", function()
    -- row-major flat order 1 5 3 4 2 6: max 6 at position 6, min 1 at position 1
    assert.are.equal(6, m():argmax():item())
    assert.are.equal(1, m():argmin():item())
    assert.are.equal(5, cnn.tensor({ 0, 0, 0, 0, 9, 0 }):argmax():item())
  end)

  it("indices returned can index the tensor they came from", function()
    local x = cnn.tensor({ 0.5, -3, 8, 2 })
    assert.are.equal(8, x[x:argmax():item()])
    assert.are.equal(-3, x[x:argmin():item()])
  end)
end)

-- Edges found by the PyTorch oracle (oracle_spec); each expected value is worked out by hand.
describe("reductions at PyTorch's edges", function()
  local function leaf(v) return cnn.tensor(v):requires_grad_() end

  it("reduce the only dim of a 0-d tensor (dim 1 or -1) with gradient 1", function()
    for _, f in ipairs({
      function(x) return x:sum(1) end, function(x) return x:sum(-1, true) end,
      function(x) return x:mean(1) end, function(x) return x:mean(1, true) end,
      function(x) return (x:max(1)) end, function(x) return (x:min(-1, true)) end,
    }) do
      local x = leaf(2.5)
      local y = f(x)
      assert.are.same({}, y:shape())
      assert.are.equal(2.5, y:item())
      y:backward()
      assert.are.equal(1, x.grad:item())
    end
    local _, i = leaf(2.5):max(1)
    assert.are.equal(1, i:item()) -- the 1-based index of the one element
  end)

  it("give std a zero gradient where the std is 0, and var{unbiased=false} of a 0-d tensor too", function()
    -- d std / dx = (x - mean) / ((n - 1) std): 0 / 0 where every value is equal; PyTorch defines it 0
    local x = leaf({ 1.5, 1.5, 1.5 })
    x:std():backward()
    H.assert_tensor(x.grad, { 0, 0, 0 })
    local rows = leaf({ { 1, 1 }, { 1, 3 } }) -- row 1 constant (std 0), row 2 std sqrt(2)
    rows:std(2):sum():backward()
    -- row 2: (x - 2) / (1 * sqrt(2)) = -1/sqrt(2), 1/sqrt(2)
    H.assert_tensor(rows.grad, { { 0, 0 }, { -1 / math.sqrt(2), 1 / math.sqrt(2) } }, { rtol = 1e-6 })
    -- var of one value without Bessel's correction: 2 (x - mean) / 1 = 0
    local s = leaf(4)
    s:var({ unbiased = false }):backward()
    assert.are.equal(0, s.grad:item())
    local t = leaf(4)
    t:std(1, false, { unbiased = false }):backward()
    assert.are.equal(0, t.grad:item())
  end)

  it("give var of one value (unbiased) the gradient g * inf, as PyTorch", function()
    -- 2 / (n - 1) = 2 / 0 = inf; PyTorch returns g * inf for the whole tensor, not inf * 0
    local x = cnn.tensor(4):requires_grad_()
    local v = x:var()
    assert.is_true(v:item() ~= v:item())
    v:backward(cnn.tensor(-0.5))
    assert.are.equal(-math.huge, x.grad:item())
    local y = cnn.tensor({ 7 }):requires_grad_()
    y:var():backward()
    assert.are.equal(math.huge, y.grad[1])
  end)

  it("give max() and min() of a tensor holding NaN the gradient split among the NaNs", function()
    local nan = 0 / 0
    local x = leaf({ 1, nan, 3, nan })
    local top = x:max()
    assert.is_true(top:item() ~= top:item())
    top:backward()
    H.assert_tensor(x.grad, { 0, 0.5, 0, 0.5 })
    local y = leaf({ nan, -1, 2 })
    y:min():backward()
    H.assert_tensor(y.grad, { 1, 0, 0 })
    local z = leaf({ 3, 1, 3 }) -- no NaN: ties share, as before
    z:max():backward()
    H.assert_tensor(z.grad, { 0.5, 0, 0.5 })
  end)

  it("take mean as the float32 sum divided by the count, so a sum past float32's range gives inf", function()
    -- PyTorch's mean: 3e38 + 3e38 overflows float32 before the division by 2
    local x = cnn.tensor({ 3e38, 3e38 })
    assert.are.equal(math.huge, x:mean():item())
    assert.are.equal(math.huge, x:view(1, 2):mean(2)[1])
    assert.are.equal(math.huge, x:view(2, 1):mean(1)[1])
    H.assert_tensor(cnn.tensor({ 3e38, -3e38, 1 }):mean(), 1 / 3, { rtol = 1e-6 }) -- the sum fits
    assert.are.equal(math.huge, cnn.F.mse_loss(cnn.full({ 58 }, 8.13e18), cnn.zeros(58)):item())
    local labels = cnn.tensor({ 1, 1 }, { dtype = "int64" })
    assert.are.equal(math.huge, cnn.F.nll_loss(cnn.tensor({ { -3e38 }, { -3e38 } }), labels):item())
  end)

  it("take std's root before rounding to float32, so a std past the variance's range is finite", function()
    -- {-3e20, 3e20}: variance 1.8e41 overflows float32, std sqrt(1.8e41) = 4.2426e20 does not
    local x = cnn.tensor({ -3e20, 3e20 })
    assert.are.equal(math.huge, x:var():item())
    H.assert_tensor(x:std(), math.sqrt(2) * 3e20, { rtol = 1e-6 })
    H.assert_tensor(x:view(1, 2):std(2), { math.sqrt(2) * 3e20 }, { rtol = 1e-6 })
  end)
end)

describe("uint8 reductions", function()
  -- x = 0, 1, ..., 255, 0, 1, ... (1e6 values): 3906 full cycles of sum 32640 and 0..63 (2016), so
  -- the sum is 127493856 (int64, as PyTorch's); the first 255 is element 256
  it("read the bytes directly: exact int64 sums, max/min in uint8, no int64 copy", function()
    local x = cnn.arange(0, 1000000):bitwise_and(255):byte()
    local base = cnn.memory_stats({ reset_peak = true }).live_bytes
    local s, mx, mn, am = x:sum(), x:max(), x:min(), x:argmax()
    local mat = x:view(1000, 1000)
    local cols, rows, v, i = mat:sum(1), mat:sum(2), mat:max(1)
    local grown = cnn.memory_stats().peak_live_bytes - base
    assert(grown < 100000, "peak grew by " .. grown .. " bytes (an int64 copy is 8e6)")
    assert.are.equal("int64", s:dtype())
    assert.are.equal(127493856, s:item())
    assert.are.equal("uint8", mx:dtype())
    assert.are.same({ 255, 0, 256 }, { mx:item(), mn:item(), am:item() })
    -- row k holds (1000 k + j) mod 256 for j = 0..999; against the int64 path
    assert.are.same(mat:long():sum(1):totable(), cols:totable())
    assert.are.same(mat:long():sum(2):totable(), rows:totable())
    local vl, il = mat:long():max(1)
    assert.are.same(vl:totable(), v:long():totable())
    assert.are.same(il:totable(), i:totable())
    assert.are.equal(124716, rows[1]) -- row 1: 3 cycles (97920) + 0..231 (26796)
  end)
end)

describe("reductions of a 0-d tensor along a dim", function()
  -- PyTorch takes dim 0 or -1 of a 0-d tensor (here 1 or -1) and gives a 0-d result; values by hand:
  -- logsumexp of one value is the value, softmax 1, log_softmax 0, argmax the first index
  it("logsumexp, sum, mean, max, argmax, softmax and topk agree on dims 1 and -1", function()
    local s = cnn.tensor(3.5)
    for _, d in ipairs { 1, -1 } do
      H.assert_tensor(s:logsumexp(d), 3.5)
      H.assert_tensor(cnn.F.logsumexp(s, d, true), 3.5)
      H.assert_tensor(s:sum(d), 3.5)
      H.assert_tensor(s:mean(d), 3.5)
      H.assert_tensor((s:max(d)), 3.5)
      assert.are.equal(1, s:argmax(d):item())
      H.assert_tensor(cnn.F.softmax(s, d), 1)
      H.assert_tensor(cnn.F.log_softmax(s, d), 0)
      local v, i = s:topk(1, d)
      assert.are.same({ 3.5, 1 }, { v:item(), i:item() })
    end
    assert.are.equal(-math.huge, cnn.tensor(-math.huge):logsumexp(1):item())
    for _, d in ipairs { 0, 2, -2 } do
      H.assert_error(function() return s:logsumexp(d) end, "logsumexp: dim must be a nonzero integer within %-1..1")
      local pat = "sum: dimension " .. tostring(d):gsub("%-", "%%-") .. " out of range %(expected 1..1 or %-1..%-1%)"
      H.assert_error(function() return s:sum(d) end, pat)
      H.assert_error(function() return s:topk(1, d) end, "topk: dim must be a nonzero integer within %-1..1")
    end
    H.assert_usable()
  end)
end)

describe("logsumexp over an empty dimension", function()
  it("is -inf, the log of an empty sum, as PyTorch's (max refused the empty dim)", function()
    local e = cnn.zeros(0, 3)
    local r = e:logsumexp(1)
    assert.are.same({ 3 }, r:shape())
    for i = 1, 3 do assert.are.equal(-math.huge, r[i]) end
    assert.are.same({ 1, 3 }, e:logsumexp(1, true):shape())
    assert.are.same({ 0 }, e:logsumexp(2):shape()) -- nothing to reduce per row: no rows
    H.assert_tensor(cnn.tensor { { 0, math.log(3) } }:logsumexp(2), { math.log(4) }, { rtol = 1e-6 })
  end)
end)
