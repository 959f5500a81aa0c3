-- cnn.F activations, softmax, losses, dropout, batch norm and LRN (the C kernels of
-- runtime/kernels/activation.c, loss.c, dropout.c, norm.c through ops_nn.c and bindings/autograd/lfunctional.c).
-- Values and gradients are compared with PyTorch (tests/fixtures/functional_reference.lua, written by
-- scripts/tools/gen_functional_fixtures.py) and with finite differences (cnn.autograd.gradcheck);
-- dropout, whose mask comes from cnn's own stream, is checked statistically and by construction.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")
local F = cnn.F

local REF = dofile("tests/fixtures/functional_reference.lua")
local TOL = { rtol = 1e-4, atol = 1e-5 }

local function T(e) return cnn.tensor(e.data, { dtype = e.dtype }) end
local function long(list) return cnn.tensor(list, { dtype = "int64" }) end

-- Calls the case's op as the fixture describes it (inputs already tensors).
local CALL = {
  leaky_relu = function(o, x) return F.leaky_relu(x, o.slope) end,
  softmax = function(o, x) return F.softmax(x, o.dim) end,
  log_softmax = function(o, x) return F.log_softmax(x, o.dim) end,
  cross_entropy = function(o, x, y, w)
    return F.cross_entropy(x, y, { reduction = o.reduction, label_smoothing = o.label_smoothing,
      ignore_index = o.ignore_index, weight = o.weight and w or nil })
  end,
  nll_loss = function(o, x, y, w)
    return F.nll_loss(x, y, { reduction = o.reduction, ignore_index = o.ignore_index, weight = o.weight and w or nil })
  end,
  mse_loss = function(o, a, b) return F.mse_loss(a, b, { reduction = o.reduction }) end,
  local_response_norm = function(o, x)
    return F.local_response_norm(x, o.size, { alpha = o.alpha, beta = o.beta, k = o.k })
  end,
}

-- batch_norm's inputs in fixture order: x, [running_mean, running_var], [weight, bias]
local function bn_unpack(o, ins)
  local i, x, rm, rv, w, b = 2, ins[1], nil, nil, nil, nil
  if o.stats then rm, rv, i = ins[2], ins[3], 4 end
  if o.affine then w, b = ins[i], ins[i + 1] end
  return x, rm, rv, w, b
end

CALL.batch_norm = function(o, ...)
  local x, rm, rv, w, b = bn_unpack(o, { ... })
  return F.batch_norm(x, rm, rv, w, b, o.training, o.momentum, o.eps)
end

describe("cnn.F against PyTorch", function()
  for _, case in ipairs(REF.cases) do
    it(case.name .. ": output and gradients match PyTorch", function()
      local ins = {}
      for i, e in ipairs(case.inputs) do
        ins[i] = T(e)
        if case.requires_grad[i] then ins[i]:requires_grad_(true) end
      end
      local out = CALL[case.op](case.opts, table.unpack(ins))
      H.assert_tensor(out, case.output, TOL)
      if case.grad_output then out:backward(T(case.grad_output)) else out:backward() end
      for i, g in ipairs(case.grads) do
        if g then
          assert(ins[i].grad, "input " .. i .. " got no gradient")
          H.assert_tensor(ins[i].grad, g, TOL)
        end
      end
      if case.op == "batch_norm" then
        local o, ex = case.opts, case.extra
        local _, rm, rv = bn_unpack(o, ins)
        if o.stats then
          H.assert_tensor(rm, ex.running_mean1, TOL)
          H.assert_tensor(rv, ex.running_var1, TOL)
        end
        ins[1] = T(ex.x2)
        local y2 = cnn.no_grad(function() return CALL.batch_norm(o, table.unpack(ins)) end)
        H.assert_tensor(y2, ex.y2, TOL)
        if o.stats then
          H.assert_tensor(rm, ex.running_mean2, TOL)
          H.assert_tensor(rv, ex.running_var2, TOL)
        end
      end
    end)
  end
end)

-- ---- finite differences ----


local function input(shape, lo, hi, seed)
  cnn.manual_seed(seed or 1)
  return (cnn.rand(shape) * ((hi or 1) - (lo or -1)) + (lo or -1)):requires_grad_(true)
end

local check = H.gradcheck

