//! Hostile and broken bundles: malformed config.json, spec versions,
//! unknown properties, missing args, the root path, bad ids, overlong
//! values and overflowing id maps, each refused in one line or accepted.

use std::fs;

use runtime_tests::{egid, euid, path_str as s, sh, TestEnv};
use serde_json::json;

use crate::common::{create_and_run_refuse, no_crash, run_ok};

#[test]
fn malformed_config_json_is_refused_with_one_line() {
    let env = TestEnv::new("malformed");
    let bundle = env.bundle(&["true"]);
    let good = fs::read_to_string(bundle.config_path()).expect("config");
    let truncated = &good[..good.len() / 2];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("", vec!["config.json", "invalid JSON"]),
        ("{ not json", vec!["config.json", "invalid JSON"]),
        (truncated, vec!["config.json", "invalid JSON"]),
        ("[1, 2]", vec!["config.json", "top level"]),
        ("\"1.0.0\"", vec!["config.json", "top level"]),
        (
            "{\"ociVersion\": \"1.0.0\", \"process\": 7}",
            vec!["config.json", "process"],
        ),
        (
            "{\"ociVersion\": \"1.0.0\", \"process\": {\"args\": \"sh\"}}",
            vec!["config.json", "args"],
        ),
        ("\u{feff}{}", vec!["config.json"]),
        ("{\"ociVersion\": 1.0}", vec!["config.json", "ociVersion"]),
    ];
    for (text, needles) in cases {
        fs::write(bundle.config_path(), text).expect("write config");
        create_and_run_refuse(&env, &bundle, &needles);
    }
    fs::remove_file(bundle.config_path()).expect("rm config");
    create_and_run_refuse(&env, &bundle, &["config.json"]);
}

#[test]
fn only_runtime_spec_1x_versions_are_accepted() {
    let env = TestEnv::new("versions");
    let mut bundle = env.bundle(&["echo", "accepted"]);
    for bad in [
        "0.1.0", "0.9.0", "2.0.0", "2.1.0", "10.0.0", "", "1", "v1.0.0",
    ] {
        bundle.edit(|c| c["ociVersion"] = json!(bad));
        create_and_run_refuse(&env, &bundle, &["ociVersion", bad]);
    }
    bundle.edit(|c| {
        c.as_object_mut().expect("object").remove("ociVersion");
    });
    create_and_run_refuse(&env, &bundle, &["ociVersion"]);
    // A 2.x config with a field of a different shape is refused for its
    // version, not for the field.
    bundle.edit(|c| {
        c["ociVersion"] = json!("2.0.0");
        c["process"]["user"] = json!("root");
    });
    create_and_run_refuse(&env, &bundle, &["ociVersion", "2.0.0"]);
    bundle.edit(|c| c["process"]["user"] = json!({"uid": 0, "gid": 0}));
    for good in [
        "1.0.0",
        "1.0.2",
        "1.0.2-dev",
        "1.1.0",
        "1.2.0",
        "1.2.1",
        "1.3.0",
        "1.99.7",
    ] {
        bundle.edit(|c| c["ociVersion"] = json!(good));
        assert_eq!(run_ok(&env, &bundle), "accepted\n", "ociVersion {good}");
    }
}

#[test]
fn unknown_properties_are_ignored() {
    let env = TestEnv::new("unknown");
    let mut bundle = env.bundle(&sh("hostname; echo $KNOWN"));
    bundle.edit(|c| {
        c["process"]["env"]
            .as_array_mut()
            .expect("env")
            .push(json!("KNOWN=still-applied"));
        c["org.example.unknown"] = json!({"nested": [1, 2, {"x": null}]});
        c["futureTopLevel"] = json!(42);
        c["process"]["futureProcessField"] = json!("x");
        c["process"]["user"]["futureUserField"] = json!(true);
        c["root"]["futureRootField"] = json!([]);
        c["linux"]["futureLinuxField"] = json!({"a": 1});
        c["linux"]["namespaces"][0]["futureNsField"] = json!(1);
        c["mounts"][0]["futureMountField"] = json!("y");
    });
    // The known fields around the unknown ones still apply.
    assert_eq!(
        run_ok(&env, &bundle),
        format!("{}\nstill-applied\n", bundle.hostname())
    );
}

#[test]
fn missing_or_empty_process_args_are_refused() {
    let env = TestEnv::new("noargs");
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        c["process"]
            .as_object_mut()
            .expect("process")
            .remove("args");
    });
    create_and_run_refuse(&env, &bundle, &["process.args"]);
    for args in [json!([]), json!([""])] {
        bundle.edit(|c| c["process"]["args"] = args.clone());
        create_and_run_refuse(&env, &bundle, &["process.args"]);
    }
    bundle.edit(|c| {
        c.as_object_mut().expect("object").remove("process");
    });
    create_and_run_refuse(&env, &bundle, &["process"]);
}

