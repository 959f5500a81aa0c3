--- module cnn
--- Deep learning on tensors: autograd, layers, optimisers, data loaders, images, plots.
--- Inside `cnnlua` the library is the global `cnn`; from plain Lua 5.4, `local cnn = require "cnn"`
--- once the build or install folders are on `package.path` and `package.cpath` (see the README).
--- Names and semantics follow PyTorch, translated into Lua idioms:
---
--- - **1-based everywhere**, as in Lua and Torch7: element indices, dimension numbers (`t:sum(1)`
---   reduces the first dimension; `-1` is the last), `argmax` results and class labels (`1..C`).
---   Datasets whose files store labels `0..C-1` return them shifted to `1..C` and expose `ds.classes`.
--- - **Layouts** follow PyTorch: images `N, C, H, W`; convolution weights `O, C/groups, kH, kW`;
---   linear weights `out, in`. Shapes are given as sizes or as one table: `cnn.zeros(2, 3)` is
---   `cnn.zeros{2, 3}`.
--- - **Options** are a trailing table: `F.conv2d(x, w, b, {stride=2, padding=1})`. A number where a
---   pair is expected means both (`padding=1` is `padding={1, 1}`). Unknown option keys are an error
---   (`conv2d: unknown option 'strid'`), so typos never pass silently.
--- - **dtypes**: `float32` (the default, all compute), `int64` (labels, indices), `uint8` (image
---   bytes) and `bool` (masks, comparisons); `t:float()`, `t:long()`, `t:byte()` and `t:bool()`
---   convert. Arithmetic gives float32 when either side is float32; `int64 + 1` stays int64.
--- - **0-d tensors** exist, as in PyTorch: full reductions (`t:sum()`) and losses have shape `{}`;
---   `cnn.tensor(3.5)` makes one; `t:item()` reads one.
--- - **Errors**: every misuse (a wrong shape or type, an index out of range, a bad file) raises a Lua
---   error that names the function and the problem (`conv2d: input has 3 channels but weight
---   expects 1`); `pcall` catches it and the runtime stays usable.
--- - **Autograd**: operations on tensors that require grad are recorded while grad mode is on;
---   `loss:backward()` fills each leaf's `.grad`. In-place operations on such tensors are refused in
---   grad mode (wrap updates in `cnn.no_grad`), and an in-place change to a tensor a graph saved
---   makes that graph's backward fail rather than give a wrong gradient.

-- The `cnn` module: the C core (tensors, autograd engine, kernels) plus the parts written in Lua.
local core = require "cnn.core"

local cnn = {}
local internal = {F = true, optim_kernels = true, io = true, canvas = true, dist = true, process = true,
                  Tensor = true}
for k, v in pairs(core) do
  if k:sub(1, 1) ~= "_" and not internal[k] then cnn[k] = v end
end

--- field cnn.version
--- The library's version, a string such as "0.1.0".
cnn.version = "0.1.0"

cnn.is_tensor = core.is_tensor -- documented with the binding (bindings/core/lfactory.c)

-- Runs fn(...) with grad mode set to `on`, restoring the previous mode even when fn raises.
local function with_grad_mode(name, on, fn, ...)
  if type(fn) ~= "function" then
    error(name .. ": expected a function, got " .. type(fn), 3)
  end
  return require("cnn.autograd")._with_grad_mode(on, fn, ...)
end

--- cnn.no_grad(fn, ...) -> ...
--- Runs fn(...) with the recording of operations for autograd off and returns fn's results.
--- The previous grad mode comes back afterwards, even when fn raises. Use it for evaluation and for
--- in-place updates of parameters.
function cnn.no_grad(fn, ...) return with_grad_mode("no_grad", false, fn, ...) end

--- cnn.enable_grad(fn, ...) -> ...
--- Runs fn(...) with the recording of operations on and returns its results (inside a cnn.no_grad).
function cnn.enable_grad(fn, ...) return with_grad_mode("enable_grad", true, fn, ...) end

cnn.Tensor = core.Tensor
cnn.util = require "cnn.util"
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
