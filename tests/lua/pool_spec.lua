-- cnn.F.max_pool2d, avg_pool2d and adaptive_avg_pool2d against PyTorch
-- (tests/fixtures/conv_reference.lua, written by scripts/tools/gen_conv_fixtures.py: overlapping
-- windows, padding, dilation, ceil_mode, count_include_pad, divisor_override, non-dividing adaptive
-- sizes, unbatched inputs, argmax indices), finite differences, and misuse errors.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")
local F = cnn.F

local REF = dofile("tests/fixtures/conv_reference.lua")
local TOL = { rtol = 1e-4, atol = 1e-6 }
local GC = { eps = 1e-2, atol = 1e-2, rtol = 1e-2 }

local function t(entry) return cnn.tensor(entry.data) end

local function run(c, prep)
  local x = t(c.x):requires_grad_()
  local xi = prep and prep(x) or x
  local y, idx = F[c.op](xi, c.arg, c.opts)
  H.assert_tensor(y, c.output, TOL)
  if c.indices then
    assert.are.equal("int64", idx:dtype())
    H.assert_tensor(idx, c.indices)
  end
  y:backward(t(c.grad_output))
  H.assert_tensor(x.grad, c.grad_x, TOL)
end

local function find(name)
  for _, c in ipairs(REF.pool) do if c.name == name then return c end end
  error("no fixture case " .. name)
end

describe("pooling matches PyTorch", function()
  after_each(function() cnn.set_num_threads(2) end)
  for _, c in ipairs(REF.pool) do
    it(c.op .. ": " .. c.name, function() run(c) end)
  end
  it("with 1 thread as with 2", function()
    cnn.set_num_threads(1)
    run(find("max_overlap_3_2"))
    run(find("avg_ceil_pad"))
    run(find("adaptive_7x5_to_3x2"))
  end)
  it("on non-contiguous input", function()
    local function noncontig(x) return x:transpose(3, 4):contiguous():transpose(3, 4) end
    run(find("max_pad1"), noncontig)
    run(find("avg_pad_exclude"), noncontig)
    run(find("adaptive_7x5_to_3x2"), noncontig)
  end)
  it("names the nodes as PyTorch does", function()
    local x = cnn.ones(1, 1, 4, 4):requires_grad_()
    assert.are.equal("MaxPool2DWithIndicesBackward", F.max_pool2d(x, 2).grad_fn)
    assert.are.equal("AvgPool2DBackward", F.avg_pool2d(x, 2).grad_fn)
    assert.are.equal("AdaptiveAvgPool2DBackward", F.adaptive_avg_pool2d(x, 2).grad_fn)
  end)
end)

describe("pooling gradients", function()
  -- distinct values 0.1 apart or more, so no max window holds a near-tie (eps is 1e-2)
  local function spread(shape, seed)
    local n = 1
    for _, s in ipairs(shape) do n = n * s end
    local vals = cnn.linspace(-3, 3, n):totable()
    math.randomseed(seed)
    for i = n, 2, -1 do
      local j = math.random(i)
      vals[i], vals[j] = vals[j], vals[i]
    end
    return cnn.tensor(vals):view(shape):requires_grad_()
  end
  local function check(fn, x)
    local proj
    local ok, msg = cnn.autograd.gradcheck(function(xx)
      local y = fn(xx)
      if not proj then
        cnn.manual_seed(3)
        proj = cnn.randn(y:shape())
      end
      return (y * proj):sum()
    end, { x }, GC)
    assert(ok, msg)
  end

  it("max_pool2d passes gradcheck (overlapping, padded, ceil_mode, dilation)", function()
    check(function(x) return F.max_pool2d(x, 3, { stride = 2, padding = 1, ceil_mode = true }) end,
      spread({ 1, 2, 6, 6 }, 1))
    check(function(x) return F.max_pool2d(x, 2, { stride = 1, dilation = 2 }) end, spread({ 2, 1, 5, 5 }, 2))
  end)
  it("avg_pool2d passes gradcheck (count_include_pad both ways, ceil_mode)", function()
    check(function(x) return F.avg_pool2d(x, 3, { stride = 2, padding = 1, ceil_mode = true }) end,
      spread({ 1, 2, 6, 5 }, 3))
    check(function(x) return F.avg_pool2d(x, { 2, 3 }, { stride = 2, padding = 1, count_include_pad = false }) end,
      spread({ 2, 1, 5, 6 }, 4))
  end)
  it("adaptive_avg_pool2d passes gradcheck (non-dividing sizes)", function()
    check(function(x) return F.adaptive_avg_pool2d(x, { 3, 2 }) end, spread({ 1, 2, 7, 5 }, 5))
    check(function(x) return F.adaptive_avg_pool2d(x, 4) end, spread({ 2, 5, 6 }, 6))
  end)
end)

