//! CVE-2019-5736: the hpcc processes that enter a container never run
//! from the binary's file as a container could reach it. As root they run
//! through a private read-only overlayfs of the binary's directory (runc
//! 1.2's way: no copy, and a detached mount nothing can make writable);
//! where the kernel or privileges refuse that, from a sealed memfd copy.

use anyhow::{anyhow, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
    // HPCC_EXE_SEAL=memfd takes the copy even where the overlay works: for
    // benchmarks, and for a host whose overlayfs misbehaves.
    let view = if std::env::var_os("HPCC_EXE_SEAL").is_some_and(|v| v == "memfd") {
        Err(anyhow!("HPCC_EXE_SEAL=memfd"))
    } else {
        overlay_view_of_exe()
    };
    let sealed = match view {
        Ok((fd, dir)) => {
            crate::debug!(
                "CVE-2019-5736: running hpcc through a private read-only overlay of {}",
                dir.display()
            );
            fd
        }
        Err(e) => {
            crate::debug!(
                "CVE-2019-5736: no private overlay ({e:#}); running hpcc from a sealed memfd copy"
            );
            memfd_copy(exe, wanted).with_context(|| context.to_string())?
        }
    };
    reexec(sealed).context(context)
}

/// The binary as seen through a detached overlayfs whose top layer is the
/// binary's own directory, opened from that mount. An overlay of lower
/// layers only is read-only at the superblock, and a detached mount is in
/// no mount namespace, so neither a container nor anyone else can remount
/// it writable or reach the file below through it. Needs the right to
/// mount overlayfs in the initial user namespace (real root) and the new
/// mount API (Linux 5.2).
fn overlay_view_of_exe() -> Result<(OwnedFd, PathBuf)> {
    use crate::sys::fs_context as fc;
    let real = std::fs::read_link("/proc/self/exe").context("reading /proc/self/exe")?;
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
        return Err(anyhow!("{} has no directory", real.display()));
    };
    let second = second_layer(dir).ok_or_else(|| {
        anyhow!(
            "no directory apart from {} for the second layer",
            dir.display()
        )
    })?;
    let ctx = fc::fsopen("overlay").map_err(|e| anyhow!("fsopen overlay: {e}"))?;
    // Lower layers only (two are needed for that) make the overlay
    // read-only; the binary's directory is on top, so nothing in the second
    // can mask it.
    let lower = format!("{}:{}", escape_layer(dir), escape_layer(second));
    fc::fsconfig_set_string(ctx.as_fd(), "lowerdir", &lower)
        .map_err(|e| anyhow!("overlay lowerdir={lower}: {e}"))?;
    // xino only adds kernel log lines when the layers are on different
    // filesystems; older kernels lack the option, which is fine.
    let _ = fc::fsconfig_set_string(ctx.as_fd(), "xino", "off");
    fc::fsconfig_create(ctx.as_fd()).map_err(|e| anyhow!("creating the overlay: {e}"))?;
    let mnt = fc::fsmount(
        ctx.as_fd(),
        fc::MOUNT_ATTR_RDONLY | fc::MOUNT_ATTR_NOSUID | fc::MOUNT_ATTR_NODEV,
    )
    .map_err(|e| anyhow!("fsmount: {e}"))?;
    let exe = crate::sys::openat(
        mnt.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        anyhow!(
            "opening {} through the overlay: {e}",
            name.to_string_lossy()
        )
    })?;
    Ok((exe, dir.to_path_buf()))
}

/// A directory for the overlay's second layer: any real one that neither
/// contains nor lies inside `dir` (overlayfs refuses overlapping layers).
/// Its contents do not matter, being under the binary's directory.
fn second_layer(dir: &Path) -> Option<&'static Path> {
    ["/run", "/tmp", "/var/tmp", "/etc", "/usr/share"]
        .into_iter()
        .map(Path::new)
        .find(|c| !dir.starts_with(c) && !c.starts_with(dir) && c.is_dir())
}

/// A path as one entry of overlayfs's `lowerdir` list.
fn escape_layer(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
}

/// A sealed (write-, grow- and shrink-proof) memfd copy of the binary.
fn memfd_copy(exe: OwnedFd, seals: SealFlag) -> Result<OwnedFd> {
    let copy = memfd_create(
        c"hpcc",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| anyhow!("memfd_create: {e}"))?;
    let mut from = std::fs::File::from(exe);
    let mut to = std::fs::File::from(copy);
    // Plain reads and writes, not std::io::copy: its splice/sendfile path
    // can leave the memfd's pages pinned for a moment, and F_SEAL_WRITE
    // then fails with EBUSY.
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut from, &mut buf).context("reading the binary")?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut to, &buf[..n]).context("copying")?;
    }
    let copy = OwnedFd::from(to);
    // Pins can still be held briefly (the kernel waits ~150 ms); try again.
    let mut tries = 0;
    loop {
        match fcntl(copy.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)) {
            Ok(_) => return Ok(copy),
            Err(nix::errno::Errno::EBUSY) if tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(anyhow!("sealing: {e}")),
        }
    }
}

/// Executes `exe` with our own arguments and environment.
fn reexec(exe: OwnedFd) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("an argument contains a NUL byte"))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let Err(e) = nix::unistd::execveat(
        Some(exe.as_raw_fd()),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    );
    Err(anyhow!("re-executing: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_layer_never_overlaps_the_binarys_directory() {
        assert_eq!(
            second_layer(Path::new("/usr/local/bin")),
            Some(Path::new("/run"))
        );
        assert_eq!(
            second_layer(Path::new("/run/x/bin")),
            Some(Path::new("/tmp"))
        );
        assert_eq!(second_layer(Path::new("/")), None);
        assert_eq!(escape_layer(Path::new("/a:b\\c")), "/a\\:b\\\\c");
    }
}
