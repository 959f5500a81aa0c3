-- cnn.datasets.cifar10: the CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin; records of
-- 1 label byte + 3072 pixel bytes, 3x32x32 channel-major) as a dataset whose images stay bytes (a
-- core.io byte array, (N, 3, 32, 32)) and become float32 in [0, 1] per item or per batch, as MNIST's.
-- Labels are 1..10. The module is the function data.cifar10(dir, split = "train").
local core = require "cnn.core"
local cio = core.io

local RECORD, PIXELS = 3073, 3072
local CLASSES = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
local TRAIN_FILES = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}
local TEST_FILES = {"test_batch.bin"}
local DIVISOR = 255

-- Present at all (io.open would block on a named pipe; read_batch refuses what is not a file).
local function exists(path) return cio.file_kind(path) ~= nil end

-- Re-raises a core.io failure (its message names the function already) at the caller's level.
local function checked(level, ok, ...)
  if not ok then error(..., level + 1) end
  return ...
end

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
    error("CIFAR10: index must be an integer, got " .. tostring(i), level)
  end
  i = math.tointeger(i)
  if i < 0 then i = self.n + 1 + i end
  if i < 1 or i > self.n then
    error(string.format("CIFAR10: index %d is out of range for %d samples", i, self.n), level)
  end
  return self.pixels:row(i, DIVISOR, "CIFAR10"), self.labels[i]
end

-- Batch of the samples at the 0-based int64 indices idx: (N, 3, 32, 32) floats and int64 labels.
function CIFAR10._gather(self, idx)
  return self.pixels:gather(idx, DIVISOR, "DataLoader"), cio.gather(self.labels, idx, "DataLoader")
end

--- cnn.data.CIFAR10:images() -> Tensor
--- Every image as one (N, 3, 32, 32) float32 tensor in [0, 1] (a copy made on demand).
function CIFAR10.images(self)
  return checked(2, pcall(self.pixels.float, self.pixels, DIVISOR, "images"))
end

-- Reads one batch file whole; appends its pixel records (strings) to chunks and labels (0-based
-- bytes + 1) to labels.
local function read_batch(path, chunks, labels, level)
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
  for r = 0, #s // RECORD - 1 do
    local off = r * RECORD + 1
    local lab = s:byte(off)
    if lab > 9 then
      error(string.format("cifar10: %s: record %d has label %d, outside 0..9", path, r + 1, lab), level + 1)
    end
    labels[#labels + 1] = lab + 1
    chunks[#chunks + 1] = s:sub(off + 1, off + PIXELS)
  end
end

-- Lua has no byte array from a string, so the pixels reach one through core.io's IDX reader: they
-- are written once as a 4-d ubyte IDX file (N, 3, 32, 32) in a temporary file, read back by
-- idx_load_bytes (one C pass) and the file is removed.
local function to_bytes(chunks, level)
  local n = #chunks
  local tmp = os.tmpname()
  local f, err = io.open(tmp, "wb")
  if not f then error("cifar10: cannot write a temporary file " .. tmp .. ": " .. tostring(err), level + 1) end
  local ok, werr = f:write(string.pack(">I4I4I4I4I4", 0x00000804, n, 3, 32, 32))
  local step = 1024 -- records per write: 3 MB
  for a = 1, n, step do
    if not ok then break end
    ok, werr = f:write(table.concat(chunks, "", a, math.min(n, a + step - 1)))
  end
  f:close()
  if not ok then
    os.remove(tmp)
    error("cifar10: cannot write a temporary file " .. tmp .. ": " .. tostring(werr), level + 1)
  end
  local lok, bytes = pcall(cio.idx_load_bytes, tmp, "cifar10")
  os.remove(tmp)
  if not lok then error(bytes, level + 1) end
  return bytes
end

--- cnn.data.cifar10(dir, split="train") -> dataset
--- CIFAR-10's binary files in dir (or in dir/cifar-10-batches-bin) as a dataset (a cnn.data.CIFAR10).
--- split "train" reads data_batch_1..5.bin, "test" test_batch.bin. Images are (3, 32, 32) float32
--- in [0, 1], labels 1..10 with names in `ds.classes`; `ds.labels` (int64), `ds.pixels` (the bytes).
return function(dir, split)
  if type(dir) ~= "string" then error("cifar10: expected a folder (string), got " .. type(dir), 2) end
  split = split or "train"
  if split ~= "train" and split ~= "test" then
    error(string.format("cifar10: split must be \"train\" or \"test\", got %s", tostring(split)), 2)
  end
  local files = split == "train" and TRAIN_FILES or TEST_FILES
  if not exists(dir .. "/" .. files[1]) and exists(dir .. "/cifar-10-batches-bin/" .. files[1]) then
    dir = dir .. "/cifar-10-batches-bin"
  end
  for _, name in ipairs(files) do
    if not exists(dir .. "/" .. name) then error(string.format("cifar10: %s/%s not found", dir, name), 2) end
  end
  local chunks, labels = {}, {}
  for _, name in ipairs(files) do read_batch(dir .. "/" .. name, chunks, labels, 2) end
  local pixels = to_bytes(chunks, 2)
  -- the records (the size of the files) can go before the dataset is used
  chunks = nil -- luacheck: ignore 311
  local ds = setmetatable({pixels = pixels, labels = core.tensor(labels, {dtype = "int64"}), n = #labels,
                           classes = {table.unpack(CLASSES)}, split = split}, CIFAR10)
  return ds
end
