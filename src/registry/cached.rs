//! A registry image in the cache: what `hpcc run docker://REF` and a plain
//! `hpcc pull REF` do.
//!
//! - A reference with a digest that the cache already holds starts with
//!   no network at all.
//! - A tag costs one small request (its manifest), to see whether it still
//!   names the cached image; `--offline` skips even that.
//! - Otherwise the image's lock is taken, so however many ranks of a node
//!   ask at once, one downloads each blob and unpacks; the others wait and
//!   find it done. Blobs are removed once unpacked: the rootfs is what runs.

use super::client::ClientOptions;
use super::platform::Platform;
use super::pull::{self, BlobStore, Resolution};
use super::reference::Reference;
use crate::hpc::site::SiteConfig;
use crate::image::cache::{Cache, CachedImage, UnpackOptions};
use crate::image::digest::Digest;
use crate::image::manifest;
use crate::image::source::Source;
use anyhow::{anyhow, Result};

/// Where a cached image came from, for `--record` and `images`.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `registry/repo:tag` (or `registry/repo` when pulled by digest).
    pub reference: String,
    /// The platform manifest's digest: what `REF@DIGEST` pins.
    pub manifest: Option<String>,
}

pub struct PullSettings<'a> {
    pub site: &'a SiteConfig,
    pub platform: Platform,
    pub offline: bool,
    pub quiet: bool,
}

fn pin_key(r: &Reference, top: &Digest, p: &Platform) -> String {
    format!("pin:{}|{p}", r.pinned(top))
}

fn tag_key(r: &Reference, p: &Platform) -> String {
    format!("tag:{}|{p}", r.name())
}

/// The image `r` names, pulled and unpacked unless the cache has it.
pub fn ensure(cache: &Cache, r: &Reference, s: &PullSettings) -> Result<(CachedImage, Origin)> {
    let p = &s.platform;
    if let Some(d) = &r.digest {
        if let Some(hit) = warm(cache, r, &pin_key(r, d, p))? {
            crate::debug!("docker://{r}: cached, no registry asked");
            return Ok(hit);
        }
    }
    if s.offline {
        let key = match &r.digest {
            Some(d) => pin_key(r, d, p),
            None => tag_key(r, p),
        };
        return warm(cache, r, &key)?.ok_or_else(|| {
            anyhow!("docker://{r}: not in the cache, and --offline forbids asking the registry")
        });
    }
    let opts = ClientOptions::from_site(s.site)?;
    let res = pull::resolve(r, p, s.site, &opts)?;
    let config = &res.config.0;
    let image = match cache.load(config)? {
        Some(img) => img,
        None => {
            let _lock = cache.lock_image(config)?;
            match cache.load(config)? {
                Some(img) => img,
                None => fetch_and_unpack(cache, &res, s.quiet)
                    .map_err(crate::image::printable::printable)?,
            }
        }
    };
    let source = format!("{}{}", crate::image::REGISTRY_PREFIX, r.name());
    cache.set_text_ref(
        &pin_key(r, &res.top, p),
        &source,
        config,
        &res.manifest.digest,
    )?;
    if r.digest.is_none() {
        cache.set_text_ref(&tag_key(r, p), &source, config, &res.manifest.digest)?;
    }
    Ok((
        image,
        Origin {
            reference: r.name(),
            manifest: Some(res.manifest.digest.to_string()),
        },
    ))
}

fn warm(cache: &Cache, r: &Reference, key: &str) -> Result<Option<(CachedImage, Origin)>> {
    let Some((d, manifest)) = cache.text_ref(key) else {
        return Ok(None);
    };
    Ok(cache.load(&d)?.map(|img| {
        (
            img,
            Origin {
                reference: r.name(),
                manifest,
            },
        )
    }))
}

/// The cache's blob store, each download under the blob's own lock.
pub fn cache_store(cache: &Cache) -> Result<BlobStore<'_>> {
    Ok(BlobStore {
        root: cache.blob_root()?,
        lock: Box::new(move |d| Ok(Box::new(cache.lock_blob(d)?) as Box<dyn Send>)),
    })
}

/// Downloads and unpacks, holding the image's lock. Whatever happens, the
/// blobs go: after success they have served, after a failure they must
/// not linger (a pull that is killed leaves its `.partial`, which the
/// next pull resumes).
fn fetch_and_unpack(cache: &Cache, res: &Resolution, quiet: bool) -> Result<CachedImage> {
    let store = cache_store(cache)?;
    let result = (|| {
        pull::download(res, &store, quiet)?;
        let src = Source::Pulled {
            dir: store.root.clone(),
            name: format!("docker://{}", res.reference),
        };
        let resolved =
            manifest::from_manifest(&src, &res.manifest.data, Some(res.reference.name()))?;
        cache.unpack_holding_lock(&src, &resolved, &UnpackOptions { quiet })
    })();
    pull::discard(res, &store);
    result
}
