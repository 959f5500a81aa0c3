-- Indexing and views (API.md "Tensors": Index and view). Views share storage with their base,
-- so writes through either side show in the other; indices and dims are 1-based, -1 is the last.
-- Expected values are worked out by hand from the base tensor in each test.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

-- {{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}}
local function base()
  return cnn.arange(1, 13, 1):view(3, 4)
end

describe("t[i]", function()
  it("gives row i (1-based) of a 2-d tensor", function()
    H.assert_tensor(base()[1], { 1, 2, 3, 4 })
    H.assert_tensor(base()[3], { 9, 10, 11, 12 })
  end)

  it("gives a number for a 1-d tensor", function()
    local v = cnn.tensor({ 10, 20, 30 })
    assert.are.equal(10, v[1])
    assert.are.equal(30, v[3])
    assert.are.equal("number", type(v[2]))
  end)

  it("accepts -1 for the last row", function()
    H.assert_tensor(base()[-1], { 9, 10, 11, 12 })
  end)

  it("returns a view: writing into the row changes the base", function()
    local t = base()
    local row = t[2]
    row[3] = 70
    assert.are.equal(70, t[2][3])
    H.assert_tensor(t, { { 1, 2, 3, 4 }, { 5, 6, 70, 8 }, { 9, 10, 11, 12 } })
  end)

  it("t[i] = number fills row i", function()
    local t = base()
    t[2] = 0
    H.assert_tensor(t, { { 1, 2, 3, 4 }, { 0, 0, 0, 0 }, { 9, 10, 11, 12 } })
  end)

  it("t[i] = tensor copies into row i", function()
    local t = base()
    t[1] = cnn.tensor({ -1, -2, -3, -4 })
    H.assert_tensor(t, { { -1, -2, -3, -4 }, { 5, 6, 7, 8 }, { 9, 10, 11, 12 } })
  end)

  it("t[i] = v sets one element of a 1-d tensor", function()
    local v = cnn.zeros(3)
    v[2] = 4.5
    H.assert_tensor(v, { 0, 4.5, 0 })
  end)

  it("chained t[i][j] = v writes the element of the base", function()
    local t = base()
    t[3][4] = -12
    assert.are.equal(-12, t[3][4])
    assert.are.equal(-12, t:select(1, 3):select(1, 4):item())
  end)
end)

describe("select and narrow", function()
  it("select(d, i) removes dim d at 1-based index i", function()
    H.assert_tensor(base():select(1, 2), { 5, 6, 7, 8 })
    H.assert_tensor(base():select(2, 1), { 1, 5, 9 })
  end)

  it("select accepts negative dims and indices", function()
    H.assert_tensor(base():select(-1, -1), { 4, 8, 12 })
    H.assert_tensor(base():select(-2, 1), { 1, 2, 3, 4 })
  end)

  it("narrow(d, start, len) keeps len entries from 1-based start", function()
    H.assert_tensor(base():narrow(2, 2, 2), { { 2, 3 }, { 6, 7 }, { 10, 11 } })
    H.assert_tensor(base():narrow(1, 3, 1), { { 9, 10, 11, 12 } })
  end)

  it("a selected column is a non-contiguous view sharing storage", function()
    local t = base()
    local col = t:select(2, 3)
    assert.is_false(col:is_contiguous())
    col:fill_(0)
    H.assert_tensor(t, { { 1, 2, 0, 4 }, { 5, 6, 0, 8 }, { 9, 10, 0, 12 } })
  end)

  it("writes to the base show in a narrowed view", function()
    local t = base()
    local n = t:narrow(2, 2, 2)
    t:zero_()
    H.assert_tensor(n, { { 0, 0 }, { 0, 0 }, { 0, 0 } })
  end)
end)

describe("view and reshape", function()
  it("view(...) and view{...} reinterpret a contiguous tensor", function()
    H.assert_tensor(base():view(2, 6), { { 1, 2, 3, 4, 5, 6 }, { 7, 8, 9, 10, 11, 12 } })
    H.assert_tensor(base():view({ 6, 2 }), { { 1, 2 }, { 3, 4 }, { 5, 6 }, { 7, 8 }, { 9, 10 }, { 11, 12 } })
  end)

  it("view infers one -1 size", function()
    assert.are.same({ 4, 3 }, base():view(-1, 3):shape())
    assert.are.same({ 12 }, base():view(-1):shape())
  end)

  it("view shares storage with its base", function()
    local t = base()
    local v = t:view(12)
    v[5] = 50 -- element 5 in row-major order is t[2][1]
    assert.are.equal(50, t[2][1])
  end)

  it("reshape of a contiguous tensor is a view", function()
    local t = base()
    local r = t:reshape(2, 6)
    r[1][1] = -1
    assert.are.equal(-1, t[1][1])
  end)

  it("reshape of a transposed tensor copies in logical order", function()
    local t = base()
    local r = t:t():reshape(12)
    -- column-major walk of the base: 1 5 9 2 6 10 3 7 11 4 8 12
    H.assert_tensor(r, { 1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12 })
    r[1] = 100
    assert.are.equal(1, t[1][1])
  end)
end)

