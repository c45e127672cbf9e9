//! The GPU driver's user-space libraries to bind into a container: the
//! NVIDIA set, found by soname in the ld.so cache (read directly, see
//! ld_cache.rs), plus whatever the site config adds.

use super::ld_cache;
use std::path::{Path, PathBuf};

/// The NVIDIA driver's user-space libraries (the set Apptainer's
/// nvliblist.conf binds, less the vendor-neutral OpenCL/GL loaders an image
/// brings itself), matched by name prefix against the ld.so cache.
pub const NVIDIA_LIBRARIES: [&str; 33] = [
    "libcuda.so",
    "libcudadebugger.so",
    "libnvidia-allocator.so",
    "libnvidia-cfg.so",
    "libnvidia-compiler.so",
    "libnvidia-eglcore.so",
    "libnvidia-egl-wayland.so",
    "libnvidia-encode.so",
    "libnvidia-fatbinaryloader.so",
    "libnvidia-fbc.so",
    "libnvidia-glcore.so",
    "libnvidia-glsi.so",
    "libnvidia-glvkspirv.so",
    "libnvidia-gpucomp.so",
    "libnvidia-ifr.so",
    "libnvidia-ml.so",
    "libnvidia-nscq.so",
    "libnvidia-nvvm.so",
    "libnvidia-opencl.so",
    "libnvidia-opticalflow.so",
    "libnvidia-pkcs11.so",
    "libnvidia-ptxjitcompiler.so",
    "libnvidia-rtcore.so",
    "libnvidia-tls.so",
    "libnvoptix.so",
    "libnvcuvid.so",
    "libGLX_nvidia.so",
    "libEGL_nvidia.so",
    "libGLESv2_nvidia.so",
    "libGLESv1_CM_nvidia.so",
    "libvdpau_nvidia.so",
    "libnvidia-ngx.so",
    "libnvidia-vksc-core.so",
];

/// (soname, real file) for each driver library the ld.so cache at
/// `ld_cache` lists for this architecture. A missing or unreadable cache
/// gives none (and says so under --debug).
pub fn find(ld_cache: &Path, extra: &[String]) -> Vec<(String, PathBuf)> {
    let entries = match std::fs::read(ld_cache)
        .map_err(anyhow::Error::from)
        .and_then(|b| ld_cache::parse(&b))
    {
        Ok(e) => e,
        Err(e) => {
            crate::debug!("{}: {e:#}; no GPU libraries bound", ld_cache.display());
            return Vec::new();
        }
    };
    select(&entries, extra, ld_cache::this_arch())
}

/// The driver libraries among `entries`: the first entry of each wanted
/// soname for `arch` (the cache lists preferred paths first).
pub fn select(entries: &[ld_cache::Entry], extra: &[String], arch: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for e in entries.iter().filter(|e| e.is_for(arch)) {
        let wanted = NVIDIA_LIBRARIES.iter().any(|n| e.soname.starts_with(n))
            || extra.iter().any(|n| e.soname.starts_with(n.as_str()));
        if wanted && !out.iter().any(|(s, _)| *s == e.soname) {
            let real = std::fs::canonicalize(&e.path).unwrap_or_else(|_| PathBuf::from(&e.path));
            out.push((e.soname.clone(), real));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ld_cache::Entry;

    fn entry(soname: &str, path: &str, flags: i32) -> Entry {
        Entry {
            soname: soname.into(),
            path: path.into(),
            flags,
        }
    }

    #[test]
    fn driver_libraries_of_this_abi_are_selected_once() {
        let entries = [
            entry(
                "libcuda.so.1",
                "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                0x0303,
            ),
            entry(
                "libcuda.so.1",
                "/usr/lib/i386-linux-gnu/libcuda.so.1",
                0x0003,
            ),
            entry("libcuda.so.1", "/opt/other/libcuda.so.1", 0x0303),
            entry("libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6", 0x0303),
            entry("libsite.so.2", "/opt/site/libsite.so.2", 0x0303),
            entry(
                "libnvidia-ml.so.1",
                "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
                0x0a03,
            ),
        ];
        let extra = ["libsite.so".to_string()];
        let x86: Vec<(String, PathBuf)> = select(&entries, &extra, "x86_64");
        assert_eq!(
            x86,
            [
                (
                    "libcuda.so.1".to_string(),
                    PathBuf::from("/usr/lib/x86_64-linux-gnu/libcuda.so.1")
                ),
                (
                    "libsite.so.2".to_string(),
                    PathBuf::from("/opt/site/libsite.so.2")
                ),
            ]
        );
        let arm = select(&entries, &extra, "aarch64");
        assert_eq!(
            arm,
            [(
                "libnvidia-ml.so.1".to_string(),
                PathBuf::from("/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1")
            )]
        );
    }

    #[test]
    fn a_missing_or_broken_cache_binds_nothing() {
        assert!(find(Path::new("/no/such/ld.so.cache"), &[]).is_empty());
        let d = std::env::temp_dir().join(format!("hpcc-ldc-{}", std::process::id()));
        std::fs::write(&d, b"garbage").unwrap();
        assert!(find(&d, &[]).is_empty());
        std::fs::remove_file(&d).unwrap();
    }
}
