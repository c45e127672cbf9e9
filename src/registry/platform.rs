//! Which manifest of a multi-platform index to pull: this machine's by
//! default, or the one `--platform os/arch[/variant]` names.

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: crate::image::config::host_arch().to_string(),
            variant: None,
        }
    }

    /// `os/arch[/variant]`, e.g. `linux/arm64` or `linux/arm/v7`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            bail!("--platform {s:?}: expected OS/ARCH[/VARIANT], like linux/arm64");
        }
        Ok(Platform {
            os: parts[0].into(),
            architecture: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// An index entry's platform matches when OS and architecture agree
    /// and, if we asked for a variant, the variant does too (arm64's
    /// variant is v8 when it is unstated).
    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != arch {
            return false;
        }
        match (&self.variant, variant) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(want), None) => arch == "arm64" && want == "v8",
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    digest: String,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    platform: Option<EntryPlatform>,
}

#[derive(Deserialize)]
struct EntryPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// The digest of `want`'s manifest in an index (OCI or Docker list).
/// Attestation entries (platform unknown/unknown) never match.
pub fn choose(index: &[u8], want: &Platform) -> Result<String> {
    let idx: Index =
        serde_json::from_slice(index).map_err(|e| anyhow!("the image index is malformed: {e}"))?;
    let mut offered = Vec::new();
    for m in &idx.manifests {
        let Some(p) = &m.platform else { continue };
        if want.matches(&p.os, &p.architecture, p.variant.as_deref()) {
            if m.media_type.contains("index") || m.media_type.contains("list") {
                bail!("the image index nests another index for {want}, which hpcc does not follow");
            }
            return Ok(m.digest.clone());
        }
        if p.os != "unknown" {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = &p.variant {
                s.push('/');
                s.push_str(v);
            }
            offered.push(s);
        }
    }
    if offered.is_empty() {
        bail!("the image index names no platforms");
    }
    bail!(
        "the image has no {want} variant (it has {}); choose one with --platform",
        offered.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"schemaVersion":2,"manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"architecture":"amd64","os":"linux"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v7"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:dd","size":1,"platform":{"architecture":"unknown","os":"unknown"}}]}"#;

    fn pick(p: &str) -> Result<String> {
        choose(INDEX.as_bytes(), &Platform::parse(p).unwrap())
    }

    #[test]
    fn the_asked_platform_is_chosen() {
        assert_eq!(pick("linux/amd64").unwrap(), "sha256:aa");
        assert_eq!(pick("linux/arm64").unwrap(), "sha256:bb");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "sha256:bb");
        assert_eq!(pick("linux/arm/v7").unwrap(), "sha256:cc");
        let e = pick("linux/ppc64le").unwrap_err().to_string();
        assert!(
            e.contains("no linux/ppc64le variant")
                && e.contains("linux/amd64, linux/arm64/v8, linux/arm/v7")
                && !e.contains("unknown"),
            "{e}"
        );
        assert!(pick("linux/arm/v6").is_err());
        assert!(choose(b"[]", &Platform::host()).is_err());
    }

    #[test]
    fn platform_flags_parse() {
        assert_eq!(
            Platform::parse("linux/arm64").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().variant.as_deref(),
            Some("v7")
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "Linux/AMD64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
