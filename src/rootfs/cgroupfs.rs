//! The container's view of the cgroup hierarchies, planned as runc builds
//! it on v1 and hybrid hosts: a tmpfs with one mount per hierarchy, each showing only the
//! container's own cgroup. Binding the host's /sys/fs/cgroup whole would
//! show every other cgroup on the machine, and a limit file read inside
//! (`memory.limit_in_bytes`) would be the host root's, not the container's.

use super::ops::{Finish, MountOp, Op, What};
use super::options::MountOptions;
use super::resolve::Leaf;
use anyhow::{anyhow, Result};
use nix::errno::Errno;
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};

/// Where the host mounts its hierarchies.
const HOST_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One hierarchy mounted under /sys/fs/cgroup on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The directory name under /sys/fs/cgroup ("memory", "cpu,cpuacct").
    pub name: String,
    /// Controllers for a fresh v1 mount ("memory", "name=systemd"); empty
    /// for cgroup2.
    pub controllers: Vec<String>,
    /// The host directory of this process's own cgroup in the hierarchy.
    pub own: PathBuf,
}

/// The hierarchies of `mountinfo` under /sys/fs/cgroup, each paired with
/// the cgroup that `proc_cgroup` (this process's /proc/self/cgroup) names.
/// When the own path cannot be placed under the mount's root (a cgroup
/// namespace hides it), `own` is the hierarchy's mount point.
pub fn hierarchies(mountinfo: &str, proc_cgroup: &str) -> Vec<Hierarchy> {
    let memberships: Vec<(Vec<&str>, &str)> = proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            let ctrls = f.next()?;
            let path = f.next()?;
            Some((ctrls.split(',').filter(|c| !c.is_empty()).collect(), path))
        })
        .collect();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        let Some(name) = point
            .strip_prefix(HOST_CGROUP_ROOT)
            .and_then(|n| n.strip_prefix('/'))
            .filter(|n| !n.is_empty() && !n.contains('/') && *n != "..")
        else {
            continue;
        };
        let (controllers, path) = match *fstype {
            "cgroup2" => match memberships.iter().find(|(c, _)| c.is_empty()) {
                Some((_, p)) => (Vec::new(), *p),
                None => continue,
            },
            "cgroup" => {
                let superopts: Vec<&str> = post.get(2).map_or(vec![], |o| o.split(',').collect());
                let found = memberships
                    .iter()
                    .find(|(c, _)| !c.is_empty() && c.iter().all(|x| superopts.contains(x)));
                match found {
                    Some((c, p)) => (c.iter().map(|s| s.to_string()).collect(), *p),
                    None => continue,
                }
            }
            _ => continue,
        };
        let mount_point = Path::new(point);
        let own = Path::new(path)
            .strip_prefix(root)
            .ok()
            .filter(|rel| {
                rel.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .map_or_else(|| mount_point.to_path_buf(), |rel| mount_point.join(rel));
        out.push(Hierarchy {
            name: name.to_string(),
            controllers,
            own,
        });
    }
    out
}

/// What the planner needs to know about the host's cgroups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupHost {
    /// /sys/fs/cgroup is one cgroup2 hierarchy (a unified host).
    pub unified: bool,
    /// The v1 and hybrid hierarchies, each with our own cgroup in it.
    pub hierarchies: Vec<Hierarchy>,
    /// Symlinks between sibling hierarchies (cpu -> cpu,cpuacct).
    pub links: Vec<(String, PathBuf)>,
}

/// How a config.json cgroup mount is asked for.
pub struct CgroupMount<'a> {
    pub dest: &'a Path,
    pub opts: &'a MountOptions,
    pub in_userns: bool,
    pub has_cgroupns: bool,
    pub label: String,
}

