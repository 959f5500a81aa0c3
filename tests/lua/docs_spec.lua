-- The doc comment at each definition (docs/CONTRIBUTING.md, "Writing docs") is the one description
-- of a public function: help(), the REPL and docs/API.md read what scripts/tools/gen_docs.lua
-- collects from them at build time. This spec fails when a public name has no description
-- (enumerated from the loaded modules, so new functions are caught), when a Lua function's
-- description is not at its definition, or when a name of the original API contract is missing.
local cnn = require "cnn"
local help = require "cnn.help"

local HOW = "\n(write a doc comment at the definition: docs/CONTRIBUTING.md, \"Writing docs\")"

-- Every field of these tables is public and described.
local NAMESPACES = {"cnn", "cnn.F", "cnn.nn", "cnn.optim", "cnn.data", "cnn.image", "cnn.models", "cnn.hpsearch",
                    "cnn.distributed", "cnn.autograd", "cnn.checkpoint", "cnn.trainer", "cnn.plot", "cnn.nn.init",
                    "cnn.data.transforms", "cnn.help", "cnn.repl"}

local function resolve(path)
  local v = _G
  for part in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    v = v[part]
  end
  return v
end

local function missing_report(list) return "no description for:\n  " .. table.concat(list, "\n  ") .. HOW end

