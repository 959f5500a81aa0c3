-- cnn.nn's module system: the Module base class (parameters, buffers and child modules registered
-- in assignment order, traversal with PyTorch's dotted names, train/eval, state_dict) and the
-- containers Sequential and ModuleList. Invariant: an instance's own table holds one raw field,
-- `__nn` (its registries); every other field lives in them, so each assignment, a reassignment
-- included, goes through __newindex and is classified again.
local U = require "cnn.nn.util"
local util = require "cnn.util"
local show = util.show -- values in messages ("nan", never "-nan")
local core = require "cnn.core"

local fail, is_tensor = U.fail, U.is_tensor

-- ---- ordered maps: {keys = {k1, k2, ...}, map = {k = v}} -------------------------------------

local function od_new() return {keys = {}, map = {}} end

local function od_set(od, k, v) -- a new key goes last, an existing one keeps its place
  if od.map[k] == nil then od.keys[#od.keys + 1] = k end
  od.map[k] = v
end

local function od_remove(od, k)
  if od.map[k] == nil then return end
  od.map[k] = nil
  for i, key in ipairs(od.keys) do
    if key == k then
      table.remove(od.keys, i)
      return
    end
  end
end

-- ---- classes and instances ---------------------------------------------------------------------

--- class cnn.nn.Module
--- The base class of every layer and model: parameters, buffers and sub-modules, with PyTorch's names.
--- Derive your own with nn.Module:extend("Name"). A module is callable (`m(x)` runs m:forward(x));
--- `tostring(m)` prints the tree of modules with their configuration and parameter shapes.
--- Parameters, buffers and children are also fields: `m.weight`, `m.features`.
--- Hooks, as PyTorch's (register_forward_pre_hook, register_forward_hook,
--- register_full_backward_hook), run in registration order from a snapshot taken when the call
--- starts (a hook removed during a call still runs in it). A hooked module is always called as
--- written: Sequential's ReLU-after-pool swap and the ResNets' fused BatchNorm + ReLU step aside.

--- field cnn.nn.Module.training
--- True in training mode (the default), false after m:eval(); layers such as Dropout read it.
local Module = {__name = "Module"}

local function state(m) return rawget(m, "__nn") end

