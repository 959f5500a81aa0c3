-- DataParallel on every rank of an MPI job: a small network trained 20 steps on W ranks with
-- global batch B ends with the weights of one process trained on batch B (computed here, on each
-- rank, alongside), every rank holds identical weights after every step, and the corner cases:
-- parameters broadcast at wrap time, unused parameters, no_sync accumulation, tiny buckets.
--   mpirun -np 2 cnnlua tests/dist/data_parallel_test.lua   (also run with -np 3, and alone)
package.path = "tests/dist/?.lua;" .. package.path
local C = require "check"
local dist, nn, data = cnn.distributed, cnn.nn, cnn.data

dist.init()
local r, W = dist.rank(), dist.world_size()
C.say("DataParallel on %d ranks", W)

local function net()
  return nn.Sequential(nn.Conv2d(1, 4, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                       nn.Linear(4 * 4 * 4, 16), nn.Tanh(), nn.Linear(16, 5))
end

-- every parameter flattened into one vector
local function flat(model)
  local parts = {}
  for i, p in ipairs(model:parameters()) do parts[i] = p:detach():reshape(-1) end
  return cnn.cat(parts)
end

-- Different initialisations per rank: wrapping must make them rank 0's.
cnn.manual_seed(100 + r)
local model = net()
cnn.manual_seed(100)
local reference = net() -- rank 0's initialisation, on every rank
local dp = dist.DataParallel(model, {bucket_cap_mb = 0.002}) -- ~500 floats: several buckets
C.close(flat(model), flat(reference), 0, "parameters broadcast from rank 0 at wrap time")
C.ok(rawequal(dp.module, model), "dp.module is the model")
C.ok(#dp:parameters() == #model:parameters(), "dp:parameters() reaches the module")

-- 20 steps: global batch B = 4W on W ranks of 4, against one model on batch B
local B, steps = 12, 20 -- divisible by 1, 2 and 3 ranks
local n = B * steps
cnn.manual_seed(7) -- the same data on every rank
local ds = data.TensorDataset(cnn.randn(n, 1, 8, 8), cnn.randint(1, 5, {n}))
local loader = data.DataLoader(ds, {batch_size = B // W, shuffle = true, seed = 3, drop_last = true,
                                    shard = {rank = r, world_size = W}})
local ref_loader = data.DataLoader(ds, {batch_size = B, shuffle = true, seed = 3, drop_last = true})
C.ok(#loader == steps and #ref_loader == steps, "%d steps per epoch (%d, %d)", steps, #loader, #ref_loader)
local opts = {lr = 0.05, momentum = 0.9, weight_decay = 1e-3}
local opt = cnn.optim.SGD(dp:parameters(), opts)
local ref_opt = cnn.optim.SGD(reference:parameters(), opts)
local ref_iter = ref_loader:iter()
local identical = true
for x, y in loader:iter() do
  local loss = cnn.F.cross_entropy(dp(x), y)
  opt:zero_grad()
  loss:backward() -- averages the gradients
  opt:step()
  local rx, ry = ref_iter()
  local ref_loss = cnn.F.cross_entropy(reference(rx), ry)
  ref_opt:zero_grad()
  ref_loss:backward()
  ref_opt:step()
  identical = identical and C.same_everywhere(flat(model))
end
C.ok(identical, "every rank holds identical weights after every step")
local rel = C.close(flat(model), flat(reference), 1e-5, "20 steps on " .. W .. " ranks = 1 process with batch " .. B)
C.say("  relative difference from the single-process run: %.2g", rel)
C.ok(dp.stats.syncs == steps, "one gradient averaging per backward (%d)", dp.stats.syncs)
C.ok(W == 1 or dp.stats.buckets > dp.stats.syncs, "several buckets per step with a tiny bucket_cap_mb")

-- a forward under no_grad arms nothing; a backward of another graph does not average
cnn.no_grad(function() dp(ds.tensors[1]:narrow(1, 1, 2)) end)
local lone = cnn.ones(2):requires_grad_()
lone:sum():backward()
C.ok(dp.stats.syncs == steps, "no averaging without a forward through dp in grad mode")

-- no_sync: gradients accumulate locally; the next synchronised backward averages the sums
opt:zero_grad()
local xa, ya = ds.tensors[1]:narrow(1, 1 + r * 2, 2), ds.tensors[2]:narrow(1, 1 + r * 2, 2)
dp:no_sync(function() cnn.F.cross_entropy(dp(xa), ya):backward() end)
local local_grad = model:parameters()[1].grad:clone()
C.ok(W == 1 or not C.same_everywhere(local_grad), "no_sync leaves rank-local gradients")
cnn.F.cross_entropy(dp(xa), ya):backward()
local g = model:parameters()[1].grad
C.ok(C.same_everywhere(g), "the next backward averages them")
local expect = (local_grad * 2):clone()
dist.all_reduce(expect, {op = "mean"})
C.close(g, expect, 1e-5, "averaged accumulation = mean over ranks of the local sums")

-- a parameter used on rank 0 only gets (grad on rank 0) / W everywhere; one used nowhere keeps nil
local Two = nn.Module:extend("Two")
function Two:init()
  self.a = nn.Linear(3, 2)
  self.b = nn.Linear(3, 2)
  self.unused = nn.Linear(3, 2)
end
function Two:forward(x, use_b)
  local y = self.a(x)
  if use_b then y = y + self.b(x) end
  return y
end
cnn.manual_seed(5)
local two = Two()
local dp2 = dist.DataParallel(two)
local x3 = cnn.ones(4, 3)
dp2(x3, r == 0):sum():backward()
C.ok(two.unused.weight.grad == nil, "a parameter unused on every rank keeps no gradient")
C.ok(two.b.weight.grad ~= nil, "a parameter used on some rank gets a gradient on every rank")
C.close(two.b.weight.grad, cnn.full({2, 3}, 4 / W), 1e-6, "its gradient is rank 0's divided by " .. W)
C.close(two.a.weight.grad, cnn.full({2, 3}, 4.0), 1e-6, "a parameter used everywhere averages to its value")

-- wrapper misuse
C.fails(function() dist.DataParallel({}) end, "DataParallel: expected a cnn.nn module")
C.fails(function() dist.DataParallel(net(), {bucket_cap_mb = 0}) end, "DataParallel: bucket_cap_mb")
C.fails(function() dist.DataParallel(net(), {bucket = 1}) end, "DataParallel: unknown option 'bucket'")
if W > 1 then
  -- models that differ across ranks fail at wrap time on every rank, naming the tensor
  C.fails(function()
    dist.DataParallel(nn.Linear(3, r == 0 and 2 or 4))
  end, "DataParallel: parameter 'weight'", "shapes differ across ranks")
end
C.ok(C.same_everywhere(cnn.ones(1)), "usable after the errors")

C.done("data_parallel")
