//! The HPC launch layer of image mode: who the user is inside, which
//! environment, binds and devices the container gets, and (node_join/) how
//! the ranks of one job on one node share one set of namespaces.

pub mod binds;
pub mod cdi;
pub mod env;
pub mod gpu_ids;
pub mod gpu_libraries;
pub mod host_devices;
pub mod identity;
pub mod ld_cache;
pub mod node_join;
pub mod record;
pub mod replay;
pub mod site;

use anyhow::{Context, Result};
use binds::Bind;
use host_devices::{DevicePlan, GpuSelect};
use identity::Identity;
use site::SiteConfig;
use std::path::{Path, PathBuf};

/// What the command line asks of the HPC layer.
#[derive(Debug, Default, Clone)]
pub struct HpcOptions {
    pub binds: Vec<Bind>,
    pub env: Vec<(String, String)>,
    pub env_files: Vec<PathBuf>,
    pub clean_env: bool,
    pub fakeroot: bool,
    pub gpus: Option<String>,
    /// `--device`: CDI names and host device nodes.
    pub devices: Vec<cdi::DeviceRequest>,
    pub workdir: Option<String>,
    /// The caller is not real root (a user namespace will be made).
    pub rootless: bool,
}

/// Everything image mode adds to a container beyond the image itself.
#[derive(Debug)]
pub struct HpcPlan {
    pub identity: Identity,
    /// uid/gid the program runs as inside (0 with --fakeroot).
    pub inside_uid: u32,
    pub inside_gid: u32,
    pub env: Vec<(String, String)>,
    pub binds: Vec<Bind>,
    pub devices: DevicePlan,
    /// The start directory when the host's cwd is visible inside.
    pub cwd: Option<PathBuf>,
    /// Files written into the container's private overlay.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// Bind the host's /dev instead of building a private one.
    pub share_host_dev: bool,
}

pub fn plan(
    site: &SiteConfig,
    opts: &HpcOptions,
    image_env: &[String],
    rootfs: &Path,
    uid: u32,
    gid: u32,
) -> Result<HpcPlan> {
    let identity = identity::host_identity(uid, gid);
    let (inside_uid, inside_gid) = if opts.fakeroot { (0, 0) } else { (uid, gid) };
    let binds = binds::plan(&opts.binds, site, Some(&identity.home))?;
    let gpus = gpu_selection(opts)?;
    let mut devices = plan_devices(site, opts, &gpus)?;
    // With nothing to hide, an unprivileged user's container shares the
    // host's /dev as Apptainer and Charliecloud do: one mount instead of a
    // tmpfs, a devpts and a bind per node. A GPU selection, --device,
    // stand-in devices (dev_dir) or real root get a private /dev.
    let share_host_dev = opts.rootless
        && gpus == GpuSelect::All
        && opts.devices.is_empty()
        && site.dev_dir() == Path::new("/dev");
    let mut binds = binds;
    if share_host_dev {
        devices.binds.retain(|b| !b.container.starts_with("/dev"));
        binds.retain(|b| !(b.src == Path::new("/dev/shm") && b.dst == Path::new("/dev/shm")));
    }
    let mut explicit = Vec::new();
    for f in &opts.env_files {
        explicit.extend(env::read_env_file(f)?);
    }
    explicit.extend(devices.env.iter().cloned());
    explicit.extend(opts.env.iter().cloned());
    let host: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut env = env::compose(&env::EnvInputs {
        host,
        image: image_env,
        site_patterns: &site.env,
        explicit,
        clean: opts.clean_env,
    });
    prepend_path(&mut env, "LD_LIBRARY_PATH", &devices.lib_dirs);
    prepend_path(&mut env, "PATH", &devices.bin_dirs);
    env::fix_locale(&mut env, rootfs);
    let cwd = match &opts.workdir {
        Some(_) => None,
        None => std::env::current_dir()
            .ok()
            .and_then(|c| Some(c.clone()).zip(binds::cwd_inside(&binds, &c)))
            .and_then(|(host, inside)| reachable_cwd(&host, inside)),
    };
    let who = Identity {
        uid: inside_uid,
        gid: inside_gid,
        ..identity.clone()
    };
    let mut files = vec![
        (
            PathBuf::from("/etc/passwd"),
            identity::passwd_file(rootfs, &who),
        ),
        (
            PathBuf::from("/etc/group"),
            identity::group_file(rootfs, &who),
        ),
    ];
    // Name resolution as on the host. Copied into the private overlay
    // rather than bound: two small writes cost less than four mount calls.
    for f in ["/etc/resolv.conf", "/etc/hosts"] {
        if let Ok(data) = std::fs::read(f) {
            files.push((PathBuf::from(f), data));
        }
    }
    Ok(HpcPlan {
        identity,
        inside_uid,
        inside_gid,
        env,
        binds,
        devices,
        cwd,
        files,
        share_host_dev,
    })
}

