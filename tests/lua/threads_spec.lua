-- The thread pool across fork() (runtime/core/parallel.c): a child forked with core.process.fork
-- after training steps ran on 2 threads (as an hp.search trial is) runs the same steps on 2
-- threads with the same bits, and exits cleanly.
local core = require "cnn.core"
local process = core.process

-- n training steps of LeNet-5 from seed 1 on a fixed batch: the loss of each step (bits as a
-- hex string) and the final parameters
local function lenet_steps(n)
  cnn.manual_seed(1)
  local model = cnn.models.lenet5()
  local opt = cnn.optim.SGD(model:parameters(), { lr = 0.05, momentum = 0.9 })
  local x, y = cnn.randn(64, 1, 28, 28), cnn.randint(1, 10, { 64 })
  local losses = {}
  for i = 1, n do
    local loss = cnn.F.cross_entropy(model(x), y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    losses[i] = string.format("%a", loss:item())
  end
  return table.concat(losses, " "), model:parameters()
end

-- Runs fn in a forked child; returns its exit (how, code) and what fn returned.
local function in_child(fn)
  local job = {}
  process.fork(fn, job)
  local how, code = process.wait(job.pid, true)
  local out = {}
  while true do
    local s = process.read(job.fd)
    if not s or s == "" then break end
    out[#out + 1] = s
  end
  process.close(job.fd)
  return how, code, table.concat(out)
end

describe("threads and fork", function()
  local before = cnn.get_num_threads()
  after_each(function() cnn.set_num_threads(before) end)

  it("a child forked after 2-thread training steps gets the parent's bits on 2 threads", function()
    cnn.set_num_threads(2)
    local losses, params = lenet_steps(3)
    local how, code, got = in_child(function()
      if cnn.get_num_threads() ~= 2 then return "threads: " .. cnn.get_num_threads() end
      local l2, p2 = lenet_steps(3)
      if l2 ~= losses then return "losses " .. l2 .. " vs " .. losses end
      for i, p in ipairs(p2) do
        if not cnn.allclose(p, params[i], 0, 0) then return "parameter " .. i .. " differs" end
      end
      -- and a grandchild, forked after the child's own pool ran
      local h, c, g = in_child(function()
        local l3 = lenet_steps(2)
        return l3 == losses:match("^(%S+ %S+)") and "ok" or "grandchild losses " .. l3
      end)
      if h ~= "exit" or c ~= 0 then return "grandchild ended " .. tostring(h) .. " " .. tostring(c) end
      return g
    end)
    assert.are.equal("exit", how)
    assert.are.equal(0, code)
    assert.are.equal("ok", got)
    -- the parent's pool goes on as before
    assert.are.equal(losses, (lenet_steps(3)))
  end)

  it("a child can change its thread count and keep computing the same bits", function()
    cnn.set_num_threads(2)
    local losses = lenet_steps(2)
    local how, code, got = in_child(function()
      cnn.set_num_threads(1)
      local one = lenet_steps(2)
      cnn.set_num_threads(2)
      local two = lenet_steps(2)
      return two == losses and "ok" or "2 threads after 1: " .. two .. " vs " .. losses .. " (1: " .. one .. ")"
    end)
    assert.are.same({ "exit", 0, "ok" }, { how, code, got })
  end)
end)

describe("OMP_NUM_THREADS", function()
  -- it was read as far as it went (4abc: 4, 1e2: 1) or ignored without a word (abc, 0, -1)
  it("sets the thread count as OpenMP reads it, and says so when it is not a count", function()
    local bin = assert(os.getenv("CNNLUA"), "CNNLUA must point at the cnnlua binary (ctest sets it)")
    local function run(v)
      local p = assert(io.popen("OMP_NUM_THREADS='" .. v .. "' '" .. bin .. "' -e 'print(cnn.get_num_threads())' 2>&1"))
      local out = p:read("a")
      p:close()
      return out
    end
    local cpus = run(""):match("^(%d+)\n$")
    assert.truthy(cpus)
    assert.are.equal("3\n", run("3"))
    assert.are.equal("3\n", run(" 3 "))
    assert.are.equal("2\n", run("2,1")) -- a list: the first level's
    for _, bad in ipairs({"abc", "0", "-1", "1e2", "4abc"}) do
      local out = run(bad)
      assert.truthy(out:find("OMP_NUM_THREADS='" .. bad .. "' is not a thread count", 1, true), out)
      assert.truthy(out:find("using " .. cpus .. "\n" .. cpus .. "\n", 1, true), out)
    end
    assert.truthy(run("99999"):find("more threads than the 1024 the runtime runs; using 1024\n1024\n", 1, true))
  end)
end)
