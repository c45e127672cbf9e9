//! `kill`: the whole create/start/kill/delete lifecycle for each way of
//! naming the signal, `kill --all`, and killing a stopped container.

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{sh, TestEnv, WAIT_LIMIT};

use crate::common::{check_state, cmdline, wait_cmdline, TRAP_TERM};

/// create -> created (pid file = live process not yet running the program)
/// -> start -> running -> kill [signal] -> stopped -> delete -> gone.
fn kill_lifecycle(name: &str, args: &[&str], signal: Option<&str>) {
    let env = TestEnv::new(name);
    let mut bundle = env.bundle(args);
    bundle.edit(|c| c["annotations"] = serde_json::json!({"org.hpcc.test": name}));
    let id = env.id(name);
    let init = env.create(&bundle, &id);
    let state = env.state(&id);
    check_state(&state, &id, "created", &bundle);
    assert_eq!(
        state["annotations"]["org.hpcc.test"], name,
        "state should carry the config's annotations: {state}"
    );
    let before = cmdline(init.pid);
    assert!(
        before.as_ref().is_some_and(|c| !c.iter().eq(args.iter())),
        "a created container must not run its program before start; cmdline {before:?}"
    );

    env.hpcc(&["start", &id]).ok();
    let state = env.wait_status(&id, "running");
    check_state(&state, &id, "running", &bundle);
    assert_eq!(state["pid"], init.pid, "pid changed across start");
    wait_cmdline(init.pid, args);

    let mut kill = vec!["kill", id.as_str()];
    kill.extend(signal);
    env.hpcc(&kill).ok();
    let state = env.wait_status(&id, "stopped");
    check_state(&state, &id, "stopped", &bundle);

    env.hpcc(&["delete", &id]).ok();
    env.hpcc(&["state", &id]).fails_with("does not exist");
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn lifecycle_kill_by_number() {
    kill_lifecycle("kill-num", &sh(TRAP_TERM), Some("15"));
}

#[test]
fn lifecycle_kill_by_term_name() {
    kill_lifecycle("kill-term", &sh(TRAP_TERM), Some("TERM"));
}

#[test]
fn lifecycle_kill_by_sigkill_name() {
    kill_lifecycle("kill-sigkill", &["sleep", "1000"], Some("SIGKILL"));
}

#[test]
fn lifecycle_kill_default_signal_is_term() {
    kill_lifecycle("kill-default", &sh(TRAP_TERM), None);
}

/// Live processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    runtime_tests::proc_stat(*p).is_some_and(|st| st.ppid == pid && st.state != 'Z')
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_all_stops_every_process() {
    let env = TestEnv::new("kill-all");
    let bundle = env.bundle(&sh("sleep 1000 & sleep 1001 & wait"));
    let id = env.id("kill-all");
    let init = env.create_and_start(&bundle, &id);
    env.wait_status(&id, "running");
    let deadline = Instant::now() + WAIT_LIMIT;
    let children = loop {
        let children = children_of(init.pid);
        if children.len() == 2 {
            break children;
        }
        assert!(
            Instant::now() < deadline,
            "the container's two sleeps did not start: {children:?}"
        );
        sleep(Duration::from_millis(20));
    };
    let children: Vec<_> = children.into_iter().map(|p| env.live(p)).collect();
    env.hpcc(&["kill", "--all", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped");
    for child in &children {
        child.assert_gone("a process of the container after kill --all");
    }
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn kill_stopped_container_fails() {
    let env = TestEnv::new("kill-stopped");
    let bundle = env.bundle(&["true"]);
    let id = env.id("kill-stopped");
    let init = env.create_and_start(&bundle, &id);
    env.wait_status(&id, "stopped");
    env.hpcc(&["kill", &id, "KILL"])
        .fails_with("container not running");
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}
