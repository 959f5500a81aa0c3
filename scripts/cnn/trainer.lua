--- module cnn.trainer
--- The examples' training loop: progress, evaluation, checkpoints, curves.

-- cnn.trainer: the supervised classification loop the training examples share. One epoch is a
-- pass over `loader` with cross-entropy and the optimiser, then an evaluation on `test_loader`;
-- on a terminal a progress line updates per batch (loss, accuracy, images/s, ETA), otherwise one
-- plain line per epoch. After every epoch the whole state (model, optimiser, epoch, history,
-- generator state, and the caller's extra fields) goes to one checkpoint, so `resume` continues
-- exactly where an uninterrupted run would be, and its row goes to OUT/metrics.csv and the curves
-- in OUT/curves.png are redrawn: a run stopped at any point leaves its traces so far.
-- In a cnn.distributed job of several ranks, every rank trains (the model wrapped in
-- dist.DataParallel, the loaders sharded), the metrics are summed across ranks, and only rank 0
-- prints and writes files.
local util = require "cnn.util"

local trainer = {}

-- `cnn` requires this file while it loads, so the module table is fetched on use
local function C() return require "cnn" end

-- mkdir -p (cnn.util), raising the error
local function mkdir_p(dir)
  local ok, err = util.mkdir_p(dir)
  if not ok then error("trainer: " .. err, 0) end
end

local dirname = util.dirname

--- cnn.trainer.out_dir{out=, resume=, prefix="run", create=true} -> path
--- The folder a training run writes to, created (unless create = false) if needed.
--- `out` when given; else, when resuming, the folder of the checkpoint being resumed (the run goes on
--- where it left its traces); else runs/PREFIX-YYYYmmdd-HHMMSS. With create = false only the name:
--- cnn.trainer.fit and checkpoint saves make the folder at their first write (the examples do
--- this, so a run that fails while loading its data leaves no empty folder behind).
function trainer.out_dir(o)
  if type(o) ~= "table" then error("trainer.out_dir: expected a table {out=, resume=, prefix=, create=}", 2) end
  util.check_options("trainer.out_dir", o, {out = true, resume = true, prefix = true, create = true}, 2)
  if o.out ~= nil and (type(o.out) ~= "string" or o.out == "") then
    -- "" is no folder: out .. "/metrics.csv" would write the run into / (--out "")
    local got = o.out == "" and "an empty string" or util.show(o.out)
    error("trainer.out_dir: out must be a folder's path, got " .. got, 2)
  end
  local out = o.out or (o.resume and dirname(o.resume)) or os.date("runs/" .. (o.prefix or "run") .. "-%Y%m%d-%H%M%S")
  if o.create ~= false then
    local ok, err = pcall(mkdir_p, out)
    if not ok then error("trainer.out_dir: " .. tostring(err), 2) end
  end
  return out
end

-- (rank, world size) of the distributed job, (0, 1) outside one
local function world()
  local dist = C().distributed
  if dist.is_initialized() then return dist.rank(), dist.world_size() end
  return 0, 1
end

-- Sums the numbers across ranks (exact for counts below 2^24: float32).
local function sum_across(...)
  local _, size = world()
  if size == 1 then return ... end
  local t = C().tensor({...})
  C().distributed.all_reduce(t)
  local out = {}
  for i = 1, t:numel() do out[i] = t[i] end
  return table.unpack(out)
end

--- cnn.trainer.schedule("step"|"cosine", lr, epochs) -> function(epoch) -> lr
--- The examples' learning-rate schedules, as a function of the epoch (1-based) alone.
--- "cosine" anneals from lr towards 0 over the epochs; "step" multiplies lr by 0.1 after epoch
--- floor(epochs / 2) and again after floor(3 epochs / 4) when that is a later epoch (2 epochs: one
--- step, not two at once). A function of the epoch alone, so a resumed run needs no scheduler state.
function trainer.schedule(kind, lr, epochs)
  if kind ~= "step" and kind ~= "cosine" then
    error("trainer.schedule: unknown schedule '" .. tostring(kind) .. "' (step or cosine)", 2)
  end
  -- checked here, not at the first epoch (an lr of "x" failed inside, 0 epochs gave NaN)
  if type(lr) ~= "number" or not (lr >= 0 and lr < math.huge) then
    error("trainer.schedule: lr must be a finite number >= 0, got " .. util.show(lr), 2)
  end
  if math.type(epochs) ~= "integer" or epochs < 1 then
    error("trainer.schedule: epochs must be a positive integer, got " .. util.show(epochs), 2)
  end
  return function(epoch)
    if kind == "cosine" then return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs)) end
    local m1, m2 = math.floor(0.5 * epochs), math.floor(0.75 * epochs)
    local r = lr
    if m1 >= 1 and epoch > m1 then r = r * 0.1 end
    if m2 > m1 and epoch > m2 then r = r * 0.1 end
    return r
  end
