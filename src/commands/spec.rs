//! `hpcc spec`: write a starting config.json, as `runc spec` does.

use crate::cli::SpecArgs;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub fn run(a: &SpecArgs) -> Result<i32> {
    let dir = a.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    let mut spec = crate::spec::default_spec();
    if a.rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        crate::spec::make_rootless(&mut spec, uid, gid);
    }
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}
