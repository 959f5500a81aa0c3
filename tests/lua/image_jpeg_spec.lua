-- cnn.image with JPEG: every fixture of tests/fixtures/photos/ (PIL- and cjpeg-written: baseline
-- 4:2:0/4:2:2/4:4:4/4:1:1/4:4:0, progressive, arithmetic, restart markers, grey, CMYK, RGB
-- colourspace, EXIF orientations 1-8 and a PNG with eXIf) decodes to exactly PIL's bytes after
-- ImageOps.exif_transpose (scripts/tools/gen_photo_fixtures.py); format by content; truncated,
-- corrupt and oversized files give errors naming the path; JPEG writing with quality.
local cnn = require "cnn"
local image = cnn.image
local H = dofile("tests/lua/helpers.lua")
local E = dofile("tests/fixtures/photos/expected.lua")

local DIR = "tests/fixtures/photos/"

local function hex_bytes(hex)
  local out = {}
  for i = 1, #hex, 2 do out[#out + 1] = tonumber(hex:sub(i, i + 1), 16) end
  return out
end

-- Asserts round(t * 255) equals the expected bytes exactly (t holds byte / 255 as float32).
local function assert_bytes(t, want, what)
  assert.are.same(want.shape, t:shape(), what .. ": shape")
  local bytes = hex_bytes(want.hex)
  local got = H.values(t)
  assert.are.equal(#bytes, #got)
  local bad, first = 0, nil
  for i = 1, #bytes do
    got[i] = math.floor(got[i] * 255 + 0.5)
    if got[i] ~= bytes[i] then
      bad = bad + 1
      first = first or string.format("element %d is %d, PIL has %d", i, got[i], bytes[i])
    end
  end
  assert(bad == 0, string.format("%s: %d of %d bytes differ from PIL's (%s)", what, bad, #bytes, first))
end

describe("image.load of JPEG files", function()
  local names = {}
  for name in pairs(E.decode) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    for _, mode in ipairs({"auto", "gray", "rgb"}) do
      if E.decode[name][mode] then
        it(string.format("decodes %s in mode %s to PIL's pixels", name, mode), function()
          local t = image.load(DIR .. name, {mode = mode})
          assert.are.equal("float32", t:dtype())
          assert_bytes(t, E.decode[name][mode], name)
        end)
      end
    end
  end

  it("gives values byte / 255 exactly, as torchvision's to_tensor does", function()
    local t = image.load(DIR .. "gray.jpg")
    local v = H.values(t)
    for i = 1, #v do
      local b = math.floor(v[i] * 255 + 0.5)
      assert.are.equal(cnn.tensor(b):float():div(255):item(), v[i])
    end
  end)

  it("rgba adds an opaque alpha to a JPEG", function()
    local t = image.load(DIR .. "rgb_444.jpg", {mode = "rgba"})
    assert.are.same({4, 19, 33}, t:shape())
    assert.are.equal(1, t[4]:min():item())
    assert.is_true(cnn.allclose(t:narrow(1, 1, 3), image.load(DIR .. "rgb_444.jpg")))
  end)

  it("applies the EXIF orientation unless exif = false", function()
    local upright = image.load(DIR .. "exif_1.jpg")
    assert.are.same({3, 7, 11}, upright:shape())
    for n = 2, 8 do
      local t = image.load(DIR .. "exif_" .. n .. ".jpg")
      assert.are.same(n >= 5 and {3, 11, 7} or {3, 7, 11}, t:shape())
      local raw = image.load(DIR .. "exif_" .. n .. ".jpg", {exif = false})
      assert.are.same({3, 7, 11}, raw:shape())
      assert.is_true(cnn.allclose(raw, upright, 0, 0), "the stored pixels are the same in every file")
    end
    assert.are.same({3, 11, 7}, image.load(DIR .. "exif_6.png"):shape())
    assert.are.same({3, 7, 11}, image.load(DIR .. "exif_6.png", {exif = false}):shape())
    H.assert_error(function() image.load(DIR .. "exif_6.png", {exif = 1}) end, "image.load:", "exif must be a boolean")
  end)

  it("tells PNG from JPEG by the bytes, whatever the extension", function()
    local d = H.tmpdir()
    H.write_bytes(d .. "/photo.png", H.read_bytes(DIR .. "rgb_420.jpg"))
    H.write_bytes(d .. "/picture.jpg", H.read_bytes("tests/fixtures/io/png/rgb8.png"))
    H.write_bytes(d .. "/noext", H.read_bytes(DIR .. "gray.jpg"))
    assert.is_true(cnn.allclose(image.load(d .. "/photo.png"), image.load(DIR .. "rgb_420.jpg"), 0, 0))
    assert.is_true(cnn.allclose(image.load(d .. "/picture.jpg"), image.load("tests/fixtures/io/png/rgb8.png"), 0, 0))
    assert.are.same({1, 21, 27}, image.load(d .. "/noext"):shape())
    H.write_bytes(d .. "/text.jpg", "hello, not an image")
    H.assert_error(function() image.load(d .. "/text.jpg") end, "image.load:", "text.jpg", "not a PNG or JPEG file")
    H.write_bytes(d .. "/empty.jpg", "")
    H.assert_error(function() image.load(d .. "/empty.jpg") end, "image.load:", "empty.jpg", "not a PNG or JPEG")
    H.rmdir(d)
  end)

  it("reports truncated files with the path, at every cut", function()
    local d = H.tmpdir()
    for _, name in ipairs({"rgb_420.jpg", "progressive.jpg", "arithmetic.jpg", "cmyk.jpg"}) do
      local bytes = H.read_bytes(DIR .. name)
      for cut = 2, #bytes - 3, 7 do
        H.write_bytes(d .. "/cut.jpg", bytes:sub(1, cut))
        H.assert_error(function() image.load(d .. "/cut.jpg") end, "image.load:", "cut.jpg",
          {"truncated", "invalid JPEG", "not a PNG or JPEG"})
      end
    end
    -- cut just before the EOI marker: libjpeg's Huffman decoder reads ahead into the missing
    -- bytes, so PIL reports "image file is truncated" for this file too
    local bytes = H.read_bytes(DIR .. "rgb_420.jpg")
    H.write_bytes(d .. "/noeoi.jpg", bytes:sub(1, #bytes - 2))
    H.assert_error(function() image.load(d .. "/noeoi.jpg") end, "image.load:", "noeoi.jpg", "truncated")
    -- bytes after the EOI marker are ignored
    H.write_bytes(d .. "/tail.jpg", bytes .. "trailing bytes")
    assert.is_true(cnn.allclose(image.load(d .. "/tail.jpg"), image.load(DIR .. "rgb_420.jpg"), 0, 0))
    H.rmdir(d)
    H.assert_usable()
  end)

  it("survives corrupt bytes: an error naming the path or an image, never a crash", function()
    local d = H.tmpdir()
    local bytes = H.read_bytes(DIR .. "progressive.jpg")
    local errors, images = 0, 0
    local state = 12345
    for _ = 1, 200 do
      state = (state * 1103515245 + 12345) % 2147483648
      local at = 3 + state % (#bytes - 2)
      local v = (state // 65536) % 256
      H.write_bytes(d .. "/bad.jpg", bytes:sub(1, at - 1) .. string.char(v) .. bytes:sub(at + 1))
      local ok, res = pcall(image.load, d .. "/bad.jpg")
      if ok then
        images = images + 1
        assert.are.equal(3, res:dim())
      else
        errors = errors + 1
        assert.is_truthy(tostring(res):find("bad.jpg", 1, true), res)
      end
    end
    assert.is_true(errors > 0 and images > 0)
    -- a wrong component count in the frame header
    local sof = bytes:find("\255\194", 1, true) -- SOF2
    local ncomp = sof + 9
    H.write_bytes(d .. "/two.jpg", bytes:sub(1, ncomp - 1) .. "\2" .. bytes:sub(ncomp + 1))
    H.assert_error(function() image.load(d .. "/two.jpg") end, "image.load:", "two.jpg", "invalid JPEG")
    H.rmdir(d)
    H.assert_usable()
  end)

  it("refuses images over image.max_pixels before decoding them, PNG too", function()
    local old = image.max_pixels(500)
    assert.are.equal(178956970, old)
    local ok, err = pcall(image.load, DIR .. "rgb_420.jpg") -- 27 x 21 = 567 pixels
    local ok_png, err_png = pcall(image.load, "tests/fixtures/io/png/rgb8.png") -- 35 pixels
    image.max_pixels(30)
    local ok_small, err_small = pcall(image.load, "tests/fixtures/io/png/rgb8.png")
    image.max_pixels(old)
    assert.is_false(ok)
    assert.is_truthy(err:find("image.load: " .. DIR .. "rgb_420.jpg", 1, true), err)
    assert.is_truthy(err:find("567 pixels", 1, true), err)
    assert.is_true(ok_png, err_png)
    assert.is_false(ok_small)
    assert.is_truthy(err_small:find("rgb8.png", 1, true) and err_small:find("limit", 1, true), err_small)
    assert.are.same({3, 21, 27}, image.load(DIR .. "rgb_420.jpg"):shape())
    H.assert_error(function() image.max_pixels(0) end, "image.max_pixels:", "positive")
    H.assert_error(function() image.max_pixels(1.5) end, "image.max_pixels:", "integer")
  end)
end)

describe("image.save of JPEG files", function()
  it("writes .jpg and .jpeg files that load back close to the original", function()
    local d = H.tmpdir()
    local x = image.load(DIR .. "rgb_444.jpg")
    for _, q in ipairs({50, 95}) do
      image.save(d .. "/out.jpg", x, {quality = q})
      local y = image.load(d .. "/out.jpg")
      assert.are.same(x:shape(), y:shape())
      local err = (y - x):abs():mean():item()
      assert.is_true(err < (q == 95 and 0.02 or 0.05), string.format("quality %d: mean error %g", q, err))
    end
    image.save(d .. "/small.JPEG", x, {quality = 10})
    image.save(d .. "/big.jpg", x, {quality = 100})
    assert.is_true(#H.read_bytes(d .. "/small.JPEG") < #H.read_bytes(d .. "/big.jpg"))
    assert.are.equal("\255\216\255", H.read_bytes(d .. "/small.JPEG"):sub(1, 3))
    local g = image.load(DIR .. "gray.jpg")
    image.save(d .. "/g.jpg", g[1])
    assert.are.same({1, 21, 27}, image.load(d .. "/g.jpg"):shape())
    image.save(d .. "/g.png", g) -- other extensions stay PNG
    assert.are.equal("\137PNG", H.read_bytes(d .. "/g.png"):sub(1, 4))
    H.rmdir(d)
  end)

  it("rejects what JPEG cannot hold and bad options, naming the problem", function()
    local d = H.tmpdir()
    local x = cnn.rand(4, 5, 6)
    H.assert_error(function() image.save(d .. "/a.jpg", x) end, "image.save:", "a.jpg", "no alpha")
    H.assert_error(function() image.save(d .. "/a.jpg", cnn.rand(2, 5, 6)) end, "image.save:", "1 %(grey%) or 3")
    local rgb = x:narrow(1, 1, 3)
    for _, q in ipairs({0, 101, 9.5}) do
      H.assert_error(function() image.save(d .. "/a.jpg", rgb, {quality = q}) end, "image.save:", "quality")
    end
    H.assert_error(function() image.save(d .. "/a.jpg", x, {qualty = 9}) end, "image.save:", "unknown option 'qualty'")
    H.assert_error(function() image.save(d .. "/no/such/dir/a.jpg", x:narrow(1, 1, 3)) end, "image.save:", "a.jpg")
    H.assert_error(function() image.save(d .. "/a.jpg", cnn.zeros(3, 0, 4)) end, "image.save:", "between 1x1")
    image.save(d .. "/a.jpg", x:narrow(1, 1, 3))
    assert.are.same({3, 5, 6}, image.load(d .. "/a.jpg"):shape())
    H.rmdir(d)
  end)
end)
