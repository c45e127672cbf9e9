//! Host devices in the container, on by default when the host has them:
//! NVIDIA GPUs (nodes, driver libraries from gpu_libraries.rs, tools,
//! persistenced socket), InfiniBand/RDMA, AMD GPUs and the site's device
//! patterns. Discovery reads `dev_dir` (default /dev), so tests can point
//! it at stand-ins. (The container's own /dev nodes are rootfs::dev_nodes.)

use super::site::{glob_files, SiteConfig};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// Where driver libraries and tools appear inside the container.
pub const GPU_LIB_DIR: &str = "/.hpcc/gpu/lib";
pub const GPU_BIN_DIR: &str = "/.hpcc/gpu/bin";
pub const IB_LIB_DIR: &str = "/.hpcc/ib/lib";

pub const NVIDIA_BINARIES: [&str; 5] = [
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];

const PERSISTENCED_SOCKET: &str = "/var/run/nvidia-persistenced/socket";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelect {
    All,
    None,
    /// Host GPU indices, in the order given.
    List(Vec<u32>),
    /// GPU UUIDs (Kubernetes' and Slurm's NVIDIA_VISIBLE_DEVICES), mapped
    /// to indices through the driver's /proc files (gpu_ids.rs).
    Uuids(Vec<String>),
}

