//! Privileges: empty inheritable capabilities by default
//! (CVE-2022-29162), and no_new_privileges against a setuid-root binary,
//! as root and rootless.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{egid, euid, is_root, subordinate_ids, TestEnv, WAIT_LIMIT};
use serde_json::json;

use crate::common::run_ok;
use crate::probe::{build_probe, install_probe};

fn status_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        u64::from_str_radix(rest.trim(), 16).ok()
    })
}

/// CVE-2022-29162: the inheritable set is empty unless the config asks
/// for inheritable capabilities, in run and in exec.
#[test]
fn cve_2022_29162_inheritable_caps_are_empty_by_default() {
    let env = TestEnv::new("capinh");
    let mut bundle = env.bundle(&["sh", "-c", "grep -E '^Cap(Inh|Amb)' /proc/self/status"]);
    let out = run_ok(&env, &bundle);
    assert_eq!(status_field(&out, "CapInh"), Some(0), "run: {out}");
    assert_eq!(status_field(&out, "CapAmb"), Some(0), "run: {out}");
    bundle.set_args(&["sleep", "1000"]);
    let id = env.id("capinh");
    let init = env.create_and_start(&bundle, &id);
    let out = env.hpcc(&[
        "exec",
        &id,
        "grep",
        "-E",
        "^Cap(Inh|Amb)",
        "/proc/self/status",
    ]);
    out.ok();
    assert_eq!(status_field(&out.stdout, "CapInh"), Some(0), "exec: {out}");
    assert_eq!(status_field(&out.stdout, "CapAmb"), Some(0), "exec: {out}");
    // The init as seen from the host, too.
    let status = fs::read_to_string(format!("/proc/{}/status", init.pid)).expect("status");
    assert_eq!(status_field(&status, "CapInh"), Some(0), "init: {status}");
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
    // Positive control: asked for, CAP_KILL (bit 5) is inheritable.
    bundle.set_args(&["sh", "-c", "grep -E '^CapInh' /proc/self/status"]);
    bundle.edit(|c| c["process"]["capabilities"]["inheritable"] = json!(["CAP_KILL"]));
    let out = run_ok(&env, &bundle);
    assert_eq!(
        status_field(&out, "CapInh"),
        Some(1 << 5),
        "asked-for inheritable: {out}"
    );
}

/// no_new_privileges: NoNewPrivs is 1 inside (run and exec), and a
/// setuid-root binary does not raise the euid of a non-root container
/// process. Without it, under a seccomp profile, NoNewPrivs stays 0 and as
/// root setuid works as on any Linux; rootless it never gives more than
/// the invoking user has in the initial userns.
#[test]
fn no_new_privileges_and_setuid_binaries() {
    let env = TestEnv::new("nnp");
    let probe = build_probe(&env);
    let subids = subordinate_ids();
    let mut bundle = env.bundle(&["/suid", "ids"]);
    install_probe(&probe, &bundle, "suid", 0o4755);
    let meta = fs::metadata(bundle.rootfs().join("suid")).expect("suid");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755, "setuid bit set");
    // A non-zero uid inside: rootless that needs a second id range.
    let inner = 1000u32;
    match (is_root(), subids) {
        (true, _) => {}
        (false, Some((su, sg))) => {
            bundle.edit(|c| {
                c["linux"]["uidMappings"] = json!([
                {"containerID": 0, "hostID": euid(), "size": 1},
                {"containerID": 1, "hostID": su, "size": 65536}]);
                c["linux"]["gidMappings"] = json!([
                {"containerID": 0, "hostID": egid(), "size": 1},
                {"containerID": 1, "hostID": sg, "size": 65536}]);
            });
        }
        (false, None) => panic!(
            "rootless: this user has no /etc/subuid and /etc/subgid range, so no uid but 0 \
             can be mapped and a setuid binary cannot be tested; add one (usermod --add-subuids)"
        ),
    }
    bundle.edit(|c| {
        c["process"]["user"] = json!({"uid": inner, "gid": inner});
        c["process"]["noNewPrivileges"] = json!(true);
    });
    let out = run_ok(&env, &bundle);
    assert!(
        out.contains(&format!("uids {inner} {inner} {inner}\n")),
        "NNP keeps the euid: {out}"
    );
    assert_eq!(status_field(&out, "NoNewPrivs"), Some(1), "{out}");
    assert_eq!(status_field(&out, "CapEff"), Some(0), "{out}");
    // exec honours it too (the exec's process.noNewPrivileges is the config's).
    bundle.set_args(&["sleep", "1000"]);
    let id = env.id("nnp-exec");
    let init = env.create_and_start(&bundle, &id);
    let out = env.hpcc(&[
        "exec",
        "--user",
        &format!("{inner}:{inner}"),
        &id,
        "/suid",
        "ids",
    ]);
    out.ok();
    assert!(
        out.stdout
            .contains(&format!("uids {inner} {inner} {inner}\n")),
        "exec: {out}"
    );
    assert_eq!(
        status_field(&out.stdout, "NoNewPrivs"),
        Some(1),
        "exec: {out}"
    );
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);

    // Without NNP: the binary runs setuid, also under a seccomp profile
    // (loading one must not set no_new_privs behind the config's back, as
    // seccompiler's apply_filter does; runc loads it with CAP_SYS_ADMIN).
    // Look at it from the host while it waits.
    bundle.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(false);
        c["process"]["args"] = json!(["/suid", "ids", "wait"]);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let id = env.id("suid");
    let init = env.create_and_start(&bundle, &id);
    let deadline = Instant::now() + WAIT_LIMIT;
    let status = loop {
        let st = fs::read_to_string(format!("/proc/{}/status", init.pid)).expect("status");
        let exe = fs::read_link(format!("/proc/{}/exe", init.pid)).ok();
        if exe.as_ref().is_some_and(|e| e.ends_with("suid")) || Instant::now() > deadline {
            break st;
        }
        sleep(Duration::from_millis(20));
    };
    let uids: Vec<u64> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(
        status_field(&status, "NoNewPrivs"),
        Some(0),
        "no_new_privs was not asked for: {status}"
    );
    assert_eq!(
        status_field(&status, "Seccomp"),
        Some(2),
        "the filter is loaded: {status}"
    );
    let my_userns = fs::read_link("/proc/self/ns/user").expect("userns");
    let its_userns = fs::read_link(format!("/proc/{}/ns/user", init.pid)).expect("userns");
    if is_root() {
        say!("root, no NNP: the setuid binary's host uids are {uids:?} (setuid works, as on the host)");
        assert_eq!(
            uids.get(1),
            Some(&0),
            "setuid-root as real root raises euid: {status}"
        );
    } else {
        let (su, _) = subids.expect("subids");
        let mine = u64::from(euid());
        let allowed = |u: &u64| *u == mine || (u64::from(su)..u64::from(su) + 65536).contains(u);
        assert!(
            uids.iter().all(allowed),
            "rootless setuid: host uids {uids:?} go beyond this user ({mine}) and its subuids: {status}"
        );
        assert_eq!(
            uids.get(1),
            Some(&mine),
            "euid is the container's root = this user: {status}"
        );
        assert_ne!(
            my_userns, its_userns,
            "the process holds its capabilities only inside a user namespace of its own"
        );
        say!("rootless, no NNP: setuid gave host uids {uids:?} (the user's own uid), in {its_userns:?}");
    }
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}
