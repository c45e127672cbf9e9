//! What is done once per container, inside its namespaces: the rootfs and
//! its generated files, the console, hostname and sysctls. Ranks that join
//! a node's container skip this; its builder did it once.

use super::namespaces::NsPlan;
use crate::rootfs::{self, ImageContext, PlanContext, RootMethod, SkeletonDirs};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Process, Spec};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub struct ContainerSetup<'a> {
    pub spec: &'a Spec,
    process: &'a Process,
    rootfs: &'a Path,
    bundle: &'a Path,
    ns: NsPlan,
    /// mknod is allowed (real root, no user namespace).
    use_mknod: bool,
    no_pivot: bool,
    /// Image mode: the cached image the root is built over, and how.
    image: Option<&'a ImageRoot<'a>>,
    /// process.terminal: the console socket the pty master goes to; the
    /// pty's slave is also the container's /dev/console.
    console: Option<OwnedFd>,
}

impl<'a> ContainerSetup<'a> {
    pub fn new(spec: &'a Spec, rootfs: &'a Path, bundle: &'a Path, ns: &NsPlan) -> Result<Self> {
        let process = crate::spec::process_of(spec)?;
        if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !ns.has_uts {
            bail!("config.json: hostname needs a uts namespace");
        }
        Ok(ContainerSetup {
            spec,
            process,
            rootfs,
            bundle,
            ns: ns.clone(),
            use_mknod: !ns.in_userns() && crate::sys::is_real_root(),
            no_pivot: false,
            image: None,
            console: None,
        })
    }

    /// `--no-pivot`: MS_MOVE and chroot instead of pivot_root.
    pub fn no_pivot(mut self, no_pivot: bool) -> Self {
        self.no_pivot = no_pivot;
        self
    }

    pub fn console(mut self, sock: Option<OwnedFd>) -> Self {
        self.console = sock;
        self
    }

    /// Image mode: the root at `rootfs` is built over a cached image.
    pub fn image(mut self, root: &'a ImageRoot<'a>) -> Self {
        self.image = Some(root);
        self
    }
}

/// What image mode's root is made of.
pub struct ImageRoot<'a> {
    /// The cached image.
    pub lower: &'a Path,
    pub method: RootMethod,
    /// Generated files (/etc/passwd, /etc/group, ...): path, contents.
    pub files: &'a [(PathBuf, Vec<u8>)],
    /// Where the image's skeletons are kept (rootfs/skeleton/).
    pub skeletons: Option<SkeletonDirs>,
}

/// Builds the container. `before_pivot` runs after the mounts and devices,
/// just before pivot_root (where the createRuntime and createContainer
/// hooks belong).
pub fn build(c: &ContainerSetup, before_pivot: Option<&dyn Fn() -> Result<()>>) -> Result<()> {
    let spec = c.spec;
    if let Some(adj) = c.process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .with_context(|| format!("process.oomScoreAdj {adj}"))?;
    }
    let plan = rootfs::plan_for(&PlanContext {
        spec,
        rootfs: c.rootfs,
        bundle: c.bundle,
        in_userns: c.ns.in_userns(),
        has_cgroupns: c.ns.has_cgroupns,
        use_mknod: c.use_mknod,
        no_pivot: c.no_pivot,
        own_mount_ns: c.ns.has_mount_ns(),
        image: c.image.map(|img| ImageContext {
            lower: img.lower,
            method: img.method,
            files: img.files,
            skeletons: img.skeletons.as_ref(),
            hooks: before_pivot.is_some(),
        }),
    })?;
    rootfs::run(&plan.setup, before_pivot)?;
    if let Some(sock) = &c.console {
        super::console::setup_for(sock, c.process, true)?;
    }
    if c.ns.has_uts {
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
    rootfs::run(&plan.finish, None)
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
