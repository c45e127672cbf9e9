//! `pause`, `resume` and `update`: the running container's cgroup.
//! A container without a cgroup (rootless, no limits) is paused by
//! SIGSTOP/SIGCONT to each of its processes instead of the freezer.

use super::kill::container_pids;
use super::Ctx;
use crate::container::{ContainerState, Status, PAUSED_MARK};
use anyhow::{anyhow, bail, Context, Result};
use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager, FreezerState};
use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;
use std::io::Read;
use std::path::PathBuf;

pub fn pause(ctx: &Ctx, id: &str) -> Result<i32> {
    let st = ctx.store.load(id)?;
    match ctx.store.status(&st) {
        Status::Running | Status::Created => set_paused(ctx, &st, true)?,
        Status::Paused => bail!("container {id} is already paused"),
        Status::Stopped => bail!("container not running"),
    }
    Ok(0)
}

pub fn resume(ctx: &Ctx, id: &str) -> Result<i32> {
    let st = ctx.store.load(id)?;
    match ctx.store.status(&st) {
        Status::Paused => set_paused(ctx, &st, false)?,
        Status::Stopped => bail!("container not running"),
        _ => bail!("container {id} is not paused"),
    }
    Ok(0)
}

fn manager(st: &ContainerState) -> Result<Option<libcgroups::common::AnyCgroupManager>> {
    let Some(c) = &st.cgroup else { return Ok(None) };
    let m = create_cgroup_manager(CgroupConfig {
        cgroup_path: c.path.clone(),
        systemd_cgroup: c.systemd,
        container_name: st.id.clone(),
    })
    .map_err(|e| anyhow!("cgroup {}: {e}", c.path.display()))?;
    Ok(Some(m))
}

/// Freezes or thaws every process of the container, and records it.
pub fn set_paused(ctx: &Ctx, st: &ContainerState, paused: bool) -> Result<()> {
    match manager(st)? {
        Some(m) => {
            let state = if paused {
                FreezerState::Frozen
            } else {
                FreezerState::Thawed
            };
            m.freeze(state).map_err(|e| anyhow!("freezer: {e}"))?;
        }
        None => {
            let sig = if paused {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            for pid in container_pids(st) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
        }
    }
    let mark = ctx.store.dir(&st.id).join(PAUSED_MARK);
    if paused {
        std::fs::write(&mark, b"").with_context(|| format!("writing {}", mark.display()))?;
    } else {
        let _ = std::fs::remove_file(&mark);
    }
    Ok(())
}

/// `update --resources FILE|-`: new linux.resources for a running container.
pub fn update(ctx: &Ctx, id: &str, resources: &Option<PathBuf>) -> Result<i32> {
    let st = ctx.store.load(id)?;
    if ctx.store.status(&st) == Status::Stopped {
        bail!("container not running");
    }
    let mut text = String::new();
    match resources.as_deref() {
        None => bail!("update: give --resources FILE (or - for stdin)"),
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading resources from stdin")?;
        }
        Some(p) => {
            text = std::fs::read_to_string(p)
                .with_context(|| format!("--resources {}", p.display()))?;
        }
    }
    let r: LinuxResources =
        serde_json::from_str(&text).map_err(|e| anyhow!("--resources: invalid JSON: {e}"))?;
    let m = manager(&st)?.ok_or_else(|| {
        anyhow!("container {id} has no cgroup to update (it asked for no limits when created)")
    })?;
    let mut opt = crate::cgroups::controller_opt(&r);
    let asked = r.memory().as_ref().and_then(|m| m.disable_oom_killer());
    if asked.is_none() {
        // An update that does not name disableOOMKiller keeps what the
        // container has (libcgroups would write 0), as runc's update does.
        opt.disable_oom_killer = st
            .cgroup
            .as_ref()
            .is_some_and(crate::cgroups::oom_killer_disabled);
    }
    m.apply(&opt).map_err(|e| anyhow!("update: {e}"))?;
    Ok(0)
}
