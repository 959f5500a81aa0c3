--- module cnn.autograd
--- Differentiable functions in Lua, backward callbacks, gradient checking.
--- The engine itself is in C: t:requires_grad_(), t:backward(), cnn.no_grad and the tensor fields
--- grad, grad_fn and is_leaf.

-- The Lua half of autograd: user-defined differentiable functions (cnn.autograd.Function) and
-- finite-difference gradient checking (cnn.autograd.gradcheck).
local core = require "cnn.core"

local autograd = {}

local util = require "cnn.util"
local is_tensor, show = util.is_tensor, util.show

-- (errors at the line calling the function that checks)
local function check_options(fn, opts, known)
  return (util.check_options(fn, opts, known, 3)) -- not a tail call, which would shift the levels
end

--- autograd._with_grad_mode(on, fn, ...): fn(...) with grad mode `on`, restored afterwards even when
--- fn raises. Inside a coroutine fn may yield: it then runs in a coroutine of its own, so that a
--- yield gives the caller back its own mode, a resume re-enters fn's, and a coroutine abandoned
--- while suspended inside fn leaves the mode as it was (outside any coroutine nothing can yield
--- past fn, and a plain pcall keeps the interpreter's Ctrl-C hook in reach).
function autograd._with_grad_mode(on, fn, ...)
  if not coroutine.isyieldable() then
    local prev = core.set_grad_enabled(on)
    local res = table.pack(pcall(fn, ...))
    core.set_grad_enabled(prev)
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end
  local co = coroutine.create(fn)
  local res = table.pack(...)
  while true do
    local prev = core.set_grad_enabled(on)
    res = table.pack(coroutine.resume(co, table.unpack(res, 1, res.n)))
    core.set_grad_enabled(prev)
    if not res[1] then
      coroutine.close(co) -- an error does not unwind a coroutine: close its <close> variables now
      error(res[2], 0)
    end
    if coroutine.status(co) == "dead" then return table.unpack(res, 2, res.n) end
    res = table.pack(coroutine.yield(table.unpack(res, 2, res.n)))
  end
end
local with_grad_mode = autograd._with_grad_mode

-- ctx of a Function call. Saved tensors are kept as detached aliases (so saving an output makes
-- no reference cycle through the graph) with their versions, checked when backward reads them.
local Ctx = {}
Ctx.__index = Ctx

-- A tensor assigned to a field of ctx (ctx.out = y) is kept as a detached alias too: the node's
-- backward closure holds ctx from the C side, where the collector cannot see it, so the output
-- itself on ctx (whose grad_fn is that node) would be a cycle never collected.
function Ctx.__newindex(self, k, v)
  if is_tensor(v) then v = core._saved_copy(v) end -- (detached; not a view an in-place op must spare)
  rawset(self, k, v)
end

function Ctx:save_for_backward(...)
  local saved, versions = {}, {}
  for i = 1, select("#", ...) do
    local t = select(i, ...)
    if t ~= nil and not is_tensor(t) then
      error("save_for_backward: argument " .. i .. " is a " .. type(t) .. ", not a tensor", 2)
    end
    saved[i] = t and core._saved_copy(t)
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
--- forward, in order (missing trailing ones are nil; values past the tensor arguments must be nil,
--- as the nils of a PyTorch-style backward for its other arguments, or backward fails with
--- "NAME returned an incorrect number of gradients (expected N, got M)", as PyTorch's).
--- In forward, `ctx:save_for_backward(...)` keeps tensors for backward in
--- `ctx.saved` (an in-place change to one of them afterwards makes backward fail), other fields of
--- ctx hold anything else (a tensor there is kept detached, like the saved ones, so storing an
--- output on ctx makes no reference cycle), and `ctx.needs_input_grad` lists which tensor
--- arguments require grad. forward may yield when called inside a coroutine.
--- name names the node (grad_fn), "LuaFunctionBackward" by default.
function autograd.Function(def)
  check_options("Function", def, {forward = true, backward = true, name = true, _keep_nil = true})
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
      local res = table.pack(true, with_grad_mode(false, forward, ctx, ...))
      local outs = {}
      for i = 2, res.n do
        local o = res[i]
        if not is_tensor(o) then error(name .. ": forward must return tensors, got " .. type(o), 2) end
        -- an input passed straight through must not become this node's output itself
        for _, x in ipairs(inputs) do
          if rawequal(o, x) then o = x:detach():clone(); res[i] = o end
        end
        -- ctx's own copy returned (return ctx.y): the output is another alias, counted as a view
        if core._is_saved_copy(o) then o = o:detach(); res[i] = o end
        outs[#outs + 1] = o
      end
      if #outs == 0 then error(name .. ": forward returned no tensor", 2) end
      if core.is_grad_enabled() then
        core._function_record(name, outs, inputs, function(...)
          check_saved(ctx, name)
          return backward(ctx, ...)
        end, def._keep_nil)
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
  local mt = getmetatable(fn)
  if type(fn) ~= "function" and not (type(mt) == "table" and mt.__call) then
    error("gradcheck: fn must be a function (or callable), got " .. type(fn), 2)
  end
  if is_tensor(inputs) then inputs = {inputs} end
  if type(inputs) ~= "table" then error("gradcheck: inputs must be a tensor or a list of tensors", 2) end
  local eps, atol, rtol = opts.eps or 1e-3, opts.atol or 1e-3, opts.rtol or 1e-2
  for k, v in pairs {eps = eps, atol = atol, rtol = rtol} do
    if type(v) ~= "number" or not (v >= 0) or v == math.huge or (k == "eps" and v == 0) then
      error(string.format("gradcheck: %s must be a %s finite number, got %s", k, k == "eps" and "positive" or
        "non-negative", show(v)), 2)
    end
  end
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
              msg = string.format("gradcheck: input %d, element %d, output %d: backward gives %s, " ..
                "finite differences give %s", i, k, j, util.show(a, "%.6g"), util.show(n, "%.6g"))
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

-- ---- drawing the graph ------------------------------------------------------------------------

local function shape_text(shape) return "{" .. table.concat(shape, ", ") .. "}" end

local function quote(s) return '"' .. tostring(s):gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"' end

-- key (core._tensor_key) -> name, from a module (its parameters and buffers) or a table of
-- {name = tensor} (or a list of {name, tensor} pairs, as named_parameters gives).
local function leaf_names(params)
  local names = {}
  if params == nil then return names end
  local function add(name, t)
    if not is_tensor(t) then
      error("graph: params must map names to tensors, got " .. type(t) .. " for '" .. util.show(name) .. "'", 4)
    end
    local key = core._tensor_key(t)
    if names[key] == nil then names[key] = tostring(name) end
  end
  local mt = getmetatable(params)
  if type(params) == "table" and type(mt) == "table" and rawget(mt, "__cnn_module") then
    for _, p in ipairs(params:named_parameters()) do add(p[1], p[2]) end
    for _, b in ipairs(params:named_buffers()) do add(b[1], b[2]) end
  elseif type(params) == "table" then
    for k, v in pairs(params) do
      if math.type(k) == "integer" and type(v) == "table" and v[2] ~= nil then add(v[1], v[2]) else add(k, v) end
    end
  else
    error("graph: params must be a module or a table of named tensors, got " .. type(params), 3)
  end
  return names
end

-- Runs Graphviz's dot on the DOT text, writing path in format fmt.
local function render(text, path, fmt)
  local process = core.process
  local src, err = os.tmpname(), os.tmpname()
  local f = assert(io.open(src, "w"))
  f:write(text)
  f:close()
  local ok, pid = pcall(process.spawn, {"dot", "-T" .. fmt, "-o", path, src}, {stdin = "/dev/null", stderr = err})
  if not ok then
    os.remove(src)
    os.remove(err)
    if tostring(pid):find("cannot start", 1, true) then
      error(string.format("graph: writing %s needs Graphviz's dot program, which is not on PATH (Debian: " ..
        "apt-get install graphviz); a .dot path writes the text itself", path), 3)
    end
    error(pid, 0)
  end
  local how, code = process.wait(pid, true)
  local ef = io.open(err, "r")
  local message = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(src)
  os.remove(err)
  if how ~= "exit" or code ~= 0 then
    error(string.format("graph: dot could not write %s (%s %s): %s", path, tostring(how), tostring(code),
      message:gsub("%s+$", "")), 3)
  end
end

--- cnn.autograd.graph(t, {params=, name="output", values=false, path=}) -> dot, graph
--- The autograd graph behind tensor t as Graphviz DOT text, drawn as SVG, PNG or PDF when asked.
--- Each node is a backward function, named as t.grad_fn names it (MulBackward), with an arrow from
--- each of its inputs labelled with that input's shape; leaves that need a gradient are boxes named
--- from params (a module, whose parameters and buffers give the names, or a table {name = tensor})
--- or showing their shape alone; t itself is the box labelled name. values=true adds the value
--- of one-element leaves and of t, and their .grad when they have one. path ending in .dot writes the
--- text; .svg, .png or .pdf runs Graphviz's `dot` (Debian's graphviz package), an error naming it
--- when it is missing. graph is the same as data: {nodes = {{id=, name=}, ...}, leaves = {{id=,
--- name=, shape=}, ...}, edges = {{from=, to=, shape=}, ...}} with ids "n1" (t's grad_fn), "n2"...,
--- "l1"... for leaves and "out" for t; edges run from an input to the node that consumes it.
function autograd.graph(t, opts)
  if not is_tensor(t) then error("graph: expected a tensor, got " .. type(t), 2) end
  opts = check_options("graph", opts, {params = true, name = true, values = true, path = true})
  if opts.path ~= nil and type(opts.path) ~= "string" then error("graph: path must be a string", 2) end
  local fmt = opts.path and (opts.path:match("%.(%w+)$") or ""):lower()
  if fmt and fmt ~= "dot" and fmt ~= "gv" and fmt ~= "svg" and fmt ~= "png" and fmt ~= "pdf" then
    error("graph: path must end in .dot, .gv, .svg, .png or .pdf, got " .. opts.path, 2)
  end
  local names = leaf_names(opts.params)
  local root_name = opts.name and tostring(opts.name) or "output"
  local g = {nodes = {}, leaves = {}, edges = {}}
  local data = core._graph(t)
  local leaf_ids, n_leaves = {}, 0
  local function leaf_id(key, tensor)
    local id = leaf_ids[key]
    if id then return id end
    n_leaves = n_leaves + 1
    id = "l" .. n_leaves
    leaf_ids[key] = id
    g.leaves[#g.leaves + 1] = {id = id, name = names[key], shape = tensor:shape(), tensor = tensor}
    return id
  end
  if data == nil then -- a leaf (or a tensor outside any graph): the box alone
    if t.requires_grad then
      local id = leaf_id(core._tensor_key(t), t)
      g.edges[1] = {from = id, to = "out", shape = t:shape()}
    end
  else
    for id, n in ipairs(data.nodes) do
      g.nodes[id] = {id = "n" .. id, name = n.name}
      for _, e in ipairs(n.inputs) do
        local from = e.node and ("n" .. e.node) or leaf_id(e.leaf, e.tensor)
        g.edges[#g.edges + 1] = {from = from, to = "n" .. id, shape = e.shape,
          output = e.node and data.nodes[e.node].outputs > 1 and e.output or nil}
      end
    end
    g.edges[#g.edges + 1] = {from = "n1", to = "out", shape = t:shape(),
      output = data.nodes[1].outputs > 1 and data.output or nil}
  end

  -- "= 10, grad 2.2" for a one-element tensor when values are asked for
  local function value_text(x)
    if not opts.values or x:numel() ~= 1 then return "" end
    local text = string.format("\n= %.6g", x:reshape({}):item())
    local grad = x.grad
    if grad ~= nil then text = text .. string.format(", grad %.6g", grad:reshape({}):item()) end
    return text
  end
  local lines = {"digraph autograd {",
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, fillcolor="#e8e8e8"];',
    '  edge [fontname="Helvetica", fontsize=9];',
    string.format('  out [label=%s, fillcolor="#b8e186"];',
      quote(root_name .. "\n" .. shape_text(t:shape()) .. value_text(t)))}
  for _, l in ipairs(g.leaves) do
    local label = (l.name and (l.name .. "\n") or "") .. shape_text(l.shape) .. value_text(l.tensor)
    lines[#lines + 1] = string.format('  %s [label=%s, fillcolor="#9ecae1"];', l.id, quote(label))
    l.tensor = nil
  end
  for _, n in ipairs(g.nodes) do lines[#lines + 1] = string.format("  %s [label=%s];", n.id, quote(n.name)) end
  for _, e in ipairs(g.edges) do
    local label = shape_text(e.shape) .. (e.output and (" #" .. e.output) or "")
    lines[#lines + 1] = string.format("  %s -> %s [label=%s];", e.from, e.to, quote(label))
  end
  lines[#lines + 1] = "}"
  local text = table.concat(lines, "\n") .. "\n"
  if opts.path then
    if fmt == "dot" or fmt == "gv" then
      local f, err = io.open(opts.path, "w")
      if not f then error("graph: cannot write " .. tostring(err), 2) end
      f:write(text)
      f:close()
    else
      render(text, opts.path, fmt)
    end
  end
  return text, g
end

return autograd
