//! Loading, checking and generating OCI runtime specs (config.json).

pub mod from_image;
mod template;
mod validate;

pub use template::{default_spec, make_rootless, MASKED_PATHS, READONLY_PATHS};
pub use validate::{check_version, has_mount_namespace, process_of, validate};

use anyhow::{anyhow, Context, Result};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// A spec together with the absolute paths it was resolved against.
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Reads `<dir>/config.json`, checks it, and resolves the rootfs path.
pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir).with_context(|| format!("bundle {}", dir.display()))?;
    let path = dir.join("config.json");
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let spec = parse_config(&data).with_context(|| format!("{}", path.display()))?;
    validate(&spec)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| anyhow!("config.json: root.path is required"))?;
    let rootfs = dir.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs)
        .with_context(|| format!("config.json: root.path {}", rootfs.display()))?;
    if !rootfs.is_dir() {
        anyhow::bail!(
            "config.json: root.path {} is not a directory",
            rootfs.display()
        );
    }
    Ok(Bundle { dir, rootfs, spec })
}

/// Parses config.json text, first as plain JSON (so a syntax error names its
/// line) and then as a Spec (so a type error names the field).
pub fn parse_config(data: &[u8]) -> Result<Spec> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| anyhow!("invalid JSON: {e}"))?;
    if !value.is_object() {
        anyhow::bail!("invalid config: the top level must be a JSON object");
    }
    // The version is checked before the schema, so that a 2.x config is
    // refused for its version rather than for whatever field changed shape.
    let version = value
        .get("ociVersion")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("ociVersion is missing"))?;
    check_version(version)?;
    // serde's own message names the type, not the field: say where.
    serde_path_to_error::deserialize::<_, Spec>(value).map_err(|e| {
        let field = e.path().to_string();
        if field.is_empty() || field == "." {
            anyhow!("invalid config: {}", e.inner())
        } else {
            anyhow!("invalid config: {field}: {}", e.inner())
        }
    })
}
