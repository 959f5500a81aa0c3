-- ImageFolder over photos (JPEG and PNG mixed, any sizes) and the DataLoader's worker threads: the
-- same batches whatever `workers` and `prefetch` are, with and without a seed; the cache; a Lua
-- function in the transform; errors with the file's path at the right batch; threads that stop
-- when the loop ends (break, close, collection) and stay out of the way of fork().
local cnn = require "cnn"
local data = cnn.data
local image = cnn.image
local T = data.transforms
local H = dofile("tests/lua/helpers.lua")
local process = require("cnn.core").process

local PHOTOS = "tests/fixtures/photos/"

-- The threads of this process (Linux: one entry per thread in /proc/self/task).
local function threads()
  local p = io.popen("ls /proc/" .. process.pid() .. "/task | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

-- A folder of 3 classes: JPEGs of several sizes and kinds, PNGs, an upper-case extension.
local function make_folder()
  local d = H.tmpdir()
  local files = {
    a = {"rgb_420.jpg", "progressive.jpg", "gray.jpg", "exif_6.jpg"},
    b = {"rgb_444.jpg", "cmyk.jpg", "arithmetic.jpg"},
    c = {"rgb_422.jpg", "exif_6.png", "restart.jpg", "rgb_411.jpg"},
  }
  for class, list in pairs(files) do
    os.execute(string.format("mkdir '%s/%s'", d, class))
    for i, f in ipairs(list) do
      H.write_bytes(string.format("%s/%s/%02d_%s", d, class, i, f), H.read_bytes(PHOTOS .. f))
    end
  end
  image.save(d .. "/b/10_saved.PNG", cnn.rand(3, 30, 17))
  image.save(d .. "/c/10_small.jpeg", cnn.rand(3, 9, 40))
  return d
end

local function epoch_batches(loader)
  local xs, ys = {}, {}
  for x, y in loader:iter() do
    xs[#xs + 1] = x
    ys[#ys + 1] = y:totable()
  end
  return xs, ys
end

local function same_batches(a, b)
  assert.are.equal(#a, #b)
  for i = 1, #a do assert.is_true(cnn.allclose(a[i], b[i], 0, 0), "batch " .. i .. " differs") end
end

describe("data.ImageFolder over photos", function()
  local root
  setup(function() root = make_folder() end)
  teardown(function() H.rmdir(root) end)

  it("finds JPEG and PNG files of any size, classes from the folder names", function()
    local ds = data.ImageFolder(root)
    assert.are.same({"a", "b", "c"}, ds.classes)
    assert.are.equal(13, #ds)
    local x, y = ds:get(1)
    assert.are.equal(1, y)
    assert.is_true(cnn.allclose(x, image.load(PHOTOS .. "rgb_420.jpg", {mode = "rgb"}), 0, 0))
    local g = ds:get(3) -- a grey JPEG in mode rgb: 3 channels
    assert.are.same({3, 21, 27}, g:shape())
    assert.are.same({3, 11, 7}, (ds:get(4)):shape()) -- EXIF orientation 6 applied
    assert.are.same({3, 30, 17}, (ds:get(8)):shape()) -- .PNG matched whatever the case
    local raw = data.ImageFolder(root, {exif = false})
    assert.are.same({3, 7, 11}, (raw:get(4)):shape())
  end)

  it("gives the same batches with 0, 1 and 3 workers and any prefetch, epoch after epoch", function()
    local ds = data.ImageFolder(root, {transform = T.compose{T.random_resized_crop(8), T.random_hflip(),
                                                             T.color_jitter{brightness = 0.3, hue = 0.1},
                                                             T.normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)}})
    local runs = {}
    for _, w in ipairs({{0, 2}, {1, 1}, {3, 2}, {3, 5}}) do
      local loader = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 7, workers = w[1], prefetch = w[2]})
      local e1, y1 = epoch_batches(loader)
      local e2 = epoch_batches(loader)
      runs[#runs + 1] = {e1, e2, y1}
    end
    assert.are.equal(4, #runs[1][1]) -- 13 samples in batches of 4
    assert.are.same({4, 3, 8, 8}, runs[1][1][1]:shape())
    assert.are.same({1, 3, 8, 8}, runs[1][1][4]:shape())
    for r = 2, #runs do
      same_batches(runs[1][1], runs[r][1])
      same_batches(runs[1][2], runs[r][2])
      assert.are.same(runs[1][3], runs[r][3])
    end
    -- epochs differ (another order, other draws)
    assert.is_false(cnn.allclose(runs[1][1][1], runs[1][2][1], 0, 0))
    -- a sample's augmentation depends on (seed, epoch, index), not on the order: without shuffle
    -- each image is the same, in dataset order
    local shuffled = data.DataLoader(ds, {batch_size = 4, shuffle = true, seed = 7})
    local order = shuffled:_order(1) -- the permutation of epoch 1 (0-based)
    local plain = data.DataLoader(ds, {batch_size = 13, seed = 7, workers = 2})
    local all = epoch_batches(plain)[1]
    assert.is_true(cnn.allclose(all:index_select(1, order + 1), cnn.cat(runs[1][1], 1), 0, 0))
  end)

  it("draws from cnn.manual_seed without a seed, one draw per epoch, whatever workers is", function()
    local ds = data.ImageFolder(root, {transform = T.compose{T.random_resized_crop(6), T.random_rotation(30)}})
    local results = {}
    for _, w in ipairs({0, 2}) do
      cnn.manual_seed(5)
      results[#results + 1] = epoch_batches(data.DataLoader(ds, {batch_size = 5, shuffle = true, workers = w}))
      results[#results + 1] = cnn.rand(1):item() -- the stream moved by the same amount
    end
    same_batches(results[1], results[3])
    assert.are.equal(results[2], results[4])
  end)

  it("caches decoded images as bytes when asked, with the same results", function()
    local t = T.compose{T.resize(10), T.center_crop(9)}
    local cached = data.ImageFolder(root, {transform = t, cache = true})
    local plain = data.ImageFolder(root, {transform = t})
    assert.are.same({0, 0}, {cached:cache_info()})
    local a = epoch_batches(data.DataLoader(cached, {batch_size = 5, workers = 2}))
    local n, bytes = cached:cache_info()
    assert.are.equal(13, n)
    assert.is_true(bytes > 13 * 3 * 7 * 7)
    local b = epoch_batches(data.DataLoader(cached, {batch_size = 5, workers = 2}))
    local c = epoch_batches(data.DataLoader(plain, {batch_size = 5}))
    same_batches(a, b)
    same_batches(a, c)
  end)

  it("runs a Lua function in the transform on the caller's thread, the rest on the workers", function()
    local t = T.compose{T.resize({6, 5}), function(x) return x * 2 end, T.random_hflip()}
    local ds = data.ImageFolder(root, {transform = t})
    -- the flip after the function runs in Lua: it draws from cnn's generator, batch by batch
    cnn.manual_seed(1)
    local a = epoch_batches(data.DataLoader(ds, {batch_size = 4, seed = 3, workers = 0}))
    cnn.manual_seed(1)
    local b = epoch_batches(data.DataLoader(ds, {batch_size = 4, seed = 3, workers = 2}))
    same_batches(a, b)
    assert.are.same({4, 3, 6, 5}, a[1]:shape())
    assert.is_true(a[1]:max():item() > 1) -- doubled
  end)

  it("subset gives a split its own transform", function()
    local ds = data.ImageFolder(root, {transform = T.resize({4, 4})})
    local val = ds:subset({1, 5, 9}, {transform = T.compose{T.resize(12), T.center_crop(10)}})
    assert.are.equal(3, #val)
    assert.are.same(ds.classes, val.classes)
    local x, y = val:get(2)
    assert.are.same({3, 10, 10}, x:shape())
    assert.are.equal(ds.samples[5][2], y)
    assert.are.same({3, 4, 4}, (ds:get(5)):shape())
    H.assert_error(function() ds:subset({0}) end, "subset:", "out of range")
    H.assert_error(function() ds:subset({1, 1.5}) end, "subset: entry 2 %(1.5%) is not an integer index")
  end)

  it("names the transform when its Lua part returns no tensor; extensions {\"\"} takes every file", function()
    local ds = data.ImageFolder(root, {transform = T.compose{T.resize({4, 4}), function() return "s" end}})
    H.assert_error(function() for _ in data.DataLoader(ds, {batch_size = 2}):iter() do end end,
      "DataLoader: the dataset's transform returned s for image 1 of the batch, not a tensor")
    -- Python's endswith(""): every file (it matched none: "no  files found")
    assert.are.equal(#data.ImageFolder(root), #data.ImageFolder(root, {extensions = {""}}))
  end)

  it("takes a batch size past the folder's images as one batch of them all", function()
    local ds = data.ImageFolder(root, {transform = T.resize({4, 4})})
    for _, w in ipairs({0, 2}) do -- the slots were sized to the request: 2^40 was 'out of memory'
      local n, seen = 0, 0
      for x, y in data.DataLoader(ds, {batch_size = 1 << 40, workers = w}):iter() do
        n, seen = n + 1, seen + x:size(1)
        assert.are.equal(#ds, y:size(1))
      end
      assert.are.same({1, #ds}, {n, seen})
    end
  end)

  it("folders.splits (the fine-tuning example's) takes train/ and val/ only together, with one class list", function()
    local folders = require "cnn.datasets.folders"
    local d = H.tmpdir()
    local function put(path) H.write_bytes(d .. "/" .. path, H.read_bytes(PHOTOS .. "rgb_444.jpg")) end
    H.mkdir_p(d .. "/train/a", d .. "/train/b", d .. "/train/c", d .. "/val/a", d .. "/val/c")
    for _, p in ipairs({"train/a/1.jpg", "train/b/1.jpg", "train/c/1.jpg", "val/a/1.jpg", "val/c/1.jpg"}) do put(p) end
    -- val's 'c' would be label 2, the network's 'b'
    H.assert_error(function() folders.splits(d, 8) end, "val's classes %(a, c%) are not", "train's %(a, b, c%)")
    H.mkdir_p(d .. "/val/b")
    put("val/b/1.jpg")
    local tr, te = folders.splits(d, 8)
    assert.are.same({3, 3}, {#tr, #te})
    assert.are.same(tr.classes, te.classes)
    H.rmdir(d .. "/val")
    H.assert_error(function() folders.splits(d, 8) end, "has train/ but no val/")
    H.rmdir(d)
  end)

  it("data.Subset and data.random_split of a folder stay folders: the workers decode them", function()
    local ds = data.ImageFolder(root, {transform = T.resize({5, 5})})
    local sub = data.Subset(ds, {2, 7, 4})
    assert.are.equal(getmetatable(ds), getmetatable(sub))
    assert.are.same({2, 7, 4}, sub.indices)
    assert.are.equal(ds, sub.dataset)
    local a = epoch_batches(data.DataLoader(sub, {batch_size = 2, workers = 0}))
    local b = epoch_batches(data.DataLoader(sub, {batch_size = 2, workers = 2}))
    same_batches(a, b)
    assert.is_true(cnn.allclose(a[1][2], (ds:get(7)), 0, 0))
    local train, val = table.unpack(data.random_split(ds, {0.75, 0.25}, {seed = 2}))
    assert.are.equal(#ds, #train + #val)
    assert.are.equal(getmetatable(ds), getmetatable(val))
    local _, ys = epoch_batches(data.DataLoader(val, {batch_size = #val, workers = 2}))
    for k, i in ipairs(val.indices) do assert.are.equal(ds.samples[i][2], ys[1][k]) end
  end)

  it("reports a batch that cannot stack, and a corrupt file, with the path, whatever workers is", function()
    local ds = data.ImageFolder(root) -- no transform: sizes differ
    for _, w in ipairs({0, 2}) do
      local loader = data.DataLoader(ds, {batch_size = 4, workers = w})
      H.assert_error(function() for _ in loader:iter() do end end, "DataLoader:", "progressive.jpg",
        "a batch needs one size")
    end
    local d = H.tmpdir()
    os.execute(string.format("mkdir '%s/x' '%s/y'", d, d))
    for i = 1, 6 do H.write_bytes(string.format("%s/x/%d.jpg", d, i), H.read_bytes(PHOTOS .. "rgb_444.jpg")) end
    local bytes = H.read_bytes(PHOTOS .. "rgb_444.jpg")
    H.write_bytes(d .. "/y/1.jpg", bytes:sub(1, #bytes // 2))
    H.write_bytes(d .. "/y/2.jpg", bytes)
    local bad = data.ImageFolder(d, {transform = T.resize({5, 5})})
    for _, w in ipairs({0, 1, 3}) do
      local loader = data.DataLoader(bad, {batch_size = 3, workers = w, prefetch = 3})
      local it = loader:iter()
      local x = it()
      assert.are.same({3, 3, 5, 5}, x:shape())
      x = it()
      assert.are.same({3, 3, 5, 5}, x:shape())
      -- batch 3 holds y/1.jpg (truncated): the error names it, then the loader goes on
      H.assert_error(function() it() end, "DataLoader:", d .. "/y/1.jpg", "invalid JPEG")
      assert.is_nil(it())
      loader:close()
    end
    H.rmdir(d)
    H.assert_usable()
  end)

  it("stops its threads when the loop breaks, at close and when collected", function()
    local ds = data.ImageFolder(root, {transform = T.resize({8, 8})})
    collectgarbage()
    local base = threads()
    local loader = data.DataLoader(ds, {batch_size = 2, workers = 3})
    local seen = 0
    for _ in loader:iter() do
      assert.are.equal(base + 3, threads())
      seen = seen + 1
      if seen == 2 then break end
    end
    assert.are.equal(2, seen)
    assert.are.equal(base, threads())
    -- the iterator of a loop that broke, called again, raises (it returned nil: a silent early end)
    local f, s, c, stop = loader:iter()
    for _ in f, s, c, stop do break end -- luacheck: ignore 512 (one pass, then break: the point)
    H.assert_error(function() f() end, "DataLoader: this epoch's for loop ended %(a break or an error%)")
    f, s, c, stop = loader:iter() -- a break after the last batch: the end, as without the break
    local n = 0
    for _ in f, s, c, stop do
      n = n + 1
      if n == #loader then break end
    end
    assert.is_nil(f())
    local it = loader:iter()
    it()
    assert.are.equal(base + 3, threads())
    local it2 = loader:iter() -- a second epoch beside the first (an evaluation inside a training epoch)
    it2()
    assert.are.equal(base + 6, threads())
    loader:close() -- stops both; their iterators then raise instead of ending a loop early
    assert.are.equal(base, threads())
    H.assert_error(function() it() end, "DataLoader: this epoch was stopped by loader:close()")
    H.assert_error(function() it2() end, "DataLoader: this epoch was stopped by loader:close()")
    do
      local l2 = data.DataLoader(ds, {batch_size = 2, workers = 2})
      local it3 = l2:iter()
      it3()
      assert.are.equal(base + 2, threads())
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(base, threads())
    -- after the last batch the iterator has stopped them already
    for _ in data.DataLoader(ds, {batch_size = 20, workers = 2}):iter() do end
    assert.are.equal(base, threads())
  end)

  it("bounds the threads of epochs dropped unfinished, though the collector counts no threads", function()
    -- next(iter(loader)) in a loop: each epoch's workers lived until a collection, and with the
    -- collector idle a process reached 1,338 threads (or failed to start one under ulimit -v)
    local ds = data.ImageFolder(root, {transform = T.resize({8, 8})})
    collectgarbage()
    local base, most = threads(), 0
    collectgarbage("stop") -- no automatic collection: only the loader's own may stop them
    for _ = 1, 40 do
      local loader = data.DataLoader(ds, {batch_size = 2, workers = 4})
      loader:iter()()
      most = math.max(most, threads())
    end
    collectgarbage("restart")
    assert.is_true(most <= base + 64 + 4, "threads at once: " .. most - base)
    collectgarbage()
    collectgarbage()
    assert.are.equal(base, threads())
  end)

  it("runs a second epoch of the same loader inside the first, each to its end", function()
    -- a mid-epoch evaluation on the training loader ended the training epoch silently (5 batches
    -- of 25 seen) when iter() stopped the previous epoch
    local ds = data.ImageFolder(root, {transform = T.resize({8, 8})})
    for _, w in ipairs({0, 2}) do
      local loader = data.DataLoader(ds, {batch_size = 2, shuffle = true, seed = 3, workers = w})
      local want = epoch_batches(data.DataLoader(ds, {batch_size = 2, shuffle = true, seed = 3}))
      local outer, inner = {}, 0
      for x in loader:iter() do
        outer[#outer + 1] = x
        if #outer == 2 then
          for _ in loader:iter() do inner = inner + 1 end -- epoch 2, whole
        end
      end
      assert.are.equal(#loader, #outer)
      assert.are.equal(#loader, inner)
      for b = 1, #want do assert.is_true(cnn.allclose(outer[b], want[b], 0, 0), "batch " .. b) end
    end
  end)

  it("lets fork() run while workers decode: the child gets an error, the parent goes on", function()
    local ds = data.ImageFolder(root, {transform = T.compose{T.random_resized_crop(7), T.random_hflip()}})
    local want = epoch_batches(data.DataLoader(ds, {batch_size = 2, seed = 11}))
    local loader = data.DataLoader(ds, {batch_size = 2, seed = 11, workers = 2, prefetch = 4})
    local got = {}
    local it = loader:iter()
    got[1] = it()
    local job = {}
    process.fork(function()
      local ok, err = pcall(it)
      return ok and "no error" or tostring(err)
    end, job)
    local how, code = process.wait(job.pid, true)
    local msg = {}
    while true do
      local chunk = process.read(job.fd)
      if chunk == nil or chunk == "" then break end
      msg[#msg + 1] = chunk
    end
    process.close(job.fd)
    assert.are.same({"exit", 0}, {how, code})
    assert.is_truthy(table.concat(msg):find("before fork", 1, true), table.concat(msg))
    for x in it do got[#got + 1] = x end
    same_batches(want, got)
  end)

  it("rejects bad loader options", function()
    local ds = data.ImageFolder(root)
    H.assert_error(function() data.DataLoader(ds, {workers = -1}) end, "DataLoader:", "workers")
    H.assert_error(function() data.DataLoader(ds, {workers = 1.5}) end, "DataLoader:", "workers")
    H.assert_error(function() data.DataLoader(ds, {prefetch = 0}) end, "DataLoader:", "prefetch")
    H.assert_error(function() data.ImageFolder(root, {cache = 1}) end, "ImageFolder:", "cache must be a boolean")
    H.assert_error(function() data.ImageFolder(root, {mode = "cmyk"}) end, "ImageFolder:", "mode")
    H.assert_usable()
  end)
end)

describe("a DataLoader transform that returns nil", function()
  it("is an error naming DataLoader, not an epoch that silently ends after no batches", function()
    -- the nil batch ended the caller's for loop: 0 batches and no error
    local ds = data.TensorDataset(cnn.rand(5, 1, 2, 2), cnn.tensor({ 1, 2, 3, 4, 5 }, { dtype = "int64" }))
    local loader = data.DataLoader(ds, { batch_size = 2, transform = function() return nil end })
    H.assert_error(function()
      for _ in loader:iter() do end
    end, "DataLoader: the transform returned nil instead of the batch")
    local n = 0
    for x in data.DataLoader(ds, { batch_size = 2, transform = function(x) return x * 2 end }):iter() do
      n = n + x:size(1)
    end
    assert.are.equal(5, n)
    H.assert_usable()
  end)
end)

describe("a DataLoader over a Lua dataset whose samples differ in shape", function()
  it("names the loader, the field and both shapes, not cnn.stack at a line of data.lua", function()
    local ds = setmetatable({}, {__len = function() return 3 end,
                                 __index = {get = function(_, i) return cnn.ones(i + 1), i end}})
    H.assert_error(function()
      for _ in data.DataLoader(ds, {batch_size = 3}):iter() do end
    end, "DataLoader: cannot batch field 1: samples of shapes %(2%) and %(3%) %(resize them")
    H.assert_usable()
  end)
end)
