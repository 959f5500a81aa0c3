-- cnn.util: the tensor test, option checking, atomic writes and the filesystem helpers (through
-- lua-filesystem). Expected values are the files and folders the calls leave, listed by hand.
local cnn = require "cnn"
local H = dofile("tests/lua/helpers.lua")
local util = cnn.util
local lfs = require "lfs"

describe("cnn.util.is_tensor", function()
  it("tells tensors (closed ones too) from everything else", function()
    local closed
    do
      local t <close> = cnn.zeros(2)
      assert.is_true(util.is_tensor(t))
      assert.is_true(cnn.is_tensor(t))
      closed = t
    end
    assert.is_true(util.is_tensor(closed))
    for _, v in ipairs {1, "x", {}, true, io.stdout, print} do assert.is_false(util.is_tensor(v)) end
    assert.is_false(util.is_tensor(nil))
  end)

  it("allocates nothing", function()
    local x = cnn.ones(1)
    collectgarbage("stop")
    local before = collectgarbage("count")
    for _ = 1, 10000 do util.is_tensor(x) end
    local grown = collectgarbage("count") - before
    collectgarbage("restart")
    assert.is_true(grown < 1, "grew by " .. grown .. " KB") -- a tensor per call would be megabytes
  end)
end)

describe("cnn.util.check_options", function()
  it("returns the table, or a fresh one for nil", function()
    local o = {a = 1}
    assert.are.equal(o, util.check_options("f", o, {a = true, b = true}))
    assert.are.same({}, util.check_options("f", nil, {a = true}))
  end)

  it("names the function and the key, at the level asked", function()
    local function api(opts)
      local o = util.check_options("api", opts, {stride = 0}, 2)
      return o
    end
    local ok, msg = pcall(function()
      api({strid = 1}) -- the line the error names (api's caller's)
    end)
    assert.is_false(ok)
    local line = debug.getinfo(1, "l").currentline - 3
    assert.are.equal("util_spec.lua:" .. line .. ": api: unknown option 'strid'", msg:match("util_spec%.lua:.*"))
    local _, msg2 = pcall(util.check_options, "g", 5, {}, 0)
    assert.are.equal("g: expected an options table, got number", msg2) -- level 0: no position
    local _, msg3 = pcall(util.check_options, "g", cnn.zeros(1), {}, 0)
    assert.are.equal("g: expected an options table, got a tensor", msg3)
  end)
end)

describe("cnn.util.checked", function()
  it("passes a pcall's results through, and re-raises its error at the caller's line", function()
    local a, b, n = util.checked(2, pcall(function() return 1, nil, 3 end))
    assert.are.same({1, nil, 3}, {a, b, n})
    local function api(x)
      local y = util.checked(2, pcall(require("cnn.core").io.idx_load, x, 1, "api")) -- C: no position
      return y
    end
    local ok, msg = pcall(function()
      api("/nonexistent/file") -- the line the error names
    end)
    assert.is_false(ok)
    local line = debug.getinfo(1, "l").currentline - 3
    assert.are.equal("util_spec.lua:" .. line .. ": api: /nonexistent/file: cannot open (No such file or directory)",
      msg:match("util_spec%.lua:.*"))
    -- a message that has a position keeps it alone (not a second one in front)
    local _, m2 = pcall(function() return util.checked(2, pcall(error, "here.lua:7: boom", 0)) end)
    assert.are.equal("here.lua:7: boom", m2)
    -- non-string errors pass through untouched
    local err = {}
    local _, m3 = pcall(function() return util.checked(2, pcall(error, err)) end)
    assert.are.equal(err, m3)
  end)
end)

