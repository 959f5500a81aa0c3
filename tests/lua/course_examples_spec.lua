-- The course's examples run as a user runs them, small and fast, on synthetic MNIST-layout files:
-- compare_optimizers.lua (its picture, its CSV and what the numbers in it must satisfy) and
-- train_vgg.lua (one epoch of a VGG-11 on 40 images: its outputs agree with one another) and
-- tour.lua's shopping example (its gradients and the graph it prints) and visualize.lua (its
-- saliency map and Grad-CAM against the same quantities computed here without hooks).
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local CNNLUA = assert(os.getenv("CNNLUA"), "CNNLUA must point at the cnnlua binary (ctest sets it)")

local sh_quote = H.sh_quote

local function run(script, args)
  local cmd = sh_quote(CNNLUA) .. " examples/" .. script .. " " .. args .. " 2>&1"
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local function write_bytes(path, s)
  local fh = assert(io.open(path, "wb"))
  fh:write(s)
  fh:close()
end

-- MNIST-layout IDX files: n 28x28 images whose class decides a bright bar's place
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
  H.mkdir_p(tmp .. "/mnist")
  write_idx(tmp .. "/mnist", "train", 96)
  write_idx(tmp .. "/mnist", "t10k", 40)
end)

teardown(function()
  H.rmdir(tmp)
end)

