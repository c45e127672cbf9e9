//! cgroups: memory and pids limits (and a clear failure without a
//! writable cgroup), exec joining the container's cgroup, `pause`,
//! `resume` and `update`.

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{is_root, read_pid_file, sh, TestEnv, WAIT_LIMIT};

#[test]
fn cgroup_limits_apply_as_root_and_fail_clearly_without_a_writable_cgroup() {
    let env = TestEnv::new("cgroups");
    let mut bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("cgroups");
    bundle.edit(|c| {
        c["linux"]["resources"] = serde_json::json!({
            "memory": {"limit": 67108864, "disableOOMKiller": true},
            "pids": {"limit": 32}
        });
        c["linux"]["cgroupsPath"] = serde_json::json!(format!("/hpcc-test/{id}"));
    });
    if !is_root() {
        // No delegated cgroup here for an unprivileged user: limits asked
        // for must fail with a message that says why, and leave nothing.
        env.hpcc(&["create", "--bundle", bundle.path(), &id])
            .fails_with("writable cgroup");
        env.assert_clean(&id, None, &bundle);
        return;
    }
    let init = env.create(&bundle, &id);
    let cgroup_of = |controller: &str| -> Option<String> {
        fs::read_to_string(format!("/proc/{}/cgroup", init.pid))
            .ok()?
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.splitn(3, ':').collect();
                (f.len() == 3 && f[1].split(',').any(|c| c == controller)).then(|| f[2].to_string())
            })
    };
    let expected = format!("/hpcc-test/{id}");
    // On a v1 or hybrid host each controller has its own hierarchy; on a
    // unified host the one cgroup2 path (controller field empty) holds all.
    let (mem_file, pids_file) = match cgroup_of("memory") {
        Some(p) => {
            assert_eq!(p, expected, "the init is in the configured memory cgroup");
            assert_eq!(cgroup_of("pids").as_deref(), Some(expected.as_str()));
            // disableOOMKiller is v1's memory.oom_control (v2 has none).
            let oom = fs::read_to_string(format!(
                "/sys/fs/cgroup/memory{expected}/memory.oom_control"
            ))
            .expect("memory.oom_control");
            assert!(oom.contains("oom_kill_disable 1"), "{oom}");
            (
                format!("/sys/fs/cgroup/memory{expected}/memory.limit_in_bytes"),
                format!("/sys/fs/cgroup/pids{expected}/pids.max"),
            )
        }
        None => (
            format!("/sys/fs/cgroup{expected}/memory.max"),
            format!("/sys/fs/cgroup{expected}/pids.max"),
        ),
    };
    assert_eq!(
        fs::read_to_string(&mem_file).expect("memory limit").trim(),
        "67108864"
    );
    assert_eq!(
        fs::read_to_string(&pids_file).expect("pids limit").trim(),
        "32"
    );
    // An exec'd process joins the container's cgroup too.
    let exec_pid_file = env.path("exec-cg.pid");
    env.hpcc(&[
        "exec",
        "-d",
        "--pid-file",
        exec_pid_file.to_str().expect("path"),
        &id,
        "sleep",
        "100",
    ])
    .ok();
    let exec_pid = read_pid_file(&exec_pid_file);
    let exec_proc = env.live(exec_pid);
    let cgroup_line = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .expect("cgroup")
            .lines()
            .find(|l| l.contains(":pids:") || l.starts_with("0::"))
            .map(str::to_string)
    };
    assert_eq!(
        cgroup_line(exec_pid),
        cgroup_line(init.pid),
        "the exec'd process is in the container's cgroup"
    );
    env.hpcc(&["delete", "--force", &id]).ok();
    exec_proc.assert_gone("the exec'd process");
    assert!(
        !std::path::Path::new(&pids_file).exists(),
        "delete removes the cgroup"
    );
    // From every hierarchy, not only the ones the test reads.
    let left: Vec<_> = fs::read_dir("/sys/fs/cgroup")
        .expect("/sys/fs/cgroup")
        .flatten()
        .map(|h| h.path().join(expected.trim_start_matches('/')))
        .filter(|d| d.exists())
        .collect();
    assert!(left.is_empty(), "delete left {left:?}");
    env.assert_clean(&id, Some(&init), &bundle);
}

