//! Removing a container's cgroup on v1 and hybrid hosts from one read of
//! /proc/self/mountinfo. libcgroups' v1 manager finds each controller's
//! mount point through a fresh procfs handle and a new mountinfo read
//! (about 500 syscalls on a hybrid host, paid by every `delete` and every
//! foreground `run`); this finds the same directories at once and removes
//! them as libcgroups does: kill what is left in cgroup.procs, then rmdir,
//! retried while the kernel still counts the dying tasks.

use crate::rootfs::cgroupfs::{hierarchies, Hierarchy};
use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The v1 controllers libcgroups makes a directory in (and so the ones
/// removed here); `name=systemd`, `misc` and `rdma` it leaves alone.
const MANAGED: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// Where the cgroup `path` lives in each managed v1 hierarchy, as
/// libcgroups places it (the hierarchy's mount point joined with the
/// path). Empty when the host has no such hierarchy (cgroup v2 only).
pub fn dirs(root: &Path, hs: &[Hierarchy], path: &Path) -> Result<Vec<PathBuf>> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => bail!("cgroup path {} climbs out of the hierarchy", path.display()),
        }
    }
    let mut out: Vec<PathBuf> = hs
        .iter()
        .filter(|h| h.controllers.iter().any(|c| MANAGED.contains(&c.as_str())))
        .map(|h| root.join(&h.name).join(&rel))
        .collect();
    out.dedup();
    Ok(out)
}

/// Removes cgroup `path` from every managed v1 hierarchy. Ok(false) when
/// the host has none, for the caller to ask libcgroups (cgroup v2).
pub fn remove(path: &Path) -> Result<bool> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| anyhow!("reading {p}: {e}"));
    let hs = hierarchies(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?);
    let dirs = dirs(Path::new("/sys/fs/cgroup"), &hs, path)?;
    if dirs.is_empty() {
        return Ok(false);
    }
    for d in dirs {
        remove_dir(&d)?;
    }
    Ok(true)
}

fn remove_dir(dir: &Path) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    let Ok(list) = std::fs::read_to_string(&procs) else {
        return Ok(()); // not there: never made, or already removed
    };
    for pid in list.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let mut delay = Duration::from_millis(10);
    let mut attempt = 0;
    loop {
        let r = std::fs::remove_dir(dir)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)));
        match r {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if attempt < 8 => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
                attempt += 1;
            }
            Err(e) => bail!("removing cgroup {}: {e}", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, controllers: &[&str]) -> Hierarchy {
        Hierarchy {
            name: name.into(),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            own: PathBuf::from("/"),
        }
    }

    #[test]
    fn each_managed_hierarchy_gets_the_path_once() {
        let hs = [
            h("cpu,cpuacct", &["cpu", "cpuacct"]),
            h("memory", &["memory"]),
            h("systemd", &["name=systemd"]),
            h("unified", &[]),
            h("misc", &["misc"]),
        ];
        let d = dirs(Path::new("/sys/fs/cgroup"), &hs, Path::new("/hpcc/c1")).unwrap();
        assert_eq!(
            d,
            [
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/hpcc/c1"),
                PathBuf::from("/sys/fs/cgroup/memory/hpcc/c1"),
            ]
        );
        // A v2-only host has nothing here.
        assert!(dirs(Path::new("/r"), &[h("", &[])], Path::new("/x"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_path_out_of_the_hierarchy_is_refused() {
        let hs = [h("memory", &["memory"])];
        let e = dirs(Path::new("/r"), &hs, Path::new("/hpcc/../../etc")).unwrap_err();
        assert!(e.to_string().contains("climbs out"), "{e}");
    }

    #[test]
    fn a_cgroup_that_is_not_there_is_already_removed() {
        remove_dir(Path::new("/nonexistent/hpcc/none")).unwrap();
    }
}
