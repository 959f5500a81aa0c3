-- gen_docs.lua: collects the doc comments at the definitions of cnn's public functions (a `---`
-- block in scripts/cnn/**.lua, a `/** ... */` block above a binding in bindings/**.c; the format is
-- docs/CONTRIBUTING.md's "Writing docs") into the data help() and the REPL read
-- (cnn/help_data.lua) and into the API reference (docs/API.md). The build runs it (CMake custom
-- command); a ctest runs it with --check to compare docs/API.md with what it would write.
--
--   cnnlua gen_docs.lua --root DIR [--data FILE] [--markdown FILE] [--check FILE] FILE...
--
-- FILEs are the sources to scan, relative to --root (their paths go into the outputs, so those do
-- not depend on where the tree or the build lives). Runs on any Lua 5.4: no cnn, no libraries.
-- Errors (a malformed block, a name documented twice) name file:line and exit with status 1.

local USAGE = "usage: gen_docs.lua --root DIR [--data FILE] [--markdown FILE] [--check FILE] FILE..."

-- ---- signatures ------------------------------------------------------------------------------

local KINDS = {module = true, class = true, field = true}
local MAX_SUMMARY = 100 -- help's listings show the summary after the name

-- A signature line: [module|class|field] NAME[(args)|{args}][ -> results]. NAME is a dotted path
-- from cnn (`cnn.F.conv2d`), a method (`cnn.nn.Module:forward`), or a tensor method or field
-- (`t:reshape`, `t.grad`). Returns {kind=, key=, sig=} or nil when the line is not a signature;
-- raises (a message) when it starts like one but is malformed.
local function parse_sig(line)
  local s = line:gsub("%s+$", "")
  local kind = "function"
  local word, rest = s:match("^(%a+)%s+(.*)$")
  if word and KINDS[word] then kind, s = word, rest end
  local name = s:match("^[%a_][%w_]*[%w_.:]*")
  if name == nil or not (name == "cnn" or name:match("^cnn[.:]") or name:match("^t[.:]")) then
    if kind ~= "function" then error("'" .. kind .. "' must be followed by a cnn name or t.NAME", 0) end
    return nil
  end
  local after = s:sub(#name + 1)
  if kind == "function" and not after:match("^[({]") then return nil end -- prose, not a call
  local _, colons = name:gsub(":", "")
  if colons > 1 or (colons == 1 and not name:match(":[%a_][%w_]*$")) then
    error("a method name has one ':' before its last part: " .. name, 0)
  end
  if colons == 1 and kind ~= "function" then error("only a function is named with ':': " .. name, 0) end
  if name:match("^t:") and kind ~= "function" then error("t:NAME names a tensor method", 0) end
  if name:match("^t%.") and kind ~= "field" then error("t.NAME names a tensor field (field t.NAME)", 0) end
  local key = name:gsub(":", ".")
  if key:match("^t%.") then key = "cnn.Tensor." .. key:sub(3) end
  if not (key == "cnn" or key:match("^cnn%.[%a_][%w_]*[%w_.]*$")) or key:find("..", 1, true) or key:match("%.$") then
    error("malformed name " .. name, 0)
  end
  return {kind = kind, key = key, sig = s}
end

-- ---- reading the sources -----------------------------------------------------------------------

local entries, errors = {}, {}

local function fail(file, line, msg) errors[#errors + 1] = string.format("%s:%d: %s", file, line, msg) end

local function read_lines(path)
  local f, err = io.open(path, "r")
  if not f then error(err, 0) end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  return lines
end

-- A doc block: its text lines (the markers stripped), the line it starts on, and the line of the
-- definition it documents (nil when none follows). Signature lines come first; the description
-- follows: its first line is the summary, the rest (blank lines between paragraphs) the details.
-- How many brackets s leaves open.
local function open_brackets(s)
  local depth = 0
  for c in s:gmatch("[%(%)%[%]{}]") do depth = depth + (c:match("[%(%[{]") and 1 or -1) end
  return depth
end

local function add_block(file, first, body, target, target_text, is_c)
  local sigs, i = {}, 1
  while i <= #body do
    -- a long signature goes on over the next lines until its brackets close
    local line, last = body[i], i
    while open_brackets(line) > 0 and last < #body do
      last = last + 1
      line = line:gsub("%s+$", "") .. " " .. body[last]:gsub("^%s+", "")
    end
    local ok, s = pcall(parse_sig, line)
    if not ok then
      fail(file, first + i - 1, s)
      return
    end
    if s == nil then break end
    sigs[#sigs + 1] = s
    i = last + 1
  end
  if #sigs == 0 then return end -- an internal doc comment, not public documentation
  while i <= #body and body[i]:match("^%s*$") do i = i + 1 end
  local desc = {}
  for j = i, #body do desc[#desc + 1] = body[j]:gsub("%s+$", "") end
  while #desc > 0 and desc[#desc] == "" do desc[#desc] = nil end
  if #desc == 0 then
    fail(file, first, sigs[1].key .. ": no description after the signature")
    return
  end
  if desc[1]:match("^%s") then fail(file, first, sigs[1].key .. ": the summary line must not be indented") end
  if not desc[1]:match("%.$") or #desc[1] > MAX_SUMMARY then
    fail(file, first, string.format("%s: the summary (the first description line) is one sentence ending " ..
      "with a period, at most %d characters", sigs[1].key, MAX_SUMMARY))
  end
  local kind = sigs[1].kind
  for _, s in ipairs(sigs) do
    if s.kind ~= kind then fail(file, first, "one block documents one kind of thing (" .. s.key .. ")") end
  end
  if kind == "function" then
    local cfunc = is_c and target_text and
      (target_text:match("^static%s+int%s+([%a_][%w_]*)%s*%(%s*lua_State") or
       target_text:match("^int%s+([%a_][%w_]*)%s*%(%s*lua_State"))
    if target == nil or (is_c and not cfunc) then
      fail(file, first, sigs[1].key .. ": a function's doc comment sits right above its definition" ..
        (is_c and " (static int NAME(lua_State *L))" or ""))
      return
    end
  end
  -- one entry per key; several lines for one key are alternative call forms
  local by_key, order = {}, {}
  for _, s in ipairs(sigs) do
    if not by_key[s.key] then
      by_key[s.key] = {}
      order[#order + 1] = s.key
    end
    table.insert(by_key[s.key], s.sig)
  end
  local text = #desc > 1 and table.concat(desc, "\n", 2):gsub("^\n+", "") or nil
  for _, key in ipairs(order) do
    local old = entries[key]
    if old then
      fail(file, first, key .. " is already documented at " .. old.file .. ":" .. old.line)
    else
      entries[key] = {kind = kind, sig = table.concat(by_key[key], "\n"), doc = desc[1], text = text,
                      file = file, line = target or first}
    end
  end
end

local function scan_lua(file, lines)
  local i = 1
  while i <= #lines do
    if lines[i]:match("^%s*%-%-%-") and not lines[i]:match("^%s*%-%-%-%-") then
      local first, body = i, {}
      while i <= #lines and lines[i]:match("^%s*%-%-%-") and not lines[i]:match("^%s*%-%-%-%-") do
        body[#body + 1] = lines[i]:gsub("^%s*%-%-%- ?", "")
        i = i + 1
      end
      -- the definition: the next line that is not a plain comment, unless it is blank
      local t = i
      while t <= #lines and lines[t]:match("^%s*%-%-") do t = t + 1 end
      local target = (t <= #lines and not lines[t]:match("^%s*$")) and t or nil
      add_block(file, first, body, target, target and lines[t], false)
    else
      i = i + 1
    end
  end
end

local function scan_c(file, lines)
  local i = 1
  while i <= #lines do
    local head = lines[i]:match("^%s*/%*%*%s+(.*)$")
    if head and not lines[i]:match("^%s*/%*%*%*") then
      local first, body, closed = i, {}, false
      local function take(text)
        local before = text:match("^(.-)%s*%*/")
        if before then
          closed = true
          text = before
        end
        body[#body + 1] = text
      end
      take(head)
      i = i + 1
      while not closed and i <= #lines do
        take((lines[i]:gsub("^%s*%*%s?", "", 1)))
        i = i + 1
      end
      if not closed then
        fail(file, first, "unterminated doc comment")
        return
      end
      while #body > 0 and body[#body]:match("^%s*$") do body[#body] = nil end
      local target = (i <= #lines and not lines[i]:match("^%s*$")) and i or nil
      add_block(file, first, body, target, target and lines[i], true)
    else
      i = i + 1
    end
  end
end

-- ---- outputs ---------------------------------------------------------------------------------

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function data_text()
  local out = {"-- Generated by scripts/tools/gen_docs.lua from the doc comments at each definition.",
               "-- Do not edit: change the comment (docs/CONTRIBUTING.md, \"Writing docs\") and rebuild.",
               "return {"}
  for _, k in ipairs(sorted_keys(entries)) do
    local e = entries[k]
    local fields = {}
    for _, f in ipairs({"kind", "sig", "doc", "text", "file", "line"}) do
      local v = e[f]
      if v ~= nil then
        fields[#fields + 1] = f .. " = " .. (type(v) == "string" and string.format("%q", v) or tostring(v))
      end
    end
    out[#out + 1] = string.format("  [%q] = {%s},", k, table.concat(fields, ", "))
  end
  out[#out + 1] = "}"
  return (table.concat(out, "\n"):gsub("\\\n", "\\n")) .. "\n"
end

-- The reference, one section per module in this order (modules not listed follow, sorted).
local MODULE_ORDER = {"cnn", "cnn.Tensor", "cnn.autograd", "cnn.F", "cnn.nn", "cnn.nn.init", "cnn.optim", "cnn.data",
                      "cnn.data.transforms", "cnn.image", "cnn.models", "cnn.checkpoint", "cnn.trainer", "cnn.plot",
                      "cnn.hpsearch", "cnn.distributed", "cnn.help", "cnn.repl"}

local function parent(key) return key:match("^(.*)%.[^.]+$") end

-- GitHub's heading anchors: lower case, punctuation but - and _ dropped, spaces to -.
local function anchor(text) return (text:lower():gsub("[^%w%s_-]", ""):gsub("%s", "-")) end

local function markdown_text()
  local sections = {}
  local modules = {}
  for k, e in pairs(entries) do
    if e.kind == "module" or k == "cnn.Tensor" then modules[k] = true end
  end
  -- each entry goes to its nearest enclosing module; a class's members follow the class
  local function home(key)
    local p = parent(key)
    while p and not modules[p] do p = parent(p) end
    return p
  end
  for k in pairs(entries) do
    if not modules[k] then
      local h = home(k)
      if h == nil then
        errors[#errors + 1] = k .. ": no module documents its namespace (add a `module` block)"
      else
        sections[h] = sections[h] or {}
        table.insert(sections[h], k)
      end
    end
  end
  local order, listed = {}, {}
  for _, m in ipairs(MODULE_ORDER) do
    if modules[m] then
      order[#order + 1] = m
      listed[m] = true
    end
  end
  for _, m in ipairs(sorted_keys(modules)) do
    if not listed[m] then order[#order + 1] = m end
  end

  local out = {}
  local function add(s) out[#out + 1] = s end
  local function describe(e)
    add(e.doc)
    if e.text then
      add("")
      add(e.text)
    end
  end
  local function signature(e)
    add("```lua")
    add(e.sig)
    add("```")
  end
  add("# cnnlua API reference")
  add("")
  add("<!-- Generated by scripts/tools/gen_docs.lua from the doc comments at each definition: do not edit.")
  add("     Change the comment (docs/CONTRIBUTING.md, \"Writing docs\"), then")
  add("     `cmake --build build --target api_docs` rewrites this file. -->")
  add("")
  add("Every public function, class and module of cnnlua with its signature and description, as `help(x)`")
  add("shows them in the REPL. Each description is the doc comment at the definition: the `---` block")
  add("above a Lua function in `scripts/cnn/`, the `/** ... */` block above a C binding in `bindings/`.")
  add("Signatures show optional arguments with their defaults (`dim=1`), options tables with their keys")
  add("(`{stride=1, padding=0}`), and results after `->`.")
  add("")
  for _, m in ipairs(order) do
    local e = entries[m]
    add(string.format("- [%s](#%s): %s", m, anchor(m), e.doc))
  end
  for _, m in ipairs(order) do
    local e = entries[m]
    add("")
    add("## " .. m)
    add("")
    if e.kind == "class" then signature(e) add("") end
    describe(e)
    local keys = sections[m] or {}
    -- functions and fields of the module first, then each class with its members
    local own, classes, members = {}, {}, {}
    for _, k in ipairs(keys) do
      if entries[k].kind == "class" then classes[#classes + 1] = k end
    end
    local class_set = {}
    for _, c in ipairs(classes) do class_set[c] = true end
    for _, k in ipairs(keys) do
      local c = parent(k)
      while c and not class_set[c] and c ~= m do c = parent(c) end
      if class_set[c] and c ~= k then
        members[c] = members[c] or {}
        table.insert(members[c], k)
      elseif not class_set[k] then
        own[#own + 1] = k
      end
    end
    table.sort(own, function(a, b)
      local fa, fb = entries[a].kind == "field", entries[b].kind == "field"
      if fa ~= fb then return fa end
      return a < b
    end)
    table.sort(classes)
    local function item(k, level)
      local ek = entries[k]
      add("")
      add(level .. " " .. k)
      add("")
      signature(ek)
      add("")
      describe(ek)
    end
    for _, k in ipairs(own) do item(k, "###") end
    for _, c in ipairs(classes) do
      item(c, "###")
      local ms = members[c] or {}
      table.sort(ms)
      for _, k in ipairs(ms) do item(k, "####") end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- ---- main ------------------------------------------------------------------------------------

local function write(path, text)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function main(args)
  local root, data_out, md_out, check
  local files = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--root" or a == "--data" or a == "--markdown" or a == "--check" then
      local v = args[i + 1]
      if v == nil then error(USAGE, 0) end
      if a == "--root" then root = v elseif a == "--data" then data_out = v
      elseif a == "--markdown" then md_out = v else check = v end
      i = i + 2
    else
      files[#files + 1] = a
      i = i + 1
    end
  end
  if root == nil or #files == 0 then error(USAGE, 0) end
  table.sort(files)
  for _, file in ipairs(files) do
    local lines = read_lines(root .. "/" .. file)
    if file:match("%.lua$") then scan_lua(file, lines) elseif file:match("%.[ch]$") then scan_c(file, lines) end
  end
  if not entries.cnn then errors[#errors + 1] = "no `module cnn` block found" end
  local md = #errors == 0 and markdown_text() or nil
  if #errors > 0 then
    io.stderr:write("gen_docs: ", table.concat(errors, "\ngen_docs: "), "\n")
    os.exit(1)
  end
  if data_out then write(data_out, data_text()) end
  if md_out then write(md_out, md) end
  if check then
    local path = check:sub(1, 1) == "/" and check or root .. "/" .. check
    if read(path) ~= md then
      io.stderr:write(string.format("gen_docs: %s is not what the doc comments give: run " ..
        "`cmake --build build --target api_docs` and commit it\n", check))
      os.exit(1)
    end
    print(check .. " is up to date")
  end
end

main(arg)
