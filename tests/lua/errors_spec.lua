-- API.md "Errors": every misuse raises a Lua error naming the function and the problem, pcall
-- catches it, and the runtime keeps working (each test ends with a call that must succeed).
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local err = H.assert_error

describe("shape errors", function()
  it("add with shapes that do not broadcast", function()
    err(function() return cnn.zeros(2, 3):add(cnn.zeros(4)) end, "add:", "broadcast")
    err(function() return cnn.zeros(2, 3) + cnn.zeros(2, 2) end, "add", "broadcast")
    err(function() return cnn.zeros(3) * cnn.zeros(2) end, "mul", "broadcast")
    H.assert_usable()
  end)

  it("matmul with mismatched inner dims", function()
    err(function() return cnn.matmul(cnn.zeros(2, 3), cnn.zeros(4, 5)) end, "matmul:", "3", "4")
    err(function() return cnn.zeros(3):matmul(cnn.zeros(4)) end, "matmul:")
    err(function() return cnn.zeros(2, 3):mm(cnn.zeros(2, 3)) end, "mm:")
    H.assert_usable()
  end)

  it("mm with a non-2-d operand", function()
    err(function() return cnn.zeros(3):mm(cnn.zeros(3, 2)) end, "mm:", "2")
    H.assert_usable()
  end)

  it("a reduction's keepdim that is not a boolean (options passed in its place)", function()
    -- a truthy keepdim was read as true: std(1, {unbiased = false}) kept the dimension and never
    -- read the options (now the options, as they may follow dim)
    local x = cnn.tensor { { 1, 2 }, { 3, 5 } }
    err(function() return x:std(1, { unbias = false }) end, ": std: ", "unbias")
    err(function() return x:var(1, {}, true) end, ": var: unexpected argument 4")
    err(function() return x:var(1, 1) end, ": var: keepdim %(argument 3%) must be a boolean, got number")
    err(function() return x:sum(1, "yes") end, ": sum: keepdim", "got string")
    err(function() return x:mean(2, {}) end, ": mean: keepdim")
    err(function() return x:max(1, 0) end, ": max: keepdim")
    err(function() return x:any(1, {}) end, ": any: keepdim")
    -- columns {1, 3} and {2, 5}: population std 1 and 1.5, sample variance 2 and 4.5
    assert.are.same({ { 1, 1.5 } }, x:std(1, true, { unbiased = false }):totable())
    assert.are.same({ 1, 1.5 }, x:std(1, { unbiased = false }):totable())
    assert.are.same({ 2, 4.5 }, x:var(1, {}):totable())
    assert.are.same({ 2, 3.5 }, x:mean(1, nil):totable())
    H.assert_usable()
  end)

  it("stride(dim) gives that dimension's stride, not the table", function()
    local t = cnn.zeros(2, 3, 4):transpose(1, 3) -- (4, 3, 2), strides {1, 4, 12}
    assert.are.equal(4, t:stride(2))
    assert.are.equal(12, t:stride(-1))
    assert.are.same({ 1, 4, 12 }, t:stride())
    err(function() return t:stride(4) end, ": stride: dimension 4 out of range")
    err(function() return t:stride(0) end, ": stride: dimension 0 out of range")
    err(function() return cnn.tensor(3):stride(1) end, ": stride:")
    assert.are.same({}, cnn.tensor(3):stride())
    H.assert_usable()
  end)

  it("view of an incompatible size", function()
    err(function() return cnn.zeros(2, 3):view(4, 2) end, "view:", "6")
    err(function() return cnn.zeros(2, 3):reshape(5) end, "reshape:")
    err(function() return cnn.zeros(2, 3):view(-1, -1) end, "view:")
    H.assert_usable()
  end)

  it("view of a non-contiguous tensor that cannot be viewed", function()
    err(function() return cnn.zeros(2, 3):t():view(6) end, "view:")
    H.assert_usable()
  end)

  it("cat and stack of mismatched shapes", function()
    err(function() return cnn.cat({ cnn.zeros(2, 3), cnn.zeros(2, 4) }, 1) end, "cat:")
    err(function() return cnn.stack({ cnn.zeros(2, 3), cnn.zeros(3, 2) }, 1) end, "stack:")
    H.assert_usable()
  end)

  it("expand of a dim whose size is not 1", function()
    err(function() return cnn.zeros(2, 3):expand(4, 3) end, "expand:")
    H.assert_usable()
  end)

  it("a ragged nested table", function()
    err(function() return cnn.tensor({ { 1, 2 }, { 3 } }) end, "tensor:")
    H.assert_usable()
  end)

  it("a nested table with a hole: no value is dropped", function()
    err(function() return cnn.tensor({ [1] = 1, [3] = 3 }) end, "tensor:", "hole")
    -- its length is 2 or 4 as Lua lays it out: a hole or a ragged row, an error either way
    err(function() return cnn.tensor({ { 1, 2 }, { [1] = 3, [2] = 4, [4] = 5 } }) end, "tensor:")
    err(function() return cnn.tensor({ [0] = 7, 1, 2 }) end, "tensor:", "hole")
    assert.same({ { 1, 2 }, { 3, 4 } }, cnn.tensor({ { 1, 2 }, { 3, 4 } }):totable())
    H.assert_usable()
  end)

  it("a string in a nested table, even one that reads as a number", function()
    -- Lua converts "1" to 1 where a number is asked for; PyTorch refuses str data, and so do we
    err(function() return cnn.tensor({ "1" }) end, "tensor:", "expected numbers or booleans", "got string")
    err(function() return cnn.tensor({ { 1, 2 }, { "3", 4 } }) end, "tensor:", "got string")
    err(function() return cnn.tensor({ "1" }, { dtype = "int64" }) end, "tensor:", "got string")
    H.assert_usable()
  end)

  it("item of a tensor with more than one element", function()
    err(function() return cnn.zeros(2):item() end, "item:")
    H.assert_usable()
  end)
end)

