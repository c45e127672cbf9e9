//! `hpcc start`: release a created container's process into its program.

use super::Ctx;
use crate::container::{Status, START_SOCKET};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};

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
    }
    let dir = ctx.store.dir(id);
    let dirfd = crate::launch::open_dir_path(&dir)?;
    let mut conn = std::os::unix::net::UnixStream::connect(crate::launch::short_socket_path(
        &dirfd,
        START_SOCKET,
    ))
    .with_context(|| format!("container {id} is not waiting to be started"))?;
    conn.write_all(b"start")
        .context("signalling the container to start")?;
    // From here on the container counts as running.
    let _ = std::fs::remove_file(dir.join(START_SOCKET));
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    if !reply.trim().is_empty() {
        bail!("starting container {id}: {}", reply.trim());
    }
    Ok(())
}
