-- Trains AlexNet. By default the CIFAR-sized network (models.alexnet_cifar, 3x32x32) on CIFAR-10 when
-- --data holds its binary files, otherwise on an MNIST-layout folder (Fashion-MNIST by default) padded
-- to 32x32. With --full, the 2012 network (models.alexnet, 3x227x227) on an ImageFolder of photos (one
-- folder per class; DIR/train and DIR/val when both exist, otherwise every 4th image is held out);
-- --full without --data makes a tiny synthetic folder of coloured shapes first, so it runs anywhere.
-- Writes a checkpoint, a CSV of per-epoch metrics and a plot of the training curves; the last line
-- is `test accuracy: NN.NN%`. Weights start from He et al.'s init (--init pytorch for PyTorch's
-- default, under which this network sits at chance for hundreds of steps), SGD at lr 0.005.
--
--   cnnlua examples/train_alexnet.lua --data ~/cifar-10-batches-bin --epochs 20
--   cnnlua examples/train_alexnet.lua --limit 5000 --epochs 2             -- Fashion-MNIST, a quick try:
--                                                                         -- ~50% test accuracy (chance 10%)
--   cnnlua examples/train_alexnet.lua --full --epochs 3                   -- synthetic shapes at 227x227
local argparse = require "argparse"
local int, num = cnn.util.cli_integer, cnn.util.cli_number -- converters that name their option
local optim, data = cnn.optim, cnn.data
local T = data.transforms
local folders = require "cnn.datasets.folders"

local parser = argparse("train_alexnet.lua",
  "Train AlexNet on CIFAR-10 / Fashion-MNIST, or the full network on photo folders.")
parser:option("--data", "CIFAR-10 binary files or MNIST-layout IDX files; with --full, a folder of JPEGs or PNGs.")
parser:flag("--full", "The 2012 network for 227x227 images, on an ImageFolder (synthetic when --data is not given).")
parser:option("--image-size", "With --full: the side images are cropped or padded to (at least 67).", "227")
  :convert(int "--image-size")
parser:option("--epochs", "Number of epochs (in all, when resuming).", "10"):convert(int "--epochs")
parser:option("--batch-size", "Mini-batch size.", "128"):convert(int "--batch-size")
parser:option("--lr", "Initial learning rate.", "0.005"):convert(num "--lr")
parser:option("--momentum", "SGD momentum.", "0.9"):convert(num "--momentum")
parser:option("--weight-decay", "L2 weight decay.", "5e-4"):convert(num "--weight-decay")
parser:option("--schedule", "Learning-rate schedule: step (x0.1 at 50% and 75% of the epochs) or cosine.", "step")
  :choices {"step", "cosine"}
parser:option("--limit", "Use only the first N training images and N/5 test images (evenly spaced ones of an "
  .. "ImageFolder, whose samples go class by class)."):convert(int "--limit")
parser:option("--init", "Weights: kaiming (He et al.'s normal, zero biases) or pytorch (its default layer init).",
  "kaiming"):choices {"kaiming", "pytorch"}
parser:option("--seed", "Random seed (initialisation, shuffling, augmentation).", "1"):convert(int "--seed")
parser:option("--threads", "Threads for the kernels.", tostring(cnn.get_num_threads())):convert(int "--threads")
parser:option("--save", "Checkpoint path (default: OUT/checkpoint.safetensors).")
parser:option("--resume", "Continue from this checkpoint (model, optimiser, epoch).")
parser:option("--out", "Output folder (default: the resumed checkpoint's folder, else runs/alexnet-<time>).")
local args = parser:parse(cnn.util.cli_args(arg))

for _, name in ipairs {"image_size", "epochs", "batch_size", "seed", "threads", "limit"} do
  local v = args[name]
  if (v == nil and name ~= "limit") or (v ~= nil and v < 1 and name ~= "seed") then
    parser:error(string.format("--%s must be a positive integer", name:gsub("_", "-")))
  end
end
if args.limit and args.limit < 5 then parser:error("--limit must be at least 5 (N/5 test images)") end
if args.image_size < 67 then parser:error("--image-size must be at least 67 (AlexNet's three pools need it)") end
for _, name in ipairs {"lr", "momentum", "weight_decay"} do
  if not args[name] or args[name] < 0 then
    parser:error(string.format("--%s must be a non-negative number", name:gsub("_", "-")))
  end
end

cnn.set_num_threads(args.threads)
cnn.manual_seed(args.seed)
-- the output folder: --out, else the folder of the checkpoint being resumed, else a new one; made at
-- its first write (cnn.trainer.fit), so a run that fails before, on a bad --data say, leaves none behind
local out = cnn.trainer.out_dir {out = args.out, resume = args.resume,
                                 prefix = "alexnet" .. (args.full and "-full" or ""), create = false}
