-- The C kernels along one dimension (issue 14): t:gather, t:scatter / scatter_ (tensor and value
-- forms), t:scatter_add / scatter_add_, t:cumsum, t:sort (argsort, topk), and F.pad's reflect,
-- replicate and circular modes. Values worked out by hand in comments, gradients by finite
-- differences (H.gradcheck); the oracle (oracle_spec) compares random cases with PyTorch.
local cnn = require "cnn"
local H = require "tests.lua.helpers"
local F = cnn.F

local function long(v) return cnn.tensor(v, {dtype = "int64"}) end

describe("scatter", function()
  it("writes src at the index along a dim; a repeated index keeps the last write along dim", function()
    local x = cnn.zeros(2, 3)
    -- dim 2: out[i][index[i][j]] = src[i][j]; row 2 writes column 1 twice, 30 then 40
    local y = x:scatter(2, long {{3, 1}, {1, 1}}, cnn.tensor {{10, 20}, {30, 40}})
    assert.same({{20, 0, 10}, {40, 0, 0}}, y:totable())
    assert.same({{0, 0, 0}, {0, 0, 0}}, x:totable()) -- out of place
    -- the value form, and an int64 tensor taking a float value (truncated, as PyTorch)
    assert.same({{7, 0, 7}, {0, 7, 0}}, x:scatter(2, long {{1, 3}, {2, 2}}, 7):totable())
    assert.same({5, 2, 5}, long({1, 2, 3}):scatter(1, long {3, 1}, 5.75):totable())
    assert.same({true, false, true}, cnn.zeros(3, {dtype = "bool"}):scatter(1, long {1, 3}, true):totable())
    -- the value is checked as fill_ checks it: -1 wraps into uint8, 300 and NaN do not fit
    assert.same({255, 0}, cnn.zeros(2, {dtype = "uint8"}):scatter(1, long {1}, -1):totable())
    H.assert_error(function() return cnn.zeros(2, {dtype = "uint8"}):scatter(1, long {1}, 300) end, "scatter",
      "300", "overflow")
    H.assert_error(function() return long({1, 2}):scatter_(1, long {1}, 0 / 0) end, "scatter_", "nan")
    local big = math.maxinteger - 1 -- integers stay exact
    assert.same({big, 2}, long({1, 2}):scatter(1, long {1}, big):totable())
  end)

  it("gradient: zero where written for t, the output's gradient gathered for src (zero past the index)", function()
    local x = cnn.ones(2, 3):requires_grad_()
    local src = cnn.ones(2, 3):requires_grad_()
    local y = x:scatter(2, long {{3, 1}, {2, 3}}, src) -- src's third column is never read
    local w = cnn.tensor {{1, 2, 3}, {4, 5, 6}}
    ;(y * w):sum():backward()
    assert.same({{0, 2, 0}, {4, 0, 0}}, x.grad:totable())
    assert.same({{3, 1, 0}, {5, 6, 0}}, src.grad:totable())
    H.gradcheck(function(a, b) return a:scatter(1, long {{2, 1, 3}}, b) end,
      {cnn.randn(3, 3):requires_grad_(), cnn.randn(2, 3):requires_grad_()})
  end)

  it("scatter_ and scatter_add_ write into t and return it; a bad index writes nothing", function()
    local t = cnn.zeros(2, 2)
    assert.equal(t, t:scatter_(1, long {{2, 1}}, cnn.tensor {{5, 6}}))
    assert.same({{0, 6}, {5, 0}}, t:totable())
    assert.equal(t, t:scatter_add_(1, long {{2, 2}}, cnn.tensor {{1, 1}}))
    assert.same({{0, 6}, {6, 1}}, t:totable())
    -- column 1's index is fine, column 2's is 3: nothing at all is written
    H.assert_error(function() return t:scatter_(1, long {{1, 3}}, cnn.tensor {{9, 9}}) end, "scatter_", "index 3",
      "range")
    H.assert_error(function() return t:scatter_add_(1, long {{1, 0}}, cnn.tensor {{9, 9}}) end, "scatter_add_",
      "index 0", "range")
    assert.same({{0, 6}, {6, 1}}, t:totable())
    -- into a transposed view: the writes land in the base
    local b = cnn.zeros(2, 3)
    b:t():scatter_(1, long {{3}, {1}}, cnn.tensor {{1}, {2}})
    assert.same({{2, 0, 1}, {0, 0, 0}}, b:totable()) -- b:t()[3][1] = 1, b:t()[1][1] = 2
    -- the in-place rule: a leaf that requires grad and an expanded tensor are refused
    H.assert_error(function() return cnn.zeros(2):requires_grad_():scatter_(1, long {1}, cnn.ones(1)) end,
      "scatter_", "leaf")
    H.assert_error(function() return cnn.zeros(1):expand(3):scatter_add_(1, long {1}, cnn.ones(1)) end,
      "scatter_add_", "expanded")
    H.assert_usable()
  end)
end)

