//! Where state lives, and which container IDs are acceptable.

use anyhow::{bail, Result};
use std::path::PathBuf;

/// runc's rule: IDs are `[A-Za-z0-9_+.-]+` and not `.` or `..`, so an ID can
/// never name a path outside the state root.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+.-".contains(&b));
    if id.is_empty() || !ok_chars || id == "." || id == ".." {
        bail!("invalid container id {id:?}: use letters, digits and _ + . - only");
    }
    if id.len() > 1024 {
        bail!("invalid container id: longer than 1024 characters");
    }
    Ok(())
}

/// `/run/hpcc` for root; otherwise `$XDG_RUNTIME_DIR/hpcc`, then
/// `/run/user/<uid>/hpcc` when that directory is ours, then `/tmp/hpcc-<uid>`.
pub fn default_root() -> PathBuf {
    let uid = nix::unistd::geteuid();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty());
    if uid.is_root() && (xdg.is_none() || !root_of_a_user_namespace()) {
        return PathBuf::from("/run/hpcc");
    }
    if let Some(x) = xdg {
        return PathBuf::from(x).join("hpcc");
    }
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if nix::unistd::access(&run_user, nix::unistd::AccessFlags::W_OK).is_ok() {
        return run_user.join("hpcc");
    }
    PathBuf::from(format!("/tmp/hpcc-{uid}"))
}

/// Rootless podman runs its runtime as uid 0 of a user namespace it made,
/// where /run belongs to nobody: such a "root" is an ordinary user and keeps
/// state in its XDG_RUNTIME_DIR, runc's rule (unless USER says root, as
/// when real root runs in a container).
fn root_of_a_user_namespace() -> bool {
    !crate::sys::in_initial_userns() && std::env::var_os("USER").is_none_or(|u| u != "root")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["a", "abc-1_2.3+4", &"f".repeat(64)] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
