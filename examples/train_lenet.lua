-- Trains LeNet-5 on Fashion-MNIST (or any folder in MNIST's layout) and writes a checkpoint, a CSV
-- of per-epoch metrics, a plot of the training curves and a picture of the first layer's filters.
--
--   cnnlua examples/train_lenet.lua                      -- 10 epochs on the installed Fashion-MNIST
--   cnnlua examples/train_lenet.lua --data ~/mnist --epochs 5 --out runs/mnist
--   cnnlua examples/train_lenet.lua --resume runs/lenet-.../checkpoint.safetensors --epochs 12
local argparse = require "argparse"
local nn, F, optim, data = cnn.nn, cnn.F, cnn.optim, cnn.data

local parser = argparse("train_lenet.lua", "Train LeNet-5 on MNIST-layout data.")
parser:option("--data", "Folder with the four MNIST-layout IDX files (raw or .gz).", "/usr/share/datasets/fashion-mnist")
parser:option("--epochs", "Number of epochs (in all, when resuming).", "10"):convert(math.tointeger)
parser:option("--batch-size", "Mini-batch size.", "64"):convert(math.tointeger)
parser:option("--lr", "Learning rate.", "0.02"):convert(tonumber)
parser:option("--momentum", "SGD momentum.", "0.9"):convert(tonumber)
parser:option("--seed", "Random seed (initialisation and shuffling).", "1"):convert(math.tointeger)
parser:option("--threads", "Threads for the kernels.", tostring(cnn.get_num_threads())):convert(math.tointeger)
parser:option("--save", "Checkpoint path (default: OUT/checkpoint.safetensors).")
parser:option("--resume", "Continue from this checkpoint (model, optimiser, epoch).")
parser:option("--out", "Output folder (default: runs/lenet-<time>).")
local args = parser:parse(arg)

for _, name in ipairs {"epochs", "batch_size", "seed", "threads"} do
  if not args[name] or args[name] < 1 and name ~= "seed" then
    parser:error(string.format("--%s must be a positive integer", name:gsub("_", "-")))
  end
end

cnn.set_num_threads(args.threads)
cnn.manual_seed(args.seed)
local out = args.out or os.date("runs/lenet-%Y%m%d-%H%M%S")
os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'")
local ckpt_path = args.save or (out .. "/checkpoint.safetensors")

local train_set = data.mnist(args.data, "train")
local test_set = data.mnist(args.data, "test")
local loader = data.DataLoader(train_set, {batch_size = args.batch_size, shuffle = true, drop_last = true, seed = args.seed})
local test_loader = data.DataLoader(test_set, {batch_size = 250})

local model = cnn.models.lenet5 {num_classes = #train_set.classes}
local opt = optim.SGD(model:parameters(), {lr = args.lr, momentum = args.momentum})
local history, first_epoch = {}, 1

if args.resume then
  local state = cnn.checkpoint.load(args.resume)
  model:load_state_dict(state.model)
  opt:load_state_dict(state.optimizer)
  history = state.history or {}
  first_epoch = state.epoch + 1
  cnn.set_rng_state(state.rng_state)
  print(string.format("resumed from %s after epoch %d", args.resume, state.epoch))
end

local function evaluate()
  model:eval()
  local loss, correct, n = 0, 0, 0
  cnn.no_grad(function()
    for x, y in test_loader:iter() do
      local logits = model(x)
      loss = loss + F.cross_entropy(logits, y, {reduction = "sum"}):item()
      correct = correct + logits:argmax(2):eq(y):sum():item()
      n = n + #y
    end
  end)
  model:train()
  return loss / n, correct / n
end

local tty = cnn.isatty(io.stdout)
local now = cnn.wall_time

print(string.format("LeNet-5, %d parameters; %d training and %d test images from %s; %d threads",
  model:num_parameters(), #train_set, #test_set, args.data, cnn.get_num_threads()))

local test_acc = 0
for epoch = first_epoch, args.epochs do
  loader:set_epoch(epoch)
  local start = now()
  local seen, loss_sum, correct, nbatches = 0, 0, 0, #loader
  local i = 0
  for x, y in loader:iter() do
    i = i + 1
    local logits = model(x)
    local loss = F.cross_entropy(logits, y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    local b = #y
    loss_sum = loss_sum + loss:item() * b
    correct = correct + logits:argmax(2):eq(y):sum():item()
    seen = seen + b
    if tty and (i % 10 == 0 or i == nbatches) then
      local elapsed = now() - start
      local rate = seen / math.max(elapsed, 1e-9)
      local eta = (nbatches - i) * b / rate
      io.write(string.format("\repoch %d/%d  batch %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %ds   ",
        epoch, args.epochs, i, nbatches, loss_sum / seen, 100 * correct / seen, rate, math.floor(eta + 0.5)))
      io.flush()
    end
  end
  local elapsed = now() - start
  local test_loss
  test_loss, test_acc = evaluate()
  local row = {epoch = epoch, train_loss = loss_sum / seen, train_acc = correct / seen,
               test_loss = test_loss, test_acc = test_acc, images_per_s = seen / math.max(elapsed, 1e-9),
               seconds = elapsed}
  history[#history + 1] = row
  if tty then io.write("\r" .. string.rep(" ", 100) .. "\r") end
  row.peak_rss_mb = (cnn.memory_stats().peak_rss_bytes or 0) / 2^20
  print(string.format("epoch %d/%d  train loss %.4f  train acc %.2f%%  test loss %.4f  test acc %.2f%%  %.0f img/s  peak RSS %.0f MB",
    epoch, args.epochs, row.train_loss, 100 * row.train_acc, test_loss, 100 * test_acc, row.images_per_s, row.peak_rss_mb))
  cnn.checkpoint.save(ckpt_path, {model = model:state_dict(), optimizer = opt:state_dict(), epoch = epoch,
    history = history, rng_state = cnn.get_rng_state()})
end

-- metrics CSV, training curves and first-layer filters
local csv = assert(io.open(out .. "/metrics.csv", "w"))
csv:write("epoch,train_loss,train_acc,test_loss,test_acc,images_per_s,seconds,peak_rss_mb\n")
local xs, series = {}, {train_loss = {}, test_loss = {}, train_acc = {}, test_acc = {}}
for _, r in ipairs(history) do
  csv:write(string.format("%d,%.6f,%.6f,%.6f,%.6f,%.1f,%.3f,%.1f\n", r.epoch, r.train_loss, r.train_acc, r.test_loss,
    r.test_acc, r.images_per_s, r.seconds, r.peak_rss_mb or 0))
  xs[#xs + 1] = r.epoch
  for k, v in pairs(series) do v[#v + 1] = r[k] end
end
csv:close()
if #history > 0 then
  cnn.plot.lines {path = out .. "/curves.png", title = "LeNet-5 training", xlabel = "epoch", ylabel = "loss / accuracy",
    series = {{name = "train loss", x = xs, y = series.train_loss}, {name = "test loss", x = xs, y = series.test_loss},
              {name = "train accuracy", x = xs, y = series.train_acc}, {name = "test accuracy", x = xs, y = series.test_acc}}}
  local filters = model.features[1].weight:detach() -- (6, 1, 5, 5)
  local grid = cnn.image.grid(filters, {nrow = 6, padding = 1, normalize = true, pad_value = 1})
  -- 5x5 filters are too small to see: blow each pixel up to a 12x12 block (nearest neighbour)
  local c, h, w = table.unpack(grid:shape())
  grid = grid:view(c, h, 1, w, 1):expand(c, h, 12, w, 12):reshape(c, h * 12, w * 12)
  cnn.image.save(out .. "/filters.png", grid)
end
print(string.format("wrote %s/{metrics.csv,curves.png,filters.png} and %s", out, ckpt_path))
print(string.format("test accuracy: %.2f%%", 100 * test_acc))