local ckpt_path = args.save or (out .. "/checkpoint.safetensors")

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end



local train_set, test_set, train_tf, test_tf, in_channels, what, classes, model
local cleanup -- the synthetic shapes' temporary folder: it goes when the script ends, by an error or Ctrl-C too
local _ <close> = setmetatable({}, {__close = function() if cleanup then folders.remove(cleanup) end end})
if args.full then
  what = args.data and "photo folders" or "synthetic shapes"
  -- random resized crops and flips to train, resize + centre crop to test, ImageNet normalization:
  -- the datasets' own transforms, run in C with the decoding
  train_set, test_set, cleanup = folders.open(args.data, args.image_size, args.seed)
  classes = train_set.classes
  model = cnn.models.alexnet {num_classes = #classes}
else
  local dir = args.data or "/usr/share/datasets/fashion-mnist"
  args.data = dir
  if exists(dir .. "/data_batch_1.bin") or exists(dir .. "/cifar-10-batches-bin/data_batch_1.bin") then
    train_set, test_set = data.cifar10(dir, "train"), data.cifar10(dir, "test")
    local norm = T.normalize({0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616})
    train_tf = T.compose {T.random_crop(32, {padding = 4}), T.random_hflip(), norm}
    test_tf, in_channels, what = norm, 3, "CIFAR-10"
  else
    train_set, test_set = data.mnist(dir, "train"), data.mnist(dir, "test")
    local pad, norm = T.random_crop(32, {padding = 2}), T.normalize(0.2860, 0.3530)
    train_tf = T.compose {pad, T.random_crop(32, {padding = 4}), norm}
    test_tf, in_channels, what = T.compose {pad, norm}, 1, "MNIST-layout data padded to 32x32"
  end
  classes = train_set.classes
  model = cnn.models.alexnet_cifar {num_classes = #classes, in_channels = in_channels}
end
-- PyTorch's default layer init shrinks the signal about 2.5x a layer here: the logits start with a
-- spread of 0.01 and SGD at lr 0.01 leaves the loss at ln 10 (chance) for hundreds of steps. He et
-- al.'s init keeps each ReLU layer's output variance, so the first epoch already learns; the last
-- layer starts small (N(0, 0.01), as torchvision's VGG), so the first loss is ln 10, not more.
if args.init == "kaiming" then
  local layers = {}
  for _, m in ipairs(model:modules()) do
    if m.weight and (m.weight:dim() == 4 or m.weight:dim() == 2) then layers[#layers + 1] = m end
  end
  cnn.no_grad(function()
    for i, m in ipairs(layers) do
      if i < #layers then
        cnn.nn.init.kaiming_normal_(m.weight, 0, "fan_in", "relu")
      else
        cnn.nn.init.normal_(m.weight, 0, 0.01)
      end
      if m.bias then m.bias:zero_() end
    end
  end)
end
if args.limit then -- the first N training and N/5 test images
  -- an ImageFolder lists its samples class by class: the first N would be one or two classes (a
  -- test accuracy of 100% on one class), so N evenly spaced samples instead, every class in turn
  local function first(set, n)
    n = math.min(n, #set)
    if not args.full then return data.Subset(set, n) end
    local idx = {}
    for k = 1, n do idx[k] = (k - 1) * #set // n + 1 end
    return data.Subset(set, idx)
  end
  train_set, test_set = first(train_set, args.limit), first(test_set, args.limit // 5)
end
local loader = data.DataLoader(train_set, {batch_size = args.batch_size, shuffle = true,
                                           drop_last = #train_set > args.batch_size,
                                           seed = args.seed, transform = train_tf})
local test_loader = data.DataLoader(test_set, {batch_size = args.full and 32 or 250, transform = test_tf})

local opt = optim.SGD(model:parameters(), {lr = args.lr, momentum = args.momentum, weight_decay = args.weight_decay})

local lr_at = cnn.trainer.schedule(args.schedule, args.lr, args.epochs)

local name = args.full and string.format("AlexNet (%dx%d)", args.image_size, args.image_size) or "AlexNet-CIFAR"

print(string.format("%s, %d parameters; %d training and %d test images of %s from %s; %d classes; %d threads",
  name, model:num_parameters(), #train_set, #test_set, what, args.data or "a temporary folder", #classes,
  cnn.get_num_threads()))

local _, test_acc = cnn.trainer.fit {model = model, optimizer = opt, loader = loader, test_loader = test_loader,
  epochs = args.epochs, out = out, checkpoint = ckpt_path, resume = args.resume, lr_at = lr_at, progress_every = 5,
  title = name .. " training", extra_state = {full = args.full or false, classes = classes}}

print(string.format("wrote %s/{metrics.csv,curves.png} and %s", out, ckpt_path))
print(string.format("test accuracy: %.2f%%", 100 * test_acc))
