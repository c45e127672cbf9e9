//! `--record FILE`: what defines this run, so a result can be reproduced
//! years later: image and layer digests, hpcc's version, the kernel, the
//! binds, devices and CDI devices, the GPU driver, and the environment's keys (not its
//! values, which may hold secrets).

use super::node_join::JoinGroup;
use super::HpcPlan;
use crate::image::cache::CachedImage;
use anyhow::{Context, Result};
use oci_spec::runtime::Spec;
use serde_json::json;
use std::path::Path;

/// The loaded NVIDIA kernel module's version, else the version in the
/// name of the libcuda file that was bound (`libcuda.so.550.54.14`).
fn gpu_driver_version(found: &[String]) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string("/sys/module/nvidia/version") {
        return Some(v.trim().to_string());
    }
    if let Some(line) = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
    {
        return Some(line);
    }
    found.iter().find_map(|f| libcuda_version(f))
}

fn libcuda_version(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let v = name.strip_prefix("libcuda.so.")?;
    // The soname's single number (libcuda.so.1) is not a driver version.
    (v.contains('.') && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_string())
}

pub fn write(
    path: &Path,
    img: &CachedImage,
    plan: &HpcPlan,
    spec: &Spec,
    group: Option<&JoinGroup>,
) -> Result<()> {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned())
    };
    let process = spec.process().as_ref();
    let mut env_keys: Vec<&str> = plan.env.iter().map(|(k, _)| k.as_str()).collect();
    env_keys.sort_unstable();
    let record = json!({
        "recordVersion": 1,
        "time": crate::timefmt::now(),
        "hpcc": {"version": env!("CARGO_PKG_VERSION"), "commit": env!("HPCC_COMMIT")},
        "image": {
            "digest": img.digest.to_string(),
            "layers": img.config.diff_ids(),
            "architecture": img.config.architecture,
        },
        "host": {
            "hostname": field(|u| u.nodename()),
            "kernel": field(|u| u.release()),
            "machine": field(|u| u.machine()),
            "gpuDriver": gpu_driver_version(&plan.devices.found),
        },
        "user": {"uid": plan.identity.uid, "gid": plan.identity.gid, "name": plan.identity.name},
        "command": process.and_then(|p| p.args().clone()),
        "cwd": process.map(|p| p.cwd().display().to_string()),
        "binds": plan.binds.iter().map(|b| json!({"source": b.src, "destination": b.dst, "readonly": b.readonly})).collect::<Vec<_>>(),
        "devices": plan.devices.found,
        "cdiDevices": plan.devices.cdi_devices,
        "envKeys": env_keys,
        "join": group.map(|g| json!({"launcher": g.launcher, "localSize": g.local_size})),
    });
    let text = serde_json::to_string_pretty(&record)? + "\n";
    std::fs::write(path, text).with_context(|| format!("--record {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_driver_version_is_read_from_the_libcuda_file_name() {
        assert_eq!(
            super::libcuda_version("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.14").as_deref(),
            Some("550.54.14")
        );
        assert_eq!(super::libcuda_version("/usr/lib/libcuda.so.1"), None);
        assert_eq!(super::libcuda_version("/usr/lib/libcudart.so.12.4"), None);
    }
}
