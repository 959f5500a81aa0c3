-- cnn.datasets.folders: ImageFolders of photos brought to one size (ImageNet-style transforms),
-- split into training and test sets, and a synthetic folder of shapes so image examples run
-- anywhere. Used by
-- examples/train_alexnet.lua --full and examples/finetune_resnet18.lua.
local cnn = require "cnn"
local data = cnn.data
local T = data.transforms

local M = {}

local function exists(p) return require("cnn.core").io.file_kind(p) ~= nil end

--- folders.photo_transforms(size, {normalize=true}) -> train_transform, test_transform: ImageNet-style
--- transforms to size x size. Training: random_resized_crop(size) and random_hflip(); testing:
--- resize to size * 256 / 224 (the shorter side) and center_crop(size). Both end with normalize by
--- data.IMAGENET_MEAN and IMAGENET_STD unless normalize = false. All in C: a DataLoader's workers
--- run them.
function M.photo_transforms(size, opts)
  opts = opts or {}
  local tail = opts.normalize == false and {} or {T.normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)}
  local train = T.compose{T.random_resized_crop(size), T.random_hflip(), table.unpack(tail)}
  local test = T.compose{T.resize(math.floor(size * 256 / 224 + 0.5)), T.center_crop(size), table.unpack(tail)}
  return train, test
end

-- A synthetic ImageFolder: 3 classes x 8 PNGs of size x size (blue bars, green discs, red squares
-- at random places on a dark noisy background).
function M.shapes(dir, size)
  local names = {"bar", "disc", "square"}
  local r = cnn.arange(size):float():view(size, 1)
  local c = cnn.arange(size):float():view(1, size)
  for k, name in ipairs(names) do
    assert(cnn.util.mkdir_p(dir .. "/" .. name))
    for i = 1, 8 do
      local img = cnn.rand(3, size, size) * 0.2
      local s = size // 4
      local y0, x0 = math.random(0, size - s - 1), math.random(0, size - s - 1)
      local ch = ({3, 2, 1})[k]
      if name == "square" then
        img[ch]:narrow(1, y0 + 1, s):narrow(2, x0 + 1, s):fill_(1)
      elseif name == "bar" then
        img[ch]:narrow(1, y0 + 1, math.max(1, s // 3)):narrow(2, 1, size):fill_(1)
      else
        local cy, cx = y0 + s / 2, x0 + s / 2
        local mask = ((r - cy) ^ 2 + (c - cx) ^ 2):le((s / 2) ^ 2)
        img[ch]:copy_((img[ch] + mask):clamp(0, 1))
      end
      cnn.image.save(string.format("%s/%s/%02d.png", dir, name, i), img)
    end
  end
end

--- folders.splits(dir, size, {normalize=true, cache=false}) -> train_set, test_set: ImageFolders of
--- dir (photos of any size and kind) with folders.photo_transforms(size): DIR/train and DIR/val
--- when both are there (with the same class folders: a label is a class's place in the sorted
--- list, so another list would relabel the test set), otherwise every 4th image of DIR held out
--- for testing (ImageFolder:subset, each split with its own transform). cache keeps the decoded
--- images as bytes.
function M.splits(dir, size, opts)
  opts = opts or {}
  local train_tf, test_tf = M.photo_transforms(size, opts)
  local cache = opts.cache or false
  local has_train, has_val = exists(dir .. "/train"), exists(dir .. "/val") -- exists() opens folders too
  if has_train ~= has_val then
    error(string.format("%s has %s/ but no %s/: give both (the split) or neither (every 4th image held out)",
      dir, has_train and "train" or "val", has_train and "val" or "train"), 2)
  end
  if has_train then
    local train = data.ImageFolder(dir .. "/train", {transform = train_tf, cache = cache})
    local val = data.ImageFolder(dir .. "/val", {transform = test_tf, cache = cache})
    if table.concat(train.classes, "\0") ~= table.concat(val.classes, "\0") then
      error(string.format("%s/val's classes (%s) are not %s/train's (%s): its labels would name other classes",
        dir, table.concat(val.classes, ", "), dir, table.concat(train.classes, ", ")), 2)
    end
    return train, val
  end
  local all = data.ImageFolder(dir, {transform = train_tf, cache = cache})
  local tr, te = {}, {}
  for i = 1, #all do
    if i % 4 == 0 then te[#te + 1] = i else tr[#tr + 1] = i end
  end
  return all:subset(tr), all:subset(te, {transform = test_tf})
end

--- folders.open(dir, size, seed, {normalize=true, cache=false}) -> train_set, test_set, temp_dir:
--- folders.splits of dir, or, when dir is nil, of synthetic shapes drawn (seeded) into a temporary
--- folder the caller removes afterwards (folders.remove).
function M.open(dir, size, seed, opts)
  local temp
  if not dir then
    dir = os.tmpname()
    os.remove(dir)
    math.randomseed(seed)
    M.shapes(dir, size)
    temp = dir
  end
  local train, test = M.splits(dir, size, opts)
  return train, test, temp
end

--- folders.remove(dir): deletes dir and everything in it (rm -r; symbolic links are removed, never
--- followed).
function M.remove(dir)
  assert(cnn.util.remove_tree(dir))
end

return M
