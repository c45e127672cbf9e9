//! Opening a path as if `root` were `/`: with openat2(RESOLVE_IN_ROOT)
//! where the kernel has it (5.6+), else by walking the path one component
//! at a time, as the kernel would. The walk opens each component with
//! O_PATH|O_NOFOLLOW relative to the directory before it, reads symlinks
//! itself and restarts absolute ones at `root`, and never asks the kernel
//! for "..": it re-walks the (symlink-free) prefix from `root` instead,
//! so ".." stops at `root` and no step can leave it.

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU8, Ordering};

/// How to open the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolve {
    pub flags: OFlag,
    /// Fail (ELOOP) at any symlink, as RESOLVE_NO_SYMLINKS.
    pub no_symlinks: bool,
    /// Fail (EXDEV) when a component is on another mount, as RESOLVE_NO_XDEV.
    pub no_xdev: bool,
}

impl Resolve {
    pub fn new(flags: OFlag) -> Self {
        Resolve {
            flags,
            no_symlinks: false,
            no_xdev: false,
        }
    }

    fn how(&self) -> OpenHow {
        let mut r = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if self.no_symlinks {
            r |= ResolveFlag::RESOLVE_NO_SYMLINKS;
        }
        if self.no_xdev {
            r |= ResolveFlag::RESOLVE_NO_XDEV;
        }
        OpenHow::new()
            .flags(self.flags | OFlag::O_CLOEXEC)
            .resolve(r)
    }
}

/// 0: not known yet, 1: openat2 works, 2: the kernel (or a seccomp
/// filter around us) lacks it.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

/// Opens `path` (relative, or absolute taken from `root`) inside `root`.
pub fn open(root: BorrowedFd<'_>, path: &Path, r: Resolve) -> nix::Result<OwnedFd> {
    if OPENAT2.load(Ordering::Relaxed) != 2 {
        match openat2_retrying(root, path, r.how()) {
            Err(Errno::ENOSYS) => {
                OPENAT2.store(2, Ordering::Relaxed);
                crate::debug!(
                    "openat2 is not available ({}); resolving paths inside the root by hand",
                    Errno::ENOSYS
                );
            }
            res => {
                OPENAT2.store(1, Ordering::Relaxed);
                return res;
            }
        }
    }
    walk(root, path, r)
}

/// openat2, retried on EAGAIN: the kernel answers that when a rename or
/// mount anywhere on the host raced a ".." step, and the lookup is safe to
/// repeat.
fn openat2_retrying(root: BorrowedFd<'_>, path: &Path, how: OpenHow) -> nix::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match crate::sys::openat2(root, path, how) {
            Err(Errno::EAGAIN) if tries < 1000 => tries += 1,
            res => return res,
        }
    }
}

/// The names a path walks through, `..` kept as a step and `.` and the
/// root dropped: what a walk inside a root follows, one at a time.
pub(super) fn parts(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn open_path_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> nix::Result<OwnedFd> {
    crate::sys::openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW, Mode::empty())
}

/// The mount a handle is on, from /proc/self/fdinfo (kernel 3.15+).
fn mount_id(fd: BorrowedFd<'_>) -> nix::Result<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .map_err(|_| Errno::EXDEV)?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::EXDEV)
}

/// The directory `prefix` inside `root`, re-walked from `root` (each
/// component was a directory and no symlink when it was first met).
fn rewalk(root: BorrowedFd<'_>, prefix: &[OsString]) -> nix::Result<OwnedFd> {
    let mut cur = crate::sys::openat(root, ".", OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
    for c in prefix {
        cur = crate::sys::openat(
            cur.as_fd(),
            c.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
    }
    Ok(cur)
}

/// The userspace RESOLVE_IN_ROOT.
pub fn walk(root: BorrowedFd<'_>, path: &Path, r: Resolve) -> nix::Result<OwnedFd> {
    // The kernel takes no path of PATH_MAX bytes or more (NUL included),
    // and neither does its stand-in: the same image must unpack, or not,
    // on every kernel.
    if path.as_os_str().len() >= libc::PATH_MAX as usize {
        return Err(Errno::ENAMETOOLONG);
    }
    let mut todo = parts(path);
    let mut prefix: Vec<OsString> = Vec::new();
    let mut cur = rewalk(root, &prefix)?;
    let root_mnt = if r.no_xdev {
        Some(mount_id(root)?)
    } else {
        None
    };
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            if prefix.pop().is_some() {
                cur = rewalk(root, &prefix)?;
            }
            continue;
        }
        let last = todo.is_empty();
        let fd = open_path_at(cur.as_fd(), &c)?;
        let st = fstat(fd.as_raw_fd())?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            if r.no_symlinks {
                return Err(Errno::ELOOP);
            }
            links += 1;
            if links > 40 {
                return Err(Errno::ELOOP);
            }
            let target = nix::fcntl::readlinkat(Some(cur.as_raw_fd()), c.as_os_str())?;
            let target = Path::new(&target);
            if target.is_absolute() {
                prefix.clear();
                cur = rewalk(root, &prefix)?;
            }
            for t in parts(target).into_iter().rev() {
                todo.push_front(t);
            }
            continue;
        }
        if let Some(m) = root_mnt {
            if mount_id(fd.as_fd())? != m {
                return Err(Errno::EXDEV);
            }
        }
        if !last {
            if kind != SFlag::S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
            prefix.push(c);
            cur = fd;
            continue;
        }
        return finish(cur.as_fd(), &c, fd, kind, r.flags);
    }
    // The root itself (an empty path, or one that climbed back to it).
    let fd = rewalk(root, &prefix)?;
    if r.flags.contains(OFlag::O_PATH) {
        return Ok(fd);
    }
    crate::sys::openat(fd.as_fd(), ".", r.flags & !OFlag::O_NOFOLLOW, Mode::empty())
}

