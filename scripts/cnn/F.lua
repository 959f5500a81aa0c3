--- module cnn.F
--- Functional ops: convolution, pooling, activations, normalisation, losses.
--- Stateless and differentiable: autograd records each, and nn's layers call them in forward.
--- Conventionally `local F = cnn.F`.

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

--- cnn.F.flatten(x, start_dim=1, end_dim=-1) -> Tensor
--- Dimensions start_dim .. end_dim of x merged into one (as t:flatten; torch.flatten's start 0 is 1).
function F.flatten(x, start_d, end_d)
  check_tensor("flatten", x, 1)
  return x:flatten(start_d or 1, end_d or -1)
end

--- cnn.F.relu(x) -> Tensor
--- max(x, 0), elementwise.
F.relu = F.relu or function(x) check_tensor("relu", x, 1); return x:relu() end
--- cnn.F.sigmoid(x) -> Tensor
--- 1 / (1 + e^-x), elementwise.
F.sigmoid = F.sigmoid or function(x) check_tensor("sigmoid", x, 1); return x:sigmoid() end
--- cnn.F.tanh(x) -> Tensor
--- The hyperbolic tangent, elementwise.
F.tanh = F.tanh or function(x) check_tensor("tanh", x, 1); return x:tanh() end

return F
