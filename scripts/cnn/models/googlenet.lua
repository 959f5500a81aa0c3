-- GoogLeNet (Inception v1, Szegedy et al. 2014) as torchvision 0.14 defines it, with its names and
-- order (conv1, conv2, conv3, inception3a..5b, aux1, aux2, fc), so its state_dicts load with
-- strict=true. Every convolution is a BasicConv2d: conv without bias, BatchNorm2d (eps 0.001),
-- ReLU. An Inception block concatenates four branches along the channels:
--   branch1  1x1                      branch2  1x1 -> 3x3
--   branch3  1x1 -> 3x3 (torchvision's 3x3 where the paper has 5x5; kept for its weights)
--   branch4  max-pool 3x3/1 pad 1 (ceil_mode) -> 1x1
--
-- models.googlenet{num_classes=1000, aux_logits=false, transform_input=false, dropout=0.2,
-- dropout_aux=0.7}, for 3x224x224 (any size from 15 up):
--   conv1 7x7/2 64, maxpool1 3/2 ceil      64x56x56
--   conv2 1x1 64, conv3 3x3 192, maxpool2  192x28x28
--   inception3a 256, 3b 480, maxpool3      480x14x14
--   inception4a 512 (aux1 reads it), 4b 512, 4c 512, 4d 528 (aux2 reads it), 4e 832, maxpool4 2/2
--   inception5a 832, 5b 1024               1024x7x7
--   avgpool to 1x1, dropout 0.2, fc 1024->num_classes
--   6,624,904 parameters for 1000 classes; 13,004,888 with the two auxiliary heads (aux_logits).
-- An auxiliary head: adaptive average pool to 4x4, BasicConv2d 1x1 128, fc1 2048->1024, ReLU,
-- dropout 0.7, fc2 1024->num_classes. In training mode with aux_logits, forward returns the
-- logits, aux1's logits and aux2's, in the positions torchvision returns them (its
-- GoogLeNetOutputs labels them aux_logits2, aux_logits1, but its forward swaps the names twice, so
-- position 2 holds aux1's output); otherwise the logits alone.
--
-- torchvision's GoogLeNet class defaults to aux_logits=True, but the model its pretrained weights
-- describe has no auxiliary heads (the builder drops them), hence this default. transform_input
-- (re-normalising ImageNet-normalised input to the [-1, 1] scaling the original weights were
-- trained on) is false for a model built from scratch and true for those pretrained weights.
-- Initialisation as torchvision's init_weights: conv and linear weights trunc_normal_(std 0.01,
-- within +-2), BN weight 1 and bias 0; linear biases keep PyTorch's default.
local nn = require "cnn.nn"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")
local F = require "cnn.F"
local core = require "cnn.core"
local init = nn.init

local M = {}

local BasicConv2d = nn.Module:extend("BasicConv2d")
M.BasicConv2d = BasicConv2d

function BasicConv2d:init(in_channels, out_channels, kernel_size, opts)
  local o = {bias = false}
  for k, v in pairs(opts or {}) do o[k] = v end
  self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, o)
  self.bn = nn.BatchNorm2d(out_channels, {eps = 0.001})
end

local BN_FORWARD = nn.BatchNorm2d.forward

-- relu(bn(conv(x))); the BN and ReLU in one pass each way unless bn was changed or is hooked
function BasicConv2d:forward(x)
  x = self.conv(x)
  local bn = self.bn
  if bn.forward == BN_FORWARD and bn:is_a(nn.BatchNorm2d) and not bn:_has_hooks() then return bn:_forward_relu(x) end
  return F.relu(bn(x))
end

local Inception = nn.Module:extend("Inception")
M.Inception = Inception

function Inception:init(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
  self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
  self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, {padding = 1}))
  self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 3, {padding = 1}))
  self.branch4 = nn.Sequential(nn.MaxPool2d(3, {stride = 1, padding = 1, ceil_mode = true}),
    BasicConv2d(in_channels, pool_proj, 1))
end

-- x: (N, C, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)
function Inception:forward(x)
  return core.cat({self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)}, 2)
end

local InceptionAux = nn.Module:extend("InceptionAux")
M.InceptionAux = InceptionAux

function InceptionAux:init(in_channels, num_classes, dropout)
  self.conv = BasicConv2d(in_channels, 128, 1)
  self.fc1 = nn.Linear(2048, 1024)
  self.fc2 = nn.Linear(1024, num_classes)
  self.dropout = nn.Dropout(dropout)
end

-- x: (N, 512 or 528, H, W) -> logits (N, num_classes)
function InceptionAux:forward(x)
  x = self.conv(F.adaptive_avg_pool2d(x, {4, 4})):flatten(2)
  return self.fc2(self.dropout(F.relu(self.fc1(x))))
end

