#!/usr/bin/env bash
# The client suites: real podman, containerd, Docker and Slurm against the
# hpcc binary just built. As root it runs the root suites, then the
# rootless ones (podman, Slurm) as TEST_USER through setpriv.
# Usage: run.sh HPCC_BIN [SUITE.bats ...]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:?usage: run.sh HPCC_BIN [SUITE.bats ...]}
shift
TEST_USER=${TEST_USER:-hpcctest}
command -v bats >/dev/null || { echo "run.sh: bats is missing (apt-get install bats)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/hpcc-clients.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
# A copy every user can run, as the daemons and the test user need.
install -m 0755 "$BIN" "$WORK/hpcc"
export HPCC=$WORK/hpcc
export HPCC_IMAGE=$WORK/busybox.tar HPCC_IMAGE_TAG=hpcc-busybox:latest
sh "$HERE/mkimage.sh" "$HPCC_IMAGE" "$HPCC_IMAGE_TAG"
export HPCC_MPI_IMAGE=${HPCC_MPI_IMAGE:-}
if [ -n "$HPCC_MPI_IMAGE" ] && [ -f "$HPCC_MPI_IMAGE" ]; then
    install -m 0644 "$HPCC_MPI_IMAGE" "$WORK/mpi.tar"
    HPCC_MPI_IMAGE=$WORK/mpi.tar
fi

if [ "$#" -gt 0 ]; then
    suites=()
    for s in "$@"; do suites+=("$(realpath "$s")"); done
else
    suites=("$HERE"/*.bats)
fi

failed=()
# Every bats line also goes to one file, to count the results at the end.
TAP=$WORK/results.tap
: >"$TAP"
echo "=== client suites as $(id -un) ==="
for s in "${suites[@]}"; do
    bats --print-output-on-failure "$s" | tee -a "$TAP" || failed+=("$(basename "$s") as $(id -un)")
done

# Rootless is the main case: the suites that make sense for a user run again.
if [ "$(id -u)" = 0 ]; then
    id -u "$TEST_USER" >/dev/null 2>&1 || useradd -m "$TEST_USER"
    home=$(getent passwd "$TEST_USER" | cut -d: -f6)
    mkdir -m 700 "$WORK/tmp" && chown "$TEST_USER:" "$WORK/tmp"
    # Slurm's daemons need root: one cluster for the user's suites, and
    # one of three simulated nodes for the multi-node suite.
    cleanup() {
        for c in "$WORK/slurm" "$WORK/multinode"; do
            [ -d "$c" ] && sh "$HERE/../slurm/stop-cluster.sh" "$c"
        done
        rm -rf "$WORK"
    }
    trap cleanup EXIT
    if command -v slurmd >/dev/null && printf '%s\n' "${suites[@]}" | grep -q 'slurm.bats$'; then
        mkdir "$WORK/slurm"
        sh "$HERE/../slurm/start-cluster.sh" "$WORK/slurm" >/dev/null
        export SLURM_TEST_DIR=$WORK/slurm
    fi
    if command -v slurmd >/dev/null && printf '%s\n' "${suites[@]}" | grep -q 'multinode.bats$'; then
        mkdir "$WORK/multinode"
        # WORK holds hpcc, the images and the suites: shared with every node.
        sh "$HERE/../slurm/start-cluster.sh" "$WORK/multinode" --nodes 3 --share "$WORK" >/dev/null
        export MULTINODE_TEST_DIR=$WORK/multinode
    fi
    # The clone may sit where the user cannot read (CI clones as root):
    # the user runs copies of the suites.
    mkdir -p "$WORK/suites/clients"
    cp -r "$HERE/../slurm" "$HERE/../cluster" "$WORK/suites/"
    cp "$HERE"/lib.bash "$HERE"/*.bats "$HERE"/*.py "$WORK/suites/clients/"
    chmod -R a+rX "$WORK/suites"
    echo "=== client suites as $TEST_USER ==="
    for s in "${suites[@]}"; do
        grep -q '^# rootless: yes' "$s" || continue
        s=$WORK/suites/clients/$(basename "$s")
        (cd "$WORK/tmp" && setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --init-groups \
            env -i HOME="$home" USER="$TEST_USER" PATH=/usr/local/bin:/usr/bin:/bin TMPDIR="$WORK/tmp" \
            HPCC="$HPCC" HPCC_IMAGE="$HPCC_IMAGE" HPCC_IMAGE_TAG="$HPCC_IMAGE_TAG" \
            HPCC_MPI_IMAGE="$HPCC_MPI_IMAGE" HPCC_REQUIRE_CLIENTS="${HPCC_REQUIRE_CLIENTS:-0}" \
            ${SLURM_TEST_DIR:+SLURM_TEST_DIR=$SLURM_TEST_DIR} \
            ${MULTINODE_TEST_DIR:+MULTINODE_TEST_DIR=$MULTINODE_TEST_DIR} \
            bats --print-output-on-failure "$s") </dev/null | tee -a "$TAP" || failed+=("$(basename "$s") as $TEST_USER")
    done
    # The user's cluster must end as cleanly as root's (multinode.bats
    # checks that one itself).
    if [ -n "${MULTINODE_TEST_DIR:-}" ]; then
        sh "$HERE/../slurm/stop-cluster.sh" "$MULTINODE_TEST_DIR"
        if sh "$HERE/../slurm/check-stopped.sh" "$MULTINODE_TEST_DIR"; then
            echo "ok - the rootless run's 3-node cluster stopped leaving nothing behind" | tee -a "$TAP"
        else
            echo "not ok - the rootless run's 3-node cluster left something behind" | tee -a "$TAP"
            failed+=("multinode cluster teardown")
        fi
    fi
fi

passed=$(grep -c '^ok ' "$TAP" || true)
skipped=$(grep -c '^ok .* # skip' "$TAP" || true)
if grep -q '^ok .* # skip' "$TAP"; then
    echo "client suites: skipped tests and why:"
    grep '^ok .* # skip' "$TAP" | sed 's/^ok [0-9]* /  skipped: /; s/ # skip/:/'
fi
line="client suites: $((passed - skipped)) passed, $(grep -c '^not ok ' "$TAP" || true) failed, $skipped skipped"
echo "$line"
if [ -n "${HPCC_SUMMARY_FILE:-}" ]; then echo "$line" >>"$HPCC_SUMMARY_FILE"; fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo "=== client suites FAILED: ${failed[*]} ===" >&2
    exit 1
fi
echo "=== client suites passed ==="
