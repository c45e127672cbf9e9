//! The digest-keyed cache of unpacked images.
//!
//! ```text
//! <cache>/images/<hex>/{rootfs/,config.json,meta.json,last-used}  complete images, renamed into place
//! <cache>/tmp/<hex>.<pid>.<nanos>/                                 unpacks in progress (or killed)
//! <cache>/refs/<key>.json                                          file identity → digest, for warm starts
//! <cache>/locks/<hex>.lock                                         flock held while one process unpacks
//! ```
//! A reader sees an image only once its directory was renamed into
//! `images/`, so it is never half made. A warm start stats the image file,
//! reads one small refs file and the cached config, and never opens the tar.

use super::apply::Applier;
use super::config::ImageConfig;
use super::digest::{Digest, HashingReader};
use super::manifest::{self, Resolved};
use super::source::Source;
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{fchmodat, fstatat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct Cache {
    root: PathBuf,
}

/// What `images` lists about each entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub digest: String,
    pub references: Vec<String>,
    pub size: u64,
    pub files: u64,
    pub created: String,
    pub source: String,
}

#[derive(Serialize, Deserialize)]
struct RefEntry {
    digest: String,
    source: PathBuf,
    reference: Option<String>,
}

/// An image ready to run.
pub struct CachedImage {
    pub digest: Digest,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

pub struct UnpackOptions {
    pub quiet: bool,
}

impl Cache {
    /// `$HPCC_CACHE_DIR`, else the site config's cache_dir, else
    /// `$XDG_CACHE_HOME/hpcc`, else `~/.cache/hpcc`.
    pub fn locate(site_cache_dir: Option<&Path>) -> Result<Cache> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = env("HPCC_CACHE_DIR")
            .or_else(|| site_cache_dir.map(Path::to_path_buf))
            .or_else(|| env("XDG_CACHE_HOME").map(|x| x.join("hpcc")))
            .or_else(|| env("HOME").map(|h| h.join(".cache/hpcc")))
            .ok_or_else(|| anyhow!("no cache directory: set HPCC_CACHE_DIR or HOME"))?;
        Ok(Cache { root })
    }

