-- cnn.trainer's schedule and evaluation; fit itself is exercised through every training example's
-- spec (train_lenet_spec, train_examples_spec), which check its outputs and --resume.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

describe("trainer.schedule", function()
  it("step: x0.1 after half the epochs and again after three quarters", function()
    local at = cnn.trainer.schedule("step", 0.1, 4) -- floor(0.5 * 4) = 2, floor(0.75 * 4) = 3
    assert.are.equal(0.1, at(1))
    assert.are.equal(0.1, at(2))
    assert.is_true(math.abs(at(3) - 0.01) < 1e-15)
    assert.is_true(math.abs(at(4) - 0.001) < 1e-15)
  end)

  it("step: two epochs take one step down, not both at once", function()
    local at = cnn.trainer.schedule("step", 0.01, 2) -- floor(0.5 * 2) = floor(0.75 * 2) = 1
    assert.are.equal(0.01, at(1))
    assert.is_true(math.abs(at(2) - 0.001) < 1e-15) -- was 1e-4: the quick AlexNet try never learned
    assert.are.equal(0.01, cnn.trainer.schedule("step", 0.01, 1)(1))
  end)

  it("cosine: lr at the first epoch, half of it at the midpoint", function()
    local at = cnn.trainer.schedule("cosine", 0.2, 4) -- 0.1 * (1 + cos(pi * (e - 1) / 4))
    assert.are.equal(0.2, at(1))
    assert.is_true(math.abs(at(3) - 0.1) < 1e-12)
    assert.is_true(at(4) < at(3))
  end)

  it("checks lr and epochs when made, not at the first epoch (0 epochs gave NaN)", function()
    H.assert_error(function() cnn.trainer.schedule("cosine", 0.1, 0) end, "trainer.schedule: epochs must be a positive")
    H.assert_error(function() cnn.trainer.schedule("step", "x", 4) end, "trainer.schedule: lr must be a finite number")
    H.assert_error(function() cnn.trainer.schedule("step", math.huge, 4) end, "trainer.schedule: lr must be")
  end)

  it("rejects an unknown schedule", function()
    H.assert_error(function() cnn.trainer.schedule("linear", 0.1, 3) end, "schedule")
  end)
end)

describe("trainer.evaluate", function()
  it("gives the mean cross-entropy and accuracy of a fixed model", function()
    -- a linear model whose logits are the inputs: rows (2, 0) and (0, 3) with labels 1 and 1
    local Id = cnn.nn.Module:extend("Id")
    function Id:forward(x) return x end
    local ds = cnn.data.TensorDataset(cnn.tensor {{2, 0}, {0, 3}}, cnn.tensor({1, 1}, {dtype = "int64"}))
    local loss, acc = cnn.trainer.evaluate(Id(), cnn.data.DataLoader(ds, {batch_size = 2}))
    -- -log softmax: log(1 + e^-2) for row 1, log(1 + e^3) for row 2
    local want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(3))) / 2
    assert.is_true(math.abs(loss - want) < 1e-5, tostring(loss))
    assert.are.equal(0.5, acc)
  end)

  it("refuses an empty loader (it reported a loss of 0 and an accuracy of 0%)", function()
    local ds = cnn.data.TensorDataset(cnn.zeros(0, 2), cnn.zeros(0, {dtype = "int64"}))
    H.assert_error(function() cnn.trainer.evaluate(cnn.nn.Linear(2, 2), cnn.data.DataLoader(ds, {batch_size = 2})) end,
      "trainer.evaluate: the loader gave no samples")
  end)
end)

