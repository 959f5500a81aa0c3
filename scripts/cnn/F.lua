--- module cnn.F
--- Functional ops: convolution, pooling, activations, normalisation, losses.
--- Stateless and differentiable: autograd records each, and nn's layers call them in forward.
--- Conventionally `local F = cnn.F`.

-- cnn.F: the functional ops. The kernels are C (core.F: conv2d, pooling, softmax, losses,
-- normalisation, dropout); the few ops that are compositions of tensor ops are defined here.
-- Every op is differentiable through autograd.
local core = require "cnn.core"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")

local F = {}
for k, v in pairs(core.F) do F[k] = v end

local is_tensor = require("cnn.util").is_tensor
local check_options = require("cnn.util").check_options
local function check_tensor(fn, x, i)
  if not is_tensor(x) then
    error(string.format("%s: expected a tensor for argument %d, got %s", fn, i, type(x)), 3)
  end
end

-- A loss's input and target broadcast (PyTorch's rule: trailing dims equal or one of them 1), or
-- an error naming the loss rather than the subtraction that would fail inside it; bname names b
-- when it is not the target (a weight).
local function check_broadcast(fn, a, b, bname)
  local sa, sb = a:size(), b:size()
  for i = 1, math.min(#sa, #sb) do
    local x, y = sa[#sa + 1 - i], sb[#sb + 1 - i]
    if x ~= y and x ~= 1 and y ~= 1 then
      error(string.format("%s: input (%s) and %s (%s) cannot be broadcast", fn, table.concat(sa, ", "),
        bname or "target", table.concat(sb, ", ")), 3)
    end
  end
end

-- target of input's exact shape (the binary cross entropies: PyTorch broadcasts neither)
local function check_same_size(fn, input, target)
  local si, st = table.concat(input:size(), ", "), table.concat(target:size(), ", ")
  if si ~= st then error(string.format("%s: target size {%s} differs from input size {%s}", fn, st, si), 3) end
end

-- The option keys of a loss below: reduction and the given ones
local function loss_keys(...)
  local k = {reduction = true}
  for _, name in ipairs {...} do k[name] = true end
  return k
end

-- F.linear(x, w, b): x (..., in), w (out, in), b (out) or nil -> (..., out) is core.F.linear (C: one
-- GEMM with the bias preloaded; backward computes dW = dY^T X directly in (out, in) layout)

--- cnn.F.flatten(x, start_dim=1, end_dim=-1) -> Tensor
--- Dimensions start_dim .. end_dim of x merged into one (as t:flatten; torch.flatten's start 0 is 1).
function F.flatten(x, start_d, end_d)
  check_tensor("flatten", x, 1)
  return x:flatten(start_d or 1, end_d or -1)
end

--- cnn.F.relu(x, inplace=false) -> Tensor
--- max(x, 0), elementwise.
--- inplace (true, or an options table {inplace=true}) overwrites x and returns it, as torch's
--- F.relu(x, inplace=True): refused, as every in-place op, on an expanded x; on x with history
--- (a layer's output) recorded as t:relu_() says.
function F.relu(x, inplace)
  check_tensor("relu", x, 1)
  if type(inplace) == "table" then
    for k in pairs(inplace) do
      if k ~= "inplace" then error(string.format("relu: unknown option '%s'", tostring(k)), 2) end
    end
    inplace = inplace.inplace
  end
  if inplace ~= nil and type(inplace) ~= "boolean" then
    error(string.format("relu: inplace must be a boolean, got %s", type(inplace)), 2)
  end
  if not inplace then return x:relu() end
  local ok, r = pcall(x.relu_, x)
  if not ok then error((tostring(r):gsub("^.-relu_: ", "relu: ")), 2) end
  return r
end
--- cnn.F.relu_(x) -> Tensor
--- F.relu(x, true): max(x, 0) written into x, which is returned.
function F.relu_(x) check_tensor("relu_", x, 1); return x:relu_() end
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
  error(string.format('%s: reduction must be "mean", "sum" or "none", got %s', fn, show(r)), 3)
end

--- cnn.F.silu(x) -> Tensor
--- x * sigmoid(x), elementwise (also called swish).
function F.silu(x)
  check_tensor("silu", x, 1)
  return x * x:sigmoid()
end

-- log(1 + u) for u >= 0 to a few float32 ulps without a log1p kernel: with w = 1 + u rounded,
-- log(w) u / (w - 1) cancels w's rounding error (w - 1 is exact); u itself where w rounds to 1.
local function log1p_nonneg(u)
  local w = u + 1
  local wm1 = w - 1
  return core.where(wm1:eq(0), u, w:log() * u / core.where(wm1:eq(0), 1, wm1))
end

-- PyTorch's softplus (ATen's kernels): x where beta x > threshold, else log1p(e^(beta x)) / beta;
-- the gradient is g where beta x > threshold, else g z / (z + 1) with z = e^(beta x) (so a NaN x
-- passes NaN).
local softplus_fn = require("cnn.autograd").Function {
  name = "SoftplusBackward",
  forward = function(ctx, x, beta, threshold)
    ctx.beta, ctx.threshold = beta, threshold
    ctx:save_for_backward(x)
    local bx = x * beta
    local soft = log1p_nonneg(bx:clamp(nil, threshold):exp()) / beta
    return core.where(bx:gt(threshold), x, soft)
  end,
  backward = function(ctx, g)
    local x = ctx.saved[1]
    local bx = x * ctx.beta
    local z = bx:exp()
    return core.where(bx:gt(ctx.threshold), g, g * z / (z + 1))
  end,
}

--- cnn.F.softplus(x, beta=1, threshold=20) -> Tensor
--- log(1 + e^(beta x)) / beta, elementwise; x itself where beta x > threshold, as PyTorch.
function F.softplus(x, beta, threshold)
  check_tensor("softplus", x, 1)
  beta = check_number("softplus", "beta", beta or 1)
  threshold = check_number("softplus", "threshold", threshold or 20)
  if x:dtype() ~= "float32" then x = x:float() end
  return softplus_fn(x, beta, threshold)
end

-- PyTorch's elu (ATen's kernels): alpha (e^x - 1) where x <= 0, else x; the gradient is
-- g alpha e^x where x <= 0, else g, so a NaN x takes the linear branch (gradient g, not NaN).
local elu_fn = require("cnn.autograd").Function {
  name = "EluBackward",
  forward = function(ctx, x, alpha)
    ctx.alpha = alpha
    ctx:save_for_backward(x)
    return core.where(x:le(0), (x:clamp(nil, 0):exp() - 1) * alpha, x)
  end,
  backward = function(ctx, g)
    local x = ctx.saved[1]
    return core.where(x:le(0), g * x:clamp(nil, 0):exp() * ctx.alpha, g)
  end,
}

--- cnn.F.elu(x, alpha=1) -> Tensor
--- x where x > 0, else alpha * (e^x - 1), elementwise.
function F.elu(x, alpha)
  check_tensor("elu", x, 1)
  alpha = check_number("elu", "alpha", alpha or 1)
  if x:dtype() ~= "float32" then x = x:float() end
  return elu_fn(x, alpha)
end

--- cnn.F.hardtanh(x, min_val=-1, max_val=1) -> Tensor
--- x limited to [min_val, max_val], elementwise.
--- The gradient is 1 strictly inside and 0 at and past the bounds, as PyTorch's (t:clamp passes it
--- at the bounds too).
function F.hardtanh(x, lo, hi)
  check_tensor("hardtanh", x, 1)
  lo = check_number("hardtanh", "min_val", lo or -1)
  hi = check_number("hardtanh", "max_val", hi or 1)
  for _, v in ipairs { lo, hi } do -- as PyTorch's, and named here rather than by clamp
    if v ~= math.huge and v ~= -math.huge and math.abs(v) > 3.4028234663852886e38 then
      error(string.format("hardtanh: value %g cannot be converted to type float without overflow", v), 2)
    end
  end
  if lo > hi then error(string.format("hardtanh: min_val %g is above max_val %g", lo, hi), 2) end
  -- ATen's hardtanh_backward: 0 where x <= min_val or x >= max_val, else g (so g at a NaN x);
  -- a NaN bound makes every value NaN (x + NaN keeps that gradient), as PyTorch's
  local inside = (lo ~= lo or hi ~= hi) and x + (0 / 0) or x
  return core.where(x:le(lo):logical_or(x:ge(hi)), x:clamp(lo, hi):detach(), inside)
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
  opts = check_options("l1_loss", opts, loss_keys(), 2)
  check_broadcast("l1_loss", input, target)
  return reduce("l1_loss", (input - target):abs(), opts)
end

-- The elementwise smooth L1 / Huber term of d = input - target with PyTorch's backward formula
-- (ATen's smooth_l1_backward and huber_backward): slope -s where d <= -b, s where d >= b, else
-- d s / b. Written out rather than composed from abs and where, so that a NaN difference passes a
-- NaN gradient (abs's sign(NaN) is 0) and beta = 0 gives -1 at d = 0, as PyTorch's. The target's
-- gradient is that formula at target - input (PyTorch's, which swaps the arguments): the
-- negated input gradient except at d = 0 with beta = 0, where both are -1.
-- x and t have one shape; ctx.b is the threshold (beta or delta), ctx.s the slope scale (1 for
-- smooth L1, delta for Huber).
local function robust_slope(d, b, s)
  local mid = d * (s / b) -- inf or NaN at beta = 0 only where d is 0 or NaN; 0 <= -0 takes -s
  return core.where(d:le(-b), -s, core.where(d:ge(b), s, mid))
end

local robust_fn = require("cnn.autograd").Function {
  name = "SmoothL1Backward",
  forward = function(ctx, x, t, b, s, huber)
    ctx.b, ctx.s = b, s
    ctx:save_for_backward(x, t)
    local d = x - t
    if d:dtype() ~= "float32" then d = d:float() end
    local a = d:abs()
    local q = d:clamp(-b, b) -- the quadratic branch on its own range
    if huber then return core.where(a:le(b), q * q * 0.5, (a - 0.5 * b) * b) end
    if b == 0 then return a end
    return core.where(a:lt(b), q * q * (0.5 / b), a - 0.5 * b)
  end,
  backward = function(ctx, g)
    local x, t, b, s = ctx.saved[1], ctx.saved[2], ctx.b, ctx.s
    local need = ctx.needs_input_grad
    return need[1] and g * robust_slope(x - t, b, s) or nil, need[2] and g * robust_slope(t - x, b, s) or nil
  end,
}

-- input and target broadcast to one shape (their gradients summed back by expand's backward)
local function robust_term(input, target, b, s, huber)
  local si, st = input:size(), target:size()
  local same = #si == #st
  for i = 1, #si do same = same and si[i] == st[i] end
  if not same then
    local sz = (input:detach() - target:detach()):size()
    input, target = input:expand(sz), target:expand(sz)
  end
  return robust_fn(input, target, b, s, huber)
end

--- cnn.F.smooth_l1_loss(input, target, {reduction="mean", beta=1}) -> Tensor
--- 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta, with d = input - target (beta = 0: l1).
--- The gradient is PyTorch's, also at a NaN difference (NaN) and at d = 0 with beta = 0 (-1).
function F.smooth_l1_loss(input, target, opts)
  check_tensor("smooth_l1_loss", input, 1)
  check_tensor("smooth_l1_loss", target, 2)
  opts = check_options("smooth_l1_loss", opts, loss_keys("beta"), 2)
  check_broadcast("smooth_l1_loss", input, target)
  local beta = check_number("smooth_l1_loss", "beta", opts and opts.beta or 1)
  if beta < 0 then error("smooth_l1_loss: beta must be non-negative, got " .. beta, 2) end
  return reduce("smooth_l1_loss", robust_term(input, target, beta, 1, false), opts)
end

--- cnn.F.huber_loss(input, target, {reduction="mean", delta=1}) -> Tensor
--- 0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta), with d = input - target.
--- The gradient is PyTorch's, also at a NaN difference (NaN).
function F.huber_loss(input, target, opts)
  check_tensor("huber_loss", input, 1)
  check_tensor("huber_loss", target, 2)
  opts = check_options("huber_loss", opts, loss_keys("delta"), 2)
  check_broadcast("huber_loss", input, target)
  local delta = check_number("huber_loss", "delta", opts and opts.delta or 1)
  if not (delta > 0) then error("huber_loss: delta must be positive, got " .. show(delta), 2) end
  return reduce("huber_loss", robust_term(input, target, delta, delta, true), opts)
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
  opts = check_options(fn, opts, loss_keys("weight", "pos_weight"), 2)
  check_same_size(fn, input, target)
  local weight, pos_weight = opts and opts.weight, opts and opts.pos_weight
  if weight ~= nil then
    check_tensor(fn, weight, 3)
    check_broadcast(fn, input, weight, "weight")
    check_broadcast(fn, target, weight, "weight")
  end
  if pos_weight ~= nil then
    check_tensor(fn, pos_weight, 3)
    check_broadcast(fn, input, pos_weight, "pos_weight")
    check_broadcast(fn, target, pos_weight, "pos_weight")
  end
  -- softplus(-x) = log(1 + e^-x), one branch for x >= 0 and one for x < 0, each on its own range
  -- (clamped) so the branch not taken stays finite and passes no NaN gradient: the gradient is
  -- PyTorch's lw sigmoid(x) - pos_weight y, also at x = 0 and +-inf
  local xa, xb = input:clamp(0, nil), input:clamp(nil, 0)
  -- PyTorch's value is m + log(e^-m + e^(-x - m)) with m = max(-x, 0): at x = -inf, -x - m is
  -- inf - inf, so the loss is NaN whatever the target; xb - xb is that NaN (0 elsewhere), kept out
  -- of the gradient, which PyTorch's backward formula leaves finite there (sigmoid(x) - y).
  local sp = core.where(input:ge(0), ((-xa):exp() + 1):log(), (xb:exp() + 1):log() - xb + (xb - xb):detach())
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

-- ---- issue 14, second part: more everyday ops composed from tensor ops --------------------------

local autograd = require "cnn.autograd"
local core_gelu = core.F.gelu

--- cnn.F.gelu(x, {approximate="none"}) -> Tensor
--- x * Phi(x), elementwise, Phi being the standard normal CDF.
--- PyTorch's float32 formula x/2 (1 + erf(x / sqrt 2)) (0 below x ~ -5.9, where 1 + erf rounds
--- to 0) and its backward; approximate="tanh" is 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
function F.gelu(x, opts)
  check_tensor("gelu", x, 1)
  opts = check_options("gelu", opts, {approximate = true}, 2)
  local approx = opts and opts.approximate or "none"
  if approx ~= "none" and approx ~= "tanh" then
    error(string.format('gelu: approximate must be "none" or "tanh", got %s', show(approx)), 2)
  end
  if x:dtype() ~= "float32" then x = x:float() end
  return core_gelu(x, approx == "tanh")
end

-- dim d of x, 1-based or negative from the end; a 0-d x takes 1 or -1, as PyTorch's 0 or -1
local function check_dim(fn, x, d)
  local n = math.max(x:dim(), 1)
  if math.type(d) ~= "integer" or d == 0 or d > n or d < -n then
    error(string.format("%s: dim must be a nonzero integer within -%d..%d, got %s", fn, n, n, show(d)), 3)
  end
  return d
end

--- cnn.F.logsumexp(x, dim, keepdim=false) -> Tensor
--- log(sum(exp(x))) over dimension dim (1-based), computed stably.
--- The maximum is taken out first; the same as x:logsumexp(dim, keepdim).
function F.logsumexp(x, dim, keepdim)
  check_tensor("logsumexp", x, 1)
  dim = check_dim("logsumexp", x, dim)
  if keepdim ~= nil and type(keepdim) ~= "boolean" then -- 0 and "x" kept the dim (as true)
    error("logsumexp: keepdim must be a boolean, got " .. show(keepdim), 2)
  end
  if x:dtype() ~= "float32" then x = x:float() end -- bool and int64 too, as PyTorch's (a float result)
  if x:dim() > 0 and x:size(dim) == 0 then -- the log of an empty sum: -inf, as PyTorch (max refuses)
    local r = x:sum(dim, true):log()
    if not keepdim then r = r:squeeze(dim) end
    return r
  end
  local m = x:max(dim, true):detach()
  m = m:masked_fill(m:isinf(), 0) -- all -inf (or an inf) along dim: no shift
  local r = (x - m):exp():sum(dim, true):log() + m
  if keepdim then return r end
  local full <close> = r -- closed on return, the squeezed view the memory's only user (see topk)
  return full:squeeze(dim)
end

-- t:name(...) as F.name(t, ...), with at most nargs arguments (t included) and F's errors at the
-- method's caller: a tail call to F.name left its error(msg, 2) no frame to point at (no position),
-- and a plain call would point into this file. Called in tail position by the method, so level 2
-- is the method's caller.
local function as_method(name, nargs, ...)
  local n = select("#", ...)
  if n > nargs then error(string.format("%s: takes %d arguments, got %d", name, nargs, n), 2) end
  local r = table.pack(pcall(F[name], ...))
  if not r[1] then error((tostring(r[2]):gsub("^[^\n]-F%.lua:%d+: ", "", 1)), 2) end
  return table.unpack(r, 2, r.n)
end

--- t:logsumexp(dim, keepdim=false) -> Tensor
--- log(sum(exp(t))) over dimension dim (1-based), computed stably (F.logsumexp).
function core.Tensor.logsumexp(...) return as_method("logsumexp", 3, ...) end

-- rsqrt(x) = 1 / sqrt(x) (-inf at -0) with PyTorch's gradient -0.5 g r^3 from the result r (r^3
-- overflows to inf where r passes 7e12, as PyTorch's does)
local rsqrt_fn = autograd.Function {
  name = "RsqrtBackward",
  forward = function(ctx, x)
    local r = 1 / x:sqrt()
    ctx:save_for_backward(r)
    return r
  end,
  backward = function(ctx, g) return (g * -0.5) * ctx.saved[1]:pow(3) end,
}

--- t:rsqrt() -> Tensor
--- 1 / sqrt(t), elementwise (inf at 0, NaN below).
function core.Tensor.rsqrt(t, ...)
  check_tensor("rsqrt", t, 1)
  if select("#", ...) > 0 then error(string.format("rsqrt: takes 1 argument, got %d", 1 + select("#", ...)), 2) end
  if t:dtype() ~= "float32" then t = t:float() end
  return rsqrt_fn(t)
end

--- t:softmax(dim) -> Tensor
--- Softmax along dimension dim, 1-based (F.softmax).
function core.Tensor.softmax(...) return as_method("softmax", 3, ...) end

--- t:log_softmax(dim) -> Tensor
--- log(softmax(t)) along dimension dim, 1-based (F.log_softmax).
function core.Tensor.log_softmax(...) return as_method("log_softmax", 3, ...) end

-- Layer and group norm on x viewed as (B, G, Cg, K): statistics per (b, g) over Cg x K (biased
-- variance), gamma and beta (1, G, Cg, 1) or nil. The value and the gradients are ATen's CPU
-- formulas (layer_norm_kernel.cpp, group_norm_kernel.cpp), so that infinite or NaN inputs and
-- weights give PyTorch's infinities and NaNs: rstd = 1 / sqrt(max(var, 0) + eps); layer norm
-- (x rstd - rstd mean) gamma + beta, group norm x s + (beta - s mean) with s = rstd gamma;
-- dx = rstd gamma dy + c2 x + c3 with ds = sum(gamma dy x), db = sum(gamma dy),
-- c2 = (db mean - ds) rstd^3 / n, c3 = -c2 mean - db rstd / n.
local norm_fn = require("cnn.autograd").Function {
  name = "NativeNormBackward",
  forward = function(ctx, x, gamma, beta, eps, layer)
    local b, g = x:size(1), x:size(2)
    local flat = x:reshape({b, g, x:size(3) * x:size(4)}) -- not -1: no size is inferred from 0 elements
    -- the mean shifted by each row's first value, so that a constant row's mean is that value
    -- exactly (a float32 sum of n copies rounds), as ATen's Welford moments give it
    local mean
    if flat:size(3) > 0 then
      local first = flat:narrow(3, 1, 1)
      mean = ((flat - first):mean(-1, true) + first):reshape({b, g, 1, 1})
    else
      mean = flat:mean(-1, true):reshape({b, g, 1, 1})
    end
    local var = flat:var(-1, true, {unbiased = false}):reshape({b, g, 1, 1})
    local rstd = 1 / (var:clamp(0, nil) + eps):sqrt()
    ctx.has_gamma, ctx.has_beta, ctx.layer = gamma ~= nil, beta ~= nil, layer
    ctx.n = flat:size(3)
    ctx:save_for_backward(x, mean, rstd, gamma)
    -- ATen's x s + (beta - s mean) cancels when s is large (a variance below eps: s up to
    -- gamma / sqrt(eps)); the centred (x - mean) s + beta is the same value without the
    -- cancellation, taken wherever ATen's is finite (its infinities and NaNs are kept)
    local y, centred
    if layer then
      y = x * rstd + (-rstd * mean)
      centred = (x - mean) * rstd
      if gamma ~= nil then y, centred = y * gamma, centred * gamma end
      if beta ~= nil then y, centred = y + beta, centred + beta end
    else
      local sc = gamma ~= nil and rstd * gamma or rstd
      local bias = -sc * mean
      if beta ~= nil then bias = bias + beta end
      y = x * sc + bias
      centred = (x - mean) * sc
      if beta ~= nil then centred = centred + beta end
    end
    return core.where(y:isnan():logical_or(y:isinf()), y, centred)
  end,
  backward = function(ctx, dy)
    local x, mean, rstd, gamma = ctx.saved[1], ctx.saved[2], ctx.saved[3], ctx.saved[4]
    local need = ctx.needs_input_grad
    local dyx = (dy * x):sum(4, true)
    local dys = dy:sum(4, true)
    local ds = (gamma and dyx * gamma or dyx):sum(3, true)
    local db = (gamma and dys * gamma or dys):sum(3, true)
    local s = 1 / ctx.n
    local c2 = (db * mean - ds) * rstd * rstd * rstd * s
    local c3 = -c2 * mean - db * rstd * s
    local c1 = gamma and rstd * gamma or rstd
    local gx = false
    if need[1] then
      -- ATen's c2 x + c3 cancels in float32 when rstd is large; the centred form
      -- rstd (gdy - mean(gdy) - xhat mean(gdy xhat)) is the same gradient without the cancellation,
      -- taken wherever ATen's is finite (its infinities and NaNs are kept as they are)
      local ref = c1 * dy + c2 * x + c3
      local gdy = gamma and dy * gamma or dy
      local function avg(t) return t:sum(4, true):sum(3, true) * s end
      -- x - mean re-centred: the float32 mean's rounding (an ulp of the values) would shift every
      -- xhat alike, and where the spread is small next to the values that shift is 1e-6 of xhat,
      -- amplified by the cancellation below (a layer of two close values: 7e-4 of the gradient)
      local xc = x - mean
      local xhat = (xc - avg(xc)) * rstd
      local stable = (gdy - avg(gdy) - xhat * avg(gdy * xhat)) * rstd
      gx = core.where(ref:isnan():logical_or(ref:isinf()), ref, stable)
    end
    local out = {gx}
    if ctx.has_gamma then
      local gg = false
      if need[#out + 1] then
        if ctx.layer then
          gg = (dy * (x * rstd + (-rstd * mean))):sum(1, true):sum(4, true)
        else
          -- ATen's (ds - db mean) rstd cancels (a constant group: noise of an ulp of ds times rstd,
          -- up to 1/sqrt(eps)); the centred sum(dy (x - mean)) rstd, wherever ATen's is finite
          local ref = ((dyx - dys * mean) * rstd):sum(1, true)
          local centred = ((dy * (x - mean)):sum(4, true) * rstd):sum(1, true)
          gg = core.where(ref:isnan():logical_or(ref:isinf()), ref, centred)
        end
      end
      out[#out + 1] = gg
    end
    if ctx.has_beta then out[#out + 1] = need[#out + 1] and dys:sum(1, true) or false end
    for i = 1, #out do if out[i] == false then out[i] = nil end end
    return table.unpack(out, 1, ctx.has_gamma and (ctx.has_beta and 3 or 2) or (ctx.has_beta and 2 or 1))
  end,
}

local function as_float(t) return (t ~= nil and t:dtype() ~= "float32") and t:float() or t end

-- A norm's weight or bias (argument i): nil, or a float32 tensor of exactly `shape`, as PyTorch's
-- (a weight of the right size but another shape was taken, and a wrong size failed in a reshape).
local function check_affine(fn, what, t, i, shape)
  if t == nil then return end
  check_tensor(fn, t, i)
  if t:dtype() ~= "float32" then
    error(string.format("%s: %s must be a float32 tensor, got %s", fn, what, t:dtype()), 3)
  end
  local got, same = t:size(), t:dim() == #shape
  for d = 1, #shape do same = same and got[d] == shape[d] end
  if not same then
    error(string.format("%s: %s should have shape {%s}, got {%s}", fn, what, table.concat(shape, ", "),
      table.concat(got, ", ")), 3)
  end
end

--- cnn.F.layer_norm(x, normalized_shape, weight=nil, bias=nil, eps=1e-5) -> Tensor
--- x normalised over its trailing dimensions normalized_shape to zero mean and unit variance.
--- normalized_shape is a size or a list of sizes, x's last ones; the variance is biased. The result
--- is then scaled by weight and shifted by bias (each of shape normalized_shape) when given.
function F.layer_norm(x, shape, weight, bias, eps)
  check_tensor("layer_norm", x, 1)
  if type(shape) == "number" then shape = {shape} end
  if type(shape) ~= "table" or #shape == 0 then
    error("layer_norm: normalized_shape must be a size or a non-empty list of sizes", 2)
  end
  local k, nd = #shape, x:dim()
  local ok = k <= nd
  for i = 1, k do ok = ok and x:size(nd - k + i) == shape[i] end
  if not ok then
    error(string.format("layer_norm: normalized_shape {%s} is not the trailing shape of the input {%s}",
      table.concat(shape, ", "), table.concat(x:size(), ", ")), 2)
  end
  check_affine("layer_norm", "weight", weight, 3, shape)
  check_affine("layer_norm", "bias", bias, 4, shape)
  eps = check_number("layer_norm", "eps", eps or 1e-5)
  local n = 1
  for i = 1, k do n = n * shape[i] end
  local m = x:numel() // math.max(n, 1)
  if n == 0 then m = 1; for i = 1, nd - k do m = m * x:size(i) end end
  local g = weight ~= nil and weight:reshape({1, 1, n, 1}) or nil
  local b = bias ~= nil and bias:reshape({1, 1, n, 1}) or nil
  local y <close> = norm_fn(as_float(x):reshape({m, 1, n, 1}), g, b, eps, true) -- closed: see topk
  return y:reshape(x:size())
end

--- cnn.F.group_norm(x, num_groups, weight=nil, bias=nil, eps=1e-5) -> Tensor
--- x (N, C, ...) normalised within each group of C/num_groups channels to zero mean, unit variance.
--- Each group's statistics cover its channels at all positions (the variance is biased); the
--- result is then scaled by weight and shifted by bias (each (C)) when given.
function F.group_norm(x, groups, weight, bias, eps)
  check_tensor("group_norm", x, 1)
  if x:dim() < 2 then
    error("group_norm: expected an input of at least 2 dims (N, C, ...), got " .. x:dim() .. "-d", 2)
  end
  local c = x:size(2)
  if math.type(groups) ~= "integer" or groups < 1 or c % groups ~= 0 then
    error(string.format("group_norm: num_groups must be a positive integer dividing the %d channels, got %s", c,
      show(groups)), 2)
  end
  check_affine("group_norm", "weight", weight, 3, {c})
  check_affine("group_norm", "bias", bias, 4, {c})
  eps = check_number("group_norm", "eps", eps or 1e-5)
  if x:numel() // groups == 1 then -- PyTorch's check: one value in each group's statistics
    error(string.format("group_norm: expected more than 1 value per group, got input size {%s}",
      table.concat(x:size(), ", ")), 2)
  end
  local cg, rest = c // groups, 1
  for d = 3, x:dim() do rest = rest * x:size(d) end -- not -1: no size is inferred from 0 elements
  local g = weight ~= nil and weight:reshape({1, groups, cg, 1}) or nil
  local b = bias ~= nil and bias:reshape({1, groups, cg, 1}) or nil
  local y <close> = norm_fn(as_float(x):reshape({x:size(1), groups, cg, rest}), g, b, eps, false) -- see topk
  return y:reshape(x:size())
end

--- cnn.F.one_hot(labels, num_classes=labels:max()) -> Tensor
--- int64 labels in 1..num_classes (1-based, as cnn's class labels) to int64 one-hot rows.
--- The result has labels' shape plus a last dimension of num_classes, with a 1 at each label.
function F.one_hot(labels, num_classes)
  check_tensor("one_hot", labels, 1)
  if labels:dtype() ~= "int64" then error("one_hot: labels must be an int64 tensor, got " .. labels:dtype(), 2) end
  local lo = labels:numel() > 0 and labels:min():item() or 1
  local hi = labels:numel() > 0 and labels:max():item() or 0
  if num_classes == nil then num_classes = hi end
  if math.type(num_classes) ~= "integer" or num_classes < 1 then
    error("one_hot: num_classes must be a positive integer, got " .. show(num_classes), 2)
  end
  if lo < 1 or hi > num_classes then
    error(string.format("one_hot: labels must be within 1..%d, got %d..%d", num_classes, lo, hi), 2)
  end
  if labels:dim() >= 16 then
    error("one_hot: labels have 16 dimensions; the result adds one, past the limit of 16", 2)
  end
  if num_classes > 2 ^ 48 or math.max(labels:numel(), 1) * num_classes > 2 ^ 48 then
    error(string.format("one_hot: a result of %d x %d elements is too large", labels:numel(), num_classes), 2)
  end
  return labels:unsqueeze(-1):eq(core.arange(1, num_classes + 1)):long()
end

-- PyTorch's binary_cross_entropy, forward and backward as its kernel: the logs clamped at -100,
-- the input gradient w (x - y) / max(x (1 - x), 1e-12).
local bce = autograd.Function {
  name = "BinaryCrossEntropyBackward",
  forward = function(ctx, x, y)
    local lx, l1x = x:log():clamp(-100, nil), (1 - x):log():clamp(-100, nil)
    ctx:save_for_backward(x, y, lx, l1x)
    return -(y * lx + (1 - y) * l1x)
  end,
  backward = function(ctx, g)
    local x, y, lx, l1x = table.unpack(ctx.saved)
    local gx = ctx.needs_input_grad[1] and g * (x - y) / (x * (1 - x)):clamp(1e-12, nil) or nil
    local gy = ctx.needs_input_grad[2] and g * (l1x - lx) or nil
    return gx, gy
  end,
}

--- cnn.F.binary_cross_entropy(input, target, {reduction="mean", weight=}) -> Tensor
--- Binary cross-entropy of probabilities: -w (y log x + (1 - y) log(1 - x)), as PyTorch's.
--- input and target have the same shape, input within [0, 1] (an error otherwise); each log is
--- clamped at -100, and weight (broadcast to the loss) scales each term.
function F.binary_cross_entropy(input, target, opts)
  local fn = "binary_cross_entropy"
  check_tensor(fn, input, 1)
  check_tensor(fn, target, 2)
  opts = check_options(fn, opts, loss_keys("weight"), 2)
  local weight = opts and opts.weight
  if weight ~= nil then
    check_tensor(fn, weight, 3)
    check_broadcast(fn, input, weight, "weight")
  end
  check_same_size(fn, input, target)
  if input:dtype() ~= "float32" then input = input:float() end
  if target:dtype() ~= "float32" then target = target:float() end
  if input:numel() > 0 and (input:lt(0):logical_or(input:gt(1)):any():item() or input:isnan():any():item()) then
    error(fn .. ": all elements of input must be between 0 and 1", 2)
  end
  local l = bce(input, target)
  if weight ~= nil then l = l * weight end
  return reduce(fn, l, opts)
end

--- cnn.F.kl_div(input, target, {reduction="mean", log_target=false}) -> Tensor
--- The Kullback-Leibler divergence terms target (log target - input) of log-probabilities input.
--- A target of 0 contributes 0 and a negative one NaN (PyTorch's xlogy); log_target=true takes
--- target as log-probabilities too (e^target (target - input)). reduction "batchmean" divides the
--- sum by the size of dim 1 (the KL divergence proper), "mean" by the number of elements, as PyTorch.
function F.kl_div(input, target, opts)
  local fn = "kl_div"
  check_tensor(fn, input, 1)
  check_tensor(fn, target, 2)
  opts = check_options(fn, opts, loss_keys("log_target"), 2)
  check_broadcast(fn, input, target)
  local log_target = opts and opts.log_target or false
  if type(log_target) ~= "boolean" then error(fn .. ": log_target must be a boolean", 2) end
  local l
  if log_target then
    l = target:exp() * (target - input)
  else
    -- xlogy(target, target) as PyTorch's: 0 at 0, NaN for a negative or NaN target (the inner
    -- where keeps log(0)'s -inf out of the gradient)
    local zero = target:eq(0)
    l = core.where(zero, 0, target * core.where(zero, 1, target):log()) - target * input
  end
  if opts and opts.reduction == "batchmean" then
    local n = input:dim() > 0 and input:size(1) or 1
    return l:sum() / n
  end
  return reduce(fn, l, opts)
end

-- The 1-based source positions of a dimension of size n padded by before and after (either may be
-- negative: cropping) in a non-constant mode: reflect (mirror without repeating the edge),
-- replicate (the edge repeated) or circular (wrapping around).
local function pad_positions(n, before, after, mode)
  local idx = {}
  for j = 1, n + before + after do
    local p = j - 1 - before -- 0-based position in the input
    if mode == "reflect" then
      if p < 0 then p = -p elseif p >= n then p = 2 * (n - 1) - p end
    elseif mode == "replicate" then
      p = math.max(0, math.min(n - 1, p))
    else -- PyTorch crops first, then wraps around what is left (m elements from lo)
      local lo, m = math.max(-before, 0), n - math.max(-before, 0) - math.max(-after, 0)
      p = lo + (j - 1 - math.max(before, 0)) % m
    end
    idx[j] = p + 1
  end
  return idx
end

-- F.pad in the modes that copy values of x (index_select along each padded dim: its backward adds
-- the gradient of every copy back to its source element). PyTorch 1.13's rules: reflect and
-- replicate pad the last 1 to 3 dims of an input with one or two more dims (a batch and a channel
-- dim, or only a channel dim) whose non-batch dims are not empty (but the channel dim of an
-- unbatched 1-d or 2-d reflect), reflect by less than each size;
-- circular pads the last ndim - 2 dims, by at most each size.
local function pad_copying(x, pad, mode, value)
  local k, nd = #pad // 2, x:dim()
  if value ~= nil then error(string.format('pad: mode "%s" takes no value', mode), 3) end
  if mode == "circular" then
    if k ~= nd - 2 or k < 1 or k > 3 then
      error(string.format('pad: mode "circular" pads the last ndim - 2 dims of a 3-d to 5-d input ' ..
        '(%d pad sizes expected for a %d-d input, got %d)', math.max(2 * (nd - 2), 0), nd, #pad), 3)
    end
  elseif k < 1 or k > 3 or (nd ~= k + 1 and nd ~= k + 2) then
    error(string.format('pad: mode "%s" pads the last 1 to 3 dims of an input with 1 or 2 more dims ' ..
      '(got %d pad sizes for a %d-d input)', mode, #pad, nd), 3)
  else
    -- the batch dim may be empty, and so may the channel dim of an unbatched 1-d or 2-d reflect
    -- (PyTorch 1.13's reflection_pad1d/2d checks; replicate and reflection_pad3d refuse it)
    local first = (nd == k + 2 or (mode == "reflect" and k <= 2)) and 2 or 1
    for d = first, nd do
      if x:size(d) == 0 then
        error(string.format('pad: mode "%s" needs non-empty dims (but the batch dim), dim %d has size 0', mode, d), 3)
      end
    end
  end
  local y, empty = x, true
  for j = 1, k do
    local d = nd - j + 1
    local n, before, after = x:size(d), pad[2 * j - 1], pad[2 * j]
    if mode == "reflect" and (before >= n or after >= n) then
      error(string.format("pad: reflect padding (%d, %d) at dim %d must be less than its size %d", before, after, d,
        n), 3)
    end
    local m = n - math.max(-before, 0) - math.max(-after, 0) -- what is left after cropping
    if mode == "circular" and (before > m or after > m) then
      error(string.format("pad: circular padding (%d, %d) at dim %d wraps around more than once (size %d%s)", before,
        after, d, n, m < n and string.format(", %d after cropping", m) or ""), 3)
    end
    if n + before + after < 0 then
      error(string.format("pad: padding (%d, %d) leaves dim %d of size %d with a negative size", before, after, d,
        n), 3)
    end
    if n + before + after > 0 then empty = false end
    y = y:index_select(d, core.tensor(pad_positions(n, before, after, mode), {dtype = "int64"}))
  end
  -- PyTorch's reflect and replicate kernels refuse only when every padded dim comes out empty
  if empty and mode ~= "circular" then
    error(string.format('pad: mode "%s" leaves every padded dim empty', mode), 3)
  end
  return y
end

--- cnn.F.pad(x, pad, mode="constant", value=0) -> Tensor
--- x padded on the sides of its last dimensions, as PyTorch's F.pad.
--- pad lists {before, after} pairs from the last dimension backwards ({left, right, top, bottom}
--- pads the last two); negative sizes crop. mode "constant" fills with value; "reflect" mirrors
--- x without repeating its edge (padding less than the size), "replicate" repeats the edge, both
--- on the last 1 to 3 dims of an input with 1 or 2 more dims; "circular" wraps around (padding at
--- most the size) on the last ndim - 2 dims. Differentiable.
function F.pad(x, pad, mode, value)
  check_tensor("pad", x, 1)
  if type(pad) ~= "table" or #pad % 2 ~= 0 or #pad // 2 > x:dim() then
    error("pad: pad must be a list of {before, after} pairs, at most one pair per dimension", 2)
  end
  for i = 1, #pad do
    if math.type(pad[i]) ~= "integer" then error("pad: pad sizes must be integers, got " .. show(pad[i]), 2) end
    -- the one integer whose negation (a crop's size) wraps around to itself
    if pad[i] == math.mininteger then error("pad: pad size " .. pad[i] .. " is out of range", 2) end
  end
  mode = mode or "constant"
  if mode == "reflect" or mode == "replicate" or mode == "circular" then
    local y = pad_copying(x, pad, mode, value) -- not a tail call: its errors name our caller's line
    return y
  end
  if mode ~= "constant" then
    error('pad: mode must be "constant", "reflect", "replicate" or "circular", got ' .. show(mode), 2)
  end
  value = check_number("pad", "value", value or 0)
  local fits, why = pcall(core.full, {}, value, {dtype = x:dtype()}) -- NaN into int64, 300 into uint8
  if not fits then error("pad: " .. tostring(why):gsub("^full: ", ""), 2) end
  -- as PyTorch's constant_pad_nd: with any positive size, every padded dim must keep at least 1
  local grows = false
  for i = 1, #pad do grows = grows or pad[i] > 0 end
  for k = 1, grows and #pad // 2 or 0 do
    local d = x:dim() - k + 1
    if x:size(d) + pad[2 * k - 1] + pad[2 * k] < 1 then
      error(string.format("pad: the input size %d plus padding (%d, %d) at dim %d leaves no element", x:size(d),
        pad[2 * k - 1], pad[2 * k], d), 2)
    end
  end
  local y, copied = x, false -- copied: y is new memory (a cat), not x or a view of it (a crop)
  for k = 1, #pad // 2 do
    local d = x:dim() - k + 1
    local before, after = pad[2 * k - 1], pad[2 * k]
    if before < 0 or after < 0 then
      local lo, hi = math.max(-before, 0), math.max(-after, 0)
      local len = y:size(d) - lo - hi
      if len < 0 then error("pad: cropping more than the size of dimension " .. d, 2) end
      y = y:narrow(d, lo + 1, len)
    end
    local parts = {}
    local function fill(n)
      local s = y:size()
      s[d] = n
      parts[#parts + 1] = core.full(s, value, {dtype = y:dtype()})
    end
    if before > 0 then fill(before) end
    parts[#parts + 1] = y
    if after > 0 then fill(after) end
    if #parts > 1 then y, copied = core.cat(parts, d), true end
  end
  return copied and y or y:clone() -- never x's memory: a crop alone was a view, written through to x
end

--- t:argsort(dim=-1, descending=false) -> Tensor
--- The 1-based int64 indices that sort t along dim (the second result of t:sort).
function core.Tensor.argsort(t, dim, descending)
  local ok, v, idx = pcall(core.Tensor.sort, t, dim, descending)
  if not ok then -- sort's message, under this function's name and at our caller's line
    error((tostring(v):gsub("^.-:%d+: ", "", 1):gsub("^sort:", "argsort:", 1)), 2)
  end
  return idx
end

--- t:topk(k, dim=-1, largest=true, sorted=true) -> Tensor, Tensor
--- The k largest (or smallest) values of t along dim, in order, and their 1-based int64 indices.
--- They come sorted whatever `sorted` says (PyTorch leaves the order unspecified then).
function core.Tensor.topk(t, k, dim, largest, sorted, ...)
  check_tensor("topk", t, 1)
  if select("#", ...) > 0 then error(string.format("topk: takes 5 arguments, got %d", 5 + select("#", ...)), 2) end
  if largest == nil then largest = true end
  if type(largest) ~= "boolean" then error("topk: largest must be a boolean, got " .. show(largest), 2) end
  if sorted ~= nil and type(sorted) ~= "boolean" then error("topk: sorted must be a boolean", 2) end
  local d = dim or -1
  local n = t:dim() == 0 and check_dim("topk", t, d) and 1 or t:size(check_dim("topk", t, d))
  if math.type(k) ~= "integer" or k < 0 or k > n then
    error(string.format("topk: k must be an integer within 0..%d, got %s", n, show(k)), 2)
  end
  if t:dim() == 0 then return core.Tensor.sort(t, d, largest) end
  -- the positions by a bounded heap (a full sort of a 1e6 row for k = 1 took 15x PyTorch's
  -- time), the values gathered from them: differentiable, and not views
  local order = core.Tensor._topk(t, k, d, largest)
  return t:gather(d, order), order
end

return F