local function read_csv(path)
  local rows = {}
  for line in assert(io.open(path)):read("a"):gmatch("[^\n]+") do
    local cells = {}
    for cell in line:gmatch("[^,]+") do cells[#cells + 1] = cell end
    rows[#rows + 1] = cells
  end
  return rows
end

describe("compare_optimizers.lua", function()
  it("trains every optimiser and initialisation and draws their losses in one picture", function()
    local dir = tmp .. "/compare"
    local out, code = run("compare_optimizers.lua", "--steps 12 --batch-size 16 --threads 1 --smooth 3 --data " ..
      sh_quote(tmp .. "/mnist") .. " --out " .. sh_quote(dir))
    assert.are.equal(0, code, out)
    for _, name in ipairs {"SGD", "Momentum", "Adagrad", "RMSprop", "Adam", "std 0.01", "Xavier", "He"} do
      assert.truthy(out:find(name .. "%s+loss over the last 1 steps %d"), name .. " missing in:\n" .. out)
    end
    assert.are.same({3, 450, 1200}, cnn.image.load(dir .. "/compare.png"):shape())
    local rows = read_csv(dir .. "/losses.csv")
    assert.are.equal(13, #rows) -- header and 12 steps
    assert.are.same({"step", "optimiser SGD", "optimiser Momentum", "optimiser Adagrad", "optimiser RMSprop",
      "optimiser Adam", "initialisation std 0.01", "initialisation Xavier", "initialisation He"}, rows[1])
    for s = 2, 13 do
      -- He initialisation with plain SGD is the optimisers' SGD run: same weights, same batches
      assert.are.equal(rows[s][2], rows[s][9])
      -- std 0.01 through four ReLU layers leaves the logits near 0: the loss stays at ln 10
      assert.is_true(math.abs(tonumber(rows[s][7]) - math.log(10)) < 1e-3, rows[s][7])
    end
    -- every optimiser starts from the same loss and moves away from it
    for c = 3, 6 do
      assert.are.equal(rows[2][2], rows[2][c])
      assert.are_not.equal(rows[13][2], rows[13][c])
    end
  end)

  it("rejects a bad option with a usage message", function()
    local out, code = run("compare_optimizers.lua", "--steps 0")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("--steps must be a positive integer", 1, true), out)
    -- an --out it cannot write was found after all eight runs had trained
    local file = tmp .. "/not_a_folder"
    assert(io.open(file, "w")):close()
    out, code = run("compare_optimizers.lua", "--steps 12 --data " .. sh_quote(tmp .. "/mnist") .. " --out " ..
      sh_quote(file .. "/run"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("--out: cannot create " .. file .. "/run: " .. file .. " is not a folder", 1, true), out)
    assert.is_nil(out:find("SGD", 1, true), out) -- before the runs
  end)
end)

describe("train_vgg.lua", function()
  it("trains vgg_cifar on MNIST-layout data padded to 32x32 and writes the outputs", function()
    local dir = tmp .. "/vgg"
    local out, code = run("train_vgg.lua", "--epochs 1 --threads 1 --seed 2 --batch-size 16 --limit 40 --data " ..
      sh_quote(tmp .. "/mnist") .. " --out " .. sh_quote(dir))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("VGG-11-BN (CIFAR), 9755274 parameters; 40 training and 8 test images", 1, true), out)
    local acc = tonumber(out:match("test accuracy: (%d+%.%d%d)%%\n?$"))
    assert.is_not_nil(acc, out)
    local rows = read_csv(dir .. "/metrics.csv")
    assert.are.equal(2, #rows)
    assert.are.equal(string.format("%.2f", acc), string.format("%.2f", 100 * tonumber(rows[2][5])))
    local state = cnn.checkpoint.load(dir .. "/checkpoint.safetensors")
    assert.are.equal(1, state.epoch)
    assert.is_true(state.batch_norm)
    cnn.nn.skip_init(cnn.models.vgg_cifar, {depth = 11, in_channels = 1}):load_state_dict(state.model)
  end)

  it("rejects a depth VGG does not have", function()
    local out, code = run("train_vgg.lua", "--depth 12")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("--depth must be 11, 13, 16 or 19", 1, true), out)
  end)

  it("reads a negative number after an option as its value (argparse said: unknown option '-1')", function()
    local out, code = run("train_vgg.lua", "--epochs -1")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("--epochs must be a positive integer", 1, true), out)
    assert.is_nil(out:find("unknown option", 1, true), out)
    assert.are.same({"--lr=-0.1", "--n=-1e3", "--out", "-", "-h", "pos"},
      cnn.util.cli_args({"--lr", "-0.1", "--n", "-1e3", "--out", "-", "-h", "pos"}))
    assert.are.same({"--lr=-inf", "--x=-NaN", "--", "--y", "-1"},
      cnn.util.cli_args({"--lr", "-inf", "--x", "-NaN", "--", "--y", "-1"}))
  end)

  it("names the option whose value is not a number (argparse said: malformed argument 'abc')", function()
    for _, c in ipairs({{"train_vgg.lua", "--epochs abc", "--epochs must be an integer, got 'abc'"},
                        {"train_lenet.lua", "--epochs 1.5", "--epochs must be an integer, got '1.5'"},
                        {"train_resnet.lua", "--lr fast", "--lr must be a finite number, got 'fast'"},
                        {"train_lenet.lua", "--lr 1e999", "--lr must be a finite number, got '1e999'"},
                        {"train_lenet.lua", "--lr -1e999", "--lr must be a finite number, got '-1e999'"},
                        {"hparam_search.lua", "--trials x", "--trials must be an integer, got 'x'"}}) do
      local out, code = run(c[1], c[2])
      assert.are_not.equal(0, code)
      assert.truthy(out:find(c[3], 1, true), out)
      assert.is_nil(out:find("malformed", 1, true), out)
    end
    assert.are.equal(12, cnn.util.cli_integer("--n")("12"))
    assert.are.equal(100, cnn.util.cli_integer("--n")("1e2"))
    assert.are.equal(-0.5, cnn.util.cli_number("--lr")("-0.5"))
    assert.is_nil(cnn.util.cli_number("--lr")("nan"))
    assert.are.same({nil, "--n must be an integer, got ''"}, {cnn.util.cli_integer("--n")("")})
  end)
end)

describe("tour.lua", function()
  it("works the shopping example backwards and prints its graph", function()
    local out, code = run("tour.lua", "")
    assert.are.equal(0, code, out)
    -- (2 * 10 + 3 * 15) * 1.1 = 71.5; d/d apple price 2 * 1.1, d/d apples 10 * 1.1, d/d tax 65
    local want = "total 71.5; gradients: apple 2.2, apples 11, orange 3.3, oranges 16.5, tax 65"
    assert.truthy(out:find(want, 1, true), out)
    assert.truthy(out:find("digraph autograd {", 1, true), out)
    assert.truthy(out:find('[label="tax\\n{}\\n= 1.1, grad 65"', 1, true), out)
    local muls = 0
    for _ in out:gmatch('label="MulBackward"') do muls = muls + 1 end
    assert.are.equal(3, muls)
    assert.truthy(out:find("gradcheck:%s+true"), out)
  end)

  it("draws the graph into the file named by its one argument (the README's shop.png form)", function()
    local dir = H.tmpdir()
    local out, code = run("tour.lua", dir .. "/shop.dot") -- .dot: the text itself, no Graphviz needed
    assert.are.equal(0, code, out)
    local f = assert(io.open(dir .. "/shop.dot"))
    local text = f:read("a")
    f:close()
    assert.truthy(text:find("digraph autograd {", 1, true), text)
    out, code = run("tour.lua", "a.dot b.dot")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("too many arguments", 1, true), out)
    H.rmdir(dir)
  end)
end)

