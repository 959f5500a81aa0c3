--- module cnn.util
--- Helpers the library's Lua half shares, one of each: option checking, files and folders.
--- The tensor test is a C check that allocates nothing; file writes are atomic; folders are made,
--- listed and removed through lua-filesystem (lfs), never through shell strings. Requires only
--- cnn.core and lfs, so every module can use it while the `cnn` table is being built.
local core = require "cnn.core"
local lfs = require "lfs"

local util = {}

util.is_tensor = core.is_tensor -- documented with the binding (bindings/core/lfactory.c)

--- cnn.util.show(v, fmt) -> string
--- v as an error message shows it: tostring(v), but "nan" for every NaN.
--- With fmt ("%g"), a number is string.format(fmt, v) instead.
--- tostring and "%g" give "-nan" for Lua's 0/0 on x86; PyTorch's messages say "nan".
function util.show(v, fmt)
  if v ~= v then return "nan" end
  if fmt and type(v) == "number" then return string.format(fmt, v) end
  return tostring(v)
end

--- cnn.util.check_options(fn, opts, known, level=1) -> opts
--- The options table opts (an empty one for nil), checked against the keys of known.
--- known maps each accepted key to anything but nil (`{stride = true}`, or a table of defaults).
--- The error names fn ("fn: unknown option 'strid'") and is raised at `level` as error() counts it
--- from the function calling check_options (1: that function's line; 2: its caller's; 0: no position).
function util.check_options(fn, opts, known, level)
  level = level or 1
  local at = level == 0 and 0 or level + 1
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(string.format("%s: expected an options table, got %s", fn, util.is_tensor(opts) and "a tensor" or type(opts)),
      at)
  end
  for k in pairs(opts) do
    if known[k] == nil then error(string.format("%s: unknown option '%s'", fn, tostring(k)), at) end
  end
  return opts
end

--- cnn.util.checked(level, ok, ...) -> ...
--- The results of a pcall(f, ...) that succeeded, or its error re-raised at `level`.
--- `level` counts as error() does from the function calling checked (2: that function's caller's
--- line). For the C functions the library wraps, whose messages name the public function and carry
--- no position; a message that has a position already keeps it alone. Call it in an ordinary (not
--- a tail) position, `local y = checked(2, pcall(f, x))`: a tail call would drop a level.
function util.checked(level, ok, ...)
  if not ok then
    local msg = ...
    if type(msg) == "string" and msg:match("^[^%s:]+:%d+: ") then error(msg, 0) end
    error(msg, level + 1)
  end
  return ...
end

--- cnn.util.write_file(path, data) -> true | nil, message
--- Writes the string data to path atomically, through a temporary file renamed over path.
--- A reader never sees half a file, and a failed write leaves the old file in place. As the
--- library's other writers (cnn.save, image.save): a device or a pipe at path is written as it
--- is, a symbolic link stays a link to the new file, and a folder is refused.
function util.write_file(path, data)
  if type(path) ~= "string" or path == "" then
    return nil, "write_file: expected a path, got " .. (path == "" and "an empty string" or util.show(path))
  end
  if type(data) ~= "string" then return nil, "write_file: expected the data as a string, got " .. type(data) end
  return core.io.write_atomic(path, data)
end

--- cnn.util.dirname(path) -> string
--- The folder part of path, as the dirname command: "." for a bare name, "/" for a name in the root.
function util.dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  return d == "" and "/" or d
end

--- cnn.util.is_dir(path) -> boolean
--- Whether path names a folder (following symbolic links).
function util.is_dir(path)
  return lfs.attributes(path, "mode") == "directory"
end

--- cnn.util.mkdir_p(dir) -> true | nil, message
--- Makes the folder dir and any missing parents (mkdir -p); a folder that exists already is fine.
function util.mkdir_p(dir)
  local path = dir:sub(1, 1) == "/" and "/" or ""
  for part in dir:gmatch("[^/]+") do
    path = path .. part
    if not util.is_dir(path) then
      if lfs.attributes(path) then return nil, string.format("cannot create %s: %s is not a folder", dir, path) end
      local ok, err = lfs.mkdir(path)
      if not ok and not util.is_dir(path) then return nil, string.format("cannot create %s: %s", path, err) end
    end
    path = path .. "/"
  end
  return true
end

