//! Carries out a mount plan through a [`Kernel`]. [`do_mount`] is the one
//! place a mount is made and finished (as crun's `do_mount`): resolve or
//! create the target inside the root, apply runc's /proc rule, mount, fall
//! back where the plan says, then remount, make recursive read-only and
//! set propagation.

use super::kernel::{Entry, FileKind, Kernel, Target};
use super::ops::{Finish, ImageRoot, MountOp, Op, RootMethod, Skeleton, What};
use super::remount;
use super::resolve::Leaf;
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::mount::MsFlags;
use std::path::Path;

/// Runs `ops` in order. `hooks` is called at `Op::Hooks`.
pub fn execute<K: Kernel>(
    k: &mut K,
    ops: &[Op],
    hooks: Option<&dyn Fn() -> Result<()>>,
) -> Result<()> {
    let mut root: Option<K::Fd> = None;
    for op in ops {
        run_op(k, &mut root, op, hooks)?;
    }
    Ok(())
}

fn root_of<'a, F>(root: &'a Option<F>, what: &Path) -> Result<&'a F> {
    root.as_ref().ok_or_else(|| {
        anyhow!(
            "mount plan: {} comes before the root is open",
            what.display()
        )
    })
}

fn run_op<K: Kernel>(
    k: &mut K,
    root: &mut Option<K::Fd>,
    op: &Op,
    hooks: Option<&dyn Fn() -> Result<()>>,
) -> Result<()> {
    match op {
        Op::PropagateRoot { flags, label } => k
            .mount(None, Target::Path(Path::new("/")), None, *flags, None)
            .map_err(|e| anyhow!("{label}: {e}")),
        Op::PrivatizeParent(path) => privatize_parent(k, path),
        Op::BindOnItself(path) => k
            .mount(
                Some(path),
                Target::Path(path),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| anyhow!("binding rootfs {}: {e}", path.display())),
        Op::ImageRoot(r) => image_root(k, r),
        Op::OpenRoot(path) => {
            *root = Some(k.open_root(path)?);
            Ok(())
        }
        Op::Mount(m) => do_mount(k, root_of(root, &m.dest)?, m),
        Op::Finish { dest, then } => {
            let r = root_of(root, dest)?;
            finish(k, r, dest, then, false).with_context(|| format!("mount {}", dest.display()))
        }
        Op::Remount {
            dest,
            flags,
            data,
            label,
        } => {
            let target = k
                .open_in_root(root_of(root, dest)?, dest)
                .map_err(|e| anyhow!("{label}: reopening: {e}"))?;
            k.mount(
                None,
                Target::Fd(&target),
                None,
                *flags | MsFlags::MS_REMOUNT,
                data.as_deref(),
            )
            .map_err(|e| anyhow!("{label}: {e}"))
        }
        Op::MakeDir(path) => k
            .create_in_root(root_of(root, path)?, path, Leaf::Dir)
            .map(drop),
        Op::Symlink { target, link } => {
            let r = root_of(root, link)?;
            let (parent, name) = split(link)?;
            let dir = k.create_in_root(r, parent, Leaf::Dir)?;
            match k.symlink(&dir, name, target) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(e) => bail!("creating symlink {}: {e}", link.display()),
            }
        }
        Op::MakeNode(node) => {
            let r = root_of(root, &node.path)?;
            let (parent, name) = split(&node.path)?;
            let dir = k.create_in_root(r, parent, Leaf::Dir)?;
            k.make_node(&dir, name, node)
        }
        Op::Hooks => hooks.map_or(Ok(()), |h| h()),
        Op::PivotRoot(rootfs) => {
            *root = None;
            k.pivot_root(rootfs)
        }
        Op::MoveRoot(rootfs) => {
            *root = None;
            k.move_root(rootfs)
        }
        Op::Chroot(rootfs) => {
            *root = None;
            k.chroot(rootfs)
        }
        Op::Mask(path) => mask(k, path).with_context(|| format!("masking {}", path.display())),
        Op::ReadOnlyPath { path, keep_locked } => readonly_path(k, path, *keep_locked)
            .with_context(|| format!("read-only path {}", path.display())),
        Op::RootReadOnly { keep_locked } => {
            let fd = k.open_path(Path::new("/"))?;
            remount_bind(k, Target::Fd(&fd), MsFlags::MS_RDONLY, *keep_locked, false)
                .context("making the root read-only")
        }
    }
}

fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    Ok((path.parent().unwrap_or(Path::new("/")), name))
}