describe("cnn.F gradients against finite differences", function()
  it("leaky_relu away from the kink", function()
    local x = cnn.tensor({ { -1.5, -0.4, 0.3 }, { 0.9, -2.0, 1.7 } }):requires_grad_(true)
    check(function(t) return F.leaky_relu(t, 0.1) end, { x })
    check(function(t) return F.leaky_relu(t) end, { x })
  end)

  it("softmax and log_softmax over every dim", function()
    for _, d in ipairs({ 1, 2, 3, -1 }) do
      check(function(t) return F.softmax(t, d) end, { input({ 2, 3, 4 }, -2, 2, d + 10) })
      check(function(t) return F.log_softmax(t, d) end, { input({ 2, 3, 4 }, -2, 2, d + 20) })
    end
  end)

  it("cross_entropy with every reduction, smoothing, weights, ignore_index and spatial logits", function()
    local y = long({ 2, 1, 3, 3 })
    for _, red in ipairs({ "mean", "sum", "none" }) do
      check(function(t) return F.cross_entropy(t, y, { reduction = red }) end, { input({ 4, 3 }, -2, 2) })
      check(function(t) return F.cross_entropy(t, y, { reduction = red, label_smoothing = 0.2 }) end,
        { input({ 4, 3 }, -2, 2, 2) })
    end
    local w = cnn.tensor({ 0.5, 2.0, 1.25 })
    check(function(t) return F.cross_entropy(t, y, { weight = w, label_smoothing = 0.1 }) end,
      { input({ 4, 3 }, -2, 2, 3) })
    check(function(t) return F.cross_entropy(t, y, { ignore_index = 3 }) end, { input({ 4, 3 }, -2, 2, 4) })
    local ys = long({ { { 1, 2 }, { 3, 1 } }, { { 2, 2 }, { 3, 3 } } })
    check(function(t) return F.cross_entropy(t, ys, { reduction = "none", label_smoothing = 0.1 }) end,
      { input({ 2, 3, 2, 2 }, -2, 2, 5) })
    check(function(t) return F.cross_entropy(t, long(2)) end, { input({ 3 }, -2, 2, 6) })
  end)

  it("nll_loss and mse_loss", function()
    local y = long({ 2, 1, 3 })
    check(function(t) return F.nll_loss(t, y) end, { input({ 3, 3 }) })
    check(function(t) return F.nll_loss(t, y, { reduction = "none", weight = cnn.tensor({ 1, 2, 3 }) }) end,
      { input({ 3, 3 }, -1, 1, 2) })
    for _, red in ipairs({ "mean", "sum", "none" }) do
      check(function(a, b) return F.mse_loss(a, b, { reduction = red }) end,
        { input({ 2, 3 }, -1, 1, 3), input({ 2, 3 }, -1, 1, 4) })
    end
    check(function(a, b) return F.mse_loss(a, b) end, { input({ 3, 1 }, -1, 1, 5), input({ 1, 2 }, -1, 1, 6) })
  end)

  it("batch_norm in training (x, weight, bias) for 2-d, 3-d and 4-d inputs", function()
    for i, shape in ipairs({ { 4, 3 }, { 3, 2, 3 }, { 2, 2, 2, 3 } }) do
      local C = shape[2]
      local w, b = input({ C }, 0.5, 1.5, 30 + i), input({ C }, -1, 1, 40 + i)
      check(function(t, ww, bb) return F.batch_norm(t, nil, nil, ww, bb, true) end,
        { input(shape, -2, 2, 20 + i), w, b })
      check(function(t) return F.batch_norm(t, nil, nil, nil, nil, true, 0.1, 1e-3) end,
        { input(shape, -2, 2, 50 + i) })
    end
  end)

  it("batch_norm in evaluation mode", function()
    local rm, rv = cnn.tensor({ 0.2, -0.3 }), cnn.tensor({ 1.5, 0.7 })
    check(function(t, w, b) return F.batch_norm(t, rm, rv, w, b, false) end,
      { input({ 3, 2, 2 }), input({ 2 }, 0.5, 1.5, 2), input({ 2 }, -1, 1, 3) })
  end)

  it("local_response_norm with odd and even sizes", function()
    for _, size in ipairs({ 1, 2, 3, 4, 5 }) do
      check(function(t) return F.local_response_norm(t, size, { alpha = 0.5, beta = 0.75, k = 1.5 }) end,
        { input({ 2, 5, 2, 2 }, -2, 2, size) })
    end
    check(function(t) return F.local_response_norm(t, 3, { alpha = 0.3, beta = 1.3, k = 1 }) end,
      { input({ 2, 4, 3 }, -2, 2, 9) })
  end)

  it("dropout with a fixed seed (the same mask every call)", function()
    check(function(t)
      cnn.manual_seed(5)
      return F.dropout(t, 0.4)
    end, { input({ 4, 5 }) })
  end)
end)

-- ---- behaviour beyond the fixtures ----

describe("F.softmax and F.log_softmax", function()
  it("give hand-computed values: softmax{0, log 2, log 3} = {1, 2, 3} / 6", function()
    local x = cnn.tensor({ 0, math.log(2), math.log(3) })
    H.assert_tensor(F.softmax(x, 1), { 1 / 6, 2 / 6, 3 / 6 }, TOL)
    H.assert_tensor(F.log_softmax(x, -1), { math.log(1 / 6), math.log(2 / 6), math.log(3 / 6) }, TOL)
  end)

  it("stay finite for logits of 1e30 and -1e30", function()
    local x = cnn.tensor({ { 1e30, 1e30, -1e30 } })
    H.assert_tensor(F.softmax(x, 2), { { 0.5, 0.5, 0 } }, TOL)
    H.assert_tensor(F.log_softmax(cnn.tensor({ 1000, 1000 }), 1), { -math.log(2), -math.log(2) }, TOL)
  end)

  it("work on strided views and 0-d tensors", function()
    cnn.manual_seed(3)
    local x = cnn.randn(4, 3, 5)
    local v = x:transpose(1, 3) -- (5, 3, 4), not contiguous
    H.assert_tensor(F.softmax(v, 2), { shape = { 5, 3, 4 }, data = H.values(F.softmax(v:contiguous(), 2)) }, TOL)
    H.assert_tensor(F.log_softmax(v, 3), { shape = { 5, 3, 4 }, data = H.values(F.log_softmax(v:contiguous(), 3)) },
      TOL)
    H.assert_tensor(F.softmax(cnn.tensor(2.5), 1), 1)
  end)

  it("reject a missing dim, a bad dim and int64 input, naming the function", function()
    local x = cnn.zeros(2, 3)
    H.assert_error(function() F.softmax(x) end, "^.-softmax: ", "dimension is required")
    H.assert_error(function() F.log_softmax(x, 3) end, "log_softmax: ", "out of range")
    H.assert_error(function() F.softmax(long({ 1, 2 }), 1) end, "softmax: ", "float32", "int64")
    H.assert_usable()
  end)
end)

describe("F.leaky_relu", function()
  it("defaults to slope 0.01 and rejects a non-number slope", function()
    H.assert_tensor(F.leaky_relu(cnn.tensor({ -2, 3 })), { -0.02, 3 }, TOL)
    H.assert_error(function() F.leaky_relu(cnn.zeros(2), "x") end, "leaky_relu: ", "number")
    H.assert_usable()
  end)
end)

