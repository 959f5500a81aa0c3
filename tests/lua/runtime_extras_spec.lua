-- The runtime helpers beyond API.md that training scripts rely on: generator state for resumable
-- runs, terminal detection, tensor-memory statistics, exact int64 element access.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

describe("generator state", function()
  it("restoring a saved state replays the same numbers", function()
    cnn.manual_seed(7)
    local state = cnn.get_rng_state()
    local a, b = cnn.rand(5), cnn.randn(3)
    cnn.set_rng_state(state)
    assert.is_true(cnn.allclose(a, cnn.rand(5), 0, 0))
    assert.is_true(cnn.allclose(b, cnn.randn(3), 0, 0))
  end)

  it("the state is four int64 words that survive a round trip exactly", function()
    cnn.manual_seed(123)
    local s = cnn.get_rng_state()
    assert.are.same({4}, s:shape())
    assert.are.equal("int64", s:dtype())
    local copy = s:clone()
    cnn.rand(10)
    cnn.set_rng_state(copy)
    for i = 1, 4 do assert.are.equal(s[i], cnn.get_rng_state()[i]) end
  end)

  it("rejects a malformed or all-zero state and keeps working", function()
    H.assert_error(function() cnn.set_rng_state(cnn.zeros(4)) end, "set_rng_state")
    H.assert_error(function() cnn.set_rng_state(cnn.zeros(4, {dtype = "int64"})) end, "set_rng_state.*zero")
    H.assert_usable()
  end)
end)

describe("isatty", function()
  it("reports a pipe or file as not a terminal", function()
    local f = assert(io.tmpfile())
    assert.is_false(cnn.isatty(f))
    f:close()
  end)

  it("rejects a non-file", function()
    H.assert_error(function() cnn.isatty(42) end, "isatty")
  end)
end)

describe("memory_stats", function()
  it("counts the bytes of live tensor storage", function()
    collectgarbage()
    local before = cnn.memory_stats().live_bytes
    -- 256 * 256 * 4 bytes, dropped below so the collector frees them
    local t = cnn.zeros(256, 256) -- luacheck: ignore 231
    assert.are.equal(before + 262144, cnn.memory_stats().live_bytes)
    t = nil
    collectgarbage()
    assert.are.equal(before, cnn.memory_stats().live_bytes)
  end)
end)

describe("int64 elements", function()
  it("read back exactly beyond 2^53", function()
    local big = math.maxinteger - 6 -- not representable as a double
    local t = cnn.tensor({big, -big}, {dtype = "int64"})
    assert.are.equal(big, t[1])
    assert.are.equal(-big, t[2])
    assert.are.equal(big, t:narrow(1, 1, 1):item())
    assert.are.same({big, -big}, t:totable())
  end)
end)
