//! `hpcc run IMAGE [-- CMD...]`: the scientist's front door. Unpack once
//! into the cache, plan the HPC environment (identity, env, binds,
//! devices), build a Spec in memory, and exec in place.

use super::Ctx;
use crate::cli::RunImageArgs;
use crate::hpc::node_join::{self, JoinGroup, JoinRequest};
use crate::hpc::record::{self, ImageOrigin};
use crate::hpc::replay::Replay;
use crate::hpc::{self, HpcOptions};
use crate::image::cache::{Cache, CachedImage, UnpackOptions};
use crate::image::ImageArg;
use crate::launch::container_setup::ImageRoot;
use crate::registry::cached::{self, PullSettings};
use crate::registry::platform::Platform;
use crate::registry::reference::Reference;
use crate::spec::from_image::{spec_from_image, Caller, ImageRunOptions};
use anyhow::{bail, Result};

pub fn run(_ctx: &Ctx, a: &RunImageArgs) -> Result<i32> {
    let site = hpc::load_site()?;
    let cache = Cache::locate(site.cache_dir().as_deref());
    let replay = a.from_record.as_deref().map(Replay::load).transpose()?;
    // With --from-record the image comes from the record, so every
    // positional word is the command (none: the recorded command).
    let mut entrypoint = a.entrypoint.clone();
    let (image, command) = match &replay {
        Some(rp) => {
            let mut cmd: Vec<String> = a.image.iter().cloned().collect();
            cmd.extend(a.command.iter().cloned());
            if cmd.is_empty() {
                // The recorded argv already starts with the entrypoint.
                cmd = rp.command();
                entrypoint = Some(String::new());
            }
            (rp.image()?, cmd)
        }
        None => (a.image.clone().unwrap_or_default(), a.command.clone()),
    };
    let (img, named) = open_image(&cache, &site, &image, a)?;
    if let Some(rp) = &replay {
        rp.check_image(&img.digest, &image)?;
    }
    let euid = nix::unistd::geteuid();
    let who = Caller {
        uid: euid.as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        rootless: !crate::sys::is_real_root(),
    };
    if a.fakeroot && !who.rootless {
        bail!("--fakeroot is for unprivileged users; you are already root");
    }
    let opts = ImageRunOptions {
        command,
        entrypoint,
        workdir: a.workdir.clone(),
        writable_tmpfs: a.writable_tmpfs,
        pid_namespace: a.pid,
        fakeroot: a.fakeroot,
    };
    let hpc_opts = HpcOptions {
        binds: a
            .bind
            .iter()
            .map(|b| hpc::binds::parse_bind(b))
            .collect::<Result<_>>()?,
        env: a
            .env
            .iter()
            .map(|e| hpc::env::parse_assignment(e))
            .collect::<Result<_>>()?,
        env_files: a.env_file.clone(),
        clean_env: a.clean_env,
        fakeroot: a.fakeroot,
        gpus: a.gpus.clone(),
        devices: a
            .device
            .iter()
            .map(|d| hpc::cdi::DeviceRequest::parse(d))
            .collect::<Result<_>>()?,
        workdir: a.workdir.clone(),
        rootless: who.rootless,
    };
    let image_env = img.config.container().env.unwrap_or_default();
    let plan = hpc::plan(&site, &hpc_opts, &image_env, &img.rootfs, who.uid, who.gid)?;
    let merged = cache.mount_dir()?.join("merged");
    let spec = spec_from_image(&img.config, &img.rootfs, &opts, who, &plan)?;
    crate::spec::validate(&spec)?;
    let group = join_group(a, &spec, &img.digest, who.uid);
    if let Some(g) = &group {
        crate::debug!(
            "joining {} group @{} (local size {:?})",
            g.launcher,
            g.socket_name,
            g.local_size
        );
    }
    if a.record.is_some() || replay.is_some() {
        // Worked out only here: a warm start without --record pays nothing.
        let named = named.resolve(&img);
        let origin = ImageOrigin {
            source: &named.source,
            reference: named.reference.as_deref(),
            manifest: named.manifest.as_deref(),
        };
        let doc = record::document(&img, &origin, &plan, &spec, group.as_ref());
        if let Some(rp) = &replay {
            for d in rp.differences(&doc) {
                crate::logging::warn(&format!("differs from the record: {d}"));
            }
        }
        if let Some(path) = &a.record {
            record::write(path, &doc)?;
        }
    }
    crate::debug!(
        "running image {} from {}; devices: {:?}",
        img.digest,
        img.rootfs.display(),
        plan.devices.found
    );
    let timeout = std::time::Duration::from_secs(a.join_timeout.max(1));
    let join = group.as_ref().map(|g| (g, timeout));
    let root = site.image_root()?;
    let hooks = crate::launch::image_hooks::runnable(&plan.devices.hooks);
    let image_root = ImageRoot {
        lower: &img.rootfs,
        method: root,
        files: &plan.files,
        skeletons: Some(cache.skeleton_dirs(&img.digest)),
    };
    match crate::launch::image_mode::exec_in_place(&spec, &image_root, &merged, &hooks, join)? {}
}