describe("F.cross_entropy", function()
  it("is log(C) for equal logits and -log(p_target) in general", function()
    H.assert_tensor(F.cross_entropy(cnn.zeros(2, 10), long({ 3, 7 })), math.log(10), TOL)
    -- softmax{0, log 2, log 3} = {1, 2, 3} / 6: label 3 gives -log(1/2)
    H.assert_tensor(F.cross_entropy(cnn.tensor({ { 0, math.log(2), math.log(3) } }), long({ 3 })), math.log(2), TOL)
  end)

  it("gives an ignored sample 0 * softmax: NaN where its scores hold NaN or +inf, as PyTorch", function()
    local nan = 0 / 0
    local x = cnn.tensor({ { nan, 1 }, { 0, 1 }, { 2, -1 / 0 } }):requires_grad_()
    F.cross_entropy(x, long({ 1, 1, 2 }), { ignore_index = 1, reduction = "sum" }):backward()
    assert.is_true(x.grad[1][1] ~= x.grad[1][1] and x.grad[1][2] ~= x.grad[1][2]) -- ignored, NaN scores
    H.assert_tensor(x.grad[2], { 0, 0 })                                          -- ignored, finite
    -- the third counts: softmax{2, -inf} = {1, 0}, label 2: p - onehot = {1, -1}
    H.assert_tensor(x.grad[3], { 1, -1 })
  end)

  it("errors on an out-of-range label, naming the label and the class count", function()
    local x = cnn.zeros(3, 10)
    H.assert_error(function() F.cross_entropy(x, long({ 1, 11, 2 })) end,
      "cross_entropy: label 11 is out of range for 10 classes")
    H.assert_error(function() F.cross_entropy(x, long({ 0, 1, 2 })) end,
      "cross_entropy: label 0 is out of range for 10 classes")
    H.assert_error(function() F.nll_loss(x, long({ 1, 2, 12 })) end,
      "nll_loss: label 12 is out of range for 10 classes")
    H.assert_usable()
  end)

  it("rejects float labels, mismatched shapes and bad options", function()
    local x = cnn.zeros(3, 4)
    H.assert_error(function() F.cross_entropy(x, cnn.tensor({ 1, 2, 3 })) end, "cross_entropy: ", "int64")
    H.assert_error(function() F.cross_entropy(x, long({ 1, 2 })) end, "cross_entropy: ", "shape")
    H.assert_error(function() F.cross_entropy(x, long({ 1, 2, 3 }), { reductio = "sum" }) end,
      "cross_entropy: unknown option 'reductio'")
    H.assert_error(function() F.cross_entropy(x, long({ 1, 2, 3 }), { reduction = "avg" }) end,
      "cross_entropy: ", "reduction 'avg'")
    H.assert_error(function() F.cross_entropy(x, long({ 1, 2, 3 }), { label_smoothing = 1.5 }) end,
      "cross_entropy: ", "label_smoothing")
    H.assert_error(function() F.cross_entropy(x, long({ 1, 2, 3 }), { weight = cnn.ones(3) }) end,
      "cross_entropy: ", "weight")
    H.assert_error(function() F.cross_entropy(cnn.tensor(1), long(1)) end, "cross_entropy: ", "0%-d")
    H.assert_error(function() F.nll_loss(x, long({ 1, 2, 3 }), { label_smoothing = 0.1 }) end,
      "nll_loss: unknown option 'label_smoothing'")
    H.assert_usable()
  end)

  it("works on strided logits", function()
    cnn.manual_seed(4)
    local x = cnn.randn(5, 3):t() -- (3, 5), not contiguous
    local y = long({ 5, 1, 3 })
    H.assert_tensor(F.cross_entropy(x, y, { reduction = "none" }),
      H.values(F.cross_entropy(x:contiguous(), y, { reduction = "none" })), TOL)
  end)
end)

describe("F.mse_loss", function()
  it("gives hand values and rejects shapes that do not broadcast", function()
    local a, b = cnn.tensor({ 1, 2, 4 }), cnn.tensor({ 0, 0, 1 })
    H.assert_tensor(F.mse_loss(a, b), (1 + 4 + 9) / 3, TOL)
    H.assert_tensor(F.mse_loss(a, b, { reduction = "sum" }), 14)
    H.assert_tensor(F.mse_loss(a, b, { reduction = "none" }), { 1, 4, 9 })
    H.assert_error(function() F.mse_loss(cnn.zeros(2, 3), cnn.zeros(4)) end, "mse_loss: ", "broadcast")
    H.assert_error(function() F.mse_loss(a, b, { weight = 1 }) end, "mse_loss: unknown option 'weight'")
    H.assert_usable()
  end)

  it("scales before multiplying in backward, so a mean's gradient near the float32 limit is finite", function()
    -- d mean((a - b)^2) / da = (2 / n) (a - b): with a - b = 3e38 and n = 4, 1.5e38 (2 (a - b) overflows)
    local a = cnn.tensor({ 3e38, 0, 0, 0 }):requires_grad_()
    F.mse_loss(a, cnn.zeros(4)):backward()
    H.assert_tensor(a.grad, { 1.5e38, 0, 0, 0 }, { rtol = 1e-6 })
  end)
end)

describe("F on int64 where PyTorch takes integers", function()
  it("linear multiplies exactly", function()
    -- {1, 2} W^T with W = {{3, 4}, {5, 6}}, + {1, -1}: 1*3 + 2*4 + 1 = 12, 1*5 + 2*6 - 1 = 16
    H.assert_tensor(F.linear(long({ 1, 2 }), long({ { 3, 4 }, { 5, 6 } }), long({ 1, -1 })), { 12, 16 },
      { dtype = "int64" })
    H.assert_error(function() return F.linear(long({ 1 }), cnn.ones(1, 1)) end, "linear:", "one dtype")
  end)

  it("local_response_norm takes the window's mean square as an integer, then float32", function()
    -- size 2: channel c sums the squares of channels c - 1 and c. Channel 1, first position: 1^2 = 1,
    -- 1 // 2 = 0, so y = 1 / (1 + 0)^0.75 = 1 exactly (floats would give 1 / 1.00005^0.75)
    local y = F.local_response_norm(long({ { { 1, 2 }, { 3, 4 }, { 5, 6 } } }), 2)
    assert.are.equal("float32", y:dtype())
    assert.are.equal(1, y[1][1][1])
    -- channel 2, second position: (4 + 16) // 2 = 10: 4 / (1 + 1e-4 * 10)^0.75
    H.assert_tensor(y[1][2], { 3 / (1 + 1e-4 * 5) ^ 0.75, 4 / (1 + 1e-4 * 10) ^ 0.75 }, TOL)
  end)

  it("dropout returns int64 as it is (not training, p = 0), zeros it (p = 1), else refuses", function()
    local i = long({ 2, -1 })
    assert.are.equal(i, F.dropout(i, 0.5, false))
    H.assert_tensor(F.dropout(i, 1, true), { 0, 0 }, { dtype = "int64" })
    H.assert_error(function() return F.dropout(i, 0.5) end, "dropout:", "int64")
  end)

  it("mse_loss of int64 against float32 promotes", function()
    local t = cnn.tensor({ 0.5, 0 }):requires_grad_()
    local l = F.mse_loss(long({ 1, 2 }), t) -- (0.25 + 4) / 2
    H.assert_tensor(l, 2.125, TOL)
    l:backward()
    H.assert_tensor(t.grad, { -0.5, -2 }, TOL) -- (2 / 2) (t - x)
    H.assert_error(function() return F.mse_loss(long({ 1 }), long({ 1 })) end, "mse_loss:", "int64")
  end)
end)

