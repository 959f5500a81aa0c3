--- module cnn.autograd
--- Differentiable functions in Lua, backward callbacks, gradient checking.
--- The engine itself is in C: t:requires_grad_(), t:backward(), cnn.no_grad and the tensor fields
--- grad, grad_fn and is_leaf.

-- The Lua half of autograd: user-defined differentiable functions (cnn.autograd.Function) and
-- finite-difference gradient checking (cnn.autograd.gradcheck).
local core = require "cnn.core"

local autograd = {}

local tensor_mt = getmetatable(core.zeros(0))
local function is_tensor(x) return type(x) == "userdata" and getmetatable(x) == tensor_mt end

local function check_options(fn, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fn .. ": expected an options table, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not known[k] then error(fn .. ": unknown option '" .. tostring(k) .. "'", 3) end
  end
  return opts
end

-- ctx of a Function call. Saved tensors are kept as detached aliases (so saving an output makes
-- no reference cycle through the graph) with their versions, checked when backward reads them.
local Ctx = {}
Ctx.__index = Ctx

function Ctx:save_for_backward(...)
  local saved, versions = {}, {}
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    if t ~= nil and not is_tensor(t) then
      error("save_for_backward: argument " .. i .. " is a " .. type(t) .. ", not a tensor", 2)
    end
    saved[i] = t and t:detach()
    versions[i] = t and t:_version()
  end
  self.saved, self._versions = saved, versions
end

local function check_saved(ctx, name)
  for i, t in pairs(ctx.saved) do
    if t:_version() ~= ctx._versions[i] then
      error(string.format("%s: saved tensor %d was modified by an in-place operation after it was saved " ..
        "(version %d, saved at %d)", name, i, t:_version(), ctx._versions[i]), 0)
    end
  end
end

--- cnn.autograd.Function{forward=function(ctx, ...) end, backward=function(ctx, grad_out...) end, name=} -> op
--- A differentiable op written in Lua: `local op = cnn.autograd.Function{...}; local y = op(x, w)`.
--- forward runs without recording and returns 1 to 8 float32 tensors; backward gets one gradient per
--- output (zeros for an output nobody used) and returns one gradient, or nil, per tensor argument of
--- forward, in order. In forward, `ctx:save_for_backward(...)` keeps tensors for backward in
--- `ctx.saved` (an in-place change to one of them afterwards makes backward fail), other fields of
--- ctx hold anything else, and `ctx.needs_input_grad` lists which tensor arguments require grad.
--- name names the node (grad_fn), "LuaFunctionBackward" by default.
function autograd.Function(def)
  check_options("Function", def, {forward = true, backward = true, name = true})
  if type(def.forward) ~= "function" or type(def.backward) ~= "function" then
    error("Function: needs forward and backward functions", 2)
  end
  local name = def.name or "LuaFunctionBackward"
  local forward, backward = def.forward, def.backward
  local op = {}
  return setmetatable(op, {
    __name = "cnn.autograd.Function",
    __call = function(_, ...)
      local ctx = setmetatable({saved = {}, _versions = {}}, Ctx)
      local inputs, needs = {}, {}
      for i = 1, select("#", ...) do
        local a = select(i, ...)
        if is_tensor(a) then
          inputs[#inputs + 1] = a
          needs[#needs + 1] = a.requires_grad
        end
      end
      ctx.needs_input_grad = needs
      local prev = core.set_grad_enabled(false)
      local res = table.pack(pcall(forward, ctx, ...))
      core.set_grad_enabled(prev)
      if not res[1] then error(res[2], 0) end
      local outs = {}
      for i = 2, res.n do
        local o = res[i]
        if not is_tensor(o) then error(name .. ": forward must return tensors, got " .. type(o), 2) end
        -- an input passed straight through must not become this node's output itself
        for _, x in ipairs(inputs) do
          if rawequal(o, x) then o = x:detach():clone(); res[i] = o end
        end
        outs[#outs + 1] = o
      end
      if #outs == 0 then error(name .. ": forward returned no tensor", 2) end
      if core.is_grad_enabled() then
        core._function_record(name, outs, inputs, function(...)
          check_saved(ctx, name)
          return backward(ctx, ...)
        end)
      end
      return table.unpack(res, 2, res.n)
    end,
  })
end

-- The functions run after every successful backward, in registration order (the C side reads this
-- very table after each backward).
local callbacks = {}
core._set_backward_callbacks(callbacks)

local Handle = {__name = "cnn.autograd.CallbackHandle"}
Handle.__index = Handle

--- handle:remove(): stops the callback (idempotent).
function Handle:remove()
  for i, f in ipairs(callbacks) do
    if rawequal(f, self.fn) then table.remove(callbacks, i); break end
  end
end

--- cnn.autograd.register_backward_callback(fn) -> handle
--- fn() runs after every t:backward() that succeeds, once the gradients are in the leaves' .grad.
--- `handle:remove()` unregisters it. An error in fn propagates from backward() (cnn.distributed's
--- DataParallel averages gradients this way).
function autograd.register_backward_callback(fn)
  if type(fn) ~= "function" then
    error("register_backward_callback: expected a function, got " .. type(fn), 2)
  end
  -- a fresh closure per registration, so registering one function twice gives two handles
  local entry = function() return fn() end
  callbacks[#callbacks + 1] = entry
  return setmetatable({fn = entry}, Handle)
end

-- Row-major flat view of a contiguous tensor, for reading and writing element k (1-based).
local function flat(t)
  if not t:is_contiguous() then error("gradcheck: inputs must be contiguous", 3) end
  return t:view(-1)
end

--- cnn.autograd.gradcheck(fn, inputs, {eps=1e-3, atol=1e-3, rtol=1e-2}) -> true | false, message
--- Compares the gradients backward gives with central finite differences.
--- fn(inputs...) returns a tensor; inputs is a tensor or a list of them, and each one that requires
--- grad (float32, contiguous) is checked element by element: |analytic - numeric| <= atol + rtol *
--- |numeric|. Returns true, or false and a message naming the input, element, output and both values.
function autograd.gradcheck(fn, inputs, opts)
  opts = check_options("gradcheck", opts, {eps = true, atol = true, rtol = true})
  if is_tensor(inputs) then inputs = {inputs} end
  if type(inputs) ~= "table" then error("gradcheck: inputs must be a tensor or a list of tensors", 2) end
  local eps, atol, rtol = opts.eps or 1e-3, opts.atol or 1e-3, opts.rtol or 1e-2
  local function call()
    local out = fn(table.unpack(inputs))
    if not is_tensor(out) then error("gradcheck: fn must return a tensor, got " .. type(out), 3) end
    return out
  end

  -- analytic Jacobian, one backward per output element: J[i][j] = flat grad of input i for output j
  local out = call()
  local nout = out:numel()
  local saved_grads, analytic = {}, {}
  for i, x in ipairs(inputs) do
    if is_tensor(x) and x.requires_grad then saved_grads[i] = x.grad; analytic[i] = {} end
  end
  if not out.requires_grad then return false, "gradcheck: the output does not require grad" end
  for j = 1, nout do
    for i, x in ipairs(inputs) do if analytic[i] then x.grad = nil end end
    local seed = core.zeros_like(out)
    flat(seed)[j] = 1
    out:backward(seed, {retain_graph = true})
    for i, x in ipairs(inputs) do
      if analytic[i] then analytic[i][j] = x.grad and flat(x.grad):clone() or core.zeros(x:numel()) end
    end
  end
  for i, x in ipairs(inputs) do if analytic[i] then x.grad = saved_grads[i] end end

  -- numerical Jacobian by central differences, perturbing one element at a time
  local ok, msg = true, nil
  local prev = core.set_grad_enabled(false)
  local pok, perr = pcall(function()
    for i, x in ipairs(inputs) do
      if analytic[i] then
        local xf = flat(x)
        for k = 1, x:numel() do
          local v = xf[k]
          xf[k] = v + eps
          local fp = flat(call():contiguous()):clone()
          xf[k] = v - eps
          local fm = flat(call():contiguous()):clone()
          xf[k] = v
          local num = (fp - fm) / (2 * eps)
          for j = 1, nout do
            local a, n = analytic[i][j][k], num[j]
            if not (math.abs(a - n) <= atol + rtol * math.abs(n)) then
              ok = false
              msg = string.format("gradcheck: input %d, element %d, output %d: backward gives %.6g, " ..
                "finite differences give %.6g", i, k, j, a, n)
              return
            end
          end
        end
      end
    end
  end)
  core.set_grad_enabled(prev)
  if not pok then error(perr, 0) end
  if ok then return true end
  return false, msg
end

return autograd
