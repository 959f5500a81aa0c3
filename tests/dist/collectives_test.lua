-- Collectives on every rank of an MPI job: values, dtypes, views, mismatches (an error on every
-- rank, and the runtime still usable after it), and sharded DataLoaders covering each epoch.
--   mpirun -np 2 cnnlua tests/dist/collectives_test.lua   (also run with -np 3, and alone)
package.path = "tests/dist/?.lua;" .. package.path
local C = require "check"
local dist, data = cnn.distributed, cnn.data

dist.init()
local r, W = dist.rank(), dist.world_size()
C.ok(dist.is_initialized(), "initialized")
C.say("collectives on %d ranks (backend %s)", W, (dist.backend()))

-- all_reduce: sum, mean, max, min on float32; exact int64 sums beyond float precision
local t = cnn.full({2, 3}, r + 1.0)
C.ok(rawequal(dist.all_reduce(t), t), "all_reduce returns its tensor")
C.ok(t:eq(W * (W + 1) / 2):sum():item() == 6, "sum: %s", tostring(t))
t = cnn.full({5}, r + 0.0)
dist.all_reduce(t, {op = "mean"})
C.close(t, cnn.full({5}, (W - 1) / 2), 1e-6, "mean")
local signed = cnn.tensor({r, -r, r * r})
local hi, lo = signed:clone(), signed:clone()
dist.all_reduce(hi, {op = "max"})
dist.all_reduce(lo, {op = "min"})
C.ok(hi[1] == W - 1 and hi[2] == 0 and hi[3] == (W - 1) ^ 2, "max %s", tostring(hi))
C.ok(lo[1] == 0 and lo[2] == -(W - 1) and lo[3] == 0, "min %s", tostring(lo))
local big = cnn.tensor({2 ^ 40 + r, -r}, {dtype = "int64"})
dist.all_reduce(big)
C.ok(big[1] == W * 2 ^ 40 + W * (W - 1) // 2 and big[2] == -(W * (W - 1) // 2), "int64 sum %s", tostring(big))
C.ok(math.type(big[1]) == "integer", "int64 stays integer")

-- views: only the viewed elements change; 0-d and empty tensors
local base = cnn.full({4, 6}, -1.0)
local cols = base:narrow(2, 2, 3)           -- (4, 3), strided
cols:fill_(r + 1)
dist.all_reduce(cols)
C.ok(cols:eq(W * (W + 1) / 2):sum():item() == 12, "strided view reduced")
C.ok(base:eq(-1):sum():item() == 12, "elements outside the view untouched")
local tr = (cnn.arange(0, 6):float():view(2, 3) + r):t() -- (3, 2) transposed
dist.all_reduce(tr)
C.close(tr, (cnn.arange(0, 6):float():view(2, 3) * W + W * (W - 1) / 2):t(), 0, "transposed view")
local s = cnn.tensor(r + 0.5)
dist.all_reduce(s)
C.ok(s:dim() == 0 and math.abs(s:item() - (W * W) / 2) < 1e-6, "0-d tensor %s", tostring(s))
C.ok(dist.all_reduce(cnn.zeros(0)):numel() == 0, "empty tensor")

-- broadcast from the last rank, into a view
local b = cnn.full({3, 2}, r + 0.0):t()
dist.broadcast(b, {root = W - 1})
C.ok(b:eq(W - 1):sum():item() == 6, "broadcast from root %d: %s", W - 1, tostring(b))
local bi = cnn.tensor({r * 7, 3}, {dtype = "int64"})
dist.broadcast(bi)
C.ok(bi[1] == 0 and bi[2] == 3, "int64 broadcast from 0")

-- all_gather: a list of every rank's tensor, in rank order
local g = dist.all_gather(cnn.tensor({{r, 10 * r}, {100 * r, 1}}):t())
C.ok(#g == W, "all_gather gives %d tensors, got %d", W, #g)
for i, x in ipairs(g) do
  local q = i - 1
  C.close(x, cnn.tensor({{q, 100 * q}, {10 * q, 1}}), 0, "all_gather entry " .. i)
end
local gi = dist.all_gather(cnn.tensor({r}, {dtype = "int64"}))
for i, x in ipairs(gi) do C.ok(x[1] == i - 1 and x:dtype() == "int64", "int64 all_gather %d", i) end

dist.barrier()

-- mismatched calls fail on every rank alike, and the next collective works
if W > 1 then
  C.fails(function() dist.all_reduce(cnn.zeros(r + 1)) end, "dist.all_reduce", "shapes differ across ranks")
  C.fails(function() dist.all_reduce(r == 0 and cnn.zeros(2) or cnn.zeros(2, {dtype = "int64"})) end,
    "dist.all_reduce", "different dtypes")
  C.fails(function() dist.all_reduce(cnn.zeros(2), {op = r == 0 and "sum" or "max"}) end, "different ops")
  C.fails(function() dist.broadcast(cnn.zeros(2), {root = r == 0 and 0 or 1}) end, "dist.broadcast", "different roots")
  C.fails(function()
    if r == 0 then dist.all_reduce(cnn.zeros(3)) else dist.broadcast(cnn.zeros(3)) end
  end, "different collectives")
  C.fails(function() dist.all_gather(cnn.zeros(2, r + 1)) end, "dist.all_gather", "shapes differ")
  -- a barrier meeting another collective: an error on both sides (MPI_Barrier itself hung here)
  C.fails(function()
    if r == 0 then dist.all_reduce(cnn.zeros(2)) else dist.barrier() end
  end, "different collectives")
  C.fails(function()
    if r == 0 then dist.barrier() else dist.all_gather(cnn.zeros(2)) end
  end, "different collectives")
  -- DataParallel's gradient averaging meeting a user's all_reduce (it named its mask's dtype)
  local dp = dist.DataParallel(cnn.nn.Linear(2, 1))
  C.fails(function()
    if r == 0 then dp(cnn.ones(3, 2)):sum():backward() else dist.all_reduce(cnn.ones(1)) end
  end, "different collectives", r == 0 and "this rank: DataParallel's gradient averaging" or "this rank: all_reduce")
  dist.barrier()
end
-- misuse detected locally, identically on every rank
C.fails(function() dist.all_reduce(cnn.zeros(2, {dtype = "int64"}), {op = "mean"}) end, "dist.all_reduce",
  "mean", "float32")
C.fails(function() dist.all_reduce(cnn.zeros(1):expand(3)) end, "dist.all_reduce", "expanded")
C.fails(function() dist.all_reduce(cnn.zeros(1), {op = "avg"}) end, "dist.all_reduce", "op must be")
C.fails(function() dist.all_reduce(cnn.zeros(1), {opp = "sum"}) end, "unknown option 'opp'")
C.fails(function() dist.all_reduce("x") end, "dist.all_reduce")
C.fails(function() dist.broadcast(cnn.zeros(1), {root = W}) end, "dist.broadcast", "root " .. W .. " is outside")
C.fails(function() dist.broadcast(cnn.zeros(1), {root = -1}) end, "dist.broadcast", "root must be a rank")
local after = cnn.ones(2)
dist.all_reduce(after)
C.ok(after:eq(W):sum():item() == 2, "usable after the errors")

-- sharded loaders: every sample of the epoch counted across ranks
local n = 23
local ds = data.TensorDataset(cnn.arange(n):float():reshape(n, 1), cnn.arange(n))
local function coverage(opts)
  local counts = cnn.zeros(n, {dtype = "int64"})
  local loader = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 11, drop_last = opts.drop_last,
                                      shard = {rank = r, world_size = W, exact = opts.exact}})
  loader:set_epoch(3)
  local batches = 0
  for _, y in loader:iter() do
    batches = batches + 1
    for i = 1, y:size(1) do counts[y[i] + 1] = counts[y[i] + 1] + 1 end
  end
  dist.all_reduce(counts)
  local nb = cnn.tensor({batches}, {dtype = "int64"})
  return counts, C.same_everywhere(nb)
end
local counts = coverage {exact = true}
C.ok(counts:eq(1):sum():item() == n, "exact shards cover the epoch once: %s", tostring(counts))
local same_batches
counts, same_batches = coverage {drop_last = false}
C.ok(same_batches, "padded shards step together")
C.ok(counts:ge(1):sum():item() == n and counts:sum():item() == W * ((n + W - 1) // W),
  "padded shards cover every sample")
counts, same_batches = coverage {drop_last = true}
C.ok(same_batches, "dropping shards step together")
C.ok(counts:le(1):sum():item() == n, "dropping shards are disjoint")

C.done("collectives")
