//! `create`'s launch: turn a bundle's Spec into an init that waits for
//! `start`, through the shared spawn protocol (spawn.rs).
//!
//! ```text
//! parent (hpcc create)          middle                     init (container PID 1)
//!   spawn ──────────────────▶  cgroup, namespaces
//!                              fork ───────────────────▶  rootfs, pivot_root, security
//!   ◀──────────────────────── InitPid(pid); exit
//!   run prestart/createRuntime hooks ◀──────────────────── CreateRuntime (before pivot_root)
//!   ◀──────────────────────────────────────────────────── Ready; accept() on start.sock
//!   write state.json, exit                                 "start" → execve
//! ```

use super::channel::Msg;
use super::container_setup::ContainerSetup;
use super::namespaces::NsPlan;
use super::oci_init::{self, InitProtocol};
use super::process_setup::ProcessSetup;
use super::spawn::{self, Duties, Middle, Spawned};
use crate::cli::CreateOpts;
use crate::container::state::INIT_FILE;
use crate::container::START_SOCKET;
use crate::spec::Bundle;
use anyhow::{anyhow, bail, Context, Result};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

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

pub fn launch(req: LaunchRequest) -> Result<Launched> {
    let spec = &req.bundle.spec;
    let ns = NsPlan::from_spec(spec);
    let opened = ns.open()?;
    let dir = crate::fs::open_dir_path(req.state_dir)?;
    let listener = UnixListener::bind(crate::fs::short_socket_path(&dir, START_SOCKET))
        .with_context(|| format!("creating {}/{START_SOCKET}", req.state_dir.display()))?;
    drop(dir);
    // Init gives up when the write end closes before it was told the
    // container is recorded (one byte, see commit_lifeline): a create or
    // run killed half-way leaves no init waiting for a `start` nobody
    // can send.
    let (lifeline_r, lifeline_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("lifeline pipe")?;
    let terminal = crate::spec::process_of(spec)?.terminal().unwrap_or(false);
    let console = match (&req.console, terminal) {
        (Some(s), true) => Some(OwnedFd::from(s.try_clone().context("console socket")?)),
        (None, true) => bail!("process.terminal is true but no --console-socket was given"),
        (_, false) => None,
    };
    let container = ContainerSetup::new(spec, &req.bundle.rootfs, &req.bundle.dir, &ns)?
        .no_pivot(req.opts.no_pivot)
        .console(console);
    let mut process = ProcessSetup::new(req.id, spec)?.preserve_fds(Some(req.opts.preserve_fds));
    if req.opts.no_new_keyring {
        process = process.keep_session_keyring();
    }
    let mid = Middle {
        ns: opened,
        join_cgroup: req.cgroup.is_some(),
        non_dumpable: false,
    };
    let spawned = spawn::spawn(mid, vec![lifeline_w], |ch| {
        match InitProtocol::new(spec, Some(lifeline_r), ch) {
            Ok(init) => oci_init::run(ch, &container, &process, &init, listener),
            Err(e) => {
                let _ = ch.send(&Msg::Error(format!("{e:#}")));
                1
            }
        }
    })?;
    let mut init_pid = None;
    let result = parent_main(&spawned, &req, &mut init_pid);
    spawned.reap(result.is_err(), init_pid);
    let pid = result?;
    Ok(Launched {
        pid,
        own_pid_ns: ns.new_pid,
        lifeline: spawned.kept.into_iter().next(),
    })
}

/// `create`'s side of the middle's requests.
struct CreateDuties<'a, 'b> {
    req: &'a LaunchRequest<'b>,
}

impl Duties for CreateDuties<'_, '_> {
    fn write_id_maps(&mut self, middle: Pid) -> Result<()> {
        write_id_maps(middle.as_raw(), &self.req.bundle.spec)
    }

    fn join_cgroup(&mut self, middle: Pid) -> Result<()> {
        let r = self.req;
        match &r.cgroup {
            Some(c) => crate::cgroups::enter(c, r.id, &r.bundle.spec, middle.as_raw(), r.rootless),
            None => Ok(()),
        }
    }
}

fn parent_main(s: &Spawned, req: &LaunchRequest, init_pid: &mut Option<i32>) -> Result<i32> {
    let spec = &req.bundle.spec;
    let mut duties = CreateDuties { req };
    // InitPid (from the middle child) and Ready (from init) race each
    // other on the channel; both must have arrived.
    let mut ready = false;
    while !ready || init_pid.is_none() {
        let Some(msg) = s.ch.recv()? else {
            bail!("container init exited before it was ready");
        };
        match spawn::answer(&s.ch, s.middle, msg, &mut duties)? {
            None => {}
            Some(Msg::InitPid(p)) => {
                *init_pid = Some(p);
                record_half_made_init(req.state_dir, p);
            }
            Some(Msg::CreateRuntime) => {
                while init_pid.is_none() {
                    match s.ch.recv()? {
                        Some(Msg::InitPid(p)) => {
                            *init_pid = Some(p);
                            record_half_made_init(req.state_dir, p);
                        }
                        Some(Msg::Error(e)) => bail!(e),
                        _ => bail!("container init exited before it reported its pid"),
                    }
                }
                let state = create_hooks_state(req, init_pid.unwrap_or(0));
                run_create_runtime_hooks(spec, &state)?;
                s.ch.send(&Msg::HookState(state.to_string()))?;
            }
            Some(Msg::Ready) => ready = true,
            Some(Msg::Error(e)) => bail!(e),
            Some(m) => bail!("launch channel: unexpected {m:?}"),
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
        let _ = crate::fs::write_atomic(
            &state_dir.join(INIT_FILE),
            format!("{pid} {}\n", st.start_time).as_bytes(),
            0o600,
        );
    }
}

/// The state the prestart, createRuntime and createContainer hooks see.
/// They run once the runtime environment exists, which the runtime-spec
/// calls "created" ("after step 2 in the lifecycle"), as crun reports it
/// and runtime-tools checks; runc says "creating".
fn create_hooks_state(req: &LaunchRequest, pid: i32) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": crate::cli::OCI_SPEC_VERSION,
        "id": req.id,
        "status": "created",
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
    let privileged = crate::sys::is_real_root();
    super::idmap::write_map(
        pid,
        super::idmap::IdKind::Uid,
        linux.uid_mappings().as_deref().unwrap_or(&[]),
        privileged,
    )?;
    super::idmap::write_map(
        pid,
        super::idmap::IdKind::Gid,
        linux.gid_mappings().as_deref().unwrap_or(&[]),
        privileged,
    )
}
