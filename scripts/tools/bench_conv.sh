#!/bin/sh
# Runs bench_conv.lua (cnnlua) and bench_conv.py (PyTorch) on the same layer shapes and prints one
# table: milliseconds, GFLOP/s and the ratio torch/cnnlua (> 1: cnnlua faster).
#   scripts/tools/bench_conv.sh [BUILD_DIR] [extra args for both, e.g. --reps 9 --threads 2]
# RUNS=n (default 1) alternates n runs of each and keeps, per layer and column, the best of the
# runs' medians: on a machine other jobs share, a burst of load then spoils one run, not the table.
# Timings are wall clock: say how loaded the machine was when quoting them.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
build=${1:-$root/build}
[ $# -gt 0 ] && shift
runs=${RUNS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
i=1
while [ "$i" -le "$runs" ]; do
  (cd "$root" && "$build/cnnlua" "$here/bench_conv.lua" "$@") > "$tmp/cnn.$i"
  /usr/bin/python3 "$here/bench_conv.py" "$@" > "$tmp/torch.$i" 2> "$tmp/torch.err" || { cat "$tmp/torch.err"; exit 1; }
  i=$((i + 1))
done
head -1 "$tmp/cnn.1"
head -1 "$tmp/torch.1"
[ "$runs" -gt 1 ] && echo "# best of $runs alternating runs"
cat "$tmp"/cnn.* > "$tmp/cnn.all"
cat "$tmp"/torch.* > "$tmp/torch.all"
awk '
  function keep(arr, k, v) { if (!(k in arr) || v < arr[k]) arr[k] = v }
  FNR == 1 { file++ }
  /^#/ { next }
  file == 1 { if (!($1 in seen)) { order[++n] = $1; seen[$1] = 1 }
              keep(cf, $1, $2); keep(cb, $1, $3); keep(cgm, $1, -$6) }
  file == 2 { keep(tf, $1, $2); keep(tb, $1, $3); keep(tgm, $1, -$6); flop[$1] = $2 * $4 }
  END {
    printf "%-16s | %9s %9s %6s | %9s %9s %6s | %7s %7s | %7s %7s\n", "layer", "fwd cnn", "fwd torch", "ratio",
      "f+b cnn", "f+b torch", "ratio", "GF/s cnn", "torch", "gemm cnn", "torch"
    printf "%-16s | %9s %9s %6s | %9s %9s %6s | %7s %7s | %7s %7s\n", "", "ms", "ms", "", "ms", "ms", "", "f+b", "f+b",
      "GF/s", "GF/s"
    for (i = 1; i <= n; i++) {
      k = order[i]
      f = flop[k] * 3 # ms * GF/s of the forward = MFLOP; forward + backward is three times that
      printf "%-16s | %9.2f %9.2f %6.2f | %9.2f %9.2f %6.2f | %7.1f %7.1f | %7.1f %7.1f\n", k, cf[k], tf[k],
        tf[k] / cf[k], cb[k], tb[k], tb[k] / cb[k], f / cb[k], f / tb[k], -cgm[k], -tgm[k]
    }
  }' "$tmp/cnn.all" "$tmp/torch.all"
