-- cnn.datasets.cifar10: the CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin; records of
-- 1 label byte + 3072 pixel bytes, 3x32x32 channel-major) as a dataset whose images stay uint8 (a
-- (N, 3, 32, 32) tensor) and become float32 in [0, 1] per item or per batch, as MNIST's.
-- Labels are 1..10. The module is the function data.cifar10(dir, split = "train").
local core = require "cnn.core"
local util = require "cnn.util"
local show = util.show -- values in messages ("nan", never "-nan")
local cio = core.io

local RECORD, PIXELS = 3073, 3072
local CLASSES = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
local TRAIN_FILES = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}
local TEST_FILES = {"test_batch.bin"}
local DIVISOR = 255

-- Present at all (io.open would block on a named pipe; read_batch refuses what is not a file).
local function exists(path) return cio.file_kind(path) ~= nil end

local checked = util.checked -- checked(level, pcall(f, ...)): core.io's error at the caller's line

-- Methods live in the metatable itself (the DataLoader finds _gather there with rawget); __index
-- maps sample numbers to {x, y} and names to methods.
--- class cnn.data.CIFAR10
--- A CIFAR-10 dataset, made by cnn.data.cifar10.
--- `#ds`, `ds:get(i)` -> image, label, `ds[i]` -> {image, label}, `ds.classes`, `ds.labels`.
local CIFAR10 = {__name = "CIFAR10"}
CIFAR10.__index = function(self, k)
  if type(k) == "number" then return table.pack(self:get(k, 2)) end
  return CIFAR10[k]
end
CIFAR10.__len = function(self) return self.n end
CIFAR10.__tostring = function(self) return string.format("CIFAR10(%s, %d samples)", self.split, self.n) end

--- cnn.data.CIFAR10:get(i) -> image, label
--- Image i as a fresh (3, 32, 32) float32 tensor in [0, 1] and its label 1..10.
function CIFAR10.get(self, i, level)
  level = (level or 1) + 1
  if math.type(i) ~= "integer" and not (type(i) == "number" and i == math.floor(i)) then
    error("CIFAR10: index must be an integer, got " .. show(i), level)
  end
  i = math.tointeger(i)
  if i < 0 then i = self.n + 1 + i end
  if i < 1 or i > self.n then
    error(string.format("CIFAR10: index %d is out of range for %d samples", i, self.n), level)
  end
  return self.pixels[i]:float():div_(DIVISOR), self.labels[i]
end

-- Batch of the samples at the 0-based int64 indices idx: (N, 3, 32, 32) floats and int64 labels.
function CIFAR10._gather(self, idx)
  return cio.gather_float(self.pixels, idx, DIVISOR, "DataLoader"), cio.gather(self.labels, idx, "DataLoader")
end

--- cnn.data.CIFAR10:images() -> Tensor
--- Every image as one (N, 3, 32, 32) float32 tensor in [0, 1] (a copy made on demand).
function CIFAR10.images(self)
  return self.pixels:float():div_(DIVISOR)
end

-- Reads one batch file whole; appends its pixels ((n, 3072) uint8) and labels ((n, 1) uint8, 0-based)
-- to the lists.
local function read_batch(path, pixels, labels, level)
  checked(level + 1, pcall(cio.check_file, path, "cifar10"))
  local f, err = io.open(path, "rb")
  if not f then error("cifar10: cannot open " .. path .. ": " .. tostring(err), level + 1) end
  local s = f:read("a")
  f:close()
  if not s or #s == 0 then error(string.format("cifar10: %s is empty", path), level + 1) end
  if #s % RECORD ~= 0 then
    error(string.format("cifar10: %s has %d bytes, not a multiple of the %d-byte record (1 label + 3x32x32 pixels)",
      path, #s, RECORD), level + 1)
  end
  local lab = checked(level + 1, pcall(cio.records, s, RECORD, 0, 1, "cifar10"))
  local top = lab:max():item()
  if top > 9 then
    error(string.format("cifar10: %s: record %d has label %d, outside 0..9", path, lab:view(-1):argmax():item(), top),
      level + 1)
  end
  labels[#labels + 1] = lab
  pixels[#pixels + 1] = checked(level + 1, pcall(cio.records, s, RECORD, 1, PIXELS, "cifar10"))
end

--- cnn.data.cifar10(dir, split="train") -> dataset
--- CIFAR-10's binary files in dir (or in dir/cifar-10-batches-bin) as a dataset (a cnn.data.CIFAR10).
--- split "train" reads data_batch_1..5.bin, "test" test_batch.bin. Images are (3, 32, 32) float32
--- in [0, 1], labels 1..10 with names in `ds.classes`; `ds.labels` (int64), `ds.pixels` (the images
--- as one uint8 (N, 3, 32, 32) tensor).
return function(dir, split)
  if type(dir) ~= "string" then error("cifar10: expected a folder (string), got " .. type(dir), 2) end
  split = split or "train"
  if split ~= "train" and split ~= "test" then
    error(string.format("cifar10: split must be \"train\" or \"test\", got %s", show(split)), 2)
  end
  local files = split == "train" and TRAIN_FILES or TEST_FILES
  if not exists(dir .. "/" .. files[1]) and exists(dir .. "/cifar-10-batches-bin/" .. files[1]) then
    dir = dir .. "/cifar-10-batches-bin"
  end
  for _, name in ipairs(files) do
    if not exists(dir .. "/" .. name) then error(string.format("cifar10: %s/%s not found", dir, name), 2) end
  end
  local parts, labels = {}, {}
  for _, name in ipairs(files) do read_batch(dir .. "/" .. name, parts, labels, 2) end
  local pixels = core.cat(parts, 1)
  parts = nil -- luacheck: ignore 311 (the per-file pixels can go before the dataset is used)
  local n = pixels:size(1)
  local ds = setmetatable({pixels = pixels:view(n, 3, 32, 32), labels = core.cat(labels, 1):view(n):long() + 1,
                           n = n, classes = {table.unpack(CLASSES)}, split = split}, CIFAR10)
  return ds
end
