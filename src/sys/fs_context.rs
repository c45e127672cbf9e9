//! The new mount API (Linux 5.2): fsopen(2), fsconfig(2) and fsmount(2),
//! which nix does not wrap. A filesystem made this way is a detached mount,
//! reachable only through its fd: nothing in any mount namespace can see or
//! remount it.

use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
pub const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
pub const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
pub const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

fn owned(r: libc::c_long) -> nix::Result<OwnedFd> {
    let fd = Errno::result(r)?;
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fsopen(2): a filesystem context for `fs_name`, close-on-exec.
pub fn fsopen(fs_name: &str) -> nix::Result<OwnedFd> {
    let name = CString::new(fs_name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })
}

/// fsconfig(FSCONFIG_SET_STRING): one `key=value` option.
pub fn fsconfig_set_string(ctx: BorrowedFd<'_>, key: &str, value: &str) -> nix::Result<()> {
    let k = CString::new(key).map_err(|_| Errno::EINVAL)?;
    let v = CString::new(value).map_err(|_| Errno::EINVAL)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; aux is
    // unused for FSCONFIG_SET_STRING.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// fsconfig(FSCONFIG_CMD_CREATE): makes the superblock.
pub fn fsconfig_create(ctx: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: FSCONFIG_CMD_CREATE takes no key, value or aux.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// fsmount(2): a detached mount of the context's superblock with the
/// MOUNT_ATTR_* `attrs`, close-on-exec.
pub fn fsmount(ctx: BorrowedFd<'_>, attrs: libc::c_uint) -> nix::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}
