//! Hostile mount destinations: symlinks out of the rootfs resolve inside
//! it (CVE-2019-16884 / CVE-2021-30465 class), and mounts over /proc
//! subpaths are refused.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use runtime_tests::{mounts_under, path_str as s, sh, TestEnv};
use serde_json::json;

use crate::common::{create_and_run_refuse, push_mount, run_ok};

/// CVE-2019-16884 / CVE-2021-30465 class: a mount destination that is a
/// symlink out of the rootfs must be resolved inside the rootfs.
#[test]
fn symlinked_mount_destinations_stay_inside_the_rootfs() {
    let env = TestEnv::new("symdest");
    // One host folder per symlink (a later mount would otherwise resolve
    // through an earlier one), each with a sentinel that must stay alone.
    let outside: Vec<PathBuf> = ["exist", "new", "file", "rel", "tmp"]
        .iter()
        .map(|n| {
            let d = env.path(&format!("outside-{n}"));
            fs::create_dir(&d).expect("outside");
            fs::write(d.join("sentinel"), "host").expect("sentinel");
            d
        })
        .collect();
    let src = env.path("src");
    fs::create_dir(&src).expect("src");
    fs::write(src.join("payload"), "bound").expect("payload");
    let srcfile = env.path("srcfile");
    fs::write(&srcfile, "file-bound").expect("srcfile");
    let mut bundle = env.bundle(&sh(
        "cat /evil/payload; echo; cat /evilnew/payload; echo; cat /evilfile; echo; \
         cat /evilrel/payload; echo; ls /evil; touch /eviltmp/x && echo tmpfs-ok",
    ));
    let root = bundle.rootfs();
    // Absolute symlink to an existing host dir, to a host path that does
    // not exist, to a host file that does not exist, a relative one with
    // many "..", and a tmpfs over a symlink.
    symlink(&outside[0], root.join("evil")).expect("symlink");
    symlink(outside[1].join("newdir"), root.join("evilnew")).expect("symlink");
    symlink(outside[2].join("newfile"), root.join("evilfile")).expect("symlink");
    let rel = format!("../../../../../../../../..{}", s(&outside[3]));
    symlink(&rel, root.join("evilrel")).expect("symlink");
    symlink(outside[4].join("tmpdir"), root.join("eviltmp")).expect("symlink");
    for dest in ["/evil", "/evilnew", "/evilrel"] {
        push_mount(
            &mut bundle,
            json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind"]}),
        );
    }
    push_mount(
        &mut bundle,
        json!({"destination": "/evilfile", "type": "bind", "source": srcfile, "options": ["bind"]}),
    );
    push_mount(
        &mut bundle,
        json!({"destination": "/eviltmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
    );
    let out = run_ok(&env, &bundle);
    // The mounts are visible where the container resolves the symlinks,
    // i.e. inside its own root (no sentinel: the host folders are not
    // what the container sees).
    assert_eq!(
        out, "bound\nbound\nfile-bound\nbound\npayload\ntmpfs-ok\n",
        "the container sees its mounts through the symlinks"
    );
    for d in &outside {
        let left: Vec<String> = fs::read_dir(d)
            .expect("outside")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            ["sentinel"],
            "host folder {} was changed",
            d.display()
        );
        assert_eq!(
            fs::read_to_string(d.join("sentinel")).expect("sentinel"),
            "host"
        );
        assert!(mounts_under(d).is_empty());
    }
    assert_eq!(
        fs::read_dir(&src).expect("src").count(),
        1,
        "the bind source was changed"
    );
    // The mount points were made inside the rootfs, under the symlinks'
    // targets taken relative to it.
    for (d, made) in [
        (&outside[1], "newdir"),
        (&outside[2], "newfile"),
        (&outside[4], "tmpdir"),
    ] {
        let inside = root.join(s(d).trim_start_matches('/')).join(made);
        assert!(
            inside.symlink_metadata().is_ok(),
            "{} should have been created",
            inside.display()
        );
    }
}

/// runc's rule for /proc: only a procfs (or a bind of one) at /proc itself,
/// and only the few files lxcfs emulates below it; anything else over a
/// /proc subpath (attr, sys, sysrq-trigger, a symlink into /proc) is refused.
#[test]
fn mounts_over_proc_subpaths_are_refused() {
    let env = TestEnv::new("procdest");
    let src = env.path("src");
    fs::create_dir(&src).expect("src");
    let srcfile = env.path("srcfile");
    fs::write(&srcfile, "fake").expect("srcfile");
    let cases = [
        json!({"destination": "/proc/self/attr/exec", "type": "bind", "source": srcfile, "options": ["bind"]}),
        json!({"destination": "/proc/thread-self/attr/current", "type": "bind", "source": srcfile, "options": ["bind"]}),
        json!({"destination": "/proc/sys", "type": "bind", "source": src, "options": ["rbind"]}),
        json!({"destination": "/proc/sys/kernel", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc/sysrq-trigger", "type": "bind", "source": srcfile, "options": ["bind"]}),
        json!({"destination": "/proc/1/../sys", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/tmp/../proc/sys", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}),
        json!({"destination": "/proc", "type": "bind", "source": src, "options": ["rbind"]}),
    ];
    for m in cases {
        let mut bundle = env.bundle(&["true"]);
        let dest = m["destination"].as_str().expect("dest").to_string();
        push_mount(&mut bundle, m);
        create_and_run_refuse(&env, &bundle, &[&dest]);
    }
    // A symlink in the rootfs that leads into /proc is caught too.
    let mut bundle = env.bundle(&["true"]);
    symlink("/proc/sys", bundle.rootfs().join("psys")).expect("symlink");
    push_mount(
        &mut bundle,
        json!({"destination": "/psys", "type": "tmpfs", "source": "tmpfs"}),
    );
    create_and_run_refuse(&env, &bundle, &["/psys", "/proc"]);
    // What lxcfs does stays possible, and is visible inside.
    let mut bundle = env.bundle(&sh("cat /proc/uptime"));
    fs::write(&srcfile, "12345.67 0.00\n").expect("srcfile");
    push_mount(
        &mut bundle,
        json!({"destination": "/proc/uptime", "type": "bind", "source": srcfile, "options": ["bind", "ro"]}),
    );
    assert_eq!(run_ok(&env, &bundle), "12345.67 0.00\n");
}
