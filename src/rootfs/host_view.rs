//! What the mount planner asks of the host: whether a bind source is a
//! directory, whether a device node exists, and the host's cgroup layout.
//! Behind a trait, so plans are unit-tested against a made-up host.

use super::cgroupfs::{self, CgroupHost};
use super::kernel::Entry;
use anyhow::Result;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub trait HostView {
    /// Whether `path` (symlinks followed) is a directory; an error for a
    /// path that cannot be reached.
    fn is_dir(&self, path: &Path) -> std::io::Result<bool>;
    fn exists(&self, path: &Path) -> bool;
    fn cgroups(&self) -> Result<CgroupHost>;
    /// What is at `path`, without following a final symlink (the image
    /// the underlay is planned for); None when nothing, or unreadable.
    fn entry(&self, path: &Path) -> Option<Entry>;
}

/// The machine we run on.
pub struct RealHost;

impl HostView for RealHost {
    fn is_dir(&self, path: &Path) -> std::io::Result<bool> {
        std::fs::metadata(path).map(|m| m.is_dir())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn cgroups(&self) -> Result<CgroupHost> {
        cgroupfs::read_host()
    }

    fn entry(&self, path: &Path) -> Option<Entry> {
        super::kernel::lstat_entry(path).ok().flatten()
    }
}

/// A host whose `entry` answers are remembered: the underlay and the
/// skeleton of one start look up the same image paths (every mount point
/// and generated file, and the directories above them), and each lookup
/// is an lstat per path component. The image is immutable, so an answer
/// cannot go stale within one plan.
pub struct Remembered<'a> {
    host: &'a dyn HostView,
    entries: RefCell<HashMap<PathBuf, Option<Entry>>>,
}

impl<'a> Remembered<'a> {
    pub fn new(host: &'a dyn HostView) -> Self {
        Remembered {
            host,
            entries: RefCell::new(HashMap::new()),
        }
    }
}

impl HostView for Remembered<'_> {
    fn is_dir(&self, path: &Path) -> std::io::Result<bool> {
        self.host.is_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.host.exists(path)
    }

    fn cgroups(&self) -> Result<CgroupHost> {
        self.host.cgroups()
    }

    fn entry(&self, path: &Path) -> Option<Entry> {
        if let Some(e) = self.entries.borrow().get(path) {
            return e.clone();
        }
        let e = self.host.entry(path);
        self.entries
            .borrow_mut()
            .insert(path.to_path_buf(), e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::recorder::FakeHost;

    #[test]
    fn each_entry_is_asked_of_the_host_once() {
        let mut host = FakeHost::default();
        host.dirs.push("/img/etc".into());
        host.links.push(("/img/lib".into(), "usr/lib".into()));
        let r = Remembered::new(&host);
        for _ in 0..3 {
            assert_eq!(r.entry(Path::new("/img/etc")), Some(Entry::Dir));
            assert_eq!(
                r.entry(Path::new("/img/lib")),
                Some(Entry::Symlink("usr/lib".into()))
            );
            assert_eq!(r.entry(Path::new("/img/home")), None);
        }
        assert_eq!(host.asked.borrow().len(), 3);
    }
}
