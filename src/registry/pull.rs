//! A pull: reference → manifest (through an index, for this platform) →
//! config and layers, downloaded into a blob store, a few at a time.
//! Mirrors from the site config are asked first, the registry last.

use super::client::{Client, ClientOptions};
use super::fetch::{self, Document};
use super::platform::{self, Platform};
use super::reference::Reference;
use crate::image::digest::Digest;
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Layers downloaded at once: enough to fill a link, few enough to be
/// polite to a registry that 1,000 nodes pull from.
const PARALLEL: usize = 3;

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Deserialize)]
struct ManifestBody {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// What a reference names right now, and where to fetch its blobs.
pub struct Resolution {
    pub reference: Reference,
    /// What the tag (or the digest asked for) points at: an index or a manifest.
    pub top: Digest,
    /// This platform's manifest.
    pub manifest: Document,
    pub config: (Digest, u64),
    pub layers: Vec<(Digest, u64)>,
    pub client: Client,
}

/// The hosts to ask, in order: the site's mirrors for this registry,
/// then the registry itself.
pub fn hosts(
    r: &Reference,
    mirrors: &std::collections::HashMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out: Vec<String> = mirrors.get(&r.registry).cloned().unwrap_or_default();
    out.push(r.api_host().to_string());
    out
}

/// Resolves `r` for `platform`, trying each host until one answers.
pub fn resolve(
    r: &Reference,
    platform: &Platform,
    site: &crate::hpc::site::SiteConfig,
    opts: &ClientOptions,
) -> Result<Resolution> {
    let hosts = hosts(r, &site.registry_mirrors);
    let last = hosts.len() - 1;
    for (i, host) in hosts.iter().enumerate() {
        let client = Client::new(r, host, opts)?;
        match resolve_on(client, r, platform) {
            Ok(res) => return Ok(res),
            Err(e) if i < last => {
                crate::debug!("mirror {host} could not serve {r}: {e:#}; trying the next");
            }
            Err(e) => return Err(naming(e, r)),
        }
    }
    Err(anyhow!("docker://{r}: no host to pull from"))
}

/// Every error line names the reference: transport errors name only the
/// host they came from.
fn naming(e: anyhow::Error, r: &Reference) -> anyhow::Error {
    if format!("{e:#}").contains(crate::image::REGISTRY_PREFIX) {
        e
    } else {
        e.context(format!("docker://{r}"))
    }
}

fn resolve_on(client: Client, r: &Reference, platform: &Platform) -> Result<Resolution> {
    let what = format!("docker://{r}");
    let top = fetch::manifest(&client, &r.manifest_key(), r.digest.as_ref(), &what)?;
    let manifest = if top.is_index() {
        let chosen = platform::choose(&top.data, platform).with_context(|| what.clone())?;
        let d = Digest::parse(&chosen).with_context(|| format!("{what}: image index"))?;
        let m = fetch::manifest(&client, &d.to_string(), Some(&d), &what)?;
        if m.is_index() {
            bail!("{what}: the index entry for {platform} is itself an index");
        }
        m
    } else {
        top.clone()
    };
    let body: ManifestBody = serde_json::from_slice(&manifest.data)
        .map_err(|e| anyhow!("{what}: the manifest is malformed: {e}"))?;
    let parse = |d: &Descriptor, which: &str| -> Result<(Digest, u64)> {
        let digest =
            Digest::parse(&d.digest).with_context(|| format!("{what}: manifest {which}"))?;
        Ok((digest, d.size))
    };
    let config = parse(&body.config, "config")?;
    let layers = body
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| parse(l, &format!("layer {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Resolution {
        reference: r.clone(),
        top: top.digest,
        manifest,
        config,
        layers,
        client,
    })
}

/// Where a pull's blobs land: `ROOT/blobs/sha256/HEX`, laid out as in an
/// OCI layout so the unpack reads them as one. The caller holds the
/// image's lock, so no other process writes there.
pub struct BlobStore {
    pub root: PathBuf,
}

impl BlobStore {
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }
}

/// Downloads the manifest, config and layers of `res` into `store`;
/// layers already there are kept. Returns the config's bytes.
pub fn download(res: &Resolution, store: &BlobStore, quiet: bool) -> Result<Vec<u8>> {
    download_named(res, store, quiet).map_err(|e| naming(e, &res.reference))
}

fn download_named(res: &Resolution, store: &BlobStore, quiet: bool) -> Result<Vec<u8>> {
    let what = format!("docker://{}", res.reference);
    let dir = store.root.join("blobs/sha256");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    crate::fs::write_atomic(&store.path(&res.manifest.digest), &res.manifest.data, 0o600)?;
    let config = fetch::small_blob(&res.client, &res.config.0, &format!("{what}: config"))?;
    crate::fs::write_atomic(&store.path(&res.config.0), &config, 0o600)?;

    let mut todo: Vec<&(Digest, u64)> = Vec::new();
    for l in &res.layers {
        if !todo.iter().any(|t| t.0 == l.0) {
            todo.push(l);
        }
    }
    let total = todo.iter().fold(0u64, |t, l| t.saturating_add(l.1));
    let progress = crate::image::progress::Progress::pulling(total, quiet, &what);
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(todo.len()) {
            s.spawn(|| loop {
                if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((d, size)) = todo.get(i) else { return };
                let result = (|| -> Result<()> {
                    let dest = store.path(d);
                    if dest.exists() {
                        progress.inc(*size);
                        return Ok(());
                    }
                    let label = format!("{what}: layer {}", d.short());
                    fetch::blob_to_file(&res.client, d, *size, &dest, &label, &|n| progress.inc(n))
                })();
                if let Err(e) = result {
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                    return;
                }
            });
        }
    });
    progress.done();
    if let Some(e) = first_error.into_inner().unwrap_or(None) {
        return Err(e);
    }
    Ok(config)
}

/// The OCI layout index for one pulled image, named by its reference.
pub fn layout_index(res: &Resolution) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": res.manifest.media_type,
            "digest": res.manifest.digest.to_string(),
            "size": res.manifest.data.len(),
            "annotations": {"org.opencontainers.image.ref.name": res.reference.name()}
        }]
    })
}

/// Checks a path given for output before any download starts.
pub fn check_output(p: &Path, layout: bool) -> Result<()> {
    if p.exists() {
        if layout {
            bail!(
                "{}: already exists; --layout makes a new directory",
                p.display()
            );
        }
        if p.is_dir() {
            bail!("{}: is a directory; -o writes an archive file", p.display());
        }
    }
    let parent = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("{}: no such directory to write into", parent.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_before_the_registry() {
        let mut m = std::collections::HashMap::new();
        m.insert(
            "docker.io".to_string(),
            vec!["mirror.site:5000".to_string()],
        );
        let hub = Reference::parse("docker://busybox").unwrap();
        assert_eq!(
            hosts(&hub, &m),
            vec!["mirror.site:5000", "registry-1.docker.io"]
        );
        let other = Reference::parse("docker://reg.site/x").unwrap();
        assert_eq!(hosts(&other, &m), vec!["reg.site"]);
        let e = naming(anyhow!("reg.site: Connection refused"), &other).to_string();
        assert_eq!(e, "docker://reg.site/x:latest");
        let e = format!(
            "{:#}",
            naming(anyhow!("reg.site: Connection refused"), &other)
        );
        assert_eq!(
            e,
            "docker://reg.site/x:latest: reg.site: Connection refused"
        );
    }
}
