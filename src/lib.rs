//! hpcc: a daemonless, rootless OCI container runtime for HPC.
//!
//! One pipeline: every front door turns its input into an OCI `Spec`, and
//! `launch` turns a `Spec` into a running process. See ARCHITECTURE.md.

// Tests may unwrap and panic; the code they test may not (Cargo.toml [lints]).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cgroups;
pub mod cli;
pub mod commands;
pub mod container;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod hooks;
pub mod hpc;
pub mod image;
pub mod launch;
pub mod logging;
pub mod procfs;
pub mod registry;
pub mod rootfs;
pub mod security;
pub mod signals;
pub mod spec;
#[cfg(test)]
mod structure_tests;
pub mod sys;
pub mod timefmt;
pub mod tty;

use clap::Parser;

/// Parses the command line, runs the verb and maps the outcome to an exit
/// code. Errors become one line on stderr (and in the `--log` file), never a
/// panic.
pub fn main_entry() -> i32 {
    // Like any Unix filter, die quietly when the reader of our output goes
    // away (`hpcc features | head`) instead of failing a write.
    sys::reset_signal_dispositions();
    let argv = cli::route_image_run(std::env::args_os().collect(), |a| {
        image::ImageArg::parse(a).looks_like_image()
    });
    let cli = match cli::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version itself; those are not failures.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let g = &cli.global;
    let json = g.log_format == cli::LogFormat::Json;
    let log = match logging::Logger::open(g.log.as_deref(), json, g.debug) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("hpcc: {e:#}");
            return 1;
        }
    };
    logging::install(log);
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            logging::error(&msg);
            1
        }
    }
}