describe("pooling by hand", function()
  -- a 4x4 plane holding 1..16: 2x2 windows' maxima are their bottom-right cells
  local x = cnn.arange(1, 17):float():view(1, 1, 4, 4)
  it("max_pool2d takes the window maxima and returns 1-based flat indices", function()
    local y, idx = F.max_pool2d(x, 2, { return_indices = true })
    H.assert_tensor(y, { { { { 6, 8 }, { 14, 16 } } } })
    H.assert_tensor(idx, { { { { 6, 8 }, { 14, 16 } } } })
  end)
  it("max_pool2d keeps the first of tied maxima and the last NaN of a window, as PyTorch", function()
    local nan, inf = 0 / 0, math.huge
    -- windows (2x2, stride 2), cells in scan order with their 1-based flat positions:
    -- {3 @1, 3 @2, 1 @5, 3 @6} -> the first 3 (1); {nan @3, 5 @4, nan @7, 9 @8} -> the last NaN (7);
    -- all -inf @9, 10, 13, 14 -> the first cell (9); {0 @11, -1 @12, 2 @15, nan @16} -> NaN (16)
    local p = cnn.tensor { { 3, 3, nan, 5 }, { 1, 3, nan, 9 }, { -inf, -inf, 0, -1 }, { -inf, -inf, 2, nan } }
    local y, idx = F.max_pool2d(p:view(1, 1, 4, 4), 2, { return_indices = true })
    assert.are.equal(3, y[1][1][1][1])
    assert.is_true(y[1][1][1][2] ~= y[1][1][1][2])
    assert.are.equal(-inf, y[1][1][2][1])
    assert.is_true(y[1][1][2][2] ~= y[1][1][2][2])
    H.assert_tensor(idx, { { { { 1, 7 }, { 9, 16 } } } })
    -- odd sizes take the general loop (ceil_mode's partial windows) and agree where windows are whole
    local q = cnn.randn(2, 3, 7, 7)
    local a = F.max_pool2d(q, 2, { ceil_mode = true })
    H.assert_tensor(a:narrow(3, 1, 3):narrow(4, 1, 3), { shape = { 2, 3, 3, 3 }, data = H.values(F.max_pool2d(q, 2)) })
  end)
  it("max_pool2d of a window whose dilated taps all fall in the padding: -inf, index 0, no gradient", function()
    -- a 1x1 plane, kernel 2 dilated by 2, padding 1: the taps sit at -1 and 1 in each direction
    local one = cnn.ones(1, 1, 1, 1):requires_grad_()
    local y, idx = F.max_pool2d(one, 2, { padding = 1, dilation = 2, stride = 1, return_indices = true })
    H.assert_tensor(y, { { { { -math.huge } } } })
    H.assert_tensor(idx, { { { { 0 } } } })
    y:sum():backward()
    H.assert_tensor(one.grad, { { { { 0 } } } })
  end)
  it("max_pool2d with relu=true is relu of the pool over windows of values, values and gradients, one node", function()
    local nan = 0 / 0
    -- windows (2x2): {-3, -1, -2, -4} -> -1 -> 0, no gradient; {nan, 5, 1, 2} -> NaN (passes the
    -- gradient, as relu's backward does); {0, -0, -1, -2} -> 0, no gradient; {2, 7, 7, 1} -> the first 7
    local p = cnn.tensor { { -3, -1, nan, 5 }, { -2, -4, 1, 2 }, { 0, -0.0, 2, 7 }, { -1, -2, 7, 1 } }:view(1, 1, 4, 4)
    local px = p:clone():requires_grad_()
    local y = F.max_pool2d(px, 2, { relu = true })
    assert.are.equal("MaxPool2DReluBackward", y.grad_fn)
    assert.are.equal(0, y[1][1][1][1])
    assert.is_true(y[1][1][1][2] ~= y[1][1][1][2])
    assert.are.equal(0, y[1][1][2][1])
    assert.are.equal(1 / 0, 1 / y[1][1][2][1]) -- +0, as relu gives
    assert.are.equal(7, y[1][1][2][2])
    y:backward(cnn.tensor { { 10, 20 }, { 30, 40 } }:view(1, 1, 2, 2))
    H.assert_tensor(px.grad, { { { { 0, 0, 20, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 40 }, { 0, 0, 0, 0 } } } })
    -- and another plane: {1, 2, 3, 4} -> 4 (position 6), {nan, 5, 1, 2} -> NaN (position 3)
    local q = cnn.tensor { { 1, 2, nan, 5 }, { 3, 4, 1, 2 } }:view(1, 1, 2, 4):requires_grad_()
    F.max_pool2d(q, 2, { relu = true }):backward(cnn.tensor { { { { 1, 2 } } } })
    H.assert_tensor(q.grad, { { { { 0, 0, 2, 0 }, { 0, 1, 0, 0 } } } })
    -- against the two ops on random planes: LeNet's 2x2 path (vector rows and short ones) and the
    -- general one (overlapping, padded, ceil_mode), on 1 and 2 threads
    for _, threads in ipairs { 1, 2 } do
      cnn.set_num_threads(threads)
      for _, c in ipairs { { { 3, 6, 28, 28 }, 2, {} }, { { 2, 3, 10, 10 }, 2, {} }, { { 2, 3, 9, 8 }, 3,
        { stride = 2, padding = 1, ceil_mode = true } } } do
        cnn.manual_seed(5)
        local x0 = cnn.randn(table.unpack(c[1]))
        local a, b = x0:clone():requires_grad_(), x0:clone():requires_grad_()
        local ya = F.relu(F.max_pool2d(a, c[2], c[3]))
        local o = { relu = true }
        for k, v in pairs(c[3]) do o[k] = v end
        local yb = F.max_pool2d(b, c[2], o)
        assert.are.same(ya:totable(), yb:totable())
        local g = cnn.randn(table.unpack(ya:shape()))
        ya:backward(g)
        yb:backward(g)
        assert.are.same(a.grad:totable(), b.grad:totable())
      end
    end
    cnn.set_num_threads(2)
  end)
  it("the fused ReLU + max-pool keeps -inf for a window of padding alone, as the pool of the ReLU", function()
    -- 2x2 windows dilated by 3, padding 1: on a 2x2 plane the window's taps (-1 and 2 each way) all
    -- fall in the padding: -inf and no gradient, where relu(max) would give 0 (the fourth fuzzing
    -- round's find, in the three fused paths)
    local o = { padding = 1, dilation = 3 }
    cnn.manual_seed(3)
    local x0 = cnn.randn(2, 3, 2, 2)
    local function through(f)
      local xi = x0:clone():requires_grad_()
      local y = f(xi)
      y:backward(cnn.ones(table.unpack(y:shape())))
      return y, xi.grad
    end
    local want, wgrad = through(function(xi) return F.max_pool2d(F.relu(xi), 2, o) end)
    assert.are.same({ 2, 3, 1, 1 }, want:shape())
    assert.are.equal(6, want:eq(-math.huge):sum():item())
    assert.are.equal(0, wgrad:abs():sum():item())
    local fused = { relu = true }
    for k, v in pairs(o) do fused[k] = v end
    local nn = cnn.nn
    local seq = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2, o))
    for _, f in ipairs {
      function(xi) return F.max_pool2d(xi, 2, fused) end,
      function(xi) return seq(xi) end,
      function(xi)
        return F.conv2d(xi, cnn.eye(3):view(3, 3, 1, 1), nil,
          { relu_max_pool = { kernel_size = 2, padding = 1, dilation = 3 } })
      end,
    } do
      local y, g = through(f)
      assert.are.same(want:totable(), y:totable())
      assert.are.same(wgrad:totable(), g:totable())
    end
    seq:eval()
    assert.are.same(want:totable(), cnn.no_grad(function() return seq(x0) end):totable())
  end)
  it("avg_pool2d averages, and excludes padding when asked", function()
    H.assert_tensor(F.avg_pool2d(x, 2), { { { { 3.5, 5.5 }, { 11.5, 13.5 } } } })
    -- 2x2 windows, stride 2, padding 1: the first row's windows hold 1 | 2, 3 | 4 (the rest is
    -- padding), so 1/4, (2+3)/4, 4/4 when the divisor counts the padding
    H.assert_tensor(F.avg_pool2d(x, 2, { padding = 1 })[1][1][1], { 0.25, 1.25, 1 })
    -- and 1/1, (2+3)/2, 4/1 when it does not
    H.assert_tensor(F.avg_pool2d(x, 2, { padding = 1, count_include_pad = false })[1][1][1], { 1, 2.5, 4 })
  end)
  it("avg_pool2d of int64 is int64, the sum divided truncating toward zero, as PyTorch", function()
    local i = cnn.tensor({ { { { -3, 4 }, { 5, 7 } } } }, { dtype = "int64" })
    H.assert_tensor(F.avg_pool2d(i, 2), { { { { 3 } } } }, { dtype = "int64" })   -- 13 / 4
    H.assert_tensor(F.avg_pool2d(-i, 2), { { { { -3 } } } }, { dtype = "int64" }) -- -13 / 4
    -- padding 1, count_include_pad false: each window holds one value, divided by 1
    H.assert_tensor(F.avg_pool2d(i, 2, { padding = 1, count_include_pad = false }), { { { { -3, 4 }, { 5, 7 } } } },
      { dtype = "int64" })
  end)

  it("adaptive_avg_pool2d to 1 is the mean", function()
    H.assert_tensor(F.adaptive_avg_pool2d(x, 1), { { { { 8.5 } } } })
  end)
end)

