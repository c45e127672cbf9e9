//! Which namespaces to create and which to join, from linux.namespaces.

use anyhow::{anyhow, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    // The enum's discriminants are the CLONE_NEW* values.
    CloneFlags::from_bits_retain(t as i32)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsPlan {
    /// Namespaces joined by path; the user namespace, if any, first, since
    /// joining the others needs the privileges it grants.
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// Namespaces to create, except the user namespace.
    pub create: CloneFlags,
    pub new_user: bool,
    /// The container runs in a user namespace (new or joined).
    pub in_userns: bool,
    pub new_pid: bool,
    pub has_cgroupns: bool,
    pub has_uts: bool,
}

impl NsPlan {
    pub fn from_spec(spec: &Spec) -> Self {
        let mut plan = NsPlan {
            join: Vec::new(),
            create: CloneFlags::empty(),
            new_user: false,
            in_userns: false,
            new_pid: false,
            has_cgroupns: false,
            has_uts: false,
        };
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or(&[]);
        for ns in list {
            let t = ns.typ();
            let flag = clone_flag(t);
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    if t == LinuxNamespaceType::User {
                        plan.join.insert(0, (flag, p.clone()));
                    } else {
                        plan.join.push((flag, p.clone()));
                    }
                }
                _ if t == LinuxNamespaceType::User => plan.new_user = true,
                _ => plan.create |= flag,
            }
            match t {
                LinuxNamespaceType::User => plan.in_userns = true,
                LinuxNamespaceType::Cgroup => plan.has_cgroupns = true,
                LinuxNamespaceType::Uts => plan.has_uts = true,
                _ => {}
            }
        }
        plan.new_pid = plan.create.contains(CloneFlags::CLONE_NEWPID);
        plan
    }

    /// Opens every namespace to join, before forking, so a bad path fails
    /// `create` with its name.
    pub fn open_joins(&self) -> Result<Vec<(CloneFlags, OwnedFd)>> {
        self.join
            .iter()
            .map(|(flag, path)| {
                let fd = nix::fcntl::open(
                    path,
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| anyhow!("linux.namespaces: {}: {e}", path.display()))?;
                Ok((*flag, crate::sys::adopt(fd)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_join_comes_first_and_flags_are_collected() {
        let v = serde_json::json!({
            "ociVersion": "1.0.0",
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"},
                {"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"},
                {"type": "uts"}, {"type": "cgroup"}
            ]}
        });
        let spec: Spec = serde_json::from_value(v).unwrap();
        let p = NsPlan::from_spec(&spec);
        assert_eq!(p.join[0].0, CloneFlags::CLONE_NEWUSER);
        assert_eq!(p.join[1].0, CloneFlags::CLONE_NEWNET);
        assert_eq!(
            p.create,
            CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWCGROUP
        );
        assert!(!p.new_user && p.in_userns && p.new_pid && p.has_cgroupns && p.has_uts);
    }
}
