//! Hardening (issue #8): hostile and broken bundles, regression tests for
//! the runc CVEs that apply to a runtime of this shape, and crash safety.
//!
//! Every case passes as root and as an unprivileged user; where the kernel
//! gives an unprivileged user less, the test says so on stderr and checks
//! what can be checked instead. The CVE tests are written so that they fail
//! on a vulnerable runtime: each runs a real attacker or looks at the real
//! kernel state, never at what hpcc says about itself.
//!
//! Some cases need a small static C program (the attacker of CVE-2019-5736,
//! a probe that lists fds and walks `..`): it is compiled with
//! `gcc -static` at test time; a machine without gcc fails those tests with
//! a message saying so.
//!
//! One test binary; each module holds the cases of one kind, `common` the
//! checks they share and `probe` the static C probe and attacker.

/// A line on stderr, tagged, that never panics.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "hardening: {}", format!($($arg)*));
    }};
}

mod bundles;
mod common;
mod concurrency;
mod crash;
mod cve_2019_5736;
mod cve_2024_21626;
mod mounts;
mod privileges;
mod probe;
