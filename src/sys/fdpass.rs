//! Passing file descriptors over unix sockets (SCM_RIGHTS): the pty master
//! to a console socket, and namespace handles to ranks joining a node's
//! container.

use anyhow::{anyhow, bail, Result};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

pub fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>], payload: &[u8]) -> Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let iov = [IoSlice::new(payload)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| anyhow!("sendmsg: {e}"))?;
    Ok(())
}

/// Receives up to `max` fds sent with SCM_RIGHTS, close-on-exec, and the
/// payload that came with them.
pub fn recv_fds(sock: BorrowedFd<'_>, max: usize) -> Result<(Vec<OwnedFd>, Vec<u8>)> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| anyhow!("recvmsg: {e}"))?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| anyhow!("recvmsg: {e}"))? {
        if let ControlMessageOwned::ScmRights(got) = c {
            fds.extend(crate::sys::own_received(&got));
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        bail!("recvmsg: control data truncated (too many file descriptors sent)");
    }
    let n = msg.bytes;
    if fds.len() > max {
        bail!(
            "received {} file descriptors, expected at most {max}",
            fds.len()
        );
    }
    Ok((fds, buf[..n].to_vec()))
}
