-- cnn.F.conv2d against PyTorch (tests/fixtures/conv_reference.lua, written by
-- scripts/tools/gen_conv_fixtures.py: outputs and gradients w.r.t. x, w and b for strides,
-- paddings incl. "same"/"valid", dilations, groups, depthwise, rectangular and 1x1 kernels, an
-- AlexNet-style 11x11 stride 4, batches, unbatched input), finite differences
-- (cnn.autograd.gradcheck), which gradients a node computes and saves, and misuse errors.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")
local F = cnn.F

local REF = dofile("tests/fixtures/conv_reference.lua")
local TOL = { rtol = 1e-4, atol = 2e-5 }
local GC = { eps = 1e-2, atol = 1e-2, rtol = 1e-2 }

local function t(entry) return cnn.tensor(entry.data) end

-- Runs one fixture case; `prep` may replace x and w by other views of the same values.
local function run(c, prep)
  local x, w = t(c.x):requires_grad_(), t(c.w):requires_grad_()
  local b = c.b and t(c.b):requires_grad_() or nil
  local xi, wi = x, w
  if prep then xi, wi = prep(x, w) end
  local y = F.conv2d(xi, wi, b, c.opts)
  H.assert_tensor(y, c.output, TOL)
  y:backward(t(c.grad_output))
  H.assert_tensor(x.grad, c.grad_x, TOL)
  H.assert_tensor(w.grad, c.grad_w, TOL)
  if c.b then H.assert_tensor(b.grad, c.grad_b, TOL) end
end

local function find(name)
  for _, c in ipairs(REF.conv) do if c.name == name then return c end end
  error("no fixture case " .. name)
end

describe("conv2d matches PyTorch", function()
  after_each(function() cnn.set_num_threads(2) end)
  for _, c in ipairs(REF.conv) do
    it("forward and backward: " .. c.name, function() run(c) end)
  end

  it("with 1 and 2 threads (batch split over threads)", function()
    for _, n in ipairs({ 1, 2 }) do
      cnn.set_num_threads(n)
      run(find("resnet_3x3_16ch"))
      run(find("batch3_no_bias"))
      run(find("groups2"))
    end
  end)

  it("with either algorithm (direct kernels and im2col), and the switch checks its argument", function()
    assert.are.equal("auto", cnn.get_conv_algorithm())
    for _, alg in ipairs({ "im2col", "auto" }) do
      cnn.set_conv_algorithm(alg)
      assert.are.equal(alg, cnn.get_conv_algorithm())
      for _, c in ipairs(REF.conv) do run(c) end
    end
    H.assert_error(function() cnn.set_conv_algorithm("winograd") end,
      "set_conv_algorithm", "expected \"auto\" or \"im2col\", got \"winograd\"")
    H.assert_error(function() cnn.set_conv_algorithm() end, "set_conv_algorithm")
    assert.are.equal("auto", cnn.get_conv_algorithm())
    H.assert_usable()
  end)

  it("on non-contiguous input and weight", function()
    local function noncontig(v)
      local r = v:transpose(3, 4):contiguous():transpose(3, 4)
      assert.is_false(r:is_contiguous())
      return r
    end
    run(find("stride2_pad1"), function(x, w) return noncontig(x), noncontig(w) end)
    run(find("dilation_rect_stride"), function(x, w) return noncontig(x), noncontig(w) end)
  end)

  it("keeps NaN and inf where PyTorch has them, under either algorithm", function()
    -- x = {{1, 2, nan}, {3, 4, 5}}, w = {w1, w2} (1x2), y[r][c] = w1 x[r][c] + w2 x[r][c+1], g = 1:
    -- dw1 = 1 + 2 + 3 + 4 = 10 (the NaN never meets w1), dw2 = 2 + nan + 4 + 5 = nan
    local nan = 0 / 0
    for _, alg in ipairs({ "auto", "im2col" }) do
      cnn.set_conv_algorithm(alg)
      local x = cnn.tensor({ { { { 1, 2, nan }, { 3, 4, 5 } } } })
      local w = cnn.tensor({ { { { 0.5, -1 } } } }):requires_grad_()
      F.conv2d(x, w):sum():backward()
      assert.are.equal(10, w.grad[1][1][1][1], alg)
      assert.is_true(w.grad[1][1][1][2] ~= w.grad[1][1][1][2], alg)
      -- a NaN weight: dx[c] = sum of w[k] over the outputs c - k + 1 that exist:
      -- dx1 = w1 = nan, dx2 = w1 + w2 = nan, dx3 = w2 = 1 (w1 never reaches x3)
      local x2 = cnn.tensor({ { { { 1, 2, 3 } } } }):requires_grad_()
      F.conv2d(x2, cnn.tensor({ { { { nan, 1 } } } })):sum():backward()
      local g = x2.grad:reshape(3)
      assert.is_true(g[1] ~= g[1] and g[2] ~= g[2], alg)
      assert.are.equal(1, g[3], alg)
    end
    cnn.set_conv_algorithm("auto")
  end)

  it("convolves int64 exactly, as PyTorch", function()
    -- {{1, 2}, {3, 4}} with the 1x2 kernel {1, -1} and bias 5: 1 - 2 + 5 = 4, 3 - 4 + 5 = 4
    local long = function(v) return cnn.tensor(v, { dtype = "int64" }) end
    local y = F.conv2d(long({ { { { 1, 2 }, { 3, 4 } } } }), long({ { { { 1, -1 } } } }), long({ 5 }))
    H.assert_tensor(y, { { { { 4 }, { 4 } } } }, { dtype = "int64" })
    -- past float32's integers: 2^40 * 3 + 1 * 1, exactly
    local big = F.conv2d(long({ { { { 2 ^ 40, 1 } } } }), long({ { { { 3, 1 } } } }), { padding = { 0, 0 } })
    assert.are.equal(3 * 2 ^ 40 + 1, big[1][1][1][1])
    H.assert_error(function() return F.conv2d(long({ { { { 1 } } } }), cnn.ones(1, 1, 1, 1)) end, "conv2d:", "int64")
    H.assert_usable()
  end)

  it("takes the options table as the third argument when there is no bias", function()
    local c = find("batch3_no_bias")
    H.assert_tensor(F.conv2d(t(c.x), t(c.w), c.opts), c.output, TOL)
  end)
end)

