//! Entering process.cwd, and proving it lies inside the container's root.
//!
//! A cwd outside the root is how CVE-2024-21626 escaped runc: a config
//! whose cwd is /proc/self/fd/N, N a leaked host directory. After chdir,
//! getcwd(2) answers ENOENT (or a path without a leading "/") for such a
//! cwd. The chdir is tried first while the process is still root and no
//! seccomp filter is loaded (as runc does), so a profile that denies
//! getcwd cannot stop the check; where the container user must make the
//! chdir itself, after the filter, and getcwd is denied, the check walks
//! ".." up to the top instead and compares it with "/".

use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// The first try, as root and before any filter: Ok(true) when the
/// process is in `cwd`, Ok(false) when only the container user may enter
/// it (EACCES or EPERM: a root-squashed or user-only directory).
pub fn enter_early(cwd: &Path) -> Result<bool> {
    match nix::unistd::chdir(cwd) {
        Ok(()) => verify(cwd).map(|()| true),
        Err(Errno::EACCES | Errno::EPERM) => Ok(false),
        Err(e) => Err(anyhow!("process.cwd {}: {e}", cwd.display())),
    }
}

/// The chdir as the container user, then the same check.
pub fn enter(cwd: &Path) -> Result<()> {
    nix::unistd::chdir(cwd).map_err(|e| anyhow!("process.cwd {}: {e}", cwd.display()))?;
    verify(cwd)
}

fn verify(cwd: &Path) -> Result<()> {
    let inside = match nix::unistd::getcwd() {
        Ok(p) => p.is_absolute(),
        Err(Errno::ENOENT) => false,
        // Denied (a seccomp profile) or otherwise unanswered: walk.
        Err(_) => walk_reaches_root()
            .map_err(|e| anyhow!("process.cwd {}: checking it: {e}", cwd.display()))?,
    };
    if !inside {
        bail!(
            "process.cwd {}: resolves outside the container",
            cwd.display()
        );
    }
    Ok(())
}

/// Follows ".." from the cwd until a directory is its own parent, and
/// says whether that top is this process's root.
fn walk_reaches_root() -> nix::Result<bool> {
    let id = |fd: &OwnedFd| fstat(fd.as_raw_fd()).map(|st| (st.st_dev, st.st_ino));
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let root = id(&crate::sys::open("/", flags, Mode::empty())?)?;
    let mut dir = crate::sys::open(".", flags, Mode::empty())?;
    // PATH_MAX / 2 levels: deeper than any path the kernel could name.
    for _ in 0..2048 {
        let up = crate::sys::openat(dir.as_fd(), "..", flags, Mode::empty())?;
        if id(&up)? == id(&dir)? {
            return Ok(id(&dir)? == root);
        }
        dir = up;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_from_a_directory_under_the_root_reaches_it() {
        // Run in a forked child: chdir is process-wide and the test
        // harness runs other tests on other threads.
        // SAFETY: the child only makes raw syscalls (chdir, open, fstat)
        // through nix and then _exit; it allocates nothing.
        match unsafe { crate::sys::fork_in_threaded_test() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = nix::unistd::chdir("/proc/self").is_ok()
                    && walk_reaches_root() == Ok(true)
                    && nix::unistd::chdir("/").is_ok()
                    && walk_reaches_root() == Ok(true);
                crate::sys::exit_child(if ok { 0 } else { 1 })
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn the_walk_from_a_directory_outside_the_root_does_not_reach_it() {
        // The escape's shape: the root is /proc, the cwd the host's "/"
        // (as a leaked fd would give). chroot needs CAP_SYS_CHROOT, which
        // a user namespace of its own gives a user.
        let host_root = crate::sys::open("/", OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        // SAFETY: the child only makes raw syscalls (unshare, chroot,
        // fchdir, open, fstat) through nix and then _exit.
        match unsafe { crate::sys::fork_in_threaded_test() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let userns = nix::unistd::geteuid().is_root()
                    || nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
                let ok = userns
                    && nix::unistd::chroot("/proc").is_ok()
                    && nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&host_root)).is_ok()
                    && walk_reaches_root() == Ok(false);
                crate::sys::exit_child(if ok { 0 } else { 1 })
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
