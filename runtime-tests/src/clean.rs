//! The checks that a container left nothing behind: no state, no process,
//! no mount under its bundle, no cgroup named after it.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Instant;

use crate::bundle::Bundle;
use crate::env::TestEnv;
use crate::files::{list_dir, path_str};
use crate::proc::{describe, processes_with_arg, reap_orphans, ProcRef};
use crate::{POLL, WAIT_LIMIT};

/// [`TestEnv::assert_clean`] for a container under another state root.
#[track_caller]
pub fn assert_clean_in(
    env: &TestEnv,
    root: &Path,
    id: &str,
    init: Option<&ProcRef>,
    bundle: &Bundle,
) {
    let state_dir = root.join(id);
    assert!(
        !state_dir.exists(),
        "state folder {} is still there: {:?}",
        state_dir.display(),
        list_dir(&state_dir)
    );
    env.hpcc_raw(&["--root", path_str(root), "state", id])
        .fails_with("does not exist");
    if let Some(init) = init {
        init.assert_gone(&format!("container {id} init"));
    }
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        reap_orphans();
        let left = processes_with_arg(id);
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let details: Vec<String> = left
                .iter()
                .map(|(pid, cmd)| format!("  pid {pid}: {cmd}\n    {}", describe(*pid)))
                .collect();
            panic!(
                "processes naming container {id} are still running after {WAIT_LIMIT:?}:\n{}",
                details.join("\n")
            );
        }
        sleep(POLL);
    }
    let mounts = mounts_under(&bundle.dir);
    assert!(
        mounts.is_empty(),
        "mounts under bundle {} remain:\n{}",
        bundle.dir.display(),
        mounts.join("\n")
    );
    let cgroups = cgroups_named(id);
    assert!(
        cgroups.is_empty(),
        "cgroups of container {id} remain: {cgroups:?}"
    );
}

/// Lines of `/proc/self/mountinfo` whose mount point lies under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let canonical = fs::canonicalize(dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| prefix.clone());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|line| {
            line.split_whitespace().nth(4).is_some_and(|mp| {
                [&prefix, &canonical]
                    .iter()
                    .any(|p| mp == p.as_str() || mp.starts_with(&format!("{p}/")))
            })
        })
        .map(str::to_string)
        .collect()
}

/// Folders under /sys/fs/cgroup (three levels deep) whose name contains `id`.
pub fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![PathBuf::from("/sys/fs/cgroup")];
    for _ in 0..3 {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if names_container(&entry.file_name().to_string_lossy(), id) {
                    found.push(path);
                } else {
                    next.push(path);
                }
            }
        }
        level = next;
    }
    found
}

/// Whether a cgroup folder name refers to container `id`: it contains `id`
/// not followed by another id character (so `x-1` does not match `x-12`).
fn names_container(name: &str, id: &str) -> bool {
    name.match_indices(id).any(|(at, _)| {
        name[at + id.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}
