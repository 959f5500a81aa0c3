--- module cnn.checkpoint
--- A whole training state (models, optimisers, epoch, generator) in one file.
--- `cnn.checkpoint.save("run.ckpt", {model = m:state_dict(), optimizer = opt:state_dict(), epoch = e,
--- rng = cnn.get_rng_state()})`; cnn.trainer.fit writes and resumes these.

-- cnn.checkpoint: saves and restores a training state (a nested Lua table of tensors, numbers,
-- strings and booleans: model and optimiser state_dicts, the epoch, the generator state, ...)
-- as one safetensors file. Tensors are stored under their dotted path ("model.features.0.weight",
-- "optimizer.state.1.momentum_buffer"), so other tools read the weights directly; everything else
-- goes as JSON in the header's __metadata__ under "cnnlua.tree", where each table is a list of
-- [key, value] pairs (keeping integer keys integers), a tensor is {"tensor": "its.path"}, a
-- number is text ("%.17g", "inf", "nan") so a resumed run sees exactly the saved values, and a
-- string that is not UTF-8 text (JSON cannot hold it) is {"bytes": "its hex"}.

local checkpoint = {}

local is_tensor = require("cnn.util").is_tensor

local function encode(value, path, tensors, seen)
  local tv = type(value)
  if is_tensor(value) then
    -- {["a.b"] = t1, a = {b = t2}} (or keys 1 and "1") give two tensors one dotted path: the later
    -- one (in the sorted key order) is stored as "a.b#2", and the tree says which is which
    local name, n = path, 1
    while tensors[name] do
      n = n + 1
      name = path .. "#" .. n
    end
    tensors[name] = value
    return {tensor = name}
  elseif tv == "table" then
    local mt = getmetatable(value)
    if type(mt) == "table" and rawget(mt, "__cnn_module") then
      error("checkpoint.save: '" .. path .. "' is a module: store its state_dict() instead", 0)
    end
    if seen[value] then error("checkpoint.save: the state contains a cycle at '" .. path .. "'", 0) end
    seen[value] = true
    local keys = {}
    for k in pairs(value) do
      if type(k) ~= "string" and math.type(k) ~= "integer" then
        error("checkpoint.save: key " .. tostring(k) .. " at '" .. path .. "' is neither a string nor an integer", 0)
      end
      if type(k) == "string" and not utf8.len(k) then -- the tree is JSON text
        local shown = k:gsub("[^\32-\126]", function(c) return string.format("\\x%02x", c:byte()) end)
        error(string.format("checkpoint.save: key \"%s\" at '%s' is not UTF-8 text", shown, path), 0)
      end
      keys[#keys + 1] = k
    end
    -- a fixed order makes the file reproducible
    table.sort(keys, function(a, b)
      if type(a) == type(b) then return a < b end
      return type(a) == "number"
    end)
    local items = {}
    for _, k in ipairs(keys) do
      local sub = path == "" and tostring(k) or path .. "." .. tostring(k)
      items[#items + 1] = {k, encode(value[k], sub, tensors, seen)}
    end
    seen[value] = nil
    return {pairs = items}
  elseif tv == "number" then
    -- as text: JSON numbers would lose digits (dkjson writes 14) and cannot hold inf or nan
    if math.type(value) == "integer" then return {int = tostring(value)} end
    if value ~= value then return {float = "nan"} end
    if value == math.huge or value == -math.huge then return {float = value > 0 and "inf" or "-inf"} end
    if value == 0 and 1 / value < 0 then return {float = "-0.0"} end -- "%.17g" writes "-0", read back as 0
    return {float = string.format("%.17g", value)}
  elseif tv == "string" and not utf8.len(value) then -- bytes that are not UTF-8 text: as hex
    return {bytes = (value:gsub(".", function(c) return string.format("%02x", c:byte()) end))}
  elseif tv == "string" or tv == "boolean" then
    return {value = value}
  end
  error("checkpoint.save: cannot store a " .. tv .. " at '" .. path .. "'", 0)
end

local function decode(node, tensors, file)
  local function bad(what) error("checkpoint.load: " .. file .. ": " .. what, 0) end
  if type(node) ~= "table" then bad("malformed state tree") end
  if node.tensor ~= nil then
    local t = tensors[node.tensor]
    if not t then bad("tensor '" .. tostring(node.tensor) .. "' is missing") end
    return t
  elseif node.pairs ~= nil then
    if type(node.pairs) ~= "table" then bad("malformed table entry") end
    local out = {}
    for _, kv in ipairs(node.pairs) do
      if type(kv) ~= "table" or (type(kv[1]) ~= "string" and type(kv[1]) ~= "number") then
        bad("malformed table entry")
      end
      local k = kv[1]
      if type(k) == "number" then k = math.tointeger(k) or bad("non-integer numeric key") end
      out[k] = decode(kv[2], tensors, file)
    end
    return out
  elseif node.int ~= nil then
    return math.tointeger(tonumber(node.int)) or bad("malformed integer")
  elseif node.float ~= nil then
    local special = {nan = 0 / 0, inf = math.huge, ["-inf"] = -math.huge}
    local v = special[node.float] or tonumber(node.float)
    if type(v) ~= "number" then bad("malformed number") end
    return math.type(v) == "integer" and v + 0.0 or v -- not -0.0 + 0.0, which is +0.0
  elseif node.value ~= nil then
    return node.value
  elseif node.bytes ~= nil then
    if type(node.bytes) ~= "string" or #node.bytes % 2 ~= 0 or node.bytes:find("[^0-9a-f]") then
      bad("malformed bytes")
    end
    return (node.bytes:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
  end
  bad("malformed state tree")
end

-- Re-raises err, caught inside save or load, at their caller's line: as it is when it already
-- starts with who ("checkpoint.save: "), else under who (and where) without Lua's position.
local function reraise(who, err, where)
  local msg = tostring(err)
  if msg:sub(1, #who) ~= who then msg = who .. (where or "") .. msg:gsub("^.-:%d+: ", "", 1) end
  error(msg, 3)
end

--- cnn.checkpoint.save(path, state)
--- Writes a training state, a nested table of tensors, numbers, strings and booleans, to one file.
--- The file is safetensors: tensors under their dotted path in state ("model.features.0.weight"), so
--- other tools read the weights directly (a second tensor on a taken path, as from keys "a.b" and
--- a = {b = ...}, is stored as "a.b#2"); the rest as JSON metadata, numbers exact (-0.0, inf and nan
--- too). Keys are strings or integers; a cycle is an error.
function checkpoint.save(path, state)
  if type(path) ~= "string" then error("checkpoint.save: expected a path, got " .. type(path), 2) end
  if type(state) ~= "table" then error("checkpoint.save: expected a state table, got " .. type(state), 2) end
  local tensors = {}
  -- a state nested past the stack fails in encode or in dkjson: named as the other errors here are
  local ok, tree = pcall(encode, state, "", tensors, {})
  local text = tree -- the tree's JSON, or the error
  if ok then ok, text = pcall(require("dkjson").encode, tree) end
  if not ok then reraise("checkpoint.save: ", text) end
  local cnn = require "cnn"
  local metadata = {["cnnlua.tree"] = text, ["cnnlua.version"] = cnn.version}
  -- the write's own errors (a read-only folder, a full disk) said "checkpoint.lua:138: save: ..."
  local saved, err = pcall(cnn.save, path, tensors, {metadata = metadata})
  if not saved then reraise("checkpoint.save: ", (tostring(err):gsub("^.-:%d+: ", "", 1):gsub("^save: ", "", 1))) end
end

--- cnn.checkpoint.load(path) -> state
--- Reads back the table cnn.checkpoint.save wrote: same keys, same values, tensors as float32 or int64.
function checkpoint.load(path)
  if type(path) ~= "string" then error("checkpoint.load: expected a path, got " .. type(path), 2) end
  local cnn = require "cnn"
  local ok, tensors, meta = pcall(cnn.load, path)
  if not ok then -- re-raised at our caller's line, not this file's
    local msg = tostring(tensors):gsub("^.-:%d+: ", "", 1)
    error((msg:find("^load: ") and "checkpoint." or "checkpoint.load: ") .. msg, 2)
  end
  local text = meta and meta["cnnlua.tree"]
  if not text then error("checkpoint.load: " .. path .. ": not a cnnlua checkpoint (no cnnlua.tree metadata)", 2) end
  -- dkjson raises (rather than returns) on metadata nested past Lua's C stack: the same message
  local ok2, tree, _, err = pcall(require("dkjson").decode, text)
  if not ok2 then tree, err = nil, tostring(tree):gsub("^.-:%d+: ", "", 1) end
  if not tree then error("checkpoint.load: " .. path .. ": bad state metadata: " .. tostring(err), 2) end
  local ok3, state = pcall(decode, tree, tensors, path)
  -- decode's own messages name the file; a stack overflow on a deep tree does not
  if not ok3 then reraise("checkpoint.load: ", state, path .. ": ") end
  return state
end

return checkpoint
