//! `hpcc kill`: signal a container's init, or with --all every process in it.

use super::Ctx;
use crate::cli::KillArgs;
use crate::container::{ContainerState, Status};
use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub fn run(ctx: &Ctx, a: &KillArgs) -> Result<i32> {
    let sig = crate::signals::parse_signal(&a.signal)?;
    let st = ctx.store.load(&a.id)?;
    if ctx.store.status(&st) == Status::Stopped {
        bail!("container not running");
    }
    if a.all {
        signal_all(&st, sig);
        return Ok(0);
    }
    match kill(Pid::from_raw(st.pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(0),
        Err(e) => Err(anyhow!("sending {sig} to container {}: {e}", st.id)),
    }
}

/// Every process of the container: all members of its PID namespace when
/// it has one, else its init and that init's descendants.
pub fn container_pids(st: &ContainerState) -> Vec<i32> {
    if st.own_pid_ns {
        if let Some(ns) = crate::procfs::ns_id(st.pid, "pid") {
            return crate::procfs::all_pids()
                .into_iter()
                .filter(|p| crate::procfs::ns_id(*p, "pid").as_deref() == Some(ns.as_str()))
                .collect();
        }
    }
    crate::procfs::descendants(st.pid)
}

pub fn signal_all(st: &ContainerState, sig: Signal) {
    for pid in container_pids(st) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}
