//! Shared by the targets that write to a scratch directory.

use hpcc::fuzzing::remove_tree;
use std::path::Path;

/// Removes the scratch directories (`<prefix><pid>`) of earlier runs whose
/// process has exited: libFuzzer ends a run without dropping anything.
pub fn remove_stale(tmp: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = remove_tree(&e.path());
        }
    }
}
