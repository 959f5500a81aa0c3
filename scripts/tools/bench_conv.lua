-- Convolution speed in cnnlua: forward, and forward + backward (input, weight and bias gradients)
-- of F.conv2d on LeNet's, ResNet-CIFAR's and AlexNet's conv1 layer shapes; plus the rate of one
-- sgemm of each layer's per-image forward GEMM shape (O x C*k*k times C*k*k x oh*ow) via cnn.matmul.
-- Median (or --stat min) wall time of --reps runs after --warmup. bench_conv.py measures PyTorch
-- the same way and bench_conv.sh prints the two side by side.
--   cnnlua scripts/tools/bench_conv.lua [--threads 2] [--reps 7] [--warmup 2] [--only NAME] [--stat median|min]
--                                      [--clock wall|cpu]
-- (min is the better estimate of the unloaded time when other processes share the cores; --clock cpu
-- times the process's CPU time, all threads summed: with --threads 1, the single-core time, which
-- other jobs on the machine disturb far less than wall time)
local cnn = require "cnn"
local F = cnn.F

local opts = { threads = 2, reps = 7, warmup = 2, stat = "median", clock = "wall" }
local i = 1
while arg and arg[i] do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil and k ~= "only" then error("bench_conv: unknown argument " .. arg[i]) end
  opts[k] = (k == "only" or k == "stat" or k == "clock") and arg[i + 1] or tonumber(arg[i + 1])
  i = i + 2
end

-- name, batch, in channels, H (= W), out channels, kernel, stride, padding
local LAYERS = {
  { "lenet_conv1", 64, 1, 28, 6, 5, 1, 2 },
  { "lenet_conv2", 64, 6, 14, 16, 5, 1, 0 },
  { "resnet_16x32x32", 128, 16, 32, 16, 3, 1, 1 },
  { "resnet_32x16x16", 128, 32, 16, 32, 3, 1, 1 },
  { "resnet_64x8x8", 128, 64, 8, 64, 3, 1, 1 },
  { "alexnet_conv1", 16, 3, 227, 96, 11, 4, 0 },
}

local function summary(ts)
  table.sort(ts)
  if opts.stat == "min" then return ts[1] end
  local n = #ts
  return n % 2 == 1 and ts[(n + 1) / 2] or (ts[n / 2] + ts[n / 2 + 1]) / 2
end

local clock = opts.clock == "cpu" and os.clock or cnn.wall_time

local function timed(fn)
  for _ = 1, opts.warmup do fn(); collectgarbage() end
  -- and at least 0.2 s of warm-up: thread pools settle (OpenBLAS's workers spin for a while after start)
  local t_end = clock() + 0.2
  while clock() < t_end do fn(); collectgarbage() end
  local ts = {}
  for r = 1, opts.reps do
    collectgarbage() -- last rep's tensors back to the allocator's cache, as PyTorch's refcounts do at once
    local t0 = clock()
    fn()
    ts[r] = clock() - t0
  end
  return summary(ts)
end

cnn.set_num_threads(opts.threads)
cnn.manual_seed(0)
local results = {}
-- Convolutions first, GEMMs after: a threaded sgemm leaves OpenBLAS's workers spinning for tens of
-- milliseconds, which would slow the runtime's threads in the convolution measured next.
for _, l in ipairs(LAYERS) do
  local name, N, C, H, O, k, s, p = table.unpack(l)
  if not opts.only or name:find(opts.only, 1, true) then
    local x = cnn.randn(N, C, H, H):requires_grad_()
    local w = (cnn.randn(O, C, k, k) * 0.1):requires_grad_()
    local b = cnn.zeros(O):requires_grad_()
    local o = (H + 2 * p - k) // s + 1
    local gy = cnn.randn(N, O, o, o)
    -- flop: the forward's; the backward (input and weight gradients) is twice that
    local r = { name = name, C = C, O = O, k = k, o = o, flop = 2.0 * N * O * o * o * C * k * k }
    r.fwd = timed(function()
      cnn.no_grad(function() return F.conv2d(x, w, b, { stride = s, padding = p }) end)
    end)
    r.both = timed(function()
      x.grad, w.grad, b.grad = nil, nil, nil
      F.conv2d(x, w, b, { stride = s, padding = p }):backward(gy)
    end)
    results[#results + 1] = r
    collectgarbage()
  end
end
print(string.format("# cnnlua conv2d, %d threads, %s of %d, %s time", opts.threads, opts.stat, opts.reps, opts.clock))
print("# layer fwd_ms fwdbwd_ms fwd_gflops fwdbwd_gflops gemm_gflops")
for _, r in ipairs(results) do
  local C, O, k = r.C, r.O, r.k
  -- one per-image forward GEMM: (O, C*k*k) @ (C*k*k, o*o)
  local A, B = cnn.randn(O, C * k * k), cnn.randn(C * k * k, r.o * r.o)
  local gemm = timed(function() return cnn.matmul(A, B) end)
  print(string.format("%s %.3f %.3f %.1f %.1f %.1f", r.name, r.fwd * 1e3, r.both * 1e3, r.flop / r.fwd * 1e-9,
    3 * r.flop / r.both * 1e-9, 2.0 * O * C * k * k * r.o * r.o / gemm * 1e-9))
end
