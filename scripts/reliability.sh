#!/usr/bin/env bash
# Reliability runs of the e2e suite, with figures.
#
#   scripts/reliability.sh [SEED] [KILLS]     crash/resume test: SIGKILL extract
#                                             KILLS times (default 50) and
#                                             `predict --resume` KILLS/2 times at
#                                             random moments drawn from SEED
#                                             (default: the current time), then
#                                             check cache, features, predictions
#   HEADTUNE_LONG=1 scripts/reliability.sh    also the resource test: peak RSS and
#                                             open file descriptors of extract and
#                                             predict on 1k, 10k and 100k tiny
#                                             images (slow: several minutes)
#
# Prints one RELIABILITY/RESOURCE line per figure and the wall time. The exit
# status is go test's: non-zero when any check failed (the seed is printed so
# the run can be repeated exactly).
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-$(date +%s)}"
kills="${2:-50}"
echo "reliability: seed $seed, $kills extract kills"
start=$(date +%s%N)
tests='^TestCrashResume$'
timeout=10m
if [ "${HEADTUNE_LONG:-}" = 1 ]; then
  tests='^(TestCrashResume|TestResourceUse|TestResourceUseLong)$'
  timeout=60m
fi
set +e
HEADTUNE_CRASH_SEED="$seed" HEADTUNE_CRASH_KILLS="$kills" \
  go test ./e2e -run "$tests" -count=1 -v -timeout "$timeout" 2>&1 |
  grep -E '^(RELIABILITY|RESOURCE)|^(---|ok|FAIL|panic)|crash_test.go|resource_test.go|Error'
rc=${PIPESTATUS[0]}
set -e
end=$(date +%s%N)
printf 'reliability: seed %s: %s in %.1f s\n' "$seed" "$([ "$rc" = 0 ] && echo PASS || echo FAIL)" "$(awk -v a="$start" -v b="$end" 'BEGIN{print (b-a)/1e9}')"
exit "$rc"
