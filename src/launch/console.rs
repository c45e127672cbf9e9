//! Terminals. The container's pty is made inside its own devpts, and the
//! master goes to the caller over --console-socket with SCM_RIGHTS, which
//! is what conmon and containerd's go-runc expect.

use anyhow::{anyhow, Result};
use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// The terminal process.terminal asks for, sized as process.consoleSize
/// says and owned by the process's user; see `setup_in_container`.
pub fn setup_for(
    sock: &OwnedFd,
    process: &oci_spec::runtime::Process,
    is_console: bool,
) -> Result<()> {
    let size = process
        .console_size()
        .as_ref()
        .map(|b| (b.height() as u16, b.width() as u16));
    setup_in_container(
        sock,
        size,
        process.user().uid(),
        process.user().gid(),
        is_console,
    )
}

/// Creates the pty, makes its slave the controlling terminal and stdio of
/// this process, binds it on /dev/console, and sends the master away.
/// `is_console`: also bind the slave on /dev/console (the container's first
/// process; `exec`'d processes get a terminal of their own only).
pub fn setup_in_container(
    sock: &OwnedFd,
    size: Option<(u16, u16)>,
    uid: u32,
    gid: u32,
    is_console: bool,
) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| anyhow!("terminal: opening /dev/ptmx: {e}"))?;
    grantpt(&master).map_err(|e| anyhow!("terminal: grantpt: {e}"))?;
    unlockpt(&master).map_err(|e| anyhow!("terminal: unlockpt: {e}"))?;
    let name = ptsname_r(&master).map_err(|e| anyhow!("terminal: ptsname: {e}"))?;
    let slave = crate::sys::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| anyhow!("terminal: opening {name}: {e}"))?;
    if let Some((rows, cols)) = size {
        crate::sys::set_winsize(slave.as_fd(), rows, cols)
            .map_err(|e| anyhow!("terminal: size: {e}"))?;
    }
    // The slave must belong to the process's user, or it cannot reopen its
    // own terminal; in a user namespace the id may not map, which is fine.
    let _ = nix::unistd::fchown(slave.as_raw_fd(), Some(uid.into()), Some(gid.into()));
    if is_console {
        crate::rootfs::bind_console(Path::new(&name))?;
    }
    send_fd(sock, master.as_fd(), "/dev/ptmx")?;
    drop(master);
    nix::unistd::setsid().map_err(|e| anyhow!("terminal: setsid: {e}"))?;
    crate::sys::set_controlling_tty(slave.as_fd())
        .map_err(|e| anyhow!("terminal: TIOCSCTTY: {e}"))?;
    for target in 0..=2 {
        nix::unistd::dup2(slave.as_raw_fd(), target).map_err(|e| anyhow!("terminal: dup2: {e}"))?;
    }
    Ok(())
}

pub fn send_fd(sock: &OwnedFd, fd: std::os::fd::BorrowedFd<'_>, name: &str) -> Result<()> {
    crate::sys::fdpass::send_fds(sock.as_fd(), &[fd], name.as_bytes())
        .map_err(|e| anyhow!("sending the pty master over the console socket: {e}"))
}

/// Receives the pty master (the foreground `run` uses this on its own
/// console socket).
pub fn recv_fd(sock: &OwnedFd) -> Result<OwnedFd> {
    let (fds, _) = crate::sys::fdpass::recv_fds(sock.as_fd(), 1)
        .map_err(|e| anyhow!("console socket: {e}"))?;
    fds.into_iter()
        .next()
        .ok_or_else(|| anyhow!("console socket: no file descriptor received"))
}
