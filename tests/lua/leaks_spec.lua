-- Issue 14, "Leaks": loops that used to grow memory without bound. Each runs many calls and bounds
-- the growth of the allocator's live bytes (tensor storage) after a full collection; the bounds are
-- generous (a leak grows by the loop's whole volume, tens to hundreds of MB), so timing, the
-- collector's pace and the sanitizer build's own allocations never matter.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local MiB = 1024 * 1024

local function live()
  collectgarbage()
  collectgarbage()
  return cnn.memory_stats().live_bytes
end

-- live-byte growth over `n` calls of fn(i), after collection
local function growth(n, fn)
  local before = live()
  for i = 1, n do fn(i) end
  return live() - before
end

describe("no leaks", function()
  it("t:add_(other, alpha) with a bad alpha releases other (it leaked 16 KB a call)", function()
    local t = cnn.zeros(4096)
    local g = growth(2000, function()
      local other = cnn.ones(4096) -- 16 KB each: a leak is 32 MB over the loop
      assert(not pcall(t.add_, t, other, "x"))
    end)
    assert.is_true(g < 4 * MiB, "live bytes grew by " .. g)
    H.assert_error(function() t:add_(cnn.ones(4096), "x") end, "add_")
    H.assert_usable()
  end)

  it("an operand that fails its checks leaks nothing either", function()
    local t = cnn.zeros(4096)
    local g = growth(2000, function()
      local a = cnn.ones(4096)
      assert(not pcall(function() return a + {} end))
      assert(not pcall(function() return a:add_(cnn.ones(3)) end))
      assert(not pcall(function() return cnn.cat({a, a, 1}, 1) end))
      assert(not pcall(function() return t[a] end))
    end)
    assert.is_true(g < 4 * MiB, "live bytes grew by " .. g)
  end)

  it("a cycle of grads (x.grad = y, y.grad = x) makes no cycle: the tensors are freed", function()
    local g = growth(2000, function()
      local x, y = cnn.ones(4096), cnn.ones(4096)
      x.grad, y.grad = y, x
    end)
    assert.is_true(g < 4 * MiB, "live bytes grew by " .. g)
    -- x.grad = x (or a view of x) is refused, as PyTorch's "can't assign Variable as its own grad":
    -- backward would accumulate into x's own values (the fourth fuzzing round's find)
    local x = cnn.ones(3):requires_grad_()
    H.assert_error(function() x.grad = x end, "grad", "cannot be its own gradient")
    -- not a tensor: named as what t.grad = v was given (it said "for argument 3", __newindex's slot)
    local msg = H.assert_error(function() x.grad = 3 end, "grad: t.grad must be a tensor or nil, got number")
    assert.is_nil(msg:find("argument 3", 1, true))
    H.assert_error(function() x.grad = x:detach() end, "grad", "cannot be its own gradient")
    H.assert_error(function() x.grad = cnn.ones(4) end, "grad", "assigned gradient has shape %(4%), the tensor %(3%)")
    H.assert_error(function() x.grad = cnn.ones(3):long() end, "grad", "assigned gradient is int64, the tensor float32")
    assert.is_nil(x.grad)
    x.grad = x:detach():clone()
    x:sum():backward()
    H.assert_tensor(x, {1, 1, 1})
    H.assert_tensor(x.grad, {2, 2, 2})
  end)

  it("a Function whose forward stores its output on ctx is collected without backward", function()
    local Keep = cnn.autograd.Function{
      forward = function(ctx, x)
        local y = x * 2
        ctx.out = y
        ctx.input = x
        return y
      end,
      backward = function(ctx, g) return g * 2 + ctx.out * 0 end,
    }
    local g = growth(2000, function()
      local x = cnn.ones(4096):requires_grad_()
      Keep(x) -- never differentiated: 32 KB a call stayed alive
    end)
    assert.is_true(g < 4 * MiB, "live bytes grew by " .. g)
    local x = cnn.ones(3):requires_grad_()
    Keep(x):sum():backward() -- ctx.out still works in backward
    H.assert_tensor(x.grad, {2, 2, 2})
  end)

  it("after a large tensor is freed, the collection allowance follows live memory down", function()
    do
      local big <close> = cnn.empty(16 * MiB) -- 64 MB: the allowance used to stay above it
      assert.are.equal(16 * MiB, big:numel())
    end
    local peak, base = 0, cnn.memory_stats().live_bytes
    for _ = 1, 300 do
      local _ = cnn.empty(256 * 1024) -- 1 MB temporaries
      peak = math.max(peak, cnn.memory_stats().live_bytes - base)
    end
    -- 16 MB allowance (+ the temporary in hand); it was 64 + 16 MB before the fix
    assert.is_true(peak < 40 * MiB, "temporaries peaked at " .. peak // MiB .. " MB")
  end)
end)
