//! Checks a Spec before anything is created, so a bad config fails with a
//! message naming the field instead of half-way through a launch.

use crate::rootfs::proc_rule;
use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use std::path::Path;

/// hpcc accepts every 1.x runtime-spec version.
pub fn check_version(v: &str) -> Result<()> {
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("");
    let minor_ok = parts
        .next()
        .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    if major != "1" || !minor_ok {
        bail!("unsupported ociVersion {v:?}: hpcc runs runtime-spec 1.x configs");
    }
    Ok(())
}

/// The process of a Spec. `validate` refuses a config without one, so
/// this fails only for a Spec that skipped it; it is the one place that
/// says so.
pub fn process_of(spec: &Spec) -> Result<&oci_spec::runtime::Process> {
    spec.process()
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("config.json: process is required"))
}

pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = process_of(spec)?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => bail!("config.json: process.args must name a program"),
    }
    // execve(2) refuses any one string longer than MAX_ARG_STRLEN.
    for (field, list) in [
        ("process.args", process.args()),
        ("process.env", process.env()),
    ] {
        for (i, a) in list.as_deref().unwrap_or(&[]).iter().enumerate() {
            if a.len() >= MAX_ARG_STRLEN {
                bail!(
                    "config.json: {field}[{i}] is {} bytes long; execve takes at most {} per string",
                    a.len(),
                    MAX_ARG_STRLEN - 1
                );
            }
        }
    }
    // A label the host cannot enforce must fail, not be dropped silently.
    if let Some(p) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !crate::security::labels::apparmor_enabled() {
            bail!(
                "config.json: process.apparmorProfile {p:?}: AppArmor is not enabled on this host"
            );
        }
    }
    if let Some(l) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        if !crate::security::labels::selinux_enabled() {
            bail!("config.json: process.selinuxLabel {l:?}: SELinux is not enabled on this host");
        }
    }
    if !process.cwd().is_absolute() {
        bail!(
            "config.json: process.cwd {:?} must be an absolute path",
            process.cwd()
        );
    }
    let Some(linux) = spec.linux() else {
        bail!("config.json: the linux section is required");
    };
    let namespaces = linux.namespaces().as_deref().unwrap_or(&[]);
    let mut seen = Vec::new();
    for ns in namespaces {
        if seen.contains(&ns.typ()) {
            bail!("config.json: namespace {:?} is listed twice", ns.typ());
        }
        seen.push(ns.typ());
    }
    let new_userns = namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
    if !seen.contains(&LinuxNamespaceType::Mount) {
        without_mount_namespace(linux, new_userns)?;
    }
    if new_userns {
        let empty = |m: &Option<Vec<_>>| m.as_ref().is_none_or(|v| v.is_empty());
        if empty(linux.uid_mappings()) || empty(linux.gid_mappings()) {
            bail!(
                "config.json: a new user namespace needs linux.uidMappings and linux.gidMappings"
            );
        }
    }
    for (field, m) in [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ] {
        for map in m.as_deref().unwrap_or(&[]) {
            if map.size() == 0
                || map.container_id().checked_add(map.size()).is_none()
                || map.host_id().checked_add(map.size()).is_none()
            {
                bail!(
                    "config.json: {field}: mapping containerID {} hostID {} size {} overflows 2^32 or is empty",
                    map.container_id(),
                    map.host_id(),
                    map.size()
                );
            }
        }
    }
    // sethostname(2) and setdomainname(2) take at most 64 bytes.
    for (field, value) in [
        ("hostname", spec.hostname().as_deref()),
        ("domainname", spec.domainname().as_deref()),
    ] {
        if let Some(v) = value.filter(|v| v.len() > HOST_NAME_MAX) {
            bail!(
                "config.json: {field} is {} bytes long; the kernel allows at most {HOST_NAME_MAX}",
                v.len()
            );
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, &seen)?;
        }
    }
    if let Some(s) = linux.seccomp() {
        crate::security::seccomp::compile(s)?;
    }
    for m in spec.mounts().as_deref().unwrap_or(&[]) {
        if !m.destination().is_absolute() {
            bail!(
                "config.json: mount destination {:?} must be an absolute path",
                m.destination()
            );
        }
        check_proc_destination(m)?;
    }
    Ok(())
}

const HOST_NAME_MAX: usize = 64;

/// The kernel's limit on one argument or environment string, NUL included
/// (32 pages).
const MAX_ARG_STRLEN: usize = 32 * 4096;

