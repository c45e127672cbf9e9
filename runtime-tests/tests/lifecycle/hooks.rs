//! OCI hooks: each runs at its point with the state on stdin, and a
//! failing or hanging create hook fails `create` and leaves nothing.

use std::fs;

use runtime_tests::TestEnv;
use serde_json::Value;

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
    // After the runtime environment exists: "created" (runtime-spec).
    assert_eq!(created["status"], "created");
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

/// prestart sees "created" (it runs once the runtime environment exists),
/// and poststart the state start made, "running" with the init's pid,
/// even when the program has exited by the time the hook runs.
#[test]
fn prestart_and_poststart_of_a_short_program_see_the_states_of_their_points() {
    let env = TestEnv::new("hookstates");
    let dir = env.path("hookdir");
    fs::create_dir_all(&dir).expect("hook dir");
    let d = dir.to_str().expect("path").to_string();
    let host_sh =
        |script: String| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({
            "prestart": [host_sh(format!("cat > {d}/prestart.json"))],
            "poststart": [host_sh(format!("cat > {d}/poststart.json"))]
        });
    });
    let id = env.id("hookstates");
    let init = env.create(&bundle, &id);
    env.hpcc(&["start", &id]).ok();
    let read = |name: &str| -> Value {
        serde_json::from_str(&fs::read_to_string(dir.join(name)).expect(name)).expect("json")
    };
    let pre = read("prestart.json");
    assert_eq!(pre["status"], "created", "{pre}");
    assert_eq!(pre["pid"], init.pid, "{pre}");
    let post = read("poststart.json");
    assert_eq!(post["status"], "running", "{post}");
    assert_eq!(post["pid"], init.pid, "{post}");
    env.wait_status(&id, "stopped");
    env.hpcc(&["delete", &id]).ok();
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
