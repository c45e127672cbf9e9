//! Performs the mounts of config.json inside the rootfs, before pivot_root.

use super::options::{self, MountOptions};
use super::resolve::{create_in_root, fd_path, open_in_root, Leaf};
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::FsFlags;
use oci_spec::runtime::Mount;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What a mount needs to know about the container it goes into.
pub struct MountContext<'a> {
    pub root: &'a OwnedFd,
    pub bundle: &'a Path,
    /// The container has its own user namespace, so the kernel locks the
    /// nosuid/nodev/noexec/atime flags of mounts it inherited.
    pub in_userns: bool,
    pub has_cgroupns: bool,
}

/// A destination that resolves (say through a symlink in the rootfs) onto
/// the container's procfs is held to runc's /proc rule (see
/// spec::validate): only /proc itself and the files lxcfs emulates.
fn check_proc_target(target: &OwnedFd, dest: &Path) -> Result<()> {
    let on_proc = nix::sys::statfs::fstatfs(target)
        .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
    let dest_clean = crate::spec::lexical_clean(dest);
    if on_proc && dest_clean != Path::new("/proc") && !crate::spec::proc_file_mountable(dest) {
        bail!(
            "destination {} resolves into /proc; only /proc itself and the files lxcfs emulates may be mounted there",
            dest.display()
        );
    }
    Ok(())
}

pub fn mount_entry(ctx: &MountContext, m: &Mount) -> Result<()> {
    let dest = m.destination();
    do_mount(ctx, m).with_context(|| format!("mount {}", dest.display()))
}

fn do_mount(ctx: &MountContext, m: &Mount) -> Result<()> {
    let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("none");
    let dest = m.destination();
    if opts.is_bind() || typ == "bind" {
        let src = bind_source(ctx, m)?;
        let leaf = if src.is_dir() { Leaf::Dir } else { Leaf::File };
        let target = create_in_root(ctx.root, dest, leaf)?;
        check_proc_target(&target, dest)?;
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(
            Some(&src),
            &fd_path(&target),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .map_err(|e| anyhow!("bind {}: {e}", src.display()))?;
        return finish(ctx, dest, &opts, true);
    }
    let target = create_in_root(ctx.root, dest, Leaf::Dir)?;
    check_proc_target(&target, dest)?;
    match typ {
        "cgroup" | "cgroup2" => return mount_cgroup(ctx, dest, &target, &opts),
        _ => {}
    }
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let data = opts.data_string();
    let flags = opts.flags & !MsFlags::MS_REC;
    match mount(
        Some(&source),
        &fd_path(&target),
        Some(typ),
        flags,
        data.as_deref(),
    ) {
        Ok(()) => {}
        // Without its own network (sysfs) or with a foreign IPC namespace
        // (mqueue) an unprivileged user cannot mount these; the host's
        // instance bound read-only is what runc gives as well.
        Err(Errno::EPERM) if ctx.in_userns && matches!(typ, "sysfs" | "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            mount(
                Some(host),
                &fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| anyhow!("{typ}: {e}; binding {host} instead failed too"))?;
            return finish(ctx, dest, &opts, true);
        }
        Err(e) => bail!("{typ} on {}: {e}", dest.display()),
    }
    finish(ctx, dest, &opts, false)
}

fn bind_source(ctx: &MountContext, m: &Mount) -> Result<PathBuf> {
    let src = m
        .source()
        .as_ref()
        .ok_or_else(|| anyhow!("bind mount has no source"))?;
    let src = if src.is_absolute() {
        src.clone()
    } else {
        ctx.bundle.join(src)
    };
    std::fs::metadata(&src).with_context(|| format!("bind source {}", src.display()))?;
    Ok(src)
}

