//! Error and debug output. Errors are one line on stderr and, with `--log`,
//! also a line in the log file; containerd and podman show the last
//! `{"level":"error",...}` line of a JSON log to their user.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, OnceLock};

pub struct Logger {
    file: Option<Mutex<File>>,
    /// `--log-format json`: one JSON object per line, as containerd reads.
    json: bool,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl Logger {
    /// `--log FILE`, `--log-format json` and `--debug`.
    pub fn open(log: Option<&std::path::Path>, json: bool, debug: bool) -> Result<Self> {
        let file = match log {
            Some(path) if !path.as_os_str().is_empty() => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .with_context(|| format!("opening log file {}", path.display()))?;
                Some(Mutex::new(f))
            }
            _ => None,
        };
        Ok(Logger { file, json, debug })
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(file) = &self.file else { return };
        let line = match self.json {
            true => {
                let v = serde_json::json!({
                    "level": level,
                    "msg": msg,
                    "time": crate::timefmt::now(),
                });
                format!("{v}\n")
            }
            false => format!(
                "time=\"{}\" level={} msg={:?}\n",
                crate::timefmt::now(),
                level,
                msg
            ),
        };
        if let Ok(mut f) = file.lock() {
            // A log we cannot write must not turn into a second error.
            let _ = f.write_all(line.as_bytes());
        }
    }
}

pub fn install(logger: Logger) {
    let _ = LOGGER.set(logger);
}

/// Reports a fatal error: one line on stderr, and the log file if any.
pub fn error(msg: &str) {
    let one_line = msg.replace('\n', " ");
    eprintln!("hpcc: {one_line}");
    if let Some(l) = LOGGER.get() {
        l.write("error", &one_line);
    }
}

pub fn warn(msg: &str) {
    eprintln!("hpcc: warning: {msg}");
    if let Some(l) = LOGGER.get() {
        l.write("warning", msg);
    }
}

pub fn debug_enabled() -> bool {
    LOGGER.get().is_some_and(|l| l.debug)
}

/// Debug lines go to the log file, and to stderr only when there is none,
/// so `--debug` never pollutes a container's captured output.
pub fn debug(msg: &str) {
    let Some(l) = LOGGER.get() else { return };
    if !l.debug {
        return;
    }
    if l.file.is_some() {
        l.write("debug", msg);
    } else {
        eprintln!("hpcc: debug: {msg}");
    }
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::logging::debug_enabled() {
            $crate::logging::debug(&format!($($arg)*));
        }
    };
}
