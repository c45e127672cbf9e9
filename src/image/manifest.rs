//! From an archive's index to one image: its config and its layers, each
//! with the digest it must have.

use super::config::{host_arch, ImageConfig};
use super::digest::Digest;
use super::source::Source;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// A layer and the digests its bytes must have. The uncompressed tar is
/// always checked against the config's diff_id, so the config digest (the
/// cache key) pins the content whatever the archive's format; OCI blobs
/// are also checked as stored.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub size: u64,
    pub blob: Option<Digest>,
    pub diff_id: Digest,
}

/// The config's diff_ids, one per layer.
fn diff_ids(src: &Source, config: &ImageConfig, layers: usize) -> Result<Vec<Digest>> {
    let ids = config.diff_ids();
    if ids.len() != layers {
        bail!(
            "{}: the manifest lists {layers} layers but the config has {} diff_ids",
            src.describe(),
            ids.len()
        );
    }
    ids.iter()
        .map(|id| Digest::parse(id).with_context(|| format!("{}: config diff_id", src.describe())))
        .collect()
}

#[derive(Debug)]
pub struct Resolved {
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// The name the image goes by in the archive, if it has one.
    pub reference: Option<String>,
    /// The manifest's digest, where the image has one (OCI layouts and
    /// registries; docker-archive tars have none).
    pub manifest: Option<Digest>,
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: Option<std::collections::HashMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn parse_json<T: serde::de::DeserializeOwned>(src: &Source, name: &str, data: &[u8]) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| anyhow!("{}: {name}: malformed: {e}", src.describe()))
}

/// A candidate image in an archive: how to name it and how to load it.
enum Candidate<'a> {
    Oci {
        refname: Option<String>,
        desc: &'a OciDescriptor,
    },
    Docker {
        tags: Vec<String>,
        entry: &'a DockerEntry,
    },
}

impl Candidate<'_> {
    fn names(&self) -> Vec<String> {
        match self {
            Candidate::Oci { refname, desc } => refname
                .iter()
                .cloned()
                .chain([desc.digest.clone()])
                .collect(),
            Candidate::Docker { tags, entry } => {
                tags.iter().cloned().chain([entry.config.clone()]).collect()
            }
        }
    }

    fn label(&self) -> String {
        self.names().into_iter().next().unwrap_or_default()
    }

    /// `want` matches a full name, the tag part of one, or a digest prefix.
    fn matches(&self, want: &str) -> bool {
        self.names().iter().any(|n| {
            n == want
                // podman names local images "localhost/NAME:TAG"
                || n.rsplit_once('/').is_some_and(|(_, short)| short == want)
                || n.rsplit_once(':')
                    .is_some_and(|(_, tag)| tag == want && !n.starts_with("sha256:"))
                || n.strip_prefix("sha256:").is_some_and(|h| {
                    want.len() >= 6 && h.starts_with(want.trim_start_matches("sha256:"))
                })
        })
    }
}

