-- data.cifar10 on hand-written CIFAR-format files (record parsing, labels, errors), and the examples
-- train_resnet.lua, train_alexnet.lua and finetune_resnet18.lua run as a user runs them, one epoch
-- each on tiny synthetic data: their last line, CSV and checkpoint.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")
local cifar10 = cnn.data.cifar10 or require "cnn.datasets.cifar10" -- data.cifar10 once cnn.data wires it

local CNNLUA = assert(os.getenv("CNNLUA"), "CNNLUA must point at the cnnlua binary (ctest sets it)")

local sh_quote = H.sh_quote

local function run(script, args)
  local cmd = sh_quote(CNNLUA) .. " examples/" .. script .. " " .. args .. " 2>&1"
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

-- Pixel k (0-based, channel-major) of record r (1-based) in the file numbered f: a formula the
-- checks below recompute independently of the loader.
local function pixel(f, r, k) return (k * 7 + r * 13 + f * 29) % 256 end
local function label(f, r) return (r * 3 + f) % 10 end

local function write_cifar(path, f, n)
  local parts = {}
  for r = 1, n do
    local px = {}
    for k = 0, 3071 do px[k + 1] = pixel(f, r, k) end
    -- string.char takes at most a few thousand arguments at once on some builds: two halves
    parts[#parts + 1] = string.char(label(f, r)) .. string.char(table.unpack(px, 1, 1536)) ..
      string.char(table.unpack(px, 1537, 3072))
  end
  local fh = assert(io.open(path, "wb"))
  fh:write(table.concat(parts))
  fh:close()
end

local function write_bytes(path, s)
  local fh = assert(io.open(path, "wb"))
  fh:write(s)
  fh:close()
end

-- MNIST-layout IDX files: n 28x28 images whose class decides a bright square's place
local function write_idx(dir, prefix, n)
  local img = {string.pack(">I4I4I4I4", 0x803, n, 28, 28)}
  local lab = {string.pack(">I4I4", 0x801, n)}
  for i = 1, n do
    local c = (i * 7) % 10
    local px = {}
    for k = 1, 784 do px[k] = (k * 11 + i) % 50 end
    local r0, c0 = 2 + (c // 5) * 12, 2 + (c % 5) * 5
    for r = r0, r0 + 9 do
      for k = c0, c0 + 3 do px[r * 28 + k + 1] = 250 end
    end
    img[#img + 1] = string.char(table.unpack(px))
    lab[#lab + 1] = string.char(c)
  end
  write_bytes(dir .. "/" .. prefix .. "-images-idx3-ubyte", table.concat(img))
  write_bytes(dir .. "/" .. prefix .. "-labels-idx1-ubyte", table.concat(lab))
end

local tmp
setup(function()
  tmp = os.tmpname()
  os.remove(tmp)
  H.mkdir_p(tmp .. "/cifar", tmp .. "/fashion")
  for f = 1, 5 do write_cifar(string.format("%s/cifar/data_batch_%d.bin", tmp, f), f, 13) end -- 65 images
  write_cifar(tmp .. "/cifar/test_batch.bin", 6, 32)
  write_idx(tmp .. "/fashion", "train", 100)
  write_idx(tmp .. "/fashion", "t10k", 40)
  -- an ImageFolder: 2 classes x 4 PNGs of 32x32 (reddish and bluish)
  cnn.manual_seed(3)
  for ci, cname in ipairs {"blue", "red"} do
    H.mkdir_p(tmp .. "/folder/" .. cname)
    for i = 1, 4 do
      local img = cnn.rand(3, 32, 32) * 0.3
      img[ci == 1 and 3 or 1]:add_(0.6)
      cnn.image.save(string.format("%s/folder/%s/%d.png", tmp, cname, i), img)
    end
  end
end)

teardown(function()
  H.rmdir(tmp)
end)

local function last_accuracy(out)
  local last = out:match("([^\n]+)\n?$")
  return tonumber(last and last:match("^test accuracy: (%d+%.%d%d)%%$")), last
end

-- the CSV's rows (header first) and the last row's test accuracy
local function read_csv(path)
  local rows = {}
  for line in assert(io.open(path)):read("a"):gmatch("[^\n]+") do rows[#rows + 1] = line end
  return rows, tonumber(rows[#rows]:match("^%d+,[^,]+,[^,]+,[^,]+,([^,]+)"))
end

-- the run's outputs agree with one another: last line, CSV (header + one row), checkpoint
local function check_outputs(out, code, dir)
  assert.are.equal(0, code, out)
  local acc, last = last_accuracy(out)
  assert.is_not_nil(acc, "last line was: " .. tostring(last))
  assert.is_nil(out:find("\r", 1, true)) -- not a terminal: no progress line
  local rows, csv_acc = read_csv(dir .. "/metrics.csv")
  assert.are.equal(2, #rows)
  assert.truthy(rows[1]:find("^epoch,train_loss,train_acc,test_loss,test_acc"))
  assert.are.equal(string.format("%.2f", acc), string.format("%.2f", 100 * csv_acc))
  assert.are.same({3, 420, 1000}, cnn.image.load(dir .. "/curves.png"):shape()) -- loss and accuracy panels
  local state = cnn.checkpoint.load(dir .. "/checkpoint.safetensors")
  assert.are.equal(1, state.epoch)
  assert.is_not_nil(state.optimizer.state[1].momentum_buffer)
  return state
end

describe("every example", function()
  it("answers --help with its usage and exit status 0, doing nothing else", function()
    local lfs = require "lfs"
    local names = {}
    for name in lfs.dir("examples") do
      if name:match("%.lua$") then names[#names + 1] = name end
    end
    table.sort(names)
    assert.is_true(#names >= 7, "found " .. #names .. " examples")
    for _, name in ipairs(names) do
      local out, code = run(name, "--help")
      assert.are.equal(0, code, name .. ": " .. out)
      assert.truthy(out:find("^Usage: " .. name:gsub("%p", "%%%0")), name .. " printed: " .. out)
      assert.truthy(out:find("-h, --help", 1, true), name .. " printed: " .. out)
    end
  end)
end)

describe("data.cifar10", function()
  it("parses records: labels 1..10, pixels channel-major in [0, 1], the train files in order", function()
    local ds = cifar10(tmp .. "/cifar")
    assert.are.equal(65, #ds)
    assert.are.same({"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"},
      ds.classes)
    for _, i in ipairs {1, 13, 14, 40, 65} do
      local f, r = (i - 1) // 13 + 1, (i - 1) % 13 + 1
      local x, y = ds:get(i)
      assert.are.same({3, 32, 32}, x:shape())
      assert.are.equal(label(f, r) + 1, y)
      for _, p in ipairs {{1, 1, 1}, {1, 1, 2}, {2, 5, 7}, {3, 32, 32}, {3, 17, 1}} do
        local k = (p[1] - 1) * 1024 + (p[2] - 1) * 32 + (p[3] - 1)
        assert.is_true(math.abs(x[p[1]][p[2]][p[3]] - pixel(f, r, k) / 255) < 1e-6)
      end
    end
    assert.is_true(ds.labels:min():item() >= 1 and ds.labels:max():item() <= 10)
    local pair = ds[14]
    assert.are.equal(label(2, 1) + 1, pair[2])
    -- a DataLoader batch gathers the same images and labels as get
    local loader = cnn.data.DataLoader(ds, {batch_size = 65})
    for xb, yb in loader:iter() do
      assert.are.same({65, 3, 32, 32}, xb:shape())
      for _, i in ipairs {1, 30, 65} do
        local x, y = ds:get(i)
        assert.are.equal(y, yb[i])
        assert.is_true(cnn.allclose(x, xb[i], 0, 0))
      end
    end
    local test = cifar10(tmp .. "/cifar", "test")
    assert.are.equal(32, #test)
    assert.are.equal(label(6, 32) + 1, select(2, test:get(32)))
  end)

  it("finds the files in a cifar-10-batches-bin sub-folder", function()
    local d = tmp .. "/nested"
    H.mkdir_p(d .. "/cifar-10-batches-bin")
    write_cifar(d .. "/cifar-10-batches-bin/test_batch.bin", 1, 2)
    assert.are.equal(2, #cifar10(d, "test"))
  end)

  it("names the file and the problem on bad input", function()
    local d = tmp .. "/bad"
    H.mkdir_p(d)
    local ok, err = pcall(cifar10, d, "test")
    assert.is_false(ok)
    assert.truthy(err:find("test_batch.bin not found", 1, true), err)
    write_bytes(d .. "/test_batch.bin", string.rep("\0", 3073 * 2 + 5))
    ok, err = pcall(cifar10, d, "test")
    assert.is_false(ok)
    assert.truthy(err:find("test_batch.bin has 6151 bytes, not a multiple of the 3073", 1, true), err)
    write_bytes(d .. "/test_batch.bin",
      string.char(3) .. string.rep("\0", 3072) .. string.char(10) .. string.rep("\0", 3072))
    ok, err = pcall(cifar10, d, "test")
    assert.is_false(ok)
    assert.truthy(err:find("record 2 has label 10, outside 0..9", 1, true), err)
    ok, err = pcall(cifar10, d, "valid")
    assert.truthy(not ok and err:find("split must be", 1, true), err)
    ok, err = pcall(cifar10, 42)
    assert.truthy(not ok and err:find("cifar10: expected a folder", 1, true), err)
    ok, err = pcall(cifar10, d) -- train files missing
    assert.truthy(not ok and err:find("data_batch_1.bin not found", 1, true), err)
    ok, err = pcall(function() return cifar10(tmp .. "/cifar"):get(66) end)
    assert.truthy(not ok and err:find("out of range", 1, true), err)
  end)
end)

local common = " --epochs 1 --threads 1 --seed 2 --batch-size 32"

describe("train_resnet.lua", function()
  it("trains on CIFAR-format files and writes the outputs", function()
    local out, code = run("train_resnet.lua", common .. " --data " .. sh_quote(tmp .. "/cifar") ..
      " --out " .. sh_quote(tmp .. "/resnet"))
    local state = check_outputs(out, code, tmp .. "/resnet")
    assert.truthy(out:find("65 training and 32 test images of CIFAR-10", 1, true), out)
    local model = cnn.models.resnet_cifar {depth = 20}
    model:load_state_dict(state.model)
  end)

  it("falls back to MNIST-layout data padded to 32x32, with --limit and a cosine schedule", function()
    local out, code = run("train_resnet.lua", common .. " --limit 50 --schedule cosine --data " ..
      sh_quote(tmp .. "/fashion") .. " --out " .. sh_quote(tmp .. "/resnet_fm"))
    local state = check_outputs(out, code, tmp .. "/resnet_fm")
    assert.truthy(out:find("50 training and 10 test images", 1, true), out)
    local model = cnn.models.resnet_cifar {depth = 20, in_channels = 1}
    model:load_state_dict(state.model)
  end)

  -- On 2 ranks the random crops come from each rank's own stream; the checkpoint keeps every
  -- rank's, so a resumed job continues exactly.
  ;(H.has_mpirun() and it or pending)("--distributed --resume continues every rank's random stream exactly", function()
    local function mpi(args)
      local out, ok = H.mpirun(2, sh_quote(CNNLUA) .. " examples/train_resnet.lua --distributed --threads 1 "
        .. "--seed 4 --batch-size 16 --limit 40 --data " .. sh_quote(tmp .. "/fashion") .. " " .. args)
      assert.is_true(ok, out)
      return out
    end
    mpi("--epochs 2 --out " .. sh_quote(tmp .. "/rd_full"))
    mpi("--epochs 1 --out " .. sh_quote(tmp .. "/rd_part"))
    local out = mpi("--epochs 2 --out " .. sh_quote(tmp .. "/rd_resumed") .. " --resume " ..
      sh_quote(tmp .. "/rd_part/checkpoint.safetensors"))
    assert.truthy(out:find("resumed from", 1, true), out)
    local part = cnn.checkpoint.load(tmp .. "/rd_part/checkpoint.safetensors")
    assert.are.equal(2, #part.rng_states)
    local r1, r2 = part.rng_states[1], part.rng_states[2]
    assert.is_true(r1:eq(r2):sum():item() < r1:numel()) -- the ranks' streams differ
    local a = cnn.checkpoint.load(tmp .. "/rd_full/checkpoint.safetensors")
    local b = cnn.checkpoint.load(tmp .. "/rd_resumed/checkpoint.safetensors")
    for name, t in pairs(a.model) do
      assert.is_true(t:eq(b.model[name]):sum():item() == t:numel(), name .. " differs after resuming")
    end
  end)

  it("rejects bad flags and lists its flags", function()
    local out, code = run("train_resnet.lua", "--depth 0")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("depth", 1, true))
    code = select(2, run("train_resnet.lua", "--schedule linear"))
    assert.are_not.equal(0, code)
    out, code = run("train_resnet.lua", "--help")
    assert.are.equal(0, code)
    for _, flag in ipairs {"--data", "--depth", "--epochs", "--batch-size", "--lr", "--schedule", "--limit", "--seed",
                            "--threads", "--save", "--resume", "--out", "--distributed"} do
      assert.truthy(out:find(flag, 1, true), flag)
    end
  end)
end)

describe("train_alexnet.lua", function()
  it("trains alexnet_cifar on CIFAR-format files", function()
    local out, code = run("train_alexnet.lua", common .. " --data " .. sh_quote(tmp .. "/cifar") ..
      " --out " .. sh_quote(tmp .. "/alex"))
    local state = check_outputs(out, code, tmp .. "/alex")
    cnn.models.alexnet_cifar():load_state_dict(state.model)
  end)
end)

describe("finetune_resnet18.lua", function()
  it("loads --weights, replaces fc and with --freeze trains only fc", function()
    cnn.manual_seed(7)
    local weights = cnn.models.resnet {depth = 18}:state_dict()
    cnn.save(tmp .. "/r18.safetensors", weights)
    local out, code = run("finetune_resnet18.lua", common .. " --freeze --image-size 32 --weights " ..
      sh_quote(tmp .. "/r18.safetensors") .. " --data " .. sh_quote(tmp .. "/folder")
      .. " --out " .. sh_quote(tmp .. "/ft"))
    local state = check_outputs(out, code, tmp .. "/ft")
    assert.truthy(out:find("6 training and 2 test images", 1, true), out)
    assert.are.same({"blue", "red"}, state.classes)
    assert.are.same({2, 512}, state.model["fc.weight"]:shape())
    for _, name in ipairs {"conv1.weight", "layer3.1.conv2.weight", "layer4.0.downsample.0.weight"} do
      assert.is_true(cnn.allclose(weights[name], state.model[name], 0, 0), name .. " changed though frozen")
    end
  end)

  it("without --weights starts from random init with a warning; a bad --weights file is named", function()
    local out, code = run("finetune_resnet18.lua", common .. " --image-size 32 --data " .. sh_quote(tmp .. "/folder") ..
      " --out " .. sh_quote(tmp .. "/ft2"))
    check_outputs(out, code, tmp .. "/ft2")
    assert.truthy(out:find("warning: no --weights", 1, true), out)
    cnn.save(tmp .. "/small.safetensors", cnn.models.lenet5():state_dict())
    out, code = run("finetune_resnet18.lua", common .. " --weights " .. sh_quote(tmp .. "/small.safetensors") ..
      " --data " .. sh_quote(tmp .. "/folder") .. " --out " .. sh_quote(tmp .. "/ft3"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("small.safetensors", 1, true), out)
  end)
end)

describe("finetune_resnet18.lua on photos", function()
  it("trains on a folder of JPEGs and PNGs of mixed sizes with loader workers", function()
    local photos = "tests/fixtures/photos/"
    local dir = tmp .. "/photos"
    local files = {a = {"rgb_420.jpg", "progressive.jpg", "cmyk.jpg", "exif_6.jpg", "rgb_411.jpg"},
                   b = {"rgb_444.jpg", "gray.jpg", "arithmetic.jpg", "exif_6.png", "rgb_440.jpg"}}
    for class, list in pairs(files) do
      H.mkdir_p(dir .. "/" .. class)
      for i, f in ipairs(list) do
        H.write_bytes(string.format("%s/%s/%d_%s", dir, class, i, f), H.read_bytes(photos .. f))
      end
    end
    local out, code = run("finetune_resnet18.lua", common .. " --image-size 32 --workers 2 --cache --data " ..
      sh_quote(dir) .. " --out " .. sh_quote(tmp .. "/ftp"))
    local state = check_outputs(out, code, tmp .. "/ftp")
    assert.truthy(out:find("8 training and 2 test images (32x32 crops)", 1, true), out)
    assert.truthy(out:find("2 loader workers", 1, true), out)
    assert.are.same({"a", "b"}, state.classes)
  end)
end)

describe("classify.lua", function()
  it("prints the top-5 classes of each image with probabilities", function()
    cnn.manual_seed(5)
    cnn.save(tmp .. "/r18c.safetensors", cnn.models.resnet {depth = 18}:state_dict())
    local names = {}
    for i = 1, 1000 do names[i] = "class number " .. i end
    H.write_bytes(tmp .. "/labels.txt", table.concat(names, "\n") .. "\n")
    local images = {"tests/fixtures/photos/rgb_420.jpg", "tests/fixtures/photos/exif_6.png"}
    local out, code = run("classify.lua", "--threads 1 --weights " .. sh_quote(tmp .. "/r18c.safetensors") ..
      " --labels " .. sh_quote(tmp .. "/labels.txt") .. " " .. table.concat(images, " "))
    assert.are.equal(0, code, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(12, #lines, out)
    for k, path in ipairs(images) do
      assert.are.equal(path, lines[(k - 1) * 6 + 1])
      local last = math.huge
      for j = 2, 6 do
        local pct = lines[(k - 1) * 6 + j]:match("^%s+(%d+%.%d%d)%%%s+(class number %d+)$")
        assert.is_not_nil(pct, lines[(k - 1) * 6 + j])
        assert.is_true(tonumber(pct) <= last)
        last = tonumber(pct)
      end
    end
    H.write_bytes(tmp .. "/short.txt", "a\nb\n")
    out, code = run("classify.lua", "--weights " .. sh_quote(tmp .. "/r18c.safetensors") .. " --labels " ..
      sh_quote(tmp .. "/short.txt") .. " " .. images[1])
    assert.are_not.equal(0, code)
    assert.truthy(out:find("has 2 names but the network has 1000 classes", 1, true), out)
    out, code = run("classify.lua", "--weights " .. sh_quote(tmp .. "/r18c.safetensors") .. " " .. tmp .. "/none.jpg")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("none.jpg", 1, true), out)
  end)
end)
