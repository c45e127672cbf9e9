//! The per-node join: the ranks of one job on one node share one container
//! (one user and mount namespace), so MPI shared memory and CMA run as on
//! the host, and the image is set up once per node, not once per rank.
//!
//! - group.rs: which ranks share (from what the launcher sets, and a
//!   fingerprint of the container's shape);
//! - rendezvous.rs: how they meet, on an abstract socket named after the
//!   group: the first builds the container, the others receive its
//!   namespaces;
//! - holder.rs: the short-lived process that hands those out.
//!
//! `launch::image_mode` drives it: the builder enters new namespaces and
//! starts the holder; a follower enters the builder's namespaces through
//! the same `launch::namespaces::enter` as every other process.

mod group;
mod holder;
mod rendezvous;

pub use group::{group, launcher_job, slurm_local_tasks, JoinGroup, JoinRequest};
pub use holder::spawn_holder;
pub use rendezvous::{meet, Role};

use oci_spec::runtime::Spec;
use std::collections::HashMap;

/// The node-local group an image run's rank shares a container with, if
/// any. `digest` is the image's; the fingerprint covers everything that
/// shapes the container, but not the per-rank env or cwd.
pub fn group_for_run(
    req: &JoinRequest,
    spec: &Spec,
    digest: &crate::image::digest::Digest,
    uid: u32,
) -> Option<JoinGroup> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let shape = serde_json::json!({
        "image": digest.to_string(),
        "root": spec.root(),
        "mounts": spec.mounts(),
        "linux": spec.linux(),
        "user": spec.process().as_ref().map(|p| p.user()),
    });
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ppid = nix::unistd::getppid().as_raw() as u32;
    group(req, &env, ppid, uid, &host, &shape.to_string())
}
