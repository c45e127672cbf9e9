# Shared by the client suites (*.bats): start the real daemons from
# Debian's packages with private state under one work directory, stop them
# by PID, unmount what they mounted, and run clients with a bounded time.
#
# The runner (run.sh) exports:
#   HPCC        the hpcc binary under test (absolute, readable by the user)
#   HPCC_IMAGE  a docker-archive busybox image (integration/clients/mkimage.sh)
#   HPCC_IMAGE_TAG  its repo:tag
#   HPCC_REQUIRE_CLIENTS=1  in CI: a missing client fails instead of skipping

# `run -N` (expected exit status) needs it.
bats_require_minimum_version 1.5.0

# Every client call gets this long before the test fails as hung.
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-90}

# The test's work directory, made once per .bats file.
work_dir() {
    [ -n "${SUITE_WORK:-}" ] || {
        echo "SUITE_WORK is not set (setup_file must call make_work_dir)" >&2
        return 1
    }
    echo "$SUITE_WORK"
}

# Directly in /tmp: rootless podman refuses a runroot longer than 50 bytes.
make_work_dir() { # NAME
    SUITE_WORK=$(mktemp -d "/tmp/hpcc-$1.XXXXXX")
    chmod 755 "$SUITE_WORK"
    export SUITE_WORK
}

# A client that is not installed on this platform is skipped, saying so;
# under CI (HPCC_REQUIRE_CLIENTS=1) it is a failure, because .ci/run
# installs every one of them.
require_cmd() { # CMD [PACKAGE]
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "${HPCC_REQUIRE_CLIENTS:-0}" = 1 ]; then
        echo "required client '$1' is missing (apt-get install ${2:-$1})" >&2
        return 1
    fi
    skip "$1 is not installed here (apt-get install ${2:-$1})"
}

# bats's `run` with a time limit: a client that hangs fails its test.
tmo() {
    timeout --kill-after=10 "$CLIENT_TIMEOUT" "$@"
}

# Runs CMD... on a pseudo-terminal (what `-t` needs from its caller) and
# strips the carriage returns a terminal adds.
on_pty() { # CMD-STRING
    local out rc
    out=$(timeout --kill-after=10 "$CLIENT_TIMEOUT" script -qec "$1" /dev/null </dev/null)
    rc=$?
    printf '%s\n' "$out" | tr -d '\r'
    return $rc
}

# Polls CMD until it succeeds, at most SECONDS.
wait_for() { # SECONDS CMD...
    local limit=$1 i=0
    shift
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -le $((limit * 10)) ] || return 1
        sleep 0.1
    done
}

# Starts a daemon in the background with its output in LOG and its PID in
# PIDFILE; our own record, so teardown never kills by name.
start_daemon() { # PIDFILE LOG CMD...
    local pidfile=$1 log=$2
    shift 2
    # fd 3 is bats's: a daemon holding it would keep bats waiting forever.
    "$@" >"$log" 2>&1 3>&- </dev/null &
    echo $! >"$pidfile"
}

# TERM, then KILL after a bounded wait; quiet when it is already gone.
stop_pid() { # PID [SECONDS]
    local pid=$1 limit=${2:-20} i=0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt $((limit * 10)) ]; then
            kill -KILL "$pid" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    # Our child: reap it so no zombie is left.
    wait "$pid" 2>/dev/null || true
}

stop_pidfile() { # PIDFILE [SECONDS]
    [ -f "$1" ] || return 0
    stop_pid "$(cat "$1")" "${2:-20}"
    rm -f "$1"
}

# Kills what a daemon left behind that still names our work directory in
# its command line (containerd shims, conmon), by PID.
kill_leftovers() { # DIR
    local pid
    for pid in $(pgrep -f -- "$1" 2>/dev/null); do
        [ "$pid" = "$$" ] && continue
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# Unmounts everything at or below DIR, deepest first.
unmount_under() { # DIR
    local m
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts |
        sort -r | while IFS= read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

# The MPI test image (make mpi-image) must be there: a skip outside CI, a
# failure under it.
require_mpi_image() {
    [ -f "${HPCC_MPI_IMAGE:-}" ] && return 0
    [ "${HPCC_REQUIRE_CLIENTS:-0}" != 1 ] || {
        echo "HPCC_MPI_IMAGE is not built (make mpi-image, as root)" >&2
        return 1
    }
    skip "the MPI test image is not built (make mpi-image, as root)"
}

# The Slurm cluster a suite runs against, recorded in SUITE_WORK/cluster-dir:
# root starts one of its own in SUITE_WORK/cluster (start-cluster.sh with
# ARGS); a user takes the one run.sh started as root, named by the
# variable RUNNER_VAR. Slurm's daemons need root, so a user without one
# skips.
start_or_use_cluster() { # RUNNER_VAR [START-CLUSTER ARGS...]
    local runner=${!1:-} cluster
    shift
    if [ "$(id -u)" = 0 ]; then
        cluster=$SUITE_WORK/cluster
        mkdir "$cluster"
        sh "$BATS_TEST_DIRNAME/../slurm/start-cluster.sh" "$cluster" "$@" >/dev/null
    elif [ -n "$runner" ] && [ -f "$runner/env" ]; then
        cluster=$runner
    else
        skip "a Slurm cluster needs root to start; run.sh starts one for the rootless run"
    fi
    echo "$cluster" >"$SUITE_WORK/cluster-dir"
}

# Stops the cluster start_or_use_cluster started (never run.sh's).
stop_own_cluster() {
    if [ "$(id -u)" = 0 ] && [ -d "$SUITE_WORK/cluster" ]; then
        sh "$BATS_TEST_DIRNAME/../slurm/stop-cluster.sh" "$SUITE_WORK/cluster"
    fi
}

# Everything a suite made: daemons are stopped by the caller first.
remove_work_dir() {
    [ -n "${SUITE_WORK:-}" ] && [ -d "$SUITE_WORK" ] || return 0
    kill_leftovers "$SUITE_WORK"
    unmount_under "$SUITE_WORK"
    chmod -R u+rwX "$SUITE_WORK" 2>/dev/null || true
    rm -rf "$SUITE_WORK"
}

# Fails the test with what was expected and what came.
assert_contains() { # HAYSTACK NEEDLE
    case "$1" in
    *"$2"*) return 0 ;;
    esac
    printf 'expected to find: %s\nin: %s\n' "$2" "$1" >&2
    return 1
}

assert_not_contains() { # HAYSTACK NEEDLE
    case "$1" in
    *"$2"*) printf 'expected no: %s\nin: %s\n' "$2" "$1" >&2; return 1 ;;
    esac
}

