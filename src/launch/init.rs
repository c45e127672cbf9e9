//! The container's init process: builds the rootfs, drops privileges, then
//! waits on start.sock and execs the container's program.

use super::channel::{Channel, Msg};
use super::namespaces::NsPlan;
use super::LaunchRequest;
use crate::rootfs::{self, RootfsPlan};
use crate::security::caps::CapPlan;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::Spec;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Everything init needs, computed in the parent before forking so that a
/// bad config fails before any process exists.
pub struct InitConfig<'a> {
    id: &'a str,
    spec: &'a Spec,
    rootfs: &'a Path,
    bundle: &'a Path,
    ns: NsPlan,
    caps: CapPlan,
    /// Compiled linux.seccomp, loaded by prepare_process.
    seccomp: Vec<seccompiler::BpfProgram>,
    use_mknod: bool,
    no_pivot: bool,
    no_new_keyring: bool,
    /// Fds from 3 up to keep open; None keeps every inherited fd (image
    /// mode, where the launcher's PMI fds must reach the program).
    preserve_fds: Option<u32>,
    console: Option<OwnedFd>,
    overlay_lower: Option<&'a Path>,
    lifeline: Option<OwnedFd>,
    /// Generated files written into the private root before it turns
    /// read-only (image mode's /etc/passwd and /etc/group).
    files: &'a [(PathBuf, Vec<u8>)],
    /// Set when the config has hooks init must take part in: the channel
    /// to ask the parent for the runtime-namespace ones.
    hooks: Option<Channel>,
    /// The state JSON the parent sent for createContainer/startContainer.
    hook_state: std::cell::RefCell<Option<serde_json::Value>>,
    /// The parent will put us in a cgroup first.
    cgroup: bool,
}

impl<'a> InitConfig<'a> {
    pub fn new(
        req: &LaunchRequest<'a>,
        ns: &NsPlan,
        lifeline: Option<OwnedFd>,
        ch: &Channel,
    ) -> Result<Self> {
        let spec = &req.bundle.spec;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| anyhow!("config.json: process is required"))?;
        let terminal = process.terminal().unwrap_or(false);
        let console = match (&req.console, terminal) {
            (Some(s), true) => Some(OwnedFd::from(s.try_clone().context("console socket")?)),
            (None, true) => bail!("process.terminal is true but no --console-socket was given"),
            (_, false) => None,
        };
        let mut cfg = InitConfig::base(req.id, spec, &req.bundle.rootfs, &req.bundle.dir, ns)?;
        cfg.no_pivot = req.opts.no_pivot;
        cfg.no_new_keyring = req.opts.no_new_keyring;
        cfg.preserve_fds = Some(req.opts.preserve_fds);
        cfg.console = console;
        cfg.lifeline = lifeline;
        if needs_init_hooks(spec) {
            cfg.hooks = Some(ch.try_clone()?);
        }
        cfg.cgroup = req.cgroup.is_some();
        Ok(cfg)
    }

    pub fn wants_cgroup(&self) -> bool {
        self.cgroup
    }

    /// Image mode: the rootfs is an overlay over the cached image, every
    /// inherited fd passes through, and the caller's session keyring (AFS
    /// and Kerberos tokens live there) is kept.
    pub fn for_image(
        spec: &'a Spec,
        lower: &'a Path,
        merged: &'a Path,
        ns: &NsPlan,
        files: &'a [(PathBuf, Vec<u8>)],
    ) -> Result<Self> {
        let mut cfg = InitConfig::base("image", spec, merged, lower, ns)?;
        cfg.no_new_keyring = true;
        cfg.preserve_fds = None;
        cfg.overlay_lower = Some(lower);
        cfg.files = files;
        Ok(cfg)
    }

    /// `exec`: a new process in a running container's namespaces; only the
    /// per-process part of the setup runs.
    pub fn for_exec(
        spec: &'a Spec,
        ns: &NsPlan,
        preserve_fds: u32,
        console: Option<OwnedFd>,
    ) -> Result<Self> {
        let mut cfg = InitConfig::base("exec", spec, Path::new("/"), Path::new("/"), ns)?;
        cfg.no_new_keyring = true;
        cfg.preserve_fds = Some(preserve_fds);
        cfg.console = console;
        Ok(cfg)
    }

    /// The terminal for an `exec`'d process, made inside the container.
    pub fn exec_terminal(&self) -> Result<()> {
        self.terminal(false)
    }

    /// The pty, when process.terminal asked for one; `is_console` also
    /// binds it on /dev/console (the container's first process only).
    fn terminal(&self, is_console: bool) -> Result<()> {
        let (Some(sock), Some(process)) = (&self.console, self.spec.process()) else {
            return Ok(());
        };
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        super::console::setup_in_container(
            sock,
            size,
            process.user().uid(),
            process.user().gid(),
            is_console,
        )
    }

    /// What every front door shares: the capability plan and the seccomp
    /// filters are derived here once, in the parent, before any fork.
    fn base(
        id: &'a str,
        spec: &'a Spec,
        rootfs: &'a Path,
        bundle: &'a Path,
        ns: &NsPlan,
    ) -> Result<Self> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| anyhow!("config.json: process is required"))?;
        let caps = CapPlan::from_spec(process.capabilities().as_ref())?;
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => crate::security::seccomp::compile(s)?,
            None => Vec::new(),
        };
        if ns.create.is_empty() && !ns.new_user && ns.join.is_empty() {
            bail!("config.json: linux.namespaces is empty");
        }
        if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !ns.has_uts {
            bail!("config.json: hostname needs a uts namespace");
        }
        Ok(InitConfig {
            id,
            spec,
            rootfs,
            bundle,
            ns: ns.clone(),
            caps,
            seccomp,
            use_mknod: !ns.in_userns && super::is_real_root(),
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: Some(0),
            console: None,
            overlay_lower: None,
            lifeline: None,
            files: &[],
            hooks: None,
            hook_state: std::cell::RefCell::new(None),
            cgroup: false,
        })
    }
}

