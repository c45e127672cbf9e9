//! Command output: [`Output`], the captured result of one runtime
//! invocation through the harness, and the same checks for a plain
//! `std::process::Output` (the image-mode tests run `hpcc` themselves).

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde_json::Value;

/// The result of one runtime invocation.
#[derive(Debug)]
pub struct Output {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: hpcc {}", self.args.join(" "))?;
        writeln!(f, "status:  {}", self.status)?;
        writeln!(f, "stdout:\n{}", self.stdout.trim_end())?;
        write!(f, "stderr:\n{}", self.stderr.trim_end())
    }
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Exit code, or 128+N when the runtime itself was killed by signal N.
    pub fn code(&self) -> i32 {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => -1,
        }
    }

    /// Asserts exit status 0 and returns `self`.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "expected success\n{self}");
        self
    }

    /// Asserts a nonzero exit (not a crash by signal) and returns `self`.
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "expected a nonzero exit code\n{self}"
        );
        self
    }

    /// Asserts a nonzero exit with `needle` (case-insensitive) on stderr.
    #[track_caller]
    pub fn fails_with(&self, needle: &str) -> &Self {
        self.fails();
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "expected stderr to contain {needle:?}\n{self}"
        );
        self
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not valid JSON ({e})\n{self}"))
    }
}

/// stdout of a finished command, as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr of a finished command, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that hpcc failed and that its stderr names `needle`.
#[track_caller]
pub fn fails_with(o: &std::process::Output, needle: &str) {
    let e = stderr(o);
    assert!(
        !o.status.success() && e.contains(needle),
        "expected failure with {needle:?}: {:?} {e}",
        o.status
    );
}

/// `fails_with`, and the whole of stderr is that one line.
#[track_caller]
pub fn fails_in_one_line(o: &std::process::Output, needle: &str) {
    fails_with(o, needle);
    let e = stderr(o);
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
}

/// Asserts that hpcc succeeded (showing its status, stdout and stderr
/// otherwise) and returns its stdout.
#[track_caller]
pub fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "hpcc failed: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}
