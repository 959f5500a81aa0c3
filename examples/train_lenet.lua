-- Trains LeNet-5 on Fashion-MNIST (or any folder in MNIST's layout) and writes a checkpoint, a CSV
-- of per-epoch metrics, a plot of the training curves and a picture of the first layer's filters.
--
--   cnnlua examples/train_lenet.lua                      -- 10 epochs on the installed Fashion-MNIST
--   cnnlua examples/train_lenet.lua --data ~/mnist --epochs 5 --out runs/mnist
--   cnnlua examples/train_lenet.lua --resume runs/lenet-.../checkpoint.safetensors --epochs 12
--   mpirun -np 2 cnnlua examples/train_lenet.lua --distributed --threads 1   -- 2 ranks, global batch 64
local argparse = require "argparse"
local int, num = cnn.util.cli_integer, cnn.util.cli_number -- converters that name their option
local optim, data = cnn.optim, cnn.data

local parser = argparse("train_lenet.lua", "Train LeNet-5 on MNIST-layout data.")
parser:option("--data", "Folder with the four MNIST-layout IDX files (raw or .gz).",
  "/usr/share/datasets/fashion-mnist")
parser:option("--epochs", "Number of epochs (in all, when resuming).", "10"):convert(int "--epochs")
parser:option("--batch-size", "Mini-batch size.", "64"):convert(int "--batch-size")
parser:option("--lr", "Learning rate.", "0.02"):convert(num "--lr")
parser:option("--momentum", "SGD momentum.", "0.9"):convert(num "--momentum")
parser:option("--seed", "Random seed (initialisation and shuffling).", "1"):convert(int "--seed")
parser:option("--threads", "Threads for the kernels.", tostring(cnn.get_num_threads())):convert(int "--threads")
parser:option("--save", "Checkpoint path (default: OUT/checkpoint.safetensors).")
parser:option("--resume", "Continue from this checkpoint (model, optimiser, epoch).")
parser:flag("--distributed",
  "Run as one rank of an MPI job (mpirun -np N cnnlua ...): --batch-size is the global batch.")
parser:option("--out", "Output folder (default: the resumed checkpoint's folder, else runs/lenet-<time>).")
local args = parser:parse(cnn.util.cli_args(arg))

for _, name in ipairs {"epochs", "batch_size", "seed", "threads"} do
  if not args[name] or args[name] < 1 and name ~= "seed" then
    parser:error(string.format("--%s must be a positive integer", name:gsub("_", "-")))
  end
end

cnn.set_num_threads(args.threads)
cnn.manual_seed(args.seed)
local job = cnn.trainer.job {distributed = args.distributed, batch_size = args.batch_size, seed = args.seed}
-- the output folder: --out, else the folder of the checkpoint being resumed, else a new one; made at
-- its first write (cnn.trainer.fit), so a run that fails before, on a bad --data say, leaves none behind
local out = cnn.trainer.out_dir {out = args.out, resume = args.resume, prefix = "lenet", create = false}
local ckpt_path = args.save or (out .. "/checkpoint.safetensors")

local train_set = data.mnist(args.data, "train")
local test_set = data.mnist(args.data, "test")
local loader = data.DataLoader(train_set, {batch_size = job.batch_size, shuffle = true, drop_last = true,
                                           seed = args.seed, shard = job.shard})
local test_loader = data.DataLoader(test_set, {batch_size = 250, shard = job.test_shard})

local model = job:wrap(cnn.models.lenet5 {num_classes = #train_set.classes})
local opt = optim.SGD(model:parameters(), {lr = args.lr, momentum = args.momentum})

job.print(string.format("LeNet-5, %d parameters; %d training and %d test images from %s; %d threads%s",
  model:num_parameters(), #train_set, #test_set, args.data, cnn.get_num_threads(),
  job.world_size > 1 and string.format("; %d ranks of batch %d", job.world_size, job.batch_size) or ""))

local history, test_acc = cnn.trainer.fit {model = model, optimizer = opt, loader = loader, test_loader = test_loader,
  epochs = args.epochs, out = out, checkpoint = ckpt_path, resume = args.resume, title = "LeNet-5 training",
  extra_state = {classes = train_set.classes}}

-- the first layer's filters
if #history > 0 and job.main then
  local filters = model.features[1].weight:detach() -- (6, 1, 5, 5)
  local grid = cnn.image.grid(filters, {nrow = 6, padding = 1, normalize = true, pad_value = 1})
  -- 5x5 filters are too small to see: blow each pixel up to a 12x12 block (nearest neighbour)
  local c, h, w = table.unpack(grid:shape())
  grid = grid:view(c, h, 1, w, 1):expand(c, h, 12, w, 12):reshape(c, h * 12, w * 12)
  cnn.image.save(out .. "/filters.png", grid)
end
job.print(string.format("wrote %s/{metrics.csv,curves.png,filters.png} and %s", out, ckpt_path))
job.print(string.format("test accuracy: %.2f%%", 100 * test_acc))
