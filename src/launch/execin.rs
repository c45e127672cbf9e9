//! `exec`: a new process in a running container. The parent forks a child
//! that enters the container's namespaces (user first), which forks the
//! process proper so that it lands in the container's PID namespace too.
//! The process reports failure on a close-on-exec pipe, so the parent
//! knows whether the program started.

use super::channel::{self, Channel, Msg};
use super::init::{self, InitConfig};
use super::namespaces::NsPlan;
use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::unistd::{ForkResult, Pid};
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

fn proc_name(t: LinuxNamespaceType) -> &'static str {
    use LinuxNamespaceType as T;
    match t {
        T::Mount => "mnt",
        T::Cgroup => "cgroup",
        T::Uts => "uts",
        T::Ipc => "ipc",
        T::User => "user",
        T::Pid => "pid",
        T::Network => "net",
        T::Time => "time",
    }
}

/// The container's namespaces that differ from ours, user first and mount
/// last (joining it changes what paths mean).
fn namespaces_to_join(spec: &Spec, pid: i32) -> Result<Vec<(CloneFlags, OwnedFd)>> {
    let mut types: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|v| v.iter().map(|n| n.typ()).collect())
        .unwrap_or_default();
    types.sort_by_key(|t| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    });
    let mut out = Vec::new();
    for t in types {
        let name = proc_name(t);
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
            .with_context(|| format!("container process {pid}: namespace {name}"))?;
        if std::fs::read_link(format!("/proc/self/ns/{name}"))
            .ok()
            .as_ref()
            == Some(&theirs)
        {
            continue;
        }
        let fd = nix::fcntl::open(
            format!("/proc/{pid}/ns/{name}").as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| anyhow!("opening the container's {name} namespace: {e}"))?;
        out.push((super::namespaces::clone_flag(t), crate::sys::adopt(fd)));
    }
    Ok(out)
}

/// Starts the process; returns its pid once it has exec'd.
pub fn exec_into(req: ExecRequest) -> Result<i32> {
    let joins = namespaces_to_join(req.spec, req.init_pid)?;
    let ns = NsPlan::from_spec(req.spec);
    let console = req.console.map(OwnedFd::from);
    let cfg = InitConfig::for_exec(req.spec, &ns, req.preserve_fds, console)?;
    let (parent_ch, child_ch) = channel::pair()?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("exec status pipe")?;
    match crate::sys::fork_single_threaded().context("fork")? {
        ForkResult::Child => {
            drop(parent_ch);
            drop(err_r);
            let code = match enter_and_fork(&child_ch, joins, &cfg, err_w, req.cgroup.is_some()) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_ch.send(&Msg::Error(format!("{e:#}")));
                    1
                }
            };
            crate::sys::exit_child(code)
        }
        ForkResult::Parent { child } => {
            drop(child_ch);
            drop(err_w);
            let mut pid = parent_ch.recv();
            if let Ok(Some(Msg::JoinCgroup)) = pid {
                let joined = match req.cgroup {
                    Some((c, id)) => crate::cgroups::join(c, id, child.as_raw()),
                    None => Ok(()),
                };
                pid = match joined.and_then(|()| parent_ch.send(&Msg::Proceed)) {
                    Ok(()) => parent_ch.recv(),
                    Err(e) => Err(e),
                };
            }
            let pid = match pid {
                Ok(Some(Msg::InitPid(p))) => Ok(p),
                Ok(Some(Msg::Error(e))) => Err(anyhow!(e)),
                Ok(_) => Err(anyhow!("exec: the process did not start")),
                Err(e) => Err(e),
            };
            let _ = nix::sys::wait::waitpid(child, None);
            let pid = pid?;
            let mut reply = String::new();
            let _ = std::fs::File::from(err_r).read_to_string(&mut reply);
            if !reply.trim().is_empty() {
                bail!("{}", reply.trim());
            }
            Ok(pid)
        }
    }
}

fn enter_and_fork(
    ch: &Channel,
    joins: Vec<(CloneFlags, OwnedFd)>,
    cfg: &InitConfig,
    err_w: OwnedFd,
    cgroup: bool,
) -> Result<()> {
    // Not dumpable before entering anything (CVE-2016-9962, and the
    // /proc/N/exe half of CVE-2019-5736): the container's processes cannot
    // ptrace us or open our /proc files (exe, fd, mem) until our program
    // is exec'd, which makes the process dumpable again.
    nix::sys::prctl::set_dumpable(false).map_err(|e| anyhow!("PR_SET_DUMPABLE: {e}"))?;
    // Into the container's cgroup first, while our cgroup namespace is
    // still the host's.
    if cgroup {
        ch.send(&Msg::JoinCgroup)?;
        ch.expect(Msg::Proceed)?;
    }
    for (flag, fd) in joins {
        setns(&fd, flag).map_err(|e| anyhow!("joining the container's namespace {flag:?}: {e}"))?;
    }
    nix::unistd::chdir("/").map_err(|e| anyhow!("chdir /: {e}"))?;
    match crate::sys::fork_single_threaded().context("fork")? {
        ForkResult::Child => {
            let mut err = std::fs::File::from(err_w);
            let message = match cfg
                .exec_terminal()
                .and_then(|()| init::prepare_process(cfg))
            {
                Ok(prepared) => init::exec(&prepared),
                Err(e) => format!("{e:#}"),
            };
            let _ = err.write_all(message.as_bytes());
            crate::sys::exit_child(127)
        }
        ForkResult::Parent { child } => ch.send(&Msg::InitPid(Pid::as_raw(child))),
    }
}
