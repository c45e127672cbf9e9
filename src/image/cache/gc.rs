//! Listing and removing cached images, and clearing what killed unpacks
//! left behind: `images`, `rmi` and `prune`.

use super::refs::RefEntry;
use super::{Cache, Meta};
use crate::fs::remove_tree;
use crate::image::digest::Digest;
use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs;
use std::path::Path;

/// What `prune` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub images: usize,
    /// Unfinished unpacks and pulls.
    pub leftovers: usize,
    pub refs: usize,
    pub skeletons: usize,
}

impl Cache {
    /// Removes unpacks (or pulls) that were killed half-way: those of one
    /// digest (we hold its lock), or with `None` every one whose lock we
    /// can take.
    pub(super) fn clear_leftovers(&self, tmp_root: &Path, only: Option<&Digest>) -> Result<usize> {
        let mut removed = 0;
        let Ok(rd) = fs::read_dir(tmp_root) else {
            return Ok(0);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.split('.').next().unwrap_or("");
            let matches = match only {
                Some(d) => hex == d.hex(),
                None => self.try_lock(hex)?.is_some(),
            };
            if matches {
                remove_tree(&e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn try_lock(&self, hex: &str) -> Result<Option<Flock<fs::File>>> {
        Ok(self.try_lock_image(hex)?.ok())
    }

    /// Removes an image: first renamed into tmp/ (one atomic step, after
    /// which no run can find it), then deleted, so a removal that is killed
    /// half-way leaves only garbage that prune clears, never a half image.
    /// An image in use is left alone: the answer is why.
    fn retire(&self, d: &Digest) -> Result<Option<String>> {
        // Runs hold the `.use` lock shared from lookup until their mount
        // exists; while we hold it exclusive, none can start on this image.
        let Ok(_retiring) = Flock::lock(
            self.lock_file(d.hex(), "use")?,
            FlockArg::LockExclusiveNonblock,
        ) else {
            return Ok(Some(format!(
                "image {} is in use by a run that is starting; try again once it is up",
                d.short()
            )));
        };
        if let Some(pid) = self.in_use(d) {
            return Ok(Some(format!(
                "image {} is in use by process {pid}; stop it first",
                d.short()
            )));
        }
        let tmp = self
            .sub("tmp")?
            .join(format!("{}.{}.retired", d.hex(), std::process::id()));
        let dir = self.image_dir(d);
        fs::rename(&dir, &tmp).with_context(|| format!("removing {}", dir.display()))?;
        remove_tree(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        Ok(None)
    }

    /// A process whose mount namespace has this image as an overlay lower
    /// layer: a running container. Removing its image would pull files
    /// from under it.
    fn in_use(&self, d: &Digest) -> Option<i32> {
        let rootfs = self.image_dir(d).join("rootfs");
        let dev = fs::metadata(&rootfs).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (
                nix::sys::stat::major(m.dev()),
                nix::sys::stat::minor(m.dev()),
            )
        })?;
        let lower = rootfs.to_string_lossy().into_owned();
        // Where the rootfs is inside its filesystem: how an underlay's
        // binds of it show in any mount namespace's mountinfo.
        let inside = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| fs_relative(&m, &rootfs, dev));
        each_mount_table(|pid, m| {
            m.lines()
                .any(|l| uses_image(l, &lower, dev, inside.as_deref()))
                .then_some(pid)
        })
    }

    /// Every complete image with its metadata and last use.
    pub fn list(&self) -> Result<Vec<(Meta, Option<std::time::SystemTime>)>> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.root.join("images")) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let Ok(data) = fs::read(e.path().join("meta.json")) else {
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<Meta>(&data) else {
                continue;
            };
            let used = fs::metadata(e.path().join("last-used"))
                .and_then(|m| m.modified())
                .ok();
            out.push((meta, used));
        }
        out.sort_by(|a, b| a.0.digest.cmp(&b.0.digest));
        Ok(out)
    }

