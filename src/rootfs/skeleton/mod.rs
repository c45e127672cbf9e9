//! Planning the skeleton (ops::Skeleton): what a read-only root over the
//! cached image needs that the image lacks, namely the generated identity
//! files and the mount points of binds like $HOME. Made once (make.rs) in
//! a cache directory named by a digest of its entries, it is stacked over
//! the image as a second lower layer of an overlay with no upper layer, so
//! a warm start mounts one filesystem and writes nothing. A changed
//! /etc/hosts, bind or user gives other entries, so another skeleton.
//!
//! Planned only where the overlay's merge gives exactly what the writable
//! root would: parents are created at their real place in the image (the
//! image's symlinks followed), and a case that needs more (a generated
//! file under a symlink, a directory where a file goes, a node made
//! outside any mount) gets no skeleton, only the writable root.

pub mod make;

use super::host_view::HostView;
use super::image_lookup::lookup;
use super::kernel::Entry;
pub use super::ops::SkeletonDirs;
use super::ops::{Skeleton, SkeletonEntry};
use super::resolve::Leaf;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl SkeletonDirs {
    /// The skeletons of the image whose directory is `image_dir`, made
    /// under the flock file `lock`, by this process as `.tmp.PID.NANOS`.
    pub fn new(image_dir: &Path, lock: &Path, nanos: u32) -> SkeletonDirs {
        let store = image_dir.join("skeletons");
        SkeletonDirs {
            staging: store.join(format!(
                "{}{}.{nanos}",
                make::STAGING_PREFIX,
                std::process::id()
            )),
            store,
            lock: lock.to_path_buf(),
        }
    }
}

/// The skeleton for a root over `lower` that takes mounts at `mounts`
/// (container paths, and what each mount point must be) and the generated
/// `files`; None where only a writable root will do.
pub fn plan(
    dirs: &SkeletonDirs,
    lower: &Path,
    mounts: &[(PathBuf, Leaf)],
    files: &[(PathBuf, Vec<u8>)],
    host: &dyn HostView,
) -> Option<Skeleton> {
    let entries = entries(lower, mounts, files, host)?;
    Some(Skeleton {
        dir: dirs.store.join(key(&entries)),
        dirs: dirs.clone(),
        entries,
    })
}

/// None for a directory, else a file's contents.
type Content = Option<Vec<u8>>;

fn entries(
    lower: &Path,
    mounts: &[(PathBuf, Leaf)],
    files: &[(PathBuf, Vec<u8>)],
    host: &dyn HostView,
) -> Option<Vec<SkeletonEntry>> {
    let mut out: BTreeMap<PathBuf, Content> = BTreeMap::new();
    for (i, (d, leaf)) in mounts.iter().enumerate() {
        if inside_earlier(mounts[..i].iter().map(|(p, _)| p.as_path()), d) {
            continue;
        }
        let l = lookup(lower, d, host);
        if l.complete() {
            continue;
        }
        if l.blocked || l.missing.iter().any(|m| m == "..") {
            return None;
        }
        add_dirs(&mut out, &l.found)?;
        let mut p = l.found;
        let last = l.missing.len() - 1;
        for (i, m) in l.missing.iter().enumerate() {
            p.push(m);
            let content = (i == last && *leaf == Leaf::File).then(Vec::new);
            add(&mut out, &p, content)?;
        }
    }
    for (f, data) in files {
        let (parent, name) = (f.parent()?, f.file_name()?);
        // As the writable root writes them: the parent never through a
        // symlink, and a directory of that name is not replaced.
        let l = lookup(lower, parent, host);
        if l.blocked || l.via_symlink || l.missing.iter().any(|m| m == "..") {
            return None;
        }
        if l.missing.is_empty() && host.entry(&lower.join(&l.found).join(name)) == Some(Entry::Dir)
        {
            return None;
        }
        add_dirs(&mut out, &l.found)?;
        let mut p = l.found;
        for m in &l.missing {
            p.push(m);
            add(&mut out, &p, None)?;
        }
        // A generated file is as good a mount point as an empty one.
        let p = p.join(name);
        if out.get(&p) == Some(&None) {
            return None;
        }
        out.insert(p, Some(data.clone()));
    }
    Some(
        out.into_iter()
            .map(|(p, c)| match c {
                None => SkeletonEntry::Dir(p),
                Some(data) => SkeletonEntry::File(p, data),
            })
            .collect(),
    )
}