/// A mount at a container path, and what follows it.
pub fn do_mount<K: Kernel>(k: &mut K, root: &K::Fd, m: &MountOp) -> Result<()> {
    let target = k
        .create_in_root(root, &m.dest, m.leaf)
        .with_context(|| m.label.clone())?;
    if m.refuse_proc {
        refuse_proc(k, &target, &m.dest).with_context(|| m.label.clone())?;
    }
    let used = match mount_one(k, &target, m) {
        Ok(()) => m,
        Err(e) => match &m.fallback {
            Some((on, alt)) if on.contains(&e) => {
                mount_one(k, &target, alt)
                    .map_err(|e2| {
                        anyhow!(
                            "{}; {} instead failed too: {e2}",
                            describe(m, e),
                            describe_what(alt)
                        )
                    })
                    .with_context(|| m.label.clone())?;
                alt.as_ref()
            }
            _ => return Err(anyhow!(describe(m, e))).with_context(|| m.label.clone()),
        },
    };
    // Only a bind needs a remount for its flags; a filesystem took them
    // in its first mount call.
    let bound = matches!(used.what, What::Bind { .. });
    finish(k, root, &m.dest, &used.then, bound).with_context(|| m.label.clone())
}

fn mount_one<K: Kernel>(k: &mut K, target: &K::Fd, m: &MountOp) -> nix::Result<()> {
    match &m.what {
        What::Bind { source, recursive } => {
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            k.mount(Some(source), Target::Fd(target), None, flags, None)
        }
        What::Fs {
            fstype,
            source,
            flags,
            data,
        } => k.mount(
            Some(source),
            Target::Fd(target),
            Some(fstype),
            *flags,
            data.as_deref(),
        ),
    }
}

fn describe_what(m: &MountOp) -> String {
    match &m.what {
        What::Bind { source, .. } => format!("binding {}", source.display()),
        What::Fs { fstype, .. } => format!("mounting {fstype}"),
    }
}

fn describe(m: &MountOp, e: Errno) -> String {
    match &m.what {
        What::Bind { source, .. } => format!("bind {}: {e}", source.display()),
        What::Fs { fstype, .. } => format!("{fstype} on {}: {e}", m.dest.display()),
    }
}

/// A destination that resolves (say through a symlink in the rootfs) onto
/// the container's procfs is held to runc's /proc rule (see
/// spec::validate): only /proc itself and the files lxcfs emulates.
fn refuse_proc<K: Kernel>(k: &mut K, target: &K::Fd, dest: &Path) -> Result<()> {
    let clean = super::proc_rule::lexical_clean(dest);
    if k.on_procfs(target) && clean != Path::new("/proc") && !super::proc_rule::file_mountable(dest)
    {
        bail!(
            "destination {} resolves into /proc; only /proc itself and the files lxcfs emulates may be mounted there",
            dest.display()
        );
    }
    Ok(())
}

