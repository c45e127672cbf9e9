//! Process attributes observed inside (capabilities, rlimits, oom score,
//! umask, groups, devices, masked and read-only paths), namespaced and
//! host-wide sysctls, rlimits past the hard limit, and `rro` binds.

use std::fs;

use runtime_tests::{is_root, sh, TestEnv};

#[test]
fn process_attributes_are_observed_inside() {
    let env = TestEnv::new("attrs");
    let script = "grep CapEff /proc/self/status | tr -d '\\t'; ulimit -n; cat /proc/self/oom_score_adj; umask; \
                  id -u; id -G; stat -c '%F %t:%T' /dev/fuse; \
                  m=none; for f in /proc/timer_list /proc/keys /proc/sched_debug /proc/kcore; do \
                  if [ -e $f ]; then m=$(wc -c < $f); break; fi; done; echo masked:$m; \
                  (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null || echo ro-sys";
    let mut bundle = env.bundle(&sh(script));
    let root = is_root();
    bundle.edit(|c| {
        let p = &mut c["process"];
        let caps = serde_json::json!(["CAP_CHOWN", "CAP_KILL"]);
        p["capabilities"] = serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
        p["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}]);
        p["oomScoreAdj"] = serde_json::json!(500);
        p["user"]["umask"] = serde_json::json!(0o027);
        if root {
            p["user"]["additionalGids"] = serde_json::json!([10, 20]);
        }
        c["linux"]["devices"] = serde_json::json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]);
    });
    let id = env.id("attrs");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    // CAP_CHOWN (bit 0) and CAP_KILL (bit 5) only.
    assert_eq!(
        lines.first().copied(),
        Some("CapEff:0000000000000021"),
        "{out}"
    );
    assert_eq!(lines.get(1).copied(), Some("512"), "{out}");
    assert_eq!(lines.get(2).copied(), Some("500"), "{out}");
    assert_eq!(lines.get(3).copied(), Some("0027"), "{out}");
    assert_eq!(lines.get(4).copied(), Some("0"), "{out}");
    if root {
        assert_eq!(lines.get(5).copied(), Some("0 10 20"), "{out}");
    }
    assert_eq!(
        lines.get(6).copied(),
        Some("character special file a:e5"),
        "{out}"
    );
    let masked = lines.get(7).copied().unwrap_or("");
    assert!(
        masked == "masked:0" || masked == "masked:none",
        "masked /proc files read empty\n{out}"
    );
    assert_eq!(
        lines.get(8).copied(),
        Some("ro-sys"),
        "/proc/sys is read-only\n{out}"
    );
    env.assert_clean(&id, None, &bundle);
}

/// Every capability asked for: granted where hpcc holds them all (also
/// rootless: in a user namespace of its own), and otherwise refused naming
/// the ones it lacks (this build host's root has no CAP_SYS_RESOURCE in
/// its bounding set; runc says only EPERM there).
#[test]
fn capabilities_hpcc_does_not_hold_are_named() {
    let env = TestEnv::new("allcaps");
    let bnd = fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .expect("CapBnd");
    let sys_resource = 24;
    let mut bundle = env.bundle(&sh("grep CapEff /proc/self/status | tr -d '\\t'"));
    bundle.edit(|c| {
        let caps = serde_json::json!(["CAP_CHOWN", "CAP_SYS_RESOURCE"]);
        c["process"]["capabilities"] =
            serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
    });
    let id = env.id("allcaps");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    // A new user namespace starts with every capability, in it (the
    // rootless case): only root without one is bound by the host's set.
    if is_root() && bnd & (1 << sys_resource) == 0 {
        out.fails_with("CAP_SYS_RESOURCE cannot be granted");
        assert!(
            !out.stderr.contains("CAP_CHOWN"),
            "only the missing one: {out}"
        );
    } else {
        out.ok();
        assert_eq!(out.stdout.trim(), "CapEff:0000000001000001", "{out}");
    }
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn sysctls_rlimits_and_recursive_read_only_binds() {
    let env = TestEnv::new("more");
    // A namespaced sysctl is written inside the container.
    let mut bundle = env.bundle(&sh(
        "cat /proc/sys/kernel/shmmni; touch /data/sub/x 2>/dev/null || echo ro-sub",
    ));
    let data = env.path("data");
    fs::create_dir_all(data.join("sub")).expect("data");
    // A bind made read-only with "rro" (mount_setattr, the whole tree).
    bundle.edit(|c| {
        c["linux"]["sysctl"] = serde_json::json!({"kernel.shmmni": "2048"});
        c["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(serde_json::json!(
            {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rro"]}));
    });
    let id = env.id("more");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    assert_eq!(out.stdout, "2048\nro-sub\n", "{out}");
    env.assert_clean(&id, None, &bundle);
    // An rlimit above the hard limit fails with a message naming it.
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1u64 << 40, "soft": 1u64 << 40}]);
    });
    let id = env.id("rlimit");
    env.hpcc(&["create", "--bundle", bundle.path(), &id])
        .fails_with("RLIMIT_NOFILE");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn host_wide_sysctls_are_refused() {
    let env = TestEnv::new("sysctl");
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["linux"]["sysctl"] = serde_json::json!({"kernel.core_pattern": "|/tmp/x"});
    });
    let id = env.id("sysctl");
    env.hpcc(&["create", "--bundle", bundle.path(), &id])
        .fails_with("not namespaced");
    env.assert_clean(&id, None, &bundle);
}