/// Applies what a first mount call cannot: flags on a bind (a remount),
/// recursive read-only, and propagation.
fn finish(ctx: &MountContext, dest: &Path, opts: &MountOptions, bound: bool) -> Result<()> {
    // Reopen: the handle from before the mount names the mountpoint, not
    // the new mount on top of it.
    let target = open_in_root(ctx.root, dest).map_err(|e| anyhow!("reopening: {e}"))?;
    let extra = opts.remount_flags();
    if bound && !extra.is_empty() {
        remount_bind(&target, extra, ctx.in_userns, opts.explicit_atime)?;
    }
    if opts.recursive_ro {
        const MOUNT_ATTR_RDONLY: u64 = 1;
        crate::sys::mount_setattr_recursive(target.as_fd(), MOUNT_ATTR_RDONLY, 0)
            .map_err(|e| anyhow!("recursive read-only (rro): {e}"))?;
    }
    for p in &opts.propagation {
        mount(
            None::<&str>,
            &fd_path(&target),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .map_err(|e| anyhow!("setting propagation: {e}"))?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags`. Inside a user namespace the kernel
/// refuses to clear nosuid/nodev/noexec or change the atime mode that the
/// mount already had, so those are carried over.
pub fn remount_bind(
    target: &OwnedFd,
    flags: MsFlags,
    in_userns: bool,
    explicit_atime: bool,
) -> Result<()> {
    let path = fd_path(target);
    let mut flags = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if in_userns {
        flags |= locked_flags(&path, explicit_atime)?;
    }
    mount(None::<&str>, &path, None::<&str>, flags, None::<&str>)
        .map_err(|e| anyhow!("remounting with {flags:?}: {e}"))
}

/// musl's headers lack ST_RELATIME; the kernel's value is stable.
const ST_RELATIME: FsFlags = FsFlags::from_bits_retain(0x1000);

fn locked_flags(path: &Path, explicit_atime: bool) -> Result<MsFlags> {
    let raw = crate::sys::mount_flags(path).map_err(|e| anyhow!("statfs: {e}"))?;
    let f = FsFlags::from_bits_retain(raw);
    let mut out = MsFlags::empty();
    for (st_flag, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(st_flag) {
            out |= ms;
        }
    }
    if !explicit_atime {
        if f.contains(FsFlags::ST_NOATIME) {
            out |= MsFlags::MS_NOATIME;
        } else if f.contains(ST_RELATIME) {
            out |= MsFlags::MS_RELATIME;
        } else {
            out |= MsFlags::MS_STRICTATIME;
        }
        if f.contains(FsFlags::ST_NODIRATIME) {
            out |= MsFlags::MS_NODIRATIME;
        }
    }
    Ok(out)
}

/// A cgroup mount: on v1 and hybrid hosts one mount per hierarchy (see
/// `cgroupfs`); on a unified host a fresh cgroup2 when the container has
/// its own cgroup namespace, otherwise the host's hierarchy bound in (an
/// unprivileged user may not mount cgroup2 outside one).
fn mount_cgroup(
    ctx: &MountContext,
    dest: &Path,
    target: &OwnedFd,
    opts: &MountOptions,
) -> Result<()> {
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if !is_cgroup2("/sys/fs/cgroup") {
        super::cgroupfs::mount_v1(ctx, dest, target, flags)?;
        let mut rest = opts.clone();
        rest.flags = MsFlags::empty();
        return finish(ctx, dest, &rest, false);
    }
    if ctx.has_cgroupns {
        match mount(
            Some("cgroup2"),
            &fd_path(target),
            Some("cgroup2"),
            flags,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(Errno::EPERM) | Err(Errno::EBUSY) => {}
            Err(e) => bail!("cgroup2: {e}"),
        }
    }
    mount(
        Some("/sys/fs/cgroup"),
        &fd_path(target),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| anyhow!("binding the host's /sys/fs/cgroup: {e}"))?;
    let mut rest = opts.clone();
    rest.flags = flags;
    // The controllers are submounts; "ro" must reach them too.
    rest.recursive_ro |= flags.contains(MsFlags::MS_RDONLY);
    finish(ctx, dest, &rest, true)
}

fn is_cgroup2(path: &str) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}
