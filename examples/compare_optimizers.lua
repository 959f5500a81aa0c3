-- Compares the textbook's optimisers and weight initialisations on one network, as the course does
-- (a 5-layer fully connected ReLU network, 784-100-100-100-100-10, on MNIST-layout images):
--
--   optimisers: SGD, SGD with momentum, Adagrad, RMSprop and Adam, all from the same He-initialised
--               weights and the same batches;
--   initialisations: weights drawn with std 0.01, Xavier (std 1/sqrt(fan_in)) and He
--               (std sqrt(2/fan_in)), all trained with plain SGD.
--
-- Writes one picture with the training-loss curves of both comparisons (OUT/compare.png) and a CSV
-- of every run's losses (OUT/losses.csv), and prints each run's final loss and test accuracy.
--
--   cnnlua examples/compare_optimizers.lua                      -- 2000 steps on Fashion-MNIST
--   cnnlua examples/compare_optimizers.lua --steps 500 --data ~/mnist --out runs/compare
local argparse = require "argparse"
local int = cnn.util.cli_integer -- a converter that names its option
local nn, F, optim, data, init = cnn.nn, cnn.F, cnn.optim, cnn.data, cnn.nn.init

local parser = argparse("compare_optimizers.lua",
  "Train one network with SGD, momentum, Adagrad, RMSprop and Adam, and from three initialisations.")
parser:option("--data", "Folder with the four MNIST-layout IDX files (raw or .gz).", data.FASHION_MNIST_DIR)
parser:option("--steps", "Training steps of every run.", "2000"):convert(int "--steps")
parser:option("--batch-size", "Mini-batch size.", "128"):convert(int "--batch-size")
parser:option("--limit", "Use only the first N training and N/5 test images."):convert(int "--limit")
parser:option("--smooth", "Plot the mean loss of this many steps around each point.", "20"):convert(int "--smooth")
parser:option("--seed", "Random seed (the initial weights and the batches).", "1"):convert(int "--seed")
parser:option("--threads", "Threads for the kernels.", tostring(cnn.get_num_threads())):convert(int "--threads")
parser:option("--out", "Output folder (default: runs/compare-<time>).")
local args = parser:parse(cnn.util.cli_args(arg))

for _, name in ipairs {"steps", "batch_size", "smooth", "seed", "threads", "limit"} do
  local v = args[name]
  if (v == nil and name ~= "limit") or (v ~= nil and v < 1 and name ~= "seed") then
    parser:error(string.format("--%s must be a positive integer", name:gsub("_", "-")))
  end
end
if args.limit and args.limit < 5 then parser:error("--limit must be at least 5 (N/5 test images)") end

cnn.set_num_threads(args.threads)
local out = cnn.trainer.out_dir {out = args.out, prefix = "compare", create = false} -- made at the first write


