-- cnn.nn's layers and losses: each holds its configuration and parameters (initialised as
-- PyTorch 1.13 initialises them) and its forward calls a cnn.F op, so autograd gives backward.
-- Constructors check their arguments and reject unknown option keys, naming the layer.
local F = require "cnn.F"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")
local core = require "cnn.core"
local U = require "cnn.nn.util"
local M = require "cnn.nn.module"
local init = require "cnn.nn.init_weights"

local Module = M.Module
local fail, pyfloat, pytuple, pybool = U.fail, U.pyfloat, U.pytuple, U.pybool

local L = {}

local function check_input(who, x, dims, layout)
  if not U.is_tensor(x) then fail(who, "expected a tensor input, got %s", type(x)) end
  if dims and not dims[x:dim()] then
    fail(who, "expected %s input, got a %d-d tensor", layout, x:dim())
  end
end

local function bool_opt(who, name, v, default)
  if v == nil then return default end
  if type(v) ~= "boolean" then fail(who, "%s must be a boolean, got %s", name, type(v)) end
  return v
end

local function number_opt(who, name, v, default, lo)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or (lo and v < lo) then
    fail(who, "%s must be a number%s, got %s", name, lo and (" >= " .. lo) or "", U.describe(v))
  end
  return v
end

local function pair_eq(p, v) return p[1] == v and p[2] == v end

-- ---- convolution and linear ------------------------------------------------------------------

L.Conv2d = Module:extend("Conv2d")

