//! The holder: a short-lived, detached process the rank that built a
//! node's container leaves behind. It hands the container's namespace
//! handles to every other rank of the group (checking that each peer is
//! the same user), and exits once all expected ranks have them or none has
//! come for the join timeout.

use super::rendezvous::peer_uid;
use crate::sys::fdpass::send_fds;
use anyhow::Result;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

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
    match crate::sys::fork_single_threaded()? {
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
