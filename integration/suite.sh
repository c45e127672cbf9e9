#!/bin/sh
# Runs one test suite and ends with its count (see summary.sh).
# Usage: suite.sh LABEL COMMAND [ARGS...]
# The suite's tests write their skips to $HPCC_SKIP_LOG; the exit status
# is the suite's own.
set -eu
LABEL=${1:?usage: suite.sh LABEL COMMAND [ARGS...]}
shift
HERE=$(cd "$(dirname "$0")" && pwd)
LOGS=$(mktemp -d /tmp/hpcc-suite.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT
chmod 755 "$LOGS"
HPCC_SKIP_LOG=$LOGS/skips
: >"$HPCC_SKIP_LOG"
chmod 666 "$HPCC_SKIP_LOG"
export HPCC_SKIP_LOG
rc=0
{ "$@" 2>&1 || echo $? >"$LOGS/rc"; } | tee "$LOGS/out"
[ -f "$LOGS/rc" ] && rc=$(cat "$LOGS/rc")
sh "$HERE/summary.sh" "$LABEL" "$LOGS/out" "$HPCC_SKIP_LOG"
exit "$rc"
