-- Trains a CIFAR ResNet (He et al. 2016: depth 20/32/44/56/110) on 32x32 images: CIFAR-10 when --data
-- holds its binary files (data_batch_1..5.bin, test_batch.bin), otherwise an MNIST-layout folder
-- (Fashion-MNIST by default) padded from 28x28 to 32x32. Writes a checkpoint, a CSV of per-epoch
-- metrics and a plot of the training curves; the last line is `test accuracy: NN.NN%`.
--
--   cnnlua examples/train_resnet.lua --data ~/cifar-10-batches-bin --epochs 30
--   cnnlua examples/train_resnet.lua --epochs 2 --limit 5000          -- Fashion-MNIST, a quick try
--   mpirun -np 2 cnnlua examples/train_resnet.lua --distributed --threads 1   -- 2 ranks, global batch 128
--   cnnlua examples/train_resnet.lua --data ~/cifar --resume runs/resnet-.../checkpoint.safetensors --epochs 40
local argparse = require "argparse"
local int, num = cnn.util.cli_integer, cnn.util.cli_number -- converters that name their option
local optim, data = cnn.optim, cnn.data
local T = data.transforms

local parser = argparse("train_resnet.lua", "Train a CIFAR ResNet on CIFAR-10 (or Fashion-MNIST padded to 32x32).")
parser:option("--data", "Folder with CIFAR-10's binary files, or with the four MNIST-layout IDX files.",
  "/usr/share/datasets/fashion-mnist")
parser:option("--depth", "ResNet depth: 20, 32, 44, 56 or 110.", "20"):convert(int "--depth")
parser:option("--epochs", "Number of epochs (in all, when resuming).", "10"):convert(int "--epochs")
parser:option("--batch-size", "Mini-batch size.", "128"):convert(int "--batch-size")
parser:option("--lr", "Initial learning rate.", "0.1"):convert(num "--lr")
parser:option("--momentum", "SGD momentum.", "0.9"):convert(num "--momentum")
parser:option("--weight-decay", "L2 weight decay (the paper's 1e-4).", "1e-4"):convert(num "--weight-decay")
parser:option("--schedule", "Learning-rate schedule: step (x0.1 at 50% and 75% of the epochs) or cosine.", "step")
  :choices {"step", "cosine"}
parser:option("--limit", "Use only the first N training images and N/5 test images."):convert(int "--limit")
parser:option("--seed", "Random seed (initialisation, shuffling, augmentation).", "1"):convert(int "--seed")
parser:option("--threads", "Threads for the kernels.", tostring(cnn.get_num_threads())):convert(int "--threads")
parser:option("--save", "Checkpoint path (default: OUT/checkpoint.safetensors).")
parser:option("--resume", "Continue from this checkpoint (model, optimiser, epoch).")
parser:flag("--distributed",
  "Run as one rank of an MPI job (mpirun -np N cnnlua ...): --batch-size is the global batch.")
parser:option("--out", "Output folder (default: the resumed checkpoint's folder, else runs/resnet<depth>-<time>).")
local args = parser:parse(cnn.util.cli_args(arg))

for _, name in ipairs {"depth", "epochs", "batch_size", "seed", "threads", "limit"} do
  local v = args[name]
  if (v == nil and name ~= "limit") or (v ~= nil and v < 1 and name ~= "seed") then
    parser:error(string.format("--%s must be a positive integer", name:gsub("_", "-")))
  end
end
if args.limit and args.limit < 5 then parser:error("--limit must be at least 5 (N/5 test images)") end
for _, name in ipairs {"lr", "momentum", "weight_decay"} do
  if not args[name] or args[name] < 0 then
    parser:error(string.format("--%s must be a non-negative number", name:gsub("_", "-")))
  end
end

cnn.set_num_threads(args.threads)
cnn.manual_seed(args.seed)
local job = cnn.trainer.job {distributed = args.distributed, batch_size = args.batch_size, seed = args.seed}
-- the output folder: --out, else the folder of the checkpoint being resumed, else a new one; made at
-- its first write (cnn.trainer.fit), so a run that fails before, on a bad --data say, leaves none behind
local out = cnn.trainer.out_dir {out = args.out, resume = args.resume, prefix = "resnet" .. args.depth,
                                 create = false}
local ckpt_path = args.save or (out .. "/checkpoint.safetensors")

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end


-- CIFAR-10 if its files are there; otherwise MNIST layout, zero-padded by 2 to 32x32 (a fixed crop
-- of the padded image: random_crop with a window as large as the padded image moves nothing).
local cifar = exists(args.data .. "/data_batch_1.bin") or exists(args.data .. "/cifar-10-batches-bin/data_batch_1.bin")
local train_set, test_set, train_tf, test_tf, in_channels, what
if cifar then
  train_set, test_set = data.cifar10(args.data, "train"), data.cifar10(args.data, "test")
  local norm = T.normalize({0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616})
  train_tf = T.compose {T.random_crop(32, {padding = 4}), T.random_hflip(), norm}
  test_tf, in_channels, what = norm, 3, "CIFAR-10"
else
  train_set, test_set = data.mnist(args.data, "train"), data.mnist(args.data, "test")
  local pad, norm = T.random_crop(32, {padding = 2}), T.normalize(0.2860, 0.3530)
  train_tf = T.compose {pad, T.random_crop(32, {padding = 4}), norm} -- no flip: glyph-like classes
  test_tf, in_channels, what = T.compose {pad, norm}, 1, "MNIST-layout data padded to 32x32"
end
local classes = train_set.classes
if args.limit then -- the first N training and N/5 test images
  train_set = data.Subset(train_set, math.min(args.limit, #train_set))
  test_set = data.Subset(test_set, math.min(args.limit // 5, #test_set))
end
local loader = data.DataLoader(train_set, {batch_size = job.batch_size, shuffle = true,
                                           drop_last = #train_set > args.batch_size,
                                           seed = args.seed, transform = train_tf, shard = job.shard})
local test_loader = data.DataLoader(test_set, {batch_size = 250, transform = test_tf, shard = job.test_shard})

local model = job:wrap(cnn.models.resnet_cifar {depth = args.depth, num_classes = #classes, in_channels = in_channels})
local opt = optim.SGD(model:parameters(), {lr = args.lr, momentum = args.momentum, weight_decay = args.weight_decay})

local lr_at = cnn.trainer.schedule(args.schedule, args.lr, args.epochs)

job.print(string.format("ResNet-%d, %d parameters; %d training and %d test images of %s from %s; %s schedule; "
  .. "%d threads%s",
  args.depth, model:num_parameters(), #train_set, #test_set, what, args.data, args.schedule, cnn.get_num_threads(),
  job.world_size > 1 and string.format("; %d ranks of batch %d", job.world_size, job.batch_size) or ""))

local _, test_acc = cnn.trainer.fit {model = model, optimizer = opt, loader = loader, test_loader = test_loader,
  epochs = args.epochs, out = out, checkpoint = ckpt_path, resume = args.resume, lr_at = lr_at, progress_every = 5,
  title = string.format("ResNet-%d training", args.depth), extra_state = {depth = args.depth, classes = classes}}

job.print(string.format("wrote %s/{metrics.csv,curves.png} and %s", out, ckpt_path))
job.print(string.format("test accuracy: %.2f%%", 100 * test_acc))
