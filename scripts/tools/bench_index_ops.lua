-- CPU seconds per call of the ops along one dim (join.c's kernels): cumsum over 10^6, sort,
-- gather and scatter_add of n x n along dim 2, F.pad reflect of (8, 64, n, n) by 2. Prints each
-- call's os.clock() time (process CPU) and their median, the first call (allocator warm-up) left out.
--   cnnlua scripts/tools/bench_index_ops.lua [n=1000] [reps=7]
local n, reps = tonumber(arg[1] or 1000), tonumber(arg[2] or 7)
cnn.manual_seed(1)
local x, idx, src = cnn.randn(n, n), cnn.randint(1, n, {n, n}), cnn.randn(n, n)
local long, img = cnn.randn(1000000), cnn.randn(8, 64, 64, 64)
local cases = {
  {"cumsum 1e6", function() return long:cumsum(1) end},
  {"sort " .. n .. "x" .. n, function() return x:sort(2) end},
  {"gather " .. n .. "x" .. n, function() return x:gather(2, idx) end},
  {"scatter_add " .. n .. "x" .. n, function() return x:scatter_add(2, idx, src) end},
  {"pad reflect 8x64x64x64", function() return cnn.F.pad(img, {2, 2, 2, 2}, "reflect") end},
}
for _, c in ipairs(cases) do
  local times = {}
  for r = 0, reps do
    local t0 = os.clock()
    c[2]()
    if r > 0 then times[#times + 1] = os.clock() - t0 end
    collectgarbage()
  end
  table.sort(times)
  print(string.format("%-24s median %.2f ms (min %.2f, max %.2f over %d)", c[1], 1000 * times[(#times + 1) // 2],
    1000 * times[1], 1000 * times[#times], #times))
end
