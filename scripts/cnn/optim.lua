--- module cnn.optim
--- Optimisers (SGD, Adam, AdamW, RMSprop, Adagrad) and learning-rate schedules.
--- `local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})`, then after each
--- backward `opt:step()` and `opt:zero_grad()`. Each parameter's update runs in C.

-- cnn.optim: optimisers (SGD, Adam, AdamW, RMSprop, Adagrad) and learning-rate schedules (StepLR,
-- CosineAnnealingLR, ReduceLROnPlateau) with PyTorch 1.13's rules. Lua holds the parameter groups, the per-parameter
-- state and every check; each parameter's update runs in C (core.optim_kernels), one call a tensor.
local core = require "cnn.core"

local K = core.optim_kernels
local optim = {}

local util = require "cnn.util"
local is_tensor = util.is_tensor

local function is_number(x) return type(x) == "number" and x == x end

-- Deep copy of plain tables (betas, lists of lrs); tensors and other values are shared.
local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return c
end

-- Numbers as PyTorch prints them (0.001, 1e-08); tables of numbers as {0.9, 0.999}.
local function show(v)
  if math.type(v) == "integer" then return tostring(v) end
  if type(v) == "number" then return util.show(v, "%.10g") end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = show(x) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

local function shape_str(t) return "{" .. table.concat(t:shape(), ", ") .. "}" end

-- The class pattern: a class is the metatable of its instances, `Base:extend(name)` makes a
-- subclass (metamethods are copied, since Lua does not find them through __index) and calling a
-- class, `optim.SGD(params, opts)`, runs its `new`.
--- cnn.optim.Optimizer:extend("Name") -> class
--- cnn.optim.LRScheduler:extend("Name") -> class
--- A subclass of an optimiser or scheduler class (`local MyOpt = optim.Optimizer:extend("MyOpt")`).
--- Calling the class runs its new(...). An optimiser class gives `options` ({name, default} pairs),
--- `check(group, where)`, `state_keys` and `step`.
local function extend(base, name)
  local cls = {name = name, __name = "cnn.optim." .. name}
  for k, v in pairs(base) do
    if type(k) == "string" and k:sub(1, 2) == "__" and k ~= "__name" then cls[k] = v end
  end
  if rawget(base, "__index") == base then cls.__index = cls end
  return setmetatable(cls, {__index = base, __call = function(c, ...) return c:new(...) end})
end

-- The option names an optimiser class accepts (its `options`), kept on the class: a subclass made
-- with extend gets its own from its options, inherited or not.
local function known_of(cls)
  local options = cls.options
  if rawget(cls, "known") == nil or rawget(cls, "_known_options") ~= options then
    if type(options) ~= "table" then
      error(string.format("%s: the class gives no options (a list of {name, default} pairs)", cls.name), 3)
    end
    local known = {}
    for _, o in ipairs(options) do known[o[1]] = true end
    rawset(cls, "known", known)
    rawset(cls, "_known_options", options)
  end
  return cls.known
end

local function is_instance(x, cls)
  local mt = getmetatable(x)
  while type(mt) == "table" do
    if mt == cls then return true end
    local up = getmetatable(mt)
    mt = up and up.__index
  end
  return false
end

------------------------------------------------------------------------------------------------
-- Optimizer: parameter groups, state, zero_grad, state_dict. Subclasses give `options` (name,
-- default, checked by `check`), `state_keys` and `step`.
------------------------------------------------------------------------------------------------

--- class cnn.optim.Optimizer
--- The base of the optimisers: parameter groups, per-parameter state, zero_grad and state_dict.
--- `opt.param_groups` lists the groups (tables of options with their params); `opt.state` holds each
--- parameter's state; `tostring(opt)` shows the groups' options.

--- field cnn.optim.Optimizer.lr
--- The first group's learning rate; assigning it sets every group's (`opt.lr = 0.01`).
local Optimizer = {name = "Optimizer", __name = "cnn.optim.Optimizer", extend = extend}
optim.Optimizer = Optimizer

-- opt.lr reads the first group's lr; assigning it sets every group's.
function Optimizer.__index(self, k)
  if k == "lr" then return rawget(self, "param_groups")[1].lr end
  return getmetatable(self)[k]
end

function Optimizer.__newindex(self, k, v)
  if k == "lr" then
    if not is_number(v) or v < 0 then
      error(string.format("%s: lr must be a number >= 0, got %s", self.name, util.show(v)), 2)
    end
    for _, g in ipairs(self.param_groups) do g.lr = v end
    return
  end
  rawset(self, k, v)
end

