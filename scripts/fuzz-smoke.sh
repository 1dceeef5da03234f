#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for a short time
# (FUZZTIME, default 4s each) so CI exercises the decoders and parsers with
# generated inputs beyond the committed corpus. A crasher is written by
# `go test` under the package's testdata/fuzz: commit it as a regression case
# with the fix.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-4s}"
total=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for f in $(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do
  pkg="./$(dirname "${f#./}")"
  for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    total=$((total + 1))
    ok=0
    for try in 1 2; do
      if go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s >"$log" 2>&1; then
        ok=1; break
      fi
      # Go's fuzzing engine sometimes reports "context deadline exceeded"
      # when -fuzztime ends while a worker is busy (no failing input is
      # written): that is the engine, not a crasher; run the target again.
      if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
        echo "fuzz: $pkg $name: fuzzing engine timed out (no failing input), again"
        continue
      fi
      break
    done
    if [ "$ok" = 1 ]; then
      echo "fuzz: ok   $pkg $name ($FUZZTIME, $(grep -o 'execs: [0-9]*' "$log" | tail -n 1))"
    else
      failed=$((failed + 1))
      echo "fuzz: FAIL $pkg $name"
      cat "$log"
    fi
  done
done
echo "fuzz: $((total - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
