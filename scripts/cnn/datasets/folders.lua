-- cnn.datasets.folders: ImageFolder data at one fixed image size, split into training and test
-- sets, and a synthetic folder of shapes so image examples run anywhere. Used by
-- examples/train_alexnet.lua --full and examples/finetune_resnet18.lua.
local cnn = require "cnn"
local data = cnn.data
local T = data.transforms

local M = {}

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The samples of ds at the positions in list (fetched one by one through ds:get).
local function subset(ds, list)
  return setmetatable({n = #list, classes = ds.classes, get = function(_, i) return ds:get(list[i]) end},
    {__len = function(self) return self.n end})
end

-- An image (C, H, W) brought to size x size: zero-padded evenly when smaller, then cropped (at
-- random for training, centred for testing).
local function fit(size, random)
  return function(x)
    local _, h, w = table.unpack(x:shape())
    local ph, pw = math.max(0, (size - h + 1) // 2), math.max(0, (size - w + 1) // 2)
    if random then return T.random_crop(size, {padding = {ph, pw}})(x) end
    if ph > 0 or pw > 0 then
      x = T.random_crop({h + 2 * ph, w + 2 * pw}, {padding = {ph, pw}})(x) -- a pad: the window is the whole
      h, w = h + 2 * ph, w + 2 * pw
    end
    return x:narrow(2, (h - size) // 2 + 1, size):narrow(3, (w - size) // 2 + 1, size):contiguous()
  end
end

-- A synthetic ImageFolder: 3 classes x 8 PNGs of size x size (blue bars, green discs, red squares
-- at random places on a dark noisy background).
function M.shapes(dir, size)
  local names = {"bar", "disc", "square"}
  local r = cnn.arange(size):float():view(size, 1)
  local c = cnn.arange(size):float():view(1, size)
  for k, name in ipairs(names) do
    os.execute("mkdir -p " .. sh_quote(dir .. "/" .. name))
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

--- folders.splits(dir, size) -> train_set, test_set: DIR/train and DIR/val when present, otherwise
--- every 4th image of DIR held out for testing; images padded or cropped to size x size (a random
--- crop for training, the centre for testing).
function M.splits(dir, size)
  if exists(dir .. "/train") or exists(dir .. "/val") then -- exists() opens folders too on Linux
    return data.ImageFolder(dir .. "/train", {transform = fit(size, true)}),
           data.ImageFolder(dir .. "/val", {transform = fit(size, false)})
  end
  local all = data.ImageFolder(dir, {transform = fit(size, true)})
  local plain = data.ImageFolder(dir, {transform = fit(size, false)})
  local tr, te = {}, {}
  for i = 1, #all do
    if i % 4 == 0 then te[#te + 1] = i else tr[#tr + 1] = i end
  end
  return subset(all, tr), subset(plain, te)
end

--- folders.open(dir, size, seed) -> train_set, test_set, temp_dir: splits of dir, or, when dir is
--- nil, of synthetic shapes drawn (seeded) into a temporary folder the caller removes afterwards.
function M.open(dir, size, seed)
  local temp
  if not dir then
    dir = os.tmpname()
    os.remove(dir)
    math.randomseed(seed)
    M.shapes(dir, size)
    temp = dir
  end
  local train, test = M.splits(dir, size)
  return train, test, temp
end

return M
