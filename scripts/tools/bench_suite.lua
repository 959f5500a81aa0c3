-- cnnlua's side of scripts/tools/bench: runs ONE benchmark row in this process and prints one
-- `RESULT key=value ...` line (images/s over a time-boxed window after warm-up). The driver starts
-- one process per (framework, row, round), so the peak RSS it reads for the process is the row's.
-- bench_torch.py is the PyTorch side: same rows, same networks, data, optimiser and loop.
--   cnnlua scripts/tools/bench_suite.lua ROW [--threads 2] [--seconds 3] [--warmup 2] [--min-steps 3]
--                                            [--data /usr/share/datasets/fashion-mnist] [--photos DIR]
-- Rows: lenet_train lenet_infer resnet20_train alexnet_train conv_lenet1 conv_lenet2 conv_resnet16
-- conv_resnet32 conv_resnet64 photo_loader; at 224x224 resnet18_train resnet18_infer resnet50_train
-- resnet50_infer alexnet224_train vgg16_train. Only the public API (as a user's script would use it).
local F, nn, optim, data = cnn.F, cnn.nn, cnn.optim, cnn.data

local row = arg[1]
local opts = {threads = 2, seconds = 3, warmup = 2, ["min-steps"] = 3,
              data = "/usr/share/datasets/fashion-mnist", photos = "/tmp/cnnlua_bench_photos"}
local i = 2
while arg[i] do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil or arg[i + 1] == nil then error("bench_suite: bad argument " .. tostring(arg[i]), 0) end
  opts[k] = (k == "data" or k == "photos") and arg[i + 1] or tonumber(arg[i + 1])
  i = i + 2
end

cnn.set_num_threads(opts.threads)
cnn.manual_seed(1)

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
local have_fmnist = exists(opts.data .. "/train-images-idx3-ubyte.gz")
  or exists(opts.data .. "/train-images-idx3-ubyte")

-- One SGD training step on (x, y), as cnn.trainer does it (the loss read back every step).
local function train_step(model, opt, x, y)
  local loss = F.cross_entropy(model(x), y)
  opt:zero_grad()
  loss:backward()
  opt:step()
  return loss:item()
end

-- A few synthetic batches (N(0, 1) images, uniform labels), cycled: throughput only.
local function synthetic(n, shape, classes, count)
  local xs, ys = {}, {}
  for k = 1, count do
    xs[k] = cnn.randn(n, table.unpack(shape))
    ys[k] = cnn.randint(1, classes, {n})
  end
  local k = 0
  return function()
    k = k % count + 1
    return xs[k], ys[k]
  end
end

-- Each row: returns step (one batch), images per step, and where the data came from.
local ROWS = {}

-- LeNet-5 training at batch 64 on Fashion-MNIST (the whole training set loaded, shuffled batches
-- gathered by the DataLoader as train_lenet.lua does; a new epoch when one ends).
function ROWS.lenet_train()
  local model = cnn.models.lenet5()
  local opt = optim.SGD(model:parameters(), {lr = 0.02, momentum = 0.9})
  local source, what
  if have_fmnist then
    local loader = data.DataLoader(data.mnist(opts.data, "train"),
                                   {batch_size = 64, shuffle = true, drop_last = true, seed = 1})
    local it = loader:iter()
    source = function()
      local x, y = it()
      if not x then it = loader:iter(); x, y = it() end
      return x, y
    end
    what = "fashion-mnist"
  else
    source, what = synthetic(64, {1, 28, 28}, 10, 8), "synthetic"
  end
  return function() train_step(model, opt, source()) end, 64, what
end

-- LeNet-5 inference at batch 1000 (eval mode, no autograd): the Fashion-MNIST test set in 10
-- batches when present.
function ROWS.lenet_infer()
  local model = cnn.models.lenet5()
  model:eval()
  local xs, what = {}, "synthetic"
  if have_fmnist then
    local test = data.mnist(opts.data, "test")
    local x = data.DataLoader(test, {batch_size = #test}):iter()()
    for k = 1, 10 do xs[k] = x:narrow(1, (k - 1) * 1000 + 1, 1000) end
    what = "fashion-mnist"
  else
    for k = 1, 10 do xs[k] = cnn.rand(1000, 1, 28, 28) end
  end
  local k = 0
  return function()
    k = k % #xs + 1
    cnn.no_grad(function() return model(xs[k]):argmax(2) end)
  end, 1000, what
end

-- ResNet-20 (option A) training at batch 128 on 3x32x32, as train_resnet.lua's optimiser.
function ROWS.resnet20_train()
  local model = cnn.models.resnet_cifar {depth = 20}
  local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9, weight_decay = 1e-4})
  local source = synthetic(128, {3, 32, 32}, 10, 4)
  return function() train_step(model, opt, source()) end, 128, "synthetic"
end

-- alexnet_cifar training at batch 128 on 3x32x32 (dropout on), as train_alexnet.lua's optimiser.
function ROWS.alexnet_train()
  local model = cnn.models.alexnet_cifar()
  local opt = optim.SGD(model:parameters(), {lr = 0.01, momentum = 0.9, weight_decay = 5e-4})
  local source = synthetic(128, {3, 32, 32}, 10, 4)
  return function() train_step(model, opt, source()) end, 128, "synthetic"
end

-- ImageNet-size rows (scripts/tools/bench --imagenet): ResNet-18/50 (torchvision's), VGG-16 and
-- the 2012 AlexNet at batch 16 of synthetic 3x224x224 images, 1000 classes, SGD momentum 0.9
-- (weight decay 1e-4, 5e-4 for AlexNet and VGG), training and (ResNets) eval-mode inference under
-- no_grad; as bench_torch.py.
local IMAGENET = {
  resnet18 = function() return cnn.models.resnet{depth = 18} end,
  resnet50 = function() return cnn.models.resnet{depth = 50} end,
  vgg16 = function() return cnn.models.vgg{depth = 16} end,
  alexnet224 = function() return cnn.models.alexnet() end,
}
for _, r in ipairs {{"resnet18", true}, {"resnet18", false}, {"resnet50", true}, {"resnet50", false},
  {"alexnet224", true}, {"vgg16", true}} do
  local name, train = r[1], r[2]
  ROWS[name .. (train and "_train" or "_infer")] = function()
    local model = IMAGENET[name]()
    local source = synthetic(16, {3, 224, 224}, 1000, 2)
    if train then
      local wd = name:match("^resnet") and 1e-4 or 5e-4
      local opt = optim.SGD(model:parameters(), {lr = 0.01, momentum = 0.9, weight_decay = wd})
      return function() train_step(model, opt, source()) end, 16, "synthetic"
    end
    model:eval()
    return function()
      local x = source()
      cnn.no_grad(function() return model(x):argmax(2) end)
    end, 16, "synthetic"
  end
end

-- Single conv layers, forward + backward (input, weight and bias gradients) of a layer inside a
-- network: N, C, H (= W), O, k, stride, padding, bias.
local CONVS = {
  conv_lenet1 = {64, 1, 28, 6, 5, 1, 2, true},
  conv_lenet2 = {64, 6, 14, 16, 5, 1, 0, true},
  conv_resnet16 = {128, 16, 32, 16, 3, 1, 1, false},
  conv_resnet32 = {128, 32, 16, 32, 3, 1, 1, false},
  conv_resnet64 = {128, 64, 8, 64, 3, 1, 1, false},
}
for name, c in pairs(CONVS) do
  ROWS[name] = function()
    local N, C, H, O, k, s, p, bias = table.unpack(c)
    local conv = nn.Conv2d(C, O, k, {stride = s, padding = p, bias = bias})
    local x = cnn.randn(N, C, H, H):requires_grad_()
    local o = (H + 2 * p - k) // s + 1
    local gy = cnn.randn(N, O, o, o)
    return function()
      x.grad = nil
      conv:zero_grad()
      conv(x):backward(gy)
    end, N, "synthetic"
  end
end

-- The photo loader: an ImageFolder of JPEGs (scripts/tools/make_photo_folder.py, ~500x375)
-- decoded, random_resized_crop(224) + flip + ImageNet normalization, batches of 64 shuffled, by
-- the DataLoader's 2 worker threads; a step takes the next batch (a new epoch when one ends).
function ROWS.photo_loader()
  local T = data.transforms
  local norm = T.normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)
  local tf = T.compose {T.random_resized_crop(224), T.random_hflip(), norm}
  local ds = data.ImageFolder(opts.photos, {transform = tf})
  local loader = data.DataLoader(ds, {batch_size = 64, shuffle = true, drop_last = true, seed = 1, workers = 2})
  local it = loader:iter()
  return function()
    local x = it()
    if not x then
      it = loader:iter()
      x = it()
    end
    assert(x:size(1) == 64)
  end, 64, "photos"
end

local make = ROWS[row]
if not make then
  local names = {}
  for k in pairs(ROWS) do names[#names + 1] = k end
  table.sort(names)
  error("bench_suite: unknown row '" .. tostring(row) .. "' (" .. table.concat(names, ", ") .. ")", 0)
end

local step, batch, what = make()
local now = cnn.wall_time
-- warm-up: --warmup steps and at least 0.3 s (first-use allocations, caches, thread pools settle)
local t_end = now() + 0.3
local w = 0
while w < opts.warmup or now() < t_end do step(); w = w + 1 end
-- measurement: at least --min-steps steps and --seconds of wall time
local steps, t0, c0 = 0, now(), os.clock() -- os.clock: CPU time of the process, every thread
local elapsed
repeat
  step()
  steps = steps + 1
  elapsed = now() - t0
until steps >= opts["min-steps"] and elapsed >= opts.seconds
local cpu = os.clock() - c0
-- this process image's peak RSS (getrusage's ru_maxrss would also count the parent's memory when
-- the driver spawns with vfork: the kernel folds the pre-exec address space into it)
local hwm = -1
local f = io.open("/proc/self/status")
if f then
  hwm = tonumber(f:read("a"):match("VmHWM:%s*(%d+)")) or -1
  f:close()
end
print(string.format("RESULT images_per_s=%.3f steps=%d seconds=%.3f warmup_steps=%d data=%s threads=%d vmhwm_kb=%d "
  .. "cpu_ms_per_image=%.4f", steps * batch / elapsed, steps, elapsed, w, what, cnn.get_num_threads(), hwm,
  1000 * cpu / (steps * batch)))
