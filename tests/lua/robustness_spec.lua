-- Issue 14, "Crashes and memory errors": calls that used to crash the process, corrupt its memory or
-- hang it. Each must now give the right answer or a clear error, and the runtime must stay usable.
-- Run under AddressSanitizer/UndefinedBehaviorSanitizer by the CI's second pass (build-asan), which
-- is what turns a silent use-after-free or signed overflow here into a failure.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local F, nn = cnn.F, cnn.nn
local err = H.assert_error

-- Closes a tensor as `local t <close>` does at the end of its scope.
local function close(t) getmetatable(t).__close(t) end

describe("joining zero-size tensors", function()
  it("cat of non-contiguous tensors with a zero-size dim joins along an earlier dim", function()
    local z = cnn.zeros(2, 0, 1):expand(2, 0, 3) -- non-contiguous, no elements: used to divide by 0
    H.assert_tensor(cnn.cat({z, z}, 1), {shape = {4, 0, 3}, data = {}})
    H.assert_tensor(cnn.cat({z, z}, 3), {shape = {2, 0, 6}, data = {}})
    H.assert_tensor(cnn.stack({z, z}, 1), {shape = {2, 2, 0, 3}, data = {}})
    H.assert_usable()
  end)

  it("cat whose joined size would pass int64 says so", function()
    local big = cnn.ones(1):expand(1 << 59)
    err(function() return cnn.cat({big, big, big, big, big, big, big, big, big, big, big, big, big, big, big,
      big, big}, 1) end, "cat:", "overflows")
    H.assert_usable()
  end)
end)

describe("batch norm of tensors with no values", function()
  it("an empty batch or plane gives an empty output and zero parameter gradients, as PyTorch", function()
    -- a plane of size 0 used to divide by it in the kernel's block and prefetch arithmetic (SIGFPE)
    for _, shape in ipairs {{2, 3, 0}, {0, 3}, {0, 3, 4}, {2, 3, 0, 8}} do
      for _, training in ipairs {false, true} do
        for _, relu in ipairs {false, true} do
          local x = cnn.zeros(table.unpack(shape)):requires_grad_()
          local w, b = cnn.ones(3):requires_grad_(), cnn.zeros(3):requires_grad_()
          local rm, rv = cnn.full({3}, 0.5), cnn.full({3}, 2.0)
          local y = F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5, {relu = relu})
          assert.are.same(shape, y:shape())
          y:sum():backward()
          assert.are.same(shape, x.grad:shape())
          H.assert_tensor(w.grad, {0, 0, 0}, {atol = 0})
          H.assert_tensor(b.grad, {0, 0, 0}, {atol = 0})
          -- no values: the running statistics stay as they were
          H.assert_tensor(rm, {0.5, 0.5, 0.5}, {atol = 0})
          H.assert_tensor(rv, {2, 2, 2}, {atol = 0})
        end
      end
    end
    local bn = nn.BatchNorm2d(3)
    assert.are.same({2, 3, 0, 8}, bn(cnn.zeros(2, 3, 0, 8)):shape())
    assert.are.same({2, 3, 0, 8}, bn:eval()(cnn.zeros(2, 3, 0, 8)):shape())
    assert.are.same({0, 3}, nn.BatchNorm1d(3)(cnn.zeros(0, 3)):shape())
    H.assert_usable()
  end)
end)

