//! Tests that cannot run here: [`skip`] records why (libtest has no
//! skipped state), [`missing`] does the same for an absent tool or fixture
//! unless every client is required, where it fails the test.

use std::fs;
use std::path::Path;

/// Says that the calling test cannot run here, and why. libtest has no
/// skipped state, so the test still shows as "ok"; the line this appends
/// to `$HPCC_SKIP_LOG` is what `integration/summary.sh` counts as a skip
/// (and takes off the passed count). Return from the test right after.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    note!("SKIPPED: {test}: {reason}");
    if let Some(log) = std::env::var_os("HPCC_SKIP_LOG").filter(|v| !v.is_empty()) {
        use std::io::Write as _;
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        let appended = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            panic!(
                "cannot record the skip in {}: {e}",
                Path::new(&log).display()
            );
        }
    }
}

/// True when every client and tool is required (`make test` and CI set
/// `HPCC_REQUIRE_CLIENTS=1`): a missing one fails instead of skipping.
pub fn clients_required() -> bool {
    std::env::var_os("HPCC_REQUIRE_CLIENTS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// A tool or fixture the test needs is missing: under `make test` that
/// fails the test, naming it; elsewhere the test is skipped, saying so.
#[track_caller]
pub fn missing(what: &str) {
    assert!(!clients_required(), "{what} (make test requires it)");
    skip(what);
}

/// The run forces image mode's underlay (`HPCC_IMAGE_ROOT=underlay`, as
/// `make test`'s underlay pass does, standing in for kernels before 5.11).
pub fn forced_underlay() -> bool {
    std::env::var("HPCC_IMAGE_ROOT").is_ok_and(|v| v == "underlay")
}
