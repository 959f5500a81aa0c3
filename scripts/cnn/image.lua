--- module cnn.image
--- PNG and JPEG files as tensors, resizing and transforms, image grids.

-- cnn.image: PNG and JPEG files as (C, H, W) float tensors in [0, 1] (libpng and libjpeg-turbo in C),
-- and grid, which tiles a batch of images into one picture (torchvision.utils.make_grid).
local core = require "cnn.core"
local cio = core.io
local cdata = core.data

local image = {}

local util = require "cnn.util"

local checked = util.checked -- checked(level, pcall(f, ...)): f's error at the caller's line

-- (errors at the line calling the function that checks)
local function options(fn, opts, known)
  return (util.check_options(fn, opts, known, 3)) -- not a tail call, which would shift the levels
end

--- cnn.image.load(path, {mode="auto", exif=true}) -> Tensor
--- A PNG or JPEG file as a (C, H, W) float32 tensor in [0, 1]; the format is read from the bytes.
--- PNG: every colour type, bit depth (16-bit keeps its precision), palette, tRNS and interlacing.
--- JPEG (libjpeg-turbo, decoded to exactly PIL's pixels): grey, YCbCr, RGB, CMYK/YCCK (converted as
--- PIL's convert("RGB")), baseline, progressive, arithmetic, any chroma subsampling.
---
--- mode "auto": grey (+alpha) -> 1 channel, colour (+alpha), palette and CMYK -> 3, alpha dropped;
--- "gray": 1 channel (colour converted as PIL's convert("L")); "rgb": 3; "rgba": 4 (tRNS -> alpha).
--- With exif (the default) the EXIF orientation tag (JPEG APP1, PNG eXIf) is applied as PIL's
--- ImageOps.exif_transpose does. Images over cnn.image.max_pixels() pixels are refused before their
--- pixels are allocated; truncated and corrupt files raise an error naming the path, but a PNG
--- whose image data is whole loads whatever follows it (no end chunk, a chunk after the image cut
--- short or with a bad checksum, trailing bytes).
function image.load(path, opts)
  opts = options("image.load", opts, {mode = true, exif = true})
  local exif = opts.exif
  if exif ~= nil and type(exif) ~= "boolean" then error("image.load: exif must be a boolean", 2) end
  -- no tail call: see checked
  local t = checked(2, pcall(cio.image_load, path, opts.mode or "auto", "image.load", exif ~= false))
  return t
end

--- cnn.image.save(path, t, {quality=75})
--- Writes a float tensor with values in [0, 1] (clamped) as 8-bit samples: JPEG or PNG by extension.
--- A JPEG when path ends in .jpg or .jpeg (any case): (H, W), (1, H, W) grey or (3, H, W) RGB,
--- quality 1..100, 4:2:0 chroma as PIL saves. A PNG otherwise: (H, W) or (1, H, W) grey,
--- (2, H, W) grey + alpha, (3, H, W) RGB or (4, H, W) RGBA. The file is written beside path and
--- renamed over it when complete.
function image.save(path, t, opts)
  opts = options("image.save", opts, {quality = true})
  local q = opts.quality
  if q ~= nil and math.type(q) ~= "integer" then
    error("image.save: quality must be an integer between 1 and 100, got " .. util.show(q), 2)
  end
  checked(2, pcall(cio.image_save, path, t, "image.save", q))
end

--- cnn.image.max_pixels(n) -> previous limit
--- The largest width * height that image.load and the data loaders accept; sets it when n is given.
--- The default, 178956970, is PIL's decompression-bomb limit: a JPEG header can claim 65535 x 65535
--- pixels in a few bytes, so the limit is checked after the header, before any pixel is allocated.
function image.max_pixels(n)
  if n ~= nil and math.type(n) ~= "integer" then
    error("image.max_pixels: expected an integer, got " .. util.show(n), 2)
  end
  local old = checked(2, pcall(cio.image_max_pixels, n))
  return old
end

-- ---------------------------------------------------------------------------------------------
-- Functional transforms (torchvision.transforms.functional on tensors): the deterministic
-- operations behind cnn.data.transforms, on a (C, H, W) image or a (N, C, H, W) batch (each image
-- alike). They run in C (core.data), the same code as the transforms and the DataLoader's workers.

local function is_int(v) return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v)) end

