-- cnn.hpsearch: spaces, grid enumeration, ranking and outputs in this process (workers = 0), and,
-- through small standalone scripts run with $CNNLUA, the worker processes: failures, resume after
-- Ctrl-C, per-trial seeds, ASHA's pruning, emitted commands and their merge. Objectives are cheap
-- functions of the params (no training), so every search takes a second or two.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")
local hp = require "cnn.hpsearch"
local space = require "cnn.hpsearch.space"
local dkjson = require "dkjson"

local CNNLUA = assert(os.getenv("CNNLUA"), "CNNLUA must point at the cnnlua binary (ctest sets it)")

local sh_quote = H.sh_quote

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function lines_of(path, pattern)
  local out = {}
  for line in (read(path) or ""):gmatch("[^\n]+") do
    if not pattern or line:find(pattern) then out[#out + 1] = line end
  end
  return out
end

local tmp
setup(function()
  tmp = os.tmpname()
  os.remove(tmp)
  H.mkdir_p(tmp)
end)

teardown(function()
  H.rmdir(tmp)
end)

-- Scripts share this prelude: RESULT prints the search's result as one JSON line.
local prelude = [[
local hp = require "cnn.hpsearch"
local json = require "cnn.hpsearch.json"
local function RESULT(res)
  io.write("RESULT ", json.encode{trials = res.trials, best = res.best or false, total_steps = res.total_steps or false,
    interrupted = res.interrupted, pid = require("cnn.hpsearch.trial").pid()}, "\n")
end
]]

local function script(name, body)
  local path = tmp .. "/" .. name .. ".lua"
  write(path, prelude .. body)
  return path
end

local function run(path, args)
  local p = assert(io.popen(sh_quote(CNNLUA) .. " " .. sh_quote(path) .. " " .. (args or "") .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

local function result_of(out)
  local line = out:match("RESULT ([^\n]+)")
  assert(line, "the script printed no RESULT line:\n" .. out)
  local r = dkjson.decode(line)
  for _, t in ipairs(r.trials) do
    if t.metric == "nan" then t.metric = 0 / 0 end
  end
  return r
end

local function quad(p) return (p.x - 0.3) ^ 2 end

describe("hpsearch spaces", function()
  it("sample within their ranges, the same values for the same (seed, trial), other values otherwise", function()
    local sp = space.normalize{u = hp.uniform(-1, 3), l = hp.loguniform(1e-4, 1), r = hp.randint(2, 5),
                               c = hp.choice{"a", "b", true}, fixed = 7}
    local seen_r, seen_c, below_mid, n = {}, {}, 0, 2000
    for i = 1, n do
      local p = space.sample(sp, 42, i)
      assert.is_true(p.u >= -1 and p.u < 3)
      assert.is_true(p.l >= 1e-4 and p.l <= 1)
      if p.l < 1e-2 then below_mid = below_mid + 1 end -- 1e-2 is the geometric middle of [1e-4, 1]
      assert.are.equal("integer", math.type(p.r))
      assert.is_true(p.r >= 2 and p.r <= 5)
      seen_r[p.r] = true
      seen_c[tostring(p.c)] = true
      assert.are.equal(7, p.fixed)
    end
    assert.are.same({[2] = true, [3] = true, [4] = true, [5] = true}, seen_r) -- both ends included
    assert.are.same({a = true, b = true, ["true"] = true}, seen_c)
    -- log-uniform: half the draws below the geometric middle (binomial sd 1.1% at n = 2000)
    assert.is_true(math.abs(below_mid / n - 0.5) < 0.05, "fraction below 1e-2: " .. below_mid / n)
    assert.are.same(space.sample(sp, 42, 7), space.sample(sp, 42, 7))
    assert.are_not.same(space.sample(sp, 42, 7), space.sample(sp, 43, 7))
    assert.are_not.same(space.sample(sp, 42, 7), space.sample(sp, 42, 8))
    assert.are.equal(space.trial_seed(42, 3), space.trial_seed(42, 3))
    assert.are_not.equal(space.trial_seed(42, 3), space.trial_seed(42, 4))
  end)

  it("randint draws within ranges wider than an integer's difference (hi - lo wraps)", function()
    -- hp.randint(0, math.maxinteger) drew negative numbers, (mininteger, maxinteger) only the lower end
    local big = math.maxinteger
    for _, r in ipairs({{0, big}, {math.mininteger, big}, {-(1 << 62), 1 << 62}, {big - 3, big}}) do
      local sp = space.normalize{x = hp.randint(r[1], r[2])}
      local negative, positive = 0, 0
      for i = 1, 200 do
        local x = space.sample(sp, 7, i).x
        assert.are.equal("integer", math.type(x))
        assert.is_true(x >= r[1] and x <= r[2], string.format("%d not in [%d, %d]", x, r[1], r[2]))
        if x < r[1] // 2 + r[2] // 2 then negative = negative + 1 else positive = positive + 1 end
      end
      assert.is_true(negative > 50 and positive > 50,
        string.format("[%d, %d]: %d below the middle", r[1], r[2], negative))
    end
    -- bounds written as powers (floats in Lua) are taken when integral; a grid names the count
    assert.are.equal(-(1 << 62), hp.randint(-2 ^ 62, 2 ^ 62).lo)
    assert.has_error(function()
      hp.search{space = {x = hp.randint(0, big)}, objective = function() return 1 end, strategy = "grid",
        mode = "max", workers = 0, quiet = true}
    end, "hpsearch.search: grid search over randint 'x' (9.223372036854776e+18 values) needs n points: " ..
      "hp.randint(0, 9223372036854775807, {n = 5})")
  end)

  it("reject bad ranges and values with the function's name", function()
    assert.has_error(function() hp.uniform(1, 1) end, "hpsearch.uniform: expected low < high, got 1 and 1")
    assert.has_error(function() hp.loguniform(0, 1) end, "hpsearch.loguniform: bounds must be positive, got 0")
    assert.has_error(function() hp.randint(1.5, 3) end, "hpsearch.randint: bounds must be integers, got 1.5 and 3")
    assert.has_error(function() hp.choice{} end, "hpsearch.choice: the list of values is empty")
    assert.has_error(function() hp.choice{1, {}} end,
      "hpsearch.choice: value 2 must be a number, a string or a boolean, got table")
    assert.has_error(function() hp.uniform(0, 1, {m = 3}) end, "hpsearch.uniform: unknown option 'm'")
  end)
end)

describe("hpsearch logs", function()
  it("keep at most 4 KiB of a failed trial's message", function()
    -- error(string.rep("E", 200000)) was kept whole in the result and the log, and printed whole
    local log = tmp .. "/big.jsonl"
    local r = hp.search{space = {x = {1}}, objective = function() error(string.rep("E", 200000), 0) end,
      mode = "max", trials = 1, workers = 0, quiet = true, log = log}
    local m = r.trials[1].message
    assert.are.equal(string.rep("E", 4096) .. "... (195904 more bytes)", m)
    local f = io.open(log)
    local text = f:read("a")
    f:close()
    assert.is_true(#text < 20000, #text .. " bytes of log")
    os.remove(log)
  end)

  it("name an error object that is not a string by its __tostring or its type (was 'table: 0x...')", function()
    for _, workers in ipairs({0, 2}) do
      local r = hp.search{space = {a = hp.choice{1, 2, 3}}, strategy = "grid", mode = "max", quiet = true,
        workers = workers, objective = function(p)
          if p.a == 1 then error({code = 3}) end
          if p.a == 2 then error(setmetatable({}, {__tostring = function() return "custom failure" end})) end
          error(42)
        end}
      local got = {}
      for i, t in ipairs(r.trials) do got[i] = t.status .. ": " .. t.message end
      assert.are.same({"failed: (error object is a table value)", "failed: custom failure", "failed: 42"}, got)
    end
  end)

  it("a record appended to a log cut short starts a line of its own", function()
    -- the search's start record was glued to the garbage of a file without a final newline
    local json = require "cnn.hpsearch.json"
    local path = tmp .. "/cut.jsonl"
    H.write_bytes(path, "{\"index\":1,\"sta") -- a record cut by a full disk
    json.append(path, {type = "search"})
    json.append(path, {index = 2})
    assert.are.equal('{"index":1,"sta\n{"type":"search"}\n{"index":2}\n', H.read_bytes(path))
    os.remove(path)
    json.append(path, {index = 1}) -- a new file: no blank first line
    assert.are.equal('{"index":1}\n', H.read_bytes(path))
    os.remove(path)
    -- a write that fails (a full disk: /dev/full) is an error; it was ignored, the search went on
    if io.open("/dev/full", "rb") then
      H.assert_error(function() json.append("/dev/full", {index = 3}) end, "hpsearch: cannot append to /dev/full",
        "No space left on device")
    end
  end)
end)

describe("hpsearch.Result.new", function()
  it("checks its fields by name", function()
    local R = hp.Result
    H.assert_error(function() return R.new(3) end, "hpsearch.Result.new: expected a table of fields, got number")
    H.assert_error(function() return R.new {} end, "hpsearch.Result.new: trials must be a list of trial tables")
    H.assert_error(function() return R.new {trials = {3}} end, "hpsearch.Result.new: trials%[1%] must be a table")
    H.assert_error(function() return R.new {trials = {{status = "ok"}}} end, "trials%[1%] is ok but its metric is nil")
    H.assert_error(function() return R.new {trials = {}, mode = "maximum"} end, 'mode must be "min" or "max"')
    local r = R.new {trials = {{status = "ok", metric = 0.5, index = 1}, {status = "ok", metric = 0.25, index = 2}}}
    assert.are.equal(0.25, r.best.metric)
  end)
end)

describe("hpsearch grid", function()
  it("enumerates the product in name order, the last name fastest; a plain list is a choice", function()
    local calls = {}
    local res = hp.search{
      space = {b = {10, 20}, a = hp.loguniform(1e-3, 1e-1, {n = 3}), c = "fixed"},
      strategy = "grid", workers = 0, mode = "min", quiet = true,
      objective = function(p)
        calls[#calls + 1] = p
        return p.a * p.b
      end,
    }
    local want = {}
    for _, a in ipairs{1e-3, 1e-2, 1e-1} do
      for _, b in ipairs{10, 20} do want[#want + 1] = {a = a, b = b, c = "fixed"} end
    end
    assert.are.equal(6, #res.trials)
    for i, w in ipairs(want) do
      assert.are.equal(w.b, res.trials[i].params.b)
      assert.is_true(math.abs(res.trials[i].params.a - w.a) <= 1e-15 * w.a, "a of point " .. i)
      assert.are.equal("fixed", res.trials[i].params.c)
      assert.are.same(res.trials[i].params, calls[i])
    end
    local lin = hp.search{space = {u = hp.uniform(-1, 1, {n = 5}), k = hp.randint(1, 3)}, strategy = "grid",
                          workers = 0, mode = "max", quiet = true, objective = function(p) return p.u end}
    local us = {}
    for i = 1, 5 do us[i] = lin.trials[i].params.u end
    assert.are.same({-1, -0.5, 0, 0.5, 1}, us)
    assert.are.same({1, 2, 3}, {lin.trials[1].params.k, lin.trials[6].params.k, lin.trials[11].params.k})
  end)

  it("over a range without n is an error that says how to give it", function()
    assert.has_error(function()
      hp.search{space = {lr = hp.uniform(0, 1)}, strategy = "grid", mode = "max", objective = quad}
    end, "hpsearch.search: grid search over uniform 'lr' needs n points: hp.uniform(0, 1, {n = 5})")
  end)
end)

describe("hpsearch.search options", function()
  local ok_spec = function(extra)
    local s = {space = {x = hp.uniform(0, 1)}, mode = "min", objective = quad, workers = 0, quiet = true}
    for k, v in pairs(extra) do s[k] = v end
    return s
  end
  it("are checked, each error naming the problem", function()
    assert.has_error(function() hp.search(ok_spec{trails = 3}) end, "hpsearch.search: unknown option 'trails'")
    assert.has_error(function() hp.search(ok_spec{mode = "best"}) end,
      "hpsearch.search: mode must be \"max\" or \"min\" (is a higher metric better?), got best")
    assert.has_error(function() hp.search(ok_spec{strategy = "bayes"}) end,
      "hpsearch.search: strategy must be \"grid\", \"random\" or \"asha\", got bayes")
    assert.has_error(function() hp.search(ok_spec{strategy = "asha"}) end,
      "hpsearch.search: strategy \"asha\" needs max_steps (a positive number: the steps a trial that is never " ..
      "stopped runs), got nil")
    assert.has_error(function() hp.search(ok_spec{eta = 2}) end,
      "hpsearch.search: eta applies to strategy \"asha\" only")
    assert.has_error(function() hp.search(ok_spec{threads = 5000}) end,
      "hpsearch.search: threads must be at most 1024, got 5000")
    -- it was ignored: a trial in this process cannot be stopped
    assert.has_error(function() hp.search(ok_spec{timeout = 3}) end,
      "hpsearch.search: timeout needs worker processes (workers >= 1): a trial run in this process " ..
      "(workers = 0) cannot be stopped")
    assert.has_error(function() hp.search(ok_spec{objective = 3}) end,
      "hpsearch.search: objective must be a function(params, report) returning the metric, got number")
    assert.has_error(function() hp.search(ok_spec{space = {x = {a = 1}}}) end,
      "hpsearch.search: space.x must be hp.choice/uniform/loguniform/randint, a list (a choice) or a fixed value, "
      .. "got a table")
  end)

  it("refuse emitted commands that would re-run busted", function()
    assert.has_error(function() hp.search(ok_spec{emit_commands = tmp .. "/never.txt"}) end,
      "hpsearch.search: emitted commands would re-run " .. arg[0] .. "; write the search in a script of its own")
  end)

  it("report() checks its arguments", function()
    local res = hp.search(ok_spec{trials = 1, objective = function(_, report) report("one", 1) end})
    assert.are.equal("failed", res.trials[1].status)
    assert.truthy(res.trials[1].message:find("hpsearch report: step must be a non-negative number, got one", 1, true))
  end)

  it("take a one-element tensor as the metric and as report's value, and name any other tensor", function()
    -- a tensor metric (a loss as computed) failed every trial with "returned a userdata"
    local res = hp.search(ok_spec{trials = 2, objective = function(p, report)
      report(1, cnn.tensor(p.x * 3))
      return cnn.tensor({{p.x * 2}})
    end})
    for _, t in ipairs(res.trials) do
      assert.are.equal("ok", t.status)
      assert.is_true(math.abs(t.metric - t.params.x * 2) < 1e-6)
    end
    res = hp.search(ok_spec{trials = 1, objective = function() return {metric = cnn.tensor(0.5)} end})
    assert.are.equal(0.5, res.trials[1].metric)
    res = hp.search(ok_spec{trials = 1, objective = function() return cnn.ones(2, 3) end})
    assert.are.equal("failed", res.trials[1].status)
    assert.truthy(res.trials[1].message:find("the objective returned a tensor of shape {2, 3}; expected a number " ..
      "(or a one-element tensor)", 1, true))
    res = hp.search(ok_spec{trials = 1, objective = function(_, report) report(1, cnn.ones(2)) end})
    assert.truthy(res.trials[1].message:find("hpsearch report: value must be a number (or a one-element tensor), " ..
      "got a tensor of shape {2}", 1, true))
  end)
end)

describe("hpsearch random search in this process", function()
  local res, calls
  setup(function()
    calls = 0
    cnn.manual_seed(99)
    res = hp.search{space = {x = hp.uniform(-1, 1), k = {1, 2, 3}}, trials = 12, seed = 5, workers = 0, mode = "min",
                    metric = "loss", quiet = true, log = tmp .. "/here/search.jsonl",
                    objective = function(p)
                      calls = calls + 1
                      return {loss = quad(p) * p.k + cnn.rand(1):item() * 1e-3, other = p.k}
                    end}
  end)

  it("returns every trial, the best, and leaves the caller's random stream where it was", function()
    local after = cnn.rand(3)
    cnn.manual_seed(99)
    assert.is_true(cnn.allclose(cnn.rand(3), after, 0, 0))
    assert.are.equal(12, #res.trials)
    local best
    for i, t in ipairs(res.trials) do
      assert.are.equal(i, t.index)
      assert.are.equal("ok", t.status)
      assert.are.equal(t.params.k, t.values.other)
      if not best or t.metric < best.metric then best = t end
    end
    assert.are.equal(best.index, res.best.index)
    assert.are.equal(best.metric, res.best.metric)
    assert.are.same(best.params, res.best.params)
    assert.are.equal(best.seed, res.best.seed)
  end)

  it("gives a trial the same metric when its params run again with its seed", function()
    for _, t in ipairs(res.trials) do
      cnn.manual_seed(t.seed)
      assert.are.equal(quad(t.params) * t.params.k + cnn.rand(1):item() * 1e-3, t.metric)
    end
  end)

  it("resumes from its log: a finished trial never runs again, new trials do", function()
    calls = 0
    local again = hp.search{space = {x = hp.uniform(-1, 1), k = {1, 2, 3}}, trials = 14, seed = 5, workers = 0,
                            mode = "min", metric = "loss", quiet = true, log = tmp .. "/here/search.jsonl",
                            objective = function(p) calls = calls + 1 return quad(p) end}
    assert.are.equal(2, calls)
    for i = 1, 12 do assert.are.equal(res.trials[i].metric, again.trials[i].metric) end
    assert.are.equal(quad(again.trials[13].params), again.trials[13].metric)
    -- another seed is another search: nothing in the log matches
    calls = 0
    hp.search{space = {x = hp.uniform(-1, 1), k = {1, 2, 3}}, trials = 2, seed = 6, workers = 0, mode = "min",
              quiet = true, log = tmp .. "/here/search.jsonl", objective = function() calls = calls + 1 return 0 end}
    assert.are.equal(2, calls)
  end)

  it("resumes only the same search: name and metric are part of it, and an all-done run says so", function()
    -- the real-use helper's find: hparam_search.lua run again with other --epochs re-ranked the first
    -- run's trials as its own (the log matched by index, seed and params only)
    local path = script("named", [[
local name = arg[2] == "-" and nil or (arg[2]:find("=") and {epochs = tonumber(arg[2]:match("=(%d+)"))} or arg[2])
local res = hp.search{space = {x = hp.uniform(-1, 1)}, trials = 3, seed = 4, workers = 0, mode = "min",
  metric = arg[3] ~= "-" and arg[3] or nil, name = name, log = arg[1],
  objective = function(p) io.write("RAN ", p.x, "\n") return {[arg[3] ~= "-" and arg[3] or "metric"] = p.x} end}
RESULT(res)
]])
    local log = tmp .. "/named.jsonl"
    local function ran(args)
      local out, code = run(path, sh_quote(log) .. " " .. args)
      assert.are.equal(0, code, out)
      local n = 0
      for _ in out:gmatch("RAN ") do n = n + 1 end
      return n, out
    end
    assert.are.equal(3, ran("epochs=1 -"))
    local n, out = ran("epochs=1 -") -- the same search: every trial from the log, said so
    assert.are.equal(0, n)
    assert.truthy(out:find("hpsearch: random search, 3 trials, all already done (3 from ", 1, true), out)
    assert.are.equal(3, ran("epochs=2 -"))  -- another name: another search in the same log
    assert.are.equal(3, ran("mine -"))      -- a string name
    assert.are.equal(3, ran("mine acc"))    -- another metric
    assert.are.equal(3, ran("- -"))         -- no name
    assert.are.equal(0, ran("epochs=2 -"))  -- and each resumes its own
    assert.are.equal(0, ran("mine acc"))
    H.assert_error(function()
      hp.search{space = {x = 1}, mode = "min", workers = 0, name = {bad = {1}}, objective = function() return 0 end}
    end, "name's entries must be setting = number, string or boolean")
  end)

  it("ranks the table by metric and aligns its columns", function()
    local text = res:table()
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(12 + 3, #lines) -- header, rule, 12 rows, summary
    assert.truthy(lines[1]:find("^rank%s+trial%s+k%s+x%s+loss%s+status%s+seconds"))
    assert.truthy(lines[2]:find("^%-%-%-%-  %-%-%-%-%-"))
    local sorted = {}
    for i, t in ipairs(res.trials) do sorted[i] = t end
    table.sort(sorted, function(a, b) return a.metric < b.metric end)
    local loss_end = lines[1]:find("loss") + 3 -- numbers are right-aligned under the header
    for r = 1, 12 do
      local row = lines[2 + r]
      local rank, index = row:match("^%s*(%d+)%s+(%d+)")
      assert.are.equal(r, tonumber(rank))
      assert.are.equal(sorted[r].index, tonumber(index))
      assert.are.equal(string.format("%.4g", sorted[r].metric), row:sub(1, loss_end):match("(%S+)$"))
    end
    assert.truthy(lines[15]:find("^12 trials %(12 ok%); best: trial " .. res.best.index .. ", loss = "))
  end)

  it("writes a CSV with one row per trial and a PNG with one panel per parameter", function()
    local csv = res:csv(tmp .. "/here/search.csv")
    assert.are.equal(csv, read(tmp .. "/here/search.csv"))
    local rows = lines_of(tmp .. "/here/search.csv")
    assert.are.equal("trial,seed,status,k,x,loss,steps,seconds,pid,message,other", rows[1]) -- other: returned
    assert.are.equal(13, #rows)
    for i = 1, 12 do
      local t = res.trials[i]
      local idx, seed, status, k, x, loss = rows[i + 1]:match("^(%d+),(%d+),(%a+),([^,]+),([^,]+),([^,]+),")
      assert.are.equal(t.index, tonumber(idx))
      assert.are.equal(t.seed, tonumber(seed))
      assert.are.equal("ok", status)
      assert.are.equal(t.params.k, tonumber(k))
      assert.are.equal(t.params.x, tonumber(x)) -- every digit kept
      assert.are.equal(t.metric, tonumber(loss))
    end
    res:plot(tmp .. "/here/search.png")
    local img = cnn.image.load(tmp .. "/here/search.png")
    assert.are.same({3, 36 + 300, 800}, img:shape()) -- a title over two 400x300 panels in a row
    assert.has_error(function() res:plot(3) end, "result:plot: path must be a string, got number")
    -- a search whose every trial failed is drawn (its crosses on the bottom edge), not refused
    local failed = hp.search{space = {x = hp.uniform(0, 1)}, objective = function() error("boom") end,
      mode = "max", trials = 3, workers = 0, quiet = true}
    local _, layout = failed:plot(tmp .. "/here/failed.png")
    assert.truthy(layout.title:find("3 failed: crosses", 1, true))
    -- plot.panels' refusals come under result:plot at the caller's line (were result.lua:271, plot.panels)
    local _, msg = pcall(function() res:plot(tmp .. "/here/x.jpg") end)
    assert.truthy(msg:find("^[^\n]-hpsearch_spec%.lua:%d+: result:plot: path must end in %.png"), msg)
  end)

  it("heads no two CSV or table columns alike when a parameter is named as a fixed column", function()
    -- a space with steps and seed (and a metric named as a parameter) repeated those headers
    local r = hp.search{space = {steps = {5, 10}, seed = {1, 2}, lr = hp.uniform(0, 1)},
      objective = function(p) return p.lr end, metric = "lr", mode = "max", trials = 2, workers = 0, quiet = true}
    local header = r:csv():match("^[^\n]*")
    assert.are.equal("trial,seed,status,param.lr,param.seed,param.steps,lr,steps,seconds,pid,message", header)
    local cols = {}
    for name in r:table():match("^[^\n]*"):gmatch("%S+") do cols[#cols + 1] = name end
    assert.are.same({"rank", "trial", "param.lr", "seed", "steps", "lr", "status", "seconds", "note"}, cols)
    local m = hp.search{space = {x = {1}}, objective = function() return 1 end, metric = "seconds", mode = "min",
      trials = 1, workers = 0, quiet = true}
    assert.are.equal("trial,seed,status,x,metric.seconds,steps,seconds,pid,message", m:csv():match("^[^\n]*"))
    -- the other fields objectives return get columns of their own (the README promised them)
    local vals = hp.search{space = {x = {1, 2}}, strategy = "grid", mode = "max", workers = 0, quiet = true,
      objective = function(p)
        if p.x == 1 then return {metric = 1, loss = 3, x = "dup"} end
        return {metric = 2}
      end}
    local rows = {}
    for line in vals:csv():gmatch("[^\n]+") do rows[#rows + 1] = line end
    assert.are.equal("trial,seed,status,x,metric,steps,seconds,pid,message,loss,value.x", rows[1])
    assert.truthy(rows[2]:find(",3,dup$"), rows[2])
    assert.truthy(rows[3]:find(",,$"), rows[3])
    -- in this process a trial runs on threads, and the caller keeps its count whatever the
    -- objective set (workers = 0 ignored threads, and an objective's set_num_threads stayed)
    local before = cnn.get_num_threads()
    cnn.set_num_threads(3)
    local seen
    hp.search{space = {x = {1}}, mode = "max", trials = 1, workers = 0, threads = 1, quiet = true,
      objective = function() seen = cnn.get_num_threads(); cnn.set_num_threads(2) return 1 end}
    local after = cnn.get_num_threads()
    cnn.set_num_threads(before)
    assert.are.same({1, 3}, {seen, after})
    -- error(hp.PRUNED) outside ASHA is a failure that says why (its note was empty)
    local pr = hp.search{space = {x = {1}}, objective = function() error(hp.PRUNED) end, mode = "max",
      trials = 1, workers = 0, quiet = true}
    assert.are.equal("failed", pr.trials[1].status)
    assert.truthy(pr.trials[1].message:find("raised hp.PRUNED itself", 1, true))
    -- a parameter named as another's label: each still a header of its own
    local both = hp.search{space = {seed = {1}, ["param.seed"] = {2}}, objective = function() return 1 end,
      mode = "max", trials = 1, workers = 0, quiet = true}
    assert.are.equal("trial,seed,status,param.seed,param.param.seed,metric,steps,seconds,pid,message",
      both:csv():match("^[^\n]*"))
  end)

  it("keeps the CSV's columns aligned when the objective never reports (no steps)", function()
    assert.is_nil(res.total_steps)
    local rows = lines_of(tmp .. "/here/search.csv")
    local header = {}
    for cell in (rows[1] .. ","):gmatch("([^,]*),") do header[#header + 1] = cell end
    local col = {}
    for i, name in ipairs(header) do col[name] = i end
    local me = require("cnn.hpsearch.trial").pid()
    for i = 2, #rows do
      local cells = {}
      for cell in (rows[i] .. ","):gmatch("([^,]*),") do cells[#cells + 1] = cell end
      assert.are.equal(#header, #cells, rows[i])
      local t = res.trials[i - 1]
      assert.are.equal("", cells[col.steps])
      assert.are.equal(t.seconds, tonumber(cells[col.seconds]))
      assert.are.equal(me, tonumber(cells[col.pid])) -- workers = 0: this process
      assert.are.equal("", cells[col.message])
      assert.are.equal(t.metric, tonumber(cells[col.loss]))
    end
  end)

  it("plots every finished trial and counts them in the title as the table does", function()
    local mixed = hp.search{space = {opt = {"sgd", "adam", "rmsprop"}, x = hp.uniform(0, 1)}, trials = 6, seed = 20,
      strategy = "asha", max_steps = 3, workers = 0, mode = "max", quiet = true,
      objective = function(p, report)
        if p.opt == "rmsprop" then error("not today") end
        for step = 1, 3 do report(step, p.opt == "sgd" and 0.5 or 0.5 + p.x) end -- every sgd trial ties
        return p.opt == "sgd" and 0.5 or 0.5 + p.x
      end}
    local counts = {}
    for _, t in ipairs(mixed.trials) do counts[t.status] = (counts[t.status] or 0) + 1 end
    assert.are.same({ok = 3, pruned = 2, failed = 1}, counts) -- seed 20 gives one of each kind
    local parts = {}
    for _, st in ipairs{"ok", "pruned", "failed"} do
      if counts[st] then parts[#parts + 1] = counts[st] .. " " .. st end
    end
    assert.truthy(mixed:table():find("6 trials (" .. table.concat(parts, ", ") .. ")", 1, true), mixed:table())
    local _, layout = mixed:plot(tmp .. "/mixed.png")
    local want = "asha search, metric (higher is better): 6 trials ("
    local described = {}
    for _, st in ipairs{"ok", "pruned", "failed"} do
      if counts[st] then
        described[#described + 1] = counts[st] .. " " .. st .. ({ok = "", pruned = ": rings", failed = ": crosses"})[st]
      end
    end
    assert.are.equal(want .. table.concat(described, ", ") .. ")", layout.title)
    assert.are.equal(2, #layout.panels) -- opt and x
    assert.are.same({3, 36 + 300, 800}, cnn.image.load(tmp .. "/mixed.png"):shape())
  end)
end)

describe("hpsearch's status line", function()
  it("counts the trials, shows the best and estimates the time left from their mean and the workers", function()
    local View = require "cnn.hpsearch.view"
    local now = 100
    local v = View.new{todo = 6, workers = 2, metric = "loss", mode = "min", quiet = true, tty = false,
                       clock = function() return now end}
    assert.are.equal("hpsearch: 0/6 done, 0 running, 0:00", v:status())
    v:started{index = 1}
    v:started{index = 2}
    now = 105
    v:finished({index = 1, status = "ok", metric = 0.7}, "")
    v:started{index = 3}
    -- trials last 5 s: 2 ends now, 3 at 10 s with 4, then 5 and 6 at 15 s; 10 s left, not 25
    assert.are.equal("hpsearch: 1/6 done (1 ok), 2 running, best loss 0.7 (trial 1), 0:05, ~0:10 left",
                     v:status())
    now = 106
    v:finished({index = 2, status = "pruned", metric = 0.5}, "")
    v:finished({index = 3, status = "failed"}, "")
    -- trials now last (5 + 6 + 1) / 3 = 4 s on average: 12 s of work left for two workers
    assert.are.equal("hpsearch: 3/6 done (1 ok, 1 pruned, 1 failed), 0 running, best loss 0.7 (trial 1), 0:06, " ..
                     "~0:06 left", v:status())
    for i = 4, 5 do v:finished({index = i, status = "ok", metric = 0.1 * i}, "") end
    v:finished({index = 6, status = "nan", metric = 0 / 0}, "") -- diverged, not failed (it was counted so)
    assert.are.equal("hpsearch: 6/6 done (3 ok, 1 pruned, 1 nan, 1 failed), 0 running, best loss 0.4 (trial 4), " ..
                     "0:06", v:status())
  end)
end)

describe("hpsearch worker processes", function()
  it("run the trials in several processes with threads divided among them, seeded per trial", function()
    local path = script("workers", [[
local res = hp.search{space = {x = hp.uniform(-1, 1)}, trials = 4, workers = 2, seed = 11, mode = "min", quiet = true,
  objective = function(p)
    os.execute("sleep 0.2")
    return {metric = (p.x - 0.3) ^ 2 + cnn.rand(1):item(), threads = cnn.get_num_threads()}
  end}
RESULT(res)
]])
    local out, code = run(path)
    assert.are.equal(0, code, out)
    local r = result_of(out)
    local pids, distinct = {}, 0
    -- floor(cores / workers): a forked child starts a thread pool of its own
    local threads = math.max(1, cnn.get_num_threads() // 2)
    for i, t in ipairs(r.trials) do
      assert.are.equal("ok", t.status, t.message)
      assert.are.equal(i, t.index)
      assert.are_not.equal(r.pid, t.pid)
      if not pids[t.pid] then distinct = distinct + 1 end
      pids[t.pid] = true
      assert.are.equal(threads, t.values.threads)
      -- the same params with the trial's seed give the same metric here
      cnn.manual_seed(t.seed)
      assert.are.equal(quad(t.params) + cnn.rand(1):item(), t.metric)
      -- and the params are trial i's of seed 11, computed in this process
      assert.are.equal(space.sample(space.normalize{x = hp.uniform(-1, 1)}, 11, i).x, t.params.x)
    end
    assert.is_true(distinct > 1)
  end)

  it("fork from any process: the objective's upvalues reach the trials, nothing re-runs", function()
    -- this spec runs under busted: no script a worker could re-run, and none is needed
    local data = cnn.arange(10):float() -- made here, read by every trial from the shared pages
    local loaded = 0
    local res = hp.search{space = {k = {1, 5, 10}}, strategy = "grid", workers = 2, mode = "max", quiet = true,
      objective = function(p)
        loaded = loaded + 1 -- changes the trial's copy only
        local pid = require("cnn.hpsearch.trial").pid()
        return {metric = data:narrow(1, 1, p.k):sum():item(), pid = pid, loaded = loaded}
      end}
    local me = require("cnn.hpsearch.trial").pid()
    assert.are.same({0, 10, 45}, {res.trials[1].metric, res.trials[2].metric, res.trials[3].metric})
    for _, t in ipairs(res.trials) do
      assert.are.equal("ok", t.status)
      assert.are_not.equal(me, t.pid)
      assert.are.equal(t.pid, t.values.pid)
      assert.are.equal(1, t.values.loaded)
    end
    assert.are.equal(0, loaded)
    assert.are.equal(3, res.best.index)
  end)

  it("run several different searches one after another in one script", function()
    local path = script("three", [[
local data = cnn.linspace(0, 1, 11)
local function objective(p) return (data[p.i] - p.target) ^ 2 end
local a = hp.search{space = {i = hp.randint(1, 11), target = 0.3}, trials = 5, workers = 2, seed = 1, mode = "min",
  quiet = true, objective = objective}
local b = hp.search{space = {i = {2, 4, 6, 8}, target = {0.5, 0.7}}, strategy = "grid", workers = 2, mode = "min",
  quiet = true, objective = objective}
local c = hp.search{space = {i = hp.randint(1, 11), target = 0.9}, strategy = "asha", max_steps = 3, trials = 4,
  workers = 2, seed = 2, mode = "min", quiet = true, objective = function(p, report)
    for step = 1, 3 do report(step, objective(p) + 1 / step) end
    return objective(p)
  end}
print("COUNTS", #a.trials, #b.trials, #c.trials)
print("BEST", a.best.params.target, b.best.params.i, b.best.params.target, c.best.params.target)
RESULT(b)
]])
    local out, code = run(path)
    assert.are.equal(0, code, out)
    assert.truthy(out:find("COUNTS\t5\t8\t4\n"), out)
    assert.truthy(out:find("BEST\t0.3\t6\t0.5\t0.9\n"), out)
    for _, t in ipairs(result_of(out).trials) do
      assert.are.equal("ok", t.status)
      assert.is_true(math.abs(t.metric - ((t.params.i - 1) / 10 - t.params.target) ^ 2) < 1e-6)
    end
  end)

  it("record an error, a dead process, a NaN and a timeout as failed trials and go on", function()
    local path = script("failures", [[
local function objective(p)
  if p.kind == "error" then error("deliberate failure") end
  if p.kind == "exit" then os.exit(7) end
  if p.kind == "nan" then return 0 / 0 end
  if p.kind == "hang" then os.execute("sleep 123.25") end
  return 1.5
end
local res = hp.search{space = {kind = {"ok", "error", "exit", "nan"}}, strategy = "grid", workers = 2,
  mode = "min", quiet = true, log = arg[1], objective = objective}
-- the timeout in a search of its own: an ASan worker's os.exit runs LeakSanitizer for seconds on a
-- busy machine (3.8 s seen at load 20), which a search-wide timeout would take for a hang
local hung = hp.search{space = {kind = {"hang"}}, strategy = "grid", workers = 2, mode = "min", timeout = 1,
  quiet = true, log = arg[1], objective = objective}
res.trials[5] = hung.trials[1]
RESULT(res)
]])
    local log = tmp .. "/failures.jsonl"
    local out, code = run(path, sh_quote(log))
    assert.are.equal(0, code, out)
    local t = result_of(out).trials
    assert.are.same({"ok", "failed", "failed", "nan", "failed"},
      {t[1].status, t[2].status, t[3].status, t[4].status, t[5].status})
    assert.are.equal(1.5, t[1].metric)
    assert.truthy(t[2].message:find("deliberate failure", 1, true))
    assert.truthy(t[3].message:find("worker exited with status 7", 1, true), t[3].message)
    assert.truthy(t[4].metric ~= t[4].metric)
    assert.are.equal("the objective returned nan", t[4].message)
    assert.are.equal("timed out after 1 s (killed)", t[5].message)
    -- the hanging trial's whole process tree is gone, its sleep included
    local left
    for _ = 1, 40 do
      local p = io.popen("ps -eo args")
      left = p:read("a"):find("sleep 123.25", 1, true)
      p:close()
      if not left then break end
      os.execute("sleep 0.05")
    end
    assert.is_nil(left)
    assert.are.equal(5, #lines_of(log, '"type":"trial"'))
    -- failures are finished trials: a second run has nothing left to do
    out, code = run(path, sh_quote(log))
    assert.are.equal(0, code, out)
    assert.are.equal(5, #lines_of(log, '"type":"trial"'))
    assert.are.same({"ok", "failed", "failed", "nan", "failed"}, (function()
      local s = {}
      for i, tr in ipairs(result_of(out).trials) do s[i] = tr.status end
      return s
    end)())
  end)

  it("stop on Ctrl-C keeping the finished trials, and the next run resumes from the log", function()
    local path = script("interrupt", [[
local res = hp.search{space = {x = hp.uniform(-1, 1)}, trials = 8, workers = 2, seed = 3, mode = "min",
  log = arg[1], objective = function(p) os.execute("sleep 0.25") return (p.x - 0.3) ^ 2 end}
RESULT(res)
]])
    local log = tmp .. "/interrupt.jsonl"
    local p = assert(io.popen("sh -c 'echo $$; exec " .. sh_quote(CNNLUA) .. " " .. sh_quote(path) .. " " ..
      sh_quote(log) .. " 2>&1'"))
    local pid = assert(math.tointeger(tonumber(p:read("l"))))
    local deadline = os.time() + 20
    while #lines_of(log, '"type":"trial"') < 2 and os.time() < deadline do os.execute("sleep 0.05") end
    os.execute("kill -INT " .. pid)
    local out = p:read("a")
    p:close()
    local first = result_of(out)
    assert.is_true(first.interrupted)
    assert.truthy(out:find("hpsearch: interrupted: %d of 8 trials done; run the search again to resume from"))
    local done = {}
    for _, t in ipairs(first.trials) do
      if t.status == "ok" then done[t.index] = t end
    end
    local k = #lines_of(log, '"type":"trial"')
    local n = 0
    for _ in pairs(done) do n = n + 1 end
    assert.is_true(k >= 2 and k < 8, k .. " trials done")
    assert.are.equal(k, n)

    local out2, code = run(path, sh_quote(log))
    assert.are.equal(0, code, out2)
    assert.truthy(out2:find("(" .. k .. " from " .. log .. " already done)", 1, true))
    local second = result_of(out2)
    assert.is_false(second.interrupted)
    for i, t in ipairs(second.trials) do
      assert.are.equal("ok", t.status)
      assert.are.equal(quad(t.params), t.metric)
      if done[i] then assert.are.equal(done[i].pid, t.pid) end -- kept, not run again
    end
    assert.are.equal(8, #lines_of(log, '"type":"trial"'))
  end)

  it("say so when TMPDIR cannot take a trial's output file, at the caller's line", function()
    local path = script("no_tmpdir", [[
local ok, err = pcall(function()
  local res = hp.search{space = {x = {1, 2}}, strategy = "grid", workers = 1, mode = "min", quiet = true,
    objective = function(p) return p.x end}
  return res
end)
print(ok, err)
]])
    local p = assert(io.popen("TMPDIR=" .. sh_quote(tmp .. "/missing") .. " " .. sh_quote(CNNLUA) .. " " ..
      sh_quote(path) .. " 2>&1"))
    local out = p:read("a")
    p:close()
    -- it was ".../scripts/cnn/hpsearch.lua:357: process.tmpfile: cannot create a file in ..."
    assert.truthy(out:find("false\t[^\n]*no_tmpdir%.lua:%d+: hpsearch%.search: cannot make a trial's output file: " ..
      "cannot create a file in [^\n]*/missing: No such file or directory"), out)
  end)

  -- A trial's process group outlived it: a background job of a trial that returned, the children
  -- of a trial killed from outside (the OOM killer, a user's kill -9) and, when the search itself
  -- was killed, the children of every running trial (PR_SET_PDEATHSIG reached the trial only).
  it("leave none of a trial's processes behind, however the trial or the search ends", function()
    local function running(pattern)
      local p = io.popen("ps -eo args")
      local found = p:read("a"):find(pattern, 1, true)
      p:close()
      return found
    end
    local function left(pattern) -- still there after 2 s
      for _ = 1, 40 do
        if not running(pattern) then return nil end
        os.execute("sleep 0.05")
      end
      return true
    end
    local path = script("leftovers", [[
local res = hp.search{space = {k = {"background", "killed", "held"}}, strategy = "grid", workers = 3, mode = "min",
  quiet = true, log = arg[1], objective = function(p)
    if p.k == "background" then os.execute("sleep 131.25 &") return 1 end
    if p.k == "killed" then
      local f = assert(io.open(arg[2], "w"))
      f:write(require("cnn.core").process.pid())
      f:close()
      os.execute("sleep 132.25")
    end
    if p.k == "held" then os.execute("sleep 133.25") end
    return 2
  end}
RESULT(res)
]])
    local pidfile, log = tmp .. "/leftovers.pid", tmp .. "/leftovers.jsonl"
    os.remove(pidfile)
    local p = assert(io.popen("sh -c 'echo $$; exec " .. sh_quote(CNNLUA) .. " " .. sh_quote(path) .. " " ..
      sh_quote(log) .. " " .. sh_quote(pidfile) .. " 2>&1'"))
    local search = assert(math.tointeger(tonumber(p:read("l"))))
    local deadline = os.time() + 30
    while not ((read(pidfile) or ""):match("^%d+$") and #lines_of(log, '"type":"trial"') == 1 and
        running("sleep 132.25") and running("sleep 133.25")) and os.time() < deadline do
      os.execute("sleep 0.05")
    end
    local trial = assert(math.tointeger(tonumber(read(pidfile))), "the trial did not start")
    assert.truthy(read(log):find('"status":"ok"', 1, true), "the background trial was not logged")
    assert.is_nil(left("sleep 131.25"), "a finished trial's background job")
    os.execute("kill -9 " .. trial)
    assert.is_nil(left("sleep 132.25"), "the child of a trial killed from outside")
    assert.truthy(running("sleep 133.25")) -- the third trial runs on
    os.execute("kill -9 " .. search)
    p:close()
    assert.is_nil(left("sleep 133.25"), "the child of a trial whose search was killed")
  end)

  -- wait killed the group of any child leading one: a program started in our group that made
  -- itself a leader (setsid) had its daemon killed
  it("process.wait cleans up only the process groups it started", function()
    local process = require("cnn.core").process
    local function running(pattern)
      local p = io.popen("ps -eo pid,args")
      local pid = p:read("a"):match("(%d+) " .. pattern:gsub("%p", "%%%0"))
      p:close()
      return pid
    end
    local daemon = process.spawn({"setsid", "sh", "-c", "sleep 141.25 & exit"})
    assert.are.same({"exit", 0}, {process.wait(daemon, true)})
    os.execute("sleep 0.2")
    local left = running("sleep 141.25")
    assert.truthy(left, "setsid's job was killed")
    os.execute("kill " .. left)
    local leader = process.spawn({"sh", "-c", "sleep 142.25 & exit"}, {group = true})
    assert.are.same({"exit", 0}, {process.wait(leader, true)})
    for _ = 1, 40 do
      if not running("sleep 142.25") then break end
      os.execute("sleep 0.05")
    end
    assert.is_nil(running("sleep 142.25"), "the group's job survived")
  end)

  -- Ctrl-C raises "interrupted!" in whatever Lua function runs next: a debug hook plays it at a
  -- chosen call. Under the pcall around a trial's record line (json.decode) or around fork, it was
  -- swallowed: the search ran on and logged that trial as failed ("worker exited with status 0",
  -- "could not start a worker process: interrupted!"), which a resumed search does not run again.
  it("stop on a Ctrl-C that comes while a record is decoded or a worker forked", function()
    local process = require("cnn.core").process
    for _, at in ipairs({{dkjson.decode, 5}, {process.fork, 3}}) do
      local log = tmp .. "/lost_interrupt.jsonl"
      os.remove(log)
      local calls = 0
      debug.sethook(function()
        if debug.getinfo(2, "f").func == at[1] then
          calls = calls + 1
          if calls == at[2] then debug.sethook(); error("interrupted!") end
        end
      end, "c")
      local ok, res = pcall(hp.search, {space = {a = hp.uniform(0, 1)}, trials = 10, workers = 2, mode = "max",
        quiet = true, log = log, objective = function(p) return p.a end})
      debug.sethook()
      assert(ok, res)
      assert.is_true(res.interrupted)
      for _, t in ipairs(res.trials) do assert.is_true(t.status == "ok" or t.status == "pending", t.status) end
      for _, line in ipairs(lines_of(log, '"type":"trial"')) do assert.is_nil(line:find('"failed"', 1, true)) end
    end
  end)
end)

describe("hpsearch asha", function()
  it("prunes: fewer steps than a random search of the same trials, and the same best", function()
    local path = script("asha", [[
local strategy = arg[1]
local res = hp.search{space = {x = hp.uniform(-2, 2)}, trials = 6, workers = 2, seed = 3, mode = "min", quiet = true,
  strategy = strategy, max_steps = strategy == "asha" and 9 or nil, log = arg[2],
  objective = function(p, report)
    local v
    for step = 1, 9 do
      v = p.x ^ 2 + 1 / step -- every rung ranks the trials as the end does
      report(step, v)
    end
    return v
  end}
RESULT(res)
]])
    local out, code = run(path, "asha " .. sh_quote(tmp .. "/asha.jsonl"))
    assert.are.equal(0, code, out)
    local asha = result_of(out)
    out, code = run(path, "random")
    assert.are.equal(0, code, out)
    local random = result_of(out)
    assert.are.equal(6 * 9, random.total_steps)
    assert.is_true(asha.total_steps < random.total_steps, "asha ran " .. asha.total_steps .. " steps")
    local pruned = 0
    for i, t in ipairs(asha.trials) do
      assert.are.same(random.trials[i].params, t.params) -- one seed, the same configurations
      if t.status == "pruned" then
        pruned = pruned + 1
        assert.is_true(t.steps < 9)
        assert.are.equal(t.params.x ^ 2 + 1 / t.steps, t.metric) -- the value it was stopped at
      else
        assert.are.equal("ok", t.status)
        assert.are.equal(9, t.steps)
      end
    end
    assert.is_true(pruned > 0)
    assert.are.equal(random.best.index, asha.best.index)
    -- the rung reports went to the log: budgets 1 and 3 (eta = 3 below max_steps = 9)
    local budgets = {}
    for _, line in ipairs(lines_of(tmp .. "/asha.jsonl", '"type":"rung"')) do
      budgets[dkjson.decode(line).budget] = true
    end
    assert.are.same({[1] = true, [3] = true}, budgets)
  end)

  it("keeps a trial while it is among the best 1/eta of its rung", function()
    local asha = {eta = 3, grace = 1}
    -- k values recorded: the best max(1, k // 3) go on (mode "min": lower is better)
    assert.is_true(require("cnn.hpsearch.trial").keep({[1] = 5}, 1, asha, "min"))
    assert.is_false(require("cnn.hpsearch.trial").keep({[1] = 5, [2] = 6}, 2, asha, "min"))
    assert.is_true(require("cnn.hpsearch.trial").keep({[1] = 5, [2] = 4}, 2, asha, "min"))
    local six = {[1] = 1, [2] = 2, [3] = 3, [4] = 4, [5] = 5, [6] = 6}
    assert.is_true(require("cnn.hpsearch.trial").keep(six, 2, asha, "min"))
    assert.is_false(require("cnn.hpsearch.trial").keep(six, 3, asha, "min"))
    assert.is_true(require("cnn.hpsearch.trial").keep(six, 5, asha, "max"))
    assert.is_true(require("cnn.hpsearch.trial").keep({[1] = 5, [2] = 6}, 2, {eta = 3, grace = 3}, "min"))
    assert.is_false(require("cnn.hpsearch.trial").keep({[1] = 5, [2] = 0 / 0}, 2, asha, "min"))
    -- a diverged trial's -inf loss (or +inf accuracy) outranks nobody, and does not go on itself
    local three = {[1] = 5, [2] = 6, [3] = -math.huge}
    assert.is_true(require("cnn.hpsearch.trial").keep(three, 1, asha, "min"))
    assert.is_false(require("cnn.hpsearch.trial").keep(three, 3, asha, "min"))
    assert.is_false(require("cnn.hpsearch.trial").keep({[1] = 5, [2] = math.huge}, 2, asha, "max"))
  end)

  it("records a trial that reports NaN or inf at a rung as diverged (\"nan\"), not pruned", function()
    local path = script("asha_nan", [[
local res = hp.search{space = {x = {1, 2, 3}}, strategy = "asha", max_steps = 9, workers = 0, quiet = true,
  mode = "min",
  objective = function(p, report)
    for step = 1, 9 do
      report(step, p.x == 2 and 0 / 0 or p.x == 3 and -math.huge or p.x / step)
    end
    return p.x / 9
  end}
RESULT(res)
]])
    local out, code = run(path, "")
    assert.are.equal(0, code, out)
    local res, seen = result_of(out), {}
    for _, t in ipairs(res.trials) do -- x is drawn from {1, 2, 3}: 1 trains, 2 gives NaN, 3 gives -inf
      local x = t.params.x
      seen[x] = true
      if x == 1 then
        assert.are.equal("ok", t.status)
      else
        assert.are.equal("nan", t.status, x)
        assert.are.equal(1, t.steps)
        local want = "reported " .. (x == 2 and "nan" or "-inf") .. " at step 1 (ASHA's rung 1"
        assert.truthy(t.message:find(want, 1, true), t.message)
      end
    end
    assert.are.same({true, true, true}, seen)
    assert.are.equal(1, res.best.params.x)
  end)
end)

describe("hpsearch emit_commands and merge", function()
  it("writes one command per trial, and a later run merges their results and runs the rest", function()
    local path = script("emit", [[
local res = hp.search{space = {x = hp.uniform(-1, 1)}, trials = 4, workers = 2, seed = 8, mode = "min", quiet = true,
  log = arg[2] .. "/search.jsonl", emit_commands = arg[1] == "emit" and arg[2] .. "/cmds.txt" or nil,
  merge = arg[1] == "merge" and arg[2] or nil,
  objective = function(p) print("some output of the objective") return (p.x - 0.3) ^ 2 end}
if res.emitted then print("EMITTED " .. #res.commands) end
RESULT(res)
]])
    local dir = tmp .. "/emit"
    local out, code = run(path, "emit " .. sh_quote(dir))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("EMITTED 4", 1, true))
    for _, t in ipairs(result_of(out).trials) do assert.are.equal("pending", t.status) end
    local cmds = lines_of(dir .. "/cmds.txt")
    assert.are.equal(4, #cmds)
    for i, c in ipairs(cmds) do
      local cd, idx, id, rest, target =
        c:match("^cd (%S+) && CNNLUA_HPSEARCH_TRIAL=(%d+) CNNLUA_HPSEARCH_SEARCH=(%x+) (.-) > (%S+)$")
      assert.are.equal(require("lfs").currentdir(), cd, c) -- they start where this search ran
      assert.are.equal(i, tonumber(idx), c)
      assert.are.equal(16, #id)
      assert.are.equal(CNNLUA .. " " .. path .. " emit " .. dir, rest)
      assert.are.equal(dir .. "/trial-" .. i .. ".jsonl", target)
    end
    -- run two of them "elsewhere" (from another folder: each starts with its cd)
    for i = 1, 2 do assert.is_true(os.execute("cd / && " .. cmds[i])) end
    out, code = run(path, "merge " .. sh_quote(dir))
    assert.are.equal(0, code, out)
    local merged = result_of(out)
    for i, t in ipairs(merged.trials) do
      assert.are.equal("ok", t.status)
      assert.are.equal(quad(t.params), t.metric)
      if i <= 2 then -- from the files, not run again
        local rec = dkjson.decode(read(dir .. "/trial-" .. i .. ".jsonl"):match("\n({[^\n]+})\n$"))
        assert.are.equal(rec.pid, t.pid)
      end
    end
    assert.are.equal(4, #lines_of(dir .. "/search.jsonl", '"type":"trial"'))
    -- a newline in a command would split it over two lines of the file (the fifth fuzzing round)
    local out2, code2 = run(path, "emit " .. sh_quote(tmp .. "/emit\nnl"))
    assert.are_not.equal(0, code2)
    assert.truthy(out2:find("emit_commands writes one command a line, but there is a newline in", 1, true), out2)
  end)
end)

describe("hpsearch trial commands in a script of several searches", function()
  it("run the named search's trial; the other searches return at once", function()
    local path = script("two", [[
local first = hp.search{space = {x = {1, 2}}, strategy = "grid", mode = "min", quiet = true,
  objective = function(p) print("FIRST RAN") return p.x end}
local second = hp.search{space = {x = {10, 20}}, strategy = "grid", mode = "min", quiet = true,
  emit_commands = arg[1] and arg[1] .. "/cmds.txt" or nil, objective = function(p) return p.x * 3 end}
print("STATUS", first.trials[1].status, second.trials[1].status)
]])
    local dir = tmp .. "/two"
    local out, code = run(path, sh_quote(dir))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("STATUS\tok\tpending", 1, true) or out:find("STATUS\tok\tpending"), out)
    local cmds = lines_of(dir .. "/cmds.txt")
    assert.are.equal(2, #cmds)
    assert.is_true(os.execute(cmds[2]))
    local text = read(dir .. "/trial-2.jsonl")
    assert.falsy(text:find("FIRST RAN", 1, true), text)
    local rec = dkjson.decode(text:match("\n({[^\n]+})\n$"))
    assert.are.equal(2, rec.index)
    assert.are.equal(60, rec.metric)
  end)
end)

describe("examples/hparam_search.lua", function()
  -- n images in MNIST's layout whose class decides where a bright bar is
  local function write_split(dir, prefix, n)
    local img = {string.pack(">I4I4I4I4", 0x803, n, 28, 28)}
    local lab = {string.pack(">I4I4", 0x801, n)}
    for i = 1, n do
      local c = (i * 7) % 10
      local px = {}
      for k = 1, 28 * 28 do px[k] = (k * 31 + i) % 40 end
      for r = 2 + (c // 5) * 12, 11 + (c // 5) * 12 do
        for k = 2 + (c % 5) * 5, 5 + (c % 5) * 5 do px[r * 28 + k + 1] = 250 end
      end
      img[#img + 1] = string.char(table.unpack(px))
      lab[#lab + 1] = string.char(c)
    end
    write(dir .. "/" .. prefix .. "-images-idx3-ubyte", table.concat(img))
    write(dir .. "/" .. prefix .. "-labels-idx1-ubyte", table.concat(lab))
  end

  it("runs a small search in two workers and writes the table, log, CSV and PNG", function()
    local data, out = tmp .. "/mnist", tmp .. "/example"
    H.mkdir_p(data)
    write_split(data, "train", 256)
    write_split(data, "t10k", 100)
    local p = assert(io.popen(sh_quote(CNNLUA) .. " examples/hparam_search.lua --data " .. sh_quote(data) ..
      " --train-size 200 --test-size 100 --epochs 1 --trials 2 --workers 2 --out " .. sh_quote(out) .. " 2>&1"))
    local text = p:read("a")
    local ok = p:close()
    assert.is_true(ok, text)
    assert.truthy(text:find("\nrank  trial  batch_size%s+lr%s+momentum%s+accuracy  status  steps  seconds"), text)
    assert.truthy(text:find("\n2 trials %(2 ok%); best: trial %d, accuracy = "), text)
    local acc = tonumber(text:match("test accuracy (%d+%.%d+)%%\n$"))
    assert.is_not_nil(acc, text)
    assert.are.equal(2, #lines_of(out .. "/search.jsonl", '"type":"trial"'))
    assert.are.equal(3, #lines_of(out .. "/search.csv"))
    assert.are.equal(3, cnn.image.load(out .. "/search.png"):size(1))
    -- the data check happens before any worker starts
    p = assert(io.popen(sh_quote(CNNLUA) .. " examples/hparam_search.lua --data " .. sh_quote(tmp .. "/nowhere")
      .. " 2>&1"))
    text = p:read("a")
    assert.is_nil(p:close())
    assert.truthy(text:find("no MNIST-layout data in " .. tmp .. "/nowhere", 1, true), text)
  end)

  it("records diverging trials (lr 50) as failed and finishes the search", function()
    local data, out = tmp .. "/mnist", tmp .. "/diverge"
    local p = assert(io.popen(sh_quote(CNNLUA) .. " examples/hparam_search.lua --data " .. sh_quote(data) ..
      " --train-size 256 --test-size 100 --epochs 1 --trials 2 --workers 2 --lr-min 50 --lr-max 60 --out " ..
      sh_quote(out) .. " 2>&1"))
    local text = p:read("a")
    assert.is_true(p:close(), text)
    assert.truthy(text:find("\n2 trials %(2 failed%)"), text)
    assert.truthy(text:find("training diverged", 1, true), text)
    assert.are.equal(2, #lines_of(out .. "/search.jsonl", '"status":"failed"'))
  end)
end)
