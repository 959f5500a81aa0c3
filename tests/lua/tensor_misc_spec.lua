-- The rest of API.md "Tensors": printing, totable/item, allclose, seeding, threads, joining,
-- matrix products, dtype conversion and 0-d tensors. Printed forms are PyTorch 1.13's str(t)
-- followed by cnnlua's shape line; products are checked against plain Lua loops.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

describe("tostring", function()
  it("prints values as PyTorch does, then dtype and shape", function()
    assert.are.equal("tensor([[1., 2.],\n        [3., 4.]])\n[float32 tensor of shape {2, 2}]",
      tostring(cnn.tensor({ { 1, 2 }, { 3, 4 } })))
  end)

  it("prints fractional values with four decimals and a shared width", function()
    assert.are.equal("tensor([ 0.5000, -1.2500])\n[float32 tensor of shape {2}]",
      tostring(cnn.tensor({ 0.5, -1.25 })))
  end)

  it("prints int64 values without a decimal point", function()
    assert.are.equal("tensor([1, 2, 3])\n[int64 tensor of shape {3}]",
      tostring(cnn.tensor({ 1, 2, 3 }, { dtype = "int64" })))
  end)

  it("prints a 0-d tensor with an empty shape", function()
    assert.are.equal("tensor(3.5000)\n[float32 tensor of shape {}]", tostring(cnn.tensor(3.5)))
  end)

  it("separates 3-d blocks with a blank line", function()
    assert.are.equal("tensor([[[0., 0.],\n         [0., 0.],\n         [0., 0.]],\n\n"
      .. "        [[0., 0.],\n         [0., 0.],\n         [0., 0.]]])\n[float32 tensor of shape {2, 3, 2}]",
      tostring(cnn.zeros(2, 3, 2)))
  end)

  it("elides the middle of a large 1-d tensor with ...", function()
    -- PyTorch: str(torch.arange(2000.))
    assert.are.equal("tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
      .. "        1.9990e+03])\n[float32 tensor of shape {2000}]", tostring(cnn.arange(0, 2000, 1):float()))
  end)

  it("elides rows and columns of a large matrix", function()
    -- PyTorch: str(torch.zeros(500, 400)), 3 + 3 rows of 3 + 3 columns
    local row = "[0., 0., 0.,  ..., 0., 0., 0.]"
    local pad = ",\n        "
    local want = "tensor([" .. row .. pad .. row .. pad .. row .. pad .. "..." .. pad .. row .. pad .. row
      .. pad .. row .. "])\n[float32 tensor of shape {500, 400}]"
    assert.are.equal(want, tostring(cnn.zeros(500, 400)))
  end)

  it("of a shape is its sizes, {2, 3}, and the shape stays a plain list", function()
    -- print(t:shape()) showed "table: 0x..."
    local x = cnn.zeros(2, 3)
    local s = x:shape()
    assert.are.equal("{2, 3}", tostring(s))
    assert.are.equal("{}", tostring(cnn.tensor(1):shape()))
    assert.are.equal("{0}", tostring(cnn.zeros(0):shape()))
    assert.are.equal("{1, 3}", tostring(x:t():stride()))
    assert.are.equal("table", type(s))
    assert.are.same({ 2, 3 }, s)
    assert.are.equal("2x3", table.concat(s, "x"))
    assert.are.equal(2, #s)
    s[3] = 4 -- the caller's own table
    assert.are.equal("{2, 3, 4}", tostring(s))
    assert.are.same({ 2, 3 }, x:shape())
    H.assert_tensor(cnn.zeros(s), { shape = { 2, 3, 4 }, data = H.flatten(cnn.zeros(2, 3, 4):totable()) })
  end)
end)

describe("totable and item", function()
  it("totable gives nested Lua tables", function()
    assert.are.same({ { 1, 2 }, { 3, 4 } }, cnn.tensor({ { 1, 2 }, { 3, 4 } }):totable())
    assert.are.same({ 0.5, -2 }, cnn.tensor({ 0.5, -2 }):totable())
  end)

  it("totable reads a non-contiguous view in logical order", function()
    assert.are.same({ { 1, 3 }, { 2, 4 } }, cnn.tensor({ { 1, 2 }, { 3, 4 } }):t():totable())
  end)

  it("totable of int64 gives Lua integers", function()
    local t = cnn.tensor({ 5, 6 }, { dtype = "int64" }):totable()
    assert.are.equal("integer", math.type(t[1]))
    assert.are.same({ 5, 6 }, t)
  end)

  it("item reads the one element of a 0-d or one-element tensor", function()
    assert.are.equal(2.5, cnn.tensor(2.5):item())
    assert.are.equal(-4, cnn.tensor({ { -4 } }):item())
    assert.are.equal(9, cnn.tensor({ 9 }, { dtype = "int64" }):item())
  end)
end)

describe("allclose", function()
  local a = cnn.tensor({ 1, 2, 100 })

  it("is true within rtol * |b| + atol", function()
    -- |100 - 100.01| = 0.01 <= 2e-4 * 100.01
    assert.is_true(cnn.allclose(a, cnn.tensor({ 1, 2, 100.01 }), 2e-4, 0))
    assert.is_true(cnn.allclose(a, cnn.tensor({ 1.05, 2, 100 }), 0, 0.1))
  end)

  it("is false outside the tolerance", function()
    assert.is_false(cnn.allclose(a, cnn.tensor({ 1, 2, 100.01 }), 1e-6, 0))
    assert.is_false(cnn.allclose(a, cnn.tensor({ 1.5, 2, 100 }), 0, 0.1))
  end)

  it("uses PyTorch's defaults (rtol 1e-5, atol 1e-8) when omitted", function()
    assert.is_true(cnn.allclose(a, a + 0))
    assert.is_false(cnn.allclose(a, a + 0.01))
  end)

  it("broadcasts its operands", function()
    assert.is_true(cnn.allclose(cnn.ones(2, 3), cnn.tensor(1)))
  end)
end)

describe("manual_seed", function()
  it("repeats rand, randn and randint for the same seed", function()
    cnn.manual_seed(1234)
    local a, b, c = cnn.rand(50):totable(), cnn.randn(50):totable(), cnn.randint(1, 100, { 50 }):totable()
    cnn.manual_seed(1234)
    assert.are.same(a, cnn.rand(50):totable())
    assert.are.same(b, cnn.randn(50):totable())
    assert.are.same(c, cnn.randint(1, 100, { 50 }):totable())
  end)

  it("repeats in-place uniform_ and normal_", function()
    cnn.manual_seed(99)
    local a = cnn.empty(20):uniform_(0, 1):totable()
    local b = cnn.empty(20):normal_(0, 1):totable()
    cnn.manual_seed(99)
    assert.are.same(a, cnn.empty(20):uniform_(0, 1):totable())
    assert.are.same(b, cnn.empty(20):normal_(0, 1):totable())
  end)

  it("gives different numbers for different seeds", function()
    cnn.manual_seed(1)
    local a = cnn.randn(20)
    cnn.manual_seed(2)
    assert.is_false(cnn.allclose(a, cnn.randn(20)))
  end)

  it("repeats large parallel fills for the same seed", function()
    cnn.manual_seed(5)
    local a = cnn.randn(300000)
    cnn.manual_seed(5)
    assert.is_true(cnn.allclose(a, cnn.randn(300000), 0, 0))
  end)
end)

describe("threads", function()
  it("set_num_threads is read back by get_num_threads", function()
    local before = cnn.get_num_threads()
    assert.is_true(before >= 1)
    cnn.set_num_threads(1)
    assert.are.equal(1, cnn.get_num_threads())
    cnn.set_num_threads(2)
    assert.are.equal(2, cnn.get_num_threads())
    cnn.set_num_threads(before)
  end)

  it("set_num_threads rejects counts outside 1..1024 and keeps the count", function()
    local before = cnn.get_num_threads()
    for _, n in ipairs({ 0, -1, 1025 }) do
      local ok, err = pcall(cnn.set_num_threads, n)
      assert.is_false(ok)
      assert.are.equal("set_num_threads: expected 1..1024 threads, got " .. n, err)
      assert.are.equal(before, cnn.get_num_threads())
    end
    cnn.set_num_threads(before)
  end)

  -- 1024 thread stacks do not fit in 600 MB of address space: an error, not the end of the process
  it("set_num_threads raises when threads cannot be started, and the runtime goes on", function()
    local cnnlua = os.getenv("CNNLUA")
    local function run(code)
      local p = io.popen("ulimit -v 600000 && '" .. cnnlua .. "' -e '" .. code .. "' 2>&1")
      local out = p:read("a")
      p:close()
      return out
    end
    if not cnnlua or not run("print(\"up\")"):find("^up") then
      pending("a sanitized cnnlua cannot start under ulimit -v")
      return
    end
    local out = run("cnn.set_num_threads(2); print(pcall(cnn.set_num_threads, 1024)); print(cnn.get_num_threads()); " ..
      "print((cnn.ones(1000, 1000) * 2):sum():item())")
    assert.matches("false\tset_num_threads: cannot start 1024 threads: thread %d+ failed %(.-%); " ..
      "still using 2\n2\n2000000", out)
  end)

  it("large elementwise results do not depend on the thread count", function()
    local before = cnn.get_num_threads()
    local x = cnn.arange(0, 200000, 1) / 1000
    cnn.set_num_threads(1)
    local one = (x * 2 + 1):totable()
    cnn.set_num_threads(2)
    local two = (x * 2 + 1):totable()
    cnn.set_num_threads(before)
    assert.are.same(one, two)
    assert.is_true(math.abs(two[200000] - (2 * 199.999 + 1)) < 1e-3) -- last element, x = 199.999
  end)
end)

describe("cat, stack and index_select", function()
  local a = cnn.tensor({ { 1, 2 }, { 3, 4 } })
  local b = cnn.tensor({ { 5, 6 } })
  local c = cnn.tensor({ { 7, 8 }, { 9, 10 } })

  it("cat joins along a 1-based dim", function()
    H.assert_tensor(cnn.cat({ a, b }, 1), { { 1, 2 }, { 3, 4 }, { 5, 6 } })
    H.assert_tensor(cnn.cat({ a, c }, 2), { { 1, 2, 7, 8 }, { 3, 4, 9, 10 } })
    H.assert_tensor(cnn.cat({ a, c, a }, -1), { { 1, 2, 7, 8, 1, 2 }, { 3, 4, 9, 10, 3, 4 } })
  end)

  it("stack inserts a new dim at the 1-based position", function()
    H.assert_tensor(cnn.stack({ a, c }, 1), { { { 1, 2 }, { 3, 4 } }, { { 7, 8 }, { 9, 10 } } })
    H.assert_tensor(cnn.stack({ a, c }, 2), { { { 1, 2 }, { 7, 8 } }, { { 3, 4 }, { 9, 10 } } })
    H.assert_tensor(cnn.stack({ a, c }, 3), { { { 1, 7 }, { 2, 8 } }, { { 3, 9 }, { 4, 10 } } })
    assert.are.same({ 2, 2, 2 }, cnn.stack({ a, c }, -1):shape())
  end)

  it("cat and stack default to dim 1, as PyTorch's dim 0", function()
    assert.are.same({ 3, 2 }, cnn.cat({ a, b }):shape())
    assert.are.same({ 2, 2, 2 }, cnn.stack({ a, c }):shape())
  end)

  -- a list past 4096 tensors was refused ("at most 4096 tensors at once"); PyTorch has no limit
  it("cat and stack take any number of tensors, with gradients to each", function()
    local rows, leaves = {}, {}
    for i = 1, 10000 do
      rows[i] = cnn.tensor({ i, -i })
      leaves[i] = cnn.full({ 1 }, i + 0.0):requires_grad_()
    end
    local s = cnn.stack(rows)
    assert.are.same({ 10000, 2 }, s:shape())
    assert.are.equal(-9999, s[9999][2])
    local joined = cnn.cat(rows)
    assert.are.same({ 20000 }, joined:shape())
    assert.are.equal(10000, joined[19999])
    local y = (cnn.cat(leaves) * cnn.arange(1, 10001)):sum()
    y:backward()
    assert.are.equal(7777, leaves[7777].grad[1])
    H.assert_error(function() return cnn.cat({ a, a, 3 }) end, "cat: element 3 of the list is number, not a tensor")
  end)

  it("cat reads non-contiguous inputs in logical order", function()
    H.assert_tensor(cnn.cat({ a:t(), c }, 1), { { 1, 3 }, { 2, 4 }, { 7, 8 }, { 9, 10 } })
  end)

  it("cat and stack of int64 stay int64", function()
    local i = cnn.tensor({ 1, 2 }, { dtype = "int64" })
    H.assert_tensor(cnn.cat({ i, i }, 1), { 1, 2, 1, 2 }, { dtype = "int64" })
    H.assert_tensor(cnn.stack({ i, i }, 1), { { 1, 2 }, { 1, 2 } }, { dtype = "int64" })
  end)

  it("cat and stack of int64 with float32 give float32, as arithmetic does", function()
    local i = cnn.tensor({ 1, 2 }, { dtype = "int64" })
    H.assert_tensor(cnn.cat({ i, cnn.tensor({ 0.5 }) }), { 1, 2, 0.5 }, { dtype = "float32" })
    H.assert_tensor(cnn.stack({ cnn.tensor({ 0.5, 1.5 }), i }), { { 0.5, 1.5 }, { 1, 2 } }, { dtype = "float32" })
  end)

  it("cat gives a skipped 1-d empty input an empty gradient, as PyTorch", function()
    local e = cnn.zeros(0):requires_grad_()
    local x = cnn.tensor({ { 1, 2 } }):requires_grad_()
    cnn.cat({ e, x }):sum():backward()
    assert.are.same({ 0 }, e.grad:shape())
    H.assert_tensor(x.grad, { { 1, 1 } })
  end)

  it("index_select along the last dim with -1", function()
    local idx = cnn.tensor({ 2, 2, 1 }, { dtype = "int64" })
    H.assert_tensor(a:index_select(-1, idx), { { 2, 2, 1 }, { 4, 4, 3 } })
  end)
end)

-- reference product written as loops over Lua tables
local function lua_mm(A, B)
  local C = {}
  for i = 1, #A do
    C[i] = {}
    for j = 1, #B[1] do
      local s = 0
      for k = 1, #B do s = s + A[i][k] * B[k][j] end
      C[i][j] = s
    end
  end
  return C
end

describe("matmul and mm", function()
  it("1-d with 1-d is a 0-d dot product", function()
    local d = cnn.matmul(cnn.tensor({ 1, 2, 3 }), cnn.tensor({ 4, 5, 6 }))
    assert.are.same({}, d:shape())
    assert.are.equal(32, d:item()) -- 4 + 10 + 18
  end)

  it("2-d with 2-d is the matrix product", function()
    local a = cnn.tensor({ { 1, 2 }, { 3, 4 } })
    local b = cnn.tensor({ { 5, 6 }, { 7, 8 } })
    H.assert_tensor(cnn.matmul(a, b), { { 19, 22 }, { 43, 50 } })
    H.assert_tensor(a:matmul(b), { { 19, 22 }, { 43, 50 } })
    H.assert_tensor(a:mm(b), { { 19, 22 }, { 43, 50 } })
  end)

  it("2-d with 1-d and 1-d with 2-d drop the vector's dim", function()
    local a = cnn.tensor({ { 1, 2 }, { 3, 4 } })
    H.assert_tensor(a:matmul(cnn.tensor({ 1, 1 })), { 3, 7 })
    H.assert_tensor(cnn.tensor({ 1, 1 }):matmul(a), { 4, 6 })
  end)

  it("matches a Lua loop on random rectangular matrices", function()
    cnn.manual_seed(11)
    local a, b = cnn.randn(7, 5), cnn.randn(5, 3)
    H.assert_tensor(a:matmul(b), lua_mm(a:totable(), b:totable()), { rtol = 1e-5, atol = 1e-5 })
    H.assert_tensor(a:mm(b), lua_mm(a:totable(), b:totable()), { rtol = 1e-5, atol = 1e-5 })
  end)

  it("handles transposed and sliced operands", function()
    cnn.manual_seed(12)
    local a, b = cnn.randn(5, 7), cnn.randn(3, 5)
    -- a:t() is 7x5, b:t() is 5x3
    H.assert_tensor(a:t():mm(b:t()), lua_mm(a:t():totable(), b:t():totable()), { rtol = 1e-5, atol = 1e-5 })
    local s = cnn.randn(6, 8):narrow(2, 2, 5) -- 6x5 with row stride 8
    H.assert_tensor(s:matmul(b:t()), lua_mm(s:totable(), b:t():totable()), { rtol = 1e-5, atol = 1e-5 })
  end)

  it("batched 3-d multiplies matrix by matrix", function()
    cnn.manual_seed(13)
    local a, b = cnn.randn(2, 3, 4), cnn.randn(2, 4, 5)
    local c = cnn.matmul(a, b)
    assert.are.same({ 2, 3, 5 }, c:shape())
    for n = 1, 2 do
      H.assert_tensor(c[n], lua_mm(a[n]:totable(), b[n]:totable()), { rtol = 1e-5, atol = 1e-5 })
    end
  end)

  it("batched 3-d with 2-d broadcasts the matrix over the batch", function()
    cnn.manual_seed(14)
    local a, b = cnn.randn(3, 2, 4), cnn.randn(4, 2)
    local c = a:matmul(b)
    assert.are.same({ 3, 2, 2 }, c:shape())
    for n = 1, 3 do
      H.assert_tensor(c[n], lua_mm(a[n]:totable(), b:totable()), { rtol = 1e-5, atol = 1e-5 })
    end
  end)

  it("batch dims of size 1 broadcast", function()
    cnn.manual_seed(15)
    local a, b = cnn.randn(1, 3, 4), cnn.randn(2, 4, 5)
    local c = a:matmul(b)
    assert.are.same({ 2, 3, 5 }, c:shape())
    for n = 1, 2 do
      H.assert_tensor(c[n], lua_mm(a[1]:totable(), b[n]:totable()), { rtol = 1e-5, atol = 1e-5 })
    end
  end)
end)

describe("dtype conversion", function()
  it("long() then float() round-trips integral values", function()
    local t = cnn.tensor({ -3, 0, 12 })
    local l = t:long()
    assert.are.equal("int64", l:dtype())
    H.assert_tensor(l:float(), { -3, 0, 12 }, { dtype = "float32" })
  end)

  it("float() of a float32 tensor keeps values and dtype", function()
    H.assert_tensor(cnn.tensor({ 1.5 }):float(), { 1.5 }, { dtype = "float32" })
  end)
end)

describe("0-d tensors", function()
  it("cnn.tensor(x) and full reductions have shape {}", function()
    assert.are.same({}, cnn.tensor(3.5):shape())
    assert.are.same({}, cnn.ones(2, 3):sum():shape())
    assert.are.same({}, cnn.ones(2, 3):mean():shape())
  end)

  it("reshape{} turns a one-element tensor into a 0-d tensor", function()
    local t = cnn.tensor({ { 7 } }):reshape({})
    assert.are.same({}, t:shape())
    assert.are.equal(0, t:dim())
    assert.are.equal(7, t:item())
  end)

  it("a 0-d tensor reshapes to {1} and back", function()
    local t = cnn.tensor(4):reshape(1)
    assert.are.same({ 1 }, t:shape())
    assert.are.equal(4, t[1])
  end)

  it("arithmetic with 0-d tensors gives 0-d tensors", function()
    local s = cnn.tensor(3) * 2 + cnn.tensor(1)
    assert.are.same({}, s:shape())
    assert.are.equal(7, s:item())
  end)

  it("numel is 1 and clone keeps the 0-d shape", function()
    local s = cnn.tensor(-2)
    assert.are.equal(1, s:numel())
    assert.are.same({}, s:clone():shape())
  end)
end)

describe("allclose's tolerances", function()
  it("a negative or NaN rtol or atol is an error, as torch.isclose's, not a comparison that passes", function()
    -- equal tensors compared with rtol = -1 (or NaN) gave true
    local a = cnn.ones(2)
    H.assert_error(function() return cnn.allclose(a, a, -1) end,
      "allclose: rtol must be greater than or equal to zero, got %-1")
    H.assert_error(function() return cnn.allclose(a, a, 0 / 0) end, "allclose: rtol must be")
    H.assert_error(function() return cnn.allclose(a, a, 0, -1e-8) end,
      "allclose: atol must be greater than or equal to zero")
    assert.is_true(cnn.allclose(a, a, 0, 0))
    assert.is_false(cnn.allclose(a, a + 1e-3, 0, 0))
    H.assert_usable()
  end)
end)
