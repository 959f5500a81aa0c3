-- cnn.hpsearch.json: the JSON lines of search logs, results and rung reports. Encoding is ours:
-- numbers are written with the digits that read back to the same double (dkjson writes 14), keys
-- are sorted (stable, diffable logs) and nan/inf travel as the strings "nan", "inf", "-inf".
-- Decoding is dkjson's (lua-dkjson), loaded on first use.
local space = require "cnn.hpsearch.space"
local is_interrupt = require("cnn.util").is_interrupt

local json = {}

local escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return escapes[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

local function encode(v, out)
  local t = type(v)
  if t == "nil" then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "number" then
    local s = space.num(v)
    if s == "nan" or s == "inf" or s == "-inf" then s = '"' .. s .. '"' end
    out[#out + 1] = s
  elseif t == "string" then
    out[#out + 1] = encode_string(v)
  elseif t == "table" then
    if #v > 0 then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys, vals = {}, {}
      for k, val in pairs(v) do
        local ks = tostring(k)
        keys[#keys + 1] = ks
        vals[ks] = val
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        encode(vals[k], out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = encode_string(tostring(v))
  end
end

--- json.encode(v): one line of JSON (no newline).
function json.encode(v)
  local out = {}
  encode(v, out)
  return table.concat(out)
end

local dkjson
--- json.decode(line): the value, or nil when the line is not JSON (a partial line, other output).
function json.decode(line)
  dkjson = dkjson or require "dkjson"
  local ok, v = pcall(dkjson.decode, line, 1, nil)
  if ok then return v end
  -- Ctrl-C raised while dkjson ran is the search's to see, not a line that is not JSON (it was
  -- swallowed here: the search went on and logged the trial whose record this was as failed)
  if is_interrupt(v) then error(v, 0) end
  return nil
end

--- json.number(v): a decoded number field back as a number ("nan", "inf" strings included).
function json.number(v)
  if type(v) == "number" then return v end
  if v == "nan" then return 0 / 0 end
  if v == "inf" then return math.huge end
  if v == "-inf" then return -math.huge end
  return nil
end

--- json.read_lines(path): the decoded objects of a JSON-lines file (lines that do not decode to
--- a table are skipped: partial lines, a script's own output); {} when the file is missing.
function json.read_lines(path)
  local f = io.open(path, "r")
  if not f then return {} end
  local out = {}
  for line in f:lines() do
    if line:match("^%s*{") then
      local v = json.decode(line)
      if type(v) == "table" then out[#out + 1] = v end
    end
  end
  f:close()
  return out
end

--- json.read_file(path): one JSON document from a file, or nil.
function json.read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s and json.decode(s) or nil
end

--- json.append(path, obj): appends one line, in one write() (an unbuffered stream, one string):
--- lines appended at once by several processes (O_APPEND) do not interleave, and the line is in
--- the file when the call returns, even if a Ctrl-C stops the caller right after. A file cut short
--- (its last line without its newline: a full disk, a copy) gets the line on a line of its own.
function json.append(path, obj)
  local f, err = io.open(path, "a+")
  if not f then error("hpsearch: cannot append to " .. tostring(err), 0) end
  f:setvbuf("no")
  local size = f:seek("end")
  local cut = size and size > 0 and f:seek("set", size - 1) and f:read(1) ~= "\n"
  -- a write that failed (a full disk) is an error: the search would go on, its log short of what
  -- it reports, and a resume would run again what was done
  local ok, werr = f:write((cut and "\n" or "") .. json.encode(obj) .. "\n")
  local closed, cerr = f:close()
  if not ok or not closed then error("hpsearch: cannot append to " .. path .. ": " .. tostring(werr or cerr), 0) end
end

--- json.write_atomic(path, obj): writes through cnn.util.write_file (renamed over path), so a reader never sees
--- half a file.
function json.write_atomic(path, obj)
  local ok, err = require("cnn.util").write_file(path, json.encode(obj) .. "\n")
  if not ok then error("hpsearch: cannot write " .. tostring(err), 0) end
end

return json
