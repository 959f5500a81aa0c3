--- module cnn.hpsearch
--- Hyperparameter searches (grid, random, ASHA), each trial in a forked process.
--- Results go to an append-only JSON-lines log that a re-run resumes from. Conventionally
--- `local hp = cnn.hpsearch`:
---
---     local result = hp.search{
---       space = {lr = hp.loguniform(1e-3, 0.3), momentum = hp.choice{0, 0.5, 0.9}, batch_size = {32, 64}},
---       strategy = "random", trials = 24, workers = 2, seed = 1, metric = "accuracy", mode = "max",
---       log = "runs/search.jsonl",
---       objective = function(params, report)   -- runs in a forked worker process
---         -- train; report(epoch, accuracy) after each epoch (ASHA's rungs use it)
---         return accuracy                       -- or a table {accuracy = ..., loss = ...}
---       end,
---     }
---     print(result:table()); result:plot("runs/search.png"); result:csv("runs/search.csv")

-- cnn.hpsearch: hp.search forks a process per trial (core.process), reads its record back through
-- a pipe, appends the records to the log, and builds the result; hpsearch/view.lua shows the
-- progress. Spaces are hpsearch/space.lua, a trial's run hpsearch/trial.lua, the result
-- hpsearch/result.lua, the JSON lines hpsearch/json.lua.
local core = require "cnn.core"
local lfs = require "lfs"
local util = require "cnn.util"
local space = require "cnn.hpsearch.space"
local json = require "cnn.hpsearch.json"
local trial = require "cnn.hpsearch.trial"
local Result = require "cnn.hpsearch.result"
local View = require "cnn.hpsearch.view"

local process = core.process
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

-- Shell words for emitted commands (the one place a shell reads what we write): quoted only when
-- they need it, so the commands stay readable.
local function q(s)
  s = tostring(s)
  if s ~= "" and s:match("^[%w%._/:=+,@%-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local dirname = util.dirname

-- mkdir -p (cnn.util), raising in hp.search's terms
local function mkdir_p(dir)
  local ok, err = util.mkdir_p(dir)
  if not ok then fail("%s", err) end
end

-- ---------------------------------------------------------------------------------------------
-- The spec

local known = {}
for _, k in ipairs{"space", "objective", "strategy", "trials", "workers", "seed", "metric", "mode", "log",
                   "max_steps", "eta", "min_steps", "grace", "threads", "timeout", "quiet", "retry_failed",
                   "emit_commands", "emit_dir", "merge", "name"} do
  known[k] = true
end

local function opt_string(spec, key)
  local v = spec[key]
  if v ~= nil and (type(v) ~= "string" or v == "") then
    fail("%s must be a non-empty string, got %s", key, util.show(v))
  end
  return v
end

local function opt_int(spec, key, default, min)
  local v = spec[key]
  if v == nil then return default end
  if not is_int(v) or v < min then fail("%s must be an integer >= %d, got %s", key, min, util.show(v)) end
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
    fail("strategy must be \"grid\", \"random\" or \"asha\", got %s", util.show(s.strategy))
  end
  if spec.space == nil then fail("needs space = {name = hp.uniform(...), ...}") end
  local sp = space.normalize(spec.space)
  s.names, s.dists = sp.names, sp.dists
  if spec.mode ~= "max" and spec.mode ~= "min" then
    fail("mode must be \"max\" or \"min\" (is a higher metric better?), got %s", util.show(spec.mode))
  end
  s.mode = spec.mode
  s.metric = opt_string(spec, "metric") or "metric"
  -- what the trials measure beyond the space (data, epochs): a string, or a table of settings
  -- name -> number, string or boolean, written in key order
  if type(spec.name) == "table" then
    local keys = {}
    for k, v in pairs(spec.name) do
      if type(k) ~= "string" or (type(v) ~= "number" and type(v) ~= "string" and type(v) ~= "boolean") then
        fail("name's entries must be setting = number, string or boolean, got %s = %s", util.show(k), type(v))
      end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for i, k in ipairs(keys) do keys[i] = k .. "=" .. space.value_text(spec.name[k]) end
    s.name = table.concat(keys, ";")
  else
    s.name = opt_string(spec, "name")
  end
  if spec.seed ~= nil and not is_int(spec.seed) then fail("seed must be an integer, got %s", util.show(spec.seed)) end
  s.seed = math.tointeger(spec.seed or 0)
  s.workers = opt_int(spec, "workers", 1, 0)
  s.threads = opt_int(spec, "threads", nil, 1)
  if s.threads and s.threads > 1024 then -- cnn.set_num_threads' documented limit: else every trial fails
    fail("threads must be at most 1024, got %d", s.threads)
  end
  if spec.timeout ~= nil and (type(spec.timeout) ~= "number" or not (spec.timeout > 0)) then
    fail("timeout must be a positive number of seconds, got %s", util.show(spec.timeout))
  end
  -- a trial running in this process cannot be stopped: the timeout was ignored without a word
  if spec.timeout ~= nil and s.workers == 0 then
    fail("timeout needs worker processes (workers >= 1): a trial run in this process (workers = 0) cannot be "
      .. "stopped")
  end
  s.timeout = spec.timeout
  s.log = opt_string(spec, "log")
  local log_kind = s.log and lfs.attributes(s.log, "mode")
  if log_kind and log_kind ~= "file" then
    fail("log %s is a %s, not a file; give the path of a file, such as %s/search.jsonl", s.log,
      log_kind == "directory" and "folder" or log_kind, s.log)
  end
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
      fail("eta must be a number > 1, got %s", util.show(a.eta))
    end
    a.min_steps = spec.min_steps or 1
    if type(a.min_steps) ~= "number" or not (a.min_steps > 0) then
      fail("min_steps must be a positive number, got %s", util.show(a.min_steps))
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
  -- (a default metric and no name add nothing: the ids of logs written before they counted stand)
  if s.metric ~= "metric" then id[#id + 1] = "metric=" .. s.metric end
  if s.name then id[#id + 1] = "name=" .. s.name end
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
  if rec.search ~= s.id then return nil end -- another search's trial, whatever its params
  local t = s.trials[rec.index]
  if not t or rec.seed ~= t.seed or type(rec.params) ~= "table" or not FINAL[rec.status] then return nil end
  local n = 0
  for _ in pairs(rec.params) do n = n + 1 end
  if n ~= #s.names or space.key(s.names, rec.params) ~= t.key then return nil end
  if rec.status == "failed" and s.retry_failed then return nil end
  return t
end

-- ---------------------------------------------------------------------------------------------
-- Trials

local function die(code, fmt, ...)
  io.stderr:write("hpsearch: ", string.format(fmt, ...), "\n")
  io.stderr:flush()
  os.exit(code)
end

local function run_one(s, t, rungs)
  local asha = s.asha and rungs and {budgets = s.asha.budgets, eta = s.asha.eta, grace = s.asha.grace, rungs = rungs}
  return trial.run{objective = s.objective, params = t.params, seed = t.seed, index = t.index, search = s.id,
                   metric = s.metric, mode = s.mode, asha = asha}
end

-- Started from an emitted command (CNNLUA_HPSEARCH_TRIAL = index): the record to stdout.
local function run_emitted(s, value)
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
  if type(a) ~= "table" or type(a[0]) ~= "string" or a[0] == "-" or a[0]:match("cnnlua$") then
    fail("emit_commands writes commands that re-run the script, but there is none (arg[0]); " ..
      "run the search from a script file")
  end
  if a[0]:match("busted$") then
    fail("emitted commands would re-run %s; write the search in a script of its own", a[0])
  end
  local lo = 0
  while a[lo - 1] ~= nil do lo = lo - 1 end
  local words = {}
  if lo == 0 then words[1] = "cnnlua" end
  for i = lo, #a do words[#words + 1] = q(a[i]) end
  return table.concat(words, " ")
end

local function tail_lines(text, n)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]+") do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  return lines
end

local Search = {}
Search.__index = Search

-- A finished trial: into the log first (the log is what a Ctrl-C keeps), then the result.
function Search:record(rec)
  local t = self.s.trials[rec.index]
  if self.s.log then json.append(self.s.log, rec) end
  self.finished[rec.index] = entry(t, rec)
  self.ran = self.ran + 1
  local e = self.finished[rec.index]
  local ps = {}
  for _, n in ipairs(self.s.names) do ps[#ps + 1] = n .. "=" .. Result.format(t.params[n]) end
  self.view:finished(e, string.format("[%d/%d] trial %d: %s, %s %s, %.1f s%s, %s%s", self.ran, self.todo, t.index,
    e.status, self.s.metric, Result.format(e.metric), e.seconds or 0,
    e.steps and ", " .. space.num(e.steps) .. " steps" or "", table.concat(ps, " "),
    e.message and " (" .. Result._first_line(e.message, 200) .. ")" or ""))
end

-- The record of a trial process that ended without handing one back.
function Search:crash_record(job, how, code)
  local lines = tail_lines(job.output and process.tail(job.output, 16384) or "", 20)
  local why
  if job.timed_out then
    why = string.format("timed out after %s s (killed)", space.num(self.s.timeout))
  elseif how == "signal" then
    why = string.format("worker killed by signal %d", code)
  elseif how == "exit" then
    why = string.format("worker exited with status %d", code)
  else
    why = "worker process lost"
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
          message = why, output = #lines > 0 and table.concat(lines, "\n") or nil, pid = job.pid,
          seconds = process.clock() - job.started}
end

-- Forks trial t's process. The job is in self.running before the fork, and fork fills in its
-- pid and pipe, so a Ctrl-C at any point finds every child to stop.
function Search:launch(t)
  local s, rungs, threads = self.s, self.rungs, self.child_threads
  local made, output = pcall(process.tmpfile)
  if not made then -- TMPDIR missing or full: the search's own error, not a line of this file
    if trial.is_interrupt(output) then error(output, 0) end
    fail("cannot make a trial's output file: %s", tostring(output):match("process%.tmpfile: (.*)$") or tostring(output))
  end
  local job = {t = t, started = process.clock(), chunks = {}, output = output}
  self.running[t.index] = job
  self.nrunning = self.nrunning + 1
  local ok, err = pcall(process.fork, function()
    core.set_num_threads(threads)
    local rec, err = run_one(s, t, rungs)
    if not rec then error(err, 0) end
    return json.encode(rec)
  end, job)
  if not ok then
    if trial.is_interrupt(err) then -- Ctrl-C: forked already, stop() has the child; else none to stop
      if not job.pid then self:release(job) end
      error(err, 0)
    end
    self:release(job)
    local rec = self:crash_record(job)
    rec.message = "could not start a worker process: " .. tostring(err)
    self:record(rec)
    return
  end
  self.view:started(t)
end

-- Reads what the trial's pipe holds; true once it is at its end.
local function drain(job)
  while not job.eof do
    local chunk = process.read(job.fd)
    if chunk == nil then
      job.eof = true
    elseif chunk == "" then
      break
    else
      job.chunks[#job.chunks + 1] = chunk
    end
  end
  return job.eof
end

-- Forgets a job whose process has ended: closes its descriptors.
function Search:release(job)
  if self.running[job.t.index] == job then
    self.running[job.t.index] = nil
    self.nrunning = self.nrunning - 1
  end
  if job.fd then process.close(job.fd) end
  if job.output then process.close(job.output) end
  job.fd, job.output = nil, nil
end

-- The record of a job whose process has ended (how, code: process.wait's answer), and whether
-- the trial handed it back itself (false: made up here from how it ended).
function Search:finish(job, how, code)
  if job.fd then drain(job) end
  local rec, own = json.decode(table.concat(job.chunks)), true
  if type(rec) ~= "table" or rec.index ~= job.t.index then rec, own = self:crash_record(job, how, code), false end
  self:release(job)
  return rec, own
end

-- Checks one running job: its record when its process has ended, else nil (killing it past the
-- timeout).
function Search:poll(job)
  if job.fd then drain(job) end
  local how, code = process.wait(job.pid)
  if how then return self:finish(job, how, code) end
  local timeout = self.s.timeout
  if timeout and process.clock() - job.started > timeout then
    if not job.timed_out then
      job.timed_out, job.killed_at = true, process.clock()
      process.kill(job.pid, "TERM")
    elseif process.clock() - job.killed_at > 2 then
      process.kill(job.pid, "KILL")
    end
  end
  return nil
end

-- Stops the running trials (Ctrl-C, or an error in the search): SIGTERM, a short wait in which a
-- trial that finishes is still recorded, then SIGKILL for the rest.
function Search:stop()
  for _, job in pairs(self.running) do
    if job.pid then process.kill(job.pid, "TERM") end
  end
  local deadline = process.clock() + 2
  while next(self.running) and process.clock() < deadline do
    for _, job in pairs(self.running) do
      if not job.pid then
        self:release(job)
      else
        local how, code = process.wait(job.pid)
        if how then
          local rec, own = self:finish(job, how, code)
          if own then self:record(rec) end -- one we stopped runs again next time
        elseif job.fd then
          drain(job)
        end
      end
    end
    if next(self.running) then process.sleep(0.02) end
  end
  for _, job in pairs(self.running) do
    if job.pid then
      process.kill(job.pid, "KILL")
      process.wait(job.pid, true)
    end
    self:release(job)
  end
end

function Search:run_workers(pending)
  self.running, self.nrunning = {}, 0
  self.child_threads = self.threads -- the thread pool survives fork(): a child starts its own
  local ok, err = pcall(function()
    while #pending > 0 or self.nrunning > 0 do
      while self.nrunning < self.s.workers and #pending > 0 do self:launch(table.remove(pending, 1)) end
      -- wait for a trial to hand back its record or end, a timeout to pass, or the view to redraw
      local fds, wait = {}, 0.5
      for _, job in pairs(self.running) do
        if job.eof then wait = 0.01 else fds[#fds + 1] = job.fd end
        if self.s.timeout then wait = math.min(wait, math.max(0.01, job.started + self.s.timeout - process.clock())) end
      end
      process.poll(fds, wait)
      for _, job in pairs(self.running) do
        local rec = self:poll(job)
        if rec then self:record(rec) end
      end
      self.view:tick()
    end
  end)
  if not ok then
    -- a second Ctrl-C while the workers are stopped stops them again: it escaped as an error and left
    -- them running or unreaped
    repeat
      local stopped, serr = pcall(self.stop, self)
      if not stopped and not trial.is_interrupt(serr) then error(serr, 0) end
    until stopped
    if not trial.is_interrupt(err) then error(err, 0) end
    self.interrupted = true
  end
end

function Search:run_here(pending)
  for _, t in ipairs(pending) do
    -- each trial starts from the search's generator, grad mode and thread count (threads when
    -- given, as a worker's), whatever the last one left; the caller gets its own back after
    local saved, grad, nthreads = core.get_rng_state(), core.is_grad_enabled(), core.get_num_threads()
    if self.s.threads then core.set_num_threads(self.s.threads) end
    self.view:started(t)
    local ok, rec = pcall(run_one, self.s, t, self.rungs)
    core.set_rng_state(saved)
    core.set_grad_enabled(grad)
    core.set_num_threads(nthreads)
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

-- A glob's file-name part as a Lua pattern (* ? and [...] classes).
local function glob_pattern(glob)
  local out, i = {"^"}, 1
  while i <= #glob do
    local c = glob:sub(i, i)
    if c == "*" then
      out[#out + 1] = "[^/]*"
    elseif c == "?" then
      out[#out + 1] = "[^/]"
    elseif c == "[" and glob:find("]", i + 2, true) then
      local close = glob:find("]", i + 2, true)
      local body = glob:sub(i + 1, close - 1):gsub("^!", "^"):gsub("%%", "%%%%")
      out[#out + 1] = "[" .. body .. "]"
      i = close
    else
      out[#out + 1] = c:gsub("%W", "%%%0")
    end
    i = i + 1
  end
  return table.concat(out) .. "$"
end

-- Files named by s.merge: a folder's *.jsonl, or the files a wildcard file name matches.
local function merge_files(where)
  local dir, pattern
  if util.is_dir(where) then
    dir, pattern = where, "%.jsonl$"
  else
    dir, pattern = dirname(where), glob_pattern(where:match("[^/]*$"))
    if dir:find("[*?%[]") then fail("merge: only the file name may hold wildcards, got %s", where) end
  end
  local files = {}
  -- a folder with no records yet is fine; a folder or glob that names nothing is a mistake
  if not util.is_dir(dir) then fail("merge: %s: no such folder", dir) end
  for name in lfs.dir(dir) do
    local path = (dir == "." and not where:match("^%./") and where:find("/") == nil) and name or dir .. "/" .. name
    if name ~= "." and name ~= ".." and name:match(pattern) and lfs.attributes(path, "mode") == "file" then
      files[#files + 1] = path
    end
  end
  table.sort(files)
  if #files == 0 and dir ~= where then fail("merge: %s matches no files", where) end
  return files
end

function Search:emit(pending)
  local words = script_words()
  local dir = self.s.emit_dir or dirname(self.s.emit_commands)
  mkdir_p(dir)
  mkdir_p(dirname(self.s.emit_commands))
  -- each command starts in this folder: the script's path and the relative paths in its arguments
  -- and here mean what they meant to this run, wherever GNU parallel or Slurm starts the shell
  local cwd = lfs.currentdir()
  if not cwd then fail("cannot tell the current folder, which the commands must start in") end
  -- one command a line is what GNU parallel and Slurm arrays read
  for what, text in pairs {["the current folder"] = cwd, ["the script's arguments"] = words, emit_dir = dir} do
    if text:find("\n") then
      fail("emit_commands writes one command a line, but there is a newline in %s: %q", what, text)
    end
  end
  local lines = {}
  for _, t in ipairs(pending) do
    local env = "CNNLUA_HPSEARCH_TRIAL=" .. t.index .. " CNNLUA_HPSEARCH_SEARCH=" .. self.s.id
    if self.s.threads then env = env .. " CNNLUA_HPSEARCH_THREADS=" .. self.s.threads end
    if self.s.asha then env = env .. " CNNLUA_HPSEARCH_RUNGS=" .. q(dir .. "/rungs.jsonl") end
    lines[#lines + 1] = string.format("cd %s && %s %s > %s", q(cwd), env, words,
      q(dir .. "/trial-" .. t.index .. ".jsonl"))
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

local function result_of(s, finished, fields)
  local trials = {}
  for i, t in ipairs(s.trials) do
    trials[i] = finished[t.index] or {index = t.index, seed = t.seed, params = t.params, status = "pending"}
  end
  fields.trials, fields.names, fields.dists, fields.metric, fields.mode = trials, s.names, s.dists, s.metric, s.mode
  fields.strategy, fields.log, fields.search = s.strategy, s.log, s.id
  return Result.new(fields)
end

local function search(s)
  local self = setmetatable({s = s, finished = {}, ran = 0, todo = 0}, Search)
  local t0 = process.clock()
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

  local from = {} -- the trials already done, for the first line
  if resumed > 0 then from[#from + 1] = string.format("%d from %s", resumed, s.log) end
  if merged > 0 then from[#from + 1] = string.format("%d merged", merged) end
  local emitted, commands
  if s.emit_commands then
    commands = self:emit(pending)
    emitted = s.emit_commands
  elseif #pending > 0 then
    self.threads = s.threads or math.max(1, core.get_num_threads() // math.max(1, s.workers))
    if s.asha then
      self.rungs = s.log
      if not self.rungs then -- a file of our own that every trial process appends to
        self.rungs_tmp = os.tmpname()
        self.rungs = self.rungs_tmp
      end
    end
    self.view = View.new{quiet = s.quiet, todo = #pending, workers = s.workers, metric = s.metric, mode = s.mode}
    local threads = s.workers > 0 and self.threads or core.get_num_threads()
    self.view:line(string.format("hpsearch: %s search, %d trials%s; %s", s.strategy, #s.trials,
      #from > 0 and " (" .. table.concat(from, ", ") .. " already done)" or "",
      s.workers > 0 and string.format("%d worker%s x %d thread%s", s.workers, s.workers > 1 and "s" or "",
        threads, threads > 1 and "s" or "") or "in this process"))
    if s.log then
      json.append(s.log, {type = "search", search = s.id, strategy = s.strategy, space = space.text(s),
                          seed = s.seed, trials = #s.trials, metric = s.metric, name = s.name,
                          started = os.date("!%Y-%m-%dT%H:%M:%SZ")})
    end
    local ok, err = pcall(function()
      if s.workers > 0 then self:run_workers(pending) else self:run_here(pending) end
    end)
    self.view:close()
    if self.rungs_tmp then os.remove(self.rungs_tmp) end
    if not ok then error(err, 0) end
    -- a Ctrl-C may have come between a record's log line and its entry here: the log decides
    if self.interrupted and s.log then self:load_log() end
  elseif not s.quiet then -- every trial came from the log or the merge: say so, not nothing
    io.stdout:write(string.format("hpsearch: %s search, %d trials, all already done (%s); nothing to run\n",
      s.strategy, #s.trials, table.concat(from, ", ")))
    io.stdout:flush()
  end

  if self.interrupted then
    local done = 0
    for _ in pairs(self.finished) do done = done + 1 end
    io.stdout:flush()
    io.stderr:write(string.format("hpsearch: interrupted: %d of %d trials done%s\n", done, #s.trials,
      s.log and "; run the search again to resume from " .. s.log or " (no log: give log = to resume)"))
    io.stderr:flush()
  end
  return result_of(s, self.finished, {interrupted = self.interrupted or false, seconds = process.clock() - t0,
                                      emitted = emitted, commands = commands})
end

--- cnn.hpsearch.search{space=, objective=, mode=, strategy="random", trials=, workers=1, seed=0,
---   metric="metric", log=, ...} -> result
--- Runs (or resumes) a search, each trial in a forked process, and returns its result.
---
--- **Options.** space and objective are required, and mode ("max" or "min"). The objective returns
--- the metric: a number, a one-element tensor (its value), or a table holding it at key metric
--- (default "metric"); report(step, value) takes a number or a one-element tensor too. log is the
--- JSON-lines path. threads per worker (default max(1, floor(cores / workers))); timeout (seconds a
--- trial may run before it is killed and failed; workers >= 1); quiet (true: no progress lines); retry_failed =
--- false (run logged failures again); emit_commands, emit_dir and merge (below). name says what the
--- trials measure beyond the space: a string, or a table of settings ({epochs = 3, train_size =
--- 5000}). A log resumes only trials of the same search: the same strategy, space, seed, mode, ASHA
--- budget, metric and name (a search with other data or epochs must say so in its name, or it
--- would take the earlier search's metrics for its own).
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
--- report() raises hp.PRUNED and the trial ends with status "pruned" ("nan" when the value it
--- reported there is NaN or infinite: it diverged, and such a value outranks nobody). ASHA
--- options: max_steps (required), eta = 3, min_steps = 1, grace = 1. Every trial records the
--- highest step it reported (`steps`), so result.total_steps compares the budget spent with a
--- random search's.
---
--- **Workers.** Each trial runs in a child process forked from this one when the trial starts: the
--- objective closure, its upvalues and whatever the session has loaded (a dataset, a model) are there
--- as they are now, shared copy-on-write, so nothing is re-run or re-read. So a search works the same
--- from a script, `cnnlua -e`, `cnnlua -i` and the REPL prompt, and one session can run any number of
--- searches one after another. A trial's process calls cnn.set_num_threads(threads) and
--- cnn.manual_seed(trial.seed) before the objective, so a trial re-run with its params and seed gives
--- the same metric, on as many threads (the thread pool survives fork(): a child starts its own
--- workers). A trial's output goes to a temporary file; its end is kept in a failed trial's record.
--- workers = 0 runs the trials one by one in this process (for debugging; on threads threads when
--- given; the caller's random state, grad mode and thread count are restored after each; a crash
--- ends the search). A trial whose objective raises, whose process
--- dies (os.exit, a signal), that runs past `timeout` or that returns NaN or inf is recorded
--- ("failed" or "nan", with the message: its first 4 KiB) and the search goes on. Ctrl-C stops the search: running
--- trials are stopped, finished ones stay in the log, the result so far comes back with
--- result.interrupted = true (the script or the REPL goes on), and running the search again with
--- the same log resumes. With workers, a trial's processes are its own: when it ends, however it
--- ends, what it started in its process group and left running (os.execute's background jobs, the
--- children of a killed trial) is killed, and so is every running trial's when the search's process
--- dies (kill -9 included). A program that leaves the group (setsid, a daemon) is left alone.
---
--- **Progress.** On a terminal a status line under the trials' lines shows the trials finished (ok,
--- pruned, failed), running, the best so far, the time spent and an estimate of the time left;
--- piped or logged, one plain line per finished trial (no carriage returns). quiet = true: nothing.
---
--- **Log.** One JSON line per finished trial ({"type":"trial", index, seed, params, status, metric,
--- seconds, steps, pid, message, ...}), one per ASHA rung report and one per search start; numbers
--- keep all their digits. A search run again with the same log skips every trial the log holds
--- for it (matched on the search's id, index, seed and params; see name).
---
--- **Elsewhere.** emit_commands = "cmds.txt" writes one shell command per unfinished trial instead of
--- running them, `cd FOLDER && CNNLUA_HPSEARCH_TRIAL=i CNNLUA_HPSEARCH_SEARCH=id cnnlua script.lua
--- ARGS > DIR/trial-i.jsonl` (FOLDER the one this search ran in, so relative paths keep their
--- meaning; DIR = emit_dir, default the commands file's folder), for GNU parallel or a Slurm array.
--- Each re-runs the script, whose search `id` runs trial i alone and prints its record (the
--- script's other searches return at once, every trial "pending"), so the script must build the
--- same search on every run (a spec from its arguments, not from the clock). A later run with
--- merge = "DIR" (a folder of *.jsonl, or a path whose file name holds * ? wildcards) takes their
--- records into the log and the result, and runs whatever is still missing.
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
  local emitted = os.getenv("CNNLUA_HPSEARCH_TRIAL")
  if emitted and emitted ~= "" then
    local which = os.getenv("CNNLUA_HPSEARCH_SEARCH")
    if which == nil or which == "" or which == s.id then run_emitted(s, emitted) end
    return result_of(s, {}, {interrupted = false, seconds = 0}) -- another search's trial command
  end
  local res
  ok, res = pcall(search, s)
  if not ok then
    if getmetatable(res) == Fail then error("hpsearch.search: " .. res.msg, 2) end
    error(res, 0)
  end
  return res
end

return hp
