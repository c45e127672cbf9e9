//! Hooks in image mode (CDI's, such as `nvidia-ctk hook update-ldcache`).
//! `hpcc run` becomes the program, so there is no runtime process beside
//! the container to run hooks from. They run where they can have the
//! container's view:
//! - prestart, createRuntime and createContainer once the root and its
//!   mounts exist, before pivot_root, in the container's namespaces (the
//!   caller's own, apart from the mount namespace, for the first two);
//! - startContainer after pivot_root, just before the program;
//! - poststart and poststop cannot run (nothing of hpcc is left) and are
//!   refused with a warning when the plan is made.
//!
//! Hooks find the root through the bundle's config.json, as they do under
//! runc; the bundle is written into the root's scratch tmpfs, which only
//! this mount namespace sees and which goes with it.

use crate::hpc::host_devices::StageHook;
use anyhow::{Context, Result};
use oci_spec::runtime::{Hook, Spec};
use std::path::Path;

/// Stages run before pivot_root, in order.
const BEFORE_PIVOT: [&str; 3] = ["prestart", "createRuntime", "createContainer"];

/// Warns of hooks that image mode cannot run, and keeps the others.
pub fn runnable(hooks: &[StageHook]) -> Vec<StageHook> {
    hooks
        .iter()
        .filter(|h| {
            let ok = BEFORE_PIVOT.contains(&h.stage.as_str()) || h.stage == "startContainer";
            if !ok {
                crate::logging::warn(&format!(
                    "{} hook {} (from {}) not run: `hpcc run` leaves no process behind to run it",
                    h.stage,
                    h.hook.path().display(),
                    h.from.display()
                ));
            }
            ok
        })
        .cloned()
        .collect()
}

fn of_stage(hooks: &[StageHook], stage: &str) -> Vec<Hook> {
    hooks
        .iter()
        .filter(|h| h.stage == stage)
        .map(|h| h.hook.clone())
        .collect()
}

/// The state hooks read on stdin; `bundle` holds the config.json.
fn state(spec: &Spec, bundle: &Path) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": spec.version(),
        "id": format!("hpcc-{}", std::process::id()),
        "status": "created",
        "pid": std::process::id(),
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
}

/// Runs the hooks that belong before pivot_root. `merged` is the root
/// being built; its parent is the scratch tmpfs.
pub fn before_pivot(hooks: &[StageHook], spec: &Spec, merged: &Path) -> Result<()> {
    if !BEFORE_PIVOT
        .iter()
        .any(|s| hooks.iter().any(|h| h.stage == *s))
    {
        return Ok(());
    }
    let scratch = merged.parent().unwrap_or(Path::new("/"));
    let bundle = scratch.join("bundle");
    std::fs::create_dir_all(&bundle).context("the hooks' bundle directory")?;
    // The root the hooks must edit is the one being built, never the
    // cached image under it (the Spec's root.path).
    let mut spec = spec.clone();
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(merged.to_path_buf());
    spec.set_root(Some(root));
    let config = serde_json::to_vec(&spec)?;
    std::fs::write(bundle.join("config.json"), config).context("the hooks' config.json")?;
    let st = state(&spec, &bundle);
    for stage in BEFORE_PIVOT {
        crate::hooks::run(&of_stage(hooks, stage), stage, &st)?;
    }
    Ok(())
}

/// startContainer, in the container, just before the program.
pub fn before_exec(hooks: &[StageHook], spec: &Spec) -> Result<()> {
    let start = of_stage(hooks, "startContainer");
    if start.is_empty() {
        return Ok(());
    }
    crate::hooks::run(&start, "startContainer", &state(spec, Path::new("/")))
}
