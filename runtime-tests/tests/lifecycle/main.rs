//! Conformance tests for the runc-compatible command line of hpcc.
//!
//! Run with `HPCC_BIN=/abs/path/to/hpcc cargo test -p runtime-tests`; the
//! suite passes both as root and as an unprivileged user (rootless).
//!
//! One test binary; each module holds the tests of one feature, and
//! `common` the helpers they share.

mod cgroups;
mod common;
mod exec;
mod flags_and_logging;
mod hooks;
mod kill;
mod namespaces;
mod process;
mod run;
mod security;
mod spec;
mod terminal_and_fds;
mod verbs;
