//! The digest-keyed cache of unpacked images.
//!
//! ```text
//! <cache>/images/<hex>/{rootfs/,config.json,meta.json,last-used}  complete images, renamed into place
//! <cache>/images/<hex>/skeletons/<key>/                             what a read-only root adds to the image (rootfs/skeleton/)
//! <cache>/images/<hex>/skeletons/.tmp.<pid>.<nanos>/               a skeleton being made, under locks/<hex>.skeleton
//! <cache>/tmp/<hex>.<pid>.<nanos>/                                 unpacks in progress (or killed)
//! <cache>/refs/<key>.json                                          file identity (or registry reference) → digest, for warm starts
//! <cache>/locks/<hex>.lock                                         flock held while one process unpacks
//! <cache>/locks/<hex>.use                                          shared flock held by each run from lookup to mount
//! <cache>/pulls/<hex>/blobs/sha256/<blob>[.partial]                 one pull's blobs, under the image's lock; removed once unpacked
//! ```
//! A reader sees an image only once its directory was renamed into
//! `images/`, so it is never half made. A warm start stats the image file,
//! reads one small refs file and the cached config, and never opens the tar.

mod gc;
mod refs;
mod skeletons;
mod unpack;

use super::config::ImageConfig;
use super::digest::Digest;
use super::manifest::{self, Resolved};
use super::printable::printable;
use super::source::Source;
use crate::fs::{remove_tree, write_durable};
use crate::rootfs::SkeletonDirs;
use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use refs::{identity_key, read_entry, read_ref, text_key, RefEntry};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::ErrorKind;
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
    /// The manifest digest, for images pulled from a registry or read
    /// from an OCI layout or archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// An image ready to run.
pub struct CachedImage {
    pub digest: Digest,
    pub rootfs: PathBuf,
    pub config: ImageConfig,
    /// A shared lock on the image's `.use` file, held until the run has
    /// mounted the rootfs (it is close-on-exec, so exec lets it go). Once
    /// mounted, the mount itself shows the image is in use; before that,
    /// this lock is what stops `rmi` and `prune` pulling it away.
    _pin: Flock<fs::File>,
}

impl CachedImage {
    /// What `images` shows about it (read on demand: warm starts skip it).
    pub fn meta(&self) -> Option<Meta> {
        let dir = self.rootfs.parent()?;
        serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()
    }
}

pub struct UnpackOptions {
    pub quiet: bool,
}

impl Cache {
    /// `$HPCC_CACHE_DIR`, else the site config's cache_dir, else
    /// `$XDG_CACHE_HOME/hpcc`, else `~/.cache/hpcc` from $HOME or, where
    /// HOME is unset (a systemd service, a Slurm prolog, cron), from the
    /// passwd entry, else a system location. Never an error.
    pub fn locate(site_cache_dir: Option<&Path>) -> Cache {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let uid = nix::unistd::geteuid();
        let root = choose_root(CacheInputs {
            hpcc_cache_dir: env("HPCC_CACHE_DIR"),
            site: site_cache_dir.map(Path::to_path_buf),
            xdg_cache_home: env("XDG_CACHE_HOME"),
            home: env("HOME"),
            passwd_home: || {
                nix::unistd::User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map(|u| u.dir)
            },
            uid: uid.as_raw(),
        });
        crate::debug!("image cache: {}", root.display());
        Cache { root }
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

    /// The launch's mount directory: it mounts a read-only root on
    /// `merged` in it (made on first use and left, empty), or its private
    /// tmpfs on the directory itself. Only its own mount namespace sees
    /// either.
    pub fn mount_dir(&self) -> Result<PathBuf> {
        self.sub("mnt")
    }

    /// Where the image's skeletons are kept and made, and their lock
    /// (rootfs/skeleton/). Nothing is created until a skeleton is needed.
    pub fn skeleton_dirs(&self, d: &Digest) -> SkeletonDirs {
        SkeletonDirs::new(
            &self.image_dir(d),
            &self.lock_path(d.hex(), "skeleton"),
            nanos(),
        )
    }

    /// Opens the lock file `locks/<hex>.<kind>`.
    fn lock_file(&self, hex: &str, kind: &str) -> Result<fs::File> {
        self.sub("locks")?;
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.lock_path(hex, kind))
            .context("opening the cache lock")
    }

