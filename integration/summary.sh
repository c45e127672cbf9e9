#!/bin/sh
# Counts one suite's results from its output and its skip log, and prints
# "LABEL: N passed, N failed, N skipped" with the reason of every skip.
# Usage: summary.sh LABEL OUTPUT_LOG SKIP_LOG
#   OUTPUT_LOG: what the suite printed (libtest's "test result:" lines);
#   SKIP_LOG: one "TEST<TAB>REASON" line per skipped test (written by
#   runtime_tests::skip). libtest reports a skipped test as "ok", so each
#   one is taken off the passed count: a skip is never a pass.
# With HPCC_SUMMARY_FILE set, the line is also appended there, so that
# `make test` can repeat every suite's count at its end.
set -eu
LABEL=${1:?usage: summary.sh LABEL OUTPUT_LOG SKIP_LOG}
OUT=${2:?usage: summary.sh LABEL OUTPUT_LOG SKIP_LOG}
SKIPS=${3:?usage: summary.sh LABEL OUTPUT_LOG SKIP_LOG}
counts=$(awk '/^test result: / {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) g += $i
        }
    } END { printf "%d %d %d", p, f, g }' "$OUT")
set -- $counts
passed=$1 failed=$2 ignored=$3
skipped=0
[ -f "$SKIPS" ] && skipped=$(grep -c . "$SKIPS" || true)
passed=$((passed - skipped))
skipped=$((skipped + ignored))
if [ -f "$SKIPS" ] && [ -s "$SKIPS" ]; then
    echo "$LABEL: skipped tests and why:"
    sort -u "$SKIPS" | sed 's/\t/: /; s/^/  skipped: /'
fi
line="$LABEL: $passed passed, $failed failed, $skipped skipped"
echo "$line"
if [ -n "${HPCC_SUMMARY_FILE:-}" ]; then
    echo "$line" >>"$HPCC_SUMMARY_FILE"
fi