/// `--gpus`, else NVIDIA_VISIBLE_DEVICES, else all, except that naming
/// NVIDIA GPUs with `--device` replaces the default of all.
fn gpu_selection(opts: &HpcOptions) -> Result<GpuSelect> {
    let named = opts.devices.iter().any(|d| match d {
        cdi::DeviceRequest::Cdi(n) => n.starts_with(&format!("{}=", cdi::NVIDIA_GPU)),
        cdi::DeviceRequest::Host { .. } => false,
    });
    Ok(
        match (&opts.gpus, std::env::var("NVIDIA_VISIBLE_DEVICES")) {
            (Some(g), _) => GpuSelect::parse(g, "--gpus")?,
            (None, _) if named => GpuSelect::None,
            (None, Ok(v)) => GpuSelect::parse(&v, "NVIDIA_VISIBLE_DEVICES")?,
            (None, Err(_)) => GpuSelect::All,
        },
    )
}

/// Whether the GPU selection is only the default (no `--gpus`, no
/// NVIDIA_VISIBLE_DEVICES).
fn implicit_gpus(opts: &HpcOptions) -> bool {
    opts.gpus.is_none() && std::env::var_os("NVIDIA_VISIBLE_DEVICES").is_none()
}

/// The devices: CDI for what `--device` names and, when a spec for
/// nvidia.com/gpu exists, for the GPUs; the built-in discovery for the
/// rest (and for GPUs on hosts without a spec); host nodes by path.
fn plan_devices(site: &SiteConfig, opts: &HpcOptions, gpus: &GpuSelect) -> Result<DevicePlan> {
    let mut names: Vec<String> = Vec::new();
    for d in &opts.devices {
        if let cdi::DeviceRequest::Cdi(n) = d {
            names.push(n.clone());
        }
    }
    let registry = if !names.is_empty() {
        Some(cdi::load(&site.cdi_spec_dirs)?)
    } else if *gpus != GpuSelect::None {
        // Nobody asked for CDI by name: a broken spec somewhere must not
        // stop the run, only send GPUs through the built-in discovery.
        match cdi::load(&site.cdi_spec_dirs) {
            Ok(r) => Some(r),
            Err(e) => {
                crate::logging::warn(&format!("{e:#}; using the built-in GPU discovery"));
                None
            }
        }
    } else {
        None
    };
    let nvidia_by_cdi = *gpus != GpuSelect::None
        && registry
            .as_ref()
            .is_some_and(|r| r.has_kind(cdi::NVIDIA_GPU));
    let mut devices = host_devices::discover(site, gpus, nvidia_by_cdi)?;
    if let Some(reg) = &registry {
        if nvidia_by_cdi {
            let gpu_names = cdi::gpu_names(reg, gpus, &site.nvidia_gpus_dir())?;
            crate::debug!("GPUs through CDI: {gpu_names:?}");
            let mut gpu_found = Vec::new();
            for n in &gpu_names {
                gpu_found.extend(reg.resolve(n)?);
            }
            match cdi::edits::apply(&gpu_found, &mut devices) {
                Ok(()) => {}
                // Nobody asked for GPUs: a spec that does not fit this node
                // (generated on another) must not stop the run.
                Err(e) if implicit_gpus(opts) => {
                    crate::logging::warn(&format!("{e:#}; using the built-in GPU discovery"));
                    devices = host_devices::discover(site, gpus, false)?;
                }
                Err(e) => return Err(e),
            }
            if let GpuSelect::List(l) = gpus {
                devices
                    .env
                    .push(host_devices::renumbered_cuda_devices(l.len()));
            }
        }
        let mut found = Vec::new();
        for n in &names {
            found.extend(reg.resolve(n)?);
        }
        cdi::edits::apply(&found, &mut devices)?;
    }
    for d in &opts.devices {
        if let cdi::DeviceRequest::Host { host, container } = d {
            if std::fs::metadata(host).is_err() {
                anyhow::bail!("--device {}: no such device on this host", host.display());
            }
            devices.bind(host.clone(), container.clone(), false);
        }
    }
    Ok(devices)
}

/// The container starts in the host's cwd only when this user can enter
/// it: a checkout under someone else's mode-700 directory (or a lost
/// automount) is shown by a bind but cannot be entered, and Apptainer's
/// answer, a warning and the image's WorkingDir, beats refusing to run.
/// The caller's own rights are those of the process inside (its uid maps
/// to the caller's, or it is real root).
fn reachable_cwd(host: &Path, inside: PathBuf) -> Option<PathBuf> {
    match nix::unistd::access(host, nix::unistd::AccessFlags::X_OK) {
        Ok(()) => Some(inside),
        Err(e) => {
            crate::logging::warn(&format!(
                "cannot enter the current directory {} ({}); starting in the image's working directory",
                host.display(),
                e.desc()
            ));
            None
        }
    }
}

fn prepend_path(env: &mut Vec<(String, String)>, key: &str, dirs: &[String]) {
    if dirs.is_empty() {
        return;
    }
    let front = dirs.join(":");
    match env.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) if !v.is_empty() => *v = format!("{front}:{v}"),
        Some((_, v)) => *v = front,
        None => env.push((key.to_string(), front)),
    }
}

/// Reads the site config, naming the file in any error.
pub fn load_site() -> Result<SiteConfig> {
    SiteConfig::load().context("loading the site config")
}
