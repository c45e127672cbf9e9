//! `hpcc run IMAGE`: the image's ENTRYPOINT, CMD and WorkingDir, the
//! overrides, exit codes and signals through exec in place, a PID
//! namespace on request, and what is left behind.

use crate::common::*;
use runtime_tests::{ok, stdout};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

#[test]
fn docker_archive_runs_entrypoint_and_cmd_in_workdir() {
    let env = Env::new("default");
    let tar = docker_tar(&env);
    let out = ok(&env.run(&["run", tar.to_str().unwrap()]));
    assert_eq!(out, "default-cmd\n/work\n");
}

#[test]
fn command_entrypoint_and_workdir_overrides() {
    let env = Env::new("override");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    assert_eq!(
        ok(&env.run(&["run", t, "--", "echo $GREETING; echo $PATH"])),
        "hello\n/bin\n"
    );
    assert_eq!(
        ok(&env.run(&["run", "--entrypoint", "/bin/echo", t, "--", "a", "b"])),
        "a b\n"
    );
    assert_eq!(
        ok(&env.run(&["run", "--entrypoint", "", t, "--", "/bin/echo", "x"])),
        "x\n"
    );
    assert_eq!(
        ok(&env.run(&["run", "-w", "/data", t, "--", "pwd"])),
        "/data\n"
    );
    // Explicit verb form works too.
    assert_eq!(
        ok(&env.run(&["run-image", "-q", t, "--", "echo direct"])),
        "direct\n"
    );
}

#[test]
fn exit_codes_signals_and_exec_in_place() {
    let env = Env::new("inplace");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    assert_eq!(env.run(&["run", t, "--", "exit 7"]).status.code(), Some(7));
    // The program is the process we started: same PID.
    let child = env
        .cmd(&["run", t, "--", "echo $$"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).trim(), pid.to_string());
    // Signals reach it directly: SIGTERM kills a program without a handler.
    let mut child = env.cmd(&["run", t, "--", "exec sleep 30"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGTERM));
}

#[test]
fn pid_namespace_on_request() {
    let env = Env::new("pidns");
    let tar = docker_tar(&env);
    let t = tar.to_str().unwrap();
    // PID 1 is hpcc's minimal init; the program comes next.
    let o = env.run(&["run", "--pid", t, "--", "echo $$; exit 3"]);
    assert_eq!(stdout(&o), "2\n");
    assert_eq!(o.status.code(), Some(3));
    // SIGTERM to hpcc reaches the program through the init (a program that
    // was PID 1 itself would ignore it), and the status says so.
    let mut child = env
        .cmd(&["run", "--pid", t, "--", "exec sleep 30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(128 + libc::SIGTERM));
}

#[test]
fn nothing_is_left_mounted_or_running() {
    let env = Env::new("leftovers");
    let tar = docker_tar(&env);
    ok(&env.run(&["run", tar.to_str().unwrap(), "--", "true"]));
    ok(&env.run(&[
        "run",
        "--pid",
        tar.to_str().unwrap(),
        "--",
        "sleep 0.1 & true",
    ]));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(env.cache().to_str().unwrap()),
        "a mount leaked to the host"
    );
    assert!(
        env.mount_dir_leftovers().is_empty(),
        "the mount directory stays empty on the host: {:?}",
        env.mount_dir_leftovers()
    );
}
