//! Errors, logging and global flags: one-line errors for a missing
//! container, `--log` with `--log-format json`, both forms of `--root`,
//! and the other global flags runc callers pass.

use std::fs;

use runtime_tests::{assert_clean_in, read_pid_file, Output, TestEnv};
use serde_json::Value;

use crate::common::check_state;

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
