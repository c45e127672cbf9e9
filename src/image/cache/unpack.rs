//! One unpack: each layer streamed from the source through its blob hash,
//! the decompressor and its diff_id hash into the applier, then the
//! cached config and metadata beside the rootfs.

use super::{cached_config, Cache, Meta, UnpackOptions};
use crate::image::apply::Applier;
use crate::image::decompress::decompress;
use crate::image::digest::HashingReader;
use crate::image::manifest::Resolved;
use crate::image::pipeline;
use crate::image::source::Source;
use anyhow::{Context, Result};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

impl Cache {
    pub(super) fn unpack_into(
        &self,
        tmp: &Path,
        src: &Source,
        r: &Resolved,
        opts: &UnpackOptions,
    ) -> Result<()> {
        let rootfs = tmp.join("rootfs");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&rootfs)
            .with_context(|| format!("creating {}", rootfs.display()))?;
        let privileged = crate::sys::is_real_root();
        let mut applier = Applier::new(&rootfs, privileged)?;
        let total: u64 = r.layers.iter().fold(0u64, |t, l| t.saturating_add(l.size));
        let progress = crate::image::progress::Progress::new(total, opts.quiet, &src.describe());
        for (i, layer) in r.layers.iter().enumerate() {
            let what = format!("{}: layer {} ({})", src.describe(), i + 1, layer.name);
            let (raw, _) = src.open_member(&layer.name).with_context(|| what.clone())?;
            let raw = progress.wrap(raw);
            // blob hash (OCI only) → decompress → diff_id hash, on a second
            // thread → apply, here.
            let blob = HashingReader::maybe(raw, layer.blob.is_some());
            let tar_stream = HashingReader::new(decompress(blob).with_context(|| what.clone())?);
            let (diff_id, blob_digest, w) =
                (layer.diff_id.clone(), layer.blob.clone(), what.clone());
            let (pipe, producer) = pipeline::spawn(tar_stream, move |s| {
                let decoded = s.finish_inner(&diff_id, &w)?;
                if let Some(expected) = &blob_digest {
                    decoded.into_inner_hashing().finish(expected, &w)?;
                }
                Ok(())
            })?;
            let applied = applier
                .apply_layer(pipe)
                .with_context(|| what.clone())
                .and_then(|rest| rest.drain().with_context(|| what.clone()));
            // The thread is always waited for; the applier's error, if any,
            // is the one that explains (the reader only sees it stopped).
            let verified = producer.finish();
            applied?;
            verified?;
        }
        applier.finish()?;
        progress.done();
        if applier.device_placeholders > 0 {
            crate::logging::warn(&format!(
                "{}: {} device node(s) in the image became empty files (creating device nodes needs root)",
                src.describe(),
                applier.device_placeholders
            ));
        }
        let config_json = serde_json::to_vec(&cached_config(r))?;
        let config_path = tmp.join("config.json");
        fs::write(&config_path, config_json)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let meta = Meta {
            digest: r.config_digest.to_string(),
            references: r.reference.iter().cloned().collect(),
            size: applier.bytes,
            files: applier.files,
            created: crate::timefmt::now(),
            source: src.describe(),
            manifest: r.manifest.as_ref().map(|m| m.to_string()),
        };
        let meta_path = tmp.join("meta.json");
        fs::write(&meta_path, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("writing {}", meta_path.display()))?;
        Ok(())
    }
}
