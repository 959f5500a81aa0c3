--- module cnn.data
--- Datasets (MNIST, CIFAR-10, tensors, folders), the DataLoader, transforms.
--- A dataset has `#ds` samples; `ds:get(i)` returns `x, y` and `ds[i]` the pair as a table `{x, y}`
--- (Lua's indexing yields one value). Labels are 1-based (1..C); files that store 0..C-1 are shifted.
--- Any table with a length and either `get` or `[i] -> {x, y}` works with the DataLoader.

-- cnn.data: datasets, the DataLoader and batch transforms. Files are parsed in C (core.io: IDX,
-- PNG), batches are gathered or stacked in C, and transforms run in C on whole batches; this file
-- only decides what goes where. Labels are 1-based (1..C); datasets stored 0-based are shifted.
--
-- Datasets: `#ds` is the number of samples; `ds:get(i)` returns `x, y`; `ds[i]` returns the pair
-- as a table `{x, y}` (Lua's indexing yields exactly one value, so `local x, y = ds:get(i)` is
-- the multiple-value form). Any table with a length and either `get` or `[i] -> {x, y}` works
-- with the DataLoader.
local core = require "cnn.core"
local cio = core.io
local cdata = core.data

local data = {}

local util = require "cnn.util"
local is_tensor = util.is_tensor

local checked = util.checked -- checked(level, pcall(f, ...)): f's error at the caller's line

-- Transforms (defined below) are callables; run_transform calls one without adding a position
-- to its errors, so the caller can re-raise them at the user's line.
local Transform = {__name = "Transform"}
local function run_transform(t, x)
  if getmetatable(t) == Transform then return t.fn(x) end
  return t(x)
end

local function check_options(fn, opts, known, level)
  return (util.check_options(fn, opts, known, level + 1)) -- not a tail call, which would shift the levels
end

local function is_int(v)
  return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 53)
end

-- ---------------------------------------------------------------------------------------------
-- Dataset classes

-- A dataset class: ds[i] (integer i) gives {x, y} through get; other keys are methods.
local function dataset_class(name)
  local cls = {}
  cls.__name = name
  cls.__index = function(self, k)
    if type(k) == "number" then
      local r = table.pack(self:get(k, 2)) -- index errors point at the line that indexed
      return r
    end
    return cls[k]
  end
  cls.__len = function(self) return self.n end
  cls.__tostring = function(self) return string.format("%s(%d samples)", name, self.n) end
  return cls
end

