//! linux.resources beyond memory and pids (cpu, cpuset, blkio), the
//! container's own view of its cgroup, and linux.rootfsPropagation, each
//! observed from inside the container.
//!
//! Run with `HPCC_BIN=/abs/path/to/hpcc cargo test -p runtime-tests`.

use std::fs;
use std::os::unix::fs::MetadataExt;

use runtime_tests::{is_root, sh, TestEnv};

/// The host's cgroup layout: v1 and hybrid hosts have one directory per
/// controller, a unified host has cgroup.controllers at the top.
fn unified_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// "major:minor" of the device holding the bundle, for a blkio rule.
fn device_of(path: &std::path::Path) -> (u64, u64) {
    let dev = fs::metadata(path).expect("stat").dev();
    (libc::major(dev) as u64, libc::minor(dev) as u64)
}

#[test]
fn cpu_cpuset_and_blkio_limits_are_seen_inside_the_container() {
    let env = TestEnv::new("cpu");
    if !is_root() {
        eprintln!("cpu/cpuset/blkio: an unprivileged user has no writable cgroup on this host; create must say so");
    }
    let (major, minor) = device_of(&env.path(""));
    let script = if unified_host() {
        "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpuset.cpus /sys/fs/cgroup/io.max"
    } else {
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
         /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus \
         /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"
    };
    let mut bundle = env.bundle(&sh(script));
    let id = env.id("cpu");
    bundle.edit(|c| {
        c["linux"]["resources"] = serde_json::json!({
            "cpu": {"quota": 50000, "period": 100000, "shares": 512, "cpus": "0"},
            "blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]}
        });
        c["linux"]["cgroupsPath"] = serde_json::json!(format!("/hpcc-test/{id}"));
    });
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    if !is_root() {
        out.fails_with("writable cgroup");
        env.assert_clean(&id, None, &bundle);
        return;
    }
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    if unified_host() {
        assert_eq!(lines[0], "50000 100000", "cpu.max: {out}");
        assert_eq!(lines[2], "0", "cpuset.cpus: {out}");
        assert!(
            lines[3].contains(&format!("{major}:{minor} rbps=1048576")),
            "io.max: {out}"
        );
    } else {
        assert_eq!(
            &lines[..4],
            &["50000", "100000", "512", "0"],
            "quota, period, shares, cpus: {out}"
        );
        assert_eq!(lines[4], format!("{major}:{minor} 1048576"), "blkio: {out}");
    }
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn the_cgroup_mount_shows_only_the_containers_own_cgroup() {
    if !is_root() || unified_host() {
        runtime_tests::skip("the per-hierarchy cgroup view is built on v1/hybrid hosts for containers with a cgroup (root here)");
        return;
    }
    let env = TestEnv::new("cgview");
    let id = env.id("cgview");
    // A sibling cgroup that the container must not see.
    let sibling = format!("/sys/fs/cgroup/memory/hpcc-test/{id}-sibling");
    fs::create_dir_all(&sibling).expect("sibling cgroup");
    let mut bundle = env.bundle(&sh(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; ls /sys/fs/cgroup/memory | grep -c sibling; \
         touch /sys/fs/cgroup/memory/x 2>/dev/null || echo read-only",
    ));
    bundle.edit(|c| {
        c["linux"]["resources"] = serde_json::json!({"memory": {"limit": 33554432}});
        c["linux"]["cgroupsPath"] = serde_json::json!(format!("/hpcc-test/{id}"));
        // Docker's choice: no cgroup namespace, so only the mount hides
        // the rest of the tree.
        let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        ns.retain(|n| n["type"] != "cgroup");
    });
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    let _ = fs::remove_dir(&sibling);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "33554432", "the container's own limit: {out}");
    assert_eq!(lines[1], "0", "no sibling cgroup is visible: {out}");
    assert_eq!(lines[2], "read-only", "the cgroup view is read-only: {out}");
    env.assert_clean(&id, None, &bundle);
}

/// The optional fields of the container's `/` line in its mountinfo.
const ROOT_LINE: &str = r#"awk '$5 == "/" { for (i = 7; $i != "-"; i++) printf "%s ", $i; print "end" }' /proc/self/mountinfo"#;

#[test]
fn rootfs_propagation_modes_apply_to_the_new_root() {
    let env = TestEnv::new("prop");
    for (mode, want, refuse) in [
        ("private", None, Some(["shared:", "master:"])),
        ("rprivate", None, Some(["shared:", "master:"])),
        // The host's / is private here, so a slave has no master to show:
        // only that nothing is shared back is observable.
        ("rslave", None, Some(["shared:", "shared:"])),
        ("shared", Some("shared:"), None),
        ("rshared", Some("shared:"), None),
        ("unbindable", Some("unbindable"), None),
        ("runbindable", Some("unbindable"), None),
    ] {
        let mut bundle = env.bundle(&sh(ROOT_LINE));
        bundle.edit(|c| c["linux"]["rootfsPropagation"] = serde_json::json!(mode));
        let id = env.id("prop");
        let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
        out.ok();
        if let Some(w) = want {
            assert!(out.stdout.contains(w), "{mode}: / should be {w}: {out}");
        }
        for r in refuse.iter().flatten() {
            assert!(!out.stdout.contains(r), "{mode}: / must not be {r}: {out}");
        }
        assert!(out.stdout.contains("end"), "{mode}: no / line: {out}");
        env.assert_clean(&id, None, &bundle);
    }
    // A mode that is not one is refused, naming the field.
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| c["linux"]["rootfsPropagation"] = serde_json::json!("sideways"));
    let id = env.id("prop");
    env.hpcc(&["run", "--bundle", bundle.path(), &id])
        .fails_with("linux.rootfsPropagation");
    env.assert_clean(&id, None, &bundle);
}

