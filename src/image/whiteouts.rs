//! Docker's and OCI's whiteouts, applied while a layer is unpacked:
//! `.wh.NAME` deletes NAME that a lower layer made, and `.wh..wh..opq`
//! makes its directory opaque (it hides what lower layers put in it, but
//! keeps what this layer wrote). Removal never follows a symlink, and the
//! directory holding a whiteout was resolved inside the rootfs.

use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What a whiteout entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout {
    /// Remove this name from the entry's directory.
    Remove(OsString),
    /// Empty the directory of everything lower layers put there.
    Opaque,
}

/// The whiteout an entry's file name stands for, if it is one. A name that
/// names nothing in its directory (`.wh.`, `.wh..`, `.wh..`) is refused.
pub fn classify(name: &str) -> Result<Option<Whiteout>> {
    if name == OPAQUE {
        return Ok(Some(Whiteout::Opaque));
    }
    let Some(target) = name.strip_prefix(PREFIX) else {
        return Ok(None);
    };
    if target.is_empty() || target == "." || target == ".." || target.contains('/') {
        bail!("whiteout {name:?} names no file in its directory");
    }
    Ok(Some(Whiteout::Remove(target.into())))
}

/// Applies `w` in `parent` (the directory at `parent_rel` in the rootfs).
/// `written` holds what this layer has written so far: an opaque directory
/// keeps those, and a removed name counts as written, so a later opaque
/// marker in the same layer does not also look at it.
pub fn apply(
    w: Whiteout,
    parent: &OwnedFd,
    parent_rel: &Path,
    written: &mut HashSet<PathBuf>,
) -> Result<()> {
    match w {
        Whiteout::Remove(name) => {
            written.insert(parent_rel.join(&name));
            remove_entry(parent, &name)
        }
        Whiteout::Opaque => make_opaque(parent, parent_rel, written),
    }
}

fn make_opaque(parent: &OwnedFd, parent_rel: &Path, written: &HashSet<PathBuf>) -> Result<()> {
    let dirfd = crate::sys::openat(
        parent.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .map_err(|e| anyhow!("opaque directory: {e}"))?;
    let mut dir = nix::dir::Dir::from_fd(dirfd.into_raw_fd())
        .map_err(|e| anyhow!("opaque directory: {e}"))?;
    let names: Vec<OsString> = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        if !written.contains(&parent_rel.join(&n)) {
            remove_entry(parent, &n)?;
        }
    }
    Ok(())
}

/// Removes `name` in `parent`, a whole tree if it is a directory. Symlinks
/// are removed, never followed.
pub fn remove_entry(parent: &OwnedFd, name: &OsStr) -> Result<()> {
    match unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => crate::fs::remove_tree_at(parent.as_fd(), name)
            .map_err(|e| anyhow!("removing {}: {e}", Path::new(name).display())),
        Err(e) => bail!("removing {}: {e}", Path::new(name).display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::apply::Applier;
    use std::fs;

    #[test]
    fn names_are_classified() {
        assert_eq!(classify("file").unwrap(), None);
        assert_eq!(classify(".hidden").unwrap(), None);
        assert_eq!(classify(".wh..wh..opq").unwrap(), Some(Whiteout::Opaque));
        assert_eq!(
            classify(".wh.lib").unwrap(),
            Some(Whiteout::Remove("lib".into()))
        );
        // A whiteout of a dot-file is an ordinary whiteout.
        assert_eq!(
            classify(".wh..profile").unwrap(),
            Some(Whiteout::Remove(".profile".into()))
        );
        for bad in [".wh.", ".wh..", ".wh..."] {
            let e = classify(bad).unwrap_err().to_string();
            assert!(e.contains("names no file"), "{bad}: {e}");
        }
    }

    /// A layer tar: (name, Some(content)) is a file, (name, None) a
    /// directory; `links` adds symlinks (name, target).
    fn layer(entries: &[(&str, Option<&str>)], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, name, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, name, &[][..]).unwrap();
                }
            }
        }
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Every path under `root`, sorted, directories marked with '/'.
    fn listing(root: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if e.file_type().unwrap().is_dir() {
                    out.push(format!("{rel}/"));
                    walk(root, &p, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, root, &mut out);
        out.sort();
        out
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hpcc-wh-{tag}-{}", std::process::id()));
        let _ = crate::fs::remove_tree(&d);
        fs::create_dir_all(d.join("rootfs")).unwrap();
        d
    }

    #[test]
    fn whiteouts_remove_files_and_trees_of_lower_layers() {
        let d = scratch("remove");
        let root = d.join("rootfs");
        let mut a = Applier::new(&root, false).unwrap();
        a.apply_layer(
            &layer(
                &[
                    ("etc", None),
                    ("etc/a", Some("1")),
                    ("etc/b", Some("2")),
                    ("lib", None),
                    ("lib/x", None),
                    ("lib/x/y", Some("3")),
                ],
                &[],
            )[..],
        )
        .unwrap();
        a.apply_layer(
            &layer(
                &[
                    ("etc/.wh.a", Some("")),
                    (".wh.lib", Some("")),
                    ("etc/.wh.never-existed", Some("")),
                ],
                &[],
            )[..],
        )
        .unwrap();
        a.finish().unwrap();
        assert_eq!(listing(&root), ["etc/", "etc/b"]);
        crate::fs::remove_tree(&d).unwrap();
    }

    #[test]
    fn an_opaque_directory_keeps_only_what_its_own_layer_wrote() {
        let d = scratch("opaque");
        let root = d.join("rootfs");
        let mut a = Applier::new(&root, false).unwrap();
        a.apply_layer(
            &layer(
                &[
                    ("app", None),
                    ("app/old", Some("1")),
                    ("app/sub", None),
                    ("app/sub/deep", Some("2")),
                    ("keep", Some("k")),
                ],
                &[],
            )[..],
        )
        .unwrap();
        // The new file comes before the marker in the tar: it must survive.
        a.apply_layer(
            &layer(
                &[
                    ("app/new", Some("3")),
                    ("app/.wh..wh..opq", Some("")),
                    ("app/later", Some("4")),
                ],
                &[],
            )[..],
        )
        .unwrap();
        a.finish().unwrap();
        assert_eq!(listing(&root), ["app/", "app/later", "app/new", "keep"]);
        crate::fs::remove_tree(&d).unwrap();
    }

    #[test]
    fn a_whiteout_never_follows_a_symlink_out_of_the_rootfs() {
        let d = scratch("symlink");
        let root = d.join("rootfs");
        let outside = d.join("outside");
        fs::create_dir_all(outside.join("victim")).unwrap();
        fs::write(outside.join("victim/file"), "keep").unwrap();
        let mut a = Applier::new(&root, false).unwrap();
        // "out" points at the host directory; whiting out through it, or
        // making it opaque, must act inside the rootfs only.
        let target = outside.display().to_string();
        a.apply_layer(&layer(&[], &[("out", target.as_str()), ("abs", "/victim")])[..])
            .unwrap();
        a.apply_layer(
            &layer(
                &[
                    ("out/.wh.victim", Some("")),
                    ("abs/.wh..wh..opq", Some("")),
                    (".wh.out", Some("")),
                ],
                &[],
            )[..],
        )
        .unwrap();
        a.finish().unwrap();
        assert_eq!(
            fs::read_to_string(outside.join("victim/file")).unwrap(),
            "keep"
        );
        assert!(
            !listing(&root).contains(&"out".to_string()),
            "the link itself was whited out"
        );
        crate::fs::remove_tree(&d).unwrap();
    }
}
