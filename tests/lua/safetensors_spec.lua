-- cnn.save / cnn.load (safetensors): a file laid out as huggingface's writer lays it out, with
-- every dtype the format names (F16/BF16 bit patterns from PyTorch), round trips of every kind
-- of tensor, the exact bytes cnn.save writes, one clear error per corrupt-file case, and
-- cnn.checkpoint's exact round trip (it is safetensors underneath).
local cnn = require "cnn"
local S = require "cnn.serialize"
local save, load = cnn.save or S.save, cnn.load or S.load
local H = dofile("tests/lua/helpers.lua")
local tmpdir, write_bytes, read_bytes = H.tmpdir, H.write_bytes, H.read_bytes
local E = dofile("tests/fixtures/io/expected.lua").safetensors

-- A safetensors file from a header text and data bytes.
local function st_bytes(header, body)
  return string.pack("<I8", #header) .. header .. (body or "")
end

-- Exact comparison that also accepts equal infinities and signed zeros.
local function same_values(t, want)
  local got = H.values(t)
  assert.are.equal(#want, #got)
  for i = 1, #want do
    if got[i] ~= want[i] then
      assert(false, string.format("element %d is %.17g but expected %.17g", i, got[i], want[i]))
    end
  end
end

describe("cnn.load", function()
  it("reads every dtype of a file written the way huggingface's safetensors writes it", function()
    local t, meta = load("tests/fixtures/io/st/dtypes.safetensors")
    local n = 0
    for name, e in pairs(E.tensors) do
      n = n + 1
      local x = t[name]
      assert(x, "missing tensor " .. name)
      assert.are.same(e.shape, x:shape(), name)
      assert.are.equal(e.dtype, x:dtype(), name)
      same_values(x, e.data)
    end
    local m = 0
    for _ in pairs(t) do m = m + 1 end
    assert.are.equal(n, m)
    assert.are.same(E.metadata, meta)
  end)

  it("returns an empty metadata table when the file has none, and reads a file of no tensors", function()
    local t, meta = load("tests/fixtures/io/st/no_metadata.safetensors")
    H.assert_tensor(t.w, {1.5, -1.5})
    assert.are.same({}, meta)
    t, meta = load("tests/fixtures/io/st/empty.safetensors")
    assert.are.same({}, t)
    assert.are.same({}, meta)
  end)
end)

describe("cnn.save", function()
  local d
  before_each(function() d = tmpdir() end)
  after_each(function() H.rmdir(d) end)

  it("round trips float32 and int64 tensors of any shape, strides and values", function()
    local w = cnn.randn(3, 4)
    local tbl = {
      ["features.0.weight"] = w,
      ["features.0.bias"] = cnn.randn(4):requires_grad_(),
      transposed = w:t(), -- strided: written in logical order
      narrowed = cnn.arange(10):narrow(1, 3, 4),
      labels = cnn.tensor({-9007199254740993, 0, 9007199254740993}, {dtype = "int64"}),
      scalar = cnn.tensor(3.25),
      empty = cnn.zeros(0, 5),
      big = cnn.rand(70000),
    }
    save(d .. "/m.safetensors", tbl)
    local back, meta = load(d .. "/m.safetensors")
    assert.are.same({}, meta)
    for k, v in pairs(tbl) do
      local b = back[k]
      assert(b, "missing " .. k)
      assert.are.same(v:shape(), b:shape(), k)
      assert.are.equal(v:dtype(), b:dtype(), k)
      same_values(b, H.values(v))
      assert.is_false(b.requires_grad)
    end
    assert.are.equal(-9007199254740993, back.labels[1]) -- beyond 2^53: int64 kept exactly
  end)

  it("writes the format byte for byte: sorted keys after __metadata__, space padding, data in key order", function()
    save(d .. "/s.safetensors", {b = cnn.tensor({1, 2}), a = cnn.tensor({7}, {dtype = "int64"})},
      {metadata = {step = 12, name = "run \"x\"\n"}})
    local bytes = read_bytes(d .. "/s.safetensors")
    local header = '{"__metadata__":{"name":"run \\"x\\"\\n","step":"12"},' ..
      '"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' ..
      '"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}'
    local padded = header .. string.rep(" ", (8 - #header % 8) % 8)
    local want = string.pack("<I8", #padded) .. padded .. string.pack("<i8<f<f", 7, 1, 2)
    assert.are.equal(want, bytes)
    local _, meta = load(d .. "/s.safetensors")
    assert.are.same({name = "run \"x\"\n", step = "12"}, meta)
  end)

  it("replaces a file atomically and leaves no temporary file behind", function()
    local p = d .. "/r.safetensors"
    save(p, {x = cnn.ones(2)})
    save(p, {x = cnn.zeros(3)})
    H.assert_tensor(load(p).x, {0, 0, 0})
    H.assert_error(function() save(p, {x = "not a tensor"}) end, "save:", "'x'", "not a tensor")
    H.assert_tensor(load(p).x, {0, 0, 0})
    local ls = io.popen("ls -A '" .. d .. "'")
    assert.are.equal("r.safetensors\n", ls:read("a"))
    ls:close()
  end)

  it("stores metadata numbers as text that reads back as the same number", function()
    local p = d .. "/m.safetensors"
    -- tostring kept 14 digits ("0.3", "1.1529215046068e+18") and the C library's "-nan"
    save(p, {x = cnn.ones(1)}, {metadata = {sum = 0.1 + 0.2, big = 2.0 ^ 60, int = 9007199254740993,
                                            one = 1.0, n = 0 / 0, inf = -1 / 0, tiny = 5e-324}})
    local _, m = load(p)
    assert.are.equal("0.30000000000000004", m.sum)
    assert.are.equal(0.1 + 0.2, tonumber(m.sum))
    assert.are.equal(2.0 ^ 60, tonumber(m.big))
    assert.are.equal("9007199254740993", m.int)
    assert.are.equal("1.0", m.one)
    assert.are.same({"nan", "-inf"}, {m.n, m.inf})
    assert.are.equal(5e-324, tonumber(m.tiny))
  end)

  it("rejects bad tables, metadata and paths by name", function()
    local p = d .. "/e.safetensors"
    H.assert_error(function() save(p, {cnn.ones(1)}) end, "save:", "names must be strings")
    H.assert_error(function() save(p, {w = 1}) end, "save:", "'w'", "not a tensor")
    H.assert_error(function() save(p, "x") end, "save:", "table")
    H.assert_error(function() save(p, {w = cnn.ones(1)}, {metadata = {k = {}}}) end, "save:", "metadata", "'k'")
    H.assert_error(function() save(p, {w = cnn.ones(1)}, {meta = {}}) end, "save:", "unknown option 'meta'")
    H.assert_error(function() save(p, {["__metadata__"] = cnn.ones(1)}) end, "save:", "__metadata__")
    H.assert_error(function() save(p, {["a\0b"] = cnn.ones(1)}) end, "save:", "NUL")
    H.assert_error(function() save(p, {["\xff"] = cnn.ones(1)}) end, "save:", "UTF%-8")
    H.assert_error(function() save(d .. "/missing/dir/x.safetensors", {w = cnn.ones(1)}) end, "save:", "cannot create")
    H.assert_usable()
  end)
end)

describe("cnn.load on corrupt files", function()
  local d
  setup(function() d = tmpdir() end)
  teardown(function() H.rmdir(d) end)

  local F32x2 = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'

  local cases = {
    {"an empty file", "", "too short for the 8%-byte header length"},
    {"a header length beyond 100 MB", string.pack("<I8", 100000001) .. "{}", "exceeds the 100000000%-byte limit"},
    {"a header length past the end", string.pack("<I8", 50) .. "{}", "runs past the end of the file"},
    {"a header that is not an object", st_bytes('["a"]'), "does not start with '{'"},
    {"invalid JSON", st_bytes('{"a":{"dtype":"F32",}}'), "invalid JSON at byte 20: string or '}' expected"},
    {"duplicate keys", st_bytes('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' ..
      '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', string.rep("\0", 8)), 'duplicate key "a"'},
    {"an unknown dtype", st_bytes('{"a":{"dtype":"Q8","shape":[2],"data_offsets":[0,2]}}', "\0\0"),
      "unsupported dtype 'Q8'"},
    {"a shape whose size does not match its offsets", st_bytes('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}',
      string.rep("\0", 8)), "needs 12 bytes but data_offsets %[0, 8%] hold 8"},
    {"offsets running past the end (a truncated file)", st_bytes(F32x2, "\0\0\0\0"), "run past the end of the data"},
    {"overlapping offsets", st_bytes('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' ..
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', string.rep("\0", 8)), "overlap"},
    {"a gap between tensors", st_bytes('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' ..
      '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', string.rep("\0", 12)), "belong to no tensor"},
    {"trailing bytes after the last tensor", st_bytes(F32x2, string.rep("\0", 12)),
     "last 4 data bytes belong to no tensor"},
    {"a negative size", st_bytes('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', string.rep("\0", 8)),
      "shape entry 1"},
    {"a fractional offset", st_bytes('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}', string.rep("\0", 8)),
      "data_offsets must be two non%-negative integers"},
    {"metadata that is not strings", st_bytes('{"__metadata__":{"epoch":3}}'), "not a string"},
    {"a tensor entry that is not an object", st_bytes('{"a":3}'), "not an object"},
    {"a missing dtype", st_bytes('{"a":{"shape":[0],"data_offsets":[0,0]}}'), "lacks a dtype"},
  }
  for i, c in ipairs(cases) do
    it("names the file and the problem for " .. c[1], function()
      local p = string.format("%s/bad%d.safetensors", d, i)
      write_bytes(p, c[2])
      H.assert_error(function() load(p) end, "load:", p:gsub("%p", "%%%0"), c[3])
      H.assert_usable()
    end)
  end

  it("fails cleanly on every truncation of a valid file", function()
    local p = d .. "/whole.safetensors"
    save(p, {w = cnn.randn(2, 3), b = cnn.arange(4)}, {metadata = {k = "v"}})
    local bytes = read_bytes(p)
    for cut = 0, #bytes - 1 do
      local q = d .. "/cut.safetensors"
      write_bytes(q, bytes:sub(1, cut))
      H.assert_error(function() load(q) end, "load:", "cut.safetensors")
    end
    H.assert_error(function() load(d .. "/nothing.safetensors") end, "load:", "nothing.safetensors", "cannot open")
    H.assert_error(function() load(d) end, "load:", "not a regular file")
    H.assert_usable()
  end)
end)

describe("save's names", function()
  it("a non-string name is an error naming the key's type", function()
    -- the key's type was read after luaL_tolstring pushed its text: "got a userdata key (1)"
    local d = tmpdir()
    local path = d .. "/x.safetensors"
    H.assert_error(function() cnn.save(path, { cnn.ones(1) }) end,
      "save: tensor names must be strings, got a number key %(1%)")
    H.assert_error(function() cnn.save(path, { [true] = cnn.ones(1) }) end, "got a boolean key %(true%)")
    cnn.save(path, { a = cnn.ones(1) })
    assert.are.same({ 1 }, cnn.load(path).a:totable())
    H.rmdir(d)
  end)
end)

describe("cnn.checkpoint", function()
  it("round trips a state exactly: colliding tensor paths, -0.0, inf, nan, integer keys", function()
    local path = os.tmpname()
    local state = {
      ["a.b"] = cnn.ones(2), a = {b = cnn.zeros(3)}, [1] = cnn.full({1}, 7.0), ["1"] = cnn.full({1}, 8.0),
      z = -0.0, w = 0.0, big = math.maxinteger, f = 0.1, inf = -math.huge, nan = 0 / 0, s = "x", yes = true,
      list = {10, 20, {30}},
    }
    cnn.checkpoint.save(path, state)
    local got = cnn.checkpoint.load(path)
    H.assert_tensor(got["a.b"], {1, 1}, {atol = 0})
    H.assert_tensor(got.a.b, {0, 0, 0}, {atol = 0})
    H.assert_tensor(got[1], {7}, {atol = 0})
    H.assert_tensor(got["1"], {8}, {atol = 0})
    assert.are.equal(-math.huge, 1 / got.z) -- -0.0 stays negative
    assert.are.equal(math.huge, 1 / got.w)
    assert.are.equal(math.maxinteger, got.big)
    assert.are.equal("integer", math.type(got.big))
    assert.are.equal(0.1, got.f)
    assert.are.equal(-math.huge, got.inf)
    assert.is_true(got.nan ~= got.nan)
    assert.are.same({"x", true, {10, 20, {30}}}, {got.s, got.yes, got.list})
    -- the second tensor on a taken dotted path gets a suffix; other tools see both
    local names = {}
    for k in pairs(cnn.load(path)) do names[#names + 1] = k end
    table.sort(names)
    assert.are.same({"1", "1#2", "a.b", "a.b#2"}, names)
    os.remove(path)
  end)

  it("round trips strings that are not UTF-8 text; refuses such a key by name", function()
    -- binary strings and Latin-1 file names: the JSON tree refused them ("metadata entry
    -- 'cnnlua.tree' is not valid UTF-8", naming neither the function nor the key)
    local path = os.tmpname()
    local state = {bin = "\0\255\1", latin = "caf\233", text = "h\195\169llo", nul = "\0"}
    cnn.checkpoint.save(path, state)
    assert.are.same(state, cnn.checkpoint.load(path))
    H.assert_error(function() cnn.checkpoint.save(path, {opts = {["a\255"] = 1}}) end,
      'checkpoint.save: key "a\\xff" at \'opts\' is not UTF%-8 text')
    os.remove(path)
  end)

  it("a state or metadata nested past the stack is an error naming checkpoint and the file", function()
    local path = os.tmpname()
    local deep = {}
    local c = deep
    for _ = 1, 100000 do
      c.a = {}
      c = c.a
    end
    H.assert_error(function() cnn.checkpoint.save(path, deep) end, "checkpoint.save: ", "stack overflow")
    -- the write's own errors too, at the caller's line (were "checkpoint.lua:138: save: ...")
    local file = os.tmpname() -- a file as the folder: "Not a directory"
    local msg = H.assert_error(function() cnn.checkpoint.save(file .. "/c.ckpt", {a = 1}) end,
      "^[^\n]*safetensors_spec.lua:%d+: checkpoint.save: [^\n]*/c.ckpt: cannot create")
    os.remove(file)
    assert.is_nil(msg:find("checkpoint.lua", 1, true), msg)
    local text = string.rep('{"pairs":[["a",', 100000) .. '{"int":"1"}' .. string.rep("]]}", 100000)
    cnn.save(path, {x = cnn.ones(1)}, {metadata = {["cnnlua.tree"] = text}})
    H.assert_error(function() return cnn.checkpoint.load(path) end, "checkpoint.load: " .. path:gsub("%p", "%%%0"),
      "bad state metadata")
    os.remove(path)
    H.assert_usable()
  end)
end)