--- class cnn.nn.Conv2d(in_channels, out_channels, kernel_size, {stride=1, padding=0, dilation=1, groups=1, bias=true})
--- A 2-d convolution layer (F.conv2d): weight (out, in/groups, kh, kw), bias (out).
--- Sizes are a number or a pair {h, w}; padding may also be "valid" or "same" (stride 1; an even
--- effective kernel pads one more row and column after than before, as PyTorch). Initialised as
--- PyTorch does (kaiming uniform with a = sqrt(5)).
function L.Conv2d:init(in_channels, out_channels, kernel_size, opts)
  local who = "Conv2d"
  local o = U.options(who, opts, {stride = true, padding = true, dilation = true, groups = true, bias = true})
  self.in_channels = U.int(who, "in_channels", in_channels, 1)
  self.out_channels = U.int(who, "out_channels", out_channels, 1)
  self.kernel_size = U.pair(who, "kernel_size", kernel_size, 1)
  self.stride = U.pair(who, "stride", o.stride or 1, 1)
  self.dilation = U.pair(who, "dilation", o.dilation or 1, 1)
  self.groups = U.int(who, "groups", o.groups or 1, 1)
  local padding = o.padding or 0
  if padding == "valid" or padding == "same" then
    -- kept as the string, as PyTorch does; F.conv2d works out the (maybe uneven) padding
    if padding == "same" and not pair_eq(self.stride, 1) then
      fail(who, "padding='same' is not supported for strided convolutions")
    end
    self.padding = padding
  else
    self.padding = U.pair(who, "padding", padding, 0)
  end
  if self.in_channels % self.groups ~= 0 then fail(who, "in_channels must be divisible by groups") end
  if self.out_channels % self.groups ~= 0 then fail(who, "out_channels must be divisible by groups") end
  local kh, kw = self.kernel_size[1], self.kernel_size[2]
  self.weight = U.new_param(who, "weight", self.out_channels, self.in_channels // self.groups, kh, kw)
  if bool_opt(who, "bias", o.bias, true) then self.bias = U.new_param(who, "bias", self.out_channels) end
  self:reset_parameters()
end

-- weight ~ kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias the same bound.
--- cnn.nn.Conv2d:reset_parameters()
--- cnn.nn.Linear:reset_parameters()
--- Draws weight and bias again as PyTorch initialises them: U(-b, b) with b = 1 / sqrt(fan_in).
--- (The weight's is kaiming_uniform_ with a = sqrt(5).)
local function reset_weight_bias(self)
  init.kaiming_uniform_(self.weight, math.sqrt(5))
  if self.bias then
    local fan_in = init._calculate_fan_in_and_fan_out(self.weight)
    if fan_in ~= 0 then
      local bound = 1 / math.sqrt(fan_in)
      init.uniform_(self.bias, -bound, bound)
    else -- PyTorch's bound is 0 there; the bias was left as allocated (old memory)
      init.zeros_(self.bias)
    end
  end
end
L.Conv2d.reset_parameters = reset_weight_bias

function L.Conv2d:forward(x)
  return F.conv2d(x, self.weight, self.bias,
    {stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups})
end

-- conv:_forward_relu_max_pool(x, pool) is pool(relu(conv(x))) for a stock MaxPool2d in one pass and
-- one graph node (F.conv2d's relu_max_pool option): the same values and gradients. Sequential runs
-- a stock Conv2d, ReLU, MaxPool2d so (see Sequential:forward).
L.Conv2d.fuses_relu_max_pool = true
function L.Conv2d:_forward_relu_max_pool(x, pool)
  return F.conv2d(x, self.weight, self.bias,
    {stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups,
     relu_max_pool = {kernel_size = pool.kernel_size, stride = pool.stride, padding = pool.padding,
                      dilation = pool.dilation, ceil_mode = pool.ceil_mode}})
end

function L.Conv2d:extra_repr()
  local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels,
    pytuple(self.kernel_size), pytuple(self.stride))
  if type(self.padding) == "string" then
    s = s .. ", padding=" .. self.padding
  elseif not pair_eq(self.padding, 0) then
    s = s .. ", padding=" .. pytuple(self.padding)
  end
  if not pair_eq(self.dilation, 1) then s = s .. ", dilation=" .. pytuple(self.dilation) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if not self.bias then s = s .. ", bias=False" end
  return s
end

L.Linear = Module:extend("Linear")

--- class cnn.nn.Linear(in_features, out_features, {bias=true})
--- A fully connected layer, y = x W^T + b (F.linear): weight (out, in), bias (out).
function L.Linear:init(in_features, out_features, opts)
  local who = "Linear"
  local o = U.options(who, opts, {bias = true})
  self.in_features = U.int(who, "in_features", in_features, 0)
  self.out_features = U.int(who, "out_features", out_features, 0)
  self.weight = U.new_param(who, "weight", self.out_features, self.in_features)
  if bool_opt(who, "bias", o.bias, true) then self.bias = U.new_param(who, "bias", self.out_features) end
  self:reset_parameters()
end

L.Linear.reset_parameters = reset_weight_bias

function L.Linear:forward(x)
  return F.linear(x, self.weight, self.bias)
end

function L.Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features,
    pybool(self.bias ~= nil))
end

-- ---- pooling -----------------------------------------------------------------------------------

-- kernel_size and stride as given (a number or a pair), as PyTorch keeps them for the repr.
local function pool_arg(who, name, v, min)
  U.pair(who, name, v, min) -- checks
  if type(v) == "number" then return math.tointeger(v) end
  return {math.tointeger(v[1]), math.tointeger(v[2])}
end

L.MaxPool2d = Module:extend("MaxPool2d")
L.MaxPool2d.is_max_pool = true -- see Sequential:forward

--- class cnn.nn.MaxPool2d(kernel_size, {stride=kernel_size, padding=0, dilation=1, ceil_mode=false})
--- A 2-d max-pooling layer (F.max_pool2d).
function L.MaxPool2d:init(kernel_size, opts)
  local who = "MaxPool2d"
  local o = U.options(who, opts, {stride = true, padding = true, dilation = true, ceil_mode = true})
  self.kernel_size = pool_arg(who, "kernel_size", kernel_size, 1)
  self.stride = pool_arg(who, "stride", o.stride or kernel_size, 1)
  self.padding = pool_arg(who, "padding", o.padding or 0, 0)
  self.dilation = pool_arg(who, "dilation", o.dilation or 1, 1)
  self.ceil_mode = bool_opt(who, "ceil_mode", o.ceil_mode, false)
end

local function max_pool(self, x, relu)
  local o = {stride = self.stride, padding = self.padding, ceil_mode = self.ceil_mode, relu = relu}
  if not pair_eq(U.pair("MaxPool2d", "dilation", self.dilation, 1), 1) then o.dilation = self.dilation end
  return F.max_pool2d(x, self.kernel_size, o)
end

function L.MaxPool2d:forward(x) return max_pool(self, x, false) end

-- pool:_forward_relu(x) is F.relu(pool(x)) in one pass each way (F.max_pool2d's relu option); the
-- Sequential's ReLU-after-pool swap runs a stock ReLU and MaxPool2d so (see Sequential:forward).
function L.MaxPool2d:_forward_relu(x) return max_pool(self, x, true) end

function L.MaxPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", pytuple(self.kernel_size),
    pytuple(self.stride), pytuple(self.padding), pytuple(self.dilation), pybool(self.ceil_mode))
end

L.AvgPool2d = Module:extend("AvgPool2d")

--- class cnn.nn.AvgPool2d(kernel_size, {stride=kernel_size, padding=0, ceil_mode=false, count_include_pad=true,
---   divisor_override=})
--- A 2-d average-pooling layer (F.avg_pool2d).
function L.AvgPool2d:init(kernel_size, opts)
  local who = "AvgPool2d"
  local o = U.options(who, opts, {stride = true, padding = true, ceil_mode = true, count_include_pad = true,
    divisor_override = true})
  if o.divisor_override ~= nil then self.divisor_override = U.int(who, "divisor_override", o.divisor_override, 1) end
  self.kernel_size = pool_arg(who, "kernel_size", kernel_size, 1)
  self.stride = pool_arg(who, "stride", o.stride or kernel_size, 1)
  self.padding = pool_arg(who, "padding", o.padding or 0, 0)
  self.ceil_mode = bool_opt(who, "ceil_mode", o.ceil_mode, false)
  self.count_include_pad = bool_opt(who, "count_include_pad", o.count_include_pad, true)
end

function L.AvgPool2d:forward(x)
  local o = {stride = self.stride, padding = self.padding, ceil_mode = self.ceil_mode}
  if not self.count_include_pad then o.count_include_pad = false end
  o.divisor_override = self.divisor_override
  return F.avg_pool2d(x, self.kernel_size, o)
end

function L.AvgPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s", pytuple(self.kernel_size), pytuple(self.stride),
    pytuple(self.padding))
end

L.AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")

--- class cnn.nn.AdaptiveAvgPool2d(output_size)
--- Average pooling to a fixed output size, a number (square) or {oh, ow} (F.adaptive_avg_pool2d).
function L.AdaptiveAvgPool2d:init(output_size)
  self.output_size = pool_arg("AdaptiveAvgPool2d", "output_size", output_size, 1)
end

function L.AdaptiveAvgPool2d:forward(x)
  return F.adaptive_avg_pool2d(x, U.pair("AdaptiveAvgPool2d", "output_size", self.output_size, 1))
end

function L.AdaptiveAvgPool2d:extra_repr()
  return "output_size=" .. pytuple(self.output_size)
end

-- ---- activations -------------------------------------------------------------------------------

-- inplace is accepted for PyTorch compatibility and shown in the repr; the result is the same
-- either way, computed out of place.
local function inplace_arg(who, v)
  return bool_opt(who, "inplace", v, false)
end

