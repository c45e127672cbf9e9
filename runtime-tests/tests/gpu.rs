//! GPUs and fabrics as a site has them, with a stand-in NVIDIA driver laid
//! out as NVIDIA's installer lays it out: versioned libraries with their
//! soname links, registered in an ld.so cache made by ldconfig, device
//! nodes with NVIDIA's majors (root) or stand-in files (a user), tools, and
//! a CDI spec that names all of it. A probe linked the way CUDA programs
//! are (dlopen of libcuda.so.1, then cuInit) runs inside, with the Debian
//! user PATH, through the built-in discovery and through CDI. Run as root
//! and as a plain user.

mod imagefix;

use imagefix::scratch::Scratch;
use imagefix::{Entry, Image};
use runtime_tests::{is_root, ok};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DRIVER_VERSION: &str = "550.54.14";
/// The user PATH of Debian (no sbin), with the driver's tools in front as
/// a `module load` would put them.
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

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
struct Driver {
    dir: PathBuf,
}

impl Driver {
    fn lib_dir(&self) -> PathBuf {
        self.dir.join("driver/lib")
    }
    fn bin_dir(&self) -> PathBuf {
        self.dir.join("driver/bin")
    }
    fn dev(&self) -> PathBuf {
        self.dir.join("dev")
    }
    fn cdi_dir(&self) -> PathBuf {
        self.dir.join("cdi")
    }
    fn ld_cache(&self) -> PathBuf {
        self.dir.join("ld.so.cache")
    }

