//! Switching the process's root to the container rootfs (the kernel side
//! of `Op::PivotRoot`, `Op::MoveRoot` and `Op::Chroot`).

use anyhow::{anyhow, Result};
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

fn open_dir(p: &Path) -> Result<OwnedFd> {
    crate::sys::open(p, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())
        .map_err(|e| anyhow!("opening {}: {e}", p.display()))
}

/// pivot_root(".", ".") as runc and crun do it: the old root ends up
/// stacked under the new one, and is detached without needing a directory
/// for it inside the image (which may be read-only).
pub fn pivot_into(rootfs: &Path) -> Result<()> {
    let old_root = open_dir(Path::new("/"))?;
    let new_root = open_dir(rootfs)?;
    fchdir(new_root.as_raw_fd()).map_err(|e| anyhow!("chdir {}: {e}", rootfs.display()))?;
    pivot_root(".", ".").map_err(|e| anyhow!("pivot_root {}: {e}", rootfs.display()))?;
    fchdir(old_root.as_raw_fd()).map_err(|e| anyhow!("chdir to old root: {e}"))?;
    // Keep the unmount from propagating back to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| anyhow!("making old root a slave: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| anyhow!("detaching old root: {e}"))?;
    chdir("/").map_err(|e| anyhow!("chdir /: {e}"))?;
    Ok(())
}

/// `--no-pivot`: move the rootfs mount over / and chroot into it, for
/// filesystems (initramfs) where pivot_root is not allowed.
pub fn move_into(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(|e| anyhow!("chdir {}: {e}", rootfs.display()))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| anyhow!("moving {} to /: {e}", rootfs.display()))?;
    chroot(".").map_err(|e| anyhow!("chroot: {e}"))?;
    chdir("/").map_err(|e| anyhow!("chdir /: {e}"))?;
    Ok(())
}

/// A container without a mount namespace: chroot into the rootfs (the
/// caller's mount table is not ours to move mounts in).
pub fn chroot_into(rootfs: &Path) -> Result<()> {
    chdir(rootfs).map_err(|e| anyhow!("chdir {}: {e}", rootfs.display()))?;
    chroot(".").map_err(|e| anyhow!("chroot {}: {e}", rootfs.display()))?;
    chdir("/").map_err(|e| anyhow!("chdir /: {e}"))?;
    Ok(())
}