describe("argument counts and methods defined in Lua", function()
  it("an extra argument is an error, not ignored (transpose(1, 2, 3) transposed 1 and 2)", function()
    local t = cnn.ones(2, 3, 4)
    H.assert_error(function() t:transpose(1, 2, 3) end, "transpose: takes 3 arguments, got 4")
    H.assert_error(function() t:narrow(1, 1, 1, 9) end, "narrow: takes 4 arguments, got 5")
    H.assert_error(function() t:clamp(0, 1, 5) end, "clamp: takes 3 arguments, got 4")
    H.assert_error(function() t:to("int64", "float32") end, "to: takes 2 arguments, got 3")
    H.assert_error(function() t:size(1, 2) end, "size: takes 2 arguments, got 3")
    H.assert_error(function() t:isnan(1) end, "isnan: takes 1 argument")
    H.assert_error(function() t:detach(t) end, "detach: takes 1 argument")
    H.assert_error(function() t:rsqrt(1) end, "rsqrt: takes 1 argument, got 2")
    H.assert_error(function() t:logsumexp(1, true, 5) end, "logsumexp: takes 3 arguments, got 4")
    H.assert_error(function() t:topk(1, 1, true, true, 5) end, "topk: takes 5 arguments, got 6")
    H.assert_usable()
  end)

  it("errors of the methods that are F's functions point at the caller, and name the argument", function()
    local ok, msg = pcall(function() local r = cnn.ones(3):softmax() return r end)
    assert.is_false(ok)
    assert.is_truthy(msg:find("errors_spec.lua:%d+: softmax: the dimension is required"), msg)
    assert.is_nil(msg:find("F.lua", 1, true), msg)
    H.assert_error(function() cnn.ones(2, 3):logsumexp(1, 0) end, "logsumexp: keepdim must be a boolean, got 0")
    H.assert_error(function() cnn.ones(3):topk(1, 1, 0) end, "topk: largest must be a boolean, got 0")
    assert.are.same({2, 1}, cnn.ones(2, 3):logsumexp(2, true):shape())
  end)

  it("a nested table's keys that are no list indices are errors (they were dropped silently)", function()
    H.assert_error(function() cnn.tensor({a = 1}) end, "tensor: nested table with key 'a' at depth 1")
    H.assert_error(function() cnn.tensor({1, 2, x = 3}) end, "tensor:", "key 'x' at depth 1")
    H.assert_error(function() cnn.tensor({{1, 2}, {3, 4, extra = 5}}) end, "tensor:", "key 'extra' at depth 2")
    H.assert_error(function() cnn.tensor({[1.5] = 1}) end, "tensor:", "key of type number")
    assert.are.same({0}, cnn.tensor({}):shape())
  end)

  it("argmax/argmin over all dims with keepdim keep t's rank, and cross_entropy with no classes says so", function()
    -- PyTorch 1.13: torch.argmax(tensor([[1, 5], [3, 2]]), keepdim=True) is tensor([[1]]) (0-based)
    local x = cnn.tensor({{1, 5}, {3, 2}})
    H.assert_tensor(x:argmax(nil, true), {{2}})
    assert.are.same({1, 1}, x:argmin(nil, true):shape())
    assert.are.equal(0, x:argmax():dim())
    H.assert_error(function() cnn.F.cross_entropy(cnn.zeros(2, 0), cnn.tensor({1, 1}, {dtype = "int64"})) end,
      "cross_entropy: label 1 is out of range: there are no classes")
  end)

  it("int64 tensors from integral floats take -2^63 (the literal -9223372036854775808 is a float)", function()
    local t = cnn.tensor({ -2 ^ 63, 2 ^ 62 }, { dtype = "int64" })
    assert.are.equal(math.mininteger, t[1])
    assert.are.equal(1 << 62, t[2])
    H.assert_error(function() cnn.tensor({ 2 ^ 63 }, { dtype = "int64" }) end, "tensor:", "outside int64")
    H.assert_error(function() cnn.tensor({ 1.5 }, { dtype = "int64" }) end, "tensor: value 1.5 is not an integer")
  end)
end)

