--- module cnn.nn
--- Layers, containers and losses: modules that hold their parameters.
--- Every module is callable (`m(x)`) and has the methods of cnn.nn.Module (parameters,
--- state_dict, train and eval, ...). Default initialisation matches PyTorch's for each layer.
--- User modules: `local Block = nn.Module:extend("Block")`, `function Block:init(...)`,
--- `function Block:forward(x)`. Conventionally `local nn = cnn.nn`.

-- cnn.nn: modules (layers, containers, losses) built on cnn.F, PyTorch's nn.Module semantics with
-- Lua idioms. The module system is nn/module.lua, the layers nn/layers.lua, the weight fills
-- (nn.init) nn/init_weights.lua. Loaded by cnn/init.lua; requires only cnn.core and cnn.F.
local M = require "cnn.nn.module"
local layers = require "cnn.nn.layers"

local nn = {}

nn.Module = M.Module
nn.Sequential = M.Sequential
nn.ModuleList = M.ModuleList
for name, cls in pairs(layers) do nn[name] = cls end
nn.init = require "cnn.nn.init_weights"
nn.utils = require "cnn.nn.clip_grad"

--- cnn.nn.skip_init(ctor, ...) -> module
--- ctor(...) with every nn.init fill skipped, as torch.nn.utils.skip_init.
--- The parameters hold whatever memory they were given: for a model about to receive its weights
--- from a file, or whose size alone matters. A VGG-16 is built in milliseconds instead of seconds.
function nn.skip_init(ctor, ...) return nn.init._skip_init(ctor, ...) end

nn.is_module = M.is_module
nn.dir = M.dir
-- (internal) whether m's forward keeps no reference to its input or output (models free the
-- activations they make between such modules in inference: cnn.models.resnet)
nn._keeps_no_activations = M.keeps_no_activations

return nn
