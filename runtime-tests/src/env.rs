//! [`TestEnv`]: one test's temporary folder, state root, bundles and
//! containers, and the runtime invocations made in it. Dropping it deletes
//! every container it handed out and removes the folder.

use std::cell::{Cell, RefCell};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::bundle::{make_rootfs, Bundle, TEST_HOSTNAME};
use crate::clean::assert_clean_in;
use crate::files::{list_dir, mkdir_mode, path_str};
use crate::host::{hpcc_bin, is_root};
use crate::output::Output;
use crate::proc::{
    become_subreaper, processes_with_arg, read_pid_file, reap_orphans, run_bounded, ProcRef,
};
use crate::{POLL, WAIT_LIMIT};

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
        self.hpcc_with(args, |_| {})
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
    /// did not finish within [`COMMAND_LIMIT`](crate::COMMAND_LIMIT)) as
    /// `Err` instead of panicking.
    pub fn try_hpcc_in(&self, cwd: &Path, args: &[&str]) -> Result<Output, String> {
        self.try_hpcc_with(cwd, args, |_| {})
    }

    /// [`TestEnv::hpcc`] after `prepare` has adjusted the command (extra
    /// environment, a `pre_exec` hook). A test must not spawn hpcc itself:
    /// the harness's orphan reaper, run by other test threads, would take
    /// the exit status of a child it does not know (`wait` then fails with
    /// ECHILD).
    pub fn hpcc_with(&self, args: &[&str], prepare: impl FnOnce(&mut Command)) -> Output {
        let mut full = vec!["--root", self.root_str()];
        full.extend_from_slice(args);
        self.try_hpcc_with(&self.dir, &full, prepare)
            .unwrap_or_else(|e| panic!("hpcc {full:?}: {e}"))
    }

    fn try_hpcc_with(
        &self,
        cwd: &Path,
        args: &[&str],
        prepare: impl FnOnce(&mut Command),
    ) -> Result<Output, String> {
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
        prepare(&mut cmd);
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
