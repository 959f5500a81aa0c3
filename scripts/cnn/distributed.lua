--- module cnn.distributed
--- Data-parallel training across the processes (ranks, from 0) of an MPI job.
--- One process per rank, started by mpirun or srun (`mpirun -np 4 cnnlua train.lua`). Without MPI,
--- or when no launcher started the script, init() gives a world of one and the same script runs.
--- A rank whose script fails takes the job down (MPI_Abort) rather than leave the others waiting;
--- one whose script ends (or calls os.exit) waits until every rank has, and each collective the
--- others still call fails with an error saying that a rank has ended.

-- cnn.distributed: data-parallel training across the processes of an MPI job (one rank per
-- process, launched by mpirun or srun). The collectives are C (bindings/dist/ldist.c over
-- runtime/dist/dist.c); DataParallel is here. Without MPI, or when not launched by MPI, init() gives
-- a world of one and everything still runs, so one script serves both.
local core = require "cnn.core"
local show = require("cnn.util").show -- values in messages ("nan", never "-nan")
local D = core.dist

local dist = {}

-- the collectives, described at their bindings (bindings/ldist.c)
dist.init = D.init
dist.is_initialized = D.is_initialized
dist.rank = D.rank
dist.world_size = D.world_size
dist.backend = D.backend
dist.barrier = D.barrier
dist.all_reduce = D.all_reduce
dist.broadcast = D.broadcast
dist.all_gather = D.all_gather

--- cnn.distributed.is_available() -> boolean
--- Whether this build has MPI, so that it can join an MPI job.
function dist.is_available() return D.has_mpi end

