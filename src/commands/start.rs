//! `hpcc start`: release a created container's process into its program.

use super::Ctx;
use crate::container::{Status, START_SOCKET};
use anyhow::{bail, Context, Result};
use std::io::Read;

pub fn run(ctx: &Ctx, id: &str) -> Result<i32> {
    start_container(ctx, id)?;
    Ok(0)
}

pub fn start_container(ctx: &Ctx, id: &str) -> Result<()> {
    let st = ctx.store.load(id)?;
    match ctx.store.status(&st) {
        Status::Created => {}
        Status::Running => bail!("cannot start an already running container {id}"),
        Status::Stopped => bail!("cannot start a container {id} that has stopped"),
        Status::Paused => bail!("cannot start a paused container {id}; resume it"),
    }
    let dir = ctx.store.dir(id);
    let dirfd = crate::fs::open_dir_path(&dir)?;
    let mut conn =
        std::os::unix::net::UnixStream::connect(crate::fs::short_socket_path(&dirfd, START_SOCKET))
            .with_context(|| format!("container {id} is not waiting to be started"))?;
    // MSG_NOSIGNAL: an init that died meanwhile is an error, not our death.
    let flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
    nix::sys::socket::send(std::os::fd::AsRawFd::as_raw_fd(&conn), b"start", flags)
        .map_err(|e| anyhow::anyhow!("signalling container {id} to start: {e}"))?;
    // From here on the container counts as running.
    let _ = std::fs::remove_file(dir.join(START_SOCKET));
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    if !reply.trim().is_empty() {
        bail!("starting container {id}: {}", reply.trim());
    }
    // poststart: after the program started, before start returns; a
    // failure is only a warning (runtime-spec). The state is the one start
    // just made, running with the init's pid, even when a short program
    // has already exited by the time the hook reads it.
    if let Some(h) = lifecycle_hooks(&st).and_then(|h| h.poststart().clone()) {
        let mut state = super::state::oci_state(&ctx.store, &st);
        state["status"] = "running".into();
        state["pid"] = st.pid.into();
        crate::hooks::run_warn(&h, "poststart", &state);
    }
    Ok(())
}

/// The hooks of a container's config, read again from its bundle.
pub fn lifecycle_hooks(st: &crate::container::ContainerState) -> Option<oci_spec::runtime::Hooks> {
    let data = std::fs::read(st.bundle.join("config.json")).ok()?;
    crate::spec::parse_config(&data).ok()?.hooks().clone()
}
