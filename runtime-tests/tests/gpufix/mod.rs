//! The stand-in NVIDIA driver of gpu.rs, laid out as NVIDIA's installer
//! lays it out, and the image with the cuInit probe.

use crate::imagefix::{self, Entry, Image};
use runtime_tests::is_root;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DRIVER_VERSION: &str = "550.54.14";
/// The user PATH of Debian (no sbin), with the driver's tools in front as
/// a `module load` would put them.
pub const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The stand-in libcuda: cuInit succeeds when /dev/nvidiactl and at least
/// one /dev/nvidiaN are there; devices are the nodes it can see, filtered
/// by CUDA_VISIBLE_DEVICES as CUDA does, named after their node.
const LIBCUDA_C: &str = r#"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
static int nodes[256];
static int n = -1;
static void scan(void) {
    if (n >= 0) return;
    n = 0;
    int seen[256] = {0};
    DIR *d = opendir("/dev");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int k; char c;
        if (sscanf(e->d_name, "nvidia%d%c", &k, &c) == 1 && k >= 0 && k < 256) seen[k] = 1;
    }
    if (d) closedir(d);
    int all[256], m = 0;
    for (int k = 0; k < 256; k++) if (seen[k]) all[m++] = k;
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (!v) { memcpy(nodes, all, sizeof all); n = m; return; }
    char buf[256]; snprintf(buf, sizeof buf, "%s", v);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int i = atoi(t);
        if (i >= 0 && i < m) nodes[n++] = all[i];
    }
}
int cuInit(unsigned flags) {
    struct stat st;
    (void)flags;
    if (stat("/dev/nvidiactl", &st) != 0) return 100;
    scan();
    return n > 0 ? 0 : 100;
}
int cuDriverGetVersion(int *v) { *v = 12040; return 0; }
int cuDeviceGetCount(int *c) { scan(); *c = n; return 0; }
int cuDeviceGetName(char *name, int len, int dev) {
    scan();
    if (dev < 0 || dev >= n) return 101;
    snprintf(name, len, "Stand-in GPU (/dev/nvidia%d)", nodes[dev]);
    return 0;
}
"#;

/// nvidia-ctk's two hooks as NVIDIA's specs use them, in shell: find the
/// root through the state's bundle, then make the soname links and the
/// ld.so.conf.d entry.
const NVIDIA_CTK: &str = r#"#!/bin/sh
state=$(cat)
bundle=$(printf '%s' "$state" | sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p')
root=$(sed -n 's/.*"root":{"path":"\([^"]*\)".*/\1/p' "$bundle/config.json")
[ -d "$root" ] || { echo "stand-in nvidia-ctk: no root in $bundle/config.json" >&2; exit 1; }
[ "$1" = hook ] || exit 2
case $2 in
create-symlinks)
    shift 2
    while [ $# -gt 1 ]; do
        [ "$1" = --link ] || exit 2
        target=${2%%::*}; link=${2#*::}
        mkdir -p "$root$(dirname "$link")"
        ln -sf "$target" "$root$link"
        shift 2
    done ;;
update-ldcache)
    [ "$3" = --folder ] || exit 2
    mkdir -p "$root/etc/ld.so.conf.d"
    echo "$4" > "$root/etc/ld.so.conf.d/00-nvcr-stand-in.conf" ;;
*) exit 2 ;;
esac
"#;

/// A stand-in driver install under `dir`.
pub struct Driver {
    pub dir: PathBuf,
}