/// Runs hpcc in a private mount namespace whose /sys/fs/cgroup is the
/// host's cgroup2 hierarchy alone: hpcc (and libcgroups) then see a unified
/// host. On this hybrid machine the hierarchy holds only hugetlb, but every
/// v2 code path (create, limits, freeze, join, update, removal) runs for real.
fn hpcc_on_v2(env: &TestEnv, args: &[&str]) -> runtime_tests::Output {
    use std::process::{Command, Stdio};
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let (out, err) = (
        env.path(&format!("v2-{n}.out")),
        env.path(&format!("v2-{n}.err")),
    );
    let script = "mount --make-rprivate / && umount -R /sys/fs/cgroup && \
                  mount -t cgroup2 none /sys/fs/cgroup && exec \"$0\" \"$@\"";
    let status = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .arg(runtime_tests::hpcc_bin())
        .args(["--root", env.root_str()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("stdout file"))
        .stderr(fs::File::create(&err).expect("stderr file"))
        .status()
        .expect("unshare");
    runtime_tests::Output {
        args: args.iter().map(|s| s.to_string()).collect(),
        status,
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    }
}

#[test]
fn cgroup_v2_limits_freeze_exec_update_and_removal() {
    let unified = "/sys/fs/cgroup/unified";
    let has_hugetlb = fs::read_to_string(format!("{unified}/cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "hugetlb"));
    if !is_root() || unified_host() || !has_hugetlb {
        runtime_tests::skip("needs root on a hybrid host whose cgroup2 hierarchy has hugetlb (the v2 view is made with a private mount)");
        return;
    }
    let env = TestEnv::new("cgv2");
    let id = env.id("cgv2");
    let mut bundle = env.bundle(&sh("cat /sys/fs/cgroup/hugetlb.2MB.max; sleep 1000"));
    bundle.edit(|c| {
        c["linux"]["resources"] =
            serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
        c["linux"]["cgroupsPath"] = serde_json::json!(format!("/hpcc-test/{id}"));
    });
    hpcc_on_v2(&env, &["create", "--bundle", bundle.path(), &id]).ok();
    // The same hierarchy, as the host mounts it.
    let dir = format!("{unified}/hpcc-test/{id}");
    let read = |f: &str| fs::read_to_string(format!("{dir}/{f}")).map(|s| s.trim().to_string());
    assert_eq!(read("hugetlb.2MB.max").as_deref().ok(), Some("4194304"));
    let state = hpcc_on_v2(&env, &["state", &id]);
    let init: u32 = state.json()["pid"].as_u64().expect("pid") as u32;
    assert!(read("cgroup.procs")
        .expect("procs")
        .lines()
        .any(|p| p == init.to_string()));
    hpcc_on_v2(&env, &["start", &id]).ok();

    hpcc_on_v2(&env, &["pause", &id]).ok();
    assert_eq!(read("cgroup.freeze").as_deref().ok(), Some("1"));
    assert_eq!(hpcc_on_v2(&env, &["state", &id]).json()["status"], "paused");
    hpcc_on_v2(&env, &["resume", &id]).ok();
    assert_eq!(read("cgroup.freeze").as_deref().ok(), Some("0"));

    let pid_file = env.path("v2-exec.pid");
    let pid_arg = pid_file.to_str().expect("path");
    hpcc_on_v2(
        &env,
        &["exec", "-d", "--pid-file", pid_arg, &id, "sleep", "100"],
    )
    .ok();
    let exec_pid = runtime_tests::read_pid_file(&pid_file);
    let exec_proc = env.live(exec_pid);
    let cg = fs::read_to_string(format!("/proc/{exec_pid}/cgroup")).expect("cgroup");
    assert!(
        cg.lines().any(|l| l == format!("0::/hpcc-test/{id}")),
        "exec joins the v2 cgroup: {cg}"
    );

    let res = env.path("v2-res.json");
    fs::write(
        &res,
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 8388608}]}"#,
    )
    .expect("res");
    hpcc_on_v2(
        &env,
        &["update", "--resources", res.to_str().expect("path"), &id],
    )
    .ok();
    assert_eq!(read("hugetlb.2MB.max").as_deref().ok(), Some("8388608"));

    hpcc_on_v2(&env, &["delete", "--force", &id]).ok();
    assert!(!std::path::Path::new(&dir).exists(), "delete removes {dir}");
    exec_proc.assert_gone("the exec'd process");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn systemd_cgroup_driver_fails_clearly_without_systemd() {
    if std::path::Path::new("/run/systemd/system").is_dir() {
        runtime_tests::skip("systemd runs here; this test is for hosts without it");
        return;
    }
    let env = TestEnv::new("sdcg");
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["linux"]["resources"] = serde_json::json!({"pids": {"limit": 20}});
        c["linux"]["cgroupsPath"] = serde_json::json!("system.slice:hpcc:sdcg");
    });
    let id = env.id("sdcg");
    env.hpcc(&["--systemd-cgroup", "create", "--bundle", bundle.path(), &id])
        .fails_with("systemd is not running");
    env.assert_clean(&id, None, &bundle);
}
