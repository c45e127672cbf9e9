//! Mount attributes that nix does not wrap: mount_setattr(2), and the raw
//! ST_* flags of a mounted filesystem.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

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