--- cnn.nn.is_module(x) -> boolean
--- Whether x is a module instance (not a class).
local function is_module(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__cnn_module") == true
end

local function is_class(v)
  return type(v) == "table" and rawget(v, "__mt") ~= nil
end

-- Module methods called without the colon (m.train() for m:train()) name the slip, not a line of
-- this file.
local function check_self(m, fn)
  if not is_module(m) then
    error(string.format("%s: expected a module as self (call it as m:%s(...)), got %s", fn, fn,
      is_class(m) and "a class" or type(m)), 3)
  end
end

-- What a non-module value is, for error messages.
local function describe(v)
  if is_class(v) then return "the class " .. v.__name .. " (call it to make a module)" end
  if is_tensor(v) then return "a tensor" end
  return "a " .. type(v)
end

local function check_name(who, what, k)
  if type(k) ~= "string" then fail(who, "%s name must be a string, got %s", what, type(k)) end
  if k == "" then fail(who, "%s name can't be empty", what) end
  if k:find(".", 1, true) then fail(who, "%s name '%s' can't contain '.'", what, k) end
end

-- Drops name k from every registry but `keep` (where it is about to be set: a name registered
-- there again keeps its place, as in PyTorch's ordered dicts).
local function unregister(s, k, keep)
  s.fields[k] = nil
  if keep ~= "params" then od_remove(s.params, k) end
  if keep ~= "buffers" then
    od_remove(s.buffers, k)
    s.nonpersistent[k] = nil
  end
  if keep ~= "modules" then od_remove(s.modules, k) end
end

-- self.k = v: a module becomes a child, a leaf tensor that requires grad a parameter; a
-- registered name only takes a value of its kind (or nil, which removes it); anything else is
-- a plain field.
local function assign(self, cls, k, v)
  if type(k) == "number" and cls.__setitem then return cls.__setitem(self, k, v) end
  local s, who = state(self), cls.__name
  if is_module(v) then
    check_name(who, "module", k)
    unregister(s, k, "modules")
    od_set(s.modules, k, v)
  elseif is_tensor(v) and v.requires_grad and v.is_leaf then
    check_name(who, "parameter", k)
    unregister(s, k, "params")
    od_set(s.params, k, v)
  elseif s.params.map[k] ~= nil then
    if v == nil then
      od_remove(s.params, k)
    elseif is_tensor(v) and v.requires_grad then
      fail(who, "cannot assign a non-leaf tensor to parameter '%s' (parameters are leaf tensors: " ..
        "use t:detach():requires_grad_())", k)
    elseif is_tensor(v) then
      fail(who, "cannot assign a tensor that does not require grad to parameter '%s' (call " ..
        "requires_grad_() on it, or use register_buffer for state that is not trained)", k)
    else
      fail(who, "cannot assign %s to parameter '%s' (a tensor that requires grad, or nil, expected)",
        describe(v), k)
    end
  elseif s.buffers.map[k] ~= nil then
    if v == nil then
      od_remove(s.buffers, k)
      s.nonpersistent[k] = nil
    elseif is_tensor(v) then
      od_set(s.buffers, k, v)
    else
      fail(who, "cannot assign %s to buffer '%s' (a tensor or nil expected)", describe(v), k)
    end
  elseif s.modules.map[k] ~= nil then
    if v == nil then
      od_remove(s.modules, k)
    else
      fail(who, "cannot assign %s to child module '%s' (a module or nil expected)", describe(v), k)
    end
  else
    s.fields[k] = v
  end
end

local repr, call_with_hooks -- defined below

-- ---- errors raised inside forward --------------------------------------------------------------
-- A module call that fails re-raises the error naming the module that raised it, by its path in
-- the model and its class, at the line that called the outermost module:
--   train.lua:12: features.0 (Conv2d): conv2d: input has 3 channels but weight expects 1
-- Each module call on the way out adds itself to `pending` (the error just raised and the modules
-- it went through, innermost last); a position inside the library is replaced by the caller's, a
-- position in user code (a custom forward) is kept. Errors that are not strings (signals such as
-- hpsearch's pruning) pass through untouched.

local library_dir = (debug.getinfo(1, "S").source:match("^@(.*/)nn/[^/]*$"))
local pending = {msg = nil, chain = nil, rest = nil, pos = nil}

-- The name of child among parent's registered children, or nil.
local function child_name(parent, child)
  local mods = state(parent).modules
  for _, k in ipairs(mods.keys) do
    if rawequal(mods.map[k], child) then return k end
  end
end

local function module_label(chain)
  local names = {}
  for i = 2, #chain do
    local k = child_name(chain[i - 1], chain[i])
    if k then names[#names + 1] = k else names = {} end -- not a registered child: start again there
  end
  local cls = state(chain[#chain]).class.__name
  if #names == 0 then return cls end
  if #names > 12 then -- a module calling itself until the stack ran out: the ends of the path
    local n = #names
    names = {names[1], names[2], names[3], names[4], "(" .. (n - 8) .. " more)", names[n - 3], names[n - 2],
      names[n - 1], names[n]}
  end
  return table.concat(names, ".") .. " (" .. cls .. ")"
end

local function rethrow(self, err)
  if type(err) ~= "string" then error(err, 0) end
  -- Ctrl-C (the REPL's and cnnlua's hook) is no layer's error: it was "0 (Linear): interrupted!"
  if util.is_interrupt(err) then error("interrupted!", 0) end
  if err == pending.msg then
    table.insert(pending.chain, 1, self)
  else
    local pos, rest = err:match("^([^\n]-:%d+: )(.*)$")
    if pos and library_dir and pos:sub(1, #library_dir) == library_dir then pos = nil end
    rest = rest or err
    -- a layer's own check names its class ("BatchNorm2d: expected 4-d ..."): the label says it
    local own = state(self).class.__name .. ": "
    if rest:sub(1, #own) == own then rest = rest:sub(#own + 1) end
    pending.chain, pending.rest, pending.pos = {self}, rest, pos
  end
  local where = pending.pos
  if not where then
    -- 1 rethrow, 2 finish (the __call tail-called it), 3 the caller; past a C frame (pcall) or a
    -- caller's own tail call, the first line of Lua up the stack
    local level, info = 3, debug.getinfo(3, "Sl")
    while info and info.currentline <= 0 and level < 6 do
      level = level + 1
      info = debug.getinfo(level, "Sl")
    end
    where = info and info.currentline > 0 and (info.short_src .. ":" .. info.currentline .. ": ") or ""
  end
  pending.msg = where .. module_label(pending.chain) .. ": " .. pending.rest
  error(pending.msg, 0)
end

local function finish(self, ok, ...)
  if not ok then rethrow(self, (...)) end
  return ...
end

-- How many arguments after self a forward takes, or false for one that takes any number (a vararg
-- or C function): calling a module with more is an error, as PyTorch's TypeError, not silently
-- dropped (nn.Linear(2, 2)(x, extra)). Cached per function.
local forward_arity = setmetatable({}, {__mode = "k"})
local function max_args(f)
  local n = forward_arity[f]
  if n == nil then
    local info = type(f) == "function" and debug.getinfo(f, "u")
    n = info and not info.isvararg and info.nparams > 0 and info.nparams - 1 or false
    forward_arity[f] = n
  end
  return n
end

local function instance_mt(cls)
  local mt = {__name = cls.__name, __cnn_module = true}
  mt.__index = function(self, k)
    -- state(self), inline (every field and method read comes here); a plain read, as __nn is the
    -- instance's one raw field, so it runs no metamethod and calls no function
    local s = self.__nn
    local v = s.fields[k]
    if v ~= nil then return v end
    v = s.params.map[k]
    if v ~= nil then return v end
    v = s.buffers.map[k]
    if v ~= nil then return v end
    v = s.modules.map[k]
    if v ~= nil then return v end
    if type(k) == "number" then
      local get = cls.__getitem
      if get then return get(self, k) end
    end
    return cls[k]
  end
  mt.__newindex = function(self, k, v) return assign(self, cls, k, v) end
  mt.__call = function(self, ...)
    -- (with hooks, a forward pre-hook may change the arguments: forward gets what it returns)
    if self.__nn.hooks == nil then
      local forward, given = self.forward, select("#", ...)
      local most = given > 1 and max_args(forward)
      if most and given > most then
        error(string.format("%s: forward takes %d argument%s, got %d", cls.__name, most, most == 1 and "" or "s",
          given), 2)
      end
      return finish(self, pcall(forward, self, ...))
    end
    return finish(self, pcall(call_with_hooks, self, ...))
  end
  mt.__tostring = function(self) return repr(self, true) end
  mt.__len = function(self)
    local len = cls.__length
    if len then return len(self) end
    fail(cls.__name, "has no length (containers such as Sequential have one)")
  end
  return mt
end

local function new(cls, ...)
  local self = setmetatable({__nn = {params = od_new(), buffers = od_new(), modules = od_new(),
    fields = {}, nonpersistent = {}, class = cls}}, cls.__mt)
  self.training = true
  cls.init(self, ...)
  return self
end

local function class_mt(parent)
  return {__index = parent, __call = new, __tostring = function(c) return "class " .. c.__name end}
end

Module.__mt = instance_mt(Module)
setmetatable(Module, class_mt(nil))

--- cnn.nn.Module:extend("Name") -> class
--- A new class deriving from this one; calling the class makes an instance and runs its init(...).
--- `local Block = nn.Module:extend("Block")`, then define `function Block:init(...)` and
--- `function Block:forward(x)`. Sub-modules and parameters assigned as fields in init are registered
--- in assignment order: a module becomes a child, a leaf tensor that requires grad a parameter.
function Module.extend(parent, name)
  if not is_class(parent) then fail("extend", "call it on a class (nn.Module:extend(\"Name\"))") end
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    fail("extend", "expected a class name (letters, digits, _), got %s", show(name))
  end
  local cls = {__name = name, super = parent}
  cls.__mt = instance_mt(cls)
  return setmetatable(cls, class_mt(parent))
end

--- cnn.nn.Module:init(...)
--- The constructor body: calling the class, `Block(...)`, makes an instance and calls its init(...).
function Module:init() end

--- cnn.nn.Module:forward(x, ...) -> output
--- The module's computation; `m(x)` calls it. Every layer defines its own.
function Module:forward()
  fail(state(self).class.__name, "forward is not implemented (define function %s:forward(x))",
    state(self).class.__name)
end

--- cnn.nn.Module:class_name() -> string
--- The name of the module's class ("Conv2d").
function Module:class_name()
  check_self(self, "class_name")
  return state(self).class.__name
end

--- cnn.nn.Module:is_a(class) -> boolean
--- Whether the module is an instance of class or of a class derived from it.
function Module:is_a(cls)
  check_self(self, "is_a")
  local c = state(self).class
  while c do
    if c == cls then return true end
    c = c.super
  end
  return false
end

--- cnn.nn.dir(m) -> {names}
--- The names reachable on module m, sorted: fields, parameters, buffers, children and methods.
--- As Python's dir(); the REPL's completion uses it.
local function dir(m)
  if not is_module(m) then error("dir: expected a module, got " .. (is_class(m) and "a class" or type(m)), 2) end
  local s, names, seen = state(m), {}, {}
  local function add(k)
    if type(k) == "string" and not seen[k] and not k:match("^__") then
      seen[k] = true
      names[#names + 1] = k
    end
  end
  for k in pairs(s.fields) do add(k) end
  for _, reg in ipairs({s.params, s.buffers, s.modules}) do
    for _, k in ipairs(reg.keys) do add(k) end
  end
  local c = s.class
  while c do
    for k, v in pairs(c) do
      if type(v) == "function" then add(k) end
    end
    c = c.super
  end
  table.sort(names)
  return names
end

-- ---- registration ------------------------------------------------------------------------------

local function check_free(fn, _self, s, name, kind)
  if s.fields[name] ~= nil or (kind ~= "params" and s.params.map[name] ~= nil) or
     (kind ~= "buffers" and s.buffers.map[name] ~= nil) or (kind ~= "modules" and s.modules.map[name] ~= nil) or
     (s[kind].map[name] == nil and s.class[name] ~= nil) then
    fail(fn, "attribute '%s' already exists in %s", name, s.class.__name)
  end
end

--- cnn.nn.Module:register_parameter(name, t)
--- Registers leaf tensor t as parameter name (made to require grad, as nn.Parameter); nil removes it.
--- Assigning `self.name = t` in init does the same for a tensor that requires grad.
function Module:register_parameter(name, t)
  check_self(self, "register_parameter")
  local s = state(self)
  check_name("register_parameter", "parameter", name)
  if t == nil then
    od_remove(s.params, name)
    return
  end
  if not is_tensor(t) then
    fail("register_parameter", "expected a tensor or nil for '%s', got %s", name, describe(t))
  end
  if not t.is_leaf then
    fail("register_parameter", "'%s' is not a leaf tensor (use t:detach())", name)
  end
  if t:dtype() ~= "float32" then
    fail("register_parameter", "'%s' is %s; parameters are float32 (a buffer may be any dtype)", name, t:dtype())
  end
  check_free("register_parameter", self, s, name, "params")
  if not t.requires_grad then t:requires_grad_(true) end
  od_set(s.params, name, t)
end

--- cnn.nn.Module:register_buffer(name, t, persistent=true)
--- Registers tensor t as buffer name (state that is not trained, such as running statistics).
--- Persistent buffers go into state_dict; nil removes the buffer.
function Module:register_buffer(name, t, persistent)
  check_self(self, "register_buffer")
  local s = state(self)
  check_name("register_buffer", "buffer", name)
  if persistent ~= nil and type(persistent) ~= "boolean" then
    fail("register_buffer", "persistent must be a boolean, got %s", type(persistent))
  end
  if t == nil then
    od_remove(s.buffers, name)
    s.nonpersistent[name] = nil
    return
  end
  if not is_tensor(t) then fail("register_buffer", "expected a tensor or nil for '%s', got %s", name, describe(t)) end
  check_free("register_buffer", self, s, name, "buffers")
  od_set(s.buffers, name, t)
  s.nonpersistent[name] = persistent == false or nil
end

--- cnn.nn.Module:add_module(name, child)
--- cnn.nn.Module:register_module(name, child)
--- Registers module child as sub-module name (as assigning `self.name = child` does); nil removes it.
function Module:add_module(name, m)
  check_self(self, "add_module")
  local s = state(self)
  check_name("add_module", "module", name)
  if m == nil then
    od_remove(s.modules, name)
    return
  end
  if not is_module(m) then fail("add_module", "expected a module for '%s', got %s", name, describe(m)) end
  check_free("add_module", self, s, name, "modules")
  od_set(s.modules, name, m)
end
Module.register_module = Module.add_module

-- ---- traversal ---------------------------------------------------------------------------------

local function join(prefix, name)
  if prefix == "" then return name end
  return prefix .. "." .. name
end

-- Pre-order walk, each module once (a module reachable twice keeps its first name), as PyTorch.
local function walk(m, prefix, out, seen)
  if seen[m] then return end
  seen[m] = true
  out[#out + 1] = {prefix, m}
  local mods = state(m).modules
  for _, k in ipairs(mods.keys) do walk(mods.map[k], join(prefix, k), out, seen) end
end

local function named_modules(self, prefix)
  local out = {}
  walk(self, prefix or "", out, {})
  return out
end

-- {name, tensor} pairs of every module's registry `which` (params or buffers), each tensor once.
local function named_members(self, which, prefix, recurse)
  if prefix ~= nil and type(prefix) ~= "string" then fail("named_" .. which, "prefix must be a string") end
  local mods = recurse == false and {{prefix or "", self}} or named_modules(self, prefix)
  local out, seen = {}, {}
  for _, pm in ipairs(mods) do
    local reg = state(pm[2])[which]
    for _, k in ipairs(reg.keys) do
      local t = reg.map[k]
      if not seen[t] then
        seen[t] = true
        out[#out + 1] = {join(pm[1], k), t}
      end
    end
  end
  return out
end

local function values(pairs_list)
  local out = {}
  for i, p in ipairs(pairs_list) do out[i] = p[2] end
  return out
end

--- cnn.nn.Module:named_parameters(prefix, recurse=true) -> {{name, tensor}, ...}
--- The parameters with PyTorch's dotted names (features.0.weight), in order.
--- The module's own come first, then each child's; a parameter reachable twice is listed once;
--- recurse=false lists only the module's own.
function Module:named_parameters(prefix, recurse)
  check_self(self, "named_parameters")
  return named_members(self, "params", prefix, recurse)
end

--- cnn.nn.Module:parameters(recurse=true) -> {tensors}
--- The parameters as a list, each tensor once; recurse=false gives only the module's own.
function Module:parameters(recurse)
  check_self(self, "parameters")
  return values(named_members(self, "params", nil, recurse))
end

--- cnn.nn.Module:named_buffers(prefix, recurse=true) -> {{name, tensor}, ...}
--- The buffers with their dotted names, in order (as named_parameters).
function Module:named_buffers(prefix, recurse)
  check_self(self, "named_buffers")
  return named_members(self, "buffers", prefix, recurse)
end

--- cnn.nn.Module:buffers(recurse=true) -> {tensors}
--- The buffers (running statistics and such) as a list, each tensor once.
function Module:buffers(recurse)
  check_self(self, "buffers")
  return values(named_members(self, "buffers", nil, recurse))
end

--- cnn.nn.Module:named_children() -> {{name, module}, ...}
--- The direct sub-modules with their names, in registration order, each module once.
function Module:named_children()
  check_self(self, "named_children")
  local mods, out, seen = state(self).modules, {}, {}
  for _, k in ipairs(mods.keys) do
    local m = mods.map[k]
    if not seen[m] then
      seen[m] = true
      out[#out + 1] = {k, m}
    end
  end
  return out
end

--- cnn.nn.Module:children() -> {modules}
--- The direct sub-modules, each once.
function Module:children()
  check_self(self, "children")
  return values(Module.named_children(self))
end

--- cnn.nn.Module:named_modules(prefix) -> {{name, module}, ...}
--- The module itself (named "" or prefix) and every descendant with its dotted name, pre-order.
function Module:named_modules(prefix)
  check_self(self, "named_modules")
  return named_modules(self, prefix)
end

--- cnn.nn.Module:modules() -> {modules}
--- The module itself and every descendant, pre-order, each once.
function Module:modules()
  check_self(self, "modules")
  return values(named_modules(self))
end

--- cnn.nn.Module:num_parameters() -> integer
--- The number of scalars in the parameters (a shared tensor counted once).
function Module:num_parameters()
  check_self(self, "num_parameters")
  local n = 0
  for _, p in ipairs(Module.parameters(self)) do n = n + p:numel() end
  return n
end

-- The modules whose recursive apply/train is under way: a module that contains itself (b.me = b,
-- a natural back-reference) is visited once instead of recursing until the stack overflows.
local visiting = setmetatable({}, {__mode = "k"})

local function once(self, fn, ...)
  if visiting[self] then return end
  visiting[self] = true
  local ok, err = pcall(fn, ...)
  visiting[self] = nil
  if not ok then error(err, 0) end
end

--- cnn.nn.Module:apply(fn) -> self
--- Calls fn(m) on every descendant, children first, then on the module itself (custom initialisation).
function Module:apply(fn)
  check_self(self, "apply")
  if type(fn) ~= "function" then fail("apply", "expected a function, got %s", type(fn)) end
  once(self, function()
    for _, c in ipairs(Module.children(self)) do c:apply(fn) end
    fn(self)
  end)
  return self
end

--- cnn.nn.Module:train(on=true) -> self
--- Sets training mode on the module and all its descendants (Dropout drops, BatchNorm uses the batch).
function Module:train(mode)
  check_self(self, "train")
  if mode == nil then mode = true end
  if type(mode) ~= "boolean" then fail("train", "expected a boolean, got %s", type(mode)) end
  once(self, function()
    self.training = mode
    state(self).fused = nil -- the inference fusions' folded weights (nn/layers.lua) are made again when needed
    for _, c in ipairs(Module.children(self)) do c:train(mode) end
  end)
  return self
end

-- The inference fusions' cache on a module (nn/layers.lua, L._fused_forward), dropped by train().
function Module:_fused() return state(self).fused end
function Module:_set_fused(f) state(self).fused = f end

--- cnn.nn.Module:eval() -> self
--- Sets evaluation mode on the module and all its descendants (m:train(false)).
function Module:eval()
  check_self(self, "eval")
  return self:train(false)
end

--- cnn.nn.Module:requires_grad_(on=true) -> self
--- Sets requires_grad on every parameter: false freezes the module (fine-tuning).
function Module:requires_grad_(on)
  check_self(self, "requires_grad_")
  if on == nil then on = true end
  if type(on) ~= "boolean" then fail("requires_grad_", "expected a boolean, got %s", type(on)) end
  for _, p in ipairs(Module.parameters(self)) do p:requires_grad_(on) end
  return self
end

--- cnn.nn.Module:zero_grad({set_to_none=true})
--- Drops every parameter's gradient (p.grad becomes nil; set_to_none=false zeroes it in place).
function Module:zero_grad(opts)
  check_self(self, "zero_grad")
  require("cnn.optim")._zero_grads("zero_grad", Module.parameters(self), opts) -- (required here: no cycle)
end

-- ---- hooks -------------------------------------------------------------------------------------
-- As PyTorch 1.13's Module.__call__: forward pre-hooks, then (with full backward hooks) the tensor
-- inputs pass through an identity node, forward, forward hooks, and the tensor outputs pass through
-- another identity node. Each kind of hook is an ordered list; a call runs a snapshot of the lists
-- taken when it starts, so a hook removed (or added) during a call changes the next call only.

local Handle = {__name = "cnn.nn.RemovableHandle"}
Handle.__index = Handle

--- handle:remove(): unregisters the hook (idempotent).
function Handle:remove()
  local s = state(self.module)
  local hooks = s.hooks
  if hooks == nil then return end
  local list = hooks[self.kind]
  for i, h in ipairs(list) do
    if h.id == self.id then
      table.remove(list, i)
      break
    end
  end
  if #hooks.forward_pre == 0 and #hooks.forward == 0 and #hooks.backward == 0 then s.hooks = nil end
end

local next_hook_id = 0

local function add_hook(self, kind, who, fn)
  if type(fn) ~= "function" and not (type(fn) == "table" and (getmetatable(fn) or {}).__call) then
    fail(who, "expected a function, got %s", type(fn))
  end
  local s = state(self)
  s.hooks = s.hooks or {forward_pre = {}, forward = {}, backward = {}}
  next_hook_id = next_hook_id + 1
  local list = s.hooks[kind]
  list[#list + 1] = {id = next_hook_id, fn = fn}
  return setmetatable({module = self, kind = kind, id = next_hook_id}, Handle)
end

--- cnn.nn.Module:register_forward_pre_hook(fn) -> handle
--- fn(module, input) runs before every forward, input being the list of forward's arguments.
--- A return value other than nil replaces them (a list, or a single value for a one-argument
--- forward). `handle:remove()` unregisters it.
function Module:register_forward_pre_hook(fn)
  check_self(self, "register_forward_pre_hook")
  return add_hook(self, "forward_pre", "register_forward_pre_hook", fn)
end

--- cnn.nn.Module:register_forward_hook(fn) -> handle
--- fn(module, input, output) runs after every forward with its arguments and its result.
--- input is the list of forward's arguments, output its result (the first, when forward returns
--- several); a return value other than nil replaces that result. `handle:remove()` unregisters it.
function Module:register_forward_hook(fn)
  check_self(self, "register_forward_hook")
  return add_hook(self, "forward", "register_forward_hook", fn)
end

--- cnn.nn.Module:register_full_backward_hook(fn) -> handle
--- fn(module, grad_input, grad_output) runs once the gradients of the module's arguments are known.
--- grad_input and grad_output are lists with one entry per argument and per result (nil where there
--- is no gradient: a non-tensor, or a tensor that does not require grad); a returned list replaces
--- grad_input. When no argument requires grad, it runs once grad_output is known, with grad_input all
--- nil. Only forwards run with grad mode on are hooked. `handle:remove()` unregisters it.
function Module:register_full_backward_hook(fn)
  check_self(self, "register_full_backward_hook")
  return add_hook(self, "backward", "register_full_backward_hook", fn)
end

--- True when the module has hooks of any kind (fused fast paths that skip a module's call check
--- it, so hooks always see the calls of the model as written).
function Module:_has_hooks() return state(self).hooks ~= nil end

local function snapshot(list)
  local out = {}
  for i, h in ipairs(list) do out[i] = h.fn end
  return out
end

local function is_plain_list(v) return type(v) == "table" and not is_module(v) and getmetatable(v) == nil end

local autograd -- cnn.autograd, loaded on first use (it needs cnn.core, which loads after nn)

-- The identity node of the full backward hooks over the values at positions `idx` of `list`:
-- returns the list with those values replaced by the node's outputs. `on_backward(grads)` gets the
-- output gradients (one per position in idx) and returns the input gradients.
local function identity_node(name, list, idx, on_backward)
  autograd = autograd or require "cnn.autograd"
  local f = autograd.Function {
    name = name,
    _keep_nil = true, -- a result no gradient reached is nil in grad_output, as PyTorch's None
    forward = function(_, ...)
      local outs = {}
      for i = 1, select("#", ...) do outs[i] = (select(i, ...)):detach() end
      return table.unpack(outs)
    end,
    backward = function(_, ...) return table.unpack(on_backward(table.pack(...)), 1, #idx) end,
  }
  local ins = {}
  for i, k in ipairs(idx) do ins[i] = list[k] end
  local outs = table.pack(f(table.unpack(ins)))
  local res = {n = list.n}
  for k = 1, list.n do res[k] = list[k] end
  for i, k in ipairs(idx) do res[k] = outs[i] end
  return res
end

-- Positions of the tensors that require grad in a packed list.
local function grad_positions(list)
  local idx = {}
  for k = 1, list.n do
    local v = list[k]
    if is_tensor(v) and v.requires_grad then idx[#idx + 1] = k end
  end
  return idx
end

local function spread(idx, vals, n)
  local out = {n = n}
  for i, k in ipairs(idx) do out[k] = vals[i] end
  return out
end

function call_with_hooks(self, ...)
  local hooks = state(self).hooks
  local pre, post, back = snapshot(hooks.forward_pre), snapshot(hooks.forward), snapshot(hooks.backward)
  local input = table.pack(...)
  for _, h in ipairs(pre) do
    local r = h(self, input)
    if r ~= nil then input = is_plain_list(r) and table.pack(table.unpack(r, 1, #r)) or table.pack(r) end
  end

  local call -- the backward hooks' state for this call: the output gradients once known
  if #back > 0 and require("cnn.core").is_grad_enabled() then
    call = {in_idx = grad_positions(input), n_in = input.n}
    if #call.in_idx > 0 then
      input = identity_node("BackwardHookFunctionBackward", input, call.in_idx, function(grads)
        if call.grad_output == nil then return grads end -- reached without passing through the output
        local res = spread(call.in_idx, grads, call.n_in)
        for _, h in ipairs(back) do
          local r = h(self, res, call.grad_output)
          if r ~= nil then
            if not is_plain_list(r) then
              fail(state(self).class.__name, "a backward hook must return a list of gradients or nil")
            end
            if #r > call.n_in then
              fail(state(self).class.__name, "backward hook returned %d gradients for %d inputs", #r, call.n_in)
            end
            res = {n = call.n_in}
            for k = 1, call.n_in do res[k] = r[k] end
          end
        end
        call.grad_output = nil
        local out = {}
        for i, k in ipairs(call.in_idx) do out[i] = res[k] end
        return out
      end)
    end
  end

  local result = table.pack(self:forward(table.unpack(input, 1, input.n)))
  for _, h in ipairs(post) do
    local r = h(self, input, result[1])
    if r ~= nil then
      result[1] = r
      if result.n == 0 then result.n = 1 end
    end
  end

  if call then
    local out_idx = grad_positions(result)
    if #out_idx > 0 then
      result = identity_node("BackwardHookFunctionBackward", result, out_idx, function(grads)
        call.grad_output = spread(out_idx, grads, result.n)
        if #call.in_idx == 0 then -- no input needs a gradient: the hooks run now
          local none = {n = call.n_in}
          for _, h in ipairs(back) do
            local r = h(self, none, call.grad_output)
            if r ~= nil and not (is_plain_list(r) and next(r) == nil) then
              fail(state(self).class.__name, "a backward hook of a module whose inputs need no gradient " ..
                "must return nil")
            end
          end
          call.grad_output = nil
        end
        return grads
      end)
    end
  end
  return table.unpack(result, 1, result.n)
end

-- ---- state_dict --------------------------------------------------------------------------------

-- Every module's parameters, then its persistent buffers, then its children, recursively (all
-- paths: a shared tensor appears under each of its names, as in PyTorch). A child that is one of
-- its own ancestors (b.me = b) is a cycle and is skipped: its tensors are already listed.
local function collect(m, prefix, keys, dest, path)
  path = path or {}
  if path[m] then return end
  path[m] = true
  local s = state(m)
  for _, k in ipairs(s.params.keys) do
    keys[#keys + 1] = prefix .. k
    dest[prefix .. k] = s.params.map[k]
  end
  for _, k in ipairs(s.buffers.keys) do
    if not s.nonpersistent[k] then
      keys[#keys + 1] = prefix .. k
      dest[prefix .. k] = s.buffers.map[k]
    end
  end
  for _, k in ipairs(s.modules.keys) do collect(s.modules.map[k], prefix .. k .. ".", keys, dest, path) end
  path[m] = nil
end

-- pairs() over a state_dict walks its keys in module order, then any keys added later.
local function ordered_mt(keys)
  local listed = {}
  for _, k in ipairs(keys) do listed[k] = true end
  return {__pairs = function(t)
    local i, extra = 0, nil
    local function iter()
      while i < #keys do
        i = i + 1
        local k = keys[i]
        local v = rawget(t, k)
        if v ~= nil then return k, v end
      end
      repeat
        local v
        extra, v = next(t, extra)
        if extra == nil then return nil end
        if not listed[extra] then return extra, v end
      until false
    end
    return iter, t, nil
  end}
end

--- cnn.nn.Module:state_dict({keep_vars=false}) -> {name=tensor}
--- The parameters and persistent buffers by dotted name, detached but sharing storage with the module.
--- pairs() over it follows the module order (m:state_dict_keys() lists it); {keep_vars=true} keeps
--- the tensors themselves. Saved with cnn.save, it loads in PyTorch and back.
function Module:state_dict(opts)
  check_self(self, "state_dict")
  opts = U.options("state_dict", opts, {keep_vars = true})
  local keys, raw = {}, {}
  collect(self, "", keys, raw)
  local sd = {}
  for _, k in ipairs(keys) do sd[k] = opts.keep_vars and raw[k] or raw[k]:detach() end
  return setmetatable(sd, ordered_mt(keys))
end

--- cnn.nn.Module:state_dict_keys() -> {names}
--- The keys of m:state_dict(), in order.
function Module:state_dict_keys()
  check_self(self, "state_dict_keys")
  local keys = {}
  collect(self, "", keys, {})
  return keys
end

-- The first keys of a list, quoted, and how many more: another network's checkpoint named hundreds
-- (a 6 KB line that hid the cause)
local SHOWN_KEYS = 10
local function quoted(list)
  local q = {}
  for i = 1, math.min(#list, SHOWN_KEYS) do -- escaped, and a key past 80 characters cut
    local k = list[i]
    q[i] = (#k > 80 and string.format("%q", k:sub(1, 80)):sub(1, -2) .. '..."' or string.format("%q", k))
      :gsub("\\\n", "\\n")
  end
  local more = #list > SHOWN_KEYS and string.format(" and %d more", #list - SHOWN_KEYS) or ""
  return string.format("%d: %s%s", #list, table.concat(q, ", "), more)
end

--- cnn.nn.Module:load_state_dict(state_dict, {strict=true} or strict) -> missing, unexpected
--- Copies the tensors of state_dict into the module's parameters and buffers, in place.
--- Everything is checked before anything is copied: shape mismatches and non-tensor values are errors,
--- and with strict (the default) missing and unexpected keys too, all reported in one message. Returns
--- the lists of missing and unexpected keys. As PyTorch's BatchNorm, a missing num_batches_tracked
--- (checkpoints made before PyTorch 0.4.1 have none) is not missing: the count is set to 0.
function Module:load_state_dict(sd, opts)
  check_self(self, "load_state_dict")
  if type(opts) == "boolean" then opts = {strict = opts} end -- PyTorch's positional strict
  if type(opts) == "table" and getmetatable(opts) == nil and next(opts) ~= nil then
    local strings, other = true, false -- m:load_state_dict(cnn.load(path)) passes the file's metadata
    for k, v in pairs(opts) do strings, other = strings and type(v) == "string", other or k ~= "strict" end
    if strings and other then
      fail("load_state_dict", "the options are a table of strings, as the metadata cnn.load returns beside the " ..
        "tensors: pass only the tensors, m:load_state_dict((cnn.load(path))) (the call in parentheses)")
    end
  end
  opts = U.options("load_state_dict", opts, {strict = true})
  local strict = opts.strict
  if strict == nil then strict = true end
  if type(strict) ~= "boolean" then fail("load_state_dict", "strict must be a boolean, got %s", type(strict)) end
  if type(sd) ~= "table" or is_module(sd) then
    fail("load_state_dict", "expected a table of named tensors, got %s", is_module(sd) and "a module" or type(sd))
  end
  local keys, own = {}, {}
  collect(self, "", keys, own)
  local missing, unexpected, errors, todo, zero = {}, {}, {}, {}, {}
  for _, k in ipairs(keys) do
    local src = rawget(sd, k)
    if src == nil and (k == "num_batches_tracked" or k:sub(-20) == ".num_batches_tracked") then
      -- batch norm's counter, which checkpoints older than PyTorch 0.4.1 (torchvision's first
      -- weights among them) lack: PyTorch's BatchNorm loads them as a count of 0
      zero[#zero + 1] = k
    elseif src == nil then
      missing[#missing + 1] = k
    elseif not is_tensor(src) then
      errors[#errors + 1] = string.format("value for %s is %s, not a tensor", k, describe(src))
    else
      local a, b = src:shape(), own[k]:shape()
      local same = #a == #b
      for d = 1, #a do same = same and a[d] == b[d] end
      if same then
        todo[#todo + 1] = k
      else
        errors[#errors + 1] = string.format("size mismatch for %s: the state_dict has shape %s, the module %s",
          k, U.shape_str(src), U.shape_str(own[k]))
      end
    end
  end
  for k in next, sd do
    if own[k] == nil then unexpected[#unexpected + 1] = tostring(k) end
  end
  table.sort(unexpected)
  if #errors > 0 or (strict and (#missing > 0 or #unexpected > 0)) then
    local name = state(self).class.__name
    local lines = {"error(s) in loading state_dict for " .. name .. ":"}
    if strict and #todo == 0 and #errors == 0 and #keys > 0 and #unexpected > 0 then
      lines[#lines + 1] = string.format("no key of the state_dict is one of this %s's: is it another network's?", name)
    end
    if strict and #missing > 0 then lines[#lines + 1] = "missing key(s) " .. quoted(missing) end
    if strict and #unexpected > 0 then lines[#lines + 1] = "unexpected key(s) " .. quoted(unexpected) end
    for i = 1, math.min(#errors, SHOWN_KEYS) do lines[#lines + 1] = errors[i] end
    if #errors > SHOWN_KEYS then lines[#lines + 1] = string.format("and %d more such errors", #errors - SHOWN_KEYS) end
    error("load_state_dict: " .. table.concat(lines, "\n  "), 0)
  end
  U.no_grad(function()
    for _, k in ipairs(todo) do
      local src = rawget(sd, k)
      if src ~= own[k] then own[k]:copy_(src) end
    end
    for _, k in ipairs(zero) do own[k]:zero_() end
  end)
  return missing, unexpected
end

-- ---- printing ----------------------------------------------------------------------------------

--- cnn.nn.Module:extra_repr() -> string
--- The configuration tostring(m) shows after the class name ("1, 6, kernel_size=(5, 5)"); define it.
function Module:extra_repr() return "" end

local function addindent(s, n)
  local pad = string.rep(" ", n)
  return (s:gsub("\n", "\n" .. pad))
end

-- " -- weight {6, 1, 5, 5}, bias {6}" for a module with parameters of its own.
local function shapes_comment(s)
  if #s.params.keys == 0 then return "" end
  local parts = {}
  for i, k in ipairs(s.params.keys) do parts[i] = k .. " " .. U.shape_str(s.params.map[k]) end
  return "  -- " .. table.concat(parts, ", ")
end

-- PyTorch's repr (Module.__repr__), each module with parameters of its own followed by their
-- shapes as a Lua comment, and the root container by its parameter count.
function repr(m, root, path)
  local s = state(m)
  path = path or {}
  if path[m] then return s.class.__name .. "(<cycle: contains itself>)" end
  path[m] = true
  local extra = m:extra_repr()
  local lines, n_extra = {}, 0
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
    n_extra = #lines
  end
  for _, k in ipairs(s.modules.keys) do
    lines[#lines + 1] = "(" .. k .. "): " .. addindent(repr(s.modules.map[k], false, path), 2)
  end
  path[m] = nil
  local out = s.class.__name .. "("
  local comment = shapes_comment(s)
  if #lines == 0 then
    out = out .. ")" .. comment
  elseif n_extra == 1 and #lines == 1 then
    out = out .. lines[1] .. ")" .. comment
  else
    out = out .. comment .. "\n  " .. table.concat(lines, "\n  ") .. "\n)"
    if root then out = out .. "  -- " .. Module.num_parameters(m) .. " parameters" end
  end
  return out
end

-- ---- containers --------------------------------------------------------------------------------

-- Sequential and ModuleList: children named "0", "1", ... (PyTorch's names); c[i] is the i-th
-- child in Lua (1-based, negative from the end), #c their number.
local function list_get(self, i)
  local keys = state(self).modules.keys
  if i < 0 then i = #keys + 1 + i end
  local k = keys[i]
  return k and state(self).modules.map[k]
end

local function renumber(s)
  local old = s.modules
  s.modules = od_new()
  for i, k in ipairs(old.keys) do od_set(s.modules, tostring(i - 1), old.map[k]) end
end

--- cnn.nn.ModuleList:add(m) -> self
--- cnn.nn.ModuleList:append(m) -> self
--- cnn.nn.Sequential:add(m) -> self
--- cnn.nn.Sequential:append(m) -> self
--- Appends module m, named by its 0-based position as in PyTorch.
local function list_add(self, m)
  local s = state(self)
  local who = s.class.__name
  if not is_module(m) then fail(who, "add expects a module, got %s", describe(m)) end
  od_set(s.modules, tostring(#s.modules.keys), m)
  return self
end

local function list_set(self, i, m)
  local s = state(self)
  local who, n = s.class.__name, #s.modules.keys
  if not U.is_int(i) then fail(who, "index must be an integer, got %s", show(i)) end
  if i < 0 then i = n + 1 + i end
  if m ~= nil and not is_module(m) then
    fail(who, "cannot assign %s at index %d (a module or nil expected)", describe(m), i)
  end
  if i == n + 1 and m ~= nil then return list_add(self, m) end
  if i < 1 or i > n then fail(who, "index %d is out of range for %d modules", i, n) end
  local k = s.modules.keys[i]
  if m == nil then
    od_remove(s.modules, k)
    renumber(s) -- as PyTorch's __delitem__ does: names stay "0".."n-1"
  else
    s.modules.map[k] = m
  end
end

local function list_init(cls_name)
  return function(self, ...)
    local list, n = {...}, select("#", ...)
    if n == 1 and type(list[1]) == "table" and not is_module(list[1]) and not is_class(list[1]) then
      list = list[1]
      n = #list
      for k in pairs(list) do
        if not (math.type(k) == "integer" and k >= 1 and k <= n) then
          fail(cls_name, "expected a list of modules, got a table with key '%s'", show(k))
        end
      end
    end
    for i = 1, n do
      if not is_module(list[i]) then fail(cls_name, "argument %d is %s, not a module", i, describe(list[i])) end
      list_add(self, list[i])
    end
  end
end

--- class cnn.nn.Sequential(m1, m2, ...)
--- class cnn.nn.Sequential{m1, m2, ...}
--- A container that runs its children in order: `nn.Sequential(nn.Linear(4, 8), nn.ReLU())`.
--- `seq[i]` is the i-th child (1-based, negative from the end; `seq[i] = m` replaces it, nil removes
--- it) and `#seq` their number; in names and state_dict keys the children count from 0, as in
--- PyTorch (`features.0.weight`). A stock ReLU right before a MaxPool2d runs after the pool: the two
--- commute (same values and gradients) and the ReLU then touches a quarter of the values.
local Sequential = Module:extend("Sequential")
Sequential.init = list_init("Sequential")
Sequential.__getitem = list_get
Sequential.__setitem = list_set
Sequential.__length = function(self) return #state(self).modules.keys end
Sequential.add = list_add
Sequential.append = list_add

-- A stock ReLU right before a stock MaxPool2d runs after it instead: the two commute (ReLU is
-- monotone, so max(relu(a), relu(b)) = relu(max(a, b)) over any window that holds a value (the fused
-- pool keeps -inf for a window of padding alone), and the gradient reaches the same input,
-- ties and NaN alike), and the ReLU then touches a quarter of the values (LeNet, AlexNet, VGG).
-- The classes opt in with raw fields, so subclasses that change forward are not swapped. When
-- neither instance has its forward replaced either, the two run as one op (b:_forward_relu: one
-- pass each way, one graph node); otherwise as the two calls written (a replaced forward need not
-- commute with the pool).
local function pool_first(a, b)
  local sa, sb = a.__nn, b ~= nil and b.__nn -- (children are module instances: see state)
  return sb and rawget(sa.class, "commutes_with_max_pool") and rawget(sb.class, "is_max_pool") and
    sa.hooks == nil and sb.hooks == nil -- hooks see the modules' calls as written
end

-- A module whose own class (not a subclass) declares the raw field `flag`, with its class's forward
-- and no hooks: Sequential may run it fused with its neighbours.
local function stock(m, flag)
  if m == nil then return false end
  local s = m.__nn
  local cls = s.class
  return rawget(cls, flag) and s.hooks == nil and m.forward == rawget(cls, "forward")
end

-- Conv2d, ReLU, MaxPool2d, all stock: one op and one graph node (Conv2d:_forward_relu_max_pool),
-- the same values and gradients as the three calls.
local function conv_relu_pool(conv, relu, pool)
  return stock(conv, "fuses_relu_max_pool") and stock(relu, "commutes_with_max_pool") and stock(pool, "is_max_pool")
    and rawget(pool.__nn.class, "_forward_relu")
end

local function relu_max_pool(relu, pool, x)
  local rc, pc = relu.__nn.class, pool.__nn.class
  if relu.forward == rawget(rc, "forward") and pool.forward == rawget(pc, "forward") and
      rawget(pc, "_forward_relu") then
    local ok, y = pcall(pool._forward_relu, pool, x)
    if ok then return y end
    pool(relu(x)) -- raises a bad input's error again, naming the layer
    error(y, 0) -- one the layers do not repeat (see conv_relu_max_pool)
  end
  return pool(relu(x))
end

local function conv_relu_max_pool(conv, relu, pool, x)
  local ok, y = pcall(conv._forward_relu_max_pool, conv, x, pool)
  if ok then return y end
  pool(relu(conv(x))) -- raises a bad input's error again, naming the layer
  -- an error the layers do not repeat is raised as it came: Ctrl-C's "interrupted!" (cnnlua's hook
  -- raises it wherever the loop is, most often in here); swallowed, a training loop ignored Ctrl-C
  error(y, 0)
end

-- Inference (eval mode under no_grad): nn/layers.lua sets the fuser, which runs Conv2d + BatchNorm2d
-- (+ ReLU) or Conv2d + ReLU as one folded convolution: fuser(m, m2, m3, x) -> output, children covered.
local inference_fuser

local function set_inference_fuser(fn) inference_fuser = fn end

-- A module whose class declares (raw field keeps_no_activations: true, or the class's forward
-- while it is still that one) that its forward keeps no reference to its input or output, with
-- no hooks (which see both) and no forward of its own instance (`m.forward = function(self, x)
-- saved = x ... end`); or a plain Sequential (the class itself) of such modules. With `leaves`,
-- as training asks (where hooks that save activations are common), their children (a block's
-- layers) by the same rule all the way down (a hook on a block's inner layer sees the block's
-- input). Sequential:forward asks it of each child in every call. In inference a block's children
-- must have no hooks or forwards of their own either: the first layer's sees the block's input,
-- which the container would free.
local function seen_below(s)
  local mods = s.modules
  for _, k in ipairs(mods.keys) do
    local c = mods.map[k].__nn
    if c.hooks ~= nil or c.fields.forward ~= nil or seen_below(c) then return true end
  end
  return false
end

local function child_keeps_nothing(m, leaves) -- m a module (a container's child)
  local s = m.__nn
  if s.hooks ~= nil or s.fields.forward ~= nil then return false end
  local cls = s.class
  if cls == Sequential then
    local mods = s.modules
    for _, k in ipairs(mods.keys) do
      if not child_keeps_nothing(mods.map[k], leaves) then return false end
    end
    return true
  end
  local mark = rawget(cls, "keeps_no_activations") -- true, or the forward it vouches for
  if not mark or (type(mark) == "function" and cls.forward ~= mark) then return false end
  if leaves then
    local mods = s.modules -- a block's children by the same rule: a hook on one sees the block's input
    for _, k in ipairs(mods.keys) do
      if not child_keeps_nothing(mods.map[k], true) then return false end
    end
    return true
  end
  return not seen_below(s)
end

local function keeps_nothing(m, leaves)
  return m ~= nil and is_module(m) and child_keeps_nothing(m, leaves)
end

--- cnn.nn.Sequential:forward(x) -> output
--- Runs the children in order, each on the previous one's output.
--- In eval mode under no_grad it fuses Conv2d + BatchNorm2d (+ ReLU) and Conv2d + ReLU into one
--- convolution each. An intermediate output that a stock layer made and the next stock layer has
--- consumed is let go of then (in training its memory comes back when backward releases the graph,
--- not when the garbage collector runs); outputs a hook sees are kept.
function Sequential:forward(x)
  local mods = self.__nn.modules
  local keys, map = mods.keys, mods.map
  local i, n = 1, #keys
  local infer = inference_fuser ~= nil and not self.training and not core.is_grad_enabled()
  local own = false -- x was made here by children that keep no reference to it: free it once consumed
  while i <= n do
    local m, nxt = map[keys[i]], map[keys[i + 1]]
    local y, k
    if infer then y, k = inference_fuser(m, nxt, map[keys[i + 2]], x) end
    if y == nil then
      if conv_relu_pool(m, nxt, map[keys[i + 2]]) then
        y, k = conv_relu_max_pool(m, nxt, map[keys[i + 2]], x), 3
      elseif pool_first(m, nxt) then
        y, k = relu_max_pool(m, nxt, x), 2
      else
        y, k = m(x), 1
      end
    end
    local pure = true
    for j = i, i + k - 1 do pure = pure and child_keeps_nothing(map[keys[j]], not infer) end
    if not rawequal(x, y) then -- (a child that returns its input leaves x as it was)
      if own and pure and is_tensor(x) and is_tensor(y) then
        getmetatable(x).__close(x) -- its storage back to the allocator (a view y keeps its own)
      end
      own = pure
    end
    x, i = y, i + k
  end
  return x
end

--- class cnn.nn.ModuleList(m1, m2, ...)
--- class cnn.nn.ModuleList{m1, m2, ...}
--- A list of modules, registered as children (named "0", "1", ...), with no forward of its own.
--- `list[i]`, `#list` and `ipairs(list)` as for Sequential; iterate over it in your own forward.
local ModuleList = Module:extend("ModuleList")
ModuleList.init = list_init("ModuleList")
ModuleList.__getitem = list_get
ModuleList.__setitem = list_set
ModuleList.__length = Sequential.__length
ModuleList.add = list_add
ModuleList.append = list_add

function ModuleList:forward()
  fail("ModuleList", "has no forward: iterate over its modules (for i, m in ipairs(list) do ... end)")
end

return {Module = Module, Sequential = Sequential, ModuleList = ModuleList, is_module = is_module, dir = dir,
  set_inference_fuser = set_inference_fuser, keeps_no_activations = keeps_nothing}
