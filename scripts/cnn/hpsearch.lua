--- module cnn.hpsearch
--- Hyperparameter searches (grid, random, ASHA) whose trials run in separate worker processes.
--- Results go to an append-only JSON-lines log that a re-run resumes from. Conventionally
--- `local hp = cnn.hpsearch`:
---
---     local result = hp.search{
---       space = {lr = hp.loguniform(1e-3, 0.3), momentum = hp.choice{0, 0.5, 0.9}, batch_size = {32, 64}},
---       strategy = "random", trials = 24, workers = 2, seed = 1, metric = "accuracy", mode = "max",
---       log = "runs/search.jsonl",
---       objective = function(params, report)   -- runs in a worker process
---         -- train; report(epoch, accuracy) after each epoch (ASHA's rungs use it)
---         return accuracy                       -- or a table {accuracy = ..., loss = ...}
---       end,
---     }
---     print(result:table()); result:plot("runs/search.png"); result:csv("runs/search.csv")

-- cnn.hpsearch: hp.search runs the trials of a search in worker processes (cnnlua re-running the
-- script with CNNLUA_HPSEARCH_WORKER set), appends their records to the log, and builds the result.
-- Spaces are hpsearch/space.lua, the worker's side of a trial hpsearch/trial.lua, the result
-- hpsearch/result.lua, the JSON lines hpsearch/json.lua.
local core = require "cnn.core"
local space = require "cnn.hpsearch.space"
local json = require "cnn.hpsearch.json"
local trial = require "cnn.hpsearch.trial"
local Result = require "cnn.hpsearch.result"

local hp = {}

hp.choice, hp.uniform, hp.loguniform, hp.randint = space.choice, space.uniform, space.loguniform, space.randint
--- field cnn.hpsearch.PRUNED
--- The error value report() raises to stop a trial ASHA pruned; let it through (see is_pruned).
hp.PRUNED = trial.PRUNED
hp.Result = Result

--- cnn.hpsearch.is_pruned(err) -> boolean
--- Whether err, caught inside an objective, is report() stopping a pruned trial (rethrow it).
function hp.is_pruned(err) return err == trial.PRUNED end

local fail, Fail = space.fail, space.Fail

local FINAL = {ok = true, pruned = true, nan = true, failed = true}

local function is_int(v)
  return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v) and v == v and math.abs(v) < 2 ^ 53)
end

-- Shell words: quoted only when they need it, so emitted commands stay readable.
local function q(s)
  s = tostring(s)
  if s ~= "" and s:match("^[%w%._/:=+,@%-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

local function mkdir_p(dir)
  if dir ~= "." and dir ~= "/" then os.execute("mkdir -p " .. q(dir)) end
end

-- Naps between polls: lua-system's sleep when it is there (busted's own dependency; no process
-- per nap), else the sleep command; a Ctrl-C raises in Lua right after either. False: interrupted.
local nap
local function sleep(seconds)
  if nap == nil then
    local ok, sys = pcall(require, "system")
    if ok and type(sys) == "table" and type(sys.sleep) == "function" then
      nap = function(s) sys.sleep(s) return true end
    else
      nap = function(s) -- io.popen, not os.execute: system() would ignore our Ctrl-C meanwhile
        local p = io.popen("sleep " .. s, "r")
        if not p then return true end
        p:read("a")
        local _, how = p:close()
        return how ~= "signal"
      end
    end
  end
  return nap(seconds)
end

-- ---------------------------------------------------------------------------------------------
-- The spec

local known = {}
for _, k in ipairs{"space", "objective", "strategy", "trials", "workers", "seed", "metric", "mode", "log",
                   "max_steps", "eta", "min_steps", "grace", "threads", "timeout", "quiet", "retry_failed",
                   "emit_commands", "emit_dir", "merge"} do
  known[k] = true
end

local function opt_string(spec, key)
  local v = spec[key]
  if v ~= nil and (type(v) ~= "string" or v == "") then
    fail("%s must be a non-empty string, got %s", key, tostring(v))
  end
  return v
end

