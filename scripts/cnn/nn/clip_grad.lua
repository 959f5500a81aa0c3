--- module cnn.nn.utils
--- Gradient clipping, as torch.nn.utils: clip_grad_norm_ and clip_grad_value_.
--- Both change the .grad of the given parameters in place, without recording gradients.

-- Parameters are a tensor or a list of tensors (model:parameters()); those without a .grad are
-- skipped, as in PyTorch.
local core = require "cnn.core"
local util = require "cnn.util"
local show = util.show -- values in messages ("nan", never "-nan")
local autograd = require "cnn.autograd"

local utils = {}

local tensor_mt = getmetatable(core.zeros(0))

local function grads(fn, params)
  if getmetatable(params) == tensor_mt then params = {params} end
  if type(params) ~= "table" then
    error(string.format("%s: parameters must be a tensor or a list of tensors, got %s", fn, type(params)), 3)
  end
  local out = {}
  for i, p in ipairs(params) do
    if getmetatable(p) ~= tensor_mt then
      error(string.format("%s: parameter %d is not a tensor (%s)", fn, i, type(p)), 3)
    end
    if p.grad ~= nil then out[#out + 1] = p.grad end
  end
  return out
end

--- cnn.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=2, error_if_nonfinite=false) -> Tensor
--- Scales the gradients of parameters (a tensor or a list) to a total norm of at most max_norm.
--- The total norm is that of all gradients as one vector (norm_type a positive number, or math.huge
--- for the largest magnitude); each is multiplied by max_norm / (total + 1e-6) when that is below
--- 1, as PyTorch (a NaN in any gradient makes the total NaN, and every gradient NaN). Returns the
--- total norm before clipping, a 0-d tensor. error_if_nonfinite (also as
--- {error_if_nonfinite=true}) makes a NaN or infinite total norm an error, gradients untouched.
function utils.clip_grad_norm_(params, max_norm, norm_type, error_if_nonfinite, ...)
  local fn = "clip_grad_norm_"
  if select("#", ...) > 0 then error(fn .. ": takes at most 4 arguments", 2) end
  if type(error_if_nonfinite) == "table" then
    local o = util.check_options(fn, error_if_nonfinite, {error_if_nonfinite = true}, 2)
    error_if_nonfinite = o.error_if_nonfinite
  end
  if error_if_nonfinite ~= nil and type(error_if_nonfinite) ~= "boolean" then
    error(fn .. ": error_if_nonfinite must be a boolean, got " .. type(error_if_nonfinite), 2)
  end
  local gs = grads(fn, params)
  if type(max_norm) ~= "number" then error(fn .. ": max_norm must be a number, got " .. type(max_norm), 2) end
  if not (max_norm >= 0) then -- NaN would leave the gradients as they are, a negative one flip them
    error(fn .. ": max_norm must be a number >= 0, got " .. show(max_norm), 2)
  end
  norm_type = norm_type or 2
  if type(norm_type) ~= "number" or not (norm_type > 0) then
    error(fn .. ": norm_type must be a positive number, got " .. show(norm_type), 2)
  end
  return autograd._with_grad_mode(false, function()
    if #gs == 0 then return core.tensor(0.0) end
    local total
    if norm_type == math.huge then
      total = 0.0
      for _, g in ipairs(gs) do
        local m = g:numel() > 0 and g:abs():max():item() or 0.0
        if m ~= m or m > total then total = m end -- a NaN stays (math.max(0, nan) is 0)
        if total ~= total then break end
      end
    else
      total = 0.0
      for _, g in ipairs(gs) do total = total + (g:abs() ^ norm_type):sum():item() end
      total = total ^ (1 / norm_type)
    end
    if error_if_nonfinite and (total ~= total or total == math.huge) then
      error(string.format("%s: the total norm of order %s of the gradients is %s, so they cannot be clipped " ..
        "(error_if_nonfinite is true)", fn, show(norm_type), show(total)), 0)
    end
    local coef = max_norm / (total + 1e-6)
    if coef < 1 or coef ~= coef then -- a NaN total makes every gradient NaN, as PyTorch's clamp(coef, max=1)
      for _, g in ipairs(gs) do g:mul_(coef) end
    end
    return core.tensor(total)
  end)
end

--- cnn.nn.utils.clip_grad_value_(parameters, clip_value)
--- Limits every gradient element of parameters (a tensor or a list) to [-clip_value, clip_value].
function utils.clip_grad_value_(params, clip_value)
  local fn = "clip_grad_value_"
  local gs = grads(fn, params)
  if type(clip_value) ~= "number" then error(fn .. ": clip_value must be a number, got " .. type(clip_value), 2) end
  autograd._with_grad_mode(false, function()
    for _, g in ipairs(gs) do g:clamp_(-clip_value, clip_value) end
  end)
end

return utils