/// Whether `dest` lies inside one of the destinations mounted before it,
/// so its mount point is made in that mount, not in the root. One mounted
/// after it covers it, but its mount point is still the root's to hold.
pub fn inside_earlier<'a>(mut earlier: impl Iterator<Item = &'a Path>, dest: &Path) -> bool {
    earlier.any(|e| e != dest && dest.starts_with(e))
}

/// `dir` and every directory above it, but the top.
fn add_dirs(out: &mut BTreeMap<PathBuf, Content>, dir: &Path) -> Option<()> {
    for a in dir.ancestors() {
        if !a.as_os_str().is_empty() {
            add(out, a, None)?;
        }
    }
    Some(())
}

/// None when `p` is wanted both as a directory and as a file.
fn add(out: &mut BTreeMap<PathBuf, Content>, p: &Path, content: Content) -> Option<()> {
    match out.get(p) {
        Some(old) if old.is_some() != content.is_some() => None,
        Some(_) => Some(()),
        None => {
            out.insert(p.to_path_buf(), content);
            Some(())
        }
    }
}

/// The skeleton's name: a digest of every entry, so a skeleton is never
/// changed once made, only another one made beside it.
fn key(entries: &[SkeletonEntry]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h = Sha256::new();
    h.update(b"hpcc-skeleton-1\0");
    for e in entries {
        let (kind, data): (&[u8], &[u8]) = match e {
            SkeletonEntry::Dir(_) => (b"d", b""),
            SkeletonEntry::File(_, d) => (b"f", d),
        };
        h.update(kind);
        h.update(e.path().as_os_str().as_bytes());
        h.update(b"\0");
        h.update(data.len().to_string().as_bytes());
        h.update(b"\0");
        h.update(data);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::recorder::FakeHost;

    fn image() -> FakeHost {
        let mut h = FakeHost::default();
        for d in ["etc", "home", "run", "var", "dev", "proc", "sys", "tmp"] {
            h.dirs.push(Path::new("/img").join(d));
        }
        h.files.push("/img/etc/passwd".into());
        h.links.push(("/img/var/run".into(), "/run".into()));
        h
    }

    fn dirs() -> SkeletonDirs {
        SkeletonDirs::new("/c/images/ab".as_ref(), "/c/locks/ab.skeleton".as_ref(), 1)
    }

    fn mounts(v: &[(&str, Leaf)]) -> Vec<(PathBuf, Leaf)> {
        v.iter().map(|(p, l)| (PathBuf::from(p), *l)).collect()
    }

    fn identity() -> Vec<(PathBuf, Vec<u8>)> {
        vec![
            ("/etc/passwd".into(), b"root:x:0:0::/:/bin/sh\n".to_vec()),
            ("/etc/group".into(), b"root:x:0:\n".to_vec()),
        ]
    }

    fn paths(s: &Skeleton) -> Vec<String> {
        s.entries
            .iter()
            .map(|e| match e {
                SkeletonEntry::Dir(p) => format!("{}/", p.display()),
                SkeletonEntry::File(p, _) => p.display().to_string(),
            })
            .collect()
    }

    #[test]
    fn holds_the_identity_files_and_the_missing_mount_points() {
        let m = mounts(&[
            ("/proc", Leaf::Dir),
            ("/dev", Leaf::Dir),
            ("/dev/pts", Leaf::Dir),
            ("/tmp", Leaf::Dir),
            ("/home/u", Leaf::Dir),
            ("/.hpcc/gpu/lib/libcuda.so.1", Leaf::File),
            ("/var/run/munge/socket", Leaf::File),
        ]);
        let s = plan(&dirs(), "/img".as_ref(), &m, &identity(), &image()).unwrap();
        // /dev/pts is made in /dev's mount; /var/run is the image's
        // symlink to /run, so the socket's mount point goes under run/.
        assert_eq!(
            paths(&s),
            [
                ".hpcc/",
                ".hpcc/gpu/",
                ".hpcc/gpu/lib/",
                ".hpcc/gpu/lib/libcuda.so.1",
                "etc/",
                "etc/group",
                "etc/passwd",
                "home/",
                "home/u/",
                "run/",
                "run/munge/",
                "run/munge/socket",
            ]
        );
        assert!(s.dir.starts_with("/c/images/ab/skeletons"));
        assert!(s
            .dirs
            .staging
            .to_string_lossy()
            .starts_with("/c/images/ab/skeletons/.tmp."));
    }

    #[test]
    fn the_name_follows_every_byte_of_the_contents() {
        let m = mounts(&[("/home/u", Leaf::Dir)]);
        let a = plan(&dirs(), "/img".as_ref(), &m, &identity(), &image()).unwrap();
        let again = plan(&dirs(), "/img".as_ref(), &m, &identity(), &image()).unwrap();
        assert_eq!(a.dir, again.dir);
        let mut other = identity();
        other[1].1.push(b'x');
        let b = plan(&dirs(), "/img".as_ref(), &m, &other, &image()).unwrap();
        assert_ne!(a.dir, b.dir);
        let c = plan(&dirs(), "/img".as_ref(), &[], &identity(), &image()).unwrap();
        assert_ne!(a.dir, c.dir);
        // A file mount point and a directory of the same name differ.
        let f = plan(
            &dirs(),
            "/img".as_ref(),
            &mounts(&[("/home/u", Leaf::File)]),
            &identity(),
            &image(),
        )
        .unwrap();
        assert_ne!(a.dir, f.dir);
    }

    #[test]
    fn what_only_a_writable_root_can_do_gets_no_skeleton() {
        let mut h = image();
        // /opt is a symlink: writing /opt/conf must not go through it.
        h.links.push(("/img/opt".into(), "/run".into()));
        let f = vec![(PathBuf::from("/opt/conf"), b"x".to_vec())];
        assert!(plan(&dirs(), "/img".as_ref(), &[], &f, &h).is_none());
        // A directory where the generated file goes.
        h.dirs.push("/img/etc/hosts".into());
        let f = vec![(PathBuf::from("/etc/hosts"), b"x".to_vec())];
        assert!(plan(&dirs(), "/img".as_ref(), &[], &f, &h).is_none());
        // A mount point under a file.
        let m = mounts(&[("/etc/passwd/x", Leaf::Dir)]);
        assert!(plan(&dirs(), "/img".as_ref(), &m, &[], &h).is_none());
        // One path wanted as a file and as a directory.
        let m = mounts(&[("/data", Leaf::File), ("/data/x", Leaf::Dir)]);
        assert!(
            entries("/img".as_ref(), &m, &[], &h).is_some(),
            "nested: made in the mount"
        );
        let m = mounts(&[("/data/x", Leaf::File)]);
        let f = vec![(PathBuf::from("/data/x/y"), b"x".to_vec())];
        assert!(plan(&dirs(), "/img".as_ref(), &m, &f, &h).is_none());
    }

    #[test]
    fn a_mount_point_inside_a_later_mount_is_the_roots() {
        // $HOME under /tmp, bound before /tmp is: its mount point must be
        // in the root when it is mounted, even though /tmp covers it later.
        let m = mounts(&[("/tmp/u/home", Leaf::Dir), ("/tmp", Leaf::Dir)]);
        let s = plan(&dirs(), "/img".as_ref(), &m, &[], &image()).unwrap();
        assert_eq!(
            s.entries,
            vec![
                SkeletonEntry::Dir("tmp".into()),
                SkeletonEntry::Dir("tmp/u".into()),
                SkeletonEntry::Dir("tmp/u/home".into()),
            ]
        );
        let m = mounts(&[("/tmp", Leaf::Dir), ("/tmp/u/home", Leaf::Dir)]);
        let s = plan(&dirs(), "/img".as_ref(), &m, &[], &image()).unwrap();
        assert!(s.entries.is_empty(), "{:?}", s.entries);
    }

    #[test]
    fn a_generated_file_serves_as_its_own_mount_point() {
        let m = mounts(&[("/etc/hosts", Leaf::File)]);
        let f = vec![(
            PathBuf::from("/etc/hosts"),
            b"127.0.0.1 localhost\n".to_vec(),
        )];
        let s = plan(&dirs(), "/img".as_ref(), &m, &f, &image()).unwrap();
        assert_eq!(
            s.entries,
            vec![
                SkeletonEntry::Dir("etc".into()),
                SkeletonEntry::File("etc/hosts".into(), b"127.0.0.1 localhost\n".to_vec()),
            ]
        );
    }
}