local GoogLeNet = nn.Module:extend("GoogLeNet")
M.GoogLeNet = GoogLeNet

function GoogLeNet:init(o)
  self.aux_logits = o.aux_logits
  self.transform_input = o.transform_input
  self.conv1 = BasicConv2d(3, 64, 7, {stride = 2, padding = 3})
  self.maxpool1 = nn.MaxPool2d(3, {stride = 2, ceil_mode = true})
  self.conv2 = BasicConv2d(64, 64, 1)
  self.conv3 = BasicConv2d(64, 192, 3, {padding = 1})
  self.maxpool2 = nn.MaxPool2d(3, {stride = 2, ceil_mode = true})
  self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
  self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
  self.maxpool3 = nn.MaxPool2d(3, {stride = 2, ceil_mode = true})
  self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
  self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
  self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
  self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
  self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
  self.maxpool4 = nn.MaxPool2d(2, {stride = 2, ceil_mode = true})
  self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
  self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
  if o.aux_logits then
    self.aux1 = InceptionAux(512, o.num_classes, o.dropout_aux)
    self.aux2 = InceptionAux(528, o.num_classes, o.dropout_aux)
  end
  self.avgpool = nn.AdaptiveAvgPool2d({1, 1})
  self.dropout = nn.Dropout(o.dropout)
  self.fc = nn.Linear(1024, o.num_classes)
  for _, m in ipairs(self:modules()) do
    if m:is_a(nn.Conv2d) or m:is_a(nn.Linear) then
      init.trunc_normal_(m.weight, 0, 0.01, -2, 2)
    elseif m:is_a(nn.BatchNorm2d) then
      init.ones_(m.weight)
      init.zeros_(m.bias)
    end
  end
end

-- torchvision's _transform_input: x * (std / 0.5) + (mean - 0.5) / 0.5 per channel, taking
-- ImageNet-normalised input back to the [-1, 1] scaling of the original weights.
local TRANSFORM_SCALE = {0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5}
local TRANSFORM_SHIFT = {(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5}

-- x: (N, 3, H, W) -> logits (N, num_classes); in training with aux_logits also aux1's and aux2's
function GoogLeNet:forward(x)
  if self.transform_input then
    x = x * core.tensor(TRANSFORM_SCALE):view(1, 3, 1, 1) + core.tensor(TRANSFORM_SHIFT):view(1, 3, 1, 1)
  end
  x = self.maxpool1(self.conv1(x))
  x = self.maxpool2(self.conv3(self.conv2(x)))
  x = self.maxpool3(self.inception3b(self.inception3a(x)))
  x = self.inception4a(x)
  local heads = self.aux_logits and self.training
  local aux1 = heads and self.aux1(x) or nil
  x = self.inception4d(self.inception4c(self.inception4b(x)))
  local aux2 = heads and self.aux2(x) or nil
  x = self.maxpool4(self.inception4e(x))
  x = self.inception5b(self.inception5a(x))
  x = self.fc(self.dropout(self.avgpool(x):flatten(2)))
  if heads then return x, aux1, aux2 end
  return x
end

local DEFAULTS = {num_classes = 1000, aux_logits = false, transform_input = false, dropout = 0.2, dropout_aux = 0.7}

--- cnn.models.googlenet{num_classes=1000, aux_logits=false, transform_input=false, dropout=0.2,
---   dropout_aux=0.7} -> module
--- torchvision's GoogLeNet (Inception v1) for 3x224x224 images (any size from 15 up).
--- Names and initialisation are torchvision's, so its state_dicts load with {strict=true}:
--- 6,624,904 parameters, 13,004,888 with aux_logits. In training mode with aux_logits, forward
--- returns the logits, then the aux1 and aux2 heads' logits (torchvision's positions). Set
--- transform_input for torchvision's pretrained weights (trained on inputs scaled to [-1, 1]).
function M.googlenet(opts)
  opts = require("cnn.util").check_options("googlenet", opts, DEFAULTS, 2)
  local o = {}
  for k, v in pairs(DEFAULTS) do
    if opts[k] == nil then o[k] = v else o[k] = opts[k] end
  end
  if math.type(o.num_classes) ~= "integer" or o.num_classes < 1 then
    error("googlenet: num_classes must be a positive integer, got " .. show(o.num_classes), 2)
  end
  for _, k in ipairs {"aux_logits", "transform_input"} do
    if type(o[k]) ~= "boolean" then error("googlenet: " .. k .. " must be a boolean, got " .. type(o[k]), 2) end
  end
  for _, k in ipairs {"dropout", "dropout_aux"} do
    if type(o[k]) ~= "number" or not (o[k] >= 0 and o[k] <= 1) then -- NaN too
      error("googlenet: " .. k .. " must be a probability in [0, 1], got " .. show(o[k]), 2)
    end
  end
  return GoogLeNet(o)
end

return M
