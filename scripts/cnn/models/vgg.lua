-- VGG (Simonyan & Zisserman 2014): five groups of 3x3 convolutions (stride 1, padding 1), each
-- group closed by a 2x2 max-pool, then three fully connected layers. Names, order and
-- initialisation are torchvision's (features.N, avgpool, classifier.N), so its state_dicts load
-- with strict=true.
--
-- models.vgg{depth=11|13|16|19, batch_norm=false, num_classes=1000, in_channels=3, dropout=0.5},
-- for 3x224x224 (any size from 32 up: the adaptive pool makes the 512x7x7 the classifier expects):
--   depth 11 (A)  64 M 128 M 256 256 M 512 512 M 512 512 M
--   depth 13 (B)  64 64 M 128 128 M 256 256 M 512 512 M 512 512 M
--   depth 16 (D)  64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M
--   depth 19 (E)  64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M
--   (a number: conv 3x3 pad 1 to that width [+ BatchNorm2d] + ReLU; M: max-pool 2x2/2)
--   avgpool      adaptive average pool to 7x7
--   classifier   .0 FC 25088->4096, .1 ReLU, .2 dropout, .3 FC 4096->4096, .4 ReLU, .5 dropout,
--                .6 FC 4096->num_classes
--   132,863,336 / 133,047,848 / 138,357,544 / 143,667,240 parameters for 1000 classes
--   (vgg16 with batch norm: 138,365,992); 102.8M of them in classifier.0.
--
-- models.vgg_cifar{depth=11|13|16|19, batch_norm=true, num_classes=10, in_channels=3, dropout=0.5},
-- for 3x32x32, as VGG is customarily trained on CIFAR-10: the same features (five pools take 32x32
-- to 512x1x1) and three fully connected layers 512->512->512->num_classes, with batch norm by
-- default. 9,756,426 (depth 11) to 20,565,834 (depth 19) parameters for 10 classes.
--
-- Initialisation as torchvision: convs kaiming_normal_(mode="fan_out", nonlinearity="relu") with
-- bias 0, BN weight 1 and bias 0, linear layers N(0, 0.01) with bias 0.
local nn = require "cnn.nn"
local describe = require("cnn.nn.util").describe -- a value in a message: "string \"18\"", not 18
local init = nn.init

local M = {}

