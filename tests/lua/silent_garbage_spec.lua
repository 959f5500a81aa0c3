-- Issue 14, "Leaks and silent garbage": calls that returned wrong values or silently did the wrong
-- thing. Expected values are PyTorch 1.13's (checked by hand with python3-torch: int64 tensors
-- wrap around on overflow, NaN or an out-of-range value into int64 is "value cannot be converted to
-- type int64 without overflow", a write into an expanded tensor is "unsupported operation: more
-- than one element of the written-to tensor refers to a single memory location").
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local err = H.assert_error
local I = {dtype = "int64"}

describe("int64 is exact", function()
  it("integer operands of int64 tensors keep every bit", function()
    local z = cnn.tensor({0}, I)
    assert.are.equal(math.maxinteger, (z + math.maxinteger)[1])
    assert.are.equal(math.mininteger, (z + math.mininteger)[1])
    assert.are.equal((1 << 53) + 1, (z + ((1 << 53) + 1))[1])
    assert.are.equal((1 << 62) + 3, (cnn.tensor({3}, I) + (1 << 62))[1])
    assert.are.equal(-((1 << 60) + 1), (cnn.tensor({(1 << 60) + 1}, I) * -1)[1])
    assert.are.equal(true, cnn.tensor({(1 << 53) + 1}, I):eq((1 << 53) + 1)[1])
    assert.are.equal(false, cnn.tensor({(1 << 53) + 1}, I):eq(1 << 53)[1])
  end)

  it("clamp of int64 between integer bounds keeps every bit, and the dtype", function()
    local l = cnn.tensor({(1 << 53) + 1, 3}, I)
    H.assert_tensor(l:clamp(nil, (1 << 53) + 1), {(1 << 53) + 1, 3}, {dtype = "int64"}) -- was 2^53
    H.assert_tensor(l:clamp((1 << 53) + 1), {(1 << 53) + 1, (1 << 53) + 1}, {dtype = "int64"})
    H.assert_tensor(cnn.tensor({1, 2}, I):clamp(math.maxinteger), {math.maxinteger, math.maxinteger},
      {dtype = "int64"}) -- was float32
    H.assert_tensor(cnn.tensor({1, 5, 9}, I):clamp(6, 3), {3, 3, 3}, {dtype = "int64"}) -- lo > hi: hi, as PyTorch
    local m = cnn.tensor({1, 5, 9}, I)
    m:clamp_(math.mininteger, 4)
    H.assert_tensor(m, {1, 4, 4}, {dtype = "int64"})
  end)

  it("overflow wraps around, as PyTorch's int64 does", function()
    assert.are.equal(math.mininteger, (cnn.tensor({1}, I) + math.maxinteger)[1])
    assert.are.equal(math.mininteger, (cnn.tensor({1 << 62}, I) + cnn.tensor({1 << 62}, I))[1])
  end)

  it("a float operand makes the result float32, as in PyTorch", function()
    local r = cnn.tensor({1}, I) + 2.5
    assert.are.equal("float32", r:dtype())
    assert.are.equal(3.5, r[1])
  end)

  it("full, tensor, fill_, t[i] = v and arange hold integers above 2^53", function()
    local big = math.maxinteger - 1
    assert.are.equal(big, cnn.full({2}, big, I)[2])
    assert.are.equal(big, cnn.tensor(big, I):item())
    assert.are.equal(big, cnn.zeros(2, I):fill_(big)[1])
    local t = cnn.zeros(2, I)
    t[2] = big
    assert.are.equal(big, t[2])
    H.assert_tensor(cnn.arange(math.maxinteger - 2, math.maxinteger),
      {math.maxinteger - 2, math.maxinteger - 1}, {dtype = "int64"})
    assert.are.same({math.mininteger, math.mininteger + 1},
      cnn.arange(math.mininteger, math.mininteger + 2):totable())
    assert.are.same({math.maxinteger, 1, math.mininteger + 3},
      cnn.arange(math.maxinteger, math.mininteger + 1, -(math.maxinteger - 1)):totable())
  end)

  it("NaN or a value beyond int64 into an int64 tensor is an error, never uninitialised memory", function()
    err(function() return cnn.full({2}, 0 / 0, I) end, "full:", "nan", "int64")
    err(function() return cnn.tensor(1e300, I) end, "tensor:", "int64", "overflow")
    err(function() return cnn.zeros(2, I):fill_(0 / 0) end, "fill_:", "nan")
    err(function() return cnn.zeros(2, I):fill_(2 ^ 63) end, "fill_:", "overflow")
    err(function() local t = cnn.zeros(2, I); t[1] = -1e19 end, "overflow")
    assert.are.equal(2, cnn.zeros(2, I):fill_(2.9)[1]) -- fractions truncate, as in PyTorch
    H.assert_usable()
  end)
end)

