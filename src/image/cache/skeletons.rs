//! `prune`'s part in the skeletons of cached images (rootfs/skeleton/):
//! one is made per identity, host name files and set of binds, and each is
//! tiny, but nothing else ever removes them. Those no container is using
//! go (a later run makes one again in milliseconds), with what killed
//! makers left.

use super::gc::{each_mount_table, overlay_lowers};
use super::Cache;
use crate::fs::remove_tree;
use crate::rootfs::skeleton::make;
use anyhow::Result;
use nix::fcntl::{Flock, FlockArg};
use std::collections::HashSet;
use std::fs;
use std::path::Path;

impl Cache {
    /// Removes every skeleton no mount namespace on this host uses as a
    /// layer. An image a run is starting on (its `.use` lock held, from
    /// lookup until its mount exists) or making a skeleton for is skipped.
    pub(super) fn prune_skeletons(&self) -> Result<usize> {
        let Ok(rd) = fs::read_dir(self.root.join("images")) else {
            return Ok(0);
        };
        let mut used: Option<HashSet<String>> = None;
        let mut removed = 0;
        for e in rd.flatten() {
            let store = e.path().join("skeletons");
            if !store.is_dir() {
                continue;
            }
            let hex = e.file_name().to_string_lossy().into_owned();
            let Ok(_starting) = Flock::lock(
                self.lock_file(&hex, "use")?,
                FlockArg::LockExclusiveNonblock,
            ) else {
                continue;
            };
            let Ok(_making) = Flock::lock(
                self.lock_file(&hex, "skeleton")?,
                FlockArg::LockExclusiveNonblock,
            ) else {
                continue;
            };
            make::clear_stale(&store, std::time::SystemTime::now());
            let used = used.get_or_insert_with(layers_in_use);
            removed += remove_unused(&store, used);
        }
        Ok(removed)
    }
}

/// Every overlay lower layer of every mount namespace on the host.
fn layers_in_use() -> HashSet<String> {
    let mut out = HashSet::new();
    each_mount_table(|_, m| {
        for l in m.lines() {
            out.extend(overlay_lowers(l));
        }
        None::<()>
    });
    out
}

/// Removes the skeletons in `store` not in `used`: each renamed out of
/// sight first (one step, so no run finds half of one), then deleted.
fn remove_unused(store: &Path, used: &HashSet<String>) -> usize {
    let Ok(rd) = fs::read_dir(store) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(make::STAGING_PREFIX) || used.contains(path.to_string_lossy().as_ref())
        {
            continue;
        }
        let gone = store.join(format!(
            "{}prune.{}.{name}",
            make::STAGING_PREFIX,
            std::process::id()
        ));
        if fs::rename(&path, &gone).is_ok() {
            match remove_tree(&gone) {
                Ok(()) => n += 1,
                Err(e) => crate::debug!("removing {}: {e}", gone.display()),
            }
        }
    }
    n
}
