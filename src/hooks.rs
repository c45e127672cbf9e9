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
    let timeout = h.timeout().filter(|t| *t > 0);
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t as u64));
    // stderr is read while the hook runs: one that writes more than a
    // pipe holds would otherwise block on the write, and hang (or time
    // out with its real error hidden).
    let mut stderr = Tail::default();
    let mut err_pipe = child.stderr.take();
    if let Some(e) = &err_pipe {
        set_nonblocking(e)?;
    }
    loop {
        if let Some(status) = child.try_wait()? {
            if let Some(e) = err_pipe.as_mut() {
                stderr.drain(e);
            }
            if status.success() {
                return Ok(());
            }
            bail!("{status}: {}", stderr.text());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            if let Some(e) = err_pipe.as_mut() {
                stderr.drain(e);
            }
            let said = stderr.text();
            bail!(
                "timed out after {}s{}{said}",
                timeout.unwrap_or(0),
                if said.is_empty() { "" } else { ": " }
            );
        }
        match err_pipe.as_mut() {
            // Wakes on output, or after a few ms to look at the hook again.
            Some(e) => {
                if !stderr.wait_and_read(e, 5) {
                    err_pipe = None; // end of file: the hook closed it
                }
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn set_nonblocking(f: &impl AsRawFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(f.as_raw_fd(), FcntlArg::F_GETFL).context("hook stderr")?;
    fcntl(
        f.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .context("hook stderr")?;
    Ok(())
}

/// The last bytes a hook wrote to stderr: enough for its error message,
/// never more than a bounded buffer, however much it writes.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 16 * 1024;

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * Self::KEEP {
            self.buf.drain(..self.buf.len() - Self::KEEP);
        }
    }

    /// Reads what is there now; false at end of file.
    fn read_available(&mut self, f: &mut impl std::io::Read) -> bool {
        let mut chunk = [0u8; 8192];
        loop {
            match f.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true, // EAGAIN: nothing more for now
            }
        }
    }

    /// Waits up to `ms` for output, then reads it; false at end of file.
    fn wait_and_read(&mut self, f: &mut (impl std::io::Read + std::os::fd::AsFd), ms: u8) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => true,
            _ => self.read_available(f),
        }
    }

    /// What is left once the hook is gone (a grandchild may still hold the
    /// pipe open: read only what is there).
    fn drain(&mut self, f: &mut impl std::io::Read) {
        let _ = self.read_available(f);
    }

    fn text(&self) -> String {
        let tail = if self.buf.len() > Self::KEEP {
            &self.buf[self.buf.len() - Self::KEEP..]
        } else {
            &self.buf[..]
        };
        String::from_utf8_lossy(tail).trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn hook(script: &str, timeout: i64) -> Hook {
        serde_json::from_value(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", script], "timeout": timeout
        }))
        .unwrap()
    }

    /// A MiB of stderr, more than any pipe holds.
    const FLOOD: &str =
        "i=0; while [ $i -lt 1024 ]; do printf '%01023d\\n' 0 >&2; i=$((i+1)); done";

    #[test]
    fn a_hook_that_floods_stderr_and_fails_reports_its_last_words() {
        let t0 = Instant::now();
        let e = run_one(
            &hook(&format!("{FLOOD}; echo 'the real error' >&2; exit 3"), 30),
            b"{}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("exit status: 3") && e.ends_with("the real error"),
            "{e:.200}"
        );
        assert!(
            e.len() < 20 * 1024,
            "the message is bounded: {} bytes",
            e.len()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(25),
            "it did not hang until the timeout"
        );
    }

    #[test]
    fn a_hook_that_floods_stderr_and_succeeds_is_a_success() {
        run_one(&hook(FLOOD, 30), b"{}").unwrap();
    }

    #[test]
    fn a_hook_that_times_out_says_so_with_what_it_wrote() {
        let e = run_one(
            &hook("echo 'stuck on the lock' >&2; exec sleep 30", 1),
            b"{}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("timed out after 1s") && e.contains("stuck on the lock"),
            "{e}"
        );
    }

    #[test]
    fn a_hook_gets_the_state_on_stdin_and_a_background_child_does_not_hold_us() {
        // The state arrives; a daemonized grandchild keeping stderr open
        // does not keep us waiting once the hook itself has exited.
        let h = hook(
            "state=$(cat); [ \"$state\" = '{\"id\":\"x\"}' ] && (sleep 30 &)",
            20,
        );
        let t0 = Instant::now();
        run_one(&h, br#"{"id":"x"}"#).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
