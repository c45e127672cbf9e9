//! GPUs and fabrics as a site has them, with a stand-in NVIDIA driver laid
//! out as NVIDIA's installer lays it out: versioned libraries with their
//! soname links, registered in an ld.so cache made by ldconfig, device
//! nodes with NVIDIA's majors (root) or stand-in files (a user), tools, and
//! a CDI spec that names all of it. A probe linked the way CUDA programs
//! are (dlopen of libcuda.so.1, then cuInit) runs inside, with the Debian
//! user PATH, through the built-in discovery and through CDI. Run as root
//! and as a plain user.

mod gpufix;
mod imagefix;

use gpufix::{probe_image, Driver, DRIVER_VERSION, USER_PATH};
use imagefix::scratch::Scratch;
use runtime_tests::{fails_in_one_line, ok};
use std::path::{Path, PathBuf};
use std::process::Output;

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
    fails_in_one_line(&c.output().unwrap(), "GPU-99999999");
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
    fails_in_one_line(
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
    if !Path::new("/sys/module/nvidia").exists() {
        assert_eq!(
            r["host"]["gpuDriver"], DRIVER_VERSION,
            "from the bound libcuda"
        );
    }
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
    let provider = env.scratch.dir.join("libmlx5-rdmav34.so");
    std::fs::write(&provider, "stand-in provider").unwrap();
    let site = env.site(
        false,
        &format!("ib_libraries = [\"{}\"]\n", provider.display()),
    );
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
    // InfiniBand: the provider library the site names, first on the
    // library path, and the host's provider configuration.
    let look =
        "ls /.hpcc/ib/lib; echo ${LD_LIBRARY_PATH%%:*}; ls /etc/libibverbs.d 2>/dev/null | wc -l";
    let o = env.run(&site, &["--gpus", "none"], &["/bin/sh", "-c", look]);
    let host_drivers = runtime_tests::list_dir(Path::new("/etc/libibverbs.d")).len();
    assert_eq!(
        ok(&o),
        format!("libmlx5-rdmav34.so\n/.hpcc/ib/lib\n{host_drivers}\n")
    );
    fails_in_one_line(
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
        fails_in_one_line(&o, needle);
        assert!(String::from_utf8_lossy(&o.stderr).contains("broken.yaml"));
        // A run that names no CDI device is not stopped by it: a warning,
        // and the GPUs come through the built-in discovery.
        let o = env.run(&site, &[], &["/probe/cuda_probe"]);
        assert_eq!(ok(&o), probe_says(&[0, 1]));
        assert!(String::from_utf8_lossy(&o.stderr).contains("built-in"));
    }
    std::fs::remove_file(&spec).unwrap();
    // A spec made on another node, naming GPUs this one lacks: asked for,
    // an error naming the node; by default, a warning and the built-in
    // discovery.
    let nv = env.driver.cdi_dir().join("nvidia.yaml");
    let good = std::fs::read_to_string(&nv).unwrap();
    std::fs::write(&nv, good.replace("dev/nvidia1", "dev/nvidia9")).unwrap();
    fails_in_one_line(&env.run(&site, &["--gpus", "1"], &["true"]), "nvidia9");
    let o = env.run(&site, &[], &["/probe/cuda_probe"]);
    assert_eq!(ok(&o), probe_says(&[0, 1]));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("nvidia9") && e.contains("built-in"), "{e}");
    std::fs::write(&nv, good).unwrap();
    fails_in_one_line(
        &env.run(&site, &["--device", "nvidia.com/gpu=5"], &["true"]),
        "nvidia.com/gpu=5",
    );
    fails_in_one_line(
        &env.run(&site, &["--device", "nvidia.com/gpu"], &["true"]),
        "nvidia.com/gpu",
    );
    // A spec naming a node this host lacks.
    std::fs::write(
        &spec,
        "cdiVersion: 0.6.0\nkind: v.com/x\ndevices: [{name: \"0\", containerEdits: {deviceNodes: [{path: /dev/no-such-node-x}]}}]\n",
    )
    .unwrap();
    fails_in_one_line(
        &env.run(&site, &["--device", "v.com/x=0"], &["true"]),
        "/dev/no-such-node-x",
    );
}
