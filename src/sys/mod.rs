//! The few raw system calls that neither nix nor std wrap. Each unsafe block
//! sits in its own small function with the reason it is sound.

use nix::errno::Errno;
use nix::unistd::ForkResult;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Takes ownership of an fd the kernel has just returned to us.
pub fn adopt(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    // SAFETY: callers pass an fd fresh from a syscall that nothing else
    // owns, so no other OwnedFd will close it.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// fork(2). Sound only while the process is single-threaded: hpcc forks
/// before it starts any thread, so the child cannot inherit a lock held by
/// a thread that no longer exists.
pub fn fork_single_threaded() -> nix::Result<ForkResult> {
    // SAFETY: callers fork before any thread is spawned (see above).
    unsafe { nix::unistd::fork() }
}

/// Ends a forked child without running the parent's exit handlers or
/// flushing buffers the parent will flush too.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Marks every fd from `first` up as close-on-exec (close_range(2),
/// CLOSE_RANGE_CLOEXEC), so nothing hpcc or its caller opened leaks into the
/// container except the fds it was asked to preserve.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; no memory is touched.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    match Errno::result(r) {
        Ok(_) => Ok(()),
        // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: flag each open fd.
        Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
            use nix::fcntl::{fcntl, FcntlArg, FdFlag};
            let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
                .map_err(|_| Errno::EBADF)?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd: &i32| *fd >= first as i32)
                .collect();
            for fd in fds {
                let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): gives the container a session
/// keyring of its own instead of the caller's.
pub fn join_session_keyring(name: &std::ffi::CStr) -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: `name` is a valid NUL-terminated string for the call's length.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    Errno::result(r).map(drop)
}

/// Makes `fd` (a terminal) the controlling terminal of this session.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument, no pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(r).map(drop)
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct that lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(r).map(drop)
}

/// Reads a terminal's window size.
pub fn get_winsize(fd: BorrowedFd<'_>) -> nix::Result<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct that we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(r).map(|_| (ws.ws_row, ws.ws_col))
}

/// mount_setattr(2) with AT_RECURSIVE: applies "rro"-style attributes to a
/// whole mount tree at once (kernel 5.12+).
pub fn mount_setattr_recursive(fd: BorrowedFd<'_>, set: u64, clear: u64) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const AT_EMPTY_PATH: libc::c_uint = 0x1000;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid empty C string and `attr` outlives the
    // call; its size is passed alongside.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
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

/// The mount flags (ST_*) of the filesystem holding `path`, unfiltered:
/// nix drops bits such as ST_RELATIME that musl's headers do not name.
pub fn mount_flags(path: &std::path::Path) -> nix::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    #[cfg(target_env = "musl")]
    {
        // SAFETY: statfs is plain data; all-zero is a valid value to overwrite.
        let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is NUL-terminated and `buf` is a valid out-pointer.
        let r = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
        Errno::result(r).map(|_| buf.f_flags as u64)
    }
    // glibc's statfs (as the libc crate declares it) hides f_flags; its
    // statvfs passes the kernel's flags through whole.
    #[cfg(not(target_env = "musl"))]
    {
        // SAFETY: statvfs is plain data; all-zero is a valid value to overwrite.
        let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is NUL-terminated and `buf` is a valid out-pointer.
        let r = unsafe { libc::statvfs(c.as_ptr(), &mut buf) };
        Errno::result(r).map(|_| buf.f_flag as u64)
    }
}
