//! `hpcc pull docker://REF [-o FILE.tar | --layout DIR]`: into the cache
//! (what `hpcc run docker://REF` would do, without running), or out to an
//! OCI archive or layout, the way to pull once on a login node onto the
//! parallel filesystem for `srun … hpcc run /lustre/img.tar`.

use crate::cli::PullArgs;
use crate::hpc;
use crate::image::cache::Cache;
use crate::registry::cached::{self, PullSettings};
use crate::registry::client::ClientOptions;
use crate::registry::export;
use crate::registry::platform::Platform;
use crate::registry::pull;
use crate::registry::reference::Reference;
use anyhow::Result;

pub fn run(a: &PullArgs) -> Result<i32> {
    let r = Reference::parse(&a.reference)?;
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let site = hpc::load_site()?;
    let cache = Cache::locate(site.cache_dir().as_deref());
    let out = a.output.as_deref().map(|p| (p, false));
    let out = out.or(a.layout.as_deref().map(|p| (p, true)));
    let Some((dest, layout)) = out else {
        let settings = PullSettings {
            site: &site,
            platform,
            offline: false,
            quiet: a.quiet,
        };
        let (img, origin) = cached::ensure(&cache, &r, &settings)?;
        println!(
            "docker://{}@{} cached as {}",
            origin.reference,
            origin.manifest.unwrap_or_default(),
            img.digest
        );
        return Ok(0);
    };
    pull::check_output(dest, layout)?;
    let opts = ClientOptions::from_site(&site)?;
    let res = pull::resolve(&r, &platform, &site, &opts)?;
    // The image's lock: a pull into the cache of the same image (or a
    // second -o) waits rather than writing the same blobs.
    let _lock = cache.lock_image(&res.config.0)?;
    cached::with_pull_store(&cache, &res, |store| {
        pull::download(&res, store, a.quiet)?;
        if layout {
            export::to_layout(&res, store, dest)
        } else {
            export::to_archive(&res, store, dest)
        }
    })?;
    println!(
        "docker://{}@{} written to {}",
        r.name(),
        res.manifest.digest,
        dest.display()
    );
    Ok(0)
}
