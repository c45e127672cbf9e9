//! Making a planned skeleton, once: built under a staging name beside the
//! others, made durable, and renamed into place, so a skeleton that exists
//! is whole (its name is the digest of what it holds, and it is trusted as
//! such). One process per node makes an image's skeletons at a time (an
//! flock); ranks that arrive meanwhile wait for it and use its result.

use crate::rootfs::ops::{Skeleton, SkeletonEntry};
use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Where a staging name starts; nothing else in the store does.
pub const STAGING_PREFIX: &str = ".tmp.";

/// A staging directory this old was left by a killed run: a skeleton is
/// made in milliseconds (this covers a builder on another node, whose
/// flock a network filesystem may not show us).
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Makes `s` over the image at `lower` unless it exists.
pub fn ensure(s: &Skeleton, lower: &Path) -> Result<()> {
    if exists(&s.dir)? {
        return Ok(());
    }
    let dirs = &s.dirs;
    let _lock = lock(&dirs.lock)?;
    if exists(&s.dir)? {
        return Ok(());
    }
    match fs::DirBuilder::new().mode(0o700).create(&dirs.store) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("creating {}", dirs.store.display()))
        }
        _ => {}
    }
    clear_stale(&dirs.store, SystemTime::now());
    let placed = build(s, lower).and_then(|()| match fs::rename(&dirs.staging, &s.dir) {
        Ok(()) => Ok(()),
        // Made meanwhile by a run on another node: its copy serves.
        Err(e) if s.dir.is_dir() => {
            crate::debug!("skeleton {} made by another run ({e})", s.dir.display());
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("renaming into {}", s.dir.display())),
    });
    if dirs.staging.exists() {
        let _ = crate::fs::remove_tree(&dirs.staging);
    }
    placed
}

fn exists(dir: &Path) -> Result<bool> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("{}", dir.display())),
    }
}

/// The image's skeleton lock, held while one is made (and by `prune`
/// while it removes them).
pub fn lock(path: &Path) -> Result<Flock<fs::File>> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}

/// Removes what killed runs left in `store`: staging directories older
/// than [`STALE_AFTER`] at `now`.
pub fn clear_stale(store: &Path, now: SystemTime) {
    let Ok(rd) = fs::read_dir(store) else {
        return;
    };
    for e in rd.flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(STAGING_PREFIX)
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_AFTER));
        if stale {
            crate::debug!("removing {}, left by a killed run", e.path().display());
            let _ = crate::fs::remove_tree(&e.path());
        }
    }
}

fn build(s: &Skeleton, lower: &Path) -> Result<()> {
    let root = &s.dirs.staging;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(root)
        .with_context(|| format!("creating {}", root.display()))?;
    for e in &s.entries {
        let at = root.join(e.path());
        match e {
            SkeletonEntry::Dir(_) => fs::DirBuilder::new()
                .mode(0o700)
                .create(&at)
                .with_context(|| format!("creating {}", at.display()))?,
            SkeletonEntry::File(_, data) => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&at)
                    .with_context(|| format!("creating {}", at.display()))?;
                // Whatever the umask: every later run shares these.
                f.set_permissions(fs::Permissions::from_mode(0o644))
                    .and_then(|()| f.write_all(data))
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("writing {}", at.display()))?;
            }
        }
    }
    // Modes last, deepest first, so none stops the making of its
    // children. A directory the image has too takes the image's mode and
    // owner (the upper of two merged directories gives them); a new one,
    // and the root (the unpack keeps the image's own root private to the
    // cache), is 0755, as the private overlay's were.
    let dirs = s.entries.iter().filter_map(|e| match e {
        SkeletonEntry::Dir(p) => Some(p.as_path()),
        SkeletonEntry::File(..) => None,
    });
    for rel in dirs.rev().chain([Path::new("")]) {
        let at = root.join(rel);
        match fs::symlink_metadata(lower.join(rel)) {
            Ok(m) if m.is_dir() && !rel.as_os_str().is_empty() => like(&at, &m)?,
            _ => fs::set_permissions(&at, fs::Permissions::from_mode(0o755))
                .with_context(|| format!("setting the mode of {}", at.display()))?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::ops::SkeletonDirs;
    use std::path::PathBuf;

    fn dirs_of(image_dir: &Path, lock: &Path) -> SkeletonDirs {
        SkeletonDirs::new(image_dir, lock, 7)
    }

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// An image with /etc (0750) and /ro (0555), and its skeleton dirs.
    fn setup(tag: &str) -> (Tmp, PathBuf, SkeletonDirs) {
        let t = std::env::temp_dir().join(format!("hpcc-skel-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let lower = t.join("image/rootfs");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(lower.join("ro")).unwrap();
        fs::set_permissions(lower.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(lower.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::create_dir_all(t.join("locks")).unwrap();
        let dirs = dirs_of(&t.join("image"), &t.join("locks/x.skeleton"));
        (Tmp(t), lower, dirs)
    }

    fn skeleton(dirs: &SkeletonDirs, name: &str) -> Skeleton {
        Skeleton {
            dir: dirs.store.join(name),
            dirs: dirs.clone(),
            entries: vec![
                SkeletonEntry::Dir("etc".into()),
                SkeletonEntry::File("etc/passwd".into(), b"u:x:1:1::/:/bin/sh\n".to_vec()),
                SkeletonEntry::Dir("ro".into()),
                SkeletonEntry::Dir("ro/point".into()),
            ],
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_skeleton_is_made_whole_with_the_images_modes() {
        let (_t, lower, dirs) = setup("make");
        let s = skeleton(&dirs, "k1");
        ensure(&s, &lower).unwrap();
        assert_eq!(
            fs::read(s.dir.join("etc/passwd")).unwrap(),
            b"u:x:1:1::/:/bin/sh\n"
        );
        assert_eq!(mode(&s.dir), 0o755, "the root as the private overlay's");
        assert_eq!(mode(&s.dir.join("etc")), 0o750);
        assert_eq!(mode(&s.dir.join("ro")), 0o555);
        assert_eq!(mode(&s.dir.join("ro/point")), 0o755);
        assert_eq!(mode(&s.dir.join("etc/passwd")), 0o644);
        assert!(!dirs.staging.exists());
        // Found, not made again: a file put there by hand stays.
        fs::write(s.dir.join("etc/marker"), "").unwrap();
        ensure(&s, &lower).unwrap();
        assert!(s.dir.join("etc/marker").exists());
    }

    #[test]
    fn a_failed_make_leaves_nothing_and_stale_staging_goes() {
        let (_t, lower, dirs) = setup("fail");
        fs::create_dir_all(&dirs.store).unwrap();
        // A killed run's staging: old ones go, a fresh one stays.
        let old = dirs.store.join(".tmp.1.1");
        let fresh = dirs.store.join(".tmp.2.2");
        fs::create_dir_all(old.join("etc")).unwrap();
        fs::create_dir_all(&fresh).unwrap();
        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(5);
        let mut s = skeleton(&dirs, "k2");
        // Two entries at one path: the second create fails.
        s.entries.push(SkeletonEntry::Dir("etc".into()));
        assert!(ensure(&s, &lower).is_err());
        assert!(!s.dir.exists() && !dirs.staging.exists());
        clear_stale(&dirs.store, later);
        assert!(!old.exists());
        assert!(!fresh.exists(), "as old as the other at that time");
        fs::create_dir_all(&fresh).unwrap();
        clear_stale(&dirs.store, SystemTime::now());
        assert!(fresh.exists());
    }
}