describe("visualize.lua", function()
  local function load_png(path) return cnn.image.load(path) end

  it("explains a LeNet's top class: saliency and Grad-CAM equal autograd's, computed without hooks", function()
    cnn.manual_seed(8)
    local net = cnn.models.lenet5 {}
    local classes = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    cnn.checkpoint.save(tmp .. "/lenet.safetensors", {model = net:state_dict(), classes = classes, epoch = 1})
    local img = cnn.zeros(1, 28, 28)
    img:narrow(2, 6, 12):narrow(3, 9, 8):fill_(0.9) -- a bright block
    cnn.image.save(tmp .. "/block.png", img)
    local dir = tmp .. "/vis"
    local out, code = run("visualize.lua", "--weights " .. sh_quote(tmp .. "/lenet.safetensors") .. " --image " ..
      sh_quote(tmp .. "/block.png") .. " --size 56 --out " .. sh_quote(dir))
    assert.are.equal(0, code, out)
    local maps = cnn.load(dir .. "/maps.safetensors")
    local x = cnn.image.load(tmp .. "/block.png"):view(1, 1, 28, 28) -- LeNet: no normalisation
    assert.is_true(cnn.allclose(maps.input, x[1], 0, 0))
    net:eval()
    local probs = cnn.F.softmax(cnn.no_grad(function() return net(x) end), 2)[1]
    assert.is_true(cnn.allclose(maps.probs, probs, 1e-5, 1e-6))
    local target = probs:argmax():item()
    assert.truthy(out:find(string.format("%%d+%%.%%d%%%%  %d %s  <%%- explained", target, classes[target])), out)

    -- saliency: |d logit_target / d x|, the largest over channels
    local xr = x:clone():requires_grad_()
    net(xr):narrow(2, target, 1):sum():backward()
    assert.is_true(cnn.allclose(maps.saliency, xr.grad[1]:abs():max(1), 1e-5, 1e-7))
    -- Grad-CAM on the second convolution's ReLU (features.4): its output made a leaf
    local a = cnn.no_grad(function()
      local h = x
      for i = 1, 5 do h = net.features[i](h) end
      return h
    end):requires_grad_()
    local logit = net.classifier(net.features[6](a):flatten(2)):narrow(2, target, 1):sum()
    logit:backward()
    local alpha = a.grad[1]:mean(3):mean(2):view(-1, 1, 1)
    local cam = (a[1] * alpha):sum(1):relu()
    assert.are.same({10, 10}, maps.gradcam:shape())
    assert.is_true(cnn.allclose(maps.gradcam, cam, 1e-4, 1e-7))

    -- the pictures: grey filters and maps, colour heat maps at --size
    assert.are.equal(1, load_png(dir .. "/filters.png"):size(1))
    assert.are.equal(1, load_png(dir .. "/features_1.png"):size(1))
    assert.are.same({3, 56, 56}, load_png(dir .. "/saliency.png"):shape())
    assert.are.same({3, 56, 56}, load_png(dir .. "/gradcam.png"):shape())
    assert.are.same({3, 56 + 8, 3 * 60 + 4}, load_png(dir .. "/summary.png"):shape())
    assert.truthy(out:find("stage 2: features.4 (conv features.3 + ReLU), 16 maps of 10x10", 1, true), out)
  end)

  it("draws an RGB network's filters in colour, pads a 28x28 image for a 32x32 network, and takes --class", function()
    cnn.manual_seed(9)
    cnn.save(tmp .. "/r8.safetensors", cnn.models.resnet_cifar {depth = 8}:state_dict())
    local img = cnn.rand(3, 28, 28)
    cnn.image.save(tmp .. "/noise.png", img)
    local dir = tmp .. "/vis_rgb"
    local out, code = run("visualize.lua", "--weights " .. sh_quote(tmp .. "/r8.safetensors") .. " --image " ..
      sh_quote(tmp .. "/noise.png") .. " --class 4 --size 32 --max-maps 4 --out " .. sh_quote(dir))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("resnet_cifar", 1, true), out)
    assert.truthy(out:find("  4 4  <- explained", 1, true), out) -- no class names in a plain state_dict
    assert.truthy(out:find("stage 4: layer3, 64 maps of 8x8 (4 shown)", 1, true), out)
    assert.are.equal(3, load_png(dir .. "/filters.png"):size(1))
    local maps = cnn.load(dir .. "/maps.safetensors")
    -- padded by 2 with zeros before the CIFAR normalisation: the corner is (0 - mean) / std
    assert.are.same({3, 32, 32}, maps.input:shape())
    assert.is_true(math.abs(maps.input[1][1][1] - (0 - 0.4914) / 0.2470) < 1e-5)
  end)

  it("names what it cannot use", function()
    cnn.save(tmp .. "/odd.safetensors", {w = cnn.ones(2)})
    local out, code = run("visualize.lua", "--weights " .. sh_quote(tmp .. "/odd.safetensors") .. " --image " ..
      sh_quote(tmp .. "/block.png"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("cannot tell which network", 1, true), out)
    out, code = run("visualize.lua", "--image " .. sh_quote(tmp .. "/block.png"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("--weights and --image are required", 1, true), out)
    out, code = run("visualize.lua", "--weights " .. sh_quote(tmp .. "/lenet.safetensors") .. " --image " ..
      sh_quote(tmp .. "/block.png") .. " --class eleven --out " .. sh_quote(tmp .. "/vis_bad"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("--class eleven is not a class of this network", 1, true), out)
  end)
end)