describe("index and dim errors", function()
  local t = cnn.tensor({ 10, 20, 30 })

  it("t[0] and t[4] on a size-3 tensor", function()
    err(function() return t[0] end, "index", "range")
    err(function() return t[4] end, "index", "range")
    err(function() t[4] = 1 end, "range")
    err(function() return cnn.zeros(3, 2)[5] end, "range")
    H.assert_usable()
    assert.are.equal(30, t[3])
  end)

  it("select and narrow out of range", function()
    local m = cnn.zeros(3, 4)
    err(function() return m:select(1, 4) end, "select:", "range")
    err(function() return m:select(2, 0) end, "select:", "range")
    err(function() return m:narrow(2, 3, 3) end, "narrow:")
    H.assert_usable()
  end)

  it("index_select with an index out of range", function()
    local m = cnn.zeros(3, 4)
    err(function() return m:index_select(1, cnn.tensor({ 1, 4 }, { dtype = "int64" })) end, "index_select:", "range")
    err(function() return m:index_select(1, cnn.tensor({ 0 }, { dtype = "int64" })) end, "index_select:", "range")
    H.assert_usable()
  end)

  it("dims out of range", function()
    local m = cnn.zeros(3, 4)
    err(function() return m:sum(3) end, "sum:", "dim")
    err(function() return m:sum(-3) end, "sum:", "dim")
    err(function() return m:size(3) end, "size:", "dim")
    err(function() return m:transpose(1, 3) end, "transpose:", "dim")
    err(function() return m:max(0) end, "max:", "dim")
    err(function() return m:unsqueeze(4) end, "unsqueeze:", "dim")
    err(function() return cnn.cat({ m, m }, 3) end, "cat:", "dim")
    H.assert_usable()
  end)

  it("permute with a repeated or missing dim", function()
    err(function() return cnn.zeros(2, 3):permute(1, 1) end, "permute:")
    err(function() return cnn.zeros(2, 3):permute(1) end, "permute:")
    H.assert_usable()
  end)
end)

describe("impossible sizes", function()
  it("negative sizes", function()
    err(function() return cnn.zeros(-1) end, "zeros:", "negative")
    err(function() return cnn.ones(2, -3) end, "ones:", "negative")
    err(function() return cnn.empty({ 3, -1 }) end, "empty:", "negative")
    H.assert_usable()
  end)

  it("sizes whose product overflows", function()
    err(function() return cnn.zeros(2 ^ 40, 2 ^ 40) end, "zeros:")
    -- 2^62 elements fit in int64 but 2^64 bytes do not fit in size_t
    err(function() return cnn.empty(2 ^ 31, 2 ^ 31) end, "empty:")
    H.assert_usable()
  end)

  it("an allocation larger than memory", function()
    -- 2^20 * 2^20 * 64 floats = 2^48 bytes (256 TiB); 8 * 2^30 floats = 32 GiB
    err(function() return cnn.empty(2 ^ 20, 2 ^ 20, 64) end, "empty:", "memory")
    err(function() return cnn.empty(8, 1024, 1024, 1024) end, "empty:", "memory")
    H.assert_usable()
  end)

  it("a non-integral size", function()
    err(function() return cnn.zeros(2.5) end, "zeros:")
    H.assert_usable()
  end)
end)

