#!/usr/bin/env bash
# Installs cnnlua's dependencies from Debian, builds it (Release, tuned for this machine) into
# ./build and installs it (cnnlua on the PATH, `require "cnn"` for lua5.4). Run from anywhere;
# uses sudo when not root. Extra CMake flags: CNN_CMAKE_FLAGS="-DCNN_WERROR=ON" setup.sh
# `setup.sh --deps` installs the packages only (.ci/run checks the style before it builds).
# `setup.sh --deb` builds a Debian package instead of installing: build-deb/cnnlua_VERSION_ARCH.deb
# (prefix /usr, not tuned for this machine, Depends computed from the shared libraries), for
# `sudo apt install ./build-deb/cnnlua_*.deb` here or on another Debian 12 machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

packages=(build-essential cmake pkg-config liblua5.4-dev lua5.4 libopenblas-dev libedit-dev
          libpng-dev libjpeg62-turbo-dev zlib1g-dev lua-busted lua-argparse lua-dkjson dataset-fashion-mnist
          libopenmpi-dev openmpi-bin openssh-client clang-format lua-check lua-filesystem
          libjansson-dev libcairo2-dev fonts-dejavu-core
          dpkg-dev file luarocks git)  # the packaging tests: cpack -G DEB + dpkg-shlibdeps, luarocks make
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
[ "${1:-}" = "--deps" ] && exit 0

if [ "${1:-}" = "--deb" ]; then
  # shellcheck disable=SC2086
  cmake -S "$root" -B "$root/build-deb" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
    -DCNN_NATIVE=OFF -DCNN_BUILD_TESTS=OFF ${CNN_CMAKE_FLAGS:-}
  cmake --build "$root/build-deb" -j"$(nproc)"
  (cd "$root/build-deb" && cpack -G DEB)
  ls "$root"/build-deb/cnnlua_*.deb
  exit 0
fi

# shellcheck disable=SC2086
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release ${CNN_CMAKE_FLAGS:-}
cmake --build "$root/build" -j"$(nproc)"
$SUDO cmake --install "$root/build"