describe("scatter_add (C kernel)", function()
  it("adds repeated indices up, int64 exactly (wrapping), bool as or", function()
    local y = cnn.zeros(3):scatter_add(1, long {2, 2, 3, 2}, cnn.tensor {1, 2, 4, 8})
    assert.same({0, 11, 4}, y:totable()) -- 1 + 2 + 8 at 2
    local big = long {math.maxinteger, 0}
    assert.same({math.mininteger, 0}, big:scatter_add(1, long {1}, long {1}):totable())
    assert.same({true, true}, cnn.tensor({true, false}):scatter_add(1, long {2, 2}, cnn.tensor {true, false}):totable())
    H.gradcheck(function(a, b) return a:scatter_add(2, long {{1, 1, 3}, {2, 2, 2}}, b) end,
      {cnn.randn(2, 3):requires_grad_(), cnn.randn(2, 4):requires_grad_()})
  end)

  it("refuses a bad index before writing, naming the function; huge indices do not overflow", function()
    local x, src = cnn.zeros(2, 3), cnn.ones(2, 3)
    H.assert_error(function() return x:scatter_add(2, long {{4}}, src) end, "scatter_add", "index 4", "range")
    H.assert_error(function() return x:scatter_add(2, long {{math.maxinteger}}, src) end, "scatter_add", "range")
    H.assert_error(function() return x:scatter_add(2, long {{math.mininteger}}, src) end, "scatter_add", "range")
    H.assert_error(function() return x:scatter_add(2, long {{-1}}, src) end, "scatter_add", "range")
    H.assert_error(function() return x:scatter_add(2, cnn.ones(1, 1), src) end, "scatter_add", "int64")
    H.assert_error(function() return x:scatter_add(2, long {1}, src) end, "scatter_add", "dimensions")
    H.assert_error(function() return x:scatter_add(2, long {{1, 1, 1, 1}}, src) end, "scatter_add", "src")
    H.assert_error(function() return x:scatter_add(2, long {{1}, {1}, {1}}, cnn.ones(3, 1)) end, "scatter_add",
      "input")
    H.assert_error(function() return x:scatter_add(2, long {{1}}, long {{1}}) end, "scatter_add", "dtype")
    H.assert_error(function() return x:scatter_add(2, long {{1}}, 3) end, "scatter_add", "src")
    H.assert_error(function() return x:scatter_add(3, long {{1}}, src) end, "scatter_add", "dimension")
    assert.same({{0, 0, 0}, {0, 0, 0}}, x:totable())
    H.assert_usable()
  end)
end)

describe("gather (C kernel)", function()
  it("0-d inputs act as size 1, empty indices give empty results, gradients check", function()
    assert.equal(3, cnn.tensor(3):gather(1, long(1)):item())
    assert.same({2, 0}, cnn.ones(2, 3):gather(2, cnn.zeros(2, 0, {dtype = "int64"})):size())
    H.gradcheck(function(a) return a:gather(1, long {{3, 1}, {3, 3}}) end, {cnn.randn(3, 2):requires_grad_()})
    H.assert_error(function() return cnn.ones(2, 3):gather(2, long {{0}}) end, "gather", "index 0", "range")
    H.assert_error(function() return cnn.ones(2, 3):gather(2, long {{1}, {1}, {1}}) end, "gather", "size 3")
    H.assert_error(function() return cnn.ones(2, 3):gather(1, long {{1, 1, 1, 1}}) end, "gather", "size 4")
    -- along dim itself the index may be longer than the input (positions repeat)
    assert.same({{1}, {1}, {1}}, cnn.ones(2, 3):gather(1, long {{1}, {2}, {1}}):totable())
    H.assert_usable()
  end)
end)

