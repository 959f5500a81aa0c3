-- cnn.distributed in one process (the multi-rank checks are tests/dist/*_test.lua under mpirun):
-- errors before init, a world of one after it, argument errors, backward callbacks and the
-- DataParallel wrapper's forwarding. The "before init" block must run first: init is per process.
local H = dofile("tests/lua/helpers.lua")
local dist = cnn.distributed

describe("cnn.distributed before init", function()
  it("refuses every call but init and is_initialized, naming the function", function()
    assert.is_false(dist.is_initialized())
    H.assert_error(function() dist.rank() end, "dist.rank:", "not initialized", "call dist.init")
    H.assert_error(function() dist.world_size() end, "dist.world_size:", "not initialized")
    H.assert_error(function() dist.all_reduce(cnn.ones(2)) end, "dist.all_reduce:", "not initialized")
    H.assert_error(function() dist.broadcast(cnn.ones(2)) end, "dist.broadcast:", "not initialized")
    H.assert_error(function() dist.all_gather(cnn.ones(2)) end, "dist.all_gather:", "not initialized")
    H.assert_error(function() dist.barrier() end, "dist.barrier:", "not initialized")
    H.assert_error(function() dist.DataParallel(cnn.nn.Linear(2, 2)) end, "DataParallel:", "not initialized")
    assert.is_boolean(dist.is_available())
    H.assert_usable()
  end)
end)

describe("cnn.distributed in a world of one", function()
  setup(function() dist.init(); dist.init() end) -- idempotent

  it("is rank 0 of 1, and the collectives are the identity", function()
    assert.is_true(dist.is_initialized())
    assert.are.equal(0, dist.rank())
    assert.are.equal(1, dist.world_size())
    assert.are.equal("none", (dist.backend())) -- not started by mpirun
    local t = cnn.tensor({{1, 2}, {3, 4}}):t()
    for _, op in ipairs {"sum", "mean", "max", "min"} do
      H.assert_tensor(dist.all_reduce(t, {op = op}), {{1, 3}, {2, 4}})
    end
    H.assert_tensor(dist.broadcast(cnn.tensor({5, 6}), {root = 0}), {5, 6})
    local g = dist.all_gather(cnn.tensor({{1, 2}}))
    assert.are.equal(1, #g)
    H.assert_tensor(g[1], {{1, 2}})
    dist.barrier()
  end)

  it("bumps the version of what it writes, so a saved tensor notices", function()
    local w = cnn.ones(3):requires_grad_()
    local x = cnn.ones(3)
    local y = (w * x):sum() -- saves x
    dist.all_reduce(x)
    H.assert_error(function() y:backward() end, "modified by an in%-place operation")
  end)

  it("checks arguments locally", function()
    H.assert_error(function() dist.all_reduce(cnn.ones(2), {op = "prod"}) end, "dist.all_reduce:", "op must be")
    H.assert_error(function() dist.all_reduce(cnn.ones(2), {root = 0}) end, "dist.all_reduce:", "unknown option 'root'")
    H.assert_error(function() dist.all_reduce(cnn.ones(2, {dtype = "int64"}), {op = "mean"}) end, "float32")
    H.assert_error(function() dist.all_reduce(cnn.ones(1):expand(4)) end, "dist.all_reduce:", "expanded")
    H.assert_error(function() dist.broadcast(cnn.ones(2), {root = 1}) end, "dist.broadcast:",
      "root 1 is outside the ranks 0..0")
    H.assert_error(function() dist.broadcast(cnn.ones(2), {root = "a"}) end, "dist.broadcast:", "root must be a rank")
    H.assert_error(function() dist.all_gather({}) end, "dist.all_gather:")
    H.assert_usable()
  end)
end)

describe("cnn.autograd.register_backward_callback", function()
  it("runs after each successful backward until removed", function()
    local calls, grad_seen = 0, nil
    local w = cnn.ones(2):requires_grad_()
    local h = cnn.autograd.register_backward_callback(function()
      calls = calls + 1
      grad_seen = w.grad and w.grad:clone()
    end)
    w:mul(3):sum():backward()
    assert.are.equal(1, calls)
    H.assert_tensor(grad_seen, {3, 3}) -- the gradients are in place when it runs
    pcall(function() cnn.ones(2):backward() end) -- a failed backward runs no callback
    assert.are.equal(1, calls)
    h:remove()
    h:remove()
    w:mul(3):sum():backward()
    assert.are.equal(1, calls)
    H.assert_error(function() cnn.autograd.register_backward_callback(3) end, "register_backward_callback:", "function")
  end)

  it("propagates a callback's error from backward, and backward works again after", function()
    local h = cnn.autograd.register_backward_callback(function() error("callback failed") end)
    local w = cnn.ones(2):requires_grad_()
    H.assert_error(function() w:sum():backward() end, "callback failed")
    h:remove()
    w:sum():backward()
    H.assert_usable()
  end)
end)

describe("dist.DataParallel in a world of one", function()
  it("forwards to the module and trains exactly like it", function()
    cnn.manual_seed(3)
    local a = cnn.nn.Sequential(cnn.nn.Linear(4, 3), cnn.nn.ReLU(), cnn.nn.Linear(3, 2))
    cnn.manual_seed(3)
    local b = cnn.nn.Sequential(cnn.nn.Linear(4, 3), cnn.nn.ReLU(), cnn.nn.Linear(3, 2))
    local dp = dist.DataParallel(a)
    assert.is_true(dist.is_data_parallel(dp))
    assert.is_false(dist.is_data_parallel(a))
    assert.are.equal(a[1], dp[1]) -- fields of the module
    dp:eval()
    assert.is_false(a.training)
    dp:train()
    assert.is_true(a.training)
    assert.are.same(a:state_dict_keys(), dp:state_dict_keys()) -- no "module." prefix
    assert.truthy(tostring(dp):find("DataParallel", 1, true))
    local x = cnn.randn(5, 4)
    local oa = cnn.optim.SGD(dp:parameters(), {lr = 0.1})
    local ob = cnn.optim.SGD(b:parameters(), {lr = 0.1})
    for _ = 1, 3 do
      oa:zero_grad(); dp(x):pow(2):sum():backward(); oa:step()
      ob:zero_grad(); b(x):pow(2):sum():backward(); ob:step()
    end
    H.assert_tensor(a[1].weight, b[1].weight:totable())
    assert.are.equal(3, dp.stats.syncs)
    H.assert_error(function() dp:no_sync(5) end, "no_sync:", "function")
    H.assert_error(function() dist.DataParallel(a, {bucket_cap_mb = -1}) end, "DataParallel:", "bucket_cap_mb")
    H.assert_error(function() dist.DataParallel("net") end, "DataParallel:", "module")
  end)
end)
