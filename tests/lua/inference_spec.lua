-- Inference mode (issue 19): in eval mode under no_grad, Conv2d + BatchNorm2d (+ ReLU, + a ResNet
-- block's shortcut) run as one convolution with BatchNorm's per-channel scale and shift applied as
-- it stores its output (F.conv2d's scale, residual and relu options; no copy of the weights), and
-- Sequential, the ResNet blocks and networks free activations once consumed. Checked against the
-- unfused computation (the same model in eval mode with grad mode on, which never fuses), against
-- BatchNorm and the options written out by hand and PyTorch's ResNet-20 eval logits; the folded
-- scale and shift follow in-place changes of the parameters and statistics and train() drops
-- them; training afterwards gives the same steps as a model that was never put in eval mode.
local cnn = require "cnn"
local nn = require "cnn.nn"
local F = cnn.F
local models = cnn.models
local H = dofile("tests/lua/helpers.lua")

local R20 = dofile("tests/fixtures/resnet20_cifar_logits.lua")

local function max_diff(a, b) return (a - b):abs():max():item() end

-- every BatchNorm of m gets random running statistics, weight and bias, so that folding them is
-- no identity
local function randomize_bn(m)
  cnn.no_grad(function()
    for _, c in ipairs(m:modules()) do
      if c:is_a(nn.BatchNorm2d) then
        local n = c.num_features
        c.running_mean:copy_(cnn.randn(n) * 0.2)
        c.running_var:copy_(cnn.rand(n) + 0.5)
        c.weight:copy_(cnn.rand(n) + 0.5)
        c.bias:copy_(cnn.randn(n) * 0.2)
      end
    end
  end)
end

-- the folded copies the model's convolutions hold
local function folded_count(m)
  local k = 0
  for _, c in ipairs(m:modules()) do
    if c:is_a(nn.Conv2d) and c:_fused() then k = k + 1 end
  end
  return k
end

-- (unfused eval output with grad mode on, fused output under no_grad)
local function both(m, x)
  m:eval()
  local ref = m(x):detach()
  local fused = cnn.no_grad(function() return m(x) end)
  return ref, fused
end

describe("inference fusions", function()
  it("F.conv2d's relu option equals relu(conv2d), im2col and direct paths, and needs no_grad", function()
    cnn.manual_seed(3)
    local x, w, b = cnn.randn(2, 5, 9, 9), cnn.randn(7, 5, 3, 3), cnn.randn(7)
    for _, o in ipairs {{padding = 1}, {stride = 2, padding = 1}, {}} do
      local want = F.conv2d(x, w, b, o):clamp(0)
      o.relu = true
      H.assert_tensor(F.conv2d(x, w, b, o), want:totable(), {atol = 0})
    end
    H.assert_tensor(F.conv2d(x, cnn.randn(4, 5, 1, 1), {relu = true}):min(), 0, {atol = 0})
    local wg = w:clone():requires_grad_()
    H.assert_error(function() return F.conv2d(x, wg, b, {relu = true}) end, "conv2d", "relu=true", "no_grad")
    H.assert_usable()
    local y = cnn.no_grad(function() return F.conv2d(x, wg, b, {relu = true}) end)
    assert.are.same({2, 7, 7, 7}, y:shape())
    H.assert_error(function() return F.conv2d(x, w, b, {relu = 1}) end, "conv2d", "relu must be a boolean")
  end)

  it("F.conv2d's scale and residual options equal scale * conv + bias + residual on every path", function()
    cnn.manual_seed(31)
    local x = cnn.randn(2, 5, 9, 9)
    -- 3x3 stride 1 (direct kernels), 3x3 stride 2 and 5x5 (im2col), 1x1 (the image is its column matrix)
    for _, c in ipairs {{3, {padding = 1}}, {3, {stride = 2, padding = 1}}, {5, {}}, {1, {}}} do
      local k, o = c[1], c[2]
      local w, b, s = cnn.randn(7, 5, k, k), cnn.randn(7), cnn.rand(7) + 0.5
      local plain = F.conv2d(x, w, nil, o)
      local r = cnn.randn(table.unpack(plain:shape()))
      local sv = s:view(1, 7, 1, 1)
      for _, relu in ipairs {false, true} do
        for _, bias in ipairs {false, true} do
          local want = plain * sv + r
          if bias then want = want + b:view(1, 7, 1, 1) end
          if relu then want = want:clamp(0) end
          local opts = {stride = o.stride, padding = o.padding, relu = relu, scale = s, residual = r}
          local got = F.conv2d(x, w, bias and b or nil, opts)
          assert.is_true(max_diff(got, want) < 1e-4, string.format("k %d relu %s bias %s: max diff %g", k,
            relu, bias, max_diff(got, want)))
          -- each option alone
          opts.residual = nil
          want = plain * sv + (bias and b:view(1, 7, 1, 1) or 0)
          if relu then want = want:clamp(0) end
          assert.is_true(max_diff(F.conv2d(x, w, bias and b or nil, opts), want) < 1e-4)
          opts.scale, opts.residual = nil, r
          want = plain + r + (bias and b:view(1, 7, 1, 1) or 0)
          if relu then want = want:clamp(0) end
          assert.is_true(max_diff(F.conv2d(x, w, bias and b or nil, opts), want) < 1e-4)
        end
      end
    end
  end)

  it("F.conv2d's relu keeps NaN as F.relu does, on every path and with scale and residual", function()
    cnn.manual_seed(5)
    -- direct, small-batch lanes (16 images), im2col (dilation, groups, stride 2), batched (wide)
    local cases = {{{2, 3, 8, 8}, 8, {padding = 1}}, {{20, 16, 12, 12}, 16, {padding = 1}},
      {{2, 32, 9, 9}, 16, {padding = 2, dilation = 2}}, {{2, 8, 9, 9}, 8, {padding = 1, groups = 2}},
      {{4, 256, 7, 7}, 256, {padding = 1}}, {{2, 64, 20, 20}, 64, {stride = 2}}, {{3, 5, 11, 11}, 7, {}}}
    local nan = 0 / 0
    for _, c in ipairs(cases) do
      local shape, O, o = c[1], c[2], c[3]
      local x = cnn.randn(table.unpack(shape))
      x[1][1][2][3], x[1][1][1][1] = nan, -math.huge
      local w, b = cnn.randn(O, shape[2] // (o.groups or 1), 3, 3), cnn.randn(O)
      local plain = F.conv2d(x, w, b, o)
      for _, extra in ipairs {{}, {scale = cnn.rand(O) + 0.5}} do
        local want = plain
        if extra.scale then want = F.conv2d(x, w, nil, o) * extra.scale:view(1, O, 1, 1) + b:view(1, O, 1, 1) end
        want = F.relu(want)
        local opts = {relu = true, scale = extra.scale}
        for k, v in pairs(o) do opts[k] = v end
        local got = F.conv2d(x, w, b, opts)
        local what = table.concat(shape, "x") .. (extra.scale and " with scale" or "")
        assert.is_true(want:isnan():sum():item() > 0, what)
        assert.is_true(got:isnan():eq(want:isnan()):all():item(), what .. ": NaN where F.relu has them")
        assert.is_true(got:eq(math.huge):eq(want:eq(math.huge)):all():item(), what .. ": the same infinities")
        local d = cnn.where(want:isnan():logical_or(want:eq(math.huge)), cnn.zeros(1), got - want)
        assert.is_true(d:abs():max():item() < 1e-4, what)
      end
    end
    -- folded Conv2d + BatchNorm2d + ReLU in eval shows the NaNs the unfused model shows
    local m = nn.Sequential(nn.Conv2d(3, 8, 3, {padding = 1}), nn.BatchNorm2d(8), nn.ReLU()):eval()
    local x = cnn.randn(2, 3, 6, 6)
    x[2][3][4][4] = nan
    local unfused = m(x)
    local fused = cnn.no_grad(function() return m(x) end)
    assert.is_true(unfused:isnan():sum():item() > 0)
    assert.is_true(fused:isnan():eq(unfused:isnan()):all():item())
  end)

  it("F.conv2d's scale and residual are checked and need no_grad", function()
    local x, w = cnn.randn(1, 2, 5, 5), cnn.randn(3, 2, 3, 3)
    H.assert_error(function() return F.conv2d(x, w, {scale = cnn.ones(4)}) end, "conv2d", "scale", "3 output channels")
    H.assert_usable()
    H.assert_error(function() return F.conv2d(x, w, {scale = cnn.ones(3, 1)}) end, "conv2d", "scale")
    H.assert_error(function() return F.conv2d(x, w, {residual = cnn.ones(1, 3, 5, 5)}) end, "conv2d", "residual",
      "(1, 3, 3, 3)")
    H.assert_error(function() return F.conv2d(x, w, {residual = 2}) end, "conv2d", "residual")
    H.assert_usable()
    local s = cnn.ones(3):requires_grad_()
    H.assert_error(function() return F.conv2d(x, w, {scale = s}) end, "conv2d", "for inference", "no_grad")
    local y = cnn.no_grad(function() return F.conv2d(x, w, {scale = s, residual = cnn.ones(1, 3, 3, 3)}) end)
    assert.is_true(max_diff(y, F.conv2d(x, w) + 1) < 1e-5)
  end)

  it("Conv2d + BatchNorm2d + ReLU folded equals BatchNorm written out by hand", function()
    cnn.manual_seed(4)
    local seq = nn.Sequential(nn.Conv2d(3, 6, 3, {padding = 1}), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    randomize_bn(seq)
    seq:eval()
    local x = cnn.randn(3, 3, 8, 8)
    local conv, bn, lin = seq[1], seq[2], seq[6]
    local want = cnn.no_grad(function()
      local y = F.conv2d(x, conv.weight, conv.bias, {padding = 1})
      local c = {1, 6, 1, 1}
      y = (y - bn.running_mean:view(c)) / (bn.running_var:view(c) + bn.eps):sqrt() * bn.weight:view(c) +
        bn.bias:view(c)
      y = F.max_pool2d(y:clamp(0), 2):flatten(2)
      return y:matmul(lin.weight:t()) + lin.bias
    end)
    local got = cnn.no_grad(function() return seq(x) end)
    assert.is_true(max_diff(got, want) < 1e-5, "max diff " .. max_diff(got, want))
    assert.is_truthy(conv:_fused(), "the Sequential took the folded path")
    assert.are.equal(3, x:size(1)) -- the input was not freed
    H.assert_tensor(x:sum() - x:sum(), 0)
  end)

  it("ResNet-20 in eval: folded equals unfolded and PyTorch's eval logits", function()
    cnn.manual_seed(5)
    local net = models.resnet_cifar{depth = 20}
    randomize_bn(net)
    local x = cnn.randn(4, 3, 32, 32)
    local ref, fused = both(net, x)
    assert.are.equal(19, folded_count(net)) -- every conv (option A: no projection convs)
    assert.is_true(max_diff(ref, fused) < 1e-4, "max diff " .. max_diff(ref, fused))
    -- PyTorch's logits for its own weights (tests/fixtures/resnet20_cifar*)
    local pt = models.resnet_cifar{depth = 20}
    pt:load_state_dict(cnn.load("tests/fixtures/resnet20_cifar.safetensors"), {strict = true})
    pt:eval()
    local input = cnn.tensor(R20.input.data):view(R20.input.shape)
    H.assert_tensor(cnn.no_grad(function() return pt(input) end), R20.eval_logits, {atol = 1e-4})
    assert.is_true(folded_count(pt) > 0)
  end)

  it("ResNet-18 (projection shortcuts) in eval: folded equals unfolded", function()
    cnn.manual_seed(6)
    local net = models.resnet{depth = 18, num_classes = 10}
    randomize_bn(net)
    local x = cnn.randn(2, 3, 64, 64)
    local ref, fused = both(net, x)
    assert.are.equal(20, folded_count(net)) -- 17 convs in the trunk and 3 downsample convs
    local tol = 1e-4 * math.max(1, ref:abs():max():item())
    assert.is_true(max_diff(ref, fused) < tol, "max diff " .. max_diff(ref, fused))
    H.assert_tensor(x:sum() - x:sum(), 0) -- the input is intact
  end)

  it("ResNet-50 (bottlenecks, shortcut added as conv3 stores) in eval: fused equals unfused, no weight copies",
    function()
      cnn.manual_seed(16)
      local net = models.resnet{depth = 50, num_classes = 10}
      randomize_bn(net)
      local x = cnn.randn(1, 3, 64, 64)
      net:eval()
      local ref = net(x):detach()
      collectgarbage()
      collectgarbage()
      local before = cnn.memory_stats().live_bytes
      local fused = cnn.no_grad(function() return net(x) end)
      collectgarbage()
      collectgarbage()
      -- what stays is the output and a scale and shift per output channel of each of the 53 convs
      -- (26,560 channels: 212 KB); a folded copy of the weights would be 94 MB
      local kept = cnn.memory_stats().live_bytes - before
      assert.is_true(kept < 1e6, "inference kept " .. kept .. " bytes")
      assert.are.equal(53, folded_count(net))
      local tol = 1e-4 * math.max(1, ref:abs():max():item())
      assert.is_true(max_diff(ref, fused) < tol, "max diff " .. max_diff(ref, fused))
      H.assert_tensor(x:sum() - x:sum(), 0) -- the input is intact
    end)

  it("ResNet-18 and ResNet-50 inference free each activation once consumed, not when the collector runs", function()
    for _, depth in ipairs {18, 50} do
      cnn.manual_seed(17)
      local net = models.resnet{depth = depth, num_classes = 10}
      randomize_bn(net)
      net:eval()
      local x = cnn.randn(2, 3, 96, 96)
      cnn.no_grad(function() return net(x) end) -- the folded scales and shifts made
      collectgarbage()
      collectgarbage()
      collectgarbage("stop") -- what the forward does not free itself stays live
      local base = cnn.memory_stats{reset_peak = true}.live_bytes
      local y = cnn.no_grad(function() return net(x) end)
      local left, peak = cnn.memory_stats().live_bytes - base, cnn.memory_stats().peak_live_bytes - base
      collectgarbage("restart")
      -- left: the logits (80 bytes) and the pooled features, (2, 512 or 2048) floats and their
      -- flattened view; the activations alone are 2 x 64 x 48 x 48 floats (1.2 MB) after conv1
      assert.is_true(left <= 2 * 2048 * 4 + 1024, string.format("depth %d: %d bytes left", depth, left))
      assert.is_true(peak > 2 * 64 * 48 * 48 * 4, "the peak saw conv1's output")
      assert.are.same({2, 10}, y:shape())
    end
  end)

  it("the folded copy follows in-place changes of weights and statistics; train() drops it", function()
    cnn.manual_seed(7)
    local net = models.resnet_cifar{depth = 20}
    randomize_bn(net)
    local x = cnn.randn(2, 3, 32, 32)
    local _, before = both(net, x)
    cnn.no_grad(function()
      net.bn1.running_mean:add_(0.3)
      net.layer2[1].conv1.weight:mul_(1.5)
      net.layer3[3].bn2.bias:fill_(0.1)
    end)
    local ref, fused = both(net, x)
    assert.is_true(max_diff(before, fused) > 1e-3, "the changes show")
    assert.is_true(max_diff(ref, fused) < 1e-4, "max diff " .. max_diff(ref, fused))
    -- a new tensor assigned in place of a parameter counts too
    net.conv1.weight = (net.conv1.weight * 0.5):detach():requires_grad_()
    ref, fused = both(net, x)
    assert.is_true(max_diff(ref, fused) < 1e-4, "max diff " .. max_diff(ref, fused))
    net:train()
    assert.are.equal(0, folded_count(net))
  end)

  it("training after eval inference takes the same steps as a model never put in eval", function()
    cnn.manual_seed(8)
    local a = models.resnet_cifar{depth = 20}
    randomize_bn(a)
    local b = models.resnet_cifar{depth = 20}
    b:load_state_dict(a:state_dict(), {strict = true})
    local x, y = cnn.randn(4, 3, 32, 32), cnn.randint(1, 10, {4})
    a:eval()
    cnn.no_grad(function() return a(x) end)
    assert.is_true(folded_count(a) > 0)
    a:train()
    local oa = cnn.optim.SGD(a:parameters(), {lr = 0.1, momentum = 0.9})
    local ob = cnn.optim.SGD(b:parameters(), {lr = 0.1, momentum = 0.9})
    for _ = 1, 2 do
      for _, p in ipairs {{a, oa}, {b, ob}} do
        local loss = F.cross_entropy(p[1](x), y)
        p[2]:zero_grad()
        loss:backward()
        p[2]:step()
      end
    end
    local sa, sb = a:state_dict(), b:state_dict()
    for k, v in pairs(sb) do
      assert.are.equal(0, max_diff(sa[k]:to("float32"), v:to("float32")), k)
    end
    -- and eval inference after those steps folds the new weights and statistics
    local ref, fused = both(a, x)
    assert.is_true(max_diff(ref, fused) < 1e-4, "max diff " .. max_diff(ref, fused))
  end)

  it("a BatchNorm2d of the wrong width after a Conv2d is not folded: batch_norm names the mismatch", function()
    local m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(4), nn.ReLU()):eval()
    local x = cnn.randn(1, 3, 8, 8)
    local want = "1 %(BatchNorm2d%): batch_norm: running_mean should have shape %(8%)"
    H.assert_error(function() return m(x) end, want)
    -- under no_grad too (it used to fold and fail in the scale's arithmetic, "Sequential: sub: ...")
    H.assert_error(function()
      local y = cnn.no_grad(function() return m(x) end)
      return y
    end, want)
    H.assert_usable()
  end)

  it("a scale or shift that is not finite is not folded: eps = 0 over a zero variance gives bn's +-inf", function()
    -- folded, the scale was inf and the shift (b - mean) * inf + beta NaN: 75 NaN of 150 outputs
    for _, relu in ipairs { false, true } do
      cnn.manual_seed(4)
      local conv, bn = nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, { eps = 0 })
      cnn.no_grad(function() bn.running_var:fill_(0) end)
      local m = (relu and nn.Sequential(conv, bn, nn.ReLU()) or nn.Sequential(conv, bn)):eval()
      local x = cnn.randn(2, 2, 5, 5)
      local fused = cnn.no_grad(function() return m(x) end)
      local want = bn(conv(x))
      if relu then want = F.relu(want) end
      assert.are.equal(0, fused:isnan():sum():item())
      assert.is_true(want:isinf():sum():item() > 0)
      assert.are.same(want:totable(), fused:totable())
      -- and a finite variance again folds (the stamp follows the statistics' version)
      cnn.no_grad(function() bn.running_var:fill_(1) end)
      local again = cnn.no_grad(function() return m(x) end)
      local ref = bn(conv(x))
      if relu then ref = F.relu(ref) end
      assert.is_true(max_diff(ref, again) < 1e-5)
    end
  end)

  it("modules with hooks or their own forward are not fused", function()
    cnn.manual_seed(9)
    local seq = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    randomize_bn(seq)
    local seen
    seq[2]:register_forward_hook(function(_, _, out) seen = out end)
    local x = cnn.randn(1, 2, 5, 5)
    local ref, fused = both(seq, x)
    assert.is_nil(seq[1]:_fused())
    assert.is_truthy(seen)
    H.assert_tensor(seen:sum() - seen:sum(), 0) -- the hook's tensor is still alive
    assert.is_true(max_diff(ref, fused) < 1e-6)
  end)
end)
