#!/usr/bin/env bash
# A torchvision ResNet-18 exported from PyTorch gives the same logits in cnnlua (eval mode): PyTorch
# writes its state_dict (seeded weights, randomised BatchNorm statistics) and an input batch with its
# logits as safetensors under a temporary directory (47 MB: not a committed fixture); cnnlua builds
# cnn.models.resnet{depth=18}, loads the weights with strict=true, runs the batch and compares.
# Exits 0 when the largest difference is within the tolerance.
#   scripts/tools/check_resnet18_interop.sh [SIZE=224] [BATCH=2] [TOL=1e-4]
# CNNLUA picks the binary (default build/cnnlua); PyTorch is Debian's (/usr/bin/python3).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
size=${1:-224}
batch=${2:-2}
tol=${3:-1e-4}
cnnlua=${CNNLUA:-$root/build/cnnlua}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

/usr/bin/python3 "$root/scripts/tools/export_torch_models.py" resnet18 --out "$out" --size "$size" --batch "$batch"

cat > "$out/check.lua" <<'EOF'
local dir, tol = arg[1], tonumber(arg[2])
local weights = cnn.load(dir .. "/resnet18.safetensors")
local io_ = cnn.load(dir .. "/resnet18_io.safetensors")
local net = cnn.models.resnet{depth = 18}
net:load_state_dict(weights, {strict = true})
net:eval()
local t0 = cnn.wall_time()
local y = cnn.no_grad(function() return net(io_.input) end)
local dt = cnn.wall_time() - t0
local want = io_.logits
local diff = (y - want):abs()
local max_abs = diff:max():item()
local max_rel = (diff / (want:abs() + 1e-6)):max():item()
local agree = y:argmax(2):eq(want:argmax(2)):sum():item()
print(string.format("cnnlua resnet18: %d tensors loaded strict, input %s, forward %.2f s",
  #net:state_dict_keys(), table.concat(io_.input:shape(), "x"), dt))
print(string.format("logits max |cnnlua - PyTorch| = %.3g (max rel %.3g, |logit| <= %.3g), argmax agrees %d/%d",
  max_abs, max_rel, want:abs():max():item(), agree, want:size(1)))
if max_abs <= tol then
  print(string.format("OK: within %g", tol))
else
  print(string.format("FAIL: above %g", tol))
  os.exit(1)
end
EOF
"$cnnlua" "$out/check.lua" "$out" "$tol"
