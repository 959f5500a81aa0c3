--- module cnn.help
--- help(x): the signature and description of cnn's functions and classes.
--- In cnnlua `help` is a global: `help(cnn.F.conv2d)`, `help(x)` for a tensor or a layer,
--- `help("pool")` to search by name, `help()` for an overview.

-- cnn.help: help(x) for the REPL and scripts. The descriptions are the doc comments at each
-- definition, collected at build time by scripts/tools/gen_docs.lua into cnn/help_data.lua (the
-- build tree's lua/ folder, or the install's Lua folder). Values are found by identity (a reverse
-- map from each function and table to its dotted names, built by walking `cnn` on each call, so
-- lazily loaded parts count) and names by search (help("conv2d")). A class method without a
-- description of its own (an override) is described by the method of the same name of a parent
-- class, as Python's help does. `cnn` is read from package.loaded when help runs, never required
-- at load time: cnn/init.lua requires this module while `cnn` is still being built.

local help = {}

-- ---- the entries ---------------------------------------------------------------------------
-- name -> {kind = "function" | "module" | "class" | "field", sig = one call form a line,
-- doc = the summary line, text = the rest of the description or nil, file = , line = }.
-- Names are dotted paths from cnn; tensor methods and fields are cnn.Tensor.NAME, class methods
-- CLASS.NAME.

-- The generated data: beside the cnn/core.so that plain lua5.4 loaded from a build tree's lua/
-- folder, else cnn.help_data on package.path (cnnlua puts the build tree's lua/ folder there; an
-- install keeps the file with the other Lua files).
local function load_file(path)
  local f, err = loadfile(path, "t", {})
  if f == nil then return nil, err end
  local ok, data = pcall(f)
  if not ok or type(data) ~= "table" then return nil, path .. ": " .. tostring(data) end
  return data
end

local function load_data()
  local so = package.searchpath("cnn.core", package.cpath)
  local beside = so and so:gsub("core%.so$", "help_data.lua")
  local f = beside and io.open(beside, "r")
  if f then
    f:close()
    local data, err = load_file(beside)
    return data or {}, data and beside, err
  end
  local path = package.searchpath("cnn.help_data", package.path)
  if path == nil then return {}, nil, "cnn/help_data.lua was not found (the build makes it)" end
  local data, err = load_file(path)
  return data or {}, data and path, err
end

local E, data_path, data_error = load_data()

--- cnn.help.source() -> path | nil, message
--- Where the descriptions were read from (the generated cnn/help_data.lua), or nil and why not.
function help.source()
  if data_path then return data_path end
  return nil, data_error
end

-- Classes whose instances carry only a metatable __name (not reachable from cnn by a path).
local INSTANCE_CLASS = {
  MNIST = "cnn.data.MNIST", CIFAR10 = "cnn.data.CIFAR10", TensorDataset = "cnn.data.TensorDataset",
  ImageFolder = "cnn.data.ImageFolder",
  DataLoader = "cnn.data.DataLoader", ["cnn.autograd.Function"] = "cnn.autograd.Function",
}

-- ---- finding values ------------------------------------------------------------------------

local function get_cnn() return package.loaded.cnn end

local core = require "cnn.core"
local is_tensor = require("cnn.util").is_tensor

local function is_module(v)
  local mt = type(v) == "table" and getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__cnn_module") == true
end

-- The parent class of a class table: nn classes keep it in `super`, optim classes behind their
-- metatable's __index (a table).
local function parent_class(c)
  local s = rawget(c, "super")
  if type(s) == "table" then return s end
  local mt = getmetatable(c)
  local up = type(mt) == "table" and rawget(mt, "__index")
  return type(up) == "table" and up or nil
end

