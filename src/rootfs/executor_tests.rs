//! Unit tests of the executor against the recording fake: the mount calls
//! a plan turns into, the fallbacks, the remounts that keep locked flags,
//! masks, runc's /proc rule, and where the hooks run.

use super::executor::execute;
use super::kernel::FileKind;
use super::ops::{Finish, MountOp, Op, What};
use super::plan::{plan, PlanContext};
use super::recorder::{FakeHost, Recorder};
use super::resolve::Leaf;
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statvfs::FsFlags;
use std::cell::Cell;
use std::path::{Path, PathBuf};

fn bind(dest: &str, source: &str, then: Finish) -> MountOp {
    MountOp {
        dest: dest.into(),
        what: What::Bind {
            source: source.into(),
            recursive: false,
        },
        leaf: Leaf::Dir,
        refuse_proc: true,
        fallback: None,
        then,
        label: format!("mount {dest}"),
    }
}

fn run(r: &mut Recorder, ops: Vec<Op>) -> anyhow::Result<()> {
    let mut all = vec![Op::OpenRoot("/r".into())];
    all.extend(ops);
    execute(r, &all, None)
}

#[test]
fn a_read_only_bind_in_a_user_namespace_keeps_the_locked_flags() {
    let mut r = Recorder {
        st_flags: (FsFlags::ST_NOSUID | FsFlags::ST_NODEV).bits(),
        ..Default::default()
    };
    let then = Finish {
        remount: MsFlags::MS_RDONLY,
        keep_locked: true,
        ..Finish::default()
    };
    run(&mut r, vec![Op::Mount(bind("/data", "/host/data", then))]).unwrap();
    assert_eq!(
        r.mounts(),
        [
            "mount /host/data on root:/data [MsFlags(MS_BIND)]",
            "mount - on root:/data [MsFlags(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND | MS_STRICTATIME)]",
        ]
    );
    // Outside a user namespace nothing is carried over.
    let mut r = Recorder::default();
    let then = Finish {
        remount: MsFlags::MS_RDONLY,
        ..Finish::default()
    };
    run(&mut r, vec![Op::Mount(bind("/data", "/host/data", then))]).unwrap();
    assert_eq!(
        r.mounts()[1],
        "mount - on root:/data [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND)]"
    );
}

#[test]
fn a_refused_sysfs_falls_back_to_binding_the_hosts_and_says_when_both_fail() {
    let ctx_spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [{"destination": "/sys", "type": "sysfs", "source": "sysfs",
                    "options": ["nosuid", "ro"]}]
    }))
    .unwrap();
    let ctx = PlanContext {
        spec: &ctx_spec,
        rootfs: Path::new("/b/rootfs"),
        bundle: Path::new("/b"),
        in_userns: true,
        has_cgroupns: false,
        use_mknod: false,
        no_pivot: false,
        overlay_lower: None,
    };
    let host = FakeHost {
        files: super::dev_nodes::DEFAULT_DEVICES
            .iter()
            .map(|(p, _, _)| PathBuf::from(p))
            .collect(),
        ..Default::default()
    };
    let p = plan(&ctx, &host).unwrap();
    let mut r = Recorder {
        fail: vec![("type sysfs".into(), Errno::EPERM)],
        ..Default::default()
    };
    execute(&mut r, &p.setup, None).unwrap();
    let m = r.mounts();
    let at = m.iter().position(|l| l.contains("type sysfs")).unwrap();
    assert!(m[at].ends_with("-> EPERM"), "{m:#?}");
    assert_eq!(
        m[at + 1],
        "mount /sys on root:/sys [MsFlags(MS_BIND | MS_REC)]"
    );
    assert!(m[at + 2].contains("MS_RDONLY") && m[at + 2].contains("MS_REMOUNT"));
    // Both refused: one line naming both attempts.
    let mut r = Recorder {
        fail: vec![
            ("type sysfs".into(), Errno::EPERM),
            ("mount /sys on root:/sys".into(), Errno::EACCES),
        ],
        ..Default::default()
    };
    let e = format!("{:#}", execute(&mut r, &p.setup, None).unwrap_err());
    assert!(
        e.contains("mount /sys: sysfs on /sys: EPERM")
            && e.contains("binding /sys instead failed too: EACCES"),
        "{e}"
    );
    // Another error is not a reason to fall back.
    let mut r = Recorder {
        fail: vec![("type sysfs".into(), Errno::ENODEV)],
        ..Default::default()
    };
    assert!(execute(&mut r, &p.setup, None).is_err());
    assert!(!r.mounts().iter().any(|l| l.starts_with("mount /sys on")));
}

#[test]
fn masks_cover_directories_with_tmpfs_and_files_with_dev_null() {
    let mut r = Recorder::default();
    r.kinds.insert("/proc/acpi".into(), FileKind::Dir);
    r.kinds.insert("/proc/kcore".into(), FileKind::Other);
    let ops = ["/proc/acpi", "/proc/kcore", "/proc/missing"]
        .map(|p| Op::Mask(p.into()))
        .to_vec();
    execute(&mut r, &ops, None).unwrap();
    assert_eq!(
        r.mounts(),
        [
            "mount tmpfs on /proc/acpi type tmpfs [MsFlags(MS_RDONLY)]",
            "mount /dev/null on /proc/kcore [MsFlags(MS_BIND)]",
        ]
    );
}