-- An activation's or dropout's PyTorch arguments, positional or by name in a trailing options table
-- as every other layer takes them (nn.ReLU{inplace = true}, nn.Dropout(0.2, {inplace = true}),
-- nn.Dropout{p = 0.2}): their values in names' order. A table where a value belongs was read as
-- that value ("inplace must be a boolean, got table").
local function positional_or_named(who, names, ...)
  local args, n = {...}, select("#", ...)
  while n > 0 and args[n] == nil do n = n - 1 end
  local last = args[n]
  if n == 0 or type(last) ~= "table" or U.is_tensor(last) then return table.unpack(args, 1, #names) end
  if n - 1 > #names then
    fail(who, "takes at most %d argument%s and an options table, got %d", #names, #names > 1 and "s" or "", n)
  end
  local known = {}
  for _, k in ipairs(names) do known[k] = true end
  local o = U.options(who, last, known)
  local out = {}
  for i, k in ipairs(names) do
    if i < n then out[i] = args[i] end
    if o[k] ~= nil then
      if out[i] ~= nil then fail(who, "%s is given twice: as argument %d and as an option", k, i) end
      out[i] = o[k]
    end
  end
  return table.unpack(out, 1, #names)
end

--- class cnn.nn.ReLU()
--- max(x, 0), elementwise (F.relu). An `inplace` argument is accepted for PyTorch compatibility.
--- It may come as nn.ReLU(true) or nn.ReLU{inplace = true}; so for every activation and dropout
--- layer, whose PyTorch arguments are also taken by name in an options table.
L.ReLU = Module:extend("ReLU")
L.ReLU.commutes_with_max_pool = true -- see Sequential:forward
function L.ReLU:init(...) self.inplace = inplace_arg("ReLU", positional_or_named("ReLU", {"inplace"}, ...)) end
function L.ReLU:forward(x) return F.relu(x) end
function L.ReLU:extra_repr() return self.inplace and "inplace=True" or "" end

L.LeakyReLU = Module:extend("LeakyReLU")

--- class cnn.nn.LeakyReLU(negative_slope=0.01)
--- x where x > 0, else negative_slope * x (F.leaky_relu).
function L.LeakyReLU:init(...)
  local negative_slope, inplace = positional_or_named("LeakyReLU", {"negative_slope", "inplace"}, ...)
  self.negative_slope = number_opt("LeakyReLU", "negative_slope", negative_slope, 0.01)
  self.inplace = inplace_arg("LeakyReLU", inplace)
end
function L.LeakyReLU:forward(x) return F.leaky_relu(x, self.negative_slope) end
function L.LeakyReLU:extra_repr()
  return "negative_slope=" .. pyfloat(self.negative_slope) .. (self.inplace and ", inplace=True" or "")
end

--- class cnn.nn.Sigmoid()
--- 1 / (1 + e^-x), elementwise (F.sigmoid).
L.Sigmoid = Module:extend("Sigmoid")
function L.Sigmoid:forward(x) return F.sigmoid(x) end

--- class cnn.nn.Tanh()
--- The hyperbolic tangent, elementwise (F.tanh).
L.Tanh = Module:extend("Tanh")
function L.Tanh:forward(x) return F.tanh(x) end

--- class cnn.nn.SiLU()
--- x * sigmoid(x), elementwise (F.silu).
L.SiLU = Module:extend("SiLU")
function L.SiLU:init(...) self.inplace = inplace_arg("SiLU", positional_or_named("SiLU", {"inplace"}, ...)) end
function L.SiLU:forward(x) return F.silu(x) end
function L.SiLU:extra_repr() return self.inplace and "inplace=True" or "" end

L.ELU = Module:extend("ELU")

--- class cnn.nn.ELU(alpha=1)
--- x where x > 0, else alpha * (e^x - 1) (F.elu).
function L.ELU:init(...)
  local alpha, inplace = positional_or_named("ELU", {"alpha", "inplace"}, ...)
  self.alpha = number_opt("ELU", "alpha", alpha, 1.0)
  self.inplace = inplace_arg("ELU", inplace)
end
function L.ELU:forward(x) return F.elu(x, self.alpha) end
function L.ELU:extra_repr() return "alpha=" .. pyfloat(self.alpha) .. (self.inplace and ", inplace=True" or "") end

L.Softplus = Module:extend("Softplus")

--- class cnn.nn.Softplus(beta=1, threshold=20)
--- log(1 + e^(beta x)) / beta, x itself where beta x > threshold (F.softplus).
function L.Softplus:init(...)
  local beta, threshold = positional_or_named("Softplus", {"beta", "threshold"}, ...)
  self.beta = number_opt("Softplus", "beta", beta, 1)
  self.threshold = number_opt("Softplus", "threshold", threshold, 20)
end
function L.Softplus:forward(x) return F.softplus(x, self.beta, self.threshold) end
function L.Softplus:extra_repr() return string.format("beta=%s, threshold=%s", self.beta, self.threshold) end

L.Hardtanh = Module:extend("Hardtanh")

--- class cnn.nn.Hardtanh(min_val=-1, max_val=1)
--- x limited to [min_val, max_val] (F.hardtanh).
function L.Hardtanh:init(...)
  local min_val, max_val, inplace = positional_or_named("Hardtanh", {"min_val", "max_val", "inplace"}, ...)
  self.min_val = number_opt("Hardtanh", "min_val", min_val, -1.0)
  self.max_val = number_opt("Hardtanh", "max_val", max_val, 1.0)
  if self.min_val > self.max_val then
    fail("Hardtanh", "min_val %s is above max_val %s", tostring(self.min_val), tostring(self.max_val))
  end
  self.inplace = inplace_arg("Hardtanh", inplace)
end
function L.Hardtanh:forward(x) return F.hardtanh(x, self.min_val, self.max_val) end
function L.Hardtanh:extra_repr()
  return string.format("min_val=%s, max_val=%s", pyfloat(self.min_val), pyfloat(self.max_val))
    .. (self.inplace and ", inplace=True" or "")
end

--- class cnn.nn.ReLU6()
--- min(max(x, 0), 6), elementwise (F.relu6).
L.ReLU6 = Module:extend("ReLU6")
function L.ReLU6:init(...) self.inplace = inplace_arg("ReLU6", positional_or_named("ReLU6", {"inplace"}, ...)) end
function L.ReLU6:forward(x) return F.relu6(x) end
function L.ReLU6:extra_repr() return self.inplace and "inplace=True" or "" end

L.GELU = Module:extend("GELU")

--- class cnn.nn.GELU{approximate="none"}
--- x * Phi(x), Phi the standard normal CDF; approximate="tanh" for the tanh form (F.gelu).
function L.GELU:init(opts)
  local o = U.options("GELU", opts, {approximate = true})
  local a = o.approximate or "none"
  if a ~= "none" and a ~= "tanh" then fail("GELU", "approximate must be 'none' or 'tanh', got '%s'", show(a)) end
  self.approximate = a
end
function L.GELU:forward(x) return F.gelu(x, {approximate = self.approximate}) end
function L.GELU:extra_repr() return "approximate='" .. self.approximate .. "'" end

local function dim_arg(who, d)
  if not U.is_int(d) or d == 0 then
    fail(who, "dim must be a nonzero integer (1-based, negative from the end), got %s", U.describe(d))
  end
  return math.tointeger(d)
end

L.Softmax = Module:extend("Softmax")

--- class cnn.nn.Softmax(dim)
--- Softmax along dimension dim, 1-based: nn.Softmax(2) normalises the classes of (N, C) scores.
function L.Softmax:init(dim) self.dim = dim_arg("Softmax", dim) end
function L.Softmax:forward(x) return F.softmax(x, self.dim) end
function L.Softmax:extra_repr() return "dim=" .. self.dim end

--- class cnn.nn.LogSoftmax(dim)
--- log(softmax(x)) along dimension dim, 1-based (F.log_softmax).
L.LogSoftmax = Module:extend("LogSoftmax")
function L.LogSoftmax:init(dim) self.dim = dim_arg("LogSoftmax", dim) end
function L.LogSoftmax:forward(x) return F.log_softmax(x, self.dim) end
L.LogSoftmax.extra_repr = L.Softmax.extra_repr

-- ---- regularisation and normalisation ----------------------------------------------------------

L.Dropout = Module:extend("Dropout")

--- class cnn.nn.Dropout(p=0.5)
--- In training mode, zeroes elements with probability p and scales the rest by 1/(1-p); eval: identity.
function L.Dropout:init(...)
  local p, inplace = positional_or_named("Dropout", {"p", "inplace"}, ...)
  p = number_opt("Dropout", "p", p, 0.5)
  if p < 0 or p > 1 then fail("Dropout", "p must be between 0 and 1, got %s", U.describe(p)) end
  self.p = p
  self.inplace = inplace_arg("Dropout", inplace)
end
function L.Dropout:forward(x) return F.dropout(x, self.p, self.training) end
function L.Dropout:extra_repr() return string.format("p=%s, inplace=%s", pyfloat(self.p), pybool(self.inplace)) end

L.LayerNorm = Module:extend("LayerNorm")

--- class cnn.nn.LayerNorm(normalized_shape, {eps=1e-5, elementwise_affine=true})
--- Normalises over the trailing dimensions normalized_shape, a size or a list of sizes (F.layer_norm).
--- With elementwise_affine, a weight (ones) and a bias (zeros) of that shape.
function L.LayerNorm:init(shape, opts)
  local o = U.options("LayerNorm", opts, {eps = true, elementwise_affine = true})
  if type(shape) == "number" then shape = {shape} end
  if type(shape) ~= "table" or #shape == 0 then
    fail("LayerNorm", "normalized_shape must be a size or a list of sizes")
  end
  for _, v in ipairs(shape) do
    if not U.is_int(v) or v < 1 then
      fail("LayerNorm", "normalized_shape must hold positive integers, got %s", U.describe(v))
    end
  end
  self.normalized_shape = shape
  self.eps = number_opt("LayerNorm", "eps", o.eps, 1e-5, 0)
  self.elementwise_affine = bool_opt("LayerNorm", "elementwise_affine", o.elementwise_affine, true)
  if self.elementwise_affine then
    self:register_parameter("weight", core.ones(table.unpack(shape)))
    self:register_parameter("bias", core.zeros(table.unpack(shape)))
  end
end
function L.LayerNorm:forward(x) return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps) end
function L.LayerNorm:extra_repr()
  local ns = self.normalized_shape
  local shape = #ns == 1 and "(" .. ns[1] .. ",)" or pytuple(ns)
  return string.format("%s, eps=%s, elementwise_affine=%s", shape, pyfloat(self.eps),
    pybool(self.elementwise_affine))
end

L.GroupNorm = Module:extend("GroupNorm")

--- class cnn.nn.GroupNorm(num_groups, num_channels, {eps=1e-5, affine=true})
--- Normalises each group of num_channels/num_groups channels of (N, C, ...) inputs (F.group_norm).
--- With affine, a per-channel weight (ones) and bias (zeros).
function L.GroupNorm:init(groups, channels, opts)
  local o = U.options("GroupNorm", opts, {eps = true, affine = true})
  if not U.is_int(groups) or groups < 1 then
    fail("GroupNorm", "num_groups must be a positive integer, got %s", U.describe(groups))
  end
  if not U.is_int(channels) or channels < 1 or channels % groups ~= 0 then
    fail("GroupNorm", "num_channels must be a positive multiple of num_groups, got %s", U.describe(channels))
  end
  self.num_groups, self.num_channels = math.tointeger(groups), math.tointeger(channels)
  self.eps = number_opt("GroupNorm", "eps", o.eps, 1e-5, 0)
  self.affine = bool_opt("GroupNorm", "affine", o.affine, true)
  if self.affine then
    self:register_parameter("weight", core.ones(channels))
    self:register_parameter("bias", core.zeros(channels))
  end
end
function L.GroupNorm:forward(x) return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps) end
function L.GroupNorm:extra_repr()
  return string.format("%d, %d, eps=%s, affine=%s", self.num_groups, self.num_channels, pyfloat(self.eps),
    pybool(self.affine))
end

-- BatchNorm1d and BatchNorm2d differ only in the input layout they accept.
local BatchNorm = Module:extend("_BatchNorm")

local bn_opts = {eps = true, momentum = true, affine = true, track_running_stats = true}

--- class cnn.nn._BatchNorm(num_features, {eps=1e-5, momentum=0.1, affine=true, track_running_stats=true})
--- The base class of BatchNorm1d and BatchNorm2d, which differ only in the input layout they accept.
--- Each channel is normalised by the batch's mean and variance in training mode, which also moves the
--- running statistics (buffers running_mean, running_var, num_batches_tracked) towards them by
--- momentum; in eval mode by the running statistics. momentum=false is PyTorch's momentum=None (a
--- cumulative average over the batches seen). affine adds a learnt weight and bias per channel.
function BatchNorm:init(num_features, opts)
  local who = self:class_name()
  local o = U.options(who, opts, bn_opts)
  self.num_features = U.int(who, "num_features", num_features, 1)
  self.eps = number_opt(who, "eps", o.eps, 1e-5, 0)
  if o.momentum == false then
    self.momentum = false
  else
    self.momentum = number_opt(who, "momentum", o.momentum, 0.1, 0)
  end
  self.affine = bool_opt(who, "affine", o.affine, true)
  self.track_running_stats = bool_opt(who, "track_running_stats", o.track_running_stats, true)
  if self.affine then
    self.weight = U.new_param(self:class_name(), "weight", self.num_features)
    self.bias = U.new_param(self:class_name(), "bias", self.num_features)
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", core.zeros(self.num_features))
    self:register_buffer("running_var", core.ones(self.num_features))
    self:register_buffer("num_batches_tracked", core.zeros({}, {dtype = "int64"}))
  end
  self:reset_parameters()
