//! Unit tests of the executor against the recording fake: the mount calls
//! a plan turns into, the fallbacks, the remounts that keep locked flags,
//! masks, runc's /proc rule, and where the hooks run.

use super::executor::execute;
use super::kernel::{Entry, FileKind};
use super::ops::{
    Finish, ImageRoot, MountOp, Op, RootMethod, Skeleton, SkeletonEntry, Underlay, What,
};
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
        own_mount_ns: true,
        image: None,
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
fn without_mount_setattr_rro_remounts_each_submount_read_only() {
    let mut r = Recorder {
        rro_errno: Some(Errno::ENOSYS),
        submounts: vec!["/b/rootfs/sys".into(), "/b/rootfs/sys/fs/cgroup".into()],
        ..Default::default()
    };
    let then = Finish {
        recursive_ro: true,
        ..Finish::default()
    };
    run(&mut r, vec![Op::Mount(bind("/sys", "/sys", then))]).unwrap();
    let m = r.mounts();
    assert_eq!(
        &m[1..],
        [
            "mount - on /b/rootfs/sys [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND)]",
            "mount - on /b/rootfs/sys/fs/cgroup [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND)]",
        ]
    );
    // Another error stays an error.
    let mut r = Recorder {
        rro_errno: Some(Errno::EPERM),
        ..Default::default()
    };
    let then = Finish {
        recursive_ro: true,
        ..Finish::default()
    };
    let e = format!(
        "{:#}",
        run(&mut r, vec![Op::Mount(bind("/sys", "/sys", then))]).unwrap_err()
    );
    assert!(e.contains("recursive read-only (rro): EPERM"), "{e}");
}

