//! `hpcc delete`: remove a container's state, killing it first if asked.

use super::kill::signal_all;
use super::Ctx;
use crate::cli::DeleteArgs;
use crate::container::{ContainerState, Status};
use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx, a: &DeleteArgs) -> Result<i32> {
    let st = match ctx.store.load(&a.id) {
        Ok(st) => st,
        Err(e) => {
            // A directory without state.json is a create that died half-way;
            // --force clears it, as it clears a missing container silently.
            if a.force && crate::container::validate_id(&a.id).is_ok() {
                if let Some(pid) = ctx.store.half_made_init(&a.id) {
                    let _ =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                }
                // Its cgroup holds whatever the dead create left running.
                if let Some(c) = ctx.store.half_made_cgroup(&a.id) {
                    crate::cgroups::kill_and_remove(&c, &a.id)?;
                }
                if let Some(rootfs) = ctx.store.host_mounts(&a.id) {
                    crate::rootfs::detach_mounts_under(&rootfs)?;
                }
                ctx.store.remove(&a.id)?;
                return Ok(0);
            }
            return Err(e);
        }
    };
    match ctx.store.status(&st) {
        Status::Stopped => {}
        // Like runc: a container that never started may go without --force.
        Status::Created => kill_and_wait(&st)?,
        Status::Running if a.force => kill_and_wait(&st)?,
        // Frozen processes cannot die: thaw first.
        Status::Paused if a.force => {
            super::pause::set_paused(ctx, &st, false)?;
            kill_and_wait(&st)?
        }
        Status::Paused => bail!(
            "cannot delete container {} that is not stopped: paused",
            a.id
        ),
        Status::Running => bail!(
            "cannot delete container {} that is not stopped: running",
            a.id
        ),
    }
    destroy(ctx, &st)?;
    Ok(0)
}

/// Removes a stopped container's state, then runs its poststop hooks
/// (failures are warnings, as the runtime-spec says).
pub fn destroy(ctx: &Ctx, st: &ContainerState) -> Result<()> {
    if let Some(c) = &st.cgroup {
        if let Err(e) = crate::cgroups::remove(c, &st.id) {
            crate::logging::warn(&format!("{e:#}"));
        }
    }
    if let Some(rootfs) = ctx.store.host_mounts(&st.id) {
        crate::rootfs::detach_mounts_under(&rootfs)?;
    }
    ctx.store.remove(&st.id)?;
    if let Some(h) = super::start::lifecycle_hooks(st).and_then(|h| h.poststop().clone()) {
        let mut state = super::state::oci_state(&ctx.store, st);
        state["status"] = "stopped".into();
        state["pid"] = 0.into();
        crate::hooks::run_warn(&h, "poststop", &state);
    }
    Ok(())
}

/// SIGKILLs every process of the container and waits (up to 10 s) until the
/// init is gone, so that delete never removes state of a live process.
pub fn kill_and_wait(st: &ContainerState) -> Result<()> {
    signal_all(st, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::procfs::is_alive(st.pid, st.start_time) {
        if Instant::now() > deadline {
            bail!(
                "container {} (pid {}) did not die after SIGKILL",
                st.id,
                st.pid
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
