//! Building the container's filesystem view inside its mount namespace:
//! mounts, /dev, pivot_root, then masked and read-only paths.

mod cgroupfs;
pub mod devices;
pub mod files;
pub mod mounts;
pub mod options;
mod overlay;
pub mod pivot;
pub mod resolve;

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;
use std::os::fd::OwnedFd;
use std::path::Path;

pub struct RootfsPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub in_userns: bool,
    pub has_cgroupns: bool,
    /// mknod is allowed (real root, no user namespace).
    pub use_mknod: bool,
    pub no_pivot: bool,
    /// Runs after the mounts and devices, just before pivot_root (where
    /// the createRuntime and createContainer hooks belong).
    pub before_pivot: Option<&'a dyn Fn() -> Result<()>>,
    /// Image mode: `rootfs` becomes an overlay of this read-only lower
    /// directory (the cached image) with a private tmpfs upper, so mount
    /// points can be made and the cached copy never changes.
    pub overlay_lower: Option<&'a Path>,
}

/// Everything up to and including the switch of root. Runs in the
/// container's mount namespace, in the init process.
pub fn prepare(plan: &RootfsPlan) -> Result<()> {
    let linux = plan.spec.linux().as_ref();
    // Nothing we mount may propagate back to the host, unless shared was
    // asked for (the copy of a shared mount stays in the host's peer
    // group). Unbindable comes last: binds from the host must work first.
    let asked = root_propagation(plan.spec)?;
    let initial = match asked {
        Some(p) if !p.contains(MsFlags::MS_UNBINDABLE) => p,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, initial, None::<&str>)
        .map_err(|e| anyhow!("setting / propagation: {e}"))?;
    // pivot_root refuses a shared parent mount: as runc does, make the
    // rootfs's parent private (in our namespace); the asked-for mode is
    // set on the new / after the pivot.
    if initial.contains(MsFlags::MS_SHARED) {
        make_parent_mount_private(plan.rootfs)?;
    }
    if let Some(lower) = plan.overlay_lower {
        // The overlay is itself a mount point, as pivot_root requires.
        overlay::mount_overlay(lower, plan.rootfs)?;
    } else {
        // pivot_root needs the new root to be a mount point.
        mount(
            Some(plan.rootfs),
            plan.rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| anyhow!("binding rootfs {}: {e}", plan.rootfs.display()))?;
    }
    let root = open_path(plan.rootfs)?;
    let ctx = mounts::MountContext {
        root: &root,
        bundle: plan.bundle,
        in_userns: plan.in_userns,
        has_cgroupns: plan.has_cgroupns,
    };
    let spec_mounts = plan.spec.mounts().as_deref().unwrap_or(&[]);
    for m in spec_mounts {
        mounts::mount_entry(&ctx, m)?;
    }
    // Like runc: default nodes only when /dev is ours to fill, i.e. not a
    // bind of some other /dev.
    let dev_is_bind = spec_mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    if !dev_is_bind {
        devices::create_default_devices(&root, plan.use_mknod).context("creating /dev")?;
    }
    for d in linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]) {
        let dev = devices::spec_device(d)?;
        devices::create_device(&root, &dev, plan.use_mknod)?;
    }
    drop(root);
    if let Some(hook) = plan.before_pivot {
        hook()?;
    }
    if plan.no_pivot {
        pivot::move_into(plan.rootfs)?;
    } else {
        pivot::pivot_into(plan.rootfs)?;
    }
    Ok(())
}

/// linux.rootfsPropagation as mount(2) flags; None when not set.
fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        Some(p) if !p.is_empty() => Ok(Some(options::parse_propagation(p).ok_or_else(|| {
            anyhow!("config.json: linux.rootfsPropagation {p:?} is not a propagation mode")
        })?)),
        _ => Ok(None),
    }
}

/// After pivot_root: masked paths, read-only paths and a read-only root.
/// Done last so nothing earlier needs to write through them.
pub fn finalize(plan: &RootfsPlan) -> Result<()> {
    let linux = plan.spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or(&[])
    {
        mask_path(Path::new(p)).with_context(|| format!("masking {p}"))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or(&[])
    {
        readonly_path(Path::new(p), plan.in_userns)
            .with_context(|| format!("read-only path {p}"))?;
    }
    if plan.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let root = open_path(Path::new("/"))?;
        mounts::remount_bind(&root, MsFlags::MS_RDONLY, plan.in_userns, false)
            .context("making the root read-only")?;
    }
    // The asked-for mode of the new root, set after the pivot (it is the
    // new / it describes) and after the masks, whose /dev/null binds an
    // unbindable tree would refuse.
    if let Some(p) = root_propagation(plan.spec)? {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .map_err(|e| anyhow!("setting rootfs propagation: {e}"))?;
    }
    Ok(())
}

/// Makes the mount that holds `path` private: mount(2) answers EINVAL for
/// a path that is not a mount point, so walk up until one takes.
fn make_parent_mount_private(path: &Path) -> Result<()> {
    let mut p = path;
    loop {
        match mount(
            None::<&str>,
            p,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL) if p != Path::new("/") => {
                p = p.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => bail!("making the mount of {} private: {e}", path.display()),
        }
    }
}

/// An O_PATH handle on `p`, for mount calls made through /proc/self/fd.
fn open_path(p: &Path) -> Result<OwnedFd> {
    let fd = open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| anyhow!("opening {}: {e}", p.display()))?;
    Ok(crate::sys::adopt(fd))
}

fn mask_path(p: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| anyhow!("tmpfs: {e}"))
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| anyhow!("binding /dev/null: {e}"))
    }
}

fn readonly_path(p: &Path, in_userns: bool) -> Result<()> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(anyhow!("bind: {e}")),
    }
    let fd = open_path(p)?;
    mounts::remount_bind(&fd, MsFlags::MS_RDONLY, in_userns, false)
}
