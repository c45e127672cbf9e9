//! Where an image's files come from: a tar archive (docker-archive or
//! oci-archive), indexed once so members are read in place, or an OCI
//! layout directory.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// JSON documents larger than this are refused: no real manifest or config
/// comes near it, and a hostile one must not exhaust memory.
pub const MAX_DOC_BYTES: u64 = 16 << 20;

pub enum Source {
    Tar {
        path: PathBuf,
        file: Arc<File>,
        members: HashMap<String, (u64, u64)>,
    },
    Layout {
        dir: PathBuf,
    },
    /// A pull's blob store (`DIR/blobs/sha256/`), named by its reference.
    Pulled {
        dir: PathBuf,
        name: String,
    },
}

/// Reads [pos, end) of a file with pread, so several readers can share it.
pub struct SliceReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for SliceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(left as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn normalize(name: &str) -> String {
    name.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

impl Source {
    pub fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
        if meta.is_dir() {
            if !path.join("oci-layout").is_file() && !path.join("index.json").is_file() {
                bail!(
                    "{}: not an OCI image layout (no oci-layout or index.json)",
                    path.display()
                );
            }
            return Ok(Source::Layout {
                dir: path.to_path_buf(),
            });
        }
        let file = File::open(path).with_context(|| format!("{}", path.display()))?;
        if !super::is_tar(path) {
            bail!("{}: not an image archive (not a tar file)", path.display());
        }
        let members =
            index_tar(&file).with_context(|| format!("{}: reading the archive", path.display()))?;
        if !members.contains_key("manifest.json") && !members.contains_key("index.json") {
            bail!(
                "{}: not an image archive (no manifest.json or index.json)",
                path.display()
            );
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            file: Arc::new(file),
            members,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Tar { path, .. } => path.display().to_string(),
            Source::Layout { dir } => dir.display().to_string(),
            Source::Pulled { name, .. } => name.clone(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        match self {
            Source::Tar { members, .. } => members.contains_key(&normalize(name)),
            Source::Layout { dir } | Source::Pulled { dir, .. } => {
                dir.join(normalize(name)).is_file()
            }
        }
    }

    /// A member (or layout file) as a stream, with its size.
    pub fn open_member(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64)> {
        let key = normalize(name);
        if key.split('/').any(|c| c == "..") {
            bail!(
                "{}: member name {name:?} climbs out of the image",
                self.describe()
            );
        }
        match self {
            Source::Tar { file, members, .. } => {
                let (off, size) = *members.get(&key).ok_or_else(|| {
                    anyhow!("{}: {name} is missing from the archive", self.describe())
                })?;
                let r = SliceReader {
                    file: file.clone(),
                    pos: off,
                    end: off.saturating_add(size),
                };
                Ok((Box::new(r), size))
            }
            Source::Layout { dir } | Source::Pulled { dir, .. } => {
                let p = dir.join(&key);
                let f = File::open(&p).map_err(|e| anyhow!("{}: {name}: {e}", self.describe()))?;
                let size = f.metadata()?.len();
                Ok((Box::new(f), size))
            }
        }
    }

    /// A small JSON document, read whole.
    pub fn read_doc(&self, name: &str) -> Result<Vec<u8>> {
        let (r, size) = self.open_member(name)?;
        if size > MAX_DOC_BYTES {
            bail!(
                "{}: {name} is {size} bytes, too large for an image document",
                self.describe()
            );
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(MAX_DOC_BYTES)
            .read_to_end(&mut buf)
            .with_context(|| format!("{}: reading {name}", self.describe()))?;
        Ok(buf)
    }
}

/// Member name → (data offset, size), from one pass over the headers.
/// `docker save` stores a layer shared by two images once and links the
/// other path to it; links become aliases of their target.
fn index_tar(file: &File) -> Result<HashMap<String, (u64, u64)>> {
    let mut archive = tar::Archive::new(file);
    let mut members = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let kind = entry.header().entry_type();
        let name = normalize(&entry.path()?.to_string_lossy());
        if kind.is_file() {
            members.insert(name, (entry.raw_file_position(), entry.size()));
        } else if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name()? {
                let target = target.to_string_lossy().into_owned();
                // A symlink's target is relative to its own directory.
                let full = match (kind.is_symlink(), name.rsplit_once('/')) {
                    (true, Some((dir, _))) if !target.starts_with('/') => format!("{dir}/{target}"),
                    _ => target,
                };
                links.push((name, full));
            }
        }
    }
    for (name, target) in links {
        if let Some(t) = collapse(&target).and_then(|t| members.get(&t).copied()) {
            members.entry(name).or_insert(t);
        }
    }
    Ok(members)
}

/// "a/b/../c" → "a/c"; None if it climbs above the archive's top.
fn collapse(path: &str) -> Option<String> {
    let norm = normalize(path);
    let mut out: Vec<&str> = Vec::new();
    for c in norm.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}
