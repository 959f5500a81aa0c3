-- cnn.autograd.graph: the nodes (grad_fn names), leaves and edges of small graphs worked out by
-- hand, names from a module's parameters or a table, the DOT text, writing .dot and (with
-- Graphviz) .svg files, the error when dot is missing, and misuse.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")

local graph = cnn.autograd.graph

-- edges as "from -> to shape" strings, sorted, with node and leaf ids replaced by their labels
local function edge_set(g)
  local label = {out = "out"}
  for _, n in ipairs(g.nodes) do label[n.id] = n.name end
  for _, l in ipairs(g.leaves) do label[l.id] = l.name or ("leaf " .. table.concat(l.shape, "x")) end
  local out = {}
  for _, e in ipairs(g.edges) do
    out[#out + 1] = string.format("%s -> %s {%s}%s", label[e.from], label[e.to], table.concat(e.shape, ", "),
      e.output and (" #" .. e.output) or "")
  end
  table.sort(out)
  return out
end

local function has_cmd(name)
  local ok = os.execute("command -v " .. name .. " > /dev/null 2>&1")
  return ok == true or ok == 0
end

describe("cnn.autograd.graph", function()
  it("names each node as its grad_fn and links each input to its consumer with the input's shape", function()
    local a = cnn.randn(2, 3):requires_grad_()
    local b = cnn.randn(3):requires_grad_()
    local c = cnn.randn(2, 3) -- needs no gradient: not drawn
    local y = ((a * b + c):relu() + a):sum()
    local dot, g = graph(y, {params = {a = a, b = b}, name = "y"})
    -- y = sum(add(relu(add(mul(a, b), c)), a)): five nodes, the first y's own grad_fn
    assert.are.equal("SumBackward", g.nodes[1].name)
    assert.are.equal(y.grad_fn, g.nodes[1].name)
    local names = {}
    for i, n in ipairs(g.nodes) do names[i] = n.name end
    table.sort(names)
    assert.are.same({"AddBackward", "AddBackward", "MulBackward", "ReluBackward", "SumBackward"}, names)
    assert.are.same({
      "AddBackward -> ReluBackward {2, 3}", -- mul(a, b) + c, the inner add
      "AddBackward -> SumBackward {2, 3}", -- relu(...) + a, the outer one
      "MulBackward -> AddBackward {2, 3}",
      "ReluBackward -> AddBackward {2, 3}",
      "SumBackward -> out {}",
      "a -> AddBackward {2, 3}",
      "a -> MulBackward {2, 3}",
      "b -> MulBackward {3}", -- the shape b had, before broadcasting
    }, edge_set(g))
    -- a leaf used twice is one box
    assert.are.equal(2, #g.leaves)
    -- the DOT text says the same
    assert.truthy(dot:find("^digraph autograd {\n"))
    assert.truthy(dot:find('out [label="y\\n{}"', 1, true), dot)
    assert.truthy(dot:find('[label="a\\n{2, 3}"', 1, true), dot)
    assert.truthy(dot:find('n1 [label="SumBackward"];', 1, true), dot)
    assert.truthy(dot:find("n1 -> out [label=\"{}\"];", 1, true), dot)
    local arrows = 0
    for _ in dot:gmatch(" %-> ") do arrows = arrows + 1 end
    assert.are.equal(8, arrows)
  end)

  it("shows the course's shopping example with its values and gradients", function()
    local apple, apples = cnn.tensor(10.0):requires_grad_(), cnn.tensor(2.0):requires_grad_()
    local tax = cnn.tensor(1.1):requires_grad_()
    local total = apple * apples * tax
    total:backward()
    local dot, g = graph(total, {params = {apple = apple, apples = apples, tax = tax}, name = "total", values = true})
    assert.are.same({"MulBackward -> MulBackward {}", "MulBackward -> out {}", "apple -> MulBackward {}",
      "apples -> MulBackward {}", "tax -> MulBackward {}"}, edge_set(g))
    -- 2 apples at 10 with 10% tax: 22; d/d price = 2.2, d/d count = 11, d/d tax = 20 (the seeds' values)
    assert.truthy(dot:find('"total\\n{}\\n= 22"', 1, true), dot)
    assert.truthy(dot:find('"apple\\n{}\\n= 10, grad 2.2"', 1, true), dot)
    assert.truthy(dot:find('"apples\\n{}\\n= 2, grad 11"', 1, true), dot)
    assert.truthy(dot:find('"tax\\n{}\\n= 1.1, grad 20"', 1, true), dot)
  end)

  it("names the leaves after a module's parameters", function()
    cnn.manual_seed(1)
    local net = cnn.nn.Sequential(cnn.nn.Linear(4, 3), cnn.nn.ReLU(), cnn.nn.Linear(3, 2))
    local x = cnn.randn(5, 4)
    local loss = cnn.F.cross_entropy(net(x), cnn.tensor({1, 2, 1, 2, 2}, {dtype = "int64"}))
    local _, g = graph(loss, {params = net})
    local leaves = {}
    for _, l in ipairs(g.leaves) do leaves[#leaves + 1] = l.name end
    table.sort(leaves)
    assert.are.same({"0.bias", "0.weight", "2.bias", "2.weight"}, leaves)
    assert.are.equal(loss.grad_fn, g.nodes[1].name)
  end)

  it("marks which output of a node with several an edge carries", function()
    local two = cnn.autograd.Function {
      name = "SplitBackward",
      forward = function(_, x) return x * 2, x * 3 end,
      backward = function(_, ga, gb) return ga * 2 + gb * 3 end,
    }
    local x = cnn.randn(3):requires_grad_()
    local p, q = two(x)
    local _, g = graph(q - p)
    assert.are.same({"SplitBackward -> SubBackward {3} #1", "SplitBackward -> SubBackward {3} #2",
      "SubBackward -> out {3}", "leaf 3 -> SplitBackward {3}"}, edge_set(g))
    local _, g2 = graph(q)
    assert.are.same({"SplitBackward -> out {3} #2", "leaf 3 -> SplitBackward {3}"}, edge_set(g2))
  end)

  it("draws a leaf alone, and a tensor outside any graph as a box alone", function()
    local w = cnn.ones(2):requires_grad_()
    local _, g = graph(w, {params = {w = w}})
    assert.are.same({"w -> out {2}"}, edge_set(g))
    local dot, g2 = graph(cnn.ones(2))
    assert.are.same({}, g2.edges)
    assert.truthy(dot:find('out [label="output\\n{2}"', 1, true), dot)
  end)

  it("writes the DOT text to a .dot path, and SVG through Graphviz when it is installed", function()
    local dir = H.tmpdir()
    local a = cnn.ones(2):requires_grad_()
    local y = (a * 2):sum()
    local dot = graph(y, {path = dir .. "/g.dot"})
    assert.are.equal(dot, H.read_bytes(dir .. "/g.dot"))
    if has_cmd("dot") then
      graph(y, {path = dir .. "/g.svg"})
      local svg = H.read_bytes(dir .. "/g.svg")
      assert.truthy(svg:find("<svg", 1, true))
      assert.truthy(svg:find("MulBackward", 1, true))
    end
    H.rmdir(dir)
  end)

  it("says what is missing when Graphviz's dot is not on PATH", function()
    local cnnlua = assert(os.getenv("CNNLUA"), "ctest sets CNNLUA")
    local dir = H.tmpdir()
    local p = io.popen("PATH=/nonexistent '" .. cnnlua .. "' -e \"local a = cnn.ones(1):requires_grad_(); " ..
      "print(pcall(cnn.autograd.graph, a * 2, {path = '" .. dir .. "/g.png'}))\" 2>&1")
    local out = p:read("a")
    p:close()
    assert.truthy(out:find("false", 1, true), out)
    assert.truthy(out:find("graph: writing " .. dir .. "/g.png needs Graphviz's dot program", 1, true), out)
    assert.truthy(out:find("apt-get install graphviz", 1, true), out)
    H.rmdir(dir)
  end)

  it("rejects misuse, naming the function and the problem", function()
    local y = (cnn.ones(2):requires_grad_() * 2):sum()
    H.assert_error(function() graph(42) end, "graph", "expected a tensor")
    H.assert_error(function() graph(y, {path = "g.jpg"}) end, "graph", "must end in .dot, .gv, .svg, .png or .pdf")
    H.assert_error(function() graph(y, {params = {w = 3}}) end, "graph", "params must map names to tensors")
    H.assert_error(function() graph(y, {params = "w"}) end, "graph", "params must be a module or a table")
    H.assert_error(function() graph(y, {colour = true}) end, "graph", "unknown option 'colour'")
    H.assert_error(function() graph(y, {path = "/nonexistent/dir/g.dot"}) end, "graph", "cannot write")
    H.assert_usable()
  end)
end)
