//! Typed messages between `create` (the parent) and the processes it forks,
//! one JSON object per SOCK_SEQPACKET datagram so boundaries are kept.

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Msg {
    /// Child → parent: put me in the container's cgroup (before I make a
    /// cgroup namespace, whose root is the cgroup I am in).
    JoinCgroup,
    /// Child → parent: I unshared my user namespace; write my id maps.
    WriteIdMaps,
    /// Parent → child: the maps are written, go on.
    Proceed,
    /// Child → parent: the container init has this PID (in our namespace).
    InitPid(i32),
    /// Init → parent: set up and waiting for `start`.
    Ready,
    /// Any → parent: setup failed; the text names what is wrong.
    Error(String),
    /// Init → parent: the mounts are in place, pivot_root is next; run the
    /// prestart and createRuntime hooks.
    CreateRuntime,
    /// Parent → init: those hooks ran; the state JSON for the hooks that
    /// init runs itself (createContainer, startContainer).
    HookState(String),
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("creating the launch channel")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn try_clone(&self) -> Result<Channel> {
        Ok(Channel {
            fd: self.fd.try_clone().context("launch channel")?,
        })
    }

    pub fn send(&self, msg: &Msg) -> Result<()> {
        let data = serde_json::to_vec(msg)?;
        send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL)
            .map_err(|e| anyhow!("launch channel: send: {e}"))?;
        Ok(())
    }

    /// The next message, or None when the other side closed its end.
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(|e| anyhow!("launch channel: bad message: {e}"))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => bail!("launch channel: recv: {e}"),
            }
        }
    }

    /// Waits for `expected`; an Error message or a closed channel fails.
    pub fn expect(&self, expected: Msg) -> Result<()> {
        match self.recv()? {
            Some(m) if m == expected => Ok(()),
            Some(Msg::Error(e)) => Err(anyhow!(e)),
            Some(m) => bail!("launch channel: expected {expected:?}, got {m:?}"),
            None => bail!("launch channel closed while waiting for {expected:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_boundaries() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::InitPid(42)).unwrap();
        a.send(&Msg::Error("x: y".into())).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::InitPid(42)));
        assert_eq!(b.expect(Msg::Ready).unwrap_err().to_string(), "x: y");
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