--- cnn.util.writable_dir(dir) -> true | nil, message
--- Makes the folder dir (mkdir -p) and checks that a file can be created in it.
--- A run that calls it first finds an unwritable output folder before its work, not after; the
--- check's file is removed.
function util.writable_dir(dir)
  if type(dir) ~= "string" or dir == "" then
    return nil, "expected a folder's path, got " .. (dir == "" and "an empty string" or util.show(dir))
  end
  local ok, err = util.mkdir_p(dir)
  if not ok then return nil, err end
  -- the writers' own temporary file, made and dropped: unnamed, or under an exclusive new name
  -- (a fixed name was followed when a symbolic link sat there, and its target truncated)
  local probe = dir .. "/.cnnlua-write-check"
  local fine, perr = core.io.probe_write(probe)
  if not fine then -- its message starts with the probe's name, which is none of the caller's
    if perr:sub(1, #probe + 2) == probe .. ": " then perr = perr:sub(#probe + 3) end
    return nil, string.format("cannot write in %s: %s", dir, perr)
  end
  return true
end

--- cnn.util.list_dir(dir) -> names | nil, message
--- The names in the folder dir (not "." and ".."), sorted.
function util.list_dir(dir)
  local ok, iter, state = pcall(lfs.dir, dir)
  if not ok then return nil, tostring(iter) end
  local names = {}
  for name in iter, state do
    if name ~= "." and name ~= ".." then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

--- cnn.util.remove_tree(path) -> true | nil, message
--- Removes path, a file or a folder with everything in it (rm -rf).
--- Symbolic links are removed, never followed. A path that does not exist is fine.
function util.remove_tree(path)
  local mode = lfs.symlinkattributes(path, "mode")
  if mode == nil then return true end
  if mode == "directory" then
    local names, err = util.list_dir(path)
    if not names then return nil, err end
    for _, name in ipairs(names) do
      local ok, rerr = util.remove_tree(path .. "/" .. name)
      if not ok then return nil, rerr end
    end
    local ok, rerr = lfs.rmdir(path)
    if not ok then return nil, string.format("cannot remove %s: %s", path, rerr) end
    return true
  end
  local ok, rerr = os.remove(path)
  if not ok then return nil, rerr end
  return true
end

--- cnn.util.is_interrupt(err) -> boolean
--- Whether an error is cnnlua's Ctrl-C ("interrupted!", after a position or a label).
--- Code that catches errors must raise it again rather than take it for its own.
function util.is_interrupt(err)
  return type(err) == "string" and err:match("interrupted!$") ~= nil
end

--- cnn.util.cli_integer(option) -> converter
--- An argparse converter (`:convert(...)`) for an integer option whose error names the option.
--- `--epochs abc` gave argparse's "malformed argument 'abc'", which does not say which option.
function util.cli_integer(option)
  return function(s)
    local v = math.tointeger(tonumber(s))
    if v == nil then return nil, string.format("%s must be an integer, got '%s'", option, s) end
    return v
  end
end

--- cnn.util.cli_number(option) -> converter
--- An argparse converter (`:convert(...)`) for a finite number option whose error names the option.
function util.cli_number(option)
  return function(s)
    local v = tonumber(s)
    -- 1e999 reads as inf (and trained a network into NaN weights): an option's number is finite
    if v == nil or v ~= v or math.abs(v) == math.huge then
      return nil, string.format("%s must be a finite number, got '%s'", option, s)
    end
    return v
  end
end

--- cnn.util.cli_args(argv) -> table
--- A script's arguments with each negative number after a --long option joined to that option.
--- --lr -0.1 becomes --lr=-0.1 (so do -1e3, -inf and -nan), for argparse, which reads "-0.1" as an
--- option of its own ("unknown option '-0'"); nothing after a "--" is touched. The examples pass arg
--- through it; other arguments are unchanged.
function util.cli_args(argv)
  if type(argv) ~= "table" then error("cli_args: expected the argument table, got " .. type(argv), 2) end
  local function negative(v) -- -1, -0.5, -1e3, -inf, -nan
    return type(v) == "string" and v:match("^%-") and (tonumber(v) ~= nil or v:lower():match("^%-inf") ~= nil
      or v:lower() == "-nan")
  end
  local out, i, options = {}, 1, true
  while argv[i] ~= nil do
    local a, nxt = argv[i], argv[i + 1]
    if a == "--" then options = false end -- argparse's end of options: the rest as given
    if options and type(a) == "string" and a:match("^%-%-[^=]+$") and negative(nxt) then
      out[#out + 1] = a .. "=" .. nxt
      i = i + 2
    else
      out[#out + 1] = a
      i = i + 1
    end
  end
  for k, v in pairs(argv) do -- arg[0], arg[-1]: the script and the interpreter
    if math.type(k) == "integer" and k <= 0 then out[k] = v end
  end
  return out
end

return util