    pub fn at(root: PathBuf) -> Cache {
        Cache { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sub(&self, name: &str) -> Result<PathBuf> {
        let p = self.root.join(name);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&p)
            .with_context(|| format!("cache directory {}", p.display()))?;
        check_private(&self.root, fs::metadata(&self.root))?;
        check_private(&p, fs::symlink_metadata(&p))?;
        Ok(p)
    }

    fn image_dir(&self, d: &Digest) -> PathBuf {
        self.root.join("images").join(d.hex())
    }

    /// An empty directory the launch mounts its private tmpfs on.
    pub fn mount_dir(&self) -> Result<PathBuf> {
        self.sub("mnt")
    }

    fn load_complete(&self, d: &Digest) -> Result<Option<CachedImage>> {
        let dir = self.image_dir(d);
        let data = match fs::read(dir.join("config.json")) {
            Ok(data) => data,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("reading {}", dir.display())),
        };
        let config = serde_json::from_slice(&data)
            .with_context(|| format!("{}/config.json", dir.display()))?;
        // The last-use time `images` and `prune` report; losing it is harmless.
        let _ = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("last-used"));
        Ok(Some(CachedImage {
            digest: d.clone(),
            rootfs: dir.join("rootfs"),
            config,
        }))
    }

    /// Unpacks `path` (optionally the image `want` in it) unless the cache
    /// has it, and returns the cached rootfs.
    pub fn ensure(
        &self,
        path: &Path,
        want: Option<&str>,
        opts: &UnpackOptions,
    ) -> Result<CachedImage> {
        self.ensure_inner(path, want, opts).map_err(printable)
    }

    fn ensure_inner(
        &self,
        path: &Path,
        want: Option<&str>,
        opts: &UnpackOptions,
    ) -> Result<CachedImage> {
        let key = identity_key(path, want)?;
        let refs = self.sub("refs")?;
        let ref_file = refs.join(format!("{key}.json"));
        if let Some(d) = read_ref(&ref_file) {
            if let Some(img) = self.load_complete(&d)? {
                return Ok(img);
            }
        }
        let src = Source::open(path)?;
        let resolved = manifest::resolve(&src, want)?;
        let d = resolved.config_digest.clone();
        let img = match self.load_complete(&d)? {
            Some(img) => img,
            None => self.unpack_locked(&src, &resolved, opts)?,
        };
        let entry = RefEntry {
            digest: d.to_string(),
            source: fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            reference: resolved.reference.clone(),
        };
        crate::container::state::write_atomic(&ref_file, &serde_json::to_vec(&entry)?, 0o600)?;
        Ok(img)
    }

    /// One unpack per image, however many processes ask at once: the first
    /// to take the lock unpacks; the others wait, then find it done.
    fn unpack_locked(
        &self,
        src: &Source,
        r: &Resolved,
        opts: &UnpackOptions,
    ) -> Result<CachedImage> {
        let d = &r.config_digest;
        let locks = self.sub("locks")?;
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(locks.join(format!("{}.lock", d.hex())))
            .context("opening the cache lock")?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("locking the cache: {e}"))?;
        if let Some(img) = self.load_complete(d)? {
            return Ok(img);
        }
        let tmp_root = self.sub("tmp")?;
        // Holding the lock, any tmp dir for this digest is a killed unpack.
        self.clear_leftovers(&tmp_root, Some(d))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.subsec_nanos())
            .unwrap_or(0);
        let tmp = tmp_root.join(format!("{}.{}.{nanos}", d.hex(), std::process::id()));
        let result = self.unpack_into(&tmp, src, r, opts);
        crate::debug!("unpacked image {d} from {}", src.describe());
        if let Err(e) = result {
            let _ = remove_tree(&tmp);
            return Err(e);
        }
        let images = self.sub("images")?;
        let dest = images.join(d.hex());
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = remove_tree(&tmp);
            return Err(anyhow!(e))
                .with_context(|| format!("moving the unpacked image to {}", dest.display()));
        }
        self.load_complete(d)?
            .ok_or_else(|| anyhow!("{}: vanished right after unpacking", dest.display()))
    }

    fn unpack_into(
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
        let privileged = crate::launch::is_real_root();
        let mut applier = Applier::new(&rootfs, privileged)?;
        let total: u64 = r.layers.iter().fold(0u64, |t, l| t.saturating_add(l.size));
        let progress = super::progress::Progress::new(total, opts.quiet, &src.describe());
        for (i, layer) in r.layers.iter().enumerate() {
            let what = format!("{}: layer {} ({})", src.describe(), i + 1, layer.name);
            let (raw, _) = src.open_member(&layer.name).with_context(|| what.clone())?;
            let raw = progress.wrap(raw);
            // blob hash (OCI only) → decompress → diff_id hash → apply
            let blob = HashingReader::maybe(raw, layer.blob.is_some());
            let tar_stream = HashingReader::new(decompress(blob).with_context(|| what.clone())?);
            let tar_stream = applier
                .apply_layer(tar_stream)
                .with_context(|| what.clone())?;
            let decoded = tar_stream.finish_inner(&layer.diff_id, &what)?;
            if let Some(expected) = &layer.blob {
                decoded.into_inner_hashing().finish(expected, &what)?;
            }
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
        };
        let meta_path = tmp.join("meta.json");
        fs::write(&meta_path, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("writing {}", meta_path.display()))?;
        Ok(())
    }

    /// Removes unpacks that were killed half-way: those of one digest (we
    /// hold its lock), or with `None` every one whose lock we can take.
    fn clear_leftovers(&self, tmp_root: &Path, only: Option<&Digest>) -> Result<usize> {
        let mut removed = 0;
        let Ok(rd) = fs::read_dir(tmp_root) else {
            return Ok(0);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.split('.').next().unwrap_or("");
            let matches = match only {
                Some(d) => hex == d.hex(),
                None => self.try_lock(hex)?.is_some(),
            };
            if matches {
                remove_tree(&e.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn try_lock(&self, hex: &str) -> Result<Option<Flock<fs::File>>> {
        let locks = self.sub("locks")?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(locks.join(format!("{hex}.lock")))?;
        Ok(Flock::lock(f, FlockArg::LockExclusiveNonblock).ok())
    }

    /// Removes an image: first renamed into tmp/ (one atomic step, after
    /// which no run can find it), then deleted, so a removal that is killed
    /// half-way leaves only garbage that prune clears, never a half image.
    fn retire(&self, d: &Digest) -> Result<()> {
        if let Some(pid) = self.in_use(d) {
            bail!(
                "image {} is in use by process {pid}; stop it first",
                d.short()
            );
        }
        let tmp = self
            .sub("tmp")?
            .join(format!("{}.{}.retired", d.hex(), std::process::id()));
        let dir = self.image_dir(d);
        fs::rename(&dir, &tmp).with_context(|| format!("removing {}", dir.display()))?;
        remove_tree(&tmp).with_context(|| format!("removing {}", tmp.display()))
    }

    /// A process whose mount namespace has this image as an overlay lower
    /// layer: a running container. Removing its image would pull files
    /// from under it.
    fn in_use(&self, d: &Digest) -> Option<i32> {
        let needle = format!("lowerdir={}", self.image_dir(d).join("rootfs").display());
        let mut seen = std::collections::HashSet::new();
        for pid in crate::procfs::all_pids() {
            let Some(ns) = crate::procfs::ns_id(pid, "mnt") else {
                continue;
            };
            if !seen.insert(ns) {
                continue;
            }
            if fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .is_ok_and(|m| m.contains(&needle))
            {
                return Some(pid);
            }
        }
        None
    }

    /// Every complete image with its metadata and last use.
    pub fn list(&self) -> Result<Vec<(Meta, Option<std::time::SystemTime>)>> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.root.join("images")) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            let Ok(data) = fs::read(e.path().join("meta.json")) else {
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<Meta>(&data) else {
                continue;
            };
            let used = fs::metadata(e.path().join("last-used"))
                .and_then(|m| m.modified())
                .ok();
            out.push((meta, used));
        }
        out.sort_by(|a, b| a.0.digest.cmp(&b.0.digest));
        Ok(out)
    }

    /// Removes the image whose digest starts with `prefix`, and the refs to it.
    pub fn remove_image(&self, prefix: &str) -> Result<Digest> {
        let prefix = prefix.trim_start_matches("sha256:");
        let matches: Vec<Meta> = self
            .list()?
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| {
                !prefix.is_empty() && m.digest.trim_start_matches("sha256:").starts_with(prefix)
            })
            .collect();
        let m = match matches.as_slice() {
            [one] => one,
            [] => bail!("no cached image matches {prefix:?}"),
            _ => bail!(
                "{prefix:?} matches {} cached images; give more of the digest",
                matches.len()
            ),
        };
        let d = Digest::parse(&m.digest)?;
        let _lock = self
            .try_lock(d.hex())?
            .ok_or_else(|| anyhow!("image {} is being unpacked right now", d.short()))?;
        self.retire(&d)?;
        self.drop_refs(|r| r.digest == m.digest)?;
        Ok(d)
    }

    /// The digest a path (and reference) was cached under, if any.
    pub fn digest_for(&self, path: &Path, want: Option<&str>) -> Result<Option<Digest>> {
        let key = identity_key(path, want)?;
        Ok(read_ref(
            &self.root.join("refs").join(format!("{key}.json")),
        ))
    }

    fn drop_refs(&self, mut pred: impl FnMut(&RefEntry) -> bool) -> Result<usize> {
        let mut n = 0;
        let Ok(rd) = fs::read_dir(self.root.join("refs")) else {
            return Ok(0);
        };
        for e in rd.flatten() {
            let Ok(data) = fs::read(e.path()) else {
                continue;
            };
            let stale = match serde_json::from_slice::<RefEntry>(&data) {
                Ok(r) => pred(&r),
                Err(_) => true,
            };
            if stale {
                fs::remove_file(e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes leftovers of killed unpacks, refs whose image file is gone,
    /// and images no ref points to (with `all`, every image).
    pub fn prune(&self, all: bool) -> Result<(usize, usize, usize)> {
        let leftovers = self.clear_leftovers(&self.root.join("tmp"), None)?;
        let refs = self.drop_refs(|r| all || !r.source.exists())?;
        let mut live = std::collections::HashSet::new();
        if let Ok(rd) = fs::read_dir(self.root.join("refs")) {
            for e in rd.flatten() {
                if let Some(r) = fs::read(e.path())
                    .ok()
                    .and_then(|d| serde_json::from_slice::<RefEntry>(&d).ok())
                {
                    live.insert(r.digest);
                }
            }
        }
        let mut images = 0;
        for (m, _) in self.list()? {
            if live.contains(&m.digest) {
                continue;
            }
            let d = Digest::parse(&m.digest)?;
            if self.in_use(&d).is_some() {
                continue;
            }
            if let Some(_lock) = self.try_lock(d.hex())? {
                self.retire(&d)?;
                images += 1;
            }
        }
        Ok((leftovers, refs, images))
    }
}

/// The cache decides what runs: an entry under images/ is trusted as a
/// verified unpack. A directory that someone else owns or may write could
/// hold an image they planted under a digest we would trust, so it is
/// refused. The root may be a symlink (~/.cache to scratch space); what it
/// leads to must be ours.
fn check_private(p: &Path, meta: std::io::Result<fs::Metadata>) -> Result<()> {
    let meta = meta.with_context(|| format!("cache directory {}", p.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_dir() {
        bail!("cache directory {}: not a directory", p.display());
    }
    if meta.uid() != me {
        bail!(
            "cache directory {} belongs to uid {}, not to you (uid {me}): refusing to run images from it; set HPCC_CACHE_DIR to a directory of your own",
            p.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "cache directory {} is writable by group or others (mode {:o}): refusing to run images from it; chmod go-w it",
            p.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// An error whose text an image wrote (entry names, the bytes of a broken
/// tar header quoted back) made fit for a terminal: control characters
/// are escaped, so a hostile name can neither break the one error line nor
/// send escape sequences or carriage returns to the user's terminal.
fn printable(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if !text.chars().any(char::is_control) {
        return e;
    }
    let escaped: String = text
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    anyhow!(escaped)
}

fn read_ref(path: &Path) -> Option<Digest> {
    let data = fs::read(path).ok()?;
    let r: RefEntry = serde_json::from_slice(&data).ok()?;
    Digest::parse(&r.digest).ok()
}

/// The config kept for warm starts: the fields hpcc reads, in the image
/// config's own schema.
fn cached_config(r: &Resolved) -> serde_json::Value {
    let c = r.config.container();
    serde_json::json!({
        "architecture": r.config.architecture,
        "os": r.config.os,
        "config": {
            "User": c.user, "Env": c.env, "Entrypoint": c.entrypoint,
            "Cmd": c.cmd, "WorkingDir": c.working_dir
        },
        "rootfs": {"type": "layers", "diff_ids": r.config.diff_ids()}
    })
}

/// A key for "this exact file": device, inode, size and mtime (plus the
/// reference asked for). Any change to the file changes the key.
fn identity_key(path: &Path, want: Option<&str>) -> Result<String> {
    let m = fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let m = if m.is_dir() {
        fs::metadata(path.join("index.json"))
            .with_context(|| format!("{}/index.json", path.display()))?
    } else {
        m
    };
    let text = format!(
        "{}:{}:{}:{}.{}:{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        want.unwrap_or("")
    );
    Ok(Digest::of_bytes(text.as_bytes()).hex().to_string())
}

/// A reader over a decompressed layer that still gives back the hashing
/// reader underneath, so the blob digest can be finished.
pub enum Decoded<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<R>>>),
    Zstd(Box<ruzstd::decoding::StreamingDecoder<BufReader<R>, ruzstd::decoding::FrameDecoder>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: Read> Decoded<HashingReader<R>> {
    /// Drains the decoder (trailing padding included) and returns the
    /// hashing reader for its final check.
    fn into_inner_hashing(mut self) -> HashingReader<R> {
        let _ = std::io::copy(&mut self, &mut std::io::sink());
        match self {
            Decoded::Plain(r) => r.into_inner(),
            Decoded::Gzip(r) => r.into_inner().into_inner(),
            Decoded::Zstd(r) => r.into_inner().into_inner(),
        }
    }
}

/// Picks the decompressor from the first bytes, whatever the media type
/// claims: gzip, zstd or a plain tar.
pub fn decompress<R: Read>(r: R) -> Result<Decoded<R>> {
    let mut br = BufReader::with_capacity(256 * 1024, r);
    let head = br.fill_buf().context("reading layer")?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Decoded::Gzip(Box::new(
            flate2::bufread::MultiGzDecoder::new(br),
        )))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::decoding::StreamingDecoder::new(br).map_err(|e| anyhow!("zstd: {e}"))?;
        Ok(Decoded::Zstd(Box::new(d)))
    } else {
        Ok(Decoded::Plain(br))
    }
}

/// Removes a tree that may hold read-only directories (an unpacked image
/// keeps the modes its layers gave), without following symlinks. It walks
/// with `*at` calls from one directory fd at a time, so neither a tree
/// whose full paths pass PATH_MAX nor one deeper than the fd limit can
/// leave a half-removed unpack behind.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("{}: not a removable directory", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let top = crate::sys::adopt(nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    remove_dir_at(top, name)
}

/// A directory being emptied: its name in its parent and the
/// subdirectories still to remove.
struct Level {
    name: OsString,
    subdirs: Vec<OsString>,
}

/// Removes directory `name` in `top` and everything under it, depth first.
/// Only the current directory's fd is open; the walk climbs back with
/// "..", which in a tree only we write (the cache's tmp/, under the
/// digest's lock) leads to the directory it came from.
fn remove_dir_at(top: OwnedFd, name: &OsStr) -> std::io::Result<()> {
    let mut cur = open_dir_for_removal(&top, name)?;
    let mut stack = vec![Level {
        name: name.to_owned(),
        subdirs: empty_dir_of_files(&cur)?,
    }];
    loop {
        let next = stack.last_mut().and_then(|l| l.subdirs.pop());
        if let Some(sub) = next {
            match open_dir_for_removal(&cur, &sub) {
                Ok(fd) => cur = fd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            let subdirs = empty_dir_of_files(&cur)?;
            stack.push(Level { name: sub, subdirs });
            continue;
        }
        let Some(done) = stack.pop() else {
            return Ok(());
        };
        let parent = if stack.is_empty() {
            drop(cur);
            unlinkat(
                Some(top.as_raw_fd()),
                done.name.as_os_str(),
                UnlinkatFlags::RemoveDir,
            )?;
            return Ok(());
        } else {
            crate::sys::adopt(openat(
                Some(cur.as_raw_fd()),
                "..",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?)
        };
        unlinkat(
            Some(parent.as_raw_fd()),
            done.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        )?;
        cur = parent;
    }
}

/// Opens directory `name` in `parent` for reading, first giving its owner
/// the rwx bits a removal needs. Never follows a symlink.
fn open_dir_for_removal(parent: &OwnedFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    let st = fstatat(Some(parent.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & 0o700 != 0o700 {
        fchmodat(
            Some(parent.as_raw_fd()),
            name,
            Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700),
            FchmodatFlags::NoFollowSymlink,
        )?;
    }
    Ok(crate::sys::adopt(openat(
        Some(parent.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?))
}

/// Unlinks everything in `dir` that is not a directory and returns the
/// names of the subdirectories.
fn empty_dir_of_files(dir: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    let reader = crate::sys::adopt(openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?);
    let mut names = Vec::new();
    for e in nix::dir::Dir::from_fd(reader.into_raw_fd())?.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_owned());
        }
    }
    let mut subdirs = Vec::new();
    for n in names {
        let st = match fstatat(
            Some(dir.as_raw_fd()),
            n.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            subdirs.push(n);
        } else {
            match unlinkat(
                Some(dir.as_raw_fd()),
                n.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_cache_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hpcc-cache-perm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cache = Cache::at(dir.clone());
        assert!(cache.sub("refs").is_ok());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = format!("{:#}", cache.sub("refs").unwrap_err());
        assert!(err.contains("writable by group or others"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(dir.join("refs"), fs::Permissions::from_mode(0o770)).unwrap();
        let err = format!("{:#}", cache.sub("refs").unwrap_err());
        assert!(err.contains("refs"), "{err}");
        fs::set_permissions(dir.join("refs"), fs::Permissions::from_mode(0o700)).unwrap();
        if nix::unistd::geteuid().is_root() {
            // Someone else's directory, however private, is not ours.
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let err = format!("{:#}", cache.sub("refs").unwrap_err());
            assert!(err.contains("belongs to uid 65534"), "{err}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;
    use nix::sys::stat::{fchmod, mkdirat};
    use nix::unistd::symlinkat;

    fn open_dir(parent: &OwnedFd, name: &str) -> OwnedFd {
        crate::sys::adopt(
            openat(
                Some(parent.as_raw_fd()),
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn errors_from_image_text_stay_printable() {
        let e = anyhow!("entry a\x1b]0;owned\x07\rb/\n..").context("layer 2");
        let text = format!("{:#}", printable(e));
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert_eq!(text, "layer 2: entry a\\u{1b}]0;owned\\u{7}\\rb/\\n..");
        // Clean errors keep their chain.
        let e = printable(anyhow!("inner").context("outer"));
        assert_eq!(e.chain().count(), 2);
    }

    #[test]
    fn remove_tree_takes_deep_read_only_trees_and_never_follows_symlinks() {
        let base = std::env::temp_dir().join(format!("hpcc-rmtree-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let outside = base.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("keep"), "keep").unwrap();
        let tree = base.join("tree");
        fs::create_dir(&tree).unwrap();
        // 30 levels of 200-byte names: 6 KB of path, past PATH_MAX, each
        // level read-only and holding a file and a symlink out.
        let name = "d".repeat(200);
        let mut cur = crate::sys::adopt(
            nix::fcntl::open(
                &tree,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .unwrap(),
        );
        for _ in 0..30 {
            mkdirat(
                Some(cur.as_raw_fd()),
                name.as_str(),
                Mode::from_bits_truncate(0o755),
            )
            .unwrap();
            let next = open_dir(&cur, &name);
            drop(crate::sys::adopt(
                openat(
                    Some(next.as_raw_fd()),
                    "f",
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o444),
                )
                .unwrap(),
            ));
            symlinkat(&outside, Some(next.as_raw_fd()), "out").unwrap();
            fchmod(cur.as_raw_fd(), Mode::from_bits_truncate(0o555)).unwrap();
            cur = next;
        }
        fchmod(cur.as_raw_fd(), Mode::from_bits_truncate(0o500)).unwrap();
        drop(cur);
        remove_tree(&tree).unwrap();
        assert!(fs::symlink_metadata(&tree).is_err(), "the tree is gone");
        assert_eq!(fs::read_to_string(outside.join("keep")).unwrap(), "keep");
        // A missing path is already removed; a file is unlinked.
        remove_tree(&tree).unwrap();
        fs::write(base.join("file"), "x").unwrap();
        remove_tree(&base.join("file")).unwrap();
        assert!(!base.join("file").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
