--- module cnn.nn.init
--- Weight initialisation, as torch.nn.init.
--- Every fill draws from cnn's generator, runs without recording gradients, modifies the tensor in
--- place and returns it.

-- cnn.nn.init: PyTorch's torch.nn.init fills (same names, signatures, gains and fan rules), drawing
-- from cnn's seeded random stream. Every fill runs without recording gradients, modifies the
-- tensor in place and returns it.
local core = require "cnn.core"
local U = require "cnn.nn.util"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")

local fail, is_tensor = U.fail, U.is_tensor

local init = {}

-- any_dtype: the fills of one value (constant_, zeros_, ones_), which PyTorch's take in every dtype
local function check(fn, t, any_dtype)
  if not is_tensor(t) then fail(fn, "expected a tensor, got %s", type(t)) end
  if not any_dtype and t:dtype() ~= "float32" then fail(fn, "expected a float32 tensor, got %s", t:dtype()) end
end

local function num(fn, name, v, default)
  if v == nil then return default end
  if type(v) ~= "number" then fail(fn, "%s must be a number, got %s", name, type(v)) end
  return v
end

--- cnn.nn.init.calculate_gain(nonlinearity, param) -> number
--- The gain PyTorch recommends for a nonlinearity, to scale initial weights by.
--- linear, conv*, sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + slope^2)) with
--- slope = param (default 0.01); selu: 3/4.
function init.calculate_gain(nonlinearity, param)
  local linear = {linear = true, conv1d = true, conv2d = true, conv3d = true, conv_transpose1d = true,
    conv_transpose2d = true, conv_transpose3d = true, sigmoid = true}
  if linear[nonlinearity] then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return math.sqrt(2) end
  if nonlinearity == "leaky_relu" then
    local slope = param
    if slope == nil then slope = 0.01 end
    if type(slope) ~= "number" then
      fail("calculate_gain", "negative_slope %s is not a valid number", tostring(param))
    end
    return math.sqrt(2 / (1 + slope * slope))
  end
  if nonlinearity == "selu" then return 3 / 4 end
  fail("calculate_gain", "unsupported nonlinearity '%s'", tostring(nonlinearity))
end

--- fan_in, fan_out of a weight: (out, in, k...) gives in * prod(k), out * prod(k).
function init._calculate_fan_in_and_fan_out(t)
  if t:dim() < 2 then
    fail("init", "fan in and fan out can not be computed for a tensor with fewer than 2 dimensions")
  end
  local receptive = 1
  for d = 3, t:dim() do receptive = receptive * t:size(d) end
  return t:size(2) * receptive, t:size(1) * receptive
end

local function fan(t, mode, fn)
  local fan_in, fan_out = init._calculate_fan_in_and_fan_out(t)
  if mode == "fan_in" then return fan_in end
  if mode == "fan_out" then return fan_out end
  fail(fn, "mode %s not supported, please use one of fan_in, fan_out", tostring(mode))
end

-- > 0 while init.skip_init runs its constructor: every fill below is then a no-op
local skipping = 0