end

--- cnn.nn._BatchNorm:reset_running_stats()
--- Resets the running statistics: mean 0, variance 1, no batches tracked.
function BatchNorm:reset_running_stats()
  if self.track_running_stats then
    U.no_grad(function()
      self.running_mean:zero_()
      self.running_var:fill_(1)
      self.num_batches_tracked:zero_()
    end)
  end
end

--- cnn.nn._BatchNorm:reset_parameters()
--- Resets the running statistics, and the weight to 1 and the bias to 0.
function BatchNorm:reset_parameters()
  self:reset_running_stats()
  if self.affine then
    init.ones_(self.weight)
    init.zeros_(self.bias)
  end
end

-- As torch.nn.modules.batchnorm._BatchNorm.forward: batch statistics in training mode (the
-- running ones move by momentum, or by 1/num_batches_tracked when momentum is false), running
-- statistics in eval mode unless the module tracks none.
local function batch_norm(self, x, opts)
  self:_check_input_dim(x)
  local factor = self.momentum or 0
  if self.training and self.track_running_stats and self.num_batches_tracked then
    self.num_batches_tracked:add_(1)
    if self.momentum == false then factor = 1 / self.num_batches_tracked:item() end
  end
  local use_batch = self.training or (self.running_mean == nil and self.running_var == nil)
  local rm, rv
  if not self.training or self.track_running_stats then rm, rv = self.running_mean, self.running_var end
  return F.batch_norm(x, rm, rv, self.weight, self.bias, use_batch, factor, self.eps, opts)
