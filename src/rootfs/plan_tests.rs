//! Unit tests of mount plans: what `plan::plan` decides for a bundle as
//! root and rootless, user binds, the cgroup view, /dev in each mode,
//! masked and read-only paths and the image root, against a made-up host.

use super::cgroupfs::{hierarchies, CgroupHost};
use super::ops::{MountPlan, Op, What};
use super::plan::{plan, PlanContext};
use super::recorder::FakeHost;
use super::resolve::Leaf;
use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

fn spec(v: serde_json::Value) -> Spec {
    serde_json::from_value(v).unwrap()
}

fn default_bundle(rootless: bool) -> Spec {
    let mut v = crate::spec::default_spec();
    if rootless {
        crate::spec::make_rootless(&mut v, 1000, 1000);
    }
    spec(v)
}

fn ctx<'a>(s: &'a Spec, rootless: bool) -> PlanContext<'a> {
    PlanContext {
        spec: s,
        rootfs: Path::new("/b/rootfs"),
        bundle: Path::new("/b"),
        in_userns: rootless,
        has_cgroupns: true,
        use_mknod: !rootless,
        no_pivot: false,
        own_mount_ns: true,
        image: None,
    }
}

fn host() -> FakeHost {
    let mut files: Vec<PathBuf> = super::dev_nodes::DEFAULT_DEVICES
        .iter()
        .map(|(p, _, _)| PathBuf::from(p))
        .collect();
    files.push("/b/hosts".into());
    FakeHost {
        dirs: vec!["/b/data".into(), "/sys".into(), "/dev/mqueue".into()],
        files,
        links: Vec::new(),
        cgroups: CgroupHost {
            unified: false,
            hierarchies: hierarchies(
                "34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
                "4:memory:/c\n",
            ),
            links: Vec::new(),
        },
        ..Default::default()
    }
}

/// One line per op, enough to read the plan's shape.
fn summary(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .map(|op| match op {
            Op::Mount(m) => match &m.what {
                What::Bind { source, recursive } => format!(
                    "{} {} <- {}",
                    if *recursive { "rbind" } else { "bind" },
                    m.dest.display(),
                    source.display()
                ),
                What::Fs { fstype, .. } => format!("{fstype} {}", m.dest.display()),
            },
            Op::MakeNode(n) => format!("mknod {}", n.path.display()),
            Op::Symlink { link, .. } => format!("symlink {}", link.display()),
            Op::Mask(p) => format!("mask {}", p.display()),
            Op::ReadOnlyPath { path, .. } => format!("ro {}", path.display()),
            Op::OpenRoot(_) => "open root".into(),
            Op::PivotRoot(_) => "pivot_root".into(),
            Op::MoveRoot(_) => "move_root".into(),
            Op::Chroot(_) => "chroot".into(),
            Op::Hooks => "hooks".into(),
            Op::BindOnItself(p) => format!("bind on itself {}", p.display()),
            Op::ImageRoot(r) => {
                format!("image root {} <- {}", r.merged.display(), r.lower.display())
            }
            Op::PropagateRoot { flags, .. } => format!("propagate / {flags:?}"),
            Op::PrivatizeParent(p) => format!("privatize parent of {}", p.display()),
            Op::RootReadOnly { .. } => "root read-only".into(),
            Op::Remount { dest, .. } => format!("remount {}", dest.display()),
            Op::Finish { dest, .. } => format!("finish {}", dest.display()),
            Op::MakeDir(p) => format!("mkdir {}", p.display()),
        })
        .collect()
}

