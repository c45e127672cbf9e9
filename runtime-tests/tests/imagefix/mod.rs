//! Test images built from scratch: layers from the host's static busybox,
//! packed as docker-archive, oci-archive (gzip or zstd) or an OCI layout,
//! with the digests a real engine would write; and [`scratch::Scratch`],
//! the scratch directory with its own image cache that the image tests
//! run hpcc in.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub mod scratch;

/// Bytes as lowercase hex (a digest as the image documents write it).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub enum Entry {
    Dir(&'static str, u32),
    File(String, Vec<u8>, u32),
    Symlink(String, String),
    HardLink(String, String),
    CharDev(&'static str, u32, u32),
    /// A regular file whose name is written as-is (hostile names the tar
    /// crate's builder would refuse: "../x", "/abs").
    RawFile(Vec<u8>, Vec<u8>),
    /// A hard link whose target is written as-is.
    RawHardLink(Vec<u8>, Vec<u8>),
    /// A symlink whose name and target are written as-is.
    RawSymlink(Vec<u8>, Vec<u8>),
    /// A directory whose name is written as-is.
    RawDir(Vec<u8>),
    BlockDev(&'static str, u32, u32),
    Fifo(&'static str),
}

/// An old-style header with name and link name bytes copied verbatim.
fn raw_header(kind: tar::EntryType, name: &[u8], link: &[u8], size: u64) -> tar::Header {
    let mut h = tar::Header::new_old();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    let raw = h.as_old_mut();
    raw.name[..name.len()].copy_from_slice(name);
    raw.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    h
}

pub fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::Dir(name, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
            Entry::File(name, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).unwrap();
            }
            Entry::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            Entry::HardLink(name, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            Entry::CharDev(name, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_size(0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
            Entry::RawFile(name, data) => {
                let h = raw_header(tar::EntryType::Regular, name, b"", data.len() as u64);
                b.append(&h, &data[..]).unwrap();
            }
            Entry::RawHardLink(name, target) => {
                let h = raw_header(tar::EntryType::Link, name, target, 0);
                b.append(&h, &[][..]).unwrap();
            }
            Entry::RawSymlink(name, target) => {
                let h = raw_header(tar::EntryType::Symlink, name, target, 0);
                b.append(&h, &[][..]).unwrap();
            }
            Entry::RawDir(name) => {
                let mut h = raw_header(tar::EntryType::Directory, name, b"", 0);
                h.set_mode(0o755);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Entry::BlockDev(name, major, minor) => {
                h.set_entry_type(tar::EntryType::Block);
                h.set_mode(0o660);
                h.set_size(0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
            Entry::Fifo(name) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The host's static busybox (the one the bundle tests use, see
/// [`runtime_tests::busybox`]), as bytes.
pub fn busybox() -> Vec<u8> {
    let path = runtime_tests::busybox();
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The base layer: busybox and the applets the tests use.
pub fn base_layer() -> Vec<u8> {
    let mut e = vec![
        Entry::Dir("bin", 0o755),
        Entry::File("bin/busybox".into(), busybox(), 0o755),
    ];
    for a in [
        "sh", "ls", "cat", "echo", "id", "pwd", "env", "touch", "stat", "test", "readlink",
        "sleep", "true", "mkdir",
    ] {
        e.push(Entry::Symlink(format!("bin/{a}"), "busybox".into()));
    }
    e.push(Entry::Dir("etc", 0o755));
    e.push(Entry::File(
        "etc/passwd".into(),
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        0o644,
    ));
    layer(&e)
}

pub struct Image {
    pub layers: Vec<Vec<u8>>,
    pub config: serde_json::Value,
    pub tag: String,
    /// Diff ids to claim instead of the true ones (a forged config).
    pub claimed_diff_ids: Option<Vec<String>>,
}

impl Image {
    pub fn new(layers: Vec<Vec<u8>>, tag: &str) -> Image {
        Image {
            layers,
            config: serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "config": {"Env": ["PATH=/bin", "GREETING=hello"], "Cmd": ["/bin/sh"]}
            }),
            tag: tag.to_string(),
            claimed_diff_ids: None,
        }
    }

    pub fn with_config(mut self, container_config: serde_json::Value) -> Image {
        self.config["config"] = container_config;
        self
    }

    fn config_bytes(&self) -> Vec<u8> {
        let mut c = self.config.clone();
        let ids: Vec<String> = match &self.claimed_diff_ids {
            Some(ids) => ids.clone(),
            None => self
                .layers
                .iter()
                .map(|l| format!("sha256:{}", sha256_hex(l)))
                .collect(),
        };
        c["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": ids});
        serde_json::to_vec(&c).unwrap()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    /// zstd cut into frames, as pzstd and podman's zstd:chunked write it:
    /// a skippable frame before each of three frames, one at the end.
    ZstdFrames,
}

/// A zstd skippable frame holding `data`.
fn skippable_frame(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x50, 0x2a, 0x4d, 0x18];
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => {
            let mut child = std::process::Command::new("zstd")
                .args(["-q", "-c", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("zstd (install the zstd package)");
            let mut stdin = child.stdin.take().unwrap();
            let input = data.to_vec();
            let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
            let out = child.wait_with_output().unwrap();
            writer.join().unwrap();
            assert!(out.status.success());
            out.stdout
        }
        Compression::ZstdFrames => {
            let third = data.len() / 3 + 1;
            let mut out = Vec::new();
            for part in data.chunks(third) {
                let f = compress(part, Compression::Zstd);
                out.extend(skippable_frame(&(f.len() as u32).to_le_bytes()));
                out.extend(f);
            }
            out.extend(skippable_frame(b"a table of contents"));
            out
        }
    }
}

fn add(b: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, name, data).unwrap();
}

/// `docker save` layout: manifest.json, <hex>.json, <n>/layer.tar.
pub fn write_docker_archive(path: &Path, images: &[&Image]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut manifest = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let cfg = img.config_bytes();
        let cfg_name = format!("{}.json", sha256_hex(&cfg));
        add(&mut b, &cfg_name, &cfg);
        let mut names = Vec::new();
        for (j, l) in img.layers.iter().enumerate() {
            let n = format!("img{i}/l{j}/layer.tar");
            add(&mut b, &n, l);
            names.push(n);
        }
        manifest
            .push(serde_json::json!({"Config": cfg_name, "RepoTags": [img.tag], "Layers": names}));
    }
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.finish().unwrap();
}

/// The blobs, manifests and index of an OCI image layout.
fn oci_files(images: &[&Image], c: Compression) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    let mut index = Vec::new();
    for img in images {
        let mut layers = Vec::new();
        for l in &img.layers {
            let blob = compress(l, c);
            let media = match c {
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd | Compression::ZstdFrames => {
                    "application/vnd.oci.image.layer.v1.tar+zstd"
                }
            };
            layers.push(serde_json::json!({"mediaType": media, "digest": format!("sha256:{}", sha256_hex(&blob)), "size": blob.len()}));
            files.push((format!("blobs/sha256/{}", sha256_hex(&blob)), blob));
        }
        let cfg = img.config_bytes();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256_hex(&cfg)), "size": cfg.len()},
            "layers": layers
        }))
        .unwrap();
        index.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&manifest)), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": img.tag}
        }));
        files.push((format!("blobs/sha256/{}", sha256_hex(&cfg)), cfg));
        files.push((format!("blobs/sha256/{}", sha256_hex(&manifest)), manifest));
    }
    let idx =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": index})).unwrap();
    files.push(("index.json".to_string(), idx));
    files
}

