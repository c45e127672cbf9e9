//! state.json: what `create` learned about a container, written atomically
//! so that a reader never sees half a file.

use crate::procfs;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "state.json";
/// The container's cgroup, written by `create` before it makes the cgroup,
/// so a create killed before state.json exists leaves a trace to clean up.
pub const CGROUP_FILE: &str = "cgroup.json";
/// "PID STARTTIME" of the init, written by `create` as soon as it knows it.
pub const INIT_FILE: &str = "init.pid";
/// The socket the waiting init listens on; it exists exactly while the
/// container is created but not yet started.
pub const START_SOCKET: &str = "start.sock";
/// The rootfs of a container without a mount namespace, written by
/// `create` before the first mount: its mounts are in the caller's mount
/// table under that path, and `delete` (also of a half-made create)
/// detaches them.
pub const HOST_MOUNTS_FILE: &str = "host-mounts";
/// Present while `pause` has frozen the container.
pub const PAUSED_MARK: &str = "paused";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot; a PID with another
    /// start time is a different process.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// True when the container has a PID namespace of its own, so that its
    /// processes are exactly those in that namespace.
    #[serde(default)]
    pub own_pid_ns: bool,
    /// The cgroup made for the container, removed by delete.
    #[serde(default)]
    pub cgroup: Option<crate::cgroups::CgroupRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The directory of containers (`--root`).
pub struct StateStore {
    root: PathBuf,
}

impl StateStore {
    pub fn new(root: PathBuf) -> Self {
        StateStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims `id` by creating its directory. mkdir is atomic, so of two
    /// concurrent `create`s of one ID exactly one wins.
    pub fn claim(&self, id: &str) -> Result<PathBuf> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .with_context(|| format!("creating state root {}", self.root.display()))?;
        check_private(&self.root)?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                bail!("container with id {id} already exists")
            }
            Err(e) => Err(anyhow!(e)).with_context(|| format!("creating {}", dir.display())),
        }
    }

    pub fn save(&self, st: &ContainerState) -> Result<()> {
        let dir = self.dir(&st.id);
        let data = serde_json::to_vec(st)?;
        crate::fs::write_atomic(&dir.join(STATE_FILE), &data, 0o600)
    }

    pub fn load(&self, id: &str) -> Result<ContainerState> {
        crate::container::validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                bail!("container {id} does not exist")
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| format!("reading {}", path.display()))
            }
        };
        serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))
    }

    /// The cgroup a create recorded before it made it (see CGROUP_FILE).
    pub fn half_made_cgroup(&self, id: &str) -> Option<crate::cgroups::CgroupRef> {
        let data = fs::read(self.dir(id).join(CGROUP_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// The rootfs whose mounts live in the caller's mount table (see
    /// HOST_MOUNTS_FILE).
    pub fn host_mounts(&self, id: &str) -> Option<PathBuf> {
        let text = fs::read_to_string(self.dir(id).join(HOST_MOUNTS_FILE)).ok()?;
        let p = PathBuf::from(text.trim_end_matches('\n'));
        p.is_absolute().then_some(p)
    }

    /// The init a create recorded before state.json (see INIT_FILE), if it
    /// is still that process (same start time).
    pub fn half_made_init(&self, id: &str) -> Option<i32> {
        let text = fs::read_to_string(self.dir(id).join(INIT_FILE)).ok()?;
        let mut it = text.split_whitespace();
        let pid: i32 = it.next()?.parse().ok()?;
        let start: u64 = it.next()?.parse().ok()?;
        procfs::is_alive(pid, start).then_some(pid)
    }

    /// True when `id` has a directory but no state.json: a `create` is under
    /// way, or one died before it finished.
    pub fn is_half_made(&self, id: &str) -> bool {
        let dir = self.dir(id);
        dir.is_dir() && !dir.join(STATE_FILE).exists()
    }

    pub fn status(&self, st: &ContainerState) -> Status {
        if !procfs::is_alive(st.pid, st.start_time) {
            Status::Stopped
        } else if self.dir(&st.id).join(START_SOCKET).exists() {
            Status::Created
        } else if self.dir(&st.id).join(PAUSED_MARK).exists() {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow!(e)).with_context(|| format!("removing {}", dir.display())),
        }
    }

    /// IDs of every container directory under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| format!("reading {}", self.root.display()))
            }
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// A state root in a shared place (the /tmp fallback) must be ours alone:
/// another user who made it first could forge state and have us signal
/// their choice of process.
fn check_private(root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shared = root
        .parent()
        .is_some_and(|p| p == Path::new("/tmp") || p == Path::new("/var/tmp"));
    if !shared {
        return Ok(());
    }
    let m = fs::symlink_metadata(root).with_context(|| format!("state root {}", root.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if !m.is_dir() || m.uid() != me || m.mode() & 0o077 != 0 {
        bail!(
            "state root {} is not a private directory of uid {me}; remove it or set XDG_RUNTIME_DIR",
            root.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hpcc-unit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn claim_is_exclusive_and_state_round_trips() {
        let root = tmpdir("state");
        let store = StateStore::new(root.clone());
        store.claim("c1").unwrap();
        let err = store.claim("c1").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert!(store.is_half_made("c1"));
        let me = std::process::id() as i32;
        let st = ContainerState {
            id: "c1".into(),
            pid: me,
            start_time: procfs::stat(me).unwrap().start_time,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: crate::timefmt::now(),
            owner: "root".into(),
            annotations: HashMap::new(),
            own_pid_ns: false,
            cgroup: None,
        };
        store.save(&st).unwrap();
        assert_eq!(store.load("c1").unwrap(), st);
        assert_eq!(store.status(&st), Status::Running);
        fs::write(store.dir("c1").join(START_SOCKET), b"").unwrap();
        assert_eq!(store.status(&st), Status::Created);
        let dead = ContainerState {
            start_time: st.start_time + 1,
            ..st
        };
        assert_eq!(store.status(&dead), Status::Stopped);
        assert_eq!(store.ids().unwrap(), vec!["c1".to_string()]);
        store.remove("c1").unwrap();
        let err = store.load("c1").unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        fs::remove_dir_all(root).unwrap();
    }
}
