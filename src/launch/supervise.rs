//! Being the parent of a container process: pass signals on, reap, and
//! report its status the way a shell would (128+N for death by signal N).

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Signals a supervising hpcc passes on to the container.
pub const FORWARDED: [Signal; 11] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

pub fn forward_signals(pid: i32) -> Result<()> {
    crate::sys::forward_signals_to(pid, &FORWARDED).context("installing signal forwarding")
}

/// Reaps children until `pid` ends; returns its exit code, 128+N for a
/// death by signal N.
pub fn wait_for(pid: i32) -> Result<i32> {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(anyhow!("waiting for container process {pid}: {e}")),
        }
    }
}
