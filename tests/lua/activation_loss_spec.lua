-- The activations and losses cnn.F composes from tensor ops (silu, softplus, elu, hardtanh, relu6,
-- l1_loss, smooth_l1_loss, huber_loss, binary_cross_entropy_with_logits): values and input
-- gradients against PyTorch's (tests/fixtures/activation_loss.lua, written by
-- scripts/tools/gen_activation_loss_fixtures.py), kinks included; then bad arguments.
local cnn = require "cnn"
local H = require "tests.lua.helpers"
local F = cnn.F

local FIX = dofile("tests/fixtures/activation_loss.lua")

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

  it("bad arguments raise, naming the function, and the runtime goes on", function()
    local x = cnn.ones(3)
    H.assert_error(function() return F.silu(3) end, "silu", "tensor")
    H.assert_error(function() return F.softplus(x, "a") end, "softplus", "beta")
    H.assert_error(function() return F.hardtanh(x, 2, 1) end, "hardtanh", "above")
    H.assert_error(function() return F.l1_loss(x, x, {reduction = "avg"}) end, "l1_loss", "reduction")
    H.assert_error(function() return F.huber_loss(x, x, {delta = 0}) end, "huber_loss", "delta")
    H.assert_error(function() return F.smooth_l1_loss(x, x, {beta = -1}) end, "smooth_l1_loss", "beta")
    H.assert_error(function() return F.binary_cross_entropy_with_logits(x, 1) end, "binary_cross_entropy", "tensor")
    H.assert_usable()
  end)
end)
