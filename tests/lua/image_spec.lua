-- cnn.image: every PNG colour type and bit depth (fixtures written by an independent encoder in
-- scripts/tools/gen_io_fixtures.py and cross-checked with PIL there) in every load mode, save/load
-- round trips, the errors for bad files and bad tensors, and grid against torchvision's make_grid.
local cnn = require "cnn"
local image = cnn.image or require "cnn.image"
local H = dofile("tests/lua/helpers.lua")
local tmpdir, write_bytes, read_bytes = H.tmpdir, H.write_bytes, H.read_bytes
local E = dofile("tests/fixtures/io/expected.lua")

local PNG = "tests/fixtures/io/png/"

describe("image.load", function()
  local names = {}
  for name in pairs(E.png) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    for _, mode in ipairs({"auto", "gray", "rgb", "rgba"}) do
      it(string.format("decodes %s.png in mode %s", name, mode), function()
        local t = image.load(PNG .. name .. ".png", {mode = mode})
        assert.are.equal("float32", t:dtype())
        H.assert_tensor(t, E.png[name][mode], {atol = 1e-6})
      end)
    end
  end

  it("defaults to mode auto: grey stays 1 channel, colour becomes 3, alpha is dropped", function()
    assert.are.same({1, 5, 7}, image.load(PNG .. "gray_alpha8.png"):shape())
    assert.are.same({3, 5, 7}, image.load(PNG .. "rgba8.png"):shape())
    assert.are.same({3, 5, 7}, image.load(PNG .. "palette4_trns.png"):shape())
  end)

  it("keeps 16-bit precision: samples are v / 65535", function()
    local t = image.load(PNG .. "gray16.png")
    local want = E.png.gray16.auto.data
    -- a 16-bit value not representable in 8 bits survives: compare against the exact fractions
    local flat = t:reshape(t:numel())
    local fine = 0
    for i = 1, #want do
      assert.is_true(math.abs(flat[i] - want[i]) < 1e-6)
      if math.abs(want[i] * 255 - math.floor(want[i] * 255 + 0.5)) > 1e-3 then fine = fine + 1 end
    end
    assert.is_true(fine > 0)
  end)

  it("reads a PNG whose image is whole but whose end is missing, cut or corrupt, as PIL does", function()
    local d = tmpdir()
    local bytes = read_bytes(PNG .. "rgb8.png")
    assert.are.equal("IEND", bytes:sub(-8, -5)) -- the fixture ends with its 12-byte IEND chunk
    write_bytes(d .. "/open.png", bytes:sub(1, -13))
    for _, mode in ipairs({"auto", "gray", "rgba"}) do
      H.assert_tensor(image.load(d .. "/open.png", {mode = mode}), E.png.rgb8[mode], {atol = 1e-6})
    end
    -- a bad CRC on IEND, and garbage after it (both PIL loads; the empty 'invalid PNG ()' before)
    write_bytes(d .. "/crc_end.png", bytes:sub(1, -5) .. "\0\0\0\0")
    H.assert_tensor(image.load(d .. "/crc_end.png"), E.png.rgb8.auto, {atol = 1e-6})
    write_bytes(d .. "/tail.png", bytes .. "trailing bytes")
    H.assert_tensor(image.load(d .. "/tail.png"), E.png.rgb8.auto, {atol = 1e-6})
    for cut = 1, 12 do -- the end chunk cut anywhere, its CRC too (1 to 4 bytes short were refused)
      write_bytes(d .. "/cut.png", bytes:sub(1, -1 - cut))
      H.assert_tensor(image.load(d .. "/cut.png"), E.png.rgb8.auto, {atol = 1e-6})
    end
    -- an eXIf chunk after the image data still turns the picture when IEND is missing (PIL's way)
    local photo, chunks, at = read_bytes("tests/fixtures/photos/exif_6.png"), {}, 9
    while at <= #photo do
      local n = string.unpack(">I4", photo, at)
      chunks[photo:sub(at + 4, at + 7)] = photo:sub(at, at + 11 + n)
      at = at + 12 + n
    end
    -- a chunk after the image data cut short (a copied file's end lost) or claiming 2 GiB: the
    -- image is whole (the walk of chunk lengths refused these before libpng read the image)
    local text = "Comment\0" .. string.rep("x", 200)
    text = string.pack(">I4", #text) .. "tEXt" .. text .. "\0\0\0\0"
    local body = bytes:sub(1, -13)
    for _, tail in ipairs({text:sub(1, 40), text:sub(1, #text - 5), string.pack(">I4", 0x7fffffff) .. "tEXtabc"}) do
      write_bytes(d .. "/cut_text.png", body .. tail)
      H.assert_tensor(image.load(d .. "/cut_text.png"), E.png.rgb8.auto, {atol = 1e-6})
    end
    write_bytes(d .. "/late.png", photo:sub(1, 8) .. chunks.IHDR .. chunks.IDAT .. chunks.eXIf)
    assert.are.same({3, 11, 7}, image.load(d .. "/late.png"):shape()) -- exif_6: 7x11 turned
    assert.is_true(cnn.allclose(image.load(d .. "/late.png"), image.load("tests/fixtures/photos/exif_6.png"), 0, 0))
    H.rmdir(d)
  end)

  it("reports a missing file, a non-PNG and a truncated PNG with the function and the path", function()
    local d = tmpdir()
    H.assert_error(function() image.load(d .. "/nope.png") end, "image.load:", "nope.png", "cannot open")
    write_bytes(d .. "/text.png", "hello, not a png")
    H.assert_error(function() image.load(d .. "/text.png") end, "image.load:", "text.png", "not a PNG or JPEG file")
    local bytes = read_bytes(PNG .. "rgb8.png")
    for _, cut in ipairs({8, 20, 33, 60, #bytes - 13, #bytes - 16}) do -- (a cut in IEND: read, below)
      write_bytes(d .. "/cut.png", bytes:sub(1, cut))
      H.assert_error(function() image.load(d .. "/cut.png") end, "image.load:", "cut.png", {"truncated", "invalid PNG"})
    end
    -- a flipped byte in the image data breaks its CRC
    local i = bytes:find("IDAT", 1, true) + 6
    write_bytes(d .. "/crc.png", bytes:sub(1, i - 1) .. string.char(bytes:byte(i) ~ 0x40) .. bytes:sub(i + 1))
    H.assert_error(function() image.load(d .. "/crc.png") end, "image.load:", "crc.png", "CRC")
    -- before the image data, a chunk claiming more than the file holds is still refused, as is a
    -- second IDAT cut short (the image itself is incomplete)
    local idat = bytes:find("IDAT", 1, true) - 4
    write_bytes(d .. "/long.png", bytes:sub(1, idat - 1) .. string.pack(">I4", 1000) .. "tEXtabc")
    H.assert_error(function() image.load(d .. "/long.png") end, "image.load:", "long.png", "claims 1000 bytes")
    local iend = #bytes - 11
    write_bytes(d .. "/idat2.png", bytes:sub(1, iend - 1) .. string.pack(">I4", 1000) .. "IDATabc")
    H.assert_error(function() image.load(d .. "/idat2.png") end, "image.load:", "idat2.png", "claims 1000 bytes")
    H.assert_error(function() image.load(PNG .. "rgb8.png", {mode = "cmyk"}) end, "image.load:", "unknown mode 'cmyk'")
    H.assert_error(function() image.load(PNG .. "rgb8.png", {moed = "rgb"}) end, "image.load:", "unknown option 'moed'")
    H.assert_error(function() image.load(42) end, "image.load:", "expected a path")
    H.rmdir(d)
    H.assert_usable()
  end)
end)

describe("image.save", function()
  local d
  before_each(function() d = tmpdir() end)
  after_each(function() H.rmdir(d) end)

  -- values k/255 survive 8 bits exactly
  local function ramp(...)
    local n, v = cnn.zeros(...):numel(), {}
    for i = 1, n do v[i] = ((i - 1) * 7 % 256) / 255 end
    return cnn.tensor(v):reshape(...)
  end

  it("round trips grey (H, W), (1, H, W), grey+alpha, RGB and RGBA images", function()
    for _, case in ipairs({{{4, 5}, {1, 4, 5}, "auto"}, {{1, 4, 5}, {1, 4, 5}, "auto"},
                           {{3, 4, 5}, {3, 4, 5}, "auto"}, {{4, 3, 2}, {4, 3, 2}, "rgba"}}) do
      local x = ramp(table.unpack(case[1]))
      image.save(d .. "/x.png", x)
      local y = image.load(d .. "/x.png", {mode = case[3]})
      assert.are.same(case[2], y:shape())
      assert.is_true(cnn.allclose(y, x:reshape(table.unpack(case[2])), 0, 1e-7))
    end
    local ga = ramp(2, 3, 3)
    image.save(d .. "/ga.png", ga)
    local y = image.load(d .. "/ga.png", {mode = "rgba"})
    assert.is_true(cnn.allclose(y:select(1, 1), ga:select(1, 1), 0, 1e-7))
    assert.is_true(cnn.allclose(y:select(1, 4), ga:select(1, 2), 0, 1e-7))
  end)

  it("clamps to [0, 1] and rounds v * 255 + 0.5 down, as torchvision's save_image", function()
    local x = cnn.tensor({{-1, 0.2, 2}, {0.5, 0.003, 0.998}})
    image.save(d .. "/c.png", x)
    -- 0.2*255+0.5 = 51.5 -> 51; 0.5*255+0.5 = 128; 0.765+0.5 -> 1; 0.998*255+0.5 = 254.99 -> 254
    H.assert_tensor(image.load(d .. "/c.png"), {{{0, 51 / 255, 1}, {128 / 255, 1 / 255, 254 / 255}}}, {atol = 1e-7})
  end)

  it("writes a non-contiguous tensor in logical order", function()
    local x = ramp(3, 4):t()
    image.save(d .. "/t.png", x)
    H.assert_tensor(image.load(d .. "/t.png")[1], x:totable(), {atol = 1e-7})
  end)

  it("rejects bad tensors and paths by name, and leaves no file behind", function()
    H.assert_error(function() image.save(d .. "/a.png", cnn.zeros(5, 2, 2)) end, "image.save:", "5")
    H.assert_error(function() image.save(d .. "/a.png", cnn.zeros(2)) end, "image.save:", "dimensions")
    H.assert_error(function() image.save(d .. "/a.png", cnn.zeros(2, 2):long()) end, "image.save:", "float32")
    H.assert_error(function() image.save(d .. "/a.png", cnn.zeros(3, 0, 2)) end, "image.save:", "1x1")
    H.assert_error(function() image.save(d .. "/a.png", "x") end, "image.save:", "tensor")
    H.assert_error(function() image.save(d .. "/no/such/dir/a.png", cnn.zeros(2, 2)) end, "image.save:",
      "cannot create")
    local p = io.popen("ls -A '" .. d .. "'")
    assert.are.equal("", p:read("a"))
    p:close()
    H.assert_usable()
  end)
end)

describe("image.grid", function()
  local names = {}
  for name in pairs(E.grid) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    it("matches torchvision's make_grid: " .. name, function()
      local c = E.grid[name]
      local x = cnn.tensor(c.input.data):reshape(c.input.shape)
      local opts = {}
      for k, v in pairs(c.opts) do
        if k == "normalize" or k == "scale_each" then opts[k] = v == 1 else opts[k] = v end
      end
      local g = image.grid(x, opts)
      H.assert_tensor(g, {shape = c.shape, data = c.data}, {atol = 1e-6})
    end)
  end

  it("lays images out row by row with padding (worked by hand)", function()
    -- three 1x1x1 images 1, 2, 3, nrow=2, padding=1: a 1 x 5 x 5 canvas
    local g = image.grid(cnn.tensor({1, 2, 3}):reshape(3, 1, 1, 1), {nrow = 2, padding = 1, pad_value = 9})
    H.assert_tensor(g, {{{9, 9, 9, 9, 9},
                         {9, 1, 9, 2, 9},
                         {9, 9, 9, 9, 9},
                         {9, 3, 9, 9, 9},
                         {9, 9, 9, 9, 9}}})
  end)

  it("returns a single image as it is, and accepts (H, W) and (C, H, W)", function()
    local x = cnn.rand(1, 3, 2, 2)
    H.assert_tensor(image.grid(x), x[1]:totable())
    assert.are.same({1, 2, 3}, image.grid(cnn.zeros(2, 3)):shape())
    assert.are.same({3, 2, 3}, image.grid(cnn.zeros(3, 2, 3)):shape())
  end)

  it("rejects bad arguments by name", function()
    H.assert_error(function() image.grid(cnn.zeros(2)) end, "image.grid:", "dimensions")
    H.assert_error(function() image.grid(cnn.zeros(2, 1, 2, 2), {nrow = 0}) end, "image.grid:", "nrow")
    H.assert_error(function() image.grid(cnn.zeros(2, 1, 2, 2), {padd = 1}) end, "image.grid:", "unknown option 'padd'")
    H.assert_error(function() image.grid({}) end, "image.grid:", "tensor")
    H.assert_usable()
  end)
end)

describe("image.grid of no images", function()
  it("is an error naming image.grid, not a division by zero", function()
    H.assert_error(function() return image.grid(cnn.ones(0, 1, 2, 2)) end, "image.grid: no images to tile")
    assert.are.same({ 1, 2, 2 }, image.grid(cnn.ones(1, 1, 2, 2)):shape())
  end)
end)

describe("image.grid too large to allocate", function()
  it("names image.grid, not the cnn.full it calls", function()
    -- 2 images of 4x4 with padding 100000: 3 x 200010 x 300012 floats, past the machine's memory
    H.assert_error(function() return image.grid(cnn.rand(2, 3, 4, 4), { padding = 100000 }) end,
      "^image%.grid: cannot allocate")
    assert.are.same({ 3, 8, 14 }, image.grid(cnn.rand(2, 3, 4, 4)):shape())
  end)
end)
