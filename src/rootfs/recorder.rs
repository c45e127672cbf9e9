//! A recording fake of the kernel and the host, for unit tests of mount
//! plans and their execution without root (as youki's `syscall/test.rs`).
//! Handles are the container paths they were resolved from; every call is
//! written down as one line; failures are injected by substring.

use super::cgroupfs::CgroupHost;
use super::host_view::HostView;
use super::kernel::{Entry, FileKind, Kernel, Target};
use super::ops::{Node, Skeleton};
use super::resolve::Leaf;
use anyhow::Result;
use nix::errno::Errno;
use nix::mount::MsFlags;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

#[derive(Default)]
pub struct Recorder {
    pub calls: Vec<String>,
    /// A mount whose line contains the text fails with the errno.
    pub fail: Vec<(String, Errno)>,
    /// Handles on a procfs.
    pub procfs: Vec<PathBuf>,
    /// What `kind` answers for plain paths (missing: nothing there).
    pub kinds: HashMap<PathBuf, FileKind>,
    /// What `mount_flags` answers (raw ST_* bits).
    pub st_flags: u64,
    /// What `set_recursive_readonly` fails with (ENOSYS: an old kernel).
    pub rro_errno: Option<Errno>,
    /// What `submounts` answers.
    pub submounts: Vec<PathBuf>,
    /// What `read_dir` lists, by directory.
    pub dirs: HashMap<PathBuf, Vec<(std::ffi::OsString, Entry)>>,
    /// `make_skeleton` fails (a full disk).
    pub skeleton_fails: bool,
}

fn target_text(t: Target<'_, PathBuf>) -> String {
    match t {
        Target::Fd(p) => format!("root:{}", p.display()),
        Target::Path(p) => p.display().to_string(),
    }
}

impl Recorder {
    /// The mount lines only.
    pub fn mounts(&self) -> Vec<&str> {
        self.calls
            .iter()
            .filter(|c| c.starts_with("mount "))
            .map(String::as_str)
            .collect()
    }
}

impl Kernel for Recorder {
    type Fd = PathBuf;