    /// `locks/<hex>.<kind>`, the one place lock files are named.
    fn lock_path(&self, hex: &str, kind: &str) -> PathBuf {
        self.root.join("locks").join(format!("{hex}.{kind}"))
    }

    /// A run's shared hold on an image (see [`CachedImage`]). It blocks only
    /// while an `rmi` or `prune` is retiring that very image.
    fn pin(&self, d: &Digest) -> Result<Flock<fs::File>> {
        Flock::lock(self.lock_file(d.hex(), "use")?, FlockArg::LockShared)
            .map_err(|(_, e)| anyhow!("locking the cached image {}: {e}", d.short()))
    }

    fn load_complete(&self, d: &Digest) -> Result<Option<CachedImage>> {
        // Pinned first, so the image cannot be retired between the check
        // that it exists and the mount that uses it.
        let pin = self.pin(d)?;
        let dir = self.image_dir(d);
        let data = match fs::read(dir.join("config.json")) {
            Ok(data) => data,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("reading {}", dir.display())),
        };
        let config = serde_json::from_slice(&data)
            .with_context(|| format!("{}/config.json", dir.display()))?;
        touch_last_used(&dir.join("last-used"));
        Ok(Some(CachedImage {
            digest: d.clone(),
            rootfs: dir.join("rootfs"),
            config,
            _pin: pin,
        }))
    }

    /// The digest a path (and reference) was cached under, if any.
    pub fn digest_for(&self, path: &Path, want: Option<&str>) -> Result<Option<Digest>> {
        let key = identity_key(path, want)?;
        Ok(read_ref(
            &self.root.join("refs").join(format!("{key}.json")),
        ))
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
        let write_ref = || -> Result<()> {
            let entry = RefEntry {
                digest: d.to_string(),
                source: fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
                reference: resolved.reference.clone(),
            };
            write_durable(&ref_file, &serde_json::to_vec(&entry)?, 0o600)
        };
        // The unpacker writes the ref before it lets go of the lock, so the
        // ranks that waited find it and write nothing: 63 more fsyncs,
        // racing the unpack's writeback, were what 64 ranks paid.
        let img = self.ensure_locked(&d, || {
            let img = self.unpack_holding_lock(&src, &resolved, opts)?;
            write_ref()?;
            Ok(img)
        })?;
        // Cached already, from another file holding the same image.
        if read_ref(&ref_file).as_ref() != Some(&d) {
            write_ref()?;
        }
        Ok(img)
    }

    /// Image `d` from the cache, or else made by `make` while holding the
    /// image's lock. However many processes ask at once, the first to take
    /// the lock unpacks (or pulls); the others wait, then find it done.
    pub fn ensure_locked(
        &self,
        d: &Digest,
        make: impl FnOnce() -> Result<CachedImage>,
    ) -> Result<CachedImage> {
        if let Some(img) = self.load_complete(d)? {
            return Ok(img);
        }
        let _lock = match self.try_lock_image(d.hex())? {
            Ok(lock) => lock,
            // Waiting shared, not in line for the exclusive lock: when the
            // unpack ends, every waiting rank wakes at once instead of
            // being handed the lock one after another.
            Err(file) => {
                drop(
                    Flock::lock(file, FlockArg::LockShared)
                        .map_err(|(_, e)| anyhow!("waiting for the cache lock: {e}"))?,
                );
                if let Some(img) = self.load_complete(d)? {
                    return Ok(img);
                }
                // The unpack failed (or its process died): one of the
                // waiters takes it over, the others queue behind it.
                self.lock_image(d)?
            }
        };
        if let Some(img) = self.load_complete(d)? {
            return Ok(img);
        }
        make()
    }

    /// The exclusive lock one unpack (or pull) of image `d` holds.
    pub fn lock_image(&self, d: &Digest) -> Result<Flock<fs::File>> {
        Flock::lock(self.lock_file(d.hex(), "lock")?, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("locking the cache: {e}"))
    }

    /// The exclusive lock on image `hex` if it is free now, else the lock
    /// file, for waiting on.
    fn try_lock_image(&self, hex: &str) -> Result<Result<Flock<fs::File>, fs::File>> {
        match Flock::lock(
            self.lock_file(hex, "lock")?,
            FlockArg::LockExclusiveNonblock,
        ) {
            Ok(lock) => Ok(Ok(lock)),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => Ok(Err(file)),
            Err((_, e)) => Err(anyhow!("locking the cache: {e}")),
        }
    }

    /// The complete image `d`, pinned, if the cache has it.
    pub fn load(&self, d: &Digest) -> Result<Option<CachedImage>> {
        self.load_complete(d)
    }

    /// Where a pull of image `d` keeps its blobs, as an OCI layout keeps
    /// them: `pulls/<hex>/blobs/sha256/`. Only the holder of the image's
    /// lock uses it, so pulls of two images that share a layer never touch
    /// one file, and a pull that is killed leaves its `.partial` downloads
    /// for the next pull of that image to resume (`prune` clears them).
    pub fn pull_dir(&self, d: &Digest) -> Result<PathBuf> {
        let dir = self.sub("pulls")?.join(d.hex());
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("blobs/sha256"))
            .with_context(|| format!("cache directory {}", dir.display()))?;
        Ok(dir)
    }

    /// Removes what [`Cache::pull_dir`] made: the blobs have served, or
    /// the pull failed and they must not linger.
    pub fn drop_pull_dir(&self, d: &Digest) {
        let _ = remove_tree(&self.root.join("pulls").join(d.hex()));
    }

    /// The digest and manifest a registry reference was last cached
    /// under (see [`Cache::set_text_ref`]).
    pub fn text_ref(&self, text: &str) -> Option<(Digest, Option<String>)> {
        let e = read_entry(
            &self
                .root
                .join("refs")
                .join(format!("{}.json", text_key(text))),
        )?;
        Some((Digest::parse(&e.digest).ok()?, e.reference))
    }

    /// Remembers that `text` (a registry reference and platform) names
    /// image `d`, whose manifest is `manifest`, for warm and offline starts.
    pub fn set_text_ref(
        &self,
        text: &str,
        source: &str,
        d: &Digest,
        manifest: &Digest,
    ) -> Result<()> {
        let refs = self.sub("refs")?;
        let entry = RefEntry {
            digest: d.to_string(),
            source: PathBuf::from(source),
            reference: Some(manifest.to_string()),
        };
        let path = refs.join(format!("{}.json", text_key(text)));
        // Ranks that waited for another's pull find the refs it wrote: no
        // fsync each while the unpack's writeback runs.
        if read_entry(&path).as_ref() == Some(&entry) {
            return Ok(());
        }
        write_durable(&path, &serde_json::to_vec(&entry)?, 0o600)
    }

    /// Unpacks `r` from `src` into the cache; the caller holds
    /// [`Cache::lock_image`] and found the image missing.
    pub fn unpack_holding_lock(
        &self,
        src: &Source,
        r: &Resolved,
        opts: &UnpackOptions,
    ) -> Result<CachedImage> {
        let d = &r.config_digest;
        let tmp_root = self.sub("tmp")?;
        // Holding the lock, any tmp dir for this digest is a killed unpack.
        self.clear_leftovers(&tmp_root, Some(d))?;
        let tmp = tmp_root.join(format!("{}.{}.{}", d.hex(), std::process::id(), nanos()));
        if let Err(e) = self.unpack_into(&tmp, src, r, opts) {
            let _ = remove_tree(&tmp);
            return Err(e);
        }
        crate::debug!("unpacked image {d} from {}", src.describe());
        let images = self.sub("images")?;
        let dest = images.join(d.hex());
        // Held across the rename so no removal slips in before we load it.
        let _pin = self.pin(d)?;
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = remove_tree(&tmp);
            return Err(anyhow!(e))
                .with_context(|| format!("moving the unpacked image to {}", dest.display()));
        }
        self.load_complete(d)?
            .ok_or_else(|| anyhow!("{}: vanished right after unpacking", dest.display()))
    }
}

