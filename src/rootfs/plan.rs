//! Deciding the container's mounts: a pure function of the Spec, the
//! launch's facts and what the host says (host_view.rs). The result is a
//! [`MountPlan`] that executor.rs carries out.

use super::cgroupfs::{self, CgroupMount};
use super::host_view::{HostView, Remembered};
use super::ops::{Finish, ImageRoot, MountOp, MountPlan, Op, RootMethod, Skeleton, What};
use super::options::{self, MountOptions};
use super::resolve::Leaf;
use super::skeleton::SkeletonDirs;
use anyhow::{anyhow, Context, Result};
use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::{Mount, Spec};
use std::path::{Path, PathBuf};

/// What the plan depends on besides the Spec.
pub struct PlanContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    /// The container has its own user namespace, so the kernel locks the
    /// nosuid/nodev/noexec/atime flags of mounts it inherited.
    pub in_userns: bool,
    pub has_cgroupns: bool,
    /// mknod is allowed (real root, no user namespace).
    pub use_mknod: bool,
    pub no_pivot: bool,
    /// The container has a mount namespace of its own (new or joined).
    /// Without one its mounts land in the caller's mount table: nothing
    /// may change the caller's own mounts, and it chroots.
    pub own_mount_ns: bool,
    /// Image mode: `rootfs` is built over the cached image.
    pub image: Option<ImageContext<'a>>,
}

/// Image mode's root: the cached image, how to build the root over it,
/// and the files that will be generated in it.
#[derive(Clone, Copy)]
pub struct ImageContext<'a> {
    pub lower: &'a Path,
    pub method: RootMethod,
    /// Generated files: path inside, contents.
    pub files: &'a [(PathBuf, Vec<u8>)],
    /// Where this image's skeletons live; None: no skeleton, ever.
    pub skeletons: Option<&'a SkeletonDirs>,
    /// Hooks run before the pivot, and may write into the root.
    pub hooks: bool,
}

