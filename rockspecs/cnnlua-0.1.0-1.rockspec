-- `luarocks make rockspecs/cnnlua-0.1.0-1.rockspec` from a clone (add `--tree DIR` for a tree of
-- your own): builds with CMake and installs the `cnn` module (its Lua half and the C core cnn.core)
-- and the `cnnlua` executable into the Lua 5.4 tree. The C dependencies come from Debian
-- (scripts/tools/setup.sh --deps). The Lua ones are listed below; with Debian's lua-filesystem and
-- lua-dkjson installed, `--deps-mode=none` builds offline (tests/install/check_luarocks.sh does).
rockspec_format = "3.0"
package = "cnnlua"
version = "0.1.0-1"
source = {
  -- no public address yet: `luarocks make` builds the clone it runs in and never fetches this
  url = "git+file:///dev/null/cnnlua",
  tag = "v0.1.0",
}
description = {
  summary = "A deep learning runtime: a C engine (tensors, autograd, conv kernels) driven from Lua 5.4",
  detailed = [[
cnnlua is a C engine (tensors, autograd, im2col + OpenBLAS and direct convolution kernels) with a
Lua 5.4 front end modelled on PyTorch: require "cnn" from lua5.4, or the cnnlua interpreter and REPL.
]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "luafilesystem",
  "dkjson",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    -- LuaRocks' own folders: it moves them into the tree's share/lua/5.4, lib/lua/5.4 and bin
    CNN_INSTALL_LUA_DIR = "$(LUADIR)",
    CNN_INSTALL_LUA_CDIR = "$(LIBDIR)",
    CMAKE_INSTALL_BINDIR = "bin",
    CNN_BUILD_TESTS = "OFF",
    -- a rock is the Lua module: libcnn for C programs comes with cmake --install or the .deb
    CNN_INSTALL_C_LIBRARY = "OFF",
  },
}
