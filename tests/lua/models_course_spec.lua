-- cnn.models' VGG and GoogLeNet against torchvision 0.14 (tests/fixtures/torchvision_models.lua and
-- torchvision_pool.safetensors, written by scripts/tools/export_torch_models.py): parameter counts,
-- state_dict names/shapes/order, and the logits of torchvision's own vgg11_bn and googlenet (aux
-- heads included) at full size. Their weights (129M and 13M numbers) are not committed: both sides
-- fill every state_dict entry from one small pool by the recipe the fixture records, so this
-- test loads the same weights PyTorch ran (GoogLeNet through load_state_dict with strict=true).
-- Also vgg_cifar, the option checks and GoogLeNet's outputs in each mode.
local cnn = require "cnn"
local nn = cnn.nn
local models = cnn.models
local H = dofile("tests/lua/helpers.lua")

local TV = dofile("tests/fixtures/torchvision_models.lua")
local IO = cnn.load("tests/fixtures/torchvision_pool.safetensors")

local function fixture_tensor(e) return cnn.tensor(e.data):view(e.shape) end

-- {name, shape, dtype} rows of a module's state_dict, in order
local function state_rows(m)
  local sd, rows = m:state_dict(), {}
  for _, k in ipairs(m:state_dict_keys()) do rows[#rows + 1] = {k, sd[k]:shape(), sd[k]:dtype()} end
  return rows
end

-- the {name, shape, dtype} part of the fixture's recipe rows
local function name_rows(rows)
  local out = {}
  for i, r in ipairs(rows) do out[i] = {r[1], r[2], r[3]} end
  return out
end

-- w[k] = pool[(off + k) mod K] for k = 0..n-1 written into the contiguous 1-d tensor out: the
-- window of K values starting at off, repeated (an expanded view: no index tensor of n elements).
local POOL = IO.pool
local K = POOL:numel()
local POOL2 = cnn.cat({POOL, POOL}, 1)
local function periodic_into(out, off)
  local n = out:numel()
  local window = POOL2:narrow(1, off % K + 1, K)
  local full, rest = n // K, n % K
  if full > 0 then out:narrow(1, 1, full * K):view(full, K):copy_(window:view(1, K):expand(full, K)) end
  if rest > 0 then out:narrow(1, full * K + 1, rest):copy_(window:narrow(1, 1, rest)) end
end

-- Fills tensor t (state_dict entry q, 1-based here) as the fixture's row says.
local function fill(t, q, row)
  cnn.no_grad(function()
    if row[3] == "int64" then
      t:fill_(q)
      return
    end
    local flat = t:view(t:numel())
    periodic_into(flat, (q - 1) * 977)
    if row[6] then flat:copy_(flat:abs()) end
    flat:mul_(row[4]):add_(row[5])
  end)
end

local function close(got, want, rel)
  local scale = want:abs():max():item()
  local diff = (got - want):abs():max():item()
  assert(diff <= rel * scale, string.format("max |diff| %.3g above %.3g (max |logit| %.3g)", diff, rel * scale, scale))
end

describe("models.vgg", function()
  it("has torchvision's parameter counts: 132,863,336 / 133,047,848 / 138,357,544 / 143,667,240; " ..
    "vgg16_bn 138,365,992", function()
    local want = {vgg11 = 132863336, vgg13 = 133047848, vgg16 = 138357544, vgg19 = 143667240, vgg16_bn = 138365992}
    for name, n in pairs(want) do assert.are.equal(n, TV.num_parameters[name], name) end -- torchvision's own count
    for _, d in ipairs {11, 13, 16, 19} do
      -- skip_init: the sizes are what matters here, not 140M random draws
      assert.are.equal(want["vgg" .. d], nn.skip_init(models.vgg, {depth = d}):num_parameters(), "vgg" .. d)
      collectgarbage()
    end
    assert.are.equal(want.vgg16_bn, nn.skip_init(models.vgg, {depth = 16, batch_norm = true}):num_parameters())
    collectgarbage()
  end)

  it("vgg16's state_dict equals torchvision's: names, shapes, dtypes and order", function()
    assert.are.same(TV.vgg16, state_rows(nn.skip_init(models.vgg, {depth = 16})))
    collectgarbage()
  end)

  it("answers to torchvision's names: vgg16 and vgg11_bn are vgg of that depth and batch norm", function()
    assert.are.same(TV.vgg16, state_rows(nn.skip_init(models.vgg16, {})))
    collectgarbage()
    assert.are.same(name_rows(TV.vgg11_bn), state_rows(nn.skip_init(models.vgg11_bn, {num_classes = 10})))
    collectgarbage()
    assert.are.equal(TV.num_parameters.vgg13, nn.skip_init(models.vgg13, {}):num_parameters())
    collectgarbage()
    H.assert_error(function() return models.vgg16{batch_norm = true} end, "vgg16: ", "unknown option 'batch_norm'")
    H.assert_error(function() return models.vgg19_bn{depth = 11} end, "vgg19_bn: ", "unknown option 'depth'")
    H.assert_error(function() return models.vgg11{dropout = 2} end, "vgg11: ", "dropout must be a probability")
    -- NaN passed the range check and reached Dropout's own ("Dropout: p must be a number, got nan")
    H.assert_error(function() return models.vgg11{dropout = 0 / 0} end, "vgg11: dropout must be a probability")
    H.assert_error(function() return models.googlenet{dropout = 0 / 0} end, "googlenet: dropout must be a probability")
  end)

  it("is torchvision's vgg11_bn: the same state_dict and, with the same weights, the same logits", function()
    local net = nn.skip_init(models.vgg, {depth = 11, batch_norm = true, num_classes = 10, dropout = 0})
    assert.are.same(name_rows(TV.vgg11_bn), state_rows(net))
    -- 129M numbers: filled in place (a second copy for load_state_dict would double the memory;
    -- GoogLeNet below goes through load_state_dict)
    local sd = net:state_dict()
    for q, row in ipairs(TV.vgg11_bn) do fill(sd[row[1]], q, row) end
    local x = IO.vgg_input -- 2x3x64x64: 2x2 features, so the adaptive pool's 7x7 windows overlap
    net:eval()
    close(cnn.no_grad(function() return net(x) end), fixture_tensor(TV.vgg11_bn_eval), 1e-4)
    net:train() -- batch statistics, dropout 0
    close(cnn.no_grad(function() return net(x) end), fixture_tensor(TV.vgg11_bn_train), 1e-4)
    net = nil
    collectgarbage()
  end)

  it("initialises as torchvision: convs kaiming_normal_ fan_out, BN 1 and 0, linear N(0, 0.01), biases 0", function()
    cnn.manual_seed(3)
    local net = models.vgg_cifar {depth = 11}
    local w = net.features[1].weight -- 64x3x3x3: fan_out = 64 * 9, std sqrt(2 / 576) = 0.0589
    assert.is_true(math.abs(w:std():item() / math.sqrt(2 / 576) - 1) < 0.05)
    assert.are.equal(0, net.features[1].bias:abs():sum():item())
    assert.are.equal(64, net.features[2].weight:sum():item())
    local fc = net.classifier[1].weight -- 512x512
    assert.is_true(math.abs(fc:std():item() / 0.01 - 1) < 0.02)
  end)
end)

describe("models.vgg_cifar", function()
  -- features conv 3x3 + bias per layer, BN 2 per channel, FC 512->512->512->classes (hand count)
  local function count(cfg, classes, channels)
    local total, c = 0, channels
    for _, v in ipairs(cfg) do
      total = total + v * c * 9 + v + 2 * v
      c = v
    end
    return total + 2 * (512 * 512 + 512) + 512 * classes + classes
  end

  it("counts as the layers add up: 9,756,426 at depth 11 and 15,253,578 at 16 (10 classes)", function()
    local a = {64, 128, 256, 256, 512, 512, 512, 512}
    local d = {64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512}
    assert.are.equal(9756426, count(a, 10, 3))
    assert.are.equal(count(a, 10, 3), nn.skip_init(models.vgg_cifar, {depth = 11}):num_parameters())
    assert.are.equal(15253578, count(d, 10, 3))
    assert.are.equal(15253578, nn.skip_init(models.vgg_cifar, {depth = 16}):num_parameters())
    assert.are.equal(count(a, 7, 1), nn.skip_init(models.vgg_cifar, {depth = 11, in_channels = 1, num_classes = 7})
      :num_parameters())
    -- without batch norm: 2 per channel fewer
    assert.are.equal(count(a, 10, 3) - 2 * (64 + 128 + 256 * 2 + 512 * 4),
      nn.skip_init(models.vgg_cifar, {depth = 11, batch_norm = false}):num_parameters())
  end)

  it("maps 2x3x32x32 to 2x10 and trains: every parameter gets a gradient", function()
    cnn.manual_seed(5)
    local net = models.vgg_cifar {depth = 11}
    local loss = cnn.F.cross_entropy(net(cnn.randn(2, 3, 32, 32)), cnn.tensor({1, 7}, {dtype = "int64"}))
    loss:backward()
    for _, p in ipairs(net:named_parameters()) do assert.is_not_nil(p[2].grad, p[1]) end
    assert.are.same({"features", "classifier"}, (function()
      local names = {}
      for i, c in ipairs(net:named_children()) do names[i] = c[1] end
      return names
    end)())
  end)
end)

describe("models.googlenet", function()
  it("has torchvision's parameter counts: 6,624,904, and 13,004,888 with the auxiliary heads", function()
    assert.are.equal(6624904, TV.num_parameters.googlenet)
    assert.are.equal(13004888, TV.num_parameters.googlenet_aux)
    assert.are.equal(6624904, nn.skip_init(models.googlenet):num_parameters())
    assert.are.equal(13004888, nn.skip_init(models.googlenet, {aux_logits = true}):num_parameters())
  end)

  it("is torchvision's googlenet: a state_dict built from torchvision's names loads strictly and gives its logits",
    function()
    local net = nn.skip_init(models.googlenet, {num_classes = 10, aux_logits = true, dropout = 0, dropout_aux = 0})
    assert.are.same(name_rows(TV.googlenet), state_rows(net))
    local sd = {}
    for q, row in ipairs(TV.googlenet) do
      local t = cnn.empty(row[2], {dtype = row[3]})
      fill(t, q, row)
      sd[row[1]] = t
    end
    local missing, unexpected = net:load_state_dict(sd, {strict = true})
    assert.are.same({}, missing)
    assert.are.same({}, unexpected)
    local x = IO.googlenet_input -- 2x3x47x47: 24, 12, 6 and 3 reach the pools; all four round up
    net:eval()
    local y = cnn.no_grad(function() return table.pack(net(x)) end)
    assert.are.equal(1, y.n) -- eval mode: the logits alone
    close(y[1], fixture_tensor(TV.googlenet_eval), 1e-4)
    net.transform_input = true
    close(cnn.no_grad(function() return net(x) end), fixture_tensor(TV.googlenet_eval_transform_input), 1e-4)
    net.transform_input = false
    net:train()
    y = cnn.no_grad(function() return table.pack(net(x)) end)
    assert.are.equal(3, y.n) -- training with aux_logits: logits, aux1's, aux2's (torchvision's positions)
    -- batch statistics over 2 images of 2x2 make the last layers ill-conditioned: PyTorch's own
    -- float32 logits are 7.3e-5 of the largest from its float64 ones here
    close(y[1], fixture_tensor(TV.googlenet_train[1]), 2e-4)
    for i = 2, 3 do close(y[i], fixture_tensor(TV.googlenet_train[i]), 1e-4) end
  end)

  it("returns the logits alone without aux heads, and trains: every parameter gets a gradient", function()
    cnn.manual_seed(6)
    local net = models.googlenet {num_classes = 5}
    local y = table.pack(net(cnn.randn(2, 3, 32, 32)))
    assert.are.equal(1, y.n)
    assert.are.same({2, 5}, y[1]:shape())
    cnn.F.cross_entropy(y[1], cnn.tensor({1, 5}, {dtype = "int64"})):backward()
    for _, p in ipairs(net:named_parameters()) do assert.is_not_nil(p[2].grad, p[1]) end
  end)

  it("initialises as torchvision: conv and linear weights N(0, 0.01) truncated, BN 1 and 0", function()
    cnn.manual_seed(7)
    local net = models.googlenet {}
    local w = net.inception4e.branch2[2].conv.weight -- 320x160x3x3
    assert.is_true(math.abs(w:std():item() / 0.01 - 1) < 0.01)
    assert.is_true(w:abs():max():item() <= 2) -- truncated at +-2 (200 std: a formality here)
    assert.are.equal(320, net.inception4e.branch2[2].bn.weight:sum():item())
    assert.are.equal(0.001, net.conv1.bn.eps)
  end)
end)

describe("VGG and GoogLeNet options", function()
  local cases = {
    {function() return models.vgg {depth = 12} end, "vgg", "depth must be 11, 13, 16 or 19, got 12"},
    {function() return models.vgg {batch_norm = 1} end, "vgg", "batch_norm must be a boolean"},
    {function() return models.vgg {num_classes = 0} end, "vgg", "num_classes must be a positive integer"},
    {function() return models.vgg {dropout = 2} end, "vgg", "dropout must be a probability"},
    {function() return models.vgg {bn = true} end, "vgg", "unknown option 'bn'"},
    {function() return models.vgg_cifar {in_channels = 0} end, "vgg_cifar", "in_channels must be a positive integer"},
    {function() return models.vgg_cifar(16) end, "vgg_cifar", "expected an options table"},
    {function() return models.googlenet {aux_logits = "yes"} end, "googlenet", "aux_logits must be a boolean"},
    {function() return models.googlenet {num_classes = -1} end, "googlenet", "num_classes must be a positive integer"},
    {function() return models.googlenet {init_weights = false} end, "googlenet", "unknown option 'init_weights'"},
    {function() return models.googlenet {dropout = -0.1} end, "googlenet", "dropout must be a probability"},
    {function() return nn.skip_init(42) end, "skip_init", "expected a module class or constructor"},
  }
  it("name the function and the problem, and leave the runtime usable", function()
    for _, c in ipairs(cases) do H.assert_error(c[1], c[2] .. ": ", c[3]) end
    H.assert_usable()
  end)

  it("skip_init builds the same module without filling it, and passes errors through", function()
    local a = nn.skip_init(nn.Linear, 3, 2)
    assert.are.same({2, 3}, a.weight:shape())
    H.assert_error(function() nn.skip_init(models.vgg, {depth = 7}) end, "vgg", "depth")
    -- the fills work again afterwards
    cnn.manual_seed(1)
    local b = nn.Linear(3, 2)
    cnn.manual_seed(1)
    local c = nn.Linear(3, 2)
    assert.is_true(cnn.allclose(b.weight, c.weight, 0, 0))
    assert.is_true(b.weight:abs():sum():item() > 0)
  end)
end)