describe("cumsum (C kernel)", function()
  it("sums along any dim of any view; float32 accumulates in double, integers exactly", function()
    local x = cnn.tensor {{1, 2, 3}, {4, 5, 6}}
    assert.same({{1, 2, 3}, {5, 7, 9}}, x:cumsum(1):totable())
    assert.same({{1, 5}, {2, 7}, {3, 9}}, x:t():cumsum(-1):totable())
    assert.same({{1, 3, 6}, {4, 9, 15}}, x:t():cumsum(1):t():totable())
    local b = cnn.tensor({true, false, true}):cumsum(1)
    assert.equal("int64", b:dtype())
    assert.same({1, 1, 2}, b:totable())
    local p = (1 << 53) + 1
    assert.same({p, p + 1}, long({p, 1}):cumsum(1):totable()) -- past 2^53: exact
    -- 10^6 copies of float32(0.1): each running sum is the double sum rounded to float32 once
    local n = 1000000
    local c = cnn.full({n}, 0.1):cumsum(1)
    local tenth = cnn.tensor(0.1):item() -- float32(0.1) as a double
    for _, k in ipairs {1, 1000, 123457, n} do
      assert.equal(cnn.tensor(tenth * k):item(), c[k])
    end
  end)

  it("backward is the reverse running sum; gradcheck; 0-d and bad dims", function()
    local x = cnn.tensor({1, 2, 3}):requires_grad_()
    ;(x:cumsum(1) * cnn.tensor {1, 10, 100}):sum():backward()
    assert.same({111, 110, 100}, x.grad:totable())
    H.gradcheck(function(a) return a:cumsum(2) end, {cnn.randn(3, 4):requires_grad_()})
    assert.equal(5, cnn.tensor(5):cumsum(1):item())
    H.assert_error(function() return cnn.ones(2):cumsum(2) end, "cumsum", "dimension")
    H.assert_error(function() return cnn.ones(2):cumsum() end, "cumsum", "dimension")
    H.assert_usable()
  end)
end)

