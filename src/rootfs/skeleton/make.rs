//! Making a planned skeleton, once: built under a staging name, made
//! durable, and renamed into place, so a skeleton that exists is whole
//! (its name is the digest of what it holds, and it is trusted as such).
//! Ranks that race to make the same one all end up using one of them.

use crate::rootfs::ops::{Skeleton, SkeletonEntry};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes `s` over the image at `lower` unless it exists.
pub fn ensure(s: &Skeleton, lower: &Path) -> Result<()> {
    match fs::symlink_metadata(&s.dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => bail!("{} is not a directory", s.dir.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("{}", s.dir.display())),
    }
    for d in [s.dir.parent(), s.staging.parent()].into_iter().flatten() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("creating {}", d.display()))
            }
            _ => {}
        }
    }
    let built = build(s, lower);
    let placed = built.and_then(|()| match fs::rename(&s.staging, &s.dir) {
        Ok(()) => Ok(()),
        // Another run made the same one first: its copy serves.
        Err(e) if s.dir.is_dir() => {
            crate::debug!("skeleton {} made by another run ({e})", s.dir.display());
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("renaming into {}", s.dir.display())),
    });
    if s.staging.exists() {
        let _ = crate::fs::remove_tree(&s.staging);
    }
    placed
}

fn build(s: &Skeleton, lower: &Path) -> Result<()> {
    let root = &s.staging;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(root)
        .with_context(|| format!("creating {}", root.display()))?;
    for e in &s.entries {
        let at = root.join(e.path());
        match e {
            SkeletonEntry::Dir(_) => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&at)
                    .with_context(|| format!("creating {}", at.display()))?;
            }
            SkeletonEntry::File(_, data) => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&at)
                    .with_context(|| format!("creating {}", at.display()))?;
                f.write_all(data)
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("writing {}", at.display()))?;
            }
        }
    }
    // A directory the image has too shows the image's mode and owner in
    // the merged root (the upper of two merged directories gives them).
    let dirs = s.entries.iter().filter_map(|e| match e {
        SkeletonEntry::Dir(p) => Some(p.as_path()),
        SkeletonEntry::File(..) => None,
    });
    for rel in dirs.rev().chain([Path::new("")]) {
        let at = root.join(rel);
        match fs::symlink_metadata(lower.join(rel)) {
            Ok(m) if m.is_dir() => like(&at, &m)?,
            _ => {}
        }
        fs::File::open(&at)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", at.display()))?;
    }
    Ok(())
}

/// Gives the directory `at` the mode, and where we may the owner, of `m`.
fn like(at: &Path, m: &fs::Metadata) -> Result<()> {
    let cur = fs::symlink_metadata(at).with_context(|| format!("{}", at.display()))?;
    if (cur.uid(), cur.gid()) != (m.uid(), m.gid()) {
        // Only root may give away a directory; unprivileged, the image's
        // files are all ours anyway.
        if let Err(e) = std::os::unix::fs::lchown(at, Some(m.uid()), Some(m.gid())) {
            crate::debug!("skeleton: owner of {}: {e}", at.display());
        }
    }
    fs::set_permissions(at, fs::Permissions::from_mode(m.mode() & 0o7777))
        .with_context(|| format!("setting the mode of {}", at.display()))
}
