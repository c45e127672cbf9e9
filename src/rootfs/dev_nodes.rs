//! The container's /dev nodes: the defaults every program expects, and
//! linux.devices. Real root creates them with mknod; in a user namespace
//! the kernel forbids that, so the host's node is bound instead. (Which
//! host devices an image run gets is `hpc::host_devices`.)

use super::host_view::HostView;
use super::ops::{Finish, MountOp, Node, NodeKind, Op, What};
use super::resolve::Leaf;
use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::path::{Path, PathBuf};

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

/// The default nodes and links (skipped when /dev is a bind of another
/// /dev, as runc does), then linux.devices.
pub fn plan(
    with_defaults: bool,
    devices: &[LinuxDevice],
    use_mknod: bool,
    host: &dyn HostView,
) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    if with_defaults {
        for (path, major, minor) in DEFAULT_DEVICES {
            let node = Node {
                path: path.into(),
                kind: NodeKind::Char,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            };
            ops.push(node_op(node, use_mknod, host)?);
        }
        for (target, link) in DEFAULT_LINKS {
            if link == "/dev/core" && !host.exists(Path::new("/proc/kcore")) {
                continue;
            }
            ops.push(Op::Symlink {
                target: target.into(),
                link: link.into(),
            });
        }
    }
    for d in devices {
        ops.push(node_op(spec_node(d)?, use_mknod, host)?);
    }
    Ok(ops)
}

/// A linux.devices entry as a node.
pub fn spec_node(d: &LinuxDevice) -> Result<Node> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => NodeKind::Char,
        LinuxDeviceType::B => NodeKind::Block,
        LinuxDeviceType::P => NodeKind::Fifo,
        LinuxDeviceType::A => bail!(
            "linux.devices {}: type 'a' is not a node",
            d.path().display()
        ),
    };
    if !d.path().is_absolute() {
        bail!("linux.devices: path {:?} must be absolute", d.path());
    }
    Ok(Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

fn node_op(node: Node, use_mknod: bool, host: &dyn HostView) -> Result<Op> {
    if use_mknod {
        return Ok(Op::MakeNode(node));
    }
    let path: PathBuf = node.path;
    if !host.exists(&path) {
        bail!(
            "device {}: not present on the host, and a container in a user namespace can only bind host devices",
            path.display()
        );
    }
    Ok(Op::Mount(MountOp {
        dest: path.clone(),
        what: What::Bind {
            source: path.clone(),
            recursive: false,
        },
        leaf: Leaf::File,
        refuse_proc: false,
        fallback: None,
        then: Finish::default(),
        label: format!("binding device {}", path.display()),
    }))
}
