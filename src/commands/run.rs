//! `hpcc run ID`: create and start; in the foreground, stay as the parent,
//! forward signals, relay the terminal, and exit with the container's status.

use super::create::create_container;
use super::start::start_container;
use super::Ctx;
use crate::cli::RunArgs;
use crate::container::ContainerState;
use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

pub fn run(ctx: &Ctx, a: &RunArgs) -> Result<i32> {
    if a.detach {
        create_container(ctx, &a.id, &a.opts, None, false)?;
        if let Err(e) = start_container(ctx, &a.id) {
            let _ = cleanup(ctx, &a.id);
            return Err(e);
        }
        return Ok(0);
    }
    // Orphans of the container (its init first of all, once the middle
    // launch process exits) become our children, so we can wait for them.
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    let (ours, theirs) = match a.opts.console_socket {
        Some(_) => (None, None),
        None => {
            let (o, t) = std::os::unix::net::UnixStream::pair().context("console socketpair")?;
            (Some(o), Some(t))
        }
    };
    let created = create_container(ctx, &a.id, &a.opts, theirs, true)?;
    let relay_from = if created.terminal { ours } else { None };
    // Held until we return: should we die before `start`, init exits too.
    let lifeline = created.lifeline;
    let result = foreground(ctx, &created.state, relay_from);
    drop(lifeline);
    let _ = cleanup(ctx, &a.id);
    result
}

/// `console` is our end of the console socket when we relay the terminal.
fn foreground(
    ctx: &Ctx,
    st: &ContainerState,
    console: Option<std::os::unix::net::UnixStream>,
) -> Result<i32> {
    let relay = match console {
        Some(sock) => Some(crate::launch::console::recv_fd(&OwnedFd::from(sock))?),
        None => None,
    };
    crate::launch::supervise::forward_signals(st.pid)?;
    start_container(ctx, &st.id)?;
    let _guard = relay.map(crate::tty::Relay::start).transpose()?;
    crate::launch::supervise::wait_for(st.pid)
}

/// Kills whatever the container left (processes outside a PID namespace
/// were reparented to us) and removes its state.
fn cleanup(ctx: &Ctx, id: &str) -> Result<()> {
    let st = ctx.store.load(id).ok();
    if let Some(st) = &st {
        if ctx.store.status(st) != crate::container::Status::Stopped {
            super::delete::kill_and_wait(st)?;
        }
    }
    let me = std::process::id() as i32;
    for pid in crate::procfs::descendants(me)
        .into_iter()
        .filter(|p| *p != me)
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    while waitpid(
        Pid::from_raw(-1),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    )
    .is_ok_and(|s| s != WaitStatus::StillAlive)
    {}
    match &st {
        Some(st) => super::delete::destroy(ctx, st),
        None => ctx.store.remove(id),
    }
}
