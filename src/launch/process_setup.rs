//! What every process does for itself before it execs its program, for
//! every front door: limits, identity, capabilities, seccomp, working
//! directory, finding the program, fds. The order is decided by
//! `security::seccomp::load_order`; this file carries it out.

use crate::security::caps::CapPlan;
use crate::security::seccomp::load_order::{self, Facts, Step};
use anyhow::{anyhow, Context, Result};
use oci_spec::runtime::{Process, Spec};
use std::ffi::CString;
use std::os::fd::OwnedFd;

/// A process's setup, computed before any fork so a bad config fails
/// before any process exists.
pub struct ProcessSetup<'a> {
    pub process: &'a Process,
    /// Names the session keyring (`_ses.<id>`).
    id: &'a str,
    caps: CapPlan,
    /// Compiled linux.seccomp.
    seccomp: Vec<seccompiler::BpfProgram>,
    /// Give the process a session keyring of its own. Image mode and
    /// `exec` keep the caller's (AFS and Kerberos tokens live there).
    new_session_keyring: bool,
    /// Fds from 3 up to keep open; None keeps every inherited fd (image
    /// mode, where the launcher's PMI fds must reach the program).
    preserve_fds: Option<u32>,
    /// `exec` with a terminal: the console socket its pty master goes to.
    exec_console: Option<OwnedFd>,
}

impl<'a> ProcessSetup<'a> {
    /// The capability plan and the seccomp filters are derived here once.
    pub fn new(id: &'a str, spec: &'a Spec) -> Result<Self> {
        let process = crate::spec::process_of(spec)?;
        let caps = CapPlan::from_spec(process.capabilities().as_ref())?;
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => crate::security::seccomp::compile(s)?,
            None => Vec::new(),
        };
        Ok(ProcessSetup {
            process,
            id,
            caps,
            seccomp,
            new_session_keyring: true,
            preserve_fds: Some(0),
            exec_console: None,
        })
    }

    /// Keeps the caller's session keyring.
    pub fn keep_session_keyring(mut self) -> Self {
        self.new_session_keyring = false;
        self
    }

    /// Keeps fds 3..3+n open (None: every inherited fd).
    pub fn preserve_fds(mut self, n: Option<u32>) -> Self {
        self.preserve_fds = n;
        self
    }

    /// `exec`: the console socket the new terminal's master goes to.
    pub fn exec_console(mut self, sock: Option<OwnedFd>) -> Self {
        self.exec_console = sock;
        self
    }

    /// The pty of an `exec`'d process, made inside the container.
    pub fn exec_terminal(&self) -> Result<()> {
        match &self.exec_console {
            Some(sock) => super::console::setup_for(sock, self.process, false),
            None => Ok(()),
        }
    }
}

/// What execve needs, resolved inside the container.
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Filters that load just before execve (see load_order).
    late_seccomp: Vec<seccompiler::BpfProgram>,
}

/// Limits, identity, capabilities and the rest, in load_order's order.
pub fn prepare(setup: &ProcessSetup) -> Result<Prepared> {
    let process = setup.process;
    let args = process.args().as_deref().unwrap_or(&[]);
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let nnp = process.no_new_privileges() == Some(true);
    let order = load_order::order(Facts {
        no_new_privs: nnp,
        uid: process.user().uid(),
        no_capabilities: setup.caps.is_empty(),
        has_seccomp: !setup.seccomp.is_empty(),
        new_session_keyring: setup.new_session_keyring,
    });
    let mut program = None;
    let mut in_cwd = false;
    for step in order.prepare {
        match step {
            Step::Rlimits => {
                if let Some(limits) = process.rlimits() {
                    crate::security::rlimits::apply(limits)?;
                }
            }
            Step::SessionKeyring => {
                let name = CString::new(format!("_ses.{}", setup.id)).unwrap_or_default();
                if let Err(e) = crate::sys::join_session_keyring(&name) {
                    // Kernels without keys, or seccomp'd hosts: not worth failing for.
                    crate::debug!("session keyring not created: {e}");
                }
            }
            Step::LoadSeccomp => crate::security::seccomp::load(&setup.seccomp)?,
            Step::DropBounding => setup.caps.apply_bounding()?,
            Step::KeepCaps => {
                nix::sys::prctl::set_keepcaps(true).map_err(|e| anyhow!("PR_SET_KEEPCAPS: {e}"))?
            }
            Step::SwitchUser => crate::security::user::switch(process.user())?,
            Step::KeepCapsOff => {
                nix::sys::prctl::set_keepcaps(false).map_err(|e| anyhow!("PR_SET_KEEPCAPS: {e}"))?
            }
            Step::SetCapabilities => setup.caps.apply_sets()?,
            Step::NoNewPrivs => nix::sys::prctl::set_no_new_privs()
                .map_err(|e| anyhow!("no_new_privileges: {e}"))?,
            Step::EnterCwdAsRoot => in_cwd = super::working_dir::enter_early(process.cwd())?,
            Step::EnterCwd if !in_cwd => super::working_dir::enter(process.cwd())?,
            Step::EnterCwd => {}
            Step::FindProgram => {
                let arg0 = args
                    .first()
                    .ok_or_else(|| anyhow!("process.args is empty"))?;
                program = Some(super::program_path::find_executable(arg0, &env)?);
            }
            Step::MarkFdsCloexec => {
                if let Some(keep) = setup.preserve_fds {
                    let first = keep
                        .checked_add(3)
                        .ok_or_else(|| anyhow!("--preserve-fds {keep} is too large"))?;
                    crate::sys::cloexec_from(first).map_err(|e| {
                        anyhow!("marking fds from {first} close-on-exec (close_range, /proc/self/fd): {e}")
                    })?;
                }
            }
            Step::ResetSignals => crate::sys::reset_signal_dispositions(),
            Step::ExecLabels => crate::security::labels::set_exec_labels(
                process.apparmor_profile().as_deref(),
                process.selinux_label().as_deref(),
            )?,
        }
    }
    let path = program.context("the process setup found no program")?;
    let late_seccomp = if order.at_exec.contains(&Step::LoadSeccomp) {
        setup.seccomp.clone()
    } else {
        Vec::new()
    };
    Ok(Prepared {
        late_seccomp,
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

fn cstring(b: &[u8], what: &str) -> Result<CString> {
    CString::new(b).map_err(|_| anyhow!("{what}: contains a NUL byte"))
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
