-- Residual networks (He et al. 2016): torchvision's ImageNet ResNet-18/34/50 with its module tree,
-- so parameter AND buffer names, order and shapes equal torchvision's state_dict (a torchvision
-- checkpoint exported to safetensors loads with strict=true), and the paper's CIFAR networks.
--
-- models.resnet{depth=18|34|50, num_classes=1000, in_channels=3, zero_init_residual=false}, for
-- 3x224x224 (any size >= 32 works: the head pools adaptively):
--   conv1    7x7/2 64, no bias; bn1; relu         64x112x112
--   maxpool  3x3/2 pad 1                          64x56x56
--   layer1   blocks of 64 planes,  stride 1       64*e x56x56
--   layer2   blocks of 128 planes, stride 2       128*e x28x28
--   layer3   blocks of 256 planes, stride 2       256*e x14x14
--   layer4   blocks of 512 planes, stride 2       512*e x7x7
--   avgpool  adaptive average to 1x1; fc  512*e -> num_classes
-- with e the block expansion. BasicBlock (18: 2,2,2,2 blocks; 34: 3,4,6,3; e=1): conv1 3x3
-- (stride), bn1, relu, conv2 3x3, bn2, plus the shortcut. Bottleneck (50: 3,4,6,3; e=4): conv1
-- 1x1, bn1, conv2 3x3 (stride here, torchvision's "v1.5"), bn2, conv3 1x1 to 4x planes, bn3. A
-- block whose stride or width changes projects its shortcut: downsample.0 (1x1 conv, stride, no
-- bias), downsample.1 (BatchNorm). Parameters: 11,689,512 (18), 21,797,672 (34), 25,557,032 (50).
-- Initialisation as torchvision: convs kaiming_normal_(mode="fan_out", nonlinearity="relu"), BN
-- weight 1 and bias 0, fc PyTorch's Linear default; zero_init_residual zeroes each block's last BN
-- weight (bn2, or bn3 in a Bottleneck).
--
-- models.resnet_cifar{depth=20|32|44|56|110, num_classes=10, in_channels=3, shortcut="A"}, for
-- 3x32x32 (He et al. 2016, section 4.2), n = (depth - 2) / 6 BasicBlocks per stage:
--   conv1 3x3 16, no bias; bn1; relu              16x32x32
--   layer1  n blocks, 16 planes, stride 1         16x32x32
--   layer2  n blocks, 32 planes, stride 2         32x16x16
--   layer3  n blocks, 64 planes, stride 2         64x8x8
--   avgpool adaptive average to 1x1; fc 64 -> num_classes
-- The two blocks that halve the size and double the width take option A shortcuts: parameter-free
-- (downsample is a Shortcut module with no state), the input subsampled x[:, :, ::2, ::2] and
-- zero channels padded half before and half after it, as the widely used PyTorch CIFAR ResNets do
-- (so their checkpoints load here once "linear." is renamed "fc."). Option "B" projects them as
-- torchvision does (downsample.0/.1). Parameters with option A: 269,722 (20), 464,154 (32),
-- 658,586 (44), 853,018 (56), 1,727,962 (110); option B adds 2,752 (272,474 at depth 20).
-- Initialised as the ImageNet ResNets.
local cnn_core = require "cnn.core"
local describe = require("cnn.nn.util").describe -- a value in a message: "string \"18\"", not 18
local nn = require "cnn.nn"
local F = require "cnn.F"
local init = nn.init

local M = {}

-- A Conv2d (the same layer: is_a(nn.Conv2d), same name and repr) whose reset_parameters is
-- torchvision's ResNet conv initialisation, kaiming_normal_(mode="fan_out", nonlinearity="relu"),
-- so each weight is drawn once instead of filled by Conv2d's default and then redrawn.
local Conv2d = nn.Conv2d:extend("Conv2d")
Conv2d.keeps_no_activations = true -- nn.Conv2d's forward (see Sequential:forward)

function Conv2d:reset_parameters()
  init.kaiming_normal_(self.weight, 0, "fan_out", "relu")
  if self.bias then init.zeros_(self.bias) end
end

local function conv3x3(cin, cout, stride)
  return Conv2d(cin, cout, 3, {stride = stride, padding = 1, bias = false})
end

local function conv1x1(cin, cout, stride)
  return Conv2d(cin, cout, 1, {stride = stride, bias = false})
end

-- relu(bn(x)), fused into one pass each way (BatchNorm:_forward_relu) when bn and relu are the
-- stock nn.BatchNorm2d and nn.ReLU with their own forward: the same values and gradients, and the
-- ReLU never reads or writes the activations. A subclass (even one of the same name), a
-- replaced forward or a module with hooks keeps the two calls.
local BN_MT, BN_FORWARD = nn.BatchNorm2d.__mt, nn.BatchNorm2d.forward
local RELU_MT, RELU_FORWARD = nn.ReLU.__mt, nn.ReLU.forward

local function fuses(bn, relu)
  return getmetatable(bn) == BN_MT and getmetatable(relu) == RELU_MT and bn.forward == BN_FORWARD and
    relu.forward == RELU_FORWARD and not bn:_has_hooks() and not relu:_has_hooks()
end

local function bn_relu(bn, relu, x)
  if fuses(bn, relu) then return bn:_forward_relu(x) end
  return relu(bn(x))
end

-- Closes an activation's box a block made and no longer needs: in inference its storage goes back
-- to the allocator for the next layer's output at once, instead of when the collector finds it; in
-- training the graph keeps its own reference (see let_go).
local function free(t) getmetatable(t).__close(t) end

-- Whether stock layers made an output and kept it to themselves (in training too: see let_go)
local function made_by(...)
  for i = 1, select("#", ...) do
    local m = select(i, ...)
    if m ~= nil and not nn._keeps_no_activations(m, true) then return false end
  end
  return true
end

-- Lets go of t, an activation that stock leaf layers (the modules given: made it, or read it)
-- passed between them inside a block, once the next one has consumed it (out): in training the
-- graph keeps what backward needs, and that memory comes back when backward releases it, not
-- when the collector finds t (as Sequential:forward does between its children). A module with
-- hooks, a replaced forward or a class not known to keep nothing keeps t.
local function let_go(t, out, ...)
  if not rawequal(t, out) and made_by(...) then free(t) end
end

-- relu(bn(conv(x))), or bn(conv(x)) when relu is nil. In eval mode under no_grad the three are one
-- convolution with BatchNorm's scale and shift and the ReLU applied as it stores (nn.Conv2d's
-- inference fusion); the second result is then true: the output is this block's own (no module
-- or hook saw it), free to be written in place and freed.
local function conv_bn(conv, bn, relu, x)
  local y = nn._fused_forward(conv, bn, relu, x)
  if y then return y, true end
  local c = conv(x)
  local out = relu and bn_relu(bn, relu, c) or bn(c)
  let_go(c, out, conv, bn, relu)
  return out, false
