//! File-system helpers: paths as UTF-8, folders made with a mode, sorted
//! listings, and removing a test's scratch tree whatever it holds.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A test path as a `&str` for command lines.
///
/// # Panics
/// When the path is not UTF-8.
pub fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("test path is not UTF-8: {}", p.display()))
}

pub(crate) fn mkdir_mode(path: &Path, mode: u32) {
    fs::create_dir(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The names in a folder, sorted; empty when it is missing or unreadable.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Removes a scratch tree whatever it holds: read-only folders (unpacked
/// images keep them), trees deeper than PATH_MAX, files a container made.
/// chmod and rm walk with *at calls, so deep trees and read-only
/// directories go too; the walk here is a fallback for where they failed.
/// Symlinks are never followed. Never panics (it runs from `Drop`).
pub fn remove_tree(dir: &Path) {
    let _ = Command::new("chmod")
        .args(["-R", "u+rwX"])
        .arg(dir)
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("rm").arg("-rf").arg(dir).status();
    if fs::symlink_metadata(dir).is_ok() {
        make_writable(dir);
        let _ = fs::remove_dir_all(dir);
    }
}

/// Unpacked images keep read-only directories; open them up for removal.
fn make_writable(p: &Path) {
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.is_dir() {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
            for e in fs::read_dir(p).into_iter().flatten().flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// A folder that is removed with [`remove_tree`] when dropped.
pub struct TempTree(pub PathBuf);

impl Drop for TempTree {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}
