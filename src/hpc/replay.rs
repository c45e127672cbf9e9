//! `hpcc run --from-record run.json`: run exactly the image a `--record`
//! file names, years later, and say what else has changed since.
//!
//! A pulled image is asked for by its manifest digest, so a tag that moved
//! cannot change it; a file must still hold the recorded image. Either
//! way the image's config digest must equal the recorded one, or the run
//! is refused. The recorded command runs unless another is given.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::Path;

pub struct Replay {
    record: Value,
    from: String,
}

impl Replay {
    pub fn load(path: &Path) -> Result<Replay> {
        let text =
            std::fs::read(path).with_context(|| format!("--from-record {}", path.display()))?;
        let record: Value = serde_json::from_slice(&text)
            .map_err(|e| anyhow!("--from-record {}: not a record: {e}", path.display()))?;
        if record.get("recordVersion").and_then(Value::as_u64) != Some(1) {
            bail!(
                "--from-record {}: not an hpcc record (recordVersion 1)",
                path.display()
            );
        }
        let r = Replay {
            record,
            from: path.display().to_string(),
        };
        r.digest()?;
        Ok(r)
    }

    fn image_field(&self, key: &str) -> Option<&str> {
        self.record.get("image")?.get(key)?.as_str()
    }

    /// The image config digest the record names.
    pub fn digest(&self) -> Result<crate::image::digest::Digest> {
        let d = self
            .image_field("digest")
            .ok_or_else(|| anyhow!("--from-record {}: no image.digest", self.from))?;
        crate::image::digest::Digest::parse(d)
            .with_context(|| format!("--from-record {}: image.digest", self.from))
    }

    /// What to run: `docker://registry/repo@MANIFEST` for a pulled image
    /// (pinned, whatever the tag says now), else the recorded file.
    pub fn image(&self) -> Result<String> {
        if let (Some(reference), Some(manifest)) =
            (self.image_field("reference"), self.image_field("manifest"))
        {
            let repo = match reference.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo,
                _ => reference,
            };
            let repo = repo.split('@').next().unwrap_or(repo);
            return Ok(format!(
                "{}{repo}@{manifest}",
                crate::image::REGISTRY_PREFIX
            ));
        }
        self.image_field("source")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("--from-record {}: the record names no image source (it predates --from-record); run the image file with this digest: {}", self.from, self.image_field("digest").unwrap_or("?")))
    }

    /// The recorded command, for a replay that gives none.
    pub fn command(&self) -> Vec<String> {
        self.record
            .get("command")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Refuses an image other than the recorded one.
    pub fn check_image(&self, got: &crate::image::digest::Digest, image: &str) -> Result<()> {
        let want = self.digest()?;
        if &want != got {
            bail!("--from-record {}: {image} is now image {got}, the record names {want}; refusing to run a different image", self.from);
        }
        Ok(())
    }

    /// One line per thing that differs between the record and `now`.
    pub fn differences(&self, now: &Value) -> Vec<String> {
        differences(&self.record, now)
    }
}

/// The fields that define a run besides the image, and how to name them.
const COMPARED: &[(&str, &str)] = &[
    ("/hpcc/version", "hpcc version"),
    ("/hpcc/commit", "hpcc commit"),
    ("/host/kernel", "kernel"),
    ("/host/machine", "machine"),
    ("/host/gpuDriver", "GPU driver"),
    ("/binds", "binds"),
    ("/devices", "devices"),
    ("/cdiDevices", "CDI devices"),
    ("/envKeys", "environment keys"),
];

fn differences(then: &Value, now: &Value) -> Vec<String> {
    let show = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "(none)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    COMPARED
        .iter()
        .filter_map(|(ptr, name)| {
            let (a, b) = (then.pointer(ptr), now.pointer(ptr));
            let same = a.unwrap_or(&Value::Null) == b.unwrap_or(&Value::Null);
            (!same).then(|| format!("{name}: recorded {}, now {}", show(a), show(b)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_each_changed_field() {
        let then = json!({"hpcc": {"version": "0.1.0"}, "host": {"kernel": "5.10.0", "gpuDriver": null},
            "binds": [{"source": "/a"}], "envKeys": ["A"]});
        let now = json!({"hpcc": {"version": "0.2.0"}, "host": {"kernel": "5.10.0", "gpuDriver": "550.54"},
            "binds": [{"source": "/a"}], "envKeys": ["A"]});
        assert_eq!(
            differences(&then, &now),
            vec![
                "hpcc version: recorded 0.1.0, now 0.2.0".to_string(),
                "GPU driver: recorded (none), now 550.54".to_string()
            ]
        );
        assert!(differences(&then, &then).is_empty());
    }

    #[test]
    fn pulled_images_replay_by_manifest_digest() {
        let d = crate::image::digest::Digest::of_bytes(b"c").to_string();
        let r = Replay {
            record: json!({"recordVersion": 1, "image": {"digest": d, "source": "docker://localhost:5000/bb:1",
                "reference": "localhost:5000/bb:1", "manifest": "sha256:abc"}, "command": ["echo", "hi"]}),
            from: "r.json".into(),
        };
        assert_eq!(r.image().unwrap(), "docker://localhost:5000/bb@sha256:abc");
        assert_eq!(r.command(), vec!["echo", "hi"]);
        let other = crate::image::digest::Digest::of_bytes(b"x");
        let e = r.check_image(&other, "img").unwrap_err().to_string();
        assert!(e.contains("refusing") && e.contains(&d), "{e}");
        let file = Replay {
            record: json!({"recordVersion": 1, "image": {"digest": d, "source": "/data/img.tar"}}),
            from: "r.json".into(),
        };
        assert_eq!(file.image().unwrap(), "/data/img.tar");
        let old = Replay {
            record: json!({"recordVersion": 1, "image": {"digest": d}}),
            from: "r.json".into(),
        };
        assert!(old
            .image()
            .unwrap_err()
            .to_string()
            .contains("no image source"));
    }
}