-- {path, value} for every function and table reachable from cnn under public names (through
-- classes and their parents: a parent reached through `super` is named by its class name, as
-- help names it), each table once.
local function reachable()
  local out, seen = {}, {}
  local function walk(t, path)
    if seen[t] then return end
    seen[t] = true
    local keys = {}
    for k in pairs(t) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = rawget(t, k)
      if v == nil then v = t[k] end
      local p = path .. "." .. k
      if k == "super" and type(v) == "table" and type(rawget(v, "__name")) == "string" then
        p = path:match("^(.*)%.[^.]+$") .. "." .. rawget(v, "__name")
      end
      if type(v) == "function" then
        out[#out + 1] = {p, v}
      elseif type(v) == "table" then
        out[#out + 1] = {p, v}
        walk(v, p)
      end
    end
  end
  walk(cnn, "cnn")
  return out
end

describe("doc comments", function()
  it("were collected by the build into the data help() reads", function()
    local path, err = help.source()
    assert(path, "help data not found: " .. tostring(err))
    assert.is_true(#help.names() > 300)
  end)

  it("describe every field of cnn and of its modules", function()
    local missing = {}
    for _, ns in ipairs(NAMESPACES) do
      local t = resolve(ns)
      assert(type(t) == "table", ns .. " is not a table")
      if help.entry(ns) == nil then missing[#missing + 1] = ns .. " (the module)" end
      for k, v in pairs(t) do -- pairs: cnn.models lists the models that load on first use
        if type(k) == "string" and k:sub(1, 1) ~= "_" then
          local name = ns .. "." .. k
          local ok = help.entry(name) ~= nil
          if not ok and (type(v) == "function" or type(v) == "table") then ok = help.lookup(v) ~= nil end
          if not ok then missing[#missing + 1] = name end
        end
      end
    end
    table.sort(missing)
    assert(#missing == 0, missing_report(missing))
  end)

  it("describe every tensor method and field", function()
    local missing = {}
    for k, v in pairs(cnn.Tensor) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" and type(v) == "function" and
         help.entry("cnn.Tensor." .. k) == nil then
        missing[#missing + 1] = "t:" .. k
      end
    end
    for _, k in ipairs{"requires_grad", "grad", "grad_fn", "is_leaf"} do
      if help.entry("cnn.Tensor." .. k) == nil then missing[#missing + 1] = "t." .. k end
    end
    table.sort(missing)
    assert(#missing == 0, missing_report(missing))
  end)

  it("describe every class and every function reachable from cnn", function()
    for name in pairs(cnn.models) do assert(cnn.models[name]) end -- load the models
    local missing = {}
    for _, p in ipairs(reachable()) do
      local v = p[2]
      local is_class = type(v) == "table" and (rawget(v, "__index") ~= nil or rawget(v, "super") ~= nil or
                                               rawget(v, "__name") ~= nil)
      if (type(v) == "function" or is_class) and help.lookup(v) == nil then missing[#missing + 1] = p[1] end
    end
    table.sort(missing)
    assert(#missing == 0, missing_report(missing))
  end)

  it("sit at the definitions of the Lua functions they describe", function()
    local lines_of = {}
    local function source_line(file, n)
      if not lines_of[file] then
        local l, f = {}, io.open(file, "r")
        if f then
          for s in f:lines() do l[#l + 1] = s end
          f:close()
        end
        lines_of[file] = l
      end
      return lines_of[file][n]
    end
    local wrong, checked = {}, 0
    for _, p in ipairs(reachable()) do
      local path, f = p[1], p[2]
      local e = help.entry(path)
      local info = type(f) == "function" and debug.getinfo(f, "S")
      if e and e.kind == "function" and info and info.what == "Lua" and e.file:match("%.lua$") then
        checked = checked + 1
        local src = info.source:gsub("^@", "")
        local last = path:match("([%w_]+)$")
        local here = src:sub(-#e.file) == e.file
        -- a function made by a factory is documented where it is assigned (plot.lines = public(...))
        local assigned = (source_line(src, e.line) or ""):match("[.:]" .. last .. "%s*=") ~= nil
        if not (here and (info.linedefined == e.line or assigned)) then
          wrong[#wrong + 1] = string.format("%s: described at %s:%d, defined at %s:%d", path, e.file, e.line,
            info.short_src, info.linedefined)
        end
      end
    end
    assert.is_true(checked > 100, "only " .. checked .. " Lua functions checked")
    assert(#wrong == 0, "descriptions away from their definitions:\n  " .. table.concat(wrong, "\n  "))
  end)

  it("describe every name of the original API contract", function()
    -- /work/shared/API.md, the contract: its names may never go
    local names = {
      "cnn.tensor", "cnn.zeros", "cnn.ones", "cnn.full", "cnn.empty", "cnn.arange", "cnn.linspace", "cnn.eye",
      "cnn.rand", "cnn.randn", "cnn.randint", "cnn.zeros_like", "cnn.ones_like", "cnn.cat", "cnn.stack",
      "cnn.matmul", "cnn.allclose", "cnn.manual_seed", "cnn.set_num_threads", "cnn.get_num_threads",
      "cnn.no_grad", "cnn.is_grad_enabled", "cnn.save", "cnn.load", "cnn.autograd.gradcheck",
      "cnn.autograd.Function",
      "cnn.F.conv2d", "cnn.F.max_pool2d", "cnn.F.avg_pool2d", "cnn.F.adaptive_avg_pool2d", "cnn.F.linear",
      "cnn.F.flatten", "cnn.F.dropout", "cnn.F.relu", "cnn.F.leaky_relu", "cnn.F.sigmoid", "cnn.F.tanh",
      "cnn.F.softmax", "cnn.F.log_softmax", "cnn.F.batch_norm", "cnn.F.local_response_norm",
      "cnn.F.cross_entropy", "cnn.F.nll_loss", "cnn.F.mse_loss",
      "cnn.nn.Conv2d", "cnn.nn.Linear", "cnn.nn.MaxPool2d", "cnn.nn.AvgPool2d", "cnn.nn.AdaptiveAvgPool2d",
      "cnn.nn.ReLU", "cnn.nn.LeakyReLU", "cnn.nn.Sigmoid", "cnn.nn.Tanh", "cnn.nn.Softmax", "cnn.nn.LogSoftmax",
      "cnn.nn.Dropout", "cnn.nn.BatchNorm1d", "cnn.nn.BatchNorm2d", "cnn.nn.LocalResponseNorm",
      "cnn.nn.Flatten", "cnn.nn.Identity", "cnn.nn.Sequential", "cnn.nn.CrossEntropyLoss", "cnn.nn.MSELoss",
      "cnn.nn.Module", "cnn.nn.Module.extend", "cnn.nn.Module.init", "cnn.nn.Module.forward",
      "cnn.nn.Module.parameters", "cnn.nn.Module.named_parameters", "cnn.nn.Module.buffers",
      "cnn.nn.Module.children", "cnn.nn.Module.train", "cnn.nn.Module.eval", "cnn.nn.Module.training",
      "cnn.nn.Module.zero_grad", "cnn.nn.Module.state_dict", "cnn.nn.Module.load_state_dict",
      "cnn.nn.Module.num_parameters",
      "cnn.optim.SGD", "cnn.optim.Adam", "cnn.optim.AdamW", "cnn.optim.Optimizer.zero_grad",
      "cnn.optim.SGD.step", "cnn.optim.Adam.step", "cnn.optim.Optimizer.lr", "cnn.optim.Optimizer.state_dict",
      "cnn.optim.Optimizer.load_state_dict", "cnn.optim.StepLR", "cnn.optim.CosineAnnealingLR",
      "cnn.optim.ReduceLROnPlateau", "cnn.optim.ReduceLROnPlateau.step", "cnn.optim.LRScheduler.step",
      "cnn.data.idx_load", "cnn.data.mnist", "cnn.data.fashion_mnist", "cnn.data.TensorDataset",
      "cnn.data.ImageFolder", "cnn.data.DataLoader", "cnn.data.DataLoader.iter", "cnn.data.transforms.normalize",
      "cnn.data.transforms.random_crop", "cnn.data.transforms.random_hflip", "cnn.data.transforms.compose",
      "cnn.image.load", "cnn.image.save", "cnn.image.grid",
      "cnn.models.lenet5", "cnn.models.alexnet", "cnn.models.alexnet_cifar", "cnn.models.resnet",
      "cnn.models.resnet_cifar",
      "cnn.hpsearch.choice", "cnn.hpsearch.uniform", "cnn.hpsearch.loguniform", "cnn.hpsearch.randint",
      "cnn.hpsearch.search", "cnn.hpsearch.Result.table", "cnn.hpsearch.Result.plot",
      "cnn.help.show", "cnn.repl.complete",
      "cnn.distributed.init", "cnn.distributed.rank", "cnn.distributed.world_size",
      "cnn.distributed.is_initialized", "cnn.distributed.barrier", "cnn.distributed.all_reduce",
      "cnn.distributed.broadcast", "cnn.distributed.all_gather", "cnn.distributed.DataParallel",
    }
    for _, m in ipairs{"shape", "size", "dim", "numel", "dtype", "item", "totable", "is_contiguous", "select",
                       "narrow", "view", "reshape", "transpose", "t", "permute", "unsqueeze", "squeeze", "flatten",
                       "expand", "contiguous", "clone", "index_select", "add", "sub", "mul", "div", "pow", "exp",
                       "log", "sqrt", "abs", "neg", "clamp", "relu", "sigmoid", "tanh", "eq", "ne", "lt", "le", "gt",
                       "ge", "add_", "mul_", "fill_", "zero_", "copy_", "uniform_", "normal_", "clamp_", "sum",
                       "mean", "var", "std", "max", "min", "argmax", "argmin", "matmul", "mm", "float", "long",
                       "requires_grad_", "requires_grad", "grad", "grad_fn", "is_leaf", "detach", "backward"} do
      names[#names + 1] = "cnn.Tensor." .. m
    end
    local missing = {}
    for _, n in ipairs(names) do
      if help.entry(n) == nil then missing[#missing + 1] = n end
    end
    assert(#missing == 0, missing_report(missing))
  end)

  it("give help(x) a signature and a description for every function, class and tensor method", function()
    local bad = {}
    local function check(name, v)
      local e = help.entry(name)
      local ok, text = pcall(help.text, v)
      -- an alias (Sequential.add and .append) may show its twin's signature, with the same description
      if not (ok and text:find(e.doc, 1, true) and text:match("^[^\n]*[({]") or e.kind ~= "function" and ok and
              text:find(e.doc, 1, true)) then
        bad[#bad + 1] = name .. ":\n" .. tostring(text)
      end
    end
    for _, p in ipairs(reachable()) do
      local e = help.entry(p[1])
      if e and (e.kind == "function" or e.kind == "class") then check(p[1], p[2]) end
    end
    for k, v in pairs(cnn.Tensor) do
      if type(v) == "function" and k:sub(1, 1) ~= "_" then check("cnn.Tensor." .. k, v) end
    end
    assert(#bad == 0, "help(x) without its description:\n" .. table.concat(bad, "\n"))
  end)
end)
