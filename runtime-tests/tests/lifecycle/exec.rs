//! `exec`: joining a running container's namespaces, exit codes, env
//! and cwd, `--process`, detached execs with a pid file, and `ps`.

use std::fs;

use runtime_tests::{read_pid_file, TestEnv};

#[test]
fn exec_joins_the_running_container() {
    let env = TestEnv::new("exec");
    let bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("exec");
    let init = env.create_and_start(&bundle, &id);
    // Same namespaces as the init: its hostname, its pid namespace (the
    // init is PID 1 there), its user mapping.
    let out = env.hpcc(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/mnt",
    ]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(bundle.hostname()), "{out}");
    assert_eq!(lines.get(1).map(|l| l.trim()), Some("sleep 1000"), "{out}");
    let init_mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", init.pid)).expect("init mnt ns");
    assert_eq!(
        lines.get(2).copied(),
        Some(init_mnt.to_string_lossy().as_ref()),
        "{out}"
    );
    // Exit codes, env and cwd come through; a missing program is named.
    assert_eq!(env.hpcc(&["exec", &id, "sh", "-c", "exit 5"]).code(), 5);
    let out = env.hpcc(&[
        "exec",
        "--env",
        "X=1",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $X; pwd",
    ]);
    out.ok();
    assert_eq!(out.stdout, "1\n/tmp\n", "{out}");
    env.hpcc(&["exec", &id, "no-such-program"])
        .fails_with("no-such-program");
    // --process with a runtime-spec Process document.
    let proc_file = env.path("process.json");
    fs::write(&proc_file, r#"{"args": ["sh", "-c", "echo from-process-file"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#).expect("process.json");
    let out = env.hpcc(&["exec", "--process", proc_file.to_str().expect("path"), &id]);
    out.ok();
    assert_eq!(out.stdout, "from-process-file\n", "{out}");
    // Detached, with a pid file; ps lists it beside the init.
    let pid_file = env.path("exec.pid");
    env.hpcc(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().expect("path"),
        &id,
        "sleep",
        "1000",
    ])
    .ok();
    let exec_pid = read_pid_file(&pid_file);
    let exec_proc = env.live(exec_pid);
    let ps = env.hpcc(&["ps", "--format", "json", &id]);
    ps.ok();
    let pids: Vec<u32> = serde_json::from_str(&ps.stdout).expect("ps json");
    assert!(
        pids.contains(&init.pid) && pids.contains(&exec_pid),
        "{pids:?} {}",
        ps.stdout
    );
    env.hpcc(&["delete", "--force", &id]).ok();
    exec_proc.assert_gone("the exec'd process");
    env.hpcc(&["exec", &id, "true"])
        .fails_with("does not exist");
    env.assert_clean(&id, Some(&init), &bundle);
}