end

local function inference(m) return not m.training and not cnn_core.is_grad_enabled() end

-- m(x), then x freed when it is own (made in this forward and seen by nothing else) and m keeps no
-- reference to it; returns the output and whether it is own in the same sense. In training x's
-- box is let go of (see let_go), its memory coming back when backward releases the graph.
local function step(m, x, own)
  local y = m(x)
  if rawequal(x, y) then return y, own end
  local pure = inference(m) and nn._keeps_no_activations(m) or made_by(m)
  if own and pure then free(x) end
  return y, pure
end

-- A block's shortcut: x itself, or downsample(x) with whether that output is own (see step)
local function block_shortcut(block, x)
  if not block.downsample then return x, false end
  local y = block.downsample(x)
  return y, not rawequal(x, y) and inference(block.downsample) and nn._keeps_no_activations(block.downsample)
end

-- relu(bn(conv(x)) + identity) for a block's end, or nil when it does not fuse (see conv_bn):
-- identity is added and the ReLU applied as the convolution stores its output, and identity is
-- freed when own.
local function conv_bn_add_relu(conv, bn, relu, x, identity, own_identity)
  local y = nn._fused_forward(conv, bn, relu, x, identity)
  if y and own_identity then free(identity) end
  return y
end

-- relu(bn(conv(x)) + identity) for a block's end in training (or with autograd on): BatchNorm,
-- the sum and the ReLU in one pass each way when they fuse (see bn_relu), else in steps.
local function block_end_training(block, conv, bn, x, block_input)
  local y = conv(x)
  if fuses(bn, block.relu) then
    local out = bn:_forward_relu(y, block.downsample and block.downsample(block_input) or block_input)
    let_go(y, out, conv, bn)
    return out
  end
  local out = bn(y)
  let_go(y, out, conv, bn)
  local identity = block_input
  if block.downsample then identity = block.downsample(block_input) end
  return block.relu(out + identity)
end