describe("wrong argument types", function()
  it("a non-tensor where a tensor is needed", function()
    err(function() return cnn.matmul(1, {}) end, "matmul:")
    err(function() return cnn.zeros(2):add("x") end, "add:")
    err(function() return cnn.zeros(2) + {} end, "add")
    err(function() return cnn.cat({ cnn.zeros(2), 5 }, 1) end, "cat:")
    H.assert_usable()
  end)

  it("an int64 tensor where float32 is needed", function()
    local i = cnn.randint(1, 5, { 3, 3 })
    err(function() return i:mean() end, "mean:", "int64")
    err(function() return i:requires_grad_(true) end, "requires_grad_:")
    err(function() return cnn.tensor({ 1, 2 }, { dtype = "int64", requires_grad = true }) end, "tensor:")
    H.assert_usable()
  end)

  it("a float index tensor for index_select", function()
    err(function() return cnn.zeros(3):index_select(1, cnn.tensor({ 1 })) end, "index_select:", "int64")
    H.assert_usable()
  end)

  it("an unknown dtype name", function()
    err(function() return cnn.tensor({ 1 }, { dtype = "float16" }) end, "tensor:", "float16")
    H.assert_usable()
  end)
end)

describe("options", function()
  it("unknown option keys are an error naming the key", function()
    err(function() return cnn.tensor({ 1 }, { dtyp = "int64" }) end, "tensor:", "unknown option 'dtyp'")
    local x = cnn.tensor({ 1 }, { requires_grad = true })
    local y = (x * 2):sum()
    err(function() y:backward(nil, { retain = true }) end, "backward:", "unknown option 'retain'")
    H.assert_usable()
    y:backward() -- the graph survived the rejected call
    H.assert_tensor(x.grad, { 2 })
  end)

  it("the losses written in Lua and gelu reject unknown keys, non-tables and shapes, naming themselves", function()
    local F = cnn.F
    local a, b = cnn.randn(2, 3), cnn.rand(2, 3)
    for _, name in ipairs {"l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "binary_cross_entropy",
      "binary_cross_entropy_with_logits"} do
      local x = name == "binary_cross_entropy" and a:sigmoid() or a
      -- a typo used to give the mean silently
      err(function() return F[name](x, b, { reductoin = "sum" }) end, name .. ":", "unknown option 'reductoin'")
      err(function() return F[name](x, b, 3) end, name .. ":", "options table")
      err(function() return F[name](x, cnn.rand(4)) end, name .. ":", "(4)")
      assert.is_true(F[name](x, b, { reduction = "sum" }):item() ~= F[name](x, b):item())
    end
    err(function() return F.gelu(a, { approx = "tanh" }) end, "gelu:", "unknown option 'approx'")
    H.assert_usable()
  end)

  it("gradcheck rejects unknown options", function()
    local x = cnn.tensor({ 1 }, { requires_grad = true })
    err(function() cnn.autograd.gradcheck(function(a) return a:sum() end, { x }, { epsilon = 1e-3 }) end,
      "gradcheck:", "unknown option 'epsilon'")
    H.assert_usable()
  end)
end)