describe("sort (C kernel)", function()
  it("sorts every row of a strided view stably, bool and uint8 too", function()
    local x = cnn.tensor {{3, 1}, {1, 2}, {3, 0}}:t() -- rows {3, 1, 3} and {1, 2, 0}
    local v, i = x:sort(2)
    assert.same({{1, 3, 3}, {0, 1, 2}}, v:totable())
    assert.same({{2, 1, 3}, {3, 1, 2}}, i:totable())
    i = select(2, cnn.tensor({true, false, true, false}):sort(1, true))
    assert.same({1, 3, 2, 4}, i:totable())
    v = cnn.tensor({200, 3, 255}, {dtype = "uint8"}):sort()
    assert.same({3, 200, 255}, v:totable())
    H.gradcheck(function(a) return a:sort(1) end, {cnn.tensor({{0.3, -1}, {2, 0.5}, {-0.7, 0.1}}):requires_grad_()})
    H.assert_error(function() return x:sort(3) end, "sort", "dimension")
    H.assert_error(function() return x:sort(1, "down") end, "sort", "descending")
    H.assert_usable()
  end)

  it("long rows (the radix path) match a stable reference sort: ties, NaN, inf, -0, int64 extremes", function()
    -- reference: positions ordered by value (NaN above all; descending reverses the values only),
    -- ties by position
    local function reference(vals, desc)
      local pos = {}
      for i = 1, #vals do pos[i] = i end
      local function rank(v) return v ~= v and math.huge or v end
      table.sort(pos, function(i, j)
        local a, b = vals[i], vals[j]
        local an, bn = a ~= a, b ~= b
        if an ~= bn then return desc == an end -- NaN last ascending, first descending
        if not an and rank(a) ~= rank(b) then
          if desc then return rank(a) > rank(b) end
          return rank(a) < rank(b)
        end
        return i < j
      end)
      return pos
    end
    math.randomseed(14)
    local pool = {0.5, -0.5, 0.0, -0.0, 1 / 0, -1 / 0, 0 / 0, 3.25, -1e30, 1e-30, 2.5}
    local f, i64, u8 = {}, {}, {}
    local ipool = {math.maxinteger, math.mininteger, 0, -1, 1, 1 << 40, -(1 << 40)}
    for k = 1, 300 do
      f[k] = math.random() < 0.5 and pool[math.random(#pool)] or math.random() * 4 - 2
      i64[k] = math.random() < 0.5 and ipool[math.random(#ipool)] or math.random(-3, 3)
      u8[k] = math.random(0, 255) // (math.random() < 0.5 and 64 or 1)
    end
    for _, c in ipairs {{f, "float32"}, {i64, "int64"}, {u8, "uint8"}} do
      local t = cnn.tensor(c[1], {dtype = c[2]})
      local vals = t:totable() -- as stored (float32 rounding)
      for _, desc in ipairs {false, true} do
        local _, idx = t:sort(1, desc)
        assert.same(reference(vals, desc), idx:totable(), c[2] .. (desc and " descending" or ""))
      end
    end
  end)

  it("topk{sorted = false} still comes sorted (the order PyTorch leaves unspecified)", function()
    local v, i = cnn.tensor({1, 5, 3, 4}):topk(3, 1, true, false)
    assert.same({5, 4, 3}, v:totable())
    assert.same({2, 4, 3}, i:totable())
  end)

  -- topk no longer sorts the whole row (a bounded heap for a small k: 60x faster on 1e6 values);
  -- it must pick what sort's first k are, ties by position, NaN above everything, -0 == +0
  it("topk gives sort's first k values and indices, on every dtype, dim and layout", function()
    math.randomseed(16)
    for trial = 1, 400 do
      local size = {}
      for d = 1, math.random(1, 3) do size[d] = math.random(1, 9) end
      if trial % 8 == 0 then size[#size] = math.random(100, 600) end -- rows long enough for the heap
      local kind = math.random(1, 3)
      local t = kind == 1 and cnn.randint(-3, 3, size):float() + (math.random() < 0.5 and 0 or cnn.randn(size))
        or kind == 2 and cnn.randint(-4, 4, size) or cnn.randint(0, 255, size, {dtype = "uint8"})
      if kind == 1 then
        local flat = t:view(-1)
        flat[math.random(1, flat:numel())] = 0 / 0
        flat[math.random(1, flat:numel())] = -0.0
      end
      if #size >= 2 and math.random() < 0.3 then t = t:transpose(1, 2) end
      local d = math.random(1, t:dim())
      local k = math.random() < 0.6 and math.random(0, math.min(3, t:size(d))) or math.random(0, t:size(d))
      local largest = math.random() < 0.6
      local v, i = t:topk(k, d, largest)
      local sv, si = t:sort(d, largest)
      local case = string.format("case %d: k=%d dim=%d largest=%s", trial, k, d, tostring(largest))
      assert.same(si:narrow(d, 1, k):totable(), i:totable(), case)
      assert.are.equal(t:dtype(), v:dtype(), case)
      assert.is_true(v:eq(sv:narrow(d, 1, k)):logical_or(v:isnan()):all():item(), case)
    end
    local x = cnn.randn(100000)
    x[777] = 1e9
    local v, i = x:topk(1)
    assert.same({1e9, 777}, {v[1], i[1]})
  end)
end)

describe("F.pad copying modes", function()
  local x = cnn.tensor {{{1, 2, 3}}} -- (1, 1, 3)

  it("reflect, replicate and circular pad the last dims as PyTorch", function()
    assert.same({{{3, 2, 1, 2, 3, 2}}}, F.pad(x, {2, 1}, "reflect"):totable())
    assert.same({{{1, 1, 1, 2, 3, 3}}}, F.pad(x, {2, 1}, "replicate"):totable())
    assert.same({{{2, 3, 1, 2, 3, 1}}}, F.pad(x, {2, 1}, "circular"):totable())
    -- negative sizes crop; circular wraps what is left after cropping: {1, 2} -> 2 | 1 2
    assert.same({{{2, 1, 2}}}, F.pad(x, {1, -1}, "circular"):totable())
    -- two dims: (1, 2, 2) padded by 1 on every side, replicate: the corners repeat the corner
    local y = F.pad(cnn.tensor {{{1, 2}, {3, 4}}}, {1, 1, 1, 1}, "replicate")
    assert.same({{{1, 1, 2, 2}, {1, 1, 2, 2}, {3, 3, 4, 4}, {3, 3, 4, 4}}}, y:totable())
  end)

  it("a crop alone is new memory, never a view of the input (a write to it changed x)", function()
    for _, mode in ipairs({"constant", "reflect", "replicate", "circular"}) do
      local v = cnn.tensor {{{1, 2, 3, 4}}}
      local y = F.pad(v, {-1, 0}, mode)
      y:fill_(7)
      assert.same({{{1, 2, 3, 4}}}, v:totable(), mode)
      assert.same({{{7, 7, 7}}}, y:totable(), mode)
    end
    local a = cnn.tensor({1, 2, 3}):requires_grad_()
    local c = F.pad(a * 1, {0, -1})
    c[1] = 0 -- a write on the crop of a tensor with history is recorded (its view was refused)
    c:sum():backward()
    assert.same({0, 1, 0}, a.grad:totable())
  end)

  it("backward adds each copy's gradient to its source; gradcheck", function()
    local a = cnn.tensor({{{1, 2, 3}}}):requires_grad_()
    F.pad(a, {2, 1}, "reflect"):sum():backward() -- 3 2 1 2 3 2: element 2 four times... 1 once, 2 three, 3 twice
    assert.same({{{1, 3, 2}}}, a.grad:totable())
    for _, mode in ipairs {"reflect", "replicate", "circular"} do
      H.gradcheck(function(t) return F.pad(t, {2, 1, 1, 0}, mode) end, {cnn.randn(1, 2, 3, 4):requires_grad_()})
    end
  end)

  -- hand-worked (and PyTorch's): negative pads crop, then the mode pads what is left
  it("negative pads crop in every mode as PyTorch; an empty result has a zero gradient", function()
    local a = cnn.tensor({{{1, 2, 3, 4}}}):requires_grad_()
    local y = F.pad(a, {-1, 2}, "reflect") -- 2 3 4 | reflected about 4: 3 2
    assert.same({{{2, 3, 4, 3, 2}}}, y:totable())
    assert.same({{{1, 1, 1, 2}}}, F.pad(a, {2, -2}, "replicate"):totable())
    assert.same({{{2, 3}}}, F.pad(a, {-1, -1}, "constant"):totable())
    assert.same({{{2, 3, 4, 2}}}, F.pad(a, {-1, 1}, "circular"):totable()) -- wraps the cropped 2 3 4
    y:sum():backward()
    assert.same({{{0, 2, 2, 1}}}, a.grad:totable())
    -- (1, 1, 2, 3) cropped to (1, 1, 0, 3): nothing reads the input (PyTorch 1.13's reflection pad
    -- backward leaves this gradient uninitialised: docs/PYTORCH.md)
    for _, mode in ipairs {"reflect", "replicate", "circular", "constant"} do
      local b = cnn.full({1, 1, 2, 3}, 5.5):requires_grad_()
      local e = F.pad(b, {0, 0, -1, -1}, mode)
      assert.same({1, 1, 0, 3}, e:size())
      e:sum():backward()
      assert.same({{{{0, 0, 0}, {0, 0, 0}}}}, b.grad:totable())
    end
  end)

  it("refuses what PyTorch refuses, naming pad", function()
    H.assert_error(function() return F.pad(x, {3, 0}, "reflect") end, "pad", "less than its size")
    H.assert_error(function() return F.pad(cnn.ones(3), {1, 1}, "reflect") end, "pad", "1 or 2 more dims")
    H.assert_error(function() return F.pad(cnn.ones(2, 3), {1, 1}, "circular") end, "pad", "ndim %- 2")
    H.assert_error(function() return F.pad(x, {4, 0}, "circular") end, "pad", "more than once")
    H.assert_error(function() return F.pad(x, {1, 1}, "replicate", 0) end, "pad", "no value")
    H.assert_error(function() return F.pad(cnn.ones(1, 0, 3), {1, 1}, "replicate") end, "pad", "non%-empty")
    H.assert_error(function() return F.pad(x, {1, 1}, "mirror") end, "pad", "mode")
    -- empty results: reflect and replicate refuse only when every padded dim is empty; constant
    -- refuses an empty padded dim once any size is positive (PyTorch's constant_pad_nd)
    H.assert_error(function() return F.pad(cnn.ones(2, 1, 1), {0, -1}, "reflect") end, "pad", "empty")
    -- an unbatched 1-d or 2-d reflect may have an empty channel dim (PyTorch 1.13's checks; oracle
    -- seed 17), replicate and 3-d reflect may not
    assert.same({0, 8}, F.pad(cnn.ones(0, 4), {1, 3}, "reflect"):size())
    assert.same({0, 5, 5}, F.pad(cnn.ones(0, 3, 3), {1, 1, 1, 1}, "reflect"):size())
    H.assert_error(function() return F.pad(cnn.ones(0, 3, 3, 3), {1, 1, 1, 1, 1, 1}, "reflect") end, "pad",
      "non%-empty")
    H.assert_error(function() return F.pad(cnn.ones(0, 4), {1, 3}, "replicate") end, "pad", "non%-empty")
    assert.same({1, 1, 3, 0}, F.pad(cnn.ones(1, 1, 2, 1), {0, -1, 1, 0}, "replicate"):size())
    H.assert_error(function() return F.pad(cnn.ones(2, 0, 3), {1, 1, 0, 0}) end, "pad", "no element")
    assert.same({2, 0}, F.pad(cnn.ones(2, 1), {0, -1}):size()) -- cropping only: no check
    H.assert_usable()
  end)
end)
