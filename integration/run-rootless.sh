#!/bin/sh
# Runs the conformance tests as an unprivileged user (the rootless case).
#
# usage: run-rootless.sh USER HPCC_BIN "CARGO_TEST_CMD" [LABEL]
#   USER            account to run as when invoked as root (created if missing)
#   HPCC_BIN        absolute path of the hpcc binary under test
#   CARGO_TEST_CMD  e.g. "cargo test --release --target x86_64-unknown-linux-musl -p runtime-tests"
#                   (--test NAME options choose the suites)
#   LABEL           what the closing count calls the run (default: runtime-tests)
# HPCC_IMAGE_ROOT, when set, reaches the tests too.
#
# As an ordinary user this just runs CARGO_TEST_CMD. As root it builds the
# test executables, copies them and HPCC_BIN into a fresh folder the user can
# read, and runs each one under setpriv as USER with a clean environment.
set -eu

if [ "$#" -lt 3 ] || [ "$#" -gt 4 ]; then
    echo "usage: $0 USER HPCC_BIN \"CARGO_TEST_CMD\" [LABEL]" >&2
    exit 2
fi
TEST_USER=$1
BIN=$2
CARGO_TEST_CMD=$3
LABEL=${4:-runtime-tests}

case "$BIN" in
/*) ;;
*) echo "run-rootless.sh: HPCC_BIN must be an absolute path, got $BIN" >&2; exit 2 ;;
esac
if [ ! -x "$BIN" ]; then
    echo "run-rootless.sh: $BIN is not an executable file" >&2
    exit 2
fi

HERE=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" -ne 0 ]; then
    echo "=== rootless conformance suite: running as $(id -un) (uid $(id -u)) ==="
    # CARGO_TEST_CMD is a command line: word splitting is intended.
    # shellcheck disable=SC2086
    HPCC_BIN=$BIN exec sh "$HERE/suite.sh" "$LABEL as $(id -un)" $CARGO_TEST_CMD -- --test-threads=2
fi

# --- as root ------------------------------------------------------------------

if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    echo "run-rootless.sh: creating user $TEST_USER"
    useradd -m "$TEST_USER"
fi

# Subordinate id ranges (useradd normally adds them; older setups may not).
add_subid() { # FILE
    touch "$1"
    if ! grep -q "^$TEST_USER:" "$1"; then
        start=$(awk -F: 'BEGIN { m = 100000 } NF >= 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$1")
        echo "$TEST_USER:$start:65536" >>"$1"
        echo "run-rootless.sh: added $TEST_USER:$start:65536 to $1"
    fi
}
add_subid /etc/subuid
add_subid /etc/subgid

USER_UID=$(id -u "$TEST_USER")
USER_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
[ -n "$USER_HOME" ] || USER_HOME=/

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
chmod 755 "$WORK"

# Build as root (shares target/ with the other suites) and collect the test
# executables from cargo's JSON messages.
echo "run-rootless.sh: building test executables"
# shellcheck disable=SC2086
$CARGO_TEST_CMD --no-run --message-format=json >"$WORK/build.json"
grep '"reason":"compiler-artifact"' "$WORK/build.json" |
    grep -E '"profile":\{[^}]*"test":true' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' >"$WORK/exes"
if [ ! -s "$WORK/exes" ]; then
    echo "run-rootless.sh: no test executables found in the output of: $CARGO_TEST_CMD --no-run" >&2
    exit 1
fi

mkdir "$WORK/bin" "$WORK/tmp" "$WORK/xdg"
chmod 755 "$WORK/bin"
cp "$BIN" "$WORK/bin/hpcc"
chmod 755 "$WORK/bin/hpcc"
while IFS= read -r exe; do
    cp "$exe" "$WORK/bin/"
    chmod 755 "$WORK/bin/$(basename "$exe")"
done <"$WORK/exes"
# The MPI test image must be readable by the test user wherever the clone is.
if [ -n "${HPCC_MPI_IMAGE:-}" ] && [ -f "$HPCC_MPI_IMAGE" ]; then
    cp "$HPCC_MPI_IMAGE" "$WORK/bin/mpi.tar"
    chmod 644 "$WORK/bin/mpi.tar"
    HPCC_MPI_IMAGE=$WORK/bin/mpi.tar
fi
if [ -n "${HPCC_MPICH_IMAGE:-}" ] && [ -f "$HPCC_MPICH_IMAGE" ]; then
    cp "$HPCC_MPICH_IMAGE" "$WORK/bin/mpich.tar"
    chmod 644 "$WORK/bin/mpich.tar"
    HPCC_MPICH_IMAGE=$WORK/bin/mpich.tar
fi
chown "$TEST_USER:" "$WORK/tmp" "$WORK/xdg"
chmod 700 "$WORK/tmp" "$WORK/xdg"

echo "=== rootless conformance suite: running as $TEST_USER (uid $USER_UID) ==="
# Each test's output also goes to one log, and its skips to another, for
# the count at the end.
: >"$WORK/out.log"
: >"$WORK/skips"
chmod 666 "$WORK/skips"
failed=""
while IFS= read -r exe; do
    name=$(basename "$exe")
    echo "--- $name (as $TEST_USER)"
    # Debian's PATH for an ordinary user: no /sbin, no /usr/sbin.
    # The pipe into tee hides the test's status: it goes through a file.
    (rc=0; cd "$WORK/tmp" && setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
        env -i HOME="$USER_HOME" USER="$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin \
        XDG_RUNTIME_DIR="$WORK/xdg" TMPDIR="$WORK/tmp" HPCC_BIN="$WORK/bin/hpcc" \
        HPCC_SKIP_LOG="$WORK/skips" ${HPCC_IMAGE_ROOT:+HPCC_IMAGE_ROOT=$HPCC_IMAGE_ROOT} \
        RUST_BACKTRACE="${RUST_BACKTRACE:-0}" ${HPCC_REQUIRE_CLIENTS:+HPCC_REQUIRE_CLIENTS=$HPCC_REQUIRE_CLIENTS} \
        ${HPCC_MPI_IMAGE:+HPCC_MPI_IMAGE=$HPCC_MPI_IMAGE} ${HPCC_MPICH_IMAGE:+HPCC_MPICH_IMAGE=$HPCC_MPICH_IMAGE} \
        "$WORK/bin/$name" --test-threads=2 2>&1 || rc=$?; echo "$rc" >"$WORK/rc") </dev/null | tee -a "$WORK/out.log"
    [ "$(cat "$WORK/rc")" = 0 ] || failed="$failed $name"
done <"$WORK/exes"
sh "$HERE/summary.sh" "$LABEL as $TEST_USER" "$WORK/out.log" "$WORK/skips"

if [ -n "$failed" ]; then
    echo "=== rootless conformance suite FAILED (as $TEST_USER):$failed ===" >&2
    exit 1
fi
echo "=== rootless conformance suite passed (as $TEST_USER) ==="
