//! fork, _exit and signal dispositions.

use anyhow::{anyhow, bail, Result};
use nix::unistd::ForkResult;

/// Set in the child of `fork_single_threaded`: fork copies only the
/// calling thread, and hpcc starts no thread in a forked child, so such a
/// process has one thread without asking /proc (whose /proc/self may not
/// be us any more once we entered a container's namespaces).
static FORKED_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// fork(2), refused unless this process has exactly one thread: a child
/// forked from a multi-threaded process may inherit a lock (the
/// allocator's, say) held by a thread that does not exist in it, and
/// deadlock on its first allocation. hpcc forks before it starts any
/// thread; the check makes that a fact instead of a hope.
pub fn fork_single_threaded() -> Result<ForkResult> {
    use std::sync::atomic::Ordering;
    if !FORKED_CHILD.load(Ordering::Relaxed) {
        match thread_count() {
            Some(1) => {}
            Some(n) => bail!("fork: refused, {n} threads are running (a child could inherit a lock one of them holds)"),
            None => bail!("fork: cannot read the thread count from /proc/self/stat"),
        }
    }
    // SAFETY: the process has one thread: checked above, or it is itself
    // the child of such a fork (see FORKED_CHILD), so the child inherits
    // no lock that some other thread holds.
    let r = unsafe { nix::unistd::fork() }.map_err(|e| anyhow!("fork: {e}"))?;
    if let ForkResult::Child = r {
        FORKED_CHILD.store(true, Ordering::Relaxed);
    }
    Ok(r)
}

/// Field 20 of /proc/self/stat; the fields before it follow the command
/// name, whose closing parenthesis is the last one on the line.
fn thread_count() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(17)?.parse().ok()
}

/// fork(2) for unit tests, whose harness runs other tests on other threads.
///
/// # Safety
/// The child may only make async-signal-safe calls (raw syscalls, then
/// `exit_child`): it may not allocate or take any lock, since another
/// thread of the parent may have held it at the moment of the fork.
#[cfg(test)]
pub unsafe fn fork_in_threaded_test() -> nix::Result<ForkResult> {
    // SAFETY: the caller keeps the child to async-signal-safe calls.
    unsafe { nix::unistd::fork() }
}

/// Ends a forked child without running the parent's exit handlers or
/// flushing buffers the parent will flush too.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// The pid whose signals the foreground `run` forwards; 0 until known.
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes plain integers.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Forwards every catchable signal this process receives to `pid`, as
/// `runc run` does in the foreground. SIGCHLD stays with us so we can reap.
pub fn forward_signals_to(pid: i32, signals: &[nix::sys::signal::Signal]) -> nix::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(forward_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &sig in signals {
        // SAFETY: the handler only calls the async-signal-safe kill(2).
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Restores default dispositions for the signals the Rust runtime ignores
/// (SIGPIPE): ignored signals survive execve, and `yes | head` inside the
/// container must die of SIGPIPE as it does on the host.
pub fn reset_signal_dispositions() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): gives the container a session
/// keyring of its own instead of the caller's.
pub fn join_session_keyring(name: &std::ffi::CStr) -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: `name` is a valid NUL-terminated string for the call's length.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    nix::errno::Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_thread_count_is_read_from_proc() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        // This test's thread and the one it started, at least.
        assert!(super::thread_count().expect("thread count") >= 2);
        let e = super::fork_single_threaded().unwrap_err().to_string();
        assert!(e.contains("threads are running"), "{e}");
        drop(tx);
        let _ = t.join();
    }
}
