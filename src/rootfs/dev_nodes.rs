//! /dev inside the container: the default nodes every program expects, and
//! linux.devices. Root creates nodes with mknod; in a user namespace the
//! kernel forbids that, so the host's node is bind-mounted instead.

use super::resolve::{create_in_root, fd_path, Leaf};
use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// The nodes runc creates in a container's /dev.
pub const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

pub const DEFAULT_LINKS: [(&str, &str); 6] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
    ("/proc/kcore", "/dev/core"),
];

pub struct DeviceSpec<'a> {
    pub path: &'a Path,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub fn create_default_devices(root: &OwnedFd, use_mknod: bool) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        let dev = DeviceSpec {
            path: Path::new(path),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        create_device(root, &dev, use_mknod)?;
    }
    for (target, link) in DEFAULT_LINKS {
        if link == "/dev/core" && !Path::new("/proc/kcore").exists() {
            continue;
        }
        let parent = create_in_root(root, Path::new("/dev"), Leaf::Dir)?;
        let name = Path::new(link).file_name().unwrap_or_default();
        match nix::unistd::symlinkat(target, Some(parent.as_raw_fd()), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => bail!("creating symlink {link}: {e}"),
        }
    }
    Ok(())
}

pub fn spec_device(d: &LinuxDevice) -> Result<DeviceSpec<'_>> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => bail!(
            "linux.devices {}: type 'a' is not a node",
            d.path().display()
        ),
    };
    if !d.path().is_absolute() {
        bail!("linux.devices: path {:?} must be absolute", d.path());
    }
    Ok(DeviceSpec {
        path: d.path(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

pub fn create_device(root: &OwnedFd, dev: &DeviceSpec, use_mknod: bool) -> Result<()> {
    let path = dev.path;
    if use_mknod {
        let parent_path = path.parent().unwrap_or(Path::new("/"));
        let parent = create_in_root(root, parent_path, Leaf::Dir)?;
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("device path {} has no name", path.display()))?;
        // The O_PATH parent handle was resolved inside the root, so the node
        // is made there even if the image put a symlink on the way.
        let _ = nix::unistd::unlinkat(
            Some(parent.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        mknodat(
            Some(parent.as_raw_fd()),
            name,
            dev.kind,
            Mode::from_bits_truncate(dev.mode),
            makedev(dev.major, dev.minor),
        )
        .map_err(|e| anyhow!("mknod {}: {e}", path.display()))?;
        let node = create_in_root(root, path, Leaf::File)?;
        nix::unistd::fchownat(
            Some(node.as_raw_fd()),
            "",
            Some(dev.uid.into()),
            Some(dev.gid.into()),
            nix::unistd::FchownatFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| anyhow!("chown {}: {e}", path.display()))?;
        nix::sys::stat::fchmodat(
            None,
            &fd_path(&node),
            Mode::from_bits_truncate(dev.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| anyhow!("chmod {}: {e}", path.display()))?;
        return Ok(());
    }
    let host = Path::new(path);
    if !host.exists() {
        bail!(
            "device {}: not present on the host, and a container in a user namespace can only bind host devices",
            path.display()
        );
    }
    let target = create_in_root(root, path, Leaf::File)?;
    mount(
        Some(host),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("binding device {}", path.display()))?;
    Ok(())
}