-- relu(out + identity) for a block's end; in place on out when out is the block's own (inference)
local function add_relu(relu, out, own, identity)
  if own and getmetatable(relu) == RELU_MT and relu.forward == RELU_FORWARD and not relu:_has_hooks() then
    return out:add_(identity):clamp_(0)
  end
  return relu(out + identity)
end

-- relu(bn(conv(x)) + shortcut) for a block's end in inference, x the block's own activation
-- (freed once consumed): the shortcut first, then conv + bn + identity + relu in one pass when
-- it fuses, else in steps.
local function block_end_inference(block, conv, bn, x, block_input)
  local identity, own_id = block_shortcut(block, block_input)
  local y = conv_bn_add_relu(conv, bn, block.relu, x, identity, own_id)
  if y then
    free(x)
    return y
  end
  local out, own = conv_bn(conv, bn, nil, x)
  if own then free(x) end
  return add_relu(block.relu, out, own, identity)
end

-- ---- blocks ------------------------------------------------------------------------------------

local BasicBlock = nn.Module:extend("BasicBlock")
BasicBlock.expansion = 1
M.BasicBlock = BasicBlock

-- x: (N, inplanes, H, W) -> (N, planes, H/stride, W/stride)
function BasicBlock:init(inplanes, planes, stride, downsample)
  self.conv1 = conv3x3(inplanes, planes, stride)
  self.bn1 = nn.BatchNorm2d(planes)
  self.relu = nn.ReLU(true)
  self.conv2 = conv3x3(planes, planes, 1)
  self.bn2 = nn.BatchNorm2d(planes)
  self.downsample = downsample -- nil: the identity
  self.stride = stride
end

function BasicBlock:forward(x)
  local out1, own1 = conv_bn(self.conv1, self.bn1, self.relu, x)
  if own1 then return block_end_inference(self, self.conv2, self.bn2, out1, x) end
  local out = block_end_training(self, self.conv2, self.bn2, out1, x)
  let_go(out1, out, self.conv1, self.bn1, self.relu, self.conv2)
  return out
end

BasicBlock.last_bn = "bn2"
BasicBlock.keeps_no_activations = true -- see Sequential:forward

local Bottleneck = nn.Module:extend("Bottleneck")
Bottleneck.expansion = 4
M.Bottleneck = Bottleneck

-- x: (N, inplanes, H, W) -> (N, 4 * planes, H/stride, W/stride); the stride is on the 3x3 conv.
function Bottleneck:init(inplanes, planes, stride, downsample)
  self.conv1 = conv1x1(inplanes, planes, 1)
  self.bn1 = nn.BatchNorm2d(planes)
  self.conv2 = conv3x3(planes, planes, stride)
  self.bn2 = nn.BatchNorm2d(planes)
  self.conv3 = conv1x1(planes, planes * 4, 1)
  self.bn3 = nn.BatchNorm2d(planes * 4)
  self.relu = nn.ReLU(true)
  self.downsample = downsample
  self.stride = stride
end

function Bottleneck:forward(x)
  local out1, own1 = conv_bn(self.conv1, self.bn1, self.relu, x)
  local out2, own2 = conv_bn(self.conv2, self.bn2, self.relu, out1)
  if own1 and own2 then free(out1) end
  if own2 then return block_end_inference(self, self.conv3, self.bn3, out2, x) end
  if not own1 then let_go(out1, out2, self.conv1, self.bn1, self.relu, self.conv2) end
  local out = block_end_training(self, self.conv3, self.bn3, out2, x)
  let_go(out2, out, self.conv2, self.bn2, self.relu, self.conv3)
  return out
end

Bottleneck.last_bn = "bn3"
Bottleneck.keeps_no_activations = true

-- Option A shortcut: (N, cin, H, W) -> (N, cout, ceil(H/2), ceil(W/2)), the input at even rows
-- and columns with (cout - cin) / 2 zero channels before it and the rest after. No state.
local Shortcut = nn.Module:extend("Shortcut")
M.Shortcut = Shortcut

function Shortcut:init(cin, cout, stride)
  self.in_channels, self.out_channels, self.stride = cin, cout, stride
  self.before = (cout - cin) // 2
  self.after = cout - cin - self.before
end

-- (one pass each way: F.pad_channels)
function Shortcut:forward(x)
  if self.stride == 1 and self.before == 0 and self.after == 0 then return x end
  return F.pad_channels(x, self.before, self.after, {stride = self.stride})
end

Shortcut.keeps_no_activations = true

