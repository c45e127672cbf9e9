//! Binary information and `spec`: `--version`, `features`, and the
//! default and rootless configs `spec` writes.

use std::fs;

use runtime_tests::{egid, euid, TestEnv};
use serde_json::Value;

#[test]
fn version_prints_name_commit_and_spec() {
    let env = TestEnv::new("version");
    let out = env.hpcc_raw(&["--version"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let first = lines.first().copied().unwrap_or_default();
    let version = first.strip_prefix("hpcc version ").unwrap_or_else(|| {
        panic!("first line should be `hpcc version X.Y.Z`\n{out}");
    });
    assert!(
        version.split('.').count() >= 3
            && version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "version {version:?} is not X.Y.Z\n{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("commit:")),
        "no `commit:` line\n{out}"
    );
    let spec = lines
        .iter()
        .find_map(|l| l.strip_prefix("spec:"))
        .unwrap_or_else(|| panic!("no `spec:` line\n{out}"));
    assert!(
        spec.trim().starts_with("1."),
        "spec version {spec:?} is not 1.x\n{out}"
    );
}

#[test]
fn features_reports_oci_version_range() {
    let env = TestEnv::new("features");
    let out = env.hpcc_raw(&["features"]);
    out.ok();
    let f = out.json();
    for key in ["ociVersionMin", "ociVersionMax"] {
        assert!(
            f[key].as_str().is_some_and(|v| v.starts_with("1.")),
            "{key} should be a 1.x version\n{out}"
        );
    }
}

#[test]
fn spec_writes_default_config() {
    let env = TestEnv::new("spec");
    let dir = env.path("b");
    fs::create_dir(&dir).expect("mkdir bundle");
    let dir_s = dir.to_str().expect("utf-8 path");
    env.hpcc_raw(&["spec", "--bundle", dir_s]).ok();
    let text = fs::read_to_string(dir.join("config.json")).expect("spec wrote config.json");
    let c: Value = serde_json::from_str(&text).expect("config.json is JSON");

    assert!(
        c["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {c}"
    );
    assert_eq!(c["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(c["process"]["terminal"], true);
    assert_eq!(c["root"]["path"], "rootfs");
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "namespace {want} missing: {ns:?}");
    }
    assert!(
        !ns.contains(&"user"),
        "no user namespace by default: {ns:?}"
    );
    let dests: Vec<&str> = c["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .collect();
    for want in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(dests.contains(&want), "mount {want} missing: {dests:?}");
    }
    let nofile = c["process"]["rlimits"]
        .as_array()
        .expect("process.rlimits")
        .iter()
        .find(|r| r["type"] == "RLIMIT_NOFILE")
        .unwrap_or_else(|| panic!("no RLIMIT_NOFILE: {}", c["process"]["rlimits"]));
    assert_eq!(nofile["soft"], 1024);
    assert_eq!(nofile["hard"], 1024);
    for key in ["maskedPaths", "readonlyPaths"] {
        assert!(
            c["linux"][key].as_array().is_some_and(|a| !a.is_empty()),
            "linux.{key} should be a non-empty list: {c}"
        );
    }
    assert!(
        c["process"]["capabilities"]["bounding"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "CAP_KILL")),
        "bounding capabilities: {}",
        c["process"]["capabilities"]
    );

    // Without --bundle, spec writes into the working directory.
    let cwd = env.path("cwd");
    fs::create_dir(&cwd).expect("mkdir cwd");
    env.hpcc_in(&cwd, &["spec"]).ok();
    let text = fs::read_to_string(cwd.join("config.json")).expect("spec wrote ./config.json");
    serde_json::from_str::<Value>(&text).expect("./config.json is JSON");
}

#[test]
fn spec_refuses_to_overwrite() {
    let env = TestEnv::new("spec-exists");
    let dir = env.path("b");
    fs::create_dir(&dir).expect("mkdir bundle");
    let dir_s = dir.to_str().expect("utf-8 path");
    let config = dir.join("config.json");
    fs::write(&config, "{\"mine\": true}").expect("write config.json");
    let out = env.hpcc_raw(&["spec", "--bundle", dir_s]);
    out.fails();
    assert!(!out.stderr.trim().is_empty(), "no error message\n{out}");
    assert_eq!(
        fs::read_to_string(&config).expect("read config.json"),
        "{\"mine\": true}",
        "spec overwrote an existing config.json\n{out}"
    );
}

#[test]
fn spec_rootless_adds_userns_and_drops_netns() {
    let env = TestEnv::new("spec-rootless");
    let dir = env.path("b");
    fs::create_dir(&dir).expect("mkdir bundle");
    let dir_s = dir.to_str().expect("utf-8 path");
    env.hpcc_raw(&["spec", "--rootless", "--bundle", dir_s])
        .ok();
    let text = fs::read_to_string(dir.join("config.json")).expect("spec wrote config.json");
    let c: Value = serde_json::from_str(&text).expect("config.json is JSON");
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(ns.contains(&"user"), "user namespace missing: {ns:?}");
    assert!(!ns.contains(&"network"), "network namespace kept: {ns:?}");
    assert!(ns.contains(&"pid"), "pid namespace dropped: {ns:?}");
    let map = |key: &str, host: u32| {
        assert_eq!(
            c["linux"][key],
            serde_json::json!([{"containerID": 0, "hostID": host, "size": 1}]),
            "linux.{key}"
        );
    };
    map("uidMappings", euid());
    map("gidMappings", egid());
    let mounts = c["mounts"].as_array().expect("mounts");
    let sys = mounts
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap_or_else(|| panic!("no /sys mount: {}", c["mounts"]));
    assert!(
        sys["options"]
            .as_array()
            .is_some_and(|o| o.iter().any(|v| v == "rbind")),
        "/sys should be an rbind of the host's /sys: {sys}"
    );
    for m in mounts {
        for opt in m["options"].as_array().into_iter().flatten() {
            let opt = opt.as_str().unwrap_or_default();
            assert!(
                !opt.starts_with("uid=") && !opt.starts_with("gid="),
                "mount keeps {opt}: {m}"
            );
        }
    }
    assert!(
        c["linux"]["resources"].is_null(),
        "linux.resources should be dropped: {}",
        c["linux"]["resources"]
    );
}
