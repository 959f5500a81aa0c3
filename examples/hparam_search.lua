-- A hyperparameter search for LeNet-5 on a subset of Fashion-MNIST: learning rate, momentum and
-- batch size of SGD, each trial in a worker process of its own (cnn.hpsearch). Prints the ranked
-- trials and writes the search's JSON-lines log (a second run resumes from it), a CSV and a PNG
-- of the metric against every parameter.
--
--   cnnlua examples/hparam_search.lua                          -- 8 random trials, 2 workers
--   cnnlua examples/hparam_search.lua --strategy asha --trials 12 --epochs 3
--   cnnlua examples/hparam_search.lua --strategy grid --epochs 1
--   cnnlua examples/hparam_search.lua --emit-commands runs/hp/cmds.txt   -- then run them anywhere:
--   parallel < runs/hp/cmds.txt; cnnlua examples/hparam_search.lua --merge runs/hp
--
-- The data is loaded once, here; every trial runs in a process forked from this one and reads
-- the same pages. Emitted commands re-run this script for one trial each, so everything before
-- hp.search must come out the same in every run (it does: it only reads the flags and the data).
local argparse = require "argparse"
local int, num = cnn.util.cli_integer, cnn.util.cli_number -- converters that name their option
local hp = require "cnn.hpsearch"
local F, optim, data = cnn.F, cnn.optim, cnn.data

local parser = argparse("hparam_search.lua", "Search SGD's learning rate, momentum and batch size for LeNet-5.")
parser:option("--data", "Folder with the four MNIST-layout IDX files (raw or .gz).", data.FASHION_MNIST_DIR)
parser:option("--train-size", "Training images used (a fixed random subset).", "6000"):convert(int "--train-size")
parser:option("--test-size", "Test images the metric is measured on.", "2000"):convert(int "--test-size")
parser:option("--epochs", "Epochs per trial (ASHA: the most a trial runs).", "2"):convert(int "--epochs")
parser:option("--trials", "Trials (random, asha; a grid runs all its points).", "8"):convert(int "--trials")
parser:option("--workers", "Worker processes (0: every trial in this process).", "2"):convert(int "--workers")
parser:option("--strategy", "random, grid or asha.", "random"):choices {"random", "grid", "asha"}
parser:option("--lr-min", "Smallest learning rate searched (log-uniform).", "0.003"):convert(num "--lr-min")
parser:option("--lr-max", "Largest learning rate searched.", "0.3"):convert(num "--lr-max")
parser:option("--seed", "Search seed (params and every trial's seed derive from it).", "1"):convert(int "--seed")
parser:option("--out", "Output folder: search.jsonl (log), search.csv, search.png.", "runs/hparam_search")
parser:option("--emit-commands", "Write one shell command per trial to this file instead of running them.")
parser:option("--merge", "Folder of per-trial results from emitted commands to merge in.")
local args = parser:parse(cnn.util.cli_args(arg))

for _, name in ipairs {"train_size", "test_size", "epochs", "trials"} do
  if not args[name] or args[name] < 1 then
    parser:error(string.format("--%s must be a positive integer", name:gsub("_", "-")))
  end
end
if not args.workers or args.workers < 0 then parser:error("--workers must be a non-negative integer") end
if not args.seed then parser:error("--seed must be an integer") end
if args.out == "" then parser:error("--out must be a folder's path") end -- "" would write into /

-- Fail here, once, rather than in every trial, when the data is not there.
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
if not (exists(args.data .. "/train-images-idx3-ubyte") or exists(args.data .. "/train-images-idx3-ubyte.gz")) then
  parser:error(string.format("no MNIST-layout data in %s (train-images-idx3-ubyte[.gz] not found)", args.data))
end

local function load(split)
  if args.data == data.FASHION_MNIST_DIR then return data.fashion_mnist(split) end
  return data.mnist(args.data, split)
end

-- The first n samples of a shuffled split as one batch (the same subset in every trial).
local function subset(ds, n)
  n = math.min(n, #ds)
  local x, y = data.DataLoader(ds, {batch_size = n, shuffle = true, seed = 1234}):iter()()
  return data.TensorDataset(x, y)
end

local train_set, test_set = subset(load("train"), args.train_size), subset(load("test"), args.test_size)

local function evaluate(model)
  model:eval()
  local correct = 0
  cnn.no_grad(function()
    for x, y in data.DataLoader(test_set, {batch_size = 1000}):iter() do
      correct = correct + model(x):argmax(2):eq(y):sum():item()
    end
  end)
  model:train()
  return correct / #test_set
end

-- One trial: train LeNet-5 with these params (cnn.manual_seed(trial seed) already called) and
-- return the test accuracy; report it after every epoch so ASHA can stop a hopeless trial.
local function objective(p, report)
  local model = cnn.models.lenet5 {num_classes = 10}
  local opt = optim.SGD(model:parameters(), {lr = p.lr, momentum = p.momentum})
  local loader = data.DataLoader(train_set, {batch_size = p.batch_size, shuffle = true, drop_last = true})
  local acc, loss_sum, seen = 0, 0, 0
  for epoch = 1, args.epochs do
    for x, y in loader:iter() do
      local loss = F.cross_entropy(model(x), y)
      opt:zero_grad()
      loss:backward()
      opt:step()
      loss_sum, seen = loss_sum + loss:item() * #y, seen + #y
    end
    -- a diverged run (lr far too high) ends an epoch with a NaN, infinite or exploded loss (lr 50
    -- gives ~100, where guessing gives ln 10 = 2.3): fail the trial, so the search records it as
    -- failed rather than as a chance-level accuracy
    local mean_loss = loss_sum / seen
    if mean_loss ~= mean_loss or mean_loss > 4 * math.log(10) then
      error(string.format("training diverged: mean loss %s in epoch %d", tostring(mean_loss), epoch), 0)
    end
    acc = evaluate(model)
    report(epoch, acc)
  end
  return {accuracy = acc, train_loss = loss_sum / seen}
end

local strategy = args.strategy
local result = hp.search {
  space = {
    lr = hp.loguniform(args.lr_min, args.lr_max, {n = 3}), -- n: the points a grid search takes
    momentum = hp.choice {0, 0.5, 0.9},
    batch_size = hp.choice {32, 64, 128},
  },
  strategy = strategy,
  trials = strategy ~= "grid" and args.trials or nil,
  max_steps = strategy == "asha" and args.epochs or nil,
  workers = args.workers,
  seed = args.seed,
  metric = "accuracy",
  mode = "max",
  -- what a trial's accuracy depends on besides the space: a run with other data or epochs is another
  -- search, which the same log keeps apart instead of resuming this one's trials
  name = {data = args.data, train_size = args.train_size, test_size = args.test_size, epochs = args.epochs},
  log = args.out .. "/search.jsonl",
  emit_commands = args.emit_commands,
  merge = args.merge,
  objective = objective,
}

if result.emitted then return end -- the commands are written; merge their results later

print()
print(result:table())
result:csv(args.out .. "/search.csv")
local wrote = "search.jsonl, search.csv"
if result.best then
  result:plot(args.out .. "/search.png")
  wrote = wrote .. ", search.png"
end
if result.total_steps then print(string.format("epochs trained in all: %s", result.total_steps)) end
print(string.format("wrote %s in %s", wrote, args.out))
if result.best then
  local b = result.best
  print(string.format("best: lr %.4g, momentum %s, batch size %d: test accuracy %.2f%%", b.params.lr,
    b.params.momentum, b.params.batch_size, 100 * b.metric))
end
