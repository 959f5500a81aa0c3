#!/bin/sh
# The installed libcnn as a C user meets it (ctest install_c_library): in PREFIX (installed by the
# fixture test install_into_prefix), the headers are exactly the public ones, and a program using
# only them builds and runs with pkg-config (PKG_CONFIG_PATH into the prefix; libcnn.so and, with
# --static, libcnn.a), from C and from C++ (CMake's find_package(cnn): check_find_package.sh); the
# installed examples/c/classify.c, built with pkg-config alone, classifies as cnnlua does
# (check_classify.sh on CHECKPOINT_DIR, made by make_checkpoint.lua, and DATA_DIR's Fashion-MNIST).
#   check_install.sh PREFIX WORK_DIR SOURCE_DIR CHECKPOINT_DIR DATA_DIR [EXTRA_CFLAGS]
set -eu
prefix=$1 work=$2 src=$3 ckpt=$4 data=$5 extra=${6:-}
here=$src/tests/install
rm -rf "$work"
mkdir -p "$work"
fail() { echo "check_install: $*" >&2; exit 1; }

# the installed headers: runtime/include/cnn/*.h and the generated version.h, nothing else
libdir=$(dirname "$(find "$prefix" -name cnn.pc -path '*/pkgconfig/*' | head -n 1)")/..
[ -f "$libdir/pkgconfig/cnn.pc" ] || fail "no cnn.pc under $prefix"
expected=$( (cd "$src/runtime/include/cnn" && ls *.h; echo version.h) | sort)
installed=$( (cd "$prefix/include/cnn" && ls) | sort)
[ "$expected" = "$installed" ] || fail "installed headers differ from the public ones:
$(printf '%s\n' "$expected" >"$work/e"; printf '%s\n' "$installed" >"$work/i"; diff "$work/e" "$work/i")"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -pedantic $extra "$here/consumer.c" $(pkg-config --cflags --libs cnn) \
  -Wl,-rpath,"$libdir" -o "$work/pc_shared"
"$work/pc_shared"
ldd "$work/pc_shared" | grep -q "libcnn.so.* => $libdir" || fail "pc_shared does not load $libdir's libcnn.so"
# C++: the headers' extern "C" (a C++ compiler comes with build-essential)
# shellcheck disable=SC2086
c++ -std=c++17 -Wall -Wextra -Werror -pedantic $extra "$here/consumer.cpp" $(pkg-config --cflags --libs cnn) \
  -Wl,-rpath,"$libdir" -o "$work/pc_cpp"
"$work/pc_cpp"
# -l:libcnn.a: the static library although libcnn.so sits beside it
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -pedantic $extra "$here/consumer.c" \
  $(pkg-config --cflags --static --libs cnn | sed 's/-lcnn\b/-l:libcnn.a/') -o "$work/pc_static"
"$work/pc_static"
if ldd "$work/pc_static" | grep -q libcnn; then fail "pc_static loads libcnn.so"; fi

# the example as installed, built as its comment says: cc classify.c $(pkg-config --cflags --libs cnn)
example=$prefix/share/cnnlua/examples/c/classify.c
[ -f "$example" ] || fail "classify.c is not installed as $example"
# shellcheck disable=SC2086
cc $extra "$example" $(pkg-config --cflags --libs cnn) -Wl,-rpath,"$libdir" -o "$work/classify"
mkdir -p "$work/classify-run"
cp -r "$ckpt"/*.safetensors "$ckpt"/expected_*.txt "$ckpt/png" "$work/classify-run/"
# expected_png.txt names the PNG files where make_checkpoint.lua wrote them
sed "s|^$ckpt/|$work/classify-run/|" "$ckpt/expected_png.txt" >"$work/classify-run/expected_png.txt"
sh "$here/check_classify.sh" "$work/classify" "$work/classify-run" "$data"
echo "installed libcnn: pkg-config, shared and static; classify.c built with pkg-config"
