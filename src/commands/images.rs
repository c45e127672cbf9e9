//! `hpcc images`, `rmi` and `prune`: looking after the image cache.

use crate::cli::{ImagesArgs, ListFormat, PruneArgs, RmiArgs};
use crate::image::cache::Cache;
use crate::image::ImageArg;
use crate::registry::cached;
use crate::registry::reference::Reference;
use anyhow::Result;

pub fn list(a: &ImagesArgs) -> Result<i32> {
    let cache = site_cache()?;
    let entries = cache.list()?;
    if a.format == ListFormat::Json {
        let v: Vec<_> = entries
            .iter()
            .map(|(m, used)| {
                serde_json::json!({
                    "digest": m.digest, "references": m.references, "size": m.size,
                    "files": m.files, "created": m.created, "source": m.source, "manifest": m.manifest,
                    "lastUsed": used.map(crate::timefmt::rfc3339),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "{:<14} {:<32} {:<14} {:>10} LAST USED",
        "DIGEST", "REFERENCE", "MANIFEST", "SIZE"
    );
    for (m, used) in entries {
        let short = m
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>();
        let reference = m
            .references
            .first()
            .cloned()
            .unwrap_or_else(|| "<none>".into());
        let used = used
            .map(crate::timefmt::rfc3339)
            .unwrap_or_else(|| "-".into());
        let manifest: String = m
            .manifest
            .as_deref()
            .map(|d| d.trim_start_matches("sha256:").chars().take(12).collect())
            .unwrap_or_else(|| "-".into());
        println!(
            "{short:<14} {reference:<32} {manifest:<14} {:>10} {}",
            human_size(m.size),
            &used[..used.len().min(19)]
        );
    }
    Ok(0)
}

pub fn rmi(a: &RmiArgs) -> Result<i32> {
    let cache = site_cache()?;
    for target in &a.images {
        if target.starts_with(crate::image::REGISTRY_PREFIX) {
            let r = Reference::parse(target)?;
            let found = cached::cached_images(&cache, &r);
            if found.is_empty() {
                anyhow::bail!("docker://{r}: not in the cache");
            }
            for d in found {
                println!("removed {}", cache.remove_image(d.hex())?);
            }
            continue;
        }
        let arg = ImageArg::parse(target);
        let key = if arg.path.exists() {
            match cache.digest_for(&arg.path, arg.reference.as_deref())? {
                Some(d) => d.hex().to_string(),
                None => anyhow::bail!("{target}: not in the cache"),
            }
        } else {
            target.clone()
        };
        let d = cache.remove_image(&key)?;
        println!("removed {d}");
    }
    Ok(0)
}

pub fn prune(a: &PruneArgs) -> Result<i32> {
    let cache = site_cache()?;
    let p = cache.prune(a.all)?;
    println!(
        "removed {} image(s), {} unfinished unpack(s) or pull(s), {} stale reference(s), {} unused skeleton(s)",
        p.images, p.leftovers, p.refs, p.skeletons
    );
    Ok(0)
}

/// The cache `hpcc run` uses: the site config's cache_dir counts here too.
fn site_cache() -> Result<Cache> {
    let site = crate::hpc::load_site()?;
    Ok(Cache::locate(site.cache_dir().as_deref()))
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