-- The reverse map: value -> list of dotted names (breadth first, so the shortest name comes first),
-- and for functions the tables and keys they were found under (for inherited documentation).
local function build_map()
  local names, owners = {}, {}
  local queue, head = {}, 1
  local function add(v, name, owner, key)
    local known = names[v]
    if known == nil then
      known = {}
      names[v] = known
      if type(v) == "table" then queue[#queue + 1] = {v, name} end
    end
    known[#known + 1] = name
    if owner ~= nil and type(v) == "function" then
      local o = owners[v] or {}
      owners[v] = o
      o[#o + 1] = {owner, key}
    end
  end
  local cnn = get_cnn()
  if type(cnn) == "table" then add(cnn, "cnn") end
  for _, extra in ipairs({"cnn.help", "cnn.repl"}) do
    local m = package.loaded[extra]
    if m ~= nil and names[m] == nil then add(m, extra) end
  end
  while head <= #queue do
    local t, path = queue[head][1], queue[head][2]
    head = head + 1
    if #path < 200 then
      local keys = {}
      for k, v in next, t do
        if type(k) == "string" and k:sub(1, 2) ~= "__" and (type(v) == "table" or type(v) == "function") then
          keys[#keys + 1] = k
        end
      end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local v = rawget(t, k)
        local name = path .. "." .. k
        -- a parent class reached only through `super` is named after its class name
        if k == "super" and names[v] == nil and type(rawget(v, "__name")) == "string" then
          name = path:match("^(.*)%.[^.]*$") .. "." .. rawget(v, "__name")
        end
        add(v, name, t, k)
      end
      -- constructor tables whose metatable's __index is the instances' class (data.DataLoader)
      local mt = getmetatable(t)
      local idx = type(mt) == "table" and rawget(mt, "__index")
      if type(idx) == "table" and names[idx] == nil then add(idx, path) end
    end
  end
  return names, owners
end

-- The documented name of function f: one of its own names, else a parent class's method of the
-- same name (an override), searched up each class it was found in.
local function function_entry(f, names, owners)
  for _, n in ipairs(names[f] or {}) do
    if E[n] then return n, E[n] end
  end
  for _, ok in ipairs(owners[f] or {}) do
    local c, key = parent_class(ok[1]), ok[2]
    local depth = 0
    while c ~= nil and depth < 50 do
      for _, cn in ipairs(names[c] or {}) do
        local n = cn .. "." .. key
        if E[n] then return n, E[n] end
      end
      c, depth = parent_class(c), depth + 1
    end
  end
  return nil
end

local function table_entry(t, names)
  for _, n in ipairs(names[t] or {}) do
    if E[n] then return n, E[n] end
  end
  return nil
end

--- cnn.help.lookup(v) -> name, entry
--- The documented dotted name of function or table v and its entry, or nil.
--- An override without a description of its own is described by its parent class's method.
function help.lookup(v)
  local names, owners = build_map()
  if type(v) == "function" then return function_entry(v, names, owners) end
  if type(v) == "table" then return table_entry(v, names) end
  return nil
end

--- cnn.help.entry(name) -> {kind=, sig=, doc=, text=, file=, line=}
--- The description of a dotted name, or nil.
--- kind is "function", "module", "class" or "field"; sig the call forms, one a line; doc the summary;
--- text the rest or nil; file and line where the doc comment sits.
function help.entry(name)
  local e = E[name]
  if e == nil then return nil end
  return {kind = e.kind, sig = e.sig, doc = e.doc, text = e.text, file = e.file, line = e.line}
end

--- cnn.help.names() -> {names}
--- Every documented dotted name, sorted.
function help.names()
  local out = {}
  for k in pairs(E) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function last_part(name) return name:match("([^.]+)$") end
local function is_name(s) return s:match("^[%a_][%w_]*$") ~= nil end

--- cnn.help.search(text) -> {names}
--- The documented names matching text: exact last parts, then names containing it, then descriptions.
function help.search(text)
  if type(text) ~= "string" then error("help.search: expected a string, got " .. type(text), 2) end
  local q = text:lower()
  local exact, partial, described = {}, {}, {}
  for name, e in pairs(E) do
    local short = last_part(name):lower()
    if name:lower() == q or short == q then
      exact[#exact + 1] = name
    elseif name:lower():find(q, 1, true) then
      partial[#partial + 1] = name
    elseif e.doc:lower():find(q, 1, true) or e.sig:lower():find(q, 1, true) or
           (e.text or ""):lower():find(q, 1, true) then
      described[#described + 1] = name
    end
  end
  table.sort(exact)
  table.sort(partial)
  table.sort(described)
  local out = {}
  for _, list in ipairs({exact, partial, described}) do
    for _, n in ipairs(list) do out[#out + 1] = n end
  end
  return out, #exact, #partial
end

-- ---- formatting ----------------------------------------------------------------------------

-- The signature lines, then the description indented by two spaces.
local function indented(text) return (text:gsub("\n", "\n  "):gsub("\n  \n", "\n\n")) end

local function entry_text(e)
  local s = e.sig .. "\n  " .. e.doc
  if e.text then s = s .. "\n  " .. indented(e.text) end
  return s
end

local LISTING_WIDTH = 100 -- columns of a listing; a longer summary wraps under itself

-- "  name   summary" lines for the given short names.
local function listing(rows)
  local width = 0
  for _, r in ipairs(rows) do width = math.max(width, #r[1]) end
  width = math.min(width, 24)
  local lines = {}
  for _, r in ipairs(rows) do
    local head = "  " .. r[1] .. string.rep(" ", math.max(1, width - #r[1] + 2))
    local indent, line = string.rep(" ", width + 4), head
    for word in r[2]:gmatch("%S+") do
      if line == head then
        line = line .. word
      elseif #line + 1 + #word > LISTING_WIDTH then
        lines[#lines + 1] = line
        line = indent .. word
      else
        line = line .. " " .. word
      end
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

-- Rows for the methods of a class: every function in its chain (nearest class first) plus any
-- documented method of the class's own name, described by its entry or an inherited one.
local function class_methods(cls, cname, names, owners)
  local seen, rows = {}, {}
  -- the entry of method k documented on a class above c (a user class's override of forward)
  local function inherited(c, k)
    local depth = 0
    c = parent_class(c)
    while c ~= nil and depth < 50 do
      for _, n in ipairs(names[c] or {}) do
        if E[n .. "." .. k] then return E[n .. "." .. k] end
      end
      c, depth = parent_class(c), depth + 1
    end
    return nil
  end
  local c, depth = cls, 0
  while type(c) == "table" and depth < 50 do
    for k, v in next, c do
      if type(k) == "string" and type(v) == "function" and k:sub(1, 1) ~= "_" and not seen[k] then
        seen[k] = true
        local _, e = function_entry(v, names, owners)
        e = e or (c == cls and cname and E[cname .. "." .. k]) or inherited(c, k)
        rows[#rows + 1] = {k, e and e.doc or "(undocumented)"}
      end
    end
    c, depth = parent_class(c), depth + 1
  end
  if cname then
    local prefix = cname .. "."
    for n, e in pairs(E) do
      if n:sub(1, #prefix) == prefix and not n:find(".", #prefix + 1, true) and e.kind == "function" then
        local k = n:sub(#prefix + 1)
        if not seen[k] then
          seen[k] = true
          rows[#rows + 1] = {k, e.doc}
        end
      end
    end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  return rows
end

local function class_text(cls, cname, names, owners, intro)
  local out = {}
  if intro then out[#out + 1] = intro end
  local e = cname and E[cname]
  if e then out[#out + 1] = entry_text(e) end
  local up = type(cls) == "table" and parent_class(cls)
  if up then
    local pn = table_entry(up, names) or (names[up] or {})[1] or rawget(up, "__name") or "?"
    out[#out + 1] = "  derives from " .. pn
  end
  -- documented fields of the class and its ancestors (m.training, opt.lr)
  local fields, seen_field = {}, {}
  local c, depth, cn = cls, 0, cname
  while (c ~= nil or cn ~= nil) and depth < 50 do
    for _, n in ipairs(cn and {cn} or names[c] or {}) do
      for fname, fe in pairs(E) do
        local k = fname:sub(#n + 2)
        if fe.kind == "field" and fname:sub(1, #n + 1) == n .. "." and is_name(k) and not seen_field[k] then
          seen_field[k] = true
          fields[#fields + 1] = {"." .. k, fe.doc}
        end
      end
    end
    c, cn, depth = type(c) == "table" and parent_class(c) or nil, nil, depth + 1
  end
  if #fields > 0 then
    table.sort(fields, function(a, b) return a[1] < b[1] end)
    out[#out + 1] = "Fields:"
    out[#out + 1] = listing(fields)
  end
  local rows = class_methods(cls, cname, names, owners)
  if #rows > 0 then
    out[#out + 1] = "Methods:"
    out[#out + 1] = listing(rows)
  end
  return table.concat(out, "\n")
end

-- A module (namespace) table: its functions with one-liners, then its sub-modules and classes.
local function module_text(t, name, names, owners)
  local out = {}
  local e = E[name]
  out[#out + 1] = name .. (e and (" - " .. e.doc) or "")
  if e and e.text then out[#out + 1] = "  " .. indented(e.text) end
  local fns, subs, seen = {}, {}, {}
  local function add_row(k, v, doc_name)
    if seen[k] then return end
    seen[k] = true
    local doc
    if type(v) == "function" then
      local _, fe = function_entry(v, names, owners)
      doc = fe and fe.doc
    else
      doc = E[doc_name] and E[doc_name].doc
    end
    local row = {k, doc or "(undocumented)"}
    if type(v) == "table" or (v == nil and E[doc_name] and E[doc_name].kind ~= "function") then
      subs[#subs + 1] = row
    else
      fns[#fns + 1] = row
    end
  end
  if type(t) == "table" then
    for k, v in next, t do
      if type(k) == "string" and k:sub(1, 1) ~= "_" and (type(v) == "function" or type(v) == "table") then
        add_row(k, v, name .. "." .. k)
      end
    end
  end
  local prefix = name .. "."
  for n, ne in pairs(E) do
    if n:sub(1, #prefix) == prefix and not n:find(".", #prefix + 1, true) and ne.kind ~= "field" then
      local k = n:sub(#prefix + 1)
      if k:sub(1, 1) ~= "_" then add_row(k, nil, n) end
    end
  end
  table.sort(fns, function(a, b) return a[1] < b[1] end)
  table.sort(subs, function(a, b) return a[1] < b[1] end)
  if #fns > 0 then
    out[#out + 1] = "Functions:"
    out[#out + 1] = listing(fns)
  end
  if #subs > 0 then
    out[#out + 1] = "Modules and classes:"
    out[#out + 1] = listing(subs)
  end
  out[#out + 1] = "help(" .. name .. ".NAME) for one of them."
  return table.concat(out, "\n")
end

-- The summary of a name, or why there is none.
local function doc_of(name)
  local e = E[name]
  if e then return e.doc end
  return data_path and "(undocumented)" or "(no descriptions: " .. tostring(data_error) .. ")"
end

-- A tensor's help (t nil: the Tensor class itself).
local function tensor_text(t)
  local cnn = get_cnn() or {}
  local shape = ""
  local ok, s = pcall(function() return "{" .. table.concat(t:shape(), ", ") .. "} " .. t:dtype() .. " " end)
  if t ~= nil and ok then shape = s end
  local rows, fields = {}, {}
  for n, e in pairs(E) do
    local k = n:match("^cnn%.Tensor%.([%w_]+)$")
    if k then
      if e.kind == "field" then fields[#fields + 1] = {"." .. k, e.doc} else rows[#rows + 1] = {k, e.doc} end
    end
  end
  local methods = rawget(cnn, "Tensor") or core.Tensor
  local seen = {}
  for _, r in ipairs(rows) do seen[r[1]] = true end
  for k, v in pairs(methods) do
    if type(k) == "string" and type(v) == "function" and not seen[k] and k:sub(1, 1) ~= "_" then
      rows[#rows + 1] = {k, "(undocumented)"}
    end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  table.sort(fields, function(a, b) return a[1] < b[1] end)
  return table.concat({
    "Tensor " .. shape .. "- " .. doc_of("cnn.Tensor"),
    "Operators: + - * / ^ (numbers on either side), unary -, #t (size of dim 1), t[i], t[i] = v",
    "Fields:", listing(fields),
    "Methods (t:name(...)):", listing(rows),
  }, "\n")
end

-- A Lua function with no entry: where it was defined and its parameters.
local function plain_function_text(f, names)
  local info = debug.getinfo(f, "Su")
  local std = {}
  for _, lib in ipairs({"_G", "string", "table", "math", "io", "os", "coroutine", "utf8", "debug", "package"}) do
    local t = lib == "_G" and _G or rawget(_G, lib)
    if type(t) == "table" then
      for k, v in pairs(t) do
        if v == f and type(k) == "string" then std[#std + 1] = (lib == "_G" and "" or lib .. ".") .. k end
      end
    end
  end
  if #std > 0 then
    table.sort(std)
    return std[1] .. ": a Lua standard library function (see the Lua 5.4 reference manual)"
  end
  local where = (names[f] and names[f][1]) and (names[f][1] .. ": ") or ""
  if info.what == "C" then return where .. "a C function with no help entry" end
  local params = {}
  for i = 1, info.nparams do params[i] = debug.getlocal(f, i) or "?" end
  if info.isvararg then params[#params + 1] = "..." end
  return string.format("%sa Lua function (%s) defined at %s:%d, with no help entry",
    where, table.concat(params, ", "), info.short_src, info.linedefined)
end

local function unknown_text(x)
  local shown = type(x) == "string" and string.format("%q", x) or tostring(x)
  return string.format("help: %s is a %s, not a cnn function, module, class or tensor. " ..
    "help() gives an overview; help(\"name\") searches.", shown, type(x))
end

local function overview_text()
  local rows = {}
  for n, e in pairs(E) do
    if e.kind == "module" and n ~= "cnn" then rows[#rows + 1] = {n, e.doc} end
  end
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  return table.concat({
    "cnn " .. tostring((get_cnn() or {}).version or "") .. " - " .. doc_of("cnn"),
    "Modules:", listing(rows),
    "  cnn.Tensor  " .. doc_of("cnn.Tensor"),
    "Ask:",
    "  help(cnn)          the functions of a module (also help(cnn.F), help(cnn.nn), ...)",
    "  help(cnn.zeros)    a function's signature and description",
    "  help(x)            a tensor's methods, a module's class and methods",
    "  help(\"conv2d\")     search by name",
    "At the prompt: TAB completes names, fields and methods (x:<TAB>); %time CODE and",
    "%timeit CODE time an expression; time(f) and timeit(f, n) do the same in scripts.",
    "An expression typed at the prompt prints its value: a table with its contents, keys sorted",
    "({64, 1, 28, 28} on one line, nested tables indented, 4 levels and 40 entries at most, a",
    "table inside itself marked <cycle>); tensors, modules and results as tostring gives them.",
    "cnn.repl.show(v) returns that text; print(v) and tostring(v) stay Lua's own.",
    "A multi-line entry is one history entry: Up recalls it whole.",
  }, "\n")
end

local function value_text(x, names, owners)
  if is_tensor(x) then return tensor_text(x) end
  if x == core.Tensor then return tensor_text(nil) end
  if type(x) == "function" then
    local n, e = function_entry(x, names, owners)
    if e then
      local own = names[x] and names[x][1]
      if own and own ~= n and not E[own] then
        return entry_text(e) .. "\n  (" .. own .. " overrides " .. n .. ")"
      end
      return entry_text(e)
    end
    return plain_function_text(x, names)
  end
  if type(x) == "table" then
    if is_module(x) then
      local s = rawget(x, "__nn")
      local cls = type(s) == "table" and s.class or nil
      local cname = cls and table_entry(cls, names)
      local label = cls and rawget(cls, "__name") or "?"
      local ok, n = pcall(function() return x:num_parameters() end)
      local intro = "a " .. label .. " module" .. (cname and "" or " (a user class)") ..
        (ok and math.type(n) == "integer" and string.format(" with %d parameters", n) or "")
      return class_text(cls, cname, names, owners, intro)
    end
    local n, e = table_entry(x, names)
    if n and e.kind == "class" then return class_text(x, n, names, owners) end
    if n and e.kind == "module" then return module_text(x, n, names, owners) end
    if names[x] and rawget(x, "__mt") then -- an undocumented class reachable from cnn
      return class_text(x, nil, names, owners, "class " .. tostring(rawget(x, "__name")))
    end
    -- an instance: its metatable (or the metatable's __index) is a known class
    local mt = getmetatable(x)
    if type(mt) == "table" then
      for _, c in ipairs({mt, rawget(mt, "__index")}) do
        if type(c) == "table" then
          local cn, ce = table_entry(c, names)
          if ce and ce.kind == "class" then
            return class_text(c, cn, names, owners, "an instance of " .. cn)
          end
        end
      end
      local cn = INSTANCE_CLASS[rawget(mt, "__name") or ""]
      if cn then return class_text(mt, cn, names, owners, "an instance of " .. cn) end
    end
    if names[x] then return module_text(x, names[x][1], names, owners) end
  end
  if type(x) == "userdata" then
    local mt = getmetatable(x)
    local cn = type(mt) == "table" and INSTANCE_CLASS[rawget(mt, "__name") or ""]
    if cn then return class_text(nil, cn, names, owners, "an instance of " .. cn) end
  end
  return unknown_text(x)
end

-- A name as typed: a documented dotted path (with or without "cnn."), "t:reshape" style method
-- names, or a search.
local function name_text(s, names, owners)
  local path = s:gsub("^Tensor[:.]", "cnn.Tensor."):gsub("^t:", "cnn.Tensor."):gsub("^m:", "cnn.nn.Module.")
  for _, candidate in ipairs({path, "cnn." .. path}) do
    if E[candidate] then
      local e = E[candidate]
      if e.kind == "module" then
        local v, ok = get_cnn(), true
        for part in candidate:gmatch("[^.]+") do
          if part ~= "cnn" then ok, v = pcall(function() return v[part] end) end
          if not ok or v == nil then break end
        end
        if ok and type(v) == "table" then return module_text(v, candidate, names, owners) end
        return module_text(nil, candidate, names, owners) .. "\n  (not in this build)"
      end
      return entry_text(e)
    end
  end
  local found, n_exact = help.search(s)
  if #found == 0 then
    return string.format("help: nothing matches %q. help() lists the modules.", s)
  end
  if n_exact > 0 then
    local parts = {}
    for i = 1, n_exact do
      local n = found[i]
      local e = E[n]
      parts[#parts + 1] = entry_text(e)
    end
    return table.concat(parts, "\n\n")
  end
  local rows = {}
  for i = 1, math.min(#found, 60) do rows[i] = {found[i], E[found[i]].doc} end
  local more = #found > 60 and string.format("\n  ... and %d more", #found - 60) or ""
  return string.format("help: %d names match %q:\n", #found, s) .. listing(rows) .. more
end

--- cnn.help.text(x) -> string
--- The text help(x) prints; help.text() is the overview.
function help.text(...)
  if select("#", ...) == 0 then return overview_text() end
  local x = ...
  if x == nil then
    return "help: got nil (a misspelt name, or a field that does not exist?). help() gives an " ..
      "overview; help(\"name\") searches."
  end
  local names, owners = build_map()
  if type(x) == "string" then return name_text(x, names, owners) end
  return value_text(x, names, owners)
end

--- cnn.help.show(x)
--- Prints the signature and description of x: a function, module, class, tensor, nn module or name.
--- `help(x)` calls it (cnn.help is callable, and `help` is a global in cnnlua). A string searches the
--- names (`help("pool")`); no argument prints an overview.
function help.show(...)
  local ok, text = pcall(help.text, ...)
  if not ok then text = "help: could not describe this value (" .. tostring(text) .. ")" end
  io.stdout:write(text, "\n")
end

return setmetatable(help, {__call = function(_, ...) return help.show(...) end})
