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

--- F.linear(x, w, b): x (..., in), w (out, in), b (out) or nil -> (..., out)
if not F.linear then
  function F.linear(x, w, b)
    check_tensor("linear", x, 1)
    check_tensor("linear", w, 2)
    if w:dim() ~= 2 then error("linear: weight must be 2-d (out, in), got " .. w:dim() .. "-d", 2) end
    if x:dim() == 0 or x:size(-1) ~= w:size(2) then
      error(string.format("linear: input has %s features but weight expects %d",
        x:dim() == 0 and "no" or tostring(x:size(-1)), w:size(2)), 2)
    end
    local y = x:matmul(w:t())
    if b ~= nil then
      check_tensor("linear", b, 3)
      y = y + b
    end
    return y
  end
end

--- F.flatten(x, start_d = 1): merges dims start_d..last (torch.flatten's default start is 0, i.e. our 1)
function F.flatten(x, start_d, end_d)
  check_tensor("flatten", x, 1)
  return x:flatten(start_d or 1, end_d or -1)
end

F.relu = F.relu or function(x) check_tensor("relu", x, 1); return x:relu() end
F.sigmoid = F.sigmoid or function(x) check_tensor("sigmoid", x, 1); return x:sigmoid() end
F.tanh = F.tanh or function(x) check_tensor("tanh", x, 1); return x:tanh() end

return F
