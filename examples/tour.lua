-- A tour of tensors and autograd: run `cnnlua examples/tour.lua`, or paste lines into `cnnlua`.
-- Fits y = 3x - 2 by gradient descent on a hand-written model, checks a gradient, then works the
-- course's shopping example backwards and prints its computational graph.
local graph_path -- where to draw the shopping example's graph (the one argument), or nil
if arg and arg[0] and arg[0]:match("tour%.lua$") then -- run as a script: an optional path and --help
  local parser = require("argparse")("tour.lua",
    "A tour of tensors and autograd: fit a line, check a gradient, draw a graph.")
  parser:argument("graph", "also draw the graph into this file (.png, .svg or .pdf; needs Graphviz's dot)")
    :args("?")
  parser:epilog("Run it, or paste its lines into cnnlua one by one.")
  graph_path = parser:parse(cnn.util.cli_args(arg)).graph
end
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

-- The course's shopping example, backpropagation on a drawn computational graph: 2 apples at 10
-- each and 3 oranges at 15 each, with 10% tax. backward() gives how much the total moves for a
-- unit change of each input: the apple price 2 * 1.1 = 2.2, the number of apples 10 * 1.1 = 11,
-- the orange price 3.3, the number of oranges 16.5, the tax rate 2 * 10 + 3 * 15 = 65.
local apple, apples = cnn.tensor(10.0):requires_grad_(), cnn.tensor(2.0):requires_grad_()
local orange, oranges = cnn.tensor(15.0):requires_grad_(), cnn.tensor(3.0):requires_grad_()
local tax = cnn.tensor(1.1):requires_grad_()
local total = (apple * apples + orange * oranges) * tax
total:backward()
print(string.format("total %.1f; gradients: apple %.1f, apples %.0f, orange %.1f, oranges %.1f, tax %.0f",
  total:item(), apple.grad:item(), apples.grad:item(), orange.grad:item(), oranges.grad:item(), tax.grad:item()))

-- the graph itself (Graphviz DOT); `cnnlua examples/tour.lua shop.svg` also draws it
local names = {apple = apple, apples = apples, orange = orange, oranges = oranges, tax = tax}
print(cnn.autograd.graph(total, {params = names, name = "total", values = true, path = graph_path}))