describe("trainer.fit on a diverging run", function()
  it("stops at the first epoch whose loss is not finite, keeping the last good checkpoint", function()
    local dir = H.tmpdir()
    cnn.manual_seed(1)
    local x = cnn.randn(8, 4)
    local ds = cnn.data.TensorDataset(x, cnn.randint(1, 3, {8}))
    local m = cnn.nn.Linear(4, 3)
    local opt = cnn.optim.SGD(m:parameters(), {lr = 0.1})
    local function fit(epochs, resume)
      return cnn.trainer.fit{model = m, optimizer = opt, loader = cnn.data.DataLoader(ds, {batch_size = 4}),
        test_loader = cnn.data.DataLoader(ds, {batch_size = 4}), epochs = epochs, out = dir,
        checkpoint = dir .. "/ck.safetensors", resume = resume}
    end
    fit(1)
    local good = cnn.load(dir .. "/ck.safetensors")
    x[3][2] = 0 / 0 -- epoch 2 meets a NaN input: its loss and then the weights become NaN
    H.assert_error(function() fit(2, dir .. "/ck.safetensors") end,
      "the training loss was nan in epoch 2", "the checkpoint of epoch 1 is kept")
    assert.is_true(m.weight:isnan():any():item()) -- the model diverged, the file did not
    local kept = cnn.load(dir .. "/ck.safetensors")
    for k, v in pairs(good) do assert.is_true(cnn.allclose(v, kept[k], 0, 0), k) end
    local f = assert(io.open(dir .. "/metrics.csv"))
    local csv = f:read("a")
    f:close()
    assert.truthy(csv:find("\n2,nan,", 1, true)) -- the diverged epoch is on record
    H.rmdir(dir)
  end)

  it("stops when only the test loss shows it: the epoch's last step broke the weights", function()
    -- the training loss is taken before each update: one batch, a finite loss, then an infinite step
    local dir = H.tmpdir()
    cnn.manual_seed(2)
    local ds = cnn.data.TensorDataset(cnn.randn(4, 4), cnn.randint(1, 3, {4}))
    local m = cnn.nn.Linear(4, 3)
    H.assert_error(function()
      cnn.trainer.fit{model = m, optimizer = cnn.optim.SGD(m:parameters(), {lr = math.huge}),
        loader = cnn.data.DataLoader(ds, {batch_size = 4}), test_loader = cnn.data.DataLoader(ds, {batch_size = 4}),
        epochs = 1, out = dir, checkpoint = dir .. "/ck.safetensors"}
    end, "the test loss was nan in epoch 1", "no checkpoint was written")
    assert.is_nil(io.open(dir .. "/ck.safetensors"))
    H.rmdir(dir)
  end)
end)