/// What names an image, for --record: its source (a canonical path, or
/// `docker://REF`), and for pulled images the reference and manifest.
struct Named {
    source: String,
    reference: Option<String>,
    manifest: Option<String>,
    /// A file's path and @REF, canonicalised only when asked.
    file: Option<(std::path::PathBuf, Option<String>)>,
}

impl Named {
    fn resolve(self, img: &CachedImage) -> Named {
        let Some((path, reference)) = self.file else {
            return self;
        };
        let canonical = std::fs::canonicalize(&path).unwrap_or(path);
        let source = match reference {
            Some(r) => format!("{}@{r}", canonical.display()),
            None => canonical.display().to_string(),
        };
        Named {
            source,
            reference: None,
            manifest: img.meta().and_then(|m| m.manifest),
            file: None,
        }
    }
}

/// The image, unpacked in the cache: from a registry (`docker://`), or
/// from a tar or layout.
fn open_image(
    cache: &Cache,
    site: &crate::hpc::site::SiteConfig,
    image: &str,
    a: &RunImageArgs,
) -> Result<(CachedImage, Named)> {
    if image.starts_with(crate::image::REGISTRY_PREFIX) {
        let r = Reference::parse(image)?;
        let settings = PullSettings {
            site,
            platform: Platform::host(),
            offline: a.offline,
            quiet: a.quiet,
        };
        let (img, origin) = cached::ensure(cache, &r, &settings)?;
        let named = Named {
            source: format!("{}{}", crate::image::REGISTRY_PREFIX, origin.reference),
            reference: Some(origin.reference),
            manifest: origin.manifest,
            file: None,
        };
        return Ok((img, named));
    }
    if a.offline {
        bail!("--offline is for docker:// images; {image} is read from disk anyway");
    }
    let arg = ImageArg::parse(image);
    if !arg.path.exists() {
        bail!("{}: no such image file or directory", arg.path.display());
    }
    let img = cache.ensure(
        &arg.path,
        arg.reference.as_deref(),
        &UnpackOptions { quiet: a.quiet },
    )?;
    let named = Named {
        source: String::new(),
        reference: None,
        manifest: None,
        file: Some((arg.path, arg.reference)),
    };
    Ok((img, named))
}

/// The node-local group this rank shares a container with, if any.
fn join_group(
    a: &RunImageArgs,
    spec: &oci_spec::runtime::Spec,
    digest: &crate::image::digest::Digest,
    uid: u32,
) -> Option<JoinGroup> {
    if a.pid {
        return None;
    }
    let req = JoinRequest {
        force: a.join,
        disable: a.no_join,
        tag: a.join_tag.clone(),
    };
    node_join::group_for_run(&req, spec, digest, uid)
}
