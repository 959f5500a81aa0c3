-- Issue 14, "Errors that do not help": a failing module names itself by its path in the model
-- and its class, at the line that called the model; sizes and misuses are explained in the user's
-- terms. (The messages of the ops themselves are checked in errors_spec.lua.)
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local nn = cnn.nn
local err = H.assert_error
local THIS = "helpful_errors_spec.lua:%d+: "

describe("a module's forward error", function()
  it("names the layer by its path and class, at the caller's line", function()
    local lenet = cnn.models.lenet5{}
    local msg = err(function()
      local y = lenet(cnn.randn(2, 3, 28, 28)) -- this line, not nn/layers.lua
      return y
    end, "features.0 %(conv2d%): conv2d: input has 3 channels but weight expects 1")
    assert.truthy(msg:match("^[^\n]*" .. THIS .. "features%.0 %(Conv2d%)"), msg)
    assert.falsy(msg:find("layers.lua", 1, true), msg)
    H.assert_usable()
  end)

  it("nests through containers and user modules; a custom forward keeps its own line", function()
    local Block = nn.Module:extend("Block")
    function Block:init() self.inner = nn.Sequential(nn.ReLU(), nn.Linear(2, 2)) end
    function Block:forward(x)
      if x:dim() == 1 then error("Block wants a batch") end -- the position kept: user code
      return self.inner(x)
    end
    local model = nn.Sequential(Block(), Block())
    local msg = err(function() local y = model(cnn.randn(4, 3)); return y end,
      "0%.inner%.1 %(linear%): linear: input has 3 features but weight expects 2")
    assert.truthy(msg:match(THIS .. "0%.inner%.1 %(Linear%)"), msg)
    msg = err(function() local y = model(cnn.randn(3)); return y end, "0 %(block%): ", "Block wants a batch")
    assert.truthy(msg:match(THIS .. "0 %(Block%): "), msg)
    -- a module called on its own is named by its class
    err(function() return nn.Linear(3, 2)(cnn.randn(2, 4)) end, "^[^\n]*Linear: linear: input has 4 features")
    H.assert_usable()
  end)

  it("a non-string error passes through a module untouched", function()
    local signal = setmetatable({}, {__name = "signal"})
    local M = nn.Module:extend("Signals")
    function M:forward() error(signal) end
    local ok, e = pcall(function() return nn.Sequential(M())(cnn.ones(1)) end)
    assert.is_false(ok)
    assert.are.equal(signal, e)
  end)
end)

