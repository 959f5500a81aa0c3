#!/bin/sh
# The .deb as another Debian machine gets it (ctest install_deb): `cpack -G DEB` over BUILD_DIR's
# install, Depends computed by dpkg-shlibdeps, the files it must hold, and, unpacked into a scratch
# root (dpkg-deb -x: never dpkg -i on a shared machine), cnnlua -v, the Lua half from cnnlua and
# from plain lua5.4, and cnn.pc naming the prefix the package installs into.
#   check_deb.sh BUILD_DIR WORK_DIR
set -eu
build=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
fail() { echo "check_deb: $*" >&2; exit 1; }

cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/pkg" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack -G DEB failed"; }
deb=$(ls "$work"/pkg/cnnlua_*.deb)
prefix=$(sed -n 's/^set(CPACK_PACKAGING_INSTALL_PREFIX "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
[ -n "$prefix" ] || fail "no CPACK_PACKAGING_INSTALL_PREFIX in $build/CPackConfig.cmake"

depends=$(dpkg-deb -f "$deb" Depends)
for lib in libopenblas0 liblua5.4-0 libjansson4 libcairo2 libc6 lua-filesystem; do
  echo "$depends" | grep -q "$lib" || fail "Depends lacks $lib: $depends"
done

dpkg-deb -c "$deb" | awk '{print $6}' >"$work/contents"
for f in bin/cnnlua share/lua/5.4/cnn/init.lua share/lua/5.4/cnn/help_data.lua lua/5.4/cnn/core.so \
         libcnn.so.0.1 libcnn.a include/cnn/cnn.h include/cnn/version.h pkgconfig/cnn.pc \
         cmake/cnn/cnnConfig.cmake share/cnnlua/examples/c/classify.c; do
  grep -q "^\.$prefix/.*$f\$\|^\.$prefix/$f\$" "$work/contents" || fail "the package has no $prefix/.../$f"
done

root=$work/root
dpkg-deb -x "$deb" "$root"
libdir=$(dirname "$(find "$root$prefix" -name libcnn.so.0.1 | head -n 1)")
cdir=$(dirname "$(dirname "$(find "$root$prefix" -name core.so -path '*/cnn/*' | head -n 1)")")
LD_LIBRARY_PATH=$libdir "$root$prefix/bin/cnnlua" -v | grep -q "^cnnlua [0-9]" || fail "cnnlua -v"
out=$("$root$prefix/bin/cnnlua" -e 'print(cnn.ones(2, 3):sum():item())')
[ "$out" = "6.0" ] || [ "$out" = "6" ] || fail "cnnlua -e from the package printed '$out'"
out=$(LUA_PATH="$root$prefix/share/lua/5.4/?.lua;$root$prefix/share/lua/5.4/?/init.lua;;" \
      LUA_CPATH="$cdir/?.so;;" lua5.4 -e 'print(require("cnn").ones(2):sum():item())')
[ "$out" = "2.0" ] || [ "$out" = "2" ] || fail "lua5.4 require \"cnn\" from the package printed '$out'"
grep -q "^prefix=$prefix\$" "$libdir/pkgconfig/cnn.pc" || fail "cnn.pc: $(grep ^prefix "$libdir/pkgconfig/cnn.pc")"
echo "$(basename "$deb"): Depends $depends"
