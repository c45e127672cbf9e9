//! Seccomp profiles (with and without no_new_privs, and the NOTIFY action
//! that cannot be honoured) and security labels the host cannot enforce.

use std::fs;

use runtime_tests::{is_root, sh, TestEnv};

#[test]
fn seccomp_profiles_are_enforced() {
    let env = TestEnv::new("seccomp");
    for nnp in [true, false] {
        if !nnp && !is_root() {
            // Without no_new_privs a filter needs CAP_SYS_ADMIN, which a
            // rootless container also has in its user namespace; covered
            // as root only to keep the two halves of the suite alike.
            continue;
        }
        let mut bundle = env.bundle(&sh(
            "echo before; mkdir /tmp/denied && echo made; echo after",
        ));
        bundle.edit(|c| {
            c["process"]["noNewPrivileges"] = serde_json::json!(nnp);
            c["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["not_a_syscall_anywhere"], "action": "SCMP_ACT_KILL"}
                ]
            });
        });
        let id = env.id("seccomp");
        let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
        out.ok();
        assert_eq!(
            out.stdout, "before\nafter\n",
            "mkdir must be refused (nnp={nnp})\n{out}"
        );
        assert!(out.stderr.contains("Operation not permitted"), "{out}");
        env.assert_clean(&id, None, &bundle);
    }
    // NOTIFY cannot be honoured: refused before anything runs.
    let mut bundle = env.bundle(&["true"]);
    bundle
        .edit(|c| c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    let id = env.id("seccomp-notify");
    env.hpcc(&["create", "--bundle", bundle.path(), &id])
        .fails_with("NOTIFY");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn security_labels_the_host_cannot_enforce_are_refused() {
    let env = TestEnv::new("labels");
    let apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    for (field, needle, host_has_it) in [
        ("apparmorProfile", "AppArmor is not enabled", apparmor),
        ("selinuxLabel", "SELinux is not enabled", selinux),
    ] {
        if host_has_it {
            eprintln!("labels: this host enforces {field}; the refusal path is not reachable here");
            continue;
        }
        let mut bundle = env.bundle(&["true"]);
        bundle.edit(|c| c["process"][field] = serde_json::json!("hpcc-test-label"));
        let id = env.id("labels");
        env.hpcc(&["create", "--bundle", bundle.path(), &id])
            .fails_with(needle);
        env.assert_clean(&id, None, &bundle);
    }
}
