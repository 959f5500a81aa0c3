#!/bin/sh
# The rockspec as a Lua user meets it (ctest install_luarocks, with -DCNN_TEST_PACKAGING=ON: it
# builds the whole project once more, minutes): a copy of SOURCE_DIR's files (tracked and new, as
# a clone with the work in progress), `luarocks make --tree TREE` for Lua 5.4, offline
# (--deps-mode=none: lfs and dkjson come from Debian), then `require "cnn"` from plain lua5.4 with
# the tree's paths only, and the tree's cnnlua.
#   check_luarocks.sh SOURCE_DIR WORK_DIR
set -eu
src=$1 work=$2
rm -rf "$work"
mkdir -p "$work/clone"
fail() { echo "check_luarocks: $*" >&2; exit 1; }

(cd "$src" && git ls-files -co --exclude-standard -z | xargs -0 tar cf -) | tar xf - -C "$work/clone"
rockspec=$(ls "$work"/clone/rockspecs/cnnlua-*.rockspec | tail -n 1)
tree=$work/tree
(cd "$work/clone" && CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  luarocks --lua-version 5.4 make --tree "$tree" --deps-mode=none "$rockspec") >"$work/luarocks.log" 2>&1 ||
  { tail -n 40 "$work/luarocks.log"; fail "luarocks make failed"; }

# only the tree's paths (and Debian's system ones, for lfs)
eval "$(luarocks --lua-version 5.4 --tree "$tree" path)"
out=$(cd / && lua5.4 -e 'local cnn = require "cnn"; print(cnn.ones(2, 3):sum():item(), package.searchpath("cnn.core", package.cpath))')
echo "$out" | grep -q "^6\.0*	$tree/lib/lua/5.4/cnn/core.so\$" || fail "require \"cnn\" from the tree printed '$out'"
"$tree/bin/cnnlua" -v | grep -q "^cnnlua [0-9]" || fail "the tree's cnnlua -v"
out=$(cd / && "$tree/bin/cnnlua" -e 'print(cnn.help.source())')
case "$out" in "$tree"/share/lua/5.4*) ;; *) fail "the tree's cnnlua reads its Lua half from '$out'" ;; esac
echo "luarocks make --tree $tree: require \"cnn\" and cnnlua work from the tree"
