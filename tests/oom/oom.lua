-- Out-of-memory paths, under tests/oom/failing_alloc.c (LD_PRELOAD): for each case, the n-th
-- allocation of a run fails, for n = 1, 2, ... until a run makes fewer than n. Every such run must
-- end in an error that says memory ran out, or succeed with the right result; never crash, write a
-- corrupt file or return a wrong one. After each, with nothing failing, the case must give its
-- reference result again: the runtime is still usable. Prints "N passed, N failed" last (ctest).
--   LD_PRELOAD=build/tests/libfailing_alloc.so build/cnnlua tests/oom/oom.lua [case]
-- (OOM_TRACE=1 prints each case and n to stderr as it runs.)
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")
local F = cnn.F
io.stdout:setvbuf("line")

assert(os.getenv("failalloc:off"), "run under LD_PRELOAD=libfailing_alloc.so (tests/oom/failing_alloc.c)")
cnn.set_num_threads(1) -- one thread: the same allocations, in the same order, every run

local dir = assert(os.getenv("TMPDIR") or "/tmp") .. "/cnn_oom_" .. math.random(1 << 30)
assert(os.execute("mkdir -p " .. dir))

-- A tensor's values as a string: results compare exactly.
local function values(t) return table.concat(t:contiguous():view(-1):totable(), ",") end

-- A state_dict's names, shapes and values, in few allocations (each run of a case is swept once
-- per allocation it makes): any changed value changes a tensor's sum or sum of squares.
local function state_string(sd)
  local names = {}
  for k in pairs(sd) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for _, k in ipairs(names) do
    local t = sd[k]
    out[#out + 1] = string.format("%s=%s:%.9g:%.9g", k, table.concat(t:shape(), "x"), t:sum():item(),
      (t * t):sum():item())
  end
  return table.concat(out, ";")
end

local lenet_sd
do
  cnn.manual_seed(3)
  lenet_sd = cnn.models.lenet5():state_dict()
end
local saved = dir .. "/old.safetensors" -- a checkpoint an interrupted save must leave as it was
cnn.save(saved, lenet_sd)
local saved_bytes = H.read_bytes(saved)

-- Each case returns a string that is the same on every successful run.
local cases = {
  {"mean backward", function()
    local x = cnn.tensor({1, 2, 3}, {requires_grad = true})
    ;(x * x):mean():backward()
    return values(x.grad)
  end},
  {"conv, pool, sum backward", function()
    cnn.manual_seed(1)
    local x = cnn.randn(2, 3, 8, 8, {requires_grad = true})
    local w = cnn.randn(4, 3, 3, 3, {requires_grad = true})
    F.max_pool2d(F.relu(F.conv2d(x, w, nil, {padding = 1})), 2):sum():backward()
    return values(x.grad) .. "|" .. values(w.grad)
  end},
  {"resize", function()
    cnn.manual_seed(2)
    return values(cnn.image.resize(cnn.rand(3, 9, 11), {5, 7}))
  end},
  {"lenet step", function()
    cnn.manual_seed(4)
    local m = cnn.models.lenet5()
    local opt = cnn.optim.SGD(m:parameters(), {lr = 0.1, momentum = 0.9})
    local loss = F.cross_entropy(m(cnn.randn(4, 1, 28, 28)), cnn.tensor({1, 2, 3, 4}, {dtype = "int64"}))
    opt:zero_grad()
    loss:backward()
    opt:step()
    return values(m.classifier[5].bias)
  end},
  -- a failed save leaves the old file whole; a save that returns wrote the whole new one
  {"save", function()
    local path = dir .. "/save.safetensors"
    assert(io.open(path, "wb")):write(saved_bytes):close()
    local ok, err = pcall(cnn.save, path, lenet_sd, {metadata = {note = "oom"}})
    if not ok then
      assert(H.read_bytes(path) == saved_bytes, "a failed save changed the file: " .. tostring(err))
      error(err, 0)
    end
    return state_string(cnn.load(path))
  end},
  {"load", function() return state_string(cnn.load(saved)) end},
  {"png", function()
    local path = dir .. "/x.png"
    cnn.manual_seed(5)
    cnn.image.save(path, cnn.rand(3, 6, 5))
    return values(cnn.image.load(path))
  end},
}

local only = arg and arg[1]
local passed, failed = 0, 0
local function fail(name, fmt, ...)
  failed = failed + 1
  io.write(string.format("FAIL %s: " .. fmt .. "\n", name, ...))
end

for _, c in ipairs(cases) do
  local name, run = c[1], c[2]
  if not only or only == name then
    local want = run()
    local n, errors, bad = 1, 0, failed
    while n < 5000 do
      collectgarbage()
      cnn.empty_cache() -- so that the case's allocations reach malloc
      if os.getenv("OOM_TRACE") then io.stderr:write(name, " n=", n, "\n") end
      os.getenv("failalloc:arm " .. n)
      local ok, got = pcall(run)
      local hit = os.getenv("failalloc:off"):match("failed=(%d+)")
      if hit == "0" then -- the run made fewer than n allocations: all swept
        if not ok then fail(name, "error with no allocation failing: %s", tostring(got)) end
        break
      end
      if ok and got ~= want then fail(name, "n=%d: a wrong result after a failed allocation", n) end
      if not ok then
        errors = errors + 1
        if not tostring(got):lower():find("memory") then
          fail(name, "n=%d: the error does not say so: %s", n, tostring(got))
        end
      end
      local ok2, again = pcall(run)
      if not ok2 or again ~= want then fail(name, "n=%d: unusable afterwards: %s", n, tostring(again)) end
      n = n + 1
    end
    if failed == bad then passed = passed + 1 end
    io.write(string.format("%-26s %4d allocations failed one at a time, %4d errors, %s\n", name, n - 1, errors,
      failed == bad and "ok" or "FAILED"))
  end
end
os.execute("rm -rf " .. dir)
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
