//! Applying layer tars to a directory the way Docker and podman do:
//! whiteouts, opaque directories, hard links, symlinks, modes, times and
//! xattrs. Every path is resolved inside the rootfs being built
//! (openat2 RESOLVE_IN_ROOT), so no entry can write outside it.

use super::parent_dirs::ParentDirs;
use super::whiteouts;
use crate::rootfs::resolve::open_in_root;
use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

pub struct Applier {
    root: OwnedFd,
    /// Real root outside any user namespace: ownership and device nodes are
    /// reproduced exactly. Otherwise files belong to the caller.
    privileged: bool,
    /// Directory modes and times, applied once at the end: a read-only
    /// directory must stay writable while later layers fill it.
    dirs: HashMap<PathBuf, (u32, u64)>,
    parents: ParentDirs,
    /// One copy buffer for every file (a fresh one per file costs an
    /// mmap and munmap each with musl's allocator).
    buf: Vec<u8>,
    /// The process umask: a file created with its final mode needs no
    /// chmod unless the umask would strip some of it.
    umask: u32,
    pub device_placeholders: u64,
    pub files: u64,
    pub bytes: u64,
}

/// An entry name made relative to the rootfs; None for the root itself.
pub fn sanitize(p: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("entry {:?} climbs out of the root", p)
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn mtime_of(h: &tar::Header) -> TimeSpec {
    TimeSpec::new(h.mtime().unwrap_or(0).min(i64::MAX as u64) as i64, 0)
}

impl Applier {
    pub fn new(root: &Path, privileged: bool) -> Result<Applier> {
        let root = crate::sys::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
            .map_err(|e| anyhow!("opening {}: {e}", root.display()))?;
        Ok(Applier {
            root,
            privileged,
            dirs: HashMap::new(),
            parents: ParentDirs::default(),
            buf: vec![0u8; COPY_BLOCK],
            umask: current_umask(),
            device_placeholders: 0,
            files: 0,
            bytes: 0,
        })
    }

    /// Applies one layer and hands the reader back, so its digest can be
    /// checked over whatever tar did not consume.
    pub fn apply_layer<R: Read>(&mut self, reader: R) -> Result<R> {
        let mut archive = tar::Archive::new(reader);
        let mut written: HashSet<PathBuf> = HashSet::new();
        for entry in archive.entries().context("reading layer")? {
            let mut entry = entry.context("reading layer")?;
            let raw = entry.path().context("entry name")?.into_owned();
            self.apply_entry(&mut entry, &raw, &mut written)
                .with_context(|| format!("entry {}", raw.display()))?;
        }
        Ok(archive.into_inner())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw: &Path,
        written: &mut HashSet<PathBuf>,
    ) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let Some(rel) = sanitize(raw)? else {
            return Ok(()); // the root directory itself
        };
        let name = rel
            .file_name()
            .ok_or_else(|| anyhow!("no file name"))?
            .to_owned();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let name_str = name.to_string_lossy();
        if let Some(w) = whiteouts::classify(&name_str)? {
            let parent = self.parents.get(&self.root, &parent_rel)?;
            self.parents.forget_all();
            return whiteouts::apply(w, &parent, &parent_rel, written);
        }
        written.insert(rel.clone());
        let parent = self.parents.get(&self.root, &parent_rel)?;
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                let mkdir = || {
                    nix::sys::stat::mkdirat(
                        Some(parent.as_raw_fd()),
                        name.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    )
                };
                // A directory meeting a directory is kept: the layers merge.
                match mkdir() {
                    Ok(()) => {}
                    Err(Errno::EEXIST) if is_dir_at(&parent, &name)? => {}
                    Err(Errno::EEXIST) => {
                        self.remove_in_the_way(&parent, &name)?;
                        mkdir().map_err(|e| anyhow!("mkdir: {e}"))?;
                    }
                    Err(e) => bail!("mkdir: {e}"),
                }
                self.chown_at(&parent, &name, &header)?;
                self.dirs.insert(rel, (mode, header.mtime().unwrap_or(0)));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // Created with its final permission bits; chmod follows only
                // where the umask or a chown would have changed them.
                let create = || {
                    crate::sys::openat(
                        parent.as_fd(),
                        name.as_os_str(),
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
                        Mode::from_bits_truncate(mode & 0o777),
                    )
                };
                let fd = self
                    .create_or_replace(&parent, &name, create)
                    .map_err(|e| anyhow!("create: {e}"))?;
                let mut file = File::from(fd);
                let n = copy_with_holes(entry, &mut file, &mut self.buf)
                    .map_err(|e| anyhow!("write: {e}"))?;
                self.bytes += n;
                self.files += 1;
                if self.privileged {
                    nix::unistd::fchown(
                        file.as_raw_fd(),
                        Some(uid_of(&header)),
                        Some(gid_of(&header)),
                    )
                    .map_err(|e| anyhow!("chown: {e}"))?;
                }
                // After chown, which clears setuid/setgid bits.
                if mode & 0o7000 != 0 || mode & self.umask != 0 {
                    fchmod(file.as_raw_fd(), Mode::from_bits_truncate(mode))
                        .map_err(|e| anyhow!("chmod: {e}"))?;
                }
                if let Ok(Some(exts)) = entry.pax_extensions() {
                    for ext in exts.flatten() {
                        if let Some(attr) =
                            ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr."))
                        {
                            if let Err(e) =
                                xattr::FileExt::set_xattr(&file, attr, ext.value_bytes())
                            {
                                crate::debug!(
                                    "xattr {attr} on {}: {e}",
                                    raw_display(&parent_rel, &name)
                                );
                            }
                        }
                    }
                }
                let t = mtime_of(&header);
                nix::sys::stat::futimens(file.as_raw_fd(), &t, &t)
                    .map_err(|e| anyhow!("set times: {e}"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| anyhow!("symlink without a target"))?;
                self.create_or_replace(&parent, &name, || {
                    symlinkat(target.as_ref(), Some(parent.as_raw_fd()), name.as_os_str())
                })
                .map_err(|e| anyhow!("symlink: {e}"))?;
                self.chown_at(&parent, &name, &header)?;
                let t = mtime_of(&header);
                let _ = utimensat(
                    Some(parent.as_raw_fd()),
                    name.as_os_str(),
                    &t,
                    &t,
                    UtimensatFlags::NoFollowSymlink,
                );
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| anyhow!("hard link without a target"))?;
                let target_rel =
                    sanitize(&target)?.ok_or_else(|| anyhow!("hard link to the root directory"))?;
                let tparent =
                    open_in_root(&self.root, target_rel.parent().unwrap_or(Path::new("")))
                        .map_err(|e| anyhow!("hard link target {}: {e}", target.display()))?;
                let tname = target_rel
                    .file_name()
                    .ok_or_else(|| anyhow!("hard link target has no name"))?;
                self.create_or_replace(&parent, &name, || {
                    linkat(
                        Some(tparent.as_raw_fd()),
                        tname,
                        Some(parent.as_raw_fd()),
                        name.as_os_str(),
                        AtFlags::empty(),
                    )
                })
                .map_err(|e| anyhow!("hard link to {}: {e}", target.display()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.make_node(&parent, &name, &header, kind, mode)?;
            }
            other => crate::debug!("skipping {} of tar type {other:?}", raw.display()),
        }
        Ok(())
    }

    fn chown_at(&self, parent: &OwnedFd, name: &std::ffi::OsStr, h: &tar::Header) -> Result<()> {
        if self.privileged {
            fchownat(
                Some(parent.as_raw_fd()),
                name,
                Some(uid_of(h)),
                Some(gid_of(h)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| anyhow!("chown: {e}"))?;
        }
        Ok(())
    }

    /// Runs `create`; where the name is taken (by a lower layer, or
    /// earlier in this one) the old entry goes and `create` runs again.
    /// Trying first spares a stat of every entry of a fresh tree.
    fn create_or_replace<T>(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        mut create: impl FnMut() -> nix::Result<T>,
    ) -> Result<T> {
        match create() {
            Err(Errno::EEXIST) => {
                self.remove_in_the_way(parent, name)?;
                Ok(create()?)
            }
            other => Ok(other?),
        }
    }

    /// Removes an entry a new one replaces (never following a symlink);
    /// cached directory handles may name what was removed, so they go too.
    fn remove_in_the_way(&mut self, parent: &OwnedFd, name: &std::ffi::OsStr) -> Result<()> {
        self.parents.forget_all();
        whiteouts::remove_entry(parent, name)
    }

    fn make_node(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        h: &tar::Header,
        kind: tar::EntryType,
        mode: u32,
    ) -> Result<()> {
        let sflag = match kind {
            tar::EntryType::Char => SFlag::S_IFCHR,
            tar::EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        // Anyone may make a FIFO; device nodes need real root.
        if self.privileged || sflag == SFlag::S_IFIFO {
            let dev = nix::sys::stat::makedev(
                h.device_major().ok().flatten().unwrap_or(0) as u64,
                h.device_minor().ok().flatten().unwrap_or(0) as u64,
            );
            self.create_or_replace(parent, name, || {
                mknodat(
                    Some(parent.as_raw_fd()),
                    name,
                    sflag,
                    Mode::from_bits_truncate(mode),
                    dev,
                )
            })
            .map_err(|e| anyhow!("mknod: {e}"))?;
            self.chown_at(parent, name, h)?;
            fchmodat(
                Some(parent.as_raw_fd()),
                name,
                Mode::from_bits_truncate(mode),
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(|e| anyhow!("chmod: {e}"))?;
            return Ok(());
        }
        let placeholder = || {
            crate::sys::openat(
                parent.as_fd(),
                name,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            )
        };
        drop(
            self.create_or_replace(parent, name, placeholder)
                .map_err(|e| anyhow!("placeholder for device node: {e}"))?,
        );
        self.device_placeholders += 1;
        Ok(())
    }

    /// Gives directories their final modes and times, deepest first.
    pub fn finish(&mut self) -> Result<()> {
        let mut dirs: Vec<_> = self.dirs.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, (mode, mtime)) in dirs {
            let parent = match open_in_root(&self.root, rel.parent().unwrap_or(Path::new(""))) {
                Ok(fd) => fd,
                Err(_) => continue, // removed by a later layer
            };
            let Some(name) = rel.file_name() else {
                continue;
            };
            match fstatat(Some(parent.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
                _ => continue,
            }
            fchmodat(
                Some(parent.as_raw_fd()),
                name,
                Mode::from_bits_truncate(mode),
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(|e| anyhow!("chmod {}: {e}", rel.display()))?;
            let t = TimeSpec::new(mtime.min(i64::MAX as u64) as i64, 0);
            let _ = utimensat(
                Some(parent.as_raw_fd()),
                name,
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            );
        }
        Ok(())
    }
}

fn raw_display(parent: &Path, name: &std::ffi::OsStr) -> String {
    parent.join(name).display().to_string()
}

fn uid_of(h: &tar::Header) -> Uid {
    Uid::from_raw(h.uid().unwrap_or(0) as u32)
}

fn gid_of(h: &tar::Header) -> Gid {
    Gid::from_raw(h.gid().unwrap_or(0) as u32)
}

/// Whether `name` in `parent` is a directory (not a symlink to one).
fn is_dir_at(parent: &OwnedFd, name: &std::ffi::OsStr) -> Result<bool> {
    let st = fstatat(Some(parent.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| anyhow!("stat: {e}"))?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// The process umask, from /proc (reading it with umask(2) means setting
/// it, which another thread could observe). 0o022 where /proc says nothing.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

const COPY_BLOCK: usize = 64 * 1024;

/// Copies a file's contents, leaving each all-zero 64 KiB block as a hole.
/// The content is the same, but a layer that declares gigabytes of zeros
/// (a gzip bomb, or a GNU sparse entry whose 2 KiB header announces a
/// 1 GiB hole) costs no disk.
fn copy_with_holes(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut total = 0u64;
    let mut ends_in_hole = false;
    loop {
        let len = crate::fs::read_full(from, buf)?;
        if len == 0 {
            break;
        }
        if buf[..len].iter().all(|&b| b == 0) {
            to.seek(SeekFrom::Current(len as i64))?;
            ends_in_hole = true;
        } else {
            to.write_all(&buf[..len])?;
            ends_in_hole = false;
        }
        total += len as u64;
        if len < buf.len() {
            break;
        }
    }
    // A trailing hole has no byte written after it: give the file its size.
    if ends_in_hole {
        to.set_len(total)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_become_holes_with_the_same_content() {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::temp_dir().join(format!("hpcc-holes-{}", std::process::id()));
        let mut data = vec![0u8; 8 << 20];
        data[100] = 1;
        data.extend_from_slice(b"tail");
        data.extend(std::iter::repeat_n(0u8, 3 << 20));
        let mut out = File::create(&path).unwrap();
        let n = copy_with_holes(&mut &data[..], &mut out, &mut [0u8; COPY_BLOCK]).unwrap();
        drop(out);
        assert_eq!(n, data.len() as u64);
        let back = std::fs::read(&path).unwrap();
        assert!(back == data, "content differs");
        // Allocated blocks (512 B units): far below the 11 MiB written.
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        std::fs::remove_file(&path).unwrap();
        assert!(blocks * 512 < 1 << 20, "{blocks} blocks allocated");
    }
}
