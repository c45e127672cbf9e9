//! Image mode's process model: hpcc itself enters the namespaces, builds
//! the rootfs and execs the program, so under mpirun or srun the rank *is*
//! the process the launcher started: same PID, parent, fds and signals.
//! Only with a PID namespace does hpcc stay, as a minimal parent.

use super::idmap::{self, IdKind, Writer};
use super::init::{self, InitConfig};
use super::namespaces::NsPlan;
use super::rendezvous::{self, Role};
use crate::hpc::join::JoinGroup;
use anyhow::{anyhow, bail, Result};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::ForkResult;
use oci_spec::runtime::Spec;
use std::convert::Infallible;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs `spec` over an overlay of `lower` mounted at `merged`. Returns only
/// on failure; with a PID namespace the supervising parent exits with the
/// program's status instead.
/// With `join`, the ranks of one node share one container: the first to
/// arrive builds it, the others enter its namespaces.
pub fn exec_in_place(
    spec: &Spec,
    lower: &Path,
    merged: &Path,
    files: &[(PathBuf, Vec<u8>)],
    join: Option<(&JoinGroup, Duration)>,
) -> Result<Infallible> {
    let ns = NsPlan::from_spec(spec);
    if !ns.join.is_empty() {
        bail!("image mode does not join namespaces by path");
    }
    let cfg = InitConfig::for_image(spec, lower, merged, &ns, files)?;
    let role = match join {
        Some((group, timeout)) if !ns.new_pid => Some(rendezvous::meet(group, timeout)?),
        _ => None,
    };
    let listener = match role {
        Some(Role::Follower(fds)) => {
            enter_built_container(&fds)?;
            let prepared = init::prepare_process(&cfg)?;
            return Err(anyhow!(init::exec(&prepared)));
        }
        Some(Role::Leader(l)) => Some(l),
        Some(Role::Alone) | None => None,
    };
    if ns.new_user {
        enter_own_userns(spec)?;
    }
    unshare(ns.create).map_err(|e| anyhow!("creating namespaces {:?}: {e}", ns.create))?;
    // Handles on what we just made, for the ranks that will join it.
    let ns_handles = match &listener {
        Some(_) => own_namespaces(ns.new_user)?,
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
    init::build_container(&cfg)?;
    if let (Some(l), Some((group, timeout))) = (listener, join) {
        rendezvous::spawn_holder(l, ns_handles, group.local_size, timeout)?;
    }
    let prepared = init::prepare_process(&cfg)?;
    Err(anyhow!(init::exec(&prepared)))
}

/// Forks; the parent forwards signals to the child, waits for it and
/// exits with its status (128+N for signal N); the child returns.
fn supervise_child() -> Result<()> {
    match crate::sys::fork_single_threaded().map_err(|e| anyhow!("fork: {e}"))? {
        ForkResult::Parent { child } => {
            super::supervise::forward_signals(child.as_raw())?;
            let code = super::supervise::wait_for(child.as_raw())?;
            std::process::exit(code);
        }
        ForkResult::Child => Ok(()),
    }
}

fn open_ns(name: &str) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        format!("/proc/self/ns/{name}").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| anyhow!("opening /proc/self/ns/{name}: {e}"))?;
    Ok(crate::sys::adopt(fd))
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

/// setns into a node's container: the user namespace first (it grants the
/// right to join the mount namespace), then the mount namespace, whose root
/// is the container's root.
fn enter_built_container(fds: &[OwnedFd]) -> Result<()> {
    let (mnt, rest) = fds
        .split_last()
        .ok_or_else(|| anyhow!("join: no namespace received"))?;
    if let Some(user) = rest.first() {
        setns(user, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| anyhow!("join: entering the user namespace: {e}"))?;
    }
    setns(mnt, CloneFlags::CLONE_NEWNS)
        .map_err(|e| anyhow!("join: entering the mount namespace: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| anyhow!("join: chdir /: {e}"))
}

/// unshare(CLONE_NEWUSER) and map ourselves: an unprivileged process may
/// write its own single-id maps once setgroups is denied.
fn enter_own_userns(spec: &Spec) -> Result<()> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow!("no linux section"))?;
    let uids = linux.uid_mappings().as_deref().unwrap_or(&[]);
    let gids = linux.gid_mappings().as_deref().unwrap_or(&[]);
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if idmap::choose_writer(uids, uid, false) != Writer::Direct
        || idmap::choose_writer(gids, gid, false) != Writer::Direct
    {
        bail!("image mode maps only the caller's own uid and gid");
    }
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| {
        anyhow!("creating user namespace: {e} (are unprivileged user namespaces enabled?)")
    })?;
    idmap::write_self_map(IdKind::Uid, uids)?;
    idmap::write_self_map(IdKind::Gid, gids)
}
