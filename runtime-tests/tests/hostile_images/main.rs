//! A hostile image corpus, generated here, against `hpcc run IMAGE`: names
//! that climb, absolute names, symlinks and hard links aimed outside the
//! rootfs (in one layer and across layers), whiteouts that climb or pass
//! through symlinks, broken digests, blobs and documents, device nodes,
//! symlink loops, very long names, a gzip bomb and a full disk.
//!
//! Every case must end in either one clear error line (`hpcc: ...` naming
//! the entry, blob or document at fault) or a result contained in the cache;
//! the tree around the cache (sentinel files at the very paths the hostile
//! entries aim at) must not change; nothing may panic; and a refused image
//! must leave nothing in the cache. Runs as root and, via
//! integration/run-rootless.sh, as an unprivileged user.
//!
//! One test binary; each module holds the cases of one kind, `env` the
//! scratch directory with its sentinels and `checks` the verdicts every
//! case must pass.

#[path = "../imagefix/mod.rs"]
mod imagefix;

mod bomb;
mod checks;
mod devices;
mod digests;
mod documents;
mod env;
mod full_disk;
mod hard_links;
mod names;
mod symlinks;
mod whiteouts;
