-- cnn.models' AlexNets and ResNets: parameter counts against hand counts and torchvision's,
-- torchvision's state_dict names/shapes/order (tests/fixtures/resnet18_names.lua), a CIFAR ResNet-20
-- written in PyTorch loading with strict=true and giving PyTorch's logits, loss, gradients and
-- running statistics (tests/fixtures/resnet20_cifar*; scripts/tools/export_torch_models.py),
-- safetensors round trips, forward/backward of the AlexNets, and option errors.
local cnn = require "cnn"
local nn = require "cnn.nn"
local F = cnn.F
local models = cnn.models
local H = dofile("tests/lua/helpers.lua")

local NAMES = dofile("tests/fixtures/resnet18_names.lua")
local R20 = dofile("tests/fixtures/resnet20_cifar_logits.lua")
local R20_WEIGHTS = "tests/fixtures/resnet20_cifar.safetensors"

local function fixture_tensor(e) return cnn.tensor(e.data):view(e.shape) end

-- max |a - b| over all elements
local function max_diff(a, b) return (a - b):abs():max():item() end

-- {name, shape, dtype} rows of a module's state_dict, in order
local function state_rows(m)
  local sd, rows = m:state_dict(), {}
  for _, k in ipairs(m:state_dict_keys()) do rows[#rows + 1] = {k, sd[k]:shape(), sd[k]:dtype()} end
  return rows
end

local function conv_count(o, i, k, bias) return o * i * k * k + (bias and o or 0) end
local function linear_count(o, i) return o * i + o end

local function cifar_resnet_count(n, classes, projections)
  -- conv1 + bn1; per stage: n blocks of two 3x3 convs each followed by a BN (2 params per channel);
  -- the first block of stages 2 and 3 reads half the width. Option B adds 1x1 conv + BN there.
  local total = conv_count(16, 3, 3) + 2 * 16
  local cin = 16
  for _, w in ipairs({16, 32, 64}) do
    total = total + conv_count(w, cin, 3) + 2 * w + conv_count(w, w, 3) + 2 * w
    total = total + (n - 1) * 2 * (conv_count(w, w, 3) + 2 * w)
    if projections and cin ~= w then total = total + conv_count(w, cin, 1) + 2 * w end
    cin = w
  end
  return total + linear_count(classes, 64)
end

describe("models.alexnet", function()
  local net -- one 62M-parameter instance for the whole block (building one draws 62M randoms)
  setup(function()
    cnn.manual_seed(7)
    net = models.alexnet()
  end)
  teardown(function() net = nil; collectgarbage() end)

  it("has the 2012 network's 62,378,344 parameters, counted by hand layer by layer", function()
    local hand = conv_count(96, 3, 11, true) + conv_count(256, 96, 5, true) + conv_count(384, 256, 3, true) +
      conv_count(384, 384, 3, true) + conv_count(256, 384, 3, true) +
      linear_count(4096, 256 * 6 * 6) + linear_count(4096, 4096) + linear_count(1000, 4096)
    assert.are.equal(62378344, hand)
    assert.are.equal(hand, net:num_parameters())
  end)

  it("names its layers as torchvision does (features.N / classifier.N) in the paper's order", function()
    local got = {}
    for _, p in ipairs(net:named_parameters()) do got[#got + 1] = {p[1], p[2]:shape()} end
    assert.are.same({
      {"features.0.weight", {96, 3, 11, 11}}, {"features.0.bias", {96}},
      {"features.4.weight", {256, 96, 5, 5}}, {"features.4.bias", {256}},
      {"features.8.weight", {384, 256, 3, 3}}, {"features.8.bias", {384}},
      {"features.10.weight", {384, 384, 3, 3}}, {"features.10.bias", {384}},
      {"features.12.weight", {256, 384, 3, 3}}, {"features.12.bias", {256}},
      {"classifier.1.weight", {4096, 9216}}, {"classifier.1.bias", {4096}},
      {"classifier.4.weight", {4096, 4096}}, {"classifier.4.bias", {4096}},
      {"classifier.6.weight", {1000, 4096}}, {"classifier.6.bias", {1000}},
    }, got)
    local kinds = {}
    for i = 1, #net.features do kinds[i] = net.features[i]:class_name() end
    assert.are.same({"Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d", "Conv2d", "ReLU", "LocalResponseNorm",
      "MaxPool2d", "Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"}, kinds)
    kinds = {}
    for i = 1, #net.classifier do kinds[i] = net.classifier[i]:class_name() end
    assert.are.same({"Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"}, kinds)
    assert.are.equal(0.5, net.classifier[1].p)
    assert.are.equal(0.5, net.classifier[4].p)
    -- the paper's k=2, n=5, alpha=1e-4 (per neighbour: 5e-4 in PyTorch's alpha/size form), beta=0.75
    local lrn = net.features[3]
    assert.are.same({5, 2, 0.75}, {lrn.size, lrn.k, lrn.beta})
    assert.is_true(math.abs(lrn.alpha / lrn.size - 1e-4) < 1e-12)
  end)

  it("normalises as the paper's formula b_i = a_i / (2 + 1e-4 * sum of a_j^2 over |j - i| <= 2)^0.75", function()
    local a = {10, -20, 30, 40, -50, 60, 70}
    local want = {}
    for i = 1, #a do
      local s = 0
      for j = math.max(1, i - 2), math.min(#a, i + 2) do s = s + a[j] * a[j] end
      want[i] = {{a[i] / (2 + 1e-4 * s) ^ 0.75}}
    end
    H.assert_tensor(net.features[3](cnn.tensor(a):view(1, #a, 1, 1)), {want}, {rtol = 1e-5})
  end)

  it("maps 1x3x227x227 to 1x1000 through 256x6x6 features (eval mode)", function()
    net:eval()
    cnn.manual_seed(1)
    local x = cnn.randn(1, 3, 227, 227)
    local feats, y
    cnn.no_grad(function()
      feats = net.features(x)
      y = net.classifier(net.avgpool(feats):flatten(2))
    end)
    -- 227 -conv11/4-> 55 -pool3/2-> 27 -conv5p2-> 27 -pool-> 13 -convs-> 13 -pool-> 6
    assert.are.same({1, 256, 6, 6}, feats:shape())
    assert.are.same({1, 1000}, y:shape())
  end)

  it("takes one SGD training step at batch 2: every parameter gets a gradient and moves by -lr * grad", function()
    net:train()
    cnn.manual_seed(2)
    local x = cnn.randn(2, 3, 227, 227)
    local labels = cnn.tensor({3, 999}, {dtype = "int64"})
    local opt = cnn.optim.SGD(net:parameters(), {lr = 0.01})
    local before = net.features[1].bias:clone()
    opt:zero_grad()
    local logits = net(x)
    assert.are.same({2, 1000}, logits:shape())
    local loss = F.cross_entropy(logits, labels)
    loss:backward()
    for _, p in ipairs(net:named_parameters()) do
      assert.is_not_nil(p[2].grad, p[1] .. " has no gradient")
      assert.are.same(p[2]:shape(), p[2].grad:shape())
    end
    -- d loss / d bias of the last layer is mean over the batch of softmax(logits) - onehot(label)
    local p = H.values(F.softmax(logits:detach(), 2))
    p[3] = p[3] - 1 -- sample 1, label 3
    p[1000 + 999] = p[1000 + 999] - 1 -- sample 2, label 999
    local g = H.values(net.classifier[7].bias.grad)
    for c = 1, 1000 do
      assert.is_true(H.close(g[c], (p[c] + p[1000 + c]) / 2, 1e-4, 1e-7), "classifier.6.bias grad " .. c)
    end
    local grad = net.features[1].bias.grad:clone()
    opt:step()
    assert.is_true(max_diff(net.features[1].bias, before - grad * 0.01) < 1e-6)
    assert.is_true(grad:abs():sum():item() > 0)
  end)
end)

describe("models.alexnet_cifar", function()
  it("has the documented 3x32x32 layers and 7,510,218 parameters for 10 classes", function()
    local net = models.alexnet_cifar()
    local hand = conv_count(48, 3, 5, true) + conv_count(128, 48, 5, true) + conv_count(192, 128, 3, true) +
      conv_count(192, 192, 3, true) + conv_count(128, 192, 3, true) +
      linear_count(2048, 128 * 3 * 3) + linear_count(2048, 2048) + linear_count(10, 2048)
    assert.are.equal(7510218, hand)
    assert.are.equal(hand, net:num_parameters())
    local names = {}
    for _, p in ipairs(net:named_parameters()) do names[#names + 1] = p[1] end
    assert.are.same({"features.0.weight", "features.0.bias", "features.4.weight", "features.4.bias",
      "features.8.weight", "features.8.bias", "features.10.weight", "features.10.bias", "features.12.weight",
      "features.12.bias", "classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias",
      "classifier.6.weight", "classifier.6.bias"}, names)
    -- 32 -pool3/2-> 15 -pool-> 7 -pool-> 3, as the file header says
    local x = cnn.randn(1, 3, 32, 32)
    local shapes = {}
    cnn.no_grad(function()
      for i = 1, #net.features do
        x = net.features[i](x)
        shapes[i] = table.concat(x:shape(), "x")
      end
    end)
    assert.are.same({"1x48x32x32", "1x48x32x32", "1x48x32x32", "1x48x15x15", "1x128x15x15", "1x128x15x15",
      "1x128x15x15", "1x128x7x7", "1x192x7x7", "1x192x7x7", "1x192x7x7", "1x192x7x7", "1x128x7x7", "1x128x7x7",
      "1x128x3x3"}, shapes)
    assert.are.equal(62, models.alexnet_cifar{num_classes = 62}.classifier[7].out_features)
  end)

  it("runs forward and backward; the input gradient matches a finite difference", function()
    cnn.manual_seed(3)
    local net = models.alexnet_cifar()
    -- training mode (dropout on): every parameter gets a gradient of its shape
    local y = net(cnn.randn(2, 3, 32, 32))
    assert.are.same({2, 10}, y:shape())
    F.cross_entropy(y, cnn.tensor({2, 3}, {dtype = "int64"})):backward()
    for _, p in ipairs(net:named_parameters()) do
      assert.is_not_nil(p[2].grad, p[1])
      assert.are.same(p[2]:shape(), p[2].grad:shape())
    end
    -- eval mode (dropout off, deterministic): the directional derivative along a random v
    -- against a central difference in float32
    net:eval()
    local x = cnn.randn(2, 3, 32, 32):requires_grad_()
    local labels = cnn.tensor({1, 10}, {dtype = "int64"})
    F.cross_entropy(net(x), labels):backward()
    assert.are.same({2, 3, 32, 32}, x.grad:shape())
    local v = cnn.randn(2, 3, 32, 32)
    local dir = (x.grad * v):sum():item()
    local eps = 1e-2
    local function f(t) return cnn.no_grad(function() return F.cross_entropy(net(t), labels):item() end) end
    local fd = (f(x:detach() + v * eps) - f(x:detach() - v * eps)) / (2 * eps)
    assert.is_true(H.close(fd, dir, 2e-2, 1e-4), string.format("finite difference %.6g vs backward %.6g", fd, dir))
  end)
end)

describe("models.resnet", function()
  -- one resnet18 and one resnet50 for the block: building them draws 37M random numbers
  local r18, r50
  setup(function()
    cnn.manual_seed(11)
    r18 = models.resnet{depth = 18}
    r50 = models.resnet{depth = 50}
  end)
  teardown(function() r18, r50 = nil, nil; collectgarbage() end)

  it("resnet18's state_dict equals torchvision's: names, shapes, dtypes and order, buffers included", function()
    local rows = state_rows(r18)
    assert.are.equal(#NAMES.resnet18, #rows)
    assert.are.same(NAMES.resnet18, rows)
  end)

  it("resnet50's state_dict equals torchvision's (Bottleneck, stride on the 3x3, downsample.0/.1)", function()
    assert.are.same(NAMES.resnet50, state_rows(r50))
    assert.are.same({2, 2}, r50.layer2[1].conv2.stride) -- v1.5: the 3x3 strides, not the first 1x1
    assert.are.same({1, 1}, r50.layer2[1].conv1.stride)
  end)

  it("has torchvision's parameter counts: 11,689,512 / 21,797,672 / 25,557,032", function()
    local want = {[18] = 11689512, [34] = 21797672, [50] = 25557032}
    for depth, n in pairs(want) do
      assert.are.equal(NAMES.num_parameters["resnet" .. depth], n) -- the fixture's, counted by torchvision
    end
    assert.are.equal(want[18], r18:num_parameters())
    assert.are.equal(want[50], r50:num_parameters())
    assert.are.equal(want[34], models.resnet{depth = 34}:num_parameters())
  end)

  it("initialises as torchvision: convs kaiming_normal_ fan_out/relu, BN 1 and 0", function()
    -- conv1: fan_out = 64 * 7 * 7, std sqrt(2 / 3136) = 0.02525; 9408 samples estimate it to ~1%
    local w = r18.conv1.weight
    assert.is_true(H.close(w:std():item(), math.sqrt(2 / 3136), 0.05), "conv1 std " .. w:std():item())
    assert.is_true(math.abs(w:mean():item()) < 0.002)
    local w2 = r18.layer4[1].conv2.weight -- fan_out 512 * 9: std 0.02083
    assert.is_true(H.close(w2:std():item(), math.sqrt(2 / 4608), 0.02))
    for _, m in ipairs(r18:modules()) do
      if m:is_a(nn.BatchNorm2d) then
        assert.are.equal(m.num_features, m.weight:sum():item())
        assert.are.equal(0, m.bias:abs():sum():item())
      end
    end
    -- fc keeps Linear's default U(-1/sqrt(512), 1/sqrt(512))
    assert.is_true(r18.fc.weight:abs():max():item() <= 1 / math.sqrt(512))
  end)

  it("honours zero_init_residual, num_classes and in_channels", function()
    local z = models.resnet{depth = 18, zero_init_residual = true, num_classes = 7, in_channels = 1}
    for _, layer in ipairs({z.layer1, z.layer2, z.layer3, z.layer4}) do
      for i = 1, #layer do
        assert.are.equal(0, layer[i].bn2.weight:abs():sum():item())
        assert.are.equal(layer[i].bn1.num_features, layer[i].bn1.weight:sum():item())
      end
    end
    assert.are.same({64, 1, 7, 7}, z.conv1.weight:shape())
    assert.are.same({7, 512}, z.fc.weight:shape())
    -- conv1 loses 64 * 2 * 49 weights, fc 993 * 513
    assert.are.equal(11689512 - 64 * 2 * 49 - 993 * 513, z:num_parameters())
    -- with every residual branch zeroed each block is relu(shortcut): the output still has 7 logits
    local y = cnn.no_grad(function() return z:eval()(cnn.randn(1, 1, 32, 32)) end)
    assert.are.same({1, 7}, y:shape())
  end)

  it("saves with cnn.save and loads into a fresh resnet18 with strict=true, giving the same logits", function()
    cnn.manual_seed(5)
    -- a training-mode forward moves the running statistics away from 0/1 and counts a batch
    r18:train()
    cnn.no_grad(function() r18(cnn.randn(2, 3, 64, 64)) end)
    r18:eval()
    local path = os.tmpname()
    cnn.save(path, r18:state_dict())
    local sd = cnn.load(path)
    os.remove(path)
    assert.are.equal("int64", sd["layer3.1.bn2.num_batches_tracked"]:dtype())
    assert.are.equal(1, sd["layer3.1.bn2.num_batches_tracked"]:item())
    cnn.manual_seed(6)
    local b = models.resnet{depth = 18}:eval()
    local missing, unexpected = b:load_state_dict(sd, {strict = true})
    assert.are.same({}, missing)
    assert.are.same({}, unexpected)
    assert.are.equal(0, max_diff(r18.layer2[1].bn1.running_var, b.layer2[1].bn1.running_var))
    local x = cnn.randn(1, 3, 64, 64)
    local ya, yb = cnn.no_grad(function() return r18(x), b(x) end)
    assert.are.same({1, 1000}, ya:shape())
    assert.are.equal(0, max_diff(ya, yb))
  end)

  it("trains with each block's end fused (bn + shortcut + relu, one node) bit for bit as the unfused graph", function()
    -- The second copy's ReLUs are a subclass, which the blocks do not fuse: the same operations in
    -- sequence. BasicBlock (18) and Bottleneck (50), projection shortcuts included.
    local NoFuse = nn.ReLU:extend("ReLU")
    for _, r in ipairs({{18, 8}, {50, 16}}) do
      local depth, blocks = r[1], r[2]
      cnn.manual_seed(4)
      local fused = models.resnet{depth = depth, num_classes = 10}
      local plain = models.resnet{depth = depth, num_classes = 10}
      plain:load_state_dict(fused:state_dict())
      for _, m in ipairs(plain:modules()) do
        if m.relu then m.relu = NoFuse(true) end
      end
      local ends = 0 -- calls with a shortcut: one per block
      for _, m in ipairs(fused:modules()) do
        if m:is_a(nn.BatchNorm2d) then
          m._forward_relu = function(self, y, res)
            if res then ends = ends + 1 end
            return nn.BatchNorm2d._forward_relu(self, y, res)
          end
        end
      end
      local x, labels = cnn.randn(2, 3, 64, 64), cnn.tensor({1, 3}, {dtype = "int64"})
      local l1, l2 = F.cross_entropy(fused(x), labels), F.cross_entropy(plain(x), labels)
      assert.are.equal(blocks, ends)
      assert.are.equal(l2:item(), l1:item())
      l1:backward()
      l2:backward()
      local p1, p2 = fused:named_parameters(), plain:named_parameters()
      for i, p in ipairs(p1) do assert.are.equal(0, max_diff(p[2].grad, p2[i][2].grad), p[1]) end
      local s1, s2 = fused:state_dict(), plain:state_dict()
      for _, k in ipairs(fused:state_dict_keys()) do
        assert.are.equal(0, max_diff(s1[k]:float(), s2[k]:float()), k)
      end
    end
  end)

  it("resnet50 maps 1x3x32x32 to 1x1000 (the adaptive head takes any size >= 32)", function()
    r50:eval()
    local y = cnn.no_grad(function() return r50(cnn.randn(1, 3, 32, 32)) end)
    assert.are.same({1, 1000}, y:shape())
  end)
end)

describe("models.resnet_cifar", function()
  it("has He et al.'s parameter counts: 269,722 at depth 20 and 853,018 at 56 (option A)", function()
    assert.are.equal(269722, cifar_resnet_count(3, 10))
    assert.are.equal(853018, cifar_resnet_count(9, 10))
    assert.are.equal(269722, models.resnet_cifar{depth = 20}:num_parameters())
    assert.are.equal(853018, models.resnet_cifar{depth = 56}:num_parameters())
    assert.are.equal(cifar_resnet_count(5, 100), models.resnet_cifar{depth = 32, num_classes = 100}:num_parameters())
    -- option B projects the two widening shortcuts: 272,474 at depth 20
    assert.are.equal(272474, cifar_resnet_count(3, 10, true))
    local b = models.resnet_cifar{depth = 20, shortcut = "B"}
    assert.are.equal(272474, b:num_parameters())
    assert.are.same({32, 16, 1, 1}, b.layer2[1].downsample[1].weight:shape())
    assert.are.same({"running_mean", "running_var", "num_batches_tracked"}, (function()
      local out = {}
      for _, p in ipairs(b.layer3[1].downsample[2]:named_buffers()) do out[#out + 1] = p[1] end
      return out
    end)())
  end)

  it("option A shortcuts subsample x[:, :, ::2, ::2] and pad zero channels half before, half after", function()
    local net = models.resnet_cifar{depth = 20}
    local sc = net.layer2[1].downsample
    assert.are.equal("Shortcut", sc:class_name())
    assert.are.equal(0, #sc:parameters())
    assert.are.equal(0, #sc:buffers())
    local x = cnn.arange(2 * 4 * 3):float():view(1, 2, 4, 3) + 1 -- channel c, row r, col k: 12c + 3r + k + 1
    local Shortcut = require("cnn.models.resnet").Shortcut
    local y = Shortcut(2, 6, 2)(x)
    -- rows 0, 2 and cols 0, 2 (0-based) of each channel, 2 zero channels before and after
    H.assert_tensor(y, {{{{0, 0}, {0, 0}}, {{0, 0}, {0, 0}}, {{1, 3}, {7, 9}}, {{13, 15}, {19, 21}},
      {{0, 0}, {0, 0}}, {{0, 0}, {0, 0}}}})
    -- an odd difference puts the extra channel after
    assert.are.same({1, 5, 2, 2}, Shortcut(2, 5, 2)(x):shape())
    H.assert_tensor(Shortcut(2, 5, 2)(x):select(2, 2), {{{1, 3}, {7, 9}}})
  end)

  it("loads PyTorch's ResNet-20 with strict=true and gives PyTorch's eval logits within 1e-4", function()
    local sd = cnn.load(R20_WEIGHTS)
    local net = models.resnet_cifar{depth = 20}
    local missing, unexpected = net:load_state_dict(sd, {strict = true})
    assert.are.same({}, missing)
    assert.are.same({}, unexpected)
    assert.are.equal(3, net.bn1.num_batches_tracked:item()) -- the exporter's distinct counts
    net:eval()
    local y = cnn.no_grad(function() return net(fixture_tensor(R20.input)) end)
    H.assert_tensor(y, R20.eval_logits, {atol = 1e-4})
  end)

  it("matches PyTorch in training mode: logits, loss, gradients and running statistics", function()
    local net = models.resnet_cifar{depth = 20}
    net:load_state_dict((cnn.load(R20_WEIGHTS)))
    net:train()
    local logits = net(fixture_tensor(R20.input))
    H.assert_tensor(logits, R20.train_logits, {atol = 1e-4})
    local loss = F.cross_entropy(logits, cnn.tensor(R20.labels, {dtype = "int64"}))
    assert.is_true(H.close(loss:item(), R20.loss, 1e-5, 1e-5))
    loss:backward()
    local params = {}
    for _, p in ipairs(net:named_parameters()) do params[p[1]] = p[2] end
    for name, g in pairs(R20.grads) do
      H.assert_tensor(params[name].grad, g, {atol = 2e-5, rtol = 1e-4})
    end
    local sd = net:state_dict()
    for name, want in pairs(R20.after) do
      if type(want) == "number" then
        assert.are.equal(want, sd[name]:item(), name)
      else
        H.assert_tensor(sd[name], want, {atol = 1e-5, rtol = 1e-5})
      end
    end
  end)

  it("fuses each BN and ReLU pair, with the unfused network's loss, gradients and running statistics", function()
    -- Two copies of PyTorch's ResNet-20; the second's ReLUs are a subclass (same name and repr),
    -- which the blocks do not fuse. Counting _forward_relu calls shows which path ran.
    local sd = cnn.load(R20_WEIGHTS)
    local fused, plain = models.resnet_cifar{depth = 20}, models.resnet_cifar{depth = 20}
    fused:load_state_dict(sd)
    plain:load_state_dict(sd)
    local NoFuse = nn.ReLU:extend("ReLU")
    local calls = 0
    for _, m in ipairs(fused:modules()) do
      if m:is_a(nn.BatchNorm2d) then
        m._forward_relu = function(self, ...) calls = calls + 1; return nn.BatchNorm2d._forward_relu(self, ...) end
      end
    end
    for _, m in ipairs(plain:modules()) do
      if m.relu then m.relu = NoFuse(true) end
    end
    assert.are.equal(tostring(models.resnet_cifar{depth = 20}), tostring(plain))
    assert.are.same(state_rows(fused), state_rows(plain))
    local x, labels = fixture_tensor(R20.input), cnn.tensor(R20.labels, {dtype = "int64"})
    local losses = {}
    for i, net in ipairs({fused, plain}) do
      net:train()
      local loss = F.cross_entropy(net(x), labels)
      loss:backward()
      losses[i] = loss:item()
    end
    assert.are.equal(19, calls) -- the stem, the 9 blocks' bn1 and their bn2 (with the shortcut)
    assert.is_true(H.close(losses[1], losses[2], 1e-6, 0))
    local p1, p2 = fused:named_parameters(), plain:named_parameters()
    for i, p in ipairs(p1) do
      local a, b = p[2].grad, p2[i][2].grad
      assert(max_diff(a, b) <= 1e-5 * b:abs():max():item() + 1e-12, p[1])
    end
    local s1, s2 = fused:state_dict(), plain:state_dict()
    for _, k in ipairs(fused:state_dict_keys()) do
      assert(max_diff(s1[k]:float(), s2[k]:float()) <= 1e-6, k)
    end
    fused:eval()
    plain:eval()
    -- eval with grad mode on: the pairs fuse as in training (under no_grad the convolutions fold
    -- BatchNorm into their weights instead, tests/lua/inference_spec.lua)
    local y1 = fused(x):detach()
    local y2 = plain(x):detach()
    assert.are.equal(38, calls)
    assert(max_diff(y1, y2) <= 1e-6)
  end)

  it("BatchNorm2d:_forward_relu keeps forward's bookkeeping: cumulative averages, num_batches_tracked", function()
    cnn.manual_seed(3)
    local a, b = nn.BatchNorm2d(3, {momentum = false}), nn.BatchNorm2d(3, {momentum = false})
    local x1, x2 = cnn.randn(2, 3, 4, 4), cnn.randn(2, 3, 4, 4) + 1
    for _, x in ipairs({x1, x2}) do
      H.assert_tensor(a:_forward_relu(x), {shape = {2, 3, 4, 4}, data = H.values(F.relu(b(x)))})
    end
    assert.are.equal(2, a.num_batches_tracked:item())
    H.assert_tensor(a.running_mean, H.values(b.running_mean))
    H.assert_tensor(a.running_var, H.values(b.running_var))
    a:eval()
    b:eval()
    H.assert_tensor(a:_forward_relu(x1), {shape = {2, 3, 4, 4}, data = H.values(F.relu(b(x1)))})
    assert.are.equal(2, a.num_batches_tracked:item())
  end)

  it("honours in_channels and num_classes, and rejects PyTorch weights of another depth", function()
    local net = models.resnet_cifar{depth = 8, in_channels = 1, num_classes = 5}
    assert.are.same({16, 1, 3, 3}, net.conv1.weight:shape())
    local y = cnn.no_grad(function() return net(cnn.randn(2, 1, 32, 32)) end)
    assert.are.same({2, 5}, y:shape())
    local r32 = models.resnet_cifar{depth = 32}
    H.assert_error(function() r32:load_state_dict((cnn.load(R20_WEIGHTS))) end,
      "load_state_dict", "missing key", "layer1.3.conv1.weight")
    H.assert_usable()
  end)
end)

describe("models errors", function()
  local cases = {
    {function() return models.resnet{depth = 19} end, "resnet", "depth must be 18, 34 or 50, got 19"},
    {function() return models.resnet{depth = "18"} end, "resnet", 'depth must be 18, 34 or 50, got string "18"'},
    {function() return models.resnet{deph = 18} end, "resnet", "unknown option 'deph'"},
    {function() return models.resnet{num_classes = 0} end, "resnet", "num_classes must be a positive integer"},
    {function() return models.resnet{zero_init_residual = 1} end, "resnet", "zero_init_residual must be a boolean"},
    {function() return models.resnet(18) end, "resnet", "expected an options table"},
    {function() return models.resnet_cifar{depth = 21} end, "resnet_cifar", "depth must be 6n%+2"},
    {function() return models.resnet_cifar{depth = 2} end, "resnet_cifar", "depth must be 6n%+2"},
    {function() return models.resnet_cifar{depth = 20.5} end, "resnet_cifar", "depth"},
    {function() return models.resnet_cifar{shortcut = "C"} end, "resnet_cifar", "shortcut must be"},
    {function() return models.resnet_cifar{in_channels = 0} end, "resnet_cifar",
     "in_channels must be a positive integer"},
    {function() return models.resnet_cifar{classes = 10} end, "resnet_cifar", "unknown option 'classes'"},
    {function() return models.alexnet{num_classes = 1.5} end, "alexnet", "num_classes must be a positive integer"},
    {function() return models.alexnet{depth = 8} end, "alexnet", "unknown option 'depth'"},
    {function() return models.alexnet_cifar{in_channels = "3"} end, "alexnet_cifar", "in_channels"},
    {function() return models.alexnet_cifar("cifar") end, "alexnet_cifar", "expected an options table"},
  }
  it("name the function and the problem, and leave the runtime usable", function()
    for _, c in ipairs(cases) do
      H.assert_error(c[1], c[2] .. ": ", c[3])
    end
    H.assert_usable()
  end)

  it("report a wrong input through the layer that rejects it", function()
    local net = models.resnet_cifar{depth = 8}
    H.assert_error(function() return net(cnn.randn(1, 1, 32, 32)) end, "conv2d", "channels")
    H.assert_error(function() return net(cnn.randn(3, 32, 32)) end, {"conv2d", "BatchNorm2d"})
    assert.are.same({1, 10}, cnn.no_grad(function() return net:eval()(cnn.randn(1, 3, 32, 32)) end):shape())
  end)

  it("unknown model names are nil, as for any missing table field", function()
    assert.is_nil(models.resnet101)
  end)

  it("torchvision's names resnet18/34/50 are resnet of that depth, which they do not take as an option", function()
    assert.are.same(NAMES.resnet18, state_rows(nn.skip_init(models.resnet18, {})))
    assert.are.same(NAMES.resnet50, state_rows(nn.skip_init(models.resnet50, {})))
    assert.are.equal(21797672, nn.skip_init(models.resnet34, {}):num_parameters())
    assert.are.equal(10, nn.skip_init(models.resnet18, {num_classes = 10}).fc.out_features)
    H.assert_error(function() return models.resnet18{depth = 34} end, "resnet18: ", "unknown option 'depth'")
    H.assert_error(function() return models.resnet50{num_classes = 0} end, "resnet50: ", "num_classes must be")
    collectgarbage()
  end)
end)
