-- cnn.image's functional transforms and cnn.data.transforms against torchvision 0.14 on tensors
-- (tests/fixtures/photos/expected.lua, from scripts/tools/gen_photo_fixtures.py): resize in every
-- mode, antialiased or not, down and up; crops with padding; resized_crop; the colour adjustments;
-- rotation; grayscale; flips; normalize. Then the random transforms' sampling: bounds, the
-- fallback, reproducibility from the seed, and that a batch is transformed image by image.
local cnn = require "cnn"
local image = cnn.image
local data = cnn.data
local T = data.transforms
local H = dofile("tests/lua/helpers.lua")
local E = dofile("tests/fixtures/photos/expected.lua")

local DIR = "tests/fixtures/photos/"
local TOL = 1 / 255 -- the issue's bound; the results are far closer (see the max error asserted below)

local function input(spec)
  local t = image.load(DIR .. spec.file)
  if spec.channel then t = t:narrow(1, spec.channel, 1) end
  return t:narrow(2, spec.top, spec.height):narrow(3, spec.left, spec.width):contiguous()
end

local X = input(E.input.x) -- 3x9x11
local P = input(E.input.p) -- 1x13x17

local function max_error(t, expected)
  assert.are.same(expected.shape, t:shape())
  local got, worst = H.values(t), 0
  for i, v in ipairs(expected.data) do worst = math.max(worst, math.abs(got[i] - v)) end
  return worst
end

local function run_case(case)
  local a = case.args
  local op = case.op
  local x = a.input == "p" and P or a.input == "gray" and image.rgb_to_grayscale(X)
    or a.input == "batch" and cnn.stack({X, image.hflip(X)}) or X
  if op == "resize" then
    return image.resize(x, a.size, {interpolation = a.interpolation, antialias = a.antialias, max_size = a.max_size})
  elseif op == "center_crop" then return image.center_crop(x, a.size)
  elseif op == "crop" then return image.crop(x, a.top + 1, a.left + 1, a.height, a.width)
  elseif op == "resized_crop" then
    return image.resized_crop(x, a.top + 1, a.left + 1, a.height, a.width, a.size, {interpolation = a.interpolation})
  elseif op == "rgb_to_grayscale" then return image.rgb_to_grayscale(x, a.num_output_channels)
  elseif op == "hflip" or op == "vflip" then return image[op](x)
  elseif op == "normalize" then return T.normalize(a.mean, a.std)(x)
  elseif op == "rotate" then
    return image.rotate(x, a.angle,
      {interpolation = a.interpolation, expand = a.expand, center = a.center, fill = a.fill})
  else return image[op](x, a.factor) end
end

local function describe_case(case)
  local parts = {}
  for k, v in pairs(case.args) do
    parts[#parts + 1] = k .. "=" .. (type(v) == "table" and "{" .. table.concat(v, ",") .. "}" or tostring(v))
  end
  table.sort(parts)
  return case.op .. "(" .. table.concat(parts, " ") .. ")"
end

describe("image transforms match torchvision on tensors", function()
  for _, case in ipairs(E.transforms) do
    it(describe_case(case), function()
      local err = max_error(run_case(case), case.expected)
      -- within the 1/255 of the issue; float rounding only, except that nearest rotation may pick
      -- the other pixel where a sample lands within rounding of a pixel edge (none does here)
      assert(err <= TOL, string.format("max error %.3g > 1/255", err))
      assert(err <= 2e-5, string.format("max error %.3g: more than float rounding", err))
    end)
  end

  it("returns the image itself when resize keeps its size, and resizes any leading dims", function()
    assert.are.equal(X, image.resize(X, {9, 11}))
    assert.are.equal(X, image.resize(X, 9))
    local b = cnn.rand(2, 3, 2, 5, 6)
    local y = image.resize(b, {3, 4})
    assert.are.same({2, 3, 2, 3, 4}, y:shape())
    assert.is_true(cnn.allclose(y[2][3][1], image.resize(b[2][3][1]:unsqueeze(1), {3, 4})[1]))
  end)

  it("rejects bad arguments by name", function()
    H.assert_error(function() image.resize(X, 0) end, "image.resize:", "size")
    H.assert_error(function() image.resize(X, {2, 3}, {interpolation = "area"}) end, "image.resize:", "interpolation")
    H.assert_error(function() image.resize(X, 4, {max_size = 3}) end, "image.resize:", "max_size")
    H.assert_error(function() image.resize(X, 4, {antialias = 1}) end, "image.resize:", "antialias")
    H.assert_error(function() image.resize(X, 4, {mode = 1}) end, "image.resize:", "unknown option 'mode'")
    H.assert_error(function() image.resize(cnn.zeros(3), 4) end, "image.resize:", "(..., H, W)")
    H.assert_error(function() image.adjust_hue(X, 0.7) end, "image.adjust_hue:", "[-0.5, 0.5]")
    H.assert_error(function() image.adjust_brightness(X, -1) end, "image.adjust_brightness:", ">= 0")
    H.assert_error(function() image.adjust_contrast(cnn.rand(2, 4, 4), 1.5) end, "image.adjust_contrast:",
      "1 or 3 channels")
    H.assert_error(function() image.rotate(X, 10, {interpolation = "bicubic"}) end, "image.rotate:", "interpolation")
    H.assert_error(function() image.rotate(X, 10, {fill = {1, 2}}) end, "image.rotate:", "2 values for 3 channels")
    -- at the caller's line (the option checks' own levels pointed into image.lua), angle named as such
    local ok, err = pcall(function() local r = image.rotate(X, 30, {fill = "red"}) return r end)
    assert.is_false(ok)
    assert.is_truthy(err:find("transforms_spec.lua:%d+: image.rotate: fill must be"), err)
    H.assert_error(function() image.rotate(X, 0 / 0) end, "image.rotate: angle must be finite, got nan")
    H.assert_error(function() T.random_resized_crop(8):get_params(5.5, 5, 1) end,
      "get_params: the image height must be a positive integer, got 5.5")
    H.assert_error(function() image.center_crop(cnn.zeros(4, 4), 2) end, "image.center_crop:", "(C, H, W)")
    H.assert_error(function() image.crop(X, 1, 1, 0, 3) end, "image.crop:", "positive")
    H.assert_usable()
  end)
end)