-- #ds, checked: a dataset is a table (or userdata) whose length is a non-negative integer
local function dataset_size(fn, ds, level)
  if type(ds) ~= "table" and type(ds) ~= "userdata" then
    error(string.format("%s: expected a dataset, got %s", fn, type(ds)), level + 1)
  end
  local ok, n = pcall(function() return #ds end)
  if not ok or math.type(n) ~= "integer" or n < 0 then
    error(fn .. ": the dataset has no valid length (#ds)", level + 1)
  end
  -- a list of datasets, as random_split returns: `local train, val = random_split(...)` (Python's
  -- unpacking) leaves train the whole list, and its samples were the subsets ("sample 2 gives 2
  -- value(s) but sample 1 of the same batch gave 8")
  local first = type(ds) == "table" and getmetatable(ds) == nil and rawget(ds, 1) or nil
  if type(first) == "table" and getmetatable(first) ~= nil and type(first.get) == "function" then
    error(string.format("%s: expected a dataset, got a list of %d datasets (random_split returns one table: "
      .. "local parts = cnn.data.random_split(...), then parts[1], parts[2])", fn, n), level + 1)
  end
  return n
end

local function check_index(fn, ds, i, level)
  if not is_int(i) then error(string.format("%s: index must be an integer, got %s", fn, util.show(i)), level + 1) end
  local j = i < 0 and ds.n + 1 + i or i
  if j < 1 or j > ds.n then -- the index as given: -11 of 10 samples, not the 0 it counts back to
    error(string.format("%s: index %d is out of range for %d samples", fn, i, ds.n), level + 1)
  end
  return math.tointeger(j)
end

--- class cnn.data.TensorDataset(x, y, ...)
--- A dataset whose samples are the rows (along dimension 1) of each tensor.
--- `ds:get(i)` is x[i], y[i], ...; the tensors must have the same size in dimension 1; `ds.tensors`
--- lists them.
local TensorDataset = dataset_class("TensorDataset")
data.TensorDataset = setmetatable({}, {__call = function(_, ...)
  local ts = table.pack(...)
  if ts.n == 0 then error("TensorDataset: expected at least one tensor", 2) end
  local n
  for k = 1, ts.n do
    local t = ts[k]
    if not is_tensor(t) then
      error(string.format("TensorDataset: argument %d is not a tensor (got %s)", k, type(t)), 2)
    end
    if t:dim() == 0 then error(string.format("TensorDataset: argument %d is a 0-d tensor", k), 2) end
    if n and t:size(1) ~= n then
      error(string.format("TensorDataset: tensors must have the same size in dim 1, got %d and %d", n, t:size(1)), 2)
    end
    n = t:size(1)
  end
  return setmetatable({tensors = {table.unpack(ts, 1, ts.n)}, n = n}, TensorDataset)
end, __index = TensorDataset})

--- cnn.data.TensorDataset:get(i) -> x_i, y_i, ...
--- Row i of every tensor (a view, or a number for a 1-d tensor); negative i counts from the end.
function TensorDataset:get(i, level)
  i = check_index("TensorDataset", self, i, (level or 1) + 1)
  local out = {}
  for k, t in ipairs(self.tensors) do out[k] = t[i] end
  return table.unpack(out, 1, #self.tensors)
end

-- Batch of the rows at the 0-based int64 indices idx: one C gather per tensor.
function TensorDataset:_gather(idx)
  local out = {}
  for k, t in ipairs(self.tensors) do out[k] = cio.gather(t, idx, "DataLoader") end
  return table.unpack(out, 1, #self.tensors)
end

-- ---------------------------------------------------------------------------------------------
-- IDX and MNIST

--- cnn.data.idx_load(path) -> Tensor
--- An IDX file (MNIST's format, raw or .gz) as a tensor.
--- Integer element types (ubyte, sbyte, short, int) become int64 for files of at most one dimension
--- (labels) and float32 with the stored values otherwise (ubyte images: 0..255); float and double
--- become float32.
function data.idx_load(path)
  local t = checked(2, pcall(cio.idx_load, path, 1, "idx_load"))
  return t
end

local MNIST_DIGITS = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
local FASHION_CLASSES = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"}

-- Present at all (io.open would block on a named pipe; the IDX reader refuses what is not a file).
local function file_exists(path) return cio.file_kind(path) ~= nil end

-- The first of stem, stem.gz and the dotted variants (train-images.idx3-ubyte) found in dir.
local function find_idx(fn, dir, stem, level)
  local dotted = stem:gsub("%-(idx%d)", ".%1")
  local tried = {}
  for _, name in ipairs({stem, stem .. ".gz", dotted, dotted .. ".gz"}) do
    local p = dir .. "/" .. name
    if file_exists(p) then return p end
    tried[#tried + 1] = name
  end
  error(string.format("%s: %s: none of %s found", fn, dir, table.concat(tried, ", ")), level + 1)
end

-- MNIST-layout datasets keep their images as the files store them, a uint8 tensor (1 byte a pixel:
-- 47 MB for the 60000 training images, against 188 MB as float32), and convert to float32 in [0, 1]
-- only for the item or the batch asked for: ds:get(i) converts one image and the DataLoader's
-- _gather converts a whole batch in one C pass (byte / 255, the same bits as t:float() / 255).
local PIXEL_DIVISOR = 255

--- class cnn.data.MNIST
--- An MNIST-layout dataset, made by cnn.data.mnist and cnn.data.fashion_mnist.
--- `#ds`, `ds:get(i)` -> image, label, `ds[i]` -> {image, label}, `ds.classes` (names of labels 1..10),
--- `ds.labels` (int64), `ds.pixels` (the images as one uint8 (N, 1, H, W) tensor, converted per item or
--- per batch).
local MNIST = dataset_class("MNIST")

--- cnn.data.MNIST:get(i) -> image, label
--- Image i as a (1, H, W) float32 tensor in [0, 1] and its label 1..10.
--- The image is a fresh tensor: writing to it leaves the dataset unchanged.
function MNIST:get(i, level)
  i = check_index("MNIST", self, i, (level or 1) + 1)
  return self.pixels[i]:float():div_(PIXEL_DIVISOR), self.labels[i]
end

-- Batch of the samples at the 0-based int64 indices idx: (N, 1, H, W) floats and int64 labels.
function MNIST:_gather(idx)
  return cio.gather_float(self.pixels, idx, PIXEL_DIVISOR, "DataLoader"), cio.gather(self.labels, idx, "DataLoader")
end

--- cnn.data.MNIST:images() -> Tensor
--- Every image as one (N, 1, H, W) float32 tensor in [0, 1], made on demand (a copy, 4 bytes a pixel).
--- The dataset itself keeps 1 byte a pixel (ds.pixels, uint8); training through a DataLoader never needs
--- this.
function MNIST:images()
  return self.pixels:float():div_(PIXEL_DIVISOR)
end

-- ds.tensors, as a TensorDataset has it: [1] is ds:images() (made on first use and kept while
-- something holds it: a weak cache), [2] is ds.labels. Read-only.
local function tensors_view(ds)
  local cache = setmetatable({}, {__mode = "v"})
  return setmetatable({}, {
    __index = function(_, k)
      if k == 2 then return ds.labels end
      if k ~= 1 then return nil end
      local t = cache[1]
      if not t then
        t = ds:images()
        cache[1] = t
      end
      return t
    end,
    __len = function() return 2 end,
    __newindex = function() error("MNIST: ds.tensors is read-only (the images are kept as uint8)", 2) end,
  })
end

local function load_mnist(fn, dir, split, classes, level)
  if type(dir) ~= "string" then error(fn .. ": expected a folder (string), got " .. type(dir), level + 1) end
  split = split or "train"
  if split ~= "train" and split ~= "test" then
    error(string.format("%s: split must be \"train\" or \"test\", got %s", fn, util.show(split)), level + 1)
  end
  local prefix = split == "train" and "train" or "t10k"
  local ipath = find_idx(fn, dir, prefix .. "-images-idx3-ubyte", level + 1)
  local lpath = find_idx(fn, dir, prefix .. "-labels-idx1-ubyte", level + 1)
  local pixels = checked(level + 1, pcall(cio.idx_load_u8, ipath, fn))
  -- an error frees the pixels at once rather than at the next collection
  local function close_pixels() getmetatable(pixels).__close(pixels) end
  local function fail(fmt, ...)
    close_pixels()
    error(string.format("%s: " .. fmt, fn, ...), level + 2)
  end
  local shape = pixels:shape()
  if #shape ~= 3 then fail("%s: expected 3-d ubyte images (N, H, W), got %d-d ubyte", ipath, #shape) end
  local ok, labels, lty = pcall(cio.idx_load, lpath, 1, fn)
  if not ok then
    close_pixels()
    checked(level + 1, ok, labels)
  end
  if lty ~= "ubyte" or labels:dim() ~= 1 then
    fail("%s: expected 1-d ubyte labels, got %d-d %s", lpath, labels:dim(), lty)
  end
  local n = shape[1]
  if labels:size(1) ~= n then fail("%s has %d images but %s has %d labels", ipath, n, lpath, labels:size(1)) end
  if n > 0 and labels:max():item() >= #classes then
    fail("%s: label %d is outside 0..%d", lpath, labels:max():item(), #classes - 1)
  end
  local ds = setmetatable({pixels = pixels:view(n, 1, shape[2], shape[3]), labels = labels + 1, n = n,
                           classes = {table.unpack(classes)}, split = split}, MNIST)
  ds.tensors = tensors_view(ds)
  return ds
end

--- cnn.data.mnist(dir, split="train") -> dataset
--- The four MNIST-layout files in dir (each raw or .gz) as a dataset (a cnn.data.MNIST).
--- split is "train" or "test". Images are (1, 28, 28) float32 in [0, 1], labels 1..10; `ds.classes`,
--- `ds.labels` (int64), `ds.pixels` (uint8), `ds:images()` and `ds.tensors` ({images, labels}, as a
--- TensorDataset's). MNIST and Fashion-MNIST share the layout: a folder whose last name contains
--- "fashion" (as cnn.data.FASHION_MNIST_DIR) gets Fashion-MNIST's class names, any other the digits.
function data.mnist(dir, split)
  local fashion = type(dir) == "string" and dir:gsub("/+$", ""):match("[^/]*$"):lower():find("fashion", 1, true)
  -- no tail call: errors name our caller's line
  local ds = load_mnist("mnist", dir, split, fashion and FASHION_CLASSES or MNIST_DIGITS, 2)
  return ds
end

--- field cnn.data.FASHION_MNIST_DIR
--- The folder cnn.data.fashion_mnist reads by default: "/usr/share/datasets/fashion-mnist".
data.FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist" -- Debian's dataset-fashion-mnist

--- cnn.data.fashion_mnist(split="train", {dir=cnn.data.FASHION_MNIST_DIR}) -> dataset
--- The installed Fashion-MNIST (Debian's dataset-fashion-mnist) with its class names in ds.classes.
function data.fashion_mnist(split, opts)
  opts = check_options("fashion_mnist", opts, {dir = true}, 2)
  local ds = load_mnist("fashion_mnist", opts.dir or data.FASHION_MNIST_DIR, split, FASHION_CLASSES, 2)
  return ds
end

-- ---------------------------------------------------------------------------------------------
-- ImageFolder

local ImageFolder = dataset_class("ImageFolder")

local function has_ext(name, exts)
  local lower = name:lower()
  for _, e in ipairs(exts) do
    if e == "" or lower:sub(-#e) == e then return true end -- "" ends every name, as in Python (sub(-0) did not)
  end
  return false
end

-- a < b byte by byte (Python's str order; Lua's < follows the locale's collation)
local function byte_less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Files under dir that `keep(path, name)` takes, hidden entries skipped, in torchvision's order
-- (make_dataset walks sorted(os.walk(dir))): dir and the folders below it sorted by path as
-- strings, each folder's own files by name (listdir sorts bytewise), so a folder's files come
-- before its sub-folders' and sample i is the same file in both.
local function walk(dir, keep, level)
  local folders, files_of = {}, {}
  local function visit(d, lv)
    local names, kinds = checked(lv + 1, pcall(cio.listdir, d, "ImageFolder"))
    local files = {}
    folders[#folders + 1], files_of[d] = d, files
    for _, name in ipairs(names) do
      if name:sub(1, 1) ~= "." then
        local p = d .. "/" .. name
        if kinds[name] == "dir" then visit(p, lv + 1)
        elseif kinds[name] == "file" and keep(p, name) then files[#files + 1] = p end
      end
    end
  end
  visit(dir, level + 1)
  table.sort(folders, byte_less)
  local out = {}
  for _, d in ipairs(folders) do table.move(files_of[d], 1, #files_of[d], #out + 1, out) end
  return out
end

-- The transform split into what the C pipeline runs (the specs of the leading transforms of this
-- module, or of the whole transform) and what is left to run in Lua afterwards (a function, or
-- nil): a plain function or a compose with one in it keeps working, on the caller's thread.
local function split_transform(t)
  if t == nil then return nil, nil end
  if getmetatable(t) == Transform and t.specs then return t.specs, nil end
  if getmetatable(t) == Transform and t.parts then
    local specs, k = {}, 1
    while k <= #t.parts do
      local p = t.parts[k]
      if not (getmetatable(p) == Transform and p.specs) then break end
      for _, sp in ipairs(p.specs) do specs[#specs + 1] = sp end
      k = k + 1
    end
    local rest = {table.unpack(t.parts, k)}
    return #specs > 0 and specs or nil, function(x)
      for _, p in ipairs(rest) do x = run_transform(p, x) end
      return x
    end
  end
  return nil, function(x) return run_transform(t, x) end
end

local MODES = {auto = true, gray = true, rgb = true, rgba = true}

-- An ImageFolder over fields.samples ({path, label} pairs) with its C image source.
local function new_folder(fields, transform, mode, exif, cache, level)
  local specs, suffix = split_transform(transform)
  local paths, labels = {}, {}
  for i, s in ipairs(fields.samples) do paths[i], labels[i] = s[1], s[2] end
  fields.source = checked(level + 1, pcall(cdata.source, paths, labels, mode, exif, specs, cache, "ImageFolder"))
  fields.n, fields.transform, fields.mode, fields.exif, fields.cache = #fields.samples, transform, mode, exif, cache
  fields._suffix = suffix
  return setmetatable(fields, ImageFolder)
end

local function folder_options(fn, opts, level)
  if opts.transform ~= nil and not (type(opts.transform) == "function" or getmetatable(opts.transform)) then
    error(fn .. ": transform must be callable", level + 1)
  end
  if opts.mode ~= nil and not MODES[opts.mode] then
    error(fn .. ": mode must be \"auto\", \"gray\", \"rgb\" or \"rgba\", got " .. util.show(opts.mode), level + 1)
  end
  for _, k in ipairs({"exif", "cache"}) do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      error(string.format("%s: %s must be a boolean", fn, k), level + 1)
    end
  end
end

--- class cnn.data.ImageFolder(dir, {transform=, mode="rgb", extensions=, is_valid_file=, exif=true, cache=false})
--- Photos in one sub-folder of dir per class: labels 1..C in sorted folder order, any sizes.
--- `ds.classes` are the folder names, `ds.class_to_idx` maps them to labels and `ds.samples` lists
--- {path, label} for the files found under each folder with one of the extensions (any case;
--- {".png", ".jpg", ".jpeg"} by default), in torchvision's order (a class's folders sorted by path,
--- each one's own files by name); names starting with "." (files and folders) are left out, where
--- torchvision takes them. PNG and JPEG mixed, told apart by content. Images are decoded lazily, one
--- file per ds:get(i) or per sample of a DataLoader's batch (on its worker threads with
--- `workers=`), as (C, H, W) floats in [0, 1]: mode and exif are cnn.image.load's ("rgb" by default,
--- as torchvision's loader converts every image to RGB). transform applies to each image; when it
--- is made of cnn.data.transforms it runs in C with the decoding. cache=true keeps every decoded
--- image as bytes (1 per value, before the transform) once read: for small sets, decoded once.
--- is_valid_file = function(path) -> boolean replaces the extension test (as torchvision's; not
--- both): `function(p) return (pcall(cnn.image.load, p)) end` keeps only the files that decode,
--- each decoded once here, so a corrupt photo is left out instead of stopping an epoch.
data.ImageFolder = setmetatable({}, {__call = function(_, dir, opts)
  opts = check_options("ImageFolder", opts, {transform = true, mode = true, extensions = true, exif = true,
                                             cache = true, is_valid_file = true}, 2)
  if type(dir) ~= "string" then error("ImageFolder: expected a folder (string), got " .. type(dir), 2) end
  folder_options("ImageFolder", opts, 2)
  local valid = opts.is_valid_file
  if valid ~= nil and type(valid) ~= "function" then
    error("ImageFolder: is_valid_file must be a function(path) -> boolean, got " .. type(valid), 2)
  end
  if valid ~= nil and opts.extensions ~= nil then
    error("ImageFolder: give extensions or is_valid_file, not both (as torchvision's)", 2)
  end
  local exts = opts.extensions or {".png", ".jpg", ".jpeg"}
  if type(exts) ~= "table" or #exts == 0 then error("ImageFolder: extensions must be a list like {\".png\"}", 2) end
  local lower = {}
  for i, e in ipairs(exts) do
    if type(e) ~= "string" then error(string.format("ImageFolder: extensions[%d] is not a string", i), 2) end
    lower[i] = e:lower()
  end
  local keep = function(_, name) return has_ext(name, lower) end
  if valid then
    keep = function(path)
      local ok, yes = pcall(valid, path)
      if not ok then error(string.format("ImageFolder: is_valid_file(%q) raised: %s", path, tostring(yes)), 0) end
      return yes ~= nil and yes ~= false -- any true value, as torchvision reads it
    end
  end
  dir = dir:match("^(.-)/*$") -- "photos/" as "photos" in the paths ("photos//a/1.jpg" before)
  if dir == "" then dir = "/" end
  local names, kinds = checked(2, pcall(cio.listdir, dir, "ImageFolder"))
  local classes, class_to_idx, samples = {}, {}, {}
  for _, name in ipairs(names) do
    if kinds[name] == "dir" and name:sub(1, 1) ~= "." then
      classes[#classes + 1] = name
      class_to_idx[name] = #classes
    end
  end
  if #classes == 0 then error(string.format("ImageFolder: %s: no class folders found", dir), 2) end
  for label, cname in ipairs(classes) do
    local files = walk(dir .. "/" .. cname, keep, 2)
    if #files == 0 then
      error(string.format("ImageFolder: %s/%s: no %s files found for class '%s'", dir, cname,
        valid and "valid" or table.concat(lower, "/"), cname), 2)
    end
    for _, p in ipairs(files) do samples[#samples + 1] = {p, label} end
  end
  local ds = new_folder({root = dir, classes = classes, class_to_idx = class_to_idx, samples = samples},
    opts.transform, opts.mode or "rgb", opts.exif ~= false, opts.cache or false, 2)
  return ds
end, __index = ImageFolder})

--- cnn.data.ImageFolder:get(i) -> image, label
--- Image i decoded from its file as (C, H, W) in [0, 1], transformed, and its label.
--- Random transforms draw from cnn's generator (one draw per call seeds the image's own).
function ImageFolder:get(i, level)
  level = (level or 1) + 1
  i = check_index("ImageFolder", self, i, level)
  local x = checked(level, pcall(cdata.source_get, self.source, i, nil, "ImageFolder"))
  if self._suffix then x = checked(level, pcall(self._suffix, x)) end
  return x, self.samples[i][2]
end

--- cnn.data.ImageFolder:subset(indices, {transform=, cache=}) -> ImageFolder
--- The samples at the (1-based) indices, with the same classes, as a dataset of its own.
--- transform, mode, exif and cache are the parent's unless given: a training and a validation
--- split of one folder can transform differently.
function ImageFolder:subset(list, opts)
  opts = check_options("subset", opts, {transform = true, cache = true}, 2)
  folder_options("subset", opts, 2)
  if type(list) ~= "table" then error("subset: expected a list of sample indices", 2) end
  local samples = {}
  for k, i in ipairs(list) do
    if math.type(i) ~= "integer" then
      error(string.format("subset: entry %d (%s) is not an integer index", k, tostring(i)), 2)
    end
    if i < 1 or i > self.n then
      error(string.format("subset: entry %d (%d) is out of range for %d samples", k, i, self.n), 2)
    end
    samples[k] = self.samples[i]
  end
  local transform = self.transform
  if opts.transform ~= nil then transform = opts.transform end
  local cache = self.cache
  if opts.cache ~= nil then cache = opts.cache end
  local ds = new_folder({root = self.root, classes = self.classes, class_to_idx = self.class_to_idx, samples = samples},
    transform, self.mode, self.exif, cache, 2)
  return ds
end

--- cnn.data.ImageFolder:cache_info() -> images, bytes
--- How many decoded images the cache holds (cache=true), and their bytes.
function ImageFolder:cache_info() return cdata.source_stats(self.source) end

-- One epoch over the 0-based order on the loader's threads (DataLoader:iter uses it).
function ImageFolder:_epoch(order, batch_size, seed, epoch, workers, prefetch)
  return cdata.loader_start(self.source, order, batch_size, seed, epoch, workers, prefetch, self._suffix == nil,
    "DataLoader")
end

-- ---------------------------------------------------------------------------------------------
-- DataLoader

local function same_shape(a, b)
  if a:dim() ~= b:dim() then return false end
  for d = 1, a:dim() do
    if a:size(d) ~= b:size(d) then return false end
  end
  return true
end

-- Stacks one field of a list of samples: tensors with cnn.stack, numbers into an int64 tensor
-- when all are integers (labels) and a float32 one otherwise. A stack that fails is explained in
-- the loader's terms (stack's own message names neither the loader nor the remedy), looked for
-- only then.
local function collate(values, k)
  local first = values[1]
  if is_tensor(first) then
    local ok, batch = pcall(core.stack, values, 1)
    if ok then return batch end
    for i = 2, #values do
      local v = values[i]
      if not is_tensor(v) then error(string.format("DataLoader: field %d mixes tensors and %s", k, type(v)), 0) end
      if not same_shape(v, first) then
        error(string.format("DataLoader: cannot batch field %d: samples of shapes (%s) and (%s) (resize them in " ..
          "the dataset's transform to one size)", k, table.concat(first:shape(), ", "),
          table.concat(v:shape(), ", ")), 0)
      end
    end
    error(string.format("DataLoader: cannot batch field %d: %s", k, (tostring(batch):gsub("^.-:%d+: ", ""))), 0)
  end
  if type(first) == "number" then
    local ints = true
    for _, v in ipairs(values) do
      if type(v) ~= "number" then error(string.format("DataLoader: field %d mixes numbers and %s", k, type(v)), 0) end
      if math.type(v) ~= "integer" then ints = false end
    end
    return core.tensor(values, {dtype = ints and "int64" or "float32"})
  end
  error(string.format("DataLoader: cannot batch field %d of type %s", k, type(first)), 0)
end

local DataLoader = {}
DataLoader.__index = DataLoader
DataLoader.__name = "DataLoader"

-- ceil(a / b) for b > 0 without forming a + b - 1, which wraps for b near math.maxinteger.
local function ceil_div(a, b)
  if a <= 0 then return 0 end
  return (a - 1) // b + 1
end

--- class cnn.data.DataLoader(ds, {batch_size=1, shuffle=, drop_last=, seed=, workers=0, prefetch=, shard=, transform=})
--- Batches of a dataset: `for x, y in loader:iter() do ... end` runs one epoch; `#loader` batches.
--- Batches are assembled in C (rows gathered, images stacked). With shuffle, each epoch's order is a
--- permutation that depends only on (seed, epoch) when seed is given, else on cnn's generator
--- (cnn.manual_seed). drop_last drops a last, short batch. transform applies to each whole batch x.
--- shard = {rank=, world_size=, exact=false} (ranks from 0) gives this rank the strided slice
--- perm[rank], perm[rank + world_size], ... of each epoch's permutation, disjoint from the other
--- ranks' (seed defaults to 0 when sharding, so every rank shuffles alike). Every rank gets the same
--- number of samples, so ranks step together: with drop_last=false, ceil(n / world_size), the slices
--- wrapping round to the permutation's start (as PyTorch's DistributedSampler); with drop_last=true,
--- floor(n / world_size). exact=true cuts the epoch exactly, each sample on one rank once, lengths
--- differing by one: for evaluation, not for DataParallel training.
---
--- For an ImageFolder, workers = n decodes and transforms its images on n threads of the loader's
--- own (C, no Lua) up to prefetch (2) batches ahead of the training loop; 0 decodes each batch when it
--- is asked for. Either way sample i of epoch e is transformed with a generator seeded from (seed,
--- e, i) (without a seed, from one draw of cnn's generator per epoch), so the batches are the same
--- whatever workers is. The threads run only while an epoch is being iterated: they stop when the
--- loop ends (the iterator closes them, `break` included), at loader:close(), when the iterator is
--- collected and at exit; a fork() waits for them to park. Epochs of one loader can run side by
--- side (an evaluation pass inside a training epoch), each with its own workers. An unreadable file
--- raises an error naming its path at the batch that holds it. The workers are threads next to the
--- compute threads (cnn.set_num_threads), not taken from them: they use the time a training step
--- leaves idle and otherwise share the cores with it. Decoding is a small part of a ResNet step's
--- work, so one or two workers keep a step fed. Other datasets gather their batches in C already
--- and ignore workers.
data.DataLoader = setmetatable({}, {__call = function(_, ds, opts)
  opts = check_options("DataLoader", opts, {batch_size = true, shuffle = true, drop_last = true, seed = true,
                                            transform = true, shard = true, workers = true, prefetch = true}, 2)
  dataset_size("DataLoader", ds, 2)
  local bs = opts.batch_size or 1
  if not is_int(bs) or bs < 1 then
    error("DataLoader: batch_size must be a positive integer, got " .. util.show(bs), 2)
  end
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
    error("DataLoader: seed must be an integer, got " .. util.show(opts.seed), 2)
  end
  local workers, prefetch = opts.workers or 0, opts.prefetch or 2
  if math.type(workers) ~= "integer" or workers < 0 or workers > 256 then
    error("DataLoader: workers must be an integer between 0 and 256, got " .. util.show(workers), 2)
  end
  if math.type(prefetch) ~= "integer" or prefetch < 1 or prefetch > 1024 then
    error("DataLoader: prefetch must be an integer between 1 and 1024, got " .. util.show(prefetch), 2)
  end
  if opts.transform ~= nil and not (type(opts.transform) == "function" or getmetatable(opts.transform)) then
    error("DataLoader: transform must be callable", 2)
  end
  for _, k in ipairs{"shuffle", "drop_last"} do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      error(string.format("DataLoader: %s must be a boolean, got %s", k, type(opts[k])), 2)
    end
  end
  local rank, world = 0, 1
  if opts.shard ~= nil then
    local s = opts.shard
    if type(s) ~= "table" then error("DataLoader: shard must be a table {rank=, world_size=}", 2) end
    for k in pairs(s) do
      if k ~= "rank" and k ~= "world_size" and k ~= "exact" then
        error("DataLoader: unknown shard option '" .. tostring(k) .. "'", 2)
      end
    end
    rank, world = s.rank, s.world_size
    if math.type(world) ~= "integer" or world < 1 then
      error("DataLoader: shard.world_size must be a positive integer, got " .. util.show(world), 2)
    end
    if math.type(rank) ~= "integer" or rank < 0 or rank >= world then
      error(string.format("DataLoader: shard.rank must be an integer in 0..%d, got %s", world - 1, util.show(rank)), 2)
    end
  end
  return setmetatable({dataset = ds, batch_size = math.tointeger(bs), shuffle = opts.shuffle and true or false,
                       drop_last = opts.drop_last and true or false, seed = opts.seed, transform = opts.transform,
                       rank = rank, world_size = world, sharded = opts.shard ~= nil, epoch = 1,
                       workers = workers, prefetch = prefetch,
                       shard_mode = opts.shard and opts.shard.exact and "exact" or opts.drop_last and "drop" or "pad"},
                      DataLoader)
end, __index = DataLoader})

--- cnn.data.DataLoader:num_samples() -> integer
--- The number of samples this rank sees per epoch (the dataset's size when not sharded).
function DataLoader:num_samples()
  local n, w = #self.dataset, self.world_size
  if w == 1 then return n end
  if self.shard_mode == "drop" then return n // w end
  if self.shard_mode == "pad" then return ceil_div(n, w) end
  return ceil_div(n - self.rank, w)
end

function DataLoader.__len(self)
  local m, bs = self:num_samples(), self.batch_size
  if self.drop_last then return m // bs end
  return ceil_div(m, bs)
end

--- cnn.data.DataLoader:set_epoch(epoch)
--- Sets the epoch (an integer) whose order the next iter() uses; each iter() then counts on from it.
--- The epoch counter starts at 1. A resumed run sets it to continue the same sequence of orders.
function DataLoader:set_epoch(e)
  if math.type(e) ~= "integer" then error("set_epoch: epoch must be an integer, got " .. util.show(e), 2) end
  self.epoch = e
end

-- The 0-based order of this epoch for this rank (int64 tensor).
function DataLoader:_order(epoch)
  local seed = self.seed
  if seed == nil and self.sharded then seed = 0 end
  return cio.order(#self.dataset, self.shuffle, seed, epoch, self.rank, self.world_size, "DataLoader", self.shard_mode)
end

-- A method of a dataset found without indexing it with a string: a user's dataset may have an
-- __index that only expects sample numbers.
local function method(ds, name)
  local f = type(ds) == "table" and rawget(ds, name) or nil
  local mt = getmetatable(ds)
  if f == nil and type(mt) == "table" then
    f = rawget(mt, name)
    if f == nil and type(rawget(mt, "__index")) == "table" then f = mt.__index[name] end
  end
  return type(f) == "function" and f or nil
end

-- One batch of ds from the 0-based indices idx: its own gather, else sample by sample.
local function batch_of(ds, idx)
  local gather, get = method(ds, "_gather"), method(ds, "get")
  if gather then return gather(ds, idx) end
  local fields, nf = {}, 0
  for j = 1, idx:size(1) do
    local i = idx[j] + 1
    local item
    if get then item = table.pack(get(ds, i))
    else
      item = ds[i]
      if type(item) ~= "table" then item = {item, n = 1} end
      item.n = item.n or #item
    end
    if j == 1 then
      nf = item.n
      for k = 1, nf do fields[k] = {} end
    elseif item.n ~= nf then -- as PyTorch's default_collate: a label missing from one sample was
      -- collated as a hole (an error inside data.lua), or dropped from all when the first lacked it
      error(string.format("DataLoader: sample %d gives %d value(s) but sample %d of the same batch gave %d", i,
        item.n, idx[1] + 1, nf), 0)
    end
    for k = 1, nf do fields[k][j] = item[k] end
  end
  local out = {}
  for k = 1, nf do out[k] = collate(fields[k], k) end
  return table.unpack(out, 1, nf)
end

function DataLoader:_batch(idx) return batch_of(self.dataset, idx) end

-- The loader's transform of a batch; nil (which would end the caller's for loop as if the epoch
-- were over) is an error.
local function transformed(t, x)
  x = checked(3, pcall(run_transform, t, x))
  if x == nil then error("DataLoader: the transform returned nil instead of the batch", 3) end
  return x
end

--- cnn.data.DataLoader:iter() -> iterator
--- An iterator over this epoch's batches: `for x, y in loader:iter() do`, each (N, ...).
--- For an ImageFolder it also returns the epoch's workers as a to-be-closed value, so a generic
--- for stops them when the loop ends, `break` included.
function DataLoader:iter()
  local epoch = self.epoch
  self.epoch = epoch + 1
  local order = checked(2, pcall(self._order, self, epoch))
  local m, bs = order:size(1), self.batch_size
  local nb = self.drop_last and m // bs or ceil_div(m, bs)
  local start = method(self.dataset, "_epoch")
  if start then return self:_iter_images(start, order:narrow(1, 1, math.min(m, nb * bs)), epoch) end
  local b = 0
  return function()
    b = b + 1
    if b > nb then return nil end
    local first = (b - 1) * bs
    local idx = order:narrow(1, first + 1, math.min(bs, m - first))
    local batch = table.pack(checked(2, pcall(self._batch, self, idx)))
    if self.transform then batch[1] = transformed(self.transform, batch[1]) end
    return table.unpack(batch, 1, batch.n)
  end
end

-- An epoch of an image dataset on the C loader (workers threads, or this one with workers = 0).
-- Epochs of one loader run side by side, as PyTorch's iterators do (an evaluation pass inside a
-- training epoch): each has its own workers, stopped at its end, by its for loop's close, by
-- loader:close() (then its iterator raises instead of ending the loop early) or by the collector.
function DataLoader:_iter_images(start, order, epoch)
  local ds = self.dataset
  local seed = self.seed
  if seed == nil then seed = cdata.stream_seed() end -- one draw per epoch: cnn.manual_seed repeats it
  local ep = checked(3, pcall(start, ds, order, self.batch_size, seed, epoch, self.workers, self.prefetch))
  local running = rawget(self, "_running") -- the loader's epochs not yet over (weak: abandoned ones go)
  if not running then
    running = setmetatable({}, {__mode = "k"})
    self._running = running
  end
  running[ep] = true
  local suffix = ds._suffix
  local over, given, total = false, 0, select(2, ep:position()) -- batches handed out, in the epoch
  local function finish()
    over = true
    running[ep] = nil
    ep:close()
  end
  return function()
    if over then return nil end
    if not running[ep] then
      error("DataLoader: this epoch was stopped by loader:close() before its last batch", 2)
    end
    if ep:position() == nil then -- closed by its for loop (a break, an error)
      if given >= total then return nil end -- after the last batch: the end, as it would have been
      error("DataLoader: this epoch's for loop ended (a break or an error) and stopped it before its last " ..
        "batch; iter() starts a new one", 2)
    end
    local ok, x, y = pcall(ep.next, ep, "DataLoader")
    if not ok then checked(2, false, x) end
    if x == nil then
      finish()
      return nil
    end
    given = given + 1
    if type(x) == "table" then -- a transform with Lua in it: that part runs here, image by image
      for k = 1, #x do
        x[k] = checked(2, pcall(suffix, x[k]))
        if not util.is_tensor(x[k]) then -- core.stack's "element 1 of the list is string" named neither
          error(string.format("DataLoader: the dataset's transform returned %s for image %d of the batch, not a tensor",
            util.show(x[k]), k), 2)
        end
      end
      x = checked(2, pcall(core.stack, x, 1))
    end
    if self.transform then x = transformed(self.transform, x) end
    return x, y
  end, nil, nil, ep
end

--- cnn.data.DataLoader:close()
--- Stops the worker threads of the epochs being iterated (an ImageFolder's); iter() starts new ones.
--- Calling an iterator it stopped is an error (not an early end of the loop).
function DataLoader:close()
  local running = rawget(self, "_running")
  if running then
    for ep in pairs(running) do
      running[ep] = nil -- (clearing a field during pairs is allowed)
      ep:close()
    end
  end
end
DataLoader.__close = DataLoader.close

function DataLoader.__tostring(self)
  return string.format("DataLoader(%d batches of %d%s)", #self, self.batch_size, self.shuffle and ", shuffled" or "")
end

-- ---------------------------------------------------------------------------------------------
-- Subsets and random splits

-- The 1-based sample indices of Subset's argument as a Lua list: a list, a 1-d int64 tensor, or n
-- for 1..n (Lua has no range(n)). Every index is checked against the parent's n samples.
local function index_list(fn, list, n, level)
  if math.type(list) == "integer" then
    if list < 0 then error(string.format("%s: a count must be non-negative, got %d", fn, list), level + 1) end
    if list > n then
      error(string.format("%s: count %d is more than the dataset's %d samples", fn, list, n), level + 1)
    end
    local out = {}
    for i = 1, list do out[i] = i end
    return out
  end
  if is_tensor(list) then
    if list:dim() ~= 1 or list:dtype() ~= "int64" then
      error(string.format("%s: an index tensor must be 1-d int64, got %d-d %s", fn, list:dim(), list:dtype()),
        level + 1)
    end
    list = list:totable()
  elseif type(list) ~= "table" then
    error(string.format("%s: expected a list of sample indices, an int64 tensor or a count, got %s", fn,
      util.show(list)), level + 1)
  end
  local out = {}
  for k, i in ipairs(list) do
    if math.type(i) ~= "integer" then
      error(string.format("%s: entry %d (%s) is not an integer index", fn, k, util.show(i)), level + 1)
    end
    if i < 1 or i > n then
      error(string.format("%s: entry %d (%d) is out of range for %d samples", fn, k, i, n), level + 1)
    end
    out[k] = i
  end
  if #out ~= rawlen(list) then error(fn .. ": the index list has holes (nil entries)", level + 1) end
  return out
end

--- class cnn.data.Subset(ds, indices)
--- The samples of ds at the (1-based) indices, as a dataset: PyTorch's torch.utils.data.Subset.
--- indices is a list, a 1-d int64 tensor, or a count n for the first n samples (Lua's stand-in for
--- range(n)). `sub.dataset` and `sub.indices` are the parent and the list; `sub.classes` is the
--- parent's. Batches are gathered by the parent's own C gather when it has one (TensorDataset,
--- MNIST, CIFAR-10), and the subset of an ImageFolder is an ImageFolder (ImageFolder:subset), so
--- the DataLoader's workers decode it as they do the whole folder.
local Subset = dataset_class("Subset")
data.Subset = setmetatable({}, {__call = function(_, ds, indices)
  local n = dataset_size("Subset", ds, 2)
  local list = index_list("Subset", indices, n, 2)
  if getmetatable(ds) == ImageFolder then
    local sub = ds:subset(list)
    sub.dataset, sub.indices = ds, list
    return sub
  end
  local zero = {}
  for k, i in ipairs(list) do zero[k] = i - 1 end
  return setmetatable({dataset = ds, indices = list, n = #list, classes = rawget(ds, "classes"),
                       _zero = core.tensor(#zero > 0 and zero or {}, {dtype = "int64"})}, Subset)
end, __index = Subset})

--- cnn.data.Subset:get(i) -> x, y, ...
--- The parent's sample indices[i] (its get, else its ds[j]).
--- Negative i counts from the end.
function Subset:get(i, level)
  level = (level or 1) + 1
  i = check_index("Subset", self, i, level)
  local ds, j = self.dataset, self.indices[i]
  local get = method(ds, "get")
  if get then return get(ds, j) end
  local item = ds[j]
  if type(item) ~= "table" then return item end
  return table.unpack(item, 1, item.n or #item)
end

-- Batch of the 0-based idx: the parent's batch of the samples they stand for.
function Subset:_gather(idx) return batch_of(self.dataset, cio.gather(self._zero, idx, "DataLoader")) end

--- cnn.data.random_split(ds, lengths, {seed=}) -> {Subset, ...}
--- ds cut into non-overlapping random subsets of the given lengths (PyTorch's random_split).
--- The lengths are integers that add up to #ds, or fractions that add up to 1, each floor(f * #ds) with what is
--- left dealt one by one to the subsets in order. The permutation comes from cnn's generator
--- (cnn.manual_seed), or from seed alone when it is given (the same split on every run).
function data.random_split(ds, lengths, opts)
  opts = check_options("random_split", opts, {seed = true}, 2)
  local n = dataset_size("random_split", ds, 2)
  if type(lengths) ~= "table" or #lengths == 0 then
    error("random_split: lengths must be a non-empty list of integers or fractions, got " .. util.show(lengths), 2)
  end
  if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
    error("random_split: seed must be an integer, got " .. util.show(opts.seed), 2)
  end
  local counts, total, fractions = {}, 0, false
  for k = 1, #lengths do
    local v = lengths[k]
    if type(v) ~= "number" or v ~= v or v < 0 then
      error(string.format("random_split: length %d must be a non-negative number, got %s", k, util.show(v)), 2)
    end
    if math.type(v) == "float" then fractions = true end
    total = total + v
  end
  if fractions then -- PyTorch's rule for fractions: math.isclose(total, 1) (rel_tol 1e-9), at most 1
    if math.abs(total - 1) > 1e-9 or total > 1 then
      error(string.format("random_split: fractions must add up to 1 (at most, within 1e-9), got %.17g", total), 2)
    end
    local used = 0
    for k = 1, #lengths do
      if lengths[k] > 1 then
        error(string.format("random_split: fraction %d is above 1 (%s)", k, util.show(lengths[k])), 2)
      end
      counts[k] = math.floor(lengths[k] * n)
      used = used + counts[k]
    end
    for r = 0, n - used - 1 do
      local k = r % #lengths + 1
      counts[k] = counts[k] + 1
    end
  else
    if total ~= n then
      error(string.format("random_split: lengths add up to %d but the dataset has %d samples", total, n), 2)
    end
    for k = 1, #lengths do counts[k] = lengths[k] end
  end
  local perm = opts.seed ~= nil and cio.order(n, true, opts.seed, 0, 0, 1, "random_split", "drop"):add(1)
    or core.randperm(n)
  local out, at = {}, 1
  for k = 1, #counts do
    out[k] = data.Subset(ds, counts[k] > 0 and perm:narrow(1, at, counts[k]) or {})
    at = at + counts[k]
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- Transforms: callables on a (C, H, W) image or a (N, C, H, W) batch, with torchvision's names and
-- semantics. Each carries `specs`, the plain-data description of what it does, which the C side
-- runs image by image (core.data.pipeline): from Lua on a tensor, and on the DataLoader's worker
-- threads without Lua. Random transforms draw per image: from Lua, each image's generator is
-- seeded by one draw of cnn's stream (cnn.manual_seed repeats them); in a DataLoader, from
-- (seed, epoch, sample index), so the draws never depend on the worker count.

--- module cnn.data.transforms
--- Image transforms with torchvision's names, run in C.
--- snake_case here (random_hflip), and torchvision's class names beside them (Compose, Resize,
--- CenterCrop, RandomCrop, RandomResizedCrop, RandomHorizontalFlip, RandomVerticalFlip,
--- RandomRotation, ColorJitter, Grayscale, RandomGrayscale, Normalize, ToTensor).
--- Each is a callable `t(x) -> x'` on an image (C, H, W) or a batch (N, C, H, W), image by image;
--- random ones draw per image from cnn's generator (from Lua) or from the sample's own generator
--- (in a DataLoader's workers).
local transforms = {}
data.transforms = transforms

--- field cnn.data.IMAGENET_MEAN
--- The per-channel means torchvision's ImageNet models were trained with: {0.485, 0.456, 0.406}.
data.IMAGENET_MEAN = {0.485, 0.456, 0.406}
--- field cnn.data.IMAGENET_STD
--- The per-channel standard deviations of torchvision's ImageNet models: {0.229, 0.224, 0.225}.
data.IMAGENET_STD = {0.229, 0.224, 0.225}

Transform.__index = Transform
Transform.__call = function(self, x)
  local y = checked(2, pcall(self.fn, x)) -- not a tail call: level 2 must be our caller
  return y
end
Transform.__tostring = function(self) return self.desc end

local function make(desc, fn, specs) return setmetatable({desc = desc, fn = fn, specs = specs}, Transform) end

-- A transform the C pipeline runs: specs checked once, here, and applied image by image.
local function native(name, desc, spec, level)
  local pipe = checked(level + 1, pcall(cdata.pipeline, {spec}, name))
  return make(desc, function(x) return cdata.pipeline_apply(pipe, x, name) end, {spec})
end
transforms._native = native

local function number_list(fn, what, v)
  if type(v) == "number" then return v end
  if type(v) ~= "table" or #v == 0 then
    error(string.format("%s: %s must be a number or a list of numbers", fn, what), 3)
  end
  local out = {}
  for i, x in ipairs(v) do
    if type(x) ~= "number" then error(string.format("%s: %s[%d] is not a number", fn, what, i), 3) end
    out[i] = x
  end
  return out
end

local function list_str(v)
  if type(v) == "number" then return util.show(v, "%g") end
  local parts = {}
  for i, x in ipairs(v) do parts[i] = util.show(x, "%g") end
  return "{" .. table.concat(parts, ", ") .. "}"
end

--- cnn.data.transforms.normalize(mean, std) -> transform
--- (x - mean[c]) / std[c] for each channel c of a batch (N, C, H, W) or an image (C, H, W).
--- mean and std are numbers (every channel) or lists with one value per channel, e.g.
--- cnn.data.IMAGENET_MEAN and cnn.data.IMAGENET_STD.
function transforms.normalize(mean, std)
  mean = number_list("normalize", "mean", mean)
  std = number_list("normalize", "std", std)
  for _, s in ipairs(type(std) == "table" and std or {std}) do
    if s == 0 then error("normalize: std must be nonzero", 2) end
  end
  return make(string.format("normalize(%s, %s)", list_str(mean), list_str(std)),
    function(x) return cio.normalize(x, mean, std, "normalize") end, {{kind = "normalize", mean = mean, std = std}})
end

local function pair(fn, what, v, allow_zero, level)
  if type(v) == "number" then v = {v, v} end
  if type(v) ~= "table" or #v ~= 2 or not is_int(v[1]) or not is_int(v[2])
      or v[1] < (allow_zero and 0 or 1) or v[2] < (allow_zero and 0 or 1) then
    error(string.format("%s: %s must be a %s integer or a pair {h, w}", fn, what,
      allow_zero and "non-negative" or "positive"), (level or 2) + 1)
  end
  return math.tointeger(v[1]), math.tointeger(v[2])
end

--- cnn.data.transforms.random_crop(size, {padding=0, fill=0}) -> transform
--- Pads each image with fill, then crops a random window of size, per sample.
--- As torchvision's RandomCrop. size is s or {h, w}; padding is p or {ph, pw}: rows above and below,
--- columns left and right (torchvision's 2-sequence padding is (w, h); here pairs are (h, w) like
--- every size in cnn).
function transforms.random_crop(size, opts)
  opts = check_options("random_crop", opts, {padding = true, fill = true}, 2)
  local oh, ow = pair("random_crop", "size", size, false)
  local ph, pw = pair("random_crop", "padding", opts.padding or 0, true)
  local fill = opts.fill or 0
  if type(fill) ~= "number" then error("random_crop: fill must be a number", 2) end
  return make(string.format("random_crop({%d, %d}, padding={%d, %d})", oh, ow, ph, pw),
    function(x) return cio.random_crop(x, oh, ow, ph, pw, fill, "random_crop") end,
    {{kind = "random_crop", size = {oh, ow}, pad = {ph, pw}, fill_value = fill}})
end

local function probability(fn, p, default)
  if p == nil then p = default end
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    error(string.format("%s: p must be a probability in [0, 1], got %s", fn, util.show(p)), 3)
  end
  return p
end

--- cnn.data.transforms.random_hflip(p=0.5) -> transform
--- Mirrors each image left-right with probability p, per sample (torchvision's RandomHorizontalFlip).
function transforms.random_hflip(p)
  p = probability("random_hflip", p, 0.5)
  return make(string.format("random_hflip(%g)", p), function(x) return cio.random_hflip(x, p, "random_hflip") end,
    {{kind = "random_hflip", p = p}})
end

--- cnn.data.transforms.random_vflip(p=0.5) -> transform
--- Flips each image upside down with probability p, per sample (torchvision's RandomVerticalFlip).
function transforms.random_vflip(p)
  p = probability("random_vflip", p, 0.5)
  return native("random_vflip", string.format("random_vflip(%g)", p), {kind = "random_vflip", p = p}, 2)
end

-- A size for resize: a positive integer (the shorter side) or {h, w}.
local function resize_size(fn, size, level)
  if is_int(size) and size >= 1 then return {math.tointeger(size)} end
  if type(size) == "table" and #size == 1 and is_int(size[1]) and size[1] >= 1 then return {math.tointeger(size[1])} end
  local h, w = pair(fn, "size", type(size) == "table" and size or {0, 0}, false, level + 1)
  return {h, w}
end

local INTERPOLATIONS = {bilinear = true, bicubic = true, nearest = true}

local function interpolation(fn, v, default, allowed)
  v = v == nil and default or v
  if not (allowed or INTERPOLATIONS)[v] then
    local names = {}
    for k in pairs(allowed or INTERPOLATIONS) do names[#names + 1] = string.format("%q", k) end
    table.sort(names)
    error(string.format("%s: interpolation must be %s, got %s", fn, table.concat(names, " or "), util.show(v)), 3)
  end
  return v
end

local function flag(fn, what, v, default)
  if v == nil then return default end
  if type(v) ~= "boolean" then error(string.format("%s: %s must be a boolean", fn, what), 3) end
  return v
end

--- cnn.data.transforms.resize(size, {interpolation="bilinear", antialias=true, max_size=}) -> transform
--- Resizes each image as torchvision's Resize on tensors (see cnn.image.resize).
--- size an integer scales the shorter side to it (the longer side in proportion, rounded down, then
--- capped at max_size), or {h, w}; "bilinear", "bicubic" or "nearest"; antialias as Pillow's
--- filters (torchvision's antialias=True; nearest never antialiases). An image already at the size
--- is returned as it is.
function transforms.resize(size, opts)
  opts = check_options("resize", opts, {interpolation = true, antialias = true, max_size = true}, 2)
  local sz = resize_size("resize", size, 2)
  local mode = interpolation("resize", opts.interpolation, "bilinear")
  local aa = flag("resize", "antialias", opts.antialias, true)
  local max_size = opts.max_size
  if max_size ~= nil and not (is_int(max_size) and max_size > 0) then
    error("resize: max_size must be a positive integer", 2)
  end
  local spec = {kind = "resize", size = sz, max_size = max_size, interpolation = mode, antialias = aa}
  return native("resize", string.format("resize(%s, %s%s)", list_str(#sz == 1 and sz[1] or sz), mode,
    aa and "" or ", antialias=false"), spec, 2)
end

--- cnn.data.transforms.center_crop(size) -> transform
--- The centre window of size s or {h, w}, zero-padded when the image is smaller (torchvision's).
--- Padding is even, the extra pixel right and below; the window starts at round((H - h) / 2) with
--- Python's round half to even, as torchvision's CenterCrop.
function transforms.center_crop(size)
  local h, w = pair("center_crop", "size", size, false)
  return native("center_crop", string.format("center_crop({%d, %d})", h, w), {kind = "center_crop", size = {h, w}}, 2)
end

local function range(fn, what, v, default)
  v = v == nil and default or v
  if type(v) ~= "table" or #v ~= 2 or type(v[1]) ~= "number" or type(v[2]) ~= "number" or not (v[1] <= v[2]) then
    error(string.format("%s: %s must be a range {lo, hi} with lo <= hi", fn, what), 3)
  end
  return {v[1], v[2]}
end

--- cnn.data.transforms.random_resized_crop(size, {scale={0.08, 1}, ratio={3/4, 4/3}, interpolation=}) -> transform
--- A random window of each image resized to size s or {h, w}, as torchvision's RandomResizedCrop.
--- The window has a random area (a fraction of the image uniform in scale) and aspect ratio
--- (log-uniform in ratio), at a uniform position; after 10 tries that do not fit, the centre crop of
--- the whole image clamped to the ratio range. antialias=true (the default) as cnn.image.resize.
--- t:get_params(h, w, seed) returns the window (top, left, height, width; 1-based) it picks for an
--- h x w image with a generator seeded by seed.
function transforms.random_resized_crop(size, opts)
  opts = check_options("random_resized_crop", opts,
    {scale = true, ratio = true, interpolation = true, antialias = true}, 2)
  local h, w = pair("random_resized_crop", "size", size, false)
  local scale = range("random_resized_crop", "scale", opts.scale, {0.08, 1.0})
  local ratio = range("random_resized_crop", "ratio", opts.ratio, {3 / 4, 4 / 3})
  local mode = interpolation("random_resized_crop", opts.interpolation, "bilinear")
  local aa = flag("random_resized_crop", "antialias", opts.antialias, true)
  local t = native("random_resized_crop", string.format("random_resized_crop({%d, %d}, scale=%s, ratio=%s)", h, w,
    list_str(scale), list_str(ratio)), {kind = "random_resized_crop", size = {h, w}, scale = scale, ratio = ratio,
    interpolation = mode, antialias = aa}, 2)
  -- t:get_params(h, w, seed): the window (top, left, height, width; top and left 1-based) this
  -- transform picks for an h x w image with a generator seeded by the integer seed.
  t.get_params = function(_, ih, iw, seed)
    if math.type(seed) ~= "integer" then error("get_params: seed must be an integer", 2) end
    for k, v in ipairs({ih, iw}) do -- 5.5 was "bad argument #1 to '?'" from the C side
      if math.type(v) ~= "integer" or v < 1 then
        error(string.format("get_params: the image %s must be a positive integer, got %s",
          k == 1 and "height" or "width", util.show(v)), 2)
      end
    end
    local top, left, ch, cw = checked(2, pcall(cdata.random_resized_crop_box, ih, iw, scale, ratio, seed))
    return top + 1, left + 1, ch, cw
  end
  return t
end

-- A color_jitter factor range: a number v gives {max(0, c - v), c + v} (hue: {-v, v}); {lo, hi} as
-- it is; nil (or v = 0) turns the adjustment off.
local function jitter_range(name, v, hue)
  if v == nil then return nil end
  local lo, hi
  if type(v) == "number" then
    if v < 0 then error(string.format("color_jitter: %s must be non-negative", name), 3) end
    if hue then lo, hi = -v, v else lo, hi = math.max(0, 1 - v), 1 + v end
  elseif type(v) == "table" and #v == 2 and type(v[1]) == "number" and type(v[2]) == "number" then
    lo, hi = v[1], v[2]
  else
    error(string.format("color_jitter: %s must be a number or a range {lo, hi}", name), 3)
  end
  local bound_lo, bound_hi = hue and -0.5 or 0, hue and 0.5 or math.huge
  if not (bound_lo <= lo and lo <= hi and hi <= bound_hi) then
    error(string.format("color_jitter: %s range {%s, %s} must lie in [%g, %g] with lo <= hi", name,
      util.show(lo, "%g"), util.show(hi, "%g"), bound_lo, bound_hi), 3)
  end
  if lo == hi and lo == (hue and 0 or 1) then return nil end
  return {lo, hi}
end

--- cnn.data.transforms.color_jitter{brightness=0, contrast=0, saturation=0, hue=0} -> transform
--- Random brightness, contrast, saturation and hue in a random order, per image (torchvision's).
--- Each enabled adjustment gets a factor uniform in its range (a number v: {max(0, 1 - v), 1 + v};
--- hue: {-v, v} with v <= 0.5; or {lo, hi}), and the four run in a random order, as torchvision's
--- ColorJitter on tensors (see cnn.image.adjust_brightness and the others).
function transforms.color_jitter(opts)
  opts = check_options("color_jitter", opts, {brightness = true, contrast = true, saturation = true, hue = true}, 2)
  local spec = {kind = "color_jitter", brightness = jitter_range("brightness", opts.brightness),
                contrast = jitter_range("contrast", opts.contrast),
                saturation = jitter_range("saturation", opts.saturation), hue = jitter_range("hue", opts.hue, true)}
  local parts = {}
  for _, k in ipairs({"brightness", "contrast", "saturation", "hue"}) do
    if spec[k] then parts[#parts + 1] = k .. "=" .. list_str(spec[k]) end
  end
  return native("color_jitter", "color_jitter{" .. table.concat(parts, ", ") .. "}", spec, 2)
end

-- Rotation options shared by transforms.random_rotation and image.rotate.
local function rotation_spec(fn, opts, spec)
  spec.interpolation = interpolation(fn, opts.interpolation, "nearest", {nearest = true, bilinear = true})
  spec.expand = flag(fn, "expand", opts.expand, false)
  if opts.center ~= nil then
    local c = opts.center
    if type(c) ~= "table" or #c ~= 2 or type(c[1]) ~= "number" or type(c[2]) ~= "number" then
      error(fn .. ": center must be a pair {x, y} of pixel coordinates", 3)
    end
    spec.center = {c[1], c[2]}
  end
  if opts.fill ~= nil then spec.fill = number_list(fn, "fill", opts.fill) end
  return spec
end
transforms._rotation_spec = rotation_spec

--- cnn.data.transforms.random_rotation(degrees, {interpolation="nearest", expand=false, center=, fill=0}) -> transform
--- Rotates each image by an angle uniform in {-d, d} (degrees = d) or {lo, hi}, counter-clockwise.
--- As torchvision's RandomRotation: about the centre (or center = {x, y}, 0-based pixel
--- coordinates), "nearest" or "bilinear"; expand grows the image to hold the whole rotated one;
--- fill (a number or one per channel) where nothing was sampled.
function transforms.random_rotation(degrees, opts)
  opts = check_options("random_rotation", opts, {interpolation = true, expand = true, center = true, fill = true}, 2)
  local d
  if type(degrees) == "number" then
    if degrees < 0 then error("random_rotation: degrees must be non-negative when a single number", 2) end
    d = {-degrees, degrees}
  else
    d = range("random_rotation", "degrees", degrees)
  end
  local spec = rotation_spec("random_rotation", opts, {kind = "random_rotation", degrees = d})
  spec.fill = spec.fill or 0
  return native("random_rotation", string.format("random_rotation(%s)", list_str(d)), spec, 2)
end

--- cnn.data.transforms.grayscale(num_output_channels=1) -> transform
--- L = 0.2989 R + 0.587 G + 0.114 B, as torchvision's Grayscale on tensors.
--- Repeated to 3 channels when asked (a 1-channel image is repeated too).
function transforms.grayscale(n)
  n = n == nil and 1 or n
  if n ~= 1 and n ~= 3 then error("grayscale: num_output_channels must be 1 or 3, got " .. util.show(n), 2) end
  return native("grayscale", string.format("grayscale(%d)", n), {kind = "grayscale", channels = n}, 2)
end

--- cnn.data.transforms.random_grayscale(p=0.1) -> transform
--- Greyscale with probability p, per image, keeping the channel count (torchvision's).
function transforms.random_grayscale(p)
  p = probability("random_grayscale", p, 0.1)
  return native("random_grayscale", string.format("random_grayscale(%g)", p), {kind = "random_grayscale", p = p}, 2)
end

-- ToTensor's conversion (below): images as float32; bytes / 255, as torchvision's ToTensor scales them
local function to_tensor(x)
  if not util.is_tensor(x) then
    error("ToTensor: expected an image tensor (cnn.image.load gives one), got " .. util.show(x), 0)
  end
  if x:dtype() == "uint8" then return x:float():div(255) end
  if x:dtype() ~= "float32" then error("ToTensor: expected a float32 or uint8 image, got " .. x:dtype(), 0) end
  return x
end

--- cnn.data.transforms.compose{t1, t2, ...} -> transform
--- A transform that applies each one in order (transforms or plain functions of x).
--- When every one is a transform of this module the whole list runs as one C pipeline, which the
--- DataLoader's worker threads run without Lua.
function transforms.compose(list)
  if type(list) ~= "table" then error("compose: expected a list of transforms", 2) end
  local descs, specs = {}, {}
  for i, t in ipairs(list) do
    if not (type(t) == "function" or (type(t) == "table" and getmetatable(t) and getmetatable(t).__call)) then
      error(string.format("compose: element %d is not callable", i), 2)
    end
    descs[i] = type(t) == "function" and "function" or tostring(t)
    if specs and type(t) == "table" and getmetatable(t) == Transform and t.specs then
      for _, sp in ipairs(t.specs) do specs[#specs + 1] = sp end
    else
      specs = nil
    end
  end
  local fs = {table.unpack(list)}
  local desc = "compose{" .. table.concat(descs, ", ") .. "}"
  local t
  if specs and #specs > 0 then
    local pipe = checked(2, pcall(cdata.pipeline, specs, "compose"))
    -- an error names the step that failed: "compose: random_hflip: ..."; ToTensor first converts a
    -- uint8 image before the pipeline, as in torchvision's Compose{ToTensor(), ...}
    local first_to_tensor = type(list[1]) == "table" and list[1].to_tensor
    t = make(desc, function(x)
      if first_to_tensor then x = to_tensor(x) end
      return cdata.pipeline_apply(pipe, x, "compose")
    end, specs)
  else
    t = make(desc, function(x)
      for _, f in ipairs(fs) do x = run_transform(f, x) end
      return x
    end, nil)
  end
  t.parts = fs -- an ImageFolder runs the leading transforms of the list in C
  return t
end

--- cnn.data.transforms.ToTensor() -> transform
--- torchvision's ToTensor, so that its pipelines read the same here.
--- Images here are already float tensors (C, H, W) in [0, 1] (cnn.image.load, the datasets),
--- returned as they are; a uint8 image or batch becomes float32 / 255, as ToTensor scales bytes.
--- It adds no step to a C pipeline.
function transforms.ToTensor()
  local t = make("ToTensor()", to_tensor, {})
  t.to_tensor = true -- first in a compose, it converts bytes before the C pipeline (which has no step for it)
  return t
end

--- cnn.data.transforms.ColorJitter(brightness=0, contrast=0, saturation=0, hue=0) -> transform
--- torchvision's ColorJitter, with its positional arguments.
--- color_jitter{brightness=, contrast=, saturation=, hue=}; an options table as the first argument is
--- passed on as it is.
function transforms.ColorJitter(brightness, contrast, saturation, hue)
  if type(brightness) == "table" and (brightness.brightness ~= nil or brightness.contrast ~= nil or
      brightness.saturation ~= nil or brightness.hue ~= nil) then
    return checked(2, pcall(transforms.color_jitter, brightness))
  end
  local t = checked(2, pcall(transforms.color_jitter,
    {brightness = brightness, contrast = contrast, saturation = saturation, hue = hue}))
  return t
end

-- torchvision's class names for the others: the same functions, whose arguments already follow
-- torchvision's (keyword arguments in an options table), so `transforms.Compose{transforms.Resize(256),
-- transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)}` reads as it does there
for tv, ours in pairs({Compose = "compose", Normalize = "normalize", RandomCrop = "random_crop",
                       RandomHorizontalFlip = "random_hflip", RandomVerticalFlip = "random_vflip", Resize = "resize",
                       CenterCrop = "center_crop", RandomResizedCrop = "random_resized_crop",
                       RandomRotation = "random_rotation", Grayscale = "grayscale",
                       RandomGrayscale = "random_grayscale"}) do
  transforms[tv] = transforms[ours]
end

data.cifar10 = require "cnn.datasets.cifar10" -- data.cifar10(dir, split): CIFAR-10 binary files

return data