local function run(fn, t, spec)
  if not util.is_tensor(t) then error(fn .. ": expected a tensor, got " .. type(t), 3) end
  local pipe = checked(3, pcall(cdata.pipeline, {spec}, fn))
  local y = checked(3, pcall(cdata.pipeline_apply, pipe, t, fn))
  return y
end

local function size_pair(fn, size)
  if is_int(size) and size >= 1 then return {size, size} end
  if type(size) == "table" and #size == 2 and is_int(size[1]) and is_int(size[2]) and size[1] >= 1 and size[2] >= 1 then
    return {size[1], size[2]}
  end
  error(fn .. ": size must be a positive integer or a pair {h, w}", 3)
end

local function interp_opts(fn, opts, default)
  opts = options(fn, opts, {interpolation = true, antialias = true, max_size = true})
  local mode = opts.interpolation == nil and default or opts.interpolation
  if mode ~= "bilinear" and mode ~= "bicubic" and mode ~= "nearest" then
    error(string.format("%s: interpolation must be \"bilinear\", \"bicubic\" or \"nearest\", got %s", fn,
      util.show(mode)), 3)
  end
  if opts.antialias ~= nil and type(opts.antialias) ~= "boolean" then
    error(fn .. ": antialias must be a boolean", 3)
  end
  return opts, mode
end

