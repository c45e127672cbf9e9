//! A progress bar on stderr while unpacking, only when a person watches.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Read};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(total: u64, quiet: bool, what: &str) -> Progress {
        Progress::with_message(total, quiet, format!("unpacking {what}"))
    }

    /// The same bar for a download (fed through [`Progress::inc`]).
    pub fn pulling(total: u64, quiet: bool, what: &str) -> Progress {
        Progress::with_message(total, quiet, format!("pulling {what}"))
    }

    fn with_message(total: u64, quiet: bool, msg: String) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(msg);
        Progress { bar: Some(bar) }
    }

    pub fn wrap<R: Read + Send + 'static>(&self, r: R) -> Box<dyn Read + Send> {
        match &self.bar {
            Some(bar) => Box::new(bar.wrap_read(r)),
            None => Box::new(r),
        }
    }

    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    pub fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