describe("F.dropout", function()
  it("scales kept values by 1/(1-p) and keeps about 1-p of them", function()
    cnn.manual_seed(11)
    local n, p = 20000, 0.3
    local x = cnn.full({ n }, 2.0)
    local y = F.dropout(x, p)
    local kept = y:ne(0):sum():item()
    -- every kept value is 2 / 0.7 exactly (in float32), every other is 0
    H.assert_tensor(y:sum() / kept, 2 / 0.7, { rtol = 1e-6 })
    H.assert_tensor(y:max(), 2 / 0.7, { rtol = 1e-6 })
    -- kept ~ Binomial(n, 0.7): standard deviation sqrt(n * 0.21) ~ 65; allow 6 of them
    assert(math.abs(kept - n * (1 - p)) < 400, "kept " .. kept .. " of " .. n)
  end)

  it("gives the same mask for the same seed, whatever the thread count", function()
    local x = cnn.ones(5000)
    local threads = cnn.get_num_threads()
    cnn.manual_seed(42)
    local a = F.dropout(x, 0.5)
    cnn.set_num_threads(1)
    cnn.manual_seed(42)
    local b = F.dropout(x, 0.5)
    cnn.set_num_threads(threads)
    cnn.manual_seed(43)
    local c = F.dropout(x, 0.5)
    assert.are.equal(0, (a - b):abs():sum():item())
    assert(a:ne(c):sum():item() > 1000, "a different seed should give a different mask")
  end)

  it("has gradient mask * 1/(1-p)", function()
    cnn.manual_seed(9)
    local x = (cnn.rand(6, 7) + 1):requires_grad_(true)
    local y = F.dropout(x, 0.25)
    local g = cnn.randn(6, 7)
    y:backward(g)
    local mask = y:detach():ne(0)
    H.assert_tensor(x.grad, { shape = { 6, 7 }, data = H.values(g * mask / 0.75) }, { rtol = 1e-6, atol = 1e-7 })
  end)

  it("is the identity in evaluation mode or with p = 0, and zeros with p = 1", function()
    local x = cnn.randn(3, 4)
    assert.are.equal(x, F.dropout(x, 0.5, false))
    assert.are.equal(x, F.dropout(x, 0))
    H.assert_tensor(F.dropout(x, 1), { shape = { 3, 4 }, data = H.values(cnn.zeros(3, 4)) })
    local v = x:t() -- strided
    cnn.manual_seed(2)
    local a = F.dropout(v, 0.5)
    cnn.manual_seed(2)
    local b = F.dropout(v:contiguous(), 0.5)
    H.assert_tensor(a, { shape = { 4, 3 }, data = H.values(b) })
  end)

  it("rejects p outside [0, 1] and a non-boolean training flag", function()
    H.assert_error(function() F.dropout(cnn.ones(3), 1.5) end, "dropout: ", "between 0 and 1")
    H.assert_error(function() F.dropout(cnn.ones(3), -0.1, false) end, "dropout: ", "between 0 and 1")
    H.assert_error(function() F.dropout(cnn.ones(3), 0.5, "yes") end, "dropout: ", "boolean")
    H.assert_usable()
  end)
end)

describe("F.batch_norm", function()
  it("normalises by hand: x = {1,2,3,4} has mean 2.5 and biased variance 1.25", function()
    local x = cnn.tensor({ { 1 }, { 2 }, { 3 }, { 4 } })
    local rm, rv = cnn.zeros(1), cnn.ones(1)
    local v0 = rm:_version()
    local y = F.batch_norm(x, rm, rv, nil, nil, true, 0.1, 0)
    local s = math.sqrt(1.25)
    H.assert_tensor(y, { { -1.5 / s }, { -0.5 / s }, { 0.5 / s }, { 1.5 / s } }, TOL)
    -- running stats: 0.9 * 0 + 0.1 * 2.5, and 0.9 * 1 + 0.1 * (5/3) with the unbiased variance
    H.assert_tensor(rm, { 0.25 }, TOL)
    H.assert_tensor(rv, { 0.9 + 0.1 * 5 / 3 }, TOL)
    assert(rm:_version() > v0, "the running mean's version must be bumped")
    local v1 = rm:_version()
    F.batch_norm(x, rm, rv, nil, nil, false)
    assert.are.equal(v1, rm:_version())
  end)

  it("updates running statistics held in strided views", function()
    cnn.manual_seed(5)
    local x = cnn.randn(6, 3, 2)
    local store = cnn.zeros(3, 2)
    local rm, rv = store:select(2, 1), store:select(2, 2)
    rv:fill_(1)
    local rm2, rv2 = cnn.zeros(3), cnn.ones(3)
    F.batch_norm(x, rm, rv, nil, nil, true)
    F.batch_norm(x, rm2, rv2, nil, nil, true)
    H.assert_tensor(rm, H.values(rm2), TOL)
    H.assert_tensor(rv, H.values(rv2), TOL)
  end)

  it("rejects one value per channel in training, wrong shapes and missing eval statistics", function()
    H.assert_error(function() F.batch_norm(cnn.randn(1, 3), nil, nil, nil, nil, true) end,
      "batch_norm: Expected more than 1 value per channel when training")
    H.assert_error(function() F.batch_norm(cnn.randn(1, 3, 1, 1), nil, nil, nil, nil, true) end,
      "batch_norm: Expected more than 1 value per channel when training")
    H.assert_error(function() F.batch_norm(cnn.randn(4, 3), cnn.zeros(4), cnn.ones(3)) end,
      "batch_norm: ", "running_mean", "3")
    H.assert_error(function() F.batch_norm(cnn.randn(4, 3), nil, nil, cnn.ones(2), nil, true) end,
      "batch_norm: ", "weight")
    H.assert_error(function() F.batch_norm(cnn.randn(4, 3), nil, nil, nil, nil, false) end,
      "batch_norm: ", "running_mean", "evaluation")
    H.assert_error(function() F.batch_norm(cnn.randn(4), nil, nil, nil, nil, true) end, "batch_norm: ", "shape")
    H.assert_error(function() F.batch_norm(cnn.randn(4, 3), nil, nil, nil, nil, true, 0.1, -1) end,
      "batch_norm: ", "eps")
    H.assert_error(function() F.batch_norm(cnn.randn(4, 3), "x") end, "batch_norm: ", "running_mean")
    H.assert_usable()
  end)

  it("accepts an expanded (stride 0) weight and bias, as PyTorch", function()
    -- x = {{1, 3}, {3, 7}}: channel means 2 and 5, biased variances 1 and 4, so xhat = -1, 1 in
    -- each; weight 2 and bias 0.5 everywhere: y = 2 xhat + 0.5
    local x = cnn.tensor({ { 1, 3 }, { 3, 7 } })
    local w = cnn.tensor({ 2 }):requires_grad_()
    local b = cnn.tensor({ 0.5 }):requires_grad_()
    local y = F.batch_norm(x, nil, nil, w:expand(2), b:expand(2), true, 0.1, 0)
    H.assert_tensor(y, { { -1.5, -1.5 }, { 2.5, 2.5 } }, TOL)
    y:sum():backward()
    -- d/dw = sum of xhat over both channels = 0; d/db = 4 elements
    H.assert_tensor(w.grad, { 0 }, { atol = 1e-6 })
    H.assert_tensor(b.grad, { 4 })
  end)

  it("gives an empty batch in training zero weight and bias gradients, as PyTorch", function()
    local w = cnn.tensor({ 1.5, -1 }):requires_grad_()
    local b = cnn.zeros(2):requires_grad_()
    local y = F.batch_norm(cnn.zeros(0, 2, 3), nil, nil, w, b, true)
    assert.are.same({ 0, 2, 3 }, y:shape())
    y:sum():backward()
    H.assert_tensor(w.grad, { 0, 0 })
    H.assert_tensor(b.grad, { 0, 0 })
  end)

  it("keeps its gradient when the running statistics change after the forward", function()
    cnn.manual_seed(8)
    local x = cnn.randn(4, 2):requires_grad_(true)
    local rm, rv = cnn.zeros(2), cnn.ones(2)
    local y = F.batch_norm(x, rm, rv, nil, nil, true)
    F.batch_norm(x:detach(), rm, rv, nil, nil, true) -- moves rm, rv again
    y:sum():backward()
    -- d/dx sum(xhat) = 0 per channel in training
    H.assert_tensor(x.grad, { shape = { 4, 2 }, data = H.values(cnn.zeros(4, 2)) }, { atol = 1e-5 })
  end)
end)