fn mount_at<'a>(p: &'a MountPlan, dest: &str) -> &'a super::ops::MountOp {
    p.setup
        .iter()
        .find_map(|op| match op {
            Op::Mount(m) if m.dest == Path::new(dest) => Some(m),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no mount at {dest}: {:#?}", summary(&p.setup)))
}

#[test]
fn a_default_bundle_as_root_mounts_fresh_filesystems_and_makes_nodes() {
    let s = default_bundle(false);
    let p = plan(&ctx(&s, false), &host()).unwrap();
    let mut expected: Vec<String> = [
        "propagate / MsFlags(MS_REC | MS_SLAVE)",
        "bind on itself /b/rootfs",
        "open root",
        "proc /proc",
        "tmpfs /dev",
        "devpts /dev/pts",
        "tmpfs /dev/shm",
        "mqueue /dev/mqueue",
        "sysfs /sys",
        "tmpfs /sys/fs/cgroup",
        "cgroup /sys/fs/cgroup/memory",
        "remount /sys/fs/cgroup",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(
        ["null", "zero", "full", "random", "urandom", "tty"].map(|d| format!("mknod /dev/{d}")),
    );
    // /proc/kcore is not on the made-up host: no /dev/core link.
    expected
        .extend(["fd", "stdin", "stdout", "stderr", "ptmx"].map(|d| format!("symlink /dev/{d}")));
    expected.extend(["hooks", "pivot_root"].map(String::from));
    assert_eq!(summary(&p.setup), expected);
    // As root, nothing falls back: sysfs and mqueue are mounted fresh.
    assert!(mount_at(&p, "/dev/mqueue").fallback.is_none());
    let sys = mount_at(&p, "/sys");
    let What::Fs { flags, .. } = &sys.what else {
        panic!()
    };
    assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
    assert!(
        sys.refuse_proc,
        "runc's /proc rule applies to every config mount"
    );
    let mut finish: Vec<String> = crate::spec::MASKED_PATHS
        .iter()
        .map(|m| format!("mask {m}"))
        .collect();
    finish.extend(
        crate::spec::READONLY_PATHS
            .iter()
            .map(|r| format!("ro {r}")),
    );
    finish.push("root read-only".into());
    assert_eq!(summary(&p.finish), finish);
    assert!(p.finish.iter().all(|op| !matches!(
        op,
        Op::ReadOnlyPath {
            keep_locked: true,
            ..
        }
    )));
}

#[test]
fn a_rootless_bundle_binds_host_nodes_and_falls_back_for_sysfs_and_mqueue() {
    let s = default_bundle(true);
    let p = plan(&ctx(&s, true), &host()).unwrap();
    let lines = summary(&p.setup);
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(
            lines.contains(&format!("bind /dev/{d} <- /dev/{d}")),
            "{lines:#?}"
        );
    }
    assert!(!lines.iter().any(|l| l.starts_with("mknod")));
    // make_rootless turns /sys into an rbind whose flags need a remount
    // that keeps what the kernel locked.
    let sys = mount_at(&p, "/sys");
    assert_eq!(
        sys.what,
        What::Bind {
            source: "/sys".into(),
            recursive: true
        }
    );
    assert!(sys.then.keep_locked);
    assert!(sys
        .then
        .remount
        .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC));
    let mq = mount_at(&p, "/dev/mqueue");
    let (on, alt) = mq.fallback.as_ref().expect("mqueue falls back");
    assert_eq!(on, &[Errno::EPERM]);
    assert_eq!(
        alt.what,
        What::Bind {
            source: "/dev/mqueue".into(),
            recursive: true
        }
    );
    assert!(p.finish.iter().any(|op| matches!(
        op,
        Op::ReadOnlyPath {
            keep_locked: true,
            ..
        }
    )));
}

#[test]
fn a_missing_host_device_in_a_user_namespace_is_refused_by_name() {
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [],
        "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}
    }));
    let e = plan(&ctx(&s, true), &host()).unwrap_err().to_string();
    assert!(
        e.contains("/dev/fuse") && e.contains("not present on the host"),
        "{e}"
    );
    // Real root makes the node.
    let p = plan(&ctx(&s, false), &host()).unwrap();
    assert!(summary(&p.setup).contains(&"mknod /dev/fuse".to_string()));
}

#[test]
fn user_binds_take_their_flags_by_remount_and_name_a_missing_source() {
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [
            {"destination": "/data", "type": "bind", "source": "data",
             "options": ["rbind", "ro", "nosuid", "rslave"]},
            {"destination": "/etc/hosts", "source": "/b/hosts", "options": ["bind", "rro", "noatime"]}
        ]
    }));
    let p = plan(&ctx(&s, true), &host()).unwrap();
    let data = mount_at(&p, "/data");
    assert_eq!(
        data.what,
        What::Bind {
            source: "/b/data".into(),
            recursive: true
        }
    );
    assert_eq!(data.leaf, Leaf::Dir);
    assert_eq!(data.then.remount, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
    assert_eq!(data.then.propagation, [MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    assert!(data.then.keep_locked && !data.then.explicit_atime);
    let hosts = mount_at(&p, "/etc/hosts");
    assert_eq!(
        hosts.leaf,
        Leaf::File,
        "a file source gets a file mount point"
    );
    assert!(hosts.then.recursive_ro && hosts.then.explicit_atime);
    let missing = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [{"destination": "/x", "type": "bind", "source": "/no/such"}]
    }));
    let e = format!("{:#}", plan(&ctx(&missing, true), &host()).unwrap_err());
    assert!(
        e.contains("mount /x") && e.contains("bind source /no/such"),
        "{e}"
    );
}

