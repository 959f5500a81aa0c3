-- examples/train_lenet.lua as a user runs it, on a tiny synthetic dataset in MNIST's layout:
-- its outputs, its last line, and that --resume reaches exactly what an uninterrupted run does.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local CNNLUA = assert(os.getenv("CNNLUA"), "CNNLUA must point at the cnnlua binary (ctest sets it)")

local sh_quote = H.sh_quote

local function run(args)
  local cmd = sh_quote(CNNLUA) .. " examples/train_lenet.lua " .. args .. " 2>&1"
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- n images whose class decides a bright square's position, so a few epochs learn something
local function write_split(dir, prefix, n, seed)
  local rng = cnn.randint(0, 9, {n})
  cnn.manual_seed(seed)
  local img = {string.pack(">I4I4I4I4", 0x803, n, 28, 28)}
  local lab = {string.pack(">I4I4", 0x801, n)}
  local noise = (cnn.rand(n, 28 * 28) * 60):long()
  for i = 1, n do
    local c = rng[i]
    local px = noise[i]:totable()
    local r0, c0 = 2 + (c // 5) * 12, 2 + (c % 5) * 5
    for r = r0, r0 + 9 do
      for k = c0, c0 + 3 do px[r * 28 + k + 1] = 250 end
    end
    img[#img + 1] = string.char(table.unpack(px))
    lab[#lab + 1] = string.char(c)
  end
  local f = assert(io.open(dir .. "/" .. prefix .. "-images-idx3-ubyte", "wb"))
  f:write(table.concat(img))
  f:close()
  f = assert(io.open(dir .. "/" .. prefix .. "-labels-idx1-ubyte", "wb"))
  f:write(table.concat(lab))
  f:close()
end

local tmp
setup(function()
  tmp = os.tmpname()
  os.remove(tmp)
  H.mkdir_p(tmp .. "/data")
  write_split(tmp .. "/data", "train", 512, 11)
  write_split(tmp .. "/data", "t10k", 200, 12)
end)

teardown(function()
  H.rmdir(tmp)
end)

local common = "--epochs 3 --batch-size 32 --lr 0.05 --threads 1 --seed 5"

describe("train_lenet.lua", function()
  local full_out
  it("trains, ends with 'test accuracy: NN.NN%' and writes checkpoint, CSV, curves and filters", function()
    local out, code = run(common .. " --data " .. sh_quote(tmp .. "/data") .. " --out " .. sh_quote(tmp .. "/full"))
    full_out = out
    assert.are.equal(0, code, out)
    local last = out:match("([^\n]+)\n?$")
    local acc = tonumber(last:match("^test accuracy: (%d+%.%d%d)%%$"))
    assert.is_not_nil(acc, "last line was: " .. tostring(last))
    assert.is_true(acc > 50, "a learnable synthetic task should exceed chance (10%), got " .. acc)
    -- not a terminal: one plain line per epoch, no carriage-return progress
    local epochs = 0
    for _ in out:gmatch("epoch %d+/3  lr 0.05  train loss") do epochs = epochs + 1 end
    assert.are.equal(3, epochs)
    assert.is_nil(out:find("\r", 1, true))

    local csv = assert(io.open(tmp .. "/full/metrics.csv")):read("a")
    local rows = {}
    for line in csv:gmatch("[^\n]+") do rows[#rows + 1] = line end
    assert.are.equal(4, #rows) -- header + 3 epochs
    assert.truthy(rows[1]:find("^epoch,train_loss,train_acc,test_loss,test_acc"))
    local csv_acc = tonumber(rows[4]:match("^3,[^,]+,[^,]+,[^,]+,([^,]+)"))
    assert.are.equal(string.format("%.2f", acc), string.format("%.2f", 100 * csv_acc))

    -- lr is the optimiser's (a constant 0.05 here: no schedule), not 0
    for i = 2, 4 do assert.are.equal("0.05", rows[i]:match("^%d+,[^,]+,[^,]+,[^,]+,[^,]+,([^,]+),"), rows[i]) end
    local curves = cnn.image.load(tmp .. "/full/curves.png")
    assert.are.same({3, 420, 1000}, curves:shape()) -- two panels: loss, accuracy
    local filters = cnn.image.load(tmp .. "/full/filters.png")
    assert.are.equal(1, filters:size(1)) -- grey filters, one channel

    local state = cnn.checkpoint.load(tmp .. "/full/checkpoint.safetensors")
    assert.are.equal(3, state.epoch)
    local model = cnn.models.lenet5()
    model:load_state_dict(state.model) -- strict: every LeNet-5 key present with its shape
    assert.is_not_nil(state.optimizer.state[1].momentum_buffer)
  end)

  it("--resume after 2 epochs reaches the same weights and accuracy as 3 epochs straight", function()
    local data = " --data " .. sh_quote(tmp .. "/data")
    local part = common:gsub("%-%-epochs 3", "--epochs 2")
    local out, code = run(part .. data .. " --out " .. sh_quote(tmp .. "/part"))
    assert.are.equal(0, code, out)
    out, code = run(common .. data .. " --out " .. sh_quote(tmp .. "/resumed") .. " --resume " ..
      sh_quote(tmp .. "/part/checkpoint.safetensors"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("resumed from", 1, true))
    assert.are.equal(full_out:match("test accuracy: [%d.]+%%"), out:match("test accuracy: [%d.]+%%"))
    local a = cnn.checkpoint.load(tmp .. "/full/checkpoint.safetensors")
    local b = cnn.checkpoint.load(tmp .. "/resumed/checkpoint.safetensors")
    for name, t in pairs(a.model) do
      assert.is_true(cnn.allclose(t, b.model[name], 0, 0), name .. " differs after resuming")
    end
  end)

  it("leaves metrics.csv and curves.png after every epoch; --resume goes on in the same folder", function()
    local process = require("cnn.core").process
    local dir = tmp .. "/killed"
    local argv = {CNNLUA, "examples/train_lenet.lua", "--epochs", "6", "--batch-size", "32", "--lr", "0.05",
                  "--threads", "1", "--seed", "5", "--data", tmp .. "/data", "--out", dir}
    local pid = process.spawn(argv, {stdout = tmp .. "/killed.log", stderr = "stdout"})
    local function rows_of(path)
      local f = io.open(path)
      if not f then return {} end
      local rows = {}
      for line in f:lines() do rows[#rows + 1] = line end
      f:close()
      return rows
    end
    local deadline = process.clock() + 120
    while #rows_of(dir .. "/metrics.csv") < 3 and process.clock() < deadline and not process.wait(pid) do
      process.sleep(0.01)
    end
    process.kill(pid, "KILL") -- as a crash or a kill -9 would stop it: nothing runs at exit
    process.wait(pid, true)
    local rows = rows_of(dir .. "/metrics.csv")
    local state = cnn.checkpoint.load(dir .. "/checkpoint.safetensors")
    -- the kill came right after epoch 2's row (rarely a step later): the CSV holds what the checkpoint holds
    assert.is_true(state.epoch >= 2 and state.epoch < 6, "stopped after epoch " .. state.epoch)
    assert.are.equal(1 + state.epoch, #rows, table.concat(rows, "\n"))
    assert.are.same({3, 420, 1000}, cnn.image.load(dir .. "/curves.png"):shape())
    local before = {table.unpack(rows)}

    -- no --out: the run goes on in the checkpoint's folder, its CSV growing
    local out, code = run("--epochs " .. state.epoch + 2 .. " --batch-size 32 --lr 0.05 --threads 1 --seed 5 --data " ..
      sh_quote(tmp .. "/data") .. " --resume " .. sh_quote(dir .. "/checkpoint.safetensors"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("resumed from", 1, true))
    assert.truthy(out:find("wrote " .. dir .. "/{metrics.csv", 1, true), out)
    rows = rows_of(dir .. "/metrics.csv")
    assert.are.equal(1 + state.epoch + 2, #rows)
    for i, r in ipairs(before) do assert.are.equal(r, rows[i]) end -- kept as they were
    for e = 1, state.epoch + 2 do assert.are.equal(e, tonumber(rows[e + 1]:match("^(%d+),"))) end
    assert.are.equal(state.epoch + 2, cnn.checkpoint.load(dir .. "/checkpoint.safetensors").epoch)
  end)

  -- 2 ranks of batch 16 take the same steps as 1 process of batch 32 (up to float rounding); only
  -- rank 0 prints and writes.
  ;(H.has_mpirun() and it or pending)(
    "--distributed on 2 ranks matches the single-process run of the same global batch", function()
    local out, ok = H.mpirun(2, sh_quote(CNNLUA) .. " examples/train_lenet.lua --distributed " .. common
      .. " --data " .. sh_quote(tmp .. "/data") .. " --out " .. sh_quote(tmp .. "/dist"))
    assert.is_true(ok, out)
    local _, lines = out:gsub("test accuracy:", "")
    assert.are.equal(1, lines, out) -- rank 0 alone reports
    assert.truthy(out:find("2 ranks of batch 16", 1, true), out)
    assert.truthy(out:find("in gradient all%-reduce"), out)
    local a = cnn.checkpoint.load(tmp .. "/full/checkpoint.safetensors")
    local b = cnn.checkpoint.load(tmp .. "/dist/checkpoint.safetensors")
    for name, t in pairs(a.model) do
      if t:dtype() == "float32" then
        local scale = math.max(t:abs():max():item(), 1e-6)
        local diff = (t - b.model[name]):abs():max():item()
        assert.is_true(diff <= 1e-4 * scale, string.format("%s differs by %.3g (scale %.3g)", name, diff, scale))
      end
    end
    assert.are.equal(full_out:match("test accuracy: [%d.]+%%"), out:match("test accuracy: [%d.]+%%"))
  end)

  it("rejects bad flags with a usage message and a non-zero exit", function()
    local out, code = run("--epochs 0 --data " .. sh_quote(tmp .. "/data"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("epochs", 1, true))
    out, code = run("--data " .. sh_quote(tmp .. "/nowhere"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("nowhere", 1, true))
  end)

  it("a run that fails before its first write leaves no folder behind", function()
    local util = require "cnn.util"
    local before = util.list_dir("runs") or {}
    local out, code = run("--data " .. sh_quote(tmp .. "/nowhere") .. " --out " .. sh_quote(tmp .. "/never"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("nowhere", 1, true))
    assert.is_false(util.is_dir(tmp .. "/never"), "the --out folder was made")
    -- without --out the run would have been runs/lenet-DATE-TIME, here in the source tree
    local _, code2 = run("--data " .. sh_quote(tmp .. "/nowhere"))
    assert.are_not.equal(0, code2)
    assert.are.same(before, util.list_dir("runs") or {}, "a runs/lenet-* folder was made")
  end)

  it("--help lists every flag", function()
    local out, code = run("--help")
    assert.are.equal(0, code)
    for _, flag in ipairs {"--data", "--epochs", "--batch-size", "--lr", "--momentum", "--seed", "--threads",
                            "--save", "--resume", "--out", "--distributed"} do
      assert.truthy(out:find(flag, 1, true), flag)
    end
  end)
end)