function Shortcut:extra_repr()
  return string.format("%d, %d, stride=%d, zero-padded", self.in_channels, self.out_channels, self.stride)
end

-- ---- networks ----------------------------------------------------------------------------------

-- torchvision's ResNet init loop: every conv kaiming_normal_ fan_out/relu (done as each Conv2d
-- above is made), every BN weight 1 and bias 0 (BatchNorm2d's own defaults, set again here as
-- torchvision does); with zero_init_residual, each block's last BN weight 0 (the block starts as
-- its shortcut).
local function init_weights(net, zero_init_residual)
  for _, m in ipairs(net:modules()) do
    if m:is_a(nn.BatchNorm2d) then
      init.constant_(m.weight, 1)
      init.constant_(m.bias, 0)
    end
  end
  if zero_init_residual then
    for _, m in ipairs(net:modules()) do
      if m:is_a(BasicBlock) or m:is_a(Bottleneck) then init.constant_(m[m.last_bn].weight, 0) end
    end
  end
end

-- A stage of `blocks` blocks, the first with the stride and, when the stride or the width
-- changes, a projected (or option A) shortcut. Returns the stage and the width it ends with.
local function make_layer(block, inplanes, planes, blocks, stride, shortcut)
  local out = planes * block.expansion
  local downsample
  if stride ~= 1 or inplanes ~= out then
    if shortcut == "A" then
      downsample = Shortcut(inplanes, out, stride)
    else
      downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    end
  end
  local layer = nn.Sequential(block(inplanes, planes, stride, downsample))
  for _ = 2, blocks do layer:add(block(out, planes, 1)) end
  return layer, out
end

local ResNet = nn.Module:extend("ResNet")
M.ResNet = ResNet

-- x: (N, in_channels, H, W) -> logits (N, num_classes)
function ResNet:init(block, layers, num_classes, in_channels, zero_init_residual)
  local w = 64
  self.conv1 = Conv2d(in_channels, w, 7, {stride = 2, padding = 3, bias = false})
  self.bn1 = nn.BatchNorm2d(w)
  self.relu = nn.ReLU(true)
  self.maxpool = nn.MaxPool2d(3, {stride = 2, padding = 1})
  self.layer1, w = make_layer(block, w, 64, layers[1], 1)
  self.layer2, w = make_layer(block, w, 128, layers[2], 2)
  self.layer3, w = make_layer(block, w, 256, layers[3], 2)
  self.layer4, w = make_layer(block, w, 512, layers[4], 2)
  self.avgpool = nn.AdaptiveAvgPool2d({1, 1})
  self.fc = nn.Linear(w, num_classes)
  init_weights(self, zero_init_residual)
end

function ResNet:forward(x)
  local own
  x, own = conv_bn(self.conv1, self.bn1, self.relu, x)
  own = own or made_by(self.conv1, self.bn1, self.relu)
  x, own = step(self.maxpool, x, own)
  x, own = step(self.layer1, x, own) -- (in inference each activation is freed once consumed)
  x, own = step(self.layer2, x, own)
  x, own = step(self.layer3, x, own)
  x, own = step(self.layer4, x, own)
  x = step(self.avgpool, x, own)
  return self.fc(x:flatten(2))
end

local CifarResNet = nn.Module:extend("CifarResNet")
M.CifarResNet = CifarResNet

-- x: (N, in_channels, 32, 32) -> logits (N, num_classes)
function CifarResNet:init(n, num_classes, in_channels, shortcut)
  local w = 16
  self.conv1 = conv3x3(in_channels, w, 1)
  self.bn1 = nn.BatchNorm2d(w)
  self.relu = nn.ReLU(true)
  self.layer1, w = make_layer(BasicBlock, w, 16, n, 1, shortcut)
  self.layer2, w = make_layer(BasicBlock, w, 32, n, 2, shortcut)
  self.layer3, w = make_layer(BasicBlock, w, 64, n, 2, shortcut)
  self.avgpool = nn.AdaptiveAvgPool2d({1, 1})
  self.fc = nn.Linear(w, num_classes)
  init_weights(self, false)
end

function CifarResNet:forward(x)
  local own
  x, own = conv_bn(self.conv1, self.bn1, self.relu, x)
  own = own or made_by(self.conv1, self.bn1, self.relu)
  x, own = step(self.layer1, x, own)
  x, own = step(self.layer2, x, own)
  x, own = step(self.layer3, x, own)
  x = step(self.avgpool, x, own)
  return self.fc(x:flatten(2))
end

