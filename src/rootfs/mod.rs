//! The container's filesystem view, built inside its mount namespace.
//!
//! Decide, then act: `plan.rs` turns the Spec into a [`MountPlan`] (a list
//! of [`Op`]s, as bubblewrap's SetupOp list), with the cgroup view
//! (cgroupfs.rs) and /dev nodes (dev_nodes.rs) planned by their own files;
//! `executor.rs` carries it out through one `Kernel` trait (kernel.rs),
//! whose recording fake (recorder.rs) lets both be unit-tested without
//! root. Paths inside a rootfs are hostile: resolve.rs resolves them
//! inside the root, files.rs writes generated files without following
//! the image's symlinks.

pub mod cgroupfs;
pub mod dev_nodes;
mod executor;
#[cfg(test)]
mod executor_tests;
pub mod files;
pub mod host_view;
mod image_lookup;
pub mod in_root;
pub mod kernel;
pub mod ops;
pub mod options;
mod overlay;
pub mod pivot;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod proc_rule;
#[cfg(test)]
mod recorder;
mod remount;
pub mod resolve;
pub mod skeleton;
mod underlay;

pub use ops::RootMethod;
pub use ops::{MountPlan, Op};
pub use plan::{ImageContext, PlanContext};
pub use skeleton::SkeletonDirs;

use anyhow::Result;
use std::path::Path;

/// The container's mount plan, against the real host.
pub fn plan_for(ctx: &PlanContext) -> Result<MountPlan> {
    plan::plan(ctx, &host_view::RealHost)
}

/// Detaches every mount at or under `rootfs` in our mount namespace,
/// deepest first: what a container without a mount namespace of its own
/// left in the caller's mount table.
pub fn detach_mounts_under(rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| anyhow::anyhow!("reading /proc/self/mountinfo: {e}"))?;
    for m in kernel::mounts_under(&info, rootfs).iter().rev() {
        match nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH) {
            // Gone with its parent already.
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => anyhow::bail!("detaching {}: {e}", m.display()),
        }
    }
    Ok(())
}

/// Carries out `ops` on the real kernel; `hooks` runs at `Op::Hooks`.
pub fn run(ops: &[Op], hooks: Option<&dyn Fn() -> Result<()>>) -> Result<()> {
    executor::execute(&mut kernel::Host, ops, hooks)
}

/// Binds a pty slave on the container's /dev/console (after the switch of
/// root), through the same executor as every other mount.
pub fn bind_console(slave: &Path) -> Result<()> {
    let console = Path::new("/dev/console");
    run(
        &[
            Op::OpenRoot("/".into()),
            Op::Mount(ops::MountOp {
                dest: console.into(),
                what: ops::What::Bind {
                    source: slave.into(),
                    recursive: false,
                },
                leaf: resolve::Leaf::File,
                refuse_proc: false,
                fallback: None,
                then: ops::Finish::default(),
                label: format!("binding {} on /dev/console", slave.display()),
            }),
        ],
        None,
    )
}
