//! Listing and removing cached images, and clearing what killed unpacks
//! left behind: `images`, `rmi` and `prune`.

use super::refs::RefEntry;
use super::{Cache, Meta};
use crate::fs::remove_tree;
use crate::image::digest::Digest;
use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

impl Cache {
    /// Removes unpacks that were killed half-way: those of one digest (we
    /// hold its lock), or with `None` every one whose lock we can take.
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
        let locks = self.sub("locks")?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(locks.join(format!("{hex}.lock")))?;
        Ok(Flock::lock(f, FlockArg::LockExclusiveNonblock).ok())
    }

    /// Removes an image: first renamed into tmp/ (one atomic step, after
    /// which no run can find it), then deleted, so a removal that is killed
    /// half-way leaves only garbage that prune clears, never a half image.
    fn retire(&self, d: &Digest) -> Result<()> {
        if let Some(pid) = self.in_use(d) {
            bail!(
                "image {} is in use by process {pid}; stop it first",
                d.short()
            );
        }
        let tmp = self
            .sub("tmp")?
            .join(format!("{}.{}.retired", d.hex(), std::process::id()));
        let dir = self.image_dir(d);
        fs::rename(&dir, &tmp).with_context(|| format!("removing {}", dir.display()))?;
        remove_tree(&tmp).with_context(|| format!("removing {}", tmp.display()))
    }

    /// A process whose mount namespace has this image as an overlay lower
    /// layer: a running container. Removing its image would pull files
    /// from under it.
    fn in_use(&self, d: &Digest) -> Option<i32> {
        let needle = format!("lowerdir={}", self.image_dir(d).join("rootfs").display());
        let mut seen = std::collections::HashSet::new();
        for pid in crate::procfs::all_pids() {
            let Some(ns) = crate::procfs::ns_id(pid, "mnt") else {
                continue;
            };
            if !seen.insert(ns) {
                continue;
            }
            if fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .is_ok_and(|m| m.contains(&needle))
            {
                return Some(pid);
            }
        }
        None
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
        self.retire(&d)?;
        self.drop_refs(|r| r.digest == m.digest)?;
        Ok(d)
    }

    /// Removes leftovers of killed unpacks, refs whose image file is gone,
    /// and images no ref points to (with `all`, every image).
    pub fn prune(&self, all: bool) -> Result<(usize, usize, usize)> {
        let leftovers = self.clear_leftovers(&self.root.join("tmp"), None)?;
        let refs = self.drop_refs(|r| all || !r.source.exists())?;
        let mut live = std::collections::HashSet::new();
        if let Ok(rd) = fs::read_dir(self.root.join("refs")) {
            for e in rd.flatten() {
                if let Some(r) = fs::read(e.path())
                    .ok()
                    .and_then(|d| serde_json::from_slice::<RefEntry>(&d).ok())
                {
                    live.insert(r.digest);
                }
            }
        }
        let mut images = 0;
        for (m, _) in self.list()? {
            if live.contains(&m.digest) {
                continue;
            }
            let d = Digest::parse(&m.digest)?;
            if self.in_use(&d).is_some() {
                continue;
            }
            if let Some(_lock) = self.try_lock(d.hex())? {
                self.retire(&d)?;
                images += 1;
            }
        }
        Ok((leftovers, refs, images))
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