describe("conv2d gradients", function()
  -- the output is projected on fixed random weights, so each element's gradient is weighed
  local function check(x, w, b, opts)
    local proj
    local ok, msg = cnn.autograd.gradcheck(function(xx, ww, bb)
      local y = F.conv2d(xx, ww, bb, opts)
      if not proj then
        cnn.manual_seed(7)
        proj = cnn.randn(y:shape())
      end
      return (y * proj):sum()
    end, { x, w, b }, GC)
    assert(ok, msg)
  end
  local function input(shape, seed)
    cnn.manual_seed(seed)
    return cnn.randn(shape):requires_grad_()
  end

  it("pass gradcheck with stride 2 and padding 1", function()
    check(input({ 2, 2, 5, 5 }, 1), input({ 3, 2, 3, 3 }, 2), input({ 3 }, 3), { stride = 2, padding = 1 })
  end)
  it("pass gradcheck with dilation 2, groups 2 and a rectangular kernel", function()
    check(input({ 1, 4, 6, 5 }, 4), input({ 2, 2, 2, 3 }, 5), input({ 2 }, 6),
      { dilation = 2, groups = 2, padding = { 1, 0 } })
  end)
  it("pass gradcheck for a depthwise 1x1 stride 2 and for padding='same' with an even kernel", function()
    check(input({ 2, 3, 4, 4 }, 7), input({ 3, 1, 1, 1 }, 8), input({ 3 }, 9), { groups = 3, stride = 2 })
    check(input({ 1, 2, 4, 5 }, 10), input({ 2, 2, 2, 2 }, 11), input({ 2 }, 12), { padding = "same" })
  end)
  it("pass gradcheck for an unbatched (C, H, W) input", function()
    check(input({ 2, 4, 4 }, 13), input({ 2, 2, 3, 3 }, 14), input({ 2 }, 15), { padding = 1 })
  end)

  it("computes only what some input needs (the first layer gets no input gradient)", function()
    local c = find("basic_3x3")
    local x, w, b = t(c.x), t(c.w):requires_grad_(), t(c.b):requires_grad_()
    local y = F.conv2d(x, w, b, c.opts)
    assert.are.equal("ConvolutionBackward", y.grad_fn)
    y:backward(t(c.grad_output))
    assert.is_nil(x.grad)
    H.assert_tensor(w.grad, c.grad_w, TOL)
    H.assert_tensor(b.grad, c.grad_b, TOL)
  end)

  it("saves the weight only for the input gradient and the input only for the weight gradient", function()
    -- only w requires grad: w is not saved, so changing it after the forward is harmless
    -- (the weight gradient reads x and grad_output only)
    local c = find("basic_3x3")
    local x, w = t(c.x), t(c.w):requires_grad_()
    local y = F.conv2d(x, w, nil, c.opts)
    cnn.no_grad(function() w:add_(1) end)
    y:backward(t(c.grad_output))
    H.assert_tensor(w.grad, c.grad_w, TOL)
    -- only x requires grad: changing x is harmless, changing w is caught
    local x2, w2 = t(c.x):requires_grad_(), t(c.w)
    local y2 = F.conv2d(x2, w2, nil, c.opts)
    cnn.no_grad(function() x2:mul_(2) end)
    y2:backward(t(c.grad_output), { retain_graph = true })
    H.assert_tensor(x2.grad, c.grad_x, TOL)
    w2:add_(1)
    H.assert_error(function() y2:backward(t(c.grad_output)) end, "modified by an in%-place operation")
    H.assert_usable()
  end)

  it("accumulates the bias gradient when only the bias requires grad", function()
    local c = find("stride2_pad1")
    local b = t(c.b):requires_grad_()
    F.conv2d(t(c.x), t(c.w), b, c.opts):backward(t(c.grad_output))
    H.assert_tensor(b.grad, c.grad_b, TOL)
  end)
end)