local CFG = {
  [11] = {64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"},
  [13] = {64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"},
  [16] = {64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"},
  [19] = {64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"},
}

-- torchvision's make_layers: the feature extractor as one Sequential.
local function make_layers(cfg, batch_norm, in_channels)
  local features, c = nn.Sequential(), in_channels
  for _, v in ipairs(cfg) do
    if v == "M" then
      features:add(nn.MaxPool2d(2, {stride = 2}))
    else
      features:add(nn.Conv2d(c, v, 3, {padding = 1}))
      if batch_norm then features:add(nn.BatchNorm2d(v)) end
      features:add(nn.ReLU(true))
      c = v
    end
  end
  return features
end

local VGG = nn.Module:extend("VGG")
M.VGG = VGG

-- c: {cfg, batch_norm, in_channels, num_classes, dropout, pooled (7 or nil), hidden width}
function VGG:init(c)
  self.features = make_layers(c.cfg, c.batch_norm, c.in_channels)
  if c.pooled then self.avgpool = nn.AdaptiveAvgPool2d({c.pooled, c.pooled}) end
  local flat = 512 * (c.pooled or 1) ^ 2
  self.classifier = nn.Sequential(
    nn.Linear(flat, c.hidden), nn.ReLU(true), nn.Dropout(c.dropout),
    nn.Linear(c.hidden, c.hidden), nn.ReLU(true), nn.Dropout(c.dropout),
    nn.Linear(c.hidden, c.num_classes))
  for _, m in ipairs(self:modules()) do
    if m:is_a(nn.Conv2d) then
      init.kaiming_normal_(m.weight, 0, "fan_out", "relu")
      init.zeros_(m.bias)
    elseif m:is_a(nn.BatchNorm2d) then
      init.ones_(m.weight)
      init.zeros_(m.bias)
    elseif m:is_a(nn.Linear) then
      init.normal_(m.weight, 0, 0.01)
      init.zeros_(m.bias)
    end
  end
end

-- x: (N, C, H, W) -> logits (N, num_classes)
function VGG:forward(x)
  x = self.features(x)
  if self.avgpool then x = self.avgpool(x) end
  return self.classifier(x:flatten(2))
end

-- opts checked against defaults' names and completed from them; `fixed` (a torchvision name's
-- depth and batch_norm) is not an option but set
local function options(fn, opts, defaults, fixed)
  opts = require("cnn.util").check_options(fn, opts, defaults, 3)
  local o = {}
  for k, v in pairs(defaults) do
    if opts[k] == nil then o[k] = v else o[k] = opts[k] end
  end
  for k, v in pairs(fixed or {}) do o[k] = v end
  if math.type(o.depth) == "float" then o.depth = math.tointeger(o.depth) or o.depth end
  if not CFG[o.depth] then error(fn .. ": depth must be 11, 13, 16 or 19, got " .. describe(o.depth), 3) end
  for _, k in ipairs {"num_classes", "in_channels"} do
    if math.type(o[k]) ~= "integer" or o[k] < 1 then
      error(string.format("%s: %s must be a positive integer, got %s", fn, k, describe(o[k])), 3)
    end
  end
  if type(o.batch_norm) ~= "boolean" then
    error(fn .. ": batch_norm must be a boolean, got " .. type(o.batch_norm), 3)
  end
  if type(o.dropout) ~= "number" or not (o.dropout >= 0 and o.dropout <= 1) then -- NaN too
    error(fn .. ": dropout must be a probability in [0, 1], got " .. describe(o.dropout), 3)
  end
  return o
end

--- cnn.models.vgg{depth=16, batch_norm=false, num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's VGG-11, 13, 16 or 19 (vgg11 ... vgg19_bn by torchvision's names) for 3x224x224 images.
--- Five groups of 3x3 convolutions (padding 1) each closed by a 2x2 max-pool, an adaptive pool to
--- 7x7 and three FC layers (25088->4096->4096->num_classes). Names (features.N, classifier.N) and
--- initialisation are torchvision's, so its state_dicts load with {strict=true}; 132,863,336 to
--- 143,667,240 parameters for 1000 classes. Any input size from 32 up works.
function M.vgg(opts)
  local o = options("vgg", opts,
    {depth = 16, batch_norm = false, num_classes = 1000, in_channels = 3, dropout = 0.5})
  return VGG {cfg = CFG[o.depth], batch_norm = o.batch_norm, in_channels = o.in_channels,
    num_classes = o.num_classes, dropout = o.dropout, pooled = 7, hidden = 4096}
end

-- torchvision's vgg11 ... vgg19_bn: vgg with the depth and batch_norm the name gives. Called in a tail
-- position by each, so options' errors are raised at the constructor's caller.
local function named_vgg(fn, depth, bn, opts)
  local o = options(fn, opts, {num_classes = 1000, in_channels = 3, dropout = 0.5}, {depth = depth, batch_norm = bn})
  return VGG {cfg = CFG[o.depth], batch_norm = o.batch_norm, in_channels = o.in_channels,
    num_classes = o.num_classes, dropout = o.dropout, pooled = 7, hidden = 4096}
end

--- cnn.models.vgg_cifar{depth=16, batch_norm=true, num_classes=10, in_channels=3, dropout=0.5} -> module
--- VGG for 3x32x32 images: torchvision's features, then FC 512->512->512->num_classes.
--- Five pools take 32x32 to 512x1x1, so no adaptive pool; batch norm is on by default, as VGG is
--- customarily trained on CIFAR-10. 9,756,426 (depth 11) to 20,565,834 (depth 19) parameters.
function M.vgg_cifar(opts)
  local o = options("vgg_cifar", opts,
    {depth = 16, batch_norm = true, num_classes = 10, in_channels = 3, dropout = 0.5})
  return VGG {cfg = CFG[o.depth], batch_norm = o.batch_norm, in_channels = o.in_channels,
    num_classes = o.num_classes, dropout = o.dropout, hidden = 512}
end

--- cnn.models.vgg11{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg11(): cnn.models.vgg{depth=11, batch_norm=false, ...}.
function M.vgg11(opts) return named_vgg("vgg11", 11, false, opts) end

--- cnn.models.vgg11_bn{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg11_bn(): cnn.models.vgg{depth=11, batch_norm=true, ...}.
function M.vgg11_bn(opts) return named_vgg("vgg11_bn", 11, true, opts) end

--- cnn.models.vgg13{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg13(): cnn.models.vgg{depth=13, batch_norm=false, ...}.
function M.vgg13(opts) return named_vgg("vgg13", 13, false, opts) end

--- cnn.models.vgg13_bn{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg13_bn(): cnn.models.vgg{depth=13, batch_norm=true, ...}.
function M.vgg13_bn(opts) return named_vgg("vgg13_bn", 13, true, opts) end

--- cnn.models.vgg16{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg16(): cnn.models.vgg{depth=16, batch_norm=false, ...}.
function M.vgg16(opts) return named_vgg("vgg16", 16, false, opts) end

--- cnn.models.vgg16_bn{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg16_bn(): cnn.models.vgg{depth=16, batch_norm=true, ...}.
function M.vgg16_bn(opts) return named_vgg("vgg16_bn", 16, true, opts) end

--- cnn.models.vgg19{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg19(): cnn.models.vgg{depth=19, batch_norm=false, ...}.
function M.vgg19(opts) return named_vgg("vgg19", 19, false, opts) end

--- cnn.models.vgg19_bn{num_classes=1000, in_channels=3, dropout=0.5} -> module
--- torchvision's vgg19_bn(): cnn.models.vgg{depth=19, batch_norm=true, ...}.
function M.vgg19_bn(opts) return named_vgg("vgg19_bn", 19, true, opts) end

return M
