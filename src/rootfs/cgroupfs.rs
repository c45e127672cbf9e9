//! The container's view of cgroup v1 and hybrid hierarchies, built as runc
//! builds it: a tmpfs with one mount per hierarchy, each showing only the
//! container's own cgroup. Binding the host's /sys/fs/cgroup whole would
//! show every other cgroup on the machine, and a limit file read inside
//! (`memory.limit_in_bytes`) would be the host root's, not the container's.

use super::mounts::{remount_bind, MountContext};
use super::resolve::{fd_path, open_in_root};
use anyhow::{anyhow, Result};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};
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

/// Mounts the container's cgroup view on `target` (a directory in the
/// rootfs): a tmpfs, then each hierarchy, fresh in a cgroup namespace where
/// the kernel lets us, else the host's directory of our own cgroup bound.
/// `flags` are the mount's own (ro, nosuid, ...).
pub fn mount_v1(ctx: &MountContext, dest: &Path, target: &OwnedFd, flags: MsFlags) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| anyhow!("reading /proc/self/mountinfo: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| anyhow!("reading /proc/self/cgroup: {e}"))?;
    let list = hierarchies(&mountinfo, &own);
    let base = flags & !MsFlags::MS_RDONLY;
    mount(
        Some("tmpfs"),
        &fd_path(target),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| anyhow!("tmpfs for the cgroup hierarchies: {e}"))?;
    // A handle from before a mount names what is under it: reopen by name.
    let dir = open_in_root(ctx.root, dest).map_err(|e| anyhow!("reopening: {e}"))?;
    for h in &list {
        mount_hierarchy(ctx, h, &dir, flags)
            .map_err(|e| anyhow!("cgroup hierarchy {}: {e}", h.name))?;
    }
    copy_symlinks(&dir)?;
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            &fd_path(&dir),
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            Some("mode=755"),
        )
        .map_err(|e| anyhow!("making the cgroup tmpfs read-only: {e}"))?;
    }
    Ok(())
}

fn mount_hierarchy(ctx: &MountContext, h: &Hierarchy, dir: &OwnedFd, flags: MsFlags) -> Result<()> {
    let sub = make_dir(dir, &h.name)?;
    if ctx.has_cgroupns {
        let (fstype, data) = if h.controllers.is_empty() {
            ("cgroup2", None)
        } else {
            ("cgroup", Some(h.controllers.join(",")))
        };
        match mount(
            Some(fstype),
            &fd_path(&sub),
            Some(fstype),
            flags,
            data.as_deref(),
        ) {
            Ok(()) => return Ok(()),
            // An unprivileged user may not mount v1 hierarchies at all.
            Err(Errno::EPERM) | Err(Errno::EBUSY) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(anyhow!("mounting {fstype}: {e}")),
        }
    }
    mount(
        Some(&h.own),
        &fd_path(&sub),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| anyhow!("binding {}: {e}", h.own.display()))?;
    let bound = open_dir(dir, &h.name)?;
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        remount_bind(&bound, extra, ctx.in_userns, false)?;
    }
    Ok(())
}

/// Co-mounted controllers have symlinks on the host (cpu -> cpu,cpuacct);
/// tools look for either name.
fn copy_symlinks(dir: &OwnedFd) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(HOST_CGROUP_ROOT) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let name = e.file_name();
        // Only links between sibling hierarchies: never anything that
        // could point out of the tmpfs.
        let sibling = link.components().count() == 1 && link.is_relative();
        if sibling {
            nix::unistd::symlinkat(&link, Some(dir.as_raw_fd()), name.as_os_str())
                .map_err(|e| anyhow!("symlink {}: {e}", Path::new(&name).display()))?;
        }
    }
    Ok(())
}

fn make_dir(dir: &OwnedFd, name: &str) -> Result<OwnedFd> {
    match nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(anyhow!("mkdir {name} in the cgroup tmpfs: {e}")),
    }
    open_dir(dir, name)
}

fn open_dir(dir: &OwnedFd, name: &str) -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let raw = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| anyhow!("opening {name} in the cgroup tmpfs: {e}"))?;
    Ok(crate::sys::adopt(raw))
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
}
