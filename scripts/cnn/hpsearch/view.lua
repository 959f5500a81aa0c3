-- cnn.hpsearch.view: what a running search shows. Every finished trial prints one line. On a
-- terminal a status line sits under them and is redrawn in place (at most once a second, and at
-- every event): trials finished (ok, pruned, nan, failed), running, the best metric so far, the time
-- spent and an estimate of the time left. Anywhere else (a pipe, a file, a process started by
-- mpirun or srun, whose terminal the launcher forwards into a log) only the lines are written:
-- no carriage returns, no escape sequences. quiet = true shows nothing.
local core = require "cnn.core"
local Result = require "cnn.hpsearch.result"
local space = require "cnn.hpsearch.space"

local process = core.process

local View = {}
View.__index = View

-- 75 s -> "1:15", 4000 s -> "1:06:40"
local function clock_text(s)
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60) end
  return string.format("%d:%02d", s // 60, s % 60)
end
View.clock_text = clock_text

--- View.new{quiet=, todo=, workers=, metric=, mode=, tty=, clock=}: tty defaults to whether stdout
--- is a terminal not forwarded by a launcher (cnn.distributed.launched); the status line shows only
--- with worker processes (an objective running in this process writes to the same terminal). clock
--- (seconds, default process.clock) is for tests.
function View.new(o)
  local clock = o.clock or process.clock
  local v = setmetatable({quiet = o.quiet, todo = o.todo, metric = o.metric, mode = o.mode, running = 0, done = 0,
                          workers = o.workers or 0, clock = clock, since = {}, spent = 0, timed = 0,
                          counts = {ok = 0, pruned = 0, nan = 0, failed = 0}, t0 = clock(), shown = false, drawn = 0},
                         View)
  local tty = o.tty
  if tty == nil then
    tty = core.isatty(io.stdout) and os.getenv("TERM") ~= "dumb" and not require("cnn.distributed").launched()
  end
  v.live = not o.quiet and tty and (o.workers or 0) > 0
  return v
end

function View:clear()
  if self.shown then
    io.stdout:write("\r\27[K")
    self.shown = false
  end
end

--- view:status(): the status line's text.
function View:status()
  local c = self.counts
  local parts = {}
  for _, k in ipairs{"ok", "pruned", "nan", "failed"} do -- the result's summary's words
    if c[k] > 0 then parts[#parts + 1] = c[k] .. " " .. k end
  end
  local s = string.format("hpsearch: %d/%d done%s, %d running", self.done, self.todo,
    #parts > 0 and " (" .. table.concat(parts, ", ") .. ")" or "", self.running)
  if self.best then
    s = s .. string.format(", best %s %s (trial %d)", self.metric, Result.format(self.best.metric), self.best.index)
  end
  local now = self.clock()
  s = s .. ", " .. clock_text(now - self.t0)
  local left = self:left(now)
  if left then s = s .. string.format(", ~%s left", clock_text(left)) end
  return s
end

--- view:left(now): seconds until the last trial ends, estimated, or nil before the first one ends.
--- A trial is taken to last the mean of the finished ones: what the running trials still need and
--- the trials not started yet, shared among the workers (the time of the longest one at least).
function View:left(now)
  if self.timed == 0 or self.done >= self.todo then return nil end
  local mean = self.spent / self.timed
  local queued = math.max(0, self.todo - self.done - self.running)
  local work, longest = queued * mean, queued > 0 and mean or 0
  for _, t0 in pairs(self.since) do
    local rest = math.max(0, mean - (now - t0))
    work, longest = work + rest, math.max(longest, rest)
  end
  return math.max(work / math.max(1, self.workers), longest)
end

function View:draw()
  if not self.live then return end
  local text = self:status()
  local width = process.columns()
  if width and width > 1 and #text > width - 1 then text = text:sub(1, width - 4) .. "..." end
  io.stdout:write("\r\27[K", text)
  io.stdout:flush()
  self.shown, self.drawn = true, self.clock()
end

--- view:line(text): a line above the status line.
function View:line(text)
  if self.quiet then return end
  self:clear()
  io.stdout:write(text, "\n")
  self:draw()
  io.stdout:flush()
end

--- view:started(trial)
function View:started(t)
  self.running = self.running + 1
  if t and t.index then self.since[t.index] = self.clock() end
  self:draw()
end

--- view:finished(entry, text): a trial ended (entry: its result entry); text is its line.
function View:finished(e, text)
  self.running = math.max(0, self.running - 1)
  self.done = self.done + 1
  local t0 = self.since[e.index]
  if t0 then
    self.spent, self.timed, self.since[e.index] = self.spent + (self.clock() - t0), self.timed + 1, nil
  end
  local k = self.counts[e.status] and e.status or "failed" -- a diverged trial ("nan") is not a failed one
  self.counts[k] = self.counts[k] + 1
  if e.status == "ok" and (not self.best or space.better(e.metric, self.best.metric, self.mode)) then self.best = e end
  self:line(text)
end

--- view:tick(): redraws the status line when a second has passed (the clocks move).
function View:tick()
  if self.live and self.clock() - self.drawn >= 1 then self:draw() end
end

--- view:close(): takes the status line away.
function View:close()
  self:clear()
  io.stdout:flush()
end

return View
