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

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Applets linked into every test rootfs (`/bin/<applet>` -> `busybox`).
pub const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "id", "ls", "true", "false", "hostname", "kill", "ps", "mount",
    "grep", "test", "env", "readlink", "stat", "touch",
];

/// Where the static busybox (Debian package `busybox-static`) is looked for.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The hostname every test bundle gets, so tests can check it from inside.
pub const TEST_HOSTNAME: &str = "hpcc-test";

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

/// The binary under test, from `HPCC_BIN`.
///
/// # Panics
/// When `HPCC_BIN` is unset, empty, relative or not a file.
pub fn hpcc_bin() -> PathBuf {
    let Some(value) = std::env::var_os("HPCC_BIN").filter(|v| !v.is_empty()) else {
        panic!(
            "HPCC_BIN is not set: point it at the hpcc binary under test, e.g. \
             `HPCC_BIN=$PWD/target/x86_64-unknown-linux-musl/release/hpcc cargo test -p runtime-tests`, \
             or use `make runtime-tests`"
        );
    };
    let path = PathBuf::from(value);
    assert!(
        path.is_absolute(),
        "HPCC_BIN must be an absolute path, got {}",
        path.display()
    );
    assert!(
        path.is_file(),
        "HPCC_BIN={} does not exist or is not a file",
        path.display()
    );
    path
}

/// Effective uid of the test process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Effective gid of the test process.
pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Whether the tests run as root (the rootful half of the suite).
pub fn is_root() -> bool {
    euid() == 0
}

// ---------------------------------------------------------------------------
// Skips
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Child processes and reaping
// ---------------------------------------------------------------------------

/// Pids of commands the harness spawned and has not reaped yet. The orphan
/// reaper leaves these alone so it never steals an exit status that a
/// `Child::try_wait` in another test thread is about to collect.
static SPAWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn spawned() -> std::sync::MutexGuard<'static, Option<HashSet<u32>>> {
    SPAWNED.lock().unwrap_or_else(PoisonError::into_inner)
}

static SUBREAPER: Once = Once::new();

/// Makes the test process a child subreaper (once per process).
fn become_subreaper() {
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
fn describe(pid: u32) -> String {
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

// ---------------------------------------------------------------------------
// Command output
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// A bundle folder: `config.json` plus a busybox `rootfs`.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The bundle path as a `&str` for command lines.
    pub fn path(&self) -> &str {
        path_str(&self.dir)
    }

    /// Changes the config with `f` and writes it back to `config.json`.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    /// Sets `process.args`.
    pub fn set_args(&mut self, args: &[&str]) -> &mut Self {
        self.edit(|c| c["process"]["args"] = Value::from(args.to_vec()))
    }

    /// Removes the namespace of type `ty` from `linux.namespaces`.
    pub fn remove_namespace(&mut self, ty: &str) -> &mut Self {
        self.edit(|c| {
            if let Some(list) = c["linux"]["namespaces"].as_array_mut() {
                list.retain(|ns| ns["type"] != ty);
            }
        })
    }

    pub fn hostname(&self) -> &str {
        self.config["hostname"].as_str().unwrap_or_default()
    }

    fn save(&self) {
        let text = serde_json::to_string_pretty(&self.config)
            .unwrap_or_else(|e| panic!("serialising config.json: {e}"));
        fs::write(self.config_path(), text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.config_path().display()));
    }
}

/// Path to the host's static busybox.
///
/// # Panics
/// When none is installed or it is dynamically linked (which would fail in a
/// rootfs that has no libc).
pub fn busybox() -> PathBuf {
    let Some(path) = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        panic!(
            "no busybox at {BUSYBOX_CANDIDATES:?}: install the static one \
             (`apt-get install busybox-static`)"
        );
    };
    assert!(
        !elf_has_interpreter(&path),
        "{} is dynamically linked; the test rootfs needs a static busybox \
         (`apt-get install busybox-static`)",
        path.display()
    );
    path
}

/// Whether an ELF64 little-endian file has a PT_INTERP program header.
fn elf_has_interpreter(path: &Path) -> bool {
    let mut head = Vec::new();
    let read = fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head));
    if read.is_err() || head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let mut off_bytes = [0u8; 8];
    off_bytes.copy_from_slice(&head[0x20..0x28]);
    let phoff = u64::from_le_bytes(off_bytes) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        head.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == 3)
    })
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("test path is not UTF-8: {}", p.display()))
}

