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
