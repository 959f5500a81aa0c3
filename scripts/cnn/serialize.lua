-- cnn.save / cnn.load: tables of named tensors (a state_dict) as safetensors files, the format
-- PyTorch users exchange weights in. Parsing, validation and writing are C (core.io); see
-- runtime/include/cnn/safetensors.h for what is checked and how other dtypes convert.
local core = require "cnn.core"
local cio = core.io

local M = {}

local checked = require("cnn.util").checked -- checked(level, pcall(f, ...)): f's error at the caller's line

--- cnn.save(path, tensors, {metadata={}})
--- Writes a table of named tensors (a state_dict) as a safetensors file, which PyTorch reads too.
--- float32 tensors are stored as F32, int64 as I64, uint8 as U8 and bool as BOOL, under their
--- (string) keys; metadata values are strings (numbers are written as text that reads back as the
--- same number: 0.1 + 0.2 as "0.30000000000000004", NaN as "nan"). The file is written beside path
--- and renamed over it when complete, so a crash never leaves half a file (and, on file systems
--- with unnamed files, ext4, xfs, btrfs and tmpfs among them, a writer killed mid-write leaves none).
function M.save(path, tbl, opts)
  require("cnn.util").check_options("save", opts, {metadata = true}, 2)
  local mt = getmetatable(tbl)
  if type(tbl) == "table" and type(mt) == "table" and rawget(mt, "__cnn_module") then
    error("save: expected a table of named tensors, got a module: pass model:state_dict() to save its weights", 2)
  end
  checked(2, pcall(cio.safetensors_save, path, tbl, opts and opts.metadata, "save"))
end

--- cnn.load(path) -> tensors, metadata
--- Reads a safetensors file: a table name -> tensor, and the file's metadata (an empty table if none).
--- F16, BF16, F64 and F8 tensors load as float32, U8 as uint8, BOOL as bool, the other integers as
--- int64. A truncated, corrupt or hostile file raises an error naming the file and the problem.
function M.load(path)
  local tensors, meta = checked(2, pcall(cio.safetensors_load, path, "load")) -- no tail call: see checked
  return tensors, meta
end

return M