/// What execve needs, resolved inside the container.
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Seccomp filters to load just before execve (no_new_privs case: as
    /// late as possible, so waiting for start is not filtered).
    late_seccomp: Vec<seccompiler::BpfProgram>,
}

/// Runs in the container init. Returns only on failure (the exit code).
pub fn run(ch: &Channel, cfg: &InitConfig, listener: UnixListener) -> i32 {
    let prepared = match setup(cfg) {
        Ok(p) => p,
        Err(e) => {
            let _ = ch.send(&Msg::Error(format!("{e:#}")));
            return 1;
        }
    };
    if ch.send(&Msg::Ready).is_err() {
        return 1;
    }
    let Some(mut conn) = wait_for_start(&listener, cfg.lifeline.as_ref()) else {
        return 1;
    };
    drop(listener);
    if let Err(e) = start_hooks(cfg) {
        let _ = writeln!(conn, "{e:#}");
        return 1;
    }
    let err = exec(&prepared);
    let _ = writeln!(conn, "{err}");
    127
}

fn hooks_of(spec: &Spec) -> Option<&oci_spec::runtime::Hooks> {
    spec.hooks().as_ref()
}

/// Hooks that run during create or start, which init must wait for or run.
#[allow(deprecated)]
fn needs_init_hooks(spec: &Spec) -> bool {
    hooks_of(spec).is_some_and(|h| {
        [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
    })
}

/// Before pivot_root: the parent runs prestart and createRuntime in the
/// runtime namespace; we then run createContainer here, in the
/// container's namespaces.
fn create_hooks(cfg: &InitConfig) -> Result<()> {
    let Some(ch) = &cfg.hooks else { return Ok(()) };
    ch.send(&Msg::CreateRuntime)?;
    let state: serde_json::Value = match ch.recv()? {
        Some(Msg::HookState(s)) => serde_json::from_str(&s)?,
        Some(Msg::Error(e)) => bail!(e),
        _ => bail!("launch channel: no answer to the createRuntime hooks"),
    };
    if let Some(h) = hooks_of(cfg.spec).and_then(|h| h.create_container().as_ref()) {
        crate::hooks::run(h, "createContainer", &state)?;
    }
    *cfg.hook_state.borrow_mut() = Some(state);
    Ok(())
}

/// After `start`, before the program: startContainer, in the container.
fn start_hooks(cfg: &InitConfig) -> Result<()> {
    let Some(h) = hooks_of(cfg.spec).and_then(|h| h.start_container().as_ref()) else {
        return Ok(());
    };
    let mut state = cfg.hook_state.borrow().clone().unwrap_or_default();
    state["status"] = "created".into();
    crate::hooks::run(h, "startContainer", &state)
}

/// execve; returns only the error, as text naming the program.
pub fn exec(p: &Prepared) -> String {
    if let Err(e) = crate::security::seccomp::load(&p.late_seccomp) {
        return format!("{e:#}");
    }
    let err = match nix::unistd::execve(&p.path, &p.argv, &p.envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    if err == nix::errno::Errno::E2BIG {
        return format!(
            "exec {:?}: {err}: process.args and process.env together are too long for execve",
            p.path
        );
    }
    format!("exec {:?}: {err}", p.path)
}

/// Blocks until `hpcc start` connects and says "start". The connection is
/// close-on-exec, so `start` reads EOF exactly when execve succeeded.
fn wait_for_start(listener: &UnixListener, lifeline: Option<&OwnedFd>) -> Option<UnixStream> {
    let mut lifeline = lifeline;
    loop {
        if let Some(life) = lifeline {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(life.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
            // One byte: the container was recorded and we stay; end of
            // file: the creator died (or a supervising run gave up).
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                let mut byte = [0u8; 1];
                match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(life), &mut byte) {
                    Ok(1) => {
                        lifeline = None;
                        continue;
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    _ => return None,
                }
            }
        }
        let (mut conn, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        let mut buf = [0u8; 5];
        if conn.read_exact(&mut buf).is_ok() && &buf == b"start" {
            return Some(conn);
        }
    }
}

/// The whole container setup: build the container, then prepare the process.
pub fn setup(cfg: &InitConfig) -> Result<Prepared> {
    build_container(cfg)?;
    prepare_process(cfg)
}

/// Everything shared by all processes of a container: the rootfs and its
/// files, the terminal, hostname and sysctls. Ranks that join a node's
/// container skip this; its builder did it once.
pub fn build_container(cfg: &InitConfig) -> Result<()> {
    let spec = cfg.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("process is required"))?;
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .with_context(|| format!("process.oomScoreAdj {adj}"))?;
    }
    let before_pivot = || create_hooks(cfg);
    let plan = RootfsPlan {
        spec,
        rootfs: cfg.rootfs,
        bundle: cfg.bundle,
        in_userns: cfg.ns.in_userns,
        has_cgroupns: cfg.ns.has_cgroupns,
        use_mknod: cfg.use_mknod,
        no_pivot: cfg.no_pivot,
        overlay_lower: cfg.overlay_lower,
        before_pivot: cfg
            .hooks
            .as_ref()
            .map(|_| &before_pivot as &dyn Fn() -> Result<()>),
    };
    rootfs::prepare(&plan)?;
    for (path, data) in cfg.files {
        rootfs::files::write_private_file(path, data)?;
    }
    cfg.terminal(true)?;
    if cfg.ns.has_uts {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).map_err(|e| anyhow!("hostname {h:?}: {e}"))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            set_domainname(d)?;
        }
    }
    if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        for (key, value) in sysctl {
            write_sysctl(key, value)?;
        }
    }
    rootfs::finalize(&plan)
}

