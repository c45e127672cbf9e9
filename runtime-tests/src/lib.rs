//! Harness for the hpcc conformance tests.
//!
//! The tests drive the built `hpcc` binary (path in `HPCC_BIN`) the way a
//! container engine drives runc: they build bundles on disk, call the binary
//! with a private `--root`, and look at what happened from the outside (state
//! JSON, pid files, `/proc`, mountinfo, cgroupfs).
//!
//! Every test makes one [`TestEnv`]. It owns a unique temporary folder that
//! holds the state root, the bundles and the captured output of every command.
//! Dropping it runs `delete --force` for every container id it handed out and
//! removes the folder, so a failing test leaves nothing behind either.
//!
//! The test process makes itself a child subreaper. Container processes whose
//! parent (the runtime) exits are then reparented to the test process instead
//! of the machine's PID 1 (which, on some build machines, never reaps), and
//! the harness reaps them, so "the process is gone" can be checked for real.
//!
//! The harness, one concern a module, all re-exported here:
//!
//! - `host`: the binary under test, who runs the tests (uids, the
//!   subordinate id ranges) and which tools are installed;
//! - `skip`: tests that cannot run here say so ([`skip()`], [`missing()`]);
//! - `proc`: `/proc` reading, pid files, reaping, bounded child processes;
//! - `output`: the captured result of one runtime invocation, and the
//!   same checks on a plain `std::process::Output`;
//! - `bundle`: bundles and their busybox rootfs;
//! - `env`: [`TestEnv`], one test's private world;
//! - `clean`: the checks that a container left nothing behind;
//! - `files`: UTF-8 paths, sorted listings, removing scratch trees.

use std::time::Duration;

/// How long [`TestEnv::wait_status`] and the leak checks poll before failing.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Upper bound for one runtime invocation; a hung command fails the test
/// instead of hanging the suite.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(20);

/// `eprintln!` that never panics (stderr may be a closed pipe, and this is
/// also used from `Drop` while a failed test unwinds).
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bundle;
mod clean;
mod enosys;
mod env;
mod files;
mod host;
mod output;
mod proc;
mod skip;

pub use bundle::{busybox, make_rootfs, sh, Bundle, APPLETS, BUSYBOX_CANDIDATES, TEST_HOSTNAME};
pub use clean::{assert_clean_in, cgroups_named, mounts_under};
pub use enosys::injected as injected_enosys;
pub use env::TestEnv;
pub use files::{list_dir, path_str, remove_tree, TempTree};
pub use host::{egid, euid, have, hpcc_bin, is_root, subordinate_ids, user_name};
pub use output::{fails_in_one_line, fails_with, ok, stderr, stdout, Output};
pub use proc::{proc_stat, processes_with_arg, read_pid_file, reap_orphans, ProcRef, ProcStat};
pub use skip::{clients_required, forced_underlay, missing, skip};