describe("transpose, t and permute", function()
  it("t() swaps the two dims of a matrix without copying", function()
    local t = base()
    local tt = t:t()
    H.assert_tensor(tt, { { 1, 5, 9 }, { 2, 6, 10 }, { 3, 7, 11 }, { 4, 8, 12 } })
    assert.is_false(tt:is_contiguous())
    tt[4][1] = 40 -- is t[1][4]
    assert.are.equal(40, t[1][4])
  end)

  it("transpose(d1, d2) with 1-based and negative dims", function()
    local x = cnn.arange(0, 6, 1):view(1, 2, 3)
    local y = x:transpose(1, -1)
    assert.are.same({ 3, 2, 1 }, y:shape())
    H.assert_tensor(y, { { { 0 }, { 3 } }, { { 1 }, { 4 } }, { { 2 }, { 5 } } })
  end)

  it("permute reorders dims (1-based)", function()
    -- x[i][j][k] = 100 i + 10 j + k, sizes {2, 3, 2}
    local x = cnn.tensor({ { { 111, 112 }, { 121, 122 }, { 131, 132 } }, { { 211, 212 }, { 221, 222 }, { 231, 232 } } })
    local y = x:permute(3, 1, 2) -- y[k][i][j] = x[i][j][k]
    assert.are.same({ 2, 2, 3 }, y:shape())
    H.assert_tensor(y, { { { 111, 121, 131 }, { 211, 221, 231 } }, { { 112, 122, 132 }, { 212, 222, 232 } } })
    assert.is_false(y:is_contiguous())
    assert.are.same({ 2, 2, 3 }, x:permute({ 3, 1, 2 }):shape())
  end)

  it("contiguous() of a non-contiguous view is a contiguous copy", function()
    local t = base()
    local c = t:t():contiguous()
    assert.is_true(c:is_contiguous())
    H.assert_tensor(c, { { 1, 5, 9 }, { 2, 6, 10 }, { 3, 7, 11 }, { 4, 8, 12 } })
    c[1][1] = 0
    assert.are.equal(1, t[1][1])
  end)

  it("contiguous() of a contiguous tensor shares its storage", function()
    local t = base()
    t:contiguous()[1][1] = 0
    assert.are.equal(0, t[1][1])
  end)

  it("is_contiguous is true for fresh tensors and row slices", function()
    assert.is_true(base():is_contiguous())
    assert.is_true(base()[2]:is_contiguous())
    assert.is_true(base():narrow(1, 2, 2):is_contiguous())
    assert.is_false(base():narrow(2, 2, 2):is_contiguous())
  end)
end)

describe("unsqueeze, squeeze, flatten and expand", function()
  it("unsqueeze(d) inserts a size-1 dim at 1-based d; -1 appends", function()
    local v = cnn.tensor({ 1, 2, 3 })
    assert.are.same({ 1, 3 }, v:unsqueeze(1):shape())
    assert.are.same({ 3, 1 }, v:unsqueeze(2):shape())
    assert.are.same({ 3, 1 }, v:unsqueeze(-1):shape())
    H.assert_tensor(v:unsqueeze(2), { { 1 }, { 2 }, { 3 } })
  end)

  it("squeeze(d) removes a size-1 dim; squeeze() removes all", function()
    local x = cnn.zeros(1, 3, 1)
    assert.are.same({ 3, 1 }, x:squeeze(1):shape())
    assert.are.same({ 1, 3 }, x:squeeze(-1):shape())
    assert.are.same({ 3 }, x:squeeze():shape())
    -- squeezing a dim whose size is not 1 leaves the shape alone, as in PyTorch
    assert.are.same({ 1, 3, 1 }, x:squeeze(2):shape())
  end)

  it("flatten(start_d) merges dims from start_d to the end", function()
    local x = cnn.zeros(2, 3, 4)
    assert.are.same({ 24 }, x:flatten():shape())
    assert.are.same({ 2, 12 }, x:flatten(2):shape())
    H.assert_tensor(base():flatten(), { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 })
  end)

  it("expand repeats size-1 dims without copying", function()
    local a = cnn.tensor({ { 1, 2, 3 } })
    local e = a:expand(2, 3)
    H.assert_tensor(e, { { 1, 2, 3 }, { 1, 2, 3 } })
    a[1][2] = 20
    -- both rows of the expansion see the write: they are the same memory
    H.assert_tensor(e, { { 1, 20, 3 }, { 1, 20, 3 } })
  end)

  it("expand keeps -1 sizes and adds leading dims", function()
    local a = cnn.tensor({ { 1 }, { 2 } })
    H.assert_tensor(a:expand(-1, 3), { { 1, 1, 1 }, { 2, 2, 2 } })
    assert.are.same({ 4, 2, 3 }, a:expand({ 4, 2, 3 }):shape())
  end)
end)

describe("copies", function()
  it("clone does not share storage", function()
    local t = base()
    local c = t:clone()
    c:fill_(0)
    assert.are.equal(1, t[1][1])
    H.assert_tensor(c, { { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } })
  end)

  it("index_select(d, idx) gathers 1-based indices into a new tensor", function()
    local t = base()
    local idx = cnn.tensor({ 3, 1, 3 }, { dtype = "int64" })
    local r = t:index_select(1, idx)
    H.assert_tensor(r, { { 9, 10, 11, 12 }, { 1, 2, 3, 4 }, { 9, 10, 11, 12 } })
    H.assert_tensor(t:index_select(2, cnn.tensor({ 4, 2 }, { dtype = "int64" })),
      { { 4, 2 }, { 8, 6 }, { 12, 10 } })
    r[1][1] = 0
    assert.are.equal(9, t[3][1])
  end)
end)