/// The last-use time `images` and `prune` report, kept to the minute:
/// a start reads it, and writes only when it is older. A write on every
/// start dirtied an inode on the cache's disk each time, which a start
/// then paid for whenever that disk was busy writing back. Losing it is
/// harmless.
fn touch_last_used(path: &Path) {
    let fresh = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < LAST_USED_GRAIN);
    if !fresh {
        let _ = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path);
    }
}

/// How stale `last-used` may be before a start updates it.
const LAST_USED_GRAIN: std::time::Duration = std::time::Duration::from_secs(60);

/// What the cache location is chosen from.
struct CacheInputs<F: FnOnce() -> Option<PathBuf>> {
    hpcc_cache_dir: Option<PathBuf>,
    site: Option<PathBuf>,
    xdg_cache_home: Option<PathBuf>,
    home: Option<PathBuf>,
    /// The passwd entry's home, asked for only when HOME is unset.
    passwd_home: F,
    uid: u32,
}

/// The first of the inputs that is set; a home of "/" (nobody's, or a
/// service account's) does not count. Root falls back to /var/cache/hpcc,
/// anyone else to a private directory in /tmp (whose ownership the cache
/// checks before it trusts anything in it).
fn choose_root<F: FnOnce() -> Option<PathBuf>>(i: CacheInputs<F>) -> PathBuf {
    let real_home = |h: PathBuf| (h != Path::new("/") && h.is_absolute()).then_some(h);
    i.hpcc_cache_dir
        .or(i.site)
        .or_else(|| i.xdg_cache_home.map(|x| x.join("hpcc")))
        .or_else(|| i.home.and_then(real_home).map(|h| h.join(".cache/hpcc")))
        .or_else(|| {
            (i.passwd_home)()
                .and_then(real_home)
                .map(|h| h.join(".cache/hpcc"))
        })
        .unwrap_or_else(|| {
            if i.uid == 0 {
                PathBuf::from("/var/cache/hpcc")
            } else {
                PathBuf::from(format!("/tmp/hpcc-cache-{}", i.uid))
            }
        })
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

/// The config kept for warm starts: the fields hpcc reads, in the image
/// config's own schema.
pub(super) fn cached_config(r: &Resolved) -> serde_json::Value {
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

/// Sub-second part of the clock: with the pid, a name no other process
/// on any node is using at the same time.
fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0)
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

    #[test]
    fn last_used_is_rewritten_only_when_a_minute_old() {
        let dir = std::env::temp_dir().join(format!("hpcc-last-used-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("last-used");
        let ago = |secs| std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
        let set = |t| {
            fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        let age = || {
            fs::metadata(&p)
                .unwrap()
                .modified()
                .unwrap()
                .elapsed()
                .unwrap()
        };
        touch_last_used(&p);
        assert!(age() < LAST_USED_GRAIN, "a missing file is made");
        set(ago(30));
        touch_last_used(&p);
        assert!(
            age() >= std::time::Duration::from_secs(29),
            "a fresh time was rewritten"
        );
        set(ago(120));
        touch_last_used(&p);
        assert!(
            age() < std::time::Duration::from_secs(30),
            "a stale time was kept"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn inputs(home: Option<&str>, passwd: Option<&str>, uid: u32) -> PathBuf {
        let passwd = passwd.map(PathBuf::from);
        choose_root(CacheInputs {
            hpcc_cache_dir: None,
            site: None,
            xdg_cache_home: None,
            home: home.map(PathBuf::from),
            passwd_home: move || passwd,
            uid,
        })
    }

    #[test]
    fn a_cache_is_found_without_home() {
        assert_eq!(
            inputs(Some("/home/u"), None, 1000),
            Path::new("/home/u/.cache/hpcc")
        );
        // A service without HOME: the passwd entry's home.
        assert_eq!(
            inputs(None, Some("/root"), 0),
            Path::new("/root/.cache/hpcc")
        );
        // Neither (or a home of /): a system location, never an error.
        assert_eq!(inputs(None, None, 0), Path::new("/var/cache/hpcc"));
        assert_eq!(
            inputs(Some("/"), Some("/"), 0),
            Path::new("/var/cache/hpcc")
        );
        assert_eq!(inputs(None, None, 1000), Path::new("/tmp/hpcc-cache-1000"));
        // The explicit settings come first, in order.
        let r = choose_root(CacheInputs {
            hpcc_cache_dir: None,
            site: Some("/site".into()),
            xdg_cache_home: Some("/xdg".into()),
            home: Some("/h".into()),
            passwd_home: || panic!("not asked for"),
            uid: 1,
        });
        assert_eq!(r, Path::new("/site"));
    }
}
