-- A rank that ends its script while the others still call collectives: they get an error naming
-- the end at each call (no hang), may catch it and go on, and the job ends cleanly when they end.
-- A forked child that exits (os.exit included) leaves the job alone.
--   mpirun -np 2 cnnlua tests/dist/ending_test.lua   (also run with -np 3, and alone)
package.path = "tests/dist/?.lua;" .. package.path
local C = require "check"
local dist = cnn.distributed
local process = require("cnn.core").process

dist.init()
local r, W = dist.rank(), dist.world_size()

-- a child of a rank exits through os.exit: before, its exit left the job in the parent's name
-- and the parent waited forever
local job = {}
local pid = process.fork(function() os.exit(3) end, job)
local how, code = process.wait(pid, true)
C.ok(how == "exit" and code == 3, "the forked child exited (%s %s)", tostring(how), tostring(code))
local t = cnn.ones(2)
dist.all_reduce(t)
C.ok(t[1] == W, "collectives after the child's exit: %s", tostring(t))
dist.barrier()

if W == 1 then
  C.say("ending: %d checks passed (a world of one: no rank to end first)", C.passed)
  return
end

-- every rank wraps a model; then the last rank ends here (its checks above passed), in two ways:
-- a plain return, or os.exit
local dp = dist.DataParallel(cnn.nn.Linear(3, 2))
if r == W - 1 then
  if W == 3 then os.exit(0) end
  return
end
local ended = "has ended its script"
C.fails(function() dist.all_reduce(cnn.ones(3)) end, "dist.all_reduce", ended, "this rank called all_reduce")
C.fails(function() dist.barrier() end, "dist.barrier", ended)
C.fails(function() dist.broadcast(cnn.ones(2)) end, "dist.broadcast", ended)
C.fails(function() dist.all_gather(cnn.ones(2)) end, "dist.all_gather", ended)
C.fails(function() dp(cnn.ones(4, 3)):sum():backward() end, "DataParallel", ended,
  "DataParallel's gradient averaging")
-- collectives need every rank, so the running ranks stop calling them and end: the job ends with
-- them (mpirun's exit status is the last check)
C.say("ending: %d checks passed on each running rank; the last rank ended first", C.passed)
