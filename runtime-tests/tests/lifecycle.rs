//! Conformance tests for the runc-compatible command line of hpcc.
//!
//! Run with `HPCC_BIN=/abs/path/to/hpcc cargo test -p runtime-tests`; the
//! suite passes both as root and as an unprivileged user (rootless).

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{
    assert_clean_in, egid, euid, is_root, read_pid_file, Bundle, Output, TestEnv, WAIT_LIMIT,
};
use serde_json::Value;

/// PID 1 of a pid namespace only gets the signals it has handlers for, so the
/// TERM tests run a shell that traps TERM.
const TRAP_TERM: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

/// `/proc/PID/cmdline` split at NULs.
fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Waits (bounded) until the process runs `args` (after `start` the init
/// process execs the user's program).
fn wait_cmdline(pid: u32, args: &[&str]) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let now = cmdline(pid);
        if now.as_ref().is_some_and(|c| c.iter().eq(args.iter())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} should run {args:?} after start, its cmdline is {now:?}"
        );
        sleep(Duration::from_millis(20));
    }
}

/// Checks the fields of an OCI state document.
fn check_state(state: &Value, id: &str, status: &str, bundle: &Bundle) {
    assert!(
        state["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {state}"
    );
    assert_eq!(state["id"], id, "id: {state}");
    assert_eq!(state["status"], status, "status: {state}");
    let same_path = |field: &str, want: &std::path::Path| {
        let got = state[field].as_str().unwrap_or_default();
        let canon = fs::canonicalize(want).unwrap_or_else(|_| want.to_path_buf());
        assert!(
            std::path::Path::new(got) == want || std::path::Path::new(got) == canon,
            "{field} should be {} but state is {state}",
            want.display()
        );
    };
    same_path("bundle", &bundle.dir);
    same_path("rootfs", &bundle.rootfs());
    assert!(
        state["created"].as_str().is_some_and(|s| !s.is_empty()),
        "created: {state}"
    );
    assert!(state["owner"].is_string(), "owner: {state}");
    if status == "stopped" {
        assert_eq!(state["pid"], 0, "a stopped container has pid 0: {state}");
    } else {
        assert!(state["pid"].as_u64().is_some_and(|p| p > 0), "pid: {state}");
    }
}

/// Drops the pid namespace. Without one, an unprivileged user cannot mount a
/// fresh procfs, so the rootless config bind-mounts the host's /proc.
fn without_pid_namespace(bundle: &mut Bundle) {
    bundle.remove_namespace("pid");
    if !is_root() {
        bundle.edit(|c| {
            if let Some(mounts) = c["mounts"].as_array_mut() {
                for m in mounts.iter_mut().filter(|m| m["destination"] == "/proc") {
                    *m = serde_json::json!({
                        "destination": "/proc",
                        "type": "bind",
                        "source": "/proc",
                        "options": ["rbind", "nosuid", "noexec", "nodev"]
                    });
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------
// Binary information and spec
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// create / start / kill / delete
// ---------------------------------------------------------------------------

/// create -> created (pid file = live process not yet running the program)
/// -> start -> running -> kill [signal] -> stopped -> delete -> gone.
fn kill_lifecycle(name: &str, args: &[&str], signal: Option<&str>) {
    let env = TestEnv::new(name);
    let mut bundle = env.bundle(args);
    bundle.edit(|c| c["annotations"] = serde_json::json!({"org.hpcc.test": name}));
    let id = env.id(name);
    let init = env.create(&bundle, &id);
    let state = env.state(&id);
    check_state(&state, &id, "created", &bundle);
    assert_eq!(
        state["annotations"]["org.hpcc.test"], name,
        "state should carry the config's annotations: {state}"
    );
    let before = cmdline(init.pid);
    assert!(
        before.as_ref().is_some_and(|c| !c.iter().eq(args.iter())),
        "a created container must not run its program before start; cmdline {before:?}"
    );

    env.hpcc(&["start", &id]).ok();
    let state = env.wait_status(&id, "running");
    check_state(&state, &id, "running", &bundle);
    assert_eq!(state["pid"], init.pid, "pid changed across start");
    wait_cmdline(init.pid, args);

    let mut kill = vec!["kill", id.as_str()];
    kill.extend(signal);
    env.hpcc(&kill).ok();
    let state = env.wait_status(&id, "stopped");
    check_state(&state, &id, "stopped", &bundle);

    env.hpcc(&["delete", &id]).ok();
    env.hpcc(&["state", &id]).fails_with("does not exist");
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn lifecycle_kill_by_number() {
    kill_lifecycle("kill-num", &sh(TRAP_TERM), Some("15"));
}

#[test]
fn lifecycle_kill_by_term_name() {
    kill_lifecycle("kill-term", &sh(TRAP_TERM), Some("TERM"));
}

#[test]
fn lifecycle_kill_by_sigkill_name() {
    kill_lifecycle("kill-sigkill", &["sleep", "1000"], Some("SIGKILL"));
}

#[test]
fn lifecycle_kill_default_signal_is_term() {
    kill_lifecycle("kill-default", &sh(TRAP_TERM), None);
}

/// Live processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    runtime_tests::proc_stat(*p).is_some_and(|st| st.ppid == pid && st.state != 'Z')
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_all_stops_every_process() {
    let env = TestEnv::new("kill-all");
    let bundle = env.bundle(&sh("sleep 1000 & sleep 1001 & wait"));
    let id = env.id("kill-all");
    let init = env.create_and_start(&bundle, &id);
    env.wait_status(&id, "running");
    let deadline = Instant::now() + WAIT_LIMIT;
    let children = loop {
        let children = children_of(init.pid);
        if children.len() == 2 {
            break children;
        }
        assert!(
            Instant::now() < deadline,
            "the container's two sleeps did not start: {children:?}"
        );
        sleep(Duration::from_millis(20));
    };
    let children: Vec<_> = children.into_iter().map(|p| env.live(p)).collect();
    env.hpcc(&["kill", "--all", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped");
    for child in &children {
        child.assert_gone("a process of the container after kill --all");
    }
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn kill_stopped_container_fails() {
    let env = TestEnv::new("kill-stopped");
    let bundle = env.bundle(&["true"]);
    let id = env.id("kill-stopped");
    let init = env.create_and_start(&bundle, &id);
    env.wait_status(&id, "stopped");
    env.hpcc(&["kill", &id, "KILL"])
        .fails_with("container not running");
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn delete_running_without_force_fails() {
    let env = TestEnv::new("delete-running");
    let bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("delete-running");
    let init = env.create_and_start(&bundle, &id);
    env.wait_status(&id, "running");
    let out = env.hpcc(&["delete", &id]);
    out.fails();
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("not stopped") || err.contains("running"),
        "expected the error to say the container is running / not stopped\n{out}"
    );
    let state = env.state(&id);
    assert_eq!(state["status"], "running", "delete must leave it running");
    assert!(init.exists().is_some(), "delete without --force killed it");
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn delete_created_container_succeeds() {
    let env = TestEnv::new("delete-created");
    let bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("delete-created");
    let init = env.create(&bundle, &id);
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn duplicate_id_fails() {
    let env = TestEnv::new("duplicate");
    let bundle = env.bundle(&["sleep", "1000"]);
    let other = env.bundle(&["sleep", "1000"]);
    let id = env.id("dup");
    let init = env.create(&bundle, &id);
    env.hpcc(&["create", "--bundle", other.path(), &id])
        .fails_with("already exists");
    let state = env.state(&id);
    check_state(&state, &id, "created", &bundle);
    assert_eq!(state["pid"], init.pid, "the first container was replaced");
    assert!(
        init.exists().is_some(),
        "the first container's process died"
    );
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
    env.assert_clean(&id, None, &other);
}

#[test]
fn invalid_ids_are_refused() {
    let env = TestEnv::new("invalid-id");
    let bundle = env.bundle(&["true"]);
    let escape = format!("../escape-{}", std::process::id());
    for bad in ["a/b", "..", ".", escape.as_str()] {
        let out = env.hpcc(&["create", "--bundle", bundle.path(), bad]);
        out.fails();
        assert!(!out.stderr.trim().is_empty(), "no error message\n{out}");
        env.hpcc(&["state", bad]).fails();
    }
    assert_eq!(
        env.root_entries(),
        Vec::<String>::new(),
        "invalid ids left something in the state root"
    );
    for leftover in ["state.json", "a", "b"] {
        assert!(
            !env.dir.join(leftover).exists(),
            "{leftover} appeared next to the state root"
        );
    }
    assert!(
        !env.dir.join(escape.trim_start_matches("../")).exists(),
        "an id with ../ escaped the state root"
    );
}

// ---------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------

#[test]
fn run_shows_output_from_inside() {
    let env = TestEnv::new("run-output");
    let bundle = env.bundle(&sh("echo hello; id -u; cat /proc/self/uid_map; hostname"));
    let id = env.id("run-output");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "expected 4 lines of output\n{out}");
    assert_eq!(lines[0], "hello", "{out}");
    assert_eq!(lines[1], "0", "uid inside should be 0\n{out}");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    let expected_map = if is_root() {
        vec!["0".to_string(), "0".to_string(), "4294967295".to_string()]
    } else {
        vec!["0".to_string(), euid().to_string(), "1".to_string()]
    };
    assert_eq!(map, expected_map, "uid_map inside\n{out}");
    assert_eq!(lines[3], bundle.hostname(), "hostname inside\n{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn run_exit_code_is_propagated() {
    let env = TestEnv::new("run-exit");
    let bundle = env.bundle(&sh("exit 3"));
    let id = env.id("run-exit");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    assert_eq!(
        out.code(),
        3,
        "run should exit with the container's code\n{out}"
    );
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn run_killed_by_signal_exits_128_plus_signal() {
    let env = TestEnv::new("run-signal");
    let mut bundle = env.bundle(&sh("kill -9 $$"));
    // PID 1 of a pid namespace cannot SIGKILL itself, so no pid namespace.
    without_pid_namespace(&mut bundle);
    let id = env.id("run-signal");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    assert_eq!(out.code(), 128 + 9, "expected 137 for SIGKILL\n{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn run_detach_then_force_delete() {
    let env = TestEnv::new("run-detach");
    let bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("run-detach");
    let pid_file = env.path("detach.pid");
    env.hpcc(&[
        "run",
        "--detach",
        "--bundle",
        bundle.path(),
        "--pid-file",
        pid_file.to_str().expect("utf-8 path"),
        &id,
    ])
    .ok();
    let pid = read_pid_file(&pid_file);
    let init = env.live(pid);
    let state = env.wait_status(&id, "running");
    check_state(&state, &id, "running", &bundle);
    assert_eq!(state["pid"], pid, "state pid vs pid file");
    wait_cmdline(pid, &["sleep", "1000"]);
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn run_accepts_no_pivot_no_new_keyring_and_short_bundle_flag() {
    let env = TestEnv::new("run-flags");
    let bundle = env.bundle(&sh("echo flags-ok"));
    let id = env.id("run-flags");
    let out = env.hpcc(&[
        "run",
        "--no-pivot",
        "--no-new-keyring",
        "-b",
        bundle.path(),
        &id,
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "flags-ok", "{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn pid_namespace_init_is_pid_1() {
    let env = TestEnv::new("pidns");
    let bundle = env.bundle(&sh("echo $$"));
    let id = env.id("pidns");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    assert_eq!(out.stdout.trim(), "1", "$$ inside a pid namespace\n{out}");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn missing_binary_fails_at_create_or_start_with_its_name() {
    let env = TestEnv::new("missing-bin-create");
    let bundle = env.bundle(&["/bin/hpcc-no-such-binary"]);
    let id = env.id("missing-bin");
    let out = env.hpcc(&["create", "--bundle", bundle.path(), &id]);
    if out.success() {
        // Allowed (older runc did this): the failure surfaces at start.
        env.hpcc(&["start", &id]).fails_with("hpcc-no-such-binary");
        env.hpcc(&["delete", "--force", &id]).ok();
    } else {
        out.fails_with("hpcc-no-such-binary");
    }
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn missing_binary_run_fails_with_its_name() {
    let env = TestEnv::new("missing-bin-run");
    for prog in ["/bin/hpcc-no-such-binary", "hpcc-no-such-command"] {
        let bundle = env.bundle(&[prog]);
        let id = env.id("missing-run");
        let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
        out.fails_with(prog);
        env.assert_clean(&id, None, &bundle);
    }
}

// ---------------------------------------------------------------------------
// list, errors, logging, global flags
// ---------------------------------------------------------------------------

#[test]
fn list_table_and_json() {
    let env = TestEnv::new("list");
    let empty = env.hpcc(&["list", "--format", "json"]);
    empty.ok();
    let t = empty.stdout.trim();
    assert!(t == "null" || t == "[]", "empty list in JSON\n{empty}");

    let created_b = env.bundle(&["sleep", "1000"]);
    let running_b = env.bundle(&["sleep", "1000"]);
    let stopped_b = env.bundle(&["true"]);
    let created = env.id("list-created");
    let running = env.id("list-running");
    let stopped = env.id("list-stopped");
    let created_p = env.create(&created_b, &created);
    let running_p = env.create_and_start(&running_b, &running);
    let stopped_p = env.create_and_start(&stopped_b, &stopped);
    env.wait_status(&running, "running");
    env.wait_status(&stopped, "stopped");
    let expect = [
        (&created, "created", created_p.pid, &created_b),
        (&running, "running", running_p.pid, &running_b),
        (&stopped, "stopped", 0, &stopped_b),
    ];

    for flag in ["--format", "-f"] {
        let out = env.hpcc(&["list", flag, "json"]);
        out.ok();
        let list = out.json();
        let items = list
            .as_array()
            .unwrap_or_else(|| panic!("list JSON is not an array\n{out}"));
        assert_eq!(items.len(), 3, "three containers\n{out}");
        for (id, status, pid, bundle) in &expect {
            let item = items
                .iter()
                .find(|i| i["id"] == id.as_str())
                .unwrap_or_else(|| panic!("{id} missing from list\n{out}"));
            assert_eq!(item["status"], *status, "{id}\n{out}");
            assert_eq!(item["pid"], *pid, "{id}\n{out}");
            assert_eq!(item["bundle"], bundle.path(), "{id}\n{out}");
        }
    }

    for args in [&["list"][..], &["list", "--format", "table"][..]] {
        let out = env.hpcc(args);
        out.ok();
        let mut lines = out.stdout.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
            "table header\n{out}"
        );
        let rows: Vec<Vec<&str>> = lines
            .map(|l| l.split_whitespace().collect())
            .filter(|r: &Vec<&str>| !r.is_empty())
            .collect();
        assert_eq!(rows.len(), 3, "three rows\n{out}");
        for (id, status, pid, bundle) in &expect {
            let row = rows
                .iter()
                .find(|r| r[0] == id.as_str())
                .unwrap_or_else(|| panic!("{id} missing from table\n{out}"));
            assert!(
                row.len() >= 6,
                "row has fewer than 6 columns: {row:?}\n{out}"
            );
            assert_eq!(row[1], pid.to_string(), "{id} pid\n{out}");
            assert_eq!(row[2], *status, "{id} status\n{out}");
            assert_eq!(row[3], bundle.path(), "{id} bundle\n{out}");
        }
    }

    env.hpcc(&["delete", &created]).ok();
    env.hpcc(&["delete", "--force", &running]).ok();
    env.hpcc(&["delete", &stopped]).ok();
    env.assert_clean(&created, Some(&created_p), &created_b);
    env.assert_clean(&running, Some(&running_p), &running_b);
    env.assert_clean(&stopped, Some(&stopped_p), &stopped_b);
    let out = env.hpcc(&["list", "-f", "json"]);
    out.ok();
    let t = out.stdout.trim();
    assert!(t == "null" || t == "[]", "list after delete\n{out}");
}

#[test]
fn missing_container_errors() {
    let env = TestEnv::new("missing");
    let id = env.id("nope");
    let one_line = |out: &Output| {
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "errors are one line on stderr\n{out}"
        );
    };
    for args in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str()],
        vec!["kill", id.as_str(), "9"],
        vec!["delete", id.as_str()],
    ] {
        let out = env.hpcc(&args);
        out.fails_with("does not exist");
        one_line(&out);
    }
    env.hpcc(&["delete", "--force", &id]).ok();
    assert_eq!(env.root_entries(), Vec::<String>::new());
}

fn json_log_lines(out: &Output, path: &std::path::Path) -> Vec<Value> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("log file {} not written ({e})\n{out}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}\n{out}"))
        })
        .collect()
}

fn error_entries(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["level"] == "error").collect()
}

#[test]
fn json_log_records_errors() {
    let env = TestEnv::new("json-log");
    let log = env.path("hpcc.log");
    let log_s = log.to_str().expect("utf-8 path");
    let id = env.id("nope");

    let out = env.hpcc(&["--log", log_s, "--log-format", "json", "state", &id]);
    out.fails_with("does not exist");
    let lines = json_log_lines(&out, &log);
    let errors = error_entries(&lines);
    assert!(!errors.is_empty(), "no error entry: {lines:?}\n{out}");
    let first_count = errors.len();
    let e = errors[first_count - 1];
    assert!(
        e["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "msg: {e}"
    );
    assert!(
        e["time"].as_str().is_some_and(|t| !t.is_empty()),
        "time: {e}"
    );

    // `--flag=value` forms, appending to the same file.
    let log_eq = format!("--log={log_s}");
    let out = env.hpcc(&[&log_eq, "--log-format=json", "kill", &id, "9"]);
    out.fails_with("does not exist");
    let lines = json_log_lines(&out, &log);
    let errors = error_entries(&lines);
    assert!(
        errors.len() > first_count,
        "the second error should be appended: {lines:?}\n{out}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e["msg"].is_string() && e["time"].is_string()),
        "every error entry has msg and time: {lines:?}"
    );
}

#[test]
fn root_flag_both_forms() {
    let env = TestEnv::new("root-forms");
    let bundle = env.bundle(&["sleep", "1000"]);
    let alt = env.path("alt-root");
    let alt_s = alt.to_str().expect("utf-8 path");
    let id = env.id("root-forms");
    env.track(&alt, &id);
    let pid_file = env.path("alt.pid");
    let root_eq = format!("--root={alt_s}");

    // --root=DIR with a DIR that does not exist yet.
    env.hpcc_raw(&[
        &root_eq,
        "create",
        "--bundle",
        bundle.path(),
        "--pid-file",
        pid_file.to_str().expect("utf-8 path"),
        &id,
    ])
    .ok();
    let init = env.live(read_pid_file(&pid_file));
    assert!(alt.join(&id).is_dir(), "state folder not under --root=");

    // --root DIR sees it; the default test root does not.
    let out = env.hpcc_raw(&["--root", alt_s, "state", &id]);
    out.ok();
    check_state(&out.json(), &id, "created", &bundle);
    let out = env.hpcc_raw(&[&root_eq, "list", "-f", "json"]);
    out.ok();
    assert!(
        out.json()
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["id"] == id.as_str())),
        "list --root= misses {id}\n{out}"
    );
    env.hpcc(&["state", &id]).fails_with("does not exist");

    env.hpcc_raw(&["--root", alt_s, "start", &id]).ok();
    let out = env.hpcc_raw(&[&root_eq, "state", &id]);
    out.ok();
    assert_eq!(out.json()["status"], "running", "{out}");
    env.hpcc_raw(&[&root_eq, "kill", &id, "KILL"]).ok();
    env.hpcc_raw(&["--root", alt_s, "delete", "--force", &id])
        .ok();
    assert_clean_in(&env, &alt, &id, Some(&init), &bundle);
}

#[test]
fn global_flags_are_accepted() {
    let env = TestEnv::new("global-flags");
    let log = env.path("debug.log");
    let log_s = log.to_str().expect("utf-8 path");
    let log_eq = format!("--log={log_s}");
    let root = env.root_str();
    let root_eq = format!("--root={root}");
    let sets: [&[&str]; 7] = [
        &["--root", root, "--debug", "list"],
        &[&root_eq, "--log-format", "text", "list"],
        &[&root_eq, "--log-format=text", "--log", log_s, "list"],
        &[&root_eq, "--log-format=text", &log_eq, "state", "nope"],
        &["--root", root, "--rootless", "auto", "list"],
        &["--root", root, "--rootless=auto", "list"],
        &["--root", root, "--systemd-cgroup", "list", "-f", "json"],
    ];
    for args in sets {
        let out = env.hpcc_raw(args);
        if args.contains(&"state") {
            out.fails_with("does not exist");
        } else {
            out.ok();
        }
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("does not exist"),
        "the text log should record the error, got {text:?}"
    );
    // With --debug and JSON logging every line in the log is JSON.
    let json_log = env.path("debug.json");
    let json_log_s = json_log.to_str().expect("utf-8 path");
    let out = env.hpcc_raw(&[
        "--root",
        root,
        "--debug",
        "--log",
        json_log_s,
        "--log-format",
        "json",
        "list",
    ]);
    out.ok();
    if json_log.exists() {
        json_log_lines(&out, &json_log);
    }
}

#[test]
fn host_wide_sysctls_are_refused() {
    let env = TestEnv::new("sysctl");
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["linux"]["sysctl"] = serde_json::json!({"kernel.core_pattern": "|/tmp/x"});
    });
    let id = env.id("sysctl");
    env.hpcc(&["create", "--bundle", bundle.path(), &id])
        .fails_with("not namespaced");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn namespaces_given_by_path_are_joined() {
    // B joins A's uts namespace (and, rootless, A's user namespace, which
    // owns it): B sees A's hostname, not its own config's.
    let env = TestEnv::new("nspath");
    let a = env.bundle(&["sleep", "1000"]);
    let a_id = env.id("nsa");
    let init = env.create(&a, &a_id);
    let mut b = env.bundle(&sh("hostname; readlink /proc/self/ns/uts"));
    b.edit(|c| {
        c["hostname"] = serde_json::Value::Null;
        let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        for n in ns.iter_mut() {
            let t = n["type"].as_str().unwrap_or("").to_string();
            if t == "uts" || t == "user" {
                n["path"] = serde_json::json!(format!("/proc/{}/ns/{t}", init.pid));
            }
        }
        c["linux"]
            .as_object_mut()
            .expect("linux")
            .remove("uidMappings");
        c["linux"]
            .as_object_mut()
            .expect("linux")
            .remove("gidMappings");
    });
    let b_id = env.id("nsb");
    let out = env.hpcc(&["run", "--bundle", b.path(), &b_id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(a.hostname()), "{out}");
    let a_uts = std::fs::read_link(format!("/proc/{}/ns/uts", init.pid)).expect("A's uts ns");
    assert_eq!(
        lines.get(1).copied(),
        Some(a_uts.to_string_lossy().as_ref()),
        "{out}"
    );
    env.hpcc(&["delete", "--force", &a_id]).ok();
    env.assert_clean(&a_id, Some(&init), &a);
    env.assert_clean(&b_id, None, &b);
}

#[test]
fn multi_range_id_maps_go_through_newuidmap() {
    // Root may write any map; a user needs newuidmap/newgidmap and
    // /etc/subuid, /etc/subgid ranges (useradd adds them).
    let env = TestEnv::new("idmaps");
    let Some((sub_uid, sub_gid)) = subordinate_ranges() else {
        assert!(
            is_root(),
            "the test user has no /etc/subuid or /etc/subgid range"
        );
        return;
    };
    let mut bundle = env.bundle(&sh("cat /proc/self/uid_map /proc/self/gid_map"));
    bundle.edit(|c| {
        if !c["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .any(|n| n["type"] == "user")
        {
            c["linux"]["namespaces"]
                .as_array_mut()
                .expect("ns")
                .push(serde_json::json!({"type": "user"}));
        }
        c["linux"]["uidMappings"] = serde_json::json!([
            {"containerID": 0, "hostID": euid(), "size": 1},
            {"containerID": 1, "hostID": sub_uid, "size": 1000}
        ]);
        c["linux"]["gidMappings"] = serde_json::json!([
            {"containerID": 0, "hostID": egid(), "size": 1},
            {"containerID": 1, "hostID": sub_gid, "size": 1000}
        ]);
        // A mapped but unprivileged-host-owned rootfs: keep the mounts
        // that need no host privilege.
        if let Some(m) = c["mounts"].as_array_mut() {
            for x in m.iter_mut().filter(|x| x["destination"] == "/sys") {
                *x = serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            }
            m.retain(|x| x["destination"] != "/sys/fs/cgroup");
            for x in m.iter_mut() {
                if let Some(o) = x["options"].as_array_mut() {
                    o.retain(|v| !v.as_str().unwrap_or("").starts_with("gid="));
                }
            }
        }
    });
    let id = env.id("idmaps");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 4, "two uid and two gid ranges\n{out}");
    assert_eq!(
        lines[1],
        vec!["1".to_string(), sub_uid.to_string(), "1000".to_string()],
        "{out}"
    );
    assert_eq!(
        lines[3],
        vec!["1".to_string(), sub_gid.to_string(), "1000".to_string()],
        "{out}"
    );
    env.assert_clean(&id, None, &bundle);
}

/// This user's first subordinate uid and gid (as root: any range works).
fn subordinate_ranges() -> Option<(u32, u32)> {
    if is_root() {
        return Some((100000, 100000));
    }
    let name = std::env::var("USER").ok().or_else(|| {
        let out = std::process::Command::new("id").arg("-un").output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })?;
    let first = |file: &str| -> Option<u32> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && (f[0] == name || f[0] == euid().to_string()))
                .then(|| f[1].parse().ok())?
        })
    };
    Some((first("/etc/subuid")?, first("/etc/subgid")?))
}

#[test]
fn exec_joins_the_running_container() {
    let env = TestEnv::new("exec");
    let bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("exec");
    let init = env.create_and_start(&bundle, &id);
    // Same namespaces as the init: its hostname, its pid namespace (the
    // init is PID 1 there), its user mapping.
    let out = env.hpcc(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/mnt",
    ]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(bundle.hostname()), "{out}");
    assert_eq!(lines.get(1).map(|l| l.trim()), Some("sleep 1000"), "{out}");
    let init_mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", init.pid)).expect("init mnt ns");
    assert_eq!(
        lines.get(2).copied(),
        Some(init_mnt.to_string_lossy().as_ref()),
        "{out}"
    );
    // Exit codes, env and cwd come through; a missing program is named.
    assert_eq!(env.hpcc(&["exec", &id, "sh", "-c", "exit 5"]).code(), 5);
    let out = env.hpcc(&[
        "exec",
        "--env",
        "X=1",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $X; pwd",
    ]);
    out.ok();
    assert_eq!(out.stdout, "1\n/tmp\n", "{out}");
    env.hpcc(&["exec", &id, "no-such-program"])
        .fails_with("no-such-program");
    // --process with a runtime-spec Process document.
    let proc_file = env.path("process.json");
    fs::write(&proc_file, r#"{"args": ["sh", "-c", "echo from-process-file"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#).expect("process.json");
    let out = env.hpcc(&["exec", "--process", proc_file.to_str().expect("path"), &id]);
    out.ok();
    assert_eq!(out.stdout, "from-process-file\n", "{out}");
    // Detached, with a pid file; ps lists it beside the init.
    let pid_file = env.path("exec.pid");
    env.hpcc(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().expect("path"),
        &id,
        "sleep",
        "1000",
    ])
    .ok();
    let exec_pid = read_pid_file(&pid_file);
    let exec_proc = env.live(exec_pid);
    let ps = env.hpcc(&["ps", "--format", "json", &id]);
    ps.ok();
    let pids: Vec<u32> = serde_json::from_str(&ps.stdout).expect("ps json");
    assert!(
        pids.contains(&init.pid) && pids.contains(&exec_pid),
        "{pids:?} {}",
        ps.stdout
    );
    env.hpcc(&["delete", "--force", &id]).ok();
    exec_proc.assert_gone("the exec'd process");
    env.hpcc(&["exec", &id, "true"])
        .fails_with("does not exist");
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn hooks_run_at_their_points_with_the_state() {
    let env = TestEnv::new("hooks");
    let dir = env.path("hookdir");
    fs::create_dir_all(&dir).expect("hook dir");
    let d = dir.to_str().expect("path").to_string();
    let host_sh =
        |script: String| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    let mut bundle = env.bundle(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({
            "createRuntime": [host_sh(format!("cat > {d}/createRuntime.json"))],
            "createContainer": [host_sh(format!("readlink /proc/self/ns/uts > {d}/createContainer.uts"))],
            "startContainer": [host_sh("hostname > /hookdir/start.txt".to_string())],
            "poststart": [host_sh(format!("cat > {d}/poststart.json"))],
            "poststop": [host_sh(format!("cat > {d}/poststop.json"))]
        });
        c["mounts"].as_array_mut().expect("mounts").push(serde_json::json!(
            {"destination": "/hookdir", "type": "bind", "source": d, "options": ["rbind"]}));
    });
    let id = env.id("hooks");
    let init = env.create(&bundle, &id);
    let created: Value = serde_json::from_str(
        &fs::read_to_string(dir.join("createRuntime.json")).expect("createRuntime ran"),
    )
    .expect("state json");
    assert_eq!(created["status"], "creating");
    assert_eq!(created["id"], id.as_str());
    assert_eq!(created["pid"], init.pid);
    let uts = fs::read_link(format!("/proc/{}/ns/uts", init.pid)).expect("uts");
    assert_eq!(
        fs::read_to_string(dir.join("createContainer.uts"))
            .expect("createContainer ran")
            .trim(),
        uts.to_string_lossy(),
        "createContainer runs in the container's namespaces"
    );
    assert!(
        !dir.join("start.txt").exists(),
        "startContainer must wait for start"
    );
    env.hpcc(&["start", &id]).ok();
    assert_eq!(
        fs::read_to_string(dir.join("start.txt"))
            .expect("startContainer ran")
            .trim(),
        bundle.hostname()
    );
    let started: Value = serde_json::from_str(
        &fs::read_to_string(dir.join("poststart.json")).expect("poststart ran"),
    )
    .expect("json");
    assert_eq!(started["status"], "running");
    env.hpcc(&["kill", &id, "KILL"]).ok();
    env.wait_status(&id, "stopped");
    env.hpcc(&["delete", &id]).ok();
    let stopped: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("poststop.json")).expect("poststop ran"))
            .expect("json");
    assert_eq!(stopped["status"], "stopped");
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn a_failing_or_hanging_create_hook_fails_create_and_leaves_nothing() {
    let env = TestEnv::new("hookfail");
    for (hook, needle) in [
        (
            serde_json::json!({"path": "/bin/false"}),
            "createRuntime hook /bin/false",
        ),
        (
            serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}),
            "timed out after 1s",
        ),
    ] {
        let mut bundle = env.bundle(&["sleep", "1000"]);
        bundle.edit(|c| c["hooks"] = serde_json::json!({"createRuntime": [hook]}));
        let id = env.id("hookfail");
        env.hpcc(&["create", "--bundle", bundle.path(), &id])
            .fails_with(needle);
        env.assert_clean(&id, None, &bundle);
    }
}

#[test]
fn cgroup_limits_apply_as_root_and_fail_clearly_without_a_writable_cgroup() {
    let env = TestEnv::new("cgroups");
    let mut bundle = env.bundle(&["sleep", "1000"]);
    let id = env.id("cgroups");
    bundle.edit(|c| {
        c["linux"]["resources"] = serde_json::json!({
            "memory": {"limit": 67108864},
            "pids": {"limit": 32}
        });
        c["linux"]["cgroupsPath"] = serde_json::json!(format!("/hpcc-test/{id}"));
    });
    if !is_root() {
        // No delegated cgroup here for an unprivileged user: limits asked
        // for must fail with a message that says why, and leave nothing.
        env.hpcc(&["create", "--bundle", bundle.path(), &id])
            .fails_with("writable cgroup");
        env.assert_clean(&id, None, &bundle);
        return;
    }
    let init = env.create(&bundle, &id);
    let cgroup_of = |controller: &str| -> Option<String> {
        fs::read_to_string(format!("/proc/{}/cgroup", init.pid))
            .ok()?
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.splitn(3, ':').collect();
                (f.len() == 3 && f[1].split(',').any(|c| c == controller)).then(|| f[2].to_string())
            })
    };
    let expected = format!("/hpcc-test/{id}");
    // On a v1 or hybrid host each controller has its own hierarchy; on a
    // unified host the one cgroup2 path (controller field empty) holds all.
    let (mem_file, pids_file) = match cgroup_of("memory") {
        Some(p) => {
            assert_eq!(p, expected, "the init is in the configured memory cgroup");
            assert_eq!(cgroup_of("pids").as_deref(), Some(expected.as_str()));
            (
                format!("/sys/fs/cgroup/memory{expected}/memory.limit_in_bytes"),
                format!("/sys/fs/cgroup/pids{expected}/pids.max"),
            )
        }
        None => (
            format!("/sys/fs/cgroup{expected}/memory.max"),
            format!("/sys/fs/cgroup{expected}/pids.max"),
        ),
    };
    assert_eq!(
        fs::read_to_string(&mem_file).expect("memory limit").trim(),
        "67108864"
    );
    assert_eq!(
        fs::read_to_string(&pids_file).expect("pids limit").trim(),
        "32"
    );
    // An exec'd process joins the container's cgroup too.
    let exec_pid_file = env.path("exec-cg.pid");
    env.hpcc(&[
        "exec",
        "-d",
        "--pid-file",
        exec_pid_file.to_str().expect("path"),
        &id,
        "sleep",
        "100",
    ])
    .ok();
    let exec_pid = read_pid_file(&exec_pid_file);
    let exec_proc = env.live(exec_pid);
    let cgroup_line = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .expect("cgroup")
            .lines()
            .find(|l| l.contains(":pids:") || l.starts_with("0::"))
            .map(str::to_string)
    };
    assert_eq!(
        cgroup_line(exec_pid),
        cgroup_line(init.pid),
        "the exec'd process is in the container's cgroup"
    );
    env.hpcc(&["delete", "--force", &id]).ok();
    exec_proc.assert_gone("the exec'd process");
    assert!(
        !std::path::Path::new(&pids_file).exists(),
        "delete removes the cgroup"
    );
    env.assert_clean(&id, Some(&init), &bundle);
}