pub fn write_oci_archive(path: &Path, images: &[&Image], c: Compression) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in oci_files(images, c) {
        add(&mut b, &name, &data);
    }
    b.finish().unwrap();
}

pub fn write_oci_layout(dir: &Path, images: &[&Image], c: Compression) -> PathBuf {
    for (name, data) in oci_files(images, c) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    dir.to_path_buf()
}

/// A layer as an OCI archive stores it: the blob's bytes and the digest of
/// the tar inside it (the config's diff_id).
pub struct Blob {
    pub data: Vec<u8>,
    pub diff_id: String,
}

impl Blob {
    pub fn gzip(layer: &[u8]) -> Blob {
        Blob {
            data: compress(layer, Compression::Gzip),
            diff_id: format!("sha256:{}", sha256_hex(layer)),
        }
    }
}

/// The config document of an image made of `blobs` (the test image's
/// usual fields and their diff_ids).
pub fn config_for(blobs: &[Blob]) -> Vec<u8> {
    let ids: Vec<&str> = blobs.iter().map(|b| b.diff_id.as_str()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ids}
    }))
    .unwrap()
}

/// The manifest document naming `config` and `blobs` by the digests of
/// their bytes.
pub fn manifest_for(blobs: &[Blob], config: &[u8]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = blobs
        .iter()
        .map(|b| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", sha256_hex(&b.data)), "size": b.data.len()}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256_hex(config)), "size": config.len()},
        "layers": layers
    }))
    .unwrap()
}

/// The index document naming `manifest` by the digest of its bytes.
pub fn index_for(manifest: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", sha256_hex(manifest)), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "hostile:1"}
    }]}))
    .unwrap()
}

/// The files of a one-image OCI layout from ready-made documents, each blob
/// stored under the digest of its bytes: a test breaks one document and
/// keeps (or deliberately breaks) the references to it.
pub fn oci_parts(
    blobs: &[Blob],
    config: &[u8],
    manifest: &[u8],
    index: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    for b in blobs {
        files.push((
            format!("blobs/sha256/{}", sha256_hex(&b.data)),
            b.data.clone(),
        ));
    }
    files.push((
        format!("blobs/sha256/{}", sha256_hex(config)),
        config.to_vec(),
    ));
    files.push((
        format!("blobs/sha256/{}", sha256_hex(manifest)),
        manifest.to_vec(),
    ));
    files.push(("index.json".to_string(), index.to_vec()));
    files
}

/// A consistent one-image OCI layout made of `blobs`.
pub fn oci_files_of(blobs: &[Blob]) -> Vec<(String, Vec<u8>)> {
    let config = config_for(blobs);
    let manifest = manifest_for(blobs, &config);
    oci_parts(blobs, &config, &manifest, &index_for(&manifest))
}

/// A tar holding `files` as regular members, in order.
pub fn write_tar_files(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        add(&mut b, name, data);
    }
    b.finish().unwrap();
}

/// hpcc with `cache` as its image cache, run from "/" (which no bind
/// shows, so the image's WorkingDir applies) with no stdin.
pub fn hpcc_with_cache(cache: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(runtime_tests::hpcc_bin());
    c.args(args)
        .env("HPCC_CACHE_DIR", cache)
        .current_dir("/")
        .stdin(std::process::Stdio::null());
    c
}

/// The names in a directory, sorted; empty when it is missing.
pub fn list(p: &Path) -> Vec<String> {
    runtime_tests::list_dir(p)
}