/// Applies what a first mount call cannot: flags on a bind (a remount),
/// recursive read-only, and propagation.
fn finish<K: Kernel>(
    k: &mut K,
    root: &K::Fd,
    dest: &Path,
    then: &Finish,
    bound: bool,
) -> Result<()> {
    if then.is_empty() {
        return Ok(());
    }
    // Reopen: the handle from before the mount names the mountpoint, not
    // the new mount on top of it.
    let target = k
        .open_in_root(root, dest)
        .map_err(|e| anyhow!("reopening: {e}"))?;
    if bound && !then.remount.is_empty() {
        remount_bind(
            k,
            Target::Fd(&target),
            then.remount,
            then.keep_locked,
            then.explicit_atime,
        )?;
    }
    if then.recursive_ro {
        match k.set_recursive_readonly(&target) {
            Ok(()) => {}
            // Kernels before 5.12 lack mount_setattr: as runc does there,
            // remount the mount and each mount under it read-only.
            Err(Errno::ENOSYS) => {
                let mounts = k.submounts(&target)?;
                crate::debug!(
                    "mount_setattr is not available ({}); remounting {} mount(s) at {} read-only one by one",
                    Errno::ENOSYS,
                    mounts.len(),
                    dest.display()
                );
                for p in mounts {
                    remount_bind(
                        k,
                        Target::Path(&p),
                        MsFlags::MS_RDONLY,
                        then.keep_locked,
                        false,
                    )
                    .with_context(|| format!("recursive read-only (rro) of {}", p.display()))?;
                }
            }
            Err(e) => bail!("recursive read-only (rro): {e}"),
        }
    }
    for p in &then.propagation {
        k.mount(None, Target::Fd(&target), None, *p, None)
            .map_err(|e| anyhow!("setting propagation: {e}"))?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags`. Inside a user namespace the kernel
/// refuses to clear nosuid/nodev/noexec or change the atime mode that the
/// mount already had, so those are carried over.
fn remount_bind<K: Kernel>(
    k: &mut K,
    target: Target<'_, K::Fd>,
    flags: MsFlags,
    keep_locked: bool,
    explicit_atime: bool,
) -> Result<()> {
    let mut flags = flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if keep_locked {
        let raw = k.mount_flags(target).map_err(|e| anyhow!("statfs: {e}"))?;
        flags |= remount::locked_flags(raw, explicit_atime);
    }
    k.mount(None, target, None, flags, None)
        .map_err(|e| anyhow!("remounting with {flags:?}: {e}"))
}

/// Makes the mount that holds `path` private: mount(2) answers EINVAL for
/// a path that is not a mount point, so walk up until one takes.
fn privatize_parent<K: Kernel>(k: &mut K, path: &Path) -> Result<()> {
    let mut p = path;
    loop {
        match k.mount(None, Target::Path(p), None, MsFlags::MS_PRIVATE, None) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if p != Path::new("/") => {
                p = p.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => bail!("making the mount of {} private: {e}", path.display()),
        }
    }
}

fn image_root<K: Kernel>(k: &mut K, r: &ImageRoot) -> Result<()> {
    if let Some(s) = &r.skeleton {
        match skeleton_root(k, r, s) {
            Ok(()) => {
                crate::debug!(
                    "image root: read-only overlay of {} over {}",
                    s.dir.display(),
                    r.lower.display()
                );
                return Ok(());
            }
            // A full disk, a cache we may not write, an old kernel: the
            // private overlay needs none of those.
            Err(e) => crate::debug!("image root: no skeleton ({e:#}); using a private overlay"),
        }
    }
    private_root(k, r)?;
    if r.files.is_empty() {
        return Ok(());
    }
    // Written before anything is mounted over the root: a bind the user
    // asked for on /etc/passwd covers the generated one, as it should.
    let root = k.open_root(&r.merged)?;
    for (path, data) in &r.files {
        k.write_file(&root, path, data)?;
    }
    Ok(())
}

/// The image under its skeleton, both read-only lower layers of one
/// overlay: nothing to make, copy up or write on a warm start.
fn skeleton_root<K: Kernel>(k: &mut K, r: &ImageRoot, s: &Skeleton) -> Result<()> {
    k.make_skeleton(s, &r.lower)?;
    let data = super::overlay::lower_only(&[&s.dir, &r.lower]);
    match overlay_mount(k, &data, &r.merged, MsFlags::MS_RDONLY) {
        // The cache's mount point is made on first use (by one of the
        // ranks that start at once).
        Err(Errno::ENOENT) => {
            match k.mkdir(&r.merged) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    bail!("creating {}: {e}", r.merged.display())
                }
                _ => {}
            }
            overlay_mount(k, &data, &r.merged, MsFlags::MS_RDONLY)
        }
        res => res,
    }
    .map_err(|e| anyhow!("overlay of {}: {e}", s.dir.display()))
}

/// The image under a private, writable upper layer on a tmpfs (or an
/// underlay where the kernel refuses overlayfs).
fn private_root<K: Kernel>(k: &mut K, r: &ImageRoot) -> Result<()> {
    let scratch = r
        .merged
        .parent()
        .ok_or_else(|| anyhow!("image root {} has no parent", r.merged.display()))?;
    k.mount(
        Some(Path::new("tmpfs")),
        Target::Path(scratch),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|e| anyhow!("tmpfs for the image root on {}: {e}", scratch.display()))?;
    for d in ["upper", "work", "merged"] {
        k.mkdir(&scratch.join(d))
            .map_err(|e| anyhow!("creating the image root's {d}: {e}"))?;
    }
    let overlay = |k: &mut K| {
        let data = super::overlay::options(&r.lower, &scratch.join("upper"), &scratch.join("work"));
        overlay_mount(k, &data, &r.merged, MsFlags::empty())
    };
    match r.method {
        RootMethod::Overlay => {
            crate::debug!(
                "image root: overlay of {} (as configured)",
                r.lower.display()
            );
            overlay(k).map_err(|e| anyhow!("overlay of image {}: {e}", r.lower.display()))
        }
        RootMethod::Underlay => {
            crate::debug!(
                "image root: underlay of {} (as configured)",
                r.lower.display()
            );
            underlay(k, r, "image_root is set to underlay")
        }
        RootMethod::Auto => match overlay(k) {
            Ok(()) => {
                crate::debug!("image root: overlay of {}", r.lower.display());
                Ok(())
            }
            // What kernels before 5.11 answer an unprivileged overlay (or
            // one without overlayfs at all).
            Err(e @ (Errno::EPERM | Errno::EINVAL | Errno::ENODEV)) => {
                crate::debug!("image root: overlayfs refused ({e}); using an underlay");
                underlay(
                    k,
                    r,
                    "this kernel refuses overlayfs to unprivileged users (it came in Linux 5.11)",
                )
            }
            Err(e) => Err(anyhow!("overlay of image {}: {e}", r.lower.display())),
        },
    }
}

fn overlay_mount<K: Kernel>(
    k: &mut K,
    data: &str,
    merged: &Path,
    flags: MsFlags,
) -> nix::Result<()> {
    let fs = Some(Path::new("overlay"));
    // Inside a user namespace overlayfs stores its metadata in user.*
    // xattrs; older kernels need to be told so.
    match k.mount(fs, Target::Path(merged), Some("overlay"), flags, Some(data)) {
        Err(Errno::EINVAL) | Err(Errno::EPERM) => {
            let data = format!("{data},userxattr");
            k.mount(
                fs,
                Target::Path(merged),
                Some("overlay"),
                flags,
                Some(&data),
            )
        }
        r => r,
    }
}

/// The root as a tmpfs with the image's entries bound into it read-only
/// (see ops::Underlay). It can hold mount points the image lacks, but not
/// make the image's own files writable.
fn underlay<K: Kernel>(k: &mut K, r: &ImageRoot, why: &str) -> Result<()> {
    if r.writable {
        bail!("--writable-tmpfs needs an overlay of the image, and {why}");
    }
    // The scratch tmpfs's merged directory, bound on itself: pivot_root
    // needs a mount point.
    k.mount(
        Some(&r.merged),
        Target::Path(&r.merged),
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(|e| anyhow!("binding the image root {}: {e}", r.merged.display()))?;
    let root = k.open_root(&r.merged)?;
    populate(k, &root, r, Path::new(""))
}

fn populate<K: Kernel>(k: &mut K, root: &K::Fd, r: &ImageRoot, rel: &Path) -> Result<()> {
    let dir = r.lower.join(rel);
    let entries = k
        .read_dir(&dir)
        .map_err(|e| anyhow!("underlay: reading {}: {e}", dir.display()))?;
    for (name, entry) in entries {
        let child = rel.join(&name);
        if r.underlay.omit.contains(&child) {
            continue;
        }
        let dest = Path::new("/").join(&child);
        match entry {
            Entry::Symlink(target) => {
                let parent = k.create_in_root(root, &Path::new("/").join(rel), Leaf::Dir)?;
                match k.symlink(&parent, &name, &target) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => bail!("underlay: symlink {}: {e}", dest.display()),
                }
            }
            Entry::Dir if r.underlay.expand.contains(&child) => {
                k.create_in_root(root, &dest, Leaf::Dir)?;
                populate(k, root, r, &child)?;
            }
            entry => {
                let m = MountOp {
                    dest: dest.clone(),
                    what: What::Bind {
                        source: r.lower.join(&child),
                        recursive: false,
                    },
                    leaf: if entry == Entry::Dir {
                        Leaf::Dir
                    } else {
                        Leaf::File
                    },
                    refuse_proc: false,
                    fallback: None,
                    then: Finish {
                        remount: MsFlags::MS_RDONLY,
                        keep_locked: r.keep_locked,
                        ..Finish::default()
                    },
                    label: format!("underlay {}", dest.display()),
                };
                do_mount(k, root, &m)?;
            }
        }
    }
    Ok(())
}

fn mask<K: Kernel>(k: &mut K, p: &Path) -> Result<()> {
    match k.kind(p)? {
        None => Ok(()),
        Some(FileKind::Dir) => k
            .mount(
                Some(Path::new("tmpfs")),
                Target::Path(p),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )
            .map_err(|e| anyhow!("tmpfs: {e}")),
        Some(FileKind::Other) => k
            .mount(
                Some(Path::new("/dev/null")),
                Target::Path(p),
                None,
                MsFlags::MS_BIND,
                None,
            )
            .map_err(|e| anyhow!("binding /dev/null: {e}")),
    }
}

fn readonly_path<K: Kernel>(k: &mut K, p: &Path, keep_locked: bool) -> Result<()> {
    match k.mount(
        Some(p),
        Target::Path(p),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(anyhow!("bind: {e}")),
    }
    let fd = k.open_path(p)?;
    remount_bind(k, Target::Fd(&fd), MsFlags::MS_RDONLY, keep_locked, false)
}