impl Driver {
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("driver/lib")
    }
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("driver/bin")
    }
    pub fn dev(&self) -> PathBuf {
        self.dir.join("dev")
    }
    pub fn cdi_dir(&self) -> PathBuf {
        self.dir.join("cdi")
    }
    pub fn ld_cache(&self) -> PathBuf {
        self.dir.join("ld.so.cache")
    }

    pub fn install(dir: &Path) -> Driver {
        let d = Driver {
            dir: dir.to_path_buf(),
        };
        let lib = d.lib_dir();
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(d.bin_dir()).unwrap();
        let libs: [(&str, &str); 3] = [
            ("libcuda", LIBCUDA_C),
            ("libnvidia-ml", "int nvmlInit_v2(void) { return 0; }\n"),
            (
                "libnvidia-ptxjitcompiler",
                "int __cuda_ptxjit_stub(void) { return 0; }\n",
            ),
        ];
        for (name, src) in libs {
            let c = dir.join(format!("{name}.c"));
            std::fs::write(&c, src).unwrap();
            let file = format!("{name}.so.{DRIVER_VERSION}");
            let st = Command::new("gcc")
                .args(["-shared", "-fPIC", "-O1"])
                .arg(format!("-Wl,-soname,{name}.so.1"))
                .arg("-o")
                .arg(lib.join(&file))
                .arg(&c)
                .status()
                .expect("gcc");
            assert!(st.success(), "building the stand-in {file}");
            std::os::unix::fs::symlink(&file, lib.join(format!("{name}.so.1"))).unwrap();
        }
        std::os::unix::fs::symlink("libcuda.so.1", lib.join("libcuda.so")).unwrap();
        // Registered as the installer does (ldconfig lives in /sbin, which
        // is not on a user's PATH; the test names it).
        std::fs::write(dir.join("ld.so.conf"), format!("{}\n", lib.display())).unwrap();
        let st = Command::new("/sbin/ldconfig")
            .arg("-C")
            .arg(d.ld_cache())
            .arg("-f")
            .arg(dir.join("ld.so.conf"))
            .status()
            .expect("ldconfig");
        assert!(st.success());
        // Device nodes: NVIDIA's major 195 (nvidiactl is minor 255) and a
        // dynamic one for uvm, made with mknod as root; stand-in files for
        // a user, who cannot make nodes.
        std::fs::create_dir_all(d.dev()).unwrap();
        for (name, major, minor) in [
            ("nvidia0", 195, 0),
            ("nvidia1", 195, 1),
            ("nvidiactl", 195, 255),
            ("nvidia-uvm", 237, 0),
        ] {
            let p = d.dev().join(name);
            if is_root() {
                let st = Command::new("/bin/mknod")
                    .arg(&p)
                    .args(["c", &major.to_string(), &minor.to_string()])
                    .status()
                    .expect("mknod");
                assert!(st.success());
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                    .unwrap();
            } else {
                std::fs::write(&p, "").unwrap();
            }
        }
        let smi = "#!/bin/sh\nfor n in /dev/nvidia[0-9]*; do [ -e \"$n\" ] && echo \"GPU ${n#/dev/nvidia}: Stand-in GPU ($n)\"; done\n";
        // The tools live in the driver's own folder, reached through
        // symlinks from the directory on PATH, as on GPU clouds
        // (/usr/bin/nvidia-smi -> /usr/local/nvidia/bin/nvidia-smi): a
        // bound link would dangle in the container.
        let real_bin = dir.join("driver/nvidia/bin");
        std::fs::create_dir_all(&real_bin).unwrap();
        for (name, text) in [
            ("nvidia-smi", smi),
            ("nvidia-persistenced", "#!/bin/sh\nexit 0\n"),
            ("nvidia-ctk", NVIDIA_CTK),
        ] {
            let p = real_bin.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            std::os::unix::fs::symlink(&p, d.bin_dir().join(name)).unwrap();
        }
        // The driver's per-GPU files, where UUIDs are mapped to minors.
        for (minor, uuid) in [(0, "GPU-00000000-aaaa"), (1, "GPU-11111111-bbbb")] {
            let g = dir.join(format!("gpus/0000:0{minor}:00.0"));
            std::fs::create_dir_all(&g).unwrap();
            std::fs::write(
                g.join("information"),
                format!("Model: \t\t Stand-in\nGPU UUID: \t {uuid}\nDevice Minor: \t {minor}\n"),
            )
            .unwrap();
        }
        d.write_cdi_spec();
        d
    }

    /// What `nvidia-ctk cdi generate` would write for this install: a
    /// device per GPU and `all`, the control nodes, libraries and tools
    /// as mounts, and its two hooks.
    fn write_cdi_spec(&self) {
        std::fs::create_dir_all(self.cdi_dir()).unwrap();
        let node = |n: &str| {
            format!(
                "{{path: /dev/{n}, hostPath: {}}}",
                self.dev().join(n).display()
            )
        };
        let gpu_lib = "/usr/lib/x86_64-linux-gnu";
        let mut mounts = String::new();
        for name in ["libcuda", "libnvidia-ml", "libnvidia-ptxjitcompiler"] {
            let file = format!("{name}.so.{DRIVER_VERSION}");
            mounts += &format!(
                "  - {{hostPath: {}, containerPath: {gpu_lib}/{file}, options: [ro, nosuid, nodev, bind]}}\n",
                self.lib_dir().join(&file).display()
            );
        }
        mounts += &format!(
            "  - {{hostPath: {}, containerPath: /usr/bin/nvidia-smi, options: [ro, nosuid, nodev, bind]}}\n",
            self.bin_dir().join("nvidia-smi").display()
        );
        let ctk = self.bin_dir().join("nvidia-ctk");
        let spec = format!(
            r#"---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes: [{n0}]
- name: "1"
  containerEdits:
    deviceNodes: [{n1}]
- name: all
  containerEdits:
    deviceNodes: [{n0}, {n1}]
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  - STAND_IN_CDI=yes
  deviceNodes: [{ctl}, {uvm}]
  mounts:
{mounts}  hooks:
  - hookName: createContainer
    path: {ctk}
    args: [nvidia-ctk, hook, create-symlinks, --link, libcuda.so.{v}::{gpu_lib}/libcuda.so.1, --link, libnvidia-ml.so.{v}::{gpu_lib}/libnvidia-ml.so.1]
  - hookName: createContainer
    path: {ctk}
    args: [nvidia-ctk, hook, update-ldcache, --folder, {gpu_lib}]
"#,
            n0 = node("nvidia0"),
            n1 = node("nvidia1"),
            ctl = node("nvidiactl"),
            uvm = node("nvidia-uvm"),
            ctk = ctk.display(),
            v = DRIVER_VERSION,
        );
        std::fs::write(self.cdi_dir().join("nvidia.yaml"), spec).unwrap();
    }
}

