-- cnn.trainer: the supervised classification loop the training examples share. One epoch is a
-- pass over `loader` with cross-entropy and the optimiser, then an evaluation on `test_loader`;
-- on a terminal a progress line updates per batch (loss, accuracy, images/s, ETA), otherwise one
-- plain line per epoch. After every epoch the whole state (model, optimiser, epoch, history,
-- generator state, and the caller's extra fields) goes to one checkpoint, so `resume` continues
-- exactly where an uninterrupted run would be. At the end: OUT/metrics.csv and OUT/curves.png.
local trainer = {}

-- `cnn` requires this file while it loads, so the module table is fetched on use
local function C() return require "cnn" end

--- trainer.schedule("step"|"cosine", lr, epochs) -> function(epoch) -> lr. cosine anneals from lr
--- towards 0 over the epochs; step multiplies by 0.1 after 50% and again after 75% of them. A
--- function of the epoch alone, so a resumed run needs no scheduler state.
function trainer.schedule(kind, lr, epochs)
  if kind ~= "step" and kind ~= "cosine" then
    error("trainer.schedule: unknown schedule '" .. tostring(kind) .. "' (step or cosine)", 2)
  end
  return function(epoch)
    if kind == "cosine" then return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs)) end
    local r = lr
    for _, m in ipairs {0.5, 0.75} do
      if epoch > math.floor(m * epochs) and math.floor(m * epochs) > 0 then r = r * 0.1 end
    end
    return r
  end
end

--- trainer.evaluate(model, loader) -> mean cross-entropy, accuracy (model left in training mode)
function trainer.evaluate(model, loader)
  local cnn = C()
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
  return loss / math.max(n, 1), correct / math.max(n, 1)
end

local function write_outputs(out, title, history)
  local cnn = C()
  local csv = assert(io.open(out .. "/metrics.csv", "w"))
  csv:write("epoch,train_loss,train_acc,test_loss,test_acc,lr,images_per_s,seconds,peak_rss_mb\n")
  local xs, series = {}, {train_loss = {}, test_loss = {}, train_acc = {}, test_acc = {}}
  for _, r in ipairs(history) do
    csv:write(string.format("%d,%.6f,%.6f,%.6f,%.6f,%.6g,%.1f,%.3f,%.1f\n", r.epoch, r.train_loss, r.train_acc,
      r.test_loss, r.test_acc, r.lr or 0, r.images_per_s, r.seconds, r.peak_rss_mb or 0))
    xs[#xs + 1] = r.epoch
    for k, v in pairs(series) do v[#v + 1] = r[k] end
  end
  csv:close()
  if #history == 0 then return end
  cnn.plot.lines {path = out .. "/curves.png", title = title, xlabel = "epoch", ylabel = "loss / accuracy",
    series = {{name = "train loss", x = xs, y = series.train_loss}, {name = "test loss", x = xs, y = series.test_loss},
              {name = "train accuracy", x = xs, y = series.train_acc}, {name = "test accuracy", x = xs, y = series.test_acc}}}
end

--- trainer.fit{model=, optimizer=, loader=, test_loader=, epochs=, out=, checkpoint=PATH, resume=PATH|nil,
---   lr_at=function(epoch) -> lr | nil, title=, extra_state={...}, progress_every=10}
--- Returns the history (one row per epoch) and the last test accuracy.
function trainer.fit(o)
  local cnn = C()
  local model, opt, epochs = o.model, o.optimizer, o.epochs
  local history, first_epoch = {}, 1
  if o.resume then
    local state = cnn.checkpoint.load(o.resume)
    model:load_state_dict(state.model)
    opt:load_state_dict(state.optimizer)
    history = state.history or {}
    first_epoch = state.epoch + 1
    cnn.set_rng_state(state.rng_state)
    print(string.format("resumed from %s after epoch %d", o.resume, state.epoch))
  end
  local tty, now, every = cnn.isatty(io.stdout), cnn.wall_time, o.progress_every or 10
  local test_acc = history[#history] and history[#history].test_acc or 0
  for epoch = first_epoch, epochs do
    if o.lr_at then opt.lr = o.lr_at(epoch) end
    o.loader:set_epoch(epoch)
    local start = now()
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
        local rate = seen / math.max(now() - start, 1e-9)
        io.write(string.format("\repoch %d/%d  batch %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %ds   ", epoch, epochs,
          i, nbatches, loss_sum / seen, 100 * correct / seen, rate, math.floor((nbatches - i) * b / rate + 0.5)))
        io.flush()
      end
    end
    local elapsed = now() - start
    local test_loss
    test_loss, test_acc = trainer.evaluate(model, o.test_loader)
    local row = {epoch = epoch, lr = o.lr_at and opt.lr or nil, train_loss = loss_sum / math.max(seen, 1),
                 train_acc = correct / math.max(seen, 1), test_loss = test_loss, test_acc = test_acc,
                 images_per_s = seen / math.max(elapsed, 1e-9), seconds = elapsed,
                 peak_rss_mb = (cnn.memory_stats().peak_rss_bytes or 0) / 2^20}
    history[#history + 1] = row
    if tty then io.write("\r" .. string.rep(" ", 100) .. "\r") end
    print(string.format("epoch %d/%d  %strain loss %.4f  train acc %.2f%%  test loss %.4f  test acc %.2f%%  %.0f img/s  peak RSS %.0f MB",
      epoch, epochs, row.lr and string.format("lr %.4g  ", row.lr) or "", row.train_loss, 100 * row.train_acc,
      test_loss, 100 * test_acc, row.images_per_s, row.peak_rss_mb))
    local state = {model = model:state_dict(), optimizer = opt:state_dict(), epoch = epoch, history = history,
                   rng_state = cnn.get_rng_state()}
    for k, v in pairs(o.extra_state or {}) do state[k] = v end
    cnn.checkpoint.save(o.checkpoint, state)
  end
  write_outputs(o.out, o.title or "training", history)
  return history, test_acc
end

return trainer