--- cnn.distributed.launched() -> boolean
--- Whether a launcher (mpirun, srun) started this process, whether or not init() was called.
--- A rank's standard output is then forwarded by the launcher, often into a pipe or a log, even
--- when it looks like a terminal: progress lines redrawn with `\r` have no place there.
function dist.launched()
  for _, k in ipairs{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_ID"} do
    if os.getenv(k) then return true end
  end
  return false
end

local function is_module(m)
  return type(m) == "table" and type(m.parameters) == "function" and type(m.named_parameters) == "function"
end

local DataParallel = {__name = "cnn.distributed.DataParallel"}

-- Methods of the wrapper first, then the wrapped module's fields, with its methods bound to it:
-- dp:eval(), dp.features, dp:state_dict() all reach the module (state_dict names carry no
-- "module." prefix, so a checkpoint saved from a DataParallel run loads into the plain model).
DataParallel.__index = function(self, k)
  local v = DataParallel[k]
  if v ~= nil then return v end
  local m = rawget(self, "module")
  local mv = m[k]
  if type(mv) == "function" then
    return function(this, ...)
      if rawequal(this, self) then return mv(m, ...) end
      return mv(this, ...)
    end
  end
  return mv
end

DataParallel.__call = function(self, ...) return self:forward(...) end

DataParallel.__tostring = function(self)
  return string.format("DataParallel(rank %d of %d, buckets of %.3g MB)\n  (module): %s", D.rank(), D.world_size(),
    self.bucket_cap_mb, tostring(self.module):gsub("\n", "\n  "))
end

DataParallel.__gc = function(self)
  if self._handle then self._handle:remove() end
end

--- cnn.distributed.DataParallel:forward(...) -> ...
--- The model's forward (also `dp(...)`); in grad mode it arms the averaging of the next backward().
function DataParallel:forward(...)
  if self.require_sync and core.is_grad_enabled() then self._pending = true end
  return self.module(...)
end

--- cnn.distributed.DataParallel:no_sync(fn, ...) -> ...
--- Runs fn(...) with gradient averaging off, to accumulate gradients over several backward passes.
--- The first synchronised backward after it averages the accumulated sums.
function DataParallel:no_sync(fn, ...)
  if type(fn) ~= "function" then error("no_sync: expected a function, got " .. type(fn), 2) end
  local prev = self.require_sync
  self.require_sync = false
  local res = table.pack(pcall(fn, ...))
  self.require_sync = prev
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

--- cnn.distributed.DataParallel:sync_gradients()
--- Averages every parameter's .grad across ranks now, in buckets of at most bucket_cap_mb.
--- Runs by itself after each backward that follows a forward through dp: call it only after computing
--- gradients some other way. A parameter without a gradient on this rank but with one elsewhere counts
--- as zeros here; one without a gradient on every rank keeps none.
function DataParallel:sync_gradients()
  self._pending = false
  local world = D.world_size()
  if world == 1 then
    self.stats.syncs = self.stats.syncs + 1
    return
  end
  local start = core.wall_time()
  local params = {}
  for _, p in ipairs(self.module:parameters()) do
    if p.requires_grad then params[#params + 1] = p end
  end
  -- which parameters have a gradient on some rank (one small all-reduce; also checks that every
  -- rank holds the same number of trainable parameters)
  local has = core.zeros(#params, {dtype = "int64"})
  for i, p in ipairs(params) do
    if p.grad ~= nil then has[i] = 1 end
  end
  local ok, err = pcall(D._grad_mask, has)
  if not ok then error((tostring(err):gsub("^.-DataParallel: ", "DataParallel: ")), 2) end
  local cap = self.bucket_cap_mb * 2 ^ 20
  local bucket, bytes, scale, nbuckets, total = {}, 0, 1 / world, 0, 0
  local function flush()
    if #bucket == 0 then return end
    D._all_reduce_many(bucket, scale)
    nbuckets = nbuckets + 1
    bucket, bytes = {}, 0
  end
  for i = #params, 1, -1 do
    local p = params[i]
    if has[i] == 1 then
      if p.grad == nil then p.grad = core.zeros_like(p) end
      local nb = p:numel() * 4
      if bytes > 0 and bytes + nb > cap then flush() end
      bucket[#bucket + 1] = p.grad
      bytes = bytes + nb
      total = total + nb
    end
  end
  flush()
  local s = self.stats
  s.syncs, s.buckets, s.bytes = s.syncs + 1, s.buckets + nbuckets, s.bytes + total
  s.seconds = s.seconds + (core.wall_time() - start)
end

--- cnn.distributed.DataParallel(model, {bucket_cap_mb=25}) -> dp
--- Wraps model so that every rank trains it in step: gradients are averaged across ranks.
--- It broadcasts rank 0's parameters and buffers now; after each backward that follows a forward
--- through it, it averages the gradients (in buckets, last layers first) before opt:step(). BatchNorm
--- statistics stay per rank (PyTorch DDP's default). `dp.module` is the model; `dp:state_dict()` is
--- the model's (no "module." prefix); `dp.stats` counts the averaging (syncs, buckets, bytes, seconds).
function dist.DataParallel(model, opts)
  if not is_module(model) then error("DataParallel: expected a cnn.nn module, got " .. type(model), 2) end
  opts = require("cnn.util").check_options("DataParallel", opts, {bucket_cap_mb = true}, 2)
  local cap = opts.bucket_cap_mb or 25
  if type(cap) ~= "number" or not (cap > 0) or cap == math.huge then
    error("DataParallel: bucket_cap_mb must be a positive number, got " .. show(cap), 2)
  end
  if not D.is_initialized() then
    error("DataParallel: the process group is not initialized: call dist.init() first", 2)
  end
  -- one broadcast per tensor; the header check inside each makes models that differ across
  -- ranks fail here, on every rank, naming the tensor
  local function bcast(kind, list)
    for _, nt in ipairs(list) do
      local ok, err = pcall(D.broadcast, nt[2], {root = 0})
      if not ok then
        local why = tostring(err):gsub("^.-dist%.broadcast: ", "")
        error(string.format("DataParallel: %s '%s': %s", kind, nt[1], why), 3)
      end
    end
  end
  if D.world_size() > 1 then
    bcast("parameter", model:named_parameters())
    bcast("buffer", model:named_buffers())
  end
  local self = setmetatable({module = model, bucket_cap_mb = cap, require_sync = true, _pending = false,
                             stats = {syncs = 0, buckets = 0, bytes = 0, seconds = 0}}, DataParallel)
  local ref = setmetatable({dp = self}, {__mode = "v"})
  self._handle = require("cnn.autograd").register_backward_callback(function()
    local dp = ref.dp
    if dp and dp._pending then dp:sync_gradients() end
  end)
  return self
end

--- cnn.distributed.is_data_parallel(x) -> boolean
--- Whether x is a DataParallel wrapper.
function dist.is_data_parallel(x) return getmetatable(x) == DataParallel end

return dist
