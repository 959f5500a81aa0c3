-- cnn.F: the functional ops. The kernels are C (core.F: conv2d, pooling, softmax, losses,
-- normalisation, dropout); the few ops that are compositions of tensor ops are defined here.
-- Every op is differentiable through autograd.
local core = require "cnn.core"

local F = {}
for k, v in pairs(core.F) do F[k] = v end

local tensor_mt = getmetatable(core.zeros(0))
local function check_tensor(fn, x, i)
  if getmetatable(x) ~= tensor_mt then
    error(string.format("%s: expected a tensor for argument %d, got %s", fn, i, type(x)), 3)
  end
end

-- F.linear(x, w, b): x (..., in), w (out, in), b (out) or nil -> (..., out) is core.F.linear (C: one
-- GEMM with the bias preloaded; backward computes dW = dY^T X directly in (out, in) layout)

--- F.flatten(x, start_d = 1): merges dims start_d..last (torch.flatten's default start is 0, i.e. our 1)
function F.flatten(x, start_d, end_d)
  check_tensor("flatten", x, 1)
  return x:flatten(start_d or 1, end_d or -1)
end

F.relu = F.relu or function(x) check_tensor("relu", x, 1); return x:relu() end
F.sigmoid = F.sigmoid or function(x) check_tensor("sigmoid", x, 1); return x:sigmoid() end
F.tanh = F.tanh or function(x) check_tensor("tanh", x, 1); return x:tanh() end

return F
