//! The scratch directory of a hostile-image case: the cache, the image
//! files, and `outside/`, the sentinel directory every hostile entry aims
//! at, with a snapshot of everything around the cache.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::imagefix::scratch::Scratch;
use crate::imagefix::{self, Image};

/// A scratch directory: the cache, the image files, and `outside/`, the
/// sentinel directory every hostile entry aims at.
pub struct Env {
    scratch: Scratch,
}

/// The scratch directory's own: `dir`, `cache()`, `cmd()`, `run()`,
/// `images()`, `tmp_entries()`, and its removal on drop.
impl Deref for Env {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        &self.scratch
    }
}

impl Env {
    pub fn new(tag: &str) -> Env {
        let scratch = Scratch::with_prefix("hh", tag);
        let dir = &scratch.dir;
        std::fs::create_dir_all(dir.join("outside/sub")).unwrap();
        std::fs::write(dir.join("outside/secret"), "secret\n").unwrap();
        std::fs::write(dir.join("outside/sub/keep"), "keep\n").unwrap();
        // Made up front so the snapshot of `dir` sees no change when hpcc
        // fills it.
        std::fs::create_dir(dir.join("cache")).unwrap();
        Env { scratch }
    }

    pub fn outside(&self) -> String {
        self.dir.join("outside").to_str().unwrap().to_string()
    }

    /// The sentinel directory as a path relative to "/".
    pub fn outside_rel(&self) -> String {
        self.outside().trim_start_matches('/').to_string()
    }

    pub fn secret(&self) -> String {
        format!("{}/secret", self.outside())
    }

    /// A docker archive of the busybox base layer and `layers`.
    pub fn docker(&self, name: &str, layers: Vec<Vec<u8>>) -> PathBuf {
        let mut all = vec![imagefix::base_layer()];
        all.extend(layers);
        let p = self.dir.join(format!("{name}.tar"));
        imagefix::write_docker_archive(&p, &[&Image::new(all, "hostile:1")]);
        p
    }

    /// A tar of ready-made OCI layout files.
    pub fn oci(&self, name: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
        let p = self.dir.join(format!("{name}.tar"));
        imagefix::write_tar_files(&p, files);
        p
    }

    /// Everything under `dir` but the cache: type, mode, size, link count,
    /// mtime, contents (hashed) and link targets.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        snap(&self.dir, &self.dir, &self.cache(), &mut out);
        out
    }
}

fn snap(root: &Path, p: &Path, skip: &Path, out: &mut BTreeMap<String, String>) {
    if p == skip {
        return;
    }
    let m = std::fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(root).unwrap().display().to_string();
    let ft = m.file_type();
    let what = if ft.is_symlink() {
        format!("symlink -> {:?}", std::fs::read_link(p).unwrap())
    } else if ft.is_file() {
        format!(
            "file sha256:{}",
            imagefix::sha256_hex(&std::fs::read(p).unwrap())
        )
    } else if ft.is_dir() {
        "dir".to_string()
    } else {
        format!("special rdev {}", m.rdev())
    };
    // A directory's mtime would move if an entry were made and removed.
    out.insert(
        rel,
        format!(
            "{what} mode {:o} nlink {} size {} mtime {}.{}",
            m.mode(),
            m.nlink(),
            m.size(),
            m.mtime(),
            m.mtime_nsec()
        ),
    );
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for n in names {
            snap(root, &n, skip, out);
        }
    }
}