/// The scheduler state of a process ('T' when stopped or frozen by the v1
/// freezer shows as 'D'/'S'; both are read from /proc).
fn proc_state(pid: u32) -> char {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        })
        .unwrap_or('?')
}

#[test]
fn pause_resume_and_update() {
    let env = TestEnv::new("pause");
    // A counter the test can watch: it stops advancing while paused.
    let mut bundle = env.bundle(&sh(
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done",
    ));
    if is_root() {
        let id_for_path = env.id("pause-cg");
        bundle.edit(|c| {
            c["linux"]["resources"] = serde_json::json!({"pids": {"limit": 64}});
            c["linux"]["cgroupsPath"] = serde_json::json!(format!("/hpcc-test/{id_for_path}"));
        });
    }
    bundle.edit(|c| {
        c["root"]["readonly"] = serde_json::json!(false);
    });
    let id = env.id("pause");
    let init = env.create_and_start(&bundle, &id);
    let count = || fs::read_to_string(bundle.rootfs().join("tmp/count")).unwrap_or_default();
    sleep(Duration::from_millis(300));
    env.hpcc(&["pause", &id]).ok();
    assert_eq!(env.state(&id)["status"], "paused");
    sleep(Duration::from_millis(200));
    let frozen = count();
    sleep(Duration::from_millis(400));
    assert_eq!(
        count(),
        frozen,
        "the container kept running while paused (state {})",
        proc_state(init.pid)
    );
    env.hpcc(&["pause", &id]).fails_with("already paused");
    env.hpcc(&["exec", &id, "true"]).fails_with("paused");
    env.hpcc(&["resume", &id]).ok();
    assert_eq!(env.state(&id)["status"], "running");
    let deadline = Instant::now() + WAIT_LIMIT;
    while count() == frozen && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    assert_ne!(count(), frozen, "the container did not resume");
    if is_root() {
        let res = env.path("res.json");
        fs::write(&res, r#"{"pids": {"limit": 99}}"#).expect("resources");
        env.hpcc(&["update", "--resources", res.to_str().expect("path"), &id])
            .ok();
        let cg = fs::read_to_string(format!("/proc/{}/cgroup", init.pid)).expect("cgroup");
        let pids_path = cg
            .lines()
            .find_map(|l| {
                l.strip_prefix(|c: char| c.is_ascii_digit()).and_then(|r| {
                    r.trim_start_matches(|c: char| c.is_ascii_digit())
                        .strip_prefix(":pids:")
                })
            })
            .map(|p| format!("/sys/fs/cgroup/pids{p}/pids.max"));
        if let Some(p) = pids_path {
            assert_eq!(fs::read_to_string(p).expect("pids.max").trim(), "99");
        }
    } else {
        env.hpcc(&["update", "--resources", "-", &id]).fails();
    }
    // A paused container can still be force-deleted.
    env.hpcc(&["pause", &id]).ok();
    env.hpcc(&["delete", "--force", &id]).ok();
    env.assert_clean(&id, Some(&init), &bundle);
}

#[test]
fn seccomp_profiles_are_enforced() {
    let env = TestEnv::new("seccomp");
    for nnp in [true, false] {
        if !nnp && !is_root() {
            // Without no_new_privs a filter needs CAP_SYS_ADMIN, which a
            // rootless container also has in its user namespace; covered
            // as root only to keep the two halves of the suite alike.
            continue;
        }
        let mut bundle = env.bundle(&sh(
            "echo before; mkdir /tmp/denied && echo made; echo after",
        ));
        bundle.edit(|c| {
            c["process"]["noNewPrivileges"] = serde_json::json!(nnp);
            c["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["not_a_syscall_anywhere"], "action": "SCMP_ACT_KILL"}
                ]
            });
        });
        let id = env.id("seccomp");
        let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
        out.ok();
        assert_eq!(
            out.stdout, "before\nafter\n",
            "mkdir must be refused (nnp={nnp})\n{out}"
        );
        assert!(out.stderr.contains("Operation not permitted"), "{out}");
        env.assert_clean(&id, None, &bundle);
    }
    // NOTIFY cannot be honoured: refused before anything runs.
    let mut bundle = env.bundle(&["true"]);
    bundle
        .edit(|c| c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    let id = env.id("seccomp-notify");
    env.hpcc(&["create", "--bundle", bundle.path(), &id])
        .fails_with("NOTIFY");
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn security_labels_the_host_cannot_enforce_are_refused() {
    let env = TestEnv::new("labels");
    let apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    for (field, needle, host_has_it) in [
        ("apparmorProfile", "AppArmor is not enabled", apparmor),
        ("selinuxLabel", "SELinux is not enabled", selinux),
    ] {
        if host_has_it {
            eprintln!("labels: this host enforces {field}; the refusal path is not reachable here");
            continue;
        }
        let mut bundle = env.bundle(&["true"]);
        bundle.edit(|c| c["process"][field] = serde_json::json!("hpcc-test-label"));
        let id = env.id("labels");
        env.hpcc(&["create", "--bundle", bundle.path(), &id])
            .fails_with(needle);
        env.assert_clean(&id, None, &bundle);
    }
}

/// Receives one fd sent with SCM_RIGHTS on `sock` (what conmon and
/// go-runc do with --console-socket).
fn recv_one_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = [0u8; 64];
    // SAFETY: msghdr is plain data; the pointers below outlive recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len() as _;
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR/DATA walk it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(
            !cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS,
            "no SCM_RIGHTS message"
        );
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32);
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn console_socket_receives_the_pty_master() {
    let env = TestEnv::new("console");
    let mut bundle = env.bundle(&sh("tty; echo out-through-the-pty"));
    bundle.edit(|c| c["process"]["terminal"] = serde_json::json!(true));
    let sock_path = env.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).expect("bind console socket");
    let id = env.id("console");
    let accept = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        recv_one_fd(&conn)
    });
    env.hpcc(&[
        "create",
        "--bundle",
        bundle.path(),
        "--console-socket",
        sock_path.to_str().expect("path"),
        &id,
    ])
    .ok();
    let master = accept.join().expect("console thread");
    env.hpcc(&["start", &id]).ok();
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master);
    // Read until the slave side closes (EIO) or the text has arrived.
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline
        && !String::from_utf8_lossy(&out).contains("out-through-the-pty")
    {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("/dev/pts/0"),
        "the program's stdin is the pty: {text}"
    );
    assert!(text.contains("out-through-the-pty"), "{text}");
    env.wait_status(&id, "stopped");
    env.hpcc(&["delete", &id]).ok();
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn process_attributes_are_observed_inside() {
    let env = TestEnv::new("attrs");
    let script = "grep CapEff /proc/self/status | tr -d '\\t'; ulimit -n; cat /proc/self/oom_score_adj; umask; \
                  id -u; id -G; stat -c '%F %t:%T' /dev/fuse; \
                  m=none; for f in /proc/timer_list /proc/keys /proc/sched_debug /proc/kcore; do \
                  if [ -e $f ]; then m=$(wc -c < $f); break; fi; done; echo masked:$m; \
                  (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null || echo ro-sys";
    let mut bundle = env.bundle(&sh(script));
    let root = is_root();
    bundle.edit(|c| {
        let p = &mut c["process"];
        let caps = serde_json::json!(["CAP_CHOWN", "CAP_KILL"]);
        p["capabilities"] = serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
        p["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}]);
        p["oomScoreAdj"] = serde_json::json!(500);
        p["user"]["umask"] = serde_json::json!(0o027);
        if root {
            p["user"]["additionalGids"] = serde_json::json!([10, 20]);
        }
        c["linux"]["devices"] = serde_json::json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]);
    });
    let id = env.id("attrs");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    // CAP_CHOWN (bit 0) and CAP_KILL (bit 5) only.
    assert_eq!(
        lines.first().copied(),
        Some("CapEff:0000000000000021"),
        "{out}"
    );
    assert_eq!(lines.get(1).copied(), Some("512"), "{out}");
    assert_eq!(lines.get(2).copied(), Some("500"), "{out}");
    assert_eq!(lines.get(3).copied(), Some("0027"), "{out}");
    assert_eq!(lines.get(4).copied(), Some("0"), "{out}");
    if root {
        assert_eq!(lines.get(5).copied(), Some("0 10 20"), "{out}");
    }
    assert_eq!(
        lines.get(6).copied(),
        Some("character special file a:e5"),
        "{out}"
    );
    let masked = lines.get(7).copied().unwrap_or("");
    assert!(
        masked == "masked:0" || masked == "masked:none",
        "masked /proc files read empty\n{out}"
    );
    assert_eq!(
        lines.get(8).copied(),
        Some("ro-sys"),
        "/proc/sys is read-only\n{out}"
    );
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn socket_activation_fds_reach_the_container() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new("listenfds");
    let bundle = env.bundle(&sh(
        "echo $LISTEN_FDS $LISTEN_PID; readlink /proc/self/fd/3",
    ));
    let marker = env.path("activated");
    fs::write(&marker, "").expect("marker");
    let file = fs::File::open(&marker).expect("open marker");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    let id = env.id("listenfds");
    let mut cmd = std::process::Command::new(runtime_tests::hpcc_bin());
    cmd.args([
        "--root",
        env.root_str(),
        "run",
        "--bundle",
        bundle.path(),
        &id,
    ])
    .env("LISTEN_FDS", "1")
    .stdin(std::process::Stdio::null());
    // SAFETY: dup2/close between fork and exec, on fds this test owns.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it explicitly.
            if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in 4..1024 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("hpcc run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("1 1"), "{stdout}");
    assert!(
        lines.get(1).is_some_and(|l| l.ends_with("activated")),
        "fd 3 reached the container: {stdout}"
    );
    env.assert_clean(&id, None, &bundle);
}

