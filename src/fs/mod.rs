//! Filesystem helpers that several layers need: handles on directories,
//! atomic file replacement, reading a buffer full, removal of whole trees without following
//! symlinks, and finding host programs whatever PATH says. A leaf: it
//! knows `sys` and nothing above it.

mod atomic;
pub mod host_tools;
mod remove;

pub use atomic::{write_atomic, write_durable};
pub use remove::{remove_tree, remove_tree_at};

use anyhow::{anyhow, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Reads until `buf` is full or the stream ends; the bytes read. A short
/// count means the end, never a short read (which `read` alone allows).
pub fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match r.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// An O_PATH handle on directory `dir`.
pub fn open_dir_path(dir: &Path) -> Result<OwnedFd> {
    crate::sys::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|e| anyhow!("opening {}: {e}", dir.display()))
}

/// An O_PATH handle on `p`, for calls made through /proc/self/fd.
pub fn open_path(p: &Path) -> Result<OwnedFd> {
    crate::sys::open(p, OFlag::O_PATH, Mode::empty())
        .map_err(|e| anyhow!("opening {}: {e}", p.display()))
}

/// The `/proc/self/fd/N` name of an fd, for syscalls that take a path.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `/proc/self/fd/N/name` for a file in `dir`: a short path for a unix
/// socket whose real path may exceed the 108 bytes sun_path allows.
pub fn short_socket_path(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}
