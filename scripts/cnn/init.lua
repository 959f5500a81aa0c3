-- The `cnn` module: the C core (tensors, autograd engine, kernels) plus the parts written in Lua.
-- Inside `cnnlua` it is the global `cnn`; from lua5.4, `local cnn = require "cnn"`.
local core = require "cnn.core"

local cnn = {}
local internal = {F = true, optim_kernels = true, io = true, canvas = true, dist = true, Tensor = true}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" and not internal[k] then cnn[k] = v end
end

cnn.version = "0.1.0"

--- True when x is a tensor.
function cnn.is_tensor(x)
  return type(x) == "userdata" and getmetatable(x) == getmetatable(core.zeros(0))
end

-- Runs fn(...) with grad mode set to `on`, restoring the previous mode even when fn raises.
local function with_grad_mode(name, on, fn, ...)
  if type(fn) ~= "function" then
    error(name .. ": expected a function, got " .. type(fn), 3)
  end
  local prev = core.set_grad_enabled(on)
  local res = table.pack(pcall(fn, ...))
  core.set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- Runs fn(...) with gradient recording off and returns its results.
function cnn.no_grad(fn, ...) return with_grad_mode("no_grad", false, fn, ...) end

--- Runs fn(...) with gradient recording on (inside a no_grad, for instance).
function cnn.enable_grad(fn, ...) return with_grad_mode("enable_grad", true, fn, ...) end

cnn.Tensor = core.Tensor
cnn.autograd = require "cnn.autograd"
cnn.F = require "cnn.F"
cnn.nn = require "cnn.nn"
cnn.optim = require "cnn.optim"
cnn.models = require "cnn.models"
cnn.checkpoint = require "cnn.checkpoint"
cnn.trainer = require "cnn.trainer"
cnn.plot = require "cnn.plot"
cnn.hpsearch = require "cnn.hpsearch"
cnn.help = require "cnn.help"
cnn.repl = require "cnn.repl"
cnn.data = require "cnn.data"
cnn.distributed = require "cnn.distributed"
cnn.image = require "cnn.image"
local serialize = require "cnn.serialize"
cnn.save, cnn.load = serialize.save, serialize.load

return cnn