local function opt_int(spec, key, default, min)
  local v = spec[key]
  if v == nil then return default end
  if not is_int(v) or v < min then fail("%s must be an integer >= %d, got %s", key, min, tostring(v)) end
  return math.tointeger(v)
end

local function opt_bool(spec, key)
  local v = spec[key]
  if v ~= nil and type(v) ~= "boolean" then fail("%s must be a boolean, got %s", key, type(v)) end
  return v == true
end

local function check_spec(spec)
  if type(spec) ~= "table" then fail("expected an options table {space=, objective=, ...}, got %s", type(spec)) end
  for k in pairs(spec) do
    if not known[k] then fail("unknown option '%s'", tostring(k)) end
  end
  local s = {}
  if type(spec.objective) ~= "function" then
    fail("objective must be a function(params, report) returning the metric, got %s", type(spec.objective))
  end
  s.objective = spec.objective
  s.strategy = spec.strategy or "random"
  if s.strategy ~= "grid" and s.strategy ~= "random" and s.strategy ~= "asha" then
    fail("strategy must be \"grid\", \"random\" or \"asha\", got %s", tostring(s.strategy))
  end
  if spec.space == nil then fail("needs space = {name = hp.uniform(...), ...}") end
  local sp = space.normalize(spec.space)
  s.names, s.dists = sp.names, sp.dists
  if spec.mode ~= "max" and spec.mode ~= "min" then
    fail("mode must be \"max\" or \"min\" (is a higher metric better?), got %s", tostring(spec.mode))
  end
  s.mode = spec.mode
  s.metric = opt_string(spec, "metric") or "metric"
  if spec.seed ~= nil and not is_int(spec.seed) then fail("seed must be an integer, got %s", tostring(spec.seed)) end
  s.seed = math.tointeger(spec.seed or 0)
  s.workers = opt_int(spec, "workers", 1, 0)
  s.threads = opt_int(spec, "threads", nil, 1)
  if spec.timeout ~= nil and (type(spec.timeout) ~= "number" or not (spec.timeout > 0)) then
    fail("timeout must be a positive number of seconds, got %s", tostring(spec.timeout))
  end
  s.timeout = spec.timeout
  s.log = opt_string(spec, "log")
  s.emit_commands, s.emit_dir = opt_string(spec, "emit_commands"), opt_string(spec, "emit_dir")
  s.merge = opt_string(spec, "merge")
  if s.merge and s.merge:find("\n") then fail("merge must be a folder or a glob on one line") end
  s.quiet, s.retry_failed = opt_bool(spec, "quiet"), opt_bool(spec, "retry_failed")

  local asha_keys = {"max_steps", "eta", "min_steps", "grace"}
  if s.strategy == "asha" then
    local a = {}
    a.max_steps = spec.max_steps
    if type(a.max_steps) ~= "number" or not (a.max_steps > 0) then
      fail("strategy \"asha\" needs max_steps (a positive number: the steps a trial that is never stopped runs), "
        .. "got %s",
        tostring(a.max_steps))
    end
    a.eta = spec.eta or 3
    if type(a.eta) ~= "number" or not (a.eta > 1) or a.eta == math.huge then
      fail("eta must be a number > 1, got %s", tostring(a.eta))
    end
    a.min_steps = spec.min_steps or 1
    if type(a.min_steps) ~= "number" or not (a.min_steps > 0) then
      fail("min_steps must be a positive number, got %s", tostring(a.min_steps))
    end
    if a.min_steps >= a.max_steps then
      fail("min_steps (%s) must be below max_steps (%s): ASHA needs a rung before the end", space.num(a.min_steps),
        space.num(a.max_steps))
    end
    a.grace = opt_int(spec, "grace", 1, 1)
    a.budgets = {}
    local b = a.min_steps
    while b < a.max_steps do
      a.budgets[#a.budgets + 1] = b
      b = b * a.eta
    end
    s.asha = a
  else
    for _, k in ipairs(asha_keys) do
      if spec[k] ~= nil then fail("%s applies to strategy \"asha\" only", k) end
    end
  end

  local points
  if s.strategy == "grid" then
    points = space.grid(sp, opt_int(spec, "trials", nil, 1))
  else
    points = {}
    for i = 1, opt_int(spec, "trials", 10, 1) do points[i] = space.sample(sp, s.seed, i) end
  end
  s.trials = {}
  for i, p in ipairs(points) do
    s.trials[i] = {index = i, seed = space.trial_seed(s.seed, i), params = p, key = space.key(s.names, p)}
  end
  local id = {s.strategy, space.text(sp), space.num(s.seed), s.mode}
  if s.asha then
    id[#id + 1] = string.format("asha(%s,%s,%s,%d)", space.num(s.asha.max_steps), space.num(s.asha.eta),
      space.num(s.asha.min_steps), s.asha.grace)
  end
  s.id = string.format("%016x", space.str_hash(table.concat(id, "|")))
  return s
end

-- ---------------------------------------------------------------------------------------------
-- Records

-- A logged or returned record of trial t as a result entry (numbers decoded; params t's own).
local function entry(t, rec)
  return {index = t.index, seed = t.seed, params = t.params, status = rec.status, metric = json.number(rec.metric),
          seconds = json.number(rec.seconds), steps = json.number(rec.steps), pid = rec.pid,
          message = type(rec.message) == "string" and rec.message or nil,
          values = type(rec.values) == "table" and rec.values or nil}
end

-- The trial of this search a decoded record belongs to, or nil.
local function match(s, rec)
  if type(rec) ~= "table" or rec.type ~= "trial" or math.type(rec.index) ~= "integer" then return nil end
  local t = s.trials[rec.index]
  if not t or rec.seed ~= t.seed or type(rec.params) ~= "table" or not FINAL[rec.status] then return nil end
  local n = 0
  for _ in pairs(rec.params) do n = n + 1 end
  if n ~= #s.names or space.key(s.names, rec.params) ~= t.key then return nil end
  if rec.status == "failed" and s.retry_failed then return nil end
  return t
end

-- ---------------------------------------------------------------------------------------------
-- Worker side

local function die(code, fmt, ...)
  io.stderr:write("hpsearch worker: ", string.format(fmt, ...), "\n")
  io.stderr:flush()
  os.exit(code)
end

local function run_one(s, t, rungs)
  local asha = s.asha and rungs and {budgets = s.asha.budgets, eta = s.asha.eta, grace = s.asha.grace, rungs = rungs}
  return trial.run{objective = s.objective, params = t.params, seed = t.seed, index = t.index, search = s.id,
                   metric = s.metric, mode = s.mode, asha = asha}
end

-- Started by a search (CNNLUA_HPSEARCH_WORKER = job file): one trial, its record to job.result.
local function worker_job(s, path)
  local job = json.read_file(path)
  if type(job) ~= "table" or math.type(job.index) ~= "integer" or type(job.result) ~= "string" then
    die(3, "cannot read the job file %s", path)
  end
  if job.search ~= s.id then
    die(3, "this worker was started for search %s, but the script's hp.search{...} describes search %s: " ..
      "a script must build the same search (space, seed, strategy, mode) in every run and run only one search",
      tostring(job.search), s.id)
  end
  local t = s.trials[job.index] or die(3, "trial %d is not part of this search (%d trials)", job.index, #s.trials)
  if type(job.started) == "string" then -- tells the search the script got this far
    local f = io.open(job.started, "w")
    if f then f:close() end
  end
  if math.type(job.threads) == "integer" then core.set_num_threads(job.threads) end
  local rec, err = run_one(s, t, job.rungs)
  if not rec then die(130, "%s", tostring(err)) end
  json.write_atomic(job.result, rec)
  os.exit(0)
end

-- Started from an emitted command (CNNLUA_HPSEARCH_TRIAL = index): the record to stdout.
local function worker_emitted(s, value)
  local index = math.tointeger(tonumber(value))
  local t = index and s.trials[index] or
    die(2, "CNNLUA_HPSEARCH_TRIAL=%s is not a trial of this search (1..%d)", value, #s.trials)
  local threads = math.tointeger(tonumber(os.getenv("CNNLUA_HPSEARCH_THREADS") or ""))
  if threads and threads >= 1 then core.set_num_threads(threads) end
  local rungs = os.getenv("CNNLUA_HPSEARCH_RUNGS")
  local rec, err = run_one(s, t, rungs ~= "" and rungs or nil)
  if not rec then die(130, "%s", tostring(err)) end
  io.stdout:write("\n", json.encode(rec), "\n") -- on a fresh line, whatever the objective printed
  io.stdout:flush()
  os.exit(0)
end

-- ---------------------------------------------------------------------------------------------
-- Search side

-- The command that re-runs this script: interpreter, its options, the script and its arguments.
local function script_words()
  local a = rawget(_G, "arg")
  if type(a) ~= "table" or type(a[0]) ~= "string" or a[0] == "-" then
    fail("workers re-run the script, but there is none (arg[0]); run the search from a script file, or use workers = 0")
  end
  if a[0]:match("busted$") then
    fail("workers would re-run %s; write the search in a script of its own, or use workers = 0", a[0])
  end
  local lo = 0
  while a[lo - 1] ~= nil do lo = lo - 1 end
  local words = {}
  if lo == 0 then words[1] = "cnnlua" end
  for i = lo, #a do words[#words + 1] = q(a[i]) end
  return table.concat(words, " ")
end

local function read_text(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function tail_lines(text, n)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]+") do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  return lines
end

local function make_temp_dir()
  local name = os.tmpname() -- a fresh empty file, ours: our folder is beside it under its name
  local dir = name .. ".hpsearch"
  if not os.execute("mkdir " .. q(dir)) then
    os.remove(name)
    fail("cannot create a folder for the workers' files at %s", dir)
  end
  return dir, name
end

local Search = {}
Search.__index = Search

-- A finished trial: into the log first (the log is what a Ctrl-C keeps), then the result.
function Search:record(rec)
  local t = self.s.trials[rec.index]
  if self.s.log then json.append(self.s.log, rec) end
  self.finished[rec.index] = entry(t, rec)
  self.ran = self.ran + 1
  if not self.s.quiet then
    local e = self.finished[rec.index]
    local ps = {}
    for _, n in ipairs(self.s.names) do ps[#ps + 1] = n .. "=" .. Result.format(t.params[n]) end
    print(string.format("[%d/%d] trial %d: %s, %s %s, %.1f s%s, %s%s", self.ran, self.todo, t.index, e.status,
      self.s.metric, Result.format(e.metric), e.seconds or 0, e.steps and ", " .. space.num(e.steps) .. " steps" or "",
      table.concat(ps, " "), e.message and " (" .. e.message:match("^[^\n]*") .. ")" or ""))
    io.stdout:flush()
  end
end

-- The record of a worker that stopped without writing one.
function Search:crash_record(job, code)
  local out = read_text(job.base .. ".out")
  local lines = tail_lines(out, 20)
  local why
  if job.timed_out then
    why = string.format("timed out after %s s (killed)", space.num(self.s.timeout))
  elseif code == nil then
    why = "could not start a worker process"
  elseif code > 128 then
    why = string.format("worker killed by signal %d (exit status %d)", code - 128, code)
  else
    why = string.format("worker exited with status %s", tostring(code))
  end
  if #lines > 0 and not job.timed_out then
    -- the error's own line rather than the end of its traceback
    local last = lines[#lines]
    for i = #lines, 2, -1 do
      if lines[i] == "stack traceback:" then
        last = lines[i - 1]
        break
      end
    end
    why = why .. ": " .. last
  end
  local t = job.t
  return {type = "trial", search = self.s.id, index = t.index, seed = t.seed, params = t.params, status = "failed",
          message = why, output = #lines > 0 and table.concat(lines, "\n") or nil, pid = self:pid(job),
          seconds = core.wall_time() - job.started}
end

-- Runs a shell command through io.popen rather than os.execute: system() ignores SIGINT while it
-- waits, so a Ctrl-C sent to this process alone during a launch would be lost.
local function sh(cmd)
  local p = io.popen(cmd, "r")
  if not p then return false end
  p:read("a")
  return p:close()
end

local has_setsid
-- Starts trial t's worker in the background: its own session (setsid, when there is one), so a
-- timeout or a Ctrl-C stops the worker's whole process tree, and the terminal's Ctrl-C reaches
-- this process only, which stops the workers itself. The subshell writes the worker's pid, then
-- its exit status once it ends (the crash detector: a worker that ends without a result died).
function Search:launch(t)
  if has_setsid == nil then has_setsid = sh("command -v setsid >/dev/null 2>&1") == true end
  local base = self.dir .. "/trial-" .. t.index
  json.write_atomic(base .. ".job", {search = self.s.id, index = t.index, threads = self.threads,
                                     result = base .. ".result", started = base .. ".started", rungs = self.rungs})
  local cmd = string.format(
    "( OMP_NUM_THREADS=%d CNNLUA_HPSEARCH_WORKER=%s %s%s >%s 2>&1 </dev/null & echo $! >%s; wait $!; echo $? >%s )" ..
    " >/dev/null 2>&1 </dev/null &",
    self.threads, q(base .. ".job"), has_setsid and "setsid -w " or "", self.words, q(base .. ".out"),
    q(base .. ".pid"), q(base .. ".exit"))
  local job = {t = t, base = base, started = core.wall_time()}
  if not sh(cmd) then return job, "failed" end
  return job
end

function Search:pid(job)
  if not job.pid then job.pid = math.tointeger(tonumber(read_text(job.base .. ".pid") or "")) end
  return job.pid
end

-- Signals each worker's process group (its session, under setsid) and the worker itself.
local function kill(pids, sig)
  local targets = {}
  for _, pid in ipairs(pids) do
    targets[#targets + 1] = "-" .. pid
    targets[#targets + 1] = tostring(pid)
  end
  if #targets > 0 then sh("kill -" .. sig .. " " .. table.concat(targets, " ") .. " >/dev/null 2>&1") end
end

-- The record of a running job when it has ended, else nil.
function Search:poll(job)
  local rec = json.read_file(job.base .. ".result")
  if rec then return rec end
  local code = math.tointeger(tonumber(read_text(job.base .. ".exit") or ""))
  if code then
    rec = json.read_file(job.base .. ".result") -- written before the exit status, but read again
    if rec then return rec end
    rec = self:crash_record(job, code)
    if not job.timed_out and not read_text(job.base .. ".started") then
      -- the script itself fails when it runs as a worker: every trial would fail the same way
      fail("a worker process failed before reaching hp.search (the script must run up to hp.search again " ..
        "in each worker): %s", rec.message)
    end
    return rec
  end
  if self.s.timeout and core.wall_time() - job.started > self.s.timeout then
    local pid = self:pid(job)
    if pid and not job.timed_out then
      job.timed_out, job.killed_at = true, core.wall_time()
      kill({pid}, "TERM")
    elseif pid and core.wall_time() - job.killed_at > 5 then
      kill({pid}, "KILL")
    end
  end
  return nil
end

-- Stops the running jobs (Ctrl-C): SIGTERM, then waits a little for them to go; a trial that
-- finished meanwhile is still recorded.
function Search:stop(running)
  local pids = {}
  for _, job in pairs(running) do pids[#pids + 1] = self:pid(job) end
  kill(pids, "TERM")
  local deadline = core.wall_time() + 3
  while next(running) and core.wall_time() < deadline do
    for index, job in pairs(running) do
      local rec = json.read_file(job.base .. ".result")
      if rec then self:record(rec) end
      if rec or read_text(job.base .. ".exit") then running[index] = nil end
    end
    if next(running) then sleep(0.05) end
  end
end

function Search:run_workers(pending)
  self.words = script_words()
  local running, nrunning = {}, 0
  local delay = 0.01
  local ok, err = pcall(function()
    while #pending > 0 or nrunning > 0 do
      while nrunning < self.s.workers and #pending > 0 do
        local t = table.remove(pending, 1)
        local job, problem = self:launch(t)
        if problem then
          self:record(self:crash_record(job, nil))
        else
          running[t.index], nrunning = job, nrunning + 1
        end
      end
      local progress = false
      for index, job in pairs(running) do
        local rec = self:poll(job)
        if rec then
          running[index], nrunning = nil, nrunning - 1
          self:record(rec)
          progress = true
        end
      end
      if progress then
        delay = 0.01
      elseif nrunning > 0 then
        if not sleep(delay) then
          self.interrupted = true
          return
        end
        delay = math.min(0.2, delay * 1.5)
      end
    end
  end)
  if not ok then
    if not trial.is_interrupt(err) then
      self:stop(running)
      error(err, 0)
    end
    self.interrupted = true
  end
  if next(running) then self:stop(running) end
end

function Search:run_here(pending)
  for _, t in ipairs(pending) do
    local saved = core.get_rng_state()
    local ok, rec = pcall(run_one, self.s, t, self.rungs)
    core.set_rng_state(saved)
    if not ok then
      if trial.is_interrupt(rec) then rec = nil else error(rec, 0) end
    end
    if not rec then
      self.interrupted = true
      return
    end
    self:record(rec)
  end
end

-- Files named by s.merge: a folder's *.jsonl, or what a shell glob matches.
local function merge_files(pattern)
  local cmd
  if os.execute("test -d " .. q(pattern)) then
    cmd = "for f in " .. q(pattern) .. "/*.jsonl; do [ -f \"$f\" ] && printf '%s\\n' \"$f\"; done"
  else
    cmd = "for f in " .. pattern:gsub("[^%w%._/*?%[%]%-]", "\\%0")
      .. "; do [ -f \"$f\" ] && printf '%s\\n' \"$f\"; done"
  end
  local p = io.popen(cmd)
  local files = {}
  if p then
    for line in p:lines() do files[#files + 1] = line end
    p:close()
  end
  return files
end

function Search:emit(pending)
  local words = script_words()
  local dir = self.s.emit_dir or dirname(self.s.emit_commands)
  mkdir_p(dir)
  mkdir_p(dirname(self.s.emit_commands))
  local lines = {}
  for _, t in ipairs(pending) do
    local env = "CNNLUA_HPSEARCH_TRIAL=" .. t.index
    if self.s.threads then env = env .. " CNNLUA_HPSEARCH_THREADS=" .. self.s.threads end
    if self.s.asha then env = env .. " CNNLUA_HPSEARCH_RUNGS=" .. q(dir .. "/rungs.jsonl") end
    lines[#lines + 1] = string.format("%s %s > %s", env, words, q(dir .. "/trial-" .. t.index .. ".jsonl"))
  end
  local f, err = io.open(self.s.emit_commands, "w")
  if not f then fail("cannot write the commands: %s", tostring(err)) end
  f:write(table.concat(lines, "\n"), #lines > 0 and "\n" or "")
  f:close()
  if not self.s.quiet then
    print(string.format("hpsearch: wrote %d commands to %s; run them, then run this search again with merge = %q",
      #lines, self.s.emit_commands, dir))
  end
  return lines
end

-- Takes the log's records of this search's trials as finished; returns how many were new.
function Search:load_log()
  local n = 0
  for _, rec in ipairs(json.read_lines(self.s.log)) do
    local t = match(self.s, rec)
    if t then
      if not self.finished[t.index] then n = n + 1 end
      self.finished[t.index] = entry(t, rec)
    end
  end
  return n
end

local function search(s)
  local self = setmetatable({s = s, finished = {}, ran = 0, todo = 0}, Search)
  local t0 = core.wall_time()
  if s.log then mkdir_p(dirname(s.log)) end
  local resumed, merged = 0, 0
  if s.log then resumed = self:load_log() end
  if s.merge then
    for _, file in ipairs(merge_files(s.merge)) do
      for _, rec in ipairs(json.read_lines(file)) do
        local t = match(s, rec)
        if t and not self.finished[t.index] then
          self.finished[t.index] = entry(t, rec)
          if s.log then json.append(s.log, rec) end
          merged = merged + 1
        end
      end
    end
  end
  local pending = {}
  for _, t in ipairs(s.trials) do
    if not self.finished[t.index] then pending[#pending + 1] = t end
  end
  self.todo = #pending

  local emitted, commands
  if s.emit_commands then
    commands = self:emit(pending)
    emitted = s.emit_commands
  elseif #pending > 0 then
    self.threads = s.threads or math.max(1, core.get_num_threads() // math.max(1, s.workers))
    if s.workers > 0 or (s.asha and not s.log) then self.dir, self.tmpname = make_temp_dir() end
    if s.asha then self.rungs = s.log or (self.dir .. "/rungs.jsonl") end
    if not s.quiet then
      local from = {}
      if resumed > 0 then from[#from + 1] = string.format("%d from %s", resumed, s.log) end
      if merged > 0 then from[#from + 1] = string.format("%d merged", merged) end
      print(string.format("hpsearch: %s search, %d trials%s; %s", s.strategy, #s.trials,
        #from > 0 and " (" .. table.concat(from, ", ") .. " already done)" or "",
        s.workers > 0 and string.format("%d worker%s x %d thread%s", s.workers, s.workers > 1 and "s" or "",
          self.threads, self.threads > 1 and "s" or "") or "in this process"))
      io.stdout:flush()
    end
    if s.log then
      json.append(s.log, {type = "search", search = s.id, strategy = s.strategy, space = space.text(s),
                          seed = s.seed, trials = #s.trials, started = os.date("!%Y-%m-%dT%H:%M:%SZ")})
    end
    local ok, err = pcall(function()
      if s.workers > 0 then self:run_workers(pending) else self:run_here(pending) end
    end)
    if self.dir then
      os.execute("rm -rf " .. q(self.dir))
      os.remove(self.tmpname)
    end
    if not ok then error(err, 0) end
    -- a Ctrl-C may have come between a record's log line and its entry here: the log decides
    if self.interrupted and s.log then self:load_log() end
  end

  local trials = {}
  for i, t in ipairs(s.trials) do
    trials[i] = self.finished[t.index] or {index = t.index, seed = t.seed, params = t.params, status = "pending"}
  end
  if self.interrupted then
    local done = 0
    for _ in pairs(self.finished) do done = done + 1 end
    io.stderr:write(string.format("hpsearch: interrupted: %d of %d trials done%s\n", done, #s.trials,
      s.log and "; run the search again to resume from " .. s.log or " (no log: give log = to resume)"))
    io.stderr:flush()
  end
  return Result.new{trials = trials, names = s.names, dists = s.dists, metric = s.metric, mode = s.mode,
                    strategy = s.strategy, log = s.log, interrupted = self.interrupted or false,
                    seconds = core.wall_time() - t0, search = s.id, emitted = emitted, commands = commands}
end

--- cnn.hpsearch.search{space=, objective=, mode=, strategy="random", trials=, workers=1, seed=0,
---   metric="metric", log=, ...} -> result
--- Runs (or resumes) a search and returns its result; in a worker process, runs one trial and exits.
---
--- **Options.** space and objective are required, and mode ("max" or "min"). metric names the metric
--- (the key read when the objective returns a table). log is the JSON-lines path. threads per worker
--- (default max(1, floor(cores / workers))); timeout (seconds a trial may run before it is killed and
--- failed); quiet = false (no progress lines); retry_failed = false (run logged failures again);
--- emit_commands, emit_dir and merge (below).
---
--- **Spaces.** A table name -> hp.choice{...}, hp.uniform(a, b), hp.loguniform(a, b) or
--- hp.randint(a, b); a plain list {32, 64} is a choice and a plain number, string or boolean a fixed
--- value. A grid search takes every choice and needs a number of points for ranges:
--- hp.uniform(a, b, {n = 5}) (evenly spaced, ends included), hp.loguniform(a, b, {n = 4}) (evenly in
--- log), hp.randint(a, b) (every integer, or {n =} of them).
---
--- **Strategies.** "grid": every point of the product, the last parameter by name varying fastest
--- (`trials`, when given, runs the first that many). "random" and "asha": `trials` (default 10)
--- draws. Trial i's params and seed depend only on (seed, i), so growing `trials` keeps trials 1..n,
--- and random and ASHA searches with one seed try the same configurations. "asha" is asynchronous
--- successive halving with early stopping (Li et al. 2020): rungs at budgets min_steps * eta^k below
--- max_steps; when a trial's report(step, value) reaches a rung's budget its value is recorded there,
--- and the trial goes on only while it is among the best max(1, floor(k / eta)) of the k values
--- recorded at that rung so far (a rung with fewer than `grace` values stops nobody); otherwise
--- report() raises hp.PRUNED and the trial ends with status "pruned". ASHA options: max_steps
--- (required), eta = 3, min_steps = 1, grace = 1. Every trial records the highest step it reported
--- (`steps`), so result.total_steps compares the budget spent with a random search's.
---
--- **Workers.** Each trial runs in a fresh process that re-runs the script (`arg[0]` with its
--- arguments, under the same interpreter) with CNNLUA_HPSEARCH_WORKER naming a job file; when that
--- process reaches hp.search with the same spec, hp.search runs the one trial, writes its record and
--- exits. Forking a process whose OpenMP or OpenBLAS threads have started is unsafe; this is Python
--- multiprocessing's "spawn". So the script must build the same search in every run (a spec from its
--- arguments, not from the clock), run one search, and keep expensive set-up (data loading) inside the
--- objective, where only workers pay for it. A worker runs with `threads` threads and calls
--- cnn.manual_seed(trial.seed) before the objective, so a trial re-run with its params and seed gives
--- the same metric. workers = 0 runs the trials one by one in this process (for debugging; the
--- caller's random state is restored after each; a crash ends the search). A trial whose objective
--- raises, whose process dies, that runs past `timeout` or that returns NaN or inf is recorded
--- ("failed" or "nan", with the message) and the search goes on. A worker that dies before its script
--- reaches hp.search (an error in the script itself) stops the search with that error. Ctrl-C stops
--- the search: running trials are stopped, finished ones stay in the log, the result so far comes back
--- with result.interrupted = true, and running the search again resumes.
---
--- **Log.** One JSON line per finished trial ({"type":"trial", index, seed, params, status, metric,
--- seconds, steps, pid, message, ...}), one per ASHA rung report and one per search start; numbers
--- keep all their digits. A search run again with the same log skips every trial the log holds
--- (matched on index, seed and params).
---
--- **Elsewhere.** emit_commands = "cmds.txt" writes one shell command per unfinished trial instead of
--- running them, `CNNLUA_HPSEARCH_TRIAL=i cnnlua script.lua ARGS > DIR/trial-i.jsonl` (DIR = emit_dir,
--- default the commands file's folder), for GNU parallel or a Slurm array. A later run with
--- merge = "DIR" (a folder of *.jsonl, or a shell glob) takes their records into the log and the
--- result, and runs whatever is still missing.
---
--- **Result.** result.trials (index order: index, params, seed, status "ok"|"pruned"|"nan"|"failed"|
--- "pending", metric, seconds, steps, pid, message, values = other fields of a returned table),
--- result.best ({params, metric, seed, index} of the best "ok" trial, or nil), result.total_steps,
--- result.interrupted, result.seconds, result.emitted and result.commands (with emit_commands), and
--- the methods of cnn.hpsearch.Result.
function hp.search(spec)
  local ok, s = pcall(check_spec, spec)
  if not ok then
    if getmetatable(s) == Fail then error("hpsearch.search: " .. s.msg, 2) end
    error(s, 0)
  end
  local job, emitted = os.getenv("CNNLUA_HPSEARCH_WORKER"), os.getenv("CNNLUA_HPSEARCH_TRIAL")
  if job and job ~= "" then worker_job(s, job) end
  if emitted and emitted ~= "" then worker_emitted(s, emitted) end
  local res
  ok, res = pcall(search, s)
  if not ok then
    if getmetatable(res) == Fail then error("hpsearch.search: " .. res.msg, 2) end
    error(res, 0)
  end
  return res
end

return hp
