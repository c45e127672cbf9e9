//! `run`: output and exit status from inside, death by signal, detached
//! runs, accepted runc flags, and a missing program named in the error.

use runtime_tests::{euid, is_root, read_pid_file, sh, TestEnv};

use crate::common::{check_state, wait_cmdline, without_pid_namespace};

#[test]
fn run_shows_output_from_inside() {
    let env = TestEnv::new("run-output");
    let bundle = env.bundle(&sh("echo hello; id -u; cat /proc/self/uid_map; hostname"));
    let id = env.id("run-output");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "expected 4 lines of output\n{out}");
    assert_eq!(lines[0], "hello", "{out}");
    assert_eq!(lines[1], "0", "uid inside should be 0\n{out}");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    let expected_map = if is_root() {
        vec!["0".to_string(), "0".to_string(), "4294967295".to_string()]
    } else {
        vec!["0".to_string(), euid().to_string(), "1".to_string()]
    };
    assert_eq!(map, expected_map, "uid_map inside\n{out}");
    assert_eq!(lines[3], bundle.hostname(), "hostname inside\n{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn run_exit_code_is_propagated() {
    let env = TestEnv::new("run-exit");
    let bundle = env.bundle(&sh("exit 3"));
    let id = env.id("run-exit");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    assert_eq!(
        out.code(),
        3,
        "run should exit with the container's code\n{out}"
    );
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn run_killed_by_signal_exits_128_plus_signal() {
    let env = TestEnv::new("run-signal");
    let mut bundle = env.bundle(&sh("kill -9 $$"));
    // PID 1 of a pid namespace cannot SIGKILL itself, so no pid namespace.
    without_pid_namespace(&mut bundle);
    let id = env.id("run-signal");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    assert_eq!(out.code(), 128 + 9, "expected 137 for SIGKILL\n{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn run_detach_then_force_delete() {
    let env = TestEnv::new("run-detach");
    let bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("run-detach");
    let pid_file = env.path("detach.pid");
    env.hpcc(&[
        "run",
        "--detach",
        "--bundle",
        bundle.path(),
        "--pid-file",
        pid_file.to_str().expect("utf-8 path"),
        &id,
    ])
    .ok();
    let pid = read_pid_file(&pid_file);
    let init = env.live(pid);
    let state = env.wait_status(&id, "running");
    check_state(&state, &id, "running", &bundle);
    assert_eq!(state["pid"], pid, "state pid vs pid file");
    wait_cmdline(pid, &["sleep", "1000"]);
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn run_accepts_no_pivot_no_new_keyring_and_short_bundle_flag() {
    let env = TestEnv::new("run-flags");
    let bundle = env.bundle(&sh("echo flags-ok"));
    let id = env.id("run-flags");
    let out = env.hpcc(&[
        "run",
        "--no-pivot",
        "--no-new-keyring",
        "-b",
        bundle.path(),
        &id,
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "flags-ok", "{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn missing_binary_fails_at_create_or_start_with_its_name() {
    let env = TestEnv::new("missing-bin-create");
    let bundle = env.bundle(&["/bin/hpcc-no-such-binary"]);
    let id = env.id("missing-bin");
    let out = env.hpcc(&["create", "--bundle", bundle.path(), &id]);
    if out.success() {
        // Allowed (older runc did this): the failure surfaces at start.
        env.hpcc(&["start", &id]).fails_with("hpcc-no-such-binary");
        env.hpcc(&["delete", "--force", &id]).ok();
    } else {
        out.fails_with("hpcc-no-such-binary");
    }
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn missing_binary_run_fails_with_its_name() {
    let env = TestEnv::new("missing-bin-run");
    for prog in ["/bin/hpcc-no-such-binary", "hpcc-no-such-command"] {
        let bundle = env.bundle(&[prog]);
        let id = env.id("missing-run");
        let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
        out.fails_with(prog);
        env.assert_clean(&id, None, &bundle);
    }
}
