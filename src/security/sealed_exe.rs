//! CVE-2019-5736: the hpcc processes that enter a container run from a
//! sealed in-memory copy of the binary, never from the file on disk.

use anyhow::{anyhow, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

/// CVE-2019-5736: a process in a container that can open /proc/N/exe of
/// an hpcc process there (the `exec` helper, or hpcc re-run through a
/// `#!/proc/self/exe` script) could rewrite the hpcc binary once it is no
/// longer busy. As runc does, hpcc re-executes itself from a sealed memfd
/// copy, so every such /proc/N/exe names a sealed, write-proof copy.
/// Returns at once when already running from one, when the binary sits on
/// a read-only mount (which a container cannot make writable), or when an
/// unprivileged caller cannot write it; else it only returns on failure.
pub fn run_from_sealed_copy() -> Result<()> {
    let exe = crate::sys::open(
        "/proc/self/exe",
        OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| anyhow!("opening /proc/self/exe: {e}"))?;
    let wanted = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    if fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(wanted))
    {
        return Ok(());
    }
    if nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    {
        return Ok(());
    }
    // Without real root, a container's processes hold at most our own
    // rights on the host (its other uids are subordinate ones): a binary
    // we cannot write (the usual install, owned by root) they cannot
    // either, and the copy (a few milliseconds per call) buys nothing.
    if !crate::sys::is_real_root()
        && nix::unistd::access("/proc/self/exe", nix::unistd::AccessFlags::W_OK).is_err()
    {
        return Ok(());
    }
    let context = "protecting the hpcc binary (CVE-2019-5736)";
    let copy = memfd_create(
        c"hpcc",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| anyhow!("{context}: memfd_create: {e}"))?;
    let mut from = std::fs::File::from(exe);
    let mut to = std::fs::File::from(copy);
    std::io::copy(&mut from, &mut to).with_context(|| format!("{context}: copying"))?;
    let copy = std::os::fd::OwnedFd::from(to);
    fcntl(copy.as_raw_fd(), FcntlArg::F_ADD_SEALS(wanted))
        .map_err(|e| anyhow!("{context}: sealing: {e}"))?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("{context}: an argument contains a NUL byte"))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let Err(e) = nix::unistd::execveat(
        Some(copy.as_raw_fd()),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    );
    Err(anyhow!("{context}: re-executing: {e}"))
}