/// An image with busybox, the host's C library and the cuInit probe
/// (integration/gpu/cuda_probe.c, built here).
pub fn probe_image(dir: &Path) -> PathBuf {
    let src = dir.join("cuda_probe.c");
    std::fs::write(&src, include_str!("../../../integration/gpu/cuda_probe.c")).unwrap();
    let probe = dir.join("cuda_probe");
    let st = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&probe)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("gcc");
    assert!(st.success());
    let ldd = Command::new("ldd").arg(&probe).output().expect("ldd");
    let mut entries = vec![
        Entry::Dir("lib", 0o755),
        Entry::Dir("lib64", 0o755),
        Entry::Dir("lib/x86_64-linux-gnu", 0o755),
        Entry::Dir("usr", 0o755),
        Entry::Dir("usr/lib", 0o755),
        Entry::Dir("probe", 0o755),
        Entry::File(
            "probe/cuda_probe".into(),
            std::fs::read(&probe).unwrap(),
            0o755,
        ),
    ];
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') && Path::new(word).is_file() {
            let name = word.trim_start_matches('/').to_string();
            if !entries
                .iter()
                .any(|e| matches!(e, Entry::File(n, _, _) if *n == name))
            {
                entries.push(Entry::File(name, std::fs::read(word).unwrap(), 0o755));
            }
        }
    }
    let image = dir.join("gpu.tar");
    let img = Image::new(
        vec![imagefix::base_layer(), imagefix::layer(&entries)],
        "gpu:1",
    )
    .with_config(serde_json::json!({"Env": ["PATH=/usr/bin:/bin"], "WorkingDir": "/"}));
    imagefix::write_docker_archive(&image, &[&img]);
    image
}