describe("tensors a binding takes stay alive while it uses them", function()
  it("cat reads a list through an __index proxy whose tensors nothing else holds", function()
    -- each element is a fresh tensor only the stack keeps alive; the lookups run the collector
    local proxy = setmetatable({}, {
      __index = function(_, i) collectgarbage(); return cnn.full({1000}, i) end,
      __len = function() return 3 end,
    })
    H.assert_tensor(cnn.cat(proxy, 1):sum(), 6000) -- 1000 * (1 + 2 + 3)
    H.assert_tensor(cnn.stack(proxy, 1):sum(1), cnn.full({1000}, 6):totable())
    H.assert_usable()
  end)

  it("a loss's weight option may come from __index and be collected right after", function()
    local opts = setmetatable({}, {__index = function(_, k)
      collectgarbage()
      if k == "weight" then return cnn.tensor{1, 2, 3} end
    end})
    local x, y = cnn.tensor{{1, 2, 3}, {3, 2, 1}}, cnn.tensor({3, 1}, {dtype = "int64"})
    local want = F.cross_entropy(x, y, {weight = cnn.tensor{1, 2, 3}})
    H.assert_tensor(F.cross_entropy(x, y, opts), want:item(), {rtol = 1e-6})
    H.assert_tensor(F.nll_loss(F.log_softmax(x, 2), y, opts), want:item(), {rtol = 1e-6})
    H.assert_usable()
  end)

  it("conv2d and pooling whose options close the tensor arguments raise that they are closed", function()
    local x, w = cnn.randn(1, 1, 5, 5), cnn.randn(1, 1, 3, 3)
    local opts = setmetatable({}, {__index = function() close(x); close(w); collectgarbage() end})
    err(function() return F.conv2d(x, w, nil, opts) end, "conv2d:", "closed")
    local x2 = cnn.randn(1, 1, 4, 4)
    local popts = setmetatable({}, {__index = function() close(x2); collectgarbage() end})
    err(function() return F.max_pool2d(x2, 2, popts) end, "max_pool2d:", "closed")
    local x3 = cnn.randn(2, 3)
    local vopts = setmetatable({}, {__index = function() close(x3) end})
    err(function() return x3:var(vopts) end, "closed")
    H.assert_usable()
  end)

  it("a shape table whose __index closes the tensor", function()
    local t = cnn.ones(2, 3)
    local shape = setmetatable({}, {__index = function(_, i) close(t); return ({3, 2})[i] end,
      __len = function() return 2 end})
    err(function() return t:view(shape) end, "view:", "closed")
    H.assert_usable()
  end)

  it("closing the root inside a Function's backward does not free the graph being walked", function()
    local root
    local Op = cnn.autograd.Function{
      forward = function(_, x) return x * 2 end,
      backward = function(_, g) close(root); collectgarbage(); return g * 2 end,
    }
    local x = cnn.tensor{1, 2, 3}:requires_grad_()
    root = (Op(x) * 3):sum()
    root:backward()
    H.assert_tensor(x.grad, {6, 6, 6}) -- d/dx sum(3 * 2x) with the Function's gradient 2
    H.assert_usable()
  end)
  it("tensors closed inside a Function's backward: its gradient, its input, a saved tensor", function()
    local Op = cnn.autograd.Function{
      forward = function(ctx, x) ctx:save_for_backward(x); return x * 2 end,
      backward = function(ctx, g)
        local r = g * 2
        close(g)
        close(ctx.saved[1])
        collectgarbage()
        return r
      end,
    }
    local x = cnn.tensor{1, 2}:requires_grad_()
    local y = Op(x)
    close(x) -- the graph keeps its own reference to the leaf
    y:sum():backward()
    local Bad = cnn.autograd.Function{
      forward = function(_, a) return a * 1 end,
      backward = function(_, g) close(g); return g end,
    }
    local z = cnn.ones(2):requires_grad_()
    err(function() Bad(z):sum():backward() end, "backward:", "returned a closed tensor")
    H.assert_usable()
  end)
end)

