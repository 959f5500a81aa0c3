--- module cnn.models
--- Networks with torchvision's parameter names: LeNet-5, AlexNet, VGG, ResNets, GoogLeNet.
--- Each constructor takes an options table and returns an nn module. The definitions load on first
--- use.

-- cnn.models: reusable network definitions. Each constructor takes an options table; parameter
-- names follow the PyTorch/torchvision definitions so state_dicts move between the two.
local models = {}

local sources = {
  lenet5 = "cnn.models.lenet",
  alexnet = "cnn.models.alexnet",
  alexnet_cifar = "cnn.models.alexnet",
  resnet = "cnn.models.resnet",
  resnet18 = "cnn.models.resnet",
  resnet34 = "cnn.models.resnet",
  resnet50 = "cnn.models.resnet",
  resnet_cifar = "cnn.models.resnet",
  vgg = "cnn.models.vgg",
  vgg11 = "cnn.models.vgg",
  vgg11_bn = "cnn.models.vgg",
  vgg13 = "cnn.models.vgg",
  vgg13_bn = "cnn.models.vgg",
  vgg16 = "cnn.models.vgg",
  vgg16_bn = "cnn.models.vgg",
  vgg19 = "cnn.models.vgg",
  vgg19_bn = "cnn.models.vgg",
  vgg_cifar = "cnn.models.vgg",
  googlenet = "cnn.models.googlenet",
}

return setmetatable(models, {
  -- definitions load on first use, so `require "cnn"` stays fast
  __index = function(t, name)
    local src = sources[name]
    if not src then return nil end
    local ctor = require(src)[name]
    rawset(t, name, ctor)
    return ctor
  end,
  -- pairs(cnn.models) lists every model, loading the definitions
  __pairs = function(t)
    for name in pairs(sources) do local _ = t[name] end
    return next, t, nil
  end,
})
