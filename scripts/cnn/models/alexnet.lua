-- AlexNet (Krizhevsky, Sutskever & Hinton 2012) as one tower, and the same design scaled to CIFAR.
-- Layers are named as torchvision names its AlexNet (features.N, avgpool, classifier.N); the
-- ReLU, LRN, pooling and dropout modules hold indices too, so conv and linear indices skip them.
--
-- models.alexnet{num_classes=1000, in_channels=3}, for 3x227x227 (the paper's layer order):
--   features.0   conv 3->96 11x11 stride 4          96x55x55
--   features.1   ReLU, .2 LRN, .3 max-pool 3/2      96x27x27
--   features.4   conv 96->256 5x5 pad 2             256x27x27
--   features.5   ReLU, .6 LRN, .7 max-pool 3/2      256x13x13
--   features.8   conv 256->384 3x3 pad 1, .9 ReLU   384x13x13
--   features.10  conv 384->384 3x3 pad 1, .11 ReLU  384x13x13
--   features.12  conv 384->256 3x3 pad 1, .13 ReLU  256x13x13
--   features.14  max-pool 3/2                       256x6x6
--   avgpool      adaptive average pool to 6x6 (the identity at 227; lets 224 inputs work too)
--   classifier   .0 dropout 0.5, .1 FC 9216->4096, .2 ReLU, .3 dropout 0.5, .4 FC 4096->4096,
--                .5 ReLU, .6 FC 4096->num_classes
--   62,378,344 parameters for 1000 classes (58.6M of them in the classifier).
--
-- models.alexnet_cifar{num_classes=10, in_channels=3}, for 3x32x32: the same eight layers, LRN
-- and overlapping pools in the same places, with the widths of one of the paper's two GPU towers
-- (48/128/192/192/128 channels, 2048-wide FCs) and a 5x5 stride-1 first convolution:
--   features.0   conv 3->48 5x5 pad 2               48x32x32
--   features.1   ReLU, .2 LRN, .3 max-pool 3/2      48x15x15
--   features.4   conv 48->128 5x5 pad 2             128x15x15
--   features.5   ReLU, .6 LRN, .7 max-pool 3/2      128x7x7
--   features.8   conv 128->192 3x3 pad 1, .9 ReLU   192x7x7
--   features.10  conv 192->192 3x3 pad 1, .11 ReLU  192x7x7
--   features.12  conv 192->128 3x3 pad 1, .13 ReLU  128x7x7
--   features.14  max-pool 3/2                       128x3x3
--   avgpool      adaptive average pool to 3x3
--   classifier   .0 dropout 0.5, .1 FC 1152->2048, .2 ReLU, .3 dropout 0.5, .4 FC 2048->2048,
--                .5 ReLU, .6 FC 2048->num_classes
--   7,510,218 parameters for 10 classes; about 83M multiply-adds per image.
--
-- LRN follows the paper's formula b = a / (k + alpha * sum over 5 neighbours of a^2)^beta with
-- k=2, alpha=1e-4, beta=0.75. PyTorch's LocalResponseNorm (and ours, and Caffe's) divides alpha by
-- the window size, so the paper's alpha=1e-4 is alpha=5e-4 there. Weights start as PyTorch's
-- default layer initialisation (as torchvision's AlexNet), not the paper's N(0, 0.01).
local nn = require "cnn.nn"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")

local M = {}

local LRN = {size = 5, alpha = 5 * 1e-4, beta = 0.75, k = 2} -- paper's alpha 1e-4 per neighbour

local AlexNet = nn.Module:extend("AlexNet")
M.AlexNet = AlexNet

-- c: {in_channels, num_classes, conv widths w[1..5], k1/s1/p1 of the first conv, pooled size,
-- fc width}
function AlexNet:init(c)
  local w = c.widths
  local function lrn() return nn.LocalResponseNorm(LRN.size, {alpha = LRN.alpha, beta = LRN.beta, k = LRN.k}) end
  self.features = nn.Sequential(
    nn.Conv2d(c.in_channels, w[1], c.k1, {stride = c.s1, padding = c.p1}), nn.ReLU(true), lrn(),
    nn.MaxPool2d(3, {stride = 2}),
    nn.Conv2d(w[1], w[2], 5, {padding = 2}), nn.ReLU(true), lrn(), nn.MaxPool2d(3, {stride = 2}),
    nn.Conv2d(w[2], w[3], 3, {padding = 1}), nn.ReLU(true),
    nn.Conv2d(w[3], w[4], 3, {padding = 1}), nn.ReLU(true),
    nn.Conv2d(w[4], w[5], 3, {padding = 1}), nn.ReLU(true),
    nn.MaxPool2d(3, {stride = 2}))
  self.avgpool = nn.AdaptiveAvgPool2d(c.pooled)
  self.classifier = nn.Sequential(
    nn.Dropout(0.5), nn.Linear(w[5] * c.pooled * c.pooled, c.fc), nn.ReLU(true),
    nn.Dropout(0.5), nn.Linear(c.fc, c.fc), nn.ReLU(true),
    nn.Linear(c.fc, c.num_classes))
end

-- x: (N, C, H, W) -> logits (N, num_classes)
function AlexNet:forward(x)
  return self.classifier(self.avgpool(self.features(x)):flatten(2))
end

local known = {num_classes = true, in_channels = true}

local function options(fn, opts, default_classes)
  opts = require("cnn.util").check_options(fn, opts, known, 3)
  local classes, channels = opts.num_classes or default_classes, opts.in_channels or 3
  if math.type(classes) ~= "integer" or classes < 1 then
    error(fn .. ": num_classes must be a positive integer, got " .. show(classes), 3)
  end
  if math.type(channels) ~= "integer" or channels < 1 then
    error(fn .. ": in_channels must be a positive integer, got " .. show(channels), 3)
  end
  return classes, channels
end

--- cnn.models.alexnet{num_classes=1000, in_channels=3} -> module
--- AlexNet (Krizhevsky et al. 2012) as one tower, for 3x227x227 images, with LRN and dropout.
--- Named in torchvision's scheme (features.N, avgpool, classifier.N), but the paper's network, not
--- torchvision's (96 first filters, not 64; LRN): torchvision's alexnet weights do not load into it.
--- 62,378,344 parameters for 1000 classes. The adaptive average pool lets 224x224 inputs work too.
function M.alexnet(opts)
  local classes, channels = options("alexnet", opts, 1000)
  return AlexNet{in_channels = channels, num_classes = classes, widths = {96, 256, 384, 384, 256},
    k1 = 11, s1 = 4, p1 = 0, pooled = 6, fc = 4096}
end

--- cnn.models.alexnet_cifar{num_classes=10, in_channels=3} -> module
--- The same eight-layer design for 3x32x32 images, with one GPU tower's widths and a 5x5 first conv.
function M.alexnet_cifar(opts)
  local classes, channels = options("alexnet_cifar", opts, 10)
  return AlexNet{in_channels = channels, num_classes = classes, widths = {48, 128, 192, 192, 128},
    k1 = 5, s1 = 1, p1 = 2, pooled = 3, fc = 2048}
end

return M
