//! What the mount planner asks of the host: whether a bind source is a
//! directory, whether a device node exists, and the host's cgroup layout.
//! Behind a trait, so plans are unit-tested against a made-up host.

use super::cgroupfs::{self, CgroupHost};
use super::kernel::Entry;
use anyhow::Result;
use std::path::Path;

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
