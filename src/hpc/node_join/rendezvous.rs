//! How the ranks of one node meet, with no daemon and no file: on an
//! abstract unix socket named after their group. The first rank to bind it
//! builds the container (and then starts the holder, holder.rs); the
//! others connect and receive the container's namespace handles. A rank
//! that dies mid-join frees the name, and the next rank takes over.

use super::group::JoinGroup;
use crate::sys::fdpass::recv_fds;
use anyhow::{anyhow, bail, Result};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::{Duration, Instant};

pub enum Role {
    /// Build the container, then call `spawn_holder` with this listener.
    Leader(UnixListener),
    /// Join these namespaces (user first when present, then mount).
    Follower(Vec<OwnedFd>),
    /// Another user holds the group's name: run in a container of our own.
    Alone,
}

pub(super) fn peer_uid(s: &impl AsFd) -> Result<u32> {
    Ok(getsockopt(s, PeerCredentials)
        .map_err(|e| anyhow!("SO_PEERCRED: {e}"))?
        .uid())
}

pub fn meet(group: &JoinGroup, timeout: Duration) -> Result<Role> {
    let addr = SocketAddr::from_abstract_name(group.socket_name.as_bytes())?;
    let me = nix::unistd::geteuid().as_raw();
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect_addr(&addr) {
            Ok(conn) => {
                let owner = peer_uid(&conn)?;
                if owner != me {
                    // Someone else squats the name; sharing with them is out
                    // of the question, but they must not stop the job.
                    crate::logging::warn(&format!(
                        "join: socket @{} belongs to uid {owner}; running this rank in a container of its own",
                        group.socket_name
                    ));
                    return Ok(Role::Alone);
                }
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                conn.set_read_timeout(Some(left))?;
                match recv_fds(conn.as_fd(), 2) {
                    Ok((fds, payload)) if payload == b"ns" && !fds.is_empty() => {
                        return Ok(Role::Follower(fds))
                    }
                    // The builder died before it could answer: start over.
                    Ok(_) => {}
                    Err(e) if Instant::now() >= deadline => {
                        bail!("join: the rank building this node's container did not answer within {}s ({e})", timeout.as_secs())
                    }
                    Err(_) => {}
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound) => {
                match UnixListener::bind_addr(&addr) {
                    Ok(l) => return Ok(Role::Leader(l)),
                    Err(e) if e.kind() == ErrorKind::AddrInUse => {}
                    Err(e) => bail!("join: binding @{}: {e}", group.socket_name),
                }
            }
            Err(e) => bail!("join: connecting to @{}: {e}", group.socket_name),
        }
        if Instant::now() >= deadline {
            bail!(
                "join: no rank of this node's group answered within {}s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
