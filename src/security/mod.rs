//! What the container process may do: identity, capabilities, rlimits.

pub mod caps;
pub mod labels;
pub mod rlimits;
pub mod sealed_exe;
pub mod seccomp;
pub mod user;
