-- A tiny test harness for scripts run on every rank under mpirun (busted's output would interleave
-- across ranks). Each check raises on failure, so the failing rank's script errors, cnnlua aborts
-- the job and mpirun exits non-zero; rank 0 prints one line per passed check.
local dist = cnn.distributed
local C = {passed = 0}

function C.say(fmt, ...)
  if dist.rank() == 0 then print(string.format(fmt, ...)) end
end

function C.ok(cond, what, ...)
  if not cond then error(string.format("rank %d: not ok: " .. what, dist.rank(), ...), 2) end
  C.passed = C.passed + 1
end

-- elementwise equality of two tensors, up to a relative tolerance of the larger magnitude
function C.close(a, b, rtol, what)
  local scale = math.max(b:abs():max():item(), 1e-30)
  local diff = (a:float() - b:float()):abs():max():item()
  if diff > rtol * scale then
    error(string.format("rank %d: not ok: %s: max difference %.3g, relative %.3g > %.3g", dist.rank(), what, diff,
      diff / scale, rtol), 2)
  end
  C.passed = C.passed + 1
  return diff / scale
end

-- an error whose message has every one of the fragments
function C.fails(fn, ...)
  local ok, err = pcall(fn)
  if ok then error(string.format("rank %d: not ok: expected an error", dist.rank()), 2) end
  for _, frag in ipairs {...} do
    if not tostring(err):find(frag, 1, true) then
      error(string.format("rank %d: not ok: error %q lacks %q", dist.rank(), tostring(err), frag), 2)
    end
  end
  C.passed = C.passed + 1
end

-- The same value on every rank? (max and min across ranks agree, elementwise)
function C.same_everywhere(t)
  local hi, lo = t:clone(), t:clone()
  dist.all_reduce(hi, {op = "max"})
  dist.all_reduce(lo, {op = "min"})
  return hi:eq(lo):sum():item() == t:numel()
end

function C.done(name)
  dist.barrier()
  C.say("%s: %d checks passed on each of %d ranks", name, C.passed, dist.world_size())
end

return C
