//! Namespaces and id maps: the init is PID 1 of its pid namespace,
//! namespaces given by path are joined, and multi-range id maps go
//! through newuidmap/newgidmap.

use runtime_tests::{egid, euid, is_root, sh, subordinate_ids, TestEnv};

#[test]
fn pid_namespace_init_is_pid_1() {
    let env = TestEnv::new("pidns");
    let bundle = env.bundle(&sh("echo $$"));
    let id = env.id("pidns");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    assert_eq!(out.stdout.trim(), "1", "$$ inside a pid namespace\n{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn namespaces_given_by_path_are_joined() {
    // B joins A's uts namespace (and, rootless, A's user namespace, which
    // owns it): B sees A's hostname, not its own config's.
    let env = TestEnv::new("nspath");
    let a = env.bundle(&["sleep", "1000"]);
    let a_id = env.id("nsa");
    let init = env.create(&a, &a_id);
    let mut b = env.bundle(&sh("hostname; readlink /proc/self/ns/uts"));
    b.edit(|c| {
        c["hostname"] = serde_json::Value::Null;
        let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        for n in ns.iter_mut() {
            let t = n["type"].as_str().unwrap_or("").to_string();
            if t == "uts" || t == "user" {
                n["path"] = serde_json::json!(format!("/proc/{}/ns/{t}", init.pid));
            }
        }
        c["linux"]
            .as_object_mut()
            .expect("linux")
            .remove("uidMappings");
        c["linux"]
            .as_object_mut()
            .expect("linux")
            .remove("gidMappings");
    });
    let b_id = env.id("nsb");
    let out = env.hpcc(&["run", "--bundle", b.path(), &b_id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(a.hostname()), "{out}");
    let a_uts = std::fs::read_link(format!("/proc/{}/ns/uts", init.pid)).expect("A's uts ns");
    assert_eq!(
        lines.get(1).copied(),
        Some(a_uts.to_string_lossy().as_ref()),
        "{out}"
    );
    env.hpcc(&["delete", "--force", &a_id]).ok();
    env.assert_clean(&a_id, Some(&init), &a);
    env.assert_clean(&b_id, None, &b);
}

#[test]
fn multi_range_id_maps_go_through_newuidmap() {
    // Root may write any map; a user needs newuidmap/newgidmap and
    // /etc/subuid, /etc/subgid ranges (useradd adds them).
    let env = TestEnv::new("idmaps");
    let Some((sub_uid, sub_gid)) = subordinate_ids() else {
        assert!(
            is_root(),
            "the test user has no /etc/subuid or /etc/subgid range"
        );
        return;
    };
    let mut bundle = env.bundle(&sh("cat /proc/self/uid_map /proc/self/gid_map"));
    bundle.edit(|c| {
        if !c["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .any(|n| n["type"] == "user")
        {
            c["linux"]["namespaces"]
                .as_array_mut()
                .expect("ns")
                .push(serde_json::json!({"type": "user"}));
        }
        c["linux"]["uidMappings"] = serde_json::json!([
            {"containerID": 0, "hostID": euid(), "size": 1},
            {"containerID": 1, "hostID": sub_uid, "size": 1000}
        ]);
        c["linux"]["gidMappings"] = serde_json::json!([
            {"containerID": 0, "hostID": egid(), "size": 1},
            {"containerID": 1, "hostID": sub_gid, "size": 1000}
        ]);
        // A mapped but unprivileged-host-owned rootfs: keep the mounts
        // that need no host privilege.
        if let Some(m) = c["mounts"].as_array_mut() {
            for x in m.iter_mut().filter(|x| x["destination"] == "/sys") {
                *x = serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
            m.retain(|x| x["destination"] != "/sys/fs/cgroup");
            for x in m.iter_mut() {
                if let Some(o) = x["options"].as_array_mut() {
                    o.retain(|v| !v.as_str().unwrap_or("").starts_with("gid="));
                }
            }
        }
    });
    let id = env.id("idmaps");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 4, "two uid and two gid ranges\n{out}");
    assert_eq!(
        lines[1],
        vec!["1".to_string(), sub_uid.to_string(), "1000".to_string()],
        "{out}"
    );
    assert_eq!(
        lines[3],
        vec!["1".to_string(), sub_gid.to_string(), "1000".to_string()],
        "{out}"
    );
    env.assert_clean(&id, None, &bundle);
}

/// linux.namespaces without a mount namespace: the container inherits
/// ours (as the runtime-spec says), chroots into its rootfs, and its
/// mounts, made in our mount table, are detached by delete, also when it
/// was killed while created. A new user namespace cannot mount in a mount
/// namespace its parent owns: refused in one line.
#[test]
fn without_a_mount_namespace_the_callers_is_inherited_and_delete_detaches_the_mounts() {
    let env = TestEnv::new("nomntns");
    let mut bundle = env.bundle(&sh("readlink /proc/self/ns/mnt; ls /bin/busybox"));
    if !is_root() {
        bundle.edit(|c| {
            let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
            ns.retain(|n| n["type"] != "mount");
        });
        let id = env.id("nomntns");
        env.hpcc(&["run", "--bundle", bundle.path(), &id])
            .fails_with("needs a mount namespace too");
        env.assert_clean(&id, None, &bundle);
        return;
    }
    bundle.edit(|c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]);
        for field in ["maskedPaths", "readonlyPaths"] {
            c["linux"].as_object_mut().expect("linux").remove(field);
        }
        c["hostname"] = serde_json::Value::Null;
    });
    let rootfs = std::fs::canonicalize(bundle.rootfs()).expect("rootfs");
    let mounted_under = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| std::path::Path::new(p).starts_with(&rootfs))
            .collect::<Vec<_>>()
    };
    let ours = std::fs::read_link("/proc/self/ns/mnt").expect("our mount ns");
    let id = env.id("nomntns-run");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    assert_eq!(
        out.stdout,
        format!("{}\n/bin/busybox\n", ours.display()),
        "our mount namespace, chrooted into the rootfs\n{out}"
    );
    assert_eq!(mounted_under(), Vec::<String>::new(), "run left mounts");
    env.assert_clean(&id, None, &bundle);
    // Created, then deleted: its /proc and /dev are in our table meanwhile.
    bundle.set_args(&["sleep", "1000"]);
    let id = env.id("nomntns-create");
    let init = env.create(&bundle, &id);
    assert!(
        mounted_under().iter().any(|p| p.ends_with("/proc")),
        "the container's mounts are in the caller's table: {:?}",
        mounted_under()
    );
    env.hpcc(&["delete", &id]).ok();
    assert_eq!(mounted_under(), Vec::<String>::new(), "delete left mounts");
    env.assert_clean(&id, Some(&init), &bundle);
}