#[test]
fn root_path_is_relative_to_the_bundle_and_must_exist() {
    let env = TestEnv::new("rootpath");
    let mut bundle = env.bundle(&["hostname"]);
    // Move the rootfs one level down and name it relative to the bundle;
    // hpcc runs from the test folder, not the bundle, so only a path taken
    // relative to the bundle finds it.
    fs::create_dir(bundle.dir.join("img")).expect("mkdir img");
    fs::rename(bundle.rootfs(), bundle.dir.join("img/rootfs")).expect("mv rootfs");
    for rel in ["img/rootfs", "./img/../img/rootfs"] {
        bundle.edit(|c| c["root"]["path"] = json!(rel));
        assert!(!env.dir.join(rel).exists());
        assert_eq!(run_ok(&env, &bundle), format!("{}\n", bundle.hostname()));
    }
    // Absolute works too.
    let abs = bundle.dir.join("img/rootfs");
    bundle.edit(|c| c["root"]["path"] = json!(s(&abs)));
    assert_eq!(run_ok(&env, &bundle), format!("{}\n", bundle.hostname()));
    // Missing, a file, or absent altogether.
    bundle.edit(|c| c["root"]["path"] = json!("no-such-rootfs"));
    create_and_run_refuse(&env, &bundle, &["root.path", "no-such-rootfs"]);
    fs::write(bundle.dir.join("afile"), "x").expect("afile");
    bundle.edit(|c| c["root"]["path"] = json!("afile"));
    create_and_run_refuse(&env, &bundle, &["root.path", "not a directory"]);
    bundle.edit(|c| {
        c.as_object_mut().expect("object").remove("root");
    });
    create_and_run_refuse(&env, &bundle, &["root.path"]);
}

#[test]
fn ids_with_slashes_or_dots_are_refused() {
    let env = TestEnv::new("badids");
    let bundle = env.bundle(&["true"]);
    let marker = format!("escape-{}", std::process::id());
    let up = format!("../{marker}");
    let nested = format!("x/../../{marker}");
    for bad in [
        "a/b",
        "/abs",
        ".",
        "..",
        up.as_str(),
        nested.as_str(),
        "a\nb",
        "",
    ] {
        for verb in ["create", "run"] {
            let out = env.hpcc(&[verb, "--bundle", bundle.path(), bad]);
            no_crash(&out);
            out.fails_with("container id");
            assert_eq!(env.root_entries(), Vec::<String>::new(), "{out}");
        }
        no_crash(&env.hpcc(&["delete", "--force", bad]));
        no_crash(&env.hpcc(&["state", bad]));
    }
    assert!(
        !env.dir.join(&marker).exists() && !env.dir.join("a").exists(),
        "an id escaped the state root"
    );
}

#[test]
fn overlong_hostname_and_args() {
    let env = TestEnv::new("overlong");
    let mut bundle = env.bundle(&["hostname"]);
    let ok = "h".repeat(64);
    bundle.edit(|c| c["hostname"] = json!(ok));
    assert_eq!(
        run_ok(&env, &bundle),
        format!("{ok}\n"),
        "64 bytes is the limit"
    );
    bundle.edit(|c| c["hostname"] = json!("h".repeat(65)));
    create_and_run_refuse(&env, &bundle, &["hostname"]);
    bundle.edit(|c| c["hostname"] = json!("h".repeat(1 << 20)));
    create_and_run_refuse(&env, &bundle, &["hostname"]);
    // One argument of 100 KiB fits (MAX_ARG_STRLEN is 128 KiB) and arrives
    // whole; one of 1 MiB cannot be passed to execve and must say so.
    bundle.edit(|c| c["hostname"] = json!("hpcc-test"));
    let big = "a".repeat(100 << 10);
    bundle.set_args(&["sh", "-c", "echo ${#1}", "sh", &big]);
    assert_eq!(run_ok(&env, &bundle), format!("{}\n", 100 << 10));
    let huge = "a".repeat(1 << 20);
    bundle.set_args(&["sh", "-c", "echo ${#1}", "sh", &huge]);
    for verb in ["create", "run"] {
        let id = env.id("hugearg");
        let out = env.hpcc(&[verb, "--bundle", bundle.path(), &id]);
        no_crash(&out);
        let out = if verb == "create" && out.success() {
            // Allowed: the failure may surface at start, as with a missing program.
            let start = env.hpcc(&["start", &id]);
            no_crash(&start);
            env.hpcc(&["delete", "--force", &id]).ok();
            start
        } else {
            out
        };
        out.fails_with("process.args");
        assert!(
            out.stderr.trim().lines().count() == 1 && out.stderr.len() < 4096,
            "the error is one short line, not the argument\n{}",
            &out.stderr[..out.stderr.len().min(4096)]
        );
        env.assert_clean(&id, None, &bundle);
    }
}

#[test]
fn overflowing_id_maps_are_refused() {
    let env = TestEnv::new("idoverflow");
    let mut bundle = env.bundle(&["true"]);
    bundle.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().expect("ns");
        if !ns.iter().any(|n| n["type"] == "user") {
            ns.push(json!({"type": "user"}));
        }
    });
    let good_u = json!([{"containerID": 0, "hostID": euid(), "size": 1}]);
    let good_g = json!([{"containerID": 0, "hostID": egid(), "size": 1}]);
    let max = u64::from(u32::MAX);
    let bad_maps = [
        json!([{"containerID": max, "hostID": euid(), "size": 2}]),
        json!([{"containerID": 1, "hostID": euid(), "size": max}]),
        json!([{"containerID": 0, "hostID": max, "size": 2}]),
        json!([{"containerID": 0, "hostID": euid(), "size": 0}]),
    ];
    for (field, key) in [
        ("linux.uidMappings", "uidMappings"),
        ("linux.gidMappings", "gidMappings"),
    ] {
        for bad in &bad_maps {
            bundle.edit(|c| {
                c["linux"]["uidMappings"] = good_u.clone();
                c["linux"]["gidMappings"] = good_g.clone();
                c["linux"][key] = bad.clone();
            });
            create_and_run_refuse(&env, &bundle, &[field]);
        }
        // Values that do not fit in 32 bits at all are a type error naming
        // the field.
        bundle.edit(|c| {
            c["linux"]["uidMappings"] = good_u.clone();
            c["linux"]["gidMappings"] = good_g.clone();
            c["linux"][key] = json!([{"containerID": 1u64 << 32, "hostID": 0, "size": 1}]);
        });
        create_and_run_refuse(&env, &bundle, &["containerID"]);
    }
}