/// The steps of a cgroup mount: on v1 and hybrid hosts a tmpfs with one
/// mount per hierarchy (fresh in a cgroup namespace where the kernel lets
/// us, else the host's directory of our own cgroup bound), then the
/// sibling symlinks; on a unified host a fresh cgroup2 when the container
/// has its own cgroup namespace, otherwise the host's hierarchy bound in
/// (an unprivileged user may not mount cgroup2 outside one).
pub fn plan(c: &CgroupMount, host: &CgroupHost) -> Vec<Op> {
    let flags = c.opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if host.unified {
        return plan_unified(c, flags);
    }
    let mut ops = vec![Op::Mount(MountOp {
        dest: c.dest.to_path_buf(),
        what: What::Fs {
            fstype: "tmpfs".into(),
            source: "tmpfs".into(),
            flags: flags & !MsFlags::MS_RDONLY,
            data: Some("mode=755".into()),
        },
        leaf: Leaf::Dir,
        refuse_proc: true,
        fallback: None,
        then: Finish::default(),
        label: c.label.clone(),
    })];
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    for h in &host.hierarchies {
        let dest = c.dest.join(&h.name);
        let label = format!("cgroup hierarchy {}", h.name);
        let bind = MountOp {
            dest: dest.clone(),
            what: What::Bind {
                source: h.own.clone(),
                recursive: false,
            },
            leaf: Leaf::Dir,
            refuse_proc: false,
            fallback: None,
            then: Finish {
                remount: extra,
                keep_locked: c.in_userns,
                ..Finish::default()
            },
            label: label.clone(),
        };
        if !c.has_cgroupns {
            ops.push(Op::Mount(bind));
            continue;
        }
        let (fstype, data) = if h.controllers.is_empty() {
            ("cgroup2", None)
        } else {
            ("cgroup", Some(h.controllers.join(",")))
        };
        // An unprivileged user may not mount v1 hierarchies at all.
        ops.push(Op::Mount(MountOp {
            dest,
            what: What::Fs {
                fstype: fstype.into(),
                source: fstype.into(),
                flags,
                data,
            },
            leaf: Leaf::Dir,
            refuse_proc: false,
            fallback: Some((
                vec![Errno::EPERM, Errno::EBUSY, Errno::EINVAL],
                Box::new(bind),
            )),
            then: Finish::default(),
            label,
        }));
    }
    for (name, target) in &host.links {
        ops.push(Op::Symlink {
            target: target.clone(),
            link: c.dest.join(name),
        });
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        ops.push(Op::Remount {
            dest: c.dest.to_path_buf(),
            flags,
            data: Some("mode=755".into()),
            label: "making the cgroup tmpfs read-only".into(),
        });
    }
    let rest = Finish {
        recursive_ro: c.opts.recursive_ro,
        propagation: c.opts.propagation.clone(),
        ..Finish::default()
    };
    if !rest.is_empty() {
        ops.push(Op::Finish {
            dest: c.dest.to_path_buf(),
            then: rest,
        });
    }
    ops
}

fn plan_unified(c: &CgroupMount, flags: MsFlags) -> Vec<Op> {
    let bind = MountOp {
        dest: c.dest.to_path_buf(),
        what: What::Bind {
            source: HOST_CGROUP_ROOT.into(),
            recursive: true,
        },
        leaf: Leaf::Dir,
        refuse_proc: true,
        fallback: None,
        then: Finish {
            remount: flags & !MsFlags::MS_REMOUNT,
            keep_locked: c.in_userns,
            explicit_atime: c.opts.explicit_atime,
            // The controllers are submounts; "ro" must reach them too.
            recursive_ro: c.opts.recursive_ro || flags.contains(MsFlags::MS_RDONLY),
            propagation: c.opts.propagation.clone(),
        },
        label: c.label.clone(),
    };
    if !c.has_cgroupns {
        return vec![Op::Mount(bind)];
    }
    vec![Op::Mount(MountOp {
        dest: c.dest.to_path_buf(),
        what: What::Fs {
            fstype: "cgroup2".into(),
            source: "cgroup2".into(),
            flags,
            data: None,
        },
        leaf: Leaf::Dir,
        refuse_proc: true,
        fallback: Some((vec![Errno::EPERM, Errno::EBUSY], Box::new(bind))),
        then: Finish::default(),
        label: c.label.clone(),
    })]
}