pub fn plan(ctx: &PlanContext, host: &dyn HostView) -> Result<MountPlan> {
    let spec = ctx.spec;
    let linux = spec.linux().as_ref();
    let mut setup = Vec::new();
    // Nothing we mount may propagate back to the host, unless shared was
    // asked for (the copy of a shared mount stays in the host's peer
    // group). Unbindable comes last: binds from the host must work first.
    let asked = root_propagation(spec)?;
    let initial = match asked {
        Some(p) if !p.contains(MsFlags::MS_UNBINDABLE) => p,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    if ctx.own_mount_ns {
        setup.push(Op::PropagateRoot {
            flags: initial,
            label: "setting / propagation",
        });
    }
    // pivot_root refuses a shared parent mount: as runc does, make the
    // rootfs's parent private (in our namespace); the asked-for mode is
    // set on the new / after the pivot.
    if ctx.own_mount_ns && initial.contains(MsFlags::MS_SHARED) {
        setup.push(Op::PrivatizeParent(ctx.rootfs.to_path_buf()));
    }
    let spec_mounts = spec.mounts().as_deref().unwrap_or(&[]);
    let mut cgroups = None;
    let mut inside = Vec::new();
    for m in spec_mounts {
        inside.extend(
            mount_ops(ctx, m, host, &mut cgroups)
                .with_context(|| format!("mount {}", m.destination().display()))?,
        );
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
    let devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    inside.extend(super::dev_nodes::plan(
        !dev_is_bind,
        devices,
        ctx.use_mknod,
        host,
    )?);
    // Either way the new root is a mount point, as pivot_root requires.
    match &ctx.image {
        Some(img) => setup.push(Op::ImageRoot(image_root(ctx, img, &inside, host))),
        None => setup.push(Op::BindOnItself(ctx.rootfs.to_path_buf())),
    }
    setup.push(Op::OpenRoot(ctx.rootfs.to_path_buf()));
    setup.extend(inside);
    setup.push(Op::Hooks);
    setup.push(if !ctx.own_mount_ns {
        Op::Chroot(ctx.rootfs.to_path_buf())
    } else if ctx.no_pivot {
        Op::MoveRoot(ctx.rootfs.to_path_buf())
    } else {
        Op::PivotRoot(ctx.rootfs.to_path_buf())
    });
    let mut finish = Vec::new();
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or(&[])
    {
        finish.push(Op::Mask(PathBuf::from(p)));
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or(&[])
    {
        finish.push(Op::ReadOnlyPath {
            path: PathBuf::from(p),
            keep_locked: ctx.in_userns,
        });
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        finish.push(Op::RootReadOnly {
            keep_locked: ctx.in_userns,
        });
    }
    // The asked-for mode of the new root, set after the pivot (it is the
    // new / it describes) and after the masks, whose /dev/null binds an
    // unbindable tree would refuse.
    if let Some(p) = asked {
        finish.push(Op::PropagateRoot {
            flags: p,
            label: "setting rootfs propagation",
        });
    }
    Ok(MountPlan { setup, finish })
}

/// The image root, with the underlay planned in case it is needed, and
/// the skeleton where one can serve. `inside` is what the plan then does
/// inside the root.
fn image_root(
    ctx: &PlanContext,
    img: &ImageContext,
    inside: &[Op],
    host: &dyn HostView,
) -> ImageRoot {
    let spec = ctx.spec;
    let mut dests: Vec<PathBuf> = spec
        .mounts()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    dests.extend(
        spec.linux()
            .as_ref()
            .and_then(|l| l.devices().as_deref())
            .unwrap_or(&[])
            .iter()
            .map(|d| d.path().clone()),
    );
    let files: Vec<PathBuf> = img.files.iter().map(|(p, _)| p.clone()).collect();
    // Both plans below walk the same image paths: ask the image once.
    let host = &Remembered::new(host);
    let writable = spec.root().as_ref().and_then(|r| r.readonly()) != Some(true);
    ImageRoot {
        lower: img.lower.to_path_buf(),
        merged: ctx.rootfs.to_path_buf(),
        method: img.method,
        writable,
        keep_locked: ctx.in_userns,
        underlay: super::underlay::plan(img.lower, &dests, &files, host),
        files: img.files.to_vec(),
        skeleton: match img.skeletons {
            Some(dirs) if !writable && !img.hooks && img.method != RootMethod::Underlay => {
                skeleton(dirs, img, inside, host)
            }
            _ => None,
        },
    }
}

/// The skeleton for a read-only root: mount points for every mount, and
/// none at all when something else (a directory, a node, a symlink) must
/// be made outside the mounts before it (only a writable root takes it).
fn skeleton(
    dirs: &SkeletonDirs,
    img: &ImageContext,
    inside: &[Op],
    host: &dyn HostView,
) -> Option<Skeleton> {
    let mut mounts: Vec<(PathBuf, Leaf)> = Vec::new();
    for op in inside {
        let made = match op {
            Op::Mount(m) => {
                mounts.push((m.dest.clone(), m.leaf));
                continue;
            }
            Op::MakeDir(p) => p,
            Op::Symlink { link, .. } => link,
            Op::MakeNode(n) => &n.path,
            _ => continue,
        };
        let earlier = mounts.iter().map(|(d, _)| d.as_path());
        if !super::skeleton::inside_earlier(earlier, made) {
            return None;
        }
    }
    super::skeleton::plan(dirs, img.lower, &mounts, img.files, host)
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

/// The steps of one config.json mount.
fn mount_ops(
    ctx: &PlanContext,
    m: &Mount,
    host: &dyn HostView,
    cgroups: &mut Option<cgroupfs::CgroupHost>,
) -> Result<Vec<Op>> {
    let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("none");
    let dest = m.destination();
    let label = format!("mount {}", dest.display());
    if opts.is_bind() || typ == "bind" {
        let src = bind_source(ctx.bundle, m)?;
        let leaf = match host.is_dir(&src) {
            Ok(true) => Leaf::Dir,
            Ok(false) => Leaf::File,
            Err(e) => return Err(anyhow!("bind source {}: {e}", src.display())),
        };
        return Ok(vec![Op::Mount(MountOp {
            dest: dest.clone(),
            what: What::Bind {
                source: src,
                recursive: opts.flags.contains(MsFlags::MS_REC),
            },
            leaf,
            refuse_proc: true,
            fallback: None,
            then: bind_finish(ctx, &opts),
            label,
        })]);
    }
    if matches!(typ, "cgroup" | "cgroup2") {
        let cg = match cgroups {
            Some(c) => c,
            None => cgroups.insert(host.cgroups()?),
        };
        let request = CgroupMount {
            dest,
            opts: &opts,
            in_userns: ctx.in_userns,
            has_cgroupns: ctx.has_cgroupns,
            label,
        };
        return Ok(cgroupfs::plan(&request, cg));
    }
    // Without its own network (sysfs) or with a foreign IPC namespace
    // (mqueue) an unprivileged user cannot mount these; the host's
    // instance bound read-only is what runc gives as well.
    let host_instance = match typ {
        "sysfs" if ctx.in_userns => Some("/sys"),
        "mqueue" if ctx.in_userns => Some("/dev/mqueue"),
        _ => None,
    };
    let fallback = host_instance.map(|h| {
        (
            vec![Errno::EPERM],
            Box::new(MountOp {
                dest: dest.clone(),
                what: What::Bind {
                    source: h.into(),
                    recursive: true,
                },
                leaf: Leaf::Dir,
                refuse_proc: false,
                fallback: None,
                then: bind_finish(ctx, &opts),
                label: label.clone(),
            }),
        )
    });
    Ok(vec![Op::Mount(MountOp {
        dest: dest.clone(),
        what: What::Fs {
            fstype: typ.to_string(),
            source: m.source().clone().unwrap_or_else(|| PathBuf::from(typ)),
            flags: opts.flags & !MsFlags::MS_REC,
            data: opts.data_string(),
        },
        leaf: Leaf::Dir,
        refuse_proc: true,
        fallback,
        then: Finish {
            recursive_ro: opts.recursive_ro,
            propagation: opts.propagation.clone(),
            ..Finish::default()
        },
        label,
    })])
}

/// What follows a bind: its flags need a remount.
fn bind_finish(ctx: &PlanContext, opts: &MountOptions) -> Finish {
    Finish {
        remount: opts.remount_flags(),
        keep_locked: ctx.in_userns,
        explicit_atime: opts.explicit_atime,
        recursive_ro: opts.recursive_ro,
        propagation: opts.propagation.clone(),
    }
}

fn bind_source(bundle: &Path, m: &Mount) -> Result<PathBuf> {
    let src = m
        .source()
        .as_ref()
        .ok_or_else(|| anyhow!("bind mount has no source"))?;
    Ok(if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    })
}