--- cnn.image.resize(t, size, {interpolation="bilinear", antialias=true, max_size=}) -> Tensor
--- t (..., H, W) resized as torchvision's transforms.functional.resize on tensors.
--- size an integer scales the shorter side to it (the longer in proportion, rounded down; max_size
--- caps it), or {h, w}. "bilinear" and "bicubic" antialias as Pillow's filters unless
--- antialias=false (torchvision's antialias=True, also when upsampling; the bicubic filter is then
--- Pillow's a = -0.5); "nearest" is PyTorch's legacy nearest and never antialiases. Returns t
--- itself when the size does not change, as torchvision does. Values match torchvision's to float
--- rounding.
function image.resize(t, size, opts)
  local o, mode = interp_opts("image.resize", opts, "bilinear")
  local sz
  if is_int(size) and size >= 1 then sz = {size}
  else sz = size_pair("image.resize", size) end
  if o.max_size ~= nil and not (is_int(o.max_size) and o.max_size >= 1) then
    error("image.resize: max_size must be a positive integer", 2)
  end
  local y = checked(2, pcall(cdata.resize, t, {kind = "resize", size = sz, max_size = o.max_size, interpolation = mode,
                                              antialias = o.antialias ~= false}, "image.resize"))
  return y
end

--- cnn.image.crop(t, top, left, height, width) -> Tensor
--- The window whose top-left pixel is (top, left), 1-based; zeros where it leaves the image.
--- As torchvision's crop (which counts from 0), on an image (C, H, W) or a batch (N, C, H, W).
function image.crop(t, top, left, height, width)
  for i, v in ipairs({top, left, height, width}) do
    if not is_int(v) then error(string.format("image.crop: argument %d must be an integer", i + 1), 2) end
  end
  return run("image.crop", t, {kind = "crop", box = {top - 1, left - 1, height, width}})
end

--- cnn.image.center_crop(t, size) -> Tensor
--- The centre window of size s or {h, w}, zero-padded when t is smaller (torchvision's center_crop).
function image.center_crop(t, size)
  return run("image.center_crop", t, {kind = "center_crop", size = size_pair("image.center_crop", size)})
end

--- cnn.image.resized_crop(t, top, left, height, width, size, {interpolation="bilinear", antialias=true}) -> Tensor
--- cnn.image.crop, then a resize to size s or {h, w}, in one pass (torchvision's resized_crop).
function image.resized_crop(t, top, left, height, width, size, opts)
  for i, v in ipairs({top, left, height, width}) do
    if not is_int(v) then error(string.format("image.resized_crop: argument %d must be an integer", i + 1), 2) end
  end
  local o, mode = interp_opts("image.resized_crop", opts, "bilinear")
  return run("image.resized_crop", t, {kind = "resized_crop", box = {top - 1, left - 1, height, width},
    size = size_pair("image.resized_crop", size), interpolation = mode, antialias = o.antialias ~= false})
end

--- cnn.image.hflip(t) -> Tensor
--- t (C, H, W) or (N, C, H, W) mirrored left-right.
function image.hflip(t) return run("image.hflip", t, {kind = "hflip"}) end

--- cnn.image.vflip(t) -> Tensor
--- t (C, H, W) or (N, C, H, W) flipped upside down.
function image.vflip(t) return run("image.vflip", t, {kind = "vflip"}) end

local function factor_op(name, kind, t, factor)
  if type(factor) ~= "number" then error(name .. ": factor must be a number", 3) end
  return run(name, t, {kind = kind, factor = factor})
end

--- cnn.image.adjust_brightness(t, factor) -> Tensor
--- clamp(factor * t, 0, 1), as torchvision's adjust_brightness on tensors (1 or 3 channels).
function image.adjust_brightness(t, factor)
  return factor_op("image.adjust_brightness", "adjust_brightness", t, factor)
end

--- cnn.image.adjust_contrast(t, factor) -> Tensor
--- t blended with the mean of its greyscale image by factor, clamped (torchvision's adjust_contrast).
function image.adjust_contrast(t, factor) return factor_op("image.adjust_contrast", "adjust_contrast", t, factor) end

--- cnn.image.adjust_saturation(t, factor) -> Tensor
--- t blended with its greyscale image by factor, clamped (torchvision's); grey images are unchanged.
function image.adjust_saturation(t, factor)
  return factor_op("image.adjust_saturation", "adjust_saturation", t, factor)
end

--- cnn.image.adjust_hue(t, factor) -> Tensor
--- The hue shifted by factor in [-0.5, 0.5] through HSV (torchvision's); grey images are unchanged.
function image.adjust_hue(t, factor) return factor_op("image.adjust_hue", "adjust_hue", t, factor) end

--- cnn.image.rgb_to_grayscale(t, num_output_channels=1) -> Tensor
--- L = 0.2989 R + 0.587 G + 0.114 B, as torchvision's rgb_to_grayscale on tensors.
--- Repeated to 3 channels when asked. (PIL's convert("L"), which cnn.image.load's mode "gray"
--- follows, weighs and rounds differently.)
function image.rgb_to_grayscale(t, n)
  n = n == nil and 1 or n
  if n ~= 1 and n ~= 3 then error("image.rgb_to_grayscale: num_output_channels must be 1 or 3", 2) end
  return run("image.rgb_to_grayscale", t, {kind = "grayscale", channels = n})
end

--- cnn.image.rotate(t, angle, {interpolation="nearest", expand=false, center=, fill=}) -> Tensor
--- t rotated counter-clockwise by angle degrees, as torchvision's rotate on tensors.
--- About the centre, or center = {x, y} (0-based pixel coordinates); "nearest" or "bilinear"
--- sampling; expand grows the output to hold the whole rotated image; fill (a number or one per
--- channel) where nothing was sampled, blended as torchvision does (zeros without fill).
function image.rotate(t, angle, opts)
  if type(angle) ~= "number" then error("image.rotate: angle must be a number", 2) end
  if angle ~= angle or math.abs(angle) == math.huge then
    error("image.rotate: angle must be finite, got " .. (angle ~= angle and "nan" or tostring(angle)), 2)
  end
  opts = options("image.rotate", opts, {interpolation = true, expand = true, center = true, fill = true})
  -- the option checks are data.lua's, whose error levels count from its own callers: re-raised here,
  -- at the caller's line (image.lua's own line was in the message)
  local ok, spec = pcall(require("cnn.data").transforms._rotation_spec, "image.rotate", opts,
    {kind = "rotate", degrees = {angle, angle}})
  if not ok then error((tostring(spec):gsub("^[^\n]-image%.lua:%d+: ", "", 1)), 2) end
  return run("image.rotate", t, spec)
end

--- cnn.image.grid(t, {nrow=8, padding=2, normalize=false, value_range=, scale_each=false, pad_value=0}) -> Tensor
--- Tiles images (N, C, H, W) into one (C, H', W') picture, nrow to a row (filters, feature maps).
--- As torchvision.utils.make_grid, except that 1-channel images stay 1-channel (make_grid repeats them
--- to 3; cnn.image.save writes the same picture either way). A single image (N = 1, or a 2-d or 3-d
--- input) comes back without padding. normalize shifts and scales to [0, 1] by value_range = {lo, hi},
--- or else by the min and max (of each image with scale_each).
function image.grid(t, opts)
  opts = options("image.grid", opts, {nrow = true, padding = true, normalize = true, value_range = true,
                                      scale_each = true, pad_value = true})
  if not util.is_tensor(t) then error("image.grid: expected a tensor, got " .. type(t), 2) end
  if t:dtype() ~= "float32" then error("image.grid: expected a float32 tensor, got " .. t:dtype(), 2) end
  local nrow, padding, pad_value = opts.nrow or 8, opts.padding or 2, opts.pad_value or 0
  if math.type(nrow) ~= "integer" or nrow < 1 then error("image.grid: nrow must be a positive integer", 2) end
  if math.type(padding) ~= "integer" or padding < 0 then
    error("image.grid: padding must be a non-negative integer", 2)
  end
  if type(pad_value) ~= "number" then error("image.grid: pad_value must be a number", 2) end
  for _, k in ipairs{"normalize", "scale_each"} do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      error(string.format("image.grid: %s must be a boolean, got %s", k, type(opts[k])), 2)
    end
  end
  local d = t:dim()
  if d == 2 then t = t:unsqueeze(1) end
  if d == 2 or d == 3 then t = t:unsqueeze(1) end
  if d < 2 or d > 4 then error(string.format("image.grid: expected (N, C, H, W) images, got %d dimensions", d), 2) end
  if opts.normalize then
    local range = opts.value_range
    if range ~= nil and (type(range) ~= "table" or type(range[1]) ~= "number" or type(range[2]) ~= "number") then
      error("image.grid: value_range must be a pair {lo, hi}", 2)
    end
    local function norm(x)
      local lo, hi
      if range then lo, hi = range[1], range[2] else lo, hi = x:min():item(), x:max():item() end
      return (x:clamp(lo, hi) - lo) / math.max(hi - lo, 1e-5)
    end
    if opts.scale_each then
      local parts = {}
      for k = 1, t:size(1) do parts[k] = norm(t[k]) end
      t = core.stack(parts, 1)
    else
      t = norm(t)
    end
  end
  local n, c, h, w = t:size(1), t:size(2), t:size(3), t:size(4)
  if n == 0 then error("image.grid: no images to tile (the batch is empty)", 2) end
  if n == 1 then return t[1]:clone() end
  local xmaps = math.min(nrow, n)
  local ymaps = (n + xmaps - 1) // xmaps
  -- in floats: integer sizes this large would wrap around
  if (h + 0.0 + padding) * ymaps + padding > 2 ^ 40 or (w + 0.0 + padding) * xmaps + padding > 2 ^ 40 then
    error(string.format("image.grid: a grid of %d x %d images of %dx%d with padding %d is too large", ymaps, xmaps, h,
      w, padding), 2)
  end
  local height, width = h + padding, w + padding
  local ok, grid = pcall(core.full, {c, height * ymaps + padding, width * xmaps + padding}, pad_value,
    {dtype = "float32"})
  if not ok then error("image.grid: " .. tostring(grid):gsub("^full: ", ""), 2) end
  local k = 0
  for y = 0, ymaps - 1 do
    for x = 0, xmaps - 1 do
      if k >= n then break end
      k = k + 1
      grid:narrow(2, y * height + padding + 1, h):narrow(3, x * width + padding + 1, w):copy_(t[k])
    end
  end
  return grid
end

return image
