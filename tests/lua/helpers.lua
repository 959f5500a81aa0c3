-- Shared assertions for the busted specs: tensors against nested Lua tables of expected values,
-- and errors against "function name + problem" patterns. Loaded with dofile from the repo root
-- (specs run with the repository root as working directory).
local cnn = require "cnn"
local assert = require "luassert" -- dofile runs outside busted's spec environment

local H = {}

-- Flattens a nested table of numbers (or a bare number) in row-major order.
function H.flatten(v, out)
  out = out or {}
  if type(v) == "table" then
    for i = 1, #v do H.flatten(v[i], out) end
  else
    out[#out + 1] = v
  end
  return out
end

-- Shape of a rectangular nested table ({} for a bare number).
function H.shape_of(v)
  local shape = {}
  while type(v) == "table" do
    shape[#shape + 1] = #v
    v = v[1]
  end
  return shape
end

-- Values of a tensor of any shape (0-d included) as a flat list, read without totable.
function H.values(t)
  local n = t:numel()
  local flat = t:reshape(n)
  local out = {}
  for i = 1, n do out[i] = flat[i] end
  return out
end

local function shape_str(s)
  return "{" .. table.concat(s, ", ") .. "}"
end
H.shape_str = shape_str

-- |a - b| <= atol + rtol * |b|, NaN never close; booleans (a bool tensor's elements) must be equal.
function H.close(a, b, rtol, atol)
  if type(a) == "boolean" or type(b) == "boolean" then return a == b end
  if a == b then return true end -- equal infinities, whose difference is NaN
  return math.abs(a - b) <= (atol or 0) + (rtol or 0) * math.abs(b)
end

-- Asserts t has the shape of `expected` (a nested table or number, or {shape=, data=}) and
-- values within tolerance (exact when tol is omitted).
function H.assert_tensor(t, expected, opts)
  opts = opts or {}
  local shape, data
  if type(expected) == "table" and expected.shape then
    shape, data = expected.shape, expected.data
  else
    shape, data = H.shape_of(expected), expected
  end
  assert(type(t) == "userdata", "expected a tensor, got " .. type(t))
  local got_shape = t:shape()
  assert.are.same(shape, got_shape,
    "shape " .. shape_str(got_shape) .. " but expected " .. shape_str(shape))
  if opts.dtype then assert.are.equal(opts.dtype, t:dtype()) end
  local want, got = H.flatten(data), H.values(t)
  assert.are.equal(#want, #got)
  local rtol, atol = opts.rtol or 0, opts.atol or 0
  for i = 1, #want do
    if not H.close(got[i], want[i], rtol, atol) then
      assert(false, string.format("element %d (flat, 1-based) is %s but expected %s (rtol %g, atol %g)",
        i, string.format(type(got[i]) == "number" and "%.9g" or "%s", got[i]),
        string.format(type(want[i]) == "number" and "%.9g" or "%s", want[i]), rtol, atol))
    end
  end
end

-- Asserts fn raises an error whose message contains every pattern (matched case-insensitively;
-- a table of patterns means any one of them), and returns the message.
function H.assert_error(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error but the call succeeded")
  local msg = tostring(err)
  for _, pat in ipairs({ ... }) do
    local alts = type(pat) == "table" and pat or { pat }
    local found = false
    for _, alt in ipairs(alts) do
      if msg:lower():find(alt:lower()) then found = true end
    end
    if not found then
      assert(false, string.format("error message %q does not match %q", msg, table.concat(alts, "' or '")))
    end
  end
  return msg
end

-- The runtime still works after an error: a fresh small computation gives the right answer.
function H.assert_usable()
  local t = cnn.tensor({ 1, 2, 3 }) * 2 + 1 -- {3, 5, 7}
  assert.are.same({ 3, 5, 7 }, t:totable())
  assert.are.equal(15, t:sum():item())
end

-- Scratch files for the specs that read and write files: a fresh empty directory (remove it with
-- H.rmdir), folders made with their parents (H.mkdir_p), and whole-file binary writes and reads
-- that raise on failure. Files go through cnn.util (lua-filesystem), never through a shell.
function H.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(cnn.util.mkdir_p(d))
  return d
end

function H.rmdir(d) assert(cnn.util.remove_tree(d)) end

function H.mkdir_p(...)
  for _, d in ipairs {...} do assert(cnn.util.mkdir_p(d)) end
  return true
end

-- A string quoted for a POSIX shell, for the specs that start cnnlua or mpirun as a user would.
function H.sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

function H.write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

function H.read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Finite-difference check of fn's output projected on fixed random weights: a scalar whose
-- gradient weighs every output element differently (a plain sum would hide gradients right only
-- on average; a softmax sums to 1). float32 gradcheck: eps and tolerances 1e-2.
function H.gradcheck(fn, inputs)
  local weights
  local function projected(...)
    local out = fn(...)
    if not weights then
      if out:dim() == 0 then
        weights = cnn.tensor(1.5)
      else
        cnn.manual_seed(777)
        weights = cnn.randn(out:shape())
      end
    end
    return (out * weights):sum()
  end
  local ok, msg = cnn.autograd.gradcheck(projected, inputs, {eps = 1e-2, atol = 1e-2, rtol = 1e-2})
  assert(ok == true, "gradcheck failed: " .. tostring(msg))
end

-- True when this machine has an MPI launcher and the build has MPI (specs that launch ranks are
-- pending otherwise; ctest's dist_* tests then cover the world of one).
function H.has_mpirun()
  local p = io.popen("command -v mpirun")
  local path = p:read("l")
  p:close()
  return path ~= nil and cnn.distributed.is_available()
end

-- Runs the shell command `cmd` on np ranks of this machine; returns its output (stderr included)
-- and whether every rank succeeded. Root allowed, ranks may outnumber cores, no ptrace-based
-- single copy (containers forbid it), and under the sanitizers no leak checks: Open MPI's unloaded
-- plugins leave leaks LeakSanitizer can neither attribute nor suppress.
function H.mpirun(np, cmd)
  local p = assert(io.popen("ASAN_OPTIONS=\"${ASAN_OPTIONS:-}:detect_leaks=0\" mpirun --allow-run-as-root " ..
    "--oversubscribe --mca btl_vader_single_copy_mechanism none -np " .. np .. " " .. cmd .. " 2>&1"))
  local out = p:read("a")
  return out, p:close() == true
end

return H