end

--- cnn.trainer.job{distributed=false, batch_size=, seed=} -> job
--- What a training script needs to run alone or as one rank of an MPI job.
--- With distributed, joins the job (cnn.distributed.init) and splits the global batch_size over the
--- ranks (it must divide). The job has rank, world_size, main (rank 0), batch_size (per rank), shard
--- and test_shard (DataLoader shard options: the training one steps the ranks together, the test one
--- counts every image once), print(...) (prints on rank 0 only) and wrap(model) (a
--- cnn.distributed.DataParallel with a random stream of its own per rank for augmentation and dropout;
--- the model itself when alone).
function trainer.job(o)
  local cnn = C()
  if type(o) ~= "table" then error("trainer.job: expected a table of options", 2) end
  local B = o.batch_size
  if math.type(B) ~= "integer" or B < 1 then error("trainer.job: batch_size must be a positive integer", 2) end
  local job = {rank = 0, world_size = 1, main = true, batch_size = B, seed = o.seed}
  if o.distributed then
    cnn.distributed.init()
    job.rank, job.world_size = cnn.distributed.rank(), cnn.distributed.world_size()
    job.main = job.rank == 0
    if B % job.world_size ~= 0 then
      error(string.format("trainer.job: the batch size %d does not split over %d ranks", B, job.world_size), 2)
    end
    job.batch_size = B // job.world_size
    if job.world_size > 1 then
      job.shard = {rank = job.rank, world_size = job.world_size}
      job.test_shard = {rank = job.rank, world_size = job.world_size, exact = true}
    end
  end
  job.print = function(...) if job.main then print(...) end end
  function job.wrap(_, model)
    if job.world_size == 1 then return model end
    if job.seed then cnn.manual_seed(job.seed + 7919 * job.rank) end
    return cnn.distributed.DataParallel(model)
  end
  return job
end

--- cnn.trainer.evaluate(model, loader) -> loss, accuracy
--- The mean cross-entropy and the accuracy of model over a loader, in eval mode, without gradients.
--- The model is left in training mode; a loader that gives no samples is an error. In a distributed
--- job the sums are taken across ranks: give each rank an exact shard of the test set (DataLoader's
--- shard={..., exact=true}) to count every image once.
function trainer.evaluate(model, loader)
  local cnn = C()
  if type(model) ~= "table" then error("trainer.evaluate: expected a model, got " .. type(model), 2) end
  if type(loader) ~= "table" or type(loader.iter) ~= "function" then
    error("trainer.evaluate: expected a DataLoader, got " .. type(loader), 2)
  end
  model:eval()
  local loss, correct, n = 0, 0, 0
  cnn.no_grad(function()
    for x, y in loader:iter() do
      local logits = model(x)
      loss = loss + cnn.F.cross_entropy(logits, y, {reduction = "sum"}):item()
      correct = correct + logits:argmax(2):eq(y):sum():item()
      n = n + #y
    end
  end)
  model:train()
  loss, correct, n = sum_across(loss, correct, n)
  -- 0 / 0 was reported as a test loss of 0 and an accuracy of 0%
  if n == 0 then error("trainer.evaluate: the loader gave no samples (an empty dataset?)", 2) end
  return loss / n, correct / n
end

local function is_finite(v) return v == v and math.abs(v) ~= math.huge end

local CSV_HEADER = "epoch,train_loss,train_acc,test_loss,test_acc,lr,images_per_s,seconds,peak_rss_mb\n"

local function csv_row(r)
  local function f6(v) return util.show(v, "%.6f") end -- "nan", never C's "-nan"
  return string.format("%d,%s,%s,%s,%s,%s,%.1f,%.3f,%.1f\n", r.epoch, f6(r.train_loss), f6(r.train_acc),
    f6(r.test_loss), f6(r.test_acc), type(r.lr) == "number" and string.format("%.6g", r.lr) or "", r.images_per_s,
    r.seconds, r.peak_rss_mb or 0)
end

