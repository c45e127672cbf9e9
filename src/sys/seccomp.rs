//! seccomp(2) called directly. seccompiler's `apply_filter` always sets
//! no_new_privs first, but whether a container runs with no_new_privs is
//! the config's choice: without it, setuid and file-capability programs
//! (sudo, ping) keep working under a seccomp profile, as under runc. The
//! kernel then asks for CAP_SYS_ADMIN in the caller's user namespace.

use nix::errno::Errno;

/// Installs one classic-BPF filter on the calling thread, leaving
/// no_new_privs as it is.
pub fn install_seccomp_filter(filter: &[libc::sock_filter]) -> nix::Result<()> {
    let len = u16::try_from(filter.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` instructions of a slice that outlives
    // the call; the kernel copies them and keeps no pointer, and never
    // writes through `filter`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    Errno::result(r).map(drop)
}