describe("one rule for writes into expanded tensors", function()
  local function expanded() return cnn.zeros(1):expand(3) end

  it("every in-place write but fill_ refuses a tensor whose elements share memory", function()
    local msg = "more than one element"
    err(function() expanded():copy_(cnn.ones(3)) end, "copy_:", msg)
    err(function() expanded():uniform_() end, "uniform_:", msg)
    err(function() expanded():normal_() end, "normal_:", msg)
    err(function() expanded():add_(1) end, "add_:", msg)
    err(function() expanded():clamp_(0, 1) end, "clamp_:", msg)
    err(function() local e = expanded(); e[2] = 5 end, "newindex:", msg)
    err(function() local e = cnn.zeros(1, 3):expand(2, 3); e[1] = 5 end, "newindex:", msg)
    err(function() local e = cnn.zeros(1, 3):expand(2, 3); e[{1, 2}] = 5 end, "newindex:", msg)
    H.assert_usable()
  end)

  -- as PyTorch's fill_: one value for every element is the same whichever element a location is
  it("fill_ and zero_ write an expanded tensor's memory once, as PyTorch's", function()
    local base = cnn.zeros(1, 3)
    local e = base:expand(4, 3)
    e:fill_(2)
    H.assert_tensor(base, {{2, 2, 2}})
    e:zero_()
    H.assert_tensor(base, {{0, 0, 0}})
    local i = cnn.zeros(2, 1, {dtype = "int64"}):expand(2, 5):fill_(7)
    assert.are.same({{7, 7, 7, 7, 7}, {7, 7, 7, 7, 7}}, i:totable())
    -- an optimiser's zero_grad{set_to_none=false} on a gradient set to an expanded tensor
    local l = cnn.nn.Linear(3, 1)
    l.weight.grad = cnn.ones(1, 1):expand(1, 3)
    cnn.optim.SGD(l:parameters(), {lr = 0.1}):zero_grad{set_to_none = false}
    H.assert_tensor(l.weight.grad, {{0, 0, 0}})
    -- with history it is still refused (a rewrite of the graph through overlapping memory)
    local x = cnn.ones(3, {requires_grad = true})
    err(function() (x * 2):view(1, 3):expand(2, 3):fill_(5) end, "fill_:", "more than one element")
  end)

  it("an expanded tensor still reads, and its clone writes", function()
    local e = cnn.tensor{7}:expand(3)
    H.assert_tensor(e + 1, {8, 8, 8})
    local c = e:clone():fill_(1)
    H.assert_tensor(c, {1, 1, 1})
  end)
end)

