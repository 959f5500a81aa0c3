#!/usr/bin/env bash
# One LeNet-5 Fashion-MNIST training epoch in cnnlua and in PyTorch, in one run on this machine:
# images/s and peak RSS of each, and the ratios. Same network, data, batch size, optimiser and
# thread count; PyTorch from Debian's python3-torch (/usr/bin/python3).
#   scripts/tools/bench_lenet.sh [THREADS] [EPOCHS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
threads=${1:-2}
epochs=${2:-1}
cnnlua=${CNNLUA:-$root/build/cnnlua}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$cnnlua" "$root/examples/train_lenet.lua" --epochs "$epochs" --threads "$threads" --out "$out/run" > "$out/cnnlua.log"
/usr/bin/python3 "$root/scripts/tools/lenet_torch.py" --epochs "$epochs" --threads "$threads" > "$out/torch.log"

c_ips=$(grep -o '[0-9]* img/s' "$out/cnnlua.log" | awk '{print $1}' | sort -n | tail -1)
c_rss=$(grep -o 'peak RSS [0-9]* MB' "$out/cnnlua.log" | awk '{print $3}' | tail -1)
c_acc=$(tail -1 "$out/cnnlua.log" | grep -o '[0-9.]*%')
t_json=$(tail -1 "$out/torch.log")
t_ips=$(echo "$t_json" | /usr/bin/python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["images_per_s"])')
t_rss=$(echo "$t_json" | /usr/bin/python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["peak_rss_mb"])')
t_acc=$(echo "$t_json" | /usr/bin/python3 -c 'import json,sys; print("%.2f%%" % json.load(sys.stdin)["test_accuracy"])')

printf '%-10s %12s %14s %14s\n' "" "images/s" "peak RSS (MB)" "test accuracy"
printf '%-10s %12s %14s %14s\n' cnnlua "$c_ips" "$c_rss" "$c_acc"
printf '%-10s %12s %14s %14s\n' pytorch "$t_ips" "$t_rss" "$t_acc"
awk -v a="$c_ips" -v b="$t_ips" -v c="$c_rss" -v d="$t_rss" \
  'BEGIN { printf "speed: cnnlua %.2fx PyTorch; memory: cnnlua uses %.2f of PyTorch'"'"'s peak RSS\n", a / b, c / d }'
