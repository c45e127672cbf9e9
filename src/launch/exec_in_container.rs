//! `hpcc exec`: a new process in a running container. Its namespace plan
//! is the container init's own namespaces under /proc/<init>/ns; the
//! shared spawn protocol enters them (and the cgroup) in a middle process,
//! which forks the process proper so that it lands in the container's PID
//! namespace too. The process reports failure on a close-on-exec pipe, so
//! the parent knows whether the program started.

use super::channel::Msg;
use super::namespaces::{proc_name, NsPlan};
use super::process_setup::{self, ProcessSetup};
use super::spawn::{self, Duties, Middle};
use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

pub struct ExecRequest<'a> {
    pub spec: &'a Spec,
    /// The container's init, whose namespaces the process joins.
    pub init_pid: i32,
    pub preserve_fds: u32,
    /// Where the pty master goes when process.terminal is set.
    pub console: Option<UnixStream>,
    /// The container's cgroup, which the process joins too.
    pub cgroup: Option<(&'a crate::cgroups::CgroupRef, &'a str)>,
}

/// The container's namespaces that differ from ours, as a plan of paths
/// under /proc/`pid`/ns.
fn plan_for(spec: &Spec, pid: i32) -> Result<NsPlan> {
    let types: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|v| v.iter().map(|n| n.typ()).collect())
        .unwrap_or_default();
    let mut theirs = std::collections::HashMap::new();
    for &t in &types {
        let name = proc_name(t);
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
            .with_context(|| format!("container process {pid}: namespace {name}"))?;
        theirs.insert(name, link);
    }
    Ok(NsPlan::join_process(&types, pid, |name| {
        std::fs::read_link(format!("/proc/self/ns/{name}"))
            .ok()
            .as_ref()
            == theirs.get(name)
    }))
}

struct ExecDuties<'a> {
    cgroup: Option<(&'a crate::cgroups::CgroupRef, &'a str)>,
}

impl Duties for ExecDuties<'_> {
    fn write_id_maps(&mut self, _: Pid) -> Result<()> {
        bail!("exec: the process asked for id maps, but it joins an existing user namespace")
    }

    fn join_cgroup(&mut self, middle: Pid) -> Result<()> {
        match self.cgroup {
            Some((c, id)) => crate::cgroups::join(c, id, middle.as_raw()),
            None => Ok(()),
        }
    }
}

/// Starts the process; returns its pid once it has exec'd.
pub fn exec_into(req: ExecRequest) -> Result<i32> {
    let ns = plan_for(req.spec, req.init_pid)?;
    let opened = ns.open()?;
    let console = req.console.map(OwnedFd::from);
    let process = ProcessSetup::new("exec", req.spec)?
        .keep_session_keyring()
        .preserve_fds(Some(req.preserve_fds))
        .exec_console(console);
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("exec status pipe")?;
    let mid = Middle {
        ns: opened,
        join_cgroup: req.cgroup.is_some(),
        non_dumpable: true,
    };
    let spawned = spawn::spawn(mid, vec![err_r], move |_| {
        let mut err = std::fs::File::from(err_w);
        let message = match process
            .exec_terminal()
            .and_then(|()| process_setup::prepare(&process))
        {
            Ok(prepared) => process_setup::exec(&prepared),
            Err(e) => format!("{e:#}"),
        };
        let _ = err.write_all(message.as_bytes());
        127
    })?;
    let mut duties = ExecDuties { cgroup: req.cgroup };
    let pid = loop {
        let msg = match spawned.ch.recv() {
            Ok(Some(m)) => m,
            Ok(None) => break Err(anyhow!("exec: the process did not start")),
            Err(e) => break Err(e),
        };
        match spawn::answer(&spawned.ch, spawned.middle, msg, &mut duties) {
            Ok(None) => {}
            Ok(Some(Msg::InitPid(p))) => break Ok(p),
            Ok(Some(Msg::Error(e))) => break Err(anyhow!(e)),
            Ok(Some(m)) => break Err(anyhow!("launch channel: unexpected {m:?}")),
            Err(e) => break Err(e),
        }
    };
    spawned.reap(pid.is_err(), None);
    let pid = pid?;
    let mut reply = String::new();
    if let Some(err_r) = spawned.kept.into_iter().next() {
        let _ = std::fs::File::from(err_r).read_to_string(&mut reply);
    }
    if !reply.trim().is_empty() {
        bail!("{}", reply.trim());
    }
    Ok(pid)
}
