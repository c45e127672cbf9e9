//! Where a container path lands in the cached image, found by reading the
//! image (not by mounting it): the image's symlinks are followed inside
//! the image, as the mount code will follow them inside the root. Both
//! the underlay and the skeleton plan from this.

use super::host_view::HostView;
use super::in_root::parts;
use super::kernel::Entry;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A container path, looked up in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InImage {
    /// The real path (relative to the image) of the longest prefix that
    /// exists: the whole path when `missing` is empty and not `blocked`.
    pub found: PathBuf,
    /// The names after `found` that the image lacks, the first of them
    /// missing from `found` (the rest of the walk, `..` kept as is).
    pub missing: Vec<OsString>,
    /// A file stands where a directory is needed, or symlinks loop.
    pub blocked: bool,
    /// A symlink was followed on the way.
    pub via_symlink: bool,
}

impl InImage {
    /// All of the path exists in the image.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && !self.blocked
    }
}

/// Looks `path` up in the image at `lower`.
pub fn lookup(lower: &Path, path: &Path, host: &dyn HostView) -> InImage {
    let mut todo = parts(path);
    let mut out = InImage {
        found: PathBuf::new(),
        missing: Vec::new(),
        blocked: false,
        via_symlink: false,
    };
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            out.found.pop();
            continue;
        }
        let next = out.found.join(&c);
        match host.entry(&lower.join(&next)) {
            None => {
                out.missing.push(c);
                out.missing.extend(todo);
                return out;
            }
            Some(Entry::Dir) => out.found = next,
            Some(Entry::Symlink(target)) => {
                links += 1;
                out.via_symlink = true;
                if links > 40 {
                    out.blocked = true;
                    return out;
                }
                if target.is_absolute() {
                    out.found = PathBuf::new();
                }
                for t in parts(&target).into_iter().rev() {
                    todo.push_front(t);
                }
            }
            Some(Entry::Other) if todo.is_empty() => {
                out.found = next;
                return out;
            }
            Some(Entry::Other) => {
                out.blocked = true;
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::recorder::FakeHost;

    fn image() -> FakeHost {
        let mut h = FakeHost::default();
        for d in ["etc", "run", "var", "usr", "usr/lib"] {
            h.dirs.push(Path::new("/img").join(d));
        }
        h.files.push("/img/etc/passwd".into());
        h.links.push(("/img/var/run".into(), "/run".into()));
        h.links.push(("/img/lib".into(), "usr/lib".into()));
        h.links.push(("/img/loop".into(), "loop".into()));
        h
    }

    #[test]
    fn symlinks_are_followed_inside_the_image() {
        let l = lookup(Path::new("/img"), Path::new("/var/run/x/y"), &image());
        assert_eq!(l.found, PathBuf::from("run"));
        assert_eq!(l.missing, vec![OsString::from("x"), OsString::from("y")]);
        assert!(l.via_symlink && !l.blocked && !l.complete());
        let l = lookup(Path::new("/img"), Path::new("/lib"), &image());
        assert_eq!(l.found, PathBuf::from("usr/lib"));
        assert!(l.complete());
    }

    #[test]
    fn a_file_on_the_way_or_a_loop_blocks() {
        let l = lookup(Path::new("/img"), Path::new("/etc/passwd/x"), &image());
        assert!(l.blocked && !l.complete());
        let l = lookup(Path::new("/img"), Path::new("/loop/x"), &image());
        assert!(l.blocked);
        let l = lookup(Path::new("/img"), Path::new("/etc/passwd"), &image());
        assert!(l.complete() && !l.via_symlink);
        assert_eq!(l.found, PathBuf::from("etc/passwd"));
    }
}