describe("errors in the user's terms", function()
  it("a layer's own check is not prefixed with its class twice; argsort names itself", function()
    local msg = err(function() return nn.BatchNorm2d(3)(cnn.randn(2, 3)) end, "BatchNorm2d: expected 4%-d")
    assert.falsy(msg:find("BatchNorm2d: BatchNorm2d", 1, true), msg)
    msg = err(function() return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm2d(2))(cnn.randn(3, 2)) end,
      "1 %(BatchNorm2d%): expected 4%-d")
    assert.falsy(msg:find("BatchNorm2d%): BatchNorm2d"), msg)
    err(function() return cnn.randn(3):argsort(5) end, "argsort: dimension 5 out of range")
    -- logsumexp of bool and int64 tensors is a float, as PyTorch's
    assert.is_true(math.abs(cnn.tensor {true, false}:logsumexp(1):item() - math.log(math.exp(1) + 1)) < 1e-6)
    assert.are.equal("float32", cnn.tensor({1, 2, 3}, {dtype = "int64"}):logsumexp(1):dtype())
    H.assert_usable()
  end)

  it("a module method called with a dot (m.train() for m:train()) names the slip", function()
    local m = nn.Linear(2, 2)
    err(function() m.train(5) end, THIS .. "train: expected a module as self %(call it as m:train%(...%)%), got number")
    err(function() m.eval({}) end, "eval: expected a module as self")
    err(function() return m.parameters() end, "parameters: expected a module as self .*got nil")
    err(function() return m.state_dict({}) end, "state_dict: expected a module as self")
    err(function() return m.zero_grad(5) end, "zero_grad: expected a module as self")
    err(function() return nn.Linear:parameters() end, "parameters: expected a module as self .*got a class")
    err(function() return nn.dir(5) end, "dir: expected a module, got number")
    assert.are.equal(2, #m:parameters())
  end)

  it("name the function called, not a helper at a line of the library", function()
    -- each raised a message naming arange, unsqueeze, requires_grad_ or nothing at all
    local one = cnn.tensor({1}, {dtype = "int64"})
    err(function() local _ = cnn.F.one_hot(one, math.maxinteger) end, THIS .. "one_hot: a result of 1 x %d+ elements")
    err(function() return cnn.F.one_hot(cnn.ones(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1):long(), 2) end,
      "one_hot: labels have 16 dimensions")
    local m = nn.Linear(1, 1)
    err(function() m:register_parameter("w", cnn.ones(2):long()) end,
      "register_parameter: 'w' is int64; parameters are float32")
    err(function() cnn.trainer.evaluate(nil, {}) end, "trainer.evaluate: expected a model, got nil")
    err(function() cnn.trainer.evaluate(m, nil) end, "trainer.evaluate: expected a DataLoader, got nil")
    err(function() cnn.autograd.gradcheck(function(x) return x * 2 end, cnn.ones(2):requires_grad_(), {eps = 0}) end,
      "gradcheck: eps must be a positive finite number, got 0") -- was false, "finite differences give nan"
    assert.are.equal("nan", cnn.plot.format_number(-(0 / 0))) -- not "-nan"
    -- an epoch with no samples was reported as loss 0.0000 and accuracy 0.00%
    local empty = cnn.data.DataLoader(cnn.data.TensorDataset(cnn.zeros(0, 1, 28, 28), cnn.zeros(0):long()),
      {batch_size = 4})
    local dir = H.tmpdir()
    local lenet = cnn.models.lenet5()
    err(function()
      cnn.trainer.fit {model = lenet, loader = empty, test_loader = empty, epochs = 1, out = dir,
                       checkpoint = dir .. "/c.ckpt", optimizer = cnn.optim.SGD(lenet:parameters(), {lr = 0.1})}
    end, "trainer.fit: the training loader gave no samples this epoch")
    H.rmdir(dir)
    local ok, msg = cnn.util.mkdir_p("/dev/null/x")
    assert.is_nil(ok)
    assert.are.equal("cannot create /dev/null/x: /dev/null is not a folder", msg)
    -- the fourth fuzzing round's: these named mul, full or reshape at a line of F.lua, or passed
    local F = cnn.F
    err(function() return F.binary_cross_entropy(cnn.tensor {0.5, 0.5}, cnn.tensor {1, 0}, {weight = cnn.ones(3)}) end,
      "binary_cross_entropy: input %(2%) and weight %(3%) cannot be broadcast")
    err(function()
      return F.binary_cross_entropy_with_logits(cnn.zeros(2, 3), cnn.zeros(2, 3), {pos_weight = cnn.ones(2)})
    end, "binary_cross_entropy_with_logits: input %(2, 3%) and pos_weight %(2%) cannot be broadcast")
    err(function() return F.pad(cnn.ones(2, 2):long(), {1, 1}, "constant", 0 / 0) end,
      "pad: value nan cannot be converted to int64 without overflow")
    err(function() return F.pad(cnn.ones(2):byte(), {1, 1}, "constant", 300) end,
      "pad: value 300 cannot be converted to type uint8 without overflow")
    err(function() return F.layer_norm(cnn.randn(2, 2, 3), {2, 3}, cnn.ones(3, 2)) end,
      "layer_norm: weight should have shape {2, 3}, got {3, 2}")
    err(function() return F.layer_norm(cnn.randn(2, 3), 3, nil, cnn.ones(2)) end,
      "layer_norm: bias should have shape {3}, got {2}")
    err(function() return F.layer_norm(cnn.randn(2, 3), 3, cnn.ones(3):long()) end,
      "layer_norm: weight must be a float32 tensor, got int64")
    err(function() return F.group_norm(cnn.randn(2, 4, 3), 2, cnn.ones(2, 2)) end,
      "group_norm: weight should have shape {4}, got {2, 2}")
    local u8, mask = cnn.tensor({1, 2}, {dtype = "uint8"}), cnn.tensor {true, false}
    err(function() return cnn.where(mask, u8, 300) end, "where: value 300 cannot be converted to type uint8")
    H.assert_tensor(cnn.where(mask, u8, -1), {1, 255}, {dtype = "uint8"}) -- as PyTorch's, within -255..255
    -- pow's scalar and alpha wrapped ({0, 1, 3} ^ 300 gave {0, 1, 113}); PyTorch 1.13 refuses them
    -- all, and wraps u8 + 300 as this does
    local u = cnn.tensor({0, 1, 3, 200}, {dtype = "uint8"})
    err(function() return u ^ 300 end, "pow: value 300 cannot be converted to type uint8 without overflow")
    err(function() return u ^ 256 end, "pow: value 256 cannot be converted to type uint8")
    err(function() return 300 ^ u end, "pow: value 300 cannot be converted to type uint8")
    err(function() return u:add(u, {alpha = 300}) end, "add: value 300 cannot be converted to type uint8")
    err(function() return u:sub(3, {alpha = -256}) end, "sub: value %-256 cannot be converted to type uint8")
    err(function() return u:clone():add_(u, 300) end, "add_: value 300 cannot be converted to type uint8")
    H.assert_tensor(u ^ 255, {0, 1, 171, 0}, {dtype = "uint8"})
    H.assert_tensor(255 ^ u, {1, 255, 255, 1}, {dtype = "uint8"})
    H.assert_tensor(u:add(u, {alpha = 255}), {0, 0, 0, 0}, {dtype = "uint8"})
    H.assert_tensor(u:add(u, {alpha = -1}), {0, 0, 0, 0}, {dtype = "uint8"})
    H.assert_tensor(u + 300, {44, 45, 47, 244}, {dtype = "uint8"})
    H.assert_tensor(cnn.ones(1):add(u:narrow(1, 3, 1), {alpha = 300}), {901}) -- a float32 sum: no uint8 alpha
    -- the sum's dtype decides, as PyTorch's: u8 += i64 * 300 is an int64 sum (it raised); bool +
    -- u8 and u8 + a 0-d int64 are uint8 sums (they wrapped); so is (-300) ^ u8
    local i64 = cnn.tensor({1, 2, 3, 4}, {dtype = "int64"})
    H.assert_tensor(u:clone():add_(i64, 300), {44, 89, 135, 120}, {dtype = "uint8"}) -- torch 1.13's values
    err(function() return cnn.tensor({true, false, true, true}):add(u, {alpha = 300}) end, "add: value 300")
    err(function() return u:add(cnn.tensor(1, {dtype = "int64"}), {alpha = 300}) end, "add: value 300")
    err(function() return (-300) ^ u end, "pow: value %-300 cannot be converted to type uint8")
    err(function() return u:clone():sub_(u, 300) end, "sub_: value 300 cannot") -- as given, not negated
    -- and a float alpha for an integer sum, which turned an int64 sum into float32
    err(function() return i64:add(i64, {alpha = 2.5}) end, "add: alpha must be an integer when the result is int64")
    err(function() return i64:add(3, {alpha = 2.0}) end, "add: alpha must be an integer")
    err(function() return u:clone():add_(u, 300.0) end, "add_: alpha must be an integer when the result is uint8")
    H.assert_tensor(i64:add(cnn.tensor {0.5, 0.5, 0.5, 0.5}, {alpha = 2.5}), {2.25, 3.25, 4.25, 5.25})
    H.assert_usable()
  end)

  it("nn.Linear(2^31, 2^31) says the weight is too large", function()
    err(function() return nn.Linear(1 << 31, 1 << 31) end, "Linear: a weight of shape {2147483648, 2147483648}",
      "16 EiB", "too large to allocate")
    err(function() return nn.Conv2d(1 << 20, 1 << 20, 1 << 10) end, "Conv2d: a weight", "too large to allocate")
    H.assert_usable()
  end)

  it("an error other than an allocation failure while making a parameter is raised as it came", function()
    -- Ctrl-C's "interrupted!" comes from a hook at the next call, which can be core.empty's inside
    -- new_param's pcall: it was reported as "Linear: a weight ... too large to allocate"
    local empty = require("cnn.core").empty
    local ok, e = pcall(function()
      debug.sethook(function()
        if debug.getinfo(2, "f").func == empty then
          debug.sethook()
          error("interrupted!", 0)
        end
      end, "c")
      return nn.Linear(3, 2)
    end)
    debug.sethook()
    assert.is_false(ok)
    assert.are.equal("interrupted!", e)
    -- nor is it blamed on the layer running when it came ("0 (Linear): interrupted!")
    local net = nn.Sequential(nn.Linear(3, 2))
    ok, e = pcall(function()
      debug.sethook(function()
        if debug.getinfo(2, "f").func == nn.Linear.forward then -- inside the layer's protected call
          debug.sethook()
          error("somewhere.lua:7: interrupted!", 0)
        end
      end, "c")
      return net(cnn.ones(1, 3))
    end)
    debug.sethook()
    assert.is_false(ok)
    assert.are.equal("interrupted!", e)
    -- a non-string error object too
    local signal = setmetatable({}, {__name = "signal"})
    ok, e = pcall(function()
      debug.sethook(function()
        if debug.getinfo(2, "f").func == empty then
          debug.sethook()
          error(signal)
        end
      end, "c")
      return nn.Conv2d(1, 2, 3)
    end)
    debug.sethook()
    assert.is_false(ok)
    assert.are.equal(signal, e)
    assert.are.same({2, 3}, nn.Linear(3, 2).weight:shape())
    H.assert_usable()
  end)

  it("cnn.save of a model says to pass its state_dict", function()
    local path = os.tmpname()
    err(function() cnn.save(path, nn.Linear(2, 2)) end, "save:", "state_dict")
    err(function() cnn.checkpoint.save(path, {model = nn.Linear(2, 2)}) end, "checkpoint.save:", "'model'",
      "state_dict")
    os.remove(path)
    H.assert_usable()
  end)
end)