/// The host's cgroup facts, read from /proc and /sys/fs/cgroup.
pub fn read_host() -> Result<CgroupHost> {
    let unified = nix::sys::statfs::statfs(HOST_CGROUP_ROOT)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if unified {
        return Ok(CgroupHost {
            unified,
            ..CgroupHost::default()
        });
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| anyhow!("reading /proc/self/mountinfo: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| anyhow!("reading /proc/self/cgroup: {e}"))?;
    Ok(CgroupHost {
        unified,
        hierarchies: hierarchies(&mountinfo, &own),
        links: sibling_links(),
    })
}

/// Co-mounted controllers have symlinks on the host (cpu -> cpu,cpuacct);
/// tools look for either name. Only links between sibling hierarchies:
/// never anything that could point out of the view.
fn sibling_links() -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(HOST_CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if link.components().count() == 1 && link.is_relative() {
            out.push((name, link));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
40 24 0:40 / /proc rw - proc proc rw
";

    #[test]
    fn each_hierarchy_shows_the_own_cgroup() {
        let cg = "5:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n0::/docker/abc\n";
        let h = hierarchies(MOUNTINFO, cg);
        let got: Vec<(&str, &Path)> = h
            .iter()
            .map(|h| (h.name.as_str(), h.own.as_path()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("unified", Path::new("/sys/fs/cgroup/unified/docker/abc")),
                ("systemd", Path::new("/sys/fs/cgroup/systemd")),
                (
                    "cpu,cpuacct",
                    Path::new("/sys/fs/cgroup/cpu,cpuacct/docker/abc")
                ),
                ("memory", Path::new("/sys/fs/cgroup/memory/docker/abc")),
                ("pids", Path::new("/sys/fs/cgroup/pids/docker/abc")),
            ]
        );
        assert_eq!(h[1].controllers, ["name=systemd"]);
        assert_eq!(h[2].controllers, ["cpu", "cpuacct"]);
        assert!(h[0].controllers.is_empty());
    }

    #[test]
    fn a_path_outside_the_mount_root_falls_back_to_the_mount_point() {
        let mi = "34 30 0:30 /docker /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let h = hierarchies(mi, "4:memory:/other/x\n");
        assert_eq!(h[0].own, Path::new("/sys/fs/cgroup/memory"));
        let h = hierarchies(mi, "4:memory:/docker/../../etc\n");
        assert_eq!(h[0].own, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn hierarchies_we_are_not_in_are_left_out() {
        let h = hierarchies(MOUNTINFO, "4:memory:/a\n");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].name, "memory");
    }

    fn opts(v: &[&str]) -> MountOptions {
        super::super::options::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn request<'a>(o: &'a MountOptions, in_userns: bool, has_cgroupns: bool) -> CgroupMount<'a> {
        CgroupMount {
            dest: Path::new("/sys/fs/cgroup"),
            opts: o,
            in_userns,
            has_cgroupns,
            label: "mount /sys/fs/cgroup".into(),
        }
    }

    fn hybrid() -> CgroupHost {
        CgroupHost {
            unified: false,
            hierarchies: hierarchies(
                MOUNTINFO,
                "5:pids:/c\n4:memory:/c\n3:cpu,cpuacct:/c\n0::/c\n",
            ),
            links: vec![("cpu".into(), "cpu,cpuacct".into())],
        }
    }

    fn dests(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                Op::Mount(m) => format!("mount {}", m.dest.display()),
                Op::Symlink { link, .. } => format!("link {}", link.display()),
                Op::Remount { dest, .. } => format!("remount {}", dest.display()),
                Op::Finish { dest, .. } => format!("finish {}", dest.display()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_hybrid_view_is_a_tmpfs_with_a_bind_of_the_own_cgroup_per_hierarchy() {
        let o = opts(&["nosuid", "noexec", "nodev", "relatime", "ro"]);
        let ops = plan(&request(&o, false, false), &hybrid());
        assert_eq!(
            dests(&ops),
            [
                "mount /sys/fs/cgroup",
                "mount /sys/fs/cgroup/unified",
                "mount /sys/fs/cgroup/cpu,cpuacct",
                "mount /sys/fs/cgroup/memory",
                "mount /sys/fs/cgroup/pids",
                "link /sys/fs/cgroup/cpu",
                "remount /sys/fs/cgroup",
            ]
        );
        // The tmpfs is writable until the links are in, then remounted ro.
        let Op::Mount(tmpfs) = &ops[0] else { panic!() };
        let What::Fs { fstype, flags, .. } = &tmpfs.what else {
            panic!()
        };
        assert_eq!(fstype, "tmpfs");
        assert!(!flags.contains(MsFlags::MS_RDONLY) && tmpfs.refuse_proc);
        let Op::Mount(mem) = &ops[3] else { panic!() };
        assert_eq!(
            mem.what,
            What::Bind {
                source: "/sys/fs/cgroup/memory/c".into(),
                recursive: false
            }
        );
        assert!(mem
            .then
            .remount
            .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert!(mem.fallback.is_none(), "no cgroup namespace: binds only");
        let Op::Remount { flags, .. } = &ops[6] else {
            panic!()
        };
        assert!(flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn in_a_cgroup_namespace_each_hierarchy_is_mounted_fresh_or_else_bound() {
        let o = opts(&["nosuid"]);
        let ops = plan(&request(&o, true, true), &hybrid());
        let Op::Mount(mem) = &ops[3] else { panic!() };
        assert_eq!(
            mem.what,
            What::Fs {
                fstype: "cgroup".into(),
                source: "cgroup".into(),
                flags: MsFlags::MS_NOSUID,
                data: Some("memory".into())
            }
        );
        let (on, alt) = mem.fallback.as_ref().expect("fallback");
        assert_eq!(on, &[Errno::EPERM, Errno::EBUSY, Errno::EINVAL]);
        assert!(matches!(alt.what, What::Bind { .. }) && alt.then.keep_locked);
        // Not read-only: no remount of the tmpfs.
        assert!(!ops.iter().any(|op| matches!(op, Op::Remount { .. })));
    }

    #[test]
    fn a_unified_host_mounts_cgroup2_or_binds_the_host_hierarchy_read_only() {
        let unified = CgroupHost {
            unified: true,
            ..CgroupHost::default()
        };
        let o = opts(&["ro", "nosuid"]);
        let ops = plan(&request(&o, true, false), &unified);
        assert_eq!(ops.len(), 1);
        let Op::Mount(m) = &ops[0] else { panic!() };
        assert_eq!(
            m.what,
            What::Bind {
                source: "/sys/fs/cgroup".into(),
                recursive: true
            }
        );
        assert!(m.then.recursive_ro, "the controllers are submounts");
        let ops = plan(&request(&o, true, true), &unified);
        let Op::Mount(m) = &ops[0] else { panic!() };
        assert!(matches!(&m.what, What::Fs { fstype, .. } if fstype == "cgroup2"));
        assert_eq!(
            m.fallback.as_ref().expect("fallback").0,
            [Errno::EPERM, Errno::EBUSY]
        );
    }
}
