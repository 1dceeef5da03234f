#!/usr/bin/env bash
# bench_accuracy.sh: accuracy against the reference linear-probe protocol, on
# the same Fashion-MNIST split and the same backbone features:
#
#   headtune linear head, headtune MLP head     (`headtune train --json`)
#   scikit-learn LogisticRegression (lbfgs)     on the same features, exported
#                                               with `headtune cache export-npy`
#   scikit-learn LogisticRegression on raw pixels, and headtune's linear head on
#   raw pixels, for context
#
#   scripts/bench_accuracy.sh                   # 10,000 train / 2,000 test
#   TRAIN=1000 TEST=300 scripts/bench_accuracy.sh   # a quick check
#
# The images are the first TRAIN training and first TEST test images of
# Fashion-MNIST (Debian dataset-fashion-mnist) as 28x28 PNG class folders
# (scripts/fashionmnist). Test = the test folder; headtune holds out a
# stratified 10% of the train folder as validation (seed SEED) and every
# method trains on the remaining 90% only. Raw pixels come from a second
# extract of the same folder through a one-node ONNX model (Flatten of the
# 28x28 grey input, 0..255), so headtune splits both identically; the script
# checks that both extracts list the same images in the same order.
#
# Environment: TRAIN (10000) TEST (2000) SEED (1) BACKBONE (mobilenetv2-imagenet)
#   THREADS (2) HEADTUNE_HOME (.deps/headtune-home) PYTHON (/usr/bin/python3)
#   RESULTS (scripts/results/bench_accuracy-<UTC date-time>.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

TRAIN="${TRAIN:-10000}"
TEST="${TEST:-2000}"
SEED="${SEED:-1}"
BACKBONE="${BACKBONE:-mobilenetv2-imagenet}"
THREADS="${THREADS:-2}"
PYTHON="${PYTHON:-/usr/bin/python3}"
export HEADTUNE_HOME="${HEADTUNE_HOME:-$REPO/.deps/headtune-home}"
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS="${RESULTS:-$REPO/scripts/results/bench_accuracy-$STAMP.txt}"
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" GOMAXPROCS="$THREADS"

log() { printf 'bench_accuracy: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
for v in TRAIN TEST SEED THREADS; do [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v=${!v}: not a number"; done
"$PYTHON" -c 'import sklearn, numpy, onnx' 2>/dev/null || die "$PYTHON lacks sklearn/numpy/onnx (Debian: python3-sklearn python3-onnx)"

DATA="$REPO/.deps/bench_accuracy/fashion-mnist-$TRAIN-$TEST"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_accuracy.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$RESULTS")"

log "building headtune"
go build -o "$tmp/headtune" ./cmd/headtune
HT="$tmp/headtune"
log "Fashion-MNIST subset in $DATA"
go run ./scripts/fashionmnist -out "$DATA" -train "$TRAIN" -test "$TEST" 2>&1 | sed 's/^/  /' >&2

model=(--model "$BACKBONE")
if [[ "$BACKBONE" != *.onnx ]] && [ ! -f "$HEADTUNE_HOME/models/$BACKBONE/model.onnx" ]; then
  log "headtune models pull $BACKBONE"
  "$HT" models pull "$BACKBONE" >&2
fi

"$PYTHON" - "$tmp/raw28.onnx" <<'PY'
import sys
import onnx
from onnx import TensorProto, helper
x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])
y = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 784])
g = helper.make_graph([helper.make_node("Flatten", ["image"], ["pixels"], axis=1)], "raw_pixels", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(m)
onnx.save(m, sys.argv[1])
PY

feat="$tmp/cache-features"; raw="$tmp/cache-raw"
log "extract: $BACKBONE features"
"$HT" extract "$DATA" "${model[@]}" --cache "$feat" --json --quiet --threads "$THREADS" >"$tmp/extract-features.json"
log "extract: raw pixels"
"$HT" extract "$DATA" --model "$tmp/raw28.onnx" --preset raw --cache "$raw" --json --quiet --threads "$THREADS" >"$tmp/extract-raw.json"
view() { "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["view"])' "$1"; }

# headtune train: the accuracy and time from --json; when the JSON summary
# cannot be written, from the text summary on stderr.
train() { # name cache kind
  local name=$1 cache=$2 kind=$3
  log "train: $name"
  if "$HT" train --cache "$cache" --classes 10 --kind "$kind" --seed "$SEED" --threads "$THREADS" \
    --head "$tmp/$kind.head" --json --quiet >"$tmp/train.json" 2>"$tmp/train.err"; then
    "$PYTHON" - "$tmp/train.json" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t = s.get("train") or {}
secs = next((t[k] for k in ("seconds", "Seconds") if k in t), None)
print(json.dumps({"name": sys.argv[2], "accuracy": s["test"]["accuracy"], "seconds": secs}))
PY
  else
    log "  headtune train --json failed ($(tail -n1 "$tmp/train.err")); reading the text summary instead"
    "$HT" train --cache "$cache" --classes 10 --kind "$kind" --seed "$SEED" --threads "$THREADS" \
      --head "$tmp/$kind.head" --quiet 2>"$tmp/train.err" || { cat "$tmp/train.err" >&2; return 1; }
    "$PYTHON" - "$tmp/train.err" "$name" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
acc = re.search(r"test accuracy ([0-9.]+)", text)
secs = re.search(r"done in ([0-9.]+)s", text)
if not acc:
    sys.exit("bench_accuracy: no test accuracy in headtune train's output:\n" + text)
print(json.dumps({"name": sys.argv[2], "accuracy": float(acc.group(1)), "seconds": float(secs.group(1)) if secs else None}))
PY
  fi
}
{
  train "headtune linear head (L-BFGS, C=1), $BACKBONE features" "$feat" linear
  train "headtune MLP head, $BACKBONE features" "$feat" mlp
  train "headtune linear head (L-BFGS, C=1), raw 28x28 pixels" "$raw" linear
} >"$tmp/headtune.jsonl"

"$HT" cache export-npy --cache "$feat" --seed "$SEED" -o "$tmp/npy-features" 2>/dev/null
"$HT" cache export-npy --cache "$raw" --seed "$SEED" -o "$tmp/npy-raw" 2>/dev/null
log "scikit-learn"
table=$("$PYTHON" scripts/bench_accuracy.py --features "$tmp/npy-features" --raw "$tmp/npy-raw" \
  --views "$(view "$tmp/extract-features.json")" "$(view "$tmp/extract-raw.json")" \
  --headtune "$tmp/headtune.jsonl" --backbone "$BACKBONE")
{
  printf '# bench_accuracy.sh %s UTC, headtune %s, %s x%s cores, load %s\n' "$STAMP" "$(git rev-parse --short HEAD)" \
    "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '# command: TRAIN=%s TEST=%s SEED=%s BACKBONE=%s THREADS=%s scripts/bench_accuracy.sh\n' "$TRAIN" "$TEST" "$SEED" "$BACKBONE" "$THREADS"
  printf '# versions: %s\n' "$("$PYTHON" -c 'import sklearn, numpy; print("scikit-learn", sklearn.__version__, "numpy", numpy.__version__)'), $(go version | cut -d' ' -f3)"
  printf '# headtune train output:\n'
  sed 's/^/#   /' "$tmp/headtune.jsonl"
  printf '\n%s\n' "$table"
} >"$RESULTS"
printf '%s\n' "$table"
log "written to $RESULTS"
