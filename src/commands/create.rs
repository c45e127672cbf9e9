//! `hpcc create`: set up a container whose process waits for `start`.

use super::Ctx;
use crate::cli::{CreateArgs, CreateOpts};
use crate::container::{validate_id, ContainerState};
use crate::launch::create::{self as launch, LaunchRequest};
use anyhow::{Context, Result};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub fn run(ctx: &Ctx, a: &CreateArgs) -> Result<i32> {
    create_container(ctx, &a.id, &a.opts, None, false)?;
    Ok(0)
}

/// Creates the container and records it. `console` overrides
/// --console-socket (the foreground `run` brings its own). On any failure
/// nothing is left: no process, no state directory.
pub struct Created {
    pub state: ContainerState,
    /// Held by a supervising `run` until it has started the container.
    pub lifeline: Option<std::os::fd::OwnedFd>,
    /// process.terminal was set, so a pty master went to the console socket.
    pub terminal: bool,
}

/// `supervised`: see LaunchRequest::supervised.
pub fn create_container(
    ctx: &Ctx,
    id: &str,
    opts: &CreateOpts,
    console: Option<UnixStream>,
    supervised: bool,
) -> Result<Created> {
    validate_id(id)?;
    let bundle_dir = opts.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut bundle = crate::spec::load_bundle(&bundle_dir)?;
    // systemd socket activation, as runc honours it: fds 3.. of LISTEN_FDS
    // pass to the container, which is told about them.
    let listen_fds = socket_activation(&mut bundle.spec)?;
    let opts = &CreateOpts {
        preserve_fds: opts.preserve_fds.max(listen_fds),
        ..opts.clone()
    };
    let rootless = match ctx.global.rootless {
        crate::cli::Rootless::True => true,
        crate::cli::Rootless::False => false,
        crate::cli::Rootless::Auto => !crate::sys::is_real_root(),
    };
    let cgroup = crate::cgroups::plan(&bundle.spec, id, ctx.global.systemd_cgroup, rootless)?;
    let state_dir = ctx.store.claim(id)?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let result = (|| -> Result<Created> {
        // Recorded before the cgroup exists, so that `delete --force` can
        // remove it after a create killed half-way (no state.json yet).
        if let Some(c) = &cgroup {
            crate::fs::write_atomic(
                &state_dir.join(crate::container::state::CGROUP_FILE),
                &serde_json::to_vec(c)?,
                0o600,
            )?;
        }
        // Without a mount namespace the container mounts in ours: noted
        // before the first mount, so that delete finds them whatever
        // happens to this create.
        let host_mounts = !crate::spec::has_mount_namespace(&bundle.spec);
        if host_mounts {
            crate::fs::write_atomic(
                &state_dir.join(crate::container::state::HOST_MOUNTS_FILE),
                bundle.rootfs.as_os_str().as_encoded_bytes(),
                0o600,
            )?;
        }
        let console = match (console, &opts.console_socket) {
            (Some(c), _) => Some(c),
            (None, Some(path)) => Some(
                connect_unix(path)
                    .with_context(|| format!("--console-socket {}", path.display()))?,
            ),
            (None, None) => None,
        };
        let launched = launch::launch(LaunchRequest {
            id,
            bundle: &bundle,
            state_dir: &state_dir,
            opts,
            console,
            supervised,
            cgroup: cgroup.clone(),
            rootless,
        });
        let launched = match launched {
            Ok(l) => l,
            Err(e) => {
                if let Some(c) = &cgroup {
                    let _ = crate::cgroups::remove(c, id);
                }
                if host_mounts {
                    let _ = crate::rootfs::detach_mounts_under(&bundle.rootfs);
                }
                return Err(e);
            }
        };
        let st = ContainerState {
            id: id.to_string(),
            pid: launched.pid,
            start_time: crate::procfs::stat(launched.pid)
                .map(|s| s.start_time)
                .ok_or_else(|| {
                    anyhow::anyhow!("container process {} vanished during create", launched.pid)
                })?,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: crate::timefmt::now(),
            owner: owner_name(),
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            own_pid_ns: launched.own_pid_ns,
            cgroup: cgroup.clone(),
        };
        let saved = ctx.store.save(&st).and_then(|()| match &opts.pid_file {
            Some(p) => write_pid_file(p, st.pid),
            None => Ok(()),
        });
        if let Err(e) = saved {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(st.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(e);
        }
        // Recorded: a detached create's init may now outlive us.
        let lifeline = match (supervised, launched.lifeline) {
            (false, Some(l)) => {
                launch::commit_lifeline(l)?;
                None
            }
            (_, l) => l,
        };
        Ok(Created {
            state: st,
            lifeline,
            terminal,
        })
    })();
    if result.is_err() {
        let _ = ctx.store.remove(id);
    }
    result
}

/// LISTEN_FDS=N in our environment: keep fds 3..3+N open and set
/// LISTEN_FDS=N and LISTEN_PID=1 in the container's environment.
fn socket_activation(spec: &mut oci_spec::runtime::Spec) -> Result<u32> {
    let Some(n) = std::env::var("LISTEN_FDS").ok().filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let n: u32 = n
        .parse()
        .map_err(|_| anyhow::anyhow!("LISTEN_FDS={n:?} is not a number"))?;
    if let Some(p) = spec.process_mut() {
        let mut env = p.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
        env.push(format!("LISTEN_FDS={n}"));
        env.push("LISTEN_PID=1".to_string());
        p.set_env(Some(env));
    }
    Ok(n)
}

/// Writes the pid file atomically, relative to our cwd like runc.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    crate::fs::write_atomic(&abs, pid.to_string().as_bytes(), 0o644)
        .with_context(|| format!("--pid-file {}", path.display()))
}

/// Connects to a unix socket whose path may be longer than sun_path.
pub fn connect_unix(path: &Path) -> Result<UnixStream> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("{}: not a socket path", path.display()))?;
    let dir = crate::fs::open_dir_path(parent)?;
    Ok(UnixStream::connect(crate::fs::short_socket_path(
        &dir, name,
    ))?)
}

fn owner_name() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}
