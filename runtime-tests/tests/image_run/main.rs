//! `hpcc run IMAGE [-- CMD]`: image formats, layer semantics, the cache,
//! hostile archives and the exec-in-place process model, observed from
//! inside the container and from the cache on disk. Runs as root and, via
//! integration/run-rootless.sh, as an unprivileged user.

#[path = "../imagefix/mod.rs"]
mod imagefix;

mod cache;
mod common;
mod containment;
mod layers;
mod running;
mod skeleton;
