//! Turning a Spec into a process.
//!
//! - namespaces.rs: the namespace plan, and `enter`, the one way into
//!   namespaces for every front door;
//! - spawn.rs: the fork → enter → fork protocol `create` and `exec` share;
//! - create.rs + oci_init.rs: `create`, and the init that waits for `start`;
//! - exec_in_container.rs: `hpcc exec`;
//! - image_mode.rs: `hpcc run IMAGE`, which execs in place;
//! - container_setup.rs: what is done once per container (rootfs, console,
//!   hostname, sysctls); process_setup.rs: what each process does for
//!   itself before execve (limits, identity, capabilities, seccomp, fds);
//! - program_path.rs: finding the program on the container's PATH.

pub mod channel;
pub mod console;
pub mod container_setup;
pub mod create;
pub mod exec_in_container;
pub mod idmap;
pub mod image_hooks;
pub mod image_mode;
pub mod namespaces;
pub mod oci_init;
pub mod process_setup;
pub mod program_path;
pub mod spawn;
pub mod supervise;
pub mod userns_limits;
pub mod working_dir;
