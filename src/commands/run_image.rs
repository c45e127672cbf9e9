//! `hpcc run IMAGE [-- CMD...]`: the scientist's front door. Unpack once
//! into the cache, plan the HPC environment (identity, env, binds,
//! devices), build a Spec in memory, and exec in place.

use super::Ctx;
use crate::cli::RunImageArgs;
use crate::hpc::node_join::{self, JoinGroup, JoinRequest};
use crate::hpc::{self, HpcOptions};
use crate::image::cache::{Cache, UnpackOptions};
use crate::image::ImageArg;
use crate::spec::from_image::{spec_from_image, Caller, ImageRunOptions};
use anyhow::{bail, Result};

pub fn run(_ctx: &Ctx, a: &RunImageArgs) -> Result<i32> {
    let arg = ImageArg::parse(&a.image);
    if a.image.starts_with(crate::image::REGISTRY_PREFIX) {
        bail!(
            "{}: hpcc does not pull from registries yet; save the image to a file (docker save, podman save, or skopeo copy {} oci-archive:image.tar) and run that",
            a.image,
            a.image
        );
    }
    if !arg.path.exists() {
        bail!("{}: no such image file or directory", arg.path.display());
    }
    let site = hpc::load_site()?;
    let cache = Cache::locate(site.cache_dir().as_deref());
    let img = cache.ensure(
        &arg.path,
        arg.reference.as_deref(),
        &UnpackOptions { quiet: a.quiet },
    )?;
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
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
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
    if let Some(path) = &a.record {
        crate::hpc::record::write(path, &img, &plan, &spec, group.as_ref())?;
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
    match crate::launch::image_mode::exec_in_place(
        &spec,
        &img.rootfs,
        &merged,
        root,
        &plan.files,
        &hooks,
        join,
    )? {}
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
