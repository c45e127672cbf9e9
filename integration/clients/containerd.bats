#!/usr/bin/env bats
# containerd 1.6 drives hpcc through containerd-shim-runc-v2, exactly as it
# drives runc: `ctr run --runc-binary hpcc`. Needs root.

load lib

setup_file() {
    [ "$(id -u)" = 0 ] || skip "containerd needs root"
    require_cmd containerd containerd
    require_cmd ctr containerd
    make_work_dir containerd
    start_containerd "$SUITE_WORK"
    tmo ctr -a "$CTR_SOCK" image import "$HPCC_IMAGE" >/dev/null
}

teardown_file() {
    [ -n "${SUITE_WORK:-}" ] || return 0
    stop_containerd "$SUITE_WORK"
    remove_work_dir
}

IMAGE_REF() { echo "docker.io/library/$HPCC_IMAGE_TAG"; }

ctr_() { tmo ctr -a "$CTR_SOCK" "$@"; }

# The shim keeps runc's state root; a deleted container must leave nothing.
assert_no_state() { # ID
    local d
    for d in /run/containerd/runc/default/"$1" "$SUITE_WORK"/containerd/state/io.containerd.runtime.v2.task/default/"$1"; do
        if [ -e "$d" ]; then
            echo "state left behind: $d" >&2
            return 1
        fi
    done
}

@test "containerd: ctr run passes stdout and the exit code through" {
    run ctr_ run --rm --runc-binary "$HPCC" "$(IMAGE_REF)" c-run sh -c 'echo hello from hpcc; exit 3'
    [ "$status" -eq 3 ]
    assert_contains "$output" "hello from hpcc"
    assert_no_state c-run
}

@test "containerd: its default seccomp profile (--seccomp) and no_new_privs as configured" {
    # ctr's default spec asks for no_new_privs; the filter must not decide
    # it either way: NoNewPrivs inside is what config.json says.
    ctr_ run -d --seccomp --runc-binary "$HPCC" "$(IMAGE_REF)" c-seccomp sleep 1000
    local config=$SUITE_WORK/containerd/state/io.containerd.runtime.v2.task/default/c-seccomp/config.json
    local want=0
    grep -q '"noNewPrivileges": *true' "$config" && want=1
    run ctr_ task exec --exec-id probe c-seccomp grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
    [ "$status" -eq 0 ]
    assert_eq "$(echo "$output" | tr -s '\t ' ' ')" "$(printf 'NoNewPrivs: %s\nSeccomp: 2' "$want")" "status fields"
    ctr_ task kill -s KILL c-seccomp
    wait_for 20 sh -c "ctr -a $CTR_SOCK task ls | grep -q 'c-seccomp.*STOPPED'"
    ctr_ task delete c-seccomp
    ctr_ container rm c-seccomp
    assert_no_state c-seccomp
}

@test "containerd: the container has its own PID and mount namespaces" {
    run ctr_ run --rm --runc-binary "$HPCC" "$(IMAGE_REF)" c-ns sh -c 'echo pid=$$; readlink /proc/self/ns/pid /proc/self/ns/mnt; cat /etc/passwd'
    [ "$status" -eq 0 ]
    assert_contains "$output" "pid=1"
    local ns
    for ns in pid mnt; do
        if [[ "$output" == *"$(readlink /proc/self/ns/$ns)"* ]]; then
            echo "the container shares the host's $ns namespace" >&2
            return 1
        fi
    done
    # The image's /etc/passwd, not the host's.
    assert_eq "$(echo "$output" | grep -c '^[a-z_][^:]*:x:')" 1 "passwd entries"
}

@test "containerd: ctr run -t gives the container a terminal" {
    run on_pty "ctr -a $CTR_SOCK run --rm -t --runc-binary $HPCC $(IMAGE_REF) c-tty tty"
    [ "$status" -eq 0 ]
    assert_contains "$output" "/dev/pts/0"
}

@test "containerd: a missing program fails create with its name" {
    run ctr_ run --rm --runc-binary "$HPCC" "$(IMAGE_REF)" c-missing no-such-program-xyz
    [ "$status" -ne 0 ]
    assert_contains "$output" "no-such-program-xyz"
    assert_contains "$output" "executable file not found"
    ctr_ container rm c-missing >/dev/null 2>&1 || true
    assert_no_state c-missing
}

@test "containerd: task exec, task kill and delete" {
    ctr_ run -d --runc-binary "$HPCC" "$(IMAGE_REF)" c-life sleep 1000
    run ctr_ task ls
    assert_contains "$output" "c-life"
    assert_contains "$output" "RUNNING"

    run ctr_ task exec --exec-id e1 c-life sh -c 'echo in exec; cat /proc/1/cmdline; exit 5'
    [ "$status" -eq 5 ]
    assert_contains "$output" "in exec"
    assert_contains "$output" "sleep"

    run on_pty "ctr -a $CTR_SOCK task exec -t --exec-id e2 c-life tty"
    assert_contains "$output" "/dev/pts/"

    run ctr_ task ps c-life
    [ "$status" -eq 0 ]
    local pid
    pid=$(ctr_ task ls | awk '$1 == "c-life" { print $2 }')
    [ -n "$pid" ]
    kill -0 "$pid"

    ctr_ task kill -s KILL c-life
    wait_for 20 sh -c "ctr -a $CTR_SOCK task ls | grep -q 'c-life.*STOPPED'"
    assert_gone "$pid"
    ctr_ task delete c-life
    ctr_ container rm c-life
    assert_no_state c-life
}

@test "containerd: task kill with SIGTERM reaches a trapping process" {
    ctr_ run -d --runc-binary "$HPCC" "$(IMAGE_REF)" c-term sh -c 'trap "exit 7" TERM; while :; do sleep 0.1; done'
    sleep 0.5
    ctr_ task kill -s TERM c-term
    wait_for 20 sh -c "ctr -a $CTR_SOCK task ls | grep -q 'c-term.*STOPPED'"
    run ctr_ task delete c-term
    # ctr reports the exit status on delete.
    assert_contains "$output" "exit code 7"
    ctr_ container rm c-term
}
