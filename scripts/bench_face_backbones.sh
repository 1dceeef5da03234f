#!/usr/bin/env bash
# Extraction speed of the face backbones on the same face crops: fresh
# cache per run, rounds interleaved, median of ROUNDS (default 3).
# usage: scripts/bench_face_backbones.sh DATASET [MODEL...]
# (the README's face-backbone table: DATASET = 210 jittered BlazeFace crops
# of face-api's demo/sample1-6.jpg, see the README for how they were made)
set -euo pipefail
ds=${1:?dataset folder}; shift
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(face-expression emotion mobilefacenet faceres)
rounds=${ROUNDS:-3}
bin=${HEADTUNE:-./bin/headtune}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
  for m in "${models[@]}"; do
    rm -rf "$tmp/cache"
    "$bin" --cache "$tmp/cache" --json --quiet extract "$ds" --model "$m" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(sys.argv[1], d["feature_dim"], d["computed"], "%.1f" % d["computed_images_per_second"])' "$m"
  done
done | python3 -c '
import sys, statistics
runs = {}
for line in sys.stdin:
    m, dim, n, rate = line.split()
    runs.setdefault(m, (dim, n, []))[2].append(float(rate))
for m, (dim, n, r) in runs.items():
    med = statistics.median(r)
    print(f"{m:16s} dim {dim:>5s}  {n} images  median {med:.1f} img/s ({1000/med:.1f} ms/image)  runs: {r}")
'
