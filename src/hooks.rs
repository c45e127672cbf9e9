//! OCI hooks: programs the runtime runs at fixed points of a container's
//! life, with the container's state on stdin (runtime-spec config.md).

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::Hook;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs each hook in order; the first failure (non-zero exit, signal or
/// time-out) is an error naming the hook and the stage.
pub fn run(hooks: &[Hook], stage: &str, state: &serde_json::Value) -> Result<()> {
    let input = serde_json::to_vec(state)?;
    for h in hooks {
        run_one(h, &input).with_context(|| format!("{stage} hook {}", h.path().display()))?;
    }
    Ok(())
}

/// Like `run`, but failures are only warnings (poststart, poststop).
pub fn run_warn(hooks: &[Hook], stage: &str, state: &serde_json::Value) {
    if let Err(e) = run(hooks, stage, state) {
        crate::logging::warn(&format!("{e:#}"));
    }
}

fn run_one(h: &Hook, input: &[u8]) -> Result<()> {
    let mut cmd = Command::new(h.path());
    let args = h.args().as_deref().unwrap_or(&[]);
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().as_deref().unwrap_or(&[]) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // The state goes through a socket, not a pipe: a hook that exits
    // without reading it must not kill us with SIGPIPE (MSG_NOSIGNAL).
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().context("hook stdin")?;
    cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| anyhow!("cannot run: {e}"))?;
    drop(cmd);
    let mut sent = 0;
    while sent < input.len() {
        let flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
        match nix::sys::socket::send(ours.as_raw_fd(), &input[sent..], flags) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break, // the hook did not want its state
        }
    }
    let _ = ours.shutdown(std::net::Shutdown::Write);
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            bail!("{status}: {}", err.trim());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {}s", h.timeout().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
