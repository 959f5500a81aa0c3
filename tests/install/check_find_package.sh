#!/bin/sh
# The installed libcnn from CMake (ctest install_find_package): in PREFIX (installed by the fixture
# test install_into_prefix), tests/install/cmake_project finds it with find_package(cnn 0.1) and
# links consumer.c both ways, cnn::cnn (libcnn.so) and cnn::cnn_static (libcnn.a); both run.
#   check_find_package.sh PREFIX WORK_DIR SOURCE_DIR [EXTRA_CFLAGS]
set -eu
prefix=$1 work=$2 src=$3 extra=${4:-}
here=$src/tests/install
rm -rf "$work"
mkdir -p "$work"
fail() { echo "check_find_package: $*" >&2; exit 1; }

cmake -S "$here/cmake_project" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="$extra" >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "find_package(cnn) failed"; }
cmake --build "$work/build" >>"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "the CMake project did not build"; }
"$work/build/consumer_shared"
"$work/build/consumer_static"
if ldd "$work/build/consumer_static" | grep -q libcnn; then fail "consumer_static loads libcnn.so"; fi

ldd "$work/build/consumer_shared" | grep -q "libcnn.so.* => $prefix/" || fail "consumer_shared does not load $prefix's libcnn.so"
echo "find_package(cnn): cnn::cnn and cnn::cnn_static built and ran"