function Optimizer.__tostring(self)
  local lines = {self.name .. " ("}
  for i, g in ipairs(self.param_groups) do
    lines[#lines + 1] = "Parameter Group " .. i
    local keys = {}
    for k in pairs(g) do if k ~= "params" then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do lines[#lines + 1] = "    " .. k .. ": " .. show(g[k]) end
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

-- Keys a group may carry besides the options: its params, and the schedulers' initial_lr.
local GROUP_EXTRA = {params = true, initial_lr = true}

-- Checks a group's option values with the class's rules; returns an error message or nil.
local function check_group_values(cls, g, where)
  for _, o in ipairs(cls.options) do
    local name, default = o[1], o[2]
    local v = g[name]
    local kind = type(default == nil and 0 or default)
    if v == nil then return where .. "option '" .. name .. "' is missing" end
    if kind == "boolean" and type(v) ~= "boolean" then
      return string.format("%soption '%s' must be a boolean, got %s", where, name, type(v))
    elseif kind == "number" and not is_number(v) then
      return string.format("%soption '%s' must be a number, got %s", where, name, util.show(v))
    elseif kind == "table" and (type(v) ~= "table" or not is_number(v[1]) or not is_number(v[2]) or #v ~= 2) then
      return string.format("%soption '%s' must be a table of two numbers", where, name)
    end
  end
  if g.initial_lr ~= nil and not is_number(g.initial_lr) then
    return where .. "initial_lr must be a number"
  end
  return cls.check(g, where)
end

-- A group table from user input: options copied over defaults, params a fresh list. Returns the
-- group or nil and an error message. `first` is the position of its first parameter.
local function make_group(self, spec, gi, first)
  local cls = getmetatable(self)
  local where = "parameter group " .. gi .. ": "
  if type(spec) ~= "table" or is_tensor(spec) then
    return nil, "a parameter group must be a table with params, got " .. (is_tensor(spec) and "a tensor" or type(spec))
  end
  local known = known_of(cls)
  for k in pairs(spec) do
    if not known[k] and not GROUP_EXTRA[k] then
      return nil, string.format("unknown option '%s' in parameter group %d", tostring(k), gi)
    end
  end
  local params = spec.params
  if is_tensor(params) then params = {params} end
  if type(params) ~= "table" then
    return nil, string.format("parameter group %d: params must be a tensor or a list of tensors, got %s", gi,
      type(params))
  end
  if #params == 0 then return nil, string.format("parameter group %d has an empty parameter list", gi) end
  local g = {params = {}}
  local seen = {}
  for _, other in ipairs(self.param_groups) do
    for _, p in ipairs(other.params) do seen[p] = true end
  end
  for i, p in ipairs(params) do
    local pos = first + i - 1
    if not is_tensor(p) then
      return nil, string.format("parameter %d is a %s, not a tensor", pos, type(p))
    end
    if p:dtype() ~= "float32" then
      return nil, string.format("parameter %d is %s; only float32 tensors can be optimised", pos, p:dtype())
    end
    if not p.is_leaf then
      return nil, string.format("parameter %d is not a leaf tensor (it has a grad_fn); optimise leaves", pos)
    end
    if not p:is_contiguous() then return nil, string.format("parameter %d is not contiguous", pos) end
    if seen[p] then return nil, string.format("parameter %d appears more than once in the parameter groups", pos) end
    seen[p] = true
    g.params[i] = p
  end
  for k, v in pairs(spec) do if k ~= "params" then g[k] = copy(v) end end
  for k, v in pairs(self.defaults) do if g[k] == nil then g[k] = copy(v) end end
  if g.lr == nil then
    return nil, string.format("lr is required (in the options or in every parameter group; group %d has none)", gi)
  end
  local msg = check_group_values(cls, g, where)
  if msg then return nil, msg end
  return g
end

local function count_params(self)
  local n = 0
  for _, g in ipairs(self.param_groups) do n = n + #g.params end
  return n
end

--- cnn.optim.Optimizer:add_param_group{params=, lr=, ...}
--- Adds a parameter group; the options it does not give take the optimiser's defaults.
function Optimizer:add_param_group(spec)
  local g, msg = make_group(self, spec, #self.param_groups + 1, count_params(self) + 1)
  if not g then error(self.name .. ": " .. msg, 2) end
  self.param_groups[#self.param_groups + 1] = g
end

--- cnn.optim.Optimizer:new(params, opts) -> optimizer
--- Makes an instance (calling the class, `optim.SGD(params, opts)`, does this).
--- params is a list of tensors (model:parameters()) or a list of parameter groups {params=, lr=, ...};
--- opts gives the defaults of every group.
function Optimizer.new(cls, params, opts)
  local name = cls.name
  opts = util.check_options(name, opts, known_of(cls), 2)
  local defaults = {}
  for _, o in ipairs(cls.options) do
    local v = opts[o[1]]
    if v == nil then v = o[2] end
    defaults[o[1]] = copy(v)
  end
  if is_tensor(params) then
    error(name .. ": params must be a list of tensors or of parameter groups, got a tensor (wrap it in a table)", 2)
  end
  if type(params) ~= "table" then
    error(string.format("%s: params must be a list of tensors or of parameter groups, got %s", name, type(params)), 2)
  end
  if getmetatable(params) ~= nil and type(params.parameters) == "function" then -- a module: # would raise
    error(name .. ": params must be a list of tensors or of parameter groups, got a module " ..
      "(pass model:parameters())", 2)
  end
  if #params == 0 then
    if next(params) ~= nil then
      error(name .. ": params must be a list of tensors, got a table with named keys (pass model:parameters())", 2)
    end
    error(name .. ": got an empty parameter list", 2)
  end
  -- the defaults are checked once here (lr may be left to the groups)
  local probe = copy(defaults)
  if probe.lr == nil then probe.lr = 0 end
  local msg = check_group_values(cls, probe, "")
  if msg then error(name .. ": " .. msg, 2) end

  local self = setmetatable({defaults = defaults, param_groups = {}, state = {}}, cls)
  local specs = is_tensor(params[1]) and {{params = params}} or params
  for gi, spec in ipairs(specs) do
    if is_tensor(spec) then
      error(string.format("%s: params mixes tensors and parameter groups (element %d)", name, gi), 2)
    end
    local g, err = make_group(self, spec, gi, count_params(self) + 1)
    if not g then error(name .. ": " .. err, 2) end
    self.param_groups[gi] = g
  end
  return self
end

-- zero_grad's work on a list of parameters, for Optimizer:zero_grad and Module:zero_grad (`who`
-- in errors, raised at their caller's line): each .grad dropped (set_to_none, the default) or
-- zeroed in place.
function optim._zero_grads(who, params, opts)
  util.check_options(who, opts, {set_to_none = true}, 3)
  if opts and opts.set_to_none ~= nil and type(opts.set_to_none) ~= "boolean" then
    error(who .. ": set_to_none must be a boolean, got " .. type(opts.set_to_none), 3)
  end
  local to_none = not opts or opts.set_to_none ~= false
  if to_none and K.drop_grads(params) then return end -- (one C call; the loop for the rest)
  for _, p in ipairs(params) do
    if to_none then
      p.grad = nil
    else
      local grad = p.grad
      if grad then grad:zero_() end
    end
  end
end

--- cnn.optim.Optimizer:zero_grad({set_to_none=true})
--- Drops every parameter's .grad (set_to_none=false zeroes it in place instead).
function Optimizer:zero_grad(opts)
  for _, g in ipairs(self.param_groups) do optim._zero_grads(self.name .. ": zero_grad", g.params, opts) end
end

-- Runs a step's closure with grad recording on, as PyTorch's step(closure) does.
local function run_closure(name, closure)
  if type(closure) ~= "function" then
    error(name .. ": step expects a closure (function) or nothing, got " .. type(closure), 3)
  end
  return (require("cnn.autograd")._with_grad_mode(true, closure))
end

--- cnn.optim.Optimizer:state_dict() -> {state=, param_groups=}
--- The optimiser's state (momentum buffers, step counts) and its groups' options, for checkpoints.
--- state maps each parameter's position (counted across groups from 1) to its tensors, copied;
--- param_groups lists each group's options and the positions of its parameters.
function Optimizer:state_dict()
  local index, groups, pos = {}, {}, 0
  for gi, g in ipairs(self.param_groups) do
    local packed = {params = {}}
    for k, v in pairs(g) do if k ~= "params" then packed[k] = copy(v) end end
    for i, p in ipairs(g.params) do
      pos = pos + 1
      index[p] = pos
      packed.params[i] = pos
    end
    groups[gi] = packed
  end
  local state = {}
  for p, st in pairs(self.state) do
    local i = index[p]
    if i then
      local c = {}
      for k, v in pairs(st) do c[k] = is_tensor(v) and v:detach():clone() or copy(v) end
      state[i] = c
    end
  end
  return {state = state, param_groups = groups}
end

-- Builds the state and groups a state_dict describes, or returns nil and a message; nothing is
-- changed until everything has been checked.
local function unpack_state_dict(self, sd)
  local cls = getmetatable(self)
  if type(sd) ~= "table" or type(sd.state) ~= "table" or type(sd.param_groups) ~= "table" then
    return nil, nil, "expected a table with state and param_groups (from state_dict())"
  end
  local saved, groups = sd.param_groups, self.param_groups
  if #saved ~= #groups then
    return nil, nil, string.format("the state dict has %d parameter group(s) but the optimiser has %d", #saved, #groups)
  end
  local id_map, new_groups = {}, {}
  for gi, sg in ipairs(saved) do
    if type(sg) ~= "table" or type(sg.params) ~= "table" then
      return nil, nil, string.format("parameter group %d of the state dict has no params list", gi)
    end
    local g = groups[gi]
    if #sg.params ~= #g.params then
      return nil, nil, string.format("parameter group %d has %d parameters in the state dict but %d in the optimiser",
        gi, #sg.params, #g.params)
    end
    local ng = {params = g.params}
    for k, v in pairs(sg) do
      if k ~= "params" then
        if not known_of(cls)[k] and not GROUP_EXTRA[k] then
          return nil, nil, string.format("unknown option '%s' in parameter group %d of the state dict", tostring(k), gi)
        end
        ng[k] = copy(v)
      end
    end
    local msg = check_group_values(cls, ng, "parameter group " .. gi .. " of the state dict: ")
    if msg then return nil, nil, msg end
    for i, id in ipairs(sg.params) do id_map[id] = g.params[i] end
    new_groups[gi] = ng
  end
  local state = {}
  for id, st in pairs(sd.state) do
    local p = id_map[id]
    if not p then
      return nil, nil,
        string.format("the state dict has state for parameter %s, which is in none of its groups", tostring(id))
    end
    if type(st) ~= "table" then
      return nil, nil, string.format("state of parameter %s must be a table, got %s", util.show(id), type(st))
    end
    local c = {}
    for k, v in pairs(st) do
      if not cls.state_keys[k] then
        return nil, nil, string.format("state of parameter %s has '%s', which %s does not keep " ..
          "(a state dict from another optimiser?)", tostring(id), tostring(k), cls.name)
      end
      if k == "step" then
        if not is_tensor(v) or v:numel() ~= 1 or v:dtype() ~= "float32" then
          return nil, nil,
            string.format("state of parameter %s: step must be a one-element float32 tensor", tostring(id))
        end
      elseif not is_tensor(v) then
        return nil, nil, string.format("state of parameter %s: %s must be a tensor, got %s", util.show(id), k, type(v))
      elseif v:dtype() ~= "float32" or shape_str(v) ~= shape_str(p) then
        return nil, nil, string.format("state of parameter %s: %s is a %s %s tensor but the parameter is %s %s",
          tostring(id), k, shape_str(v), v:dtype(), shape_str(p), p:dtype())
      end
      c[k] = v:detach():clone()
    end
    state[p] = c
  end
  return state, new_groups
end

--- cnn.optim.Optimizer:load_state_dict(state_dict)
--- Restores what opt:state_dict() returned (the same numbers of groups and parameters).
function Optimizer:load_state_dict(sd)
  local state, groups, msg = unpack_state_dict(self, sd)
  if not state then error(self.name .. ": load_state_dict: " .. msg, 2) end
  rawset(self, "state", state)
  rawset(self, "param_groups", groups)
end

------------------------------------------------------------------------------------------------
-- SGD
------------------------------------------------------------------------------------------------

local function nonneg(g, key, what, where)
  if g[key] < 0 then return string.format("%sinvalid %s %s (must be >= 0)", where, what, show(g[key])) end
end

--- class cnn.optim.SGD(params, {lr=, momentum=0, dampening=0, weight_decay=0, nesterov=false, maximize=false})
--- Stochastic gradient descent, with momentum and Nesterov momentum, as torch.optim.SGD.
--- lr is required (in the options or in every parameter group); weight_decay adds an L2 penalty to
--- the gradient; maximize ascends instead.
local SGD = Optimizer:extend("SGD")
optim.SGD = SGD
SGD.options = {
  {"lr", nil}, {"momentum", 0}, {"dampening", 0}, {"weight_decay", 0}, {"nesterov", false}, {"maximize", false},
}
SGD.state_keys = {momentum_buffer = true}

--- cnn.optim.SGD.check(group, where) -> message|nil
--- Checks a parameter group's option values; returns an error message (prefixed by where) or nil.
function SGD.check(g, where)
  local msg = nonneg(g, "lr", "learning rate", where) or nonneg(g, "momentum", "momentum", where) or
    nonneg(g, "weight_decay", "weight_decay", where)
  if msg then return msg end
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    return where .. "Nesterov momentum requires a momentum and zero dampening"
  end
end

--- cnn.optim.SGD:step(closure) -> loss
--- One SGD update of every parameter that has a .grad (as PyTorch's, in C, one call per tensor).
--- closure, when given, is called first (with gradient recording on) and its loss returned.
function SGD:step(closure)
  local loss = closure ~= nil and run_closure(self.name, closure) or nil
  local state, pos = self.state, 0
  for _, group in ipairs(self.param_groups) do
    -- the group's updates in one call (one parallel loop) once every buffer exists; else one by one
    local after = K.sgd_group(self.name, pos, group, state)
    if after then
      pos = after
      goto next_group
    end
    for _, p in ipairs(group.params) do
      pos = pos + 1
      local grad = p.grad
      if grad then
        local st = state[p]
        if not st then st = {}; state[p] = st end
        local buf, new = st.momentum_buffer, false
        if buf == nil and group.momentum ~= 0 then
          buf, new = core.zeros_like(p), true
          st.momentum_buffer = buf
        end
        K.sgd("SGD", pos, p, grad, group, buf, new)
      end
    end
    ::next_group::
  end
  return loss
end

------------------------------------------------------------------------------------------------
-- Adam and AdamW
------------------------------------------------------------------------------------------------

--- class cnn.optim.Adam(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0, amsgrad=false, maximize=false})
--- Adam (Kingma and Ba 2015), as torch.optim.Adam: weight_decay adds an L2 penalty to the gradient.
local Adam = Optimizer:extend("Adam")
optim.Adam = Adam
Adam.options = {
  {"lr", 1e-3}, {"betas", {0.9, 0.999}}, {"eps", 1e-8}, {"weight_decay", 0}, {"amsgrad", false}, {"maximize", false},
}
Adam.state_keys = {step = true, exp_avg = true, exp_avg_sq = true, max_exp_avg_sq = true}
Adam.decoupled = false

--- cnn.optim.Adam.check(group, where) -> message|nil
--- Checks a parameter group's option values; returns an error message (prefixed by where) or nil.
function Adam.check(g, where)
  local msg = nonneg(g, "lr", "learning rate", where) or nonneg(g, "eps", "epsilon", where) or
    nonneg(g, "weight_decay", "weight_decay", where)
  if msg then return msg end
  for i = 1, 2 do
    local b = g.betas[i]
    if not (b >= 0 and b < 1) then
      return string.format("%sinvalid beta %d: %s (must be in [0, 1))", where, i, show(b))
    end
  end
end

--- cnn.optim.Adam:step(closure) -> loss
--- One Adam (or AdamW) update of every parameter that has a .grad.
--- closure, when given, is called first and its loss returned.
function Adam:step(closure)
  local loss = closure ~= nil and run_closure(self.name, closure) or nil
  local state, pos, name, decoupled = self.state, 0, self.name, self.decoupled
  for _, group in ipairs(self.param_groups) do
    for _, p in ipairs(group.params) do
      pos = pos + 1
      local grad = p.grad
      if grad then
        local st = state[p]
        if not st or st.step == nil then
          st = {step = core.zeros({}), exp_avg = core.zeros_like(p), exp_avg_sq = core.zeros_like(p)}
          state[p] = st
        end
        if group.amsgrad and st.max_exp_avg_sq == nil then st.max_exp_avg_sq = core.zeros_like(p) end
        K.adam(name, pos, p, grad, group, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, st.step, decoupled)
      end
    end
  end
  return loss
end

--- class cnn.optim.AdamW(params, {lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=1e-2, amsgrad=false,
---   maximize=false})
--- Adam with decoupled weight decay (Loshchilov and Hutter 2019), as torch.optim.AdamW.
local AdamW = Adam:extend("AdamW")
optim.AdamW = AdamW
AdamW.options = {
  {"lr", 1e-3}, {"betas", {0.9, 0.999}}, {"eps", 1e-8}, {"weight_decay", 1e-2}, {"amsgrad", false}, {"maximize", false},
}
AdamW.decoupled = true

------------------------------------------------------------------------------------------------
-- RMSprop and Adagrad
------------------------------------------------------------------------------------------------

--- class cnn.optim.RMSprop(params, {lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=false,
---   maximize=false})
--- RMSprop (Hinton 2012), as torch.optim.RMSprop: gradients divided by a running RMS of past ones.
local RMSprop = Optimizer:extend("RMSprop")
optim.RMSprop = RMSprop
RMSprop.options = {
  {"lr", 1e-2}, {"alpha", 0.99}, {"eps", 1e-8}, {"weight_decay", 0}, {"momentum", 0}, {"centered", false},
  {"maximize", false},
}
RMSprop.state_keys = {step = true, square_avg = true, grad_avg = true, momentum_buffer = true}

--- cnn.optim.RMSprop.check(group, where) -> message|nil
--- Checks a parameter group's option values; returns an error message (prefixed by where) or nil.
function RMSprop.check(g, where)
  return nonneg(g, "lr", "learning rate", where) or nonneg(g, "eps", "epsilon", where) or
    nonneg(g, "momentum", "momentum", where) or nonneg(g, "weight_decay", "weight_decay", where) or
    nonneg(g, "alpha", "alpha", where)
end

--- cnn.optim.RMSprop:step(closure) -> loss
--- One RMSprop update of every parameter that has a .grad.
--- A running mean of squared gradients (alpha) divides each gradient; centered subtracts the squared
--- mean gradient. closure, when given, is called first and its loss returned.
function RMSprop:step(closure)
  local loss = closure ~= nil and run_closure(self.name, closure) or nil
  local state, pos = self.state, 0
  for _, group in ipairs(self.param_groups) do
    for _, p in ipairs(group.params) do
      pos = pos + 1
      local grad = p.grad
      if grad then
        local st = state[p]
        if not st or st.step == nil then
          st = {step = core.zeros({}), square_avg = core.zeros_like(p)}
          state[p] = st
        end
        if group.momentum > 0 and st.momentum_buffer == nil then st.momentum_buffer = core.zeros_like(p) end
        if group.centered and st.grad_avg == nil then st.grad_avg = core.zeros_like(p) end
        K.rmsprop("RMSprop", pos, p, grad, group, st.square_avg, st.grad_avg, st.momentum_buffer, st.step)
      end
    end
  end
  return loss
end

--- class cnn.optim.Adagrad(params, {lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
---   maximize=false})
--- Adagrad (Duchi et al. 2011), as torch.optim.Adagrad: gradients divided by their root sum of squares.
local Adagrad = Optimizer:extend("Adagrad")
optim.Adagrad = Adagrad
Adagrad.options = {
  {"lr", 1e-2}, {"lr_decay", 0}, {"weight_decay", 0}, {"initial_accumulator_value", 0}, {"eps", 1e-10},
  {"maximize", false},
}
Adagrad.state_keys = {step = true, sum = true}

--- cnn.optim.Adagrad.check(group, where) -> message|nil
--- Checks a parameter group's option values; returns an error message (prefixed by where) or nil.
function Adagrad.check(g, where)
  return nonneg(g, "lr", "learning rate", where) or nonneg(g, "lr_decay", "lr_decay", where) or
    nonneg(g, "weight_decay", "weight_decay", where) or
    nonneg(g, "initial_accumulator_value", "initial_accumulator_value", where) or
    nonneg(g, "eps", "epsilon", where)
end

--- cnn.optim.Adagrad:step(closure) -> loss
--- One Adagrad update of every parameter that has a .grad.
--- Each gradient is divided by the root of the sum of its squares so far (which starts at
--- initial_accumulator_value); the lr is lr / (1 + (step - 1) * lr_decay). closure, when given, is
--- called first and its loss returned.
function Adagrad:step(closure)
  local loss = closure ~= nil and run_closure(self.name, closure) or nil
  local state, pos = self.state, 0
  for _, group in ipairs(self.param_groups) do
    for _, p in ipairs(group.params) do
      pos = pos + 1
      local grad = p.grad
      if grad then
        local st = state[p]
        if not st or st.step == nil then
          st = {step = core.zeros({}), sum = core.full(p:shape(), group.initial_accumulator_value, {dtype = "float32"})}
          state[p] = st
        end
        K.adagrad("Adagrad", pos, p, grad, group, st.sum, st.step)
      end
    end
  end
  return loss
end

------------------------------------------------------------------------------------------------
-- Learning-rate schedules. Construction takes the first step (last_epoch becomes 0), as in
-- PyTorch; each sched:step() then sets every group's lr. Call it after opt:step().
------------------------------------------------------------------------------------------------

--- class cnn.optim.LRScheduler
--- The base of the learning-rate schedules, which set each group's lr once an epoch.
--- Construction takes the first step (last_epoch becomes 0), as in PyTorch; each sched:step() then
--- sets every group's lr. Call it after opt:step().
local LRScheduler = {name = "LRScheduler", __name = "cnn.optim.LRScheduler", extend = extend}
LRScheduler.__index = LRScheduler
optim.LRScheduler = LRScheduler

-- Fields a state_dict leaves out (the optimiser it drives).
local SCHED_SKIP = {optimizer = true}

function LRScheduler.__tostring(self)
  local parts = {}
  for _, k in ipairs(self.shown or {}) do parts[#parts + 1] = k .. "=" .. show(self[k]) end
  parts[#parts + 1] = "last_epoch=" .. show(self.last_epoch)
  return self.name .. "(" .. table.concat(parts, ", ") .. ")"
end

-- Checks the options table against the class's list; returns it (or {}) or raises at level 3.
local function sched_options(cls, opt, opts)
  if not is_instance(opt, Optimizer) then
    error(string.format("%s: expected an optimiser (optim.SGD, optim.Adam, ...) for argument 1, got %s",
      cls.name, type(opt)), 3)
  end
  return (util.check_options(cls.name, opts, cls.known or {}, 3)) -- not a tail call, which would shift the levels
end

local function current_lrs(opt)
  local lrs = {}
  for i, g in ipairs(opt.param_groups) do lrs[i] = g.lr end
  return lrs
end

local function positive_int(cls, opts, key)
  local v = opts[key]
  if math.type(v) ~= "integer" or v < 1 then
    error(string.format("%s: %s must be an integer >= 1, got %s", cls.name, key, util.show(v)), 3)
  end
  return v
end

local function number_opt(cls, opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if not is_number(v) then error(string.format("%s: %s must be a number, got %s", cls.name, key, util.show(v)), 3) end
  return v
end

-- Shared construction of the epoch-driven schedules: base lrs from each group's initial_lr.
--- cnn.optim.LRScheduler.init(sched, opt) -> sched
--- The construction schedulers share: each group's initial_lr, then the first step (last_epoch 0).
function LRScheduler.init(self, opt)
  self.optimizer = opt
  self.base_lrs = {}
  for i, g in ipairs(opt.param_groups) do
    if g.initial_lr == nil then g.initial_lr = g.lr end
    self.base_lrs[i] = g.initial_lr
  end
  self.last_epoch = -1
  self._step_count = 0
  self:step()
  return self
end

--- cnn.optim.LRScheduler:step()
--- Advances the schedule one epoch and sets each group's lr; call it after opt:step(), once an epoch.
function LRScheduler:step(...)
  if select("#", ...) > 0 then
    error(self.name .. ": step takes no argument (only ReduceLROnPlateau:step takes a metric)", 2)
  end
  self._step_count = self._step_count + 1
  self.last_epoch = self.last_epoch + 1
  local values = self:get_lr()
  local groups = self.optimizer.param_groups
  for i = 1, math.min(#values, #groups) do groups[i].lr = values[i] end
  self._last_lr = current_lrs(self.optimizer)
end

--- cnn.optim.LRScheduler:get_last_lr() -> {lrs}
--- The lr of every group after the last step, as a list.
function LRScheduler:get_last_lr() return copy(self._last_lr) end

--- cnn.optim.LRScheduler:state_dict() -> table
--- The schedule's state: every field but the optimiser, copied.
function LRScheduler:state_dict()
  local sd = {}
  for k, v in pairs(self) do if not SCHED_SKIP[k] then sd[k] = copy(v) end end
  return sd
end

-- The values a schedule's state must hold (what its constructor checks, and the counters), as
-- {field, test, what}: load_state_dict took step_size = 0 or an empty base_lrs, which failed later
-- inside step() ("attempt to perform 'n%%0'") or kept a stale lr.
local function int_at_least(lo) return function(v) return math.type(v) == "integer" and v >= lo end end
local function numbers(n) -- a list of n numbers (one per parameter group)
  return function(v)
    if #v ~= n then return false end
    for i = 1, n do if not is_number(v[i]) then return false end end
    return true
  end
end
local function state_rules(self)
  local n = #self.optimizer.param_groups
  local rules = {{"last_epoch", int_at_least(-1), "an integer >= -1"}}
  local per_group = string.format("one number per parameter group (%d)", n)
  if self.base_lrs then rules[#rules + 1] = {"base_lrs", numbers(n), per_group} end
  if self._step_count then rules[#rules + 1] = {"_step_count", int_at_least(0), "an integer >= 0"} end
  for k, rule in pairs {step_size = {int_at_least(1), "an integer >= 1"}, T_max = {int_at_least(1), "an integer >= 1"},
    patience = {int_at_least(0), "an integer >= 0"}, cooldown = {int_at_least(0), "an integer >= 0"},
    num_bad_epochs = {int_at_least(0), "an integer >= 0"}, cooldown_counter = {int_at_least(0), "an integer >= 0"},
    factor = {function(v) return v >= 0 and v < 1 end, "in [0, 1)"},
    threshold = {function(v) return v >= 0 end, ">= 0"}, eps = {function(v) return v >= 0 end, ">= 0"},
    mode = {function(v) return v == "min" or v == "max" end, '"min" or "max"'},
    threshold_mode = {function(v) return v == "rel" or v == "abs" end, '"rel" or "abs"'},
    min_lrs = {numbers(n), per_group}} do
    if rawget(self, k) ~= nil then rules[#rules + 1] = {k, rule[1], rule[2]} end
  end
  return rules
end

--- cnn.optim.LRScheduler:load_state_dict(state_dict)
--- Restores what sched:state_dict() returned.
--- Keys, types and values are checked first (what the constructor checks: step_size >= 1, one lr a
--- parameter group, ...); nothing is changed when one is wrong.
function LRScheduler:load_state_dict(sd)
  if type(sd) ~= "table" then error(self.name .. ": load_state_dict expects a table, got " .. type(sd), 2) end
  for k, v in pairs(sd) do
    if SCHED_SKIP[k] or rawget(self, k) == nil then
      error(string.format("%s: load_state_dict: unknown key '%s'", self.name, tostring(k)), 2)
    end
    if type(v) ~= type(rawget(self, k)) then
      error(string.format("%s: load_state_dict: '%s' must be a %s, got %s", self.name, util.show(k),
        type(rawget(self, k)), type(v)), 2)
    end
  end
  for _, r in ipairs(state_rules(self)) do
    local v = sd[r[1]]
    if v ~= nil and not r[2](v) then
      local got = type(v) == "table" and string.format("%d value(s)", #v) or util.show(v)
      error(string.format("%s: load_state_dict: '%s' must be %s, got %s", self.name, r[1], r[3], got), 2)
    end
  end
  for k, v in pairs(sd) do self[k] = copy(v) end
end

--- class cnn.optim.StepLR(opt, {step_size, gamma=0.1})
--- Multiplies each group's lr by gamma every step_size epochs.
local StepLR = LRScheduler:extend("StepLR")
optim.StepLR = StepLR
StepLR.known = {step_size = true, gamma = true}
StepLR.shown = {"step_size", "gamma"}

--- cnn.optim.StepLR:new(opt, opts) -> sched
--- Makes an instance (calling the class does this).
function StepLR.new(cls, opt, opts)
  opts = sched_options(cls, opt, opts)
  local self = setmetatable({}, cls)
  self.step_size = positive_int(cls, opts, "step_size")
  self.gamma = number_opt(cls, opts, "gamma", 0.1)
  return self:init(opt)
end

--- cnn.optim.StepLR:get_lr() -> {lrs}
--- Each group's lr for the current epoch.
function StepLR:get_lr()
  local lrs = current_lrs(self.optimizer)
  if self.last_epoch == 0 or self.last_epoch % self.step_size ~= 0 then return lrs end
  for i, lr in ipairs(lrs) do lrs[i] = lr * self.gamma end
  return lrs
end

--- class cnn.optim.CosineAnnealingLR(opt, {T_max, eta_min=0})
--- The lr follows half a cosine from the initial lr down to eta_min over T_max epochs.
--- After T_max epochs it rises again, as PyTorch's recursive form does.
local CosineAnnealingLR = LRScheduler:extend("CosineAnnealingLR")
optim.CosineAnnealingLR = CosineAnnealingLR
CosineAnnealingLR.known = {T_max = true, eta_min = true}
CosineAnnealingLR.shown = {"T_max", "eta_min"}

--- cnn.optim.CosineAnnealingLR:new(opt, opts) -> sched
--- Makes an instance (calling the class does this).
function CosineAnnealingLR.new(cls, opt, opts)
  opts = sched_options(cls, opt, opts)
  local self = setmetatable({}, cls)
  self.T_max = positive_int(cls, opts, "T_max")
  self.eta_min = number_opt(cls, opts, "eta_min", 0)
  return self:init(opt)
end

-- PyTorch 1.13's recursive form, so values match it step by step (and respect lr changes made
-- by others between steps).
--- cnn.optim.CosineAnnealingLR:get_lr() -> {lrs}
--- Each group's lr for the current epoch.
function CosineAnnealingLR:get_lr()
  local e, T, eta_min, pi = self.last_epoch, self.T_max, self.eta_min, math.pi
  local lrs = current_lrs(self.optimizer)
  if e == 0 then return lrs end
  if self._step_count == 1 and e > 0 then
    for i, base in ipairs(self.base_lrs) do
      lrs[i] = eta_min + (base - eta_min) * (1 + math.cos(e * pi / T)) / 2
    end
  elseif (e - 1 - T) % (2 * T) == 0 then
    for i, base in ipairs(self.base_lrs) do
      lrs[i] = lrs[i] + (base - eta_min) * (1 - math.cos(pi / T)) / 2
    end
  else
    for i, lr in ipairs(lrs) do
      lrs[i] = (1 + math.cos(pi * e / T)) / (1 + math.cos(pi * (e - 1) / T)) * (lr - eta_min) + eta_min
    end
  end
  return lrs
end

--- class cnn.optim.ReduceLROnPlateau(opt, {mode="min", factor=0.1, patience=10, threshold=1e-4,
---   threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8})
--- Multiplies the lr by factor when a metric has not improved for more than patience epochs.
--- Give the metric to sched:step(metric) each epoch. mode "min" (a loss) or "max" (an accuracy);
--- threshold and threshold_mode ("rel" or "abs") set what counts as an improvement; cooldown epochs
--- pass after a reduction before counting again; min_lr (a number or one per group) bounds the lr;
--- changes smaller than eps are skipped.
local ReduceLROnPlateau = LRScheduler:extend("ReduceLROnPlateau")
optim.ReduceLROnPlateau = ReduceLROnPlateau
ReduceLROnPlateau.known = {mode = true, factor = true, patience = true, threshold = true, threshold_mode = true,
  cooldown = true, min_lr = true, eps = true}
ReduceLROnPlateau.shown = {"mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lrs", "eps"}

--- cnn.optim.ReduceLROnPlateau:new(opt, opts) -> sched
--- Makes an instance (calling the class does this).
function ReduceLROnPlateau.new(cls, opt, opts)
  opts = sched_options(cls, opt, opts)
  local function fail(fmt, ...) error(cls.name .. ": " .. string.format(fmt, ...), 3) end
  local self = setmetatable({optimizer = opt}, cls)
  self.mode = opts.mode or "min"
  if self.mode ~= "min" and self.mode ~= "max" then
    fail("mode must be \"min\" or \"max\", got %s", util.show(self.mode))
  end
  self.threshold_mode = opts.threshold_mode or "rel"
  if self.threshold_mode ~= "rel" and self.threshold_mode ~= "abs" then
    fail("threshold_mode must be \"rel\" or \"abs\", got %s", util.show(self.threshold_mode))
  end
  self.factor = number_opt(cls, opts, "factor", 0.1)
  if not (self.factor >= 0 and self.factor < 1) then fail("factor must be in [0, 1), got %s", show(self.factor)) end
  for _, k in ipairs({"patience", "cooldown"}) do
    local v = opts[k] == nil and (k == "patience" and 10 or 0) or opts[k]
    if math.type(v) ~= "integer" or v < 0 then fail("%s must be an integer >= 0, got %s", k, util.show(v)) end
    self[k] = v
  end
  self.threshold = number_opt(cls, opts, "threshold", 1e-4)
  self.eps = number_opt(cls, opts, "eps", 1e-8)
  if self.threshold < 0 then fail("threshold must be >= 0, got %s", show(self.threshold)) end
  if self.eps < 0 then fail("eps must be >= 0, got %s", show(self.eps)) end
  local min_lr, n = opts.min_lr or 0, #opt.param_groups
  self.min_lrs = {}
  if type(min_lr) == "table" then
    if #min_lr ~= n then fail("expected %d min_lr values (one per parameter group), got %d", n, #min_lr) end
    for i = 1, n do
      if not is_number(min_lr[i]) then fail("min_lr[%d] must be a number", i) end
      self.min_lrs[i] = min_lr[i]
    end
  elseif is_number(min_lr) then
    for i = 1, n do self.min_lrs[i] = min_lr end
  else
    fail("min_lr must be a number or a list of numbers, got %s", type(min_lr))
  end
  self.mode_worse = self.mode == "min" and math.huge or -math.huge
  self.best = self.mode_worse
  self.num_bad_epochs = 0
  self.cooldown_counter = 0
  self.last_epoch = 0
  self._last_lr = current_lrs(opt)
  return self
end

--- cnn.optim.ReduceLROnPlateau:is_better(a, best) -> boolean
--- Whether metric a improves on best, by the mode, threshold and threshold_mode.
function ReduceLROnPlateau:is_better(a, best)
  local t = self.threshold
  if self.mode == "min" then
    if self.threshold_mode == "rel" then return a < best * (1 - t) end
    return a < best - t
  end
  if self.threshold_mode == "rel" then return a > best * (t + 1) end
  return a > best + t
end

--- cnn.optim.ReduceLROnPlateau:step(metric)
--- Records an epoch's metric, a number or a one-element tensor (a loss, an accuracy).
function ReduceLROnPlateau:step(metric)
  if is_tensor(metric) then
    if metric:numel() ~= 1 then
      error(self.name .. ": step expects a number or a one-element tensor, got a tensor of shape " ..
        shape_str(metric), 2)
    end
    metric = metric:reshape({}):item()
  end
  if type(metric) ~= "number" then
    error(self.name .. ": step needs the metric (a number or a one-element tensor), got " .. type(metric), 2)
  end
  self.last_epoch = self.last_epoch + 1
  if self:is_better(metric, self.best) then
    self.best = metric
    self.num_bad_epochs = 0
  else
    self.num_bad_epochs = self.num_bad_epochs + 1
  end
  if self.cooldown_counter > 0 then
    self.cooldown_counter = self.cooldown_counter - 1
    self.num_bad_epochs = 0 -- bad epochs in cooldown do not count
  end
  if self.num_bad_epochs > self.patience then
    for i, g in ipairs(self.optimizer.param_groups) do
      local old = g.lr
      local new = math.max(old * self.factor, self.min_lrs[i] or 0)
      if old - new > self.eps then g.lr = new end
    end
    self.cooldown_counter = self.cooldown
    self.num_bad_epochs = 0
  end
  self._last_lr = current_lrs(self.optimizer)
end

return optim