-- f(t) without recording, unless skip_init is running. Its errors (the tensor method's, "zero_:
-- ... it is expanded") come under fn's name and, as fail's, without a position.
local function fill(fn, t, f)
  if skipping == 0 then
    local ok, err = pcall(U.no_grad, f)
    if not ok then
      local msg = tostring(err):gsub("^[^\n]-init_weights%.lua:%d+: ", "", 1)
      if msg:sub(1, #fn + 1) ~= fn .. ":" then msg = fn .. ": " .. msg:gsub("^[%w_]+: ", "", 1) end
      error(msg, 0)
    end
  end
  return t
end

local function fill_uniform(fn, t, a, b) return fill(fn, t, function() t:uniform_(a, b) end) end
local function fill_normal(fn, t, m, s) return fill(fn, t, function() t:normal_(m, s) end) end

-- ctor(...) with every fill above skipped: cnn.nn.skip_init (nn/init.lua) documents it.
function init._skip_init(ctor, ...)
  if type(ctor) ~= "function" and not (type(ctor) == "table" and (getmetatable(ctor) or {}).__call) then
    fail("skip_init", "expected a module class or constructor, got %s", type(ctor))
  end
  skipping = skipping + 1
  local res = table.pack(pcall(ctor, ...))
  skipping = skipping - 1
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- cnn.nn.init.uniform_(t, a=0, b=1) -> t
--- Fills t with uniform random values in [a, b).
function init.uniform_(t, a, b)
  check("uniform_", t)
  fill_uniform("uniform_", t, num("uniform_", "a", a, 0), num("uniform_", "b", b, 1))
  return t
end

--- cnn.nn.init.normal_(t, mean=0, std=1) -> t
--- Fills t with normal random values.
function init.normal_(t, mean, std)
  check("normal_", t)
  fill_normal("normal_", t, num("normal_", "mean", mean, 0), num("normal_", "std", std, 1))
  return t
end

--- cnn.nn.init.constant_(t, value) -> t
--- Fills t with value (t of any dtype, as PyTorch's).
function init.constant_(t, val)
  check("constant_", t, true)
  if type(val) ~= "number" then fail("constant_", "val must be a number, got %s", type(val)) end
  return fill("constant_", t, function() t:fill_(val) end)
end

--- cnn.nn.init.zeros_(t) -> t
--- Fills t with 0 (t of any dtype).
function init.zeros_(t)
  check("zeros_", t, true)
  return fill("zeros_", t, function() t:zero_() end)
end

--- cnn.nn.init.ones_(t) -> t
--- Fills t with 1 (t of any dtype).
function init.ones_(t)
  check("ones_", t, true)
  return fill("ones_", t, function() t:fill_(1) end)
end

--- cnn.nn.init.xavier_uniform_(t, gain=1) -> t
--- Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
--- For a weight (out, in, k...), fan_in = in * prod(k) and fan_out = out * prod(k).
function init.xavier_uniform_(t, gain)
  check("xavier_uniform_", t)
  local fan_in, fan_out = init._calculate_fan_in_and_fan_out(t)
  local std = num("xavier_uniform_", "gain", gain, 1) * math.sqrt(2 / (fan_in + fan_out))
  local a = math.sqrt(3) * std
  fill_uniform("xavier_uniform_", t, -a, a)
  return t
end

--- cnn.nn.init.xavier_normal_(t, gain=1) -> t
--- Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
function init.xavier_normal_(t, gain)
  check("xavier_normal_", t)
  local fan_in, fan_out = init._calculate_fan_in_and_fan_out(t)
  fill_normal("xavier_normal_", t, 0, num("xavier_normal_", "gain", gain, 1) * math.sqrt(2 / (fan_in + fan_out)))
  return t
end

--- cnn.nn.init.trunc_normal_(t, mean=0, std=1, a=-2, b=2) -> t
--- Fills t with N(mean, std^2) values truncated to [a, b].
--- Values outside are drawn again (whole-tensor passes, at most 100) and any left are clamped, so
--- the distribution is the truncated normal unless [a, b] holds almost none of the mass. (PyTorch
--- inverts the CDF instead; the two random streams differ anyway.)
function init.trunc_normal_(t, mean, std, a, b)
  check("trunc_normal_", t)
  mean, std = num("trunc_normal_", "mean", mean, 0), num("trunc_normal_", "std", std, 1)
  a, b = num("trunc_normal_", "a", a, -2), num("trunc_normal_", "b", b, 2)
  if not (a < b) then fail("trunc_normal_", "a (%s) must be below b (%s)", show(a), show(b)) end
  if std < 0 then fail("trunc_normal_", "std must be >= 0, got %s", show(std)) end
  return fill("trunc_normal_", t, function()
    t:normal_(mean, std)
    for _ = 1, 100 do
      local outside = t:lt(a):logical_or(t:gt(b))
      if not outside:any():item() then break end
      t:copy_(core.where(outside, t:clone():normal_(mean, std), t))
    end
    t:clamp_(a, b)
  end)
end

-- kaiming_*_(t, a=0, mode="fan_in", nonlinearity="leaky_relu"), the arguments positional as in
-- PyTorch or one options table {a=, mode=, nonlinearity=}. Returns the std.
local function kaiming_std(fn, t, a, mode, nonlinearity)
  check(fn, t)
  if type(a) == "table" then
    if mode ~= nil or nonlinearity ~= nil then fail(fn, "give the arguments positionally or as one table, not both") end
    local o = U.options(fn, a, {a = true, mode = true, nonlinearity = true})
    a, mode, nonlinearity = o.a, o.mode, o.nonlinearity
  end
  a = num(fn, "a", a, 0)
  local f = fan(t, mode or "fan_in", fn)
  local gain = init.calculate_gain(nonlinearity or "leaky_relu", a)
  return gain / math.sqrt(f)
end

--- cnn.nn.init.kaiming_uniform_(t, a=0, mode="fan_in", nonlinearity="leaky_relu") -> t
--- He uniform: U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).
--- fan is fan_in or fan_out by mode. The arguments may also come as one table {a=, mode=, nonlinearity=}.
function init.kaiming_uniform_(t, a, mode, nonlinearity)
  if is_tensor(t) and t:numel() == 0 then return t end -- PyTorch: a no-op on zero-element tensors
  local bound = math.sqrt(3) * kaiming_std("kaiming_uniform_", t, a, mode, nonlinearity)
  fill_uniform("kaiming_uniform_", t, -bound, bound)
  return t
end

--- cnn.nn.init.kaiming_normal_(t, a=0, mode="fan_in", nonlinearity="leaky_relu") -> t
--- He normal: N(0, std^2) with std = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a).
function init.kaiming_normal_(t, a, mode, nonlinearity)
  if is_tensor(t) and t:numel() == 0 then return t end
  fill_normal("kaiming_normal_", t, 0, kaiming_std("kaiming_normal_", t, a, mode, nonlinearity))
  return t
end

return init
