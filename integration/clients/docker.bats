#!/usr/bin/env bats
# Docker 20.10 with hpcc registered as a runtime (`--add-runtime`, the same
# as daemon.json's "runtimes"), over containerd and its runc shim. Needs
# root: dockerd is a root daemon.

load lib

setup_file() {
    [ "$(id -u)" = 0 ] || skip "dockerd needs root"
    require_cmd dockerd docker.io
    require_cmd containerd containerd
    make_work_dir docker
    start_containerd "$SUITE_WORK"
    start_dockerd "$SUITE_WORK"
    tmo "$(docker_client)" load -i "$HPCC_IMAGE" >/dev/null
}

teardown_file() {
    [ -n "${SUITE_WORK:-}" ] || return 0
    tmo "$(docker_client)" rm -f $("$(docker_client)" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    stop_dockerd "$SUITE_WORK"
    stop_containerd "$SUITE_WORK"
    remove_work_dir
}

docker_() { tmo "$(docker_client)" "$@"; }
RUN=(run --network none --runtime hpcc)

@test "docker: run passes stdout and the exit code through" {
    run docker_ "${RUN[@]}" --rm "$HPCC_IMAGE_TAG" sh -c 'echo hello from hpcc; exit 4'
    [ "$status" -eq 4 ]
    assert_contains "$output" "hello from hpcc"
}

@test "docker: the default seccomp profile loads without no_new_privs" {
    # Docker asks for no no_new_privs: setuid programs (sudo, ping) must
    # keep working under its profile, as under runc.
    run docker_ "${RUN[@]}" --rm "$HPCC_IMAGE_TAG" grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
    [ "$status" -eq 0 ]
    assert_eq "$(echo "$output" | tr -s '\t ' ' ')" "$(printf 'NoNewPrivs: 0\nSeccomp: 2')" "status fields"
}

@test "docker: the container is hpcc's: its state is in hpcc's format" {
    id=$(docker_ "${RUN[@]}" -d "$HPCC_IMAGE_TAG" sleep 1000)
    run docker_ inspect -f '{{.HostConfig.Runtime}}' "$id"
    assert_eq "$output" hpcc runtime
    # dockerd gives every runc-shim runtime this state root.
    run tmo "$HPCC" --root "$SUITE_WORK/docker/exec/runtime-runc/moby" state "$id"
    [ "$status" -eq 0 ]
    assert_contains "$output" '"status": "running"'
    docker_ rm -f "$id" >/dev/null
    [ ! -e "$SUITE_WORK/docker/exec/runtime-runc/moby/$id" ]
}

@test "docker: run -t gives the container a terminal" {
    run on_pty "$(docker_client) run --rm -t --network none --runtime hpcc $HPCC_IMAGE_TAG tty"
    [ "$status" -eq 0 ]
    assert_contains "$output" "/dev/pts/0"
}

@test "docker: run -d, exec, exec -t and stop" {
    id=$(docker_ "${RUN[@]}" -d "$HPCC_IMAGE_TAG" sh -c 'trap "exit 7" TERM; while :; do sleep 0.1; done')
    run docker_ exec "$id" sh -c 'echo in exec; exit 6'
    [ "$status" -eq 6 ]
    assert_contains "$output" "in exec"
    run on_pty "$(docker_client) exec -t $id tty"
    assert_contains "$output" "/dev/pts/"
    docker_ stop "$id" >/dev/null
    run docker_ inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id"
    assert_eq "$output" "exited 7" state
    docker_ rm "$id" >/dev/null
}

@test "docker: --memory and --pids-limit are applied and seen inside" {
    run docker_ "${RUN[@]}" --rm --memory 64m --pids-limit 40 "$HPCC_IMAGE_TAG" \
        sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max'
    [ "$status" -eq 0 ]
    assert_eq "$(echo "$output" | head -1)" 67108864 memory.limit_in_bytes
    assert_eq "$(echo "$output" | sed -n 2p)" 40 pids.max
}

@test "docker: the memory limit holds: a writer past it is OOM-killed" {
    # tmpfs pages are charged to the writer's cgroup: dd dies near 16 MiB.
    run docker_ "${RUN[@]}" --rm --memory 16m --memory-swap 16m --tmpfs /big:size=64m "$HPCC_IMAGE_TAG" \
        sh -c 'dd if=/dev/zero of=/big/fill bs=1M count=40 2>/dev/null; echo "dd=$?"; wc -c </big/fill'
    [ "$status" -eq 0 ]
    assert_contains "$output" "dd=137"
    [ "$(echo "$output" | tail -1)" -lt 16777216 ]
}

@test "docker: a missing program is named in the error" {
    run -127 docker_ "${RUN[@]}" --rm "$HPCC_IMAGE_TAG" no-such-program-xyz
    assert_contains "$output" "no-such-program-xyz"
    assert_contains "$output" "executable file not found"
}