describe("conv2d options", function()
  local x = cnn.ones(1, 2, 5, 5)
  local w = cnn.ones(3, 2, 3, 3)
  it("reads a number as a pair and accepts pairs", function()
    -- all-ones input and weight: an interior output sums 2*3*3 = 18 ones
    local y = F.conv2d(x, w, nil, { stride = { 2, 1 }, padding = 1, dilation = { 1, 2 } })
    assert.are.same({ 1, 3, 3, 3 }, y:shape())
    local y2 = F.conv2d(x, w, nil, { stride = 2, padding = { 1, 1 } })
    assert.are.same({ 1, 3, 3, 3 }, y2:shape())
    assert.are.equal(18, y2[1][1][2][2])
  end)
  it("padding 'valid' is no padding and 'same' keeps the size", function()
    assert.are.same({ 1, 3, 3, 3 }, F.conv2d(x, w, nil, { padding = "valid" }):shape())
    assert.are.same({ 1, 3, 5, 5 }, F.conv2d(x, w, nil, { padding = "same" }):shape())
    assert.are.same({ 1, 3, 5, 5 }, F.conv2d(x, cnn.ones(3, 2, 2, 4), nil, { padding = "same", dilation = 1 }):shape())
  end)
  it("unbatched input gives an unbatched output", function()
    assert.are.same({ 3, 3, 3 }, F.conv2d(cnn.ones(2, 5, 5), w):shape())
  end)
  it("an empty batch gives an empty output", function()
    assert.are.same({ 0, 3, 3, 3 }, F.conv2d(cnn.ones(0, 2, 5, 5), w, cnn.zeros(3)):shape())
  end)
end)

describe("conv2d errors", function()
  local x = cnn.ones(1, 3, 5, 5)
  local function exact(fn, msg)
    local m = H.assert_error(fn, "conv2d")
    assert(m:sub(-#msg) == msg, string.format("error %q does not end with %q", m, msg))
    H.assert_usable()
  end
  it("names the function and the problem, and the runtime stays usable", function()
    exact(function() F.conv2d(x, cnn.ones(2, 1, 3, 3)) end,
      "conv2d: input has 3 channels but weight expects 1 (groups=1)")
    exact(function() F.conv2d(cnn.ones(1, 1, 3, 3), cnn.ones(2, 1, 5, 5)) end,
      "conv2d: kernel (5, 5) is larger than the padded input (3, 3)")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3)) end, "conv2d: weight must be 4-d (out, in/groups, kH, kW), got 3-d")
    exact(function() F.conv2d(x, cnn.ones(4, 1, 3, 3), nil, { groups = 3 }) end,
      "conv2d: weight has 4 output channels, not divisible by groups=3")
    exact(function() F.conv2d(cnn.ones(1, 4, 5, 5), cnn.ones(2, 1, 3, 3), nil, { groups = 2 }) end,
      "conv2d: input has 4 channels but weight expects 2 (groups=2)")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { stride = 0 }) end,
      "conv2d: stride must be at least 1, got (0, 0)")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { dilation = { 1, 0 } }) end,
      "conv2d: dilation must be at least 1, got (1, 0)")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { padding = -1 }) end,
      "conv2d: padding must be non-negative, got (-1, -1)")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), cnn.ones(3)) end,
      "conv2d: bias must be 1-d with 2 elements (one per output channel), got shape (3)")
    exact(function() F.conv2d(x:long(), cnn.ones(2, 3, 3, 3)) end,
      "conv2d: weight has dtype float32 but the input has int64")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3):long()) end,
      "conv2d: weight has dtype int64 but the input has float32")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { strid = 1 }) end, "conv2d: unknown option 'strid'")
    exact(function() F.conv2d(cnn.ones(3, 5), cnn.ones(2, 3, 3, 3)) end,
      "conv2d: expected a 3-d (C, H, W) or 4-d (N, C, H, W) input, got 2-d")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { padding = "full" }) end,
      "conv2d: padding must be an integer, a pair, \"same\" or \"valid\", got \"full\"")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { padding = "same", stride = 2 }) end,
      "conv2d: padding=\"same\" is not supported for strided convolutions")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { stride = { 1, 2, 3 } }) end,
      "conv2d: stride must be an integer or a pair of integers, got a table of 3")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), nil, { stride = 1.5 }) end,
      "conv2d: stride must be an integer or a pair of integers, got 1.5")
    exact(function() F.conv2d(x, cnn.ones(2, 3, 3, 3), 3) end,
      "conv2d: expected a tensor or nil for the bias (argument 3), got number")
    exact(function() F.conv2d(x) end, "conv2d: expected a tensor for argument 2, got no value")
  end)
end)
