//! Syscall numbers by name for the architectures hpcc builds for, one
//! file each.

mod aarch64;
mod x86_64;

pub use aarch64::AARCH64;
pub use x86_64::X86_64;
