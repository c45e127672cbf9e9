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
}

impl GpuSelect {
    /// `--gpus all|none|0,2`, else NVIDIA_VISIBLE_DEVICES, else all.
    pub fn parse(s: &str, what: &str) -> Result<GpuSelect> {
        match s.trim() {
            "all" | "" => Ok(GpuSelect::All),
            "none" | "void" => Ok(GpuSelect::None),
            // Kubernetes and Slurm may name GPUs by UUID; without NVML we
            // cannot map those to indices, so all present GPUs are shown.
            list if list.starts_with("GPU-") || list.starts_with("MIG-") => {
                crate::debug!("{what} {s:?} names GPUs by UUID; showing every GPU");
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
}

impl DevicePlan {
    fn bind(&mut self, host: PathBuf, container: impl Into<PathBuf>, readonly: bool) {
        self.found.push(host.display().to_string());
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

pub fn discover(site: &SiteConfig, gpus: &GpuSelect) -> Result<DevicePlan> {
    let dev = site.dev_dir();
    let mut plan = DevicePlan::default();
    let present = nvidia_indices(&dev);
    let chosen: Vec<u32> = match gpus {
        GpuSelect::All => present.clone(),
        GpuSelect::None => Vec::new(),
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
        if let GpuSelect::List(_) = gpus {
            // CUDA numbers the GPUs it can see from 0.
            let renumbered: Vec<String> = (0..chosen.len()).map(|i| i.to_string()).collect();
            plan.env
                .push(("CUDA_VISIBLE_DEVICES".into(), renumbered.join(",")));
        }
        let libs = super::gpu_libraries::find(&site.ld_cache(), &site.gpu_libraries);
        if !libs.is_empty() {
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
    if *gpus != GpuSelect::None {
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

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin", "/usr/local/nvidia/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
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
            GpuSelect::parse("GPU-abc,GPU-def", "NVIDIA_VISIBLE_DEVICES").unwrap(),
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
        let plan = discover(&site, &GpuSelect::List(vec![0, 2])).unwrap();
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
        let none = discover(&site, &GpuSelect::None).unwrap();
        assert!(!none
            .binds
            .iter()
            .any(|b| b.container.starts_with("/dev/nvidia")));
        assert!(discover(&site, &GpuSelect::List(vec![5]))
            .unwrap_err()
            .to_string()
            .contains("nvidia5"));
        std::fs::remove_dir_all(d).unwrap();
    }
}
