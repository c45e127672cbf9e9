//! Crash safety: hpcc SIGKILLed at random points of create, start and
//! delete, or mid-create while a hook runs, is recoverable with
//! `delete --force`, which leaves nothing behind.

use std::fs;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{path_str as s, processes_with_arg, Bundle, ProcRef, TestEnv, WAIT_LIMIT};
use serde_json::json;

use crate::common::{no_crash, push_mount, wait_bounded};

/// Spawns hpcc and SIGKILLs it after `delay`.
fn kill_after(env: &TestEnv, args: &[&str], delay: Duration) {
    let mut cmd = Command::new(&env.bin);
    cmd.args(["--root", env.root_str()])
        .args(args)
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn hpcc");
    sleep(delay);
    let _ = child.kill();
    let _ = wait_bounded(&mut child);
}

/// After a crash: `delete --force` recovers (it may say the id does not
/// exist, if the crash came before the id was claimed), and nothing is
/// left. Processes are found by the id in their argv: the hpcc processes
/// (parent, middle child, init before exec) carry it.
#[track_caller]
fn recover(env: &TestEnv, id: &str, bundle: &Bundle, what: &str) {
    let out = env.hpcc(&["delete", "--force", id]);
    no_crash(&out);
    assert!(
        out.success() || out.stderr.contains("does not exist"),
        "{what}: delete --force after the crash\n{out}"
    );
    // Waits (bounded) for every process naming the id, then checks state,
    // mounts and cgroups.
    env.assert_clean(id, None, bundle);
}

/// Pids of the processes that are the container: those in the pid file, or
/// anything whose argv names the id, recorded before the kill so that
/// ProcRef::assert_gone can prove they went.
fn procs_of(id: &str) -> Vec<ProcRef> {
    processes_with_arg(id)
        .into_iter()
        .filter_map(|(pid, _)| {
            let st = runtime_tests::proc_stat(pid)?;
            (st.state != 'Z').then_some(ProcRef {
                pid,
                starttime: st.starttime,
            })
        })
        .collect()
}

#[test]
fn sigkill_during_create_start_and_delete_is_recoverable() {
    let env = TestEnv::new("crash");
    let bundle = env.bundle(&["sleep", "1000"]);
    let mut completed = [0u32; 3];
    for i in 0..20u64 {
        // create, killed at 0..50 ms
        let delay = Duration::from_micros(i * 2_600);
        let id = env.id("crash-create");
        let pid_file = env.path(&format!("{id}.pid"));
        kill_after(
            &env,
            &[
                "create",
                "--bundle",
                bundle.path(),
                "--pid-file",
                s(&pid_file),
                &id,
            ],
            delay,
        );
        if pid_file.exists() {
            completed[0] += 1;
        }
        let seen = procs_of(&id);
        let init = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .and_then(|p| {
                runtime_tests::proc_stat(p).map(|st| ProcRef {
                    pid: p,
                    starttime: st.starttime,
                })
            });
        recover(
            &env,
            &id,
            &bundle,
            &format!("create killed after {delay:?}"),
        );
        for p in seen.iter().chain(init.iter()) {
            p.assert_gone(&format!("create killed after {delay:?}"));
        }
        // The id is usable again.
        let init = env.create(&bundle, &id);
        env.hpcc(&["delete", "--force", &id]).ok();
        env.assert_clean(&id, Some(&init), &bundle);

        // start, killed at 0..50 ms
        let id = env.id("crash-start");
        let init = env.create(&bundle, &id);
        kill_after(&env, &["start", &id], delay);
        if env.state(&id)["status"] == "running" {
            completed[1] += 1;
        }
        recover(&env, &id, &bundle, &format!("start killed after {delay:?}"));
        init.assert_gone("container init after start was killed");

        // delete --force, killed at 0..50 ms
        let id = env.id("crash-delete");
        let init = env.create_and_start(&bundle, &id);
        kill_after(&env, &["delete", "--force", &id], delay);
        if !env.root.join(&id).exists() {
            completed[2] += 1;
        }
        recover(
            &env,
            &id,
            &bundle,
            &format!("delete killed after {delay:?}"),
        );
        init.assert_gone("container init after delete was killed");
    }
    say!(
        "of 20 kills each, create finished {} times, start {}, delete {} before the kill",
        completed[0],
        completed[1],
        completed[2]
    );
}

/// Kills a process mid-create, while a hook sleeps: the init (createContainer
/// hook, run by init) or the parent (createRuntime hook, run by the parent).
#[test]
fn sigkill_mid_create_while_a_hook_runs_is_recoverable() {
    let env = TestEnv::new("crash-hook");
    let marker_dir = env.path("markers");
    fs::create_dir(&marker_dir).expect("markers");
    for (hook, victim) in [
        ("createRuntime", "parent"),
        ("createRuntime", "init"),
        ("createContainer", "init"),
        ("createContainer", "parent"),
    ] {
        let marker = marker_dir.join(format!("{hook}-{victim}"));
        let mut bundle = env.bundle(&["sleep", "1000"]);
        // createContainer runs in the container's mount namespace: the
        // marker folder is bound in at the same path.
        push_mount(
            &mut bundle,
            json!({"destination": s(&marker_dir), "type": "bind", "source": marker_dir, "options": ["rbind"]}),
        );
        bundle.edit(|c| {
            c["hooks"] = json!({hook: [{"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}; exec sleep 20", s(&marker))]}]});
        });
        let id = env.id("crash-hook");
        let mut cmd = Command::new(&env.bin);
        cmd.args([
            "--root",
            env.root_str(),
            "create",
            "--bundle",
            bundle.path(),
            &id,
        ])
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut parent = cmd.spawn().expect("spawn create");
        let deadline = Instant::now() + WAIT_LIMIT;
        while !marker.exists() {
            assert!(Instant::now() < deadline, "{hook} hook did not run");
            sleep(Duration::from_millis(10));
        }
        let parent_pid = parent.id();
        let procs = procs_of(&id);
        let others: Vec<&ProcRef> = procs.iter().filter(|p| p.pid != parent_pid).collect();
        assert!(
            !others.is_empty(),
            "{hook}: expected the container's init (an hpcc process naming {id}) beside the parent; saw {procs:?}"
        );
        match victim {
            "parent" => {
                let _ = parent.kill();
            }
            _ => {
                for p in &others {
                    // SAFETY: plain kill(2) on a pid we just looked up.
                    unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
                }
            }
        }
        let status = wait_bounded(&mut parent);
        if victim == "init" {
            assert!(
                status.is_some_and(|s| !s.success()),
                "{hook}: create must fail when its init is killed: {status:?}"
            );
        }
        recover(
            &env,
            &id,
            &bundle,
            &format!("{victim} killed in the {hook} hook"),
        );
        for p in &procs {
            p.assert_gone(&format!("{victim} killed in the {hook} hook"));
        }
        // A new create with the same id works.
        bundle.edit(|c| {
            c.as_object_mut().expect("object").remove("hooks");
        });
        let init = env.create(&bundle, &id);
        env.hpcc(&["delete", "--force", &id]).ok();
        env.assert_clean(&id, Some(&init), &bundle);
    }
}
