-- cnn.nn state_dict and load_state_dict: names and order, storage sharing, buffers (BatchNorm's
-- int64 num_batches_tracked included), round trips between differently initialised modules,
-- strict errors (missing, unexpected and shape mismatches in one message, nothing copied),
-- non-strict loading.
local cnn = require "cnn"
local nn = require "cnn.nn"
local H = dofile("tests/lua/helpers.lua")

local function net()
  return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
end

local NAMES = {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
  "1.num_batches_tracked", "3.weight", "3.bias"}

local function same(a, b) return cnn.allclose(a:float(), b:float(), 0, 0) end

describe("state_dict", function()
  it("holds parameters and persistent buffers under PyTorch's names, in module order", function()
    local m = net()
    local sd = m:state_dict()
    assert.are.same(NAMES, m:state_dict_keys())
    assert.are.equal(1, select("#", m:state_dict())) -- b:load_state_dict(a:state_dict()) gets no stray options
    local n = 0
    for _ in next, sd do n = n + 1 end
    assert.are.equal(#NAMES, n)
    -- pairs() follows the module order
    local order = {}
    for k in pairs(sd) do order[#order + 1] = k end
    assert.are.same(NAMES, order)
    assert.are.same({4, 3}, sd["0.weight"]:shape())
    assert.are.same({2}, sd["3.bias"]:shape())
  end)

  it("includes num_batches_tracked as an int64 0-d tensor and leaves non-persistent buffers out", function()
    local m = net()
    local sd = m:state_dict()
    local nbt = sd["1.num_batches_tracked"]
    assert.are.equal("int64", nbt:dtype())
    assert.are.same({}, nbt:shape())
    assert.are.equal(0, nbt:item())
    local b = nn.Module()
    b:register_buffer("kept", cnn.ones(2))
    b:register_buffer("scratch", cnn.ones(3), false)
    assert.are.same({"kept"}, b:state_dict_keys())
    assert.are.equal(2, #b:buffers())
  end)

  it("holds detached tensors that share storage with the module", function()
    local m = net()
    local sd = m:state_dict()
    local w = sd["0.weight"]
    assert.is_false(w.requires_grad)
    assert.is_true(w.is_leaf)
    w:fill_(0.5) -- writes through to the parameter, as in PyTorch
    assert.are.equal(0.5 * 12, m[1].weight:sum():item())
    sd["1.running_var"]:fill_(3)
    assert.are.equal(12, m[2].running_var:sum():item())
    -- keep_vars keeps the parameters themselves
    local sv = m:state_dict{keep_vars = true}
    assert.are.equal(m[1].weight, sv["0.weight"])
    assert.is_true(sv["0.weight"].requires_grad)
  end)

  it("adds keys added later after the module's in pairs()", function()
    local sd = nn.Linear(1, 1):state_dict()
    sd.extra = cnn.zeros(1)
    sd.weight = nil
    local order = {}
    for k in pairs(sd) do order[#order + 1] = k end
    assert.are.same({"bias", "extra"}, order)
  end)
end)

describe("load_state_dict", function()
  it("round trip: a differently initialised module becomes an exact copy", function()
    cnn.manual_seed(1)
    local a = net()
    cnn.no_grad(function()
      a[2].running_mean:copy_(cnn.tensor({0.1, 0.2, 0.3, 0.4}))
      a[2].running_var:copy_(cnn.tensor({1.5, 2.5, 3.5, 4.5}))
      a[2].num_batches_tracked:fill_(7)
      a[2].weight:copy_(cnn.tensor({1, 2, 3, 4}))
    end)
    cnn.manual_seed(2)
    local b = net()
    assert.is_false(same(a[1].weight, b[1].weight))
    local missing, unexpected = b:load_state_dict(a:state_dict())
    assert.are.same({}, missing)
    assert.are.same({}, unexpected)
    local sa, sb = a:state_dict(), b:state_dict()
    for _, k in ipairs(NAMES) do
      assert(same(sa[k], sb[k]), k .. " differs after loading")
      assert.are.equal(sa[k]:dtype(), sb[k]:dtype())
    end
    assert.are.equal(7, b[2].num_batches_tracked:item())
    assert.are.equal("int64", b[2].num_batches_tracked:dtype())
    -- copies, not aliases: changing a leaves b alone
    cnn.no_grad(function() a[1].weight:fill_(9) end)
    assert.is_false(same(a[1].weight, b[1].weight))
    -- the parameters stay trainable leaves
    for _, p in ipairs(b:parameters()) do
      assert.is_true(p.is_leaf)
      assert.is_true(p.requires_grad)
      assert.is_nil(p.grad_fn)
    end
  end)

  it("a state_dict without num_batches_tracked (PyTorch before 0.4.1) loads strictly, the count at 0", function()
    local a, b = net(), net()
    cnn.no_grad(function() b[2].num_batches_tracked:fill_(5) end)
    local sd = a:state_dict()
    cnn.no_grad(function() sd["1.running_mean"]:fill_(0.25) end)
    sd["1.num_batches_tracked"] = nil -- PyTorch 1.13's BatchNorm loads such a dict with strict=True
    local missing, unexpected = b:load_state_dict(sd)
    assert.are.same({}, missing)
    assert.are.same({}, unexpected)
    assert.are.equal(0, b[2].num_batches_tracked:item())
    H.assert_tensor(b[2].running_mean, {0.25, 0.25, 0.25, 0.25})
    -- the other buffers are still required; false as PyTorch's positional strict
    sd["1.running_var"] = nil
    H.assert_error(function() b:load_state_dict(sd) end, "missing key", "1.running_var")
    local not_strict = b:load_state_dict(sd, false)
    assert.are.same({"1.running_var"}, not_strict)
  end)

  it("names the mistake of passing cnn.load's metadata as the options", function()
    -- m:load_state_dict(cnn.load(path)) passes both of load's results: the metadata {format = "pt"}
    -- of a file from huggingface's writer was "unknown option 'format'"
    local m = nn.Linear(2, 2)
    local path = H.tmpdir() .. "/w.safetensors"
    cnn.save(path, m:state_dict(), {metadata = {format = "pt"}})
    H.assert_error(function() m:load_state_dict(cnn.load(path)) end,
      "load_state_dict: the options are a table of strings", "m:load_state_dict%(%(cnn.load%(path%)%)%)")
    assert.are.same({}, (m:load_state_dict((cnn.load(path)))))
    os.remove(path)
  end)

  it("round trip: the loaded module computes what the original computes", function()
    cnn.manual_seed(3)
    local a = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    local b = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    b:load_state_dict(a:state_dict())
    local x = cnn.randn(6, 5)
    assert.is_true(cnn.allclose(a(x), b(x), 0, 0))
    -- and gradients still reach the loaded parameters
    b(x):sum():backward()
    assert.are.same({4, 5}, b[1].weight.grad:shape())
  end)

  it("strict: missing, unexpected and shape mismatches are all reported in one message, nothing is copied", function()
    local m = net()
    local before = m[1].weight:clone()
    local sd = m:state_dict()
    sd["0.bias"] = nil                      -- missing
    sd["1.running_mean"] = nil              -- missing (a buffer)
    sd["extra.weight"] = cnn.zeros(1)       -- unexpected
    sd["0.weight"] = cnn.zeros(4, 5)        -- shape mismatch
    sd["3.bias"] = cnn.zeros(3)             -- shape mismatch
    sd["3.weight"] = cnn.zeros(2, 4)        -- fine, but nothing may be copied
    local msg = H.assert_error(function() m:load_state_dict(sd) end,
      "load_state_dict", "Sequential",
      'missing key%(s%) 2: "0%.bias", "1%.running_mean"',
      'unexpected key%(s%) 1: "extra%.weight"',
      "size mismatch for 0%.weight: the state_dict has shape {4, 5}, the module {4, 3}",
      "size mismatch for 3%.bias: the state_dict has shape {3}, the module {2}")
    assert.is_nil(msg:find("3.weight:", 1, true))
    assert.is_true(same(before, m[1].weight))
    assert.is_false(same(m[4].weight, cnn.zeros(2, 4)))
    H.assert_usable()
  end)

  it("another network's state_dict: the first ten keys of each list, how many more, and the likely cause", function()
    -- the real-use helper's find: a ResNet-20 checkpoint into LeNet-5 printed 116 keys on one line
    local lenet = cnn.models.lenet5()
    local msg = H.assert_error(function() lenet:load_state_dict(cnn.models.resnet_cifar {depth = 20}:state_dict()) end,
      "load_state_dict", "no key of the state_dict is one of this LeNet5's: is it another network's%?",
      "missing key%(s%) 10: ", 'unexpected key%(s%) %d+: "bn1%.bias", .* and %d+ more')
    assert.is_true(#msg < 1200, #msg)
    -- long keys are cut and every key escaped (a 5000-character key was shown whole, a newline raw)
    local sd = {["a\nb"] = cnn.zeros(1)}
    for i = 1, 12 do sd[string.rep("k", 5000) .. i] = cnn.zeros(1) end
    msg = H.assert_error(function() nn.Linear(2, 2):load_state_dict(sd) end, "load_state_dict", '"a\\nb"',
      'unexpected key%(s%) 13: ', '%.%.%."')
    assert.is_true(#msg < 1500, #msg)
  end)

  it("non-strict: loads what matches and returns the missing and unexpected keys", function()
    local m = net()
    local sd = {["0.weight"] = cnn.ones(4, 3), ["1.num_batches_tracked"] = cnn.tensor(5, {dtype = "int64"}),
      ["zzz"] = cnn.zeros(1), ["aaa"] = cnn.zeros(1)}
    local missing, unexpected = m:load_state_dict(sd, {strict = false})
    assert.are.same({"0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "3.weight", "3.bias"}, missing)
    assert.are.same({"aaa", "zzz"}, unexpected)
    assert.are.equal(12, m[1].weight:sum():item())
    assert.are.equal(5, m[2].num_batches_tracked:item())
  end)

  it("non-strict still refuses shape mismatches and values that are not tensors", function()
    local m = net()
    H.assert_error(function() m:load_state_dict({["0.weight"] = cnn.ones(3, 4)}, {strict = false}) end,
      "load_state_dict", "size mismatch for 0%.weight")
    H.assert_error(function() m:load_state_dict({["0.weight"] = 1}, {strict = false}) end,
      "load_state_dict", "value for 0%.weight is a number, not a tensor")
    H.assert_error(function() m:load_state_dict({}, {strict = "yes"}) end, "load_state_dict",
      "strict must be a boolean")
    H.assert_error(function() m:load_state_dict({}, {strick = false}) end, "load_state_dict: unknown option 'strick'")
    H.assert_error(function() m:load_state_dict(nil) end, "load_state_dict", "expected a table of named tensors")
    H.assert_usable()
  end)

  it("a float value loads into the int64 buffer and an int64 one into a float parameter", function()
    local bn = nn.BatchNorm1d(2)
    bn:load_state_dict({weight = cnn.tensor({2, 3}, {dtype = "int64"}), bias = cnn.zeros(2),
      running_mean = cnn.zeros(2), running_var = cnn.ones(2), num_batches_tracked = cnn.tensor(4.0)})
    assert.are.equal("int64", bn.num_batches_tracked:dtype())
    assert.are.equal(4, bn.num_batches_tracked:item())
    assert.are.equal("float32", bn.weight:dtype())
    H.assert_tensor(bn.weight, {2, 3})
  end)

  it("loading a module's own state_dict back is a no-op", function()
    local m = net()
    local w = m[1].weight:clone()
    m:load_state_dict(m:state_dict())
    assert.is_true(same(w, m[1].weight))
  end)

  it("a nested user module round-trips by dotted names", function()
    local Block = nn.Module:extend("Block")
    function Block:init()
      self.body = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
      self.skip = nn.Linear(2, 2, {bias = false})
      self:register_buffer("step", cnn.zeros({}, {dtype = "int64"}))
    end
    local Net = nn.Module:extend("Net")
    function Net:init()
      self.blocks = nn.ModuleList{Block(), Block()}
      self.out = nn.Linear(2, 1)
    end
    local a, b = Net(), Net()
    local keys = a:state_dict_keys()
    assert.are.equal("blocks.0.step", keys[1])
    assert.are.equal("blocks.0.body.0.weight", keys[2])
    assert.are.equal("blocks.1.skip.weight", keys[#keys - 2])
    assert.are.same({"out.weight", "out.bias"}, {keys[#keys - 1], keys[#keys]})
    assert.are.equal(2 * (1 + 2 + 5 + 1) + 2, #keys) -- step, body.0, body.1 (2 params, 3 buffers), skip
    cnn.no_grad(function() a.blocks[2].skip.weight:fill_(0.25) end)
    b:load_state_dict(a:state_dict())
    assert.are.equal(1, b.blocks[2].skip.weight:sum():item())
  end)
end)