#[test]
fn read_only_paths_and_root_are_bound_and_remounted() {
    let mut r = Recorder::default();
    let ops = vec![
        Op::ReadOnlyPath {
            path: "/proc/sys".into(),
            keep_locked: false,
        },
        Op::RootReadOnly { keep_locked: false },
    ];
    execute(&mut r, &ops, None).unwrap();
    assert_eq!(
        r.mounts(),
        [
            "mount /proc/sys on /proc/sys [MsFlags(MS_BIND | MS_REC)]",
            "mount - on root:/proc/sys [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND)]",
            "mount - on root:/ [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND)]",
        ]
    );
    // A read-only path that does not exist is skipped.
    let mut r = Recorder {
        fail: vec![("/proc/nope".into(), Errno::ENOENT)],
        ..Default::default()
    };
    let ops = vec![Op::ReadOnlyPath {
        path: "/proc/nope".into(),
        keep_locked: false,
    }];
    execute(&mut r, &ops, None).unwrap();
    assert_eq!(r.mounts().len(), 1);
}

#[test]
fn a_destination_that_resolves_into_proc_is_refused_before_mounting() {
    let mut r = Recorder {
        procfs: vec!["/proc/sys/kernel".into(), "/proc".into()],
        ..Default::default()
    };
    let e = format!(
        "{:#}",
        run(
            &mut r,
            vec![Op::Mount(bind("/proc/sys/kernel", "/x", Finish::default()))]
        )
        .unwrap_err()
    );
    assert!(e.contains("resolves into /proc"), "{e}");
    assert!(r.mounts().is_empty(), "nothing was mounted");
    // /proc itself is allowed.
    run(
        &mut r,
        vec![Op::Mount(bind("/proc", "/x", Finish::default()))],
    )
    .unwrap();
    assert_eq!(r.mounts().len(), 1);
}

#[test]
fn rro_and_propagation_follow_the_mount() {
    let mut r = Recorder::default();
    let then = Finish {
        recursive_ro: true,
        propagation: vec![MsFlags::MS_SLAVE | MsFlags::MS_REC],
        ..Finish::default()
    };
    run(&mut r, vec![Op::Mount(bind("/data", "/host", then))]).unwrap();
    let tail: Vec<&String> = r.calls.iter().skip(2).collect();
    assert_eq!(
        tail,
        [
            "mount /host on root:/data [MsFlags(MS_BIND)]",
            "rro /data",
            "mount - on root:/data [MsFlags(MS_REC | MS_SLAVE)]",
        ]
    );
}

#[test]
fn the_parent_of_the_rootfs_is_made_private_where_a_mount_takes_it() {
    let mut r = Recorder {
        fail: vec![
            ("- on /srv/b/rootfs ".into(), Errno::EINVAL),
            ("- on /srv/b ".into(), Errno::EINVAL),
        ],
        ..Default::default()
    };
    execute(&mut r, &[Op::PrivatizeParent("/srv/b/rootfs".into())], None).unwrap();
    assert_eq!(
        r.mounts().last().copied(),
        Some("mount - on /srv [MsFlags(MS_PRIVATE)]")
    );
}

#[test]
fn the_image_overlay_retries_with_userxattr() {
    let mut r = Recorder {
        fail: vec![("workdir=/c/mnt/work)".into(), Errno::EINVAL)],
        ..Default::default()
    };
    let op = Op::ImageOverlay {
        lower: "/c/images/x/rootfs".into(),
        merged: "/c/mnt/merged".into(),
    };
    execute(&mut r, &[op], None).unwrap();
    assert_eq!(
        r.calls,
        [
            "mount tmpfs on /c/mnt type tmpfs [MsFlags(MS_NOSUID | MS_NODEV)] (mode=0755)",
            "mkdir /c/mnt/upper",
            "mkdir /c/mnt/work",
            "mkdir /c/mnt/merged",
            "mount overlay on /c/mnt/merged type overlay (lowerdir=/c/images/x/rootfs,upperdir=/c/mnt/upper,workdir=/c/mnt/work) -> EINVAL",
            "mount overlay on /c/mnt/merged type overlay (lowerdir=/c/images/x/rootfs,upperdir=/c/mnt/upper,workdir=/c/mnt/work,userxattr)",
        ]
    );
}

#[test]
fn hooks_run_after_the_devices_and_before_pivot_root() {
    let mut r = Recorder::default();
    let seen = Cell::new(0usize);
    let ops = vec![
        Op::OpenRoot("/r".into()),
        Op::Symlink {
            target: "pts/ptmx".into(),
            link: "/dev/ptmx".into(),
        },
        Op::Hooks,
        Op::PivotRoot("/r".into()),
    ];
    let hook = || {
        seen.set(seen.get() + 1);
        Ok(())
    };
    execute(&mut r, &ops, Some(&hook)).unwrap();
    assert_eq!(seen.get(), 1);
    assert_eq!(r.calls.last().map(String::as_str), Some("pivot_root /r"));
    assert!(r.calls.iter().any(|c| c.starts_with("symlink /dev/ptmx")));
    // A failing hook stops the plan before the switch of root.
    let mut r = Recorder::default();
    let failing = || Err(anyhow::anyhow!("hook failed"));
    assert!(execute(&mut r, &ops, Some(&failing)).is_err());
    assert!(!r.calls.iter().any(|c| c.starts_with("pivot_root")));
    // Container paths need an open root.
    let mut r = Recorder::default();
    let e = execute(&mut r, &[Op::MakeDir("/x".into())], None).unwrap_err();
    assert!(e.to_string().contains("before the root is open"), "{e}");
}