-- OUT/metrics.csv as the history has it (a resumed run starts from the checkpoint's rows, whatever
-- the file held after them); written aside and renamed, so a reader never sees half of it.
local function write_csv(out, history)
  local rows = {CSV_HEADER}
  for _, r in ipairs(history) do rows[#rows + 1] = csv_row(r) end
  assert(util.write_file(out .. "/metrics.csv", table.concat(rows)))
end

-- One epoch's row at the end of OUT/metrics.csv, in one write.
local function append_csv(out, row)
  local f = assert(io.open(out .. "/metrics.csv", "a"))
  f:setvbuf("no")
  f:write(csv_row(row))
  f:close()
end

-- OUT/curves.png: loss and accuracy in two panels side by side (their scales differ: a test loss of
-- 8 would flatten accuracies drawn on the same axis); cnn.plot writes it atomically.
local function draw_curves(out, title, history)
  if #history == 0 then return end
  local xs, v = {}, {train_loss = {}, test_loss = {}, train_acc = {}, test_acc = {}}
  for i, r in ipairs(history) do
    xs[i] = r.epoch
    for k, list in pairs(v) do list[i] = k:match("acc") and 100 * r[k] or r[k] end
  end
  C().plot.panels{path = out .. "/curves.png", title = title, cols = 2, width = 1000, height = 420, panels = {
    {title = "loss", xlabel = "epoch", ylabel = "cross-entropy", marker = true,
     series = {{name = "train", x = xs, y = v.train_loss}, {name = "test", x = xs, y = v.test_loss}}},
    {title = "accuracy", xlabel = "epoch", ylabel = "accuracy (%)", marker = true,
     series = {{name = "train", x = xs, y = v.train_acc}, {name = "test", x = xs, y = v.test_acc}}}}}
end

--- cnn.trainer.fit{model=, optimizer=, loader=, test_loader=, epochs=, out=, checkpoint=, resume=, lr_at=,
---   title=, extra_state=, progress_every=10} -> history, test_accuracy
--- Trains a classifier with cross-entropy, evaluating on test_loader after every epoch.
--- model, optimizer, loader, test_loader, epochs, out (a folder) and checkpoint (a path) are required.
--- Both folders are made, and checked for writing, before the first epoch.
--- The loss is the cross-entropy of the model's first output: a GoogLeNet with aux_logits trains its
--- auxiliary heads only in a loop of one's own (torchvision's reference adds 0.3 x each head's loss).
--- On a terminal a progress line updates every progress_every batches (loss, accuracy, images/s,
--- ETA), otherwise one line per epoch. After every epoch the whole state (model, optimiser, epoch,
--- history, generator state, extra_state) goes to the checkpoint path, so resume (a checkpoint path)
--- continues exactly where an uninterrupted run would be; then the epoch's row is appended to
--- OUT/metrics.csv (its lr is the optimiser's) and OUT/curves.png is redrawn (loss and accuracy in
--- two panels, title on top), so a run stopped at any point leaves its traces so far. A resumed run
--- rewrites metrics.csv from the checkpoint's history first, then appends. An epoch whose training
--- or test loss is not finite (a diverged run) is written to metrics.csv but not to the checkpoint, and fit
--- stops there with an error that says so: the checkpoint keeps the last good epoch. lr_at(epoch)
--- sets the learning rate of each epoch. The progress line needs a terminal, and is left out under an MPI or
--- Slurm launcher (whose terminal is not the reader's). In a cnn.distributed job every rank trains,
--- the metrics are summed across ranks and only rank 0 prints and writes files. Returns the history
--- (one table per epoch: epoch, train_loss, train_acc, test_loss, test_acc, lr, images_per_s,
--- seconds) and the last test accuracy.
function trainer.fit(o)
  local cnn = C()
  if type(o) ~= "table" then error("trainer.fit: expected a table of options", 2) end
  util.check_options("trainer.fit", o, {model = true, optimizer = true, loader = true, test_loader = true,
    epochs = true, out = true, checkpoint = true, resume = true, lr_at = true, title = true, extra_state = true,
    progress_every = true}, 2)
  for _, k in ipairs {"model", "optimizer", "loader", "test_loader", "epochs", "out", "checkpoint"} do
    if o[k] == nil then error("trainer.fit: " .. k .. "= is required", 2) end
  end
  if math.type(o.epochs) ~= "integer" or o.epochs < 0 then
    error("trainer.fit: epochs must be a non-negative integer, got " .. util.show(o.epochs), 2)
  end
  -- what fit calls on them, named here rather than failing inside ("attempt to call ... 'set_epoch'")
  for _, k in ipairs {"loader", "test_loader"} do
    local l = o[k]
    local ok = type(l) == "table" and type(l.iter) == "function" and (k ~= "loader" or type(l.set_epoch) == "function")
    if not ok then
      error("trainer.fit: " .. k .. " must be a DataLoader (with iter" .. (k == "loader" and " and set_epoch" or "")
        .. "), got " .. (type(l) == "table" and "another table" or util.show(l)), 2)
    end
  end
  for _, k in ipairs {"out", "checkpoint"} do
    if type(o[k]) ~= "string" then
      error("trainer.fit: " .. k .. " must be a path (a string), got " .. type(o[k]), 2)
    end
    -- "" is no folder: out .. "/metrics.csv" wrote the run into / (--out "" on an example's line)
    if o[k] == "" then error("trainer.fit: " .. k .. " must be a path, got an empty string", 2) end
  end
  if o.extra_state ~= nil then
    if type(o.extra_state) ~= "table" then
      error("trainer.fit: extra_state must be a table, got " .. type(o.extra_state), 2)
    end
    for _, k in ipairs {"model", "optimizer", "epoch", "history", "rng_state", "rng_states"} do
      if o.extra_state[k] ~= nil then -- it would replace what a resume reads back
        error("trainer.fit: extra_state may not hold '" .. k .. "' (the checkpoint's own)", 2)
      end
    end
  end
  if o.progress_every ~= nil and (math.type(o.progress_every) ~= "integer" or o.progress_every < 1) then
    error("trainer.fit: progress_every must be a positive integer, got " .. util.show(o.progress_every), 2)
  end
  if o.lr_at ~= nil and type(o.lr_at) ~= "function" then
    error("trainer.fit: lr_at must be a function of the epoch, got " .. type(o.lr_at), 2)
  end
  local model, opt, epochs = o.model, o.optimizer, o.epochs
  local history, first_epoch = {}, 1
  local rank, size = world()
  local main = rank == 0
  if o.resume then
    local state = cnn.checkpoint.load(o.resume)
    if math.type(state.epoch) ~= "integer" or type(state.model) ~= "table" or type(state.optimizer) ~= "table" then
      error("trainer.fit: " .. tostring(o.resume) .. " is not a trainer checkpoint (no integer epoch, model "
        .. "and optimizer state)", 2)
    end
    if state.epoch < 1 then -- fit saves after an epoch: a tampered or foreign file ('epoch -4/2' trained on)
      error(string.format("trainer.fit: %s says it was saved after epoch %d: epochs count from 1", o.resume,
        state.epoch), 2)
    end
    model:load_state_dict(state.model)
    opt:load_state_dict(state.optimizer)
    history = state.history or {}
    first_epoch = state.epoch + 1
    -- each rank continues its own random stream when the job has as many ranks as the one saved
    local per_rank = state.rng_states
    cnn.set_rng_state(per_rank and #per_rank == size and per_rank[rank + 1] or state.rng_state)
    if main then print(string.format("resumed from %s after epoch %d", o.resume, state.epoch)) end
  end
  -- under mpirun or srun stdout may be a pty the launcher forwards into a log: no \r lines there
  local tty = main and cnn.isatty(io.stdout) and not C().distributed.launched()
  local now, every = cnn.wall_time, o.progress_every or 10
  if main then
    mkdir_p(o.out)
    -- an unwritable checkpoint was found after the first epoch, when its save failed
    if o.checkpoint:sub(-1) == "/" or util.is_dir(o.checkpoint) then
      error("trainer.fit: checkpoint " .. o.checkpoint .. " is a folder: give the checkpoint's file name", 2)
    end
    -- the path itself, as the save will write it: through a symbolic link to its target's folder,
    -- a device as it is (the folder of the path as written refused /dev/null for a user)
    local ok, err = util.mkdir_p(dirname(o.checkpoint))
    if ok then ok, err = require("cnn.core").io.probe_write(o.checkpoint) end
    if not ok then error("trainer.fit: checkpoint: " .. err, 2) end
    write_csv(o.out, history)
  end
  local stats = cnn.distributed.is_data_parallel(model) and model.stats or nil
  local test_acc = history[#history] and history[#history].test_acc or 0
  for epoch = first_epoch, epochs do
    if o.lr_at then opt.lr = o.lr_at(epoch) end
    o.loader:set_epoch(epoch)
    local start, sync_start = now(), stats and stats.seconds or 0
    local seen, loss_sum, correct, nbatches, i = 0, 0, 0, #o.loader, 0
    for x, y in o.loader:iter() do
      i = i + 1
      local logits = model(x)
      local loss = cnn.F.cross_entropy(logits, y)
      opt:zero_grad()
      loss:backward()
      opt:step()
      local b = #y
      loss_sum = loss_sum + loss:item() * b
      correct = correct + logits:argmax(2):eq(y):sum():item()
      seen = seen + b
      if tty and (i % every == 0 or i == nbatches) then
        local rate = seen * size / math.max(now() - start, 1e-9) -- every rank steps alike
        local eta = math.floor((nbatches - i) * b / rate + 0.5)
        io.write(string.format("\repoch %d/%d  batch %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %ds   ",
          epoch, epochs, i, nbatches, loss_sum / seen, 100 * correct / seen, rate, eta))
        io.flush()
      end
    end
    local elapsed = now() - start
    local sync_seconds = stats and stats.seconds - sync_start or 0
    local steps = i
    loss_sum, correct, seen = sum_across(loss_sum, correct, seen)
    if seen == 0 then -- 0 / 0 reported as a loss of 0 and an accuracy of 0%
      error("trainer.fit: the training loader gave no samples this epoch (an empty dataset, or drop_last " ..
        "with fewer samples than batch_size)", 0)
    end
    local test_loss
    test_loss, test_acc = util.checked(2, pcall(trainer.evaluate, model, o.test_loader))
    local row = {epoch = epoch, lr = opt.lr, train_loss = loss_sum / math.max(seen, 1),
                 train_acc = correct / math.max(seen, 1), test_loss = test_loss, test_acc = test_acc,
                 images_per_s = seen / math.max(elapsed, 1e-9), seconds = elapsed,
                 peak_rss_mb = (cnn.memory_stats().peak_rss_bytes or 0) / 2^20,
                 step_ms = 1000 * elapsed / math.max(steps, 1), ranks = size,
                 allreduce_share = stats and sync_seconds / math.max(elapsed, 1e-9) or nil}
    history[#history + 1] = row
    if tty then io.write("\r" .. string.rep(" ", 100) .. "\r") end
    if main then
      print(string.format("epoch %d/%d  %strain loss %s  train acc %.2f%%  test loss %s  test acc %.2f%%  "
        .. "%.0f img/s  peak RSS %.0f MB%s",
        epoch, epochs, type(row.lr) == "number" and string.format("lr %.4g  ", row.lr) or "",
        util.show(row.train_loss, "%.4f"), 100 * row.train_acc,
        util.show(test_loss, "%.4f"), 100 * test_acc, row.images_per_s, row.peak_rss_mb,
        size > 1 and string.format("  (%d ranks: %.1f ms/step, %.1f%% in gradient all-reduce)", size, row.step_ms,
          100 * (row.allreduce_share or 0)) or ""))
    end
    local state = {model = model:state_dict(), optimizer = opt:state_dict(), epoch = epoch, history = history,
                   rng_state = cnn.get_rng_state()}
    if size > 1 then state.rng_states = cnn.distributed.all_gather(cnn.get_rng_state()) end -- every rank calls it
    for k, v in pairs(o.extra_state or {}) do state[k] = v end
    -- a diverged run (a learning rate too high) stops: its checkpoint would hold NaN weights in place
    -- of the last good ones, and every later epoch print nan
    -- the training loss is taken before each step: weights that the epoch's last steps broke show
    -- in the test loss alone
    local finite = is_finite(row.train_loss) and is_finite(row.test_loss)
    if main then
      if finite then cnn.checkpoint.save(o.checkpoint, state) end
      append_csv(o.out, row)
      draw_curves(o.out, o.title or "training", history)
    end
    if not finite then
      error(string.format("trainer.fit: the %s loss was %s in epoch %d: the run diverged (a lower " ..
        "learning rate?); %s", is_finite(row.train_loss) and "test" or "training",
        util.show(is_finite(row.train_loss) and row.test_loss or row.train_loss), epoch, epoch > 1 and
        "the checkpoint of epoch " .. (epoch - 1) .. " is kept" or "no checkpoint was written"), 0)
    end
  end
  return history, test_acc
end

return trainer
