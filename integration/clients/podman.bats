#!/usr/bin/env bats
# podman 4.3 with hpcc as a named runtime ([engine.runtimes] and
# --runtime hpcc), through conmon. Runs as root and, by run.sh, again as an
# unprivileged user: rootless podman runs hpcc as uid 0 of a user namespace
# of its own.
# rootless: yes

load lib

setup_file() {
    require_cmd podman podman
    require_cmd conmon conmon
    make_work_dir podman
    podman_setup "$SUITE_WORK"
    tmo "${PODMAN[@]}" load -i "$HPCC_IMAGE" >/dev/null
}

teardown_file() {
    [ -n "${SUITE_WORK:-}" ] || return 0
    podman_setup "$SUITE_WORK"
    podman_teardown "$SUITE_WORK"
    remove_work_dir
}

setup() {
    podman_setup "$SUITE_WORK"
}

pm() { tmo "${PODMAN[@]}" "$@"; }

@test "podman: run passes stdout and the exit code through" {
    run -3 pm run --rm "$HPCC_IMAGE_TAG" sh -c 'echo hello from hpcc; exit 3'
    assert_contains "$output" "hello from hpcc"
}

@test "podman: the default seccomp profile loads without no_new_privs" {
    # podman asks for no no_new_privs: setuid programs must keep working
    # under its profile (rootless too: the filter goes in while the
    # process holds CAP_SYS_ADMIN in its user namespace).
    run pm run --rm "$HPCC_IMAGE_TAG" grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
    [ "$status" -eq 0 ]
    assert_eq "$(echo "$output" | tr -s '\t ' ' ')" "$(printf 'NoNewPrivs: 0\nSeccomp: 2')" "status fields"
}

@test "podman: the container is hpcc's" {
    id=$(pm run -d "$HPCC_IMAGE_TAG" sleep 1000)
    run pm inspect -f '{{.OCIRuntime}}' "$id"
    assert_eq "$output" hpcc runtime
    run pm exec "$id" cat /proc/1/cmdline
    assert_contains "$output" sleep
    # hpcc's own state, where hpcc keeps it for this caller (rootless
    # podman's "root" is a user: its XDG_RUNTIME_DIR).
    local state_root=/run/hpcc
    [ "$(id -u)" = 0 ] || state_root=$XDG_RUNTIME_DIR/hpcc
    [ -f "$state_root/$id/state.json" ]
    pm rm -f -t 0 "$id" >/dev/null
    [ ! -e "$state_root/$id" ]
}

@test "podman: run -t gives the container a terminal (console socket)" {
    run on_pty "${PODMAN[*]} run --rm -t $HPCC_IMAGE_TAG tty"
    [ "$status" -eq 0 ]
    assert_contains "$output" "/dev/pts/0"
}

@test "podman: run -d, exec, exec -t, then stop delivers SIGTERM" {
    id=$(pm run -d "$HPCC_IMAGE_TAG" sh -c 'trap "exit 7" TERM; while :; do sleep 0.1; done')
    run -6 pm exec "$id" sh -c 'echo in exec; exit 6'
    assert_contains "$output" "in exec"
    run on_pty "${PODMAN[*]} exec -t $id tty"
    assert_contains "$output" "/dev/pts/"
    pm stop -t 10 "$id" >/dev/null
    run pm inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id"
    assert_eq "$output" "exited 7" state
    pm rm "$id" >/dev/null
}

@test "podman: kill ends the container with SIGKILL" {
    id=$(pm run -d "$HPCC_IMAGE_TAG" sleep 1000)
    pm kill "$id" >/dev/null
    wait_for 20 sh -c "${PODMAN[*]} inspect -f '{{.State.Status}}' $id | grep -qx exited"
    run pm inspect -f '{{.State.ExitCode}}' "$id"
    assert_eq "$output" 137 "exit code"
    pm rm "$id" >/dev/null
}

@test "podman: rm -f removes a running container and its processes" {
    id=$(pm run -d "$HPCC_IMAGE_TAG" sleep 1000)
    pid=$(pm inspect -f '{{.State.Pid}}' "$id")
    kill -0 "$pid"
    pm rm -f -t 0 "$id" >/dev/null
    assert_gone "$pid"
    run pm ps -a -q --filter "id=$id"
    assert_eq "$output" "" "podman ps after rm -f"
}

@test "podman: --memory and --pids-limit are applied (root)" {
    [ "$(id -u)" = 0 ] || skip "cgroup limits need a delegated cgroup, which this host (cgroup v1, no systemd) cannot give a user"
    run pm run --rm --memory 64m --pids-limit 40 "$HPCC_IMAGE_TAG" \
        sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max'
    [ "$status" -eq 0 ]
    assert_eq "$(echo "$output" | head -1)" 67108864 memory.limit_in_bytes
    assert_eq "$(echo "$output" | sed -n 2p)" 40 pids.max
}

@test "podman: a missing program's error names it" {
    run -127 pm run --rm "$HPCC_IMAGE_TAG" no-such-program-xyz
    assert_contains "$output" "no-such-program-xyz"
    assert_contains "$output" "executable file not found"
    # podman took it from hpcc's JSON log (runtime_supports_json), not
    # from stderr, which would carry hpcc's own "hpcc: " prefix twice.
    assert_contains "$output" 'Error: hpcc: exec: "no-such-program-xyz"'
}

@test "podman: rootless runs keep the caller's identity outside" {
    [ "$(id -u)" != 0 ] || skip "only meaningful as an unprivileged user"
    id=$(pm run -d "$HPCC_IMAGE_TAG" sleep 1000)
    pid=$(pm inspect -f '{{.State.Pid}}' "$id")
    # uid 0 inside is the user outside.
    assert_eq "$(stat -c %u /proc/"$pid")" "$(id -u)" "owner of the container's process"
    pm rm -f -t 0 "$id" >/dev/null
}