#[test]
fn a_dev_bound_from_the_host_gets_no_default_nodes() {
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "mounts": [{"destination": "/dev", "type": "bind", "source": "/sys", "options": ["rbind"]}],
        "linux": {"devices": [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]}
    }));
    let lines = summary(&plan(&ctx(&s, true), &host()).unwrap().setup);
    assert!(
        !lines.iter().any(|l| l.starts_with("symlink")),
        "{lines:#?}"
    );
    // linux.devices still are made (bound, in a user namespace).
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.as_str() == "bind /dev/null <- /dev/null")
            .count(),
        1
    );
}

#[test]
fn the_image_root_is_an_overlay_and_no_pivot_moves_it() {
    let s = spec(serde_json::json!({"ociVersion": "1.0.2", "mounts": []}));
    let mut c = ctx(&s, true);
    c.image = Some(super::plan::ImageContext {
        lower: Path::new("/cache/images/x/rootfs"),
        method: super::ops::RootMethod::Auto,
        files: &[],
        skeletons: None,
        hooks: false,
    });
    c.no_pivot = true;
    let p = plan(&c, &host()).unwrap();
    let lines = summary(&p.setup);
    assert_eq!(lines[1], "image root /b/rootfs <- /cache/images/x/rootfs");
    assert!(!lines.iter().any(|l| l.starts_with("bind on itself")));
    assert_eq!(lines.last().map(String::as_str), Some("move_root"));
}

#[test]
fn shared_and_unbindable_root_propagation() {
    let shared = spec(serde_json::json!({
        "ociVersion": "1.0.2", "mounts": [], "linux": {"rootfsPropagation": "rshared"}
    }));
    let p = plan(&ctx(&shared, false), &host()).unwrap();
    let lines = summary(&p.setup);
    assert_eq!(lines[0], "propagate / MsFlags(MS_REC | MS_SHARED)");
    assert_eq!(lines[1], "privatize parent of /b/rootfs");
    assert_eq!(
        summary(&p.finish).last().map(String::as_str),
        Some("propagate / MsFlags(MS_REC | MS_SHARED)")
    );
    // Unbindable would refuse the binds from the host: it comes last.
    let unbindable = spec(serde_json::json!({
        "ociVersion": "1.0.2", "mounts": [], "linux": {"rootfsPropagation": "unbindable"}
    }));
    let p = plan(&ctx(&unbindable, false), &host()).unwrap();
    assert_eq!(
        summary(&p.setup)[0],
        "propagate / MsFlags(MS_REC | MS_SLAVE)"
    );
    assert_eq!(
        summary(&p.finish).last().map(String::as_str),
        Some("propagate / MsFlags(MS_UNBINDABLE)")
    );
    let bogus = spec(serde_json::json!({
        "ociVersion": "1.0.2", "mounts": [], "linux": {"rootfsPropagation": "sideways"}
    }));
    let e = plan(&ctx(&bogus, false), &host()).unwrap_err().to_string();
    assert!(e.contains("rootfsPropagation"), "{e}");
}

#[test]
fn without_a_mount_namespace_the_callers_propagation_is_left_alone_and_it_chroots() {
    let s = default_bundle(false);
    let mut c = ctx(&s, false);
    c.own_mount_ns = false;
    let p = plan(&c, &host()).unwrap();
    let lines = summary(&p.setup);
    // The mounts still stack on the rootfs bound on itself, so that delete
    // finds them all under one path; nothing touches "/".
    assert_eq!(lines[0], "bind on itself /b/rootfs");
    assert!(
        !lines.iter().any(|l| l.starts_with("propagate")),
        "{lines:#?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("chroot"));
    assert!(lines.contains(&"proc /proc".to_string()));
}

fn image_ctx<'a>(
    s: &'a Spec,
    files: &'a [(PathBuf, Vec<u8>)],
    dirs: &'a super::skeleton::SkeletonDirs,
) -> PlanContext<'a> {
    let mut c = ctx(s, true);
    c.image = Some(super::plan::ImageContext {
        lower: Path::new("/c/images/x/rootfs"),
        method: super::ops::RootMethod::Auto,
        files,
        skeletons: Some(dirs),
        hooks: false,
    });
    c
}

