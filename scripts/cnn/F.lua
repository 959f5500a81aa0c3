--- module cnn.F
--- Functional ops: convolution, pooling, activations, normalisation, losses.
--- Stateless and differentiable: autograd records each, and nn's layers call them in forward.
--- Conventionally `local F = cnn.F`.

-- cnn.F: the functional ops. The kernels are C (core.F: conv2d, pooling, softmax, losses,
-- normalisation, dropout); the few ops that are compositions of tensor ops are defined here.
-- Every op is differentiable through autograd.
local core = require "cnn.core"

local F = {}
for k, v in pairs(core.F) do F[k] = v end

local is_tensor = require("cnn.util").is_tensor
local function check_tensor(fn, x, i)
  if not is_tensor(x) then
    error(string.format("%s: expected a tensor for argument %d, got %s", fn, i, type(x)), 3)
  end
end

-- F.linear(x, w, b): x (..., in), w (out, in), b (out) or nil -> (..., out) is core.F.linear (C: one
-- GEMM with the bias preloaded; backward computes dW = dY^T X directly in (out, in) layout)

--- cnn.F.flatten(x, start_dim=1, end_dim=-1) -> Tensor
--- Dimensions start_dim .. end_dim of x merged into one (as t:flatten; torch.flatten's start 0 is 1).
function F.flatten(x, start_d, end_d)
  check_tensor("flatten", x, 1)
  return x:flatten(start_d or 1, end_d or -1)
end

--- cnn.F.relu(x) -> Tensor
--- max(x, 0), elementwise.
F.relu = F.relu or function(x) check_tensor("relu", x, 1); return x:relu() end
--- cnn.F.sigmoid(x) -> Tensor
--- 1 / (1 + e^-x), elementwise.
F.sigmoid = F.sigmoid or function(x) check_tensor("sigmoid", x, 1); return x:sigmoid() end
--- cnn.F.tanh(x) -> Tensor
--- The hyperbolic tangent, elementwise.
F.tanh = F.tanh or function(x) check_tensor("tanh", x, 1); return x:tanh() end

local function check_number(fn, name, v)
  if type(v) ~= "number" then error(string.format("%s: %s must be a number, got %s", fn, name, type(v)), 3) end
  return v
end

-- The reduction option of the losses below: "mean" (default), "sum" or "none".
local function reduce(fn, l, opts)
  local r = opts and opts.reduction or "mean"
  if r == "mean" then return l:mean() end
  if r == "sum" then return l:sum() end
  if r == "none" then return l end
  error(string.format('%s: reduction must be "mean", "sum" or "none", got %s', fn, tostring(r)), 3)
end

--- cnn.F.silu(x) -> Tensor
--- x * sigmoid(x), elementwise (also called swish).
function F.silu(x)
  check_tensor("silu", x, 1)
  return x * x:sigmoid()
end

--- cnn.F.softplus(x, beta=1, threshold=20) -> Tensor
--- log(1 + e^(beta x)) / beta, elementwise; x itself where beta x > threshold, as PyTorch.
function F.softplus(x, beta, threshold)
  check_tensor("softplus", x, 1)
  beta = check_number("softplus", "beta", beta or 1)
  threshold = check_number("softplus", "threshold", threshold or 20)
  local bx = x * beta
  -- clamped so the branch not taken stays finite (its gradient is then 0, not NaN)
  local soft = (bx:clamp(nil, threshold):exp() + 1):log() / beta
  return core.where(bx:gt(threshold), x, soft)
end

--- cnn.F.elu(x, alpha=1) -> Tensor
--- x where x > 0, else alpha * (e^x - 1), elementwise.
function F.elu(x, alpha)
  check_tensor("elu", x, 1)
  alpha = check_number("elu", "alpha", alpha or 1)
  return core.where(x:gt(0), x, (x:clamp(nil, 0):exp() - 1) * alpha)
end

--- cnn.F.hardtanh(x, min_val=-1, max_val=1) -> Tensor
--- x limited to [min_val, max_val], elementwise.
--- The gradient is 1 strictly inside and 0 at and past the bounds, as PyTorch's (t:clamp passes it
--- at the bounds too).
function F.hardtanh(x, lo, hi)
  check_tensor("hardtanh", x, 1)
  lo = check_number("hardtanh", "min_val", lo or -1)
  hi = check_number("hardtanh", "max_val", hi or 1)
  if lo > hi then error(string.format("hardtanh: min_val %g is above max_val %g", lo, hi), 2) end
  return core.where(x:gt(lo):logical_and(x:lt(hi)), x, x:clamp(lo, hi):detach())
