//! Which /dev/nvidiaN a GPU UUID is. Kubernetes' device plugin and Slurm
//! name GPUs by UUID in NVIDIA_VISIBLE_DEVICES; the driver says which
//! device minor each UUID has in /proc/driver/nvidia/gpus/*/information
//! ("GPU UUID:" and "Device Minor:" lines), so no NVML is needed.

use anyhow::{anyhow, Result};
use std::path::Path;

/// Where the driver lists its GPUs (the site config may point elsewhere).
pub const DEFAULT_GPUS_DIR: &str = "/proc/driver/nvidia/gpus";

/// (UUID, device minor) of each GPU the driver lists under `dir`.
pub fn list(dir: &Path) -> Vec<(String, u32)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u32)> = rd
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("information")).ok())
        .filter_map(|text| parse_information(&text))
        .collect();
    out.sort_by_key(|(_, minor)| *minor);
    out
}

/// The UUID and minor in one `information` file.
pub fn parse_information(text: &str) -> Option<(String, u32)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    };
    let uuid = field("GPU UUID")?.to_string();
    let minor = field("Device Minor")?.parse().ok()?;
    Some((uuid, minor))
}

/// The device minor of the GPU with `uuid` (a MIG UUID is not a GPU's).
pub fn index_of_uuid(dir: &Path, uuid: &str) -> Result<u32> {
    list(dir)
        .into_iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(uuid))
        .map(|(_, minor)| minor)
        .ok_or_else(|| {
            anyhow!(
                "GPU {uuid} is not on this host ({} lists no such UUID)",
                dir.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H200: &str = "Model: \t\t NVIDIA H200\nIRQ:   \t\t 0\nGPU UUID: \t GPU-5010042a-1781-d3b5-ba10-49df741e9935\nVideo BIOS: \t 96.00.af.00.01\nBus Type: \t PCIe\nBus Location: \t 0000:00:05.0\nDevice Minor: \t 3\nGPU Excluded:\t No\n";

    #[test]
    fn the_drivers_information_file_gives_uuid_and_minor() {
        assert_eq!(
            parse_information(H200),
            Some(("GPU-5010042a-1781-d3b5-ba10-49df741e9935".to_string(), 3))
        );
        assert_eq!(parse_information("Model: x\n"), None);
    }

    #[test]
    fn uuids_map_to_minors() {
        let d = std::env::temp_dir().join(format!("hpcc-gpu-ids-{}", std::process::id()));
        std::fs::create_dir_all(d.join("0000:00:05.0")).unwrap();
        std::fs::write(d.join("0000:00:05.0/information"), H200).unwrap();
        assert_eq!(
            index_of_uuid(&d, "gpu-5010042a-1781-d3b5-ba10-49df741e9935").unwrap(),
            3
        );
        let e = index_of_uuid(&d, "GPU-0000").unwrap_err().to_string();
        assert!(e.contains("GPU-0000"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
