-- The activations and losses cnn.F composes from tensor ops (silu, softplus, elu, hardtanh, relu6,
-- l1_loss, smooth_l1_loss, huber_loss, binary_cross_entropy_with_logits): values and input
-- gradients against PyTorch's (tests/fixtures/activation_loss.lua, written by
-- scripts/tools/gen_activation_loss_fixtures.py), kinks included; then bad arguments.
local cnn = require "cnn"
local H = require "tests.lua.helpers"
local F = cnn.F

local FIX = dofile("tests/fixtures/activation_loss.lua")

-- t's values equal `want`'s (exactly, or within rtol), a NaN where want has one (H.assert_tensor
-- never matches NaN).
local function assert_values(t, want, rtol)
  local got = H.values(t)
  assert.are.equal(#want, #got)
  for i = 1, #want do
    if want[i] ~= want[i] then
      assert(got[i] ~= got[i], string.format("element %d is %.9g but expected NaN", i, got[i]))
    else
      assert(got[i] == want[i] or H.close(got[i], want[i], rtol or 0, 0),
        string.format("element %d is %.9g but expected %.9g", i, got[i], want[i]))
    end
  end
end

describe("composed activations and losses", function()
  for _, c in ipairs(FIX.cases) do
    it(c.name .. " matches PyTorch, value and gradient: " .. c.lua, function()
      local x = cnn.tensor(FIX.x):requires_grad_()
      local env = setmetatable({x = x, t = cnn.tensor(FIX.t), p = cnn.tensor(FIX.p), w = cnn.tensor(FIX.w), F = F,
        cnn = cnn}, {__index = _G})
      local y = assert(load("return " .. c.lua, c.name, "t", env))()
      H.assert_tensor(y, c.out, {rtol = 1e-5, atol = 1e-6})
      local w = y:dim() > 0 and cnn.tensor(FIX.w) or 1
      (y * w):sum():backward()
      H.assert_tensor(x.grad, c.grad, {rtol = 1e-5, atol = 1e-6})
    end)
  end

  -- Hand-checked against PyTorch 1.13's smooth_l1_backward / huber_backward: slope -1 where
  -- d <= -beta, 1 where d >= beta, d / beta between, so a NaN difference gives a NaN gradient (not
  -- abs's sign(NaN) = 0) and beta = 0 gives -1 at d = 0.
  it("smooth_l1_loss and huber_loss: a NaN target gives NaN gradients, beta = 0 gives -1 at d = 0", function()
    local nan = 0 / 0
    local x = cnn.tensor({1, 2}):requires_grad_()
    local t = cnn.tensor({nan}):requires_grad_()
    local l = F.smooth_l1_loss(x, t:expand(2), {beta = 0, reduction = "sum"})
    l:backward()
    assert.is_true(l:item() ~= l:item())
    assert_values(x.grad, {nan, nan})
    assert_values(t.grad, {nan})
    x = cnn.tensor({nan, 2}):requires_grad_()
    F.smooth_l1_loss(x, cnn.tensor({0, 1}), {reduction = "sum"}):backward()
    assert_values(x.grad, {nan, 1})
    x = cnn.tensor({nan, 2}):requires_grad_()
    F.huber_loss(x, cnn.tensor({0, 1}), {delta = 0.5, reduction = "sum"}):backward()
    assert_values(x.grad, {nan, 0.5})
    x = cnn.tensor({0, 2, -1, 0.5}):requires_grad_()
    F.smooth_l1_loss(x, cnn.zeros(4), {beta = 0, reduction = "sum"}):backward()
    assert_values(x.grad, {-1, 1, -1, 1})
    x = cnn.tensor({0, 2, -1, 0.5, 0.25}):requires_grad_()
    F.smooth_l1_loss(x, cnn.zeros(5), {beta = 0.5, reduction = "sum"}):backward()
    assert_values(x.grad, {0, 1, -1, 1, 0.5})
    -- the target's gradient is the formula at target - input (PyTorch swaps the arguments): at
    -- d = 0 with beta = 0 it is -1 too, not the input's negated (oracle seed 13); broadcast target
    x = cnn.tensor({0, 2, -1}):requires_grad_()
    t = cnn.tensor({0, 0, 0}):requires_grad_()
    F.smooth_l1_loss(x, t, {beta = 0, reduction = "sum"}):backward()
    assert_values(x.grad, {-1, 1, -1})
    assert_values(t.grad, {-1, -1, 1})
    t = cnn.tensor({0}):requires_grad_()
    F.smooth_l1_loss(x, t, {beta = 0, reduction = "sum"}):backward()
    assert_values(t.grad, {-1})
  end)

  -- softplus is log1p(e^(beta x)) / beta as PyTorch's, not log(1 + e^(beta x)): where e^(beta x) is
  -- below float32's epsilon, 1 + e^(beta x) rounds to 1 and the value came out 0 (or a few % off).
  it("softplus keeps its tiny values on the far negative side", function()
    local xs = {-18.6, -7.7, -30, -5.5}
    local x = cnn.tensor(xs)
    local got = H.values(F.softplus(x))
    local x32 = H.values(x)
    local function log1p(u) -- in double: u - u^2/2 + u^3/3 - ... for these u < 0.01
      local r, p = 0, u
      for k = 1, 12 do r, p = r + p / k, -p * u end
      return r
    end
    for i = 1, #xs do
      local want = log1p(math.exp(x32[i]))
      assert(H.close(got[i], want, 4e-6, 0), string.format("softplus(%g) = %.9g, expected %.9g", x32[i], got[i], want))
    end
    local b = H.values(F.softplus(x, 2, 5))
    for i = 1, #xs do
      local want = log1p(math.exp(2 * x32[i])) / 2
      assert(H.close(b[i], want, 4e-6, 0), string.format("softplus(%g, 2) = %.9g, expected %.9g", x32[i], b[i], want))
    end
  end)

  -- ATen's formulas: softplus's gradient is g e^(bx) / (e^(bx) + 1) below the threshold (NaN at a
  -- NaN x); elu's is g alpha e^x where x <= 0, else g, so a NaN x gets g (its value stays NaN).
  it("softplus and elu gradients at NaN follow PyTorch's formulas", function()
    local nan = 0 / 0
    local x = cnn.tensor({nan, -0.5, 1}):requires_grad_()
    local y = F.elu(x, 0.5)
    y:sum():backward()
    assert_values(y, {nan, 0.5 * (math.exp(-0.5) - 1), 1}, 1e-6)
    H.assert_tensor(x.grad, {1, 0.5 * math.exp(-0.5), 1}, {rtol = 1e-6})
    x = cnn.tensor({nan, 0, 30}):requires_grad_()
    y = F.softplus(x)
    y:sum():backward()
    assert_values(x.grad, {nan, 0.5, 1})
  end)

  -- PyTorch's value is m + log(e^-m + e^(-x - m)) with m = max(-x, 0) (plus (1 - y) x): at x = -inf
  -- that is inf - inf, NaN for any target; the gradient stays sigmoid(x) - y (with pos_weight p:
  -- (1 + (p - 1) y) sigmoid(x) - p y), hand-worked at -inf, inf and 0.
  it("binary_cross_entropy_with_logits at -inf is NaN with a finite gradient, as PyTorch's", function()
    local nan, inf = 0 / 0, math.huge
    local t = cnn.tensor({0.5, 0.5, 0, 1})
    local x = cnn.tensor({-inf, inf, -inf, 0}):requires_grad_()
    local l = F.binary_cross_entropy_with_logits(x, t, {reduction = "none"})
    l:sum():backward()
    assert_values(l, {nan, inf, nan, math.log(2)}, 1e-6)
    assert_values(x.grad, {-0.5, 0.5, 0, -0.5})
    x = cnn.tensor({-inf, inf, -inf, 0}):requires_grad_()
    l = F.binary_cross_entropy_with_logits(x, t, {reduction = "none", pos_weight = cnn.tensor({2})})
    l:sum():backward()
    assert_values(l, {nan, inf, nan, 2 * math.log(2)}, 1e-6)
    assert_values(x.grad, {-1, 0.5, 0, -1})
  end)

  -- ATen's hardtanh_backward: 0 where x <= min_val or x >= max_val, else g; a NaN x gets g (the
  -- value stays NaN), the bounds themselves 0.
  it("hardtanh and relu6 pass the gradient at NaN, as PyTorch's formula", function()
    local nan = 0 / 0
    local x = cnn.tensor({nan, -1, 0.5, 1, 2}):requires_grad_()
    local y = F.hardtanh(x)
    y:sum():backward()
    assert_values(y, {nan, -1, 0.5, 1, 1})
    assert_values(x.grad, {1, 0, 1, 0, 0})
    x = cnn.tensor({nan, 0, 3, 6, 7}):requires_grad_()
    y = F.relu6(x)
    y:sum():backward()
    assert_values(y, {nan, 0, 3, 6, 6})
    assert_values(x.grad, {1, 0, 1, 0, 0})
  end)

  it("bad arguments raise, naming the function, and the runtime goes on", function()
    local x = cnn.ones(3)
    H.assert_error(function() return F.silu(3) end, "silu", "tensor")
    H.assert_error(function() return F.softplus(x, "a") end, "softplus", "beta")
    H.assert_error(function() return F.hardtanh(x, 2, 1) end, "hardtanh", "above")
    H.assert_error(function() return F.l1_loss(x, x, {reduction = "avg"}) end, "l1_loss", "reduction")
    H.assert_error(function() return F.huber_loss(x, x, {delta = 0}) end, "huber_loss", "delta")
    H.assert_error(function() return F.smooth_l1_loss(x, x, {beta = -1}) end, "smooth_l1_loss", "beta")
    H.assert_error(function() return F.binary_cross_entropy_with_logits(x, 1) end, "binary_cross_entropy", "tensor")
    -- a target of another shape is refused, as PyTorch ("Target size ... must be the same as input
    -- size") and as binary_cross_entropy: it was broadcast, (2, 3) against (3) gave a number
    local ok, msg = pcall(F.binary_cross_entropy_with_logits, cnn.zeros(2, 3), cnn.zeros(3))
    assert.is_false(ok)
    assert.truthy(msg:find("binary_cross_entropy_with_logits: target size {3} differs from input size {2, 3}", 1, true))
    H.assert_error(function() return cnn.nn.BCEWithLogitsLoss()(cnn.zeros(2), cnn.zeros(1)) end,
      "target size {1} differs from input size {2}")
    H.assert_error(function() return F.binary_cross_entropy(cnn.zeros(2), cnn.zeros(2, 1)) end,
      "binary_cross_entropy: target size {2, 1} differs from input size {2}")
    H.assert_usable()
  end)
end)
