//! The state verbs around a container: `delete` with and without
//! `--force`, duplicate and invalid ids, and `list` as table and JSON.

use runtime_tests::TestEnv;

use crate::common::check_state;

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
