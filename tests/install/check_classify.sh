#!/bin/sh
# examples/c/classify.c against cnnlua (ctests c_example_classify and, on the installed library,
# install_c_library): on the checkpoint tests/install/make_checkpoint.lua trained and the 10000
# Fashion-MNIST test images, classify's last line is the accuracy cnnlua's trainer printed, for
# the trainer's checkpoint and for a plain state_dict; on 8 of the images saved as PNG files it
# gives the classes cnnlua gives; a missing file is an error that names it.
#   check_classify.sh CLASSIFY CHECKPOINT_DIR DATA_DIR
set -eu
classify=$1 dir=$2 data=$3
fail() { echo "check_classify: $*" >&2; exit 1; }
images=$data/t10k-images-idx3-ubyte.gz
labels=$data/t10k-labels-idx1-ubyte.gz
expected=$(cat "$dir/expected_accuracy.txt")
for ckpt in checkpoint state_dict; do
  "$classify" "$dir/$ckpt.safetensors" "$images" "$labels" >"$dir/classify_$ckpt.txt"
  got=$(tail -n 1 "$dir/classify_$ckpt.txt")
  [ "$got" = "$expected" ] || fail "$ckpt: classify says '$got', cnnlua '$expected'"
  [ "$(wc -l <"$dir/classify_$ckpt.txt")" -eq 10001 ] || fail "$ckpt: expected a line per image and the accuracy"
done
echo "IDX: $expected, as cnnlua"

"$classify" "$dir/checkpoint.safetensors" "$dir"/png/*.png >"$dir/classify_png.txt"
diff "$dir/expected_png.txt" "$dir/classify_png.txt" || fail "PNG images: classes differ from cnnlua's"
echo "PNG: the classes cnnlua gives"

if "$classify" "$dir/checkpoint.safetensors" "$dir/missing.idx" 2>"$dir/err.txt"; then fail "a missing file succeeded"; fi
grep -q "^classify: .*missing.idx" "$dir/err.txt" || fail "unexpected error: $(cat "$dir/err.txt")"
echo "errors: named"