/// The scheduler state of a process ('T' when stopped or frozen by the v1
/// freezer shows as 'D'/'S'; both are read from /proc).
fn proc_state(pid: u32) -> char {
    runtime_tests::proc_stat(pid).map_or('?', |st| st.state)
}

#[test]
fn pause_resume_and_update() {
    let env = TestEnv::new("pause");
    // A counter the test can watch: it stops advancing while paused.
    let mut bundle = env.bundle(&sh(
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done",
    ));
    let cgroups_path = format!("/hpcc-test/{}", env.id("pause-cg"));
    if is_root() {
        bundle.edit(|c| {
            c["linux"]["resources"] = serde_json::json!({
                "pids": {"limit": 64},
                "memory": {"limit": 134217728, "disableOOMKiller": true}
            });
            c["linux"]["cgroupsPath"] = serde_json::json!(cgroups_path);
        });
    }
    bundle.edit(|c| {
        c["root"]["readonly"] = serde_json::json!(false);
    });
    let id = env.id("pause");
    let init = env.create_and_start(&bundle, &id);
    let count = || fs::read_to_string(bundle.rootfs().join("tmp/count")).unwrap_or_default();
    sleep(Duration::from_millis(300));
    env.hpcc(&["pause", &id]).ok();
    assert_eq!(env.state(&id)["status"], "paused");
    sleep(Duration::from_millis(200));
    let frozen = count();
    sleep(Duration::from_millis(400));
    assert_eq!(
        count(),
        frozen,
        "the container kept running while paused (state {})",
        proc_state(init.pid)
    );
    env.hpcc(&["pause", &id]).fails_with("already paused");
    env.hpcc(&["exec", &id, "true"]).fails_with("paused");
    env.hpcc(&["resume", &id]).ok();
    assert_eq!(env.state(&id)["status"], "running");
    let deadline = Instant::now() + WAIT_LIMIT;
    while count() == frozen && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    assert_ne!(count(), frozen, "the container did not resume");
    if is_root() {
        let res = env.path("res.json");
        // An update that leaves disableOOMKiller out keeps it.
        fs::write(
            &res,
            r#"{"pids": {"limit": 99}, "memory": {"limit": 100663296}}"#,
        )
        .expect("resources");
        env.hpcc(&["update", "--resources", res.to_str().expect("path"), &id])
            .ok();
        let cg = fs::read_to_string(format!("/proc/{}/cgroup", init.pid)).expect("cgroup");
        let pids_path = cg
            .lines()
            .find_map(|l| {
                l.strip_prefix(|c: char| c.is_ascii_digit()).and_then(|r| {
                    r.trim_start_matches(|c: char| c.is_ascii_digit())
                        .strip_prefix(":pids:")
                })
            })
            .map(|p| format!("/sys/fs/cgroup/pids{p}/pids.max"));
        if let Some(p) = pids_path {
            assert_eq!(fs::read_to_string(p).expect("pids.max").trim(), "99");
            let mem = format!("/sys/fs/cgroup/memory{cgroups_path}");
            assert_eq!(
                fs::read_to_string(format!("{mem}/memory.limit_in_bytes"))
                    .expect("memory limit")
                    .trim(),
                "100663296"
            );
            let oom = fs::read_to_string(format!("{mem}/memory.oom_control")).expect("oom");
            assert!(oom.contains("oom_kill_disable 1"), "update kept it: {oom}");
        }
    } else {
        env.hpcc(&["update", "--resources", "-", &id]).fails();
    }
    // A paused container can still be force-deleted.
    env.hpcc(&["pause", &id]).ok();
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}