fn check_proc_destination(m: &Mount) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("");
    let bind = typ == "bind"
        || m.options()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|o| o == "bind" || o == "rbind");
    let is_proc = if bind {
        m.source().as_deref().is_some_and(|s| {
            nix::sys::statfs::statfs(s)
                .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
        })
    } else {
        typ == "proc"
    };
    if proc_rule::destination_allowed(m.destination(), is_proc) {
        return Ok(());
    }
    if proc_rule::lexical_clean(m.destination()) == Path::new("/proc") {
        bail!(
            "config.json: mounts: destination {} must be a proc mount or a bind of a procfs",
            m.destination().display()
        );
    }
    bail!(
        "config.json: mounts: destination {} is inside /proc; only /proc itself and the files lxcfs emulates may be mounted there",
        m.destination().display()
    )
}

/// runc's rule: only sysctls that belong to one of the container's own
/// namespaces may be set; anything else would change the host.
pub fn check_sysctl(key: &str, namespaces: &[LinuxNamespaceType]) -> Result<()> {
    let k = key.replace('/', ".");
    let has = |t| namespaces.contains(&t);
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let (needed, name) = if IPC.contains(&k.as_str()) || k.starts_with("fs.mqueue.") {
        (LinuxNamespaceType::Ipc, "ipc")
    } else if k == "kernel.hostname" || k == "kernel.domainname" {
        (LinuxNamespaceType::Uts, "uts")
    } else if k.starts_with("net.") {
        (LinuxNamespaceType::Network, "network")
    } else {
        bail!("linux.sysctl: {key} is not namespaced; setting it would change the host");
    };
    if !has(needed) {
        bail!("linux.sysctl: {key} needs the container to have its own {name} namespace");
    }
    Ok(())
}

/// linux.namespaces lists a mount namespace (new or joined).
pub fn has_mount_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_deref())
        .unwrap_or(&[])
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::Mount)
}

/// A container without a mount namespace inherits the caller's, as the
/// runtime-spec says: its mounts go into the caller's mount table (under
/// the rootfs, which it chroots into) until `delete` removes them. What
/// would change the caller's own mounts is refused, as runc refuses it.
fn without_mount_namespace(linux: &oci_spec::runtime::Linux, new_userns: bool) -> Result<()> {
    // Root of a new user namespace may not mount (not even the rootfs on
    // itself) in a mount namespace its parent owns.
    if new_userns {
        bail!("config.json: linux.namespaces: a new user namespace needs a mount namespace too (add {{\"type\": \"mount\"}})");
    }
    let listed = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    for (field, set) in [
        ("linux.maskedPaths", listed(linux.masked_paths())),
        ("linux.readonlyPaths", listed(linux.readonly_paths())),
        (
            "linux.rootfsPropagation",
            linux
                .rootfs_propagation()
                .as_deref()
                .is_some_and(|p| !p.is_empty()),
        ),
    ] {
        if set {
            bail!("config.json: {field} needs a mount namespace (add {{\"type\": \"mount\"}} to linux.namespaces)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_must_be_namespaced() {
        use LinuxNamespaceType as T;
        assert!(check_sysctl("net.ipv4.ip_forward", &[T::Network]).is_ok());
        assert!(check_sysctl("net/ipv4/ip_forward", &[T::Network]).is_ok());
        assert!(check_sysctl("net.ipv4.ip_forward", &[T::Ipc]).is_err());
        assert!(check_sysctl("kernel.shmmax", &[T::Ipc]).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", &[T::Ipc]).is_ok());
        let e = check_sysctl("kernel.core_pattern", &[T::Ipc, T::Network, T::Uts]).unwrap_err();
        assert!(e.to_string().contains("not namespaced"));
    }

    #[test]
    fn without_a_mount_namespace_only_what_stays_under_the_rootfs_is_allowed() {
        let spec = |linux: serde_json::Value, mounts: serde_json::Value| -> Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.2.0",
                "root": {"path": "rootfs"},
                "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
                "mounts": mounts,
                "linux": linux
            }))
            .unwrap()
        };
        let proc_mount = serde_json::json!([{"destination": "/proc", "type": "proc"}]);
        let pid_only = serde_json::json!({"namespaces": [{"type": "pid"}]});
        assert!(validate(&spec(pid_only.clone(), proc_mount.clone())).is_ok());
        for (field, value) in [
            ("maskedPaths", serde_json::json!(["/proc/kcore"])),
            ("readonlyPaths", serde_json::json!(["/proc/sys"])),
            ("rootfsPropagation", serde_json::json!("shared")),
        ] {
            let mut linux = pid_only.clone();
            linux[field] = value;
            let e = validate(&spec(linux, proc_mount.clone()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(field) && e.contains("needs a mount namespace"),
                "{e}"
            );
        }
        let userns = serde_json::json!({
            "namespaces": [{"type": "user"}],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
        });
        let e = validate(&spec(userns, serde_json::json!([])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a mount namespace too"), "{e}");
    }

    #[test]
    fn versions() {
        for ok in ["1.0.0", "1.0.2-dev", "1.2.0", "1.3.0", "1.9"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["0.9.0", "2.0.0", "", "1", "1.x", "v1.0.0"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }
}
