//! Turning a Spec into a process that waits for `start`.
//!
//! ```text
//! parent (hpcc create)          child                      init (container PID 1)
//!   fork ───────────────────▶  join/unshare user ns
//!   write id maps  ◀─────────  WriteIdMaps
//!   Proceed ────────────────▶  join/unshare the others
//!                              fork ───────────────────▶  rootfs, pivot_root, security
//!   ◀──────────────────────── InitPid(pid); exit
//!   ◀──────────────────────────────────────────────────── Ready; accept() on start.sock
//!   write state.json, exit                                 "start" → execve
//! ```
//! The second fork is what puts init into a new PID namespace; it also means
//! no hpcc process stays behind once `create` returns.

pub mod channel;
pub mod console;
mod exec;
pub mod execin;
pub mod fdpass;
pub mod idmap;
mod init;
mod inplace;
pub mod namespaces;
pub mod rendezvous;
pub mod supervise;

use crate::cli::CreateOpts;
use crate::spec::Bundle;
use anyhow::{anyhow, bail, Context, Result};
use channel::{Channel, Msg};
use namespaces::NsPlan;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

pub use exec::find_executable;
pub use inplace::exec_in_place;

pub struct LaunchRequest<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub state_dir: &'a Path,
    pub opts: &'a CreateOpts,
    /// Where the pty master goes when process.terminal is set.
    pub console: Option<UnixStream>,
    /// A foreground `run` will start the container itself: if it dies
    /// before it does, init gives up instead of waiting for a `start` that
    /// will never come.
    pub supervised: bool,
    /// The cgroup to create and put the container in, if any.
    pub cgroup: Option<crate::cgroups::CgroupRef>,
    pub rootless: bool,
}

pub struct Launched {
    pub pid: i32,
    pub own_pid_ns: bool,
    /// The write end of init's lifeline pipe: closing it before
    /// commit_lifeline makes init give up. A supervised launch keeps it
    /// open until the container has started.
    pub lifeline: Option<OwnedFd>,
}

/// `/proc/self/fd/N/name` for a file in `dir`: a short path for a unix
/// socket whose real path may exceed the 108 bytes sun_path allows.
pub fn short_socket_path(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

pub fn open_dir_path(dir: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| anyhow!("opening {}: {e}", dir.display()))?;
    Ok(crate::sys::adopt(fd))
}

pub fn launch(req: LaunchRequest) -> Result<Launched> {
    let spec = &req.bundle.spec;
    let ns = NsPlan::from_spec(spec);
    let joins = ns.open_joins()?;
    let dir = open_dir_path(req.state_dir)?;
    let listener = UnixListener::bind(short_socket_path(&dir, crate::container::START_SOCKET))
        .with_context(|| {
            format!(
                "creating {}/{}",
                req.state_dir.display(),
                crate::container::START_SOCKET
            )
        })?;
    drop(dir);
    // Init gives up when the write end closes before it was told the
    // container is recorded (one byte, see commit_lifeline): a create or
    // run killed half-way leaves no init waiting for a `start` nobody
    // can send.
    let (lifeline_r, lifeline_w) = {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("lifeline pipe")?;
        (Some(r), Some(w))
    };
    let (parent_ch, child_ch) = channel::pair()?;
    let init_cfg = init::InitConfig::new(&req, &ns, lifeline_r, &child_ch)?;
    match crate::sys::fork_single_threaded().context("fork")? {
        ForkResult::Child => {
            drop(parent_ch);
            drop(lifeline_w);
            let code = match child_main(&child_ch, &ns, joins, &init_cfg, listener) {
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
            drop(init_cfg);
            drop(listener);
            drop(joins);
            let mut init_pid = None;
            let result = parent_main(&parent_ch, child, &req, &mut init_pid);
            // The middle child always exits once init is forked or setup failed.
            if result.is_err() {
                let _ = kill(child, Signal::SIGKILL);
                if let Some(p) = init_pid {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            let _ = waitpid(child, None);
            let pid = result?;
            Ok(Launched {
                pid,
                own_pid_ns: ns.new_pid,
                lifeline: lifeline_w,
            })
        }
    }
}

fn parent_main(
    ch: &Channel,
    child: Pid,
    req: &LaunchRequest,
    init_pid: &mut Option<i32>,
) -> Result<i32> {
    let spec = &req.bundle.spec;
    // InitPid (from the middle child) and Ready (from init) race each
    // other on the channel; both must have arrived.
    let mut ready = false;
    while !ready || init_pid.is_none() {
        match ch.recv()? {
            Some(Msg::WriteIdMaps) => {
                write_id_maps(child.as_raw(), spec)?;
                ch.send(&Msg::Proceed)?;
            }
            Some(Msg::JoinCgroup) => {
                if let Some(c) = &req.cgroup {
                    crate::cgroups::enter(c, req.id, spec, child.as_raw(), req.rootless)?;
                }
                ch.send(&Msg::Proceed)?;
            }
            Some(Msg::InitPid(p)) => {
                *init_pid = Some(p);
                record_half_made_init(req.state_dir, p);
            }
            Some(Msg::CreateRuntime) => {
                while init_pid.is_none() {
                    match ch.recv()? {
                        Some(Msg::InitPid(p)) => {
                            *init_pid = Some(p);
                            record_half_made_init(req.state_dir, p);
                        }
                        Some(Msg::Error(e)) => bail!(e),
                        _ => bail!("container init exited before it reported its pid"),
                    }
                }
                let state = creating_state(req, init_pid.unwrap_or(0));
                run_create_runtime_hooks(spec, &state)?;
                ch.send(&Msg::HookState(state.to_string()))?;
            }
            Some(Msg::Ready) => ready = true,
            Some(Msg::Error(e)) => bail!(e),
            Some(m) => bail!("launch channel: unexpected {m:?}"),
            None => bail!("container init exited before it was ready"),
        }
    }
    init_pid.ok_or_else(|| anyhow!("container init did not report its pid"))
}

/// Tells init that the container is recorded (state.json written), so it
/// keeps waiting for `start` after we exit.
pub fn commit_lifeline(lifeline: OwnedFd) -> Result<()> {
    nix::unistd::write(&lifeline, b"c").context("telling the container init it was recorded")?;
    Ok(())
}

/// Notes the init's pid and start time in the state dir as soon as it is
/// known, so that `delete --force` can kill an init whose `create` was
/// killed before it wrote state.json (a rootless container has no cgroup
/// to find it by). Best effort: the normal paths do not need it.
fn record_half_made_init(state_dir: &Path, pid: i32) {
    if let Some(st) = crate::procfs::stat(pid) {
        let _ = crate::container::state::write_atomic(
            &state_dir.join(crate::container::state::INIT_FILE),
            format!("{pid} {}\n", st.start_time).as_bytes(),
            0o600,
        );
    }
}

/// The state hooks see while the container is being created.
fn creating_state(req: &LaunchRequest, pid: i32) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": crate::cli::OCI_SPEC_VERSION,
        "id": req.id,
        "status": "creating",
        "pid": pid,
        "bundle": req.bundle.dir,
        "annotations": req.bundle.spec.annotations().clone().unwrap_or_default(),
    })
}

