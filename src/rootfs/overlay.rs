//! The image-mode root: the cached image as a read-only overlay lower layer
//! and a tmpfs upper that lives and dies with the mount namespace.

use anyhow::{anyhow, Result};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use std::path::Path;

/// Mounts a tmpfs on `merged`'s parent (a directory in the cache that only
/// our private mount namespace ever sees mounted), and the overlay at
/// `merged` inside it.
pub fn mount_overlay(lower: &Path, merged: &Path) -> Result<()> {
    let scratch = merged
        .parent()
        .ok_or_else(|| anyhow!("overlay target {} has no parent", merged.display()))?;
    mount(
        Some("tmpfs"),
        scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|e| anyhow!("tmpfs for the image overlay on {}: {e}", scratch.display()))?;
    for d in ["upper", "work", "merged"] {
        std::fs::create_dir(scratch.join(d)).map_err(|e| anyhow!("creating overlay {d}: {e}"))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape(lower),
        escape(&scratch.join("upper")),
        escape(&scratch.join("work"))
    );
    // Inside a user namespace overlayfs stores its metadata in user.*
    // xattrs; older kernels need to be told so.
    match mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::EPERM) => {
            let data = format!("{data},userxattr");
            mount(
                Some("overlay"),
                merged,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .map_err(|e| anyhow!("overlay of image {}: {e}", lower.display()))
        }
        Err(e) => Err(anyhow!("overlay of image {}: {e}", lower.display())),
    }
}

/// overlayfs splits its options on ',' and its layer lists on ':'.
fn escape(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}
