//! How the ranks of one node meet, with no daemon and no file: on an
//! abstract unix socket named after their group. The first rank to bind it
//! builds the container; a short-lived holder process then hands the
//! container's namespace handles to every other rank (checking that each
//! peer is the same user), and exits once all expected ranks have them or
//! none has come for the join timeout. A rank that dies mid-join frees the
//! name, and the next rank takes over.

use super::fdpass::{recv_fds, send_fds};
use crate::hpc::join::JoinGroup;
use anyhow::{anyhow, bail, Result};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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

fn peer_uid(s: &impl AsFd) -> Result<u32> {
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

/// Forks the holder, detached (double fork) so it is never a child the
/// program could wait for, with every fd but its own closed so it cannot
/// hold the job's output pipes open.
pub fn spawn_holder(
    listener: UnixListener,
    ns: Vec<OwnedFd>,
    expect: Option<u32>,
    idle: Duration,
) -> Result<()> {
    use nix::unistd::ForkResult;
    match crate::sys::fork_single_threaded().map_err(|e| anyhow!("fork: {e}"))? {
        ForkResult::Parent { child } => {
            let _ = nix::sys::wait::waitpid(child, None);
            Ok(())
        }
        ForkResult::Child => {
            if let Ok(ForkResult::Child) = crate::sys::fork_single_threaded() {
                let _ = nix::unistd::setsid();
                isolate_fds(&listener, &ns);
                serve(&listener, &ns, expect, idle);
            }
            crate::sys::exit_child(0)
        }
    }
}

fn isolate_fds(listener: &UnixListener, ns: &[OwnedFd]) {
    let keep: Vec<i32> = std::iter::once(listener.as_raw_fd())
        .chain(ns.iter().map(|f| f.as_raw_fd()))
        .collect();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

fn serve(listener: &UnixListener, ns: &[OwnedFd], expect: Option<u32>, idle: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let me = nix::unistd::geteuid().as_raw();
    let fds: Vec<_> = ns.iter().map(|f| f.as_fd()).collect();
    let mut served = 0u32;
    let idle_ms = PollTimeout::try_from(idle.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(PollTimeout::MAX);
    while expect.is_none_or(|n| served + 1 < n) {
        let mut p = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, idle_ms) {
            Ok(0) => return, // nobody came for the join timeout
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        if peer_uid(&conn).ok() != Some(me) {
            continue;
        }
        if send_fds(conn.as_fd(), &fds, b"ns").is_ok() {
            served += 1;
        }
    }
}