fn pick<'a>(src: &Source, cands: Vec<Candidate<'a>>, want: Option<&str>) -> Result<Candidate<'a>> {
    let listing = || {
        cands
            .iter()
            .map(|c| c.label())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match want {
        None if cands.len() == 1 => Ok(cands
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no image"))?),
        None if cands.is_empty() => bail!("{}: the archive holds no image", src.describe()),
        None => bail!(
            "{}: holds {} images ({}); pick one with {}@REF",
            src.describe(),
            cands.len(),
            listing(),
            src.describe()
        ),
        Some(w) => {
            let text = listing();
            cands.into_iter().find(|c| c.matches(w)).ok_or_else(|| {
                anyhow!(
                    "{}: no image {w:?} in the archive; it holds: {text}",
                    src.describe()
                )
            })
        }
    }
}

pub fn resolve(src: &Source, want: Option<&str>) -> Result<Resolved> {
    if src.has("index.json") {
        resolve_oci(src, want)
    } else {
        resolve_docker(src, want)
    }
}

fn resolve_oci(src: &Source, want: Option<&str>) -> Result<Resolved> {
    let data = src.read_doc("index.json")?;
    let index: OciIndex = parse_json(src, "index.json", &data)?;
    let cands: Vec<Candidate> = index
        .manifests
        .iter()
        .map(|d| Candidate::Oci {
            refname: d
                .annotations
                .as_ref()
                .and_then(|a| a.get(REF_ANNOTATION).cloned()),
            desc: d,
        })
        .collect();
    let chosen = pick(src, cands, want)?;
    let Candidate::Oci { refname, desc } = chosen else {
        bail!("internal: wrong candidate kind");
    };
    let manifest_data = read_verified(src, &desc.digest, "manifest")?;
    let manifest_data = if desc.media_type == OCI_INDEX || desc.media_type == DOCKER_LIST {
        pick_platform(src, &manifest_data)?
    } else {
        manifest_data
    };
    from_manifest(src, &manifest_data, refname)
}

/// The image a manifest's bytes describe, its config read (and checked)
/// from `src`: the second half of reading a layout, and all of reading a
/// pull's blob store.
pub fn from_manifest(
    src: &Source,
    manifest_data: &[u8],
    refname: Option<String>,
) -> Result<Resolved> {
    let manifest: OciManifest = parse_json(src, "manifest", manifest_data)?;
    let config_digest = Digest::parse(&manifest.config.digest)
        .with_context(|| format!("{}: manifest config", src.describe()))?;
    let config_data = read_verified(src, &manifest.config.digest, "config")?;
    let config: ImageConfig = parse_json(src, "config", &config_data)?;
    let ids = diff_ids(src, &config, manifest.layers.len())?;
    let layers = manifest
        .layers
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (l, diff_id))| {
            let d = Digest::parse(&l.digest)
                .with_context(|| format!("{}: manifest layer {}", src.describe(), i + 1))?;
            Ok(Layer {
                name: blob_name(&d),
                size: l.size,
                blob: Some(d),
                diff_id,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_platform(src, &config)?;
    Ok(Resolved {
        config_digest,
        config,
        layers,
        reference: refname,
        manifest: Some(Digest::of_bytes(manifest_data)),
    })
}

/// For a multi-platform index, the manifest for this machine.
fn pick_platform(src: &Source, index_data: &[u8]) -> Result<Vec<u8>> {
    let index: OciIndex = parse_json(src, "image index", index_data)?;
    let arch = host_arch();
    let d = index
        .manifests
        .iter()
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .ok_or_else(|| anyhow!("{}: the image has no linux/{arch} variant", src.describe()))?;
    read_verified(src, &d.digest, "platform manifest")
}

fn read_verified(src: &Source, digest: &str, what: &str) -> Result<Vec<u8>> {
    let d = Digest::parse(digest).with_context(|| format!("{}: {what}", src.describe()))?;
    let data = src.read_doc(&blob_name(&d))?;
    let got = Digest::of_bytes(&data);
    if got != d {
        bail!("{}: {what} {d}: digest mismatch, got {got} (the image is damaged or was tampered with)", src.describe());
    }
    Ok(data)
}

fn resolve_docker(src: &Source, want: Option<&str>) -> Result<Resolved> {
    let data = src.read_doc("manifest.json")?;
    let entries: Vec<DockerEntry> = parse_json(src, "manifest.json", &data)?;
    let cands = entries
        .iter()
        .map(|e| Candidate::Docker {
            tags: e.repo_tags.clone().unwrap_or_default(),
            entry: e,
        })
        .collect();
    let Candidate::Docker { tags, entry } = pick(src, cands, want)? else {
        bail!("internal: wrong candidate kind");
    };
    let config_data = src.read_doc(&entry.config)?;
    let config_digest = Digest::of_bytes(&config_data);
    // The config's file name is its digest; a mismatch means tampering.
    let stem = entry
        .config
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".json");
    if let Some(named) = Digest::from_hex(stem) {
        if named != config_digest {
            bail!("{}: config {}: digest mismatch, got {config_digest} (the image is damaged or was tampered with)", src.describe(), entry.config);
        }
    }
    let config: ImageConfig = parse_json(src, &entry.config, &config_data)?;
    let ids = diff_ids(src, &config, entry.layers.len())?;
    let layers = entry
        .layers
        .iter()
        .zip(ids)
        .map(|(name, diff_id)| {
            let (_, size) = src.open_member(name)?;
            Ok(Layer {
                name: name.clone(),
                size,
                blob: None,
                diff_id,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    check_platform(src, &config)?;
    Ok(Resolved {
        config_digest,
        config,
        layers,
        reference: tags.into_iter().next(),
        manifest: None,
    })
}

fn check_platform(src: &Source, config: &ImageConfig) -> Result<()> {
    if let Some(os) = config
        .os
        .as_deref()
        .filter(|o| !o.is_empty() && *o != "linux")
    {
        bail!("{}: the image is for {os}, not linux", src.describe());
    }
    if let Some(arch) = config
        .architecture
        .as_deref()
        .filter(|a| !a.is_empty() && *a != host_arch())
    {
        bail!(
            "{}: the image is for {arch}, this machine is {}",
            src.describe(),
            host_arch()
        );
    }
    Ok(())
}