describe("autograd misuse", function()
  it("backward on a non-scalar without a gradient", function()
    local x = cnn.tensor({ 1, 2 }, { requires_grad = true })
    local y = x * 2
    err(function() y:backward() end, "backward:", { "scalar", "one%-element" })
    y:backward(cnn.ones(2)) -- still usable with a seed
    H.assert_tensor(x.grad, { 2, 2 })
  end)

  it("an in-place op on a leaf that requires grad", function()
    local x = cnn.tensor({ 1, 2 }, { requires_grad = true })
    err(function() x:add_(1) end, "add_:", "leaf")
    H.assert_tensor(x, { 1, 2 }) -- unchanged
    H.assert_usable()
  end)

  it("backward with a seed of the wrong shape", function()
    local x = cnn.tensor({ 1, 2 }, { requires_grad = true })
    local y = x * 2
    err(function() y:backward(cnn.ones(3)) end, "backward:")
    H.assert_usable()
  end)

  it("backward on a tensor that does not require grad", function()
    err(function() cnn.ones(2):sum():backward() end, "backward:", "grad")
    H.assert_usable()
  end)

  it("a Lua Function whose backward raises", function()
    local Bad = cnn.autograd.Function {
      forward = function(_, x) return x * 1 end,
      backward = function() error("my backward broke") end,
    }
    local x = cnn.tensor({ 1 }, { requires_grad = true })
    err(function() Bad(x):sum():backward() end, "my backward broke")
    H.assert_usable()
  end)

  it("a Lua Function whose backward returns a wrong shape", function()
    local Bad = cnn.autograd.Function {
      forward = function(_, x) return x * 1 end,
      backward = function() return cnn.ones(5) end,
    }
    local x = cnn.tensor({ 1, 2 }, { requires_grad = true })
    err(function() Bad(x):sum():backward() end, "backward")
    H.assert_usable()
  end)
end)

describe("in-place writes into overlapping memory", function()
  it("F.relu with inplace on an expanded tensor is refused, as every in-place op but fill_", function()
    -- inplace was ignored: F.relu(x, {inplace = true}) neither wrote x nor checked it
    local base = cnn.tensor { -1, 2, -3 }
    local x = base:view(1, 3):expand(2, 3) -- stride 0 along dim 1: both rows are base
    err(function() return cnn.F.relu(x, { inplace = true }) end, "^relu: ", "more than one element", "clone")
    err(function() return cnn.F.relu(x, true) end, "^relu: ", "more than one element")
    err(function() return cnn.F.relu_(x) end, "relu_: ", "more than one element")
    err(function() return x:relu_() end, "relu_: ", "more than one element")
    for _, f in ipairs {
      function() x:add_(1) end, function() x:sub_(1) end, function() x:mul_(2) end, function() x:div_(2) end,
      function() x:copy_(cnn.ones(2, 3)) end,
      function() x:uniform_(0, 1) end, function() x:normal_(0, 1) end, function() x:clamp_(0, 1) end,
      function() x:masked_fill_(cnn.ones(2, 3):gt(0), 1) end, function() x[1] = 5 end,
      function() x:scatter_(2, cnn.tensor({ { 1 }, { 1 } }, { dtype = "int64" }), cnn.ones(2, 1)) end,
      function() x:scatter_add_(2, cnn.tensor({ { 1 }, { 1 } }, { dtype = "int64" }), cnn.ones(2, 1)) end,
    } do
      err(f, "more than one element")
    end
    assert.are.same({ -1, 2, -3 }, base:totable()) -- nothing was written
    H.assert_usable()
  end)

  it("F.relu's inplace writes x and returns it, as torch's F.relu(x, inplace=True)", function()
    local x = cnn.tensor { -1, 2, -3 }
    local y = cnn.F.relu(x, { inplace = true })
    assert.are.same({ 0, 2, 0 }, x:totable())
    assert.are.equal(x, y)
    local z = cnn.tensor { { -1, 4 }, { 5, -6 } }:t() -- a transposed view does not overlap: allowed
    cnn.F.relu(z, true)
    assert.are.same({ { 0, 5 }, { 4, 0 } }, z:totable())
    local w = cnn.tensor { -1, 2 }
    assert.are.same({ 0, 2 }, cnn.F.relu(w, false):totable())
    assert.are.same({ -1, 2 }, w:totable()) -- inplace=false leaves x alone
    err(function() return cnn.F.relu(w, { inplace = "yes" }) end, "relu: inplace must be a boolean, got string")
    err(function() return cnn.F.relu(w, { inplac = true }) end, "relu: unknown option 'inplac'")
    err(function() return cnn.F.relu(w, 1) end, "relu: inplace must be a boolean, got number")
    local leaf = cnn.tensor({ -1 }, { requires_grad = true })
    err(function() return cnn.F.relu(leaf, true) end, "relu: ", "leaf")
    H.assert_usable()
  end)
end)

