//! Directory handles kept while a layer is unpacked, so an entry's parent
//! is resolved inside the rootfs once per directory rather than once per
//! entry. Tar streams list a directory's entries together, so a small
//! cache answers almost every lookup without a syscall.
//!
//! A handle is the directory the path resolved to (symlinks followed
//! inside the root) when it was cached. That stays true while nothing is
//! removed: creating entries never moves a directory or turns one into a
//! symlink. Anything that removes (a whiteout, an entry replacing another)
//! must call [`ParentDirs::forget_all`], and the next lookup resolves again.

use crate::rootfs::resolve::{create_in_root, Leaf};
use anyhow::Result;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Few enough open handles to stay far below any descriptor limit.
const MAX_HANDLES: usize = 128;

#[derive(Default)]
pub struct ParentDirs {
    handles: HashMap<PathBuf, Rc<OwnedFd>>,
    pub lookups: u64,
    pub resolved: u64,
}

impl ParentDirs {
    /// The directory at `rel` inside `root`, made (with its missing
    /// ancestors) if need be.
    pub fn get(&mut self, root: &OwnedFd, rel: &Path) -> Result<Rc<OwnedFd>> {
        self.lookups += 1;
        if let Some(fd) = self.handles.get(rel) {
            return Ok(fd.clone());
        }
        self.resolved += 1;
        let fd = Rc::new(create_in_root(root, rel, Leaf::Dir)?);
        if self.handles.len() >= MAX_HANDLES {
            self.handles.clear();
        }
        self.handles.insert(rel.to_path_buf(), fd.clone());
        Ok(fd)
    }

    /// Something was removed: no handle can be trusted to be what its
    /// path now names.
    pub fn forget_all(&mut self) {
        self.handles.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::Mode;

    fn scratch(tag: &str) -> (PathBuf, OwnedFd) {
        let dir = std::env::temp_dir().join(format!("hpcc-parents-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fd = crate::fs::open_dir_path(&dir).unwrap();
        (dir, fd)
    }

    #[test]
    fn a_directory_is_resolved_once_until_something_is_removed() {
        let (dir, root) = scratch("once");
        let mut p = ParentDirs::default();
        for _ in 0..5 {
            p.get(&root, Path::new("usr/lib")).unwrap();
        }
        assert!(dir.join("usr/lib").is_dir());
        assert_eq!((p.lookups, p.resolved), (5, 1));
        // A later layer replaces the directory with a symlink elsewhere: the
        // cached handle is dropped and the new path is followed.
        std::fs::remove_dir_all(dir.join("usr/lib")).unwrap();
        std::fs::create_dir(dir.join("lib64")).unwrap();
        std::os::unix::fs::symlink("/lib64", dir.join("usr/lib")).unwrap();
        p.forget_all();
        let fd = p.get(&root, Path::new("usr/lib")).unwrap();
        nix::sys::stat::mkdirat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&*fd)),
            "x",
            Mode::from_bits_truncate(0o755),
        )
        .unwrap();
        assert!(dir.join("lib64/x").is_dir());
        assert_eq!(p.resolved, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_number_of_open_handles_stays_bounded() {
        let (dir, root) = scratch("bounded");
        let mut p = ParentDirs::default();
        for i in 0..(MAX_HANDLES * 3) {
            p.get(&root, Path::new(&format!("d{i}"))).unwrap();
            assert!(p.handles.len() <= MAX_HANDLES);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
