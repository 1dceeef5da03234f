#!/usr/bin/env bash
# bench.sh: every benchmark behind README.md's figures, in one run, each
# against its baseline measured in the same run. Run it on a quiet machine:
# the figures are ratios, but other jobs on the cores still skew them.
#
#   scripts/bench.sh            all of them (about 20 minutes on 2 cores)
#   BENCH="extract decode" scripts/bench.sh   a subset
#
# Raw output goes to scripts/results/<name>-<UTC time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH:-extract decode backbones head peers cloud stream int8}"
stamp=$(date -u +%Y%m%d-%H%M%S)
mkdir -p scripts/results
go build -o bin/headtune ./cmd/headtune
./bin/headtune models pull --default --quiet

run() {
  local name=$1; shift
  local out="scripts/results/$name-$stamp.txt"
  echo "== $name: $*" | tee "$out"
  echo "# $(date -u) $(uname -m) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), headtune $(git rev-parse --short HEAD 2>/dev/null)" >> "$out"
  "$@" 2>&1 | tee -a "$out"
}

for b in $BENCH; do
  case "$b" in
    extract)
      # End-to-end extraction against decode-only and pre-decoded inference.
      [ -d .deps/bench_decode ] || REPEATS=1 ./scripts/bench_decode.sh >/dev/null
      go build -o bin/benchextract ./scripts/benchextract
      run extract ./bin/benchextract -images .deps/bench_decode -repeats 7
      run extract-fastjpeg ./bin/benchextract -images .deps/bench_decode -repeats 7 -fast-jpeg ;;
    decode)
      run decode env REPEATS=5 ./scripts/bench_decode.sh ;;
    backbones)
      run backbones ./scripts/bench_backbones.sh --train 1000 --test 500 --C "1" ;;
    head)
      # The head against scikit-learn and PyTorch on 12,000 real feature rows.
      d=.deps/bench_head; mkdir -p "$d"
      go run ./scripts/fashionmnist -out "$d/fm" -train 12000 -test 2000 2>/dev/null
      ./bin/headtune extract "$d/fm" --cache "$d/cache" --quiet
      ./bin/headtune cache export-npy --cache "$d/cache" -o "$d/npy" --val 0 --test 0
      run head ./scripts/bench_head.sh "$d/npy" --kinds linear,mlp ;;
    peers)
      run peers ./scripts/bench_peers.sh ;;
    cloud)
      # Object storage reads, sharding + sealing and merging against local
      # extraction (a fake S3 in the process on 127.0.0.1).
      go build -o bin/benchcloud ./scripts/benchcloud
      run cloud ./bin/benchcloud -repeats 5 ;;
    stream)
      # MLP training streamed under a 1 MiB budget against in memory.
      run stream go test ./job -run '^$' -bench TrainStreamed -benchtime 11x ;;
    int8)
      # float32 against `models quantize` int8, per registry backbone.
      run int8 env QUANTIZE_ARGS="--min-cosine 0.995" RESULTS="scripts/results/bench_int8-$stamp-table.txt" ./scripts/bench_int8.sh ;;
    *) echo "bench.sh: unknown benchmark $b" >&2; exit 2 ;;
  esac
done