/// The last component, opened as asked. An O_PATH handle is the one the
/// walk already holds; anything else is opened again, O_NOFOLLOW, so a
/// symlink swapped in meanwhile is refused rather than followed.
fn finish(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    fd: OwnedFd,
    kind: SFlag,
    flags: OFlag,
) -> nix::Result<OwnedFd> {
    if flags.contains(OFlag::O_DIRECTORY) && kind != SFlag::S_IFDIR {
        return Err(Errno::ENOTDIR);
    }
    if flags.contains(OFlag::O_PATH) {
        return Ok(fd);
    }
    crate::sys::openat(dir, name, flags | OFlag::O_NOFOLLOW, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tree(std::path::PathBuf);
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = crate::fs::remove_tree(&self.0);
        }
    }

    /// A root with symlinks that try to leave it, and a file outside.
    fn tree(tag: &str) -> (Tree, OwnedFd) {
        let base = std::env::temp_dir().join(format!("hpcc-inroot-{tag}-{}", std::process::id()));
        let _ = crate::fs::remove_tree(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(base.join("secret"), "host").unwrap();
        std::fs::write(root.join("secret"), "inside").unwrap();
        std::fs::write(root.join("a/b/f"), "f").unwrap();
        symlink("/secret", root.join("abs")).unwrap();
        symlink("../../../../secret", root.join("a/up")).unwrap();
        symlink("b", root.join("a/rel")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("/proc/self/root/etc", root.join("magic")).unwrap();
        let fd =
            crate::sys::open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        (Tree(base), fd)
    }

    fn read(
        root: &OwnedFd,
        p: &str,
        how: fn(BorrowedFd<'_>, &Path, Resolve) -> nix::Result<OwnedFd>,
    ) -> nix::Result<String> {
        let fd = how(root.as_fd(), Path::new(p), Resolve::new(OFlag::O_RDONLY))?;
        Ok(std::io::read_to_string(std::fs::File::from(fd)).unwrap())
    }

    #[test]
    fn the_walk_keeps_every_path_inside_the_root_as_openat2_does() {
        let (_t, root) = tree("walk");
        type How = fn(BorrowedFd<'_>, &Path, Resolve) -> nix::Result<OwnedFd>;
        let hows: [How; 2] = [walk, open];
        for how in hows {
            assert_eq!(read(&root, "/abs", how).unwrap(), "inside");
            assert_eq!(read(&root, "a/up", how).unwrap(), "inside");
            assert_eq!(read(&root, "../../secret", how).unwrap(), "inside");
            assert_eq!(read(&root, "a/rel/f", how).unwrap(), "f");
            assert_eq!(read(&root, "a/b/../../a/./b/f", how).unwrap(), "f");
            assert_eq!(read(&root, "loop", how), Err(Errno::ELOOP));
            // A magic link's text is taken as a path inside the root.
            assert_eq!(read(&root, "magic", how), Err(Errno::ENOENT));
            assert_eq!(read(&root, "secret/x", how), Err(Errno::ENOTDIR));
            let long = "a/".repeat(2100);
            assert_eq!(read(&root, &long, how), Err(Errno::ENAMETOOLONG));
            let strict = Resolve {
                no_symlinks: true,
                ..Resolve::new(OFlag::O_PATH)
            };
            assert_eq!(
                how(root.as_fd(), Path::new("a/rel/f"), strict).err(),
                Some(Errno::ELOOP)
            );
            assert!(how(root.as_fd(), Path::new("a/b/f"), strict).is_ok());
            let dir = Resolve::new(OFlag::O_PATH | OFlag::O_DIRECTORY);
            assert_eq!(
                how(root.as_fd(), Path::new("secret"), dir).err(),
                Some(Errno::ENOTDIR)
            );
            assert!(how(root.as_fd(), Path::new("."), dir).is_ok());
        }
    }

    #[test]
    fn crossing_a_mount_is_refused_when_asked() {
        // /proc is another mount than the temp dir: open it as a root and
        // ask for its own "self" link's target dir with no_xdev.
        let (_t, root) = tree("xdev");
        let xdev = Resolve {
            no_xdev: true,
            ..Resolve::new(OFlag::O_PATH)
        };
        assert!(walk(root.as_fd(), Path::new("a/b"), xdev).is_ok());
        let proc =
            crate::sys::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(
            walk(proc.as_fd(), Path::new("proc/1"), xdev).err(),
            Some(Errno::EXDEV)
        );
    }
}