#[allow(deprecated)]
fn run_create_runtime_hooks(
    spec: &oci_spec::runtime::Spec,
    state: &serde_json::Value,
) -> Result<()> {
    let Some(h) = spec.hooks().as_ref() else {
        return Ok(());
    };
    if let Some(p) = h.prestart() {
        crate::hooks::run(p, "prestart", state)?;
    }
    if let Some(c) = h.create_runtime() {
        crate::hooks::run(c, "createRuntime", state)?;
    }
    Ok(())
}

fn write_id_maps(pid: i32, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| anyhow!("no linux section"))?;
    // Root inside someone else's user namespace is not privileged over ours.
    let privileged = is_real_root();
    idmap::write_map(
        pid,
        idmap::IdKind::Uid,
        linux.uid_mappings().as_deref().unwrap_or(&[]),
        privileged,
    )?;
    idmap::write_map(
        pid,
        idmap::IdKind::Gid,
        linux.gid_mappings().as_deref().unwrap_or(&[]),
        privileged,
    )
}

/// Real root: uid 0 in the host's user namespace, able to chown, mknod and
/// write any id map.
pub fn is_real_root() -> bool {
    nix::unistd::geteuid().is_root() && in_initial_userns()
}

/// True when this process is in the host's user namespace (the identity map
/// covers all 2^32-1 ids).
pub fn in_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|s| s.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

/// The middle process: enters the namespaces, then forks init into them.
fn child_main(
    ch: &Channel,
    ns: &NsPlan,
    joins: Vec<(CloneFlags, OwnedFd)>,
    cfg: &init::InitConfig,
    listener: UnixListener,
) -> Result<()> {
    if cfg.wants_cgroup() {
        ch.send(&Msg::JoinCgroup)?;
        ch.expect(Msg::Proceed)?;
    }
    let mut joins = joins.into_iter().peekable();
    if let Some((_, fd)) = joins.next_if(|(f, _)| *f == CloneFlags::CLONE_NEWUSER) {
        setns(&fd, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| anyhow!("joining user namespace: {e}"))?;
        become_userns_root();
    } else if ns.new_user {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| anyhow!("creating user namespace: {e}"))?;
        ch.send(&Msg::WriteIdMaps)?;
        ch.expect(Msg::Proceed)?;
        become_userns_root();
    }
    for (flag, fd) in joins {
        setns(&fd, flag).map_err(|e| anyhow!("joining namespace {flag:?}: {e}"))?;
    }
    unshare(ns.create).map_err(|e| anyhow!("creating namespaces {:?}: {e}", ns.create))?;
    match crate::sys::fork_single_threaded().context("fork of container init")? {
        ForkResult::Child => {
            let code = init::run(ch, cfg, listener);
            crate::sys::exit_child(code)
        }
        ForkResult::Parent { child } => ch.send(&Msg::InitPid(child.as_raw())),
    }
}

/// Inside a fresh user namespace our ids may be unmapped; files we create
/// while building the rootfs must belong to the namespace's root, as in runc.
fn become_userns_root() {
    let zero_g = nix::unistd::Gid::from_raw(0);
    let zero_u = nix::unistd::Uid::from_raw(0);
    // Fails (EINVAL) only when 0 is not mapped; then we keep our ids.
    let _ = nix::unistd::setresgid(zero_g, zero_g, zero_g);
    let _ = nix::unistd::setresuid(zero_u, zero_u, zero_u);
}
