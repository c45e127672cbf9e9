//! Image mode's process model: hpcc itself enters the namespaces, builds
//! the rootfs and execs the program, so under mpirun or srun the rank *is*
//! the process the launcher started: same PID, parent, fds and signals.
//! Only with a PID namespace does hpcc stay, as a minimal parent.

use super::container_setup::{self, ContainerSetup, ImageRoot};
use super::namespaces::{self, IdMaps, NsPlan, OpenedNs, UserNs};
use super::process_setup::{self, ProcessSetup};
use crate::hpc::host_devices::StageHook;
use crate::hpc::node_join::{self, JoinGroup, Role};
use anyhow::{anyhow, bail, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;
use oci_spec::runtime::Spec;
use std::convert::Infallible;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

/// Runs `spec` over the image `img`, its root built at `merged`. Returns only
/// on failure; with a PID namespace the supervising parent exits with the
/// program's status instead.
/// `hooks` (from CDI) run as image_hooks.rs says.
/// With `join`, the ranks of one node share one container: the first to
/// arrive builds it, the others enter its namespaces.
pub fn exec_in_place(
    spec: &Spec,
    img: &ImageRoot,
    merged: &Path,
    hooks: &[StageHook],
    join: Option<(&JoinGroup, Duration)>,
) -> Result<Infallible> {
    let ns = NsPlan::from_spec(spec);
    if !ns.join.is_empty() || matches!(ns.user, UserNs::Join(_)) {
        bail!("image mode does not join namespaces by path");
    }
    let container = ContainerSetup::new(spec, merged, img.lower, &ns)?.image(img);
    // The caller's session keyring (AFS and Kerberos tokens) and every fd
    // it passed (PMI_FD) stay.
    let process = ProcessSetup::new("image", spec)?
        .keep_session_keyring()
        .preserve_fds(None);
    let role = match join {
        Some((group, timeout)) if !ns.new_pid => Some(node_join::meet(group, timeout)?),
        _ => None,
    };
    let listener = match role {
        Some(Role::Follower(fds)) => {
            namespaces::enter(built_container(fds)?, own_maps(spec)?)?;
            let prepared = process_setup::prepare(&process)?;
            return Err(anyhow!(process_setup::exec(&prepared)));
        }
        Some(Role::Leader(l)) => Some(l),
        Some(Role::Alone) | None => None,
    };
    if ns.user == UserNs::Create {
        check_own_maps(spec)?;
    }
    namespaces::enter(ns.open()?, own_maps(spec)?)?;
    // Handles on what we just made, for the ranks that will join it.
    let ns_handles = match &listener {
        Some(_) => own_namespaces(ns.in_userns())?,
        None => Vec::new(),
    };
    if ns.new_pid {
        // unshare(CLONE_NEWPID) applies to children. The first child is the
        // namespace's PID 1: a minimal init that forwards signals to the
        // program and reaps orphans (a program as PID 1 would ignore
        // SIGTERM and leave zombies). We stay outside only to pass on
        // signals and the status.
        supervise_child()?;
        supervise_child()?;
    }
    let before_pivot = || super::image_hooks::before_pivot(hooks, spec, merged);
    let hook = (!hooks.is_empty()).then_some(&before_pivot as &dyn Fn() -> Result<()>);
    container_setup::build(&container, hook).map_err(|e| match ns.user {
        UserNs::Create => super::userns_limits::with_hint(e),
        _ => e,
    })?;
    if let (Some(l), Some((group, timeout))) = (listener, join) {
        node_join::spawn_holder(l, ns_handles, group.local_size, timeout)?;
    }
    super::image_hooks::before_exec(hooks, spec)?;
    let prepared = process_setup::prepare(&process)?;
    Err(anyhow!(process_setup::exec(&prepared)))
}

/// The namespaces a follower received: the user namespace first when
/// there is one, the mount namespace last.
fn built_container(mut fds: Vec<OwnedFd>) -> Result<OpenedNs> {
    let mnt = fds
        .pop()
        .ok_or_else(|| anyhow!("join: no namespace received"))?;
    Ok(OpenedNs::built_container(fds.pop(), mnt))
}

/// Image mode maps only the caller's own ids (the maps are in the Spec).
fn own_maps(spec: &Spec) -> Result<IdMaps<'_>> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow!("no linux section"))?;
    Ok(IdMaps::Own {
        uids: linux.uid_mappings().as_deref().unwrap_or(&[]),
        gids: linux.gid_mappings().as_deref().unwrap_or(&[]),
    })
}

/// An unprivileged process may write only the one line that maps its own
/// uid and gid.
fn check_own_maps(spec: &Spec) -> Result<()> {
    use super::idmap::{choose_writer, Writer};
    let IdMaps::Own { uids, gids } = own_maps(spec)? else {
        return Ok(());
    };
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if choose_writer(uids, uid, false) != Writer::Direct
        || choose_writer(gids, gid, false) != Writer::Direct
    {
        bail!("image mode maps only the caller's own uid and gid");
    }
    Ok(())
}

/// Forks; the parent forwards signals to the child, waits for it and
/// exits with its status (128+N for signal N); the child returns.
fn supervise_child() -> Result<()> {
    match crate::sys::fork_single_threaded()? {
        ForkResult::Parent { child } => {
            super::supervise::forward_signals(child.as_raw())?;
            let code = super::supervise::wait_for(child.as_raw())?;
            std::process::exit(code);
        }
        ForkResult::Child => Ok(()),
    }
}

fn open_ns(name: &str) -> Result<OwnedFd> {
    let path = format!("/proc/self/ns/{name}");
    crate::sys::open(path.as_str(), OFlag::O_RDONLY, Mode::empty())
        .map_err(|e| anyhow!("opening {path}: {e}"))
}

/// The user (when we made one) and mount namespaces, in joining order.
fn own_namespaces(new_user: bool) -> Result<Vec<OwnedFd>> {
    let mut v = Vec::new();
    if new_user {
        v.push(open_ns("user")?);
    }
    v.push(open_ns("mnt")?);
    Ok(v)
}