impl GpuSelect {
    /// `--gpus all|none|0,2`, else NVIDIA_VISIBLE_DEVICES, else all.
    pub fn parse(s: &str, what: &str) -> Result<GpuSelect> {
        match s.trim() {
            "all" | "" => Ok(GpuSelect::All),
            "none" | "void" => Ok(GpuSelect::None),
            list if list.split(',').all(|u| u.trim().starts_with("GPU-")) => Ok(GpuSelect::Uuids(
                list.split(',').map(|u| u.trim().to_string()).collect(),
            )),
            // A MIG instance is a slice of a GPU whose node is the GPU's
            // own; the whole GPU is shown and CUDA picks the slice.
            list if list.contains("MIG-") => {
                crate::debug!("{what} {s:?} names MIG instances; showing every GPU");
                Ok(GpuSelect::All)
            }
            list => list
                .split(',')
                .map(|x| {
                    x.trim().parse::<u32>().map_err(|_| {
                        anyhow::anyhow!("{what} {s:?}: expected all, none or GPU indices like 0,2")
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(GpuSelect::List),
        }
    }
}

/// One host path shown at a container path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBind {
    pub host: PathBuf,
    pub container: PathBuf,
    pub readonly: bool,
}

/// A CDI mount that is not a bind (a tmpfs, say), passed on as an OCI mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherMount {
    pub source: PathBuf,
    pub container: PathBuf,
    pub typ: String,
    pub options: Vec<String>,
}

/// A CDI hook and the OCI point it runs at.
#[derive(Debug, Clone, PartialEq)]
pub struct StageHook {
    pub stage: String,
    pub hook: oci_spec::runtime::Hook,
    /// The spec that asked for it.
    pub from: PathBuf,
}

#[derive(Debug, Default)]
pub struct DevicePlan {
    pub binds: Vec<DeviceBind>,
    /// Set in the container (CUDA_VISIBLE_DEVICES renumbered).
    pub env: Vec<(String, String)>,
    /// Prepended to LD_LIBRARY_PATH and PATH.
    pub lib_dirs: Vec<String>,
    pub bin_dirs: Vec<String>,
    /// What was found, for --record and --debug.
    pub found: Vec<String>,
    /// CDI: non-bind mounts, hooks, extra groups, and the devices used.
    pub mounts: Vec<OtherMount>,
    pub hooks: Vec<StageHook>,
    pub additional_gids: Vec<u32>,
    pub cdi_devices: Vec<String>,
}

impl DevicePlan {
    /// Binds `host` (its real path: nvidia-smi is often a symlink into the
    /// driver's directory, which the container lacks) at `container`.
    pub fn bind(&mut self, host: PathBuf, container: impl Into<PathBuf>, readonly: bool) {
        let host = std::fs::canonicalize(&host).unwrap_or(host);
        let shown = host.display().to_string();
        if !self.found.contains(&shown) {
            self.found.push(shown);
        }
        self.binds.push(DeviceBind {
            host,
            container: container.into(),
            readonly,
        });
    }
}

/// GPU indices present under `dev`: nvidia0, nvidia1, ...
fn nvidia_indices(dev: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dev)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("nvidia")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The built-in discovery. With `nvidia_by_cdi`, a CDI spec supplies the
/// NVIDIA part (cdi/), and only the other devices are looked for here.
pub fn discover(site: &SiteConfig, gpus: &GpuSelect, nvidia_by_cdi: bool) -> Result<DevicePlan> {
    let dev = site.dev_dir();
    let mut plan = DevicePlan::default();
    let present = nvidia_indices(&dev);
    let by_uuid;
    let gpus = match gpus {
        GpuSelect::Uuids(u) if !nvidia_by_cdi => {
            let dir = site.nvidia_gpus_dir();
            by_uuid = GpuSelect::List(
                u.iter()
                    .map(|id| super::gpu_ids::index_of_uuid(&dir, id))
                    .collect::<Result<_>>()?,
            );
            &by_uuid
        }
        g => g,
    };
    let chosen: Vec<u32> = match gpus {
        _ if nvidia_by_cdi => Vec::new(),
        GpuSelect::All => present.clone(),
        GpuSelect::None | GpuSelect::Uuids(_) => Vec::new(),
        GpuSelect::List(l) => {
            for i in l {
                if !present.contains(i) {
                    bail!(
                        "--gpus {i}: {}/nvidia{i} is not present on this host",
                        dev.display()
                    );
                }
            }
            l.clone()
        }
    };
    if !chosen.is_empty() {
        for i in &chosen {
            plan.bind(
                dev.join(format!("nvidia{i}")),
                format!("/dev/nvidia{i}"),
                false,
            );
        }
        for name in [
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-uvm-tools",
            "nvidia-modeset",
            "nvidia-caps",
        ] {
            if dev.join(name).exists() {
                plan.bind(dev.join(name), format!("/dev/{name}"), false);
            }
        }
        if let GpuSelect::List(l) = gpus {
            plan.env.push(renumbered_cuda_devices(l.len()));
        }
        let libs = super::gpu_libraries::find(&site.ld_cache(), &site.gpu_libraries);
        if libs.is_empty() {
            crate::logging::warn(&format!(
                "NVIDIA GPUs are bound but no driver library (libcuda.so.1) is in {}; CUDA programs will fail (set ld_cache or gpu_libraries in the site config, or install a CDI spec)",
                site.ld_cache().display()
            ));
        } else {
            for (soname, path) in libs {
                plan.bind(path, Path::new(GPU_LIB_DIR).join(soname), true);
            }
            plan.lib_dirs.push(GPU_LIB_DIR.into());
        }
        let mut any_bin = false;
        for b in NVIDIA_BINARIES {
            if let Some(p) = find_in_path(b) {
                plan.bind(p, Path::new(GPU_BIN_DIR).join(b), true);
                any_bin = true;
            }
        }
        if any_bin {
            plan.bin_dirs.push(GPU_BIN_DIR.into());
        }
        if Path::new(PERSISTENCED_SOCKET).exists() {
            plan.bind(PERSISTENCED_SOCKET.into(), PERSISTENCED_SOCKET, false);
        }
    }
    if dev.join("infiniband").is_dir() {
        plan.bind(dev.join("infiniband"), "/dev/infiniband", false);
        for etc in ["/etc/libibverbs.d", "/etc/rdma"] {
            if Path::new(etc).is_dir() {
                plan.bind(etc.into(), etc, true);
            }
        }
        let mut any = false;
        for lib in &site.ib_libraries {
            let p = PathBuf::from(lib);
            match p.file_name() {
                Some(name) if p.exists() => {
                    plan.bind(p.clone(), Path::new(IB_LIB_DIR).join(name), true);
                    any = true;
                }
                _ => crate::debug!("ib library {lib} not found, not bound"),
            }
        }
        if any {
            plan.lib_dirs.push(IB_LIB_DIR.into());
        }
    }
    if *gpus != GpuSelect::None && !nvidia_by_cdi {
        for name in ["kfd", "dri"] {
            if dev.join(name).exists() {
                plan.bind(dev.join(name), format!("/dev/{name}"), false);
            }
        }
    }
    for pattern in &site.devices {
        for p in glob_files(pattern) {
            plan.bind(p.clone(), p, false);
        }
    }
    Ok(plan)
}

/// CUDA numbers the GPUs it can see from 0, so `--gpus 2,5` is devices
/// 0 and 1 inside.
pub fn renumbered_cuda_devices(n: usize) -> (String, String) {
    let v: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    ("CUDA_VISIBLE_DEVICES".into(), v.join(","))
}

/// NVIDIA's tool directories beyond the system ones (the driver's own
/// folder on GPU clouds and in NVIDIA's container images).
const NVIDIA_TOOL_DIRS: [&str; 2] = ["/usr/local/nvidia/bin", "/opt/nvidia/bin"];

fn find_in_path(name: &str) -> Option<PathBuf> {
    crate::fs::host_tools::find(name, &NVIDIA_TOOL_DIRS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_selection() {
        assert_eq!(GpuSelect::parse("all", "--gpus").unwrap(), GpuSelect::All);
        assert_eq!(GpuSelect::parse("void", "x").unwrap(), GpuSelect::None);
        assert_eq!(
            GpuSelect::parse("0, 2", "x").unwrap(),
            GpuSelect::List(vec![0, 2])
        );
        assert_eq!(
            GpuSelect::parse("GPU-abc, GPU-def", "NVIDIA_VISIBLE_DEVICES").unwrap(),
            GpuSelect::Uuids(vec!["GPU-abc".into(), "GPU-def".into()])
        );
        assert_eq!(
            GpuSelect::parse("MIG-abc", "NVIDIA_VISIBLE_DEVICES").unwrap(),
            GpuSelect::All
        );
        assert!(GpuSelect::parse("0,x", "--gpus").is_err());
    }

    #[test]
    fn stand_in_devices_are_found_and_selected() {
        let d = std::env::temp_dir().join(format!("hpcc-dev-{}", std::process::id()));
        std::fs::create_dir_all(d.join("infiniband")).unwrap();
        for n in ["nvidia0", "nvidia1", "nvidia2", "nvidiactl", "kfd"] {
            std::fs::write(d.join(n), "").unwrap();
        }
        let site = SiteConfig {
            dev_dir: Some(d.clone()),
            ld_cache: Some(d.join("none")),
            ..Default::default()
        };
        let plan = discover(&site, &GpuSelect::List(vec![0, 2]), false).unwrap();
        let dst: Vec<String> = plan
            .binds
            .iter()
            .map(|b| b.container.display().to_string())
            .collect();
        assert!(dst.contains(&"/dev/nvidia0".into()) && dst.contains(&"/dev/nvidia2".into()));
        assert!(!dst.contains(&"/dev/nvidia1".into()));
        assert!(
            dst.contains(&"/dev/nvidiactl".into())
                && dst.contains(&"/dev/infiniband".into())
                && dst.contains(&"/dev/kfd".into())
        );
        assert_eq!(
            plan.env,
            vec![("CUDA_VISIBLE_DEVICES".to_string(), "0,1".to_string())]
        );
        let none = discover(&site, &GpuSelect::None, false).unwrap();
        assert!(!none
            .binds
            .iter()
            .any(|b| b.container.starts_with("/dev/nvidia")));
        assert!(discover(&site, &GpuSelect::List(vec![5]), false)
            .unwrap_err()
            .to_string()
            .contains("nvidia5"));
        std::fs::remove_dir_all(d).unwrap();
    }
}