fn mkdir_mode(path: &Path, mode: u32) {
    fs::create_dir(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Builds a busybox rootfs at `rootfs` (which must not exist yet).
pub fn make_rootfs(rootfs: &Path) {
    mkdir_mode(rootfs, 0o755);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        mkdir_mode(&rootfs.join(dir), if dir == "tmp" { 0o1777 } else { 0o755 });
    }
    let target = rootfs.join("bin/busybox");
    let source = busybox();
    fs::copy(&source, &target)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", source.display(), target.display()));
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", target.display()));
    for applet in APPLETS {
        let link = rootfs.join("bin").join(applet);
        symlink("busybox", &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .unwrap_or_else(|e| panic!("writing etc/passwd: {e}"));
    fs::write(rootfs.join("etc/group"), "root:x:0:\n")
        .unwrap_or_else(|e| panic!("writing etc/group: {e}"));
}

// ---------------------------------------------------------------------------
// Test environment
// ---------------------------------------------------------------------------

static ENV_COUNTER: AtomicUsize = AtomicUsize::new(0);
static ID_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's private world: temp folder, state root, bundles, containers.
pub struct TestEnv {
    /// The binary under test.
    pub bin: PathBuf,
    /// The test's temporary folder (owned by the current user).
    pub dir: PathBuf,
    /// The state root passed as `--root` (created, mode 0700).
    pub root: PathBuf,
    seq: Cell<usize>,
    /// (root, id) of every container id handed out, for cleanup.
    containers: RefCell<Vec<(PathBuf, String)>>,
    /// Container processes seen, killed on drop if the runtime leaked them.
    inits: RefCell<Vec<ProcRef>>,
}

impl TestEnv {
    /// Makes a fresh temporary folder under `std::env::temp_dir()`.
    ///
    /// # Panics
    /// When `HPCC_BIN` is not usable (see [`hpcc_bin`]).
    pub fn new(name: &str) -> TestEnv {
        let bin = hpcc_bin();
        become_subreaper();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let n = ENV_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hpcc-rt-{name}-{}-{n}-{nanos}", std::process::id()));
        mkdir_mode(&dir, 0o755);
        let root = dir.join("state");
        mkdir_mode(&root, 0o700);
        TestEnv {
            bin,
            dir,
            root,
            seq: Cell::new(0),
            containers: RefCell::new(Vec::new()),
            inits: RefCell::new(Vec::new()),
        }
    }

    fn next(&self) -> usize {
        let n = self.seq.get();
        self.seq.set(n + 1);
        n
    }

    /// A fresh container id, unique on this machine, cleaned up on drop.
    pub fn id(&self, name: &str) -> String {
        let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{name}-{}-{n}", std::process::id());
        self.track(&self.root, &id);
        id
    }

    /// Registers a container under another state root for cleanup.
    pub fn track(&self, root: &Path, id: &str) {
        self.containers
            .borrow_mut()
            .push((root.to_path_buf(), id.to_string()));
    }

    pub fn root_str(&self) -> &str {
        path_str(&self.root)
    }

    /// [`ProcRef::live`], remembering the process so that drop can kill it
    /// should the runtime leak it.
    pub fn live(&self, pid: u32) -> ProcRef {
        let proc_ref = ProcRef::live(pid);
        self.inits.borrow_mut().push(proc_ref.clone());
        proc_ref
    }

    /// A path inside the test folder (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs `hpcc --root <root> ARGS...`.
    pub fn hpcc(&self, args: &[&str]) -> Output {
        let mut full = vec!["--root", self.root_str()];
        full.extend_from_slice(args);
        self.hpcc_raw(&full)
    }

    /// Runs `hpcc ARGS...` exactly as given (no `--root` added).
    pub fn hpcc_raw(&self, args: &[&str]) -> Output {
        self.hpcc_in(&self.dir, args)
    }

    /// Runs `hpcc ARGS...` in working directory `cwd`.
    ///
    /// stdin is /dev/null; stdout and stderr go to files in the test folder
    /// (not pipes: a detached container inherits them and would keep a pipe
    /// open long after the runtime exits).
    pub fn hpcc_in(&self, cwd: &Path, args: &[&str]) -> Output {
        self.try_hpcc_in(cwd, args)
            .unwrap_or_else(|e| panic!("hpcc {args:?}: {e}"))
    }

    /// [`TestEnv::hpcc_in`] that reports harness failures (cannot spawn,
    /// did not finish within [`COMMAND_LIMIT`]) as `Err` instead of panicking.
    pub fn try_hpcc_in(&self, cwd: &Path, args: &[&str]) -> Result<Output, String> {
        let n = self.next();
        let out_path = self.dir.join(format!("cmd-{n}.stdout"));
        let err_path = self.dir.join(format!("cmd-{n}.stderr"));
        let create =
            |p: &Path| fs::File::create(p).map_err(|e| format!("creating {}: {e}", p.display()));
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(create(&out_path)?)
            .stderr(create(&err_path)?);
        let status =
            run_bounded(&mut cmd).map_err(|e| format!("{} {args:?}: {e}", self.bin.display()))?;
        let read = |p: &Path| {
            fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let output = Output {
            args: args.iter().map(|s| s.to_string()).collect(),
            status,
            stdout: read(&out_path)?,
            stderr: read(&err_path)?,
        };
        if std::env::var_os("HPCC_TEST_VERBOSE").is_some() {
            note!("{output}\n");
        }
        Ok(output)
    }

    /// Makes a bundle: busybox rootfs, `hpcc spec` (with `--rootless` when
    /// not root), then `process.args = args`, `terminal = false` and
    /// `hostname = TEST_HOSTNAME`.
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        let dir = self.dir.join(format!("bundle-{}", self.next()));
        mkdir_mode(&dir, 0o755);
        make_rootfs(&dir.join("rootfs"));
        let dir_s = path_str(&dir);
        let mut spec = vec!["spec"];
        if !is_root() {
            spec.push("--rootless");
        }
        spec.extend(["--bundle", dir_s]);
        self.hpcc_raw(&spec).ok();
        let path = dir.join("config.json");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("`hpcc spec` did not write {}: {e}", path.display()));
        let config: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()));
        let mut bundle = Bundle { dir, config };
        bundle.edit(|c| {
            c["process"]["args"] = Value::from(args.to_vec());
            c["process"]["terminal"] = Value::Bool(false);
            c["hostname"] = Value::from(TEST_HOSTNAME);
        });
        bundle
    }

    /// `create --bundle B --pid-file F ID`; asserts success, that the pid
    /// file names a live process and that `state` says created with that
    /// pid. Returns the container's init process.
    pub fn create(&self, bundle: &Bundle, id: &str) -> ProcRef {
        let pid_file = self.dir.join(format!("{id}.pid"));
        self.hpcc(&[
            "create",
            "--bundle",
            bundle.path(),
            "--pid-file",
            path_str(&pid_file),
            id,
        ])
        .ok();
        let pid = read_pid_file(&pid_file);
        let proc_ref = self.live(pid);
        let state = self.state(id);
        assert_eq!(state["status"], "created", "state after create: {state}");
        assert_eq!(
            state["pid"].as_u64(),
            Some(u64::from(pid)),
            "state pid vs pid file {pid}: {state}"
        );
        proc_ref
    }

    /// `create` then `start`; waits for `running`.
    pub fn create_and_start(&self, bundle: &Bundle, id: &str) -> ProcRef {
        let proc_ref = self.create(bundle, id);
        self.hpcc(&["start", id]).ok();
        proc_ref
    }

    /// `state ID`, asserting success and parsing the JSON.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.hpcc(&["state", id]);
        out.ok();
        out.json()
    }

    /// Polls `state ID` until its status is `status` (at most
    /// [`WAIT_LIMIT`]); returns that state.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let state = self.state(id);
            if state["status"] == status {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} did not reach status {status:?} within {WAIT_LIMIT:?}; last state: {state}"
            );
            sleep(POLL);
        }
    }

    /// Asserts that container `id` left nothing behind: no state folder
    /// under the root, `state` says "does not exist", its init process
    /// (when known) is gone, no process has the id in its argv (a stray
    /// runtime or init process), no mount under the bundle remains in our
    /// mount namespace and no cgroup named after it remains.
    #[track_caller]
    pub fn assert_clean(&self, id: &str, init: Option<&ProcRef>, bundle: &Bundle) {
        assert_clean_in(self, &self.root, id, init, bundle);
    }

    /// Entries left in the state root.
    pub fn root_entries(&self) -> Vec<String> {
        list_dir(&self.root)
    }
}

