#!/usr/bin/env bash
# A torchvision model exported from PyTorch gives the same logits in cnnlua (eval mode): PyTorch
# writes its state_dict (torchvision's own seeded initialisation, BatchNorm statistics and biases
# randomised) and an input batch with its logits as safetensors under a temporary directory
# (resnet18 47 MB, vgg11_bn 531 MB, googlenet 27 MB: not committed fixtures); cnnlua builds the
# same network, loads the weights with strict=true, runs the batch and compares. Exits 0 when the
# largest difference is within the tolerance (relative to the largest logit).
#   scripts/tools/check_torchvision_interop.sh MODEL [SIZE=224] [BATCH=2] [TOL=1e-4] [CLASSES=1000]
# MODEL: resnet18, vgg11_bn, vgg16, googlenet or googlenet_aux. CNNLUA picks the binary (default
# build/cnnlua); PyTorch is Debian's (/usr/bin/python3).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
model=${1:?usage: check_torchvision_interop.sh MODEL [SIZE] [BATCH] [TOL] [CLASSES]}
size=${2:-224}
batch=${3:-2}
tol=${4:-1e-4}
classes=${5:-1000}
cnnlua=${CNNLUA:-$root/build/cnnlua}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

extra=()
if [ "$model" != resnet18 ]; then extra=(--num-classes "$classes"); fi
/usr/bin/python3 "$root/scripts/tools/export_torch_models.py" "$model" --out "$out" --size "$size" --batch "$batch" "${extra[@]}"

cat > "$out/check.lua" <<'LUA'
local dir, name, tol = arg[1], arg[2], tonumber(arg[3])
local io_ = cnn.load(dir .. "/" .. name .. "_io.safetensors")
local classes = io_.logits:size(2)
local build = {
  resnet18 = function() return cnn.models.resnet {depth = 18, num_classes = classes} end,
  vgg11_bn = function() return cnn.models.vgg {depth = 11, batch_norm = true, num_classes = classes} end,
  vgg16 = function() return cnn.models.vgg {depth = 16, num_classes = classes} end,
  googlenet = function() return cnn.models.googlenet {num_classes = classes} end,
  googlenet_aux = function() return cnn.models.googlenet {num_classes = classes, aux_logits = true} end,
}
local net = cnn.nn.skip_init(assert(build[name], "unknown model " .. name)) -- the weights come from the file
net:load_state_dict(cnn.load(dir .. "/" .. name .. ".safetensors"), {strict = true})
collectgarbage()
net:eval()
local t0 = cnn.wall_time()
local y = cnn.no_grad(function() return net(io_.input) end)
local dt = cnn.wall_time() - t0
local want = io_.logits
local max_abs = (y - want):abs():max():item()
local scale = want:abs():max():item()
local agree = y:argmax(2):eq(want:argmax(2)):sum():item()
print(string.format("cnnlua %s: %d tensors loaded strict (%d parameters), input %s, forward %.2f s", name,
  #net:state_dict_keys(), net:num_parameters(), table.concat(io_.input:shape(), "x"), dt))
print(string.format("logits max |cnnlua - PyTorch| = %.3g (%.3g of the largest |logit| %.3g), argmax agrees %d/%d",
  max_abs, max_abs / scale, scale, agree, want:size(1)))
if max_abs <= tol * scale then
  print(string.format("OK: within %g", tol))
else
  print(string.format("FAIL: above %g", tol))
  os.exit(1)
end
LUA
"$cnnlua" "$out/check.lua" "$out" "$model" "$tol"
