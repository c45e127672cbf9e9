//! Planning the underlay (ops::Underlay): which image directories must be
//! made on the root's tmpfs, entry by entry, so that every mount point and
//! generated file the container needs can be created there without
//! writing to the cached image. A directory that already holds a
//! destination is bound whole; only the path down to a missing one is
//! expanded. The image's symlinks are followed inside the image, as the
//! mount code will follow them inside the root.

use super::host_view::HostView;
use super::ops::Underlay;
use std::path::{Path, PathBuf};

/// The underlay for an image at `lower` that must take mounts at `dests`
/// and generated files at `files` (container paths).
pub fn plan(lower: &Path, dests: &[PathBuf], files: &[PathBuf], host: &dyn HostView) -> Underlay {
    let mut u = Underlay::default();
    for (i, d) in dests.iter().enumerate() {
        // A mount point inside a destination mounted before it is made in
        // that mount.
        if super::skeleton::inside_earlier(dests[..i].iter().map(PathBuf::as_path), d) {
            continue;
        }
        let (found, complete) = resolve(lower, d, host);
        if !complete {
            expand(&mut u, &found);
        }
    }
    for f in files {
        let (Some(parent), Some(name)) = (f.parent(), f.file_name()) else {
            continue;
        };
        let (found, complete) = resolve(lower, parent, host);
        expand(&mut u, &found);
        if complete {
            u.omit.insert(found.join(name));
        }
    }
    u
}

/// `dir` and every directory above it (but the top, which always is).
fn expand(u: &mut Underlay, dir: &Path) {
    for a in dir.ancestors() {
        if !a.as_os_str().is_empty() {
            u.expand.insert(a.to_path_buf());
        }
    }
}

/// The real path (relative to the image) of the longest prefix of `path`
/// that exists in the image, and whether all of it does.
fn resolve(lower: &Path, path: &Path, host: &dyn HostView) -> (PathBuf, bool) {
    let l = super::image_lookup::lookup(lower, path, host);
    let complete = l.complete();
    (l.found, complete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::recorder::FakeHost;

    fn image() -> FakeHost {
        // An image with /etc, /home (empty), /usr/lib, /lib -> usr/lib,
        // /var/run -> /run, /run, /work.
        let mut h = FakeHost::default();
        for d in [
            "etc", "home", "usr", "usr/lib", "run", "var", "work", "dev", "proc", "sys", "tmp",
        ] {
            h.dirs.push(Path::new("/img").join(d));
        }
        h.files.push("/img/etc/passwd".into());
        h.links.push(("/img/lib".into(), "usr/lib".into()));
        h.links.push(("/img/var/run".into(), "/run".into()));
        h
    }

    fn set(v: &[&str]) -> std::collections::BTreeSet<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn only_the_path_to_a_missing_mount_point_is_expanded() {
        let dests: Vec<PathBuf> = [
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/tmp",
            "/home/u",
            "/.hpcc/gpu/lib/libcuda.so.1",
        ]
        .map(PathBuf::from)
        .to_vec();
        let u = plan(Path::new("/img"), &dests, &[], &image());
        // /home/u is missing: /home is expanded; /.hpcc is missing at the
        // top, which is always on the tmpfs; /dev/pts is made in /dev's
        // own mount.
        assert_eq!(u.expand, set(&["home"]));
        assert!(u.omit.is_empty());
    }

    #[test]
    fn a_mount_point_inside_a_later_mount_is_made_in_the_root() {
        let dests: Vec<PathBuf> = ["/tmp/u/home", "/tmp"].map(PathBuf::from).to_vec();
        let u = plan(Path::new("/img"), &dests, &[], &image());
        assert_eq!(u.expand, set(&["tmp"]));
    }

    #[test]
    fn symlinks_are_followed_inside_the_image() {
        let dests: Vec<PathBuf> = ["/var/run/nvidia-persistenced/socket", "/lib/x/y"]
            .map(PathBuf::from)
            .to_vec();
        let u = plan(Path::new("/img"), &dests, &[], &image());
        // /var/run -> /run, so /run is expanded (not /var); /lib -> usr/lib.
        assert_eq!(u.expand, set(&["run", "usr", "usr/lib"]));
    }

    #[test]
    fn generated_files_replace_the_images_own() {
        let files: Vec<PathBuf> = ["/etc/passwd", "/etc/group", "/opt/site/conf"]
            .map(PathBuf::from)
            .to_vec();
        let u = plan(Path::new("/img"), &[], &files, &image());
        assert_eq!(u.expand, set(&["etc"]));
        // passwd is left out so the generated one takes its place; group
        // is not in the image; /opt is made on the tmpfs.
        assert_eq!(u.omit, set(&["etc/passwd", "etc/group"]));
    }

    #[test]
    fn a_destination_that_exists_needs_nothing_and_loops_end() {
        let mut h = image();
        h.links.push(("/img/loop".into(), "loop".into()));
        let dests: Vec<PathBuf> = ["/work", "/usr/lib", "/loop/x"].map(PathBuf::from).to_vec();
        let u = plan(Path::new("/img"), &dests, &[], &h);
        assert!(u.expand.is_empty(), "{:?}", u.expand);
    }
}
