//! Manifests and blobs off the wire, each checked against its digest as
//! it streams. A blob goes to `NAME.partial` and is renamed to NAME only
//! once its digest is right; a dropped connection resumes with `Range`
//! where it stopped, within this process or the next one.

use super::client::Client;
use crate::image::digest::{to_hex, Digest};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// No real manifest or index comes near this (the distribution registry
/// itself refuses manifests over 4 MiB); a hostile one must not fill memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Configs are small too; layers are streamed to disk instead.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// How often one blob may be resumed after a dropped connection.
const RESUMES: u32 = 5;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A manifest or index as fetched.
#[derive(Debug, Clone)]
pub struct Document {
    pub digest: Digest,
    pub media_type: String,
    pub data: Vec<u8>,
}

impl Document {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// GET a manifest by tag or digest. With `expect`, the bytes must hash to
/// it; otherwise a `Docker-Content-Digest` the registry sends must match.
pub fn manifest(c: &Client, key: &str, expect: Option<&Digest>, what: &str) -> Result<Document> {
    let mut resp = c.get(&c.manifest_path(key), ACCEPT, 0)?;
    c.check_status(&resp, what)?;
    let header_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_string());
    let claimed = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let data = resp
        .body_mut()
        .with_config()
        .limit(MAX_MANIFEST_BYTES)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => anyhow!(
                "{what}: the manifest is over {} MiB; refusing it",
                MAX_MANIFEST_BYTES >> 20
            ),
            e => super::client::describe(e, c.host(), c.timeout()).context(what.to_string()),
        })?;
    let digest = Digest::of_bytes(&data);
    if let Some(want) = expect {
        if &digest != want {
            bail!("{what}: manifest digest mismatch: asked for {want}, got {digest} (the registry is broken or was tampered with)");
        }
    } else if let Some(claimed) = claimed {
        if claimed != digest.to_string() {
            bail!("{what}: manifest digest mismatch: the registry says {claimed}, the bytes are {digest}");
        }
    }
    let media_type = match header_type.filter(|t| ACCEPT.contains(&t.as_str())) {
        Some(t) => t,
        None => {
            body_media_type(&data).with_context(|| format!("{what}: the manifest is malformed"))?
        }
    };
    if media_type.starts_with("application/vnd.docker.distribution.manifest.v1") {
        bail!("{what}: a Docker schema 1 manifest; hpcc reads schema 2 and OCI only (re-push the image with a current client)");
    }
    if !ACCEPT.contains(&media_type.as_str()) {
        bail!("{what}: unknown manifest type {media_type:?}");
    }
    Ok(Document {
        digest,
        media_type,
        data,
    })
}

/// The media type a manifest states inside; an OCI manifest may leave it
/// out, and then its shape decides.
fn body_media_type(data: &[u8]) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(data)?;
    if let Some(t) = v.get("mediaType").and_then(|t| t.as_str()) {
        return Ok(t.to_string());
    }
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Ok("application/vnd.docker.distribution.manifest.v1+json".into());
    }
    if v.get("manifests").is_some() {
        return Ok(OCI_INDEX.into());
    }
    if v.get("config").is_some() {
        return Ok(OCI_MANIFEST.into());
    }
    bail!("no mediaType, config or manifests")
}

