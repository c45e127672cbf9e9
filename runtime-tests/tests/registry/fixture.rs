//! The test image, the hpcc each test runs, and the verdicts.

use crate::imagefix::scratch::Scratch;
use crate::imagefix::{self, config_for, manifest_for, sha256_hex, Blob};
use crate::server::{ok, status, Reply, Request, Server};
use std::process::{Command, Output};
use std::sync::Arc;
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const REPO: &str = "t/img";

/// The test image: the busybox base layer (and any more layers), its
/// config and manifest, served under `repo`.
pub struct Img {
    pub repo: &'static str,
    pub layer: Vec<u8>,
    pub more: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Img {
    pub fn new() -> Arc<Img> {
        Img::layered(REPO, &[])
    }

    /// The base layer and then `more`, as repository `repo`.
    pub fn layered(repo: &'static str, more: &[Vec<u8>]) -> Arc<Img> {
        let mut blobs = vec![Blob::gzip(&imagefix::base_layer())];
        blobs.extend(more.iter().map(|l| Blob::gzip(l)));
        let config = config_for(&blobs);
        let manifest = manifest_for(&blobs, &config);
        let mut data = blobs.into_iter().map(|b| b.data);
        Arc::new(Img {
            repo,
            layer: data.next().unwrap(),
            more: data.collect(),
            config,
            manifest,
        })
    }
    pub fn manifest_digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.manifest))
    }
    pub fn layer_digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.layer))
    }
    pub fn config_hex(&self) -> String {
        sha256_hex(&self.config)
    }

    /// The blob a registry holds under digest `d`.
    fn blob(&self, d: &str) -> Option<&Vec<u8>> {
        if d == format!("sha256:{}", self.config_hex()) {
            return Some(&self.config);
        }
        std::iter::once(&self.layer)
            .chain(&self.more)
            .find(|l| d == format!("sha256:{}", sha256_hex(l)))
    }

    /// What a correct registry answers.
    pub fn answer(&self, req: &Request) -> Reply {
        let p = req.path.as_str();
        let manifests = format!("/v2/{}/manifests/", self.repo);
        let blobs = format!("/v2/{}/blobs/", self.repo);
        if p == "/v2/" {
            return ok("application/json", b"{}".to_vec());
        }
        if let Some(key) = p.strip_prefix(&manifests) {
            if key == "latest" || key == self.manifest_digest() {
                return ok(OCI_MANIFEST, self.manifest.clone());
            }
        }
        if let Some(d) = p.strip_prefix(&blobs) {
            let Some(data) = self.blob(d) else {
                return status(404);
            };
            let from = req.range_start().unwrap_or(0).min(data.len());
            if from > 0 {
                let range = format!("bytes {from}-{}/{}", data.len() - 1, data.len());
                return Reply::Full(
                    206,
                    vec![("Content-Range".into(), range)],
                    data[from..].to_vec(),
                );
            }
            return ok("application/octet-stream", data.clone());
        }
        status(404)
    }
}

/// A scratch dir whose hpcc sees only this test's cache, config and
/// credentials, and gives up on a silent registry after 1 s.
pub fn hpcc(s: &Scratch, args: &[&str]) -> Command {
    let site = s.dir.join("site.toml");
    if !site.exists() {
        std::fs::write(&site, "").unwrap();
    }
    let mut c = s.cmd(args);
    c.env("HPCC_CONFIG", &site)
        .env("HOME", &s.dir)
        .env("REGISTRY_AUTH_FILE", s.dir.join("auth.json"))
        .env("HPCC_REGISTRY_TIMEOUT", "1")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG")
        .env_remove("SSL_CERT_FILE");
    c
}

pub fn run(s: &Scratch, args: &[&str]) -> Output {
    hpcc(s, args).output().unwrap()
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn reference(srv: &Server, tail: &str) -> String {
    format!("docker://{}/{REPO}{tail}", srv.host())
}

/// The run succeeded and printed `want`.
pub fn ran(o: &Output, want: &str) {
    let (out, err) = text(o);
    assert!(
        o.status.success() && out.contains(want),
        "stdout {out:?}\nstderr {err}"
    );
}

/// The command failed with one `hpcc:` line holding every word of
/// `words`, and the cache holds no image, blob, partial or unpack.
pub fn refused(s: &Scratch, o: &Output, words: &[&str]) {
    says(o, words);
    assert_eq!(s.images(), Vec::<String>::new(), "an image was left");
    assert_eq!(s.tmp_entries(), Vec::<String>::new(), "an unpack was left");
    let pulls = imagefix::list(&s.cache().join("pulls"));
    assert_eq!(pulls, Vec::<String>::new(), "a pull's blobs were left");
}

/// The command failed with one `hpcc:` line holding every word of `words`.
pub fn says(o: &Output, words: &[&str]) {
    let (_, err) = text(o);
    assert!(!o.status.success(), "succeeded: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("hpcc: "), "{err}");
    for w in words {
        assert!(lines[0].contains(w), "{w:?} missing from {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// No output file, and no partial one beside it.
pub fn no_output(s: &Scratch, name: &str) {
    let left: Vec<String> = imagefix::list(&s.dir)
        .into_iter()
        .filter(|n| n.contains(name))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "output left behind");
}