describe("trainer.fit", function()
  it("names a missing or wrong option instead of failing inside", function()
    local m = cnn.nn.Linear(2, 2)
    local ds = cnn.data.TensorDataset(cnn.tensor {{2, 0}, {0, 3}}, cnn.tensor({1, 1}, {dtype = "int64"}))
    local loader = cnn.data.DataLoader(ds, {batch_size = 2})
    local base = {model = m, optimizer = cnn.optim.SGD(m:parameters(), {lr = 0.1}), loader = loader,
                  test_loader = loader, epochs = 1, out = "/nonexistent/out", checkpoint = "/nonexistent/c"}
    local function with(k, v)
      local o = {}
      for key, val in pairs(base) do o[key] = val end
      o[k] = v
      return o
    end
    H.assert_error(function() cnn.trainer.fit(with("checkpoint", nil)) end, "trainer.fit: checkpoint= is required")
    H.assert_error(function() cnn.trainer.fit(with("test_loader", nil)) end, "trainer.fit: test_loader= is required")
    H.assert_error(function() cnn.trainer.fit(with("epochs", 1.5)) end, "trainer.fit: epochs must be a non")
    H.assert_error(function() cnn.trainer.fit(with("out", 3)) end, "trainer.fit: out must be a path")
    -- a loader without set_epoch failed inside fit ("attempt to call a nil value (method 'set_epoch')")
    H.assert_error(function() cnn.trainer.fit(with("loader", {iter = function() end})) end,
      "trainer.fit: loader must be a DataLoader %(with iter and set_epoch%), got another table")
    H.assert_error(function() cnn.trainer.fit(with("test_loader", 5)) end, "trainer.fit: test_loader must be")
    -- "" is no folder: out .. "/metrics.csv" wrote a run into / (an example's --out "")
    H.assert_error(function() cnn.trainer.fit(with("out", "")) end, "trainer.fit: out must be a path, got an empty")
    H.assert_error(function() cnn.trainer.fit(with("checkpoint", "")) end, "trainer.fit: checkpoint must be a path")
    H.assert_error(function() cnn.trainer.out_dir{out = ""} end, "trainer.out_dir: out must be a folder's path")
    H.assert_error(function() cnn.trainer.out_dir{out = 3} end, "trainer.out_dir: out must be a folder's path, got 3")
    H.assert_error(function() cnn.trainer.fit(with("epoch", 3)) end, "epoch")
    H.assert_error(function() cnn.trainer.fit(3) end, "trainer.fit: expected a table of options")
    -- extra_state may not replace what a resume reads back (it used to, silently: the run trained,
    -- and its checkpoint could not be resumed)
    H.assert_error(function() cnn.trainer.fit(with("extra_state", {model = {}})) end,
      "trainer.fit: extra_state may not hold 'model'")
    H.assert_error(function() cnn.trainer.fit(with("extra_state", {epoch = 5})) end, "may not hold 'epoch'")
    H.assert_error(function() cnn.trainer.fit(with("extra_state", 5)) end, "trainer.fit: extra_state must be a table")
    H.assert_error(function() cnn.trainer.fit(with("progress_every", 0)) end,
      "trainer.fit: progress_every must be a positive integer")
    H.assert_error(function() cnn.trainer.fit(with("lr_at", {})) end, "trainer.fit: lr_at must be a function")
    local notckpt = os.tmpname()
    cnn.checkpoint.save(notckpt, {note = "not a run"})
    H.assert_error(function() cnn.trainer.fit(with("resume", notckpt)) end, "trainer.fit:",
      "is not a trainer checkpoint")
    -- a checkpoint whose epoch was tampered with (the C-API helper's '-5': 'epoch -4/2' trained 6)
    local sd = m:state_dict()
    cnn.checkpoint.save(notckpt, {epoch = -5, model = sd, optimizer = {state = {}, param_groups = {}}})
    H.assert_error(function() cnn.trainer.fit(with("resume", notckpt)) end, "trainer.fit:",
      "saved after epoch %-5: epochs count from 1")
    os.remove(notckpt)
    -- a checkpoint path that cannot be written is found before the first epoch, not at its save
    -- ("write failed (Not a directory)" after training, for an existing folder given with a slash)
    local outdir = os.tmpname()
    os.remove(outdir)
    local trained = false
    local watched = {iter = loader.iter, set_epoch = function() trained = true end}
    local function fit_with(ckpt)
      local o = with("checkpoint", ckpt)
      o.out, o.loader = outdir, watched
      return function() cnn.trainer.fit(o) end
    end
    H.assert_error(fit_with(outdir .. "/"), "trainer.fit: checkpoint", "is a folder: give the checkpoint's file name")
    H.assert_error(fit_with(outdir), "trainer.fit: checkpoint", "is a folder")
    H.write_bytes(outdir .. "/file", "x")
    H.assert_error(fit_with(outdir .. "/file/c.safetensors"), "trainer.fit: checkpoint: cannot create")
    -- the path as the save writes it: a link into a folder that does not exist failed at the save
    assert(os.execute("ln -s missing/c.safetensors " .. H.sh_quote(outdir .. "/link.safetensors")))
    H.assert_error(fit_with(outdir .. "/link.safetensors"), "trainer.fit: checkpoint: ", "cannot create")
    assert.is_false(trained)
    require("cnn.util").remove_tree(outdir)
    -- and the runtime goes on
    local loss, acc = cnn.trainer.evaluate(m, loader)
    assert.is_true(loss >= 0 and acc >= 0)
  end)
end)