/// A small blob (a config) into memory, checked.
pub fn small_blob(c: &Client, d: &Digest, what: &str) -> Result<Vec<u8>> {
    let mut resp = c.get(&c.blob_path(d), &[], 0)?;
    c.check_status(&resp, what)?;
    let data = resp
        .body_mut()
        .with_config()
        .limit(MAX_CONFIG_BYTES)
        .read_to_vec()
        .map_err(|e| super::client::describe(e, c.host(), c.timeout()))
        .with_context(|| what.to_string())?;
    let got = Digest::of_bytes(&data);
    if &got != d {
        bail!("{what}: digest mismatch: expected {d}, got {got} (the registry is broken or was tampered with)");
    }
    Ok(data)
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Streams blob `d` (of `size` bytes, from the manifest) into `dest`,
/// resuming a `.partial` left by a dropped connection or a killed pull.
/// The caller holds the blob's lock. `inc` is told of every byte.
pub fn blob_to_file(
    c: &Client,
    d: &Digest,
    size: u64,
    dest: &Path,
    what: &str,
    inc: &dyn Fn(u64),
) -> Result<()> {
    let partial = partial_path(dest);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&partial)
        .with_context(|| format!("{what}: creating {}", partial.display()))?;
    let (mut hasher, mut have) = seed(&mut file, &partial, size)?;
    inc(have);
    let mut failures = 0u32;
    let mut buf = vec![0u8; 256 << 10];
    while have < size {
        let resp = c.get(&c.blob_path(d), &[], have)?;
        match resp.status().as_u16() {
            206 if have > 0 => {
                let start = content_range_start(&resp);
                if start != Some(have) {
                    bail!("{what}: the registry resumed at byte {start:?}, not {have}");
                }
            }
            200 if have > 0 => {
                // The registry ignores Range: start over.
                file.set_len(0)?;
                hasher = Sha256::new();
                have = 0;
            }
            416 => {
                file.set_len(0)?;
                hasher = Sha256::new();
                have = 0;
                failures += 1;
                if failures > RESUMES {
                    bail!("{what}: the registry refuses every range request");
                }
                continue;
            }
            _ => c.check_status(&resp, what)?,
        }
        let mut body = resp.into_body().into_reader();
        let before = have;
        let err = loop {
            match body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    if have + n as u64 > size {
                        bail!("{what}: the blob is larger than the {size} bytes the manifest says");
                    }
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n])
                        .with_context(|| format!("{what}: writing {}", partial.display()))?;
                    have += n as u64;
                    inc(n as u64);
                }
                Err(e) => break Some(e),
            }
        };
        if have < size {
            failures += 1;
            let why = err.map_or("the connection closed early".to_string(), |e| e.to_string());
            if failures > RESUMES {
                bail!("{what}: truncated: got {have} of {size} bytes ({why})");
            }
            crate::debug!("{what}: {why} at byte {have} of {size}; resuming");
            if have == before {
                std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(failures)));
            }
        }
    }
    let got = Digest::from_hex(&to_hex(&hasher.finalize()))
        .ok_or_else(|| anyhow!("internal: bad hex digest"))?;
    if &got != d {
        let _ = fs::remove_file(&partial);
        bail!("{what}: digest mismatch: expected {d}, got {got} (the registry is broken or was tampered with)");
    }
    drop(file);
    fs::rename(&partial, dest)
        .with_context(|| format!("{what}: renaming into {}", dest.display()))?;
    Ok(())
}

/// The hash of what a partial file already holds, and its length; a
/// partial longer than the blob is thrown away.
fn seed(file: &mut File, partial: &Path, size: u64) -> Result<(Sha256, u64)> {
    let len = file.metadata()?.len();
    let mut hasher = Sha256::new();
    if len > size {
        file.set_len(0)?;
        return Ok((hasher, 0));
    }
    let mut reader = File::open(partial)?;
    let n = std::io::copy(&mut (&mut reader).take(len), &mut HashWriter(&mut hasher))?;
    Ok((hasher, n))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// START of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get("content-range")?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_from_the_body() {
        assert_eq!(
            body_media_type(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            )
            .unwrap(),
            DOCKER_MANIFEST
        );
        assert_eq!(
            body_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_INDEX
        );
        assert_eq!(
            body_media_type(br#"{"schemaVersion":2,"config":{}}"#).unwrap(),
            OCI_MANIFEST
        );
        assert!(body_media_type(br#"{"schemaVersion":1,"fsLayers":[]}"#)
            .unwrap()
            .contains("v1"));
        assert!(body_media_type(b"{}").is_err());
        assert!(body_media_type(b"nope").is_err());
    }
}
