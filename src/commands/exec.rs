//! `hpcc exec`: run another process in a running container, as runc does
//! for `docker exec`, `podman exec` and `ctr task exec`.

use super::Ctx;
use crate::cli::ExecArgs;
use crate::container::Status;
use crate::launch::exec_in_container::{exec_into, ExecRequest};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Capability, Process};
use std::str::FromStr;

pub fn run(ctx: &Ctx, a: &ExecArgs) -> Result<i32> {
    let st = ctx.store.load(&a.id)?;
    match ctx.store.status(&st) {
        Status::Stopped => bail!("cannot exec in a stopped container {}", a.id),
        Status::Paused => bail!("cannot exec in a paused container {}", a.id),
        _ => {}
    }
    let bundle = crate::spec::load_bundle(&st.bundle)?;
    let mut spec = bundle.spec.clone();
    let process = build_process(&spec, a)?;
    let terminal = process.terminal().unwrap_or(false);
    spec.set_process(Some(process));
    if terminal && a.detach && a.console_socket.is_none() {
        bail!("exec: a detached process with a terminal needs --console-socket");
    }
    let foreground = !a.detach;
    if foreground {
        // The process is our grandchild; as subreaper we can wait for it.
        nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    }
    let (ours, theirs) = match (&a.console_socket, terminal) {
        (Some(path), true) => (
            None,
            Some(
                super::create::connect_unix(path)
                    .with_context(|| format!("--console-socket {}", path.display()))?,
            ),
        ),
        (None, true) => {
            let (o, t) = std::os::unix::net::UnixStream::pair().context("console socketpair")?;
            (Some(o), Some(t))
        }
        (_, false) => (None, None),
    };
    let pid = exec_into(ExecRequest {
        spec: &spec,
        init_pid: st.pid,
        preserve_fds: a.preserve_fds,
        console: theirs,
        cgroup: st.cgroup.as_ref().map(|c| (c, st.id.as_str())),
    })?;
    if let Some(p) = &a.pid_file {
        super::create::write_pid_file(p, pid)?;
    }
    if !foreground {
        return Ok(0);
    }
    let relay = match ours {
        Some(sock) => Some(crate::launch::console::recv_fd(
            &std::os::fd::OwnedFd::from(sock),
        )?),
        None => None,
    };
    crate::launch::supervise::forward_signals(pid)?;
    let _relay = relay.map(crate::tty::Relay::start).transpose()?;
    crate::launch::supervise::wait_for(pid)
}

/// The process from --process, or the container's own with the command
/// line's changes.
fn build_process(spec: &oci_spec::runtime::Spec, a: &ExecArgs) -> Result<Process> {
    if let Some(path) = &a.process {
        let data = std::fs::read(path).with_context(|| format!("--process {}", path.display()))?;
        let p: Process = serde_json::from_slice(&data)
            .map_err(|e| anyhow!("--process {}: {e}", path.display()))?;
        if p.args().as_ref().is_none_or(|v| v.is_empty()) {
            bail!("--process {}: args must name a program", path.display());
        }
        return Ok(p);
    }
    if a.command.is_empty() {
        bail!("exec: give a command, or --process FILE");
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.into());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        let uid: u32 = uid
            .parse()
            .map_err(|_| anyhow!("--user {u:?}: expected UID[:GID]"))?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(
                g.parse()
                    .map_err(|_| anyhow!("--user {u:?}: expected UID[:GID]"))?,
            );
        }
        p.set_user(user);
    }
    if !a.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.caps {
            let full = if name.starts_with("CAP_") {
                name.clone()
            } else {
                format!("CAP_{name}")
            };
            let cap: Capability = serde_json::from_value(serde_json::Value::String(full.clone()))
                .or_else(|_| Capability::from_str(full.trim_start_matches("CAP_")))
                .map_err(|_| anyhow!("--cap {name}: unknown capability"))?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            let (b, e, pe) = (
                add(caps.bounding()),
                add(caps.effective()),
                add(caps.permitted()),
            );
            caps.set_bounding(b);
            caps.set_effective(e);
            caps.set_permitted(pe);
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}