/// [`TestEnv::assert_clean`] for a container under another state root.
#[track_caller]
pub fn assert_clean_in(
    env: &TestEnv,
    root: &Path,
    id: &str,
    init: Option<&ProcRef>,
    bundle: &Bundle,
) {
    let state_dir = root.join(id);
    assert!(
        !state_dir.exists(),
        "state folder {} is still there: {:?}",
        state_dir.display(),
        list_dir(&state_dir)
    );
    env.hpcc_raw(&["--root", path_str(root), "state", id])
        .fails_with("does not exist");
    if let Some(init) = init {
        init.assert_gone(&format!("container {id} init"));
    }
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        reap_orphans();
        let left = processes_with_arg(id);
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let details: Vec<String> = left
                .iter()
                .map(|(pid, cmd)| format!("  pid {pid}: {cmd}\n    {}", describe(*pid)))
                .collect();
            panic!(
                "processes naming container {id} are still running after {WAIT_LIMIT:?}:\n{}",
                details.join("\n")
            );
        }
        sleep(POLL);
    }
    let mounts = mounts_under(&bundle.dir);
    assert!(
        mounts.is_empty(),
        "mounts under bundle {} remain:\n{}",
        bundle.dir.display(),
        mounts.join("\n")
    );
    let cgroups = cgroups_named(id);
    assert!(
        cgroups.is_empty(),
        "cgroups of container {id} remain: {cgroups:?}"
    );
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Must not panic: this also runs while a failed test unwinds.
        let mut todo = self.containers.borrow().clone();
        for id in list_dir(&self.root) {
            if !todo.iter().any(|(r, i)| *r == self.root && *i == id) {
                todo.push((self.root.clone(), id));
            }
        }
        for (root, id) in todo {
            let Some(root_s) = root.to_str() else {
                continue;
            };
            match self.try_hpcc_in(&self.dir, &["--root", root_s, "delete", "--force", &id]) {
                Ok(out) if out.success() => {}
                Ok(out) => note!("cleanup: delete --force {id} failed\n{out}"),
                Err(e) => note!("cleanup: delete --force {id}: {e}"),
            }
        }
        // Last resort against a runtime that leaks processes: kill what is
        // left so one failing test does not leave sleepers on the machine.
        for init in self.inits.borrow().iter() {
            let leaked = init.exists().is_some_and(|st| st.state != 'Z');
            if let (true, Ok(pid)) = (leaked, libc::pid_t::try_from(init.pid)) {
                note!("cleanup: container process {} leaked; killing it", init.pid);
                // SAFETY: plain kill(2) on a pid whose start time we just checked.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for (_, id) in self.containers.borrow().iter() {
            for (pid, cmd) in processes_with_arg(id) {
                let Ok(raw) = libc::pid_t::try_from(pid) else {
                    continue;
                };
                note!("cleanup: process {pid} still names container {id}; killing it: {cmd}");
                // SAFETY: plain kill(2); the id is unique to this test run.
                unsafe { libc::kill(raw, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            reap_orphans();
            let left = self.inits.borrow().iter().any(|i| i.exists().is_some());
            if !left || Instant::now() >= deadline {
                break;
            }
            sleep(POLL);
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            note!("cleanup: removing {}: {e}", self.dir.display());
        }
    }
}

/// Spawns `cmd` and waits for it, at most [`COMMAND_LIMIT`].
fn run_bounded(cmd: &mut Command) -> Result<ExitStatus, String> {
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

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Lines of `/proc/self/mountinfo` whose mount point lies under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let canonical = fs::canonicalize(dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| prefix.clone());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            line.split_whitespace().nth(4).is_some_and(|mp| {
                [&prefix, &canonical]
                    .iter()
                    .any(|p| mp == p.as_str() || mp.starts_with(&format!("{p}/")))
            })
        })
        .map(str::to_string)
        .collect()
}

/// Folders under /sys/fs/cgroup (three levels deep) whose name contains `id`.
pub fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![PathBuf::from("/sys/fs/cgroup")];
    for _ in 0..3 {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if names_container(&entry.file_name().to_string_lossy(), id) {
                    found.push(path);
                } else {
                    next.push(path);
                }
            }
        }
        level = next;
    }
    found
}

/// Whether a cgroup folder name refers to container `id`: it contains `id`
/// not followed by another id character (so `x-1` does not match `x-12`).
fn names_container(name: &str, id: &str) -> bool {
    name.match_indices(id).any(|(at, _)| {
        name[at + id.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}
