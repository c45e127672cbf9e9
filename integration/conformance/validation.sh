#!/bin/bash
# Runs the OCI runtime-tools validation suite (validation/*/*.t, built
# outside this repository; see runtime-tests/CONFORMANCE.md for how)
# against one runtime, as root, and prints one line per test file and a
# closing count. None of the suite's code is in this repository: this
# only starts its executables and counts their TAP lines.
#
# Usage: validation.sh SUITE_DIR RUNTIME [REGEX]
#   SUITE_DIR  holds validation/, runtimetest and rootfs-amd64.tar.gz (the
#              .t files open the last two relative to their working dir)
#   RUNTIME    the runtime binary under test (an absolute path)
#   REGEX      only the files whose name matches
# A file is clean when it exits 0 and prints no "not ok" line. Each runs
# with a TMPDIR of its own and a time limit (TIMEOUT, 120 s); what it
# leaves (containers, mounts) is removed before the next starts.
#
# For peers that need help to run the suite at all (crun 1.8.1 rejects the
# suite's ociVersion 1.3.0 and refuses hybrid cgroups), two settings put
# a wrapper in front of RUNTIME:
#   PIN_OCI_VERSION=1.1.0  rewrites each bundle's "ociVersion": "1.3.0"
#   HIDE_UNIFIED=1         runs it in a mount namespace without
#                          /sys/fs/cgroup/unified (as ENVIRONMENT.md says)
set -u
SUITE=${1:?usage: validation.sh SUITE_DIR RUNTIME [REGEX]}
RUNTIME=${2:?usage: validation.sh SUITE_DIR RUNTIME [REGEX]}
ONLY=${3:-}
LIMIT=${TIMEOUT:-120}
SUITE=$(cd "$SUITE" && pwd) || exit 2
for f in "$SUITE/runtimetest" "$SUITE/rootfs-amd64.tar.gz" "$RUNTIME"; do
    [ -e "$f" ] || { echo "validation.sh: $f is missing" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "validation.sh: the suite needs root" >&2; exit 2; }
LOGS=${LOGDIR:-$(mktemp -d /tmp/validation-logs.XXXXXX)}
mkdir -p "$LOGS"
NAME=$(basename "$RUNTIME")
if [ -n "${PIN_OCI_VERSION:-}" ] || [ -n "${HIDE_UNIFIED:-}" ]; then
    WRAP=$LOGS/$NAME
    {
        echo '#!/bin/sh'
        echo 'bundle=. prev='
        echo 'for a in "$@"; do case "$prev" in --bundle|-b) bundle=$a ;; esac; case "$a" in --bundle=*) bundle=${a#--bundle=} ;; esac; prev=$a; done'
        [ -z "${PIN_OCI_VERSION:-}" ] ||
            echo "[ ! -f \"\$bundle/config.json\" ] || sed -i -E 's/\"ociVersion\": *\"1\\.3\\.0\"/\"ociVersion\":\"$PIN_OCI_VERSION\"/' \"\$bundle/config.json\""
        if [ -n "${HIDE_UNIFIED:-}" ]; then
            echo "exec unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec \"\$0\" \"\$@\"' '$RUNTIME' \"\$@\""
        else
            echo "exec '$RUNTIME' \"\$@\""
        fi
    } >"$WRAP"
    chmod 755 "$WRAP"
    RUNTIME=$WRAP
fi
export RUNTIME

# Containers a timed-out file left, then mounts under its TMPDIR
# (deepest first), then the folder.
clean_up() { # TMPDIR
    for id in $(timeout 10 "$RUNTIME" list -q 2>/dev/null); do
        if timeout 10 "$RUNTIME" state "$id" 2>/dev/null | grep -qF "$1"; then
            timeout 10 "$RUNTIME" delete --force "$id" >/dev/null 2>&1
        fi
    done
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "$1"
}

echo "# runtime $RUNTIME, suite $SUITE, logs $LOGS"
files=0 clean=0 notoks=0
cd "$SUITE" || exit 2
for t in validation/*/*.t; do
    name=$(basename "$t" .t)
    if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then continue; fi
    files=$((files + 1))
    tmp=$(mktemp -d /tmp/validation.XXXXXX)
    TMPDIR=$tmp timeout -k 10 "$LIMIT" "./$t" >"$LOGS/$name.tap" 2>"$LOGS/$name.err" </dev/null
    rc=$?
    clean_up "$tmp"
    # Top-level TAP lines only: runtimetest's own output is embedded in
    # YAML blocks as escaped strings, never at the start of a line.
    ok=$(grep -cE '^ok( |$)' "$LOGS/$name.tap")
    bad=$(grep -cE '^not ok( |$)' "$LOGS/$name.tap")
    notoks=$((notoks + bad))
    if [ "$rc" = 0 ] && [ "$bad" = 0 ]; then
        clean=$((clean + 1)) verdict=clean
    else
        verdict="exit $rc"
        [ "$rc" = 124 ] && verdict="timed out"
    fi
    printf '%-34s %-10s ok %3s, failed %3s\n' "$name" "$verdict" "$ok" "$bad"
    grep -E '^not ok( |$)' "$LOGS/$name.tap" | sed 's/^not ok/    failed:/'
done
echo "validation: $clean of $files files clean, $notoks failed assertions ($NAME)"
