-- The ops composed in Lua beyond the activations and losses: F.gelu (exact and tanh),
-- F.logsumexp / t:logsumexp, t:rsqrt, t:softmax / t:log_softmax, F.layer_norm, F.group_norm,
-- F.binary_cross_entropy, F.kl_div, t:cumsum, F.pad:
-- values and input gradients against PyTorch's (tests/fixtures/norm_misc.lua, written by
-- scripts/tools/gen_norm_misc_fixtures.py). Then F.one_hot, the nn modules over the composed ops
-- and nn.utils' gradient clipping, and bad arguments.
local cnn = require "cnn"
local H = require "tests.lua.helpers"
local F, nn = cnn.F, cnn.nn

local FIX = dofile("tests/fixtures/norm_misc.lua")

local function near(a, b, tol)
  assert(math.abs(a - b) <= tol * math.max(1, math.abs(b)), string.format("expected %.9g, got %.9g", b, a))
end

describe("composed norms and everyday ops", function()
  for _, c in ipairs(FIX.cases) do
    it(c.name .. " matches PyTorch, value and gradient: " .. c.lua, function()
      local x = cnn.tensor(c.x):requires_grad_()
      local env = setmetatable({x = x, F = F, cnn = cnn, lw = cnn.tensor(FIX.lw), lb = cnn.tensor(FIX.lb),
        pt = cnn.tensor(FIX.pt),
        gw = cnn.tensor(FIX.gw), gb = cnn.tensor(FIX.gb)}, {__index = _G})
      local y = assert(load("return " .. c.lua, c.name, "t", env))()
      H.assert_tensor(y, c.out, {rtol = c.rtol or 1e-5, atol = c.atol or 1e-5})
      local l = (y * cnn.tensor(c.w)):sum()
      l:backward()
      H.assert_tensor(x.grad, c.grad, {rtol = c.rtol or 1e-4, atol = c.atol or 1e-5})
    end)
  end

  it("logsumexp of -inf rows is -inf, with finite rows beside them", function()
    local x = cnn.tensor {{0, 1, -math.huge}, {-math.huge, -math.huge, -math.huge}}
    local y = x:logsumexp(2):totable()
    near(y[1], math.log(1 + math.exp(1)), 1e-6)
    assert.equal(-math.huge, y[2])
  end)

  -- ATen's formulas, hand-worked. layer_norm of {-1, 1} (mean 0, rstd 1 at eps 0) with weight
  -- {1, inf}: y = {-1, inf}; backward ds = sum(gamma dy x) = inf and db*mean = inf*0 = NaN, so the
  -- input gradient is NaN everywhere; the weight's is dy x rstd = {-1, 1}. group_norm of {-1, 1, 3, 5}
  -- (mean 2, rstd 1/sqrt 5) with weight {-inf, 1}, bias 0.5: channel 1 is x s + (0.5 - s 2) with
  -- s = -inf, so {inf, -inf + inf = NaN}; channel 2 (x - 2)/sqrt 5 + 0.5. A constant group gives
  -- exactly its bias (its mean is the value itself, not a rounded float32 sum).
  it("layer_norm and group_norm of no elements give empty results, as PyTorch's", function()
    -- group_norm reshaped to (N, G, Cg, -1), which 0 elements cannot infer (the fourth fuzzing round)
    local x = cnn.randn(0, 4, 3):requires_grad_()
    local w = cnn.ones(4):requires_grad_()
    local y = F.group_norm(x, 2, w, cnn.zeros(4))
    assert.are.same({0, 4, 3}, y:shape())
    y:sum():backward()
    assert.are.same({0, 4, 3}, x.grad:shape())
    H.assert_tensor(w.grad, {0, 0, 0, 0})
    assert.are.same({2, 0, 3}, F.group_norm(cnn.randn(2, 0, 3), 1):shape())
    assert.are.same({0, 3}, F.layer_norm(cnn.randn(0, 3), 3, cnn.ones(3), cnn.zeros(3)):shape())
  end)

  it("layer_norm and group_norm give PyTorch's inf and NaN with infinite weights", function()
    local inf, nan = math.huge, 0 / 0
    local function same(t, want)
      local got = H.values(t)
      assert.are.equal(#want, #got)
      for i = 1, #want do
        local ok = (want[i] ~= want[i]) and got[i] ~= got[i] or got[i] == want[i] or H.close(got[i], want[i], 1e-6, 0)
        assert(ok, string.format("element %d is %.9g but expected %.9g", i, got[i], want[i]))
      end
    end
    local x = cnn.tensor({{-1, 1}}):requires_grad_()
    local w = cnn.tensor({1, inf}):requires_grad_()
    local y = F.layer_norm(x, {2}, w, nil, 0)
    y:sum():backward()
    same(y, {-1, inf})
    same(x.grad, {nan, nan})
    same(w.grad, {-1, 1})
    y = F.group_norm(cnn.tensor({{{-1, 1}, {3, 5}}}), 1, cnn.tensor({-inf, 1}), cnn.tensor({0.5, 0.5}), 0)
    same(y, {inf, nan, 1 / math.sqrt(5) + 0.5, 3 / math.sqrt(5) + 0.5})
    y = F.group_norm(cnn.full({1, 2, 3}, 0.3), 1, cnn.tensor({2, 3}), cnn.tensor({0.5, -1}), 1e-2)
    same(y, {0.5, 0.5, 0.5, -1, -1, -1})
  end)

  -- Hand-worked in double. A group of one value is its mean: y = beta exactly. A group {3 - d, 3 + d}
  -- with d = 2^-10 (exact in float32) has mean 3, var d^2, rstd = 1 / sqrt(d^2 + eps) ~ 302, so
  -- y = -+d rstd gamma + beta; ATen's x s + (beta - s mean) rounds x s ~ 906 to an ulp of 6e-5
  -- (1e-4 of y), the centred (x - mean) s + beta does not.
  it("layer_norm and group_norm keep their precision when the variance is below eps", function()
    local beta = cnn.tensor({0.3867004, 0.22433724})
    local y = F.group_norm(cnn.tensor({{2.349942, 0.703798}, {1.825878, 2.463561}}), 2, cnn.tensor({1, -0.5}), beta)
    local b = H.values(beta)
    assert.same({b[1], b[2], b[1], b[2]}, H.values(y))
    local d, eps = 2 ^ -10, 1e-5
    local r = 1 / math.sqrt(d * d + eps)
    local x = cnn.tensor({{{3 - d, 3 + d}, {3 + d, 3 - d}}})
    y = F.group_norm(x, 2, cnn.tensor({0.75, 1.5}), cnn.tensor({0.25, -0.5}))
    H.assert_tensor(y, {{{-d * r * 0.75 + 0.25, d * r * 0.75 + 0.25}, {d * r * 1.5 - 0.5, -d * r * 1.5 - 0.5}}},
      {rtol = 2e-6, atol = 0})
    y = F.layer_norm(x, 2, cnn.tensor({0.75, 1.5}), cnn.tensor({0.25, -0.5}))
    H.assert_tensor(y, {{{-d * r * 0.75 + 0.25, d * r * 1.5 - 0.5}, {d * r * 0.75 + 0.25, -d * r * 1.5 - 0.5}}},
      {rtol = 2e-6, atol = 0})
  end)

  -- Hand-worked in double: layer_norm over the pair {x1, x2} has d = (x2 - x1) / 2, rstd =
  -- 1 / sqrt(d^2 + eps), a = d rstd and, for y weighted by {1, -0.5}, dx1 = -dx2 = rstd 0.75 (1 - a^2):
  -- 1 - a^2 = 0.0036 cancels, so the float32 mean's rounding (1e-6 of a when it shifts x - mean)
  -- must not reach it (it gave 7e-4 of the gradient; PyTorch's is within 1e-4)
  it("layer_norm's input gradient keeps its precision for two close values (oracle seed 3)", function()
    local x1, x2 = 1.31072998046875, 1.4153028726577759 -- both float32
    local x = cnn.tensor({ { x1, x2 } }):requires_grad_()
    local y = F.layer_norm(x, 2)
    y:backward(cnn.tensor({ { 1, -0.5 } }))
    local d = (x2 - x1) / 2
    local r = 1 / math.sqrt(d * d + 1e-5)
    local a = d * r
    local g = r * 0.75 * (1 - a * a)
    H.assert_tensor(x.grad, { { g, -g } }, { rtol = 1e-4, atol = 0 })
  end)

  -- rsqrt(7.1e-27) = 1.19e13, whose cube 1.7e39 overflows float32: PyTorch's gradient
  -- -0.5 g r^3 is then inf for g = -0.125 (the true value, 1.04e38, is finite)
  it("rsqrt's gradient is PyTorch's -0.5 g r^3 from the result", function()
    local x = cnn.tensor({ 7.102104714869058e-27, 4 }):requires_grad_()
    local y = x:rsqrt()
    H.assert_tensor(y, { 1 / math.sqrt(7.102104714869058e-27), 0.5 }, { rtol = 1e-6 })
    y:backward(cnn.tensor({ -0.125, 1 }))
    assert.are.same({ math.huge, -0.5 * 0.125 }, x.grad:totable())
  end)

  -- A constant group: x - mean is 0, so gamma's gradient sum(dy (x - mean)) rstd is exactly 0 (ATen's
  -- (sum(dy x) - sum(dy) mean) rstd leaves the rounding of the sums times rstd = 1/sqrt(eps) = 316)
  it("group_norm's weight gradient is 0 for a constant group (oracle seed 13)", function()
    local w = cnn.tensor({ 1.83, 0.1157, 0.474, -0.388 }):requires_grad_()
    local y = F.group_norm(cnn.full({ 1, 4, 3 }, 0.2673199772834778), 2, w, cnn.tensor({ 0.12, 2.08, 1.65, 0.357 }))
    y:backward(cnn.tensor({ { { -0.125, -0.875, 0.375 }, { -0.375, 0.875, 0.125 }, { -0.625, 0.625, -0.125 },
      { -0.875, 0.375, -0.375 } } }))
    assert.are.same({ 0, 0, 0, 0 }, w.grad:totable()) -- ATen's form gave -+4.7e-6 on the first two
  end)

  it("batch norm takes any finite momentum, as PyTorch (1.5 was refused at the first forward)", function()
    local bn = cnn.nn.BatchNorm1d(2, {momentum = 1.5})
    bn(cnn.tensor({{1, 2}, {3, 8}, {5, 5}})) -- means 3, 5; unbiased variances 4, 9
    H.assert_tensor(bn.running_mean, {4.5, 7.5}) -- PyTorch 1.13: -0.5 * 0 + 1.5 * mean
    H.assert_tensor(bn.running_var, {5.5, 13}) -- -0.5 * 1 + 1.5 * var
    H.assert_error(function()
      cnn.F.batch_norm(cnn.ones(3, 2), cnn.zeros(2), cnn.ones(2), nil, nil, true, math.huge)
    end, "batch_norm: momentum must be a finite number, got inf")
  end)

  it("one_hot: 1-based labels to int64 rows", function()
    local y = F.one_hot(cnn.tensor({{2, 1}, {3, 3}}, {dtype = "int64"}), 4)
    assert.same({2, 2, 4}, y:size())
    assert.equal("int64", y:dtype())
    assert.same({{{0, 1, 0, 0}, {1, 0, 0, 0}}, {{0, 0, 1, 0}, {0, 0, 1, 0}}}, y:totable())
    assert.same({{1, 0, 0}, {0, 0, 1}}, F.one_hot(cnn.tensor({1, 3}, {dtype = "int64"})):totable())
  end)

  it("gather picks along a dim, its gradient adding over repeats", function()
    local x = cnn.tensor({{1, 2, 3}, {4, 5, 6}}):requires_grad_()
    local y = x:gather(2, cnn.tensor({{3, 1}, {2, 2}}, {dtype = "int64"}))
    assert.same({{3, 1}, {5, 5}}, y:totable())
    y:sum():backward()
    assert.same({{1, 0, 1}, {0, 2, 0}}, x.grad:totable())
    assert.same({{4, 2, 6}}, x:gather(1, cnn.tensor({{2, 1, 2}}, {dtype = "int64"})):totable())
    H.assert_error(function() return x:gather(2, cnn.tensor({{4}}, {dtype = "int64"})) end, "gather", "range")
    H.assert_error(function() return x:gather(2, cnn.tensor({1}, {dtype = "int64"})) end, "gather", "dimensions")
  end)

  it("scatter_add adds src at the index along a dim, differentiable in both", function()
    local x = cnn.zeros(2, 3):requires_grad_()
    local src = cnn.tensor({{1, 2, 9}, {3, 4, 9}}):requires_grad_()
    local y = x:scatter_add(2, cnn.tensor({{3, 3}, {1, 2}}, {dtype = "int64"}), src)
    assert.same({{0, 0, 3}, {3, 4, 0}}, y:totable())
    local l = (y * cnn.tensor {{1, 2, 3}, {4, 5, 6}}):sum()
    l:backward()
    assert.same({{1, 2, 3}, {4, 5, 6}}, x.grad:totable())
    assert.same({{3, 3, 0}, {4, 5, 0}}, src.grad:totable())
    H.assert_error(function() return x:scatter_add(2, cnn.tensor({{4}}, {dtype = "int64"}), src) end, "scatter_add",
      "range")
  end)

  it("sort is stable with NaN last (descending: first); topk and argsort follow it", function()
    local x = cnn.tensor {{3, 0 / 0, 1, 2, 1}, {5, 4, -math.huge, 0 / 0, 4}}
    local _, i = x:sort(2)
    assert.same({{3, 5, 4, 1, 2}, {3, 2, 5, 1, 4}}, i:totable())
    _, i = x:sort(-1, true)
    assert.same({{2, 1, 4, 3, 5}, {4, 1, 2, 5, 3}}, i:totable())
    local v, ti = x:topk(2)
    assert.same({{2, 1}, {4, 1}}, ti:totable())
    assert.equal(3, v:totable()[1][2])
    assert.same({{1, 2, 2, 1, 1}, {2, 1, 1, 2, 2}}, x:argsort(1):totable())
    local y = cnn.tensor({3, 1, 2}):requires_grad_()
    local s = y:sort() * cnn.tensor {1, 2, 3}
    s:sum():backward()
    assert.same({3, 1, 2}, y.grad:totable())
    H.assert_error(function() return y:topk(4) end, "topk", "k")
  end)

  it("sort, cumsum and gather take long dims (no n x n masks, no cat of n parts)", function()
    local n = 30000
    local perm = {}
    for k = 0, n - 1 do perm[k + 1] = (k * 7919) % n end -- 7919 is prime to n: a permutation of 0..n-1
    local x = cnn.tensor(perm):float()
    local v, i = x:sort()
    assert.same({0, 1, 2}, v:narrow(1, 1, 3):totable())
    assert.equal(n - 1, v[n])
    assert.equal(0, (x:gather(1, i) - v):abs():max():item())
    local c = cnn.ones(n):cumsum(1)
    assert.same({1, 2, 3}, c:narrow(1, 1, 3):totable())
    assert.equal(n, c[n])
    -- gather from a transposed view, against picking each element by hand
    local t = cnn.randn(5, 4):t()
    local idx = cnn.tensor({{5, 1, 3}, {2, 2, 4}}, {dtype = "int64"})
    local g = t:gather(2, idx):totable()
    for r = 1, 2 do
      for k = 1, 3 do assert.equal(t[r][idx[r][k]], g[r][k]) end
    end
  end)

  it("nn modules call their F op", function()
    local x = cnn.randn(2, 4, 3)
    local cases = {
      {nn.SiLU(), F.silu(x)}, {nn.ELU(0.5), F.elu(x, 0.5)}, {nn.Softplus(2, 10), F.softplus(x, 2, 10)},
      {nn.Hardtanh(-0.5, 0.5), F.hardtanh(x, -0.5, 0.5)}, {nn.ReLU6(), F.relu6(x)}, {nn.GELU(), F.gelu(x)},
      {nn.GELU {approximate = "tanh"}, F.gelu(x, {approximate = "tanh"})},
      {nn.LayerNorm(3), F.layer_norm(x, 3)}, {nn.LayerNorm {4, 3}, F.layer_norm(x, {4, 3})},
      {nn.GroupNorm(2, 4), F.group_norm(x, 2)},
    }
    for _, c in ipairs(cases) do H.assert_tensor(c[1](x), c[2]:totable(), {rtol = 1e-6, atol = 1e-6}) end
    local t = cnn.randn(2, 4, 3)
    local losses = {
      {nn.L1Loss(), F.l1_loss(x, t)}, {nn.SmoothL1Loss {beta = 0.5}, F.smooth_l1_loss(x, t, {beta = 0.5})},
      {nn.HuberLoss {delta = 2, reduction = "sum"}, F.huber_loss(x, t, {delta = 2, reduction = "sum"})},
      {nn.BCEWithLogitsLoss {pos_weight = cnn.tensor {2}}, F.binary_cross_entropy_with_logits(x, t:sigmoid(),
        {pos_weight = cnn.tensor {2}})},
    }
    for i, c in ipairs(losses) do
      local tt = i == 4 and t:sigmoid() or t
      near(c[1](x, tt):item(), c[2]:item(), 1e-5)
    end
    assert.truthy(tostring(nn.LayerNorm(3)):find("LayerNorm((3,), eps=1e-05, elementwise_affine=True)", 1, true))
    assert.truthy(tostring(nn.GroupNorm(2, 4)):find("GroupNorm(2, 4, eps=1e-05, affine=True)", 1, true))
    local p, y = cnn.rand(2, 3) * 0.8 + 0.1, cnn.rand(2, 3)
    near(nn.BCELoss()(p, y):item(), F.binary_cross_entropy(p, y):item(), 1e-6)
    local lp = F.log_softmax(cnn.randn(2, 3), 2)
    near(nn.KLDivLoss {reduction = "batchmean"}(lp, y):item(), F.kl_div(lp, y, {reduction = "batchmean"}):item(), 1e-6)
    -- PyTorch's xlogy(target, target): a negative target's term is NaN (it was 0), a zero one's 0
    local kl = F.kl_div(cnn.tensor {-1.0, -2.0, -0.5}, cnn.tensor {-0.5, 0.0, 0.3}, {reduction = "none"}):totable()
    assert.is_true(kl[1] ~= kl[1])
    assert.equal(0, kl[2])
    near(kl[3], 0.3 * math.log(0.3) + 0.15, 1e-6)
    assert.equal("ELU(alpha=0.5)", tostring(nn.ELU(0.5)))
    assert.equal("GELU(approximate='tanh')", tostring(nn.GELU {approximate = "tanh"}))
    assert.equal(2, #nn.LayerNorm {4, 3}:parameters())
    assert.equal(0, #nn.GroupNorm(2, 4, {affine = false}):parameters())
    assert.equal(1, #nn.BCEWithLogitsLoss {weight = cnn.ones(3)}:buffers())
  end)

  it("clip_grad_norm_ and clip_grad_value_ as PyTorch", function()
    local a = cnn.tensor {3, 4}:requires_grad_()
    local b = cnn.tensor {{12}}:requires_grad_()
    local l = (a * a):sum() * 0.5 + (b * b):sum() * 0.5
    l:backward() -- grads 3, 4 and 12: norm 13
    local n = nn.utils.clip_grad_norm_({a, b}, 6.5)
    near(n:item(), 13, 1e-5)
    H.assert_tensor(a.grad, {1.5, 2}, {rtol = 1e-5})
    H.assert_tensor(b.grad, {{6}}, {rtol = 1e-5})
    near(nn.utils.clip_grad_norm_(a, 100, math.huge):item(), 2, 1e-5)
    H.assert_tensor(a.grad, {1.5, 2}, {rtol = 1e-6})
    near(nn.utils.clip_grad_norm_({a}, 100, 1):item(), 3.5, 1e-5)
    nn.utils.clip_grad_value_({a, b}, 1.75)
    H.assert_tensor(a.grad, {1.5, 1.75}, {rtol = 1e-6})
    H.assert_tensor(b.grad, {{1.75}}, {rtol = 1e-6})
    assert.equal(0, nn.utils.clip_grad_norm_({cnn.zeros(2)}, 1):item()) -- no .grad: skipped
    -- a NaN max_norm left the gradients alone, a negative one flips them: refused
    H.assert_error(function() return nn.utils.clip_grad_norm_(a, 0 / 0) end, "clip_grad_norm_: max_norm must be")
    H.assert_error(function() return nn.utils.clip_grad_norm_(a, -1) end, "clip_grad_norm_: max_norm must be")
    H.assert_tensor(a.grad, {1.5, 1.75}, {rtol = 1e-6})
    -- a NaN gradient makes the total NaN in every norm (the largest magnitude too: math.max(0, nan)
    -- is 0), error_if_nonfinite then refuses, and without it every gradient becomes NaN (PyTorch
    -- 1.13 multiplies by clamp(max_norm / (nan + 1e-6), max = 1))
    for _, order in ipairs({2, 1, math.huge}) do
      local q = cnn.zeros(2):requires_grad_()
      local r = cnn.zeros(2):requires_grad_()
      q.grad, r.grad = cnn.tensor {0 / 0, 1}, cnn.tensor {3, 4}
      H.assert_error(function() return nn.utils.clip_grad_norm_({q, r}, 1, order, true) end,
        "clip_grad_norm_: the total norm", "is nan")
      H.assert_tensor(r.grad, {3, 4}) -- untouched
      local total = nn.utils.clip_grad_norm_({r, q}, 1, order):item() -- the NaN one last
      assert.is_true(total ~= total, "order " .. order)
      for _, g in ipairs({q.grad, r.grad}) do assert.is_true(g:isnan():all():item(), "order " .. order) end
    end
    -- zero_grad's set_to_none, on modules as on optimisers
    local m = nn.Linear(2, 2)
    m(cnn.ones(1, 2)):sum():backward()
    m:zero_grad {set_to_none = false}
    H.assert_tensor(m.bias.grad, {0, 0}, {atol = 0})
    m:zero_grad()
    assert.is_nil(m.bias.grad)
    H.assert_error(function() m:zero_grad {set_to_none = "x"} end, "zero_grad: set_to_none must be a boolean")
    H.assert_error(function() m:zero_grad {to_none = true} end, "zero_grad: unknown option 'to_none'")
  end)

  it("bad arguments raise, naming the function, and the runtime goes on", function()
    local x = cnn.ones(2, 4, 3)
    H.assert_error(function() return F.gelu(x, {approximate = "fast"}) end, "gelu", "approximate")
    H.assert_error(function() return F.logsumexp(x, 4) end, "logsumexp", "dim")
    H.assert_error(function() return F.layer_norm(x, {4}) end, "layer_norm", "trailing")
    H.assert_error(function() return F.group_norm(x, 3) end, "group_norm", "num_groups")
    H.assert_error(function() return F.one_hot(cnn.tensor({0, 1}, {dtype = "int64"}), 3) end, "one_hot", "within")
    H.assert_error(function() return F.one_hot(cnn.ones(2)) end, "one_hot", "int64")
    H.assert_error(function() return nn.GroupNorm(3, 4) end, "GroupNorm", "num_channels")
    H.assert_error(function() return nn.Hardtanh(1, 0) end, "Hardtanh", "above")
    H.assert_error(function() return nn.L1Loss {beta = 1} end, "L1Loss", "beta")
    H.assert_error(function() return F.binary_cross_entropy(x * 2, x) end, "binary_cross_entropy", "between 0 and 1")
    H.assert_error(function() return F.binary_cross_entropy(x, cnn.ones(3)) end, "binary_cross_entropy", "size")
    H.assert_error(function() return F.pad(x, {1}) end, "pad", "pairs")
    H.assert_error(function() return F.pad(x, {1, 1}, "wrap") end, "pad", "mode")
    -- the one size whose crop (its negation) wraps around: it cropped nothing (the input came back)
    H.assert_error(function() return F.pad(x, {math.mininteger, 0}) end,
      "pad: pad size %-9223372036854775808 is out of range")
    H.assert_error(function() return x:cumsum(4) end, "cumsum", "dim")
    H.assert_error(function() return nn.KLDivLoss {reduction = "avg"} end, "KLDivLoss", "reduction")
    H.assert_error(function() return nn.utils.clip_grad_norm_({1}, 1) end, "clip_grad_norm_", "tensor")
    H.assert_usable()
  end)
end)
