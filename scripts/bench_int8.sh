#!/usr/bin/env bash
# bench_int8.sh: float32 against int8 (`headtune models quantize`), one run
# per backbone, on the same Fashion-MNIST JPEGs (Debian dataset-fashion-mnist,
# written by scripts/fashionmnist):
#
#   quantize   `headtune models quantize NAME --calibrate train/ --samples S`
#              (its own check: feature cosine on images it did not calibrate on)
#   speed      scripts/benchint8 on the test/ JPEGs, float and int8 alternating
#              per round: inference alone on pre-decoded tensors (1 thread,
#              batch 1; and THREADS concurrent 1-thread runs, the pipeline's
#              layout), `headtune extract` end to end into a fresh cache, and
#              the cosine similarity of the two models' features per image
#   accuracy   `headtune extract` of train/ + test/ with each model, then
#              `headtune train --kind linear` and `--kind mlp` (same split,
#              same seed); test accuracy
#   profile    scripts/benchint8 -profile: ONNX Runtime's profiler on
#              PROFILE_N test images through both models (1 thread, batch 1,
#              alternating), kernel µs per image by layer class of the graphs
#              ONNX Runtime optimised (backbone/ortprof), and the speed-up
#              bound if every class ran in its faster precision (conversions
#              between float32 and int8 not counted)
#
# PLAIN=1 measures plain ONNX classifiers instead: torchvision architectures
# (PLAIN_ARCHS) with random weights, exported by scripts/export_torchvision.py
# into .deps/torchvision/ and added as tv-ARCH (`headtune models add --preset
# imagenet`); quantize, speed, cosine and profile as above, no accuracy
# (random weights classify nothing). PLAIN_TUNE entries ARCH:K also measure
# the `--tune-layers K` cut of tv-ARCH and its int8 copy.
#
# It prints two markdown tables (README "int8 backbones against float32": one
# row per backbone, then one per backbone and layer class) on stdout and keeps
# the raw JSON in RESULTS; progress goes to stderr. Speeds are medians over
# REPEATS rounds; the speed-up is the median of per-round ratios (its range
# across rounds is given), so machine load hits both models alike. The load
# average before and after each backbone is recorded with it.
#
# Environment: BACKBONES ("mobilenetv2-imagenet inceptionv3-imagenet
#   face-expression") TRAIN (1000) TEST (500) SIZE (224, JPEG side) SAMPLES
#   (500 calibration images) METHOD (percentile) SEED (1) THREADS (2) REPEATS
#   (3) SPEED_N (test images timed, 200) PROFILE_N (images profiled, 100; 0:
#   no profile) PLAIN (0) PLAIN_ARCHS ("resnet18 resnet50 efficientnet_b0
#   vgg16") PLAIN_TUNE ("vgg16:1") (with PLAIN=1 the defaults of SAMPLES,
#   SPEED_N and PROFILE_N are 200, 60 and 30) QUANTIZE_ARGS (extra flags, e.g.
#   "--min-cosine 0.995") HEADTUNE_HOME (.deps/headtune-home) TARBALL_DIR
#   (npm tarballs to build from, default: npm pack) RESULTS
#   (scripts/results/bench_int8-<UTC date-time>.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

PLAIN="${PLAIN:-0}"
PLAIN_ARCHS="${PLAIN_ARCHS:-resnet18 resnet50 efficientnet_b0 vgg16}"
PLAIN_TUNE="${PLAIN_TUNE:-vgg16:1}"
if [ "$PLAIN" = 1 ]; then
  # VGG16 runs about 3 images/s on one core: fewer images keep the run
  # near a quarter of an hour on 2 cores.
  SAMPLES="${SAMPLES:-200}"
  SPEED_N="${SPEED_N:-60}"
  PROFILE_N="${PROFILE_N:-30}"
  BACKBONES=""
  for a in $PLAIN_ARCHS; do BACKBONES="$BACKBONES tv-$a"; done
  BACKBONES="${BACKBONES# }"
else
  BACKBONES="${BACKBONES:-mobilenetv2-imagenet inceptionv3-imagenet face-expression}"
  PLAIN_TUNE=""
fi
TRAIN="${TRAIN:-1000}"
TEST="${TEST:-500}"
SIZE="${SIZE:-224}"
SAMPLES="${SAMPLES:-500}"
METHOD="${METHOD:-percentile}"
SEED="${SEED:-1}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
SPEED_N="${SPEED_N:-200}"
PROFILE_N="${PROFILE_N:-100}"
QUANTIZE_ARGS="${QUANTIZE_ARGS:-}"
TARBALL_DIR="${TARBALL_DIR:-}"
PYTHON="${PYTHON:-/usr/bin/python3}"
export HEADTUNE_HOME="${HEADTUNE_HOME:-$REPO/.deps/headtune-home}"
STAMP=$(date -u +%Y%m%d-%H%M%S)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS="${RESULTS:-$REPO/scripts/results/bench_int8-$STAMP.txt}"
export GOMAXPROCS="$THREADS"