describe("booleans where a boolean is expected", function()
  it("requires_grad is a boolean: assignment, requires_grad_ and the factories' option", function()
    -- t.requires_grad = "yes" turned it on; requires_grad_(0) too (0 is true in Lua)
    local t = cnn.ones(2)
    err(function() t.requires_grad = "yes" end, "requires_grad: must be a boolean, got string")
    err(function() t.requires_grad = nil end, "requires_grad: must be a boolean, got nil")
    err(function() t:requires_grad_("yes") end, "requires_grad_: expected a boolean, got string")
    err(function() t:requires_grad_(0) end, "requires_grad_: expected a boolean, got number")
    assert.is_false(t.requires_grad)
    err(function() return cnn.tensor({ 1 }, { requires_grad = "yes" }) end, "tensor: requires_grad must be a boolean")
    err(function() return cnn.zeros(2, { requires_grad = 1 }) end, "zeros: requires_grad must be a boolean")
    err(function() cnn.nn.Linear(2, 2):requires_grad_("no") end, "requires_grad_: expected a boolean")
    t.requires_grad = true
    assert.is_true(t.requires_grad)
    t:requires_grad_() -- no argument: on, as in PyTorch
    t:requires_grad_(false)
    assert.is_false(t.requires_grad)
    H.assert_usable()
  end)

  it("other boolean options and arguments", function()
    local ds = cnn.data.TensorDataset(cnn.ones(4, 2), cnn.ones(4))
    err(function() return cnn.data.DataLoader(ds, { batch_size = 2, shuffle = "yes" }) end,
      "DataLoader: shuffle must be a boolean, got string")
    err(function() return cnn.data.DataLoader(ds, { batch_size = 2, drop_last = 1 }) end,
      "DataLoader: drop_last must be a boolean, got number")
    err(function() return cnn.image.grid(cnn.ones(1, 1, 2, 2), { normalize = "yes" }) end,
      "image.grid: normalize must be a boolean, got string")
    err(function() return cnn.set_grad_enabled("no") end, "set_grad_enabled: expected a boolean, got string")
    assert.is_true(cnn.is_grad_enabled())
    assert.are.equal(1, #cnn.data.DataLoader(ds, { batch_size = 3, drop_last = true }))
    H.assert_usable()
  end)
end)

describe("numbers past float's range", function()
  it("fill, full, clamp, uniform_, masked_fill, linspace refuse them, as PyTorch", function()
    -- 1e300 became inf silently; PyTorch: "value cannot be converted to type float without overflow"
    local x = cnn.zeros(2)
    local over = "cannot be converted to type float without overflow"
    err(function() return cnn.full({ 2 }, 1e300) end, "full: value 1e%+300 " .. over)
    err(function() return cnn.full({ 2 }, -3.5e38) end, "full: ", over)
    err(function() x:fill_(1e300) end, "fill_: ", over)
    err(function() x[1] = 1e300 end, "newindex: ", over)
    err(function() x[x:ge(0)] = 1e300 end, over)
    err(function() return x:clamp(-1e300, 1e300) end, "clamp: ", over)
    err(function() x:clamp_(1e300) end, "clamp_: ", over)
    err(function() return x:masked_fill(x:ge(0), 1e300) end, "masked_fill: ", over)
    err(function() x:masked_fill_(x:ge(0), -1e300) end, "masked_fill_: ", over)
    err(function() return cnn.linspace(0, 1e300, 3) end, "linspace: ", over)
    err(function() return cnn.F.leaky_relu(x, 1e300) end, "leaky_relu: ", over)
    err(function() x:add_(x, 1e300) end, "add_: ", over)
    err(function() x:uniform_(0, 1e300) end, "uniform_: ", "hi is out of bounds for float")
    err(function() x:uniform_(-1e300, 0) end, "uniform_: ", "lo is out of bounds for float")
    err(function() x:uniform_(-3e38, 3e38) end, "uniform_: ", "hi %- lo overflows float")
    assert.are.same({ 0, 0 }, x:totable()) -- nothing was written
    -- inf and NaN are values, not overflows; arithmetic with a Python-like scalar overflows to inf
    assert.are.same({ math.huge, math.huge }, cnn.full({ 2 }, math.huge):totable())
    assert.are.equal(math.huge, (x + 1e300)[1])
    assert.are.equal(math.huge, cnn.tensor(1e300):item())
    assert(math.abs(cnn.full({ 1 }, 3e38)[1] - 3e38) < 3e38 * 1e-7) -- in range: kept
    x:uniform_(-1e38, 1e38)
    H.assert_usable()
  end)
end)

describe("nn constructors' argument checks", function()
  it("name the wrong argument's type, not only its text", function()
    -- nn.Linear("3", 2) said "in_features must be an integer >= 0, got 3"
    err(function() return cnn.nn.Linear("3", 2) end, 'Linear: in_features must be an integer >= 0, got string "3"')
    err(function() return cnn.nn.Linear(3, {}) end, "Linear: out_features must be an integer >= 0, got a table")
    err(function() return cnn.nn.Linear(3.5, 2) end, "Linear: in_features must be an integer >= 0, got 3.5")
    err(function() return cnn.nn.Conv2d("3", 2, 3) end, 'Conv2d: in_channels must be an integer >= 1, got string "3"')
    err(function() return cnn.nn.Conv2d(3, 2, "3") end,
      'Conv2d: kernel_size must be an integer or a pair of integers, got string "3"')
    err(function() return cnn.nn.Conv2d(3, 2, 3, { stride = "1" }) end, 'Conv2d: stride', 'got string "1"')
    err(function() return cnn.nn.BatchNorm2d("3") end, 'BatchNorm2d: num_features', 'got string "3"')
    err(function() return cnn.nn.BatchNorm1d({}) end, "BatchNorm1d: num_features", "got a table")
    err(function() return cnn.nn.MaxPool2d("2") end, 'MaxPool2d: kernel_size', 'got string "2"')
    err(function() return cnn.nn.Dropout("0.5") end, 'Dropout: p must be a number, got string "0.5"')
    err(function() return cnn.nn.LeakyReLU("0.1") end, 'LeakyReLU: negative_slope', 'got string "0.1"')
    err(function() return cnn.nn.Softmax("1") end, 'Softmax: dim', 'got string "1"')
    err(function() return cnn.nn.AdaptiveAvgPool2d("1") end, 'AdaptiveAvgPool2d: output_size', 'got string "1"')
    err(function() return cnn.nn.LocalResponseNorm("2") end, 'LocalResponseNorm: size', 'got string "2"')
    err(function() return cnn.nn.GroupNorm("2", 4) end, 'GroupNorm: num_groups', 'got string "2"')
    err(function() return cnn.nn.Linear(cnn.ones(1), 2) end, "Linear: in_features", "got a tensor")
    assert.are.same({ 2, 3 }, cnn.nn.Linear(3, 2).weight:shape())
    H.assert_usable()
  end)
end)

describe("conv2d's bias check", function()
  it("names the bias's shape, or its dimensions when it is not 1-d", function()
    -- said "got shape 2-d" for a 2-d bias
    local x, w = cnn.ones(1, 1, 3, 3), cnn.ones(2, 1, 3, 3)
    err(function() return cnn.F.conv2d(x, w, cnn.ones(2, 1)) end,
      "conv2d: bias must be 1%-d with 2 elements %(one per output channel%), got a 2%-d tensor")
    err(function() return cnn.F.conv2d(x, w, cnn.ones(3)) end, "got shape %(3%)")
    H.assert_tensor(cnn.F.conv2d(x, w, cnn.ones(2)), { { { { 10 } }, { { 10 } } } })
  end)
end)

describe("linear's bias check", function()
  it("names the bias's shape", function()
    -- said "bias must be 1-d with 4 elements, got 1-d" for a bias of 5
    local x, w = cnn.ones(2, 3), cnn.ones(4, 3)
    err(function() return cnn.F.linear(x, w, cnn.ones(5)) end,
      "linear: bias must be 1%-d with 4 elements %(one per output feature%), got shape %(5%)")
    err(function() return cnn.F.linear(x, w, cnn.ones(2, 2)) end, "linear: bias must be 1%-d", "got a 2%-d tensor")
    H.assert_tensor(cnn.F.linear(x, w, cnn.ones(4)), { { 4, 4, 4, 4 }, { 4, 4, 4, 4 } })
  end)
end)

describe("numbers past float's range in where and hardtanh", function()
  it("are refused as PyTorch's torch.where and F.hardtanh refuse them; inf stays a value", function()
    -- cnn.where(mask, 1e300, 0) gave inf; hardtanh's error came from clamp
    local over = "cannot be converted to type float without overflow"
    local mask = cnn.tensor { true, false }
    err(function() return cnn.where(mask, 1e300, 0) end, "where: value 1e%+300 " .. over)
    err(function() return cnn.where(mask, cnn.ones(2), -1e300) end, "where: ", over)
    err(function() return cnn.F.hardtanh(cnn.ones(2), -1e300, 1) end, "hardtanh: value %-1e%+300 " .. over)
    assert.are.same({ math.huge, 0 }, cnn.where(mask, math.huge, 0):totable())
    assert.are.same({ -1, 2 }, cnn.F.hardtanh(cnn.tensor { -5, 5 }, -1, 2):totable())
    H.assert_usable()
  end)
end)

describe("a NaN in a message", function()
  it("shows as nan, never -nan (Lua's 0/0 has its sign bit set), from the C and the Lua half", function()
    local nan = 0 / 0
    local x = cnn.ones(1, 1, 2, 2)
    local p = { cnn.zeros(1):requires_grad_() }
    local cases = {
      { function() return cnn.zeros(2):uniform_(nan, 1) end, "uniform_: expects a <= b, got a=nan, b=1" },
      { function() return cnn.zeros(2):normal_(0, nan) end, "normal_: std must be non%-negative, got nan" },
      { function() return cnn.zeros(nan) end, "zeros: size nan is not a valid size" },
      { function() return x:sum(nan) end, "sum: dimension must be an integer, got nan" },
      { function() return cnn.tensor({ nan }, { dtype = "int64" }) end, "tensor: value nan is not an integer" },
      { function() return cnn.F.dropout(x, nan, true) end, "dropout: .* got nan" },
      { function() return cnn.F.max_pool2d(x, nan) end, "max_pool2d: kernel size .* got nan" },
      { function() return cnn.allclose(x, x, nan) end, "allclose: rtol .* got nan" },
      { function() return cnn.optim.SGD(p, { lr = nan }) end, "SGD: option 'lr' must be a number, got nan" },
      { function() return cnn.nn.Conv2d(1, nan, 3) end, "Conv2d: out_channels must be an integer >= 1, got nan" },
      { function() return cnn.hpsearch.uniform(nan, 1) end, "hpsearch.uniform: .* got nan and 1" },
      { function() return cnn.data.transforms.random_hflip(nan) end, "random_hflip: p must be a .* got nan" },
      { function() return cnn.data.DataLoader(cnn.data.TensorDataset(x, x), { batch_size = nan }) end,
        "DataLoader: batch_size must be a positive integer, got nan" },
      { function() return cnn.data.transforms.color_jitter({ brightness = { nan, 1 } }) end,
        "color_jitter: brightness range {nan, 1} must lie in" },
    }
    for _, c in ipairs(cases) do
      local msg = err(c[1], c[2])
      assert.is_nil(msg:find("-nan", 1, true), msg)
    end
    H.assert_usable()
  end)

  it("is what cnn.util.show gives, with or without a number format", function()
    local show = cnn.util.show
    assert.are.equal("nan", show(0 / 0))
    assert.are.equal("nan", show(0 / 0, "%g"))
    assert.are.equal("nan", show(-(0 / 0), "%.6g"))
    assert.are.equal("0.500", show(0.5, "%.3f"))
    assert.are.equal("1e-08", show(1e-8, "%g"))
    assert.are.equal("3", show(3))
    assert.are.equal("abc", show("abc", "%g")) -- the format is for numbers only
  end)
end)

describe("a dimension far out of range", function()
  it("is named as given, not truncated to a C int", function()
    -- x:sum(2^40) said "dimension 0 out of range"
    local x = cnn.ones(3, 4)
    err(function() return x:sum(1 << 40) end, "sum: dimension 1099511627776 out of range %(expected 1..2 or %-2..%-1%)")
    err(function() return x:size(math.mininteger) end, "size: dimension %-9223372036854775808 out of range")
    assert.are.equal(12, x:sum():item())
  end)
end)