    /// Removes the image whose digest starts with `prefix`, and the refs to it.
    pub fn remove_image(&self, prefix: &str) -> Result<Digest> {
        let prefix = prefix.trim_start_matches("sha256:");
        let matches: Vec<Meta> = self
            .list()?
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| {
                !prefix.is_empty() && m.digest.trim_start_matches("sha256:").starts_with(prefix)
            })
            .collect();
        let m = match matches.as_slice() {
            [one] => one,
            [] => bail!("no cached image matches {prefix:?}"),
            _ => bail!(
                "{prefix:?} matches {} cached images; give more of the digest",
                matches.len()
            ),
        };
        let d = Digest::parse(&m.digest)?;
        let _lock = self
            .try_lock(d.hex())?
            .ok_or_else(|| anyhow!("image {} is being unpacked right now", d.short()))?;
        if let Some(why) = self.retire(&d)? {
            bail!("{why}");
        }
        self.drop_refs(|r| r.digest == m.digest)?;
        Ok(d)
    }

    /// The images that registry refs matching `pred` point to; `pred` is
    /// given each ref's source (`docker://NAME`) and manifest digest.
    pub fn registry_images(&self, pred: impl Fn(&str, Option<&str>) -> bool) -> Vec<Digest> {
        let mut out: Vec<Digest> = self
            .ref_entries()
            .into_iter()
            .filter(|r| {
                r.is_registry() && pred(&r.source.to_string_lossy(), r.reference.as_deref())
            })
            .filter_map(|r| Digest::parse(&r.digest).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every readable ref; ones that do not parse are left to `drop_refs`.
    fn ref_entries(&self) -> Vec<RefEntry> {
        let Ok(rd) = fs::read_dir(self.root.join("refs")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                fs::read(e.path())
                    .ok()
                    .and_then(|d| serde_json::from_slice::<RefEntry>(&d).ok())
            })
            .collect()
    }

    /// Removes leftovers of killed unpacks and pulls, refs whose image file
    /// is gone, images no ref points to (with `all`, every image), and the
    /// skeletons no container is using.
    pub fn prune(&self, all: bool) -> Result<Pruned> {
        let leftovers = self.clear_leftovers(&self.root.join("tmp"), None)?
            + self.clear_leftovers(&self.root.join("pulls"), None)?;
        // A registry ref's source is a reference, not a file; it stays until
        // `prune --all` or `rmi`.
        let refs = self.drop_refs(|r| all || (!r.is_registry() && !r.source.exists()))?;
        let live: std::collections::HashSet<String> =
            self.ref_entries().into_iter().map(|r| r.digest).collect();
        let mut images = 0;
        for (m, _) in self.list()? {
            if live.contains(&m.digest) {
                continue;
            }
            let d = Digest::parse(&m.digest)?;
            if let Some(_lock) = self.try_lock(d.hex())? {
                if self.retire(&d)?.is_none() {
                    images += 1;
                }
            }
        }
        Ok(Pruned {
            images,
            leftovers,
            refs,
            skeletons: self.prune_skeletons()?,
        })
    }

    fn drop_refs(&self, mut pred: impl FnMut(&RefEntry) -> bool) -> Result<usize> {
        let mut n = 0;
        let Ok(rd) = fs::read_dir(self.root.join("refs")) else {
            return Ok(0);
        };
        for e in rd.flatten() {
            let Ok(data) = fs::read(e.path()) else {
                continue;
            };
            let stale = match serde_json::from_slice::<RefEntry>(&data) {
                Ok(r) => pred(&r),
                Err(_) => true,
            };
            if stale {
                fs::remove_file(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Calls `f` with the mountinfo of each mount namespace on the host (one
/// process of each) until it answers Some.
pub(super) fn each_mount_table<T>(mut f: impl FnMut(i32, &str) -> Option<T>) -> Option<T> {
    let mut seen = std::collections::HashSet::new();
    for pid in crate::procfs::all_pids() {
        let Some(ns) = crate::procfs::ns_id(pid, "mnt") else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        if let Ok(m) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) {
            if let Some(t) = f(pid, &m) {
                return Some(t);
            }
        }
    }
    None
}

/// `path` as its filesystem knows it: the root field of the mount (of
/// device `dev`) that holds it, joined with the rest of the path.
fn fs_relative(mountinfo: &str, path: &Path, dev: (u64, u64)) -> Option<String> {
    let majmin = format!("{}:{}", dev.0, dev.1);
    let (point, root) = mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&majmin.as_str())).then_some(())?;
            let point = std::path::PathBuf::from(crate::rootfs::kernel::unescape(f.get(4)?));
            let root = crate::rootfs::kernel::unescape(f.get(3)?);
            path.starts_with(&point).then_some((point, root))
        })
        .max_by_key(|(p, _)| p.components().count())?;
    let rest = path.strip_prefix(&point).ok()?;
    Some(Path::new(&root).join(rest).display().to_string())
}

/// Whether a mountinfo line is a container's view of the image: an
/// overlay with it as a lower layer, or an underlay's bind of one of
/// its entries (a mount of the cache's device whose root is the image's
/// rootfs, `inside` its filesystem, or below it).
fn uses_image(line: &str, lower: &str, dev: (u64, u64), inside: Option<&str>) -> bool {
    if overlay_lowers(line).iter().any(|l| l == lower) {
        return true;
    }
    let f: Vec<&str> = line.split(' ').collect();
    let (Some(majmin), Some(root), Some(inside)) = (f.get(2), f.get(3), inside) else {
        return false;
    };
    let root = crate::rootfs::kernel::unescape(root);
    *majmin == format!("{}:{}", dev.0, dev.1)
        && (root == inside || root.starts_with(&format!("{inside}/")))
}

/// The lower layers of an overlay's mountinfo line, top first. In the
/// line a ',' in a path is octal-escaped, so a bare one parts options;
/// inside the option, hpcc's own escapes (rootfs/overlay.rs) part layers.
pub(super) fn overlay_lowers(line: &str) -> Vec<String> {
    let Some((_, after)) = line.split_once(" - overlay ") else {
        return Vec::new();
    };
    let opts = after.split(' ').nth(1).unwrap_or("");
    let mut out = Vec::new();
    for o in opts.split(',') {
        let Some(v) = o.strip_prefix("lowerdir=").or(o.strip_prefix("lowerdir+=")) else {
            continue;
        };
        let mut cur = String::new();
        let mut chars = crate::rootfs::kernel::unescape(v)
            .chars()
            .collect::<Vec<_>>()
            .into_iter();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' => out.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn overlays_and_underlay_binds_count_as_uses() {
        let lower = "/c/images/ab/rootfs";
        let inside = Some("/home/u/.cache/hpcc/images/ab/rootfs");
        let over =
            "90 80 0:50 / /m rw - overlay overlay rw,lowerdir=/c/images/ab/rootfs,upperdir=/u";
        assert!(super::uses_image(over, lower, (8, 1), inside));
        // Under a skeleton, and with separators escaped in the paths.
        let skel = "90 80 0:50 / /m ro - overlay overlay ro,lowerdir=/c/images/ab/skeletons/k:/c/images/ab/rootfs";
        assert!(super::uses_image(skel, lower, (8, 1), inside));
        let odd = "90 80 0:50 / /m ro - overlay overlay ro,lowerdir=/c/sk\\134\\072x:/c\\054d/rootfs,userxattr";
        assert_eq!(super::overlay_lowers(odd), ["/c/sk:x", "/c,d/rootfs"]);
        let other = "90 80 0:50 / /m ro - overlay overlay ro,lowerdir=/c/images/ab/rootfs2";
        assert!(!super::uses_image(other, lower, (8, 1), None));
        let bind =
            "91 80 8:1 /home/u/.cache/hpcc/images/ab/rootfs/usr /m/usr ro - ext4 /dev/vda1 rw";
        assert!(super::uses_image(bind, lower, (8, 1), inside));
        let top = "92 80 8:1 /home/u/.cache/hpcc/images/ab/rootfs /m ro - ext4 /dev/vda1 rw";
        assert!(super::uses_image(top, lower, (8, 1), inside));
        // Another device, the same image in another cache, or a name that
        // only starts alike.
        assert!(!super::uses_image(bind, lower, (8, 2), inside));
        let other_cache = "93 80 8:1 /tmp/x/cache/images/ab/rootfs/usr /m ro - ext4 /dev/vda1 rw";
        assert!(!super::uses_image(other_cache, lower, (8, 1), inside));
        let alike = "94 80 8:1 /home/u/.cache/hpcc/images/ab/rootfs2 /m ro - ext4 /dev/vda1 rw";
        assert!(!super::uses_image(alike, lower, (8, 1), inside));
    }

    #[test]
    fn a_path_is_placed_in_its_filesystem() {
        let info = "22 1 8:1 / / rw - ext4 /dev/vda1 rw\n\
                    30 22 8:2 /vol/home /home rw - ext4 /dev/vdb rw\n\
                    31 22 0:40 / /tmp rw - tmpfs tmpfs rw\n";
        let p = Path::new("/home/u/.cache/hpcc/images/ab/rootfs");
        assert_eq!(
            super::fs_relative(info, p, (8, 2)).as_deref(),
            Some("/vol/home/u/.cache/hpcc/images/ab/rootfs")
        );
        assert_eq!(
            super::fs_relative(info, Path::new("/srv/c"), (8, 1)).as_deref(),
            Some("/srv/c")
        );
        assert_eq!(super::fs_relative(info, p, (9, 9)), None);
    }

    /// A run holds its image from lookup to mount; `rmi` in that window
    /// refuses with a clear line, and succeeds once the run lets go.
    #[test]
    fn an_image_a_run_has_looked_up_is_not_removed() {
        let root = std::env::temp_dir().join(format!("hpcc-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = super::Cache::at(root.clone());
        let d = crate::image::digest::Digest::of_bytes(b"pinned");
        let dir = root.join("images").join(d.hex());
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let meta = super::Meta {
            digest: d.to_string(),
            references: vec![],
            size: 0,
            files: 0,
            created: String::new(),
            source: String::new(),
            manifest: None,
        };
        std::fs::write(dir.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
        for p in [&root, &root.join("images")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let img = cache
            .load_complete(&d)
            .unwrap()
            .expect("the image is complete");
        let e = cache.remove_image(d.hex()).unwrap_err().to_string();
        assert!(e.contains("in use by a run that is starting"), "{e}");
        assert_eq!(cache.prune(true).unwrap().images, 0);
        assert!(dir.exists());
        drop(img);
        assert_eq!(cache.remove_image(d.hex()).unwrap(), d);
        assert!(!dir.exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