describe("F.batch_norm{relu=true}", function()
  -- One run of F.batch_norm on fixed data, fused or as F.relu of the plain result (itself checked
  -- against PyTorch above). Channel 2 has weight 0 and bias 0: every output is exactly 0, where
  -- ReLU passes no gradient. Returns y, the gradients of sum(y * g) and the running statistics.
  local function run(shape, training, fused, affine)
    cnn.manual_seed(21)
    local C = shape[2]
    local x = cnn.randn(shape):requires_grad_(true)
    local g = cnn.randn(shape)
    local w = affine and cnn.tensor({ 0.7, 0, -1.3 }):requires_grad_(true) or nil
    local b = affine and cnn.tensor({ 0.2, 0, 0.1 }):requires_grad_(true) or nil
    local rm, rv = cnn.tensor({ 0.1, 0, -0.2 }), cnn.tensor({ 1, 2, 0.5 })
    assert(C == 3)
    local y
    if fused then
      y = F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5, { relu = true })
      assert.are.equal("BatchNormReluBackward", y.grad_fn)
    else
      y = F.relu(F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5))
    end
    (y * g):sum():backward()
    return { y = y, gx = x.grad, gw = w and w.grad, gb = b and b.grad, rm = rm, rv = rv }
  end

  it("equals F.relu(F.batch_norm(...)) bit for bit: values, gradients, running statistics", function()
    for _, shape in ipairs({ { 4, 3 }, { 3, 3, 20 }, { 2, 3, 6, 6 } }) do
      for _, training in ipairs({ true, false }) do
        for _, affine in ipairs({ true, false }) do
          local a, b = run(shape, training, true, affine), run(shape, training, false, affine)
          for k, t in pairs(b) do
            H.assert_tensor(a[k], { shape = t:shape(), data = H.values(t) })
          end
          if affine then -- no gradient through the channel whose outputs are all 0
            assert.are.equal(0, a.gw[2])
            assert.are.equal(0, a.gb[2])
          end
        end
      end
    end
  end)

  it("gives each branch its own gradient when one gradient reaches two of them (written in place)", function()
    -- backward writes gx over the incoming gradient when the engine alone holds it: an add passes
    -- the same gradient to both batch norms, and neither may see the other's result
    cnn.manual_seed(23)
    local shape = { 8, 3, 40, 40 }
    local x1, x2, g = cnn.randn(shape), cnn.randn(shape), cnn.randn(shape)
    local g0 = g:clone()
    local function grads(both, residual)
      local a, b = x1:clone():requires_grad_(true), x2:clone():requires_grad_(true)
      local r = residual and cnn.randn(shape) or nil
      local function bn(x)
        return F.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5, { relu = true, residual = r })
      end
      local y = both and bn(a) + bn(b) or bn(a)
      y:backward(g)
      return a.grad, b.grad
    end
    for _, residual in ipairs({ false, true }) do
      cnn.manual_seed(24)
      local ga, gb = grads(true, residual)
      cnn.manual_seed(24)
      local alone = grads(false, residual)
      H.assert_tensor(ga, { shape = shape, data = H.values(alone) })
      -- the second branch against itself alone
      local b = x2:clone():requires_grad_(true)
      cnn.manual_seed(24)
      local r = residual and cnn.randn(shape) or nil
      F.batch_norm(b, nil, nil, nil, nil, true, 0.1, 1e-5, { relu = true, residual = r }):backward(g)
      H.assert_tensor(gb, { shape = shape, data = H.values(b.grad) })
    end
    H.assert_tensor(g, { shape = shape, data = H.values(g0) }) -- the seed itself is never written
  end)

  it("gives ReLU's values by hand and passes no gradient where the output is 0", function()
    -- x = {-1, 0, 1} in eval mode with mean 0, variance 1, eps 0: y = relu(x) = {0, 0, 1}
    local x = cnn.tensor({ { -1 }, { 0 }, { 1 } }):requires_grad_(true)
    local y = F.batch_norm(x, cnn.zeros(1), cnn.ones(1), nil, nil, false, 0.1, 0, { relu = true })
    H.assert_tensor(y, { { 0 }, { 0 }, { 1 } })
    y:sum():backward()
    H.assert_tensor(x.grad, { { 0 }, { 0 }, { 1 } })
  end)

  it("rejects unknown options and a relu that is not a boolean", function()
    local x = cnn.randn(4, 3)
    H.assert_error(function() F.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5, { rel = true }) end,
      "batch_norm: unknown option 'rel'")
    H.assert_error(function() F.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5, { relu = 1 }) end,
      "batch_norm: relu must be a boolean")
    H.assert_error(function() F.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5, "relu") end,
      "batch_norm: expected an options table")
    H.assert_usable()
    -- relu = false and an empty table are the plain batch norm
    local y = F.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5, { relu = false })
    H.assert_tensor(y, { shape = { 4, 3 }, data = H.values(F.batch_norm(x, nil, nil, nil, nil, true)) })
  end)