-- ---- constructors ------------------------------------------------------------------------------

local function check_options(fn, opts, known)
  opts = require("cnn.util").check_options(fn, opts, known, 3)
  local classes, channels = opts.num_classes, opts.in_channels or 3
  if classes ~= nil and (math.type(classes) ~= "integer" or classes < 1) then
    error(fn .. ": num_classes must be a positive integer, got " .. describe(classes), 3)
  end
  if math.type(channels) ~= "integer" or channels < 1 then
    error(fn .. ": in_channels must be a positive integer, got " .. describe(channels), 3)
  end
  return opts, channels
end

local IMAGENET = {
  [18] = {BasicBlock, {2, 2, 2, 2}},
  [34] = {BasicBlock, {3, 4, 6, 3}},
  [50] = {Bottleneck, {3, 4, 6, 3}},
}

-- ResNet-`depth` (nil: the depth option, 18 by default) for the constructor named fn. Called in a
-- tail position by each constructor, so its errors are raised at the constructor's caller.
local function imagenet_resnet(fn, depth, opts)
  local o, channels = check_options(fn, opts,
    {depth = depth == nil or nil, num_classes = true, in_channels = true, zero_init_residual = true})
  depth = depth or o.depth or 18
  local cfg = IMAGENET[depth]
  if not cfg then error(fn .. ": depth must be 18, 34 or 50, got " .. describe(o.depth), 2) end
  local zir = o.zero_init_residual or false
  if type(zir) ~= "boolean" then
    error(fn .. ": zero_init_residual must be a boolean, got " .. type(zir), 2)
  end
  return ResNet(cfg[1], cfg[2], o.num_classes or 1000, channels, zir)
end

--- cnn.models.resnet{depth=18|34|50, num_classes=1000, in_channels=3, zero_init_residual=false} -> module
--- torchvision's ResNet-18, 34 or 50 for 3x224x224 images (any size >= 32 works).
--- The module tree, parameter and buffer names equal torchvision's, so its state_dict exported to
--- safetensors loads with {strict=true}; initialised as torchvision does. zero_init_residual zeroes
--- each block's last BatchNorm weight. resnet18, resnet34 and resnet50 are its torchvision names.
function M.resnet(opts) return imagenet_resnet("resnet", nil, opts) end

--- cnn.models.resnet18{num_classes=1000, in_channels=3, zero_init_residual=false} -> module
--- torchvision's resnet18(): cnn.models.resnet{depth=18, ...}.
function M.resnet18(opts) return imagenet_resnet("resnet18", 18, opts) end

--- cnn.models.resnet34{num_classes=1000, in_channels=3, zero_init_residual=false} -> module
--- torchvision's resnet34(): cnn.models.resnet{depth=34, ...}.
function M.resnet34(opts) return imagenet_resnet("resnet34", 34, opts) end

--- cnn.models.resnet50{num_classes=1000, in_channels=3, zero_init_residual=false} -> module
--- torchvision's resnet50(): cnn.models.resnet{depth=50, ...}.
function M.resnet50(opts) return imagenet_resnet("resnet50", 50, opts) end

--- cnn.models.resnet_cifar{depth=20|32|44|56|110, num_classes=10, in_channels=3, shortcut="A"} -> module
--- He et al.'s (2016) ResNets for 3x32x32 images: (depth - 2) / 6 blocks per stage (any 6n+2 depth).
--- shortcut "A" (the paper's CIFAR choice) subsamples and zero-pads where the width doubles, with no
--- parameters (269,722 at depth 20); "B" projects with 1x1 convolutions, as torchvision does.
function M.resnet_cifar(opts)
  local o, channels = check_options("resnet_cifar", opts,
    {depth = true, num_classes = true, in_channels = true, shortcut = true})
  local depth = o.depth or 20
  depth = math.type(depth) == "float" and math.tointeger(depth) or depth -- 20.0 is 20
  if math.type(depth) ~= "integer" or depth < 8 or (depth - 2) % 6 ~= 0 then
    error("resnet_cifar: depth must be 6n+2 for n >= 1 (20, 32, 44, 56, 110), got " .. describe(o.depth), 2)
  end
  local shortcut = o.shortcut or "A"
  if shortcut ~= "A" and shortcut ~= "B" then
    error("resnet_cifar: shortcut must be \"A\" (zero padding) or \"B\" (projection), got " .. describe(shortcut), 2)
  end
  return CifarResNet((depth - 2) // 6, o.num_classes or 10, channels, shortcut)
end

return M