fn image_root_of(p: &MountPlan) -> &super::ops::ImageRoot {
    p.setup
        .iter()
        .find_map(|op| match op {
            Op::ImageRoot(r) => Some(r),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_read_only_image_root_gets_a_skeleton_of_what_the_image_lacks() {
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "/b/rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/home/u", "type": "bind", "source": "/b/data", "options": ["rbind"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/b/hosts", "options": ["bind"]},
        ]
    }));
    let mut h = host();
    h.dirs.push("/proc".into());
    h.dirs.push("/c/images/x/rootfs/proc".into());
    h.dirs.push("/c/images/x/rootfs/etc".into());
    let files = vec![(
        PathBuf::from("/etc/passwd"),
        b"u:x:1:1::/:/bin/sh\n".to_vec(),
    )];
    let dirs = super::skeleton::SkeletonDirs::new(
        "/c/images/x".as_ref(),
        "/c/locks/x.skeleton".as_ref(),
        1,
    );
    let p = plan(&image_ctx(&s, &files, &dirs), &h).unwrap();
    let sk = image_root_of(&p).skeleton.as_ref().unwrap();
    let entries: Vec<String> = sk
        .entries
        .iter()
        .map(|e| {
            format!("{e:?}").split('(').next().unwrap().to_string()
                + " "
                + &e.path().display().to_string()
        })
        .collect();
    assert_eq!(
        entries,
        [
            "Dir dev",
            "Dir etc",
            "File etc/hosts",
            "File etc/passwd",
            "Dir home",
            "Dir home/u"
        ]
    );
    assert!(sk.dir.starts_with("/c/images/x/skeletons"));
    // The underlay (planned too, for the fallback) and the skeleton walk
    // the same paths; each is looked up in the image once.
    let asked = h.asked.borrow().clone();
    let once: std::collections::BTreeSet<_> = asked.iter().collect();
    assert!(asked.contains(&PathBuf::from("/c/images/x/rootfs/etc")));
    assert_eq!(once.len(), asked.len(), "{asked:#?}");
    // The files still travel with the root, for when no skeleton can be
    // made.
    assert_eq!(image_root_of(&p).files, files);

    // A writable root, hooks that may write, or an underlay: none.
    let mut writable = s.clone();
    writable.set_root(Some(
        oci_spec::runtime::RootBuilder::default()
            .path("/b/rootfs")
            .readonly(false)
            .build()
            .unwrap(),
    ));
    let p = plan(&image_ctx(&writable, &files, &dirs), &h).unwrap();
    assert!(image_root_of(&p).skeleton.is_none());
    let mut c = image_ctx(&s, &files, &dirs);
    if let Some(i) = c.image.as_mut() {
        i.hooks = true;
    }
    assert!(image_root_of(&plan(&c, &h).unwrap()).skeleton.is_none());
    let mut c = image_ctx(&s, &files, &dirs);
    if let Some(i) = c.image.as_mut() {
        i.method = super::ops::RootMethod::Underlay;
    }
    assert!(image_root_of(&plan(&c, &h).unwrap()).skeleton.is_none());
}

#[test]
fn a_node_made_outside_every_mount_needs_a_writable_root() {
    // Real root, no /dev mount in the config: the default nodes are made
    // with mknod in the image's own /dev.
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "/b/rootfs", "readonly": true},
        "mounts": []
    }));
    let dirs = super::skeleton::SkeletonDirs::new(
        "/c/images/x".as_ref(),
        "/c/locks/x.skeleton".as_ref(),
        1,
    );
    let mut c = image_ctx(&s, &[], &dirs);
    c.use_mknod = true;
    c.in_userns = false;
    let p = plan(&c, &host()).unwrap();
    assert!(p.setup.iter().any(|op| matches!(op, Op::MakeNode(_))));
    assert!(image_root_of(&p).skeleton.is_none());
    // With a tmpfs on /dev they are made in it.
    let s = spec(serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "/b/rootfs", "readonly": true},
        "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}]
    }));
    let mut c = image_ctx(&s, &[], &dirs);
    c.use_mknod = true;
    c.in_userns = false;
    assert!(image_root_of(&plan(&c, &host()).unwrap())
        .skeleton
        .is_some());
}