log() { printf 'bench_int8: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
for v in TRAIN TEST SIZE SAMPLES SEED THREADS REPEATS SPEED_N PROFILE_N PLAIN; do [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v=${!v}: not a number"; done
FMNIST=$(dpkg -L dataset-fashion-mnist 2>/dev/null | grep -m1 'train-images.*gz$' | xargs -r dirname)
[ -n "$FMNIST" ] || die "Fashion-MNIST not found: apt-get install dataset-fashion-mnist"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_int8.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$RESULTS")"
log "building headtune and benchint8"
go build -o "$tmp/headtune" ./cmd/headtune
go build -o "$tmp/benchint8" ./scripts/benchint8
HT="$tmp/headtune"
DATA="$REPO/.deps/bench_int8/fashion-mnist-$TRAIN-$TEST-jpeg$SIZE"
log "Fashion-MNIST JPEGs in $DATA"
go run ./scripts/fashionmnist -src "$FMNIST" -out "$DATA" -train "$TRAIN" -test "$TEST" -format jpeg -size "$SIZE" 2>&1 | sed 's/^/  /' >&2

# ROW_PY prints one result row (JSON) from the files of one backbone's run:
# argv tmp backbone load-before load-after tune-layers [accuracy].
ROW_PY=$(cat <<'PY'
import json, sys
tmp, b, load0, load1, tune = sys.argv[1:6]
q = b + "-int8"
load = lambda p: json.load(open(f"{tmp}/{p}"))
qz = load("quantize.json")
row = {"backbone": b, "tune_layers": int(tune) if tune else 0, "load": [float(load0), float(load1)],
       "quantize": {"calibration": qz["calibration"], "report": qz["report"], "seconds": qz["seconds"],
                    "sensitivity": (qz.get("sensitivity") or [])[:8]},
       "speed": load("speed.json"), "accuracy": None}
if sys.argv[6:] == ["accuracy"]:
    row["accuracy"] = {}
    for m, tag in ((b, "float32"), (q, "int8")):
        for kind in ("linear", "mlp"):
            row["accuracy"][f"{tag}_{kind}"] = load(f"train-{m}-{kind}.json")["test"]["accuracy"]
print(json.dumps(row))
PY
)
raw="$tmp/raw.jsonl"
: >"$raw"
load() { cut -d' ' -f1 /proc/loadavg; }
for b in $BACKBONES; do
  load0=$(load)
  if [ "$PLAIN" = 1 ]; then
    arch=${b#tv-}
    onnx="$REPO/.deps/torchvision/$arch.onnx"
    if [ ! -f "$onnx" ]; then
      log "$b: export torchvision $arch (random weights)"
      "$PYTHON" scripts/export_torchvision.py --arch "$arch" --out "$onnx" >&2
    fi
    if [ ! -f "$HEADTUNE_HOME/models/$b/model.onnx" ]; then
      log "headtune models add $onnx --name $b --preset imagenet"
      "$HT" models add "$onnx" --name "$b" --preset imagenet --quiet >&2
    fi
  elif [ ! -f "$HEADTUNE_HOME/models/$b/model.onnx" ]; then
    tb=()
    if [ -n "$TARBALL_DIR" ]; then
      case $b in face-*) tb=(--tarball "$(ls "$TARBALL_DIR"/*face-api*.tgz | head -1)") ;; *) tb=(--tarball "$(ls "$TARBALL_DIR"/nsfwjs-*.tgz | head -1)") ;; esac
    fi
    log "headtune models pull $b ${tb[*]}"
    "$HT" models pull "$b" "${tb[@]}" --quiet >&2
  fi
  q="$b-int8"
  log "$b: quantize ($METHOD, $SAMPLES images of train/) $QUANTIZE_ARGS"
  # shellcheck disable=SC2086
  "$HT" models quantize "$b" --calibrate "$DATA/train" --samples "$SAMPLES" --seed "$SEED" --method "$METHOD" \
    --name "$q" --replace --threads "$THREADS" --json --quiet $QUANTIZE_ARGS >"$tmp/quantize.json"
  log "$b: speed (benchint8, $SPEED_N test images, $REPEATS rounds)"
  "$tmp/benchint8" -images "$DATA/test" -float "$b" -int8 "$q" -threads "$THREADS" -repeats "$REPEATS" -n "$SPEED_N" \
    -profile "$PROFILE_N" >"$tmp/speed.json"
  if [ "$PLAIN" = 1 ]; then
    # Random weights: accuracy would measure nothing.
    "$PYTHON" - "$tmp" "$b" "$load0" "$(load)" "" >>"$raw" <<<"$ROW_PY"
    for t in $PLAIN_TUNE; do
      [ "${t%%:*}" = "$arch" ] || continue
      k=${t#*:}
      log "$b: speed of the --tune-layers $k cut (benchint8 -tune-layers $k)"
      "$tmp/benchint8" -images "$DATA/test" -float "$b" -int8 "$q" -threads "$THREADS" -repeats "$REPEATS" -n "$SPEED_N" \
        -profile "$PROFILE_N" -tune-layers "$k" >"$tmp/speed.json"
      "$PYTHON" - "$tmp" "$b" "$load0" "$(load)" "$k" >>"$raw" <<<"$ROW_PY"
    done
    continue
  fi
  for m in "$b" "$q"; do
    log "$m: extract + train linear and MLP"
    cache="$tmp/cache-$m"
    "$HT" extract "$DATA" --model "$m" --cache "$cache" --threads "$THREADS" --json --quiet >"$tmp/extract-$m.json"
    for kind in linear mlp; do
      "$HT" train --cache "$cache" --kind "$kind" --seed "$SEED" --threads "$THREADS" --head "$tmp/$m-$kind.head" \
        --json --quiet >"$tmp/train-$m-$kind.json"
    done
  done
  "$PYTHON" - "$tmp" "$b" "$load0" "$(load)" "" accuracy >>"$raw" <<<"$ROW_PY"
done

table=$("$PYTHON" - "$raw" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
name = lambda r: r["backbone"] + (f" --tune-layers {r['tune_layers']}" if r.get("tune_layers") else "")
print("| backbone | inference img/s, 1 thread: float32 → int8 (×) | pipeline layout img/s (×, range) | extract end to end img/s (×, range) | linear probe float32 → int8 | MLP float32 → int8 | feature cosine mean (min) | size | load avg before, after |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    s, a = r["speed"], r["accuracy"]
    if a:
        pts = lambda k: f"{100*a['float32_'+k]:.1f}% → {100*a['int8_'+k]:.1f}% ({100*(a['int8_'+k]-a['float32_'+k]):+.1f})"
    else:
        pts = lambda k: "n/a (random weights)"
    print(f"| {name(r)} | {s['infer1_float_img_s']:.0f} → {s['infer1_int8_img_s']:.0f} ({s['infer1_speedup']:.2f}×) "
          f"| {s['inferpar_float_img_s']:.0f} → {s['inferpar_int8_img_s']:.0f} ({s['inferpar_speedup']:.2f}×, {s['inferpar_speedup_range']}) "
          f"| {s['e2e_float_img_s']:.0f} → {s['e2e_int8_img_s']:.0f} ({s['e2e_speedup']:.2f}×, {s['e2e_speedup_range']}) "
          f"| {pts('linear')} | {pts('mlp')} | {s['cosine_mean']:.4f} ({s['cosine_min']:.4f}) "
          f"| {s['float_size_bytes']/1e6:.1f} → {s['int8_size_bytes']/1e6:.1f} MB | {r['load'][0]:.1f}, {r['load'][1]:.1f} |")
if any(r["speed"].get("profile") for r in rows):
    print()
    print("| backbone | layer class | nodes float32 / int8 | float32 µs/img | int8 µs/img | int8 speed-up | where the time goes (int8) |")
    print("|---|---|---|---:|---:|---:|---|")
    for r in rows:
        p = r["speed"].get("profile")
        if not p:
            continue
        for c in p["rows"]:
            ops = sorted((c.get("int8_ops") or {}).items(), key=lambda kv: -kv[1])[:3]
            where = ", ".join(f"{op} {us:.0f}" for op, us in ops)
            x = f"{c['speedup']:.2f}×" if c["speedup"] else "–"
            print(f"| {name(r)} | {c['class']} | {c['float_nodes']} / {c['int8_nodes']} | {c['float_us']:.0f} | {c['int8_us']:.0f} | {x} | {where} |")
        print(f"| {name(r)} | **all kernels** ({r['speed']['profile_images']} images) | | **{p['float_us']:.0f}** | **{p['int8_us']:.0f}** "
              f"| **{p['speedup']:.2f}×** | bound if each class ran in its faster precision: {p['bound']:.2f}× |")
PY
)
{
  printf '# bench_int8.sh %s UTC, headtune %s, %s x%s cores, load average %s at the start, %s at the end, ONNX Runtime %s\n' "$STAMP" "$(git rev-parse --short HEAD)" \
    "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')" "$(nproc)" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$("$PYTHON" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["speed"]["ort"])' "$raw")"
  printf '# command: PLAIN=%s BACKBONES="%s" PLAIN_TUNE="%s" TRAIN=%s TEST=%s SIZE=%s SAMPLES=%s METHOD=%s SEED=%s THREADS=%s REPEATS=%s SPEED_N=%s PROFILE_N=%s QUANTIZE_ARGS="%s" scripts/bench_int8.sh\n' \
    "$PLAIN" "$BACKBONES" "$PLAIN_TUNE" "$TRAIN" "$TEST" "$SIZE" "$SAMPLES" "$METHOD" "$SEED" "$THREADS" "$REPEATS" "$SPEED_N" "$PROFILE_N" "$QUANTIZE_ARGS"
  sed 's/^/# /' "$raw"
  printf '\n%s\n' "$table"
} >"$RESULTS"
printf '%s\n' "$table"
log "written to $RESULTS"
