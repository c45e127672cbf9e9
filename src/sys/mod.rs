//! The raw system calls that neither nix nor std wrap, and the wrappers
//! that give fds an owner. Each unsafe block sits in its own small function
//! with the reason it is sound. A leaf: nothing here knows the layers above.

mod fd;
pub mod fdpass;
pub mod fs_context;
mod mount_attr;
mod privilege;
mod process;
mod seccomp;
mod tty;

pub use fd::{cloexec_from, open, openat, openat2, own_received};
pub use mount_attr::{mount_flags, mount_setattr_recursive};
pub use privilege::{in_initial_userns, is_initial_map, is_real_root};
#[cfg(test)]
pub use process::fork_in_threaded_test;
pub use process::{
    exit_child, fork_single_threaded, forward_signals_to, join_session_keyring,
    reset_signal_dispositions,
};
pub use seccomp::install_seccomp_filter;
pub use tty::{get_winsize, set_controlling_tty, set_winsize};
