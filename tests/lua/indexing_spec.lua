-- t[...] and t[...] = v: Lua's 1-based t[i] and Torch7's table indices, read and written through
-- one parser. Expected values are worked out by hand on t = arange(1, 13):view(3, 4):
--   { 1,  2,  3,  4},
--   { 5,  6,  7,  8},
--   { 9, 10, 11, 12}
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local err = H.assert_error

local function grid() return cnn.arange(1, 13):view(3, 4):float() end

describe("Torch7 table indices", function()
  it("t[{i, j}] is the element, negative counting from the end", function()
    local t = grid()
    assert.are.equal(7, t[{2, 3}])
    assert.are.equal(12, t[{-1, -1}])
    assert.are.equal(9, t[{3, 1}])
    assert.are.equal(5, cnn.arange(1, 6)[{5}]) -- int64, 1-d
    assert.are.equal("integer", math.type(cnn.arange(1, 6)[{5}]))
  end)

  it("a number per leading dim selects, the rest is taken whole", function()
    H.assert_tensor(grid()[{2}], {5, 6, 7, 8})
    H.assert_tensor(grid()[{-1}], {9, 10, 11, 12})
  end)

  it("{a, b} is the inclusive range a..b, {a} is a..a and {} the whole dim", function()
    local t = grid()
    H.assert_tensor(t[{{1, 2}, 2}], {2, 6})
    H.assert_tensor(t[{{}, 2}], {2, 6, 10})
    H.assert_tensor(t[{2, {2, 3}}], {6, 7})
    H.assert_tensor(t[{{2}, {-2, -1}}], {{7, 8}})
    H.assert_tensor(t[{{-2, -1}, {}}], {{5, 6, 7, 8}, {9, 10, 11, 12}})
    H.assert_tensor(t[{}], t:totable()) -- no entry: the whole tensor, as in Torch7
    H.assert_tensor(t[{{2, 1}}], {shape = {0, 4}, data = {}}) -- an empty range
  end)

  it("ranges are views: writes through them reach the tensor", function()
    local t = grid()
    local col = t[{{}, 2}]
    col:fill_(0)
    H.assert_tensor(t, {{1, 0, 3, 4}, {5, 0, 7, 8}, {9, 0, 11, 12}})
    local block = t[{{1, 2}, {3, 4}}]
    block:mul_(-1)
    H.assert_tensor(t, {{1, 0, -3, -4}, {5, 0, -7, -8}, {9, 0, 11, 12}})
  end)

  it("assignment takes the same indices: a number fills, a tensor is copied (broadcast)", function()
    local t = grid()
    t[{2, 3}] = 70
    t[{{}, 1}] = 0
    t[{3, {2, 4}}] = cnn.tensor{-1, -2, -3}
    t[{{1, 2}, {3, 4}}] = cnn.tensor{100, 200} -- (2) broadcast over (2, 2)
    H.assert_tensor(t, {{0, 2, 100, 200}, {0, 6, 100, 200}, {0, -1, -2, -3}})
    local l = cnn.arange(4)
    l[{-1}] = math.maxinteger -- int64: exact
    assert.are.equal(math.maxinteger, l[4])
  end)

  it("reading keeps autograd: the gradient of a slice goes back to its place", function()
    local x = grid():requires_grad_()
    x[{{}, 2}]:sum():backward()
    H.assert_tensor(x.grad, {{0, 1, 0, 0}, {0, 1, 0, 0}, {0, 1, 0, 0}})
  end)

  it("anything else raises, naming the problem", function()
    local t = grid()
    err(function() return t[1.5] end, "index:", "integer", "1.5")
    err(function() return t[true] end, "index:", "boolean")
    err(function() return t[{1, 2, 3}] end, "index:", "too many indices")
    err(function() return t[{"a"}] end, "index:", "entry 1", "string")
    err(function() return t[{{1, 2, 3}}] end, "index:", "range")
    err(function() return t[{{0, 2}}] end, "index:", "out of bounds")
    err(function() return t[{{2, 5}}] end, "index:", "out of bounds")
    err(function() return t[{4, 1}] end, "index:", "out of range")
    err(function() return t[{{1.5, 2}}] end, "index:", "integer")
    err(function() t[{1, 2}] = "x" end, "newindex:", "a number, a boolean or a tensor")
    err(function() t[1.5] = 1 end, "newindex:", "integer")
    err(function() return cnn.tensor(3)[1] end, "index:", "0-d")
    H.assert_usable()
  end)

  it("a tensor index other than a bool mask raises", function()
    local t = grid()
    err(function() return t[cnn.tensor({1}, {dtype = "int64"})] end, "index:", "int64 tensor", "index_select")
    err(function() return t[cnn.ones(3)] end, "index:", "float32 tensor")
    err(function() t[cnn.ones(3)] = 0 end, "newindex:", "float32 tensor")
    H.assert_usable()
  end)

  it("a float key with an integral value is an index", function()
    assert.are.equal(6, grid()[{2.0, 2.0}])
    H.assert_tensor(grid()[3.0], {9, 10, 11, 12})
  end)
end)