local train_set, test_set = data.mnist(args.data, "train"), data.mnist(args.data, "test")
if args.limit then -- the first N training and N/5 test images
  train_set = data.Subset(train_set, math.min(args.limit, #train_set))
  test_set = data.Subset(test_set, math.min(args.limit // 5, #test_set))
end

-- The book's network: four hidden layers of 100 ReLU units.
local function network()
  local layers, width = {nn.Flatten()}, 784
  for _ = 1, 4 do
    layers[#layers + 1] = nn.Linear(width, 100)
    layers[#layers + 1] = nn.ReLU()
    width = 100
  end
  layers[#layers + 1] = nn.Linear(width, #train_set.classes)
  return nn.Sequential(layers)
end

-- Weights drawn from N(0, std(fan_in)^2), biases 0, from the same seed for every run.
local INITS = {
  {name = "std 0.01", std = function() return 0.01 end},
  {name = "Xavier", std = function(fan_in) return 1 / math.sqrt(fan_in) end},
  {name = "He", std = function(fan_in) return math.sqrt(2 / fan_in) end},
}

local function initialised(scheme)
  cnn.manual_seed(args.seed)
  local model = network()
  for _, m in ipairs(model:modules()) do
    if m:class_name() == "Linear" then
      init.normal_(m.weight, 0, scheme.std(m.weight:size(2)))
      init.zeros_(m.bias)
    end
  end
  return model
end

-- The learning rates the book uses for this comparison (RMSprop's is Adam's).
local OPTIMIZERS = {
  {name = "SGD", make = function(p) return optim.SGD(p, {lr = 0.01}) end},
  {name = "Momentum", make = function(p) return optim.SGD(p, {lr = 0.01, momentum = 0.9}) end},
  {name = "Adagrad", make = function(p) return optim.Adagrad(p, {lr = 0.01}) end},
  {name = "RMSprop", make = function(p) return optim.RMSprop(p, {lr = 0.001}) end},
  {name = "Adam", make = function(p) return optim.Adam(p, {lr = 0.001}) end},
}

-- Trains for args.steps steps on the same batches (a fresh loader with the same seed); returns
-- the loss of every step and the test accuracy.
local function train(model, opt)
  local loader = data.DataLoader(train_set, {batch_size = args.batch_size, shuffle = true,
    drop_last = #train_set > args.batch_size, seed = args.seed})
  local losses = {}
  model:train()
  while #losses < args.steps do
    for x, y in loader:iter() do
      local loss = F.cross_entropy(model(x), y)
      opt:zero_grad()
      loss:backward()
      opt:step()
      losses[#losses + 1] = loss:item()
      if #losses == args.steps then break end
    end
  end
  model:eval()
  local correct = 0
  cnn.no_grad(function()
    for x, y in data.DataLoader(test_set, {batch_size = 500}):iter() do
      correct = correct + model(x):argmax(2):eq(y):sum():item()
    end
  end)
  return losses, correct / #test_set
end

-- The mean of the losses in a window of k steps centred on each step (the book's smooth_curve
-- does the same with a Kaiser window), so the curves can be told apart.
local function smooth(ys, k)
  local xs, smoothed, half = {}, {}, k // 2
  for i = 1, #ys do
    local lo, hi, s = math.max(1, i - half), math.min(#ys, i + half), 0
    for j = lo, hi do s = s + ys[j] end
    xs[i], smoothed[i] = i, s / (hi - lo + 1)
  end
  return xs, smoothed
end

-- the output folder before the runs (an unwritable --out was found after all eight of them)
local writable, werr = cnn.util.writable_dir(out)
if not writable then parser:error("--out: " .. werr) end

print(string.format("784-100-100-100-100-10 ReLU network; %d training and %d test images from %s; " ..
  "%d steps of batch %d; %d threads", #train_set, #test_set, args.data, args.steps,
  math.min(args.batch_size, #train_set), -- a --limit below the batch size makes every batch the whole set
  cnn.get_num_threads()))

local runs = {}
local function run(group, label, model, opt)
  local t0 = cnn.wall_time()
  local losses, acc = train(model, opt)
  local tail = 0
  local n = math.max(1, #losses // 10)
  for i = #losses - n + 1, #losses do tail = tail + losses[i] end
  runs[#runs + 1] = {group = group, name = label, losses = losses, acc = acc}
  print(string.format("%-15s %-9s loss over the last %d steps %.4f, test accuracy %6.2f%%  (%.1f s)",
    group, label, n, tail / n, 100 * acc, cnn.wall_time() - t0))
end

for _, o in ipairs(OPTIMIZERS) do
  local model = initialised(INITS[3])
  run("optimiser", o.name, model, o.make(model:parameters()))
end
for _, s in ipairs(INITS) do
  local model = initialised(s)
  run("initialisation", s.name, model, optim.SGD(model:parameters(), {lr = 0.01}))
end

-- one picture, two panels
local panels = {}
for i, group in ipairs {"optimiser", "initialisation"} do
  local series = {}
  for _, r in ipairs(runs) do
    if r.group == group then
      local xs, ys = smooth(r.losses, args.smooth)
      series[#series + 1] = {name = r.name, x = xs, y = ys}
    end
  end
  panels[i] = {title = i == 1 and "optimisers (He initialisation)" or "initialisations (SGD, lr 0.01)",
    xlabel = "step", ylabel = "training loss", series = series}
end
local png = out .. "/compare.png"
cnn.plot.panels {path = png, panels = panels, cols = 2, width = 1200, height = 450,
  title = "The same network, five optimisers and three initialisations"}

local csv = assert(io.open(out .. "/losses.csv", "w"))
local header = {"step"}
for _, r in ipairs(runs) do header[#header + 1] = r.group .. " " .. r.name end
csv:write(table.concat(header, ","), "\n")
for s = 1, args.steps do
  local row = {tostring(s)}
  for _, r in ipairs(runs) do row[#row + 1] = string.format("%.6g", r.losses[s]) end
  csv:write(table.concat(row, ","), "\n")
end
csv:close()
print(string.format("wrote %s and %s/losses.csv", png, out))
