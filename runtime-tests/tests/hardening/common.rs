//! Checks every hardening case uses: no crash, a one-line refusal that
//! leaves nothing, a successful run, an extra mount, and a bounded wait
//! for a child spawned outside the harness.

use std::process::Child;
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{Bundle, Output, TestEnv};
use serde_json::Value;

/// hpcc did not crash: no abort (134), no signal, no Rust panic message.
#[track_caller]
pub fn no_crash(out: &Output) {
    assert_ne!(out.code(), 134, "hpcc aborted\n{out}");
    assert!(
        out.status.code().is_some(),
        "hpcc was killed by a signal\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "hpcc panicked\n{out}");
    assert!(
        !out.stderr.contains("RUST_BACKTRACE"),
        "hpcc panicked\n{out}"
    );
}

/// A refused bundle: nonzero exit, exactly one line on stderr containing
/// every needle (case-insensitive), no crash, nothing left under --root.
#[track_caller]
pub fn refused(env: &TestEnv, out: &Output, id: &str, bundle: &Bundle, needles: &[&str]) {
    no_crash(out);
    out.fails();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected a one-line error\n{out}");
    for n in needles {
        assert!(
            lines[0].to_lowercase().contains(&n.to_lowercase()),
            "the error should name {n:?}\n{out}"
        );
    }
    assert_eq!(
        env.root_entries(),
        Vec::<String>::new(),
        "a refused bundle left state under --root\n{out}"
    );
    env.assert_clean(id, None, bundle);
}

/// `create` must refuse the bundle (and `run` too, with the same message).
#[track_caller]
pub fn create_and_run_refuse(env: &TestEnv, bundle: &Bundle, needles: &[&str]) {
    for verb in ["create", "run"] {
        let id = env.id("refuse");
        let out = env.hpcc(&[verb, "--bundle", bundle.path(), &id]);
        refused(env, &out, &id, bundle, needles);
    }
}

/// `run` succeeds and returns stdout.
#[track_caller]
pub fn run_ok(env: &TestEnv, bundle: &Bundle) -> String {
    let id = env.id("run");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    no_crash(&out);
    out.ok();
    env.assert_clean(&id, None, bundle);
    out.stdout
}

pub fn push_mount(bundle: &mut Bundle, m: Value) {
    bundle.edit(|c| c["mounts"].as_array_mut().expect("mounts").push(m));
}

/// Waits for a child we spawned outside the harness. Another test thread's
/// orphan reaper may collect it first (ECHILD); that counts as exited.
pub fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                return None;
            }
            Err(_) => {
                use std::os::unix::process::ExitStatusExt;
                return Some(std::process::ExitStatus::from_raw(0xff00));
            }
        }
    }
}
