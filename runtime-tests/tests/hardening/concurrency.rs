//! Concurrency: creates of one id racing from several threads have
//! exactly one winner, which stays intact.

use std::fs;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use runtime_tests::{path_str as s, Bundle, Output, TestEnv, WAIT_LIMIT};

use crate::common::no_crash;

#[test]
fn concurrent_creates_of_one_id_have_exactly_one_winner() {
    let env = TestEnv::new("race");
    let n = 8;
    let bundles: Vec<Bundle> = (0..n).map(|_| env.bundle(&["sleep", "1000"])).collect();
    let id = env.id("race");
    let root = env.root.clone();
    let outs: Vec<(usize, Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (root, id, path) = (root.clone(), id.clone(), b.dir.clone());
                scope.spawn(move || {
                    // TestEnv is not Sync: each thread runs hpcc through its
                    // own, against the shared root.
                    let local = TestEnv::new("race-thread");
                    let out =
                        local.hpcc_raw(&["--root", s(&root), "create", "--bundle", s(&path), &id]);
                    (i, out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let winners: Vec<&(usize, Output)> = outs.iter().filter(|(_, o)| o.success()).collect();
    for (_, out) in &outs {
        no_crash(out);
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one create wins: {}",
        outs.iter()
            .map(|(_, o)| o.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (_, out) in outs.iter().filter(|(_, o)| !o.success()) {
        out.fails_with("already exists");
    }
    let winner = winners[0].0;
    let state = env.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    let canon = fs::canonicalize(&bundles[winner].dir).expect("canon");
    assert_eq!(
        state["bundle"].as_str().map(PathBuf::from),
        Some(canon),
        "the winner's bundle is recorded: {state}"
    );
    let pid = u32::try_from(state["pid"].as_u64().expect("pid")).expect("pid");
    let init = env.live(pid);
    // The winner is intact: it starts and runs its program.
    env.hpcc(&["start", &id]).ok();
    env.wait_status(&id, "running");
    let deadline = Instant::now() + WAIT_LIMIT;
    while fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() != b"sleep\x001000\x00" {
        assert!(
            Instant::now() < deadline,
            "the winner does not run sleep 1000"
        );
        sleep(Duration::from_millis(20));
    }
    env.hpcc(&["delete", "--force", &id]).ok();
    for (i, b) in bundles.iter().enumerate() {
        env.assert_clean(&id, (i == winner).then_some(&init), b);
    }
}
