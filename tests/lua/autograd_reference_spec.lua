-- Composite expressions against PyTorch: tests/fixtures/autograd_reference.lua (written by
-- scripts/tools/gen_autograd_fixtures.py) holds inputs, outputs and input gradients computed by
-- PyTorch's autograd. Each case's expression is written here again in Lua, with 1-based dims and
-- indices; the names match the Python script's cases one to one.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local REF = dofile("tests/fixtures/autograd_reference.lua")
local RTOL, ATOL = 1e-5, 1e-6

local function idx(list) return cnn.tensor(list, { dtype = "int64" }) end

local EXPR = {
  broadcast_mul_sum = function(a, b, c)
    return (a * b + c):sum()
  end,
  broadcast_sub_div = function(a, b)
    return (a - b) / b - 1.5 / (b + a * a + 3.0)
  end,
  matmul_2d = function(a, b)
    return a:matmul(b)
  end,
  matmul_batched_broadcast = function(a, b)
    return cnn.matmul(a, b)
  end,
  matmul_batched_3d = function(a, b)
    return cnn.matmul(a, b)
  end,
  matmul_vector = function(v, m, w)
    return cnn.matmul(cnn.matmul(v, m), w)
  end,
  mm_transposed = function(a, b)
    return a:t():mm(b:t())
  end,
  softmax_chain = function(x, w)
    local m = x:max(2, true)
    local e = (x - m):exp()
    local s = e / e:sum(2, true)
    return -(w * s:log()):sum() / 3.0
  end,
  var_std_dims = function(x)
    return x:var(2, true) * x:std(1, true) + x:var() - x:std()
  end,
  var_std_nokeep = function(x)
    return x:var(3):sum(1) + x:std(1):mean(2)
  end,
  mean_dims = function(x)
    return x:mean(2) * x:mean() + x:mean(-1):mean(2, true)
  end,
  max_min_dim = function(x)
    local v = x:max(2)
    local w = x:min(1)
    return (v * 2.0):sum() + (w * w):sum() + x:max() - x:min()
  end,
  pow_family = function(x, y)
    return x ^ 3 + x ^ y + 2.0 ^ y + x ^ 0.5 - x ^ -1.5
  end,
  clamp_relu_abs = function(x, y)
    return x:clamp(-0.5, 0.5) * y + x:relu() + x:abs() * 0.25 - (-x)
  end,
  unary_chain = function(x)
    return (x:sqrt() + x:log()):tanh() * x:sigmoid() + (-x):exp()
  end,
  cat_stack_index_select = function(a, b, c)
    local ab = cnn.cat({ a, b }, 2)
    local ac = cnn.stack({ a, c }, 1)
    local picked = ab:index_select(2, idx({ 5, 1, 5 }))
    return ac:sum(1) * picked + cnn.stack({ a, c }, 3):sum(3)
  end,
  permute_reshape = function(x, w)
    local y = x:permute(3, 1, 2):reshape(4, 6)
    return y:matmul(w):t():contiguous():view(-1)
  end,
  view_ops = function(x, b)
    local y = x:squeeze(2):unsqueeze(1):expand(4, 2, 3)
    local z = y:transpose(1, 3):flatten(2)
    return z * b:unsqueeze(2) + x:flatten():clone():view(3, 2):sum(2, true)
  end,
  select_narrow_index = function(x)
    return x[2] * x:select(2, -1):sum() + x:narrow(2, 2, 2):sum(2):unsqueeze(2) * x[3]
  end,
  reused_input = function(x)
    return (x * x + x:exp() * x - x):sum()
  end,
  scalar_sides = function(x)
    return 1.0 - x + 2.0 / x - (3.0 * x) / 4.0 + (x + 2.0) * (-x)
  end,
  zero_dim = function(s, v)
    return (s * v + s ^ 2):sum() * s
  end,
}

local function from_fixture(entry, requires_grad)
  local t = cnn.tensor(entry.data)
  if #entry.shape == 0 then
    assert.are.same({}, t:shape())
  end
  if requires_grad then t:requires_grad_(true) end
  return t
end

describe("autograd against PyTorch", function()
  it("covers every fixture case with a Lua expression and vice versa", function()
    local seen = {}
    for _, case in ipairs(REF.cases) do
      assert.is_not_nil(EXPR[case.name], "no Lua expression for case " .. case.name)
      seen[case.name] = true
    end
    for name in pairs(EXPR) do
      assert.is_true(seen[name] == true, "no fixture for Lua expression " .. name)
    end
  end)

  for _, case in ipairs(REF.cases) do
    local fn = EXPR[case.name]
    if fn then
      describe(case.name, function()
        local inputs, out
        local function run()
          inputs = {}
          for i, entry in ipairs(case.inputs) do
            inputs[i] = from_fixture(entry, case.requires_grad[i])
          end
          out = fn(table.unpack(inputs))
        end

        it("forward matches PyTorch", function()
          run()
          H.assert_tensor(out, case.output, { rtol = RTOL, atol = ATOL })
        end)

        it("gradients match PyTorch", function()
          run()
          if case.grad_output then
            out:backward(cnn.tensor(case.grad_output.data))
          else
            out:backward()
          end
          for i, g in ipairs(case.grads) do
            if g then
              assert.is_not_nil(inputs[i].grad, "input " .. i .. " has no gradient")
              H.assert_tensor(inputs[i].grad, g, { rtol = RTOL, atol = ATOL })
            else
              assert.is_nil(inputs[i].grad)
            end
          end
        end)

        if case.extra and case.extra.max_indices then
          it("max/min indices match PyTorch's (shifted to 1-based)", function()
            run()
            local x = inputs[1]
            local _, imax = x:max(2)
            local _, imin = x:min(1)
            H.assert_tensor(imax, case.extra.max_indices, { dtype = "int64" })
            H.assert_tensor(imin, case.extra.min_indices, { dtype = "int64" })
          end)
        end
      end)
    end
  end
end)
