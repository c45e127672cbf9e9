//! The fork → enter → fork protocol that `create` and `exec` share.
//!
//! ```text
//! parent                        middle                      inner (init, or the exec'd process)
//!   fork ───────────────────▶  [JoinCgroup] ◀─ Proceed
//!                              enter (namespaces.rs)
//!   write id maps  ◀─────────  [WriteIdMaps]
//!   Proceed ────────────────▶
//!                              fork ───────────────────▶  runs `inner`
//!   ◀──────────────────────── InitPid(pid); exits
//! ```
//! The second fork is what puts the inner process into a new PID
//! namespace (unshare and setns of a PID namespace apply to children), and
//! it leaves no hpcc process behind once `create` returns. The parent
//! answers the middle's requests with [`answer`]; everything else on the
//! channel is the caller's own protocol.

use super::channel::{self, Channel, Msg};
use super::namespaces::{self, IdMaps, OpenedNs};
use anyhow::{anyhow, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use std::os::fd::OwnedFd;

/// What the middle process does before it forks the inner one.
pub struct Middle {
    pub ns: OpenedNs,
    /// Ask the parent to put us in the container's cgroup first, while our
    /// cgroup namespace is still the host's (a new cgroup namespace is
    /// rooted at the cgroup we are in).
    pub join_cgroup: bool,
    /// Make the process non-dumpable before it enters anything, so the
    /// container's processes cannot ptrace it or open its /proc files
    /// (exe, fd, mem) until its program is exec'd (CVE-2016-9962, and the
    /// /proc/N/exe half of CVE-2019-5736).
    pub non_dumpable: bool,
}

/// The parent's side of a spawn.
pub struct Spawned {
    pub middle: Pid,
    pub ch: Channel,
    /// The fds that only the parent keeps (see [`spawn`]).
    pub kept: Vec<OwnedFd>,
}

/// The parent's part in the middle's requests.
pub trait Duties {
    /// Write the id maps of the middle's new user namespace.
    fn write_id_maps(&mut self, middle: Pid) -> Result<()>;
    /// Put the middle process in the container's cgroup.
    fn join_cgroup(&mut self, middle: Pid) -> Result<()>;
}

/// Forks the middle process, which enters `mid.ns` and forks the inner
/// process running `inner` (its return value is the exit code), reports
/// the inner pid and exits. `parent_only` are fds the children must not
/// hold (a lifeline's write end, say); they come back in `kept`.
pub fn spawn(
    mid: Middle,
    parent_only: Vec<OwnedFd>,
    inner: impl FnOnce(&Channel) -> i32,
) -> Result<Spawned> {
    let (parent_ch, child_ch) = channel::pair()?;
    match crate::sys::fork_single_threaded()? {
        ForkResult::Child => {
            drop(parent_ch);
            drop(parent_only);
            let code = match middle(&child_ch, mid, inner) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_ch.send(&Msg::Error(format!("{e:#}")));
                    1
                }
            };
            crate::sys::exit_child(code)
        }
        ForkResult::Parent { child } => Ok(Spawned {
            middle: child,
            ch: parent_ch,
            kept: parent_only,
        }),
    }
}

fn middle(ch: &Channel, mid: Middle, inner: impl FnOnce(&Channel) -> i32) -> Result<()> {
    if mid.non_dumpable {
        nix::sys::prctl::set_dumpable(false).map_err(|e| anyhow!("PR_SET_DUMPABLE: {e}"))?;
    }
    if mid.join_cgroup {
        ch.send(&Msg::JoinCgroup)?;
        ch.expect(Msg::Proceed)?;
    }
    namespaces::enter(mid.ns, IdMaps::Parent(ch))?;
    match crate::sys::fork_single_threaded()? {
        ForkResult::Child => crate::sys::exit_child(inner(ch)),
        ForkResult::Parent { child } => ch.send(&Msg::InitPid(child.as_raw())),
    }
}

/// Answers the middle's requests; any other message is handed back for
/// the caller's own protocol.
pub fn answer(
    ch: &Channel,
    middle: Pid,
    msg: Msg,
    duties: &mut impl Duties,
) -> Result<Option<Msg>> {
    match msg {
        Msg::WriteIdMaps => duties.write_id_maps(middle)?,
        Msg::JoinCgroup => duties.join_cgroup(middle)?,
        other => return Ok(Some(other)),
    }
    ch.send(&Msg::Proceed)?;
    Ok(None)
}

impl Spawned {
    /// Reaps the middle process (it always exits once the inner one is
    /// forked or setup failed); when `failed`, kills it and the inner
    /// process first, so a failed launch leaves no process behind.
    pub fn reap(&self, failed: bool, inner: Option<i32>) {
        if failed {
            let _ = kill(self.middle, Signal::SIGKILL);
            if let Some(p) = inner {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        let _ = waitpid(self.middle, None);
    }
}
