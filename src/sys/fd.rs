//! Opening files as owned fds. nix 0.29 hands back raw fds; these
//! wrappers take ownership the moment the kernel returns one, so no other
//! code needs `from_raw_fd`, and they add O_CLOEXEC to every open, so no fd
//! hpcc opens can leak into a container's program.

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow};
use nix::sys::stat::Mode;
use nix::NixPath;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Owns an fd the kernel just returned.
///
/// # Safety
/// `fd` must be a valid open descriptor that nothing else owns (fresh from
/// the syscall that made it), or the OwnedFd would close someone else's.
unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// open(2), close-on-exec.
pub fn open<P: ?Sized + NixPath>(path: &P, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, mode)?;
    // SAFETY: a successful open returns a new descriptor that only we hold.
    Ok(unsafe { own(fd) })
}

/// openat(2) relative to `dir`, close-on-exec.
pub fn openat<P: ?Sized + NixPath>(
    dir: BorrowedFd<'_>,
    path: &P,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), path, flags | OFlag::O_CLOEXEC, mode)?;
    // SAFETY: a successful openat returns a new descriptor that only we hold.
    Ok(unsafe { own(fd) })
}

/// openat2(2) relative to `dir`; `how` must carry O_CLOEXEC itself (the
/// flags inside an OpenHow cannot be read back to add it).
pub fn openat2<P: ?Sized + NixPath>(
    dir: BorrowedFd<'_>,
    path: &P,
    how: OpenHow,
) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat2(dir.as_raw_fd(), path, how)?;
    // SAFETY: a successful openat2 returns a new descriptor that only we hold.
    Ok(unsafe { own(fd) })
}

/// Descriptors received with SCM_RIGHTS, owned from here on.
pub fn own_received(fds: &[RawFd]) -> Vec<OwnedFd> {
    fds.iter()
        // SAFETY: the kernel installed each of these in our table while
        // receiving the message; nothing else knows them yet.
        .map(|&fd| unsafe { own(fd) })
        .collect()
}

/// Marks every fd from `first` up as close-on-exec (close_range(2),
/// CLOSE_RANGE_CLOEXEC), so nothing hpcc or its caller opened leaks into the
/// container except the fds it was asked to preserve. Where close_range
/// fails (ENOSYS before 5.9, EINVAL for the flag before 5.11, or whatever
/// a seccomp profile answers) each open fd is flagged by hand.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; no memory is touched.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if Errno::result(r).is_ok() {
        return Ok(());
    }
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| e.raw_os_error().map_or(Errno::EBADF, Errno::from_raw))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd: &i32| i64::from(*fd) >= i64::from(first))
        .collect();
    for fd in fds {
        // The listing's own fd is gone by now: EBADF for it is expected.
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}