end)

describe("F.batch_norm{residual=r}", function()
  -- One run of F.batch_norm with a residual, fused or as F.relu(F.batch_norm(...) + r) (the
  -- operations in sequence). Channel 2 has weight 0 and bias 0 and r is 0 on its first half: those
  -- outputs are exactly 0, where ReLU passes no gradient. Returns y, the gradients of sum(y * g)
  -- and the running statistics.
  local function run(shape, training, fused, affine, relu)
    cnn.manual_seed(22)
    local x = cnn.randn(shape):requires_grad_(true)
    local r0 = cnn.randn(shape)
    r0:select(2, 2):narrow(1, 1, shape[1] // 2):zero_()
    local r = r0:requires_grad_(true)
    local g = cnn.randn(shape)
    local w = affine and cnn.tensor({ 0.7, 0, -1.3 }):requires_grad_(true) or nil
    local b = affine and cnn.tensor({ 0.2, 0, 0.1 }):requires_grad_(true) or nil
    local rm, rv = cnn.tensor({ 0.1, 0, -0.2 }), cnn.tensor({ 1, 2, 0.5 })
    local y
    if fused then
      y = F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5, { relu = relu, residual = r })
      assert.are.equal(relu and "BatchNormAddReluBackward" or "BatchNormAddBackward", y.grad_fn)
    else
      y = F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5) + r
      if relu then y = F.relu(y) end
    end
    (y * g):sum():backward()
    return { y = y, gx = x.grad, gr = r.grad, gw = w and w.grad, gb = b and b.grad, rm = rm, rv = rv }
  end

  it("equals F.relu(F.batch_norm(...) + r) bit for bit: values, all four gradients, running statistics", function()
    for _, shape in ipairs({ { 4, 3 }, { 3, 3, 20 }, { 2, 3, 6, 6 }, { 4, 3, 9, 11 } }) do
      for _, training in ipairs({ true, false }) do
        for _, affine in ipairs({ true, false }) do
          for _, relu in ipairs({ true, false }) do
            local a, b = run(shape, training, true, affine, relu), run(shape, training, false, affine, relu)
            for k, t in pairs(b) do
              H.assert_tensor(a[k], { shape = t:shape(), data = H.values(t) })
            end
            if relu and affine then -- where the sum is exactly 0 the residual gets no gradient
              assert.are.equal(0, a.gr:select(2, 2):narrow(1, 1, shape[1] // 2):abs():sum():item())
            end
          end
        end
      end
    end
  end)

  it("matches finite differences in x, r, weight and bias", function()
    -- |r| >= 5 while |bn(x)| < 4 here: no sum is near ReLU's kink, and the ReLU cuts about half
    cnn.manual_seed(5)
    local x, r0 = cnn.randn(3, 2, 4, 4), cnn.randn(3, 2, 4, 4)
    x:requires_grad_()
    local r = (r0:sign() * (r0:abs() + 5)):requires_grad_()
    local w, b = cnn.tensor({ 0.8, -1.1 }):requires_grad_(), cnn.tensor({ 0.3, -0.2 }):requires_grad_()
    for _, training in ipairs({ true, false }) do
      for _, relu in ipairs({ true, false }) do
        H.gradcheck(function(xx, rr, ww, bb)
          local o = { relu = relu, residual = rr }
          return F.batch_norm(xx, cnn.zeros(2), cnn.ones(2), ww, bb, training, 0.1, 1e-5, o)
        end, { x, r, w, b })
      end
    end
  end)

  it("rejects a residual of another shape or dtype, and keeps working", function()
    local x = cnn.randn(4, 3, 2, 2)
    local function bn(r) return F.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5, { residual = r }) end
    H.assert_error(function() bn(cnn.randn(4, 3, 2)) end,
      "batch_norm: residual should have the input's shape %(4, 3, 2, 2%), got %(4, 3, 2%)")
    H.assert_error(function() bn(cnn.zeros({ 4, 3, 2, 2 }, { dtype = "int64" })) end,
      "batch_norm: expected a float32 residual, got int64")
    H.assert_error(function() bn(1) end, "batch_norm: residual")
    H.assert_usable()
    local r = cnn.randn(4, 3, 2, 2)
    local y = F.batch_norm(x, nil, nil, nil, nil, true, 0.1, 1e-5, { residual = r })
    H.assert_tensor(y, { shape = { 4, 3, 2, 2 }, data = H.values(F.batch_norm(x, nil, nil, nil, nil, true) + r) })
  end)
end)