describe("pooling errors", function()
  local x = cnn.ones(1, 2, 4, 4)
  local function exact(fn, msg)
    local m = H.assert_error(fn, msg:match("^(%w+)"))
    assert(m:sub(-#msg) == msg, string.format("error %q does not end with %q", m, msg))
    H.assert_usable()
  end
  it("names the function and the problem, and the runtime stays usable", function()
    exact(function() F.max_pool2d(x, 5) end,
      "max_pool2d: input (4, 4) is too small for the window: the output would be (0, 0)")
    exact(function() F.max_pool2d(x, 3, { padding = 2 }) end,
      "max_pool2d: padding (2, 2) must be at most half the kernel size (3, 3)")
    exact(function() F.avg_pool2d(x, 2, { stride = 0 }) end, "avg_pool2d: stride must be at least 1, got (0, 0)")
    exact(function() F.max_pool2d(x, 2, { dilation = 0 }) end, "max_pool2d: dilation must be at least 1, got (0, 0)")
    exact(function() F.max_pool2d(x, 2, { padding = -1 }) end, "max_pool2d: padding must be non-negative, got (-1, -1)")
    exact(function() F.max_pool2d(x, 0) end, "max_pool2d: kernel size must be at least 1, got (0, 0)")
    exact(function() F.max_pool2d(x, 2, { ceil = true }) end, "max_pool2d: unknown option 'ceil'")
    exact(function() F.avg_pool2d(x, 2, { dilation = 2 }) end, "avg_pool2d: unknown option 'dilation'")
    exact(function() F.max_pool2d(x, 2, { ceil_mode = 1 }) end, "max_pool2d: ceil_mode must be a boolean, got number")
    local w = cnn.ones(3, 2, 1, 2)
    exact(function() F.conv2d(x, w, { relu_max_pool = { stride = 2 } }) end,
      "conv2d: relu_max_pool needs a kernel_size")
    exact(function() F.conv2d(x, w, { relu_max_pool = 2 }) end,
      "conv2d: relu_max_pool must be a table of max_pool2d's options")
    exact(function() F.conv2d(x, w, { relu_max_pool = { kernel_size = 2, size = 2 } }) end,
      "conv2d: unknown option 'size'")
    exact(function() F.conv2d(x, w, { relu = true, relu_max_pool = { kernel_size = 2 } }) end,
      "conv2d: relu=true and relu_max_pool cannot be combined")
    exact(function() F.conv2d(x, w, { relu_max_pool = { kernel_size = 5 } }) end,
      "conv2d: input (4, 3) is too small for the window: the output would be (0, 0)")
    exact(function() F.max_pool2d(x, 2, { relu = true, return_indices = true }) end,
      "max_pool2d: relu=true returns no indices (return_indices must be false)")
    exact(function() F.max_pool2d(x) end, "max_pool2d: expected a kernel size (an integer or a pair) for argument 2")
    exact(function() F.max_pool2d(cnn.ones(4, 4), 2) end,
      "max_pool2d: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got 2-d")
    exact(function() F.max_pool2d(x:long(), 2) end, "max_pool2d: expected a float32 input, got int64")
    exact(function() F.adaptive_avg_pool2d(x:long(), 2) end,
      "adaptive_avg_pool2d: expected a float32 input, got int64")
    exact(function() F.avg_pool2d(x, 2, { divisor_override = 0 }) end,
      "avg_pool2d: divisor_override must be a positive integer")
    exact(function() F.adaptive_avg_pool2d(x, { -1, 2 }) end,
      "adaptive_avg_pool2d: output size must be non-negative, got (-1, 2)")
    exact(function() F.adaptive_avg_pool2d(x, { 1, 2, 3 }) end,
      "adaptive_avg_pool2d: output size must be an integer or a pair of integers, got a table of 3")
    exact(function() F.adaptive_avg_pool2d(x) end,
      "adaptive_avg_pool2d: expected an output size (an integer or a pair) for argument 2")
    exact(function() F.adaptive_avg_pool2d(cnn.ones(1, 0, 4, 4), 2) end,
      "adaptive_avg_pool2d: input has a zero-size dimension 2 (only the batch may be empty)")
  end)
  it("accepts an empty batch", function()
    assert.are.same({ 0, 2, 2, 2 }, F.max_pool2d(cnn.ones(0, 2, 4, 4), 2):shape())
    assert.are.same({ 0, 2, 3, 3 }, F.adaptive_avg_pool2d(cnn.ones(0, 2, 4, 4), 3):shape())
  end)
end)
