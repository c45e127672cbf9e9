//! `hpcc run IMAGE [-- CMD...]`: the scientist's front door. Unpack once
//! into the cache, build a Spec in memory, and exec in place.

use super::Ctx;
use crate::cli::RunImageArgs;
use crate::image::cache::{Cache, UnpackOptions};
use crate::image::ImageArg;
use crate::spec::from_image::{spec_from_image, Caller, ImageRunOptions};
use anyhow::{bail, Result};

pub fn run(_ctx: &Ctx, a: &RunImageArgs) -> Result<i32> {
    let arg = ImageArg::parse(&a.image);
    if !arg.path.exists() {
        bail!("{}: no such image file or directory", arg.path.display());
    }
    let cache = Cache::locate(None)?;
    let img = cache.ensure(
        &arg.path,
        arg.reference.as_deref(),
        &UnpackOptions { quiet: a.quiet },
    )?;
    let opts = ImageRunOptions {
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        workdir: a.workdir.clone(),
        writable_tmpfs: a.writable_tmpfs,
        pid_namespace: a.pid,
    };
    let euid = nix::unistd::geteuid();
    let who = Caller {
        uid: euid.as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        rootless: !(euid.is_root() && crate::launch::in_initial_userns()),
    };
    let merged = cache.mount_dir()?.join("merged");
    let spec = spec_from_image(&img.config, &img.rootfs, &opts, who)?;
    crate::spec::validate(&spec)?;
    crate::debug!("running image {} from {}", img.digest, img.rootfs.display());
    match crate::launch::exec_in_place(&spec, &img.rootfs, &merged)? {}
}
