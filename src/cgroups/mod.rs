//! A thin adapter over libcgroups: v1, v2 and hybrid hierarchies (these
//! machines are hybrid, where crun refuses to run), and systemd where it
//! runs. Rootless containers go without a cgroup unless they ask for limits.

use anyhow::{anyhow, bail, Result};
use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt,
};
use oci_spec::runtime::{LinuxResources, Spec};
use std::path::{Path, PathBuf};

mod v1_remove;

/// Where a container's cgroup is, as recorded in its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupRef {
    pub path: PathBuf,
    pub systemd: bool,
}

/// True when the config asks for a limit (device rules alone, which the
/// default config carries, are not one).
pub fn asks_for_limits(r: &LinuxResources) -> bool {
    r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.rdma().as_ref().is_some_and(|m| !m.is_empty())
        || r.unified().as_ref().is_some_and(|m| !m.is_empty())
}

fn systemd_running() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// The container's cgroup: linux.cgroupsPath, else /hpcc/<id>. None for
/// a rootless container that asks for no limits.
pub fn plan(spec: &Spec, id: &str, systemd: bool, rootless: bool) -> Result<Option<CgroupRef>> {
    let linux = spec.linux().as_ref();
    let limits = linux
        .and_then(|l| l.resources().as_ref())
        .is_some_and(asks_for_limits);
    if rootless && !limits {
        return Ok(None);
    }
    if systemd && !systemd_running() {
        bail!(
            "--systemd-cgroup: systemd is not running on this host; drop the flag to use cgroupfs"
        );
    }
    let path = match linux.and_then(|l| l.cgroups_path().clone()) {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => PathBuf::from(format!("/hpcc/{id}")),
    };
    Ok(Some(CgroupRef { path, systemd }))
}

fn manager(c: &CgroupRef, id: &str) -> Result<AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: c.path.clone(),
        systemd_cgroup: c.systemd,
        container_name: id.to_string(),
    })
    .map_err(|e| anyhow!("cgroup {}: {e}", c.path.display()))
}

/// Creates the cgroup, applies linux.resources and moves `pid` into it.
pub fn enter(c: &CgroupRef, id: &str, spec: &Spec, pid: i32, rootless: bool) -> Result<()> {
    let m = manager(c, id)?;
    let empty = LinuxResources::default();
    let resources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .unwrap_or(&empty);
    let hint = if rootless {
        " (an unprivileged user needs a delegated, writable cgroup for limits)"
    } else {
        ""
    };
    m.add_task(nix::unistd::Pid::from_raw(pid))
        .map_err(|e| anyhow!("joining cgroup {}: {e}{hint}", c.path.display()))?;
    m.apply(&controller_opt(resources))
        .map_err(|e| anyhow!("linux.resources on cgroup {}: {e}{hint}", c.path.display()))
}

/// What libcgroups applies for `resources`. disableOOMKiller sits in
/// linux.resources.memory in the spec but beside the resources in
/// libcgroups, so it is carried over here (v1's memory.oom_control).
pub fn controller_opt(resources: &LinuxResources) -> ControllerOpt<'_> {
    ControllerOpt {
        resources,
        disable_oom_killer: resources
            .memory()
            .as_ref()
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false),
        oom_score_adj: None,
        freezer_state: None,
    }
}

/// Whether the container's v1 memory cgroup has its OOM killer disabled
/// (cgroup v2 has no such switch: false).
pub fn oom_killer_disabled(c: &CgroupRef) -> bool {
    let rel = c.path.strip_prefix("/").unwrap_or(&c.path);
    let file = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    std::fs::read_to_string(file).is_ok_and(|s| s.lines().any(|l| l == "oom_kill_disable 1"))
}

/// Moves `pid` into an existing container cgroup (`exec`).
pub fn join(c: &CgroupRef, id: &str, pid: i32) -> Result<()> {
    manager(c, id)?
        .add_task(nix::unistd::Pid::from_raw(pid))
        .map_err(|e| anyhow!("joining cgroup {}: {e}", c.path.display()))
}

/// Removes the cgroup once its processes are gone.
pub fn remove(c: &CgroupRef, id: &str) -> Result<()> {
    // v1 and hybrid hosts without systemd: directly (see v1_remove.rs).
    if !c.systemd && v1_remove::remove(&c.path)? {
        return Ok(());
    }
    manager(c, id)?
        .remove()
        .map_err(|e| anyhow!("removing cgroup {}: {e}", c.path.display()))
}

/// Kills every process in the cgroup, waits (bounded) for it to empty and
/// removes it. For a create that died half-way; a missing cgroup is fine.
pub fn kill_and_remove(c: &CgroupRef, id: &str) -> Result<()> {
    let m = manager(c, id)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let pids = m.get_all_pids().unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "cgroup {}: processes {pids:?} did not die",
                c.path.display()
            );
        }
        for p in pids {
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    m.remove()
        .map_err(|e| anyhow!("removing cgroup {}: {e}", c.path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_oom_killer_is_carried_from_the_memory_resources() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576, "disableOOMKiller": true}
        }))
        .unwrap();
        assert!(controller_opt(&r).disable_oom_killer);
        let r: LinuxResources =
            serde_json::from_value(serde_json::json!({"memory": {"limit": 1048576}})).unwrap();
        assert!(!controller_opt(&r).disable_oom_killer);
        assert!(!controller_opt(&LinuxResources::default()).disable_oom_killer);
    }

    #[test]
    fn limits_are_told_apart_from_device_rules() {
        let r: LinuxResources = serde_json::from_value(
            serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}),
        )
        .unwrap();
        assert!(!asks_for_limits(&r));
        let r: LinuxResources =
            serde_json::from_value(serde_json::json!({"pids": {"limit": 10}})).unwrap();
        assert!(asks_for_limits(&r));
    }
}
