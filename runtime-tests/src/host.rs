//! The binary under test (`HPCC_BIN`), the user running the tests (its
//! ids, its name, its subordinate id ranges) and the tools the host has.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The binary under test, from `HPCC_BIN`. Every test asks for it before
/// it runs hpcc, so this is also where `HPCC_TEST_ENOSYS` takes effect.
///
/// # Panics
/// When `HPCC_BIN` is unset, empty, relative or not a file.
pub fn hpcc_bin() -> PathBuf {
    crate::enosys::load_from_env();
    let Some(value) = std::env::var_os("HPCC_BIN").filter(|v| !v.is_empty()) else {
        panic!(
            "HPCC_BIN is not set: point it at the hpcc binary under test, e.g. \
             `HPCC_BIN=$PWD/target/x86_64-unknown-linux-musl/release/hpcc cargo test -p runtime-tests`, \
             or use `make runtime-tests`"
        );
    };
    let path = PathBuf::from(value);
    assert!(
        path.is_absolute(),
        "HPCC_BIN must be an absolute path, got {}",
        path.display()
    );
    assert!(
        path.is_file(),
        "HPCC_BIN={} does not exist or is not a file",
        path.display()
    );
    path
}

/// Effective uid of the test process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Effective gid of the test process.
pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Whether the tests run as root (the rootful half of the suite).
pub fn is_root() -> bool {
    euid() == 0
}

/// The name of the user running the tests, as `id -un` prints it; `None`
/// when `id` cannot be run.
pub fn user_name() -> Option<String> {
    let out = Command::new("id").arg("-un").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// This user's first subordinate uid and gid: the starts of its first
/// ranges in /etc/subuid and /etc/subgid, whose lines name it by `$USER`,
/// by `id -un` or by uid (as root: any range works). `None` when either
/// file has no range for it.
pub fn subordinate_ids() -> Option<(u32, u32)> {
    if is_root() {
        return Some((100000, 100000));
    }
    let names: Vec<String> = std::env::var("USER")
        .ok()
        .into_iter()
        .chain(user_name())
        .chain([euid().to_string()])
        .filter(|n| !n.is_empty())
        .collect();
    let first = |file: &str| -> Option<u32> {
        let text = fs::read_to_string(file).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && names.iter().any(|n| f[0] == n)).then(|| f[1].parse().ok())?
        })
    };
    Some((first("/etc/subuid")?, first("/etc/subgid")?))
}

/// Whether `TOOL --version` runs and succeeds (the tool is installed).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
