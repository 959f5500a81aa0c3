-- LeNet-5 for 1x28x28 images (LeCun et al. 1998, with ReLU and max-pooling as usually trained
-- today). The first convolution pads by 2 so 28x28 inputs see the paper's 32x32 geometry:
--   features:   conv 1->6 5x5 pad 2 (6x28x28), ReLU, max-pool 2 (6x14x14),
--               conv 6->16 5x5 (16x10x10), ReLU, max-pool 2 (16x5x5)
--   classifier: flatten 400 -> 120 -> 84 -> num_classes, ReLU between
-- 61,706 parameters for 10 classes. Names: features.0.weight, ..., classifier.4.bias.
local nn = require "cnn.nn"

local M = {}

local LeNet5 = nn.Module:extend("LeNet5")

function LeNet5:init(channels, classes)
  self.features = nn.Sequential(
    nn.Conv2d(channels, 6, 5, {padding = 2}), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
  self.classifier = nn.Sequential(
    nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(),
    nn.Linear(84, classes))
end

function LeNet5:forward(x)
  return self.classifier(self.features(x):flatten(2))
end

local known = {num_classes = true, in_channels = true}

--- cnn.models.lenet5{num_classes=10, in_channels=1} -> module
--- LeNet-5 for 1x28x28 images (with ReLU and max-pooling); 61,706 parameters for 10 classes.
--- The first convolution pads by 2 so 28x28 inputs see the paper's 32x32 geometry. Modules
--- `features` (two conv, ReLU, pool stages) and `classifier` (400 -> 120 -> 84 -> num_classes).
function M.lenet5(opts)
  opts = require("cnn.util").check_options("lenet5", opts, known, 2)
  local classes, channels = opts.num_classes or 10, opts.in_channels or 1
  if math.type(classes) ~= "integer" or classes < 1 then error("lenet5: num_classes must be a positive integer", 2) end
  if math.type(channels) ~= "integer" or channels < 1 then
    error("lenet5: in_channels must be a positive integer", 2)
  end
  return LeNet5(channels, classes)
end

return M