    fn mount(
        &mut self,
        source: Option<&Path>,
        target: Target<'_, PathBuf>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        let mut line = format!(
            "mount {} on {}",
            source.map_or("-".to_string(), |s| s.display().to_string()),
            target_text(target)
        );
        if let Some(t) = fstype {
            line += &format!(" type {t}");
        }
        if !flags.is_empty() {
            line += &format!(" [{flags:?}]");
        }
        if let Some(d) = data {
            line += &format!(" ({d})");
        }
        let failed = self
            .fail
            .iter()
            .find(|(needle, _)| line.contains(needle.as_str()))
            .map(|(_, e)| *e);
        match failed {
            Some(e) => {
                self.calls.push(format!("{line} -> {e:?}"));
                Err(e)
            }
            None => {
                self.calls.push(line);
                Ok(())
            }
        }
    }

    fn open_root(&mut self, path: &Path) -> Result<PathBuf> {
        self.calls.push(format!("open root {}", path.display()));
        Ok(PathBuf::from("/"))
    }

    fn create_in_root(&mut self, _root: &PathBuf, path: &Path, leaf: Leaf) -> Result<PathBuf> {
        self.calls
            .push(format!("create {} {leaf:?}", path.display()));
        Ok(path.to_path_buf())
    }

    fn open_in_root(&mut self, _root: &PathBuf, path: &Path) -> nix::Result<PathBuf> {
        Ok(path.to_path_buf())
    }

    fn open_path(&mut self, path: &Path) -> Result<PathBuf> {
        Ok(path.to_path_buf())
    }

    fn on_procfs(&mut self, fd: &PathBuf) -> bool {
        self.procfs.contains(fd)
    }

    fn mount_flags(&mut self, _target: Target<'_, PathBuf>) -> nix::Result<u64> {
        Ok(self.st_flags)
    }

    fn set_recursive_readonly(&mut self, fd: &PathBuf) -> nix::Result<()> {
        match self.rro_errno {
            Some(e) => {
                self.calls.push(format!("rro {} -> {e:?}", fd.display()));
                Err(e)
            }
            None => {
                self.calls.push(format!("rro {}", fd.display()));
                Ok(())
            }
        }
    }

    fn submounts(&mut self, _fd: &PathBuf) -> Result<Vec<PathBuf>> {
        Ok(self.submounts.clone())
    }

    fn kind(&mut self, path: &Path) -> std::io::Result<Option<FileKind>> {
        Ok(self.kinds.get(path).copied())
    }

    fn mkdir(&mut self, path: &Path) -> std::io::Result<()> {
        self.calls.push(format!("mkdir {}", path.display()));
        Ok(())
    }

    fn read_dir(&mut self, path: &Path) -> std::io::Result<Vec<(std::ffi::OsString, Entry)>> {
        Ok(self.dirs.get(path).cloned().unwrap_or_default())
    }

    fn symlink(&mut self, dir: &PathBuf, name: &OsStr, target: &Path) -> nix::Result<()> {
        self.calls.push(format!(
            "symlink {} -> {}",
            dir.join(name).display(),
            target.display()
        ));
        Ok(())
    }

    fn make_node(&mut self, dir: &PathBuf, name: &OsStr, node: &Node) -> Result<()> {
        self.calls.push(format!(
            "mknod {} {:?} {}:{} {:o} {}:{}",
            dir.join(name).display(),
            node.kind,
            node.major,
            node.minor,
            node.mode,
            node.uid,
            node.gid
        ));
        Ok(())
    }

    fn pivot_root(&mut self, rootfs: &Path) -> Result<()> {
        self.calls.push(format!("pivot_root {}", rootfs.display()));
        Ok(())
    }

    fn move_root(&mut self, rootfs: &Path) -> Result<()> {
        self.calls.push(format!("move_root {}", rootfs.display()));
        Ok(())
    }

    fn make_skeleton(&mut self, s: &Skeleton, lower: &Path) -> Result<()> {
        self.calls.push(format!(
            "skeleton {} over {} ({} entries)",
            s.dir.display(),
            lower.display(),
            s.entries.len()
        ));
        match self.skeleton_fails {
            true => Err(anyhow::anyhow!("No space left on device")),
            false => Ok(()),
        }
    }

    fn write_file(&mut self, root: &PathBuf, path: &Path, data: &[u8]) -> Result<()> {
        self.calls.push(format!(
            "write {} in root:{} ({} bytes)",
            path.display(),
            root.display(),
            data.len()
        ));
        Ok(())
    }

    fn chroot(&mut self, rootfs: &Path) -> Result<()> {
        self.calls.push(format!("chroot {}", rootfs.display()));
        Ok(())
    }
}

/// A made-up host: directories and files by path, and a cgroup layout.
#[derive(Default)]
pub struct FakeHost {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
    /// Symlinks: (path, target).
    pub links: Vec<(PathBuf, PathBuf)>,
    pub cgroups: CgroupHost,
    /// Every path `entry` was asked about, in order (each is an lstat on
    /// a real host).
    pub asked: std::cell::RefCell<Vec<PathBuf>>,
}

impl HostView for FakeHost {
    fn is_dir(&self, path: &Path) -> std::io::Result<bool> {
        if self.dirs.iter().any(|d| d == path) {
            Ok(true)
        } else if self.files.iter().any(|f| f == path) {
            Ok(false)
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.is_dir(path).is_ok()
    }

    fn cgroups(&self) -> Result<CgroupHost> {
        Ok(self.cgroups.clone())
    }

    fn entry(&self, path: &Path) -> Option<Entry> {
        self.asked.borrow_mut().push(path.to_path_buf());
        if let Some((_, t)) = self.links.iter().find(|(l, _)| l == path) {
            return Some(Entry::Symlink(t.clone()));
        }
        match self.is_dir(path) {
            Ok(true) => Some(Entry::Dir),
            Ok(false) => Some(Entry::Other),
            Err(_) => None,
        }
    }
}
