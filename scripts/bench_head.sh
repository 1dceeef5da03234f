#!/bin/sh
# Benchmark headtune's heads against scikit-learn and PyTorch on exported
# features. Usage: scripts/bench_head.sh DIR [--synthetic] [--kinds linear,mlp]
# See scripts/bench_head.py for details.
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 scripts/bench_head.py "$@"
