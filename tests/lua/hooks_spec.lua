-- Module hooks as PyTorch 1.13's: register_forward_pre_hook, register_forward_hook and
-- register_full_backward_hook, their order, removal (also during a call), replacement inputs,
-- outputs and input gradients, and backward hook gradients against autograd's own.
local cnn = require "cnn"
local nn = cnn.nn
local H = dofile("tests/lua/helpers.lua")

local function close(a, b) return cnn.allclose(a, b, 1e-6, 1e-6) end

describe("forward hooks", function()
  it("run pre-hooks, forward, then forward hooks, each kind in registration order, nested inside out", function()
    local log = {}
    local inner = nn.ReLU()
    local outer = nn.Sequential(nn.Identity(), inner)
    local function note(what) return function() log[#log + 1] = what end end
    outer:register_forward_pre_hook(note("outer pre 1"))
    outer:register_forward_hook(note("outer hook 1"))
    outer:register_forward_pre_hook(note("outer pre 2"))
    inner:register_forward_hook(note("inner hook 1"))
    inner:register_forward_pre_hook(note("inner pre 1"))
    inner:register_forward_hook(note("inner hook 2"))
    outer(cnn.ones(2))
    assert.are.same({"outer pre 1", "outer pre 2", "inner pre 1", "inner hook 1", "inner hook 2", "outer hook 1"}, log)
  end)

  it("see the module, the list of arguments and the real output tensor", function()
    local lin = nn.Linear(3, 2)
    local x = cnn.randn(4, 3)
    local seen
    lin:register_forward_hook(function(m, input, output) seen = {m = m, input = input, output = output} end)
    local y = lin(x)
    assert.are.equal(lin, seen.m)
    assert.are.equal(1, #seen.input)
    assert.are.equal(x, seen.input[1]) -- the same tensor object
    assert.are.equal(y, seen.output)
    assert.is_true(close(y, x:matmul(lin.weight:t()) + lin.bias))
  end)

  it("replace the output: each hook gets the previous hook's replacement, the caller the last one", function()
    local m = nn.Identity()
    local got = {}
    m:register_forward_hook(function(_, _, out) got[1] = out:item(); return out + 1 end)
    m:register_forward_hook(function() end) -- nil keeps the output
    m:register_forward_hook(function(_, _, out) got[2] = out:item(); return out * 10 end)
    local y = m(cnn.tensor(2))
    assert.are.same({2, 3}, got)
    assert.are.equal(30, y:item())
  end)

  it("replace the input with a pre-hook: a single value or a list of arguments", function()
    local lin = nn.Linear(2, 1, {bias = false})
    cnn.no_grad(function() lin.weight:copy_(cnn.tensor({{1, 2}})) end)
    local h = lin:register_forward_pre_hook(function(_, input) return input[1] * 2 end)
    local y = lin(cnn.tensor({{1, 1}}))
    assert.are.equal(6, y:item()) -- (1*2 + 1*2*2)
    h:remove()
    local seen
    local Two = nn.Module:extend("Two")
    function Two:forward(a, b) return a - b end
    local two = Two()
    two:register_forward_pre_hook(function(_, input) return {input[2], input[1]} end)
    two:register_forward_hook(function(_, input) seen = input end)
    assert.are.equal(3, two(cnn.tensor(1), cnn.tensor(4)):item())
    assert.are.equal(4, seen[1]:item()) -- forward hooks see the replaced arguments
  end)

  it("stop after handle:remove(), which is idempotent; a removal during a call counts from the next", function()
    local m = nn.Identity()
    local log = {}
    local hb
    local ha = m:register_forward_hook(function()
      log[#log + 1] = "a"
      hb:remove() -- b was registered after a: it still runs in this call, as in PyTorch
    end)
    hb = m:register_forward_hook(function() log[#log + 1] = "b" end)
    local hc
    hc = m:register_forward_hook(function()
      log[#log + 1] = "c"
      hc:remove() -- a hook removing itself
    end)
    m(cnn.ones(1))
    assert.are.same({"a", "b", "c"}, log)
    m(cnn.ones(1))
    assert.are.same({"a", "b", "c", "a"}, log)
    ha:remove()
    ha:remove()
    hb:remove()
    m(cnn.ones(1))
    assert.are.same({"a", "b", "c", "a"}, log)
    assert.is_false(m:_has_hooks())
    -- a hook added during a call runs from the next call
    m:register_forward_hook(function() m:register_forward_hook(function() log[#log + 1] = "late" end) end)
    m(cnn.ones(1))
    assert.are.same({"a", "b", "c", "a"}, log)
  end)

  it("see the ReLU before the pool as written when Sequential would otherwise run the pool first", function()
    local relu, pool = nn.ReLU(), nn.MaxPool2d(2)
    local seq = nn.Sequential(relu, pool)
    local shape_in
    relu:register_forward_hook(function(_, input) shape_in = input[1]:shape() end)
    local x = cnn.randn(1, 1, 4, 4)
    local y = seq(x)
    assert.are.same({1, 1, 4, 4}, shape_in)
    assert.is_true(close(y, cnn.F.max_pool2d(cnn.F.relu(x), 2)))
  end)

  it("see the ReLU of a ResNet block that would otherwise be fused into its BatchNorm", function()
    local block = cnn.models.resnet_cifar {depth = 20}.layer1[1]
    local calls = 0
    block.relu:register_forward_hook(function() calls = calls + 1 end)
    block(cnn.randn(2, 16, 8, 8))
    assert.are.equal(2, calls) -- after bn1 and after the sum
  end)

  it("reject a hook that is not a function, naming the method", function()
    local m = nn.ReLU()
    H.assert_error(function() m:register_forward_hook(42) end, "register_forward_hook", "expected a function")
    H.assert_error(function() m:register_forward_pre_hook("x") end, "register_forward_pre_hook", "expected a function")
    H.assert_error(function() m:register_full_backward_hook({}) end, "register_full_backward_hook",
      "expected a function")
    assert.is_false(m:_has_hooks())
    H.assert_usable()
  end)
end)

describe("full backward hooks", function()
  it("get grad_input and grad_output equal to autograd's gradients", function()
    cnn.manual_seed(1)
    local lin = nn.Linear(3, 2)
    local x0, w = cnn.randn(4, 3), cnn.randn(4, 2)
    -- autograd's gradient of sum(lin(x) * w) with respect to x, without hooks
    local xr = x0:clone():requires_grad_()
    ;(lin(xr) * w):sum():backward()
    lin:zero_grad()

    local got = {}
    lin:register_full_backward_hook(function(m, gi, go)
      got[#got + 1] = {m = m, gi = gi, go = go}
    end)
    local x = x0:clone():requires_grad_()
    ;(lin(x) * w):sum():backward()
    assert.are.equal(1, #got)
    assert.are.equal(lin, got[1].m)
    assert.is_true(close(got[1].gi[1], xr.grad))
    assert.is_true(close(got[1].go[1], w)) -- d sum(y * w) / dy = w
    assert.is_true(close(x.grad, xr.grad))
    -- and by hand: grad_input = grad_output W
    assert.is_true(close(got[1].gi[1], w:matmul(lin.weight)))
  end)

  it("give nil in grad_output for a result no gradient reached, as PyTorch's None (it was zeros)", function()
    local Two = nn.Module:extend("Two")
    function Two:forward(a) return a * 2, a * 3 end
    local m, got = Two(), {}
    m:register_full_backward_hook(function(_, gi, go) got = {gi = gi, go = go} end)
    local x = cnn.tensor({1, 2}, {requires_grad = true})
    local _, q = m(x)
    ;(q * 5):sum():backward()
    assert.is_nil(got.go[1])
    assert.are.same({5, 5}, got.go[2]:totable())
    assert.are.same({15, 15}, got.gi[1]:totable())
    assert.are.same({15, 15}, x.grad:totable())
  end)

  it("replace grad_input with the list a hook returns; later hooks see the replacement", function()
    local lin = nn.Linear(3, 2)
    local seen
    lin:register_full_backward_hook(function(_, gi) return {gi[1] * 3} end)
    lin:register_full_backward_hook(function(_, gi) seen = gi[1]:clone() end)
    local x0 = cnn.randn(2, 3)
    local xr = x0:clone():requires_grad_()
    local ref = x0:clone():requires_grad_()
    ;(ref:matmul(lin.weight:t()) + lin.bias):sum():backward()
    ;lin(xr):sum():backward()
    assert.is_true(close(xr.grad, ref.grad * 3))
    assert.is_true(close(seen, ref.grad * 3))
  end)

  it("give one entry per argument, nil for non-tensors and tensors without grad", function()
    local Mul = nn.Module:extend("Mul")
    function Mul:forward(a, scale, b, c) return a * b * scale + c end
    local m = Mul()
    local gi, go
    m:register_full_backward_hook(function(_, i, o) gi, go = i, o end)
    local a, b = cnn.tensor({1, 2}):requires_grad_(), cnn.tensor({3, 5}):requires_grad_()
    local c = cnn.tensor({7, 7}) -- needs no gradient
    local y = m(a, 10, b, c)
    ;(y * cnn.tensor({1, -1})):sum():backward()
    assert.are.equal(4, gi.n)
    H.assert_tensor(gi[1], {30, -50}) -- d/da = 10 b * g
    assert.is_nil(gi[2])
    H.assert_tensor(gi[3], {10, -20}) -- d/db = 10 a * g
    assert.is_nil(gi[4])
    H.assert_tensor(go[1], {1, -1})
    H.assert_tensor(a.grad, {30, -50})
  end)

  it("run once grad_output is known when no argument requires grad, with grad_input all nil", function()
    local conv = nn.Conv2d(1, 2, 3)
    local gi, go
    conv:register_full_backward_hook(function(_, i, o) gi, go = i, o end)
    local y = conv(cnn.randn(1, 1, 5, 5)) -- an image, as the first layer sees it
    ;(y * 2):sum():backward()
    assert.are.equal(1, gi.n)
    assert.is_nil(gi[1])
    H.assert_tensor(go[1], cnn.full({1, 2, 3, 3}, 2):totable())
    assert.is_not_nil(conv.weight.grad)
    -- such a hook may not return gradients
    conv:register_full_backward_hook(function() return {cnn.zeros(1, 1, 5, 5)} end)
    H.assert_error(function() conv(cnn.randn(1, 1, 5, 5)):sum():backward() end,
      "Conv2d", "must return nil")
    H.assert_usable()
  end)

  it("fire for every module of a network in reverse order, and not for forwards without grad", function()
    local net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    local log = {}
    for i = 1, 3 do
      net[i]:register_full_backward_hook(function() log[#log + 1] = i end)
    end
    net(cnn.randn(5, 4):requires_grad_()):sum():backward()
    assert.are.same({3, 2, 1}, log)
    cnn.no_grad(function() net(cnn.randn(5, 4)) end)
    assert.are.same({3, 2, 1}, log)
  end)

  it("leave the values and gradients of the model unchanged", function()
    cnn.manual_seed(4)
    local net = nn.Sequential(nn.Conv2d(1, 2, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
      nn.Linear(8, 3))
    local x = cnn.randn(2, 1, 4, 4)
    local y0 = net(x)
    y0:sum():backward()
    local g0 = net[1].weight.grad:clone()
    net:zero_grad()
    for i = 1, #net do
      net[i]:register_full_backward_hook(function() end)
      net[i]:register_forward_hook(function() end)
    end
    local y1 = net(x)
    y1:sum():backward()
    assert.is_true(close(y0, y1))
    assert.is_true(close(g0, net[1].weight.grad))
  end)

  it("are a snapshot taken at forward: one removed before backward still runs for that forward", function()
    local lin = nn.Linear(2, 2)
    local calls = 0
    local h = lin:register_full_backward_hook(function() calls = calls + 1 end)
    local y = lin(cnn.randn(1, 2):requires_grad_())
    h:remove()
    y:sum():backward()
    assert.are.equal(1, calls)
    lin(cnn.randn(1, 2):requires_grad_()):sum():backward()
    assert.are.equal(1, calls)
  end)

  it("report a hook returning the wrong number of gradients, naming the module", function()
    local lin = nn.Linear(2, 2)
    lin:register_full_backward_hook(function(_, gi) return {gi[1], gi[1]} end)
    H.assert_error(function() lin(cnn.randn(1, 2):requires_grad_()):sum():backward() end,
      "Linear", "2 gradients for 1 inputs")
    H.assert_usable()
  end)
end)
