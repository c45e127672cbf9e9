//! CDI, the Container Device Interface: vendors describe their devices in
//! spec files (`nvidia-ctk cdi generate` writes /etc/cdi/nvidia.yaml), and
//! `hpcc run --device nvidia.com/gpu=0` applies what the spec says that
//! device needs. When a spec for `nvidia.com/gpu` exists it is also what
//! `--gpus` uses, because it names the driver's exact files; the built-in
//! discovery (host_devices.rs) is the fallback for hosts without one.
//! In OCI-runtime mode the engine resolves CDI itself.

pub mod edits;
pub mod registry;
pub mod spec;

use super::gpu_ids;
use super::host_devices::GpuSelect;
use anyhow::{bail, Result};
use registry::Registry;
use std::path::PathBuf;

/// The kind NVIDIA's generator writes.
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";

/// One `--device` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRequest {
    /// A CDI name: `vendor.com/class=name`.
    Cdi(String),
    /// A host device node, shown at `container` (podman's
    /// `HOST[:CONTAINER][:PERMISSIONS]`; the permissions are the node's own).
    Host { host: PathBuf, container: PathBuf },
}

impl DeviceRequest {
    pub fn parse(s: &str) -> Result<DeviceRequest> {
        if s.starts_with('/') {
            let mut parts = s.split(':');
            let host = PathBuf::from(parts.next().unwrap_or_default());
            let mut container = host.clone();
            for p in parts {
                if p.starts_with('/') {
                    container = PathBuf::from(p);
                } else if p.is_empty() || !p.chars().all(|c| "rwm".contains(c)) {
                    bail!("--device {s:?}: expected HOST_PATH[:CONTAINER_PATH][:rwm]");
                }
            }
            return Ok(DeviceRequest::Host { host, container });
        }
        registry::parse_qualified(s)?;
        Ok(DeviceRequest::Cdi(s.to_string()))
    }
}

/// The CDI names `--gpus` stands for, given the spec directory's devices:
/// `nvidia.com/gpu=all`, one name per index, or per UUID (the UUID's own
/// device when the spec names devices by UUID, else its index).
pub fn gpu_names(
    reg: &Registry,
    gpus: &GpuSelect,
    gpus_dir: &std::path::Path,
) -> Result<Vec<String>> {
    let name = |n: &str| format!("{NVIDIA_GPU}={n}");
    Ok(match gpus {
        GpuSelect::None => Vec::new(),
        GpuSelect::All => vec![name("all")],
        GpuSelect::List(l) => l.iter().map(|i| name(&i.to_string())).collect(),
        GpuSelect::Uuids(u) => {
            let mut out = Vec::new();
            for id in u {
                if reg.resolve(&name(id)).is_ok() {
                    out.push(name(id));
                } else {
                    let index = gpu_ids::index_of_uuid(gpus_dir, id)?;
                    out.push(name(&index.to_string()));
                }
            }
            out
        }
    })
}

/// Loads the registry only when something may need it.
pub fn load(site_dirs: &[String]) -> Result<Registry> {
    Registry::load(&registry::dirs(site_dirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_arguments() {
        assert_eq!(
            DeviceRequest::parse("nvidia.com/gpu=0").unwrap(),
            DeviceRequest::Cdi("nvidia.com/gpu=0".into())
        );
        assert_eq!(
            DeviceRequest::parse("/dev/fuse").unwrap(),
            DeviceRequest::Host {
                host: "/dev/fuse".into(),
                container: "/dev/fuse".into()
            }
        );
        assert_eq!(
            DeviceRequest::parse("/dev/dri/card1:/dev/dri/card0:rw").unwrap(),
            DeviceRequest::Host {
                host: "/dev/dri/card1".into(),
                container: "/dev/dri/card0".into()
            }
        );
        for bad in [
            "gpu",
            "nvidia.com/gpu",
            "/dev/x:bad",
            "/dev/x::",
            "nvidia.com/gpu=-1",
        ] {
            assert!(DeviceRequest::parse(bad).is_err(), "{bad}");
        }
    }
}
