//! `hpcc state`: the OCI state of one container.

use super::Ctx;
use crate::container::{ContainerState, StateStore, Status};
use anyhow::Result;
use serde_json::{json, Value};

pub fn run(ctx: &Ctx, id: &str) -> Result<i32> {
    let st = ctx.store.load(id)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&oci_state(&ctx.store, &st))?
    );
    Ok(0)
}

/// The state JSON runc prints: the runtime-spec fields plus rootfs,
/// created and owner. A stopped container reports pid 0.
pub fn oci_state(store: &StateStore, st: &ContainerState) -> Value {
    let status = store.status(st);
    let mut v = json!({
        "ociVersion": crate::cli::OCI_SPEC_VERSION,
        "id": st.id,
        "pid": if status == Status::Stopped { 0 } else { st.pid },
        "status": status.as_str(),
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": st.owner,
    });
    if !st.annotations.is_empty() {
        v["annotations"] = json!(st.annotations);
    }
    v
}
