//! The warm-start index: `refs/<key>.json` maps an image file's identity
//! (device, inode, size, mtime, and the reference asked for) to the digest
//! it unpacked to, so a cached start never opens the tar.

use crate::image::digest::Digest;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct RefEntry {
    pub digest: String,
    pub source: PathBuf,
    pub reference: Option<String>,
}

impl RefEntry {
    /// Refs written by pulls name their reference (`docker://…`) as source.
    pub fn is_registry(&self) -> bool {
        self.source
            .to_string_lossy()
            .starts_with(crate::image::REGISTRY_PREFIX)
    }
}

/// The key of a ref that is not a file: a registry reference and platform.
pub(super) fn text_key(text: &str) -> String {
    Digest::of_bytes(format!("text:{text}").as_bytes())
        .hex()
        .to_string()
}

pub(super) fn read_entry(path: &Path) -> Option<RefEntry> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

pub(super) fn read_ref(path: &Path) -> Option<Digest> {
    let data = fs::read(path).ok()?;
    let r: RefEntry = serde_json::from_slice(&data).ok()?;
    Digest::parse(&r.digest).ok()
}
/// A key for "this exact file": device, inode, size and mtime (plus the
/// reference asked for). Any change to the file changes the key.
pub(super) fn identity_key(path: &Path, want: Option<&str>) -> Result<String> {
    let m = fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let m = if m.is_dir() {
        fs::metadata(path.join("index.json"))
            .with_context(|| format!("{}/index.json", path.display()))?
    } else {
        m
    };
    let text = format!(
        "{}:{}:{}:{}.{}:{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        want.unwrap_or("")
    );
    Ok(Digest::of_bytes(text.as_bytes()).hex().to_string())
}
