//! Removing whole trees: a killed unpack, a retired image, a whited-out
//! directory of a lower layer. Never follows a symlink, and copes with
//! read-only directories and trees deeper than PATH_MAX.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Removes a tree that may hold read-only directories (an unpacked image
/// keeps the modes its layers gave), without following symlinks. It walks
/// with `*at` calls from one directory fd at a time, so neither a tree
/// whose full paths pass PATH_MAX nor one deeper than the fd limit can
/// leave a half-removed unpack behind. A missing path is already removed.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    let name = match path.file_name() {
        Some(n) => n,
        None if fs::symlink_metadata(path).is_err() => return Ok(()),
        None => {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!("{}: not a removable directory", path.display()),
            ))
        }
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let top = match crate::sys::open(parent, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove_tree_at(top.as_fd(), name)
}

/// Removes `name` in directory `dir`: a file or symlink is unlinked (never
/// followed), a directory is removed with everything under it. A missing
/// name is already removed.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<()> {
    let st = match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return match unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    remove_dir_at(dir, name)
}

/// A directory being emptied: its name in its parent and the
/// subdirectories still to remove.
struct Level {
    name: OsString,
    subdirs: Vec<OsString>,
}

/// Removes directory `name` in `top` and everything under it, depth first.
/// Only the current directory's fd is open; the walk climbs back with
/// "..", which in a tree only we write (an unpack in the cache's tmp/
/// under the digest's lock, a skeleton's staging under the image's
/// skeleton lock or renamed out of sight) leads to the directory it came
/// from.
fn remove_dir_at(top: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<()> {
    let mut cur = open_dir_for_removal(top, name)?;
    let mut stack = vec![Level {
        name: name.to_owned(),
        subdirs: empty_dir_of_files(&cur)?,
    }];
    loop {
        let next = stack.last_mut().and_then(|l| l.subdirs.pop());
        if let Some(sub) = next {
            match open_dir_for_removal(cur.as_fd(), &sub) {
                Ok(fd) => cur = fd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            let subdirs = empty_dir_of_files(&cur)?;
            stack.push(Level { name: sub, subdirs });
            continue;
        }
        let Some(done) = stack.pop() else {
            return Ok(());
        };
        let parent = if stack.is_empty() {
            drop(cur);
            unlinkat(
                Some(top.as_raw_fd()),
                done.name.as_os_str(),
                UnlinkatFlags::RemoveDir,
            )?;
            return Ok(());
        } else {
            crate::sys::openat(
                cur.as_fd(),
                "..",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )?
        };
        unlinkat(
            Some(parent.as_raw_fd()),
            done.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        )?;
        cur = parent;
    }
}

/// Opens directory `name` in `parent` for reading, first giving its owner
/// the rwx bits a removal needs. Never follows a symlink.
fn open_dir_for_removal(parent: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<OwnedFd> {
    let st = fstatat(Some(parent.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & 0o700 != 0o700 {
        fchmodat(
            Some(parent.as_raw_fd()),
            name,
            Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700),
            FchmodatFlags::NoFollowSymlink,
        )?;
    }
    Ok(crate::sys::openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )?)
}

/// Unlinks everything in `dir` that is not a directory and returns the
/// names of the subdirectories.
fn empty_dir_of_files(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let reader = crate::sys::openat(
        dir.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in nix::dir::Dir::from_fd(reader.into_raw_fd())?.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_owned());
        }
    }
    let mut subdirs = Vec::new();
    for n in names {
        let st = match fstatat(
            Some(dir.as_raw_fd()),
            n.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            subdirs.push(n);
        } else {
            match unlinkat(
                Some(dir.as_raw_fd()),
                n.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{fchmod, mkdirat};
    use nix::unistd::symlinkat;

    fn open_dir(parent: &OwnedFd, name: &str) -> OwnedFd {
        crate::sys::openat(
            parent.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn remove_tree_takes_deep_read_only_trees_and_never_follows_symlinks() {
        let base = std::env::temp_dir().join(format!("hpcc-rmtree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let outside = base.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("keep"), "keep").unwrap();
        let tree = base.join("tree");
        fs::create_dir(&tree).unwrap();
        // 30 levels of 200-byte names: 6 KB of path, past PATH_MAX, each
        // level read-only and holding a file and a symlink out.
        let name = "d".repeat(200);
        let mut cur =
            crate::sys::open(&tree, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..30 {
            mkdirat(
                Some(cur.as_raw_fd()),
                name.as_str(),
                Mode::from_bits_truncate(0o755),
            )
            .unwrap();
            let next = open_dir(&cur, &name);
            drop(
                crate::sys::openat(
                    next.as_fd(),
                    "f",
                    OFlag::O_CREAT | OFlag::O_WRONLY,
                    Mode::from_bits_truncate(0o444),
                )
                .unwrap(),
            );
            symlinkat(&outside, Some(next.as_raw_fd()), "out").unwrap();
            fchmod(cur.as_raw_fd(), Mode::from_bits_truncate(0o555)).unwrap();
            cur = next;
        }
        fchmod(cur.as_raw_fd(), Mode::from_bits_truncate(0o500)).unwrap();
        drop(cur);
        remove_tree(&tree).unwrap();
        assert!(fs::symlink_metadata(&tree).is_err(), "the tree is gone");
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "keep");
        // A missing path is already removed; a file is unlinked.
        remove_tree(&tree).unwrap();
        fs::write(base.join("file"), "x").unwrap();
        remove_tree(&base.join("file")).unwrap();
        assert!(!base.join("file").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn remove_tree_at_takes_a_file_a_symlink_or_a_tree_by_name() {
        let base = std::env::temp_dir().join(format!("hpcc-rmat-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("tree/sub")).unwrap();
        fs::write(base.join("tree/sub/f"), "x").unwrap();
        fs::write(base.join("keep"), "keep").unwrap();
        std::os::unix::fs::symlink(base.join("keep"), base.join("link")).unwrap();
        let dir =
            crate::sys::open(&base, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        remove_tree_at(dir.as_fd(), OsStr::new("link")).unwrap();
        assert_eq!(
            fs::read_to_string(base.join("keep")).unwrap(),
            "keep",
            "the link's target stays"
        );
        remove_tree_at(dir.as_fd(), OsStr::new("tree")).unwrap();
        remove_tree_at(dir.as_fd(), OsStr::new("missing")).unwrap();
        let left: Vec<_> = fs::read_dir(&base)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [OsString::from("keep")]);
        fs::remove_dir_all(&base).unwrap();
    }
}
