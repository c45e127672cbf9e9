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
//!   Each pull keeps its blobs apart, under the image's lock, so pulls of
//!   two images that share a layer never remove each other's files.

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
    let source = format!("{}{}", crate::image::REGISTRY_PREFIX, r.name());
    let set_refs = || -> Result<()> {
        cache.set_text_ref(
            &pin_key(r, &res.top, p),
            &source,
            config,
            &res.manifest.digest,
        )?;
        if r.digest.is_none() {
            cache.set_text_ref(&tag_key(r, p), &source, config, &res.manifest.digest)?;
        }
        Ok(())
    };
    // Written under the lock, as for image files: ranks that waited find
    // them and write nothing.
    let image = cache.ensure_locked(config, || {
        let image =
            fetch_and_unpack(cache, &res, s.quiet).map_err(crate::image::printable::printable)?;
        set_refs()?;
        Ok(image)
    })?;
    // The image was cached under another reference: this one's refs.
    set_refs()?;
    Ok((
        image,
        Origin {
            reference: r.name(),
            manifest: Some(res.manifest.digest.to_string()),
        },
    ))
}

/// The cached images `r` names, for `rmi docker://REF`: with a tag, every
/// platform's image pulled under it; with a digest, the image whose
/// manifest it is, or the host platform's image of the index it is.
pub fn cached_images(cache: &Cache, r: &Reference) -> Vec<Digest> {
    let prefix = crate::image::REGISTRY_PREFIX;
    let Some(want) = &r.digest else {
        let source = format!("{prefix}{}", r.name());
        return cache.registry_images(|src, _| src == source);
    };
    let repo = format!("{prefix}{}/{}", r.registry, r.repository);
    let want_text = want.to_string();
    let mut out = cache.registry_images(|src, manifest| {
        let same_repo = src == repo || src.starts_with(&format!("{repo}:"));
        same_repo && manifest == Some(want_text.as_str())
    });
    if let Some((d, _)) = cache.text_ref(&pin_key(r, want, &Platform::host())) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
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

/// Runs `work` on a blob store of the pull's own (see
/// [`Cache::pull_dir`]); the caller holds the image's lock. Whatever
/// happens, the blobs go: after success they have served, after a failure
/// they must not linger. A pull that is killed leaves its `.partial`
/// downloads, which the next pull of the image resumes.
pub fn with_pull_store<T>(
    cache: &Cache,
    res: &Resolution,
    work: impl FnOnce(&BlobStore) -> Result<T>,
) -> Result<T> {
    let d = &res.config.0;
    let store = BlobStore {
        root: cache.pull_dir(d)?,
    };
    let result = work(&store);
    cache.drop_pull_dir(d);
    result
}

/// Downloads and unpacks, holding the image's lock.
fn fetch_and_unpack(cache: &Cache, res: &Resolution, quiet: bool) -> Result<CachedImage> {
    with_pull_store(cache, res, |store| {
        pull::download(res, store, quiet)?;
        let src = Source::Pulled {
            dir: store.root.clone(),
            name: format!("docker://{}", res.reference),
        };
        let resolved =
            manifest::from_manifest(&src, &res.manifest.data, Some(res.reference.name()))?;
        cache.unpack_holding_lock(&src, &resolved, &UnpackOptions { quiet })
    })
}
