#!/usr/bin/env bash
# Fuzzes the IDX, PNG, JPEG and safetensors readers with libFuzzer (clang, ASan + UBSan): builds the
# targets of tests/fuzz into ./build-fuzz and runs each for SECONDS (default 60), one process at a
# time. Usage: fuzz.sh [SECONDS] [FORMAT...]   (FORMAT: idx, png, jpeg, safetensors; default all four)
# New inputs grow build-fuzz/corpus/<format> (tests/fuzz/corpus/<format> holds the committed
# seeds); crashes are minimised and land in tests/fuzz/crashers/<format>/, where
# tests/c/test_fuzz_regressions.c replays them once fixed. Exits 1 when a run found a crash.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
shift || true
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(idx png jpeg safetensors)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# clang with its libFuzzer/sanitizer runtimes, plus what configuring the project needs
packages=(clang libclang-rt-dev cmake pkg-config liblua5.4-dev lua5.4 libopenblas-dev libedit-dev
          libpng-dev libjpeg62-turbo-dev zlib1g-dev libjansson-dev libcairo2-dev lua-busted)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

build="$root/build-fuzz"
# -O2 with asserts kept (RelWithDebInfo would add -DNDEBUG); portable code, no -march=native
cmake -S "$root" -B "$build" -DCNN_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" -DCNN_NATIVE=OFF >/dev/null
targets=()
for f in "${formats[@]}"; do targets+=("fuzz_$f"); done
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

max_len() {
  case $1 in
    idx) echo 4096 ;;          # a header is at most 36 bytes; gzip lets 4 KB announce ~4 MB
    png) echo 2048 ;;          # seeds are < 400 bytes; 2 KB of 1-bit deflate is already a 270 MB RGBA tensor
    jpeg) echo 4096 ;;         # seeds are 0.3-1.3 KB; the pixel cap of fuzz_readers.h bounds the rest
    safetensors) echo 8192 ;;  # a header with a few dozen entries, and their data
    *) echo "fuzz.sh: unknown format '$1' (idx, png, jpeg or safetensors)" >&2; exit 2 ;;
  esac
}

export OMP_NUM_THREADS=1 # the machine is shared; one core per run
found=0
for f in "${formats[@]}"; do
  len=$(max_len "$f")
  crashers="$root/tests/fuzz/crashers/$f"
  work="$build/corpus/$f"
  mkdir -p "$crashers" "$work"
  dict=()
  [ -f "$root/tests/fuzz/$f.dict" ] && dict=(-dict="$root/tests/fuzz/$f.dict")
  before=$(ls "$crashers")
  echo "== fuzz_$f: ${secs}s, max_len $len (log: $build/fuzz_$f.log)"
  rc=0
  "$build/fuzz/fuzz_$f" "$work" "$root/tests/fuzz/corpus/$f" -max_total_time="$secs" -max_len="$len" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$crashers/" >"$build/fuzz_$f.log" 2>&1 || rc=$?
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added)|^#[0-9]+ +DONE' \
    "$build/fuzz_$f.log" || true
  for c in $(ls "$crashers"); do
    if ! grep -qxF "$c" <<<"$before"; then
      found=1
      echo "fuzz_$f: new crasher $crashers/$c; minimising"
      "$build/fuzz/fuzz_$f" -minimize_crash=1 -max_total_time=60 -exact_artifact_path="$crashers/$c.min" \
        "$crashers/$c" >"$build/fuzz_$f.min.log" 2>&1 || true
      [ -s "$crashers/$c.min" ] && mv "$crashers/$c.min" "$crashers/$c"
      "$build/fuzz/fuzz_$f" "$crashers/$c" 2>&1 | grep -E 'ERROR|SUMMARY|#[0-9]+ 0x' | head -n 12 || true
    fi
  done
  [ $rc -eq 0 ] || [ $found -eq 1 ] || { echo "fuzz_$f exited $rc without a crasher: see the log"; found=1; }
done
exit $found
