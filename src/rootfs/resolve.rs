//! Paths inside a rootfs are hostile: a symlink in an image may point
//! anywhere. Every path is resolved as if the root were `/` (in_root.rs:
//! openat2 RESOLVE_IN_ROOT, or the same walk by hand where the kernel
//! lacks it), so "..", absolute symlinks and symlink chains all stay
//! inside the root.

use super::in_root::{self, Resolve};
use anyhow::{anyhow, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

fn how(flags: OFlag) -> Resolve {
    Resolve::new(flags)
}

/// Opens `path` inside the root `dir` (see in_root.rs).
pub fn openat2_in_root(dir: BorrowedFd<'_>, path: &Path, how: Resolve) -> nix::Result<OwnedFd> {
    in_root::open(dir, path, how)
}

/// Opens `path` (taken as relative to `root`) as an O_PATH handle.
pub fn open_in_root(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    openat2_in_root(root.as_fd(), &rel, how(OFlag::O_PATH))
}

/// Reads a small regular file of an image, e.g. its /etc/passwd, resolving
/// the path inside `root` so a symlink in the image cannot make us read a
/// host file. None when it is missing, not a regular file, or too large.
pub fn read_in_root(root: &Path, path: &Path, max: u64) -> Option<String> {
    use std::io::Read;
    let dir = crate::sys::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).ok()?;
    let fd = openat2_in_root(
        dir.as_fd(),
        &relative(path),
        how(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
    )
    .ok()?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    let mut text = String::new();
    file.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

pub use crate::fs::fd_path;

fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// What to create at the end of a path that does not exist yet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Leaf {
    Dir,
    File,
}

/// Opens `path` inside `root`, creating missing directories on the way and
/// the last component as `leaf`. Each component is created relative to the
/// already-resolved parent, so a symlink cannot redirect the creation. A
/// dangling symlink on the way is followed the way the container will see
/// it (its target taken inside `root`), so the mount point is made inside
/// the rootfs, as runc does (CVE-2019-16884 / CVE-2021-30465 class).
pub fn create_in_root(root: &OwnedFd, path: &Path, leaf: Leaf) -> Result<OwnedFd> {
    let mut want = relative(path);
    // Most paths exist already: one lookup of the whole path, and the
    // walk below only for what is missing.
    if let Ok(fd) = open_in_root(root, &want) {
        return Ok(fd);
    }
    // The kernel's limit on symlinks in one lookup.
    for _ in 0..40 {
        match create_walk(root, &want, leaf, path)? {
            Walk::Done(fd) => return Ok(fd),
            Walk::Retarget(p) => want = p,
        }
    }
    Err(anyhow!(
        "{}: too many levels of symbolic links",
        path.display()
    ))
}

enum Walk {
    Done(OwnedFd),
    /// A dangling symlink was met: walk this path (inside root) instead.
    Retarget(PathBuf),
}

fn create_walk(root: &OwnedFd, rel: &Path, leaf: Leaf, path: &Path) -> Result<Walk> {
    let comps: Vec<_> = rel.components().collect();
    let mut cur = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        match open_in_root(root, &cur) {
            Ok(fd) => {
                if i + 1 == comps.len() {
                    return Ok(Walk::Done(fd));
                }
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(anyhow!("{}: {e}", path.display())),
        }
        let parent = cur.parent().unwrap_or(Path::new("."));
        let parent_fd = openat2_in_root(
            root.as_fd(),
            &relative(parent),
            how(OFlag::O_DIRECTORY | OFlag::O_RDONLY),
        )
        .map_err(|e| {
            anyhow!(
                "{}: opening parent {}: {e}",
                path.display(),
                parent.display()
            )
        })?;
        let name = c.as_os_str();
        let last = i + 1 == comps.len();
        let made = if last && leaf == Leaf::File {
            crate::sys::openat(
                parent_fd.as_fd(),
                name,
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            nix::sys::stat::mkdirat(
                Some(parent_fd.as_raw_fd()),
                name,
                Mode::from_bits_truncate(0o755),
            )
        };
        match made {
            Ok(()) => {}
            // The name exists but did not resolve: a dangling symlink
            // (O_NOFOLLOW makes that ELOOP for a file).
            Err(Errno::EEXIST) | Err(Errno::ELOOP) => {
                if let Ok(target) = nix::fcntl::readlinkat(Some(parent_fd.as_raw_fd()), name) {
                    let target = PathBuf::from(target);
                    let mut next = if target.is_absolute() {
                        relative(&target)
                    } else {
                        parent.join(target)
                    };
                    next.extend(&comps[i + 1..]);
                    return Ok(Walk::Retarget(next));
                }
                if made != Err(Errno::EEXIST) {
                    return Err(anyhow!("creating {}: {}", path.display(), Errno::ELOOP));
                }
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| format!("creating {}", path.display()))
            }
        }
        if last {
            return open_in_root(root, &cur)
                .map(Walk::Done)
                .map_err(|e| anyhow!("{}: {e}", path.display()));
        }
    }
    open_in_root(root, &cur)
        .map(Walk::Done)
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_cannot_leave_the_root() {
        let base = std::env::temp_dir().join(format!("hpcc-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        symlink("../../../..", root.join("up")).unwrap();
        let rootfd =
            crate::sys::open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        // An absolute symlink to a host directory is re-rooted, so the walk
        // either fails inside the root or creates inside it; never outside.
        let _ = create_in_root(&rootfd, Path::new("/escape/sub"), Leaf::Dir);
        assert!(!outside.join("sub").exists());
        symlink("/inside", root.join("abs")).unwrap();
        std::fs::create_dir(root.join("inside")).unwrap();
        create_in_root(&rootfd, Path::new("/abs/sub"), Leaf::Dir).unwrap();
        assert!(root.join("inside/sub").is_dir());
        // ".." is clamped at the root.
        create_in_root(&rootfd, Path::new("/up/x/file"), Leaf::File).unwrap();
        assert!(root.join("x/file").is_file());
        // A dangling symlink out of the root is followed inside it.
        symlink(outside.join("new"), root.join("dangling")).unwrap();
        create_in_root(&rootfd, Path::new("/dangling/sub"), Leaf::Dir).unwrap();
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("new/sub").is_dir());
        assert!(!outside.join("new").exists());
        symlink("../../../f", root.join("danglingfile")).unwrap();
        create_in_root(&rootfd, Path::new("/danglingfile"), Leaf::File).unwrap();
        assert!(root.join("f").is_file());
        symlink("loop", root.join("loop")).unwrap();
        assert!(create_in_root(&rootfd, Path::new("/loop/x"), Leaf::Dir).is_err());
        create_in_root(&rootfd, Path::new("../../y"), Leaf::Dir).unwrap();
        assert!(root.join("y").is_dir());
        assert!(!base.join("y").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