describe("misc silent garbage", function()
  it("cnn.tensor{{}, {1}} is ragged", function()
    err(function() return cnn.tensor{{}, {1}} end, "tensor:", "ragged")
    err(function() return cnn.tensor{{1}, {}} end, "tensor:", "ragged")
    err(function() return cnn.tensor{{}, 1} end, "tensor:", "ragged")
    H.assert_tensor(cnn.tensor{{}, {}}, {shape = {2, 0}, data = {}})
  end)

  it("a closed tensor passed to an op says it is closed", function()
    local x = cnn.ones(2)
    getmetatable(x).__close(x)
    err(function() return cnn.ones(2) + x end, "add:", "closed")
    err(function() return x + 1 end, "closed")
    err(function() return x:sum() end, "sum:", "closed")
    err(function() return cnn.cat({x}, 1) end, "cat:", "closed tensor")
    err(function() return cnn.F.relu(x) end, "closed")
    err(function() return cnn.save(os.tmpname(), {x = x}) end, "save:", "closed")
    err(function() return cnn.data.transforms.normalize(0.5, 0.5)(x) end, "closed")
    assert.are.equal("tensor(<closed>)", tostring(x))
    H.assert_usable()
  end)
end)

describe("options and arguments a function does not read", function()
  -- each of these gave a wrong number, silently, where PyTorch's port of the line reads it
  it("are taken (alpha, reduce, dtype, equal_nan, error_if_nonfinite) or refused by name", function()
    H.assert_tensor(cnn.ones(2):add(1, {alpha = 10}), {11, 11})
    H.assert_tensor(cnn.ones(2):sub(cnn.ones(2), {alpha = 3}), {-2, -2})
    local a, b = cnn.ones(2):requires_grad_(), cnn.ones(2):requires_grad_()
    a:add(b, {alpha = 3}):sum():backward()
    H.assert_tensor(b.grad, {3, 3})
    err(function() return cnn.ones(2):add(1, {alpah = 1}) end, "add: unknown option 'alpah'")
    -- rounding_mode, //, % and the roundings, against PyTorch 1.13's values
    local q = cnn.tensor{7, -7, 7.5, -7.5}
    H.assert_tensor(q:div(2, {rounding_mode = "floor"}), {3, -4, 3, -4})
    H.assert_tensor(q:div(2, {rounding_mode = "trunc"}), {3, -3, 3, -3})
    H.assert_tensor(q // 2, {3, -4, 3, -4})
    H.assert_tensor(q % 2, {1, 1, 1.5, 0.5})
    H.assert_tensor(q % -2, {-1, -1, -0.5, -1.5})
    H.assert_tensor(7 % cnn.tensor{2, -2}, {1, -1})
    err(function() return q:div(2, {rounding_mode = "round"}) end, 'div: rounding_mode must be "floor" or "trunc"')
    H.assert_tensor(cnn.tensor({7, -7, 7, -7}, I) // cnn.tensor({2, 2, -2, -2}, I), {3, -4, -4, 3}, {dtype = "int64"})
    H.assert_tensor(cnn.tensor({7, -7, 7, -7}, I) % cnn.tensor({2, 2, -2, -2}, I), {1, 1, -1, -1}, {dtype = "int64"})
    H.assert_tensor(cnn.tensor{1} // 0.1, {9}) -- PyTorch's algorithm: floor(1 / 0.1) would be 10
    err(function() return cnn.tensor({7}, I) // 0 end, "floor_divide: integer division by zero")
    err(function() return cnn.tensor({7}, I) % cnn.zeros(1):long() end, "remainder: integer division by zero")
    -- two integer operands: the exact quotient toward zero in their dtype, as PyTorch's (was refused)
    H.assert_tensor(cnn.tensor({7, -7, 7, -7, 6, 0}, I):div(cnn.tensor({2, 2, -2, -2, -3, 5}, I),
      {rounding_mode = "trunc"}), {3, -3, -3, 3, -2, 0}, {dtype = "int64"})
    H.assert_tensor(cnn.tensor({math.maxinteger, math.mininteger + 1}, I):div(2, {rounding_mode = "trunc"}),
      {math.maxinteger // 2, -(math.maxinteger // 2)}, {dtype = "int64"})
    H.assert_tensor(cnn.tensor({250, 7}, {dtype = "uint8"}):div(cnn.tensor({3, 2}, {dtype = "uint8"}),
      {rounding_mode = "trunc"}), {83, 3}, {dtype = "uint8"})
    err(function() return cnn.tensor({7}, I):div(0, {rounding_mode = "trunc"}) end, "div: integer division by zero")
    local r = cnn.tensor{-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1.7, -1.7}
    H.assert_tensor(r:floor(), {-3, -2, -1, 0, 1, 2, 1, -2})
    H.assert_tensor(r:ceil(), {-2, -1, -0, 1, 2, 3, 2, -1})
    H.assert_tensor(r:round(), {-2, -2, -0, 0, 2, 2, 2, -2}) -- halves to even
    H.assert_tensor(r:trunc(), {-2, -1, -0, 0, 1, 2, 1, -1})
    H.assert_tensor(cnn.tensor({3, -4}, I):floor(), {3, -4}, {dtype = "int64"})
    local g = cnn.tensor{5.5, -5.5}:requires_grad_()
    local loss = (g % 2):sum() + g:round():sum()
    loss:backward()
    H.assert_tensor(g.grad, {1, 1}) -- the remainder's 1, the rounding's 0
    local x, y = cnn.tensor{5.5, -5.5}:requires_grad_(), cnn.tensor{2, 2}:requires_grad_()
    local rem = (x % y):sum()
    rem:backward()
    H.assert_tensor(y.grad, {-2, 3}) -- -floor_divide(x, y), as PyTorch
    local L = cnn.tensor({{1, 1}}, I)
    H.assert_tensor(cnn.ones(2, 2):scatter(1, L, cnn.ones(1, 2) * 5, {reduce = "add"}), {{6, 6}, {1, 1}})
    H.assert_tensor(cnn.ones(2, 2):scatter(1, L, 5, {reduce = "add"}), {{6, 6}, {1, 1}})
    err(function() return cnn.ones(2, 2):scatter(1, L, 5, {reduce = "multiply"}) end, "scatter: reduce must be")
    assert.are.equal("int64", cnn.eye(2, {dtype = "int64"}):dtype())
    H.assert_tensor(cnn.linspace(-1, 2, 4, {dtype = "int64"}), {-1, 0, 1, 2}, {dtype = "int64"})
    assert.is_true(cnn.allclose(cnn.tensor{0 / 0}, cnn.tensor{0 / 0}, 1e-5, 1e-8, true))
    assert.is_false(cnn.allclose(cnn.tensor{0 / 0}, cnn.tensor{0 / 0}))
    assert.is_false(cnn.allclose(cnn.tensor({(1 << 53) + 1}, I), cnn.tensor({1 << 53}, I), 0, 0)) -- not as doubles
    local p = cnn.ones(3):requires_grad_()
    p.grad = cnn.tensor{1, 0 / 0, 2}
    err(function() cnn.nn.utils.clip_grad_norm_(p, 1, 2, true) end, "clip_grad_norm_: the total norm of order 2")
    assert.is_true(p.grad[2] ~= p.grad[2] and p.grad[1] == 1) -- untouched
    -- a function that reads no options refuses a table or an extra argument
    err(function() return cnn.ones(2):mul(2, {}) end, "mul: takes no options table %(argument 3%)")
    err(function() return cnn.ones(2):exp(1) end, "exp: takes 1 argument, got 2")
    err(function() return cnn.ones(2, 3):sum(1, false, {dtype = "int64"}) end, "sum: takes no options table")
    err(function() return cnn.ones(2, 3):softmax(2, {dtype = "float32"}) end, "softmax: takes no options table")
    err(function() return cnn.ones(2, 3):nonzero({as_tuple = true}) end, "nonzero: takes no options table")
    err(function() return cnn.ones(3):sort(1, false, {stable = true}) end, "sort: takes no options table")
    err(function() return cnn.ones(3):clone({memory_format = "contiguous"}) end, "clone: takes no options table")
    err(function() return cnn.cat({cnn.ones(1)}, 1, {dtype = "int64"}) end, "cat: takes no options table")
    err(function() return cnn.ones(2, 2):gather(1, L, {sparse_grad = true}) end, "gather: takes no options table")
    err(function() cnn.manual_seed(1, 2) end, "manual_seed: takes 1 argument, got 2")
    err(function() return cnn.ones(2, 2):scatter_add(1, L, cnn.ones(1, 2), {reduce = "add"}) end,
      "scatter_add: takes no options table")
    -- the operators still work (unary metamethods get their operand twice)
    H.assert_tensor(-cnn.ones(2), {-1, -1})
    H.assert_tensor(~cnn.tensor({1, 2}, I), {-2, -3})
    H.assert_usable()
  end)
end)

describe("grad mode is restored", function()
  it("after a coroutine yields inside no_grad and is abandoned", function()
    local co = coroutine.wrap(function()
      cnn.no_grad(function() coroutine.yield(cnn.is_grad_enabled()) end)
    end)
    assert.is_false(co()) -- inside, recording is off
    assert.is_true(cnn.is_grad_enabled()) -- and the caller has its own mode back
    collectgarbage() -- co is never resumed again
    assert.is_true(cnn.is_grad_enabled())
  end)

  it("while a coroutine is suspended inside no_grad, and again when it resumes", function()
    local seen = {}
    local co = coroutine.wrap(function()
      cnn.no_grad(function()
        seen[#seen + 1] = cnn.is_grad_enabled()
        coroutine.yield()
        seen[#seen + 1] = cnn.is_grad_enabled()
      end)
      seen[#seen + 1] = cnn.is_grad_enabled()
    end)
    co()
    seen[#seen + 1] = cnn.is_grad_enabled()
    co()
    assert.are.same({false, true, false, true}, seen)
  end)

  it("after a Function's forward yields and is abandoned", function()
    local Op = cnn.autograd.Function{
      forward = function(_, x) coroutine.yield(); return x * 2 end,
      backward = function(_, g) return g * 2 end,
    }
    local co = coroutine.create(function() return Op(cnn.ones(2):requires_grad_()) end)
    assert.is_true(coroutine.resume(co))
    assert.is_true(cnn.is_grad_enabled())
    local ok, y = coroutine.resume(co) -- and resumed, it records as usual
    assert.is_true(ok)
    y:sum():backward()
  end)

  it("an error inside no_grad in a coroutine closes its <close> variables and restores the mode", function()
    local closed = false
    local co = coroutine.create(function()
      cnn.no_grad(function()
        local _ <close> = setmetatable({}, {__close = function() closed = true end})
        error("boom")
      end)
    end)
    local ok, e = coroutine.resume(co)
    assert.is_false(ok)
    assert.truthy(tostring(e):find("boom"))
    assert.is_true(closed)
    assert.is_true(cnn.is_grad_enabled())
  end)

  it("after in-process search trials that turn it off", function()
    local hp = cnn.hpsearch
    local r = hp.search{
      space = {a = {1, 2}}, strategy = "grid", workers = 0, quiet = true, mode = "max",
      objective = function(p)
        assert(cnn.is_grad_enabled(), "each trial starts with grad mode on")
        cnn.set_grad_enabled(false)
        return p.a
      end,
    }
    assert.are.equal(2, r.best.metric)
    assert.is_true(cnn.is_grad_enabled())
  end)
end)

describe("search options that name nothing", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function() H.rmdir(dir) end)

  local function search(extra)
    local spec = {space = {a = {1}}, strategy = "grid", workers = 0, quiet = true, mode = "max",
                  objective = function(p) return p.a end}
    for k, v in pairs(extra) do spec[k] = v end
    return cnn.hpsearch.search(spec)
  end

  it("merge naming a missing folder is an error", function()
    err(function() search{merge = dir .. "/missing"} end, "merge", "missing", "matches no files")
    err(function() search{merge = dir .. "/missing/trial-*.jsonl"} end, "merge", "missing", "no such folder")
    err(function() search{merge = dir .. "/trial-*.jsonl"} end, "merge", "matches no files")
    assert.are.equal(1, search{merge = dir}.best.metric) -- an empty folder is fine
  end)

  it("a log that is a folder names the path", function()
    err(function() search{log = dir} end, "log", dir, "folder")
  end)
end)