#[test]
fn sysctls_rlimits_and_recursive_read_only_binds() {
    let env = TestEnv::new("more");
    // A namespaced sysctl is written inside the container.
    let mut bundle = env.bundle(&sh(
        "cat /proc/sys/kernel/shmmni; touch /data/sub/x 2>/dev/null || echo ro-sub",
    ));
    let data = env.path("data");
    fs::create_dir_all(data.join("sub")).expect("data");
    // A bind made read-only with "rro" (mount_setattr, the whole tree).
    bundle.edit(|c| {
        c["linux"]["sysctl"] = serde_json::json!({"kernel.shmmni": "2048"});
        c["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(serde_json::json!(
            {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rro"]}));
    });
    let id = env.id("more");
    let out = env.hpcc(&["run", "--bundle", bundle.path(), &id]);
    out.ok();
    assert_eq!(out.stdout, "2048\nro-sub\n", "{out}");
    env.assert_clean(&id, None, &bundle);
    // An rlimit above the hard limit fails with a message naming it.
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1u64 << 40, "soft": 1u64 << 40}]);
    });
    let id = env.id("rlimit");
    env.hpcc(&["create", "--bundle", bundle.path(), &id])
        .fails_with("RLIMIT_NOFILE");
    env.assert_clean(&id, None, &bundle);
}
