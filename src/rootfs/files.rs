//! Writing generated files (/etc/passwd, /etc/group) into the container's
//! private root. The image is hostile: its /etc may be a symlink into a
//! bind-mounted host directory, so the parent must resolve without symlinks
//! and without leaving the root mount, and the file is replaced, never
//! written through.

use super::in_root::Resolve;
use super::resolve::{create_in_root, openat2_in_root, Leaf};
use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

pub fn write_private_file(root: &OwnedFd, path: &Path, data: &[u8]) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: no file name", path.display()))?;
    let rel = parent.strip_prefix("/").unwrap_or(parent);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = Resolve {
        no_symlinks: true,
        no_xdev: true,
        ..Resolve::new(OFlag::O_PATH | OFlag::O_DIRECTORY)
    };
    let dir = match openat2_in_root(root.as_fd(), rel, how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            create_in_root(root, parent, Leaf::Dir)
                .map_err(|e| anyhow!("creating {}: {e:#}", parent.display()))?;
            openat2_in_root(root.as_fd(), rel, how)
                .map_err(|e| anyhow!("{}: {e}", parent.display()))?
        }
        Err(e) => bail!(
            "{}: not a plain directory of the image ({e}); cannot write {}",
            parent.display(),
            path.display()
        ),
    };
    // Written under a temporary name and renamed over the image's file:
    // on the overlay, an unlink and a create each cost a whiteout dance
    // in its work directory, and a rename onto a lower file needs none.
    // rename(2) replaces a symlink itself, never its target, and refuses
    // a mount point (EBUSY) or a directory (EISDIR).
    let mut tmp = std::ffi::OsString::from(format!(".hpcc-{}-", std::process::id()));
    tmp.push(name);
    let create = || {
        crate::sys::openat(
            dir.as_fd(),
            tmp.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        )
    };
    let fd = match create() {
        // The image holds that name (we never leave one behind).
        Err(Errno::EEXIST) => {
            unlinkat(
                Some(dir.as_raw_fd()),
                tmp.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            )
            .map_err(|e| anyhow!("replacing {}: {e}", path.display()))?;
            create()
        }
        r => r,
    }
    .map_err(|e| anyhow!("creating {}: {e}", path.display()))?;
    let written = std::fs::File::from(fd)
        .write_all(data)
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
        .and_then(|()| {
            nix::fcntl::renameat(
                Some(dir.as_raw_fd()),
                tmp.as_os_str(),
                Some(dir.as_raw_fd()),
                name,
            )
            .map_err(|e| anyhow!("replacing {}: {e}", path.display()))
        });
    if written.is_err() {
        let _ = unlinkat(
            Some(dir.as_raw_fd()),
            tmp.as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    }
    written
}