end

--- cnn.F.relu6(x) -> Tensor
--- min(max(x, 0), 6), elementwise: F.hardtanh(x, 0, 6).
function F.relu6(x)
  check_tensor("relu6", x, 1)
  return F.hardtanh(x, 0, 6)
end

--- cnn.F.l1_loss(input, target, {reduction="mean"}) -> Tensor
--- The absolute differences |input - target|: their mean, their sum, or each ("none").
--- The shapes broadcast; the gradient at a zero difference is 0, as PyTorch's.
function F.l1_loss(input, target, opts)
  check_tensor("l1_loss", input, 1)
  check_tensor("l1_loss", target, 2)
  return reduce("l1_loss", (input - target):abs(), opts)
end

--- cnn.F.smooth_l1_loss(input, target, {reduction="mean", beta=1}) -> Tensor
--- 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta, with d = input - target (beta = 0: l1).
function F.smooth_l1_loss(input, target, opts)
  check_tensor("smooth_l1_loss", input, 1)
  check_tensor("smooth_l1_loss", target, 2)
  local beta = check_number("smooth_l1_loss", "beta", opts and opts.beta or 1)
  if beta < 0 then error("smooth_l1_loss: beta must be non-negative, got " .. beta, 2) end
  local d = input - target
  local a = d:abs()
  if beta == 0 then return reduce("smooth_l1_loss", a, opts) end
  local q = d:clamp(-beta, beta) -- the quadratic branch on its own range: finite where not taken
  return reduce("smooth_l1_loss", core.where(a:lt(beta), q * q * (0.5 / beta), a - 0.5 * beta), opts)
end

--- cnn.F.huber_loss(input, target, {reduction="mean", delta=1}) -> Tensor
--- 0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta), with d = input - target.
function F.huber_loss(input, target, opts)
  check_tensor("huber_loss", input, 1)
  check_tensor("huber_loss", target, 2)
  local delta = check_number("huber_loss", "delta", opts and opts.delta or 1)
  if not (delta > 0) then error("huber_loss: delta must be positive, got " .. tostring(delta), 2) end
  local d = input - target
  local a = d:abs()
  local q = d:clamp(-delta, delta) -- the quadratic branch on its own range: finite where not taken
  return reduce("huber_loss", core.where(a:le(delta), q * q * 0.5, (a - 0.5 * delta) * delta), opts)
end

--- cnn.F.binary_cross_entropy_with_logits(input, target, {reduction="mean", weight=, pos_weight=}) -> Tensor
--- Binary cross-entropy from logits x, computed stably as PyTorch's.
--- Each term is -w [p y log(sigmoid(x)) + (1 - y) log(1 - sigmoid(x))]; target holds
--- probabilities in [0, 1]; weight (broadcast to the loss) scales each term and
--- pos_weight (broadcast along the last dim, one per class) the positive ones.
function F.binary_cross_entropy_with_logits(input, target, opts)
  local fn = "binary_cross_entropy_with_logits"
  check_tensor(fn, input, 1)
  check_tensor(fn, target, 2)
  local weight, pos_weight = opts and opts.weight, opts and opts.pos_weight
  if weight ~= nil then check_tensor(fn, weight, 3) end
  if pos_weight ~= nil then check_tensor(fn, pos_weight, 3) end
  -- softplus(-x) = log(1 + e^-x), one branch for x >= 0 and one for x < 0, each on its own range
  -- (clamped) so the branch not taken stays finite and passes no NaN gradient: the gradient is
  -- PyTorch's lw sigmoid(x) - pos_weight y, also at x = 0 and +-inf
  local xa, xb = input:clamp(0, nil), input:clamp(nil, 0)
  local sp = core.where(input:ge(0), ((-xa):exp() + 1):log(), (xb:exp() + 1):log() - xb)
  local l
  if pos_weight ~= nil then
    local lw = (pos_weight - 1) * target + 1
    l = (1 - target) * input + lw * sp
  else
    l = (1 - target) * input + sp
  end
  if weight ~= nil then l = l * weight end
  return reduce(fn, l, opts)
end

return F
