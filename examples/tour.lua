-- A tour of tensors and autograd: run `cnnlua examples/tour.lua`, or paste lines into `cnnlua`.
-- Fits y = 3x - 2 by gradient descent on a hand-written model, then checks a gradient.
cnn.manual_seed(0)

local x = cnn.linspace(-1, 1, 64):view(64, 1)          -- (64, 1)
local y = x * 3 - 2 + cnn.randn(64, 1) * 0.05          -- noisy targets

local w = cnn.zeros(1, 1):requires_grad_()
local b = cnn.zeros(1):requires_grad_()

for step = 1, 200 do
  local pred = x:matmul(w) + b                          -- broadcasting adds b to every row
  local loss = ((pred - y) ^ 2):mean()
  w.grad, b.grad = nil, nil
  loss:backward()
  cnn.no_grad(function()                                -- updates are not part of the graph
    w:add_(w.grad, -0.1)
    b:add_(b.grad, -0.1)
  end)
  if step % 50 == 0 then print(string.format("step %3d  loss %.5f", step, loss:item())) end
end
print(string.format("fitted w = %.3f, b = %.3f (true 3, -2)", w:item(), b:item()))

-- autograd agrees with finite differences on a small composite function
local a = cnn.randn(3, 4):requires_grad_()
local ok = cnn.autograd.gradcheck(function(t) return (t:tanh() * t):sum(2):exp() end, {a}, {eps = 1e-2, atol = 1e-2})
print("gradcheck:", ok)