describe("data.transforms", function()
  it("run the same C code as the functional forms", function()
    assert.is_true(cnn.allclose(T.resize(5)(X), image.resize(X, 5), 0, 0))
    assert.is_true(cnn.allclose(T.center_crop({5, 7})(X), image.center_crop(X, {5, 7}), 0, 0))
    assert.is_true(cnn.allclose(T.grayscale(3)(X), image.rgb_to_grayscale(X, 3), 0, 0))
    local both = T.compose{T.resize({6, 8}, {interpolation = "bicubic"}), T.center_crop(4),
                           T.normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)}
    local by_hand = T.normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)(image.center_crop(
      image.resize(X, {6, 8}, {interpolation = "bicubic"}), 4))
    assert.is_true(cnn.allclose(both(X), by_hand, 0, 0))
    assert.are.same({0.485, 0.456, 0.406}, data.IMAGENET_MEAN)
    assert.are.same({0.229, 0.224, 0.225}, data.IMAGENET_STD)
  end)

  it("random_resized_crop samples torchvision's windows: area and ratio in range, inside the image", function()
    local t = T.random_resized_crop(8, {scale = {0.2, 0.6}, ratio = {0.5, 2}})
    local h, w = 375, 500
    local seen_top = {}
    for seed = 1, 300 do
      local top, left, ch, cw = t:get_params(h, w, seed)
      assert.is_true(top >= 1 and left >= 1 and top + ch - 1 <= h and left + cw - 1 <= w)
      -- sides are rounded from sqrt(area * ratio) and sqrt(area / ratio): allow the rounding
      local area = ch * cw / (h * w)
      assert.is_true(area >= 0.2 * 0.9 and area <= 0.6 * 1.1, string.format("area fraction %g", area))
      local ratio = cw / ch
      assert.is_true(ratio >= 0.5 * 0.9 and ratio <= 2 * 1.1, string.format("ratio %g", ratio))
      seen_top[top] = true
    end
    local n = 0
    for _ in pairs(seen_top) do n = n + 1 end
    assert.is_true(n > 100)
    -- the same seed, the same window; another seed, (almost surely) another
    assert.are.same({t:get_params(h, w, 7)}, {t:get_params(h, w, 7)})
    assert.are_not.same({t:get_params(h, w, 7)}, {t:get_params(h, w, 8)})
  end)

  it("random_resized_crop falls back to the centre crop clamped to the ratio range after 10 tries", function()
    -- scale above 1 never fits, so every try fails: the fallback, whatever the seed
    local wide = T.random_resized_crop(4, {scale = {2, 3}, ratio = {0.75, 1.25}})
    -- 10 x 40: in_ratio 4 > 1.25, so h = 10, w = round(10 * 1.25) = 12, at ((10-10)//2, (40-12)//2)
    for seed = 1, 20 do assert.are.same({1, 15, 10, 12}, {wide:get_params(10, 40, seed)}) end
    -- 40 x 10: in_ratio 0.25 < 0.75, so w = 10, h = round(10 / 0.75) = round(13.33) = 13, top (40-13)//2 = 13
    assert.are.same({14, 1, 13, 10}, {wide:get_params(40, 10, 3)})
    -- in range: the whole image
    assert.are.same({1, 1, 20, 22}, {wide:get_params(20, 22, 3)})
    -- round half to even, as Python's round: 10 / 0.8 = 12.5 -> 12
    local r = T.random_resized_crop(4, {scale = {2, 3}, ratio = {0.8, 0.8}})
    assert.are.same({5, 1, 12, 10}, {r:get_params(20, 10, 1)})
  end)

  it("random transforms repeat under cnn.manual_seed and draw per image of a batch", function()
    local b = cnn.stack({X, X, X, X, X, X, X, X})
    local t = T.compose{T.random_resized_crop(5), T.random_hflip(), T.color_jitter{brightness = 0.4, hue = 0.1},
                        T.random_rotation(20)}
    cnn.manual_seed(3)
    local y1 = t(b)
    cnn.manual_seed(3)
    local y2 = t(b)
    assert.are.same({8, 3, 5, 5}, y1:shape())
    assert.is_true(cnn.allclose(y1, y2, 0, 0))
    local distinct = 0
    for i = 2, 8 do
      if not cnn.allclose(y1[i], y1[1], 0, 0) then distinct = distinct + 1 end
    end
    assert.are.equal(7, distinct)
    -- image i of a batch gets what the transform gives it alone with the stream where the batch
    -- drew i's seed: the batch draws one 64-bit seed per image, all first (randint(0, 1) draws
    -- exactly one 64-bit value)
    for _, i in ipairs({1, 3, 8}) do
      cnn.manual_seed(3)
      if i > 1 then cnn.randint(0, 1, {i - 1}) end
      assert.is_true(cnn.allclose(t(X), y1[i], 0, 0), "image " .. i)
    end
  end)

  it("color_jitter keeps factors in range: brightness alone scales every pixel by one factor", function()
    local t = T.color_jitter{brightness = {0.5, 0.7}}
    local x = cnn.full({3, 2, 2}, 0.5)
    for s = 1, 30 do
      cnn.manual_seed(s)
      local y = t(x)
      local f = y[1][1][1] / 0.5
      assert.is_true(f >= 0.5 - 1e-6 and f <= 0.7 + 1e-6)
      assert.is_true(cnn.allclose(y, cnn.full({3, 2, 2}, y[1][1][1]), 0, 1e-7))
    end
    H.assert_error(function() T.color_jitter{hue = 0.6} end, "color_jitter:", "hue")
    H.assert_error(function() T.color_jitter{brightness = -1} end, "color_jitter:", "non%-negative")
    H.assert_error(function() T.color_jitter{brightnes = 1} end, "color_jitter:", "unknown option")
    -- zero ranges turn an adjustment off: the identity
    assert.is_true(cnn.allclose(T.color_jitter{brightness = 0, hue = 0}(X), X, 0, 0))
  end)

  it("random_rotation picks angles in range and fills outside", function()
    local x = cnn.ones(1, 9, 9)
    cnn.manual_seed(1)
    local y = T.random_rotation({45, 45}, {fill = 0.25})(x)
    -- a 45 degree turn leaves the corners uncovered: filled with 0.25; the centre stays 1
    assert.are.equal(0.25, y[1][1][1])
    assert.are.equal(1, y[1][5][5])
    local z = T.random_rotation({90, 90}, {expand = true})(cnn.rand(1, 4, 6))
    assert.are.same({1, 6, 4}, z:shape())
    H.assert_error(function() T.random_rotation(-5) end, "random_rotation:", "non%-negative")
    H.assert_error(function() T.random_rotation({5, 1}) end, "random_rotation:", "lo <= hi")
  end)

  it("random_grayscale and random_vflip apply with probability p", function()
    local x = cnn.rand(3, 4, 5)
    assert.is_true(cnn.allclose(T.random_grayscale(1)(x), image.rgb_to_grayscale(x, 3), 0, 0))
    assert.is_true(cnn.allclose(T.random_grayscale(0)(x), x, 0, 0))
    assert.is_true(cnn.allclose(T.random_vflip(1)(x), image.vflip(x), 0, 0))
    assert.is_true(cnn.allclose(T.random_vflip(0)(x), x, 0, 0))
    H.assert_error(function() T.random_grayscale(1.5) end, "random_grayscale:", "probability")
  end)

  it("a failing step of a compose names itself", function()
    local t = T.compose{T.resize(4), T.center_crop(3), T.color_jitter{saturation = 0.5}}
    H.assert_error(function() t(cnn.rand(2, 5, 5)) end, "compose:", "color_jitter", "1 or 3 channels")
    H.assert_error(function() t(cnn.rand(5, 5)) end, "compose:", "(C, H, W)")
    H.assert_error(function() T.resize(0) end, "resize:", "size")
    H.assert_error(function() T.random_resized_crop(4, {scale = {0, 1}}) end, "random_resized_crop:", "scale")
    H.assert_error(function() T.random_resized_crop(4, {ratio = {2, 1}}) end, "random_resized_crop:", "ratio")
    H.assert_usable()
  end)

  it("answer to torchvision's class names: a torchvision pipeline reads the same and computes the same", function()
    local tv = T.Compose{T.Resize(6), T.CenterCrop(5), T.RandomCrop(5, {padding = 1}), T.RandomHorizontalFlip(),
                         T.RandomVerticalFlip(0.3), T.RandomRotation(10), T.ColorJitter(0.4, 0.3, 0.2, 0.1),
                         T.RandomGrayscale(0.5), T.RandomResizedCrop(4), T.ToTensor(), T.Grayscale(3),
                         T.Normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)}
    local ours = T.compose{T.resize(6), T.center_crop(5), T.random_crop(5, {padding = 1}), T.random_hflip(),
                           T.random_vflip(0.3), T.random_rotation(10),
                           T.color_jitter{brightness = 0.4, contrast = 0.3, saturation = 0.2, hue = 0.1},
                           T.random_grayscale(0.5), T.random_resized_crop(4), T.grayscale(3),
                           T.normalize(data.IMAGENET_MEAN, data.IMAGENET_STD)}
    assert.is_table(tv.specs) -- ToTensor adds no step: still one C pipeline, as DataLoader workers run it
    assert.are.equal(#ours.specs, #tv.specs)
    local x = cnn.rand(4, 3, 9, 11)
    cnn.manual_seed(7)
    local a = tv(x)
    cnn.manual_seed(7)
    assert.is_true(cnn.allclose(a, ours(x), 0, 0))
    assert.are.same({4, 3, 4, 4}, a:shape())
    -- ColorJitter's positional arguments, its options table, a brightness range
    assert.are.equal(tostring(T.color_jitter{brightness = 0.2}), tostring(T.ColorJitter{brightness = 0.2}))
    assert.are.equal("color_jitter{brightness={0.5, 1.5}}", tostring(T.ColorJitter({0.5, 1.5})))
    assert.are.equal("color_jitter{contrast={0.5, 1.5}}", tostring(T.ColorJitter(nil, 0.5)))
    H.assert_error(function() T.ColorJitter(-1) end, "color_jitter:", "non%-negative")
    -- ToTensor: float images as they are, bytes scaled as torchvision's ToTensor scales them
    assert.is_true(rawequal(x, T.ToTensor()(x)))
    local bytes = T.ToTensor()(cnn.tensor({{{0, 51, 255}}}, {dtype = "uint8"}))
    assert.are.equal("float32", bytes:dtype())
    H.assert_tensor(bytes, {shape = {1, 1, 3}, data = {0, 0.2, 1}}, {atol = 1e-7})
    H.assert_error(function() T.ToTensor()(3) end, "ToTensor:", "image tensor")
    -- first in a compose, before the C pipeline, it converts bytes as it does alone
    local u8 = cnn.tensor({{{0, 51, 255, 102}, {0, 0, 0, 0}}}, {dtype = "uint8"})
    local c = T.Compose{T.ToTensor(), T.Resize({2, 2}), T.Normalize(0.5, 0.5)}
    assert.is_true(cnn.allclose(c(u8), T.compose{T.resize({2, 2}), T.normalize(0.5, 0.5)}(u8:float() / 255), 0, 0))
    H.assert_error(function() T.ToTensor()(cnn.zeros(1, 2, 2, {dtype = "int64"})) end, "ToTensor:", "int64")
    -- and in an ImageFolder read by worker threads
    local d = H.tmpdir()
    H.mkdir_p(d .. "/cat")
    image.save(d .. "/cat/a.png", X)
    local ds = data.ImageFolder(d, {transform = T.Compose{T.Resize(8), T.CenterCrop(8), T.ToTensor()}})
    local b = data.DataLoader(ds, {batch_size = 1, workers = 2}):iter()()
    assert.are.same({1, 3, 8, 8}, b:shape())
    H.rmdir(d)
    H.assert_usable()
  end)
end)
