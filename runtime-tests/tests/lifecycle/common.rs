//! Helpers the lifecycle tests share: the TERM-trapping init, watching a
//! process's command line, checking a state document, and a bundle without
//! a pid namespace.

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{is_root, Bundle, WAIT_LIMIT};
use serde_json::Value;

/// PID 1 of a pid namespace only gets the signals it has handlers for, so the
/// TERM tests run a shell that traps TERM.
pub const TRAP_TERM: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// `/proc/PID/cmdline` split at NULs.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Waits (bounded) until the process runs `args` (after `start` the init
/// process execs the user's program).
pub fn wait_cmdline(pid: u32, args: &[&str]) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let now = cmdline(pid);
        if now.as_ref().is_some_and(|c| c.iter().eq(args.iter())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} should run {args:?} after start, its cmdline is {now:?}"
        );
        sleep(Duration::from_millis(20));
    }
}

/// Checks the fields of an OCI state document.
pub fn check_state(state: &Value, id: &str, status: &str, bundle: &Bundle) {
    assert!(
        state["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {state}"
    );
    assert_eq!(state["id"], id, "id: {state}");
    assert_eq!(state["status"], status, "status: {state}");
    let same_path = |field: &str, want: &std::path::Path| {
        let got = state[field].as_str().unwrap_or_default();
        let canon = fs::canonicalize(want).unwrap_or_else(|_| want.to_path_buf());
        assert!(
            std::path::Path::new(got) == want || std::path::Path::new(got) == canon,
            "{field} should be {} but state is {state}",
            want.display()
        );
    };
    same_path("bundle", &bundle.dir);
    same_path("rootfs", &bundle.rootfs());
    assert!(
        state["created"].as_str().is_some_and(|s| !s.is_empty()),
        "created: {state}"
    );
    assert!(state["owner"].is_string(), "owner: {state}");
    if status == "stopped" {
        assert_eq!(state["pid"], 0, "a stopped container has pid 0: {state}");
    } else {
        assert!(state["pid"].as_u64().is_some_and(|p| p > 0), "pid: {state}");
    }
}

/// Drops the pid namespace. Without one, an unprivileged user cannot mount a
/// fresh procfs, so the rootless config bind-mounts the host's /proc.
pub fn without_pid_namespace(bundle: &mut Bundle) {
    bundle.remove_namespace("pid");
    if !is_root() {
        bundle.edit(|c| {
            if let Some(mounts) = c["mounts"].as_array_mut() {
                for m in mounts.iter_mut().filter(|m| m["destination"] == "/proc") {
                    *m = serde_json::json!({
                        "destination": "/proc",
                        "type": "bind",
                        "source": "/proc",
                        "options": ["rbind", "nosuid", "noexec", "nodev"]
                    });
                }
            }
        });
    }
}