describe("cnn.util files and folders", function()
  local tmp
  before_each(function() tmp = H.tmpdir() end)
  after_each(function() util.remove_tree(tmp) end)

  it("mkdir_p makes the missing parents and accepts a folder that exists", function()
    assert.is_true(util.mkdir_p(tmp .. "/a/b/c"))
    assert.is_true(util.mkdir_p(tmp .. "/a/b/c"))
    assert.is_true(util.is_dir(tmp .. "/a/b/c"))
    H.write_bytes(tmp .. "/file", "x")
    local ok, err = util.mkdir_p(tmp .. "/file/sub")
    assert.is_nil(ok)
    assert.truthy(err:find("cannot create", 1, true))
  end)

  -- write_file renamed a temporary file over path: as root it replaced /dev/null by a file, and it
  -- turned links into files; it is now the C writers' atomic write
  it("write_file keeps a link a link, writes a device as it is and refuses a folder", function()
    H.write_bytes(tmp .. "/target", "old")
    assert(os.execute("ln -s target " .. H.sh_quote(tmp .. "/link") .. " && mkdir " .. H.sh_quote(tmp .. "/dir")))
    assert.is_true(util.write_file(tmp .. "/link", "new"))
    assert.are.equal("link", lfs.symlinkattributes(tmp .. "/link", "mode"))
    assert.are.equal("new", H.read_bytes(tmp .. "/target"))
    local ok, err = util.write_file(tmp .. "/dir", "x")
    assert.is_nil(ok)
    assert.truthy(err:find("is a directory, not a file name", 1, true), err)
    assert.is_nil(util.write_file(tmp .. "/dir/", "x"))
    assert.is_nil(util.write_file("", "x"))
    assert.are.same({"dir", "link", "target"}, util.list_dir(tmp)) -- no temporary file left
    -- a character device of our own (root only: mknod), never the system's /dev/null
    if os.execute("mknod -m 666 " .. H.sh_quote(tmp .. "/null") .. " c 1 3 2>/dev/null") then
      assert.is_true(util.write_file(tmp .. "/null", "data"))
      assert.are.equal("char device", lfs.attributes(tmp .. "/null", "mode"))
    end
  end)

  it("writable_dir makes the folder and checks that a file can be made in it, leaving none", function()
    assert.is_true(util.writable_dir(tmp .. "/w/x"))
    assert.is_true(util.is_dir(tmp .. "/w/x"))
    assert.are.same({}, util.list_dir(tmp .. "/w/x"))
    -- a link planted at a guessable probe name was followed, and its target truncated
    H.write_bytes(tmp .. "/precious", "keep me")
    for _, name in ipairs {".cnnlua-write-check", ".cnnlua-write-check-" .. require("cnn.core").process.pid()} do
      assert(os.execute("ln -s ../../precious " .. H.sh_quote(tmp .. "/w/x/" .. name)))
    end
    assert.is_true(util.writable_dir(tmp .. "/w/x"))
    assert.are.equal("keep me", H.read_bytes(tmp .. "/precious"))
    local empty_ok, empty_err = util.writable_dir("")
    assert.is_nil(empty_ok)
    assert.truthy(empty_err:find("empty string", 1, true))
    H.write_bytes(tmp .. "/file", "x")
    local ok, err = util.writable_dir(tmp .. "/file/sub")
    assert.is_nil(ok)
    assert.truthy(err:find("cannot create", 1, true))
    -- a folder that exists but takes no files (procfs refuses root as well)
    if util.is_dir("/proc/self") then
      ok, err = util.writable_dir("/proc/self")
      assert.is_nil(ok)
      assert.truthy(err:find("^cannot write in /proc/self: "), err)
      assert.is_nil(err:find(".cnnlua-write-check", 1, true)) -- the probe's name is not the caller's
    end
  end)

  it("dirname gives the folder part as the dirname command", function()
    assert.equal("runs/a", util.dirname("runs/a/checkpoint.safetensors"))
    assert.equal(".", util.dirname("log.csv"))
    assert.equal("/", util.dirname("/log.csv"))
    assert.equal("/tmp", util.dirname("/tmp/x"))
  end)

  it("list_dir gives the sorted names without . and ..", function()
    util.mkdir_p(tmp .. "/b")
    H.write_bytes(tmp .. "/c.txt", "")
    H.write_bytes(tmp .. "/a.txt", "")
    assert.are.same({"a.txt", "b", "c.txt"}, util.list_dir(tmp))
    assert.is_nil((util.list_dir(tmp .. "/nowhere")))
  end)

  it("remove_tree removes a whole tree and leaves what a link points to", function()
    util.mkdir_p(tmp .. "/keep")
    H.write_bytes(tmp .. "/keep/k", "k")
    util.mkdir_p(tmp .. "/t/u")
    H.write_bytes(tmp .. "/t/u/f", "f")
    assert.is_true(os.execute("ln -s " .. H.sh_quote(tmp .. "/keep") .. " " .. H.sh_quote(tmp .. "/t/link")))
    assert.is_true(util.remove_tree(tmp .. "/t"))
    assert.is_false(util.is_dir(tmp .. "/t"))
    assert.are.equal("k", H.read_bytes(tmp .. "/keep/k"))
    assert.is_true(util.remove_tree(tmp .. "/t")) -- gone already: fine
  end)

  it("write_file replaces a file whole and leaves no temporary behind", function()
    local p = tmp .. "/out.txt"
    assert.is_true(util.write_file(p, "first"))
    assert.is_true(util.write_file(p, "second"))
    assert.are.equal("second", H.read_bytes(p))
    assert.are.same({"out.txt"}, util.list_dir(tmp))
    local ok, err = util.write_file(tmp .. "/no/such/dir/x", "y")
    assert.is_nil(ok)
    assert.is_string(err)
  end)
end)

describe("cnn.util.is_interrupt", function()
  it("is true for cnnlua's Ctrl-C error, with or without a position, and for nothing else", function()
    local is = cnn.util.is_interrupt
    assert.is_true(is("interrupted!"))
    assert.is_true(is("stdin:1: interrupted!"))
    assert.is_false(is("interrupted! by a user"))
    assert.is_false(is({msg = "interrupted!"}))
    assert.is_false(is(nil))
  end)
end)