#[test]
fn mountinfo_mount_points_under_a_path_parents_first() {
    let info = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
        30 22 0:26 / /r/sys rw - sysfs sysfs rw\n\
        31 30 0:27 / /r/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
        32 22 0:28 / /r/sysx rw - tmpfs tmpfs rw\n\
        33 30 0:29 / /r/sys/kernel/my\\040dir rw - tmpfs tmpfs rw\n";
    assert_eq!(
        super::kernel::mounts_under(info, Path::new("/r/sys")),
        [
            PathBuf::from("/r/sys"),
            PathBuf::from("/r/sys/fs/cgroup"),
            PathBuf::from("/r/sys/kernel/my dir"),
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

fn image_root(method: RootMethod, writable: bool) -> Op {
    Op::ImageRoot(ImageRoot {
        lower: "/c/images/x/rootfs".into(),
        merged: "/c/mnt/merged".into(),
        method,
        writable,
        keep_locked: true,
        underlay: Underlay {
            expand: ["etc".into()].into(),
            omit: ["etc/passwd".into()].into(),
        },
        files: Vec::new(),
        skeleton: None,
    })
}

/// An image root with a generated /etc/passwd and a planned skeleton.
fn skeleton_root() -> Op {
    let Op::ImageRoot(mut r) = image_root(RootMethod::Auto, false) else {
        unreachable!()
    };
    r.files = vec![("/etc/passwd".into(), b"u:x:1:1::/:/bin/sh\n".to_vec())];
    r.skeleton = Some(Skeleton {
        dir: "/c/images/x/skeletons/k1".into(),
        dirs: super::skeleton::SkeletonDirs::new(
            "/c/images/x".as_ref(),
            "/c/locks/x.skeleton".as_ref(),
            1,
        ),
        entries: vec![
            SkeletonEntry::Dir("etc".into()),
            SkeletonEntry::File("etc/passwd".into(), b"u:x:1:1::/:/bin/sh\n".to_vec()),
        ],
    });
    Op::ImageRoot(r)
}

#[test]
fn a_skeleton_root_is_one_read_only_overlay_and_writes_nothing() {
    let mut r = Recorder::default();
    execute(&mut r, &[skeleton_root()], None).unwrap();
    assert_eq!(
        r.calls,
        [
            "skeleton /c/images/x/skeletons/k1 over /c/images/x/rootfs (2 entries)",
            "mount overlay on /c/mnt/merged type overlay [MsFlags(MS_RDONLY)] (lowerdir=/c/images/x/skeletons/k1:/c/images/x/rootfs)",
        ]
    );
}

#[test]
fn without_a_skeleton_the_root_is_private_and_the_files_are_written() {
    // A full disk: the skeleton cannot be made.
    let mut r = Recorder {
        skeleton_fails: true,
        ..Default::default()
    };
    execute(&mut r, &[skeleton_root()], None).unwrap();
    let tail: Vec<&str> = r.calls.iter().skip(1).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "mount tmpfs on /c/mnt type tmpfs [MsFlags(MS_NOSUID | MS_NODEV)] (mode=0755)",
            "mkdir /c/mnt/upper",
            "mkdir /c/mnt/work",
            "mkdir /c/mnt/merged",
            "mount overlay on /c/mnt/merged type overlay (lowerdir=/c/images/x/rootfs,upperdir=/c/mnt/upper,workdir=/c/mnt/work)",
            "open root /c/mnt/merged",
            "write /etc/passwd in root:/ (19 bytes)",
        ]
    );
    // A kernel that refuses overlayfs refuses the skeleton's as well: the
    // underlay, with the files written on its tmpfs.
    let mut r = Recorder {
        fail: vec![("type overlay".into(), Errno::EPERM)],
        ..Default::default()
    };
    image_dirs(&mut r);
    execute(&mut r, &[skeleton_root()], None).unwrap();
    assert!(r.calls.iter().any(|c| c == "symlink /bin -> usr/bin"));
    assert_eq!(
        r.calls.last().map(String::as_str),
        Some("write /etc/passwd in root:/ (19 bytes)")
    );
}

/// The image of the underlay tests: /bin -> usr/bin, /etc with passwd and
/// ssl/, /usr.
fn image_dirs(r: &mut Recorder) {
    let lower = PathBuf::from("/c/images/x/rootfs");
    r.dirs.insert(
        lower.clone(),
        vec![
            ("bin".into(), Entry::Symlink("usr/bin".into())),
            ("etc".into(), Entry::Dir),
            ("usr".into(), Entry::Dir),
        ],
    );
    r.dirs.insert(
        lower.join("etc"),
        vec![
            ("hostname".into(), Entry::Other),
            ("passwd".into(), Entry::Other),
            ("ssl".into(), Entry::Dir),
        ],
    );
}

#[test]
fn the_image_overlay_retries_with_userxattr() {
    let mut r = Recorder {
        fail: vec![("workdir=/c/mnt/work)".into(), Errno::EINVAL)],
        ..Default::default()
    };
    execute(&mut r, &[image_root(RootMethod::Overlay, false)], None).unwrap();
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
fn an_underlay_binds_the_images_entries_read_only_and_expands_what_it_must() {
    let mut r = Recorder::default();
    image_dirs(&mut r);
    execute(&mut r, &[image_root(RootMethod::Underlay, false)], None).unwrap();
    let tail: Vec<&str> = r.calls.iter().skip(4).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "mount /c/mnt/merged on /c/mnt/merged [MsFlags(MS_BIND)]",
            "open root /c/mnt/merged",
            // A top-level symlink is copied, not bound.
            "create / Dir",
            "symlink /bin -> usr/bin",
            // /etc is expanded: made on the tmpfs, its entries bound one
            // by one, passwd left for the generated file.
            "create /etc Dir",
            "create /etc/hostname File",
            "mount /c/images/x/rootfs/etc/hostname on root:/etc/hostname [MsFlags(MS_BIND)]",
            "mount - on root:/etc/hostname [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND | MS_STRICTATIME)]",
            "create /etc/ssl Dir",
            "mount /c/images/x/rootfs/etc/ssl on root:/etc/ssl [MsFlags(MS_BIND)]",
            "mount - on root:/etc/ssl [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND | MS_STRICTATIME)]",
            // /usr is bound whole.
            "create /usr Dir",
            "mount /c/images/x/rootfs/usr on root:/usr [MsFlags(MS_BIND)]",
            "mount - on root:/usr [MsFlags(MS_RDONLY | MS_REMOUNT | MS_BIND | MS_STRICTATIME)]",
        ]
    );
}

#[test]
fn auto_falls_back_to_the_underlay_where_overlayfs_is_refused() {
    let mut r = Recorder {
        fail: vec![("type overlay".into(), Errno::EPERM)],
        ..Default::default()
    };
    image_dirs(&mut r);
    execute(&mut r, &[image_root(RootMethod::Auto, false)], None).unwrap();
    assert_eq!(
        r.calls
            .iter()
            .filter(|c| c.contains("type overlay"))
            .count(),
        2,
        "tried with and without userxattr"
    );
    assert!(
        r.calls.iter().any(|c| c == "symlink /bin -> usr/bin"),
        "{:#?}",
        r.calls
    );
    // Another error is not a reason to fall back.
    let mut r = Recorder {
        fail: vec![("type overlay".into(), Errno::EIO)],
        ..Default::default()
    };
    let e = execute(&mut r, &[image_root(RootMethod::Auto, false)], None).unwrap_err();
    assert!(e.to_string().contains("overlay of image"), "{e}");
}

#[test]
fn a_writable_root_without_overlayfs_is_refused_in_one_line() {
    let mut r = Recorder {
        fail: vec![("type overlay".into(), Errno::EPERM)],
        ..Default::default()
    };
    let e = execute(&mut r, &[image_root(RootMethod::Auto, true)], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--writable-tmpfs needs an overlay") && e.contains("5.11") && !e.contains('\n'),
        "{e}"
    );
    // The overlay itself is fine with a writable root.
    let mut r = Recorder::default();
    execute(&mut r, &[image_root(RootMethod::Auto, true)], None).unwrap();
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
