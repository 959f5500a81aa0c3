-- cnn.help and cnn.repl: every function reachable from `cnn` has a help entry (found by value, so
-- nothing public is left undocumented); the text of help for functions, modules, classes,
-- tensors, nn modules and searches; unknown values answered without error. Then the REPL's
-- completion candidates (names, dotted paths, methods, without running any __index function)
-- and time / timeit (their results and reports, never their durations).
local cnn = require "cnn"
local nn = cnn.nn
local help = require "cnn.help"
local repl = require "cnn.repl"

-- Runs fn with io.stdout replaced; returns what was written and fn's results.
local function captured(fn, ...)
  local real, out = io.stdout, {}
  io.stdout = {write = function(self, ...)
    for i = 1, select("#", ...) do out[#out + 1] = tostring(select(i, ...)) end
    return self
  end}
  local res = table.pack(pcall(fn, ...))
  io.stdout = real
  if not res[1] then error(res[2], 0) end
  return table.concat(out), table.unpack(res, 2, res.n)
end

local function has(text, ...)
  for _, s in ipairs{...} do
    assert(text:find(s, 1, true), string.format("%q not found in:\n%s", s, text))
  end
end

local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- The public functions reachable from cnn: {path, function} for every key not starting with "_",
-- through every table (cnn.F, cnn.nn, the classes and their parents, ...), each table once.
local function public_functions()
  local out, seen = {}, {}
  local function walk(t, path)
    if seen[t] then return end
    seen[t] = true
    for k, v in pairs(t) do
      if type(k) == "string" and k:sub(1, 1) ~= "_" then
        if type(v) == "function" then
          out[#out + 1] = {path .. "." .. k, v}
        elseif type(v) == "table" then
          walk(v, path .. "." .. k)
        end
      end
    end
  end
  walk(cnn, "cnn")
  table.sort(out, function(a, b) return a[1] < b[1] end)
  return out
end

describe("help entries", function()
  setup(function()
    -- as cnn/init.lua will have it; and the models that load on first use, loaded
    cnn.help = cnn.help or help
    for _, name in ipairs(help.names()) do
      local m = name:match("^cnn%.models%.([%w_]+)$")
      if m then pcall(function() return cnn.models[m] end) end
    end
  end)

  it("document every function reachable from cnn", function()
    local fns = public_functions()
    assert.is_true(#fns > 250, "the walk found only " .. #fns .. " functions")
    local missing = {}
    for _, p in ipairs(fns) do
      if help.lookup(p[2]) == nil then missing[#missing + 1] = p[1] end
    end
    assert(#missing == 0, "functions without a help entry:\n  " .. table.concat(missing, "\n  "))
  end)

  it("find a function under its own name, and an override under its parent's method", function()
    assert.are.equal("cnn.zeros", (help.lookup(cnn.zeros)))
    assert.are.equal("cnn.F.conv2d", (help.lookup(cnn.F.conv2d)))
    assert.are.equal("cnn.Tensor.reshape", (help.lookup(cnn.ones(1).reshape)))
    assert.are.equal("cnn.nn.Module.named_parameters", (help.lookup(nn.Conv2d.named_parameters)))
    -- Conv2d defines its own forward: documented by Module.forward
    assert.are_not.equal(nn.Module.forward, nn.Conv2d.forward)
    assert.are.equal("cnn.nn.Module.forward", (help.lookup(nn.Conv2d.forward)))
    assert.are.equal("cnn.optim.SGD", (help.lookup(cnn.optim.SGD)))
    assert.is_nil(help.lookup(function() end))
  end)

  it("name only functions that exist, where their module is built", function()
    -- API.md declares these; the names may come before the code
    local planned = set{"cnn.models.alexnet", "cnn.models.alexnet_cifar", "cnn.models.resnet",
                        "cnn.models.resnet_cifar"}
    local function resolve(path)
      local v = _G
      for part in path:gmatch("[^.]+") do
        if type(v) ~= "table" then return nil end
        local ok, r = pcall(function() return v[part] end)
        if not ok then return nil end
        v = r
      end
      return v
    end
    local stale = {}
    for _, name in ipairs(help.names()) do
      local e = help.entry(name)
      local parent = name:match("^(.*)%.[^.]+$")
      local container = parent and name:match("^cnn%.") and resolve(parent)
      if e.kind == "function" and type(container) == "table" and not planned[name] and
         type(resolve(name)) ~= "function" then
        stale[#stale + 1] = name
      end
    end
    assert(#stale == 0, "entries naming no function:\n  " .. table.concat(stale, "\n  "))
  end)

  it("have a signature (a call form a line), a one-line summary and their place", function()
    for _, name in ipairs(help.names()) do
      local e = help.entry(name)
      for line in (e.sig .. "\n"):gmatch("(.-)\n") do assert(line ~= "", name .. ": bad signature") end
      assert(e.doc ~= "" and not e.doc:find("\n"), name .. ": bad summary")
      assert(e.text == nil or e.text ~= "", name .. ": empty details")
      assert(type(e.file) == "string" and math.type(e.line) == "integer", name .. ": no place")
    end
  end)
end)

describe("help(x)", function()
  it("prints a function's signature and description, and returns nothing", function()
    local out, n = captured(function() return select("#", help(cnn.zeros)) end)
    assert.are.equal(0, n)
    has(out, "cnn.zeros(size...|{size}, {dtype=\"float32\", requires_grad=false}) -> Tensor\n"
      .. "  A tensor of the given shape filled with 0.\n  The shape is given")
  end)

  it("lists a module's functions with one-liners", function()
    local text = help.text(cnn.F)
    has(text, "cnn.F - Functional ops", "Functions:", "conv2d ", "2-d convolution", "max_pool2d ", "cross_entropy ")
    has(help.text(cnn), "zeros ", "Modules and classes:", "nn ", "optim ")
    has(help.text(nn), "Conv2d ", "Sequential ", "init ")
  end)

  it("lists a tensor's fields and methods", function()
    local text = help.text(cnn.ones(2, 3))
    has(text, "Tensor {2, 3} float32", ".requires_grad", ".grad ", "reshape ", "requires_grad_ ", "backward ")
  end)

  it("gives an nn module's class, constructor and methods, its own and inherited", function()
    local text = help.text(nn.Linear(2, 3))
    has(text, "a Linear module with 9 parameters", "cnn.nn.Linear(in_features, out_features, {bias=true})",
        "derives from cnn.nn.Module", "Methods:", "forward ", "named_parameters ", "reset_parameters ")
    has(help.text(nn.Conv2d), "cnn.nn.Conv2d(in_channels, out_channels, kernel_size")
    local Block = nn.Module:extend("Block")
    function Block:init() self.fc = nn.Linear(1, 1) end
    function Block:forward(x) return self.fc(x) end
    has(help.text(Block()), "a Block module (a user class) with 2 parameters",
      "forward                   The module's computation")
  end)

  it("describes instances of optimisers and data classes by their class", function()
    local p = cnn.zeros(2):requires_grad_()
    has(help.text(cnn.optim.SGD({p}, {lr = 0.1})), "an instance of cnn.optim.SGD", "step ", "zero_grad ")
    local ds = cnn.data.TensorDataset(cnn.zeros(4, 2))
    has(help.text(ds), "an instance of cnn.data.TensorDataset", "get ")
    has(help.text(cnn.data.DataLoader(ds, {batch_size = 2})), "an instance of cnn.data.DataLoader", "iter ")
  end)

  it("searches by name: exact names in full, else the names containing the text", function()
    local text = help.text("conv2d")
    has(text, "cnn.F.conv2d(x, weight, bias, {stride=1", "cnn.nn.Conv2d(in_channels")
    has(help.text("F.relu"), "cnn.F.relu(x, inplace=false) -> Tensor")
    has(help.text("t:reshape"), "t:reshape(size...|{size}) -> Tensor")
    has(help.text("nn"), "cnn.nn - Layers, containers")
    has(help.text("pool"), "names match \"pool\"", "cnn.F.max_pool2d", "cnn.nn.AvgPool2d")
  end)

  it("gives an overview with no argument", function()
    has(help.text(), "cnn.F ", "cnn.nn ", "help(\"conv2d\")", "%time")
    has((captured(help)), "Modules:")
  end)

  it("says what an unknown value is, without an error", function()
    has(help.text(42), "42 is a number", "help()")
    has(help.text(nil), "got nil")
    has(help.text({}), "is a table, not a cnn function")
    has(help.text(coroutine.create(function() end)), "is a thread")
    has(help.text("no_such_thing_anywhere"), "nothing matches \"no_such_thing_anywhere\"")
    has(help.text(print), "print: a Lua standard library function")
    has(help.text(string.format), "string.format: a Lua standard library function")
    has(help.text(function(a, b) return a + b end), "a Lua function (a, b) defined at", "help_spec.lua")
    -- values whose metamethods raise or lie are still answered
    local hostile = setmetatable({}, {__index = function() error("boom") end, __metatable = "locked",
                                      __tostring = function() error("no tostring") end})
    local out = captured(help, hostile)
    assert.is_true(#out > 0)
    local ok = pcall(help.text, setmetatable({}, {__name = 42, __index = function() error("boom") end}))
    assert.is_true(ok)
  end)
end)

describe("cnn.repl.complete", function()
  local complete = repl.complete

  it("completes globals and keywords", function()
    assert.is_true(set(complete("cn"))["cnn"])
    assert.are.same({"function"}, complete("func", {}))
    assert.is_true(set(complete("loc", {}))["local"])
    assert.are.same({"alpha", "alphabet"}, complete("alp", {alpha = 1, alphabet = 2, beta = 3}))
  end)

  it("completes table fields through dotted paths", function()
    assert.are.same({"cnn.F.conv2d"}, complete("cnn.F.con"))
    assert.is_true(set(complete("cnn.nn.Seq"))["cnn.nn.Sequential"])
    local env = {tbl = {alpha = {beta_gamma = 1, beta_delta = 2}}}
    assert.are.same({"tbl.alpha.beta_delta", "tbl.alpha.beta_gamma"}, complete("tbl.alpha.bet", env))
  end)

  it("completes tensor methods after ':' and fields after '.'", function()
    local env = {x = cnn.ones(2)}
    assert.are.same({"x:reshape"}, complete("x:res", env))
    local re = set(complete("x:re", env))
    assert.is_true(re["x:reshape"] and re["x:requires_grad_"] and re["x:relu"])
    local dot = set(complete("x.", env))
    assert.is_true(dot["x.requires_grad"] and dot["x.grad"] and dot["x.grad_fn"] and dot["x.is_leaf"] and dot["x.sum"])
    assert.is_nil(set(complete("x:", env))["x:grad"])
    env.y = cnn.ones(2):requires_grad_()
    env.y:sum():backward()
    assert.is_true(set(complete("y.grad:", env))["y.grad:sum"])
  end)

  it("completes nn modules' fields, parameters, children and inherited methods", function()
    local Block = nn.Module:extend("Block")
    function Block:init() self.fc = nn.Linear(2, 3); self.scale = 2 end
    local env = {m = Block()}
    local na = set(complete("m:na", env))
    assert.is_true(na["m:named_parameters"] and na["m:named_children"] and na["m:named_modules"])
    local dot = set(complete("m.", env))
    assert.is_true(dot["m.fc"] and dot["m.scale"] and dot["m.training"] and dot["m.forward"])
    assert.are.same({"m.fc.weight"}, complete("m.fc.we", env))
    assert.are.same({"m.fc:forward"}, complete("m.fc:forw", env))
    assert.is_true(set(complete("cnn.nn.Conv2d:named_p"))["cnn.nn.Conv2d:named_parameters"])
  end)

  it("completes the methods of optimisers, datasets and strings", function()
    local env = {opt = cnn.optim.SGD({cnn.zeros(1):requires_grad_()}, {lr = 1}), s = "abc",
                 ds = cnn.data.TensorDataset(cnn.zeros(3, 1))}
    assert.are.same({"opt:zero_grad"}, complete("opt:zero", env))
    assert.is_true(set(complete("opt:st", env))["opt:step"])
    assert.are.same({"s:upper"}, complete("s:up", env))
    assert.are.same({"ds:get"}, complete("ds:g", env))
  end)

  it("lists the models that load on first use", function()
    assert.is_true(set(complete("cnn.models.le"))["cnn.models.lenet5"])
  end)

  it("hides private names unless asked for them", function()
    for _, c in ipairs(complete("cnn.")) do assert.is_nil(c:match("^cnn%._"), c) end
    for _, c in ipairs(complete("cnn.nn.Module:")) do assert.is_nil(c:match(":_"), c) end
  end)

  it("never calls an __index function, and never fails", function()
    local calls = 0
    local lazy = setmetatable({}, {__index = function() calls = calls + 1; error("boom") end})
    local env = {lazy = lazy, n = 5, f = print}
    for _, w in ipairs{"lazy.", "lazy:", "lazy.a.b", "lazy.a:", "n.", "n:", "f.", "nope.", "nope:x"} do
      assert.are.same({}, complete(w, env))
    end
    assert.are.equal(0, calls)
    for _, w in ipairs{"", "1.5", "a..b", "x:y:z", ".x", "x.", "(", "cnn.F.", "a b"} do
      assert.are.equal("table", type(complete(w, {x = {}})))
    end
    assert.are.same({}, complete(nil))
    local loop = {}
    setmetatable(loop, {__index = loop})
    assert.are.equal("table", type(complete("loop.", {loop = loop})))
  end)
end)

describe("repl.show", function()
  local show = repl.show
  it("prints sequences inline and nested tables with their contents", function()
    assert.are.equal("{1, 2, {3, {4}}}", show{1, 2, {3, {4}}})
    assert.are.equal("{64, 1, 28, 28}", show(cnn.zeros(64, 1, 28, 28):size()))
    assert.are.equal("{}", show{})
    assert.are.equal('{1.5, 2.0, "a\\nb", true}', show{1.5, 2.0, "a\nb", true})
    assert.are.equal("plain", show("plain")) -- a string at the top as it is
    assert.are.equal("42", show(42))
    assert.are.equal("nil", show(nil))
  end)

  it("sorts keys: the sequence first, then numbers, then names; odd keys bracketed", function()
    assert.are.equal('{"x", "y", [1.5] = 1, [5] = 0, a = 2, b = 3, ["end"] = 4, ["two words"] = 5}',
      show{"x", "y", b = 3, a = 2, [5] = 0, [1.5] = 1, ["end"] = 4, ["two words"] = 5})
  end)

  it("goes to one entry a line when a table does not fit, indented by depth", function()
    local t = {name = string.rep("n", 60), sizes = {1, 2}, inner = {deep = string.rep("d", 60)}}
    assert.are.equal(table.concat({
      "{",
      '  inner = {deep = "' .. string.rep("d", 60) .. '"},',
      '  name = "' .. string.rep("n", 60) .. '",',
      "  sizes = {1, 2}",
      "}"}, "\n"), show(t))
  end)

  it("limits depth and length, and marks cycles", function()
    assert.are.equal("{{{{{... 1 item}}}}}", show{{{{{{1}}}}}})
    local long = {}
    for i = 1, 50 do long["k" .. string.format("%02d", i)] = i end
    local text = show(long)
    local tail = "  k40 = 40,\n  ... (10 more)\n}"
    assert.are.equal(tail, text:sub(-#tail), text)
    assert.falsy(text:find("k41", 1, true))
    local numbers = {}
    for i = 1, 150 do numbers[i] = i end
    text = show(numbers)
    assert.truthy(text:find("^{1, 2, 3, "), text)
    tail = " 100, ... (50 more)}"
    assert.are.equal(tail, text:sub(-#tail), text)
    local t = {name = "loop"}
    t.self = t
    t.list = {t}
    text = show(t)
    assert.truthy(text:match('^{list = {<cycle: 0x%x+>}, name = "loop", self = <cycle: 0x%x+>}$'), text)
    local shared = {1}
    assert.are.equal("{a = {1}, b = {1}}", show{a = shared, b = shared}) -- the same table twice is no cycle
  end)

  it("shows tensors, modules and objects with __tostring as tostring gives them", function()
    local x = cnn.ones(2, 2)
    assert.are.equal(tostring(x), show(x))
    local m = cnn.nn.Linear(2, 3)
    assert.are.equal(tostring(m), show(m))
    local obj = setmetatable({}, {__tostring = function() return "an object" end})
    assert.are.equal("{an object, n = 1}", show{obj, n = 1})
    local text = show{x = cnn.tensor(3)}
    assert.are.equal("{\n  x = " .. tostring(cnn.tensor(3)):gsub("\n", "\n  ") .. "\n}", text)
    -- a long text inside a table keeps its first lines and its last (the tensor's shape)
    text = show{cnn.zeros(30, 30)}
    assert.truthy(text:find("... (", 1, true), text)
    assert.truthy(text:find("[float32 tensor of shape {30, 30}]\n}", 1, true), text)
  end)

  it("never calls __index or __pairs", function()
    local t = setmetatable({a = 1}, {__index = function() error("no") end, __pairs = function() error("no") end})
    assert.are.equal("{a = 1}", show(t))
  end)
end)

describe("time and timeit", function()
  it("time runs a function once, prints the wall time and returns its results", function()
    local calls = 0
    local out, a, b = captured(repl.time, function(x, y) calls = calls + 1; return x + y, "two" end, 1, 2)
    assert.are.same({1, 3, "two"}, {calls, a, b})
    assert.is_truthy(out:match("^wall time: [%d.]+ %S*s\n$"), out)
  end)

  it("time compiles code as an expression, else as statements", function()
    local out, v = captured(repl.time, "6 * 7")
    assert.are.equal(42, v)
    has(out, "wall time: ")
    captured(repl.time, "help_spec_global = 5")
    assert.are.equal(5, _G.help_spec_global)
    _G.help_spec_global = nil
  end)

  it("timeit runs n times and returns a timing that prints as one readable line", function()
    local calls = 0
    local out, t = captured(repl.timeit, function() calls = calls + 1 end, 5)
    assert.are.equal(5, calls)
    assert.are.equal("", out) -- the REPL echo (or print) shows it
    assert.are.equal(5, t.runs)
    assert.are.equal(5, #t.times)
    assert.is_true(t.max >= t.median and t.median >= t.min and t.min >= 0)
    assert.are.equal(t.times[3], t.median) -- the middle of 5 sorted times
    assert.is_truthy(tostring(t):match("^5 runs: median [%d.]+ %S*s, min [%d.]+ %S*s, max [%d.]+ %S*s$"), tostring(t))
    assert.are.equal(tostring(t), repl.show(t))
  end)

  it("timeit without n runs a warm-up and then at least 3 times", function()
    local calls = 0
    captured(repl.timeit, function() calls = calls + 1 end)
    assert.is_true(calls >= 4)
  end)

  it("reject what they cannot run, naming themselves", function()
    local ok, err = pcall(repl.time, 42)
    assert.is_false(ok)
    has(err, "time: expected a function or a string of code, got number")
    ok, err = pcall(repl.time, "1 +")
    assert.is_false(ok)
    has(err, "time:")
    ok, err = pcall(repl.timeit, function() end, 0)
    assert.is_false(ok)
    has(err, "timeit: n must be a positive integer")
    local out
    out, ok, err = captured(pcall, repl.time, function() error("inner failure") end)
    assert.is_false(ok)
    has(tostring(err), "inner failure")
    assert.are.equal("", out)
  end)
end)
