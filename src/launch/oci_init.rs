//! The OCI start protocol, in the container's init: build the container,
//! prepare the process, report `Ready`, then wait on start.sock for
//! `hpcc start` and exec. The createContainer and startContainer hooks run
//! here, in the container's namespaces; prestart and createRuntime run in
//! the parent, asked for over the launch channel.

use super::channel::{Channel, Msg};
use super::container_setup::{self, ContainerSetup};
use super::process_setup::{self, ProcessSetup};
use anyhow::{bail, Result};
use oci_spec::runtime::Spec;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};

/// What only the OCI init needs, on top of the container and process setup.
pub struct InitProtocol {
    /// The read end of the lifeline pipe: end of file before the
    /// "recorded" byte means `create` died, and init gives up.
    pub lifeline: Option<OwnedFd>,
    /// Set when the config has hooks init must take part in: the channel
    /// to ask the parent for the runtime-namespace ones.
    pub hooks: Option<Channel>,
    /// The state JSON the parent sent for createContainer/startContainer.
    hook_state: RefCell<Option<serde_json::Value>>,
}

impl InitProtocol {
    pub fn new(spec: &Spec, lifeline: Option<OwnedFd>, ch: &Channel) -> Result<Self> {
        let hooks = if needs_init_hooks(spec) {
            Some(ch.try_clone()?)
        } else {
            None
        };
        Ok(InitProtocol {
            lifeline,
            hooks,
            hook_state: RefCell::new(None),
        })
    }
}

/// Runs in the container init. Returns only on failure (the exit code).
pub fn run(
    ch: &Channel,
    container: &ContainerSetup,
    process: &ProcessSetup,
    init: &InitProtocol,
    listener: UnixListener,
) -> i32 {
    let spec = container.spec;
    let before_pivot = || create_hooks(spec, init);
    let hook = init
        .hooks
        .as_ref()
        .map(|_| &before_pivot as &dyn Fn() -> Result<()>);
    let prepared = match container_setup::build(container, hook)
        .and_then(|()| process_setup::prepare(process))
    {
        Ok(p) => p,
        Err(e) => {
            let _ = ch.send(&Msg::Error(format!("{e:#}")));
            return 1;
        }
    };
    if ch.send(&Msg::Ready).is_err() {
        return 1;
    }
    let Some(mut conn) = wait_for_start(&listener, init.lifeline.as_ref()) else {
        return 1;
    };
    drop(listener);
    if let Err(e) = start_hooks(spec, init) {
        let _ = writeln!(conn, "{e:#}");
        return 1;
    }
    let err = process_setup::exec(&prepared);
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
fn create_hooks(spec: &Spec, init: &InitProtocol) -> Result<()> {
    let Some(ch) = &init.hooks else { return Ok(()) };
    ch.send(&Msg::CreateRuntime)?;
    let state: serde_json::Value = match ch.recv()? {
        Some(Msg::HookState(s)) => serde_json::from_str(&s)?,
        Some(Msg::Error(e)) => bail!(e),
        _ => bail!("launch channel: no answer to the createRuntime hooks"),
    };
    if let Some(h) = hooks_of(spec).and_then(|h| h.create_container().as_ref()) {
        crate::hooks::run(h, "createContainer", &state)?;
    }
    *init.hook_state.borrow_mut() = Some(state);
    Ok(())
}

/// After `start`, before the program: startContainer, in the container.
fn start_hooks(spec: &Spec, init: &InitProtocol) -> Result<()> {
    let Some(h) = hooks_of(spec).and_then(|h| h.start_container().as_ref()) else {
        return Ok(());
    };
    let mut state = init.hook_state.borrow().clone().unwrap_or_default();
    state["status"] = "created".into();
    crate::hooks::run(h, "startContainer", &state)
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