    fn install(dir: &Path) -> Driver {
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
        for (name, text) in [
            ("nvidia-smi", smi),
            ("nvidia-persistenced", "#!/bin/sh\nexit 0\n"),
            ("nvidia-ctk", NVIDIA_CTK),
        ] {
            let p = d.bin_dir().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
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
fn probe_image(dir: &Path) -> PathBuf {
    let src = dir.join("cuda_probe.c");
    std::fs::write(&src, include_str!("../../integration/gpu/cuda_probe.c")).unwrap();
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

struct Env {
    scratch: Scratch,
    driver: Driver,
    image: PathBuf,
}

impl Env {
    fn new(tag: &str) -> Env {
        let scratch = Scratch::with_prefix("hpcc-gpu", tag);
        let driver = Driver::install(&scratch.dir);
        let image = probe_image(&scratch.dir);
        Env {
            scratch,
            driver,
            image,
        }
    }

    /// A site config: the stand-in /dev, ld.so cache and GPU list, and the
    /// CDI spec directory when `cdi`.
    fn site(&self, cdi: bool, extra: &str) -> PathBuf {
        let d = &self.driver;
        let cdi_dirs = if cdi {
            format!("[\"{}\"]", d.cdi_dir().display())
        } else {
            format!("[\"{}\"]", self.scratch.dir.join("no-cdi").display())
        };
        let p = self.scratch.dir.join(format!("site-{cdi}.toml"));
        std::fs::write(
            &p,
            format!(
                "dev_dir = \"{}\"\nld_cache = \"{}\"\nnvidia_gpus_dir = \"{}\"\ncdi_spec_dirs = {cdi_dirs}\n{extra}",
                d.dev().display(),
                d.ld_cache().display(),
                self.scratch.dir.join("gpus").display()
            ),
        )
        .unwrap();
        p
    }

    /// `hpcc run PRE IMAGE -- ARGS` with the Debian user PATH (and the
    /// driver's tools, as `module load` would add them), no GPU variables.
    fn run(&self, site: &Path, pre: &[&str], args: &[&str]) -> Output {
        let mut c = self.scratch.cmd(&["run"]);
        c.args(pre)
            .arg(&self.image)
            .arg("--")
            .args(args)
            .env("HPCC_CONFIG", site)
            .env(
                "PATH",
                format!("{}:{USER_PATH}", self.driver.bin_dir().display()),
            )
            .env_remove("NVIDIA_VISIBLE_DEVICES")
            .env_remove("CUDA_VISIBLE_DEVICES");
        c.output().expect("running hpcc")
    }
}

fn probe_says(names: &[u32]) -> String {
    let mut s = format!("cuInit: 0\ndriver: 12.4\ndevices: {}\n", names.len());
    for (i, n) in names.iter().enumerate() {
        s += &format!("device {i}: Stand-in GPU (/dev/nvidia{n})\n");
    }
    s
}

#[track_caller]
fn fails_with(o: &Output, needle: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains(needle),
        "expected failure with {needle:?}: {:?} {e}",
        o.status
    );
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
}

#[test]
fn built_in_discovery_finds_the_driver_through_the_ld_cache() {
    let env = Env::new("builtin");
    let site = env.site(false, "");
    let o = env.run(&site, &[], &["/probe/cuda_probe"]);
    assert_eq!(ok(&o), probe_says(&[0, 1]));
    let look =
        "ls /.hpcc/gpu/lib | tr '\\n' ' '; echo; nvidia-smi; echo ${CUDA_VISIBLE_DEVICES:-unset}";
    let o = env.run(&site, &[], &["/bin/sh", "-c", look]);
    assert_eq!(
        ok(&o),
        "libcuda.so libcuda.so.1 libnvidia-ml.so.1 libnvidia-ptxjitcompiler.so.1 \n\
         GPU 0: Stand-in GPU (/dev/nvidia0)\nGPU 1: Stand-in GPU (/dev/nvidia1)\nunset\n"
    );
    // One GPU: CUDA numbers it 0.
    let o = env.run(&site, &["--gpus", "1"], &["/probe/cuda_probe"]);
    assert_eq!(ok(&o), probe_says(&[1]));
    let o = env.run(
        &site,
        &["--gpus", "1"],
        &["/bin/sh", "-c", "echo $CUDA_VISIBLE_DEVICES"],
    );
    assert_eq!(ok(&o), "0\n");
    // --gpus none: no node and no driver, so CUDA cannot load.
    let o = env.run(&site, &["--gpus", "none"], &["/probe/cuda_probe"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1"));
    // The launcher's NVIDIA_VISIBLE_DEVICES: void, all, and a UUID (mapped
    // to its minor through the driver's GPU list).
    for (value, want) in [
        ("void", None),
        ("none", None),
        ("all", Some(vec![0, 1])),
        ("GPU-11111111-bbbb", Some(vec![1])),
    ] {
        let mut c = env.scratch.cmd(&["run"]);
        c.arg(&env.image)
            .args(["--", "/probe/cuda_probe"])
            .env("HPCC_CONFIG", &site)
            .env("PATH", USER_PATH)
            .env("NVIDIA_VISIBLE_DEVICES", value);
        let o = c.output().unwrap();
        match want {
            Some(v) => assert_eq!(ok(&o), probe_says(&v), "NVIDIA_VISIBLE_DEVICES={value}"),
            None => assert_eq!(o.status.code(), Some(2), "NVIDIA_VISIBLE_DEVICES={value}"),
        }
    }
    let mut c = env.scratch.cmd(&["run"]);
    c.arg(&env.image)
        .args(["--", "/probe/cuda_probe"])
        .env("HPCC_CONFIG", &site)
        .env("NVIDIA_VISIBLE_DEVICES", "GPU-99999999");
    fails_with(&c.output().unwrap(), "GPU-99999999");
}

#[test]
fn gpus_without_driver_libraries_are_warned_about() {
    let env = Env::new("nolibs");
    let site = env.site(false, "");
    let empty = env.scratch.dir.join("empty.cache");
    std::fs::write(&empty, "").unwrap();
    let other = env.scratch.dir.join("site-nolibs.toml");
    let text = std::fs::read_to_string(&site).unwrap().replace(
        &env.driver.ld_cache().display().to_string(),
        &empty.display().to_string(),
    );
    std::fs::write(&other, text).unwrap();
    let o = env.run(
        &other,
        &[],
        &["/bin/sh", "-c", "ls /dev | grep -c '^nvidia[0-9]'"],
    );
    assert_eq!(ok(&o), "2\n", "the GPUs are still bound");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no driver library") && e.contains("empty.cache"),
        "one warning naming the cache: {e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn cdi_devices_bring_nodes_libraries_env_and_hooks() {
    let env = Env::new("cdi");
    let site = env.site(true, "");
    let look = "echo $STAND_IN_CDI; readlink /usr/lib/x86_64-linux-gnu/libcuda.so.1; \
                cat /etc/ld.so.conf.d/00-nvcr-stand-in.conf; nvidia-smi; test -e /.hpcc && echo built-in || echo cdi-only";
    let o = env.run(
        &site,
        &["--device", "nvidia.com/gpu=1"],
        &["/bin/sh", "-c", look],
    );
    assert_eq!(
        ok(&o),
        format!(
            "yes\nlibcuda.so.{DRIVER_VERSION}\n/usr/lib/x86_64-linux-gnu\n\
             GPU 1: Stand-in GPU (/dev/nvidia1)\ncdi-only\n"
        ),
        "the spec's env, its hooks' links and conf, its tool, one GPU, no built-in binds"
    );
    let o = env.run(
        &site,
        &["--device", "nvidia.com/gpu=1"],
        &["/probe/cuda_probe"],
    );
    assert_eq!(ok(&o), probe_says(&[1]));
    let o = env.run(
        &site,
        &["--device", "nvidia.com/gpu=all"],
        &["/probe/cuda_probe"],
    );
    assert_eq!(ok(&o), probe_says(&[0, 1]));
    // With a spec for nvidia.com/gpu, --gpus goes through it.
    let mut c = env.scratch.cmd(&["--debug", "run", "--gpus", "0"]);
    c.arg(&env.image)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "echo $STAND_IN_CDI $CUDA_VISIBLE_DEVICES; ls /dev | grep '^nvidia[0-9]'",
        ])
        .env("HPCC_CONFIG", &site)
        .env("PATH", USER_PATH);
    let o = c.output().unwrap();
    assert_eq!(ok(&o), "yes 0\nnvidia0\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("GPUs through CDI"));
    let o = env.run(&site, &[], &["/probe/cuda_probe"]);
    assert_eq!(ok(&o), probe_says(&[0, 1]), "the default, all, through CDI");
    // A host device node by path.
    let o = env.run(
        &site,
        &[
            "--gpus",
            "none",
            "--device",
            &format!(
                "{}:/dev/nvidia7",
                env.driver.dev().join("nvidia1").display()
            ),
        ],
        &["/bin/sh", "-c", "ls /dev | grep '^nvidia'"],
    );
    assert_eq!(ok(&o), "nvidia7\n");
    fails_with(
        &env.run(&site, &["--device", "/dev/no-such-device"], &["true"]),
        "/dev/no-such-device",
    );
    // --record names the CDI devices.
    let rec = env.scratch.dir.join("rec.json");
    let o = env.run(
        &site,
        &[
            "--record",
            rec.to_str().unwrap(),
            "--device",
            "nvidia.com/gpu=0",
        ],
        &["true"],
    );
    ok(&o);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    assert_eq!(r["cdiDevices"], serde_json::json!(["nvidia.com/gpu=0"]));
    let devices = r["devices"].to_string();
    assert!(
        devices.contains("nvidia0") && devices.contains("libcuda.so"),
        "{devices}"
    );
}

#[test]
fn amd_and_infiniband_devices() {
    let env = Env::new("amd-ib");
    let dev = env.driver.dev();
    std::fs::create_dir_all(dev.join("dri")).unwrap();
    std::fs::create_dir_all(dev.join("infiniband")).unwrap();
    for n in [
        "kfd",
        "dri/renderD128",
        "infiniband/uverbs0",
        "infiniband/rdma_cm",
    ] {
        std::fs::write(dev.join(n), "").unwrap();
    }
    let rocm = env.scratch.dir.join("rocm/lib");
    std::fs::create_dir_all(&rocm).unwrap();
    std::fs::write(rocm.join("libamdhip64.so.6"), "stand-in").unwrap();
    let amd_dir = env.scratch.dir.join("cdi-amd");
    std::fs::create_dir_all(&amd_dir).unwrap();
    std::fs::write(
        amd_dir.join("amd.json"),
        serde_json::json!({
            "cdiVersion": "0.6.0",
            "kind": "amd.com/gpu",
            "devices": [{"name": "0", "containerEdits": {"deviceNodes": [
                {"path": "/dev/dri/renderD128", "hostPath": dev.join("dri/renderD128")}
            ]}}],
            "containerEdits": {
                "deviceNodes": [{"path": "/dev/kfd", "hostPath": dev.join("kfd")}],
                "mounts": [{"hostPath": rocm, "containerPath": "/opt/rocm/lib", "options": ["ro", "bind"]}],
                "env": ["ROCM_PATH=/opt/rocm"]
            }
        })
        .to_string(),
    )
    .unwrap();
    let site = env.site(false, "");
    let text = std::fs::read_to_string(&site).unwrap().replace(
        &env.scratch.dir.join("no-cdi").display().to_string(),
        &amd_dir.display().to_string(),
    );
    std::fs::write(&site, text).unwrap();
    let look = "ls /dev/dri /dev/kfd /dev/infiniband | tr '\\n' ' '; echo; cat /opt/rocm/lib/libamdhip64.so.6; echo; echo $ROCM_PATH";
    let o = env.run(
        &site,
        &["--gpus", "none", "--device", "amd.com/gpu=0"],
        &["/bin/sh", "-c", look],
    );
    assert_eq!(
        ok(&o),
        "/dev/kfd  /dev/dri: renderD128  /dev/infiniband: rdma_cm uverbs0 \nstand-in\n/opt/rocm\n"
    );
    fails_with(
        &env.run(&site, &["--device", "amd.com/gpu=3"], &["true"]),
        "amd.com/gpu=3",
    );
}

#[test]
fn bad_cdi_specs_are_refused_in_one_line() {
    let env = Env::new("cdi-bad");
    let site = env.site(true, "");
    let spec = env.driver.cdi_dir().join("broken.yaml");
    for (text, needle) in [
        ("cdiVersion: 0.6.0\nkind: v.com/x\ndevices: [{name: \"0\", containerEdits: {deviceNodes: [{path: /dev/x, major: many}]}}]\n", "major"),
        ("cdiVersion: 0.9.0\nkind: v.com/x\ndevices: [{name: \"0\"}]\n", "cdiVersion"),
        ("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: \"1\"}]\n", "both define nvidia.com/gpu=1"),
    ] {
        std::fs::write(&spec, text).unwrap();
        let o = env.run(&site, &["--device", "v.com/x=0"], &["true"]);
        fails_with(&o, needle);
        assert!(String::from_utf8_lossy(&o.stderr).contains("broken.yaml"));
        // A run that names no CDI device is not stopped by it: a warning,
        // and the GPUs come through the built-in discovery.
        let o = env.run(&site, &[], &["/probe/cuda_probe"]);
        assert_eq!(ok(&o), probe_says(&[0, 1]));
        assert!(String::from_utf8_lossy(&o.stderr).contains("built-in"));
    }
    std::fs::remove_file(&spec).unwrap();
    fails_with(
        &env.run(&site, &["--device", "nvidia.com/gpu=5"], &["true"]),
        "nvidia.com/gpu=5",
    );
    fails_with(
        &env.run(&site, &["--device", "nvidia.com/gpu"], &["true"]),
        "nvidia.com/gpu",
    );
    // A spec naming a node this host lacks.
    std::fs::write(
        &spec,
        "cdiVersion: 0.6.0\nkind: v.com/x\ndevices: [{name: \"0\", containerEdits: {deviceNodes: [{path: /dev/no-such-node-x}]}}]\n",
    )
    .unwrap();
    fails_with(
        &env.run(&site, &["--device", "v.com/x=0"], &["true"]),
        "/dev/no-such-node-x",
    );
}