describe("size arithmetic never overflows", function()
  it("expand to sizes whose product passes 2^63", function()
    local big = 1 << 31
    err(function() return cnn.zeros(1, 1):expand(big, big, big) end, "expand:", "overflows")
    err(function() return cnn.zeros(1):expand(1 << 62, 4) end, "expand:", "overflows")
    H.assert_usable()
  end)

  it("conv2d padding near 2^31 and 2^62, with dilation", function()
    local x, w = cnn.randn(1, 1, 5, 5), cnn.randn(1, 1, 3, 3)
    err(function() return F.conv2d(x, w, nil, {padding = 1 << 31, dilation = (1 << 31) - 1}) end, "conv2d:", "2^31")
    err(function() return F.conv2d(x, w, nil, {padding = 1 << 62, dilation = 2}) end, "conv2d:", "2^31")
    err(function() return F.conv2d(x, w, nil, {padding = "same", dilation = 1 << 62}) end, "conv2d:", "dilation")
    err(function() return F.conv2d(x, w, nil, {padding = (1 << 31) - 1, dilation = 1 << 30}) end, "conv2d:")
    -- a 3x3 output over a (2^32 + 3)^2 zero-padded input: im2col's padded copy overflowed int64
    local huge = (1 << 31) - 1
    err(function() return F.conv2d(x, w, nil, {padding = huge, stride = huge}) end, "conv2d:", "padding",
      "too large")
    err(function() return F.conv2d(x, w, nil, {padding = huge, stride = {huge, 1}}) end, "conv2d:", "too large")
    -- an expanded weight with a huge kernel: the dilated extent itself would overflow
    local wide = cnn.randn(1, 1, 1, 1):expand(1, 1, 1 << 40, 1)
    err(function() return F.conv2d(x, wide, nil, {dilation = 1 << 30}) end, "conv2d:", "kernel")
    H.assert_usable()
  end)

  it("local_response_norm with a window near 2^62 covers every channel", function()
    -- alpha / size * (sum of squares) is ~0, so y = x / k^beta = x, and the gradient is 1
    local x = cnn.tensor{{{1, -2}, {3, 4}}}:requires_grad_()
    local y = F.local_response_norm(x, 1 << 62)
    H.assert_tensor(y, {{{1, -2}, {3, 4}}}, {rtol = 1e-6})
    y:sum():backward()
    H.assert_tensor(x.grad, {{{1, 1}, {1, 1}}}, {rtol = 1e-6})
    H.assert_usable()
  end)

  it("DataLoader with world_size or batch_size math.maxinteger", function()
    local ds = cnn.data.TensorDataset(cnn.arange(10):float(), cnn.arange(10))
    local one = cnn.data.DataLoader(ds, {batch_size = math.maxinteger})
    assert.are.equal(1, #one)
    local n = 0
    for x in one:iter() do n = n + x:size(1) end
    assert.are.equal(10, n)
    local sharded = cnn.data.DataLoader(ds, {shard = {rank = 3, world_size = math.maxinteger}})
    assert.are.equal(1, #sharded) -- ceil(10 / world): one sample, wrapping round as PyTorch pads
    local exact = cnn.data.DataLoader(ds, {shard = {rank = math.maxinteger - 1, world_size = math.maxinteger,
      exact = true}})
    assert.are.equal(0, #exact) -- rank past the data: nothing
    for _ in exact:iter() do error("no batch expected") end
    H.assert_usable()
  end)
end)

describe("readers refuse what is not a regular file", function()
  local dir, fifo
  setup(function()
    dir = H.tmpdir()
    fifo = dir .. "/pipe"
    assert(os.execute("mkfifo '" .. fifo .. "'"))
  end)
  teardown(function() H.rmdir(dir) end)

  -- Each would block forever in open() waiting for a writer.
  it("cnn.load, checkpoint.load, image.load and idx_load name the path", function()
    err(function() return cnn.load(fifo) end, "load:", fifo, "not a regular file", "named pipe")
    err(function() return cnn.checkpoint.load(fifo) end, fifo, "named pipe")
    -- the message points at the caller's line, not checkpoint.lua's
    local msg = err(function()
      local state = cnn.checkpoint.load(fifo) -- not a tail call: this line is the caller's
      return state
    end, "checkpoint.load:")
    assert.is_truthy(msg:find("^[^:]*robustness_spec.lua:%d+: checkpoint.load: "), msg)
    err(function() return cnn.image.load(fifo) end, "image.load:", fifo, "named pipe")
    err(function() return cnn.data.idx_load(fifo) end, "idx_load:", fifo, "named pipe")
    err(function() return cnn.load(dir) end, "load:", dir, "folder")
    H.assert_usable()
  end)

  it("MNIST and CIFAR-10 folders holding pipes", function()
    assert(os.execute("cd '" .. dir .. "' && mkfifo train-images-idx3-ubyte train-labels-idx1-ubyte test_batch.bin"))
    err(function() return cnn.data.mnist(dir, "train") end, "named pipe")
    err(function() return cnn.data.cifar10(dir, "test") end, "cifar10:", "named pipe")
    H.assert_usable()
  end)
end)

describe("searches and modules that would never end", function()
  it("a grid over hp.uniform(0, 1, {n = 2^40}) is refused when the space is built", function()
    local hp = cnn.hpsearch
    err(function() return hp.uniform(0, 1, {n = 2 ^ 40}) end, "hpsearch.uniform:", "at most")
    err(function() return hp.randint(math.mininteger, math.maxinteger, {n = 1 << 40}) end, "hpsearch.randint:")
    H.assert_usable()
  end)

  it("a module that contains itself: state_dict returns, train and tostring end", function()
    local Block = nn.Module:extend("Block")
    function Block:init() self.fc = nn.Linear(2, 3) end
    local b = Block()
    b.me = b -- a natural back-reference
    local keys = b:state_dict_keys()
    assert.are.same({"fc.weight", "fc.bias"}, keys)
    local sd = b:state_dict()
    assert.are.same({2, 3}, {sd["fc.weight"]:size(2), sd["fc.weight"]:size(1)})
    b:eval()
    assert.is_false(b.training)
    assert.is_false(b.fc.training)
    b:train()
    assert.is_true(b.fc.training)
    local s = tostring(b)
    assert.truthy(s:find("(me): Block(<cycle", 1, true), s)
    assert.are.equal(9, b:num_parameters())
    b:load_state_dict(b:state_dict())
    H.assert_usable()
  end)

  it("a module that calls itself until the stack runs out: a short error with the path's ends", function()
    local s = nn.Sequential(nn.Linear(2, 2))
    s:add_module("again", s)
    local msg = H.assert_error(function() return s(cnn.randn(1, 2)) end, "again%.again%.again%.again%.%(%d+ more%)%.",
      "stack overflow")
    assert.is_true(#msg < 200, msg)
    H.assert_usable()
  end)
end)

describe("reentrant backward", function()
  it("a Function's backward may run backward{retain_graph=true} on a graph sharing nodes", function()
    local x = cnn.tensor{1, 2, 3}:requires_grad_()
    local h = x * 2
    local y = (h * h):sum() -- dy/dx = 8x
    local Op = cnn.autograd.Function{
      forward = function(_, a) return a * 1 end,
      backward = function(_, g) y:backward(nil, {retain_graph = true}); return g end,
    }
    local z = (Op(h) * 3):sum() + y -- dz/dx = 6 + 8x, plus the inner 8x
    z:backward(nil, {retain_graph = true})
    H.assert_tensor(x.grad, {22, 38, 54})
    H.assert_usable()
  end)

  it("a backward that reaches the Function running it raises instead of recursing", function()
    local w
    local Op = cnn.autograd.Function{
      forward = function(_, a) return a * 1 end,
      backward = function(_, g) w:backward(nil, {retain_graph = true}); return g end,
    }
    w = Op(cnn.ones(2):requires_grad_()):sum()
    err(function() w:backward(nil, {retain_graph = true}) end, "backward:", "through itself")
    H.assert_usable()
  end)

  it("an inner backward that frees the graph leaves the outer one a clean error", function()
    local w
    local Op = cnn.autograd.Function{
      forward = function(_, a) return a * 1 end,
      backward = function(_, g) pcall(w.backward, w); return g end,
    }
    w = Op(cnn.ones(2):requires_grad_()):sum()
    w:backward(nil, {retain_graph = true})
    err(function() w:backward() end, "backward:", "second time")
    H.assert_usable()
  end)
end)

describe("process options", function()
  local process = require("cnn.core").process
  it("process.spawn rejects unknown keys and mistyped ones, naming itself; fork checks group", function()
    err(function() return process.spawn({"true"}, {stdot = "/dev/null"}) end, "process.spawn", "unknown option",
      "stdot")
    err(function() return process.spawn({"true"}, {group = 1}) end, "process.spawn", "group", "boolean")
    err(function() return process.fork(function() end, {group = "no"}) end, "process.fork", "group", "boolean")
    local pid = process.spawn({"true"}, {stdout = "/dev/null", group = true})
    local how, code = process.wait(pid, true)
    assert.are.equal("exit", how)
    assert.are.equal(0, code)
  end)
end)
