//! Image mode's process model: hpcc itself enters the namespaces, builds
//! the rootfs and execs the program, so under mpirun or srun the rank *is*
//! the process the launcher started: same PID, parent, fds and signals.
//! Only with a PID namespace does hpcc stay, as a minimal parent.

use super::idmap::{self, IdKind, Writer};
use super::init::{self, InitConfig};
use super::namespaces::NsPlan;
use anyhow::{anyhow, bail, Result};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::ForkResult;
use oci_spec::runtime::Spec;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

/// Runs `spec` over an overlay of `lower` mounted at `merged`. Returns only
/// on failure; with a PID namespace the supervising parent exits with the
/// program's status instead.
pub fn exec_in_place(
    spec: &Spec,
    lower: &Path,
    merged: &Path,
    files: &[(PathBuf, Vec<u8>)],
) -> Result<Infallible> {
    let ns = NsPlan::from_spec(spec);
    if !ns.join.is_empty() {
        bail!("image mode does not join namespaces by path");
    }
    if ns.new_user {
        enter_own_userns(spec)?;
    }
    unshare(ns.create).map_err(|e| anyhow!("creating namespaces {:?}: {e}", ns.create))?;
    if ns.new_pid {
        // unshare(CLONE_NEWPID) applies to children: the program runs in
        // a child, and we stay only to forward signals and pass its status.
        match crate::sys::fork_single_threaded().map_err(|e| anyhow!("fork: {e}"))? {
            ForkResult::Parent { child } => {
                super::supervise::forward_signals(child.as_raw())?;
                let code = super::supervise::wait_for(child.as_raw())?;
                std::process::exit(code);
            }
            ForkResult::Child => {}
        }
    }
    let cfg = InitConfig::for_image(spec, lower, merged, &ns, files)?;
    let prepared = init::setup(&cfg)?;
    Err(anyhow!(init::exec(&prepared)))
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
