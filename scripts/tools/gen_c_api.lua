-- gen_c_api.lua: reads the public C headers (runtime/include/cnn/*.h and the template of the
-- generated cnn/version.h) and writes what is derived from them: the C API reference
-- (docs/C_API.md) from their `/** ... */` doc comments, and the linker version script that makes
-- libcnn.so export exactly the functions they declare. The build runs it (CMake custom commands);
-- a ctest runs it with --check to compare docs/C_API.md with what it would write.
--
--   cnnlua gen_c_api.lua --root DIR [--markdown FILE] [--check FILE] [--version-script FILE] HEADER...
--
-- HEADERs are relative to --root (or absolute under it). The format (docs/CONTRIBUTING.md, "The C
-- API"): a header opens with a `/** ... */` block saying what it holds; every function has a
-- `/** ... */` block right above it, or shares the block of the declarations it follows without a
-- blank line; types and macros are listed when they have one. Who owns what is derived from the
-- types (a returned `cnn_tensor *` is a new reference, pointer arguments are borrowed, a
-- `cnn_tensor **` argument receives a new reference) unless the block has a paragraph starting
-- `Ownership:`, which a function returning any other pointer must have. Runs on any Lua 5.4.
-- A declaration it cannot read is an error (file:line, exit status 1); what the documentation lacks
-- is a warning when writing and an error with --check (the test docs_c_api_md_current).

local USAGE = "usage: gen_c_api.lua --root DIR [--markdown FILE] [--check FILE] [--version-script FILE] HEADER..."

-- The reference's order of headers (others follow, sorted).
local ORDER = {"cnn.h", "version.h", "error.h", "tensor.h", "elementwise.h", "reduce.h", "join.h", "matmul.h",
               "random.h", "rng.h", "format.h", "parallel.h", "autograd.h", "ops.h", "ops_nn.h", "layer_params.h",
               "ops_conv.h", "idx.h", "image_io.h", "png_io.h", "jpeg_io.h", "safetensors.h"}

-- Returned pointers whose ownership the types tell: what the caller does with one.
local OWNED_RETURNS = {
  cnn_tensor = "returns a new reference, or NULL with the error set",
}

local errors = {}
local function fail(file, line, msg) errors[#errors + 1] = string.format("%s:%d: %s", file, line, msg) end
-- what the documentation lacks: warnings when writing the reference, errors when checking it
local lacks = {}
local function lack(file, line, msg) lacks[#lacks + 1] = string.format("%s:%d: %s", file, line, msg) end

-- ---- reading a header ------------------------------------------------------------------------

local function line_of(text, pos)
  local _, n = text:sub(1, pos):gsub("\n", "")
  return n + 1
end

-- The text of a comment without its markers and the leading " * " of each line.
local function comment_body(c)
  c = c:gsub("^/%*%*?", ""):gsub("%*/$", "")
  local lines = {}
  for l in (c .. "\n"):gmatch("(.-)\n") do
    l = l:gsub("^%s*%*%s?", "", 1):gsub("^%s+", ""):gsub("%s+$", "")
    lines[#lines + 1] = l
  end
  while #lines > 0 and lines[1] == "" do table.remove(lines, 1) end
  while #lines > 0 and lines[#lines] == "" do lines[#lines] = nil end
  return table.concat(lines, "\n")
end

-- Ends the item that starts at text[i] (a declaration or a definition): the position of its
-- closing ';' at depth 0, or of the '}' that closes a function body.
local function item_end(text, i)
  local depth, saw_paren_close = 0, false
  local n = #text
  while i <= n do
    local c = text:sub(i, i)
    if c == "/" and text:sub(i + 1, i + 1) == "*" then
      local e = text:find("*/", i + 2, true)
      if not e then return nil end
      i = e + 1
    elseif c == "\"" or c == "'" then
      local j = i + 1
      while j <= n and text:sub(j, j) ~= c do
        if text:sub(j, j) == "\\" then j = j + 1 end
        j = j + 1
      end
      i = j
    elseif c == "(" or c == "[" then
      depth = depth + 1
    elseif c == ")" or c == "]" then
      depth = depth - 1
      if depth == 0 and c == ")" then saw_paren_close = true end
    elseif c == "{" then
      depth = depth + 1
    elseif c == "}" then
      depth = depth - 1
      -- a function body ends the item; a struct or enum body is followed by its ';'
      if depth == 0 and saw_paren_close then
        local rest = text:sub(i + 1):match("^[ \t]*;")
        return rest and i + #rest or i
      end
    elseif c == ";" and depth == 0 then
      return i
    end
    i = i + 1
  end
  return nil
end

-- Splits a parameter list at its top-level commas.
local function split_params(s)
  local out, depth, cur = {}, 0, {}
  for c in s:gmatch(".") do
    if c == "(" or c == "[" then depth = depth + 1 elseif c == ")" or c == "]" then depth = depth - 1 end
    if c == "," and depth == 0 then
      out[#out + 1] = table.concat(cur)
      cur = {}
    else
      cur[#cur + 1] = c
    end
  end
  out[#out + 1] = table.concat(cur)
  for k, p in ipairs(out) do out[k] = p:gsub("^%s+", ""):gsub("%s+$", "") end
  if #out == 1 and (out[1] == "" or out[1] == "void") then return {} end
  return out
end

-- One parameter: its name, the pointed-to base type and how many '*' it has.
local function parse_param(p)
  if p == "..." then return nil end
  local stars = select(2, p:gsub("%*", ""))
  local bare = p:gsub("%b[]", "")
  local name = bare:match("([%a_][%w_]*)%s*$")
  local base = p:gsub("const", " "):match("([%a_][%w_]*)")
  if p:match("%[") then stars = stars + 1 end
  return {name = name, base = base, stars = stars, text = p}
end

-- A declaration as an item: {kind = "function"|"inline"|"type"|"macro", name, ret, params, code}.
local function parse_decl(code)
  local flat = code:gsub("/%*.-%*/", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if flat:match("^typedef") then
    local name = flat:match("%(%s*%*%s*([%a_][%w_]*)%s*%)%s*%(") or flat:match("([%a_][%w_]*)%s*;$")
    return {kind = "type", name = name, code = code}
  end
  local ftag, fname = flat:match("^(%a+)%s+([%a_][%w_]*)%s*;$")
  if ftag == "struct" or ftag == "union" then return {kind = "forward", name = ftag .. " " .. fname, code = code} end
  local tag, tname = flat:match("^(%a+)%s+([%a_][%w_]*)%s*{")
  if tag == "struct" or tag == "enum" or tag == "union" then
    return {kind = "type", name = tag .. " " .. tname, code = code}
  end
  if flat:match("^enum%s*{") then
    local first = flat:match("^enum%s*{%s*([%a_][%w_]*)")
    return {kind = "type", name = "enum { " .. first .. ", ... }", code = code}
  end
  local head = flat:match("^(.-)%s*{") or flat
  local pre, name, args = head:match("^(.-)([%a_][%w_]*)%s*(%b())")
  if not name then return nil end
  local kind = flat:match("^static%s+inline") and "inline" or "function"
  local ret = pre:gsub("^static%s+", ""):gsub("^inline%s+", ""):gsub("%s+$", "")
  local params = {}
  for _, p in ipairs(split_params(args:sub(2, -2))) do params[#params + 1] = parse_param(p) end
  local proto = code
  if kind == "inline" then proto = code:match("^(.-)%s*{"):gsub("%s+$", "") .. ";" end
  return {kind = kind, name = name, ret = ret, params = params, code = proto}
end

-- Reads one header into {file, desc, groups}: each group is the items one doc block documents
-- (or one undocumented item), in file order.
local function read_header(file, text)
  -- every header's C linkage for C++ (#ifdef __cplusplus / extern "C" { / #endif, and the closing
  -- brace likewise) is no declaration: blanked, line for line, so the line numbers stay
  text = text:gsub('#ifdef __cplusplus\nextern "C" {\n#endif\n', "\n\n\n"):gsub("#ifdef __cplusplus\n}\n#endif\n",
    "\n\n\n")
  local hdr = {file = file, groups = {}}
  local i, n = 1, #text
  local pending = nil   -- {body, line}: the doc block waiting for its declaration
  local group = nil     -- the group the next declaration may join
  -- item joins the group of the pending doc block (one block may document several declarations)
  local function add_documented(item)
    if not group or group.doc ~= pending then
      group = {doc = pending, items = {}}
      hdr.groups[#hdr.groups + 1] = group
    end
    table.insert(group.items, item)
  end
  local guard = nil
  local first_comment = true
  local function blank_between(a, b) return text:sub(a, b):find("\n[ \t]*\n") ~= nil end
  local last_end = 0
  while i <= n do
    local s = text:find("%S", i)
    if not s then break end
    local blank = blank_between(last_end + 1, s - 1)
    if blank then pending, group = nil, nil end -- a doc block documents what follows it directly
    local two = text:sub(s, s + 1)
    if two == "/*" then
      local e = text:find("*/", s + 2, true)
      if not e then
        fail(file, line_of(text, s), "unterminated comment")
        return hdr
      end
      local c = text:sub(s, e + 1)
      local is_doc = c:match("^/%*%*[%s]") ~= nil
      if first_comment then
        first_comment = false
        if is_doc then hdr.desc = comment_body(c) else hdr.plain_desc = true end
      elseif is_doc then
        pending = {body = comment_body(c), line = line_of(text, s)}
        group = nil
      else
        pending, group = nil, nil
      end
      i, last_end = e + 2, e + 1
    elseif two == "//" then
      local e = text:find("\n", s) or n
      pending, group = nil, nil
      i, last_end = e + 1, e
    elseif text:sub(s, s) == "#" then
      local e = s
      repeat
        local nl = text:find("\n", e) or n + 1
        local cont = text:sub(nl - 1, nl - 1) == "\\"
        e = nl
      until not cont or e > n
      local line = text:sub(s, e - 1)
      local g = line:match("^#%s*ifndef%s+([%a_][%w_]*)")
      if g and not guard then guard = g end
      local mname = line:match("^#%s*define%s+([%a_][%w_]*)")
      if mname and mname ~= guard then
        local item = {kind = "macro", name = mname, code = line:gsub("%s+$", ""), line = line_of(text, s)}
        if pending then add_documented(item) end
      end
      if line:match("^#%s*if") or line:match("^#%s*else") or line:match("^#%s*endif") then pending, group = nil, nil end
      i, last_end = e, e - 1
    else
      local e = item_end(text, s)
      if not e then
        fail(file, line_of(text, s), "cannot find the end of this declaration")
        return hdr
      end
      -- a comment on the same line after the declaration belongs to it
      local tail = text:sub(e + 1):match("^[ \t]*/%*.-%*/")
      if tail and not tail:find("\n") then e = e + #tail end
      local code = text:sub(s, e)
      local item = parse_decl(code)
      if not item then
        fail(file, line_of(text, s), "cannot read this declaration")
      else
        item.line = line_of(text, s)
        if pending then
          add_documented(item)
        else
          group = nil
          hdr.groups[#hdr.groups + 1] = {items = {item}}
        end
      end
      i, last_end = e + 1, e
    end
  end
  return hdr
end

-- ---- ownership ---------------------------------------------------------------------------------

-- Splits a doc body into its description and its Ownership: paragraph (nil when none).
local function split_ownership(body)
  local paras, cur = {}, {}
  for l in (body .. "\n"):gmatch("(.-)\n") do
    if l == "" then
      if #cur > 0 then paras[#paras + 1] = cur end
      cur = {}
    elseif l:match("^Ownership:") then
      if #cur > 0 then paras[#paras + 1] = cur end
      cur = {l}
      cur.own = true
    else
      cur[#cur + 1] = l
    end
  end
  if #cur > 0 then paras[#paras + 1] = cur end
  local desc, own = {}, nil
  for _, p in ipairs(paras) do
    if p.own then
      own = table.concat(p, " "):gsub("^Ownership:%s*", "")
    else
      desc[#desc + 1] = table.concat(p, "\n")
    end
  end
  return table.concat(desc, "\n\n"), own
end

local function code_list(names)
  local out = {}
  for k, v in ipairs(names) do out[k] = "`" .. v .. "`" end
  return table.concat(out, ", ")
end

-- What the types say about ownership, or nil plus a reason when they cannot say.
local function derived_ownership(fn)
  local parts = {}
  local ret_base = fn.ret:gsub("const", " "):match("([%a_][%w_]*)")
  local ret_ptr = fn.ret:find("%*") ~= nil
  if ret_ptr then
    local what = OWNED_RETURNS[ret_base]
    if not what or fn.ret:match("const") then
      return nil, "returns a pointer (" .. fn.ret .. "): say who owns it in an `Ownership:` paragraph"
    end
    parts[#parts + 1] = what
  end
  local outs, borrowed = {}, {}
  for _, p in ipairs(fn.params) do
    if p.stars >= 2 and p.base == "cnn_tensor" and not p.text:match("const") then
      outs[#outs + 1] = "*" .. p.name
    elseif p.stars >= 1 then
      borrowed[#borrowed + 1] = p.name
    end
  end
  if #outs > 0 then
    parts[#parts + 1] = code_list(outs) .. (#outs > 1 and " each receive" or " receives") .. " a new reference"
  end
  if #borrowed > 0 then parts[#parts + 1] = code_list(borrowed) .. " borrowed" end
  if #parts == 0 then return "nothing changes hands" end
  return table.concat(parts, "; ")
end

-- ---- outputs -----------------------------------------------------------------------------------

local function anchor(text) return (text:lower():gsub("[^%w%s_-]", ""):gsub("%s", "-")) end

local function header_rank(file)
  local base = file:match("([^/]+)$"):gsub("%.in$", "")
  for k, v in ipairs(ORDER) do
    if v == base then return k end
  end
  return #ORDER + 1
end

local function include_name(file) return "cnn/" .. file:match("([^/]+)$"):gsub("%.in$", "") end

-- Code as the reference shows it: the CMake placeholders of version.h.in named for what they become.
local function display(code)
  return (code:gsub("@PROJECT_VERSION@", "MAJOR.MINOR.PATCH"):gsub("@PROJECT_VERSION_(%u+)@", "%1"))
end

local function markdown_text(headers)
  local out = {}
  local function add(s) out[#out + 1] = s end
  add("# cnnlua C API reference")
  add("")
  add("<!-- Generated by scripts/tools/gen_c_api.lua from the doc comments of the public headers: do not edit.")
  add("     Change the comment (docs/CONTRIBUTING.md, \"The C API\"), then")
  add("     `cmake --build build --target c_api_docs` rewrites this file. -->")
  add("")
  add("libcnn is the C engine under cnnlua: strided float32/int64/uint8/bool tensors, a dynamic autograd tape, the")
  add("network ops (convolution, pooling, activations, losses, normalisation) and the file formats (IDX,")
  add("PNG, JPEG, safetensors). Its public headers are installed under `include/cnn/`; `#include")
  add("\"cnn/cnn.h\"` brings in all of them (from C, or from C++: they declare C linkage). Link with")
  add("`$(pkg-config --cflags --libs cnn)`; for `libcnn.a`, `$(pkg-config --cflags --static --libs cnn |")
  add("sed 's/-lcnn\\b/-l:libcnn.a/')` (`--static` adds the libraries libcnn.a needs, but `-lcnn` alone")
  add("picks libcnn.so where both are installed) or, from CMake, `find_package(cnn)` and")
  add("`target_link_libraries(app PRIVATE cnn::cnn)` (`cnn::cnn_static` for the static library).")
  add("`examples/c/classify.c` is a complete program: it loads a LeNet-5 checkpoint and classifies images.")
  add("")
  add("Conventions, everywhere:")
  add("")
  add("- **Errors.** A function that can fail returns `-1` (an `int` status; `0` is success) or `NULL`")
  add("  and sets a thread-local message that `cnn_error_get()` returns. Nothing prints, exits or aborts")
  add("  on bad input (one line on stderr reports an `OMP_NUM_THREADS` that is no thread count, as")
  add("  OpenMP's runtimes do); the library stays usable after an error. The messages are the ones cnnlua's Lua")
  add("  users read, so they count dimensions and indices from 1 (`cnn_tensor_select(t, 0, 2)` on a")
  add("  size-2 dim: \"index 3 is out of range for dimension 1 of size 2\").")
  add("- **Pointers.** Pointer arguments are non-NULL unless the function's doc says NULL is allowed")
  add("  (and what it means); enum arguments take the values their header lists.")
  add("- **Ownership.** Tensors are reference-counted. A *new reference* belongs to the caller, who gives")
  add("  it up with `cnn_tensor_release` (views share storage, so releasing a view never invalidates")
  add("  another tensor). A *borrowed* argument stays the caller's: the function takes a reference of")
  add("  its own if it keeps the tensor. Each function below says which of its results and arguments")
  add("  are which.")
  add("- **Indices.** Dimensions, indices and class labels are 0-based; a negative dim counts from the")
  add("  end (-1 is the last). `CNN_ALL_DIMS` as a dim means every dimension.")
  add("- **Autograd.** The `cnn_op_*` functions record a graph node when grad mode is on")
  add("  (`cnn_ag_set_enabled`) and an input requires grad; the other tensor functions never do.")
  add("- **Threads.** Kernels run on the runtime's threads (`cnn_parallel_set_threads`). Error messages,")
  add("  grad mode and the random stream's users are per thread or must be used from one thread at a")
  add("  time, as each header says.")
  add("")
  add("## Headers")
  add("")
  for _, h in ipairs(headers) do
    local inc = include_name(h.file)
    local summary = (h.desc or ""):match("^(.-%.)%s") or (h.desc or ""):gsub("\n", " ")
    add(string.format("- [%s](#%s): %s", inc, anchor(inc), summary:gsub("\n", " ")))
  end
  for _, h in ipairs(headers) do
    local inc = include_name(h.file)
    add("")
    add("## " .. inc)
    add("")
    add((h.desc or ""))
    for _, g in ipairs(h.groups) do
      if g.doc then
        local names = {}
        for _, it in ipairs(g.items) do names[#names + 1] = it.name end
        add("")
        add("### " .. table.concat(names, ", "))
        add("")
        add("```c")
        for _, it in ipairs(g.items) do add(display(it.code)) end
        add("```")
        local desc, own = split_ownership(g.doc.body)
        if desc ~= "" then
          add("")
          add(desc)
        end
        local fns = {}
        for _, it in ipairs(g.items) do
          if it.kind == "function" or it.kind == "inline" then fns[#fns + 1] = it end
        end
        if #fns > 0 then
          -- one line when one function, an Ownership: paragraph or the same derived text for all
          local texts, same = {}, true
          for k, fn in ipairs(fns) do
            local text = own
            if not text then
              local why
              text, why = derived_ownership(fn)
              if not text then
                lack(h.file, fn.line, fn.name .. " " .. why)
                text = ""
              end
            end
            texts[k] = (text:gsub("%.$", ""))
            if texts[k] ~= texts[1] then same = false end
          end
          add("")
          if same then
            add("**Ownership:** " .. texts[1]:gsub("^%l", string.upper) .. ".")
          else
            add("**Ownership:**")
            add("")
            for k, fn in ipairs(fns) do add("- `" .. fn.name .. "`: " .. texts[k] .. ".") end
          end
        end
      else
        local it = g.items[1]
        if it.kind == "function" or it.kind == "inline" then
          lack(h.file, it.line, it.name .. " has no doc comment (a /** ... */ block right above it)")
        elseif it.kind == "type" then
          add("")
          add("### " .. it.name)
          add("")
          add("```c")
          add(display(it.code))
          add("```")
        end
      end
    end
  end
  return table.concat(out, "\n") .. "\n"
end

local function version_script(headers)
  local names = {}
  for _, h in ipairs(headers) do
    for _, g in ipairs(h.groups) do
      for _, it in ipairs(g.items) do
        if it.kind == "function" then names[#names + 1] = it.name end
      end
    end
  end
  table.sort(names)
  local out = {"/* Generated by scripts/tools/gen_c_api.lua from the public headers: the symbols libcnn.so exports. */",
               "{", "  global:"}
  for _, n in ipairs(names) do out[#out + 1] = "    " .. n .. ";" end
  out[#out + 1] = "  local:"
  out[#out + 1] = "    *;"
  out[#out + 1] = "};"
  return table.concat(out, "\n") .. "\n"
end

-- ---- main --------------------------------------------------------------------------------------

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, text)
  if read(path) == text then return end -- unchanged: keep the timestamp (the library relinks on a change)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

local function main(args)
  local opts, files = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local key = ({["--root"] = "root", ["--markdown"] = "markdown", ["--check"] = "check",
                  ["--version-script"] = "map"})[a]
    if key then
      if args[i + 1] == nil then error(USAGE, 0) end
      opts[key] = args[i + 1]
      i = i + 2
    else
      files[#files + 1] = a
      i = i + 1
    end
  end
  local root = opts.root
  if root == nil or #files == 0 then error(USAGE, 0) end
  local headers = {}
  for _, f in ipairs(files) do
    local rel = f:sub(1, #root + 1) == root .. "/" and f:sub(#root + 2) or f
    local text = read(root .. "/" .. rel)
    if not text then error("cannot read " .. root .. "/" .. rel, 0) end
    headers[#headers + 1] = read_header(rel, text)
  end
  table.sort(headers, function(a, b)
    local ra, rb = header_rank(a.file), header_rank(b.file)
    if ra ~= rb then return ra < rb end
    return a.file < b.file
  end)
  if #errors > 0 then
    io.stderr:write("gen_c_api: ", table.concat(errors, "\ngen_c_api: "), "\n")
    os.exit(1)
  end
  if opts.map then write(opts.map, version_script(headers)) end
  if not (opts.markdown or opts.check) then return end
  for _, h in ipairs(headers) do
    if not h.desc then lack(h.file, 1, "a public header opens with a /** ... */ block saying what it holds") end
  end
  local md = markdown_text(headers)
  if #errors > 0 then
    io.stderr:write("gen_c_api: ", table.concat(errors, "\ngen_c_api: "), "\n")
    os.exit(1)
  end
  if #lacks > 0 then
    local head = opts.check and "gen_c_api: " or "gen_c_api: warning: "
    io.stderr:write(head, table.concat(lacks, "\n" .. head), "\n")
    if opts.check then os.exit(1) end
  end
  if opts.markdown then write(opts.markdown, md) end
  if opts.check then
    local path = opts.check:sub(1, 1) == "/" and opts.check or root .. "/" .. opts.check
    if read(path) ~= md then
      io.stderr:write(string.format("gen_c_api: %s is not what the public headers' doc comments give: run " ..
        "`cmake --build build --target c_api_docs` and commit it\n", opts.check))
      os.exit(1)
    end
    print(opts.check .. " is up to date")
  end
end

main(arg)
