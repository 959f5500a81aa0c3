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

--- True when x is a module instance (not a class).
nn.is_module = M.is_module

--- nn.dir(m): the sorted names reachable on module m (fields, parameters, buffers, children,
--- methods), for REPL completion.
nn.dir = M.dir

return nn