end

function BatchNorm:forward(x) return batch_norm(self, x) end

local RELU = {relu = true}

-- bn:_forward_relu(x) is F.relu(bn(x)) in one pass each way (F.batch_norm's relu option), with the
-- same running-statistics bookkeeping as forward; bn:_forward_relu(x, r) is F.relu(bn(x) + r) (its
-- residual option: a ResNet block's end). Callers that fuse a ReLU this way must check that bn's
-- forward is this class's own (models/resnet.lua does).
function BatchNorm:_forward_relu(x, residual)
  if residual == nil then return batch_norm(self, x, RELU) end
  return batch_norm(self, x, {relu = true, residual = residual})
end

function BatchNorm:extra_repr()
  return string.format("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s", self.num_features,
    pyfloat(self.eps), self.momentum and pyfloat(self.momentum) or "None", pybool(self.affine),
    pybool(self.track_running_stats))
end

--- class cnn.nn.BatchNorm1d(num_features, {eps=1e-5, momentum=0.1, affine=true, track_running_stats=true})
--- Batch normalisation of (N, C) or (N, C, L) inputs, per channel (see cnn.nn._BatchNorm).
L.BatchNorm1d = BatchNorm:extend("BatchNorm1d")
function L.BatchNorm1d:_check_input_dim(x)
  check_input("BatchNorm1d", x, {[2] = true, [3] = true}, "2-d (N, C) or 3-d (N, C, L)")
end

--- class cnn.nn.BatchNorm2d(num_features, {eps=1e-5, momentum=0.1, affine=true, track_running_stats=true})
--- Batch normalisation of (N, C, H, W) inputs, per channel (see cnn.nn._BatchNorm).
L.BatchNorm2d = BatchNorm:extend("BatchNorm2d")
function L.BatchNorm2d:_check_input_dim(x)
  check_input("BatchNorm2d", x, {[4] = true}, "4-d (N, C, H, W)")
end

L.LocalResponseNorm = Module:extend("LocalResponseNorm")

--- class cnn.nn.LocalResponseNorm(size, {alpha=1e-4, beta=0.75, k=1})
--- Local response normalisation across channels (F.local_response_norm), as in AlexNet.
function L.LocalResponseNorm:init(size, opts)
  local who = "LocalResponseNorm"
  local o = U.options(who, opts, {alpha = true, beta = true, k = true})
  self.size = U.int(who, "size", size, 1)
  self.alpha = number_opt(who, "alpha", o.alpha, 1e-4)
  self.beta = number_opt(who, "beta", o.beta, 0.75)
  self.k = number_opt(who, "k", o.k, 1.0)
end

function L.LocalResponseNorm:forward(x)
  return F.local_response_norm(x, self.size, {alpha = self.alpha, beta = self.beta, k = self.k})
end

function L.LocalResponseNorm:extra_repr()
  return string.format("%d, alpha=%s, beta=%s, k=%s", self.size, pyfloat(self.alpha), pyfloat(self.beta),
    pyfloat(self.k))
end

-- ---- shape -------------------------------------------------------------------------------------

L.Flatten = Module:extend("Flatten")

--- class cnn.nn.Flatten(start_dim=2, end_dim=-1)
--- class cnn.nn.Flatten{start_dim=2, end_dim=-1}
--- Merges dimensions start_dim .. end_dim; 1-based, so the default keeps the batch dimension.
--- (PyTorch's default start_dim=1 is this 2.)
function L.Flatten:init(start_dim, end_dim)
  if type(start_dim) == "table" then
    if end_dim ~= nil then fail("Flatten", "give the dims as numbers or as one options table, not both") end
    local o = U.options("Flatten", start_dim, {start_dim = true, end_dim = true})
    start_dim, end_dim = o.start_dim, o.end_dim
  end
  self.start_dim = dim_arg("Flatten", start_dim or 2)
  self.end_dim = dim_arg("Flatten", end_dim or -1)
end

function L.Flatten:forward(x)
  return F.flatten(x, self.start_dim, self.end_dim)
end

function L.Flatten:extra_repr()
  return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim)
end

--- class cnn.nn.Identity()
--- Returns its input unchanged (any constructor arguments are ignored, as in PyTorch).
L.Identity = Module:extend("Identity")
function L.Identity:init() end -- any arguments are ignored, as in PyTorch
function L.Identity:forward(x) return x end

-- ---- losses ------------------------------------------------------------------------------------

local reductions = {mean = true, sum = true, none = true}

local function reduction_opt(who, r)
  if r == nil then return "mean" end
  if not reductions[r] then fail(who, "reduction must be 'mean', 'sum' or 'none', got '%s'", show(r)) end
  return r
end

-- CrossEntropyLoss and NLLLoss: a class weight (C) is a buffer, as in PyTorch's _WeightedLoss;
-- ignore_index is a 1-based label whose samples count for nothing.
local function class_loss_init(self, who, opts, smoothing)
  local known = {reduction = true, weight = true, ignore_index = true, label_smoothing = smoothing or nil}
  local o = U.options(who, opts, known)
  self.reduction = reduction_opt(who, o.reduction)
  if o.weight ~= nil then
    if not U.is_tensor(o.weight) or o.weight:dim() ~= 1 then
      fail(who, "weight must be a 1-d tensor (one value per class)")
    end
    self:register_buffer("weight", o.weight)
  end
  if o.ignore_index ~= nil then
    if not U.is_int(o.ignore_index) then
      fail(who, "ignore_index must be an integer, got %s", U.describe(o.ignore_index))
    end
    self.ignore_index = math.tointeger(o.ignore_index)
  end
  if smoothing then
    self.label_smoothing = number_opt(who, "label_smoothing", o.label_smoothing, 0.0, 0)
    if self.label_smoothing > 1 then
      fail(who, "label_smoothing must be between 0 and 1, got %s", U.describe(self.label_smoothing))
    end
  end
end

local function class_loss_opts(self)
  local o = {reduction = self.reduction, weight = self.weight, ignore_index = self.ignore_index}
  if self.label_smoothing and self.label_smoothing ~= 0 then o.label_smoothing = self.label_smoothing end
  return o
end

L.CrossEntropyLoss = Module:extend("CrossEntropyLoss")

--- class cnn.nn.CrossEntropyLoss{reduction="mean", label_smoothing=0, weight=, ignore_index=}
--- The loss `loss(logits, labels)` of F.cross_entropy: logits (N, C), int64 labels (N) in 1..C.
--- A class weight tensor is kept as a buffer.
function L.CrossEntropyLoss:init(opts)
  class_loss_init(self, "CrossEntropyLoss", opts, true)
end

function L.CrossEntropyLoss:forward(input, target)
  return F.cross_entropy(input, target, class_loss_opts(self))
end

L.NLLLoss = Module:extend("NLLLoss")

--- class cnn.nn.NLLLoss{reduction="mean", weight=, ignore_index=}
--- The loss `loss(log_probs, labels)` of F.nll_loss: log-probabilities (N, C), int64 labels in 1..C.
function L.NLLLoss:init(opts)
  class_loss_init(self, "NLLLoss", opts, false)
end

function L.NLLLoss:forward(input, target)
  return F.nll_loss(input, target, class_loss_opts(self))
end

L.MSELoss = Module:extend("MSELoss")

--- class cnn.nn.MSELoss{reduction="mean"}
--- The loss `loss(input, target)` of F.mse_loss: the mean (or sum, or each) of squared differences.
function L.MSELoss:init(opts)
  local o = U.options("MSELoss", opts, {reduction = true})
  self.reduction = reduction_opt("MSELoss", o.reduction)
end

function L.MSELoss:forward(input, target)
  return F.mse_loss(input, target, {reduction = self.reduction})
end

-- The elementwise losses of cnn.F that take {reduction=} and one number option.
local function simple_loss(name, fn, extra, default)
  local cls = Module:extend(name)
  cls.init = function(self, opts)
    local known = {reduction = true}
    if extra then known[extra] = true end
    local o = U.options(name, opts, known)
    self.reduction = reduction_opt(name, o.reduction)
    if extra then self[extra] = number_opt(name, extra, o[extra], default) end
  end
  cls.forward = function(self, input, target)
    local o = {reduction = self.reduction}
    if extra then o[extra] = self[extra] end
    return F[fn](input, target, o)
  end
  return cls
end

--- class cnn.nn.L1Loss{reduction="mean"}
--- The loss `loss(input, target)` of F.l1_loss: the mean (or sum, or each) of absolute differences.
L.L1Loss = simple_loss("L1Loss", "l1_loss")

--- class cnn.nn.SmoothL1Loss{reduction="mean", beta=1}
--- The loss `loss(input, target)` of F.smooth_l1_loss.
L.SmoothL1Loss = simple_loss("SmoothL1Loss", "smooth_l1_loss", "beta", 1.0)

--- class cnn.nn.HuberLoss{reduction="mean", delta=1}
--- The loss `loss(input, target)` of F.huber_loss.
L.HuberLoss = simple_loss("HuberLoss", "huber_loss", "delta", 1.0)

L.BCEWithLogitsLoss = Module:extend("BCEWithLogitsLoss")

--- class cnn.nn.BCEWithLogitsLoss{reduction="mean", weight=, pos_weight=}
--- The loss `loss(logits, target)` of F.binary_cross_entropy_with_logits.
--- weight and pos_weight are kept as buffers.
function L.BCEWithLogitsLoss:init(opts)
  local who = "BCEWithLogitsLoss"
  local o = U.options(who, opts, {reduction = true, weight = true, pos_weight = true})
  self.reduction = reduction_opt(who, o.reduction)
  for _, k in ipairs {"weight", "pos_weight"} do
    if o[k] ~= nil then
      if not U.is_tensor(o[k]) then fail(who, "%s must be a tensor, got %s", k, type(o[k])) end
      self:register_buffer(k, o[k])
    end
  end
end

function L.BCEWithLogitsLoss:forward(input, target)
  return F.binary_cross_entropy_with_logits(input, target,
    {reduction = self.reduction, weight = self.weight, pos_weight = self.pos_weight})
end

L.BCELoss = Module:extend("BCELoss")

--- class cnn.nn.BCELoss{reduction="mean", weight=}
--- The loss `loss(probabilities, target)` of F.binary_cross_entropy; a weight is kept as a buffer.
function L.BCELoss:init(opts)
  local o = U.options("BCELoss", opts, {reduction = true, weight = true})
  self.reduction = reduction_opt("BCELoss", o.reduction)
  if o.weight ~= nil then
    if not U.is_tensor(o.weight) then fail("BCELoss", "weight must be a tensor, got %s", type(o.weight)) end
    self:register_buffer("weight", o.weight)
  end
end

function L.BCELoss:forward(input, target)
  return F.binary_cross_entropy(input, target, {reduction = self.reduction, weight = self.weight})
end

L.KLDivLoss = Module:extend("KLDivLoss")

--- class cnn.nn.KLDivLoss{reduction="mean", log_target=false}
--- The loss `loss(log_probs, target)` of F.kl_div; reduction may also be "batchmean".
function L.KLDivLoss:init(opts)
  local o = U.options("KLDivLoss", opts, {reduction = true, log_target = true})
  self.reduction = o.reduction == "batchmean" and "batchmean" or reduction_opt("KLDivLoss", o.reduction)
  self.log_target = bool_opt("KLDivLoss", "log_target", o.log_target, false)
end

function L.KLDivLoss:forward(input, target)
  return F.kl_div(input, target, {reduction = self.reduction, log_target = self.log_target})
end


-- ---- inference fusions ---------------------------------------------------------------------------

-- In eval mode under no_grad (model:eval() and cnn.no_grad), a Conv2d followed by a BatchNorm2d
-- that uses its running statistics is one convolution: per output channel o,
--   s[o] = gamma[o] / sqrt(running_var[o] + eps), y[o] = conv(x, w)[o] * s[o] + b'[o],
--   b'[o] = (b[o] - running_mean[o]) * s[o] + beta[o],
-- with the scale, the bias, a ReLU after either and a residual added before it (ResNet's blocks)
-- applied as the convolution stores its output (F.conv2d's scale, residual and relu options): one
-- pass over the activations instead of three, and no folded copy of the weights (ResNet-50's
-- would be 90 MB). The (s, b') vectors are kept on the conv module, stamped with the identity and
-- version (t:_version(), which every in-place write bumps: optimiser steps, load_state_dict, init
-- fills, t[i] = v) of each tensor they came from and with bn's eps; a stale stamp computes them
-- again, and train()/eval() drop them. Only the stock modules fuse (the same forward as these
-- classes, no hooks), so a subclass with its own forward, or a hook that must see each call,
-- keeps the modules' own calls.
local CONV_FORWARD, BN_FORWARD, RELU_FORWARD = L.Conv2d.forward, L.BatchNorm2d.forward, L.ReLU.forward

local function stock(m, cls, fwd) return m ~= nil and m.forward == fwd and m:is_a(cls) and not m:_has_hooks() end

local function inference(m) return not m.training and not core.is_grad_enabled() end

local function foldable_bn(bn)
  return stock(bn, L.BatchNorm2d, BN_FORWARD) and not bn.training and bn.track_running_stats and
    bn.running_mean ~= nil and bn.running_var ~= nil
end

-- bn's statistics and affine parameters have one value per conv output channel (else the modules'
-- own calls run, and batch_norm names the mismatch)
local function per_channel(bn, c)
  for _, t in ipairs {bn.running_mean, bn.running_var, bn.weight or false, bn.bias or false} do
    if t and not (t:dim() == 1 and t:numel() == c) then return false end
  end
  return true
end

-- conv's per-channel (scale, bias) for bn, made or reused (see above); nil when either is not finite
-- (eps = 0 over a zero variance: the scale is inf and (b - mean) * inf + beta NaN, where bn's own
-- (y - mean) * inf is +-inf), so the modules' own calls run
local function folded(conv, bn)
  local src = {conv.bias or false, bn.weight or false, bn.bias or false, bn.running_mean, bn.running_var}
  local f = conv:_fused()
  if f and rawequal(f.bn, bn) and f.eps == bn.eps then
    local ok = true
    for i = 1, #src do
      local t = src[i]
      if not rawequal(f.src[i], t) or (t and t:_version() ~= f.ver[i]) then
        ok = false
        break
      end
    end
    if ok then
      if not f.finite then return nil end
      return f.scale, f.bias
    end
  end
  local s = 1 / (bn.running_var + bn.eps):sqrt()
  if bn.weight then s = s * bn.weight end
  local b = conv.bias and (conv.bias - bn.running_mean) * s or -(bn.running_mean * s)
  if bn.bias then b = b + bn.bias end
  local ver = {}
  for i = 1, #src do ver[i] = src[i] and src[i]:_version() or 0 end
  f = {bn = bn, eps = bn.eps, src = src, ver = ver, scale = s:contiguous(), bias = b:contiguous(),
    finite = s:isfinite():all():item() and b:isfinite():all():item()}
  conv:_set_fused(f)
  if not f.finite then return nil end
  return f.scale, f.bias
end

-- conv's output shape for an (n, _, h, w) input
local function conv_out_shape(conv, n, h, w)
  local k, st, d, p = conv.kernel_size, conv.stride, conv.dilation, conv.padding
  if p == "same" then return {n, conv.out_channels, h, w} end
  if p == "valid" then p = {0, 0} end
  return {n, conv.out_channels, (h + 2 * p[1] - d[1] * (k[1] - 1) - 1) // st[1] + 1,
    (w + 2 * p[2] - d[2] * (k[2] - 1) - 1) // st[2] + 1}
end

local function conv_opts(conv, relu, scale, residual)
  return {stride = conv.stride, padding = conv.padding, dilation = conv.dilation, groups = conv.groups, relu = relu,
    scale = scale, residual = residual}
end

-- L._fused_forward(conv, bn, relu, x, residual): relu(bn(conv(x)) + residual) (bn, relu and
-- residual may each be nil) as one convolution with its epilogue, or nil when these modules do
-- not fuse here (training, grad mode on, not the stock classes, a bn without running statistics,
-- a residual that is not a float32 tensor of the output's shape). For models' forwards and
-- Sequential.
function L._fused_forward(conv, bn, relu, x, residual)
  if not (stock(conv, L.Conv2d, CONV_FORWARD) and inference(conv) and U.is_tensor(x) and x:dim() == 4) then
    return nil
  end
  if bn ~= nil and not (foldable_bn(bn) and per_channel(bn, conv.out_channels)) then return nil end
  if relu ~= nil and not stock(relu, L.ReLU, RELU_FORWARD) then return nil end
  if bn == nil and relu == nil and residual == nil then return nil end
  if residual ~= nil and not (U.is_tensor(residual) and residual:dtype() == "float32" and x:dtype() == "float32") then
    return nil
  end
  local s, b = nil, conv.bias
  if bn then
    s, b = folded(conv, bn)
    if not s then return nil end
  end
  if residual ~= nil then -- its shape must be the output's (else the modules' own calls, which broadcast or fail)
    local n, _, h, w = table.unpack(x:shape())
    local o = conv_out_shape(conv, n, h, w)
    local r = residual:shape()
    if #r ~= 4 or r[1] ~= o[1] or r[2] ~= o[2] or r[3] ~= o[3] or r[4] ~= o[4] then return nil end
  end
  return F.conv2d(x, conv.weight, b, conv_opts(conv, relu ~= nil, s, residual))
end

-- Sequential's inference step (nn/module.lua): at children m, m2, m3, the fused output and how
-- many children it covered, or nil.
local function sequential_fuse(m, m2, m3, x)
  if not stock(m, L.Conv2d, CONV_FORWARD) then return nil end
  if m2 ~= nil and foldable_bn(m2) then
    local relu = stock(m3, L.ReLU, RELU_FORWARD) and m3 or nil
    local y = L._fused_forward(m, m2, relu, x)
    if y then return y, relu and 3 or 2 end
  elseif stock(m2, L.ReLU, RELU_FORWARD) then
    local y = L._fused_forward(m, nil, m2, x)
    if y then return y, 2 end
  end
  return nil
end
M.set_inference_fuser(sequential_fuse)

-- Classes whose forward keeps no reference to its input or output: Sequential frees an
-- intermediate between two of them, in training as in inference (see Sequential:forward). The
-- mark is the forward itself: a class whose forward a script replaces (nn.Tanh.forward = ...) is
-- no longer marked.
for _, name in ipairs {"Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "ReLU", "LeakyReLU",
  "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout", "BatchNorm1d", "BatchNorm2d", "LocalResponseNorm",
  "Flatten", "Identity"} do
  L[name].keeps_no_activations = L[name].forward
end

return L