/// What each process does for itself: limits, identity, capabilities,
/// working directory, and finding its program.
pub fn prepare_process(cfg: &InitConfig) -> Result<Prepared> {
    let process = cfg
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| anyhow!("process is required"))?;
    if let Some(limits) = process.rlimits() {
        crate::security::rlimits::apply(limits)?;
    }
    if !cfg.no_new_keyring {
        let name = CString::new(format!("_ses.{}", cfg.id)).unwrap_or_default();
        if let Err(e) = crate::sys::join_session_keyring(&name) {
            // Kernels without keys, or seccomp'd hosts: not worth failing for.
            crate::debug!("session keyring not created: {e}");
        }
    }
    let args = process.args().as_deref().unwrap_or(&[]);
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    // An unprivileged uid under no_new_privs loses every capability at
    // execve and can never regain one (no setuid, no file capabilities),
    // so there is nothing to drop by hand; any other case drops them here.
    let nnp = process.no_new_privileges() == Some(true);
    // Without no_new_privs a filter needs CAP_SYS_ADMIN, which we still
    // hold now and drop below; with it, the filter waits until execve.
    if !nnp {
        crate::security::seccomp::load(&cfg.seccomp)?;
    }
    let exec_drops_all = process.user().uid() != 0
        && process.no_new_privileges() == Some(true)
        && cfg.caps.is_empty();
    if !exec_drops_all {
        cfg.caps.apply_bounding()?;
        nix::sys::prctl::set_keepcaps(true).map_err(|e| anyhow!("PR_SET_KEEPCAPS: {e}"))?;
    }
    crate::security::user::switch(process.user())?;
    if !exec_drops_all {
        nix::sys::prctl::set_keepcaps(false).map_err(|e| anyhow!("PR_SET_KEEPCAPS: {e}"))?;
        cfg.caps.apply_sets()?;
    }
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().map_err(|e| anyhow!("no_new_privileges: {e}"))?;
    }
    enter_cwd(process.cwd())?;
    let arg0 = args
        .first()
        .ok_or_else(|| anyhow!("process.args is empty"))?;
    let path = super::find_executable(arg0, &env)?;
    if let Some(keep) = cfg.preserve_fds {
        let first = keep
            .checked_add(3)
            .ok_or_else(|| anyhow!("--preserve-fds {keep} is too large"))?;
        crate::sys::cloexec_from(first).map_err(|e| anyhow!("close_range: {e}"))?;
    }
    crate::sys::reset_signal_dispositions();
    crate::security::labels::set_exec_labels(
        process.apparmor_profile().as_deref(),
        process.selinux_label().as_deref(),
    )?;
    Ok(Prepared {
        late_seccomp: if nnp { cfg.seccomp.clone() } else { Vec::new() },
        path: cstring(path.as_os_str().as_encoded_bytes(), "program path")?,
        argv: args
            .iter()
            .map(|a| cstring(a.as_bytes(), "process.args"))
            .collect::<Result<_>>()?,
        envp: env
            .iter()
            .map(|e| cstring(e.as_bytes(), "process.env"))
            .collect::<Result<_>>()?,
    })
}

fn cstring(b: &[u8], what: &str) -> Result<CString> {
    CString::new(b).map_err(|_| anyhow!("{what}: contains a NUL byte"))
}

/// chdir to process.cwd, refusing a cwd outside the container's root (the
/// /proc/self/fd/N trick of CVE-2024-21626).
fn enter_cwd(cwd: &Path) -> Result<()> {
    nix::unistd::chdir(cwd).map_err(|e| anyhow!("process.cwd {}: {e}", cwd.display()))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => bail!(
            "process.cwd {}: resolves outside the container",
            cwd.display()
        ),
    }
}

fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
        })
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    // "net.ipv4.ip_forward" and "net/ipv4/ip_forward" both name a file
    // under /proc/sys; nothing may climb out of it.
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    if rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
    {
        bail!("linux.sysctl: invalid key {key:?}");
    }
    let path = PathBuf::from("/proc/sys").join(rel);
    std::fs::write(&path, value).map_err(|e| anyhow!("linux.sysctl {key}={value}: {e}"))
}

fn set_domainname(d: &str) -> Result<()> {
    std::fs::write("/proc/sys/kernel/domainname", d).map_err(|e| anyhow!("domainname {d:?}: {e}"))
}
