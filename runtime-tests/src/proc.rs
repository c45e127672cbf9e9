//! Processes: reading `/proc`, pid files, the child subreaper and the
//! reaping of orphans, and runtime invocations bounded in time.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, Once, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{COMMAND_LIMIT, POLL, WAIT_LIMIT};

/// Pids of commands the harness spawned and has not reaped yet. The orphan
/// reaper leaves these alone so it never steals an exit status that a
/// `Child::try_wait` in another test thread is about to collect.
static SPAWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn spawned() -> std::sync::MutexGuard<'static, Option<HashSet<u32>>> {
    SPAWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

static SUBREAPER: Once = Once::new();

/// Makes the test process a child subreaper (once per process).
pub(crate) fn become_subreaper() {
    SUBREAPER.call_once(|| {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes a plain integer argument.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            note!(
                "runtime-tests: PR_SET_CHILD_SUBREAPER failed: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// The fields of `/proc/PID/stat` the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// Start time in clock ticks since boot: tells a pid apart from a later
    /// process that reuses the number.
    pub starttime: u64,
}

/// Reads `/proc/PID/stat`; `None` when the process does not exist.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    Some(ProcStat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        starttime: rest.get(19)?.parse().ok()?,
    })
}

/// Reaps zombie children of the test process that the harness did not spawn
/// itself (orphaned container and runtime processes reparented to us).
pub fn reap_orphans() {
    let me = std::process::id();
    let guard = spawned();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if guard.as_ref().is_some_and(|set| set.contains(&pid)) {
            continue;
        }
        match proc_stat(pid) {
            Some(st) if st.ppid == me && st.state == 'Z' => {
                let Ok(raw) = libc::pid_t::try_from(pid) else {
                    continue;
                };
                let mut status = 0;
                // SAFETY: reaps one specific zombie child; status is a valid pointer.
                unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) };
            }
            _ => {}
        }
    }
}

/// Processes other than the test process itself whose argv has an element
/// equal to `arg` (e.g. a container id): `(pid, command line)`.
pub fn processes_with_arg(arg: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            argv.iter()
                .any(|a| a == arg)
                .then(|| (pid, argv.join(" ").trim_end().to_string()))
        })
        .collect()
}

/// Describes a process for failure messages: stat fields and kernel wait
/// channel.
pub(crate) fn describe(pid: u32) -> String {
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    format!("{:?} wchan={wchan:?}", proc_stat(pid))
}

/// A process identified by pid and start time, so that pid reuse cannot make
/// a vanished process look alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcRef {
    pub pid: u32,
    pub starttime: u64,
}

impl ProcRef {
    /// Looks the pid up and asserts that it is a live (non-zombie) process.
    pub fn live(pid: u32) -> ProcRef {
        let st = proc_stat(pid).unwrap_or_else(|| {
            panic!("pid {pid} should be a live process but /proc/{pid} is gone")
        });
        assert_ne!(
            st.state, 'Z',
            "pid {pid} should be a live process but is a zombie: {st:?}"
        );
        ProcRef {
            pid,
            starttime: st.starttime,
        }
    }

    /// The process still exists (possibly as a zombie).
    pub fn exists(&self) -> Option<ProcStat> {
        proc_stat(self.pid).filter(|st| st.starttime == self.starttime)
    }

    /// Waits (bounded) for the process to disappear, reaping it if it ended
    /// up as our zombie child. Panics with what is left otherwise.
    pub fn assert_gone(&self, what: &str) {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            reap_orphans();
            let Some(st) = self.exists() else {
                return;
            };
            if Instant::now() >= deadline {
                let parent = proc_stat(st.ppid);
                panic!(
                    "{what}: process {} is still there after {:?}: {st:?}; its parent {} is {parent:?}{}",
                    self.pid,
                    WAIT_LIMIT,
                    st.ppid,
                    if st.state == 'Z' {
                        " (a zombie nobody reaps: its parent is alive and does not wait for it)"
                    } else {
                        " (still running)"
                    }
                );
            }
            sleep(POLL);
        }
    }
}

/// Spawns `cmd` and waits for it, at most [`COMMAND_LIMIT`].
pub(crate) fn run_bounded(cmd: &mut Command) -> Result<ExitStatus, String> {
    let mut child = {
        let mut guard = spawned();
        let child = cmd.spawn().map_err(|e| format!("cannot spawn: {e}"))?;
        guard.get_or_insert_with(HashSet::new).insert(child.id());
        child
    };
    let deadline = Instant::now() + COMMAND_LIMIT;
    let result = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("did not finish within {COMMAND_LIMIT:?}"));
            }
            Ok(None) => sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("wait failed: {e}")),
        }
    };
    if let Some(set) = spawned().as_mut() {
        set.remove(&child.id());
    }
    result
}

/// Reads a pid file (decimal pid, optional trailing newline).
pub fn read_pid_file(path: &Path) -> u32 {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("pid file {} not written: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {} holds {text:?}: {e}", path.display()))
}
