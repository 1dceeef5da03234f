#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a short time
# (FUZZTIME, default 4s each) so CI exercises the decoders and parsers with
# generated inputs beyond the committed corpus. Found crashers are written by
# `go test` under the package's testdata/fuzz and must be committed as
# regression cases.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-4s}"
total=0
for f in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
  pkg="./$(dirname "${f#./}")"
  for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    echo "fuzz: $pkg $name ($FUZZTIME)"
    go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" 2>&1 | tail -n 3
    total=$((total + 1))
  done
done
echo "fuzz: $total targets ran for $FUZZTIME each"
