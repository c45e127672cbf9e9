//! The system calls a mount plan is carried out with, behind one trait, so
//! the executor can run against the kernel or, in unit tests, against a
//! recording fake (recorder.rs), as youki tests its rootfs code. Every
//! mount hpcc makes goes through [`Kernel::mount`].

use super::ops::{Node, NodeKind, Skeleton};
use super::resolve::{self, Leaf};
use anyhow::{anyhow, Result};
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where a call acts: through a handle resolved inside the container's
/// root (mounts go through /proc/self/fd/N, so nothing is looked up
/// twice), or at a plain path of our mount namespace.
pub enum Target<'a, F> {
    Fd(&'a F),
    Path(&'a Path),
}

impl<F> Clone for Target<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F> Copy for Target<'_, F> {}

/// What the name at a path is (without following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    Other,
}

/// An entry of an image directory, as the underlay copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    Symlink(PathBuf),
    /// A file, or anything else a bind can cover.
    Other,
}

/// The kind of the name at `path` without following it, None if missing.
pub fn lstat_entry(path: &Path) -> std::io::Result<Option<Entry>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(Some(Entry::Dir)),
        Ok(m) if m.file_type().is_symlink() => Ok(Some(Entry::Symlink(std::fs::read_link(path)?))),
        Ok(_) => Ok(Some(Entry::Other)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub trait Kernel {
    /// A handle on a resolved path.
    type Fd;
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: Target<'_, Self::Fd>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// A handle on the root that container paths resolve in.
    fn open_root(&mut self, path: &Path) -> Result<Self::Fd>;
    /// `path` inside `root`, its missing directories and last component
    /// (as `leaf`) created on the way, never through a symlink out.
    fn create_in_root(&mut self, root: &Self::Fd, path: &Path, leaf: Leaf) -> Result<Self::Fd>;
    /// `path` inside `root`, which must exist.
    fn open_in_root(&mut self, root: &Self::Fd, path: &Path) -> nix::Result<Self::Fd>;
    /// A plain path of our mount namespace (after the switch of root).
    fn open_path(&mut self, path: &Path) -> Result<Self::Fd>;
    /// The handle is on a procfs.
    fn on_procfs(&mut self, fd: &Self::Fd) -> bool;
    /// The raw ST_* flags of the mount at `target`.
    fn mount_flags(&mut self, target: Target<'_, Self::Fd>) -> nix::Result<u64>;
    /// mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE).
    fn set_recursive_readonly(&mut self, fd: &Self::Fd) -> nix::Result<()>;
    /// The mount points at and under where `fd` is, parents first (from
    /// /proc/self/mountinfo), as paths of our mount namespace.
    fn submounts(&mut self, fd: &Self::Fd) -> Result<Vec<PathBuf>>;
    /// What is at a plain path, None when nothing is.
    fn kind(&mut self, path: &Path) -> std::io::Result<Option<FileKind>>;
    /// A directory at a plain path.
    fn mkdir(&mut self, path: &Path) -> std::io::Result<()>;
    /// The entries of the directory at a plain path, sorted by name.
    fn read_dir(&mut self, path: &Path) -> std::io::Result<Vec<(std::ffi::OsString, Entry)>>;
    /// A symlink `name` in `dir`.
    fn symlink(&mut self, dir: &Self::Fd, name: &OsStr, target: &Path) -> nix::Result<()>;
    /// The node `node` as `name` in `dir`, replacing what is there.
    fn make_node(&mut self, dir: &Self::Fd, name: &OsStr, node: &Node) -> Result<()>;
    /// Makes the skeleton `s` over the image `lower` unless it exists.
    fn make_skeleton(&mut self, s: &Skeleton, lower: &Path) -> Result<()>;
    /// Writes a generated file at `path` inside `root`, replacing the
    /// image's (never writing through it).
    fn write_file(&mut self, root: &Self::Fd, path: &Path, data: &[u8]) -> Result<()>;
    fn pivot_root(&mut self, rootfs: &Path) -> Result<()>;
    fn move_root(&mut self, rootfs: &Path) -> Result<()>;
    fn chroot(&mut self, rootfs: &Path) -> Result<()>;
}

/// The mount points of `mountinfo` at or under `at`, parents first.
pub fn mounts_under(mountinfo: &str, at: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(at))
        .collect();
    out.sort_by_key(|p| p.components().count());
    out.dedup();
    out
}

/// mountinfo writes space, tab, newline and backslash as \ooo.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The real thing.
pub struct Host;

fn path_of<'a>(target: Target<'a, OwnedFd>, buf: &'a mut PathBuf) -> &'a Path {
    match target {
        Target::Fd(fd) => {
            *buf = crate::fs::fd_path(fd);
            buf
        }
        Target::Path(p) => p,
    }
}

impl Kernel for Host {
    type Fd = OwnedFd;

    fn mount(
        &mut self,
        source: Option<&Path>,
        target: Target<'_, OwnedFd>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        let mut buf = PathBuf::new();
        nix::mount::mount(source, path_of(target, &mut buf), fstype, flags, data)
    }

    fn open_root(&mut self, path: &Path) -> Result<OwnedFd> {
        crate::fs::open_path(path)
    }

    fn create_in_root(&mut self, root: &OwnedFd, path: &Path, leaf: Leaf) -> Result<OwnedFd> {
        resolve::create_in_root(root, path, leaf)
    }

    fn open_in_root(&mut self, root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
        resolve::open_in_root(root, path)
    }

    fn open_path(&mut self, path: &Path) -> Result<OwnedFd> {
        crate::fs::open_path(path)
    }

    fn on_procfs(&mut self, fd: &OwnedFd) -> bool {
        nix::sys::statfs::fstatfs(fd)
            .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
    }

    fn mount_flags(&mut self, target: Target<'_, OwnedFd>) -> nix::Result<u64> {
        let mut buf = PathBuf::new();
        crate::sys::mount_flags(path_of(target, &mut buf))
    }

    fn set_recursive_readonly(&mut self, fd: &OwnedFd) -> nix::Result<()> {
        const MOUNT_ATTR_RDONLY: u64 = 1;
        crate::sys::mount_setattr_recursive(fd.as_fd(), MOUNT_ATTR_RDONLY, 0)
    }

    fn submounts(&mut self, fd: &OwnedFd) -> Result<Vec<PathBuf>> {
        let at = std::fs::read_link(crate::fs::fd_path(fd))
            .map_err(|e| anyhow!("finding the mount's path: {e}"))?;
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| anyhow!("reading /proc/self/mountinfo: {e}"))?;
        Ok(mounts_under(&info, &at))
    }

    fn kind(&mut self, path: &Path) -> std::io::Result<Option<FileKind>> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Ok(Some(FileKind::Dir)),
            Ok(_) => Ok(Some(FileKind::Other)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mkdir(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)
    }

    fn read_dir(&mut self, path: &Path) -> std::io::Result<Vec<(std::ffi::OsString, Entry)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if let Some(kind) = lstat_entry(&e.path())? {
                out.push((e.file_name(), kind));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn symlink(&mut self, dir: &OwnedFd, name: &OsStr, target: &Path) -> nix::Result<()> {
        nix::unistd::symlinkat(target, Some(dir.as_raw_fd()), name)
    }

    fn make_node(&mut self, dir: &OwnedFd, name: &OsStr, node: &Node) -> Result<()> {
        let path = node.path.display();
        // The parent handle was resolved inside the root, so the node is
        // made there even if the image put a symlink on the way.
        let _ = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        let kind = match node.kind {
            NodeKind::Char => SFlag::S_IFCHR,
            NodeKind::Block => SFlag::S_IFBLK,
            NodeKind::Fifo => SFlag::S_IFIFO,
        };
        mknodat(
            Some(dir.as_raw_fd()),
            name,
            kind,
            Mode::from_bits_truncate(node.mode),
            makedev(node.major, node.minor),
        )
        .map_err(|e| anyhow!("mknod {path}: {e}"))?;
        let fd = crate::sys::openat(
            dir.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| anyhow!("opening {path}: {e}"))?;
        nix::unistd::fchownat(
            Some(fd.as_raw_fd()),
            "",
            Some(node.uid.into()),
            Some(node.gid.into()),
            nix::unistd::FchownatFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| anyhow!("chown {path}: {e}"))?;
        nix::sys::stat::fchmodat(
            None,
            &crate::fs::fd_path(&fd),
            Mode::from_bits_truncate(node.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| anyhow!("chmod {path}: {e}"))
    }

    fn make_skeleton(&mut self, s: &Skeleton, lower: &Path) -> Result<()> {
        super::skeleton::make::ensure(s, lower)
    }

    fn write_file(&mut self, root: &OwnedFd, path: &Path, data: &[u8]) -> Result<()> {
        super::files::write_private_file(root, path, data)
    }

    fn pivot_root(&mut self, rootfs: &Path) -> Result<()> {
        super::pivot::pivot_into(rootfs)
    }

    fn move_root(&mut self, rootfs: &Path) -> Result<()> {
        super::pivot::move_into(rootfs)
    }

    fn chroot(&mut self, rootfs: &Path) -> Result<()> {
        super::pivot::chroot_into(rootfs)
    }
}