describe("F.pad_channels", function()
  -- The composition it replaces (resnet.lua's Shortcut before): a 1x1 average pool subsamples, zero
  -- channels go on either side through cat. Both sides are copies, so values and gradients are equal.
  local function composed(x, before, after, stride)
    local y = stride > 1 and F.avg_pool2d(x, 1, { stride = stride }) or x
    local n, _, h, w = table.unpack(y:shape())
    local parts = {}
    if before > 0 then parts[#parts + 1] = cnn.zeros(n, before, h, w) end
    parts[#parts + 1] = y
    if after > 0 then parts[#parts + 1] = cnn.zeros(n, after, h, w) end
    return cnn.cat(parts, 2)
  end

  it("equals avg_pool2d(x, 1, {stride}) between zero channels: values and gradients, odd sizes", function()
    for _, c in ipairs({ { 2, 3, 5, 7, 1, 2, 2 }, { 1, 2, 8, 8, 1, 1, 2 }, { 3, 1, 4, 6, 0, 3, 3 },
      { 2, 2, 3, 3, 2, 0, 1 }, { 2, 3, 4, 5, 0, 0, 2 }, { 1, 2, 1, 1, 1, 1, 2 } }) do
      local n, ch, h, w, before, after, stride = table.unpack(c)
      cnn.manual_seed(h * 10 + w)
      local x1 = cnn.randn(n, ch, h, w):requires_grad_(true)
      local x2 = x1:detach():clone():requires_grad_(true)
      local y1, y2 = F.pad_channels(x1, before, after, { stride = stride }), composed(x2, before, after, stride)
      assert.are.equal("PadChannelsBackward", y1.grad_fn)
      H.assert_tensor(y1, { shape = y2:shape(), data = H.values(y2) })
      local g = cnn.randn(y2:shape())
      ;(y1 * g):sum():backward()
      ;(y2 * g):sum():backward()
      H.assert_tensor(x1.grad, { shape = x2.grad:shape(), data = H.values(x2.grad) })
    end
  end)

  it("matches a hand-worked example: (1, 1, 3, 3) at stride 2, one zero channel each side", function()
    -- rows 1 and 3, columns 1 and 3 of 1..9: 1 3 / 7 9; the gradient lands back on those four
    local x = cnn.arange(1, 10):float():reshape(1, 1, 3, 3):requires_grad_(true)
    local y = F.pad_channels(x, 1, 1, { stride = 2 })
    H.assert_tensor(y, { { { { 0, 0 }, { 0, 0 } }, { { 1, 3 }, { 7, 9 } }, { { 0, 0 }, { 0, 0 } } } })
    y:sum():backward()
    H.assert_tensor(x.grad, { { { { 1, 0, 1 }, { 0, 0, 0 }, { 1, 0, 1 } } } })
  end)

  it("matches finite differences", function()
    cnn.manual_seed(4)
    local x = cnn.randn(2, 2, 5, 4):requires_grad_()
    H.gradcheck(function(t) return F.pad_channels(t, 2, 1, { stride = 2 }) end, { x })
  end)

  it("rejects bad inputs with a message naming it, and keeps working", function()
    local x = cnn.randn(2, 3, 4, 4)
    H.assert_error(function() F.pad_channels(cnn.randn(3, 4, 4), 1, 1) end,
      "pad_channels: expected an input of shape %(N, C, H, W%), got %(3, 4, 4%)")
    H.assert_error(function() F.pad_channels(x, -1, 1) end, "pad_channels: before and after must be >= 0")
    H.assert_error(function() F.pad_channels(x, 1, 1, { stride = 0 }) end, "pad_channels: stride must be >= 1")
    H.assert_error(function() F.pad_channels(x, 1, 1, { strid = 2 }) end, "pad_channels: unknown option")
    H.assert_error(function() F.pad_channels(cnn.zeros({ 1, 1, 2, 2 }, { dtype = "int64" }), 1, 1) end,
      "pad_channels: expected a float32 input")
    H.assert_error(function() F.pad_channels(x, math.maxinteger, 1) end, "pad_channels: .*overflows")
    H.assert_usable()
    H.assert_tensor(F.pad_channels(x, 0, 0), { shape = { 2, 3, 4, 4 }, data = H.values(x) })
  end)
end)

describe("F.local_response_norm", function()
  it("matches the formula by hand for one channel and size 1", function()
    -- scale = k + alpha * x^2 = 1 + 0.5 * 4 = 3; y = 2 * 3^-0.75
    local y = F.local_response_norm(cnn.full({ 1, 1, 1 }, 2.0), 1, { alpha = 0.5, beta = 0.75, k = 1 })
    H.assert_tensor(y, { { { 2 * 3 ^ -0.75 } } }, TOL)
  end)

  it("rejects inputs under 3 dimensions, a bad size and unknown options", function()
    H.assert_error(function() F.local_response_norm(cnn.zeros(2, 3), 2) end, "local_response_norm: ", "3 or more")
    H.assert_error(function() F.local_response_norm(cnn.zeros(2, 3, 4), 0) end, "local_response_norm: ", "size")
    H.assert_error(function() F.local_response_norm(cnn.zeros(2, 3, 4), 2.5) end, "local_response_norm: ", "integer")
    H.assert_error(function() F.local_response_norm(cnn.zeros(2, 3, 4), 2, { alpha = 1, kk = 2 }) end,
      "local_response_norm: unknown option 'kk'")
    H.assert_usable()
  end)

  it("works on strided input", function()
    cnn.manual_seed(6)
    local x = cnn.randn(3, 2, 4, 5):transpose(1, 2) -- (2, 3, 4, 5), not contiguous
    H.assert_tensor(F.local_response_norm(x, 3, { alpha = 0.5 }),
      { shape = { 2, 3, 4, 5 }, data = H.values(F.local_response_norm(x:contiguous(), 3, { alpha = 0.5 })) }, TOL)
  end)
end)

describe("F.linear (one GEMM with the bias preloaded; dW = dY^T X in (out, in) layout)", function()
  -- t equals the reference tensor ref (shape and values within atol)
  local function close(t, ref, atol) H.assert_tensor(t, {shape = ref:shape(), data = H.values(ref)}, {atol = atol}) end

  it("gives hand values: x {1, 2} with w {{1, 0}, {2, -1}, {0.5, 0.5}} and b {0, 1, -1} is {1, 1, 0.5}", function()
    local w, b = cnn.tensor{{1, 0}, {2, -1}, {0.5, 0.5}}, cnn.tensor{0, 1, -1}
    close(F.linear(cnn.tensor{1, 2}, w, b), cnn.tensor{1, 1, 0.5}, 0)
    close(F.linear(cnn.tensor{{1, 2}, {0, 0}}, w), cnn.tensor{{1, 0, 1.5}, {0, 0, 0}}, 0)
  end)

  it("has gradients by hand: dW = dY^T X, db = column sums of dY, dX = dY W", function()
    local x = cnn.tensor({{1, 2}, {3, 4}}, {requires_grad = true})
    local w = cnn.tensor({{1, 0}, {2, -1}, {0.5, 0.5}}, {requires_grad = true})
    local b = cnn.tensor({0, 1, -1}, {requires_grad = true})
    local gy = cnn.tensor{{1, 0, 2}, {0, 1, -1}}
    F.linear(x, w, b):backward(gy)
    -- dW[o][i] = sum_n gy[n][o] x[n][i]
    close(w.grad, cnn.tensor{{1, 2}, {3, 4}, {-1, 0}}, 0)
    close(b.grad, cnn.tensor{1, 1, 1}, 0)
    -- dX[n] = gy[n] @ w: {1 + 1, 0 + 1}, {2 - 0.5, -1 - 0.5}
    close(x.grad, cnn.tensor{{2, 1}, {1.5, -1.5}}, 0)
  end)

  it("matches finite differences for 1-d, 2-d and 3-d inputs, with and without bias", function()
    cnn.manual_seed(5)
    for _, shape in ipairs {{4}, {3, 4}, {2, 3, 4}} do
      local x = cnn.randn(table.unpack(shape)):requires_grad_()
      local w, b = cnn.randn(5, 4):requires_grad_(), cnn.randn(5):requires_grad_()
      H.gradcheck(function(a, c, d) return F.linear(a, c, d) end, {x, w, b})
      H.gradcheck(function(a, c) return F.linear(a, c) end, {x, w})
    end
  end)

  it("computes only the gradients needed and reads strided inputs", function()
    cnn.manual_seed(6)
    local x = cnn.randn(4, 3):t()           -- (3, 4), transposed view
    local w = cnn.randn(4, 5):t():requires_grad_()  -- (5, 4), transposed leaf view
    local y = F.linear(x, w)
    close(y, x:matmul(w:detach():t()), 1e-5)
    y:sum():backward()
    assert.is_nil(x.grad)
    close(w.grad, cnn.ones(3, 5):t():matmul(x), 1e-5)
  end)

  it("handles zero rows and zero features", function()
    local w, b = cnn.randn(3, 0):requires_grad_(), cnn.tensor({1, 2, 3}, {requires_grad = true})
    local y = F.linear(cnn.zeros(2, 0), w, b)
    close(y, cnn.tensor{{1, 2, 3}, {1, 2, 3}}, 0)
    y:sum():backward()
    close(b.grad, cnn.tensor{2, 2, 2}, 0)
    local w2 = cnn.randn(3, 4):requires_grad_()
    local y2 = F.linear(cnn.zeros(0, 4), w2)
    assert.are.same({0, 3}, y2:shape())
    y2:sum():backward()
    close(w2.grad, cnn.zeros(3, 4), 0)
  end)

  it("rejects bad shapes and dtypes naming the function", function()
    H.assert_error(function() F.linear(cnn.zeros(2, 5), cnn.zeros(3, 4)) end, "linear", "5 features", "expects 4")
    H.assert_error(function() F.linear(cnn.zeros(2, 4), cnn.zeros(3, 4, 1)) end, "linear", "2-d")
    H.assert_error(function() F.linear(cnn.zeros(2, 4), cnn.zeros(3, 4), cnn.zeros(4)) end, "linear", "bias")
    H.assert_error(function() F.linear(cnn.zeros(2, 4, {dtype = "int64"}), cnn.zeros(3, 4)) end, "linear", "float32")
    H.assert_error(function() F.linear(nil, cnn.zeros(3, 4)) end, "linear", "argument 1")
    close(F.linear(cnn.ones(1, 4), cnn.ones(3, 4)), cnn.full({1, 3}, 4), 0)
  end)
end)

-- Each kernel runs its loop on the calling thread or on the thread pool (runtime/kernels/activation.c,
-- loss.c, norm.c, pool.c, conv.c, optim.c). Above the parallel grain, one thread runs it whole and two
-- split it: the two must agree bit for bit (per-item work, fixed summation order).
describe("serial and parallel kernels", function()
  local threads = cnn.get_num_threads()
  after_each(function() cnn.set_num_threads(threads) end)

  -- every output of run() at 1 and at 2 threads; run gets fresh, equal inputs each time
  local function both(run)
    local out = {}
    for i, n in ipairs({ 1, 2 }) do
      cnn.set_num_threads(n)
      cnn.manual_seed(11)
      out[i] = run()
    end
    for k, a in pairs(out[1]) do
      local b = out[2][k]
      assert(a:numel() > 0 and a:ne(b):sum():item() == 0, k .. " differs between 1 and 2 threads")
    end
  end

  local function fwd_bwd(f)
    return function()
      local x = cnn.randn(2, 16, 32, 32):requires_grad_() -- 32768 values: the parallel grain
      local y = f(x)
      y:backward(cnn.randn(table.unpack(y:size())))
      return { y = y:detach(), gx = x.grad }
    end
  end

  it("agree for activations, softmax and losses", function()
    both(fwd_bwd(function(x) return F.leaky_relu(x, 0.1) end))
    both(fwd_bwd(function(x) return F.softmax(x, 2) end))
    both(fwd_bwd(function(x) return F.log_softmax(x, 4) end))
    both(fwd_bwd(function(x) return F.cross_entropy(x, cnn.randint(1, 16, { 2, 32, 32 }), { reduction = "none" }) end))
    both(fwd_bwd(function(x) return F.nll_loss(x, cnn.randint(1, 16, { 2, 32, 32 }), { reduction = "none" }) end))
    both(fwd_bwd(function(x) return F.mse_loss(x, cnn.randn(2, 16, 32, 32), { reduction = "sum" }) end))
    both(fwd_bwd(function(x) return F.mse_loss(x, cnn.randn(2, 16, 32, 32), { reduction = "none" }) end))
  end)

  it("agree for pooling, batch norm, LRN and convolution", function()
    both(fwd_bwd(function(x) return F.max_pool2d(x, 2) end))
    both(fwd_bwd(function(x) return F.max_pool2d(x, 3, { stride = 2, padding = 1 }) end))
    both(fwd_bwd(function(x) return F.avg_pool2d(x, 3, { stride = 2, padding = 1 }) end))
    both(fwd_bwd(function(x) return F.adaptive_avg_pool2d(x, { 5, 3 }) end))
    both(fwd_bwd(function(x) return F.local_response_norm(x, 3) end))
    both(fwd_bwd(function(x) return F.local_response_norm(x, 2, { beta = 0.6 }) end))
    both(function()
      local bn = cnn.nn.BatchNorm2d(16)
      local r = fwd_bwd(function(x) return bn(x) end)()
      r.gw, r.gb, r.rm, r.rv = bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var
      return r
    end)
    both(function() -- the weight gradient's partials depend on the thread count: only y, gx and gb here
      local conv = cnn.nn.Conv2d(16, 8, 3, { padding = 1 })
      local r = fwd_bwd(function(x) return conv(x) end)()
      r.gb = conv.bias.grad
      return r
    end)
  end)

  it("agree for SGD and Adam updates", function()
    local function steps(make)
      return function()
        local p = cnn.randn(40000)
        local opt = make({ p })
        for _ = 1, 3 do
          p.grad = cnn.randn(40000)
          opt:step()
        end
        return { p = p }
      end
    end
    both(steps(function(ps) return cnn.optim.SGD(ps, { lr = 0.1 }) end))
    both(steps(function(ps)
      return cnn.optim.SGD(ps, { lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01 })
    end))
    both(steps(function(ps) return cnn.optim.Adam(ps, { lr = 0.01, amsgrad = true, weight_decay = 0.1 }) end))
    both(steps(function(ps) return cnn.optim.AdamW(ps, { lr = 0.01 }) end))
  end)
end)