assert_gone() { # PID
    kill -0 "$1" 2>/dev/null || return 0
    echo "process $1 is still there: $(tr '\0' ' ' </proc/"$1"/cmdline 2>/dev/null)" >&2
    return 1
}

assert_eq() { # GOT WANT [WHAT]
    [ "$1" = "$2" ] && return 0
    printf '%s: got %q, want %q\n' "${3:-value}" "$1" "$2" >&2
    return 1
}

# ---- containerd -------------------------------------------------------------

# containerd with its root, state and sockets under WORK; the CRI plugin off
# (no kubelet here). Exports CTR_SOCK.
start_containerd() { # WORK
    local w=$1
    mkdir -p "$w/containerd"
    cat >"$w/containerd/config.toml" <<EOF
version = 2
root = "$w/containerd/root"
state = "$w/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$w/containerd/containerd.sock"
[ttrpc]
  address = "$w/containerd/containerd.sock.ttrpc"
[debug]
  address = "$w/containerd/debug.sock"
EOF
    start_daemon "$w/containerd/pid" "$w/containerd/log" containerd --config "$w/containerd/config.toml"
    CTR_SOCK=$w/containerd/containerd.sock
    export CTR_SOCK
    if ! wait_for 30 ctr -a "$CTR_SOCK" version; then
        echo "containerd did not start; its log ends:" >&2
        tail -20 "$w/containerd/log" >&2
        return 1
    fi
}

stop_containerd() { # WORK
    stop_pidfile "$1/containerd/pid" 20
}

# ---- dockerd ----------------------------------------------------------------

# Docker 20.10's client; /usr/local/bin/docker, when there, is a newer one.
docker_client() {
    if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi
}

# dockerd with no networking of its own (no iptables, no bridge), its data
# under WORK, our containerd, and hpcc registered as the runtime "hpcc".
# Exports DOCKER_HOST.
start_dockerd() { # WORK
    local w=$1
    mkdir -p "$w/docker"
    start_daemon "$w/docker/launcher.pid" "$w/docker/log" dockerd \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
        --data-root "$w/docker/data" --exec-root "$w/docker/exec" --pidfile "$w/docker/pid" \
        -H "unix://$w/docker/docker.sock" --containerd "$CTR_SOCK" \
        --add-runtime "hpcc=$HPCC" --default-ulimit nofile=20000:20000
    DOCKER_HOST=unix://$w/docker/docker.sock
    export DOCKER_HOST
    if ! wait_for 60 "$(docker_client)" version; then
        echo "dockerd did not start; its log ends:" >&2
        tail -20 "$w/docker/log" >&2
        return 1
    fi
}

stop_dockerd() { # WORK
    stop_pidfile "$1/docker/launcher.pid" 30
}

# ---- podman -----------------------------------------------------------------

# A containers.conf that registers hpcc, with the ulimits this machine can
# apply and no network (no netavark/slirp setup needed). The same snippet
# is in the README.
write_containers_conf() { # FILE
    cat >"$1" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"

[engine]
runtime_supports_json = ["crun", "runc", "kata", "krun", "hpcc"]

[engine.runtimes]
hpcc = ["$HPCC"]
EOF
}

# podman with every piece of its state under WORK/podman.
podman_setup() { # WORK
    local w=$1/podman
    mkdir -p "$w/tmp"
    write_containers_conf "$w/containers.conf"
    export CONTAINERS_CONF=$w/containers.conf
    if [ "$(id -u)" != 0 ]; then
        mkdir -p -m 700 "$w/xdg"
        export XDG_RUNTIME_DIR=$w/xdg
    fi
    PODMAN=(podman --root "$w/storage" --runroot "$w/run" --tmpdir "$w/tmp"
        --storage-driver overlay --events-backend file --cgroup-manager cgroupfs --runtime hpcc)
}

# Rootless podman keeps `catatonit -P` alive to hold its user namespace.
podman_teardown() { # WORK
    local w=$1/podman
    [ -n "${PODMAN:-}" ] && "${PODMAN[@]}" rm -a -f -t 0 >/dev/null 2>&1
    local pidfile
    for pidfile in "$w/xdg/libpod/tmp/pause.pid" "$w/tmp/pause.pid"; do
        [ -f "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null
    done
    return 0
}
